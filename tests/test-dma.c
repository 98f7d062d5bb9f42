/* SPDX-License-Identifier: MIT */
/* The simulated DMA engine: device reads and writes through live mappings,
 * IOMMU-style faults (unmapped, after unmap, direction, read-only), the
 * fault ring, and the whole path from export to device DMA. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "exporter.h"
#include "private.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)

static struct dmabuf_device *dev_new(struct dmabuf_ctx *ctx, const char *name,
				     uint32_t flags, uint64_t max_seg)
{
	struct dmabuf_device_info info = {
		.name = name, .flags = flags, .max_segment_size = max_seg,
	};
	struct dmabuf_device *dev = NULL;

	assert_int_equal(dmabuf_device_new(ctx, &info, &dev), 0);
	return dev;
}

/* A table of `size` bytes of system frames of ctx, mapped for dev. */
static struct dmabuf_sg_table *map_new(struct dmabuf_ctx *ctx, struct dmabuf_device *dev,
				       uint64_t size, enum dmabuf_direction dir,
				       uint8_t *mem, bool writable)
{
	struct dmb_phys_run *runs;
	struct dmabuf_sg_table *sgt;
	size_t n;

	assert_int_equal(dmb_physmem_alloc_system(ctx->physmem, size >> 12, 0, &runs, &n), 0);
	assert_int_equal(dmb_sgt_new(&sgt), 0);
	assert_int_equal(dmb_sgt_from_runs(sgt, runs, n), 0);
	assert_int_equal(dmb_sgt_dma_map(sgt, dev, dir, mem, writable), 0);
	dmb_physmem_free(ctx->physmem, runs, n);
	free(runs);
	return sgt;
}

static uint64_t iova_of(const struct dmabuf_sg_table *sgt)
{
	return dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr;
}

static void fill(uint8_t *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + seed);
}

static void read_write_through_iommu(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "gpu", DMABUF_DEVICE_IOMMU, 64 * KiB);
	uint8_t *mem = calloc(1, 256 * KiB), src[72 * KiB], dst[72 * KiB];
	struct dmabuf_sg_table *sgt = map_new(ctx, dev, 256 * KiB, DMABUF_BIDIRECTIONAL, mem, true);
	uint64_t iova = iova_of(sgt);

	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 4);
	fill(src, sizeof(src), 1);
	/* the bytes land in the buffer at the matching offset */
	assert_int_equal(dmabuf_dma_write(dev, iova + 10, src, 100), 0);
	assert_memory_equal(mem + 10, src, 100);
	/* across a segment edge, then across three segments */
	assert_int_equal(dmabuf_dma_write(dev, iova + 64 * KiB - 8, src, 16), 0);
	assert_memory_equal(mem + 64 * KiB - 8, src, 16);
	fill(mem + 60 * KiB, sizeof(dst), 7);
	assert_int_equal(dmabuf_dma_read(dev, iova + 60 * KiB, dst, sizeof(dst)), 0);
	assert_memory_equal(dst, mem + 60 * KiB, sizeof(dst));
	/* the whole buffer, first to last byte */
	uint8_t *all = malloc(256 * KiB);
	assert_int_equal(dmabuf_dma_read(dev, iova, all, 256 * KiB), 0);
	assert_memory_equal(all, mem, 256 * KiB);
	free(all);
	/* one byte too far: a fault */
	assert_int_equal(dmabuf_dma_read(dev, iova + 256 * KiB - 4, dst, 5), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, NULL, 0), 1);
	/* no faults were recorded for the good accesses */
	assert_int_equal(dmabuf_device_get_faults(dev, NULL, 0), 0);
	dmb_sgt_free(sgt);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void direct_gap_faults_and_writes_nothing(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "dsp", 0, 0);
	/* two runs far apart: DMA = physical, so a gap between them */
	struct dmabuf_sg_table *sgt;
	uint8_t *mem = calloc(1, 128 * KiB), zero[128], src[128];
	struct dmabuf_dma_fault f;

	assert_int_equal(dmb_sgt_new(&sgt), 0);
	assert_int_equal(dmb_sgt_append(sgt, 0, 64 * KiB, 0x100000), 0);
	assert_int_equal(dmb_sgt_append(sgt, 64 * KiB, 64 * KiB, 0x300000), 0);
	assert_int_equal(dmb_sgt_dma_map(sgt, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	memset(zero, 0, sizeof(zero));
	fill(src, sizeof(src), 3);
	/* starts mapped, runs into the gap: nothing written, not even the
	 * mapped head */
	assert_int_equal(dmabuf_dma_write(dev, 0x100000 + 64 * KiB - 64, src, 128), -EFAULT);
	assert_memory_equal(mem + 64 * KiB - 64, zero, 64);
	assert_int_equal(dmabuf_device_get_faults(dev, &f, 1), 1);
	assert_int_equal(f.reason, DMABUF_FAULT_UNMAPPED);
	assert_int_equal(f.dma_addr, 0x100000 + 64 * KiB - 64);
	assert_int_equal(f.length, 128);
	assert_true(f.write);
	/* the second run is reached at its physical address */
	assert_int_equal(dmabuf_dma_write(dev, 0x300000, src, 128), 0);
	assert_memory_equal(mem + 64 * KiB, src, 128);
	dmb_sgt_free(sgt);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void fault_reasons(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "vpu", DMABUF_DEVICE_IOMMU, 0);
	uint8_t *mem = calloc(1, 3 * 64 * KiB), b[16] = { 1 };
	struct dmabuf_sg_table *to = map_new(ctx, dev, 64 * KiB, DMABUF_TO_DEVICE, mem, true);
	struct dmabuf_sg_table *from = map_new(ctx, dev, 64 * KiB, DMABUF_FROM_DEVICE,
					       mem + 64 * KiB, true);
	struct dmabuf_sg_table *ro = map_new(ctx, dev, 64 * KiB, DMABUF_BIDIRECTIONAL,
					     mem + 128 * KiB, false);
	uint64_t a_to = iova_of(to), a_from = iova_of(from), a_ro = iova_of(ro);
	struct dmabuf_dma_fault f[8];

	/* TO_DEVICE: the device may read only */
	assert_int_equal(dmabuf_dma_read(dev, a_to, b, 16), 0);
	assert_int_equal(dmabuf_dma_write(dev, a_to, b, 16), -EFAULT);
	/* FROM_DEVICE: write only */
	b[0] = 1;
	assert_int_equal(dmabuf_dma_write(dev, a_from, b, 16), 0);
	assert_int_equal(mem[64 * KiB], 1);
	assert_int_equal(dmabuf_dma_read(dev, a_from, b, 16), -EFAULT);
	/* read-only buffer mapped BIDIRECTIONAL: reads fine, writes fault */
	assert_int_equal(dmabuf_dma_read(dev, a_ro + 100, b, 16), 0);
	mem[128 * KiB + 5] = 9;
	assert_int_equal(dmabuf_dma_write(dev, a_ro, b, 16), -EFAULT);
	assert_int_equal(mem[128 * KiB + 5], 9);
	/* never mapped: IOVA 0 is never handed out */
	assert_int_equal(dmabuf_dma_read(dev, 0, b, 1), -EFAULT);
	/* after unmap */
	dmb_sgt_dma_unmap(to);
	assert_int_equal(dmabuf_dma_read(dev, a_to + 4096, b, 1), -EFAULT);

	assert_int_equal(dmabuf_device_get_faults(dev, f, DMB_ARRAY_SIZE(f)), 5);
	assert_int_equal(f[0].reason, DMABUF_FAULT_DIRECTION);
	assert_true(f[0].write);
	assert_int_equal(f[0].dma_addr, a_to);
	assert_int_equal(f[1].reason, DMABUF_FAULT_DIRECTION);
	assert_false(f[1].write);
	assert_int_equal(f[2].reason, DMABUF_FAULT_READ_ONLY);
	assert_int_equal(f[3].reason, DMABUF_FAULT_UNMAPPED);
	assert_int_equal(f[3].dma_addr, 0);
	assert_int_equal(f[4].reason, DMABUF_FAULT_AFTER_UNMAP);
	assert_int_equal(f[4].dma_addr, a_to + 4096);
	assert_int_equal(f[4].length, 1);
	dmb_sgt_free(to);
	dmb_sgt_free(from);
	dmb_sgt_free(ro);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void fault_ring_keeps_the_last_64(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "npu", DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_dma_fault f[80];
	uint8_t b;

	assert_int_equal(dmabuf_device_get_faults(dev, f, 80), 0);
	for (uint64_t i = 0; i < 70; i++)
		assert_int_equal(dmabuf_dma_read(dev, 0x1000 * (i + 1), &b, 1), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, f, 80), 70);
	/* oldest kept first: faults 7..70 */
	for (int i = 0; i < 64; i++)
		assert_int_equal(f[i].dma_addr, 0x1000 * (uint64_t)(i + 7));
	/* cleared */
	assert_int_equal(dmabuf_device_get_faults(dev, f, 80), 0);
	/* fewer slots than faults: the count is still the total */
	for (uint64_t i = 0; i < 3; i++)
		assert_int_equal(dmabuf_dma_write(dev, 0x10000 * (i + 1), &b, 1), -EFAULT);
	memset(f, 0, sizeof(f));
	assert_int_equal(dmabuf_device_get_faults(dev, f, 2), 3);
	assert_int_equal(f[0].dma_addr, 0x10000);
	assert_int_equal(f[1].dma_addr, 0x20000);
	assert_int_equal(f[2].dma_addr, 0);
	assert_int_equal(dmabuf_device_get_faults(dev, NULL, 1), -EINVAL);
	assert_int_equal(dmabuf_device_get_faults(NULL, f, 1), -EINVAL);
	dmabuf_ctx_destroy(ctx);
}

struct log_capture {
	int warnings;
	char last[512];
};

static void capture(void *data, enum dmabuf_log_priority prio, const char *msg)
{
	struct log_capture *lc = data;

	if (prio == DMABUF_LOG_WARNING) {
		lc->warnings++;
		snprintf(lc->last, sizeof(lc->last), "%s", msg);
	}
}

static void faults_are_logged(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "camera0", 0, 0);
	struct log_capture lc = { 0 };
	uint8_t b[4] = { 0 };

	dmabuf_ctx_set_log(ctx, capture, &lc, DMABUF_LOG_WARNING);
	assert_int_equal(dmabuf_dma_write(dev, 0xdead000, b, 4), -EFAULT);
	assert_int_equal(lc.warnings, 1);
	assert_non_null(strstr(lc.last, "camera0"));
	assert_non_null(strstr(lc.last, "0xdead000"));
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	dmabuf_ctx_destroy(ctx);
}

static void same_frames_mapped_twice_without_iommu(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "isp", 0, 0);
	uint8_t *mem = calloc(1, 64 * KiB), b[8] = { 5, 6, 7, 8 };
	struct dmabuf_sg_table *rd, *wr;
	struct dmabuf_dma_fault f;

	assert_int_equal(dmb_sgt_new(&rd), 0);
	assert_int_equal(dmb_sgt_new(&wr), 0);
	assert_int_equal(dmb_sgt_append(rd, 0, 64 * KiB, 0x200000), 0);
	assert_int_equal(dmb_sgt_append(wr, 0, 64 * KiB, 0x200000), 0);
	assert_int_equal(dmb_sgt_dma_map(rd, dev, DMABUF_TO_DEVICE, mem, true), 0);
	assert_int_equal(dmb_sgt_dma_map(wr, dev, DMABUF_FROM_DEVICE, mem, true), 0);
	/* identical DMA addresses; each access finds the mapping allowing it */
	assert_int_equal(dmabuf_dma_write(dev, 0x200000, b, 4), 0);
	assert_int_equal(dmabuf_dma_read(dev, 0x200000, b + 4, 4), 0);
	assert_memory_equal(b + 4, mem, 4);
	assert_int_equal(mem[0], 5);
	/* without the writable mapping, a write is a direction fault ... */
	dmb_sgt_dma_unmap(wr);
	assert_int_equal(dmabuf_dma_write(dev, 0x200000, b, 4), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, &f, 1), 1);
	assert_int_equal(f.reason, DMABUF_FAULT_DIRECTION);
	/* ... and without either, DMA after unmap */
	dmb_sgt_dma_unmap(rd);
	assert_int_equal(dmabuf_dma_read(dev, 0x20ff00, b, 4), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, &f, 1), 1);
	assert_int_equal(f.reason, DMABUF_FAULT_AFTER_UNMAP);
	dmb_sgt_free(rd);
	dmb_sgt_free(wr);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void bad_arguments(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "x", 0, 0);
	uint8_t b[4];

	assert_int_equal(dmabuf_dma_read(NULL, 0x1000, b, 1), -EINVAL);
	assert_int_equal(dmabuf_dma_write(NULL, 0x1000, b, 1), -EINVAL);
	assert_int_equal(dmabuf_dma_read(dev, 0x1000, NULL, 1), -EINVAL);
	assert_int_equal(dmabuf_dma_write(dev, 0x1000, NULL, 1), -EINVAL);
	/* zero bytes touch nothing and cannot fault */
	assert_int_equal(dmabuf_dma_read(dev, 0x1000, b, 0), 0);
	/* wrapping around the address space is a fault, not a crash */
	assert_int_equal(dmabuf_dma_read(dev, UINT64_MAX, b, 2), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, NULL, 0), 1);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_int_equal(dmabuf_dma_read(dev, 0x1000, b, 1), -EINVAL);
	assert_int_equal(dmabuf_device_get_faults(dev, NULL, 0), -EINVAL);
	dmabuf_ctx_destroy(ctx);
}

/* The whole path: export, attach, map, device DMA, CPU view, unmap. */
static void device_dma_into_exported_buffer(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 }, tr = { 0 };
	struct dmabuf_device *dev = dev_new(ctx, "gpu", DMABUF_DEVICE_IOMMU, 64 * KiB);
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *rob = tx_export(ctx, &tr, MiB, O_RDONLY, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_attachment *att, *rat;
	struct dmabuf_sg_table *sgt, *rsgt;
	struct dmabuf_dma_fault f;
	uint8_t src[256], back[256], *cpu;
	uint64_t iova;

	fill(src, sizeof(src), 11);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	iova = iova_of(sgt);
	/* a write straddling the 64 KiB segment edge lands in the buffer */
	assert_int_equal(dmabuf_dma_write(dev, iova + 64 * KiB - 100, src, sizeof(src)), 0);
	assert_int_equal(dmabuf_mmap(buf, 0, 128 * KiB, PROT_READ, (void **)&cpu), 0);
	assert_memory_equal(cpu + 64 * KiB - 100, src, sizeof(src));
	assert_int_equal(dmabuf_munmap(buf, cpu, 128 * KiB), 0);
	assert_int_equal(dmabuf_dma_read(dev, iova + 64 * KiB - 100, back, sizeof(back)), 0);
	assert_memory_equal(back, src, sizeof(src));
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	/* the device keeps the old address: DMA after unmap */
	assert_int_equal(dmabuf_dma_write(dev, iova, src, 1), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, &f, 1), 1);
	assert_int_equal(f.reason, DMABUF_FAULT_AFTER_UNMAP);

	/* a read-only buffer: the device may read, never write */
	assert_int_equal(dmabuf_attach(rob, dev, &rat), 0);
	assert_int_equal(dmabuf_map_attachment(rat, DMABUF_BIDIRECTIONAL, &rsgt), 0);
	iova = iova_of(rsgt);
	assert_int_equal(dmabuf_dma_read(dev, iova, back, 16), 0);
	assert_int_equal(dmabuf_dma_write(dev, iova, src, 16), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, &f, 1), 1);
	assert_int_equal(f.reason, DMABUF_FAULT_READ_ONLY);
	/* detach unmaps the live mapping, and the device notices */
	assert_int_equal(dmabuf_detach(rob, rat), 0);
	assert_int_equal(dmabuf_dma_read(dev, iova, back, 1), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, &f, 1), 1);
	assert_int_equal(f.reason, DMABUF_FAULT_AFTER_UNMAP);

	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_put(rob), 0);
	dmabuf_ctx_destroy(ctx);
}

/* One translation node covers the whole IOVA range, whatever the number of
 * DMA entries: its first and last bytes are reached, the bytes around it
 * fault, and after unmap exactly the range is "after unmap". */
static void merged_range_edges_behind_iommu(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "gpu", DMABUF_DEVICE_IOMMU, 64 * KiB);
	uint8_t *mem = calloc(1, 256 * KiB), b[2] = { 0 };
	struct dmabuf_sg_table *sgt = map_new(ctx, dev, 256 * KiB, DMABUF_BIDIRECTIONAL, mem, true);
	uint64_t iova = iova_of(sgt), end = iova + 256 * KiB;
	struct dmabuf_dma_fault f[4];
	uint8_t *all = malloc(256 * KiB);

	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 4);
	assert_int_equal(sgt->nsegs, 1);
	mem[0] = 1;
	mem[256 * KiB - 1] = 2;
	assert_int_equal(dmabuf_dma_read(dev, iova, b, 1), 0);
	assert_int_equal(b[0], 1);
	assert_int_equal(dmabuf_dma_read(dev, end - 1, b, 1), 0);
	assert_int_equal(b[0], 2);
	/* all four DMA entries in one access */
	assert_int_equal(dmabuf_dma_read(dev, iova, all, 256 * KiB), 0);
	assert_memory_equal(all, mem, 256 * KiB);
	/* one byte below, and a read running one byte past the end */
	assert_int_equal(dmabuf_dma_read(dev, iova - 1, b, 1), -EFAULT);
	assert_int_equal(dmabuf_dma_read(dev, end - 1, b, 2), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, f, 4), 2);
	assert_int_equal(f[0].reason, DMABUF_FAULT_UNMAPPED);
	assert_int_equal(f[0].dma_addr, iova - 1);
	assert_int_equal(f[1].reason, DMABUF_FAULT_UNMAPPED);
	assert_int_equal(f[1].dma_addr, end - 1);
	assert_int_equal(f[1].length, 2);
	dmb_sgt_dma_unmap(sgt);
	assert_int_equal(dmabuf_dma_read(dev, iova, b, 1), -EFAULT);
	assert_int_equal(dmabuf_dma_read(dev, end - 1, b, 1), -EFAULT);
	assert_int_equal(dmabuf_dma_read(dev, end, b, 1), -EFAULT);
	assert_int_equal(dmabuf_dma_read(dev, iova - 1, b, 1), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, f, 4), 4);
	assert_int_equal(f[0].reason, DMABUF_FAULT_AFTER_UNMAP);
	assert_int_equal(f[1].reason, DMABUF_FAULT_AFTER_UNMAP);
	assert_int_equal(f[2].reason, DMABUF_FAULT_UNMAPPED);
	assert_int_equal(f[3].reason, DMABUF_FAULT_UNMAPPED);
	free(all);
	dmb_sgt_free(sgt);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

/* Without an IOMMU: one node per physical run (appends that continue a run
 * merge), however many DMA entries the segment size cuts it into. */
static void merged_runs_without_iommu(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "dsp", 0, 64 * KiB);
	uint8_t *mem = calloc(1, 256 * KiB), b[8], src[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	struct dmabuf_sg_table *sgt;
	struct dmabuf_dma_fault f[2];

	assert_int_equal(dmb_sgt_new(&sgt), 0);
	assert_int_equal(dmb_sgt_append(sgt, 0, 64 * KiB, 0x100000), 0);
	assert_int_equal(dmb_sgt_append(sgt, 64 * KiB, 128 * KiB, 0x110000), 0);
	assert_int_equal(dmb_sgt_append(sgt, 192 * KiB, 64 * KiB, 0x800000), 0);
	assert_int_equal(dmb_sgt_dma_map(sgt, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), 2);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 4);
	assert_int_equal(sgt->nsegs, 2);
	/* across the DMA entry edges inside the first run */
	assert_int_equal(dmabuf_dma_write(dev, 0x110000 - 4, src, 8), 0);
	assert_memory_equal(mem + 64 * KiB - 4, src, 8);
	assert_int_equal(dmabuf_dma_write(dev, 0x130000 - 8, src, 8), 0);
	assert_memory_equal(mem + 192 * KiB - 8, src, 8);
	/* the second run at its own buffer offset */
	assert_int_equal(dmabuf_dma_read(dev, 0x800000 + 64 * KiB - 8, b, 8), 0);
	assert_memory_equal(b, mem + 256 * KiB - 8, 8);
	/* past the end of the first run: the gap */
	assert_int_equal(dmabuf_dma_read(dev, 0x130000 - 4, b, 8), -EFAULT);
	assert_int_equal(dmabuf_dma_read(dev, 0x100000 - 1, b, 1), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, f, 2), 2);
	assert_int_equal(f[0].reason, DMABUF_FAULT_UNMAPPED);
	assert_int_equal(f[1].reason, DMABUF_FAULT_UNMAPPED);
	dmb_sgt_free(sgt);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

/* Exporters may hand out tables whose frames overlap at different starts
 * (without an IOMMU both are live at those physical addresses): an address
 * is translated by any live mapping that covers it and allows the access,
 * not only the one starting closest below it. */
static void overlapping_runs_at_different_starts(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = dev_new(ctx, "isp", 0, 0xfffff000ull);
	uint8_t *ma = calloc(1, 192 * KiB), *mb = calloc(1, 64 * KiB), b[4] = { 9, 9, 9, 9 };
	struct dmabuf_sg_table *a, *bt;
	struct dmabuf_dma_fault f;

	assert_int_equal(dmb_sgt_new(&a), 0);
	assert_int_equal(dmb_sgt_new(&bt), 0);
	assert_int_equal(dmb_sgt_append(a, 0, 192 * KiB, 0x400000), 0);
	assert_int_equal(dmb_sgt_append(bt, 0, 64 * KiB, 0x410000), 0);
	assert_int_equal(dmb_sgt_dma_map(a, dev, DMABUF_TO_DEVICE, ma, true), 0);
	assert_int_equal(dmb_sgt_dma_map(bt, dev, DMABUF_FROM_DEVICE, mb, true), 0);
	ma[0x18000] = 7;
	ma[0x28000] = 8;
	/* inside both: b allows writes, a reads */
	assert_int_equal(dmabuf_dma_write(dev, 0x418000, b, 4), 0);
	assert_int_equal(mb[0x8000], 9);
	assert_int_equal(ma[0x18000], 7);
	assert_int_equal(dmabuf_dma_read(dev, 0x418000, b, 1), 0);
	assert_int_equal(b[0], 7);
	/* above b, still inside a */
	assert_int_equal(dmabuf_dma_read(dev, 0x428000, b, 1), 0);
	assert_int_equal(b[0], 8);
	/* a is TO_DEVICE: a write there faults on direction */
	assert_int_equal(dmabuf_dma_write(dev, 0x428000, b, 1), -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, &f, 1), 1);
	assert_int_equal(f.reason, DMABUF_FAULT_DIRECTION);
	dmb_sgt_free(bt);
	dmb_sgt_free(a);
	free(ma);
	free(mb);
	dmabuf_ctx_destroy(ctx);
}

/* A device map maps nothing into the process (an mmap failing then does not
 * matter); the first DMA maps the buffer, and its failure is an error, not
 * a DMA fault. */
static void device_map_makes_no_cpu_mapping(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = dev_new(ctx, "gpu", DMABUF_DEVICE_IOMMU, 64 * KiB);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf *buf;
	uint8_t src[16], *cpu;
	uint64_t iova;

	fill(src, sizeof(src), 5);
	dmb_sys_inject(DMB_SYS_MMAP, 1, ENOMEM);
	buf = tx_export(ctx, &tx, 256 * KiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	iova = iova_of(sgt);
	/* the armed failure is still there: the first DMA meets it */
	assert_int_equal(dmabuf_dma_write(dev, iova + 100, src, sizeof(src)), -ENOMEM);
	assert_int_equal(dmabuf_device_get_faults(dev, NULL, 0), 0);
	assert_int_equal(dmabuf_dma_write(dev, iova + 100, src, sizeof(src)), 0);
	assert_int_equal(dmabuf_mmap(buf, 0, 64 * KiB, PROT_READ, (void **)&cpu), 0);
	assert_memory_equal(cpu + 100, src, sizeof(src));
	assert_int_equal(dmabuf_munmap(buf, cpu, 64 * KiB), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(read_write_through_iommu),
		harness_test(direct_gap_faults_and_writes_nothing),
		harness_test(fault_reasons),
		harness_test(fault_ring_keeps_the_last_64),
		harness_test(faults_are_logged),
		harness_test(same_frames_mapped_twice_without_iommu),
		harness_test(bad_arguments),
		harness_test(device_dma_into_exported_buffer),
		harness_test(merged_range_edges_behind_iommu),
		harness_test(merged_runs_without_iommu),
		harness_test(overlapping_runs_at_different_starts),
		harness_test(device_map_makes_no_cpu_mapping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
