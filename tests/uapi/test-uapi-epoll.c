/* SPDX-License-Identifier: MIT */
/*
 * epoll on dma-buf fds as the kernel's dma_buf_poll() answers it: EPOLLIN
 * once the buffer's writers are done, EPOLLOUT once everyone is, level- and
 * edge-triggered, EPOLLONESHOT, the program's data given back untouched,
 * the record gone with the last fd, dup'd fds, fork, epoll_pwait and
 * epoll_pwait2, and the errnos of epoll_ctl. Written against the kernel
 * uapi only.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>

#include "uapi-common.h"

#define PAGE 4096
#define COOKIE 0x1234567890abcdefull

struct fixture {
	int heap, buf, tl, ep;
};

static int tl_fence(int tl, uint32_t value)
{
	struct sw_sync_create_fence_data d = { .value = value, .name = "pt" };

	assert_int_equal(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &d), 0);
	return d.fence;
}

static void tl_inc(int tl)
{
	uint32_t one = 1;

	assert_int_equal(ioctl(tl, SW_SYNC_IOC_INC, &one), 0);
}

/* Attaches a pending fence of the timeline to the buffer, as a writer
 * (DMA_BUF_SYNC_WRITE) or a reader (DMA_BUF_SYNC_READ). */
static void busy(struct fixture *f, uint32_t value, uint32_t how)
{
	struct dma_buf_import_sync_file imp = { .flags = how, .fd = tl_fence(f->tl, value) };

	assert_int_equal(ioctl(f->buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &imp), 0);
	close(imp.fd);
}

static void setup(struct fixture *f)
{
	f->heap = uapi_open_heap("system");
	f->buf = uapi_heap_alloc(f->heap, PAGE, O_RDWR | O_CLOEXEC);
	assert_true(f->buf >= 0);
	f->tl = open("/dev/sw_sync", O_RDWR | O_CLOEXEC);
	assert_true(f->tl >= 0);
	f->ep = epoll_create1(EPOLL_CLOEXEC);
	assert_true(f->ep >= 0);
}

static void teardown(struct fixture *f)
{
	close(f->ep);
	close(f->tl);
	uapi_close_last_and_wait(f->buf);
	close(f->heap);
}

static int add(struct fixture *f, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = COOKIE };

	return epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev);
}

/* One epoll_wait with timeout 0: the events, 0 if none, -1 on error. */
static int64_t wait0(struct fixture *f)
{
	struct epoll_event out[4];
	int n = epoll_wait(f->ep, out, 4, 0);

	if (n < 0)
		return -1;
	if (n == 0)
		return 0;
	assert_int_equal(n, 1);
	assert_true(out[0].data.u64 == COOKIE);
	return out[0].events;
}

static void level_triggered(void **state)
{
	struct fixture f;

	setup(&f);
	assert_int_equal(add(&f, f.buf, EPOLLIN | EPOLLOUT), 0);
	/* Idle: both, every time (level). */
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	/* A pending writer: nothing. */
	busy(&f, 1, DMA_BUF_SYNC_WRITE);
	assert_int_equal(wait0(&f), 0);
	tl_inc(f.tl);
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	/* A pending reader: readable (writers done), not writable. */
	busy(&f, 2, DMA_BUF_SYNC_READ);
	assert_int_equal(wait0(&f), EPOLLIN);
	tl_inc(f.tl);
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	/* Only what was asked for. */
	struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = COOKIE };
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_MOD, f.buf, &ev), 0);
	assert_int_equal(wait0(&f), EPOLLOUT);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_DEL, f.buf, NULL), 0);
	assert_int_equal(wait0(&f), 0);
	teardown(&f);
}

static void edge_triggered(void **state)
{
	struct fixture f;

	setup(&f);
	assert_int_equal(add(&f, f.buf, EPOLLIN | EPOLLOUT | EPOLLET), 0);
	/* The kernel's dma_buf_poll() wakes the file's waiters itself when
	 * it adds no fence callback: each look queues the item again, so a
	 * ready buffer is reported at every wait, edge or not. */
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	/* Busy: nothing; signalled: reported, and again. */
	busy(&f, 1, DMA_BUF_SYNC_WRITE);
	assert_int_equal(wait0(&f), 0);
	tl_inc(f.tl);
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	/* A MOD: what it asks, at every wait. */
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = COOKIE };
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_MOD, f.buf, &ev), 0);
	assert_int_equal(wait0(&f), EPOLLIN);
	assert_int_equal(wait0(&f), EPOLLIN);
	teardown(&f);
}

static void oneshot(void **state)
{
	struct fixture f;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = COOKIE };

	setup(&f);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_ADD, f.buf, &ev), 0);
	assert_int_equal(wait0(&f), EPOLLIN);
	/* Disabled until the program's MOD. */
	assert_int_equal(wait0(&f), 0);
	busy(&f, 1, DMA_BUF_SYNC_WRITE);
	tl_inc(f.tl);
	assert_int_equal(wait0(&f), 0);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_MOD, f.buf, &ev), 0);
	assert_int_equal(wait0(&f), EPOLLIN);
	assert_int_equal(wait0(&f), 0);
	teardown(&f);
}

static void ctl_errors(void **state)
{
	struct fixture f;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = COOKIE };
	int notep;

	setup(&f);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_MOD, f.buf, &ev), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_DEL, f.buf, NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(add(&f, f.buf, EPOLLIN), 0);
	assert_int_equal(add(&f, f.buf, EPOLLIN), -1);
	assert_int_equal(errno, EEXIST);
	/* EPOLLEXCLUSIVE: with ADD only, and never modified. */
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_MOD, f.buf, &ev), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_DEL, f.buf, NULL), 0);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_ADD, f.buf, &ev), 0);
	assert_int_equal(wait0(&f), EPOLLIN);
	ev.events = EPOLLIN;
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_MOD, f.buf, &ev), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_DEL, f.buf, NULL), 0);
	/* Not an epoll fd. */
	notep = dup(f.heap);
	assert_int_equal(epoll_ctl(notep, EPOLL_CTL_ADD, f.buf, &ev), -1);
	assert_int_equal(errno, EINVAL);
	/* do_epoll_ctl() refuses a set that is not one (EINVAL) before it
	 * looks for the item (ENOENT), for MOD and DEL too; a buffer as
	 * its own set likewise. */
	assert_int_equal(epoll_ctl(notep, EPOLL_CTL_MOD, f.buf, &ev), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(epoll_ctl(notep, EPOLL_CTL_DEL, f.buf, NULL), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(epoll_ctl(f.buf, EPOLL_CTL_MOD, f.buf, &ev), -1);
	assert_int_equal(errno, EINVAL);
	close(notep);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_ADD, f.buf, NULL), -1);
	assert_int_equal(errno, EFAULT);
	teardown(&f);
}

/* The item goes with the last fd of the file; a dup keeps it. */
static void close_and_dup(void **state)
{
	struct fixture f;
	int d;

	setup(&f);
	d = dup(f.buf);
	assert_int_equal(add(&f, f.buf, EPOLLIN), 0);
	assert_int_equal(add(&f, d, EPOLLOUT), 0); /* its own item */
	struct epoll_event out[4];
	assert_int_equal(epoll_wait(f.ep, out, 4, 0), 2);
	close(f.buf);
	/* Both items stay: the file is alive through d. */
	assert_int_equal(epoll_wait(f.ep, out, 4, 0), 2);
	/* the last close: its items go at the file's release, which a
	 * reader of /proc/self/fd holding the file would delay */
	uapi_close_last_and_wait(d);
	assert_int_equal(epoll_wait(f.ep, out, 4, 0), 0);
	f.buf = uapi_heap_alloc(f.heap, PAGE, O_RDWR | O_CLOEXEC);
	assert_int_equal(wait0(&f), 0);
	teardown(&f);
}

static void fork_shares_the_set(void **state)
{
	struct fixture f;
	pid_t pid;
	int st;

	setup(&f);
	assert_int_equal(add(&f, f.buf, EPOLLIN | EPOLLOUT), 0);
	pid = fork();
	if (pid == 0) {
		struct epoll_event out;
		int n = epoll_wait(f.ep, &out, 1, 0);

		/* The child's close leaves the parent's item in the set. */
		close(f.buf);
		_exit(n == 1 && out.data.u64 == COOKIE && out.events == (EPOLLIN | EPOLLOUT) ? 0 : 1);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(wait0(&f), EPOLLIN | EPOLLOUT);
	teardown(&f);
}

static void *signal_later(void *arg)
{
	struct fixture *f = arg;
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	tl_inc(f->tl);
	return NULL;
}

/* A blocking wait wakes when the fence signals; the pwait forms too. */
static void blocking_waits(void **state)
{
	struct fixture f;
	struct epoll_event out;
	struct timespec ts = { 0, 0 };
	sigset_t mask;
	pthread_t t;

	setup(&f);
	sigemptyset(&mask);
	assert_int_equal(add(&f, f.buf, EPOLLIN), 0);
	busy(&f, 1, DMA_BUF_SYNC_WRITE);
	assert_int_equal(epoll_pwait(f.ep, &out, 1, 0, &mask), 0);
	assert_int_equal(epoll_pwait2(f.ep, &out, 1, &ts, &mask), 0);
	assert_int_equal(pthread_create(&t, NULL, signal_later, &f), 0);
	assert_int_equal(epoll_wait(f.ep, &out, 1, -1), 1);
	assert_true(out.data.u64 == COOKIE && out.events == EPOLLIN);
	pthread_join(t, NULL);
	busy(&f, 2, DMA_BUF_SYNC_WRITE);
	assert_int_equal(pthread_create(&t, NULL, signal_later, &f), 0);
	assert_int_equal(epoll_pwait2(f.ep, &out, 1, NULL, &mask), 1);
	assert_true(out.data.u64 == COOKIE && out.events == EPOLLIN);
	pthread_join(t, NULL);
	teardown(&f);
}

/* Other fds in the same set are the kernel's, reported as they are. */
static void mixed_set(void **state)
{
	struct fixture f;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 7 }, out[4];
	int p[2], n, i, seen = 0;

	setup(&f);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_ADD, p[0], &ev), 0);
	assert_int_equal(add(&f, f.buf, EPOLLOUT), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	n = epoll_wait(f.ep, out, 4, 0);
	assert_int_equal(n, 2);
	for (i = 0; i < n; i++)
		seen |= out[i].data.u64 == 7 && out[i].events == EPOLLIN ? 1
			: out[i].data.u64 == COOKIE && out[i].events == EPOLLOUT ? 2 : 4;
	assert_int_equal(seen, 3);
	close(p[0]);
	close(p[1]);
	teardown(&f);
}

/* Every epoll set is the same anonymous inode: a record is its set's by
 * the open file. Two sets hold the same buffer at once, and a set closed
 * and made again at the same number starts empty (both were EEXIST when
 * records were keyed by the set's inode). */
static void two_sets(void **state)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 5 }, out[4];
	struct fixture f;
	int ep2, num;

	setup(&f);
	ep2 = epoll_create1(EPOLL_CLOEXEC);
	assert_true(ep2 >= 0);
	assert_int_equal(add(&f, f.buf, EPOLLIN), 0);
	assert_int_equal(epoll_ctl(ep2, EPOLL_CTL_ADD, f.buf, &ev), 0);
	assert_int_equal(epoll_wait(ep2, out, 4, 0), 1);
	assert_true(out[0].data.u64 == 5 && out[0].events == EPOLLIN);
	assert_int_equal(wait0(&f), EPOLLIN);
	num = ep2;
	close(ep2);
	ep2 = epoll_create1(EPOLL_CLOEXEC);
	assert_int_equal(ep2, num);
	assert_int_equal(epoll_wait(ep2, out, 4, 0), 0);
	assert_int_equal(epoll_ctl(ep2, EPOLL_CTL_ADD, f.buf, &ev), 0);
	assert_int_equal(epoll_wait(ep2, out, 4, 0), 1);
	close(ep2);
	assert_int_equal(wait0(&f), EPOLLIN);
	teardown(&f);
}

/* A bad event pointer: the kernel copies the event (EFAULT) before it
 * looks at either fd, and takes none for DEL; the program lives. */
static void ctl_bad_event(void **state)
{
	struct fixture f;
	struct epoll_event *bad;
	int closed;

	setup(&f);
	bad = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(bad != MAP_FAILED);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_ADD, f.buf, bad), -1);
	assert_int_equal(errno, EFAULT);
	/* Before the ENOENT of an item that is not there. */
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_MOD, f.buf, bad), -1);
	assert_int_equal(errno, EFAULT);
	/* Before the EBADF of a closed set. */
	closed = epoll_create1(EPOLL_CLOEXEC);
	assert_true(closed >= 0);
	close(closed);
	assert_int_equal(epoll_ctl(closed, EPOLL_CTL_ADD, f.buf, bad), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(add(&f, f.buf, EPOLLIN), 0);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_MOD, f.buf, bad), -1);
	assert_int_equal(errno, EFAULT);
	/* The item is untouched, and DEL never reads the pointer. */
	assert_int_equal(wait0(&f), EPOLLIN);
	assert_int_equal(epoll_ctl(f.ep, EPOLL_CTL_DEL, f.buf, bad), 0);
	assert_int_equal(wait0(&f), 0);
	munmap(bad, PAGE);
	teardown(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(level_triggered),
		harness_test(edge_triggered),
		harness_test(oneshot),
		harness_test(ctl_errors),
		harness_test(ctl_bad_event),
		harness_test(close_and_dup),
		harness_test(fork_shares_the_set),
		harness_test(blocking_waits),
		harness_test(mixed_set),
		harness_test(two_sets),
	};

	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
