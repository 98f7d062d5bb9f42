/* SPDX-License-Identifier: MIT */
/*
 * Buffers and fences: implicit synchronisation through each buffer's
 * reservation object, as DMA_BUF_IOCTL_EXPORT/IMPORT_SYNC_FILE, dma-buf poll
 * and the waits in begin_cpu_access and map.
 */
#include <poll.h>

#include "private.h"
#include "dmabuf-fence.h"

/* The kernel's dma_resv_usage_rw(): a writer waits for everything (up to
 * READ), a reader only for writers (up to WRITE). */
static enum dmabuf_resv_usage usage_rw(bool write)
{
	return write ? DMABUF_RESV_USAGE_READ : DMABUF_RESV_USAGE_WRITE;
}

/* Waits with the context lock dropped (whole, at any recursion depth), so
 * the thread that will signal can use the context meanwhile; the caller's
 * reference keeps buf alive. */
static int wait_unlocked(struct dmabuf *buf, enum dmabuf_resv_usage usage, int timeout_ms)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	bool held = buf->state == DMB_BUF_LIVE;
	unsigned int depth;
	int ret;

	dmb_assert_locked(ctx);
	if (dmabuf_resv_test_signaled(buf->resv, usage) == 1)
		return 0;
	if (timeout_ms == 0)
		return -EBUSY;
	/* A reference of our own, so another thread's last put cannot free
	 * the buffer while the lock is dropped. (An orphaned buffer is held by
	 * the caller's fd.) */
	if (held)
		buf->refcount++;
	depth = dmb_unlock_all(ctx);
	ret = dmabuf_resv_wait(buf->resv, usage, timeout_ms);
	dmb_relock(ctx, depth);
	if (held)
		dmabuf_put(buf);
	return ret < 0 ? ret : ret == 0 ? -EBUSY : 0;
}

int dmb_buf_wait_for_cpu(struct dmabuf *buf, bool write, int timeout_ms)
{
	return wait_unlocked(buf, usage_rw(write), timeout_ms);
}

int dmb_buf_wait_kernel(struct dmabuf *buf)
{
	/* Memory management (moves, clears) must finish before a static
	 * importer sees the pages, as dma_buf_map_attachment() waits. */
	return wait_unlocked(buf, DMABUF_RESV_USAGE_KERNEL, -1);
}

static int sync_flags_valid(uint32_t flags)
{
	return flags && !(flags & ~(uint32_t)DMABUF_SYNC_RW);
}

int dmb_buf_export_sync_file_locked(struct dmabuf *buf, uint32_t flags)
{
	dmb_assert_locked(buf->ctx);
	struct dmabuf_fence *fence = NULL;
	int ret;

	if (!sync_flags_valid(flags))
		return -EINVAL;
	/* An importer asks the exporter, whose reservation object is the
	 * authoritative one. */
	if (buf->imported)
		return dmb_remote()->export_sync_file(buf, flags);
	ret = dmabuf_resv_get_singleton(buf->resv, usage_rw(flags & DMABUF_SYNC_WRITE), &fence);
	/* Nothing to wait for: an already signalled fence, as the kernel. */
	if (ret == 0 && !fence)
		ret = dmabuf_fence_get_stub(&fence);
	if (ret == 0) {
		ret = dmabuf_sync_file_export(fence);
		dmabuf_fence_put(fence);
	}
	return ret;
}

DMABUF_EXPORT int dmabuf_export_sync_file(struct dmabuf *buf, uint32_t flags)
{
	struct dmabuf_ctx *ctx;
	int ret;

	if (!sync_flags_valid(flags))
		return -EINVAL;
	ctx = dmb_buf_lock(buf);
	if (!ctx)
		return -EINVAL;
	ret = dmb_buf_export_sync_file_locked(buf, flags);
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_import_sync_file(struct dmabuf *buf, uint32_t flags, int fd)
{
	struct dmabuf_ctx *ctx;
	struct dmabuf_fence *fence;
	int ret;

	if (!sync_flags_valid(flags))
		return -EINVAL;
	ctx = dmb_buf_lock(buf);
	if (!ctx)
		return -EINVAL;
	if (buf->imported) {
		ret = dmb_remote()->import_sync_file(buf, flags, fd);
		dmb_unlock(ctx);
		return ret;
	}
	ret = dmabuf_sync_file_import(fd, &fence);
	if (ret == -EBADF)
		ret = -EINVAL; /* sync_file_get_fence() failed: any fd */
	if (ret == 0) {
		ret = dmabuf_resv_add_fence(buf->resv, fence,
					    flags & DMABUF_SYNC_WRITE ? DMABUF_RESV_USAGE_WRITE
								      : DMABUF_RESV_USAGE_READ);
		dmabuf_fence_put(fence);
	}
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_poll(struct dmabuf *buf, short events)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock(buf);
	short revents = 0;

	if (!ctx)
		return -EINVAL;
	/* As dma_buf_poll(): readable once writers are done, writable once
	 * everybody is. */
	if ((events & POLLIN) &&
	    dmabuf_resv_test_signaled(buf->resv, DMABUF_RESV_USAGE_WRITE) == 1)
		revents |= POLLIN;
	if ((events & POLLOUT) &&
	    dmabuf_resv_test_signaled(buf->resv, DMABUF_RESV_USAGE_READ) == 1)
		revents |= POLLOUT;
	dmb_unlock(ctx);
	return revents;
}
