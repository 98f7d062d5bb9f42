/* SPDX-License-Identifier: MIT */
/*
 * The emulated ioctls: dma-heap, udmabuf, dma-buf, sync_file and sw_sync,
 * each with the kernel's checks in the kernel's order (drivers/dma-buf/ of
 * Linux 6.12), on top of libdmabuf's public API.
 *
 * A new fd goes to the program only once everything else succeeded: the
 * argument is first written back unchanged (so a read-only or unmapped
 * argument is -EFAULT before any fd exists, as the kernel's copy_to_user
 * comes before fd_install), then the fd is installed and its number written.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/sync_file.h>
#include <linux/udmabuf.h>

#include <dmabuf-fence.h>
#include <dmabuf.h>

#include "core.h"

/* Not in Debian 12's uapi headers (Linux 6.1); the numbers are 6.12's. */
#ifndef SYNC_IOC_SET_DEADLINE
struct sync_set_deadline {
	__u64 deadline_ns;
	__u64 pad;
};
#define SYNC_IOC_SET_DEADLINE _IOW(SYNC_IOC_MAGIC, 5, struct sync_set_deadline)
#endif

/* sw_sync has no installed uapi header; these are the kernel's. */
struct dmb_sw_sync_create_fence_data {
	__u32 value;
	char name[32];
	__s32 fence;
};
struct dmb_sw_sync_get_deadline {
	__u64 deadline_ns;
	__u32 pad;
	__s32 fence_fd;
};
#define DMB_SW_SYNC_IOC_CREATE_FENCE _IOWR('W', 0, struct dmb_sw_sync_create_fence_data)
#define DMB_SW_SYNC_IOC_INC _IOW('W', 1, __u32)
#define DMB_SW_SYNC_GET_DEADLINE _IOWR('W', 2, struct dmb_sw_sync_get_deadline)

/* Installs fd and writes its number at uarg + off (after a dry-run write
 * of the whole argument, done by the caller). */
static int give_fd(struct dmb_uapi_io *io, int fd, unsigned int o_flags, uint64_t uarg,
		   size_t off)
{
	int32_t ufd;

	ufd = io->install_fd(io, fd, o_flags);
	if (ufd < 0)
		return ufd;
	if (io->copy_out(io, uarg + off, &ufd, sizeof(ufd)))
		return -EFAULT; /* raced with an munmap: the fd stays, as a leak */
	return 0;
}

/* ---- /dev/dma_heap/<name> ------------------------------------------------- */

static long heap_ioctl(struct dmb_uapi_io *io, int fd, unsigned long ucmd, uint64_t uarg)
{
	const unsigned long kcmd = DMA_HEAP_IOCTL_ALLOC;
	union {
		struct dma_heap_allocation_data d;
		char raw[1 << 14];
	} *k;
	unsigned int in_size, out_size, ksize;
	struct stat st;
	const char *heap = NULL;
	struct dma_heap_allocation_data *d;
	uint64_t len;
	long ret;
	int bfd;

	/* dma_heap_ioctl(): any number but 0 is -EINVAL; the struct copy is
	 * size-compatible both ways. */
	if (_IOC_NR(ucmd) >= 1)
		return -EINVAL;
	out_size = _IOC_SIZE(ucmd);
	in_size = out_size;
	if ((ucmd & kcmd & IOC_IN) == 0)
		in_size = 0;
	if ((ucmd & kcmd & IOC_OUT) == 0)
		out_size = 0;
	ksize = in_size > out_size ? in_size : out_size;
	if (ksize < sizeof(struct dma_heap_allocation_data))
		ksize = sizeof(struct dma_heap_allocation_data);
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	if (io->copy_in(io, k->raw, uarg, in_size)) {
		ret = -EFAULT;
		goto out;
	}
	d = &k->d;
	if (d->fd || (d->fd_flags & ~DMA_HEAP_VALID_FD_FLAGS) ||
	    (d->heap_flags & ~DMA_HEAP_VALID_HEAP_FLAGS)) {
		ret = -EINVAL;
		goto out;
	}
	/* PAGE_ALIGN on a size_t: only a wrapping length is 0. */
	len = d->len;
	if (!len || len > UINT64_MAX - DMB_UAPI_PAGE + 1) {
		ret = -EINVAL;
		goto out;
	}
	if (dmb_uapi_fstat(fd, &st) < 0 || dmb_uapi_tree_kind(&st, &heap) != DMB_UAPI_HEAP ||
	    !heap) {
		ret = -ENODEV;
		goto out;
	}
	bfd = dmabuf_heap_alloc(dmb_uapi_ctx_exporting(), heap, len, d->fd_flags, 0);
	if (bfd < 0) {
		ret = bfd;
		goto out;
	}
	if (io->copy_out(io, uarg, k->raw, out_size)) {
		/* The buffer goes before the ioctl returns, as dma_buf_put(). */
		close(bfd);
		dmb_uapi_closed(DMB_UAPI_DMABUF, 0, 0);
		ret = -EFAULT;
		goto out;
	}
	dmb_uapi_leak_note(bfd, heap);
	ret = io->install_fd(io, bfd, d->fd_flags);
	if (ret >= 0) {
		d->fd = ret;
		ret = 0;
		if (io->copy_out(io, uarg, k->raw, out_size))
			ret = -EFAULT;
	}
out:
	free(k);
	return ret;
}

/* ---- /dev/udmabuf ----------------------------------------------------------- */

static long udmabuf_finish(struct dmb_uapi_io *io, uint32_t flags,
			   struct dmabuf_udmabuf_item *items, uint32_t count)
{
	uint32_t i;
	int bfd;

	/* The program's memfds as fds of this process; a bad one stays -1,
	 * which the library answers -EBADFD after the size checks, as the
	 * driver's fget() comes after them. */
	for (i = 0; i < count; i++)
		items[i].memfd = io->get_fd(io, items[i].memfd);
	/* 6.12 only looks at UDMABUF_FLAGS_CLOEXEC. */
	bfd = dmabuf_udmabuf_create_list(dmb_uapi_ctx_exporting(), flags & UDMABUF_FLAGS_CLOEXEC,
					 items, count);
	for (i = 0; i < count; i++)
		if (items[i].memfd >= 0)
			close(items[i].memfd);
	if (bfd < 0)
		return bfd;
	dmb_uapi_leak_note(bfd, "udmabuf");
	/* The ioctl returns the fd itself. */
	return io->install_fd(io, bfd, flags & UDMABUF_FLAGS_CLOEXEC ? O_CLOEXEC : 0);
}

static long udmabuf_ioctl(struct dmb_uapi_io *io, unsigned long cmd, uint64_t uarg)
{
	struct dmabuf_udmabuf_item *items;
	struct udmabuf_create_list head;
	struct udmabuf_create create;
	struct udmabuf_create_item *list;
	struct dmabuf_udmabuf_item one;
	uint32_t i;
	long ret;

	switch (cmd) {
	case UDMABUF_CREATE:
		if (io->copy_in(io, &create, uarg, sizeof(create)))
			return -EFAULT;
		one = (struct dmabuf_udmabuf_item){ .memfd = (int)create.memfd,
						    .offset = create.offset,
						    .size = create.size };
		return udmabuf_finish(io, create.flags, &one, 1);
	case UDMABUF_CREATE_LIST:
		if (io->copy_in(io, &head, uarg, sizeof(head)))
			return -EFAULT;
		if (head.count > DMABUF_UDMABUF_LIST_LIMIT)
			return -EINVAL;
		list = calloc(head.count ? head.count : 1, sizeof(*list));
		items = calloc(head.count ? head.count : 1, sizeof(*items));
		if (!list || !items) {
			free(list);
			free(items);
			return -ENOMEM;
		}
		if (io->copy_in(io, list, uarg + sizeof(head), head.count * sizeof(*list))) {
			ret = -EFAULT;
		} else {
			for (i = 0; i < head.count; i++)
				items[i] = (struct dmabuf_udmabuf_item){
					.memfd = (int)list[i].memfd,
					.offset = list[i].offset,
					.size = list[i].size };
			/* No item: the driver's "pgcnt == 0" -EINVAL. */
			ret = head.count ? udmabuf_finish(io, head.flags, items, head.count)
					 : -EINVAL;
		}
		free(list);
		free(items);
		return ret;
	default:
		return -ENOTTY;
	}
}

/* ---- dma-buf fds ---------------------------------------------------------- */

#define get_buf dmb_uapi_get_buf

static long dmabuf_sync(struct dmb_uapi_io *io, int fd, uint64_t uarg)
{
	struct dma_buf_sync sync;
	enum dmabuf_direction dir;
	struct dmabuf *buf;
	int ret;

	if (io->copy_in(io, &sync, uarg, sizeof(sync)))
		return -EFAULT;
	if (sync.flags & ~(uint64_t)DMA_BUF_SYNC_VALID_FLAGS_MASK)
		return -EINVAL;
	switch (sync.flags & DMA_BUF_SYNC_RW) {
	case DMA_BUF_SYNC_READ: dir = DMABUF_FROM_DEVICE; break;
	case DMA_BUF_SYNC_WRITE: dir = DMABUF_TO_DEVICE; break;
	case DMA_BUF_SYNC_RW: dir = DMABUF_BIDIRECTIONAL; break;
	default: return -EINVAL;
	}
	ret = get_buf(fd, &buf);
	if (ret)
		return ret;
	ret = sync.flags & DMA_BUF_SYNC_END ? dmabuf_end_cpu_access(buf, dir)
					    : dmabuf_begin_cpu_access(buf, dir);
	/* The heaps' end_cpu_access never fails, with or without a START
	 * before it; the library's bookkeeping may be stricter. A udmabuf's
	 * -EINVAL before its first START is end_cpu_udmabuf()'s own. */
	if (ret == -EINVAL && (sync.flags & DMA_BUF_SYNC_END)) {
		struct dmabuf_info info = { .struct_size = sizeof(info) };

		if (dmabuf_get_info(buf, &info) || strcmp(info.exp_name, "udmabuf"))
			ret = 0;
	}
	dmabuf_put(buf);
	return ret;
}

static long dmabuf_set_name_ioctl(struct dmb_uapi_io *io, int fd, uint64_t uarg)
{
	char name[DMA_BUF_NAME_LEN];
	struct dmabuf *buf;
	size_t i;
	int ret;

	/* strndup_user(): -EFAULT on a bad byte, -EINVAL when no NUL within
	 * DMA_BUF_NAME_LEN bytes. Byte by byte: the string may end right
	 * before an unmapped page. */
	for (i = 0; i < sizeof(name); i++) {
		if (io->copy_in(io, &name[i], uarg + i, 1))
			return -EFAULT;
		if (!name[i])
			break;
	}
	if (i == sizeof(name))
		return -EINVAL;
	ret = get_buf(fd, &buf);
	if (ret)
		return ret;
	ret = dmabuf_set_name(buf, name);
	dmabuf_put(buf);
	return ret;
}

static long dmabuf_export_sync(struct dmb_uapi_io *io, int fd, uint64_t uarg)
{
	struct dma_buf_export_sync_file arg;
	struct dmabuf *buf;
	int ret, sfd;

	if (io->copy_in(io, &arg, uarg, sizeof(arg)))
		return -EFAULT;
	if ((arg.flags & ~DMA_BUF_SYNC_RW) || !(arg.flags & DMA_BUF_SYNC_RW))
		return -EINVAL;
	ret = get_buf(fd, &buf);
	if (ret)
		return ret;
	if (io->copy_out(io, uarg, &arg, sizeof(arg))) {
		dmabuf_put(buf);
		return -EFAULT;
	}
	sfd = dmabuf_export_sync_file(buf, arg.flags);
	dmabuf_put(buf);
	if (sfd < 0)
		return sfd;
	dmb_uapi_leak_note(sfd, "sync_file");
	return give_fd(io, sfd, O_CLOEXEC, uarg, offsetof(struct dma_buf_export_sync_file, fd));
}

static long dmabuf_import_sync(struct dmb_uapi_io *io, int fd, uint64_t uarg)
{
	struct dma_buf_import_sync_file arg;
	struct dmabuf *buf;
	int ret, sfd;

	if (io->copy_in(io, &arg, uarg, sizeof(arg)))
		return -EFAULT;
	if ((arg.flags & ~DMA_BUF_SYNC_RW) || !(arg.flags & DMA_BUF_SYNC_RW))
		return -EINVAL;
	/* sync_file_get_fence() failing is -EINVAL, bad fd or not. */
	sfd = io->get_fd(io, arg.fd);
	if (sfd < 0)
		return -EINVAL;
	if (dmb_uapi_classify(sfd) != DMB_UAPI_SYNC_FILE) {
		close(sfd);
		return -EINVAL;
	}
	ret = get_buf(fd, &buf);
	if (!ret) {
		ret = dmabuf_import_sync_file(buf, arg.flags, sfd);
		dmabuf_put(buf);
	}
	close(sfd);
	return ret;
}

static long dmabuf_ioctl(struct dmb_uapi_io *io, int fd, unsigned long cmd, uint64_t uarg)
{
	switch (cmd) {
	case DMA_BUF_IOCTL_SYNC:
		return dmabuf_sync(io, fd, uarg);
	case DMA_BUF_SET_NAME_A:
	case DMA_BUF_SET_NAME_B:
		return dmabuf_set_name_ioctl(io, fd, uarg);
	case DMA_BUF_IOCTL_EXPORT_SYNC_FILE:
		return dmabuf_export_sync(io, fd, uarg);
	case DMA_BUF_IOCTL_IMPORT_SYNC_FILE:
		return dmabuf_import_sync(io, fd, uarg);
	default:
		return -ENOTTY;
	}
}

/* ---- sync files ------------------------------------------------------------- */

static long sync_merge(struct dmb_uapi_io *io, int fd, uint64_t uarg)
{
	struct sync_merge_data data;
	int fd2, nfd;

	if (io->copy_in(io, &data, uarg, sizeof(data)))
		return -EFAULT;
	if (data.flags || data.pad)
		return -EINVAL;
	fd2 = io->get_fd(io, data.fd2);
	if (fd2 < 0)
		return -ENOENT;
	if (dmb_uapi_classify(fd2) != DMB_UAPI_SYNC_FILE) {
		close(fd2);
		return -ENOENT;
	}
	/* The write-back check before the merge, which makes sockets that
	 * live as long as the merged fence. */
	if (io->copy_out(io, uarg, &data, sizeof(data))) {
		close(fd2);
		return -EFAULT;
	}
	nfd = dmabuf_sync_file_merge(fd, fd2);
	close(fd2);
	if (nfd < 0)
		return nfd == -EINVAL || nfd == -EBADF ? -ENOENT : nfd;
	data.name[sizeof(data.name) - 1] = '\0';
	dmb_uapi_sync_name_set(nfd, data.name);
	dmb_uapi_leak_note(nfd, "sync_file");
	return give_fd(io, nfd, O_CLOEXEC, uarg, offsetof(struct sync_merge_data, fence));
}

static long sync_info(struct dmb_uapi_io *io, int fd, uint64_t uarg)
{
	struct dmabuf_sync_fence_info *fi = NULL;
	struct sync_fence_info *out = NULL;
	struct sync_file_info info;
	int n, status = 0, i;
	long ret = 0;

	if (io->copy_in(io, &info, uarg, sizeof(info)))
		return -EFAULT;
	if (info.flags || info.pad)
		return -EINVAL;
	/* A point another process's INC signalled here: its layer fd is
	 * closed when the status is read. */
	dmb_uapi_timelines_settle();
	n = dmabuf_sync_file_info(fd, &status, NULL, 0);
	if (n < 0)
		return n;
	if (n) {
		fi = calloc(n, sizeof(*fi));
		out = calloc(n, sizeof(*out));
		if (!fi || !out) {
			ret = -ENOMEM;
			goto done;
		}
		n = dmabuf_sync_file_info(fd, &status, fi, n);
		if (n < 0) {
			ret = n;
			goto done;
		}
	}
	if (info.num_fences) {
		if (info.num_fences < (uint32_t)n) {
			ret = -EINVAL;
			goto done;
		}
		/* With fences asked for, status is the worst of the fences'. */
		info.status = 1;
		for (i = 0; i < n; i++) {
			snprintf(out[i].obj_name, sizeof(out[i].obj_name), "%s", fi[i].obj_name);
			snprintf(out[i].driver_name, sizeof(out[i].driver_name), "%s",
				 fi[i].driver_name);
			out[i].status = fi[i].status;
			out[i].flags = 0;
			out[i].timestamp_ns = fi[i].status ? (uint64_t)fi[i].timestamp_ns : 0;
			info.status = info.status <= 0 ? info.status : out[i].status;
		}
		if (n && io->copy_out(io, info.sync_fence_info, out, n * sizeof(*out))) {
			ret = -EFAULT;
			goto done;
		}
	} else {
		info.status = status;
	}
	memset(info.name, 0, sizeof(info.name));
	if (dmb_uapi_sync_name_get(fd, info.name, sizeof(info.name)) && n >= 1) {
		char def[128];

		/* sync_file_get_name()'s default form, truncated as strscpy. */
		snprintf(def, sizeof(def), "%s-%s%llu-%llu", fi[0].driver_name,
			 fi[0].obj_name, dmb_uapi_context_number(fi[0].context),
			 (unsigned long long)fi[0].seqno);
		memcpy(info.name, def, strnlen(def, sizeof(info.name) - 1));
	}
	info.num_fences = n;
	if (io->copy_out(io, uarg, &info, sizeof(info)))
		ret = -EFAULT;
done:
	free(fi);
	free(out);
	return ret;
}

/* A sw_sync fence of the sync file fd, alone (not merged), or -EINVAL as
 * dma_fence_to_sync_pt(). */
static int sync_sw_point(int fd, struct dmabuf_sync_fence_info *fi)
{
	int n = dmabuf_sync_file_info(fd, NULL, fi, 1);

	if (n != 1 || strcmp(fi->driver_name, "sw_sync"))
		return -EINVAL;
	return 0;
}

/* SYNC_IOC_SET_DEADLINE: the hint goes to the fence's set_deadline op
 * (through arrays and chains, to every sw_sync point, which keeps the
 * earliest; a point of another process gets it there, through its sync
 * file). The layer also records the deadline of such a point by context
 * and seqno, so that SW_SYNC_GET_DEADLINE here sees it too. */
static void sync_set_deadline(int fd, uint64_t ns)
{
	struct dmabuf_sync_fence_info *fi;
	int n, i;

	dmabuf_sync_file_set_deadline(fd, (int64_t)ns);
	n = dmabuf_sync_file_info(fd, NULL, NULL, 0);
	if (n <= 0)
		return;
	fi = calloc(n, sizeof(*fi));
	if (!fi)
		return;
	n = dmabuf_sync_file_info(fd, NULL, fi, n);
	for (i = 0; i < n; i++)
		if (!fi[i].status && !strcmp(fi[i].driver_name, "sw_sync"))
			dmb_uapi_deadline_set(fi[i].context, fi[i].seqno, ns);
	free(fi);
}

/* SW_SYNC_GET_DEADLINE: a point of this process answers itself; one of
 * another process from the layer's record. */
static int sw_point_deadline(int sfd, const struct dmabuf_sync_fence_info *pt,
			     uint64_t *ns)
{
	struct dmabuf_fence *f;
	int64_t dl;
	int ret = -EINVAL;

	if (!dmabuf_sync_file_import(sfd, &f)) {
		ret = dmabuf_timeline_point_get_deadline(f, &dl);
		dmabuf_fence_put(f);
	}
	if (!ret) {
		*ns = (uint64_t)dl;
		return 0;
	}
	return dmb_uapi_deadline_get(pt->context, pt->seqno, ns);
}

static long sync_file_ioctl(struct dmb_uapi_io *io, int fd, unsigned long cmd, uint64_t uarg)
{
	struct sync_set_deadline ts;

	switch (cmd) {
	case SYNC_IOC_MERGE:
		return sync_merge(io, fd, uarg);
	case SYNC_IOC_FILE_INFO:
		return sync_info(io, fd, uarg);
	case SYNC_IOC_SET_DEADLINE:
		if (io->copy_in(io, &ts, uarg, sizeof(ts)))
			return -EFAULT;
		if (ts.pad)
			return -EINVAL;
		sync_set_deadline(fd, ts.deadline_ns);
		return 0;
	default:
		/* Includes the legacy SYNC_IOC_FENCE_INFO numbers, which 6.12
		 * no longer knows; libsync falls back on that answer. */
		return -ENOTTY;
	}
}

/* ---- sw_sync timelines ------------------------------------------------------ */

static long sw_sync_ioctl(struct dmb_uapi_io *io, int fd, unsigned long cmd, uint64_t uarg)
{
	struct dmb_sw_sync_create_fence_data data;
	struct dmb_sw_sync_get_deadline dl;
	struct dmabuf_sync_fence_info pt;
	uint64_t ns;
	struct dmabuf_fence *f;
	uint32_t value;
	int ret, sfd;

	switch (cmd) {
	case DMB_SW_SYNC_IOC_CREATE_FENCE:
		if (io->copy_in(io, &data, uarg, sizeof(data)))
			return -EFAULT;
		/* The write-back check first: a point made for a failing
		 * ioctl would stay on the timeline, holding the sync file's
		 * sockets, until it signals. */
		if (io->copy_out(io, uarg, &data, sizeof(data)))
			return -EFAULT;
		ret = dmb_uapi_timeline_create_fence(fd, data.value, &f);
		if (ret)
			return ret;
		sfd = dmabuf_sync_file_export(f);
		dmabuf_fence_put(f);
		if (sfd < 0)
			return sfd;
		dmb_uapi_leak_note(sfd, "sync_file");
		return give_fd(io, sfd, O_CLOEXEC, uarg,
			       offsetof(struct dmb_sw_sync_create_fence_data, fence));
	case DMB_SW_SYNC_IOC_INC:
		if (io->copy_in(io, &value, uarg, sizeof(value)))
			return -EFAULT;
		return dmb_uapi_timeline_inc(fd, value);
	case DMB_SW_SYNC_GET_DEADLINE:
		if (io->copy_in(io, &dl, uarg, sizeof(dl)))
			return -EFAULT;
		if (dl.deadline_ns || dl.pad)
			return -EINVAL;
		sfd = io->get_fd(io, dl.fence_fd);
		if (sfd < 0)
			return -EINVAL;
		ret = dmb_uapi_classify(sfd) == DMB_UAPI_SYNC_FILE ? sync_sw_point(sfd, &pt)
								   : -EINVAL;
		if (!ret)
			ret = sw_point_deadline(sfd, &pt, &ns);
		close(sfd);
		if (ret)
			return ret;
		dl.deadline_ns = ns;
		return io->copy_out(io, uarg, &dl, sizeof(dl)) ? -EFAULT : 0;
	default:
		return -ENOTTY;
	}
}

/* The fstat the front end made of the fd of the ioctl in progress on this
 * thread. */
static __thread const struct stat *ioctl_st;
static __thread int ioctl_st_fd = -1;

int dmb_uapi_fstat(int fd, struct stat *st)
{
	if (ioctl_st && fd == ioctl_st_fd) {
		*st = *ioctl_st;
		return 0;
	}
	return fstat(fd, st);
}

long dmb_uapi_ioctl_stat(struct dmb_uapi_io *io, int fd, const struct stat *st,
			 enum dmb_uapi_kind kind, unsigned long cmd, uint64_t uarg)
{
	const struct stat *outer = ioctl_st;
	int outer_fd = ioctl_st_fd;
	long ret;

	ioctl_st = st;
	ioctl_st_fd = fd;
	ret = dmb_uapi_ioctl(io, fd, kind, cmd, uarg);
	ioctl_st = outer;
	ioctl_st_fd = outer_fd;
	return ret;
}

long dmb_uapi_ioctl(struct dmb_uapi_io *io, int fd, enum dmb_uapi_kind kind,
		    unsigned long cmd, uint64_t uarg)
{
	switch (kind) {
	case DMB_UAPI_HEAP:
		return heap_ioctl(io, fd, cmd, uarg);
	case DMB_UAPI_UDMABUF:
		return udmabuf_ioctl(io, cmd, uarg);
	case DMB_UAPI_DMABUF:
		return dmabuf_ioctl(io, fd, cmd, uarg);
	case DMB_UAPI_SYNC_FILE:
		return sync_file_ioctl(io, fd, cmd, uarg);
	case DMB_UAPI_SW_SYNC:
		return sw_sync_ioctl(io, fd, cmd, uarg);
	default:
		return -ENOTTY;
	}
}
