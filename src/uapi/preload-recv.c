/* SPDX-License-Identifier: MIT */
/*
 * fds received over SCM_RIGHTS (recvmsg, recvmmsg and their syscall()
 * forms): a gate through which an emulated file reaches the program from
 * another process, so every fd received is tagged, and one the layer
 * receives for itself is placed among its own. Apart because it is the one
 * family whose new fds arrive inside another object (the control data).
 */
#include <stdbool.h>
#include <sys/socket.h>

#include "preload-int.h"

REAL(recvmsg, ssize_t, int, struct msghdr *, int)
REAL(recvmmsg, int, int, struct mmsghdr *, unsigned int, int, struct timespec *)

enum received { RECEIVED_LAYER, RECEIVED_API, RECEIVED_PROGRAM };

/* The SCM_RIGHTS fds of a received message: the layer's own are moved up;
 * the others may be emulated ones and are tagged. The program's make the
 * process active. */
static void received_fds(struct msghdr *msg, int flags, enum received whose)
{
	struct cmsghdr *c;
	bool any = false;

	if (!msg || !msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr))
		return;
	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		int *fds = (int *)CMSG_DATA(c), i;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (i = 0; i < (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)); i++) {
			if (whose == RECEIVED_LAYER)
				fds[i] = dmb_layer_fd(fds[i], flags & MSG_CMSG_CLOEXEC);
			else if (whose == RECEIVED_API)
				dmb_preload_fd_tag_active(fds[i]);
			else
				dmb_preload_fd_tag(fds[i]);
			any = true;
		}
	}
	if (any && whose == RECEIVED_PROGRAM)
		dmb_preload_activate();
}

static enum received receiver(const void *ra)
{
	if (!dmb_preload_from_layer(ra))
		return RECEIVED_PROGRAM;
	return dmb_preload_layer_owned(ra) ? RECEIVED_LAYER : RECEIVED_API;
}

void dmb_preload_received_msg(ssize_t ret, struct msghdr *msg, int flags, const void *ra)
{
	if (ret >= 0 && msg && msg->msg_controllen)
		received_fds(msg, flags, receiver(ra));
}

void dmb_preload_received_mmsg(struct mmsghdr *v, long n, int flags, const void *ra)
{
	enum received whose;

	if (n <= 0)
		return;
	/* The library's endpoint reads its requests this way; what it
	 * receives stays where it falls (only recvmsg moves the layer's). */
	whose = receiver(ra);
	if (whose == RECEIVED_LAYER)
		return;
	for (long i = 0; i < n; i++)
		if (v[i].msg_hdr.msg_controllen)
			received_fds(&v[i].msg_hdr, flags, whose);
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t ret;

	/* An emulated file is no socket (sockops.c). */
	if (dmb_preload_not_a_socket(fd, __builtin_return_address(0)))
		return -1;
	ret = get_recvmsg()(fd, msg, flags);

	dmb_preload_received_msg(ret, msg, flags, __builtin_return_address(0));
	return ret;
}

EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t)
{
	int ret;

	if (dmb_preload_not_a_socket(fd, __builtin_return_address(0)))
		return -1;
	ret = get_recvmmsg()(fd, v, n, flags, t);

	dmb_preload_received_mmsg(v, ret, flags, __builtin_return_address(0));
	return ret;
}
