/* SPDX-License-Identifier: MIT */
/*
 * Memory overhead per live buffer: 10,000 live 4 KiB buffers made with
 * dmabuf_export() and a trivial ops table (system allocation), then released.
 *
 * Figures, divided by the number of buffers: RSS growth (/proc/self/statm,
 * cross-checked with smaps_rollup), malloc heap growth (mallinfo2: in-use
 * bytes), fds (/proc/self/fd entries) and VMAs (/proc/self/maps lines) per
 * buffer, page-table growth (VmPTE), system-wide slab growth (/proc/meminfo,
 * indicative only: other processes share it), and the time to create and to
 * release them all, per tenth of the run (a later tenth much slower than the
 * first would mean a cost that grows with the number of live buffers).
 *
 * Limits: a buffer never handed out holds 1 fd (its memfd), no inotify
 * watch (only orphans have one) and at most one VMA (the library's mapping
 * of the memfd: a read-write buffer gets it only at its first vmap or DMA,
 * so these trivial buffers have none). RLIMIT_NOFILE is raised to its hard
 * limit (and the hard limit too when the process may); if the limits cannot
 * hold 10,000 buffers, fewer are made and the report says so loudly.
 *
 * Then shared buffers (dmabuf_fd() once, the fd closed, the reference
 * kept, as a producer keeps its pool): with the soft limit lowered to
 * SHARED_ROOM fds more than in use, a fresh context makes as many as fit;
 * shared_buffers_per_fd is how many that is per fd of room (at most 1/16
 * of the limit of shared buffers with references keep a second fd, and
 * those go first when the library runs out of fds: 1 when every buffer
 * ends with one fd, 1/2 if each held two).
 *
 * Fails (non-zero) if an API call fails, the release count is wrong, or fds
 * or VMAs are left behind after every buffer was released.
 */
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <unistd.h>

#include "dmabuf.h"
#include "bench-common.h"
#include "bench-exporter.h"

#define BENCH "memory"
#define TARGET 10000u
#define BUF_SIZE 4096u
#define SLICES 10
#define FDS_PER_BUFFER 1
#define WARMUP 64
#define SHARED_ROOM 2048


static int exporter_state;

static int try_export(struct dmabuf_ctx *ctx, struct dmabuf **out);

struct snap {
	long fds, maps;
	long rss_kib, rollup_rss_kib, pte_kib, slab_kib;
	long long heap_bytes; /* mallinfo2: uordblks + hblkhd */
};

static long count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		BENCH_FAIL("opendir /proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd */
}

static long count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	long n = 0;
	int c;

	if (!f)
		BENCH_FAIL("%s: %s", path, strerror(errno));
	while ((c = getc(f)) != EOF)
		if (c == '\n')
			n++;
	fclose(f);
	return n;
}

/* The value of the line starting with `key` (e.g. "Rss:"), in kB; -1 if none. */
static long field_kib(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
	char line[256];
	size_t klen = strlen(key);
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen)) {
			v = strtol(line + klen, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

static void take_snap(struct snap *s)
{
	struct mallinfo2 mi = mallinfo2();
	long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2)
		BENCH_FAIL("cannot read /proc/self/statm");
	fclose(f);
	s->rss_kib = resident * (sysconf(_SC_PAGESIZE) / 1024);
	s->rollup_rss_kib = field_kib("/proc/self/smaps_rollup", "Rss:");
	s->pte_kib = field_kib("/proc/self/status", "VmPTE:");
	s->slab_kib = field_kib("/proc/meminfo", "Slab:");
	s->heap_bytes = (long long)(mi.uordblks + mi.hblkhd);
	s->fds = count_fds();
	s->maps = count_lines("/proc/self/maps");
}

static struct dmabuf *export_one(struct dmabuf_ctx *ctx)
{
	struct dmabuf *buf = NULL;

	BENCH_CHECK(try_export(ctx, &buf));
	return buf;
}

static int try_export(struct dmabuf_ctx *ctx, struct dmabuf **out)
{
	struct dmabuf_export_info info = {
		.exp_name = "bench-mem",
		.ops = &ops,
		.size = BUF_SIZE,
		.flags = O_RDWR,
		.priv = &exporter_state,
		.alloc = DMABUF_ALLOC_SYSTEM,
	};

	return dmabuf_export(ctx, &info, out);
}

/* Shared buffers in SHARED_ROOM fds of room (see the header): how many fit
 * per fd. Restores the fd limit; every buffer is released again. */
static double shared_per_fd(void)
{
	struct rlimit rl, low;
	struct dmabuf_ctx *ctx;
	struct dmabuf **bufs = calloc(SHARED_ROOM, sizeof(*bufs));
	unsigned int n = 0;
	unsigned long rel0 = releases;
	long in_use;

	if (!bufs || getrlimit(RLIMIT_NOFILE, &rl) < 0)
		BENCH_FAIL("shared phase: no memory or no limit");
	in_use = count_fds();
	low = rl;
	low.rlim_cur = (rlim_t)in_use + 16 + SHARED_ROOM; /* the context's own fds: 16 */
	if (low.rlim_cur > rl.rlim_cur)
		BENCH_FAIL("shared phase: the fd limit leaves no room for %d fds", SHARED_ROOM);
	BENCH_CHECK(setrlimit(RLIMIT_NOFILE, &low) < 0 ? -errno : 0);
	BENCH_CHECK(dmabuf_ctx_new(NULL, &ctx));
	while (n < SHARED_ROOM) {
		struct dmabuf *buf;
		int fd;

		if (try_export(ctx, &buf) < 0)
			break;
		fd = dmabuf_fd(buf, O_CLOEXEC);
		if (fd < 0) {
			BENCH_CHECK(dmabuf_put(buf));
			break;
		}
		close(fd);
		bufs[n++] = buf;
	}
	for (unsigned int i = 0; i < n; i++)
		BENCH_CHECK(dmabuf_put(bufs[i]));
	BENCH_CHECK(dmabuf_ctx_settle(ctx, 5000));
	if (releases - rel0 < n)
		BENCH_FAIL("shared phase: %lu of %u buffers released", releases - rel0, n);
	dmabuf_ctx_destroy(ctx);
	BENCH_CHECK(setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -errno : 0);
	free(bufs);
	return (double)n / SHARED_ROOM;
}

/*
 * Per-op cost with many live buffers vs few (issue 11: 10,000 live buffers
 * cost <= 1.1x per op of 10): one op is the life of one more buffer,
 * dmabuf_export + dmabuf_fd + dmabuf_get (the lookup by fd) + dmabuf_put +
 * close + the last dmabuf_put (release); the context is drained after each
 * round. Median of OP_ROUNDS rounds of OP_N ops, ns per op. Adds
 * OP_ROUNDS * OP_N to the release count.
 */
#define OP_ROUNDS 5
#define OP_N 400

static double op_cost(struct dmabuf_ctx *ctx)
{
	double v[OP_ROUNDS];

	for (int r = 0; r < OP_ROUNDS; r++) {
		uint64_t t0 = bench_now_ns();

		for (int i = 0; i < OP_N; i++) {
			struct dmabuf *buf = export_one(ctx), *got;
			int fd = dmabuf_fd(buf, O_CLOEXEC);

			BENCH_CHECK(fd);
			BENCH_CHECK(dmabuf_get(ctx, fd, &got));
			if (got != buf)
				BENCH_FAIL("dmabuf_get found another buffer");
			BENCH_CHECK(dmabuf_put(got));
			close(fd);
			BENCH_CHECK(dmabuf_put(buf));
		}
		BENCH_CHECK(dmabuf_ctx_dispatch(ctx));
		v[r] = (double)(bench_now_ns() - t0) / OP_N;
	}
	return bench_median(v, OP_ROUNDS);
}

/*
 * The per-op figures come in PAIRS (10 live, then n + 10 live), the first
 * from the main pass, the others made after it; the ratio is the median of
 * the pairs' ratios. The two phases of a pair are a few hundred ms apart,
 * so a change of the machine's load shows as one odd pair, not as the
 * ratio (on a loaded 2-CPU machine one phase against another varied from
 * 0.7x to 2.4x).
 */
#define PAIRS 5

static void op_pair(struct dmabuf_ctx *ctx, struct dmabuf **bufs, unsigned int n,
		    double *few, double *many)
{
	struct dmabuf *ten[10];
	unsigned long rel0 = releases;

	for (int i = 0; i < 10; i++)
		ten[i] = export_one(ctx);
	*few = op_cost(ctx);
	for (unsigned int i = 0; i < n; i++)
		bufs[i] = export_one(ctx);
	*many = op_cost(ctx);
	for (unsigned int i = 0; i < n; i++)
		BENCH_CHECK(dmabuf_put(bufs[i]));
	for (int i = 0; i < 10; i++)
		BENCH_CHECK(dmabuf_put(ten[i]));
	BENCH_CHECK(dmabuf_ctx_dispatch(ctx));
	if (releases - rel0 != n + 10 + 2 * OP_ROUNDS * OP_N)
		BENCH_FAIL("op pair: ops->release ran %lu times, expected %u", releases - rel0,
			   n + 10 + 2 * OP_ROUNDS * OP_N);
}

static void check_stats(struct dmabuf_ctx *ctx, uint64_t live, const char *when)
{
	struct dmabuf_ctx_stats st = { 0 };

	BENCH_CHECK(dmabuf_ctx_get_stats(ctx, &st));
	if (st.buffers_live != live || st.buffers_released != releases)
		BENCH_FAIL("%s: %llu live buffers, %llu released (ops->release ran %lu times); expected %llu live",
			   when, (unsigned long long)st.buffers_live,
			   (unsigned long long)st.buffers_released, releases,
			   (unsigned long long)live);
}

int main(void)
{
	struct rlimit rl, want;
	struct dmabuf_ctx *ctx;
	struct dmabuf **bufs;
	struct snap s0, s1, s2;
	double create_ns[SLICES], release_ns[SLICES];
	long watches, map_count, cap_fd, cap_watch, cap_map;
	bool hard_raised = false;
	unsigned int n, per_slice;
	uint64_t t0, t_create = 0, t_release = 0, t_drain;
	unsigned long rel0;
	double op_few, op_many, shared, few_v[PAIRS], many_v[PAIRS], ratio_v[PAIRS], ratio;

	setvbuf(stdout, NULL, _IOLBF, 0);

	/* fds: soft to hard, and the hard limit up if we may (CAP_SYS_RESOURCE). */
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		BENCH_FAIL("getrlimit: %s", strerror(errno));
	want = rl;
	if (want.rlim_max != RLIM_INFINITY &&
	    want.rlim_max < (rlim_t)TARGET * FDS_PER_BUFFER + 1024) {
		want.rlim_max = want.rlim_cur = (rlim_t)TARGET * FDS_PER_BUFFER + 1024;
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			hard_raised = true;
		else
			want = rl;
	}
	want.rlim_cur = want.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &want) < 0)
		BENCH_FAIL("setrlimit(RLIMIT_NOFILE, %llu): %s",
			   (unsigned long long)want.rlim_max, strerror(errno));
	getrlimit(RLIMIT_NOFILE, &rl);
	watches = read_long("/proc/sys/fs/inotify/max_user_watches");
	map_count = read_long("/proc/sys/vm/max_map_count");

	BENCH_CHECK(dmabuf_ctx_new(NULL, &ctx));
	/* Warm-up: the first buffers grow malloc arenas and the registries. */
	for (int i = 0; i < WARMUP; i++)
		BENCH_CHECK(dmabuf_put(export_one(ctx)));
	BENCH_CHECK(dmabuf_ctx_dispatch(ctx));
	rel0 = releases;
	if (rel0 != WARMUP)
		BENCH_FAIL("warm-up: %lu releases, expected %d", rel0, WARMUP);
	{
		struct dmabuf *few[10];

		for (int i = 0; i < 10; i++)
			few[i] = export_one(ctx);
		few_v[0] = op_cost(ctx);
		for (int i = 0; i < 10; i++)
			BENCH_CHECK(dmabuf_put(few[i]));
		BENCH_CHECK(dmabuf_ctx_dispatch(ctx));
		rel0 = releases;
	}

	take_snap(&s0);
	/* What the limits allow, keeping a margin for the process's own use. */
	cap_fd = rl.rlim_cur == RLIM_INFINITY ? (long)TARGET
					      : ((long)rl.rlim_cur - s0.fds - 32) / FDS_PER_BUFFER;
	cap_watch = watches > 0 ? watches - 256 : (long)TARGET;
	cap_map = map_count > 0 ? map_count - s0.maps - 256 : (long)TARGET;
	n = TARGET;
	if (cap_fd < (long)n)
		n = (unsigned int)(cap_fd > 0 ? cap_fd : 0);
	if (cap_map < (long)n)
		n = (unsigned int)(cap_map > 0 ? cap_map : 0);
	n -= n % SLICES;
	if (n < SLICES)
		BENCH_FAIL("the limits leave room for %u buffers only", n);
	per_slice = n / SLICES;

	bufs = calloc(n, sizeof(*bufs));
	if (!bufs)
		BENCH_FAIL("out of memory");
	/* bufs[] is the benchmark's own: count it out of the heap growth. */
	take_snap(&s0);

	for (int s = 0; s < SLICES; s++) {
		t0 = bench_now_ns();
		for (unsigned int i = s * per_slice; i < (s + 1) * per_slice; i++)
			bufs[i] = export_one(ctx);
		create_ns[s] = (double)(bench_now_ns() - t0);
		t_create += (uint64_t)create_ns[s];
		create_ns[s] /= per_slice;
	}
	check_stats(ctx, n, "after creation");
	take_snap(&s1);
	many_v[0] = op_cost(ctx);
	rel0 += OP_ROUNDS * OP_N;

	for (int s = 0; s < SLICES; s++) {
		t0 = bench_now_ns();
		for (unsigned int i = s * per_slice; i < (s + 1) * per_slice; i++)
			BENCH_CHECK(dmabuf_put(bufs[i]));
		release_ns[s] = (double)(bench_now_ns() - t0);
		t_release += (uint64_t)release_ns[s];
		release_ns[s] /= per_slice;
	}
	if (releases - rel0 != n)
		BENCH_FAIL("ops->release ran %lu times for %u buffers", releases - rel0, n);
	/* The close events of the library's fds, as an event loop would. */
	t0 = bench_now_ns();
	BENCH_CHECK(dmabuf_ctx_dispatch(ctx));
	t_drain = bench_now_ns() - t0;
	check_stats(ctx, 0, "after release");
	for (int p = 1; p < PAIRS; p++)
		op_pair(ctx, bufs, n, &few_v[p], &many_v[p]);
	check_stats(ctx, 0, "after the op pairs");
	for (int p = 0; p < PAIRS; p++)
		ratio_v[p] = many_v[p] / few_v[p];
	free(bufs);
	take_snap(&s2);
	if (s2.fds != s0.fds || s2.maps != s0.maps)
		BENCH_FAIL("after releasing every buffer: %ld fds and %ld VMAs, %ld and %ld before",
			   s2.fds, s2.maps, s0.fds, s0.maps);

	printf("\nmemory per live buffer: %u live %u-byte buffers (dmabuf_export, trivial ops)\n\n",
	       n, BUF_SIZE);
	if (n < TARGET)
		printf("WARNING: only %u of the %u buffers asked for: the limits below leave no room for more\n"
		       "         (each buffer holds %d fd and at most 1 VMA)\n\n",
		       n, TARGET, FDS_PER_BUFFER);
	printf("limits\n");
	printf("  RLIMIT_NOFILE            soft %llu, hard %llu%s (each buffer holds %d fd)\n",
	       (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
	       hard_raised ? " (hard raised)"
			   : want.rlim_max < (rlim_t)TARGET * FDS_PER_BUFFER + 1024
				     ? " (hard limit could not be raised: no CAP_SYS_RESOURCE)" : "",
	       FDS_PER_BUFFER);
	printf("  fs.inotify.max_user_watches %ld (1 per orphaned buffer; room for %ld)\n",
	       watches, cap_watch);
	printf("  vm.max_map_count         %ld (at most 1 VMA per live buffer; room for %ld buffers)\n",
	       map_count, cap_map);
	printf("  fd room                  %ld buffers\n\n", cap_fd);

	printf("%-34s %14s %14s %14s\n", "figure", "before", "with buffers", "per buffer");
	printf("%-34s %14ld %14ld %14.2f\n", "fds (/proc/self/fd)", s0.fds, s1.fds,
	       (double)(s1.fds - s0.fds) / n);
	printf("%-34s %14ld %14ld %14.2f\n", "VMAs (/proc/self/maps lines)", s0.maps, s1.maps,
	       (double)(s1.maps - s0.maps) / n);
	printf("%-34s %14ld %14ld %14.1f\n", "RSS, statm (KiB; per buffer B)", s0.rss_kib,
	       s1.rss_kib, (double)(s1.rss_kib - s0.rss_kib) * 1024 / n);
	printf("%-34s %14ld %14ld %14.1f\n", "RSS, smaps_rollup (KiB; per B)", s0.rollup_rss_kib,
	       s1.rollup_rss_kib, (double)(s1.rollup_rss_kib - s0.rollup_rss_kib) * 1024 / n);
	printf("%-34s %14lld %14lld %14.1f\n", "malloc in use, mallinfo2 (B)", s0.heap_bytes,
	       s1.heap_bytes, (double)(s1.heap_bytes - s0.heap_bytes) / n);
	printf("%-34s %14ld %14ld %14.1f\n", "page tables, VmPTE (KiB; per B)", s0.pte_kib,
	       s1.pte_kib, (double)(s1.pte_kib - s0.pte_kib) * 1024 / n);
	printf("%-34s %14ld %14ld %14.1f\n", "slab, system-wide (KiB; per B)*", s0.slab_kib,
	       s1.slab_kib, (double)(s1.slab_kib - s0.slab_kib) * 1024 / n);
	printf("  * kernel objects (memfd inode, file, VMA) are not in RSS;\n"
	       "    the slab figure is indicative only (other processes allocate too)\n\n");

	printf("%-34s %14s %14s\n", "time", "total ms", "ns/buffer");
	printf("%-34s %14.1f %14.0f\n", "create all (dmabuf_export)", t_create / 1e6,
	       (double)t_create / n);
	printf("%-34s %14.1f %14.0f\n", "release all (last dmabuf_put)", t_release / 1e6,
	       (double)t_release / n);
	printf("%-34s %14.1f %14.0f\n", "drain close events (dispatch)", t_drain / 1e6,
	       (double)t_drain / n);
	printf("\nper tenth (ns/buffer; live buffers grow 0 -> %u, then shrink)\n", n);
	printf("%-8s %14s %14s\n", "tenth", "create", "release");
	for (int s = 0; s < SLICES; s++)
		printf("%-8d %14.0f %14.0f\n", s + 1, create_ns[s], release_ns[s]);
	printf("last/first tenth: create %.2fx, release %.2fx\n\n",
	       create_ns[SLICES - 1] / create_ns[0], release_ns[SLICES - 1] / release_ns[0]);

	op_few = bench_median(few_v, PAIRS);
	op_many = bench_median(many_v, PAIRS);
	printf("per-op cost (export + fd + get + put + close + put), ns: %.0f with 10 live,\n"
	       "  %.0f with %u live (medians of %d pairs);\n", op_few, op_many, n, PAIRS);
	printf("  ratio per pair:");
	for (int p = 0; p < PAIRS; p++)
		printf(" %.2fx", ratio_v[p]);
	ratio = bench_median(ratio_v, PAIRS);
	printf("; median %.2fx (target <= 1.1x) %s\n", ratio, ratio <= 1.1 ? "met" : "MISSED");
	printf("fds per live buffer %.2f (target <= 1), RSS per live buffer %.0f B (target <= 600 B)\n",
	       (double)(s1.fds - s0.fds) / n, (double)(s1.rss_kib - s0.rss_kib) * 1024 / n);
	shared = shared_per_fd();
	printf("shared buffers (fd handed out and closed, reference kept) per fd of room: %.3f\n"
	       "  (%d fds of room; 0.5 would mean two fds each)\n\n", shared, SHARED_ROOM);
	bench_line(BENCH, "op_10_live", op_few, "ns");
	bench_line(BENCH, "op_many_live", op_many, "ns");
	bench_target(BENCH, "op_many_vs_10_live", ratio, "x", 1.1);
	bench_target(BENCH, "fds_per_live_buffer", (double)(s1.fds - s0.fds) / n, "count", 1);
	bench_target(BENCH, "rss_per_live_buffer", (double)(s1.rss_kib - s0.rss_kib) * 1024 / n,
		     "B", 600);
	bench_line(BENCH, "shared_buffers_per_fd", shared, "count");
	bench_line(BENCH, "buffers", n, "count");
	bench_line(BENCH, "buffers_target", TARGET, "count");
	bench_line(BENCH, "rlimit_nofile_hard", (double)rl.rlim_max, "count");
	bench_line(BENCH, "inotify_max_user_watches", (double)watches, "count");
	bench_line(BENCH, "max_map_count", (double)map_count, "count");
	bench_line(BENCH, "fds_per_buffer", (double)(s1.fds - s0.fds) / n, "count");
	bench_line(BENCH, "vmas_per_buffer", (double)(s1.maps - s0.maps) / n, "count");
	bench_line(BENCH, "rss_per_buffer", (double)(s1.rss_kib - s0.rss_kib) * 1024 / n, "B");
	bench_line(BENCH, "rss_rollup_per_buffer",
		   (double)(s1.rollup_rss_kib - s0.rollup_rss_kib) * 1024 / n, "B");
	bench_line(BENCH, "heap_per_buffer", (double)(s1.heap_bytes - s0.heap_bytes) / n, "B");
	bench_line(BENCH, "pte_per_buffer", (double)(s1.pte_kib - s0.pte_kib) * 1024 / n, "B");
	bench_line(BENCH, "slab_per_buffer_systemwide",
		   (double)(s1.slab_kib - s0.slab_kib) * 1024 / n, "B");
	bench_line(BENCH, "create_all", (double)t_create / 1e6, "ms");
	bench_line(BENCH, "release_all", (double)t_release / 1e6, "ms");
	bench_line(BENCH, "create_per_buffer", (double)t_create / n, "ns");
	bench_line(BENCH, "release_per_buffer", (double)t_release / n, "ns");
	bench_line(BENCH, "drain_all", (double)t_drain / 1e6, "ms");
	bench_line(BENCH, "create_last_over_first_tenth",
		   create_ns[SLICES - 1] / create_ns[0], "ratio");
	bench_line(BENCH, "release_last_over_first_tenth",
		   release_ns[SLICES - 1] / release_ns[0], "ratio");

	dmabuf_ctx_destroy(ctx);
	return 0;
}
