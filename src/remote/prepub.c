/* SPDX-License-Identifier: MIT */
/*
 * A new buffer's table published before the importer asks (wire version
 * 8, docs/design.md §6 "A table published before the first MAP",
 * docs/protocol.md §6 item 5b). At the first dmabuf_fd() of a buffer whose
 * map op is dmabuf_backing_map() (no pin op), the exporter gives it a slot
 * in the version 7 pages (mapcache.c) on behalf of the peer whose static
 * MAP was latest, holds the reserve a one-way MAP needs, and writes the
 * table into that peer's page (its third part, which only this side
 * writes), keyed by the memfd's inode and size. The publication stands for
 * an import of the buffer by that peer: its slot, the peer's count of the
 * slot when it was given (from which the peer's announced MAPs of it are
 * counted) and the reserve go to the peer's import handle at its first
 * static MAP, which names the entry's generation when the importer took
 * the slot from it. So the first MAP of a new buffer is the cached MAP of
 * version 7, with the same Dekker ordering against migrations and the
 * same sequence number moved by revokes and KERNEL fences; a publication
 * never used goes at the buffer's release.
 *
 * The importer takes an entry at most once per generation, so two imports
 * of the buffer one after the other never count from the same base. It
 * trusts the entry as it trusts a MAP_REPLY (it is its exporter's word);
 * the exporter never reads the area, so what a peer writes there only
 * misleads that peer, and a MAP that names an entry its import did not
 * take drops that peer.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "dmabuf-fence.h"
#include "remote.h"

struct dmb_prepub {
	/* Stands for the peer's import to come: imp.buf, imp.slot1, and
	 * imp.handled (the peer's count of the slot when it was given),
	 * imp.reserve. Never in the peer's handle tree or import list. */
	struct dmb_handle h;
	uint32_t gen;	/* the entry's generation; 0: free */
};

struct dmb_prepub_peer {
	struct dmb_prepub e[DMB_WIRE_PREPUB_ENTRIES];
};

static _Atomic uint32_t *entry_words(_Atomic uint32_t *page, unsigned int i)
{
	return page + 2u * DMB_WIRE_CACHE_SLOTS + i * DMB_WIRE_PREPUB_WORDS;
}

/* ---- exporter ------------------------------------------------------------- */

static void put64(_Atomic uint32_t *w, uint64_t v)
{
	atomic_store_explicit(&w[0], (uint32_t)v, memory_order_relaxed);
	atomic_store_explicit(&w[1], (uint32_t)(v >> 32), memory_order_relaxed);
}

/* Written as a seqlock: odd while the words change, then the generation.
 * The fence after the odd number keeps the words' stores after it (a
 * seq_cst store alone does not: on a weakly ordered CPU a reader could
 * see new words and still the old generation on both of its reads). */
static void entry_write(struct dmb_peer *peer, unsigned int i, uint32_t gen, uint32_t dir,
			uint32_t slot, uint32_t seq, const struct dmabuf *buf,
			const struct dmabuf_sg_table *sgt)
{
	_Atomic uint32_t *w = entry_words(peer->announced, i);

	atomic_store_explicit(&w[0], 1u, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&w[1], dir, memory_order_relaxed);
	atomic_store_explicit(&w[2], slot, memory_order_relaxed);
	atomic_store_explicit(&w[3], seq, memory_order_relaxed);
	put64(&w[4], (uint64_t)buf->key.dev);
	put64(&w[6], (uint64_t)buf->key.ino);
	put64(&w[8], buf->size);
	atomic_store_explicit(&w[10], (uint32_t)sgt->cpu_count, memory_order_relaxed);
	for (size_t k = 0; k < sgt->cpu_count; k++) {
		_Atomic uint32_t *e = &w[DMB_WIRE_PREPUB_HDR_WORDS + 6 * k];

		put64(&e[0], sgt->cpu[k].offset);
		put64(&e[2], sgt->cpu[k].length);
		put64(&e[4], sgt->cpu[k].phys);
	}
	atomic_store_explicit(&w[0], gen, memory_order_release);
}

static void entry_clear(struct dmb_peer *peer, unsigned int i)
{
	atomic_store_explicit(&entry_words(peer->announced, i)[0], 0u, memory_order_release);
}

/* The same test as dmb_map_state_eligible(), for a buffer not mapped yet. */
static bool buf_eligible(const struct dmabuf *buf)
{
	const struct dmabuf_ops *ops = buf->ops;

	return !buf->imported && !buf->revoked && !buf->handle_only &&
	       ops->map == dmabuf_backing_map && !ops->pin && !ops->unpin;
}

void dmb_prepub_note(struct dmb_peer *peer, enum dmabuf_direction dir)
{
	struct dmb_endpoint *ep = peer->ctx->endpoint;

	if (peer->page_size != DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB || !peer->announced || !ep)
		return;
	ep->prepub_peer = peer;
	ep->prepub_dir = (uint32_t)dir;
}

static void pub_drop(struct dmb_peer *peer, unsigned int i)
{
	struct dmb_prepub *p = &peer->prepub->e[i];

	entry_clear(peer, i);
	dmb_map_state_import_gone(peer, &p->h); /* the reserve, the slot */
	memset(p, 0, sizeof(*p));
}

void dmb_prepub_publish(struct dmabuf *buf)
{
	struct dmb_endpoint *ep = buf->ctx->endpoint;
	struct dmb_peer *peer = ep ? ep->prepub_peer : NULL;
	struct dmabuf_sg_table *sgt;
	struct dmb_prepub *p = NULL;
	uint32_t seq;
	unsigned int i;
	int slot;

	dmb_assert_locked(buf->ctx);
	if (!peer || !peer->announced || peer->doomed || !buf_eligible(buf))
		return;
	if (!peer->prepub && !(peer->prepub = calloc(1, sizeof(*peer->prepub))))
		return;
	for (i = 0; i < DMB_WIRE_PREPUB_ENTRIES && !p; i++)
		if (!peer->prepub->e[i].gen)
			p = &peer->prepub->e[i];
	/* All taken by buffers the peer has not mapped: this one asks. */
	if (!p)
		return;
	i = (unsigned int)(p - peer->prepub->e);
	if (dmb_backing_table_locked(buf, &sgt) < 0)
		return;
	if (sgt->cpu_count == 0 || sgt->cpu_count > DMB_WIRE_PREPUB_MAX_SG)
		goto out;
	p->h.type = DMB_H_IMPORT;
	p->h.imp.buf = buf;
	/* The number before the table (mapcache.c: a KERNEL fence added
	 * later moves it on), the peer's count base, then the reserve. */
	slot = dmb_map_state_slot(peer, &p->h, &seq);
	if (slot < 0) {
		p->h.imp.buf = NULL;
		goto out;
	}
	/* A KERNEL fence from before the slot moved no number: the
	 * importer's one-way MAP would not wait for it, where the round
	 * trip's map does (dmb_buf_wait_kernel(), as __map_dma_buf()). One
	 * added from here on moves the number past seq. */
	if (dmabuf_resv_test_signaled(buf->resv, DMABUF_RESV_USAGE_KERNEL) != 1) {
		dmb_map_state_import_gone(peer, &p->h);
		memset(p, 0, sizeof(*p));
		goto out;
	}
	dmb_map_state_refill(peer, &p->h);
	ep->prepub_gen += 2;
	if (!ep->prepub_gen)
		ep->prepub_gen = 2;
	p->gen = ep->prepub_gen;
	entry_write(peer, i, p->gen, ep->prepub_dir, (uint32_t)slot, seq, buf, sgt);
	buf->published = true;
out:
	dmb_sgt_free(sgt);
}

void dmb_prepub_released(struct dmabuf *buf)
{
	struct dmb_endpoint *ep = buf->ctx->endpoint;
	struct dmb_peer *peer;

	buf->published = false;
	if (!ep)
		return;
	LIST_FOREACH(peer, &ep->peers, link) {
		for (unsigned int i = 0; peer->prepub && i < DMB_WIRE_PREPUB_ENTRIES; i++)
			if (peer->prepub->e[i].gen && peer->prepub->e[i].h.imp.buf == buf)
				pub_drop(peer, i);
	}
}

void dmb_prepub_peer_gone(struct dmb_peer *peer)
{
	struct dmb_endpoint *ep = peer->ctx->endpoint;

	if (ep && ep->prepub_peer == peer)
		ep->prepub_peer = NULL;
	if (!peer->prepub)
		return;
	for (unsigned int i = 0; i < DMB_WIRE_PREPUB_ENTRIES; i++)
		if (peer->prepub->e[i].gen)
			pub_drop(peer, i);
	free(peer->prepub);
	peer->prepub = NULL;
}

static struct dmb_prepub *pub_of(struct dmb_peer *peer, const struct dmabuf *buf)
{
	for (unsigned int i = 0; peer->prepub && i < DMB_WIRE_PREPUB_ENTRIES; i++)
		if (peer->prepub->e[i].gen && peer->prepub->e[i].h.imp.buf == buf)
			return &peer->prepub->e[i];
	return NULL;
}

struct dmb_handle *dmb_prepub_handle(struct dmb_peer *peer, const struct dmabuf *buf)
{
	struct dmb_prepub *p = pub_of(peer, buf);

	return p ? &p->h : NULL;
}

int dmb_prepub_claim(struct dmb_peer *peer, struct dmb_handle *imp, bool take,
		     uint32_t flags, uint32_t pub)
{
	struct dmb_prepub *p;

	/* The import's first static MAP: it counts from the publication's
	 * base whether or not the importer took the entry (it announced
	 * nothing of that slot for this buffer before). */
	if (take && !imp->imp.slot1 && (p = pub_of(peer, imp->imp.buf))) {
		imp->imp.slot1 = p->h.imp.slot1;
		imp->imp.handled = p->h.imp.handled;
		imp->imp.reserve = p->h.imp.reserve;
		imp->imp.pub = p->gen;
		p->h.imp.slot1 = 0;
		p->h.imp.reserve = NULL;
		pub_drop(peer, (unsigned int)(p - peer->prepub->e));
		/* The limit written was the publication's: one of the
		 * import's attachments may hold an errno already (a failed
		 * one-way ATTACH), and then none is left. */
		if (imp->imp.failed)
			dmb_map_state_failed(peer, imp, 0);
	}
	if ((flags & DMB_WIRE_MAP_PREPUB) && (!take || !imp->imp.pub || imp->imp.pub != pub)) {
		dmb_warn(peer->ctx, "peer pid %d: a MAP of a published table (generation %u) its import did not take",
			 (int)peer->pid, pub);
		peer->violation = true;
		return -EPROTO;
	}
	return 0;
}

/* ---- importer ------------------------------------------------------------- */

static uint64_t get64(const _Atomic uint32_t *w)
{
	return atomic_load_explicit(&w[0], memory_order_relaxed) |
	       (uint64_t)atomic_load_explicit(&w[1], memory_order_relaxed) << 32;
}

/* The entries tile [0, size) in order, page-aligned (what a MAP_REPLY's
 * entries must be too). */
static bool table_ok(const struct dmabuf_sg_entry *sg, uint32_t count, uint64_t size)
{
	uint64_t at = 0;

	for (uint32_t k = 0; k < count; k++) {
		if (sg[k].offset != at || !sg[k].length || (sg[k].length & 4095) ||
		    (sg[k].phys & 4095) || sg[k].length > size - at)
			return false;
		at += sg[k].length;
	}
	return at == size;
}

bool dmb_conn_prepub_take(struct dmb_conn *conn, const struct dmabuf *buf,
			  enum dmabuf_direction dir, uint32_t *slot, uint32_t *seq,
			  uint32_t *gen, struct dmabuf_sg_entry **sg, uint32_t *count)
{
	/* The key is the inode: one live buffer's only where inode numbers
	 * never repeat (the entries are of live buffers alone). */
	if (conn->version < DMB_WIRE_VERSION_PREPUB || conn->cache_state <= 0 ||
	    !dmb_memfd_inodes_unique())
		return false;
	for (unsigned int i = 0; i < DMB_WIRE_PREPUB_ENTRIES; i++) {
		const _Atomic uint32_t *w = entry_words(conn->cache_announced, i);
		uint32_t g = atomic_load_explicit(&w[0], memory_order_acquire);
		struct dmabuf_sg_entry *t;
		uint32_t n, s, q;

		if (!g || (g & 1) || g == conn->prepub_used[i] ||
		    atomic_load_explicit(&w[1], memory_order_relaxed) != (uint32_t)dir ||
		    get64(&w[4]) != (uint64_t)buf->key.dev || get64(&w[6]) != (uint64_t)buf->key.ino ||
		    get64(&w[8]) != buf->size)
			continue;
		s = atomic_load_explicit(&w[2], memory_order_relaxed);
		q = atomic_load_explicit(&w[3], memory_order_relaxed);
		n = atomic_load_explicit(&w[10], memory_order_relaxed);
		if (s >= DMB_WIRE_CACHE_SLOTS || !q || (q & 1) || !n || n > DMB_WIRE_PREPUB_MAX_SG)
			continue;
		t = malloc(n * sizeof(*t));
		if (!t)
			return false;
		for (uint32_t k = 0; k < n; k++) {
			const _Atomic uint32_t *e = &w[DMB_WIRE_PREPUB_HDR_WORDS + 6 * k];

			t[k].offset = get64(&e[0]);
			t[k].length = get64(&e[2]);
			t[k].phys = get64(&e[4]);
		}
		/* Still the generation read first: the words are its. */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&w[0], memory_order_relaxed) != g ||
		    !table_ok(t, n, buf->size)) {
			free(t);
			continue;
		}
		conn->prepub_used[i] = g;
		*slot = s;
		*seq = q;
		*gen = g;
		*sg = t;
		*count = n;
		return true;
	}
	return false;
}
