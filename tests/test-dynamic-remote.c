/* SPDX-License-Identifier: MIT */
/* Dynamic attachments across processes: the exporter's moves and
 * revocation reach an importer in another process as MOVE_NOTIFY events; a
 * slow importer does not block the exporter; one killed mid-move leaves
 * nothing behind; an importer's pins (PIN/UNPIN) hold the exporter's
 * buffer in place, and go with the importer. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"

#define PG 4096ull

struct child_env {
	int sock;
	int mode;
};

enum { MODE_MOVE = 0, MODE_SLOW = 1, MODE_KILLED = 2 };

static int moved;

static void count_move(struct dmabuf_attachment *att)
{
	moved++;
}

static const struct dmabuf_importer_ops count_ops = {
	.version = DMABUF_IMPORTER_OPS_VERSION,
	.move_notify = count_move,
};

static void tell(int sock, char c)
{
	child_check(dmabuf_send_fd(sock, -1, &c, 1) == 0);
}

/* Dispatches until the importer was told `want` times (~30 s at most). */
static void dispatch_until_moved(struct dmabuf_ctx *ctx, int want)
{
	for (int i = 0; i < 3000 && moved < want; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
}

static int stale_fault(struct dmabuf_device *dev, const struct dmabuf_sg_table *sgt)
{
	struct dmabuf_dma_fault f;
	char b[8];

	if (dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr, b, 8) != -EFAULT)
		return 0;
	return dmabuf_device_get_faults(dev, &f, 1) == 1 && f.reason == DMABUF_FAULT_STALE;
}

static int importer_process(void *arg)
{
	struct child_env *env = arg;
	struct dmabuf_device_info info = { .name = "dyn-dev", .flags = DMABUF_DEVICE_IOMMU };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt, *fresh = NULL;
	char c = 0, out[8] = { 0 };
	size_t len;
	int fd, tmp = -1;

	moved = 0;
	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	child_check(dmabuf_device_new(ctx, &info, &dev) == 0);
	child_check(dmabuf_recv_fd(env->sock, &fd, &c, 1, &len) == 0);
	child_check(dmabuf_get(ctx, fd, &buf) == 0);
	child_check(dmabuf_dynamic_attach(buf, dev, &count_ops, NULL, &att) == 0);
	child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == 0);
	child_check(dmabuf_dma_write(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
				     "moving", 7) == 0);
	tell(env->sock, 'm');
	if (env->mode == MODE_KILLED)
		for (int i = 0; i < 300; i++)
			usleep(100000);
	/* the exporter moved (or moved many times while we were stopped) */
	c = 0;
	child_check(dmabuf_recv_fd(env->sock, &tmp, &c, 1, &len) == 0);
	child_check(c == 'g');
	dispatch_until_moved(ctx, 1);
	child_check(moved >= 1);
	child_check(stale_fault(dev, sgt));
	child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
	/* the next map is the new placement: one contiguous run, same bytes */
	child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &fresh) == 0);
	child_check(dmabuf_sg_table_get_cpu_count(fresh) == 1);
	child_check(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(fresh)[0].dma_addr,
				    out, 7) == 0);
	child_check(strcmp(out, "moving") == 0);
	if (env->mode == MODE_MOVE) {
		int before = moved;

		tell(env->sock, 'r');
		c = 0;
		child_check(dmabuf_recv_fd(env->sock, &tmp, &c, 1, &len) == 0);
		child_check(c == 'v');
		/* revoked: told once more, mappings stale, maps -ENODEV */
		dispatch_until_moved(ctx, before + 1);
		child_check(moved == before + 1);
		child_check(stale_fault(dev, fresh));
		child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == -ENODEV);
	}
	child_check(dmabuf_unmap_attachment(att, fresh, DMABUF_BIDIRECTIONAL) == 0);
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	child_check(dmabuf_device_destroy(dev) == 0);
	dmabuf_ctx_destroy(ctx);
	tell(env->sock, 'd');
	return 0;
}

static int migrate(struct dmabuf *buf, enum dmabuf_alloc alloc)
{
	struct dmabuf_resv *resv = dmabuf_get_resv(buf);
	int ret;

	dmabuf_resv_lock(resv);
	ret = dmabuf_backing_migrate(buf, alloc, NULL);
	dmabuf_resv_unlock(resv);
	return ret;
}

static pid_t start_importer(struct dmabuf *buf, int mode, int *sock)
{
	static struct child_env env;
	int sv[2], fd = dmabuf_fd(buf, O_CLOEXEC);
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	env.mode = mode;
	pid = harness_fork_sock(importer_process, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	*sock = sv[0];
	return pid;
}

static struct dmabuf *export_pinning(struct dmabuf_ctx *ctx, struct test_exporter *tx)
{
	struct dmabuf_export_info info = {
		.exp_name = "mover", .ops = &tx_pin_ops, .size = 64 * PG,
		.flags = O_RDWR, .priv = tx, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	return buf;
}

static void move_and_revoke_reach_another_process(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_pinning(exp, &tx);
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	int sock;
	pid_t pid = start_importer(buf, MODE_MOVE, &sock);

	assert_int_equal(tx_wait_byte(sock, exp), 'm');
	/* a dynamic importer in another process does not pin */
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 1);
	assert_int_equal(info.pin_count, 0);
	assert_int_equal(tx.pin, 0);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), 0);
	assert_int_equal(dmabuf_send_fd(sock, -1, "g", 1), 0);
	assert_int_equal(tx_wait_byte(sock, exp), 'r');
	assert_int_equal(dmabuf_revoke(buf), 0);
	assert_int_equal(dmabuf_send_fd(sock, -1, "v", 1), 0);
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	assert_int_equal(harness_wait(pid), 0);
	/* UNMAP and DETACH are one-way: they may still be in the socket */
	for (int i = 0; i < 500 && tx.detach < 1; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 0);
	assert_int_equal(info.mappings, 0);
	assert_int_equal(tx.map, 2);
	assert_int_equal(tx.unmap, 2);
	close(sock);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* The importer is stopped: its socket fills with MOVE_NOTIFY events. The
 * exporter never waits for it: each later event of that attachment is
 * folded into one pending event, sent once the socket has room. */
static void slow_importer_does_not_block_the_exporter(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_pinning(exp, &tx);
	struct dmabuf_ctx_stats st = { .struct_size = sizeof(st) };
	int sock, rounds = harness_under_valgrind() ? 600 : 3000;
	pid_t pid = start_importer(buf, MODE_SLOW, &sock);

	assert_int_equal(tx_wait_byte(sock, exp), 'm');
	assert_int_equal(kill(pid, SIGSTOP), 0);
	for (int i = 0; i < rounds; i++)
		assert_int_equal(migrate(buf, i % 2 ? DMABUF_ALLOC_SYSTEM
						    : DMABUF_ALLOC_CONTIGUOUS), 0);
	/* end in the contiguous placement the child checks for */
	if (rounds % 2 == 0)
		assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), 0);
	assert_int_equal(dmabuf_ctx_get_stats(exp, &st), 0);
	assert_true(st.moves >= (uint64_t)rounds);
	assert_true(st.move_notifies >= (uint64_t)rounds);
	assert_int_equal(kill(pid, SIGCONT), 0);
	assert_int_equal(dmabuf_send_fd(sock, -1, "g", 1), 0);
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

static void importer_killed_mid_move_leaves_nothing(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_pinning(exp, &tx);
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct dmabuf_ctx_stats st = { .struct_size = sizeof(st) };
	int sock;
	pid_t pid = start_importer(buf, MODE_KILLED, &sock);

	assert_int_equal(tx_wait_byte(sock, exp), 'm');
	/* stopped with its socket full and events pending, then killed */
	assert_int_equal(kill(pid, SIGSTOP), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(migrate(buf, i % 2 ? DMABUF_ALLOC_SYSTEM
						    : DMABUF_ALLOC_CONTIGUOUS), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	for (int i = 0; i < 500 && tx.detach < 1; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 0);
	assert_int_equal(info.mappings, 0);
	assert_int_equal(info.pin_count, 0);
	assert_int_equal(dmabuf_ctx_get_stats(exp, &st), 0);
	assert_int_equal(st.attachments_live, 0);
	/* and the exporter goes on moving */
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), 0);
	close(sock);
	assert_int_equal(dmabuf_put(buf), 0);
	for (int i = 0; i < 500 && tx.release < 1; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(exp);
}

/* ---- PIN / UNPIN ------------------------------------------------------------ */

enum { PIN_RULES = 0, PIN_KILLED = 1 };

static int pin_locked(struct dmabuf *buf, struct dmabuf_attachment *att, bool pin)
{
	struct dmabuf_resv *resv = dmabuf_get_resv(buf);
	int ret;

	dmabuf_resv_lock(resv);
	ret = pin ? dmabuf_pin(att) : dmabuf_unpin(att);
	dmabuf_resv_unlock(resv);
	return ret;
}

static int pin_importer(void *arg)
{
	struct child_env *env = arg;
	struct dmabuf_device_info info = { .name = "pin-dev", .flags = DMABUF_DEVICE_IOMMU };
	struct dmabuf_info bi = { .struct_size = sizeof(bi) };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att, *st;
	struct dmabuf_sg_table *s1, *s2;
	char c = 0;
	size_t len;
	int fd, tmp = -1;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	child_check(dmabuf_device_new(ctx, &info, &dev) == 0);
	child_check(dmabuf_recv_fd(env->sock, &fd, &c, 1, &len) == 0);
	child_check(dmabuf_get(ctx, fd, &buf) == 0);
	child_check(dmabuf_dynamic_attach(buf, dev, &count_ops, NULL, &att) == 0);
	child_check(dmabuf_attach(buf, dev, &st) == 0);
	/* the exporter mapped the peer's static attachment once, at attach:
	 * two maps here, no ops->map there */
	child_check(dmabuf_map_attachment(st, DMABUF_TO_DEVICE, &s1) == 0);
	child_check(dmabuf_map_attachment(st, DMABUF_BIDIRECTIONAL, &s2) == 0);
	child_check(dmabuf_unmap_attachment(st, s1, DMABUF_TO_DEVICE) == 0);
	child_check(dmabuf_unmap_attachment(st, s2, DMABUF_BIDIRECTIONAL) == 0);
	/* the importer's own rules first, as locally: resv held, dynamic
	 * attachments only, no unpin without a pin */
	child_check(dmabuf_pin(att) == -EINVAL);
	child_check(pin_locked(buf, st, true) == -EINVAL);
	child_check(pin_locked(buf, att, false) == -EINVAL);
	child_check(pin_locked(buf, att, true) == 0);
	child_check(pin_locked(buf, att, true) == 0);
	/* the exporter counts the pins; the proxy's pin_count stays 0 */
	child_check(dmabuf_get_info(buf, &bi) == 0);
	child_check(bi.pin_count == 0);
	tell(env->sock, 'p');
	if (env->mode == PIN_KILLED)
		for (;;)
			pause();
	c = 0;
	child_check(dmabuf_recv_fd(env->sock, &tmp, &c, 1, &len) == 0);
	child_check(c == 'u');
	child_check(pin_locked(buf, att, false) == 0);
	child_check(pin_locked(buf, att, false) == 0);
	child_check(pin_locked(buf, att, false) == -EINVAL);
	child_check(dmabuf_unpin(att) == -EINVAL); /* resv not held */
	/* the static attachment's pin goes with it */
	child_check(dmabuf_detach(buf, st) == 0);
	tell(env->sock, 'q');
	c = 0;
	child_check(dmabuf_recv_fd(env->sock, &tmp, &c, 1, &len) == 0);
	child_check(c == 'v');
	/* revoked in the exporter: its answer, as locally */
	child_check(pin_locked(buf, att, true) == -ENODEV);
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	child_check(dmabuf_device_destroy(dev) == 0);
	dmabuf_ctx_destroy(ctx);
	tell(env->sock, 'd');
	return 0;
}

static pid_t start_pin_importer(struct dmabuf *buf, int mode, int *sock)
{
	static struct child_env env;
	int sv[2], fd = dmabuf_fd(buf, O_CLOEXEC);
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	env.mode = mode;
	pid = harness_fork_sock(pin_importer, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	*sock = sv[0];
	return pid;
}

static unsigned int pin_count(struct dmabuf *buf)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	return info.pin_count;
}

/* dmabuf_pin() on an imported buffer is the exporter's pin: counted there,
 * a pinned buffer is not moved (-EBUSY), UNPIN undoes it, a revoked buffer
 * answers -ENODEV. */
static void pins_reach_the_exporter(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_pinning(exp, &tx);
	int sock;
	pid_t pid = start_pin_importer(buf, PIN_RULES, &sock);

	assert_int_equal(tx_wait_byte(sock, exp), 'p');
	/* the static attachment's pin, and the dynamic one's two */
	assert_int_equal(tx.pin, 3);
	assert_int_equal(tx.map, 1);
	assert_int_equal(tx.unmap, 0);
	assert_int_equal(pin_count(buf), 3);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), -EBUSY);
	assert_int_equal(dmabuf_send_fd(sock, -1, "u", 1), 0);
	assert_int_equal(tx_wait_byte(sock, exp), 'q');
	/* UNPIN and DETACH are one-way: they may still be in the socket */
	for (int i = 0; i < 500 && tx.unpin < 3; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.unpin, 3);
	assert_int_equal(pin_count(buf), 0);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), 0);
	assert_int_equal(dmabuf_revoke(buf), 0);
	assert_int_equal(dmabuf_send_fd(sock, -1, "v", 1), 0);
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	assert_int_equal(harness_wait(pid), 0);
	for (int i = 0; i < 500 && tx.detach < 2; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.detach, 2);
	assert_int_equal(tx.pin, 3);
	assert_int_equal(tx.map, 1);
	assert_int_equal(tx.unmap, 1);
	close(sock);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* An importer killed with pins in force: the exporter undoes them with the
 * rest of what the peer held, and moves the buffer again. */
static void pins_go_with_a_killed_importer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_pinning(exp, &tx);
	int sock;
	pid_t pid = start_pin_importer(buf, PIN_KILLED, &sock);

	assert_int_equal(tx_wait_byte(sock, exp), 'p');
	assert_int_equal(pin_count(buf), 3);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), -EBUSY);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	for (int i = 0; i < 500 && tx.detach < 2; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.detach, 2);
	assert_int_equal(tx.unpin, 3);
	assert_int_equal(pin_count(buf), 0);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), 0);
	close(sock);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* The exporter's side of PIN/UNPIN, spoken by a raw peer: only a DYNAMIC
 * attachment pins (-EINVAL), ids of another kind or never given are
 * -ENOENT, an UNPIN without a pin is refused, a DETACH undoes the pins. */
static void raw_peer_pin_rules(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = export_pinning(exp, &tx);
	int fd = dmabuf_fd(buf, O_CLOEXEC), sock = rp_connect(fd);
	struct dmb_msg m, reply;
	uint64_t id, st, dyn;

	assert_true(sock >= 0);
	assert_int_equal(rp_hello(sock, exp), 0);
	assert_int_equal(rp_import(sock, exp, fd, &id), 0);
	assert_int_equal(rp_attach(sock, exp, id, &st), 0);
	rp_attach_msg(&m, id);
	m.u.attach.attach_flags = DMB_WIRE_ATTACH_DYNAMIC;
	assert_int_equal(rp_call(sock, exp, &m, &reply), 0);
	dyn = reply.u.attach_reply.attachment_id;
	assert_int_equal(tx.pin, 1); /* the static attachment's */
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_PIN, st), -EINVAL);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_PIN, id), -ENOENT);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_PIN, dyn + 100), -ENOENT);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_UNPIN, dyn), -EINVAL);
	assert_int_equal(tx.pin, 1);
	assert_int_equal(tx.unpin, 0);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_PIN, dyn), 0);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_PIN, dyn), 0);
	assert_int_equal(pin_count(buf), 3);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_UNPIN, dyn), 0);
	assert_int_equal(pin_count(buf), 2);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_DETACH, dyn), 0);
	assert_int_equal(tx.unpin, 2);
	assert_int_equal(pin_count(buf), 1);
	/* revoked: -ENODEV, as a local dmabuf_pin() */
	assert_int_equal(rp_call(sock, exp, &m, &reply), 0);
	dyn = reply.u.attach_reply.attachment_id;
	assert_int_equal(dmabuf_revoke(buf), 0);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_PIN, dyn), -ENODEV);
	close(sock);
	for (int i = 0; i < 500 && tx.detach < 3; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.detach, 3);
	assert_int_equal(pin_count(buf), 0);
	assert_int_equal(tx.pin, tx.unpin);
	close(fd);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(move_and_revoke_reach_another_process),
		harness_test(slow_importer_does_not_block_the_exporter),
		harness_test(importer_killed_mid_move_leaves_nothing),
		harness_test(pins_reach_the_exporter),
		harness_test(pins_go_with_a_killed_importer),
		harness_test(raw_peer_pin_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
