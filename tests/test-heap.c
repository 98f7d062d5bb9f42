/* SPDX-License-Identifier: MIT */
/* dma-heap rules: the ALLOC ioctl's checks, zeroed memory, and the heaps'
 * physical layouts. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exporter.h"

#define MiB (1024ull * 1024)

static void alloc_checks(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);

	assert_int_equal(dmabuf_heap_alloc(ctx, "system", 0, O_RDWR, 0), -EINVAL);
	assert_int_equal(dmabuf_heap_alloc(ctx, "system", 4096, O_RDWR, 1), -EINVAL);
	assert_int_equal(dmabuf_heap_alloc(ctx, "system", 4096, O_RDWR | O_NONBLOCK, 0), -EINVAL);
	/* an unknown heap is an open() of /dev/dma_heap/<name> that fails:
	 * -ENOENT, before any of the ioctl's checks */
	assert_int_equal(dmabuf_heap_alloc(ctx, "nosuch", 4096, O_RDWR, 0), -ENOENT);
	assert_int_equal(dmabuf_heap_alloc(ctx, "nosuch", 0, O_RDWR | O_NONBLOCK, 1), -ENOENT);
	assert_int_equal(dmabuf_heap_alloc(ctx, NULL, 4096, O_RDWR, 0), -EINVAL);
	assert_int_equal(dmabuf_heap_alloc(NULL, "system", 4096, O_RDWR, 0), -EINVAL);
	/* more than the CMA region holds */
	assert_int_equal(dmabuf_heap_alloc(ctx, "cma", 2048 * MiB, O_RDWR, 0), -ENOMEM);
	dmabuf_ctx_destroy(ctx);
}

static void alloc_rounds_up_and_zeroes(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int fd = dmabuf_heap_alloc(ctx, "system", 5000, O_RDWR | O_CLOEXEC, 0);
	struct dmabuf *buf;
	struct stat st;
	uint8_t *p;

	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 8192);
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	for (int i = 0; i < 8192; i++)
		assert_int_equal(p[i], 0);
	p[100] = 5;
	/* the fd is the buffer: get() finds it, mmap through the library sees
	 * the same bytes */
	assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
	assert_int_equal(dmabuf_get_size(buf), 8192);
	uint8_t *q;
	assert_int_equal(dmabuf_mmap(buf, 0, 8192, PROT_READ, (void **)&q), 0);
	assert_int_equal(q[100], 5);
	assert_int_equal(dmabuf_munmap(buf, q, 8192), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	munmap(p, 8192);
	close(fd);
	dmabuf_ctx_destroy(ctx);
}

static void read_only_heap_buffer(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int fd = dmabuf_heap_alloc(ctx, "system", 4096, O_RDONLY, 0);

	assert_true(fd >= 0);
	assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
	close(fd);
	dmabuf_ctx_destroy(ctx);
}

static unsigned int cpu_entries_of(struct dmabuf_ctx *ctx, int fd,
				   struct dmabuf_device *dev)
{
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	unsigned int n;

	assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	n = dmabuf_sg_table_get_cpu_count(sgt);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	return n;
}

static void system_is_scattered_cma_is_contiguous(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	int sys = dmabuf_heap_alloc(ctx, "system", 32 * MiB, O_RDWR, 0);
	int cma = dmabuf_heap_alloc(ctx, "cma", 32 * MiB, O_RDWR, 0);
	struct dmabuf_ctx_stats st = { 0 };

	assert_true(sys >= 0 && cma >= 0);
	assert_true(cpu_entries_of(ctx, sys, dev) > 4);
	assert_int_equal(cpu_entries_of(ctx, cma, dev), 1);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.cma_used, 32 * MiB);
	assert_int_equal(st.phys_used, 64 * MiB);
	close(sys);
	close(cma);
	for (int i = 0; i < 20; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 2);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.phys_used, 0);
	assert_int_equal(st.buffers_live, 0);
	dmabuf_ctx_destroy(ctx);
}

static void cma_fragments(void **state)
{
	struct dmabuf_ctx_config cfg = { .seed = 1, .cma_size = 64 * MiB };
	struct dmabuf_ctx *ctx;
	int fds[4];

	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	for (int i = 0; i < 4; i++) {
		fds[i] = dmabuf_heap_alloc(ctx, "cma", 16 * MiB, O_RDWR, 0);
		assert_true(fds[i] >= 0);
	}
	assert_int_equal(dmabuf_heap_alloc(ctx, "cma", 4096, O_RDWR, 0), -ENOMEM);
	close(fds[0]);
	close(fds[2]);
	for (int i = 0; i < 20; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 2);
	/* 32 MiB free, but in two 16 MiB holes */
	assert_int_equal(dmabuf_heap_alloc(ctx, "cma", 32 * MiB, O_RDWR, 0), -ENOMEM);
	fds[0] = dmabuf_heap_alloc(ctx, "cma", 16 * MiB, O_RDWR, 0);
	assert_true(fds[0] >= 0);
	close(fds[0]);
	close(fds[1]);
	close(fds[3]);
	dmabuf_ctx_destroy(ctx);
}

static void same_seed_same_frames(void **state)
{
	uint64_t phys[2];

	for (int round = 0; round < 2; round++) {
		struct dmabuf_ctx_config cfg = { .seed = 1234 };
		struct dmabuf_ctx *ctx;
		struct dmabuf_device *dev;
		struct dmabuf *buf;
		struct dmabuf_attachment *att;
		struct dmabuf_sg_table *sgt;
		int fd;

		assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
		dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
		fd = dmabuf_heap_alloc(ctx, "system", 4 * MiB, O_RDWR, 0);
		assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
		assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
		assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
		phys[round] = dmabuf_sg_table_get_cpu_entries(sgt)[0].phys;
		close(fd);
		dmabuf_put(buf);
		dmabuf_ctx_destroy(ctx);
	}
	assert_int_equal(phys[0], phys[1]);
}

/* DMA_BUF_IOCTL_SYNC END without START, per exporter as in Linux 6.12:
 * the system and cma heaps' end_cpu_access never fails
 * (system_heap_dma_buf_end_cpu_access()); udmabuf's fails with -EINVAL
 * only while no START has made its sg table (end_cpu_udmabuf()). */
static void end_without_start_follows_the_heap(void **state)
{
	static const char *const heaps[] = { "system", "cma", "deferred" };
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf *buf;
	int fd, memfd;

	for (size_t i = 0; i < sizeof(heaps) / sizeof(heaps[0]); i++) {
		fd = dmabuf_heap_alloc(ctx, heaps[i], 4096, O_RDWR | O_CLOEXEC, 0);
		assert_true(fd >= 0);
		assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_READ), 0);
		assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_RW), 0);
		assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
		assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_TO_DEVICE), 0);
		assert_int_equal(dmabuf_put(buf), 0);
		close(fd);
	}

	memfd = memfd_create("udmabuf-src", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(memfd >= 0);
	assert_int_equal(ftruncate(memfd, 4096), 0);
	assert_int_equal(fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	fd = dmabuf_udmabuf_create(ctx, memfd, 0, 0, 4096);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_READ), -EINVAL);
	assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_BIDIRECTIONAL), -EINVAL);
	/* the first START makes the sg table; from then on END always works */
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_START | DMABUF_SYNC_READ), 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_READ), 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_WRITE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	close(memfd);
	dmabuf_ctx_destroy(ctx);

	/* strict CPU-access mode refuses it on every heap */
	ctx = tx_ctx_new(DMABUF_CTX_STRICT_CPU_ACCESS);
	fd = dmabuf_heap_alloc(ctx, "system", 4096, O_RDWR | O_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_READ), -EINVAL);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_START | DMABUF_SYNC_READ), 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_READ), 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_END | DMABUF_SYNC_READ), -EINVAL);
	close(fd);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(alloc_checks),
		harness_test(alloc_rounds_up_and_zeroes),
		harness_test(read_only_heap_buffer),
		harness_test(system_is_scattered_cma_is_contiguous),
		harness_test(cma_fragments),
		harness_test(same_seed_same_frames),
		harness_test(end_without_start_follows_the_heap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
