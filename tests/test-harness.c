/* SPDX-License-Identifier: MIT */
/* The fd-leak fixture must catch a leak, or every "no leak" verdict is
 * worthless. */
#include <fcntl.h>
#include <unistd.h>

#include "harness.h"

static void fixture_catches_leaked_fd(void **state)
{
	int fd;

	assert_int_equal(harness_fd_setup(state), 0);
	assert_int_equal(harness_fd_delta(), 0);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	/* A leaked fd makes the teardown fail... */
	assert_int_equal(harness_fd_delta(), 1);
	assert_int_not_equal(harness_fd_teardown(state), 0);
	close(fd);
	/* ...and a clean test passes it. */
	assert_int_equal(harness_fd_teardown(state), 0);
}

static void fixture_catches_foreign_close(void **state)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(harness_fd_setup(state), 0);
	close(fd); /* closing an fd the test did not open is a bug too */
	assert_int_not_equal(harness_fd_teardown(state), 0);
}

static int child_exit_code(void *arg)
{
	return *(int *)arg;
}

static void fork_helper_reports_exit_status(void **state)
{
	int code = 7;

	assert_int_equal(harness_wait(harness_fork(child_exit_code, &code)), 7);
	code = 0;
	assert_int_equal(harness_wait(harness_fork(child_exit_code, &code)), 0);
}

static int never_happens(void *arg)
{
	int fds[2];
	char c;

	(void)arg;
	harness_guard_start("a byte on a pipe nobody writes", 1);
	if (pipe(fds) != 0)
		return 1;
	/* blocks for ever: only the guard ends it */
	(void)read(fds[0], &c, 1);
	return 2;
}

static int happens(void *arg)
{

	(void)arg;
	harness_guard_start("nothing", 60);
	harness_guard_done();
	return 0;
}

/* A wait that never ends fails with the guard's exit code, not a hang;
 * one that ends leaves the process to its own exit code. */
static void guard_ends_a_wait_that_never_ends(void **state)
{
	assert_int_equal(harness_wait(harness_fork(never_happens, NULL)), 98);
	assert_int_equal(harness_wait(harness_fork(happens, NULL)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fixture_catches_leaked_fd),
		cmocka_unit_test(fixture_catches_foreign_close),
		harness_test(fork_helper_reports_exit_status),
		harness_test(guard_ends_a_wait_that_never_ends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
