/* SPDX-License-Identifier: MIT */
/*
 * The round-trip remote MAP, N times, for tests/check-rtmap-syscalls.py to
 * count under `strace -f`: the parent exports a buffer whose map op is its
 * own (a wrapper of dmabuf_backing_map() that counts its calls), so the
 * importer's cache of the exporter's table does not apply and every MAP
 * asks the exporter (docs/design.md §6); the child (another process)
 * imports it, makes one warm-up cycle, then N cycles of dmabuf_attach,
 * dmabuf_map_attachment, dmabuf_unmap_attachment and dmabuf_detach, each
 * table checked, and writes one byte. The parent serves it from its own
 * poll loop and dmabuf_ctx_dispatch() ("dispatch"), or with the service
 * thread ("thread"). The checker divides the difference of two runs'
 * totals (every thread of both processes) by the difference of their N.
 *
 * usage: syscall-rtmap N dispatch|thread   (exit 0 when every cycle worked,
 * every MAP reached the exporter's map op and the buffer was released)
 */
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "dmabuf-scm.h"
#include "syscall-common.h"

static unsigned long rt_maps;

static int op_map_rt(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		     struct dmabuf_sg_table **sgt)
{
	__atomic_add_fetch(&rt_maps, 1, __ATOMIC_RELAXED);
	return dmabuf_backing_map(att, dir, sgt);
}

static const struct dmabuf_ops rt_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = op_map_rt,
	.unmap = op_unmap,
	.release = op_release,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

static int child(int sock, unsigned int n)
{
	struct dmabuf_device_info di = { .name = "syscall-rtmap" };
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
	if (write(sock, "", 1) != 1)
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
		.exp_name = "syscall-rtmap", .ops = &rt_ops, .size = SIZE,
		.flags = O_RDWR, .priv = &priv_state, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	unsigned int n = argc > 1 ? (unsigned int)atoi(argv[1]) : 10;
	bool thread = argc > 2 && !strcmp(argv[2], "thread");
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	unsigned long maps;
	int sock, fd;
	pid_t pid;

	CHECK(dmabuf_ctx_new(NULL, &ctx));
	CHECK(dmabuf_export(ctx, &info, &buf));
	fd = dmabuf_fd(buf, O_CLOEXEC);
	CHECK(fd);
	if (thread)
		CHECK(dmabuf_ctx_start_thread(ctx));
	pid = fork_peer(&sock);
	if (pid == 0)
		_exit(child(sock, n));
	CHECK(dmabuf_send_fd(sock, fd, "rtm", 4));
	if (!thread)
		serve(ctx, sock, true, 0);
	if (!peer_ok(pid)) {
		fprintf(stderr, "importer failed\n");
		return 1;
	}
	close(fd);
	CHECK(dmabuf_put(buf));
	/* The importer's fds died with it: the last one's going is seen. */
	if (thread) {
		for (int i = 0; i < 5000 && !__atomic_load_n(&releases, __ATOMIC_RELAXED); i++)
			usleep(1000);
		CHECK(dmabuf_ctx_stop_thread(ctx));
	} else {
		serve(ctx, -1, false, 1);	/* poll() skips the fd -1 */
	}
	maps = __atomic_load_n(&rt_maps, __ATOMIC_RELAXED);
	CHECK(dmabuf_ctx_destroy(ctx));
	close(sock);
	if (!releases) {
		fprintf(stderr, "the buffer was not released\n");
		return 1;
	}
	/* Each MAP a round trip: none answered from the importer's cache. */
	if (maps != n + 1) {
		fprintf(stderr, "%lu calls of the exporter's map op for %u MAPs\n", maps, n + 1);
		return 1;
	}
	return 0;
}
