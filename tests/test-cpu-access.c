/* SPDX-License-Identifier: MIT */
/* CPU access: brackets, mmap, vmap, the SYNC ioctl rules, read-only
 * enforcement and strict mode. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "exporter.h"

#define SZ (8 * 4096)

static void begin_end_pairing(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);

	/* dma_buf_end_cpu_access() keeps no brackets: an END without a START
	 * goes to the exporter's op, which decides (this one accepts) */
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(tx.end, 1);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_NONE), -EINVAL);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_NONE), -EINVAL);
	assert_int_equal(tx.begin, 0);
	assert_int_equal(tx.end, 1);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE), 0); /* read */
	assert_int_equal(tx.begin, 1);
	/* a write was never begun: the exporter's op decides again */
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(tx.end, 4);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(tx.begin, 2);
	assert_int_equal(tx.end, 5);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void sync_ioctl_flag_rules(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC), nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

	/* DMA_BUF_IOCTL_SYNC: unknown bits, or neither READ nor WRITE */
	assert_int_equal(dmabuf_fd_sync(ctx, fd, 8), -EINVAL);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_START), -EINVAL);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END), -EINVAL);
	/* END without START: the exporter's op decides (this one accepts) */
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_READ), 0);
	assert_int_equal(tx.end, 1);
	tx.end = 0;
	assert_int_equal(dmabuf_fd_sync(ctx, -1, DMABUF_SYNC_READ), -EBADF);
	/* DMA_BUF_IOCTL_SYNC on a file that is not a dma-buf: that file has no
	 * such ioctl, whatever the flags (-ENOTTY, before dma_buf_ioctl()'s
	 * flag checks) */
	assert_int_equal(dmabuf_fd_sync(ctx, nul, DMABUF_SYNC_READ), -ENOTTY);
	assert_int_equal(dmabuf_fd_sync(ctx, nul, 8), -ENOTTY);
	int plain = memfd_create("plain", MFD_CLOEXEC);
	assert_true(plain >= 0);
	assert_int_equal(dmabuf_fd_sync(ctx, plain, DMABUF_SYNC_READ), -ENOTTY);
	close(plain);
	/* a dma-buf this context does not know: the documented limit */
	struct dmabuf_ctx *other = tx_ctx_new(0);
	struct test_exporter otx = { 0 };
	struct dmabuf *obuf = tx_export(other, &otx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int ofd = dmabuf_fd(obuf, O_CLOEXEC);
	assert_int_equal(dmabuf_fd_sync(ctx, ofd, DMABUF_SYNC_READ), -EINVAL);
	assert_int_equal(otx.begin, 0);
	close(ofd);
	assert_int_equal(dmabuf_put(obuf), 0);
	dmabuf_ctx_destroy(other);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_START | DMABUF_SYNC_RW), 0);
	assert_int_equal(tx.begin, 1);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_RW), 0);
	assert_int_equal(tx.end, 1);
	/* the fd alone is enough (no library reference left) */
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_START | DMABUF_SYNC_WRITE), 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_WRITE), 0);
	close(nul);
	close(fd);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 1);
}

static void mmap_bounds_and_ops(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_ops nommap = tx_ops;
	struct dmabuf_export_info info = {
		.ops = &nommap, .size = SZ, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf *b2;
	uint8_t *p, *q;

	assert_int_equal(dmabuf_mmap(buf, 0, SZ + 1, PROT_READ, (void **)&p), -EINVAL);
	assert_int_equal(dmabuf_mmap(buf, 4096, SZ, PROT_READ, (void **)&p), -EINVAL);
	assert_int_equal(dmabuf_mmap(buf, 100, 4096, PROT_READ, (void **)&p), -EINVAL);
	assert_int_equal(dmabuf_mmap(buf, 0, 0, PROT_READ, (void **)&p), -EINVAL);
	assert_int_equal(dmabuf_mmap(buf, UINT64_MAX & ~4095ull, 4096, PROT_READ, (void **)&p), -EINVAL);
	assert_int_equal(dmabuf_mmap(buf, 0, 4096, PROT_EXEC, (void **)&p), -EINVAL);
	assert_int_equal(tx.mmap, 0);
	assert_int_equal(dmabuf_mmap(buf, 4096, 4096, PROT_READ | PROT_WRITE, (void **)&p), 0);
	assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ, (void **)&q), 0);
	assert_int_equal(tx.mmap, 2);
	p[10] = 0x42;
	assert_int_equal(q[4096 + 10], 0x42); /* same pages */
	assert_int_equal(dmabuf_munmap(buf, p, 2 * 4096), -EINVAL); /* wrong length */
	assert_int_equal(dmabuf_munmap(buf, p, 4096), 0);
	assert_int_equal(dmabuf_munmap(buf, p, 4096), -EINVAL);
	assert_int_equal(dmabuf_munmap(buf, q, SZ), 0);
	/* no mmap op: -EINVAL, as dma_buf_mmap() */
	nommap.mmap = NULL;
	assert_int_equal(dmabuf_export(ctx, &info, &b2), 0);
	assert_int_equal(dmabuf_mmap(b2, 0, SZ, PROT_READ, (void **)&p), -EINVAL);
	assert_int_equal(dmabuf_put(b2), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void vmap_is_refcounted(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_ops novmap = tx_ops;
	struct dmabuf_export_info info = {
		.ops = &novmap, .size = SZ, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf *b2;
	uint8_t *v1, *v2, *m;
	int other;

	assert_int_equal(dmabuf_vmap(buf, (void **)&v1), 0);
	assert_int_equal(dmabuf_vmap(buf, (void **)&v2), 0);
	assert_ptr_equal(v1, v2);
	assert_int_equal(tx.vmap, 1);
	assert_int_equal(dmabuf_vunmap(buf, &other), -EINVAL);
	v1[SZ - 1] = 0x77;
	assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ, (void **)&m), 0);
	assert_int_equal(m[SZ - 1], 0x77);
	assert_int_equal(dmabuf_munmap(buf, m, SZ), 0);
	assert_int_equal(dmabuf_vunmap(buf, v1), 0);
	assert_int_equal(tx.vunmap, 0);
	assert_int_equal(dmabuf_vunmap(buf, v1), 0);
	assert_int_equal(tx.vunmap, 1);
	assert_int_equal(dmabuf_vunmap(buf, v1), -EINVAL);
	novmap.vmap = NULL;
	assert_int_equal(dmabuf_export(ctx, &info, &b2), 0);
	assert_int_equal(dmabuf_vmap(b2, (void **)&v1), -EINVAL);
	assert_int_equal(dmabuf_put(b2), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void read_only_stays_read_only(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDONLY, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC), rw;
	char path[64], byte = 1;
	uint8_t *v, *p;

	/* the exporter writes through its vmap */
	assert_int_equal(dmabuf_vmap(buf, (void **)&v), 0);
	v[0] = 0xab;
	assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ | PROT_WRITE, (void **)&p), -EACCES);
	/* holders of the fd cannot write, by any route, even as root */
	assert_true(mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
	assert_int_equal(write(fd, &byte, 1), -1);
	p = mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(p[0], 0xab);
	assert_int_equal(mprotect(p, SZ, PROT_READ | PROT_WRITE), -1);
	munmap(p, SZ);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rw = open(path, O_RDWR | O_CLOEXEC);
	if (rw >= 0) { /* reopening works, writing still does not */
		assert_true(mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0) == MAP_FAILED);
		assert_int_equal(pwrite(rw, &byte, 1, 0), -1);
		close(rw);
	}
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static int touch_without_bracket(void *arg)
{
	volatile uint8_t *p = arg;

	return p[0]; /* must fault in strict mode */
}

static void strict_mode_faults_outside_bracket(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(DMABUF_CTX_STRICT_CPU_ACCESS);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	uint8_t *p;

	assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ | PROT_WRITE, (void **)&p), 0);
	assert_int_equal(harness_wait(harness_fork(touch_without_bracket, p)), 128 + SIGSEGV);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_TO_DEVICE), 0);
	p[0] = 9; /* inside a write bracket: fine */
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_TO_DEVICE), 0);
	assert_int_equal(harness_wait(harness_fork(touch_without_bracket, p)), 128 + SIGSEGV);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(harness_wait(harness_fork(touch_without_bracket, p)), 9);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_munmap(buf, p, SZ), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

struct logbuf {
	char text[4096];
	size_t len;
};

static void log_to(void *data, enum dmabuf_log_priority prio, const char *msg)
{
	struct logbuf *l = data;
	int n = snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s\n", msg);

	if (n > 0 && l->len + (size_t)n < sizeof(l->text))
		l->len += (size_t)n;
}

/* Strict CPU-access mode keeps the bracket check the kernel does not make:
 * END without a matching START is -EINVAL, the exporter's op does not run,
 * and a log line says why. Directions pair as the kernel's: a
 * BIDIRECTIONAL bracket is ended by one BIDIRECTIONAL END, or by a read
 * END and a write END. */
static void strict_mode_refuses_end_without_start(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(DMABUF_CTX_STRICT_CPU_ACCESS);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	struct logbuf log = { 0 };

	dmabuf_ctx_set_log(ctx, log_to, &log, DMABUF_LOG_ERROR);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), -EINVAL);
	assert_int_equal(tx.end, 0);
	assert_non_null(strstr(log.text, "without a matching begin"));
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_WRITE), -EINVAL);
	assert_int_equal(tx.end, 0);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), -EINVAL);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_TO_DEVICE), -EINVAL);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_START | DMABUF_SYNC_READ), 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_START | DMABUF_SYNC_WRITE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(tx.begin, 3);
	assert_int_equal(tx.end, 3);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(begin_end_pairing),
		harness_test(sync_ioctl_flag_rules),
		harness_test(mmap_bounds_and_ops),
		harness_test(vmap_is_refcounted),
		harness_test(read_only_stays_read_only),
		harness_test(strict_mode_faults_outside_bracket),
		harness_test(strict_mode_refuses_end_without_start),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
