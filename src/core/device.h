/* SPDX-License-Identifier: MIT */
/*
 * Stand-in devices: DMA constraints, an IOVA space when behind an IOMMU, the
 * translation tree of live mappings that the simulated DMA engine walks, and
 * a ring of recorded faults.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <bsd/sys/tree.h>

#include "dmabuf.h"
#include "iova.h"

struct dmabuf_sg_table;

/*
 * One live translation of a mapping in the device's translation tree: a
 * range of device addresses that is contiguous in the buffer too, so one
 * node covers many DMA entries (behind an IOMMU the whole IOVA range of the
 * mapping, without one a physical run). DMA entries stay the device's view
 * in the sg table; the tree only has to answer "which bytes, which rights".
 */
struct dmb_dma_seg {
	RB_ENTRY(dmb_dma_seg) node;
	uint64_t dma_addr, length;
	uint64_t offset;	/* buffer offset of dma_addr */
	enum dmabuf_direction dir;
	bool writable;		/* false for read-only buffers */
	uint64_t seq;		/* tie-break for equal addresses */
	struct dmabuf_sg_table *sgt; /* the mapping it belongs to */
};
RB_HEAD(dmb_dma_tree, dmb_dma_seg);

#define DMB_FAULT_RING 64
#define DMB_UNMAPPED_RING 64

struct dmabuf_device {
	struct dmabuf_ctx *ctx;
	LIST_ENTRY(dmabuf_device) ctx_link;
	char name[32];
	struct dmabuf_device_info info; /* defaults filled in; info.name = name */
	uint64_t dma_mask;		/* derived from info.dma_mask_bits */
	unsigned int attach_count;	/* attachments using this device */
	bool remote;			/* stands for a peer's device (endpoint.c) */

	struct dmb_dma_tree dma_tree;
	uint64_t dma_seq;
	/* longest node in the tree since it was last empty: a node starting
	 * further below an address than this cannot cover it */
	uint64_t dma_max_len;
	struct dmb_iova_space iova;	/* behind an IOMMU */

	/* recently unmapped ranges, to report DMA after unmap */
	struct { uint64_t start, length; } unmapped[DMB_UNMAPPED_RING];
	unsigned int unmapped_head, unmapped_count;

	struct dmabuf_dma_fault faults[DMB_FAULT_RING];
	unsigned int fault_head, fault_kept;
	unsigned int fault_total; /* since last dmabuf_device_get_faults() */
};

/* Creates a device (lock held). A remote device stands for a device of an
 * importing peer: exporter ops see it like a local one, but it never gets
 * device addresses here (the peer assigns them). */
int dmb_device_create(struct dmabuf_ctx *ctx, const struct dmabuf_device_info *info,
		      bool remote, struct dmabuf_device **out);
/* Whether @dev is the device dmb_device_create() would make of @info now
 * (its kept name and its constraints with the defaults filled in): the
 * endpoint takes an idle stand-in of a peer's device again with it. */
bool dmb_device_matches(const struct dmabuf_device *dev, const struct dmabuf_device_info *info);
/* Frees a device, unmapping what is left (lock held). */
void dmb_device_free(struct dmabuf_device *dev);

/* Destroys every device of ctx (context teardown); tables still mapped on a
 * device are unmapped first (with an error log: they were leaked). */
void dmb_devices_destroy_all(struct dmabuf_ctx *ctx);

/* dma.c: translation tree maintenance, used by dmb_sgt_dma_map/unmap.
 * insert assigns seg->seq; remove remembers the range as recently unmapped
 * (so later DMA there faults as AFTER_UNMAP). */
int dmb_dma_insert(struct dmabuf_device *dev, struct dmb_dma_seg *seg);
void dmb_dma_remove(struct dmabuf_device *dev, struct dmb_dma_seg *seg);

