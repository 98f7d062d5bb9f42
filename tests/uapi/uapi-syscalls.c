/* SPDX-License-Identifier: MIT */
/*
 * The uapi paths whose syscalls tests/check-uapi-syscalls.py counts (under
 * `strace -f -c`, with and without libdmabuf-preload.so, for two counts of
 * rounds, so start-up and tear-down cancel out):
 * - passthru: in a process that has an emulated fd (the heap, opened
 *   first; without the preload that open just fails), calls on fds that
 *   are not the emulation's: ioctl(FIONREAD) on a pipe, write and read of
 *   the pipe, fcntl(F_GETFL), lseek, mmap + munmap, dup + close and open +
 *   close of a regular file, poll of the pipe. The preload must add no
 *   syscall to any of them;
 * - select: select() of a pipe's write end, made before the heap is
 *   opened (fds 3 and 4, the heap 5): with nfds 5, below every tagged fd,
 *   the preload adds nothing; with nfds 6 (the heap below it) it copies
 *   the set with one process_vm_readv, never reading it in the process;
 * - alloc: DMA_HEAP_IOCTL_ALLOC + close of the buffer;
 * - sync: DMA_BUF_IOCTL_SYNC START + END on one buffer.
 * A uapi program: kernel headers only. usage: uapi-syscalls MODE ROUNDS
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

static int fail(const char *what)
{
	perror(what);
	return 1;
}

static int passthru(int heap, int rounds)
{
	char path[] = "/tmp/uapi-syscalls-XXXXXX", c = 'x';
	struct pollfd pfd;
	int p[2], fd, n, i;
	void *m;

	if (pipe(p) < 0 || (fd = mkstemp(path)) < 0)
		return fail("pipe/mkstemp");
	if (write(fd, path, sizeof(path)) != (ssize_t)sizeof(path))
		return fail("write");
	for (i = 0; i < rounds; i++) {
		int f, d;

		if (ioctl(p[0], FIONREAD, &n) < 0 || write(p[1], &c, 1) != 1 ||
		    read(p[0], &c, 1) != 1 || fcntl(fd, F_GETFL) < 0 ||
		    lseek(fd, 0, SEEK_SET) != 0)
			return fail("ioctl/write/read/fcntl/lseek");
		m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED || munmap(m, 4096) < 0)
			return fail("mmap");
		if ((d = dup(fd)) < 0 || close(d) < 0)
			return fail("dup");
		if ((f = open(path, O_RDONLY | O_CLOEXEC)) < 0 || close(f) < 0)
			return fail("open");
		pfd = (struct pollfd){ .fd = p[1], .events = POLLOUT };
		if (poll(&pfd, 1, 0) != 1)
			return fail("poll");
	}
	unlink(path);
	close(fd);
	close(p[0]);
	close(p[1]);
	if (heap >= 0)
		close(heap);
	return 0;
}

static int selects(int rounds)
{
	struct timeval tv = { 0, 0 };
	int p[2], heap, i;
	fd_set w;

	if (pipe(p) < 0 || p[1] != 4)
		return fail("pipe (fds 3 and 4 expected)");
	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	for (i = 0; i < rounds; i++) {
		FD_ZERO(&w);
		FD_SET(p[1], &w);
		if (select(p[1] + 1, NULL, &w, NULL, &tv) != 1)
			return fail("select below the heap");
		if (select(p[1] + 2, NULL, &w, NULL, &tv) != 1)
			return fail("select over the heap");
	}
	if (heap >= 0)
		close(heap);
	close(p[0]);
	close(p[1]);
	return 0;
}

static int alloc_fd(int heap)
{
	struct dma_heap_allocation_data d = { .len = 1 << 16, .fd_flags = O_RDWR | O_CLOEXEC };

	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) < 0)
		return -1;
	return (int)d.fd;
}

int main(int argc, char **argv)
{
	struct dma_buf_sync s;
	int heap, rounds, i, buf;

	if (argc != 3)
		return 2;
	rounds = atoi(argv[2]);
	if (!strcmp(argv[1], "select"))
		return selects(rounds);
	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	if (!strcmp(argv[1], "passthru"))
		return passthru(heap, rounds);
	if (heap < 0)
		return fail("open /dev/dma_heap/system");
	if (!strcmp(argv[1], "alloc")) {
		for (i = 0; i < rounds; i++) {
			if ((buf = alloc_fd(heap)) < 0)
				return fail("ALLOC");
			close(buf);
		}
	} else if (!strcmp(argv[1], "sync")) {
		if ((buf = alloc_fd(heap)) < 0)
			return fail("ALLOC");
		for (i = 0; i < rounds; i++) {
			s.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW;
			if (ioctl(buf, DMA_BUF_IOCTL_SYNC, &s) < 0)
				return fail("SYNC START");
			s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
			if (ioctl(buf, DMA_BUF_IOCTL_SYNC, &s) < 0)
				return fail("SYNC END");
		}
		close(buf);
	} else {
		return 2;
	}
	close(heap);
	return 0;
}
