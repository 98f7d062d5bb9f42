/* SPDX-License-Identifier: MIT */
/* Export, the dma-buf file, lookup by inode, references, names. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exporter.h"
#include "private.h"
#include "sys.h"

#define SZ (64 * 1024)
/* more gets than buffer.c's GET_GUESS_SKIP: the guessing resumes */
#define GUESS_SKIP_MAX 9

static void export_rejects_bad_info(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_ops ops = tx_ops;
	struct dmabuf_export_info info = {
		.ops = &ops, .size = SZ, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf *buf = NULL;

	/* each mandatory op, priv, ops: -EINVAL, as dma_buf_export() */
	ops.map = NULL;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	ops = tx_ops; ops.unmap = NULL;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	ops = tx_ops; ops.release = NULL;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	ops = tx_ops; ops.pin = tx_pin; /* pin without unpin */
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	ops = tx_ops; ops.unpin = tx_unpin; /* unpin without pin */
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	ops = tx_ops;
	info.priv = NULL;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	info.priv = &tx;
	info.ops = NULL;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	info.ops = &ops;
	info.size = 0;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	info.size = SZ + 1;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	info.size = SZ;
	info.flags = O_ACCMODE;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	info.flags = O_RDWR | O_NONBLOCK;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	info.flags = O_RDWR;
	info.alloc = (enum dmabuf_alloc)7;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -EINVAL);
	assert_int_equal(dmabuf_export(NULL, &info, &buf), -EINVAL);
	assert_null(buf);
	/* A table from a newer library is used for the members this one
	 * knows (dispatch by version per member). */
	info.alloc = DMABUF_ALLOC_SYSTEM;
	ops = tx_ops; ops.version = DMABUF_OPS_VERSION + 1;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	tx.release = 0;
	buf = NULL;
	/* pin + unpin together, and version 0, are fine */
	info.alloc = DMABUF_ALLOC_SYSTEM;
	ops = tx_pin_ops; ops.version = 0;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(ctx);
}

/* Versioned structs: an older (shorter) and a newer (longer) caller. */
static void export_info_is_size_versioned(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct {
		struct dmabuf_export_info info;
		uint64_t newer_field;
	} big = { .info = { .ops = &tx_ops, .size = SZ, .flags = O_RDWR, .priv = &tx } };
	struct dmabuf *buf = NULL;
	struct dmabuf_info bi = { .struct_size = sizeof(bi) };
	struct { struct dmabuf_info info; uint64_t newer; } bigout = { .newer = 77 };
	struct dmabuf_ctx_stats st = { .struct_size = 4 }; /* only the size field */

	/* newer caller, newer field zero: fine */
	big.info.struct_size = sizeof(big);
	assert_int_equal(dmabuf_export(ctx, &big.info, &buf), 0);
	/* output: the library writes what it has and no more */
	bigout.info.struct_size = sizeof(bigout);
	assert_int_equal(dmabuf_get_info(buf, &bigout.info), 0);
	assert_int_equal(bigout.info.size, SZ);
	assert_int_equal(bigout.info.struct_size, sizeof(bigout));
	assert_int_equal(bigout.newer, 77);
	assert_int_equal(dmabuf_get_info(buf, &bi), 0);
	assert_int_equal(bi.size, SZ);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.struct_size, 4);
	assert_int_equal(st.buffers_live, 0); /* not written */
	assert_int_equal(dmabuf_put(buf), 0);
	buf = NULL;
	/* newer caller asking for something this library does not know */
	big.newer_field = 1;
	assert_int_equal(dmabuf_export(ctx, &big.info, &buf), -E2BIG);
	assert_null(buf);
	/* older caller whose struct ends before ops: ops read as NULL */
	big.newer_field = 0;
	big.info.struct_size = offsetof(struct dmabuf_export_info, ops);
	assert_int_equal(dmabuf_export(ctx, &big.info, &buf), -EINVAL);
	/* shorter than the size field itself */
	big.info.struct_size = 2;
	assert_int_equal(dmabuf_export(ctx, &big.info, &buf), -EINVAL);
	assert_null(buf);
	bi.struct_size = 3;
	assert_int_equal(dmabuf_get_info(buf, &bi), -EINVAL);
	dmabuf_ctx_destroy(ctx);
}

/* struct_size 0 is the 0.1.0 layout: a program built against it has no
 * room for the fields added since (dmabuf_info from pin_count on,
 * dmabuf_ctx_stats from moves on), so nothing is written there. */
static void first_layout_is_not_written_past(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = { .ops = &tx_ops, .size = SZ, .flags = O_RDWR, .priv = &tx };
	union { struct dmabuf_info info; unsigned char bytes[sizeof(struct dmabuf_info)]; } bi;
	union { struct dmabuf_ctx_stats st; unsigned char bytes[sizeof(struct dmabuf_ctx_stats)]; } cs;
	size_t info_v1 = offsetof(struct dmabuf_info, pin_count);
	size_t stats_v1 = offsetof(struct dmabuf_ctx_stats, moves);
	struct dmabuf *buf = NULL;

	(void)state;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	memset(&bi, 0xaa, sizeof(bi));
	bi.info.struct_size = DMABUF_STRUCT_V1;
	assert_int_equal(dmabuf_get_info(buf, &bi.info), 0);
	assert_int_equal(bi.info.size, SZ);
	for (size_t i = info_v1; i < sizeof(bi); i++)
		assert_int_equal(bi.bytes[i], 0xaa);
	memset(&cs, 0xaa, sizeof(cs));
	cs.st.struct_size = DMABUF_STRUCT_V1;
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &cs.st), 0);
	assert_int_equal(cs.st.buffers_live, 1);
	for (size_t i = stats_v1; i < sizeof(cs); i++)
		assert_int_equal(cs.bytes[i], 0xaa);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void fd_is_one_open_file_description(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int a = dmabuf_fd(buf, O_CLOEXEC), b = dmabuf_fd(buf, 0);
	struct stat sa, sb;

	assert_true(a >= 0 && b >= 0 && a != b);
	assert_int_equal(dmabuf_fd(buf, O_NONBLOCK), -EINVAL);
	/* Same inode, same size, close-on-exec either way. */
	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_true(sa.st_ino == sb.st_ino && sa.st_size == SZ);
	assert_true(fcntl(b, F_GETFD) & FD_CLOEXEC);
	/* Same open file description: the file offset is shared. */
	assert_int_equal(lseek(a, 4096, SEEK_SET), 4096);
	assert_int_equal(lseek(b, 0, SEEK_CUR), 4096);
	assert_int_equal(lseek(a, 0, SEEK_END), SZ);
	/* Sealed: nobody can shrink or grow it. */
	assert_int_equal(ftruncate(a, SZ / 2), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(a, SZ * 2), -1);
	assert_int_equal(fcntl(a, F_ADD_SEALS, F_SEAL_WRITE), -1);
	close(a);
	close(b);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(ctx);
}

static void get_finds_same_object(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *got = NULL;
	struct dmabuf_info info = { 0 };
	int fd = dmabuf_fd(buf, O_CLOEXEC), nfd;

	assert_int_equal(dmabuf_get(ctx, fd, &got), 0);
	assert_ptr_equal(got, buf);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.refcount, 2);
	assert_int_equal(dmabuf_put(got), 0);
	/* errno of dma_buf_get(): bad fd / not a dma-buf */
	assert_int_equal(dmabuf_get(ctx, -1, &got), -EBADF);
	assert_int_equal(dmabuf_get(ctx, 1000, &got), -EBADF);
	nfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_int_equal(dmabuf_get(ctx, nfd, &got), -EINVAL);
	close(nfd);
	nfd = memfd_create("plain", MFD_CLOEXEC);
	assert_int_equal(dmabuf_get(ctx, nfd, &got), -EINVAL);
	close(nfd);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

/* dmabuf_get() of the buffer it returned last (likely_get(): one
 * F_DUPFD_QUERY of the library's own file): only the same open file takes
 * that way; an O_PATH fd of the inode, another buffer's fd and a stale
 * guess (the buffer released since) get what the full lookup gives. */
static void get_again_of_the_same_file(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *a = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *b = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_info info = { 0 };
	struct dmabuf *got = NULL;
	int fa = dmabuf_fd(a, O_CLOEXEC), fb = dmabuf_fd(b, O_CLOEXEC), d, o;
	char path[64];

	assert_true(fa >= 0 && fb >= 0);
	assert_int_equal(dmabuf_get(ctx, fa, &got), 0);
	assert_ptr_equal(got, a);
	assert_int_equal(dmabuf_put(got), 0);
	/* the same open file again (a dup, as SCM_RIGHTS gives): a */
	d = fcntl(fa, F_DUPFD_CLOEXEC, 0);
	assert_int_equal(dmabuf_get(ctx, d, &got), 0);
	assert_ptr_equal(got, a);
	assert_int_equal(dmabuf_get_info(a, &info), 0);
	assert_int_equal(info.refcount, 2);
	assert_int_equal(dmabuf_put(got), 0);
	close(d);
	/* an O_PATH fd of a's inode right after: no open file of it */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fa);
	o = open(path, O_PATH | O_CLOEXEC);
	assert_true(o >= 0);
	assert_int_equal(dmabuf_get(ctx, o, &got), -EBADF);
	close(o);
	/* another open file of the same memfd: found by its inode */
	o = open(path, O_RDWR | O_CLOEXEC);
	assert_true(o >= 0);
	assert_int_equal(dmabuf_get(ctx, o, &got), 0);
	assert_ptr_equal(got, a);
	assert_int_equal(dmabuf_put(got), 0);
	close(o);
	/* alternating buffers: wrong guesses, then none, always the right one */
	for (int i = 0; i < 24; i++) {
		struct dmabuf *want = i % 3 ? b : a;

		assert_int_equal(dmabuf_get(ctx, want == a ? fa : fb, &got), 0);
		assert_ptr_equal(got, want);
		assert_int_equal(dmabuf_put(got), 0);
	}
	/* the last one got is released: the guess is stale, not followed */
	assert_int_equal(dmabuf_get(ctx, fa, &got), 0);
	assert_int_equal(dmabuf_put(got), 0);
	close(fa);
	assert_int_equal(dmabuf_put(a), 0);
	assert_int_equal(tx.release, 1);
	for (int i = 0; i <= GUESS_SKIP_MAX; i++) {
		assert_int_equal(dmabuf_get(ctx, fb, &got), 0);
		assert_ptr_equal(got, b);
		assert_int_equal(dmabuf_put(got), 0);
	}
	close(fb);
	assert_int_equal(dmabuf_put(b), 0);
	assert_int_equal(tx.release, 2);
	dmabuf_ctx_destroy(ctx);
}

static void double_put_is_detected(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_ptr_equal(dmabuf_ref(buf), buf);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	/* The fd keeps the buffer: a third put is a double put, reported. */
	assert_int_equal(tx.release, 0);
	assert_int_equal(dmabuf_put(buf), -EINVAL);
	assert_null(dmabuf_ref(buf));
	assert_int_equal(dmabuf_set_name(buf, "x"), -EINVAL);
	close(fd);
	/* In-process close: noticed by the next dispatch. */
	assert_true(dmabuf_ctx_dispatch(ctx) >= 1);
	assert_int_equal(tx.release, 1);
	/* After release the pointer is dead: still no crash. */
	assert_int_equal(dmabuf_put(buf), -EINVAL);
	assert_int_equal(dmabuf_get_size(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void set_name_follows_kernel_rules(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_info info = { 0 };
	char name[DMABUF_NAME_LEN + 1];

	/* No name and the empty name differ: the kernel's fdinfo prints a
	 * name: line only once DMA_BUF_SET_NAME ran (dma_buf_show_fdinfo()),
	 * and "" is a name (dma_buf_set_name() stores it). */
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_false(info.name_set);
	assert_string_equal(info.name, "");
	assert_int_equal(dmabuf_set_name(buf, ""), 0);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_true(info.name_set);
	assert_string_equal(info.name, "");

	memset(name, 'a', sizeof(name));
	name[DMABUF_NAME_LEN - 1] = '\0'; /* 31 bytes + NUL: fits */
	assert_int_equal(dmabuf_set_name(buf, name), 0);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_string_equal(info.name, name);
	name[DMABUF_NAME_LEN - 1] = 'a';
	name[DMABUF_NAME_LEN] = '\0'; /* 32 bytes: too long */
	assert_int_equal(dmabuf_set_name(buf, name), -EINVAL);
	assert_int_equal(dmabuf_set_name(buf, NULL), -EINVAL);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_true(info.name_set); /* a refused name changes nothing */
	assert_string_equal(info.name, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_int_equal(dmabuf_set_name(buf, "frame-7"), 0);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_string_equal(info.name, "frame-7");
	assert_string_equal(info.exp_name, "test");
	assert_int_equal(info.size, SZ);
	assert_int_equal(info.flags, O_RDWR);
	assert_true(info.backing_allocated);
	assert_int_equal(dmabuf_get_size(buf), SZ);
	assert_ptr_equal(dmabuf_get_priv(buf), &tx);
	assert_ptr_equal(dmabuf_get_ctx(buf), ctx);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

static void export_failure_leaks_nothing(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.ops = &tx_ops, .size = SZ, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf_ctx_stats st = { 0 };
	struct dmabuf *buf = NULL;
	const enum dmb_sys_call calls[] = {
		/* no mmap: a read-write export maps nothing (test-dma); no
		 * reopen or watch: the dma-buf file is made when it is first
		 * handed out, the watch at the last put (test-core-errors) */
		DMB_SYS_MEMFD_CREATE,
	};

	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		dmb_sys_inject(calls[i], 1, EMFILE);
		assert_int_equal(dmabuf_export(ctx, &info, &buf), -EMFILE);
		assert_null(buf);
	}
	/* memory too: a buffer larger than the simulated RAM */
	info.size = 32ull << 30;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -ENOMEM);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.buffers_live, 0);
	assert_int_equal(st.phys_used, 0);
	assert_int_equal(tx.release, 0); /* never exported: never released */
	dmabuf_ctx_destroy(ctx);
}

static void ctx_destroy_releases_leftovers(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_device *dev = tx_device(ctx, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;

	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	/* Leak everything: destroy must unwind in order and release once. */
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(tx.release, 1);
}

/*
 * issue 11: memory per live buffer <= 600 B (docs/performance.md, "Memory
 * per live buffer"). struct dmabuf itself, and everything one export of a
 * read-write system buffer allocates, counted as glibc's in-use bytes
 * (mallinfo2: each chunk with its header, rounded as malloc rounds it):
 * 272 (the struct) + 128 (dma_resv) + 32 (the backing's range) + 32 (its
 * frames) + 12 to 24 (the registry's hash slot, at its load and growth) =
 * about 480 today (528 with a registry tree node each, 656 before issue 11).
 * A field or an allocation more per buffer fails here, before it shows as
 * RSS.
 */
#define BUF_STRUCT_MAX 264
#define HEAP_PER_BUFFER_MAX 512
_Static_assert(sizeof(struct dmabuf) <= BUF_STRUCT_MAX,
	       "struct dmabuf grew: every live buffer pays for it (docs/performance.md)");

static void heap_per_buffer_is_bounded(void **state)
{
	enum { WARM = 64, N = 256 };
	struct test_exporter tx = { 0 };
	static struct dmabuf *bufs[N];
	struct dmabuf_ctx *ctx;
	struct mallinfo2 m0, m1;
	size_t per;

#ifdef __SANITIZE_ADDRESS__
	skip(); /* ASan's allocator keeps no glibc arena statistics */
#endif
	if (harness_under_valgrind())
		skip(); /* neither does valgrind's */
	ctx = tx_ctx_new(0);
	/* The first buffers make the context's endpoint, interned names and
	 * registry trees. */
	for (int i = 0; i < WARM; i++)
		assert_int_equal(dmabuf_put(tx_export(ctx, &tx, 4096, O_RDWR,
						      DMABUF_ALLOC_SYSTEM)), 0);
	m0 = mallinfo2();
	for (int i = 0; i < N; i++)
		bufs[i] = tx_export(ctx, &tx, 4096, O_RDWR, DMABUF_ALLOC_SYSTEM);
	m1 = mallinfo2();
	per = (m1.uordblks + m1.hblkhd - m0.uordblks - m0.hblkhd) / N;
	print_message("heap per live buffer: %zu B (bound %d), struct dmabuf %zu B\n", per,
		      HEAP_PER_BUFFER_MAX, sizeof(struct dmabuf));
	assert_true(per <= HEAP_PER_BUFFER_MAX);
	for (int i = 0; i < N; i++)
		assert_int_equal(dmabuf_put(bufs[i]), 0);
	assert_int_equal(tx.release, WARM + N);
	dmabuf_ctx_destroy(ctx);
}

/* dmb_backing_reopen_at() opens a new description of the same file through
 * /proc/self/fd, by the held directory or by the full path, for fd numbers
 * of one to three digits (its path is formatted by hand); a negative fd
 * gives what the open of "/proc/self/fd/-1" gives. */
static void reopen_path_is_the_fd(void **state)
{
	static const int nums[] = { 0, 7, 10, 99, 123, 509 };
	int memfd = memfd_create("reopen", MFD_CLOEXEC);
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat want, got;

	(void)state;
	assert_true(memfd >= 0);
	assert_true(dir >= 0);
	assert_int_equal(fstat(memfd, &want), 0);
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		int n = nums[i], saved = -1;

		if (n != memfd && fcntl(n, F_GETFD) >= 0)
			saved = fcntl(n, F_DUPFD_CLOEXEC, 600);	/* n is in use */
		assert_true(n == memfd || dup3(memfd, n, O_CLOEXEC) == n);
		for (int via_dir = 0; via_dir < 2; via_dir++) {
			int fd = dmb_backing_reopen_at(via_dir ? dir : -1, n, O_RDWR);

			assert_true(fd >= 0);
			assert_int_equal(fstat(fd, &got), 0);
			assert_true(got.st_ino == want.st_ino && got.st_dev == want.st_dev);
			/* a description of its own, not a dup of n's: its
			 * own file offset */
			assert_int_equal(lseek(fd, 5, SEEK_SET), 5);
			assert_int_equal(lseek(n, 0, SEEK_CUR), 0);
			close(fd);
		}
		if (n != memfd)
			close(n);
		if (saved >= 0) {
			assert_int_equal(dup3(saved, n, O_CLOEXEC), n);
			close(saved);
		}
	}
	assert_int_equal(dmb_backing_reopen_at(-1, -1, O_RDWR), -ENOENT);
	assert_int_equal(dmb_backing_reopen_at(dir, -1, O_RDWR), -ENOENT);
	close(dir);
	close(memfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(export_rejects_bad_info),
		harness_test(export_info_is_size_versioned),
		harness_test(first_layout_is_not_written_past),
		harness_test(fd_is_one_open_file_description),
		harness_test(get_finds_same_object),
		harness_test(get_again_of_the_same_file),
		harness_test(double_put_is_detected),
		harness_test(set_name_follows_kernel_rules),
		harness_test(export_failure_leaks_nothing),
		harness_test(ctx_destroy_releases_leftovers),
		harness_test(heap_per_buffer_is_bounded),
		harness_test(reopen_path_is_the_fd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
