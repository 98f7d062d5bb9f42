/* SPDX-License-Identifier: MIT */
/*
 * The buffer hand-off of issue 11, side by side in one run: a producer
 * process (P, the parent) hands one buffer to a consumer process, which maps
 * it and tells P it is done; 4 KiB and 1 MiB. Per cycle:
 *
 *   raw        P: memfd_create + ftruncate + F_ADD_SEALS, sendmsg with the fd
 *              (SCM_RIGHTS), close; C: recvmsg, mmap, munmap, close, one
 *              reply byte. The floor: 11 syscalls, 2 context switches.
 *   wl_shm     P is a libwayland client, the consumer a libwayland server
 *              with wl_display_init_shm() in a third process: memfd_create +
 *              ftruncate + seals as in raw, wl_shm.create_pool (the fd over the socket, the
 *              server mmaps it), wl_shm_pool.create_buffer, close(fd),
 *              wl_display_roundtrip(), wl_buffer.destroy, wl_shm_pool.destroy
 *              (sent with the next cycle's roundtrip). Only when libwayland
 *              was found at configure time (HAVE_WAYLAND).
 *   libdmabuf  the full cycle: P dmabuf_export (system allocation) +
 *              dmabuf_fd + dmabuf_send_fd; C dmabuf_recv_fd, dmabuf_get,
 *              dmabuf_attach, dmabuf_map_attachment, unmap, detach,
 *              dmabuf_put, close, reply; P dmabuf_put + close and serves its
 *              context (its own poll loop + dmabuf_ctx_dispatch) until
 *              ops->release has run: back to idle.
 *   libdmabuf_sent  the same with P's close(fd) right after the send, as
 *              raw and wl_shm's client close theirs: the consumer's
 *              closes are done when P puts, so the put releases the
 *              buffer itself (no failing probe, no wake-up for the close
 *              event). Printed next to libdmabuf, which keeps the fd until
 *              after its put (the order the syscalls test counts).
 *   steady     C already holds an import of the buffer: P dmabuf_send_fd of
 *              it, C dmabuf_recv_fd, dmabuf_get (finds its proxy), attach,
 *              map, unmap, detach, put, close, reply (a swapchain buffer
 *              coming back for a new frame).
 *   raw_rt     the floor of the steady kind: what any design costs that
 *              asks the exporter once per cycle (the MAP) and answers the
 *              producer. P sends the fd of a memfd it keeps (raw SCM_RIGHTS);
 *              C recvmsg, one 40-byte request, P poll + recv + an 80-byte
 *              reply (the sizes of MAP and its inline answer), C recv,
 *              close, reply byte; P poll + read. 11 syscalls, 4 context
 *              switches (raw: 2). steady is also printed against it.
 *   connect    a first import including connect and handshake: C makes a
 *              fresh context for each cycle (untimed), so dmabuf_get connects,
 *              says HELLO and imports; then put, close, reply. Timed from
 *              P's dmabuf_send_fd to the reply; C destroys the context (the
 *              connection closes) and makes the next one between the timed
 *              parts, after P has taken the reply and stopped the clock (one
 *              byte from P says so: on one CPU, C would otherwise run on into
 *              the destroy before P reads the clock).
 *
 * Rounds of the kinds are interleaved; each figure is the median over
 * ROUNDS rounds of (round time / N) and is printed with its ratio to raw
 * (and to wl_shm) and the target next to it. Every process runs on
 * one CPU unless BENCH_UNPINNED=1 (bench-common.h). BENCH_SMOKE=1 runs a
 * few cycles of each kind only (the smoke test of the normal suites).
 * BENCH_ONLY=kind[,kind...] (e.g. connect) runs raw and those kinds only,
 * for profiling one of them (strace, perf).
 *
 * Which side is the bottleneck: for libdmabuf's full cycle and wl_shm's, the
 * CPU time per cycle of each side is printed too (libdmabuf_*_cpu_producer
 * and _consumer, wl_shm_*_cpu_client and _server; the other process's clock
 * read with clock_getcpuclockid()). Pinned, a cycle costs about the sum of
 * the two; were the two sides overlapped on two CPUs (the producer making
 * its next buffer while the consumer uses this one), no pipeline could hand
 * off more than 1 / max(producer, consumer) buffers a second, printed as
 * *_buffers_per_s_overlap_bound_* for both.
 *
 * Fails (non-zero) only when a call fails or a result is wrong.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf.h"
#include "dmabuf-scm.h"
#include "bench-common.h"

#ifdef HAVE_WAYLAND
#include <wayland-client.h>
#include <wayland-server.h>
#endif

#define BENCH "handoff"
#define ROUNDS 5
#define HDR 16

enum kind { K_RAW, K_WL, K_LIB, K_STEADY, K_CONNECT, K_RAW_RT, K_LIB_SENT, NKINDS };
enum cmd { C_RAW = 1, C_LIB, C_PIN, C_STEADY, C_UNPIN, C_CONNECT, C_QUIT, C_RAW_RT };

static const char *const kind_names[NKINDS] = {
	"raw", "wl_shm", "libdmabuf", "steady", "connect", "raw_rt", "libdmabuf_sent",
};

/* raw_rt: the wire sizes of a MAP with its ATTACH, and of its answer. */
#define RT_REQ 40
#define RT_REP 80

struct ctl_msg {
	uint32_t cmd, n;
	uint64_t size;
};

static int ctl_fd, data_fd;
/* the consumer process, and libwayland's server process (0: none) */
static pid_t consumer_pid, wl_server_pid;

/* BENCH_ONLY: the kinds asked for (raw always runs: every ratio's base). */
static bool kind_on(enum kind k)
{
	const char *only = getenv("BENCH_ONLY");
	size_t len = strlen(kind_names[k]);

	if (k == K_RAW || !only || !*only)
		return true;
	for (const char *p = only; (p = strstr(p, kind_names[k])); p += len)
		if ((p == only || p[-1] == ',') && (p[len] == ',' || !p[len]))
			return true;
	return false;
}

static void ctl_send(uint32_t cmd, uint32_t n, uint64_t size)
{
	struct ctl_msg m = { .cmd = cmd, .n = n, .size = size };

	if (send(ctl_fd, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
		BENCH_FAIL("ctl send: %s", strerror(errno));
}

/* CPU time of this process (every thread), ns: under other load it moves
 * far less than wall time, so the raw and connect kinds also report the
 * CPU time both processes spend per cycle. */
static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* C's CPU time of a timed loop, sent to P on the control socket after it. */
static void cpu_send(uint64_t ns)
{
	if (send(ctl_fd, &ns, sizeof(ns), MSG_NOSIGNAL) != (ssize_t)sizeof(ns))
		BENCH_FAIL("ctl send: %s", strerror(errno));
}

/* CPU time of another process (every thread), ns; 0 when unreadable. */
static uint64_t pid_cpu_ns(pid_t pid)
{
	struct timespec ts;
	clockid_t cid;

	if (pid <= 0 || clock_getcpuclockid(pid, &cid) || clock_gettime(cid, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_recv(void)
{
	uint64_t ns;

	if (recv(ctl_fd, &ns, sizeof(ns), 0) != (ssize_t)sizeof(ns))
		BENCH_FAIL("ctl recv: %s", strerror(errno));
	return ns;
}

/* ---- the consumer (child) ------------------------------------------------- */

static void c_raw(uint32_t n, uint64_t size)
{
	uint64_t c0 = cpu_ns();

	for (uint32_t i = 0; i < n; i++) {
		uint64_t hdr[HDR / 8];
		size_t len;
		int fd = bench_raw_recv_fd(data_fd, hdr, sizeof(hdr), &len);
		void *p;

		if (len != HDR || hdr[0] != size)
			BENCH_FAIL("raw: header of %zu bytes, size %llu", len,
				   (unsigned long long)hdr[0]);
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			BENCH_FAIL("mmap: %s", strerror(errno));
		munmap(p, size);
		close(fd);
		bench_send_byte(data_fd);
	}
	cpu_send(cpu_ns() - c0);
}

static void c_raw_rt(uint32_t n, uint64_t size)
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t msg[RT_REP] = { 0 };
		uint64_t hdr[HDR / 8];
		size_t len;
		int fd = bench_raw_recv_fd(data_fd, hdr, sizeof(hdr), &len);

		if (len != HDR || hdr[0] != size)
			BENCH_FAIL("raw_rt: header of %zu bytes, size %llu", len,
				   (unsigned long long)hdr[0]);
		if (send(data_fd, msg, RT_REQ, MSG_NOSIGNAL) != RT_REQ)
			BENCH_FAIL("raw_rt send: %s", strerror(errno));
		if (recv(data_fd, msg, sizeof(msg), 0) != RT_REP || msg[RT_REP - 1] != 0x5a)
			BENCH_FAIL("raw_rt: bad answer");
		close(fd);
		bench_send_byte(data_fd);
	}
}

/* attach, map, unmap, detach of buf on dev, checking the table. */
static void c_use(struct dmabuf *buf, struct dmabuf_device *dev, uint64_t size)
{
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;

	BENCH_CHECK(dmabuf_attach(buf, dev, &att));
	BENCH_CHECK(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt));
	if (dmabuf_sg_table_get_size(sgt) != size)
		BENCH_FAIL("map: table of %llu bytes, expected %llu",
			   (unsigned long long)dmabuf_sg_table_get_size(sgt),
			   (unsigned long long)size);
	BENCH_CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL));
	BENCH_CHECK(dmabuf_detach(buf, att));
}

static struct dmabuf *c_recv_get(struct dmabuf_ctx *ctx, uint64_t size, int *fd)
{
	uint8_t pl[HDR];
	struct dmabuf *buf;
	size_t len;

	BENCH_CHECK(dmabuf_recv_fd(data_fd, fd, pl, sizeof(pl), &len));
	BENCH_CHECK(dmabuf_get(ctx, *fd, &buf));
	if (dmabuf_get_size(buf) != size)
		BENCH_FAIL("import: size %llu, expected %llu",
			   (unsigned long long)dmabuf_get_size(buf), (unsigned long long)size);
	return buf;
}

static int c_main(void)
{
	struct dmabuf_device_info di = { .name = "bench-consumer" };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *pinned = NULL;
	int pin_fd = -1;

	BENCH_CHECK(dmabuf_ctx_new(NULL, &ctx));
	BENCH_CHECK(dmabuf_device_new(ctx, &di, &dev));
	for (;;) {
		struct ctl_msg m;
		struct dmabuf *buf;
		int fd;

		if (recv(ctl_fd, &m, sizeof(m), 0) != (ssize_t)sizeof(m))
			BENCH_FAIL("ctl recv: %s", strerror(errno));
		switch (m.cmd) {
		case C_RAW:
			c_raw(m.n, m.size);
			break;
		case C_RAW_RT:
			c_raw_rt(m.n, m.size);
			break;
		case C_LIB:
			for (uint32_t i = 0; i < m.n; i++) {
				buf = c_recv_get(ctx, m.size, &fd);
				if (buf == pinned)
					BENCH_FAIL("full cycle: the buffer was already imported");
				c_use(buf, dev, m.size);
				BENCH_CHECK(dmabuf_put(buf));
				close(fd);
				bench_send_byte(data_fd);
			}
			break;
		case C_PIN:
			pinned = c_recv_get(ctx, m.size, &pin_fd);
			bench_send_byte(data_fd);
			break;
		case C_STEADY:
			for (uint32_t i = 0; i < m.n; i++) {
				buf = c_recv_get(ctx, m.size, &fd);
				if (buf != pinned)
					BENCH_FAIL("steady: dmabuf_get did not find the proxy");
				c_use(buf, dev, m.size);
				BENCH_CHECK(dmabuf_put(buf));
				close(fd);
				bench_send_byte(data_fd);
			}
			break;
		case C_UNPIN:
			BENCH_CHECK(dmabuf_put(pinned));
			close(pin_fd);
			pinned = NULL;
			bench_send_byte(data_fd);
			break;
		case C_CONNECT: {
			uint64_t cpu = 0;

			for (uint32_t i = 0; i < m.n; i++) {
				struct dmabuf_ctx *fresh;
				uint64_t c0;

				BENCH_CHECK(dmabuf_ctx_new(NULL, &fresh));
				bench_send_byte(data_fd);	/* ready (untimed) */
				c0 = cpu_ns();
				buf = c_recv_get(fresh, m.size, &fd);
				BENCH_CHECK(dmabuf_put(buf));
				close(fd);
				bench_send_byte(data_fd);	/* timed reply */
				cpu += cpu_ns() - c0;
				bench_recv_byte(data_fd);	/* P's clock stopped */
				BENCH_CHECK(dmabuf_ctx_destroy(fresh));
			}
			cpu_send(cpu);
			break;
		}
		case C_QUIT:
			BENCH_CHECK(dmabuf_device_destroy(dev));
			BENCH_CHECK(dmabuf_ctx_destroy(ctx));
			return 0;
		default:
			BENCH_FAIL("unknown command %u", m.cmd);
		}
	}
}

/* ---- the producer (parent) ------------------------------------------------ */

static struct dmabuf_ctx *pctx;
static unsigned long releases, exports;
static int exporter_state;

static void op_release(struct dmabuf *buf)
{
	(void)buf;
	releases++;
}

static const struct dmabuf_ops ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = op_release,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

static struct dmabuf *p_export(uint64_t size)
{
	struct dmabuf_export_info info = {
		.exp_name = "bench-handoff", .ops = &ops, .size = size,
		.flags = O_RDWR, .priv = &exporter_state, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf;

	BENCH_CHECK(dmabuf_export(pctx, &info, &buf));
	exports++;
	return buf;
}

/* Serves the context until the consumer's reply byte (want_reply) or until
 * `want` buffers were released. */
static void p_serve(bool want_reply, unsigned long want)
{
	struct pollfd p[2] = {
		{ .fd = data_fd, .events = POLLIN },
		{ .fd = dmabuf_ctx_get_fd(pctx), .events = POLLIN },
	};

	for (;;) {
		if (!want_reply && releases >= want)
			return;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			BENCH_FAIL("poll: %s", strerror(errno));
		}
		if (p[1].revents)
			BENCH_CHECK(dmabuf_ctx_dispatch(pctx));
		if (want_reply && p[0].revents) {
			bench_recv_byte(data_fd);
			want_reply = false;
		}
	}
}

/* CPU ns of both processes per cycle in the last raw and connect rounds. */
static double raw_cpu, connect_cpu;
/* CPU ns per cycle of each side in the last libdmabuf and wl_shm rounds:
 * [0] the producer (wl_shm's client), [1] the consumer (wl_shm's server). */
static double lib_side_cpu[2], wl_side_cpu[2];

static double p_raw(uint32_t n, uint64_t size)
{
	uint64_t t0, c0, t;

	ctl_send(C_RAW, n, size);
	c0 = cpu_ns();
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		uint64_t hdr[HDR / 8] = { size };
		int fd = memfd_create("bench-raw", MFD_CLOEXEC | MFD_ALLOW_SEALING);

		if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
		    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
			BENCH_FAIL("memfd: %s", strerror(errno));
		bench_raw_send_fd(data_fd, fd, hdr, HDR);
		close(fd);
		bench_recv_byte(data_fd);
	}
	t = bench_now_ns() - t0;
	raw_cpu = (double)(cpu_ns() - c0 + cpu_recv()) / n;
	return (double)t / n;
}

/* sent: P closes its fd as soon as it is sent (as raw and wl_shm's client
 * do) instead of after the consumer's reply and its put. */
static double p_lib(uint32_t n, uint64_t size, bool sent)
{
	uint64_t hdr[HDR / 8] = { size };
	uint64_t t0, t, c0, cc0;

	ctl_send(C_LIB, n, size);
	c0 = cpu_ns();
	cc0 = pid_cpu_ns(consumer_pid);
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		struct dmabuf *buf = p_export(size);
		int fd = dmabuf_fd(buf, O_CLOEXEC);

		BENCH_CHECK(fd);
		BENCH_CHECK(dmabuf_send_fd(data_fd, fd, hdr, HDR));
		if (sent)
			close(fd);
		p_serve(true, 0);
		BENCH_CHECK(dmabuf_put(buf));
		if (!sent)
			close(fd);
		p_serve(false, exports);	/* back to idle */
	}
	t = bench_now_ns() - t0;
	lib_side_cpu[0] = (double)(cpu_ns() - c0) / n;
	lib_side_cpu[1] = (double)(pid_cpu_ns(consumer_pid) - cc0) / n;
	return (double)t / n;
}

/* The steady and connect kinds hand over one buffer P keeps. */
static struct dmabuf *held;
static int held_fd = -1;
static uint64_t held_size;

static void p_hold(uint64_t size)
{
	uint64_t hdr[HDR / 8] = { size };

	held = p_export(size);
	held_fd = dmabuf_fd(held, O_CLOEXEC);
	BENCH_CHECK(held_fd);
	held_size = size;
	ctl_send(C_PIN, 1, size);
	BENCH_CHECK(dmabuf_send_fd(data_fd, held_fd, hdr, HDR));
	p_serve(true, 0);
}

static void p_unhold(void)
{
	ctl_send(C_UNPIN, 1, 0);
	p_serve(true, 0);
	BENCH_CHECK(dmabuf_put(held));
	close(held_fd);
	held = NULL;
	p_serve(false, exports);
}

static double p_steady(uint32_t n)
{
	uint64_t hdr[HDR / 8] = { held_size };
	uint64_t t0;

	ctl_send(C_STEADY, n, held_size);
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		BENCH_CHECK(dmabuf_send_fd(data_fd, held_fd, hdr, HDR));
		p_serve(true, 0);
	}
	return (double)(bench_now_ns() - t0) / n;
}

/* P's side of raw_rt: waits in poll() as p_serve() does. */
static void p_rt_wait(void)
{
	struct pollfd p = { .fd = data_fd, .events = POLLIN };

	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			BENCH_FAIL("poll: %s", strerror(errno));
}

static double p_raw_rt(uint32_t n, uint64_t size)
{
	uint64_t hdr[HDR / 8] = { size };
	int fd = memfd_create("bench-raw-rt", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	uint64_t t0, t;

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		BENCH_FAIL("memfd: %s", strerror(errno));
	ctl_send(C_RAW_RT, n, size);
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		uint8_t msg[RT_REP] = { 0 };

		bench_raw_send_fd(data_fd, fd, hdr, HDR);
		p_rt_wait();
		if (recv(data_fd, msg, sizeof(msg), 0) != RT_REQ)
			BENCH_FAIL("raw_rt: bad request");
		msg[RT_REP - 1] = 0x5a;
		if (send(data_fd, msg, RT_REP, MSG_NOSIGNAL) != RT_REP)
			BENCH_FAIL("raw_rt send: %s", strerror(errno));
		p_rt_wait();
		bench_recv_byte(data_fd);
	}
	t = bench_now_ns() - t0;
	close(fd);
	return (double)t / n;
}

static double p_connect(uint32_t n)
{
	uint64_t hdr[HDR / 8] = { held_size };
	uint64_t sum = 0, cpu = 0;

	ctl_send(C_CONNECT, n, held_size);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t t0, c0;

		p_serve(true, 0);	/* the fresh context is ready */
		c0 = cpu_ns();
		t0 = bench_now_ns();
		BENCH_CHECK(dmabuf_send_fd(data_fd, held_fd, hdr, HDR));
		p_serve(true, 0);
		sum += bench_now_ns() - t0;
		cpu += cpu_ns() - c0;
		bench_send_byte(data_fd);	/* C may destroy its context */
	}
	connect_cpu = (double)(cpu + cpu_recv()) / n;
	return (double)sum / n;
}

/* ---- wl_shm --------------------------------------------------------------- */

#ifdef HAVE_WAYLAND
static struct wl_display *srv_display;

static void srv_client_gone(struct wl_listener *l, void *data)
{
	(void)l;
	(void)data;
	wl_display_terminate(srv_display);
}

/* The compositor process: wl_shm as libwayland implements it, one client. */
static int wl_server_main(int fd)
{
	struct wl_listener gone = { .notify = srv_client_gone };
	struct wl_client *client;

	srv_display = wl_display_create();
	if (!srv_display || wl_display_init_shm(srv_display) < 0)
		BENCH_FAIL("wl_display_create / wl_display_init_shm failed");
	client = wl_client_create(srv_display, fd);
	if (!client)
		BENCH_FAIL("wl_client_create: %s", strerror(errno));
	wl_client_add_destroy_listener(client, &gone);
	wl_display_run(srv_display);
	wl_display_destroy(srv_display);
	return 0;
}

static struct wl_display *cl_display;
static struct wl_shm *cl_shm;

static void reg_global(void *data, struct wl_registry *reg, uint32_t name,
		       const char *iface, uint32_t version)
{
	(void)data;
	(void)version;
	if (!strcmp(iface, wl_shm_interface.name))
		cl_shm = wl_registry_bind(reg, name, &wl_shm_interface, 1);
}

static void reg_global_remove(void *data, struct wl_registry *reg, uint32_t name)
{
	(void)data;
	(void)reg;
	(void)name;
}

static const struct wl_registry_listener reg_listener = {
	.global = reg_global,
	.global_remove = reg_global_remove,
};

static pid_t wl_start(void)
{
	struct wl_registry *reg;
	int sp[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		BENCH_FAIL("socketpair: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		BENCH_FAIL("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sp[0]);
		close(ctl_fd);
		close(data_fd);
		_exit(wl_server_main(sp[1]));
	}
	close(sp[1]);
	cl_display = wl_display_connect_to_fd(sp[0]);
	if (!cl_display)
		BENCH_FAIL("wl_display_connect_to_fd: %s", strerror(errno));
	reg = wl_display_get_registry(cl_display);
	wl_registry_add_listener(reg, &reg_listener, NULL);
	if (wl_display_roundtrip(cl_display) < 0 || !cl_shm)
		BENCH_FAIL("no wl_shm global");
	wl_registry_destroy(reg);
	return pid;
}

static double p_wl(uint32_t n, uint64_t size)
{
	int32_t width = size >= (1u << 20) ? 512 : 32;
	int32_t height = (int32_t)(size / 4 / (uint64_t)width);
	uint64_t c0 = cpu_ns(), sc0 = pid_cpu_ns(wl_server_pid);
	uint64_t t0 = bench_now_ns(), t;

	for (uint32_t i = 0; i < n; i++) {
		int fd = memfd_create("bench-wl", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		struct wl_shm_pool *pool;
		struct wl_buffer *wb;

		if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
		    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
			BENCH_FAIL("memfd: %s", strerror(errno));
		pool = wl_shm_create_pool(cl_shm, fd, (int32_t)size);
		wb = wl_shm_pool_create_buffer(pool, 0, width, height, width * 4,
					       WL_SHM_FORMAT_ARGB8888);
		close(fd);
		if (wl_display_roundtrip(cl_display) < 0)
			BENCH_FAIL("wl_display_roundtrip: %s", strerror(errno));
		wl_buffer_destroy(wb);
		wl_shm_pool_destroy(pool);
	}
	/* The last destroys travel with this roundtrip: part of the cost. */
	if (wl_display_roundtrip(cl_display) < 0)
		BENCH_FAIL("wl_display_roundtrip: %s", strerror(errno));
	t = bench_now_ns() - t0;
	wl_side_cpu[0] = (double)(cpu_ns() - c0) / n;
	wl_side_cpu[1] = (double)(pid_cpu_ns(wl_server_pid) - sc0) / n;
	return (double)t / n;
}

static void wl_stop(pid_t pid)
{
	int status;

	wl_shm_destroy(cl_shm);
	wl_display_disconnect(cl_display);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		BENCH_FAIL("wl_shm server failed (status %#x)", status);
}
#endif

/* ---- main ----------------------------------------------------------------- */

struct size_res {
	double v[NKINDS];	/* ns per cycle, median of the rounds */
	double raw_cpu, connect_cpu;	/* CPU ns of both per cycle, medians */
	double lib_cpu[2], wl_cpu[2];	/* per side (lib_side_cpu), medians */
	double sent_cpu[2];		/* the same for libdmabuf_sent */
};

static void measure(uint64_t size, uint32_t n, uint32_t n_connect, struct size_res *r)
{
	double v[NKINDS][ROUNDS], rc[ROUNDS], cc[ROUNDS], lc[2][ROUNDS], wc[2][ROUNDS];
	double sc[2][ROUNDS];
	int rounds = bench_smoke() ? 1 : ROUNDS;

	memset(v, 0, sizeof(v));
	memset(cc, 0, sizeof(cc));
	memset(lc, 0, sizeof(lc));
	memset(wc, 0, sizeof(wc));
	memset(sc, 0, sizeof(sc));
	/* warm-up */
	p_raw(n / 4 + 1, size);
	p_lib(n / 4 + 1, size, false);
#ifdef HAVE_WAYLAND
	if (kind_on(K_WL))
		p_wl(n / 4 + 1, size);
#endif
	for (int i = 0; i < rounds; i++) {
		v[K_RAW][i] = p_raw(n, size);
		rc[i] = raw_cpu;
#ifdef HAVE_WAYLAND
		if (kind_on(K_WL)) {
			v[K_WL][i] = p_wl(n, size);
			wc[0][i] = wl_side_cpu[0];
			wc[1][i] = wl_side_cpu[1];
		}
#endif
		if (kind_on(K_LIB)) {
			v[K_LIB][i] = p_lib(n, size, false);
			lc[0][i] = lib_side_cpu[0];
			lc[1][i] = lib_side_cpu[1];
		}
		if (kind_on(K_LIB_SENT)) {
			v[K_LIB_SENT][i] = p_lib(n, size, true);
			sc[0][i] = lib_side_cpu[0];
			sc[1][i] = lib_side_cpu[1];
		}
		if (kind_on(K_RAW_RT))
			v[K_RAW_RT][i] = p_raw_rt(n, size);
		if (!kind_on(K_STEADY) && !kind_on(K_CONNECT))
			continue;
		p_hold(size);
		if (kind_on(K_STEADY))
			v[K_STEADY][i] = p_steady(n);
		if (kind_on(K_CONNECT)) {
			v[K_CONNECT][i] = p_connect(n_connect);
			cc[i] = connect_cpu;
		}
		p_unhold();
	}
	for (int k = 0; k < NKINDS; k++)
		r->v[k] = bench_median(v[k], (size_t)rounds);
	r->raw_cpu = bench_median(rc, (size_t)rounds);
	r->connect_cpu = bench_median(cc, (size_t)rounds);
	for (int s = 0; s < 2; s++) {
		r->lib_cpu[s] = bench_median(lc[s], (size_t)rounds);
		r->wl_cpu[s] = bench_median(wc[s], (size_t)rounds);
		r->sent_cpu[s] = bench_median(sc[s], (size_t)rounds);
	}
}

/* The per-side CPU figures of one kind, and the overlap bound they give. */
static void side_cpu_lines(const char *kind, const char *k, const char *const side[2],
			   const double cpu[2])
{
	char name[64];

	for (int s = 0; s < 2; s++) {
		snprintf(name, sizeof(name), "%s_%s_cpu_%s", kind, k, side[s]);
		bench_line(BENCH, name, cpu[s], "ns");
	}
	if (cpu[0] > 0 && cpu[1] > 0) {
		snprintf(name, sizeof(name), "%s_buffers_per_s_overlap_bound_%s", kind, k);
		bench_line(BENCH, name, 1e9 / (cpu[0] > cpu[1] ? cpu[0] : cpu[1]), "1/s");
	}
}

int main(void)
{
	static const struct {
		uint64_t size;
		const char *label, *key;
	} sizes[] = { { 4096, "4 KiB", "4k" }, { 1u << 20, "1 MiB", "1m" } };
	bool smoke = bench_smoke();
	uint32_t n = smoke ? 3 : 200, n_connect = smoke ? 2 : 60;
	struct size_res res[2];
	int sp[2][2], status;
	bool have_wl = false;
	pid_t pid;
#ifdef HAVE_WAYLAND
	pid_t wl_pid;

	have_wl = true;
#endif

	setvbuf(stdout, NULL, _IOLBF, 0);
	bench_pin(true);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp[0]) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp[1]) < 0)
		BENCH_FAIL("socketpair: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		BENCH_FAIL("fork: %s", strerror(errno));
	if (pid == 0) {
		ctl_fd = sp[0][1], data_fd = sp[1][1];
		close(sp[0][0]);
		close(sp[1][0]);
		_exit(c_main());
	}
	consumer_pid = pid;
	ctl_fd = sp[0][0], data_fd = sp[1][0];
	close(sp[0][1]);
	close(sp[1][1]);
#ifdef HAVE_WAYLAND
	wl_pid = wl_start();
	wl_server_pid = wl_pid;
#endif
	BENCH_CHECK(dmabuf_ctx_new(NULL, &pctx));

	for (int s = 0; s < 2; s++)
		measure(sizes[s].size, n, n_connect, &res[s]);

	ctl_send(C_QUIT, 0, 0);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		BENCH_FAIL("consumer process failed (status %#x)", status);
#ifdef HAVE_WAYLAND
	wl_stop(wl_pid);
#endif
	if (releases != exports)
		BENCH_FAIL("%lu of %lu exported buffers released", releases, exports);
	BENCH_CHECK(dmabuf_ctx_destroy(pctx));
	close(ctl_fd);
	close(data_fd);

	printf("\nbuffer hand-off, producer -> consumer process (%s); median of %d rounds of %u cycles\n",
	       bench_unpinned() ? "unpinned" : "both on one CPU", smoke ? 1 : ROUNDS, n);
	printf("%s\n", have_wl ? "" : "(libwayland not found at configure time: no wl_shm figures)\n");
	printf("  %-7s %10s %10s %10s %10s %10s   us per cycle\n", "size", "raw", "wl_shm",
	       "libdmabuf", "steady", "connect");
	for (int s = 0; s < 2; s++)
		printf("  %-7s %10.2f %10.2f %10.2f %10.2f %10.2f\n", sizes[s].label,
		       res[s].v[K_RAW] / 1e3, res[s].v[K_WL] / 1e3, res[s].v[K_LIB] / 1e3,
		       res[s].v[K_STEADY] / 1e3, res[s].v[K_CONNECT] / 1e3);
	printf("\n");
	for (int s = 0; s < 2; s++) {
		const struct size_res *r = &res[s];
		const char *k = sizes[s].key;
		static const char *const lib_side[2] = { "producer", "consumer" };
		char name[64], what[96];

		for (int i = 0; i < NKINDS; i++) {
			if ((i == K_WL && !have_wl) || !kind_on((enum kind)i))
				continue;
			snprintf(name, sizeof(name), "%s_%s", kind_names[i], k);
			bench_line(BENCH, name, r->v[i], "ns");
		}
		snprintf(name, sizeof(name), "cycle_%s_vs_raw", k);
		snprintf(what, sizeof(what), "%s full cycle", sizes[s].label);
		if (kind_on(K_LIB)) {
			bench_ratio(BENCH, name, what, r->v[K_LIB], r->v[K_RAW], "raw", 2.0);
			side_cpu_lines("libdmabuf", k, lib_side, r->lib_cpu);
		}
		if (have_wl && kind_on(K_WL)) {
			static const char *const wl_side[2] = { "client", "server" };

			side_cpu_lines("wl_shm", k, wl_side, r->wl_cpu);
		}
		if (have_wl && kind_on(K_WL) && kind_on(K_LIB)) {
			snprintf(name, sizeof(name), "cycle_%s_vs_wl_shm", k);
			bench_ratio(BENCH, name, what, r->v[K_LIB], r->v[K_WL], "wl_shm", 1.5);
			snprintf(name, sizeof(name), "wl_shm_%s_vs_raw", k);
			snprintf(what, sizeof(what), "%s wl_shm cycle", sizes[s].label);
			bench_ratio(BENCH, name, what, r->v[K_WL], r->v[K_RAW], "raw", 0);
			/* buffers per second: libdmabuf's over wl_shm's, >= 1 */
			printf("  %-44s %7.0f /s libdmabuf, %7.0f /s wl_shm (target >= wl_shm) %s\n",
			       "buffers per second", 1e9 / r->v[K_LIB], 1e9 / r->v[K_WL],
			       r->v[K_LIB] <= r->v[K_WL] ? "met" : "MISSED");
			snprintf(name, sizeof(name), "buffers_per_s_%s", k);
			bench_line(BENCH, name, 1e9 / r->v[K_LIB], "1/s");
			snprintf(name, sizeof(name), "wl_shm_buffers_per_s_%s", k);
			bench_line(BENCH, name, 1e9 / r->v[K_WL], "1/s");
		}
		snprintf(what, sizeof(what), "%s full cycle, fd closed once sent", sizes[s].label);
		if (kind_on(K_LIB_SENT)) {
			snprintf(name, sizeof(name), "cycle_%s_sent_vs_raw", k);
			bench_ratio(BENCH, name, what, r->v[K_LIB_SENT], r->v[K_RAW], "raw", 2.0);
			snprintf(name, sizeof(name), "buffers_per_s_sent_%s", k);
			bench_line(BENCH, name, 1e9 / r->v[K_LIB_SENT], "1/s");
			side_cpu_lines("libdmabuf_sent", k, lib_side, r->sent_cpu);
		}
		if (have_wl && kind_on(K_WL) && kind_on(K_LIB_SENT)) {
			snprintf(name, sizeof(name), "cycle_%s_sent_vs_wl_shm", k);
			bench_ratio(BENCH, name, what, r->v[K_LIB_SENT], r->v[K_WL], "wl_shm", 1.5);
		}
		snprintf(name, sizeof(name), "steady_%s_vs_raw", k);
		snprintf(what, sizeof(what), "%s steady state (already imported)", sizes[s].label);
		if (kind_on(K_STEADY))
			bench_ratio(BENCH, name, what, r->v[K_STEADY], r->v[K_RAW], "raw", 1.3);
		snprintf(name, sizeof(name), "steady_%s_vs_raw_rt", k);
		if (kind_on(K_STEADY) && kind_on(K_RAW_RT))
			bench_ratio(BENCH, name, what, r->v[K_STEADY], r->v[K_RAW_RT],
				    "raw + 1 round trip", 0);
		snprintf(name, sizeof(name), "raw_rt_%s_vs_raw", k);
		snprintf(what, sizeof(what), "%s raw + 1 round trip (steady's floor)", sizes[s].label);
		if (kind_on(K_RAW_RT))
			bench_ratio(BENCH, name, what, r->v[K_RAW_RT], r->v[K_RAW], "raw", 0);
		snprintf(name, sizeof(name), "connect_%s_vs_raw", k);
		snprintf(what, sizeof(what), "%s first import + connect + HELLO", sizes[s].label);
		if (kind_on(K_CONNECT)) {
			bench_ratio(BENCH, name, what, r->v[K_CONNECT], r->v[K_RAW], "raw", 2.0);
			/* CPU time of both processes: steadier under load. */
			snprintf(name, sizeof(name), "raw_%s_cpu", k);
			bench_line(BENCH, name, r->raw_cpu, "ns");
			snprintf(name, sizeof(name), "connect_%s_cpu", k);
			bench_line(BENCH, name, r->connect_cpu, "ns");
			snprintf(name, sizeof(name), "connect_%s_cpu_ratio", k);
			snprintf(what, sizeof(what), "%s first connect, CPU of both", sizes[s].label);
			bench_ratio(BENCH, name, what, r->connect_cpu, r->raw_cpu, "raw", 0);
		}
	}
	return 0;
}
