/* SPDX-License-Identifier: MIT */
/*
 * dma_fence: a one-shot completion with a context/seqno identity, an error,
 * callbacks and waiters. One mutex per fence; callbacks run under it in the
 * signalling thread (as the kernel runs them under fence->lock), so a
 * remove_callback() that returns false guarantees the callback is done.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "fence_private.h"

int64_t dmb_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- contexts ------------------------------------------------------------ */

static pthread_mutex_t context_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t context_next;
static unsigned int context_gen; /* dmb_fork_gen() + 1 of context_next */

static void context_fork_prepare(void)
{
	pthread_mutex_lock(&context_lock);
}

static void context_fork_parent(void)
{
	pthread_mutex_unlock(&context_lock);
}

static void context_fork_child(void)
{
	pthread_mutex_init(&context_lock, NULL);
}

__attribute__((constructor)) static void context_fork_init(void)
{
	dmb_fork_hook_add(9, context_fork_prepare, context_fork_parent, context_fork_child);
}

DMABUF_EXPORT uint64_t dmabuf_fence_context_alloc(unsigned int num)
{
	uint64_t first;
	/* The fork generation changes in every child: no getpid() per call. */
	unsigned int gen = dmb_fork_gen() + 1;
	pid_t pid;

	pthread_mutex_lock(&context_lock);
	/* A random base per process (re-drawn after fork) keeps contexts of
	 * different processes apart when their fences meet in one sync file. */
	if (context_gen != gen) {
		pid = getpid();
		uint64_t base = 0;

		if (getrandom(&base, sizeof(base), GRND_NONBLOCK) != sizeof(base))
			base = (uint64_t)dmb_now_ns() * 0x9e3779b97f4a7c15ull ^ (uint64_t)pid;
		/* Bit 62 set: never 0 (the stub's), room to count up. */
		context_next = (base & ((1ull << 62) - 1)) | (1ull << 62);
		context_gen = gen;
	}
	first = context_next;
	context_next += num ? num : 1;
	pthread_mutex_unlock(&context_lock);
	return first;
}

/* ---- life cycle ---------------------------------------------------------- */

static const char *stub_name(struct dmabuf_fence *f)
{
	return "stub";
}

static const struct dmabuf_fence_ops stub_ops = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = stub_name,
	.get_timeline_name = stub_name,
};

bool dmb_fence_live(struct dmabuf_fence *f)
{
	return dmb_obj_live(f, DMB_OBJ_FENCE);
}

int dmb_fence_create(const struct dmabuf_fence_ops *ops, size_t size,
		     void *priv, uint64_t context, uint64_t seqno,
		     unsigned int flags, struct dmabuf_fence **out)
{
	struct dmabuf_fence *f;
	pthread_condattr_t attr;
	int ret;

	f = calloc(1, size < sizeof(*f) ? sizeof(*f) : size);
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cond, &attr);
	pthread_condattr_destroy(&attr);
	atomic_init(&f->refcount, 1);
	atomic_init(&f->signaled, false);
	atomic_init(&f->signaling_enabled, false);
	f->flags = flags;
	f->ops = ops;
	f->priv = priv;
	f->context = context;
	f->seqno = seqno;
	f->cb_head.next = f->cb_head.prev = &f->cb_head;
	ret = dmb_obj_add(f, DMB_OBJ_FENCE);
	if (ret) {
		pthread_cond_destroy(&f->cond);
		pthread_mutex_destroy(&f->lock);
		free(f);
		return ret;
	}
	*out = f;
	return 0;
}

DMABUF_EXPORT int dmabuf_fence_new(const struct dmabuf_fence_ops *ops, void *priv,
				   uint64_t context, uint64_t seqno,
				   struct dmabuf_fence **out)
{
	if (!ops || !out || !ops->get_driver_name || !ops->get_timeline_name)
		return -EINVAL;
	return dmb_fence_create(ops, sizeof(struct dmabuf_fence), priv, context,
				seqno, 0, out);
}

DMABUF_EXPORT int dmabuf_fence_get_stub(struct dmabuf_fence **out)
{
	struct dmabuf_fence *f;
	int ret;

	if (!out)
		return -EINVAL;
	ret = dmb_fence_create(&stub_ops, sizeof(*f), NULL, 0, 0, 0, &f);
	if (ret)
		return ret;
	dmb_fence_signal_ts(f, 0, dmb_now_ns());
	*out = f;
	return 0;
}

DMABUF_EXPORT struct dmabuf_fence *dmabuf_fence_get(struct dmabuf_fence *f)
{
	if (!dmb_fence_live(f))
		return NULL;
	atomic_fetch_add_explicit(&f->refcount, 1, memory_order_relaxed);
	return f;
}

bool dmb_fence_tryget(struct dmabuf_fence *f)
{
	unsigned int old = atomic_load(&f->refcount);

	do {
		if (!old)
			return false;
	} while (!atomic_compare_exchange_weak(&f->refcount, &old, old + 1));
	return true;
}

static void fence_free(struct dmabuf_fence *f)
{
	struct dmb_fence_attachment *a, *next;

	/* Unregister first: from here on the pointer is reported as dead. */
	dmb_obj_del(f);
	for (a = f->attachments; a; a = next) {
		next = a->next;
		a->ops->detach(f, a);
	}
	f->attachments = NULL;
	if (f->cb_head.next != &f->cb_head)
		dmb_warn(NULL, "fence %llu:%llu freed with callbacks pending",
			 (unsigned long long)f->context,
			 (unsigned long long)f->seqno);
	if (f->ops->release)
		f->ops->release(f);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* Drops a reference the caller knows it holds (no liveness lookup). */
static void fence_unref(struct dmabuf_fence *f)
{
	if (atomic_fetch_sub_explicit(&f->refcount, 1, memory_order_acq_rel) == 1)
		fence_free(f);
}

DMABUF_EXPORT void dmabuf_fence_put(struct dmabuf_fence *f)
{
	if (!f)
		return;
	if (!dmb_fence_live(f)) {
		dmb_err(NULL, "dmabuf_fence_put: %p is not a live fence", (void *)f);
		return;
	}
	fence_unref(f);
}

void dmb_fence_attach_locked(struct dmabuf_fence *f, struct dmb_fence_attachment *a)
{
	a->next = f->attachments;
	f->attachments = a;
}

struct dmb_fence_attachment *dmb_fence_find_attachment_locked(
	struct dmabuf_fence *f, const struct dmb_fence_attachment_ops *ops)
{
	for (struct dmb_fence_attachment *a = f->attachments; a; a = a->next)
		if (a->ops == ops)
			return a;
	return NULL;
}

DMABUF_EXPORT void *dmabuf_fence_get_priv(struct dmabuf_fence *f)
{
	return dmb_fence_live(f) ? f->priv : NULL;
}

DMABUF_EXPORT uint64_t dmabuf_fence_get_context(struct dmabuf_fence *f)
{
	return dmb_fence_live(f) ? f->context : 0;
}

DMABUF_EXPORT uint64_t dmabuf_fence_get_seqno(struct dmabuf_fence *f)
{
	return dmb_fence_live(f) ? f->seqno : 0;
}

DMABUF_EXPORT const char *dmabuf_fence_driver_name(struct dmabuf_fence *f)
{
	if (!dmb_fence_live(f))
		return "";
	return f->ops->get_driver_name(f);
}

DMABUF_EXPORT const char *dmabuf_fence_timeline_name(struct dmabuf_fence *f)
{
	if (!dmb_fence_live(f))
		return "";
	return f->ops->get_timeline_name(f);
}

bool dmb_fence_is_later(struct dmabuf_fence *a, struct dmabuf_fence *b)
{
	if (dmb_fence_has_op(a, use_64bit_seqno))
		return a->seqno > b->seqno;
	return (int32_t)((uint32_t)a->seqno - (uint32_t)b->seqno) > 0;
}

/* ---- signalling ---------------------------------------------------------- */

static _Thread_local unsigned int in_callback;

bool dmb_fence_in_callback(void)
{
	return in_callback > 0;
}

/* Set once, by sync_file_watcher.c's constructor. */
static void (*after_signal)(void);

void dmb_fence_set_after_signal(void (*fn)(void))
{
	after_signal = fn;
}

static inline bool cb_pending(const struct dmabuf_fence_cb *cb)
{
	return cb->next && cb->next != cb;
}

static inline void cb_unlink(struct dmabuf_fence_cb *cb)
{
	cb->prev->next = cb->next;
	cb->next->prev = cb->prev;
	cb->next = cb->prev = cb;
}

int dmb_fence_signal_locked(struct dmabuf_fence *f, int error, int64_t ts)
{
	if (atomic_load_explicit(&f->signaled, memory_order_relaxed))
		return -EINVAL;
	if (error && !f->error)
		f->error = error;
	f->timestamp = ts;
	atomic_store_explicit(&f->signaled, true, memory_order_release);
	/* Unlink each callback before it runs: it may free its storage. */
	in_callback++;
	while (f->cb_head.next != &f->cb_head) {
		struct dmabuf_fence_cb *cb = f->cb_head.next;

		cb_unlink(cb);
		cb->func(f, cb);
	}
	in_callback--;
	pthread_cond_broadcast(&f->cond);
	return 0;
}

int dmb_fence_signal_ts(struct dmabuf_fence *f, int error, int64_t ts)
{
	int ret;

	pthread_mutex_lock(&f->lock);
	ret = dmb_fence_signal_locked(f, error, ts);
	pthread_mutex_unlock(&f->lock);
	/* Work the callbacks could not do under a fence lock, now that none
	 * is held (outside any callback). */
	if (!in_callback && after_signal)
		after_signal();
	return ret;
}

DMABUF_EXPORT int dmabuf_fence_signal(struct dmabuf_fence *f)
{
	int ret;

	if (!dmabuf_fence_get(f))
		return -EINVAL;
	/* A fence that only its ops signal (an imported sync file). */
	ret = f->flags & DMB_FENCE_FOREIGN ? -EINVAL
					   : dmb_fence_signal_ts(f, 0, dmb_now_ns());
	/* Our own reference: the lookup of dmabuf_fence_get() covered it. */
	fence_unref(f);
	return ret;
}

DMABUF_EXPORT int dmabuf_fence_set_deadline(struct dmabuf_fence *f,
					    int64_t deadline_ns)
{
	if (!dmabuf_fence_get(f))
		return -EINVAL;
	/* dma_fence_set_deadline(): a hint, so a fence without the op (or
	 * already signalled) has nothing to do. */
	if (dmb_fence_has_op(f, set_deadline) && !dmabuf_fence_is_signaled(f))
		f->ops->set_deadline(f, deadline_ns);
	dmabuf_fence_put(f);
	return 0;
}

DMABUF_EXPORT int dmabuf_fence_set_error(struct dmabuf_fence *f, int error)
{
	int ret = 0;

	if (!dmb_fence_live(f) || error >= 0 || error < -4095 ||
	    (f->flags & DMB_FENCE_FOREIGN))
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	if (atomic_load_explicit(&f->signaled, memory_order_relaxed))
		ret = -EBUSY;
	else
		f->error = error;
	pthread_mutex_unlock(&f->lock);
	return ret;
}

bool dmb_fence_test_signaled(struct dmabuf_fence *f)
{
	if (atomic_load_explicit(&f->signaled, memory_order_acquire))
		return true;
	/* As dma_fence_is_signaled(): the ops may know better; the caller's
	 * reference keeps f alive through the signal. */
	if (dmb_fence_has_op(f, signaled) && f->ops->signaled(f)) {
		dmb_fence_signal_ts(f, 0, dmb_now_ns());
		return true;
	}
	return false;
}

void dmb_fence_enable_signaling(struct dmabuf_fence *f)
{
	if (atomic_exchange(&f->signaling_enabled, true))
		return;
	if (atomic_load_explicit(&f->signaled, memory_order_acquire) ||
	    !dmb_fence_has_op(f, enable_signaling))
		return;
	if (!f->ops->enable_signaling(f))
		dmb_fence_signal_ts(f, 0, dmb_now_ns());
}

DMABUF_EXPORT bool dmabuf_fence_is_signaled(struct dmabuf_fence *f)
{
	return dmb_fence_live(f) && dmb_fence_test_signaled(f);
}

DMABUF_EXPORT int dmabuf_fence_get_status(struct dmabuf_fence *f)
{
	if (!dmb_fence_live(f))
		return -EINVAL;
	if (!dmb_fence_test_signaled(f))
		return 0;
	return f->error ? f->error : 1;
}

DMABUF_EXPORT int dmabuf_fence_get_timestamp(struct dmabuf_fence *f, int64_t *ns)
{
	if (!dmb_fence_live(f) || !ns)
		return -EINVAL;
	if (!dmb_fence_test_signaled(f))
		return -EBUSY;
	*ns = f->timestamp;
	return 0;
}

DMABUF_EXPORT int dmabuf_fence_add_callback(struct dmabuf_fence *f,
					    struct dmabuf_fence_cb *cb,
					    dmabuf_fence_func_t func)
{
	if (!cb)
		return -EINVAL;
	cb->next = cb->prev = cb;
	if (!func || !dmb_fence_live(f))
		return -EINVAL;
	if (dmb_fence_test_signaled(f))
		return -ENOENT;
	pthread_mutex_lock(&f->lock);
	if (atomic_load_explicit(&f->signaled, memory_order_relaxed)) {
		pthread_mutex_unlock(&f->lock);
		return -ENOENT;
	}
	cb->func = func;
	cb->prev = f->cb_head.prev;
	cb->next = &f->cb_head;
	f->cb_head.prev->next = cb;
	f->cb_head.prev = cb;
	pthread_mutex_unlock(&f->lock);
	/* After queueing, as the kernel: if enabling finds the fence done and
	 * signals it, this callback runs now and the caller sees 0. */
	dmb_fence_enable_signaling(f);
	return 0;
}

DMABUF_EXPORT bool dmabuf_fence_remove_callback(struct dmabuf_fence *f,
						struct dmabuf_fence_cb *cb)
{
	bool removed = false;

	if (!cb || !dmb_fence_live(f))
		return false;
	pthread_mutex_lock(&f->lock);
	if (cb_pending(cb)) {
		cb_unlink(cb);
		removed = true;
	}
	pthread_mutex_unlock(&f->lock);
	return removed;
}

static void deadline(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static int default_wait(struct dmabuf_fence *f, int timeout_ms)
{
	struct timespec ts;
	int ret;

	dmb_fence_enable_signaling(f);
	if (timeout_ms > 0)
		deadline(&ts, timeout_ms);
	pthread_mutex_lock(&f->lock);
	while (!atomic_load_explicit(&f->signaled, memory_order_relaxed)) {
		if (timeout_ms < 0)
			pthread_cond_wait(&f->cond, &f->lock);
		else if (pthread_cond_timedwait(&f->cond, &f->lock, &ts))
			break;
	}
	ret = atomic_load_explicit(&f->signaled, memory_order_relaxed);
	pthread_mutex_unlock(&f->lock);
	return ret;
}

DMABUF_EXPORT int dmabuf_fence_wait(struct dmabuf_fence *f, int timeout_ms)
{
	int ret;

	if (!dmabuf_fence_get(f))
		return -EINVAL;
	if (dmb_fence_test_signaled(f))
		ret = 1;
	else if (timeout_ms == 0)
		ret = 0;
	else if (dmb_fence_has_op(f, wait))
		ret = f->ops->wait(f, timeout_ms < 0 ? -1 : timeout_ms);
	else
		ret = default_wait(f, timeout_ms);
	dmabuf_fence_put(f);
	return ret;
}
