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

/* Probes every orphan of this context once (its close event may still be
 * queued, or lost to a probe race; its re-probe may be up to a second
 * away), in inode order: one whose file is still held does not keep the
 * others from their probe. A release may run ops->release, which may put
 * and release other buffers, so after one the walk goes on from the
 * released buffer's key, looked up again. True when something is still
 * pending: an orphan still held a moment after its close event, whose
 * lock may be about to go (an early re-probe). */
static bool pending_locked(struct dmabuf_ctx *ctx, int *handled)
{
	unsigned long before = ctx->stats.buffers_released;
	struct dmabuf *buf, key;

	dmb_assert_locked(ctx);
	for (buf = RB_MIN(dmb_buf_tree, &ctx->by_inode); buf;) {
		unsigned long released = ctx->stats.buffers_released;

		if (buf->state != DMB_BUF_ORPHAN || buf->imported) {
			buf = RB_NEXT(dmb_buf_tree, &ctx->by_inode, buf);
			continue;
		}
		key.key = buf->key;
		dmb_release_check(buf);
		/* buf may be freed now: go on from its key. */
		if (ctx->stats.buffers_released == released)
			buf = RB_NEXT(dmb_buf_tree, &ctx->by_inode, buf);
		else
			buf = RB_NFIND(dmb_buf_tree, &ctx->by_inode, &key);
	}
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
