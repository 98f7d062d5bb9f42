/* SPDX-License-Identifier: MIT */
/*
 * Wire codec (docs/protocol.md). Pure functions only: no I/O, no
 * allocation, no global state, so the fuzzer can drive them directly.
 *
 * One descriptor per opcode (the table below) holds everything the codec
 * knows about it: name, kind and so direction, the object it names, its fd
 * count, a walker that lays out the body field by field and a check of the
 * decoded fields. The walker runs in decode mode (bytes -> struct) or
 * encode mode (struct -> bytes), so the two directions cannot drift apart;
 * the encoder re-decodes what it wrote.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>

#include "wire.h"

_Static_assert(DMB_WIRE_NAME_LEN == DMABUF_NAME_LEN, "name length");
_Static_assert(DMB_WIRE_FENCE_READ == DMABUF_SYNC_READ, "fence flags");
_Static_assert(DMB_WIRE_FENCE_WRITE == DMABUF_SYNC_WRITE, "fence flags");
_Static_assert(DMB_WIRE_MAX_INLINE_SG >= 64, "inline sg room");

/* DMB_WIRE_MSG_FIXED covers every member's fixed fields: what a decode
 * clears is all a message may leave unwritten (a new member of the union
 * gets its line here). */
#define FIXED_END(member) (offsetof(struct dmb_msg, u) + sizeof(((struct dmb_msg *)0)->u.member))
#define FIXED_OK(end) _Static_assert((end) <= DMB_WIRE_MSG_FIXED, "fixed part: " #end)
FIXED_OK(offsetof(struct dmb_msg, u.map_reply.sg));
FIXED_OK(offsetof(struct dmb_msg, u.backing.r));
FIXED_OK(FIXED_END(hello));
FIXED_OK(FIXED_END(hello_reply));
FIXED_OK(FIXED_END(import));
FIXED_OK(FIXED_END(id));
FIXED_OK(FIXED_END(attach));
FIXED_OK(FIXED_END(attach_reply));
FIXED_OK(FIXED_END(map));
FIXED_OK(FIXED_END(cpu_access));
FIXED_OK(FIXED_END(cache_open));
FIXED_OK(FIXED_END(set_name));
FIXED_OK(FIXED_END(describe_reply));
FIXED_OK(FIXED_END(fence_attach));
FIXED_OK(FIXED_END(fence_export));
FIXED_OK(FIXED_END(get_backing));

/* ---- little-endian accessors (wire.h) ------------------------------------ */

#define get16 dmb_wire_get16
#define get32 dmb_wire_get32
#define get64 dmb_wire_get64
#define put16 dmb_wire_put16
#define put32 dmb_wire_put32
#define put64 dmb_wire_put64

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

struct dmb_wire_cur {
	uint8_t *p;
	size_t len;	/* decode: bytes available; encode: capacity */
	size_t pos;
	bool enc;
	uint16_t version; /* the message's: bodies may depend on it */
	int err;	/* first error, 0 while fine */
};

static void fail(struct dmb_wire_cur *c, int err)
{
	if (!c->err)
		c->err = err;
}

/* Reserves n bytes at the cursor; NULL (and an error) if they do not fit. */
static uint8_t *take(struct dmb_wire_cur *c, size_t n)
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

static size_t left(const struct dmb_wire_cur *c)
{
	return c->len - c->pos;
}

static void f16(struct dmb_wire_cur *c, uint16_t *v)
{
	uint8_t *p = take(c, 2);

	if (!p)
		return;
	if (c->enc)
		put16(p, *v);
	else
		*v = get16(p);
}

static void f32(struct dmb_wire_cur *c, uint32_t *v)
{
	uint8_t *p = take(c, 4);

	if (!p)
		return;
	if (c->enc)
		put32(p, *v);
	else
		*v = get32(p);
}

static void fi32(struct dmb_wire_cur *c, int32_t *v)
{
	uint32_t u = (uint32_t)*v;

	f32(c, &u);
	if (!c->enc)
		*v = (int32_t)u;
}

static void f64(struct dmb_wire_cur *c, uint64_t *v)
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
static void frsv(struct dmb_wire_cur *c, size_t n)
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
static void fname(struct dmb_wire_cur *c, char *name)
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
static bool fcount(struct dmb_wire_cur *c, uint32_t count, size_t rec, size_t room)
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

static void franges(struct dmb_wire_cur *c, struct dmb_wire_ranges *b)
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

static void fsg(struct dmb_wire_cur *c, struct dmabuf_sg_entry *e)
{
	f64(c, &e->offset);
	f64(c, &e->length);
	f64(c, &e->phys);
}

/* ---- bodies: one walker per layout ------------------------------------------ */

static void walk_hello(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f16(c, &m->u.hello.min_version);
	f16(c, &m->u.hello.max_version);
	f32(c, &m->u.hello.flags);
	f32(c, &m->u.hello.pid);
	frsv(c, 4);
}

static void walk_import(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f32(c, &m->u.import.flags);
	frsv(c, 4);
	/* Added at the end of the body by version 3 (§8). */
	if (c->version >= DMB_WIRE_VERSION_CLIENT_IDS)
		f64(c, &m->u.import.buffer_id);
	else if (c->enc && m->u.import.buffer_id)
		fail(c, -EINVAL); /* an older version has no room for it */
}

/* RELEASE, DETACH, DESCRIBE, PIN, UNPIN, MOVE_NOTIFY */
static void walk_id(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f64(c, &m->u.id.id);
}

static void walk_attach(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	struct dmb_wire_attach *a = &m->u.attach;

	f64(c, &a->buffer_id);
	fname(c, a->name);
	f32(c, &a->dma_mask_bits);
	f32(c, &a->dev_flags);
	f32(c, &a->attach_flags);
	frsv(c, 4);
	f64(c, &a->max_segment_size);
	f64(c, &a->segment_boundary);
	f64(c, &a->alignment);
}

/* UNMAP, and MAP before version 7 */
static void walk_map(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f64(c, &m->u.map.id);
	f32(c, &m->u.map.dir);
	frsv(c, 4);
	if (c->enc && (m->u.map.flags || m->u.map.seq || m->u.map.pub))
		fail(c, -EINVAL); /* no room for them */
}

/* MAP: version 7 adds its flags and seq where the reserved word was. */
static void walk_map_req(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	if (c->version < DMB_WIRE_VERSION_MAP_CACHE) {
		walk_map(c, m);
		return;
	}
	f64(c, &m->u.map.id);
	f32(c, &m->u.map.dir);
	f32(c, &m->u.map.flags);
	f32(c, &m->u.map.seq);
	if (c->version >= DMB_WIRE_VERSION_PREPUB) {
		f32(c, &m->u.map.pub);
		return;
	}
	frsv(c, 4);
	if (c->enc && m->u.map.pub)
		fail(c, -EINVAL); /* no room for it */
}

/* BEGIN_CPU_ACCESS, END_CPU_ACCESS */
static void walk_cpu_access(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f64(c, &m->u.cpu_access.buffer_id);
	f32(c, &m->u.cpu_access.dir);
	frsv(c, 4);
}

static void walk_set_name(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f64(c, &m->u.set_name.buffer_id);
	fname(c, m->u.set_name.name);
}

static void walk_fence_attach(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f64(c, &m->u.fence_attach.buffer_id);
	f32(c, &m->u.fence_attach.usage);
	frsv(c, 4);
}

static void walk_fence_export(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f64(c, &m->u.fence_export.buffer_id);
	f32(c, &m->u.fence_export.flags);
	frsv(c, 4);
}

static void walk_get_backing(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f64(c, &m->u.get_backing.buffer_id);
	f32(c, &m->u.get_backing.first);
	frsv(c, 4);
}

static void walk_cache_open(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f32(c, &m->u.cache_open.flags);
	frsv(c, 4);
}

static void walk_hello_reply(struct dmb_wire_cur *c, struct dmb_msg *m)
{
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
}

static void walk_import_reply(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	struct dmb_wire_import_reply *r = &m->u.import_reply;

	f64(c, &r->buffer_id);
	f64(c, &r->size);
	f32(c, &r->flags);
	f32(c, &r->info_flags);
	fname(c, r->exp_name);
	fname(c, r->name);
	franges(c, &r->backing);
}

static void walk_attach_reply(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	f64(c, &m->u.attach_reply.attachment_id);
}

static void walk_map_reply(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	struct dmb_wire_map_reply *r = &m->u.map_reply;

	f64(c, &r->mapping_id);
	f64(c, &r->size);
	f32(c, &r->count);
	f32(c, &r->flags);
	if (!c->err && (r->flags & DMB_WIRE_MAP_CACHE)) {
		f32(c, &r->slot);
		f32(c, &r->seq);
	} else if (c->enc && (r->slot || r->seq)) {
		fail(c, -EINVAL);
	}
	if (c->err || (r->flags & DMB_WIRE_MAP_SG_MEMFD))
		return; /* entries are in the memfd; checked there */
	if (!fcount(c, r->count, DMB_WIRE_SG_ENTRY_SIZE,
		    (r->flags & DMB_WIRE_MAP_CACHE) ? DMB_WIRE_MAX_INLINE_SG_CACHE
						     : DMB_WIRE_MAX_INLINE_SG))
		return;
	for (uint32_t i = 0; i < r->count; i++)
		fsg(c, &r->sg[i]);
}

static void walk_describe_reply(struct dmb_wire_cur *c, struct dmb_msg *m)
{
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
}

static void walk_get_backing_reply(struct dmb_wire_cur *c, struct dmb_msg *m)
{
	franges(c, &m->u.backing);
}

/* ---- field checks ---------------------------------------------------------------- */

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
	return flags == O_RDONLY || flags == O_WRONLY || flags == O_RDWR;
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

static int check_hello(const struct dmb_msg *m)
{
	const struct dmb_wire_hello *h = &m->u.hello;

	if (h->min_version < 1 || h->min_version > h->max_version ||
	    h->flags || h->pid > INT32_MAX)
		return -EPROTO;
	return 0;
}

static int check_import(const struct dmb_msg *m)
{
	if (m->u.import.flags)
		return -EPROTO;
	/* A client-chosen id from version 3 on, none before. */
	if (m->version >= DMB_WIRE_VERSION_CLIENT_IDS)
		return m->u.import.buffer_id & DMB_WIRE_CLIENT_ID_BIT ? 0 : -EPROTO;
	return m->u.import.buffer_id ? -EPROTO : 0;
}

static int check_attach(const struct dmb_msg *m)
{
	const struct dmb_wire_attach *a = &m->u.attach;

	if (a->dma_mask_bits < DMB_WIRE_DEV_MASK_MIN ||
	    a->dma_mask_bits > DMB_WIRE_DEV_MASK_MAX)
		return -EPROTO;
	if (a->dev_flags & ~(uint32_t)DMB_WIRE_DEVICE_FLAGS_MASK)
		return -EPROTO;
	if (a->attach_flags & ~DMB_WIRE_ATTACH_DYNAMIC)
		return -EPROTO;
	/* Effective values travel, never the "0 = default" shorthand. */
	if (a->max_segment_size == 0 || !page_aligned(a->max_segment_size))
		return -EPROTO;
	/* A boundary is a mask 2^n - 1, at least a page. */
	if (a->segment_boundary < DMB_WIRE_PAGE_SIZE - 1 ||
	    (a->segment_boundary & (a->segment_boundary + 1)) != 0)
		return -EPROTO;
	if (a->alignment < DMB_WIRE_PAGE_SIZE ||
	    (a->alignment & (a->alignment - 1)) != 0)
		return -EPROTO;
	return 0;
}

static int check_map(const struct dmb_msg *m)
{
	return dir_ok(m->u.map.dir) ? 0 : -EPROTO;
}

/* MAP: a one-way one is announced and names an even, non-zero seq; an
 * answered one names none. */
static int check_map_req(const struct dmb_msg *m)
{
	const struct dmb_wire_map *r = &m->u.map;

	uint32_t known = DMB_WIRE_MAP_ANNOUNCED |
			 (m->version >= DMB_WIRE_VERSION_PREPUB ? DMB_WIRE_MAP_PREPUB : 0);

	if (!dir_ok(r->dir) || (r->flags & ~known))
		return -EPROTO;
	/* Version 8: a slot taken from a published entry is announced, and
	 * names the entry's generation (even, non-zero). */
	if ((r->flags & DMB_WIRE_MAP_PREPUB)
		    ? !(r->flags & DMB_WIRE_MAP_ANNOUNCED) || !r->pub || (r->pub & 1)
		    : r->pub != 0)
		return -EPROTO;
	if (m->flags & DMB_WIRE_F_NO_REPLY)
		return (r->flags & DMB_WIRE_MAP_ANNOUNCED) && r->seq && !(r->seq & 1)
			       ? 0 : -EPROTO;
	return r->seq ? -EPROTO : 0;
}

static int check_cache_open(const struct dmb_msg *m)
{
	return m->u.cache_open.flags ? -EPROTO : 0;
}

static int check_cpu_access(const struct dmb_msg *m)
{
	return dir_ok(m->u.cpu_access.dir) ? 0 : -EPROTO;
}

static int check_fence_attach(const struct dmb_msg *m)
{
	return m->u.fence_attach.usage > DMB_WIRE_USAGE_MAX ? -EPROTO : 0;
}

static int check_fence_export(const struct dmb_msg *m)
{
	uint32_t f = m->u.fence_export.flags;

	if (f == 0 || (f & ~(DMB_WIRE_FENCE_READ | DMB_WIRE_FENCE_WRITE)))
		return -EPROTO;
	return 0;
}

static int check_get_backing(const struct dmb_msg *m)
{
	return m->u.get_backing.first >= DMB_WIRE_MAX_BACKING_RANGES ? -EPROTO : 0;
}

static int check_hello_reply(const struct dmb_msg *m)
{
	const struct dmb_wire_hello_reply *r = &m->u.hello_reply;

	if (r->flags || r->pid > INT32_MAX ||
	    r->max_msg < DMB_WIRE_HDR_SIZE + 128 ||
	    r->max_msg > DMB_WIRE_MAX_MSG ||
	    r->max_fds < 1 || r->max_fds > DMB_WIRE_MAX_FDS ||
	    !r->max_buffers || !r->max_attachments || !r->max_mappings)
		return -EPROTO;
	/* Well-formed, but a version this build cannot speak. */
	if (r->version < DMB_WIRE_VERSION_MIN || r->version > DMB_WIRE_VERSION_MAX)
		return -EPROTONOSUPPORT;
	return 0;
}

static int check_import_reply(const struct dmb_msg *m)
{
	const struct dmb_wire_import_reply *r = &m->u.import_reply;

	if (!r->buffer_id || !buffer_size_ok(r->size) || !access_ok(r->flags) ||
	    (r->info_flags & ~DMB_WIRE_INFO_NAME_SET))
		return -EPROTO;
	return check_ranges(&r->backing, true, r->size);
}

static int check_attach_reply(const struct dmb_msg *m)
{
	return m->u.attach_reply.attachment_id ? 0 : -EPROTO;
}

static int check_map_reply(const struct dmb_msg *m)
{
	const struct dmb_wire_map_reply *r = &m->u.map_reply;
	int ret;

	if (!r->mapping_id || !buffer_size_ok(r->size) ||
	    (r->flags & ~(DMB_WIRE_MAP_SG_MEMFD | DMB_WIRE_MAP_CACHE)) || r->count == 0)
		return -EPROTO;
	if ((r->flags & DMB_WIRE_MAP_CACHE) &&
	    (m->version < DMB_WIRE_VERSION_MAP_CACHE || r->slot >= DMB_WIRE_CACHE_SLOTS ||
	     !r->seq || (r->seq & 1)))
		return -EPROTO;
	if (r->flags & DMB_WIRE_MAP_SG_MEMFD) {
		/* Each entry covers at least a page. */
		if (r->count > DMB_WIRE_MAX_SG_ENTRIES ||
		    r->count > r->size / DMB_WIRE_PAGE_SIZE)
			return -EPROTO;
		return 1;
	}
	ret = dmb_wire_check_sg(r->sg, r->count, r->size);
	return ret < 0 ? ret : 0;
}

static int check_describe_reply(const struct dmb_msg *m)
{
	const struct dmb_wire_describe_reply *r = &m->u.describe_reply;

	if (!buffer_size_ok(r->size) || !access_ok(r->flags) ||
	    (r->info_flags & ~DMB_WIRE_INFO_MASK))
		return -EPROTO;
	return 0;
}

static int check_get_backing_reply(const struct dmb_msg *m)
{
	return check_ranges(&m->u.backing, false, 0);
}

/* ---- the opcode table ------------------------------------------------------------- */

/* Slots: requests by opcode, then their replies, then events, no holes. */
#define NREQ ((size_t)DMB_OP__LAST_REQUEST)
#define NEVENT ((size_t)(DMB_OP__LAST_EVENT - DMB_OP__FIRST_EVENT + 1))
#define REQ(op) ((size_t)(op) - 1)
#define REP(op) (NREQ + REQ(op))
#define EVT(op) (2 * NREQ + (size_t)(op) - DMB_OP__FIRST_EVENT)
#define ID(member) offsetof(struct dmb_msg, u.member)

/* target_: NONE_ or BUF_/ATT_/MAP_(the member holding the id);
 * flags_: PLAIN, BASE (header at DMB_WIRE_VERSION_BASE), RESERVED or
 * ONE_WAY (may be sent with DMB_WIRE_F_NO_REPLY: the kernel's operation
 * returns void), ONE_WAY_V4 (ATTACH: NO_REPLY from version 4) or QUIET
 * (may be sent with DMB_WIRE_F_QUIET). */
#define REQUEST(op_, name_, target_, nfds_, walk_, check_, flags_)             \
	[REQ(DMB_OP_##op_)] = { .op = DMB_OP_##op_, .name = name_,              \
				.kind = DMB_WIRE_REQUEST, target_,              \
				.nfds = nfds_, .walk = walk_, .check = check_,  \
				flags_ }
#define REPLY(op_, name_, nfds_, walk_, check_, flags_)                        \
	[REP(DMB_OP_##op_)] = { .op = DMB_OP_##op_##_REPLY, .name = name_,      \
				.kind = DMB_WIRE_REPLY, .nfds = nfds_,          \
				.walk = walk_, .check = check_, flags_ }
#define NONE_ .target = DMB_WIRE_TARGET_NONE
#define BUF_(member) .target = DMB_WIRE_TARGET_BUFFER, .target_off = ID(member)
#define ATT_(member) .target = DMB_WIRE_TARGET_ATTACHMENT, .target_off = ID(member)
#define MAP_(member) .target = DMB_WIRE_TARGET_MAPPING, .target_off = ID(member)
#define PLAIN .reserved = false
#define BASE .base_version = true
#define RESERVED .reserved = true
#define ONE_WAY .one_way = true, .no_reply_since = DMB_WIRE_VERSION_FLAGS
/* ATTACH: one-way where the importer knows the answer (version 4) */
#define ONE_WAY_V4 .no_reply_since = DMB_WIRE_VERSION_ONE_WAY_ATTACH
#define QUIET .quiet = true
/* MAP: one-way when answered from the published state (version 7) */
#define ONE_WAY_V7 .no_reply_since = DMB_WIRE_VERSION_MAP_CACHE
#define VAR DMB_WIRE_FDS_VARIABLE

static const struct dmb_wire_desc table[2 * NREQ + NEVENT] = {
	REQUEST(HELLO, "HELLO", NONE_, 0, walk_hello, check_hello, BASE),
	REQUEST(IMPORT, "IMPORT", NONE_, 1, walk_import, check_import, QUIET),
	REQUEST(RELEASE, "RELEASE", BUF_(id.id), 0, walk_id, NULL, ONE_WAY),
	REQUEST(ATTACH, "ATTACH", BUF_(attach.buffer_id), 0, walk_attach,
		check_attach, ONE_WAY_V4),
	REQUEST(DETACH, "DETACH", ATT_(id.id), 0, walk_id, NULL, ONE_WAY),
	REQUEST(MAP, "MAP", ATT_(map.id), 0, walk_map_req, check_map_req,
		ONE_WAY_V7),
	REQUEST(UNMAP, "UNMAP", MAP_(map.id), 0, walk_map, check_map, ONE_WAY),
	REQUEST(BEGIN_CPU_ACCESS, "BEGIN_CPU_ACCESS", BUF_(cpu_access.buffer_id),
		0, walk_cpu_access, check_cpu_access, PLAIN),
	REQUEST(END_CPU_ACCESS, "END_CPU_ACCESS", BUF_(cpu_access.buffer_id),
		0, walk_cpu_access, check_cpu_access, PLAIN),
	REQUEST(SET_NAME, "SET_NAME", BUF_(set_name.buffer_id), 0,
		walk_set_name, NULL, PLAIN),
	REQUEST(DESCRIBE, "DESCRIBE", BUF_(id.id), 0, walk_id, NULL, PLAIN),
	REQUEST(FENCE_ATTACH, "FENCE_ATTACH", BUF_(fence_attach.buffer_id), 1,
		walk_fence_attach, check_fence_attach, PLAIN),
	REQUEST(FENCE_EXPORT, "FENCE_EXPORT", BUF_(fence_export.buffer_id), 0,
		walk_fence_export, check_fence_export, PLAIN),
	/* udmabuf backing does not travel yet: exporters answer -EOPNOTSUPP */
	REQUEST(GET_BACKING, "GET_BACKING", BUF_(get_backing.buffer_id), 0,
		walk_get_backing, check_get_backing, PLAIN),
	/* dma_buf_pin() / dma_buf_unpin() of a DYNAMIC attachment; unpin
	 * returns void in the kernel */
	REQUEST(PIN, "PIN", ATT_(id.id), 0, walk_id, NULL, PLAIN),
	REQUEST(UNPIN, "UNPIN", ATT_(id.id), 0, walk_id, NULL, ONE_WAY),
	/* version 7: the importer's page for the exporter's (§6 item 5a) */
	REQUEST(CACHE_OPEN, "CACHE_OPEN", NONE_, 1, walk_cache_open,
		check_cache_open, PLAIN),

	REPLY(HELLO, "HELLO_REPLY", 0, walk_hello_reply, check_hello_reply, BASE),
	REPLY(IMPORT, "IMPORT_REPLY", VAR, walk_import_reply, check_import_reply,
	      PLAIN),
	REPLY(RELEASE, "RELEASE_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(ATTACH, "ATTACH_REPLY", 0, walk_attach_reply, check_attach_reply,
	      PLAIN),
	REPLY(DETACH, "DETACH_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(MAP, "MAP_REPLY", VAR, walk_map_reply, check_map_reply, PLAIN),
	REPLY(UNMAP, "UNMAP_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(BEGIN_CPU_ACCESS, "BEGIN_CPU_ACCESS_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(END_CPU_ACCESS, "END_CPU_ACCESS_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(SET_NAME, "SET_NAME_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(DESCRIBE, "DESCRIBE_REPLY", 0, walk_describe_reply,
	      check_describe_reply, PLAIN),
	REPLY(FENCE_ATTACH, "FENCE_ATTACH_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(FENCE_EXPORT, "FENCE_EXPORT_REPLY", 1, NULL, NULL, PLAIN),
	REPLY(GET_BACKING, "GET_BACKING_REPLY", VAR, walk_get_backing_reply,
	      check_get_backing_reply, PLAIN),
	REPLY(PIN, "PIN_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(UNPIN, "UNPIN_REPLY", 0, NULL, NULL, PLAIN),
	REPLY(CACHE_OPEN, "CACHE_OPEN_REPLY", 1, NULL, NULL, PLAIN),

	/* Sent by the exporter, serial 0, for an attachment made with the
	 * ATTACH DYNAMIC flag: the buffer moved or was revoked. */
	[EVT(DMB_OP_MOVE_NOTIFY)] = {
		.op = DMB_OP_MOVE_NOTIFY, .name = "MOVE_NOTIFY",
		.kind = DMB_WIRE_EVENT, ATT_(id.id), .nfds = 0,
		.walk = walk_id, PLAIN },
};

bool dmb_wire_may_no_reply(const struct dmb_wire_desc *d, uint16_t version)
{
	return d && d->kind == DMB_WIRE_REQUEST && d->no_reply_since &&
	       version >= d->no_reply_since;
}

const struct dmb_wire_desc *dmb_wire_op_desc(uint16_t op)
{
	uint16_t low = op & (uint16_t)~DMB_WIRE_OP_REPLY;
	size_t slot;

	if (op >= DMB_OP_HELLO && op <= DMB_OP__LAST_REQUEST)
		slot = REQ(op);
	else if ((op & DMB_WIRE_OP_REPLY) && low >= DMB_OP_HELLO &&
		 low <= DMB_OP__LAST_REQUEST)
		slot = REP(low);
	else if (op >= DMB_OP__FIRST_EVENT && op <= DMB_OP__LAST_EVENT)
		slot = EVT(op);
	else
		return NULL;
	return table[slot].op == op ? &table[slot] : NULL;
}

const struct dmb_wire_desc *dmb_wire_op_table(size_t *count)
{
	if (count)
		*count = sizeof(table) / sizeof(table[0]);
	return table;
}

void dmb_wire_msg_init(struct dmb_msg *m, uint16_t op, uint64_t target_id)
{
	const struct dmb_wire_desc *d = dmb_wire_op_desc(op);

	memset(m, 0, DMB_WIRE_MSG_FIXED);
	for (size_t i = 0; i < DMB_WIRE_MAX_FDS; i++)
		m->fds[i] = -1;
	m->op = op;
	if (d && d->target != DMB_WIRE_TARGET_NONE)
		memcpy((uint8_t *)m + d->target_off, &target_id, sizeof(target_id));
}

static uint64_t target_id(const struct dmb_wire_desc *d, const struct dmb_msg *m)
{
	uint64_t id = 0;

	if (d && d->kind != DMB_WIRE_REPLY && d->target != DMB_WIRE_TARGET_NONE)
		memcpy(&id, (const uint8_t *)m + d->target_off, sizeof(id));
	return id;
}

uint64_t dmb_wire_target_id(const struct dmb_msg *m)
{
	return target_id(dmb_wire_op_desc(m->op), m);
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
	const struct dmb_wire_desc *d = dmb_wire_op_desc(op);

	if (d)
		return d->name;
	return is_unknown_request_reply(op) ? "UNKNOWN_REPLY" : "?";
}

/* Which side an opcode comes from, by its class bits (known or not). */
static enum dmb_wire_side sent_by(uint16_t op)
{
	return (op & (DMB_WIRE_OP_REPLY | DMB_WIRE_OP_EVENT)) ? DMB_WIRE_SERVER
							      : DMB_WIRE_CLIENT;
}

/*
 * Field ranges of a decoded message, and the number of fds it must carry.
 * Returns that number (>= 0), -EPROTO, or -EPROTONOSUPPORT.
 */
static int check_fields(const struct dmb_wire_desc *d, const struct dmb_msg *m)
{
	int ret;

	if (d->kind == DMB_WIRE_REPLY) {
		if (m->status > 0 || m->status < -DMB_WIRE_MAX_ERRNO)
			return -EPROTO;
		if (m->status < 0)
			return 0;
	}
	/* Every id a client or server names is non-zero. */
	if (d->target != DMB_WIRE_TARGET_NONE && !target_id(d, m))
		return -EPROTO;
	ret = d->check ? d->check(m) : 0;
	if (ret < 0)
		return ret;
	return d->nfds == DMB_WIRE_FDS_VARIABLE ? ret : d->nfds;
}

/* The body after the header: a reply's status first (a failed reply
 * carries nothing else), then the opcode's own layout. */
static void walk_body(const struct dmb_wire_desc *d, struct dmb_wire_cur *c,
		      struct dmb_msg *m)
{
	if (d->kind == DMB_WIRE_REPLY) {
		fi32(c, &m->status);
		frsv(c, 4);
		if (m->status > 0 || m->status < -DMB_WIRE_MAX_ERRNO)
			fail(c, c->enc ? -EINVAL : -EPROTO);
		if (c->err || m->status != 0)
			return;
	}
	if (d->walk)
		d->walk(c, m);
}

/* ---- decode / encode ------------------------------------------------------------ */

int dmb_wire_split(const void *data, size_t len, size_t nfds, bool fds_known,
		   struct dmb_wire_part *parts, size_t max)
{
	const uint8_t *p = data;
	size_t off = 0, fd = 0, n = 0;

	if (!data || !parts || !max)
		return -EINVAL;
	if (max > DMB_WIRE_MAX_PACKED)
		max = DMB_WIRE_MAX_PACKED;
	while (off < len) {
		uint32_t mlen;
		uint16_t mfds;

		if (len - off < DMB_WIRE_HDR_SIZE || n == max)
			return -EPROTO;
		mlen = get32(p + off + DMB_WIRE_HDR_LENGTH);
		mfds = get16(p + off + DMB_WIRE_HDR_NFDS);
		if (mlen < DMB_WIRE_HDR_SIZE || mlen > len - off ||
		    (fds_known && mfds > nfds - fd))
			return -EPROTO;
		parts[n++] = (struct dmb_wire_part){ (uint32_t)off, mlen,
						     (uint16_t)fd, mfds };
		off += mlen;
		fd += mfds;
	}
	if (!n || (fds_known && fd != nfds))
		return -EPROTO;
	return (int)n;
}

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
	memset(out, 0, DMB_WIRE_MSG_FIXED);
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
	if (len != DMB_WIRE_REPLY_PAYLOAD || nfds)
		return reject(out, -EOPNOTSUPP);
	status = (int32_t)get32(p + DMB_WIRE_REPLY_STATUS);
	if (status >= 0)
		return reject(out, -EOPNOTSUPP);
	if (out->serial == 0 || get32(p + DMB_WIRE_REPLY_RESERVED) != 0 ||
	    status < -DMB_WIRE_MAX_ERRNO)
		return reject(out, -EPROTO);
	out->status = status;
	return 0;
}

int dmb_wire_decode(const void *data, size_t len, const int *fds, size_t nfds,
		    enum dmb_wire_side receiver, struct dmb_msg *out)
{
	const struct dmb_wire_desc *d;
	const uint8_t *p = data;
	struct dmb_wire_cur c;
	uint32_t hlen;
	uint16_t version, op, hfds, hflags;
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

	if (get32(p + DMB_WIRE_HDR_MAGIC) != DMB_WIRE_MAGIC)
		return -EPROTO;
	version = get16(p + DMB_WIRE_HDR_VERSION);
	op = get16(p + DMB_WIRE_HDR_OP);
	hlen = get32(p + DMB_WIRE_HDR_LENGTH);
	hfds = get16(p + DMB_WIRE_HDR_NFDS);
	if (version < DMB_WIRE_VERSION_MIN || version > DMB_WIRE_VERSION_MAX)
		return -EPROTONOSUPPORT;
	if (hlen != len)
		return -EBADMSG;
	if (hfds > DMB_WIRE_MAX_FDS)
		return -EMSGSIZE;
	if (hfds != nfds)
		return -EBADMSG;
	hflags = get16(p + DMB_WIRE_HDR_FLAGS);
	if (hflags & ~DMB_WIRE_F_MASK ||
	    (hflags && version < DMB_WIRE_VERSION_FLAGS))
		return -EPROTO;

	out->version = version;
	out->op = op;
	out->serial = get64(p + DMB_WIRE_HDR_SERIAL);

	d = dmb_wire_op_desc(op);
	if (!d && receiver == DMB_WIRE_CLIENT && is_unknown_request_reply(op))
		/* A failed reply has no body, so it parses whatever request it
		 * answers: a newer client learns its request is unknown. */
		return hflags ? reject(out, -EPROTO)
			      : decode_bare_error(p, len, nfds, out);
	/* From the wrong side it is a direction error, else unknown. */
	if (sent_by(op) == receiver)
		return reject(out, -EPROTO);
	if (!d)
		return reject(out, -EOPNOTSUPP);
	if (d->base_version && version != DMB_WIRE_VERSION_BASE)
		return reject(out, -EPROTONOSUPPORT);
	if (d->kind == DMB_WIRE_EVENT ? out->serial != 0 : out->serial == 0)
		return reject(out, -EPROTO);
	if ((hflags & DMB_WIRE_F_NO_REPLY) && !dmb_wire_may_no_reply(d, version))
		return reject(out, -EPROTO);
	if ((hflags & DMB_WIRE_F_QUIET) &&
	    (!d->quiet || version < DMB_WIRE_VERSION_CLIENT_IDS))
		return reject(out, -EPROTO);
	out->flags = hflags;

	c = (struct dmb_wire_cur){ .p = (uint8_t *)p, .len = len,
				   .pos = DMB_WIRE_BODY, .enc = false,
				   .version = version };
	walk_body(d, &c, out);
	if (c.err)
		return reject(out, c.err);
	if (c.pos != len)
		return reject(out, -EBADMSG);

	want = check_fields(d, out);
	if (want < 0)
		return reject(out, want);
	if ((size_t)want != nfds)
		return reject(out, -EBADMSG);

	out->nfds = (uint32_t)nfds;
	for (size_t i = 0; i < nfds; i++)
		out->fds[i] = fds[i];
	return 0;
}

int dmb_wire_encode(void *buf, size_t cap, const struct dmb_msg *msg)
{
	static const int no_fds[DMB_WIRE_MAX_FDS] = { -1, -1, -1, -1 };
	const struct dmb_wire_desc *d;
	struct dmb_msg check;
	struct dmb_wire_cur c;
	uint16_t version;
	int ret;

	if (buf && msg && !msg->nfds && msg->status < 0 &&
	    is_unknown_request_reply(msg->op))
		return dmb_wire_encode_error(buf, cap, msg->op & (uint16_t)~DMB_WIRE_OP_REPLY,
					     msg->serial, msg->status);
	if (!buf || !msg || msg->nfds > DMB_WIRE_MAX_FDS ||
	    !(d = dmb_wire_op_desc(msg->op)))
		return -EINVAL;
	version = msg->version;
	if (!version)
		version = d->base_version ? DMB_WIRE_VERSION_BASE : DMB_WIRE_VERSION_MAX;

	if (cap > DMB_WIRE_MAX_MSG)
		cap = DMB_WIRE_MAX_MSG;
	if (cap < DMB_WIRE_HDR_SIZE)
		return -ENOSPC;
	/* The walker takes a non-const message in both modes; in encode
	 * mode it only reads it (no copy of the 4 KiB struct), and the
	 * version it lays the body out for is the cursor's. */
	c = (struct dmb_wire_cur){ .p = buf, .len = cap, .pos = DMB_WIRE_BODY,
				   .enc = true, .version = version };
	walk_body(d, &c, (struct dmb_msg *)msg);
	if (c.err)
		return c.err;

	put32(c.p + DMB_WIRE_HDR_MAGIC, DMB_WIRE_MAGIC);
	put16(c.p + DMB_WIRE_HDR_VERSION, version);
	put16(c.p + DMB_WIRE_HDR_OP, msg->op);
	put32(c.p + DMB_WIRE_HDR_LENGTH, (uint32_t)c.pos);
	put16(c.p + DMB_WIRE_HDR_NFDS, (uint16_t)msg->nfds);
	put16(c.p + DMB_WIRE_HDR_FLAGS, msg->flags);
	put64(c.p + DMB_WIRE_HDR_SERIAL, msg->serial);

	/* Only what a peer accepts leaves this function. */
	ret = dmb_wire_decode(buf, c.pos, no_fds, msg->nfds,
			      d->kind == DMB_WIRE_REQUEST ? DMB_WIRE_SERVER
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
		if (cap < DMB_WIRE_REPLY_PAYLOAD)
			return -ENOSPC;
		memset(p, 0, DMB_WIRE_REPLY_PAYLOAD);
		put32(p + DMB_WIRE_HDR_MAGIC, DMB_WIRE_MAGIC);
		put16(p + DMB_WIRE_HDR_VERSION, DMB_WIRE_VERSION_BASE);
		put16(p + DMB_WIRE_HDR_OP, DMB_WIRE_OP_REPLY | request_op);
		put32(p + DMB_WIRE_HDR_LENGTH, DMB_WIRE_REPLY_PAYLOAD);
		put64(p + DMB_WIRE_HDR_SERIAL, serial);
		put32(p + DMB_WIRE_REPLY_STATUS, (uint32_t)status);
		return DMB_WIRE_REPLY_PAYLOAD;
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
