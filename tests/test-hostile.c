/* SPDX-License-Identifier: MIT */
/*
 * A hostile peer on the exporter's endpoint (docs/design.md §6, §8;
 * docs/protocol.md §4, §6, §7): malformed framing, handshake abuse, fd games,
 * wrong kinds of fd as proof of possession, forged and stale ids, floods and
 * a peer that stops reading.
 *
 * For every case: the exporter answers with a clear errno or closes the
 * connection; every fd it received is closed (the exporter runs in this
 * process, so a leaked fd shows in harness_count_fds()); what the peer held
 * is undone (the exporter's ops balance); and a well-behaved importer (a
 * second context, the library's own client) still gets its work done.
 * The last case turns it round: a hostile exporter, and the library's
 * importer.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "exporter.h"
#include "rawpeer.h"

#define KiB 1024ull
#define BUF_SIZE (64 * KiB)

struct fx {
	struct dmabuf_ctx *exp, *imp;
	struct test_exporter tx;
	struct dmabuf *buf;
	struct dmabuf_device *dev;
	int fd;
};

static void fx_init_flags(struct fx *f, uint32_t exp_flags)
{
	memset(f, 0, sizeof(*f));
	f->exp = tx_ctx_new(exp_flags);
	f->imp = tx_ctx_new(0);
	f->buf = tx_export(f->exp, &f->tx, BUF_SIZE, O_RDWR, DMABUF_ALLOC_SYSTEM);
	f->fd = dmabuf_fd(f->buf, O_CLOEXEC);
	assert_true(f->fd >= 0);
	f->dev = tx_device(f->imp, "good", 64, DMABUF_DEVICE_IOMMU, 0);
}

static void fx_init(struct fx *f)
{
	fx_init_flags(f, 0);
}

static void assert_balanced(const struct fx *f)
{
	if (f->tx.attach != f->tx.detach || f->tx.map != f->tx.unmap)
		fail_msg("exporter ops unbalanced: attach %d detach %d map %d unmap %d",
			 f->tx.attach, f->tx.detach, f->tx.map, f->tx.unmap);
}

/*
 * Dispatches the exporter until @cond holds: a wait for peer events with no
 * bound of its own (a loaded machine may take any time). The hang guard
 * (60 s, a bound on the hang, never the assertion) names @what if it never
 * comes, instead of the suite ending at its timeout.
 */
#define DISPATCH_UNTIL(exp, cond, what)                          \
	do {                                                     \
		harness_guard_start(what, 60);                   \
		while (!(cond))                                  \
			dmabuf_ctx_dispatch_timeout(exp, 100);   \
		harness_guard_done();                            \
	} while (0)

/* Dispatches the exporter until this process has @want fds and the
 * exporter's ops balance; returns the fd count after a few more rounds. */
static int settle(struct fx *f, int want)
{
	static char what[160];

	snprintf(what, sizeof(what),
		 "the exporter's settling (this process back to %d fds, ops balanced)", want);
	/* the guard's pipe is two fds more while it runs */
	DISPATCH_UNTIL(f->exp,
		       harness_count_fds() == want + 2 && f->tx.attach == f->tx.detach &&
			       f->tx.map == f->tx.unmap,
		       what);
	/* a few more rounds: nothing may happen twice */
	for (int i = 0; i < 3; i++)
		dmabuf_ctx_dispatch(f->exp);
	return harness_count_fds();
}

/* The library's own importer, in a context of its own: import, attach,
 * map, DMA through the mapping, unmap, detach, release. The context goes
 * too, taking its connection (which the library keeps idle for reuse). */
static void good_peer(struct fx *f)
{
	int attach = f->tx.attach, map = f->tx.map, unmap = f->tx.unmap,
	    detach = f->tx.detach;
	struct dmabuf_ctx *imp = tx_ctx_new(0);
	struct dmabuf_device *dev = tx_device(imp, "good", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf *px;
	uint8_t byte = 0x77, back = 0;

	assert_int_equal(dmabuf_get(imp, f->fd, &px), 0);
	assert_int_equal(dmabuf_attach(px, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_int_equal(dmabuf_sg_table_get_size(sgt), BUF_SIZE);
	assert_int_equal(dmabuf_dma_write(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
					  &byte, 1), 0);
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
					 &back, 1), 0);
	assert_int_equal(back, 0x77);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(px, att), 0);
	assert_int_equal(dmabuf_put(px), 0);
	dmabuf_ctx_destroy(imp);
	assert_int_equal(f->tx.attach, attach + 1);
	assert_int_equal(f->tx.map, map + 1);
	assert_int_equal(f->tx.unmap, unmap + 1);
	assert_int_equal(f->tx.detach, detach + 1);
}

/* After a hostile exchange whose socket the test has closed: no fd left
 * behind, ops balanced, and the exporter still serves a good peer. */
static void after_hostile(struct fx *f, int fds0, const char *what)
{
	int n = settle(f, fds0);

	if (n != fds0)
		fail_msg("%s: %d fd(s) before, %d after: the exporter leaked what it received",
			 what, fds0, n);
	assert_balanced(f);
	good_peer(f);
	n = settle(f, fds0);
	if (n != fds0)
		fail_msg("%s: good peer left %d fd(s) instead of %d", what, n, fds0);
}

static void fx_fini(struct fx *f)
{
	assert_balanced(f);
	assert_int_equal(dmabuf_put(f->buf), 0);
	close(f->fd);
	DISPATCH_UNTIL(f->exp, f->tx.release != 0,
		       "the exporter's release of the buffer after its last fd closed");
	assert_int_equal(f->tx.release, 1);
	dmabuf_ctx_destroy(f->imp);
	dmabuf_ctx_destroy(f->exp);
	assert_int_equal(f->tx.release, 1);
}

static int connect_hello(struct fx *f)
{
	int sock = rp_connect(f->fd);

	assert_true(sock >= 0);
	assert_int_equal(rp_hello(sock, f->exp), 0);
	return sock;
}

/* An ATTACH of @bits-bit IOMMU device "raw": the reply's attachment id. */
static uint64_t attach_bits(struct fx *f, int sock, uint64_t id, unsigned int bits)
{
	struct dmb_msg m, r;

	rp_attach_msg(&m, id);
	m.u.attach.dma_mask_bits = bits;
	assert_int_equal(rp_call(sock, f->exp, &m, &r), 0);
	return r.u.attach_reply.attachment_id;
}

/*
 * The stand-in of a peer's device outlives its DETACH, for the peer's next
 * ATTACH of the same device (issue 11), but is never shared by two live
 * attachments, never taken for another device, and never outlives its
 * peer: when the connection goes, every stand-in goes (a stale device
 * pointer names no live device) and so does every fd.
 */
static void idle_device_goes_with_its_peer(void **state)
{
	const struct dmabuf_device *d1, *d2, *d3;
	struct dmabuf_device_info info;
	uint64_t id, a1, a2;
	char name[32];
	struct fx f;
	int fds0, sock;

	(void)state;
	fx_init(&f);
	fds0 = harness_count_fds();
	sock = connect_hello(&f);
	assert_int_equal(rp_import(sock, f.exp, f.fd, &id), 0);

	a1 = attach_bits(&f, sock, id, 64);
	d1 = f.tx.last_dev;
	snprintf(name, sizeof(name), "raw@%d", (int)getpid());
	assert_string_equal(dmabuf_device_get_name(d1), name);
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DETACH, a1), 0);
	/* kept, and taken again by the same device's ATTACH */
	assert_non_null(dmabuf_device_get_name(d1));
	a1 = attach_bits(&f, sock, id, 64);
	assert_ptr_equal(f.tx.last_dev, d1);
	/* a second live attachment of that device has a stand-in of its own */
	a2 = attach_bits(&f, sock, id, 64);
	d2 = f.tx.last_dev;
	assert_ptr_not_equal(d2, d1);
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DETACH, a1), 0);
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DETACH, a2), 0);
	/* other constraints: never an idle stand-in of another device */
	a1 = attach_bits(&f, sock, id, 32);
	d3 = f.tx.last_dev;
	assert_ptr_not_equal(d3, d1);
	assert_ptr_not_equal(d3, d2);
	assert_int_equal(dmabuf_device_get_info(d3, &info), 0);
	assert_int_equal(info.dma_mask_bits, 32);
	assert_string_equal(info.name, name);
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DETACH, a1), 0);
	assert_non_null(dmabuf_device_get_name(d1));
	assert_non_null(dmabuf_device_get_name(d2));

	/* the peer goes: so do its idle stand-ins, and every fd */
	close(sock);
	DISPATCH_UNTIL(f.exp, !dmabuf_device_get_name(d1),
		       "the exporter freeing the idle stand-ins of a peer that left");
	assert_null(dmabuf_device_get_name(d2));
	assert_null(dmabuf_device_get_name(d3));
	after_hostile(&f, fds0, "idle device stand-ins");
	fx_fini(&f);
}

static int new_memfd(const char *name, unsigned int seals)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	if (seals)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* ---- framing ------------------------------------------------------------- */

/* Builds malformed packet number i (after a good handshake); false past the
 * last. *nfds fds are opened for it (the caller closes them). */
static bool build_bad_packet(int i, uint8_t *b, size_t *len, int *fds, size_t *nfds,
			     const char **name)
{
	struct dmb_msg m = { .op = DMB_OP_DESCRIBE };
	int l;

	m.u.id.id = 1;
	*nfds = 0;
	l = rp_encode(&m, b);
	assert_true(l == DMB_WIRE_BODY + 8);
	*len = (size_t)l;
	switch (i) {
	case 0:
		*name = "short message (12 bytes)";
		*len = 12;
		break;
	case 1:
		*name = "empty packet";
		*len = 0;
		break;
	case 2:
		*name = "header only (body missing)";
		*len = DMB_WIRE_HDR_SIZE;
		rp_put32(b + DMB_WIRE_HDR_LENGTH, DMB_WIRE_HDR_SIZE);
		break;
	case 3:
		*name = "oversized message (5000 bytes) with an fd";
		memset(b + DMB_WIRE_BODY + 8, 0, 5000 - (DMB_WIRE_BODY + 8));
		*len = 5000;
		rp_put32(b + DMB_WIRE_HDR_LENGTH, 5000);
		rp_put16(b + DMB_WIRE_HDR_NFDS, 1);
		fds[0] = new_memfd("oversized", 0);
		*nfds = 1;
		break;
	case 4:
		*name = "oversized message (4097 bytes)";
		memset(b + DMB_WIRE_BODY + 8, 0, 4097 - (DMB_WIRE_BODY + 8));
		*len = 4097;
		rp_put32(b + DMB_WIRE_HDR_LENGTH, 4097);
		break;
	case 5:
		*name = "bad magic";
		b[DMB_WIRE_HDR_MAGIC] ^= 0xff;
		break;
	case 6:
		*name = "bad version (one past the newest)";
		rp_put16(b + DMB_WIRE_HDR_VERSION, DMB_WIRE_VERSION_MAX + 1);
		break;
	case 7:
		*name = "bad version (0)";
		rp_put16(b + DMB_WIRE_HDR_VERSION, 0);
		break;
	case 8:
		*name = "length field disagrees with the packet";
		rp_put32(b + DMB_WIRE_HDR_LENGTH, 40);
		break;
	case 9:
		*name = "one fd announced, none sent";
		rp_put16(b + DMB_WIRE_HDR_NFDS, 1);
		break;
	case 10:
		*name = "non-zero reserved header bits";
		b[DMB_WIRE_HDR_RESERVED + 1] = 0x80;
		break;
	case 11:
		*name = "request with serial 0";
		rp_put64(b + DMB_WIRE_HDR_SERIAL, 0);
		break;
	case 12:
		*name = "body longer than the layout";
		memset(b + DMB_WIRE_BODY + 8, 0, 8);
		*len = 40;
		rp_put32(b + DMB_WIRE_HDR_LENGTH, 40);
		break;
	case 13:
		*name = "zero id";
		rp_put64(b + DMB_WIRE_BODY, 0);
		break;
	case 14:
		*name = "reply-shaped message from a client";
		l = dmb_wire_encode_error(b, DMB_WIRE_MAX_MSG, DMB_OP_DESCRIBE, 7, -EIO);
		assert_true(l > 0);
		*len = (size_t)l;
		break;
	case 15:
		*name = "event-shaped message from a client";
		dmb_wire_msg_init(&m, DMB_OP_MOVE_NOTIFY, 1);
		l = rp_encode(&m, b);
		assert_true(l > 0);
		*len = (size_t)l;
		break;
	case 16:
		*name = "unknown opcode with serial 0";
		rp_put16(b + DMB_WIRE_HDR_OP, 0x00ff);
		rp_put64(b + DMB_WIRE_HDR_SERIAL, 0);
		break;
	case 17:
		*name = "unknown event-class opcode from a client";
		rp_put16(b + DMB_WIRE_HDR_OP, 0x40ff);
		break;
	case 18:
		*name = "unknown reply-class opcode from a client";
		rp_put16(b + DMB_WIRE_HDR_OP, 0x80ff);
		break;
	case 19:
		*name = "MAP with direction NONE";
		m = (struct dmb_msg){ .op = DMB_OP_MAP };
		m.u.map.id = 2;
		l = rp_encode(&m, b);
		assert_true(l == DMB_WIRE_BODY + 24); /* version 7: flags, seq */
		rp_put32(b + DMB_WIRE_BODY + 8, DMABUF_NONE);
		break;
	case 20:
		*name = "MAP with a non-zero reserved body field";
		m = (struct dmb_msg){ .op = DMB_OP_MAP };
		m.u.map.id = 2;
		l = rp_encode(&m, b);
		assert_true(l == DMB_WIRE_BODY + 24);
		rp_put32(b + DMB_WIRE_BODY + 20, 1);
		break;
	case 21:
		*name = "ATTACH name without a NUL";
		rp_attach_msg(&m, 1);
		l = rp_encode(&m, b);
		assert_true(l == DMB_WIRE_BODY + 80);
		*len = (size_t)l;
		memset(b + DMB_WIRE_BODY + 8, 'A', 32);
		break;
	case 22:
		*name = "ATTACH name with garbage after the NUL";
		rp_attach_msg(&m, 1);
		l = rp_encode(&m, b);
		*len = (size_t)l;
		b[DMB_WIRE_BODY + 8 + 20] = 'x';
		break;
	case 23:
		*name = "ATTACH with dma_mask_bits 0";
		rp_attach_msg(&m, 1);
		l = rp_encode(&m, b);
		*len = (size_t)l;
		rp_put32(b + DMB_WIRE_BODY + 40, 0);
		break;
	case 24:
		*name = "ATTACH with alignment 3000";
		rp_attach_msg(&m, 1);
		l = rp_encode(&m, b);
		*len = (size_t)l;
		rp_put64(b + DMB_WIRE_BODY + 72, 3000);
		break;
	case 25:
		*name = "ATTACH with unknown device flags";
		rp_attach_msg(&m, 1);
		l = rp_encode(&m, b);
		*len = (size_t)l;
		rp_put32(b + DMB_WIRE_BODY + 44, 0x80000000u);
		break;
	default:
		return false;
	}
	return true;
}

static void malformed_messages_close_the_connection(void **state)
{
	static uint8_t b[8192];
	struct fx f;
	const char *name = NULL;
	int fds[4], fds0;
	size_t len, nfds;
	uint64_t id;

	fx_init(&f);
	fds0 = harness_count_fds();
	for (int i = 0; build_bad_packet(i, b, &len, fds, &nfds, &name); i++) {
		int sock = connect_hello(&f), ret;

		/* hold something, so the drop has work to undo */
		assert_int_equal(rp_import(sock, f.exp, f.fd, &id), 0);
		assert_int_equal(rp_attach(sock, f.exp, id, &id), 0);
		assert_int_equal(rp_map(sock, f.exp, id, DMABUF_TO_DEVICE, NULL), 0);
		ret = rp_send_raw(sock, b, len, fds, nfds, 0);
		if (ret < 0)
			fail_msg("%s: send: %s", name, strerror(-ret));
		close_all(fds, nfds);
		ret = rp_expect_closed(sock, f.exp);
		if (ret != 0)
			fail_msg("%s: expected the connection closed without an answer, got %d",
				 name, ret);
		close(sock);
		after_hostile(&f, fds0, name);
	}
	fx_fini(&f);
}

/* ---- handshake --------------------------------------------------------------- */

static int encode_hello(uint8_t *b)
{
	struct dmb_msg m = { .op = DMB_OP_HELLO };

	m.u.hello.min_version = 1;
	m.u.hello.max_version = 1;
	return rp_encode(&m, b);
}

static void handshake_is_enforced(void **state)
{
	uint8_t b[DMB_WIRE_MAX_MSG];
	struct dmb_msg m, r;
	struct fx f;
	int sock, fds0, len, ret, fd;

	fx_init(&f);
	fds0 = harness_count_fds();

	/* a request before HELLO */
	sock = rp_connect(f.fd);
	m = (struct dmb_msg){ .op = DMB_OP_DESCRIBE };
	m.u.id.id = 1;
	assert_int_equal(rp_send(sock, &m), 0);
	assert_int_equal(rp_expect_closed(sock, f.exp), 0);
	close(sock);
	after_hostile(&f, fds0, "request before HELLO");

	/* IMPORT (with the buffer's fd) before HELLO: nothing imported */
	sock = rp_connect(f.fd);
	fd = dmabuf_fd(f.buf, O_CLOEXEC);
	m = (struct dmb_msg){ .op = DMB_OP_IMPORT, .nfds = 1 };
	m.fds[0] = fd;
	assert_int_equal(rp_send(sock, &m), 0);
	close(fd);
	assert_int_equal(rp_expect_closed(sock, f.exp), 0);
	close(sock);
	after_hostile(&f, fds0, "IMPORT before HELLO");

	/* a second HELLO */
	sock = connect_hello(&f);
	m = (struct dmb_msg){ .op = DMB_OP_HELLO };
	m.u.hello.min_version = m.u.hello.max_version = 1;
	assert_int_equal(rp_send(sock, &m), 0);
	assert_int_equal(rp_expect_closed(sock, f.exp), 0);
	close(sock);
	after_hostile(&f, fds0, "second HELLO");

	/* HELLO in a header of version 2 */
	sock = rp_connect(f.fd);
	len = encode_hello(b);
	rp_put16(b + DMB_WIRE_HDR_VERSION, 2);
	assert_int_equal(rp_send_raw(sock, b, (size_t)len, NULL, 0, 0), 0);
	assert_int_equal(rp_expect_closed(sock, f.exp), 0);
	close(sock);
	after_hostile(&f, fds0, "HELLO header version 2");

	/* versions this server does not speak: a failed HELLO_REPLY, then
	 * the connection closes */
	sock = rp_connect(f.fd);
	len = encode_hello(b);
	rp_put16(b + DMB_WIRE_BODY + 0, DMB_WIRE_VERSION_MAX + 1);
	rp_put16(b + DMB_WIRE_BODY + 2, 9);
	assert_int_equal(rp_send_raw(sock, b, (size_t)len, NULL, 0, 0), 0);
	assert_int_equal(rp_reply(sock, f.exp, DMB_OP_HELLO, rp_get64(b + DMB_WIRE_HDR_SERIAL), &r),
			 -EPROTONOSUPPORT);
	assert_int_equal(rp_expect_closed(sock, f.exp), 0);
	close(sock);
	after_hostile(&f, fds0, "HELLO with versions 2..9");

	/* HELLO with min > max, with flags, with an fd */
	for (int i = 0; i < 3; i++) {
		int memfd = -1;

		sock = rp_connect(f.fd);
		len = encode_hello(b);
		if (i == 0) {
			rp_put16(b + DMB_WIRE_BODY + 0, 1);
			rp_put16(b + DMB_WIRE_BODY + 2, 0);
		} else if (i == 1) {
			rp_put32(b + DMB_WIRE_BODY + 4, 1);
		} else {
			memfd = new_memfd("hello-fd", 0);
			rp_put16(b + DMB_WIRE_HDR_NFDS, 1);
		}
		ret = rp_send_raw(sock, b, (size_t)len, &memfd, memfd >= 0, 0);
		assert_int_equal(ret, 0);
		if (memfd >= 0)
			close(memfd);
		assert_int_equal(rp_expect_closed(sock, f.exp), 0);
		close(sock);
		after_hostile(&f, fds0, "bad HELLO body");
	}

	/* a peer that connects and says nothing does not hold anyone up */
	sock = rp_connect(f.fd);
	good_peer(&f);
	dmabuf_ctx_dispatch(f.exp);
	good_peer(&f);
	close(sock);
	after_hostile(&f, fds0, "silent peer");
	fx_fini(&f);
}

/* ---- unknown and unsupported requests ------------------------------------------ */

/* Sends a copy of a well-formed DESCRIBE with its opcode replaced and
 * checks the raw answer: a failed reply with that opcode | 0x8000, the same
 * serial and status -EOPNOTSUPP. */
static void expect_eopnotsupp(struct fx *f, int sock, uint16_t op, const int *fds,
			      size_t nfds)
{
	uint8_t b[DMB_WIRE_MAX_MSG];
	struct dmb_msg m = { .op = DMB_OP_DESCRIBE };
	char what[96];
	size_t got;
	ssize_t n;
	int len;

	m.u.id.id = 1;
	len = rp_encode(&m, b);
	rp_put16(b + DMB_WIRE_HDR_OP, op);
	rp_put16(b + DMB_WIRE_HDR_NFDS, (uint16_t)nfds);
	assert_int_equal(rp_send_raw(sock, b, (size_t)len, fds, nfds, 0), 0);
	snprintf(what, sizeof(what), "the exporter's answer to unknown opcode %#x", op);
	n = rp_recv_raw(sock, f->exp, b, sizeof(b), &got, what);
	if (n <= 0)
		fail_msg("unknown opcode %#x: the exporter closed the connection (%zd) "
			 "instead of answering -EOPNOTSUPP", op, n);
	assert_int_equal(n, DMB_WIRE_REPLY_PAYLOAD);
	assert_int_equal(got, 0);
	assert_int_equal(rp_get32(b + DMB_WIRE_HDR_MAGIC), DMB_WIRE_MAGIC);
	assert_int_equal(rp_get16(b + DMB_WIRE_HDR_OP), op | DMB_WIRE_OP_REPLY);
	assert_int_equal(rp_get64(b + DMB_WIRE_HDR_SERIAL), m.serial);
	assert_int_equal((int32_t)rp_get32(b + DMB_WIRE_REPLY_STATUS), -EOPNOTSUPP);
}

static void unknown_opcode_gets_eopnotsupp(void **state)
{
	struct fx f;
	uint64_t id;
	int sock, fds0, fds[2];

	fx_init(&f);
	fds0 = harness_count_fds();
	sock = connect_hello(&f);
	assert_int_equal(rp_import(sock, f.exp, f.fd, &id), 0);
	expect_eopnotsupp(&f, sock, DMB_OP__LAST_REQUEST + 1, NULL, 0);
	expect_eopnotsupp(&f, sock, 0x00ff, NULL, 0);
	/* fds that came with an unknown request are closed */
	fds[0] = new_memfd("unknown-op", 0);
	fds[1] = dmabuf_fd(f.buf, O_CLOEXEC);
	expect_eopnotsupp(&f, sock, 0x0042, fds, 2);
	close_all(fds, 2);
	/* the connection is still usable */
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DESCRIBE, id), 0);
	close(sock);
	after_hostile(&f, fds0, "unknown opcodes");
	fx_fini(&f);
}

static void unsupported_request_keeps_the_connection(void **state)
{
	struct dmb_msg m = { .op = DMB_OP_GET_BACKING };
	struct fx f;
	uint64_t id;
	int sock, fds0;

	fx_init(&f);
	fds0 = harness_count_fds();
	sock = connect_hello(&f);
	assert_int_equal(rp_import(sock, f.exp, f.fd, &id), 0);
	/* the backing of a buffer whose bytes are in its file (no udmabuf) */
	m.u.get_backing.buffer_id = id;
	assert_int_equal(rp_call(sock, f.exp, &m, NULL), -EINVAL);
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DESCRIBE, id), 0);
	close(sock);
	after_hostile(&f, fds0, "GET_BACKING");
	fx_fini(&f);
}

/* ---- fd games ------------------------------------------------------------------ */

/* n fds of mixed kinds, among them dups of the buffer's own fd (a leaked one
 * of those would keep the buffer from ever being released). */
static void open_fds(struct fx *f, int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (i % 4) {
		case 0:
			fds[i] = dmabuf_fd(f->buf, O_CLOEXEC);
			break;
		case 1:
			fds[i] = new_memfd("junk", 0);
			break;
		case 2:
			fds[i] = eventfd(0, EFD_CLOEXEC);
			break;
		default:
			fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
			break;
		}
		assert_true(fds[i] >= 0);
	}
}

static void fd_games_close_the_connection(void **state)
{
	static const struct {
		const char *name;
		uint16_t op;
		size_t nfds;		/* sent */
		int hdr_nfds;		/* announced; -1: as sent */
	} cases[] = {
		{ "DESCRIBE with 5 fds", DMB_OP_DESCRIBE, 5, -1 },
		{ "DESCRIBE with 5 fds, 4 announced", DMB_OP_DESCRIBE, 5, 4 },
		{ "DESCRIBE with 20 fds", DMB_OP_DESCRIBE, 20, 0 },
		{ "DESCRIBE with 40 fds (MSG_CTRUNC)", DMB_OP_DESCRIBE, 40, 0 },
		{ "DESCRIBE with an fd", DMB_OP_DESCRIBE, 1, -1 },
		{ "DESCRIBE with an unannounced fd", DMB_OP_DESCRIBE, 1, 0 },
		{ "IMPORT without an fd", DMB_OP_IMPORT, 0, -1 },
		{ "IMPORT announcing an fd it does not send", DMB_OP_IMPORT, 0, 1 },
		{ "IMPORT with two fds", DMB_OP_IMPORT, 2, -1 },
		{ "IMPORT with 4 fds", DMB_OP_IMPORT, 4, -1 },
		{ "MAP with 3 fds", DMB_OP_MAP, 3, -1 },
	};
	struct fx f;
	int fds0;

	fx_init(&f);
	fds0 = harness_count_fds();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t b[DMB_WIRE_MAX_MSG];
		struct dmb_msg m = { .op = cases[i].op };
		int fds[RP_MAX_FDS], sock = connect_hello(&f), len;
		uint64_t id = 0;

		assert_int_equal(rp_import(sock, f.exp, f.fd, &id), 0);
		if (cases[i].op == DMB_OP_DESCRIBE) {
			m.u.id.id = id;
		} else if (cases[i].op == DMB_OP_IMPORT) {
			m.nfds = 1;
			m.fds[0] = f.fd;
		} else if (cases[i].op == DMB_OP_MAP) {
			m.u.map.id = id;
		}
		len = rp_encode(&m, b);
		assert_true(len > 0);
		rp_put16(b + DMB_WIRE_HDR_NFDS, (uint16_t)(cases[i].hdr_nfds < 0 ? cases[i].nfds
								 : (size_t)cases[i].hdr_nfds));
		open_fds(&f, fds, cases[i].nfds);
		assert_int_equal(rp_send_raw(sock, b, (size_t)len, fds, cases[i].nfds, 0), 0);
		close_all(fds, cases[i].nfds);
		if (rp_expect_closed(sock, f.exp) != 0)
			fail_msg("%s: the connection should close without an answer",
				 cases[i].name);
		close(sock);
		after_hostile(&f, fds0, cases[i].name);
	}
	fx_fini(&f);
}

/* ---- proof of possession with the wrong kind of fd ------------------------------ */

static void import_of_a_wrong_fd_is_einval(void **state)
{
	struct fx f;
	struct test_exporter tx2 = { 0 };
	struct dmabuf_ctx *exp2 = tx_ctx_new(0);
	struct dmabuf *buf2 = tx_export(exp2, &tx2, BUF_SIZE, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd2 = dmabuf_fd(buf2, O_CLOEXEC);
	char ep[DMB_ENDPOINT_NAME_MAX], fake[128];
	struct dmabuf *proxy2;
	int sock, fds0, p[2], sv[2];
	uint64_t id;

	fx_init(&f);
	assert_int_equal(dmb_endpoint_of_fd(f.fd, ep, sizeof(ep)), 0);
	snprintf(fake, sizeof(fake), "dmabuf:fake@%s", ep);
	fds0 = harness_count_fds();
	sock = connect_hello(&f);

	struct {
		const char *name;
		int fd;
	} kinds[16];
	size_t n = 0;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	kinds[n].name = "pipe read end";
	kinds[n++].fd = p[0];
	kinds[n].name = "pipe write end";
	kinds[n++].fd = p[1];
	kinds[n].name = "eventfd";
	kinds[n++].fd = eventfd(0, EFD_CLOEXEC);
	kinds[n].name = "socket";
	kinds[n++].fd = sv[0];
	kinds[n].name = "the connection's own socket";
	kinds[n++].fd = dup(sock);
	kinds[n].name = "the exporter's own event fd";
	kinds[n++].fd = dup(dmabuf_ctx_get_fd(f.exp));
	kinds[n].name = "/dev/null";
	kinds[n++].fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	kinds[n].name = "a directory";
	kinds[n++].fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	kinds[n].name = "a regular file";
	kinds[n++].fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	kinds[n].name = "an unsealed memfd named like a buffer";
	kinds[n++].fd = new_memfd(fake, 0);
	kinds[n].name = "a sealed memfd named like a buffer";
	kinds[n++].fd = new_memfd(fake, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	kinds[n].name = "a buffer of another exporter context";
	kinds[n++].fd = dup(fd2);
	for (size_t i = 0; i < n; i++) {
		int ret;

		assert_true(kinds[i].fd >= 0);
		ret = rp_import(sock, f.exp, kinds[i].fd, NULL);
		if (ret != -EINVAL)
			fail_msg("IMPORT of %s: %d, expected -EINVAL", kinds[i].name, ret);
		close(kinds[i].fd);
		/* still connected, still nothing held */
		assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DESCRIBE, 1000), -ENOENT);
	}
	close(sv[1]);

	/* an O_PATH fd of the right buffer is no open file of it: the
	 * kernel's fget() refuses it (-EBADF), so it proves nothing */
	{
		char path[64];
		int opath;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", f.fd);
		opath = open(path, O_PATH | O_CLOEXEC);
		assert_true(opath >= 0);
		assert_int_equal(rp_import(sock, f.exp, opath, NULL), -EBADF);
		close(opath);
		assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DESCRIBE, 1000), -ENOENT);
		/* the library's own importer refuses it the same way */
		opath = open(path, O_PATH | O_CLOEXEC);
		assert_int_equal(dmabuf_get(f.imp, opath, &proxy2), -EBADF);
		close(opath);
	}

	/* a buffer this exporter only imported (its proxy of exp2's buffer)
	 * is not its to serve either */
	assert_int_equal(dmabuf_get(f.exp, fd2, &proxy2), 0);
	assert_int_equal(rp_import(sock, f.exp, fd2, NULL), -EINVAL);
	assert_int_equal(dmabuf_put(proxy2), 0);

	/* and the right fd still works on the same connection */
	assert_int_equal(rp_import(sock, f.exp, f.fd, &id), 0);
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DESCRIBE, id), 0);
	close(sock);
	for (int i = 0; i < 10; i++)
		dmabuf_ctx_dispatch(exp2);
	/* exp keeps its connection to exp2 open, idle, for reuse: both ends
	 * of that one socket pair are the only new fds */
	after_hostile(&f, fds0 + 2, "IMPORT of wrong fds");
	fx_fini(&f);
	assert_int_equal(dmabuf_put(buf2), 0);
	close(fd2);
	DISPATCH_UNTIL(exp2, tx2.release != 0,
		       "the second exporter's release of its buffer after its last fd closed");
	assert_int_equal(tx2.release, 1);
	dmabuf_ctx_destroy(exp2);
}

/* ---- ids ------------------------------------------------------------------------ */

static void forged_and_stale_ids_are_enoent(void **state)
{
	struct dmb_msg m;
	struct fx f;
	uint64_t imp = 0, att = 0, att2 = 0, map = 0, map2 = 0, imp_b = 0, imp2 = 0;
	int a, b, fds0;

	fx_init(&f);
	fds0 = harness_count_fds();
	a = connect_hello(&f);
	assert_int_equal(rp_import(a, f.exp, f.fd, &imp), 0);
	assert_int_equal(rp_attach(a, f.exp, imp, &att), 0);
	assert_int_equal(rp_map(a, f.exp, att, DMABUF_TO_DEVICE, &map), 0);

	/* never issued */
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DESCRIBE, 999), -ENOENT);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_RELEASE, 999), -ENOENT);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DETACH, 999), -ENOENT);
	assert_int_equal(rp_attach(a, f.exp, 999, NULL), -ENOENT);
	assert_int_equal(rp_map(a, f.exp, 999, DMABUF_TO_DEVICE, NULL), -ENOENT);
	assert_int_equal(rp_unmap(a, f.exp, 999, DMABUF_TO_DEVICE), -ENOENT);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, 999, DMABUF_TO_DEVICE), -ENOENT);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_END_CPU_ACCESS, 999, DMABUF_TO_DEVICE), -ENOENT);
	m = (struct dmb_msg){ .op = DMB_OP_SET_NAME };
	m.u.set_name.buffer_id = 999;
	strcpy(m.u.set_name.name, "forged");
	assert_int_equal(rp_call(a, f.exp, &m, NULL), -ENOENT);
	m = (struct dmb_msg){ .op = DMB_OP_FENCE_EXPORT };
	m.u.fence_export.buffer_id = 999;
	m.u.fence_export.flags = DMB_WIRE_FENCE_READ;
	assert_int_equal(rp_call(a, f.exp, &m, NULL), -ENOENT);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DESCRIBE, UINT64_MAX), -ENOENT);

	/* issued, but of another type */
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DESCRIBE, att), -ENOENT);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_RELEASE, map), -ENOENT);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DETACH, imp), -ENOENT);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DETACH, map), -ENOENT);
	assert_int_equal(rp_attach(a, f.exp, att, NULL), -ENOENT);
	assert_int_equal(rp_map(a, f.exp, imp, DMABUF_TO_DEVICE, NULL), -ENOENT);
	assert_int_equal(rp_map(a, f.exp, map, DMABUF_TO_DEVICE, NULL), -ENOENT);
	assert_int_equal(rp_unmap(a, f.exp, att, DMABUF_TO_DEVICE), -ENOENT);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, att, DMABUF_TO_DEVICE), -ENOENT);
	assert_int_equal(f.tx.map, 1);
	assert_int_equal(f.tx.unmap, 0);
	assert_int_equal(f.tx.detach, 0);

	/* another peer's ids are not this peer's */
	b = connect_hello(&f);
	assert_int_equal(rp_import(b, f.exp, f.fd, &imp_b), 0);
	assert_int_equal(rp_id_call(b, f.exp, DMB_OP_DETACH, att), -ENOENT);
	assert_int_equal(rp_unmap(b, f.exp, map, DMABUF_TO_DEVICE), -ENOENT);
	assert_int_equal(rp_map(b, f.exp, att, DMABUF_TO_DEVICE, NULL), -ENOENT);
	assert_int_equal(f.tx.map, 1);
	assert_int_equal(f.tx.unmap, 0);
	assert_int_equal(f.tx.detach, 0);

	/* stale: after UNMAP */
	assert_int_equal(rp_unmap(a, f.exp, map, DMABUF_TO_DEVICE), 0);
	assert_int_equal(f.tx.unmap, 1);
	assert_int_equal(rp_unmap(a, f.exp, map, DMABUF_TO_DEVICE), -ENOENT);
	assert_int_equal(f.tx.unmap, 1);
	/* stale: after DETACH (which undid the mapping still under it) */
	assert_int_equal(rp_map(a, f.exp, att, DMABUF_FROM_DEVICE, &map2), 0);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DETACH, att), 0);
	assert_int_equal(f.tx.unmap, 2);
	assert_int_equal(f.tx.detach, 1);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DETACH, att), -ENOENT);
	assert_int_equal(rp_map(a, f.exp, att, DMABUF_TO_DEVICE, NULL), -ENOENT);
	assert_int_equal(rp_unmap(a, f.exp, map2, DMABUF_FROM_DEVICE), -ENOENT);
	assert_int_equal(f.tx.unmap, 2);
	assert_int_equal(f.tx.detach, 1);
	/* stale: after RELEASE (which undid the attachment under it) */
	assert_int_equal(rp_attach(a, f.exp, imp, &att2), 0);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_RELEASE, imp), 0);
	assert_int_equal(f.tx.detach, 2);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_RELEASE, imp), -ENOENT);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DESCRIBE, imp), -ENOENT);
	assert_int_equal(rp_attach(a, f.exp, imp, NULL), -ENOENT);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DETACH, att2), -ENOENT);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, imp, DMABUF_TO_DEVICE), -ENOENT);
	/* ids are never reused on a connection: a new import gets a new id */
	assert_int_equal(rp_import(a, f.exp, f.fd, &imp2), 0);
	assert_true(imp2 > att2);
	assert_balanced(&f);
	assert_int_equal(rp_id_call(b, f.exp, DMB_OP_DESCRIBE, imp_b), 0);
	close(a);
	close(b);
	after_hostile(&f, fds0, "forged and stale ids");
	fx_fini(&f);
}

/* ---- directions and CPU brackets --------------------------------------------------- */

/* With a strict exporter (DMABUF_CTX_STRICT_CPU_ACCESS), a peer's END must
 * match that peer's own START. */
static void wrong_direction_is_einval(void **state)
{
	struct fx f;
	uint64_t imp, att, map;
	int a, fds0;

	fx_init_flags(&f, DMABUF_CTX_STRICT_CPU_ACCESS);
	fds0 = harness_count_fds();
	a = connect_hello(&f);
	assert_int_equal(rp_import(a, f.exp, f.fd, &imp), 0);
	assert_int_equal(rp_attach(a, f.exp, imp, &att), 0);
	assert_int_equal(rp_map(a, f.exp, att, DMABUF_TO_DEVICE, &map), 0);
	assert_int_equal(rp_unmap(a, f.exp, map, DMABUF_FROM_DEVICE), -EINVAL);
	assert_int_equal(rp_unmap(a, f.exp, map, DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(f.tx.unmap, 0);
	assert_int_equal(rp_unmap(a, f.exp, map, DMABUF_TO_DEVICE), 0);
	assert_int_equal(f.tx.unmap, 1);

	/* END without this peer's BEGIN, or of another direction */
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_END_CPU_ACCESS, imp, DMABUF_FROM_DEVICE), -EINVAL);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, imp, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_END_CPU_ACCESS, imp, DMABUF_TO_DEVICE), -EINVAL);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_END_CPU_ACCESS, imp, DMABUF_BIDIRECTIONAL), -EINVAL);
	assert_int_equal(f.tx.end, 0);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_END_CPU_ACCESS, imp, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(f.tx.begin, 1);
	assert_int_equal(f.tx.end, 1);
	/* another peer cannot end this peer's bracket */
	{
		int b = connect_hello(&f);
		uint64_t imp_b;

		assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, imp, DMABUF_TO_DEVICE), 0);
		assert_int_equal(rp_import(b, f.exp, f.fd, &imp_b), 0);
		assert_int_equal(rp_cpu(b, f.exp, DMB_OP_END_CPU_ACCESS, imp_b, DMABUF_TO_DEVICE),
				 -EINVAL);
		assert_int_equal(f.tx.end, 1);
		assert_int_equal(rp_cpu(a, f.exp, DMB_OP_END_CPU_ACCESS, imp, DMABUF_TO_DEVICE), 0);
		close(b);
	}
	assert_int_equal(f.tx.begin, 2);
	assert_int_equal(f.tx.end, 2);
	close(a);
	after_hostile(&f, fds0, "wrong directions");
	fx_fini(&f);
}

/* By default an END the peer never began goes to the exporter's op, which
 * decides (as DMA_BUF_IOCTL_SYNC in another process would), but it never
 * closes a bracket of another peer. */
static void end_without_start_reaches_the_op(void **state)
{
	struct fx f;
	uint64_t imp, imp_b;
	int a, b, fds0;

	fx_init(&f);
	fds0 = harness_count_fds();
	a = connect_hello(&f);
	b = connect_hello(&f);
	assert_int_equal(rp_import(a, f.exp, f.fd, &imp), 0);
	assert_int_equal(rp_import(b, f.exp, f.fd, &imp_b), 0);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_END_CPU_ACCESS, imp, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(f.tx.end, 1);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, imp, DMABUF_TO_DEVICE), 0);
	assert_int_equal(rp_cpu(b, f.exp, DMB_OP_END_CPU_ACCESS, imp_b, DMABUF_TO_DEVICE), 0);
	assert_int_equal(f.tx.end, 2);
	close(b);
	/* a's bracket is still a's: its departure ends it, once */
	close(a);
	assert_int_equal(settle(&f, fds0), fds0);
	assert_int_equal(f.tx.begin, 1);
	assert_int_equal(f.tx.end, 3);
	after_hostile(&f, fds0, "END without START");
	fx_fini(&f);
	assert_int_equal(f.tx.end, 3);
}

/* A peer that leaves with CPU brackets open: the exporter ends each once,
 * with the direction it was begun with. */
static void cpu_brackets_left_open_are_ended_once(void **state)
{
	struct fx f;
	uint64_t imp;
	int a, fds0;

	fx_init(&f);
	fds0 = harness_count_fds();
	a = connect_hello(&f);
	assert_int_equal(rp_import(a, f.exp, f.fd, &imp), 0);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, imp, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, imp, DMABUF_TO_DEVICE), 0);
	assert_int_equal(rp_cpu(a, f.exp, DMB_OP_BEGIN_CPU_ACCESS, imp, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(f.tx.begin, 3);
	close(a);
	assert_int_equal(settle(&f, fds0), fds0);
	if (f.tx.end != f.tx.begin)
		fail_msg("peer left with 3 CPU brackets open (FROM_DEVICE, TO_DEVICE, BIDIRECTIONAL): "
			 "the exporter's end_cpu_access ran %d time(s)", f.tx.end);
	after_hostile(&f, fds0, "CPU brackets left open");
	fx_fini(&f);
	/* nothing was left open on the exporter's side: release ended none */
	assert_int_equal(f.tx.end, 3);
}

/* ---- floods -------------------------------------------------------------------------- */

static int send_describe(int sock, uint64_t id, int flags)
{
	uint8_t b[DMB_WIRE_MAX_MSG];
	struct dmb_msg m = { .op = DMB_OP_DESCRIBE };
	int len;

	m.u.id.id = id;
	len = rp_encode(&m, b);
	assert_true(len > 0);
	return rp_send_raw(sock, b, (size_t)len, NULL, 0, flags);
}

/* Replies already waiting on sock, without waiting. */
static int count_ready(int sock)
{
	uint8_t b[DMB_WIRE_MAX_MSG];
	int n = 0;
	size_t nfds;

	while (rp_recv_raw(sock, NULL, b, sizeof(b), &nfds, NULL) > 0)
		n++;
	return n;
}

/* Whether the other end of sock has closed (replies may still be unread). */
static bool hung_up(int sock)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

static void peer_that_stops_reading_is_dropped(void **state)
{
	struct fx f;
	uint64_t imp, att, imp_b;
	int a, b, fds0, sent = 0, replies, rounds = 0, answered_b = 0;
	bool dropped = false;

	fx_init(&f);
	fds0 = harness_count_fds();
	a = connect_hello(&f);
	b = connect_hello(&f);
	assert_int_equal(rp_import(b, f.exp, f.fd, &imp_b), 0);
	assert_int_equal(rp_import(a, f.exp, f.fd, &imp), 0);
	assert_int_equal(rp_attach(a, f.exp, imp, &att), 0);
	assert_int_equal(rp_map(a, f.exp, att, DMABUF_TO_DEVICE, NULL), 0);
	assert_int_equal(rp_map(a, f.exp, att, DMABUF_FROM_DEVICE, NULL), 0);
	/*
	 * requests, never reading a reply; the exporter must not block on a's
	 * full socket: each round, b's one request is answered by the same
	 * dispatch (a reply already waiting, read without waiting) while a's
	 * replies pile up unread; in the round a is dropped, by the next
	 * dispatch, as a dropped peer ends its batch. An exporter that blocked would never return
	 * here (one thread: nobody reads a): the hang guard (60 s, a bound on
	 * the hang only) fails the suite with that message.
	 */
	harness_guard_start("the exporter's dispatch returning while a peer "
			    "does not read its replies", 60);
	for (int round = 0; round < 20000 && !dropped; round++) {
		assert_int_equal(send_describe(b, imp_b, 0), 0);
		for (int k = 0; k < 64; k++) {
			int ret = send_describe(a, imp, MSG_DONTWAIT);

			if (ret == -EAGAIN)
				break;
			if (ret == -EPIPE || ret == -ECONNRESET) {
				dropped = true;
				break;
			}
			assert_int_equal(ret, 0);
			sent++;
		}
		assert_true(dmabuf_ctx_dispatch(f.exp) >= 0);
		rounds++;
		answered_b += count_ready(b);
		if (answered_b != rounds && answered_b == rounds - 1 && hung_up(a)) {
			/* a's drop ended that dispatch's batch (its sources
			 * changed) before b's turn: b's answer is the next one */
			assert_true(dmabuf_ctx_dispatch(f.exp) >= 0);
			answered_b += count_ready(b);
		}
		if (answered_b != rounds)
			fail_msg("round %d: the other peer has %d answers: the peer that does not read held it",
				 rounds, answered_b);
	}
	harness_guard_done();
	if (!dropped)
		fail_msg("the exporter never dropped a peer that does not read (%d requests sent)",
			 sent);
	/* b outlives a's drop, and ends its own way */
	assert_int_equal(rp_id_call(b, f.exp, DMB_OP_DESCRIBE, imp_b), 0);
	close(b);
	/* what it got before the drop, then the end of the connection */
	replies = rp_expect_closed(a, f.exp);
	assert_true(replies > 0 && replies < sent);
	close(a);
	after_hostile(&f, fds0, "peer that stops reading");
	assert_int_equal(f.tx.map, 3);
	assert_int_equal(f.tx.unmap, 3);
	fx_fini(&f);
}

/* UNMAP, DETACH and RELEASE with NO_REPLY (version 2): done in order and
 * never answered, a failed one (stale id) only logged; the next request's
 * reply is the next message on the socket. */
static void one_way_requests_are_not_answered(void **state)
{
	struct fx f;
	struct dmb_msg m;
	uint64_t imp, imp2, att, map;
	int sock, fds0;

	fx_init(&f);
	fds0 = harness_count_fds();
	sock = connect_hello(&f);
	assert_int_equal(rp_import(sock, f.exp, f.fd, &imp), 0);
	assert_int_equal(rp_import(sock, f.exp, f.fd, &imp2), 0);
	assert_int_equal(rp_attach(sock, f.exp, imp, &att), 0);
	assert_int_equal(rp_map(sock, f.exp, att, DMABUF_TO_DEVICE, &map), 0);
	dmb_wire_msg_init(&m, DMB_OP_UNMAP, map);
	m.u.map.dir = DMABUF_TO_DEVICE;
	m.flags = DMB_WIRE_F_NO_REPLY;
	assert_int_equal(rp_send(sock, &m), 0);
	dmb_wire_msg_init(&m, DMB_OP_DETACH, att);
	m.flags = DMB_WIRE_F_NO_REPLY;
	assert_int_equal(rp_send(sock, &m), 0);
	assert_int_equal(rp_send(sock, &m), 0); /* stale now: -ENOENT, unanswered */
	dmb_wire_msg_init(&m, DMB_OP_RELEASE, imp2);
	m.flags = DMB_WIRE_F_NO_REPLY;
	assert_int_equal(rp_send(sock, &m), 0);
	/* answered: the first reply on the socket is this one's */
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DESCRIBE, imp), 0);
	assert_int_equal(f.tx.unmap, 1);
	assert_int_equal(f.tx.detach, 1);
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DESCRIBE, imp2), -ENOENT);
	assert_int_equal(count_ready(sock), 0);
	close(sock);
	after_hostile(&f, fds0, "one-way requests");
	fx_fini(&f);
}

/* QUIET IMPORT (version 3): a success the fd already tells is not
 * answered, the next request's reply comes first; a failure is; a success
 * with news (a name set) is; an id not above the last one is -EEXIST. */
static void quiet_import_is_answered_only_with_news(void **state)
{
	const unsigned int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	struct dmb_msg m, r;
	struct fx f;
	uint64_t id, serial;
	int sock, fds0, forged;

	fx_init(&f);
	fds0 = harness_count_fds();
	sock = connect_hello(&f);
	m = (struct dmb_msg){ .op = DMB_OP_IMPORT, .nfds = 1, .flags = DMB_WIRE_F_QUIET };
	m.fds[0] = f.fd;
	assert_int_equal(rp_send(sock, &m), 0);
	id = m.u.import.buffer_id;
	assert_true(id & DMB_WIRE_CLIENT_ID_BIT);
	/* not answered: the first reply on the socket is the DESCRIBE's,
	 * and the import is there under the id this side chose */
	assert_int_equal(rp_id_call(sock, f.exp, DMB_OP_DESCRIBE, id), 0);
	/* a failure is answered */
	forged = new_memfd("dmabuf:fake@dmabuf-1-0000000000000000", need);
	m = (struct dmb_msg){ .op = DMB_OP_IMPORT, .nfds = 1, .flags = DMB_WIRE_F_QUIET };
	m.fds[0] = forged;
	assert_int_equal(rp_call(sock, f.exp, &m, &r), -EINVAL);
	close(forged);
	/* a name set is news: answered, with the name */
	assert_int_equal(dmabuf_set_name(f.buf, "news"), 0);
	m = (struct dmb_msg){ .op = DMB_OP_IMPORT, .nfds = 1, .flags = DMB_WIRE_F_QUIET };
	m.fds[0] = f.fd;
	assert_int_equal(rp_call(sock, f.exp, &m, &r), 0);
	assert_true(r.u.import_reply.buffer_id == m.u.import.buffer_id);
	assert_string_equal(r.u.import_reply.name, "news");
	/* ids only grow */
	serial = m.serial;
	m.serial = serial + 100;
	m.flags = 0;
	assert_int_equal(rp_call(sock, f.exp, &m, &r), -EEXIST);
	m.u.import.buffer_id = id;
	m.serial = serial + 101;
	assert_int_equal(rp_call(sock, f.exp, &m, &r), -EEXIST);
	assert_int_equal(count_ready(sock), 0);
	close(sock);
	after_hostile(&f, fds0, "quiet imports");
	fx_fini(&f);
}

/* Sends a QUIET IMPORT of fd and a DESCRIBE of the import's id; true when
 * the import was answered (its reply, in *r, comes first), false when only
 * the DESCRIBE is (a quiet success). */
static bool quiet_import_answered(int sock, struct fx *f, int fd, struct dmb_msg *r)
{
	struct dmb_msg m = { .op = DMB_OP_IMPORT, .nfds = 1, .flags = DMB_WIRE_F_QUIET };
	struct dmb_msg d;
	bool answered = false;

	m.fds[0] = fd;
	assert_int_equal(rp_send(sock, &m), 0);
	dmb_wire_msg_init(&d, DMB_OP_DESCRIBE, m.u.import.buffer_id);
	assert_int_equal(rp_send(sock, &d), 0);
	do
		assert_int_equal(rp_recv(sock, f->exp, r) > 0, 1);
	while (rp_is_event(r->op));
	if (r->op == (DMB_OP_IMPORT | DMB_WIRE_OP_REPLY)) {
		assert_true(r->serial == m.serial);
		assert_int_equal(r->status, 0);
		answered = true;
		assert_int_equal(rp_reply(sock, f->exp, DMB_OP_DESCRIBE, d.serial, &d), 0);
	} else {
		assert_true(r->op == (DMB_OP_DESCRIBE | DMB_WIRE_OP_REPLY) && r->serial == d.serial);
		assert_int_equal(r->status, 0);
	}
	return answered;
}

static int reopen_fd(int fd, int flags)
{
	char path[64];
	int ret;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ret = open(path, flags | O_CLOEXEC);
	assert_true(ret >= 0);
	return ret;
}

/* The exporter knows an fd of the very open file it made for its newest
 * buffer without F_GETFL and fstat() (docs/performance.md); any other fd
 * gets the full check, with the same answers: an older buffer, a reopened
 * file of another access mode (answered: the mode is news), an O_PATH fd,
 * and a revived orphan whose file is now the reviver's. */
static void import_checks_any_fd_the_long_way(void **state)
{
	struct dmb_msg r, m;
	struct dmabuf *newer, *again;
	struct fx f;
	int sock, fds0, nfd, ro, opath;

	fx_init(&f);
	newer = tx_export(f.exp, &f.tx, BUF_SIZE, O_RDWR, DMABUF_ALLOC_SYSTEM);
	nfd = dmabuf_fd(newer, O_CLOEXEC);
	assert_true(nfd >= 0);
	fds0 = harness_count_fds();
	sock = connect_hello(&f);
	/* the newest buffer's own file and an older buffer's: quiet both */
	assert_false(quiet_import_answered(sock, &f, nfd, &r));
	assert_false(quiet_import_answered(sock, &f, f.fd, &r));
	/* a read-only file of the newest buffer: answered, the exporter's
	 * mode wins */
	ro = reopen_fd(nfd, O_RDONLY);
	assert_true(quiet_import_answered(sock, &f, ro, &r));
	assert_int_equal(r.u.import_reply.flags, O_RDWR);
	/* an O_PATH fd of it proves nothing */
	opath = reopen_fd(nfd, O_PATH);
	m = (struct dmb_msg){ .op = DMB_OP_IMPORT, .nfds = 1 };
	m.fds[0] = opath;
	assert_int_equal(rp_call(sock, f.exp, &m, &r), -EBADF);
	close(opath);
	close(sock);
	settle(&f, fds0 + 1);

	/* the newest buffer an orphan, revived by the read-only file: the
	 * library's file is then the reviver's, read-only, and an fd of it
	 * still tells the exporter news */
	assert_int_equal(dmabuf_put(newer), 0);
	sock = connect_hello(&f);
	assert_true(quiet_import_answered(sock, &f, ro, &r));
	assert_true(quiet_import_answered(sock, &f, ro, &r));
	assert_int_equal(r.u.import_reply.flags, O_RDWR);
	assert_int_equal(dmabuf_get(f.exp, nfd, &again), 0);
	assert_ptr_equal(again, newer);
	close(sock);
	close(ro);
	settle(&f, fds0);
	assert_int_equal(dmabuf_put(again), 0);
	close(nfd);
	assert_balanced(&f);
	assert_int_equal(dmabuf_put(f.buf), 0);
	close(f.fd);
	DISPATCH_UNTIL(f.exp, f.tx.release >= 2,
		       "the exporter's release of both buffers after their last fds closed");
	assert_int_equal(f.tx.release, 2);
	dmabuf_ctx_destroy(f.imp);
	dmabuf_ctx_destroy(f.exp);
}

static void flood_is_served_in_batches(void **state)
{
	const int n = 3 * DMB_PEER_BATCH + 5;
	struct fx f;
	uint64_t ida, idb;
	int a, b, fds0, got;

	fx_init(&f);
	fds0 = harness_count_fds();
	a = connect_hello(&f);
	b = connect_hello(&f);
	assert_int_equal(rp_import(a, f.exp, f.fd, &ida), 0);
	assert_int_equal(rp_import(b, f.exp, f.fd, &idb), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(send_describe(a, ida, 0), 0);
	assert_int_equal(send_describe(b, idb, 0), 0);
	/* one round: the flooder gets DMB_PEER_BATCH answers, the other its
	 * one */
	assert_true(dmabuf_ctx_dispatch(f.exp) >= 2);
	assert_int_equal(count_ready(a), DMB_PEER_BATCH);
	assert_int_equal(count_ready(b), 1);
	/* the library's importer is served while the backlog remains */
	good_peer(&f);
	got = DMB_PEER_BATCH;
	DISPATCH_UNTIL(f.exp, (got += count_ready(a)) >= n,
		       "the flooder's backlog answered in later rounds");
	assert_int_equal(got, n);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DESCRIBE, ida), 0);
	close(a);
	close(b);
	after_hostile(&f, fds0, "flood");
	fx_fini(&f);
}

/* ---- per-peer limits ------------------------------------------------------------------ */

/* Sends count copies of *m (fresh serials) in pipelined chunks and checks
 * each answer is 0; ids[i] gets the id each reply carries. */
static void pipeline(struct fx *f, int sock, struct dmb_msg *m, unsigned int count,
		     uint64_t *ids)
{
	for (unsigned int base = 0; base < count; base += 32) {
		uint64_t serials[32];
		unsigned int k, chunk = count - base < 32 ? count - base : 32;

		for (k = 0; k < chunk; k++) {
			m->serial = 0;
			assert_int_equal(rp_send(sock, m), 0);
			serials[k] = m->serial;
		}
		for (k = 0; k < chunk; k++) {
			struct dmb_msg r;

			assert_int_equal(rp_reply(sock, f->exp, m->op, serials[k], &r), 0);
			if (ids)
				ids[base + k] = m->op == DMB_OP_ATTACH ? r.u.attach_reply.attachment_id
								       : r.u.import_reply.buffer_id;
		}
	}
}

static void per_peer_limits_give_enospc(void **state)
{
	static uint64_t atts[DMB_PEER_MAX_ATTACHMENTS];
	struct dmb_msg m;
	struct fx f;
	uint64_t imp;
	int a, c, fds0;

	fx_init(&f);
	fds0 = harness_count_fds();
	a = connect_hello(&f);
	assert_int_equal(rp_import(a, f.exp, f.fd, &imp), 0);
	rp_attach_msg(&m, imp);
	pipeline(&f, a, &m, DMB_PEER_MAX_ATTACHMENTS, atts);
	assert_int_equal(f.tx.attach, DMB_PEER_MAX_ATTACHMENTS);
	assert_int_equal(rp_attach(a, f.exp, imp, NULL), -ENOSPC);
	assert_int_equal(f.tx.attach, DMB_PEER_MAX_ATTACHMENTS);
	/* the limit is per peer: another peer and the library's importer
	 * still attach */
	good_peer(&f);
	assert_int_equal(rp_id_call(a, f.exp, DMB_OP_DETACH, atts[7]), 0);
	assert_int_equal(rp_attach(a, f.exp, imp, NULL), 0);
	assert_int_equal(rp_attach(a, f.exp, imp, NULL), -ENOSPC);

	/* imports: one buffer imported over and over */
	c = connect_hello(&f);
	m = (struct dmb_msg){ .op = DMB_OP_IMPORT, .nfds = 1 };
	m.fds[0] = f.fd;
	pipeline(&f, c, &m, DMB_PEER_MAX_IMPORTS, NULL);
	assert_int_equal(rp_import(c, f.exp, f.fd, NULL), -ENOSPC);
	close(c);
	close(a);
	after_hostile(&f, fds0, "per-peer limits");
	assert_int_equal(f.tx.detach, f.tx.attach);
	fx_fini(&f);
}

/* ---- a hostile exporter ------------------------------------------------------- */

/* A fake exporter, in a child: the library's importer talks to it. */
struct fake_exporter {
	int listen_fd;
	uint16_t event;		/* sent before the ATTACH reply */
};

/* Receives one request as a server (its fds closed). 1, 0 on EOF, -errno. */
static int fake_recv(int sock, struct dmb_msg *m)
{
	static const int fake[DMB_WIRE_MAX_FDS] = { 1000, 1001, 1002, 1003 };
	uint8_t buf[DMB_WIRE_MAX_MSG + 64];
	size_t nfds;
	ssize_t n = rp_recv_raw(sock, NULL, buf, sizeof(buf), &nfds,
				"the importer's next request to the fake exporter");

	if (n <= 0)
		return (int)n;
	if (nfds > DMB_WIRE_MAX_FDS)
		return -EMSGSIZE;
	return dmb_wire_decode(buf, (size_t)n, fake, nfds, DMB_WIRE_SERVER, m) < 0
		       ? -EPROTO : 1;
}

static int fake_exporter_main(void *arg)
{
	const struct fake_exporter *fe = arg;
	struct dmb_msg req, m;
	int sock = accept4(fe->listen_fd, NULL, NULL, SOCK_CLOEXEC), ret;

	child_check(sock >= 0);
	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_HELLO);
	dmb_wire_msg_init(&m, DMB_OP_HELLO_REPLY, 0);
	m.serial = req.serial;
	m.u.hello_reply = (struct dmb_wire_hello_reply){
		.version = 1, .max_msg = DMB_WIRE_MAX_MSG, .max_fds = DMB_WIRE_MAX_FDS,
		.max_buffers = 1, .max_attachments = 1, .max_mappings = 1,
		.pid = (uint32_t)getpid() };
	child_check(rp_send(sock, &m) == 0);

	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_IMPORT);
	dmb_wire_msg_init(&m, DMB_OP_IMPORT_REPLY, 0);
	m.serial = req.serial;
	m.u.import_reply.buffer_id = 1;
	m.u.import_reply.size = 4096;
	m.u.import_reply.flags = O_RDWR;
	strcpy(m.u.import_reply.exp_name, "fake");
	child_check(rp_send(sock, &m) == 0);

	/* An event nobody asked for, then a perfectly good answer. */
	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_ATTACH);
	dmb_wire_msg_init(&m, fe->event, 1);
	child_check(rp_send(sock, &m) == 0);
	dmb_wire_msg_init(&m, DMB_OP_ATTACH_REPLY, 0);
	m.serial = req.serial;
	m.u.attach_reply.attachment_id = 1;
	/* The importer may have hung up on the event already. */
	ret = rp_send(sock, &m);
	child_check(ret == 0 || ret == -EPIPE || ret == -ECONNRESET);

	/* The importer hangs up: nothing else arrives first. */
	child_check(fake_recv(sock, &req) == 0);
	close(sock);
	return 0;
}

static void unsolicited_event_drops_the_exporter(void **state)
{
	struct fake_exporter fe = { .event = DMB_OP_MOVE_NOTIFY };
	char name[DMB_ENDPOINT_NAME_MAX];
	struct dmabuf_ctx *imp = tx_ctx_new(0);
	struct dmabuf_device *dev = tx_device(imp, "victim", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *att;
	struct dmabuf *px;
	int memfd;
	pid_t pid;

	snprintf(name, sizeof(name), "dmabuf-%d-fake%08x", (int)getpid(),
		 (unsigned int)rp_now_ms());
	fe.listen_fd = rp_listen_name(name);
	assert_true(fe.listen_fd >= 0);
	/* A buffer fd as the library would name and seal it. */
	memfd = rp_fake_buffer("fake", name, 4096, 0, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	assert_true(memfd >= 0);
	pid = harness_fork(fake_exporter_main, &fe);

	assert_int_equal(dmabuf_get(imp, memfd, &px), 0);
	/* The event arrives before the reply: the exporter broke the
	 * protocol, so it counts as gone (and its good reply is not used). */
	assert_int_equal(dmabuf_attach(px, dev, &att), -ENODEV);
	assert_int_equal(dmabuf_begin_cpu_access(px, DMABUF_FROM_DEVICE), -ENODEV);
	assert_int_equal(dmabuf_put(px), 0);
	dmabuf_ctx_destroy(imp);
	/* the fake exporter ends on the importer's hang-up */
	harness_guard_start("the fake exporter's end after the importer's context went", 60);
	assert_int_equal(harness_wait(pid), 0);
	harness_guard_done();
	close(memfd);
	close(fe.listen_fd);
}

/* ---- an older exporter, and a call nested in the handshake ---------------------- */

/*
 * A version 2 exporter (another process) that answers the HELLO only after
 * the importer's process has made a call to it from inside the wait for
 * that answer: a raw peer of the importer's own endpoint attaches the
 * importer's buffer Y, whose attach op calls dmabuf_get_info() on the
 * proxy of this exporter's buffer. Every request it gets must be of
 * version 2, and the held-back IMPORT must come before any request that
 * names the buffer, by the id this exporter gave it.
 */
struct old_exporter {
	int listen_fd, yfd, gate;
};

#define OLD_ID 7

static int old_recv(int sock, uint16_t op, struct dmb_msg *req)
{
	if (fake_recv(sock, req) != 1 || req->op != op || req->version != 2)
		return -1;
	return 0;
}

static int old_exporter_main(void *arg)
{
	const struct old_exporter *oe = arg;
	struct dmb_msg req, m, r;
	uint64_t yid;
	char g;
	int sock = accept4(oe->listen_fd, NULL, NULL, SOCK_CLOEXEC), raw;

	child_check(sock >= 0);
	child_check(fake_recv(sock, &req) == 1 && req.op == DMB_OP_HELLO &&
		    req.u.hello.max_version >= 2);
	/* Into the importer's process, while it waits for our answer. */
	raw = rp_connect(oe->yfd);
	child_check(raw >= 0);
	child_check(rp_hello(raw, NULL) == 0);
	child_check(rp_import(raw, NULL, oe->yfd, &yid) == 0);
	rp_attach_msg(&m, yid);
	child_check(rp_send(raw, &m) == 0);
	child_check(read(oe->gate, &g, 1) == 1); /* the nested call is made */

	dmb_wire_msg_init(&m, DMB_OP_HELLO_REPLY, 0);
	m.serial = req.serial;
	m.u.hello_reply = (struct dmb_wire_hello_reply){
		.version = 2, .max_msg = DMB_WIRE_MAX_MSG, .max_fds = DMB_WIRE_MAX_FDS,
		.max_buffers = 8, .max_attachments = 8, .max_mappings = 8,
		.pid = (uint32_t)getpid() };
	child_check(rp_send(sock, &m) == 0);

	/* The held-back IMPORT, again at version 2: no client id. */
	child_check(old_recv(sock, DMB_OP_IMPORT, &req) == 0 && req.u.import.buffer_id == 0);
	dmb_wire_msg_init(&m, DMB_OP_IMPORT_REPLY, 0);
	m.version = 2;
	m.serial = req.serial;
	m.u.import_reply.buffer_id = OLD_ID;
	m.u.import_reply.size = 4096;
	m.u.import_reply.flags = O_RDWR;
	strcpy(m.u.import_reply.exp_name, "old");
	child_check(rp_send(sock, &m) == 0);
	/* The nested call. */
	child_check(old_recv(sock, DMB_OP_DESCRIBE, &req) == 0 && req.u.id.id == OLD_ID);
	dmb_wire_msg_init(&m, DMB_OP_DESCRIBE_REPLY, 0);
	m.version = 2;
	m.serial = req.serial;
	m.u.describe_reply.size = 4096;
	m.u.describe_reply.flags = O_RDWR;
	strcpy(m.u.describe_reply.exp_name, "old");
	strcpy(m.u.describe_reply.name, "seen");
	child_check(rp_send(sock, &m) == 0);
	/* Y's attach returned: the raw peer's ATTACH is answered. */
	child_check(rp_recv(raw, NULL, &r) == 1 && r.op == DMB_OP_ATTACH_REPLY && r.status == 0);
	/* The outer call. */
	child_check(old_recv(sock, DMB_OP_ATTACH, &req) == 0 && req.u.attach.buffer_id == OLD_ID);
	dmb_wire_msg_init(&m, DMB_OP_ATTACH_REPLY, 0);
	m.version = 2;
	m.serial = req.serial;
	m.u.attach_reply.attachment_id = 1;
	child_check(rp_send(sock, &m) == 0);
	/* DETACH and RELEASE, one-way, then the hang-up. */
	child_check(old_recv(sock, DMB_OP_DETACH, &req) == 0 && req.u.id.id == 1 &&
		    (req.flags & DMB_WIRE_F_NO_REPLY));
	child_check(old_recv(sock, DMB_OP_RELEASE, &req) == 0 && req.u.id.id == OLD_ID &&
		    (req.flags & DMB_WIRE_F_NO_REPLY));
	child_check(fake_recv(sock, &req) == 0);
	close(raw);
	close(sock);
	return 0;
}

static struct dmabuf *old_proxy;
static int old_gate_w = -1, old_inner_ret = 1, old_inner_calls;
static char old_inner_name[DMABUF_NAME_LEN];

static int old_y_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	struct dmabuf_info info = { 0 };

	old_inner_calls++;
	if (write(old_gate_w, "g", 1) != 1)
		return -EIO;
	old_inner_ret = dmabuf_get_info(old_proxy, &info);
	strcpy(old_inner_name, info.name);
	return tx_attach(buf, att);
}

static const struct dmabuf_ops old_y_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = old_y_attach, .detach = tx_detach,
	.map = tx_map, .unmap = tx_unmap, .release = tx_release,
};

static void nested_call_in_handshake_with_old_exporter(void **state)
{
	char name[DMB_ENDPOINT_NAME_MAX];
	struct dmabuf_ctx *imp = tx_ctx_new(0);
	struct dmabuf_device *dev = tx_device(imp, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct test_exporter ty = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "y", .ops = &old_y_ops, .size = BUF_SIZE, .flags = O_RDWR,
		.priv = &ty,
	};
	struct old_exporter oe;
	struct dmabuf_attachment *att;
	struct dmabuf *y;
	int memfd, gate[2];
	pid_t pid;

	assert_int_equal(dmabuf_export(imp, &info, &y), 0);
	oe.yfd = dmabuf_fd(y, O_CLOEXEC);
	assert_true(oe.yfd >= 0);
	assert_int_equal(pipe2(gate, O_CLOEXEC), 0);
	oe.gate = gate[0];
	old_gate_w = gate[1];
	/* Not this process's pid: the import is held back, not a call. */
	snprintf(name, sizeof(name), "dmabuf-1-old%d-%08x", (int)getpid(),
		 (unsigned int)rp_now_ms());
	oe.listen_fd = rp_listen_name(name);
	assert_true(oe.listen_fd >= 0);
	memfd = rp_fake_buffer("old", name, 4096, 0, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	assert_true(memfd >= 0);
	pid = harness_fork(old_exporter_main, &oe);
	close(gate[0]);

	/* Answered from the fd, its IMPORT held back on the guess of
	 * version 3; the attach waits for the HELLO's answer. */
	assert_int_equal(dmabuf_get(imp, memfd, &old_proxy), 0);
	assert_int_equal(dmabuf_attach(old_proxy, dev, &att), 0);
	assert_int_equal(old_inner_calls, 1);
	assert_int_equal(old_inner_ret, 0);
	assert_string_equal(old_inner_name, "seen");
	assert_int_equal(ty.attach, 1);
	assert_int_equal(dmabuf_detach(old_proxy, att), 0);
	assert_int_equal(dmabuf_put(old_proxy), 0);
	assert_int_equal(dmabuf_put(y), 0);
	close(oe.yfd);
	dmabuf_ctx_destroy(imp);
	/* the old exporter ends on the importer's DETACH, RELEASE and hang-up */
	harness_guard_start("the old exporter's end after the importer's context went", 60);
	assert_int_equal(harness_wait(pid), 0);
	harness_guard_done();
	close(old_gate_w);
	close(memfd);
	close(oe.listen_fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(idle_device_goes_with_its_peer),
		harness_test(malformed_messages_close_the_connection),
		harness_test(handshake_is_enforced),
		harness_test(unknown_opcode_gets_eopnotsupp),
		harness_test(unsupported_request_keeps_the_connection),
		harness_test(fd_games_close_the_connection),
		harness_test(import_of_a_wrong_fd_is_einval),
		harness_test(forged_and_stale_ids_are_enoent),
		harness_test(wrong_direction_is_einval),
		harness_test(end_without_start_reaches_the_op),
		harness_test(cpu_brackets_left_open_are_ended_once),
		harness_test(peer_that_stops_reading_is_dropped),
		harness_test(one_way_requests_are_not_answered),
		harness_test(quiet_import_is_answered_only_with_news),
		harness_test(import_checks_any_fd_the_long_way),
		harness_test(flood_is_served_in_batches),
		harness_test(per_peer_limits_give_enospc),
		harness_test(unsolicited_event_drops_the_exporter),
		harness_test(nested_call_in_handshake_with_old_exporter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
