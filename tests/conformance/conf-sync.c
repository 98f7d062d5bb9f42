/* SPDX-License-Identifier: MIT */
/*
 * sync_file (drivers/dma-buf/sync_file.c) on sync files exported from a
 * dma-buf, which every kernel with CONFIG_SYNC_FILE can make: MERGE, the
 * two-call FILE_INFO, SET_DEADLINE, the legacy numbers libsync falls back
 * to, poll. And sw_sync (drivers/dma-buf/sw_sync.c) timelines where the
 * kernel has them: the ioctl numbers are defined here, as the kernel's
 * selftests do, because sw_sync has no uapi header.
 */
#include "conf.h"

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/sync_file.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SYNC_IOC_SET_DEADLINE
struct sync_set_deadline {
	__u64 deadline_ns;
	__u64 pad;
};
#define SYNC_IOC_SET_DEADLINE _IOW(SYNC_IOC_MAGIC, 5, struct sync_set_deadline)
#endif

/* The pre-4.7 (Android) numbers that libsync tries when the new ones fail. */
struct legacy_merge {
	int32_t fd2;
	char name[32];
	int32_t fence;
};
struct legacy_info {
	uint32_t len;
	char name[32];
	int32_t status;
	uint8_t pt_info[64];
};
#define LEGACY_SYNC_IOC_WAIT _IOW(SYNC_IOC_MAGIC, 0, int32_t)
#define LEGACY_SYNC_IOC_MERGE _IOWR(SYNC_IOC_MAGIC, 1, struct legacy_merge)
#define LEGACY_SYNC_IOC_FENCE_INFO _IOWR(SYNC_IOC_MAGIC, 2, struct legacy_info)

/* sw_sync, as in the kernel's own test programs. */
struct sw_sync_create_fence_data {
	uint32_t value;
	char name[32];
	int32_t fence;
};
#define SW_SYNC_IOC_MAGIC 'W'
#define SW_SYNC_IOC_CREATE_FENCE _IOWR(SW_SYNC_IOC_MAGIC, 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC _IOW(SW_SYNC_IOC_MAGIC, 1, uint32_t)
struct sw_sync_get_deadline {
	uint64_t deadline_ns;
	uint32_t pad;
	int32_t fence_fd;
};
#define SW_SYNC_GET_DEADLINE _IOWR(SW_SYNC_IOC_MAGIC, 2, struct sw_sync_get_deadline)

static int merge(int a, int b, const char *name)
{
	struct sync_merge_data m = { .fd2 = b };

	snprintf(m.name, sizeof(m.name), "%s", name);
	if (ioctl(a, SYNC_IOC_MERGE, &m) < 0)
		return -errno;
	return m.fence;
}

/* FILE_INFO, the two-call form: count, then the array. */
static int info(int fd, struct sync_file_info *out, struct sync_fence_info *fi, unsigned int max)
{
	memset(out, 0, sizeof(*out));
	if (ioctl(fd, SYNC_IOC_FILE_INFO, out) < 0)
		return -errno;
	if (!fi || out->num_fences > max)
		return 0;
	out->sync_fence_info = (uint64_t)(uintptr_t)fi;
	if (ioctl(fd, SYNC_IOC_FILE_INFO, out) < 0)
		return -errno;
	return 0;
}

static void status_line(const char *id, int status)
{
	if (status < 0)
		conf_line(id, "-%s", conf_errname(-status));
	else
		conf_line(id, "%d", status);
}

static void syncfile_checks(int a, int b)
{
	struct sync_file_info si;
	struct sync_fence_info fi[4];
	char v[128];
	int r;

	r = info(a, &si, fi, 4);
	conf_neg("sync.info.twocall", r);
	if (r == 0) {
		conf_line("sync.info.num_fences", "%u", si.num_fences);
		status_line("sync.info.status", si.status);
		snprintf(v, sizeof(v), "%s", si.name);
		conf_normalise(v);
		conf_line("sync.info.name", "%s", v);
		conf_line("sync.info.fence_driver", "%s", fi[0].driver_name);
		conf_line("sync.info.fence_obj", "%s", fi[0].obj_name);
		status_line("sync.info.fence_status", fi[0].status);
		conf_line("sync.info.fence_flags", "%u", fi[0].flags);
		conf_line("sync.info.fence_timestamp", "%s", fi[0].timestamp_ns ? "nonzero" : "0");
	}
	memset(&si, 0, sizeof(si));
	si.flags = 1;
	conf_sys("sync.info.flags", ioctl(a, SYNC_IOC_FILE_INFO, &si));
	memset(&si, 0, sizeof(si));
	si.pad = 1;
	conf_sys("sync.info.pad", ioctl(a, SYNC_IOC_FILE_INFO, &si));
	conf_sys("sync.info.efault", ioctl(a, SYNC_IOC_FILE_INFO, (void *)8));
	memset(&si, 0, sizeof(si));
	si.num_fences = 1;
	si.sync_fence_info = 8;
	conf_sys("sync.info.array_efault", ioctl(a, SYNC_IOC_FILE_INFO, &si));
	memset(&si, 0, sizeof(si));
	si.num_fences = 4;
	si.sync_fence_info = (uint64_t)(uintptr_t)fi;
	r = ioctl(a, SYNC_IOC_FILE_INFO, &si);
	conf_sys("sync.info.array_larger", r);
	if (r == 0)
		conf_line("sync.info.array_larger_num", "%u", si.num_fences);

	r = merge(a, b, "conf-merged");
	conf_neg("sync.merge.basic", r);
	if (r >= 0) {
		conf_line("sync.merge.cloexec", "%d", conf_cloexec(r));
		if (info(r, &si, fi, 4) == 0) {
			conf_line("sync.merge.name", "%s", si.name);
			conf_line("sync.merge.num_fences", "%u", si.num_fences);
			status_line("sync.merge.status", si.status);
		}
		conf_poll("sync.merge.poll", r, POLLIN);
		close(r);
	}
	r = merge(a, a, "self");
	conf_neg("sync.merge.self", r);
	if (r >= 0) {
		if (info(r, &si, fi, 4) == 0)
			conf_line("sync.merge.self_num_fences", "%u", si.num_fences);
		close(r);
	}
	struct sync_merge_data m = { .fd2 = b };
	memset(m.name, 'x', sizeof(m.name)); /* not terminated */
	r = ioctl(a, SYNC_IOC_MERGE, &m);
	conf_sys("sync.merge.name_unterminated", r);
	if (r >= 0) {
		if (info(m.fence, &si, NULL, 0) == 0)
			conf_line("sync.merge.name_unterminated_len", "%zu", strnlen(si.name, sizeof(si.name)));
		close(m.fence);
	}
	m = (struct sync_merge_data){ .fd2 = b, .flags = 1 };
	conf_sys("sync.merge.flags", ioctl(a, SYNC_IOC_MERGE, &m));
	m = (struct sync_merge_data){ .fd2 = b, .pad = 1 };
	conf_sys("sync.merge.pad", ioctl(a, SYNC_IOC_MERGE, &m));
	m = (struct sync_merge_data){ .fd2 = -1 };
	conf_sys("sync.merge.fd2_minus1", ioctl(a, SYNC_IOC_MERGE, &m));
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) == 0) {
		m = (struct sync_merge_data){ .fd2 = pfd[0] };
		conf_sys("sync.merge.fd2_pipe", ioctl(a, SYNC_IOC_MERGE, &m));
		conf_sys("sync.ioctl.on_pipe", ioctl(pfd[0], SYNC_IOC_MERGE, &m));
		close(pfd[0]);
		close(pfd[1]);
	}
	conf_sys("sync.merge.efault", ioctl(a, SYNC_IOC_MERGE, (void *)8));

	struct sync_set_deadline dl = { .deadline_ns = 1 };
	conf_sys("sync.deadline.set", ioctl(a, SYNC_IOC_SET_DEADLINE, &dl));
	dl.pad = 1;
	conf_sys("sync.deadline.pad", ioctl(a, SYNC_IOC_SET_DEADLINE, &dl));

	int32_t t = 0;
	struct legacy_merge lm = { .fd2 = b };
	struct legacy_info li = { .len = sizeof(li) };
	conf_sys("sync.legacy.wait", ioctl(a, LEGACY_SYNC_IOC_WAIT, &t));
	conf_sys("sync.legacy.merge", ioctl(a, LEGACY_SYNC_IOC_MERGE, &lm));
	conf_sys("sync.legacy.fence_info", ioctl(a, LEGACY_SYNC_IOC_FENCE_INFO, &li));
	conf_sys("sync.ioctl.unknown_nr", ioctl(a, _IO(SYNC_IOC_MAGIC, 9)));
	conf_sys("sync.ioctl.merge_wrong_size", ioctl(a, _IOWR(SYNC_IOC_MAGIC, 3, uint32_t), &t));

	conf_poll("sync.poll.in", a, POLLIN);
	conf_poll("sync.poll.out", a, POLLOUT);
	conf_poll("sync.poll.none", a, 0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep >= 0) {
		struct epoll_event ev = { .events = EPOLLIN }, out;
		conf_sys("sync.epoll.add", epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev));
		int n = epoll_wait(ep, &out, 1, 0);
		conf_line("sync.epoll.wait", "%d", n);
		close(ep);
	}
	char c;
	conf_sys("sync.io.read", read(a, &c, 1));
	conf_sys("sync.io.write", write(a, &c, 1));
	conf_sys("sync.io.lseek", lseek(a, 0, SEEK_SET));
	void *p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, a, 0);
	conf_line("sync.io.mmap", "%s", p == MAP_FAILED ? conf_errname(errno) : "ok");
	if (p != MAP_FAILED)
		munmap(p, PAGE);
	conf_line("sync.file.link", "%s", conf_fdlink(a, v, sizeof(v)) ? "none" : v);
	conf_line("sync.file.fdinfo_keys", "%s", conf_fdinfo_keys(a, v, sizeof(v)) ? "none" : v);
	struct stat st;
	conf_line("sync.file.fstat_type", "%s", fstat(a, &st) ? conf_errname(errno) : (snprintf(v, sizeof(v), "0%o", st.st_mode & S_IFMT), v));
	/* A sync file is not a dma-buf. */
	struct dma_buf_sync s = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ };
	conf_sys("sync.file.dmabuf_sync", ioctl(a, DMA_BUF_IOCTL_SYNC, &s));
}

void conf_syncfile(void)
{
	int buf = conf_heap_alloc(PAGE, O_RDWR | O_CLOEXEC);
	int a = buf < 0 ? buf : conf_export_sync(buf, DMA_BUF_SYNC_READ);
	int b = buf < 0 ? buf : conf_export_sync(buf, DMA_BUF_SYNC_WRITE);

	if (a < 0 || b < 0) {
		conf_unavailable("sync.setup", conf_errname(a < 0 ? -a : -b));
	} else {
		syncfile_checks(a, b);
	}
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	if (buf >= 0)
		close(buf);
}

/* --------------------------------------------------------------- sw_sync */

static int sw_fence(int tl, uint32_t value, const char *name)
{
	struct sw_sync_create_fence_data d = { .value = value };

	snprintf(d.name, sizeof(d.name), "%s", name);
	if (ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &d) < 0)
		return -errno;
	return d.fence;
}

static int sw_inc(int tl, uint32_t n)
{
	return ioctl(tl, SW_SYNC_IOC_INC, &n) < 0 ? -errno : 0;
}

static void fence_status(const char *id, int fd)
{
	struct sync_file_info si;

	if (info(fd, &si, NULL, 0) < 0)
		conf_line(id, "%s", conf_errname(errno));
	else
		status_line(id, si.status);
}

static void swsync_checks(int tl)
{
	struct sync_file_info si;
	struct sync_fence_info fi[4];
	char v[128];

	int f1 = sw_fence(tl, 1, "f1");
	conf_neg("sw_sync.create", f1);
	if (f1 < 0)
		return;
	conf_line("sw_sync.create.cloexec", "%d", conf_cloexec(f1));
	fence_status("sw_sync.create.status", f1);
	conf_poll("sw_sync.create.poll", f1, POLLIN);
	if (info(f1, &si, fi, 4) == 0) {
		snprintf(v, sizeof(v), "%s", si.name);
		conf_normalise(v);
		conf_line("sw_sync.info.name", "%s", v);
		conf_line("sw_sync.info.driver", "%s", fi[0].driver_name);
		conf_line("sw_sync.info.timestamp_pending", "%s", fi[0].timestamp_ns ? "nonzero" : "0");
	}
	int f2 = sw_fence(tl, 2, "f2");
	int f3 = sw_fence(tl, 3, "f3");

	/* Deadlines: set through the sync file, read back through sw_sync. */
	struct sw_sync_get_deadline gd = { .fence_fd = f2 };
	conf_sys("sw_sync.deadline.none", ioctl(tl, SW_SYNC_GET_DEADLINE, &gd));
	struct sync_set_deadline sd = { .deadline_ns = 1000000 };
	conf_sys("sw_sync.deadline.set", ioctl(f2, SYNC_IOC_SET_DEADLINE, &sd));
	gd = (struct sw_sync_get_deadline){ .fence_fd = f2 };
	if (ioctl(tl, SW_SYNC_GET_DEADLINE, &gd) < 0)
		conf_line("sw_sync.deadline.get", "%s", conf_errname(errno));
	else
		conf_line("sw_sync.deadline.get", "%llu", (unsigned long long)gd.deadline_ns);
	gd = (struct sw_sync_get_deadline){ .fence_fd = f2, .pad = 1 };
	conf_sys("sw_sync.deadline.pad", ioctl(tl, SW_SYNC_GET_DEADLINE, &gd));
	gd = (struct sw_sync_get_deadline){ .fence_fd = f2, .deadline_ns = 5 };
	conf_sys("sw_sync.deadline.in_nonzero", ioctl(tl, SW_SYNC_GET_DEADLINE, &gd));
	gd = (struct sw_sync_get_deadline){ .fence_fd = tl };
	conf_sys("sw_sync.deadline.not_sync_file", ioctl(tl, SW_SYNC_GET_DEADLINE, &gd));

	/* Merge on one timeline keeps the later point: one fence. */
	int m12 = merge(f1, f2, "m12");
	if (m12 >= 0 && info(m12, &si, NULL, 0) == 0)
		conf_line("sw_sync.merge.same_timeline_fences", "%u", si.num_fences);
	else
		conf_neg("sw_sync.merge.same_timeline_fences", m12);

	int tl2 = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	int g1 = tl2 < 0 ? -errno : sw_fence(tl2, 1, "g1");
	int mx = g1 < 0 ? g1 : merge(f1, g1, "mx");
	if (mx >= 0 && info(mx, &si, NULL, 0) == 0) {
		conf_line("sw_sync.merge.two_timelines_fences", "%u", si.num_fences);
		/* The array is too small for two fences. */
		struct sync_file_info small = { .num_fences = 1,
						.sync_fence_info = (uint64_t)(uintptr_t)fi };
		conf_sys("sw_sync.info.array_too_small", ioctl(mx, SYNC_IOC_FILE_INFO, &small));
	} else {
		conf_neg("sw_sync.merge.two_timelines_fences", mx);
	}

	conf_neg("sw_sync.inc.1", sw_inc(tl, 1));
	fence_status("sw_sync.inc.f1_signalled", f1);
	conf_poll("sw_sync.inc.f1_poll", f1, POLLIN);
	fence_status("sw_sync.inc.f2_pending", f2);
	if (info(f1, &si, fi, 4) == 0)
		conf_line("sw_sync.info.timestamp_signalled", "%s", fi[0].timestamp_ns ? "nonzero" : "0");
	if (m12 >= 0)
		fence_status("sw_sync.merge.status_half", m12);
	if (mx >= 0)
		fence_status("sw_sync.merge.two_timelines_half", mx);
	/* Merged fences are listed by fence context, not argument order:
	 * g1's timeline was made after f2's. Queried once f2 has signalled. */
	int mo = g1 < 0 ? g1 : merge(g1, f2, "order");
	/* A point already passed is created signalled. */
	int f0 = sw_fence(tl, 1, "past");
	if (f0 >= 0) {
		fence_status("sw_sync.create.past_point", f0);
		close(f0);
	}

	/* A pending fence imported into a dma-buf makes it not ready. */
	int buf = conf_heap_alloc(PAGE, O_RDWR | O_CLOEXEC);
	if (buf >= 0) {
		struct dma_buf_import_sync_file im = { .flags = DMA_BUF_SYNC_WRITE, .fd = f3 };
		conf_sys("sw_sync.dmabuf.import_pending", ioctl(buf, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &im));
		conf_poll("sw_sync.dmabuf.poll_pending", buf, POLLIN | POLLOUT);
		int ex = conf_export_sync(buf, DMA_BUF_SYNC_READ);
		if (ex >= 0) {
			fence_status("sw_sync.dmabuf.export_pending", ex);
			close(ex);
		}
		conf_neg("sw_sync.inc.2", sw_inc(tl, 2));
		conf_poll("sw_sync.dmabuf.poll_signalled", buf, POLLIN | POLLOUT);
		struct dma_buf_sync s = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
		conf_sys("sw_sync.dmabuf.sync_after_signal", ioctl(buf, DMA_BUF_IOCTL_SYNC, &s));
		close(buf);
	} else {
		sw_inc(tl, 2);
	}
	if (m12 >= 0) {
		fence_status("sw_sync.merge.status_all", m12);
		close(m12);
	}
	if (mo >= 0 && info(mo, &si, fi, 4) == 0 && si.num_fences == 2)
		conf_line("sw_sync.merge.order_by_context", "%d,%d", fi[0].status, fi[1].status);
	else if (mo >= 0)
		conf_line("sw_sync.merge.order_by_context", "fences:%u", si.num_fences);
	else
		conf_neg("sw_sync.merge.order_by_context", mo);
	if (mo >= 0)
		close(mo);

	/* Closing the last reference to a timeline signals its pending
	 * fences with -ENOENT. */
	if (mx >= 0) {
		fence_status("sw_sync.merge.two_timelines_pending", mx);
		close(tl2);
		tl2 = -1;
		fence_status("sw_sync.close.pending_status", g1);
		conf_poll("sw_sync.close.pending_poll", g1, POLLIN);
		if (info(g1, &si, fi, 4) == 0)
			status_line("sw_sync.close.fence_status", fi[0].status);
		fence_status("sw_sync.close.merged_status", mx);
		close(mx);
	}
	if (g1 >= 0)
		close(g1);
	if (tl2 >= 0)
		close(tl2);

	conf_neg("sw_sync.inc.0", sw_inc(tl, 0));
	conf_neg("sw_sync.inc.huge", sw_inc(tl, 0xffffffffu));
	conf_sys("sw_sync.inc.efault", ioctl(tl, SW_SYNC_IOC_INC, (void *)8));
	conf_sys("sw_sync.create.efault", ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, (void *)8));
	conf_sys("sw_sync.ioctl.unknown", ioctl(tl, _IO(SW_SYNC_IOC_MAGIC, 9)));
	char c;
	conf_sys("sw_sync.io.read", read(tl, &c, 1));
	close(f1);
	if (f2 >= 0)
		close(f2);
	if (f3 >= 0)
		close(f3);
}

/* Waits up to 5 s for a sync file (so a missing signal is a result, not a
 * hang of the whole run), then its status. */
static int settled_status(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct sync_file_info si;

	if (poll(&p, 1, 5000) != 1)
		return 99;
	return info(fd, &si, NULL, 0) < 0 ? -1000 : si.status;
}

/* A timeline fd inherited over fork is the same file: the child's INC and
 * points act on the parent's timeline, and the pending points signal
 * -ENOENT only when the last fd in every process is gone. */
static void swsync_fork_checks(void)
{
	int tl, p1, p2, pipefd[2], st;
	pid_t pid;
	char c;

	tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	p1 = sw_fence(tl, 1, "p1");
	p2 = sw_fence(tl, 3, "p2");
	if (tl < 0 || p1 < 0 || p2 < 0 || pipe(pipefd) < 0)
		return;
	pid = fork();
	if (pid == 0) {
		int c2;

		if (sw_inc(tl, 1))
			_exit(10);
		/* The parent's value: a point at 1 is signalled already. */
		c2 = sw_fence(tl, 1, "c");
		if (c2 < 0)
			_exit(11);
		_exit(settled_status(c2) == 1 ? 0 : 12);
	}
	if (pid < 0)
		return;
	waitpid(pid, &st, 0);
	conf_line("sw_sync.fork.child_inc", "%d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	status_line("sw_sync.fork.child_inc_signals_parent", settled_status(p1));
	pid = fork();
	if (pid == 0) {
		/* A point of the child, signalled by the parent's INC. */
		int c3 = sw_fence(tl, 2, "c");

		if (c3 < 0 || write(pipefd[1], "r", 1) != 1)
			_exit(20);
		_exit(settled_status(c3) == 1 ? 0 : 21);
	}
	if (pid < 0)
		return;
	if (read(pipefd[0], &c, 1) == 1)
		sw_inc(tl, 1);
	waitpid(pid, &st, 0);
	conf_line("sw_sync.fork.parent_inc_signals_child", "%d",
		  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	/* The parent closes its fd; the child still holds the timeline. */
	pid = fork();
	if (pid == 0) {
		if (read(pipefd[0], &c, 1) != 1)
			_exit(30);
		_exit(0);
	}
	if (pid < 0)
		return;
	close(tl);
	fence_status("sw_sync.fork.parent_closed_pending", p2);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	status_line("sw_sync.fork.sigkill_last_holder", settled_status(p2));
	close(p1);
	close(p2);
	close(pipefd[0]);
	close(pipefd[1]);
}

void conf_swsync(void)
{
	struct stat st;
	int tl;

	conf_sys("sw_sync.dev_path", stat("/dev/sw_sync", &st));
	tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	if (tl < 0 && errno == ENOENT) {
		/* A kernel without CONFIG_SW_SYNC: the expected results are in
		 * tests/conformance/expected-source.txt. */
		conf_unavailable("sw_sync.open", "ENOENT");
		return;
	}
	conf_sys("sw_sync.open", tl);
	if (tl < 0)
		return;
	swsync_checks(tl);
	close(tl);
	swsync_fork_checks();
}
