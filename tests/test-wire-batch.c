/* SPDX-License-Identifier: MIT */
/*
 * Version 5 packets (docs/protocol.md §1a): a client's packet may carry
 * several requests back to back. A raw peer on the exporter's endpoint (in
 * this process, so every fd it keeps shows in harness_count_fds()) sends
 * good ones, which run in order, and every kind of bad one, each the
 * protocol error a bad message in a packet of its own is: the peer is
 * dropped, every fd of the packet closed, what it held undone, and the
 * library's own importer still served. A version 4 peer may not pack.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "exporter.h"
#include "rawpeer.h"

#define PKT_BUF_SIZE (16 * 4096ull)

struct bx {
	struct dmabuf_ctx *exp;
	struct test_exporter tx;
	struct dmabuf *buf;
	int fd;
	int fds0;
};

static void bx_init(struct bx *b)
{
	memset(b, 0, sizeof(*b));
	b->exp = tx_ctx_new(0);
	b->buf = tx_export(b->exp, &b->tx, PKT_BUF_SIZE, O_RDWR, DMABUF_ALLOC_SYSTEM);
	b->fd = dmabuf_fd(b->buf, O_CLOEXEC);
	assert_true(b->fd >= 0);
	b->fds0 = harness_count_fds();
}

static void bx_fini(struct bx *b)
{
	assert_int_equal(dmabuf_put(b->buf), 0);
	close(b->fd);
	for (int i = 0; i < 600 && !b->tx.release; i++)
		dmabuf_ctx_dispatch_timeout(b->exp, 5);
	assert_int_equal(b->tx.release, 1);
	dmabuf_ctx_destroy(b->exp);
}

/* A raw peer that has said HELLO for exactly version @v. */
static int peer_at(struct bx *b, uint16_t v)
{
	struct dmb_msg m = { .op = DMB_OP_HELLO }, r;
	int sock = rp_connect(b->fd);

	assert_true(sock >= 0);
	m.u.hello.min_version = m.u.hello.max_version = v;
	m.u.hello.pid = (uint32_t)getpid();
	assert_int_equal(rp_call(sock, b->exp, &m, &r), 0);
	assert_int_equal(r.u.hello_reply.version, v);
	return sock;
}

/* Appends request @m, encoded at version @v, to the packet at @pkt + *len. */
static void put(uint8_t *pkt, size_t *len, struct dmb_msg *m, uint16_t v)
{
	int n;

	m->version = v;
	n = rp_encode(m, pkt + *len);
	assert_true(n > 0);
	*len += (size_t)n;
}

static struct dmb_msg import_msg(int fd, uint64_t *id)
{
	struct dmb_msg m = { .op = DMB_OP_IMPORT, .nfds = 1 };

	m.fds[0] = fd;
	rp_encode(&m, (uint8_t[DMB_WIRE_MAX_MSG]){ 0 }); /* its id and serial */
	*id = m.u.import.buffer_id;
	return m;
}

static struct dmb_msg id_msg(uint16_t op, uint64_t id, uint16_t flags)
{
	struct dmb_msg m = { .op = op, .flags = flags };

	m.u.id.id = id;
	return m;
}

/* Dispatches the exporter until this process is back at b->fds0 fds and
 * the exporter's ops balance, then checks both, and that the library's
 * importer still attaches and maps through it. */
static void still_serving(struct bx *b, const char *what)
{
	struct dmabuf_ctx *imp;
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf *px;
	int n = -1;

	for (int i = 0; i < 600; i++) {
		n = harness_count_fds();
		if (n == b->fds0 && b->tx.attach == b->tx.detach && b->tx.map == b->tx.unmap)
			break;
		dmabuf_ctx_dispatch_timeout(b->exp, 5);
	}
	if (n != b->fds0)
		fail_msg("%s: %d fd(s) before, %d after", what, b->fds0, n);
	assert_int_equal(b->tx.attach, b->tx.detach);
	assert_int_equal(b->tx.map, b->tx.unmap);
	imp = tx_ctx_new(0);
	dev = tx_device(imp, "after", 64, DMABUF_DEVICE_IOMMU, 0);
	assert_int_equal(dmabuf_get(imp, b->fd, &px), 0);
	assert_int_equal(dmabuf_attach(px, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_sg_table_get_size(sgt), PKT_BUF_SIZE);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(px, att), 0);
	assert_int_equal(dmabuf_put(px), 0);
	dmabuf_ctx_destroy(imp);
	assert_int_equal(b->tx.attach, b->tx.detach);
}

/* An exporter, a raw peer at version @v, and an IMPORT of its buffer for
 * that peer to send (*id: the buffer id it names). */
static int start(struct bx *b, uint16_t v, struct dmb_msg *imp, uint64_t *id)
{
	bx_init(b);
	*imp = import_msg(b->fd, id);
	return peer_at(b, v);
}

/* IMPORT (with its fd), ATTACH, DESCRIBE, RELEASE (one-way) in one packet:
 * answered in order, the RELEASE not at all, and the buffer gone after. */
static void packed_requests_run_in_order(void **state)
{
	struct dmb_msg imp, att, desc, rel, r, m;
	uint8_t pkt[DMB_WIRE_MAX_MSG];
	size_t len = 0;
	struct bx b;
	uint64_t id;
	int sock = start(&b, DMB_WIRE_VERSION_PACKED, &imp, &id);

	(void)state;
	put(pkt, &len, &imp, DMB_WIRE_VERSION_PACKED);
	rp_attach_msg(&att, id);
	put(pkt, &len, &att, DMB_WIRE_VERSION_PACKED);
	desc = id_msg(DMB_OP_DESCRIBE, id, 0);
	put(pkt, &len, &desc, DMB_WIRE_VERSION_PACKED);
	rel = id_msg(DMB_OP_RELEASE, id, DMB_WIRE_F_NO_REPLY);
	put(pkt, &len, &rel, DMB_WIRE_VERSION_PACKED);
	assert_int_equal(rp_send_raw(sock, pkt, len, &b.fd, 1, 0), 0);
	assert_int_equal(rp_reply(sock, b.exp, DMB_OP_IMPORT_REPLY, imp.serial, &r), 0);
	assert_true(r.u.import_reply.buffer_id == id);
	assert_int_equal(rp_reply(sock, b.exp, DMB_OP_ATTACH_REPLY, att.serial, &r), 0);
	assert_int_equal(b.tx.attach, 1);
	assert_int_equal(rp_reply(sock, b.exp, DMB_OP_DESCRIBE_REPLY, desc.serial, &r), 0);
	assert_true(r.u.describe_reply.size == PKT_BUF_SIZE);
	assert_int_equal(r.u.describe_reply.attachments, 1);
	/* released, with its attachment: the next request names nothing */
	m = id_msg(DMB_OP_DESCRIBE, id, 0);
	m.version = DMB_WIRE_VERSION_PACKED;
	assert_int_equal(rp_call(sock, b.exp, &m, &r), -ENOENT);
	assert_int_equal(b.tx.detach, 1);
	close(sock);
	still_serving(&b, "after a good packet");
	bx_fini(&b);
}

enum bad {
	LENGTH_PAST_END,
	LENGTH_BELOW_HEADER,
	FDS_MORE_THAN_HEADERS,
	FDS_FEWER_THAN_HEADERS,
	TRAILING_PARTIAL_HEADER,
	BAD_MAGIC_IN_THE_MIDDLE,
	BAD_LAST_AFTER_IMPORT,
	FDS_ON_THE_WRONG_MESSAGE,
	HELLO_PACKED,
	BAD__COUNT
};

static const char *const bad_names[BAD__COUNT] = {
	"a length past the packet's end",
	"a length below a header",
	"more fds than the headers say",
	"fewer fds than the headers say",
	"a trailing partial header",
	"bad magic in the middle",
	"a bad message after an IMPORT that ran",
	"the fd announced by the wrong message",
	"a HELLO packed with a request",
};

/*
 * IMPORT (fd), DESCRIBE, DESCRIBE in one packet, spoilt as @how says.
 * Returns the packet's length; *nfds fds of @fds go with it.
 */
static size_t bad_packet(struct bx *b, enum bad how, uint8_t *pkt, int *fds, size_t *nfds)
{
	struct dmb_msg imp, d1, d2;
	size_t len = 0, off1, off2;
	uint64_t id;

	imp = import_msg(b->fd, &id);
	put(pkt, &len, &imp, DMB_WIRE_VERSION_PACKED);
	off1 = len;
	d1 = id_msg(DMB_OP_DESCRIBE, id, 0);
	put(pkt, &len, &d1, DMB_WIRE_VERSION_PACKED);
	off2 = len;
	d2 = id_msg(DMB_OP_DESCRIBE, id, 0);
	put(pkt, &len, &d2, DMB_WIRE_VERSION_PACKED);
	fds[0] = dup(b->fd);
	fds[1] = dup(b->fd);
	assert_true(fds[0] >= 0 && fds[1] >= 0);
	*nfds = 1;
	switch (how) {
	case LENGTH_PAST_END:
		rp_put32(pkt + off2 + DMB_WIRE_HDR_LENGTH, (uint32_t)(len - off2 + 8));
		break;
	case LENGTH_BELOW_HEADER:
		rp_put32(pkt + off1 + DMB_WIRE_HDR_LENGTH, DMB_WIRE_HDR_SIZE - 4);
		break;
	case FDS_MORE_THAN_HEADERS:
		*nfds = 2;
		break;
	case FDS_FEWER_THAN_HEADERS:
		rp_put16(pkt + off1 + DMB_WIRE_HDR_NFDS, 1);
		break;
	case TRAILING_PARTIAL_HEADER:
		memcpy(pkt + len, pkt + off1, DMB_WIRE_HDR_SIZE - 1);
		len += DMB_WIRE_HDR_SIZE - 1;
		break;
	case BAD_MAGIC_IN_THE_MIDDLE:
		pkt[off1 + DMB_WIRE_HDR_MAGIC] ^= 0xff;
		break;
	case BAD_LAST_AFTER_IMPORT:
		rp_put64(pkt + off2 + DMB_WIRE_BODY, 0); /* id 0 */
		break;
	case FDS_ON_THE_WRONG_MESSAGE:
		rp_put16(pkt + DMB_WIRE_HDR_NFDS, 0);
		rp_put16(pkt + off1 + DMB_WIRE_HDR_NFDS, 1);
		break;
	case HELLO_PACKED:
	case BAD__COUNT:
		break;
	}
	return len;
}

static void bad_packets_drop_the_peer(void **state)
{
	uint8_t pkt[DMB_WIRE_MAX_MSG];
	int fds[2];
	struct bx b;

	(void)state;
	bx_init(&b);
	for (int how = 0; how < BAD__COUNT; how++) {
		size_t len, nfds;
		int sock;

		if (how == HELLO_PACKED) {
			struct dmb_msg h = { .op = DMB_OP_HELLO }, d;

			sock = rp_connect(b.fd);
			assert_true(sock >= 0);
			h.u.hello.min_version = h.u.hello.max_version = DMB_WIRE_VERSION_PACKED;
			h.u.hello.pid = (uint32_t)getpid();
			len = 0;
			put(pkt, &len, &h, DMB_WIRE_VERSION_BASE);
			d = id_msg(DMB_OP_DESCRIBE, 1, 0);
			put(pkt, &len, &d, DMB_WIRE_VERSION_PACKED);
			fds[0] = fds[1] = -1;
			nfds = 0;
		} else {
			sock = peer_at(&b, DMB_WIRE_VERSION_PACKED);
			len = bad_packet(&b, (enum bad)how, pkt, fds, &nfds);
		}
		assert_int_equal(rp_send_raw(sock, pkt, len, fds, nfds, 0), 0);
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		/* at most the IMPORT's answer, then the end */
		if (rp_expect_closed(sock, b.exp) < 0)
			fail_msg("%s: the exporter kept the peer", bad_names[how]);
		close(sock);
		still_serving(&b, bad_names[how]);
	}
	bx_fini(&b);
}

/* Version 4 is one message per packet: a packed one is the framing error
 * it always was; unpacked requests work as ever. */
static void version_4_peer_may_not_pack(void **state)
{
	struct dmb_msg imp, d, r;
	uint8_t pkt[DMB_WIRE_MAX_MSG];
	size_t len = 0;
	struct bx b;
	uint64_t id;
	int sock = start(&b, DMB_WIRE_VERSION_PACKED - 1, &imp, &id);

	(void)state;
	imp.version = DMB_WIRE_VERSION_PACKED - 1;
	assert_int_equal(rp_call(sock, b.exp, &imp, &r), 0);
	d = id_msg(DMB_OP_DESCRIBE, id, 0);
	d.version = DMB_WIRE_VERSION_PACKED - 1;
	assert_int_equal(rp_call(sock, b.exp, &d, &r), 0);
	d = id_msg(DMB_OP_DESCRIBE, id, 0);
	put(pkt, &len, &d, DMB_WIRE_VERSION_PACKED - 1);
	d = id_msg(DMB_OP_DESCRIBE, id, 0);
	put(pkt, &len, &d, DMB_WIRE_VERSION_PACKED - 1);
	assert_int_equal(rp_send_raw(sock, pkt, len, NULL, 0, 0), 0);
	assert_int_equal(rp_expect_closed(sock, b.exp), 0);
	close(sock);
	still_serving(&b, "a packed packet at version 4");
	bx_fini(&b);
}

/*
 * Order across a nested dispatch. The exporter's attach op serves its own
 * context again (as an op that calls into another process's buffer does
 * while it waits); that nested frame takes the messages of the same packet
 * that follow the ATTACH, then the packets read with it and after it, in
 * the order they were sent, before the op returns. So every message of a
 * packet is begun in order, each the next one, also when a handler
 * re-enters dispatch (docs/design.md §8); only the ATTACH's reply, sent
 * when its op returns, comes after the replies of what ran inside it.
 */
static struct dmabuf_ctx *nest_ctx;
static char nest_log[32];
static size_t nest_len;
static int nest_handled = -1;

static void nest_note(char c)
{
	if (nest_len + 1 < sizeof(nest_log))
		nest_log[nest_len++] = c;
}

static int nest_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	nest_note('A');
	if (nest_handled < 0)
		nest_handled = dmabuf_ctx_dispatch(nest_ctx);
	nest_note('a');
	return tx_attach(buf, att);
}

static int nest_begin(struct dmabuf *buf, enum dmabuf_direction dir)
{
	nest_note('B');
	return tx_begin(buf, dir);
}

static int nest_end(struct dmabuf *buf, enum dmabuf_direction dir)
{
	nest_note('E');
	return tx_end(buf, dir);
}


#define NEST_LATER 5 /* packets after the packed one: more than one read takes */

static void nested_dispatch_keeps_the_order(void **state)
{
	struct dmb_msg imp, att, beg, end, later[NEST_LATER], r;
	uint64_t want[3 + NEST_LATER + 1], id;
	uint8_t pkt[DMB_WIRE_MAX_MSG];
	size_t len = 0, n = 0;
	struct bx b;
	int sock;

	/* tx_ops, with the three ops that note their turn (static: the
	 * buffer keeps the pointer) */
	static struct dmabuf_ops nest_ops;

	(void)state;
	nest_ops = tx_ops;
	nest_ops.attach = nest_attach;
	nest_ops.begin_cpu_access = nest_begin;
	nest_ops.end_cpu_access = nest_end;
	memset(&b, 0, sizeof(b));
	b.exp = nest_ctx = tx_ctx_new(0);
	b.buf = tx_export_ops(b.exp, &b.tx, &nest_ops, PKT_BUF_SIZE);
	b.fd = dmabuf_fd(b.buf, O_CLOEXEC);
	assert_true(b.fd >= 0);
	b.fds0 = harness_count_fds();
	nest_len = 0;
	nest_handled = -1;
	imp = import_msg(b.fd, &id);
	sock = peer_at(&b, DMB_WIRE_VERSION_PACKED);

	/* IMPORT, ATTACH, BEGIN, END in one packet, then DESCRIBEs in packets
	 * of their own, all sent before the exporter reads any */
	put(pkt, &len, &imp, DMB_WIRE_VERSION_PACKED);
	rp_attach_msg(&att, id);
	put(pkt, &len, &att, DMB_WIRE_VERSION_PACKED);
	beg = (struct dmb_msg){ .op = DMB_OP_BEGIN_CPU_ACCESS };
	beg.u.cpu_access.buffer_id = id;
	beg.u.cpu_access.dir = DMABUF_FROM_DEVICE;
	put(pkt, &len, &beg, DMB_WIRE_VERSION_PACKED);
	end = beg;
	end.op = DMB_OP_END_CPU_ACCESS;
	end.serial = 0;
	put(pkt, &len, &end, DMB_WIRE_VERSION_PACKED);
	assert_int_equal(rp_send_raw(sock, pkt, len, &b.fd, 1, 0), 0);
	for (int i = 0; i < NEST_LATER; i++) {
		later[i] = id_msg(DMB_OP_DESCRIBE, id, 0);
		later[i].version = DMB_WIRE_VERSION_PACKED;
		assert_int_equal(rp_send(sock, &later[i]), 0);
	}

	/* the replies, in the order the handlers finished */
	want[n++] = imp.serial;
	want[n++] = beg.serial;
	want[n++] = end.serial;
	for (int i = 0; i < NEST_LATER; i++)
		want[n++] = later[i].serial;
	want[n++] = att.serial;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(rp_recv(sock, b.exp, &r), 1);
		if (r.serial != want[i])
			fail_msg("reply %zu: serial %llu (op 0x%x), want %llu; ops ran as %.*s", i,
				 (unsigned long long)r.serial, r.op, (unsigned long long)want[i],
				 (int)nest_len, nest_log);
		assert_int_equal(r.status, 0);
	}
	/* the nested frame ran the packet's rest: BEGIN and END inside the
	 * ATTACH's op, each once, in the order sent */
	assert_true(nest_handled >= 1);
	assert_int_equal(nest_len, 4);
	assert_memory_equal(nest_log, "ABEa", 4);
	assert_int_equal(b.tx.attach, 1);
	assert_int_equal(b.tx.begin, 1);
	assert_int_equal(b.tx.end, 1);
	close(sock);
	still_serving(&b, "after a nested dispatch");
	bx_fini(&b);
	nest_ctx = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(packed_requests_run_in_order),
		harness_test(bad_packets_drop_the_peer),
		harness_test(version_4_peer_may_not_pack),
		harness_test(nested_dispatch_keeps_the_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
