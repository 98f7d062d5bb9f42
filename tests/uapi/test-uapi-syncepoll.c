/* SPDX-License-Identifier: MIT */
/*
 * epoll of sync files as sync_file_poll() answers it (nothing pending,
 * EPOLLIN signalled, never EPOLLOUT or EPOLLHUP), under both front ends:
 * uapi-syncepoll.c linked dynamically runs under dmabuf-run (the preload)
 * and dmabuf-run --seccomp (the supervisor), linked statically under
 * dmabuf-run (the supervisor). meson passes the programs' paths in
 * UAPI_SYNCEPOLL_DYNAMIC and UAPI_SYNCEPOLL_STATIC (empty when static
 * linking is impossible here: those runs skip).
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "uapi-common.h"

/* Runs argv; returns the exit status and what it wrote on stdout+stderr. */
static int run(char *const argv[], char *out, size_t size)
{
	int p[2], status;
	size_t n = 0;
	ssize_t r;
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
	while (n + 1 < size && (r = read(p[0], out + n, size - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static const char *prog(const char *var)
{
	const char *p = getenv(var);

	if (!p)
		fail_msg("%s is not set (run this suite through meson test)", var);
	if (!*p) {
		print_message("static linking is not possible here: not tested\n");
		skip();
	}
	return p;
}

/* dmabuf-run [opt] prog case: exit 0 and "ok case". */
static void expect_case(const char *var, const char *opt, const char *name)
{
	char out[8192], expect[64];
	char *argv[5];
	int i = 0, rc;

	argv[i++] = (char *)DMABUF_RUN;
	if (opt)
		argv[i++] = (char *)opt;
	argv[i++] = (char *)prog(var);
	argv[i++] = (char *)name;
	argv[i] = NULL;
	rc = run(argv, out, sizeof(out));
	snprintf(expect, sizeof(expect), "ok %s\n", name);
	if (rc != 0 || !strstr(out, expect))
		fail_msg("%s %s %s: exit %d, output:\n%s", opt ? opt : "", argv[i - 2], name, rc,
			 out);
}

#define CASES(layer, var, opt)                                                              \
	static void layer##_level(void **state) { expect_case(var, opt, "level"); }           \
	static void layer##_edge(void **state) { expect_case(var, opt, "edge"); }             \
	static void layer##_ctl(void **state) { expect_case(var, opt, "ctl"); }               \
	static void layer##_close(void **state) { expect_case(var, opt, "close"); }           \
	static void layer##_blocking(void **state) { expect_case(var, opt, "blocking"); }     \
	static void layer##_export_merge(void **state) { expect_case(var, opt, "export-merge"); }

CASES(preload, "UAPI_SYNCEPOLL_DYNAMIC", NULL)
CASES(seccomp, "UAPI_SYNCEPOLL_DYNAMIC", "--seccomp")
CASES(static, "UAPI_SYNCEPOLL_STATIC", NULL)

#define TESTS(layer)                                                                        \
	harness_test(layer##_level), harness_test(layer##_edge), harness_test(layer##_ctl), \
		harness_test(layer##_close), harness_test(layer##_blocking),                   \
		harness_test(layer##_export_merge)

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(preload), TESTS(seccomp), TESTS(static) };

	return cmocka_run_group_tests(tests, NULL, NULL);
}
