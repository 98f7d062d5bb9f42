/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpus of fuzz-wire: one valid message of every opcode
 * and its main variants, encoded by the real encoder, each prefixed with the
 * harness's control byte (fd count | 8 if the receiver is the client).
 * Fails if an opcode of the codec's descriptor table got no seed.
 *
 *   fuzz-gen-corpus fuzz/corpus
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static const char *outdir;
static int failures;
static bool seeded[64];	/* by index in the descriptor table */

static struct dmb_msg blank(uint16_t op)
{
	struct dmb_msg m;

	dmb_wire_msg_init(&m, op, 0);
	m.serial = dmb_wire_op_desc(op)->kind == DMB_WIRE_EVENT ? 0 : 1;
	/* Version 1 messages are valid in every later version: the seeds of
	 * what version 2 added say so themselves. */
	m.version = DMB_WIRE_VERSION_BASE;
	return m;
}

/* The descriptor's name in lower case: the seed's file name. */
static void file_name(uint16_t op, char *name, size_t cap)
{
	snprintf(name, cap, "%s", dmb_wire_op_name(op));
	for (char *p = name; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
}

static void emit(const char *name, const struct dmb_msg *m)
{
	uint8_t buf[DMB_WIRE_MAX_MSG + 1];
	char path[4096];
	const struct dmb_wire_desc *d = dmb_wire_op_desc(m->op), *table;
	bool to_client = d && d->kind != DMB_WIRE_REQUEST;
	int n = dmb_wire_encode(buf + 1, DMB_WIRE_MAX_MSG, m);
	FILE *f;

	if (n < 0) {
		fprintf(stderr, "%s: encode failed: %s\n", name, strerror(-n));
		failures++;
		return;
	}
	table = dmb_wire_op_table(NULL);
	seeded[d - table] = true;
	buf[0] = (uint8_t)(m->nfds | (to_client ? 8 : 0));
	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, (size_t)n + 1, f) != (size_t)n + 1) {
		perror(path);
		failures++;
	}
	if (f)
		fclose(f);
}

/* A version 5 packet: @n requests back to back, their fds in order. */
static void emit_packet(const char *name, const struct dmb_msg *m, size_t n)
{
	uint8_t buf[DMB_WIRE_MAX_MSG + 1];
	char path[4096];
	size_t len = 1, nfds = 0;
	FILE *f;

	for (size_t i = 0; i < n; i++) {
		int k = dmb_wire_encode(buf + len, DMB_WIRE_MAX_MSG + 1 - len, &m[i]);

		if (k < 0) {
			fprintf(stderr, "%s: encode failed: %s\n", name, strerror(-k));
			failures++;
			return;
		}
		len += (size_t)k;
		nfds += m[i].nfds;
	}
	buf[0] = (uint8_t)nfds;
	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len) {
		perror(path);
		failures++;
	}
	if (f)
		fclose(f);
}

static void with_fds(struct dmb_msg *m, unsigned n)
{
	m->nfds = n;
	for (unsigned i = 0; i < n; i++)
		m->fds[i] = 100 + (int)i;
}

int main(int argc, char **argv)
{
	struct dmb_msg m;

	if (argc != 2) {
		fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
		return 2;
	}
	outdir = argv[1];

	m = blank(DMB_OP_HELLO);
	m.u.hello = (struct dmb_wire_hello){ 1, 1, 0, 1234 };
	emit("hello", &m);

	m = blank(DMB_OP_IMPORT);
	with_fds(&m, 1);
	emit("import", &m);
	/* version 3: the id the client chose, and the QUIET header flag */
	m.version = DMB_WIRE_VERSION_CLIENT_IDS;
	m.u.import.buffer_id = DMB_WIRE_CLIENT_ID_BIT | 1;
	emit("import_client_id", &m);
	m.flags = DMB_WIRE_F_QUIET;
	emit("import_quiet", &m);

	static const uint16_t id_ops[] = { DMB_OP_RELEASE, DMB_OP_DETACH,
					   DMB_OP_DESCRIBE, DMB_OP_MOVE_NOTIFY,
					   DMB_OP_PIN, DMB_OP_UNPIN };
	for (size_t i = 0; i < sizeof(id_ops) / sizeof(id_ops[0]); i++) {
		char name[64];

		m = blank(id_ops[i]);
		m.u.id.id = 42;
		file_name(id_ops[i], name, sizeof(name));
		emit(name, &m);
	}

	m = blank(DMB_OP_ATTACH);
	m.u.attach = (struct dmb_wire_attach){
		.buffer_id = 1, .name = "gpu0", .dma_mask_bits = 32,
		.dev_flags = DMABUF_DEVICE_CONTIGUOUS, .max_segment_size = 65536,
		.segment_boundary = 0xffffffff, .alignment = 4096 };
	emit("attach", &m);
	/* version 4: ATTACH one-way, where the importer knows the answer */
	m.version = DMB_WIRE_VERSION_ONE_WAY_ATTACH;
	m.flags = DMB_WIRE_F_NO_REPLY;
	emit("attach_no_reply", &m);

	m = blank(DMB_OP_MAP);
	m.u.map = (struct dmb_wire_map){ 2, DMABUF_TO_DEVICE };
	emit("map", &m);
	m.op = DMB_OP_UNMAP;
	emit("unmap", &m);
	/* version 2: the one-way requests with the NO_REPLY header flag */
	m.version = DMB_WIRE_VERSION_FLAGS;
	m.flags = DMB_WIRE_F_NO_REPLY;
	emit("unmap_no_reply", &m);
	m = blank(DMB_OP_DETACH);
	m.u.id.id = 42;
	m.version = DMB_WIRE_VERSION_FLAGS;
	m.flags = DMB_WIRE_F_NO_REPLY;
	emit("detach_no_reply", &m);
	m.op = DMB_OP_RELEASE;
	emit("release_no_reply", &m);
	m.op = DMB_OP_UNPIN;
	emit("unpin_no_reply", &m);

	/* version 7: the pages exchanged once, an ANNOUNCED MAP (counted in
	 * the client's page) asked as a call, and one sent one-way with the
	 * sequence number its cached table was made at */
	m = blank(DMB_OP_CACHE_OPEN);
	m.version = DMB_WIRE_VERSION_MAP_CACHE;
	with_fds(&m, 1);
	emit("cache_open", &m);
	m = blank(DMB_OP_MAP);
	m.version = DMB_WIRE_VERSION_MAP_CACHE;
	m.u.map = (struct dmb_wire_map){ 2, DMABUF_BIDIRECTIONAL, DMB_WIRE_MAP_ANNOUNCED, 0 };
	emit("map_announced", &m);
	m.flags = DMB_WIRE_F_NO_REPLY;
	m.u.map.seq = 6;
	emit("map_no_reply", &m);
	/* version 8: the MAP that names the published entry it took its
	 * slot from (PREPUB and the entry's generation), as a call and
	 * one-way */
	m = blank(DMB_OP_MAP);
	m.version = DMB_WIRE_VERSION_PREPUB;
	m.u.map = (struct dmb_wire_map){ 2, DMABUF_BIDIRECTIONAL,
					 DMB_WIRE_MAP_ANNOUNCED | DMB_WIRE_MAP_PREPUB, 0 };
	m.u.map.pub = 4;
	emit("map_prepub", &m);
	m.flags = DMB_WIRE_F_NO_REPLY;
	m.u.map.seq = 6;
	emit("map_prepub_no_reply", &m);

	m = blank(DMB_OP_BEGIN_CPU_ACCESS);
	m.u.cpu_access = (struct dmb_wire_cpu_access){ 1, DMABUF_FROM_DEVICE };
	emit("begin_cpu_access", &m);
	m.op = DMB_OP_END_CPU_ACCESS;
	emit("end_cpu_access", &m);

	m = blank(DMB_OP_SET_NAME);
	m.u.set_name.buffer_id = 1;
	strcpy(m.u.set_name.name, "frame-0");
	emit("set_name", &m);

	m = blank(DMB_OP_FENCE_ATTACH);
	m.u.fence_attach = (struct dmb_wire_fence_attach){ 1, 1 };
	with_fds(&m, 1);
	emit("fence_attach", &m);

	m = blank(DMB_OP_FENCE_EXPORT);
	m.u.fence_export = (struct dmb_wire_fence_export){ 1, DMB_WIRE_FENCE_WRITE };
	emit("fence_export", &m);

	m = blank(DMB_OP_GET_BACKING);
	m.u.get_backing = (struct dmb_wire_get_backing){ 1, 32 };
	emit("get_backing", &m);

	m = blank(DMB_OP_HELLO_REPLY);
	m.u.hello_reply = (struct dmb_wire_hello_reply){
		.version = 1, .max_msg = DMB_WIRE_MAX_MSG, .max_fds = 4,
		.max_buffers = 256, .max_attachments = 256, .max_mappings = 256,
		.pid = 1 };
	emit("hello_reply", &m);

	m = blank(DMB_OP_IMPORT_REPLY);
	m.u.import_reply.buffer_id = 7;
	m.u.import_reply.size = 16384;
	m.u.import_reply.flags = O_RDWR;
	strcpy(m.u.import_reply.exp_name, "system");
	emit("import_reply", &m);
	m.u.import_reply.backing.total = 3;
	m.u.import_reply.backing.count = 2;
	m.u.import_reply.backing.r[0] = (struct dmb_wire_range){ 0, 0, 8192 };
	m.u.import_reply.backing.r[1] = (struct dmb_wire_range){ 1, 4096, 4096 };
	with_fds(&m, 2);
	emit("import_reply_udmabuf", &m);

	m = blank(DMB_OP_ATTACH_REPLY);
	m.u.attach_reply.attachment_id = 3;
	emit("attach_reply", &m);

	m = blank(DMB_OP_MAP_REPLY);
	m.u.map_reply.mapping_id = 4;
	m.u.map_reply.size = 12288;
	m.u.map_reply.count = 2;
	m.u.map_reply.sg[0] = (struct dmabuf_sg_entry){ 0, 8192, 0x200000 };
	m.u.map_reply.sg[1] = (struct dmabuf_sg_entry){ 8192, 4096, 0x1000 };
	emit("map_reply_inline", &m);
	m.u.map_reply.count = DMB_WIRE_MAX_INLINE_SG;
	m.u.map_reply.size = DMB_WIRE_MAX_INLINE_SG * 4096ull;
	for (unsigned i = 0; i < DMB_WIRE_MAX_INLINE_SG; i++)
		m.u.map_reply.sg[i] = (struct dmabuf_sg_entry){
			i * 4096ull, 4096, 0x100000000ull + i * 8192ull };
	emit("map_reply_inline_max", &m);
	memset(m.u.map_reply.sg, 0, sizeof(m.u.map_reply.sg));
	m.u.map_reply.flags = DMB_WIRE_MAP_SG_MEMFD;
	m.u.map_reply.count = 100;
	m.u.map_reply.size = 1 << 20;
	with_fds(&m, 1);
	emit("map_reply_memfd", &m);
	/* version 7: CACHE, the slot and seq before the entries */
	m.version = DMB_WIRE_VERSION_MAP_CACHE;
	m.u.map_reply.flags = DMB_WIRE_MAP_SG_MEMFD | DMB_WIRE_MAP_CACHE;
	m.u.map_reply.slot = 1023;
	m.u.map_reply.seq = 4;
	emit("map_reply_memfd_cache", &m);
	m.nfds = 0;
	m.u.map_reply.flags = DMB_WIRE_MAP_CACHE;
	m.u.map_reply.slot = 3;
	m.u.map_reply.count = 2;
	m.u.map_reply.size = 12288;
	m.u.map_reply.sg[0] = (struct dmabuf_sg_entry){ 0, 8192, 0x200000 };
	m.u.map_reply.sg[1] = (struct dmabuf_sg_entry){ 8192, 4096, 0x1000 };
	emit("map_reply_inline_cache", &m);

	m = blank(DMB_OP_CACHE_OPEN_REPLY);
	m.version = DMB_WIRE_VERSION_MAP_CACHE;
	with_fds(&m, 1);
	emit("cache_open_reply", &m);

	m = blank(DMB_OP_DESCRIBE_REPLY);
	m.u.describe_reply = (struct dmb_wire_describe_reply){
		.size = 4096, .flags = O_RDONLY,
		.info_flags = DMB_WIRE_INFO_BACKING_ALLOCATED, .attachments = 1,
		.mappings = 1, .importers = 2, .exp_name = "cma", .name = "x" };
	emit("describe_reply", &m);

	m = blank(DMB_OP_FENCE_EXPORT_REPLY);
	with_fds(&m, 1);
	emit("fence_export_reply", &m);

	m = blank(DMB_OP_GET_BACKING_REPLY);
	m.u.backing.total = 40;
	m.u.backing.first = 32;
	m.u.backing.count = 8;
	for (unsigned i = 0; i < 8; i++)
		m.u.backing.r[i] = (struct dmb_wire_range){ i % 4, i * 4096ull, 4096 };
	with_fds(&m, 4);
	emit("get_backing_reply", &m);

	static const uint16_t plain[] = {
		DMB_OP_RELEASE_REPLY, DMB_OP_DETACH_REPLY, DMB_OP_UNMAP_REPLY,
		DMB_OP_BEGIN_CPU_ACCESS_REPLY, DMB_OP_END_CPU_ACCESS_REPLY,
		DMB_OP_SET_NAME_REPLY, DMB_OP_FENCE_ATTACH_REPLY,
		DMB_OP_PIN_REPLY, DMB_OP_UNPIN_REPLY,
	};
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		char name[64];

		m = blank(plain[i]);
		file_name(plain[i], name, sizeof(name));
		emit(name, &m);
	}

	{
		/* version 5: what one map call sends in one packet */
		struct dmb_msg pk[3];

		pk[0] = blank(DMB_OP_IMPORT);
		with_fds(&pk[0], 1);
		pk[0].version = DMB_WIRE_VERSION_PACKED;
		pk[0].flags = DMB_WIRE_F_QUIET;
		pk[0].u.import.buffer_id = DMB_WIRE_CLIENT_ID_BIT | 1;
		pk[1] = blank(DMB_OP_ATTACH);
		pk[1].version = DMB_WIRE_VERSION_PACKED;
		pk[1].serial = 2;
		pk[1].flags = DMB_WIRE_F_NO_REPLY;
		pk[1].u.attach = (struct dmb_wire_attach){
			.buffer_id = DMB_WIRE_CLIENT_ID_BIT | 1, .name = "gpu0",
			.dma_mask_bits = 64, .max_segment_size = 65536,
			.segment_boundary = 0xffffffff, .alignment = 4096 };
		pk[2] = blank(DMB_OP_MAP);
		pk[2].version = DMB_WIRE_VERSION_PACKED;
		pk[2].serial = 3;
		pk[2].u.map = (struct dmb_wire_map){ DMB_WIRE_ONE_WAY_ATT_ID(2),
						     DMABUF_TO_DEVICE };
		emit_packet("packet_import_attach_map", pk, 3);
		/* version 7: the ATTACH and a MAP from the cached table, both
		 * one-way, in one packet */
		pk[0] = pk[1];
		pk[0].version = DMB_WIRE_VERSION_MAP_CACHE;
		pk[0].serial = 4;
		pk[0].u.attach.buffer_id = 7;
		pk[1] = pk[2];
		pk[1].version = DMB_WIRE_VERSION_MAP_CACHE;
		pk[1].serial = 5;
		pk[1].flags = DMB_WIRE_F_NO_REPLY;
		pk[1].u.map = (struct dmb_wire_map){ DMB_WIRE_ONE_WAY_ATT_ID(4),
						     DMABUF_BIDIRECTIONAL,
						     DMB_WIRE_MAP_ANNOUNCED, 8 };
		emit_packet("packet_attach_map_one_way", pk, 2);
	}

	m = blank(DMB_OP_MAP_REPLY);
	m.status = -ENOMEM;
	emit("map_reply_error", &m);
	m = blank(DMB_OP_HELLO_REPLY);
	m.status = -EPROTONOSUPPORT;
	emit("hello_reply_error", &m);

	{
		size_t n;
		const struct dmb_wire_desc *t = dmb_wire_op_table(&n);

		if (n > sizeof(seeded) / sizeof(seeded[0])) {
			fprintf(stderr, "descriptor table larger than expected\n");
			return 1;
		}
		for (size_t i = 0; i < n; i++)
			if (!seeded[i]) {
				fprintf(stderr, "no seed for %s\n", t[i].name);
				failures++;
			}
	}
	return failures ? 1 : 0;
}
