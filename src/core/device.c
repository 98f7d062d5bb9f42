/* SPDX-License-Identifier: MIT */
/*
 * Stand-in devices: their DMA constraints and, behind an IOMMU, their own
 * IOVA space (memory/iova.c).
 */
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>

#include "private.h"

#define DEFAULT_MAX_SEG (64ull * 1024)
#define DEFAULT_BOUNDARY 0xffffffffull


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
	if (!dmb_is_pow2(in->alignment) || in->alignment < DMB_PAGE_SIZE)
		return -EINVAL;
	/* A boundary is a mask (2^n - 1) of at least one page; a segment
	 * start after a boundary must still be aligned. */
	if (in->segment_boundary < DMB_PAGE_SIZE - 1 ||
	    (in->segment_boundary != UINT64_MAX && !dmb_is_pow2(in->segment_boundary + 1)))
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
	strlcpy(dev->name, in.name ? in.name : "device", sizeof(dev->name));
	in.name = dev->name;
	dev->info = in;
	dev->dma_mask = in.dma_mask_bits == 64 ? UINT64_MAX
					       : (1ull << in.dma_mask_bits) - 1;
	dev->ctx = ctx;
	dev->remote = remote;
	RB_INIT(&dev->dma_tree);
	dmb_iova_init(&dev->iova, dev->dma_mask, in.segment_boundary);
	ret = dmb_obj_add(dev, DMB_OBJ_DEVICE);
	if (ret < 0) {
		free(dev);
		return ret;
	}
	LIST_INSERT_HEAD(&ctx->devices, dev, ctx_link);
	*out = dev;
	return 0;
}

bool dmb_device_matches(const struct dmabuf_device *dev, const struct dmabuf_device_info *info)
{
	struct dmabuf_device_info in = *info;

	if (info_fill(&in) < 0)
		return false;
	/* The name as dmb_device_create() keeps it: its first 31 bytes. */
	return strncmp(dev->name, in.name ? in.name : "device", sizeof(dev->name) - 1) == 0 &&
	       dev->info.dma_mask_bits == in.dma_mask_bits &&
	       dev->info.max_segment_size == in.max_segment_size &&
	       dev->info.segment_boundary == in.segment_boundary &&
	       dev->info.alignment == in.alignment && dev->info.flags == in.flags;
}

DMABUF_EXPORT int dmabuf_device_new(struct dmabuf_ctx *ctx,
				    const struct dmabuf_device_info *info,
				    struct dmabuf_device **out)
{
	struct dmabuf_device_info in;
	int ret;

	if (!info || !out || !dmb_ctx_usable(ctx))
		return -EINVAL;
	ret = dmb_struct_in(&in, sizeof(in), info, DMB_V1_SIZE(struct dmabuf_device_info));
	if (ret < 0)
		return ret;
	dmb_lock(ctx);
	ret = dmb_device_create(ctx, &in, false, out);
	dmb_unlock(ctx);
	return ret;
}

/* Unmaps whatever is still mapped on dev, then frees it. Lock held. */
void dmb_device_free(struct dmabuf_device *dev)
{
	struct dmb_dma_seg *seg;
	while ((seg = RB_ROOT(&dev->dma_tree))) {
		dmb_err(dev->ctx, "device %s destroyed with a live mapping at %#llx: unmapping it",
			dev->name, (unsigned long long)seg->dma_addr);
		dmb_sgt_dma_unmap(seg->sgt);
	}
	dmb_iova_fini(&dev->iova);
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
