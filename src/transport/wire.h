/* SPDX-License-Identifier: MIT */
/*
 * The cross-process wire protocol (docs/protocol.md is the specification):
 * constants, decoded message bodies and the PURE codec. Nothing here does
 * I/O or touches a file descriptor beyond copying its number; sockets,
 * SCM_RIGHTS and the sg-entries memfd live in scm.c.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmabuf.h"

/* "DMBW" in byte order: the first four bytes of every message. */
#define DMB_WIRE_MAGIC 0x57424d44u

/* Protocol versions this build speaks. HELLO and HELLO_REPLY always carry
 * DMB_WIRE_VERSION_BASE in their header so any future peer can parse them. */
#define DMB_WIRE_VERSION_BASE 1
#define DMB_WIRE_VERSION_MIN 1
#define DMB_WIRE_VERSION_MAX 8
/* The first version with header flags (DMB_WIRE_HDR_FLAGS). */
#define DMB_WIRE_VERSION_FLAGS 2
/* The first version in which the client names its imports (IMPORT carries
 * the buffer id), so it may send requests about a buffer before the
 * IMPORT_REPLY is back (docs/protocol.md §6 item 3a). */
#define DMB_WIRE_VERSION_CLIENT_IDS 3
/* Client-chosen ids have this bit set; server-chosen ones never do, so the
 * two kinds never collide in one peer's table. */
#define DMB_WIRE_CLIENT_ID_BIT (1ull << 63)
/* The first version in which ATTACH may be one-way (DMB_WIRE_F_NO_REPLY,
 * docs/protocol.md §6 item 4b): for a buffer whose exporter has no attach
 * or pin op, whose attach the importer can answer itself. */
#define DMB_WIRE_VERSION_ONE_WAY_ATTACH 4
/* The id of the attachment a one-way ATTACH makes: its serial with these
 * bits set, so it meets neither a server-chosen id (bit 63 clear) nor an
 * IMPORT's client-chosen one (a counter far below bit 62). */
#define DMB_WIRE_ONE_WAY_ATT_BITS (DMB_WIRE_CLIENT_ID_BIT | (1ull << 62))
#define DMB_WIRE_ONE_WAY_ATT_ID(serial) (DMB_WIRE_ONE_WAY_ATT_BITS | (serial))
/* The first version in which a client's packet may carry several requests
 * back to back (docs/protocol.md §1a): what one call sends goes in one
 * packet, so the exporter wakes once for it. */
#define DMB_WIRE_VERSION_PACKED 5
/* The first version whose exporter never gives an O_WRONLY buffer's memfd
 * the mark of an exporter without attach and pin ops (MFD_NOEXEC_SEAL,
 * dmb_memfd_attach_known()): a marked file is of a read-write buffer, or a
 * read-only one when sealed against writes, so the importer need not ask
 * the fd's access mode (docs/protocol.md §6 item 3a). No message changed. */
#define DMB_WIRE_VERSION_MODE_MARK 6
/* The first version whose MAP of a static attachment may be answered from
 * the exporter's published state (docs/protocol.md §6 item 5a): CACHE_OPEN
 * exchanges the two pages, a MAP_REPLY may carry DMB_WIRE_MAP_CACHE, and a
 * MAP may be one-way (DMB_WIRE_F_NO_REPLY with DMB_WIRE_MAP_ANNOUNCED). */
#define DMB_WIRE_VERSION_MAP_CACHE 7
/* The pages of version 7: the exporter's, DMB_WIRE_CACHE_SLOTS u32
 * sequence numbers (one per buffer slot, even when stable), and the
 * importer's, as many u32 counts of the MAPs it announced per slot, then as
 * many u32 limits the exporter writes (the count up to which a MAP of that
 * slot may be one-way: the exporter holds a table and a record for each). */
#define DMB_WIRE_CACHE_SLOTS 1024u
#define DMB_WIRE_CACHE_PAGE (DMB_WIRE_CACHE_SLOTS * 4u)
#define DMB_WIRE_CACHE_CLIENT_PAGE (2u * DMB_WIRE_CACHE_PAGE)
/* The first version whose exporter publishes a new buffer's table before
 * the importer asks (docs/protocol.md §6 item 5b): the importer's page
 * grows by DMB_WIRE_PREPUB_AREA, DMB_WIRE_PREPUB_ENTRIES entries of
 * DMB_WIRE_PREPUB_WORDS u32 the exporter writes (prepub.c), and a MAP may
 * carry DMB_WIRE_MAP_PREPUB with the entry's generation. */
#define DMB_WIRE_VERSION_PREPUB 8
#define DMB_WIRE_PREPUB_ENTRIES 8u
#define DMB_WIRE_PREPUB_WORDS 128u
#define DMB_WIRE_PREPUB_AREA (DMB_WIRE_PREPUB_ENTRIES * DMB_WIRE_PREPUB_WORDS * 4u)
#define DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB (DMB_WIRE_CACHE_CLIENT_PAGE + DMB_WIRE_PREPUB_AREA)
/* An entry's words: 0 generation (0 empty, odd while written, else even),
 * 1 direction, 2 slot, 3 seq, 4-5 st_dev, 6-7 st_ino, 8-9 size (each
 * u64 low word first), 10 count, 11 reserved, then count CPU entries of
 * 6 words (offset, length, phys, each low word first). */
#define DMB_WIRE_PREPUB_HDR_WORDS 12u
#define DMB_WIRE_PREPUB_MAX_SG ((DMB_WIRE_PREPUB_WORDS - DMB_WIRE_PREPUB_HDR_WORDS) / 6u)

/* The 24-byte header: byte offsets of its fields from the start of a
 * message (docs/protocol.md §3). Tests patch headers through these names. */
#define DMB_WIRE_HDR_MAGIC 0u		/* u32 */
#define DMB_WIRE_HDR_VERSION 4u		/* u16 */
#define DMB_WIRE_HDR_OP 6u		/* u16 */
#define DMB_WIRE_HDR_LENGTH 8u		/* u32, header included */
#define DMB_WIRE_HDR_NFDS 12u		/* u16 */
#define DMB_WIRE_HDR_FLAGS 14u		/* u16, DMB_WIRE_F_*; zero in v1 */
#define DMB_WIRE_HDR_RESERVED DMB_WIRE_HDR_FLAGS /* its v1 name */
#define DMB_WIRE_HDR_SERIAL 16u		/* u64 */
#define DMB_WIRE_HDR_SIZE 24u

/* Bodies follow the header. A reply's body starts with the reply header
 * (s32 status, u32 reserved); its payload follows that. */
#define DMB_WIRE_BODY DMB_WIRE_HDR_SIZE
#define DMB_WIRE_REPLY_HDR_SIZE 8u
#define DMB_WIRE_REPLY_STATUS (DMB_WIRE_BODY + 0u)	/* s32 */
#define DMB_WIRE_REPLY_RESERVED (DMB_WIRE_BODY + 4u)	/* u32, zero */
#define DMB_WIRE_REPLY_PAYLOAD (DMB_WIRE_BODY + DMB_WIRE_REPLY_HDR_SIZE)

#define DMB_WIRE_MAX_MSG 4096u		/* header included */
#define DMB_WIRE_MAX_FDS 4u		/* per message */
/* A version 5 packet (docs/protocol.md §1a): at most DMB_WIRE_MAX_MSG bytes
 * and DMB_WIRE_MAX_FDS fds in all, as one message, and at most this many
 * messages. */
#define DMB_WIRE_MAX_PACKED 8u
#define DMB_WIRE_NAME_LEN 32u		/* == DMABUF_NAME_LEN, NUL included */
#define DMB_WIRE_PAGE_SIZE 4096u

/* udmabuf backing ranges: per message, and per buffer. */
#define DMB_WIRE_MAX_RANGES 32u
#define DMB_WIRE_MAX_BACKING_RANGES 1024u	/* DMABUF_UDMABUF_LIST_LIMIT */
#define DMB_WIRE_RANGE_SIZE 24u

/* CPU sg entries: inline in MAP_REPLY when they fit, else in a sealed memfd. */
#define DMB_WIRE_SG_ENTRY_SIZE 24u
#define DMB_WIRE_MAP_REPLY_FIXED 24u	/* after the reply header */
#define DMB_WIRE_MAX_INLINE_SG                                                 \
	((DMB_WIRE_MAX_MSG - DMB_WIRE_HDR_SIZE - DMB_WIRE_REPLY_HDR_SIZE -     \
	  DMB_WIRE_MAP_REPLY_FIXED) / DMB_WIRE_SG_ENTRY_SIZE)
#define DMB_WIRE_MAX_SG_ENTRIES (1u << 22)	/* 96 MiB of memfd */
/* With DMB_WIRE_MAP_CACHE the slot and seq take 8 bytes of that room. */
#define DMB_WIRE_MAX_INLINE_SG_CACHE                                           \
	((DMB_WIRE_MAX_MSG - DMB_WIRE_HDR_SIZE - DMB_WIRE_REPLY_HDR_SIZE -     \
	  DMB_WIRE_MAP_REPLY_FIXED - 8u) / DMB_WIRE_SG_ENTRY_SIZE)

/* Status in replies: 0 or a negative errno in [-DMB_WIRE_MAX_ERRNO, -1]. */
#define DMB_WIRE_MAX_ERRNO 4095

/* Header flags (version >= DMB_WIRE_VERSION_FLAGS). NO_REPLY: a request
 * whose descriptor allows it (one_way) is not answered, as the kernel's
 * void unmap, detach and put return nothing; a failure is only logged. */
#define DMB_WIRE_F_NO_REPLY (1u << 0)
/* QUIET (version >= DMB_WIRE_VERSION_CLIENT_IDS), only on IMPORT: the
 * server answers a failure, and a success only when its reply says what
 * the client cannot see in the fd (a name set, another access mode);
 * otherwise nothing, and the client knows the import done once the reply
 * to a later request comes (replies come in request order). */
#define DMB_WIRE_F_QUIET (1u << 1)
#define DMB_WIRE_F_MASK (DMB_WIRE_F_NO_REPLY | DMB_WIRE_F_QUIET)

/* Opcode classes. */
#define DMB_WIRE_OP_REPLY 0x8000u	/* reply = request opcode | this */
#define DMB_WIRE_OP_EVENT 0x4000u

enum dmb_wire_op {
	/* requests, client -> server */
	DMB_OP_HELLO = 0x0001,
	DMB_OP_IMPORT = 0x0002,
	DMB_OP_RELEASE = 0x0003,
	DMB_OP_ATTACH = 0x0004,
	DMB_OP_DETACH = 0x0005,
	DMB_OP_MAP = 0x0006,
	DMB_OP_UNMAP = 0x0007,
	DMB_OP_BEGIN_CPU_ACCESS = 0x0008,
	DMB_OP_END_CPU_ACCESS = 0x0009,
	DMB_OP_SET_NAME = 0x000a,
	DMB_OP_DESCRIBE = 0x000b,
	DMB_OP_FENCE_ATTACH = 0x000c,
	DMB_OP_FENCE_EXPORT = 0x000d,
	DMB_OP_GET_BACKING = 0x000e,
	DMB_OP_PIN = 0x000f,
	DMB_OP_UNPIN = 0x0010,
	DMB_OP_CACHE_OPEN = 0x0011,
	DMB_OP__LAST_REQUEST = DMB_OP_CACHE_OPEN,

	/* replies, server -> client */
	DMB_OP_HELLO_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_HELLO,
	DMB_OP_IMPORT_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_IMPORT,
	DMB_OP_RELEASE_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_RELEASE,
	DMB_OP_ATTACH_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_ATTACH,
	DMB_OP_DETACH_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_DETACH,
	DMB_OP_MAP_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_MAP,
	DMB_OP_UNMAP_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_UNMAP,
	DMB_OP_BEGIN_CPU_ACCESS_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_BEGIN_CPU_ACCESS,
	DMB_OP_END_CPU_ACCESS_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_END_CPU_ACCESS,
	DMB_OP_SET_NAME_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_SET_NAME,
	DMB_OP_DESCRIBE_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_DESCRIBE,
	DMB_OP_FENCE_ATTACH_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_FENCE_ATTACH,
	DMB_OP_FENCE_EXPORT_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_FENCE_EXPORT,
	DMB_OP_GET_BACKING_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_GET_BACKING,
	DMB_OP_PIN_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_PIN,
	DMB_OP_UNPIN_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_UNPIN,
	DMB_OP_CACHE_OPEN_REPLY = DMB_WIRE_OP_REPLY | DMB_OP_CACHE_OPEN,

	/* events, server -> client, serial 0. 0x4001 was BUFFER_GONE, which
	 * nothing could ever send (docs/protocol.md §5): retired, never
	 * reassigned. */
	DMB_OP_MOVE_NOTIFY = DMB_WIRE_OP_EVENT | 0x0002,
	DMB_OP__FIRST_EVENT = DMB_OP_MOVE_NOTIFY,
	DMB_OP__LAST_EVENT = DMB_OP_MOVE_NOTIFY,
};

/* Who receives the message being decoded: a server accepts requests only,
 * a client accepts replies and events only. */
enum dmb_wire_side {
	DMB_WIRE_SERVER = 1,
	DMB_WIRE_CLIENT = 2,
};

/* Flag and enum values carried on the wire. */
#define DMB_WIRE_ATTACH_DYNAMIC (1u << 0)	/* wants MOVE_NOTIFY events */
#define DMB_WIRE_DEVICE_FLAGS_MASK                                             \
	(DMABUF_DEVICE_IOMMU | DMABUF_DEVICE_CONTIGUOUS | DMABUF_DEVICE_P2P)
#define DMB_WIRE_MAP_SG_MEMFD (1u << 0)		/* entries in the attached memfd */
/* MAP_REPLY (version 7): the table may be cached; slot and seq follow. */
#define DMB_WIRE_MAP_CACHE (1u << 1)
/* MAP (version 7): counted in the importer's page at its buffer's slot. */
#define DMB_WIRE_MAP_ANNOUNCED (1u << 0)
/* MAP (version 8), only with ANNOUNCED: the slot was the one a published
 * entry named; pub is that entry's generation. */
#define DMB_WIRE_MAP_PREPUB (1u << 1)
#define DMB_WIRE_INFO_BACKING_ALLOCATED (1u << 0)
#define DMB_WIRE_INFO_CONTIGUOUS (1u << 1)
#define DMB_WIRE_INFO_NAME_SET (1u << 2)	/* a name was set, maybe "" */
#define DMB_WIRE_INFO_MASK                                                     \
	(DMB_WIRE_INFO_BACKING_ALLOCATED | DMB_WIRE_INFO_CONTIGUOUS |          \
	 DMB_WIRE_INFO_NAME_SET)
#define DMB_WIRE_FENCE_READ (1u << 0)		/* == DMABUF_SYNC_READ */
#define DMB_WIRE_FENCE_WRITE (1u << 1)		/* == DMABUF_SYNC_WRITE */
#define DMB_WIRE_USAGE_MAX 3u			/* KERNEL, WRITE, READ, BOOKKEEP */
#define DMB_WIRE_DEV_MASK_MIN 12u
#define DMB_WIRE_DEV_MASK_MAX 64u

/* ---- decoded bodies ------------------------------------------------------ */

struct dmb_wire_hello {
	uint16_t min_version;
	uint16_t max_version;
	uint32_t flags;		/* none defined: 0 */
	uint32_t pid;		/* informational; trust SO_PEERCRED */
};

struct dmb_wire_hello_reply {
	uint16_t version;	/* chosen */
	uint32_t flags;		/* none defined: 0 */
	uint32_t max_msg;	/* <= DMB_WIRE_MAX_MSG */
	uint32_t max_fds;	/* 1..DMB_WIRE_MAX_FDS */
	uint32_t max_buffers;	/* per-peer limits, >= 1 */
	uint32_t max_attachments;
	uint32_t max_mappings;
	uint32_t pid;
};

struct dmb_wire_import {
	uint32_t flags;		/* none defined: 0 */
	/* Version >= DMB_WIRE_VERSION_CLIENT_IDS: the id the client gives
	 * the import (DMB_WIRE_CLIENT_ID_BIT set); 0 before. */
	uint64_t buffer_id;
};

/* One udmabuf backing range: bytes [offset, offset + size) of fds[fd_index]. */
struct dmb_wire_range {
	uint32_t fd_index;
	uint64_t offset;
	uint64_t size;
};

/* A batch of backing ranges [first, first + count) out of total. */
struct dmb_wire_ranges {
	uint32_t total;
	uint32_t first;
	uint32_t count;
	struct dmb_wire_range r[DMB_WIRE_MAX_RANGES];
};

struct dmb_wire_import_reply {
	uint64_t buffer_id;
	uint64_t size;
	uint32_t flags;		/* O_RDONLY, O_WRONLY or O_RDWR */
	uint32_t info_flags;	/* DMB_WIRE_INFO_NAME_SET or 0 */
	char exp_name[DMB_WIRE_NAME_LEN];
	char name[DMB_WIRE_NAME_LEN];
	/* total 0: the bytes are in the dma-buf file itself, no fds. */
	struct dmb_wire_ranges backing;
};

/* RELEASE, DETACH, DESCRIBE, PIN, UNPIN requests; the MOVE_NOTIFY event. */
struct dmb_wire_id {
	uint64_t id;
};

struct dmb_wire_attach {
	uint64_t buffer_id;
	char name[DMB_WIRE_NAME_LEN];
	uint32_t dma_mask_bits;
	uint32_t dev_flags;	/* enum dmabuf_device_flags */
	uint32_t attach_flags;	/* DMB_WIRE_ATTACH_* */
	uint64_t max_segment_size;
	uint64_t segment_boundary;
	uint64_t alignment;
};

struct dmb_wire_attach_reply {
	uint64_t attachment_id;
};

/* MAP and UNMAP requests. */
struct dmb_wire_map {
	uint64_t id;		/* attachment id (MAP), mapping id (UNMAP) */
	uint32_t dir;		/* BIDIRECTIONAL, TO_DEVICE or FROM_DEVICE */
	/* MAP, version 7 (0 otherwise): DMB_WIRE_MAP_ANNOUNCED, and for a
	 * one-way MAP the slot's sequence number its table was cached at. */
	uint32_t flags;
	uint32_t seq;
	/* MAP, version 8 (0 otherwise): with DMB_WIRE_MAP_PREPUB, the
	 * generation of the published entry it took its slot from. */
	uint32_t pub;
};

struct dmb_wire_map_reply {
	uint64_t mapping_id;
	uint64_t size;		/* sum of the entries' lengths */
	uint32_t count;		/* CPU entries */
	uint32_t flags;		/* DMB_WIRE_MAP_SG_MEMFD: entries in fds[0] */
	/* DMB_WIRE_MAP_CACHE (version 7): the buffer's slot in the pages
	 * and its sequence number when the table was made (even). */
	uint32_t slot;
	uint32_t seq;
	struct dmabuf_sg_entry sg[DMB_WIRE_MAX_INLINE_SG]; /* inline case */
};

/* CACHE_OPEN (version 7): fds[0] is the importer's page. */
struct dmb_wire_cache_open {
	uint32_t flags;		/* none defined: 0 */
};

struct dmb_wire_cpu_access {
	uint64_t buffer_id;
	uint32_t dir;
};

struct dmb_wire_set_name {
	uint64_t buffer_id;
	char name[DMB_WIRE_NAME_LEN];
};

struct dmb_wire_describe_reply {
	uint64_t size;
	uint32_t flags;		/* O_RDONLY, O_WRONLY or O_RDWR */
	uint32_t info_flags;	/* DMB_WIRE_INFO_* */
	uint32_t attachments;
	uint32_t mappings;
	uint32_t importers;
	uint32_t vmap_count;
	char exp_name[DMB_WIRE_NAME_LEN];
	char name[DMB_WIRE_NAME_LEN];
};

struct dmb_wire_fence_attach {
	uint64_t buffer_id;
	uint32_t usage;		/* 0..DMB_WIRE_USAGE_MAX */
};

struct dmb_wire_fence_export {
	uint64_t buffer_id;
	uint32_t flags;		/* DMB_WIRE_FENCE_READ | WRITE, not empty */
};

struct dmb_wire_get_backing {
	uint64_t buffer_id;
	uint32_t first;
};

/* A decoded (or to-be-encoded) message. */
struct dmb_msg {
	uint16_t version;
	uint16_t op;		/* enum dmb_wire_op */
	uint16_t flags;		/* header flags, DMB_WIRE_F_* */
	uint64_t serial;	/* requests/replies: non-zero; events: 0 */
	uint32_t nfds;
	int fds[DMB_WIRE_MAX_FDS]; /* copied numbers; the codec never owns them */
	int32_t status;		/* replies: 0 or -errno; payload only if 0 */
	union {
		struct dmb_wire_hello hello;
		struct dmb_wire_hello_reply hello_reply;
		struct dmb_wire_import import;
		struct dmb_wire_import_reply import_reply;
		struct dmb_wire_id id;
		struct dmb_wire_attach attach;
		struct dmb_wire_attach_reply attach_reply;
		struct dmb_wire_map map;
		struct dmb_wire_map_reply map_reply;
		struct dmb_wire_cpu_access cpu_access;
		struct dmb_wire_cache_open cache_open;
		struct dmb_wire_set_name set_name;
		struct dmb_wire_describe_reply describe_reply;
		struct dmb_wire_fence_attach fence_attach;
		struct dmb_wire_fence_export fence_export;
		struct dmb_wire_get_backing get_backing;
		struct dmb_wire_ranges backing; /* GET_BACKING_REPLY */
	} u;
};

/*
 * The bytes of a struct dmb_msg before the record arrays of its union
 * (import_reply.backing.r, the largest fixed part; wire.c asserts that
 * every member's fixed fields end within it): the header fields, the fds,
 * the status and every body's fixed fields. dmb_wire_decode() and
 * dmb_wire_msg_init() clear these only, so a field a message does not
 * carry reads as zero; the records past them (map_reply.sg, the ranges'
 * r) are written up to their count and mean nothing beyond it. Clearing
 * the whole 4 KiB struct cost more than the rest of a small message's
 * decode.
 */
#define DMB_WIRE_MSG_FIXED offsetof(struct dmb_msg, u.import_reply.backing.r)

/* ---- opcode descriptors ---------------------------------------------------- */

/* What a message is, and so which way it travels. */
enum dmb_wire_kind {
	DMB_WIRE_REQUEST = 1,	/* client -> server; answered by one reply */
	DMB_WIRE_REPLY,		/* server -> client; request opcode | 0x8000 */
	DMB_WIRE_EVENT,		/* server -> client; serial 0, never answered */
};

/* The object a request or event names by its id field. The endpoint looks
 * it up in the peer's table before a handler runs (-ENOENT if absent). */
enum dmb_wire_target {
	DMB_WIRE_TARGET_NONE = 0,
	DMB_WIRE_TARGET_BUFFER,		/* an id from IMPORT_REPLY */
	DMB_WIRE_TARGET_ATTACHMENT,	/* an id from ATTACH_REPLY */
	DMB_WIRE_TARGET_MAPPING,	/* an id from MAP_REPLY */
};

/* dmb_wire_desc.nfds: the count depends on the body; check() returns it. */
#define DMB_WIRE_FDS_VARIABLE (-1)

struct dmb_wire_cur;	/* the codec's cursor (wire.c) */

/*
 * Everything the library knows about one opcode, in one place: the
 * encoder, the decoder, the endpoint's dispatch, the proxies' requests,
 * the fuzzer's seeds and the tests all read the same table.
 */
struct dmb_wire_desc {
	uint16_t op;
	const char *name;		/* "ATTACH", "ATTACH_REPLY", ... */
	enum dmb_wire_kind kind;
	enum dmb_wire_target target;	/* requests and events only */
	size_t target_off;		/* offsetof(struct dmb_msg, the u64 id) */
	/* fds a message carries (a failed reply none), or
	 * DMB_WIRE_FDS_VARIABLE */
	int nfds;
	bool base_version;	/* header always at DMB_WIRE_VERSION_BASE */
	bool reserved;		/* specified, but this version never sends it */
	bool quiet;		/* may carry DMB_WIRE_F_QUIET (IMPORT) */
	bool one_way;		/* the kernel's operation returns void */
	/* The first version in which the request may carry
	 * DMB_WIRE_F_NO_REPLY (DMB_WIRE_VERSION_FLAGS for the one_way ones,
	 * DMB_WIRE_VERSION_ONE_WAY_ATTACH for ATTACH); 0: never. */
	uint16_t no_reply_since;
	/* The body field by field (for a reply: the payload after the reply
	 * header, walked only when status is 0); NULL for an empty one. Runs
	 * in decode and in encode mode, so the two cannot drift apart. */
	void (*walk)(struct dmb_wire_cur *c, struct dmb_msg *m);
	/* Field ranges of a decoded body: 0 (for a variable fd count: the
	 * count, >= 0), or -EPROTO. NULL: nothing to check. */
	int (*check)(const struct dmb_msg *m);
};

/* The descriptor of an opcode this version knows, or NULL. */
const struct dmb_wire_desc *dmb_wire_op_desc(uint16_t op);

/* Whether a request with descriptor @d may carry DMB_WIRE_F_NO_REPLY in a
 * header of @version. */
bool dmb_wire_may_no_reply(const struct dmb_wire_desc *d, uint16_t version);

/* The whole table, *count entries: requests by opcode, then their replies,
 * then events. */
const struct dmb_wire_desc *dmb_wire_op_table(size_t *count);

/* Starts a request or event: zeroed (its DMB_WIRE_MSG_FIXED bytes: a
 * record array is filled by the caller up to its count), no fds (all -1),
 * op set, and the id of its target (if the opcode has one) set where the
 * body keeps it. */
void dmb_wire_msg_init(struct dmb_msg *m, uint16_t op, uint64_t target_id);

/* The id of the object a request or event names; 0 if it names none. */
uint64_t dmb_wire_target_id(const struct dmb_msg *m);

/* Little-endian field accessors, for the codec and for code that must
 * build or patch raw messages (tests, rawpeer.h). */
static inline uint16_t dmb_wire_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t dmb_wire_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t dmb_wire_get64(const uint8_t *p)
{
	return (uint64_t)dmb_wire_get32(p) | (uint64_t)dmb_wire_get32(p + 4) << 32;
}

static inline void dmb_wire_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void dmb_wire_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void dmb_wire_put64(uint8_t *p, uint64_t v)
{
	dmb_wire_put32(p, (uint32_t)v);
	dmb_wire_put32(p + 4, (uint32_t)(v >> 32));
}

/* ---- codec ----------------------------------------------------------------- */

/*
 * Decodes one received message. Pure: no I/O, no allocation; the fd numbers
 * are copied into out->fds and never closed, dup'ed or inspected (the caller
 * owns them and closes them all when this fails: dmb_scm_close_fds()).
 *
 * @data, @len  the packet as received
 * @fds, @nfds  the fds that came with it (SCM_RIGHTS), in order
 * @receiver    which side decodes: requests are only valid for a server,
 *              replies and events only for a client
 * @out         zeroed (its DMB_WIRE_MSG_FIXED bytes; record arrays are
 *              written up to their count only), then filled. On failure
 *              out->op, out->serial and
 *              out->version are set if the header itself was valid, so a
 *              server can answer an unknown request (-EOPNOTSUPP) by serial.
 *
 * Returns 0, or:
 *  -EINVAL          NULL data/out, fds NULL with nfds > 0, bad receiver
 *  -EMSGSIZE        len > DMB_WIRE_MAX_MSG, or more than DMB_WIRE_MAX_FDS
 *                   fds (header or received)
 *  -EBADMSG         framing: len < header, header length != len, header fd
 *                   count != fds received, wrong fd count for the opcode,
 *                   body shorter/longer than the opcode's layout, counts
 *                   inconsistent with the length
 *  -EPROTO          bad magic, non-zero reserved bits, a header flag not
 *                   defined, or NO_REPLY before version 2, on a reply or
 *                   on a request that must be answered, wrong serial (0 for a
 *                   request/reply, non-zero for an event), an opcode the
 *                   sender's side may not send, a field out of range (enum,
 *                   must-be-zero flags, name without NUL or with garbage
 *                   after it, zero id, unaligned or overflowing sizes, sg
 *                   entries that do not tile [0, size))
 *  -EPROTONOSUPPORT header version outside [VERSION_MIN, VERSION_MAX],
 *                   HELLO/HELLO_REPLY not at DMB_WIRE_VERSION_BASE, or a
 *                   HELLO_REPLY choosing a version outside that range
 *  -EOPNOTSUPP      an opcode this version does not know (header valid)
 *
 * Stateless: the connection must still check that HELLO comes first and
 * only once, that msg->version equals the negotiated version, that a
 * reply's opcode and serial match a pending request, and that an event is
 * one it asked for.
 */
int dmb_wire_decode(const void *data, size_t len, const int *fds, size_t nfds,
		    enum dmb_wire_side receiver, struct dmb_msg *out);

/*
 * Decodes a message whose fds did not arrive because the receiver is at
 * RLIMIT_NOFILE (the kernel dropped them): as dmb_wire_decode() with the
 * fds the header announces, each -1, so the receiver can tell which request
 * it is or answers and fail only that one with -EMFILE.
 */
int dmb_wire_decode_fdless(const void *data, size_t len, enum dmb_wire_side side,
			   struct dmb_msg *out);

/*
 * Encodes @msg into @buf. Names are written up to their NUL and zero-padded;
 * reserved fields are written as zero. The result is checked with
 * dmb_wire_decode(), so only messages a peer would accept are produced:
 * decode(encode(m)) == m, and encode(decode(bytes)) == bytes.
 * msg->nfds must equal what the opcode carries (the fds themselves travel
 * separately: dmb_scm_send(sock, buf, len, msg->fds, msg->nfds)).
 *
 * Returns the length (> 0), -EINVAL for an invalid message, -ENOSPC when
 * @cap is too small (DMB_WIRE_MAX_MSG is always enough).
 */
int dmb_wire_encode(void *buf, size_t cap, const struct dmb_msg *msg);

/* Encodes a failed reply to the request (op, serial): status < 0, no body,
 * no fds. Returns the length or -EINVAL/-ENOSPC. */
int dmb_wire_encode_error(void *buf, size_t cap, uint16_t request_op,
			  uint64_t serial, int status);

/* Server side of the handshake: the version to use for a client that speaks
 * [min, max], or -EPROTONOSUPPORT. */
int dmb_wire_negotiate(uint16_t min_version, uint16_t max_version);

/*
 * Checks a CPU sg list from a peer: 1..DMB_WIRE_MAX_SG_ENTRIES entries,
 * page-aligned offsets, lengths and physical addresses, no overflow, and
 * offsets tiling [0, size) in order. Returns 0 or -EPROTO.
 */
int dmb_wire_check_sg(const struct dmabuf_sg_entry *sg, size_t count,
		      uint64_t size);

/* Little-endian wire form of sg entries (the memfd holds count of them). */
void dmb_wire_put_sg(uint8_t *p, const struct dmabuf_sg_entry *e);
void dmb_wire_get_sg(const uint8_t *p, struct dmabuf_sg_entry *e);

/* One message of a packet (dmb_wire_split()): its bytes [off, off + len)
 * and its fds [fd_first, fd_first + nfds) of the packet's. */
struct dmb_wire_part {
	uint32_t off, len;
	uint16_t fd_first, nfds;
};

/*
 * Splits a version 5 packet of @len bytes that came with @nfds fds into
 * its messages, by their header's length and nfds only (each one is then
 * checked by dmb_wire_decode() as any message). @fds_known false: the fds
 * were lost (RLIMIT_NOFILE), so their number is not checked.
 * Returns how many messages (1..@max, the first at offset 0), or -EPROTO:
 * a trailing part shorter than a header, a length below a header or past
 * the packet's end, fd counts that do not add up to @nfds, more than @max
 * (or DMB_WIRE_MAX_PACKED) messages; -EINVAL for bad arguments.
 */
int dmb_wire_split(const void *data, size_t len, size_t nfds, bool fds_known,
		   struct dmb_wire_part *parts, size_t max);

/* Name of an opcode for logs ("?" if unknown). */
const char *dmb_wire_op_name(uint16_t op);

