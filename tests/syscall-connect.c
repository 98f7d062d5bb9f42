/* SPDX-License-Identifier: MIT */
/*
 * A first import including connect and handshake, N times, for
 * tests/check-connect-syscalls.py to count under `strace -f`: the `connect`
 * kind of bench/bench-handoff.c. The parent exports one buffer and keeps
 * it. Per cycle the child (another process) makes a fresh context and says
 * it is ready (one byte); the parent sends the buffer's fd
 * (dmabuf_send_fd); the child receives it, imports it (dmabuf_get:
 * connect, HELLO, IMPORT), puts it, closes the fd and replies one byte,
 * then, once the parent has taken the reply, destroys the context (the
 * connection closes: the exporter's tear-down is never in the timed part). The parent serves
 * its context from its own poll loop (dmabuf_ctx_dispatch) throughout, so
 * every syscall is on one thread per process.
 *
 * Each process marks the part the benchmark times (the parent: from its
 * send to the reply; the child: from its receive to its reply) with a
 * faccessat() of a path that cannot exist (MARK_BEGIN, MARK_END), so the
 * checker counts those calls apart from the whole cycle's.
 *
 * usage: syscall-connect N   (exit 0 when all N cycles completed correctly)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf.h"
#include "dmabuf-scm.h"
#include "syscall-common.h"

static int consumer(int sock, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++) {
		struct dmabuf_ctx *ctx;
		struct dmabuf *buf;
		uint8_t pl[8];
		size_t len;
		int fd;

		CHECK(dmabuf_ctx_new(NULL, &ctx));
		if (write(sock, "", 1) != 1)	/* ready */
			return 1;
		mark(MARK_BEGIN);
		CHECK(dmabuf_recv_fd(sock, &fd, pl, sizeof(pl), &len));
		CHECK(dmabuf_get(ctx, fd, &buf));
		if (dmabuf_get_size(buf) != SIZE)
			return 1;
		CHECK(dmabuf_put(buf));
		close(fd);
		if (write(sock, "", 1) != 1)
			return 1;
		mark(MARK_END);
		if (read(sock, pl, 1) != 1)	/* the parent took the reply */
			return 1;
		CHECK(dmabuf_ctx_destroy(ctx));
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 10;
	struct dmabuf_export_info info = {
		.exp_name = "syscall-connect", .ops = &ops, .size = SIZE,
		.flags = O_RDWR, .priv = &priv_state, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	int sock, fd;
	pid_t pid;

	pid = fork_peer(&sock);
	if (pid == 0)
		_exit(consumer(sock, n));
	CHECK(dmabuf_ctx_new(NULL, &ctx));
	CHECK(dmabuf_export(ctx, &info, &buf));
	fd = dmabuf_fd(buf, O_CLOEXEC);
	CHECK(fd);
	for (unsigned long i = 0; i < n; i++) {
		serve(ctx, sock, true, 0);	/* the fresh context is ready */
		mark(MARK_BEGIN);
		CHECK(dmabuf_send_fd(sock, fd, "connect", 8));
		serve(ctx, sock, true, 0);
		mark(MARK_END);
		if (write(sock, "", 1) != 1)	/* the child may go on */
			return 1;
	}
	/* The last connection's close, then the buffer's release. */
	close(sock);
	if (!peer_ok(pid))
		return 1;
	CHECK(dmabuf_put(buf));
	close(fd);
	while (!releases) {
		struct pollfd p = { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN };

		CHECK(poll(&p, 1, -1));
		CHECK(dmabuf_ctx_dispatch(ctx));
	}
	return dmabuf_ctx_destroy(ctx) == 0 && releases == 1 ? 0 : 1;
}
