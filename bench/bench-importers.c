/* SPDX-License-Identifier: MIT */
/*
 * Many importers of one exporter: K importer processes (1 and 64), each with
 * its own context and connection, hammer one exporter process whose
 * context runs the service thread (dmabuf_ctx_start_thread). Each importer
 * imports a 1 MiB buffer once, then does N rounds of the four remote device
 * calls (dmabuf_attach, map, unmap, detach). Baseline: the same importers
 * send N rounds of four raw SEQPACKET request/responses of the same wire
 * sizes to a raw server, one thread in the exporter process polling all K
 * sockets.
 *
 * Figures per K: per-op cost = wall time until every importer is done /
 * every remote call made (ns per call; flat means the 64-importer cost is no
 * more than the 1-importer one, target 1.1x), the ratio to the raw server's
 * per-op cost, and the CPU the exporter process used (user + system time of
 * the whole process / wall time: 1.0 = one core busy). Run pinned and
 * unpinned (run.sh does both): with the service thread on, the exporter
 * should use the second CPU when it has one, as the raw server does.
 *
 * Every importer context holds one inotify instance: K is lowered (and the
 * report says so) when fs.inotify.max_user_instances leaves no room for 64
 * next to what the machine already uses. BENCH_SMOKE=1: K = 1 and 4, few
 * rounds.
 *
 * Fails (non-zero) only when a call fails or a result is wrong.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf.h"
#include "dmabuf-scm.h"
#include "bench-common.h"

#define BENCH "importers"
#define ROUNDS 3
#define SIZE (1ull << 20)
#define MAX_K 64
/* Wire sizes as bench-remote uses them (docs/protocol.md). */
static const uint32_t raw_req[4] = { 24 + 80, 24 + 16, 24 + 16, 24 + 8 };
static const uint32_t raw_rep[4] = { 24 + 8 + 8, 24 + 8 + 24 + 24 * 16, 24 + 8, 24 + 8 };

/* ---- an importer (child) -------------------------------------------------- */

static void imp_raw(int sock, uint32_t n)
{
	uint8_t buf[4096] = { 0 };

	for (uint32_t i = 0; i < n; i++) {
		for (int k = 0; k < 4; k++) {
			ssize_t r;

			memcpy(buf, &raw_rep[k], sizeof(uint32_t));
			if (send(sock, buf, raw_req[k], MSG_NOSIGNAL) != (ssize_t)raw_req[k])
				BENCH_FAIL("raw send: %s", strerror(errno));
			r = recv(sock, buf, sizeof(buf), 0);
			if (r != (ssize_t)raw_rep[k] || buf[raw_rep[k] - 1] != 0x5a)
				BENCH_FAIL("raw reply of %zd bytes", r);
		}
	}
}

static int imp_main(int ctl, int raw)
{
	struct dmabuf_device_info di = { .name = "bench-importer" };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	uint8_t pl[8];
	size_t len;
	int fd;

	BENCH_CHECK(dmabuf_ctx_new(NULL, &ctx));
	BENCH_CHECK(dmabuf_device_new(ctx, &di, &dev));
	BENCH_CHECK(dmabuf_recv_fd(ctl, &fd, pl, sizeof(pl), &len));
	BENCH_CHECK(dmabuf_get(ctx, fd, &buf));
	if (dmabuf_get_size(buf) != SIZE)
		BENCH_FAIL("import: size %llu", (unsigned long long)dmabuf_get_size(buf));
	bench_send_byte(ctl);
	for (;;) {
		struct { uint32_t cmd, n; } m;

		if (recv(ctl, &m, sizeof(m), 0) != (ssize_t)sizeof(m))
			BENCH_FAIL("ctl recv: %s", strerror(errno));
		if (m.cmd == 'Q')
			break;
		if (m.cmd == 'R') {
			imp_raw(raw, m.n);
		} else {
			for (uint32_t i = 0; i < m.n; i++) {
				struct dmabuf_attachment *att;
				struct dmabuf_sg_table *sgt;

				BENCH_CHECK(dmabuf_attach(buf, dev, &att));
				BENCH_CHECK(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt));
				if (dmabuf_sg_table_get_size(sgt) != SIZE)
					BENCH_FAIL("map: table of %llu bytes",
						   (unsigned long long)dmabuf_sg_table_get_size(sgt));
				BENCH_CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL));
				BENCH_CHECK(dmabuf_detach(buf, att));
			}
		}
		bench_send_byte(ctl);
	}
	BENCH_CHECK(dmabuf_put(buf));
	close(fd);
	BENCH_CHECK(dmabuf_device_destroy(dev));
	BENCH_CHECK(dmabuf_ctx_destroy(ctx));
	return 0;
}

/* ---- the exporter (parent) ------------------------------------------------ */

static int ctl[MAX_K], raw[MAX_K];
static pid_t pids[MAX_K];
static unsigned long releases;
static int exporter_state;

static void op_release(struct dmabuf *buf)
{
	(void)buf;
	__atomic_fetch_add(&releases, 1, __ATOMIC_SEQ_CST);
}

static const struct dmabuf_ops ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = op_release,
};

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Run time (ns) of each thread of this process (/proc/self/task/TID/
 * schedstat's first field: the tick-sampled utime and stime of a thread
 * that runs for a few us at a time are not to be trusted), and the
 * machine's idle CPU seconds (/proc/stat): how much of a core the service
 * thread takes, and whether any CPU was left over. */
#define MAX_TASKS 16
struct task_times {
	int n;
	long tid[MAX_TASKS];
	unsigned long long ns[MAX_TASKS];
	double idle;
};

static void task_times(struct task_times *t)
{
	long hz = sysconf(_SC_CLK_TCK);
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	FILE *f;

	t->n = 0;
	t->idle = 0;
	if ((f = fopen("/proc/stat", "r"))) {
		unsigned long long v[5] = { 0 };

		if (fscanf(f, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
			   &v[4]) == 5)
			t->idle = (double)(v[3] + v[4]) / (double)hz;
		fclose(f);
	}
	if (!d)
		return;
	while ((e = readdir(d)) && t->n < MAX_TASKS) {
		char path[300];

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		if (fscanf(f, "%llu", &t->ns[t->n]) == 1)
			t->tid[t->n++] = atol(e->d_name);
		fclose(f);
	}
	closedir(d);
}

/* Seconds of the thread that ran most between a and b. */
static double busiest_s(const struct task_times *a, const struct task_times *b)
{
	double best = 0;

	for (int i = 0; i < b->n; i++)
		for (int j = 0; j < a->n; j++)
			if (a->tid[j] == b->tid[i] && (double)(b->ns[i] - a->ns[j]) / 1e9 > best)
				best = (double)(b->ns[i] - a->ns[j]) / 1e9;
	return best;
}

/* Tells K importers to run (cmd 'L' or 'R'), serves the raw sockets for
 * 'R' from this thread, returns the wall time in ns and the process's CPU
 * use (cores) in *cores. */
static double busiest_cores, idle_cores;	/* of the last phase */

static double phase(int k, char cmd, uint32_t n, double *cores)
{
	struct pollfd p[2 * MAX_K];
	struct { uint32_t cmd, n; } m = { (uint32_t)cmd, n };
	struct task_times tt0, tt1;
	double c0 = cpu_s();
	uint64_t t0 = bench_now_ns();
	int left = k;

	task_times(&tt0);
	for (int i = 0; i < k; i++)
		if (send(ctl[i], &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
			BENCH_FAIL("ctl send: %s", strerror(errno));
	for (int i = 0; i < k; i++) {
		p[i] = (struct pollfd){ .fd = ctl[i], .events = POLLIN };
		p[k + i] = (struct pollfd){ .fd = raw[i], .events = POLLIN };
	}
	while (left > 0) {
		if (poll(p, (nfds_t)(cmd == 'R' ? 2 * k : k), -1) < 0) {
			if (errno == EINTR)
				continue;
			BENCH_FAIL("poll: %s", strerror(errno));
		}
		for (int i = 0; i < k; i++) {
			if (p[i].revents) {
				bench_recv_byte(ctl[i]);
				p[i].fd = -1;
				left--;
			}
			if (cmd == 'R' && p[k + i].revents) {
				uint8_t buf[4096];
				uint32_t rep;
				ssize_t r = recv(raw[i], buf, sizeof(buf), 0);

				if (r < 4)
					BENCH_FAIL("raw request: %zd", r);
				memcpy(&rep, buf, sizeof(rep));
				if (rep < 1 || rep > sizeof(buf))
					BENCH_FAIL("raw request asks for %u bytes", rep);
				buf[rep - 1] = 0x5a;
				if (send(raw[i], buf, rep, MSG_NOSIGNAL) != (ssize_t)rep)
					BENCH_FAIL("raw send: %s", strerror(errno));
			}
		}
	}
	{
		double wall = (double)(bench_now_ns() - t0);

		task_times(&tt1);
		*cores = (cpu_s() - c0) / (wall / 1e9);
		busiest_cores = busiest_s(&tt0, &tt1) / (wall / 1e9);
		/* in jiffies: coarse, enough to tell none from some */
		idle_cores = (tt1.idle - tt0.idle) / (wall / 1e9);
		return wall;
	}
}

/* inotify instances in use on the machine (every process we may read). */
static int inotify_in_use(void)
{
	DIR *proc = opendir("/proc");
	struct dirent *pe;
	int n = 0;

	if (!proc)
		return 0;
	while ((pe = readdir(proc))) {
		char path[300], link[64];
		DIR *fds;
		struct dirent *fe;

		if (pe->d_name[0] < '0' || pe->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", pe->d_name);
		fds = opendir(path);
		if (!fds)
			continue;
		while ((fe = readdir(fds))) {
			char fp[600];
			ssize_t l;

			snprintf(fp, sizeof(fp), "%s/%s", path, fe->d_name);
			l = readlink(fp, link, sizeof(link) - 1);
			if (l > 0) {
				link[l] = 0;
				n += strcmp(link, "anon_inode:inotify") == 0;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return n;
}

struct kres {
	int k;
	double lib, raw;		/* ns per call, median of rounds */
	double lib_cores, raw_cores;	/* exporter process, median */
	double lib_busiest, lib_idle;	/* its busiest thread; machine idle */
};

static void run_k(struct dmabuf_ctx *ctx, int k, uint32_t n, int rounds, struct kres *r)
{
	struct dmabuf_export_info info = {
		.exp_name = "bench-importers", .ops = &ops, .size = SIZE,
		.flags = O_RDWR, .priv = &exporter_state, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	double lib[ROUNDS], rawv[ROUNDS], lc[ROUNDS], rc[ROUNDS], lb[ROUNDS], li[ROUNDS], dummy;
	struct dmabuf *buf;
	int fd;

	BENCH_CHECK(dmabuf_export(ctx, &info, &buf));
	fd = dmabuf_fd(buf, O_CLOEXEC);
	BENCH_CHECK(fd);
	for (int i = 0; i < k; i++) {
		int a[2], b[2];

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, a) < 0 ||
		    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, b) < 0)
			BENCH_FAIL("socketpair: %s", strerror(errno));
		pids[i] = fork();
		if (pids[i] < 0)
			BENCH_FAIL("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			for (int j = 0; j < i; j++) {
				close(ctl[j]);
				close(raw[j]);
			}
			close(a[0]);
			close(b[0]);
			_exit(imp_main(a[1], b[1]));
		}
		close(a[1]);
		close(b[1]);
		ctl[i] = a[0];
		raw[i] = b[0];
		BENCH_CHECK(dmabuf_send_fd(ctl[i], fd, "imp", 4));
		bench_recv_byte(ctl[i]);
	}
	phase(k, 'L', n / 8 + 1, &dummy);	/* warm-up */
	phase(k, 'R', n / 8 + 1, &dummy);
	for (int i = 0; i < rounds; i++) {
		lib[i] = phase(k, 'L', n, &lc[i]) / (4.0 * n * k);
		lb[i] = busiest_cores;
		li[i] = idle_cores;
		rawv[i] = phase(k, 'R', n, &rc[i]) / (4.0 * n * k);
	}
	r->k = k;
	r->lib = bench_median(lib, (size_t)rounds);
	r->raw = bench_median(rawv, (size_t)rounds);
	r->lib_cores = bench_median(lc, (size_t)rounds);
	r->raw_cores = bench_median(rc, (size_t)rounds);
	r->lib_busiest = bench_median(lb, (size_t)rounds);
	r->lib_idle = bench_median(li, (size_t)rounds);
	for (int i = 0; i < k; i++) {
		struct { uint32_t cmd, n; } m = { (uint32_t)'Q', 0 };
		int status;

		if (send(ctl[i], &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
			BENCH_FAIL("ctl send: %s", strerror(errno));
		if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			BENCH_FAIL("importer %d failed (status %#x)", i, status);
		close(ctl[i]);
		close(raw[i]);
	}
	BENCH_CHECK(dmabuf_put(buf));
	close(fd);
}

int main(void)
{
	bool smoke = bench_smoke();
	int ks[2] = { 1, smoke ? 4 : MAX_K }, rounds = smoke ? 1 : ROUNDS;
	uint32_t n = smoke ? 4 : 300;
	long limit = -1;
	FILE *f = fopen("/proc/sys/fs/inotify/max_user_instances", "r");
	struct dmabuf_ctx *ctx;
	struct kres res[2];
	uint64_t deadline;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (f) {
		if (fscanf(f, "%ld", &limit) != 1)
			limit = -1;
		fclose(f);
	}
	if (limit > 0) {
		long room = limit - inotify_in_use() - 16 - 1;

		if (room < ks[1])
			ks[1] = room < 2 ? 2 : (int)room;
	}
	BENCH_CHECK(dmabuf_ctx_new(NULL, &ctx));
	BENCH_CHECK(dmabuf_ctx_start_thread(ctx));
	for (int i = 0; i < 2; i++)
		run_k(ctx, ks[i], ks[i] > 8 ? n / 4 : n, rounds, &res[i]);
	deadline = bench_now_ns() + 5000000000ull;
	while (__atomic_load_n(&releases, __ATOMIC_SEQ_CST) < 2) {
		if (bench_now_ns() > deadline)
			BENCH_FAIL("%lu of 2 buffers released after 5 s", releases);
		usleep(1000);
	}
	BENCH_CHECK(dmabuf_ctx_stop_thread(ctx));
	BENCH_CHECK(dmabuf_ctx_destroy(ctx));

	{
		cpu_set_t set;

		sched_getaffinity(0, sizeof(set), &set);
		printf("\n%d and %d importer processes, one exporter with the service thread (%d CPUs)\n",
		       ks[0], ks[1], CPU_COUNT(&set));
	}
	if (!smoke && ks[1] < MAX_K)
		printf("WARNING: %d importers, not %d: fs.inotify.max_user_instances (%ld) leaves no room\n",
		       ks[1], MAX_K, limit);
	printf("  %-10s %14s %14s %8s %16s %16s\n", "importers", "lib ns/call", "raw ns/call",
	       "ratio", "exporter cores", "raw srv cores");
	for (int i = 0; i < 2; i++)
		printf("  %-10d %14.0f %14.0f %7.2fx %16.2f %16.2f\n", res[i].k, res[i].lib,
		       res[i].raw, res[i].lib / res[i].raw, res[i].lib_cores, res[i].raw_cores);
	printf("\n");
	bench_line(BENCH, "importers", ks[1], "count");
	bench_line(BENCH, "call_1", res[0].lib, "ns");
	bench_line(BENCH, "call_many", res[1].lib, "ns");
	bench_line(BENCH, "raw_call_1", res[0].raw, "ns");
	bench_line(BENCH, "raw_call_many", res[1].raw, "ns");
	bench_line(BENCH, "exporter_cores_many", res[1].lib_cores, "cores");
	bench_line(BENCH, "raw_server_cores_many", res[1].raw_cores, "cores");
	bench_line(BENCH, "exporter_busiest_thread_cores_many", res[1].lib_busiest, "cores");
	bench_line(BENCH, "machine_idle_cores_many", res[1].lib_idle, "cores");
	bench_ratio(BENCH, "call_many_vs_1", "per-op cost, many importers vs 1 (flat)",
		    res[1].lib, res[0].lib, "1 importer", 1.1);
	bench_ratio(BENCH, "call_many_vs_raw", "per-op cost, many importers",
		    res[1].lib, res[1].raw, "raw server", 1.2);
	bench_ratio(BENCH, "exporter_vs_raw_cores", "exporter CPU use vs raw server's",
		    res[1].lib_cores, res[1].raw_cores, "raw server", 0);
	return 0;
}
