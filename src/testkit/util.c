/* SPDX-License-Identifier: MIT */
/* Small string helpers of the test kit (testkit.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "testkit.h"

void tk_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (!size)
		return;
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

void tk_report(char *report, size_t size, const char *fmt, ...)
{
	size_t used;
	va_list ap;

	if (!report || !size)
		return;
	used = strnlen(report, size);
	if (used + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(report + used, size - used, fmt, ap);
	va_end(ap);
	used = strnlen(report, size);
	if (used + 1 < size) {
		report[used] = '\n';
		report[used + 1] = '\0';
	}
}
