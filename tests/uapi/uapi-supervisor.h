/* SPDX-License-Identifier: MIT */
/*
 * For the suites that run a program of their own under `dmabuf-run
 * --seccomp` and watch the supervisor from outside (/proc): its start,
 * what its threads wait in, its inotify queues, and for the re-probe
 * suites a late closer of the program's file. Waits on these are loops
 * on the state under a hang guard, never a time.
 */
#pragma once

#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include "uapi-common.h"

/* A line from the program (the pipe carries nothing else); "" at EOF. */
static inline void sup_read_line(int fd, char *line, size_t size)
{
	size_t n = 0;

	while (n + 1 < size && read(fd, line + n, 1) == 1 && line[n] != '\n')
		n++;
	line[n] = '\0';
}

/* sup_read_line() under a hang guard naming what the line says. */
static inline void sup_wait_line(int fd, char *line, size_t size, const char *what)
{
	harness_guard_start(what, 60);
	sup_read_line(fd, line, size);
	harness_guard_done();
}

/*
 * Starts this binary under `dmabuf-run --seccomp` as "program OUT IN
 * [EXTRA]": OUT a pipe to the suite (*out, its read end), IN one from it
 * (*in, its write end), EXTRA an fd of the suite's given to the program
 * as is (-1: none; passed by number). Returns the supervisor's pid.
 */
static inline pid_t sup_start(const char *run, int extra, int *out, int *in)
{
	int to_suite[2], to_prog[2];
	char self[4096], a[16], b[16], c[16];
	ssize_t n;
	pid_t sup;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	assert_int_equal(pipe2(to_suite, O_CLOEXEC), 0);
	assert_int_equal(pipe2(to_prog, O_CLOEXEC), 0);
	sup = fork();
	assert_true(sup >= 0);
	if (sup == 0) {
		/* the program's ends, inherited over the exec */
		int w = dup(to_suite[1]), r = dup(to_prog[0]), x = extra >= 0 ? dup(extra) : -1;

		snprintf(a, sizeof(a), "%d", w);
		snprintf(b, sizeof(b), "%d", r);
		snprintf(c, sizeof(c), "%d", x);
		execl(run, run, "--seccomp", self, "program", a, b, c, (char *)NULL);
		_exit(127);
	}
	close(to_suite[1]);
	close(to_prog[0]);
	*out = to_suite[0];
	*in = to_prog[1];
	return sup;
}

/* Waits for the supervisor's exit: its status (the program's). */
static inline int sup_end(pid_t sup, int out, int in)
{
	close(in);
	close(out);
	return harness_wait(sup);
}

/* The supervisor's fd of an inotify watching ino with exactly this mask
 * (as /proc/PID/fdinfo shows it, in hex), or -1. */
static inline int sup_inotify(pid_t sup, ino_t ino, unsigned int mask)
{
	char path[320], link[64], line[256], want_ino[64], want_mask[32];
	struct dirent *e;
	int found = -1;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)sup);
	d = opendir(path);
	assert_non_null(d);
	snprintf(want_ino, sizeof(want_ino), "ino:%lx ", (unsigned long)ino);
	snprintf(want_mask, sizeof(want_mask), "mask:%x ", mask);
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
			if (strstr(line, want_ino) && strstr(line, want_mask)) {
				found = atoi(e->d_name);
				break;
			}
		fclose(f);
	}
	closedir(d);
	return found;
}

/* What one thread of the supervisor is in: its /proc syscall line's
 * number and first arguments (-1: running, or the thread ended). */
struct sup_call {
	long nr;
	unsigned long long arg[3];
};

/* Calls fn(call, arg) for each thread of the supervisor; true as soon as
 * one returns true. */
static inline bool sup_any_thread(pid_t sup, bool (*fn)(const struct sup_call *, void *), void *arg)
{
	char path[320], text[256];
	struct dirent *e;
	bool hit = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)sup);
	d = opendir(path);
	if (!d)
		return false;
	while (!hit && (e = readdir(d))) {
		struct sup_call c = { .nr = -1 };
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/syscall", (int)sup, e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue; /* a thread that ended */
		if (!fgets(text, sizeof(text), f) ||
		    sscanf(text, "%ld %llx %llx %llx", &c.nr, &c.arg[0], &c.arg[1], &c.arg[2]) < 1)
			c.nr = -1; /* "running" */
		fclose(f);
		hit = fn(&c, arg);
	}
	closedir(d);
	return hit;
}

static inline bool sup_not_waiting(const struct sup_call *c, void *arg)
{
	static const long waits[] = { SYS_read, SYS_poll, SYS_ppoll, SYS_futex, SYS_ioctl,
				      SYS_epoll_wait, SYS_epoll_pwait, SYS_wait4, SYS_waitid,
				      SYS_recvmsg, SYS_nanosleep, SYS_clock_nanosleep,
				      SYS_select, SYS_pselect6, SYS_rt_sigtimedwait };

	(void)arg;
	for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++)
		if (c->nr == waits[i])
			return false;
	return true;
}

/* Every thread of the supervisor blocked in a call that waits: the pass
 * under way (a notification, an inotify event) has ended. */
static inline bool sup_idle(pid_t sup)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task", (int)sup);
	if (access(path, F_OK))
		return false;
	return !sup_any_thread(sup, sup_not_waiting, NULL);
}

/* Context switches of all the supervisor's threads so far. */
static inline long sup_switches(pid_t sup)
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
 * -1 where pidfd_getfd() cannot run (pfd < 0: valgrind knows no pidfd
 * calls). */
static inline int sup_queued_bytes(int pfd, int fd)
{
	int copy, n = -1;

	if (pfd < 0 || fd < 0)
		return -1;
	copy = (int)syscall(SYS_pidfd_getfd, pfd, fd, 0);
	assert_true(copy >= 0);
	assert_int_equal(ioctl(copy, FIONREAD, &n), 0);
	close(copy);
	return n;
}

/* A pidfd of the supervisor, or -1 where there is none (valgrind). */
static inline int sup_pidfd(pid_t sup)
{
	int pfd = (int)syscall(SYS_pidfd_open, sup, 0);

	assert_true(pfd >= 0 || errno == ENOSYS);
	return pfd;
}

/*
 * The close event read from each of the supervisor's inotify fds ifd[0..n)
 * (where that can be seen: pfd >= 0; otherwise a thread of the supervisor
 * has run since before, its sup_switches() then) and every thread waiting
 * again: the pass that read it has ended (its probes never block).
 */
static inline bool sup_event_handled(pid_t sup, int pfd, const int *ifd, int n, long before)
{
	bool seen = false;

	for (int i = 0; i < n; i++) {
		int q = sup_queued_bytes(pfd, ifd[i]);

		if (q > 0)
			return false;
		seen |= q == 0;
	}
	if (!seen && sup_switches(sup) == before)
		return false;
	return sup_idle(sup);
}

/* Waits under a hang guard (naming what) until the supervisor is idle;
 * returns its context switches then (sup_event_handled()'s before). */
static inline long sup_wait_idle(pid_t sup, const char *what)
{
	harness_guard_start(what, 60);
	while (!sup_idle(sup))
		usleep(1000);
	harness_guard_done();
	return sup_switches(sup);
}

/* Waits under a hang guard (naming what) until sup_event_handled(). */
static inline void sup_wait_event_handled(pid_t sup, int pfd, const int *ifd, int n, long before,
					  const char *what)
{
	harness_guard_start(what, 60);
	while (!sup_event_handled(sup, pfd, ifd, n, before))
		usleep(1000);
	harness_guard_done();
}

/*
 * The late closer of a re-probe suite: a file of its own of the inode of
 * the program's fd, holding the shared lock that the supervisor probes,
 * as the program's file does until __fput() drops it (the kernel sends
 * the close event before). Its stat in *st.
 */
static inline int sup_late_closer(pid_t prog, int fd, struct stat *st)
{
	char path[64];
	int h;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)prog, fd);
	h = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(h >= 0);
	assert_int_equal(flock(h, LOCK_SH | LOCK_NB), 0);
	assert_int_equal(fstat(h, st), 0);
	return h;
}

/*
 * A re-probe suite's last close: tells the program (in) to close its fd,
 * reads its "closed" (out) and waits, naming what, until the supervisor
 * has read the close event of each ifd[0..n) (sup_wait_event_handled()).
 */
static inline void sup_close_and_wait_event(pid_t sup, int in, int out, int pfd, const int *ifd,
					    int n, long before, const char *what)
{
	char line[128];

	assert_int_equal(write(in, "c", 1), 1);
	sup_read_line(out, line, sizeof(line));
	assert_string_equal(line, "closed");
	sup_wait_event_handled(sup, pfd, ifd, n, before, what);
}

/*
 * A re-probe suite's ending: drops the late closer's lock h with no event,
 * tells the program (in) to look, waits for its line (out), which only a
 * re-probe can make expect, then closes h and pfd and ends the supervisor.
 */
static inline void sup_unlock_expect_and_end(pid_t sup, int in, int out, int h, int pfd,
					     const char *what, const char *expect)
{
	char line[128];

	assert_int_equal(flock(h, LOCK_UN), 0);
	assert_int_equal(write(in, "u", 1), 1);
	sup_wait_line(out, line, sizeof(line), what);
	assert_string_equal(line, expect);
	close(h);
	if (pfd >= 0)
		close(pfd);
	assert_int_equal(sup_end(sup, out, in), 0);
}
