/* SPDX-License-Identifier: MIT */
/*
 * A holder of a sync file cannot change its state (the kernel's sync_file
 * has no call for it). Here a sync file is one end R of a Unix socket
 * pair that every holder shares, and any holder can shutdown() it: R then
 * reads EOF and polls ready in every process. These tests shut R down
 * from a process of its own (a plain shutdown(), no preload: a program
 * outside the emulation) and check that every other holder, through the
 * library, still sees the fence pending (a fresh import, its status, a
 * wait, SYNC_IOC_FILE_INFO, a callback through the watcher), that the
 * signal then reaches them with its real status, and that the signaller
 * keeps its end (the sweep, the deadline watcher). On the code before
 * src/fences/sync_file_peer.c each of them saw the fence signalled with
 * DMABUF_FENCE_ESIGNALLER right after the shutdown.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "harness.h"

struct holder {
	int fd;				/* the sync file (inherited) */
	int how;			/* the shutter's shutdown() */
	struct harness_sync sync;
	int64_t *shared;		/* [0]: the signal's timestamp */
};

/* ---- the holders --------------------------------------------------------- */

static int shutter(void *arg)
{
	struct holder *h = arg;

	child_check(shutdown(h->fd, h->how) == 0);
	return 0;
}

/* A fresh process (no table entry: its own import) sees it pending. */
static int sees_pending(void *arg)
{
	struct holder *h = arg;
	struct dmabuf_fence *f;
	int status = 99;

	child_check(dmabuf_sync_file_info(h->fd, &status, NULL, 0) == 1);
	child_check(status == 0);
	child_check(dmabuf_sync_file_wait(h->fd, 0) == 0);
	child_check(dmabuf_sync_file_wait(h->fd, 20) == 0);
	child_check(dmabuf_sync_file_import(h->fd, &f) == 0);
	child_check(dmabuf_fence_get_status(f) == 0);
	child_check(dmabuf_fence_wait(f, 0) == 0);
	dmabuf_fence_put(f);
	return 0;
}

/* A fresh process sees it signalled with status 1 and the signal's time. */
static int sees_signalled(void *arg)
{
	struct holder *h = arg;
	struct dmabuf_sync_fence_info info[2];
	int status = 99, n;

	child_check(dmabuf_sync_file_wait(h->fd, 0) == 1);
	/* a merge reports its two fences, signalled at their own times */
	n = dmabuf_sync_file_info(h->fd, &status, info, 2);
	child_check(n == 1 || n == 2);
	child_check(status == 1);
	for (int i = 0; i < n; i++)
		child_check(info[i].status == 1);
	child_check(n == 2 || (int64_t)info[0].timestamp_ns == h->shared[0]);
	return 0;
}

/* Armed before the shutdown: a blocking sync-file wait. */
static int file_waiter(void *arg)
{
	struct holder *h = arg;
	int status = 99;

	harness_sync_tell_parent(&h->sync, 'a');
	child_check(dmabuf_sync_file_wait(h->fd, -1) == 1);
	child_check(dmabuf_sync_file_info(h->fd, &status, NULL, 0) == 1);
	child_check(status == 1);
	return 0;
}

/* Armed before the shutdown: a wait on the imported fence. */
static int fence_waiter(void *arg)
{
	struct holder *h = arg;
	struct dmabuf_fence *f;
	int64_t ts = 0;

	child_check(dmabuf_sync_file_import(h->fd, &f) == 0);
	harness_sync_tell_parent(&h->sync, 'a');
	child_check(dmabuf_fence_wait(f, -1) == 1);
	child_check(dmabuf_fence_get_status(f) == 1);
	child_check(dmabuf_fence_get_timestamp(f, &ts) == 0);
	child_check(ts == h->shared[0]);
	dmabuf_fence_put(f);
	return 0;
}

struct status_cb {
	struct dmabuf_fence_cb cb;
	int pipe[2];
};

static void status_to_pipe(struct dmabuf_fence *f, struct dmabuf_fence_cb *cb)
{
	struct status_cb *s = (struct status_cb *)cb;
	int st = dmabuf_fence_get_status(f);

	if (write(s->pipe[1], &st, sizeof(st)) != sizeof(st))
		abort();
}

/* Armed before the shutdown: a callback, which the watcher thread runs. */
static int callback_waiter(void *arg)
{
	struct holder *h = arg;
	struct status_cb s;
	struct dmabuf_fence *f;
	int st = 99;

	child_check(pipe(s.pipe) == 0);
	child_check(dmabuf_sync_file_import(h->fd, &f) == 0);
	child_check(dmabuf_fence_add_callback(f, &s.cb, status_to_pipe) == 0);
	harness_sync_tell_parent(&h->sync, 'a');
	child_check(read(s.pipe[0], &st, sizeof(st)) == sizeof(st));
	child_check(st == 1);
	dmabuf_fence_put(f);
	/* exit(), not the harness's _exit(): the library destructor joins
	 * the fence watcher thread, so valgrind sees nothing of it left. */
	exit(0);
}

/* ---- the signaller ------------------------------------------------------- */

/*
 * The exporter is a process of its own, so that no holder is a fork of
 * it (test-syncfile-fork.c has those). It exports
 * one sync file (a sw_sync point, or with `merge` a merge of two, which
 * has a set_deadline op: its W is watched for deadlines), sends it to the
 * test, and obeys: 'i' signals (the timestamp in shared[0]), 's' makes
 * 300 exports (several sweeps), 'w' waits until only W is left of its
 * fds (the watcher stopped: 'k' if W is kept, 'g' if gone), 'q' ends.
 */
struct signaller {
	int sock;
	bool merge;
	struct harness_sync sync;
	int64_t *shared;
	pid_t pid;
	int fd;				/* the test's sync file */
};

static int signaller_main(void *arg)
{
	struct signaller *sg = arg;
	struct dmabuf_timeline *tl[2];
	struct dmabuf_fence *p[2], *f, *g;
	int fd, base, c;

	harness_sync_child(&sg->sync);
	for (int i = 0; i < 2; i++) {
		child_check(dmabuf_timeline_new("holder", &tl[i]) == 0);
		child_check(dmabuf_timeline_create_fence(tl[i], 1, &p[i]) == 0);
	}
	if (sg->merge)
		child_check(dmabuf_fence_merge(p, 2, &f) == 0);
	else
		f = dmabuf_fence_get(p[0]);
	base = harness_count_fds();
	fd = dmabuf_sync_file_export(f);
	child_check(fd >= 0);
	child_check(dmabuf_send_fd(sg->sock, fd, NULL, 0) == 0);
	close(fd);
	while ((c = harness_sync_wait_parent(&sg->sync)) > 0 && c != 'q') {
		if (c == 'i') {
			for (int i = 0; i < 2; i++)
				child_check(dmabuf_timeline_inc(tl[i], 1) == 0);
			child_check(dmabuf_fence_get_timestamp(f, &sg->shared[0]) == 0);
		} else if (c == 's') {
			for (int i = 0; i < 300; i++) {
				child_check(dmabuf_timeline_create_fence(tl[0], 2 + i, &g) == 0);
				fd = dmabuf_sync_file_export(g);
				child_check(fd >= 0);
				close(fd);
				dmabuf_fence_put(g);
			}
		} else if (c == 'w') {
			/* W, plus the watcher's three fds until it stops */
			while (harness_count_fds() > base + 1)
				usleep(1000);
			c = harness_count_fds() == base + 1 ? 'k' : 'g';
		}
		harness_sync_tell_parent(&sg->sync, (char)c);
	}
	dmabuf_fence_put(f);
	for (int i = 0; i < 2; i++) {
		dmabuf_fence_put(p[i]);
		dmabuf_timeline_destroy(tl[i]);
	}
	exit(0); /* the destructor joins the watcher thread (merge: deadlines) */
}

static void signaller_start(struct signaller *sg, bool merge)
{
	int sv[2];

	memset(sg, 0, sizeof(*sg));
	sg->merge = merge;
	sg->shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sg->shared != MAP_FAILED);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	sg->sock = sv[1];
	harness_sync_init(&sg->sync);
	sg->pid = harness_fork_sock(signaller_main, sg, sv[0]);
	harness_sync_parent(&sg->sync);
	close(sv[1]);
	assert_int_equal(dmabuf_recv_fd(sv[0], &sg->fd, NULL, 0, NULL), 0);
	close(sv[0]);
}

/* Sends a command; returns the signaller's answer. */
static int signaller_do(struct signaller *sg, char c)
{
	harness_sync_tell_child(&sg->sync, c);
	return harness_sync_wait_child(&sg->sync);
}

static void signaller_end(struct signaller *sg)
{
	harness_sync_tell_child(&sg->sync, 'q');
	assert_int_equal(harness_wait(sg->pid), 0);
	harness_sync_close(&sg->sync);
	close(sg->fd);
	munmap(sg->shared, 4096);
}

/* ---- the tests ----------------------------------------------------------- */

static pid_t armed(int (*fn)(void *), struct holder *h)
{
	pid_t pid;

	harness_sync_init(&h->sync);
	pid = harness_fork(fn, h);
	harness_sync_parent(&h->sync);
	assert_int_equal(harness_sync_wait_child(&h->sync), 'a');
	return pid;
}

/* Three holders wait (a sync-file wait, a fence wait, a callback) while a
 * fourth shuts the file down; a fifth then sees it pending; the signal
 * reaches them all with status 1 and the signal's timestamp. */
static void shutdown_signals_nothing(int how)
{
	struct signaller sg;
	struct holder h[3], sh;
	pid_t pid[3];
	int (*fns[3])(void *) = { file_waiter, fence_waiter, callback_waiter };

	signaller_start(&sg, false);
	sh = (struct holder){ .fd = sg.fd, .how = how, .shared = sg.shared };
	for (int i = 0; i < 3; i++) {
		h[i] = sh;
		pid[i] = armed(fns[i], &h[i]);
	}
	assert_int_equal(harness_wait(harness_fork(shutter, &sh)), 0);
	assert_int_equal(harness_wait(harness_fork(sees_pending, &sh)), 0);
	assert_int_equal(dmabuf_sync_file_wait(sh.fd, 0), 0);

	assert_int_equal(signaller_do(&sg, 'i'), 'i');
	for (int i = 0; i < 3; i++) {
		assert_int_equal(harness_wait(pid[i]), 0);
		harness_sync_close(&h[i].sync);
	}
	assert_int_equal(harness_wait(harness_fork(sees_signalled, &sh)), 0);
	signaller_end(&sg);
}

static void shut_rd_signals_nothing(void **state)
{
	shutdown_signals_nothing(SHUT_RD);
}

static void shut_rdwr_signals_nothing(void **state)
{
	shutdown_signals_nothing(SHUT_RDWR);
}

/* The sweep (run by exports) closes W ends whose every R is gone; one
 * whose R a holder shut down both ways also polls POLLHUP, and is kept. */
static void sweep_keeps_a_shut_down_file(void **state)
{
	struct signaller sg;
	struct holder sh;

	signaller_start(&sg, false);
	sh = (struct holder){ .fd = sg.fd, .how = SHUT_RDWR, .shared = sg.shared };
	assert_int_equal(harness_wait(harness_fork(shutter, &sh)), 0);
	assert_int_equal(signaller_do(&sg, 's'), 's');
	assert_int_equal(harness_wait(harness_fork(sees_pending, &sh)), 0);
	assert_int_equal(signaller_do(&sg, 'i'), 'i');
	assert_int_equal(harness_wait(harness_fork(sees_signalled, &sh)), 0);
	signaller_end(&sg);
}

/* A merge has a set_deadline op: its W is in the watcher's set, for the
 * deadlines holders write into R. A holder's SHUT_WR makes W read EOF,
 * as if every R were gone; W is kept (only the watch goes). */
static void deadline_watch_keeps_a_shut_down_file(void **state)
{
	struct signaller sg;
	struct holder sh;

	signaller_start(&sg, true);
	sh = (struct holder){ .fd = sg.fd, .how = SHUT_WR, .shared = sg.shared };
	assert_int_equal(harness_wait(harness_fork(shutter, &sh)), 0);
	assert_int_equal(signaller_do(&sg, 'w'), 'k');
	assert_int_equal(harness_wait(harness_fork(sees_pending, &sh)), 0);
	assert_int_equal(signaller_do(&sg, 'i'), 'i');
	assert_int_equal(harness_wait(harness_fork(sees_signalled, &sh)), 0);
	signaller_end(&sg);
}

/* The signaller dies after a holder shut the file down: W closes with
 * no status in its name, which every holder reads as the signaller gone. */
static int exporter(void *arg)
{
	struct holder *h = arg;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;
	int fd;

	child_check(dmabuf_timeline_new("holder", &tl) == 0);
	child_check(dmabuf_timeline_create_fence(tl, 1, &f) == 0);
	fd = dmabuf_sync_file_export(f);
	child_check(fd >= 0);
	child_check(dmabuf_send_fd(h->fd, fd, NULL, 0) == 0);
	for (;;)
		pause();
}

static void signaller_death_after_a_shutdown(void **state)
{
	struct holder sh = { .how = SHUT_RD };
	struct dmabuf_fence *f;
	int sv[2];
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	sh.fd = sv[1];
	pid = harness_fork_sock(exporter, &sh, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_recv_fd(sv[0], &sh.fd, NULL, 0, NULL), 0);
	close(sv[0]);
	assert_int_equal(harness_wait(harness_fork(shutter, &sh)), 0);
	assert_int_equal(dmabuf_sync_file_import(sh.fd, &f), 0);
	assert_int_equal(dmabuf_fence_get_status(f), 0);
	kill(pid, SIGKILL);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	assert_int_equal(dmabuf_fence_wait(f, -1), 1);
	assert_int_equal(dmabuf_fence_get_status(f), DMABUF_FENCE_ESIGNALLER);
	assert_int_equal(dmabuf_sync_file_wait(sh.fd, -1), 1);
	dmabuf_fence_put(f);
	close(sh.fd);
}

/* ---- the watcher's own diag socket ---------------------------------------- */

struct flag_cb {
	struct dmabuf_fence_cb cb;
	atomic_int status;
	atomic_bool ran;
};

static void status_to_flag(struct dmabuf_fence *f, struct dmabuf_fence_cb *cb)
{
	struct flag_cb *s = (struct flag_cb *)cb;

	atomic_store(&s->status, dmabuf_fence_get_status(f));
	atomic_store(&s->ran, true);
}

static void wait_ran(struct flag_cb *s)
{
	while (!atomic_load(&s->ran))
		usleep(1000);
}

/*
 * The watcher asks whether W is open on a socket it made when it started
 * (sync_file_peer.c), not on one made per question (an fd that came and
 * went in a background thread, where another thread's fd numbers or count
 * could see it). Shown with every fd number taken (RLIMIT_NOFILE): a
 * holder's shutdown of A's file, while the watcher also watches B's, must
 * leave A pending. Epoll reports A's shutdown before B's later signal, so
 * once B's callback ran the watcher has looked at A. On the code that made
 * a socket per question, that socket() failed (EMFILE), which reads as the
 * signaller gone: A's callback ran first, with DMABUF_FENCE_ESIGNALLER.
 */
static void watcher_asks_on_its_own_socket(void **state)
{
	struct signaller a, b;
	struct flag_cb ca = { 0 }, cb = { 0 };
	struct dmabuf_fence *fa, *fb;
	struct rlimit old, lim;
	int fill[16], nfill = 0, fd;
	bool a_early;

	signaller_start(&a, false);
	signaller_start(&b, false);
	assert_int_equal(dmabuf_sync_file_import(a.fd, &fa), 0);
	assert_int_equal(dmabuf_fence_add_callback(fa, &ca.cb, status_to_flag), 0);
	assert_int_equal(dmabuf_sync_file_import(b.fd, &fb), 0);
	assert_int_equal(dmabuf_fence_add_callback(fb, &cb.cb, status_to_flag), 0);

	/* No fd number free from here on. */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	fd = dup(0);
	assert_true(fd >= 0);
	close(fd);
	lim = old;
	lim.rlim_cur = (rlim_t)fd + 4;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	while (nfill < (int)(sizeof(fill) / sizeof(fill[0])) && (fd = dup(0)) >= 0)
		fill[nfill++] = fd;
	assert_true(fd < 0 && errno == EMFILE);

	assert_int_equal(shutdown(a.fd, SHUT_RD), 0);
	assert_int_equal(signaller_do(&b, 'i'), 'i');
	wait_ran(&cb);
	a_early = atomic_load(&ca.ran);
	while (nfill)
		close(fill[--nfill]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(atomic_load(&cb.status), 1);
	assert_false(a_early);
	/* The signal reaches A through its status in W's name. */
	assert_int_equal(signaller_do(&a, 'i'), 'i');
	wait_ran(&ca);
	assert_int_equal(atomic_load(&ca.status), 1);
	dmabuf_fence_put(fa);
	dmabuf_fence_put(fb);
	signaller_end(&a);
	signaller_end(&b);
}

/* ---- the callers' questions need no fd ------------------------------------ */

/* Every fd number taken (RLIMIT_NOFILE lowered to just above the open
 * ones, then filled); give_back() undoes it. */
struct fd_fill {
	struct rlimit old;
	int fd[16];
	int n;
};

static void take_every_fd(struct fd_fill *ff)
{
	struct rlimit lim;
	int fd;

	ff->n = 0;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &ff->old), 0);
	fd = dup(0);
	assert_true(fd >= 0);
	close(fd);
	lim = ff->old;
	lim.rlim_cur = (rlim_t)fd + 4;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	while (ff->n < (int)(sizeof(ff->fd) / sizeof(ff->fd[0])) && (fd = dup(0)) >= 0)
		ff->fd[ff->n++] = fd;
	assert_true(fd < 0 && errno == EMFILE);
}

static void give_back(struct fd_fill *ff)
{
	while (ff->n)
		close(ff->fd[--ff->n]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &ff->old), 0);
}

/*
 * A caller's wait, status or SYNC_IOC_FILE_INFO on a pending imported
 * fence whose R a holder shut down asks whether W is open on the
 * process's diagnostics socket, which the import holds: no fd is needed,
 * so with none free (as the kernel's sync_file, which never fails for want
 * of one) the fence stays pending, and the signal still reaches it. On
 * the code that made a socket per question, that socket() failed
 * (EMFILE), which read as the signaller gone: the status was already
 * DMABUF_FENCE_ESIGNALLER and the waits returned 1.
 */
static void callers_ask_without_a_free_fd(void **state)
{
	struct signaller a;
	struct dmabuf_fence *f;
	struct fd_fill ff;
	int64_t ts = 0;
	int status = 99, st, w0, w20, sw0, sw20, info, w, st2, sw;

	signaller_start(&a, false);
	assert_int_equal(dmabuf_sync_file_import(a.fd, &f), 0);
	assert_int_equal(shutdown(a.fd, SHUT_RD), 0);
	harness_guard_start("the signal with every fd number taken", 60);
	take_every_fd(&ff);
	st = dmabuf_fence_get_status(f);
	w0 = dmabuf_fence_wait(f, 0);
	w20 = dmabuf_fence_wait(f, 20);
	sw0 = dmabuf_sync_file_wait(a.fd, 0);
	sw20 = dmabuf_sync_file_wait(a.fd, 20);
	info = dmabuf_sync_file_info(a.fd, &status, NULL, 0);
	/* Then the signal, still with no fd free. */
	if (signaller_do(&a, 'i') == 'i') {
		w = dmabuf_fence_wait(f, -1);
		st2 = dmabuf_fence_get_status(f);
		sw = dmabuf_sync_file_wait(a.fd, -1);
	} else {
		w = st2 = sw = -1000;
	}
	give_back(&ff);
	harness_guard_done();
	assert_int_equal(st, 0);
	assert_int_equal(w0, 0);
	assert_int_equal(w20, 0);
	assert_int_equal(sw0, 0);
	assert_int_equal(sw20, 0);
	assert_int_equal(info, 1);
	assert_int_equal(status, 0);
	assert_int_equal(w, 1);
	assert_int_equal(st2, 1);
	assert_int_equal(sw, 1);
	/* the signal's own time, from W's name */
	assert_int_equal(dmabuf_fence_get_timestamp(f, &ts), 0);
	assert_true(ts == a.shared[0]);
	dmabuf_fence_put(f);
	signaller_end(&a);
}

/*
 * With no pending import in the process, nothing holds the diagnostics
 * socket, and no fd is free to make one. A holder's shutdown of R for
 * reading alone is seen without a question (R at EOF without POLLHUP: W
 * is open), so the wait says pending, as the kernel's needs no fd; on the
 * code before it returned -EMFILE. After a shutdown both ways (R polls
 * POLLHUP, as when W is gone) the question is needed, and the wait says
 * it cannot be asked (-EMFILE) instead of "signalled".
 */
static void raw_wait_without_a_free_fd(int how, int expect)
{
	struct signaller a;
	struct fd_fill ff;
	int w0, w20, info, status = 99;

	signaller_start(&a, false);
	assert_int_equal(shutdown(a.fd, how), 0);
	take_every_fd(&ff);
	w0 = dmabuf_sync_file_wait(a.fd, 0);
	w20 = dmabuf_sync_file_wait(a.fd, 20);
	info = dmabuf_sync_file_info(a.fd, &status, NULL, 0);
	give_back(&ff);
	assert_int_equal(w0, expect);
	assert_int_equal(w20, expect);
	if (expect == 0) {
		assert_int_equal(info, 1);
		assert_int_equal(status, 0);
	} else {
		assert_int_equal(info, expect);
	}
	/* With a number free: the answer, pending, then the signal. */
	assert_int_equal(dmabuf_sync_file_wait(a.fd, 0), 0);
	assert_int_equal(signaller_do(&a, 'i'), 'i');
	assert_int_equal(dmabuf_sync_file_wait(a.fd, -1), 1);
	signaller_end(&a);
}

static void raw_wait_after_shut_rd_needs_no_fd(void **state)
{
	raw_wait_without_a_free_fd(SHUT_RD, 0);
}

static void raw_wait_after_shut_rdwr_says_it_cannot_ask(void **state)
{
	raw_wait_without_a_free_fd(SHUT_RDWR, -EMFILE);
}

/*
 * SYNC_IOC_FILE_INFO of a sync file the process never imported, with no
 * fd free for the import's copy of R: the kernel's needs none, and here
 * it is answered from R itself: pending (one entry, R's context and
 * seqno), then signalled with the signaller's names and time, a merge's
 * two fences each. On the code before, both were -EMFILE (the import's
 * dup of R).
 */
static void info_without_a_free_fd(bool merge)
{
	struct signaller a;
	struct dmabuf_sync_fence_info info[2];
	struct fd_fill ff;
	int n0, n1, st0 = 99, st1 = 99, n = merge ? 2 : 1;

	signaller_start(&a, merge);
	take_every_fd(&ff);
	n0 = dmabuf_sync_file_info(a.fd, &st0, info, 2);
	give_back(&ff);
	assert_int_equal(n0, 1);
	assert_int_equal(st0, 0);
	assert_int_equal(info[0].status, 0);
	assert_int_equal(info[0].timestamp_ns, 0);
	assert_int_equal(signaller_do(&a, 'i'), 'i');
	memset(info, 0, sizeof(info));
	take_every_fd(&ff);
	n1 = dmabuf_sync_file_info(a.fd, &st1, info, 2);
	give_back(&ff);
	assert_int_equal(n1, n);
	assert_int_equal(st1, 1);
	for (int i = 0; i < n; i++) {
		assert_int_equal(info[i].status, 1);
		assert_true(info[i].timestamp_ns != 0);
		assert_string_equal(info[i].obj_name, "holder");
	}
	if (!merge)
		assert_true(info[0].timestamp_ns == a.shared[0]);
	signaller_end(&a);
}

static void info_of_a_point_without_a_free_fd(void **state)
{
	info_without_a_free_fd(false);
}

static void info_of_a_merge_without_a_free_fd(void **state)
{
	info_without_a_free_fd(true);
}

/* The process's NETLINK_SOCK_DIAG sockets: how many, the inode of one. */
static int diag_sockets(ino_t *ino)
{
	int fds[256], n = harness_list_fds(fds, 256), found = 0;

	for (int i = 0; i < n; i++) {
		int dom = 0, proto = 0;
		socklen_t l = sizeof(int);
		struct stat st;

		if (getsockopt(fds[i], SOL_SOCKET, SO_DOMAIN, &dom, &l) || dom != AF_NETLINK)
			continue;
		l = sizeof(int);
		if (getsockopt(fds[i], SOL_SOCKET, SO_PROTOCOL, &proto, &l) ||
		    proto != NETLINK_SOCK_DIAG || fstat(fds[i], &st))
			continue;
		*ino = st.st_ino;
		found++;
	}
	return found;
}

struct forked_asker {
	struct dmabuf_fence *f;
	ino_t parent_ino;
};

static int forked_asker_main(void *arg)
{
	struct forked_asker *fa = arg;
	ino_t ino = 0;

	/* One socket still, for the inherited import, but not the
	 * parent's (one netlink port: either could read the other's
	 * answers), and it answers: still pending. */
	child_check(diag_sockets(&ino) == 1);
	child_check(ino != fa->parent_ino);
	child_check(dmabuf_fence_get_status(fa->f) == 0);
	child_check(dmabuf_fence_wait(fa->f, 10) == 0);
	return 0;
}

/*
 * The diagnostics socket exists while a pending imported fence holds it
 * (one for the process, however many imports), goes with the last one,
 * and a forked child asks on a socket of its own. Before the change there
 * was none between questions (the count was 0); without the fork hook
 * the child's socket was the parent's (the same inode).
 */
static void diag_socket_lives_with_the_imports(void **state)
{
	struct signaller a, b;
	struct dmabuf_fence *fa, *fb;
	struct forked_asker k;
	ino_t ino = 0;

	signaller_start(&a, false);
	signaller_start(&b, false);
	assert_int_equal(diag_sockets(&ino), 0);
	assert_int_equal(dmabuf_sync_file_import(a.fd, &fa), 0);
	assert_int_equal(dmabuf_sync_file_import(b.fd, &fb), 0);
	assert_int_equal(diag_sockets(&ino), 1);
	assert_int_equal(shutdown(a.fd, SHUT_RD), 0);
	k.f = fa;
	k.parent_ino = ino;
	assert_int_equal(harness_wait(harness_fork(forked_asker_main, &k)), 0);
	assert_int_equal(dmabuf_fence_get_status(fa), 0);
	/* b's signal: a still holds the socket */
	assert_int_equal(signaller_do(&b, 'i'), 'i');
	assert_int_equal(dmabuf_fence_wait(fb, -1), 1);
	assert_int_equal(diag_sockets(&ino), 1);
	assert_int_equal(signaller_do(&a, 'i'), 'i');
	assert_int_equal(dmabuf_fence_wait(fa, -1), 1);
	/* the last pending import signalled: gone in that call */
	assert_int_equal(diag_sockets(&ino), 0);
	dmabuf_fence_put(fa);
	dmabuf_fence_put(fb);
	signaller_end(&a);
	signaller_end(&b);
}

/*
 * The sweep that runs before an export retried after EMFILE asks about
 * each W end that polls POLLHUP on the diagnostics socket a pending import
 * of the process holds: with no fd number free it still tells a W whose
 * every R is closed (closed, which frees the numbers the export needs) from
 * one a holder shut down both ways (kept: the signal still reaches its
 * holders with its status). On the code that made a socket per question,
 * the first question's socket() failed (EMFILE) and the shut-down file,
 * the oldest end, was closed as if its R were gone: its status after the
 * signal was -EPIPE (DMABUF_FENCE_ESIGNALLER) instead of 1.
 */
static void sweep_at_emfile_keeps_a_shut_down_file(void **state)
{
	struct signaller b;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *fb, *fa, *dead[3], *g;
	struct fd_fill ff;
	int ra, fd, status = 99, gfd;

	/* Valgrind 3.19 lets socketpair() make fds above a lowered
	 * RLIMIT_NOFILE (no EMFILE, so no sweep), then refuses every call on
	 * them with EBADF: the path cannot be had there. */
	if (harness_under_valgrind())
		skip();
	/* a pending import holds the socket (forked before any export) */
	signaller_start(&b, false);
	assert_int_equal(dmabuf_sync_file_import(b.fd, &fb), 0);
	assert_int_equal(dmabuf_timeline_new("sweep", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &fa), 0);
	ra = dmabuf_sync_file_export(fa);
	assert_true(ra >= 0);
	assert_int_equal(shutdown(ra, SHUT_RDWR), 0);
	/* three W ends whose every R is closed */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(dmabuf_timeline_create_fence(tl, 2 + i, &dead[i]), 0);
		fd = dmabuf_sync_file_export(dead[i]);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(dmabuf_timeline_create_fence(tl, 9, &g), 0);
	take_every_fd(&ff);
	gfd = dmabuf_sync_file_export(g);	/* EMFILE, the sweep, the retry */
	give_back(&ff);
	assert_true(gfd >= 0);
	close(gfd);
	dmabuf_timeline_inc(tl, 1);
	assert_int_equal(dmabuf_sync_file_info(ra, &status, NULL, 0), 1);
	assert_int_equal(status, 1);
	assert_int_equal(dmabuf_sync_file_wait(ra, 0), 1);
	close(ra);
	dmabuf_fence_put(fa);
	dmabuf_fence_put(g);
	for (int i = 0; i < 3; i++)
		dmabuf_fence_put(dead[i]);
	dmabuf_timeline_destroy(tl);
	dmabuf_fence_put(fb);
	signaller_end(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(shut_rd_signals_nothing),
		harness_test(shut_rdwr_signals_nothing),
		harness_test(sweep_keeps_a_shut_down_file),
		harness_test(deadline_watch_keeps_a_shut_down_file),
		harness_test(signaller_death_after_a_shutdown),
		harness_test(watcher_asks_on_its_own_socket),
		harness_test(callers_ask_without_a_free_fd),
		harness_test(raw_wait_after_shut_rd_needs_no_fd),
		harness_test(raw_wait_after_shut_rdwr_says_it_cannot_ask),
		harness_test(info_of_a_point_without_a_free_fd),
		harness_test(info_of_a_merge_without_a_free_fd),
		harness_test(diag_socket_lives_with_the_imports),
		harness_test(sweep_at_emfile_keeps_a_shut_down_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
