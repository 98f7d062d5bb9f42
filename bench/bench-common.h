/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the benchmarks: a monotonic clock, medians, the
 * machine-readable output line, and a check that ends the program when an
 * API call fails (a benchmark never checks wall-clock bounds).
 */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of n values (n >= 1); v is sorted in place. */
static inline double bench_median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* One machine-readable figure per line: `BENCH name=... value=... unit=...`. */
static inline void bench_line(const char *bench, const char *name, double value,
			      const char *unit)
{
	printf("BENCH bench=%s name=%s value=%.3f unit=%s\n", bench, name, value, unit);
}

/* A failed API call or a wrong result: say what and exit non-zero. */
#define BENCH_FAIL(...)                                                        \
	do {                                                                   \
		fprintf(stderr, "bench: %s:%d: ", __FILE__, __LINE__);          \
		fprintf(stderr, __VA_ARGS__);                                  \
		fputc('\n', stderr);                                           \
		exit(1);                                                       \
	} while (0)

/* For calls returning 0 / a count / an fd, or a negative errno. */
#define BENCH_CHECK(expr)                                                      \
	do {                                                                   \
		long long bench_ret_ = (long long)(expr);                      \
		if (bench_ret_ < 0)                                            \
			BENCH_FAIL("%s failed: %s", #expr,                     \
				   strerror((int)-bench_ret_));                \
	} while (0)

/* One byte each way: the reply of every ping-pong. */
static inline void bench_send_byte(int sock)
{
	if (send(sock, "k", 1, MSG_NOSIGNAL) != 1)
		BENCH_FAIL("send: %s", strerror(errno));
}

static inline void bench_recv_byte(int sock)
{
	char c = 0;
	ssize_t n = recv(sock, &c, 1, 0);

	if (n != 1 || c != 'k')
		BENCH_FAIL("recv: %zd (%s)", n, n < 0 ? strerror(errno) : "peer gone");
}
