/* SPDX-License-Identifier: MIT */
/*
 * A buffer's backing as the core sees it: frames chosen for the attached
 * devices at first map (deferred allocation), and the public helpers an
 * exporter's ops use to map, check and vmap its backing. They take the
 * buffer's lock, so they live in the core, above the memory layer.
 */
#include <stdlib.h>

#include "private.h"

/* What every attached device needs from a deferred allocation. */
struct alloc_needs {
	bool contiguous;
	uint64_t limit;	/* exclusive; 0 = none */
	uint64_t align;
};

static void needs_of(struct dmabuf *buf, struct alloc_needs *n)
{
	struct dmabuf_attachment *att;

	n->contiguous = buf->alloc == DMABUF_ALLOC_CONTIGUOUS;
	n->limit = 0;
	n->align = DMB_PAGE_SIZE;
	if (buf->alloc != DMABUF_ALLOC_DEFERRED)
		return;
	LIST_FOREACH(att, &buf->attachments, buf_link) {
		const struct dmabuf_device_info *di = &att->dev->info;
		uint64_t end = att->dev->dma_mask + 1; /* 0 for a 64-bit mask */

		/* Behind an IOMMU any frame is reachable and the mapping is
		 * contiguous in IOVA space: no constraint on the frames. */
		if (di->flags & DMABUF_DEVICE_IOMMU)
			continue;
		if (di->flags & DMABUF_DEVICE_CONTIGUOUS)
			n->contiguous = true;
		if (end && (!n->limit || end < n->limit))
			n->limit = end;
		if (di->alignment > n->align) {
			n->align = di->alignment;
			/* Scattered 4 KiB chunks cannot honour it. */
			n->contiguous = true;
		}
	}
}

int dmb_backing_alloc(struct dmabuf_ctx *ctx, struct dmabuf *buf)
{
	struct dmb_backing *b = &buf->backing;
	struct alloc_needs n;
	uint64_t npages = b->size >> DMB_PAGE_SHIFT;
	int ret;

	if (b->runs)
		return 0;
	needs_of(buf, &n);
	if (n.contiguous) {
		b->runs = calloc(1, sizeof(*b->runs));
		if (!b->runs)
			return -ENOMEM;
		ret = dmb_physmem_alloc_contig(ctx->physmem, npages, n.align, n.limit, b->runs);
		if (ret < 0) {
			free(b->runs);
			b->runs = NULL;
			dmb_dbg(ctx, "buffer %s: no contiguous run of %llu pages below %#llx",
				buf->exp_name, (unsigned long long)npages,
				(unsigned long long)n.limit);
			return ret;
		}
		b->nruns = 1;
		b->from_cma = true;
		return 0;
	}
	ret = dmb_physmem_alloc_system(ctx->physmem, npages, n.limit, &b->runs, &b->nruns);
	if (ret < 0)
		dmb_dbg(ctx, "buffer %s: no %llu system pages below %#llx",
			buf->exp_name, (unsigned long long)npages,
			(unsigned long long)n.limit);
	return ret;
}

DMABUF_EXPORT int dmabuf_backing_check_device(struct dmabuf *buf,
					      const struct dmabuf_device *dev)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock(buf);
	const struct dmb_backing *b;
	int ret = 0;

	if (!ctx)
		return -EINVAL;
	if (!dmb_obj_live(dev, DMB_OBJ_DEVICE)) {
		dmb_unlock(ctx);
		return -EINVAL;
	}
	b = &buf->backing;
	if (b->runs && !(dev->info.flags & DMABUF_DEVICE_IOMMU)) {
		if ((dev->info.flags & DMABUF_DEVICE_CONTIGUOUS) && b->nruns > 1)
			ret = -EBUSY;
		for (size_t i = 0; i < b->nruns && !ret; i++) {
			uint64_t last = b->runs[i].addr +
					(b->runs[i].npages << DMB_PAGE_SHIFT) - 1;

			if (last > dev->dma_mask)
				ret = -EBUSY;
		}
	}
	dmb_unlock(ctx);
	return ret;
}

int dmb_backing_table_locked(struct dmabuf *buf, struct dmabuf_sg_table **out)
{
	struct dmabuf_sg_table *sgt;
	int ret;

	dmb_assert_locked(buf->ctx);
	ret = dmb_backing_alloc(buf->ctx, buf);
	if (ret == 0)
		ret = dmb_sgt_new(&sgt);
	if (ret == 0) {
		ret = dmb_sgt_from_runs(sgt, buf->backing.runs, buf->backing.nruns);
		if (ret < 0)
			dmb_sgt_free(sgt);
		else
			*out = sgt;
	}
	return ret;
}

DMABUF_EXPORT int dmabuf_backing_map(struct dmabuf_attachment *att,
				     enum dmabuf_direction dir,
				     struct dmabuf_sg_table **out)
{
	struct dmabuf_ctx *ctx;
	int ret;

	if (!out)
		return -EINVAL;
	ctx = att ? dmb_obj_lock_ctx(att, DMB_OBJ_ATTACHMENT, &att->ctx) : NULL;
	if (!ctx)
		return -EINVAL;
	ret = dmb_backing_table_locked(att->buf, out);
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT void dmabuf_backing_unmap(struct dmabuf_attachment *att,
					struct dmabuf_sg_table *sgt,
					enum dmabuf_direction dir)
{
	if (dmb_obj_live(sgt, DMB_OBJ_SG_TABLE))
		dmb_sgt_free(sgt);
}

DMABUF_EXPORT int dmabuf_backing_vmap(struct dmabuf *buf, void **vaddr)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock(buf);
	int ret;

	if (!ctx)
		return -EINVAL;
	if (!vaddr) {
		dmb_unlock(ctx);
		return -EINVAL;
	}
	/* The view lives until release: vmaps after the first reuse it. */
	ret = dmb_backing_map_view(&buf->backing);
	/* Out of fds for the reopen: spare fds go first. */
	if (ret < 0 && dmb_buf_spares_drop(ctx, ret))
		ret = dmb_backing_map_view(&buf->backing);
	if (ret == 0)
		*vaddr = buf->backing.cpu_view;
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT void dmabuf_backing_vunmap(struct dmabuf *buf, void *vaddr)
{
	/* Nothing to undo: the view is unmapped with the backing. */
}
