/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the benchmarks: a monotonic clock, medians, the
 * machine-readable output line, and a check that ends the program when an
 * API call fails (a benchmark never checks wall-clock bounds).
 */
#pragma once

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
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

/*
 * A ratio against its baseline and the target, for people
 * ("ratio 4.8x raw (target <= 2.0x)") and for tools/bench-report.py (the
 * BENCH line with target=, which run.sh aggregates over its runs). A target
 * of 0 prints the ratio alone. For figures that are not ratios (ns per DMA
 * entry, fds per buffer) bench_target() does the same with a unit.
 */
static inline void bench_target(const char *bench, const char *name, double value,
				const char *unit, double target)
{
	if (target > 0)
		printf("BENCH bench=%s name=%s value=%.3f unit=%s target=%.3f\n", bench,
		       name, value, unit, target);
	else
		bench_line(bench, name, value, unit);
}

static inline void bench_ratio(const char *bench, const char *name, const char *what,
			       double lib, double base, const char *base_name,
			       double target)
{
	double r = base > 0 ? lib / base : 0;

	if (target > 0)
		printf("  %-44s ratio %5.2fx %s (target <= %.1fx) %s\n", what, r, base_name,
		       target, r <= target ? "met" : "MISSED");
	else
		printf("  %-44s ratio %5.2fx %s\n", what, r, base_name);
	bench_target(bench, name, r, "x", target);
}

/*
 * Ping-pong figures run with every process of the benchmark on one CPU
 * unless BENCH_UNPINNED=1: on a small VM a cross-CPU wake-up of an idle vCPU
 * costs 20-60 us and varies from phase to phase. bench_pin(true) pins the
 * caller (and what it forks later) to the first CPU of the mask it started
 * with, bench_pin(false) restores that mask.
 */
static inline bool bench_unpinned(void)
{
	const char *e = getenv("BENCH_UNPINNED");

	return e && *e == '1';
}

static inline void bench_pin(bool one_cpu)
{
	static cpu_set_t all;
	static bool have_all;
	cpu_set_t set;

	if (bench_unpinned())
		return;
	if (!have_all) {
		if (sched_getaffinity(0, sizeof(all), &all) < 0) {
			perror("bench: sched_getaffinity");
			exit(1);
		}
		have_all = true;
	}
	set = all;
	if (one_cpu) {
		int first = 0;

		while (first < CPU_SETSIZE && !CPU_ISSET(first, &all))
			first++;
		CPU_ZERO(&set);
		CPU_SET(first, &set);
	}
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		perror("bench: sched_setaffinity");
		exit(1);
	}
}

/* BENCH_SMOKE=1: tiny iteration counts, so the normal test suites run the
 * benchmark once (it must keep building and working) without timing it. */
static inline bool bench_smoke(void)
{
	const char *e = getenv("BENCH_SMOKE");

	return e && *e == '1';
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

/* The baselines: one message with one fd over SCM_RIGHTS, by hand, with
 * no library in between. */
static inline void bench_raw_send_fd(int sock, int fd, const void *hdr, size_t len)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctrl;
	struct iovec iov = { .iov_base = (void *)hdr, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl.buf, .msg_controllen = sizeof(ctrl.buf) };
	struct cmsghdr *c;

	memset(&ctrl, 0, sizeof(ctrl));
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != (ssize_t)len)
		BENCH_FAIL("sendmsg: %s", strerror(errno));
}

static inline int bench_raw_recv_fd(int sock, void *hdr, size_t cap, size_t *len)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctrl;
	struct iovec iov = { .iov_base = hdr, .iov_len = cap };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl.buf, .msg_controllen = sizeof(ctrl.buf) };
	struct cmsghdr *c;
	ssize_t n;
	int fd = -1;

	n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		BENCH_FAIL("recvmsg: %zd (%s)", n, n < 0 ? strerror(errno) : "peer gone");
	c = CMSG_FIRSTHDR(&msg);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (fd < 0 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		BENCH_FAIL("recvmsg: no fd or truncated");
	*len = (size_t)n;
	return fd;
}
