/* SPDX-License-Identifier: MIT */
/* sg tables: building and coalescing CPU entries, device constraints, and
 * the dma_map_sgtable() step for devices with and without an IOMMU. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "harness.h"
#include "private.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

static struct dmabuf_ctx *ctx_new(void)
{
	struct dmabuf_ctx_config cfg = { .seed = 1 };
	struct dmabuf_ctx *ctx = NULL;

	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	return ctx;
}

static struct dmabuf_device *dev_new(struct dmabuf_ctx *ctx, unsigned int bits,
				     uint32_t flags, uint64_t max_seg,
				     uint64_t boundary, uint64_t align)
{
	struct dmabuf_device_info info = {
		.name = "dev", .dma_mask_bits = bits, .flags = flags,
		.max_segment_size = max_seg, .segment_boundary = boundary,
		.alignment = align,
	};
	struct dmabuf_device *dev = NULL;

	assert_int_equal(dmabuf_device_new(ctx, &info, &dev), 0);
	return dev;
}

/* A table from (phys, bytes) pairs, in buffer order. */
static struct dmabuf_sg_table *table(const uint64_t (*runs)[2], size_t n)
{
	struct dmabuf_sg_table *sgt;
	uint64_t off = 0;

	assert_int_equal(dmb_sgt_new(&sgt), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(dmb_sgt_append(sgt, off, runs[i][1], runs[i][0]), 0);
		off += runs[i][1];
	}
	return sgt;
}

static void check_dma_entries(const struct dmabuf_sg_table *sgt, uint64_t max_seg,
			      uint64_t boundary)
{
	const struct dmabuf_dma_entry *d;
	uint64_t off = 0;
	unsigned int i;

	dmabuf_for_each_sgtable_dma_sg(sgt, d, i) {
		assert_int_equal(d->offset, off);
		assert_true(d->length > 0 && d->length <= max_seg);
		/* no entry crosses a multiple of boundary + 1 */
		assert_int_equal(d->dma_addr & ~boundary,
				 (d->dma_addr + d->length - 1) & ~boundary);
		off += d->length;
	}
	assert_int_equal(off, dmabuf_sg_table_get_size(sgt));
}

static void accessors_are_null_safe(void **state)
{
	struct dmabuf_sg_table *sgt;

	assert_int_equal(dmabuf_sg_table_get_cpu_count(NULL), 0);
	assert_null(dmabuf_sg_table_get_cpu_entries(NULL));
	assert_int_equal(dmabuf_sg_table_get_dma_count(NULL), 0);
	assert_null(dmabuf_sg_table_get_dma_entries(NULL));
	assert_int_equal(dmabuf_sg_table_get_size(NULL), 0);
	assert_int_equal(dmb_sgt_new(&sgt), 0);
	assert_int_equal(dmb_sgt_append(sgt, 0, 8192, 0x10000), 0);
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), 1);
	assert_int_equal(dmabuf_sg_table_get_size(sgt), 8192);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 0); /* not mapped */
	dmb_sgt_free(sgt);
	/* a freed table reads as empty instead of being dereferenced */
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), 0);
	assert_null(dmabuf_sg_table_get_cpu_entries(sgt));
}

static void append_coalesces(void **state)
{
	struct dmabuf_sg_table *sgt;
	const struct dmabuf_sg_entry *e;

	assert_int_equal(dmb_sgt_new(&sgt), 0);
	assert_int_equal(dmb_sgt_append(sgt, 0, 4096, 0x100000), 0);
	assert_int_equal(dmb_sgt_append(sgt, 4096, 8192, 0x101000), 0); /* continues */
	assert_int_equal(dmb_sgt_append(sgt, 12288, 4096, 0x200000), 0); /* jumps */
	assert_int_equal(dmb_sgt_append(sgt, 16384, 4096, 0x1ff000), 0); /* goes back */
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), 3);
	e = dmabuf_sg_table_get_cpu_entries(sgt);
	assert_int_equal(e[0].offset, 0);
	assert_int_equal(e[0].length, 12288);
	assert_int_equal(e[0].phys, 0x100000);
	assert_int_equal(e[1].offset, 12288);
	assert_int_equal(e[2].offset, 16384);
	assert_int_equal(e[2].phys, 0x1ff000);
	/* gaps, overlaps, partial pages */
	assert_int_equal(dmb_sgt_append(sgt, 40960, 4096, 0x300000), -EINVAL);
	assert_int_equal(dmb_sgt_append(sgt, 0, 4096, 0x300000), -EINVAL);
	assert_int_equal(dmb_sgt_append(sgt, 20480, 100, 0x300000), -EINVAL);
	assert_int_equal(dmb_sgt_append(sgt, 20480, 4096, 0x300010), -EINVAL);
	assert_int_equal(dmb_sgt_append(sgt, 20480, 0, 0x300000), -EINVAL);
	assert_int_equal(dmabuf_sg_table_get_size(sgt), 20480);
	dmb_sgt_free(sgt);
}

static void from_runs_is_linear(void **state)
{
	struct dmb_physmem *pm;
	struct dmb_phys_run *runs;
	struct dmabuf_sg_table *sgt;
	const struct dmabuf_sg_entry *e;
	struct timespec t0, t1;
	size_t n;
	unsigned int i;
	uint64_t off = 0;

	/* 1 GiB of system frames: ~1024 runs, one CPU entry each */
	assert_int_equal(dmb_physmem_new(0, 16 * GiB, GiB, 9, &pm), 0);
	assert_int_equal(dmb_physmem_alloc_system(pm, GiB >> 12, 0, &runs, &n), 0);
	assert_int_equal(dmb_sgt_new(&sgt), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dmb_sgt_from_runs(sgt, runs, n), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), n);
	assert_int_equal(dmabuf_sg_table_get_size(sgt), GiB);
	dmabuf_for_each_sgtable_sg(sgt, e, i) {
		assert_int_equal(e->offset, off);
		assert_int_equal(e->phys, runs[i].addr);
		off += e->length;
	}
	if (!harness_under_valgrind())
		assert_true((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6 < 50);
	dmb_sgt_free(sgt);

	/* adjacent runs given separately still make one entry */
	struct dmb_phys_run adj[3] = {
		{ 0x400000, 16 }, { 0x410000, 16 }, { 0x800000, 1 },
	};
	assert_int_equal(dmb_sgt_new(&sgt), 0);
	assert_int_equal(dmb_sgt_from_runs(sgt, adj, 3), 0);
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), 2);
	assert_int_equal(dmabuf_sg_table_get_cpu_entries(sgt)[0].length, 128 * KiB);
	/* a failing run leaves the table as it was (including the merge) */
	struct dmb_phys_run bad[2] = { { 0x801000, 1 }, { 0x900010, 1 } };
	assert_int_equal(dmb_sgt_from_runs(sgt, bad, 2), -EINVAL);
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), 2);
	assert_int_equal(dmabuf_sg_table_get_cpu_entries(sgt)[1].length, 4096);
	assert_int_equal(dmabuf_sg_table_get_size(sgt), 132 * KiB);
	dmb_sgt_free(sgt);

	dmb_physmem_free(pm, runs, n);
	free(runs);
	dmb_physmem_destroy(pm);
}

static void device_validation_and_defaults(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	struct dmabuf_device_info info = { .name = "a-very-long-device-name-that-gets-cut" };
	struct dmabuf_device *dev = NULL, *keep = (void *)1;
	struct dmabuf_device_info got;

	assert_int_equal(dmabuf_device_new(NULL, &info, &dev), -EINVAL);
	assert_int_equal(dmabuf_device_new(ctx, NULL, &dev), -EINVAL);
	assert_int_equal(dmabuf_device_new(ctx, &info, NULL), -EINVAL);
	const struct dmabuf_device_info bad[] = {
		{ .flags = 1u << 7 },
		{ .dma_mask_bits = 11 },
		{ .dma_mask_bits = 65 },
		{ .max_segment_size = 4097 },
		{ .alignment = 3 * 4096 },
		{ .alignment = 2048 },
		{ .segment_boundary = 0x1000 },	/* not 2^n - 1 */
		{ .segment_boundary = 0x7ff },	/* below a page */
		{ .segment_boundary = 0xffff, .alignment = 1 << 20 },
	};
	for (size_t i = 0; i < DMB_ARRAY_SIZE(bad); i++)
		assert_int_equal(dmabuf_device_new(ctx, &bad[i], &keep), -EINVAL);
	assert_ptr_equal(keep, (void *)1);

	assert_int_equal(dmabuf_device_new(ctx, &info, &dev), 0);
	assert_int_equal(strlen(dmabuf_device_get_name(dev)), 31);
	assert_int_equal(strncmp(dmabuf_device_get_name(dev), info.name, 31), 0);
	assert_int_equal(dmabuf_device_get_info(dev, &got), 0);
	assert_int_equal(got.dma_mask_bits, 64);
	assert_int_equal(got.max_segment_size, 64 * KiB);
	assert_int_equal(got.segment_boundary, 0xffffffff);
	assert_int_equal(got.alignment, 4096);
	assert_ptr_equal(got.name, dmabuf_device_get_name(dev));
	assert_int_equal(dmabuf_device_get_info(dev, NULL), -EINVAL);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	/* stale device: detected */
	assert_int_equal(dmabuf_device_destroy(dev), -EINVAL);
	assert_null(dmabuf_device_get_name(dev));
	assert_int_equal(dmabuf_device_get_info(dev, &got), -EINVAL);
	assert_int_equal(dmabuf_device_destroy(NULL), -EINVAL);
	/* devices left alive go with the context */
	dev_new(ctx, 32, DMABUF_DEVICE_IOMMU, 0, 0, 0);
	dmabuf_ctx_destroy(ctx);
}

static void direct_split_at_max_segment(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	struct dmabuf_device *dev = dev_new(ctx, 64, 0, 64 * KiB, 0, 0);
	const uint64_t runs[][2] = { { 0x100000, MiB }, { 0x400000, 8 * KiB } };
	struct dmabuf_sg_table *sgt = table(runs, 2);
	uint8_t *mem = calloc(1, MiB + 8 * KiB);
	const struct dmabuf_dma_entry *d;

	assert_int_equal(dmb_sgt_dma_map(sgt, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	/* 1 MiB in 64 KiB pieces, then the 8 KiB run; DMA = physical */
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 17);
	d = dmabuf_sg_table_get_dma_entries(sgt);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(d[i].dma_addr, 0x100000 + i * 64 * KiB);
		assert_int_equal(d[i].length, 64 * KiB);
	}
	assert_int_equal(d[16].dma_addr, 0x400000);
	assert_int_equal(d[16].offset, MiB);
	check_dma_entries(sgt, 64 * KiB, 0xffffffff);
	/* a mapped table cannot be mapped again */
	assert_int_equal(dmb_sgt_dma_map(sgt, dev, DMABUF_BIDIRECTIONAL, mem, true), -EINVAL);
	dmb_sgt_dma_unmap(sgt);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 0);
	assert_null(dmabuf_sg_table_get_dma_entries(sgt));
	assert_true(RB_EMPTY(&dev->dma_tree));
	dmb_sgt_free(sgt);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void direct_split_at_boundary(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	/* 64 KiB boundary, 1 MiB segments */
	struct dmabuf_device *dev = dev_new(ctx, 64, 0, MiB, 0xffff, 0);
	const uint64_t runs[][2] = { { 0x238000, 128 * KiB } };
	struct dmabuf_sg_table *sgt = table(runs, 1);
	uint8_t *mem = calloc(1, 128 * KiB);
	const struct dmabuf_dma_entry *d;

	assert_int_equal(dmb_sgt_dma_map(sgt, dev, DMABUF_TO_DEVICE, mem, true), 0);
	/* 0x238000..0x240000 | 0x240000..0x250000 | 0x250000..0x258000 */
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 3);
	d = dmabuf_sg_table_get_dma_entries(sgt);
	assert_int_equal(d[0].length, 32 * KiB);
	assert_int_equal(d[1].dma_addr, 0x240000);
	assert_int_equal(d[1].length, 64 * KiB);
	assert_int_equal(d[2].dma_addr, 0x250000);
	assert_int_equal(d[2].length, 32 * KiB);
	assert_int_equal(d[2].offset, 96 * KiB);
	check_dma_entries(sgt, MiB, 0xffff);
	dmb_sgt_free(sgt); /* freeing a mapped table unmaps it */
	assert_true(RB_EMPTY(&dev->dma_tree));
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void iommu_maps_contiguous_iova(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	/* 1 MiB alignment, 64 KiB boundary-free segments */
	struct dmabuf_device *dev = dev_new(ctx, 40, DMABUF_DEVICE_IOMMU, 64 * KiB, 0, MiB);
	/* deliberately scattered and high: an IOMMU reaches anything */
	const uint64_t runs[][2] = {
		{ 60 * GiB, 12 * KiB }, { 5 * GiB, 100 * KiB }, { 0x7000, 4 * KiB },
	};
	struct dmabuf_sg_table *a = table(runs, 3), *b = table(runs, 3);
	uint8_t *mem = calloc(1, 116 * KiB);
	const struct dmabuf_dma_entry *da, *db;
	uint64_t size = 116 * KiB;

	assert_int_equal(dmb_sgt_dma_map(a, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	assert_int_equal(dmb_sgt_dma_map(b, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	/* 116 KiB: 64 KiB + 52 KiB, back to back in IOVA space */
	assert_int_equal(dmabuf_sg_table_get_dma_count(a), 2);
	da = dmabuf_sg_table_get_dma_entries(a);
	db = dmabuf_sg_table_get_dma_entries(b);
	assert_int_equal(da[1].dma_addr, da[0].dma_addr + 64 * KiB);
	assert_int_equal(da[1].offset, 64 * KiB);
	check_dma_entries(a, 64 * KiB, 0xffffffff);
	for (int i = 0; i < 2; i++) {
		const struct dmabuf_dma_entry *d = i ? db : da;

		assert_true(d[0].dma_addr != 0);
		assert_int_equal(d[0].dma_addr % MiB, 0);
		assert_true(d[0].dma_addr + size - 1 <= (1ull << 40) - 1);
	}
	/* two mappings never share IOVA */
	assert_true(db[0].dma_addr >= da[0].dma_addr + size ||
		    da[0].dma_addr >= db[0].dma_addr + size);
	dmb_sgt_free(a);
	dmb_sgt_free(b);
	assert_true(RB_EMPTY(&dev->iova.tree));
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void iova_space_fills_and_is_reused(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	/* 24-bit IOVA space: 16 MiB minus the never-used first page */
	struct dmabuf_device *dev = dev_new(ctx, 24, DMABUF_DEVICE_IOMMU, 0, 0, 0);
	const uint64_t runs[][2] = { { 0x10000000, 4 * MiB } };
	struct dmabuf_sg_table *t[4];
	uint8_t *mem = calloc(1, 4 * MiB);
	uint64_t base[4];

	for (int i = 0; i < 4; i++)
		t[i] = table(runs, 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(dmb_sgt_dma_map(t[i], dev, DMABUF_TO_DEVICE, mem, false), 0);
		base[i] = dmabuf_sg_table_get_dma_entries(t[i])[0].dma_addr;
		assert_true(base[i] >= 4096);
		assert_true(base[i] + 4 * MiB <= 16 * MiB);
	}
	/* 4 MiB + 4 KiB short of a fourth range */
	assert_int_equal(dmb_sgt_dma_map(t[3], dev, DMABUF_TO_DEVICE, mem, false), -ENOMEM);
	assert_int_equal(dmabuf_sg_table_get_dma_count(t[3]), 0);
	/* unmapping the middle one makes room again, at the same place */
	dmb_sgt_dma_unmap(t[1]);
	assert_int_equal(dmb_sgt_dma_map(t[3], dev, DMABUF_TO_DEVICE, mem, false), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_entries(t[3])[0].dma_addr, base[1]);
	/* nothing fits above the cursor: wraps around to the lowest hole */
	dmb_sgt_dma_unmap(t[0]);
	dmb_sgt_dma_unmap(t[3]);
	assert_int_equal(dmb_sgt_dma_map(t[0], dev, DMABUF_TO_DEVICE, mem, false), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_entries(t[0])[0].dma_addr, base[0]);
	for (int i = 0; i < 4; i++)
		dmb_sgt_free(t[i]);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void iova_alloc_rules(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	/* 20-bit space, 64 KiB boundary */
	struct dmabuf_device *dev = dev_new(ctx, 20, DMABUF_DEVICE_IOMMU, 0, 0xffff, 0);
	uint64_t a, b, c;

	assert_int_equal(dmb_iova_alloc(&dev->iova, 0, 4096, &a), -EINVAL);
	assert_int_equal(dmb_iova_alloc(&dev->iova, 4096, 4095, &a), -EINVAL);
	assert_int_equal(dmb_iova_alloc(&dev->iova, 100, 4096, &a), -EINVAL);
	assert_int_equal(dmb_iova_alloc(&dev->iova, 4096, 4096, &a), 0);
	assert_int_equal(a, 4096); /* never 0 */
	/* 64 KiB would cross the boundary at 64 KiB from 8 KiB: moved up */
	assert_int_equal(dmb_iova_alloc(&dev->iova, 64 * KiB, 4096, &b), 0);
	assert_int_equal(b, 64 * KiB);
	/* larger than a boundary window: may cross, the mapping splits */
	assert_int_equal(dmb_iova_alloc(&dev->iova, 128 * KiB + 4096, 4096, &c), 0);
	assert_int_equal(c, 128 * KiB);
	assert_int_equal(dmb_iova_alloc(&dev->iova, 2 * MiB, 4096, &c), -ENOMEM);
	dmb_iova_free(&dev->iova, b);
	dmb_iova_free(&dev->iova, b); /* unknown start: ignored */
	/* next fit: a freed range is not reused while there is room above */
	uint64_t d;
	assert_int_equal(dmb_iova_alloc(&dev->iova, 64 * KiB, 4096, &d), 0);
	assert_int_equal(d, 320 * KiB); /* 260 KiB rounded to the boundary window */
	dmb_iova_free(&dev->iova, a);
	dmb_iova_free(&dev->iova, c);
	dmb_iova_free(&dev->iova, d);
	assert_true(RB_EMPTY(&dev->iova.tree));
	dmabuf_ctx_destroy(ctx);
}

static void mask_violation_is_eio(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	struct dmabuf_device *dev = dev_new(ctx, 32, 0, 0, 0, 0);
	const uint64_t low[][2] = { { 0x100000, 64 * KiB }, { 0xffff0000, 64 * KiB } };
	const uint64_t high[][2] = { { 0x100000, 64 * KiB }, { 0xffff0000, 128 * KiB } };
	struct dmabuf_sg_table *ok = table(low, 2), *bad = table(high, 2);
	uint8_t *mem = calloc(1, 192 * KiB);
	uint8_t byte;

	/* the last byte at 4 GiB - 1 is fine */
	assert_int_equal(dmb_sgt_dma_map(ok, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	/* one byte past the 32-bit mask: -EIO, nothing mapped */
	assert_int_equal(dmb_sgt_dma_map(bad, dev, DMABUF_BIDIRECTIONAL, mem, true), -EIO);
	assert_int_equal(dmabuf_sg_table_get_dma_count(bad), 0);
	assert_null(bad->mapped_dev);
	dmb_sgt_dma_unmap(ok);
	assert_true(RB_EMPTY(&dev->dma_tree));
	/* through an IOMMU the same frames are fine */
	struct dmabuf_device *mmu = dev_new(ctx, 32, DMABUF_DEVICE_IOMMU, 0, 0, 0);
	assert_int_equal(dmb_sgt_dma_map(bad, mmu, DMABUF_BIDIRECTIONAL, mem, true), 0);
	assert_int_equal(dmabuf_dma_read(mmu, dmabuf_sg_table_get_dma_entries(bad)[0].dma_addr,
					 &byte, 1), 0);
	dmb_sgt_free(ok);
	dmb_sgt_free(bad);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void contiguous_device_rules(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	/* scanout without IOMMU: one segment up to 16 MiB */
	struct dmabuf_device *disp = dev_new(ctx, 32, DMABUF_DEVICE_CONTIGUOUS, 16 * MiB, 0, 0);
	/* the same with the default 64 KiB max segment: cannot take 1 MiB */
	struct dmabuf_device *small = dev_new(ctx, 32, DMABUF_DEVICE_CONTIGUOUS, 0, 0, 0);
	/* behind an IOMMU, scattered frames become one IOVA segment */
	struct dmabuf_device *mmu = dev_new(ctx, 32, DMABUF_DEVICE_CONTIGUOUS | DMABUF_DEVICE_IOMMU,
					    16 * MiB, 0, 0);
	const uint64_t one[][2] = { { 0x1000000, MiB } };
	const uint64_t two[][2] = { { 0x1000000, 512 * KiB }, { 0x3000000, 512 * KiB } };
	struct dmabuf_sg_table *a = table(one, 1), *b = table(two, 2);
	uint8_t *mem = calloc(1, MiB);

	assert_int_equal(dmb_sgt_dma_map(b, disp, DMABUF_TO_DEVICE, mem, true), -EINVAL);
	assert_true(RB_EMPTY(&disp->dma_tree));
	assert_int_equal(dmb_sgt_dma_map(a, small, DMABUF_TO_DEVICE, mem, true), -EINVAL);
	assert_int_equal(dmb_sgt_dma_map(a, disp, DMABUF_TO_DEVICE, mem, true), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_count(a), 1);
	assert_int_equal(dmabuf_sg_table_get_dma_entries(a)[0].dma_addr, 0x1000000);
	assert_int_equal(dmabuf_sg_table_get_dma_entries(a)[0].length, MiB);
	assert_int_equal(dmb_sgt_dma_map(b, mmu, DMABUF_TO_DEVICE, mem, true), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_count(b), 1);
	/* a device with a live mapping cannot be destroyed */
	assert_int_equal(dmabuf_device_destroy(mmu), -EBUSY);
	dmb_sgt_dma_unmap(b);
	assert_int_equal(dmabuf_device_destroy(mmu), 0);
	dmb_sgt_free(a); /* still mapped on disp: unmapped by free */
	dmb_sgt_free(b);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void alignment_violation_is_einval(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	struct dmabuf_device *dev = dev_new(ctx, 64, 0, MiB, 0, 64 * KiB);
	const uint64_t bad[][2] = { { 0x101000, 64 * KiB } };
	const uint64_t good[][2] = { { 0x110000, 64 * KiB }, { 0x230000, 192 * KiB } };
	struct dmabuf_sg_table *a = table(bad, 1), *b = table(good, 2);
	uint8_t *mem = calloc(1, 256 * KiB);

	assert_int_equal(dmb_sgt_dma_map(a, dev, DMABUF_BIDIRECTIONAL, mem, true), -EINVAL);
	assert_int_equal(dmb_sgt_dma_map(b, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_count(b), 2);
	/* bad arguments */
	assert_int_equal(dmb_sgt_dma_map(a, dev, DMABUF_NONE, mem, true), -EINVAL);
	assert_int_equal(dmb_sgt_dma_map(a, dev, DMABUF_TO_DEVICE, NULL, true), -EINVAL);
	assert_int_equal(dmb_sgt_dma_map(a, NULL, DMABUF_TO_DEVICE, mem, true), -EINVAL);
	dmb_sgt_free(a);
	dmb_sgt_free(b);
	free(mem);
	dmabuf_ctx_destroy(ctx);
}

static void big_iommu_mapping(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	struct dmabuf_device *dev = dev_new(ctx, 48, DMABUF_DEVICE_IOMMU, 0, 0, 0);
	uint64_t size = harness_under_valgrind() ? 64 * MiB : GiB;
	struct dmb_phys_run *runs;
	struct dmabuf_sg_table *sgt;
	struct timespec t0, t1;
	uint8_t *mem;
	size_t n;

	mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(dmb_physmem_alloc_system(ctx->physmem, size >> 12, 0, &runs, &n), 0);
	assert_int_equal(dmb_sgt_new(&sgt), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(dmb_sgt_from_runs(sgt, runs, n), 0);
	assert_int_equal(dmb_sgt_dma_map(sgt, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), size / (64 * KiB));
	check_dma_entries(sgt, 64 * KiB, 0xffffffff);
	print_message("%llu MiB: %u CPU entries, %u DMA entries, built and mapped in %.2f ms\n",
		      (unsigned long long)(size >> 20), dmabuf_sg_table_get_cpu_count(sgt),
		      dmabuf_sg_table_get_dma_count(sgt),
		      (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	/* the device reaches the last byte */
	uint64_t last = dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr + size - 1;
	assert_int_equal(dmabuf_dma_write(dev, last, "x", 1), 0);
	assert_int_equal(mem[size - 1], 'x');
	dmb_sgt_free(sgt);
	dmb_physmem_free(ctx->physmem, runs, n);
	free(runs);
	munmap(mem, size);
	dmabuf_ctx_destroy(ctx);
}

static void ctx_destroy_unmaps_leftovers(void **state)
{
	struct dmabuf_ctx *ctx = ctx_new();
	struct dmabuf_device *dev = dev_new(ctx, 64, DMABUF_DEVICE_IOMMU, 0, 0, 0);
	const uint64_t runs[][2] = { { 0x100000, 64 * KiB } };
	struct dmabuf_sg_table *sgt = table(runs, 1);
	uint8_t *mem = calloc(1, 64 * KiB);

	assert_int_equal(dmb_sgt_dma_map(sgt, dev, DMABUF_BIDIRECTIONAL, mem, true), 0);
	dmabuf_ctx_destroy(ctx);
	/* the device went first and took the mapping with it */
	assert_null(sgt->mapped_dev);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 0);
	dmb_sgt_free(sgt);
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(accessors_are_null_safe),
		harness_test(append_coalesces),
		harness_test(from_runs_is_linear),
		harness_test(device_validation_and_defaults),
		harness_test(direct_split_at_max_segment),
		harness_test(direct_split_at_boundary),
		harness_test(iommu_maps_contiguous_iova),
		harness_test(iova_space_fills_and_is_reused),
		harness_test(iova_alloc_rules),
		harness_test(mask_violation_is_eio),
		harness_test(contiguous_device_rules),
		harness_test(alignment_violation_is_einval),
		harness_test(big_iommu_mapping),
		harness_test(ctx_destroy_unmaps_leftovers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
