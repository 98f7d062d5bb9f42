/* SPDX-License-Identifier: MIT */
/*
 * Internal view of fences, shared by fence.c, fence_array.c, sw_sync.c,
 * sync_file.c and resv.c. See docs/fences.md.
 */
#pragma once

#include <sys/queue.h>
#include <sys/types.h>

#include "dmabuf-fence.h"
#include "base.h"

enum dmb_fence_kind {
	DMB_FENCE_PLAIN,	/* dmabuf_fence_new() */
	DMB_FENCE_STUB,
	DMB_FENCE_ARRAY,	/* fence_array.c */
	DMB_FENCE_TIMELINE,	/* sw_sync.c */
	DMB_FENCE_IMPORTED,	/* sync_file.c: signalled through a sync-file fd */
};

struct dmb_fence_array;
struct dmb_sf_export;

struct dmabuf_fence {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* CLOCK_MONOTONIC; waiters */
	atomic_uint refcount;
	/* Written under lock after error and timestamp, with release order,
	 * so lock-free readers that see it set see both. */
	atomic_bool signaled;
	int error;
	int64_t timestamp;

	const struct dmabuf_fence_ops *ops;
	void *priv;
	uint64_t context;
	uint64_t seqno;
	enum dmb_fence_kind kind;

	struct dmabuf_fence_cb cb_head;	/* circular list of pending callbacks */

	/* sync_file.c: this fence's sync file, NULL until first exported or
	 * imported. Owned by the fence; freed with it. */
	struct dmb_sf_export *sf;

	/* fence_array.c */
	struct dmb_fence_array *array;

	/* sw_sync.c: pending fences of a timeline, under the timeline lock. */
	struct dmabuf_timeline *tl;
	TAILQ_ENTRY(dmabuf_fence) tl_link;
	bool tl_linked;

	/* DMB_FENCE_IMPORTED: names from the peer */
	char imp_driver[DMABUF_SYNC_NAME_LEN];
	char imp_timeline[DMABUF_SYNC_NAME_LEN];
};

/* fence.c */
int dmb_fence_create(const struct dmabuf_fence_ops *ops, void *priv,
		     uint64_t context, uint64_t seqno, enum dmb_fence_kind kind,
		     struct dmabuf_fence **out);
bool dmb_fence_live(struct dmabuf_fence *f);
/* Signals with the lock held; error (if non-zero) is set first unless an
 * error is already recorded. Returns -EINVAL if already signalled. */
int dmb_fence_signal_locked(struct dmabuf_fence *f, int error, int64_t ts);
int64_t dmb_now_ns(void);
/* Takes a reference unless the count already dropped to zero. */
bool dmb_fence_tryget(struct dmabuf_fence *f);

/* fence_array.c */
void dmb_fence_array_fini(struct dmabuf_fence *f);
unsigned int dmb_fence_array_count(struct dmabuf_fence *f);
struct dmabuf_fence *dmb_fence_array_child(struct dmabuf_fence *f, unsigned int i);

/* sw_sync.c */
void dmb_timeline_fence_fini(struct dmabuf_fence *f);

/* sync_file.c */
/* Called under f->lock once f has signalled: completes its sync file. */
void dmb_sf_signalled_locked(struct dmabuf_fence *f);
/* Called from the last put, before the fence is freed. */
void dmb_sf_fini(struct dmabuf_fence *f);
/* For imported fences: checks the fd without blocking (timeout_ms 0) or
 * waits on it; signals the fence when the fd says so. Returns true when
 * signalled. */
bool dmb_sf_poll_imported(struct dmabuf_fence *f, int timeout_ms);
/* An imported fence got its first callback: watch its fd. */
void dmb_sf_watch(struct dmabuf_fence *f);
