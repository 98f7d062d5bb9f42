/* SPDX-License-Identifier: MIT */
/*
 * Per-buffer cost of the whole life of a buffer:
 *   dmabuf_export + dmabuf_fd + dmabuf_get + dmabuf_put + close(fd) + release
 * where "release" means ops->release has run (counted here).
 *
 * Two orders of the last steps, because they take different release paths:
 *   put-last    export, fd, get, put, close(fd), put: the last put finds no
 *               file holder left and releases at once (synchronous probe).
 *   close-last  export, fd, get, put, put, close(fd), dispatch: the buffer is
 *               orphaned by the puts; closing the last fd raises an inotify
 *               event that dmabuf_ctx_dispatch() turns into the release.
 * The put-last rounds also drain the context's inotify queue once per round
 * (the close events of the library's own fds), as an event loop would.
 *
 * Figures: median over ROUNDS rounds of N cycles of (round time / N), for
 * 4 KiB and 1 MiB buffers; a per-step breakdown from separate, instrumented
 * rounds (clock_gettime around every step; the median of each step's mean).
 */
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

#include "dmabuf.h"
#include "bench-common.h"
#include "bench-exporter.h"

#define ROUNDS 7
#define BENCH "buffer-cycle"


static int exporter_state; /* priv must be non-NULL */

enum mode { PUT_LAST, CLOSE_LAST };
enum step { S_EXPORT, S_FD, S_GET, S_PUT, S_CLOSE, S_RELEASE, S_DRAIN, NSTEPS };

static const char *const step_names[2][NSTEPS] = {
	[PUT_LAST] = { "dmabuf_export", "dmabuf_fd", "dmabuf_get",
		       "dmabuf_put (get's ref)", "close(fd)",
		       "dmabuf_put (last) = release", "dispatch (drain, per cycle)" },
	[CLOSE_LAST] = { "dmabuf_export", "dmabuf_fd", "dmabuf_get",
			 "dmabuf_put x2 (orphan)", "close(fd)",
			 "dispatch until released", "-" },
};
static const char *const step_keys[NSTEPS] = {
	"export", "fd", "get", "put", "close", "release", "drain",
};

/* Cycles in which the release needed a blocking wait (timer re-probe). */
static unsigned long slow_releases;

static void wait_released(struct dmabuf_ctx *ctx, unsigned long expect)
{
	uint64_t deadline = 0;

	while (releases < expect) {
		int r = dmabuf_ctx_dispatch(ctx);

		BENCH_CHECK(r);
		if (releases >= expect)
			break;
		if (!deadline) {
			deadline = bench_now_ns() + 5000000000ull;
			slow_releases++;
		} else if (bench_now_ns() > deadline) {
			BENCH_FAIL("ops->release did not run within 5 s of the last close");
		}
		BENCH_CHECK(dmabuf_ctx_dispatch_timeout(ctx, 10));
	}
}

/* One buffer life; t (may be NULL) receives NSTEPS - 1 step durations. */
static void cycle(struct dmabuf_ctx *ctx, uint64_t size, enum mode mode,
		  uint64_t *t)
{
	struct dmabuf_export_info info = {
		.exp_name = "bench",
		.ops = &ops,
		.size = size,
		.flags = O_RDWR,
		.priv = &exporter_state,
		.alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf, *got;
	unsigned long expect = releases + 1;
	uint64_t ts[S_DRAIN + 1];
	int fd;

	if (t)
		ts[0] = bench_now_ns();
	BENCH_CHECK(dmabuf_export(ctx, &info, &buf));
	if (t)
		ts[1] = bench_now_ns();
	fd = dmabuf_fd(buf, O_CLOEXEC);
	BENCH_CHECK(fd);
	if (t)
		ts[2] = bench_now_ns();
	BENCH_CHECK(dmabuf_get(ctx, fd, &got));
	if (got != buf)
		BENCH_FAIL("dmabuf_get returned %p, not the exported %p", (void *)got,
			   (void *)buf);
	if (t)
		ts[3] = bench_now_ns();
	BENCH_CHECK(dmabuf_put(got));
	if (mode == CLOSE_LAST)
		BENCH_CHECK(dmabuf_put(buf));
	if (t)
		ts[4] = bench_now_ns();
	if (close(fd) < 0)
		BENCH_FAIL("close: %s", strerror(errno));
	if (t)
		ts[5] = bench_now_ns();
	if (mode == PUT_LAST) {
		BENCH_CHECK(dmabuf_put(buf));
		if (releases != expect)
			BENCH_FAIL("ops->release did not run at the last put (%lu of %lu)",
				   releases, expect);
	} else {
		wait_released(ctx, expect);
	}
	if (t) {
		ts[6] = bench_now_ns();
		for (int i = 0; i < S_DRAIN; i++)
			t[i] += ts[i + 1] - ts[i];
	}
}

static void check_empty(struct dmabuf_ctx *ctx, unsigned long expect)
{
	struct dmabuf_ctx_stats st = { 0 };

	BENCH_CHECK(dmabuf_ctx_get_stats(ctx, &st));
	if (releases != expect || st.buffers_live != 0 || st.buffers_released != expect)
		BENCH_FAIL("after the rounds: %lu release calls, stats %llu released, %llu live; expected %lu, 0 live",
			   releases, (unsigned long long)st.buffers_released,
			   (unsigned long long)st.buffers_live, expect);
}

/* Round time / n, in ns. */
static double round_plain(struct dmabuf_ctx *ctx, uint64_t size, enum mode mode,
			  unsigned int n)
{
	uint64_t t0 = bench_now_ns();

	for (unsigned int i = 0; i < n; i++)
		cycle(ctx, size, mode, NULL);
	if (mode == PUT_LAST)
		BENCH_CHECK(dmabuf_ctx_dispatch(ctx));
	return (double)(bench_now_ns() - t0) / n;
}

struct result {
	double per_cycle;	/* ns, median of plain rounds */
	double step[NSTEPS];	/* ns, median of instrumented rounds */
	double min_cycle, max_cycle;
};

static void measure(struct dmabuf_ctx *ctx, uint64_t size, enum mode mode,
		    unsigned int n, struct result *res)
{
	double v[ROUNDS], steps[NSTEPS][ROUNDS];
	unsigned long base = releases;

	round_plain(ctx, size, mode, n / 4 + 1); /* warm-up */
	base = releases;
	for (int r = 0; r < ROUNDS; r++)
		v[r] = round_plain(ctx, size, mode, n);
	for (int r = 0; r < ROUNDS; r++) {
		uint64_t t[NSTEPS] = { 0 }, d0;

		for (unsigned int i = 0; i < n; i++)
			cycle(ctx, size, mode, t);
		d0 = bench_now_ns();
		if (mode == PUT_LAST)
			BENCH_CHECK(dmabuf_ctx_dispatch(ctx));
		t[S_DRAIN] = mode == PUT_LAST ? bench_now_ns() - d0 : 0;
		for (int s = 0; s < NSTEPS; s++)
			steps[s][r] = (double)t[s] / n;
	}
	check_empty(ctx, base + 2ul * ROUNDS * n);
	res->per_cycle = bench_median(v, ROUNDS);
	res->min_cycle = v[0];
	res->max_cycle = v[ROUNDS - 1];
	for (int s = 0; s < NSTEPS; s++)
		res->step[s] = bench_median(steps[s], ROUNDS);
}

int main(void)
{
	static const struct {
		uint64_t size;
		const char *label, *key;
	} sizes[] = {
		{ 4096, "4 KiB", "4k" },
		{ 1u << 20, "1 MiB", "1m" },
	};
	static const char *const mode_names[] = { "put-last", "close-last" };
	static const unsigned int cycles[] = { 1000, 1000 };
	struct dmabuf_ctx *ctx;
	struct result res[2][2];

	setvbuf(stdout, NULL, _IOLBF, 0);
	BENCH_CHECK(dmabuf_ctx_new(NULL, &ctx));

	for (int s = 0; s < 2; s++)
		for (int m = 0; m < 2; m++)
			measure(ctx, sizes[s].size, (enum mode)m, cycles[m], &res[s][m]);

	printf("\nbuffer cycle: export + fd + get + put + close(fd) + release\n");
	printf("(median of %d rounds of N cycles; min..max of the rounds in brackets)\n\n",
	       ROUNDS);
	printf("%-8s %-11s %6s %14s %24s\n", "size", "order", "N", "ns/cycle",
	       "[min .. max] ns");
	for (int s = 0; s < 2; s++)
		for (int m = 0; m < 2; m++)
			printf("%-8s %-11s %6u %14.0f %11.0f .. %-11.0f\n", sizes[s].label,
			       mode_names[m], cycles[m], res[s][m].per_cycle,
			       res[s][m].min_cycle, res[s][m].max_cycle);

	for (int m = 0; m < 2; m++) {
		printf("\nbreakdown, %s (ns per cycle, instrumented rounds)\n", mode_names[m]);
		printf("%-30s %12s %12s\n", "step", sizes[0].label, sizes[1].label);
		for (int st = 0; st < NSTEPS; st++) {
			if (m == CLOSE_LAST && st == S_DRAIN)
				continue;
			printf("%-30s %12.0f %12.0f\n", step_names[m][st],
			       res[0][m].step[st], res[1][m].step[st]);
		}
	}
	printf("\nreleases that needed a blocking wait (timer re-probe): %lu\n\n",
	       slow_releases);

	for (int s = 0; s < 2; s++) {
		for (int m = 0; m < 2; m++) {
			char name[96];

			snprintf(name, sizeof(name), "cycle_%s_%s", mode_names[m], sizes[s].key);
			bench_line(BENCH, name, res[s][m].per_cycle, "ns");
			for (int st = 0; st < NSTEPS; st++) {
				if (m == CLOSE_LAST && st == S_DRAIN)
					continue;
				snprintf(name, sizeof(name), "step_%s_%s_%s", mode_names[m],
					 sizes[s].key, step_keys[st]);
				bench_line(BENCH, name, res[s][m].step[st], "ns");
			}
		}
	}
	bench_line(BENCH, "slow_releases", (double)slow_releases, "count");

	dmabuf_ctx_destroy(ctx);
	return 0;
}
