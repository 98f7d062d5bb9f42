/* SPDX-License-Identifier: MIT */
/*
 * sw_sync timelines shared by processes, as the kernel's one file is: a
 * timeline fd inherited over fork or received over SCM_RIGHTS is the same
 * timeline, its INC and its points work from either process, and its
 * pending points signal -ENOENT only when the last fd in every process is
 * gone (a SIGKILLed holder's included).
 */
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "uapi-common.h"

/* 0 pending, 1 signalled, or the error; -1000 if the ioctl fails. */
static int status(int fd)
{
	struct sync_file_info info = { 0 };

	if (ioctl(fd, SYNC_IOC_FILE_INFO, &info) < 0)
		return -1000;
	return info.status;
}

static void wait_signalled(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, -1), 1);
	assert_int_equal(p.revents, POLLIN);
}

static void put(int sock, char c)
{
	if (write(sock, &c, 1) != 1)
		_exit(91);
}

static char get(int sock)
{
	char c = 0;

	return read(sock, &c, 1) == 1 ? c : 0;
}

/* The child's INC signals the parent's points; the parent's INC is seen by
 * the child's points; both see one value. */
static void child_inc_signals_parent_point(void **state)
{
	int tl = uapi_timeline_open(), p1 = uapi_fence_create(tl, 1), p3 = uapi_fence_create(tl, 3);
	pid_t pid;

	assert_true(p1 >= 0 && p3 >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int c2;

		if (uapi_tl_inc(tl, 1))
			_exit(1);
		/* The value is 1 here too: a point at 1 is signalled at
		 * creation, one at 2 is pending. */
		c2 = uapi_fence_create(tl, 1);
		if (c2 < 0 || status(c2) != 1)
			_exit(2);
		c2 = uapi_fence_create(tl, 2);
		if (c2 < 0 || status(c2) != 0 || uapi_tl_inc(tl, 1) || status(c2) != 1)
			_exit(3);
		_exit(0);
	}
	assert_int_equal(harness_wait(pid), 0);
	wait_signalled(p1);
	assert_int_equal(status(p1), 1);
	assert_int_equal(status(p3), 0);
	assert_int_equal(uapi_tl_inc(tl, 1), 0);
	assert_int_equal(status(p3), 1);
	close(p1);
	close(p3);
	close(tl);
}

/* A point pending at the fork, signalled by the parent's INC: the child's
 * fd is the same sync file, so its SYNC_IOC_FILE_INFO says signalled (and
 * the entry too) once poll says POLLIN. On the code whose child kept the
 * parent's exports in its table, the child found its copy of the parent's
 * point, which never signals there: status 0 after POLLIN. */
static void parent_inc_signals_inherited_point(void **state)
{
	int tl = uapi_timeline_open(), p = uapi_fence_create(tl, 1), sv[2];
	pid_t pid;

	assert_true(p >= 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sync_fence_info fi = { 0 };
		struct sync_file_info info = { .num_fences = 1,
					       .sync_fence_info = (uintptr_t)&fi };
		struct pollfd pf = { .fd = p, .events = POLLIN };

		close(sv[0]);
		if (status(p) != 0)
			_exit(1);
		put(sv[1], 'r');
		if (get(sv[1]) != 'i')
			_exit(2);
		if (poll(&pf, 1, -1) != 1 || pf.revents != POLLIN)
			_exit(3);
		if (status(p) != 1)
			_exit(4);
		if (ioctl(p, SYNC_IOC_FILE_INFO, &info) < 0 || info.status != 1 ||
		    info.num_fences != 1 || fi.status != 1 || !fi.timestamp_ns)
			_exit(5);
		_exit(0);
	}
	close(sv[1]);
	assert_int_equal(get(sv[0]), 'r');
	assert_int_equal(uapi_tl_inc(tl, 1), 0);
	assert_int_equal(status(p), 1);
	put(sv[0], 'i');
	assert_int_equal(harness_wait(pid), 0);
	close(p);
	close(sv[0]);
	close(tl);
}

/* A point made by the child signals when the parent advances the
 * timeline; the parent waits on it through the sync file it received. */
static void parent_inc_signals_child_point(void **state)
{
	int tl = uapi_timeline_open(), sv[2], f;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int c = uapi_fence_create(tl, 5);

		close(sv[0]);
		if (c < 0 || status(c) != 0)
			_exit(1);
		if (uapi_send_fd(sv[1], c))
			_exit(90);
		/* The point lives here: stay until the parent saw it. */
		if (get(sv[1]) != 'x' || status(c) != 1)
			_exit(2);
		_exit(0);
	}
	close(sv[1]);
	f = uapi_recv_fd(sv[0]);
	assert_true(f >= 0);
	assert_int_equal(status(f), 0);
	assert_int_equal(uapi_tl_inc(tl, 4), 0);
	assert_int_equal(status(f), 0);
	assert_int_equal(uapi_tl_inc(tl, 1), 0);
	wait_signalled(f);
	assert_int_equal(status(f), 1);
	put(sv[0], 'x');
	assert_int_equal(harness_wait(pid), 0);
	close(f);
	close(sv[0]);
	close(tl);
}

/* The parent closes its fd while the child holds the timeline: the points
 * stay pending, the child's INC signals them, and the child's close (the
 * last reference) signals the rest with -ENOENT. */
static void last_close_in_child(void **state)
{
	int tl = uapi_timeline_open(), p1 = uapi_fence_create(tl, 1), p2 = uapi_fence_create(tl, 2), sv[2];
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		if (get(sv[1]) != 'i' || uapi_tl_inc(tl, 1))
			_exit(1);
		if (get(sv[1]) != 'c')
			_exit(2);
		close(tl);
		_exit(0);
	}
	close(sv[1]);
	close(tl);
	assert_int_equal(status(p1), 0);
	assert_int_equal(status(p2), 0);
	put(sv[0], 'i');
	wait_signalled(p1);
	assert_int_equal(status(p1), 1);
	assert_int_equal(status(p2), 0);
	put(sv[0], 'c');
	wait_signalled(p2);
	assert_int_equal(status(p2), -ENOENT);
	assert_int_equal(harness_wait(pid), 0);
	close(p1);
	close(p2);
	close(sv[0]);
}

/* The last holder is SIGKILLed: the kernel closes its fd, and the points
 * signal -ENOENT. */
static void sigkill_of_last_holder(void **state)
{
	int tl = uapi_timeline_open(), p = uapi_fence_create(tl, 1), sv[2], st;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		put(sv[1], 'r');
		for (;;)
			pause();
	}
	close(sv[1]);
	assert_int_equal(get(sv[0]), 'r');
	close(tl);
	assert_int_equal(status(p), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	wait_signalled(p);
	assert_int_equal(status(p), -ENOENT);
	close(p);
	close(sv[0]);
}

/*
 * A closer held up between its close event and its lock drop (the kernel
 * sends IN_CLOSE_* from __fput() before locks_remove_file()), for longer
 * than the layer's re-probes used to last (50 at 1 ms): the release must
 * still come, once. The stall is real: a description of the timeline's
 * file the layer does not know of (libc's own syscall(), past the
 * preload's) holds the shared flock across the program's last close, and
 * drops it 400 ms later with no close event. Before the re-probes backed
 * off instead of giving up, the points stayed pending for good.
 */
static void stalled_closer_still_destroys(void **state)
{
	int tl = uapi_timeline_open(), hidden;
	int p1 = uapi_fence_create(tl, 1), p2 = uapi_fence_create(tl, 2);
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	long (*raw)(long, ...);
	char path[40];

	assert_non_null(libc);
	raw = (long (*)(long, ...))dlsym(libc, "syscall");
	assert_non_null(raw);
	assert_true(p1 >= 0 && p2 >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", tl);
	hidden = (int)raw(SYS_openat, (long)AT_FDCWD, path, (long)(O_RDONLY | O_CLOEXEC));
	assert_true(hidden >= 0);
	assert_int_equal(raw(SYS_flock, (long)hidden, (long)LOCK_SH), 0);
	close(tl); /* the last fd: its close event comes, the lock stays */
	usleep(400 * 1000);
	assert_int_equal(status(p1), 0);
	assert_int_equal(status(p2), 0);
	assert_int_equal(raw(SYS_flock, (long)hidden, (long)LOCK_UN), 0); /* no event */
	wait_signalled(p1);
	wait_signalled(p2);
	assert_int_equal(status(p1), -ENOENT);
	assert_int_equal(status(p2), -ENOENT);
	/* Its own close later is one more close event: nothing is left to
	 * release, and the points keep their status. */
	assert_int_equal(raw(SYS_close, (long)hidden), 0);
	usleep(20 * 1000);
	assert_int_equal(status(p1), -ENOENT);
	assert_int_equal(status(p2), -ENOENT);
	close(p1);
	close(p2);
	dlclose(libc);
}

/* A timeline the child opened and sent over SCM_RIGHTS: the same file in
 * the parent, advanced by the child, released by the parent's close. */
static void timeline_over_scm_rights(void **state)
{
	int sv[2], tl, f, g;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int own = uapi_timeline_open();

		close(sv[0]);
		if (uapi_tl_inc(own, 2))
			_exit(1);
		if (uapi_send_fd(sv[1], own))
			_exit(90);
		if (get(sv[1]) != 'i' || uapi_tl_inc(own, 1))
			_exit(2);
		if (get(sv[1]) != 'c')
			_exit(3);
		close(own);
		_exit(0);
	}
	close(sv[1]);
	tl = uapi_recv_fd(sv[0]);
	assert_true(tl >= 0);
	/* The child's value: 2 is reached, 3 is not. */
	f = uapi_fence_create(tl, 2);
	assert_int_equal(status(f), 1);
	close(f);
	f = uapi_fence_create(tl, 3);
	assert_int_equal(status(f), 0);
	put(sv[0], 'i');
	wait_signalled(f);
	assert_int_equal(status(f), 1);
	put(sv[0], 'c');
	assert_int_equal(harness_wait(pid), 0);
	g = uapi_fence_create(tl, 10);
	assert_int_equal(status(g), 0);
	close(tl);
	/* The parent's was the last fd: the timeline goes and its pending
	 * point signals -ENOENT. Normally within the close; a process reading
	 * /proc/PID/fd at that moment holds the file for a while (the kernel's
	 * proc_fd_link() takes a reference too), so the release may come from
	 * its fput(): wait for the signal rather than assume the close's. */
	wait_signalled(g);
	assert_int_equal(status(g), -ENOENT);
	close(f);
	close(g);
	close(sv[0]);
}

int main(int argc, char **argv)
{
	/* The supervisor's run (meson's uapi-swfork-seccomp): this program
	 * again under `dmabuf-run --seccomp`, so that a wrapper of this one
	 * (valgrind) is not one of the supervisor. */
	const char *run = getenv("UAPI_SWFORK_SECCOMP");

	if (argc == 1 && run && *run) {
		char *args[] = { (char *)run, "--seccomp", argv[0], NULL };

		unsetenv("UAPI_SWFORK_SECCOMP");
		execv(run, args);
		perror(run);
		return 126;
	}
	const struct CMUnitTest tests[] = {
		harness_test(child_inc_signals_parent_point),
		harness_test(parent_inc_signals_child_point),
		harness_test(parent_inc_signals_inherited_point),
		harness_test(last_close_in_child),
		harness_test(sigkill_of_last_holder),
		harness_test(stalled_closer_still_destroys),
		harness_test(timeline_over_scm_rights),
	};

	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
