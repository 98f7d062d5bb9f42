/* SPDX-License-Identifier: MIT */
/*
 * The seccomp supervisor's re-probe (docs/seccomp.md): an epoll item of a
 * dma-buf goes when the buffer's file goes, which the watcher learns from
 * the inode's close event and a probe of the shared lock the buffer's open
 * files hold. The kernel sends the close event from __fput() before it
 * drops the file's locks, so a probe may find the lock still held after
 * the last close; no event follows when the lock goes, and only the
 * re-probe (with its back-off) can see it.
 *
 * This suite makes that window as long as it likes: it holds a shared lock
 * on a file of its own of the buffer's inode (as the late closer would),
 * the program closes its last fd of the buffer, the suite waits until the
 * watcher has read the close event and the supervisor is idle (its probe
 * failed), then takes its lock off without closing anything. The item must
 * go. The program runs under `dmabuf-run --seccomp` (the same binary, with
 * the argument "program").
 */
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "uapi-common.h"

#define PAGE 4096

/* ---- the program, under the supervisor --------------------------------------- */

static int epoll_items(int ep)
{
	char path[64], line[256];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += !strncmp(line, "tfd:", 4);
	fclose(f);
	return n;
}

static int program(int out, int in)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 5 };
	int heap, buf, ep;
	char c;

	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	if (heap < 0)
		return 10;
	buf = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (buf < 0 || ep < 0)
		return 11;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, buf, &ev) || epoll_items(ep) != 1)
		return 12;
	dprintf(out, "ready %d %d\n", (int)getpid(), buf);
	if (read(in, &c, 1) != 1)
		return 13;
	close(buf);
	dprintf(out, "closed\n");
	if (read(in, &c, 1) != 1)
		return 14;
	/* The suite's hang guard bounds this wait; the suite gone (its end
	 * of the pipe hung up), the program goes too. */
	while (epoll_items(ep) != 0) {
		struct pollfd p = { .fd = in, .events = POLLIN };

		if (poll(&p, 1, 1) > 0)
			return 15;
	}
	dprintf(out, "dropped\n");
	close(ep);
	close(heap);
	return 0;
}

/* ---- the suite ------------------------------------------------------------------ */

/* A line from the program (the pipe carries nothing else). */
static void read_line(int fd, char *line, size_t size)
{
	size_t n = 0;

	while (n + 1 < size && read(fd, line + n, 1) == 1 && line[n] != '\n')
		n++;
	line[n] = '\0';
}

/* The supervisor's fd of the watcher's inotify: the one watching ino for
 * close events only (the core's own watch of the buffer is one-shot). */
static int watcher_inotify(pid_t sup, ino_t ino)
{
	char path[320], link[64], line[256], want[64];
	struct dirent *e;
	int found = -1;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)sup);
	d = opendir(path);
	assert_non_null(d);
	snprintf(want, sizeof(want), "ino:%lx ", (unsigned long)ino);
	while (found < 0 && (e = readdir(d))) {
		ssize_t n;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)sup, e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strcmp(link, "anon_inode:inotify"))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", (int)sup, e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (strstr(line, want) && strstr(line, "mask:18 ")) {
				found = atoi(e->d_name);
				break;
			}
		fclose(f);
	}
	closedir(d);
	return found;
}

/* Every thread of the supervisor blocked in a call that waits: the pass
 * that read the close event has ended (its probes never block). */
static bool supervisor_idle(pid_t sup)
{
	static const long waits[] = { SYS_read, SYS_poll, SYS_ppoll, SYS_futex, SYS_ioctl,
				      SYS_epoll_wait, SYS_epoll_pwait, SYS_wait4, SYS_waitid,
				      SYS_recvmsg, SYS_nanosleep, SYS_clock_nanosleep,
				      SYS_select, SYS_pselect6, SYS_rt_sigtimedwait };
	char path[320], text[64];
	struct dirent *e;
	bool idle = true;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)sup);
	d = opendir(path);
	if (!d)
		return false;
	while (idle && (e = readdir(d))) {
		bool waiting = false;
		long nr;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/syscall", (int)sup, e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue; /* a thread that ended */
		if (!fgets(text, sizeof(text), f) || sscanf(text, "%ld", &nr) != 1)
			nr = -1; /* "running" */
		fclose(f);
		for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++)
			waiting |= nr == waits[i];
		idle = waiting;
	}
	closedir(d);
	return idle;
}

/* Context switches of all the supervisor's threads so far. */
static long switches(pid_t sup)
{
	char path[320], line[128];
	struct dirent *e;
	long total = 0, n;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)sup);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d))) {
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)sup, e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1 ||
			    sscanf(line, "nonvoluntary_ctxt_switches: %ld", &n) == 1)
				total += n;
		fclose(f);
	}
	closedir(d);
	return total;
}

/* Bytes of events queued on the supervisor's fd (FIONREAD on a copy), or
 * -1 where pidfd_getfd() cannot run (valgrind knows no pidfd calls). */
static int queued_bytes(int pfd, int fd)
{
	int copy, n = -1;

	if (pfd < 0)
		return -1;
	copy = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
	assert_true(copy >= 0);
	assert_int_equal(ioctl(copy, FIONREAD, &n), 0);
	close(copy);
	return n;
}

/* The watcher has read the close event and ended its pass: the event is
 * off its queue (where that can be seen; otherwise a thread of the
 * supervisor has run since the close) and every thread waits again. */
static bool event_handled(pid_t sup, int pfd, int ifd, long before)
{
	int q = queued_bytes(pfd, ifd);

	if (q > 0 || (q < 0 && switches(sup) == before))
		return false;
	return supervisor_idle(sup);
}

static void item_goes_when_the_lock_goes_after_the_close_event(void **state)
{
	const char *run = DMABUF_RUN;
	char line[128], self[4096], a[16], b[16];
	int to_suite[2], to_prog[2], prog_fd, pfd, ifd, h, status;
	pid_t sup, prog;
	struct stat st;
	long before;
	ssize_t n;

	(void)state;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	assert_int_equal(pipe(to_suite), 0);
	assert_int_equal(pipe(to_prog), 0);
	sup = fork();
	assert_true(sup >= 0);
	if (sup == 0) {
		close(to_suite[0]);
		close(to_prog[1]);
		snprintf(a, sizeof(a), "%d", to_suite[1]);
		snprintf(b, sizeof(b), "%d", to_prog[0]);
		execl(run, run, "--seccomp", self, "program", a, b, (char *)NULL);
		_exit(127);
	}
	close(to_suite[1]);
	close(to_prog[0]);
	read_line(to_suite[0], line, sizeof(line));
	if (sscanf(line, "ready %d %d", &prog, &prog_fd) != 2)
		fail_msg("the program did not start: \"%s\"", line);

	/* The late closer: a file of the buffer's inode holding the shared
	 * lock, as the program's file does until __fput() drops it. */
	snprintf(line, sizeof(line), "/proc/%d/fd/%d", (int)prog, prog_fd);
	h = open(line, O_RDONLY | O_CLOEXEC);
	assert_true(h >= 0);
	assert_int_equal(flock(h, LOCK_SH | LOCK_NB), 0);
	assert_int_equal(fstat(h, &st), 0);
	ifd = watcher_inotify(sup, st.st_ino);
	if (ifd < 0)
		fail_msg("the supervisor has no inotify watch of the buffer's inode");
	pfd = (int)syscall(SYS_pidfd_open, sup, 0);
	assert_true(pfd >= 0 || errno == ENOSYS);
	harness_guard_start("the supervisor idle after the program's epoll_ctl", 60);
	while (!supervisor_idle(sup))
		usleep(1000);
	harness_guard_done();
	before = switches(sup);

	/* The last close of the program's file: the close event comes, the
	 * probe finds the lock held. */
	assert_int_equal(write(to_prog[1], "c", 1), 1);
	read_line(to_suite[0], line, sizeof(line));
	assert_string_equal(line, "closed");
	harness_guard_start("the watcher reading the buffer's close event", 60);
	while (!event_handled(sup, pfd, ifd, before))
		usleep(1000);
	harness_guard_done();

	/* The lock goes with no event: only a re-probe sees it. */
	assert_int_equal(flock(h, LOCK_UN), 0);
	assert_int_equal(write(to_prog[1], "u", 1), 1);
	harness_guard_start("the epoll item going after the buffer's lock went (the re-probe)", 60);
	read_line(to_suite[0], line, sizeof(line));
	harness_guard_done();
	assert_string_equal(line, "dropped");

	close(h);
	if (pfd >= 0)
		close(pfd);
	close(to_prog[1]);
	close(to_suite[0]);
	assert_int_equal(waitpid(sup, &status, 0), sup);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		harness_test(item_goes_when_the_lock_goes_after_the_close_event),
	};

	if (argc == 4 && !strcmp(argv[1], "program"))
		return program(atoi(argv[2]), atoi(argv[3]));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
