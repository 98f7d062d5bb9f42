/* SPDX-License-Identifier: MIT */
/*
 * udmabuf: a buffer made of ranges of the caller's memfds, with the kernel
 * driver's rules. The buffer sees the caller's pages (its mappings and the
 * devices' DMA go to the memfds). Its dma-buf file is a handle of its own,
 * since no single file can present several memfds: see docs/design.md.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "private.h"

struct udmabuf {
	/* The driver makes its sg table at the first begin_cpu_access
	 * (begin_cpu_udmabuf()), and end_cpu_udmabuf() is -EINVAL until then. */
	bool cpu_synced;
};

static int udmabuf_mmap(struct dmabuf *buf, uint64_t offset, uint64_t len, int prot)
{
	return 0;
}

static int udmabuf_begin_cpu_access(struct dmabuf *buf, enum dmabuf_direction dir)
{
	((struct udmabuf *)dmabuf_get_priv(buf))->cpu_synced = true;
	return 0;
}

static int udmabuf_end_cpu_access(struct dmabuf *buf, enum dmabuf_direction dir)
{
	return ((struct udmabuf *)dmabuf_get_priv(buf))->cpu_synced ? 0 : -EINVAL;
}

static void udmabuf_release(struct dmabuf *buf)
{
	free(dmabuf_get_priv(buf));
}

static const struct dmabuf_ops udmabuf_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = udmabuf_release,
	.begin_cpu_access = udmabuf_begin_cpu_access,
	.end_cpu_access = udmabuf_end_cpu_access,
	.mmap = udmabuf_mmap,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

/* The driver's per-item checks, after the sizes were checked for every
 * item: fget() (-EBADFD when it fails, not -EBADF), check_memfd_seals() (a
 * memfd that can shrink, or that cannot be written, is refused), then the
 * pinning, which fails for an empty or out-of-file range. */
static int check_item(const struct dmabuf_udmabuf_item *item)
{
	struct stat st;
	int seals;

	if (item->memfd < 0 || fstat(item->memfd, &st) < 0)
		return -EBADFD;
	seals = fcntl(item->memfd, F_GET_SEALS);
	if (seals < 0 || !S_ISREG(st.st_mode))
		return -EBADFD;
	if (!(seals & F_SEAL_SHRINK) || (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
		return -EINVAL;
	if (!item->size || item->offset > (uint64_t)st.st_size ||
	    item->size > (uint64_t)st.st_size - item->offset)
		return -EINVAL;
	return 0;
}

DMABUF_EXPORT int dmabuf_udmabuf_create_list(struct dmabuf_ctx *ctx, uint32_t flags,
					     const struct dmabuf_udmabuf_item *items,
					     uint32_t count)
{
	struct dmabuf_export_info info = { 0 };
	struct dmb_backing backing = { 0 };
	struct dmabuf *buf;
	uint64_t total = 0;
	int ret;

	if (!dmb_ctx_usable(ctx) || !items)
		return -EINVAL;
	/* udmabuf_create() (Linux 6.12) reads only UDMABUF_FLAGS_CLOEXEC and
	 * ignores the other bits; our fds are close-on-exec either way. */
	(void)flags;
	if (!count || count > DMABUF_UDMABUF_LIST_LIMIT)
		return -EINVAL;
	/* udmabuf_create()'s order: alignment and the size limit for every
	 * item first, then the fds. */
	for (uint32_t i = 0; i < count; i++) {
		if (!DMB_ALIGNED(items[i].offset, DMB_PAGE_SIZE) ||
		    !DMB_ALIGNED(items[i].size, DMB_PAGE_SIZE) ||
		    items[i].size > DMABUF_UDMABUF_SIZE_LIMIT - total)
			return -EINVAL;
		total += items[i].size;
	}
	if (!total)
		return -EINVAL;
	for (uint32_t i = 0; i < count; i++) {
		ret = check_item(&items[i]);
		if (ret < 0) {
			dmb_info(ctx, "udmabuf item %u refused: %d", i, ret);
			return ret;
		}
	}
	backing.ranges = calloc(count, sizeof(*backing.ranges));
	if (!backing.ranges)
		return -ENOMEM;
	backing.size = total;
	for (uint32_t i = 0; i < count; i++) {
		struct dmb_backing_range *r = &backing.ranges[i];

		r->fd = fcntl(items[i].memfd, F_DUPFD_CLOEXEC, 0);
		if (r->fd < 0) {
			ret = -errno;
			goto fail;
		}
		r->owned = true;
		r->offset = items[i].offset;
		r->size = items[i].size;
		backing.nranges++;
	}
	info.exp_name = "udmabuf";
	info.ops = &udmabuf_ops;
	info.size = total;
	info.flags = O_RDWR;
	info.priv = calloc(1, sizeof(struct udmabuf));
	info.alloc = DMABUF_ALLOC_SYSTEM;
	ret = -ENOMEM;
	if (!info.priv)
		goto fail;
	dmb_lock(ctx);
	ret = dmb_buf_create(ctx, &info, &backing, &buf);
	dmb_unlock(ctx);
	if (ret < 0) {
		free(info.priv);
		goto fail;
	}
	/* The library's descriptor becomes the caller's (no dup). */
	return dmb_buf_fd_and_put(buf);
fail:
	/* dmb_buf_create hands the ranges back on failure. */
	for (size_t i = 0; i < backing.nranges; i++)
		close(backing.ranges[i].fd);
	free(backing.ranges);
	return ret;
}

DMABUF_EXPORT int dmabuf_udmabuf_create(struct dmabuf_ctx *ctx, int memfd,
					uint32_t flags, uint64_t offset,
					uint64_t size)
{
	struct dmabuf_udmabuf_item item = {
		.memfd = memfd, .offset = offset, .size = size,
	};

	return dmabuf_udmabuf_create_list(ctx, flags, &item, 1);
}
