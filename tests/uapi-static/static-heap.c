/* SPDX-License-Identifier: MIT */
/*
 * A statically linked program written against the kernel's uapi only, run
 * under dmabuf-run by test-uapi-static.c: the preload cannot reach it, the
 * seccomp supervisor answers it. The same file is also linked dynamically,
 * for --seccomp. The argument names the case ("all": every case but
 * "kill"); each prints "ok <case>" and exits 0, or prints what failed and
 * exits 1.
 *
 * It links nothing of libdmabuf, so it has its own small checks instead of
 * the CMocka harness; the suite that runs it is in the fd-leak fixture and
 * each case here checks its own fd count.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/sync_file.h>

#include "../uapi/uapi-kernel.h"

#define HEAP "/dev/dma_heap/system"
#define MIB (1024 * 1024)

static int heap_open(void)
{
	int fd = open(HEAP, O_RDWR | O_CLOEXEC);

	CHECK(fd >= 0);
	return fd;
}

static int alloc(int heap, uint64_t len, uint32_t fd_flags)
{
	struct dma_heap_allocation_data d = { .len = len, .fd_flags = fd_flags };

	CHECK(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) == 0);
	CHECK((int)d.fd > 2);
	return (int)d.fd;
}

static int sync_buf(int fd, uint64_t flags)
{
	struct dma_buf_sync s = { .flags = flags };

	return ioctl(fd, DMA_BUF_IOCTL_SYNC, &s);
}

/* Writes a pattern under a SYNC bracket and reads it back through a second
 * mapping of the same fd. */
static void fill_and_check(int fd, size_t len, unsigned char seed)
{
	unsigned char *a, *b;
	size_t i;

	a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(a != MAP_FAILED);
	CHECK(sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE) == 0);
	for (i = 0; i < len; i++)
		a[i] = (unsigned char)(seed + i * 7);
	CHECK(sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE) == 0);
	b = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(b != MAP_FAILED);
	CHECK(sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ) == 0);
	for (i = 0; i < len; i++)
		CHECK(b[i] == (unsigned char)(seed + i * 7));
	CHECK(sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ) == 0);
	CHECK(munmap(a, len) == 0);
	CHECK(munmap(b, len) == 0);
}

/* Relative paths: after chdir("/dev"), and from a directory fd of it. */
static void case_relative(void)
{
	struct stat st;
	int dev, fd, cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	CHECK(cwd >= 0);
	CHECK(chdir("/dev") == 0);
	fd = open("dma_heap/system", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	close(alloc(fd, 4096, O_RDWR | O_CLOEXEC));
	close(fd);
	CHECK(stat("./dma_heap", &st) == 0 && S_ISDIR(st.st_mode));
	CHECK(access("udmabuf", R_OK | W_OK) == 0);
	FAILS_WITH(open("dma_heap/no-such-heap", O_RDWR), ENOENT);
	CHECK(fchdir(cwd) == 0);
	close(cwd);
	dev = open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(dev >= 0);
	fd = openat(dev, "dma_heap/system", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	close(fd);
	CHECK(fstatat(dev, "dma_heap/system", &st, 0) == 0);
	close(dev);
	fd = open("/sys/kernel/debug", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) { /* a container may have no /sys/kernel/debug */
		int tl = openat(fd, "sync/sw_sync", O_RDWR | O_CLOEXEC);

		CHECK(tl >= 0);
		close(tl);
		close(fd);
	}
}

/* /dev/dma_heap exists for opendir/readdir/stat/access; nothing else does. */
static void case_tree(void)
{
	struct dirent *e;
	struct stat st;
	int found = 0;
	DIR *d;

	d = opendir("/dev/dma_heap");
	CHECK(d);
	while ((e = readdir(d)))
		found += !strcmp(e->d_name, "system");
	closedir(d);
	CHECK(found == 1);
	CHECK(stat(HEAP, &st) == 0);
	CHECK(access(HEAP, R_OK | W_OK) == 0);
	CHECK(stat("/dev/dma_heap", &st) == 0 && S_ISDIR(st.st_mode));
	FAILS_WITH(stat("/dev/dma_heap/no-such-heap", &st), ENOENT);
	FAILS_WITH(open("/dev/dma_heap/no-such-heap", O_RDWR), ENOENT);
	FAILS_WITH(access("/dev/dma_heap/no-such-heap", F_OK), ENOENT);
	case_relative();
}

static void case_alloc(void)
{
	int heap = heap_open(), fd, fd2;

	fd = alloc(heap, MIB, O_RDWR | O_CLOEXEC);
	CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC);
	fill_and_check(fd, MIB, 3);
	/* Without O_CLOEXEC the program's fd has no FD_CLOEXEC. */
	fd2 = alloc(heap, 3 * 4096, O_RDWR);
	CHECK(fcntl(fd2, F_GETFD) == 0);
	fill_and_check(fd2, 3 * 4096, 11);
	/* Lengths are page-aligned by the heap, as the kernel's. */
	CHECK(lseek(fd2, 0, SEEK_END) == 3 * 4096);
	close(fd2);
	close(fd);
	close(heap);
}

static void case_errors(void)
{
	struct dma_heap_allocation_data d = { .len = MIB, .fd_flags = O_RDWR };
	int heap = heap_open(), fd, p[2];
	void *ro;

	d.heap_flags = 0x111111;
	FAILS_WITH(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d), EINVAL);
	d.heap_flags = 0;
	d.fd_flags = ~(uint32_t)(O_RDWR | O_CLOEXEC);
	FAILS_WITH(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d), EINVAL);
	d.fd_flags = O_RDWR;
	d.len = 0;
	FAILS_WITH(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d), EINVAL);
	d.len = MIB;
	/* Any other number of the 'H' type: -EINVAL (dma_heap_ioctl). */
	FAILS_WITH(ioctl(heap, _IOWR(DMA_HEAP_IOC_MAGIC, 1, struct dma_heap_allocation_data), &d),
		   EINVAL);
	/* Bad pointers: -EFAULT, and the program goes on. */
	FAILS_WITH(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, (void *)16), EFAULT);
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ro != MAP_FAILED);
	FAILS_WITH(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, ro), EINVAL); /* len 0, read first */
	munmap(ro, 4096);

	fd = alloc(heap, MIB, O_RDWR | O_CLOEXEC);
	FAILS_WITH(sync_buf(fd, 0x80), EINVAL);
	FAILS_WITH(sync_buf(fd, DMA_BUF_SYNC_START), EINVAL); /* no direction */
	FAILS_WITH(ioctl(fd, DMA_BUF_IOCTL_SYNC, (void *)16), EFAULT);
	/* dma_heap_ioctl() looks at the number only: 'b' 1 on a heap is
	 * -EINVAL (and 'b' 0, DMA_BUF_IOCTL_SYNC, would allocate). */
	FAILS_WITH(ioctl(heap, DMA_BUF_SET_NAME_B, "x"), EINVAL);
	/* mmap beyond the size: -EINVAL (dma_buf_mmap_internal). */
	CHECK(mmap(NULL, 2 * MIB, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED && errno == EINVAL);
	CHECK(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, MIB) == MAP_FAILED && errno == EINVAL);
	/* The emulation's ioctl types on fds that are not its own reach the
	 * kernel: a pipe answers -ENOTTY. */
	CHECK(pipe(p) == 0);
	FAILS_WITH(ioctl(p[0], DMA_HEAP_IOCTL_ALLOC, &d), ENOTTY);
	FAILS_WITH(ioctl(p[0], DMA_BUF_IOCTL_SYNC, &d), ENOTTY);
	close(p[0]);
	close(p[1]);
	FAILS_WITH(ioctl(1000, DMA_BUF_IOCTL_SYNC, &d), EBADF);
	/* And the buffer still works. */
	fill_and_check(fd, MIB, 5);
	close(fd);
	close(heap);
}

/* Raw syscalls: syscall() and an inline-asm syscall instruction, which no
 * preload could see. */
static long raw_openat(const char *path, int flags)
{
#if defined(__x86_64__)
	long ret;
	register long r10 __asm__("r10") = 0;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"((long)SYS_openat), "D"((long)AT_FDCWD), "S"(path), "d"((long)flags),
			   "r"(r10)
			 : "rcx", "r11", "memory");
	if (ret < 0) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
#else
	return syscall(SYS_openat, AT_FDCWD, path, flags, 0);
#endif
}

static void case_raw(void)
{
	struct dma_heap_allocation_data d = { .len = MIB, .fd_flags = O_RDWR | O_CLOEXEC };
	int heap, fd;

	heap = (int)raw_openat(HEAP, O_RDWR | O_CLOEXEC);
	CHECK(heap >= 0);
	CHECK(syscall(SYS_ioctl, heap, DMA_HEAP_IOCTL_ALLOC, &d) == 0);
	fd = (int)d.fd;
	fill_and_check(fd, MIB, 9);
	close(fd);
	close(heap);
	FAILS_WITH(raw_openat("/dev/dma_heap/no-such-heap", O_RDWR), ENOENT);
}

/* A child process (same filter, same supervisor) sees the parent's buffer
 * through the inherited fd and allocates its own. */
static void case_fork(void)
{
	int heap = heap_open(), fd, st;
	unsigned char *m;
	pid_t pid;

	fd = alloc(heap, MIB, O_RDWR);
	m = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED);
	CHECK(sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE) == 0);
	memset(m, 0x5a, MIB);
	CHECK(sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE) == 0);
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		current = "fork (child)";
		CHECK(sync_buf(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ) == 0);
		CHECK(m[0] == 0x5a && m[MIB - 1] == 0x5a);
		CHECK(sync_buf(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ) == 0);
		int own = alloc(heap, MIB, O_RDWR);
		fill_and_check(own, MIB, 21);
		close(own);
		_exit(0);
	}
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	munmap(m, MIB);
	close(fd);
	close(heap);
}

/* DMA_BUF_SET_NAME shows in /proc/self/fdinfo/N with the kernel's fields. */
static void case_fdinfo(void)
{
	int heap = heap_open(), fd, info;
	char path[64], text[2048];
	ssize_t n;

	fd = alloc(heap, MIB, O_RDWR);
	CHECK(ioctl(fd, DMA_BUF_SET_NAME_B, "static-test") == 0);
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	info = open(path, O_RDONLY);
	CHECK(info >= 0);
	n = read(info, text, sizeof(text) - 1);
	CHECK(n > 0);
	text[n] = '\0';
	close(info);
	CHECK(strstr(text, "size:\t1048576\n"));
	CHECK(strstr(text, "name:\tstatic-test\n"));
	/* The file's references are the program's: the supervisor, which
	 * answered the ioctl, keeps none. */
	CHECK(strstr(text, "count:\t1\n"));
	CHECK(strstr(text, "exp_name:\t"));
	close(fd);
	close(heap);
}

static void *thread_alloc(void *arg)
{
	int heap = *(int *)arg, i, fd;

	for (i = 0; i < 8; i++) {
		fd = alloc(heap, 64 * 1024, O_RDWR | O_CLOEXEC);
		fill_and_check(fd, 64 * 1024, (unsigned char)i);
		close(fd);
	}
	return NULL;
}

/* Threads of one program allocate and sync at the same time. */
static void case_threads(void)
{
	int heap = heap_open(), i;
	pthread_t t[4];

	for (i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, thread_alloc, &heap) == 0);
	for (i = 0; i < 4; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	close(heap);
}

struct waiter {
	int fd;
	pid_t tid;
	int result;
};

static void *sync_waiter(void *arg)
{
	struct waiter *w = arg;

	w->tid = gettid();
	/* Waits for the imported write fence (dma_buf_begin_cpu_access). */
	w->result = sync_buf(w->fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
	if (w->result == 0)
		w->result = sync_buf(w->fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
	return NULL;
}

/* True while thread tid is inside ioctl(2) (it waits for the supervisor's
 * answer or in the emulated wait). */
static int in_ioctl(pid_t tid)
{
	char path[64], buf[64] = "";
	int fd, n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && !strncmp(buf, "16 ", 3);
}

/* A SYNC that waits for a pending fence does not stop the supervisor: the
 * thread that signals the fence (SW_SYNC_IOC_INC) is still answered. */
static void case_fence_wait(void)
{
	struct sw_sync_create_fence_data f = { .value = 1, .name = "static" };
	struct dma_buf_import_sync_file imp = { .flags = DMA_BUF_SYNC_WRITE };
	struct waiter w = { .result = -2 };
	int heap = heap_open(), tl, i;
	uint32_t one = 1;
	pthread_t t;

	tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	CHECK(tl >= 0);
	CHECK(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &f) == 0);
	w.fd = alloc(heap, 64 * 1024, O_RDWR | O_CLOEXEC);
	imp.fd = f.fence;
	CHECK(ioctl(w.fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &imp) == 0);
	CHECK(pthread_create(&t, NULL, sync_waiter, &w) == 0);
	/* Signal once the waiter is in its ioctl (bounded by a count, and
	 * signalling early is correct too: then the SYNC does not wait). */
	for (i = 0; i < 1000000 && !(__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE) && in_ioctl(w.tid));
	     i++)
		sched_yield();
	CHECK(ioctl(tl, SW_SYNC_IOC_INC, &one) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(w.result == 0);
	close(f.fence);
	close(w.fd);
	close(tl);
	close(heap);
}

/* A buffer made busy by a pending sw_sync fence imported as a write fence
 * (or a read fence): poll, select and epoll answer from its fences. */
struct busy {
	int heap, tl, fd, fence;
};

static void busy_make(struct busy *b, uint32_t how, uint32_t value)
{
	struct sw_sync_create_fence_data f = { .value = value, .name = "busy" };
	struct dma_buf_import_sync_file imp = { .flags = how };

	b->heap = heap_open();
	b->tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	CHECK(b->tl >= 0);
	CHECK(ioctl(b->tl, SW_SYNC_IOC_CREATE_FENCE, &f) == 0);
	b->fence = f.fence;
	b->fd = alloc(b->heap, 64 * 1024, O_RDWR | O_CLOEXEC);
	imp.fd = b->fence;
	CHECK(ioctl(b->fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &imp) == 0);
}

/* One more pending fence on the buffer, at `value` of its timeline. */
static void busy_again(struct busy *b, uint32_t how, uint32_t value)
{
	struct sw_sync_create_fence_data f = { .value = value, .name = "again" };
	struct dma_buf_import_sync_file imp = { .flags = how };

	CHECK(ioctl(b->tl, SW_SYNC_IOC_CREATE_FENCE, &f) == 0);
	imp.fd = f.fence;
	CHECK(ioctl(b->fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &imp) == 0);
	close(f.fence);
}

static void busy_signal(struct busy *b)
{
	uint32_t one = 1;

	CHECK(ioctl(b->tl, SW_SYNC_IOC_INC, &one) == 0);
}

static void busy_free(struct busy *b)
{
	close(b->fence);
	close(b->fd);
	close(b->tl);
	close(b->heap);
}

/* True while thread tid is inside system call nr. */
static int in_syscall(pid_t tid, int nr)
{
	char path[64], buf[64] = "", want[16];
	int fd, n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	snprintf(want, sizeof(want), "%d ", nr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && !strncmp(buf, want, strlen(want));
}

struct poller {
	int fd;
	pid_t tid;
	int result;
	short revents;
};

static void *blocking_poll(void *arg)
{
	struct poller *w = arg;
	struct pollfd p = { .fd = w->fd, .events = POLLIN };

	__atomic_store_n(&w->tid, gettid(), __ATOMIC_RELEASE);
	w->result = poll(&p, 1, -1);
	w->revents = p.revents;
	return NULL;
}

/* poll, ppoll, select and pselect on a dma-buf: its fences, as
 * dma_buf_poll() (the kernel would poll a memfd as always ready). */
static void case_poll(void)
{
	struct timespec ts = { 0, 1000000 };
	struct poller w = { .result = -2 };
	struct pollfd p[3];
	struct busy b;
	fd_set rd, wr;
	struct timeval tv = { 0, 0 };
	int pipefd[2], i;
	pthread_t t;

	busy_make(&b, DMA_BUF_SYNC_WRITE, 1);
	CHECK(pipe2(pipefd, O_CLOEXEC) == 0);
	p[0] = (struct pollfd){ .fd = b.fd, .events = POLLIN | POLLOUT };
	CHECK(poll(p, 1, 0) == 0 && p[0].revents == 0);
	/* The other fds are polled as the kernel polls them. */
	p[1] = (struct pollfd){ .fd = pipefd[1], .events = POLLOUT };
	p[2] = (struct pollfd){ .fd = 999, .events = POLLIN };
	CHECK(poll(p, 3, 0) == 2);
	CHECK(p[0].revents == 0 && p[1].revents == POLLOUT && p[2].revents == POLLNVAL);
	CHECK(ppoll(p, 1, &ts, NULL) == 0);
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(b.fd, &rd);
	FD_SET(b.fd, &wr);
	CHECK(select(b.fd + 1, &rd, &wr, NULL, &tv) == 0);
	CHECK(!FD_ISSET(b.fd, &rd) && !FD_ISSET(b.fd, &wr));
	/* A poll that waits is woken by the fence's signal. */
	w.fd = b.fd;
	CHECK(pthread_create(&t, NULL, blocking_poll, &w) == 0);
	for (i = 0; i < 1000000 && !(__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE) &&
				     in_syscall(w.tid, SYS_poll));
	     i++)
		sched_yield();
	busy_signal(&b);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(w.result == 1 && w.revents == POLLIN);
	p[0].events = POLLIN | POLLOUT;
	CHECK(poll(p, 1, 0) == 1 && p[0].revents == (POLLIN | POLLOUT));
	FD_SET(b.fd, &rd);
	FD_SET(b.fd, &wr);
	CHECK(pselect(b.fd + 1, &rd, &wr, NULL, &ts, NULL) == 2);
	CHECK(FD_ISSET(b.fd, &rd) && FD_ISSET(b.fd, &wr));
	/* A pending read fence: readers may go on, writers wait. */
	busy_again(&b, DMA_BUF_SYNC_READ, 2);
	CHECK(poll(p, 1, 0) == 1 && p[0].revents == POLLIN);
	busy_signal(&b);
	CHECK(poll(p, 1, 0) == 1 && p[0].revents == (POLLIN | POLLOUT));
	/* A bad fd in a select set fails the call (-EBADF), as the kernel. */
	FD_ZERO(&rd);
	FD_SET(b.fd, &rd);
	FD_SET(pipefd[0], &rd);
	close(pipefd[0]);
	FAILS_WITH(select(b.fd + 1 > pipefd[0] + 1 ? b.fd + 1 : pipefd[0] + 1, &rd, NULL, NULL, &tv),
		   EBADF);
	{
		struct pollfd *volatile bad = (struct pollfd *)16;

		FAILS_WITH(poll(bad, 1, 0), EFAULT);
	}
	close(pipefd[1]);
	busy_free(&b);
}

/* epoll on a dma-buf: registered (the kernel refuses a memfd with EPERM),
 * ready as dma_buf_poll(), level- and edge-triggered, one-shot, and gone
 * with the buffer's file. */
static void case_epoll(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 42 }, out[4];
	int ep, pipefd[2], dupfd;
	struct busy b;

	busy_make(&b, DMA_BUF_SYNC_WRITE, 1);
	ep = epoll_create1(EPOLL_CLOEXEC);
	CHECK(ep >= 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, b.fd, &ev) == 0);
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_ADD, b.fd, &ev), EEXIST);
	CHECK(epoll_wait(ep, out, 4, 0) == 0);
	busy_signal(&b);
	/* The signal reaches the set without a call of the program's. */
	CHECK(epoll_wait(ep, out, 4, -1) == 1);
	CHECK(out[0].events == EPOLLIN && out[0].data.u64 == 42);
	CHECK(epoll_wait(ep, out, 4, 0) == 1); /* level-triggered */
	/* A new fence: busy at once (the import is answered after the set
	 * knows). */
	busy_again(&b, DMA_BUF_SYNC_WRITE, 2);
	CHECK(epoll_wait(ep, out, 4, 0) == 0);
	busy_signal(&b);
	CHECK(epoll_wait(ep, out, 4, -1) == 1 && out[0].events == EPOLLIN);
	/* Edge-triggered: as the kernel's dma_buf_poll() (which wakes its
	 * own waiters when it adds no fence callback), reported at every
	 * wait while ready. */
	ev = (struct epoll_event){ .events = EPOLLOUT | EPOLLET, .data.u64 = 7 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, b.fd, &ev) == 0);
	CHECK(epoll_wait(ep, out, 4, -1) == 1);
	CHECK(out[0].events == EPOLLOUT && out[0].data.u64 == 7);
	CHECK(epoll_wait(ep, out, 4, 0) == 1 && out[0].events == EPOLLOUT);
	/* One-shot: reported once, until the program's MOD. */
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 9 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, b.fd, &ev) == 0);
	CHECK(epoll_wait(ep, out, 4, -1) == 1 && out[0].data.u64 == 9);
	CHECK(epoll_wait(ep, out, 4, 0) == 0);
	busy_again(&b, DMA_BUF_SYNC_WRITE, 3);
	busy_signal(&b);
	CHECK(epoll_wait(ep, out, 4, 0) == 0);
	CHECK(epoll_ctl(ep, EPOLL_CTL_MOD, b.fd, &ev) == 0);
	CHECK(epoll_wait(ep, out, 4, -1) == 1 && out[0].data.u64 == 9);
	/* The kernel's errnos. */
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_MOD, b.fd, &ev), EINVAL);
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_ADD, b.fd, (struct epoll_event *)16), EFAULT);
	CHECK(pipe2(pipefd, O_CLOEXEC) == 0);
	FAILS_WITH(epoll_ctl(pipefd[0], EPOLL_CTL_ADD, b.fd, &ev), EINVAL);
	close(pipefd[0]);
	close(pipefd[1]);
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, b.fd, NULL) == 0);
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_DEL, b.fd, NULL), ENOENT);
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_MOD, b.fd, &ev), EINVAL); /* EXCLUSIVE first */
	ev.events = EPOLLIN;
	FAILS_WITH(epoll_ctl(ep, EPOLL_CTL_MOD, b.fd, &ev), ENOENT);
	CHECK(epoll_items(ep) == 0);
	/* The item lives as long as the buffer's file: a dup keeps it, the
	 * last close takes it. */
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 5 };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, b.fd, &ev) == 0);
	CHECK(epoll_items(ep) == 1);
	dupfd = fcntl(b.fd, F_DUPFD_CLOEXEC, 0);
	CHECK(dupfd >= 0);
	close(b.fd);
	b.fd = dupfd;
	CHECK(epoll_wait(ep, out, 4, -1) == 1 && out[0].data.u64 == 5);
	CHECK(epoll_items(ep) == 1);
	close(b.fd);
	b.fd = -1;
	CHECK(epoll_items_become(ep, 0));
	CHECK(epoll_wait(ep, out, 4, 0) == 0);
	close(ep);
	busy_free(&b);
}

/* The status of a sync file's fence (SYNC_IOC_FILE_INFO): 1 signalled,
 * 0 pending, or its error. */
static int fence_status(int fence)
{
	struct sync_file_info info = { 0 };

	CHECK(ioctl(fence, SYNC_IOC_FILE_INFO, &info) == 0);
	return info.status;
}

/* When the last reference to a timeline goes (here: the program's close,
 * which the supervisor does not see), its pending fences signal with
 * -ENOENT; a dup keeps it alive. */
static void case_timeline_close(void)
{
	struct sw_sync_create_fence_data f = { .value = 5, .name = "orphan" };
	struct pollfd p;
	int tl, dupfd;

	tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	CHECK(tl >= 0);
	CHECK(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &f) == 0);
	CHECK(fence_status(f.fence) == 0);
	dupfd = fcntl(tl, F_DUPFD_CLOEXEC, 0);
	CHECK(dupfd >= 0);
	close(tl);
	p = (struct pollfd){ .fd = f.fence, .events = POLLIN };
	CHECK(poll(&p, 1, 0) == 0 && fence_status(f.fence) == 0);
	close(dupfd);
	p.revents = 0;
	CHECK(poll(&p, 1, -1) == 1 && p.revents == POLLIN);
	CHECK(fence_status(f.fence) == -ENOENT);
	close(f.fence);
}

/* Socket calls that would change a sync file (a socket here, shared by
 * every holder) are ENOTSOCK, as the kernel's sync file is no socket; the
 * fence stays pending; a socket of the program's own is untouched. */
static void case_sockcalls(void)
{
	struct sw_sync_create_fence_data f = { .value = 1, .name = "sock" };
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct pollfd p;
	int tl, one = 1, sv[2];

	tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	CHECK(tl >= 0);
	CHECK(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &f) == 0);
	FAILS_WITH(shutdown(f.fence, SHUT_RDWR), ENOTSOCK);
	FAILS_WITH(syscall(SYS_shutdown, f.fence, SHUT_RD), ENOTSOCK);
	FAILS_WITH(setsockopt(f.fence, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)), ENOTSOCK);
	FAILS_WITH(bind(f.fence, (struct sockaddr *)&a, sizeof(sa_family_t)), ENOTSOCK);
	FAILS_WITH(connect(f.fence, (struct sockaddr *)&a, sizeof(sa_family_t)), ENOTSOCK);
	FAILS_WITH(listen(f.fence, 1), ENOTSOCK);
	FAILS_WITH(accept4(f.fence, NULL, NULL, 0), ENOTSOCK);
	FAILS_WITH(shutdown(tl, SHUT_RDWR), ENOTSOCK);
	p = (struct pollfd){ .fd = f.fence, .events = POLLIN };
	CHECK(poll(&p, 1, 0) == 0 && fence_status(f.fence) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	CHECK(shutdown(sv[0], SHUT_RDWR) == 0);
	close(sv[0]);
	close(sv[1]);
	CHECK(ioctl(tl, SW_SYNC_IOC_INC, &one) == 0);
	p.revents = 0;
	CHECK(poll(&p, 1, -1) == 1 && p.revents == POLLIN);
	CHECK(fence_status(f.fence) == 1);
	close(f.fence);
	close(tl);
}

struct sf_poller {
	int fd;
	pid_t tid;
	int result;
	short revents;
};

static void *sf_blocking_poll(void *arg)
{
	struct sf_poller *w = arg;
	struct pollfd p = { .fd = w->fd, .events = POLLIN | POLLOUT };

	__atomic_store_n(&w->tid, gettid(), __ATOMIC_RELEASE);
	w->result = poll(&p, 1, -1);
	w->revents = p.revents;
	return NULL;
}

/* poll, ppoll, select and pselect on a sync file answer as the kernel's
 * sync_file_poll(): 0 while the fence is pending (the socket under it is
 * writable: no POLLOUT), exactly POLLIN once signalled (its signaller's
 * end is closed then: no POLLHUP), POLLNVAL once closed. */
static void case_syncpoll(void)
{
	struct sw_sync_create_fence_data f = { .value = 1, .name = "sfpoll" };
	struct timespec ts = { 0, 0 };
	struct timeval tv = { 0, 0 };
	struct sf_poller w = { .result = -2 };
	struct pollfd p[2];
	fd_set rd, wr;
	uint32_t one = 1;
	pthread_t t;
	int tl, pipefd[2], i;

	tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	CHECK(tl >= 0);
	CHECK(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &f) == 0);
	CHECK(pipe2(pipefd, O_CLOEXEC) == 0);
	p[0] = (struct pollfd){ .fd = f.fence, .events = POLLIN | POLLOUT };
	CHECK(poll(p, 1, 0) == 0 && p[0].revents == 0);
	p[1] = (struct pollfd){ .fd = pipefd[1], .events = POLLOUT };
	CHECK(ppoll(p, 2, &ts, NULL) == 1 && p[0].revents == 0 && p[1].revents == POLLOUT);
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(f.fence, &rd);
	FD_SET(f.fence, &wr);
	CHECK(select(f.fence + 1, &rd, &wr, NULL, &tv) == 0);
	/* A poll that waits is woken by the signal, with POLLIN alone. */
	w.fd = f.fence;
	CHECK(pthread_create(&t, NULL, sf_blocking_poll, &w) == 0);
	for (i = 0; i < 1000000 && !(__atomic_load_n(&w.tid, __ATOMIC_ACQUIRE) &&
				     in_syscall(w.tid, SYS_poll));
	     i++)
		sched_yield();
	CHECK(ioctl(tl, SW_SYNC_IOC_INC, &one) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(w.result == 1 && w.revents == POLLIN);
	p[0].revents = 0;
	CHECK(poll(p, 1, 0) == 1 && p[0].revents == POLLIN);
	p[0].events = POLLOUT;
	CHECK(poll(p, 1, 0) == 0 && p[0].revents == 0);
	p[0].events = POLLIN | POLLOUT;
	CHECK(ppoll(p, 2, &ts, NULL) == 2 && p[0].revents == POLLIN && p[1].revents == POLLOUT);
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(f.fence, &rd);
	FD_SET(f.fence, &wr);
	CHECK(pselect(f.fence + 1, &rd, &wr, NULL, &ts, NULL) == 1);
	CHECK(FD_ISSET(f.fence, &rd) && !FD_ISSET(f.fence, &wr));
	close(f.fence);
	CHECK(poll(p, 1, 0) == 1 && p[0].revents == POLLNVAL);
	close(pipefd[0]);
	close(pipefd[1]);
	close(tl);
}

/*
 * Bad pointers given to poll, ppoll, select and pselect (fs/select.c):
 * -1/EFAULT and nothing written, whether the fds named are dma-bufs, sync
 * files or kernel files. emu: a dma-buf and a sync file among the fds
 * ("pollfault"), else pipes in their places ("pollfault-kernel", the same
 * checks against the kernel alone).
 */
static void pollfault(bool emu)
{
	struct sw_sync_create_fence_data f = { .value = 1, .name = "pollfault" };
	struct timespec ts0 = { 0, 0 };
	struct timeval tv0 = { 0, 0 };
	long pg = sysconf(_SC_PAGESIZE);
	int heap = -1, tl = -1, pa[2], pb[2], buf, sf, fds[3], nfds, i, k;
	struct pollfd *p, *ro, ok[2];
	struct rlimit rl;
	char *m, *none, *rop;
	unsigned char *bits;
	fd_set rd;

	CHECK(pipe2(pa, O_CLOEXEC) == 0 && pipe2(pb, O_CLOEXEC) == 0);
	if (emu) {
		heap = heap_open();
		buf = alloc(heap, 4096, O_RDWR | O_CLOEXEC);
		tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
		CHECK(tl >= 0);
		CHECK(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &f) == 0);
		sf = f.fence;
	} else {
		/* in their places: a readable pipe, an empty one */
		CHECK(write(pb[1], "x", 1) == 1);
		buf = pb[0];
		sf = pa[0];
	}
	/* a kernel fd, a dma-buf, a sync file (pending: not ready) */
	fds[0] = pa[1];
	fds[1] = buf;
	fds[2] = sf;
	nfds = (buf > sf ? buf : sf) + 1;
	/* m: one mapped page, the next one unmapped; none: PROT_NONE;
	 * rop: read-only, holding valid entries. */
	m = mmap(NULL, 2 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED && munmap(m + pg, (size_t)pg) == 0);
	none = mmap(NULL, (size_t)pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	rop = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(none != MAP_FAILED && rop != MAP_FAILED);

	/* poll and ppoll: an unmapped array, a PROT_NONE one. */
	FAILS_WITH(poll((struct pollfd *)(m + pg), 1, 0), EFAULT);
	FAILS_WITH(poll((struct pollfd *)none, 1, 0), EFAULT);
	FAILS_WITH(ppoll((struct pollfd *)none, 1, &ts0, NULL), EFAULT);
	/* An array whose first k entries are valid, the last one past the
	 * end of the mapping: nothing written into the valid ones. */
	for (k = 1; k <= 3; k++) {
		p = (struct pollfd *)(m + pg) - k;
		for (i = 0; i < k; i++)
			p[i] = (struct pollfd){ .fd = fds[(i + k - 1) % 3], .events = POLLIN | POLLOUT,
						.revents = 0x5a5 };
		FAILS_WITH(poll(p, (nfds_t)k + 1, 0), EFAULT);
		FAILS_WITH(ppoll(p, (nfds_t)k + 1, &ts0, NULL), EFAULT);
		for (i = 0; i < k; i++)
			CHECK(p[i].revents == 0x5a5);
	}
	/* A read-only array: the kernel polls, then cannot write revents. */
	ro = (struct pollfd *)rop;
	for (i = 0; i < 3; i++)
		ro[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN | POLLOUT };
	CHECK(mprotect(rop, (size_t)pg, PROT_READ) == 0);
	FAILS_WITH(poll(ro, 3, 0), EFAULT);
	FAILS_WITH(poll(ro + 1, 1, 0), EFAULT);
	FAILS_WITH(ppoll(ro + 2, 1, &ts0, NULL), EFAULT);
	/* More entries than RLIMIT_NOFILE: EINVAL before anything is read. */
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	if (rl.rlim_cur < 1 << 20)
		FAILS_WITH(poll(ro, (nfds_t)rl.rlim_cur + 1, 0), EINVAL);
	/* ppoll: a bad signal mask, a bad timeout (libc's ppoll copies the
	 * timeout itself: the system call). */
	ok[0] = (struct pollfd){ .fd = buf, .events = POLLIN };
	ok[1] = (struct pollfd){ .fd = pa[1], .events = POLLOUT };
	FAILS_WITH(ppoll(ok, 2, &ts0, (sigset_t *)(m + pg)), EFAULT);
	FAILS_WITH(ppoll(ok, 1, &ts0, (sigset_t *)none), EFAULT);
	FAILS_WITH(syscall(SYS_ppoll, ok, 2, (struct timespec *)(m + pg), NULL, 8), EFAULT);
	FAILS_WITH(syscall(SYS_ppoll, ok, 1, (struct timespec *)none, NULL, 8), EFAULT);

	/* select and pselect: an unmapped set, a PROT_NONE one, one running
	 * off the mapping (its first 32 bits mapped, the fds set in them:
	 * the kernel reads at least one long, as it bounds the bits by its
	 * fd table, of 64 fds or more), a read-only one. */
	FAILS_WITH(select(nfds, (fd_set *)(m + pg), NULL, NULL, &tv0), EFAULT);
	FAILS_WITH(select(nfds, NULL, (fd_set *)none, NULL, &tv0), EFAULT);
	FAILS_WITH(pselect(nfds, NULL, NULL, (fd_set *)none, &ts0, NULL), EFAULT);
	bits = (unsigned char *)(m + pg - 4);
	memset(bits, 0, 4);
	for (i = 0; i < 3; i++) {
		CHECK(fds[i] < 32);
		bits[fds[i] / 8] |= (unsigned char)(1 << fds[i] % 8);
	}
	FAILS_WITH(select(nfds, (fd_set *)bits, NULL, NULL, &tv0), EFAULT);
	FAILS_WITH(select(FD_SETSIZE, (fd_set *)bits, NULL, NULL, &tv0), EFAULT);
	FAILS_WITH(pselect(nfds, NULL, (fd_set *)bits, NULL, &ts0, NULL), EFAULT);
	for (i = 0; i < 3; i++)
		CHECK(bits[fds[i] / 8] & (1 << fds[i] % 8));
	FD_ZERO(&rd);
	FD_SET(buf, &rd);
	FD_SET(pa[1], &rd);
	FAILS_WITH(select(nfds, &rd, (fd_set *)(m + pg), NULL, &tv0), EFAULT);
	CHECK(FD_ISSET(buf, &rd) && FD_ISSET(pa[1], &rd));
	CHECK(mprotect(rop, (size_t)pg, PROT_READ | PROT_WRITE) == 0);
	memcpy(rop, &rd, sizeof(rd));
	CHECK(mprotect(rop, (size_t)pg, PROT_READ) == 0);
	FAILS_WITH(select(nfds, (fd_set *)rop, NULL, NULL, &tv0), EFAULT);
	FAILS_WITH(pselect(nfds, NULL, (fd_set *)rop, NULL, &ts0, NULL), EFAULT);
	/* pselect: a bad signal mask. */
	FAILS_WITH(pselect(nfds, &rd, NULL, NULL, &ts0, (sigset_t *)(m + pg)), EFAULT);
	CHECK(FD_ISSET(buf, &rd) && FD_ISSET(pa[1], &rd));
	/* Invalid timeouts: EINVAL, the sets untouched. */
	FAILS_WITH(select(nfds, &rd, NULL, NULL, &(struct timeval){ -1, 0 }), EINVAL);
	FAILS_WITH(select(nfds, &rd, NULL, NULL, &(struct timeval){ 0, -1 }), EINVAL);
	FAILS_WITH(pselect(nfds, &rd, NULL, NULL, &(struct timespec){ 0, 1000000000 }, NULL), EINVAL);
	FAILS_WITH(pselect(nfds, &rd, NULL, NULL, &(struct timespec){ -1, 0 }, NULL), EINVAL);
	CHECK(FD_ISSET(buf, &rd) && FD_ISSET(pa[1], &rd));
	ok[0].revents = 0x5a5;
	FAILS_WITH(ppoll(ok, 2, &(struct timespec){ 0, 1000000000 }, NULL), EINVAL);
	FAILS_WITH(ppoll(ok, 2, &(struct timespec){ -1, 0 }, NULL), EINVAL);
	CHECK(ok[0].revents == 0x5a5);

	/* Everything still works: the buffer is idle (POLLIN), the sync
	 * file pending (0), the pipe writable. */
	ok[0].revents = ok[1].revents = 0;
	CHECK(poll(ok, 2, 0) == 2 && ok[0].revents == POLLIN && ok[1].revents == POLLOUT);
	ok[0].fd = sf;
	CHECK(poll(ok, 1, 0) == 0 && ok[0].revents == 0);
	FD_ZERO(&rd);
	FD_SET(buf, &rd);
	CHECK(select(nfds, &rd, NULL, NULL, &tv0) == 1 && FD_ISSET(buf, &rd));

	munmap(m, (size_t)pg);
	munmap(none, (size_t)pg);
	munmap(rop, (size_t)pg);
	if (emu) {
		close(buf);
		close(sf);
		close(tl);
		close(heap);
	}
	close(pa[0]);
	close(pa[1]);
	close(pb[0]);
	close(pb[1]);
}

static void case_pollfault(void)
{
	pollfault(true);
}

static void case_pollfault_kernel(void)
{
	pollfault(false);
}

/* Dies by a signal: dmabuf-run reports 128 + SIGTERM. */
static void case_kill(void)
{
	fflush(stdout);
	raise(SIGTERM);
}

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
	{ "tree", case_tree },	   { "alloc", case_alloc },	{ "errors", case_errors },
	{ "raw", case_raw },	   { "fork", case_fork },	{ "fdinfo", case_fdinfo },
	{ "threads", case_threads }, { "fence-wait", case_fence_wait },
	{ "poll", case_poll },	   { "epoll", case_epoll },	{ "timeline-close", case_timeline_close },
	{ "sockcalls", case_sockcalls }, { "syncpoll", case_syncpoll },
	{ "pollfault", case_pollfault }, { "pollfault-kernel", case_pollfault_kernel },
	{ "kill", case_kill },
};

int main(int argc, char **argv)
{
	size_t i;
	int before, ran = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (argc < 2 || (strcmp(argv[1], cases[i].name) &&
				 (strcmp(argv[1], "all") || cases[i].fn == case_kill)))
			continue;
		current = cases[i].name;
		before = count_fds();
		cases[i].fn();
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
