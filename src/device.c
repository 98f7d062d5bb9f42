/* SPDX-License-Identifier: MIT */
/*
 * Stand-in devices: their DMA constraints and, behind an IOMMU, their own
 * IOVA space (an RB tree of allocated ranges, next-fit like a simple
 * iova_domain).
 */
#include <stdlib.h>
#include <string.h>

#include "private.h"

#define DEFAULT_MAX_SEG (64ull * 1024)
#define DEFAULT_BOUNDARY 0xffffffffull

static int iova_cmp(const struct dmb_iova *a, const struct dmb_iova *b)
{
	return a->start < b->start ? -1 : a->start > b->start;
}

RB_GENERATE_STATIC(dmb_iova_tree, dmb_iova, node, iova_cmp)

static inline bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

/* x rounded up to a (power of two); 0 when that overflows. */
static inline uint64_t align_up_or_0(uint64_t x, uint64_t a)
{
	uint64_t r = DMB_ALIGN_UP(x, a);

	return r < x ? 0 : r;
}

/*
 * First hole in [lo, last] (inclusive) for size bytes aligned to align that
 * does not cross a multiple of bmask + 1 (bmask 0: no such rule).
 */
static bool iova_search(struct dmabuf_device *dev, uint64_t lo, uint64_t last,
			uint64_t size, uint64_t align, uint64_t bmask,
			uint64_t *out)
{
	struct dmb_iova key, *n, *prev;
	uint64_t cand;

	cand = align_up_or_0(lo, align);
	if (!cand || lo > last)
		return false;
	key.start = cand;
	n = RB_NFIND(dmb_iova_tree, &dev->iova_tree, &key);
	prev = n ? RB_PREV(dmb_iova_tree, &dev->iova_tree, n)
		 : RB_MAX(dmb_iova_tree, &dev->iova_tree);
	if (prev && prev->start + prev->size > cand)
		n = prev;
	for (;;) {
		if (cand > last || size - 1 > last - cand)
			return false;
		if (bmask && (cand & ~bmask) != ((cand + size - 1) & ~bmask)) {
			cand = align_up_or_0((cand | bmask) + 1, align);
			if (!cand)
				return false;
			continue;
		}
		while (n && n->start + n->size <= cand)
			n = RB_NEXT(dmb_iova_tree, &dev->iova_tree, n);
		if (!n || n->start > cand + size - 1) {
			*out = cand;
			return true;
		}
		cand = align_up_or_0(n->start + n->size, align);
		if (!cand)
			return false;
		n = RB_NEXT(dmb_iova_tree, &dev->iova_tree, n);
	}
}

int dmb_iova_alloc(struct dmabuf_device *dev, uint64_t size, uint64_t align,
		   uint64_t *start)
{
	uint64_t last = dev->dma_mask, bmask = 0, from, at;
	struct dmb_iova *r;

	if (!size || !DMB_ALIGNED(size, DMB_PAGE_SIZE) || !is_pow2(align) ||
	    align < DMB_PAGE_SIZE)
		return -EINVAL;
	/* Keep a range inside one boundary window when it can fit, so the
	 * mapping needs no extra split (as iommu-dma does). */
	if (dev->info.segment_boundary != UINT64_MAX &&
	    size <= dev->info.segment_boundary + 1)
		bmask = dev->info.segment_boundary;
	from = dev->iova_next > DMB_PAGE_SIZE ? dev->iova_next : DMB_PAGE_SIZE;
	if (!iova_search(dev, from, last, size, align, bmask, &at) &&
	    !iova_search(dev, DMB_PAGE_SIZE, last, size, align, bmask, &at))
		return -ENOMEM;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->start = at;
	r->size = size;
	RB_INSERT(dmb_iova_tree, &dev->iova_tree, r);
	dev->iova_next = at + size; /* 0 after the top: wraps */
	*start = at;
	return 0;
}

void dmb_iova_free(struct dmabuf_device *dev, uint64_t start)
{
	struct dmb_iova key = { .start = start }, *r;

	r = RB_FIND(dmb_iova_tree, &dev->iova_tree, &key);
	if (!r)
		return;
	RB_REMOVE(dmb_iova_tree, &dev->iova_tree, r);
	free(r);
}

static int info_fill(struct dmabuf_device_info *in)
{
	const uint32_t known = DMABUF_DEVICE_IOMMU | DMABUF_DEVICE_CONTIGUOUS |
			       DMABUF_DEVICE_P2P;

	if (in->flags & ~known)
		return -EINVAL;
	if (!in->dma_mask_bits)
		in->dma_mask_bits = 64;
	if (!in->max_segment_size)
		in->max_segment_size = DEFAULT_MAX_SEG;
	if (!in->segment_boundary)
		in->segment_boundary = DEFAULT_BOUNDARY;
	if (!in->alignment)
		in->alignment = DMB_PAGE_SIZE;
	if (in->dma_mask_bits < DMB_PAGE_SHIFT || in->dma_mask_bits > 64)
		return -EINVAL;
	if (!DMB_ALIGNED(in->max_segment_size, DMB_PAGE_SIZE))
		return -EINVAL;
	if (!is_pow2(in->alignment) || in->alignment < DMB_PAGE_SIZE)
		return -EINVAL;
	/* A boundary is a mask (2^n - 1) of at least one page; a segment
	 * start after a boundary must still be aligned. */
	if (in->segment_boundary < DMB_PAGE_SIZE - 1 ||
	    (in->segment_boundary != UINT64_MAX && !is_pow2(in->segment_boundary + 1)))
		return -EINVAL;
	if (in->segment_boundary != UINT64_MAX &&
	    in->alignment > in->segment_boundary + 1)
		return -EINVAL;
	return 0;
}

static struct dmabuf_ctx *dev_lock(const struct dmabuf_device *dev)
{
	/* &dev->ctx of a NULL dev is undefined: check first */
	if (!dev)
		return NULL;
	return dmb_obj_lock_ctx(dev, DMB_OBJ_DEVICE, &dev->ctx);
}

int dmb_device_create(struct dmabuf_ctx *ctx, const struct dmabuf_device_info *info,
		      bool remote, struct dmabuf_device **out)
{
	struct dmabuf_device_info in = *info;
	struct dmabuf_device *dev;
	int ret;

	ret = info_fill(&in);
	if (ret < 0) {
		dmb_err(ctx, "device %s: invalid constraints", info->name ? info->name : "?");
		return ret;
	}
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	snprintf(dev->name, sizeof(dev->name), "%s", in.name ? in.name : "device");
	in.name = dev->name;
	dev->info = in;
	dev->dma_mask = in.dma_mask_bits == 64 ? UINT64_MAX
					       : (1ull << in.dma_mask_bits) - 1;
	dev->ctx = ctx;
	dev->remote = remote;
	RB_INIT(&dev->dma_tree);
	RB_INIT(&dev->iova_tree);
	dev->iova_next = DMB_PAGE_SIZE;
	ret = dmb_obj_add(dev, DMB_OBJ_DEVICE);
	if (ret < 0) {
		free(dev);
		return ret;
	}
	LIST_INSERT_HEAD(&ctx->devices, dev, ctx_link);
	*out = dev;
	return 0;
}

DMABUF_EXPORT int dmabuf_device_new(struct dmabuf_ctx *ctx,
				    const struct dmabuf_device_info *info,
				    struct dmabuf_device **out)
{
	int ret;

	if (!info || !out || !dmb_ctx_usable(ctx))
		return -EINVAL;
	dmb_lock(ctx);
	ret = dmb_device_create(ctx, info, false, out);
	dmb_unlock(ctx);
	return ret;
}

/* Unmaps whatever is still mapped on dev, then frees it. Lock held. */
void dmb_device_free(struct dmabuf_device *dev)
{
	struct dmb_dma_seg *seg;
	struct dmb_iova *r;

	while ((seg = RB_ROOT(&dev->dma_tree))) {
		dmb_err(dev->ctx, "device %s destroyed with a live mapping at %#llx: unmapping it",
			dev->name, (unsigned long long)seg->dma_addr);
		dmb_sgt_dma_unmap(seg->sgt);
	}
	while ((r = RB_MIN(dmb_iova_tree, &dev->iova_tree))) {
		RB_REMOVE(dmb_iova_tree, &dev->iova_tree, r);
		free(r);
	}
	LIST_REMOVE(dev, ctx_link);
	dmb_obj_del(dev);
	free(dev);
}

DMABUF_EXPORT int dmabuf_device_destroy(struct dmabuf_device *dev)
{
	struct dmabuf_ctx *ctx = dev_lock(dev);

	if (!ctx) {
		dmb_err(NULL, "dmabuf_device_destroy(%p): not a live device (destroyed twice?)",
			(void *)dev);
		return -EINVAL;
	}
	if (dev->remote) { /* a peer's device: the library owns it */
		dmb_unlock(ctx);
		return -EINVAL;
	}
	if (dev->attach_count || !RB_EMPTY(&dev->dma_tree)) {
		dmb_err(ctx, "dmabuf_device_destroy(%s): still attached (%u) or mapped",
			dev->name, dev->attach_count);
		dmb_unlock(ctx);
		return -EBUSY;
	}
	dmb_device_free(dev);
	dmb_unlock(ctx);
	return 0;
}

void dmb_devices_destroy_all(struct dmabuf_ctx *ctx)
{
	struct dmabuf_device *dev;

	while ((dev = LIST_FIRST(&ctx->devices))) {
		if (dev->attach_count)
			dmb_err(ctx, "device %s destroyed with %u attachment(s)",
				dev->name, dev->attach_count);
		dmb_device_free(dev);
	}
}

DMABUF_EXPORT const char *dmabuf_device_get_name(const struct dmabuf_device *dev)
{
	/* The name never changes while the device lives. */
	return dmb_obj_live(dev, DMB_OBJ_DEVICE) ? dev->name : NULL;
}

DMABUF_EXPORT int dmabuf_device_get_info(const struct dmabuf_device *dev,
					 struct dmabuf_device_info *info)
{
	struct dmabuf_ctx *ctx;

	if (!info)
		return -EINVAL;
	ctx = dev_lock(dev);
	if (!ctx)
		return -EINVAL;
	*info = dev->info;
	dmb_unlock(ctx);
	return 0;
}
