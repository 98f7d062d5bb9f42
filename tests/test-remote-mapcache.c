/* SPDX-License-Identifier: MIT */
/*
 * A MAP answered from the exporter's published state (wire version 7,
 * docs/protocol.md §6 item 5a): an importer in another process that mapped
 * a buffer of an exporter whose map op is dmabuf_backing_map() maps it
 * again without a round trip, with the same table; the exporter still makes
 * the mapping (its count, its unmap op) when it reads the one-way MAP; a
 * revoke, a KERNEL fence or a migration makes the next MAP a round trip; a
 * migration while a one-way MAP is still in the socket is -EBUSY, as the
 * kernel's order (the map returned first) gives; a peer that lies about
 * what it announced is dropped, the others keep working.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"
#include "mapcache-common.h"

#define SIZE (256 * 1024ull)

static int test_unmap_count;

static void count_unmap(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
			enum dmabuf_direction dir)
{
	test_unmap_count++;
	dmabuf_backing_unmap(att, sgt, dir);
}

/* The library's own map op: what makes a table cacheable. */
static const struct dmabuf_ops cached_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map, .unmap = count_unmap, .release = tx_release,
	.vmap = dmabuf_backing_vmap, .vunmap = dmabuf_backing_vunmap,
};

static struct test_exporter tx;

/* The CPU entries and the device's addresses of a table, to compare. */
struct table {
	unsigned int ncpu, ndma;
	struct dmabuf_sg_entry cpu[64];
	struct dmabuf_dma_entry dma[64];
};

static void table_of(const struct dmabuf_sg_table *sgt, struct table *t)
{
	t->ncpu = dmabuf_sg_table_get_cpu_count(sgt);
	t->ndma = dmabuf_sg_table_get_dma_count(sgt);
	child_check(t->ncpu <= 64 && t->ndma <= 64);
	memcpy(t->cpu, dmabuf_sg_table_get_cpu_entries(sgt), t->ncpu * sizeof(t->cpu[0]));
	memcpy(t->dma, dmabuf_sg_table_get_dma_entries(sgt), t->ndma * sizeof(t->dma[0]));
}

/* The same CPU entries (the exporter's answer), and device entries of the
 * same layout (their addresses are this process's IOMMU's, given at each
 * map whichever way the table came). */
static bool table_equal(const struct table *a, const struct table *b)
{
	if (a->ncpu != b->ncpu || a->ndma != b->ndma ||
	    memcmp(a->cpu, b->cpu, a->ncpu * sizeof(a->cpu[0])))
		return false;
	for (unsigned int i = 0; i < a->ndma; i++)
		if (a->dma[i].offset != b->dma[i].offset || a->dma[i].length != b->dma[i].length)
			return false;
	return true;
}

enum mode { SAME_TABLE, REVOKED, MIGRATE, KERNEL_FENCE, REVOKED_IN_FLIGHT, LIMIT };

struct env {
	int sock;
	enum mode mode;
};

/* One attach, map, unmap, detach; the table and whether the MAP went
 * one-way. The byte @report is sent after the map (0: none), then 'g'
 * awaited. */
static int cycle(struct dmabuf *buf, struct dmabuf_device *dev, int sock,
		 enum dmabuf_direction dir, char report, struct table *t, bool *one_way)
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
	/* Nothing more until the exporter has seen the UNMAP and DETACH
	 * (settle()): its counts are checked between cycles. */
	child_check(dmabuf_send_fd(sock, -1, "c", 1) == 0);
	child_check(tx_wait_byte(sock, NULL) == 'g');
	return ret;
}

static int importer(void *arg)
{
	const struct env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct table first, again, later;
	bool one_way = true;
	int fd, sock = env->sock;

	fd = tx_child_import(sock, "dev", &ctx, &dev, &buf);
	/* The first MAP asks (and fills the cache). */
	child_check(cycle(buf, dev, sock, DMABUF_BIDIRECTIONAL, '1', &first, &one_way) == 0);
	child_check(!one_way);
	switch (env->mode) {
	case SAME_TABLE:
		/* The second is answered here: the same entries, and the
		 * same device addresses for the same device. */
		child_check(cycle(buf, dev, sock, DMABUF_BIDIRECTIONAL, 'm', &again,
				  &one_way) == 0);
		child_check(one_way);
		child_check(table_equal(&first, &again));
		/* Another direction has a table of its own to fill. */
		child_check(cycle(buf, dev, sock, DMABUF_TO_DEVICE, 0, &later, &one_way) == 0);
		child_check(!one_way);
		child_check(table_equal(&first, &later));
		break;
	case REVOKED:
		/* The exporter revoked meanwhile: asked, -ENODEV. */
		child_check(tx_wait_byte(sock, NULL) == 'r');
		child_check(cycle(buf, dev, sock, DMABUF_BIDIRECTIONAL, 0, &again,
				  &one_way) == -ENODEV);
		break;
	case MIGRATE:
		/* One-way, and the exporter holds back its reading of it
		 * while it tries to migrate (-EBUSY: the map was first). */
		child_check(cycle(buf, dev, sock, DMABUF_BIDIRECTIONAL, 'm', &again,
				  &one_way) == 0);
		child_check(one_way);
		child_check(table_equal(&first, &again));
		/* It moved since: asked, the new frames. */
		child_check(tx_wait_byte(sock, NULL) == 'n');
		child_check(cycle(buf, dev, sock, DMABUF_BIDIRECTIONAL, 0, &later,
				  &one_way) == 0);
		child_check(!one_way);
		child_check(!table_equal(&first, &later));
		break;
	case REVOKED_IN_FLIGHT:
		/* One-way, and the exporter revokes before it reads it: the
		 * map returned first, so it stands (the table it cached). */
		child_check(cycle(buf, dev, sock, DMABUF_BIDIRECTIONAL, 'm', &again,
				  &one_way) == 0);
		child_check(one_way);
		child_check(table_equal(&first, &again));
		/* From now on: asked, -ENODEV. */
		child_check(cycle(buf, dev, sock, DMABUF_BIDIRECTIONAL, 0, &again,
				  &one_way) == -ENODEV);
		break;
	case LIMIT: {
		/* Three mappings at once, the exporter reading nothing: it
		 * holds what two one-way MAPs need, so the third asks. */
		struct dmabuf_attachment *att[3];
		struct dmabuf_sg_table *sgt[3];

		for (int i = 0; i < 3; i++) {
			child_check(dmabuf_attach(buf, dev, &att[i]) == 0);
			if (i == 2) {
				child_check(dmabuf_send_fd(sock, -1, "m", 1) == 0);
				child_check(tx_wait_byte(sock, NULL) == 'g');
			}
			child_check(dmabuf_map_attachment(att[i], DMABUF_BIDIRECTIONAL,
							  &sgt[i]) == 0);
			if (one_way_mapping(sgt[i]) != (i < 2))
				fprintf(stderr, "child: map %d of 3 %s\n", i,
					i < 2 ? "asked" : "went one-way");
			child_check(one_way_mapping(sgt[i]) == (i < 2));
			table_of(sgt[i], &again);
			child_check(table_equal(&first, &again));
		}
		for (int i = 0; i < 3; i++) {
			child_check(dmabuf_unmap_attachment(att[i], sgt[i], DMABUF_BIDIRECTIONAL) == 0);
			child_check(dmabuf_detach(buf, att[i]) == 0);
		}
		child_check(dmabuf_send_fd(sock, -1, "c", 1) == 0);
		child_check(tx_wait_byte(sock, NULL) == 'g');
		break;
	}
	case KERNEL_FENCE:
		/* A KERNEL fence was added: a static map waits for such
		 * fences, so the exporter is asked. */
		child_check(tx_wait_byte(sock, NULL) == 'k');
		child_check(cycle(buf, dev, sock, DMABUF_BIDIRECTIONAL, 0, &again,
				  &one_way) == 0);
		child_check(!one_way);
		child_check(table_equal(&first, &again));
		break;
	}
	child_check(dmabuf_send_fd(sock, -1, "d", 1) == 0);
	child_check(tx_wait_byte(sock, NULL) == 'q');
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

/* The end of one of the importer's cycles: its UNMAP and DETACH handled. */
static void settle(struct dmabuf_ctx *exp, int sock, struct dmabuf *buf)
{
	assert_int_equal(tx_wait_byte(sock, exp), 'c');
	dispatch_until_mappings(exp, buf, 0, 0);
	send_byte(sock, 'g');
}

/* The bytes the importer sent that the exporter has not read yet (a
 * SEQPACKET socket's SIOCINQ counts every queued packet). */
static int queued(struct dmabuf_ctx *exp)
{
	int n = -1;

	assert_int_equal(ioctl(tx_only_peer(exp)->fd, SIOCINQ, &n), 0);
	return n;
}

/* Without dispatching, until the importer sent more than @before bytes:
 * the state, looked at each millisecond; the bound is a hang guard. */
static void wait_queued_beyond(struct dmabuf_ctx *exp, int before)
{
	for (int i = 0; i < 120000 && queued(exp) <= before; i++)
		poll(NULL, 0, 1);
	assert_true(queued(exp) > before);
}

static void run(enum mode mode)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct env env = { .mode = mode };
	struct dmabuf *buf;
	struct dmb_peer *peer;
	int sock;
	pid_t pid;

	tx = (struct test_exporter){ 0 };
	test_unmap_count = 0;
	buf = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	if (!kernel_marks(buf)) {
		dmabuf_put(buf);
		dmabuf_ctx_destroy(exp);
		skip();
	}
	pid = tx_fork_importer(buf, importer, &env, &env.sock, &sock);
	/* The first cycle: a round trip, served while waiting. */
	assert_int_equal(tx_wait_byte(sock, exp), '1');
	dispatch_until_mappings(exp, buf, 1, 1);
	send_byte(sock, 'g');
	settle(exp, sock, buf);
	assert_int_equal(test_unmap_count, 1);
	switch (mode) {
	case SAME_TABLE:
		/* The one-way MAP came; its mapping is made when the
		 * endpoint reads it, counted as the round trip's was. */
		assert_int_equal(tx_wait_byte(sock, exp), 'm');
		dispatch_until_mappings(exp, buf, 1, 1);
		peer = tx_only_peer(exp);
		assert_int_equal(peer->nmappings, 1);
		assert_int_equal(test_unmap_count, 1);
		send_byte(sock, 'g');
		settle(exp, sock, buf);
		assert_int_equal(test_unmap_count, 2);
		settle(exp, sock, buf); /* TO_DEVICE, asked */
		assert_int_equal(test_unmap_count, 3);
		break;
	case REVOKED:
		assert_int_equal(dmabuf_revoke(buf), 0);
		send_byte(sock, 'r');
		settle(exp, sock, buf);
		assert_int_equal(test_unmap_count, 1);
		break;
	case MIGRATE:
		/* Not dispatched: the ATTACH and MAP wait in the socket. */
		assert_int_equal(tx_wait_byte(sock, NULL), 'm');
		assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), -EBUSY);
		/* Once read, the mapping is there (static: -EBUSY still). */
		dispatch_until_mappings(exp, buf, 1, 1);
		assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), -EBUSY);
		send_byte(sock, 'g');
		settle(exp, sock, buf);
		assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), 0);
		send_byte(sock, 'n');
		settle(exp, sock, buf);
		break;
	case REVOKED_IN_FLIGHT:
		/* Not dispatched: the ATTACH and MAP wait in the socket. */
		assert_int_equal(tx_wait_byte(sock, NULL), 'm');
		assert_int_equal(dmabuf_revoke(buf), 0);
		/* Read after the revoke: the peer holds the mapping (its
		 * one-way ATTACH met the revoke, so the exporter made the
		 * mapping with no table, as the attachment with none). */
		peer = tx_only_peer(exp);
		for (int i = 0; i < 500 && peer->nmappings != 1; i++)
			dmabuf_ctx_dispatch_timeout(exp, 10);
		assert_int_equal(peer->nmappings, 1);
		assert_int_equal(peer->nattachments, 1);
		send_byte(sock, 'g');
		assert_int_equal(tx_wait_byte(sock, exp), 'c');
		for (int i = 0; i < 500 && (peer->nmappings || peer->nattachments); i++)
			dmabuf_ctx_dispatch_timeout(exp, 10);
		assert_int_equal(peer->nmappings, 0);
		assert_int_equal(peer->nattachments, 0);
		send_byte(sock, 'g');
		settle(exp, sock, buf); /* the -ENODEV cycle */
		assert_int_equal(test_unmap_count, 1);
		break;
	case LIMIT: {
		int before;

		/* Two one-way MAPs in the socket, not read: -EBUSY. */
		assert_int_equal(tx_wait_byte(sock, NULL), 'm');
		assert_int_equal(tx_only_peer(exp)->nmappings, 0);
		assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), -EBUSY);
		before = queued(exp);
		send_byte(sock, 'g');
		/* Nothing read until the third MAP is sent: each one-way MAP
		 * read refills the reserve and raises the importer's limit,
		 * which would let the third go one-way too. */
		wait_queued_beyond(exp, before);
		/* The third MAP asks: served while the byte is awaited. */
		assert_int_equal(tx_wait_byte(sock, exp), 'c');
		dispatch_until_mappings(exp, buf, 0, 0);
		assert_int_equal(test_unmap_count, 4);
		send_byte(sock, 'g');
		break;
	}
	case KERNEL_FENCE: {
		struct dmabuf_fence *f;

		assert_int_equal(dmabuf_fence_get_stub(&f), 0);
		dmabuf_resv_lock(dmabuf_get_resv(buf));
		assert_int_equal(dmabuf_resv_add_fence(dmabuf_get_resv(buf), f,
						       DMABUF_RESV_USAGE_KERNEL), 0);
		dmabuf_resv_unlock(dmabuf_get_resv(buf));
		dmabuf_fence_put(f);
		send_byte(sock, 'k');
		settle(exp, sock, buf);
		break;
	}
	}
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	dispatch_until_mappings(exp, buf, 0, 0);
	send_byte(sock, 'q');
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 1);
}

static void cached_table_equals_the_round_trip(void **state)
{
	run(SAME_TABLE);
}

static void revoke_then_map_is_enodev(void **state)
{
	run(REVOKED);
}

static void migrate_under_a_one_way_map_is_ebusy(void **state)
{
	run(MIGRATE);
}

static void revoke_under_a_one_way_map_leaves_it_standing(void **state)
{
	run(REVOKED_IN_FLIGHT);
}

static void one_way_maps_stay_within_the_exporters_reserve(void **state)
{
	run(LIMIT);
}

static void kernel_fence_makes_the_map_ask(void **state)
{
	run(KERNEL_FENCE);
}

/* ---- migrations racing one-way MAPs ------------------------------------------ */

#define STRESS_CYCLES 300

static int stress_importer(void *arg)
{
	const struct env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	int fd = tx_child_import(env->sock, "dev", &ctx, &dev, &buf);

	for (int i = 0; i < STRESS_CYCLES; i++) {
		struct dmabuf_attachment *att;
		struct dmabuf_sg_table *sgt;

		child_check(dmabuf_attach(buf, dev, &att) == 0);
		child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == 0);
		child_check(dmabuf_sg_table_get_size(sgt) == SIZE);
		child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
		child_check(dmabuf_detach(buf, att) == 0);
	}
	child_check(dmabuf_send_fd(env->sock, -1, "d", 1) == 0);
	child_check(tx_wait_byte(env->sock, NULL) == 'q');
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

/* The exporter's service thread serves an importer that maps in a loop
 * (one-way MAPs between the round trips each migration causes) while the
 * main thread migrates the buffer back and forth: no MAP fails, no peer
 * is dropped, every mapping made gets its unmap op, each migration is 0
 * or -EBUSY. */
static void migrations_race_one_way_maps(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct env env = { 0 };
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct pollfd pfd;
	struct dmabuf *buf;
	int sock, moved = 0, busy = 0, ret;
	pid_t pid;

	tx = (struct test_exporter){ 0 };
	test_unmap_count = 0;
	buf = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	assert_int_equal(dmabuf_ctx_start_thread(exp), 0);
	pid = tx_fork_importer(buf, stress_importer, &env, &env.sock, &sock);
	pfd = (struct pollfd){ .fd = sock, .events = POLLIN };
	for (int i = 0; poll(&pfd, 1, 0) == 0; i++) {
		ret = migrate(buf, i % 2 ? DMABUF_ALLOC_SYSTEM : DMABUF_ALLOC_CONTIGUOUS);
		assert_true(ret == 0 || ret == -EBUSY);
		ret == 0 ? moved++ : busy++;
	}
	assert_int_equal(tx_wait_byte(sock, NULL), 'd');
	for (int i = 0; i < 500; i++) {
		assert_int_equal(dmabuf_get_info(buf, &info), 0);
		if (!info.mappings && !info.attachments && test_unmap_count == STRESS_CYCLES)
			break;
		poll(NULL, 0, 10);
	}
	assert_int_equal(info.mappings, 0);
	assert_int_equal(test_unmap_count, STRESS_CYCLES);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_SYSTEM), 0);
	send_byte(sock, 'q');
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	assert_int_equal(dmabuf_ctx_stop_thread(exp), 0);
	print_message("%d migrations, %d -EBUSY\n", moved, busy);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* ---- the exporter's side, raw ---------------------------------------------- */

/* A raw peer at version 7 with its page: imports @buf, attaches, maps once
 * (the reply says cacheable: slot and seq), unmaps. */
struct raw {
	int sock;
	_Atomic uint32_t *page;
	uint64_t imp, att;
	uint32_t slot, seq;
};

static int page_fd(void **map)
{
	int fd = memfd_create("raw-page", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DMB_WIRE_CACHE_CLIENT_PAGE), 0);
	*map = mmap(NULL, DMB_WIRE_CACHE_CLIENT_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(*map != MAP_FAILED);
	return fd;
}

static void raw_open(struct dmabuf_ctx *exp, struct dmabuf *buf, struct raw *r)
{
	struct dmb_msg m = { .op = DMB_OP_CACHE_OPEN, .nfds = 1 }, reply;
	void *map;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	r->sock = rp_connect(fd);
	assert_true(r->sock >= 0);
	assert_int_equal(rp_hello(r->sock, exp), 0);
	m.fds[0] = page_fd(&map);
	assert_int_equal(fcntl(m.fds[0], F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	assert_int_equal(reply.nfds, 1);
	close(m.fds[0]);
	r->page = map;
	assert_int_equal(rp_import(r->sock, exp, fd, &r->imp), 0);
	close(fd);
	assert_int_equal(rp_attach(r->sock, exp, r->imp, &r->att), 0);
	m = (struct dmb_msg){ .op = DMB_OP_MAP };
	m.u.map.id = r->att;
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	assert_true(reply.u.map_reply.flags & DMB_WIRE_MAP_CACHE);
	r->slot = reply.u.map_reply.slot;
	r->seq = reply.u.map_reply.seq;
	assert_int_equal(rp_unmap(r->sock, exp, reply.u.map_reply.mapping_id,
				  DMABUF_BIDIRECTIONAL), 0);
}

static void raw_close(struct raw *r)
{
	munmap((void *)r->page, DMB_WIRE_CACHE_CLIENT_PAGE);
	close(r->sock);
}

/* A one-way MAP as the library's importer sends it, counted in the page
 * by @count (1: honestly). */
static int raw_one_way_map(struct dmabuf_ctx *exp, struct raw *r, uint32_t count,
			   uint32_t seq)
{
	struct dmb_msg m = { .op = DMB_OP_MAP, .flags = DMB_WIRE_F_NO_REPLY };

	atomic_fetch_add(&r->page[r->slot], count);
	m.u.map.id = r->att;
	m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
	m.u.map.seq = seq;
	return rp_send(r->sock, &m);
}

/* What a peer must not do, each on a connection of its own; the exporter
 * drops that peer only: another one's honest one-way MAP is made. */
static void hostile_one_way_maps_drop_only_that_peer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct raw good, bad;
	void *map;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	raw_open(exp, buf, &good);
	for (int c = 0; c < 8; c++) {
		struct dmb_msg m = { .op = DMB_OP_CACHE_OPEN, .nfds = 1 }, reply;

		raw_open(exp, buf, &bad);
		switch (c) {
		case 0: /* a seq never published */
			assert_int_equal(raw_one_way_map(exp, &bad, 1, bad.seq + 2), 0);
			break;
		case 1: { /* an odd one (the decoder's) */
			uint8_t b[DMB_WIRE_MAX_MSG];
			int l;

			m = (struct dmb_msg){ .op = DMB_OP_MAP, .flags = DMB_WIRE_F_NO_REPLY };
			m.u.map.id = bad.att;
			m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
			m.u.map.seq = bad.seq;
			l = rp_encode(&m, b);
			rp_put32(b + DMB_WIRE_BODY + 16, bad.seq + 1);
			atomic_fetch_add(&bad.page[bad.slot], 1u);
			assert_int_equal(rp_send_raw(bad.sock, b, (size_t)l, NULL, 0, 0), 0);
			break;
		}
		case 2: /* not counted: the page goes back */
			assert_int_equal(raw_one_way_map(exp, &bad, 0, bad.seq), 0);
			break;
		case 3: /* the page jumps ahead */
			assert_int_equal(raw_one_way_map(exp, &bad, 1u << 24, bad.seq), 0);
			break;
		case 4: /* a one-way MAP not announced (the decoder's) */
			m = (struct dmb_msg){ .op = DMB_OP_MAP, .flags = DMB_WIRE_F_NO_REPLY };
			m.u.map.id = bad.att;
			m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
			m.u.map.seq = bad.seq;
			{
				uint8_t b[DMB_WIRE_MAX_MSG];
				int l = rp_encode(&m, b);

				rp_put32(b + DMB_WIRE_BODY + 12, 0);
				assert_int_equal(rp_send_raw(bad.sock, b, (size_t)l, NULL, 0, 0), 0);
			}
			break;
		case 5: /* a second CACHE_OPEN */
			m.fds[0] = page_fd(&map);
			assert_int_equal(fcntl(m.fds[0], F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL), 0);
			assert_int_equal(rp_send(bad.sock, &m), 0);
			close(m.fds[0]);
			munmap(map, DMB_WIRE_CACHE_CLIENT_PAGE);
			break;
		case 7: /* a one-way MAP of an attachment it does not have */
			bad.att = 0x1234;
			assert_int_equal(raw_one_way_map(exp, &bad, 1, bad.seq), 0);
			break;
		case 6: { /* an announced MAP of a buffer given no slot */
			struct dmabuf *other = tx_export_ops(exp, &tx, &tx_bare_ops, SIZE);
			int ofd = dmabuf_fd(other, O_CLOEXEC);
			uint64_t oimp, oatt;

			assert_int_equal(rp_import(bad.sock, exp, ofd, &oimp), 0);
			close(ofd);
			assert_int_equal(rp_attach(bad.sock, exp, oimp, &oatt), 0);
			assert_int_equal(dmabuf_put(other), 0);
			m = (struct dmb_msg){ .op = DMB_OP_MAP };
			m.u.map.id = oatt;
			m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
			assert_int_equal(rp_call(bad.sock, exp, &m, &reply), RP_CLOSED);
			break;
		}
		}
		if (c != 6)
			assert_true(rp_expect_closed(bad.sock, exp) >= 0);
		raw_close(&bad);
		dispatch_until_mappings(exp, buf, 0, 1);
	}
	/* An unsealed page is refused, the connection kept. */
	{
		struct dmb_msg m = { .op = DMB_OP_CACHE_OPEN, .nfds = 1 };
		int fd = dmabuf_fd(buf, O_CLOEXEC);

		bad.sock = rp_connect(fd);
		close(fd);
		assert_int_equal(rp_hello(bad.sock, exp), 0);
		m.fds[0] = page_fd(&map);
		assert_int_equal(rp_call(bad.sock, exp, &m, NULL), -EINVAL);
		close(m.fds[0]);
		munmap(map, DMB_WIRE_CACHE_CLIENT_PAGE);
		close(bad.sock);
	}
	/* The honest peer: its one-way MAP, counted but not read yet, is a
	 * static mapping to a migration (-EBUSY); read, it is made. */
	assert_int_equal(raw_one_way_map(exp, &good, 1, good.seq), 0);
	assert_int_equal(migrate(buf, DMABUF_ALLOC_CONTIGUOUS), -EBUSY);
	assert_int_equal(tx_only_peer(exp)->nmappings, 0);
	dispatch_until_mappings(exp, buf, 1, 1);
	raw_close(&good);
	dispatch_until_mappings(exp, buf, 0, 0);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* A slot freed (its import released) and given to another buffer of the
 * same peer: the announced MAPs of the first do not count for the second,
 * whose migration is not -EBUSY for them. */
static void reused_slot_counts_from_its_new_start(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *a, *b;
	struct dmb_msg m = { .op = DMB_OP_MAP }, reply;
	struct raw r;
	uint64_t imp, att;
	int fd;

	tx = (struct test_exporter){ 0 };
	a = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	b = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	raw_open(exp, a, &r);
	assert_int_equal(raw_one_way_map(exp, &r, 1, r.seq), 0);
	dispatch_until_mappings(exp, a, 1, 1);
	assert_int_equal(rp_id_call(r.sock, exp, DMB_OP_RELEASE, r.imp), 0);
	dispatch_until_mappings(exp, a, 0, 0);
	fd = dmabuf_fd(b, O_CLOEXEC);
	assert_int_equal(rp_import(r.sock, exp, fd, &imp), 0);
	close(fd);
	assert_int_equal(rp_attach(r.sock, exp, imp, &att), 0);
	m.u.map.id = att;
	assert_int_equal(rp_call(r.sock, exp, &m, &reply), 0);
	assert_true(reply.u.map_reply.flags & DMB_WIRE_MAP_CACHE);
	assert_int_equal(reply.u.map_reply.slot, r.slot);	/* the same slot */
	assert_int_equal(rp_unmap(r.sock, exp, reply.u.map_reply.mapping_id,
				  DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(migrate(b, DMABUF_ALLOC_CONTIGUOUS), 0);
	raw_close(&r);
	dispatch_until_mappings(exp, b, 0, 0);
	assert_int_equal(dmabuf_put(a), 0);
	assert_int_equal(dmabuf_put(b), 0);
	dmabuf_ctx_destroy(exp);
}

/* A peer that speaks version 6 keeps the round trip: no cacheable answer,
 * and a one-way MAP is not a version 6 message. */
static void version_6_peer_keeps_the_round_trip(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct dmb_msg m = { .op = DMB_OP_HELLO }, reply;
	uint8_t b[DMB_WIRE_MAX_MSG];
	uint64_t imp, att;
	int fd, sock, l;

	tx = (struct test_exporter){ 0 };
	buf = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	sock = rp_connect(fd);
	m.u.hello.min_version = DMB_WIRE_VERSION_MIN;
	m.u.hello.max_version = DMB_WIRE_VERSION_MAP_CACHE - 1;
	assert_int_equal(rp_call(sock, exp, &m, &reply), 0);
	assert_int_equal(reply.u.hello_reply.version, DMB_WIRE_VERSION_MAP_CACHE - 1);
	m = (struct dmb_msg){ .op = DMB_OP_IMPORT, .nfds = 1,
			      .version = DMB_WIRE_VERSION_MAP_CACHE - 1 };
	m.fds[0] = fd;
	assert_int_equal(rp_call(sock, exp, &m, &reply), 0);
	imp = reply.u.import_reply.buffer_id;
	close(fd);
	rp_attach_msg(&m, imp);
	m.version = DMB_WIRE_VERSION_MAP_CACHE - 1;
	assert_int_equal(rp_call(sock, exp, &m, &reply), 0);
	att = reply.u.attach_reply.attachment_id;
	m = (struct dmb_msg){ .op = DMB_OP_MAP, .version = DMB_WIRE_VERSION_MAP_CACHE - 1 };
	m.u.map.id = att;
	assert_int_equal(rp_call(sock, exp, &m, &reply), 0);
	assert_false(reply.u.map_reply.flags & DMB_WIRE_MAP_CACHE);
	/* CACHE_OPEN is not version 6's */
	m = (struct dmb_msg){ .op = DMB_OP_CACHE_OPEN, .nfds = 1,
			      .version = DMB_WIRE_VERSION_MAP_CACHE - 1 };
	m.fds[0] = dmabuf_fd(buf, O_CLOEXEC);
	assert_int_equal(rp_call(sock, exp, &m, &reply), -EOPNOTSUPP);
	close(m.fds[0]);
	/* a one-way MAP in a version 6 header: malformed, the peer goes */
	m = (struct dmb_msg){ .op = DMB_OP_MAP, .version = DMB_WIRE_VERSION_MAP_CACHE - 1 };
	m.u.map.id = att;
	l = rp_encode(&m, b);
	assert_true(l > 0);
	rp_put16(b + DMB_WIRE_HDR_FLAGS, DMB_WIRE_F_NO_REPLY);
	assert_int_equal(rp_send_raw(sock, b, (size_t)l, NULL, 0, 0), 0);
	assert_true(rp_expect_closed(sock, exp) >= 0);
	close(sock);
	dispatch_until_mappings(exp, buf, 0, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(cached_table_equals_the_round_trip),
		harness_test(revoke_then_map_is_enodev),
		harness_test(migrate_under_a_one_way_map_is_ebusy),
		harness_test(revoke_under_a_one_way_map_leaves_it_standing),
		harness_test(one_way_maps_stay_within_the_exporters_reserve),
		harness_test(kernel_fence_makes_the_map_ask),
		harness_test(migrations_race_one_way_maps),
		harness_test(hostile_one_way_maps_drop_only_that_peer),
		harness_test(reused_slot_counts_from_its_new_start),
		harness_test(version_6_peer_keeps_the_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
