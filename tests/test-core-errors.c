/* SPDX-License-Identifier: MIT */
/*
 * Error paths of the core: every public entry point that allocates is made to
 * fail at each syscall it makes (src/base/sys.h fault injection). Each failure
 * must return the injected errno, leave no fd (harness_test), no memory
 * (valgrind), no simulated frames and no half-made object behind, and the
 * context must work normally afterwards. Then NULL, stale and mistyped
 * pointers on every public function: -EINVAL or NULL/0, never a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base.h"
#include "exporter.h"
#include "sys.h"

#define PG 4096ull
#define SZ (16 * PG)
#define DMB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const enum dmabuf_alloc allocs[] = {
	DMABUF_ALLOC_SYSTEM, DMABUF_ALLOC_CONTIGUOUS, DMABUF_ALLOC_DEFERRED,
};

/* Nothing of a failed call is left in the context. */
static void assert_ctx_empty(struct dmabuf_ctx *ctx)
{
	struct dmabuf_ctx_stats st = { 0 };

	dmabuf_ctx_dispatch(ctx);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.buffers_live, 0);
	assert_int_equal(st.attachments_live, 0);
	assert_int_equal(st.mappings_live, 0);
	assert_int_equal(st.phys_used, 0);
	assert_int_equal(st.cma_used, 0);
}

/* The context still does the whole normal cycle after a failure. */
static void assert_ctx_works(struct dmabuf_ctx *ctx)
{
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = tx_device(ctx, "after", 32, 0, 0);
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_DEFERRED);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	void *p, *v;
	int fd;

	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_int_equal(dmabuf_sg_table_get_size(sgt), SZ);
	assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ | PROT_WRITE, &p), 0);
	assert_int_equal(dmabuf_vmap(buf, &v), 0);
	((char *)p)[5] = 42;
	assert_int_equal(((char *)v)[5], 42);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
	assert_int_equal(dmabuf_munmap(buf, p, SZ), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 0);
	close(fd);
	for (int i = 0; i < 500 && !tx.release; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
	assert_int_equal(tx.release, 1);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_ctx_empty(ctx);
}

static void export_fails_at_every_syscall(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "fault", .ops = &tx_ops, .size = SZ, .priv = &tx,
	};
	/* The dma-buf file (a reopen) is made when it first leaves the
	 * library and the watch at the last put (share_and_put_failures). */
	const struct { enum dmb_sys_call call; unsigned int nth; int err; } faults[] = {
		{ DMB_SYS_MEMFD_CREATE, 1, EMFILE },
	};
	const int flags[] = { O_RDWR, O_RDONLY };

	for (size_t f = 0; f < DMB_ARRAY_SIZE(flags); f++)
		for (size_t a = 0; a < DMB_ARRAY_SIZE(allocs); a++)
			for (size_t i = 0; i < DMB_ARRAY_SIZE(faults); i++) {
				struct dmabuf *buf = NULL;

				info.flags = flags[f];
				info.alloc = allocs[a];
				dmb_sys_inject(faults[i].call, faults[i].nth, faults[i].err);
				assert_int_equal(dmabuf_export(ctx, &info, &buf), -faults[i].err);
				dmb_sys_inject(faults[i].call, 0, 0);
				assert_null(buf);
				assert_ctx_empty(ctx);
			}
	/* Only a read-only buffer maps at export, twice (library map, then
	 * the exporter's CPU view, both before sealing): either mmap failing.
	 * A read-write one maps when first needed (test-dma). */
	info.flags = O_RDONLY;
	for (unsigned int nth = 1; nth <= 2; nth++) {
		struct dmabuf *buf = NULL;

		dmb_sys_inject(DMB_SYS_MMAP, nth, ENOMEM);
		assert_int_equal(dmabuf_export(ctx, &info, &buf), -ENOMEM);
		dmb_sys_inject(DMB_SYS_MMAP, 0, 0);
		assert_null(buf);
		assert_ctx_empty(ctx);
	}
	assert_int_equal(tx.release, 0);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

/* The kernel's system heap refuses more than RAM with -ENOMEM before
 * touching anything; a size no memfd can have must not turn into the
 * -EINVAL of a negative ftruncate(). */
static void export_larger_than_ram_is_enomem(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.ops = &tx_ops, .size = 1ull << 63, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf *buf = NULL;

	for (size_t a = 0; a < DMB_ARRAY_SIZE(allocs); a++) {
		info.alloc = allocs[a];
		assert_int_equal(dmabuf_export(ctx, &info, &buf), -ENOMEM);
		assert_null(buf);
	}
	assert_int_equal(dmabuf_heap_alloc(ctx, "system", 1ull << 63, O_RDWR, 0), -ENOMEM);
	assert_int_equal(dmabuf_heap_alloc(ctx, "cma", 1ull << 63, O_RDWR, 0), -ENOMEM);
	assert_int_equal(dmabuf_heap_alloc(ctx, "deferred", UINT64_MAX - PG + 1, O_RDWR, 0),
			 -ENOMEM);
	/* ... but a len that PAGE_ALIGN() wraps to 0 is -EINVAL */
	assert_int_equal(dmabuf_heap_alloc(ctx, "system", UINT64_MAX - PG + 2, O_RDWR, 0),
			 -EINVAL);
	assert_ctx_empty(ctx);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

/* The dma-buf file is opened at the first dmabuf_fd(): a failure there is
 * that call's errno and changes nothing (the buffer was never shared, so
 * the put releases at once). Arming the release watch at the last put of a
 * shared buffer can fail too: then the library keeps its file rather than
 * release early, and the buffer stays until the context goes. */
static void share_and_put_failures(void **state)
{
	/* A recycled memfd keeps its watch (no inotify_add_watch to fail). */
	struct dmabuf_ctx *ctx = tx_ctx_new(DMABUF_CTX_NO_RECYCLE);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *again;
	int fd;

	dmb_sys_inject(DMB_SYS_REOPEN, 1, ENFILE);
	assert_int_equal(dmabuf_fd(buf, O_CLOEXEC), -ENFILE);
	dmb_sys_inject(DMB_SYS_REOPEN, 0, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);

	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	dmb_sys_inject(DMB_SYS_INOTIFY_ADD_WATCH, 1, ENOSPC);
	assert_int_equal(dmabuf_put(buf), 0);
	dmb_sys_inject(DMB_SYS_INOTIFY_ADD_WATCH, 0, 0);
	/* revived and put again, it gets its probe this time */
	assert_int_equal(dmabuf_get(ctx, fd, &again), 0);
	assert_ptr_equal(again, buf);
	assert_int_equal(dmabuf_put(again), 0);
	assert_int_equal(tx.release, 1);
	close(fd);
	for (int i = 0; i < 500 && tx.release < 2; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
	assert_int_equal(tx.release, 2);

	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	dmb_sys_inject(DMB_SYS_INOTIFY_ADD_WATCH, 1, ENOSPC);
	assert_int_equal(dmabuf_put(buf), 0);
	dmb_sys_inject(DMB_SYS_INOTIFY_ADD_WATCH, 0, 0);
	close(fd);
	dmabuf_ctx_dispatch_timeout(ctx, 20);
	assert_int_equal(tx.release, 2); /* the library still holds it */
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 3);
}

static void fd_dup_failure(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd;

	dmb_sys_inject(DMB_SYS_DUP, 1, EMFILE);
	assert_int_equal(dmabuf_fd(buf, O_CLOEXEC), -EMFILE);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	assert_ctx_empty(ctx);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

static void no_move(struct dmabuf_attachment *att)
{
}

static void attach_alloc_failure(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = tx_device(ctx, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_info info = { 0 };

	dmb_sys_inject(DMB_SYS_CALLOC, 1, ENOMEM);
	assert_int_equal(dmabuf_attach(buf, dev, &att), -ENOMEM);
	assert_null(att);
	assert_int_equal(tx.attach, 0);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 0);
	/* the device is not held by the failed attach */
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_int_equal(tx.release, 1);
	assert_ctx_empty(ctx);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

/* A map that cannot get frames leaves no mapping. A static importer of a
 * pinning exporter is mapped at attach (the kernel's cached attach->sgt),
 * so there it is the attach that fails, its pin and attach undone; a
 * dynamic importer's map fails alone. */
static void map_enomem_unwinds(void **state)
{
	struct dmabuf_ctx_config cfg = { .seed = 5, .cma_size = 16 * PG };
	struct dmabuf_ctx *ctx = NULL;
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.ops = &tx_pin_ops, .size = 64 * PG, .flags = O_RDWR, .priv = &tx,
		.alloc = DMABUF_ALLOC_DEFERRED,
	};
	static const struct dmabuf_importer_ops iops = {
		.version = DMABUF_IMPORTER_OPS_VERSION, .move_notify = no_move,
	};
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf_info bi = { 0 };

	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	dev = tx_device(ctx, "contig", 32, DMABUF_DEVICE_CONTIGUOUS, 0);
	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), -ENOMEM);
	assert_null(att);
	assert_int_equal(tx.pin, 1);
	assert_int_equal(tx.unpin, 1);
	assert_int_equal(tx.attach, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.attachments, 0);
	assert_int_equal(bi.pin_count, 0);
	assert_false(bi.backing_allocated);

	assert_int_equal(dmabuf_dynamic_attach(buf, dev, &iops, NULL, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), -ENOMEM);
	assert_null(sgt);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.mappings, 0);
	assert_false(bi.backing_allocated);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(tx.pin, 1);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_ctx_empty(ctx);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

static void mmap_failure(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	void *p = NULL;

	dmb_sys_inject(DMB_SYS_MMAP, 1, ENOMEM);
	assert_int_equal(dmabuf_mmap(buf, PG, 2 * PG, PROT_READ, &p), -ENOMEM);
	assert_null(p);
	assert_int_equal(dmabuf_munmap(buf, NULL, 2 * PG), -EINVAL);
	/* the failed mapping holds nothing: the put releases at once */
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	assert_ctx_empty(ctx);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

static void vmap_failure(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_info info = { 0 };
	void *v = NULL;

	dmb_sys_inject(DMB_SYS_MMAP, 1, ENOMEM);
	assert_int_equal(dmabuf_vmap(buf, &v), -ENOMEM);
	assert_null(v);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.vmap_count, 0);
	assert_int_equal(dmabuf_vunmap(buf, NULL), -EINVAL);
	assert_int_equal(dmabuf_vmap(buf, &v), 0);
	assert_non_null(v);
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	assert_ctx_empty(ctx);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

static const struct { enum dmb_sys_call call; int err; } alloc_faults[] = {
	{ DMB_SYS_MEMFD_CREATE, EMFILE },
	{ DMB_SYS_MMAP, ENOMEM },
	{ DMB_SYS_REOPEN, ENFILE },
	{ DMB_SYS_INOTIFY_ADD_WATCH, ENOSPC },
	{ DMB_SYS_DUP, EMFILE },
};

static void heap_alloc_failures(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	const char *heaps[] = { "system", "cma", "deferred" };

	for (size_t h = 0; h < DMB_ARRAY_SIZE(heaps); h++)
		for (size_t i = 0; i < DMB_ARRAY_SIZE(alloc_faults); i++) {
			/* a read-write heap buffer is not mapped at allocation,
			 * and its fd is the library's own, not a dup (the
			 * reopen is the dma-buf file, the watch its release's) */
			if (alloc_faults[i].call == DMB_SYS_MMAP ||
			    alloc_faults[i].call == DMB_SYS_DUP)
				continue;
			dmb_sys_inject(alloc_faults[i].call, 1, alloc_faults[i].err);
			assert_int_equal(dmabuf_heap_alloc(ctx, heaps[h], SZ, O_RDWR, 0),
					 -alloc_faults[i].err);
			dmb_sys_inject(alloc_faults[i].call, 0, 0);
			assert_ctx_empty(ctx);
		}
	for (size_t h = 0; h < DMB_ARRAY_SIZE(heaps); h++) {
		int fd = dmabuf_heap_alloc(ctx, heaps[h], SZ, O_RDWR, 0);

		assert_true(fd >= 0);
		close(fd);
	}
	assert_ctx_empty(ctx);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

static int shrink_sealed_memfd(uint64_t size)
{
	int fd = memfd_create("caller", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	return fd;
}

/* Includes the failure after the frames were chosen (the inotify watch):
 * the frames must go back too, not only the caller's ranges. */
static void udmabuf_failures(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int a = shrink_sealed_memfd(4 * PG), b = shrink_sealed_memfd(4 * PG);
	struct dmabuf_udmabuf_item items[2] = {
		{ .memfd = a, .offset = PG, .size = 2 * PG },
		{ .memfd = b, .offset = 0, .size = 3 * PG },
	};

	for (uint32_t n = 1; n <= 2; n++)
		for (size_t i = 0; i < DMB_ARRAY_SIZE(alloc_faults); i++) {
			/* the fd is the library's own, not a dup */
			if (alloc_faults[i].call == DMB_SYS_DUP)
				continue;
			dmb_sys_inject(alloc_faults[i].call, 1, alloc_faults[i].err);
			assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, items, n),
					 -alloc_faults[i].err);
			dmb_sys_inject(alloc_faults[i].call, 0, 0);
			assert_ctx_empty(ctx);
		}
	for (uint32_t n = 1; n <= 2; n++) {
		int fd = dmabuf_udmabuf_create_list(ctx, 0, items, n);

		assert_true(fd >= 0);
		close(fd);
	}
	assert_ctx_empty(ctx);
	close(a);
	close(b);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

/* drivers/dma-buf/udmabuf.c, udmabuf_create(): first every item's offset
 * and size alignment and the running total against size_limit_mb (-EINVAL),
 * then per item fget() (-EBADFD when it fails), check_memfd_seals()
 * (-EBADFD for a non-shmem file, -EINVAL for the seals), then pinning. */
static void udmabuf_kernel_errno_and_order(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	int ok = shrink_sealed_memfd(4 * PG);
	int closed = shrink_sealed_memfd(PG);
	struct dmabuf_udmabuf_item items[2];

	close(closed);
	assert_int_equal(dmabuf_udmabuf_create(ctx, -1, 0, 0, PG), -EBADFD);
	assert_int_equal(dmabuf_udmabuf_create(ctx, closed, 0, 0, PG), -EBADFD);
	/* a bad fd in an earlier item does not hide a later unaligned one */
	items[0] = (struct dmabuf_udmabuf_item){ .memfd = -1, .size = PG };
	items[1] = (struct dmabuf_udmabuf_item){ .memfd = ok, .size = 100 };
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, items, 2), -EINVAL);
	items[1] = (struct dmabuf_udmabuf_item){ .memfd = ok, .offset = 100, .size = PG };
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, items, 2), -EINVAL);
	/* ... nor the total over the size limit */
	items[1] = (struct dmabuf_udmabuf_item){ .memfd = ok,
						 .size = DMABUF_UDMABUF_SIZE_LIMIT };
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, items, 2), -EINVAL);
	/* exactly the limit is fine as far as the limit goes (then the range
	 * is beyond this memfd) */
	items[0] = (struct dmabuf_udmabuf_item){ .memfd = ok,
						 .size = DMABUF_UDMABUF_SIZE_LIMIT };
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, items, 1), -EINVAL);
	/* the bad fd is found once the sizes are right */
	items[0] = (struct dmabuf_udmabuf_item){ .memfd = ok, .size = PG };
	items[1] = (struct dmabuf_udmabuf_item){ .memfd = -1, .size = PG };
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, items, 2), -EBADFD);
	assert_ctx_empty(ctx);
	close(ok);
	dmabuf_ctx_destroy(ctx);
}

/* An exporter whose release drops a buffer it holds (a wrapper of another
 * buffer). Context destruction releases leftovers one by one; the nested
 * release must not leave it walking a freed buffer. */
struct holder {
	struct test_exporter tx;
	struct dmabuf *held;
};

static void holder_release(struct dmabuf *buf)
{
	struct holder *h = dmabuf_get_priv(buf);

	h->tx.release++;
	if (h->held)
		assert_int_equal(dmabuf_put(h->held), 0);
}

static const struct dmabuf_ops holder_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = holder_release,
};

static void ctx_destroy_with_nested_release(void **state)
{
	for (int round = 0; round < 4; round++) {
		struct dmabuf_ctx *ctx = tx_ctx_new(0);
		struct holder h[3] = { 0 };
		struct dmabuf *bufs[3];
		struct dmabuf_info info[3] = { { 0 } };
		int order[3] = { 0, 1, 2 };

		for (int i = 0; i < 3; i++) {
			struct dmabuf_export_info ei = {
				.exp_name = "holder", .ops = &holder_ops, .size = PG,
				.flags = O_RDWR, .priv = &h[i],
			};

			assert_int_equal(dmabuf_export(ctx, &ei, &bufs[i]), 0);
			assert_int_equal(dmabuf_get_info(bufs[i], &info[i]), 0);
		}
		/* sort by inode, the order destruction walks them in */
		for (int i = 0; i < 3; i++)
			for (int j = i + 1; j < 3; j++)
				if (info[order[j]].inode < info[order[i]].inode) {
					int t = order[i];

					order[i] = order[j];
					order[j] = t;
				}
		/* each holds the next one's only reference; the first is
		 * leaked by the caller */
		h[order[0]].held = bufs[order[1]];
		h[order[1]].held = bufs[order[2]];
		dmabuf_ctx_destroy(ctx);
		for (int i = 0; i < 3; i++)
			assert_int_equal(h[i].tx.release, 1);
	}
}

/* munmap of the last holder releases the buffer inside dmabuf_munmap(). */
static void munmap_of_last_holder_releases(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	void *p;

	assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ, &p), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 0);
	assert_int_equal(dmabuf_munmap(buf, p, SZ), 0);
	assert_int_equal(tx.release, 1);
	assert_int_equal(dmabuf_munmap(buf, p, SZ), -EINVAL);
	assert_ctx_empty(ctx);
	dmabuf_ctx_destroy(ctx);
}

static void log_nothing(void *data, enum dmabuf_log_priority p, const char *msg)
{
}

/* Every public function of dmabuf.h with NULL arguments. */
static void null_pointers(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = tx_device(ctx, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_export_info ei = {
		.ops = &tx_ops, .size = SZ, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf_device_info di = { .name = "x" };
	struct dmabuf_ctx_stats st = { 0 };
	struct dmabuf_info info = { 0 };
	struct dmabuf_dma_fault faults[1];
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_device *d2;
	struct dmabuf *b2;
	struct dmabuf_ctx *c2;
	char bytes[8] = { 0 };
	void *p;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);

	assert_int_equal(dmabuf_ctx_new(NULL, NULL), -EINVAL);
	dmabuf_ctx_destroy(NULL);
	dmabuf_ctx_set_log(NULL, log_nothing, NULL, DMABUF_LOG_DEBUG);
	assert_int_equal(dmabuf_ctx_get_fd(NULL), -EINVAL);
	assert_int_equal(dmabuf_ctx_dispatch(NULL), -EINVAL);
	assert_int_equal(dmabuf_ctx_dispatch_timeout(NULL, 1), -EINVAL);
	assert_int_equal(dmabuf_ctx_start_thread(NULL), -EINVAL);
	assert_int_equal(dmabuf_ctx_stop_thread(NULL), -EINVAL);
	assert_int_equal(dmabuf_ctx_get_stats(NULL, &st), -EINVAL);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, NULL), -EINVAL);

	assert_int_equal(dmabuf_device_new(NULL, &di, &d2), -EINVAL);
	assert_int_equal(dmabuf_device_new(ctx, NULL, &d2), -EINVAL);
	assert_int_equal(dmabuf_device_new(ctx, &di, NULL), -EINVAL);
	assert_int_equal(dmabuf_device_destroy(NULL), -EINVAL);
	assert_null(dmabuf_device_get_name(NULL));
	assert_int_equal(dmabuf_device_get_info(NULL, &di), -EINVAL);
	assert_int_equal(dmabuf_device_get_info(dev, NULL), -EINVAL);

	assert_int_equal(dmabuf_export(NULL, &ei, &b2), -EINVAL);
	assert_int_equal(dmabuf_export(ctx, NULL, &b2), -EINVAL);
	assert_int_equal(dmabuf_export(ctx, &ei, NULL), -EINVAL);
	assert_int_equal(dmabuf_fd(NULL, 0), -EINVAL);
	assert_int_equal(dmabuf_get(NULL, fd, &b2), -EINVAL);
	assert_int_equal(dmabuf_get(ctx, fd, NULL), -EINVAL);
	assert_null(dmabuf_ref(NULL));
	assert_int_equal(dmabuf_put(NULL), -EINVAL);
	assert_null(dmabuf_get_priv(NULL));
	assert_int_equal(dmabuf_get_size(NULL), 0);
	assert_null(dmabuf_get_ctx(NULL));
	assert_int_equal(dmabuf_set_name(NULL, "x"), -EINVAL);
	assert_int_equal(dmabuf_set_name(buf, NULL), -EINVAL);
	assert_int_equal(dmabuf_get_info(NULL, &info), -EINVAL);
	assert_int_equal(dmabuf_get_info(buf, NULL), -EINVAL);
	assert_null(dmabuf_get_resv(NULL));

	assert_int_equal(dmabuf_attach(NULL, dev, &att), -EINVAL);
	assert_int_equal(dmabuf_attach(buf, NULL, &att), -EINVAL);
	assert_int_equal(dmabuf_attach(buf, dev, NULL), -EINVAL);
	assert_int_equal(dmabuf_detach(NULL, NULL), -EINVAL);
	assert_int_equal(dmabuf_detach(buf, NULL), -EINVAL);
	assert_int_equal(dmabuf_detach(NULL, att), -EINVAL);
	assert_null(dmabuf_attachment_get_buf(NULL));
	assert_null(dmabuf_attachment_get_device(NULL));
	assert_null(dmabuf_attachment_get_priv(NULL));
	assert_int_equal(dmabuf_attachment_set_priv(NULL, &tx), -EINVAL);
	assert_int_equal(dmabuf_map_attachment(NULL, DMABUF_BIDIRECTIONAL, &sgt), -EINVAL);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, NULL), -EINVAL);
	assert_int_equal(dmabuf_unmap_attachment(NULL, sgt, DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(dmabuf_unmap_attachment(att, NULL, DMABUF_BIDIRECTIONAL), -EINVAL);

	assert_int_equal(dmabuf_sg_table_get_cpu_count(NULL), 0);
	assert_null(dmabuf_sg_table_get_cpu_entries(NULL));
	assert_int_equal(dmabuf_sg_table_get_dma_count(NULL), 0);
	assert_null(dmabuf_sg_table_get_dma_entries(NULL));
	assert_int_equal(dmabuf_sg_table_get_size(NULL), 0);

	assert_int_equal(dmabuf_backing_map(NULL, DMABUF_BIDIRECTIONAL, &sgt), -EINVAL);
	assert_int_equal(dmabuf_backing_map(att, DMABUF_BIDIRECTIONAL, NULL), -EINVAL);
	dmabuf_backing_unmap(NULL, NULL, DMABUF_BIDIRECTIONAL);
	assert_int_equal(dmabuf_backing_check_device(NULL, dev), -EINVAL);
	assert_int_equal(dmabuf_backing_check_device(buf, NULL), -EINVAL);
	assert_int_equal(dmabuf_backing_vmap(NULL, &p), -EINVAL);
	assert_int_equal(dmabuf_backing_vmap(buf, NULL), -EINVAL);
	dmabuf_backing_vunmap(NULL, NULL);

	assert_int_equal(dmabuf_dma_read(NULL, 0, bytes, 1), -EINVAL);
	assert_int_equal(dmabuf_dma_write(NULL, 0, bytes, 1), -EINVAL);
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
					 NULL, 1), -EINVAL);
	assert_int_equal(dmabuf_dma_write(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
					  NULL, 1), -EINVAL);
	assert_int_equal(dmabuf_device_get_faults(NULL, faults, 1), -EINVAL);

	assert_int_equal(dmabuf_begin_cpu_access(NULL, DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(dmabuf_end_cpu_access(NULL, DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(dmabuf_mmap(NULL, 0, SZ, PROT_READ, &p), -EINVAL);
	assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ, NULL), -EINVAL);
	assert_int_equal(dmabuf_munmap(NULL, NULL, SZ), -EINVAL);
	assert_int_equal(dmabuf_munmap(buf, NULL, SZ), -EINVAL);
	assert_int_equal(dmabuf_vmap(NULL, &p), -EINVAL);
	assert_int_equal(dmabuf_vmap(buf, NULL), -EINVAL);
	assert_int_equal(dmabuf_vunmap(NULL, NULL), -EINVAL);
	assert_int_equal(dmabuf_vunmap(buf, NULL), -EINVAL);
	assert_int_equal(dmabuf_fd_sync(NULL, fd, DMABUF_SYNC_READ), -EINVAL);

	assert_int_equal(dmabuf_heap_alloc(NULL, "system", SZ, O_RDWR, 0), -EINVAL);
	assert_int_equal(dmabuf_heap_alloc(ctx, NULL, SZ, O_RDWR, 0), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(NULL, fd, 0, 0, PG), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create_list(NULL, 0, NULL, 1), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create_list(ctx, 0, NULL, 1), -EINVAL);
	(void)c2;

	/* nothing changed */
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.refcount, 1);
	assert_int_equal(info.attachments, 1);
	assert_int_equal(info.mappings, 1);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

/* Stale pointers (freed objects) and pointers of the wrong type. */
/* The registry behind those checks (src/base/objects.c, a hash set with
 * backward-shift removal) agrees with a plain array over random adds,
 * removals and lookups of 4,096 addresses: across its growth from empty,
 * long probe runs in a small working set, and its shrinking. */
static void registry_agrees_with_reference(void **state)
{
	enum { N = 4096, OPS = 400000 };
	static uint64_t objs[N];
	static bool in[N];
	unsigned int seed = 1;

	for (long k = 0; k < OPS; k++) {
		/* the second half works on 64 addresses, the table stays large */
		int i = (int)(rand_r(&seed) % (k < OPS / 2 ? N : 64));
		int op = (int)(rand_r(&seed) % 3);

		if (op == 0) {
			assert_int_equal(dmb_obj_add(&objs[i], DMB_OBJ_TIMELINE),
					 in[i] ? -EEXIST : 0);
			in[i] = true;
		} else if (op == 1) {
			dmb_obj_del(&objs[i]);
			in[i] = false;
		} else {
			assert_int_equal(dmb_obj_live(&objs[i], DMB_OBJ_TIMELINE), in[i]);
			assert_false(dmb_obj_live(&objs[i], DMB_OBJ_FENCE));
		}
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(dmb_obj_live(&objs[i], DMB_OBJ_TIMELINE), in[i]);
		dmb_obj_del(&objs[i]);
	}
	for (int i = 0; i < N; i++)
		assert_false(dmb_obj_live(&objs[i], DMB_OBJ_TIMELINE));
	/* no object, or no type: refused */
	assert_int_equal(dmb_obj_add(NULL, DMB_OBJ_TIMELINE), -EINVAL);
	assert_int_equal(dmb_obj_add(&objs[0], (enum dmb_obj_type)0), -EINVAL);
}

static void stale_and_mistyped_pointers(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_ctx *dead_ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = tx_device(ctx, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_device *dead_dev = tx_device(ctx, "dead", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf *live = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct test_exporter tx2 = { 0 };
	struct dmabuf *dead = tx_export(ctx, &tx2, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_export_info ei = {
		.ops = &tx_ops, .size = SZ, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf_device_info di = { .name = "x" };
	struct dmabuf_attachment *att, *dead_att;
	struct dmabuf_sg_table *sgt, *dead_sgt;
	struct dmabuf_ctx_stats st = { 0 };
	struct dmabuf_info info = { 0 };
	struct dmabuf_device *d2;
	struct dmabuf *b2;
	char bytes[8];
	void *p;
	int fd = dmabuf_fd(live, O_CLOEXEC);

	assert_int_equal(dmabuf_attach(live, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_int_equal(dmabuf_attach(live, dev, &dead_att), 0);
	assert_int_equal(dmabuf_map_attachment(dead_att, DMABUF_TO_DEVICE, &dead_sgt), 0);
	assert_int_equal(dmabuf_unmap_attachment(dead_att, dead_sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(live, dead_att), 0);
	assert_int_equal(dmabuf_put(dead), 0);
	assert_int_equal(tx2.release, 1);
	assert_int_equal(dmabuf_device_destroy(dead_dev), 0);
	dmabuf_ctx_destroy(dead_ctx);

	/* stale context */
	dmabuf_ctx_destroy(dead_ctx);
	dmabuf_ctx_set_log(dead_ctx, log_nothing, NULL, DMABUF_LOG_DEBUG);
	assert_int_equal(dmabuf_ctx_get_fd(dead_ctx), -EINVAL);
	assert_int_equal(dmabuf_ctx_dispatch(dead_ctx), -EINVAL);
	assert_int_equal(dmabuf_ctx_dispatch_timeout(dead_ctx, 1), -EINVAL);
	assert_int_equal(dmabuf_ctx_start_thread(dead_ctx), -EINVAL);
	assert_int_equal(dmabuf_ctx_stop_thread(dead_ctx), -EINVAL);
	assert_int_equal(dmabuf_ctx_get_stats(dead_ctx, &st), -EINVAL);
	assert_int_equal(dmabuf_device_new(dead_ctx, &di, &d2), -EINVAL);
	assert_int_equal(dmabuf_export(dead_ctx, &ei, &b2), -EINVAL);
	assert_int_equal(dmabuf_get(dead_ctx, fd, &b2), -EINVAL);
	assert_int_equal(dmabuf_fd_sync(dead_ctx, fd, DMABUF_SYNC_READ), -EINVAL);
	assert_int_equal(dmabuf_heap_alloc(dead_ctx, "system", SZ, O_RDWR, 0), -EINVAL);
	assert_int_equal(dmabuf_udmabuf_create(dead_ctx, fd, 0, 0, PG), -EINVAL);

	/* stale device */
	assert_int_equal(dmabuf_device_destroy(dead_dev), -EINVAL);
	assert_null(dmabuf_device_get_name(dead_dev));
	assert_int_equal(dmabuf_device_get_info(dead_dev, &di), -EINVAL);
	assert_int_equal(dmabuf_attach(live, dead_dev, &att), -EINVAL);
	assert_int_equal(dmabuf_backing_check_device(live, dead_dev), -EINVAL);
	assert_int_equal(dmabuf_dma_read(dead_dev, 0, bytes, 1), -EINVAL);
	assert_int_equal(dmabuf_dma_write(dead_dev, 0, bytes, 1), -EINVAL);
	assert_int_equal(dmabuf_device_get_faults(dead_dev, NULL, 0), -EINVAL);

	/* stale buffer */
	assert_int_equal(dmabuf_fd(dead, 0), -EINVAL);
	assert_null(dmabuf_ref(dead));
	assert_int_equal(dmabuf_put(dead), -EINVAL);
	assert_null(dmabuf_get_priv(dead));
	assert_int_equal(dmabuf_get_size(dead), 0);
	assert_null(dmabuf_get_ctx(dead));
	assert_null(dmabuf_get_resv(dead));
	assert_int_equal(dmabuf_set_name(dead, "x"), -EINVAL);
	assert_int_equal(dmabuf_get_info(dead, &info), -EINVAL);
	assert_int_equal(dmabuf_attach(dead, dev, &att), -EINVAL);
	assert_int_equal(dmabuf_begin_cpu_access(dead, DMABUF_FROM_DEVICE), -EINVAL);
	assert_int_equal(dmabuf_end_cpu_access(dead, DMABUF_FROM_DEVICE), -EINVAL);
	assert_int_equal(dmabuf_mmap(dead, 0, SZ, PROT_READ, &p), -EINVAL);
	assert_int_equal(dmabuf_munmap(dead, NULL, SZ), -EINVAL);
	assert_int_equal(dmabuf_vmap(dead, &p), -EINVAL);
	assert_int_equal(dmabuf_vunmap(dead, NULL), -EINVAL);
	assert_int_equal(dmabuf_backing_check_device(dead, dev), -EINVAL);
	assert_int_equal(dmabuf_backing_vmap(dead, &p), -EINVAL);
	dmabuf_backing_vunmap(dead, NULL);

	/* stale attachment and table */
	assert_int_equal(dmabuf_detach(live, dead_att), -EINVAL);
	assert_null(dmabuf_attachment_get_buf(dead_att));
	assert_null(dmabuf_attachment_get_device(dead_att));
	assert_null(dmabuf_attachment_get_priv(dead_att));
	assert_int_equal(dmabuf_attachment_set_priv(dead_att, &tx), -EINVAL);
	assert_int_equal(dmabuf_map_attachment(dead_att, DMABUF_TO_DEVICE, &dead_sgt), -EINVAL);
	assert_int_equal(dmabuf_unmap_attachment(dead_att, sgt, DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(dmabuf_backing_map(dead_att, DMABUF_TO_DEVICE, &dead_sgt), -EINVAL);
	assert_int_equal(dmabuf_unmap_attachment(att, dead_sgt, DMABUF_TO_DEVICE), -EINVAL);
	dmabuf_backing_unmap(att, dead_sgt, DMABUF_TO_DEVICE);
	assert_int_equal(dmabuf_sg_table_get_cpu_count(dead_sgt), 0);
	assert_null(dmabuf_sg_table_get_cpu_entries(dead_sgt));
	assert_int_equal(dmabuf_sg_table_get_dma_count(dead_sgt), 0);
	assert_null(dmabuf_sg_table_get_dma_entries(dead_sgt));
	assert_int_equal(dmabuf_sg_table_get_size(dead_sgt), 0);

	/* live objects passed as the wrong type */
	assert_int_equal(dmabuf_put((struct dmabuf *)att), -EINVAL);
	assert_int_equal(dmabuf_put((struct dmabuf *)ctx), -EINVAL);
	assert_int_equal(dmabuf_fd((struct dmabuf *)dev, 0), -EINVAL);
	assert_int_equal(dmabuf_detach(live, (struct dmabuf_attachment *)live), -EINVAL);
	assert_int_equal(dmabuf_detach(live, (struct dmabuf_attachment *)sgt), -EINVAL);
	assert_int_equal(dmabuf_map_attachment((struct dmabuf_attachment *)live,
					       DMABUF_TO_DEVICE, &dead_sgt), -EINVAL);
	assert_int_equal(dmabuf_unmap_attachment(att, (struct dmabuf_sg_table *)att,
						 DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(dmabuf_attach(live, (struct dmabuf_device *)live, &dead_att), -EINVAL);
	assert_int_equal(dmabuf_device_destroy((struct dmabuf_device *)att), -EINVAL);
	assert_int_equal(dmabuf_export((struct dmabuf_ctx *)live, &ei, &b2), -EINVAL);
	assert_int_equal(dmabuf_ctx_get_fd((struct dmabuf_ctx *)dev), -EINVAL);
	assert_int_equal(dmabuf_sg_table_get_size((struct dmabuf_sg_table *)att), 0);
	assert_int_equal(dmabuf_detach((struct dmabuf *)ctx, att), -EINVAL);

	/* the live ones are intact */
	assert_int_equal(dmabuf_get_info(live, &info), 0);
	assert_int_equal(info.refcount, 1);
	assert_int_equal(info.attachments, 1);
	assert_int_equal(info.mappings, 1);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(live, att), 0);
	assert_int_equal(dmabuf_put(live), 0);
	close(fd);
	assert_int_equal(dmabuf_device_destroy(dev), 0);
	assert_ctx_works(ctx);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(export_fails_at_every_syscall),
		harness_test(export_larger_than_ram_is_enomem),
		harness_test(share_and_put_failures),
		harness_test(fd_dup_failure),
		harness_test(attach_alloc_failure),
		harness_test(map_enomem_unwinds),
		harness_test(mmap_failure),
		harness_test(vmap_failure),
		harness_test(heap_alloc_failures),
		harness_test(udmabuf_failures),
		harness_test(udmabuf_kernel_errno_and_order),
		harness_test(ctx_destroy_with_nested_release),
		harness_test(munmap_of_last_holder_releases),
		harness_test(null_pointers),
		harness_test(stale_and_mistyped_pointers),
		harness_test(registry_agrees_with_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
