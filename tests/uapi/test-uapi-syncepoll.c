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
#include "uapi-common.h"
#include "uapi-run.h"

/* dmabuf-run [opt] prog case: exit 0 and "ok case" (prog in var). */
static void expect_case(const char *var, const char *opt, const char *name)
{
	uapi_expect_case(DMABUF_RUN, opt, uapi_static_path(var), name);
}

#define CASES(layer, var, opt)                                                              \
	static void layer##_level(void **state) { expect_case(var, opt, "level"); }           \
	static void layer##_edge(void **state) { expect_case(var, opt, "edge"); }             \
	static void layer##_ctl(void **state) { expect_case(var, opt, "ctl"); }               \
	static void layer##_close(void **state) { expect_case(var, opt, "close"); }           \
	static void layer##_blocking(void **state) { expect_case(var, opt, "blocking"); }     \
	static void layer##_export_merge(void **state) { expect_case(var, opt, "export-merge"); } \
	static void layer##_dupset(void **state) { expect_case(var, opt, "dupset"); }         \
	static void layer##_fork(void **state) { expect_case(var, opt, "fork"); }             \
	static void layer##_fork_adder(void **state) { expect_case(var, opt, "fork-adder"); } \
	static void layer##_rlimit(void **state) { expect_case(var, opt, "rlimit"); }         \
	static void layer##_many(void **state) { expect_case(var, opt, "many"); }             \
	static void layer##_select_big(void **state) { expect_case(var, opt, "select-big"); } \
	static void layer##_select_table(void **state) { expect_case(var, opt, "select-table"); } \
	static void layer##_dup2_close_range(void **state)                                    \
	{                                                                                     \
		expect_case(var, opt, "dup2-close-range");                                    \
	}                                                                                     \
	static void layer##_poll_limits(void **state) { expect_case(var, opt, "poll-limits"); }

/* Over exec the preload's item is lost (docs/uapi.md, "Limits"): the
 * supervisor's only. */
static void seccomp_exec(void **state) { expect_case("UAPI_SYNCEPOLL_DYNAMIC", "--seccomp", "exec"); }
static void static_exec(void **state) { expect_case("UAPI_SYNCEPOLL_STATIC", NULL, "exec"); }

CASES(preload, "UAPI_SYNCEPOLL_DYNAMIC", NULL)
CASES(seccomp, "UAPI_SYNCEPOLL_DYNAMIC", "--seccomp")
CASES(static, "UAPI_SYNCEPOLL_STATIC", NULL)

#define TESTS(layer)                                                                        \
	harness_test(layer##_level), harness_test(layer##_edge), harness_test(layer##_ctl), \
		harness_test(layer##_close), harness_test(layer##_blocking),                   \
		harness_test(layer##_export_merge), harness_test(layer##_dupset),              \
		harness_test(layer##_fork), harness_test(layer##_fork_adder),                  \
		harness_test(layer##_rlimit), harness_test(layer##_many), \
		harness_test(layer##_select_big), harness_test(layer##_select_table),          \
		harness_test(layer##_dup2_close_range),                                        \
		harness_test(layer##_poll_limits)

int main(void)
{
	const struct CMUnitTest tests[] = { TESTS(preload), TESTS(seccomp), TESTS(static),
					    harness_test(seccomp_exec), harness_test(static_exec) };

	return cmocka_run_group_tests(tests, NULL, NULL);
}
