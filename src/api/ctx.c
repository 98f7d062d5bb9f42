/* SPDX-License-Identifier: MIT */
/*
 * The context's lifecycle: one simulated host. Creation wires the layers
 * together (the event loop of base/loop.c, the remote layer's hooks; the
 * release sources and the frame bitmap come at first need); teardown
 * undoes them top down and reports leaks.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "private.h"
#include "remote.h"

#define DEFAULT_PHYS_SIZE (16ull << 30)
#define DEFAULT_CMA_SIZE (1ull << 30)

static int config_fill(struct dmabuf_ctx_config *c)
{
	if (c->flags & ~(uint32_t)(DMABUF_CTX_STRICT_CPU_ACCESS | DMABUF_CTX_ANY_UID |
				   DMABUF_CTX_NO_RECYCLE))
		return -EINVAL;
	if (!c->phys_size)
		c->phys_size = DEFAULT_PHYS_SIZE;
	if (!c->cma_size)
		c->cma_size = DEFAULT_CMA_SIZE;
	if (!c->log_priority)
		c->log_priority = dmb_log_env()->priority;
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
	int ret;

	if (!out)
		return -EINVAL;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ret = config ? dmb_struct_in(&ctx->config, sizeof(ctx->config), config,
				     DMB_V1_SIZE(struct dmabuf_ctx_config))
		     : 0;
	if (ret == 0)
		ret = config_fill(&ctx->config);
	if (ret < 0) {
		free(ctx);
		return ret;
	}
	ctx->inotify_fd = ctx->reprobe_fd = ctx->fd_dir = -1;
	ctx->base.log_fn = ctx->config.log_fn;
	ctx->base.log_data = ctx->config.log_data;
	ctx->base.log_priority = ctx->config.log_priority;
	RB_INIT(&ctx->by_inode);
	RB_INIT(&ctx->by_wd);
	LIST_INIT(&ctx->devices);
	LIST_INIT(&ctx->conns);
	RB_INIT(&ctx->names);
	ret = dmb_ctx_base_init(ctx);
	if (ret < 0) {
		free(ctx);
		return ret;
	}
	dmb_remote_register();

	ret = dmb_physmem_new(ctx->config.phys_base, ctx->config.phys_size,
			      ctx->config.cma_size, ctx->config.seed, &ctx->physmem);
	if (ret < 0)
		goto fail;

	/* The release sources (inotify, re-probe timer) come at the first
	 * share (dmb_release_sources()), /proc/self/fd at the first reopen:
	 * a context that only imports holds its epoll fd alone. */
	ret = dmb_obj_add(ctx, DMB_OBJ_CTX);
	if (ret < 0)
		goto fail;
	ctx->stats.phys_total = ctx->config.phys_size;
	dmb_ctx_base_publish(ctx);
	*out = ctx;
	return 0;

fail:
	if (ctx->physmem)
		dmb_physmem_destroy(ctx->physmem);
	dmb_ctx_base_fini(ctx);
	free(ctx);
	return ret;
}

/* Logs every buffer and device the caller still holds; returns how many. */
static unsigned int report_leaks(struct dmabuf_ctx *ctx)
{
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	unsigned int n = 0;

	RB_FOREACH(buf, dmb_buf_tree, &ctx->by_inode) {
		if (buf->state != DMB_BUF_LIVE)
			continue;
		n++;
		dmb_err(ctx, "leak: buffer %s%s%s (ino %lu, %llu bytes) still has %u reference(s), %u attachment(s), %u mapping(s) at context destruction",
			buf->exp_name, *dmb_buf_name(buf) ? " name " : "", dmb_buf_name(buf),
			(unsigned long)buf->key.ino,
			(unsigned long long)buf->size, buf->refcount,
			buf->nattachments, buf->nmappings);
	}
	LIST_FOREACH(dev, &ctx->devices, ctx_link) {
		if (dev->remote)
			continue;
		n++;
		dmb_err(ctx, "leak: device %s was not destroyed (%u attachment(s))",
			dev->name, dev->attach_count);
	}
	return n;
}

/* DMABUF_LEAKS=fatal: a leak at context destruction aborts the process,
 * so a test run fails where it happened. */
static bool leaks_fatal(void)
{
	const char *s = getenv("DMABUF_LEAKS");

	return s && !strcmp(s, "fatal");
}

DMABUF_EXPORT int dmabuf_ctx_destroy(struct dmabuf_ctx *ctx)
{
	struct dmabuf *buf;
	unsigned int leaks;

	if (!ctx)
		return 0;
	if (!dmb_ctx_usable(ctx)) {
		dmb_err(NULL, "dmabuf_ctx_destroy: %p is not a live context of this process", (void *)ctx);
		return -EINVAL;
	}
	dmb_ctx_base_unpublish(ctx);
	dmb_lock(ctx);
	/* Peers first: their imports hold buffer references. */
	dmb_endpoint_destroy(ctx);
	leaks = report_leaks(ctx);
	if (leaks && leaks_fatal()) {
		dmb_log(NULL, DMABUF_LOG_ERROR, "DMABUF_LEAKS=fatal: %u object(s) leaked at context destruction", leaks);
		abort();
	}
	/* Whatever is left is released now: the exporter's process is going
	 * away, so its ops must get a last chance to free their state.
	 * One at a time in inode order, not with a saved next pointer: a
	 * release op may put, and so release, another buffer. */
	while ((buf = RB_MIN(dmb_buf_tree, &ctx->by_inode)))
		dmb_buf_release_now(buf);
	dmb_recycle_fini(ctx);
	dmb_conns_destroy(ctx);
	dmb_devices_destroy_all(ctx);
	/* Still registered: see its open in dmabuf_ctx_new(). */
	if (ctx->fd_dir >= 0)
		close(ctx->fd_dir);
	ctx->fd_dir = -1;
	dmb_obj_del(ctx);
	dmb_unlock(ctx);

	if (ctx->inotify_fd >= 0) {
		close(ctx->reprobe_fd);
		close(ctx->inotify_fd);
	}
	dmb_physmem_destroy(ctx->physmem);
	dmb_names_fini(ctx);
	dmb_ctx_base_fini(ctx);
	free(ctx);
	return (int)leaks;
}

DMABUF_EXPORT void dmabuf_ctx_set_log(struct dmabuf_ctx *ctx, dmabuf_log_fn fn,
				      void *data, enum dmabuf_log_priority priority)
{
	if (!dmb_ctx_lock_usable(ctx))
		return;
	ctx->config.log_fn = ctx->base.log_fn = fn;
	ctx->config.log_data = ctx->base.log_data = data;
	ctx->config.log_priority = ctx->base.log_priority = priority;
	dmb_unlock(ctx);
}

DMABUF_EXPORT int dmabuf_ctx_get_stats(struct dmabuf_ctx *ctx,
				       struct dmabuf_ctx_stats *stats)
{
	struct dmb_physmem_stats pm;
	struct dmabuf_ctx_stats s;

	if (!stats || !dmb_ctx_lock_usable(ctx))
		return -EINVAL;
	s = ctx->stats;
	dmb_physmem_get_stats(ctx->physmem, &pm);
	s.phys_total = pm.total;
	s.phys_used = pm.used;
	s.cma_total = pm.cma_total;
	s.cma_used = pm.cma_used;
	dmb_unlock(ctx);
	return dmb_struct_out(stats, &s, sizeof(s), DMB_V1_UPTO(struct dmabuf_ctx_stats, moves));
}

