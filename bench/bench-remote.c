/* SPDX-License-Identifier: MIT */
/*
 * Cross-process sharing: two real processes (fork), connected by socketpairs
 * of their own. The parent, A, exports; the child, B, imports. Every library
 * figure is measured in the same run as a raw-syscall baseline between the
 * same two processes, rounds interleaved (baseline round, library round), and
 * reported as a ratio of the medians.
 *
 *   share         A sends a buffer fd B already imported (dmabuf_send_fd, 64-byte
 *                 payload); B dmabuf_recv_fd, dmabuf_get (finds the proxy),
 *                 dmabuf_put, close, replies 1 byte.
 *                 Baseline: raw SCM_RIGHTS of a memfd with a 64-byte header
 *                 (sendmsg/recvmsg by hand), 1-byte reply.          target 1.2x
 *   import        the same with a buffer B has not seen: dmabuf_get sends
 *                 IMPORT (with the fd) on the already open connection and
 *                 dmabuf_put sends RELEASE. Same baseline.          target 2.5x
 *   cold import   the same without any other proxy of A in B. The library
 *                 keeps an idle connection open, so this does not measure a
 *                 connect; bench-handoff's `connect` figure does (a fresh
 *                 importer context per cycle).
 *   attach/map/unmap/detach  on a proxy (1 MiB, B's device), each timed, vs a
 *                 raw SEQPACKET request/response of the wire sizes of that
 *                 operation, interleaved in the same loop.         target 1.2x
 *                 Two proxies, measured in alternate rounds:
 *                 cached  the exporter's map op is dmabuf_backing_map(), so
 *                         from wire version 7 a MAP after a buffer's first
 *                         is answered from B's cache and sent one-way
 *                         (`remote_cached_map`: no round trip left);
 *                 rt      its map op is a thin wrapper of it, so the cache
 *                         does not apply and every MAP is a round trip
 *                         (`remote_rt_map`), as are the first MAP of a buffer,
 *                         a dynamic attachment's MAP and PIN. The wrapper
 *                         counts its calls: each MAP must reach it.
 *   64 MiB        A sends the fd, B imports and dmabuf_mmap()s all of it
 *                 (access), then B reads one byte per page (touch); vs copying
 *                 64 MiB through an AF_UNIX stream socket (write/read loop).
 *
 * The exporter serves its peer in one of two ways, and every figure that
 * needs the exporter (all but share) is measured with both:
 *   dispatch      A's own loop polls its socket and dmabuf_ctx_get_fd() and
 *                 calls dmabuf_ctx_dispatch() when the context is readable;
 *   thread        dmabuf_ctx_start_thread(); A's main thread just blocks.
 *
 * BENCH_PROFILE=KIND runs one figure, for strace or perf: import, share,
 * raw (1000 rounds), or ops (2000 rounds of the four remote calls and their
 * raw baselines on the cached proxy; prints their means, the median map and
 * the context switches per round of either process), ops-rt (the same on
 * the round-trip proxy); KIND-thread with the service thread serving.
 *
 * BENCH_SMOKE=1: one round of a few iterations of each figure and a 1 MiB
 * "64 MiB" figure, nothing judged (the `bench-remote-smoke` test).
 *
 * Fails (non-zero) only when an API call fails or data is wrong.
 */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf.h"
#include "dmabuf-scm.h"
#include "bench-common.h"

#define BENCH "remote"
#define ROUNDS 7
#define PAYLOAD 64
#define N_SHARE 2000
#define N_IMPORT 300
#define N_COLD 150
#define N_OPS 400
#define BIG_ROUNDS 5
#define BIG_SIZE (64ull << 20)
#define SMOKE_BIG_SIZE (1ull << 20)
#define SMALL_SIZE (64ull << 10)
#define PIN_SIZE (1ull << 20)
#define PAGE 4096ull
#define COPY_CHUNK (256u << 10)

/* Wire sizes (docs/protocol.md): 24-byte header, 8-byte reply header. */
#define W_ATTACH_REQ (24 + 80)
#define W_ATTACH_REP (24 + 8 + 8)
#define W_MAP_REQ (24 + 16)
#define W_MAP_REP_FIXED (24 + 8 + 24)
#define W_ID_REQ (24 + 8)
#define W_MAP_ID_REQ (24 + 16)
#define W_EMPTY_REP (24 + 8)

/* The two proxies B holds while the remote calls are measured. */
enum pin_which { PIN_CACHED, PIN_RT, NPINS };

enum cmd {
	C_PIN = 1, C_UNPIN, C_SHARE_LIB, C_SHARE_RAW, C_IMPORT_LIB, C_OPS,
	C_BIG_LIB, C_BIG_RAW, C_QUIT,
};

struct ctl_msg {
	uint32_t cmd, n;
	uint64_t size;
	double res[8];
	uint32_t sg_count;
	double csw, csw_vol;	/* B's context switches per round of C_OPS */
	double map_median;	/* median map time of that C_OPS (ns) */
	uint32_t which;		/* enum pin_which of C_PIN, C_UNPIN, C_OPS */
};

/* ---- shared helpers --------------------------------------------------------- */

static int ctl_fd, data_fd, raw_fd, stream_fd;

/* BENCH_SMOKE=1: every count down to a few (see S()), one round. */
static bool smoke;
static int rounds = ROUNDS, big_rounds = BIG_ROUNDS;
static uint64_t big_size = BIG_SIZE;

static uint32_t S(uint32_t n)
{
	return smoke ? 3 : n;
}

static void ctl_send(const struct ctl_msg *m)
{
	if (send(ctl_fd, m, sizeof(*m), MSG_NOSIGNAL) != (ssize_t)sizeof(*m))
		BENCH_FAIL("ctl send: %s", strerror(errno));
}

static void ctl_recv(struct ctl_msg *m)
{
	ssize_t n = recv(ctl_fd, m, sizeof(*m), 0);

	if (n != (ssize_t)sizeof(*m))
		BENCH_FAIL("ctl recv: %zd (%s)", n, n < 0 ? strerror(errno) : "peer gone");
}

static uint8_t page_pattern(uint64_t page)
{
	return (uint8_t)(page * 7 + 1);
}

/*
 * Ping-pong figures run with both processes (and A's service thread, which
 * inherits the mask) on one CPU: on a small VM a cross-CPU wake-up of an
 * idle vCPU costs 20-60 us and varies from phase to phase, hiding the
 * software path being measured. The 64 MiB figures run on every CPU, so the
 * copy baseline gets a writer and a reader in parallel. BENCH_UNPINNED=1
 * runs everything unpinned.
 */
static cpu_set_t all_cpus;
static bool unpinned;

static void pin(bool one_cpu)
{
	cpu_set_t set = all_cpus;

	if (unpinned)
		return;
	if (one_cpu) {
		int first = 0;

		while (first < CPU_SETSIZE && !CPU_ISSET(first, &all_cpus))
			first++;
		CPU_ZERO(&set);
		CPU_SET(first, &set);
	}
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		BENCH_FAIL("sched_setaffinity: %s", strerror(errno));
}

/* Context switches of every thread so far, voluntary ones in *vol. */
static double csw_now(double *vol)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*vol = (double)ru.ru_nvcsw;
	return (double)ru.ru_nvcsw + (double)ru.ru_nivcsw;
}

/* ---- B: the importer (child) ----------------------------------------------- */

static void b_check_payload(const uint8_t *pl, size_t len, uint32_t seq)
{
	uint32_t got;

	if (len != PAYLOAD)
		BENCH_FAIL("payload of %zu bytes, expected %d", len, PAYLOAD);
	memcpy(&got, pl, sizeof(got));
	if (got != seq || pl[PAYLOAD - 1] != 0xa5)
		BENCH_FAIL("payload seq %u, expected %u", got, seq);
}

/* Raw request/response: the first u32 of a request is the reply size. */
static uint64_t b_raw_call(size_t req_len, uint32_t rep_len)
{
	uint8_t buf[4096] = { 0 };
	uint64_t t0 = bench_now_ns();
	ssize_t n;

	memcpy(buf, &rep_len, sizeof(rep_len));
	if (send(raw_fd, buf, req_len, MSG_NOSIGNAL) != (ssize_t)req_len)
		BENCH_FAIL("raw send: %s", strerror(errno));
	n = recv(raw_fd, buf, sizeof(buf), 0);
	if (n != (ssize_t)rep_len || buf[rep_len - 1] != 0x5a)
		BENCH_FAIL("raw reply of %zd bytes, expected %u", n, rep_len);
	return bench_now_ns() - t0;
}

static void b_ops(struct dmabuf_ctx *ctx, struct dmabuf *buf, struct dmabuf_device *dev,
		  struct ctl_msg *m)
{
	uint64_t lib[4] = { 0 }, raw[4] = { 0 }, t;
	uint32_t map_rep = W_MAP_REP_FIXED;
	unsigned int sg = 0;
	double vol0, csw0 = csw_now(&vol0), vol;
	static double map_ns[2000];

	for (uint32_t i = 0; i < m->n; i++) {
		struct dmabuf_attachment *att;
		struct dmabuf_sg_table *sgt;

		t = bench_now_ns();
		BENCH_CHECK(dmabuf_attach(buf, dev, &att));
		lib[0] += bench_now_ns() - t;
		t = bench_now_ns();
		BENCH_CHECK(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt));
		t = bench_now_ns() - t;
		lib[1] += t;
		if (i < (sizeof(map_ns) / sizeof(map_ns[0])))
			map_ns[i] = (double)t;
		if (dmabuf_sg_table_get_size(sgt) != m->size || dmabuf_sg_table_get_dma_count(sgt) == 0)
			BENCH_FAIL("remote map: table of %llu bytes, %u DMA entries",
				   (unsigned long long)dmabuf_sg_table_get_size(sgt),
				   dmabuf_sg_table_get_dma_count(sgt));
		sg = dmabuf_sg_table_get_cpu_count(sgt);
		map_rep = W_MAP_REP_FIXED + 24 * sg;
		t = bench_now_ns();
		BENCH_CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL));
		lib[2] += bench_now_ns() - t;
		t = bench_now_ns();
		BENCH_CHECK(dmabuf_detach(buf, att));
		lib[3] += bench_now_ns() - t;

		raw[0] += b_raw_call(W_ATTACH_REQ, W_ATTACH_REP);
		raw[1] += b_raw_call(W_MAP_REQ, map_rep > 4096 ? 4096 : map_rep);
		raw[2] += b_raw_call(W_MAP_ID_REQ, W_EMPTY_REP);
		raw[3] += b_raw_call(W_ID_REQ, W_EMPTY_REP);
	}
	(void)ctx;
	for (int k = 0; k < 4; k++) {
		m->res[k] = (double)lib[k] / m->n;
		m->res[4 + k] = (double)raw[k] / m->n;
	}
	m->sg_count = sg;
	m->csw = (csw_now(&vol) - csw0) / m->n;
	m->csw_vol = (vol - vol0) / m->n;
	m->map_median = bench_median(map_ns, m->n < (sizeof(map_ns) / sizeof(map_ns[0])) ? m->n : (sizeof(map_ns) / sizeof(map_ns[0])));
}

static void b_big_lib(struct dmabuf_ctx *ctx, uint64_t size)
{
	struct dmabuf *buf;
	uint8_t pl[PAYLOAD];
	size_t len;
	void *addr;
	int fd;
	unsigned int sum = 0;

	BENCH_CHECK(dmabuf_recv_fd(data_fd, &fd, pl, sizeof(pl), &len));
	BENCH_CHECK(dmabuf_get(ctx, fd, &buf));
	BENCH_CHECK(dmabuf_mmap(buf, 0, size, PROT_READ, &addr));
	bench_send_byte(data_fd);	/* access given */
	for (uint64_t p = 0; p < size / PAGE; p++) {
		uint8_t v = ((volatile uint8_t *)addr)[p * PAGE];

		if (v != page_pattern(p))
			BENCH_FAIL("64 MiB share: page %llu reads %u, expected %u",
				   (unsigned long long)p, v, page_pattern(p));
		sum += v;
	}
	(void)sum;
	bench_send_byte(data_fd);	/* every page touched */
	BENCH_CHECK(dmabuf_munmap(buf, addr, size));
	BENCH_CHECK(dmabuf_put(buf));
	close(fd);
	bench_send_byte(data_fd);	/* released (untimed) */
}

static void b_big_raw(uint8_t *dst, uint64_t size)
{
	uint64_t done = 0;

	while (done < size) {
		ssize_t n = read(stream_fd, dst + done, size - done);

		if (n <= 0)
			BENCH_FAIL("stream read: %zd (%s)", n, n < 0 ? strerror(errno) : "eof");
		done += (uint64_t)n;
	}
	for (uint64_t p = 0; p < size / PAGE; p++)
		if (dst[p * PAGE] != page_pattern(p))
			BENCH_FAIL("64 MiB copy: page %llu reads %u", (unsigned long long)p,
				   dst[p * PAGE]);
	bench_send_byte(data_fd);
}

static int b_main(void)
{
	struct dmabuf_device_info di = { .name = "bench-b" };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *pinned[NPINS] = { NULL };
	uint8_t *copybuf;
	int pin_fd[NPINS] = { -1, -1 };

	BENCH_CHECK(dmabuf_ctx_new(NULL, &ctx));
	BENCH_CHECK(dmabuf_device_new(ctx, &di, &dev));
	copybuf = mmap(NULL, big_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (copybuf == MAP_FAILED)
		BENCH_FAIL("mmap: %s", strerror(errno));

	for (;;) {
		struct ctl_msg m;
		uint8_t pl[PAYLOAD];
		struct dmabuf *buf;
		size_t len;
		int fd;

		ctl_recv(&m);
		if (m.which >= NPINS)
			BENCH_FAIL("control message for proxy %u", m.which);
		switch (m.cmd) {
		case C_PIN:
			if (pinned[m.which])
				BENCH_FAIL("proxy %u pinned twice", m.which);
			BENCH_CHECK(dmabuf_recv_fd(data_fd, &pin_fd[m.which], pl, sizeof(pl), &len));
			BENCH_CHECK(dmabuf_get(ctx, pin_fd[m.which], &pinned[m.which]));
			if (dmabuf_get_size(pinned[m.which]) != m.size)
				BENCH_FAIL("pinned buffer size %llu",
					   (unsigned long long)dmabuf_get_size(pinned[m.which]));
			bench_send_byte(data_fd);
			break;
		case C_UNPIN:
			BENCH_CHECK(dmabuf_put(pinned[m.which]));
			close(pin_fd[m.which]);
			pinned[m.which] = NULL;
			pin_fd[m.which] = -1;
			bench_send_byte(data_fd);
			break;
		case C_SHARE_LIB:
			for (uint32_t i = 0; i < m.n; i++) {
				BENCH_CHECK(dmabuf_recv_fd(data_fd, &fd, pl, sizeof(pl), &len));
				b_check_payload(pl, len, i);
				BENCH_CHECK(dmabuf_get(ctx, fd, &buf));
				if (buf != pinned[PIN_CACHED])
					BENCH_FAIL("dmabuf_get did not find the existing proxy");
				BENCH_CHECK(dmabuf_put(buf));
				close(fd);
				bench_send_byte(data_fd);
			}
			break;
		case C_SHARE_RAW:
			for (uint32_t i = 0; i < m.n; i++) {
				fd = bench_raw_recv_fd(data_fd, pl, sizeof(pl), &len);
				b_check_payload(pl, len, i);
				close(fd);
				bench_send_byte(data_fd);
			}
			break;
		case C_IMPORT_LIB:
			for (uint32_t i = 0; i < m.n; i++) {
				BENCH_CHECK(dmabuf_recv_fd(data_fd, &fd, pl, sizeof(pl), &len));
				b_check_payload(pl, len, i);
				BENCH_CHECK(dmabuf_get(ctx, fd, &buf));
				if (buf == pinned[PIN_CACHED] || buf == pinned[PIN_RT] ||
				    dmabuf_get_size(buf) != m.size)
					BENCH_FAIL("first import: wrong buffer (size %llu)",
						   (unsigned long long)dmabuf_get_size(buf));
				BENCH_CHECK(dmabuf_put(buf));
				close(fd);
				bench_send_byte(data_fd);
			}
			break;
		case C_OPS:
			if (!pinned[m.which])
				BENCH_FAIL("ops without a proxy");
			b_ops(ctx, pinned[m.which], dev, &m);
			ctl_send(&m);
			break;
		case C_BIG_LIB:
			pin(false);
			b_big_lib(ctx, m.size);
			pin(true);
			break;
		case C_BIG_RAW:
			pin(false);
			b_big_raw(copybuf, m.size);
			pin(true);
			break;
		case C_QUIT:
			BENCH_CHECK(dmabuf_device_destroy(dev));
			dmabuf_ctx_destroy(ctx);
			return 0;
		default:
			BENCH_FAIL("unknown command %u", m.cmd);
		}
	}
}

/* ---- A: the exporter (parent) --------------------------------------------- */

static struct dmabuf_ctx *actx;
static bool a_dispatch;	/* true: A's loop dispatches; false: service thread */
static atomic_ulong a_releases;
static unsigned long a_exports;
static int exporter_state;

static void op_release(struct dmabuf *buf)
{
	(void)buf;
	atomic_fetch_add(&a_releases, 1);
}

/* The cached proxy's exporter: its map op is the library's own, so a
 * static MAP after a buffer's first is answered from the importer's cache
 * (docs/design.md §6). */
static const struct dmabuf_ops a_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = op_release,
	.mmap = NULL,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

/* The round-trip proxy's exporter: the same table through a map op of its
 * own (what an exporter that checks or records something at map time
 * has), so every MAP asks it. Its calls are counted: each MAP of the rt
 * rounds must have reached it, or the figure measures the cache. */
static atomic_ulong a_rt_maps;

static int op_map_rt(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		     struct dmabuf_sg_table **sgt)
{
	atomic_fetch_add(&a_rt_maps, 1);
	return dmabuf_backing_map(att, dir, sgt);
}

static const struct dmabuf_ops a_ops_rt = {
	.version = DMABUF_OPS_VERSION,
	.map = op_map_rt,
	.unmap = dmabuf_backing_unmap,
	.release = op_release,
	.mmap = NULL,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

static struct dmabuf *a_export_ops(uint64_t size, const struct dmabuf_ops *ops)
{
	struct dmabuf_export_info info = {
		.exp_name = "bench-remote", .ops = ops, .size = size,
		.flags = O_RDWR, .priv = &exporter_state, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf;

	BENCH_CHECK(dmabuf_export(actx, &info, &buf));
	a_exports++;
	return buf;
}

static struct dmabuf *a_export(uint64_t size)
{
	return a_export_ops(size, &a_ops);
}

/* Waits for B's 1-byte reply, serving the context meanwhile in dispatch
 * mode (B's dmabuf_get/put need the exporter to answer). */
static void a_wait_reply(void)
{
	struct pollfd p[2] = {
		{ .fd = data_fd, .events = POLLIN },
		{ .fd = dmabuf_ctx_get_fd(actx), .events = POLLIN },
	};

	if (!a_dispatch) {
		bench_recv_byte(data_fd);
		return;
	}
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			BENCH_FAIL("poll: %s", strerror(errno));
		if (p[1].revents)
			BENCH_CHECK(dmabuf_ctx_dispatch(actx));
		if (p[0].revents) {
			bench_recv_byte(data_fd);
			return;
		}
	}
}

/* Serves raw requests (and the context, in dispatch mode) until B sends a
 * control message, which is returned. */
static void a_serve_until_ctl(struct ctl_msg *m)
{
	struct pollfd p[3] = {
		{ .fd = ctl_fd, .events = POLLIN },
		{ .fd = raw_fd, .events = POLLIN },
		{ .fd = dmabuf_ctx_get_fd(actx), .events = POLLIN },
	};

	for (;;) {
		if (poll(p, a_dispatch ? 3 : 2, -1) < 0 && errno != EINTR)
			BENCH_FAIL("poll: %s", strerror(errno));
		if (a_dispatch && p[2].revents)
			BENCH_CHECK(dmabuf_ctx_dispatch(actx));
		if (p[1].revents) {
			uint8_t buf[4096];
			uint32_t rep;
			ssize_t n = recv(raw_fd, buf, sizeof(buf), 0);

			if (n < 4)
				BENCH_FAIL("raw request: %zd", n);
			memcpy(&rep, buf, sizeof(rep));
			if (rep < 1 || rep > sizeof(buf))
				BENCH_FAIL("raw request asks for %u bytes", rep);
			buf[rep - 1] = 0x5a;
			if (send(raw_fd, buf, rep, MSG_NOSIGNAL) != (ssize_t)rep)
				BENCH_FAIL("raw send: %s", strerror(errno));
		}
		if (p[0].revents) {
			ctl_recv(m);
			return;
		}
	}
}

static void a_cmd(uint32_t cmd, uint32_t n, uint64_t size)
{
	struct ctl_msg m = { .cmd = cmd, .n = n, .size = size };

	ctl_send(&m);
}

static void make_payload(uint8_t *pl, uint32_t seq)
{
	memset(pl, 0, PAYLOAD);
	memcpy(pl, &seq, sizeof(seq));
	pl[PAYLOAD - 1] = 0xa5;
}

/* ns per raw SCM_RIGHTS ping-pong of a memfd with a 64-byte header. */
static double a_raw_round(int memfd, uint32_t n)
{
	uint8_t pl[PAYLOAD];
	uint64_t t0;

	a_cmd(C_SHARE_RAW, n, 0);
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		make_payload(pl, i);
		bench_raw_send_fd(data_fd, memfd, pl, PAYLOAD);
		bench_recv_byte(data_fd);
	}
	return (double)(bench_now_ns() - t0) / n;
}

static void a_cmd_which(uint32_t cmd, uint32_t n, uint64_t size, enum pin_which which)
{
	struct ctl_msg m = { .cmd = cmd, .n = n, .size = size, .which = which };

	ctl_send(&m);
}

static void a_pin(int fd, uint64_t size, enum pin_which which)
{
	uint8_t pl[PAYLOAD];

	make_payload(pl, 0);
	a_cmd_which(C_PIN, 1, size, which);
	BENCH_CHECK(dmabuf_send_fd(data_fd, fd, pl, PAYLOAD));
	a_wait_reply();
}

static void a_unpin(enum pin_which which)
{
	a_cmd_which(C_UNPIN, 1, 0, which);
	a_wait_reply();
}

/* One C_OPS of n rounds on B's proxy `which`, A serving meanwhile; the
 * answer in *m. The rt proxy's MAPs are each checked to have reached its
 * exporter's map op. */
static void a_ops_round(uint32_t n, enum pin_which which, struct ctl_msg *m)
{
	unsigned long maps0 = atomic_load(&a_rt_maps), maps;

	*m = (struct ctl_msg){ .cmd = C_OPS, .n = n, .size = PIN_SIZE, .which = which };
	ctl_send(m);
	a_serve_until_ctl(m);
	if (m->cmd != C_OPS)
		BENCH_FAIL("unexpected control message %u", m->cmd);
	maps = atomic_load(&a_rt_maps) - maps0;
	if (maps != (which == PIN_RT ? n : 0))
		BENCH_FAIL("%s proxy: %lu calls of the exporter's map op for %u MAPs",
			   which == PIN_RT ? "round-trip" : "cached", maps, n);
}

static double a_share_round(int fd, uint32_t n)
{
	uint8_t pl[PAYLOAD];
	uint64_t t0;

	a_cmd(C_SHARE_LIB, n, 0);
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		make_payload(pl, i);
		BENCH_CHECK(dmabuf_send_fd(data_fd, fd, pl, PAYLOAD));
		a_wait_reply();
	}
	return (double)(bench_now_ns() - t0) / n;
}

/* First imports of n buffers B has not seen (exported before the clock
 * starts, released after it stops). */
static double a_import_round(uint32_t n)
{
	struct dmabuf **bufs = calloc(n, sizeof(*bufs));
	int *fds = calloc(n, sizeof(*fds));
	uint8_t pl[PAYLOAD];
	uint64_t t0, t;

	if (!bufs || !fds)
		BENCH_FAIL("out of memory");
	for (uint32_t i = 0; i < n; i++) {
		bufs[i] = a_export(SMALL_SIZE);
		fds[i] = dmabuf_fd(bufs[i], O_CLOEXEC);
		BENCH_CHECK(fds[i]);
	}
	a_cmd(C_IMPORT_LIB, n, SMALL_SIZE);
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		make_payload(pl, i);
		BENCH_CHECK(dmabuf_send_fd(data_fd, fds[i], pl, PAYLOAD));
		a_wait_reply();
	}
	t = bench_now_ns() - t0;
	for (uint32_t i = 0; i < n; i++) {
		BENCH_CHECK(dmabuf_put(bufs[i]));
		close(fds[i]);
	}
	if (a_dispatch)
		BENCH_CHECK(dmabuf_ctx_dispatch(actx));
	free(bufs);
	free(fds);
	return (double)t / n;
}

struct mode_res {
	double share, share_raw;
	double import, import_raw;	/* ns */
	double cold, cold_raw;
	double ops[NPINS][4], ops_raw[NPINS][4];	/* [enum pin_which][call] */
	double big_access, big_touch, big_copy;
	unsigned int sg_count;
};

static double median_of(double *v, int n)
{
	return bench_median(v, (size_t)n);
}

static void a_run_mode(int memfd, struct mode_res *r)
{
	double v[ROUNDS], w[ROUNDS], ops[NPINS][4][ROUNDS], opsr[NPINS][4][ROUNDS];
	double acc[BIG_ROUNDS], touch[BIG_ROUNDS], copy[BIG_ROUNDS];
	struct dmabuf *pinbuf[NPINS], *big;
	int pin_fd[NPINS], big_fd;
	uint8_t *bigmap, pl[PAYLOAD];

	/* Cold imports: B holds no other proxy of A, so each dmabuf_get
	 * connects + HELLO and the last put closes the connection. */
	a_raw_round(memfd, S(50));
	a_import_round(S(20));
	for (int i = 0; i < rounds; i++) {
		w[i] = a_raw_round(memfd, S(N_COLD));
		v[i] = a_import_round(S(N_COLD));
	}
	r->cold = median_of(v, rounds);
	r->cold_raw = median_of(w, rounds);

	/* B keeps one proxy of A from now on: the connection stays open.
	 * The second (the round-trip exporter's) is for the remote calls. */
	for (int p = 0; p < NPINS; p++) {
		pinbuf[p] = a_export_ops(PIN_SIZE, p == PIN_RT ? &a_ops_rt : &a_ops);
		pin_fd[p] = dmabuf_fd(pinbuf[p], O_CLOEXEC);
		BENCH_CHECK(pin_fd[p]);
		a_pin(pin_fd[p], PIN_SIZE, (enum pin_which)p);
	}

	a_share_round(pin_fd[PIN_CACHED], S(200));
	a_raw_round(memfd, S(200));
	for (int i = 0; i < rounds; i++) {
		w[i] = a_raw_round(memfd, S(N_SHARE));
		v[i] = a_share_round(pin_fd[PIN_CACHED], S(N_SHARE));
	}
	r->share = median_of(v, rounds);
	r->share_raw = median_of(w, rounds);

	a_import_round(S(30));
	for (int i = 0; i < rounds; i++) {
		w[i] = a_raw_round(memfd, S(N_IMPORT));
		v[i] = a_import_round(S(N_IMPORT));
	}
	r->import = median_of(v, rounds);
	r->import_raw = median_of(w, rounds);

	/* The two proxies' rounds alternate, each with its raw baseline. */
	for (int i = -1; i < rounds; i++) {
		for (int p = 0; p < NPINS; p++) {
			struct ctl_msg m;

			a_ops_round(i < 0 ? S(50) : S(N_OPS), (enum pin_which)p, &m);
			if (i < 0)
				continue;
			for (int k = 0; k < 4; k++) {
				ops[p][k][i] = m.res[k];
				opsr[p][k][i] = m.res[4 + k];
			}
			r->sg_count = m.sg_count;
		}
	}
	for (int p = 0; p < NPINS; p++)
		for (int k = 0; k < 4; k++) {
			r->ops[p][k] = median_of(ops[p][k], rounds);
			r->ops_raw[p][k] = median_of(opsr[p][k], rounds);
		}

	/* 64 MiB: filled by the exporter before anything is timed. */
	big = a_export(big_size);
	big_fd = dmabuf_fd(big, O_CLOEXEC);
	BENCH_CHECK(big_fd);
	BENCH_CHECK(dmabuf_vmap(big, (void **)&bigmap));
	pin(false);
	for (uint64_t p = 0; p < big_size / PAGE; p++)
		memset(bigmap + p * PAGE, page_pattern(p), PAGE);
	for (int i = 0; i < big_rounds; i++) {
		uint64_t t0, t1, t2, done = 0;

		a_cmd(C_BIG_RAW, 1, big_size);
		t0 = bench_now_ns();
		while (done < big_size) {
			size_t chunk = big_size - done < COPY_CHUNK ? big_size - done : COPY_CHUNK;
			ssize_t n = write(stream_fd, bigmap + done, chunk);

			if (n <= 0)
				BENCH_FAIL("stream write: %s", strerror(errno));
			done += (uint64_t)n;
		}
		bench_recv_byte(data_fd);
		copy[i] = (double)(bench_now_ns() - t0);

		make_payload(pl, 0);
		a_cmd(C_BIG_LIB, 1, big_size);
		t0 = bench_now_ns();
		BENCH_CHECK(dmabuf_send_fd(data_fd, big_fd, pl, PAYLOAD));
		a_wait_reply();
		t1 = bench_now_ns();
		a_wait_reply();
		t2 = bench_now_ns();
		a_wait_reply();	/* B unmapped and released its proxy */
		acc[i] = (double)(t1 - t0);
		touch[i] = (double)(t2 - t1);
	}
	pin(true);
	r->big_access = median_of(acc, big_rounds);
	r->big_touch = median_of(touch, big_rounds);
	r->big_copy = median_of(copy, big_rounds);
	BENCH_CHECK(dmabuf_vunmap(big, bigmap));
	BENCH_CHECK(dmabuf_put(big));
	close(big_fd);

	for (int p = 0; p < NPINS; p++) {
		a_unpin((enum pin_which)p);
		BENCH_CHECK(dmabuf_put(pinbuf[p]));
		close(pin_fd[p]);
	}
}

/* Every exported buffer must be released once B closed its fds. */
static void a_wait_released(void)
{
	uint64_t deadline = bench_now_ns() + 5000000000ull;

	while (atomic_load(&a_releases) < a_exports) {
		if (bench_now_ns() > deadline)
			BENCH_FAIL("%lu of %lu buffers released after 5 s",
				   atomic_load(&a_releases), a_exports);
		if (a_dispatch)
			BENCH_CHECK(dmabuf_ctx_dispatch_timeout(actx, 10));
		else
			usleep(1000);
	}
}

static const char *verdict(double ratio, double target)
{
	return ratio <= target ? "met" : "MISSED";
}

static void row(const char *what, double lib, double raw, double target)
{
	double ratio = lib / raw;

	if (target > 0)
		printf("  %-40s %11.2f %11.2f %7.2fx  <= %.1fx %s\n", what, lib / 1000,
		       raw / 1000, ratio, target, verdict(ratio, target));
	else
		printf("  %-40s %11.2f %11.2f %7.2fx\n", what, lib / 1000, raw / 1000, ratio);
}

static void line2t(const char *mode, const char *name, double lib, double raw,
		   const char *unit, double target)
{
	char key[96];

	snprintf(key, sizeof(key), "%s_%s", mode, name);
	bench_line(BENCH, key, lib, unit);
	snprintf(key, sizeof(key), "%s_%s_baseline", mode, name);
	bench_line(BENCH, key, raw, unit);
	snprintf(key, sizeof(key), "%s_%s_ratio", mode, name);
	bench_target(BENCH, key, lib / raw, "x", target);
}

static void line2(const char *mode, const char *name, double lib, double raw,
		  const char *unit)
{
	line2t(mode, name, lib, raw, unit, 0);
}

int main(void)
{
	static const char *const op_names[4] = { "attach", "map", "unmap", "detach" };
	static const double op_target = 1.2;
	int sp[4][2], memfd, status;
	struct mode_res res[2];
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	unpinned = getenv("BENCH_UNPINNED") && *getenv("BENCH_UNPINNED") == '1';
	smoke = bench_smoke();
	if (smoke) {
		rounds = 1;
		big_rounds = 1;
		big_size = SMOKE_BIG_SIZE;
	}
	if (sched_getaffinity(0, sizeof(all_cpus), &all_cpus) < 0)
		BENCH_FAIL("sched_getaffinity: %s", strerror(errno));
	pin(true);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp[0]) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp[1]) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp[2]) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp[3]) < 0)
		BENCH_FAIL("socketpair: %s", strerror(errno));

	pid = fork();
	if (pid < 0)
		BENCH_FAIL("fork: %s", strerror(errno));
	if (pid == 0) {
		ctl_fd = sp[0][1], data_fd = sp[1][1], raw_fd = sp[2][1], stream_fd = sp[3][1];
		for (int i = 0; i < 4; i++)
			close(sp[i][0]);
		_exit(b_main());
	}
	ctl_fd = sp[0][0], data_fd = sp[1][0], raw_fd = sp[2][0], stream_fd = sp[3][0];
	for (int i = 0; i < 4; i++)
		close(sp[i][1]);

	memfd = memfd_create("bench-raw", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)SMALL_SIZE) < 0)
		BENCH_FAIL("memfd: %s", strerror(errno));
	BENCH_CHECK(dmabuf_ctx_new(NULL, &actx));

	if (getenv("BENCH_PROFILE")) {
		/* For strace -c / perf: 1000 iterations of one figure only. */
		const char *what = getenv("BENCH_PROFILE");
		enum pin_which which = strstr(what, "-rt") ? PIN_RT : PIN_CACHED;
		struct dmabuf *p = a_export_ops(PIN_SIZE, which == PIN_RT ? &a_ops_rt : &a_ops);
		int pfd = dmabuf_fd(p, O_CLOEXEC);

		a_dispatch = strstr(what, "thread") == NULL;
		if (!a_dispatch)
			BENCH_CHECK(dmabuf_ctx_start_thread(actx));
		a_pin(pfd, PIN_SIZE, which);
		if (!strncmp(what, "import", 6))
			printf("import: %.0f ns\n", a_import_round(1000));
		else if (!strncmp(what, "share", 5))
			printf("share: %.0f ns\n", a_share_round(pfd, 1000));
		else if (!strncmp(what, "raw", 3))
			printf("raw: %.0f ns\n", a_raw_round(memfd, 1000));
		else if (!strncmp(what, "ops", 3)) {
			/* Per round: the four calls and their raw baselines. */
			struct ctl_msg m;
			double v0, c0 = csw_now(&v0), v, c;

			a_ops_round(2000, which, &m);
			printf("ops%s: attach %.0f map %.0f unmap %.0f detach %.0f ns "
			       "(raw %.0f %.0f %.0f %.0f); map median %.0f ns; context switches per round:",
			       which == PIN_RT ? "-rt" : "", m.res[0], m.res[1], m.res[2], m.res[3], m.res[4], m.res[5],
			       m.res[6], m.res[7], m.map_median);
			c = csw_now(&v);
			printf(" exporter %.2f (%.2f voluntary), importer %.2f (%.2f voluntary)\n",
			       (c - c0) / m.n, (v - v0) / m.n, m.csw, m.csw_vol);
		}
		a_unpin(which);
		BENCH_CHECK(dmabuf_put(p));
		close(pfd);
		a_wait_released();
		a_cmd(C_QUIT, 0, 0);
		waitpid(pid, &status, 0);
		return 0;
	}
	a_dispatch = true;
	a_run_mode(memfd, &res[0]);
	a_wait_released();
	a_dispatch = false;
	BENCH_CHECK(dmabuf_ctx_start_thread(actx));
	a_run_mode(memfd, &res[1]);
	a_wait_released();
	BENCH_CHECK(dmabuf_ctx_stop_thread(actx));

	a_cmd(C_QUIT, 0, 0);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		BENCH_FAIL("importer process failed (status %#x)", status);
	{
		struct dmabuf_ctx_stats st = { 0 };

		BENCH_CHECK(dmabuf_ctx_get_stats(actx, &st));
		if (st.buffers_live || st.buffers_released != a_exports)
			BENCH_FAIL("exporter stats: %llu live, %llu released of %lu",
				   (unsigned long long)st.buffers_live,
				   (unsigned long long)st.buffers_released, a_exports);
	}
	dmabuf_ctx_destroy(actx);
	close(memfd);

	printf("\ncross-process sharing, 2 processes (fork) over socketpairs; ping-pongs %s\n",
	       unpinned ? "unpinned" : "on one CPU, 64 MiB on all");
	printf("(median of %d rounds, library and baseline rounds interleaved; us per operation)\n",
	       rounds);
	printf("\n  %-40s %11s %11s %8s  %s\n", "figure", "library", "baseline", "ratio",
	       "target");
	for (int m = 0; m < 2; m++) {
		printf("\n exporter served by %s:\n", m == 0 ? "its own loop + dmabuf_ctx_dispatch"
							: "dmabuf_ctx_start_thread");
		row("share, proxy exists (64 B + fd)", res[m].share, res[m].share_raw, 1.2);
		row("first import (IMPORT + RELEASE)", res[m].import, res[m].import_raw, 2.5);
		row("cold import (+ connect + HELLO)", res[m].cold, res[m].cold_raw, 0);
		printf("  %-40s %11.2f\n", "  connection set-up (cold - first)",
		       (res[m].cold - res[m].import) / 1000);
		for (int p = 0; p < NPINS; p++) {
			printf("  %s\n", p == PIN_CACHED ?
			       "exporter's map op dmabuf_backing_map() (MAP from B's cache):" :
			       "exporter's map op its own (every MAP a round trip):");
			for (int k = 0; k < 4; k++) {
				char what[64];

				snprintf(what, sizeof(what), "remote %s%s (%u sg entries)", op_names[k],
					 k != 1 ? "" : p == PIN_CACHED ? ", cached" : ", round trip",
					 res[m].sg_count);
				row(what, res[m].ops[p][k], res[m].ops_raw[p][k], op_target);
			}
		}
		printf("  64 MiB, ms: give access (fd + import + mmap) %.3f, then touch every page %.3f;\n"
		       "             copy through an AF_UNIX stream %.3f\n",
		       res[m].big_access / 1e6, res[m].big_touch / 1e6, res[m].big_copy / 1e6);
		row("64 MiB access vs copy (ms as us/1000)", res[m].big_access, res[m].big_copy, 0);
		row("64 MiB access + touch vs copy", res[m].big_access + res[m].big_touch,
		    res[m].big_copy, 0);
	}
	printf("\n");

	for (int m = 0; m < 2; m++) {
		const char *mode = m == 0 ? "dispatch" : "thread";

		line2(mode, "share", res[m].share, res[m].share_raw, "ns");
		line2(mode, "first_import", res[m].import, res[m].import_raw, "ns");
		line2(mode, "cold_import", res[m].cold, res[m].cold_raw, "ns");
		{
			char key[64];

			snprintf(key, sizeof(key), "%s_connection_setup", mode);
			bench_line(BENCH, key, res[m].cold - res[m].import, "ns");
		}
		/* The cached proxy's four calls (its map `remote_cached_map`:
		 * from wire version 7 no round trip) and the round-trip proxy's
		 * map, the round trip a remote call still makes. Attach, unmap
		 * and detach are the same one-way messages on either proxy: the
		 * table prints both, the BENCH lines the cached proxy's. */
		for (int k = 0; k < 4; k++) {
			char name[32];

			snprintf(name, sizeof(name), "remote_%s", k == 1 ? "cached_map" : op_names[k]);
			line2t(mode, name, res[m].ops[PIN_CACHED][k], res[m].ops_raw[PIN_CACHED][k],
			       "ns", op_target);
		}
		line2t(mode, "remote_rt_map", res[m].ops[PIN_RT][1], res[m].ops_raw[PIN_RT][1], "ns",
		       op_target);
		line2(mode, "share_64m_access", res[m].big_access, res[m].big_copy, "ns");
		line2(mode, "share_64m_access_touch", res[m].big_access + res[m].big_touch,
		      res[m].big_copy, "ns");
	}
	return 0;
}
