/* SPDX-License-Identifier: MIT */
/*
 * The context: configuration and its defaults, logging, the pollable fd and
 * dispatch, the service thread, the counters, and the fork rule (a context
 * belongs to the process that made it).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exporter.h"

#define SZ (16 * 4096)
#define GiB (1024ull * 1024 * 1024)

static void config_defaults_and_checks(void **state)
{
	struct dmabuf_ctx_config cfg = { 0 };
	struct dmabuf_ctx_stats st = { 0 };
	struct dmabuf_ctx *ctx = NULL;

	/* every zero field takes its default */
	assert_int_equal(dmabuf_ctx_new(NULL, &ctx), 0);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.phys_total, 16 * GiB);
	assert_int_equal(st.cma_total, 1 * GiB);
	assert_int_equal(st.buffers_live, 0);
	assert_int_equal(st.phys_used, 0);
	dmabuf_ctx_destroy(ctx);

	cfg.phys_size = 2 * GiB;
	cfg.cma_size = 256 << 20;
	cfg.phys_base = 1ull << 40;
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.phys_total, 2 * GiB);
	assert_int_equal(st.cma_total, 256 << 20);
	dmabuf_ctx_destroy(ctx);

	/* what is refused, and nothing is made */
	ctx = NULL;
	assert_int_equal(dmabuf_ctx_new(NULL, NULL), -EINVAL);
	cfg = (struct dmabuf_ctx_config){ .flags = 1u << 7 };
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), -EINVAL);
	cfg = (struct dmabuf_ctx_config){ .phys_size = GiB + 1 };
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), -EINVAL);
	cfg = (struct dmabuf_ctx_config){ .phys_base = 4095 };
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), -EINVAL);
	cfg = (struct dmabuf_ctx_config){ .cma_size = 4097 };
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), -EINVAL);
	cfg = (struct dmabuf_ctx_config){ .phys_size = GiB, .cma_size = GiB };
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), -EINVAL);
	cfg = (struct dmabuf_ctx_config){ .phys_base = UINT64_MAX - 4095, .phys_size = GiB };
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), -EINVAL);
	assert_null(ctx);
	/* NULL is a no-op for destroy and an error elsewhere */
	dmabuf_ctx_destroy(NULL);
	assert_int_equal(dmabuf_ctx_get_fd(NULL), -EINVAL);
	assert_int_equal(dmabuf_ctx_dispatch(NULL), -EINVAL);
	assert_int_equal(dmabuf_ctx_get_stats(NULL, &st), -EINVAL);
	assert_int_equal(dmabuf_ctx_start_thread(NULL), -EINVAL);
	assert_int_equal(dmabuf_ctx_stop_thread(NULL), -EINVAL);
}

struct logbuf {
	int lines[8]; /* by priority */
	char last[256];
};

static void log_to(void *data, enum dmabuf_log_priority prio, const char *msg)
{
	struct logbuf *l = data;

	l->lines[prio]++;
	snprintf(l->last, sizeof(l->last), "%s", msg);
}

static void log_handler_and_priority(void **state)
{
	struct logbuf log = { 0 };
	struct dmabuf_ctx_config cfg = { .log_fn = log_to, .log_data = &log };
	struct test_exporter tx = { 0 };
	struct dmabuf_ctx *ctx;
	struct dmabuf *orphan, *buf;
	int fd;

	/* default priority ERROR: a debug line is dropped, an error is not */
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	orphan = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(log.lines[DMABUF_LOG_DEBUG], 0);
	fd = dmabuf_fd(orphan, O_CLOEXEC); /* keeps it, so it can be misused */
	assert_int_equal(dmabuf_put(orphan), 0);
	assert_int_equal(dmabuf_put(orphan), -EINVAL); /* double put */
	assert_int_equal(log.lines[DMABUF_LOG_ERROR], 1);
	assert_non_null(strstr(log.last, "double put"));
	/* DEBUG lets the export line through */
	dmabuf_ctx_set_log(ctx, log_to, &log, DMABUF_LOG_DEBUG);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_true(log.lines[DMABUF_LOG_DEBUG] >= 1);
	assert_int_equal(dmabuf_put(buf), 0);
	/* priority 0 drops everything, errors included */
	memset(&log, 0, sizeof(log));
	dmabuf_ctx_set_log(ctx, log_to, &log, (enum dmabuf_log_priority)0);
	assert_int_equal(dmabuf_put(orphan), -EINVAL);
	assert_int_equal(log.lines[DMABUF_LOG_ERROR], 0);
	/* and the new handler gets them once the priority allows */
	dmabuf_ctx_set_log(ctx, log_to, &log, DMABUF_LOG_ERROR);
	assert_int_equal(dmabuf_put(orphan), -EINVAL);
	assert_int_equal(log.lines[DMABUF_LOG_ERROR], 1);
	close(fd);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 2);
}

/* The context's fd becomes readable when a buffer's last holder goes
 * elsewhere, and dispatch runs the release. */
static void fd_is_pollable_and_dispatch_releases(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct pollfd p = { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN };
	int fd = dmabuf_fd(buf, O_CLOEXEC), handled = 0;

	assert_true(p.fd >= 0);
	assert_int_equal(fcntl(p.fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(dmabuf_ctx_get_fd(ctx), p.fd); /* always the same */
	assert_int_equal(dmabuf_ctx_dispatch(ctx), 0); /* nothing pending */
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 0); /* fd holds it */
	close(fd);
	/* the close event, maybe a re-probe timer after it */
	for (int i = 0; i < 500 && !tx.release; i++) {
		if (poll(&p, 1, 10) == 1) {
			int n = dmabuf_ctx_dispatch(ctx);

			assert_true(n >= 0);
			handled += n;
		}
	}
	assert_int_equal(tx.release, 1);
	assert_true(handled >= 1);
	dmabuf_ctx_destroy(ctx);
	assert_int_equal(tx.release, 1);
}

struct thread_fx {
	struct test_exporter tx; /* first: the tx_* ops see it */
	struct dmabuf_ctx *ctx;
	int stop_from_op;
};

static void release_stops_thread(struct dmabuf *buf)
{
	struct thread_fx *t = dmabuf_get_priv(buf);

	t->stop_from_op = dmabuf_ctx_stop_thread(t->ctx);
	tx_release(buf);
}

/* The service thread serves the context without the caller dispatching;
 * it cannot stop itself. */
static void service_thread_start_and_stop(void **state)
{
	struct thread_fx t = { .stop_from_op = 1 };
	struct dmabuf_ops ops = tx_ops;
	struct dmabuf_export_info info = {
		.exp_name = "thr", .ops = &ops, .size = SZ, .flags = O_RDWR, .priv = &t,
	};
	struct dmabuf_ctx_stats st = { 0 };
	struct dmabuf *buf;
	int fd;

	t.ctx = tx_ctx_new(0);
	ops.release = release_stops_thread;
	assert_int_equal(dmabuf_ctx_stop_thread(t.ctx), -ESRCH);
	assert_int_equal(dmabuf_ctx_start_thread(t.ctx), 0);
	assert_int_equal(dmabuf_ctx_start_thread(t.ctx), -EBUSY);
	assert_int_equal(dmabuf_export(t.ctx, &info, &buf), 0);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	/* released by the thread: this test never dispatches */
	for (int i = 0; i < 500 && st.buffers_released == 0; i++) {
		poll(NULL, 0, 10);
		assert_int_equal(dmabuf_ctx_get_stats(t.ctx, &st), 0);
	}
	assert_int_equal(st.buffers_released, 1);
	assert_int_equal(t.tx.release, 1);
	assert_int_equal(t.stop_from_op, -EDEADLK);
	assert_int_equal(dmabuf_ctx_stop_thread(t.ctx), 0);
	assert_int_equal(dmabuf_ctx_stop_thread(t.ctx), -ESRCH);
	/* again, and destroy stops it */
	assert_int_equal(dmabuf_ctx_start_thread(t.ctx), 0);
	dmabuf_ctx_destroy(t.ctx);
}

/* The service thread waits on the context's epoll set, where its stop
 * eventfd is a source: another thread dispatching meanwhile (and so
 * seeing that source) neither keeps it from stopping nor is left with the
 * source, and a peer's requests are served throughout. */
static void service_thread_stops_while_another_dispatches(void **state)
{
	struct tx_dispatcher d = { .ctx = tx_ctx_new(0), .timeout_ms = 2 };
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(d.ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_ctx_stats st = { 0 };
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_true(fd >= 0);
	tx_dispatcher_start(&d);
	for (int i = 0; i < 200; i++) {
		assert_int_equal(dmabuf_ctx_start_thread(d.ctx), 0);
		if (i % 2)
			poll(NULL, 0, 1);
		assert_int_equal(dmabuf_ctx_stop_thread(d.ctx), 0);
	}
	assert_int_equal(tx_dispatcher_stop(&d), 0);
	/* Nothing is left ready in the set: the stop source went with the
	 * thread. */
	assert_int_equal(dmabuf_ctx_dispatch_timeout(d.ctx, 0), 0);
	/* A service thread started afterwards still serves (and stops). */
	assert_int_equal(dmabuf_ctx_start_thread(d.ctx), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	for (int i = 0; i < 500 && st.buffers_released == 0; i++) {
		poll(NULL, 0, 10);
		assert_int_equal(dmabuf_ctx_get_stats(d.ctx, &st), 0);
	}
	assert_int_equal(st.buffers_released, 1);
	assert_int_equal(dmabuf_ctx_stop_thread(d.ctx), 0);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(d.ctx);
}

static void stats_follow_the_objects(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 }, tc = { 0 };
	struct dmabuf *sys = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *cma = tx_export(ctx, &tc, 2 * SZ, O_RDWR, DMABUF_ALLOC_CONTIGUOUS);
	struct dmabuf_device *dev = tx_device(ctx, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_ctx_stats st = { 0 };

	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.buffers_live, 2);
	assert_int_equal(st.phys_used, 3 * SZ);
	assert_int_equal(st.cma_used, 2 * SZ);
	assert_int_equal(dmabuf_attach(sys, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.attachments_live, 1);
	assert_int_equal(st.mappings_live, 1);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(sys, att), 0);
	assert_int_equal(dmabuf_put(cma), 0);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.attachments_live, 0);
	assert_int_equal(st.mappings_live, 0);
	assert_int_equal(st.buffers_live, 1);
	assert_int_equal(st.buffers_released, 1);
	assert_int_equal(st.phys_used, SZ);
	assert_int_equal(st.cma_used, 0);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, NULL), -EINVAL);
	assert_int_equal(dmabuf_put(sys), 0);
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.buffers_live, 0);
	assert_int_equal(st.buffers_released, 2);
	assert_int_equal(st.phys_used, 0);
	dmabuf_ctx_destroy(ctx);
}

/* How many fds of this process are `what` (their /proc/self/fd link). */
static int count_fds_of(const char *what)
{
	int fds[256], n = harness_list_fds(fds, 256), count = 0;

	for (int i = 0; i < n; i++) {
		char path[64], link[64];
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i]);
		len = readlink(path, link, sizeof(link) - 1);
		if (len < 0)
			continue;
		link[len] = '\0';
		count += !strcmp(link, what);
	}
	return count;
}

#define INOTIFY "anon_inode:inotify"
#define TIMERFD "anon_inode:[timerfd]"

/* issue 11: a context holds its epoll fd alone until its first share (the
 * release watch's inotify fd and re-probe timerfd come then), so one that
 * only imports, as a first connect does, makes neither. */
static void release_fds_come_with_the_first_share(void **state)
{
	struct dmabuf_ctx *exp, *imp;
	struct test_exporter tx = { 0 };
	struct dmabuf *buf, *proxy;
	int fds0 = harness_count_fds(), fd, timers;

	exp = tx_ctx_new(0);
	assert_int_equal(harness_count_fds(), fds0 + 1);
	/* the first export makes the endpoint (its own retry timerfd) */
	buf = tx_export(exp, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	timers = count_fds_of(TIMERFD);
	assert_int_equal(count_fds_of(INOTIFY), 0);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(count_fds_of(INOTIFY), 1);
	assert_int_equal(count_fds_of(TIMERFD), timers + 1);

	fds0 = harness_count_fds();
	imp = tx_ctx_new(0);
	assert_int_equal(harness_count_fds(), fds0 + 1); /* its epoll fd */
	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	assert_int_equal(dmabuf_get_size(proxy), SZ);
	assert_int_equal(dmabuf_put(proxy), 0);
	assert_int_equal(count_fds_of(INOTIFY), 1);
	assert_int_equal(count_fds_of(TIMERFD), timers + 1);
	dmabuf_ctx_destroy(imp);

	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	for (int i = 0; i < 500 && !tx.release; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(count_fds_of(INOTIFY), 0);
	assert_int_equal(count_fds_of(TIMERFD), 0);
}

/* The fd dmabuf_ctx_get_fd() gave before the first share reports the
 * release watch the share added to it later, and so does a context that
 * imported first and exports later. */
static void early_fd_sees_the_later_release_watch(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *ctx = tx_ctx_new(0);
	struct test_exporter te = { 0 }, tx = { 0 };
	struct pollfd p = { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN };
	struct dmabuf *other = tx_export(exp, &te, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *proxy, *buf;
	int ofd = dmabuf_fd(other, O_CLOEXEC), fd;

	assert_true(p.fd >= 0);
	assert_true(ofd >= 0);
	/* an importer first */
	assert_int_equal(dmabuf_get(ctx, ofd, &proxy), 0);
	assert_int_equal(dmabuf_put(proxy), 0);
	assert_int_equal(count_fds_of(INOTIFY), 1); /* the exporter's only */
	/* then an exporter that shares */
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(count_fds_of(INOTIFY), 2);
	assert_int_equal(dmabuf_ctx_get_fd(ctx), p.fd); /* still the same */
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 0); /* fd holds it */
	assert_int_equal(poll(&p, 1, 0), 0);
	close(fd);
	/* the close event reaches the early fd */
	for (int i = 0; i < 500 && !tx.release; i++)
		if (poll(&p, 1, 10) == 1)
			assert_true(dmabuf_ctx_dispatch(ctx) >= 0);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(ctx);

	assert_int_equal(dmabuf_put(other), 0);
	close(ofd);
	for (int i = 0; i < 500 && !te.release; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(te.release, 1);
	dmabuf_ctx_destroy(exp);
}

/* The lowest fd number that is free now, and the next one. */
static void next_free_fds(int *a, int *b)
{
	*a = dup(0);
	*b = dup(0);
	assert_true(*a >= 0 && *b > *a);
	close(*a);
	close(*b);
}

static void nofile_soft(rlim_t soft, struct rlimit *old)
{
	struct rlimit rl;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, old), 0);
	rl = *old;
	rl.rlim_cur = soft;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

/* Out of fds at the first share: the inotify fd, or the timerfd after it,
 * cannot be made. The share fails with the errno, holds nothing it made,
 * leaves the buffer as it was, and works once fds are there again. */
static void first_share_without_fds_fails_cleanly(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct rlimit old;
	int a, b, fds0, fd;
	void *v;

	for (int fail_second = 0; fail_second < 2; fail_second++) {
		next_free_fds(&a, &b);
		fds0 = harness_count_fds();
		/* the inotify fd takes a; the timerfd, b, fails */
		nofile_soft((rlim_t)(fail_second ? b : a), &old);
		assert_int_equal(dmabuf_fd(buf, O_CLOEXEC), -EMFILE);
		assert_int_equal(dmabuf_mmap(buf, 0, SZ, PROT_READ, &v), -EMFILE);
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
		assert_int_equal(harness_count_fds(), fds0);
		assert_int_equal(count_fds_of(INOTIFY), 0);
		assert_int_equal(tx.release, 0);
	}
	/* never shared: the last put still releases it at once */
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);

	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(count_fds_of(INOTIFY), 1);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	for (int i = 0; i < 500 && tx.release < 2; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
	assert_int_equal(tx.release, 2);
	dmabuf_ctx_destroy(ctx);
}

/* A context's frame bitmap comes with its first allocation: an importer
 * never makes it; when it cannot be had, that export fails with -ENOMEM,
 * holds nothing, and the next one makes it. */
static void frame_bitmap_at_first_export(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "test", .ops = &tx_ops, .size = SZ, .flags = O_RDWR,
		.priv = &tx, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf_ctx_stats st = { 0 };
	struct dmabuf *buf = NULL;
	int fds0;

	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1, ENOMEM), 0);
	assert_int_equal(dmabuf_export(ctx, &info, &buf), -ENOMEM);
	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0), 0);
	assert_null(buf);
	/* the context's endpoint, made at its first export, stays; no memfd */
	fds0 = harness_count_fds();
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.buffers_live, 0);
	assert_int_equal(st.phys_used, 0);
	assert_int_equal(tx.release, 0);
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(harness_count_fds(), fds0 + 1); /* its memfd */
	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	assert_int_equal(st.phys_used, SZ);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(ctx);
}

struct fork_env {
	struct dmabuf_ctx *parent;
	int fd; /* a buffer fd of the parent's */
};

/* In the child: the inherited context refuses everything; a new one works
 * and can import the parent's buffer as any other process would. */
static int child_uses_contexts(void *arg)
{
	struct fork_env *env = arg;
	struct dmabuf_ctx_stats st = { 0 };
	struct dmabuf_ctx *own;
	struct dmabuf *buf;

	if (dmabuf_ctx_get_fd(env->parent) != -EINVAL ||
	    dmabuf_ctx_dispatch(env->parent) != -EINVAL ||
	    dmabuf_ctx_get_stats(env->parent, &st) != -EINVAL ||
	    dmabuf_ctx_start_thread(env->parent) != -EINVAL ||
	    dmabuf_get(env->parent, env->fd, &buf) != -EINVAL ||
	    dmabuf_heap_alloc(env->parent, "system", 4096, O_RDWR, 0) != -EINVAL)
		return 1;
	dmabuf_ctx_destroy(env->parent); /* refused too: the parent's to destroy */
	if (dmabuf_ctx_new(NULL, &own))
		return 2;
	dmabuf_ctx_set_log(own, NULL, NULL, (enum dmabuf_log_priority)0);
	if (dmabuf_get(own, env->fd, &buf) || dmabuf_get_size(buf) != SZ)
		return 3;
	if (dmabuf_put(buf))
		return 4;
	dmabuf_ctx_destroy(own);
	return 0;
}

static void fork_child_gets_its_own_context(void **state)
{
	struct fork_env env;
	struct test_exporter tx = { 0 };
	struct dmabuf *buf;
	pid_t pid;

	env.parent = tx_ctx_new(0);
	buf = tx_export(env.parent, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	env.fd = dmabuf_fd(buf, O_CLOEXEC);
	pid = harness_fork(child_uses_contexts, &env);
	/* the child's import needs the exporter served meanwhile (by this
	 * thread: a service thread could hold a library lock at fork time) */
	for (;;) {
		int status;
		pid_t w = waitpid(pid, &status, WNOHANG);

		assert_true(w >= 0);
		if (w == pid) {
			assert_true(WIFEXITED(status));
			assert_int_equal(WEXITSTATUS(status), 0);
			break;
		}
		dmabuf_ctx_dispatch_timeout(env.parent, 10);
	}
	/* the parent's context is untouched by all that */
	assert_int_equal(tx.attach, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(env.fd);
	for (int i = 0; i < 500 && !tx.release; i++)
		dmabuf_ctx_dispatch_timeout(env.parent, 10);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(env.parent);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(config_defaults_and_checks),
		harness_test(log_handler_and_priority),
		harness_test(fd_is_pollable_and_dispatch_releases),
		harness_test(service_thread_start_and_stop),
		harness_test(service_thread_stops_while_another_dispatches),
		harness_test(stats_follow_the_objects),
		harness_test(fork_child_gets_its_own_context),
		harness_test(release_fds_come_with_the_first_share),
		harness_test(early_fd_sees_the_later_release_watch),
		harness_test(first_share_without_fds_fails_cleanly),
		harness_test(frame_bitmap_at_first_export),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
