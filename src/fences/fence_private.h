/* SPDX-License-Identifier: MIT */
/*
 * Internal view of fences, shared by fence.c (the base), its subtypes
 * (fence_array.c, fence_chain.c, sw_sync.c, sync_file*.c) and resv.c. See docs/fences.md.
 *
 * As in the kernel's dma-fence.c, the base names none of its subtypes: a
 * subtype embeds struct dmabuf_fence as the first member of its own struct
 * (allocated by dmb_fence_create() with the subtype's size) and plugs in
 * through struct dmabuf_fence_ops, the same table drivers fill in. What the
 * base needs beyond the ops (refusing dmabuf_fence_signal() on a fence
 * that only its ops may signal, detaching sync-file state at free) are
 * generic flags and attachments, not subtype names.
 */
#pragma once

#include <sys/queue.h>
#include <sys/types.h>

#include "dmabuf-fence.h"
#include "base.h"

/* Flags of dmb_fence_create(). */
#define DMB_FENCE_FOREIGN	(1u << 0) /* signalled by its ops only: the
					   * public dmabuf_fence_signal() and
					   * dmabuf_fence_set_error() refuse it */
#define DMB_FENCE_PULL_DEADLINE	(1u << 1) /* deadlines from other processes
					   * are read when asked for
					   * (dmb_sync_file_pull_deadlines()),
					   * not by the watcher thread */

struct dmb_fence_attachment;

/* Library state hung on a fence of any subtype (a sync file's export
 * records): detach() runs from the last put, before ops->release, without
 * the fence lock. */
struct dmb_fence_attachment_ops {
	void (*detach)(struct dmabuf_fence *f, struct dmb_fence_attachment *a);
};

struct dmb_fence_attachment {
	const struct dmb_fence_attachment_ops *ops;
	struct dmb_fence_attachment *next;
};

struct dmabuf_fence {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* CLOCK_MONOTONIC; waiters */
	atomic_uint refcount;
	/* Written under lock after error and timestamp, with release order,
	 * so lock-free readers that see it set see both. */
	atomic_bool signaled;
	/* ops->enable_signaling has been called (or is being called). */
	atomic_bool signaling_enabled;
	unsigned int flags;		/* DMB_FENCE_*, constant */
	int error;
	int64_t timestamp;

	const struct dmabuf_fence_ops *ops;
	void *priv;
	uint64_t context;
	uint64_t seqno;

	struct dmabuf_fence_cb cb_head;	/* circular list of pending callbacks */
	struct dmb_fence_attachment *attachments;	/* under lock */
};

/* True when the member of an ops table exists in its version and is set:
 * members introduced after version 0 are read only from tables that
 * declare a version that has them (older tables are shorter). */
#define DMB_FENCE_OPS_V_use_64bit_seqno		1
#define DMB_FENCE_OPS_V_signaled		1
#define DMB_FENCE_OPS_V_enable_signaling	1
#define DMB_FENCE_OPS_V_wait			1
#define DMB_FENCE_OPS_V_set_deadline		2
#define DMB_FENCE_OPS_V_release			0
#define DMB_FENCE_OPS_V_get_driver_name		0
#define DMB_FENCE_OPS_V_get_timeline_name	0
#define dmb_fence_has_op(f, member) \
	((f)->ops->version >= DMB_FENCE_OPS_V_##member && (f)->ops->member)

/* fence.c */
/* Allocates size bytes (>= sizeof(struct dmabuf_fence); the subtype's
 * struct with the base first), zero-filled, and initialises the base. The
 * base frees the memory after ops->release. */
int dmb_fence_create(const struct dmabuf_fence_ops *ops, size_t size,
		     void *priv, uint64_t context, uint64_t seqno,
		     unsigned int flags, struct dmabuf_fence **out);
bool dmb_fence_live(struct dmabuf_fence *f);
/* Signals with the lock held; error (if non-zero) is set first unless an
 * error is already recorded. Returns -EINVAL if already signalled. The
 * caller holds a reference (callbacks may drop others). */
int dmb_fence_signal_locked(struct dmabuf_fence *f, int error, int64_t ts);
/* Takes the lock and signals; the caller holds a reference. */
int dmb_fence_signal_ts(struct dmabuf_fence *f, int error, int64_t ts);
int64_t dmb_now_ns(void);
/* Takes a reference unless the count already dropped to zero. */
bool dmb_fence_tryget(struct dmabuf_fence *f);
/* Lock-free signalled test that consults ops->signaled (no validation). */
bool dmb_fence_test_signaled(struct dmabuf_fence *f);
/* __dma_fence_is_later(): a later than b, same context; 32-bit with
 * wrap-around unless the ops ask for 64-bit seqnos. */
bool dmb_fence_is_later(struct dmabuf_fence *a, struct dmabuf_fence *b);
/* Calls ops->enable_signaling once (no lock held). */
void dmb_fence_enable_signaling(struct dmabuf_fence *f);
/* Under f->lock: hangs a on f, or finds the attachment with those ops. */
void dmb_fence_attach_locked(struct dmabuf_fence *f, struct dmb_fence_attachment *a);
struct dmb_fence_attachment *dmb_fence_find_attachment_locked(
	struct dmabuf_fence *f, const struct dmb_fence_attachment_ops *ops);
/* Thread-local: > 0 while this thread runs fence callbacks. */
bool dmb_fence_in_callback(void);
/* A function dmb_fence_signal_ts() calls after a signal, outside any
 * callback and with no fence lock held (sync_file_watcher.c: stopping a watcher
 * that a callback found idle). */
void dmb_fence_set_after_signal(void (*fn)(void));

/* sync_file_export.c: hands f the deadlines that holders of its sync files in
 * other processes wrote, for a fence made with DMB_FENCE_PULL_DEADLINE. */
void dmb_sync_file_pull_deadlines(struct dmabuf_fence *f);

/* fence_chain.c */
bool dmb_fence_is_chain(struct dmabuf_fence *f);
/* The fence a chain link holds, or f itself if f is no chain (borrowed). */
struct dmabuf_fence *dmb_fence_chain_contained(struct dmabuf_fence *f);
/* fn for each link's fence of chain f, head first (f itself if no chain),
 * without collecting signalled links; stops when fn returns false. */
void dmb_fence_chain_for_each_contained(struct dmabuf_fence *f,
					bool (*fn)(void *d, struct dmabuf_fence *c),
					void *d);

/* fence_array.c */
/* The fences inside f (borrowed), flattened: a chain's links' fences, head
 * first, and an array's fences; f itself if it is neither. */
unsigned int dmb_fence_unwrap_count(struct dmabuf_fence *f);
struct dmabuf_fence *dmb_fence_unwrap_child(struct dmabuf_fence *f, unsigned int i);

/* resv.c: the lock as dmabuf_resv_lock() holds it. held: the calling thread
 * holds it (at any depth). unlock_all drops it whole and returns the depth
 * for relock, for a call that must take a context lock (which comes first
 * in the lock order) while its caller holds the resv. */
bool dmb_resv_held(struct dmabuf_resv *r);
unsigned int dmb_resv_unlock_all(struct dmabuf_resv *r);
void dmb_resv_relock(struct dmabuf_resv *r, unsigned int depth);
/* resv.c: a sequence number that every KERNEL fence added to r moves on by
 * 2 (seq_cst), or NULL: the published map state of the buffer (a static
 * importer's map waits for those fences, so a table cached before one was
 * added is not the answer any more; docs/design.md §6). */
void dmb_resv_set_kernel_seq(struct dmabuf_resv *r, _Atomic uint32_t *seq);
