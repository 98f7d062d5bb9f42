/* SPDX-License-Identifier: MIT */
/*
 * Buffers and fences: EXPORT/IMPORT_SYNC_FILE rules, the waits in CPU access
 * and map, poll readiness, and fences crossing processes through proxies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "exporter.h"

#define MiB (1024ull * 1024)

static bool fd_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void sync_file_flag_rules(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;
	int fd, nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

	/* EXPORT/IMPORT_SYNC_FILE: flags empty or outside READ|WRITE */
	assert_int_equal(dmabuf_export_sync_file(buf, 0), -EINVAL);
	assert_int_equal(dmabuf_export_sync_file(buf, DMABUF_SYNC_END), -EINVAL);
	assert_int_equal(dmabuf_export_sync_file(buf, 8), -EINVAL);
	assert_int_equal(dmabuf_timeline_new("t", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &f), 0);
	fd = dmabuf_sync_file_export(f);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_import_sync_file(buf, 0, fd), -EINVAL);
	assert_int_equal(dmabuf_import_sync_file(buf, 4, fd), -EINVAL);
	/* an fd that is not a sync file */
	assert_int_equal(dmabuf_import_sync_file(buf, DMABUF_SYNC_WRITE, nul), -EINVAL);
	/* dma_buf_import_sync_file(): sync_file_get_fence() finds no fence
	 * for a bad fd either, and that is -EINVAL too */
	assert_int_equal(dmabuf_import_sync_file(buf, DMABUF_SYNC_WRITE, -1), -EINVAL);
	{
		char path[64];
		int opath;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		opath = open(path, O_PATH | O_CLOEXEC);
		assert_true(opath >= 0);
		assert_int_equal(dmabuf_import_sync_file(buf, DMABUF_SYNC_WRITE, opath), -EINVAL);
		close(opath);
	}
	close(fd);
	/* no fences: an already signalled sync file */
	fd = dmabuf_export_sync_file(buf, DMABUF_SYNC_RW);
	assert_true(fd >= 0);
	assert_true(fd_readable(fd));
	close(fd);
	dmabuf_fence_put(f);
	dmabuf_timeline_destroy(tl);
	close(nul);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void read_and_write_fences(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *w, *r;
	int wfd, rfd, fd;

	assert_int_equal(dmabuf_timeline_new("gpu", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &w), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 2, &r), 0);
	wfd = dmabuf_sync_file_export(w);
	rfd = dmabuf_sync_file_export(r);
	/* a reader's fence: writers must wait for it, readers need not */
	assert_int_equal(dmabuf_import_sync_file(buf, DMABUF_SYNC_READ, rfd), 0);
	assert_int_equal(dmabuf_poll(buf, POLLIN | POLLOUT), POLLIN);
	fd = dmabuf_export_sync_file(buf, DMABUF_SYNC_READ);
	assert_true(fd_readable(fd));
	close(fd);
	fd = dmabuf_export_sync_file(buf, DMABUF_SYNC_WRITE);
	assert_false(fd_readable(fd));
	close(fd);
	/* a writer's fence: everybody waits */
	assert_int_equal(dmabuf_import_sync_file(buf, DMABUF_SYNC_WRITE, wfd), 0);
	assert_int_equal(dmabuf_poll(buf, POLLIN | POLLOUT), 0);
	fd = dmabuf_export_sync_file(buf, DMABUF_SYNC_READ);
	assert_false(fd_readable(fd));
	assert_int_equal(dmabuf_timeline_inc(tl, 1), 0); /* writer done */
	assert_int_equal(dmabuf_sync_file_wait(fd, 1000), 1);
	close(fd);
	assert_int_equal(dmabuf_poll(buf, POLLIN | POLLOUT), POLLIN);
	assert_int_equal(dmabuf_timeline_inc(tl, 1), 0); /* reader done */
	assert_int_equal(dmabuf_poll(buf, POLLIN | POLLOUT), POLLIN | POLLOUT);
	close(wfd);
	close(rfd);
	dmabuf_fence_put(w);
	dmabuf_fence_put(r);
	dmabuf_timeline_destroy(tl);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

struct delayed_inc {
	struct dmabuf_timeline *tl;
	int ms;
};

static void *inc_later(void *arg)
{
	struct delayed_inc *d = arg;

	usleep((useconds_t)d->ms * 1000);
	dmabuf_timeline_inc(d->tl, 1);
	return NULL;
}

static void begin_cpu_access_waits_for_writers(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct delayed_inc d = { .ms = 50 };
	struct dmabuf_fence *w;
	pthread_t th;

	assert_int_equal(dmabuf_timeline_new("render", &d.tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(d.tl, 1, &w), 0);
	assert_int_equal(dmabuf_resv_add_fence(dmabuf_get_resv(buf), w, DMABUF_RESV_USAGE_WRITE), 0);
	assert_int_equal(pthread_create(&th, NULL, inc_later, &d), 0);
	/* a CPU read must not start before the writer signalled */
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_true(dmabuf_fence_is_signaled(w));
	assert_int_equal(tx.begin, 1);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	pthread_join(th, NULL);
	dmabuf_fence_put(w);
	dmabuf_timeline_destroy(d.tl);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void map_waits_for_kernel_fences(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct delayed_inc d = { .ms = 50 };
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_fence *move;
	pthread_t th;

	assert_int_equal(dmabuf_timeline_new("migrate", &d.tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(d.tl, 1, &move), 0);
	assert_int_equal(dmabuf_resv_add_fence(dmabuf_get_resv(buf), move, DMABUF_RESV_USAGE_KERNEL), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(pthread_create(&th, NULL, inc_later, &d), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_true(dmabuf_fence_is_signaled(move)); /* the move finished first */
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	pthread_join(th, NULL);
	dmabuf_fence_put(move);
	dmabuf_timeline_destroy(d.tl);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void importer_fences_reach_the_exporter(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *w;
	struct dmabuf *proxy;
	int fd = dmabuf_fd(buf, O_CLOEXEC), wfd, efd;

	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	assert_int_equal(dmabuf_timeline_new("importer", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &w), 0);
	wfd = dmabuf_sync_file_export(w);
	/* the importer's write fence lands in the exporter's resv */
	assert_int_equal(dmabuf_import_sync_file(proxy, DMABUF_SYNC_WRITE, wfd), 0);
	assert_int_equal(dmabuf_poll(buf, POLLIN), 0);
	/* and the importer reads the exporter's (authoritative) fences */
	efd = dmabuf_export_sync_file(proxy, DMABUF_SYNC_READ);
	assert_true(efd >= 0);
	assert_false(fd_readable(efd));
	assert_int_equal(dmabuf_import_sync_file(proxy, DMABUF_SYNC_WRITE, fd), -EINVAL);
	assert_int_equal(dmabuf_export_sync_file(proxy, 0), -EINVAL);
	assert_int_equal(dmabuf_timeline_inc(tl, 1), 0);
	assert_int_equal(dmabuf_sync_file_wait(efd, 2000), 1);
	assert_int_equal(dmabuf_poll(buf, POLLIN), POLLIN);
	close(efd);
	close(wfd);
	dmabuf_fence_put(w);
	dmabuf_timeline_destroy(tl);
	assert_int_equal(dmabuf_put(proxy), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
}

/* A child that imports the buffer, attaches a write fence it never
 * signals, and waits to be killed. */
static int fence_then_die(void *arg)
{
	int sock = *(int *)arg, fd, wfd;
	struct dmabuf_ctx *ctx;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *w;
	struct dmabuf *proxy;
	size_t len;
	char c;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	child_check(dmabuf_recv_fd(sock, &fd, &c, 1, &len) == 0);
	child_check(dmabuf_get(ctx, fd, &proxy) == 0);
	child_check(dmabuf_timeline_new("doomed", &tl) == 0);
	child_check(dmabuf_timeline_create_fence(tl, 1, &w) == 0);
	wfd = dmabuf_sync_file_export(w);
	child_check(wfd >= 0);
	child_check(dmabuf_import_sync_file(proxy, DMABUF_SYNC_WRITE, wfd) == 0);
	child_check(dmabuf_send_fd(sock, -1, "f", 1) == 0);
	for (int i = 0; i < 300; i++)
		usleep(100000);
	return 1;
}

static void dead_signaller_does_not_hang_waiters(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int sv[2], fd = dmabuf_fd(buf, O_CLOEXEC), child_sock, efd, got = -1;
	struct dmabuf_sync_fence_info info[4];
	size_t len;
	pid_t pid;
	char c = 0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	child_sock = sv[1];
	pid = harness_fork_sock(fence_then_die, &child_sock, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "b", 1), 0);
	for (int i = 0; i < 3000 && !fd_readable(sv[0]); i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(dmabuf_recv_fd(sv[0], &got, &c, 1, &len), 0);
	assert_int_equal(c, 'f');
	assert_int_equal(dmabuf_poll(buf, POLLIN), 0); /* the child's write is pending */
	kill(pid, SIGKILL);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	/* The fence's signaller is gone: waiters wake with an error instead
	 * of hanging, and CPU access goes ahead. */
	efd = dmabuf_export_sync_file(buf, DMABUF_SYNC_READ);
	assert_int_equal(dmabuf_sync_file_wait(efd, 5000), 1);
	int status = 0;
	assert_true(dmabuf_sync_file_info(efd, &status, info, 4) >= 0);
	assert_true(status < 0);
	close(efd);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	for (int i = 0; i < 20; i++)
		dmabuf_ctx_dispatch_timeout(exp, 2);
	close(sv[0]);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 1);
}

int main(void)
{
	/* fork-based tests first: valgrind reports threads' memory in
	 * children forked after them */
	const struct CMUnitTest tests[] = {
		harness_test(dead_signaller_does_not_hang_waiters),
		harness_test(sync_file_flag_rules),
		harness_test(read_and_write_fences),
		harness_test(importer_fences_reach_the_exporter),
		harness_test(begin_cpu_access_waits_for_writers),
		harness_test(map_waits_for_kernel_fences),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
