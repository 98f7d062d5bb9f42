/* SPDX-License-Identifier: MIT */
/*
 * The full buffer hand-off cycle, N times, for tests/check-syscalls.py to
 * count under `strace -f -c`: the parent exports a buffer and sends its fd;
 * the child (another process) receives it, imports it (dmabuf_get), attaches
 * a device, maps, unmaps, detaches, puts and closes it, then replies one
 * byte; the parent drops its reference and fd and serves its context until
 * ops->release has run (back to idle). The parent serves from its own poll
 * loop (dmabuf_ctx_dispatch), so every syscall is on one thread per process.
 *
 * With "steady" the consumer already holds an import of the one buffer the
 * parent keeps (a swapchain buffer coming back for a new frame): per cycle
 * the parent sends its fd, the child receives it, dmabuf_get finds the
 * proxy, attach, map, unmap, detach, put, close, reply; nothing is exported
 * or released per cycle (bench-handoff's steady kind).
 *
 * With "steady-wait" the same, but the parent is served by
 * dmabuf_ctx_dispatch_timeout(-1) alone until the cycle's unmap ran, then
 * reads the reply blocking (what a wake-up of that call costs).
 *
 * With "sent" the full cycle, but the parent closes its fd as soon as it is
 * sent (as a program that hands the fd on and keeps only the buffer does):
 * the consumer's closes are done when the parent puts, so the put itself
 * releases (bench-handoff's libdmabuf_sent kind).
 *
 * usage: syscall-cycle N [steady|steady-wait|sent]   (exit 0 when all N cycles completed
 * correctly). The checker runs it for two N and divides the difference of
 * the counts by the difference of N, so set-up and tear-down cancel out.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf.h"
#include "dmabuf-scm.h"
#include "syscall-common.h"

static int consumer(int sock, unsigned long n, bool steady)
{
	struct dmabuf_device_info di = { .name = "consumer" };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *held = NULL;
	int held_fd = -1;

	CHECK(dmabuf_ctx_new(NULL, &ctx));
	CHECK(dmabuf_device_new(ctx, &di, &dev));
	if (steady) {
		size_t len;
		uint8_t pl[8];

		CHECK(dmabuf_recv_fd(sock, &held_fd, pl, sizeof(pl), &len));
		CHECK(dmabuf_get(ctx, held_fd, &held));
		if (write(sock, "", 1) != 1)
			return 1;
	}
	for (unsigned long i = 0; i < n; i++) {
		struct dmabuf *buf;
		uint8_t pl[8];
		size_t len;
		int fd;

		CHECK(dmabuf_recv_fd(sock, &fd, pl, sizeof(pl), &len));
		CHECK(dmabuf_get(ctx, fd, &buf));
		if (dmabuf_get_size(buf) != SIZE || (steady && buf != held))
			return 1;
		if (device_cycle(buf, dev))
			return 1;
		CHECK(dmabuf_put(buf));
		close(fd);
		if (write(sock, "", 1) != 1)
			return 1;
	}
	if (held) {
		CHECK(dmabuf_put(held));
		close(held_fd);
	}
	CHECK(dmabuf_device_destroy(dev));
	return dmabuf_ctx_destroy(ctx) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 10;
	bool wait = argc > 2 && !strcmp(argv[2], "steady-wait");
	bool steady = wait || (argc > 2 && !strcmp(argv[2], "steady"));
	bool sent = argc > 2 && !strcmp(argv[2], "sent");
	struct dmabuf_export_info info = {
		.exp_name = "syscall-cycle", .ops = &ops, .size = SIZE,
		.flags = O_RDWR, .priv = &priv_state,
		.alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf_ctx *ctx;
	int sock;
	pid_t pid;

	pid = fork_peer(&sock);
	if (pid == 0)
		_exit(consumer(sock, n, steady));
	CHECK(dmabuf_ctx_new(NULL, &ctx));
	if (steady) {
		struct dmabuf *buf;
		int fd;

		CHECK(dmabuf_export(ctx, &info, &buf));
		fd = dmabuf_fd(buf, O_CLOEXEC);
		CHECK(fd);
		CHECK(dmabuf_send_fd(sock, fd, "hold", 5));
		serve(ctx, sock, true, 0);
		for (unsigned long i = 0; i < n; i++) {
			unsigned long unmaps0 = unmaps;

			CHECK(dmabuf_send_fd(sock, fd, "cycle", 6));
			if (!wait) {
				serve(ctx, sock, true, 0);
				continue;
			}
			/* steady-wait: served by dmabuf_ctx_dispatch_timeout()
			 * alone until the UNMAP (sent with the DETACH) ran, then
			 * the consumer's byte read blocking */
			while (unmaps == unmaps0)
				CHECK(dmabuf_ctx_dispatch_timeout(ctx, -1));
			char c;

			if (read(sock, &c, 1) != 1)
				exit(1);
		}
		CHECK(dmabuf_put(buf));
		close(fd);
		/* The consumer's last put, then the release. */
		serve(ctx, sock, false, 1);
		n = 1;
		goto done;
	}
	for (unsigned long i = 0; i < n; i++) {
		struct dmabuf *buf;
		int fd;

		CHECK(dmabuf_export(ctx, &info, &buf));
		fd = dmabuf_fd(buf, O_CLOEXEC);
		CHECK(fd);
		CHECK(dmabuf_send_fd(sock, fd, "cycle", 6));
		if (sent)
			close(fd);
		serve(ctx, sock, true, 0);
		CHECK(dmabuf_put(buf));
		if (!sent)
			close(fd);
		serve(ctx, sock, false, i + 1);
	}
done:
	close(sock);
	if (!peer_ok(pid))
		return 1;
	return dmabuf_ctx_destroy(ctx) == 0 && releases == n ? 0 : 1;
}
