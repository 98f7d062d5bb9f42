/* SPDX-License-Identifier: MIT */
/*
 * One-way ATTACH (wire version 4, docs/protocol.md §6 item 4b): an importer
 * in another process attaches without waiting when the buffer's memfd says
 * its exporter has no attach and no pin op; the exporter's own failures
 * (a revoked buffer) come from the first map; an exporter with an attach op,
 * or one that speaks version 3, keeps the round trip.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"

#define SIZE (1024 * 1024ull)

/* What the importer process does with the buffer it receives. */
enum mode { OK_CYCLE, REVOKED, REFUSING };

struct env {
	int sock;
	enum mode mode;
};

/* Whether this kernel lets a memfd carry the mark (Linux 6.3:
 * MFD_NOEXEC_SEAL) and it means something (vm.memfd_noexec < 2). */
static bool kernel_marks(void)
{
	int fd = memfd_create("probe", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
	char c = '0';
	int sys;

	if (fd < 0)
		return false;
	close(fd);
	sys = open("/proc/sys/vm/memfd_noexec", O_RDONLY | O_CLOEXEC);
	if (sys >= 0) {
		if (read(sys, &c, 1) != 1)
			c = '2';
		close(sys);
	}
	if (c == '2')
		return false;
	fd = memfd_create("probe", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void send_byte(int sock, char c)
{
	assert_int_equal(dmabuf_send_fd(sock, -1, &c, 1), 0);
}

/* The importer process: imports, attaches, maps as its mode says, reporting
 * each step on the side channel and waiting for the go-ahead. */
static int importer(void *arg)
{
	const struct env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	uint8_t pattern[64];
	int fd;

	fd = tx_child_import(env->sock, "dev", &ctx, &dev, &buf);
	switch (env->mode) {
	case OK_CYCLE:
		child_check(dmabuf_attach(buf, dev, &att) == 0);
		child_check(tx_one_way_id(att));
		child_check(dmabuf_map_attachment(att, DMABUF_FROM_DEVICE, &sgt) == 0);
		memset(pattern, 0x5a, sizeof(pattern));
		child_check(dmabuf_dma_write(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
					     pattern, sizeof(pattern)) == 0);
		child_check(dmabuf_send_fd(env->sock, -1, "m", 1) == 0);
		child_check(tx_wait_byte(env->sock, NULL) == 'g');
		child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_FROM_DEVICE) == 0);
		child_check(dmabuf_detach(buf, att) == 0);
		break;
	case REVOKED:
		/* Answered here, as dma_buf_attach() of an exporter without
		 * an attach op asks nobody; the map finds the revocation. */
		child_check(dmabuf_attach(buf, dev, &att) == 0);
		child_check(tx_one_way_id(att));
		child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == -ENODEV);
		child_check(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) == -ENODEV);
		child_check(dmabuf_send_fd(env->sock, -1, "e", 1) == 0);
		child_check(tx_wait_byte(env->sock, NULL) == 'g');
		child_check(dmabuf_detach(buf, att) == 0);
		break;
	case REFUSING:
		/* An attach op: its answer is awaited, its errno returned. */
		child_check(dmabuf_attach(buf, dev, &att) == -EBUSY);
		child_check(dmabuf_send_fd(env->sock, -1, "r", 1) == 0);
		child_check(tx_wait_byte(env->sock, NULL) == 'g');
		child_check(dmabuf_attach(buf, dev, &att) == 0);
		child_check(!tx_one_way_id(att));
		child_check(dmabuf_detach(buf, att) == 0);
		break;
	}
	/* The DETACH is one-way: the exporter handles it before the byte
	 * below is answered (it serves in order), so the parent can count. */
	child_check(dmabuf_send_fd(env->sock, -1, "d", 1) == 0);
	child_check(tx_wait_byte(env->sock, NULL) == 'q');
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void dispatch_until_detached(struct dmabuf_ctx *ctx, struct dmabuf *buf)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	for (int i = 0; i < 500; i++) {
		assert_int_equal(dmabuf_get_info(buf, &info), 0);
		if (!info.attachments && !tx_only_peer(ctx)->nattachments)
			break;
		dmabuf_ctx_dispatch_timeout(ctx, 10);
	}
	assert_int_equal(info.attachments, 0);
	assert_int_equal(tx_only_peer(ctx)->nattachments, 0);
}

/* Runs the importer process on @buf's fd in @mode; @step checks the
 * exporter's side at the importer's first report. */
static void run_importer(struct dmabuf_ctx *exp, struct dmabuf *buf, enum mode mode,
			 char report, void (*step)(struct dmabuf_ctx *, struct dmabuf *))
{
	struct env env = { .mode = mode };
	int sock;
	pid_t pid = tx_fork_importer(buf, importer, &env, &env.sock, &sock);

	assert_int_equal(tx_wait_byte(sock, exp), report);
	step(exp, buf);
	send_byte(sock, 'g');
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	dispatch_until_detached(exp, buf);
	send_byte(sock, 'q');
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
}

static struct test_exporter tx;

static void mapped_step(struct dmabuf_ctx *exp, struct dmabuf *buf)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	uint8_t *v;

	/* The exporter saw the attach (it came with the MAP) and the map. */
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 1);
	assert_int_equal(info.mappings, 1);
	assert_int_equal(tx_only_peer(exp)->nattachments, 1);
	assert_int_equal(tx.map, 1);
	assert_int_equal(dmabuf_vmap(buf, (void **)&v), 0);
	assert_int_equal(v[0], 0x5a);
	assert_int_equal(v[63], 0x5a);
	assert_int_equal(v[64], 0);
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
}

static void one_way_attach_then_map_works(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	int fd;

	if (!kernel_marks())
		skip();
	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &tx_bare_ops, SIZE);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(tx_fd_marked(fd));
	close(fd);
	run_importer(exp, buf, OK_CYCLE, 'm', mapped_step);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 1);
}

static void revoked_step(struct dmabuf_ctx *exp, struct dmabuf *buf)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	/* No attachment was made; the peer's handle keeps the errno until
	 * its DETACH. */
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 0);
	assert_int_equal(tx_only_peer(exp)->nattachments, 1);
	assert_int_equal(tx.map, 0);
}

static void revoked_buffer_fails_at_the_first_map(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;

	if (!kernel_marks())
		skip();
	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &tx_bare_ops, SIZE);
	assert_int_equal(dmabuf_revoke(buf), 0);
	run_importer(exp, buf, REVOKED, 'e', revoked_step);
	assert_int_equal(tx.map, 0);
	assert_int_equal(tx.unmap, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 1);
}

static void refused_step(struct dmabuf_ctx *exp, struct dmabuf *buf)
{
	assert_int_equal(tx.attach, 1);
	assert_int_equal(tx_only_peer(exp)->nattachments, 0);
	tx.refuse_attach = 0;
}

static void attach_op_keeps_the_round_trip(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	int fd;

	tx = (struct test_exporter){ .refuse_attach = -EBUSY };
	buf = tx_export(exp, &tx, SIZE, O_RDWR, DMABUF_ALLOC_SYSTEM);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_false(tx_fd_marked(fd));
	close(fd);
	run_importer(exp, buf, REFUSING, 'r', refused_step);
	assert_int_equal(tx.attach, 2);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* The exporter's side, raw: a one-way ATTACH names its attachment after
 * its serial and gets no reply; MAP and DETACH use that id; a revoked
 * buffer's failed one keeps its errno for the MAP; a second one-way ATTACH
 * with a used serial is a protocol error (the peer is dropped, the others
 * keep working). */
static void raw_one_way_attach(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *revoked;
	struct dmb_msg m;
	uint64_t id, rid, map;
	int fd, rfd, sock;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &tx_bare_ops, SIZE);
	revoked = tx_export_ops(exp, &tx, &tx_bare_ops, SIZE);
	assert_int_equal(dmabuf_revoke(revoked), 0);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	rfd = dmabuf_fd(revoked, O_CLOEXEC);
	sock = rp_connect(fd);
	assert_true(sock >= 0);
	assert_int_equal(rp_hello(sock, exp), 0);
	assert_int_equal(rp_import(sock, exp, fd, &id), 0);
	assert_int_equal(rp_import(sock, exp, rfd, &rid), 0);

	rp_attach_msg(&m, id);
	m.flags = DMB_WIRE_F_NO_REPLY;
	m.serial = 1000;
	assert_int_equal(rp_send(sock, &m), 0);
	assert_int_equal(rp_map(sock, exp, DMB_WIRE_ONE_WAY_ATT_ID(1000), DMABUF_TO_DEVICE, &map), 0);
	assert_int_equal(tx.map, 1);
	assert_int_equal(rp_unmap(sock, exp, map, DMABUF_TO_DEVICE), 0);

	rp_attach_msg(&m, rid);
	m.flags = DMB_WIRE_F_NO_REPLY;
	m.serial = 1001;
	assert_int_equal(rp_send(sock, &m), 0);
	assert_int_equal(rp_map(sock, exp, DMB_WIRE_ONE_WAY_ATT_ID(1001), DMABUF_TO_DEVICE, NULL),
			 -ENODEV);
	assert_int_equal(tx_only_peer(exp)->nattachments, 2);
	assert_int_equal(rp_id_call(sock, exp, DMB_OP_DETACH, DMB_WIRE_ONE_WAY_ATT_ID(1001)), 0);
	assert_int_equal(rp_map(sock, exp, DMB_WIRE_ONE_WAY_ATT_ID(1001), DMABUF_TO_DEVICE, NULL),
			 -ENOENT);
	assert_int_equal(tx_only_peer(exp)->nattachments, 1);

	/* serial 1000 again: its id is taken */
	rp_attach_msg(&m, id);
	m.flags = DMB_WIRE_F_NO_REPLY;
	m.serial = 1000;
	assert_int_equal(rp_send(sock, &m), 0);
	assert_true(rp_expect_closed(sock, exp) >= 0);
	close(sock);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(dmabuf_put(revoked), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	close(rfd);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 2);
}

/* ---- a version 3 exporter ------------------------------------------------- */

/* Receives one request as the server would, its fds closed. */
static int fake_recv(int sock, struct dmb_msg *m)
{
	uint8_t buf[DMB_WIRE_MAX_MSG];
	int fake[DMB_WIRE_MAX_FDS] = { -1, -1, -1, -1 };
	size_t nfds;
	ssize_t n = rp_recv_raw(sock, NULL, buf, sizeof(buf), &nfds,
				"the importer's next request to the fake exporter");

	if (n <= 0)
		return (int)n;
	if (nfds > DMB_WIRE_MAX_FDS)
		return -EMSGSIZE;
	return dmb_wire_decode(buf, (size_t)n, fake, nfds, DMB_WIRE_SERVER, m) < 0 ? -EPROTO : 1;
}

/* An exporter that speaks version 3 at most: it must see the IMPORT in a
 * version 3 header and an ATTACH that waits for its reply. */
static int v3_exporter(void *arg)
{
	const int *listen_fd = arg;
	struct dmb_msg req, m;
	int sock = accept4(*listen_fd, NULL, NULL, SOCK_CLOEXEC);

	child_check(sock >= 0);
	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_HELLO);
	child_check(req.u.hello.max_version == DMB_WIRE_VERSION_MAX);
	dmb_wire_msg_init(&m, DMB_OP_HELLO_REPLY, 0);
	m.serial = req.serial;
	m.u.hello_reply = (struct dmb_wire_hello_reply){
		.version = DMB_WIRE_VERSION_CLIENT_IDS, .max_msg = DMB_WIRE_MAX_MSG,
		.max_fds = DMB_WIRE_MAX_FDS, .max_buffers = 16, .max_attachments = 16,
		.max_mappings = 16, .pid = (uint32_t)getpid() };
	child_check(rp_send(sock, &m) == 0);
	/* the pipelined IMPORT, held back and sent with the ATTACH */
	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_IMPORT);
	child_check(req.version == DMB_WIRE_VERSION_CLIENT_IDS && req.flags == DMB_WIRE_F_QUIET);
	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_ATTACH);
	child_check(req.version == DMB_WIRE_VERSION_CLIENT_IDS && req.flags == 0);
	dmb_wire_msg_init(&m, DMB_OP_ATTACH_REPLY, 0);
	m.version = DMB_WIRE_VERSION_CLIENT_IDS;
	m.serial = req.serial;
	m.u.attach_reply.attachment_id = 7;
	child_check(rp_send(sock, &m) == 0);
	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_DETACH);
	child_check(req.u.id.id == 7 && req.flags == DMB_WIRE_F_NO_REPLY);
	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_RELEASE);
	child_check(fake_recv(sock, &req) == 0); /* the importer hangs up */
	close(sock);
	return 0;
}

static void version_3_exporter_gets_the_round_trip(void **state)
{
	const int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	struct dmabuf_ctx *imp = tx_ctx_new(0);
	struct dmabuf_device *dev = tx_device(imp, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *att;
	struct dmabuf *px;
	char name[DMB_ENDPOINT_NAME_MAX];
	int listen_fd, memfd;
	pid_t pid;

	if (!kernel_marks()) {
		dmabuf_device_destroy(dev);
		dmabuf_ctx_destroy(imp);
		skip();
	}
	snprintf(name, sizeof(name), "dmabuf-1-v3%08x",
		 (unsigned int)rp_now_ms());
	listen_fd = rp_listen_name(name);
	assert_true(listen_fd >= 0);
	/* A buffer as a version 4 exporter without attach op would make it. */
	memfd = rp_fake_buffer("fake", name, 4096, MFD_NOEXEC_SEAL, seals);
	assert_true(memfd >= 0);
	assert_true(tx_fd_marked(memfd));
	pid = harness_fork(v3_exporter, &listen_fd);

	assert_int_equal(dmabuf_get(imp, memfd, &px), 0);
	assert_int_equal(dmabuf_attach(px, dev, &att), 0);
	assert_true(att->remote_id == 7);
	assert_int_equal(dmabuf_detach(px, att), 0);
	assert_int_equal(dmabuf_put(px), 0);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(imp);
	assert_int_equal(harness_wait(pid), 0);
	close(memfd);
	close(listen_fd);
}

/* Receives one more buffer on @sock and imports it: its fd. */
static int child_get(int sock, struct dmabuf_ctx *ctx, struct dmabuf **buf)
{
	char c = 0;
	size_t len;
	int fd;

	child_check(dmabuf_recv_fd(sock, &fd, &c, 1, &len) == 0 && fd >= 0);
	child_check(dmabuf_get(ctx, fd, buf) == 0);
	return fd;
}

static int child_flags(struct dmabuf *buf)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	child_check(dmabuf_get_info(buf, &info) == 0);
	return (int)info.flags;
}

/* The importer of mode_from_the_mark: a read-write buffer first (its
 * connection's handshake done by the get_info), then on that connection a
 * read-only buffer, a write-only one and a read-only file of a read-write
 * one; each proxy has its buffer's access mode, and the write-only one's
 * device reads back what it wrote. */
static int mode_importer(void *arg)
{
	const struct env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *rw, *ro, *wo, *rw2;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	uint8_t byte = 0x3c, back = 0;
	void *p;
	int fd[4];

	fd[0] = tx_child_import(env->sock, "dev", &ctx, &dev, &rw);
	child_check(child_flags(rw) == O_RDWR);
	fd[1] = child_get(env->sock, ctx, &ro);
	child_check(dmabuf_mmap(ro, 0, SIZE, PROT_READ | PROT_WRITE, &p) == -EACCES);
	child_check(child_flags(ro) == O_RDONLY);
	fd[2] = child_get(env->sock, ctx, &wo);
	child_check(dmabuf_attach(wo, dev, &att) == 0);
	child_check(!tx_one_way_id(att));
	child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == 0);
	uint64_t da = dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr + 8;
	child_check(dmabuf_dma_write(dev, da, &byte, 1) == 0);
	child_check(dmabuf_dma_read(dev, da, &back, 1) == 0 && back == 0x3c);
	child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
	child_check(dmabuf_detach(wo, att) == 0);
	child_check(dmabuf_mmap(wo, 0, SIZE, PROT_READ, &p) == -EACCES);
	child_check(child_flags(wo) == O_WRONLY);
	fd[3] = child_get(env->sock, ctx, &rw2);
	child_check(child_flags(rw2) == O_RDWR);
	child_check(dmabuf_put(rw) == 0 && dmabuf_put(ro) == 0 && dmabuf_put(wo) == 0 &&
		    dmabuf_put(rw2) == 0);
	for (int i = 0; i < 4; i++)
		close(fd[i]);
	child_check(dmabuf_send_fd(env->sock, -1, "d", 1) == 0);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static struct dmabuf *export_bare(struct dmabuf_ctx *exp, int flags)
{
	struct dmabuf_export_info info = {
		.exp_name = "test", .ops = &tx_bare_ops, .size = SIZE, .flags = flags,
		.priv = &tx, .alloc = DMABUF_ALLOC_SYSTEM,
	};
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_export(exp, &info, &buf), 0);
	return buf;
}

static void send_fd_of(int sock, int fd)
{
	assert_int_equal(dmabuf_send_fd(sock, fd, "f", 1), 0);
	close(fd);
}

/*
 * Wire version 6: once the handshake said the version, an importer takes a
 * marked memfd (an exporter without attach and pin ops) for a read-write
 * buffer, or a read-only one when sealed against writes, without asking
 * the fd's access mode; an O_WRONLY buffer's memfd is never marked, so its
 * fd is asked. A read-only file of a read-write buffer gives the buffer's
 * mode, the exporter's word either way.
 */
static void mode_from_the_mark(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *rw, *ro, *wo, *rw2;
	struct env env = { .mode = OK_CYCLE };
	char path[64];
	int sock, fd, rofd;
	pid_t pid;

	if (!kernel_marks())
		skip();
	tx = (struct test_exporter){ 0 };
	rw = export_bare(exp, O_RDWR);
	ro = export_bare(exp, O_RDONLY);
	wo = export_bare(exp, O_WRONLY);
	rw2 = export_bare(exp, O_RDWR);
	fd = dmabuf_fd(ro, O_CLOEXEC);
	assert_true(tx_fd_marked(fd));
	assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_FUTURE_WRITE);
	close(fd);
	fd = dmabuf_fd(wo, O_CLOEXEC);
	assert_false(tx_fd_marked(fd));
	close(fd);
	pid = tx_fork_importer(rw, mode_importer, &env, &env.sock, &sock);
	send_fd_of(sock, dmabuf_fd(ro, O_CLOEXEC));
	send_fd_of(sock, dmabuf_fd(wo, O_CLOEXEC));
	fd = dmabuf_fd(rw2, O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rofd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(rofd >= 0);
	assert_int_equal(fcntl(rofd, F_GETFL) & O_ACCMODE, O_RDONLY);
	send_fd_of(sock, rofd);
	close(fd);
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	assert_int_equal(dmabuf_put(rw), 0);
	assert_int_equal(dmabuf_put(ro), 0);
	assert_int_equal(dmabuf_put(wo), 0);
	assert_int_equal(dmabuf_put(rw2), 0);
	for (int i = 0; i < 500 && tx.release < 4; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.release, 4);
	dmabuf_ctx_destroy(exp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(one_way_attach_then_map_works),
		harness_test(revoked_buffer_fails_at_the_first_map),
		harness_test(attach_op_keeps_the_round_trip),
		harness_test(raw_one_way_attach),
		harness_test(version_3_exporter_gets_the_round_trip),
		harness_test(mode_from_the_mark),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
