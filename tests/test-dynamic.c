/* SPDX-License-Identifier: MIT */
/* Dynamic attachments (dma_buf_dynamic_attach()), move notification, pins,
 * migration of a buffer's frames and revocation, in one process. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>

#include "dmabuf-fence.h"
#include "exporter.h"
#include "fence_private.h"

#define MiB (1024ull * 1024)
#define PG 4096ull

/* An importer's view: how often it was told, and its current mapping. */
struct importer {
	int moved;
	struct dmabuf_sg_table *sgt;	/* unmapped in move_notify if remap */
	bool remap;			/* unmap and map again when told */
	int remap_ret;
};

static void importer_move_notify(struct dmabuf_attachment *att)
{
	struct importer *im = dmabuf_attachment_get_importer_priv(att);

	im->moved++;
	if (im->remap && im->sgt) {
		im->remap_ret = dmabuf_unmap_attachment(att, im->sgt, DMABUF_BIDIRECTIONAL);
		im->sgt = NULL;
		if (im->remap_ret == 0)
			im->remap_ret = dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL,
							      &im->sgt);
	}
}

static const struct dmabuf_importer_ops importer_ops = {
	.version = DMABUF_IMPORTER_OPS_VERSION,
	.allow_peer2peer = true,
	.move_notify = importer_move_notify,
};

static struct dmabuf *export_with(struct dmabuf_ctx *ctx, struct test_exporter *tx,
				  const struct dmabuf_ops *ops, enum dmabuf_alloc alloc)
{
	struct dmabuf_export_info info = {
		.exp_name = "mover", .ops = ops, .size = MiB, .flags = O_RDWR,
		.priv = tx, .alloc = alloc,
	};
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	return buf;
}

static int migrate(struct dmabuf *buf, enum dmabuf_alloc alloc, struct dmabuf_fence *f)
{
	struct dmabuf_resv *resv = dmabuf_get_resv(buf);
	int ret;

	dmabuf_resv_lock(resv);
	ret = dmabuf_backing_migrate(buf, alloc, f);
	dmabuf_resv_unlock(resv);
	return ret;
}

static int last_fault_reason(struct dmabuf_device *dev)
{
	struct dmabuf_dma_fault f[4];
	int n = dmabuf_device_get_faults(dev, f, 4);

	return n >= 1 && n <= 4 ? (int)f[n - 1].reason : -1;
}

static void dynamic_attach_rules(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_with(ctx, &tx, &tx_pin_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_importer_ops no_notify = { .version = 1 };
	struct dmabuf_importer_ops future = importer_ops;
	struct dmabuf_attachment *att = NULL, *st;
	struct importer im = { 0 };
	struct dmabuf_info bi = { .struct_size = sizeof(bi) };

	/* move_notify is mandatory, as dma_buf_dynamic_attach()'s WARN_ON */
	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &no_notify, &im, &att), -EINVAL);
	future.version = DMABUF_IMPORTER_OPS_VERSION + 1;
	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &future, &im, &att), -EINVAL);
	assert_null(att);
	assert_int_equal(tx.attach, 0);

	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &importer_ops, &im, &att), 0);
	assert_int_equal(dmabuf_attachment_get_dynamic(att), 1);
	assert_int_equal(dmabuf_attachment_get_peer2peer(att), 1);
	assert_ptr_equal(dmabuf_attachment_get_importer_priv(att), &im);
	/* a dynamic importer is not pinned at attach, nor by a map */
	assert_int_equal(tx.pin, 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &im.sgt), 0);
	assert_int_equal(tx.pin, 0);

	/* NULL ops: a static attachment, pinned at attach */
	assert_int_equal(dmabuf_dynamic_attach(buf, dev, NULL, &im, &st), 0);
	assert_int_equal(dmabuf_attachment_get_dynamic(st), 0);
	assert_int_equal(dmabuf_attachment_get_peer2peer(st), 0);
	assert_null(dmabuf_attachment_get_importer_priv(st));
	assert_int_equal(tx.pin, 1);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.pin_count, 1);

	assert_int_equal(dmabuf_attachment_get_dynamic(NULL), -EINVAL);
	assert_int_equal(dmabuf_attachment_get_peer2peer(NULL), -EINVAL);
	assert_int_equal(dmabuf_detach(buf, st), 0);
	assert_int_equal(tx.unpin, 1);
	assert_int_equal(dmabuf_unmap_attachment(att, im.sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(tx.unpin, 1);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

static void pin_rules(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_with(ctx, &tx, &tx_pin_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_resv *resv = dmabuf_get_resv(buf);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *att, *st;
	struct importer im = { 0 };
	struct dmabuf_info bi = { .struct_size = sizeof(bi) };

	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &importer_ops, &im, &att), 0);
	/* the resv must be held, as dma_resv_assert_held() in dma_buf_pin() */
	assert_int_equal(dmabuf_pin(att), -EINVAL);
	assert_int_equal(tx.pin, 0);
	dmabuf_resv_lock(resv);
	assert_int_equal(dmabuf_pin(att), 0);
	assert_int_equal(dmabuf_pin(att), 0);
	assert_int_equal(tx.pin, 2);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.pin_count, 2);
	/* a pinned buffer is not moved */
	assert_int_equal(dmabuf_backing_migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL), -EBUSY);
	assert_int_equal(dmabuf_unpin(att), 0);
	assert_int_equal(dmabuf_backing_migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL), -EBUSY);
	assert_int_equal(dmabuf_unpin(att), 0);
	assert_int_equal(tx.unpin, 2);
	/* one unpin too many would underflow the exporter's count */
	assert_int_equal(dmabuf_unpin(att), -EINVAL);
	assert_int_equal(tx.unpin, 2);
	assert_int_equal(dmabuf_backing_migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL), 0);
	dmabuf_resv_unlock(resv);
	assert_int_equal(im.moved, 1);
	assert_int_equal(dmabuf_unpin(att), -EINVAL); /* resv not held */

	/* only dynamic importers pin (dma_buf_pin()'s WARN_ON) */
	assert_int_equal(dmabuf_attach(buf, dev, &st), 0);
	assert_int_equal(tx.pin, 3); /* the attach's own pin */
	dmabuf_resv_lock(resv);
	assert_int_equal(dmabuf_pin(st), -EINVAL);
	assert_int_equal(dmabuf_unpin(st), -EINVAL);
	assert_int_equal(dmabuf_pin(NULL), -EINVAL);
	/* a pin left at detach is undone there */
	assert_int_equal(dmabuf_pin(att), 0);
	dmabuf_resv_unlock(resv);
	assert_int_equal(tx.pin, 4);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(tx.unpin, 3);
	assert_int_equal(dmabuf_detach(buf, st), 0);
	assert_int_equal(tx.unpin, 4);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.pin_count, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

static void move_notify_reaches_dynamic_importers(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_with(ctx, &tx, &tx_pin_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_resv *resv = dmabuf_get_resv(buf);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *a1, *a2, *st;
	struct importer i1 = { 0 }, i2 = { 0 };
	struct dmabuf_ctx_stats stats = { .struct_size = sizeof(stats) };

	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &importer_ops, &i1, &a1), 0);
	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &importer_ops, &i2, &a2), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &st), 0);
	assert_int_equal(dmabuf_move_notify(buf), -EINVAL); /* resv not held */
	assert_int_equal(i1.moved + i2.moved, 0);
	dmabuf_resv_lock(resv);
	dmabuf_resv_lock(resv); /* recursive: any depth counts as held */
	/* the buffer is pinned by st: dma_buf_move_notify() does not look at
	 * pins, it tells every dynamic importer anyway */
	assert_int_equal(dmabuf_move_notify(buf), 0);
	assert_true(dmb_resv_held(resv)); /* still the caller's */
	dmabuf_resv_unlock(resv);
	assert_int_equal(dmabuf_move_notify(buf), 0);
	dmabuf_resv_unlock(resv);
	assert_false(dmb_resv_held(resv));
	assert_int_equal(i1.moved, 2);
	assert_int_equal(i2.moved, 2);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &stats), 0);
	assert_int_equal(stats.move_notifies, 4);
	assert_int_equal(dmabuf_move_notify(NULL), -EINVAL);
	assert_int_equal(dmabuf_detach(buf, st), 0);
	assert_int_equal(dmabuf_detach(buf, a1), 0);
	assert_int_equal(dmabuf_detach(buf, a2), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

/* A move gives new frames: the old mapping is stale (its DMA faults with
 * its own reason), the next map returns the new placement, bytes stay. */
static void migrate_gives_new_placement(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_with(ctx, &tx, &tx_pin_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *att;
	struct importer im = { 0 };
	struct dmabuf_sg_table *old;
	struct dmabuf_info bi = { .struct_size = sizeof(bi) };
	struct dmabuf_ctx_stats stats = { .struct_size = sizeof(stats) };
	uint64_t old_phys, old_dma;
	char out[16] = { 0 };

	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &importer_ops, &im, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &old), 0);
	old_phys = dmabuf_sg_table_get_cpu_entries(old)[0].phys;
	old_dma = dmabuf_sg_table_get_dma_entries(old)[0].dma_addr;
	assert_int_equal(dmabuf_dma_write(dev, old_dma, "placed", 7), 0);

	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL), 0);
	assert_int_equal(im.moved, 1);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_true(bi.contiguous);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &stats), 0);
	assert_int_equal(stats.moves, 1);
	assert_int_equal(stats.cma_used, MiB);
	/* the IOMMU still maps the old frames: a fault of its own */
	assert_int_equal(dmabuf_dma_read(dev, old_dma, out, 7), -EFAULT);
	assert_int_equal(last_fault_reason(dev), DMABUF_FAULT_STALE);
	assert_int_equal(dmabuf_unmap_attachment(att, old, DMABUF_BIDIRECTIONAL), 0);

	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &im.sgt), 0);
	assert_int_equal(dmabuf_sg_table_get_cpu_count(im.sgt), 1);
	assert_int_not_equal(dmabuf_sg_table_get_cpu_entries(im.sgt)[0].phys, old_phys);
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(im.sgt)[0].dma_addr,
					 out, 7), 0);
	assert_string_equal(out, "placed");

	/* and back to system frames, from inside move_notify's remap */
	im.remap = true;
	assert_int_equal(migrate(buf, DMABUF_ALLOC_SYSTEM, NULL), 0);
	assert_int_equal(im.moved, 2);
	assert_int_equal(im.remap_ret, 0);
	/* the table mapped inside the callback predates the move: stale too */
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(im.sgt)[0].dma_addr,
					 out, 7), -EFAULT);
	assert_int_equal(last_fault_reason(dev), DMABUF_FAULT_STALE);
	assert_int_equal(dmabuf_unmap_attachment(att, im.sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &stats), 0);
	assert_int_equal(stats.cma_used, 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

static void migrate_refusals(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_with(ctx, &tx, &tx_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *st;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_ctx_stats stats = { .struct_size = sizeof(stats) };

	/* without the resv, with a bad placement */
	assert_int_equal(dmabuf_backing_migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL), -EINVAL);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_DEFERRED, NULL), -EINVAL);
	assert_int_equal(migrate(buf, (enum dmabuf_alloc)7, NULL), -EINVAL);
	assert_int_equal(dmabuf_backing_migrate(NULL, DMABUF_ALLOC_SYSTEM, NULL), -EINVAL);
	/* an exporter without pin: its static importer's mapping cannot be
	 * told, so no move while it lives */
	assert_int_equal(dmabuf_attach(buf, dev, &st), 0);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL), 0);
	assert_int_equal(dmabuf_map_attachment(st, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_SYSTEM, NULL), -EBUSY);
	assert_int_equal(dmabuf_unmap_attachment(st, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_SYSTEM, NULL), 0);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &stats), 0);
	assert_int_equal(stats.moves, 2);
	assert_int_equal(dmabuf_detach(buf, st), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

/* A fence whose wait op records that somebody waited, then signals. */
static int waited;

static const char *fname(struct dmabuf_fence *f) { return "move"; }

static int recording_wait(struct dmabuf_fence *f, int timeout_ms)
{
	waited++;
	dmabuf_fence_signal(f);
	return 1;
}

static const struct dmabuf_fence_ops move_fence_ops = {
	.version = 1,
	.get_driver_name = fname,
	.get_timeline_name = fname,
	.wait = recording_wait,
};

/* The move's KERNEL fence: a static importer's map waits for it, as
 * __map_dma_buf() does; a dynamic importer's does not. */
static void static_map_waits_for_the_move(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_with(ctx, &tx, &tx_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *dyn, *st;
	struct dmabuf_sg_table *s1, *s2;
	struct importer im = { 0 };
	struct dmabuf_fence *fence;

	waited = 0;
	assert_int_equal(dmabuf_fence_new(&move_fence_ops, NULL,
					  dmabuf_fence_context_alloc(1), 1, &fence), 0);
	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &importer_ops, &im, &dyn), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &st), 0);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS, fence), 0);
	assert_int_equal(dmabuf_resv_test_signaled(dmabuf_get_resv(buf),
						   DMABUF_RESV_USAGE_KERNEL), 0);
	assert_int_equal(dmabuf_map_attachment(dyn, DMABUF_BIDIRECTIONAL, &s1), 0);
	assert_int_equal(waited, 0);
	assert_false(dmabuf_fence_is_signaled(fence));
	assert_int_equal(dmabuf_map_attachment(st, DMABUF_BIDIRECTIONAL, &s2), 0);
	assert_int_equal(waited, 1);
	assert_true(dmabuf_fence_is_signaled(fence));
	assert_int_equal(dmabuf_unmap_attachment(dyn, s1, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_unmap_attachment(st, s2, DMABUF_BIDIRECTIONAL), 0);
	dmabuf_fence_put(fence);
	assert_int_equal(dmabuf_detach(buf, dyn), 0);
	assert_int_equal(dmabuf_detach(buf, st), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

static void revoke_rules(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_with(ctx, &tx, &tx_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_resv *resv = dmabuf_get_resv(buf);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *dyn, *st, *late = NULL;
	struct dmabuf_sg_table *s1, *s2, *s3 = NULL;
	struct importer im = { 0 };
	struct dmabuf_info bi = { .struct_size = sizeof(bi) };
	char out[8];
	void *va;
	char *p;

	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &importer_ops, &im, &dyn), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &st), 0);
	assert_int_equal(dmabuf_map_attachment(dyn, DMABUF_BIDIRECTIONAL, &s1), 0);
	assert_int_equal(dmabuf_map_attachment(st, DMABUF_BIDIRECTIONAL, &s2), 0);
	assert_int_equal(dmabuf_mmap(buf, 0, PG, PROT_READ | PROT_WRITE, &va), 0);

	assert_int_equal(dmabuf_revoke(buf), 0);
	assert_int_equal(im.moved, 1);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_true(bi.revoked);
	/* device access through every mapping is gone ... */
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(s1)[0].dma_addr,
					 out, 4), -EFAULT);
	assert_int_equal(last_fault_reason(dev), DMABUF_FAULT_STALE);
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(s2)[0].dma_addr,
					 out, 4), -EFAULT);
	assert_int_equal(last_fault_reason(dev), DMABUF_FAULT_STALE);
	/* ... later maps and attaches are -ENODEV ... */
	assert_int_equal(dmabuf_map_attachment(dyn, DMABUF_BIDIRECTIONAL, &s3), -ENODEV);
	assert_int_equal(dmabuf_map_attachment(st, DMABUF_BIDIRECTIONAL, &s3), -ENODEV);
	assert_null(s3);
	assert_int_equal(dmabuf_attach(buf, dev, &late), -ENODEV);
	assert_null(late);
	dmabuf_resv_lock(resv);
	assert_int_equal(dmabuf_pin(dyn), -ENODEV);
	assert_int_equal(dmabuf_backing_migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL), -ENODEV);
	/* revoking again, now with the resv held, changes nothing */
	assert_int_equal(dmabuf_revoke(buf), 0);
	dmabuf_resv_unlock(resv);
	assert_int_equal(im.moved, 1);
	/* ... while the CPU keeps its access */
	p = va;
	strcpy(p, "cpu");
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_vmap(buf, &va), 0);
	assert_string_equal((char *)va, "cpu");
	assert_int_equal(dmabuf_vunmap(buf, va), 0);
	assert_int_equal(dmabuf_munmap(buf, p, PG), 0);
	/* unmap and detach still work */
	assert_int_equal(dmabuf_unmap_attachment(dyn, s1, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_unmap_attachment(st, s2, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, dyn), 0);
	assert_int_equal(dmabuf_detach(buf, st), 0);
	assert_int_equal(dmabuf_revoke(NULL), -EINVAL);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

/* A static importer of a pinning exporter: pinned and mapped once at
 * attach, as dma_buf_dynamic_attach() does (attach->sgt): every map returns
 * that table (ops->map is not called again), unmaps keep it, detach undoes
 * it. A pinned buffer is not moved; revocation still makes it stale. */
static void static_importer_is_mapped_once(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 }, tp = { 0 };
	struct dmabuf *buf = export_with(ctx, &tx, &tx_pin_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *plain = export_with(ctx, &tp, &tx_ops, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *st, *pa;
	struct dmabuf_sg_table *s1, *s2, *s3, *s4 = NULL, *p1, *p2;
	struct dmabuf_info bi = { .struct_size = sizeof(bi) };
	uint64_t dma;
	char out[8] = { 0 };

	assert_int_equal(dmabuf_attach(buf, dev, &st), 0);
	assert_int_equal(tx.pin, 1);
	assert_int_equal(tx.map, 1);
	assert_int_equal(tx.last_dir, DMABUF_BIDIRECTIONAL);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.mappings, 1);
	/* any direction: the table was mapped BIDIRECTIONAL */
	assert_int_equal(dmabuf_map_attachment(st, DMABUF_TO_DEVICE, &s1), 0);
	assert_int_equal(dmabuf_map_attachment(st, DMABUF_FROM_DEVICE, &s2), 0);
	assert_int_equal(dmabuf_map_attachment(st, DMABUF_BIDIRECTIONAL, &s3), 0);
	assert_ptr_equal(s1, s2);
	assert_ptr_equal(s1, s3);
	assert_int_equal(tx.map, 1);
	dma = dmabuf_sg_table_get_dma_entries(s1)[0].dma_addr;
	assert_int_equal(dmabuf_dma_write(dev, dma, "cached", 7), 0);
	assert_int_equal(dmabuf_unmap_attachment(st, s1, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_unmap_attachment(st, s2, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_unmap_attachment(st, s3, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(tx.unmap, 0);
	/* still mapped: DMA goes on through it */
	assert_int_equal(dmabuf_dma_read(dev, dma, out, 7), 0);
	assert_string_equal(out, "cached");
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.mappings, 1);
	/* pinned: no move; revoked: stale, and maps are -ENODEV */
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS, NULL), -EBUSY);
	assert_int_equal(dmabuf_revoke(buf), 0);
	assert_int_equal(dmabuf_dma_read(dev, dma, out, 7), -EFAULT);
	assert_int_equal(last_fault_reason(dev), DMABUF_FAULT_STALE);
	assert_int_equal(dmabuf_map_attachment(st, DMABUF_BIDIRECTIONAL, &s4), -ENODEV);
	assert_null(s4);
	assert_int_equal(dmabuf_detach(buf, st), 0);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(tx.unpin, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(tx.map, 1);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.mappings, 0);
	assert_int_equal(bi.pin_count, 0);

	/* an exporter without pin: nothing at attach, one ops->map per map */
	assert_int_equal(dmabuf_attach(plain, dev, &pa), 0);
	assert_int_equal(tp.map, 0);
	assert_int_equal(dmabuf_map_attachment(pa, DMABUF_TO_DEVICE, &p1), 0);
	assert_int_equal(dmabuf_map_attachment(pa, DMABUF_TO_DEVICE, &p2), 0);
	assert_ptr_not_equal(p1, p2);
	assert_int_equal(tp.map, 2);
	assert_int_equal(dmabuf_unmap_attachment(pa, p1, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_unmap_attachment(pa, p2, DMABUF_TO_DEVICE), 0);
	assert_int_equal(tp.unmap, 2);
	assert_int_equal(dmabuf_detach(plain, pa), 0);
	assert_int_equal(dmabuf_put(plain), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

/* Lock order: a thread inside an exporter op holds the context and takes
 * the resv (context -> resv); another holds the resv and calls
 * dmabuf_move_notify(), which needs the context. The call drops the resv
 * while it waits for the context, so both finish. */
struct order {
	struct dmabuf_attachment *att;
	struct dmabuf_resv *resv;
	sem_t in_op;
	int map_ret;
	struct dmabuf_sg_table *sgt;
};

static struct order *order;

static int map_taking_resv(struct dmabuf_attachment *att, enum dmabuf_direction dir,
			   struct dmabuf_sg_table **sgt)
{
	sem_post(&order->in_op);
	dmabuf_resv_lock(order->resv); /* context held: context -> resv */
	dmabuf_resv_unlock(order->resv);
	return tx_map(att, dir, sgt);
}

static void *mapper(void *arg)
{
	struct order *o = arg;

	o->map_ret = dmabuf_map_attachment(o->att, DMABUF_BIDIRECTIONAL, &o->sgt);
	return NULL;
}

static void move_notify_under_resv_does_not_deadlock(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_ops ops = tx_ops;
	struct dmabuf *buf;
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct importer im = { 0 };
	struct order o = { 0 };
	pthread_t t;

	ops.map = map_taking_resv;
	buf = export_with(ctx, &tx, &ops, DMABUF_ALLOC_SYSTEM);
	o.resv = dmabuf_get_resv(buf);
	sem_init(&o.in_op, 0, 0);
	order = &o;
	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &importer_ops, &im, &o.att), 0);
	dmabuf_resv_lock(o.resv);
	assert_int_equal(pthread_create(&t, NULL, mapper, &o), 0);
	sem_wait(&o.in_op); /* the mapper holds the context now */
	assert_int_equal(dmabuf_move_notify(buf), 0);
	assert_true(dmb_resv_held(o.resv));
	dmabuf_resv_unlock(o.resv);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(o.map_ret, 0);
	assert_int_equal(im.moved, 1);
	assert_int_equal(dmabuf_unmap_attachment(o.att, o.sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, o.att), 0);
	sem_destroy(&o.in_op);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(dynamic_attach_rules),
		harness_test(pin_rules),
		harness_test(move_notify_reaches_dynamic_importers),
		harness_test(migrate_gives_new_placement),
		harness_test(migrate_refusals),
		harness_test(static_map_waits_for_the_move),
		harness_test(revoke_rules),
		harness_test(static_importer_is_mapped_once),
		harness_test(move_notify_under_resv_does_not_deadlock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
