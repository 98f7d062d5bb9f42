/* SPDX-License-Identifier: MIT */
/*
 * Peer death (docs/design.md §6): an importer process killed with SIGKILL at every
 * point of its conversation with the exporter, and an exporter process
 * killed under its importer.
 *
 * Importer death: the exporter (this process) undoes everything the peer
 * held exactly once: every map by one unmap, every attach by one detach,
 * every CPU bracket by one end; and releases the buffer exactly once after
 * its own last reference and fd go.
 *
 * Exporter death: the importer keeps CPU access to the memory (the memfd
 * lives on), device operations fail with -ENODEV, and undoing what it holds
 * still succeeds and leaks nothing.
 *
 * Every wait is bounded: a child whose parent failed exits on its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"

#define MiB (1024ull * 1024)
/* A hang guard, not a speed bound: its expiry means "it never came". */
#define CHILD_LIMIT_MS 30000

/* ---- the exporter's ops: test_exporter's, with a kill switch --------------- */

enum kill_in { KILL_NONE, KILL_IN_ATTACH, KILL_IN_MAP };

static enum kill_in kill_in;
static pid_t victim;
static int victim_status = -1;

/* Runs inside an exporter op: the importer waiting for this very request
 * dies before it gets the answer. */
static void kill_victim(enum kill_in where)
{
	if (kill_in != where || victim <= 0)
		return;
	kill(victim, SIGKILL);
	victim_status = harness_wait(victim);
	victim = 0;
}

static int k_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	kill_victim(KILL_IN_ATTACH);
	return tx_attach(buf, att);
}

static int k_map(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		 struct dmabuf_sg_table **sgt)
{
	kill_victim(KILL_IN_MAP);
	return tx_map(att, dir, sgt);
}

static const struct dmabuf_ops k_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = k_attach,
	.detach = tx_detach,
	.map = k_map,
	.unmap = tx_unmap,
	.release = tx_release,
	.begin_cpu_access = tx_begin,
	.end_cpu_access = tx_end,
	.mmap = tx_mmap,
	.vmap = tx_vmap,
	.vunmap = tx_vunmap,
};

/* ---- the importer child ------------------------------------------------------ */

enum stage {
	ST_CONNECT,	/* connected, no HELLO */
	ST_HELLO,	/* handshake done, nothing imported */
	ST_IMPORT,	/* imported (the library's client) */
	ST_ATTACH,	/* imported and attached */
	ST_MAPPED,	/* two connections, several attachments and mappings, a CPU bracket */
	ST_MID_RAW,	/* sends MAP and dies before the exporter reads it */
	ST_MID_ATTACH,	/* killed inside the exporter's attach op */
	ST_MID_MAP,	/* killed inside the exporter's map op */
};

struct env {
	enum stage stage;
	int buffd;
	struct harness_sync sync;
};

/* Waits (bounded) for the parent's byte; a parent that failed never sends
 * it, and the child leaves on its own. */
static int child_wait_parent(struct env *e, int ms)
{
	struct pollfd p = { .fd = e->sync.to_child[0], .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return -1;
	return harness_sync_wait_parent(&e->sync);
}

static struct dmabuf_ctx *child_ctx(void)
{
	struct dmabuf_ctx_config cfg = { .seed = 7, .call_timeout_ms = 10000 };
	struct dmabuf_ctx *ctx = NULL;

	child_check(dmabuf_ctx_new(&cfg, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	return ctx;
}

static struct dmabuf_device *child_dev(struct dmabuf_ctx *ctx, const char *name)
{
	struct dmabuf_device_info info = { .name = name, .dma_mask_bits = 64,
					   .flags = DMABUF_DEVICE_IOMMU };
	struct dmabuf_device *dev = NULL;

	child_check(dmabuf_device_new(ctx, &info, &dev) == 0);
	return dev;
}

static int importer(void *arg)
{
	struct env *e = arg;
	struct dmabuf_ctx *ctx, *ctx2;
	struct dmabuf *buf, *buf2;
	struct dmabuf_attachment *att[4];
	struct dmabuf_sg_table *sgt;
	uint64_t id, aid;
	int sock;

	harness_sync_child(&e->sync);
	switch (e->stage) {
	case ST_CONNECT:
		child_check(rp_connect(e->buffd) >= 0);
		break;
	case ST_HELLO:
		sock = rp_connect(e->buffd);
		child_check(sock >= 0);
		child_check(rp_hello(sock, NULL) == 0);
		break;
	case ST_IMPORT:
		ctx = child_ctx();
		child_check(dmabuf_get(ctx, e->buffd, &buf) == 0);
		break;
	case ST_ATTACH:
		ctx = child_ctx();
		child_check(dmabuf_get(ctx, e->buffd, &buf) == 0);
		child_check(dmabuf_attach(buf, child_dev(ctx, "dev"), &att[0]) == 0);
		break;
	case ST_MAPPED:
		ctx = child_ctx();
		ctx2 = child_ctx();
		child_check(dmabuf_get(ctx, e->buffd, &buf) == 0);
		child_check(dmabuf_get(ctx2, e->buffd, &buf2) == 0);
		child_check(dmabuf_attach(buf, child_dev(ctx, "a"), &att[0]) == 0);
		child_check(dmabuf_attach(buf, child_dev(ctx, "b"), &att[1]) == 0);
		child_check(dmabuf_attach(buf, child_dev(ctx, "c"), &att[2]) == 0);
		child_check(dmabuf_attach(buf2, child_dev(ctx2, "d"), &att[3]) == 0);
		child_check(dmabuf_map_attachment(att[0], DMABUF_TO_DEVICE, &sgt) == 0);
		child_check(dmabuf_map_attachment(att[0], DMABUF_FROM_DEVICE, &sgt) == 0);
		child_check(dmabuf_map_attachment(att[1], DMABUF_BIDIRECTIONAL, &sgt) == 0);
		child_check(dmabuf_map_attachment(att[2], DMABUF_TO_DEVICE, &sgt) == 0);
		child_check(dmabuf_map_attachment(att[2], DMABUF_BIDIRECTIONAL, &sgt) == 0);
		child_check(dmabuf_map_attachment(att[3], DMABUF_FROM_DEVICE, &sgt) == 0);
		child_check(dmabuf_begin_cpu_access(buf, DMABUF_FROM_DEVICE) == 0);
		child_check(dmabuf_begin_cpu_access(buf2, DMABUF_TO_DEVICE) == 0);
		break;
	case ST_MID_RAW: {
		struct dmb_msg m = { .op = DMB_OP_MAP };

		sock = rp_connect(e->buffd);
		child_check(sock >= 0);
		child_check(rp_hello(sock, NULL) == 0);
		child_check(rp_import(sock, NULL, e->buffd, &id) == 0);
		child_check(rp_attach(sock, NULL, id, &aid) == 0);
		child_check(rp_map(sock, NULL, aid, DMABUF_TO_DEVICE, NULL) == 0);
		/* the parent stops serving, then the request goes out and the
		 * requester dies before anyone reads it */
		harness_sync_tell_parent(&e->sync, 'p');
		child_check(child_wait_parent(e, CHILD_LIMIT_MS) == 'g');
		m.u.map.id = aid;
		m.u.map.dir = DMABUF_BIDIRECTIONAL;
		child_check(rp_send(sock, &m) == 0);
		raise(SIGKILL);
		break;
	}
	case ST_MID_ATTACH:
	case ST_MID_MAP:
		ctx = child_ctx();
		child_check(dmabuf_get(ctx, e->buffd, &buf) == 0);
		child_check(dmabuf_attach(buf, child_dev(ctx, "dev"), &att[0]) == 0);
		child_check(dmabuf_map_attachment(att[0], DMABUF_TO_DEVICE, &sgt) == 0);
		/* not reached: the exporter killed us inside attach or map */
		return 90;
	}
	harness_sync_tell_parent(&e->sync, 'r');
	/* hold everything until killed (or the parent gave up) */
	child_wait_parent(e, CHILD_LIMIT_MS);
	return 91;
}

/* ---- the exporter (this process) ------------------------------------------------ */

/* Serves the exporter until the child sends a byte; returns it, -1 on EOF
 * or after CHILD_LIMIT_MS. */
static int serve_until_child(struct dmabuf_ctx *exp, struct env *e)
{
	int64_t deadline = rp_now_ms() + CHILD_LIMIT_MS;

	while (rp_now_ms() < deadline) {
		struct pollfd p = { .fd = e->sync.to_parent[0], .events = POLLIN };

		if (poll(&p, 1, 0) == 1)
			return harness_sync_wait_child(&e->sync);
		dmabuf_ctx_dispatch_timeout(exp, 2);
	}
	return -1;
}

struct expect {
	int attach, map, begin;
};

static void importer_dies(enum stage stage, enum kill_in where, struct expect want)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "victim", .ops = &k_ops, .size = MiB, .flags = O_RDWR, .priv = &tx,
	};
	struct env e = { .stage = stage };
	struct dmabuf *buf;
	int fds0, status, n;
	pid_t pid;

	assert_int_equal(dmabuf_export(exp, &info, &buf), 0);
	e.buffd = dmabuf_fd(buf, O_CLOEXEC);
	fds0 = harness_count_fds();
	harness_sync_init(&e.sync);
	kill_in = where;
	victim_status = -1;
	pid = harness_fork(importer, &e);
	harness_sync_parent(&e.sync);
	if (where != KILL_NONE) {
		/* the kill happens inside the exporter's op */
		victim = pid;
		for (int64_t end = rp_now_ms() + CHILD_LIMIT_MS; victim && rp_now_ms() < end;)
			dmabuf_ctx_dispatch_timeout(exp, 2);
		if (victim) {
			kill(pid, SIGKILL);
			harness_wait(pid);
			victim = 0;
			fail_msg("stage %d: the child never reached the exporter's op", stage);
		}
		status = victim_status;
	} else if (stage == ST_MID_RAW) {
		assert_int_equal(serve_until_child(exp, &e), 'p');
		/* no dispatch from here until the child is dead */
		harness_sync_tell_child(&e.sync, 'g');
		status = harness_wait(pid);
	} else {
		n = serve_until_child(exp, &e);
		if (n != 'r') {
			kill(pid, SIGKILL);
			harness_wait(pid);
			fail_msg("stage %d: the child did not get there (%d)", stage, n);
		}
		kill(pid, SIGKILL);
		status = harness_wait(pid);
	}
	kill_in = KILL_NONE;
	assert_int_equal(status, 128 + SIGKILL);
	harness_sync_close(&e.sync);

	/* the exporter notices and undoes what the peer held */
	n = harness_count_fds();
	for (int i = 0; i < 1000 && (n != fds0 || tx.unmap != tx.map || tx.detach != tx.attach ||
				      tx.end != tx.begin); i++) {
		dmabuf_ctx_dispatch_timeout(exp, 5);
		n = harness_count_fds();
	}
	assert_int_equal(n, fds0);
	assert_int_equal(tx.attach, want.attach);
	assert_int_equal(tx.map, want.map);
	assert_int_equal(tx.begin, want.begin);
	/* exactly once */
	for (int i = 0; i < 10; i++)
		dmabuf_ctx_dispatch_timeout(exp, 1);
	assert_int_equal(tx.detach, want.attach);
	assert_int_equal(tx.unmap, want.map);
	assert_int_equal(tx.end, want.begin);
	assert_int_equal(tx.release, 0); /* this process still holds it */

	/* released once, after the exporter's own reference and fd go */
	assert_int_equal(dmabuf_put(buf), 0);
	for (int i = 0; i < 5; i++)
		dmabuf_ctx_dispatch_timeout(exp, 1);
	assert_int_equal(tx.release, 0);
	close(e.buffd);
	for (int i = 0; i < 1000 && tx.release == 0; i++)
		dmabuf_ctx_dispatch_timeout(exp, 5);
	assert_int_equal(tx.release, 1);
	for (int i = 0; i < 10; i++)
		dmabuf_ctx_dispatch_timeout(exp, 1);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 1);
	assert_int_equal(tx.detach, want.attach);
	assert_int_equal(tx.unmap, want.map);
}

static void killed_after_connect(void **state)
{
	importer_dies(ST_CONNECT, KILL_NONE, (struct expect){ 0, 0, 0 });
}

static void killed_after_hello(void **state)
{
	importer_dies(ST_HELLO, KILL_NONE, (struct expect){ 0, 0, 0 });
}

static void killed_after_import(void **state)
{
	importer_dies(ST_IMPORT, KILL_NONE, (struct expect){ 0, 0, 0 });
}

static void killed_after_attach(void **state)
{
	importer_dies(ST_ATTACH, KILL_NONE, (struct expect){ 1, 0, 0 });
}

static void killed_while_mapped(void **state)
{
	importer_dies(ST_MAPPED, KILL_NONE, (struct expect){ 4, 6, 2 });
}

static void killed_with_a_request_in_flight(void **state)
{
	/* the MAP it sent before dying is still served (then undone) */
	importer_dies(ST_MID_RAW, KILL_NONE, (struct expect){ 1, 2, 0 });
}

static void killed_inside_the_attach_op(void **state)
{
	importer_dies(ST_MID_ATTACH, KILL_IN_ATTACH, (struct expect){ 1, 0, 0 });
}

static void killed_inside_the_map_op(void **state)
{
	importer_dies(ST_MID_MAP, KILL_IN_MAP, (struct expect){ 1, 1, 0 });
}

/* ---- the exporter dies ------------------------------------------------------------- */

static uint8_t pattern(size_t i)
{
	return (uint8_t)((i * 131) ^ 0x5a);
}

/* The exporting child: exports, sends the fd, serves until killed. On 'x'
 * it stops serving, says so ('k'), waits for the next request to arrive and
 * dies with it unanswered. */
static int exporter_child(void *arg)
{
	int sock = *(int *)arg;
	static struct test_exporter tx;
	struct dmabuf_export_info info = {
		.exp_name = "doomed", .ops = &tx_ops, .size = MiB, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf_ctx_config cfg = { .seed = 3 };
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	uint8_t *v;
	int fd;

	child_check(dmabuf_ctx_new(&cfg, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	child_check(dmabuf_export(ctx, &info, &buf) == 0);
	child_check(dmabuf_vmap(buf, (void **)&v) == 0);
	for (size_t i = 0; i < MiB; i++)
		v[i] = pattern(i);
	child_check(dmabuf_vunmap(buf, v) == 0);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	child_check(dmabuf_send_fd(sock, fd, "f", 1) == 0);
	for (int64_t end = rp_now_ms() + CHILD_LIMIT_MS; rp_now_ms() < end;) {
		struct pollfd p[2] = { { .fd = sock, .events = POLLIN },
				       { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN } };
		char c = 0;
		size_t len;
		int got = -1;

		poll(p, 2, 10);
		if (p[0].revents) {
			if (dmabuf_recv_fd(sock, &got, &c, 1, &len) < 0)
				return 92; /* the parent is gone */
			if (c == 'x') {
				struct pollfd q = { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN };

				child_check(dmabuf_send_fd(sock, -1, "k", 1) == 0);
				poll(&q, 1, CHILD_LIMIT_MS);
				raise(SIGKILL);
			}
		}
		if (p[1].revents)
			dmabuf_ctx_dispatch(ctx);
	}
	return 93;
}

struct doomed {
	int sock, fd;
	pid_t pid;
	struct dmabuf_ctx *imp;
	struct dmabuf_device *dev[3];
	struct dmabuf *px;
};

static void doomed_start(struct doomed *d)
{
	int sv[2], child_sock;
	char c;
	size_t len;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	child_sock = sv[1];
	d->pid = harness_fork_sock(exporter_child, &child_sock, sv[0]);
	close(sv[1]);
	d->sock = sv[0];
	assert_int_equal(dmabuf_recv_fd(d->sock, &d->fd, &c, 1, &len), 0);
	assert_true(d->fd >= 0);
	d->imp = tx_ctx_new(0);
	d->dev[0] = tx_device(d->imp, "enc", 64, DMABUF_DEVICE_IOMMU, 0);
	d->dev[1] = tx_device(d->imp, "dec", 64, DMABUF_DEVICE_IOMMU, 0);
	d->dev[2] = tx_device(d->imp, "late", 64, DMABUF_DEVICE_IOMMU, 0);
	assert_int_equal(dmabuf_get(d->imp, d->fd, &d->px), 0);
}

static void doomed_finish(struct doomed *d)
{
	assert_int_equal(dmabuf_put(d->px), 0);
	close(d->fd);
	close(d->sock);
	dmabuf_ctx_destroy(d->imp);
}

static void check_pattern(const uint8_t *p, const char *what)
{
	for (size_t i = 0; i < MiB; i += 4093)
		if (p[i] != pattern(i))
			fail_msg("%s: byte %zu is %#x, expected %#x", what, i, p[i], pattern(i));
}

static void exporter_killed_importer_keeps_cpu_access(void **state)
{
	struct doomed d;
	struct dmabuf_attachment *att[2], *late = NULL;
	struct dmabuf_sg_table *sgt[3], *s = NULL;
	uint8_t *v, *v2, *p;

	doomed_start(&d);
	assert_int_equal(dmabuf_attach(d.px, d.dev[0], &att[0]), 0);
	assert_int_equal(dmabuf_attach(d.px, d.dev[1], &att[1]), 0);
	assert_int_equal(dmabuf_map_attachment(att[0], DMABUF_TO_DEVICE, &sgt[0]), 0);
	assert_int_equal(dmabuf_map_attachment(att[0], DMABUF_FROM_DEVICE, &sgt[1]), 0);
	assert_int_equal(dmabuf_map_attachment(att[1], DMABUF_BIDIRECTIONAL, &sgt[2]), 0);
	assert_int_equal(dmabuf_vmap(d.px, (void **)&v), 0);
	check_pattern(v, "vmap before the exporter died");
	assert_int_equal(dmabuf_begin_cpu_access(d.px, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_end_cpu_access(d.px, DMABUF_FROM_DEVICE), 0);

	kill(d.pid, SIGKILL);
	assert_int_equal(harness_wait(d.pid), 128 + SIGKILL);

	/* the memory lives on: mmap of the fd, the old vmap, a new vmap */
	p = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_SHARED, d.fd, 0);
	assert_true(p != MAP_FAILED);
	check_pattern(p, "mmap after the exporter died");
	check_pattern(v, "old vmap after the exporter died");
	p[17] = 0xee;
	assert_int_equal(v[17], 0xee);
	p[17] = pattern(17);
	assert_int_equal(munmap(p, MiB), 0);
	assert_int_equal(dmabuf_vmap(d.px, (void **)&v2), 0);
	check_pattern(v2, "new vmap after the exporter died");
	assert_int_equal(dmabuf_vunmap(d.px, v2), 0);

	/* device operations fail with -ENODEV: the death is seen, not waited
	 * out (a call that waited for call_timeout_ms would be -ETIMEDOUT) */
	assert_int_equal(dmabuf_attach(d.px, d.dev[2], &late), -ENODEV);
	assert_null(late);
	assert_int_equal(dmabuf_map_attachment(att[0], DMABUF_TO_DEVICE, &s), -ENODEV);
	assert_null(s);
	assert_int_equal(dmabuf_begin_cpu_access(d.px, DMABUF_FROM_DEVICE), -ENODEV);
	assert_int_equal(dmabuf_begin_cpu_access(d.px, DMABUF_BIDIRECTIONAL), -ENODEV);

	/* what it holds is let go without complaint */
	assert_int_equal(dmabuf_unmap_attachment(att[0], sgt[0], DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_unmap_attachment(att[0], sgt[1], DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_unmap_attachment(att[1], sgt[2], DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(d.px, att[0]), 0);
	assert_int_equal(dmabuf_detach(d.px, att[1]), 0);
	assert_int_equal(dmabuf_vunmap(d.px, v), 0);
	doomed_finish(&d);
}

static void exporter_killed_mid_request(void **state)
{
	struct doomed d;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt = NULL, *s2 = NULL;
	uint8_t *v;

	doomed_start(&d);
	assert_int_equal(dmabuf_attach(d.px, d.dev[0], &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &s2), 0);
	/* the exporter stops serving; the next request dies with it */
	assert_int_equal(dmabuf_send_fd(d.sock, -1, "x", 1), 0);
	{
		char c = 0;
		size_t len;
		int none = -1;

		/* it has stopped serving (or died: EOF fails this) */
		assert_int_equal(dmabuf_recv_fd(d.sock, &none, &c, 1, &len), 0);
		assert_int_equal(c, 'k');
		assert_int_equal(none, -1);
	}
	/* -ENODEV, not the -ETIMEDOUT of a call that waited its timeout out */
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_FROM_DEVICE, &sgt), -ENODEV);
	assert_null(sgt);
	assert_int_equal(harness_wait(d.pid), 128 + SIGKILL);
	assert_int_equal(dmabuf_vmap(d.px, (void **)&v), 0);
	check_pattern(v, "vmap after the exporter died mid-request");
	assert_int_equal(dmabuf_vunmap(d.px, v), 0);
	assert_int_equal(dmabuf_begin_cpu_access(d.px, DMABUF_TO_DEVICE), -ENODEV);
	assert_int_equal(dmabuf_unmap_attachment(att, s2, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(d.px, att), 0);
	doomed_finish(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(killed_after_connect),
		harness_test(killed_after_hello),
		harness_test(killed_after_import),
		harness_test(killed_after_attach),
		harness_test(killed_while_mapped),
		harness_test(killed_with_a_request_in_flight),
		harness_test(killed_inside_the_attach_op),
		harness_test(killed_inside_the_map_op),
		harness_test(exporter_killed_importer_keeps_cpu_access),
		harness_test(exporter_killed_mid_request),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
