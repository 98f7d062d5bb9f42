/* SPDX-License-Identifier: MIT */
/*
 * Connections that survive faults (docs/design.md §6, docs/protocol.md §6-7):
 * calls nested on one connection, a connection given up by the importer,
 * fd exhaustion on either side, exporters that never let a call finish, and
 * a flood of connections that never say HELLO.
 *
 * Real processes, real sockets, real RLIMIT_NOFILE (set in a child), real
 * SIGKILL. Every wait is bounded: a child whose parent failed exits on its
 * own.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"

#define MiB (1024ull * 1024)
#define WAIT_ROUNDS 3000 /* x 5 ms: a child whose parent failed gives up */

/* Waits for one framed message on @sock while dispatching @serve (may be
 * NULL). Returns its first byte (an fd that came with it goes to *fd, or is
 * closed when fd is NULL), or -1. */
static int wait_msg(int sock, struct dmabuf_ctx *serve, int *fd)
{
	char c = 0;
	size_t len;
	int got = -1;

	for (int i = 0;; i++) {
		struct pollfd p = { .fd = sock, .events = POLLIN };

		if (poll(&p, 1, 5) == 1)
			break;
		if (i > WAIT_ROUNDS)
			return -1;
		if (serve)
			dmabuf_ctx_dispatch(serve);
	}
	if (dmabuf_recv_fd(sock, &got, &c, 1, &len) < 0)
		return -1;
	if (fd)
		*fd = got;
	else if (got >= 0)
		close(got);
	return c;
}

static void say(int sock, int fd, char c)
{
	if (dmabuf_send_fd(sock, fd, &c, 1) < 0)
		harness_child_fail(__FILE__, __LINE__, "dmabuf_send_fd");
}

/* Serves @ctx until a message arrives on @sock; returns its first byte. */
static int serve_until_msg(int sock, struct dmabuf_ctx *ctx, int *fd)
{
	return wait_msg(sock, ctx, fd);
}

/* Waits for @pid while dispatching @serve; its exit status, 128 + signal,
 * or -1 if it does not end (then it is killed). */
static int reap(pid_t pid, struct dmabuf_ctx *serve)
{
	int status;

	for (int i = 0; i < WAIT_ROUNDS; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status)
						 : 128 + WTERMSIG(status);
		if (serve)
			dmabuf_ctx_dispatch_timeout(serve, 5);
		else
			usleep(5000);
	}
	kill(pid, SIGKILL);
	harness_wait(pid);
	return -1;
}

/* ---- 1. nested calls on one connection ------------------------------------- */

/*
 * Process A (the test) imports X from process E and exports Y. E's attach op
 * for X, while A waits for its answer, makes a third party (a raw peer in E)
 * ask A to attach Y; Y's attach op calls into X over the same connection and
 * only then lets E answer. So the outer reply arrives while the inner call
 * waits: it must be kept for the outer call, not taken as a protocol error.
 */
struct nest_env {
	int sock;	/* to the parent */
	int gate[2];	/* Y's op -> E's op: "the inner call is under way" */
};

static int nest_raw = -1;	/* E's raw connection to A's endpoint */
static uint64_t nest_y_id;	/* Y's id on it */
static int nest_gate = -1;

static int nest_x_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	struct dmb_msg m;
	struct pollfd p = { .fd = nest_gate, .events = POLLIN };
	char c;

	/* A third party asks A for Y while A waits for this answer. */
	rp_attach_msg(&m, nest_y_id);
	if (rp_send(nest_raw, &m) < 0)
		return -EIO;
	if (poll(&p, 1, 10000) != 1 || read(nest_gate, &c, 1) != 1)
		return -EIO;
	return tx_attach(buf, att);
}

static const struct dmabuf_ops nest_x_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = nest_x_attach, .detach = tx_detach,
	.map = tx_map, .unmap = tx_unmap, .release = tx_release,
	.begin_cpu_access = tx_begin, .end_cpu_access = tx_end,
};

static int nest_exporter(void *arg)
{
	struct nest_env *env = arg;
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "x", .ops = &nest_x_ops, .size = MiB, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf_ctx *ctx;
	struct dmabuf *x;
	struct dmb_msg r;
	int yfd = -1, xfd;

	close(env->gate[1]);
	nest_gate = env->gate[0];
	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	child_check(dmabuf_export(ctx, &info, &x) == 0);
	child_check(wait_msg(env->sock, NULL, &yfd) == 'y' && yfd >= 0);
	nest_raw = rp_connect(yfd);
	child_check(nest_raw >= 0);
	child_check(rp_hello(nest_raw, NULL) == 0);
	child_check(rp_import(nest_raw, NULL, yfd, &nest_y_id) == 0);
	close(yfd);
	xfd = dmabuf_fd(x, O_CLOEXEC);
	say(env->sock, xfd, 'x');
	close(xfd);
	child_check(serve_until_msg(env->sock, ctx, NULL) == 'q');
	/* A's detach is one-way: it may come after the side channel's 'q' */
	for (int i = 0; i < WAIT_ROUNDS && tx.detach != 1; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 5);
	/* the third party's attach of Y was answered */
	child_check(rp_recv(nest_raw, NULL, &r) == 1 && r.op == DMB_OP_ATTACH_REPLY &&
		    r.status == 0);
	child_check(tx.attach == 1 && tx.detach == 1);
	close(nest_raw);
	dmabuf_put(x);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static struct dmabuf *nest_x_proxy;
static int nest_inner_ret = 1, nest_inner_calls;
static int nest_gate_w = -1;

static int nest_y_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	struct dmabuf_info info = { 0 };

	nest_inner_calls++;
	if (write(nest_gate_w, "g", 1) != 1)
		return -EIO;
	/* The inner call, on the connection the outer call waits on. */
	nest_inner_ret = dmabuf_get_info(nest_x_proxy, &info);
	return tx_attach(buf, att);
}

static const struct dmabuf_ops nest_y_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = nest_y_attach, .detach = tx_detach,
	.map = tx_map, .unmap = tx_unmap, .release = tx_release,
};

static void nested_call_on_one_connection(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter ty = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "y", .ops = &nest_y_ops, .size = MiB, .flags = O_RDWR, .priv = &ty,
	};
	struct dmabuf_device *dev = tx_device(ctx, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct nest_env env;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_info xi = { 0 };
	struct dmabuf *y;
	int sv[2], yfd, xfd = -1;
	pid_t pid;

	assert_int_equal(dmabuf_export(ctx, &info, &y), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(pipe2(env.gate, O_CLOEXEC), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(nest_exporter, &env, sv[0]);
	close(sv[1]);
	close(env.gate[0]);
	nest_gate_w = env.gate[1];
	yfd = dmabuf_fd(y, O_CLOEXEC);
	assert_int_equal(dmabuf_send_fd(sv[0], yfd, "y", 1), 0);
	close(yfd);
	assert_int_equal(wait_msg(sv[0], ctx, &xfd), 'x');
	assert_int_equal(dmabuf_get(ctx, xfd, &nest_x_proxy), 0);

	/* The outer call: its reply arrives while the inner one waits. */
	assert_int_equal(dmabuf_attach(nest_x_proxy, dev, &att), 0);
	assert_int_equal(nest_inner_calls, 1);
	assert_int_equal(nest_inner_ret, 0);
	assert_int_equal(ty.attach, 1);
	/* The connection is healthy: later device operations work. */
	assert_int_equal(dmabuf_get_info(nest_x_proxy, &xi), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(nest_x_proxy, att), 0);
	assert_int_equal(dmabuf_put(nest_x_proxy), 0);
	close(xfd);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(reap(pid, ctx), 0);
	close(sv[0]);
	close(nest_gate_w);
	for (int i = 0; i < WAIT_ROUNDS && ty.detach != 1; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 5);
	assert_int_equal(ty.detach, 1); /* the raw peer's attachment, undone */
	assert_int_equal(dmabuf_put(y), 0);
	dmabuf_ctx_destroy(ctx);
}


/* ---- 2. a connection given up loses nothing --------------------------------- */

/* The exporter's begin op: held once until the importer says it gave the
 * call up ('t' on the side channel @hold_begin_sock: an event, not a sleep
 * that load could make shorter than the importer's wait), or -EBUSY
 * forever. */
static int hold_begin_sock = -1;
static bool hold_begin_told; /* the 't' came already */
static int busy_begin;

static int slow_begin(struct dmabuf *buf, enum dmabuf_direction dir)
{
	if (hold_begin_sock >= 0) {
		if (!hold_begin_told && wait_msg(hold_begin_sock, NULL, NULL) != 't')
			return -EIO;
		hold_begin_told = true;
		hold_begin_sock = -1;
	}
	if (busy_begin)
		return -EBUSY;
	return tx_begin(buf, dir);
}

static const struct dmabuf_ops slow_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = tx_attach, .detach = tx_detach,
	.map = tx_map, .unmap = tx_unmap, .release = tx_release,
	.begin_cpu_access = slow_begin, .end_cpu_access = tx_end,
	.mmap = tx_mmap,
};

enum imp_mode { IMP_TIMEOUT, IMP_BUSY, IMP_FENCE };

struct imp_env {
	int sock;
	enum imp_mode mode;
};

/*
 * The importer. IMP_TIMEOUT: a call_timeout_ms that the held BEGIN runs out
 * (the exporter holds it until told it did), long enough for the round
 * trips before it (attach, map, the fence export), which must not. The
 * others: the fence deadline (fence_timeout_ms) ends the call, each round
 * trip keeps the default 30 s as a hang guard only, so a slow exporter
 * under load cannot make a kept connection a given-up one.
 */
#define GIVE_UP_MS 3000

static int short_timeout_importer(void *arg)
{
	struct imp_env *env = arg;
	struct dmabuf_ctx_config cfg = { .fence_timeout_ms = 300 };
	struct dmabuf_device_info di = { .name = "dev", .flags = DMABUF_DEVICE_IOMMU };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_info info = { 0 };
	struct dmabuf *buf;
	int fd = -1, ret;

	if (env->mode == IMP_TIMEOUT) {
		cfg.call_timeout_ms = GIVE_UP_MS;
		cfg.fence_timeout_ms = 60000; /* the round trip's bound ends it */
	}
	child_check(dmabuf_ctx_new(&cfg, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	child_check(dmabuf_device_new(ctx, &di, &dev) == 0);
	child_check(wait_msg(env->sock, NULL, &fd) == 'f' && fd >= 0);
	child_check(dmabuf_get(ctx, fd, &buf) == 0);
	child_check(dmabuf_attach(buf, dev, &att) == 0);
	child_check(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) == 0);
	ret = dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE);
	child_check(ret == -ETIMEDOUT);
	if (env->mode == IMP_TIMEOUT) {
		/* Given up: the exporter's begin op may return now. */
		say(env->sock, -1, 't');
	} else {
		/* The exporter answers: the connection is kept. */
		child_check(dmabuf_get_info(buf, &info) == 0);
		child_check(info.attachments == 1 && info.mappings == 1);
	}
	/* Undoing completes locally whatever the connection's state. */
	child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE) == 0);
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	say(env->sock, -1, 'd');
	/* Stay alive: what the exporter undoes now is not a process death. */
	child_check(wait_msg(env->sock, NULL, NULL) == 'q');
	dmabuf_ctx_destroy(ctx);
	return 0;
}

/* What a test puts in front of short_timeout_importer(). */
struct gives_up {
	struct dmabuf_ctx *exp;
	struct test_exporter tx;
	struct dmabuf *buf;
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *fence;
};

/* Runs short_timeout_importer() against a buffer that @setup exports in
 * this process (after the fork, so the child holds none of its fds), and
 * checks that everything the importer held is undone and the buffer
 * released while the importer still lives. */
static void importer_gives_up(enum imp_mode mode, void (*setup)(struct gives_up *),
			      struct gives_up *g)
{
	struct imp_env env = { .mode = mode };
	struct test_exporter *tx = &g->tx;
	int sv[2], fd;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(short_timeout_importer, &env, sv[0]);
	close(sv[1]);
	g->exp = tx_ctx_new(0);
	setup(g);
	fd = dmabuf_fd(g->buf, O_CLOEXEC);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	assert_int_equal(dmabuf_put(g->buf), 0); /* the importer holds it now */
	if (mode == IMP_TIMEOUT) {
		int c;

		hold_begin_told = false;
		hold_begin_sock = sv[0];
		/* The 't' comes here first when the BEGIN was still unread
		 * (queued before the close: its op runs later, not held). */
		c = wait_msg(sv[0], g->exp, NULL);
		if (c == 't') {
			hold_begin_told = true;
			c = wait_msg(sv[0], g->exp, NULL);
		}
		assert_int_equal(c, 'd');
	} else {
		assert_int_equal(wait_msg(sv[0], g->exp, NULL), 'd');
	}
	for (int i = 0; i < WAIT_ROUNDS && tx->release == 0; i++)
		dmabuf_ctx_dispatch_timeout(g->exp, 5);
	assert_int_equal(tx->attach, 1);
	assert_int_equal(tx->map, 1);
	assert_int_equal(tx->unmap, 1);
	assert_int_equal(tx->detach, 1);
	assert_int_equal(tx->begin, tx->end); /* a late begin was ended */
	assert_int_equal(tx->release, 1);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(reap(pid, g->exp), 0);
	close(sv[0]);
	if (g->fence)
		dmabuf_fence_put(g->fence);
	if (g->tl)
		dmabuf_timeline_destroy(g->tl);
	dmabuf_ctx_destroy(g->exp);
}

static void export_slow(struct gives_up *g)
{
	struct dmabuf_export_info info = {
		.exp_name = "slow", .ops = &slow_ops, .size = MiB, .flags = O_RDWR,
		.priv = &g->tx,
	};

	assert_int_equal(dmabuf_export(g->exp, &info, &g->buf), 0);
}

static void given_up_connection_releases_everything(void **state)
{
	struct gives_up g = { 0 };

	/* The exporter's begin op runs, held until the importer gave up. */
	importer_gives_up(IMP_TIMEOUT, export_slow, &g);
	assert_true(hold_begin_told);
	hold_begin_sock = -1;
	assert_int_equal(g.tx.begin, 1);
}

/* ---- 4. no call waits forever on a misbehaving exporter ------------------------ */

static void endless_ebusy_is_bounded(void **state)
{
	struct gives_up g = { 0 };

	busy_begin = 1;
	importer_gives_up(IMP_BUSY, export_slow, &g);
	busy_begin = 0;
	assert_int_equal(g.tx.begin, 0);
}

/* A write fence that never signals on the exporter's buffer. */
static void export_fenced(struct gives_up *g)
{
	int sf;

	g->buf = tx_export(g->exp, &g->tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(dmabuf_timeline_new("never", &g->tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(g->tl, 1, &g->fence), 0);
	sf = dmabuf_sync_file_export(g->fence);
	assert_true(sf >= 0);
	assert_int_equal(dmabuf_import_sync_file(g->buf, DMABUF_SYNC_WRITE, sf), 0);
	close(sf);
}

static void fence_that_never_signals_is_bounded(void **state)
{
	struct gives_up g = { 0 };

	importer_gives_up(IMP_FENCE, export_fenced, &g);
	assert_int_equal(g.tx.begin, 0);
}

/* ---- 2b. releases are never lost, however many come in a row ------------------ */

#define RELEASES 300

static void count_log(void *data, enum dmabuf_log_priority prio, const char *msg)
{
	if (prio <= DMABUF_LOG_WARNING)
		(*(int *)data)++;
}

/* Two contexts of this process: the importer puts many proxies in a row
 * while nobody dispatches the exporter, so its socket fills up (the
 * kernel queues about net.unix.max_dgram_qlen packets). No RELEASE may be
 * dropped: each import is undone and each buffer released. */
/* Serves the exporter until every buffer is back to its own single
 * reference (each import released), or WAIT_ROUNDS pass: a wait on the
 * condition, not on a number of rounds, which load can make too few. */
static bool imports_released(struct dmabuf_ctx *exp, struct dmabuf **bufs, int n)
{
	struct dmabuf_info info = { 0 };

	for (int round = 0; round < WAIT_ROUNDS; round++) {
		int i;

		for (i = 0; i < n; i++)
			if (dmabuf_get_info(bufs[i], &info) != 0 || info.refcount != 1)
				break;
		if (i == n)
			return true;
		dmabuf_ctx_dispatch_timeout(exp, 5);
	}
	return false;
}

static void releases_in_a_row_are_not_lost(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	static struct dmabuf *bufs[RELEASES], *px[RELEASES];
	int fds[RELEASES];
	struct dmabuf_info info = { 0 };
	int warnings = 0;

	/* (300 RELEASE packets are more than a unix socket's default send
	 * buffer holds unread: about 278.) */
	dmabuf_ctx_set_log(imp, count_log, &warnings, DMABUF_LOG_WARNING);
	for (int i = 0; i < RELEASES; i++) {
		bufs[i] = tx_export(exp, &tx, 64 * 1024, O_RDWR, DMABUF_ALLOC_SYSTEM);
		fds[i] = dmabuf_fd(bufs[i], O_CLOEXEC);
		assert_int_equal(dmabuf_get(imp, fds[i], &px[i]), 0);
		close(fds[i]); /* 3 fds per buffer would be too many */
	}
	for (int i = 0; i < RELEASES; i++)
		assert_int_equal(dmabuf_put(px[i]), 0);
	assert_true(imports_released(exp, bufs, RELEASES));
	/* a call on the same connection still works */
	fds[0] = dmabuf_fd(bufs[0], O_CLOEXEC);
	assert_int_equal(dmabuf_get(imp, fds[0], &px[0]), 0);
	assert_int_equal(dmabuf_put(px[0]), 0);
	close(fds[0]);
	assert_true(imports_released(exp, bufs, RELEASES));
	for (int i = 0; i < RELEASES; i++) {
		assert_int_equal(dmabuf_get_info(bufs[i], &info), 0);
		assert_int_equal(info.refcount, 1); /* every import was released */
		assert_int_equal(dmabuf_put(bufs[i]), 0);
	}
	for (int i = 0; i < WAIT_ROUNDS && tx.release != RELEASES; i++)
		dmabuf_ctx_dispatch_timeout(exp, 5);
	assert_int_equal(tx.release, RELEASES);
	assert_int_equal(warnings, 0); /* the connection was never given up */
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
}

/* ---- 3. fd exhaustion fails one call, not the connection ------------------------ */

#define MAX_FILLERS 4096

/* Lowers RLIMIT_NOFILE (soft) just above the fds open now and fills every
 * free slot below it with /dev/null. Returns how many it opened. */
static int fill_fd_table(int *fillers)
{
	int open_fds[MAX_FILLERS], n = harness_list_fds(open_fds, MAX_FILLERS), top = 0, k = 0;
	struct rlimit rl;
	int fd;

	for (int i = 0; i < n; i++)
		if (open_fds[i] > top)
			top = open_fds[i];
	child_check(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = (rlim_t)top + 8;
	child_check(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	while (k < MAX_FILLERS && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		fillers[k++] = fd;
	child_check(k < MAX_FILLERS && errno == EMFILE);
	return k;
}

static void free_fillers(int *fillers, int *n, int count)
{
	while (count-- > 0 && *n > 0)
		close(fillers[--*n]);
}

/* The importer at RLIMIT_NOFILE: replies that carry an fd (FENCE_EXPORT in
 * begin_cpu_access, a MAP whose table travels as a memfd) fail their call
 * with -EMFILE; once fds are free the same connection serves again. */
static int importer_at_fd_limit(void *arg)
{
	int sock = *(int *)arg;
	struct dmabuf_device_info di = { .name = "dev", .flags = DMABUF_DEVICE_IOMMU,
					 .max_segment_size = 0xfffff000 };
	static int fillers[MAX_FILLERS];
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf *buf;
	int fd = -1, n;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	child_check(dmabuf_device_new(ctx, &di, &dev) == 0);
	child_check(wait_msg(sock, NULL, &fd) == 'f' && fd >= 0);
	child_check(dmabuf_get(ctx, fd, &buf) == 0);
	child_check(dmabuf_attach(buf, dev, &att) == 0);

	n = fill_fd_table(fillers);
	child_check(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE) == -EMFILE);
	child_check(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) == -EMFILE);
	child_check(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE) == -EMFILE);
	free_fillers(fillers, &n, 4);
	/* the same connection, now with fds to spare */
	child_check(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE) == 0);
	child_check(dmabuf_end_cpu_access(buf, DMABUF_FROM_DEVICE) == 0);
	child_check(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) == 0);
	child_check(dmabuf_sg_table_get_cpu_count(sgt) > 168); /* it came in a memfd */
	child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE) == 0);
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_put(buf) == 0);
	free_fillers(fillers, &n, n);
	close(fd);
	say(sock, -1, 'd');
	child_check(wait_msg(sock, NULL, NULL) == 'q');
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void importer_at_fd_limit_fails_one_call(void **state)
{
	struct test_exporter tx = { 0 };
	struct dmabuf_ctx *exp;
	struct dmabuf *buf;
	int sv[2], fd, sock;
	pid_t pid;

	if (harness_under_valgrind())
		skip(); /* valgrind's RLIMIT_NOFILE is virtual: the kernel installs the fd */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	sock = sv[1];
	pid = harness_fork_sock(importer_at_fd_limit, &sock, sv[0]);
	close(sv[1]);
	exp = tx_ctx_new(0);
	buf = tx_export(exp, &tx, 512 * MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	assert_int_equal(wait_msg(sv[0], exp, NULL), 'd');
	for (int i = 0; i < WAIT_ROUNDS && tx.detach == 0; i++)
		dmabuf_ctx_dispatch_timeout(exp, 5);
	/* the mapping whose table could not arrive was undone */
	assert_int_equal(tx.map, 2);
	assert_int_equal(tx.unmap, 2);
	assert_int_equal(tx.begin, 1);
	assert_int_equal(tx.end, 1);
	assert_int_equal(tx.attach, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(reap(pid, exp), 0);
	close(sv[0]);
	assert_int_equal(dmabuf_put(buf), 0);
	for (int i = 0; i < WAIT_ROUNDS && tx.release == 0; i++)
		dmabuf_ctx_dispatch_timeout(exp, 5);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(exp);
}

/* The exporter at RLIMIT_NOFILE: an IMPORT whose fd the kernel could not
 * install is answered -EMFILE; the peer keeps its other imports. */
static int exporter_at_fd_limit(void *arg)
{
	int sock = *(int *)arg;
	static int fillers[MAX_FILLERS];
	struct test_exporter tx = { 0 };
	struct dmabuf_ctx *ctx;
	struct dmabuf *a, *b;
	int fa, fb, n;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	a = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	b = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fa = dmabuf_fd(a, O_CLOEXEC);
	fb = dmabuf_fd(b, O_CLOEXEC);
	say(sock, fa, 'a');
	say(sock, fb, 'b');
	close(fa);
	close(fb);
	child_check(wait_msg(sock, ctx, NULL) == 'F');
	n = fill_fd_table(fillers);
	say(sock, -1, 'F');
	child_check(wait_msg(sock, ctx, NULL) == 'U');
	free_fillers(fillers, &n, n);
	say(sock, -1, 'U');
	child_check(wait_msg(sock, ctx, NULL) == 'q');
	child_check(tx.attach == 2 && tx.detach == 2);
	dmabuf_put(a);
	dmabuf_put(b);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void exporter_at_fd_limit_keeps_the_peer(void **state)
{
	struct dmabuf_ctx *imp;
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmabuf *pa, *pb;
	int sv[2], fa = -1, fb = -1, sock;
	pid_t pid;

	if (harness_under_valgrind())
		skip(); /* valgrind's RLIMIT_NOFILE is virtual: the kernel installs the fd */
	imp = tx_ctx_new(0);
	dev = tx_device(imp, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	sock = sv[1];
	pid = harness_fork_sock(exporter_at_fd_limit, &sock, sv[0]);
	close(sv[1]);
	assert_int_equal(wait_msg(sv[0], NULL, &fa), 'a');
	assert_int_equal(wait_msg(sv[0], NULL, &fb), 'b');
	assert_int_equal(dmabuf_get(imp, fa, &pa), 0);
	/* a call about pa: its IMPORT (sent without waiting) is done */
	assert_int_equal(dmabuf_attach(pa, dev, &att), 0);
	assert_int_equal(dmabuf_detach(pa, att), 0);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "F", 1), 0);
	assert_int_equal(wait_msg(sv[0], NULL, NULL), 'F');
	/* the exporter cannot take in the proof of possession: the IMPORT
	 * travels with the first call that needs the exporter (wire version
	 * 3), which gives its -EMFILE, as do the calls after it */
	assert_int_equal(dmabuf_get(imp, fb, &pb), 0);
	assert_int_equal(dmabuf_attach(pb, dev, &att), -EMFILE);
	assert_int_equal(dmabuf_attach(pb, dev, &att), -EMFILE);
	assert_int_equal(dmabuf_put(pb), 0);
	/* the peer, and what it imported before, are still there */
	assert_int_equal(dmabuf_attach(pa, dev, &att), 0);
	assert_int_equal(dmabuf_detach(pa, att), 0);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "U", 1), 0);
	assert_int_equal(wait_msg(sv[0], NULL, NULL), 'U');
	assert_int_equal(dmabuf_get(imp, fb, &pb), 0);
	/* a round trip: the exporter took the IMPORT (and the DETACH) */
	{
		struct dmabuf_info info = { .struct_size = sizeof(info) };

		assert_int_equal(dmabuf_get_info(pb, &info), 0);
		assert_int_equal(info.attachments, 0);
	}
	assert_int_equal(dmabuf_put(pb), 0);
	assert_int_equal(dmabuf_put(pa), 0);
	close(fa);
	close(fb);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(reap(pid, NULL), 0);
	close(sv[0]);
	dmabuf_ctx_destroy(imp);
}

/* The exporter of pipelined_import_and_held_back_requests(): one buffer,
 * served until 'q'; every op the importer asked for has run by then. */
static int pipelined_exporter(void *arg)
{
	int sock = *(int *)arg;
	struct test_exporter tx = { 0 };
	struct dmabuf_ctx *ctx;
	struct dmabuf *a;
	int fa;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	a = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fa = dmabuf_fd(a, O_CLOEXEC);
	say(sock, fa, 'a');
	close(fa);
	child_check(wait_msg(sock, ctx, NULL) == 'q');
	child_check(tx.attach == 1 && tx.detach == 1 && tx.map == 1 && tx.unmap == 1);
	dmabuf_put(a);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

/*
 * Wire version 3, an exporter in another process: dmabuf_get() answers
 * from the file and its IMPORT goes with the next request, so a fake
 * buffer (the right name and seals, no buffer of that exporter) is found
 * out by the first call that needs the exporter, with the -EINVAL the
 * import gave; the held-back UNMAP and DETACH have reached the exporter
 * when the next request's reply is back.
 */
static void pipelined_import_and_held_back_requests(void **state)
{
	const unsigned int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	char name[DMB_ENDPOINT_NAME_MAX], fake[96];
	struct dmabuf_ctx *imp;
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf *pa, *pf;
	int sv[2], fa = -1, ff, sock;
	pid_t pid;

	imp = tx_ctx_new(0);
	dev = tx_device(imp, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	sock = sv[1];
	pid = harness_fork_sock(pipelined_exporter, &sock, sv[0]);
	close(sv[1]);
	assert_int_equal(wait_msg(sv[0], NULL, &fa), 'a');
	assert_int_equal(dmabuf_get(imp, fa, &pa), 0);
	assert_int_equal(dmabuf_get_size(pa), MiB);
	assert_int_equal(dmb_endpoint_of_fd(fa, name, sizeof(name)), 0);
	/* what it held back arrives in order */
	assert_int_equal(dmabuf_attach(pa, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(pa, att), 0);
	assert_int_equal(dmabuf_get_info(pa, &info), 0);
	assert_int_equal(info.attachments, 0);
	assert_int_equal(info.mappings, 0);
	/* a fake, found out by its first call */
	snprintf(fake, sizeof(fake), "dmabuf:fake@%s", name);
	ff = memfd_create(fake, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(ff >= 0);
	assert_int_equal(ftruncate(ff, 4096), 0);
	assert_int_equal(fcntl(ff, F_ADD_SEALS, need), 0);
	assert_int_equal(dmabuf_get(imp, ff, &pf), 0);
	assert_int_equal(dmabuf_attach(pf, dev, &att), -EINVAL);
	assert_int_equal(dmabuf_attach(pf, dev, &att), -EINVAL);
	assert_int_equal(dmabuf_get_info(pf, &info), -EINVAL);
	assert_int_equal(dmabuf_put(pf), 0);
	close(ff);
	assert_int_equal(dmabuf_put(pa), 0);
	close(fa);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(reap(pid, NULL), 0);
	close(sv[0]);
	dmabuf_ctx_destroy(imp);
}

/*
 * A fence wait serves too. This process attaches a write fence of its own
 * timeline to X (exported by process E); the timeline advances only in Y's
 * attach op (Y exported here), which runs when a peer in E asks for it,
 * while begin_cpu_access(X) waits for that very fence.
 */
struct fwait_env {
	int sock;
};

static int fwait_exporter(void *arg)
{
	struct fwait_env *env = arg;
	struct test_exporter tx = { 0 };
	struct dmabuf_ctx *ctx;
	struct dmabuf *x;
	struct dmb_msg m, r;
	uint64_t yid = 0;
	int yfd = -1, xfd, raw;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	x = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	child_check(wait_msg(env->sock, NULL, &yfd) == 'y' && yfd >= 0);
	raw = rp_connect(yfd);
	child_check(raw >= 0);
	child_check(rp_hello(raw, NULL) == 0);
	child_check(rp_import(raw, NULL, yfd, &yid) == 0);
	close(yfd);
	xfd = dmabuf_fd(x, O_CLOEXEC);
	say(env->sock, xfd, 'x');
	close(xfd);
	child_check(wait_msg(env->sock, ctx, NULL) == 'g');
	/* Let the parent get into its fence wait, then ask for Y. */
	for (int i = 0; i < 60; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 5);
	rp_attach_msg(&m, yid);
	child_check(rp_send(raw, &m) == 0);
	child_check(wait_msg(env->sock, ctx, NULL) == 'q');
	child_check(rp_recv(raw, ctx, &r) == 1 && r.op == DMB_OP_ATTACH_REPLY && r.status == 0);
	close(raw);
	dmabuf_put(x);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static struct dmabuf_timeline *fwait_tl;

static int fwait_y_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	dmabuf_timeline_inc(fwait_tl, 1);
	return tx_attach(buf, att);
}

static const struct dmabuf_ops fwait_y_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = fwait_y_attach, .detach = tx_detach,
	.map = tx_map, .unmap = tx_unmap, .release = tx_release,
};

static void fence_wait_serves_this_process(void **state)
{
	/* a hang guard only: the fence signals, by a request to this process */
	struct dmabuf_ctx_config cfg = { .fence_timeout_ms = 30000 };
	struct test_exporter ty = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "y", .ops = &fwait_y_ops, .size = MiB, .flags = O_RDWR, .priv = &ty,
	};
	struct fwait_env env;
	struct dmabuf_fence *fence;
	struct dmabuf_ctx *ctx;
	struct dmabuf *y, *px;
	int sv[2], yfd, xfd = -1, sf;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(fwait_exporter, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	assert_int_equal(dmabuf_export(ctx, &info, &y), 0);
	yfd = dmabuf_fd(y, O_CLOEXEC);
	assert_int_equal(dmabuf_send_fd(sv[0], yfd, "y", 1), 0);
	close(yfd);
	assert_int_equal(wait_msg(sv[0], ctx, &xfd), 'x');
	assert_int_equal(dmabuf_get(ctx, xfd, &px), 0);
	assert_int_equal(dmabuf_timeline_new("served", &fwait_tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(fwait_tl, 1, &fence), 0);
	sf = dmabuf_sync_file_export(fence);
	assert_true(sf >= 0);
	assert_int_equal(dmabuf_import_sync_file(px, DMABUF_SYNC_WRITE, sf), 0);
	close(sf);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "g", 1), 0);
	/* The write fence signals only if this wait serves Y's peer. */
	assert_int_equal(dmabuf_begin_cpu_access(px, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(ty.attach, 1);
	assert_int_equal(dmabuf_end_cpu_access(px, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_put(px), 0);
	close(xfd);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(reap(pid, ctx), 0);
	close(sv[0]);
	for (int i = 0; i < WAIT_ROUNDS && ty.detach != 1; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 5);
	assert_int_equal(ty.detach, 1);
	dmabuf_fence_put(fence);
	dmabuf_timeline_destroy(fwait_tl);
	assert_int_equal(dmabuf_put(y), 0);
	dmabuf_ctx_destroy(ctx);
}

/* A peer may add only READ and WRITE fences, as DMA_BUF_IOCTL_IMPORT_SYNC_FILE
 * allows: a KERNEL fence that never signals would hold every later MAP, by
 * any peer, inside the exporter's event loop. */
static void peer_cannot_add_kernel_fences(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *fence;
	uint64_t id = 0;
	int fd = dmabuf_fd(buf, O_CLOEXEC), sock, sf;

	assert_int_equal(dmabuf_timeline_new("never", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &fence), 0);
	sf = dmabuf_sync_file_export(fence);
	assert_true(sf >= 0);
	sock = rp_connect(fd);
	assert_true(sock >= 0);
	assert_int_equal(rp_hello(sock, exp), 0);
	assert_int_equal(rp_import(sock, exp, fd, &id), 0);
	for (uint32_t usage = DMABUF_RESV_USAGE_KERNEL; usage <= DMABUF_RESV_USAGE_BOOKKEEP; usage++) {
		struct dmb_msg m = { .op = DMB_OP_FENCE_ATTACH, .nfds = 1 };
		bool allowed = usage == DMABUF_RESV_USAGE_READ || usage == DMABUF_RESV_USAGE_WRITE;

		m.u.fence_attach.buffer_id = id;
		m.u.fence_attach.usage = usage;
		m.fds[0] = sf;
		assert_int_equal(rp_call(sock, exp, &m, NULL), allowed ? 0 : -EINVAL);
	}
	/* no KERNEL fence: a map does not wait */
	assert_int_equal(dmabuf_resv_test_signaled(dmabuf_get_resv(buf), DMABUF_RESV_USAGE_KERNEL), 1);
	close(sock);
	close(sf);
	for (int i = 0; i < 20; i++)
		dmabuf_ctx_dispatch_timeout(exp, 2);
	dmabuf_fence_put(fence);
	dmabuf_timeline_destroy(tl);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dmabuf_ctx_destroy(exp);
}

/* dmabuf_recv_fd() at RLIMIT_NOFILE: -EMFILE for that message, which is
 * consumed; the next one (a stream stays in step) is read as usual. */
static int recv_fd_at_limit(void *arg)
{
	static int fillers[MAX_FILLERS];
	static const int types[] = { SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM };

	for (unsigned int t = 0; t < 3; t++) {
		char p[8] = { 0 };
		size_t len = 0;
		int sv[2], fd = -1, n, dn = open("/dev/null", O_RDONLY | O_CLOEXEC);
		struct rlimit rl;

		child_check(dn >= 0);
		child_check(socketpair(AF_UNIX, types[t] | SOCK_CLOEXEC, 0, sv) == 0);
		child_check(dmabuf_send_fd(sv[0], dn, "one", 3) == 0);
		child_check(dmabuf_send_fd(sv[0], -1, "two", 3) == 0);
		close(dn);
		child_check(getrlimit(RLIMIT_NOFILE, &rl) == 0);
		n = fill_fd_table(fillers);
		child_check(dmabuf_recv_fd(sv[1], &fd, p, sizeof(p), &len) == -EMFILE);
		child_check(fd == -1);
		child_check(dmabuf_recv_fd(sv[1], &fd, p, sizeof(p), &len) == 0);
		child_check(fd == -1 && len == 3 && !memcmp(p, "two", 3));
		free_fillers(fillers, &n, n);
		child_check(setrlimit(RLIMIT_NOFILE, &rl) == 0);
		close(sv[0]);
		close(sv[1]);
	}
	return 0;
}

static void recv_fd_at_fd_limit_is_emfile(void **state)
{
	if (harness_under_valgrind())
		skip(); /* valgrind's RLIMIT_NOFILE is virtual: the kernel installs the fd */
	assert_int_equal(harness_wait(harness_fork(recv_fd_at_limit, NULL)), 0);
}

/* ---- 5. a connect flood neither spins the exporter nor locks anyone out ------- */

#define FLOOD 300
#define IDLE_MS 1000

/* CPU time (user + system) this process used, in ms. */
static long cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000L +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000L;
}

/* The exporter idles as a real program does, blocked in poll() on its
 * context fd and dispatching what comes, for IDLE_MS of wall time; returns
 * the CPU time that took. */
static long idle_cpu_ms(struct dmabuf_ctx *ctx)
{
	long c0 = cpu_ms();
	int64_t end = rp_now_ms() + IDLE_MS, left;

	while ((left = end - rp_now_ms()) > 0) {
		struct pollfd p = { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN };

		if (poll(&p, 1, (int)left) == 1)
			dmabuf_ctx_dispatch(ctx);
	}
	return cpu_ms() - c0;
}

/* Reports a number to the parent as a short string. */
static void say_number(int sock, char tag, long v)
{
	char b[32];

	snprintf(b, sizeof(b), "%c%ld", tag, v);
	child_check(dmabuf_send_fd(sock, -1, b, strlen(b)) == 0);
}

static long wait_number(int sock, char tag)
{
	char b[32] = { 0 };
	size_t len = 0;
	int fd = -1;

	for (int i = 0; i < WAIT_ROUNDS; i++) {
		struct pollfd p = { .fd = sock, .events = POLLIN };

		if (poll(&p, 1, 5) == 1)
			break;
	}
	if (dmabuf_recv_fd(sock, &fd, b, sizeof(b) - 1, &len) < 0 || b[0] != tag)
		return -1;
	if (fd >= 0)
		close(fd);
	return strtol(b + 1, NULL, 10);
}

enum flood_mode {
	FLOOD_ROOM,	/* fds to spare beyond what the flood may take */
	FLOOD_FULL,	/* the fd table is full before the flood comes */
};

struct flood_env {
	int sock;
	enum flood_mode mode;
};

static int flooded_exporter(void *arg)
{
	struct flood_env *env = arg;
	static int fillers[MAX_FILLERS];
	struct test_exporter tx = { 0 };
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf, *more;
	int fd, n = 0;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	if (env->mode == FLOOD_FULL) {
		n = fill_fd_table(fillers);
	} else {
		/* 40 fds to spare: more than unfinished handshakes may hold */
		struct rlimit rl;

		child_check(getrlimit(RLIMIT_NOFILE, &rl) == 0);
		rl.rlim_cur = (rlim_t)fd + 41;
		child_check(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	}
	say(env->sock, fd, 'f');
	child_check(wait_msg(env->sock, NULL, NULL) == 'm'); /* the flood is in */
	say_number(env->sock, 'c', idle_cpu_ms(ctx));
	if (env->mode == FLOOD_ROOM) {
		/* the flood did not eat the exporter's fds */
		more = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
		dmabuf_put(more);
	}
	free_fillers(fillers, &n, n);
	/* a legitimate importer comes now */
	child_check(wait_msg(env->sock, ctx, NULL) == 'q');
	close(fd);
	dmabuf_put(buf);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void connect_flood(enum flood_mode mode)
{
	struct flood_env env = { .mode = mode };
	static int flood[FLOOD];
	char name[DMB_ENDPOINT_NAME_MAX];
	struct dmabuf_ctx *imp;
	struct dmabuf *px;
	int sv[2], fd = -1, nflood = 0;
	long cpu;
	pid_t pid;

	if (harness_under_valgrind())
		skip(); /* valgrind's RLIMIT_NOFILE is virtual */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(flooded_exporter, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(wait_msg(sv[0], NULL, &fd), 'f');
	assert_int_equal(dmb_endpoint_of_fd(fd, name, sizeof(name)), 0);
	/* Connections that never say HELLO, until the backlog is full. */
	while (nflood < FLOOD) {
		struct sockaddr_un addr = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

		assert_true(s >= 0);
		memcpy(addr.sun_path + 1, name, strlen(name));
		if (connect(s, (struct sockaddr *)&addr,
			    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name))) < 0) {
			assert_int_equal(errno, EAGAIN);
			close(s);
			break;
		}
		flood[nflood++] = s;
	}
	assert_true(nflood > 64);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "m", 1), 0);
	cpu = wait_number(sv[0], 'c');
	print_message("%d connections that never said HELLO; the idle exporter used %ld ms of CPU in %d ms\n",
		      nflood, cpu, IDLE_MS);
	/* An idle exporter does not spin, whatever the flood left behind. */
	if (cpu < 0 || cpu > IDLE_MS / 4)
		fail_msg("the idle exporter used %ld ms of CPU in %d ms", cpu, IDLE_MS);
	/* A legitimate importer still gets the buffer. */
	imp = tx_ctx_new(0);
	assert_int_equal(dmabuf_get(imp, fd, &px), 0);
	assert_int_equal(dmabuf_put(px), 0);
	dmabuf_ctx_destroy(imp);
	for (int i = 0; i < nflood; i++)
		close(flood[i]);
	close(fd);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(reap(pid, NULL), 0);
	close(sv[0]);
}

static void connect_flood_with_fds_to_spare(void **state)
{
	connect_flood(FLOOD_ROOM);
}

static void connect_flood_at_the_fd_limit(void **state)
{
	connect_flood(FLOOD_FULL);
}

/* ---- an exporter that does not serve is named early --------------------------- */

struct seen_log {
	int errors;
	char first[512];
};

static void keep_log(void *data, enum dmabuf_log_priority prio, const char *msg)
{
	struct seen_log *s = data;

	if (prio <= DMABUF_LOG_ERROR && s->errors++ == 0)
		snprintf(s->first, sizeof(s->first), "%s", msg);
}

static void silent_exporter_is_named_early(void **state)
{
	struct dmabuf_ctx_config cfg = { .call_timeout_ms = 800 };
	struct seen_log seen = { 0 };
	struct dmabuf_ctx *ctx = NULL;
	struct dmabuf *proxy = NULL;
	int sv[2], fd = -1;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct test_exporter tx = { 0 };
		struct dmabuf_ctx *e = tx_ctx_new(0);
		struct dmabuf *buf = tx_export(e, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
		int bfd = dmabuf_fd(buf, O_CLOEXEC);

		close(sv[0]);
		say(sv[1], bfd, 'F');
		close(bfd);
		/* Never dispatches: waits for the parent to be done. */
		wait_msg(sv[1], NULL, NULL);
		_exit(0);
	}
	close(sv[1]);
	assert_int_equal(wait_msg(sv[0], NULL, &fd), 'F');
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, keep_log, &seen, DMABUF_LOG_ERROR);
	/* HELLO and IMPORT go without waiting: the first call waits */
	assert_int_equal(dmabuf_get(ctx, fd, &proxy), 0);
	assert_int_equal(dmabuf_set_name(proxy, "x"), -ETIMEDOUT);
	assert_int_equal(dmabuf_put(proxy), 0);
	/* The first thing said is the early hint, naming the exporter. */
	assert_true(seen.errors >= 2);
	assert_non_null(strstr(seen.first, "is it serving"));
	assert_non_null(strstr(seen.first, "dmabuf-"));
	close(fd);
	say(sv[0], -1, 'Q');
	assert_int_equal(reap(pid, NULL), 0);
	close(sv[0]);
	assert_int_equal(dmabuf_ctx_destroy(ctx), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(nested_call_on_one_connection),
		harness_test(silent_exporter_is_named_early),
		harness_test(given_up_connection_releases_everything),
		harness_test(releases_in_a_row_are_not_lost),
		harness_test(endless_ebusy_is_bounded),
		harness_test(fence_that_never_signals_is_bounded),
		harness_test(fence_wait_serves_this_process),
		harness_test(peer_cannot_add_kernel_fences),
		harness_test(importer_at_fd_limit_fails_one_call),
		harness_test(exporter_at_fd_limit_keeps_the_peer),
		harness_test(pipelined_import_and_held_back_requests),
		harness_test(recv_fd_at_fd_limit_is_emfile),
		harness_test(connect_flood_with_fds_to_spare),
		harness_test(connect_flood_at_the_fd_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
