/* SPDX-License-Identifier: MIT */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define HARNESS_MAX_FDS 4096

static int recorded_fds[HARNESS_MAX_FDS];
static int recorded_count = -1;

int harness_list_fds(int *fds, int max)
{
	DIR *dir = opendir("/proc/self/fd");
	int n = 0, self;
	struct dirent *de;

	assert_non_null(dir);
	self = dirfd(dir);
	while ((de = readdir(dir))) {
		char *end;
		long fd;

		if (de->d_name[0] == '.')
			continue;
		fd = strtol(de->d_name, &end, 10);
		if (*end || fd == self)
			continue;
		if (n < max)
			fds[n] = (int)fd;
		n++;
	}
	closedir(dir);
	return n;
}

int harness_count_fds(void)
{
	int fds[HARNESS_MAX_FDS];

	return harness_list_fds(fds, HARNESS_MAX_FDS);
}

int harness_fd_setup(void **state)
{
	recorded_count = harness_list_fds(recorded_fds, HARNESS_MAX_FDS);
	return 0;
}

static int contains(const int *set, int n, int fd)
{
	for (int i = 0; i < n && i < HARNESS_MAX_FDS; i++)
		if (set[i] == fd)
			return 1;
	return 0;
}

int harness_fd_delta(void)
{
	int now[HARNESS_MAX_FDS];
	int n = harness_list_fds(now, HARNESS_MAX_FDS);
	int changed = 0;

	for (int i = 0; i < n && i < HARNESS_MAX_FDS; i++)
		if (!contains(recorded_fds, recorded_count, now[i]))
			changed++;
	for (int i = 0; i < recorded_count && i < HARNESS_MAX_FDS; i++)
		if (!contains(now, n, recorded_fds[i]))
			changed++;
	return changed;
}

int harness_fd_teardown(void **state)
{
	int now[HARNESS_MAX_FDS];
	int n;
	int bad = 0;

	/* a test that failed while its hang guard ran */
	harness_guard_done();
	n = harness_list_fds(now, HARNESS_MAX_FDS);

	for (int i = 0; i < n && i < HARNESS_MAX_FDS; i++) {
		if (!contains(recorded_fds, recorded_count, now[i])) {
			char path[64], target[256] = "?";
			ssize_t len;

			snprintf(path, sizeof(path), "/proc/self/fd/%d", now[i]);
			len = readlink(path, target, sizeof(target) - 1);
			if (len >= 0)
				target[len] = '\0';
			fprintf(stderr, "fd leak: fd %d (%s) is open after the test\n",
				now[i], target);
			bad++;
		}
	}
	for (int i = 0; i < recorded_count && i < HARNESS_MAX_FDS; i++) {
		if (!contains(now, n, recorded_fds[i])) {
			fprintf(stderr, "fd %d was closed by the test but did not belong to it\n",
				recorded_fds[i]);
			bad++;
		}
	}
	/* A failing teardown fails the test it wraps. */
	return bad ? -1 : 0;
}

int harness_under_valgrind(void)
{
	const char *v = getenv("DMABUF_UNDER_VALGRIND");

	return v && *v && strcmp(v, "0") != 0;
}

void harness_child_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "child %d: %s:%d: check failed: %s\n", (int)getpid(),
		file, line, what);
	_exit(99);
}

static pid_t fork_closing(int (*fn)(void *arg), void *arg, int unused)
{
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka catches fatal signals to report them; a child must
		 * die of them so the parent can see how it died. */
		const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			signal(sigs[i], SIG_DFL);
		if (unused >= 0)
			close(unused);
		_exit(fn(arg));
	}
	return pid;
}

pid_t harness_fork(int (*fn)(void *arg), void *arg)
{
	return fork_closing(fn, arg, -1);
}

pid_t harness_fork_sock(int (*fn)(void *arg), void *arg, int parent_end)
{
	return fork_closing(fn, arg, parent_end);
}

pid_t harness_fork_paired(int (*fn)(void *arg), void *arg, int type,
			  struct harness_sync *s, int *child_sock, int *sock)
{
	int sv[2];
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
	harness_sync_init(s);
	*child_sock = sv[1];
	pid = harness_fork_sock(fn, arg, sv[0]);
	harness_sync_parent(s);
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

static struct {
	int fds[2];
	pthread_t thread;
	const char *what;
	int seconds;
	int running;
} guard;

static void *guard_main(void *arg)
{
	struct pollfd p = { .fd = guard.fds[0], .events = POLLIN };
	int n;

	(void)arg;
	do
		n = poll(&p, 1, guard.seconds * 1000);
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		fprintf(stderr, "hang guard: %s did not happen (waited %d s)\n", guard.what,
			guard.seconds);
		_exit(98);
	}
	return NULL;
}

void harness_guard_start(const char *what, int seconds)
{
	assert_false(guard.running);
	guard.what = what;
	guard.seconds = seconds;
	assert_int_equal(pipe2(guard.fds, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&guard.thread, NULL, guard_main, NULL), 0);
	guard.running = 1;
}

void harness_guard_done(void)
{
	if (!guard.running)
		return;
	close(guard.fds[1]);
	pthread_join(guard.thread, NULL);
	close(guard.fds[0]);
	guard.running = 0;
}

int harness_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

void harness_sync_init(struct harness_sync *s)
{
	assert_int_equal(pipe2(s->to_child, O_CLOEXEC), 0);
	assert_int_equal(pipe2(s->to_parent, O_CLOEXEC), 0);
}

static void close_if(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void harness_sync_close(struct harness_sync *s)
{
	close_if(&s->to_child[0]);
	close_if(&s->to_child[1]);
	close_if(&s->to_parent[0]);
	close_if(&s->to_parent[1]);
}

void harness_sync_child(struct harness_sync *s)
{
	close_if(&s->to_child[1]);
	close_if(&s->to_parent[0]);
}

void harness_sync_parent(struct harness_sync *s)
{
	close_if(&s->to_child[0]);
	close_if(&s->to_parent[1]);
}

static void put_byte(int fd, char c)
{
	ssize_t r;

	do
		r = write(fd, &c, 1);
	while (r < 0 && errno == EINTR);
}

static int get_byte(int fd)
{
	char c;
	ssize_t r;

	do
		r = read(fd, &c, 1);
	while (r < 0 && errno == EINTR);
	return r == 1 ? (unsigned char)c : -1;
}

void harness_sync_tell_child(struct harness_sync *s, char c) { put_byte(s->to_child[1], c); }
int harness_sync_wait_child(struct harness_sync *s) { return get_byte(s->to_parent[0]); }
void harness_sync_tell_parent(struct harness_sync *s, char c) { put_byte(s->to_parent[1], c); }
int harness_sync_wait_parent(struct harness_sync *s) { return get_byte(s->to_child[0]); }
