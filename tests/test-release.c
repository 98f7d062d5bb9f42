/* SPDX-License-Identifier: MIT */
/*
 * ops->release runs exactly once, after the last reference, the last fd in
 * any process, the last fd in flight in a socket and the last mmap.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sys/stat.h>

#include "dmabuf-scm.h"
#include "exporter.h"
#include "sys.h"

#define SZ (16 * 4096)

/* Dispatches until the exporter released the buffer or ~5 s passed. */
static void dispatch_until_released(struct dmabuf_ctx *ctx, struct test_exporter *tx)
{
	for (int i = 0; i < 500 && !tx->release; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
}

static void release_after_last_put_and_fd(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC), fd2 = dup(fd);

	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 0);
	close(fd);
	dmabuf_ctx_dispatch(ctx);
	assert_int_equal(tx.release, 0); /* fd2 still holds the file */
	close(fd2);
	dispatch_until_released(ctx, &tx);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_dispatch(ctx);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 1); /* once, not again at teardown */
}

static void release_at_put_when_no_fd(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_ctx_stats st = { 0 };

	assert_ptr_equal(dmabuf_ref(buf), buf);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	/* No fd anywhere: release runs inside the last put. */
	assert_int_equal(tx.release, 1);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.buffers_live, 0);
	assert_int_equal(st.buffers_released, 1);
	assert_int_equal(st.phys_used, 0);
	dmabuf_ctx_destroy(ctx);
}

static void mmap_keeps_buffer_alive(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	uint8_t *p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	void *q;

	assert_true(p != MAP_FAILED);
	close(fd);
	/* A dmabuf_mmap() mapping holds the file as well. */
	assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ, &q), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_dispatch(ctx);
	assert_int_equal(tx.release, 0);
	p[0] = 1; /* still valid */
	munmap(p, SZ);
	dmabuf_ctx_dispatch(ctx);
	assert_int_equal(tx.release, 0);
	assert_int_equal(((uint8_t *)q)[0], 1);
	assert_int_equal(dmabuf_munmap(buf, q, SZ), 0);
	assert_int_equal(tx.release, 1); /* the last holder went with it */
	dmabuf_ctx_destroy(ctx);
}

static void fd_in_flight_keeps_buffer_alive(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int sv[2], fd = dmabuf_fd(buf, O_CLOEXEC), got;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "F", 1), 0);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_dispatch_timeout(ctx, 20);
	/* No process has an fd, but one is in flight in the socket. */
	assert_int_equal(tx.release, 0);
	char c;
	size_t len;

	assert_int_equal(dmabuf_recv_fd(sv[1], &got, &c, 1, &len), 0);
	assert_true(got >= 0);
	close(got);
	dispatch_until_released(ctx, &tx);
	assert_int_equal(tx.release, 1);
	close(sv[0]);
	close(sv[1]);
	dmabuf_ctx_destroy(ctx);
}

/* Closes every fd except the ones in keep[]: what a device process that
 * only holds the buffer would have. */
static void close_all_but(const int *keep, int nkeep)
{
	int fds[1024], n = harness_list_fds(fds, 1024);

	for (int i = 0; i < n; i++) {
		bool kept = false;

		for (int k = 0; k < nkeep; k++)
			kept |= fds[i] == keep[k];
		/* valgrind keeps its own fds above 1024: leave them */
		if (!kept && fds[i] < 1024)
			close(fds[i]);
	}
}

struct child_args {
	struct harness_sync *sync;
	int fd;
};

static int child_holds_fd_and_mapping(void *arg)
{
	struct child_args *a = arg;
	int keep[] = { a->fd, a->sync->to_child[0], a->sync->to_parent[1] };
	uint8_t *p;

	harness_sync_child(a->sync);
	close_all_but(keep, 3);
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
	child_check(p != MAP_FAILED);
	harness_sync_tell_parent(a->sync, 'm');
	child_check(harness_sync_wait_parent(a->sync) == 'c');
	close(a->fd);
	harness_sync_tell_parent(a->sync, 'c');
	child_check(harness_sync_wait_parent(a->sync) == 'u');
	p[SZ - 1] = 0x5a; /* the memory is still there */
	munmap(p, SZ);
	harness_sync_tell_parent(a->sync, 'u');
	child_check(harness_sync_wait_parent(a->sync) == 'q');
	return 0;
}

static void child_fd_and_mapping_keep_buffer_alive(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct harness_sync sync;
	struct child_args a = { .sync = &sync };
	pid_t pid;

	harness_sync_init(&sync);
	a.fd = dmabuf_fd(buf, O_CLOEXEC);
	pid = harness_fork(child_holds_fd_and_mapping, &a);
	harness_sync_parent(&sync);
	close(a.fd);
	assert_int_equal(harness_sync_wait_child(&sync), 'm');
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_dispatch_timeout(ctx, 20);
	assert_int_equal(tx.release, 0); /* child: fd + mapping */
	harness_sync_tell_child(&sync, 'c');
	assert_int_equal(harness_sync_wait_child(&sync), 'c');
	dmabuf_ctx_dispatch_timeout(ctx, 20);
	assert_int_equal(tx.release, 0); /* child: mapping only */
	harness_sync_tell_child(&sync, 'u');
	assert_int_equal(harness_sync_wait_child(&sync), 'u');
	dispatch_until_released(ctx, &tx);
	assert_int_equal(tx.release, 1);
	harness_sync_tell_child(&sync, 'q');
	assert_int_equal(harness_wait(pid), 0);
	dmabuf_ctx_dispatch_timeout(ctx, 20);
	assert_int_equal(tx.release, 1);
	harness_sync_close(&sync);
	dmabuf_ctx_destroy(ctx);
}

static void get_revives_orphaned_buffer(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *again;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_int_equal(dmabuf_put(buf), 0); /* only the fd is left */
	assert_int_equal(dmabuf_get(ctx, fd, &again), 0);
	assert_ptr_equal(again, buf);
	close(fd);
	dmabuf_ctx_dispatch_timeout(ctx, 20);
	assert_int_equal(tx.release, 0); /* the new reference holds it */
	assert_int_equal(dmabuf_put(again), 0);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(ctx);
}

static int open_path(int fd)
{
	char path[64];
	int o;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	o = open(path, O_PATH | O_CLOEXEC);
	assert_true(o >= 0);
	return o;
}

/* An O_PATH fd of the buffer's inode is not an open file of it: it holds no
 * reference in the kernel sense (fget() refuses it: dma_buf_get() and the
 * ioctls answer -EBADF), so it must neither revive an orphan nor keep the
 * buffer alive. */
static void o_path_fd_is_no_holder(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *again = NULL;
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	int live = open_path(fd), orphan;

	/* of a live buffer */
	assert_int_equal(dmabuf_get(ctx, live, &again), -EBADF);
	assert_null(again);
	assert_int_equal(dmabuf_fd_sync(ctx, live, DMABUF_SYNC_START | DMABUF_SYNC_READ), -EBADF);
	assert_int_equal(tx.begin, 0);
	close(live);
	/* of an orphan: only fd holds it */
	assert_int_equal(dmabuf_put(buf), 0);
	orphan = open_path(fd);
	assert_int_equal(dmabuf_get(ctx, orphan, &again), -EBADF);
	assert_null(again);
	assert_int_equal(dmabuf_fd_sync(ctx, orphan, DMABUF_SYNC_START | DMABUF_SYNC_RW), -EBADF);
	assert_int_equal(tx.begin, 0);
	assert_int_equal(tx.release, 0); /* fd still holds the file */
	/* the last real fd goes: release, although the O_PATH fd is open */
	close(fd);
	for (int i = 0; i < 500 && tx.release == 0; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 2);
	assert_int_equal(tx.release, 1);
	assert_int_equal(dmabuf_get(ctx, orphan, &again), -EBADF);
	close(orphan);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 1);
}

/* An exporter that writes down the order of its CPU-access, vmap and
 * release calls. */
struct seq_exporter {
	struct test_exporter tx; /* first: tx_* ops see it as theirs */
	char seq[64];
	size_t n;
};

static void seq_add(struct dmabuf *buf, char c)
{
	struct seq_exporter *s = dmabuf_get_priv(buf);

	if (s->n + 1 < sizeof(s->seq))
		s->seq[s->n++] = c;
}

static int seq_begin(struct dmabuf *buf, enum dmabuf_direction dir)
{
	seq_add(buf, "BWR"[dir]); /* BIDIRECTIONAL, write (TO_DEVICE), read */
	return tx_begin(buf, dir);
}

static int seq_end(struct dmabuf *buf, enum dmabuf_direction dir)
{
	seq_add(buf, "bwr"[dir]);
	return tx_end(buf, dir);
}

static int seq_vmap(struct dmabuf *buf, void **vaddr)
{
	seq_add(buf, 'V');
	return tx_vmap(buf, vaddr);
}

static void seq_vunmap(struct dmabuf *buf, void *vaddr)
{
	seq_add(buf, 'v');
	tx_vunmap(buf, vaddr);
}

static void seq_release(struct dmabuf *buf)
{
	seq_add(buf, '.');
	tx_release(buf);
}

static struct dmabuf *seq_export(struct dmabuf_ctx *ctx, struct seq_exporter *s,
				 struct dmabuf_ops *ops)
{
	struct dmabuf_export_info info = {
		.exp_name = "seq", .ops = ops, .size = SZ, .flags = O_RDWR, .priv = s,
	};
	struct dmabuf *buf = NULL;

	*ops = tx_ops;
	ops->begin_cpu_access = seq_begin;
	ops->end_cpu_access = seq_end;
	ops->vmap = seq_vmap;
	ops->vunmap = seq_vunmap;
	ops->release = seq_release;
	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	return buf;
}

/* A holder that puts the buffer with CPU brackets still open: every open
 * bracket is ended, once, before ops->release, and before the vmap it
 * was opened under goes (as attachments and vmaps are undone). */
static void release_ends_open_cpu_brackets(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct seq_exporter s = { 0 };
	struct dmabuf_ops ops;
	struct dmabuf *buf = seq_export(ctx, &s, &ops);
	void *v;
	int fd;

	assert_int_equal(dmabuf_vmap(buf, &v), 0);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_put(buf), 0); /* the last holder */
	assert_int_equal(s.tx.release, 1);
	assert_int_equal(s.tx.end, s.tx.begin);
	/* the open ones end in some order, each once, then the vmap, then release */
	assert_int_equal(s.n, 9);
	assert_memory_equal(s.seq, "VRBRr", 5);
	assert_true((s.seq[5] == 'r' && s.seq[6] == 'b') || (s.seq[5] == 'b' && s.seq[6] == 'r'));
	assert_memory_equal(s.seq + 7, "v.", 2);

	/* a bracket opened through an fd of an orphan, whose fd then goes */
	memset(&s, 0, sizeof(s));
	buf = seq_export(ctx, &s, &ops);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_fd_sync(ctx, fd, DMABUF_SYNC_START | DMABUF_SYNC_WRITE), 0);
	close(fd);
	dispatch_until_released(ctx, &s.tx);
	assert_int_equal(s.tx.release, 1);
	assert_int_equal(s.n, 3);
	assert_memory_equal(s.seq, "Ww.", 3);
	dmabuf_ctx_destroy(ctx);
}

static void many_buffers_release_independently(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx[8] = { 0 };
	struct dmabuf *buf[8];
	int fd[8];

	for (int i = 0; i < 8; i++) {
		buf[i] = tx_export(ctx, &tx[i], SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		fd[i] = dmabuf_fd(buf[i], O_CLOEXEC);
		assert_int_equal(dmabuf_put(buf[i]), 0);
	}
	for (int i = 0; i < 8; i += 2)
		close(fd[i]);
	for (int i = 0; i < 50; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 2);
	for (int i = 0; i < 8; i++)
		assert_int_equal(tx[i].release, i % 2 == 0);
	for (int i = 1; i < 8; i += 2)
		close(fd[i]);
	for (int i = 0; i < 50; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 2);
	for (int i = 0; i < 8; i++)
		assert_int_equal(tx[i].release, 1);
	dmabuf_ctx_destroy(ctx);
}

static void release_survives_inotify_overflow(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 }, last = { 0 };
	struct dmabuf *buf;
	int fd;

	/* Each synchronous release of a shared buffer queues two events
	 * (its file's close, the one-shot watch removed); with nobody
	 * dispatching, 8300 of them overflow the kernel's queue of 16384
	 * events. (A buffer never shared has no watch.) */
	for (int i = 0; i < 8300; i++) {
		buf = tx_export(ctx, &tx, 4096, O_RDWR, DMABUF_ALLOC_SYSTEM);
		fd = dmabuf_fd(buf, O_CLOEXEC);
		assert_true(fd >= 0);
		close(fd);
		assert_int_equal(dmabuf_put(buf), 0);
	}
	assert_int_equal(tx.release, 8300);
	/* This buffer's close event is lost in the overflow... */
	buf = tx_export(ctx, &last, 4096, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	/* ...and the overflow event makes the exporter look again. */
	dispatch_until_released(ctx, &last);
	assert_int_equal(last.release, 1);
	dmabuf_ctx_destroy(ctx);
}

/* The inotify watches of this process's inotify fds (their fdinfo). */
static int count_watches(void)
{
	int fds[1024], n = harness_list_fds(fds, 1024), watches = 0;

	for (int i = 0; i < n; i++) {
		char path[64], link[64], line[256];
		ssize_t len;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i]);
		len = readlink(path, link, sizeof(link) - 1);
		if (len < 0)
			continue;
		link[len] = '\0';
		if (strcmp(link, "anon_inode:inotify"))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fds[i]);
		f = fopen(path, "re");
		while (f && fgets(line, sizeof(line), f))
			watches += !strncmp(line, "inotify wd:", 11);
		if (f)
			fclose(f);
	}
	return watches;
}

/* (Without recycling, which keeps released memfds: see the tests at the
 * end.)
 * issue 11: one fd per buffer (RLIMIT_NOFILE bounds the buffers, not half
 * of it), and an inotify watch only while a buffer is an orphan. */
static void one_fd_per_buffer_and_watches_for_orphans(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(DMABUF_CTX_NO_RECYCLE);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf[3];
	int fds0, fd;

	/* the first export makes the context's endpoint: count after it */
	buf[0] = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fds0 = harness_count_fds() - 1;
	for (int i = 1; i < 3; i++)
		buf[i] = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(harness_count_fds(), fds0 + 3);
	assert_int_equal(count_watches(), 0);
	/* shared: the dma-buf file too, while there are fds to spare */
	fd = dmabuf_fd(buf[0], O_CLOEXEC);
	assert_true(fd >= 0);
	/* the context's /proc/self/fd, inotify fd and re-probe timerfd,
	 * made at its first share */
	fds0 += 3;
	assert_int_equal(harness_count_fds(), fds0 + 3 + 2);
	assert_int_equal(count_watches(), 0);
	/* an orphan: its probe alone, and its watch */
	assert_int_equal(dmabuf_put(buf[0]), 0);
	assert_int_equal(harness_count_fds(), fds0 + 3 + 1);
	assert_int_equal(count_watches(), 1);
	close(fd);
	dispatch_until_released(ctx, &tx);
	assert_int_equal(tx.release, 1);
	assert_int_equal(harness_count_fds(), fds0 + 2);
	assert_int_equal(count_watches(), 0);
	assert_int_equal(dmabuf_put(buf[1]), 0);
	assert_int_equal(dmabuf_put(buf[2]), 0);
	assert_int_equal(tx.release, 3);
	assert_int_equal(harness_count_fds(), fds0);
	dmabuf_ctx_destroy(ctx);
}

/* Lowers RLIMIT_NOFILE's soft limit to `soft`; the old limit in *old. */
static void nofile_set(rlim_t soft, struct rlimit *old)
{
	struct rlimit rl;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, old), 0);
	rl = *old;
	assert_true(soft <= rl.rlim_max);
	rl.rlim_cur = soft;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

#define SPARE_NOFILE 512 /* so 32 buffers (1/16) may hold a spare fd */
#define SPARE_BUDGET (SPARE_NOFILE / 16)

/* issue 11: a shared buffer with references keeps its second fd (its last
 * put then reopens nothing) however many buffers are live; past 1/16 of
 * the fd limit of them, one walk trims them to half of that. On the code
 * before, 64 live buffers (past 1/16) trimmed every shared buffer at once:
 * two syscalls per buffer life. */
static void spare_fds_trimmed_in_batches(void **state)
{
	struct test_exporter tx = { 0 };
	struct dmabuf *unshared[2 * SPARE_BUDGET], *shared[SPARE_BUDGET + 9];
	struct dmabuf_ctx *ctx;
	struct rlimit old;
	int fds0, fd;

	nofile_set(SPARE_NOFILE, &old);
	ctx = tx_ctx_new(DMABUF_CTX_NO_RECYCLE);
	for (int i = 0; i < 2 * SPARE_BUDGET; i++)
		unshared[i] = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	for (int i = 0; i < SPARE_BUDGET + 9; i++)
		shared[i] = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fds0 = harness_count_fds();
	/* the life of one more buffer with 64 + 41 live: fd, get, put, close,
	 * put: both fds kept until the last put, released at once */
	{
		struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM), *got;

		fd = dmabuf_fd(buf, O_CLOEXEC);
		assert_true(fd >= 0);
		/* the context's /proc/self/fd, inotify fd and re-probe
		 * timerfd, made at its first share */
		fds0 += 3;
		/* its memfd, the dma-buf file and the caller's fd */
		assert_int_equal(harness_count_fds(), fds0 + 3);
		assert_int_equal(dmabuf_get(ctx, fd, &got), 0);
		assert_ptr_equal(got, buf);
		assert_int_equal(dmabuf_put(got), 0);
		close(fd);
		assert_int_equal(dmabuf_put(buf), 0);
		assert_int_equal(tx.release, 1);
		assert_int_equal(harness_count_fds(), fds0);
	}
	/* shared pool buffers, fd handed out and closed, reference kept:
	 * never more than the budget of spare fds */
	for (int i = 0; i < SPARE_BUDGET + 9; i++) {
		fd = dmabuf_fd(shared[i], O_CLOEXEC);
		assert_true(fd >= 0);
		close(fd);
		assert_true(harness_count_fds() - fds0 <= SPARE_BUDGET);
		/* the 33rd spare trims them to 16, in one go */
		assert_int_equal(harness_count_fds() - fds0,
				 i < SPARE_BUDGET ? i + 1 : SPARE_BUDGET / 2 + i - SPARE_BUDGET);
	}
	for (int i = 0; i < SPARE_BUDGET + 9; i++)
		assert_int_equal(dmabuf_put(shared[i]), 0);
	for (int i = 0; i < 2 * SPARE_BUDGET; i++)
		assert_int_equal(dmabuf_put(unshared[i]), 0);
	assert_int_equal(tx.release, 1 + SPARE_BUDGET + 9 + 2 * SPARE_BUDGET);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* Out of fds, the spare ones go first: dmabuf_fd() of a buffer (a reopen
 * and a dup) succeeds at RLIMIT_NOFILE while other buffers hold spares
 * (-EMFILE on the code before). */
static void spare_fds_go_first_at_fd_limit(void **state)
{
	struct test_exporter tx = { 0 };
	struct dmabuf *pool[8], *buf;
	struct dmabuf_ctx *ctx;
	struct rlimit old;
	int fillers[SPARE_NOFILE], n = 0, fd, fds0;

	if (harness_under_valgrind())
		skip(); /* valgrind's RLIMIT_NOFILE is virtual: the kernel installs the fd */
	nofile_set(SPARE_NOFILE, &old);
	ctx = tx_ctx_new(0);
	for (int i = 0; i < 8; i++) {
		pool[i] = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		fd = dmabuf_fd(pool[i], O_CLOEXEC);
		assert_true(fd >= 0);
		close(fd);
	}
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fds0 = harness_count_fds();
	while (n < SPARE_NOFILE && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		fillers[n++] = fd;
	assert_true(n < SPARE_NOFILE && errno == EMFILE);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	/* the 8 spares went for the 2 new fds */
	assert_int_equal(harness_count_fds(), fds0 + n - 8 + 2);
	close(fd);
	while (n > 0)
		close(fillers[--n]);
	for (int i = 0; i < 8; i++)
		assert_int_equal(dmabuf_put(pool[i]), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 9);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* A close that does not end an orphan (another open file of the inode)
 * spends its one-shot watch: the watch is armed again, and the real last
 * close is still seen. */
static void unrelated_close_rearms_watch(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(DMABUF_CTX_NO_RECYCLE);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC), other;
	char path[64];

	assert_int_equal(dmabuf_put(buf), 0);
	for (int round = 0; round < 3; round++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		other = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(other >= 0);
		close(other);
		for (int i = 0; i < 5; i++)
			dmabuf_ctx_dispatch_timeout(ctx, 10);
		assert_int_equal(tx.release, 0);
		assert_int_equal(count_watches(), 1);
	}
	close(fd);
	dispatch_until_released(ctx, &tx);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(ctx);
}

/* True if the context's fd has something to dispatch. */
static bool ctx_ready(struct dmabuf_ctx *ctx)
{
	struct pollfd p = { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

/* issue 11: once two last puts in a row found their file no longer held,
 * the next one probes first: a release at the put arms no watch, so its
 * close queues nothing and wakes no loop. A put whose file is held after
 * all still leaves an orphan that the final close releases, and one such
 * put is enough to arm the watch first again. */
static void put_after_close_queues_nothing(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(DMABUF_CTX_NO_RECYCLE);
	struct test_exporter tx = { 0 };

	for (int i = 0; i < 4; i++) {
		struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		int fd = dmabuf_fd(buf, O_CLOEXEC);

		assert_true(fd >= 0);
		close(fd);
		assert_int_equal(dmabuf_put(buf), 0);
		assert_int_equal(tx.release, i + 1);
		assert_int_equal(count_watches(), 0);
		/* the first two armed a watch (no puts had told better) */
		if (i > 1)
			assert_false(ctx_ready(ctx));
		dmabuf_ctx_dispatch(ctx);
	}
	for (int i = 0; i < 2; i++) {
		struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		int fd = dmabuf_fd(buf, O_CLOEXEC);

		assert_int_equal(dmabuf_put(buf), 0);
		assert_int_equal(tx.release, 4 + i);
		assert_int_equal(count_watches(), 1);
		close(fd);
		for (int j = 0; j < 500 && tx.release < 5 + i; j++)
			dmabuf_ctx_dispatch_timeout(ctx, 10);
		assert_int_equal(tx.release, 5 + i);
		while (dmabuf_ctx_dispatch(ctx) > 0)
			;
		assert_int_equal(count_watches(), 0);
	}
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 6);
}

/* ---- recycled memfds (src/core/recycle.c) ---------------------------- */

static unsigned long ino_of(struct dmabuf *buf)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	return (unsigned long)info.inode;
}

static struct dmabuf *export_as(struct dmabuf_ctx *ctx, struct test_exporter *tx,
				const char *name, const struct dmabuf_ops *ops,
				uint64_t size, int flags)
{
	struct dmabuf_export_info info = {
		.exp_name = name, .ops = ops, .size = size, .flags = flags,
		.priv = tx, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	return buf;
}

/* One life whose last put releases (fd closed before it): its inode. */
static unsigned long put_last_life(struct dmabuf_ctx *ctx, struct test_exporter *tx,
				   uint64_t size)
{
	struct dmabuf *buf = tx_export(ctx, tx, size, O_RDWR, DMABUF_ALLOC_SYSTEM);
	unsigned long ino = ino_of(buf);
	int fd = dmabuf_fd(buf, O_CLOEXEC), released = tx->release;

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx->release, released + 1);
	return ino;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* A recyclable buffer's release probe is a read lease (release.c). Where
 * the kernel refuses leases (fs.leases-enable = 0: EINVAL, injected), the
 * flock probes the buffer instead: the put with the fd still out releases
 * nothing, the fd's close releases it, and its memfd is not kept (the
 * next export gets another inode); a buffer whose lease works is kept
 * again. */
static void leases_refused_fall_back_to_flock(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	unsigned long ino = ino_of(buf), next;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_true(fd >= 0);
	dmb_sys_inject(DMB_SYS_LEASE, 1, EINVAL);
	assert_int_equal(dmabuf_put(buf), 0);
	dmb_sys_inject(DMB_SYS_LEASE, 0, 0);
	/* the flock saw the fd's shared lock */
	dmabuf_ctx_dispatch_timeout(ctx, 10);
	assert_int_equal(tx.release, 0);
	close(fd);
	dispatch_until_released(ctx, &tx);
	assert_int_equal(tx.release, 1);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	next = ino_of(buf);
	assert_true(next != ino);
	/* leases back: this one's memfd is kept for the next export */
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 2);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(ino_of(buf), next);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 3);
}

/* A released buffer's memfd is the next export's of the same kind, and
 * that buffer reads zeros as a new dma-buf's fresh pages do (export and
 * heap allocation). */
static void recycled_buffer_reads_zeros(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM), *got;
	unsigned long ino = ino_of(buf);
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	uint8_t *p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct dmabuf_ctx_stats st = { .struct_size = sizeof(st) };
	struct stat sb;

	assert_true(p != MAP_FAILED);
	memset(p, 0xa5, SZ);
	munmap(p, SZ);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(ino_of(buf), ino);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_true(all_zero(p, SZ));
	munmap(p, SZ);
	/* its fd finds the new buffer */
	assert_int_equal(dmabuf_get(ctx, fd, &got), 0);
	assert_ptr_equal(got, buf);
	assert_int_equal(dmabuf_put(got), 0);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 2);

	/* a heap buffer, released by its fd's close */
	fd = dmabuf_heap_alloc(ctx, "system", SZ, O_RDWR | O_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	ino = (unsigned long)sb.st_ino;
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	memset(p, 0x5a, SZ);
	munmap(p, SZ);
	close(fd);
	for (int i = 0; i < 500; i++) {
		assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
		if (!st.buffers_live)
			break;
		dmabuf_ctx_dispatch_timeout(ctx, 10);
	}
	assert_int_equal(st.buffers_live, 0);
	fd = dmabuf_heap_alloc(ctx, "system", SZ, O_RDWR | O_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal((unsigned long)sb.st_ino, ino);
	p = mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_true(all_zero(p, SZ));
	munmap(p, SZ);
	close(fd);
	dmabuf_ctx_destroy(ctx);
}

/* A file someone still holds (a mapping, an fd in flight in a socket) is
 * never released, so never recycled: the next export gets another inode;
 * once the holder lets go, the memfd is recycled and reads zeros. */
static void held_file_is_not_recycled(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };

	for (int how = 0; how < 2; how++) {
		struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM), *other;
		unsigned long ino = ino_of(buf), pooled;
		int fd = dmabuf_fd(buf, O_CLOEXEC), sv[2], got;
		int released = tx.release;
		uint8_t *p = NULL;
		size_t len;
		char c;

		assert_true(fd >= 0);
		if (how == 0) {
			p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			assert_true(p != MAP_FAILED);
			p[0] = 7;
		} else {
			assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
			assert_int_equal(dmabuf_send_fd(sv[0], fd, "F", 1), 0);
		}
		close(fd);
		assert_int_equal(dmabuf_put(buf), 0);
		dmabuf_ctx_dispatch_timeout(ctx, 20);
		assert_int_equal(tx.release, released);
		/* a memfd in the pool, if any, is another one */
		pooled = put_last_life(ctx, &tx, SZ);
		assert_true(pooled != ino);
		other = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		assert_true(ino_of(other) != ino);
		assert_int_equal(dmabuf_put(other), 0);
		released = tx.release;
		if (how == 0) {
			munmap(p, SZ);
		} else {
			assert_int_equal(dmabuf_recv_fd(sv[1], &got, &c, 1, &len), 0);
			close(got);
			close(sv[0]);
			close(sv[1]);
		}
		for (int i = 0; i < 500 && tx.release == released; i++)
			dmabuf_ctx_dispatch_timeout(ctx, 10);
		assert_int_equal(tx.release, released + 1);
		/* now it is free: the newest kept memfd */
		buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		assert_int_equal(ino_of(buf), ino);
		fd = dmabuf_fd(buf, O_CLOEXEC);
		p = mmap(NULL, SZ, PROT_READ, MAP_SHARED, fd, 0);
		assert_true(p != MAP_FAILED);
		assert_true(all_zero(p, SZ));
		munmap(p, SZ);
		close(fd);
		assert_int_equal(dmabuf_put(buf), 0);
	}
	dmabuf_ctx_destroy(ctx);
}

/* Only a memfd of the same kind is taken: size, access mode (seals),
 * exporter name (the memfd's name) and exec-seal mark (an exporter without
 * attach and pin ops); at most 4 are kept. */
static void recycled_kinds_are_not_mixed(void **state)
{
	static const struct dmabuf_ops no_attach_ops = {
		.version = DMABUF_OPS_VERSION,
		.map = tx_map, .unmap = tx_unmap, .release = tx_release,
	};
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *b[5];
	unsigned long ino = put_last_life(ctx, &tx, SZ);
	int fds0;

	b[0] = tx_export(ctx, &tx, 2 * SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	b[1] = tx_export(ctx, &tx, SZ, O_RDONLY, DMABUF_ALLOC_SYSTEM);
	b[2] = tx_export(ctx, &tx, SZ, O_WRONLY, DMABUF_ALLOC_SYSTEM);
	b[3] = export_as(ctx, &tx, "other", &tx_ops, SZ, O_RDWR);
	b[4] = export_as(ctx, &tx, "test", &no_attach_ops, SZ, O_RDWR);
	for (int i = 0; i < 5; i++) {
		assert_true(ino_of(b[i]) != ino);
		assert_int_equal(dmabuf_put(b[i]), 0);
	}
	b[0] = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(ino_of(b[0]), ino);
	assert_int_equal(dmabuf_put(b[0]), 0);
	/* the bound: more released kinds than that keep 4 fds */
	fds0 = harness_count_fds();
	for (int i = 0; i < 8; i++)
		assert_int_equal(dmabuf_put(tx_export(ctx, &tx, (uint64_t)(3 + i) * SZ, O_RDWR,
						      DMABUF_ALLOC_SYSTEM)), 0);
	assert_true(harness_count_fds() <= fds0 + 4 - 2);
	assert_true(harness_count_fds() >= fds0);
	dmabuf_ctx_destroy(ctx);
}

/* Out of fds, the kept memfds go first; a failed hole punch keeps none. */
static void recycled_memfds_go_first_at_fd_limit(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDONLY, DMABUF_ALLOC_SYSTEM);
	unsigned long ino;
	int fds0, fd = dmabuf_fd(buf, O_CLOEXEC);

	/* a read-only buffer is never kept; its share opened the context's
	 * /proc/self/fd */
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	fds0 = harness_count_fds();
	for (int i = 0; i < 4; i++)
		put_last_life(ctx, &tx, (uint64_t)(1 + i) * SZ);
	assert_true(harness_count_fds() > fds0);
	buf = tx_export(ctx, &tx, 8 * SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	dmb_sys_inject(DMB_SYS_REOPEN, 1, EMFILE);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	dmb_sys_inject(DMB_SYS_REOPEN, 0, 0);
	assert_true(fd >= 0);
	/* its memfd, the dma-buf file and fd; the kept ones closed */
	assert_int_equal(harness_count_fds(), fds0 + 3);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(harness_count_fds(), fds0 + 1);

	/* no fd left at all: an export that needs a new memfd closes the
	 * kept ones and makes it (not under valgrind, whose RLIMIT_NOFILE is
	 * virtual: the kernel still installs the fd) */
	if (!harness_under_valgrind()) {
		int fds[1024], n, top = 0, fill[1024], nfill = 0;
		struct rlimit old;

		put_last_life(ctx, &tx, 2 * SZ);
		put_last_life(ctx, &tx, 3 * SZ);
		fds0 = harness_count_fds();
		n = harness_list_fds(fds, 1024);
		for (int i = 0; i < n; i++)
			top = fds[i] > top ? fds[i] : top;
		nofile_set((rlim_t)top + 1, &old);
		while (nfill < 1024 && (fill[nfill] = dup(0)) >= 0)
			nfill++;
		assert_int_equal(dup(0), -1);
		buf = tx_export(ctx, &tx, 16 * SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
		for (int i = 0; i < nfill; i++)
			close(fill[i]);
		assert_true(harness_count_fds() < fds0);
		assert_int_equal(dmabuf_put(buf), 0);
	}
	fds0 = harness_count_fds();
	dmb_sys_inject(DMB_SYS_FALLOCATE, 1, EIO);
	ino = put_last_life(ctx, &tx, SZ);
	dmb_sys_inject(DMB_SYS_FALLOCATE, 0, 0);
	assert_int_equal(harness_count_fds(), fds0);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_true(ino_of(buf) != ino);
	assert_int_equal(dmabuf_put(buf), 0);
	/* an injected allocation failure fails a recycled export too */
	dmb_sys_inject(DMB_SYS_MEMFD_CREATE, 1, ENOMEM);
	assert_int_equal(dmabuf_export(ctx, &(struct dmabuf_export_info){
		.exp_name = "test", .ops = &tx_ops, .size = SZ, .flags = O_RDWR,
		.priv = &tx, .alloc = DMABUF_ALLOC_SYSTEM }, &buf), -ENOMEM);
	dmb_sys_inject(DMB_SYS_MEMFD_CREATE, 0, 0);
	dmabuf_ctx_destroy(ctx);
}

static int child_exits(void *arg)
{
	return 0;
}

/* A fork() child inherited the kept memfds: the parent reuses none. */
static void fork_drops_recycled_memfds(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	unsigned long ino = put_last_life(ctx, &tx, SZ);
	struct dmabuf *buf;

	assert_int_equal(harness_wait(harness_fork(child_exits, NULL)), 0);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_true(ino_of(buf) != ino);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(ctx);
}

/* A recycled memfd keeps its (persistent) watch: the hand-off order (put
 * while the fd is out, then the close) releases every cycle by the close
 * event with one watch in all; an order whose puts release at once ends
 * with no watch and nothing queued. The context's end takes them all. */
static void recycled_watch_is_kept(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	unsigned long ino = 0;

	for (int i = 0; i < 5; i++) {
		struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		int fd = dmabuf_fd(buf, O_CLOEXEC);

		if (i)
			assert_int_equal(ino_of(buf), ino);
		ino = ino_of(buf);
		assert_int_equal(dmabuf_put(buf), 0);
		assert_int_equal(tx.release, i);
		assert_int_equal(count_watches(), 1);
		close(fd);
		for (int j = 0; j < 500 && tx.release == i; j++)
			dmabuf_ctx_dispatch_timeout(ctx, 10);
		assert_int_equal(tx.release, i + 1);
		assert_int_equal(count_watches(), 1);
	}
	for (int i = 0; i < 6; i++) {
		put_last_life(ctx, &tx, SZ);
		if (i >= 3) {
			assert_false(ctx_ready(ctx));
			assert_int_equal(count_watches(), 0);
		}
		while (dmabuf_ctx_dispatch(ctx) > 0)
			;
	}
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(count_watches(), 0);
}

/* ---- re-probes (src/core/release.c) and settle ----------------------- */

/*
 * The kernel sends a file's close event before it drops the file's flock,
 * and the closer can be held up between the two (preempted, stopped) for
 * any time. Here the probe that the final close's event makes, and every
 * re-probe after it, finds the lock (injected) for 100 rounds of
 * dispatching: longer than the 50 re-probes at 1 ms after which the
 * library used to give up and lose the release. Then the closer goes on.
 * The release must come from dispatch alone (the loop of a program that
 * never calls settle), then once more from settle, each exactly once.
 */
static void stalled_closer_still_releases(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };

	for (int life = 0; life < 2; life++) {
		struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		int fd = dmabuf_fd(buf, O_CLOEXEC);

		assert_true(fd >= 0);
		assert_int_equal(dmabuf_put(buf), 0); /* the fd holds it */
		assert_int_equal(tx.release, life);
		dmb_sys_inject(DMB_SYS_PROBE, 1, EWOULDBLOCK);
		close(fd); /* the final close: its event comes, its lock stays */
		for (int i = 0; i < 100; i++) {
			dmb_sys_inject(DMB_SYS_PROBE, 1, EWOULDBLOCK);
			assert_true(dmabuf_ctx_dispatch_timeout(ctx, 2) >= 0);
		}
		assert_int_equal(tx.release, life);
		dmb_sys_inject(DMB_SYS_PROBE, 0, 0); /* the lock goes */
		if (life == 0) {
			while (!tx.release)
				assert_true(dmabuf_ctx_dispatch_timeout(ctx, -1) >= 0);
		} else {
			assert_true(dmabuf_ctx_settle(ctx, -1) >= 0);
		}
		assert_int_equal(tx.release, life + 1);
		assert_int_equal(dmabuf_ctx_settle(ctx, -1), 0);
		for (int i = 0; i < 3; i++)
			assert_true(dmabuf_ctx_dispatch_timeout(ctx, 1) >= 0);
		assert_int_equal(tx.release, life + 1);
	}
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 2);
}

/*
 * dmabuf_ctx_settle() probes every orphan, not only the first one it meets:
 * three orphans whose watch could not be armed (so only probes can release
 * them), re-probed for longer than the library used to before it gave up;
 * the one settle meets first (the lowest inode) stays held by its fd, the
 * other two are let go. One pass of settle, with no time to wait, must
 * release those two; the third goes once its fd does.
 */
static void settle_probes_every_orphan(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(DMABUF_CTX_NO_RECYCLE);
	struct test_exporter tx = { 0 };
	struct dmabuf *bufs[3];
	int fds[3], held = 0, before;

	for (int i = 0; i < 3; i++) {
		bufs[i] = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		fds[i] = dmabuf_fd(bufs[i], O_CLOEXEC);
		assert_true(fds[i] >= 0);
		if (ino_of(bufs[i]) < ino_of(bufs[held]))
			held = i;
	}
	for (int i = 0; i < 3; i++) {
		/* Two puts that find their file free: the next probes first,
		 * and arms the watch only when its probe fails. */
		put_last_life(ctx, &tx, SZ);
		put_last_life(ctx, &tx, SZ);
		dmb_sys_inject(DMB_SYS_INOTIFY_ADD_WATCH, 1, ENOSPC);
		assert_int_equal(dmabuf_put(bufs[i]), 0);
		dmb_sys_inject(DMB_SYS_INOTIFY_ADD_WATCH, 0, 0);
	}
	before = tx.release;
	assert_int_equal(before, 6);
	for (int i = 0; i < 100; i++)
		assert_true(dmabuf_ctx_dispatch_timeout(ctx, 2) >= 0);
	assert_int_equal(tx.release, before);
	for (int i = 0; i < 3; i++)
		if (i != held)
			close(fds[i]); /* no watch: no event */
	dmabuf_ctx_settle(ctx, 0); /* one pass; the held one is pending */
	assert_int_equal(tx.release, before + 2);
	close(fds[held]);
	assert_true(dmabuf_ctx_settle(ctx, -1) >= 0);
	assert_int_equal(tx.release, before + 3);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, before + 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(release_after_last_put_and_fd),
		harness_test(release_at_put_when_no_fd),
		harness_test(mmap_keeps_buffer_alive),
		harness_test(fd_in_flight_keeps_buffer_alive),
		harness_test(child_fd_and_mapping_keep_buffer_alive),
		harness_test(get_revives_orphaned_buffer),
		harness_test(o_path_fd_is_no_holder),
		harness_test(release_ends_open_cpu_brackets),
		harness_test(many_buffers_release_independently),
		harness_test(release_survives_inotify_overflow),
		harness_test(one_fd_per_buffer_and_watches_for_orphans),
		harness_test(unrelated_close_rearms_watch),
		harness_test(put_after_close_queues_nothing),
		harness_test(spare_fds_trimmed_in_batches),
		harness_test(spare_fds_go_first_at_fd_limit),
		harness_test(recycled_buffer_reads_zeros),
		harness_test(leases_refused_fall_back_to_flock),
		harness_test(held_file_is_not_recycled),
		harness_test(recycled_kinds_are_not_mixed),
		harness_test(recycled_memfds_go_first_at_fd_limit),
		harness_test(fork_drops_recycled_memfds),
		harness_test(recycled_watch_is_kept),
		harness_test(stalled_closer_still_releases),
		harness_test(settle_probes_every_orphan),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
