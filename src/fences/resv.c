/* SPDX-License-Identifier: MIT */
/*
 * dma_resv: the fences of one buffer, each with a usage. A query at a usage
 * sees that usage and every stronger one (KERNEL < WRITE < READ < BOOKKEEP).
 * A recursive mutex stands in for the ww_mutex; waits never hold it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fence_private.h"

struct dmb_resv_entry {
	struct dmabuf_fence *fence;	/* reference */
	enum dmabuf_resv_usage usage;
};

struct dmabuf_resv {
	pthread_mutex_t lock;
	struct dmb_resv_entry *entries;
	unsigned int count, cap;
	/* Who holds the lock through dmabuf_resv_lock() and how deep: calls
	 * that the kernel makes with the resv held (move_notify, pin) check
	 * it, and drop it whole while they wait for a context lock. owner is
	 * written by the holder and read by anyone; depth only by the holder. */
	_Atomic(pthread_t) owner;
	unsigned int depth;
};

static inline bool usage_valid(enum dmabuf_resv_usage u)
{
	return (unsigned int)u <= DMABUF_RESV_USAGE_BOOKKEEP;
}

DMABUF_EXPORT int dmabuf_resv_new(struct dmabuf_resv **out)
{
	struct dmabuf_resv *r;
	pthread_mutexattr_t attr;

	if (!out)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&r->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	*out = r;
	return 0;
}

DMABUF_EXPORT void dmabuf_resv_destroy(struct dmabuf_resv *r)
{
	if (!r)
		return;
	for (unsigned int i = 0; i < r->count; i++)
		dmabuf_fence_put(r->entries[i].fence);
	free(r->entries);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

DMABUF_EXPORT void dmabuf_resv_lock(struct dmabuf_resv *r)
{
	pthread_mutex_lock(&r->lock);
	if (r->depth++ == 0)
		atomic_store_explicit(&r->owner, pthread_self(), memory_order_relaxed);
}

DMABUF_EXPORT void dmabuf_resv_unlock(struct dmabuf_resv *r)
{
	if (dmb_resv_held(r) && --r->depth == 0)
		atomic_store_explicit(&r->owner, (pthread_t)0, memory_order_relaxed);
	pthread_mutex_unlock(&r->lock);
}

bool dmb_resv_held(struct dmabuf_resv *r)
{
	return r->depth && pthread_equal(atomic_load_explicit(&r->owner, memory_order_relaxed),
					 pthread_self());
}

unsigned int dmb_resv_unlock_all(struct dmabuf_resv *r)
{
	unsigned int depth = r->depth;

	r->depth = 0;
	atomic_store_explicit(&r->owner, (pthread_t)0, memory_order_relaxed);
	for (unsigned int i = 0; i < depth; i++)
		pthread_mutex_unlock(&r->lock);
	return depth;
}

void dmb_resv_relock(struct dmabuf_resv *r, unsigned int depth)
{
	for (unsigned int i = 0; i < depth; i++)
		pthread_mutex_lock(&r->lock);
	r->depth = depth;
	if (depth)
		atomic_store_explicit(&r->owner, pthread_self(), memory_order_relaxed);
}

DMABUF_EXPORT int dmabuf_resv_add_fence(struct dmabuf_resv *r,
					struct dmabuf_fence *fence,
					enum dmabuf_resv_usage usage)
{
	unsigned int i, j;
	bool placed = false;

	if (!r || !usage_valid(usage) || !dmabuf_fence_get(fence))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	/* As dma_resv_add_fence(): the new fence takes the slot of a fence of
	 * its context it supersedes (same or weaker usage, not later), or of
	 * a signalled one. Unlike the kernel, every other signalled fence is
	 * dropped too, so the list does not grow with dead fences. */
	for (i = 0, j = 0; i < r->count; i++) {
		struct dmb_resv_entry *e = &r->entries[i];
		/* dma_fence_is_later_or_same(): 32-bit seqnos wrap. */
		bool supersede = e->fence->context == fence->context &&
				 e->usage >= usage &&
				 (e->fence == fence || dmb_fence_is_later(fence, e->fence));

		if (supersede || dmb_fence_test_signaled(e->fence)) {
			dmabuf_fence_put(e->fence);
			if (!placed) {
				r->entries[j].fence = fence;
				r->entries[j].usage = usage;
				j++;
				placed = true;
			}
			continue;
		}
		r->entries[j++] = *e;
	}
	r->count = j;
	if (!placed) {
		if (r->count == r->cap) {
			unsigned int cap = r->cap ? r->cap * 2 : 4;
			struct dmb_resv_entry *e = realloc(r->entries, cap * sizeof(*e));

			if (!e) {
				pthread_mutex_unlock(&r->lock);
				dmabuf_fence_put(fence);
				return -ENOMEM;
			}
			r->entries = e;
			r->cap = cap;
		}
		r->entries[r->count].fence = fence;
		r->entries[r->count].usage = usage;
		r->count++;
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

DMABUF_EXPORT int dmabuf_resv_get_fences(struct dmabuf_resv *r,
					 enum dmabuf_resv_usage usage,
					 struct dmabuf_fence ***fences,
					 unsigned int *count)
{
	struct dmabuf_fence **arr = NULL;
	unsigned int n = 0;

	if (!r || !usage_valid(usage) || !fences || !count)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (r->count) {
		arr = malloc(r->count * sizeof(*arr));
		if (!arr) {
			pthread_mutex_unlock(&r->lock);
			return -ENOMEM;
		}
	}
	for (unsigned int i = 0; i < r->count; i++)
		if (r->entries[i].usage <= usage)
			arr[n++] = dmabuf_fence_get(r->entries[i].fence);
	pthread_mutex_unlock(&r->lock);
	if (!n) {
		free(arr);
		arr = NULL;
	}
	*fences = arr;
	*count = n;
	return 0;
}

DMABUF_EXPORT void dmabuf_resv_put_fences(struct dmabuf_fence **fences,
					  unsigned int count)
{
	if (!fences)
		return;
	for (unsigned int i = 0; i < count; i++)
		dmabuf_fence_put(fences[i]);
	free(fences);
}

DMABUF_EXPORT int dmabuf_resv_get_singleton(struct dmabuf_resv *r,
					    enum dmabuf_resv_usage usage,
					    struct dmabuf_fence **out)
{
	struct dmabuf_fence **fences;
	unsigned int n;
	int ret;

	if (!out)
		return -EINVAL;
	ret = dmabuf_resv_get_fences(r, usage, &fences, &n);
	if (ret)
		return ret;
	if (n == 0) {
		*out = NULL;
		return 0;
	}
	if (n == 1) {
		*out = fences[0];
		free(fences);
		return 0;
	}
	ret = dmabuf_fence_merge(fences, n, out);
	dmabuf_resv_put_fences(fences, n);
	return ret;
}

DMABUF_EXPORT int dmabuf_resv_test_signaled(struct dmabuf_resv *r,
					    enum dmabuf_resv_usage usage)
{
	int ret = 1;

	if (!r || !usage_valid(usage))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	for (unsigned int i = 0; i < r->count && ret; i++)
		if (r->entries[i].usage <= usage &&
		    !dmabuf_fence_is_signaled(r->entries[i].fence))
			ret = 0;
	pthread_mutex_unlock(&r->lock);
	return ret;
}

static int64_t now_ms(void)
{
	return dmb_now_ns() / 1000000;
}

DMABUF_EXPORT int dmabuf_resv_wait(struct dmabuf_resv *r,
				   enum dmabuf_resv_usage usage, int timeout_ms)
{
	struct dmabuf_fence **fences;
	int64_t end = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	unsigned int n;
	int ret;

	ret = dmabuf_resv_get_fences(r, usage, &fences, &n);
	if (ret)
		return ret;
	ret = 1;
	for (unsigned int i = 0; i < n && ret == 1; i++) {
		int left = timeout_ms;

		if (timeout_ms > 0) {
			int64_t rem = end - now_ms();

			left = rem > 0 ? (int)rem : 0;
		}
		ret = dmabuf_fence_wait(fences[i], left);
	}
	dmabuf_resv_put_fences(fences, n);
	return ret;
}

DMABUF_EXPORT int dmabuf_resv_for_each_fence(struct dmabuf_resv *r,
					     enum dmabuf_resv_usage usage,
					     dmabuf_resv_iter_fn fn, void *data)
{
	struct dmb_resv_entry *snap = NULL;
	unsigned int n = 0;
	int ret = 0;

	if (!r || !usage_valid(usage) || !fn)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	if (r->count) {
		snap = malloc(r->count * sizeof(*snap));
		if (!snap) {
			pthread_mutex_unlock(&r->lock);
			return -ENOMEM;
		}
	}
	for (unsigned int i = 0; i < r->count; i++) {
		if (r->entries[i].usage > usage)
			continue;
		snap[n] = r->entries[i];
		dmabuf_fence_get(snap[n].fence);
		n++;
	}
	pthread_mutex_unlock(&r->lock);
	unsigned int i;

	for (i = 0; i < n && !ret; i++)
		ret = fn(data, snap[i].fence, snap[i].usage);
	for (unsigned int k = 0; k < n; k++)
		dmabuf_fence_put(snap[k].fence);
	free(snap);
	return ret ? ret : (int)i;
}
