/* SPDX-License-Identifier: MIT */
/*
 * Many importers of one exporter: K importer processes (64) and one more
 * that runs alone, each with its own context and connection, hammer one
 * exporter process whose context runs the service thread
 * (dmabuf_ctx_start_thread). Each importer imports a 1 MiB buffer once (the
 * lone one its own, the K one between them), then does rounds of the four
 * remote device calls (dmabuf_attach, map, unmap, detach). On wire version
 * 8 all four are one-way in the steady state (ATTACH packed with the MAP
 * answered from the importer's cache, UNMAP with DETACH), so every block
 * of rounds ends with a round trip (dmabuf_get_info(): DESCRIBE, answered
 * after everything the connection sent before it): the clock stops when
 * the exporter has handled every call, not when the importer has queued
 * them. Baselines, served by one thread of the exporter process polling
 * every raw socket: the same importers making four raw SEQPACKET
 * request/responses of the same wire sizes per round ("raw", the issue's
 * round trip), and sending the two packets the library sends per round
 * with the same round trip per block ("raw one-way").
 *
 * A round runs six phases back to back (library, raw, raw one-way; 1
 * importer and K), in the reverse order every other round; the lone
 * importer makes K times the rounds of each of the K, so every phase makes
 * the same calls and the same round trips. Both sets stay connected the
 * whole run (in each phase the other set is idle). Figures: per-op cost =
 * wall time of a phase / its calls (median of ROUNDS rounds); "many vs 1"
 * = the median over the rounds of the ratio of the two phases of a round
 * (flat: target 1.1x); the CPU the exporter process used (user + system
 * time of the whole process / wall time: 1.0 = one core busy) and its
 * busiest thread. Run pinned and unpinned (run.sh does both): with the
 * service thread on, the exporter should use the second CPU when it has
 * one, as the raw server does.
 *
 * Every importer context holds one inotify instance: K is lowered (and the
 * report says so) when fs.inotify.max_user_instances leaves no room for 64
 * next to what the machine already uses. BENCH_SMOKE=1: K = 4, few rounds.
 * BENCH_PROFILE=L1|LK|R1|RK|O1|OK (library, raw, raw one-way; 1 or K
 * importers): 20 phases of that kind only, for perf or strace;
 * BENCH_IMPORTERS=K another K.
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
#define ROUNDS 7
#define SIZE (1ull << 20)
#define MAX_K 64
/* Wire sizes as bench-remote uses them (docs/protocol.md). */
static const uint32_t raw_req[4] = { 24 + 80, 24 + 16, 24 + 16, 24 + 8 };
static const uint32_t raw_rep[4] = { 24 + 8 + 8, 24 + 8 + 24 + 24 * 16, 24 + 8, 24 + 8 };
/* The packets the library's importer sends per round on wire version 8
 * (ATTACH + announced MAP, UNMAP + DETACH: one-way) and its sync, DESCRIBE
 * and DESCRIBE_REPLY. */
static const uint32_t oneway_pkt[2] = { 24 + 80 + 24 + 24, 24 + 16 + 24 + 8 };
static const uint32_t sync_req = 24, sync_rep = 24 + 96;

/* ---- an importer (child) -------------------------------------------------- */

/* What the parent tells an importer: run n rounds of kind cmd, ending each
 * block of sync rounds (and the last) with a round trip. */
struct ctl_msg {
	uint32_t cmd, n, sync;
};

/* One raw packet: its first 4 bytes say how many bytes the reply has (0:
 * none, a one-way packet). */
static void raw_packet(int sock, uint8_t *buf, uint32_t req, uint32_t rep)
{
	ssize_t r;

	memcpy(buf, &rep, sizeof(uint32_t));
	if (send(sock, buf, req, MSG_NOSIGNAL) != (ssize_t)req)
		BENCH_FAIL("raw send: %s", strerror(errno));
	if (rep == 0)
		return;
	r = recv(sock, buf, 4096, 0);
	if (r != (ssize_t)rep || buf[rep - 1] != 0x5a)
		BENCH_FAIL("raw reply of %zd bytes", r);
}

static void imp_raw(int sock, const struct ctl_msg *m)
{
	uint8_t buf[4096] = { 0 };

	for (uint32_t i = 0; i < m->n; i++) {
		if (m->cmd == 'R') {
			for (int k = 0; k < 4; k++)
				raw_packet(sock, buf, raw_req[k], raw_rep[k]);
			continue;
		}
		/* 'O': what the library's importer sends per round (the one-way
		 * ATTACH packed with the announced MAP, then UNMAP with DETACH),
		 * and its sync round trip. */
		raw_packet(sock, buf, oneway_pkt[0], 0);
		raw_packet(sock, buf, oneway_pkt[1], 0);
		if ((i + 1) % m->sync == 0 || i + 1 == m->n)
			raw_packet(sock, buf, sync_req, sync_rep);
	}
}

static void imp_lib(struct dmabuf *buf, struct dmabuf_device *dev, const struct ctl_msg *m)
{
	for (uint32_t i = 0; i < m->n; i++) {
		struct dmabuf_attachment *att;
		struct dmabuf_sg_table *sgt;

		BENCH_CHECK(dmabuf_attach(buf, dev, &att));
		BENCH_CHECK(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt));
		if (dmabuf_sg_table_get_size(sgt) != SIZE)
			BENCH_FAIL("map: table of %llu bytes",
				   (unsigned long long)dmabuf_sg_table_get_size(sgt));
		BENCH_CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL));
		BENCH_CHECK(dmabuf_detach(buf, att));
		if ((i + 1) % m->sync == 0 || i + 1 == m->n) {
			/* DESCRIBE, a round trip: the exporter answers a
			 * connection's requests in order, so everything sent
			 * before it has been handled (the calls above are
			 * one-way: without it the clock would stop while the
			 * exporter still has them queued). */
			struct dmabuf_info info = { .struct_size = sizeof(info) };

			BENCH_CHECK(dmabuf_get_info(buf, &info));
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
		struct ctl_msg m;

		if (recv(ctl, &m, sizeof(m), 0) != (ssize_t)sizeof(m))
			BENCH_FAIL("ctl recv: %s", strerror(errno));
		if (m.cmd == 'Q')
			break;
		if (m.sync == 0)
			BENCH_FAIL("ctl: sync 0");
		if (m.cmd == 'L')
			imp_lib(buf, dev, &m);
		else
			imp_raw(raw, &m);
		bench_send_byte(ctl);
	}
	BENCH_CHECK(dmabuf_put(buf));
	close(fd);
	BENCH_CHECK(dmabuf_device_destroy(dev));
	BENCH_CHECK(dmabuf_ctx_destroy(ctx));
	return 0;
}

/* ---- the exporter (parent) ------------------------------------------------ */

/* Importer 0 runs alone (the 1-importer phases), importers 1..K the K
 * concurrent ones: both sets live through the whole run, so their phases
 * alternate round by round and the machine's drift hits both alike. */
static int ctl[MAX_K + 1], raw[MAX_K + 1];
static pid_t pids[MAX_K + 1];
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

/* Run time (ns, schedstat) of every thread of importers first..first+k-1. */
static unsigned long long importers_ns(int first, int k)
{
	unsigned long long sum = 0;

	for (int i = first; i < first + k; i++) {
		char path[64];
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "/proc/%d/task", (int)pids[i]);
		if (!(d = opendir(path)))
			continue;
		while ((e = readdir(d))) {
			char sp[340];
			unsigned long long ns;
			FILE *f;

			if (e->d_name[0] == '.')
				continue;
			snprintf(sp, sizeof(sp), "%s/%.255s/schedstat", path, e->d_name);
			if ((f = fopen(sp, "r"))) {
				if (fscanf(f, "%llu", &ns) == 1)
					sum += ns;
				fclose(f);
			}
		}
		closedir(d);
	}
	return sum;
}

static unsigned long long threads_ns(const struct task_times *t)
{
	unsigned long long sum = 0;

	for (int i = 0; i < t->n; i++)
		sum += t->ns[i];
	return sum;
}

/* Tells importers first..first+k-1 to run (ctl_msg), serves the raw
 * sockets for 'R' and 'O' from this thread, returns the wall time in ns and
 * the process's CPU use (cores) in *cores. */
static double busiest_cores, idle_cores;	/* of the last phase */
/* CPU time (ns) the last phase took: the exporter process's threads and
 * the phase's importers, which other load on the CPU does not inflate as
 * it does the wall time (the scheduler shares a CPU between tasks, and a
 * phase of 65 tasks gets more of it than one of 2). */
static double phase_cpu_ns, phase_exp_ns;

static double phase(int first, int k, char cmd, uint32_t n, uint32_t sync, double *cores)
{
	struct pollfd p[2 * MAX_K];
	struct ctl_msg m = { (uint32_t)cmd, n, sync };
	struct task_times tt0, tt1;
	unsigned long long imp0 = importers_ns(first, k);
	double c0 = cpu_s();
	uint64_t t0 = bench_now_ns();
	int left = k;

	task_times(&tt0);
	for (int i = 0; i < k; i++)
		if (send(ctl[first + i], &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
			BENCH_FAIL("ctl send: %s", strerror(errno));
	for (int i = 0; i < k; i++) {
		p[i] = (struct pollfd){ .fd = ctl[first + i], .events = POLLIN };
		p[k + i] = (struct pollfd){ .fd = raw[first + i], .events = POLLIN };
	}
	while (left > 0) {
		if (poll(p, (nfds_t)(cmd != 'L' ? 2 * k : k), -1) < 0) {
			if (errno == EINTR)
				continue;
			BENCH_FAIL("poll: %s", strerror(errno));
		}
		for (int i = 0; i < k; i++) {
			if (p[i].revents) {
				bench_recv_byte(p[i].fd);
				p[i].fd = -1;
				left--;
			}
			if (cmd != 'L' && p[k + i].revents) {
				uint8_t buf[4096];
				uint32_t rep;
				ssize_t r = recv(p[k + i].fd, buf, sizeof(buf), 0);

				if (r < 4)
					BENCH_FAIL("raw request: %zd", r);
				memcpy(&rep, buf, sizeof(rep));
				if (rep > sizeof(buf))
					BENCH_FAIL("raw request asks for %u bytes", rep);
				if (rep == 0)
					continue;	/* one-way */
				buf[rep - 1] = 0x5a;
				if (send(p[k + i].fd, buf, rep, MSG_NOSIGNAL) != (ssize_t)rep)
					BENCH_FAIL("raw send: %s", strerror(errno));
			}
		}
	}
	{
		double wall = (double)(bench_now_ns() - t0);

		task_times(&tt1);
		*cores = (cpu_s() - c0) / (wall / 1e9);
		/* after the exporter's own figures: reading 64 importers'
		 * /proc files is not the exporter's work */
		phase_exp_ns = (double)(threads_ns(&tt1) - threads_ns(&tt0));
		phase_cpu_ns = phase_exp_ns + (double)(importers_ns(first, k) - imp0);
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

/* Starts importers first..first+k-1, each importing buf. */
static void spawn(int first, int k, int fd)
{
	for (int i = first; i < first + k; i++) {
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
}

static void stop(int n)
{
	for (int i = 0; i < n; i++) {
		struct ctl_msg m = { (uint32_t)'Q', 0, 0 };
		int status;

		if (send(ctl[i], &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
			BENCH_FAIL("ctl send: %s", strerror(errno));
		if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			BENCH_FAIL("importer %d failed (status %#x)", i, status);
		close(ctl[i]);
		close(raw[i]);
	}
}

static int export_one(struct dmabuf_ctx *ctx, struct dmabuf **buf)
{
	struct dmabuf_export_info info = {
		.exp_name = "bench-importers", .ops = &ops, .size = SIZE,
		.flags = O_RDWR, .priv = &exporter_state, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	int fd;

	BENCH_CHECK(dmabuf_export(ctx, &info, buf));
	fd = dmabuf_fd(*buf, O_CLOEXEC);
	BENCH_CHECK(fd);
	return fd;
}

/* The six phase kinds of a round: library, raw round trips, raw one-way;
 * each with 1 importer and with K. */
enum { P_L1, P_LK, P_R1, P_RK, P_O1, P_OK, NPHASE };
static const char phase_cmd[NPHASE] = { 'L', 'L', 'R', 'R', 'O', 'O' };
static const char *const phase_name[NPHASE] = { "L1", "LK", "R1", "RK", "O1", "OK" };

int main(void)
{
	bool smoke = bench_smoke();
	const char *profile = getenv("BENCH_PROFILE");
	int km = smoke ? 4 : MAX_K, rounds = smoke ? 1 : ROUNDS;
	/* Rounds per importer of a K phase; the lone importer does K times as
	 * many, so both phases make the same number of calls, and both make
	 * one sync round trip per nk rounds. */
	uint32_t nk = smoke ? 4 : 75;
	long limit = -1;
	FILE *f = fopen("/proc/sys/fs/inotify/max_user_instances", "r");
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf1, *bufk;
	int fd1, fdk;
	double v[NPHASE][ROUNDS], cores[NPHASE][ROUNDS], lb[ROUNDS], li[ROUNDS];
	double ratio_l[ROUNDS], ratio_r[ROUNDS], ratio_o[ROUNDS];
	double cpu[NPHASE][ROUNDS], cratio_l[ROUNDS], cratio_r[ROUNDS], cratio_o[ROUNDS];
	double cpu_exp[NPHASE][ROUNDS];
	double med[NPHASE], medc[NPHASE], medcpu[NPHASE], medexp[NPHASE];
	uint64_t deadline;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("BENCH_IMPORTERS")) {
		/* For profiles: K other than 64. */
		km = atoi(getenv("BENCH_IMPORTERS"));
		if (km < 1 || km > MAX_K)
			BENCH_FAIL("BENCH_IMPORTERS: 1..%d", MAX_K);
	}
	if (f) {
		if (fscanf(f, "%ld", &limit) != 1)
			limit = -1;
		fclose(f);
	}
	if (limit > 0) {
		/* K + 1 importers, the exporter, and some slack. */
		long room = limit - inotify_in_use() - 16 - 2;

		if (room < km)
			km = room < 2 ? 2 : (int)room;
	}
	BENCH_CHECK(dmabuf_ctx_new(NULL, &ctx));
	BENCH_CHECK(dmabuf_ctx_start_thread(ctx));
	fd1 = export_one(ctx, &buf1);
	fdk = export_one(ctx, &bufk);
	spawn(0, 1, fd1);
	spawn(1, km, fdk);

	/* Warm-up: every kind once, a quarter of a round's calls. */
	for (int p = 0; p < NPHASE; p++) {
		double d;
		bool lone = p % 2 == 0;

		phase(lone ? 0 : 1, lone ? 1 : km, phase_cmd[p],
		      lone ? (uint32_t)km * nk / 4 + 1 : nk / 4 + 1, nk / 4 + 1, &d);
	}
	if (profile) {
		/* For perf / strace: 20 rounds of one kind only. */
		int p = 0;
		double t = 0, c = 0, d;

		while (p < NPHASE && strcmp(profile, phase_name[p]))
			p++;
		if (p == NPHASE)
			BENCH_FAIL("BENCH_PROFILE: one of L1 LK R1 RK O1 OK");
		for (int r = 0; r < 20; r++) {
			t += phase(p % 2 ? 1 : 0, p % 2 ? km : 1, phase_cmd[p],
				   p % 2 ? nk : (uint32_t)km * nk, nk, &d);
			c += phase_cpu_ns;
		}
		printf("%s: %.0f ns per call, %.0f ns CPU per call (%d importers)\n", profile,
		       t / (20.0 * 4 * nk * km), c / (20.0 * 4 * nk * km), p % 2 ? km : 1);
	} else {
		for (int r = 0; r < rounds; r++) {
			/* Odd rounds run the kinds in the reverse order. */
			for (int j = 0; j < NPHASE; j++) {
				int p = r % 2 ? NPHASE - 1 - j : j;
				bool lone = p % 2 == 0;

				v[p][r] = phase(lone ? 0 : 1, lone ? 1 : km, phase_cmd[p],
						lone ? (uint32_t)km * nk : nk, nk, &cores[p][r]) /
					  (4.0 * nk * km);
				cpu[p][r] = phase_cpu_ns / (4.0 * nk * km);
				cpu_exp[p][r] = phase_exp_ns / (4.0 * nk * km);
				if (p == P_LK) {
					lb[r] = busiest_cores;
					li[r] = idle_cores;
				}
			}
			ratio_l[r] = v[P_LK][r] / v[P_L1][r];
			ratio_r[r] = v[P_RK][r] / v[P_R1][r];
			ratio_o[r] = v[P_OK][r] / v[P_O1][r];
			cratio_l[r] = cpu[P_LK][r] / cpu[P_L1][r];
			cratio_r[r] = cpu[P_RK][r] / cpu[P_R1][r];
			cratio_o[r] = cpu[P_OK][r] / cpu[P_O1][r];
		}
	}
	stop(1 + km);
	BENCH_CHECK(dmabuf_put(buf1));
	BENCH_CHECK(dmabuf_put(bufk));
	close(fd1);
	close(fdk);
	deadline = bench_now_ns() + 5000000000ull;
	while (__atomic_load_n(&releases, __ATOMIC_SEQ_CST) < 2) {
		if (bench_now_ns() > deadline)
			BENCH_FAIL("%lu of 2 buffers released after 5 s", releases);
		usleep(1000);
	}
	BENCH_CHECK(dmabuf_ctx_stop_thread(ctx));
	BENCH_CHECK(dmabuf_ctx_destroy(ctx));
	if (profile)
		return 0;

	for (int p = 0; p < NPHASE; p++) {
		med[p] = bench_median(v[p], (size_t)rounds);
		medc[p] = bench_median(cores[p], (size_t)rounds);
		medcpu[p] = bench_median(cpu[p], (size_t)rounds);
		medexp[p] = bench_median(cpu_exp[p], (size_t)rounds);
	}
	{
		cpu_set_t set;

		sched_getaffinity(0, sizeof(set), &set);
		printf("\n1 and %d importer processes, one exporter with the service thread (%d CPUs), %d rounds\n",
		       km, CPU_COUNT(&set), rounds);
	}
	if (!smoke && km < MAX_K)
		printf("WARNING: %d importers, not %d: fs.inotify.max_user_instances (%ld) leaves no room\n",
		       km, MAX_K, limit);
	printf("  %-10s %14s %14s %14s %16s %16s\n", "importers", "lib ns/call", "raw rt ns/call",
	       "raw 1way ns/c", "exporter cores", "raw srv cores");
	for (int i = 0; i < 2; i++)
		printf("  %-10d %14.0f %14.0f %14.0f %16.2f %16.2f\n", i ? km : 1, med[P_L1 + i],
		       med[P_R1 + i], med[P_O1 + i], medc[P_L1 + i], medc[P_R1 + i]);
	printf("  CPU ns per call (exporter + importers): lib %.0f / %.0f, raw %.0f / %.0f, raw one-way %.0f / %.0f\n",
	       medcpu[P_L1], medcpu[P_LK], medcpu[P_R1], medcpu[P_RK], medcpu[P_O1], medcpu[P_OK]);
	printf("  of it the exporter process's threads: lib %.0f / %.0f, raw %.0f / %.0f, raw one-way %.0f / %.0f\n",
	       medexp[P_L1], medexp[P_LK], medexp[P_R1], medexp[P_RK], medexp[P_O1], medexp[P_OK]);
	printf("\n");
	bench_line(BENCH, "importers", km, "count");
	bench_line(BENCH, "call_1", med[P_L1], "ns");
	bench_line(BENCH, "call_many", med[P_LK], "ns");
	bench_line(BENCH, "raw_call_1", med[P_R1], "ns");
	bench_line(BENCH, "raw_call_many", med[P_RK], "ns");
	bench_line(BENCH, "raw_oneway_call_1", med[P_O1], "ns");
	bench_line(BENCH, "raw_oneway_call_many", med[P_OK], "ns");
	bench_line(BENCH, "cpu_call_1", medcpu[P_L1], "ns");
	bench_line(BENCH, "cpu_call_many", medcpu[P_LK], "ns");
	bench_line(BENCH, "cpu_exporter_call_1", medexp[P_L1], "ns");
	bench_line(BENCH, "cpu_exporter_call_many", medexp[P_LK], "ns");
	bench_line(BENCH, "raw_cpu_call_1", medcpu[P_R1], "ns");
	bench_line(BENCH, "raw_cpu_call_many", medcpu[P_RK], "ns");
	bench_line(BENCH, "raw_oneway_cpu_call_1", medcpu[P_O1], "ns");
	bench_line(BENCH, "raw_oneway_cpu_call_many", medcpu[P_OK], "ns");
	bench_line(BENCH, "exporter_cores_many", medc[P_LK], "cores");
	bench_line(BENCH, "raw_server_cores_many", medc[P_RK], "cores");
	bench_line(BENCH, "raw_oneway_server_cores_many", medc[P_OK], "cores");
	bench_line(BENCH, "exporter_busiest_thread_cores_many", bench_median(lb, (size_t)rounds), "cores");
	bench_line(BENCH, "machine_idle_cores_many", bench_median(li, (size_t)rounds), "cores");
	/* Ratios: the median of each round's ratio (its two phases ran back to
	 * back), not the ratio of the medians. */
	bench_ratio(BENCH, "call_many_vs_1", "per-op cost, many importers vs 1 (flat)",
		    bench_median(ratio_l, (size_t)rounds), 1.0, "1 importer", 1.1);
	bench_ratio(BENCH, "raw_many_vs_1", "raw round trips, many vs 1",
		    bench_median(ratio_r, (size_t)rounds), 1.0, "1 importer", 0);
	bench_ratio(BENCH, "raw_oneway_many_vs_1", "raw one-way packets, many vs 1",
		    bench_median(ratio_o, (size_t)rounds), 1.0, "1 importer", 0);
	/* The same target on the CPU time: the wall ratio of a CPU shared
	 * with other load favours the phase of more tasks. */
	bench_ratio(BENCH, "cpu_many_vs_1", "CPU per op, many importers vs 1 (flat)",
		    bench_median(cratio_l, (size_t)rounds), 1.0, "1 importer", 1.1);
	bench_ratio(BENCH, "raw_cpu_many_vs_1", "raw round trips' CPU, many vs 1",
		    bench_median(cratio_r, (size_t)rounds), 1.0, "1 importer", 0);
	bench_ratio(BENCH, "raw_oneway_cpu_many_vs_1", "raw one-way packets' CPU, many vs 1",
		    bench_median(cratio_o, (size_t)rounds), 1.0, "1 importer", 0);
	bench_ratio(BENCH, "call_many_vs_raw", "per-op cost, many importers",
		    med[P_LK], med[P_RK], "raw server", 1.2);
	bench_ratio(BENCH, "call_many_vs_raw_oneway", "per-op cost, many importers",
		    med[P_LK], med[P_OK], "raw one-way", 0);
	bench_ratio(BENCH, "exporter_vs_raw_cores", "exporter CPU use vs raw server's",
		    medc[P_LK], medc[P_RK], "raw server", 0);
	return 0;
}
