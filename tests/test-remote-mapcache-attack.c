/* SPDX-License-Identifier: MIT */
/*
 * The MAP answered from the exporter's published state (wire version 7,
 * docs/protocol.md §6 item 5a) under a hostile or unlucky peer, spoken by
 * hand (tests/rawpeer.h): pages that are not what CACHE_OPEN asks for, a
 * page changed under the exporter's mapping, counts scribbled from another
 * thread, a count left ahead, an importer killed between counting and
 * sending, many importers under a storm of migrations, the exporter's
 * reserve, a one-way ATTACH and a one-way MAP under ENOMEM; and with the library's own
 * importer: its forked child, and its exporter killed while it holds
 * cached tables. Every case ends with the exporter serving another peer
 * (or the same one) as before.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"
#include "mapcache-common.h"

#define SIZE (256 * 1024ull)

/* The library's own map op: what makes a table cacheable. */
static const struct dmabuf_ops cached_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map, .unmap = dmabuf_backing_unmap, .release = tx_release,
	.vmap = dmabuf_backing_vmap, .vunmap = dmabuf_backing_vunmap,
};

static struct test_exporter tx;

/* Alternates the buffer's frames: a migration that goes ahead moves. */
static int migrate_any(struct dmabuf *buf)
{
	static bool contig;

	contig = !contig;
	return migrate(buf, contig ? DMABUF_ALLOC_CONTIGUOUS : DMABUF_ALLOC_SYSTEM);
}

static unsigned int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* A memfd of @size bytes sealed with @seals, mapped (when @map). */
static int page_fd(size_t size, int seals, void **map)
{
	int fd = memfd_create("raw-page", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (map) {
		*map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		assert_true(*map != MAP_FAILED);
	}
	if (seals)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

#define GOOD_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static int cache_open(int sock, struct dmabuf_ctx *exp, int fd)
{
	struct dmb_msg m = { .op = DMB_OP_CACHE_OPEN, .nfds = 1 }, reply;

	m.fds[0] = fd;
	return rp_call(sock, exp, &m, &reply);
}

/* A raw peer at version 7 with its page: imports @buf, attaches, maps once
 * (the reply says cacheable: slot and seq), unmaps. */
struct raw {
	int sock, page_fd;
	uint32_t page_size;	/* version 8's with a published area too */
	_Atomic uint32_t *page;
	uint64_t imp, att;
	uint32_t slot, seq;
};

/* A round trip MAP and its UNMAP: the slot's current number. */
static void raw_learn(struct dmabuf_ctx *exp, struct raw *r)
{
	struct dmb_msg m = { .op = DMB_OP_MAP }, reply;

	m.u.map.id = r->att;
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	assert_true(reply.u.map_reply.flags & DMB_WIRE_MAP_CACHE);
	r->slot = reply.u.map_reply.slot;
	r->seq = reply.u.map_reply.seq;
	assert_int_equal(rp_unmap(r->sock, exp, reply.u.map_reply.mapping_id,
				  DMABUF_BIDIRECTIONAL), 0);
}

static void raw_open_page(struct dmabuf_ctx *exp, struct dmabuf *buf, struct raw *r, int seals,
			  uint32_t page_size)
{
	void *map;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	r->sock = rp_connect(fd);
	assert_true(r->sock >= 0);
	assert_int_equal(rp_hello(r->sock, exp), 0);
	r->page_size = page_size;
	r->page_fd = page_fd(page_size, seals, &map);
	assert_int_equal(cache_open(r->sock, exp, r->page_fd), 0);
	r->page = map;
	assert_int_equal(rp_import(r->sock, exp, fd, &r->imp), 0);
	close(fd);
	assert_int_equal(rp_attach(r->sock, exp, r->imp, &r->att), 0);
	raw_learn(exp, r);
}

static void raw_open_seals(struct dmabuf_ctx *exp, struct dmabuf *buf, struct raw *r, int seals)
{
	raw_open_page(exp, buf, r, seals, DMB_WIRE_CACHE_CLIENT_PAGE);
}

static void raw_open(struct dmabuf_ctx *exp, struct dmabuf *buf, struct raw *r)
{
	raw_open_seals(exp, buf, r, GOOD_SEALS);
}

static void raw_close(struct raw *r)
{
	munmap((void *)r->page, r->page_size);
	close(r->page_fd);
	close(r->sock);
}

/* A one-way MAP as the library's importer sends it, counted by @count
 * (1: honestly); its mapping's id through @map_id. */
static int raw_one_way_map(struct raw *r, uint32_t count, uint64_t *map_id)
{
	struct dmb_msg m = { .op = DMB_OP_MAP, .flags = DMB_WIRE_F_NO_REPLY };
	int ret;

	atomic_fetch_add(&r->page[r->slot], count);
	m.u.map.id = r->att;
	m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
	m.u.map.seq = r->seq;
	ret = rp_send(r->sock, &m);
	if (map_id)
		*map_id = DMB_WIRE_ONE_WAY_ATT_ID(m.serial);
	return ret;
}

static unsigned int npeers(struct dmabuf_ctx *exp)
{
	struct dmb_peer *p;
	unsigned int n = 0;

	LIST_FOREACH(p, &exp->endpoint->peers, link)
		n++;
	return n;
}

static void dispatch_until_peers(struct dmabuf_ctx *exp, unsigned int n)
{
	for (int i = 0; i < 1000 && npeers(exp) != n; i++)
		dmabuf_ctx_dispatch_timeout(exp, 10);
	assert_int_equal(npeers(exp), n);
}

/* A fresh test exporter's buffer on @exp whose map op is the library's. */
static struct dmabuf *export_cached(struct dmabuf_ctx *exp)
{
	tx = (struct test_exporter){ 0 };
	return tx_export_ops(exp, &tx, &cached_ops, SIZE);
}

/* The end of a case: every peer gone, @buf put, @exp destroyed. */
static void end_with_no_peer(struct dmabuf_ctx *exp, struct dmabuf *buf)
{
	dispatch_until_peers(exp, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* ---- CACHE_OPEN with pages that are not the one asked for ------------------ */

/* Each refused with -EINVAL, its fd closed, the connection kept: the same
 * peer's CACHE_OPEN of a right page then works. */
static void cache_open_refuses_what_is_not_a_sealed_writable_page(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	unsigned int before;
	int fd, sock, p[2];

	buf = export_cached(exp);
	fd = dmabuf_fd(buf, O_CLOEXEC);
	sock = rp_connect(fd);
	close(fd);
	assert_int_equal(rp_hello(sock, exp), 0);
	before = open_fds();
	for (int c = 0; c < 9; c++) {
		int page = -1, ret;
		char path[64];

		switch (c) {
		case 0: /* unsealed */
			page = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE, 0, NULL);
			break;
		case 1: /* sealed, but may shrink */
			page = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE, F_SEAL_GROW | F_SEAL_SEAL, NULL);
			break;
		case 2: /* may shrink later: seals not sealed */
			page = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE, F_SEAL_SHRINK, NULL);
			break;
		case 3: /* too small */
			page = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE / 2, GOOD_SEALS, NULL);
			break;
		case 4: /* too large */
			page = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE * 2, GOOD_SEALS, NULL);
			break;
		case 5: /* not writable: F_SEAL_WRITE */
			page = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE, GOOD_SEALS | F_SEAL_WRITE, NULL);
			break;
		case 6: /* not writable: F_SEAL_FUTURE_WRITE */
			page = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE,
				       F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL,
				       NULL);
			break;
		case 7: /* the right page, opened read-only */
			fd = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE, GOOD_SEALS, NULL);
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			page = open(path, O_RDONLY | O_CLOEXEC);
			close(fd);
			break;
		case 8: /* not a memfd */
			assert_int_equal(pipe2(p, O_CLOEXEC), 0);
			page = p[0];
			close(p[1]);
			break;
		}
		assert_true(page >= 0);
		ret = cache_open(sock, exp, page);
		if (ret != -EINVAL)
			fail_msg("case %d: CACHE_OPEN answered %d, not -EINVAL", c, ret);
		close(page);
		/* the exporter kept nothing of it */
		assert_int_equal(open_fds(), before);
	}
	/* the connection still serves, and its first right page is taken */
	fd = page_fd(DMB_WIRE_CACHE_CLIENT_PAGE, GOOD_SEALS, NULL);
	assert_int_equal(cache_open(sock, exp, fd), 0);
	close(fd);
	close(sock);
	end_with_no_peer(exp, buf);
}

/* The page cannot shrink under the exporter's mapping (no SIGBUS there);
 * what the peer can still do to it (grow it if it left F_SEAL_GROW off,
 * punch a hole: the counts read 0) harms only the peer: a count behind
 * is a protocol error, that peer goes, the exporter and others stay. */
static void page_changed_under_the_exporter_harms_only_its_peer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct raw good, bad;
	uint64_t id;

	buf = export_cached(exp);
	raw_open(exp, buf, &good);
	raw_open_seals(exp, buf, &bad, F_SEAL_SHRINK | F_SEAL_SEAL);
	assert_int_equal(ftruncate(bad.page_fd, 4096), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(bad.page_fd, DMB_WIRE_CACHE_CLIENT_PAGE * 4), 0);
	/* grown: the exporter's mapping still sees its 8192 bytes */
	assert_int_equal(raw_one_way_map(&bad, 1, &id), 0);
	dispatch_until_mappings(exp, buf, 1, 2);
	assert_int_equal(rp_unmap(bad.sock, exp, id, DMABUF_BIDIRECTIONAL), 0);
	dispatch_until_mappings(exp, buf, 0, 2);
	/* a hole: the count reads 0, behind what it sent */
	assert_int_equal(fallocate(bad.page_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
				   DMB_WIRE_CACHE_CLIENT_PAGE), 0);
	assert_int_equal(raw_one_way_map(&bad, 1, NULL), 0);
	assert_true(rp_expect_closed(bad.sock, exp) >= 0);
	raw_close(&bad);
	dispatch_until_mappings(exp, buf, 0, 1);
	/* the other peer maps one-way as before */
	assert_int_equal(raw_one_way_map(&good, 1, NULL), 0);
	dispatch_until_mappings(exp, buf, 1, 1);
	raw_close(&good);
	dispatch_until_mappings(exp, buf, 0, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* ---- counts ------------------------------------------------------------------ */

/* A count left ahead with no MAP behind it: migrations of that buffer are
 * -EBUSY (as under a static mapping the peer holds), each returns, none
 * waits; another buffer's migrate as ever; when the peer goes (here killed
 * between counting and sending, as SIGKILL does) the buffer migrates. */
static void count_ahead_keeps_only_that_buffer_busy_until_its_peer_dies(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *a, *b;
	struct raw bad, other;
	int ready[2];
	pid_t pid;
	char c;

	tx = (struct test_exporter){ 0 };
	a = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	b = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	raw_open(exp, a, &bad);
	raw_open(exp, b, &other);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the importer: counts its MAP, dies before sending it */
		atomic_fetch_add(&bad.page[bad.slot], 1u);
		if (write(ready[1], "c", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(bad.sock); /* the child's copy is the connection now */
	assert_int_equal(read(ready[0], &c, 1), 1);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(migrate_any(a), -EBUSY);
		dmabuf_ctx_dispatch_timeout(exp, 0);
	}
	assert_int_equal(migrate_any(b), 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	dispatch_until_peers(exp, 1);
	assert_int_equal(migrate_any(a), 0);
	/* the other peer learns the moved number and maps one-way */
	raw_learn(exp, &other);
	assert_int_equal(raw_one_way_map(&other, 1, NULL), 0);
	dispatch_until_mappings(exp, b, 1, 1);
	bad.sock = -1;
	munmap((void *)bad.page, DMB_WIRE_CACHE_CLIENT_PAGE);
	close(bad.page_fd);
	raw_close(&other);
	close(ready[0]);
	close(ready[1]);
	dispatch_until_peers(exp, 0);
	assert_int_equal(dmabuf_put(a), 0);
	assert_int_equal(dmabuf_put(b), 0);
	dmabuf_ctx_destroy(exp);
}

struct scribbler {
	_Atomic uint32_t *page;
	_Atomic bool stop;
};

static void *scribble(void *arg)
{
	struct scribbler *s = arg;
	uint32_t x = 12345;

	while (!atomic_load(&s->stop))
		for (unsigned int i = 0; i < DMB_WIRE_CACHE_CLIENT_PAGE / 4; i++) {
			x = x * 1103515245u + 12345u;
			atomic_store(&s->page[i], (x >> 8) & 7 ? atomic_load(&s->page[i]) + (x >> 29) : x);
		}
	return NULL;
}

/* The whole page (counts and the exporter's limits) written from another
 * thread while the exporter reads it, migrates the buffer and handles that
 * peer's one-way and announced MAPs: the exporter answers or drops that
 * peer, never anything else; another peer of the same buffer then maps. */
static void counts_scribbled_from_another_thread(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct raw good, bad;
	struct scribbler s;
	pthread_t t;
	bool closed = false;

	buf = export_cached(exp);
	raw_open(exp, buf, &good);
	raw_open(exp, buf, &bad);
	s.page = bad.page;
	atomic_store(&s.stop, false);
	assert_int_equal(pthread_create(&t, NULL, scribble, &s), 0);
	for (int i = 0; i < 400 && !closed; i++) {
		int ret = migrate_any(buf);
		struct dmb_msg m = { .op = DMB_OP_MAP }, reply;

		assert_true(ret == 0 || ret == -EBUSY);
		if (i % 2) {
			assert_true(raw_one_way_map(&bad, 1, NULL) == 0 ||
				    npeers(exp) == 1);
		} else {
			m.u.map.id = bad.att;
			m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
			atomic_fetch_add(&bad.page[bad.slot], 1u);
			ret = rp_call(bad.sock, exp, &m, &reply);
			assert_true(ret == 0 || ret == RP_CLOSED);
			closed = ret == RP_CLOSED;
			if (ret == 0)
				bad.seq = reply.u.map_reply.seq;
		}
		dmabuf_ctx_dispatch_timeout(exp, 0);
	}
	atomic_store(&s.stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	raw_close(&bad);
	dispatch_until_peers(exp, 1);
	dispatch_until_mappings(exp, buf, 0, 1);
	assert_int_equal(migrate_any(buf), 0);
	raw_learn(exp, &good);
	assert_int_equal(raw_one_way_map(&good, 1, NULL), 0);
	dispatch_until_mappings(exp, buf, 1, 1);
	raw_close(&good);
	dispatch_until_mappings(exp, buf, 0, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	dmabuf_ctx_destroy(exp);
}

/* ---- many importers ----------------------------------------------------------- */

#define NPEERS 64

/* 64 peers of one buffer, each with its page, and rounds of migrations:
 * a migration is -EBUSY exactly while some peer's MAP is counted and not
 * read (the slot is shared: every peer's count is read), goes ahead once
 * all are read and unmapped, and every peer then learns the moved number;
 * no peer is dropped. */
static void many_importers_and_a_migration_storm(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	static struct raw r[NPEERS];
	uint64_t id[NPEERS];

	buf = export_cached(exp);
	for (int i = 0; i < NPEERS; i++) {
		raw_open(exp, buf, &r[i]);
		assert_int_equal(r[i].slot, r[0].slot);
	}
	for (int round = 0; round < 8; round++) {
		int k = 1 + (round * 17) % NPEERS; /* peers that map this round */
		uint32_t seq = r[0].seq;

		for (int i = 0; i < k; i++)
			assert_int_equal(raw_one_way_map(&r[(i * 7 + round) % NPEERS], 1,
							 &id[i]), 0);
		/* counted, in the sockets, nothing read: -EBUSY */
		assert_int_equal(migrate_any(buf), -EBUSY);
		dispatch_until_mappings(exp, buf, (unsigned int)k, NPEERS);
		/* read: static mappings held, -EBUSY as in the kernel */
		assert_int_equal(migrate_any(buf), -EBUSY);
		for (int i = 0; i < k; i++)
			assert_int_equal(rp_unmap(r[(i * 7 + round) % NPEERS].sock, exp, id[i],
						  DMABUF_BIDIRECTIONAL), 0);
		assert_int_equal(migrate_any(buf), 0);
		for (int i = 0; i < NPEERS; i++) {
			raw_learn(exp, &r[i]);
			assert_int_equal(r[i].seq, seq + 2);
		}
	}
	assert_int_equal(npeers(exp), NPEERS);
	for (int i = 0; i < NPEERS; i++)
		raw_close(&r[i]);
	end_with_no_peer(exp, buf);
}

/* ---- ENOMEM -------------------------------------------------------------------- */

/* The exporter's reserve cannot be made up again (each allocation of its
 * refill after a one-way MAP fails in turn): that MAP is made all the same
 * (from what was held), the limit falls by what is missing, the peer's
 * MAPs within it are one-way and made, beyond it they ask and are
 * answered (the round trip makes the reserve up again); never a dropped
 * peer. */
static void reserve_under_enomem_lowers_the_limit(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct raw r;
	bool short_seen = false;

	buf = export_cached(exp);
	raw_open(exp, buf, &r);
	for (unsigned int nth = 1; nth <= 4; nth++) {
		struct dmb_msg m = { .op = DMB_OP_MAP }, reply;
		uint32_t count, limit;
		uint64_t id[4];
		int n = 0;

		/* the reserve is full (2): one one-way MAP, whose refill
		 * meets the failure */
		assert_int_equal(atomic_load(&r.page[DMB_WIRE_CACHE_SLOTS + r.slot]) -
				 atomic_load(&r.page[r.slot]), 2);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, nth, ENOMEM);
		assert_int_equal(raw_one_way_map(&r, 1, &id[n]), 0);
		dispatch_until_mappings(exp, buf, 1, 1);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
		n++;
		count = atomic_load(&r.page[r.slot]);
		limit = atomic_load(&r.page[DMB_WIRE_CACHE_SLOTS + r.slot]);
		assert_true((int32_t)(limit - count) >= 0 && limit - count <= 2);
		if (limit - count < 2)
			short_seen = true; /* the failure met the reserve */
		/* as many one-way MAPs as the limit allows: all made */
		while ((int32_t)(atomic_load(&r.page[DMB_WIRE_CACHE_SLOTS + r.slot]) -
				 atomic_load(&r.page[r.slot])) > 0 && n < 3) {
			assert_int_equal(raw_one_way_map(&r, 1, &id[n]), 0);
			dispatch_until_mappings(exp, buf, (unsigned int)n + 1, 1);
			n++;
		}
		/* beyond: asked, answered; it makes the reserve up again */
		m.u.map.id = r.att;
		m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
		atomic_fetch_add(&r.page[r.slot], 1u);
		assert_int_equal(rp_call(r.sock, exp, &m, &reply), 0);
		id[n++] = reply.u.map_reply.mapping_id;
		for (int i = 0; i < n; i++)
			assert_int_equal(rp_unmap(r.sock, exp, id[i], DMABUF_BIDIRECTIONAL), 0);
		dispatch_until_mappings(exp, buf, 0, 1);
	}
	assert_true(short_seen);
	assert_int_equal(npeers(exp), 1);
	raw_close(&r);
	end_with_no_peer(exp, buf);
}

/* The peer's room for one-way MAPs of its slot: its limit less its count
 * (what the library's importer compares before it sends one). */
static int32_t room(const struct raw *r)
{
	return (int32_t)(atomic_load(&r->page[DMB_WIRE_CACHE_SLOTS + r->slot]) -
			 atomic_load(&r->page[r->slot]));
}

/* An ANNOUNCED round trip MAP of @att, counted first as the library's
 * importer counts it: its status, the mapping's id through @map_id. */
static int raw_announced_map(struct dmabuf_ctx *exp, struct raw *r, uint64_t att,
			     uint64_t *map_id)
{
	struct dmb_msg m = { .op = DMB_OP_MAP }, reply;
	int ret;

	m.u.map.id = att;
	m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
	atomic_fetch_add(&r->page[r->slot], 1u);
	ret = rp_call(r->sock, exp, &m, &reply);
	if (ret == 0 && map_id)
		*map_id = reply.u.map_reply.mapping_id;
	return ret;
}

/* A one-way ATTACH that failed with -ENOMEM, and the one-way MAP sent with
 * it (the importer's map already returned its cached table): the peer is
 * kept. The exporter lowers the peer's limit at once, so the importer's
 * next MAP of the buffer asks, and one of that attachment answers -ENOMEM
 * (the others are made as usual); the mapping the importer holds is
 * counted and holds the frames (a migration is -EBUSY) until its UNMAP;
 * the DETACH gives the limit back. The other peer never notices. (Before:
 * the one-way MAP dropped the peer, whose next call met a closed socket.) */
static void one_way_map_of_a_failed_one_way_attach_answers_its_next_map(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct raw good, bad;
	struct dmb_msg m;
	uint64_t att, healthy, one_way, id;

	buf = export_cached(exp);
	raw_open(exp, buf, &good);
	raw_open(exp, buf, &bad);
	healthy = bad.att;
	assert_int_equal(room(&bad), 2);
	/* the ATTACH and its MAP, both one-way, as the importer sends them */
	rp_attach_msg(&m, bad.imp);
	m.flags = DMB_WIRE_F_NO_REPLY;
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(rp_send(bad.sock, &m), 0);
	att = DMB_WIRE_ONE_WAY_ATT_ID(m.serial);
	bad.att = att;
	assert_int_equal(raw_one_way_map(&bad, 1, &one_way), 0);
	bad.att = healthy;
	/* its next MAP of that attachment (an answered one: read after
	 * both) hears the ATTACH's errno; the connection stays */
	assert_int_equal(raw_announced_map(exp, &bad, att, NULL), -ENOMEM);
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
	assert_int_equal(npeers(exp), 2);
	/* no room: every MAP of the buffer asks, while the attachment lives */
	assert_true(room(&bad) < 1);
	assert_int_equal(raw_announced_map(exp, &bad, att, NULL), -ENOMEM);
	assert_true(room(&bad) < 1);
	/* its other attachment maps as before (a round trip) */
	raw_learn(exp, &bad);
	assert_true(room(&bad) < 1);
	/* the other peer's one-way MAP is made */
	assert_int_equal(raw_one_way_map(&good, 1, &id), 0);
	dispatch_until_mappings(exp, buf, 1, 2);
	assert_int_equal(rp_unmap(good.sock, exp, id, DMABUF_BIDIRECTIONAL), 0);
	/* the mapping the importer holds keeps the frames where its table
	 * says */
	assert_int_equal(migrate_any(buf), -EBUSY);
	assert_int_equal(rp_unmap(bad.sock, exp, one_way, DMABUF_BIDIRECTIONAL), 0);
	/* the DETACH frees the failed attachment, and the room comes back */
	assert_int_equal(rp_id_call(bad.sock, exp, DMB_OP_DETACH, att), 0);
	assert_int_equal(room(&bad), 2);
	assert_int_equal(migrate_any(buf), 0);
	/* the peer works on: a fresh attachment maps, and learns the new
	 * number */
	assert_int_equal(rp_attach(bad.sock, exp, bad.imp, &bad.att), 0);
	raw_learn(exp, &bad);
	assert_int_equal(raw_one_way_map(&bad, 1, &id), 0);
	dispatch_until_mappings(exp, buf, 1, 3);
	assert_int_equal(rp_unmap(bad.sock, exp, id, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(npeers(exp), 2);
	raw_close(&bad);
	raw_close(&good);
	end_with_no_peer(exp, buf);
}

/* A one-way MAP past the peer's limit (the migration that went ahead
 * dropped what was held) whose record cannot be made: the peer is kept,
 * its attachment answers -ENOMEM from then on, the mapping counts until
 * the DETACH (no record names it: its UNMAP is -ENOENT) and holds the
 * frames until then. (Before: a drop; before the fault layer reached the
 * record, the mapping was made.) */
static void one_way_map_past_the_limit_without_memory_answers_its_next_map(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct raw r;
	uint64_t id;

	buf = export_cached(exp);
	raw_open(exp, buf, &r);
	assert_int_equal(migrate_any(buf), 0);
	assert_int_equal(room(&r), 0);
	/* the number after a migration that went ahead: odd, then even */
	r.seq += 2;
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(raw_one_way_map(&r, 1, &id), 0);
	assert_int_equal(raw_announced_map(exp, &r, r.att, NULL), -ENOMEM);
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
	assert_int_equal(npeers(exp), 1);
	assert_true(room(&r) < 1);
	assert_int_equal(rp_unmap(r.sock, exp, id, DMABUF_BIDIRECTIONAL), -ENOENT);
	assert_int_equal(migrate_any(buf), -EBUSY);
	assert_int_equal(rp_id_call(r.sock, exp, DMB_OP_DETACH, r.att), 0);
	assert_int_equal(migrate_any(buf), 0);
	/* a fresh attachment maps */
	assert_int_equal(rp_attach(r.sock, exp, r.imp, &r.att), 0);
	raw_learn(exp, &r);
	dispatch_until_mappings(exp, buf, 0, 1);
	assert_int_equal(npeers(exp), 1);
	raw_close(&r);
	end_with_no_peer(exp, buf);
}

/* An announced MAP that asks (a round trip), counted by a migration before
 * the exporter read it: the migration answers -EBUSY, taking it for made,
 * so the exporter then makes it even when short of memory (its record
 * fails): from what it held, or, when a migration that went ahead had
 * dropped that, from what the counting migration made up for it. The
 * count is settled after it, and the next migration goes ahead. (Before:
 * -ENOMEM, for a mapping the migration's -EBUSY had said was made.) */
static void announced_map_a_migration_counted_is_made_short_of_memory(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct raw r;

	buf = export_cached(exp);
	raw_open(exp, buf, &r);
	/* the nth allocation failed in turn (the record's, the table's) */
	for (int round = 0; round < 6; round++) {
		struct dmb_msg m = { .op = DMB_OP_MAP }, reply;
		int ret;

		if (round % 2) {
			/* what was held goes with the old frames */
			assert_int_equal(migrate_any(buf), 0);
			assert_int_equal(room(&r), 0);
		}
		/* counted, sent as a call, not read yet */
		m.u.map.id = r.att;
		m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
		atomic_fetch_add(&r.page[r.slot], 1u);
		assert_int_equal(rp_send(r.sock, &m), 0);
		assert_int_equal(migrate_any(buf), -EBUSY);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1 + (unsigned int)round / 2, ENOMEM);
		ret = rp_reply(r.sock, exp, DMB_OP_MAP, m.serial, &reply);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
		assert_int_equal(ret, 0);
		dispatch_until_mappings(exp, buf, 1, 1);
		assert_int_equal(rp_unmap(r.sock, exp, reply.u.map_reply.mapping_id,
					  DMABUF_BIDIRECTIONAL), 0);
	}
	assert_int_equal(migrate_any(buf), 0);
	assert_int_equal(npeers(exp), 1);
	raw_close(&r);
	end_with_no_peer(exp, buf);
}

/* The publication of @buf to @r (prepub.c, version 8): its slot, and its
 * entry's generation through @gen. */
static uint32_t raw_publication(struct dmabuf_ctx *exp, const struct raw *r,
				struct dmabuf *buf, uint32_t *gen)
{
	struct dmb_handle *pub = dmb_prepub_handle(tx_only_peer(exp), buf);
	uint32_t slot;

	assert_non_null(pub);
	assert_true(pub->imp.slot1 != 0);
	slot = pub->imp.slot1 - 1;
	for (unsigned int i = 0; i < DMB_WIRE_PREPUB_ENTRIES; i++) {
		const _Atomic uint32_t *w = r->page + 2 * DMB_WIRE_CACHE_SLOTS +
					    i * DMB_WIRE_PREPUB_WORDS;

		if (w[0] && !(w[0] & 1) && w[2] == slot) {
			*gen = w[0];
			return slot;
		}
	}
	fail_msg("no entry for the publication's slot %u", slot);
	return 0;
}

/* The same through a publication (prepub.c): the import takes the slot,
 * the count base and the reserve at its first MAP, so a migration before
 * that counts the MAP on the publication's handle, and holds a pair for
 * it there. The MAP is made even when short of memory (nth allocation
 * failed in turn, the first few of them the record), the count settles,
 * and the next migration goes ahead. (Before: the publication's reserve,
 * dropped by the migration that went ahead, was not made up, and the
 * MAP the counting migration had taken for made answered -ENOMEM.) */
static void announced_map_of_a_publication_a_migration_counted_is_made_short_of_memory(void **state)
{
	for (unsigned int nth = 1; nth <= 3; nth++) {
		struct dmabuf_ctx *exp = tx_ctx_new(0);
		struct dmb_msg m = { .op = DMB_OP_MAP }, reply;
		struct dmabuf *buf, *buf1;
		struct raw r;
		uint32_t slot, gen = 0;
		uint64_t imp, att;
		int fd, ret;

		buf = export_cached(exp);
		/* its round trip MAP: the next new buffer is published to it */
		raw_open_page(exp, buf, &r, GOOD_SEALS, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB);
		buf1 = tx_export_ops(exp, &tx, &cached_ops, SIZE);
		fd = dmabuf_fd(buf1, O_CLOEXEC);
		slot = raw_publication(exp, &r, buf1, &gen);
		/* what the publication held goes with the old frames */
		assert_int_equal(migrate(buf1, DMABUF_ALLOC_CONTIGUOUS), 0);
		assert_int_equal(atomic_load(&r.page[DMB_WIRE_CACHE_SLOTS + slot]) -
				 atomic_load(&r.page[slot]), 0);
		assert_int_equal(rp_import(r.sock, exp, fd, &imp), 0);
		assert_int_equal(rp_attach(r.sock, exp, imp, &att), 0);
		/* its first MAP, naming the publication: counted, sent as a
		 * call (the number moved), not read yet */
		m.u.map.id = att;
		m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED | DMB_WIRE_MAP_PREPUB;
		m.u.map.pub = gen;
		atomic_fetch_add(&r.page[slot], 1u);
		assert_int_equal(rp_send(r.sock, &m), 0);
		assert_int_equal(migrate(buf1, DMABUF_ALLOC_SYSTEM), -EBUSY);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, nth, ENOMEM);
		ret = rp_reply(r.sock, exp, DMB_OP_MAP, m.serial, &reply);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
		assert_int_equal(ret, 0);
		dispatch_until_mappings(exp, buf1, 1, 1);
		assert_int_equal(rp_unmap(r.sock, exp, reply.u.map_reply.mapping_id,
					  DMABUF_BIDIRECTIONAL), 0);
		assert_int_equal(migrate(buf1, DMABUF_ALLOC_SYSTEM), 0);
		assert_int_equal(npeers(exp), 1);
		close(fd);
		raw_close(&r);
		dispatch_until_peers(exp, 0);
		assert_int_equal(dmabuf_put(buf1), 0);
		end_with_no_peer(exp, buf);
	}
}

/* The one-way ATTACH of @r's import and its one-way MAP, as the library's
 * importer sends them; then an answered MAP of that attachment (read after
 * both): its status. The ids through @att and @one_way. */
static int raw_attach_map_one_way(struct dmabuf_ctx *exp, struct raw *r, uint64_t *att,
				  uint64_t *one_way)
{
	uint64_t healthy = r->att;
	struct dmb_msg m;

	rp_attach_msg(&m, r->imp);
	m.flags = DMB_WIRE_F_NO_REPLY;
	assert_int_equal(rp_send(r->sock, &m), 0);
	*att = DMB_WIRE_ONE_WAY_ATT_ID(m.serial);
	r->att = *att;
	assert_int_equal(raw_one_way_map(r, 1, one_way), 0);
	r->att = healthy;
	return raw_announced_map(exp, r, *att, NULL);
}

/* The allocations of the one-way ATTACH, its one-way MAP and the answered
 * MAP that follows fail in turn (the nth of them, each of the n counted
 * once): whatever fails, the peer is kept and answered, every mapping it
 * holds is undone by its UNMAP, its DETACH (before or after the UNMAP) or
 * its death (every other time
 * the socket closes with the attachment failed, as at a SIGKILL), the
 * limit comes back (room 2 after the next round trip), one-way MAPs are
 * made again, the next migration goes ahead, and no fd is left (the
 * sanitizer and valgrind runs see the memory). */
static void one_way_attach_and_map_under_each_failing_allocation(void **state)
{
	unsigned int fds = open_fds(), n;

	{
		struct dmabuf_ctx *exp = tx_ctx_new(0);
		struct dmabuf *buf = export_cached(exp);
		struct raw r;
		uint64_t att, one_way;

		raw_open(exp, buf, &r);
		dmabuf_fault_set_counting(true);
		assert_int_equal(raw_attach_map_one_way(exp, &r, &att, &one_way), 0);
		n = (unsigned int)dmabuf_fault_get_count(DMABUF_FAULT_ALLOC);
		dmabuf_fault_set_counting(false);
		raw_close(&r);
		end_with_no_peer(exp, buf);
	}
	assert_true(n >= 2); /* the attachment, the record made ahead */
	for (unsigned int nth = 1; nth <= n; nth++) {
		struct dmabuf_ctx *exp = tx_ctx_new(0);
		struct dmabuf *buf = export_cached(exp);
		struct raw r, other;
		uint64_t att, one_way, id;
		int ret;

		raw_open(exp, buf, &r);
		raw_open(exp, buf, &other);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, nth, ENOMEM);
		ret = raw_attach_map_one_way(exp, &r, &att, &one_way);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
		assert_true(ret == 0 || ret == -ENOMEM);
		assert_int_equal(npeers(exp), 2);
		if (ret == -ENOMEM) {
			/* failed: its MAPs ask, and hear it */
			assert_true(room(&r) < 1);
			assert_int_equal(raw_announced_map(exp, &r, att, NULL), -ENOMEM);
		}
		/* the other peer never notices */
		assert_int_equal(raw_one_way_map(&other, 1, &id), 0);
		assert_int_equal(rp_unmap(other.sock, exp, id, DMABUF_BIDIRECTIONAL), 0);
		if (nth % 4 == 3) {
			/* the DETACH first: it undoes the mapping, whose
			 * UNMAP then names nothing */
			assert_int_equal(rp_id_call(r.sock, exp, DMB_OP_DETACH, att), 0);
			assert_int_equal(rp_unmap(r.sock, exp, one_way, DMABUF_BIDIRECTIONAL),
					 -ENOENT);
		} else if (nth % 2) {
			ret = rp_unmap(r.sock, exp, one_way, DMABUF_BIDIRECTIONAL);
			assert_true(ret == 0 || ret == -ENOENT); /* -ENOENT: no record */
			/* every answered MAP of it made is undone by the DETACH */
			assert_int_equal(rp_id_call(r.sock, exp, DMB_OP_DETACH, att), 0);
		}
		if (nth % 2) {
			raw_learn(exp, &r);
			assert_int_equal(room(&r), 2);
			assert_int_equal(raw_one_way_map(&r, 1, &id), 0);
			dispatch_until_mappings(exp, buf, 1, 2);
			assert_int_equal(rp_unmap(r.sock, exp, id, DMABUF_BIDIRECTIONAL), 0);
		}
		raw_close(&r);
		dispatch_until_peers(exp, 1);
		dispatch_until_mappings(exp, buf, 0, 1);
		assert_int_equal(migrate_any(buf), 0);
		raw_learn(exp, &other);
		assert_int_equal(room(&other), 2);
		raw_close(&other);
		end_with_no_peer(exp, buf);
		assert_int_equal(open_fds(), fds);
	}
}

/* A peer SIGKILLed while its attachment holds -ENOMEM, with one-way MAPs
 * of it unmade (held for it, or only counted on the attachment) and a
 * count left ahead: the buffer is -EBUSY until the death, then
 * everything of that peer is undone (the mapping, the failed attachment
 * and its limit, the count), the buffer migrates, and the other peer maps
 * one-way as before; no fd is left. */
static void peer_killed_with_a_failed_attachment_is_undone(void **state)
{
	unsigned int fds = open_fds();
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf = export_cached(exp);
	struct raw bad, other;
	uint64_t att, one_way, id;
	int ready[2];
	pid_t pid;
	char c;

	raw_open(exp, buf, &bad);
	raw_open(exp, buf, &other);
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(raw_attach_map_one_way(exp, &bad, &att, &one_way), -ENOMEM);
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
	/* one more one-way MAP of it, sent before it heard: unmade */
	bad.att = att;
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(raw_one_way_map(&bad, 1, &id), 0);
	assert_int_equal(raw_announced_map(exp, &bad, att, NULL), -ENOMEM);
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
	assert_int_equal(npeers(exp), 2);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* counts one more MAP, then waits for its SIGKILL */
		atomic_fetch_add(&bad.page[bad.slot], 1u);
		if (write(ready[1], "c", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(bad.sock); /* the child's copy is the connection now */
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(migrate_any(buf), -EBUSY);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	dispatch_until_peers(exp, 1);
	dispatch_until_mappings(exp, buf, 0, 1);
	assert_int_equal(tx_only_peer(exp)->nmappings, 0);
	assert_int_equal(migrate_any(buf), 0);
	raw_learn(exp, &other);
	assert_int_equal(room(&other), 2);
	assert_int_equal(raw_one_way_map(&other, 1, &id), 0);
	dispatch_until_mappings(exp, buf, 1, 1);
	assert_int_equal(rp_unmap(other.sock, exp, id, DMABUF_BIDIRECTIONAL), 0);
	bad.sock = -1;
	raw_close(&bad);
	raw_close(&other);
	close(ready[0]);
	close(ready[1]);
	end_with_no_peer(exp, buf);
	assert_int_equal(open_fds(), fds);
}

/* Many one-way ATTACHes failed (-ENOMEM) at once: the limit stays down
 * until the DETACH of the last of them, then comes back, and one-way MAPs
 * are made again. */
static void many_failed_attachments_give_the_limit_back_at_the_last_detach(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf = export_cached(exp);
	uint64_t att[8], one_way, id;
	struct raw r;

	raw_open(exp, buf, &r);
	for (unsigned int i = 0; i < 8; i++) {
		struct dmb_msg m;

		rp_attach_msg(&m, r.imp);
		m.flags = DMB_WIRE_F_NO_REPLY;
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1, ENOMEM);
		assert_int_equal(rp_send(r.sock, &m), 0);
		att[i] = DMB_WIRE_ONE_WAY_ATT_ID(m.serial);
		assert_int_equal(raw_announced_map(exp, &r, att[i], NULL), -ENOMEM);
		dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
	}
	/* one one-way MAP of each failed attachment still on its way */
	for (unsigned int i = 0; i < 8; i++) {
		uint64_t healthy = r.att;

		r.att = att[i];
		assert_int_equal(raw_one_way_map(&r, 1, &one_way), 0);
		r.att = healthy;
	}
	raw_learn(exp, &r);
	assert_int_equal(npeers(exp), 1);
	assert_int_equal(migrate_any(buf), -EBUSY);
	for (unsigned int i = 0; i < 8; i++) {
		assert_true(room(&r) < 1);
		assert_int_equal(raw_announced_map(exp, &r, att[i], NULL), -ENOMEM);
		assert_int_equal(rp_id_call(r.sock, exp, DMB_OP_DETACH, att[i]), 0);
		raw_learn(exp, &r);
	}
	assert_int_equal(room(&r), 2);
	assert_int_equal(migrate_any(buf), 0);
	raw_learn(exp, &r);
	assert_int_equal(raw_one_way_map(&r, 1, &id), 0);
	dispatch_until_mappings(exp, buf, 1, 1);
	assert_int_equal(rp_unmap(r.sock, exp, id, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(npeers(exp), 1);
	raw_close(&r);
	end_with_no_peer(exp, buf);
}

/* A publication claimed by an import whose one-way ATTACH failed: its
 * first MAP (a round trip: the importer did not take the entry, or the
 * number moved) takes the publication's slot, count base and reserve and
 * answers the errno; the limit the peer then reads is the failed one (no
 * room), as for an import given its slot by a MAP_REPLY. (Before: the
 * publication's limit, room for one-way MAPs that would not hear the
 * errno.) */
static void failed_attachment_at_a_publications_claim_keeps_the_limit_down(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmb_msg m = { .op = DMB_OP_MAP }, reply;
	struct dmabuf *buf = export_cached(exp), *buf1;
	uint32_t slot, gen = 0;
	uint64_t imp, att, healthy;
	struct raw r;
	int fd;

	raw_open_page(exp, buf, &r, GOOD_SEALS, DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB);
	buf1 = tx_export_ops(exp, &tx, &cached_ops, SIZE);
	fd = dmabuf_fd(buf1, O_CLOEXEC);
	slot = raw_publication(exp, &r, buf1, &gen);
	assert_int_equal(atomic_load(&r.page[DMB_WIRE_CACHE_SLOTS + slot]) -
			 atomic_load(&r.page[slot]), 2);
	assert_int_equal(rp_import(r.sock, exp, fd, &imp), 0);
	assert_int_equal(rp_attach(r.sock, exp, imp, &healthy), 0);
	rp_attach_msg(&m, imp);
	m.flags = DMB_WIRE_F_NO_REPLY;
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(rp_send(r.sock, &m), 0);
	att = DMB_WIRE_ONE_WAY_ATT_ID(m.serial);
	m = (struct dmb_msg){ .op = DMB_OP_MAP };
	m.u.map.id = att;
	m.u.map.flags = DMB_WIRE_MAP_ANNOUNCED | DMB_WIRE_MAP_PREPUB;
	m.u.map.pub = gen;
	atomic_fetch_add(&r.page[slot], 1u);
	assert_int_equal(rp_call(r.sock, exp, &m, &reply), -ENOMEM);
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
	assert_null(dmb_prepub_handle(tx_only_peer(exp), buf1));
	assert_true((int32_t)(atomic_load(&r.page[DMB_WIRE_CACHE_SLOTS + slot]) -
			      atomic_load(&r.page[slot])) < 1);
	/* the DETACH gives it back, after the next round trip */
	assert_int_equal(rp_id_call(r.sock, exp, DMB_OP_DETACH, att), 0);
	m = (struct dmb_msg){ .op = DMB_OP_MAP };
	m.u.map.id = healthy;
	assert_int_equal(rp_call(r.sock, exp, &m, &reply), 0);
	assert_true(reply.u.map_reply.flags & DMB_WIRE_MAP_CACHE);
	assert_int_equal(reply.u.map_reply.slot, slot);
	assert_int_equal(atomic_load(&r.page[DMB_WIRE_CACHE_SLOTS + slot]) -
			 atomic_load(&r.page[slot]), 2);
	assert_int_equal(rp_unmap(r.sock, exp, reply.u.map_reply.mapping_id,
				  DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(npeers(exp), 1);
	close(fd);
	raw_close(&r);
	dispatch_until_peers(exp, 0);
	assert_int_equal(dmabuf_put(buf1), 0);
	end_with_no_peer(exp, buf);
}

/* ---- the library's importer ----------------------------------------------------- */

struct env {
	int sock;
};

/* An importer whose cache is full (its second MAP went one-way) forks: the
 * child cannot use the inherited context (its map fails) and so never
 * counts in the page it shares with the parent, which would leave the
 * parent's count ahead and its buffer's migrations -EBUSY for good. */
static int forking_importer(void *arg)
{
	const struct env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	int fd = tx_child_import(env->sock, "dev", &ctx, &dev, &buf);
	pid_t pid;

	child_check(dmabuf_attach(buf, dev, &att) == 0);
	for (int i = 0; i < 2; i++) {
		child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == 0);
		child_check(one_way_mapping(sgt) == (i == 1));
		child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
	}
	pid = fork();
	child_check(pid >= 0);
	if (pid == 0)
		_exit(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) < 0 ? 0 : 1);
	child_check(harness_wait(pid) == 0);
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_send_fd(env->sock, -1, "d", 1) == 0);
	child_check(tx_wait_byte(env->sock, NULL) == 'q');
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void forked_child_of_an_importer_does_not_use_its_cache(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct env env;
	pid_t pid;
	int sock;

	buf = export_cached(exp);
	pid = tx_fork_importer(buf, forking_importer, &env, &env.sock, &sock);
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	dispatch_until_mappings(exp, buf, 0, 0);
	/* the import (and its slot) still held: no count left ahead */
	assert_int_equal(migrate_any(buf), 0);
	assert_int_equal(dmabuf_send_fd(sock, -1, "q", 1), 0);
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	end_with_no_peer(exp, buf);
}

/* Maps @att twice (the second time from the cache) and unmaps: whether
 * the second MAP went one-way. */
static bool map_twice(struct dmabuf_attachment *att)
{
	struct dmabuf_sg_table *sgt;
	bool one_way = false;

	for (int i = 0; i < 2; i++) {
		child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == 0);
		one_way = one_way_mapping(sgt);
		child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
	}
	return one_way;
}

/* The library's importer whose exporter runs out of memory at its one-way
 * ATTACH, whose MAP goes one-way from the cache: the attach and that map
 * return 0 (the table is the buffer's), and so may one more MAP sent
 * before the exporter read the ATTACH (it holds two pairs ahead); every
 * MAP after those asks and is -ENOMEM, as the round trip would have been;
 * UNMAP and DETACH work, and so does the connection after them. */
static int enomem_importer(void *arg)
{
	const struct env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt[3];
	int fd = tx_child_import(env->sock, "dev", &ctx, &dev, &buf);
	int n, ret;

	child_check(dmabuf_attach(buf, dev, &att) == 0);
	child_check(map_twice(att));
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_send_fd(env->sock, -1, "r", 1) == 0);
	child_check(tx_wait_byte(env->sock, NULL) == 'g');
	child_check(dmabuf_attach(buf, dev, &att) == 0);
	for (n = 0; (ret = dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt[n])) == 0; n++)
		child_check(n < 2 && one_way_mapping(sgt[n]));
	child_check(n >= 1 && ret == -ENOMEM);
	child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt[n]) == -ENOMEM);
	while (n--)
		child_check(dmabuf_unmap_attachment(att, sgt[n], DMABUF_BIDIRECTIONAL) == 0);
	child_check(dmabuf_detach(buf, att) == 0);
	/* the connection stays, and its MAPs go one-way again */
	child_check(dmabuf_attach(buf, dev, &att) == 0);
	child_check(map_twice(att));
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_send_fd(env->sock, -1, "d", 1) == 0);
	child_check(tx_wait_byte(env->sock, NULL) == 'q');
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void importer_hears_enomem_of_a_one_way_attach_at_its_next_map(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct dmabuf *buf;
	struct env env;
	pid_t pid;
	int sock;

	buf = export_cached(exp);
	pid = tx_fork_importer(buf, enomem_importer, &env, &env.sock, &sock);
	assert_int_equal(tx_wait_byte(sock, exp), 'r');
	/* its DETACH handled: the next allocation here is its ATTACH's */
	dispatch_until_mappings(exp, buf, 0, 0);
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(dmabuf_send_fd(sock, -1, "g", 1), 0);
	assert_int_equal(tx_wait_byte(sock, exp), 'd');
	dmabuf_fault_inject(DMABUF_FAULT_ALLOC, 0, 0);
	dispatch_until_mappings(exp, buf, 0, 0);
	assert_int_equal(npeers(exp), 1);
	assert_int_equal(migrate_any(buf), 0);
	assert_int_equal(dmabuf_send_fd(sock, -1, "q", 1), 0);
	assert_int_equal(harness_wait(pid), 0);
	close(sock);
	end_with_no_peer(exp, buf);
}

/* The exporter, in a process of its own: serves until it is killed. */
static int exporter_proc(void *arg)
{
	int sock = *(int *)arg;
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf *buf = tx_export_ops(ctx, &tx, &cached_ops, SIZE);
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	child_check(dmabuf_send_fd(sock, fd, "f", 1) == 0);
	close(fd);
	for (;;)
		dmabuf_ctx_dispatch_timeout(ctx, 100);
}

/* The exporter killed while this importer holds cached tables: its next
 * MAP (which the cache would answer one-way) is -ENODEV, as a round trip's
 * is when the exporter is gone, and so is every later one. */
static void exporter_killed_with_cached_tables_maps_enodev(void **state)
{
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	int sv[2], fd;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid = harness_fork_sock(exporter_proc, &sv[1], sv[0]);
	close(sv[1]);
	fd = tx_child_import(sv[0], "dev", &ctx, &dev, &buf);
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
		assert_int_equal(one_way_mapping(sgt), i == 1);
		assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	}
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	for (int i = 0; i < 2; i++)
		assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), -ENODEV);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	close(sv[0]);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(cache_open_refuses_what_is_not_a_sealed_writable_page),
		harness_test(page_changed_under_the_exporter_harms_only_its_peer),
		harness_test(count_ahead_keeps_only_that_buffer_busy_until_its_peer_dies),
		harness_test(counts_scribbled_from_another_thread),
		harness_test(many_importers_and_a_migration_storm),
		harness_test(reserve_under_enomem_lowers_the_limit),
		harness_test(one_way_map_of_a_failed_one_way_attach_answers_its_next_map),
		harness_test(one_way_map_past_the_limit_without_memory_answers_its_next_map),
		harness_test(announced_map_a_migration_counted_is_made_short_of_memory),
		harness_test(announced_map_of_a_publication_a_migration_counted_is_made_short_of_memory),
		harness_test(one_way_attach_and_map_under_each_failing_allocation),
		harness_test(many_failed_attachments_give_the_limit_back_at_the_last_detach),
		harness_test(peer_killed_with_a_failed_attachment_is_undone),
		harness_test(failed_attachment_at_a_publications_claim_keeps_the_limit_down),
		harness_test(forked_child_of_an_importer_does_not_use_its_cache),
		harness_test(importer_hears_enomem_of_a_one_way_attach_at_its_next_map),
		harness_test(exporter_killed_with_cached_tables_maps_enodev),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
