/* SPDX-License-Identifier: MIT */
/*
 * epoll of sync files, written against the kernel's uapi only and run by
 * test-uapi-syncepoll.c under both front ends: linked dynamically, under
 * dmabuf-run (the preload) and dmabuf-run --seccomp; linked statically,
 * under dmabuf-run (the supervisor). The kernel's sync_file_poll() gives
 * nothing while the fence is pending and EPOLLIN once it has signalled,
 * never EPOLLOUT or EPOLLHUP. The argument names the case ("all": every
 * case); each prints "ok <case>" and exits 0, or prints what failed and
 * exits 1. It links nothing of libdmabuf: small checks of its own, and
 * each case checks its own fd count.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/sync_file.h>

#include "uapi-kernel.h"

/* Under the ASan build the runtime is preloaded with the layer (this
 * program is not built with it), and its interceptors read poll's and
 * select's arrays before the call: a bad pointer is fatal there. */
static bool under_asan(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "libasan");
}
#define UNDER_ASAN under_asan()

/* What is open, for a failed count. */
static void list_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char path[300], link[256];
	ssize_t n;

	CHECK(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		printf("  fd %s: %s\n", e->d_name, link);
	}
	closedir(d);
}

static int timeline(void)
{
	int tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);

	CHECK(tl >= 0);
	return tl;
}

static int point(int tl, unsigned int value)
{
	struct sw_sync_create_fence_data f = { .value = value, .name = "ep" };

	CHECK(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &f) == 0);
	CHECK(f.fence >= 0);
	return f.fence;
}

static void inc(int tl)
{
	__u32 one = 1;

	CHECK(ioctl(tl, SW_SYNC_IOC_INC, &one) == 0);
}

static int set_with(int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	CHECK(ep >= 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0);
	return ep;
}

/* One epoll_wait(0): the number of items; the first one's events and
 * data in *out. */
static int wait0(int ep, struct epoll_event *out)
{
	struct epoll_event evs[4];
	int n = epoll_wait(ep, evs, 4, 0);

	CHECK(n >= 0);
	if (n > 0)
		*out = evs[0];
	return n;
}

/* A pending sw_sync point: nothing; signalled: exactly EPOLLIN with the
 * program's data, level-triggered every time; EPOLLOUT alone: never. */
static void case_level(void)
{
	struct epoll_event out;
	int tl = timeline(), sf = point(tl, 1);
	int ep = set_with(sf, EPOLLIN, 0x1234567890abcdefull);
	int ep_out = set_with(sf, EPOLLOUT, 1);
	int ep_both = set_with(sf, EPOLLIN | EPOLLOUT | EPOLLRDHUP, 2);

	CHECK(wait0(ep, &out) == 0);
	CHECK(wait0(ep_out, &out) == 0);
	CHECK(wait0(ep_both, &out) == 0);
	inc(tl);
	CHECK(wait0(ep, &out) == 1);
	CHECK(out.events == EPOLLIN && out.data.u64 == 0x1234567890abcdefull);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN);
	CHECK(wait0(ep_both, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 2);
	CHECK(wait0(ep_out, &out) == 0);
	/* A blocking wait returns at once, with the same answer. */
	CHECK(epoll_wait(ep, &out, 1, -1) == 1 && out.events == EPOLLIN);
	/* Added once signalled: ready at once; EPOLLOUT still never. */
	close(ep_out);
	ep_out = set_with(sf, EPOLLOUT | EPOLLET, 3);
	CHECK(wait0(ep_out, &out) == 0);
	close(ep_out);
	close(ep_both);
	close(ep);
	close(sf);
	close(tl);
}

/* Edge-triggered: one report per signal (and per MOD, which re-polls);
 * one-shot: one report until the program's MOD. */
static void case_edge(void)
{
	struct epoll_event out, ev;
	int tl = timeline(), sf = point(tl, 1), sf2 = point(tl, 2);
	int ep = set_with(sf, EPOLLIN | EPOLLET, 7);
	int ep1 = set_with(sf2, EPOLLIN | EPOLLONESHOT, 9);

	CHECK(wait0(ep, &out) == 0);
	CHECK(wait0(ep1, &out) == 0);
	inc(tl);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 7);
	CHECK(wait0(ep, &out) == 0);
	CHECK(wait0(ep, &out) == 0);
	CHECK(wait0(ep1, &out) == 0); /* its point is 2 */
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 8 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, sf, &ev) == 0);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 8);
	CHECK(wait0(ep, &out) == 0);
	/* EPOLLOUT alone by MOD: nothing, even edge-triggered. */
	ev = (struct epoll_event){ .events = EPOLLOUT | EPOLLET, .data.u64 = 8 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, sf, &ev) == 0);
	CHECK(wait0(ep, &out) == 0);
	inc(tl);
	CHECK(wait0(ep1, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 9);
	CHECK(wait0(ep1, &out) == 0);
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 10 };
	CHECK(epoll_ctl(ep1, EPOLL_CTL_MOD, sf2, &ev) == 0);
	CHECK(wait0(ep1, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 10);
	CHECK(wait0(ep1, &out) == 0);
	close(ep1);
	close(ep);
	close(sf2);
	close(sf);
	close(tl);
}

/* The kernel's errnos, and DEL. */
static void case_ctl(void)
{
	struct epoll_event out, ev = { .events = EPOLLIN, .data.u64 = 1 };
	int tl = timeline(), sf = point(tl, 0);
	int ep = set_with(sf, EPOLLIN, 1);

	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_ADD, sf, &ev), EEXIST);
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_MOD, sf, &ev), EINVAL);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN);
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, sf, NULL) == 0);
	CHECK(wait0(ep, &out) == 0);
	CHECK(epoll_items(ep) == 0);
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_DEL, sf, NULL), ENOENT);
	ev.events = EPOLLIN;
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_MOD, sf, &ev), ENOENT);
	/* Exclusive: added, reported, never modified. */
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sf, &ev) == 0);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN);
	ev.events = EPOLLIN;
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_MOD, sf, &ev), EINVAL);
	close(ep);
	close(sf);
	close(tl);
}

/* The item lives as long as the sync file's file: a dup keeps it, the
 * last close takes it. */
static void case_close(void)
{
	struct epoll_event out;
	int tl = timeline(), sf = point(tl, 1), ep, dupfd;

	ep = set_with(sf, EPOLLIN, 5);
	inc(tl);
	dupfd = dup(sf);
	CHECK(dupfd >= 0);
	close(sf);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 5);
	CHECK(epoll_items(ep) == 1);
	close(dupfd);
	CHECK(epoll_items_become(ep, 0));
	CHECK(wait0(ep, &out) == 0);
	close(ep);
	close(tl);
}

static void *inc_later(void *arg)
{
	usleep(20000); /* most likely after the wait has begun; either way
			* the answer is the same */
	inc(*(int *)arg);
	return NULL;
}

/* A blocking epoll_wait() is woken by the signal from another thread,
 * with EPOLLIN alone. */
static void case_blocking(void)
{
	struct epoll_event out;
	int tl = timeline(), sf = point(tl, 1), sf2 = point(tl, 2);
	int ep = set_with(sf, EPOLLIN | EPOLLET, 21), ep2 = set_with(sf2, EPOLLIN, 22);
	pthread_t t;

	CHECK(pthread_create(&t, NULL, inc_later, &tl) == 0);
	CHECK(epoll_wait(ep, &out, 1, -1) == 1);
	CHECK(out.events == EPOLLIN && out.data.u64 == 21);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(wait0(ep, &out) == 0);
	CHECK(pthread_create(&t, NULL, inc_later, &tl) == 0);
	CHECK(epoll_wait(ep2, &out, 1, -1) == 1);
	CHECK(out.events == EPOLLIN && out.data.u64 == 22);
	CHECK(pthread_join(t, NULL) == 0);
	close(ep2);
	close(ep);
	close(sf2);
	close(sf);
	close(tl);
}

/* A heap buffer made busy with a pending sw_sync point. */
static int busy_buffer(int tl, unsigned int value)
{
	struct dma_heap_allocation_data a = { .len = 4096, .fd_flags = O_RDWR | O_CLOEXEC };
	struct dma_buf_import_sync_file imp = { .flags = DMA_BUF_SYNC_WRITE };
	int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);

	CHECK(heap >= 0);
	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) == 0);
	close(heap);
	imp.fd = point(tl, value);
	CHECK(ioctl((int)a.fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &imp) == 0);
	close(imp.fd);
	return (int)a.fd;
}

/* Sync files from DMA_BUF_IOCTL_EXPORT_SYNC_FILE and from SYNC_IOC_MERGE
 * poll as a timeline's do. */
static void case_export_merge(void)
{
	struct dma_buf_export_sync_file exp = { .flags = DMA_BUF_SYNC_READ };
	struct sync_merge_data m = { .name = "merged" };
	struct epoll_event out;
	int tl = timeline(), tl2 = timeline(), buf = busy_buffer(tl, 1), p2 = point(tl2, 1);
	int ep, ep_out, epm;

	CHECK(ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &exp) == 0);
	m.fd2 = p2;
	CHECK(ioctl(exp.fd, SYNC_IOC_MERGE, &m) == 0);
	ep = set_with(exp.fd, EPOLLIN, 11);
	ep_out = set_with(exp.fd, EPOLLOUT, 12);
	epm = set_with(m.fence, EPOLLIN | EPOLLET, 13);
	CHECK(wait0(ep, &out) == 0);
	CHECK(wait0(ep_out, &out) == 0);
	CHECK(wait0(epm, &out) == 0);
	inc(tl);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 11);
	CHECK(wait0(ep_out, &out) == 0);
	CHECK(wait0(epm, &out) == 0); /* half of it */
	inc(tl2);
	CHECK(wait0(epm, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 13);
	CHECK(wait0(epm, &out) == 0);
	close(epm);
	close(ep_out);
	close(ep);
	close(m.fence);
	close(exp.fd);
	close(p2);
	close(buf);
	close(tl2);
	close(tl);
}

/* An epoll set is its open file, whatever fd names it: through a dup of
 * the set the item is the same (ADD: EEXIST; MOD and DEL work), and the
 * dup keeps it once the set's first fd is closed. */
static void case_dupset(void)
{
	struct epoll_event out, ev = { .events = EPOLLIN, .data.u64 = 31 };
	int tl = timeline(), sf = point(tl, 1), buf = busy_buffer(tl, 1);
	int ep = set_with(sf, EPOLLIN, 30), ep2 = dup(ep);

	CHECK(ep2 >= 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, buf, &ev) == 0);
	FAILS_WITH(epoll_ctl(ep2, EPOLL_CTL_ADD, sf, &ev), EEXIST);
	FAILS_WITH(epoll_ctl(ep2, EPOLL_CTL_ADD, buf, &ev), EEXIST);
	ev.data.u64 = 32;
	CHECK(epoll_ctl(ep2, EPOLL_CTL_MOD, sf, &ev) == 0);
	CHECK(epoll_items(ep) == 2);
	close(ep);
	ev.data.u64 = 33;
	CHECK(epoll_ctl(ep2, EPOLL_CTL_MOD, buf, &ev) == 0);
	CHECK(wait0(ep2, &out) == 0);
	inc(tl);
	/* Both ready: the sync file with the data its MOD gave, the
	 * buffer with its own. */
	{
		struct epoll_event evs[4];
		int n = epoll_wait(ep2, evs, 4, 0), seen = 0;

		CHECK(n == 2);
		for (int i = 0; i < n; i++) {
			CHECK(evs[i].events == EPOLLIN);
			seen |= evs[i].data.u64 == 32 ? 1 : evs[i].data.u64 == 33 ? 2 : 4;
		}
		CHECK(seen == 3);
	}
	CHECK(epoll_ctl(ep2, EPOLL_CTL_DEL, sf, NULL) == 0);
	CHECK(epoll_ctl(ep2, EPOLL_CTL_DEL, buf, NULL) == 0);
	CHECK(epoll_items(ep2) == 0);
	FAILS_WITH(epoll_ctl(ep2, EPOLL_CTL_DEL, sf, NULL), ENOENT);
	close(ep2);
	close(buf);
	close(sf);
	close(tl);
}

static void put_byte(int fd)
{
	char c = 1;

	CHECK(write(fd, &c, 1) == 1);
}

static void get_byte(int fd)
{
	char c;

	CHECK(read(fd, &c, 1) == 1);
}

/* A set shared over fork holds its items for as long as the sync file's
 * file lives in any process (the kernel's eventpoll_release() comes with
 * the file's last reference), and reports them in every process that
 * waits on it: the child's close of its copy leaves the item in both, and
 * so does the parent's close of its copy while the child holds one. */
static void case_fork(void)
{
	struct epoll_event out;
	int tl = timeline(), sf = point(tl, 1), sf2 = point(tl, 2);
	int ep = set_with(sf, EPOLLIN, 40), ep2 = set_with(sf2, EPOLLIN, 41);
	int to_child[2], to_parent[2], status;
	pid_t pid;

	CHECK(pipe2(to_child, O_CLOEXEC) == 0 && pipe2(to_parent, O_CLOEXEC) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(to_child[1]); /* a parent's failure is EOF here */
		close(to_parent[0]);
		close(sf);
		CHECK(epoll_items(ep) == 1);
		CHECK(wait0(ep, &out) == 0);
		put_byte(to_parent[1]);
		/* The parent signals; its file keeps the item in this set. */
		CHECK(epoll_wait(ep, &out, 1, 20000) == 1);
		CHECK(out.events == EPOLLIN && out.data.u64 == 40);
		get_byte(to_child[0]); /* the parent has closed sf2 */
		CHECK(epoll_items(ep2) == 1);
		put_byte(to_parent[1]);
		get_byte(to_child[0]);
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	get_byte(to_parent[0]);
	inc(tl);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 40);
	close(sf2);
	/* The child's copy holds the file: the item stays, here too. */
	CHECK(epoll_items(ep2) == 1);
	put_byte(to_child[1]);
	get_byte(to_parent[0]);
	put_byte(to_child[1]);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The child's exit was sf2's last reference. */
	CHECK(epoll_items_become(ep2, 0));
	CHECK(epoll_items(ep) == 1);
	close(ep2);
	close(ep);
	close(sf);
	close(to_child[1]);
	close(to_parent[0]);
	close(tl);
}

/* The process that added a sync file's item to a set shared over fork
 * closes its copy of the file before the fence signals: the item is the
 * set's and the file's, not the adder's (the kernel wakes it from
 * sync_file_poll()'s callback whoever added it), so the other process
 * still holding the file is woken at the signal, once (edge-triggered). */
static void case_fork_adder(void)
{
	struct epoll_event out;
	int tl = timeline(), sf = point(tl, 1), ep = set_with(sf, EPOLLIN | EPOLLET, 42);
	int to_child[2], to_parent[2], status;
	pid_t pid;

	CHECK(pipe2(to_child, O_CLOEXEC) == 0 && pipe2(to_parent, O_CLOEXEC) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(to_child[1]);
		close(to_parent[0]);
		get_byte(to_child[0]); /* the parent has closed sf */
		CHECK(epoll_items(ep) == 1);
		CHECK(wait0(ep, &out) == 0);
		put_byte(to_parent[1]);
		/* The parent signals the point: its item here reports it. */
		CHECK(epoll_wait(ep, &out, 1, 20000) == 1);
		CHECK(out.events == EPOLLIN && out.data.u64 == 42);
		CHECK(wait0(ep, &out) == 0);
		CHECK(epoll_items(ep) == 1);
		_exit(0);
	}
	close(to_child[0]);
	close(to_parent[1]);
	close(sf);
	put_byte(to_child[1]);
	get_byte(to_parent[0]);
	inc(tl);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The child's exit was sf's last reference. */
	CHECK(epoll_items_become(ep, 0));
	close(ep);
	close(to_child[1]);
	close(to_parent[0]);
	close(tl);
}

/* The kernel's EPOLL_CTL_ADD makes no fd: it works with every fd of the
 * RLIMIT_NOFILE soft limit in use. */
static void case_rlimit(void)
{
	struct epoll_event out;
	struct rlimit rl, low;
	int tl = timeline(), sf = point(tl, 1), ep = epoll_create1(EPOLL_CLOEXEC), fill[1024];
	int n = 0, top = 0;

	CHECK(ep >= 0);
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	/* The soft limit just above the program's highest fd, and every fd
	 * below it taken. */
	for (int fd = 0; fd < 1024 && fd < (int)(rl.rlim_cur / 2); fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			top = fd;
	low = rl;
	low.rlim_cur = (rlim_t)top + 1;
	CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	while (n < 1024 && (fill[n] = dup(0)) >= 0)
		n++;
	FAILS_WITH(dup(0), EMFILE);
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 50 };
		int ret = epoll_ctl(ep, EPOLL_CTL_ADD, sf, &ev);
		int err = errno;

		CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
		errno = err;
		/* The supervisor adds it; the preload needs fds of its own for
		 * the item (docs/uapi.md, "Limits"): ENOMEM, as the kernel's
		 * ep_insert() may answer, never EMFILE. */
		CHECK(ret == 0 || errno == ENOMEM);
		if (ret)
			goto out;
	}
	inc(tl);
	CHECK(wait0(ep, &out) == 1 && out.events == EPOLLIN && out.data.u64 == 50);
out:
	while (n > 0)
		close(fill[--n]);
	close(ep);
	close(sf);
	close(tl);
}

/* Every fd of the process, the layer's included. */
static int count_all_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	CHECK(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;
}

/* Many sync files in one set: each reported once with its own data, and
 * an item costs at most one fd beside the program's (the kernel's costs
 * none; the preload's is its stand-in eventfd, the supervisor's are in
 * its own process). */
static void case_many(void)
{
	struct rlimit rl;
	struct epoll_event *evs;
	int tl = timeline(), ep = epoll_create1(EPOLL_CLOEXEC), *sf, n, before, i;
	unsigned char *seen;

	CHECK(ep >= 0);
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	n = rl.rlim_cur / 8 < 1000 ? (int)(rl.rlim_cur / 8) : 1000;
	sf = calloc((size_t)n, sizeof(*sf));
	evs = calloc((size_t)n + 1, sizeof(*evs));
	seen = calloc((size_t)n, 1);
	CHECK(sf && evs && seen);
	for (i = 0; i < n; i++)
		sf[i] = point(tl, 1);
	before = count_all_fds();
	for (i = 0; i < n; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)i };

		CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sf[i], &ev) == 0);
	}
	printf("%s: %d items, %d fds more\n", current, n, count_all_fds() - before);
	CHECK(count_all_fds() - before <= n + 8);
	CHECK(epoll_items(ep) == n);
	CHECK(epoll_wait(ep, evs, n + 1, 0) == 0);
	inc(tl);
	CHECK(epoll_wait(ep, evs, n + 1, 0) == n);
	for (i = 0; i < n; i++) {
		CHECK(evs[i].events == EPOLLIN && evs[i].data.u64 < (uint64_t)n);
		CHECK(!seen[evs[i].data.u64]);
		seen[evs[i].data.u64] = 1;
	}
	for (i = 0; i < n; i++)
		close(sf[i]);
	CHECK(epoll_items_become(ep, 0));
	close(ep);
	close(tl);
	free(seen);
	free(evs);
	free(sf);
}

/* The exec'd image of case_exec: the set and the sync file came through
 * exec, and so did the item (an epoll item goes with its file, which exec
 * does not close when it is not close-on-exec). */
static int exec_after(char **argv)
{
	struct epoll_event out, ev = { .events = EPOLLIN, .data.u64 = 61 };
	int tl = atoi(argv[2]), sf = atoi(argv[3]), ep = atoi(argv[4]);

	current = "exec";
	CHECK(epoll_items(ep) == 1);
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_ADD, sf, &ev), EEXIST);
	CHECK(wait0(ep, &out) == 0);
	inc(tl);
	CHECK(epoll_wait(ep, &out, 1, 20000) == 1);
	CHECK(out.events == EPOLLIN && out.data.u64 == 60);
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, sf, NULL) == 0);
	CHECK(epoll_items(ep) == 0);
	close(ep);
	close(sf);
	close(tl);
	printf("ok exec\n");
	return 0;
}

/* Registered, then exec (only where the layer keeps the item over exec:
 * the supervisor; docs/uapi.md, "Limits", for the preload). */
static void case_exec(void)
{
	int tl = timeline(), sf = point(tl, 1), ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 60 };
	char a[3][16];

	CHECK(ep >= 0);
	/* sw_sync's fences are close-on-exec, as the kernel makes them. */
	CHECK(fcntl(sf, F_SETFD, 0) == 0 && fcntl(tl, F_SETFD, 0) == 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, sf, &ev) == 0);
	snprintf(a[0], sizeof(a[0]), "%d", tl);
	snprintf(a[1], sizeof(a[1]), "%d", sf);
	snprintf(a[2], sizeof(a[2]), "%d", ep);
	execl("/proc/self/exe", "uapi-syncepoll", "exec-after", a[0], a[1], a[2], (char *)NULL);
	CHECK(!"exec");
}

#define BIG_NFDS 2048
#define BIG_LONGS (BIG_NFDS / (8 * (int)sizeof(long)))

static void bit_set(unsigned long *s, int fd)
{
	s[fd / (8 * (int)sizeof(long))] |= 1ul << (fd % (8 * (int)sizeof(long)));
}

static bool bit_isset(const unsigned long *s, int fd)
{
	return s[fd / (8 * (int)sizeof(long))] >> (fd % (8 * (int)sizeof(long))) & 1;
}

/* select() of nfds 1 << 11, beyond FD_SETSIZE (the kernel's sets are as
 * long as nfds, bounded by its fd table): a pending sync file is neither
 * readable nor writable, a busy dma-buf not readable; once signalled, the
 * sync file is readable and still never writable. */
static void select_big(int nfds, int sf, int buf, int *nr, int *nw)
{
	unsigned long r[BIG_LONGS] = { 0 }, w[BIG_LONGS] = { 0 };
	struct timeval tv = { 0, 0 };
	int n;

	bit_set(r, sf);
	bit_set(w, sf);
	if (buf >= 0)
		bit_set(r, buf);
	n = select(nfds, (fd_set *)r, (fd_set *)w, NULL, &tv);
	CHECK(n >= 0);
	*nr = bit_isset(r, sf) + (buf >= 0 && bit_isset(r, buf));
	*nw = bit_isset(w, sf);
	CHECK(n == *nr + *nw);
}

static void case_select_big(void)
{
	int tl = timeline(), sf = point(tl, 1), buf = busy_buffer(tl, 1), nr, nw;

	select_big(BIG_NFDS, sf, buf, &nr, &nw);
	CHECK(nr == 0 && nw == 0);
	inc(tl);
	select_big(BIG_NFDS, sf, buf, &nr, &nw);
	CHECK(nr == 2 && nw == 0);
	close(buf);
	close(sf);
	close(tl);
}

/* select() with nfds far beyond the program's fds (1 << 20) and a 512-byte
 * set at the end of a mapping: core_sys_select() cuts nfds down to the fd
 * table's size, which the program's few fds keep below 4096 (the set's
 * bits), so the kernel reads and writes no more of the set than that, and
 * a bit beyond the table (no fd there) is neither looked at nor cleared. */
static void case_select_table(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	int tl = timeline(), sf = point(tl, 1), far = 4000;
	char *m = mmap(NULL, (size_t)(2 * pg), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	unsigned long *set = (unsigned long *)(m + pg - 512);
	struct timeval tv = { 0, 0 };

	CHECK(m != MAP_FAILED);
	CHECK(mprotect(m + pg, (size_t)pg, PROT_NONE) == 0);
	CHECK(sf < 1024 && fcntl(far, F_GETFD) < 0);
	inc(tl);
	if (!UNDER_ASAN) {
		memset(set, 0, 512);
		bit_set(set, sf);
		bit_set(set, far);
		CHECK(select(1 << 20, (fd_set *)set, NULL, NULL, &tv) == 1);
		CHECK(bit_isset(set, sf) && bit_isset(set, far));
		memset(set, 0, 512);
		bit_set(set, sf);
		CHECK(pselect(1 << 20, (fd_set *)set, NULL, NULL, NULL, NULL) == 1);
		CHECK(bit_isset(set, sf));
	}
	CHECK(munmap(m, (size_t)(2 * pg)) == 0);
	close(sf);
	close(tl);
}

/* dup2() onto the last fd of a sync file and close_range() over one
 * close the file, and its items go (eventpoll_release() at the last
 * reference); dup3() onto the last fd of a set frees the set, and the
 * layer's fds of its item go with it. */
static void case_dup2_close_range(void)
{
	struct epoll_event out;
	int tl = timeline(), f = point(tl, 1), g = point(tl, 1), h = point(tl, 1);
	int ep = set_with(f, EPOLLIN, 70), ep2, p[2], before;

	CHECK(pipe2(p, O_CLOEXEC) == 0);
	out = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 71 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, g, &out) == 0);
	CHECK(epoll_items(ep) == 2);
	CHECK(dup2(p[0], f) == f);
	CHECK(epoll_items_become(ep, 1));
	CHECK(syscall(SYS_close_range, (unsigned int)g, (unsigned int)g, 0) == 0);
	CHECK(epoll_items_become(ep, 0));
	inc(tl);
	CHECK(wait0(ep, &out) == 0);
	before = count_all_fds();
	ep2 = set_with(h, EPOLLIN, 72);
	CHECK(dup3(p[0], ep2, O_CLOEXEC) == ep2);
	/* The supervisor's fds are in its own process. */
	if (count_all_fds() != before + 1)
		list_fds();
	CHECK(count_all_fds() == before + 1); /* ep2 is the pipe now */
	close(ep2);
	close(ep);
	close(f);
	close(h);
	close(p[0]);
	close(p[1]);
	close(tl);
}

/* poll() and select() of a signalled sync file at the edges fs/select.c
 * draws: an array or set ending at the end of a mapping (what the kernel
 * reads, no more), one entry past it (EFAULT), nfds over RLIMIT_NOFILE
 * (EINVAL), nfds 0 (the timeout alone). */
static void case_poll_limits(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	int tl = timeline(), sf = point(tl, 1);
	char *m = mmap(NULL, (size_t)(2 * pg), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	struct pollfd *pf = (struct pollfd *)(m + pg - sizeof(*pf));
	unsigned long *set = (unsigned long *)(m + pg - sizeof(long));
	struct timeval tv = { 0, 0 };
	struct rlimit rl;
	int hi;

	CHECK(m != MAP_FAILED);
	CHECK(mprotect(m + pg, (size_t)pg, PROT_NONE) == 0);
	CHECK(sf < 8 * (int)sizeof(long));
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	inc(tl);
	*pf = (struct pollfd){ .fd = sf, .events = POLLIN | POLLOUT };
	CHECK(poll(pf, 1, 0) == 1 && pf->revents == POLLIN);
	if (!UNDER_ASAN) {
		FAILS_WITH(poll(pf, 2, 0), EFAULT);
		if (rl.rlim_cur < (rlim_t)INT_MAX)
			FAILS_WITH(poll(pf, (nfds_t)rl.rlim_cur + 1, 0), EINVAL);
	}
	CHECK(poll(NULL, 0, 1) == 0);
	*set = 1ul << sf;
	CHECK(select(sf + 1, (fd_set *)set, NULL, NULL, &tv) == 1 && *set == 1ul << sf);
	/* The kernel bounds nfds by its fd table (64 fds at first): one
	 * made larger, for good, reads the second long. */
	hi = fcntl(0, F_DUPFD_CLOEXEC, 100);
	CHECK(hi >= 100);
	close(hi);
	*set = 1ul << sf;
	if (!UNDER_ASAN)
		FAILS_WITH(select(8 * (int)sizeof(long) + 1, (fd_set *)set, NULL, NULL, &tv),
			   EFAULT);
	CHECK(munmap(m, (size_t)(2 * pg)) == 0);
	close(sf);
	close(tl);
}

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
	{ "level", case_level },
	{ "edge", case_edge },
	{ "ctl", case_ctl },
	{ "close", case_close },
	{ "blocking", case_blocking },
	{ "export-merge", case_export_merge },
	{ "dupset", case_dupset },
	{ "fork", case_fork },
	{ "fork-adder", case_fork_adder },
	{ "rlimit", case_rlimit },
	{ "many", case_many },
	{ "select-big", case_select_big },
	{ "select-table", case_select_table },
	{ "dup2-close-range", case_dup2_close_range },
	{ "poll-limits", case_poll_limits },
	{ "exec", case_exec }, /* last: not in "all" */
};

int main(int argc, char **argv)
{
	size_t i;
	int before, ran = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && !strcmp(argv[1], "exec-after"))
		return exec_after(argv);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (argc < 2 || (strcmp(argv[1], cases[i].name) &&
				  (strcmp(argv[1], "all") || cases[i].fn == case_exec)))
			continue;
		current = cases[i].name;
		before = count_fds();
		cases[i].fn();
		if (count_fds() != before)
			list_fds();
		CHECK(count_fds() == before);
		printf("ok %s\n", cases[i].name);
		ran++;
	}
	if (!ran) {
		printf("unknown case %s\n", argc > 1 ? argv[1] : "");
		return 2;
	}
	return 0;
}
