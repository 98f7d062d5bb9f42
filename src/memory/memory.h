/* SPDX-License-Identifier: MIT */
/*
 * The memory layer (src/memory/): simulated physical memory (physmem), IOVA
 * spaces (iova) and a buffer's backing (its memfd ranges, the library's
 * mappings of them, and the frames behind them). It calls only the base
 * layer; it knows nothing of buffers, devices or contexts.
 */
#pragma once

#include "base.h"
#include "iova.h"
#include "physmem.h"

/* ---- backing (backing.c) ----------------------------------------------------
 * Where a buffer's bytes live: one or more memfd ranges (one for exported
 * buffers, the caller's ranges for udmabuf), mapped once into a contiguous
 * address range of this process, and the simulated physical runs behind them.
 */
struct dmb_phys_run {
	uint64_t addr;	 /* simulated physical address, page aligned */
	uint64_t npages;
};

struct dmb_backing_range {
	int fd;
	bool owned;	 /* closed with the backing (else borrowed) */
	/* fd is a file the library's own mappings must not hold (the dma-buf
	 * file while the library has it): each mapping is made through a
	 * fresh open file description of fd's inode, closed once mapped. */
	bool reopen;
	uint64_t offset; /* in fd */
	uint64_t size;
};

struct dmb_backing {
	uint64_t size;
	struct dmb_backing_range *ranges;
	size_t nranges;
	/* The library's own mapping of all ranges, stitched contiguously;
	 * NULL until first needed. Writable when the ranges allow it. */
	uint8_t *map;
	/* A second mapping for the CPU (vmap): separate from map, which the
	 * DMA engine uses, so strict CPU access can revoke it alone. Made
	 * before a read-only buffer is sealed, so the exporter can write. */
	uint8_t *cpu_view;
	/* Simulated frames, NULL/0 while a DEFERRED backing is unallocated. */
	struct dmb_phys_run *runs;
	size_t nruns;
	bool map_writable; /* map is writable (the bools last: no padding) */
	bool from_cma;
};

/* backing.c */
/* A new open file description of fd's inode (open("/proc/self/fd/N"),
 * close-on-exec); the fd or -errno. */
int dmb_backing_reopen(int fd, int flags);
/* The same through fd_dir, an fd of the directory /proc/self/fd (or -1:
 * the path). */
int dmb_backing_reopen_at(int fd_dir, int fd, int flags);
/* Drops every page of a memfd and keeps its size (fallocate PUNCH_HOLE):
 * what reads it next finds zeros, and it holds no memory. 0 or -errno. */
int dmb_backing_punch(int fd, uint64_t size);
int dmb_backing_init_memfd(struct dmb_backing *b, int memfd, uint64_t size);
int dmb_backing_map_cpu(struct dmb_backing *b, bool writable);
int dmb_backing_map_view(struct dmb_backing *b);
/* A fresh mapping of every range (MAP_FAILED + errno on failure); a single
 * range maps fd_override instead of its own fd when fd_override >= 0. */
void *dmb_backing_map_new(struct dmb_backing *b, int prot, int fd_override);
void *dmb_backing_map_range(struct dmb_backing *b, uint64_t offset, uint64_t len,
			    int prot, int fd_override);
/* Unmaps, frees the frames to pm, closes owned ranges. */
void dmb_backing_fini(struct dmb_physmem *pm, struct dmb_backing *b);

