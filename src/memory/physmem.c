/* SPDX-License-Identifier: MIT */
/*
 * Simulated physical memory: a bitmap of 4 KiB frames (1 = in use) with a
 * CMA-like region for contiguous runs. Placement is pseudo-random but seeded,
 * so the same seed and the same calls reproduce the same frames.
 *
 * Bit i of the bitmap is frame pfn0 + i, where pfn0 is the first frame of RAM
 * rounded down to 1 MiB (order 8). Bits outside RAM are permanently set, so a
 * slot that is aligned in the bitmap is naturally aligned in physical memory.
 */
#include <stdlib.h>
#include <string.h>

#include "memory.h"

#define WORD_BITS 64
#define CHUNK_ALIGN_PAGES 256ull	/* order 8: the largest system chunk */
#define CMA_OFFSET (16ull << 20)	/* leave low memory to "firmware" */
#define FOUR_GIB (1ull << 32)
#define NO_SLOT UINT64_MAX

struct dmb_physmem {
	uint64_t base, size;		/* RAM, bytes */
	uint64_t pfn0;			/* frame of bit 0 */
	uint64_t first, end;		/* bits of RAM: [first, end) */
	uint64_t nbits;			/* multiple of CHUNK_ALIGN_PAGES */
	uint64_t *bm;
	uint64_t cma_first, cma_end;	/* bits of the CMA region */
	uint64_t used, cma_used;	/* frames */
	uint64_t rng;			/* splitmix64 state */
	uint64_t scanned;		/* bitmap words read by searches */
};

/* splitmix64: tiny, good enough, and ours, so libc cannot change layouts. */
static uint64_t rng_next(struct dmb_physmem *pm)
{
	uint64_t z = (pm->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static inline uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Mask of bits [lo, hi) within one word, 0 <= lo < hi <= 64. */
static inline uint64_t bits_mask(unsigned int lo, unsigned int hi)
{
	uint64_t m = hi == WORD_BITS ? ~0ull : (1ull << hi) - 1;

	return m & ~((1ull << lo) - 1);
}

/* Sets (val) or clears bits [start, start + n); returns how many changed. */
static uint64_t bm_assign(uint64_t *bm, uint64_t start, uint64_t n, bool val)
{
	uint64_t end = start + n, changed = 0;

	while (start < end) {
		uint64_t w = start / WORD_BITS;
		unsigned int lo = start % WORD_BITS;
		unsigned int hi = (unsigned int)min_u64(WORD_BITS, end - w * WORD_BITS);
		uint64_t m = bits_mask(lo, hi);

		if (val) {
			changed += (uint64_t)__builtin_popcountll(~bm[w] & m);
			bm[w] |= m;
		} else {
			changed += (uint64_t)__builtin_popcountll(bm[w] & m);
			bm[w] &= ~m;
		}
		start = w * WORD_BITS + hi;
	}
	return changed;
}

/* First bit >= pos and < end whose value is `val`; end if none. */
static uint64_t bm_find(struct dmb_physmem *pm, uint64_t pos, uint64_t end, bool val)
{
	while (pos < end) {
		uint64_t w = pos / WORD_BITS;
		uint64_t word = val ? pm->bm[w] : ~pm->bm[w];

		pm->scanned++;
		word &= ~0ull << (pos % WORD_BITS);
		if (word)
			return min_u64(w * WORD_BITS + (uint64_t)__builtin_ctzll(word), end);
		pos = (w + 1) * WORD_BITS;
	}
	return end;
}

/*
 * First free slot of 2^order frames at or after `pos`, naturally aligned and
 * inside [pos, hi). Word-level: busy words are skipped whole.
 */
static uint64_t scan_slot(struct dmb_physmem *pm, uint64_t pos,
			  uint64_t hi, unsigned int order)
{
	uint64_t n = 1ull << order;

	pos = DMB_ALIGN_UP(pos, n);
	while (pos + n <= hi) {
		uint64_t w = pos / WORD_BITS;

		if (order >= 6) {
			uint64_t nw = n / WORD_BITS, i;

			for (i = 0; i < nw && !pm->bm[w + i]; i++)
				;
			pm->scanned += i < nw ? i + 1 : nw;
			if (i == nw)
				return pos;
			pos = DMB_ALIGN_UP((w + i + 1) * WORD_BITS, n);
		} else if (order == 0) {
			uint64_t fr = ~pm->bm[w] & (~0ull << (pos % WORD_BITS));

			pm->scanned++;
			if (fr) {
				pos = w * WORD_BITS + (uint64_t)__builtin_ctzll(fr);
				return pos < hi ? pos : NO_SLOT;
			}
			pos = (w + 1) * WORD_BITS;
		} else {
			uint64_t word = pm->bm[w];
			unsigned int b = pos % WORD_BITS;

			pm->scanned++;
			if (word == ~0ull) {
				pos = (w + 1) * WORD_BITS;
				continue;
			}
			if (!(word & bits_mask(b, b + (unsigned int)n)))
				return pos;
			pos += n;
		}
	}
	return NO_SLOT;
}

/* The bitmap, made at the first allocation: 512 KiB for the default
 * 16 GiB, which calloc() zeroes once glibc serves it from the heap (after
 * the first free of one, as when contexts come and go), and which a
 * context that only imports never needs. 0 or -ENOMEM. */
static int bm_ensure(struct dmb_physmem *pm)
{
	if (pm->bm)
		return 0;
	if (dmb_sys_fail(DMB_SYS_CALLOC))
		return -ENOMEM;
	pm->bm = calloc(pm->nbits / WORD_BITS, sizeof(uint64_t));
	if (!pm->bm)
		return -ENOMEM;
	/* Padding outside RAM is never free. */
	bm_assign(pm->bm, 0, pm->first, true);
	bm_assign(pm->bm, pm->end, pm->nbits - pm->end, true);
	return 0;
}

int dmb_physmem_new(uint64_t base, uint64_t size, uint64_t cma_size,
		    uint64_t seed, struct dmb_physmem **out)
{
	struct dmb_physmem *pm;
	uint64_t cma_start, ram_end = base + size, bias;

	if (!size || !DMB_ALIGNED(base | size | cma_size, DMB_PAGE_SIZE) ||
	    ram_end < base || cma_size >= size)
		return -EINVAL;
	/* CMA is carved below 4 GiB (above the first 16 MiB when possible);
	 * RAM that starts above 4 GiB gets it at its start. */
	cma_start = base + CMA_OFFSET;
	if (base >= FOUR_GIB || cma_start + cma_size > min_u64(ram_end, FOUR_GIB)) {
		cma_start = base;
		if (base < FOUR_GIB && cma_start + cma_size > FOUR_GIB)
			return -EINVAL;
	}
	if (cma_start + cma_size > ram_end)
		return -EINVAL;

	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	pm->base = base;
	pm->size = size;
	pm->pfn0 = (base >> DMB_PAGE_SHIFT) & ~(CHUNK_ALIGN_PAGES - 1);
	bias = (base >> DMB_PAGE_SHIFT) - pm->pfn0;
	pm->first = bias;
	pm->end = bias + (size >> DMB_PAGE_SHIFT);
	pm->nbits = DMB_ALIGN_UP(pm->end, CHUNK_ALIGN_PAGES);
	pm->cma_first = pm->first + ((cma_start - base) >> DMB_PAGE_SHIFT);
	pm->cma_end = pm->cma_first + (cma_size >> DMB_PAGE_SHIFT);
	pm->rng = seed;
	*out = pm;
	return 0;
}

void dmb_physmem_destroy(struct dmb_physmem *pm)
{
	if (!pm)
		return;
	free(pm->bm);
	free(pm);
}

static inline uint64_t bit_to_phys(const struct dmb_physmem *pm, uint64_t bit)
{
	return (pm->pfn0 + bit) << DMB_PAGE_SHIFT;
}

/* Bit index just past the last frame below `limit` (0 = no limit). */
static uint64_t limit_bit(const struct dmb_physmem *pm, uint64_t limit)
{
	uint64_t pfn;

	if (!limit)
		return pm->end;
	pfn = limit >> DMB_PAGE_SHIFT;
	if (pfn <= pm->pfn0)
		return 0;
	return min_u64(pm->end, pfn - pm->pfn0);
}

/* Bits a system chunk may use: RAM below the limit, minus the CMA region. */
struct sys_ranges {
	uint64_t lo[2], hi[2];
	unsigned int n;
	uint64_t total;
};

static void sys_ranges_of(const struct dmb_physmem *pm, uint64_t hi,
			  struct sys_ranges *r)
{
	uint64_t lo[2] = { pm->first, pm->cma_end };
	uint64_t up[2] = { min_u64(pm->cma_first, hi), hi };

	r->n = 0;
	r->total = 0;
	for (int i = 0; i < 2; i++) {
		if (lo[i] >= up[i])
			continue;
		r->lo[r->n] = lo[i];
		r->hi[r->n] = up[i];
		r->total += up[i] - lo[i];
		r->n++;
	}
}

/* A free slot of 2^order frames at a pseudo-random place: a random start,
 * then the first fit forward through the ranges, wrapping around once. */
static uint64_t find_random_slot(struct dmb_physmem *pm, const struct sys_ranges *r,
				 unsigned int order)
{
	uint64_t off = rng_next(pm) % r->total, start = 0, slot;
	unsigned int k;

	for (k = 0; k < r->n; k++) {
		if (off < r->hi[k] - r->lo[k]) {
			start = r->lo[k] + off;
			break;
		}
		off -= r->hi[k] - r->lo[k];
	}
	slot = scan_slot(pm, start, r->hi[k], order);
	for (unsigned int i = 1; i < r->n && slot == NO_SLOT; i++) {
		unsigned int j = (k + i) % r->n;

		slot = scan_slot(pm, r->lo[j], r->hi[j], order);
	}
	/* Back to the head of the start range: slots starting before start. */
	if (slot == NO_SLOT)
		slot = scan_slot(pm, r->lo[k],
				 min_u64(r->hi[k], start + (1ull << order) - 1), order);
	return slot;
}

static int runs_push(struct dmb_phys_run **runs, size_t *n, size_t *cap,
		     uint64_t addr, uint64_t npages)
{
	if (*n && (*runs)[*n - 1].addr + ((*runs)[*n - 1].npages << DMB_PAGE_SHIFT) == addr) {
		(*runs)[*n - 1].npages += npages;
		return 0;
	}
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct dmb_phys_run *r = realloc(*runs, ncap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		*runs = r;
		*cap = ncap;
	}
	(*runs)[*n].addr = addr;
	(*runs)[*n].npages = npages;
	(*n)++;
	return 0;
}

static const unsigned int chunk_orders[] = { 8, 4, 0 };

int dmb_physmem_alloc_system(struct dmb_physmem *pm, uint64_t npages,
			     uint64_t limit, struct dmb_phys_run **runs_out,
			     size_t *nruns_out)
{
	struct dmb_phys_run *runs = NULL;
	size_t nruns = 0, cap = 0;
	bool exhausted[DMB_ARRAY_SIZE(chunk_orders)] = { false };
	struct sys_ranges r;
	uint64_t left = npages;
	int ret = 0;

	if (!pm || !npages || !runs_out || !nruns_out)
		return -EINVAL;
	sys_ranges_of(pm, limit_bit(pm, limit), &r);
	/* Early out: fewer free system frames in all of RAM than asked. */
	if (!r.n || (pm->end - pm->first) - (pm->cma_end - pm->cma_first) -
			    (pm->used - pm->cma_used) < npages || bm_ensure(pm) < 0)
		return -ENOMEM;

	while (left) {
		uint64_t slot = NO_SLOT;
		unsigned int order = 0;

		/* Largest order that fits what is left and still has a free
		 * slot; an order found empty stays empty for this call. */
		for (size_t i = 0; i < DMB_ARRAY_SIZE(chunk_orders); i++) {
			order = chunk_orders[i];
			if (exhausted[i] || (1ull << order) > left)
				continue;
			slot = find_random_slot(pm, &r, order);
			if (slot != NO_SLOT)
				break;
			exhausted[i] = true;
		}
		if (slot == NO_SLOT) {
			ret = -ENOMEM;
			break;
		}
		bm_assign(pm->bm, slot, 1ull << order, true);
		pm->used += 1ull << order;
		left -= 1ull << order;
		ret = runs_push(&runs, &nruns, &cap, bit_to_phys(pm, slot), 1ull << order);
		if (ret < 0) {
			bm_assign(pm->bm, slot, 1ull << order, false);
			pm->used -= 1ull << order;
			break;
		}
	}
	if (ret < 0) {
		dmb_physmem_free(pm, runs, nruns);
		free(runs);
		return ret;
	}
	/* Trim the slack: large allocations keep only what they use. */
	if (nruns < cap) {
		struct dmb_phys_run *t = realloc(runs, nruns * sizeof(*runs));

		if (t)
			runs = t;
	}
	*runs_out = runs;
	*nruns_out = nruns;
	return 0;
}

int dmb_physmem_alloc_contig(struct dmb_physmem *pm, uint64_t npages,
			     uint64_t align, uint64_t limit,
			     struct dmb_phys_run *run)
{
	uint64_t hi, pos, align_pfn;

	if (!pm || !npages || !run || align < DMB_PAGE_SIZE || (align & (align - 1)))
		return -EINVAL;
	if (bm_ensure(pm) < 0)
		return -ENOMEM;
	align_pfn = align >> DMB_PAGE_SHIFT;
	hi = min_u64(pm->cma_end, limit_bit(pm, limit));
	pos = pm->cma_first;
	/* First fit over the holes of the region, in address order. */
	while (pos < hi) {
		uint64_t hole = bm_find(pm, pos, hi, false);
		uint64_t hole_end = bm_find(pm, hole, hi, true);
		uint64_t pfn = pm->pfn0 + hole;
		uint64_t start = DMB_ALIGN_UP(pfn, align_pfn);

		if (start >= pfn) {
			start -= pm->pfn0;
			if (start < hole_end && hole_end - start >= npages) {
				bm_assign(pm->bm, start, npages, true);
				pm->used += npages;
				pm->cma_used += npages;
				run->addr = bit_to_phys(pm, start);
				run->npages = npages;
				return 0;
			}
		}
		pos = hole_end;
	}
	return -ENOMEM;
}

void dmb_physmem_free(struct dmb_physmem *pm, const struct dmb_phys_run *runs,
		      size_t nruns)
{
	if (!pm || !runs || !pm->bm)
		return;
	for (size_t i = 0; i < nruns; i++) {
		uint64_t pfn = runs[i].addr >> DMB_PAGE_SHIFT;
		uint64_t start, end, cs, ce, n;

		if (pfn < pm->pfn0)
			continue;
		/* Clip to RAM: a bogus run must not clear the padding. */
		start = max_u64(pfn - pm->pfn0, pm->first);
		end = min_u64(pfn - pm->pfn0 + runs[i].npages, pm->end);
		if (start >= end)
			continue;
		/* Split at the CMA region; only frames actually in use are
		 * counted back, so a double free cannot skew the stats. */
		cs = min_u64(max_u64(pm->cma_first, start), end);
		ce = min_u64(max_u64(pm->cma_end, start), end);
		n = bm_assign(pm->bm, cs, ce - cs, false);
		pm->cma_used -= n;
		n += bm_assign(pm->bm, start, cs - start, false);
		n += bm_assign(pm->bm, ce, end - ce, false);
		pm->used -= n;
	}
}

void dmb_physmem_get_stats(const struct dmb_physmem *pm,
			   struct dmb_physmem_stats *st)
{
	st->total = pm->size;
	st->used = pm->used << DMB_PAGE_SHIFT;
	st->cma_total = (pm->cma_end - pm->cma_first) << DMB_PAGE_SHIFT;
	st->cma_used = pm->cma_used << DMB_PAGE_SHIFT;
	st->cma_base = bit_to_phys(pm, pm->cma_first);
	st->scanned = pm->scanned;
}
