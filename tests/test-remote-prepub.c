/* SPDX-License-Identifier: MIT */
/*
 * A new buffer's table published before the first MAP (wire version 8,
 * docs/protocol.md §6 item 5b, src/remote/prepub.c): at the first
 * dmabuf_fd() of a buffer whose exporter's map op is dmabuf_backing_map(),
 * the exporter writes its table into the page of the peer that mapped
 * last, and that peer's first MAP of the buffer goes one-way with it: the
 * same table as the round trip's; a revoke (-ENODEV), a migration or
 * another direction keeps the round trip; a migration while such a MAP is
 * in the socket is -EBUSY (the map returned first); a publication never
 * used goes at the release; a version 7 peer gets none; a peer that names
 * a publication its import did not take is dropped, the others keep
 * working.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"
#include "mapcache-common.h"
#include "prepub-common.h"

#define SIZE (256 * 1024ull)

static int test_unmap_count;

static void count_unmap(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
			enum dmabuf_direction dir)
{
	test_unmap_count++;
	dmabuf_backing_unmap(att, sgt, dir);
}

/* The library's own map op: what makes a table publishable. */
static const struct dmabuf_ops pub_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map, .unmap = count_unmap, .release = tx_release,
	.vmap = dmabuf_backing_vmap, .vunmap = dmabuf_backing_vunmap,
};

static struct test_exporter tx;

struct table {
	unsigned int n;
	struct dmabuf_sg_entry e[64];
};

static void table_of(const struct dmabuf_sg_table *sgt, struct table *t)
{
	t->n = dmabuf_sg_table_get_cpu_count(sgt);
	child_check(t->n <= 64);
	memcpy(t->e, dmabuf_sg_table_get_cpu_entries(sgt), t->n * sizeof(t->e[0]));
}

static bool table_equal(const struct table *a, const struct table *b)
{
	return a->n == b->n && !memcmp(a->e, b->e, a->n * sizeof(a->e[0]));
}

enum mode { SAME_TABLE, OTHER_DIR, REVOKED, MIGRATED, MIGRATE_IN_FLIGHT, TWO_IMPORTS };

struct env {
	int sock;
	enum mode mode;
};

/* attach, map, (report), unmap, detach of @buf; the table and whether
 * the MAP went one-way. */
static int map_once(struct dmabuf *buf, struct dmabuf_device *dev, enum dmabuf_direction dir,
		    int sock, char report, struct table *t, bool *one_way)
{
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	int ret;

	child_check(dmabuf_attach(buf, dev, &att) == 0);
	ret = dmabuf_map_attachment(att, dir, &sgt);
	if (ret == 0) {
		table_of(sgt, t);
		*one_way = one_way_mapping(sgt);
	}
	if (report) {
		child_check(dmabuf_send_fd(sock, -1, &report, 1) == 0);
		child_check(tx_wait_byte(sock, NULL) == 'g');
	}
	if (ret == 0)
		child_check(dmabuf_unmap_attachment(att, sgt, dir) == 0);
	child_check(dmabuf_detach(buf, att) == 0);
	return ret;
}

static int importer(void *arg)
{
	const struct env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev, *dev2;
	struct dmabuf_device_info info = { .name = "dev2" }; /* no IOMMU */
	struct dmabuf *buf, *buf1;
	struct table first, again;
	bool one_way = true;
	int fd, fd1, sock = env->sock;
	char c = 0;
	size_t len;

	fd = tx_child_import(sock, "dev", &ctx, &dev, &buf);
	child_check(dmabuf_device_new(ctx, &info, &dev2) == 0);
	/* A MAP round trip: the exporter learns who maps and how. */
	child_check(map_once(buf, dev, DMABUF_BIDIRECTIONAL, sock, 0, &first, &one_way) == 0);
	child_check(!one_way);
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	child_check(dmabuf_send_fd(sock, -1, "a", 1) == 0);
	/* The new buffer, published before its fd was sent. */
	child_check(dmabuf_recv_fd(sock, &fd1, &c, 1, &len) == 0 && fd1 >= 0 && c == 'n');
	child_check(dmabuf_get(ctx, fd1, &buf1) == 0);
	switch (env->mode) {
	case SAME_TABLE:
		/* One-way, the published table; another direction on
		 * another device asks: the same entries. */
		child_check(map_once(buf1, dev, DMABUF_BIDIRECTIONAL, sock, 0, &first,
				     &one_way) == 0);
		child_check(one_way);
		child_check(map_once(buf1, dev2, DMABUF_TO_DEVICE, sock, 0, &again,
				     &one_way) == 0);
		child_check(!one_way);
		child_check(table_equal(&first, &again));
		/* The first direction again: the table kept, one-way. */
		child_check(map_once(buf1, dev2, DMABUF_BIDIRECTIONAL, sock, 0, &again,
				     &one_way) == 0);
		child_check(one_way);
		child_check(table_equal(&first, &again));
		break;
	case OTHER_DIR:
		/* Published for BIDIRECTIONAL: TO_DEVICE asks. */
		child_check(map_once(buf1, dev, DMABUF_TO_DEVICE, sock, 0, &first,
				     &one_way) == 0);
		child_check(!one_way);
		break;
	case REVOKED:
		/* Revoked after the publication: asked, -ENODEV. */
		child_check(map_once(buf1, dev, DMABUF_BIDIRECTIONAL, sock, 0, &first,
				     &one_way) == -ENODEV);
		break;
	case MIGRATED:
		/* Migrated after the publication: asked, the new frames. */
		child_check(map_once(buf1, dev, DMABUF_BIDIRECTIONAL, sock, 0, &first,
				     &one_way) == 0);
		child_check(!one_way);
		child_check(first.n == 1); /* contiguous now */
		break;
	case MIGRATE_IN_FLIGHT:
		/* One-way; the exporter tries to migrate before it reads
		 * the MAP: -EBUSY, the map returned first. */
		child_check(map_once(buf1, dev, DMABUF_BIDIRECTIONAL, sock, 'm', &first,
				     &one_way) == 0);
		child_check(one_way);
		break;
	case TWO_IMPORTS:
		/* An import that never maps, put; the next import of the
		 * same buffer takes the published table (its exporter's
		 * import counts from the publication), once. */
		child_check(dmabuf_put(buf1) == 0);
		child_check(dmabuf_get(ctx, fd1, &buf1) == 0);
		child_check(map_once(buf1, dev, DMABUF_BIDIRECTIONAL, sock, 0, &first,
				     &one_way) == 0);
		child_check(one_way);
		child_check(dmabuf_put(buf1) == 0);
		child_check(dmabuf_get(ctx, fd1, &buf1) == 0);
		child_check(map_once(buf1, dev, DMABUF_BIDIRECTIONAL, sock, 0, &again,
				     &one_way) == 0);
		child_check(!one_way);
		child_check(table_equal(&first, &again));
		break;
	}
	child_check(dmabuf_send_fd(sock, -1, "d", 1) == 0);
	child_check(tx_wait_byte(sock, NULL) == 'q');
	child_check(dmabuf_put(buf1) == 0);
	close(fd1);
	dmabuf_device_destroy(dev2);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void run(enum mode mode)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct env env = { .mode = mode };
	struct dmabuf *buf, *buf1;
	struct dmb_peer *peer;
	int sock, fd, want = 0;
	pid_t pid;

	tx = (struct test_exporter){ 0 };
	test_unmap_count = 0;
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	if (!kernel_marks(buf)) {
		dmabuf_put(buf);
		dmabuf_ctx_destroy(exp);
		skip();
	}
	pid = tx_fork_importer(buf, importer, &env, &env.sock, &sock);
	assert_int_equal(tx_wait_byte(sock, exp), 'a');
	dispatch_until_mappings(exp, buf, 0, 0);
	peer = tx_only_peer(exp);
	assert_int_equal(peer->page_size, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB);
	buf1 = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	assert_null(dmb_prepub_handle(peer, buf1));
	fd = dmabuf_fd(buf1, O_CLOEXEC);
	assert_true(fd >= 0);
	/* Published: a slot and the reserve held for the peer. */
	assert_non_null(dmb_prepub_handle(peer, buf1));
	assert_int_not_equal(dmb_prepub_handle(peer, buf1)->imp.slot1, 0);
	if (mode == REVOKED)
		assert_int_equal(dmabuf_revoke(buf1), 0);
	if (mode == MIGRATED)
		assert_int_equal(migrate(buf1, DMABUF_ALLOC_CONTIGUOUS), 0);
	assert_int_equal(dmabuf_send_fd(sock, fd, "n", 1), 0);
	close(fd);
	if (mode == MIGRATE_IN_FLIGHT) {
		/* Not dispatched: IMPORT, ATTACH and MAP wait in the socket. */
		assert_int_equal(tx_wait_byte(sock, NULL), 'm');
		assert_int_equal(migrate(buf1, DMABUF_ALLOC_CONTIGUOUS), -EBUSY);
		dispatch_until_mappings(exp, buf1, 1, 1);
		assert_int_equal(migrate(buf1, DMABUF_ALLOC_CONTIGUOUS), -EBUSY);
		send_byte(sock, 'g');
	}
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	/* The child's one-way UNMAPs may still be in the socket: served
	 * until the exporter's unmap op ran for each (the bound is a hang
	 * guard), then until its DETACHes are read. */
	switch (mode) {
	case SAME_TABLE:
		want = 4;
		break;
	case OTHER_DIR:
	case MIGRATED:
	case MIGRATE_IN_FLIGHT:
		want = 2;
		break;
	case TWO_IMPORTS:
		want = 3;
		break;
	case REVOKED:
		want = 1;
		break;
	}
	for (int k = 0; k < 6000 && test_unmap_count < want; k++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(test_unmap_count, want);
	dispatch_until_mappings(exp, buf1, 0, 0);
	/* Taken by the import's first MAP. */
	assert_null(dmb_prepub_handle(peer, buf1));
	if (mode == MIGRATE_IN_FLIGHT)
		assert_int_equal(migrate(buf1, DMABUF_ALLOC_CONTIGUOUS), 0);
	send_byte(sock, 'q');
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	assert_int_equal(dmabuf_put(buf1), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 2);
}

static void published_table_equals_the_round_trip(void **state)
{
	run(SAME_TABLE);
}

static void another_direction_keeps_the_round_trip(void **state)
{
	run(OTHER_DIR);
}

static void revoke_after_publication_is_enodev(void **state)
{
	run(REVOKED);
}

static void migration_after_publication_keeps_the_round_trip(void **state)
{
	run(MIGRATED);
}

static void migration_under_a_published_map_is_ebusy(void **state)
{
	run(MIGRATE_IN_FLIGHT);
}

static void a_publication_is_taken_once(void **state)
{
	run(TWO_IMPORTS);
}

/* ---- raw peers ------------------------------------------------------------ */

/* The exporter's page has the entry and, asked, answers the same table;
 * the entry goes once the import's first MAP took it. */
static void raw_published_entry_is_the_round_trips_table(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *buf1;
	struct dmb_msg m, reply;
	const _Atomic uint32_t *w;
	struct raw r;
	uint64_t imp, att;
	int fd, i;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	buf1 = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	fd = dmabuf_fd(buf1, O_CLOEXEC);
	i = raw_find(&r, fd);
	assert_true(i >= 0);
	w = raw_entry(&r, (unsigned int)i);
	assert_int_equal(w[1], DMABUF_BIDIRECTIONAL);
	assert_true(word64(&w[8]) == SIZE);
	assert_int_equal(rp_import(r.sock, exp, fd, &imp), 0);
	assert_int_equal(rp_attach(r.sock, exp, imp, &att), 0);
	m = (struct dmb_msg){ .op = DMB_OP_MAP };
	m.u.map.id = att;
	assert_int_equal(rp_call(r.sock, exp, &m, &reply), 0);
	assert_true(reply.u.map_reply.flags & DMB_WIRE_MAP_CACHE);
	assert_int_equal(reply.u.map_reply.slot, w[2]);
	assert_int_equal(reply.u.map_reply.seq, w[3]);
	assert_int_equal(reply.u.map_reply.count, w[10]);
	for (uint32_t k = 0; k < w[10]; k++) {
		const _Atomic uint32_t *e = &w[DMB_WIRE_PREPUB_HDR_WORDS + 6 * k];

		assert_true(reply.u.map_reply.sg[k].offset == word64(&e[0]));
		assert_true(reply.u.map_reply.sg[k].length == word64(&e[2]));
		assert_true(reply.u.map_reply.sg[k].phys == word64(&e[4]));
	}
	/* taken: the entry is gone */
	assert_int_equal(raw_find(&r, fd), -1);
	assert_int_equal(rp_unmap(r.sock, exp, reply.u.map_reply.mapping_id,
				  DMABUF_BIDIRECTIONAL), 0);
	close(fd);
	raw_close(&r);
	dispatch_until_mappings(exp, buf1, 0, 0);
	assert_int_equal(dmabuf_put(buf1), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 2);
}

/* A publication no import took goes at the buffer's release: its entry,
 * its slot and its reserve (the sanitizer and valgrind runs see a leak). */
static void unused_publication_goes_at_release(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *buf1;
	struct raw r;
	int fd, i;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &r);
	for (int n = 0; n < 3; n++) {
		buf1 = tx_export_ops(exp, &tx, &pub_ops, SIZE);
		fd = dmabuf_fd(buf1, O_CLOEXEC);
		i = raw_find(&r, fd);
		assert_true(i >= 0);
		assert_non_null(dmb_prepub_handle(tx_only_peer(exp), buf1));
		close(fd);
		assert_int_equal(dmabuf_put(buf1), 0);
		for (int k = 0; k < 1000 && tx.release != n + 1; k++)
			dmabuf_ctx_dispatch_timeout(exp, 10);
		assert_int_equal(tx.release, n + 1);
		assert_int_equal(raw_entry(&r, (unsigned int)i)[0], 0);
	}
	raw_close(&r);
	dispatch_until_mappings(exp, buf, 0, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 4);
}

/* A version 7 peer (and a version 8 one with a version 7 page) gets no
 * publication: its MAPs ask as before. */
static void version_7_peer_gets_no_publication(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *buf1;
	struct raw r;
	int fd;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	for (int v = 0; v < 2; v++) {
		raw_open(exp, buf, v ? DMB_WIRE_VERSION_PREPUB : DMB_WIRE_VERSION_MAP_CACHE,
			 DMB_WIRE_CACHE_CLIENT_PAGE, &r);
		assert_int_equal(tx_only_peer(exp)->page_size, DMB_WIRE_CACHE_CLIENT_PAGE);
		buf1 = tx_export_ops(exp, &tx, &pub_ops, SIZE);
		fd = dmabuf_fd(buf1, O_CLOEXEC);
		assert_null(dmb_prepub_handle(tx_only_peer(exp), buf1));
		close(fd);
		assert_int_equal(dmabuf_put(buf1), 0);
		raw_close(&r);
		dispatch_until_mappings(exp, buf, 0, 0);
	}
	/* A version 7 page is too small for a version 8 area, and a version
	 * 7 peer's MAP cannot name a publication (the decoder's). */
	{
		struct dmb_msg m = { .op = DMB_OP_MAP, .version = DMB_WIRE_VERSION_MAP_CACHE,
				     .flags = DMB_WIRE_F_NO_REPLY };
		uint8_t b[DMB_WIRE_MAX_MSG];

		m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED | DMB_WIRE_MAP_PREPUB;
		m.u.map.seq = 2;
		m.u.map.pub = 2;
		assert_true(rp_encode(&m, b) < 0);
	}
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 3);
}

/* What a peer writes in its area only misleads itself; a MAP naming a
 * publication its import did not take drops it, and only it. */
static void hostile_published_area_drops_only_that_peer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf, *buf1;
	struct dmb_msg m, reply;
	struct raw good, bad;
	uint64_t imp, att;
	int fd, i;
	uint32_t gen, slot;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &good);
	raw_open(exp, buf, DMB_WIRE_VERSION_PREPUB, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB, &bad);
	/* bad mapped last: the next buffer is published to it */
	buf1 = tx_export_ops(exp, &tx, &pub_ops, SIZE);
	fd = dmabuf_fd(buf1, O_CLOEXEC);
	i = raw_find(&bad, fd);
	assert_true(i >= 0);
	assert_int_equal(raw_find(&good, fd), -1);
	gen = raw_entry(&bad, (unsigned int)i)[0];
	slot = raw_entry(&bad, (unsigned int)i)[2];
	/* Scribbled over: the exporter reads none of it. */
	memset((void *)(bad.page + 2 * DMB_WIRE_CACHE_SLOTS), 0xff, DMB_WIRE_PREPUB_AREA);
	assert_int_equal(rp_import(bad.sock, exp, fd, &imp), 0);
	assert_int_equal(rp_attach(bad.sock, exp, imp, &att), 0);
	/* A MAP naming another generation than the one it may take. */
	m = (struct dmb_msg){ .op = DMB_OP_MAP };
	m.u.map.id = att;
	m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED | DMB_WIRE_MAP_PREPUB;
	m.u.map.pub = gen + 2;
	atomic_fetch_add(&bad.page[slot], 1u); /* counted as it should be */
	assert_int_equal(rp_call(bad.sock, exp, &m, &reply), RP_CLOSED);
	raw_close(&bad);
	dispatch_until_mappings(exp, buf1, 0, 0);
	/* The honest peer's import of the same buffer: its round trip. */
	assert_int_equal(rp_import(good.sock, exp, fd, &imp), 0);
	assert_int_equal(rp_attach(good.sock, exp, imp, &att), 0);
	m = (struct dmb_msg){ .op = DMB_OP_MAP };
	m.u.map.id = att;
	assert_int_equal(rp_call(good.sock, exp, &m, &reply), 0);
	assert_true(reply.u.map_reply.flags & DMB_WIRE_MAP_CACHE);
	slot = reply.u.map_reply.slot;
	assert_int_equal(rp_unmap(good.sock, exp, reply.u.map_reply.mapping_id,
				  DMABUF_BIDIRECTIONAL), 0);
	/* A PREPUB MAP of an import that took no publication: dropped. */
	atomic_fetch_add(&good.page[slot], 1u);
	m = (struct dmb_msg){ .op = DMB_OP_MAP };
	m.u.map.id = att;
	m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED | DMB_WIRE_MAP_PREPUB;
	m.u.map.pub = gen;
	assert_int_equal(rp_call(good.sock, exp, &m, &reply), RP_CLOSED);
	close(fd);
	raw_close(&good);
	dispatch_until_mappings(exp, buf1, 0, 0);
	assert_int_equal(dmabuf_put(buf1), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(published_table_equals_the_round_trip),
		harness_test(another_direction_keeps_the_round_trip),
		harness_test(revoke_after_publication_is_enodev),
		harness_test(migration_after_publication_keeps_the_round_trip),
		harness_test(migration_under_a_published_map_is_ebusy),
		harness_test(a_publication_is_taken_once),
		harness_test(raw_published_entry_is_the_round_trips_table),
		harness_test(unused_publication_goes_at_release),
		harness_test(version_7_peer_gets_no_publication),
		harness_test(hostile_published_area_drops_only_that_peer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
