/* SPDX-License-Identifier: MIT */
/*
 * In-process walk-through: an exporter with its own ops, two devices with
 * different DMA constraints, attach, map, the page lists each device gets,
 * CPU access in a begin/end bracket, and device DMA through the mappings.
 *
 * Every exporter op prints when the library calls it, so the output shows
 * the order of calls a kernel driver would see.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dmabuf.h>

#define FRAME_SIZE (4u << 20)

static int failures;
#define CHECK(expr)                                                             \
	do {                                                                    \
		int _r = (expr);                                                \
		if (_r < 0) {                                                   \
			fprintf(stderr, "FAILED: %s = %d (%s)\n", #expr, _r,    \
				strerror(-_r));                                 \
			failures++;                                             \
			goto out;                                               \
		}                                                               \
	} while (0)

struct camera {
	const char *name;
	int frames_released;
};

static int cam_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	printf("  [exporter] attach: %s\n",
	       dmabuf_device_get_name(dmabuf_attachment_get_device(att)));
	return dmabuf_backing_check_device(buf, dmabuf_attachment_get_device(att));
}

static void cam_detach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	printf("  [exporter] detach: %s\n",
	       dmabuf_device_get_name(dmabuf_attachment_get_device(att)));
}

static int cam_map(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		   struct dmabuf_sg_table **sgt)
{
	printf("  [exporter] map for %s (frames are chosen now, for every attached device)\n",
	       dmabuf_device_get_name(dmabuf_attachment_get_device(att)));
	return dmabuf_backing_map(att, dir, sgt);
}

static void cam_unmap(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
		      enum dmabuf_direction dir)
{
	printf("  [exporter] unmap for %s\n",
	       dmabuf_device_get_name(dmabuf_attachment_get_device(att)));
	dmabuf_backing_unmap(att, sgt, dir);
}

static void cam_release(struct dmabuf *buf)
{
	struct camera *cam = dmabuf_get_priv(buf);

	cam->frames_released++;
	printf("  [exporter] release: last reference, fd and mapping are gone\n");
}

static int cam_begin(struct dmabuf *buf, enum dmabuf_direction dir)
{
	printf("  [exporter] begin_cpu_access(%s)\n", dir == DMABUF_TO_DEVICE ? "write" : "read");
	return 0;
}

static int cam_end(struct dmabuf *buf, enum dmabuf_direction dir)
{
	printf("  [exporter] end_cpu_access(%s)\n", dir == DMABUF_TO_DEVICE ? "write" : "read");
	return 0;
}

static const struct dmabuf_ops camera_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = cam_attach,
	.detach = cam_detach,
	.map = cam_map,
	.unmap = cam_unmap,
	.release = cam_release,
	.begin_cpu_access = cam_begin,
	.end_cpu_access = cam_end,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

static void print_table(const char *who, struct dmabuf_sg_table *sgt)
{
	const struct dmabuf_sg_entry *e;
	const struct dmabuf_dma_entry *d;
	unsigned int i;

	printf("  %s: %u CPU entr%s, %u DMA entr%s\n", who,
	       dmabuf_sg_table_get_cpu_count(sgt), dmabuf_sg_table_get_cpu_count(sgt) == 1 ? "y" : "ies",
	       dmabuf_sg_table_get_dma_count(sgt), dmabuf_sg_table_get_dma_count(sgt) == 1 ? "y" : "ies");
	dmabuf_for_each_sgtable_sg(sgt, e, i) {
		if (i == 3) {
			printf("      ...\n");
			break;
		}
		printf("      cpu[%u] offset %#9llx len %#8llx phys %#llx\n", i,
		       (unsigned long long)e->offset, (unsigned long long)e->length,
		       (unsigned long long)e->phys);
	}
	dmabuf_for_each_sgtable_dma_sg(sgt, d, i) {
		if (i == 3) {
			printf("      ...\n");
			break;
		}
		printf("      dma[%u] addr %#llx len %#llx\n", i,
		       (unsigned long long)d->dma_addr, (unsigned long long)d->length);
	}
}

int main(void)
{
	struct dmabuf_ctx_config cfg = { .seed = 2011 };
	struct camera cam = { .name = "camera" };
	struct dmabuf_export_info info = {
		.exp_name = "camera", .ops = &camera_ops, .size = FRAME_SIZE,
		.flags = O_RDWR, .priv = &cam, .alloc = DMABUF_ALLOC_DEFERRED,
	};
	struct dmabuf_device_info enc_info = {
		.name = "encoder", .dma_mask_bits = 64, .flags = DMABUF_DEVICE_IOMMU,
		.max_segment_size = 64 * 1024,
	};
	struct dmabuf_device_info disp_info = {
		.name = "display", .dma_mask_bits = 32,
		.flags = DMABUF_DEVICE_CONTIGUOUS, .max_segment_size = 0xfffff000,
	};
	struct dmabuf_ctx *ctx = NULL;
	struct dmabuf_device *enc = NULL, *disp = NULL;
	struct dmabuf *buf = NULL;
	struct dmabuf_attachment *ae = NULL, *ad = NULL;
	struct dmabuf_sg_table *se = NULL, *sd = NULL;
	uint8_t *cpu = NULL, pixels[16];

	CHECK(dmabuf_ctx_new(&cfg, &ctx));
	CHECK(dmabuf_device_new(ctx, &enc_info, &enc));
	CHECK(dmabuf_device_new(ctx, &disp_info, &disp));

	printf("1. The camera driver exports a 4 MiB frame; frames are chosen at first map.\n");
	CHECK(dmabuf_export(ctx, &info, &buf));

	printf("2. Both devices attach.\n");
	CHECK(dmabuf_attach(buf, enc, &ae));
	CHECK(dmabuf_attach(buf, disp, &ad));

	printf("3. The camera fills the frame, inside a CPU access bracket.\n");
	CHECK(dmabuf_begin_cpu_access(buf, DMABUF_TO_DEVICE));
	CHECK(dmabuf_vmap(buf, (void **)&cpu));
	for (unsigned int i = 0; i < FRAME_SIZE; i++)
		cpu[i] = (uint8_t)(i * 7);
	CHECK(dmabuf_vunmap(buf, cpu));
	CHECK(dmabuf_end_cpu_access(buf, DMABUF_TO_DEVICE));

	printf("4. Each device maps the buffer and gets its own page list.\n");
	CHECK(dmabuf_map_attachment(ae, DMABUF_TO_DEVICE, &se));
	print_table("encoder (IOMMU, 64 KiB segments)", se);
	CHECK(dmabuf_map_attachment(ad, DMABUF_TO_DEVICE, &sd));
	print_table("display (no IOMMU, contiguous, 32-bit)", sd);

	printf("5. The devices read the frame by DMA, through their own addresses.\n");
	uint64_t addr = dmabuf_sg_table_get_dma_entries(se)[1].dma_addr;
	CHECK(dmabuf_dma_read(enc, addr, pixels, sizeof(pixels)));
	printf("  encoder read at %#llx: %02x %02x %02x %02x (expected %02x %02x %02x %02x)\n",
	       (unsigned long long)addr, pixels[0], pixels[1], pixels[2], pixels[3],
	       (uint8_t)(65536 * 7), (uint8_t)(65537 * 7), (uint8_t)(65538 * 7),
	       (uint8_t)(65539 * 7));
	if (pixels[1] != (uint8_t)(65537 * 7))
		failures++;
	addr = dmabuf_sg_table_get_dma_entries(sd)[0].dma_addr;
	CHECK(dmabuf_dma_read(disp, addr + FRAME_SIZE - 4, pixels, 4));
	if (pixels[3] != (uint8_t)((FRAME_SIZE - 1) * 7))
		failures++;
	printf("  display read its last pixel: %02x\n", pixels[3]);

	printf("6. Unmap, then a late DMA by the encoder faults instead of corrupting memory.\n");
	uint64_t stale = dmabuf_sg_table_get_dma_entries(se)[0].dma_addr;
	CHECK(dmabuf_unmap_attachment(ae, se, DMABUF_TO_DEVICE));
	se = NULL;
	int r = dmabuf_dma_write(enc, stale, pixels, 4);
	struct dmabuf_dma_fault fault;
	printf("  late write: %d (%s); faults recorded: %d\n", r, strerror(-r),
	       dmabuf_device_get_faults(enc, &fault, 1));
	if (r != -EFAULT)
		failures++;

	printf("7. Detach and put: the exporter's release runs.\n");
	CHECK(dmabuf_unmap_attachment(ad, sd, DMABUF_TO_DEVICE));
	sd = NULL;
	CHECK(dmabuf_detach(buf, ae));
	ae = NULL;
	CHECK(dmabuf_detach(buf, ad));
	ad = NULL;
	CHECK(dmabuf_put(buf));
	buf = NULL;
	if (cam.frames_released != 1)
		failures++;
out:
	if (buf)
		dmabuf_put(buf);
	dmabuf_ctx_destroy(ctx);
	printf("%s\n", failures ? "in-process example FAILED" : "in-process example OK");
	return failures ? 1 : 0;
}
