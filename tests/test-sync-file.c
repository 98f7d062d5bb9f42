/* SPDX-License-Identifier: MIT */
/* Sync files and sw_sync timelines: mirrors the kernel's sync selftests
 * (tools/testing/selftests/sync), plus fds crossing processes. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dmabuf-fence.h"

/* ---- helpers ----------------------------------------------------------- */

static int sw_sync_fence(struct dmabuf_timeline *tl, uint32_t value)
{
	struct dmabuf_fence *f;
	int fd;

	assert_int_equal(dmabuf_timeline_create_fence(tl, value, &f), 0);
	fd = dmabuf_sync_file_export(f);
	assert_true(fd >= 0);
	dmabuf_fence_put(f);
	return fd;
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static int count_with_status(int fd, int status)
{
	struct dmabuf_sync_fence_info info[64];
	int n = dmabuf_sync_file_info(fd, NULL, info, 64), c = 0;

	assert_true(n >= 0 && n <= 64);
	for (int i = 0; i < n; i++)
		if (status > 0 ? info[i].status > 0 : info[i].status == status)
			c++;
	return c;
}

static int send_fd(int sock, int fd)
{
	char byte = 'F';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	memset(u.buf, 0, sizeof(u.buf));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *c;
	int fd = -1;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* ---- sync selftests ------------------------------------------------------ */

static void test_alloc(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;

	assert_int_equal(dmabuf_timeline_new("alloc", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &f), 0);
	assert_string_equal(dmabuf_fence_driver_name(f), "sw_sync");
	assert_string_equal(dmabuf_fence_timeline_name(f), "alloc");
	assert_int_equal(dmabuf_fence_get_seqno(f), 1);
	assert_int_equal(dmabuf_timeline_create_fence(NULL, 1, &f), -EINVAL);
	dmabuf_timeline_inc(tl, 1);
	assert_true(dmabuf_fence_is_signaled(f));
	dmabuf_fence_put(f);
	dmabuf_timeline_destroy(tl);
}

static void test_one_timeline_wait(void **state)
{
	struct dmabuf_timeline *tl;
	int fd;

	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	fd = sw_sync_fence(tl, 5);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 0);
	assert_false(readable(fd));
	/* Advance to 4: still pending. */
	dmabuf_timeline_inc(tl, 1);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 0);
	dmabuf_timeline_inc(tl, 3);
	assert_int_equal(dmabuf_timeline_value(tl), 4);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 0);
	/* Reach 5: signalled, and stays so. */
	dmabuf_timeline_inc(tl, 1);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 1);
	assert_true(readable(fd));
	assert_true(readable(fd));
	dmabuf_timeline_inc(tl, 2);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 1);
	close(fd);
	/* A point the timeline has already passed is born signalled. */
	fd = sw_sync_fence(tl, 3);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 1);
	close(fd);
	dmabuf_timeline_destroy(tl);
}

static void test_one_timeline_merge(void **state)
{
	struct dmabuf_timeline *tl;
	int a, b, c, d, m;
	int status = -1;

	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	a = sw_sync_fence(tl, 1);
	b = sw_sync_fence(tl, 2);
	c = sw_sync_fence(tl, 3);
	d = dmabuf_sync_file_merge(a, b);
	assert_true(d >= 0);
	m = dmabuf_sync_file_merge(d, c);
	assert_true(m >= 0);
	/* Same timeline: one fence, the latest. */
	assert_int_equal(dmabuf_sync_file_info(m, &status, NULL, 0), 1);
	assert_int_equal(status, 0);
	assert_int_equal(count_with_status(m, 0), 1);
	dmabuf_timeline_inc(tl, 1);
	assert_int_equal(dmabuf_sync_file_wait(a, 0), 1);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 0);
	dmabuf_timeline_inc(tl, 1);
	assert_int_equal(dmabuf_sync_file_wait(b, 0), 1);
	assert_int_equal(dmabuf_sync_file_wait(d, 0), 1);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 0);
	dmabuf_timeline_inc(tl, 1);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 1);
	assert_int_equal(dmabuf_sync_file_info(m, &status, NULL, 0), 1);
	assert_int_equal(status, 1);
	close(a);
	close(b);
	close(c);
	close(d);
	close(m);
	dmabuf_timeline_destroy(tl);
}

static void test_merge_same_fence(void **state)
{
	struct dmabuf_timeline *tl;
	int f, m;

	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	f = sw_sync_fence(tl, 5);
	m = dmabuf_sync_file_merge(f, f);
	assert_true(m >= 0);
	assert_int_equal(dmabuf_sync_file_info(m, NULL, NULL, 0), 1);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 0);
	dmabuf_timeline_inc(tl, 5);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 1);
	close(m);
	close(f);
	dmabuf_timeline_destroy(tl);
}

static void test_multi_timeline_wait(void **state)
{
	struct dmabuf_timeline *tl[3];
	int f[3], ab, m, status;

	for (int i = 0; i < 3; i++) {
		assert_int_equal(dmabuf_timeline_new(NULL, &tl[i]), 0);
		f[i] = sw_sync_fence(tl[i], 5);
	}
	ab = dmabuf_sync_file_merge(f[0], f[1]);
	m = dmabuf_sync_file_merge(ab, f[2]);
	assert_true(ab >= 0 && m >= 0);
	assert_int_equal(dmabuf_sync_file_info(m, NULL, NULL, 0), 3);
	assert_int_equal(count_with_status(m, 0), 3);
	assert_int_equal(count_with_status(m, 1), 0);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 0);

	dmabuf_timeline_inc(tl[0], 5);
	assert_int_equal(count_with_status(m, 0), 2);
	assert_int_equal(count_with_status(m, 1), 1);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 0);
	dmabuf_timeline_inc(tl[1], 5);
	assert_int_equal(count_with_status(m, 0), 1);
	assert_int_equal(count_with_status(m, 1), 2);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 0);
	dmabuf_timeline_inc(tl[2], 5);
	assert_int_equal(count_with_status(m, 0), 0);
	assert_int_equal(count_with_status(m, 1), 3);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 1);
	assert_int_equal(dmabuf_sync_file_info(m, &status, NULL, 0), 3);
	assert_int_equal(status, 1);
	close(ab);
	close(m);
	for (int i = 0; i < 3; i++) {
		close(f[i]);
		dmabuf_timeline_destroy(tl[i]);
	}
}

static void test_timeline_destroy(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *done, *pending;
	struct dmabuf_sync_fence_info info;
	int fd, status;

	assert_int_equal(dmabuf_timeline_new("doomed", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &done), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 10, &pending), 0);
	fd = dmabuf_sync_file_export(pending);
	dmabuf_timeline_inc(tl, 1);
	dmabuf_timeline_destroy(tl);
	/* As sw_sync's release: pending points signal with -ENOENT. */
	assert_int_equal(dmabuf_fence_get_status(done), 1);
	assert_int_equal(dmabuf_fence_get_status(pending), -ENOENT);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 1);
	assert_int_equal(dmabuf_sync_file_info(fd, &status, &info, 1), 1);
	assert_int_equal(status, -ENOENT);
	assert_int_equal(info.status, -ENOENT);
	assert_string_equal(info.obj_name, "doomed");
	assert_string_equal(info.driver_name, "sw_sync");
	assert_true(info.timestamp_ns > 0);
	/* Signalled fences outlive their timeline. */
	assert_string_equal(dmabuf_fence_timeline_name(pending), "doomed");
	close(fd);
	dmabuf_fence_put(done);
	dmabuf_fence_put(pending);
}

static const char *wait_edges_name(struct dmabuf_fence *f)
{
	(void)f;
	return "wait-edges";
}

static const struct dmabuf_fence_ops test_fence_ops = {
	.get_driver_name = wait_edges_name,
	.get_timeline_name = wait_edges_name,
};

/* dmabuf_sync_file_wait() waits in one peek at the record: what that peek
 * cannot tell apart still gets the old answers. */
static void *signal_later(void *arg)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	assert_int_equal(dmabuf_fence_signal(arg), 0);
	return NULL;
}

static void test_wait_edges(void **state)
{
	struct dmabuf_fence *f;
	pthread_t th;
	int fd, sv[2], un, fl;
	char junk[200];

	(void)state;
	assert_int_equal(dmabuf_fence_new(&test_fence_ops, NULL,
					  dmabuf_fence_context_alloc(1), 1, &f), 0);
	fd = dmabuf_sync_file_export(f);
	assert_true(fd >= 0);
	/* A kernel sync file has no O_NONBLOCK; neither has ours. */
	fl = fcntl(fd, F_GETFL);
	assert_false(fl & O_NONBLOCK);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 0);
	/* A caller's O_NONBLOCK: the peek finds nothing at once, the wait
	 * still waits (poll) until the signal. */
	assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
	assert_int_equal(pthread_create(&th, NULL, signal_later, f), 0);
	assert_int_equal(dmabuf_sync_file_wait(fd, -1), 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 1);
	assert_int_equal(fcntl(fd, F_SETFL, fl), 0);
	assert_int_equal(dmabuf_sync_file_wait(fd, -1), 1);
	close(fd);
	dmabuf_fence_put(f);

	/* The signaller gone (no record, EOF): signalled, for -1 and 0. */
	assert_int_equal(dmabuf_fence_new(&test_fence_ops, NULL,
					  dmabuf_fence_context_alloc(1), 1, &f), 0);
	fd = dmabuf_sync_file_export(f);
	assert_true(fd >= 0);
	dmabuf_fence_put(f);
	assert_int_equal(dmabuf_sync_file_wait(fd, -1), 1);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 1);
	close(fd);

	/* Sockets that are not sync files: data that is no record, EOF, an
	 * unconnected socket. None is taken for a signalled fence. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	memset(junk, 'x', sizeof(junk));
	assert_int_equal(send(sv[1], junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	assert_int_equal(dmabuf_sync_file_wait(sv[0], -1), -EINVAL);
	assert_int_equal(dmabuf_sync_file_wait(sv[0], 0), -EINVAL);
	assert_int_equal(recv(sv[0], junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	close(sv[1]);
	assert_int_equal(dmabuf_sync_file_wait(sv[0], -1), -EINVAL);
	close(sv[0]);
	un = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(un >= 0);
	assert_int_equal(dmabuf_sync_file_wait(un, -1), -EINVAL);
	assert_int_equal(dmabuf_sync_file_wait(un, 0), -EINVAL);
	close(un);
	/* Not an fd; a closed one. */
	assert_int_equal(dmabuf_sync_file_wait(-1, -1), -EBADF);
	assert_int_equal(dmabuf_sync_file_wait(un, -1), -EBADF);
	assert_int_equal(dmabuf_sync_file_wait(un, 0), -EBADF);
}

static void test_import_export(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f, *g = NULL, *h = NULL;
	int fd, fd2, pipefd[2];

	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &f), 0);
	fd = dmabuf_sync_file_export(f);
	fd2 = dmabuf_sync_file_export(f);
	assert_true(fd >= 0 && fd2 >= 0 && fd != fd2);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	/* In the exporting process the original fence comes back. */
	assert_int_equal(dmabuf_sync_file_import(fd, &g), 0);
	assert_ptr_equal(g, f);
	assert_int_equal(dmabuf_sync_file_import(fd2, &h), 0);
	assert_ptr_equal(h, f);
	dmabuf_fence_put(g);
	dmabuf_fence_put(h);
	/* Not a sync file; not an fd. */
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	assert_int_equal(dmabuf_sync_file_import(pipefd[0], &g), -EINVAL);
	assert_int_equal(dmabuf_sync_file_wait(pipefd[0], 0), -EINVAL);
	assert_int_equal(dmabuf_sync_file_import(-1, &g), -EBADF);
	/* SYNC_IOC_MERGE is an ioctl on fd1: a file that is not a sync file has
	 * no such ioctl (-ENOTTY); sync_file_ioctl_merge() answers -ENOENT when
	 * sync_file_fdget(fd2) finds no sync file, bad fd included. */
	assert_int_equal(dmabuf_sync_file_merge(fd, pipefd[1]), -ENOENT);
	assert_int_equal(dmabuf_sync_file_merge(fd, -1), -ENOENT);
	assert_int_equal(dmabuf_sync_file_merge(pipefd[1], fd), -ENOTTY);
	assert_int_equal(dmabuf_sync_file_merge(-1, fd), -EBADF);
	/* an O_PATH fd of a sync file is no open file of it: fget() fails */
	{
		char path[64];
		int opath;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		opath = open(path, O_PATH | O_CLOEXEC);
		assert_true(opath >= 0);
		assert_int_equal(dmabuf_sync_file_import(opath, &g), -EBADF);
		assert_int_equal(dmabuf_sync_file_info(opath, NULL, NULL, 0), -EBADF);
		assert_int_equal(dmabuf_sync_file_merge(opath, fd), -EBADF);
		assert_int_equal(dmabuf_sync_file_merge(fd, opath), -ENOENT);
		close(opath);
	}
	close(pipefd[0]);
	close(pipefd[1]);
	dmabuf_timeline_inc(tl, 1);
	assert_true(readable(fd) && readable(fd2));
	close(fd);
	close(fd2);
	dmabuf_fence_put(f);
	dmabuf_timeline_destroy(tl);
}

/* ---- stress, as the sync selftests ------------------------------------- */

struct pingpong {
	struct dmabuf_timeline *tl;
	int iterations;
	int id;
	atomic_int *counter;
	int errors;
};

static void *pingpong_thread(void *arg)
{
	struct pingpong *p = arg;

	for (int i = 0; i < p->iterations; i++) {
		struct dmabuf_fence *f;
		uint32_t v = (uint32_t)(i * 2 + p->id);

		/* Wait for my turn, do the work, hand over. */
		if (dmabuf_timeline_create_fence(p->tl, v, &f) ||
		    dmabuf_fence_wait(f, 10000) != 1) {
			p->errors++;
			return NULL;
		}
		if (atomic_load(p->counter) != (int)v)
			p->errors++;
		atomic_fetch_add(p->counter, 1);
		dmabuf_fence_put(f);
		dmabuf_timeline_inc(p->tl, 1);
	}
	return NULL;
}

static void test_stress_parallelism(void **state)
{
	struct dmabuf_timeline *tl;
	atomic_int counter = 0;
	struct pingpong p[2];
	pthread_t t[2];
	int n = harness_under_valgrind() ? 100 : 2000;

	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	for (int i = 0; i < 2; i++) {
		p[i] = (struct pingpong){ .tl = tl, .iterations = n, .id = i,
					  .counter = &counter };
		assert_int_equal(pthread_create(&t[i], NULL, pingpong_thread, &p[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(p[0].errors + p[1].errors, 0);
	assert_int_equal(atomic_load(&counter), 2 * n);
	dmabuf_timeline_destroy(tl);
}

/* Producers wait for their turn on the producer timeline, bump a counter
 * and signal the consumer timeline; the consumer checks each step. */
struct consumer_ctx {
	struct dmabuf_timeline *producer, *consumer;
	int nproducers, iterations;
	atomic_int counter;
	atomic_int errors;
};

struct producer_arg {
	struct consumer_ctx *c;
	int id;
};

static void *producer_thread(void *arg)
{
	struct producer_arg *pa = arg;
	struct consumer_ctx *c = pa->c;

	for (int i = 0; i < c->iterations; i++) {
		struct dmabuf_fence *f;
		int fd;

		/* Exercise the fd path: wait by polling the sync file. */
		if (dmabuf_timeline_create_fence(c->producer,
						 (uint32_t)(i * c->nproducers + pa->id + 1), &f)) {
			atomic_fetch_add(&c->errors, 1);
			return NULL;
		}
		fd = dmabuf_sync_file_export(f);
		dmabuf_fence_put(f);
		if (fd < 0 || dmabuf_sync_file_wait(fd, 10000) != 1)
			atomic_fetch_add(&c->errors, 1);
		if (fd >= 0)
			close(fd);
		atomic_fetch_add(&c->counter, 1);
		dmabuf_timeline_inc(c->consumer, 1);
	}
	return NULL;
}

static void test_stress_consumer(void **state)
{
	struct consumer_ctx c = { .nproducers = 3 };
	struct producer_arg pa[3];
	pthread_t t[3];
	int total;

	c.iterations = harness_under_valgrind() ? 30 : 300;
	total = c.iterations * c.nproducers;
	assert_int_equal(dmabuf_timeline_new("producer", &c.producer), 0);
	assert_int_equal(dmabuf_timeline_new("consumer", &c.consumer), 0);
	for (int i = 0; i < c.nproducers; i++) {
		pa[i] = (struct producer_arg){ .c = &c, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, producer_thread, &pa[i]), 0);
	}
	for (int i = 1; i <= total; i++) {
		struct dmabuf_fence *f;

		/* Release one producer, wait for it to report back. */
		dmabuf_timeline_inc(c.producer, 1);
		assert_int_equal(dmabuf_timeline_create_fence(c.consumer, (uint32_t)i, &f), 0);
		assert_int_equal(dmabuf_fence_wait(f, 10000), 1);
		dmabuf_fence_put(f);
		assert_int_equal(atomic_load(&c.counter), i);
	}
	for (int i = 0; i < c.nproducers; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&c.errors), 0);
	dmabuf_timeline_destroy(c.producer);
	dmabuf_timeline_destroy(c.consumer);
}

/* Random merges over several timelines; the merged fence must hold one
 * fence per timeline, at the highest value merged, and signal exactly
 * when every timeline reaches it. */
static void test_stress_merge(void **state)
{
	enum { NTL = 8 };
	struct dmabuf_timeline *tl[NTL];
	uint32_t max[NTL] = { 0 };
	int iterations = harness_under_valgrind() ? 40 : 400;
	unsigned int seed = 1234;
	int merged;

	for (int i = 0; i < NTL; i++)
		assert_int_equal(dmabuf_timeline_new(NULL, &tl[i]), 0);
	merged = sw_sync_fence(tl[0], 1);
	max[0] = 1;
	for (int i = 0; i < iterations; i++) {
		int t = rand_r(&seed) % NTL;
		uint32_t v = (uint32_t)(rand_r(&seed) % 50) + 1;
		int fd = sw_sync_fence(tl[t], v), m;

		if (v > max[t])
			max[t] = v;
		m = dmabuf_sync_file_merge(merged, fd);
		assert_true(m >= 0);
		close(fd);
		close(merged);
		merged = m;
	}
	int used = 0;

	for (int i = 0; i < NTL; i++)
		used += max[i] > 0;
	assert_int_equal(dmabuf_sync_file_info(merged, NULL, NULL, 0), used);
	/* Bring each timeline to one below its maximum: still pending. */
	for (int i = 0; i < NTL; i++)
		if (max[i] > 1)
			dmabuf_timeline_inc(tl[i], max[i] - 1);
	assert_int_equal(dmabuf_sync_file_wait(merged, 0), used == 0);
	for (int i = 0; i < NTL; i++) {
		if (!max[i])
			continue;
		assert_int_equal(dmabuf_sync_file_wait(merged, 0), 0);
		dmabuf_timeline_inc(tl[i], 1);
	}
	assert_int_equal(dmabuf_sync_file_wait(merged, 0), 1);
	close(merged);
	for (int i = 0; i < NTL; i++)
		dmabuf_timeline_destroy(tl[i]);
}

/* ---- across processes ------------------------------------------------------ */

struct xproc {
	int sock;
	struct harness_sync sync;
	uint64_t context, seqno;
};

static void count_cb(struct dmabuf_fence *f, struct dmabuf_fence_cb *cb)
{
	atomic_fetch_add((atomic_int *)(cb + 1), 1);
}

struct counted_cb {
	struct dmabuf_fence_cb cb;
	atomic_int count;
};

/* Child: receives a pending sync file, checks it, waits for it. */
static int child_waiter(void *arg)
{
	struct xproc *x = arg;
	struct dmabuf_fence *f = NULL, *again = NULL;
	struct counted_cb ccb = { .count = 0 };
	int fd, status = 0;

	harness_sync_child(&x->sync);
	fd = recv_fd(x->sock);
	child_check(fd >= 0);
	child_check(!readable(fd));
	child_check(dmabuf_sync_file_import(fd, &f) == 0);
	child_check(dmabuf_fence_get_context(f) == x->context);
	child_check(dmabuf_fence_get_seqno(f) == x->seqno);
	child_check(dmabuf_fence_get_status(f) == 0);
	child_check(dmabuf_sync_file_import(fd, &again) == 0 && again == f);
	dmabuf_fence_put(again);
	/* A callback on an imported fence runs without anyone waiting. */
	child_check(dmabuf_fence_add_callback(f, &ccb.cb, count_cb) == 0);
	harness_sync_tell_parent(&x->sync, 'r');
	child_check(dmabuf_sync_file_wait(fd, 10000) == 1);
	child_check(dmabuf_fence_wait(f, 10000) == 1);
	child_check(dmabuf_fence_get_status(f) == -EIO);
	/* the watcher thread runs it: a bound of rounds as the others' */
	for (int i = 0; i < 10000 && !atomic_load(&ccb.count); i++)
		usleep(1000);
	child_check(atomic_load(&ccb.count) == 1);
	child_check(dmabuf_sync_file_info(fd, &status, NULL, 0) == 1 && status == -EIO);
	dmabuf_fence_put(f);
	close(fd);
	/* exit(), not a return to _exit(): library destructors join the
	 * fence watcher thread, so valgrind sees nothing of it left. */
	exit(0);
}

static void test_cross_process_signal(void **state)
{
	struct xproc x;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;
	int sv[2], fd;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	harness_sync_init(&x.sync);
	assert_int_equal(dmabuf_timeline_new("xproc", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 3, &f), 0);
	x.context = dmabuf_fence_get_context(f);
	x.seqno = 3;
	x.sock = sv[1];
	pid = harness_fork_sock(child_waiter, &x, sv[0]);
	harness_sync_parent(&x.sync);
	close(sv[1]);
	fd = dmabuf_sync_file_export(f);
	assert_int_equal(send_fd(sv[0], fd), 0);
	close(fd);
	assert_int_equal(harness_sync_wait_child(&x.sync), 'r');
	assert_int_equal(dmabuf_fence_set_error(f, -EIO), 0);
	dmabuf_timeline_inc(tl, 3);
	assert_int_equal(harness_wait(pid), 0);
	close(sv[0]);
	harness_sync_close(&x.sync);
	dmabuf_fence_put(f);
	dmabuf_timeline_destroy(tl);
}

/* ---- deadlines across processes -------------------------------------------- */

static atomic_int dl_calls;
static _Atomic int64_t dl_earliest;

static const char *dl_name(struct dmabuf_fence *f)
{
	return "deadline";
}

/* A driver's set_deadline: keeps the earliest, as drivers do. */
static void dl_set_deadline(struct dmabuf_fence *f, int64_t ns)
{
	int64_t cur = atomic_load(&dl_earliest);

	atomic_fetch_add(&dl_calls, 1);
	while ((cur == 0 || ns < cur) && !atomic_compare_exchange_weak(&dl_earliest, &cur, ns))
		;
}

static const struct dmabuf_fence_ops dl_ops = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = dl_name,
	.get_timeline_name = dl_name,
	.set_deadline = dl_set_deadline,
};

/* No set_deadline op (version 1): its sync file says nobody listens. */
static const struct dmabuf_fence_ops dl_ops_v1 = {
	.version = 1,
	.get_driver_name = dl_name,
	.get_timeline_name = dl_name,
};

/* Child: imports the parent's four sync files (a sw_sync point, a fence
 * with set_deadline, their merge, a fence without the op) and sets
 * deadlines on them, never waiting for the parent. */
static int child_deadlines(void *arg)
{
	struct xproc *x = arg;
	struct dmabuf_fence *drv;
	int fd[4];

	harness_sync_child(&x->sync);
	for (int i = 0; i < 4; i++)
		child_check((fd[i] = recv_fd(x->sock)) >= 0);
	/* SYNC_IOC_SET_DEADLINE: only an earlier one than the last travels,
	 * the earliest wins either way */
	child_check(dmabuf_sync_file_set_deadline(fd[0], 5000) == 0);
	child_check(dmabuf_sync_file_set_deadline(fd[0], 9000) == 0);
	child_check(dmabuf_sync_file_set_deadline(fd[0], 3000) == 0);
	/* dma_fence_set_deadline() on the imported fence */
	child_check(dmabuf_sync_file_import(fd[1], &drv) == 0);
	child_check(dmabuf_fence_set_deadline(drv, 7000) == 0);
	dmabuf_fence_put(drv);
	/* through the merge, to each of its fences */
	child_check(dmabuf_sync_file_set_deadline(fd[2], 2000) == 0);
	child_check(dmabuf_sync_file_set_deadline(fd[3], 1000) == 0);
	for (int i = 0; i < 4; i++)
		close(fd[i]);
	harness_sync_tell_parent(&x->sync, 'd');
	exit(0);
}

/* dma_fence_set_deadline() and SYNC_IOC_SET_DEADLINE on a fence another
 * process signals reach that process's fence ops: a record written into
 * the sync file, read by the signaller's watcher thread. */
static void test_deadline_reaches_the_signaller(void **state)
{
	struct xproc x;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *pt, *drv, *none, *merged, *in[2];
	int sv[2], fd;
	int64_t ns = 0;
	pid_t pid;

	atomic_store(&dl_calls, 0);
	atomic_store(&dl_earliest, 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	harness_sync_init(&x.sync);
	assert_int_equal(dmabuf_timeline_new("deadlines", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &pt), 0);
	assert_int_equal(dmabuf_fence_new(&dl_ops, NULL, dmabuf_fence_context_alloc(1), 1,
					  &drv), 0);
	assert_int_equal(dmabuf_fence_new(&dl_ops_v1, NULL, dmabuf_fence_context_alloc(1), 1,
					  &none), 0);
	in[0] = pt;
	in[1] = drv;
	assert_int_equal(dmabuf_fence_merge(in, 2, &merged), 0);
	x.sock = sv[1];
	pid = harness_fork_sock(child_deadlines, &x, sv[0]);
	harness_sync_parent(&x.sync);
	close(sv[1]);
	for (int i = 0; i < 4; i++) {
		fd = dmabuf_sync_file_export(i == 0 ? pt : i == 1 ? drv : i == 2 ? merged : none);
		assert_true(fd >= 0);
		assert_int_equal(send_fd(sv[0], fd), 0);
		close(fd);
	}
	assert_int_equal(harness_sync_wait_child(&x.sync), 'd');
	assert_int_equal(harness_wait(pid), 0);
	/* the records are in; the watcher hands them on (one-way: the child
	 * did not wait for it) */
	for (int i = 0; i < 2000; i++) {
		if (dmabuf_timeline_point_get_deadline(pt, &ns) == 0 && ns == 2000 &&
		    atomic_load(&dl_earliest) == 2000)
			break;
		usleep(1000);
	}
	assert_int_equal(dmabuf_timeline_point_get_deadline(pt, &ns), 0);
	assert_int_equal(ns, 2000);
	assert_int_equal(atomic_load(&dl_earliest), 2000);
	/* 7000 on its own, 2000 through the merge */
	assert_int_equal(atomic_load(&dl_calls), 2);
	dmabuf_fence_signal(drv);
	dmabuf_fence_signal(none);
	dmabuf_timeline_inc(tl, 1);
	close(sv[0]);
	harness_sync_close(&x.sync);
	dmabuf_fence_put(merged);
	dmabuf_fence_put(none);
	dmabuf_fence_put(drv);
	dmabuf_fence_put(pt);
	dmabuf_timeline_destroy(tl);
}

/* A holder of R may write anything into it: what is no deadline record is
 * dropped, a flood is drained (by the watcher, for a fence of the caller's
 * ops), and the fence works on. */
static void test_deadline_garbage_is_dropped(void **state)
{
	struct dmabuf_fence *f;
	uint8_t rec[16] = { 0 }, junk[256];
	int64_t want = 42;
	int fd, status;
	ssize_t r;

	atomic_store(&dl_calls, 0);
	atomic_store(&dl_earliest, 0);
	assert_int_equal(dmabuf_fence_new(&dl_ops, NULL, dmabuf_fence_context_alloc(1), 1,
					  &f), 0);
	fd = dmabuf_sync_file_export(f);
	assert_true(fd >= 0);
	memset(junk, 0xa5, sizeof(junk));
	/* a flood of junk until the socket is full */
	do
		r = send(fd, junk, sizeof(junk), MSG_DONTWAIT | MSG_NOSIGNAL);
	while (r > 0);
	assert_true(r < 0 && errno == EAGAIN);
	/* a record with a non-zero pad, then a good one ("DMDL", 0, 42) once
	 * the watcher made room */
	rec[0] = 'D';
	rec[1] = 'M';
	rec[2] = 'D';
	rec[3] = 'L';
	memcpy(rec + 8, &(int64_t){ 7 }, 8);
	rec[4] = 1;
	for (int i = 0; i < 2000 && send(fd, rec, 16, MSG_DONTWAIT | MSG_NOSIGNAL) != 16; i++)
		usleep(1000);
	rec[4] = 0;
	memcpy(rec + 8, &want, 8);
	for (int i = 0; i < 2000 && send(fd, rec, 16, MSG_DONTWAIT | MSG_NOSIGNAL) != 16; i++)
		usleep(1000);
	for (int i = 0; i < 2000 && atomic_load(&dl_calls) == 0; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&dl_calls), 1);
	assert_int_equal(atomic_load(&dl_earliest), 42);
	dmabuf_fence_signal(f);
	assert_int_equal(dmabuf_sync_file_wait(fd, 10000), 1);
	assert_int_equal(dmabuf_sync_file_info(fd, &status, NULL, 0), 1);
	assert_int_equal(status, 1);
	close(fd);
	dmabuf_fence_put(f);
}

/* Child: exports a pending fence to the parent, then waits to be killed. */
static int child_signaller(void *arg)
{
	struct xproc *x = arg;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;
	int fd;

	harness_sync_child(&x->sync);
	child_check(dmabuf_timeline_new("dying", &tl) == 0);
	child_check(dmabuf_timeline_create_fence(tl, 1, &f) == 0);
	fd = dmabuf_sync_file_export(f);
	child_check(fd >= 0);
	child_check(send_fd(x->sock, fd) == 0);
	harness_sync_wait_parent(&x->sync);
	for (;;)
		pause();
}

static void test_signaller_dies(void **state)
{
	struct xproc x;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *local, *remote, *merged, *in[2];
	struct counted_cb ccb = { .count = 0 };
	int sv[2], fd, status;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	harness_sync_init(&x.sync);
	x.sock = sv[1];
	pid = harness_fork_sock(child_signaller, &x, sv[0]);
	harness_sync_parent(&x.sync);
	close(sv[1]);
	fd = recv_fd(sv[0]);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_sync_file_import(fd, &remote), 0);
	assert_int_equal(dmabuf_fence_get_status(remote), 0);
	assert_int_equal(dmabuf_fence_wait(remote, 10), 0);
	/* Merged with a local fence, which has already signalled. */
	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &local), 0);
	in[0] = local;
	in[1] = remote;
	dmabuf_timeline_inc(tl, 1);
	assert_int_equal(dmabuf_fence_merge(in, 2, &merged), 0);
	assert_ptr_equal(merged, remote);
	dmabuf_fence_put(merged);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 2, &local), 0);
	in[0] = local;
	assert_int_equal(dmabuf_fence_merge(in, 2, &merged), 0);
	assert_int_equal(dmabuf_fence_add_callback(merged, &ccb.cb, count_cb), 0);
	dmabuf_timeline_inc(tl, 1);
	assert_false(dmabuf_fence_is_signaled(merged));

	kill(pid, SIGKILL);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	/* Never hangs: the fd reports the signaller gone. */
	assert_int_equal(dmabuf_sync_file_wait(fd, 10000), 1);
	assert_true(readable(fd));
	assert_int_equal(dmabuf_fence_wait(merged, 10000), 1);
	assert_int_equal(dmabuf_fence_get_status(remote), DMABUF_FENCE_ESIGNALLER);
	assert_int_equal(dmabuf_fence_get_status(merged), DMABUF_FENCE_ESIGNALLER);
	/* As in the kernel, a fence reads as signalled as soon as its flag is
	 * set, while the signalling thread (the watcher) may still be running
	 * its callbacks: the callback runs once, maybe just after the wait. */
	for (int i = 0; i < 10000 && atomic_load(&ccb.count) == 0; i++)
		poll(NULL, 0, 1);
	assert_int_equal(atomic_load(&ccb.count), 1);
	assert_int_equal(dmabuf_sync_file_info(fd, &status, NULL, 0), 1);
	assert_int_equal(status, -EPIPE);
	dmabuf_fence_put(merged);
	dmabuf_fence_put(local);
	dmabuf_fence_put(remote);
	close(fd);
	close(sv[0]);
	harness_sync_close(&x.sync);
	dmabuf_timeline_destroy(tl);
}

/* A fence dropped unsignalled by its last holder cannot signal any more. */
static void test_unsignalled_release(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;
	int fd, status;

	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &f), 0);
	fd = dmabuf_sync_file_export(f);
	dmabuf_timeline_destroy(tl);	/* signals it with -ENOENT */
	dmabuf_fence_put(f);
	assert_int_equal(dmabuf_sync_file_info(fd, &status, NULL, 0), 1);
	assert_int_equal(status, -ENOENT);
	close(fd);
}

/* ---- names longer than a sync file holds ---------------------------------- */

/* 40 characters: struct sync_fence_info keeps 31 and the NUL. */
static const char long_driver[] = "driver-name-longer-than-the-field-0123456";
static const char long_timeline[] = "timeline-name-longer-than-the-field-98765";

static const char *long_driver_name(struct dmabuf_fence *f)
{
	return long_driver;
}

static const char *long_timeline_name(struct dmabuf_fence *f)
{
	return long_timeline;
}

static const struct dmabuf_fence_ops long_ops = {
	.get_driver_name = long_driver_name,
	.get_timeline_name = long_timeline_name,
};

static bool names_cut(const struct dmabuf_sync_fence_info *i)
{
	return strlen(i->driver_name) == DMABUF_SYNC_NAME_LEN - 1 &&
	       strlen(i->obj_name) == DMABUF_SYNC_NAME_LEN - 1 &&
	       !strncmp(i->driver_name, long_driver, DMABUF_SYNC_NAME_LEN - 1) &&
	       !strncmp(i->obj_name, long_timeline, DMABUF_SYNC_NAME_LEN - 1);
}

/* Child: the names as the signaller's record carries them. */
static int child_long_names(void *arg)
{
	struct dmabuf_sync_fence_info info;
	int fd = recv_fd(*(int *)arg), status = 0;

	child_check(fd >= 0);
	child_check(dmabuf_sync_file_wait(fd, 10000) == 1);
	child_check(dmabuf_sync_file_info(fd, &status, &info, 1) == 1 && status == 1);
	child_check(names_cut(&info));
	close(fd);
	exit(0);
}

/* As the kernel's strscpy() into sync_fence_info: names are cut to 31
 * bytes, in the exporting process and in another one. */
static void test_long_names_cut(void **state)
{
	struct dmabuf_sync_fence_info info;
	struct dmabuf_fence *f;
	int sv[2], fd;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(dmabuf_fence_new(&long_ops, NULL, dmabuf_fence_context_alloc(1), 1, &f),
			 0);
	pid = harness_fork_sock(child_long_names, &sv[1], sv[0]);
	close(sv[1]);
	fd = dmabuf_sync_file_export(f);
	assert_true(fd >= 0);
	assert_int_equal(send_fd(sv[0], fd), 0);
	assert_int_equal(dmabuf_sync_file_info(fd, NULL, &info, 1), 1);
	assert_true(names_cut(&info));
	assert_int_equal(dmabuf_fence_signal(f), 0);
	assert_int_equal(harness_wait(pid), 0);
	close(fd);
	close(sv[0]);
	dmabuf_fence_put(f);
}

/* ---- merge order and seqno order through sync files ---------------------- */

/* SYNC_IOC_FILE_INFO lists a merge's fences sorted by context, as the
 * kernel's __dma_fence_unwrap_merge() leaves them. */
static void test_merge_info_sorted(void **state)
{
	struct dmabuf_timeline *tl[3];
	struct dmabuf_sync_fence_info info[3];
	int fd[3], m1, m2;

	for (int i = 0; i < 3; i++)
		assert_int_equal(dmabuf_timeline_new(NULL, &tl[i]), 0);
	for (int i = 0; i < 3; i++)
		fd[i] = sw_sync_fence(tl[i], 1);
	/* Timelines were made in context order; merge them backwards. */
	m1 = dmabuf_sync_file_merge(fd[2], fd[1]);
	assert_true(m1 >= 0);
	m2 = dmabuf_sync_file_merge(m1, fd[0]);
	assert_true(m2 >= 0);
	assert_int_equal(dmabuf_sync_file_info(m2, NULL, info, 3), 3);
	assert_true(info[0].context < info[1].context);
	assert_true(info[1].context < info[2].context);
	assert_int_equal(dmabuf_sync_file_info(m1, NULL, info, 3), 2);
	assert_true(info[0].context < info[1].context);
	for (int i = 0; i < 3; i++) {
		close(fd[i]);
		dmabuf_timeline_destroy(tl[i]);
	}
	close(m1);
	close(m2);
}

/* Near the end of the 32-bit range: the point past the wrap is the later
 * one, and the merge waits for it. */
static void test_merge_wrap(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_sync_fence_info info;
	int a, b, m;

	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	dmabuf_timeline_inc(tl, 0xfffffffeu);
	a = sw_sync_fence(tl, 0xffffffffu);
	b = sw_sync_fence(tl, 1);
	m = dmabuf_sync_file_merge(a, b);
	assert_true(m >= 0);
	assert_int_equal(dmabuf_sync_file_info(m, NULL, &info, 1), 1);
	assert_int_equal(info.seqno, 1);
	dmabuf_timeline_inc(tl, 1);
	assert_int_equal(dmabuf_sync_file_wait(a, 0), 1);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 0);
	dmabuf_timeline_inc(tl, 2);
	assert_int_equal(dmabuf_sync_file_wait(m, 0), 1);
	close(a);
	close(b);
	close(m);
	dmabuf_timeline_destroy(tl);
}

/* ---- what the library keeps open ------------------------------------------- */

/* A pending fence whose sync files are all closed costs no fd for long: at
 * most the sweep threshold (64) of W ends waits for the next sweep. A
 * freed fence costs none; an imported one that signalled, none (below). */
static void test_closed_sync_files_cost_nothing(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;
	int base = harness_count_fds(), most = 0, fd, status;

	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	/* The timeline keeps its pending points: only the fds can go. */
	for (int i = 0; i < 300; i++) {
		fd = sw_sync_fence(tl, (uint32_t)i + 1);
		close(fd);
		if (harness_count_fds() - base > most)
			most = harness_count_fds() - base;
	}
	/* 64 dead W ends at most, and the live one: a sw_sync point's sync
	 * files are not watched (its deadlines are read when asked for) */
	assert_true(most <= 65);
	dmabuf_timeline_destroy(tl);
	assert_int_equal(harness_count_fds(), base);
	/* Signalled: W stays until the fence goes; the record outlives it. */
	assert_int_equal(dmabuf_timeline_new(NULL, &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1000, &f), 0);
	base = harness_count_fds();
	fd = dmabuf_sync_file_export(f);
	assert_true(fd >= 0);
	dmabuf_timeline_inc(tl, 1000);
	assert_true(readable(fd));
	assert_int_equal(harness_count_fds(), base + 2);
	dmabuf_fence_put(f);
	assert_int_equal(harness_count_fds(), base + 1);
	assert_int_equal(dmabuf_sync_file_info(fd, &status, NULL, 0), 1);
	assert_int_equal(status, 1);
	assert_int_equal(harness_count_fds(), base + 1);
	close(fd);
	dmabuf_timeline_destroy(tl);
}

/* Child: exports two pending fences, signals the first on 'a', the second
 * on 'b', then waits for 'q'. */
static int child_two_points(void *arg)
{
	struct xproc *x = arg;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f[2];
	int fd;

	harness_sync_child(&x->sync);
	child_check(dmabuf_timeline_new("two", &tl) == 0);
	for (int i = 0; i < 2; i++) {
		child_check(dmabuf_timeline_create_fence(tl, (uint32_t)i + 1, &f[i]) == 0);
		fd = dmabuf_sync_file_export(f[i]);
		child_check(fd >= 0 && send_fd(x->sock, fd) == 0);
		close(fd);
	}
	child_check(harness_sync_wait_parent(&x->sync) == 'a');
	dmabuf_timeline_inc(tl, 1);
	harness_sync_tell_parent(&x->sync, 'A');
	child_check(harness_sync_wait_parent(&x->sync) == 'b');
	dmabuf_timeline_inc(tl, 1);
	harness_sync_tell_parent(&x->sync, 'B');
	child_check(harness_sync_wait_parent(&x->sync) == 'q');
	dmabuf_fence_put(f[0]);
	dmabuf_fence_put(f[1]);
	dmabuf_timeline_destroy(tl);
	exit(0);
}

/* An imported fence gives up its copy of the sync file in the call that
 * learns the signal, and a wait that signals a watched fence stops the
 * watcher before it returns: the fds are closed when the call returns,
 * whatever the watcher thread is doing. */
/* The fd count once it reaches want, or what it is after 10 s. A fence
 * whose R both the waiter and the watcher thread poll is closed by the
 * one that finishes last, which may be after the wait has returned. */
static int settle_fd_count(int want)
{
	int n = harness_count_fds();

	for (int i = 0; i < 10000 && n != want; i++) {
		usleep(1000);
		n = harness_count_fds();
	}
	return n;
}

static void test_imported_fds_closed_at_signal(void **state)
{
	struct xproc x;
	struct dmabuf_fence *f[2];
	struct counted_cb ccb = { .count = 0 };
	int sv[2], fd[2], base;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	harness_sync_init(&x.sync);
	x.sock = sv[1];
	pid = harness_fork_sock(child_two_points, &x, sv[0]);
	harness_sync_parent(&x.sync);
	close(sv[1]);
	fd[0] = recv_fd(sv[0]);
	fd[1] = recv_fd(sv[0]);
	assert_true(fd[0] >= 0 && fd[1] >= 0);
	base = harness_count_fds();
	assert_int_equal(dmabuf_sync_file_import(fd[0], &f[0]), 0);
	assert_int_equal(dmabuf_sync_file_import(fd[1], &f[1]), 0);
	/* two copies of R, one diagnostics socket for both */
	assert_int_equal(harness_count_fds(), base + 3);
	assert_int_equal(dmabuf_fence_add_callback(f[1], &ccb.cb, count_cb), 0);
	assert_int_equal(harness_count_fds(), base + 5);	/* + epoll, eventfd */

	harness_sync_tell_child(&x.sync, 'a');
	assert_int_equal(harness_sync_wait_child(&x.sync), 'A');
	assert_int_equal(dmabuf_fence_wait(f[0], 10000), 1);
	assert_int_equal(settle_fd_count(base + 4), base + 4);

	harness_sync_tell_child(&x.sync, 'b');
	assert_int_equal(harness_sync_wait_child(&x.sync), 'B');
	assert_int_equal(dmabuf_fence_wait(f[1], 10000), 1);
	assert_int_equal(settle_fd_count(base), base);
	for (int i = 0; i < 10000 && !atomic_load(&ccb.count); i++)
		usleep(1000);
	assert_int_equal(atomic_load(&ccb.count), 1);
	/* Still valid fences, with their status. */
	assert_int_equal(dmabuf_fence_get_status(f[0]), 1);
	assert_int_equal(dmabuf_fence_get_status(f[1]), 1);
	assert_int_equal(harness_count_fds(), base);
	harness_sync_tell_child(&x.sync, 'q');
	assert_int_equal(harness_wait(pid), 0);
	dmabuf_fence_put(f[0]);
	dmabuf_fence_put(f[1]);
	close(fd[0]);
	close(fd[1]);
	close(sv[0]);
	harness_sync_close(&x.sync);
}

/* A callback that holds the watcher thread inside the signal of an
 * imported fence until the test has looked at the fds. */
struct gate_cb {
	struct dmabuf_fence_cb cb;
	int entered[2], release[2];
};

static void gate_callback(struct dmabuf_fence *f, struct dmabuf_fence_cb *cb)
{
	struct gate_cb *g = (struct gate_cb *)cb;
	char c = 'e';

	/* 'd' at the end: the test closes the pipes only after it. */
	if (write(g->entered[1], &c, 1) != 1 || read(g->release[0], &c, 1) != 1 ||
	    write(g->entered[1], "d", 1) != 1)
		abort();
}

/* Issue 8's flaky test_signaller_dies, made deterministic: the watcher
 * thread signals an imported fence while the test has dropped its last
 * reference. The watcher's own reference must not keep the sync file's
 * fd open (before, it did until the watcher got to its put). */
static void test_watcher_keeps_no_fd(void **state)
{
	struct xproc x;
	struct dmabuf_fence *remote;
	struct gate_cb g;
	int sv[2], fd, base, held;
	char c;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(pipe2(g.entered, O_CLOEXEC), 0);
	assert_int_equal(pipe2(g.release, O_CLOEXEC), 0);
	harness_sync_init(&x.sync);
	x.sock = sv[1];
	pid = harness_fork_sock(child_signaller, &x, sv[0]);
	harness_sync_parent(&x.sync);
	close(sv[1]);
	fd = recv_fd(sv[0]);
	assert_true(fd >= 0);
	base = harness_count_fds();
	assert_int_equal(dmabuf_sync_file_import(fd, &remote), 0);
	assert_int_equal(dmabuf_fence_add_callback(remote, &g.cb, gate_callback), 0);
	kill(pid, SIGKILL);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	assert_int_equal(read(g.entered[0], &c, 1), 1);
	/* The watcher is inside the callback, with its reference. */
	dmabuf_fence_put(remote);
	held = harness_count_fds() - base;
	/* Let the watcher go before asserting, so a failure cannot hang it. */
	assert_int_equal(write(g.release[1], "r", 1), 1);
	assert_int_equal(read(g.entered[0], &c, 1), 1);
	assert_int_equal(c, 'd');
	assert_int_equal(held, 0);
	close(fd);
	close(sv[0]);
	for (int i = 0; i < 2; i++) {
		close(g.entered[i]);
		close(g.release[i]);
	}
	harness_sync_close(&x.sync);
}

/* Child of a process whose watcher watched an imported fence: the child
 * has no watcher, but waits on that fence still work, and learning the
 * signal there does not touch the parent's watcher state. */
static int child_waits_watched(void *arg)
{
	struct dmabuf_fence *f = arg;

	child_check(dmabuf_fence_wait(f, 10000) == 1);
	child_check(dmabuf_fence_get_status(f) == DMABUF_FENCE_ESIGNALLER);
	dmabuf_fence_put(f);
	exit(0);
}

static void test_fork_while_watched(void **state)
{
	struct xproc x;
	struct dmabuf_fence *remote;
	struct counted_cb ccb = { .count = 0 };
	int sv[2], fd;
	pid_t pid, child;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	harness_sync_init(&x.sync);
	x.sock = sv[1];
	pid = harness_fork_sock(child_signaller, &x, sv[0]);
	harness_sync_parent(&x.sync);
	close(sv[1]);
	fd = recv_fd(sv[0]);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_sync_file_import(fd, &remote), 0);
	assert_int_equal(dmabuf_fence_add_callback(remote, &ccb.cb, count_cb), 0);
	child = harness_fork(child_waits_watched, remote);
	kill(pid, SIGKILL);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	assert_int_equal(harness_wait(child), 0);
	assert_int_equal(dmabuf_fence_wait(remote, 10000), 1);
	for (int i = 0; i < 10000 && !atomic_load(&ccb.count); i++)
		usleep(1000);
	assert_int_equal(atomic_load(&ccb.count), 1);
	dmabuf_fence_put(remote);
	close(fd);
	close(sv[0]);
	harness_sync_close(&x.sync);
}

/* The kernel's sync selftest merge_stress_random_merge at its size (32
 * timelines, 32768 merges), at the common default RLIMIT_NOFILE of 1024:
 * the caller holds two or three sync files at a time, and so must the
 * library, give or take the sweep threshold. Runs in a child so the limit
 * stays there. */
struct stress_result {
	int most_fds;
};

static int child_random_merge(void *arg)
{
	enum { NTL = 32 };
	/* The kernel's size; a quarter under valgrind (still 8x what 1024
	 * fds allowed before). */
	int merges = harness_under_valgrind() ? 8192 : 32768;
	struct rusage ru;
	struct rlimit lim = { .rlim_cur = 1024, .rlim_max = 1024 };
	struct dmabuf_timeline *tl[NTL];
	int64_t last[NTL];
	unsigned int seed = 8;
	int fence, size = 0, most = 0, base, *most_out = arg;

	child_check(setrlimit(RLIMIT_NOFILE, &lim) == 0 || getrlimit(RLIMIT_NOFILE, &lim) == 0);
	if (lim.rlim_cur > 1024)
		lim.rlim_cur = 1024;
	child_check(setrlimit(RLIMIT_NOFILE, &lim) == 0);
	base = harness_count_fds();
	for (int i = 0; i < NTL; i++) {
		child_check(dmabuf_timeline_new(NULL, &tl[i]) == 0);
		last[i] = -1;
	}
	fence = sw_sync_fence(tl[0], 0);	/* signalled at once */
	last[0] = 0;
	for (int i = 0; i < merges; i++) {
		int t = rand_r(&seed) % NTL;
		uint32_t point = (uint32_t)rand_r(&seed);
		int tmp, merged;

		if (point > last[t])
			last[t] = point;
		tmp = sw_sync_fence(tl[t], point);
		merged = dmabuf_sync_file_merge(tmp, fence);
		child_check(merged >= 0);
		close(tmp);
		close(fence);
		fence = merged;
		if ((i & 255) == 0) {
			int n = harness_count_fds() - base;

			if (n > most)
				most = n;
		}
	}
	for (int i = 0; i < NTL; i++)
		size += last[i] > 0;
	child_check(dmabuf_sync_file_info(fence, NULL, NULL, 0) == size);
	for (int i = 0; i < NTL; i++) {
		if (last[i] <= 0)
			continue;
		child_check(dmabuf_sync_file_wait(fence, 0) == 0);
		dmabuf_timeline_inc(tl[i], (uint32_t)last[i]);
	}
	child_check(dmabuf_sync_file_wait(fence, 0) == 1);
	close(fence);
	for (int i = 0; i < NTL; i++)
		dmabuf_timeline_destroy(tl[i]);
	child_check(harness_count_fds() == base);
	*most_out = most;
	getrusage(RUSAGE_SELF, &ru);
	fprintf(stderr, "random merge: %d merges, at most %d fds open beyond the start, "
		"max RSS %ld KiB\n", merges, most, ru.ru_maxrss);
	child_check(most <= 70);
	exit(0);
}

static void test_merge_stress_random_merge(void **state)
{
	int most = 0;

	assert_int_equal(harness_wait(harness_fork(child_random_merge, &most)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(test_alloc),
		harness_test(test_one_timeline_wait),
		harness_test(test_one_timeline_merge),
		harness_test(test_merge_same_fence),
		harness_test(test_multi_timeline_wait),
		harness_test(test_timeline_destroy),
		harness_test(test_import_export),
		harness_test(test_wait_edges),
		harness_test(test_unsignalled_release),
		/* Forks before any test has made threads: valgrind checks the
		 * children too, and glibc's per-thread memory inherited by a
		 * forked child looks lost to it. */
		harness_test(test_cross_process_signal),
		harness_test(test_deadline_reaches_the_signaller),
		harness_test(test_deadline_garbage_is_dropped),
		harness_test(test_signaller_dies),
		harness_test(test_stress_parallelism),
		harness_test(test_stress_consumer),
		harness_test(test_stress_merge),
		harness_test(test_long_names_cut),
		harness_test(test_merge_info_sorted),
		harness_test(test_merge_wrap),
		harness_test(test_closed_sync_files_cost_nothing),
		harness_test(test_imported_fds_closed_at_signal),
		harness_test(test_watcher_keeps_no_fd),
		harness_test(test_fork_while_watched),
		harness_test(test_merge_stress_random_merge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
