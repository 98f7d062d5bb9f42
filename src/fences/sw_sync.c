/* SPDX-License-Identifier: MIT */
/*
 * sw_sync: a software timeline for tests. Fences are points on it; the
 * timeline value only moves forward, and every point it reaches signals.
 * Destroying the timeline signals what is left with -ENOENT, as closing
 * the kernel's sw_sync file does (sw_sync_debugfs_release()).
 *
 * The timeline is reference counted: its owner holds one reference and each
 * fence on it one more, so a signalled fence can still name its timeline
 * after dmabuf_timeline_destroy(). The timeline holds a reference to each
 * pending fence, so a caller may export a point and drop it.
 *
 * A point is a subtype of the base fence: struct dmb_tl_point embeds it and
 * the timeline's ops (32-bit seqnos, as sw_sync) plug it in.
 */
#include <stdlib.h>
#include <string.h>

#include "fence_private.h"

struct dmabuf_timeline {
	pthread_mutex_t lock;
	atomic_uint refcount;
	uint64_t context;
	uint32_t value;
	bool destroyed;
	char name[DMABUF_SYNC_NAME_LEN];
	TAILQ_HEAD(dmb_tl_pending, dmb_tl_point) pending;	/* sorted by seqno */
};

struct dmb_tl_point {
	struct dmabuf_fence base;
	struct dmabuf_timeline *tl;	/* reference */
	TAILQ_ENTRY(dmb_tl_point) link;	/* under tl->lock */
	bool linked;
	bool has_deadline;		/* under tl->lock, with deadline */
	int64_t deadline;		/* earliest, CLOCK_MONOTONIC ns */
};

static struct dmb_tl_point *to_point(struct dmabuf_fence *f)
{
	return dmb_container_of(f, struct dmb_tl_point, base);
}

static void timeline_put(struct dmabuf_timeline *tl)
{
	if (atomic_fetch_sub(&tl->refcount, 1) != 1)
		return;
	pthread_mutex_destroy(&tl->lock);
	free(tl);
}

static const char *tl_driver_name(struct dmabuf_fence *f)
{
	return "sw_sync";
}

static const char *tl_timeline_name(struct dmabuf_fence *f)
{
	return to_point(f)->tl->name;
}

static void tl_point_release(struct dmabuf_fence *f)
{
	struct dmb_tl_point *pt = to_point(f);
	struct dmabuf_timeline *tl = pt->tl;

	pthread_mutex_lock(&tl->lock);
	if (pt->linked) {
		TAILQ_REMOVE(&tl->pending, pt, link);
		pt->linked = false;
	}
	pthread_mutex_unlock(&tl->lock);
	timeline_put(tl);
}

/* As timeline_fence_set_deadline(): the earliest deadline is kept. */
static void tl_point_set_deadline(struct dmabuf_fence *f, int64_t deadline_ns)
{
	struct dmb_tl_point *pt = to_point(f);

	pthread_mutex_lock(&pt->tl->lock);
	if (!pt->has_deadline || deadline_ns < pt->deadline) {
		pt->deadline = deadline_ns;
		pt->has_deadline = true;
	}
	pthread_mutex_unlock(&pt->tl->lock);
}

static const struct dmabuf_fence_ops timeline_fence_ops = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = tl_driver_name,
	.get_timeline_name = tl_timeline_name,
	.release = tl_point_release,
	.use_64bit_seqno = false,	/* sw_sync's values are 32-bit */
	.set_deadline = tl_point_set_deadline,
};

/* sw_sync compares 32-bit values with wrap-around. */
static inline bool tl_reached(uint32_t value, uint64_t seqno)
{
	return (int32_t)(value - (uint32_t)seqno) >= 0;
}

DMABUF_EXPORT int dmabuf_timeline_new(const char *name, struct dmabuf_timeline **out)
{
	struct dmabuf_timeline *tl;
	int ret;

	if (!out)
		return -EINVAL;
	tl = calloc(1, sizeof(*tl));
	if (!tl)
		return -ENOMEM;
	pthread_mutex_init(&tl->lock, NULL);
	atomic_init(&tl->refcount, 1);
	tl->context = dmabuf_fence_context_alloc(1);
	snprintf(tl->name, sizeof(tl->name), "%s", name ? name : "sw_sync");
	TAILQ_INIT(&tl->pending);
	ret = dmb_obj_add(tl, DMB_OBJ_TIMELINE);
	if (ret) {
		pthread_mutex_destroy(&tl->lock);
		free(tl);
		return ret;
	}
	*out = tl;
	return 0;
}

/* Signals every pending point the value has reached (all of them when
 * error is set). Points are unlinked under the timeline lock, then
 * signalled under their own lock only, so callbacks may use the timeline. */
static void timeline_signal(struct dmabuf_timeline *tl, int error)
{
	for (;;) {
		struct dmb_tl_point *pt;

		pthread_mutex_lock(&tl->lock);
		pt = TAILQ_FIRST(&tl->pending);
		if (!pt || !(error || tl_reached(tl->value, pt->base.seqno))) {
			pthread_mutex_unlock(&tl->lock);
			return;
		}
		/* The list's reference passes to us. */
		TAILQ_REMOVE(&tl->pending, pt, link);
		pt->linked = false;
		pthread_mutex_unlock(&tl->lock);
		dmb_fence_signal_ts(&pt->base, error, dmb_now_ns());
		dmabuf_fence_put(&pt->base);
	}
}

DMABUF_EXPORT void dmabuf_timeline_destroy(struct dmabuf_timeline *tl)
{
	if (!tl)
		return;
	if (!dmb_obj_live(tl, DMB_OBJ_TIMELINE)) {
		dmb_err(NULL, "dmabuf_timeline_destroy: %p is not a live timeline",
			(void *)tl);
		return;
	}
	dmb_obj_del(tl);
	pthread_mutex_lock(&tl->lock);
	tl->destroyed = true;
	pthread_mutex_unlock(&tl->lock);
	timeline_signal(tl, -ENOENT);
	timeline_put(tl);
}

DMABUF_EXPORT int dmabuf_timeline_create_fence(struct dmabuf_timeline *tl,
					       uint32_t value,
					       struct dmabuf_fence **out)
{
	struct dmb_tl_point *pt, *pos;
	struct dmabuf_fence *f;
	bool reached;
	int ret;

	if (!out || !dmb_obj_live(tl, DMB_OBJ_TIMELINE))
		return -EINVAL;
	/* Only SW_SYNC_GET_DEADLINE reads a point's deadline: it pulls the
	 * ones other processes sent, so no thread watches its sync files. */
	ret = dmb_fence_create(&timeline_fence_ops, sizeof(*pt), NULL, tl->context,
			       value, DMB_FENCE_PULL_DEADLINE, &f);
	if (ret)
		return ret;
	pt = to_point(f);
	atomic_fetch_add(&tl->refcount, 1);
	pt->tl = tl;
	pthread_mutex_lock(&tl->lock);
	reached = tl_reached(tl->value, value) || tl->destroyed;
	if (!reached) {
		/* Keep the list sorted so inc() stops at the first miss. */
		TAILQ_FOREACH_REVERSE(pos, &tl->pending, dmb_tl_pending, link)
			if (tl_reached(value, pos->base.seqno))
				break;
		if (pos)
			TAILQ_INSERT_AFTER(&tl->pending, pos, pt, link);
		else
			TAILQ_INSERT_HEAD(&tl->pending, pt, link);
		pt->linked = true;
		/* A pending point lives until it signals, as the kernel's
		 * sync_file keeps it: its sync file must not see it die. */
		atomic_fetch_add(&f->refcount, 1);
	}
	pthread_mutex_unlock(&tl->lock);
	if (reached)
		dmb_fence_signal_ts(f, tl->destroyed ? -ENOENT : 0, dmb_now_ns());
	*out = f;
	return 0;
}

DMABUF_EXPORT int dmabuf_timeline_inc(struct dmabuf_timeline *tl, uint32_t inc)
{
	if (!dmb_obj_live(tl, DMB_OBJ_TIMELINE))
		return -EINVAL;
	pthread_mutex_lock(&tl->lock);
	tl->value += inc;
	pthread_mutex_unlock(&tl->lock);
	timeline_signal(tl, 0);
	return 0;
}

DMABUF_EXPORT uint32_t dmabuf_timeline_value(struct dmabuf_timeline *tl)
{
	uint32_t v;

	if (!dmb_obj_live(tl, DMB_OBJ_TIMELINE))
		return 0;
	pthread_mutex_lock(&tl->lock);
	v = tl->value;
	pthread_mutex_unlock(&tl->lock);
	return v;
}

DMABUF_EXPORT int dmabuf_timeline_point_get_deadline(struct dmabuf_fence *f,
						     int64_t *deadline_ns)
{
	struct dmb_tl_point *pt;
	int ret = -ENOENT;

	if (!deadline_ns || !dmabuf_fence_get(f))
		return -EINVAL;
	if (f->ops != &timeline_fence_ops) {
		dmabuf_fence_put(f);
		return -EINVAL;
	}
	pt = to_point(f);
	dmb_sync_file_pull_deadlines(f);
	pthread_mutex_lock(&pt->tl->lock);
	if (pt->has_deadline) {
		*deadline_ns = pt->deadline;
		ret = 0;
	}
	pthread_mutex_unlock(&pt->tl->lock);
	dmabuf_fence_put(f);
	return ret;
}
