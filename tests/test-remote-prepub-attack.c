/* SPDX-License-Identifier: MIT */
/*
 * The table published before the first MAP (wire version 8,
 * docs/protocol.md §6 item 5b, src/remote/prepub.c) attacked by a hostile
 * or unlucky peer and raced by the exporter itself: a PREPUB MAP naming
 * another buffer's generation, the generation of a released buffer whose
 * entry and slot a new buffer took (ABA), a dynamic attachment, a one-way
 * MAP of a table a migration replaced, one after a revoke, the claim
 * twice; the release of the buffer and the peer's death with its one-way
 * MAP in the socket or after taking the entry; an allocation failure at
 * the publication; a thousand publications never used and the eight
 * entries all taken; and the importer's seqlock read while the exporter
 * republishes back to back. Every bad peer is dropped alone: the others
 * and the exporter's buffers keep working, and nothing leaks (the fixture
 * counts fds; the valgrind and sanitizer runs see memory).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"
#include "mapcache-common.h"
#include "prepub-common.h"

#define SIZE (256 * 1024ull)

/* The library's own map op: what makes a table publishable. */
static const struct dmabuf_ops pub_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map, .unmap = dmabuf_backing_unmap, .release = tx_release,
	.vmap = dmabuf_backing_vmap, .vunmap = dmabuf_backing_vunmap,
};

static struct test_exporter tx;

/* An entry as the peer reads it. */
struct pub {
	int fd;
	unsigned int i;
	uint32_t gen, slot, seq;
};

static void pub_read(const struct raw *r, struct dmabuf *buf, struct pub *p)
{
	int i;

	p->fd = dmabuf_fd(buf, O_CLOEXEC);
	assert_true(p->fd >= 0);
	i = raw_find(r, p->fd);
	assert_true(i >= 0);
	p->i = (unsigned int)i;
	p->gen = raw_entry(r, p->i)[0];
	p->slot = raw_entry(r, p->i)[2];
	p->seq = raw_entry(r, p->i)[3];
}

/* IMPORT and ATTACH of @fd on @r (@attach_flags: DMB_WIRE_ATTACH_*). */
static void raw_import_attach(struct raw *r, struct dmabuf_ctx *exp, int fd,
			      uint32_t attach_flags, uint64_t *imp, uint64_t *att)
{
	struct dmb_msg m, reply;

	assert_int_equal(rp_import(r->sock, exp, fd, imp), 0);
	rp_attach_msg(&m, *imp);
	m.u.attach.attach_flags = attach_flags;
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	*att = reply.u.attach_reply.attachment_id;
}

/* A MAP of @att as the library's client sends it after taking an entry:
 * counted in the peer's page at @slot, ANNOUNCED and naming @pub (0:
 * none), one-way with @seq (its mapping id in *mapping) or, @seq 0, as a
 * call (its status; the mapping id in *mapping). RP_CLOSED: dropped. */
static int raw_map(struct raw *r, struct dmabuf_ctx *exp, uint64_t att, uint32_t slot,
		   uint32_t seq, uint32_t pub, uint64_t *mapping)
{
	struct dmb_msg m = { .op = DMB_OP_MAP, .version = DMB_WIRE_VERSION_PREPUB }, reply;
	int ret;

	m.u.map.id = att;
	m.u.map.dir = DMABUF_BIDIRECTIONAL;
	m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED | (pub ? DMB_WIRE_MAP_PREPUB : 0);
	m.u.map.pub = pub;
	atomic_fetch_add(&r->page[slot], 1u);
	if (!seq) {
		ret = rp_call(r->sock, exp, &m, &reply);
		if (ret == 0 && mapping)
			*mapping = reply.u.map_reply.mapping_id;
		return ret;
	}
	m.flags = DMB_WIRE_F_NO_REPLY;
	m.u.map.seq = seq;
	assert_int_equal(rp_send(r->sock, &m), 0);
	if (mapping)
		*mapping = DMB_WIRE_ONE_WAY_ATT_ID(m.serial);
	return 0;
}

/* The peer is dropped: its connection closes (the messages before are
 * read and dropped). */
static void expect_dropped(struct raw *r, struct dmabuf_ctx *exp)
{
	assert_true(rp_expect_closed(r->sock, exp) >= 0);
	raw_close(r);
}

/* The peer still works: a round trip on its connection. */
static void expect_kept(struct raw *r, struct dmabuf_ctx *exp)
{
	assert_int_equal(rp_id_call(r->sock, exp, DMB_OP_DESCRIBE, r->imp), 0);
}

static void wait_release(struct dmabuf_ctx *exp, int n)
{
	for (int k = 0; k < 6000 && tx.release != n; k++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(tx.release, n);
}

/* Two buffers published to one peer: a MAP of the first naming the
 * second's generation drops the peer; the other peer keeps working and
 * both publications go with the bad peer. */
static void another_buffers_generation_drops_the_peer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *a, *b;
	struct raw good, bad;
	struct pub pa, pb;
	uint64_t imp, att, mapping;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &good);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &bad);
	a = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	pub_read(&bad, a, &pa);
	pub_read(&bad, b, &pb);
	assert_int_not_equal(pa.gen, pb.gen);
	assert_int_not_equal(pa.slot, pb.slot);
	raw_import_attach(&bad, exp, pa.fd, 0, &imp, &att);
	assert_int_equal(raw_map(&bad, exp, att, pa.slot, 0, pb.gen, &mapping), RP_CLOSED);
	raw_close(&bad);
	/* The good peer: a round trip of either buffer. */
	raw_import_attach(&good, exp, pb.fd, 0, &imp, &att);
	assert_int_equal(rp_map(good.sock, exp, att, DMABUF_BIDIRECTIONAL, &mapping), 0);
	assert_int_equal(rp_unmap(good.sock, exp, mapping, DMABUF_BIDIRECTIONAL), 0);
	expect_kept(&good, exp);
	close(pa.fd);
	close(pb.fd);
	raw_close(&good);
	dispatch_until_mappings(exp, b, 0, 0);
	assert_int_equal(dmabuf_put(a), 0);
	assert_int_equal(dmabuf_put(b), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 3);
	dmabuf_ctx_destroy(exp);
}

/* ABA: a buffer published and released, a new one published in the same
 * entry and slot. A one-way MAP of the new one naming the old generation
 * drops the peer; naming its own, it is mapped. */
static void released_buffers_generation_drops_the_peer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *a, *b;
	struct raw r;
	struct pub pa, pb;
	uint64_t imp, att, mapping;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	for (int honest = 0; honest < 2; honest++) {
		raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
		a = tx_export_ops(exp, &tx, &pub_ops, SIZE);
		pub_read(&r, a, &pa);
		close(pa.fd);
		assert_int_equal(dmabuf_put(a), 0);
		wait_release(exp, 1 + 2 * honest);
		assert_int_equal(raw_entry(&r, pa.i)[0], 0);
		b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
		pub_read(&r, b, &pb);
		/* the same entry and slot, another generation */
		assert_int_equal(pb.i, pa.i);
		assert_int_equal(pb.slot, pa.slot);
		assert_int_not_equal(pb.gen, pa.gen);
		raw_import_attach(&r, exp, pb.fd, 0, &imp, &att);
		raw_map(&r, exp, att, pb.slot, pb.seq, honest ? pb.gen : pa.gen, &mapping);
		if (!honest) {
			expect_dropped(&r, exp);
		} else {
			dispatch_until_mappings(exp, b, 1, 1);
			assert_int_equal(rp_unmap(r.sock, exp, mapping, DMABUF_BIDIRECTIONAL), 0);
			expect_kept(&r, exp);
			raw_close(&r);
		}
		close(pb.fd);
		dispatch_until_mappings(exp, b, 0, 0);
		assert_int_equal(dmabuf_put(b), 0);
		wait_release(exp, 2 + 2 * honest);
	}
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 5);
	dmabuf_ctx_destroy(exp);
}

/* A dynamic attachment's MAP takes no publication (its table may move
 * with no MAP in between); one naming it drops the peer. */
static void prepub_map_of_a_dynamic_attachment_drops_the_peer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b;
	struct raw r;
	struct pub pb;
	uint64_t imp, att, dyn, mapping;
	struct dmb_msg m = { .op = DMB_OP_MAP, .version = DMB_WIRE_VERSION_PREPUB }, reply;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	pub_read(&r, b, &pb);
	raw_import_attach(&r, exp, pb.fd, DMB_WIRE_ATTACH_DYNAMIC, &imp, &dyn);
	/* A plain MAP of it: answered, the publication left alone. */
	assert_int_equal(rp_map(r.sock, exp, dyn, DMABUF_BIDIRECTIONAL, &mapping), 0);
	assert_int_equal(rp_unmap(r.sock, exp, mapping, DMABUF_BIDIRECTIONAL), 0);
	assert_non_null(dmb_prepub_handle(tx_only_peer(exp), b));
	assert_int_equal(raw_entry(&r, pb.i)[0], pb.gen);
	/* Naming the publication: dropped. */
	m.u.map.id = dyn;
	m.u.map.flags = DMB_WIRE_MAP_PREPUB | DMB_WIRE_MAP_ANNOUNCED;
	m.u.map.pub = pb.gen;
	assert_int_equal(rp_call(r.sock, exp, &m, &reply), RP_CLOSED);
	raw_close(&r);
	/* A new peer of the same buffer: a static attachment's round trip. */
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	raw_import_attach(&r, exp, pb.fd, 0, &imp, &att);
	assert_int_equal(rp_map(r.sock, exp, att, DMABUF_BIDIRECTIONAL, &mapping), 0);
	assert_int_equal(rp_unmap(r.sock, exp, mapping, DMABUF_BIDIRECTIONAL), 0);
	close(pb.fd);
	raw_close(&r);
	dispatch_until_mappings(exp, b, 0, 0);
	assert_int_equal(dmabuf_put(b), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 2);
	dmabuf_ctx_destroy(exp);
}

/* The claim named twice (the library's client names it once): the same
 * generation again is the import's own, both one-way MAPs are made and
 * counted; then another generation drops the peer. */
static void prepub_claim_twice(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b;
	struct raw r;
	struct pub pb;
	uint64_t imp, att, m1, m2;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	pub_read(&r, b, &pb);
	raw_import_attach(&r, exp, pb.fd, 0, &imp, &att);
	raw_map(&r, exp, att, pb.slot, pb.seq, pb.gen, &m1);
	raw_map(&r, exp, att, pb.slot, pb.seq, pb.gen, &m2);
	dispatch_until_mappings(exp, b, 2, 1);
	assert_null(dmb_prepub_handle(tx_only_peer(exp), b));
	assert_int_equal(raw_entry(&r, pb.i)[0], 0);
	assert_int_equal(rp_unmap(r.sock, exp, m1, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(rp_unmap(r.sock, exp, m2, DMABUF_BIDIRECTIONAL), 0);
	raw_map(&r, exp, att, pb.slot, pb.seq, pb.gen + 2, &m1);
	expect_dropped(&r, exp);
	close(pb.fd);
	dispatch_until_mappings(exp, b, 0, 0);
	assert_int_equal(dmabuf_put(b), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 2);
	dmabuf_ctx_destroy(exp);
}

/* Migrated after the publication: the entry's number is older than the
 * migration, so a one-way MAP with it drops the peer (the library's
 * client reads the number moved and asks); the round trip that names the
 * entry answers the new frames. Revoked: the round trip is -ENODEV and
 * the peer is kept. */
static void prepub_map_after_migration_or_revoke(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b;
	struct raw r;
	struct pub pb;
	uint64_t imp, att, mapping;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	for (int mode = 0; mode < 3; mode++) {
		raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
		b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
		pub_read(&r, b, &pb);
		if (mode < 2) {
			assert_int_equal(migrate(b, DMABUF_ALLOC_CONTIGUOUS), 0);
			/* no room left for a one-way MAP either */
			assert_int_equal(r.page[DMB_WIRE_CACHE_SLOTS + pb.slot], r.page[pb.slot]);
		}
		raw_import_attach(&r, exp, pb.fd, 0, &imp, &att);
		if (mode == 2)
			assert_int_equal(dmabuf_revoke(b), 0);
		switch (mode) {
		case 0:
			raw_map(&r, exp, att, pb.slot, pb.seq, pb.gen, &mapping);
			expect_dropped(&r, exp);
			break;
		case 1: {
			struct dmb_msg m = { .op = DMB_OP_MAP, .version = DMB_WIRE_VERSION_PREPUB };
			struct dmb_msg reply;

			m.u.map.id = att;
			m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED | DMB_WIRE_MAP_PREPUB;
			m.u.map.pub = pb.gen;
			atomic_fetch_add(&r.page[pb.slot], 1u);
			assert_int_equal(rp_call(r.sock, exp, &m, &reply), 0);
			assert_int_equal(reply.u.map_reply.count, 1); /* contiguous */
			assert_true(reply.u.map_reply.flags & DMB_WIRE_MAP_CACHE);
			assert_int_not_equal(reply.u.map_reply.seq, pb.seq);
			assert_int_equal(rp_unmap(r.sock, exp, reply.u.map_reply.mapping_id,
						  DMABUF_BIDIRECTIONAL), 0);
			expect_kept(&r, exp);
			raw_close(&r);
			break;
		}
		case 2:
			assert_int_equal(raw_map(&r, exp, att, pb.slot, 0, pb.gen, NULL), -ENODEV);
			expect_kept(&r, exp);
			raw_close(&r);
			break;
		}
		close(pb.fd);
		dispatch_until_mappings(exp, b, 0, 0);
		assert_int_equal(dmabuf_put(b), 0);
		wait_release(exp, mode + 1);
	}
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 4);
	dmabuf_ctx_destroy(exp);
}

enum death { RELEASE_BEHIND_MAP, CLOSE_BEHIND_MAP, CLOSE_AFTER_TAKING };

/* The exporter's last reference and the peer's go with a one-way MAP of
 * the published table in the socket, or the peer dies after taking the
 * entry (before or after sending its MAP): the mapping, the import, the
 * publication and the buffer all go; a new peer keeps working. */
static void run_death(enum death how)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b;
	struct raw r;
	struct pub pb;
	uint64_t imp, att, mapping;
	struct dmb_msg m;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	pub_read(&r, b, &pb);
	raw_import_attach(&r, exp, pb.fd, 0, &imp, &att);
	close(pb.fd);
	assert_int_equal(dmabuf_put(b), 0); /* the peer's import holds it */
	if (how != CLOSE_AFTER_TAKING)
		raw_map(&r, exp, att, pb.slot, pb.seq, pb.gen, &mapping);
	else
		atomic_fetch_add(&r.page[pb.slot], 1u); /* counted, never sent */
	if (how == RELEASE_BEHIND_MAP) {
		/* Not dispatched: the MAP, its UNMAP, DETACH and RELEASE wait
		 * in the socket behind each other. */
		m = (struct dmb_msg){ .op = DMB_OP_UNMAP, .flags = DMB_WIRE_F_NO_REPLY,
				      .version = DMB_WIRE_VERSION_PREPUB };
		m.u.map.id = mapping;
		m.u.map.dir = DMABUF_BIDIRECTIONAL;
		assert_int_equal(rp_send(r.sock, &m), 0);
		m = (struct dmb_msg){ .op = DMB_OP_DETACH, .flags = DMB_WIRE_F_NO_REPLY,
				      .version = DMB_WIRE_VERSION_PREPUB };
		m.u.id.id = att;
		assert_int_equal(rp_send(r.sock, &m), 0);
		m = (struct dmb_msg){ .op = DMB_OP_RELEASE, .flags = DMB_WIRE_F_NO_REPLY,
				      .version = DMB_WIRE_VERSION_PREPUB };
		m.u.id.id = imp;
		assert_int_equal(rp_send(r.sock, &m), 0);
		wait_release(exp, 1);
		expect_kept(&r, exp);
		raw_close(&r);
	} else {
		raw_close(&r);
		wait_release(exp, 1);
	}
	/* A new peer: publications and maps as before. */
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	pub_read(&r, b, &pb);
	raw_import_attach(&r, exp, pb.fd, 0, &imp, &att);
	raw_map(&r, exp, att, pb.slot, pb.seq, pb.gen, &mapping);
	dispatch_until_mappings(exp, b, 1, 1);
	assert_int_equal(rp_unmap(r.sock, exp, mapping, DMABUF_BIDIRECTIONAL), 0);
	close(pb.fd);
	raw_close(&r);
	dispatch_until_mappings(exp, b, 0, 0);
	assert_int_equal(dmabuf_put(b), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 3);
	dmabuf_ctx_destroy(exp);
}

static void release_behind_a_one_way_prepub_map(void **state)
{
	run_death(RELEASE_BEHIND_MAP);
}

static void peer_gone_behind_a_one_way_prepub_map(void **state)
{
	run_death(CLOSE_BEHIND_MAP);
}

static void peer_gone_after_taking_the_entry(void **state)
{
	run_death(CLOSE_AFTER_TAKING);
}

/* No memory for the reserve at the publication (DMABUF_FAULT_ALLOC): the
 * peer's limit lets no one-way MAP go, its MAP asks and is answered, and
 * the peer is kept; one that sends it one-way anyway is answered from
 * records made then. */
static void allocation_failure_at_publication(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b;
	struct raw r;
	struct pub pb;
	uint64_t imp, att, mapping;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	for (unsigned int nth = 1; nth <= 2; nth++) {
		b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
		assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_ALLOC, nth, ENOMEM), 0);
		pub_read(&r, b, &pb);
		assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0), 0);
		/* room for nth - 1 one-way MAPs */
		assert_int_equal(r.page[DMB_WIRE_CACHE_SLOTS + pb.slot], r.page[pb.slot] + nth - 1);
		raw_import_attach(&r, exp, pb.fd, 0, &imp, &att);
		if (nth == 1) {
			assert_int_equal(raw_map(&r, exp, att, pb.slot, 0, pb.gen, &mapping), 0);
		} else {
			raw_map(&r, exp, att, pb.slot, pb.seq, pb.gen, &mapping);
			dispatch_until_mappings(exp, b, 1, 1);
		}
		assert_int_equal(rp_unmap(r.sock, exp, mapping, DMABUF_BIDIRECTIONAL), 0);
		/* Beyond the limit, one-way: made now. */
		raw_map(&r, exp, att, pb.slot, pb.seq, 0, &mapping);
		raw_map(&r, exp, att, pb.slot, pb.seq, 0, &imp /* scratch */);
		dispatch_until_mappings(exp, b, 2, 1);
		assert_int_equal(rp_unmap(r.sock, exp, mapping, DMABUF_BIDIRECTIONAL), 0);
		assert_int_equal(rp_unmap(r.sock, exp, imp, DMABUF_BIDIRECTIONAL), 0);
		expect_kept(&r, exp);
		assert_int_equal(rp_id_call(r.sock, exp, DMB_OP_DETACH, att), 0);
		close(pb.fd);
		assert_int_equal(dmabuf_put(b), 0);
		dispatch_until_mappings(exp, b, 0, 0);
	}
	raw_close(&r);
	dispatch_until_mappings(exp, buf, 0, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 3);
	dmabuf_ctx_destroy(exp);
}

static unsigned int entries_used(const struct raw *r)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < DMB_WIRE_PREPUB_ENTRIES; i++)
		n += raw_entry(r, i)[0] != 0;
	return n;
}

/* A thousand publications never used, each gone at its buffer's release
 * (entry, slot, reserve: the fixture counts fds, valgrind the rest); then
 * all eight entries taken by live buffers: the ninth buffer is not
 * published, a freed entry takes the next one, generations never repeat,
 * and the peer's death takes what is left. */
static void unused_publications_and_the_entries_wrapping(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b, *live[DMB_WIRE_PREPUB_ENTRIES + 2];
	struct pub p[DMB_WIRE_PREPUB_ENTRIES + 2];
	uint32_t last = 0;
	struct raw r;
	int fd;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	for (int n = 0; n < 1000; n++) {
		b = tx_export_ops(exp, &tx, &pub_ops, 4096);
		pub_read(&r, b, &p[0]);
		assert_true(p[0].gen > last);
		last = p[0].gen;
		close(p[0].fd);
		assert_int_equal(dmabuf_put(b), 0);
		wait_release(exp, n + 1);
		assert_int_equal(entries_used(&r), 0);
	}
	for (unsigned int k = 0; k < DMB_WIRE_PREPUB_ENTRIES; k++) {
		live[k] = tx_export_ops(exp, &tx, &pub_ops, SIZE);
		pub_read(&r, live[k], &p[k]);
		assert_int_equal(p[k].i, k);
		close(p[k].fd);
	}
	assert_int_equal(entries_used(&r), DMB_WIRE_PREPUB_ENTRIES);
	/* All taken: not published (its MAP will ask). */
	live[8] = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	fd = dmabuf_fd(live[8], O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(raw_find(&r, fd), -1);
	assert_null(dmb_prepub_handle(tx_only_peer(exp), live[8]));
	close(fd);
	/* One freed: the next buffer takes its entry, a new generation. */
	assert_int_equal(dmabuf_put(live[3]), 0);
	wait_release(exp, 1001);
	live[9] = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	pub_read(&r, live[9], &p[9]);
	assert_int_equal(p[9].i, 3);
	assert_true(p[9].gen > p[7].gen);
	close(p[9].fd);
	/* The peer's death takes the publications of live buffers. */
	raw_close(&r);
	dispatch_until_mappings(exp, buf, 0, 0);
	for (unsigned int k = 0; k < DMB_WIRE_PREPUB_ENTRIES + 2; k++) {
		if (k != 3)
			assert_int_equal(dmabuf_put(live[k]), 0);
	}
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 1000 + DMB_WIRE_PREPUB_ENTRIES + 3);
	dmabuf_ctx_destroy(exp);
}

static const char *fence_name(struct dmabuf_fence *f)
{
	return "prepub-attack";
}

static const struct dmabuf_fence_ops kernel_fence_ops = {
	.version = 1,
	.get_driver_name = fence_name,
	.get_timeline_name = fence_name,
};

static void add_kernel_fence(struct dmabuf *buf, struct dmabuf_fence *f)
{
	dmabuf_resv_lock(dmabuf_get_resv(buf));
	assert_int_equal(dmabuf_resv_add_fence(dmabuf_get_resv(buf), f, DMABUF_RESV_USAGE_KERNEL), 0);
	dmabuf_resv_unlock(dmabuf_get_resv(buf));
}

/* A KERNEL fence pending at the buffer's first dmabuf_fd() (a move or a
 * clear the exporter started before sharing it) moved no number: a
 * publication would let the peer's first MAP go one-way without the wait
 * the kernel's static map makes (the old code published it, and a one-way
 * MAP of it was mapped under the pending fence). Not published: the MAP
 * asks, and is answered once the fence signalled. A signalled one does
 * not stop the publication. */
static void pending_kernel_fence_is_not_published(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b, *c;
	struct dmabuf_fence *f;
	struct raw r;
	struct pub pc;
	uint64_t imp, att, mapping;
	int fd;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	assert_int_equal(dmabuf_fence_new(&kernel_fence_ops, NULL, dmabuf_fence_context_alloc(1),
					  1, &f), 0);
	add_kernel_fence(b, f);
	fd = dmabuf_fd(b, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(raw_find(&r, fd), -1);
	assert_null(dmb_prepub_handle(tx_only_peer(exp), b));
	assert_int_equal(entries_used(&r), 0);
	/* Signalled: the round trip (its map waits for nothing now). */
	assert_int_equal(dmabuf_fence_signal(f), 0);
	raw_import_attach(&r, exp, fd, 0, &imp, &att);
	assert_int_equal(rp_map(r.sock, exp, att, DMABUF_BIDIRECTIONAL, &mapping), 0);
	assert_int_equal(rp_unmap(r.sock, exp, mapping, DMABUF_BIDIRECTIONAL), 0);
	/* A buffer whose KERNEL fence signalled before its first fd. */
	c = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	add_kernel_fence(c, f);
	dmabuf_fence_put(f);
	pub_read(&r, c, &pc);
	close(pc.fd);
	close(fd);
	raw_close(&r);
	dispatch_until_mappings(exp, b, 0, 0);
	assert_int_equal(dmabuf_put(c), 0);
	assert_int_equal(dmabuf_put(b), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 3);
	dmabuf_ctx_destroy(exp);
}

/* The exporter's context destroyed with its peer connected and
 * publications outstanding, one of a buffer the caller leaked and one the
 * peer took and mapped: the leak is reported, and the publications, the
 * peer's handles and the pages all go (the sanitizer and valgrind runs see
 * memory; the fixture the fds). */
static void context_destroyed_with_publications_outstanding(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *a, *b;
	struct raw r;
	struct pub pa, pb;
	uint64_t imp, att, mapping;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	a = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	pub_read(&r, a, &pa);
	pub_read(&r, b, &pb);
	raw_import_attach(&r, exp, pb.fd, 0, &imp, &att);
	raw_map(&r, exp, att, pb.slot, pb.seq, pb.gen, &mapping);
	dispatch_until_mappings(exp, b, 1, 1);
	close(pa.fd);
	close(pb.fd);
	assert_int_equal(dmabuf_put(b), 0); /* the peer's import holds it */
	assert_int_equal(dmabuf_put(buf), 0);
	/* a leaked: one leak reported */
	assert_int_equal(dmabuf_ctx_destroy(exp), 1);
	assert_int_equal(tx.release, 3);
	/* The peer sees the exporter gone. */
	assert_true(rp_expect_closed(r.sock, NULL) >= 0);
	raw_close(&r);
}

/* ---- the exporter's death --------------------------------------------------- */

struct dying {
	int sock;
};

/* An exporter process: a buffer its peer maps (a round trip: the peer is
 * then the one that mapped last), then a new one published to that peer
 * and sent; then it serves until it is killed. */
static int dying_exporter(void *arg)
{
	const struct dying *d = arg;
	struct test_exporter ctx_tx = { 0 };
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b;
	int fd;

	buf = tx_export_ops(exp, &ctx_tx, &pub_ops, SIZE);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	child_check(fd >= 0 && dmabuf_send_fd(d->sock, fd, "f", 1) == 0);
	close(fd);
	child_check(tx_wait_byte(d->sock, exp) == 'a');
	b = tx_export_ops(exp, &ctx_tx, &pub_ops, SIZE);
	fd = dmabuf_fd(b, O_CLOEXEC);
	child_check(fd >= 0 && dmb_prepub_handle(tx_only_peer(exp), b) != NULL);
	child_check(dmabuf_send_fd(d->sock, fd, "n", 1) == 0);
	close(fd);
	for (;;)
		dmabuf_ctx_dispatch_timeout(exp, 100);
	return 1;
}

/* The exporter SIGKILLed with a publication outstanding, after the
 * importer's IMPORT and ATTACH of that buffer: the importer's first MAP
 * finds the entry in its own page and the exporter's number unchanged,
 * and answers -ENODEV (the connection is dead), as every call then; its
 * puts and teardown leak nothing. */
static void exporter_killed_with_a_publication_outstanding(void **state)
{
	struct dmabuf_device_info info = { .name = "dev", .flags = DMABUF_DEVICE_IOMMU };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf, *b;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dying d;
	int sv[2], fd, fd1, ret;
	char c = 0;
	size_t len;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	d.sock = sv[1];
	pid = harness_fork_sock(dying_exporter, &d, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_ctx_new(NULL, &ctx), 0);
	assert_int_equal(dmabuf_device_new(ctx, &info, &dev), 0);
	assert_int_equal(dmabuf_recv_fd(sv[0], &fd, &c, 1, &len), 0);
	assert_true(fd >= 0 && c == 'f');
	assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "a", 1), 0);
	assert_int_equal(dmabuf_recv_fd(sv[0], &fd1, &c, 1, &len), 0);
	assert_true(fd1 >= 0 && c == 'n');
	ret = dmabuf_get(ctx, fd1, &b);
	assert_int_equal(ret, 0);
	assert_int_equal(dmabuf_attach(b, dev, &att), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), -ENODEV);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), -ENODEV);
	assert_int_equal(dmabuf_detach(b, att), 0);
	assert_int_equal(dmabuf_put(b), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd1);
	close(fd);
	close(sv[0]);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
}

/* ---- a forked importer ------------------------------------------------------ */

struct forked {
	int sock;
};

static bool one_way_map(struct dmabuf *b, struct dmabuf_device *dev, int *ret)
{
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	bool one_way = false;

	child_check(dmabuf_attach(b, dev, &att) == 0);
	*ret = dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt);
	if (*ret == 0) {
		one_way = (sgt->remote_id & DMB_WIRE_ONE_WAY_ATT_BITS) == DMB_WIRE_ONE_WAY_ATT_BITS;
		child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
	}
	child_check(dmabuf_detach(b, att) == 0);
	return one_way;
}

/* The importer that mapped last forks after the new buffer came: the
 * child cannot use the inherited context, and its own (another peer)
 * has no publication, so its MAP is a round trip; the parent's first MAP
 * still takes the entry and goes one-way. */
static int forking_importer(void *arg)
{
	const struct forked *f = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf, *b;
	int fd, fd1, ret, status;
	char c = 0;
	size_t len;
	pid_t pid;

	fd = tx_child_import(f->sock, "dev", &ctx, &dev, &buf);
	child_check(!one_way_map(buf, dev, &ret) && ret == 0);
	child_check(dmabuf_send_fd(f->sock, -1, "a", 1) == 0);
	child_check(dmabuf_recv_fd(f->sock, &fd1, &c, 1, &len) == 0 && fd1 >= 0 && c == 'n');
	pid = fork();
	child_check(pid >= 0);
	if (pid == 0) {
		struct dmabuf_device_info info = { .name = "dev", .flags = DMABUF_DEVICE_IOMMU };
		struct dmabuf_ctx *ctx2;
		struct dmabuf_device *dev2;
		struct dmabuf *b2;
		bool ow;

		child_check(dmabuf_get(ctx, fd1, &b2) == -EINVAL); /* the parent's */
		child_check(dmabuf_ctx_new(NULL, &ctx2) == 0);
		child_check(dmabuf_device_new(ctx2, &info, &dev2) == 0);
		child_check(dmabuf_get(ctx2, fd1, &b2) == 0);
		ow = one_way_map(b2, dev2, &ret);
		child_check(ret == 0 && !ow);
		child_check(dmabuf_put(b2) == 0);
		dmabuf_device_destroy(dev2);
		child_check(dmabuf_ctx_destroy(ctx2) == 0);
		_exit(0);
	}
	child_check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	child_check(dmabuf_get(ctx, fd1, &b) == 0);
	child_check(one_way_map(b, dev, &ret) && ret == 0);
	child_check(dmabuf_put(b) == 0);
	child_check(dmabuf_put(buf) == 0);
	child_check(dmabuf_send_fd(f->sock, -1, "d", 1) == 0);
	child_check(tx_wait_byte(f->sock, NULL) == 'q');
	close(fd1);
	close(fd);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void forked_importer_keeps_its_parents_publication(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *b;
	struct forked f;
	int sock, fd;
	pid_t pid;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	pid = tx_fork_importer(buf, forking_importer, &f, &f.sock, &sock);
	assert_int_equal(tx_wait_byte(sock, exp), 'a');
	dispatch_until_mappings(exp, buf, 0, 0);
	b = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	fd = dmabuf_fd(b, O_CLOEXEC);
	assert_true(fd >= 0);
	assert_non_null(dmb_prepub_handle(tx_only_peer(exp), b));
	assert_int_equal(dmabuf_send_fd(sock, fd, "n", 1), 0);
	close(fd);
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	dispatch_until_mappings(exp, b, 0, 0);
	assert_int_equal(dmabuf_send_fd(sock, -1, "q", 1), 0);
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	assert_int_equal(dmabuf_put(b), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, 2);
	dmabuf_ctx_destroy(exp);
}

/* ---- the seqlock ---------------------------------------------------------- */

#define NBUF (DMB_WIRE_PREPUB_ENTRIES + 1)
#define TAKES 2000

struct reader {
	struct dmb_conn conn;	/* the importer's view: version, page */
	struct dmabuf *buf[NBUF];
	struct dmabuf_sg_table *want[NBUF];
	atomic_uint takes, torn;
	atomic_bool stop;
};

/* The importer's read of its page, as its MAP does it, for every buffer
 * again and again: a table taken is the buffer's own or torn. */
static void *reader_main(void *arg)
{
	struct reader *rd = arg;

	while (!atomic_load(&rd->stop)) {
		for (unsigned int k = 0; k < NBUF; k++) {
			struct dmabuf_sg_entry *sg;
			uint32_t slot, seq, gen, count;
			const struct dmabuf_sg_table *w = rd->want[k];

			if (!dmb_conn_prepub_take(&rd->conn, rd->buf[k], DMABUF_BIDIRECTIONAL,
						  &slot, &seq, &gen, &sg, &count))
				continue;
			if (count != w->cpu_count || memcmp(sg, w->cpu, count * sizeof(*sg)) ||
			    slot >= DMB_WIRE_CACHE_SLOTS || !seq || (seq & 1) || !gen || (gen & 1))
				atomic_fetch_add(&rd->torn, 1u);
			atomic_fetch_add(&rd->takes, 1u);
			free(sg);
		}
	}
	return NULL;
}

/* Buffers of different sizes and frames published back to back into the
 * entries (each release frees one, the next buffer takes it) while the
 * importer reads: it never takes a table that is not its buffer's. */
static void republished_entries_are_never_read_torn(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct reader *rd = calloc(1, sizeof(*rd));
	unsigned int out = 0, in = DMB_WIRE_PREPUB_ENTRIES;
	pthread_t t;
	struct raw r;

	assert_non_null(rd);
	if (!dmb_memfd_inodes_unique()) {
		free(rd);
		dmabuf_ctx_destroy(exp);
		skip();
	}
	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	rd->conn.version = DMB_WIRE_VERSION_PREPUB;
	rd->conn.cache_state = 1;
	rd->conn.cache_announced = r.page;
	for (unsigned int k = 0; k < NBUF; k++) {
		/* 4 KiB to 36 KiB in pieces of the system heap: tables of
		 * 1 to 9 entries, all different */
		rd->buf[k] = tx_export_ops(exp, &tx, &pub_ops, 4096ull * (k + 1));
		dmb_lock(exp);
		assert_int_equal(dmb_backing_table_locked(rd->buf[k], &rd->want[k]), 0);
		if (k < DMB_WIRE_PREPUB_ENTRIES) {
			dmb_prepub_publish(rd->buf[k]);
		}
		dmb_unlock(exp);
		assert_int_equal(dmb_prepub_handle(tx_only_peer(exp), rd->buf[k]) != NULL,
				 k < DMB_WIRE_PREPUB_ENTRIES);
	}
	assert_int_equal(entries_used(&r), DMB_WIRE_PREPUB_ENTRIES);
	assert_int_equal(pthread_create(&t, NULL, reader_main, rd), 0);
	/* Until the reader took enough tables while the entries changed
	 * under it (the bound is the suite's timeout). */
	for (unsigned long n = 0; atomic_load(&rd->takes) < TAKES; n++) {
		dmb_lock(exp);
		dmb_prepub_released(rd->buf[out]);
		dmb_prepub_publish(rd->buf[in]);
		dmb_unlock(exp);
		out = (out + 1) % NBUF;
		in = (in + 1) % NBUF;
		if (!(n & 7))
			sched_yield();
	}
	atomic_store(&rd->stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(atomic_load(&rd->torn), 0);
	for (unsigned int k = 0; k < NBUF; k++) {
		dmb_sgt_free(rd->want[k]);
		assert_int_equal(dmabuf_put(rd->buf[k]), 0);
	}
	raw_close(&r);
	dispatch_until_mappings(exp, buf, 0, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	wait_release(exp, NBUF + 1);
	dmabuf_ctx_destroy(exp);
	free(rd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(another_buffers_generation_drops_the_peer),
		harness_test(released_buffers_generation_drops_the_peer),
		harness_test(prepub_map_of_a_dynamic_attachment_drops_the_peer),
		harness_test(prepub_claim_twice),
		harness_test(prepub_map_after_migration_or_revoke),
		harness_test(release_behind_a_one_way_prepub_map),
		harness_test(peer_gone_behind_a_one_way_prepub_map),
		harness_test(peer_gone_after_taking_the_entry),
		harness_test(allocation_failure_at_publication),
		harness_test(unused_publications_and_the_entries_wrapping),
		harness_test(pending_kernel_fence_is_not_published),
		harness_test(context_destroyed_with_publications_outstanding),
		harness_test(exporter_killed_with_a_publication_outstanding),
		harness_test(forked_importer_keeps_its_parents_publication),
		harness_test(republished_entries_are_never_read_torn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
