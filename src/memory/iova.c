/* SPDX-License-Identifier: MIT */
/*
 * IOVA spaces: the addresses a device behind an IOMMU sees. An RB tree of
 * allocated ranges, next fit like a simple iova_domain, in
 * [page size, last], keeping a range inside one segment-boundary window when
 * it fits.
 */
#include <stdlib.h>

#include "memory.h"

static int iova_cmp(const struct dmb_iova *a, const struct dmb_iova *b)
{
	return a->start < b->start ? -1 : a->start > b->start;
}

RB_GENERATE_STATIC(dmb_iova_tree, dmb_iova, node, iova_cmp)


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
static bool iova_search(struct dmb_iova_space *s, uint64_t lo, uint64_t last,
			uint64_t size, uint64_t align, uint64_t bmask,
			uint64_t *out)
{
	struct dmb_iova key, *n, *prev;
	uint64_t cand;

	cand = align_up_or_0(lo, align);
	if (!cand || lo > last)
		return false;
	key.start = cand;
	n = RB_NFIND(dmb_iova_tree, &s->tree, &key);
	prev = n ? RB_PREV(dmb_iova_tree, &s->tree, n)
		 : RB_MAX(dmb_iova_tree, &s->tree);
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
			n = RB_NEXT(dmb_iova_tree, &s->tree, n);
		if (!n || n->start > cand + size - 1) {
			*out = cand;
			return true;
		}
		cand = align_up_or_0(n->start + n->size, align);
		if (!cand)
			return false;
		n = RB_NEXT(dmb_iova_tree, &s->tree, n);
	}
}

int dmb_iova_alloc(struct dmb_iova_space *s, uint64_t size, uint64_t align,
		   uint64_t *start)
{
	uint64_t last = s->last, bmask = 0, from, at;
	struct dmb_iova *r;

	if (!size || !DMB_ALIGNED(size, DMB_PAGE_SIZE) || !dmb_is_pow2(align) ||
	    align < DMB_PAGE_SIZE)
		return -EINVAL;
	/* Keep a range inside one boundary window when it can fit, so the
	 * mapping needs no extra split (as iommu-dma does). */
	if (s->boundary != UINT64_MAX &&
	    size <= s->boundary + 1)
		bmask = s->boundary;
	from = s->next > DMB_PAGE_SIZE ? s->next : DMB_PAGE_SIZE;
	if (!iova_search(s, from, last, size, align, bmask, &at) &&
	    !iova_search(s, DMB_PAGE_SIZE, last, size, align, bmask, &at))
		return -ENOMEM;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->start = at;
	r->size = size;
	RB_INSERT(dmb_iova_tree, &s->tree, r);
	s->next = at + size; /* 0 after the top: wraps */
	*start = at;
	return 0;
}

void dmb_iova_free(struct dmb_iova_space *s, uint64_t start)
{
	struct dmb_iova key = { .start = start }, *r;

	r = RB_FIND(dmb_iova_tree, &s->tree, &key);
	if (!r)
		return;
	RB_REMOVE(dmb_iova_tree, &s->tree, r);
	free(r);
}

void dmb_iova_init(struct dmb_iova_space *s, uint64_t last, uint64_t boundary)
{
	RB_INIT(&s->tree);
	s->next = DMB_PAGE_SIZE;
	s->last = last;
	s->boundary = boundary;
}

void dmb_iova_fini(struct dmb_iova_space *s)
{
	struct dmb_iova *r;

	while ((r = RB_MIN(dmb_iova_tree, &s->tree))) {
		RB_REMOVE(dmb_iova_tree, &s->tree, r);
		free(r);
	}
}
