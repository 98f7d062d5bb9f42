/* SPDX-License-Identifier: MIT */
/*
 * The event loop of a context: its lock, its epoll set of sources (fds with
 * callbacks that the layers above add), dispatch, the optional service
 * thread, and the list of the process's contexts, so a thread that waits for
 * a reply can serve the others.
 */
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base.h"

#define DISPATCH_BATCH 16

static LIST_HEAD(, dmb_ctx_base) contexts = LIST_HEAD_INITIALIZER(contexts);
/* Recursive: serving another context may wait for a reply, which serves. */
static pthread_mutex_t contexts_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

int dmb_ctx_base_init(struct dmabuf_ctx *ctx)
{
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);
	pthread_mutexattr_t attr;

	b->thread_stop_fd = -1;
	b->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (b->epoll_fd < 0)
		return -errno;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&b->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	return 0;
}

unsigned int dmb_unlock_all(struct dmabuf_ctx *ctx)
{
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);
	unsigned int depth = b->depth;

	for (unsigned int i = depth; i > 0; i--)
		dmb_unlock(ctx);
	return depth;
}

void dmb_relock(struct dmabuf_ctx *ctx, unsigned int depth)
{
	for (unsigned int i = 0; i < depth; i++)
		dmb_lock(ctx);
}

void dmb_lock_violation(struct dmabuf_ctx *ctx, const char *func)
{
	dmb_err(NULL, "lock rule broken: %s runs without the lock of context %p (held by %s)",
		func, (void *)ctx,
		atomic_load_explicit(&DMB_CTX_BASE(ctx)->owner, memory_order_relaxed)
			? "another thread" : "nobody");
	abort();
}

void dmb_contexts_fork_prepare(void)
{
	pthread_mutex_lock(&contexts_lock);
}

void dmb_contexts_fork_parent(void)
{
	pthread_mutex_unlock(&contexts_lock);
}

void dmb_contexts_fork_child(void)
{
	pthread_mutexattr_t attr;

	/* A recursive mutex knows its owner's tid, which the child's thread
	 * does not have: a new one, unlocked. */
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&contexts_lock, &attr);
	pthread_mutexattr_destroy(&attr);
}

void dmb_ctx_base_publish(struct dmabuf_ctx *ctx)
{
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);

	b->fork_gen = dmb_fork_gen();
	pthread_mutex_lock(&contexts_lock);
	LIST_INSERT_HEAD(&contexts, b, process_link);
	pthread_mutex_unlock(&contexts_lock);
}

void dmb_ctx_base_unpublish(struct dmabuf_ctx *ctx)
{
	dmabuf_ctx_stop_thread(ctx);
	pthread_mutex_lock(&contexts_lock);
	LIST_REMOVE(DMB_CTX_BASE(ctx), process_link);
	pthread_mutex_unlock(&contexts_lock);
}

void dmb_ctx_base_fini(struct dmabuf_ctx *ctx)
{
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);

	if (b->epoll_fd >= 0)
		close(b->epoll_fd);
	b->epoll_fd = -1;
	pthread_mutex_destroy(&b->lock);
}

bool dmb_ctx_usable(const struct dmabuf_ctx *ctx)
{
	if (!dmb_obj_live(ctx, DMB_OBJ_CTX))
		return false;
	if (((const struct dmb_ctx_base *)ctx)->fork_gen != dmb_fork_gen()) {
		dmb_err(NULL, "a context inherited over fork() was used in the child: create a new one there");
		return false;
	}
	return true;
}

struct dmabuf_ctx *dmb_ctx_lock_usable(struct dmabuf_ctx *ctx)
{
	if (!dmb_ctx_usable(ctx))
		return NULL;
	dmb_lock(ctx);
	return ctx;
}

DMABUF_EXPORT int dmabuf_ctx_get_fd(struct dmabuf_ctx *ctx)
{
	if (!dmb_ctx_usable(ctx))
		return -EINVAL;
	return dmb_ctx_epoll_fd(ctx);
}

int dmb_source_add(struct dmabuf_ctx *ctx, struct dmb_source *src, int fd,
		   uint32_t events, dmb_source_fn fn, void *data)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	src->fd = fd;
	src->fn = fn;
	src->data = data;
	if (epoll_ctl(dmb_ctx_epoll_fd(ctx), EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int dmb_source_mod(struct dmabuf_ctx *ctx, struct dmb_source *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	if (epoll_ctl(dmb_ctx_epoll_fd(ctx), EPOLL_CTL_MOD, src->fd, &ev) < 0)
		return -errno;
	return 0;
}

void dmb_source_del(struct dmabuf_ctx *ctx, struct dmb_source *src)
{
	if (src->fd >= 0)
		epoll_ctl(dmb_ctx_epoll_fd(ctx), EPOLL_CTL_DEL, src->fd, NULL);
	DMB_CTX_BASE(ctx)->sources_gen++;
}

/* Runs the callbacks of @n ready sources, under the lock. A callback may
 * remove and free sources, its own or others' (a peer closing an idle
 * handshake, or a call nested in an exporter op that serves this context
 * again), whose events may still be in this batch: the batch stops at the
 * first removal. Every source is level-triggered, so what was left is
 * reported again. A callback may also find its fd already read (by a
 * nested call earlier in the batch): every source's fd is non-blocking. */
static int run_events(struct dmabuf_ctx *ctx, const struct epoll_event *evs, int n)
{
	int handled = 0;

	for (int i = 0; i < n; i++) {
		struct dmb_source *src = evs[i].data.ptr;
		unsigned int gen = DMB_CTX_BASE(ctx)->sources_gen;

		src->fn(src, evs[i].events);
		handled++;
		if (DMB_CTX_BASE(ctx)->sources_gen != gen)
			break;
	}
	return handled;
}

/* Runs ready sources. Called with the lock held. */
int dmb_ctx_dispatch_locked(struct dmabuf_ctx *ctx, int timeout_ms)
{
	struct epoll_event evs[DISPATCH_BATCH];
	int n;

	dmb_assert_locked(ctx);
	DMB_CTX_BASE(ctx)->dispatch_gen++;
	n = epoll_wait(dmb_ctx_epoll_fd(ctx), evs, DMB_ARRAY_SIZE(evs), timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	return run_events(ctx, evs, n);
}

DMABUF_EXPORT int dmabuf_ctx_dispatch(struct dmabuf_ctx *ctx)
{
	return dmabuf_ctx_dispatch_timeout(ctx, 0);
}

DMABUF_EXPORT int dmabuf_ctx_dispatch_timeout(struct dmabuf_ctx *ctx, int timeout_ms)
{
	int ret, total = 0;

	if (!dmb_ctx_lock_usable(ctx))
		return -EINVAL;
	/* Wait (without the lock) only for the first batch. The events the
	 * wait returns are run as they are, as the service thread runs its
	 * own, when nobody dispatched and no source went meanwhile (a freed
	 * source's event must not be run); else the set is read again under
	 * the lock. So a wake-up costs one epoll_wait(), not two (issue 11). */
	if (timeout_ms != 0) {
		struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);
		struct epoll_event evs[DISPATCH_BATCH];
		unsigned int sgen = b->sources_gen, dgen = b->dispatch_gen;
		int n;

		dmb_unlock(ctx);
		n = epoll_wait(dmb_ctx_epoll_fd(ctx), evs, DMB_ARRAY_SIZE(evs), timeout_ms);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			return 0;
		if (!dmb_ctx_lock_usable(ctx))
			return -EINVAL;
		if (b->sources_gen == sgen && b->dispatch_gen == dgen) {
			b->dispatch_gen++;
			ret = run_events(ctx, evs, n);
			total = ret;
			if (ret != DISPATCH_BATCH)
				goto out;
		}
	}
	do {
		ret = dmb_ctx_dispatch_locked(ctx, 0);
		if (ret > 0)
			total += ret;
	} while (ret == DISPATCH_BATCH);
out:
	dmb_unlock(ctx);
	return ret < 0 ? ret : total;
}

void dmb_ctx_serve_others(struct dmabuf_ctx *self)
{
	struct dmb_ctx_base *b;

	pthread_mutex_lock(&contexts_lock);
	LIST_FOREACH(b, &contexts, process_link) {
		/* A context whose lock is taken is being served by its owner;
		 * one inherited over fork() belongs to the parent. */
		if (b == DMB_CTX_BASE(self) || b->fork_gen != dmb_fork_gen() ||
		    !dmb_trylock((struct dmabuf_ctx *)b))
			continue;
		dmb_ctx_dispatch_locked((struct dmabuf_ctx *)b, 0);
		dmb_unlock((struct dmabuf_ctx *)b);
	}
	pthread_mutex_unlock(&contexts_lock);
}

int dmb_ctx_other_fds(struct dmabuf_ctx *self, int *fds, int max)
{
	struct dmb_ctx_base *b;
	int n = 0;

	pthread_mutex_lock(&contexts_lock);
	LIST_FOREACH(b, &contexts, process_link)
		if (b != DMB_CTX_BASE(self) && b->fork_gen == dmb_fork_gen() && n < max)
			fds[n++] = b->epoll_fd;
	pthread_mutex_unlock(&contexts_lock);
	return n;
}

/*
 * The stop eventfd's source. It stays readable once written, so every
 * waiter on the epoll set sees it until it is turned off. The service
 * thread reads thread_stop under the lock before each wait, so whoever
 * runs this (under the lock) turns it off unless that thread is in its
 * wait, which it would then never leave; from there the wait returns at
 * once, so other waiters see the source only that long.
 */
static void stop_ready(struct dmb_source *src, uint32_t events)
{
	struct dmabuf_ctx *ctx = src->data;
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);

	(void)events;
	if (b->thread_stop && (!b->thread_waiting || pthread_equal(b->thread, pthread_self())))
		dmb_source_mod(ctx, src, 0);
}

/*
 * One wake-up is one epoll_wait() on the context's set, without the lock
 * (the stop eventfd is in the set); the events it returns are run under
 * the lock as they are when nobody else dispatched and no source went
 * meanwhile, else the set is read again under the lock. So a request costs
 * the service thread no poll() besides the wait (issue 11).
 */
static void *service_thread(void *arg)
{
	struct dmabuf_ctx *ctx = arg;
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);
	struct epoll_event evs[DISPATCH_BATCH];
	unsigned int sgen = 0, dgen = 0;
	bool seen = false;	/* sgen, dgen read before this wait */

	/* The first wait comes before the first lock (thread_waiting was set
	 * by dmabuf_ctx_start_thread(), which holds the lock meanwhile). */
	for (;;) {
		int n = epoll_wait(b->epoll_fd, evs, DMB_ARRAY_SIZE(evs), -1), ret;

		b->thread_waiting = false;
		dmb_lock(ctx);
		if ((n < 0 && errno != EINTR) || b->thread_stop)
			break;
		if (n > 0) {
			if (seen && b->sources_gen == sgen && b->dispatch_gen == dgen)
				ret = run_events(ctx, evs, n);
			else
				ret = dmb_ctx_dispatch_locked(ctx, 0);
			while (ret == DISPATCH_BATCH)
				ret = dmb_ctx_dispatch_locked(ctx, 0);
		}
		/* an op may have dropped the lock (a fence wait) meanwhile */
		if (b->thread_stop)
			break;
		sgen = b->sources_gen;
		dgen = b->dispatch_gen;
		seen = true;
		b->thread_waiting = true;
		dmb_unlock(ctx);
	}
	dmb_unlock(ctx);
	return NULL;
}

DMABUF_EXPORT int dmabuf_ctx_start_thread(struct dmabuf_ctx *ctx)
{
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);
	int ret;

	if (!dmb_ctx_lock_usable(ctx))
		return -EINVAL;
	if (b->thread_running) {
		dmb_unlock(ctx);
		return -EBUSY;
	}
	b->thread_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->thread_stop_fd < 0) {
		ret = -errno;
		dmb_unlock(ctx);
		return ret;
	}
	b->thread_stop = false;
	b->thread_waiting = true;
	ret = dmb_source_add(ctx, &b->thread_stop_src, b->thread_stop_fd, EPOLLIN, stop_ready, ctx);
	if (ret == 0) {
		ret = -pthread_create(&b->thread, NULL, service_thread, ctx);
		if (ret < 0)
			dmb_source_del(ctx, &b->thread_stop_src);
	}
	if (ret < 0) {
		close(b->thread_stop_fd);
		b->thread_stop_fd = -1;
	} else {
		b->thread_running = true;
	}
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_ctx_stop_thread(struct dmabuf_ctx *ctx)
{
	uint64_t one = 1;
	pthread_t thread;

	if (!dmb_ctx_lock_usable(ctx))
		return -EINVAL;
	if (!DMB_CTX_BASE(ctx)->thread_running) {
		dmb_unlock(ctx);
		return -ESRCH;
	}
	if (pthread_equal(DMB_CTX_BASE(ctx)->thread, pthread_self())) {
		dmb_unlock(ctx);
		return -EDEADLK;
	}
	thread = DMB_CTX_BASE(ctx)->thread;
	DMB_CTX_BASE(ctx)->thread_running = false;
	DMB_CTX_BASE(ctx)->thread_stop = true;
	if (write(DMB_CTX_BASE(ctx)->thread_stop_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write of 1 cannot fail short of a bug */
	}
	/* The thread takes the lock to dispatch: let it finish. */
	dmb_unlock(ctx);
	pthread_join(thread, NULL);
	dmb_lock(ctx);
	dmb_source_del(ctx, &DMB_CTX_BASE(ctx)->thread_stop_src);
	close(DMB_CTX_BASE(ctx)->thread_stop_fd);
	DMB_CTX_BASE(ctx)->thread_stop_fd = -1;
	dmb_unlock(ctx);
	return 0;
}
