/* SPDX-License-Identifier: MIT */
/*
 * Remote device calls served by the exporter's service thread, N times, for
 * tests/check-service-syscalls.py to count under `strace -f`: the parent
 * exports a buffer and starts its context's service thread
 * (dmabuf_ctx_start_thread), then only waits for the child; the child (another
 * process) imports the buffer and makes one warm-up cycle, then N cycles of
 * dmabuf_attach, dmabuf_map_attachment, dmabuf_unmap_attachment and
 * dmabuf_detach, each map checked. The checker divides the difference of
 * two runs' totals (every thread of both processes) by the difference of
 * their N, so start-up and tear-down cancel out and what is left is the
 * importer's calls and the service thread's per cycle.
 *
 * usage: syscall-service N   (exit 0 when every cycle worked and the
 * buffer was released)
 */
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "dmabuf-scm.h"
#include "syscall-common.h"

static int child(int sock, unsigned int n)
{
	struct dmabuf_device_info di = { .name = "syscall-service" };
	struct dmabuf_device *dev;
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	uint8_t pl[8];
	size_t len;
	int fd;

	CHECK(dmabuf_ctx_new(NULL, &ctx));
	CHECK(dmabuf_device_new(ctx, &di, &dev));
	CHECK(dmabuf_recv_fd(sock, &fd, pl, sizeof(pl), &len));
	CHECK(dmabuf_get(ctx, fd, &buf));
	for (unsigned int i = 0; i < n + 1; i++)
		if (device_cycle(buf, dev))
			return 1;
	CHECK(dmabuf_put(buf));
	close(fd);
	CHECK(dmabuf_device_destroy(dev));
	CHECK(dmabuf_ctx_destroy(ctx));
	return 0;
}

int main(int argc, char **argv)
{
	struct dmabuf_export_info info = {
		.exp_name = "syscall-service", .ops = &ops, .size = SIZE,
		.flags = O_RDWR, .priv = &priv_state, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	unsigned int n = argc > 1 ? (unsigned int)atoi(argv[1]) : 10;
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	int sock, fd;
	pid_t pid;

	CHECK(dmabuf_ctx_new(NULL, &ctx));
	CHECK(dmabuf_export(ctx, &info, &buf));
	fd = dmabuf_fd(buf, O_CLOEXEC);
	CHECK(fd);
	CHECK(dmabuf_ctx_start_thread(ctx));
	pid = fork_peer(&sock);
	if (pid == 0)
		_exit(child(sock, n));
	CHECK(dmabuf_send_fd(sock, fd, "svc", 4));
	if (!peer_ok(pid)) {
		fprintf(stderr, "importer failed\n");
		return 1;
	}
	close(fd);
	CHECK(dmabuf_put(buf));
	/* The importer's fds died with it: the service thread sees the last
	 * one go. */
	for (int i = 0; i < 5000 && !releases; i++)
		usleep(1000);
	CHECK(dmabuf_ctx_stop_thread(ctx));
	CHECK(dmabuf_ctx_destroy(ctx));
	close(sock);
	if (!releases) {
		fprintf(stderr, "the buffer was not released\n");
		return 1;
	}
	return 0;
}
