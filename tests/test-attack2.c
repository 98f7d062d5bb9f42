/* SPDX-License-Identifier: MIT */
/*
 * The second adversarial review (after tests/test-attack.c): recycled
 * memfds (src/core/recycle.c) against holders that strip the release
 * probe's lock or inherited the memfd over fork(), the lazy context's
 * first-use errors, the service loop, and sync files against a holder's
 * shutdown(). Each test says whether it pinned a bug (its fix is in the
 * commit that added the test, or the commit it names) or a behaviour no
 * other test covered.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "exporter.h"
#include "sys.h"

#define SZ (64 * 1024ull)

static unsigned long ino_of(struct dmabuf *buf)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	return (unsigned long)info.inode;
}

/* Dispatches ctx until tx has seen @n releases (or 5 s of 10 ms turns). */
static void dispatch_until_released(struct dmabuf_ctx *ctx, struct test_exporter *tx, int n)
{
	for (int i = 0; i < 500 && tx->release < n; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
	assert_int_equal(tx->release, n);
}

/* A new buffer of the recycled kind (read-write, library backing, tx_ops,
 * SZ) filled with @byte through its fd; returns it and its inode. */
static struct dmabuf *secret_buffer(struct dmabuf_ctx *ctx, struct test_exporter *tx,
				    uint8_t byte, unsigned long *ino)
{
	struct dmabuf *buf = tx_export(ctx, tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	uint8_t *p;

	assert_true(fd >= 0);
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	memset(p, byte, SZ);
	munmap(p, SZ);
	close(fd);
	*ino = ino_of(buf);
	return buf;
}

/* Whether the file behind @fd shows @byte at its start. */
static bool fd_shows(int fd, uint8_t byte)
{
	uint8_t c = 0;

	assert_int_equal(pread(fd, &c, 1, 0), 1);
	return c == byte;
}

/* ---- 1. recycled memfds ------------------------------------------------- */

/* Bug (fixed in recycle.c): every holder of a buffer shares the dma-buf
 * file's open file description, so any of them can drop the probe's
 * shared flock with flock(fd, LOCK_UN). The probe then succeeds while it
 * still holds the file, the memfd went to the pool, and the next export
 * of that kind handed it to a new buffer: the old holder read (and wrote)
 * a buffer it was never given, possibly another peer's. A kept memfd must
 * be one nobody can reach: a recyclable buffer's release probe asks the
 * kernel (a read lease, refused while any description of the inode is
 * open for writing, release.c), which no holder can strip. */
static void lock_stripping_holder_never_gets_the_next_buffer(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM), *next;
	unsigned long ino = ino_of(buf), next_ino;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_UN), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_dispatch_timeout(ctx, 10);
	/* however the release went, the held memfd is nobody else's */
	next = secret_buffer(ctx, &tx, 0x5c, &next_ino);
	assert_true(next_ino != ino);
	assert_false(fd_shows(fd, 0x5c));
	assert_int_equal(dmabuf_put(next), 0);
	close(fd);
	dispatch_until_released(ctx, &tx, 2);
	dmabuf_ctx_destroy(ctx);
}

/* Bug (fixed in release.c): the same lock stripping reported the release
 * while the holder still had the file (ops->release ran, the exporter
 * freed what backs it): the probe was the flock alone. A recyclable
 * buffer's probe is the read lease now, which sees the holder's
 * read-write file however its locks stand. */
static void lock_stripping_holder_still_holds(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(flock(fd, LOCK_UN), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_dispatch_timeout(ctx, 10);
	if (tx.release) {
		close(fd);
		dmabuf_ctx_destroy(ctx);
		fail_msg("released while an fd is still open");
	}
	close(fd);
	dispatch_until_released(ctx, &tx, 1);
	dmabuf_ctx_destroy(ctx);
}


/* A holder whose own description of a read-write buffer's file is
 * O_RDONLY (reopened through /proc), handed back to dmabuf_get() after the
 * library's last put: the library holds it again (a dup, with the shared
 * flock) and lets it go at the next put, and the holder keeps it. strip:
 * the holder drops that lock first (flock(LOCK_UN)). */
struct ro_holder {
	struct dmabuf *buf;
	int ro;
};

static void ro_holder_make(struct dmabuf_ctx *ctx, struct test_exporter *tx,
			   struct ro_holder *h, bool strip)
{
	struct dmabuf *got;
	char path[64];
	int fd;

	h->buf = tx_export(ctx, tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(h->buf, O_CLOEXEC);
	assert_true(fd >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	h->ro = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(h->ro >= 0);
	/* the read-write file is still held: the put releases nothing */
	assert_int_equal(dmabuf_put(h->buf), 0);
	assert_int_equal(tx->release, 0);
	/* revived through the read-only description */
	assert_int_equal(dmabuf_get(ctx, h->ro, &got), 0);
	assert_ptr_equal(got, h->buf);
	close(fd);
	dmabuf_ctx_dispatch_timeout(ctx, 10);
	if (strip)
		assert_int_equal(flock(h->ro, LOCK_UN), 0);
	assert_int_equal(dmabuf_put(got), 0);
	dmabuf_ctx_dispatch_timeout(ctx, 10);
}

/* Bug (fixed in buffer.c's dmb_buf_get_ref()): the lease probe does not
 * see a description open for reading only, so a buffer revived through
 * one was reported released (and its memfd recycled) at the next put
 * while the holder still had it. Such a buffer is probed by the flock
 * (its description holds the shared lock) and never recycled. */
static void readonly_description_holder_still_holds(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct ro_holder h;

	ro_holder_make(ctx, &tx, &h, false);
	if (tx.release) {
		close(h.ro);
		dmabuf_ctx_destroy(ctx);
		fail_msg("released while a read-only description is still open");
	}
	close(h.ro);
	dispatch_until_released(ctx, &tx, 1);
	dmabuf_ctx_destroy(ctx);
}

/* Bug (fixed in buffer.c's dmb_buf_get_ref()): the same holder strips the
 * shared lock of its read-only description. The flock probe then
 * succeeds (a remaining limit: docs/design.md), but the memfd must not be
 * kept: the lease that once checked it before keeping it does not see a
 * reader, so the next export of that kind got it, and the holder read the
 * next buffer's bytes. */
static void lock_stripping_readonly_holder_never_gets_the_next_buffer(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *next;
	unsigned long ino, next_ino;
	struct ro_holder h;
	struct stat st;

	ro_holder_make(ctx, &tx, &h, true);
	/* the buffer may be gone (released early): the holder's inode */
	assert_int_equal(fstat(h.ro, &st), 0);
	ino = (unsigned long)st.st_ino;
	next = secret_buffer(ctx, &tx, 0x6d, &next_ino);
	assert_true(next_ino != ino);
	assert_false(fd_shows(h.ro, 0x6d));
	assert_int_equal(dmabuf_put(next), 0);
	close(h.ro);
	dispatch_until_released(ctx, &tx, 2);
	dmabuf_ctx_destroy(ctx);
}

/* The same holder in another process (the fd sent over a socket, passed
 * on to a third process that strips the lock and keeps it). */
struct third {
	int sock;
	struct harness_sync sync;
};

static int third_holder(void *arg)
{
	struct third *t = arg;
	int fd = -1, ret;
	size_t len;
	char c;

	harness_sync_child(&t->sync);
	ret = dmabuf_recv_fd(t->sock, &fd, &c, 1, &len);
	child_check(ret == 0 && fd >= 0);
	close(t->sock);
	child_check(flock(fd, LOCK_UN) == 0);
	harness_sync_tell_parent(&t->sync, 'h');
	/* the parent made its next buffer: this old fd must not show it */
	child_check(harness_sync_wait_parent(&t->sync) == 'n');
	child_check(!fd_shows(fd, 0x3e));
	close(fd);
	harness_sync_tell_parent(&t->sync, 'c');
	return 0;
}

static void lock_stripping_third_process(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf, *next;
	unsigned long ino, next_ino;
	struct third t;
	int sock, fd;
	pid_t pid;

	/* forked before the buffer exists: it has no copy of the memfd */
	pid = harness_fork_paired(third_holder, &t, SOCK_SEQPACKET, &t.sync, &t.sock, &sock);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	ino = ino_of(buf);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_send_fd(sock, fd, "f", 1), 0);
	close(sock);
	close(fd);
	assert_int_equal(harness_sync_wait_child(&t.sync), 'h');
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_dispatch_timeout(ctx, 10);
	next = secret_buffer(ctx, &tx, 0x3e, &next_ino);
	assert_true(next_ino != ino);
	harness_sync_tell_child(&t.sync, 'n');
	assert_int_equal(harness_sync_wait_child(&t.sync), 'c');
	assert_int_equal(harness_wait(pid), 0);
	harness_sync_close(&t.sync);
	assert_int_equal(dmabuf_put(next), 0);
	dispatch_until_released(ctx, &tx, 2);
	dmabuf_ctx_destroy(ctx);
}

/* Bug (fixed in recycle.c): a fork() child inherits every fd of the
 * parent, the memfds of its live buffers too. The pool dropped only what
 * it held at the fork: a buffer alive then (never shared, so its last put
 * releases at once) was kept at its release and its memfd given to the
 * next export while the child could still read and write it through the
 * inherited fd. A memfd that existed at a fork is never kept now. */
struct forked {
	unsigned long ino;
	struct harness_sync sync;
};

/* The inherited fd of inode @ino, or -1. */
static int inherited_fd(unsigned long ino)
{
	int fds[256], n = harness_list_fds(fds, 256);
	struct stat st;

	for (int i = 0; i < n; i++)
		if (fstat(fds[i], &st) == 0 && (unsigned long)st.st_ino == ino &&
		    S_ISREG(st.st_mode))
			return fds[i];
	return -1;
}

static int fork_holder(void *arg)
{
	struct forked *f = arg;
	int fd;

	harness_sync_child(&f->sync);
	fd = inherited_fd(f->ino);
	child_check(fd >= 0);
	harness_sync_tell_parent(&f->sync, 'h');
	child_check(harness_sync_wait_parent(&f->sync) == 'n');
	child_check(!fd_shows(fd, 0x77));
	return 0;
}

static void fork_child_never_gets_the_next_buffer(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	/* never shared: its last put releases it at once */
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM), *next;
	struct forked f = { .ino = ino_of(buf) };
	unsigned long next_ino;
	pid_t pid;

	harness_sync_init(&f.sync);
	pid = harness_fork(fork_holder, &f);
	harness_sync_parent(&f.sync);
	assert_int_equal(harness_sync_wait_child(&f.sync), 'h');
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	next = secret_buffer(ctx, &tx, 0x77, &next_ino);
	assert_true(next_ino != f.ino);
	harness_sync_tell_child(&f.sync, 'n');
	assert_int_equal(harness_wait(pid), 0);
	harness_sync_close(&f.sync);
	assert_int_equal(dmabuf_put(next), 0);
	assert_int_equal(tx.release, 2);
	/* memfds made after the fork are kept again */
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	f.ino = ino_of(buf);
	assert_int_equal(dmabuf_put(buf), 0);
	next = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(ino_of(next), f.ino);
	assert_int_equal(dmabuf_put(next), 0);
	dmabuf_ctx_destroy(ctx);
}

/* ---- 2. the lazy context ----------------------------------------------- */

/* The process at RLIMIT_NOFILE with @room fds free: the limit is set just
 * above the highest fd and every free number below it filled with a dup.
 * fill[] (1024) gets the fillers; returns how many. */
static int fds_leave(int room, struct rlimit *old, int *fill)
{
	int fds[1024], n = harness_list_fds(fds, 1024), top = 0, nfill = 0;
	struct rlimit rl;

	for (int i = 0; i < n; i++)
		top = fds[i] > top ? fds[i] : top;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, old), 0);
	rl = *old;
	rl.rlim_cur = (rlim_t)top + 1;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	while (nfill < 1024 && (fill[nfill] = dup(0)) >= 0)
		nfill++;
	assert_int_equal(errno, EMFILE);
	for (int i = 0; i < room && nfill > 0; i++)
		close(fill[--nfill]);
	return nfill;
}

static void fds_restore(const struct rlimit *old, int *fill, int nfill)
{
	assert_int_equal(setrlimit(RLIMIT_NOFILE, old), 0);
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
}

/* Not a bug: a context's first share makes its inotify fd, re-probe timer
 * and /proc/self/fd directory (and the dma-buf file, and the caller's
 * dup). Short of fds at any of those steps, dmabuf_fd() is -EMFILE with
 * nothing left half-made (what of the context's inotify fd, timer and fd
 * directory was made stays, whole, for the next share: no other fd), and
 * the same call works once fds are free; the buffer then releases. */
static void first_share_short_of_fds(void **state)
{
	if (harness_under_valgrind())
		skip(); /* valgrind's RLIMIT_NOFILE is its own */
	for (int room = 0; room <= 6; room++) {
		struct dmabuf_ctx *ctx = tx_ctx_new(DMABUF_CTX_NO_RECYCLE);
		struct test_exporter tx = { 0 };
		struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		int fill[1024], nfill, fds0 = harness_count_fds(), fd;
		struct rlimit old;

		nfill = fds_leave(room, &old, fill);
		fd = dmabuf_fd(buf, O_CLOEXEC);
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
		if (fd < 0) {
			/* at most the context's inotify fd, re-probe timer
			 * and fd directory, each whole, kept for the next
			 * share */
			assert_int_equal(fd, -EMFILE);
			assert_true(harness_count_fds() <= fds0 + nfill + 3);
		}
		fds_restore(&old, fill, nfill);
		if (fd < 0)
			fd = dmabuf_fd(buf, O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(dmabuf_put(buf), 0);
		close(fd);
		dispatch_until_released(ctx, &tx, 1);
		dmabuf_ctx_destroy(ctx);
	}
}

/* Not a bug: one fault at any point of a context's first uses (export
 * with system memory, which makes the frame bitmap; vmap; the first
 * share, which makes the release sources; a CPU mapping; the last put,
 * which arms the watch), for each faultable call: the call that meets it
 * fails with a negative errno, and with the fault gone the same call
 * works; nothing leaks (fds, the release). */
static void first_use_faults(void **state)
{
	static const struct {
		enum dmb_sys_call call;
		int err;
	} faults[] = {
		{ DMB_SYS_CALLOC, ENOMEM }, { DMB_SYS_MEMFD_CREATE, EMFILE },
		{ DMB_SYS_REOPEN, EMFILE }, { DMB_SYS_MMAP, ENOMEM },
		{ DMB_SYS_DUP, EMFILE }, { DMB_SYS_INOTIFY_ADD_WATCH, ENOSPC },
	};

	for (size_t k = 0; k < sizeof(faults) / sizeof(faults[0]); k++) {
		for (unsigned int nth = 1; nth <= 6; nth++) {
			int fds0 = harness_count_fds(), fd, ret;
			struct dmabuf_ctx *ctx = tx_ctx_new(0);
			struct test_exporter tx = { 0 };
			struct dmabuf_export_info info = {
				.exp_name = "test", .ops = &tx_ops, .size = SZ,
				.flags = O_RDWR, .priv = &tx, .alloc = DMABUF_ALLOC_SYSTEM,
			};
			struct dmabuf *buf = NULL;
			void *v = NULL, *p = NULL;

			dmb_sys_inject(faults[k].call, nth, faults[k].err);
			ret = dmabuf_export(ctx, &info, &buf);
			if (ret < 0) {
				assert_null(buf);
				dmb_sys_inject(faults[k].call, 0, 0);
				assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
			}
			ret = dmabuf_vmap(buf, &v);
			if (ret < 0) {
				dmb_sys_inject(faults[k].call, 0, 0);
				assert_int_equal(dmabuf_vmap(buf, &v), 0);
			}
			memset(v, 0x11, 16);
			fd = dmabuf_fd(buf, O_CLOEXEC);
			if (fd < 0) {
				dmb_sys_inject(faults[k].call, 0, 0);
				fd = dmabuf_fd(buf, O_CLOEXEC);
			}
			assert_true(fd >= 0);
			ret = dmabuf_mmap(buf, 0, SZ, PROT_READ, &p);
			if (ret < 0) {
				dmb_sys_inject(faults[k].call, 0, 0);
				assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ, &p), 0);
			}
			assert_int_equal(((uint8_t *)p)[0], 0x11);
			assert_int_equal(dmabuf_munmap(buf, p, SZ), 0);
			dmabuf_vunmap(buf, v);
			assert_int_equal(dmabuf_put(buf), 0);
			close(fd);
			dmb_sys_inject(faults[k].call, 0, 0);
			for (int i = 0; i < 100 && tx.release < 1; i++)
				dmabuf_ctx_dispatch_timeout(ctx, 10);
			dmabuf_ctx_destroy(ctx);
			assert_int_equal(tx.release, 1);
			assert_int_equal(harness_count_fds(), fds0);
		}
	}
}

/* Bug (fixed in buffer.c's share()): the kept memfds are the first fds to
 * go when the process is out of them (docs/design.md §1), but the first
 * share of a context made its inotify fd and re-probe timer without
 * that: with the pool holding 4 memfds and one fd free, dmabuf_fd() was
 * -EMFILE. */
static void first_share_at_the_fd_limit_drops_kept_memfds(void **state)
{
	struct dmabuf_ctx *ctx;
	struct test_exporter tx = { 0 };
	struct dmabuf *b[5], *buf;
	int fill[1024], nfill, fd;
	struct rlimit old;

	if (harness_under_valgrind())
		skip(); /* valgrind's RLIMIT_NOFILE is its own */
	ctx = tx_ctx_new(0);
	/* never shared: released by their puts, 4 kept (of 4 kinds) */
	for (int i = 0; i < 5; i++)
		b[i] = tx_export(ctx, &tx, (uint64_t)(i + 1) * SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	for (int i = 0; i < 5; i++)
		assert_int_equal(dmabuf_put(b[i]), 0);
	buf = tx_export(ctx, &tx, 8 * SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	nfill = fds_leave(1, &old, fill);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	fds_restore(&old, fill, nfill);
	if (fd >= 0)
		close(fd);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dispatch_until_released(ctx, &tx, 6);
	dmabuf_ctx_destroy(ctx);
}

/* ---- 3. the service thread --------------------------------------------- */

#define ROUNDS 200

struct imp_env {
	int sock;
	bool tolerant; /* the exporter may go away: errors end the loop */
};

/* Imports the buffer it is sent, says 'r', makes ROUNDS attach / map /
 * unmap / detach cycles (tolerant: until a call fails, with a negative
 * errno), then says 'd' (if the socket is still there). */
static int hammer(void *arg)
{
	struct imp_env *env = arg;
	struct dmabuf_device *dev;
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	int fd = tx_child_import(env->sock, "a2-imp", &ctx, &dev, &buf);

	child_check(dmabuf_send_fd(env->sock, -1, "r", 1) == 0);
	for (int i = 0; i < ROUNDS; i++) {
		struct dmabuf_attachment *att;
		struct dmabuf_sg_table *sgt;
		int ret = dmabuf_attach(buf, dev, &att);

		if (env->tolerant && ret < 0)
			break;
		child_check(ret == 0);
		ret = dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt);
		if (ret == 0)
			child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
		child_check(ret == 0 || (env->tolerant && ret < 0));
		child_check(dmabuf_detach(buf, att) == 0);
		if (ret < 0)
			break;
	}
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	child_check(dmabuf_device_destroy(dev) == 0);
	dmabuf_ctx_destroy(ctx);
	dmabuf_send_fd(env->sock, -1, "d", 1);
	return 0;
}

/* A child forked from a process whose service thread serves a peer: a
 * context of its own, a whole buffer life and a service thread of its
 * own, under a watchdog (a lock inherited held would hang it). */
static int forked_user(void *arg)
{
	struct dmabuf_ctx *ctx;
	struct test_exporter tx = { 0 };
	struct dmabuf *buf;
	int fd;

	(void)arg;
	alarm(60);
	ctx = tx_ctx_new(0);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	child_check(fd >= 0);
	child_check(dmabuf_ctx_start_thread(ctx) == 0);
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	for (int i = 0; i < 500 && tx.release < 1; i++)
		usleep(10000);
	child_check(tx.release == 1);
	child_check(dmabuf_ctx_stop_thread(ctx) == 0);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

/* Not a bug: fork() while the service thread serves an importer's
 * requests (the thread in its epoll_wait, or holding the context's lock
 * mid-request): each child makes and uses a context and a service thread
 * of its own, and the parent's importer finishes its cycles. */
static void fork_while_the_service_thread_serves(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct imp_env env = { 0 };
	int sock;
	pid_t pid;

	assert_int_equal(dmabuf_ctx_start_thread(ctx), 0);
	pid = tx_fork_importer(buf, hammer, &env, &env.sock, &sock);
	assert_int_equal(tx_wait_byte(sock, NULL), 'r');
	for (int i = 0; i < 10; i++)
		assert_int_equal(harness_wait(harness_fork(forked_user, NULL)), 0);
	assert_int_equal(tx_wait_byte(sock, NULL), 'd');
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	assert_int_equal(dmabuf_ctx_stop_thread(ctx), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dispatch_until_released(ctx, &tx, 1);
	dmabuf_ctx_destroy(ctx);
}

/* Not a bug: the exporter destroys its context (service thread running)
 * while an importer's requests are in flight: the importer's calls fail
 * with a negative errno, none hangs, and the exporter leaks no fd. */
static void destroy_while_requests_are_in_flight(void **state)
{
	for (int delay = 0; delay < 4; delay++) {
		int fds0 = harness_count_fds();
		struct dmabuf_ctx *ctx = tx_ctx_new(0);
		struct test_exporter tx = { 0 };
		struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		struct imp_env env = { .tolerant = true };
		int sock;
		pid_t pid;

		assert_int_equal(dmabuf_ctx_start_thread(ctx), 0);
		pid = tx_fork_importer(buf, hammer, &env, &env.sock, &sock);
		assert_int_equal(tx_wait_byte(sock, NULL), 'r');
		usleep(delay * 2000);
		assert_int_equal(dmabuf_put(buf), 0);
		dmabuf_ctx_destroy(ctx);
		assert_int_equal(harness_wait(pid), 0);
		close(sock);
		assert_int_equal(tx.release, 1);
		assert_int_equal(harness_count_fds(), fds0);
	}
}

/* ---- 4. sync files ----------------------------------------------------- */

/* Found here, fixed in sync_file.c since: a sync file is one end of a Unix
 * socket pair that every holder shares, and the kernel lets any holder
 * shut it down. shutdown(fd, SHUT_RDWR) in one process made the fence
 * poll as signalled, and read as signalled (with an error), in every other
 * process that holds it, while it was still pending: in the kernel no
 * holder can change a sync file's state. The library now believes an EOF
 * without a record only once the signaller's end is closed
 * (docs/fences.md, "A holder's shutdown()"). */
struct sf_victim {
	int fd;
};

static int sf_victim_sees_pending(void *arg)
{
	struct sf_victim *v = arg;
	int status = 99;

	child_check(dmabuf_sync_file_info(v->fd, &status, NULL, 0) >= 0);
	child_check(status == 0);
	child_check(dmabuf_sync_file_wait(v->fd, 0) == 0);
	return 0;
}

static int sf_shutter(void *arg)
{
	struct sf_victim *v = arg;

	child_check(shutdown(v->fd, SHUT_RDWR) == 0);
	return 0;
}

static void holder_cannot_signal_a_sync_file(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;
	struct sf_victim v;
	int ok;

	assert_int_equal(dmabuf_timeline_new("attack2", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &f), 0);
	v.fd = dmabuf_sync_file_export(f);
	assert_true(v.fd >= 0);
	/* a victim before the shutdown sees it pending (the check is sound) */
	assert_int_equal(harness_wait(harness_fork(sf_victim_sees_pending, &v)), 0);
	assert_int_equal(harness_wait(harness_fork(sf_shutter, &v)), 0);
	ok = harness_wait(harness_fork(sf_victim_sees_pending, &v));
	assert_false(dmabuf_fence_is_signaled(f));
	dmabuf_timeline_inc(tl, 1);
	close(v.fd);
	dmabuf_fence_put(f);
	dmabuf_timeline_destroy(tl);
	assert_int_equal(ok, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(lock_stripping_holder_never_gets_the_next_buffer),
		harness_test(lock_stripping_holder_still_holds),
		harness_test(readonly_description_holder_still_holds),
		harness_test(lock_stripping_readonly_holder_never_gets_the_next_buffer),
		harness_test(lock_stripping_third_process),
		harness_test(fork_child_never_gets_the_next_buffer),
		harness_test(first_share_short_of_fds),
		harness_test(first_use_faults),
		harness_test(first_share_at_the_fd_limit_drops_kept_memfds),
		harness_test(fork_while_the_service_thread_serves),
		harness_test(destroy_while_requests_are_in_flight),
		harness_test(holder_cannot_signal_a_sync_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
