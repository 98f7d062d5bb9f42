/* SPDX-License-Identifier: MIT */
/*
 * For the suites that run a program (dmabuf-run, or a uapi program under
 * it) and judge it by its exit status and what it prints: each such
 * program prints "ok <case>" and exits 0 when a case passes.
 */
#pragma once

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/*
 * Runs argv with its stdout and stderr captured into out (NUL-terminated;
 * what does not fit is read and dropped, so the program never blocks on a
 * full pipe). Returns its exit status, 128 + signal if it was killed, 126
 * if it could not be run (an exit status dmabuf-run never gives).
 */
static inline int uapi_run(char *const argv[], char *out, size_t size)
{
	int p[2], status;
	size_t have = 0;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(argv[0], argv);
		_exit(126);
	}
	close(p[1]);
	while (have + 1 < size && (n = read(p[0], out + have, size - 1 - have)) > 0)
		have += (size_t)n;
	out[have] = '\0';
	{
		char sink[256];

		while (read(p[0], sink, sizeof(sink)) > 0)
			;
	}
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The path of a statically linked program in the environment variable
 * name (meson sets it): fails the test if it is unset, skips it if it is
 * empty (static linking is not possible here: the program was not built). */
static inline const char *uapi_static_path(const char *name)
{
	const char *p = getenv(name);

	if (!p)
		fail_msg("%s is not set (run this suite through meson test)", name);
	if (!*p) {
		print_message("static linking is not possible here (no libc.a?): %s is not tested\n",
			      name);
		skip();
	}
	return p;
}

/* `run [opt] prog name` exits 0 and prints "ok name"; fails the test with
 * the exit status and the output otherwise. */
static inline void uapi_expect_case(const char *run, const char *opt, const char *prog,
				    const char *name)
{
	char out[8192], expect[64];
	char *argv[5];
	int i = 0, rc;

	argv[i++] = (char *)run;
	if (opt)
		argv[i++] = (char *)opt;
	argv[i++] = (char *)prog;
	argv[i++] = (char *)name;
	argv[i] = NULL;
	rc = uapi_run(argv, out, sizeof(out));
	snprintf(expect, sizeof(expect), "ok %s\n", name);
	if (rc != 0 || !strstr(out, expect))
		fail_msg("%s %s %s: exit %d, output:\n%s", opt ? opt : "", prog, name, rc, out);
}
