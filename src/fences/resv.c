/* SPDX-License-Identifier: MIT */
/*
 * dma_resv: the fences of one buffer, each with a usage. A query at a usage
 * sees that usage and every stronger one (KERNEL < WRITE < READ < BOOKKEEP).
 * A recursive mutex stands in for the ww_mutex; waits never hold it.
 *
 * Readers do not take it (the kernel reads under RCU): writers, under the
 * resv lock, build a new slot array and publish it under list_lock, a leaf
 * mutex held only to copy a slot or swap the array, and bump seq. Readers
 * take a reference under list_lock; an unlocked cursor that sees seq move
 * restarts from the first slot. So the resv lock may be taken after any
 * other lock of the library (helpers that take resv under a context lock)
 * without a reader ever waiting on it.
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
	pthread_mutex_t lock;		/* writers (the ww_mutex) */
	pthread_mutex_t list_lock;	/* leaf: entries, count, seq, kernel_seq */
	struct dmb_resv_entry *entries;
	unsigned int count;
	uint64_t seq;			/* bumped at each publish */
	/* Who holds the lock through dmabuf_resv_lock() and how deep: calls
	 * that the kernel makes with the resv held (move_notify, pin) check
	 * it, and drop it whole while they wait for a context lock. owner is
	 * written by the holder and read by anyone; depth only by the holder. */
	_Atomic(pthread_t) owner;
	unsigned int depth;
	_Atomic uint32_t *kernel_seq;	/* dmb_resv_set_kernel_seq(), list_lock */
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
	pthread_mutex_init(&r->list_lock, NULL);
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
	pthread_mutex_destroy(&r->list_lock);
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

void dmb_resv_set_kernel_seq(struct dmabuf_resv *r, _Atomic uint32_t *seq)
{
	pthread_mutex_lock(&r->list_lock);
	r->kernel_seq = seq;
	pthread_mutex_unlock(&r->list_lock);
}

DMABUF_EXPORT int dmabuf_resv_add_fence(struct dmabuf_resv *r,
					struct dmabuf_fence *fence,
					enum dmabuf_resv_usage usage)
{
	struct dmb_resv_entry *old, *nw;
	struct dmabuf_fence **dropped;
	unsigned int i, j, ndropped = 0, count;
	bool placed = false;

	if (!r || !usage_valid(usage) || !dmabuf_fence_get(fence))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	/* Only writers change the slots, and they hold r->lock: read them
	 * without list_lock. */
	old = r->entries;
	count = r->count;
	nw = malloc((count + 1) * sizeof(*nw));
	dropped = malloc((count + 1) * sizeof(*dropped));
	if (!nw || !dropped) {
		pthread_mutex_unlock(&r->lock);
		free(nw);
		free(dropped);
		dmabuf_fence_put(fence);
		return -ENOMEM;
	}
	/* As dma_resv_add_fence(): the new fence takes the slot of a fence of
	 * its context it supersedes (same or weaker usage, not later), or of
	 * a signalled one. Unlike the kernel, every other signalled fence is
	 * dropped too, so the list does not grow with dead fences. */
	for (i = 0, j = 0; i < count; i++) {
		struct dmb_resv_entry *e = &old[i];
		/* dma_fence_is_later_or_same(): 32-bit seqnos wrap. */
		bool supersede = e->fence->context == fence->context &&
				 e->usage >= usage &&
				 (e->fence == fence || dmb_fence_is_later(fence, e->fence));

		if (supersede || dmb_fence_test_signaled(e->fence)) {
			dropped[ndropped++] = e->fence;
			if (!placed) {
				nw[j].fence = fence;
				nw[j].usage = usage;
				j++;
				placed = true;
			}
			continue;
		}
		nw[j++] = *e;
	}
	if (!placed) {
		nw[j].fence = fence;
		nw[j].usage = usage;
		j++;
	}
	pthread_mutex_lock(&r->list_lock);
	r->entries = nw;
	r->count = j;
	r->seq++;
	/* Under list_lock, which dmb_resv_set_kernel_seq() takes: the page
	 * behind the pointer is not unmapped while it is used. */
	if (usage == DMABUF_RESV_USAGE_KERNEL && r->kernel_seq)
		atomic_fetch_add(r->kernel_seq, 2u);
	pthread_mutex_unlock(&r->list_lock);
	/* Readers took their references under list_lock: these puts, after
	 * the swap, cannot free a fence a reader is about to get. */
	for (i = 0; i < ndropped; i++)
		dmabuf_fence_put(dropped[i]);
	pthread_mutex_unlock(&r->lock);
	free(dropped);
	free(old);
	return 0;
}

/* A counted copy of the slots at usage or stronger, taken under list_lock
 * only (the resv lock is never needed to read). */
static int snapshot(struct dmabuf_resv *r, enum dmabuf_resv_usage usage,
		    struct dmb_resv_entry **out, unsigned int *count)
{
	struct dmb_resv_entry *snap = NULL;
	unsigned int n = 0;

	pthread_mutex_lock(&r->list_lock);
	if (r->count) {
		snap = malloc(r->count * sizeof(*snap));
		if (!snap) {
			pthread_mutex_unlock(&r->list_lock);
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
	pthread_mutex_unlock(&r->list_lock);
	if (!n) {
		free(snap);
		snap = NULL;
	}
	*out = snap;
	*count = n;
	return 0;
}

DMABUF_EXPORT int dmabuf_resv_get_fences(struct dmabuf_resv *r,
					 enum dmabuf_resv_usage usage,
					 struct dmabuf_fence ***fences,
					 unsigned int *count)
{
	struct dmb_resv_entry *snap;
	struct dmabuf_fence **arr = NULL;
	unsigned int n;
	int ret;

	if (!r || !usage_valid(usage) || !fences || !count)
		return -EINVAL;
	ret = snapshot(r, usage, &snap, &n);
	if (ret)
		return ret;
	if (n) {
		arr = malloc(n * sizeof(*arr));
		if (!arr) {
			for (unsigned int i = 0; i < n; i++)
				dmabuf_fence_put(snap[i].fence);
			free(snap);
			return -ENOMEM;
		}
		for (unsigned int i = 0; i < n; i++)
			arr[i] = snap[i].fence;
	}
	free(snap);
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
	struct dmabuf_resv_iter it = { .struct_size = sizeof(it) };
	int ret;

	/* As the kernel: the unlocked cursor skips signalled fences, so any
	 * fence it yields is pending. */
	ret = dmabuf_resv_iter_begin(&it, r, usage);
	if (ret)
		return ret;
	ret = dmabuf_resv_iter_first_unlocked(&it) ? 0 : 1;
	dmabuf_resv_iter_end(&it);
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
	struct dmb_resv_entry *snap;
	unsigned int n, i;
	int ret;

	if (!r || !usage_valid(usage) || !fn)
		return -EINVAL;
	ret = snapshot(r, usage, &snap, &n);
	if (ret)
		return ret;
	for (i = 0; i < n && !ret; i++)
		ret = fn(data, snap[i].fence, snap[i].usage);
	for (unsigned int k = 0; k < n; k++)
		dmabuf_fence_put(snap[k].fence);
	free(snap);
	return ret ? ret : (int)i;
}

/* Unlocked cursor (dma_resv_iter_*_unlocked). */

DMABUF_EXPORT int dmabuf_resv_iter_begin(struct dmabuf_resv_iter *it,
					 struct dmabuf_resv *r,
					 enum dmabuf_resv_usage usage)
{
	if (!it || !r || !usage_valid(usage))
		return -EINVAL;
	if (it->struct_size && it->struct_size < sizeof(*it))
		return -EINVAL;
	it->resv = r;
	it->usage = usage;
	it->fence = NULL;
	it->fence_usage = DMABUF_RESV_USAGE_KERNEL;
	it->index = 0;
	it->seq = 0;
	it->is_restarted = false;
	return 0;
}

/* Walks from the cursor to the next pending fence at the cursor's usage;
 * restarts from the first slot whenever a writer published meanwhile. */
static struct dmabuf_fence *iter_walk(struct dmabuf_resv_iter *it, bool first)
{
	struct dmabuf_resv *r = it->resv;

	dmabuf_fence_put(it->fence);
	it->fence = NULL;
	it->is_restarted = false;
	for (;;) {
		struct dmb_resv_entry e;

		pthread_mutex_lock(&r->list_lock);
		if (first || it->seq != r->seq) {
			it->index = 0;
			it->seq = r->seq;
			it->is_restarted = true;
			first = false;
		}
		if (it->index >= r->count) {
			pthread_mutex_unlock(&r->list_lock);
			return NULL;
		}
		e = r->entries[it->index++];
		dmabuf_fence_get(e.fence);
		pthread_mutex_unlock(&r->list_lock);
		/* Outside list_lock: the test may signal and run callbacks. */
		if (e.usage <= it->usage && !dmabuf_fence_is_signaled(e.fence)) {
			it->fence = e.fence;
			it->fence_usage = e.usage;
			return e.fence;
		}
		dmabuf_fence_put(e.fence);
	}
}

DMABUF_EXPORT struct dmabuf_fence *
dmabuf_resv_iter_first_unlocked(struct dmabuf_resv_iter *it)
{
	if (!it || !it->resv)
		return NULL;
	return iter_walk(it, true);
}

DMABUF_EXPORT struct dmabuf_fence *
dmabuf_resv_iter_next_unlocked(struct dmabuf_resv_iter *it)
{
	if (!it || !it->resv)
		return NULL;
	return iter_walk(it, false);
}

DMABUF_EXPORT bool dmabuf_resv_iter_is_restarted(const struct dmabuf_resv_iter *it)
{
	return it && it->is_restarted;
}

DMABUF_EXPORT enum dmabuf_resv_usage
dmabuf_resv_iter_get_usage(const struct dmabuf_resv_iter *it)
{
	return it ? it->fence_usage : DMABUF_RESV_USAGE_KERNEL;
}

DMABUF_EXPORT void dmabuf_resv_iter_end(struct dmabuf_resv_iter *it)
{
	if (!it)
		return;
	dmabuf_fence_put(it->fence);
	it->fence = NULL;
	it->resv = NULL;
}
