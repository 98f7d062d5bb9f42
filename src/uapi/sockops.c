/* SPDX-License-Identifier: MIT */
/*
 * Socket calls of the program on emulated files. The kernel's sync file is
 * an anon inode and its dma-buf, heap, udmabuf and sw_sync files are no
 * sockets either: every socket call on them is -ENOTSOCK
 * (sockfd_lookup()). Here a sync file is one end of a Unix socket pair
 * (src/fences/sync_file.c), shared by every holder: left to the kernel, a
 * shutdown() of it would make it poll as signalled in every process that
 * holds it, a recv() would take the signal record from all of them, a
 * send() would queue bytes for the exporter, and getsockopt(SO_TYPE)
 * would tell a program that classifies its fds that this is a socket. So
 * the program's socket calls on a tagged fd that the emulation knows are
 * refused as the kernel refuses them; libdmabuf's own calls (LAYER_CALL())
 * and every untagged fd go to the kernel untouched (no syscall added), and
 * so does every call behind a sanitizer's interceptor (ASan), which hides
 * who called.
 * recvmsg() and recvmmsg() are in preload-recv.c, accept4() in fdplace.c.
 */
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

#include "core.h"
#include "preload.h"

/* Whether ra is in a sanitizer's runtime, whose interceptors come before
 * the preload: the caller behind them is unknown (the program, or
 * libdmabuf on a sync file), so such calls go through as they are. */
static bool from_sanitizer(const void *ra)
{
	void *sym = dlsym(RTLD_DEFAULT, "__asan_init");
	Dl_info rt, caller;

	if (!sym)
		sym = dlsym(RTLD_DEFAULT, "__tsan_init");
	return sym && dladdr(sym, &rt) && dladdr(ra, &caller) &&
	       rt.dli_fbase == caller.dli_fbase;
}

bool dmb_preload_not_a_socket(int fd, const void *ra)
{
	if (__builtin_expect(!dmb_preload_fd_maybe(fd), 1))
		return false;
	/* The emulation's own calls: libdmabuf's, the core's (its
	 * classification asks getsockname() of a socket), any on the
	 * layer's fds. */
	if (dmb_preload_from_layer(ra) || dmb_preload_in_core > 0 || dmb_layer_fd_is(fd) ||
	    from_sanitizer(ra))
		return false;
	if (IN_CORE(dmb_uapi_classify(fd)) == DMB_UAPI_NONE)
		return false;
	errno = ENOTSOCK;
	return true;
}

#define SOCKET_CALL(ret, name, params, ...)                                    \
	DECLARE_REAL(name);                                                    \
	EXPORT ret name params                                                 \
	{                                                                      \
		if (dmb_preload_not_a_socket(fd, __builtin_return_address(0))) \
			return -1;                                             \
		return GET_REAL(name)(__VA_ARGS__);                            \
	}

SOCKET_CALL(int, getsockopt, (int fd, int level, int name, void *val, socklen_t *len),
	    fd, level, name, val, len)
SOCKET_CALL(int, setsockopt, (int fd, int level, int name, const void *val, socklen_t len),
	    fd, level, name, val, len)
SOCKET_CALL(int, getsockname, (int fd, struct sockaddr *addr, socklen_t *len), fd, addr, len)
SOCKET_CALL(int, getpeername, (int fd, struct sockaddr *addr, socklen_t *len), fd, addr, len)
SOCKET_CALL(int, bind, (int fd, const struct sockaddr *addr, socklen_t len), fd, addr, len)
SOCKET_CALL(int, connect, (int fd, const struct sockaddr *addr, socklen_t len), fd, addr, len)
SOCKET_CALL(int, listen, (int fd, int backlog), fd, backlog)
SOCKET_CALL(int, accept, (int fd, struct sockaddr *addr, socklen_t *len), fd, addr, len)
SOCKET_CALL(int, shutdown, (int fd, int how), fd, how)
SOCKET_CALL(ssize_t, send, (int fd, const void *buf, size_t n, int flags), fd, buf, n, flags)
SOCKET_CALL(ssize_t, sendto, (int fd, const void *buf, size_t n, int flags,
			      const struct sockaddr *addr, socklen_t len),
	    fd, buf, n, flags, addr, len)
SOCKET_CALL(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags), fd, msg, flags)
SOCKET_CALL(int, sendmmsg, (int fd, struct mmsghdr *v, unsigned int n, int flags),
	    fd, v, n, flags)
SOCKET_CALL(ssize_t, recv, (int fd, void *buf, size_t n, int flags), fd, buf, n, flags)
SOCKET_CALL(ssize_t, recvfrom, (int fd, void *buf, size_t n, int flags,
				struct sockaddr *addr, socklen_t *len),
	    fd, buf, n, flags, addr, len)
