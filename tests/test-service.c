/* SPDX-License-Identifier: MIT */
/*
 * The exporter's service thread under many importers (issue 11): importer
 * processes hammer two buffers with attach / map / unmap / detach while the
 * exporter revokes one of them, some importers are SIGKILLed mid-call and
 * another thread of the exporter dispatches the same context, so the
 * service thread's unlocked wait races every way a source can go or be read
 * by someone else. Afterwards nothing any peer held is left and both
 * buffers are released.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"

#define SZ (256u << 10)
#define NPROC 8
#define ROUNDS 150

struct imp_env {
	int sock;
	/* the parent's ends of the earlier importers' pairs, which this
	 * child inherited: it closes them, so that the earlier ones see EOF
	 * when the parent goes */
	const int *inherited;
	int n_inherited;
};

/* Imports the buffer it is sent, says 'r', then makes ROUNDS cycles (or
 * until a map says the buffer was revoked), then says 'd'. */
static int importer(void *arg)
{
	struct imp_env *env = arg;
	struct dmabuf_device *dev;
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	int fd;

	for (int i = 0; i < env->n_inherited; i++)
		close(env->inherited[i]);
	fd = tx_child_import(env->sock, "svc-imp", &ctx, &dev, &buf);

	child_check(dmabuf_send_fd(env->sock, -1, "r", 1) == 0);
	for (int i = 0; i < ROUNDS; i++) {
		struct dmabuf_attachment *att;
		struct dmabuf_sg_table *sgt;
		int ret = dmabuf_attach(buf, dev, &att);

		if (ret == -ENODEV)
			break;
		child_check(ret == 0);
		ret = dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt);
		if (ret == 0) {
			child_check(dmabuf_sg_table_get_size(sgt) == SZ);
			child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
		}
		child_check(ret == 0 || ret == -ENODEV);
		child_check(dmabuf_detach(buf, att) == 0);
		if (ret == -ENODEV)
			break;
	}
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	child_check(dmabuf_device_destroy(dev) == 0);
	dmabuf_ctx_destroy(ctx);
	child_check(dmabuf_send_fd(env->sock, -1, "d", 1) == 0);
	return 0;
}

static struct dmabuf_ctx_stats stats(struct dmabuf_ctx *ctx)
{
	struct dmabuf_ctx_stats st = { 0 };

	assert_int_equal(dmabuf_ctx_get_stats(ctx, &st), 0);
	return st;
}

static void importers_race_revoke_kill_and_another_dispatcher(void **state)
{
	struct tx_dispatcher d = { .ctx = tx_ctx_new(0), .timeout_ms = 1 };
	struct test_exporter tx[2] = { { 0 }, { 0 } };
	struct dmabuf *buf[2];
	struct imp_env env[NPROC];
	int sock[NPROC], fd[2];
	pid_t pid[NPROC];
	struct dmabuf_ctx_stats st;
	size_t len;
	char c;
	int got;

	for (int b = 0; b < 2; b++) {
		buf[b] = tx_export(d.ctx, &tx[b], SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
		fd[b] = dmabuf_fd(buf[b], O_CLOEXEC);
		assert_true(fd[b] >= 0);
	}
	/* The importers are forked before the exporter's other threads start:
	 * a child forked while another thread holds a lock of the allocator
	 * (ASan's is not reset across fork) hangs in its first malloc. */
	for (int i = 0; i < NPROC; i++) {
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
		env[i].sock = sv[1];
		env[i].inherited = sock;
		env[i].n_inherited = i;
		pid[i] = harness_fork_sock(importer, &env[i], sv[0]);
		close(sv[1]);
		sock[i] = sv[0];
	}
	assert_int_equal(dmabuf_ctx_start_thread(d.ctx), 0);
	tx_dispatcher_start(&d);
	for (int i = 0; i < NPROC; i++) {
		/* even: buffer 0 (some killed); odd: buffer 1 (revoked) */
		assert_int_equal(dmabuf_send_fd(sock[i], fd[i % 2], "f", 1), 0);
	}
	for (int i = 0; i < NPROC; i++) {
		assert_int_equal(dmabuf_recv_fd(sock[i], &got, &c, 1, &len), 0);
		assert_int_equal(c, 'r');
	}
	/* Mid-run: revoke buffer 1 and kill every fourth importer. */
	poll(NULL, 0, 5);
	assert_int_equal(dmabuf_revoke(buf[1]), 0);
	for (int i = 0; i < NPROC; i += 4) {
		poll(NULL, 0, 2);
		kill(pid[i], SIGKILL);
	}
	for (int i = 0; i < NPROC; i++) {
		int status = harness_wait(pid[i]);

		if (i % 4 == 0) {
			/* killed, or done before the signal came */
			assert_true(status == 128 + SIGKILL || status == 0);
		} else {
			assert_int_equal(status, 0);
			assert_int_equal(dmabuf_recv_fd(sock[i], &got, &c, 1, &len), 0);
			assert_int_equal(c, 'd');
		}
		close(sock[i]);
	}
	/* The service thread (or the other dispatcher) undoes each dead
	 * peer: nothing of any peer is left. */
	for (int i = 0; i < 500; i++) {
		st = stats(d.ctx);
		if (!st.attachments_live && !st.mappings_live)
			break;
		poll(NULL, 0, 10);
	}
	assert_int_equal(st.attachments_live, 0);
	assert_int_equal(st.mappings_live, 0);
	for (int b = 0; b < 2; b++) {
		close(fd[b]);
		assert_int_equal(dmabuf_put(buf[b]), 0);
	}
	for (int i = 0; i < 500; i++) {
		st = stats(d.ctx);
		if (st.buffers_released == 2)
			break;
		poll(NULL, 0, 10);
	}
	assert_int_equal(st.buffers_released, 2);
	assert_int_equal(tx_dispatcher_stop(&d), 0);
	assert_int_equal(dmabuf_ctx_stop_thread(d.ctx), 0);
	for (int b = 0; b < 2; b++) {
		assert_int_equal(tx[b].release, 1);
		assert_int_equal(tx[b].map, tx[b].unmap);
		/* buffer 1 may be revoked before any importer maps it */
		if (b == 0)
			assert_true(tx[b].map > 0);
	}
	dmabuf_ctx_destroy(d.ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(importers_race_revoke_kill_and_another_dispatcher),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
