/* SPDX-License-Identifier: MIT */
/*
 * One fd passed over a unix socket as the uapi suites and their peer
 * processes pass it: one byte with SCM_RIGHTS. Nothing of the harness
 * here, so that the peers (plain programs, no CMocka) share it too.
 */
#pragma once

#include <string.h>
#include <sys/socket.h>

/* One byte with @fd attached (SCM_RIGHTS): 0, or -1 (errno set). */
static inline int uapi_send_fd(int sock, int fd)
{
	char c = 'f';
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &c, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == 1 ? 0 : -1;
}

/* The fd of one uapi_send_fd() message (close-on-exec), or -1. */
static inline int uapi_recv_fd(int sock)
{
	char c, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &c, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int fd = -1;

	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&m);
	if (cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}
