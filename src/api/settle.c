/* SPDX-License-Identifier: MIT */
/*
 * dmabuf_ctx_settle(): dispatch until nothing is pending, for tests that
 * must see a release (or a peer's message) before they go on.
 */
#include <poll.h>
#include <time.h>

#include "private.h"

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Probes every orphan of this context whose file may be gone already (its
 * close event may still be queued, or lost to a probe race); true when one
 * was released. One release per pass: ops->release may put other buffers,
 * so the tree is walked again from the start. */
static bool release_one_orphan(struct dmabuf_ctx *ctx)
{
	struct dmabuf *buf;

	RB_FOREACH(buf, dmb_buf_tree, &ctx->by_inode) {
		if (buf->state != DMB_BUF_ORPHAN || buf->imported)
			continue;
		dmb_release_check(buf);
		/* buf may be freed now: do not touch it. */
		return true;
	}
	return false;
}

/* Releases what can be released; true when something is still pending. */
static bool pending_locked(struct dmabuf_ctx *ctx, int *handled)
{
	unsigned long before = ctx->stats.buffers_released;
	unsigned int orphans = 0;
	struct dmabuf *buf;

	dmb_assert_locked(ctx);
	RB_FOREACH(buf, dmb_buf_tree, &ctx->by_inode)
		if (buf->state == DMB_BUF_ORPHAN && !buf->imported)
			orphans++;
	/* Each probe either releases the buffer or leaves it; bounded by the
	 * number of orphans seen before. */
	while (orphans-- && release_one_orphan(ctx))
		;
	*handled += (int)(ctx->stats.buffers_released - before);
	return dmb_release_reprobe_soon(ctx);
}

DMABUF_EXPORT int dmabuf_ctx_settle(struct dmabuf_ctx *ctx, int timeout_ms)
{
	int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : 0;
	int handled = 0;

	if (timeout_ms < -1 || !dmb_ctx_usable(ctx))
		return -EINVAL;
	for (;;) {
		struct pollfd pfd = { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN };
		int n, wait_ms;
		bool pending;

		n = dmabuf_ctx_dispatch(ctx);
		if (n < 0)
			return n;
		handled += n;
		if (!dmb_ctx_lock_usable(ctx))
			return -EINVAL;
		pending = pending_locked(ctx, &handled);
		dmb_unlock(ctx);
		if (n == 0 && !pending && poll(&pfd, 1, 0) == 0)
			return handled;
		/* Something is on its way (a re-probe, a peer's message being
		 * handled by another thread): wait a little for it. */
		wait_ms = 1;
		if (timeout_ms >= 0) {
			int64_t left = deadline - now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			if (left < wait_ms)
				wait_ms = (int)left;
		}
		if (n == 0)
			poll(&pfd, 1, wait_ms);
	}
}
