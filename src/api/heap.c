/* SPDX-License-Identifier: MIT */
/*
 * Built-in heaps, as /dev/dma_heap/<name>: the exporter is the library
 * itself, the result is an fd and nothing else (DMA_HEAP_IOCTL_ALLOC).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "private.h"

struct heap_buffer {
	const char *heap;
};

static int heap_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	/* A device that cannot reach the frames already chosen is refused
	 * now, not at map time. */
	return dmabuf_backing_check_device(buf, dmabuf_attachment_get_device(att));
}

static int heap_mmap(struct dmabuf *buf, uint64_t offset, uint64_t len, int prot)
{
	return 0;
}

static void heap_release(struct dmabuf *buf)
{
	free(dmabuf_get_priv(buf));
}

static const struct dmabuf_ops heap_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = heap_attach,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = heap_release,
	.mmap = heap_mmap,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

static const struct {
	const char *name;
	enum dmabuf_alloc alloc;
} heaps[] = {
	{ "system", DMABUF_ALLOC_SYSTEM },
	{ "cma", DMABUF_ALLOC_CONTIGUOUS },
	{ "deferred", DMABUF_ALLOC_DEFERRED },
};

DMABUF_EXPORT int dmabuf_heap_alloc(struct dmabuf_ctx *ctx, const char *heap,
				    uint64_t len, uint32_t fd_flags,
				    uint64_t heap_flags)
{
	struct dmabuf_export_info info = { 0 };
	struct heap_buffer *hb;
	struct dmabuf *buf;
	size_t i;
	int ret, fd;

	if (!heap || !dmb_ctx_usable(ctx))
		return -EINVAL;
	/* The heap first: an unknown one is an open("/dev/dma_heap/<name>")
	 * that fails with -ENOENT before there is an fd to ioctl. */
	for (i = 0; i < DMB_ARRAY_SIZE(heaps); i++)
		if (!strcmp(heap, heaps[i].name))
			break;
	if (i == DMB_ARRAY_SIZE(heaps))
		return -ENOENT;
	/* Then dma_heap_ioctl_allocate()'s checks (fd_flags, heap_flags),
	 * then dma_heap_buffer_alloc()'s (len). */
	if ((fd_flags & ~(uint32_t)(O_ACCMODE | O_CLOEXEC)) || heap_flags || !len)
		return -EINVAL;
	/* PAGE_ALIGN(len) == 0: only a len that wraps. 0xfff...f000 is
	 * aligned and is -ENOMEM (larger than RAM), as in the kernel. */
	if (len > UINT64_MAX - DMB_PAGE_SIZE + 1)
		return -EINVAL;
	hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	hb->heap = heaps[i].name;
	info.exp_name = heaps[i].name;
	info.ops = &heap_ops;
	info.size = DMB_ALIGN_UP(len, DMB_PAGE_SIZE);
	/* The file gets fd_flags' access mode, as the heaps' exp_info.flags;
	 * O_ACCMODE itself is taken as O_RDWR. */
	info.flags = (fd_flags & O_ACCMODE) == O_ACCMODE ? O_RDWR : (int)(fd_flags & O_ACCMODE);
	info.priv = hb;
	info.alloc = heaps[i].alloc;
	ret = dmabuf_export(ctx, &info, &buf);
	if (ret < 0) {
		free(hb);
		return ret;
	}
	/* The fd is now the only reference, as with a real heap: the
	 * library's descriptor of the file itself, so the allocation costs
	 * no dup and close. On failure the put releases the buffer (and
	 * frees hb). */
	fd = dmb_buf_fd_and_put(buf);
	return fd;
}
