/* SPDX-License-Identifier: MIT */
/* udmabuf: the driver's rules for memfds, and the buffer seeing the caller's
 * pages. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "exporter.h"

#define PG 4096

static int sealed_memfd(size_t size, int seals)
{
	int fd = memfd_create("caller", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (seals)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

static void memfd_rules(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int noshrink = sealed_memfd(4 * PG, 0);
	int wseal = sealed_memfd(4 * PG, F_SEAL_SHRINK | F_SEAL_WRITE);
	int fwseal = sealed_memfd(4 * PG, F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE);
	int ok = sealed_memfd(4 * PG, F_SEAL_SHRINK);
	int pipefd[2];

	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	assert_int_equal(dmabuf_udmabuf_create(ctx, noshrink, 0, 0, PG), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(ctx, wseal, 0, 0, PG), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(ctx, fwseal, 0, 0, PG), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(ctx, pipefd[0], 0, 0, PG), -EBADFD);
	assert_int_equal(dmabuf_udmabuf_create(ctx, -1, 0, 0, PG), -EBADFD); /* fget() fails */
	/* fget() fails on an O_PATH fd too, even of a good memfd */
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", ok);
	int opath = open(path, O_PATH | O_CLOEXEC);
	assert_true(opath >= 0);
	assert_int_equal(dmabuf_udmabuf_create(ctx, opath, 0, 0, PG), -EBADFD);
	close(opath);
	assert_int_equal(dmabuf_udmabuf_create(ctx, ok, 0, 100, PG), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(ctx, ok, 0, 0, 100), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(ctx, ok, 0, 0, 0), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(ctx, ok, 0, 2 * PG, 4 * PG), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, NULL, 1), -EINVAL);
	struct dmabuf_udmabuf_item item = { .memfd = ok, .size = PG };
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, &item, 0), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, &item,
						    DMABUF_UDMABUF_LIST_LIMIT + 1), -EINVAL);
	close(noshrink);
	close(wseal);
	close(fwseal);
	close(ok);
	close(pipefd[0]);
	close(pipefd[1]);
	dmabuf_ctx_destroy(ctx);
}

static void buffer_sees_callers_pages(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int a = sealed_memfd(4 * PG, F_SEAL_SHRINK), b = sealed_memfd(4 * PG, F_SEAL_SHRINK);
	struct dmabuf_udmabuf_item items[2] = {
		{ .memfd = a, .offset = PG, .size = 2 * PG },
		{ .memfd = b, .offset = 0, .size = PG },
	};
	uint8_t *pa = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
	uint8_t *pb = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, b, 0);
	struct dmabuf *buf;
	uint8_t *v, *m;
	int fd;

	assert_true(pa != MAP_FAILED && pb != MAP_FAILED);
	fd = dmabuf_udmabuf_create_list(ctx, DMABUF_UDMABUF_FLAGS_CLOEXEC, items, 2);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
	assert_int_equal(dmabuf_get_size(buf), 3 * PG);
	/* the caller writes its memfds; the buffer sees it, in list order */
	pa[PG] = 0x11;
	pb[0] = 0x22;
	assert_int_equal(dmabuf_vmap(buf, (void **)&v), 0);
	assert_int_equal(v[0], 0x11);
	assert_int_equal(v[2 * PG], 0x22);
	/* and the other way round */
	assert_int_equal(dmabuf_mmap(buf, 2 * PG, PG, PROT_READ | PROT_WRITE, (void **)&m), 0);
	m[1] = 0x33;
	assert_int_equal(pb[1], 0x33);
	assert_int_equal(dmabuf_munmap(buf, m, PG), 0);
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
	/* the caller's memfds stay the caller's: closing them changes nothing */
	close(a);
	close(b);
	assert_int_equal(dmabuf_vmap(buf, (void **)&v), 0);
	assert_int_equal(v[2 * PG + 1], 0x33);
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	munmap(pa, 4 * PG);
	munmap(pb, 4 * PG);
	dmabuf_ctx_destroy(ctx);
}

/* Linux 6.12's udmabuf_create() reads only UDMABUF_FLAGS_CLOEXEC from the
 * flags and ignores every other bit; the checks that do fail still fail. */
static void unknown_flag_bits_are_ignored(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int ok = sealed_memfd(4 * PG, F_SEAL_SHRINK);
	struct dmabuf_udmabuf_item item = { .memfd = ok, .size = PG };
	struct dmabuf *buf;
	int fd;

	fd = dmabuf_udmabuf_create(ctx, ok, 2, 0, PG);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC); /* the library's fds always are */
	assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
	assert_int_equal(dmabuf_get_size(buf), PG);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	fd = dmabuf_udmabuf_create_list(ctx, 0xfffffffe | DMABUF_UDMABUF_FLAGS_CLOEXEC, &item, 1);
	assert_true(fd >= 0);
	close(fd);
	/* ignoring the flags does not skip the checks after them */
	assert_int_equal(dmabuf_udmabuf_create(ctx, ok, 0x80000000u, 0, 100), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(ctx, -1, 0x80000000u, 0, PG), -EBADFD);
	close(ok);
	dmabuf_ctx_destroy(ctx);
}

static void udmabuf_fd_is_not_the_memfd(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int a = sealed_memfd(2 * PG, F_SEAL_SHRINK);
	struct dmabuf *buf;
	int fd = dmabuf_udmabuf_create(ctx, a, 0, 0, 2 * PG);

	assert_true(fd >= 0);
	/* As dma_buf_get() on the memfd itself: not a dma-buf. */
	assert_int_equal(dmabuf_get(ctx, a, &buf), -EINVAL);
	close(fd);
	close(a);
	dmabuf_ctx_destroy(ctx);
}

/* A dmabuf_mmap() mapping holds the buffer as a vma holds its dma-buf file
 * in the kernel: a udmabuf (whose bytes are the caller's memfd, not its
 * file) is not released while one is mapped, even with no fd left. */
static void mapping_keeps_udmabuf_alive(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int a = sealed_memfd(2 * PG, F_SEAL_SHRINK);
	int fd = dmabuf_udmabuf_create(ctx, a, 0, 0, 2 * PG);
	struct dmabuf_ctx_stats st = { 0 };
	struct dmabuf *buf;
	uint8_t *m;

	assert_true(fd >= 0);
	assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
	assert_int_equal(dmabuf_mmap(buf, 0, 2 * PG, PROT_READ | PROT_WRITE, (void **)&m), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	for (int i = 0; i < 50; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 2);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.buffers_released, 0);
	m[PG] = 0x5a;
	/* the orphan's mapping is still its own to undo */
	assert_int_equal(dmabuf_munmap(buf, m, 2 * PG), 0);
	for (int i = 0; i < 500 && st.buffers_released == 0; i++) {
		dmabuf_ctx_dispatch_timeout(ctx, 2);
		assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	}
	assert_int_equal(st.buffers_released, 1);
	close(a);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(memfd_rules),
		harness_test(buffer_sees_callers_pages),
		harness_test(unknown_flag_bits_are_ignored),
		harness_test(udmabuf_fd_is_not_the_memfd),
		harness_test(mapping_keeps_udmabuf_alive),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
