/* SPDX-License-Identifier: MIT */
/* IOVA spaces (iova.c): one per device behind an IOMMU. Callers hold the
 * lock of the context that owns the space. */
#pragma once

#include <stdint.h>

#ifndef __unused
#define __unused __attribute__((unused))
#endif
#include <bsd/sys/tree.h>

/* One allocated IOVA range. */
struct dmb_iova {
	RB_ENTRY(dmb_iova) node;
	uint64_t start, size;
};
RB_HEAD(dmb_iova_tree, dmb_iova);

struct dmb_iova_space {
	struct dmb_iova_tree tree;
	uint64_t next;	   /* next-fit cursor */
	uint64_t last;	   /* highest usable address (the DMA mask) */
	uint64_t boundary; /* segment boundary mask; UINT64_MAX for none */
};

void dmb_iova_init(struct dmb_iova_space *s, uint64_t last, uint64_t boundary);
/* Frees every range still allocated. */
void dmb_iova_fini(struct dmb_iova_space *s);
/* A range of size bytes (page multiple) aligned to align (a power of two,
 * at least a page): 0 and *start, -EINVAL for bad arguments, -ENOMEM when
 * the space is full. */
int dmb_iova_alloc(struct dmb_iova_space *s, uint64_t size, uint64_t align,
		   uint64_t *start);
/* Frees the range that starts at start (no-op if there is none). */
void dmb_iova_free(struct dmb_iova_space *s, uint64_t start);
