/* SPDX-License-Identifier: MIT */
/*
 * sg tables: the CPU page list an exporter's map op returns, and the device
 * address list the library assigns for the attached device.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "dmabuf.h"

struct dmb_backing;
struct dmb_phys_run;
struct dmabuf_device;

struct dmabuf_sg_table {
	struct dmabuf_sg_entry *cpu;
	unsigned int cpu_count, cpu_cap;
	struct dmabuf_dma_entry *dma;
	unsigned int dma_count;
	uint64_t size;

	/* Set while the table is a live mapping of an attachment. */
	struct dmabuf_attachment *att;
	enum dmabuf_direction dir;
	LIST_ENTRY(dmabuf_sg_table) att_link;
	uint64_t remote_id;	/* proxies: the exporter's mapping id */
	/* The buffer moved or was revoked since the map: device access
	 * through it faults as DMABUF_FAULT_STALE (the IOMMU still maps the
	 * old frames, which the exporter no longer owns). */
	bool stale;

	/* Device-side state of the mapping (sg_table.c / dma.c). */
	struct dmabuf_device *mapped_dev;
	uint64_t iova_base, iova_size;	/* IOMMU devices */
	struct dmb_dma_seg *segs;	/* nodes in the device's DMA tree */
	unsigned int nsegs;
	/* Where device reads and writes land: cpu_base (offset 0 of the
	 * buffer), or, when that is NULL, backing's library mapping, made at
	 * the first DMA access (dma.c). */
	uint8_t *cpu_base;
	struct dmb_backing *backing;
};

/* A new empty table (registered as a live object). */
int dmb_sgt_new(struct dmabuf_sg_table **out);
/* Frees a table (unmapping it first if it is still device-mapped). */
void dmb_sgt_free(struct dmabuf_sg_table *sgt);

/* Appends a CPU entry, merging it into the previous one when the physical
 * address continues it. Entries cover the buffer in order: offset must be the
 * table's current size; len and phys page multiples; -EINVAL otherwise, and
 * for a table that is device-mapped. */
int dmb_sgt_append(struct dmabuf_sg_table *sgt, uint64_t offset, uint64_t len,
		   uint64_t phys);

/* CPU entries for the whole buffer from its physical runs (buffer order):
 * O(nruns), one allocation. On failure the table is left as it was. */
int dmb_sgt_from_runs(struct dmabuf_sg_table *sgt,
		      const struct dmb_phys_run *runs, size_t nruns);

/*
 * Assigns device addresses for dev (the dma_map_sgtable() step):
 * - IOMMU: one IOVA range from the device's space (aligned to its alignment,
 *   below its mask, inside one boundary window when it fits), split into DMA
 *   entries at max_segment_size (rounded down to the alignment when it is at
 *   least that) and segment_boundary; -ENOMEM when the IOVA space is full.
 * - no IOMMU: DMA address = physical address, CPU entries split at
 *   max_segment_size and segment_boundary; -EIO if a frame lies beyond the
 *   DMA mask; -EINVAL if a segment start violates the alignment.
 * - DMABUF_DEVICE_CONTIGUOUS: the result must be exactly one DMA entry, else
 *   -EINVAL (without IOMMU: not one physical run, or a run longer than
 *   max_segment_size or crossing a boundary; with IOMMU: a size over
 *   max_segment_size or over a boundary window).
 * -EINVAL also for a bad direction, a NULL cpu_base, an empty table or one
 * that is already mapped. Each DMA entry records its buffer offset.
 * cpu_base is this process's mapping of the buffer (offset 0); device reads
 * and writes go there. writable is false for a read-only buffer.
 * On success the mapping is entered in the device's DMA translation tree
 * (dma.c), one node per range contiguous in both device and buffer
 * addresses, so dmabuf_dma_read/write reach it. On failure nothing changes.
 */
int dmb_sgt_dma_map(struct dmabuf_sg_table *sgt, struct dmabuf_device *dev,
		    enum dmabuf_direction dir, uint8_t *cpu_base, bool writable);

/* The same, with the bytes in backing: nothing is mapped into this process
 * until the device first reads or writes (then backing's library mapping is
 * made, writable if the memfd allows; a write through a mapping that could
 * only be made read-only faults as READ_ONLY). */
int dmb_sgt_dma_map_backing(struct dmabuf_sg_table *sgt, struct dmabuf_device *dev,
			    enum dmabuf_direction dir, struct dmb_backing *backing,
			    bool writable);

/* Removes the device addresses (DMA to them then faults as AFTER_UNMAP) and
 * releases the IOVA range. */
void dmb_sgt_dma_unmap(struct dmabuf_sg_table *sgt);
