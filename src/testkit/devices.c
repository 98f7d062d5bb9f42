/* SPDX-License-Identifier: MIT */
/* Device presets (dmabuf-test.h): typical constraints of real devices. */
#include <errno.h>
#include <string.h>

#include "testkit.h"

/* Largest page multiple below 4 GiB: what drivers that call
 * dma_set_max_seg_size(UINT_MAX) get, aligned to pages. */
#define SEG_4G (0x100000000ull - 4096)

static const struct dmabuf_device_info presets[DMABUF_TEST_DEVICE_PRESET_COUNT] = {
	[DMABUF_TEST_DEVICE_GPU] = {
		.name = "gpu", .dma_mask_bits = 48, .max_segment_size = SEG_4G,
		.flags = DMABUF_DEVICE_IOMMU | DMABUF_DEVICE_P2P,
	},
	[DMABUF_TEST_DEVICE_DISPLAY] = {
		.name = "display", .dma_mask_bits = 32, .max_segment_size = SEG_4G,
		.flags = DMABUF_DEVICE_CONTIGUOUS,
	},
	[DMABUF_TEST_DEVICE_CAMERA] = {
		.name = "camera", .dma_mask_bits = 32, .max_segment_size = 64 * 1024,
	},
};

DMABUF_TEST_EXPORT int dmabuf_test_device_get_preset(enum dmabuf_test_device_preset preset,
						     struct dmabuf_device_info *info)
{
	if ((unsigned int)preset >= DMABUF_TEST_DEVICE_PRESET_COUNT || !info)
		return -EINVAL;
	*info = presets[preset];
	info->struct_size = DMABUF_STRUCT_V1;
	return 0;
}

DMABUF_TEST_EXPORT int dmabuf_test_device_new(struct dmabuf_ctx *ctx,
					      enum dmabuf_test_device_preset preset,
					      const char *name, struct dmabuf_device **out)
{
	struct dmabuf_device_info info;
	int ret = dmabuf_test_device_get_preset(preset, &info);

	if (ret < 0)
		return ret;
	if (name)
		info.name = name;
	return dmabuf_device_new(ctx, &info, out);
}
