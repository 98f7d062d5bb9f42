/* SPDX-License-Identifier: MIT */
/*
 * What the files of the emulation core share (not part of the contract in
 * uapi.h, which is all a front end needs).
 */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "uapi.h"

struct dmabuf_ctx;
struct dmabuf_timeline;

#define DMB_UAPI_PAGE 4096ull

/* The kernel's O_LARGEFILE (asm-generic/fcntl.h): glibc's is 0 on 64-bit
 * targets, the flag the kernel reports in fdinfo and F_GETFL is not. */
#define DMB_UAPI_O_LARGEFILE 0100000ul

/* The process's context: made at the first open of an emulated path, made
 * anew in a forked child. NULL (errno set) if it cannot be made. */
struct dmabuf_ctx *dmb_uapi_ctx(void);

/* The context, with its service thread running: for calls that export. */
struct dmabuf_ctx *dmb_uapi_ctx_exporting(void);

/* The context if this process made one already, else NULL. */
struct dmabuf_ctx *dmb_uapi_ctx_if_made(void);

/* The buffer behind a dma-buf fd of this process, with one reference;
 * imported when it comes from another process; held until the program
 * closes an fd of it. */
struct dmabuf;
int dmb_uapi_get_buf(int fd, struct dmabuf **out);
/* The program unmaps a mapping the library made (a udmabuf's): 1 if it
 * was one (then unmapped through the library), else 0. */
int dmb_uapi_munmap_lib(void *addr, size_t len);

/* Drops the held reference of (dev, ino), after the program closed an fd. */
void dmb_uapi_release_held(dev_t dev, ino_t ino);
bool dmb_uapi_have_held(void);
bool dmb_uapi_held_has(dev_t dev, ino_t ino);
void dmb_uapi_held_forked(void);
void dmb_uapi_held_exit(void);

/* At exit: the process's context goes, its service thread stopped. */
void dmb_uapi_exit(void);

/* Called in a forked child: the parent's context is not ours to use. */
void dmb_uapi_forked(void);

/* Tree entries: kind and heap name for an inode of the emulated tree. */
enum dmb_uapi_kind dmb_uapi_tree_kind(const struct stat *st, const char **heap);

/* sw_sync timelines (timelines.c): the state is in the timeline's file,
 * shared by every process that has it; the points are the process's that
 * made them. open returns the new file's fd or -errno; create_fence and
 * inc are SW_SYNC_IOC_CREATE_FENCE and SW_SYNC_IOC_INC on a timeline fd of
 * this process (-EINVAL if it is none). */
struct dmabuf_fence;
int dmb_uapi_timeline_open(int flags);
int dmb_uapi_timeline_create_fence(int fd, uint32_t value, struct dmabuf_fence **out);
int dmb_uapi_timeline_inc(int fd, uint32_t value);
/* In a forked child: the parent's entries are not the child's (it attaches
 * to the same files with descriptions of its own). */
void dmb_uapi_timelines_forked(void);
/* Waits until the watcher is done with what it is signalling (the layer's
 * fds of points it signalled are closed then). Cheap without a watcher. */
void dmb_uapi_timelines_settle(void);
/* At exit: the watcher thread is stopped (points still pending here stay
 * so; the process's exit makes their holders see the signaller's death). */
void dmb_uapi_timelines_exit(void);

/* False when no close() can matter to the emulation: no timeline, no held
 * buffer, no buffer of this process alive. */
bool dmb_uapi_close_matters(void);

/* Names given by SYNC_IOC_MERGE, by the inode of the sync file. */
void dmb_uapi_sync_name_set(int fd, const char *name);
int dmb_uapi_sync_name_get(int fd, char *name, size_t size);

/* Small per-process number of a fence context, for default sync-file names
 * (the core's contexts are random 64-bit values). */
unsigned long long dmb_uapi_context_number(uint64_t context);

/* sw_sync point deadlines (SYNC_IOC_SET_DEADLINE, SW_SYNC_GET_DEADLINE), by
 * the point's context and seqno: set keeps the earliest; get is -ENOENT
 * when none was set. */
void dmb_uapi_deadline_set(uint64_t context, uint64_t seqno, uint64_t ns);
int dmb_uapi_deadline_get(uint64_t context, uint64_t seqno, uint64_t *ns);

/* Leak tracking (leaks.c): remember where an fd's file was made. */
void dmb_uapi_leak_note(int fd, const char *what);

/* fstat(fd) inside an emulated ioctl: the front end's, if it passed one
 * for this fd (dmb_uapi_ioctl_stat()), else a real one. 0 or -1/errno. */
int dmb_uapi_fstat(int fd, struct stat *st);

/* Classification from an fstat the caller already made. */
enum dmb_uapi_kind dmb_uapi_classify_stat(int fd, const struct stat *st);

/* The program's mappings of dma-bufs (mappings.c), for the leak report
 * and strict CPU access. */
void dmb_uapi_map_note(void *addr, size_t len, int prot, int fd);
void dmb_uapi_map_forget(void *addr, size_t len);
/* After a successful DMA_BUF_IOCTL_SYNC START (start) or END on fd. */
void dmb_uapi_map_sync(int fd, bool start);
int dmb_uapi_map_report(void);
/* After a successful DMA_BUF_SET_NAME on fd: the fault message follows. */
void dmb_uapi_map_renamed(int fd);

/*
 * The layer's registry of what it owns in its process (fdplace.c writes
 * it, fdinfo's count reads it in every process): a memfd named
 * DMB_UAPI_REGISTRY_NAME, mapped shared, holding the bitmap of the layer's
 * fds and the address ranges of the layer's own mappings. Another process
 * reads it through /proc/<pid>/fd/<its fd>, so `count` can leave out the
 * layers' references in every process, as the kernel has none.
 */
#define DMB_UAPI_REGISTRY_NAME "dmabuf-uapi-layer"
#define DMB_UAPI_REGISTRY_MAGIC 0x646d6275617069ull /* "dmbuapi" */
#define DMB_UAPI_REGISTRY_FDS 65536
#define DMB_UAPI_REGISTRY_MAPS 256
struct dmb_uapi_registry {
	uint64_t magic;
	uint64_t marks[DMB_UAPI_REGISTRY_FDS / 64];	/* bit per layer fd */
	struct {
		uint64_t lo, hi;	/* [lo, hi); lo == hi: a free slot */
	} maps[DMB_UAPI_REGISTRY_MAPS];
};

/* Reads the last path component of /proc/self/fd/<fd> into buf. */
int dmb_uapi_fd_link(int fd, char *buf, size_t size);
