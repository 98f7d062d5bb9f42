/* SPDX-License-Identifier: MIT */
/* Attachments, maps and unmaps through the exporter's ops; deferred
 * allocation negotiated with the attached devices. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "exporter.h"

#define MiB (1024ull * 1024)

static void attach_detach_calls_ops(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_attachment *a1, *a2;
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	int marker;

	assert_int_equal(dmabuf_attach(buf, dev, &a1), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &a2), 0);
	assert_int_equal(tx.attach, 2);
	assert_ptr_equal(dmabuf_attachment_get_buf(a1), buf);
	assert_ptr_equal(dmabuf_attachment_get_device(a1), dev);
	assert_int_equal(dmabuf_attachment_set_priv(a1, &marker), 0);
	assert_ptr_equal(dmabuf_attachment_get_priv(a1), &marker);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 2);
	/* a device in use cannot go away */
	assert_int_equal(dmabuf_device_destroy(dev), -EBUSY);
	assert_int_equal(dmabuf_detach(buf, a1), 0);
	assert_int_equal(tx.detach, 1);
	/* stale attachment: detected, not dereferenced */
	assert_int_equal(dmabuf_detach(buf, a1), -EINVAL);
	assert_null(dmabuf_attachment_get_buf(a1));
	struct dmabuf_sg_table *sgt = NULL;
	assert_int_equal(dmabuf_map_attachment(a1, DMABUF_BIDIRECTIONAL, &sgt), -EINVAL);
	assert_null(sgt);
	assert_int_equal(tx.map, 0);
	assert_int_equal(dmabuf_detach(buf, a2), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(ctx);
}

static void attach_refusal_and_bad_arguments(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0), *other = tx_ctx_new(0);
	struct test_exporter tx = { .refuse_attach = -EBUSY };
	struct dmabuf_device *dev = tx_device(ctx, "dev", 64, 0, 0);
	struct dmabuf_device *foreign = tx_device(other, "foreign", 64, 0, 0);
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	assert_int_equal(dmabuf_attach(buf, dev, &att), -EBUSY);
	assert_null(att);
	tx.refuse_attach = 0;
	assert_int_equal(dmabuf_attach(buf, foreign, &att), -EINVAL);
	assert_int_equal(dmabuf_attach(buf, NULL, &att), -EINVAL);
	assert_int_equal(dmabuf_attach(NULL, dev, &att), -EINVAL);
	assert_int_equal(dmabuf_attach(buf, dev, NULL), -EINVAL);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(other);
	dmabuf_ctx_destroy(ctx);
}

static void map_builds_tables(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = tx_device(ctx, "enc", 64, DMABUF_DEVICE_IOMMU, 64 * 1024);
	struct dmabuf *buf = tx_export(ctx, &tx, 4 * MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt, *sgt2;
	const struct dmabuf_sg_entry *e;
	const struct dmabuf_dma_entry *d;
	uint64_t total = 0, next_off = 0;
	unsigned int i;

	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_NONE, &sgt), -EINVAL);
	assert_int_equal(dmabuf_map_attachment(att, (enum dmabuf_direction)9, &sgt), -EINVAL);
	assert_int_equal(tx.map, 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(tx.map, 1);
	assert_int_equal(tx.last_dir, DMABUF_TO_DEVICE);
	/* CPU entries cover the buffer in order, coalesced */
	dmabuf_for_each_sgtable_sg(sgt, e, i) {
		assert_int_equal(e->offset, next_off);
		assert_true(e->length > 0 && e->length % 4096 == 0);
		if (i > 0)
			assert_true(e->phys != e[-1].phys + e[-1].length);
		next_off += e->length;
	}
	assert_int_equal(next_off, 4 * MiB);
	/* IOMMU: one IOVA range cut at the 64 KiB max segment */
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 64);
	dmabuf_for_each_sgtable_dma_sg(sgt, d, i) {
		assert_int_equal(d->length, 64 * 1024);
		if (i > 0)
			assert_int_equal(d->dma_addr, d[-1].dma_addr + d[-1].length);
		total += d->length;
	}
	assert_int_equal(total, dmabuf_sg_table_get_size(sgt));
	/* a second mapping gets its own addresses */
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_FROM_DEVICE, &sgt2), 0);
	assert_true(dmabuf_sg_table_get_dma_entries(sgt2)[0].dma_addr !=
		    dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr);
	/* unmap with the wrong direction or the wrong table: -EINVAL */
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_FROM_DEVICE), -EINVAL);
	assert_int_equal(dmabuf_unmap_attachment(att, (void *)&tx, DMABUF_TO_DEVICE), -EINVAL);
	assert_int_equal(tx.unmap, 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), -EINVAL);
	assert_int_equal(tx.unmap, 1);
	/* detach with a live mapping unmaps it first */
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(tx.unmap, 2);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void unmap_of_other_attachments_table(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_attachment *a, *b;
	struct dmabuf_sg_table *sa;

	assert_int_equal(dmabuf_attach(buf, dev, &a), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &b), 0);
	assert_int_equal(dmabuf_map_attachment(a, DMABUF_BIDIRECTIONAL, &sa), 0);
	assert_int_equal(dmabuf_unmap_attachment(b, sa, DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(dmabuf_unmap_attachment(a, sa, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, a), 0);
	assert_int_equal(dmabuf_detach(buf, b), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void exporter_map_error_propagates(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { .refuse_map = -ENOSPC };
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), -ENOSPC);
	assert_null(sgt);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.mappings, 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

/* A static attachment of a pinning exporter is pinned from attach to
 * detach, as dma_buf_dynamic_attach() pins it (the kernel pins per map only
 * for a dynamic importer without CONFIG_DMABUF_MOVE_NOTIFY). */
static void static_attachment_pinned_from_attach_to_detach(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "pinned", .ops = &tx_pin_ops, .size = MiB,
		.flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_info bi = { .struct_size = sizeof(bi) };
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *s1, *s2;
	struct dmabuf *buf;

	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(tx.pin, 1);
	assert_int_equal(dmabuf_attachment_get_dynamic(att), 0);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.pin_count, 1);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &s1), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &s2), 0);
	assert_int_equal(tx.pin, 1);
	assert_int_equal(dmabuf_unmap_attachment(att, s1, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, s2, DMABUF_TO_DEVICE), 0);
	assert_int_equal(tx.unpin, 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(tx.unpin, 1);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.pin_count, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void system_backing_refuses_contiguous_device(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	/* scanout: no IOMMU, needs one contiguous run */
	struct dmabuf_device *disp = tx_device(ctx, "display", 32, DMABUF_DEVICE_CONTIGUOUS,
					       UINT32_MAX & ~4095u);
	struct dmabuf *sys = tx_export(ctx, &tx, 8 * MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct test_exporter tc = { 0 };
	struct dmabuf *cma = tx_export(ctx, &tc, 8 * MiB, O_RDWR, DMABUF_ALLOC_CONTIGUOUS);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;

	/* The exporter's attach op sees the scattered backing and refuses. */
	assert_int_equal(dmabuf_attach(sys, disp, &att), -EBUSY);
	/* A contiguous buffer works: one entry, DMA = physical, below 4 GiB. */
	assert_int_equal(dmabuf_attach(cma, disp, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), 1);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 1);
	assert_int_equal(dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
			 dmabuf_sg_table_get_cpu_entries(sgt)[0].phys);
	assert_true(dmabuf_sg_table_get_cpu_entries(sgt)[0].phys + 8 * MiB <= (1ull << 32));
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(cma, att), 0);
	assert_int_equal(dmabuf_put(sys), 0);
	assert_int_equal(dmabuf_put(cma), 0);
	dmabuf_ctx_destroy(ctx);
}

static void deferred_allocation_satisfies_every_device(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *enc = tx_device(ctx, "encoder", 64, DMABUF_DEVICE_IOMMU, 64 * 1024);
	struct dmabuf_device *disp = tx_device(ctx, "display", 32, DMABUF_DEVICE_CONTIGUOUS,
					       UINT32_MAX & ~4095u);
	struct dmabuf *buf = tx_export(ctx, &tx, 8 * MiB, O_RDWR, DMABUF_ALLOC_DEFERRED);
	struct dmabuf_attachment *ae, *ad;
	struct dmabuf_sg_table *se, *sd;
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_false(info.backing_allocated);
	assert_int_equal(dmabuf_attach(buf, enc, &ae), 0);
	assert_int_equal(dmabuf_attach(buf, disp, &ad), 0);
	/* The first map chooses frames for both: contiguous, below 4 GiB. */
	assert_int_equal(dmabuf_map_attachment(ae, DMABUF_FROM_DEVICE, &se), 0);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_true(info.backing_allocated && info.contiguous);
	assert_int_equal(dmabuf_map_attachment(ad, DMABUF_TO_DEVICE, &sd), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sd), 1);
	assert_true(dmabuf_sg_table_get_dma_entries(sd)[0].dma_addr + 8 * MiB <= (1ull << 32));
	assert_int_equal(dmabuf_unmap_attachment(ae, se, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_unmap_attachment(ad, sd, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(buf, ae), 0);
	assert_int_equal(dmabuf_detach(buf, ad), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void deferred_with_32bit_device_stays_low(void **state)
{
	struct dmabuf_ctx_config cfg = { .seed = 7, .phys_size = 64ull << 30 };
	struct dmabuf_ctx *ctx;
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	const struct dmabuf_sg_entry *e;
	unsigned int i;

	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	dev = tx_device(ctx, "dma32", 32, 0, 0);
	buf = tx_export(ctx, &tx, 16 * MiB, O_RDWR, DMABUF_ALLOC_DEFERRED);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_true(dmabuf_sg_table_get_cpu_count(sgt) > 1); /* scattered is fine */
	dmabuf_for_each_sgtable_sg(sgt, e, i)
		assert_true(e->phys + e->length <= (1ull << 32));
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void mask_violation_is_eio(void **state)
{
	struct dmabuf_ctx_config cfg = { .seed = 3, .phys_size = 64ull << 30 };
	struct dmabuf_ctx *ctx;
	struct test_exporter tx = { 0 };
	struct dmabuf_ops ops = tx_ops;
	struct dmabuf_export_info info = {
		.exp_name = "noattachcheck", .ops = &ops, .size = 64 * MiB,
		.flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt = NULL;

	ops.attach = NULL; /* an exporter that does not check at attach */
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	dev = tx_device(ctx, "dma32", 32, 0, 0);
	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	/* 64 MiB scattered over 64 GiB: some frames lie above 4 GiB */
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), -EIO);
	assert_null(sgt);
	assert_int_equal(tx.map, 1);
	assert_int_equal(tx.unmap, 1); /* the exporter's table was given back */
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(attach_detach_calls_ops),
		harness_test(attach_refusal_and_bad_arguments),
		harness_test(map_builds_tables),
		harness_test(unmap_of_other_attachments_table),
		harness_test(exporter_map_error_propagates),
		harness_test(static_attachment_pinned_from_attach_to_detach),
		harness_test(system_backing_refuses_contiguous_device),
		harness_test(deferred_allocation_satisfies_every_device),
		harness_test(deferred_with_32bit_device_stays_low),
		harness_test(mask_violation_is_eio),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
