/* SPDX-License-Identifier: MIT */
/*
 * The test kit (libdmabuf-test, include/dmabuf-test.h) and the library's
 * testing hooks it uses (dmabuf_ctx_settle, dmabuf_ctx_for_each_live,
 * dmabuf_fault_*): each knob does what it says and fails when it should.
 * Links the shared libraries, as a user's test does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "dmabuf-test.h"
#include "harness.h"

#define PAGE 4096u

static struct dmabuf_ctx *quiet_ctx(void)
{
	struct dmabuf_ctx_config cfg = { .seed = 7 };
	struct dmabuf_ctx *ctx = NULL;

	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	return ctx;
}

static struct dmabuf_test_exporter *exporter(uint32_t flags)
{
	struct dmabuf_test_exporter *tx = NULL;

	assert_int_equal(dmabuf_test_exporter_new("kit", flags, &tx), 0);
	return tx;
}

static unsigned int count(const struct dmabuf_test_exporter *tx, enum dmabuf_test_op op)
{
	return dmabuf_test_exporter_get_count(tx, op);
}

/*
 * Settles until the exporter has released `want` buffers whose last fds
 * the test closed; returns what the settles and dispatches handled. A
 * close is the file's final one only if no other process holds it: one
 * that reads this process's fds (dmabuf-ls, the uapi layer's fdinfo
 * count, lsof) takes a transient reference for each, and its fput is then
 * the final one, a moment after the test's close, on its side. Settle
 * cannot wait for a close that has not happened yet (the file is held as
 * far as it can tell), so this waits for the close event, without a
 * clock: a release that never comes fails by the suite's timeout.
 */
static int settle_until_released(struct dmabuf_ctx *ctx, const struct dmabuf_test_exporter *tx,
				 unsigned int want)
{
	int handled = 0, n;

	for (;;) {
		n = dmabuf_ctx_settle(ctx, 10000);
		assert_true(n >= 0);
		handled += n;
		if (count(tx, DMABUF_TEST_OP_RELEASE) >= want)
			return handled;
		n = dmabuf_ctx_dispatch_timeout(ctx, -1);
		assert_true(n >= 0);
		handled += n;
	}
}

/* Every op is counted once per call, release after settle. */
static void exporter_counts_every_op(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf_device *dev = NULL;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf *buf = NULL;
	void *addr = NULL, *vaddr = NULL;

	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, 4 * PAGE, O_RDWR,
						     DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_test_exporter_get_live(tx), 1);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, NULL, &dev), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_FROM_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_test_exporter_get_last_direction(tx), DMABUF_FROM_DEVICE);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_mmap(buf, 0, PAGE, PROT_READ, &addr), 0);
	assert_int_equal(dmabuf_munmap(buf, addr, PAGE), 0);
	assert_int_equal(dmabuf_vmap(buf, &vaddr), 0);
	assert_int_equal(dmabuf_vunmap(buf, vaddr), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	for (int op = 0; op < DMABUF_TEST_OP_COUNT; op++) {
		unsigned int want = op == DMABUF_TEST_OP_PIN || op == DMABUF_TEST_OP_UNPIN ||
				    op == DMABUF_TEST_OP_RELEASE ? 0 : 1;

		assert_int_equal(count(tx, (enum dmabuf_test_op)op), want);
	}
	assert_int_equal(dmabuf_test_exporter_destroy(tx), -EBUSY);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_true(dmabuf_ctx_settle(ctx, 5000) >= 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 1);
	assert_int_equal(dmabuf_test_exporter_get_live(tx), 0);
	dmabuf_test_exporter_reset_counts(tx);
	assert_int_equal(count(tx, DMABUF_TEST_OP_ATTACH), 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_COUNT), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
	assert_int_equal(dmabuf_ctx_destroy(ctx), 0);
}

static void pinning_exporter_pins_at_map(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(DMABUF_TEST_EXPORTER_PIN);
	struct dmabuf_device *dev = NULL;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_test_exporter_new(NULL, 2, &(struct dmabuf_test_exporter *){ NULL }), -EINVAL);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, "gpu0", &dev), 0);
	assert_string_equal(dmabuf_device_get_name(dev), "gpu0");
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_PIN), 1);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_UNPIN), 1);
	/* No CPU access ops in a pinning exporter: begin is not called. */
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_BEGIN_CPU_ACCESS), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

static void refuse_fails_every_call_until_cleared(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf_device *dev = NULL;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf *buf = NULL;
	void *vaddr = NULL;

	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, NULL, &dev), 0);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_ATTACH, EPERM), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), -EPERM);
	assert_int_equal(dmabuf_attach(buf, dev, &att), -EPERM);
	assert_null(att);
	assert_int_equal(count(tx, DMABUF_TEST_OP_ATTACH), 2);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_ATTACH, 0), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_MAP, ENOSPC), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), -ENOSPC);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_MAP, 0), 0);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_VMAP, ENOMEM), 0);
	assert_int_equal(dmabuf_vmap(buf, &vaddr), -ENOMEM);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_BEGIN_CPU_ACCESS, EAGAIN), 0);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_TO_DEVICE), -EAGAIN);
	/* Ops that return nothing cannot be refused; bad arguments. */
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_DETACH, EIO), -EINVAL);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_RELEASE, EIO), -EINVAL);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_COUNT, EIO), -EINVAL);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_MAP, -EIO), -EINVAL);
	assert_int_equal(dmabuf_test_exporter_refuse(NULL, DMABUF_TEST_OP_MAP, EIO), -EINVAL);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

static void fail_nth_fails_that_call_once(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf_device *dev = NULL;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, NULL, &dev), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_test_exporter_fail_nth(tx, DMABUF_TEST_OP_MAP, 2, EIO), 0);
	for (int i = 1; i <= 4; i++) {
		int ret = dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt);

		if (i == 2) {
			assert_int_equal(ret, -EIO);
			continue;
		}
		assert_int_equal(ret, 0);
		assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	}
	assert_int_equal(count(tx, DMABUF_TEST_OP_MAP), 4);
	assert_int_equal(count(tx, DMABUF_TEST_OP_UNMAP), 3);
	/* Armed, then disarmed with nth 0: nothing fails. */
	assert_int_equal(dmabuf_test_exporter_fail_nth(tx, DMABUF_TEST_OP_MAP, 1, EIO), 0);
	assert_int_equal(dmabuf_test_exporter_fail_nth(tx, DMABUF_TEST_OP_MAP, 0, 0), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	/* The nth call wins over a refusal, with its own errno. */
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_MAP, EPERM), 0);
	assert_int_equal(dmabuf_test_exporter_fail_nth(tx, DMABUF_TEST_OP_MAP, 1, EIO), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), -EIO);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), -EPERM);
	assert_int_equal(dmabuf_test_exporter_fail_nth(tx, DMABUF_TEST_OP_MAP, 1, 0), -EINVAL);
	assert_int_equal(dmabuf_test_exporter_fail_nth(tx, DMABUF_TEST_OP_UNMAP, 1, EIO), -EINVAL);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A slow op takes at least its delay (a lower bound, which no load can
 * break); no delay on the other ops. */
static void delay_slows_the_op(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf *buf = NULL;
	double t0;

	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_test_exporter_set_delay(tx, DMABUF_TEST_OP_BEGIN_CPU_ACCESS, 30000), 0);
	t0 = now_s();
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_TO_DEVICE), 0);
	assert_true(now_s() - t0 >= 0.030);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_test_exporter_set_delay(tx, DMABUF_TEST_OP_BEGIN_CPU_ACCESS, 0), 0);
	assert_int_equal(dmabuf_test_exporter_set_delay(tx, DMABUF_TEST_OP_RELEASE, 10000001), -EINVAL);
	assert_int_equal(dmabuf_test_exporter_set_delay(tx, DMABUF_TEST_OP_COUNT, 1), -EINVAL);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

/* The presets map what their hardware maps, and refuse what it cannot. */
static void device_presets(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf_device *gpu = NULL, *disp = NULL, *cam = NULL;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf_device_info info;
	struct dmabuf *scattered = NULL, *contig = NULL, *deferred = NULL, *deferred2 = NULL;
	const struct dmabuf_dma_entry *e;
	const uint64_t size = 64 * PAGE;

	assert_int_equal(dmabuf_test_device_get_preset(DMABUF_TEST_DEVICE_DISPLAY, &info), 0);
	assert_int_equal(info.dma_mask_bits, 32);
	assert_true(info.flags & DMABUF_DEVICE_CONTIGUOUS);
	assert_false(info.flags & DMABUF_DEVICE_IOMMU);
	assert_string_equal(info.name, "display");
	assert_int_equal(dmabuf_test_device_get_preset(DMABUF_TEST_DEVICE_PRESET_COUNT, &info), -EINVAL);
	assert_int_equal(dmabuf_test_device_get_preset(DMABUF_TEST_DEVICE_GPU, NULL), -EINVAL);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_PRESET_COUNT, NULL, &gpu), -EINVAL);
	assert_null(gpu);

	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, NULL, &gpu), 0);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_DISPLAY, NULL, &disp), 0);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_CAMERA, NULL, &cam), 0);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, size, O_RDWR, DMABUF_ALLOC_SYSTEM, &scattered), 0);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, size, O_RDWR, DMABUF_ALLOC_CONTIGUOUS, &contig), 0);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, size, O_RDWR, DMABUF_ALLOC_DEFERRED, &deferred), 0);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, size, O_RDWR, DMABUF_ALLOC_DEFERRED, &deferred2), 0);

	/* GPU: one IOVA segment for scattered frames. */
	assert_int_equal(dmabuf_attach(scattered, gpu, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 1);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(scattered, att), 0);

	/* Camera: scatter-gather below 4 GiB (a deferred backing is placed
	 * there), no segment over 64 KiB. */
	assert_int_equal(dmabuf_attach(deferred, cam, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_FROM_DEVICE, &sgt), 0);
	e = dmabuf_sg_table_get_dma_entries(sgt);
	assert_true(dmabuf_sg_table_get_dma_count(sgt) >= size / (64 * 1024));
	for (unsigned int i = 0; i < dmabuf_sg_table_get_dma_count(sgt); i++) {
		assert_true(e[i].length <= 64 * 1024);
		assert_true(e[i].dma_addr + e[i].length <= (1ull << 32));
	}
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_detach(deferred, att), 0);

	/* Display: the contiguous buffer as one segment; scattered frames
	 * refused (at attach, by the backing check, or at map). */
	assert_int_equal(dmabuf_attach(contig, disp, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 1);
	e = dmabuf_sg_table_get_dma_entries(sgt);
	assert_int_equal(e[0].length, size);
	assert_true(e[0].dma_addr + size <= (1ull << 32));
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(contig, att), 0);
	/* A deferred backing mapped first by the display is contiguous. */
	assert_int_equal(dmabuf_attach(deferred2, disp, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 1);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(deferred2, att), 0);
	att = NULL;
	if (dmabuf_attach(scattered, disp, &att) == 0) {
		assert_true(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) < 0);
		assert_int_equal(dmabuf_detach(scattered, att), 0);
	}

	assert_int_equal(dmabuf_put(scattered), 0);
	assert_int_equal(dmabuf_put(contig), 0);
	assert_int_equal(dmabuf_put(deferred), 0);
	assert_int_equal(dmabuf_put(deferred2), 0);
	assert_int_equal(dmabuf_device_destroy(gpu), 0);
	assert_int_equal(dmabuf_device_destroy(disp), 0);
	assert_int_equal(dmabuf_device_destroy(cam), 0);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

/* The release of a closed fd waits in the event queue until dispatched:
 * settle handles it (the test waits on only if another process held a
 * file a moment longer: settle_until_released()). */
static void settle_runs_pending_releases(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf *buf[3];
	int fds[3];

	for (int i = 0; i < 3; i++) {
		assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf[i]), 0);
		fds[i] = dmabuf_fd(buf[i], O_CLOEXEC);
		assert_true(fds[i] >= 0);
		assert_int_equal(dmabuf_put(buf[i]), 0);
	}
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 0);
	assert_true(settle_until_released(ctx, tx, 3) >= 1);
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 3);
	/* Nothing pending: settle returns at once, even with no time. */
	assert_int_equal(dmabuf_ctx_settle(ctx, 0), 0);
	assert_int_equal(dmabuf_ctx_settle(ctx, -2), -EINVAL);
	assert_int_equal(dmabuf_ctx_settle(NULL, 0), -EINVAL);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

/* A pending re-probe is something settle waits for: a close of another
 * open file of the buffer's inode (not its dma-buf file) wakes the release
 * probe, which fails while the dma-buf file is open and is retried. With no
 * time, settle says -ETIMEDOUT; with time, it returns once the retries are
 * done, and the buffer whose fd is held stays. */
static void settle_times_out_while_a_probe_is_pending(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf *buf = NULL;
	char path[64];
	int fd, other;

	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_put(buf), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	other = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(other >= 0);
	close(other);
	assert_int_equal(dmabuf_ctx_settle(ctx, 0), -ETIMEDOUT);
	assert_true(dmabuf_ctx_settle(ctx, 10000) >= 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 0);
	close(fd);
	assert_true(settle_until_released(ctx, tx, 1) >= 1);
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 1);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

/* Another process imports, attaches, maps and dies holding everything.
 * Nobody serves the exporter any more, so its hang-up waits in the
 * exporter's queue: settle handles it (the peer's mapping and attachment
 * undone) and runs the release, with no dispatch loop in the test. */
static int importer_process(void *arg)
{
	int sock = *(int *)arg, fd = -1;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf_device *dev = NULL;
	struct dmabuf_ctx *ctx = NULL;
	struct dmabuf *buf = NULL;
	size_t len;
	char c;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	child_check(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, NULL, &dev) == 0);
	child_check(dmabuf_recv_fd(sock, &fd, &c, 1, &len) == 0 && fd >= 0);
	child_check(dmabuf_get(ctx, fd, &buf) == 0);
	close(fd);
	child_check(dmabuf_attach(buf, dev, &att) == 0);
	child_check(dmabuf_map_attachment(att, DMABUF_FROM_DEVICE, &sgt) == 0);
	child_check(dmabuf_send_fd(sock, -1, "m", 1) == 0);
	/* Until the parent says so; then exit without letting go. */
	child_check(dmabuf_recv_fd(sock, &fd, &c, 1, &len) == 0);
	return 0;
}

static void settle_handles_what_a_peer_left(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf *buf = NULL;
	int sv[2], fd;
	size_t len;
	pid_t pid;
	char c = 0;

	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, 16 * PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid = harness_fork_sock(importer_process, &sv[1], sv[0]);
	close(sv[1]);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	/* The exporter serves while the importer maps, then stops. */
	assert_int_equal(dmabuf_ctx_start_thread(ctx), 0);
	assert_int_equal(dmabuf_recv_fd(sv[0], &fd, &c, 1, &len), 0);
	assert_int_equal(c, 'm');
	assert_int_equal(dmabuf_ctx_stop_thread(ctx), 0);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "g", 1), 0);
	assert_int_equal(harness_wait(pid), 0);
	close(sv[0]);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_DETACH), 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 0);
	assert_true(settle_until_released(ctx, tx, 1) >= 1);
	assert_int_equal(count(tx, DMABUF_TEST_OP_ATTACH), 1);
	assert_int_equal(count(tx, DMABUF_TEST_OP_MAP), 1);
	assert_int_equal(count(tx, DMABUF_TEST_OP_UNMAP), 1);
	assert_int_equal(count(tx, DMABUF_TEST_OP_DETACH), 1);
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 1);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

static int count_live(void *data, const struct dmabuf_live_object *o)
{
	int *by_type = data;

	assert_true(o->struct_size >= sizeof(*o));
	by_type[o->type]++;
	return 0;
}

static int stop_at_first(void *data, const struct dmabuf_live_object *o)
{
	return 42;
}

static void live_objects_and_leak_report(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf_device *dev = NULL;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf *buf = NULL;
	int by_type[8] = { 0 }, fd;
	char report[2048];

	assert_int_equal(dmabuf_test_leaks(ctx, DMABUF_TEST_LEAKS_ALL, report, sizeof(report)), 0);
	assert_string_equal(report, "");
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, 2 * PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_set_name(buf, "frame"), 0);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, "gpu7", &dev), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);

	assert_int_equal(dmabuf_ctx_for_each_live(ctx, count_live, by_type), 4);
	assert_int_equal(by_type[DMABUF_LIVE_BUFFER], 1);
	assert_int_equal(by_type[DMABUF_LIVE_DEVICE], 1);
	assert_int_equal(by_type[DMABUF_LIVE_ATTACHMENT], 1);
	assert_int_equal(by_type[DMABUF_LIVE_MAPPING], 1);
	assert_int_equal(dmabuf_ctx_for_each_live(ctx, stop_at_first, NULL), 42);
	assert_int_equal(dmabuf_ctx_for_each_live(ctx, NULL, NULL), -EINVAL);

	assert_int_equal(dmabuf_test_leaks(ctx, DMABUF_TEST_LEAKS_ALL, report, sizeof(report)), 4);
	assert_non_null(strstr(report, "buffer kit \"frame\""));
	assert_non_null(strstr(report, "device gpu7 (1 attachment(s))"));
	assert_non_null(strstr(report, "attachment of device gpu7 to buffer kit"));
	assert_non_null(strstr(report, "mapping of buffer kit"));
	assert_int_equal(dmabuf_test_leaks(ctx, DMABUF_TEST_LEAKS_DESTROY, NULL, 0), 2);
	assert_int_equal(dmabuf_test_leaks(ctx, 1u << DMABUF_LIVE_MAPPING, report, sizeof(report)), 1);
	assert_int_equal(dmabuf_test_leaks(ctx, 1u, report, sizeof(report)), -EINVAL);
	/* A short report is cut, still terminated. */
	assert_int_equal(dmabuf_test_leaks(ctx, DMABUF_TEST_LEAKS_ALL, report, 10), 4);
	assert_true(strlen(report) < 10);

	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	/* Only an fd left: no reference, its file still open. */
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_test_leaks(ctx, DMABUF_TEST_LEAKS_DESTROY, NULL, 0), 0);
	assert_int_equal(dmabuf_test_leaks(ctx, DMABUF_TEST_LEAKS_ALL, report, sizeof(report)), 1);
	assert_non_null(strstr(report, "file is still open"));
	close(fd);
	assert_int_equal(dmabuf_test_leaks(ctx, DMABUF_TEST_LEAKS_ALL, report, sizeof(report)), 0);
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 1);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, report, sizeof(report)), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

/* dmabuf_test_ctx_destroy() reports a leaked buffer and device, and still
 * destroys the context (the buffer is released). */
static void destroy_reports_leaks(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf_device *dev = NULL;
	struct dmabuf *buf = NULL;
	char report[1024];

	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_CAMERA, NULL, &dev), 0);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, report, sizeof(report)), 2);
	assert_non_null(strstr(report, "buffer kit (ino"));
	assert_non_null(strstr(report, "1 reference(s)"));
	assert_non_null(strstr(report, "device camera"));
	assert_int_equal(count(tx, DMABUF_TEST_OP_RELEASE), 1);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
	assert_int_equal(dmabuf_test_ctx_destroy(NULL, NULL, 0), 0);
}

static void fault_injection_fails_the_nth_call(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = exporter(0);
	struct dmabuf *buf = NULL;

	dmabuf_fault_set_counting(true);
	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_MEMFD_CREATE, 2, EMFILE), 0);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	buf = NULL;
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), -EMFILE);
	assert_null(buf);
	assert_int_equal(dmabuf_test_exporter_get_live(tx), 0);
	assert_int_equal(dmabuf_fault_get_count(DMABUF_FAULT_MEMFD_CREATE), 2);
	/* Once only. */
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_fault_get_count(DMABUF_FAULT_MEMFD_CREATE), 3);
	/* dmabuf_fd() of a buffer: DUP. */
	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_DUP, 1, ENFILE), 0);
	assert_int_equal(dmabuf_fd(buf, O_CLOEXEC), -ENFILE);
	assert_int_equal(dmabuf_fault_get_count(DMABUF_FAULT_DUP), 1);
	assert_int_equal(dmabuf_put(buf), 0);
	/* Disarmed: nothing fails; counting off: counts read 0. */
	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_MEMFD_CREATE, 1, EMFILE), 0);
	dmabuf_fault_reset();
	assert_int_equal(dmabuf_fault_get_count(DMABUF_FAULT_MEMFD_CREATE), 0);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, PAGE, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_CALL_COUNT, 1, EIO), -EINVAL);
	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_MMAP, 1, 0), -EINVAL);
	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_MMAP, 0, 0), 0);
	assert_int_equal(dmabuf_fault_get_count(DMABUF_FAULT_CALL_COUNT), 0);
	assert_int_equal(dmabuf_test_ctx_destroy(ctx, NULL, 0), 0);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

static void fd_fixture_plain(void **state)
{
	struct dmabuf_test_fds *rec = NULL;
	int leaked[4] = { -1, -1, -1, -1 }, fd, old;
	char report[512];

	assert_int_equal(dmabuf_test_fds_begin(NULL), -EINVAL);
	assert_int_equal(dmabuf_test_fds_end(NULL, NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(dmabuf_test_fds_begin(&rec), 0);
	assert_int_equal(dmabuf_test_fds_end(rec, leaked, 4, report, sizeof(report)), 0);
	assert_string_equal(report, "");

	old = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(old >= 0);
	assert_int_equal(dmabuf_test_fds_begin(&rec), 0);
	fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	close(old);
	assert_int_equal(dmabuf_test_fds_end(rec, leaked, 4, report, sizeof(report)), 2);
	assert_int_equal(leaked[0], fd);
	assert_int_equal(leaked[1], -1);
	assert_non_null(strstr(report, "-> /dev/zero: opened and not closed"));
	assert_non_null(strstr(report, "closed since"));
	close(fd);
}

static void fd_fixture_cmocka(void **state)
{
	int fd;

	assert_int_equal(dmabuf_test_fd_teardown(NULL), -1); /* no record */
	assert_int_equal(dmabuf_test_fd_setup(NULL), 0);
	assert_int_equal(dmabuf_test_fd_teardown(NULL), 0);
	assert_int_equal(dmabuf_test_fd_setup(NULL), 0);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_test_fd_teardown(NULL), -1);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(exporter_counts_every_op),
		harness_test(pinning_exporter_pins_at_map),
		harness_test(refuse_fails_every_call_until_cleared),
		harness_test(fail_nth_fails_that_call_once),
		harness_test(delay_slows_the_op),
		harness_test(device_presets),
		harness_test(settle_runs_pending_releases),
		harness_test(settle_times_out_while_a_probe_is_pending),
		harness_test(settle_handles_what_a_peer_left),
		harness_test(live_objects_and_leak_report),
		harness_test(destroy_reports_leaks),
		harness_test(fault_injection_fails_the_nth_call),
		harness_test(fd_fixture_plain),
		harness_test(fd_fixture_cmocka),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
