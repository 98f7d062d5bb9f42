/* SPDX-License-Identifier: MIT */
/*
 * A MAP answered from the exporter's published state (wire version 7,
 * docs/design.md §6 "The MAP of a cached table", docs/protocol.md §6 item
 * 5a). Two pages per connection, both memfds of DMB_WIRE_CACHE_SLOTS u32:
 *
 * - the exporter's (one per endpoint, sealed F_SEAL_FUTURE_WRITE: its
 *   peers map it read-only): per buffer slot a sequence number, even when
 *   stable, moved on by 2 when the answer of a MAP may have changed (a
 *   revoke, a KERNEL fence added: resv.c), and odd while a migration
 *   decides;
 * - the importer's (one per connection): per slot the MAPs it announced,
 *   each counted (seq_cst) before it reads the exporter's sequence number.
 *
 * An importer whose cached table carries the sequence number it reads
 * after counting sends the MAP one-way; the exporter's migration makes the
 * number odd, then compares the counts with the announced MAPs it handled:
 * one of the two sees the other (Dekker), so either the MAP was announced
 * before the migration decided (a static mapping made first: -EBUSY, the
 * frames stay) or the importer sees the number move and asks the round
 * trip, which the exporter answers after the move.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fence_private.h"
#include "remote.h"

/* The first sequence number of a slot: 0 is never valid on the wire. */
#define SEQ_FIRST 2u

/* The importer's page must not shrink under the exporter's mapping
 * (SIGBUS); the exporter's also not be written by anyone but it. */
#define IMPORTER_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define EXPORTER_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)

struct dmb_map_state {
	int fd;
	_Atomic uint32_t *seq;
	/* Per slot: the buffer (NULL: free), how many import handles were
	 * given the slot, and the sequence number after the last migration
	 * that went ahead (no one-way MAP may name an older one). */
	unsigned int npeers;	/* with a page: the state goes with the last */
	unsigned int hi;	/* slots [hi, DMB_WIRE_CACHE_SLOTS) are free */
	struct dmabuf *buf[DMB_WIRE_CACHE_SLOTS];
	unsigned int users[DMB_WIRE_CACHE_SLOTS];
	uint32_t moved[DMB_WIRE_CACHE_SLOTS];
};

/* What one-way MAPs of an import will need, made ahead: so the exporter
 * never fails a MAP whose map has returned (docs/design.md §6). Two after
 * every announced MAP; up to RESERVE_CAP when a migration counts that many
 * announced MAPs on their way, so that none of them fails for memory. */
#define RESERVE_MAX 2u
#define RESERVE_CAP 4u
struct dmb_map_reserve {
	unsigned int n;
	struct dmb_handle *h[RESERVE_CAP];
	struct dmabuf_sg_table *sgt[RESERVE_CAP];
};

static int page_new(size_t size, int seals, void **map, int prot)
{
	int fd = memfd_create("dmabuf-mapstate", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	int err;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0)
		goto fail;
	*map = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
	if (*map == MAP_FAILED)
		goto fail;
	if (fcntl(fd, F_ADD_SEALS, seals) < 0) {
		err = -errno;
		munmap(*map, size);
		close(fd);
		return err;
	}
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* Maps a peer's page once it is known not to shrink: the exporter's
 * read-only, the importer's writable (its limits): then one sealed against
 * writes or opened read-only is not the page asked for either (the mmap's
 * EPERM or EACCES says so, at no extra call). */
static int page_map_peer(int fd, size_t size, int prot, void **map)
{
	struct stat st;
	int seals = fcntl(fd, F_GET_SEALS);
	void *p;

	if (seals < 0 || fstat(fd, &st) < 0)
		return -EPROTO;
	if ((seals & (F_SEAL_SHRINK | F_SEAL_SEAL)) != (F_SEAL_SHRINK | F_SEAL_SEAL) ||
	    st.st_size != (off_t)size)
		return -EPROTO;
	p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return errno == EPERM || errno == EACCES ? -EPROTO : -errno;
	*map = p;
	return 0;
}

uint32_t dmb_map_state_client_page(uint16_t version)
{
	return version >= DMB_WIRE_VERSION_PREPUB ? DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB
						  : DMB_WIRE_CACHE_CLIENT_PAGE;
}

/* ---- exporter ------------------------------------------------------------- */

static struct dmb_map_state *state_get(struct dmb_endpoint *ep)
{
	struct dmb_map_state *ms = ep->map_state;
	void *map = NULL; /* set when page_new() succeeds */

	if (ms)
		return ms;
	ms = calloc(1, sizeof(*ms));
	if (!ms)
		return NULL;
	ms->fd = page_new(DMB_WIRE_CACHE_PAGE, EXPORTER_SEALS, &map, PROT_READ | PROT_WRITE);
	if (ms->fd < 0) {
		free(ms);
		return NULL;
	}
	ms->seq = map;
	for (unsigned int i = 0; i < DMB_WIRE_CACHE_SLOTS; i++)
		atomic_store(&ms->seq[i], SEQ_FIRST);
	ep->map_state = ms;
	return ms;
}

void dmb_map_state_destroy(struct dmb_endpoint *ep)
{
	struct dmb_map_state *ms = ep->map_state;

	if (!ms)
		return;
	for (unsigned int i = 0; i < ms->hi; i++)
		if (ms->buf[i])
			dmb_resv_set_kernel_seq(ms->buf[i]->resv, NULL);
	munmap((void *)ms->seq, DMB_WIRE_CACHE_PAGE);
	close(ms->fd);
	free(ms);
	ep->map_state = NULL;
}

int dmb_map_state_open(struct dmb_peer *peer, int fd, int *out_fd)
{
	struct dmb_map_state *ms;
	void *map;
	int ret, dup_fd;

	if (peer->announced) {
		dmb_warn(peer->ctx, "peer pid %d: a second CACHE_OPEN", (int)peer->pid);
		peer->violation = true;
		return -EPROTO;
	}
	uint32_t size = dmb_map_state_client_page(peer->version);

	ret = page_map_peer(fd, size, PROT_READ | PROT_WRITE, &map);
	/* Version 8: a page without the published area is version 7's,
	 * and gets no publications (prepub.c). */
	if (ret == -EPROTO && size != DMB_WIRE_CACHE_CLIENT_PAGE) {
		size = DMB_WIRE_CACHE_CLIENT_PAGE;
		ret = page_map_peer(fd, size, PROT_READ | PROT_WRITE, &map);
	}
	if (ret < 0) {
		dmb_warn(peer->ctx, "peer pid %d: CACHE_OPEN with a page that is not a sealed, writable %u-byte memfd",
			 (int)peer->pid, size);
		return ret == -EPROTO ? -EINVAL : ret;
	}
	ms = state_get(peer->ctx->endpoint);
	dup_fd = ms ? fcntl(ms->fd, F_DUPFD_CLOEXEC, 0) : -ENOMEM;
	if (dup_fd < 0) {
		munmap(map, size);
		return ms ? -errno : -ENOMEM;
	}
	peer->announced = map;
	peer->page_size = size;
	ms->npeers++;
	*out_fd = dup_fd;
	return 0;
}

/* After the peer's handles went. With the last peer that had a page no
 * cached table is left anywhere: the state goes (its fd too). */
void dmb_map_state_peer_gone(struct dmb_peer *peer)
{
	struct dmb_endpoint *ep = peer->ctx->endpoint;

	if (!peer->announced)
		return;
	dmb_prepub_peer_gone(peer);
	munmap((void *)peer->announced, peer->page_size);
	peer->announced = NULL;
	if (ep->map_state && --ep->map_state->npeers == 0)
		dmb_map_state_destroy(ep);
}

/* The buffer's slot, given to @imp (which keeps it until it goes), or -1
 * when none is free. */
static int slot_take(struct dmb_map_state *ms, struct dmb_handle *imp)
{
	struct dmabuf *buf = imp->imp.buf;
	int free_slot = -1;

	if (imp->imp.slot1)
		return (int)imp->imp.slot1 - 1;
	for (unsigned int i = 0; i < ms->hi; i++) {
		if (ms->buf[i] == buf) {
			free_slot = (int)i;
			break;
		}
		if (!ms->buf[i] && free_slot < 0)
			free_slot = (int)i;
	}
	if (free_slot < 0 && ms->hi < DMB_WIRE_CACHE_SLOTS)
		free_slot = (int)ms->hi++;
	if (free_slot < 0)
		return -1;
	if (!ms->buf[free_slot]) {
		ms->buf[free_slot] = buf;
		ms->moved[free_slot] = atomic_load(&ms->seq[free_slot]);
		dmb_resv_set_kernel_seq(buf->resv, &ms->seq[free_slot]);
	}
	ms->users[free_slot]++;
	imp->imp.slot1 = (uint32_t)free_slot + 1;
	return free_slot;
}

static void reserve_drop(struct dmb_handle *imp)
{
	struct dmb_map_reserve *r = imp->imp.reserve;

	for (; r && r->n; r->n--) {
		free(r->h[r->n - 1]);
		dmb_sgt_free(r->sgt[r->n - 1]);
	}
}

/* The peer's limit of one-way MAPs of the slot: those it announced and
 * this side handled, and one for each table and record held; none more
 * while one of its attachments holds an errno (a MAP of it must ask to
 * hear it; the others ask too, since the limit is the buffer's). The held
 * pairs stay, for the one-way MAPs already on their way. */
static void limit_publish(struct dmb_peer *peer, struct dmb_handle *imp)
{
	unsigned int n = imp->imp.reserve && !imp->imp.failed ? imp->imp.reserve->n : 0;

	if (peer->announced && imp->imp.slot1)
		atomic_store(&peer->announced[DMB_WIRE_CACHE_SLOTS + imp->imp.slot1 - 1],
			     imp->imp.handled + n);
}

/* Makes the reserve up to @want pairs as far as memory allows. */
static void reserve_fill(struct dmb_peer *peer, struct dmb_handle *imp, unsigned int want)
{
	struct dmb_map_reserve *r;

	if (!imp->imp.slot1)
		return;
	if (!imp->imp.reserve)
		imp->imp.reserve = calloc(1, sizeof(*imp->imp.reserve));
	r = imp->imp.reserve;
	while (r && r->n < want) {
		/* The fault layer's allocation failure, so that tests can
		 * starve the reserve (its callers' MAPs then ask). */
		struct dmb_handle *h = dmb_sys_fail(DMB_SYS_CALLOC) ? NULL
				       : calloc(1, sizeof(*h));
		struct dmabuf_sg_table *sgt;

		if (!h || dmb_backing_table_locked(imp->imp.buf, &sgt) < 0) {
			free(h);
			break; /* fewer one-way MAPs: round trips, which can fail */
		}
		r->h[r->n] = h;
		r->sgt[r->n] = sgt;
		r->n++;
	}
	limit_publish(peer, imp);
}

void dmb_map_state_refill(struct dmb_peer *peer, struct dmb_handle *imp)
{
	reserve_fill(peer, imp, RESERVE_MAX);
}

void dmb_map_state_failed(struct dmb_peer *peer, struct dmb_handle *imp, int delta)
{
	imp->imp.failed += (unsigned int)delta;
	limit_publish(peer, imp);
}

struct dmb_handle *dmb_map_state_take(struct dmb_handle *imp, struct dmabuf_sg_table **sgt)
{
	struct dmb_map_reserve *r = imp->imp.reserve;

	if (!r || !r->n)
		return NULL;
	r->n--;
	*sgt = r->sgt[r->n];
	return r->h[r->n];
}

void dmb_map_state_import_gone(struct dmb_peer *peer, struct dmb_handle *imp)
{
	struct dmb_map_state *ms = peer->ctx->endpoint ? peer->ctx->endpoint->map_state : NULL;
	unsigned int slot;

	reserve_drop(imp);
	free(imp->imp.reserve);
	imp->imp.reserve = NULL;
	if (!imp->imp.slot1 || !ms)
		return;
	slot = imp->imp.slot1 - 1;
	imp->imp.slot1 = 0;
	if (--ms->users[slot] == 0) {
		dmb_resv_set_kernel_seq(ms->buf[slot]->resv, NULL);
		ms->buf[slot] = NULL;
		while (ms->hi && !ms->buf[ms->hi - 1])
			ms->hi--;
	}
}

/* The exporter's map op is the library's own dmabuf_backing_map(), so the
 * table is a function of the frames, which only a migration changes, and a
 * static map can fail only at a revoke (-ENODEV), a KERNEL fence (a wait)
 * or the limits the importer sees; its unmap op runs at UNMAP as before,
 * whatever it is. No pin op: a static attachment of such an exporter maps
 * at attach (att->cached). Pointers compare the canonical addresses: the
 * library refers to its exported functions through the GOT (-fPIC, default
 * visibility), as the exporter's program does. */
bool dmb_map_state_eligible(const struct dmb_peer *peer, const struct dmb_handle *ah)
{
	const struct dmabuf_attachment *att = ah->att.att;
	const struct dmabuf_ops *ops;

	if (!peer->announced || !att || att->importer_ops || att->cached || att->buf->revoked)
		return false;
	ops = att->buf->ops;
	return ops->map == dmabuf_backing_map && !ops->pin && !ops->unpin;
}

int dmb_map_state_slot(struct dmb_peer *peer, struct dmb_handle *imp, uint32_t *seq)
{
	struct dmb_map_state *ms = peer->ctx->endpoint->map_state;
	bool had = imp->imp.slot1 != 0;
	int slot = ms ? slot_take(ms, imp) : -1;

	if (slot < 0)
		return -1;
	/* The peer's count of a slot goes on from the buffers it held
	 * there before: this import's announced MAPs are counted from here
	 * (it announces none before this reply gives it the slot). */
	if (!had) {
		imp->imp.handled = atomic_load(&peer->announced[slot]);
		limit_publish(peer, imp);
	}
	*seq = atomic_load(&ms->seq[slot]);
	return slot;
}

int dmb_map_state_count(struct dmb_peer *peer, struct dmb_handle *imp)
{
	uint32_t announced, slot;

	if (!imp->imp.slot1 || !peer->announced) {
		dmb_warn(peer->ctx, "peer pid %d: an announced MAP of a buffer it was given no slot for",
			 (int)peer->pid);
		peer->violation = true;
		return -EPROTO;
	}
	slot = imp->imp.slot1 - 1;
	imp->imp.handled++;
	announced = atomic_load(&peer->announced[slot]);
	/* Counted before it was sent, so never behind; ahead by the MAPs
	 * still in the socket, never by more than it may have. */
	if ((int32_t)(announced - imp->imp.handled) < 0 ||
	    announced - imp->imp.handled > DMB_PEER_MAX_MAPPINGS) {
		dmb_warn(peer->ctx, "peer pid %d: its count of announced MAPs (%u) is not what it sent (%u)",
			 (int)peer->pid, announced, imp->imp.handled);
		peer->violation = true;
		return -EPROTO;
	}
	return 0;
}

int dmb_map_state_check_seq(struct dmb_peer *peer, struct dmb_handle *imp, uint32_t seq)
{
	struct dmb_map_state *ms = peer->ctx->endpoint->map_state;
	unsigned int slot = imp->imp.slot1 - 1;
	uint32_t cur = atomic_load(&ms->seq[slot]);

	/* Published (not ahead of the page), and not from before the last
	 * migration: that one saw no announcement, so the importer's
	 * re-read saw it move. */
	if ((int32_t)(cur - seq) < 0 || (int32_t)(seq - ms->moved[slot]) < 0) {
		dmb_warn(peer->ctx, "peer pid %d: a one-way MAP of a table never published as current (seq %u, now %u)",
			 (int)peer->pid, seq, cur);
		return -EPROTO;
	}
	return 0;
}

static int slot_of(const struct dmb_map_state *ms, const struct dmabuf *buf)
{
	for (unsigned int i = 0; i < ms->hi; i++)
		if (ms->buf[i] == buf)
			return (int)i;
	return -1;
}

/* Whether @h (an import of @buf, or a publication's handle) has a MAP of
 * @slot announced that this side has not handled. Behind (a lie) is the
 * next announced MAP's protocol error; ahead is a MAP on its way. Each MAP
 * counted here is taken for made (-EBUSY): one that asks must then not
 * fail for memory, so a pair is held for it too (do_map() falls back on
 * it; a publication's go to the import that takes it, at that MAP). The
 * frames stay, so the pairs are of them. */
static bool announced_ahead(struct dmb_peer *peer, struct dmb_handle *h,
			    const struct dmabuf *buf, int slot)
{
	int32_t ahead;

	if (!h || h->imp.buf != buf || h->imp.slot1 != (uint32_t)slot + 1)
		return false;
	ahead = (int32_t)(atomic_load(&peer->announced[slot]) - h->imp.handled);
	if (ahead <= 0)
		return false;
	reserve_fill(peer, h, ahead < (int32_t)RESERVE_CAP ? (unsigned int)ahead : RESERVE_CAP);
	return true;
}

/* The migrate hook (struct dmb_remote_hooks.maps_announced). */
bool dmb_map_state_announced(struct dmabuf *buf)
{
	struct dmb_endpoint *ep = buf->ctx->endpoint;
	struct dmb_map_state *ms = ep ? ep->map_state : NULL;
	struct dmb_peer *peer;
	struct dmb_handle *h;
	bool busy = false;
	int slot;

	dmb_assert_locked(buf->ctx);
	if (!ms || (slot = slot_of(ms, buf)) < 0)
		return false;
	/* Odd: an importer that reads this from now on asks the round trip;
	 * seq_cst orders it before the counts are read. */
	atomic_fetch_add(&ms->seq[slot], 1u);
	LIST_FOREACH(peer, &ep->peers, link) {
		if (!peer->announced)
			continue;
		LIST_FOREACH(h, &peer->imports, sibling) {
			/* A one-way MAP that could not be made holds these
			 * frames as a static mapping would. */
			busy |= announced_ahead(peer, h, buf, slot);
			busy |= h->imp.buf == buf && h->imp.unmade;
		}
		/* A published table the peer took, its MAP on its way. */
		busy |= announced_ahead(peer, dmb_prepub_handle(peer, buf), buf, slot);
	}
	if (busy) {
		atomic_fetch_sub(&ms->seq[slot], 1u); /* nothing changes */
		return true;
	}
	/* The held tables are of the old frames: gone, and no one-way MAP
	 * allowed until the next round trip holds new ones. */
	LIST_FOREACH(peer, &ep->peers, link) {
		if (!peer->announced)
			continue;
		LIST_FOREACH(h, &peer->imports, sibling) {
			if (h->imp.buf != buf || h->imp.slot1 != (uint32_t)slot + 1)
				continue;
			reserve_drop(h);
			limit_publish(peer, h);
		}
		if ((h = dmb_prepub_handle(peer, buf)) && h->imp.slot1 == (uint32_t)slot + 1) {
			reserve_drop(h);
			limit_publish(peer, h);
		}
	}
	ms->moved[slot] = atomic_fetch_add(&ms->seq[slot], 1u) + 1u;
	return false;
}

/* The revoke hook (struct dmb_remote_hooks.map_state_changed). */
void dmb_map_state_changed(struct dmabuf *buf)
{
	struct dmb_endpoint *ep = buf->ctx->endpoint;
	struct dmb_map_state *ms = ep ? ep->map_state : NULL;
	int slot;

	if (ms && (slot = slot_of(ms, buf)) >= 0)
		atomic_fetch_add(&ms->seq[slot], 2u);
}

/* ---- importer ------------------------------------------------------------- */

int dmb_conn_cache_open(struct dmb_conn *conn)
{
	struct dmb_msg req, reply;
	void *mine = NULL, *theirs = NULL;
	int fd, ret;

	uint32_t size = dmb_map_state_client_page(conn->version);

	conn->cache_state = -1; /* unless all of it works */
	fd = page_new(size, IMPORTER_SEALS, &mine, PROT_READ | PROT_WRITE);
	if (fd < 0)
		return fd;
	dmb_wire_msg_init(&req, DMB_OP_CACHE_OPEN, 0);
	req.fds[0] = fd;
	req.nfds = 1;
	ret = dmb_conn_call(conn, &req, &reply);
	close(fd);
	if (ret == 0) {
		ret = page_map_peer(reply.fds[0], DMB_WIRE_CACHE_PAGE, PROT_READ, &theirs);
		dmb_scm_close_fds(reply.fds, reply.nfds);
	}
	if (ret < 0) {
		munmap(mine, size);
		return ret;
	}
	conn->cache_announced = mine;
	conn->cache_seq = theirs;
	conn->cache_state = 1;
	return 0;
}

void dmb_conn_cache_close(struct dmb_conn *conn)
{
	if (conn->cache_announced)
		munmap((void *)conn->cache_announced, dmb_map_state_client_page(conn->version));
	if (conn->cache_seq)
		munmap((void *)conn->cache_seq, DMB_WIRE_CACHE_PAGE);
	conn->cache_announced = NULL;
	conn->cache_seq = NULL;
}

uint32_t dmb_conn_cache_announce(struct dmb_conn *conn, uint32_t slot, bool *room)
{
	/* Counted, then read (both seq_cst): the exporter's migration makes
	 * the number odd, then reads the count. */
	uint32_t count = atomic_fetch_add(&conn->cache_announced[slot], 1u) + 1u;
	uint32_t seq = atomic_load(&conn->cache_seq[slot]);
	uint32_t limit = atomic_load(&conn->cache_announced[DMB_WIRE_CACHE_SLOTS + slot]);

	/* At most the exporter's limit: it holds a table and a record for
	 * each one-way MAP up to it, so none of them can fail there. */
	*room = (int32_t)(limit - count) >= 0;
	return seq;
}
