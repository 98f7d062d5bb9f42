/* SPDX-License-Identifier: MIT */
/*
 * Programs the preload cannot reach, run under dmabuf-run's seccomp
 * supervisor: a statically linked uapi program (static-heap.c, one run per
 * case) and the same program linked dynamically with --seccomp (its
 * inline-asm syscalls). meson passes the paths in the environment:
 * DMABUF_RUN, UAPI_STATIC_PROG (empty when static linking is impossible
 * here: those tests skip), UAPI_DYNAMIC_PROG, DMABUF_UAPI_ROOT, and
 * UAPI_ASAN_RT in a sanitizer build (an instrumented preload needs the ASan
 * runtime first in LD_PRELOAD).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uapi/uapi-run.h"

static const char *env_path(const char *name)
{
	const char *v = getenv(name);

	if (!v)
		fail_msg("%s is not set (run this suite through meson test)", name);
	return v;
}

/* The static program, or skip (with why) when it could not be built. */
static const char *static_prog(void)
{
	return uapi_static_path("UAPI_STATIC_PROG");
}

/* dmabuf-run [opt] prog case → exit 0 and "ok case". */
static void expect_case(const char *prog, const char *opt, const char *name)
{
	uapi_expect_case(env_path("DMABUF_RUN"), opt, prog, name);
}

#define STATIC_CASE(name)                                   \
	static void static_##name(void **state)             \
	{                                                   \
		expect_case(static_prog(), NULL, #name);    \
	}
STATIC_CASE(tree)
STATIC_CASE(alloc)
STATIC_CASE(errors)
STATIC_CASE(raw)
STATIC_CASE(fork)
STATIC_CASE(fdinfo)
STATIC_CASE(threads)
STATIC_CASE(poll)
STATIC_CASE(epoll)

static void static_timeline_close(void **state)
{
	expect_case(static_prog(), NULL, "timeline-close");
}

static void static_sockcalls(void **state)
{
	expect_case(static_prog(), NULL, "sockcalls");
}

static void static_syncpoll(void **state)
{
	expect_case(static_prog(), NULL, "syncpoll");
}

static void static_fence_wait(void **state)
{
	expect_case(static_prog(), NULL, "fence-wait");
}

/* Bad pointers to poll, ppoll, select and pselect are the kernel's EFAULT
 * (or EINVAL), with dma-bufs and sync files among the fds: under the
 * supervisor (static), the preload (dynamic) and --seccomp. Before, the
 * preload's wrappers read the program's array in its process (SIGSEGV)
 * and neither layer checked a signal mask. "pollfault-kernel" makes the
 * same checks with pipes in their places: run on the kernel alone too,
 * it shows that they are the kernel's answers. */
static void static_pollfault(void **state)
{
	expect_case(static_prog(), NULL, "pollfault");
}

static void dynamic_pollfault(void **state)
{
	const char *prog = env_path("UAPI_DYNAMIC_PROG");
	char out[8192];
	char *argv[] = { (char *)prog, (char *)"pollfault-kernel", NULL };
	const char *asan = getenv("UAPI_ASAN_RT");

	if (asan && *asan) {
		/* Its runtime comes first in LD_PRELOAD, and its own poll()
		 * and select() read the arrays in the process. */
		print_message("ASan's interceptors read poll's array: not tested under ASan\n");
		skip();
	}
	assert_int_equal(uapi_run(argv, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "ok pollfault-kernel\n"));
	expect_case(prog, NULL, "pollfault-kernel");
	expect_case(prog, NULL, "pollfault");
	expect_case(prog, "--seccomp", "pollfault");
}

/* Without dmabuf-run the same program finds no heaps: what passes above
 * is the supervisor's doing. */
static void static_without_supervisor_fails(void **state)
{
	char out[4096];
	char *argv[] = { (char *)static_prog(), (char *)"tree", NULL };

	assert_int_equal(uapi_run(argv, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "FAIL tree"));
}

/* The program's exit status and its death by a signal come back. */
static void static_exit_status_passes_through(void **state)
{
	char out[4096];
	char *argv[] = { (char *)env_path("DMABUF_RUN"), (char *)static_prog(),
			 (char *)"no-such-case", NULL };
	char *kill_argv[] = { (char *)env_path("DMABUF_RUN"), (char *)static_prog(),
			      (char *)"kill", NULL };

	assert_int_equal(uapi_run(argv, out, sizeof(out)), 2);
	assert_non_null(strstr(out, "unknown case no-such-case"));
	assert_int_equal(uapi_run(kill_argv, out, sizeof(out)), 128 + SIGTERM);
}

/* A dynamically linked program whose inline-asm syscalls only the
 * supervisor can see: it passes with --seccomp, not with the preload. */
static void dynamic_raw_needs_seccomp(void **state)
{
	const char *prog = env_path("UAPI_DYNAMIC_PROG");
	char out[8192];
	char *argv[] = { (char *)env_path("DMABUF_RUN"), (char *)prog, (char *)"raw", NULL };

	expect_case(prog, "--seccomp", "raw");
	expect_case(prog, "--seccomp", "errors");
	expect_case(prog, "--seccomp", "fork");
	assert_int_equal(uapi_run(argv, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "FAIL raw"));
}

/* --trace names the supervisor and its answers. */
static void trace_names_the_supervisor(void **state)
{
	char out[16384];
	char *argv[] = { (char *)env_path("DMABUF_RUN"), (char *)"--trace",
			 (char *)static_prog(), (char *)"tree", NULL };

	assert_int_equal(uapi_run(argv, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "served by the seccomp supervisor"));
	assert_non_null(strstr(out, "open(\"/dev/dma_heap\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(static_tree),
		harness_test(static_alloc),
		harness_test(static_errors),
		harness_test(static_raw),
		harness_test(static_fork),
		harness_test(static_fdinfo),
		harness_test(static_threads),
		harness_test(static_fence_wait),
		harness_test(static_poll),
		harness_test(static_epoll),
		harness_test(static_timeline_close),
		harness_test(static_sockcalls),
		harness_test(static_syncpoll),
		harness_test(static_pollfault),
		harness_test(dynamic_pollfault),
		harness_test(static_without_supervisor_fails),
		harness_test(static_exit_status_passes_through),
		harness_test(dynamic_raw_needs_seccomp),
		harness_test(trace_names_the_supervisor),
	};
	const char *asan = getenv("UAPI_ASAN_RT");

	/* For every program run (the suite's own runtime is loaded). */
	if (asan && *asan)
		setenv("LD_PRELOAD", asan, 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
