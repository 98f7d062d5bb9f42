/* SPDX-License-Identifier: MIT */
/*
 * The context: one simulated host. Owns the buffer registry, the simulated
 * physical memory, the devices and the event loop (one epoll fd for inotify,
 * the re-probe timer and, later, sockets).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "private.h"
#include "remote.h"

#define DEFAULT_PHYS_SIZE (16ull << 30)
#define DEFAULT_CMA_SIZE (1ull << 30)
#define DISPATCH_BATCH 16

static LIST_HEAD(, dmabuf_ctx) contexts = LIST_HEAD_INITIALIZER(contexts);
/* Recursive: serving another context may wait for a reply, which serves. */
static pthread_mutex_t contexts_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

bool dmb_ctx_usable(const struct dmabuf_ctx *ctx)
{
	if (!dmb_obj_live(ctx, DMB_OBJ_CTX))
		return false;
	if (ctx->fork_gen != dmb_fork_gen()) {
		dmb_err(NULL, "a context inherited over fork() was used in the child: create a new one there");
		return false;
	}
	return true;
}

static int config_fill(struct dmabuf_ctx_config *c)
{
	if (c->flags & ~(uint32_t)(DMABUF_CTX_STRICT_CPU_ACCESS | DMABUF_CTX_ANY_UID))
		return -EINVAL;
	if (!c->phys_size)
		c->phys_size = DEFAULT_PHYS_SIZE;
	if (!c->cma_size)
		c->cma_size = DEFAULT_CMA_SIZE;
	if (!c->log_priority)
		c->log_priority = DMABUF_LOG_ERROR;
	if (!DMB_ALIGNED(c->phys_size, DMB_PAGE_SIZE) ||
	    !DMB_ALIGNED(c->phys_base, DMB_PAGE_SIZE) ||
	    !DMB_ALIGNED(c->cma_size, DMB_PAGE_SIZE) ||
	    c->cma_size >= c->phys_size ||
	    c->phys_base + c->phys_size < c->phys_base)
		return -EINVAL;
	return 0;
}

DMABUF_EXPORT int dmabuf_ctx_new(const struct dmabuf_ctx_config *config,
				 struct dmabuf_ctx **out)
{
	struct dmabuf_ctx *ctx;
	pthread_mutexattr_t attr;
	int ret;

	if (!out)
		return -EINVAL;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	if (config)
		ctx->config = *config;
	ret = config_fill(&ctx->config);
	if (ret < 0) {
		free(ctx);
		return ret;
	}
	ctx->epoll_fd = ctx->inotify_fd = ctx->reprobe_fd = -1;
	ctx->thread_stop_fd = -1;
	RB_INIT(&ctx->by_inode);
	RB_INIT(&ctx->by_wd);
	LIST_INIT(&ctx->devices);
	LIST_INIT(&ctx->conns);
	LIST_INIT(&ctx->reprobe);
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&ctx->lock, &attr);
	pthread_mutexattr_destroy(&attr);

	ret = dmb_physmem_new(ctx->config.phys_base, ctx->config.phys_size,
			      ctx->config.cma_size, ctx->config.seed, &ctx->physmem);
	if (ret < 0)
		goto fail;

	ctx->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	ctx->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	ctx->reprobe_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (ctx->epoll_fd < 0 || ctx->inotify_fd < 0 || ctx->reprobe_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = dmb_source_add(ctx, &ctx->inotify_src, ctx->inotify_fd, EPOLLIN,
			     dmb_release_inotify, ctx);
	if (ret < 0)
		goto fail;
	ret = dmb_source_add(ctx, &ctx->reprobe_src, ctx->reprobe_fd, EPOLLIN,
			     dmb_release_reprobe, ctx);
	if (ret < 0)
		goto fail;
	ret = dmb_obj_add(ctx, DMB_OBJ_CTX);
	if (ret < 0)
		goto fail;
	ctx->stats.phys_total = ctx->config.phys_size;
	ctx->fork_gen = dmb_fork_gen();
	pthread_mutex_lock(&contexts_lock);
	LIST_INSERT_HEAD(&contexts, ctx, process_link);
	pthread_mutex_unlock(&contexts_lock);
	*out = ctx;
	return 0;

fail:
	if (ctx->epoll_fd >= 0)
		close(ctx->epoll_fd);
	if (ctx->inotify_fd >= 0)
		close(ctx->inotify_fd);
	if (ctx->reprobe_fd >= 0)
		close(ctx->reprobe_fd);
	if (ctx->physmem)
		dmb_physmem_destroy(ctx->physmem);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
	return ret;
}

static void report_leaks(struct dmabuf_ctx *ctx)
{
	struct dmabuf *buf;

	RB_FOREACH(buf, dmb_buf_tree, &ctx->by_inode) {
		if (buf->state != DMB_BUF_LIVE)
			continue;
		dmb_err(ctx, "leak: buffer %s (ino %lu, %llu bytes) still has %u reference(s), %u attachment(s), %u mapping(s) at context destruction",
			buf->exp_name, (unsigned long)buf->key.ino,
			(unsigned long long)buf->size, buf->refcount,
			buf->nattachments, buf->nmappings);
	}
}

DMABUF_EXPORT void dmabuf_ctx_destroy(struct dmabuf_ctx *ctx)
{
	struct dmabuf *buf;

	if (!ctx)
		return;
	if (!dmb_ctx_usable(ctx)) {
		dmb_err(NULL, "dmabuf_ctx_destroy: %p is not a live context of this process", (void *)ctx);
		return;
	}
	dmabuf_ctx_stop_thread(ctx);
	pthread_mutex_lock(&contexts_lock);
	LIST_REMOVE(ctx, process_link);
	pthread_mutex_unlock(&contexts_lock);
	dmb_lock(ctx);
	/* Peers first: their imports hold buffer references. */
	dmb_endpoint_destroy(ctx);
	report_leaks(ctx);
	/* Whatever is left is released now: the exporter's process is going
	 * away, so its ops must get a last chance to free their state.
	 * One at a time in inode order, not with a saved next pointer: a
	 * release op may put, and so release, another buffer. */
	while ((buf = RB_MIN(dmb_buf_tree, &ctx->by_inode)))
		dmb_buf_release_now(buf);
	dmb_conns_destroy(ctx);
	dmb_devices_destroy_all(ctx);
	dmb_obj_del(ctx);
	dmb_unlock(ctx);

	close(ctx->reprobe_fd);
	close(ctx->inotify_fd);
	close(ctx->epoll_fd);
	dmb_physmem_destroy(ctx->physmem);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

static struct dmabuf_ctx *ctx_lock(struct dmabuf_ctx *ctx)
{
	if (!dmb_ctx_usable(ctx))
		return NULL;
	dmb_lock(ctx);
	return ctx;
}

DMABUF_EXPORT void dmabuf_ctx_set_log(struct dmabuf_ctx *ctx, dmabuf_log_fn fn,
				      void *data, enum dmabuf_log_priority priority)
{
	if (!ctx_lock(ctx))
		return;
	ctx->config.log_fn = fn;
	ctx->config.log_data = data;
	ctx->config.log_priority = priority;
	dmb_unlock(ctx);
}

DMABUF_EXPORT int dmabuf_ctx_get_fd(struct dmabuf_ctx *ctx)
{
	if (!dmb_ctx_usable(ctx))
		return -EINVAL;
	return ctx->epoll_fd;
}

int dmb_source_add(struct dmabuf_ctx *ctx, struct dmb_source *src, int fd,
		   uint32_t events, dmb_source_fn fn, void *data)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	src->fd = fd;
	src->fn = fn;
	src->data = data;
	if (epoll_ctl(ctx->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

int dmb_source_mod(struct dmabuf_ctx *ctx, struct dmb_source *src, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	if (epoll_ctl(ctx->epoll_fd, EPOLL_CTL_MOD, src->fd, &ev) < 0)
		return -errno;
	return 0;
}

void dmb_source_del(struct dmabuf_ctx *ctx, struct dmb_source *src)
{
	if (src->fd >= 0)
		epoll_ctl(ctx->epoll_fd, EPOLL_CTL_DEL, src->fd, NULL);
}

/* Runs ready sources. Called with the lock held; sources may be removed by
 * the callbacks of earlier ones in the same batch, so each batch is short and
 * callbacks that free sources must only do so for themselves. */
int dmb_ctx_dispatch_locked(struct dmabuf_ctx *ctx, int timeout_ms)
{
	struct epoll_event evs[DISPATCH_BATCH];
	int n, handled = 0;

	n = epoll_wait(ctx->epoll_fd, evs, DMB_ARRAY_SIZE(evs), timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		struct dmb_source *src = evs[i].data.ptr;

		src->fn(src, evs[i].events);
		handled++;
	}
	return handled;
}

DMABUF_EXPORT int dmabuf_ctx_dispatch(struct dmabuf_ctx *ctx)
{
	return dmabuf_ctx_dispatch_timeout(ctx, 0);
}

DMABUF_EXPORT int dmabuf_ctx_dispatch_timeout(struct dmabuf_ctx *ctx, int timeout_ms)
{
	int ret, total = 0;

	if (!ctx_lock(ctx))
		return -EINVAL;
	/* Wait (without the lock) only for the first batch. */
	if (timeout_ms != 0) {
		struct epoll_event ev;
		int n;

		dmb_unlock(ctx);
		/* Level-triggered: the event stays pending for the loop
		 * below, so this only waits for readiness. */
		n = epoll_wait(ctx->epoll_fd, &ev, 1, timeout_ms);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n <= 0)
			return 0;
		if (!ctx_lock(ctx))
			return -EINVAL;
	}
	do {
		ret = dmb_ctx_dispatch_locked(ctx, 0);
		if (ret > 0)
			total += ret;
	} while (ret == DISPATCH_BATCH);
	dmb_unlock(ctx);
	return ret < 0 ? ret : total;
}

DMABUF_EXPORT int dmabuf_ctx_get_stats(struct dmabuf_ctx *ctx,
				       struct dmabuf_ctx_stats *stats)
{
	struct dmb_physmem_stats pm;

	if (!stats || !ctx_lock(ctx))
		return -EINVAL;
	*stats = ctx->stats;
	dmb_physmem_get_stats(ctx->physmem, &pm);
	stats->phys_total = pm.total;
	stats->phys_used = pm.used;
	stats->cma_total = pm.cma_total;
	stats->cma_used = pm.cma_used;
	dmb_unlock(ctx);
	return 0;
}

void dmb_ctx_serve_others(struct dmabuf_ctx *self)
{
	struct dmabuf_ctx *ctx;

	pthread_mutex_lock(&contexts_lock);
	LIST_FOREACH(ctx, &contexts, process_link) {
		/* A context whose lock is taken is being served by its owner;
		 * one inherited over fork() belongs to the parent. */
		if (ctx == self || ctx->fork_gen != dmb_fork_gen() ||
		    pthread_mutex_trylock(&ctx->lock) != 0)
			continue;
		dmb_ctx_dispatch_locked(ctx, 0);
		dmb_unlock(ctx);
	}
	pthread_mutex_unlock(&contexts_lock);
}

int dmb_ctx_other_fds(struct dmabuf_ctx *self, int *fds, int max)
{
	struct dmabuf_ctx *ctx;
	int n = 0;

	pthread_mutex_lock(&contexts_lock);
	LIST_FOREACH(ctx, &contexts, process_link)
		if (ctx != self && ctx->fork_gen == dmb_fork_gen() && n < max)
			fds[n++] = ctx->epoll_fd;
	pthread_mutex_unlock(&contexts_lock);
	return n;
}

static void *service_thread(void *arg)
{
	struct dmabuf_ctx *ctx = arg;
	struct pollfd pfd[2] = {
		{ .fd = ctx->epoll_fd, .events = POLLIN },
		{ .fd = ctx->thread_stop_fd, .events = POLLIN },
	};

	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[0].revents)
			dmabuf_ctx_dispatch(ctx);
	}
	return NULL;
}

DMABUF_EXPORT int dmabuf_ctx_start_thread(struct dmabuf_ctx *ctx)
{
	int ret;

	if (!ctx_lock(ctx))
		return -EINVAL;
	if (ctx->thread_running) {
		dmb_unlock(ctx);
		return -EBUSY;
	}
	ctx->thread_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctx->thread_stop_fd < 0) {
		ret = -errno;
		dmb_unlock(ctx);
		return ret;
	}
	ret = -pthread_create(&ctx->thread, NULL, service_thread, ctx);
	if (ret < 0) {
		close(ctx->thread_stop_fd);
		ctx->thread_stop_fd = -1;
	} else {
		ctx->thread_running = true;
	}
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_ctx_stop_thread(struct dmabuf_ctx *ctx)
{
	uint64_t one = 1;
	pthread_t thread;

	if (!ctx_lock(ctx))
		return -EINVAL;
	if (!ctx->thread_running) {
		dmb_unlock(ctx);
		return -ESRCH;
	}
	if (pthread_equal(ctx->thread, pthread_self())) {
		dmb_unlock(ctx);
		return -EDEADLK;
	}
	thread = ctx->thread;
	ctx->thread_running = false;
	if (write(ctx->thread_stop_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write of 1 cannot fail short of a bug */
	}
	/* The thread takes the lock to dispatch: let it finish. */
	dmb_unlock(ctx);
	pthread_join(thread, NULL);
	dmb_lock(ctx);
	close(ctx->thread_stop_fd);
	ctx->thread_stop_fd = -1;
	dmb_unlock(ctx);
	return 0;
}
