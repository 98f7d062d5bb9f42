/* SPDX-License-Identifier: MIT */
/*
 * The test kit (src/testkit/, libdmabuf-test.so): a layer above the
 * library that uses only its public API (include/dmabuf.h), so that it
 * works against the installed libdmabuf.so as a user's code would.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "dmabuf-test.h"

#define DMABUF_TEST_EXPORT __attribute__((visibility("default")))

/* strlcpy without libbsd: the kit depends on libdmabuf and libc only. */
void tk_strlcpy(char *dst, const char *src, size_t size);

/* Appends a formatted line to report (NUL-terminated, cut at size). */
void tk_report(char *report, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
