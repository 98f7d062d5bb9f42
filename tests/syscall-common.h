/* SPDX-License-Identifier: MIT */
/* What the syscall-count programs (syscall-*.c, run under strace by the
 * check-*-syscalls.py scripts) share: the check that ends the program on a
 * failed call, the marks that bound a counted phase, the counting exporter
 * whose buffers they hand around, the fork of the peer process, the
 * parent's poll loop and the importer's device cycle. Each helper makes
 * the same calls the programs made inline, so the counts are unchanged. */
#ifndef DMABUF_TESTS_SYSCALL_COMMON_H
#define DMABUF_TESTS_SYSCALL_COMMON_H

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

#define SIZE (64u << 10)

#define CHECK(x) do { long r_ = (long)(x); if (r_ < 0) { \
	fprintf(stderr, "%s:%d: %s = %ld\n", __FILE__, __LINE__, #x, r_); \
	exit(1); } } while (0)

/* A faccessat() of a path that cannot exist: a call the program makes
 * nowhere else, so the checks count only what lies between the two. */
#define MARK_BEGIN "/dmabuf-syscall-mark/begin"
#define MARK_END "/dmabuf-syscall-mark/end"

static inline void mark(const char *path)
{
	(void)faccessat(AT_FDCWD, path, F_OK, 0);
}

/* The exporter: the library's backing helpers, and a count of releases
 * and of unmaps. */
static unsigned long releases __attribute__((unused));
static unsigned long unmaps __attribute__((unused));
static int priv_state __attribute__((unused));

static inline void op_unmap(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
			    enum dmabuf_direction dir)
{
	unmaps++;
	dmabuf_backing_unmap(att, sgt, dir);
}

static inline void op_release(struct dmabuf *buf)
{
	(void)buf;
	releases++;
}

static const struct dmabuf_ops ops __attribute__((unused)) = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map,
	.unmap = op_unmap,
	.release = op_release,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

/* A SOCK_SEQPACKET socketpair and a fork: returns the child's pid in the
 * parent and 0 in the child, *sock being this process's end (the other
 * end closed). Ends the program on failure. */
static inline pid_t fork_peer(int *sock)
{
	int sp[2];
	pid_t pid;

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp));
	pid = fork();
	CHECK(pid);
	close(sp[pid == 0 ? 0 : 1]);
	*sock = sp[pid == 0 ? 1 : 0];
	return pid;
}

/* Whether the child pid exited with status 0 (reaped here). */
static inline bool peer_ok(pid_t pid)
{
	int status;

	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       !WEXITSTATUS(status);
}

/* Serves ctx from a poll loop (dmabuf_ctx_dispatch) until, with want_reply,
 * the peer's one-byte reply on sock is read, or else until want_releases
 * buffers have been released. */
static inline void
serve(struct dmabuf_ctx *ctx, int sock, bool want_reply,
      unsigned long want_releases)
{
	struct pollfd p[2] = {
		{ .fd = sock, .events = POLLIN },
		{ .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN },
	};

	for (;;) {
		if (!want_reply && releases >= want_releases)
			return;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			CHECK(-errno);
		}
		if (p[1].revents)
			CHECK(dmabuf_ctx_dispatch(ctx));
		if (want_reply && p[0].revents) {
			char c;

			if (read(sock, &c, 1) != 1)
				exit(1);
			want_reply = false;
		}
	}
}

/* The importer's device cycle on buf: attach dev, map (the table checked
 * to cover SIZE), unmap, detach. Returns 0, or 1 on a wrong table. */
static inline int device_cycle(struct dmabuf *buf, struct dmabuf_device *dev)
{
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;

	CHECK(dmabuf_attach(buf, dev, &att));
	CHECK(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt));
	if (dmabuf_sg_table_get_size(sgt) != SIZE)
		return 1;
	CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL));
	CHECK(dmabuf_detach(buf, att));
	return 0;
}

#endif
