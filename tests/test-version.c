/* SPDX-License-Identifier: MIT */
/* Version macros and dmabuf_version(). */
#include <stdio.h>
#include <string.h>

#include "exporter.h"

static void runtime_matches_headers(void **state)
{
	char s[32];

	assert_int_equal(dmabuf_version(), DMABUF_VERSION);
	snprintf(s, sizeof(s), "%d.%d.%d", DMABUF_VERSION_MAJOR,
		 DMABUF_VERSION_MINOR, DMABUF_VERSION_MICRO);
	assert_string_equal(s, DMABUF_VERSION_STRING);
}

static void check_version_orders(void **state)
{
	assert_true(DMABUF_CHECK_VERSION(DMABUF_VERSION_MAJOR, DMABUF_VERSION_MINOR,
					 DMABUF_VERSION_MICRO));
	assert_true(DMABUF_CHECK_VERSION(0, 0, 0));
	assert_false(DMABUF_CHECK_VERSION(DMABUF_VERSION_MAJOR, DMABUF_VERSION_MINOR,
					  DMABUF_VERSION_MICRO + 1));
	assert_false(DMABUF_CHECK_VERSION(DMABUF_VERSION_MAJOR + 1, 0, 0));
	assert_true(DMABUF_VERSION_ENCODE(1, 0, 0) > DMABUF_VERSION_ENCODE(0, 255, 255));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(runtime_matches_headers),
		harness_test(check_version_orders),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
