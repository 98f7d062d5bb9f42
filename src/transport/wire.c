/* SPDX-License-Identifier: MIT */
/*
 * Wire codec (docs/protocol.md). Pure functions only: no I/O, no
 * allocation, no global state, so the fuzzer can drive them directly.
 *
 * One walker per opcode describes the body field by field; it runs in
 * decode mode (bytes -> struct) or encode mode (struct -> bytes), so the
 * two directions cannot drift apart. Semantic checks run on the decoded
 * struct afterwards, and the encoder re-decodes what it wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "wire.h"

_Static_assert(DMB_WIRE_NAME_LEN == DMABUF_NAME_LEN, "name length");
_Static_assert(DMB_WIRE_FENCE_READ == DMABUF_SYNC_READ, "fence flags");
_Static_assert(DMB_WIRE_FENCE_WRITE == DMABUF_SYNC_WRITE, "fence flags");
_Static_assert(DMB_WIRE_MAX_INLINE_SG >= 64, "inline sg room");

/* ---- little-endian accessors --------------------------------------------- */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

void dmb_wire_put_sg(uint8_t *p, const struct dmabuf_sg_entry *e)
{
	put64(p, e->offset);
	put64(p + 8, e->length);
	put64(p + 16, e->phys);
}

void dmb_wire_get_sg(const uint8_t *p, struct dmabuf_sg_entry *e)
{
	e->offset = get64(p);
	e->length = get64(p + 8);
	e->phys = get64(p + 16);
}

/* ---- the walker ------------------------------------------------------------ */

struct cur {
	uint8_t *p;
	size_t len;	/* decode: bytes available; encode: capacity */
	size_t pos;
	bool enc;
	int err;	/* first error, 0 while fine */
};

static void fail(struct cur *c, int err)
{
	if (!c->err)
		c->err = err;
}

/* Reserves n bytes at the cursor; NULL (and an error) if they do not fit. */
static uint8_t *take(struct cur *c, size_t n)
{
	uint8_t *p;

	if (c->err)
		return NULL;
	if (n > c->len - c->pos) {
		fail(c, c->enc ? -ENOSPC : -EBADMSG);
		return NULL;
	}
	p = c->p + c->pos;
	c->pos += n;
	return p;
}

static size_t left(const struct cur *c)
{
	return c->len - c->pos;
}

static void f16(struct cur *c, uint16_t *v)
{
	uint8_t *p = take(c, 2);

	if (!p)
		return;
	if (c->enc)
		put16(p, *v);
	else
		*v = get16(p);
}

static void f32(struct cur *c, uint32_t *v)
{
	uint8_t *p = take(c, 4);

	if (!p)
		return;
	if (c->enc)
		put32(p, *v);
	else
		*v = get32(p);
}

static void fi32(struct cur *c, int32_t *v)
{
	uint32_t u = (uint32_t)*v;

	f32(c, &u);
	*v = (int32_t)u;
}

static void f64(struct cur *c, uint64_t *v)
{
	uint8_t *p = take(c, 8);

	if (!p)
		return;
	if (c->enc)
		put64(p, *v);
	else
		*v = get64(p);
}

/* Reserved bytes: written as zero, and must read as zero (canonical form). */
static void frsv(struct cur *c, size_t n)
{
	uint8_t *p = take(c, n);

	if (!p)
		return;
	if (c->enc) {
		memset(p, 0, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (p[i])
			fail(c, -EPROTO);
}

/* A fixed name field: NUL-terminated inside it, zero after the NUL. */
static void fname(struct cur *c, char *name)
{
	uint8_t *p = take(c, DMB_WIRE_NAME_LEN);
	size_t n;

	if (!p)
		return;
	if (c->enc) {
		n = strnlen(name, DMB_WIRE_NAME_LEN);
		if (n == DMB_WIRE_NAME_LEN) {
			fail(c, -EINVAL);
			return;
		}
		memcpy(p, name, n);
		memset(p + n, 0, DMB_WIRE_NAME_LEN - n);
		return;
	}
	n = strnlen((const char *)p, DMB_WIRE_NAME_LEN);
	if (n == DMB_WIRE_NAME_LEN) {
		fail(c, -EPROTO);
		return;
	}
	for (size_t i = n; i < DMB_WIRE_NAME_LEN; i++)
		if (p[i])
			fail(c, -EPROTO);
	memcpy(name, p, DMB_WIRE_NAME_LEN);
}

/*
 * A count of fixed-size records that end the body. Decoding checks the
 * count against the bytes left before anything is read (a huge count is a
 * length mismatch, never a loop), then against the struct's room.
 */
static bool fcount(struct cur *c, uint32_t count, size_t rec, size_t room)
{
	if (c->err)
		return false;
	if (c->enc) {
		if (count > room) {
			fail(c, -EINVAL);
			return false;
		}
		return true;
	}
	if ((uint64_t)count * rec != left(c)) {
		fail(c, -EBADMSG);
		return false;
	}
	if (count > room) {
		fail(c, -EPROTO);
		return false;
	}
	return true;
}

static void franges(struct cur *c, struct dmb_wire_ranges *b)
{
	f32(c, &b->total);
	f32(c, &b->first);
	f32(c, &b->count);
	frsv(c, 4);
	if (!fcount(c, b->count, DMB_WIRE_RANGE_SIZE, DMB_WIRE_MAX_RANGES))
		return;
	for (uint32_t i = 0; i < b->count; i++) {
		f32(c, &b->r[i].fd_index);
		frsv(c, 4);
		f64(c, &b->r[i].offset);
		f64(c, &b->r[i].size);
	}
}

static void fsg(struct cur *c, struct dmabuf_sg_entry *e)
{
	f64(c, &e->offset);
	f64(c, &e->length);
	f64(c, &e->phys);
}

/* ---- per-opcode layouts ------------------------------------------------------ */

static void walk_body(struct cur *c, struct dmb_msg *m)
{
	switch (m->op) {
	case DMB_OP_HELLO:
		f16(c, &m->u.hello.min_version);
		f16(c, &m->u.hello.max_version);
		f32(c, &m->u.hello.flags);
		f32(c, &m->u.hello.pid);
		frsv(c, 4);
		return;
	case DMB_OP_IMPORT:
		f32(c, &m->u.import.flags);
		frsv(c, 4);
		return;
	case DMB_OP_RELEASE:
	case DMB_OP_DETACH:
	case DMB_OP_DESCRIBE:
	case DMB_OP_BUFFER_GONE:
	case DMB_OP_MOVE_NOTIFY:
		f64(c, &m->u.id.id);
		return;
	case DMB_OP_ATTACH:
		f64(c, &m->u.attach.buffer_id);
		fname(c, m->u.attach.name);
		f32(c, &m->u.attach.dma_mask_bits);
		f32(c, &m->u.attach.dev_flags);
		f32(c, &m->u.attach.attach_flags);
		frsv(c, 4);
		f64(c, &m->u.attach.max_segment_size);
		f64(c, &m->u.attach.segment_boundary);
		f64(c, &m->u.attach.alignment);
		return;
	case DMB_OP_MAP:
	case DMB_OP_UNMAP:
		f64(c, &m->u.map.id);
		f32(c, &m->u.map.dir);
		frsv(c, 4);
		return;
	case DMB_OP_BEGIN_CPU_ACCESS:
	case DMB_OP_END_CPU_ACCESS:
		f64(c, &m->u.cpu_access.buffer_id);
		f32(c, &m->u.cpu_access.dir);
		frsv(c, 4);
		return;
	case DMB_OP_SET_NAME:
		f64(c, &m->u.set_name.buffer_id);
		fname(c, m->u.set_name.name);
		return;
	case DMB_OP_FENCE_ATTACH:
		f64(c, &m->u.fence_attach.buffer_id);
		f32(c, &m->u.fence_attach.usage);
		frsv(c, 4);
		return;
	case DMB_OP_FENCE_EXPORT:
		f64(c, &m->u.fence_export.buffer_id);
		f32(c, &m->u.fence_export.flags);
		frsv(c, 4);
		return;
	case DMB_OP_GET_BACKING:
		f64(c, &m->u.get_backing.buffer_id);
		f32(c, &m->u.get_backing.first);
		frsv(c, 4);
		return;
	}

	/* Replies: status first; a failed reply carries nothing else. */
	fi32(c, &m->status);
	frsv(c, 4);
	if (m->status > 0 || m->status < -DMB_WIRE_MAX_ERRNO)
		fail(c, c->enc ? -EINVAL : -EPROTO);
	if (c->err || m->status != 0)
		return;

	switch (m->op) {
	case DMB_OP_HELLO_REPLY: {
		struct dmb_wire_hello_reply *r = &m->u.hello_reply;

		f16(c, &r->version);
		frsv(c, 2);
		f32(c, &r->flags);
		f32(c, &r->max_msg);
		f32(c, &r->max_fds);
		f32(c, &r->max_buffers);
		f32(c, &r->max_attachments);
		f32(c, &r->max_mappings);
		f32(c, &r->pid);
		return;
	}
	case DMB_OP_IMPORT_REPLY: {
		struct dmb_wire_import_reply *r = &m->u.import_reply;

		f64(c, &r->buffer_id);
		f64(c, &r->size);
		f32(c, &r->flags);
		frsv(c, 4);
		fname(c, r->exp_name);
		fname(c, r->name);
		franges(c, &r->backing);
		return;
	}
	case DMB_OP_ATTACH_REPLY:
		f64(c, &m->u.attach_reply.attachment_id);
		return;
	case DMB_OP_MAP_REPLY: {
		struct dmb_wire_map_reply *r = &m->u.map_reply;

		f64(c, &r->mapping_id);
		f64(c, &r->size);
		f32(c, &r->count);
		f32(c, &r->flags);
		if (c->err || (r->flags & DMB_WIRE_MAP_SG_MEMFD))
			return; /* entries are in the memfd; checked there */
		if (!fcount(c, r->count, DMB_WIRE_SG_ENTRY_SIZE,
			    DMB_WIRE_MAX_INLINE_SG))
			return;
		for (uint32_t i = 0; i < r->count; i++)
			fsg(c, &r->sg[i]);
		return;
	}
	case DMB_OP_DESCRIBE_REPLY: {
		struct dmb_wire_describe_reply *r = &m->u.describe_reply;

		f64(c, &r->size);
		f32(c, &r->flags);
		f32(c, &r->info_flags);
		f32(c, &r->attachments);
		f32(c, &r->mappings);
		f32(c, &r->importers);
		f32(c, &r->vmap_count);
		fname(c, r->exp_name);
		fname(c, r->name);
		return;
	}
	case DMB_OP_GET_BACKING_REPLY:
		franges(c, &m->u.backing);
		return;
	default:
		/* status-only replies */
		return;
	}
}

/* ---- opcode table ------------------------------------------------------------ */

enum sender { FROM_CLIENT, FROM_SERVER };

static bool op_known(uint16_t op, enum sender *who)
{
	if (op >= DMB_OP_HELLO && op <= DMB_OP__LAST_REQUEST) {
		*who = FROM_CLIENT;
		return true;
	}
	if ((op & DMB_WIRE_OP_REPLY) && !(op & DMB_WIRE_OP_EVENT) &&
	    (op & ~DMB_WIRE_OP_REPLY) >= DMB_OP_HELLO &&
	    (op & ~DMB_WIRE_OP_REPLY) <= DMB_OP__LAST_REQUEST) {
		*who = FROM_SERVER;
		return true;
	}
	if (op >= DMB_OP_BUFFER_GONE && op <= DMB_OP__LAST_EVENT) {
		*who = FROM_SERVER;
		return true;
	}
	return false;
}

/* Which side an unknown opcode would come from, by its class bits. */
static enum sender op_class(uint16_t op)
{
	return (op & (DMB_WIRE_OP_REPLY | DMB_WIRE_OP_EVENT)) ? FROM_SERVER
							      : FROM_CLIENT;
}

static bool is_event(uint16_t op)
{
	return op >= DMB_OP_BUFFER_GONE && op <= DMB_OP__LAST_EVENT;
}

static bool is_reply(uint16_t op)
{
	return (op & DMB_WIRE_OP_REPLY) != 0;
}

/* The reply opcode of a request this version does not know. */
static bool is_unknown_request_reply(uint16_t op)
{
	uint16_t req = op & (uint16_t)~DMB_WIRE_OP_REPLY;

	return (op & DMB_WIRE_OP_REPLY) && !(op & DMB_WIRE_OP_EVENT) &&
	       req > DMB_OP__LAST_REQUEST && req < DMB_WIRE_OP_EVENT;
}

const char *dmb_wire_op_name(uint16_t op)
{
	static const char *const names[] = {
		[DMB_OP_HELLO] = "HELLO",
		[DMB_OP_IMPORT] = "IMPORT",
		[DMB_OP_RELEASE] = "RELEASE",
		[DMB_OP_ATTACH] = "ATTACH",
		[DMB_OP_DETACH] = "DETACH",
		[DMB_OP_MAP] = "MAP",
		[DMB_OP_UNMAP] = "UNMAP",
		[DMB_OP_BEGIN_CPU_ACCESS] = "BEGIN_CPU_ACCESS",
		[DMB_OP_END_CPU_ACCESS] = "END_CPU_ACCESS",
		[DMB_OP_SET_NAME] = "SET_NAME",
		[DMB_OP_DESCRIBE] = "DESCRIBE",
		[DMB_OP_FENCE_ATTACH] = "FENCE_ATTACH",
		[DMB_OP_FENCE_EXPORT] = "FENCE_EXPORT",
		[DMB_OP_GET_BACKING] = "GET_BACKING",
	};
	static const char *const replies[] = {
		[DMB_OP_HELLO] = "HELLO_REPLY",
		[DMB_OP_IMPORT] = "IMPORT_REPLY",
		[DMB_OP_RELEASE] = "RELEASE_REPLY",
		[DMB_OP_ATTACH] = "ATTACH_REPLY",
		[DMB_OP_DETACH] = "DETACH_REPLY",
		[DMB_OP_MAP] = "MAP_REPLY",
		[DMB_OP_UNMAP] = "UNMAP_REPLY",
		[DMB_OP_BEGIN_CPU_ACCESS] = "BEGIN_CPU_ACCESS_REPLY",
		[DMB_OP_END_CPU_ACCESS] = "END_CPU_ACCESS_REPLY",
		[DMB_OP_SET_NAME] = "SET_NAME_REPLY",
		[DMB_OP_DESCRIBE] = "DESCRIBE_REPLY",
		[DMB_OP_FENCE_ATTACH] = "FENCE_ATTACH_REPLY",
		[DMB_OP_FENCE_EXPORT] = "FENCE_EXPORT_REPLY",
		[DMB_OP_GET_BACKING] = "GET_BACKING_REPLY",
	};
	enum sender who;

	if (!op_known(op, &who))
		return is_unknown_request_reply(op) ? "UNKNOWN_REPLY" : "?";
	if (op == DMB_OP_BUFFER_GONE)
		return "BUFFER_GONE";
	if (op == DMB_OP_MOVE_NOTIFY)
		return "MOVE_NOTIFY";
	if (is_reply(op))
		return replies[op & ~DMB_WIRE_OP_REPLY];
	return names[op];
}

/* ---- semantic checks ----------------------------------------------------------- */

static bool page_aligned(uint64_t v)
{
	return (v & (DMB_WIRE_PAGE_SIZE - 1)) == 0;
}

static bool dir_ok(uint32_t dir)
{
	/* DMABUF_NONE is not a direction one maps or accesses with. */
	return dir == DMABUF_BIDIRECTIONAL || dir == DMABUF_TO_DEVICE ||
	       dir == DMABUF_FROM_DEVICE;
}

static bool access_ok(uint32_t flags)
{
	return flags == O_RDONLY || flags == O_RDWR;
}

static bool buffer_size_ok(uint64_t size)
{
	return size != 0 && page_aligned(size);
}

int dmb_wire_check_sg(const struct dmabuf_sg_entry *sg, size_t count,
		      uint64_t size)
{
	uint64_t next = 0;

	if (!sg || count == 0 || count > DMB_WIRE_MAX_SG_ENTRIES ||
	    !buffer_size_ok(size))
		return -EPROTO;
	for (size_t i = 0; i < count; i++) {
		const struct dmabuf_sg_entry *e = &sg[i];

		if (e->offset != next || e->length == 0 ||
		    !page_aligned(e->length) || !page_aligned(e->phys) ||
		    e->phys + e->length < e->phys ||
		    e->length > size - e->offset)
			return -EPROTO;
		next = e->offset + e->length;
	}
	return next == size ? 0 : -EPROTO;
}

/*
 * A batch of backing ranges. Returns the number of fds it references
 * (every fd in [0, n) at least once), or -EPROTO.
 */
static int check_ranges(const struct dmb_wire_ranges *b, bool first_batch,
			uint64_t buffer_size)
{
	uint32_t used = 0, nfds = 0;
	uint64_t sum = 0;

	if (b->total > DMB_WIRE_MAX_BACKING_RANGES)
		return -EPROTO;
	if (first_batch) {
		if (b->first != 0)
			return -EPROTO;
		if (b->total == 0)
			return b->count == 0 ? 0 : -EPROTO;
	} else if (b->first >= b->total) {
		return -EPROTO;
	}
	/* Not empty, and within total (no overflow: both <= 1024 + 32). */
	if (b->count == 0 || b->first + b->count > b->total)
		return -EPROTO;
	for (uint32_t i = 0; i < b->count; i++) {
		const struct dmb_wire_range *r = &b->r[i];

		if (r->fd_index >= DMB_WIRE_MAX_FDS || r->size == 0 ||
		    !page_aligned(r->offset) || !page_aligned(r->size) ||
		    r->offset + r->size < r->offset)
			return -EPROTO;
		if (r->size > UINT64_MAX - sum)
			return -EPROTO;
		sum += r->size;
		used |= 1u << r->fd_index;
		if (r->fd_index + 1 > nfds)
			nfds = r->fd_index + 1;
	}
	/* Every attached fd is named by a range: no stray fds. */
	if (used != (1u << nfds) - 1)
		return -EPROTO;
	if (buffer_size && sum > buffer_size)
		return -EPROTO;
	return (int)nfds;
}

static bool device_ok(const struct dmb_wire_attach *a)
{
	if (a->dma_mask_bits < DMB_WIRE_DEV_MASK_MIN ||
	    a->dma_mask_bits > DMB_WIRE_DEV_MASK_MAX)
		return false;
	if (a->dev_flags & ~(uint32_t)DMB_WIRE_DEVICE_FLAGS_MASK)
		return false;
	if (a->attach_flags & ~DMB_WIRE_ATTACH_DYNAMIC)
		return false;
	/* Effective values travel, never the "0 = default" shorthand. */
	if (a->max_segment_size == 0 || !page_aligned(a->max_segment_size))
		return false;
	/* A boundary is a mask 2^n - 1, at least a page. */
	if (a->segment_boundary < DMB_WIRE_PAGE_SIZE - 1 ||
	    (a->segment_boundary & (a->segment_boundary + 1)) != 0)
		return false;
	if (a->alignment < DMB_WIRE_PAGE_SIZE ||
	    (a->alignment & (a->alignment - 1)) != 0)
		return false;
	return true;
}

/*
 * Field ranges of a decoded message, and the number of fds it must carry.
 * Returns that number (>= 0) or -EPROTO.
 */
static int check_fields(const struct dmb_msg *m)
{
	int n;

	if (is_reply(m->op)) {
		if (m->status > 0 || m->status < -DMB_WIRE_MAX_ERRNO)
			return -EPROTO;
		if (m->status < 0)
			return 0;
	}

	switch (m->op) {
	case DMB_OP_HELLO: {
		const struct dmb_wire_hello *h = &m->u.hello;

		if (h->min_version < 1 || h->min_version > h->max_version ||
		    h->flags || h->pid > INT32_MAX)
			return -EPROTO;
		return 0;
	}
	case DMB_OP_IMPORT:
		return m->u.import.flags ? -EPROTO : 1;
	case DMB_OP_RELEASE:
	case DMB_OP_DETACH:
	case DMB_OP_DESCRIBE:
	case DMB_OP_BUFFER_GONE:
	case DMB_OP_MOVE_NOTIFY:
		return m->u.id.id ? 0 : -EPROTO;
	case DMB_OP_ATTACH:
		if (!m->u.attach.buffer_id || !device_ok(&m->u.attach))
			return -EPROTO;
		return 0;
	case DMB_OP_MAP:
	case DMB_OP_UNMAP:
		if (!m->u.map.id || !dir_ok(m->u.map.dir))
			return -EPROTO;
		return 0;
	case DMB_OP_BEGIN_CPU_ACCESS:
	case DMB_OP_END_CPU_ACCESS:
		if (!m->u.cpu_access.buffer_id || !dir_ok(m->u.cpu_access.dir))
			return -EPROTO;
		return 0;
	case DMB_OP_SET_NAME:
		return m->u.set_name.buffer_id ? 0 : -EPROTO;
	case DMB_OP_FENCE_ATTACH:
		if (!m->u.fence_attach.buffer_id ||
		    m->u.fence_attach.usage > DMB_WIRE_USAGE_MAX)
			return -EPROTO;
		return 1;
	case DMB_OP_FENCE_EXPORT: {
		uint32_t f = m->u.fence_export.flags;

		if (!m->u.fence_export.buffer_id || f == 0 ||
		    (f & ~(DMB_WIRE_FENCE_READ | DMB_WIRE_FENCE_WRITE)))
			return -EPROTO;
		return 0;
	}
	case DMB_OP_GET_BACKING:
		if (!m->u.get_backing.buffer_id ||
		    m->u.get_backing.first >= DMB_WIRE_MAX_BACKING_RANGES)
			return -EPROTO;
		return 0;

	case DMB_OP_HELLO_REPLY: {
		const struct dmb_wire_hello_reply *r = &m->u.hello_reply;

		if (r->flags || r->pid > INT32_MAX ||
		    r->max_msg < DMB_WIRE_HDR_SIZE + 128 ||
		    r->max_msg > DMB_WIRE_MAX_MSG ||
		    r->max_fds < 1 || r->max_fds > DMB_WIRE_MAX_FDS ||
		    !r->max_buffers || !r->max_attachments || !r->max_mappings)
			return -EPROTO;
		/* The version is range-checked by the caller (-EPROTONOSUPPORT). */
		return 0;
	}
	case DMB_OP_IMPORT_REPLY: {
		const struct dmb_wire_import_reply *r = &m->u.import_reply;

		if (!r->buffer_id || !buffer_size_ok(r->size) ||
		    !access_ok(r->flags))
			return -EPROTO;
		return check_ranges(&r->backing, true, r->size);
	}
	case DMB_OP_ATTACH_REPLY:
		return m->u.attach_reply.attachment_id ? 0 : -EPROTO;
	case DMB_OP_MAP_REPLY: {
		const struct dmb_wire_map_reply *r = &m->u.map_reply;

		if (!r->mapping_id || !buffer_size_ok(r->size) ||
		    (r->flags & ~DMB_WIRE_MAP_SG_MEMFD) || r->count == 0)
			return -EPROTO;
		if (r->flags & DMB_WIRE_MAP_SG_MEMFD) {
			/* Each entry covers at least a page. */
			if (r->count > DMB_WIRE_MAX_SG_ENTRIES ||
			    r->count > r->size / DMB_WIRE_PAGE_SIZE)
				return -EPROTO;
			return 1;
		}
		n = dmb_wire_check_sg(r->sg, r->count, r->size);
		return n < 0 ? n : 0;
	}
	case DMB_OP_DESCRIBE_REPLY: {
		const struct dmb_wire_describe_reply *r = &m->u.describe_reply;

		if (!buffer_size_ok(r->size) || !access_ok(r->flags) ||
		    (r->info_flags & ~DMB_WIRE_INFO_MASK))
			return -EPROTO;
		return 0;
	}
	case DMB_OP_FENCE_EXPORT_REPLY:
		return 1;
	case DMB_OP_GET_BACKING_REPLY:
		return check_ranges(&m->u.backing, false, 0);
	default:
		/* status-only replies */
		return 0;
	}
}

/* ---- decode / encode ------------------------------------------------------------ */

int dmb_wire_negotiate(uint16_t min_version, uint16_t max_version)
{
	uint16_t v = max_version < DMB_WIRE_VERSION_MAX ? max_version
							: DMB_WIRE_VERSION_MAX;

	if (min_version > max_version || v < min_version ||
	    v < DMB_WIRE_VERSION_MIN)
		return -EPROTONOSUPPORT;
	return v;
}

static void reset(struct dmb_msg *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < DMB_WIRE_MAX_FDS; i++)
		out->fds[i] = -1;
}

/* On failure keep only what identifies the message (see wire.h). */
static int reject(struct dmb_msg *out, int err)
{
	uint16_t version = out->version, op = out->op;
	uint64_t serial = out->serial;

	reset(out);
	out->version = version;
	out->op = op;
	out->serial = serial;
	return err;
}

/* Header + status + reserved, nothing else: a failed reply. */
static int decode_bare_error(const uint8_t *p, size_t len, size_t nfds,
			     struct dmb_msg *out)
{
	int32_t status;

	/* Anything else answering an unknown request stays unknown. */
	if (len != DMB_WIRE_HDR_SIZE + DMB_WIRE_REPLY_HDR_SIZE || nfds)
		return reject(out, -EOPNOTSUPP);
	status = (int32_t)get32(p + DMB_WIRE_HDR_SIZE);
	if (status >= 0)
		return reject(out, -EOPNOTSUPP);
	if (out->serial == 0 || get32(p + DMB_WIRE_HDR_SIZE + 4) != 0 ||
	    status < -DMB_WIRE_MAX_ERRNO)
		return reject(out, -EPROTO);
	out->status = status;
	return 0;
}

int dmb_wire_decode(const void *data, size_t len, const int *fds, size_t nfds,
		    enum dmb_wire_side receiver, struct dmb_msg *out)
{
	const uint8_t *p = data;
	struct cur c;
	enum sender who;
	uint32_t hlen;
	uint16_t version, op, hfds;
	int want;

	if (!out)
		return -EINVAL;
	reset(out);
	if (!data || (nfds && !fds) ||
	    (receiver != DMB_WIRE_SERVER && receiver != DMB_WIRE_CLIENT))
		return -EINVAL;
	if (len > DMB_WIRE_MAX_MSG || nfds > DMB_WIRE_MAX_FDS)
		return -EMSGSIZE;
	if (len < DMB_WIRE_HDR_SIZE)
		return -EBADMSG;

	/* Header: magic, version, opcode, length, nfds, reserved, serial. */
	if (get32(p) != DMB_WIRE_MAGIC)
		return -EPROTO;
	version = get16(p + 4);
	op = get16(p + 6);
	hlen = get32(p + 8);
	hfds = get16(p + 12);
	if (version < DMB_WIRE_VERSION_MIN || version > DMB_WIRE_VERSION_MAX)
		return -EPROTONOSUPPORT;
	if (hlen != len)
		return -EBADMSG;
	if (hfds > DMB_WIRE_MAX_FDS)
		return -EMSGSIZE;
	if (hfds != nfds)
		return -EBADMSG;
	if (get16(p + 14) != 0)
		return -EPROTO;

	out->version = version;
	out->op = op;
	out->serial = get64(p + 16);

	if (!op_known(op, &who) && receiver == DMB_WIRE_CLIENT &&
	    is_unknown_request_reply(op))
		/* A failed reply has no body, so it parses whatever request it
		 * answers: a newer client learns its request is unknown. */
		return decode_bare_error(p, len, nfds, out);
	if (!op_known(op, &who))
		/* From the wrong side it is a direction error, else unknown. */
		return reject(out, (op_class(op) == FROM_CLIENT) ==
					   (receiver == DMB_WIRE_SERVER)
					   ? -EOPNOTSUPP : -EPROTO);
	if ((who == FROM_CLIENT) != (receiver == DMB_WIRE_SERVER))
		return reject(out, -EPROTO);
	if ((op == DMB_OP_HELLO || op == DMB_OP_HELLO_REPLY) &&
	    version != DMB_WIRE_VERSION_BASE)
		return reject(out, -EPROTONOSUPPORT);
	if (is_event(op) ? out->serial != 0 : out->serial == 0)
		return reject(out, -EPROTO);

	c = (struct cur){ .p = (uint8_t *)p, .len = len,
			  .pos = DMB_WIRE_HDR_SIZE, .enc = false };
	walk_body(&c, out);
	if (c.err)
		return reject(out, c.err);
	if (c.pos != len)
		return reject(out, -EBADMSG);

	want = check_fields(out);
	if (want < 0)
		return reject(out, want);
	if (op == DMB_OP_HELLO_REPLY && out->status == 0 &&
	    (out->u.hello_reply.version < DMB_WIRE_VERSION_MIN ||
	     out->u.hello_reply.version > DMB_WIRE_VERSION_MAX))
		return reject(out, -EPROTONOSUPPORT);
	if ((size_t)want != nfds)
		return reject(out, -EBADMSG);

	out->nfds = (uint32_t)nfds;
	for (size_t i = 0; i < nfds; i++)
		out->fds[i] = fds[i];
	return 0;
}

int dmb_wire_encode(void *buf, size_t cap, const struct dmb_msg *msg)
{
	/* The walker takes non-const pointers in both modes: work on a copy. */
	static const int no_fds[DMB_WIRE_MAX_FDS] = { -1, -1, -1, -1 };
	struct dmb_msg m, check;
	enum sender who;
	struct cur c;
	uint16_t version;
	int ret;

	if (buf && msg && !msg->nfds && msg->status < 0 &&
	    is_unknown_request_reply(msg->op))
		return dmb_wire_encode_error(buf, cap, msg->op & (uint16_t)~DMB_WIRE_OP_REPLY,
					     msg->serial, msg->status);
	if (!buf || !msg || msg->nfds > DMB_WIRE_MAX_FDS ||
	    !op_known(msg->op, &who))
		return -EINVAL;
	m = *msg;
	version = m.version;
	if (!version)
		version = (m.op == DMB_OP_HELLO || m.op == DMB_OP_HELLO_REPLY)
				  ? DMB_WIRE_VERSION_BASE
				  : DMB_WIRE_VERSION_MAX;

	if (cap > DMB_WIRE_MAX_MSG)
		cap = DMB_WIRE_MAX_MSG;
	if (cap < DMB_WIRE_HDR_SIZE)
		return -ENOSPC;
	c = (struct cur){ .p = buf, .len = cap, .pos = DMB_WIRE_HDR_SIZE,
			  .enc = true };
	walk_body(&c, &m);
	if (c.err)
		return c.err;

	put32(c.p, DMB_WIRE_MAGIC);
	put16(c.p + 4, version);
	put16(c.p + 6, m.op);
	put32(c.p + 8, (uint32_t)c.pos);
	put16(c.p + 12, (uint16_t)m.nfds);
	put16(c.p + 14, 0);
	put64(c.p + 16, m.serial);

	/* Only what a peer accepts leaves this function. */
	ret = dmb_wire_decode(buf, c.pos, no_fds, m.nfds,
			      who == FROM_CLIENT ? DMB_WIRE_SERVER
						 : DMB_WIRE_CLIENT,
			      &check);
	if (ret < 0)
		return -EINVAL;
	return (int)c.pos;
}

int dmb_wire_encode_error(void *buf, size_t cap, uint16_t request_op,
			  uint64_t serial, int status)
{
	struct dmb_msg m;
	uint8_t *p = buf;

	if (request_op < DMB_OP_HELLO || request_op >= DMB_WIRE_OP_EVENT ||
	    status >= 0 || status < -DMB_WIRE_MAX_ERRNO || !serial || !buf)
		return -EINVAL;
	if (request_op > DMB_OP__LAST_REQUEST) {
		/* A request this version does not know: the bare failed
		 * reply that any client can parse (decode_bare_error()). */
		if (cap < DMB_WIRE_HDR_SIZE + DMB_WIRE_REPLY_HDR_SIZE)
			return -ENOSPC;
		memset(p, 0, DMB_WIRE_HDR_SIZE + DMB_WIRE_REPLY_HDR_SIZE);
		put32(p, DMB_WIRE_MAGIC);
		put16(p + 4, DMB_WIRE_VERSION_BASE);
		put16(p + 6, DMB_WIRE_OP_REPLY | request_op);
		put32(p + 8, DMB_WIRE_HDR_SIZE + DMB_WIRE_REPLY_HDR_SIZE);
		put64(p + 16, serial);
		put32(p + DMB_WIRE_HDR_SIZE, (uint32_t)status);
		return DMB_WIRE_HDR_SIZE + DMB_WIRE_REPLY_HDR_SIZE;
	}
	reset(&m);
	m.op = DMB_WIRE_OP_REPLY | request_op;
	m.serial = serial;
	m.status = status;
	return dmb_wire_encode(buf, cap, &m);
}

int dmb_wire_decode_fdless(const void *data, size_t len, enum dmb_wire_side side,
			   struct dmb_msg *out)
{
	static const int none[DMB_WIRE_MAX_FDS] = { -1, -1, -1, -1 };
	const uint8_t *p = data;
	size_t nfds;

	if (len < DMB_WIRE_HDR_SIZE)
		return -EBADMSG;
	nfds = (size_t)p[12] | (size_t)p[13] << 8;
	if (nfds > DMB_WIRE_MAX_FDS)
		return -EMSGSIZE;
	return dmb_wire_decode(data, len, none, nfds, side, out);
}
