/* SPDX-License-Identifier: MIT */
/*
 * Wire codec: every message round-trips bit-exactly, and every rejection
 * path of the decoder gives its documented errno.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "wire.h"

#define DMB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Fd numbers that are not open: the codec must only copy them. */
static const int FDS[DMB_WIRE_MAX_FDS + 2] = { 901, 902, 903, 904, 905, 906 };

#define p16 dmb_wire_put16
#define p32 dmb_wire_put32
#define p64 dmb_wire_put64

static struct dmb_msg blank(uint16_t op, uint64_t serial)
{
	struct dmb_msg m;

	memset(&m, 0, sizeof(m));
	for (unsigned i = 0; i < DMB_WIRE_MAX_FDS; i++)
		m.fds[i] = -1;
	m.op = op;
	m.serial = serial;
	m.version = (op == DMB_OP_HELLO || op == DMB_OP_HELLO_REPLY)
			    ? DMB_WIRE_VERSION_BASE : DMB_WIRE_VERSION_MAX;
	return m;
}

static void set_fds(struct dmb_msg *m, unsigned n)
{
	m->nfds = n;
	for (unsigned i = 0; i < n; i++)
		m->fds[i] = FDS[i];
}

/* A valid message for every opcode (success replies with payload). */
static struct dmb_msg sample(uint16_t op)
{
	const struct dmb_wire_desc *d = dmb_wire_op_desc(op);
	struct dmb_msg m = blank(op, d && d->kind == DMB_WIRE_EVENT
					     ? 0 : 0x1122334455667788ull);

	switch (op) {
	case DMB_OP_HELLO:
		m.u.hello = (struct dmb_wire_hello){ 1, 3, 0, 4242 };
		break;
	case DMB_OP_IMPORT:
		set_fds(&m, 1);
		m.u.import.buffer_id = DMB_WIRE_CLIENT_ID_BIT | 0x42;
		break;
	case DMB_OP_RELEASE:
	case DMB_OP_DETACH:
	case DMB_OP_DESCRIBE:
	case DMB_OP_PIN:
	case DMB_OP_UNPIN:
	case DMB_OP_MOVE_NOTIFY:
		m.u.id.id = 0xdeadbeef01ull;
		break;
	case DMB_OP_ATTACH:
		m.u.attach.buffer_id = 7;
		strcpy(m.u.attach.name, "camera0");
		m.u.attach.dma_mask_bits = 32;
		m.u.attach.dev_flags = DMABUF_DEVICE_IOMMU | DMABUF_DEVICE_P2P;
		m.u.attach.attach_flags = DMB_WIRE_ATTACH_DYNAMIC;
		m.u.attach.max_segment_size = 65536;
		m.u.attach.segment_boundary = 0xffffffff;
		m.u.attach.alignment = 4096;
		break;
	case DMB_OP_MAP:
	case DMB_OP_UNMAP:
		m.u.map.id = 9;
		m.u.map.dir = DMABUF_FROM_DEVICE;
		break;
	case DMB_OP_BEGIN_CPU_ACCESS:
	case DMB_OP_END_CPU_ACCESS:
		m.u.cpu_access.buffer_id = 3;
		m.u.cpu_access.dir = DMABUF_BIDIRECTIONAL;
		break;
	case DMB_OP_SET_NAME:
		m.u.set_name.buffer_id = 3;
		strcpy(m.u.set_name.name, "0123456789012345678901234567890");
		break;
	case DMB_OP_FENCE_ATTACH:
		m.u.fence_attach.buffer_id = 3;
		m.u.fence_attach.usage = 3;
		set_fds(&m, 1);
		break;
	case DMB_OP_FENCE_EXPORT:
		m.u.fence_export.buffer_id = 3;
		m.u.fence_export.flags = DMB_WIRE_FENCE_READ | DMB_WIRE_FENCE_WRITE;
		break;
	case DMB_OP_GET_BACKING:
		m.u.get_backing.buffer_id = 3;
		m.u.get_backing.first = 32;
		break;
	case DMB_OP_HELLO_REPLY:
		m.u.hello_reply = (struct dmb_wire_hello_reply){
			.version = 1, .max_msg = DMB_WIRE_MAX_MSG,
			.max_fds = DMB_WIRE_MAX_FDS, .max_buffers = 1024,
			.max_attachments = 4096, .max_mappings = 8192, .pid = 77 };
		break;
	case DMB_OP_IMPORT_REPLY: {
		struct dmb_wire_import_reply *r = &m.u.import_reply;

		r->buffer_id = 5;
		r->size = 5 * 4096;
		r->flags = O_RDWR;
		r->info_flags = DMB_WIRE_INFO_NAME_SET;
		strcpy(r->exp_name, "udmabuf");
		strcpy(r->name, "frame");
		r->backing.total = 40;
		r->backing.count = 3;
		r->backing.r[0] = (struct dmb_wire_range){ 0, 0, 4096 };
		r->backing.r[1] = (struct dmb_wire_range){ 1, 8192, 8192 };
		r->backing.r[2] = (struct dmb_wire_range){ 0, 4096, 8192 };
		set_fds(&m, 2);
		break;
	}
	case DMB_OP_ATTACH_REPLY:
		m.u.attach_reply.attachment_id = 11;
		break;
	case DMB_OP_MAP_REPLY: {
		struct dmb_wire_map_reply *r = &m.u.map_reply;

		r->mapping_id = 12;
		r->size = 3 * 4096;
		r->count = 2;
		r->sg[0] = (struct dmabuf_sg_entry){ 0, 4096, 0x100000 };
		r->sg[1] = (struct dmabuf_sg_entry){ 4096, 8192, 0x7000 };
		break;
	}
	case DMB_OP_DESCRIBE_REPLY: {
		struct dmb_wire_describe_reply *r = &m.u.describe_reply;

		r->size = 1ull << 30;
		r->flags = O_RDONLY;
		r->info_flags = DMB_WIRE_INFO_MASK;
		r->attachments = 2;
		r->mappings = 1;
		r->importers = 3;
		r->vmap_count = 1;
		strcpy(r->exp_name, "system");
		break;
	}
	case DMB_OP_FENCE_EXPORT_REPLY:
	case DMB_OP_CACHE_OPEN:
	case DMB_OP_CACHE_OPEN_REPLY:
		set_fds(&m, 1);
		break;
	case DMB_OP_GET_BACKING_REPLY:
		m.u.backing.total = 40;
		m.u.backing.first = 32;
		m.u.backing.count = 8;
		for (unsigned i = 0; i < 8; i++)
			m.u.backing.r[i] = (struct dmb_wire_range){
				i % 4, i * 4096ull, 4096 };
		set_fds(&m, 4);
		break;
	default:
		break;	/* status-only replies */
	}
	return m;
}

/* Every opcode this version knows, from the codec's own table. */
static size_t all_ops(const struct dmb_wire_desc **table)
{
	size_t n;

	*table = dmb_wire_op_table(&n);
	return n;
}

/* By the class bits, so it works for opcodes the table does not know. */
static enum dmb_wire_side receiver_of(uint16_t op)
{
	return (op & (DMB_WIRE_OP_REPLY | DMB_WIRE_OP_EVENT)) ? DMB_WIRE_CLIENT
							      : DMB_WIRE_SERVER;
}

static enum dmb_wire_side sender_of(uint16_t op)
{
	return receiver_of(op) == DMB_WIRE_SERVER ? DMB_WIRE_CLIENT
						  : DMB_WIRE_SERVER;
}

static size_t enc(const struct dmb_msg *m, uint8_t *buf)
{
	int n = dmb_wire_encode(buf, DMB_WIRE_MAX_MSG, m);

	if (n <= 0)
		fail_msg("encode of %s failed: %d", dmb_wire_op_name(m->op), n);
	return (size_t)n;
}

/* Decodes buf as the natural receiver with the message's own fd count. */
static int dec(const uint8_t *buf, size_t len, unsigned nfds, uint16_t op,
	       struct dmb_msg *out)
{
	return dmb_wire_decode(buf, len, FDS, nfds, receiver_of(op), out);
}

/* ---- round trips ------------------------------------------------------------- */

static void check_round_trip(const struct dmb_msg *m)
{
	uint8_t buf[DMB_WIRE_MAX_MSG], again[DMB_WIRE_MAX_MSG];
	struct dmb_msg out;
	size_t len = enc(m, buf);

	/* A decode clears the fixed part only: the records past the count
	 * are the caller's (sample() zeroes them, so do it here too). */
	memset(&out, 0, sizeof(out));
	assert_int_equal(dmb_wire_decode(buf, len, FDS, m->nfds,
					 receiver_of(m->op), &out), 0);
	assert_memory_equal(&out, m, sizeof(out));
	assert_int_equal(enc(&out, again), len);
	assert_memory_equal(again, buf, len);
	/* Header fields where docs/protocol.md puts them. */
	assert_int_equal(buf[DMB_WIRE_HDR_MAGIC], 'D');
	assert_int_equal(buf[DMB_WIRE_HDR_MAGIC + 3], 'W');
	assert_int_equal(dmb_wire_get32(buf + DMB_WIRE_HDR_LENGTH), len);
	assert_int_equal(dmb_wire_get16(buf + DMB_WIRE_HDR_NFDS), m->nfds);
	assert_int_equal(dmb_wire_get16(buf + DMB_WIRE_HDR_OP), m->op);
	assert_int_equal(dmb_wire_get64(buf + DMB_WIRE_HDR_SERIAL), m->serial);
}

static void test_round_trip_all(void **state)
{
	unsigned fds_before = (unsigned)harness_count_fds();
	const struct dmb_wire_desc *t;
	size_t n = all_ops(&t);

	for (size_t i = 0; i < n; i++) {
		struct dmb_msg m = sample(t[i].op);

		check_round_trip(&m);
		assert_string_not_equal(dmb_wire_op_name(t[i].op), "?");
		/* The sample's fds are the descriptor's, where it fixes them. */
		if (t[i].nfds != DMB_WIRE_FDS_VARIABLE)
			assert_int_equal(m.nfds, t[i].nfds);
	}
	/* The codec never opened or closed anything. */
	assert_int_equal(harness_count_fds(), fds_before);
}

static void test_round_trip_error_replies(void **state)
{
	uint8_t buf[DMB_WIRE_MAX_MSG];
	struct dmb_msg out;

	for (uint16_t op = DMB_OP_HELLO; op <= DMB_OP__LAST_REQUEST; op++) {
		int n = dmb_wire_encode_error(buf, sizeof(buf), op, 99, -ENOENT);

		assert_int_equal(n, DMB_WIRE_REPLY_PAYLOAD);
		assert_int_equal(dmb_wire_decode(buf, (size_t)n, NULL, 0,
						 DMB_WIRE_CLIENT, &out), 0);
		assert_int_equal(out.op, DMB_WIRE_OP_REPLY | op);
		assert_int_equal(out.status, -ENOENT);
		assert_int_equal(out.serial, 99);
		assert_int_equal(out.nfds, 0);
	}
	assert_int_equal(dmb_wire_encode_error(buf, sizeof(buf), DMB_OP_MAP, 1, 0),
			 -EINVAL);
	assert_int_equal(dmb_wire_encode_error(buf, sizeof(buf), DMB_OP_MAP, 1, -5000),
			 -EINVAL);
	assert_int_equal(dmb_wire_encode_error(buf, sizeof(buf), DMB_OP_MAP_REPLY, 1,
					       -EINVAL), -EINVAL);
	assert_int_equal(dmb_wire_encode_error(buf, sizeof(buf), DMB_OP_MAP, 0,
					       -EINVAL), -EINVAL);
}

static void test_round_trip_variants(void **state)
{
	struct dmb_msg m;

	/* IMPORT_REPLY whose bytes live in the dma-buf file: no ranges. */
	m = sample(DMB_OP_IMPORT_REPLY);
	memset(&m.u.import_reply.backing, 0, sizeof(m.u.import_reply.backing));
	set_fds(&m, 0);
	m.fds[0] = m.fds[1] = -1;
	check_round_trip(&m);

	/* MAP_REPLY with entries in a memfd. */
	m = sample(DMB_OP_MAP_REPLY);
	memset(m.u.map_reply.sg, 0, sizeof(m.u.map_reply.sg));
	m.u.map_reply.flags = DMB_WIRE_MAP_SG_MEMFD;
	m.u.map_reply.count = 3;
	set_fds(&m, 1);
	check_round_trip(&m);

	/* The most inline sg entries one message holds. */
	m = sample(DMB_OP_MAP_REPLY);
	m.u.map_reply.count = DMB_WIRE_MAX_INLINE_SG;
	m.u.map_reply.size = DMB_WIRE_MAX_INLINE_SG * 4096ull;
	for (unsigned i = 0; i < DMB_WIRE_MAX_INLINE_SG; i++)
		m.u.map_reply.sg[i] = (struct dmabuf_sg_entry){
			i * 4096ull, 4096, (1ull << 40) - (i + 1) * 4096ull };
	check_round_trip(&m);

	/* Empty names, a full-length name, and the default version. */
	m = sample(DMB_OP_SET_NAME);
	memset(m.u.set_name.name, 0, sizeof(m.u.set_name.name));
	check_round_trip(&m);
	m = sample(DMB_OP_RELEASE);
	m.version = 0;
	{
		uint8_t buf[DMB_WIRE_MAX_MSG];
		struct dmb_msg out;
		size_t len = enc(&m, buf);

		assert_int_equal(dec(buf, len, 0, m.op, &out), 0);
		assert_int_equal(out.version, DMB_WIRE_VERSION_MAX);
	}
}

/* One descriptor per opcode, consistent with the opcode numbering, the
 * names, the bodies and the fd counts the codec enforces. */
/*
 * A decode clears DMB_WIRE_MSG_FIXED bytes only (not the 4 KiB struct): a
 * struct full of garbage must come out as one that was zeroed, in those
 * bytes and in the records up to their count, whatever the opcode and
 * version (fields an older version does not carry read as zero), and a
 * rejected message as a blank one.
 */
static void decode_both(const uint8_t *buf, size_t len, unsigned nfds, uint16_t op,
			int want)
{
	static struct dmb_msg zero, dirty;

	memset(&zero, 0, sizeof(zero));
	memset(&dirty, 0xa5, sizeof(dirty));
	assert_int_equal(dec(buf, len, nfds, op, &zero), want);
	assert_int_equal(dec(buf, len, nfds, op, &dirty), want);
	assert_memory_equal(&zero, &dirty, DMB_WIRE_MSG_FIXED);
	if (want == 0 && op == DMB_OP_MAP_REPLY)
		assert_memory_equal(zero.u.map_reply.sg, dirty.u.map_reply.sg,
				    zero.u.map_reply.count * sizeof(zero.u.map_reply.sg[0]));
	if (want == 0 && (op == DMB_OP_IMPORT_REPLY || op == DMB_OP_GET_BACKING_REPLY)) {
		const struct dmb_wire_ranges *z = op == DMB_OP_IMPORT_REPLY
			? &zero.u.import_reply.backing : &zero.u.backing;
		const struct dmb_wire_ranges *d = op == DMB_OP_IMPORT_REPLY
			? &dirty.u.import_reply.backing : &dirty.u.backing;

		/* field by field: a record's padding is never written */
		for (uint32_t i = 0; i < z->count; i++) {
			assert_int_equal(z->r[i].fd_index, d->r[i].fd_index);
			assert_int_equal(z->r[i].offset, d->r[i].offset);
			assert_int_equal(z->r[i].size, d->r[i].size);
		}
	}
	if (want < 0) {
		assert_int_equal(dirty.nfds, 0);
		assert_int_equal(dirty.status, 0);
		for (unsigned i = 0; i < DMB_WIRE_MAX_FDS; i++)
			assert_int_equal(dirty.fds[i], -1);
	}
}

static void test_decode_over_garbage(void **state)
{
	const struct dmb_wire_desc *t;
	size_t n = all_ops(&t), decoded = 0;

	for (size_t i = 0; i < n; i++) {
		for (uint16_t v = DMB_WIRE_VERSION_MIN; v <= DMB_WIRE_VERSION_MAX; v++) {
			struct dmb_msg m = sample(t[i].op);
			uint8_t buf[DMB_WIRE_MAX_MSG];
			int len;

			if (t[i].base_version && v != DMB_WIRE_VERSION_BASE)
				continue;
			m.version = v;
			if (t[i].op == DMB_OP_IMPORT && v < DMB_WIRE_VERSION_CLIENT_IDS)
				m.u.import.buffer_id = 0; /* no room for it */
			len = dmb_wire_encode(buf, sizeof(buf), &m);
			if (len <= 0)
				continue; /* not a message of that version */
			decode_both(buf, (size_t)len, m.nfds, m.op, 0);
			/* Cut short: rejected, and nothing handed on. */
			decode_both(buf, (size_t)len - 1, m.nfds, m.op, -EBADMSG);
			decoded++;
		}
	}
	assert_true(decoded > n * 4);
}

static void test_descriptor_table(void **state)
{
	static const uint16_t not_ops[] = {
		0x0000, DMB_OP__LAST_REQUEST + 1, 0x00ff, 0x8000,
		DMB_WIRE_OP_REPLY | (DMB_OP__LAST_REQUEST + 1), 0x4000,
		DMB_WIRE_OP_EVENT | 1, DMB_OP__LAST_EVENT + 1, 0xc001, 0xffff,
	};
	const struct dmb_wire_desc *t;
	size_t n = all_ops(&t), events = 0;

	for (size_t i = 0; i < n; i++) {
		const struct dmb_wire_desc *d = &t[i];
		struct dmb_msg m = sample(d->op);
		uint8_t buf[DMB_WIRE_MAX_MSG];
		size_t len = enc(&m, buf);

		assert_ptr_equal(dmb_wire_op_desc(d->op), d);
		assert_string_equal(dmb_wire_op_name(d->op), d->name);
		for (size_t j = 0; j < i; j++) {
			assert_int_not_equal(t[j].op, d->op);
			assert_string_not_equal(t[j].name, d->name);
		}
		assert_int_equal(receiver_of(d->op),
				 d->kind == DMB_WIRE_REQUEST ? DMB_WIRE_SERVER
							     : DMB_WIRE_CLIENT);
		if (d->kind == DMB_WIRE_REQUEST) {
			/* every request has its reply, named after it */
			const struct dmb_wire_desc *r =
				dmb_wire_op_desc(d->op | DMB_WIRE_OP_REPLY);
			char want[64];

			assert_non_null(r);
			assert_int_equal(r->kind, DMB_WIRE_REPLY);
			snprintf(want, sizeof(want), "%s_REPLY", d->name);
			assert_string_equal(r->name, want);
			assert_int_equal(r->reserved, d->reserved);
		}
		events += d->kind == DMB_WIRE_EVENT;
		assert_int_equal(d->base_version,
				 d->op == DMB_OP_HELLO || d->op == DMB_OP_HELLO_REPLY);
		assert_int_equal(dmb_wire_get16(buf + DMB_WIRE_HDR_VERSION),
				 d->base_version ? DMB_WIRE_VERSION_BASE
						 : DMB_WIRE_VERSION_MAX);
		if (d->kind == DMB_WIRE_REPLY || d->target == DMB_WIRE_TARGET_NONE) {
			assert_int_equal(dmb_wire_target_id(&m), 0);
			continue;
		}
		/* The target id is the body's first field, and never 0. */
		assert_int_not_equal(dmb_wire_target_id(&m), 0);
		assert_int_equal(dmb_wire_get64(buf + DMB_WIRE_BODY), dmb_wire_target_id(&m));
		p64(buf + DMB_WIRE_BODY, 0);
		assert_int_equal(dec(buf, len, m.nfds, m.op, &m), -EPROTO);
		/* msg_init puts it there too */
		dmb_wire_msg_init(&m, d->op, 0x1234567890ull);
		assert_int_equal(m.op, d->op);
		assert_int_equal(m.nfds, 0);
		assert_int_equal(m.fds[0], -1);
		assert_int_equal(dmb_wire_target_id(&m), 0x1234567890ull);
	}
	assert_int_equal(n, 2 * DMB_OP__LAST_REQUEST + events);
	assert_int_equal(events, DMB_OP__LAST_EVENT - DMB_OP__FIRST_EVENT + 1);
	for (size_t i = 0; i < DMB_ARRAY_SIZE(not_ops); i++)
		assert_null(dmb_wire_op_desc(not_ops[i]));
}

/* The exact bytes of one message: little-endian, documented offsets. */
static void test_golden_bytes(void **state)
{
	static const uint8_t want[] = {
		'D', 'M', 'B', 'W',		/* magic */
		8, 0,				/* version */
		0x03, 0x00,			/* RELEASE */
		32, 0, 0, 0,			/* length */
		0, 0,				/* nfds */
		0, 0,				/* reserved */
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* serial */
		0x01, 0xef, 0xbe, 0xad, 0xde, 0, 0, 0,	/* buffer id */
	};
	struct dmb_msg m = sample(DMB_OP_RELEASE);
	uint8_t buf[DMB_WIRE_MAX_MSG];

	assert_int_equal(enc(&m, buf), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
}

/* Version 3 IMPORT carries the id the client chose, at the end of the
 * body; version 1 and 2 bodies have none. */
static void test_import_client_id(void **state)
{
	static const uint8_t want[] = {
		'D', 'M', 'B', 'W', 8, 0, 0x02, 0x00,	/* magic, version, IMPORT */
		40, 0, 0, 0, 1, 0, 0, 0,		/* length, nfds, flags */
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* serial */
		0, 0, 0, 0, 0, 0, 0, 0,			/* flags, reserved */
		0x42, 0, 0, 0, 0, 0, 0, 0x80,		/* buffer id */
	};
	struct dmb_msg m = sample(DMB_OP_IMPORT), out;
	uint8_t buf[DMB_WIRE_MAX_MSG];
	size_t len;

	assert_int_equal(enc(&m, buf), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(dec(buf, sizeof(want), 1, m.op, &out), 0);
	assert_true(out.u.import.buffer_id == (DMB_WIRE_CLIENT_ID_BIT | 0x42));
	/* an id without the client bit, or none */
	buf[sizeof(want) - 1] = 0;
	assert_int_equal(dec(buf, sizeof(want), 1, m.op, &out), -EPROTO);
	/* the version 2 body, 8 bytes, at version 4 */
	p32(buf + DMB_WIRE_HDR_LENGTH, 32);
	assert_int_equal(dec(buf, 32, 1, m.op, &out), -EBADMSG);
	/* version 2: no id, and an id is refused */
	m.version = 2;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	m.u.import.buffer_id = 0;
	len = enc(&m, buf);
	assert_int_equal(len, 32);
	assert_int_equal(dec(buf, len, 1, m.op, &out), 0);
	assert_true(out.u.import.buffer_id == 0);

	/* QUIET: on IMPORT, from version 3 only */
	m = sample(DMB_OP_IMPORT);
	m.flags = DMB_WIRE_F_QUIET;
	len = enc(&m, buf);
	assert_int_equal(dmb_wire_get16(buf + DMB_WIRE_HDR_FLAGS), DMB_WIRE_F_QUIET);
	assert_int_equal(dec(buf, len, 1, m.op, &out), 0);
	assert_int_equal(out.flags, DMB_WIRE_F_QUIET);
	p16(buf + DMB_WIRE_HDR_FLAGS, DMB_WIRE_F_QUIET | DMB_WIRE_F_NO_REPLY);
	assert_int_equal(dec(buf, len, 1, m.op, &out), -EPROTO);
	m.version = 2;
	m.u.import.buffer_id = 0;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	m = sample(DMB_OP_ATTACH);
	m.flags = DMB_WIRE_F_QUIET;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	m = sample(DMB_OP_IMPORT_REPLY);
	m.flags = DMB_WIRE_F_QUIET;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
}

/* ---- rejections --------------------------------------------------------------- */

/* Encodes sample(op), lets mutate() change the bytes, decodes. */
/* NO_REPLY (version 2): only on the requests whose kernel counterpart
 * returns void, only from version 2, and no other header flag. */
static void test_no_reply_flag(void **state)
{
	static const uint16_t one_way[] = { DMB_OP_RELEASE, DMB_OP_DETACH, DMB_OP_UNMAP,
					    DMB_OP_UNPIN };
	uint8_t buf[DMB_WIRE_MAX_MSG];
	struct dmb_msg m, out;
	size_t len;

	for (size_t i = 0; i < DMB_ARRAY_SIZE(one_way); i++) {
		m = sample(one_way[i]);
		m.flags = DMB_WIRE_F_NO_REPLY;
		len = enc(&m, buf);
		assert_int_equal(buf[DMB_WIRE_HDR_FLAGS], DMB_WIRE_F_NO_REPLY);
		assert_int_equal(buf[DMB_WIRE_HDR_FLAGS + 1], 0);
		assert_int_equal(dec(buf, len, 0, m.op, &out), 0);
		assert_int_equal(out.flags, DMB_WIRE_F_NO_REPLY);
		/* not in version 1 */
		m.version = 1;
		assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
		m.version = DMB_WIRE_VERSION_MAX;
		len = enc(&m, buf);
		p16(buf + DMB_WIRE_HDR_VERSION, 1);
		assert_int_equal(dec(buf, len, 0, m.op, &out), -EPROTO);
		/* an undefined flag */
		len = enc(&m, buf);
		p16(buf + DMB_WIRE_HDR_FLAGS, DMB_WIRE_F_NO_REPLY | 2);
		assert_int_equal(dec(buf, len, 0, m.op, &out), -EPROTO);
	}
	/* a request that must be answered, and a reply */
	for (uint16_t op = DMB_OP_HELLO; op <= DMB_OP__LAST_REQUEST; op++) {
		const struct dmb_wire_desc *d = dmb_wire_op_desc(op);

		m = sample(op);
		len = enc(&m, buf);
		p16(buf + DMB_WIRE_HDR_FLAGS, DMB_WIRE_F_NO_REPLY);
		if (d->one_way || op == DMB_OP_ATTACH)
			continue;
		if (dec(buf, len, m.nfds, op, &out) != -EPROTO &&
		    dec(buf, len, m.nfds, op, &out) != -EPROTONOSUPPORT)
			fail_msg("%s with NO_REPLY was accepted", d->name);
		m = sample(op | DMB_WIRE_OP_REPLY);
		len = enc(&m, buf);
		p16(buf + DMB_WIRE_HDR_FLAGS, DMB_WIRE_F_NO_REPLY);
		assert_int_equal(dec(buf, len, m.nfds, m.op, &out), -EPROTO);
	}
	m = sample(DMB_OP_MAP);
	m.flags = DMB_WIRE_F_NO_REPLY;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);

	/* ATTACH: one-way from version 4 on (an attach whose answer the
	 * importer knows), never before; its reply never */
	m = sample(DMB_OP_ATTACH);
	m.flags = DMB_WIRE_F_NO_REPLY;
	len = enc(&m, buf);
	assert_int_equal(dec(buf, len, 0, m.op, &out), 0);
	assert_int_equal(out.flags, DMB_WIRE_F_NO_REPLY);
	p16(buf + DMB_WIRE_HDR_VERSION, DMB_WIRE_VERSION_ONE_WAY_ATTACH - 1);
	assert_int_equal(dec(buf, len, 0, m.op, &out), -EPROTO);
	m.version = DMB_WIRE_VERSION_ONE_WAY_ATTACH - 1;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	m.version = 0;
	m.flags = DMB_WIRE_F_NO_REPLY | DMB_WIRE_F_QUIET;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	assert_true(dmb_wire_may_no_reply(dmb_wire_op_desc(DMB_OP_ATTACH), 4));
	assert_false(dmb_wire_may_no_reply(dmb_wire_op_desc(DMB_OP_ATTACH), 3));
	assert_false(dmb_wire_may_no_reply(dmb_wire_op_desc(DMB_OP_ATTACH_REPLY), 4));
	assert_false(dmb_wire_may_no_reply(dmb_wire_op_desc(DMB_OP_MAP), 4));
	assert_true(dmb_wire_may_no_reply(dmb_wire_op_desc(DMB_OP_UNMAP), 2));
}

static int mutated(uint16_t op, void (*mutate)(uint8_t *buf, size_t *len),
		   unsigned nfds_override)
{
	struct dmb_msg m = sample(op), out;
	uint8_t buf[DMB_WIRE_MAX_MSG + 64];
	size_t len = enc(&m, buf);
	unsigned nfds = nfds_override == ~0u ? m.nfds : nfds_override;
	int ret;

	if (mutate)
		mutate(buf, &len);
	ret = dmb_wire_decode(buf, len, FDS, nfds, receiver_of(op), &out);
	if (ret < 0) {
		/* Nothing of a rejected message is handed on. */
		assert_int_equal(out.nfds, 0);
		assert_int_equal(out.fds[0], -1);
		assert_int_equal(out.status, 0);
	}
	return ret;
}

/* Body offsets in the tables below are docs/protocol.md §5's, counted from
 * the body (requests, events) or from the reply's payload. */
#define BODY DMB_WIRE_BODY
#define RBODY DMB_WIRE_REPLY_PAYLOAD

static void fix_len(uint8_t *buf, size_t len)
{
	p32(buf + DMB_WIRE_HDR_LENGTH, (uint32_t)len);
}

static void m_magic(uint8_t *b, size_t *l) { b[DMB_WIRE_HDR_MAGIC] ^= 0x20; }
static void m_version0(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_VERSION, 0); }
static void m_version2(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_VERSION, DMB_WIRE_VERSION_MAX + 1); }
static void m_len_hdr_big(uint8_t *b, size_t *l) { p32(b + DMB_WIRE_HDR_LENGTH, (uint32_t)*l + 1); }
static void m_len_hdr_small(uint8_t *b, size_t *l) { p32(b + DMB_WIRE_HDR_LENGTH, (uint32_t)*l - 1); }
static void m_short(uint8_t *b, size_t *l) { *l = DMB_WIRE_HDR_SIZE - 1; }
static void m_empty(uint8_t *b, size_t *l) { *l = 0; }
static void m_huge(uint8_t *b, size_t *l) { *l = DMB_WIRE_MAX_MSG + 1; fix_len(b, *l); }
static void m_hdr_rsv(uint8_t *b, size_t *l) { b[DMB_WIRE_HDR_RESERVED + 1] = 1; }
static void m_hdr_nfds5(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_NFDS, 5); }
static void m_hdr_nfds1(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_NFDS, 1); }
static void m_hdr_nfds0(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_NFDS, 0); }
static void m_hdr_nfds2(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_NFDS, 2); }
static void m_serial0(uint8_t *b, size_t *l) { p64(b + DMB_WIRE_HDR_SERIAL, 0); }
static void m_serial5(uint8_t *b, size_t *l) { p64(b + DMB_WIRE_HDR_SERIAL, 5); }
static void m_op_ff(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_OP, 0x00ff); }
static void m_op_reply_ff(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_OP, 0x80ff); }
static void m_op_both(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_OP, 0xc001); }
static void m_op_0(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_OP, 0); }
static void m_op_release_reply(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_OP, DMB_OP_RELEASE_REPLY); }
static void m_op_release(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_OP, DMB_OP_RELEASE); }
static void m_op_event(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_OP, DMB_OP_MOVE_NOTIFY); p64(b + DMB_WIRE_HDR_SERIAL, 0); }
/* 0x4001, once BUFFER_GONE: retired, so unknown */
static void m_op_retired(uint8_t *b, size_t *l) { p16(b + DMB_WIRE_HDR_OP, DMB_WIRE_OP_EVENT | 1); }
static void m_grow4(uint8_t *b, size_t *l) { memset(b + *l, 0, 4); *l += 4; fix_len(b, *l); }
static void m_shrink4(uint8_t *b, size_t *l) { *l -= 4; fix_len(b, *l); }
static void m_shrink1(uint8_t *b, size_t *l) { *l -= 1; fix_len(b, *l); }
static void m_id0(uint8_t *b, size_t *l) { p64(b + BODY, 0); }
static void m_dir3(uint8_t *b, size_t *l) { p32(b + BODY + 8, 3); }
static void m_dir_big(uint8_t *b, size_t *l) { p32(b + BODY + 8, 0x80000001u); }
static void m_body_rsv12(uint8_t *b, size_t *l) { b[BODY + 12] = 1; }
static void m_body_at12_2(uint8_t *b, size_t *l) { b[BODY + 12] = 2; }
static void m_body_at16_2(uint8_t *b, size_t *l) { b[BODY + 16] = 2; }
static void m_body_rsv20(uint8_t *b, size_t *l) { b[BODY + 20] = 1; }
static void m_flags1_at0(uint8_t *b, size_t *l) { p32(b + BODY, 1); }
static void m_rsv4_at4(uint8_t *b, size_t *l) { b[BODY + 7] = 0x80; }
static void m_fe_flags0(uint8_t *b, size_t *l) { p32(b + BODY + 8, 0); }
static void m_fe_flags4(uint8_t *b, size_t *l) { p32(b + BODY + 8, 7); }
static void m_usage4(uint8_t *b, size_t *l) { p32(b + BODY + 8, 4); }

static void test_reject_framing(void **state)
{
	assert_int_equal(mutated(DMB_OP_RELEASE, m_short, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_empty, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_huge, ~0u), -EMSGSIZE);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_magic, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_version0, ~0u), -EPROTONOSUPPORT);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_version2, ~0u), -EPROTONOSUPPORT);
	assert_int_equal(mutated(DMB_OP_HELLO, m_version2, ~0u), -EPROTONOSUPPORT);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_len_hdr_big, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_len_hdr_small, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_hdr_rsv, ~0u), -EPROTO);
	/* Body longer or shorter than the opcode's layout. */
	assert_int_equal(mutated(DMB_OP_RELEASE, m_grow4, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_shrink4, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_ATTACH, m_shrink1, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_HELLO_REPLY, m_grow4, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_RELEASE_REPLY, m_grow4, ~0u), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_DESCRIBE_REPLY, m_shrink4, ~0u), -EBADMSG);

	/* Bad arguments. */
	struct dmb_msg out;
	uint8_t buf[64] = { 0 };

	assert_int_equal(dmb_wire_decode(NULL, 24, NULL, 0, DMB_WIRE_SERVER, &out), -EINVAL);
	assert_int_equal(dmb_wire_decode(buf, 24, NULL, 0, DMB_WIRE_SERVER, NULL), -EINVAL);
	assert_int_equal(dmb_wire_decode(buf, 24, NULL, 1, DMB_WIRE_SERVER, &out), -EINVAL);
	assert_int_equal(dmb_wire_decode(buf, 24, NULL, 0, 0, &out), -EINVAL);
}

static void test_error_reply_to_unknown_request(void **state)
{
	uint8_t buf[DMB_WIRE_MAX_MSG];
	struct dmb_msg out;
	int len;

	/* A newer client's request 0x0042 gets a bare failed reply... */
	len = dmb_wire_encode_error(buf, sizeof(buf), 0x0042, 9, -EOPNOTSUPP);
	assert_int_equal(len, DMB_WIRE_REPLY_PAYLOAD);
	/* ...that any client parses, and only a client. */
	assert_int_equal(dmb_wire_decode(buf, (size_t)len, NULL, 0, DMB_WIRE_CLIENT, &out), 0);
	assert_int_equal(out.op, 0x8042);
	assert_int_equal(out.serial, 9);
	assert_int_equal(out.status, -EOPNOTSUPP);
	assert_string_equal(dmb_wire_op_name(out.op), "UNKNOWN_REPLY");
	assert_int_equal(dmb_wire_decode(buf, (size_t)len, NULL, 0, DMB_WIRE_SERVER, &out), -EPROTO);
	/* re-encoding gives the same bytes */
	uint8_t again[DMB_WIRE_MAX_MSG];
	assert_int_equal(dmb_wire_decode(buf, (size_t)len, NULL, 0, DMB_WIRE_CLIENT, &out), 0);
	assert_int_equal(dmb_wire_encode(again, sizeof(again), &out), len);
	assert_memory_equal(again, buf, (size_t)len);
	/* a successful reply to an unknown request stays unknown */
	p32(buf + DMB_WIRE_REPLY_STATUS, 0);
	assert_int_equal(dmb_wire_decode(buf, (size_t)len, NULL, 0, DMB_WIRE_CLIENT, &out), -EOPNOTSUPP);
	/* events and serial 0 are not requests */
	assert_int_equal(dmb_wire_encode_error(buf, sizeof(buf), 0x4001, 9, -EIO), -EINVAL);
	assert_int_equal(dmb_wire_encode_error(buf, sizeof(buf), 0x0042, 0, -EIO), -EINVAL);
}

static void test_reject_ops_and_direction(void **state)
{
	struct dmb_msg m = sample(DMB_OP_RELEASE), out;
	uint8_t buf[DMB_WIRE_MAX_MSG];
	size_t len;

	/* Unknown request: header valid, so op and serial are reported. */
	len = enc(&m, buf);
	p16(buf + DMB_WIRE_HDR_OP, 0x0077);
	assert_int_equal(dmb_wire_decode(buf, len, NULL, 0, DMB_WIRE_SERVER, &out),
			 -EOPNOTSUPP);
	assert_int_equal(out.op, 0x0077);
	assert_int_equal(out.serial, m.serial);

	assert_int_equal(mutated(DMB_OP_RELEASE, m_op_ff, ~0u), -EOPNOTSUPP);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_op_0, ~0u), -EOPNOTSUPP);
	assert_int_equal(mutated(DMB_OP_RELEASE_REPLY, m_op_reply_ff, ~0u), -EOPNOTSUPP);
	assert_int_equal(mutated(DMB_OP_MOVE_NOTIFY, m_op_both, ~0u), -EOPNOTSUPP);
	assert_int_equal(mutated(DMB_OP_MOVE_NOTIFY, m_op_retired, ~0u), -EOPNOTSUPP);
	assert_null(dmb_wire_op_desc(DMB_WIRE_OP_EVENT | 1));
	assert_string_equal(dmb_wire_op_name(DMB_WIRE_OP_EVENT | 1), "?");

	/* A reply or an event from a client; a request to a client. */
	assert_int_equal(mutated(DMB_OP_RELEASE, m_op_release_reply, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_op_event, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_op_retired, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_op_reply_ff, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_RELEASE_REPLY, m_op_release, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_MOVE_NOTIFY, m_op_ff, ~0u), -EPROTO);
	const struct dmb_wire_desc *t;
	size_t n = all_ops(&t);

	for (size_t i = 0; i < n; i++) {
		struct dmb_msg s = sample(t[i].op);

		len = enc(&s, buf);
		assert_int_equal(dmb_wire_decode(buf, len, FDS, s.nfds,
						 sender_of(s.op), &out), -EPROTO);
	}

	/* Serials: never 0 for requests and replies, always 0 for events. */
	assert_int_equal(mutated(DMB_OP_HELLO, m_serial0, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_MAP_REPLY, m_serial0, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_MOVE_NOTIFY, m_serial5, ~0u), -EPROTO);
}

static void test_reject_fd_counts(void **state)
{
	/* Received fds versus the header's count. */
	assert_int_equal(mutated(DMB_OP_IMPORT, NULL, 0), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_IMPORT, NULL, 2), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_IMPORT, NULL, 5), -EMSGSIZE);
	assert_int_equal(mutated(DMB_OP_IMPORT, m_hdr_nfds5, 5), -EMSGSIZE);
	assert_int_equal(mutated(DMB_OP_RELEASE, NULL, 1), -EBADMSG);
	/* Header and received agree, but the opcode wants another count. */
	assert_int_equal(mutated(DMB_OP_IMPORT, m_hdr_nfds0, 0), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_IMPORT, m_hdr_nfds2, 2), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_RELEASE, m_hdr_nfds1, 1), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_FENCE_ATTACH, m_hdr_nfds0, 0), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_FENCE_EXPORT_REPLY, m_hdr_nfds0, 0), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_MAP_REPLY, m_hdr_nfds1, 1), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_IMPORT_REPLY, m_hdr_nfds1, 1), -EBADMSG);
	assert_int_equal(mutated(DMB_OP_GET_BACKING_REPLY, m_hdr_nfds2, 2), -EBADMSG);

	/* A failed reply carries no fd. */
	uint8_t buf[DMB_WIRE_MAX_MSG];
	struct dmb_msg out;
	int n = dmb_wire_encode_error(buf, sizeof(buf), DMB_OP_FENCE_EXPORT, 4,
				      -EINVAL);

	p16(buf + DMB_WIRE_HDR_NFDS, 1);
	assert_int_equal(dmb_wire_decode(buf, (size_t)n, FDS, 1, DMB_WIRE_CLIENT,
					 &out), -EBADMSG);
}

static void test_reject_fields(void **state)
{
	assert_int_equal(mutated(DMB_OP_RELEASE, m_id0, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_ATTACH, m_id0, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_MOVE_NOTIFY, m_id0, ~0u), -EPROTO);
	/* Directions. */
	assert_int_equal(mutated(DMB_OP_MAP, m_dir3, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_UNMAP, m_dir_big, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_BEGIN_CPU_ACCESS, m_dir3, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_END_CPU_ACCESS, m_dir_big, ~0u), -EPROTO);
	/* Must-be-zero flags and reserved bytes. */
	assert_int_equal(mutated(DMB_OP_IMPORT, m_flags1_at0, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_IMPORT, m_rsv4_at4, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_UNMAP, m_body_rsv12, ~0u), -EPROTO);
	/* Version 7 MAP: flags (ANNOUNCED only), a seq only when one-way,
	 * then a reserved word. */
	assert_int_equal(mutated(DMB_OP_MAP, m_body_rsv12, ~0u), 0);
	assert_int_equal(mutated(DMB_OP_MAP, m_body_at12_2, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_MAP, m_body_at16_2, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_MAP, m_body_rsv20, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_FENCE_ATTACH, m_body_rsv12, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_FENCE_ATTACH, m_usage4, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_FENCE_EXPORT, m_fe_flags0, ~0u), -EPROTO);
	assert_int_equal(mutated(DMB_OP_FENCE_EXPORT, m_fe_flags4, ~0u), -EPROTO);
}

/* A valid encoded sample with one field overwritten at a known offset
 * (the encoder refuses to produce invalid messages, so patch the bytes). */
struct patch {
	uint16_t op;
	size_t off;	/* from the start of the message */
	int width;	/* 1, 2, 4, 8 */
	uint64_t val;
	int want;
};

static int apply(const struct patch *p)
{
	struct dmb_msg m = sample(p->op), out;
	uint8_t buf[DMB_WIRE_MAX_MSG];
	size_t len = enc(&m, buf);

	switch (p->width) {
	case 1: buf[p->off] = (uint8_t)p->val; break;
	case 2: p16(buf + p->off, (uint16_t)p->val); break;
	case 4: p32(buf + p->off, (uint32_t)p->val); break;
	default: p64(buf + p->off, p->val); break;
	}
	return dmb_wire_decode(buf, len, FDS, m.nfds, receiver_of(p->op), &out);
}

static void test_reject_patches(void **state)
{
	static const struct patch patches[] = {
		/* HELLO: min > max, min 0, flags, pid beyond pid_t */
		{ DMB_OP_HELLO, BODY + 0, 2, 4, -EPROTO },
		{ DMB_OP_HELLO, BODY + 0, 2, 0, -EPROTO },
		{ DMB_OP_HELLO, BODY + 4, 4, 1, -EPROTO },
		{ DMB_OP_HELLO, BODY + 8, 4, 0x80000000u, -EPROTO },
		{ DMB_OP_HELLO, BODY + 12, 1, 1, -EPROTO },
		/* HELLO_REPLY: version, limits, flags, status */
		{ DMB_OP_HELLO_REPLY, RBODY + 0, 2, DMB_WIRE_VERSION_MAX + 1, -EPROTONOSUPPORT },
		{ DMB_OP_HELLO_REPLY, RBODY + 0, 2, 0, -EPROTONOSUPPORT },
		{ DMB_OP_HELLO_REPLY, RBODY + 2, 2, 1, -EPROTO },
		{ DMB_OP_HELLO_REPLY, RBODY + 4, 4, 1, -EPROTO },
		{ DMB_OP_HELLO_REPLY, RBODY + 8, 4, DMB_WIRE_MAX_MSG + 1, -EPROTO },
		{ DMB_OP_HELLO_REPLY, RBODY + 12, 4, 0, -EPROTO },
		{ DMB_OP_HELLO_REPLY, RBODY + 12, 4, DMB_WIRE_MAX_FDS + 1, -EPROTO },
		{ DMB_OP_HELLO_REPLY, RBODY + 16, 4, 0, -EPROTO },
		{ DMB_OP_HELLO_REPLY, BODY + 0, 4, 1, -EPROTO },	/* status > 0 */
		{ DMB_OP_HELLO_REPLY, BODY + 4, 4, 1, -EPROTO },	/* reserved */
		/* a failed reply with payload: status -1 with 32 bytes after */
		{ DMB_OP_HELLO_REPLY, BODY + 0, 4, (uint32_t)-1, -EBADMSG },
		{ DMB_OP_RELEASE_REPLY, BODY + 0, 4, (uint32_t)-4096, -EPROTO },
		/* ATTACH device description */
		{ DMB_OP_ATTACH, BODY + 40, 4, 11, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 40, 4, 65, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 44, 4, 1u << 3, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 48, 4, 2, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 52, 4, 1, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 56, 8, 0, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 56, 8, 4097, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 64, 8, 0x10000, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 64, 8, 0x7ff, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 72, 8, 2048, -EPROTO },
		{ DMB_OP_ATTACH, BODY + 72, 8, 12288, -EPROTO },
		/* names: no NUL in the field; garbage after the NUL */
		{ DMB_OP_SET_NAME, BODY + 8 + 31, 1, 'x', -EPROTO },
		{ DMB_OP_ATTACH, BODY + 8 + 20, 1, 'x', -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 24 + 31, 1, 'x', -EPROTO },
		{ DMB_OP_DESCRIBE_REPLY, RBODY + 64 + 31, 1, 'x', -EPROTO },
		/* IMPORT_REPLY: size, access flags, ranges */
		{ DMB_OP_IMPORT_REPLY, RBODY + 8, 8, 0, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 8, 8, 4095, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 8, 8, 4096, -EPROTO },	/* < ranges */
		{ DMB_OP_IMPORT_REPLY, RBODY + 16, 4, O_ACCMODE, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 16, 4, O_RDWR | O_CLOEXEC, -EPROTO },
		/* info_flags: only NAME_SET */
		{ DMB_OP_IMPORT_REPLY, RBODY + 20, 4, DMB_WIRE_INFO_BACKING_ALLOCATED, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 20, 4, 1u << 3, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 88, 4, 2, -EPROTO },	/* total < count */
		{ DMB_OP_IMPORT_REPLY, RBODY + 88, 4, 1025, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 92, 4, 1, -EPROTO },	/* first != 0 */
		{ DMB_OP_IMPORT_REPLY, RBODY + 96, 4, 4, -EBADMSG },	/* count vs len */
		{ DMB_OP_IMPORT_REPLY, RBODY + 96, 4, 0xffffffffu, -EBADMSG },
		{ DMB_OP_IMPORT_REPLY, RBODY + 100, 4, 1, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 104, 4, 4, -EPROTO },	/* fd index */
		{ DMB_OP_IMPORT_REPLY, RBODY + 104 + 24, 4, 2, -EPROTO }, /* gap */
		{ DMB_OP_IMPORT_REPLY, RBODY + 104 + 24, 4, 0, -EBADMSG }, /* stray fd */
		{ DMB_OP_IMPORT_REPLY, RBODY + 104 + 8, 8, 100, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 104 + 16, 8, 0, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 104 + 8, 8, UINT64_MAX - 4095, -EPROTO },
		{ DMB_OP_IMPORT_REPLY, RBODY + 104 + 16, 8, UINT64_MAX - 4095, -EPROTO },
		/* GET_BACKING(_REPLY) */
		{ DMB_OP_GET_BACKING, BODY + 8, 4, 1024, -EPROTO },
		{ DMB_OP_GET_BACKING_REPLY, RBODY + 4, 4, 40, -EPROTO },	/* first */
		{ DMB_OP_GET_BACKING_REPLY, RBODY + 4, 4, 33, -EPROTO },	/* past total */
		{ DMB_OP_GET_BACKING_REPLY, RBODY + 8, 4, 9, -EBADMSG },
		/* MAP_REPLY: id, size, flags, count, entries */
		{ DMB_OP_MAP_REPLY, RBODY + 0, 8, 0, -EPROTO },
		{ DMB_OP_MAP_REPLY, RBODY + 8, 8, 4 * 4096, -EPROTO },	/* sum */
		{ DMB_OP_MAP_REPLY, RBODY + 8, 8, 3 * 4096 + 1, -EPROTO },
		{ DMB_OP_MAP_REPLY, RBODY + 20, 4, 4, -EPROTO },
		/* CACHE (version 7): its slot and seq take the first entry's room */
		{ DMB_OP_MAP_REPLY, RBODY + 20, 4, 2, -EBADMSG },
		{ DMB_OP_MAP_REPLY, RBODY + 16, 4, 3, -EBADMSG },
		{ DMB_OP_MAP_REPLY, RBODY + 16, 4, 1, -EBADMSG },
		{ DMB_OP_MAP_REPLY, RBODY + 16, 4, 0, -EBADMSG },
		{ DMB_OP_MAP_REPLY, RBODY + 16, 4, 0x0aaaaaabu, -EBADMSG }, /* *24 wraps u32 */
		{ DMB_OP_MAP_REPLY, RBODY + 24, 8, 4096, -EPROTO },	/* first offset */
		{ DMB_OP_MAP_REPLY, RBODY + 32, 8, 4095, -EPROTO },	/* length */
		{ DMB_OP_MAP_REPLY, RBODY + 40, 8, 0x100001, -EPROTO },	/* phys */
		{ DMB_OP_MAP_REPLY, RBODY + 64, 8, UINT64_MAX - 4095, -EPROTO },
		{ DMB_OP_MAP_REPLY, RBODY + 56, 8, UINT64_MAX - 4095, -EPROTO },
		{ DMB_OP_MAP_REPLY, RBODY + 48, 8, 8192, -EPROTO },	/* gap */
		/* DESCRIBE_REPLY */
		{ DMB_OP_DESCRIBE_REPLY, RBODY + 8, 4, O_ACCMODE, -EPROTO },
		{ DMB_OP_DESCRIBE_REPLY, RBODY + 12, 4, 8, -EPROTO }, /* bit 2 is NAME_SET */
		{ DMB_OP_DESCRIBE_REPLY, RBODY + 0, 8, 0, -EPROTO },
		{ DMB_OP_ATTACH_REPLY, RBODY + 0, 8, 0, -EPROTO },
	};

	for (size_t i = 0; i < DMB_ARRAY_SIZE(patches); i++) {
		int got = apply(&patches[i]);

		if (got != patches[i].want)
			fail_msg("patch %zu (%s @%zu = %#llx): got %d, want %d", i,
				 dmb_wire_op_name(patches[i].op), patches[i].off,
				 (unsigned long long)patches[i].val, got,
				 patches[i].want);
	}
}

/* MAP_REPLY in a memfd: count bounded by size, and no inline bytes. */
static void test_reject_map_memfd(void **state)
{
	struct dmb_msg m = sample(DMB_OP_MAP_REPLY), out;
	uint8_t buf[DMB_WIRE_MAX_MSG];
	size_t len;

	memset(m.u.map_reply.sg, 0, sizeof(m.u.map_reply.sg));
	m.u.map_reply.flags = DMB_WIRE_MAP_SG_MEMFD;
	m.u.map_reply.count = 3;
	set_fds(&m, 1);
	len = enc(&m, buf);
	p32(buf + RBODY + 16, 4);	/* more entries than pages */
	assert_int_equal(dec(buf, len, 1, m.op, &out), -EPROTO);
	p32(buf + RBODY + 16, 0);
	assert_int_equal(dec(buf, len, 1, m.op, &out), -EPROTO);
	p32(buf + RBODY + 16, 3);
	assert_int_equal(dec(buf, len, 1, m.op, &out), 0);
	assert_int_equal(out.fds[0], FDS[0]);
	assert_int_equal(out.u.map_reply.count, 3);
	/* Trailing entries after a memfd reply. */
	memset(buf + len, 0, 24);
	p32(buf + DMB_WIRE_HDR_LENGTH, (uint32_t)len + 24);
	assert_int_equal(dec(buf, len + 24, 1, m.op, &out), -EBADMSG);
}

static void test_encoder_checks(void **state)
{
	uint8_t buf[DMB_WIRE_MAX_MSG];
	struct dmb_msg m;

	m = sample(DMB_OP_SET_NAME);
	memset(m.u.set_name.name, 'a', sizeof(m.u.set_name.name));
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);

	/* Bytes after the NUL are not sent: the encoder canonicalises. */
	m = sample(DMB_OP_SET_NAME);
	strcpy(m.u.set_name.name, "ab");
	m.u.set_name.name[10] = 'z';
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), BODY + 40);
	assert_int_equal(buf[BODY + 8 + 10], 0);

	m = sample(DMB_OP_MAP);
	m.u.map.dir = DMABUF_NONE;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);

	m = sample(DMB_OP_IMPORT);
	set_fds(&m, 0);
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	m.nfds = DMB_WIRE_MAX_FDS + 1;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);

	m = sample(DMB_OP_MAP_REPLY);
	m.u.map_reply.count = DMB_WIRE_MAX_INLINE_SG + 1;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);

	m = sample(DMB_OP_IMPORT_REPLY);
	m.u.import_reply.backing.count = DMB_WIRE_MAX_RANGES + 1;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);

	m = sample(DMB_OP_ATTACH);
	assert_int_equal(dmb_wire_encode(buf, BODY + 79, &m), -ENOSPC);
	assert_int_equal(dmb_wire_encode(buf, 10, &m), -ENOSPC);
	assert_int_equal(dmb_wire_encode(buf, BODY + 80, &m), BODY + 80);

	m = sample(DMB_OP_RELEASE);
	m.op = 0x0077;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	m = sample(DMB_OP_RELEASE);
	m.version = DMB_WIRE_VERSION_MAX + 1;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	m = sample(DMB_OP_MOVE_NOTIFY);
	m.serial = 1;
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), &m), -EINVAL);
	assert_int_equal(dmb_wire_encode(NULL, sizeof(buf), &m), -EINVAL);
	assert_int_equal(dmb_wire_encode(buf, sizeof(buf), NULL), -EINVAL);
}

static void test_negotiate(void **state)
{
	assert_int_equal(dmb_wire_negotiate(1, 1), 1);
	assert_int_equal(dmb_wire_negotiate(1, 9), DMB_WIRE_VERSION_MAX);
	assert_int_equal(dmb_wire_negotiate(1, 1), 1);
	assert_int_equal(dmb_wire_negotiate(DMB_WIRE_VERSION_MAX + 1, 9), -EPROTONOSUPPORT);
	assert_int_equal(dmb_wire_negotiate(0, 0), -EPROTONOSUPPORT);
	assert_int_equal(dmb_wire_negotiate(1, 0), -EPROTONOSUPPORT);
}

static void test_check_sg(void **state)
{
	struct dmabuf_sg_entry sg[3] = {
		{ 0, 4096, 0x1000 }, { 4096, 4096, 0 }, { 8192, 8192, 1ull << 44 },
	};

	assert_int_equal(dmb_wire_check_sg(sg, 3, 16384), 0);
	assert_int_equal(dmb_wire_check_sg(sg, 3, 20480), -EPROTO);
	assert_int_equal(dmb_wire_check_sg(sg, 2, 16384), -EPROTO);
	assert_int_equal(dmb_wire_check_sg(sg, 0, 16384), -EPROTO);
	assert_int_equal(dmb_wire_check_sg(NULL, 1, 4096), -EPROTO);
	sg[2].length = 4096;
	assert_int_equal(dmb_wire_check_sg(sg, 3, 12288), 0);
	sg[1].offset = 0;
	assert_int_equal(dmb_wire_check_sg(sg, 3, 12288), -EPROTO);
}

/* Version 5 packets: split by the headers' length and nfds alone, each
 * message then decoded as any; every way the framing can fail is -EPROTO. */
static void test_split_packet(void **state)
{
	struct dmb_msg imp = sample(DMB_OP_IMPORT), att = sample(DMB_OP_ATTACH),
		       map = sample(DMB_OP_MAP), out;
	struct dmb_wire_part part[DMB_WIRE_MAX_PACKED + 1];
	uint8_t pkt[DMB_WIRE_MAX_MSG], one[DMB_WIRE_MAX_MSG];
	size_t a, b, c, len;

	a = enc(&imp, pkt);
	b = enc(&att, pkt + a);
	c = enc(&map, pkt + a + b);
	len = a + b + c;
	assert_int_equal(dmb_wire_split(pkt, len, 1, true, part, DMB_WIRE_MAX_PACKED), 3);
	assert_int_equal(part[0].off, 0);
	assert_int_equal(part[0].len, a);
	assert_int_equal(part[0].fd_first, 0);
	assert_int_equal(part[0].nfds, 1);
	assert_int_equal(part[1].off, a);
	assert_int_equal(part[1].len, b);
	assert_int_equal(part[1].fd_first, 1);
	assert_int_equal(part[1].nfds, 0);
	assert_int_equal(part[2].off, a + b);
	assert_int_equal(part[2].len, c);
	for (int i = 0; i < 3; i++)
		assert_int_equal(dec(pkt + part[i].off, part[i].len, part[i].nfds,
				     dmb_wire_get16(pkt + part[i].off + DMB_WIRE_HDR_OP), &out), 0);
	/* one message is a packet of one */
	assert_int_equal(dmb_wire_split(pkt, a, 1, true, part, DMB_WIRE_MAX_PACKED), 1);
	/* fds lost (RLIMIT_NOFILE): not counted */
	assert_int_equal(dmb_wire_split(pkt, len, 0, false, part, DMB_WIRE_MAX_PACKED), 3);
	/* nfds that do not add up to the packet's fds, either way */
	assert_int_equal(dmb_wire_split(pkt, len, 0, true, part, DMB_WIRE_MAX_PACKED), -EPROTO);
	assert_int_equal(dmb_wire_split(pkt, len, 2, true, part, DMB_WIRE_MAX_PACKED), -EPROTO);
	/* a trailing partial header */
	memset(pkt + len, 0, DMB_WIRE_HDR_SIZE);
	memcpy(pkt + len, pkt, DMB_WIRE_HDR_SIZE - 1);
	assert_int_equal(dmb_wire_split(pkt, len + DMB_WIRE_HDR_SIZE - 1, 1, true, part,
					DMB_WIRE_MAX_PACKED), -EPROTO);
	assert_int_equal(dmb_wire_split(pkt, len + 1, 1, true, part, DMB_WIRE_MAX_PACKED), -EPROTO);
	/* a length that runs past the packet, or below a header */
	p32(pkt + a + b + DMB_WIRE_HDR_LENGTH, (uint32_t)c + 1);
	assert_int_equal(dmb_wire_split(pkt, len, 1, true, part, DMB_WIRE_MAX_PACKED), -EPROTO);
	p32(pkt + a + b + DMB_WIRE_HDR_LENGTH, DMB_WIRE_HDR_SIZE - 1);
	assert_int_equal(dmb_wire_split(pkt, len, 1, true, part, DMB_WIRE_MAX_PACKED), -EPROTO);
	p32(pkt + a + b + DMB_WIRE_HDR_LENGTH, 0);
	assert_int_equal(dmb_wire_split(pkt, len, 1, true, part, DMB_WIRE_MAX_PACKED), -EPROTO);
	p32(pkt + a + b + DMB_WIRE_HDR_LENGTH, (uint32_t)c);
	/* a shorter length splits, and the message it leaves fails to decode */
	p32(pkt + a + DMB_WIRE_HDR_LENGTH, (uint32_t)b - 8);
	assert_int_equal(dmb_wire_split(pkt, len, 1, true, part, DMB_WIRE_MAX_PACKED), -EPROTO);
	p32(pkt + a + DMB_WIRE_HDR_LENGTH, (uint32_t)b);
	/* an fd count past the packet's in the middle */
	p16(pkt + a + DMB_WIRE_HDR_NFDS, 1);
	assert_int_equal(dmb_wire_split(pkt, len, 1, true, part, DMB_WIRE_MAX_PACKED), -EPROTO);
	p16(pkt + a + DMB_WIRE_HDR_NFDS, 0);
	/* more messages than the caller (or DMB_WIRE_MAX_PACKED) takes */
	assert_int_equal(dmb_wire_split(pkt, len, 1, true, part, 2), -EPROTO);
	len = enc(&map, one);
	for (unsigned i = 0; i <= DMB_WIRE_MAX_PACKED; i++)
		memcpy(pkt + i * len, one, len);
	assert_int_equal(dmb_wire_split(pkt, DMB_WIRE_MAX_PACKED * len, 0, true, part,
					DMB_WIRE_MAX_PACKED + 1), (int)DMB_WIRE_MAX_PACKED);
	assert_int_equal(dmb_wire_split(pkt, (DMB_WIRE_MAX_PACKED + 1) * len, 0, true, part,
					DMB_WIRE_MAX_PACKED + 1), -EPROTO);
	/* nothing, bad arguments */
	assert_int_equal(dmb_wire_split(pkt, 0, 0, true, part, 1), -EPROTO);
	assert_int_equal(dmb_wire_split(NULL, 24, 0, true, part, 1), -EINVAL);
	assert_int_equal(dmb_wire_split(pkt, 24, 0, true, NULL, 1), -EINVAL);
	assert_int_equal(dmb_wire_split(pkt, 24, 0, true, part, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(test_round_trip_all),
		harness_test(test_round_trip_error_replies),
		harness_test(test_round_trip_variants),
		harness_test(test_decode_over_garbage),
		harness_test(test_descriptor_table),
		harness_test(test_golden_bytes),
		harness_test(test_import_client_id),
		harness_test(test_no_reply_flag),
		harness_test(test_reject_framing),
		harness_test(test_reject_ops_and_direction),
		harness_test(test_error_reply_to_unknown_request),
		harness_test(test_reject_fd_counts),
		harness_test(test_reject_fields),
		harness_test(test_reject_patches),
		harness_test(test_reject_map_memfd),
		harness_test(test_encoder_checks),
		harness_test(test_negotiate),
		harness_test(test_check_sg),
		harness_test(test_split_packet),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
