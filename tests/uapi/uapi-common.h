/* SPDX-License-Identifier: MIT */
/*
 * Shared by the uapi suites: programs written against the kernel's uapi
 * headers only (no libdmabuf), run with libdmabuf-preload.so (meson sets
 * LD_PRELOAD, or dmabuf-run does).
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/sync_file.h>
#include <linux/udmabuf.h>

#include "harness.h"
#include "uapi-fdpass.h"

/* The sw_sync uapi has no installed header; the kernel selftests define it
 * the same way. */
struct sw_sync_create_fence_data {
	__u32 value;
	char name[32];
	__s32 fence;
};
#define SW_SYNC_IOC_MAGIC 'W'
#define SW_SYNC_IOC_CREATE_FENCE _IOWR(SW_SYNC_IOC_MAGIC, 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC _IOW(SW_SYNC_IOC_MAGIC, 1, __u32)

/* A new sw_sync timeline (the debugfs path, as the kernel's selftests). */
static inline int uapi_timeline_open(void)
{
	int fd = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

/* A sync file of point @value on timeline @tl, or -errno. */
static inline int uapi_fence_create(int tl, uint32_t value)
{
	struct sw_sync_create_fence_data d = { .value = value, .name = "pt" };

	if (ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &d) < 0)
		return -errno;
	return d.fence;
}

/* SW_SYNC_IOC_INC by @n: 0 or -errno. */
static inline int uapi_tl_inc(int tl, uint32_t n)
{
	return ioctl(tl, SW_SYNC_IOC_INC, &n) < 0 ? -errno : 0;
}

/* SYNC_IOC_FILE_INFO's status (the ioctl must succeed). */
static inline int uapi_fence_status(int fd)
{
	struct sync_file_info info = { 0 };

	assert_int_equal(ioctl(fd, SYNC_IOC_FILE_INFO, &info), 0);
	return info.status;
}

/* Whether @fd polls POLLIN now. */
static inline bool uapi_ready(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* A page nobody may touch: the bad user pointer of the EFAULT cases. */
static inline void *uapi_bad_ptr(void)
{
	void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* A read-only page: the kernel's copy_to_user fails on it. */
static inline void *uapi_ro_page(const void *content, size_t n)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	memcpy(p, content, n);
	assert_int_equal(mprotect(p, 4096, PROT_READ), 0);
	return p;
}

static inline int uapi_heap_alloc(int heap, uint64_t len, uint32_t fd_flags)
{
	struct dma_heap_allocation_data d = { .len = len, .fd_flags = fd_flags };

	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) < 0)
		return -errno;
	return (int)d.fd;
}

static inline int uapi_open_heap(const char *name)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/dev/dma_heap/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static inline void uapi_close_last_and_wait(int fd);

/* The process's emulation context holds fds of its own; make it before the
 * first test so that the fd-leak fixture sees only the tests' fds. The
 * buffer's own fds in the layer go at its release, which is not always
 * within the close: another process that holds the file for a moment then
 * (a stat() of /proc/PID/fd/N, as any suite's fdinfo count makes) has the
 * last reference, the close event comes at its fput() and the layer's
 * service thread releases the buffer a little later. The first test's
 * fixture would then record a layer fd that the layer closes during the
 * test ("closed by the test but did not belong to it"): so wait for it. */
static inline void uapi_warm_up(void)
{
	int fd = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC), buf;

	if (fd < 0) {
		fprintf(stderr, "uapi suite: /dev/dma_heap/system: %s (not run with the preload?)\n",
			strerror(errno));
		exit(1);
	}
	/* The first buffer makes the endpoint other processes import from. */
	buf = uapi_heap_alloc(fd, 4096, O_RDWR | O_CLOEXEC);
	if (buf >= 0)
		uapi_close_last_and_wait(buf);
	close(fd);
}

/* Drops valgrind's own preloads (this suite may run under valgrind, the
 * programs it starts do not). */
static inline void uapi_clean_preload(void)
{
	char *v = getenv("LD_PRELOAD"), buf[4096] = "", *tok, *save;

	if (!v)
		return;
	v = strdup(v);
	for (tok = strtok_r(v, ": ", &save); tok; tok = strtok_r(NULL, ": ", &save)) {
		if (strstr(tok, "vgpreload"))
			continue;
		if (buf[0])
			strncat(buf, ":", sizeof(buf) - strlen(buf) - 1);
		strncat(buf, tok, sizeof(buf) - strlen(buf) - 1);
	}
	free(v);
	if (buf[0])
		setenv("LD_PRELOAD", buf, 1);
	else
		unsetenv("LD_PRELOAD");
}

/*
 * Closes @fd, the test's last fd of a buffer (one that a child held, say), and waits
 * until the file is gone: the inode's IN_DELETE_SELF comes when its last
 * reference goes, the layer's own descriptions included, so the fd-leak
 * fixture then sees none of them. Without the wait a close here is the
 * last only when no other process holds the file at that moment: one that
 * reads this process's /proc/<pid>/fd (a stat() of an entry takes a
 * reference for a moment, as another suite's fdinfo count does) or the
 * child's /proc files (its mm, and so its mapping, outlive its exit while
 * a reader holds them) makes the final close its own, and the layer
 * releases the buffer on that close event, a little after this close
 * returned (a layer memfd was once found open by the fixture). The poll's
 * bound is a hang guard only.
 */
static inline void uapi_close_last_and_wait(int fd)
{
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK), gone = 0;
	char path[64], ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	assert_true(in >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	assert_true(inotify_add_watch(in, path, IN_DELETE_SELF) >= 0);
	assert_int_equal(close(fd), 0);
	while (!gone) {
		struct pollfd p = { .fd = in, .events = POLLIN };
		ssize_t n;

		assert_int_equal(poll(&p, 1, 60000), 1);
		n = read(in, ev, sizeof(ev));
		assert_true(n > 0);
		for (char *c = ev; c < ev + n;) {
			const struct inotify_event *e = (const void *)c;

			gone |= !!(e->mask & (IN_DELETE_SELF | IN_IGNORED));
			c += sizeof(*e) + e->len;
		}
	}
	close(in);
}

