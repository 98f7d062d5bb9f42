/* SPDX-License-Identifier: MIT */
/*
 * close(): the program's last close of an emulated file is what the core
 * learns a release from (the kernel's fput() of the last reference), a
 * closed fd's tag is cleared, an epoll record may go with it, and the
 * layer's own fds do not exist for the program (EBADF). Apart because it
 * ends what the other families start.
 */
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload-int.h"

REAL(close, int, int)
REAL(fstat, int, int, struct stat *)

int dmb_preload_program_close(int fd)
{
	enum dmb_uapi_kind kind;
	unsigned char tag;
	struct stat st;
	bool maybe;
	int ret;

	/* On Linux the program has no such fd. */
	if (dmb_layer_fd_is(fd)) {
		errno = EBADF;
		return -1;
	}
	dmb_preload_fd_seen(fd);
	/* An untagged fd is no emulated file: nothing to do after. */
	maybe = dmb_preload_fd_maybe(fd);
	if (__builtin_expect(!maybe, 1) && !dmb_preload_epoll_any())
		return get_close()(fd);
	tag = dmb_preload_fd_tag_of(fd); /* 0 above the table: nothing to clear */
	if (maybe && getpid() != dmb_preload_pid)
		/* A vfork child: the memory is the parent's, the fd table
		 * is not. The parent's bookkeeping stays as it is. */
		return get_close()(fd);
	if (dmb_preload_epoll_any() && get_fstat()(fd, &st) == 0) {
		/* An epoll record may go with this fd. */
		kind = atomic_load_explicit(&dmb_preload_active, memory_order_relaxed)
			       ? dmb_uapi_classify_stat(fd, &st)
			       : DMB_UAPI_NONE;
		ret = get_close()(fd);
		if (!ret)
			dmb_preload_epoll_closed(st.st_dev, st.st_ino);
		goto closed;
	}
	if (!dmb_uapi_close_matters() || get_fstat()(fd, &st) < 0) {
		ret = get_close()(fd);
		if (!ret)
			dmb_preload_fd_untag(fd, tag);
		return ret;
	}
	kind = dmb_uapi_classify_stat(fd, &st);
	ret = get_close()(fd);
closed:
	if (!ret)
		dmb_preload_fd_untag(fd, tag);
	if (kind != DMB_UAPI_NONE) {
		dmb_uapi_trace("close(%d <%s>) = %d", fd, dmb_preload_kind_name(kind), ret);
		if (!ret)
			IN_CORE_VOID(dmb_uapi_closed(kind, st.st_dev, st.st_ino));
	}
	return ret;
}

EXPORT int close(int fd)
{
	if (LAYER_CALL()) {
		dmb_layer_fd_forget(fd);
		return get_close()(fd);
	}
	return dmb_preload_program_close(fd);
}

