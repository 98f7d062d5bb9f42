/* SPDX-License-Identifier: MIT */
/*
 * The cross-process fence wake-up, N times, for tests/check-wake-syscalls.py
 * to count under `strace -f`: the parent creates N fences, exports each as a
 * sync file and sends the fds to the child (another process) before the
 * counted phase. In the counted phase, per fence, the parent signals it
 * (dmabuf_fence_signal) and reads an eventfd; the child, blocked in
 * dmabuf_sync_file_wait(), wakes and writes that eventfd. That is the
 * eventfd ping-pong of bench/bench-fence.c with the library's signal and
 * wait in place of the first write and read.
 *
 * Each process marks the start and the end of the counted phase with a
 * faccessat() of a path that cannot exist (MARK_BEGIN, MARK_END), so the
 * checker counts only the calls between the marks, per process.
 *
 * With --cswitch it counts context switches instead (getrusage() between
 * the marks; no strace) and fails when the calling thread of either
 * process blocked more than once per wake-up (the signaller at most in its
 * eventfd read, the waiter in its peek), or when any other thread of
 * either process was switched in at all (a watcher woken by the record, a
 * futex handoff to a helper). Involuntary switches of the calling threads
 * depend on what else runs (preemption; also a sleep cut short by its
 * wake-up counts as one) and are printed, not checked. A count, not a
 * time.
 *
 * usage: syscall-wake N [--cswitch]   (exit 0 when all N fences woke their
 * waiter, and with --cswitch the counts are within the bound)
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "syscall-common.h"

#define MAX_N 1000
/* Switches beyond the bound a process may make over the counted phase (a
 * parked thread of an earlier phase ending its linger): far below one per
 * wake-up, which is what a change to the path would add. */
#define CSW_SLACK 2

static const char *names(struct dmabuf_fence *f)
{
	(void)f;
	return "syscall-wake";
}

static const struct dmabuf_fence_ops fops = {
	.get_driver_name = names,
	.get_timeline_name = names,
};

/* Context switches so far: of the calling thread, and of every other
 * thread of the process (RUSAGE_SELF less RUSAGE_THREAD: live and
 * exited ones). */
struct csw {
	long vol, invol, others;
};

static struct csw csw_now(void)
{
	struct rusage self, thread;

	if (getrusage(RUSAGE_SELF, &self) < 0 || getrusage(RUSAGE_THREAD, &thread) < 0)
		exit(1);
	return (struct csw){ thread.ru_nvcsw, thread.ru_nivcsw,
			     self.ru_nvcsw + self.ru_nivcsw -
			     thread.ru_nvcsw - thread.ru_nivcsw };
}

static struct csw csw_since(struct csw c0)
{
	struct csw c = csw_now();

	return (struct csw){ c.vol - c0.vol, c.invol - c0.invol, c.others - c0.others };
}

static void efd_write(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) != sizeof(one))
		exit(1);
}

static void efd_read(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v) || v != 1)
		exit(1);
}

static int waiter(int sock, int efd, unsigned long n, bool cswitch)
{
	static int fds[MAX_N];
	struct csw c0;
	char byte = 0;

	for (unsigned long i = 0; i < n; i++) {
		uint32_t seq;
		size_t len;

		CHECK(dmabuf_recv_fd(sock, &fds[i], &seq, sizeof(seq), &len));
		if (len != sizeof(seq) || seq != i)
			return 1;
	}
	if (send(sock, &byte, 1, 0) != 1)
		return 1;
	c0 = csw_now();
	mark(MARK_BEGIN);
	for (unsigned long i = 0; i < n; i++) {
		if (dmabuf_sync_file_wait(fds[i], -1) != 1)
			return 1;
		efd_write(efd);
	}
	mark(MARK_END);
	c0 = csw_since(c0);
	if (cswitch) {
		/* To the parent; then wait until it has its own count, so
		 * that the checks below do not run in its counted phase. */
		if (send(sock, &c0, sizeof(c0), 0) != sizeof(c0) ||
		    recv(sock, &byte, 1, 0) != 1)
			return 1;
	}
	for (unsigned long i = 0; i < n; i++) {
		int status = 0;

		CHECK(dmabuf_sync_file_info(fds[i], &status, NULL, 0));
		if (status != 1)
			return 1;
		close(fds[i]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct dmabuf_fence *f[MAX_N];
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 10;
	bool cswitch = argc > 2 && !strcmp(argv[2], "--cswitch");
	struct csw mine, child;
	uint64_t context = dmabuf_fence_context_alloc(1);
	int sv[2], efd, status;
	char byte;
	pid_t pid;

	if (n == 0 || n > MAX_N)
		return 2;
	efd = eventfd(0, EFD_CLOEXEC);
	CHECK(efd);
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
	pid = fork();
	CHECK(pid);
	if (pid == 0) {
		close(sv[0]);
		_exit(waiter(sv[1], efd, n, cswitch));
	}
	close(sv[1]);
	for (unsigned long i = 0; i < n; i++) {
		uint32_t seq = (uint32_t)i;
		int fd;

		CHECK(dmabuf_fence_new(&fops, NULL, context, i + 1, &f[i]));
		fd = dmabuf_sync_file_export(f[i]);
		CHECK(fd);
		CHECK(dmabuf_send_fd(sv[0], fd, &seq, sizeof(seq)));
		close(fd);
	}
	if (recv(sv[0], &byte, 1, 0) != 1)
		return 1;
	mine = csw_now();
	mark(MARK_BEGIN);
	for (unsigned long i = 0; i < n; i++) {
		CHECK(dmabuf_fence_signal(f[i]));
		efd_read(efd);
	}
	mark(MARK_END);
	mine = csw_since(mine);
	if (cswitch) {
		bool ok;

		if (recv(sv[0], &child, sizeof(child), 0) != sizeof(child) ||
		    send(sv[0], &byte, 1, 0) != 1)
			return 1;
		ok = mine.vol <= (long)n + CSW_SLACK && child.vol <= (long)n + CSW_SLACK &&
		     mine.others <= CSW_SLACK && child.others <= CSW_SLACK;
		printf("context switches over %lu wake-ups: signaller %ld voluntary, "
		       "%ld involuntary, other threads %ld; waiter %ld voluntary, "
		       "%ld involuntary, other threads %ld (bound: %lu voluntary, "
		       "%d of other threads, each; the raw eventfd ping-pong blocks "
		       "at most once per wake-up in each process)\n",
		       n, mine.vol, mine.invol, mine.others, child.vol, child.invol,
		       child.others, n + CSW_SLACK, CSW_SLACK);
		if (!ok) {
			printf("FAIL: more than one sleep per wake-up, or another thread "
			       "on the signal -> wake path\n");
			waitpid(pid, &status, 0);
			return 1;
		}
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		return 1;
	for (unsigned long i = 0; i < n; i++)
		dmabuf_fence_put(f[i]);
	close(sv[0]);
	close(efd);
	return 0;
}
