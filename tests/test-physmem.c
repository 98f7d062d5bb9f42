/* SPDX-License-Identifier: MIT */
/* Simulated physical memory: seeded placement, chunk orders, limits, the
 * contiguous region's first fit and fragmentation, accounting, and the work
 * (bitmap words read) of a big allocation. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "private.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define PAGES(bytes) ((bytes) >> DMB_PAGE_SHIFT)

static struct dmb_physmem *pm_new(uint64_t base, uint64_t size, uint64_t cma,
				  uint64_t seed)
{
	struct dmb_physmem *pm = NULL;

	assert_int_equal(dmb_physmem_new(base, size, cma, seed, &pm), 0);
	assert_non_null(pm);
	return pm;
}

static uint64_t runs_pages(const struct dmb_phys_run *runs, size_t n)
{
	uint64_t t = 0;

	for (size_t i = 0; i < n; i++)
		t += runs[i].npages;
	return t;
}

static void new_validates(void **state)
{
	struct dmb_physmem *pm = (void *)1;
	struct dmb_physmem_stats st;

	assert_int_equal(dmb_physmem_new(0, 0, 0, 1, &pm), -EINVAL);
	assert_int_equal(dmb_physmem_new(1, GiB, 0, 1, &pm), -EINVAL);
	assert_int_equal(dmb_physmem_new(0, GiB + 1, 0, 1, &pm), -EINVAL);
	assert_int_equal(dmb_physmem_new(0, GiB, 4097, 1, &pm), -EINVAL);
	assert_int_equal(dmb_physmem_new(0, GiB, GiB, 1, &pm), -EINVAL);
	assert_int_equal(dmb_physmem_new(UINT64_MAX - 4095, 8192, 0, 1, &pm), -EINVAL);
	/* a CMA region that cannot sit below 4 GiB */
	assert_int_equal(dmb_physmem_new(3 * GiB, 4 * GiB, 2 * GiB, 1, &pm), -EINVAL);
	assert_ptr_equal(pm, (void *)1);

	/* default-like layout: CMA at base + 16 MiB */
	pm = pm_new(0, 16 * GiB, GiB, 1);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.total, 16 * GiB);
	assert_int_equal(st.cma_total, GiB);
	assert_int_equal(st.cma_base, 16 * MiB);
	assert_int_equal(st.used, 0);
	dmb_physmem_destroy(pm);
	/* RAM above 4 GiB: CMA at its start */
	pm = pm_new(8 * GiB, GiB, 64 * MiB, 1);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.cma_base, 8 * GiB);
	dmb_physmem_destroy(pm);
	/* too little room above 16 MiB: CMA at base */
	pm = pm_new(0, 64 * MiB, 60 * MiB, 1);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.cma_base, 0);
	dmb_physmem_destroy(pm);
}

static void alloc_layout(uint64_t seed, struct dmb_phys_run **runs, size_t *n)
{
	struct dmb_physmem *pm = pm_new(0, 16 * GiB, GiB, seed);

	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(8 * MiB + 20 * 4 * KiB), 0, runs, n), 0);
	dmb_physmem_destroy(pm);
}

static void same_seed_same_frames(void **state)
{
	struct dmb_phys_run *a, *b, *c;
	size_t na, nb, nc;

	alloc_layout(99, &a, &na);
	alloc_layout(99, &b, &nb);
	alloc_layout(100, &c, &nc);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof(*a));
	/* another seed, another layout */
	assert_true(na != nc || memcmp(a, c, na * sizeof(*a)) != 0);
	assert_true(a[0].addr != c[0].addr);
	free(a);
	free(b);
	free(c);
}

static void system_chunks_are_scattered_and_aligned(void **state)
{
	struct dmb_physmem *pm = pm_new(0, 16 * GiB, GiB, 5);
	struct dmb_physmem_stats st;
	struct dmb_phys_run *runs;
	size_t n;
	/* 3 MiB + 2 * 64 KiB + 3 * 4 KiB: orders 8, 8, 8, 4, 4, 0, 0, 0 */
	uint64_t npages = PAGES(3 * MiB) + 2 * 16 + 3;

	assert_int_equal(dmb_physmem_alloc_system(pm, npages, 0, &runs, &n), 0);
	assert_int_equal(runs_pages(runs, n), npages);
	assert_true(n > 1);
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		uint64_t end = runs[i].addr + (runs[i].npages << DMB_PAGE_SHIFT);

		/* never inside the CMA region */
		assert_true(end <= 16 * MiB || runs[i].addr >= 16 * MiB + GiB);
		/* coalesced: no run continues the previous one */
		if (i > 0)
			assert_true(runs[i].addr !=
				    runs[i - 1].addr + (runs[i - 1].npages << DMB_PAGE_SHIFT));
	}
	/* Buffer order: the first 3 MiB come as 1 MiB chunks, 1 MiB aligned. */
	assert_true(runs[0].addr % MiB == 0);
	assert_true(runs[0].npages % 256 == 0);
	/* The 64 KiB chunks follow the last 1 MiB one, 64 KiB aligned: find
	 * the run holding buffer offset 3 MiB. */
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t len = runs[i].npages << DMB_PAGE_SHIFT;

		if (off <= 3 * MiB && 3 * MiB < off + len)
			assert_true((runs[i].addr + (3 * MiB - off)) % (64 * KiB) == 0);
		off += len;
	}
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, npages << DMB_PAGE_SHIFT);
	assert_int_equal(st.cma_used, 0);
	dmb_physmem_free(pm, runs, n);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 0);
	free(runs);
	dmb_physmem_destroy(pm);
}

static void system_respects_limit(void **state)
{
	struct dmb_physmem *pm = pm_new(0, 64 * GiB, GiB, 11);
	struct dmb_phys_run *runs;
	size_t n;

	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(256 * MiB), 4 * GiB, &runs, &n), 0);
	assert_int_equal(runs_pages(runs, n), PAGES(256 * MiB));
	for (size_t i = 0; i < n; i++)
		assert_true(runs[i].addr + (runs[i].npages << DMB_PAGE_SHIFT) <= 4 * GiB);
	dmb_physmem_free(pm, runs, n);
	free(runs);
	/* Without a limit, 256 MiB over 64 GiB lands mostly above 4 GiB. */
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(256 * MiB), 0, &runs, &n), 0);
	size_t high = 0;
	for (size_t i = 0; i < n; i++)
		high += runs[i].addr >= 4 * GiB;
	assert_true(high > n / 2);
	dmb_physmem_free(pm, runs, n);
	free(runs);
	/* A limit below the end of the CMA region leaves only 16 MiB. */
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(17 * MiB), 32 * MiB, &runs, &n), -ENOMEM);
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(16 * MiB), 32 * MiB, &runs, &n), 0);
	dmb_physmem_free(pm, runs, n);
	free(runs);
	dmb_physmem_destroy(pm);
}

static void system_falls_back_and_fails_cleanly(void **state)
{
	/* 64 MiB of RAM, 32 MiB CMA at base + 16 MiB: 32 MiB system frames */
	struct dmb_physmem *pm = pm_new(0, 64 * MiB, 32 * MiB, 3);
	struct dmb_physmem_stats st;
	struct dmb_phys_run *pages, *big;
	size_t npg, nbig;

	/* Take every system frame, then free every other one: memory is half
	 * free but no 64 KiB slot is left. */
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(32 * MiB), 0, &pages, &npg), 0);
	assert_int_equal(dmb_physmem_alloc_system(pm, 1, 0, &big, &nbig), -ENOMEM);
	for (size_t i = 0; i < npg; i++) {
		for (uint64_t p = 0; p < pages[i].npages; p += 2) {
			struct dmb_phys_run one = { pages[i].addr + (p << DMB_PAGE_SHIFT), 1 };

			dmb_physmem_free(pm, &one, 1);
		}
	}
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 16 * MiB);
	/* 2 MiB asked as 1 MiB chunks: falls back to 4 KiB frames */
	assert_int_equal(dmb_physmem_alloc_system(pm, 512, 0, &big, &nbig), 0);
	assert_int_equal(runs_pages(big, nbig), 512);
	assert_int_equal(nbig, 512); /* every other frame: nothing adjacent */
	dmb_physmem_free(pm, big, nbig);
	free(big);
	/* more than is free: -ENOMEM, and nothing kept */
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(16 * MiB) + 1, 0, &big, &nbig), -ENOMEM);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 16 * MiB);
	/* exactly what is free still works */
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(16 * MiB), 0, &big, &nbig), 0);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 32 * MiB);
	dmb_physmem_free(pm, big, nbig);
	free(big);
	dmb_physmem_free(pm, pages, npg); /* frees the rest; already-free frames are not counted */
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 0);
	free(pages);
	dmb_physmem_destroy(pm);
}

static void contig_first_fit_fragments(void **state)
{
	struct dmb_physmem *pm = pm_new(0, 256 * MiB, 64 * MiB, 1);
	struct dmb_physmem_stats st;
	struct dmb_phys_run r[4], x;

	for (int i = 0; i < 4; i++) {
		assert_int_equal(dmb_physmem_alloc_contig(pm, PAGES(16 * MiB), DMB_PAGE_SIZE, 0, &r[i]), 0);
		assert_int_equal(r[i].npages, PAGES(16 * MiB));
		/* first fit: one after the other from the region's start */
		assert_int_equal(r[i].addr, 16 * MiB + i * 16 * MiB);
	}
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.cma_used, 64 * MiB);
	assert_int_equal(st.used, 64 * MiB);
	assert_int_equal(dmb_physmem_alloc_contig(pm, 1, DMB_PAGE_SIZE, 0, &x), -ENOMEM);
	dmb_physmem_free(pm, &r[0], 1);
	dmb_physmem_free(pm, &r[2], 1);
	/* 32 MiB free in two holes: no 32 MiB run */
	assert_int_equal(dmb_physmem_alloc_contig(pm, PAGES(32 * MiB), DMB_PAGE_SIZE, 0, &x), -ENOMEM);
	/* a small run takes the first hole */
	assert_int_equal(dmb_physmem_alloc_contig(pm, 1, DMB_PAGE_SIZE, 0, &x), 0);
	assert_int_equal(x.addr, 16 * MiB);
	/* alignment: 8 MiB skips the rest of the first hole's misaligned part */
	struct dmb_phys_run y;
	assert_int_equal(dmb_physmem_alloc_contig(pm, PAGES(4 * MiB), 8 * MiB, 0, &y), 0);
	assert_int_equal(y.addr % (8 * MiB), 0);
	assert_int_equal(y.addr, 24 * MiB);
	/* limit: nothing in the second hole (48..64 MiB) ends below 40 MiB */
	assert_int_equal(dmb_physmem_alloc_contig(pm, PAGES(8 * MiB), DMB_PAGE_SIZE, 40 * MiB, &x), -ENOMEM);
	struct dmb_phys_run z;
	assert_int_equal(dmb_physmem_alloc_contig(pm, PAGES(8 * MiB), DMB_PAGE_SIZE, 0, &z), 0);
	assert_int_equal(z.addr, 48 * MiB);
	/* bad alignment */
	assert_int_equal(dmb_physmem_alloc_contig(pm, 1, 3 * DMB_PAGE_SIZE, 0, &x), -EINVAL);
	assert_int_equal(dmb_physmem_alloc_contig(pm, 1, 0, 0, &x), -EINVAL);
	assert_int_equal(dmb_physmem_alloc_contig(pm, 0, DMB_PAGE_SIZE, 0, &x), -EINVAL);
	/* system allocations never take CMA frames */
	struct dmb_phys_run *runs, *more;
	size_t n, nmore;
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(192 * MiB), 0, &runs, &n), 0);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, (192 + 16 + 16 + 4 + 8) * MiB + 4 * KiB);
	assert_int_equal(st.cma_used, (16 + 16 + 4 + 8) * MiB + 4 * KiB);
	assert_int_equal(dmb_physmem_alloc_system(pm, 1, 0, &more, &nmore), -ENOMEM);
	dmb_physmem_destroy(pm);
	free(runs);
}

static void free_and_reuse(void **state)
{
	struct dmb_physmem *pm = pm_new(0, 128 * MiB, 16 * MiB, 8);
	struct dmb_physmem_stats st;
	struct dmb_phys_run *a, *b;
	size_t na, nb;

	/* All system memory (112 MiB), freed, then all of it again. */
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(112 * MiB), 0, &a, &na), 0);
	assert_int_equal(dmb_physmem_alloc_system(pm, 1, 0, &b, &nb), -ENOMEM);
	dmb_physmem_free(pm, a, na);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 0);
	/* a double free is not counted twice */
	dmb_physmem_free(pm, a, na);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 0);
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(112 * MiB), 0, &b, &nb), 0);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 112 * MiB);
	dmb_physmem_free(pm, b, nb);
	free(a);
	free(b);
	dmb_physmem_destroy(pm);
}

static void unaligned_base(void **state)
{
	/* RAM starting at 4 KiB * 3: chunks stay physically aligned */
	struct dmb_physmem *pm = pm_new(3 * 4 * KiB, 64 * MiB, 8 * MiB, 2);
	struct dmb_phys_run *runs;
	size_t n;

	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(8 * MiB), 0, &runs, &n), 0);
	for (size_t i = 0; i < n; i++) {
		assert_true(runs[i].addr >= 12 * KiB);
		assert_true(runs[i].addr + (runs[i].npages << DMB_PAGE_SHIFT) <= 12 * KiB + 64 * MiB);
		assert_int_equal(runs[i].addr % MiB, 0);
	}
	dmb_physmem_free(pm, runs, n);
	free(runs);
	dmb_physmem_destroy(pm);
}

/* The bitmap comes with the first allocation: when it cannot be had, that
 * allocation fails with -ENOMEM and nothing is counted; the next one
 * makes it. */
static void bitmap_at_first_allocation(void **state)
{
	struct dmb_physmem *pm = pm_new(0, 1 * GiB, 64 * MiB, 1);
	struct dmb_physmem_stats st;
	struct dmb_phys_run *runs = NULL, run;
	size_t n = 0;

	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.total, 1 * GiB);
	assert_int_equal(st.used, 0);
	dmb_physmem_free(pm, &run, 0); /* nothing to free yet */
	dmb_sys_inject(DMB_SYS_CALLOC, 1, ENOMEM);
	assert_int_equal(dmb_physmem_alloc_system(pm, 16, 0, &runs, &n), -ENOMEM);
	dmb_sys_inject(DMB_SYS_CALLOC, 1, ENOMEM);
	assert_int_equal(dmb_physmem_alloc_contig(pm, 16, 4096, 0, &run), -ENOMEM);
	dmb_sys_inject(DMB_SYS_CALLOC, 0, 0);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 0);
	assert_int_equal(st.cma_used, 0);
	assert_int_equal(dmb_physmem_alloc_contig(pm, 16, 4096, 0, &run), 0);
	assert_int_equal(dmb_physmem_alloc_system(pm, 16, 0, &runs, &n), 0);
	assert_int_equal(runs_pages(runs, n), 16);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 32 * 4096);
	assert_int_equal(st.cma_used, 16 * 4096);
	dmb_physmem_free(pm, runs, n);
	dmb_physmem_free(pm, &run, 1);
	free(runs);
	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.used, 0);
	dmb_physmem_destroy(pm);
}

/*
 * 1 GiB in either heap is cheap because the searches read the bitmap a word
 * (64 frames) at a time and skip busy words whole: counted in bitmap words
 * read (stats.scanned), not timed (the timing is bench/'s). Bit-by-bit
 * scanning would read 64 times as much; a search that restarted from the
 * region's head per chunk would grow with the chunks already placed.
 */
static void one_gib_is_cheap(void **state)
{
	struct dmb_physmem *pm = pm_new(0, 16 * GiB, GiB, 42);
	struct dmb_physmem_stats st;
	struct dmb_phys_run *runs, cma;
	uint64_t before, sys_words, cma_words;
	size_t n;

	dmb_physmem_get_stats(pm, &st);
	assert_int_equal(st.scanned, 0);
	assert_int_equal(dmb_physmem_alloc_system(pm, PAGES(GiB), 0, &runs, &n), 0);
	dmb_physmem_get_stats(pm, &st);
	sys_words = st.scanned;
	assert_int_equal(runs_pages(runs, n), PAGES(GiB));
	/* 1024 chunks of 1 MiB, a few coalesced */
	assert_true(n <= 1024);
	assert_true(n > 900);
	before = st.scanned;
	assert_int_equal(dmb_physmem_alloc_contig(pm, PAGES(GiB), DMB_PAGE_SIZE, 0, &cma), 0);
	dmb_physmem_get_stats(pm, &st);
	cma_words = st.scanned - before;
	print_message("1 GiB system: %zu runs, %llu bitmap words read; "
		      "1 GiB CMA: 1 run, %llu words\n", n,
		      (unsigned long long)sys_words, (unsigned long long)cma_words);
	/* A 1 MiB chunk is 4 words: at least those, and a few busy words
	 * skipped now and then (1 GiB of 15 is taken at the end). */
	assert_true(sys_words >= 4 * 1024);
	assert_true(sys_words <= 8 * 1024);
	/* The empty region's one hole: its first word, then its length. */
	assert_true(cma_words >= PAGES(GiB) / 64);
	assert_true(cma_words <= PAGES(GiB) / 64 + 2);
	dmb_physmem_free(pm, runs, n);
	dmb_physmem_free(pm, &cma, 1);
	free(runs);
	dmb_physmem_destroy(pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(new_validates),
		harness_test(same_seed_same_frames),
		harness_test(system_chunks_are_scattered_and_aligned),
		harness_test(system_respects_limit),
		harness_test(system_falls_back_and_fails_cleanly),
		harness_test(contig_first_fit_fragments),
		harness_test(free_and_reuse),
		harness_test(unaligned_base),
		harness_test(one_gib_is_cheap),
		harness_test(bitmap_at_first_allocation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
