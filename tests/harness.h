/* SPDX-License-Identifier: MIT */
/*
 * Test harness shared by every suite: fd-leak accounting around each test
 * (valgrind 3.19 does not fail on leaked fds, so we count them ourselves),
 * and small helpers for fork-based multi-process tests.
 */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

/* Number of open fds in this process, from /proc/self/fd. */
int harness_count_fds(void);

/* Writes the open fd numbers (at most max) into fds; returns how many. */
int harness_list_fds(int *fds, int max);

/*
 * CMocka setup/teardown pair: setup records the open fds, teardown fails the
 * test if the set differs and names the fds that appeared or vanished.
 */
int harness_fd_setup(void **state);
int harness_fd_teardown(void **state);

/* Compares the current fd set with the one recorded by harness_fd_setup();
 * returns the difference in count (0 when identical) without failing. */
int harness_fd_delta(void);

#define harness_test(fn) \
	cmocka_unit_test_setup_teardown(fn, harness_fd_setup, harness_fd_teardown)

/* True when the suite runs under valgrind (meson test --setup valgrind). */
int harness_under_valgrind(void);

/*
 * Runs fn(arg) in a forked child. The child exits with fn's return value
 * (0 = success); failed cmocka assertions in the child also exit non-zero.
 */
pid_t harness_fork(int (*fn)(void *arg), void *arg);

/*
 * harness_fork() for a child given one end of a socket pair: the child
 * closes @parent_end (the end this side keeps) before fn runs. Then the
 * parent's end is held by the parent alone and the child's by the child
 * alone (once the parent closes it), so a failed check that ends either
 * side is EOF/EPIPE on the other, not a wait until the suite's timeout.
 */
pid_t harness_fork_sock(int (*fn)(void *arg), void *arg, int parent_end);

/* Waits for pid; returns its exit status, or 128 + signal if it was killed. */
int harness_wait(pid_t pid);

/*
 * A hang guard for a wait that must end: harness_guard_start() runs a
 * thread that polls a pipe for @seconds (generous: it bounds a hang, it
 * asserts nothing); harness_guard_done() closes the pipe, the thread sees
 * the hang-up and ends. If the wait never ended, the thread prints
 * "hang guard: <what> did not happen" and exits the process with 98, so
 * the suite fails with a message naming the event instead of at its
 * timeout. One guard at a time; a test that fails while its guard runs
 * has it ended by the fd fixture's teardown.
 */
void harness_guard_start(const char *what, int seconds);
void harness_guard_done(void);

/* A pipe pair used to step parent and child through a test. */
struct harness_sync {
	int to_child[2];
	int to_parent[2];
};
void harness_sync_init(struct harness_sync *s);
void harness_sync_close(struct harness_sync *s);
/* After fork: keep only the ends this side needs. */
void harness_sync_child(struct harness_sync *s);
void harness_sync_parent(struct harness_sync *s);
/* Sends a byte to the other side / waits for one (returns it, -1 on EOF). */
void harness_sync_tell_child(struct harness_sync *s, char c);
int harness_sync_wait_child(struct harness_sync *s);
void harness_sync_tell_parent(struct harness_sync *s, char c);
int harness_sync_wait_parent(struct harness_sync *s);

/* harness_fork() with s's pipes (harness_sync_init() here; the child
 * calls harness_sync_child()) and a new AF_UNIX socket pair of @type: its
 * child end is put in *child_sock (a field of *arg) before the fork and
 * closed here after it; *sock is this side's end. Returns the pid. */
pid_t harness_fork_paired(int (*fn)(void *arg), void *arg, int type,
			  struct harness_sync *s, int *child_sock, int *sock);

/* Child-side assertion that exits the child instead of longjmp'ing. */
#define child_check(cond)                                                     \
	do {                                                                  \
		if (!(cond)) {                                                \
			harness_child_fail(__FILE__, __LINE__, #cond);        \
		}                                                             \
	} while (0)
_Noreturn void harness_child_fail(const char *file, int line, const char *what);
