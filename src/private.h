/* SPDX-License-Identifier: MIT */
/*
 * Internal definitions shared by the library's source files. Nothing here is
 * API: internal functions use the dmb_ prefix (never dmabuf_, which is the
 * exported namespace checked by tests/check-symbols.py).
 */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/queue.h>
#include <sys/types.h>

/* glibc's sys/queue.h lacks the _SAFE iterators. */
#ifndef LIST_FOREACH_SAFE
#define LIST_FOREACH_SAFE(var, head, field, tvar)                          \
	for ((var) = LIST_FIRST((head));                                   \
	     (var) && ((tvar) = LIST_NEXT((var), field), 1); (var) = (tvar))
#endif

/* libbsd's RB_GENERATE_STATIC expects the BSD __unused. */
#ifndef __unused
#define __unused __attribute__((unused))
#endif
#include <bsd/sys/tree.h>

#include "dmabuf.h"

#define DMABUF_EXPORT __attribute__((visibility("default")))

#define DMB_PAGE_SIZE 4096ull
#define DMB_PAGE_SHIFT 12

#define DMB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DMB_ALIGNED(x, a) (((x) & ((a)-1)) == 0)
#define DMB_ALIGN_UP(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))
#define dmb_container_of(ptr, type, member) \
	((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- logging (log.c) ---------------------------------------------------- */

__attribute__((format(printf, 3, 4))) void
dmb_log(struct dmabuf_ctx *ctx, enum dmabuf_log_priority prio, const char *fmt, ...);

#define dmb_err(ctx, ...) dmb_log((ctx), DMABUF_LOG_ERROR, __VA_ARGS__)
#define dmb_warn(ctx, ...) dmb_log((ctx), DMABUF_LOG_WARNING, __VA_ARGS__)
#define dmb_info(ctx, ...) dmb_log((ctx), DMABUF_LOG_INFO, __VA_ARGS__)
#define dmb_dbg(ctx, ...) dmb_log((ctx), DMABUF_LOG_DEBUG, __VA_ARGS__)

/* ---- live-object registry (objects.c) ------------------------------------
 * Every object handed to a caller is registered here while it lives, so a
 * stale or doubly freed pointer is detected (-EINVAL) instead of being
 * dereferenced. The registry is process-wide and has its own lock.
 */
enum dmb_obj_type {
	DMB_OBJ_CTX = 1,
	DMB_OBJ_DEVICE,
	DMB_OBJ_BUFFER,
	DMB_OBJ_ATTACHMENT,
	DMB_OBJ_SG_TABLE,
	DMB_OBJ_FENCE,
	DMB_OBJ_TIMELINE,
};

int dmb_obj_add(const void *obj, enum dmb_obj_type type);
void dmb_obj_del(const void *obj);
bool dmb_obj_live(const void *obj, enum dmb_obj_type type);
/* Checks obj is live, then takes the lock of the context *ctxp points to
 * (a field of obj) and checks again. Returns the locked context, or NULL
 * (nothing locked) when obj is not a live object of that type. */
struct dmabuf_ctx *dmb_obj_lock_ctx(const void *obj, enum dmb_obj_type type,
				    struct dmabuf_ctx *const *ctxp);

/* ---- event loop (ctx.c) ----------------------------------------------------
 * A source is an fd in the context's epoll set with a callback; epoll's
 * data.ptr points to the source.
 */
struct dmb_source;
typedef void (*dmb_source_fn)(struct dmb_source *src, uint32_t events);

struct dmb_source {
	int fd;
	dmb_source_fn fn;
	void *data;
};

int dmb_source_add(struct dmabuf_ctx *ctx, struct dmb_source *src, int fd,
		   uint32_t events, dmb_source_fn fn, void *data);
int dmb_source_mod(struct dmabuf_ctx *ctx, struct dmb_source *src, uint32_t events);
void dmb_source_del(struct dmabuf_ctx *ctx, struct dmb_source *src);
int dmb_ctx_dispatch_locked(struct dmabuf_ctx *ctx, int timeout_ms);

/* ---- context ------------------------------------------------------------- */

struct dmb_physmem;
struct dmb_endpoint;
struct dmb_conn;

struct dmb_inode_key {
	dev_t dev;
	ino_t ino;
};

RB_HEAD(dmb_buf_tree, dmabuf);
RB_HEAD(dmb_wd_tree, dmabuf);

struct dmabuf_ctx {
	/* Recursive: exporter ops and log handlers may call back into the
	 * library on the thread that holds it. */
	pthread_mutex_t lock;
	struct dmabuf_ctx_config config;

	struct dmb_physmem *physmem;

	int epoll_fd;
	int inotify_fd;
	struct dmb_source inotify_src;
	/* timerfd that re-runs release probes which raced with __fput(). */
	int reprobe_fd;
	struct dmb_source reprobe_src;

	struct dmb_buf_tree by_inode;	/* every struct dmabuf of this ctx */
	struct dmb_wd_tree by_wd;	/* exported buffers, by inotify wd */
	LIST_HEAD(, dmabuf_device) devices;
	LIST_HEAD(, dmabuf) reprobe;	/* buffers waiting for a re-probe */

	struct dmb_endpoint *endpoint;	/* exporter side, made at first export */
	LIST_HEAD(, dmb_conn) conns;	/* importer side, one per exporter */

	struct dmabuf_ctx_stats stats;

	/* Every context of the process, so a thread waiting for a reply can
	 * serve the others (two contexts in one process must not deadlock). */
	LIST_ENTRY(dmabuf_ctx) process_link;

	/* The process generation that made it: a forked child inherits a
	 * copy of the context (and shares its epoll, inotify and endpoint
	 * fds), which it must not use. */
	unsigned int fork_gen;

	/* optional service thread */
	pthread_t thread;
	bool thread_running;
	int thread_stop_fd;
};

/* Incremented in every forked child (pthread_atfork). */
unsigned int dmb_fork_gen(void);
/* Live, and made by this process (not inherited over fork()). */
bool dmb_ctx_usable(const struct dmabuf_ctx *ctx);

/* Serves every other context of the process that is ready and whose lock is
 * free (trylock), without blocking. */
void dmb_ctx_serve_others(struct dmabuf_ctx *self);
/* The epoll fds of every other context, for a wait that must wake when any
 * of them has work; returns how many were written (at most max). */
int dmb_ctx_other_fds(struct dmabuf_ctx *self, int *fds, int max);

static inline void dmb_lock(struct dmabuf_ctx *ctx) { pthread_mutex_lock(&ctx->lock); }
static inline void dmb_unlock(struct dmabuf_ctx *ctx) { pthread_mutex_unlock(&ctx->lock); }

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
	bool map_writable;
	/* A second mapping for the CPU (vmap): separate from map, which the
	 * DMA engine uses, so strict CPU access can revoke it alone. Made
	 * before a read-only buffer is sealed, so the exporter can write. */
	uint8_t *cpu_view;
	/* Simulated frames, NULL/0 while a DEFERRED backing is unallocated. */
	struct dmb_phys_run *runs;
	size_t nruns;
	bool from_cma;
};

/* ---- buffer ------------------------------------------------------------- */

enum dmb_buf_state {
	DMB_BUF_LIVE,	  /* referenced by the library's callers */
	DMB_BUF_ORPHAN,	  /* no library reference; file still open somewhere */
	DMB_BUF_RELEASED, /* ops->release has run (about to be freed) */
};

struct dmabuf {
	struct dmabuf_ctx *ctx;
	RB_ENTRY(dmabuf) inode_node;
	RB_ENTRY(dmabuf) wd_node;
	struct dmb_inode_key key;

	unsigned int refcount; /* library references, under ctx->lock */
	enum dmb_buf_state state;

	const struct dmabuf_ops *ops;
	void *priv;
	uint64_t size;
	int flags; /* O_RDONLY or O_RDWR */
	enum dmabuf_alloc alloc;
	char exp_name[DMABUF_NAME_LEN];
	char name[DMABUF_NAME_LEN];

	/* The dma-buf file: one open file description (reopened memfd).
	 * file_fd is the library's reference to it while refcount > 0. */
	int file_fd;
	/* A private OFD of the same inode: used for the release probe
	 * (flock LOCK_EX succeeds only when the dma-buf file is gone) and for
	 * the library's own mappings, which must not pin the dma-buf file. */
	int probe_fd;
	int wd; /* inotify watch, -1 if none */
	unsigned int reprobes_left;
	LIST_ENTRY(dmabuf) reprobe_link; /* valid while reprobes_left > 0 */
	bool handle_only; /* udmabuf: the file is a handle, bytes elsewhere */

	struct dmb_backing backing;

	LIST_HEAD(, dmabuf_attachment) attachments;
	unsigned int nattachments;
	unsigned int nmappings;

	/* vmap refcount and address */
	unsigned int vmap_count;
	void *vmap_addr;
	bool vmap_writable;

	/* CPU access brackets, per direction kind */
	unsigned int cpu_read_open;
	unsigned int cpu_write_open;
	LIST_HEAD(, dmb_cpu_map) cpu_maps; /* dmabuf_mmap() mappings */

	struct dmabuf_resv *resv;

	/* Set on proxies of another context's buffer (cross-process). */
	bool imported;
};

RB_PROTOTYPE(dmb_buf_tree, dmabuf, inode_node, dmb_buf_inode_cmp);
RB_PROTOTYPE(dmb_wd_tree, dmabuf, wd_node, dmb_buf_wd_cmp);

/* Validates buf (live object with a reference) and takes its context lock;
 * NULL, with nothing locked, otherwise. */
struct dmabuf_ctx *dmb_buf_lock(const struct dmabuf *buf);
/* The same, also accepting a buffer whose last reference is gone but whose
 * file is still open (for calls that undo a mapping). */
struct dmabuf_ctx *dmb_buf_lock_any(const struct dmabuf *buf);

/* buffer.c */
int dmb_export_validate(const struct dmabuf_export_info *info);
/* Creates a buffer; with `backing` (udmabuf), its ranges are taken over and
 * the dma-buf file is a separate handle memfd. */
int dmb_buf_create(struct dmabuf_ctx *ctx, const struct dmabuf_export_info *info,
		   struct dmb_backing *backing, struct dmabuf **out);
void dmb_buf_destroy(struct dmabuf *buf);
/* One more reference on a buffer found by an fd of its file; an orphan is
 * revived on that fd. */
int dmb_buf_get_ref(struct dmabuf *buf, int fd);
struct stat;
int dmb_buf_lookup(struct dmabuf_ctx *ctx, int fd, struct stat *st,
		   struct dmabuf **found);

/* release.c */
int dmb_release_watch(struct dmabuf *buf);
void dmb_release_unwatch(struct dmabuf *buf);
void dmb_release_cancel(struct dmabuf *buf);
void dmb_release_check(struct dmabuf *buf);
void dmb_release_inotify(struct dmb_source *src, uint32_t events);
void dmb_release_reprobe(struct dmb_source *src, uint32_t events);
void dmb_buf_release_now(struct dmabuf *buf);

/* backing.c */
int dmb_backing_init_memfd(struct dmb_backing *b, int memfd, uint64_t size);
int dmb_backing_map_cpu(struct dmb_backing *b, bool writable);
int dmb_backing_map_view(struct dmb_backing *b);
/* A fresh mapping of every range (MAP_FAILED + errno on failure); a single
 * range maps fd_override instead of its own fd when fd_override >= 0. */
void *dmb_backing_map_new(struct dmb_backing *b, int prot, int fd_override);
void *dmb_backing_map_range(struct dmb_backing *b, uint64_t offset, uint64_t len,
			    int prot, int fd_override);
int dmb_backing_alloc(struct dmabuf_ctx *ctx, struct dmabuf *buf);
void dmb_backing_fini(struct dmabuf_ctx *ctx, struct dmb_backing *b);

/* ---- attachment ----------------------------------------------------------- */

struct dmb_mapping; /* sg_table.h */

struct dmabuf_attachment {
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	struct dmabuf_device *dev;
	LIST_ENTRY(dmabuf_attachment) buf_link;
	void *priv;
	LIST_HEAD(, dmabuf_sg_table) mappings;
	unsigned int nmappings;
	bool pinned;
	uint64_t remote_id;	/* proxies: the exporter's attachment id */
};

/* cpu_access.c: one dmabuf_mmap() mapping */
struct dmb_cpu_map {
	LIST_ENTRY(dmb_cpu_map) link;
	void *addr;
	uint64_t len;
	int prot;
};

void dmb_cpu_access_fini(struct dmabuf *buf);
/* timeout_ms: how long to wait for fences (-1 forever); -EBUSY when they
 * are still pending after it. */
int dmb_cpu_begin_locked(struct dmabuf *buf, enum dmabuf_direction dir, int timeout_ms);
int dmb_cpu_end_locked(struct dmabuf *buf, enum dmabuf_direction dir);
/* buffer_sync.c: waits for the fences CPU access must wait for (writers for
 * a read; everything for a write). */
int dmb_buf_wait_for_cpu(struct dmabuf *buf, bool write, int timeout_ms);
int dmb_buf_export_sync_file_locked(struct dmabuf *buf, uint32_t flags);
int dmb_buf_wait_kernel(struct dmabuf *buf);
void dmb_attachments_destroy_all(struct dmabuf *buf);
/* attachment.c, with the context lock held and arguments validated */
int dmb_attach_locked(struct dmabuf *buf, struct dmabuf_device *dev,
		      struct dmabuf_attachment **out);
void dmb_detach_locked(struct dmabuf_attachment *att);
int dmb_map_locked(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		   struct dmabuf_sg_table **out);
int dmb_unmap_locked(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
		     enum dmabuf_direction dir);

/* Syscall layer for fault injection (sys.c): tests make the Nth call of a
 * given syscall fail with an errno. */
#include "sys.h"
#include "device.h"
#include "physmem.h"
#include "sg_table.h"
