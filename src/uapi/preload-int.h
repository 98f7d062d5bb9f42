/* SPDX-License-Identifier: MIT */
/*
 * What the libc wrappers of the preload (preload*.c) share: the lookup of
 * the next definitions, and the calls of one family that another reaches
 * (syscall() reaches every gate; the trace names kinds). preload.h is what
 * the whole preload shares with fdplace.c and epoll.c; this is the
 * wrappers' own. The files, one family of calls each:
 * - preload.c: who is calling, start-up, exit, fork;
 * - preload-open.c: open, openat, creat, fopen, /proc/.../fdinfo;
 * - preload-stat.c: paths (stat, access, opendir) and fstat;
 * - preload-ioctl.c: ioctl dispatch and the core's io on this process;
 * - preload-mmap.c: mmap, mremap, munmap;
 * - preload-fileops.c: lseek, read/write, fallocate, fsync, fcntl, ftruncate;
 * - preload-poll.c: poll, ppoll, select, pselect;
 * - preload-close.c: close;
 * - preload-recv.c: recvmsg, recvmmsg (fds received over SCM_RIGHTS);
 * - preload-syscall.c: syscall(), the gates above reached without libc.
 */
#pragma once

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "core.h"
#include "preload.h"

/*
 * The next definition of a libc function (RTLD_NEXT): REAL(name, ret,
 * params...) gives a file get_name(), looked up on its first call and kept
 * in the file (each file declares the ones it calls).
 */
#define REAL(name, ret, ...)                                                   \
	static ret (*real_##name)(__VA_ARGS__);                                \
	static inline ret (*get_##name(void))(__VA_ARGS__)                     \
	{                                                                      \
		if (!real_##name)                                              \
			real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
		return real_##name;                                            \
	}

/* The kind of fd: an untagged fd is none without a syscall. */
static inline enum dmb_uapi_kind dmb_preload_fd_kind(int fd)
{
	if (__builtin_expect(!dmb_preload_fd_maybe(fd), 1))
		return DMB_UAPI_NONE;
	return dmb_uapi_classify(fd);
}

/* preload-poll.c: the highest fd number the program is known to have
 * had (the kernel's fd table grows to hold it and never shrinks), for
 * select()'s bound; raised by the program's close() and by select()'s
 * look at its fds. */
extern atomic_int dmb_preload_fd_high;
void dmb_preload_fd_high_raise(int fd);

static inline void dmb_preload_fd_seen(int fd)
{
	if (__builtin_expect(fd > atomic_load_explicit(&dmb_preload_fd_high, memory_order_relaxed),
			     0))
		dmb_preload_fd_high_raise(fd);
}

/* preload.c: the kind's name in the trace. */
const char *dmb_preload_kind_name(enum dmb_uapi_kind k);

/* preload-open.c: an open of an emulated path (what: the call's name, for
 * the trace): the program's new fd, or -1 with errno. */
int dmb_preload_emulated_open(const char *what, const char *path, int flags, mode_t mode);

/* A path that may name an emulated file other than by its emulated name:
 * relative (openat on the tree's directory), or a reopen of an fd
 * (/proc/.../fd/N, /dev/fd/N, /dev/stdin...). Its fd is tagged. */
static inline bool dmb_preload_path_doubtful(const char *path)
{
	if (!path || path[0] != '/')
		return true;
	if (path[1] == 'p')
		return !strncmp(path, "/proc/", 6);
	if (path[1] == 'd')
		return !strncmp(path, "/dev/fd/", 8) || !strncmp(path, "/dev/std", 8);
	return false;
}

/* The fd of a passed-through open: tagged if it may be an emulated file,
 * or if libdmabuf made it for a program using its API. */
#define OPENED(fd, path, layer)                                                \
	((layer) || dmb_preload_path_doubtful(path) ? dmb_preload_fd_tag_active(fd) : (fd))

/* preload-ioctl.c: the program's ioctl (not the layer's). */
int dmb_preload_program_ioctl(int fd, unsigned long cmd, void *arg);

/* preload-close.c: the program's close (not the layer's). */
int dmb_preload_program_close(int fd);

/* preload-recv.c: after a recvmsg() that returned ret, called from ra:
 * the message's SCM_RIGHTS fds are placed (the layer's) or tagged (the
 * others'). */
void dmb_preload_received_msg(ssize_t ret, struct msghdr *msg, int flags, const void *ra);
/* The same for the n messages a recvmmsg() returned (n <= 0: none). */
void dmb_preload_received_mmsg(struct mmsghdr *v, long n, int flags, const void *ra);
