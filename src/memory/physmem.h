/* SPDX-License-Identifier: MIT */
/*
 * Simulated physical memory of one context: a frame allocator over
 * [base, base + size) with a reserved contiguous (CMA-like) region below
 * 4 GiB. Deterministic: the same seed and the same calls give the same
 * frames. Not thread-safe on its own: callers hold the context lock.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct dmb_phys_run;
struct dmb_physmem;

/* Creates the allocator. base, size and cma_size are page multiples;
 * cma_size may be 0 (no contiguous region). -EINVAL if the region does not
 * fit, -ENOMEM. */
int dmb_physmem_new(uint64_t base, uint64_t size, uint64_t cma_size,
		    uint64_t seed, struct dmb_physmem **out);
void dmb_physmem_destroy(struct dmb_physmem *pm);

/*
 * System-heap allocation: npages frames outside the CMA region, taken in
 * chunks of order 8, 4 and 0 (1 MiB, 64 KiB, 4 KiB) like the kernel's system
 * heap, each chunk at a pseudo-random free place, so the result is
 * realistically scattered. Every frame ends below `limit` (exclusive; 0 = no
 * limit). *runs is a malloc'd array in buffer order with physically adjacent
 * chunks coalesced. -ENOMEM if the frames cannot be found (nothing is kept).
 */
int dmb_physmem_alloc_system(struct dmb_physmem *pm, uint64_t npages,
			     uint64_t limit, struct dmb_phys_run **runs,
			     size_t *nruns);

/* One contiguous run of npages from the CMA region, aligned to `align`
 * bytes (power of two >= page), ending below limit (0 = none). First fit,
 * so the region fragments as it would. -ENOMEM if no hole is big enough. */
int dmb_physmem_alloc_contig(struct dmb_physmem *pm, uint64_t npages,
			     uint64_t align, uint64_t limit,
			     struct dmb_phys_run *run);

/* Returns frames to the allocator (system or CMA, told by address). */
void dmb_physmem_free(struct dmb_physmem *pm, const struct dmb_phys_run *runs,
		      size_t nruns);

struct dmb_physmem_stats {
	uint64_t total, used;		/* bytes, whole space */
	uint64_t cma_total, cma_used;	/* bytes, CMA region */
	uint64_t cma_base;
	/* Bitmap words read by the searches so far (cumulative): the work
	 * an allocation does, for tests (a count, not a time). */
	uint64_t scanned;
};
void dmb_physmem_get_stats(const struct dmb_physmem *pm,
			   struct dmb_physmem_stats *st);
