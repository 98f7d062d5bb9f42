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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fixture_catches_leaked_fd),
		cmocka_unit_test(fixture_catches_foreign_close),
		harness_test(fork_helper_reports_exit_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
