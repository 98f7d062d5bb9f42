/* SPDX-License-Identifier: MIT */
/*
 * sw_sync timelines, sync files and a buffer's implicit fences, through the
 * kernel's uapi only.
 */
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "uapi-common.h"

static void timeline_signals_in_order(void **state)
{
	int tl = uapi_timeline_open(), f1, f2;

	f1 = uapi_fence_create(tl, 1);
	f2 = uapi_fence_create(tl, 3);
	assert_true(f1 >= 0 && f2 >= 0);
	assert_int_equal(fcntl(f1, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(uapi_fence_status(f1), 0);
	assert_false(uapi_ready(f1));
	assert_int_equal(uapi_tl_inc(tl, 1), 0);
	assert_int_equal(uapi_fence_status(f1), 1);
	assert_true(uapi_ready(f1));
	assert_false(uapi_ready(f2));
	assert_int_equal(uapi_tl_inc(tl, 2), 0);
	assert_true(uapi_ready(f2));
	close(f1);
	close(f2);
	close(tl);
	/* /dev/sw_sync is the same thing. */
	tl = open("/dev/sw_sync", O_RDWR | O_CLOEXEC);
	assert_true(tl >= 0);
	f1 = uapi_fence_create(tl, 1);
	assert_true(f1 >= 0);
	close(f1);
	close(tl);
}

static void timeline_per_open(void **state)
{
	int a = uapi_timeline_open(), b = uapi_timeline_open();
	int fa = uapi_fence_create(a, 1), fb = uapi_fence_create(b, 1);

	assert_int_equal(uapi_tl_inc(a, 1), 0);
	assert_true(uapi_ready(fa));
	assert_false(uapi_ready(fb));
	close(fa);
	close(fb);
	close(a);
	close(b);
}

static void last_close_signals_enoent(void **state)
{
	int tl = uapi_timeline_open(), f = uapi_fence_create(tl, 5), dupd = dup(tl);

	close(tl);
	/* A dup still holds the timeline. */
	assert_int_equal(uapi_fence_status(f), 0);
	close(dupd);
	assert_true(uapi_ready(f));
	assert_int_equal(uapi_fence_status(f), -ENOENT);
	close(f);
}

static void file_info_two_calls(void **state)
{
	struct sync_fence_info fi[3];
	struct sync_file_info info = { 0 };
	int t1 = uapi_timeline_open(), t2 = uapi_timeline_open();
	int a = uapi_fence_create(t1, 1), b = uapi_fence_create(t2, 1);
	struct sync_merge_data m = { .name = "mymerge", .fd2 = b };

	assert_int_equal(ioctl(a, SYNC_IOC_MERGE, &m), 0);
	assert_true(m.fence >= 0);
	/* First call: how many fences. */
	assert_int_equal(ioctl(m.fence, SYNC_IOC_FILE_INFO, &info), 0);
	assert_int_equal(info.num_fences, 2);
	assert_int_equal(info.status, 0);
	assert_string_equal(info.name, "mymerge");
	/* Too small an array. */
	info.num_fences = 1;
	info.sync_fence_info = (uintptr_t)fi;
	assert_int_equal(ioctl(m.fence, SYNC_IOC_FILE_INFO, &info), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(uapi_tl_inc(t1, 1), 0);
	info.num_fences = 3;
	assert_int_equal(ioctl(m.fence, SYNC_IOC_FILE_INFO, &info), 0);
	assert_int_equal(info.num_fences, 2);
	assert_int_equal(fi[0].status + fi[1].status, 1);
	assert_true(fi[0].status ? fi[0].timestamp_ns > 0 : fi[1].timestamp_ns > 0);
	assert_string_equal(fi[0].driver_name, fi[1].driver_name);
	assert_int_equal(info.status, 0);
	/* Bad pointer for the array; flags and pad must be 0. */
	info.sync_fence_info = (uintptr_t)uapi_bad_ptr();
	assert_int_equal(ioctl(m.fence, SYNC_IOC_FILE_INFO, &info), -1);
	assert_int_equal(errno, EFAULT);
	munmap((void *)(uintptr_t)info.sync_fence_info, 4096);
	info.flags = 1;
	assert_int_equal(ioctl(m.fence, SYNC_IOC_FILE_INFO, &info), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(uapi_tl_inc(t2, 1), 0);
	assert_int_equal(uapi_fence_status(m.fence), 1);
	close(m.fence);
	close(a);
	close(b);
	close(t1);
	close(t2);
}

static void merge_errors(void **state)
{
	int tl = uapi_timeline_open(), a = uapi_fence_create(tl, 1), before;
	struct sync_merge_data m = { .name = "x", .fd2 = 0x7fff };
	void *ro;

	before = harness_count_fds();
	assert_int_equal(ioctl(a, SYNC_IOC_MERGE, &m), -1);
	assert_int_equal(errno, ENOENT);
	m.fd2 = tl; /* not a sync file */
	assert_int_equal(ioctl(a, SYNC_IOC_MERGE, &m), -1);
	assert_int_equal(errno, ENOENT);
	m.fd2 = a;
	m.flags = 1;
	assert_int_equal(ioctl(a, SYNC_IOC_MERGE, &m), -1);
	assert_int_equal(errno, EINVAL);
	m.flags = 0;
	ro = uapi_ro_page(&m, sizeof(m));
	assert_int_equal(ioctl(a, SYNC_IOC_MERGE, ro), -1);
	assert_int_equal(errno, EFAULT);
	munmap(ro, 4096);
	assert_int_equal(harness_count_fds(), before);
	/* Legacy numbers: 6.12 does not know them (libsync falls back). */
	assert_int_equal(ioctl(a, _IOWR('>', 2, struct sync_file_info), &m), -1);
	assert_int_equal(errno, ENOTTY);
	/* Merging a fence with itself works. */
	assert_int_equal(ioctl(a, SYNC_IOC_MERGE, &m), 0);
	close(m.fence);
	close(a);
	close(tl);
}

static void sw_sync_errors(void **state)
{
	int tl = uapi_timeline_open(), before = harness_count_fds();
	void *bad = uapi_bad_ptr();
	struct sw_sync_create_fence_data d = { .value = 1 };
	void *ro = uapi_ro_page(&d, sizeof(d));

	assert_int_equal(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, bad), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, ro), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(tl, SW_SYNC_IOC_INC, bad), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(tl, _IOW('W', 7, __u32), &d), -1);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(harness_count_fds(), before);
	munmap(bad, 4096);
	munmap(ro, 4096);
	close(tl);
}

static void buffer_fences(void **state)
{
	int heap = uapi_open_heap("system");
	int buf = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	int tl = uapi_timeline_open(), f = uapi_fence_create(tl, 1);
	struct dma_buf_import_sync_file imp = { .flags = DMA_BUF_SYNC_WRITE, .fd = f };
	struct dma_buf_export_sync_file exp = { .flags = DMA_BUF_SYNC_READ };
	struct pollfd p = { .fd = buf, .events = POLLIN | POLLOUT };

	/* No fences: ready both ways, and the exported fence is signalled. */
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(p.revents, POLLIN | POLLOUT);
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &exp), 0);
	assert_int_equal(uapi_fence_status(exp.fd), 1);
	close(exp.fd);
	/* A pending writer: neither readable nor writable. */
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &imp), 0);
	assert_int_equal(poll(&p, 1, 0), 0);
	{
		struct timeval tv = { 0, 0 };
		fd_set r, w;

		FD_ZERO(&r);
		FD_ZERO(&w);
		FD_SET(buf, &r);
		FD_SET(buf, &w);
		assert_int_equal(select(buf + 1, &r, &w, NULL, &tv), 0);
		assert_false(FD_ISSET(buf, &r));
	}
	exp.flags = DMA_BUF_SYNC_READ;
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &exp), 0);
	assert_int_equal(uapi_fence_status(exp.fd), 0);
	assert_int_equal(uapi_tl_inc(tl, 1), 0);
	assert_int_equal(poll(&p, 1, -1), 1);
	assert_int_equal(p.revents, POLLIN | POLLOUT);
	{
		fd_set r;

		FD_ZERO(&r);
		FD_SET(buf, &r);
		assert_int_equal(select(buf + 1, &r, NULL, NULL, NULL), 1);
		assert_true(FD_ISSET(buf, &r));
	}
	assert_int_equal(uapi_fence_status(exp.fd), 1);
	close(exp.fd);
	/* Errors: flags, not a sync file, bad pointer. */
	exp.flags = 0;
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &exp), -1);
	assert_int_equal(errno, EINVAL);
	exp.flags = DMA_BUF_SYNC_RW | 8;
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &exp), -1);
	assert_int_equal(errno, EINVAL);
	imp.fd = heap;
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &imp), -1);
	assert_int_equal(errno, EINVAL);
	imp.fd = -1;
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &imp), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, NULL), -1);
	assert_int_equal(errno, EFAULT);
	close(f);
	close(tl);
	uapi_close_last_and_wait(buf);
	close(heap);
}

static void poll_waits_for_signal(void **state)
{
	int tl = uapi_timeline_open(), f = uapi_fence_create(tl, 1);
	struct pollfd p = { .fd = f, .events = POLLIN };
	fd_set set;
	struct timeval tv = { 0, 0 };
	pid_t pid;

	FD_ZERO(&set);
	FD_SET(f, &set);
	assert_int_equal(select(f + 1, &set, NULL, NULL, &tv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The inherited fd is the same timeline: the child's INC
		 * signals the parent's point (test-uapi-swfork.c has more). */
		uint32_t one = 1;

		_exit(ioctl(tl, SW_SYNC_IOC_INC, &one) == 0 ? 0 : 1);
	}
	assert_int_equal(harness_wait(pid), 0);
	assert_int_equal(poll(&p, 1, -1), 1);
	FD_SET(f, &set);
	assert_int_equal(select(f + 1, &set, NULL, NULL, NULL), 1);
	close(f);
	close(tl);
}

/* sync_file_poll(): EPOLLIN once signalled, nothing before; never POLLOUT
 * or POLLHUP (the emulation's socket has both). */
static void sync_file_poll_only_in(void **state)
{
	int tl = uapi_timeline_open(), f = uapi_fence_create(tl, 1);
	struct pollfd p = { .fd = f, .events = POLLIN | POLLOUT };
	fd_set r, w;

	assert_true(f >= 0);
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(p.revents, 0);
	FD_ZERO(&w);
	FD_SET(f, &w);
	struct timeval tv = { 0 };
	assert_int_equal(select(f + 1, NULL, &w, NULL, &tv), 0);
	assert_int_equal(uapi_tl_inc(tl, 1), 0);
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(p.revents, POLLIN);
	p = (struct pollfd){ .fd = f, .events = POLLOUT };
	assert_int_equal(poll(&p, 1, 0), 0);
	p = (struct pollfd){ .fd = f, .events = 0 };
	assert_int_equal(poll(&p, 1, 0), 0);
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(f, &r);
	FD_SET(f, &w);
	assert_int_equal(select(f + 1, &r, &w, NULL, &tv), 1);
	assert_true(FD_ISSET(f, &r));
	assert_false(FD_ISSET(f, &w));
	close(f);
	close(tl);
}

/* sync_file_fops has no read or write; the file is O_RDONLY. */
static void sync_file_read_write(void **state)
{
	int tl = uapi_timeline_open(), f = uapi_fence_create(tl, 1);
	char c = 0;

	assert_true(f >= 0);
	/* No SIGPIPE either: the default action would end the test. */
	assert_int_equal(write(f, &c, 1), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(read(f, &c, 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(uapi_tl_inc(tl, 1), 0);
	assert_int_equal(write(f, &c, 1), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(read(f, &c, 1), -1);
	assert_int_equal(errno, EINVAL);
	close(f);
	close(tl);
}

struct test_get_deadline {
	uint64_t deadline_ns;
	uint32_t pad;
	int32_t fence_fd;
};
#define TEST_SW_SYNC_GET_DEADLINE _IOWR('W', 2, struct test_get_deadline)
struct test_set_deadline {
	uint64_t deadline_ns;
	uint64_t pad;
};
#define TEST_SYNC_IOC_SET_DEADLINE _IOW('>', 5, struct test_set_deadline)

static int get_deadline(int tl, int f, uint64_t *ns)
{
	struct test_get_deadline g = { .fence_fd = f };

	if (ioctl(tl, TEST_SW_SYNC_GET_DEADLINE, &g) < 0)
		return -errno;
	*ns = g.deadline_ns;
	return 0;
}

/* sw_sync_set_deadline() keeps the earliest deadline of a point; a merge
 * passes it on to each fence; GET wants one sw_sync point. */
static void sw_sync_deadlines(void **state)
{
	int t1 = uapi_timeline_open(), t2 = uapi_timeline_open();
	int a = uapi_fence_create(t1, 1), b = uapi_fence_create(t2, 1);
	struct test_set_deadline sd = { .deadline_ns = 2000 };
	struct sync_merge_data m = { .name = "m", .fd2 = b };
	uint64_t ns = 0;

	assert_true(a >= 0 && b >= 0);
	assert_int_equal(get_deadline(t1, a, &ns), -ENOENT);
	assert_int_equal(ioctl(a, TEST_SYNC_IOC_SET_DEADLINE, &sd), 0);
	assert_int_equal(get_deadline(t1, a, &ns), 0);
	assert_int_equal(ns, 2000);
	sd.deadline_ns = 5000;
	assert_int_equal(ioctl(a, TEST_SYNC_IOC_SET_DEADLINE, &sd), 0);
	assert_int_equal(get_deadline(t1, a, &ns), 0);
	assert_int_equal(ns, 2000);
	assert_int_equal(ioctl(a, SYNC_IOC_MERGE, &m), 0);
	sd.deadline_ns = 700;
	assert_int_equal(ioctl(m.fence, TEST_SYNC_IOC_SET_DEADLINE, &sd), 0);
	assert_int_equal(get_deadline(t1, a, &ns), 0);
	assert_int_equal(ns, 700);
	assert_int_equal(get_deadline(t2, b, &ns), 0);
	assert_int_equal(ns, 700);
	/* A merge of two points is a fence array, not a point. */
	assert_int_equal(get_deadline(t1, m.fence, &ns), -EINVAL);
	assert_int_equal(get_deadline(t1, t2, &ns), -EINVAL);
	close(m.fence);
	close(a);
	close(b);
	close(t1);
	close(t2);
}

/* sync_file_get_name()'s default: "<driver>-<timeline><context>-<seqno>",
 * whole within the 32 bytes. */
static void default_name_has_seqno(void **state)
{
	int tl = uapi_timeline_open(), f = uapi_fence_create(tl, 7);
	struct sync_file_info info = { 0 };
	size_t len;

	assert_true(f >= 0);
	assert_int_equal(ioctl(f, SYNC_IOC_FILE_INFO, &info), 0);
	len = strlen(info.name);
	assert_true(len > 2 && len < sizeof(info.name) - 1);
	assert_string_equal(info.name + len - 2, "-7");
	assert_int_equal(strncmp(info.name, "sw_sync-", 8), 0);
	close(f);
	close(tl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(timeline_signals_in_order),
		harness_test(timeline_per_open),
		harness_test(last_close_signals_enoent),
		harness_test(file_info_two_calls),
		harness_test(merge_errors),
		harness_test(sw_sync_errors),
		harness_test(buffer_fences),
		harness_test(poll_waits_for_signal),
		harness_test(sync_file_poll_only_in),
		harness_test(sync_file_read_write),
		harness_test(sw_sync_deadlines),
		harness_test(default_name_has_seqno),
	};

	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
