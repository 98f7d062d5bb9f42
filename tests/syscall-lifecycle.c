/* SPDX-License-Identifier: MIT */
/*
 * One buffer's whole life in one process, N times, for
 * tests/check-lifecycle-syscalls.py to count under `strace -f -c`. ORDER
 * picks the release path:
 *   put-last    dmabuf_export, dmabuf_fd, close(fd), dmabuf_put: the last
 *               put finds no holder of the file and releases at once;
 *   close-last  dmabuf_export, dmabuf_fd, dmabuf_put, close(fd): the close
 *               raises the event that dmabuf_ctx_dispatch() releases by;
 *   heap        dmabuf_heap_alloc("system"), close(fd), dispatch until
 *               released (DMA_HEAP_IOCTL_ALLOC's path).
 * From the second cycle on, each export takes the memfd the previous
 * release kept (src/core/recycle.c); with the prefix fresh- (fresh-put-last,
 * ...) the context is made with DMABUF_CTX_NO_RECYCLE, so every cycle makes
 * a new memfd, as the uapi emulation does.
 * After every cycle the program polls the context's fd once, as an event
 * loop would, and dispatches only when it is readable: what a path leaves
 * queued is counted too. Every cycle checks that ops->release ran where it
 * must (exit 1 otherwise).
 *
 * usage: syscall-lifecycle [fresh-]put-last|close-last|heap N
 * The checker runs it for two N and divides the difference of the counts by
 * the difference of N, so set-up and tear-down cancel out.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmabuf.h"
#include "syscall-common.h"

/* An event loop's turn: dispatch if (and only if) the context is ready. */
static void loop_turn(struct dmabuf_ctx *ctx)
{
	struct pollfd p = { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN };

	if (poll(&p, 1, 0) > 0)
		CHECK(dmabuf_ctx_dispatch(ctx));
}

static unsigned long live(struct dmabuf_ctx *ctx)
{
	struct dmabuf_ctx_stats st = { 0 };

	CHECK(dmabuf_ctx_get_stats(ctx, &st));
	return (unsigned long)st.buffers_live;
}

/* Serves the context until no buffer is live. The close that ended the
 * last one has queued its event before it returned, so the first dispatch
 * normally releases it; a wait (the timer's re-probe) is the exception. */
static void until_released(struct dmabuf_ctx *ctx)
{
	for (int i = 0; live(ctx); i++) {
		if (i == 1000) {
			fprintf(stderr, "no release after %d dispatches\n", i);
			exit(1);
		}
		CHECK(dmabuf_ctx_dispatch_timeout(ctx, i ? 10 : 0));
	}
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 0) : 10;
	const char *order = argc > 1 ? argv[1] : "put-last";
	bool fresh = !strncmp(order, "fresh-", 6);
	struct dmabuf_ctx_config cfg = { .flags = fresh ? DMABUF_CTX_NO_RECYCLE : 0 };
	bool put_last, heap;
	struct dmabuf_ctx *ctx;

	order += fresh ? 6 : 0;
	put_last = !strcmp(order, "put-last");
	heap = !strcmp(order, "heap");
	if (!put_last && !heap && strcmp(order, "close-last")) {
		fprintf(stderr, "usage: %s [fresh-]put-last|close-last|heap N\n", argv[0]);
		return 2;
	}
	CHECK(dmabuf_ctx_new(&cfg, &ctx));
	for (unsigned long i = 0; i < n; i++) {
		struct dmabuf_export_info info = {
			.exp_name = "syscall-lifecycle", .ops = &ops, .size = SIZE,
			.flags = O_RDWR, .priv = &priv_state,
			.alloc = DMABUF_ALLOC_SYSTEM,
		};
		struct dmabuf *buf;
		int fd;

		if (heap) {
			/* the library is the exporter: its release is counted
			 * by the context's stats */
			fd = dmabuf_heap_alloc(ctx, "system", SIZE, O_RDWR | O_CLOEXEC, 0);
			CHECK(fd);
			if (!live(ctx)) {
				fprintf(stderr, "cycle %lu: released while its fd is open\n", i);
				return 1;
			}
			close(fd);
			until_released(ctx);
			loop_turn(ctx);
			continue;
		}
		CHECK(dmabuf_export(ctx, &info, &buf));
		fd = dmabuf_fd(buf, O_CLOEXEC);
		CHECK(fd);
		if (put_last) {
			close(fd);
			CHECK(dmabuf_put(buf));
			if (releases != i + 1) {
				fprintf(stderr, "cycle %lu: no release at the last put\n", i);
				return 1;
			}
		} else {
			CHECK(dmabuf_put(buf));
			if (releases != i) {
				fprintf(stderr, "cycle %lu: released while its fd is open\n", i);
				return 1;
			}
			close(fd);
			until_released(ctx);
			if (releases != i + 1)
				return 1;
		}
		loop_turn(ctx);
	}
	return dmabuf_ctx_destroy(ctx) == 0 ? 0 : 1;
}
