/* SPDX-License-Identifier: MIT */
/*
 * The README's first example ("What it looks like"), built and run by the
 * tests. tests/check-readme.py checks that the README shows exactly the code
 * below this comment: edit both together.
 */
#include <dmabuf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	struct dmabuf_ctx *ctx;
	if (dmabuf_ctx_new(NULL, &ctx) < 0)                 /* one simulated host */
		return 1;

	/* A heap allocation returns a dma-buf fd, as DMA_HEAP_IOCTL_ALLOC does. */
	int fd = dmabuf_heap_alloc(ctx, "system", 4 << 20, O_RDWR | O_CLOEXEC, 0);

	struct dmabuf *buf;
	if (fd < 0 || dmabuf_get(ctx, fd, &buf) < 0)        /* dma_buf_get() */
		return 1;

	struct dmabuf_device_info gpu_info = {
		.name = "gpu", .dma_mask_bits = 64, .flags = DMABUF_DEVICE_IOMMU,
	};
	struct dmabuf_device *gpu;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	if (dmabuf_device_new(ctx, &gpu_info, &gpu) < 0 ||
	    dmabuf_attach(buf, gpu, &att) < 0 ||          /* dma_buf_attach() */
	    dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) < 0) /* dma_buf_map_attachment() */
		return 1;

	const struct dmabuf_dma_entry *e;
	unsigned int i;
	dmabuf_for_each_sgtable_dma_sg(sgt, e, i)           /* for_each_sgtable_dma_sg() */
		printf("segment %u: %#llx + %#llx\n", i, (unsigned long long)e->dma_addr,
		       (unsigned long long)e->length);

	uint8_t px[16];                                     /* the device reads by DMA */
	if (dmabuf_dma_read(gpu, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr, px,
			    sizeof(px)) < 0)
		return 1;

	dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE);
	dmabuf_detach(buf, att);
	dmabuf_put(buf);
	close(fd);                                          /* the last holder: release runs */
	dmabuf_ctx_destroy(ctx);
	return 0;
}
