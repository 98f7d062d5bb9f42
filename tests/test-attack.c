/* SPDX-License-Identifier: MIT */
/*
 * An adversarial review of issue 11's fast paths, with real processes and
 * fds: the mark on a buffer's memfd that lets an importer answer its own
 * ATTACH (one-way ATTACH, wire version 4), the release probe taken before
 * the watch (after two free last puts in a row), and a hostile exporter on
 * the connect path. Each test says whether it pinned a bug (its fix is in
 * the commit that added the test) or a behaviour no other test covered.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"

#define SIZE (64 * 1024ull)

/* The counting exporter without attach, detach, pin or unpin: the one
 * whose memfd carries the mark. */
static const struct dmabuf_ops bare_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = tx_map,
	.unmap = tx_unmap,
	.release = tx_release,
	.mmap = tx_mmap,
	.vmap = tx_vmap,
	.vunmap = tx_vunmap,
};

static struct dmabuf *export_ops(struct dmabuf_ctx *ctx, struct test_exporter *tx,
				 const struct dmabuf_ops *ops)
{
	struct dmabuf_export_info info = {
		.exp_name = "attack", .ops = ops, .size = SIZE, .flags = O_RDWR,
		.priv = tx, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	return buf;
}

/* This process's pid namespace's vm.memfd_noexec (0 when unreadable). */
static char memfd_noexec(void)
{
	char c = '0';
	int fd = open("/proc/sys/vm/memfd_noexec", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, &c, 1) != 1)
			c = '0';
		close(fd);
	}
	return c;
}

/* Whether a memfd made here can carry the mark and an importer here
 * trusts it (Linux 6.3, vm.memfd_noexec < 2). */
static bool kernel_marks(void)
{
	int fd = memfd_create("probe", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);

	if (fd < 0)
		return false;
	close(fd);
	return memfd_noexec() != '2';
}

static bool fd_marked(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return dmb_memfd_attach_known(fcntl(fd, F_GET_SEALS), st.st_mode);
}

static int reopen(int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags | O_CLOEXEC);
}

/* ---- 1. the mark ------------------------------------------------------------ */

/* Not a bug: a holder of a buffer's fd (or of a reopened file of its
 * memfd) can neither forge the mark on an exporter's file that has an
 * attach op, nor strip it from one that has none: F_SEAL_SEAL stops the
 * F_SEAL_EXEC a forger needs, F_SEAL_EXEC the chmod a stripper needs. */
static void holders_cannot_forge_or_strip_the_mark(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 }, bx = { 0 };
	struct dmabuf *with_op, *bare;
	int fd, bfd, rw;

	if (!kernel_marks()) {
		dmabuf_ctx_destroy(ctx);
		skip();
	}
	with_op = tx_export(ctx, &tx, SIZE, O_RDWR, DMABUF_ALLOC_SYSTEM);
	bare = export_ops(ctx, &bx, &bare_ops);
	fd = dmabuf_fd(with_op, O_CLOEXEC);
	bfd = dmabuf_fd(bare, O_CLOEXEC);
	assert_true(fd >= 0 && bfd >= 0);
	assert_false(fd_marked(fd));
	assert_true(fd_marked(bfd));

	/* forging: clear the exec bits (allowed) and seal them (refused) */
	assert_int_equal(fchmod(fd, 0600), 0);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_EXEC), -1);
	assert_int_equal(errno, EPERM);
	rw = reopen(fd, O_RDWR);
	assert_true(rw >= 0);
	assert_int_equal(fcntl(rw, F_ADD_SEALS, F_SEAL_EXEC), -1);
	assert_false(fd_marked(rw));
	close(rw);
	assert_false(fd_marked(fd));

	/* stripping: set an exec bit (refused), through a reopen too */
	assert_int_equal(fchmod(bfd, 0755), -1);
	assert_int_equal(errno, EPERM);
	rw = reopen(bfd, O_RDWR);
	assert_true(rw >= 0);
	assert_int_equal(fchmod(rw, 0700), -1);
	close(rw);
	assert_true(fd_marked(bfd));

	close(fd);
	close(bfd);
	assert_int_equal(dmabuf_put(with_op), 0);
	assert_int_equal(dmabuf_put(bare), 0);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release + bx.release, 2);
}

/*
 * Bug: vm.memfd_noexec is per pid namespace, and at 2 every memfd is made
 * MFD_NOEXEC_SEAL whatever the flags (MFD_EXEC is refused). An exporter in
 * such a namespace (a container) then marks the memfd of a buffer whose
 * exporter has an attach op, and an importer in a namespace at 0 or 1
 * trusted it: its dmabuf_attach() went one-way and returned 0 although the
 * exporter's attach op refused (the refusal came from the first map). The
 * importer can only read its own namespace's setting, so the exporter, who
 * knows its own, must not agree to version 4 when its marks say nothing.
 */
struct ns_env {
	int sock;
};

static int ns_exporter(void *arg)
{
	const struct ns_env *env = arg;
	struct test_exporter tx = { .refuse_attach = -EBUSY };
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	int sys, fd;

	/* this process is the new namespace's init: its setting is its own */
	sys = open("/proc/sys/vm/memfd_noexec", O_WRONLY | O_CLOEXEC);
	if (sys < 0 || write(sys, "2", 1) != 1 || memfd_noexec() != '2') {
		if (sys >= 0)
			close(sys);
		child_check(dmabuf_send_fd(env->sock, -1, "s", 1) == 0);
		return 0;
	}
	close(sys);
	ctx = tx_ctx_new(0);
	child_check(ctx);
	buf = tx_export(ctx, &tx, SIZE, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	child_check(fd >= 0);
	child_check(dmabuf_send_fd(env->sock, fd, "f", 1) == 0);
	close(fd);
	child_check(tx_wait_byte(env->sock, ctx) == 'q');
	child_check(dmabuf_put(buf) == 0);
	dmabuf_ctx_destroy(ctx);
	child_check(tx.attach >= 1 && tx.release == 1);
	return 0;
}

static int ns_parent(void *arg)
{
	if (unshare(CLONE_NEWPID) < 0) {
		const struct ns_env *env = arg;

		child_check(dmabuf_send_fd(env->sock, -1, "s", 1) == 0);
		return 0;
	}
	return harness_wait(harness_fork(ns_exporter, arg));
}

static void exporter_in_a_noexec_namespace_keeps_the_round_trip(void **state)
{
	struct ns_env env;
	struct dmabuf_ctx *imp;
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmabuf *buf;
	int sv[2], fd = -1;
	char c = 0;
	size_t len;
	pid_t pid;

	if (!kernel_marks())
		skip();
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork(ns_parent, &env);
	close(sv[1]);
	assert_int_equal(dmabuf_recv_fd(sv[0], &fd, &c, 1, &len), 0);
	if (c == 's') {
		/* no new pid namespace here (not root, or a seccomp filter) */
		assert_int_equal(harness_wait(pid), 0);
		close(sv[0]);
		skip();
	}
	assert_true(fd >= 0);
	/* the namespace's memfds are all sealed so: this one says nothing */
	assert_true(fd_marked(fd));
	imp = tx_ctx_new(0);
	dev = tx_device(imp, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	assert_int_equal(dmabuf_get(imp, fd, &buf), 0);
	/* the exporter's attach op refuses, and the attach says so */
	assert_int_equal(dmabuf_attach(buf, dev, &att), -EBUSY);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(imp);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(harness_wait(pid), 0);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(holders_cannot_forge_or_strip_the_mark),
		harness_test(exporter_in_a_noexec_namespace_keeps_the_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
