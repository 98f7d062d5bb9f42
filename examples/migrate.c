/* SPDX-License-Identifier: MIT */
/*
 * dmabuf-migrate: an exporter that moves its buffer between a "VRAM"
 * placement (one contiguous run, as device memory) and a "system"
 * placement (scattered pages), the way a GPU driver evicts and restores a
 * buffer under memory pressure, with the importers it has:
 *
 *   - a dynamic importer (dmabuf_dynamic_attach()): told of every move
 *     through move_notify, it drops its stale mapping and maps again;
 *   - a static importer (dmabuf_attach()): pinned at attach, so the buffer
 *     stays where it is while it is attached (the move is -EBUSY).
 *
 * Each move carries a fence (a sw_sync point standing for the copy engine)
 * with KERNEL usage in the buffer's reservation object: a static importer's
 * map waits for it; a dynamic one must obey it itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dmabuf-fence.h>
#include <dmabuf.h>

#define SIZE (1024u * 4096u)

static void check(int ret, const char *what)
{
	if (ret < 0) {
		fprintf(stderr, "migrate: %s: %s\n", what, strerror(-ret));
		exit(1);
	}
}

/* ---- the exporter: a "GPU" with VRAM, owning one buffer -------------------- */

struct gpu_bo {
	enum dmabuf_alloc placement;	/* CONTIGUOUS = VRAM, SYSTEM = system */
	unsigned int pins;
	struct dmabuf_timeline *copy_engine;
	uint32_t copies;
};

static int bo_pin(struct dmabuf_attachment *att)
{
	struct gpu_bo *bo = dmabuf_get_priv(dmabuf_attachment_get_buf(att));

	bo->pins++;
	return 0;
}

static void bo_unpin(struct dmabuf_attachment *att)
{
	struct gpu_bo *bo = dmabuf_get_priv(dmabuf_attachment_get_buf(att));

	bo->pins--;
}

static void bo_release(struct dmabuf *buf)
{
}

static const struct dmabuf_ops bo_ops = {
	.version = DMABUF_OPS_VERSION,
	.pin = bo_pin,
	.unpin = bo_unpin,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = bo_release,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

static const char *placement_name(enum dmabuf_alloc a)
{
	return a == DMABUF_ALLOC_CONTIGUOUS ? "VRAM" : "system";
}

/* Moves the buffer, as the driver's eviction or restore: under the
 * buffer's reservation lock, with the copy's fence. Returns 0 or -EBUSY
 * while something pins it. */
static int bo_move(struct dmabuf *buf, struct gpu_bo *bo, enum dmabuf_alloc to,
		   struct dmabuf_fence **copy)
{
	struct dmabuf_resv *resv = dmabuf_get_resv(buf);
	int ret;

	check(dmabuf_timeline_create_fence(bo->copy_engine, ++bo->copies, copy),
	      "copy fence");
	dmabuf_resv_lock(resv);
	ret = dmabuf_backing_migrate(buf, to, *copy);
	dmabuf_resv_unlock(resv);
	if (ret == 0)
		bo->placement = to;
	printf("exporter: move to %s%s%s\n", placement_name(to),
	       ret == 0 ? ": done, copy fence pending" : ": refused, ",
	       ret == 0 ? "" : strerror(-ret));
	return ret;
}

/* ---- the dynamic importer ---------------------------------------------------- */

struct importer {
	struct dmabuf_device *dev;
	struct dmabuf_sg_table *sgt;
	unsigned int told;
};

static void importer_move_notify(struct dmabuf_attachment *att)
{
	struct importer *im = dmabuf_attachment_get_importer_priv(att);

	/* Called under the exporter's move: drop the stale mapping now, map
	 * again when the device next needs the buffer. */
	im->told++;
	if (im->sgt) {
		check(dmabuf_unmap_attachment(att, im->sgt, DMABUF_BIDIRECTIONAL), "unmap");
		im->sgt = NULL;
	}
	printf("importer: move_notify: mapping dropped\n");
}

static const struct dmabuf_importer_ops importer_ops = {
	.version = DMABUF_IMPORTER_OPS_VERSION,
	.allow_peer2peer = true,
	.move_notify = importer_move_notify,
};

/* Maps (if needed) and reads the first bytes by device DMA, after the
 * buffer's KERNEL fences: a dynamic importer obeys them itself. */
static void importer_use(struct dmabuf *buf, struct dmabuf_attachment *att, struct importer *im)
{
	char text[16] = { 0 };

	check(dmabuf_resv_wait(dmabuf_get_resv(buf), DMABUF_RESV_USAGE_KERNEL, -1), "wait");
	if (!im->sgt)
		check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &im->sgt), "map");
	check(dmabuf_dma_read(im->dev, dmabuf_sg_table_get_dma_entries(im->sgt)[0].dma_addr,
			      text, sizeof(text) - 1), "dma read");
	printf("importer: mapped as %u run(s) at phys %#llx; the device reads \"%s\"\n",
	       dmabuf_sg_table_get_cpu_count(im->sgt),
	       (unsigned long long)dmabuf_sg_table_get_cpu_entries(im->sgt)[0].phys, text);
}

int main(void)
{
	struct dmabuf_ctx_config cfg = { .seed = 7 };
	struct dmabuf_device_info di = { .name = "gpu", .flags = DMABUF_DEVICE_IOMMU };
	struct dmabuf_device_info si = { .name = "scanout", .flags = DMABUF_DEVICE_IOMMU };
	struct gpu_bo bo = { .placement = DMABUF_ALLOC_CONTIGUOUS };
	struct dmabuf_export_info info = {
		.exp_name = "gpu-bo", .ops = &bo_ops, .size = SIZE, .flags = O_RDWR,
		.priv = &bo, .alloc = DMABUF_ALLOC_CONTIGUOUS,
	};
	struct importer im = { 0 };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *scanout;
	struct dmabuf *buf;
	struct dmabuf_attachment *att, *st;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_fence *copy;
	struct dmabuf_ctx_stats stats = { .struct_size = sizeof(stats) };
	char *cpu;

	check(dmabuf_ctx_new(&cfg, &ctx), "context");
	check(dmabuf_timeline_new("copy-engine", &bo.copy_engine), "timeline");
	check(dmabuf_device_new(ctx, &di, &im.dev), "device");
	check(dmabuf_device_new(ctx, &si, &scanout), "device");
	check(dmabuf_export(ctx, &info, &buf), "export");
	check(dmabuf_vmap(buf, (void **)&cpu), "vmap");
	strcpy(cpu, "frame 1");
	printf("exporter: buffer of %u KiB in %s\n", SIZE / 1024, placement_name(bo.placement));

	check(dmabuf_dynamic_attach(buf, im.dev, &importer_ops, &im, &att), "dynamic attach");
	importer_use(buf, att, &im);

	/* Memory pressure: evict to system memory. The copy engine signals
	 * when the bytes are there; the importer's next use waits for it. */
	check(bo_move(buf, &bo, DMABUF_ALLOC_SYSTEM, &copy), "evict");
	check(dmabuf_timeline_inc(bo.copy_engine, 1), "copy done");
	dmabuf_fence_put(copy);
	importer_use(buf, att, &im);

	/* A static importer (scanout) pins the buffer: no move meanwhile. */
	check(dmabuf_attach(buf, scanout, &st), "static attach");
	printf("scanout: static attachment, the buffer is pinned (%u pin)\n", bo.pins);
	if (bo_move(buf, &bo, DMABUF_ALLOC_CONTIGUOUS, &copy) != -EBUSY)
		check(-EPROTO, "a pinned buffer moved");
	check(dmabuf_timeline_inc(bo.copy_engine, 1), "unused copy");
	dmabuf_fence_put(copy);
	check(dmabuf_map_attachment(st, DMABUF_TO_DEVICE, &sgt), "scanout map");
	check(dmabuf_unmap_attachment(st, sgt, DMABUF_TO_DEVICE), "scanout unmap");
	check(dmabuf_detach(buf, st), "scanout detach");

	/* Unpinned again: restore to VRAM. */
	check(bo_move(buf, &bo, DMABUF_ALLOC_CONTIGUOUS, &copy), "restore");
	check(dmabuf_timeline_inc(bo.copy_engine, 1), "copy done");
	dmabuf_fence_put(copy);
	importer_use(buf, att, &im);

	check(dmabuf_ctx_get_stats(ctx, &stats), "stats");
	printf("moves: %llu, importer told %u times\n", (unsigned long long)stats.moves, im.told);
	if (stats.moves != 2 || im.told != 2 || bo.placement != DMABUF_ALLOC_CONTIGUOUS)
		check(-EPROTO, "unexpected moves");

	check(dmabuf_unmap_attachment(att, im.sgt, DMABUF_BIDIRECTIONAL), "unmap");
	check(dmabuf_detach(buf, att), "detach");
	check(dmabuf_vunmap(buf, cpu), "vunmap");
	check(dmabuf_put(buf), "put");
	check(dmabuf_device_destroy(im.dev), "device");
	check(dmabuf_device_destroy(scanout), "device");
	dmabuf_timeline_destroy(bo.copy_engine);
	check(dmabuf_ctx_destroy(ctx), "context");
	printf("migrate: ok\n");
	return 0;
}
