/* SPDX-License-Identifier: MIT */
/*
 * The exporter's endpoint: an abstract AF_UNIX SOCK_SEQPACKET socket named
 * in every exported memfd's name. Importers connect, prove possession of a
 * buffer by sending its fd, and then attach, map and sync through requests
 * that run the exporter's ops here, in the exporter's process.
 *
 * A peer is never trusted: every message is decoded by the pure wire codec,
 * every id is looked up in the peer's own table, every fd that arrives is
 * closed on every path, and a peer that breaks the protocol, stops reading
 * or dies is dropped after everything it held is undone, exactly once.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <bsd/stdlib.h>
#include <bsd/string.h>

#include "dmabuf-fence.h"
#include "remote.h"
#include "scm.h"

static int handle_cmp(const struct dmb_handle *a, const struct dmb_handle *b)
{
	return a->id < b->id ? -1 : a->id > b->id;
}

RB_GENERATE_STATIC(dmb_handle_tree, dmb_handle, node, handle_cmp)

static void peer_accept(struct dmb_source *src, uint32_t events);
static void peer_ready(struct dmb_source *src, uint32_t events);
static void accept_retry(struct dmb_source *src, uint32_t events);

int dmb_endpoint_ensure(struct dmabuf_ctx *ctx)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct dmb_endpoint *ep;
	uint8_t rnd[8];
	size_t len;
	int ret;

	if (ctx->endpoint)
		return 0;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	LIST_INIT(&ep->peers);
	ep->retry_fd = -1;
	arc4random_buf(rnd, sizeof(rnd));
	ep->pid = dmb_self_pid();
	ep->uid = geteuid();
	snprintf(ep->name, sizeof(ep->name), "dmabuf-%d-%02x%02x%02x%02x%02x%02x%02x%02x",
		 (int)ep->pid, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	if ((ret = dmb_sys_fail(DMB_SYS_SOCKET))) {
		free(ep);
		return -ret;
	}
	ep->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (ep->fd < 0) {
		ret = -errno;
		free(ep);
		return ret;
	}
	len = strlen(ep->name);
	memcpy(addr.sun_path + 1, ep->name, len);
	if (bind(ep->fd, (struct sockaddr *)&addr,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) < 0 ||
	    listen(ep->fd, 64) < 0) {
		ret = -errno;
		goto fail;
	}
	ep->retry_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (ep->retry_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = dmb_source_add(ctx, &ep->retry_src, ep->retry_fd, EPOLLIN, accept_retry, ctx);
	if (ret < 0)
		goto fail;
	ret = dmb_source_add(ctx, &ep->src, ep->fd, EPOLLIN, peer_accept, ctx);
	if (ret < 0) {
		dmb_source_del(ctx, &ep->retry_src);
		goto fail;
	}
	ctx->endpoint = ep;
	dmb_dbg(ctx, "endpoint %s listening", ep->name);
	return 0;
fail:
	if (ep->retry_fd >= 0)
		close(ep->retry_fd);
	close(ep->fd);
	free(ep);
	return ret;
}

/* ---- handles ------------------------------------------------------------- */

/* A handle with the next server-chosen id, or with @id (non-zero: the
 * client chose it, DMB_WIRE_CLIENT_ID_BIT set, so it never meets ours). */
static struct dmb_handle *handle_insert(struct dmb_peer *peer, struct dmb_handle *h,
					enum dmb_handle_type type, struct dmb_handle *parent,
					uint64_t id)
{
	if (!h)
		return NULL;
	h->id = id ? id : ++peer->next_id;
	h->type = type;
	h->parent = parent;
	LIST_INIT(&h->children);
	if (parent)
		LIST_INSERT_HEAD(&parent->children, h, sibling);
	else
		LIST_INSERT_HEAD(&peer->imports, h, sibling);
	RB_INSERT(dmb_handle_tree, &peer->handles, h);
	return h;
}

static struct dmb_handle *handle_new(struct dmb_peer *peer, enum dmb_handle_type type,
				     struct dmb_handle *parent, uint64_t id)
{
	return handle_insert(peer, calloc(1, sizeof(struct dmb_handle)), type, parent, id);
}

/* A MAPPING's record, through the fault layer's allocation failure (so
 * that tests can fail a MAP in the exporter). */
static struct dmb_handle *record_alloc(void)
{
	return dmb_sys_fail(DMB_SYS_CALLOC) ? NULL : calloc(1, sizeof(struct dmb_handle));
}

static struct dmb_handle *handle_find(struct dmb_peer *peer, uint64_t id,
				      enum dmb_handle_type type)
{
	struct dmb_handle key = { .id = id }, *h;

	h = RB_FIND(dmb_handle_tree, &peer->handles, &key);
	return h && h->type == type ? h : NULL;
}

/* ---- PIN / UNPIN: a peer's dynamic importer pins the exporter's buffer */

/* The exporter's pin and unpin ops run with the buffer's resv held, as the
 * kernel calls them (dma_buf_pin() asserts it); the endpoint holds the
 * context lock, and takes the resv after it (docs/design.md §8, 1 -> 4). */
static int peer_pin(struct dmabuf_attachment *att)
{
	int ret;

	dmabuf_resv_lock(att->buf->resv);
	ret = dmb_pin_op_locked(att);
	if (ret == 0)
		att->pins++;
	dmabuf_resv_unlock(att->buf->resv);
	return ret;
}

static void peer_unpin(struct dmabuf_attachment *att)
{
	dmabuf_resv_lock(att->buf->resv);
	att->pins--;
	dmb_unpin_op_locked(att);
	dmabuf_resv_unlock(att->buf->resv);
}

/* Pins a peer left (it detached or died without UNPIN) are undone before
 * its attachment goes, so nothing holds the buffer in place for it. */
static void peer_unpin_all(struct dmb_peer *peer, struct dmabuf_attachment *att)
{
	if (att->pins)
		dmb_info(peer->ctx, "peer pid %d: undoing %u pin(s) of %s left on its attachment",
			 (int)peer->pid, att->pins, att->buf->exp_name);
	while (att->pins)
		peer_unpin(att);
}

/*
 * The stand-in of a peer's device for an ATTACH (@info, its name already
 * the peer's "name@pid"): an idle one of this peer made of the same info,
 * else a new one. The exporter's ops see the same name and constraints
 * either way, and a remote device holds nothing else (no addresses here:
 * the peer maps), so taking one again saves its allocation, its name's
 * formatting and its registration per ATTACH (issue 11, the round-trip
 * MAP carries its ATTACH's serving). Lock held.
 */
static int peer_device_get(struct dmb_peer *peer, const struct dmabuf_device_info *info,
			   struct dmabuf_device **out)
{
	for (unsigned int i = peer->nidle_dev; i-- > 0;) {
		struct dmabuf_device *dev = peer->idle_dev[i];

		if (!dmb_device_matches(dev, info))
			continue;
		memmove(&peer->idle_dev[i], &peer->idle_dev[i + 1],
			(peer->nidle_dev - i - 1) * sizeof(peer->idle_dev[0]));
		peer->nidle_dev--;
		*out = dev;
		return 0;
	}
	return dmb_device_create(peer->ctx, info, true, out);
}

/* A stand-in no attachment uses any more: kept for the peer's next ATTACH
 * of that device (the oldest kept is freed when there is no room). */
static void peer_device_put(struct dmb_peer *peer, struct dmabuf_device *dev)
{
	if (dev->attach_count) {
		dmb_device_free(dev); /* never: one attachment per stand-in */
		return;
	}
	if (peer->nidle_dev == DMB_PEER_IDLE_DEVICES) {
		dmb_device_free(peer->idle_dev[0]);
		memmove(&peer->idle_dev[0], &peer->idle_dev[1],
			(DMB_PEER_IDLE_DEVICES - 1) * sizeof(peer->idle_dev[0]));
		peer->nidle_dev--;
	}
	peer->idle_dev[peer->nidle_dev++] = dev;
}

/* Undoes what a handle stands for, children first, exactly once. */
static void handle_destroy(struct dmb_peer *peer, struct dmb_handle *h)
{
	struct dmb_handle *child;

	while ((child = LIST_FIRST(&h->children)))
		handle_destroy(peer, child);
	switch (h->type) {
	case DMB_H_MAPPING:
		/* No table: a one-way MAP of an attachment whose one-way
		 * ATTACH met a revoked buffer, or one that could not be made
		 * (map_one_way()). */
		if (h->map.sgt)
			dmb_unmap_locked(h->parent->att.att, h->map.sgt, h->map.dir);
		if (h->map.unmade)
			h->parent->parent->imp.unmade--;
		peer->nmappings--;
		break;
	case DMB_H_ATTACHMENT:
		if (h->att.notify_pending)
			peer->notifies_pending--;
		if (h->att.att) { /* else a failed one-way ATTACH: nothing made */
			peer_unpin_all(peer, h->att.att);
			dmb_detach_locked(h->att.att);
			peer_device_put(peer, h->att.dev);
		}
		/* One-way MAPs of it that could not be made, with no record:
		 * they end with it. */
		h->parent->imp.unmade -= h->att.unmade;
		peer->nmappings -= h->att.unmade;
		if (h->att.err)
			dmb_map_state_failed(peer, h->parent, -1);
		peer->nattachments--;
		break;
	case DMB_H_IMPORT:
		/* CPU brackets the peer left open are closed for it. */
		for (int d = DMABUF_BIDIRECTIONAL; d <= DMABUF_FROM_DEVICE; d++)
			while (h->imp.cpu_open[d]) {
				h->imp.cpu_open[d]--;
				dmb_cpu_end_locked(h->imp.buf, (enum dmabuf_direction)d);
			}
		peer->nimports--;
		dmb_map_state_import_gone(peer, h);
		/* May release the buffer (its file is gone with the peer). */
		dmabuf_put(h->imp.buf);
		break;
	}
	LIST_REMOVE(h, sibling);
	RB_REMOVE(dmb_handle_tree, &peer->handles, h);
	free(h);
}

static void accept_resume(struct dmabuf_ctx *ctx);

static void peer_destroy(struct dmb_peer *peer, const char *why)
{
	struct dmabuf_ctx *ctx = peer->ctx;
	struct dmb_endpoint *ep = ctx->endpoint;
	struct dmb_handle *h;

	if (peer->depth) {
		/* A call made from inside this peer's request served it again
		 * and found it gone: the outermost frame frees it. No more
		 * events meanwhile (the EOF would be reported forever). */
		dmb_source_del(ctx, &peer->src);
		peer->doomed = true;
		return;
	}

	if (peer->nimports)
		dmb_info(ctx, "peer pid %d leaves (%s): undoing %u import(s), %u attachment(s), %u mapping(s)",
			 (int)peer->pid, why, peer->nimports, peer->nattachments,
			 peer->nmappings);
	dmb_source_del(ctx, &peer->src);
	while ((h = LIST_FIRST(&peer->imports)))
		handle_destroy(peer, h);
	while (peer->nidle_dev)
		dmb_device_free(peer->idle_dev[--peer->nidle_dev]);
	dmb_map_state_peer_gone(peer);
	LIST_REMOVE(peer, link);
	if (peer->hello_done)
		ep->npeers--;
	else
		ep->npending--;
	for (unsigned int i = 0; i < peer->next.count; i++) {
		unsigned int k = peer->next.first + i;

		dmb_scm_close_fds(peer->next.pkt[k].fds, peer->next.pkt[k].nfds);
	}
	dmb_scm_close_fds(peer->rest.fds, DMB_WIRE_MAX_FDS);
	close(peer->fd);
	free(peer);
	/* An fd is free again: a paused listening socket may go on. */
	accept_resume(ctx);
}

void dmb_endpoint_destroy(struct dmabuf_ctx *ctx)
{
	struct dmb_endpoint *ep = ctx->endpoint;
	struct dmb_peer *peer;

	if (!ep)
		return;
	while ((peer = LIST_FIRST(&ep->peers)))
		peer_destroy(peer, "context destroyed");
	dmb_map_state_destroy(ep);
	dmb_source_del(ctx, &ep->src);
	dmb_source_del(ctx, &ep->retry_src);
	close(ep->fd);
	close(ep->retry_fd);
	free(ep);
	ctx->endpoint = NULL;
}

/* ---- request handlers ---------------------------------------------------- */

/* Each handler gets the handle its request names (looked up by
 * handle_request() from the opcode's descriptor; NULL if it names none),
 * fills reply->u / reply->fds (fds it creates are closed by the caller
 * after sending) and returns the status. */

/* The same memfd, opened the same way: one fd of the reply serves both
 * ranges (each item of a udmabuf holds a dup of its own). */
static bool same_memfd(int a, int b)
{
	struct stat sa, sb;

	return a == b ||
	       (fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
		sa.st_ino == sb.st_ino &&
		(fcntl(a, F_GETFL) & O_ACCMODE) == (fcntl(b, F_GETFL) & O_ACCMODE));
}

/*
 * Ranges [first, ...) of a udmabuf's backing as one batch: as many as fit
 * (DMB_WIRE_MAX_RANGES, and ranges of at most DMB_WIRE_MAX_FDS distinct
 * memfds); the reply carries a dup of each memfd, closed after sending.
 */
static int backing_batch(struct dmabuf *buf, uint32_t first, struct dmb_wire_ranges *b,
			 struct dmb_msg *reply)
{
	const struct dmb_backing *bk = &buf->backing;
	int src[DMB_WIRE_MAX_FDS];
	size_t nsrc = 0;

	b->total = (uint32_t)bk->nranges;
	b->first = first;
	b->count = 0;
	for (size_t i = first; i < bk->nranges && b->count < DMB_WIRE_MAX_RANGES; i++) {
		size_t k;

		for (k = 0; k < nsrc && !same_memfd(src[k], bk->ranges[i].fd); k++)
			;
		if (k == nsrc) {
			if (nsrc == DMB_WIRE_MAX_FDS)
				break;
			src[nsrc++] = bk->ranges[i].fd;
		}
		b->r[b->count].fd_index = (uint32_t)k;
		b->r[b->count].offset = bk->ranges[i].offset;
		b->r[b->count].size = bk->ranges[i].size;
		b->count++;
	}
	for (size_t k = 0; k < nsrc; k++) {
		int err = dmb_sys_fail(DMB_SYS_DUP);
		int fd = err ? -1 : fcntl(src[k], F_DUPFD_CLOEXEC, 0);

		if (fd < 0) {
			err = err ? err : errno;
			dmb_scm_close_fds(reply->fds, reply->nfds);
			reply->nfds = 0;
			return -err;
		}
		reply->fds[reply->nfds++] = fd;
	}
	return 0;
}

#define DMB_PEER_GUESS_SKIP 8

/*
 * The buffer whose dma-buf file req_fd is, found with one syscall instead
 * of the F_GETFL and fstat() of dmb_buf_lookup_fl(): the newest export
 * (ctx->newest: a recycled memfd's inode is not the largest), if req_fd
 * is the very open file description the library opened for it (then it is
 * open, not O_PATH, of the buffer's access mode). NULL when it is not:
 * the caller checks the fd the long way. A wrong guess costs a syscall,
 * so after one the peer's next DMB_PEER_GUESS_SKIP imports make none.
 */
static struct dmabuf *likely_import(struct dmb_peer *peer, int req_fd)
{
	struct dmabuf *buf = peer->ctx->newest;

	if (peer->guess_skip) {
		peer->guess_skip--;
		return NULL;
	}
	if (!buf || buf->imported || buf->state != DMB_BUF_LIVE || buf->file_fd < 0 ||
	    !buf->file_opened_here)
		return NULL;
	if (dmb_sys_same_file(buf->file_fd, req_fd))
		return buf;
	peer->guess_skip = DMB_PEER_GUESS_SKIP;
	return NULL;
}

static int do_import(struct dmb_peer *peer, struct dmb_handle *unused,
		     const struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmabuf_ctx *ctx = peer->ctx;
	struct dmb_wire_import_reply *r = &reply->u.import_reply;
	struct dmb_handle *h;
	struct dmabuf *buf;
	struct stat st;
	int ret, fl;

	buf = likely_import(peer, req->fds[0]);
	if (buf) {
		fl = buf->flags;
	} else {
		ret = dmb_buf_lookup_fl(ctx, req->fds[0], &st, &fl, &buf);
		if (ret < 0)
			return ret;
	}
	/* Only buffers exported here; a proxy of a third party's buffer, or a
	 * buffer on its way out, is not ours to serve. */
	if (!buf || buf->imported || buf->state == DMB_BUF_RELEASED) {
		dmb_info(ctx, "peer pid %d: IMPORT of an fd that is no buffer of this exporter",
			 (int)peer->pid);
		return -EINVAL;
	}
	if (peer->nimports >= DMB_PEER_MAX_IMPORTS)
		return -ENOSPC;
	/* Version 3: the client names the import, with ids that only grow
	 * (never reused, so a stale id never names a newer import). */
	if (req->u.import.buffer_id && req->u.import.buffer_id <= peer->last_client_id) {
		dmb_info(ctx, "peer pid %d: IMPORT id %#llx not above its last one",
			 (int)peer->pid, (unsigned long long)req->u.import.buffer_id);
		return -EEXIST;
	}
	/* The import holds a reference until the peer releases it or leaves,
	 * so the handle never outlives the buffer. */
	ret = dmb_buf_get_ref(buf, req->fds[0]);
	if (ret < 0)
		return ret;
	h = handle_new(peer, DMB_H_IMPORT, NULL, req->u.import.buffer_id);
	if (!h) {
		dmabuf_put(buf);
		return -ENOMEM;
	}
	if (req->u.import.buffer_id)
		peer->last_client_id = req->u.import.buffer_id;
	h->imp.buf = buf;
	peer->nimports++;
	r->buffer_id = h->id;
	r->size = buf->size;
	r->flags = (uint32_t)buf->flags;
	r->info_flags = dmb_buf_name_set(buf) ? DMB_WIRE_INFO_NAME_SET : 0;
	strlcpy(r->exp_name, buf->exp_name, sizeof(r->exp_name));
	strlcpy(r->name, dmb_buf_name(buf), sizeof(r->name));
	/* A udmabuf's bytes are the creator's memfds: the first batch. */
	if (buf->handle_only) {
		ret = backing_batch(buf, 0, &r->backing, reply);
		if (ret < 0)
			handle_destroy(peer, h);
		return ret;
	}
	/* 1: a success that tells a QUIET client nothing its fd did not
	 * (docs/protocol.md §6 item 3a). */
	return !dmb_buf_name_set(buf) && (fl & O_ACCMODE) == buf->flags ? 1 : 0;
}

static int do_get_backing(struct dmb_peer *peer, struct dmb_handle *imp,
			  const struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmabuf *buf = imp->imp.buf;

	/* A buffer whose bytes are in its file has no ranges to give. */
	if (!buf->handle_only || req->u.get_backing.first >= buf->backing.nranges)
		return -EINVAL;
	return backing_batch(buf, req->u.get_backing.first, &reply->u.backing, reply);
}

static int do_release(struct dmb_peer *peer, struct dmb_handle *imp,
		      const struct dmb_msg *req, struct dmb_msg *reply)
{
	handle_destroy(peer, imp);
	return 0;
}

/* ---- MOVE_NOTIFY: the exporter's move reaches a peer's DYNAMIC attachment */

static int peer_send(struct dmb_peer *peer, struct dmb_msg *msg);

/* Sends h's MOVE_NOTIFY; 0, -EAGAIN when the socket is full. */
static int notify_send(struct dmb_peer *peer, struct dmb_handle *h)
{
	struct dmb_msg ev;

	dmb_wire_msg_init(&ev, DMB_OP_MOVE_NOTIFY, h->id);
	ev.version = peer->version;
	ev.serial = 0;
	return peer_send(peer, &ev);
}

static void notify_queue(struct dmb_peer *peer, struct dmb_handle *h)
{
	if (h->att.notify_pending)
		return; /* one pending event says it all */
	h->att.notify_pending = true;
	if (peer->notifies_pending++ == 0)
		dmb_source_mod(peer->ctx, &peer->src, EPOLLIN | EPOLLOUT);
}

/* The importer ops of a peer's DYNAMIC attachment: runs under the
 * exporter's move (context and resv held) and never waits for the peer. */
static void peer_move_notify(struct dmabuf_attachment *att)
{
	struct dmb_handle *h = att->importer_priv;
	struct dmb_peer *peer = h->att.peer;
	int ret;

	if (peer->doomed || h->att.notify_pending)
		return;
	ret = notify_send(peer, h);
	if (ret == -EAGAIN) {
		dmb_dbg(peer->ctx, "peer pid %d: socket full, MOVE_NOTIFY for attachment %llu deferred",
			(int)peer->pid, (unsigned long long)h->id);
		notify_queue(peer, h);
	} else if (ret < 0) {
		/* A dead peer: its EOF is next in the loop and undoes it all. */
		dmb_dbg(peer->ctx, "peer pid %d: MOVE_NOTIFY not sent: %d", (int)peer->pid, ret);
	}
}

static const struct dmabuf_importer_ops peer_importer_ops = {
	.version = DMABUF_IMPORTER_OPS_VERSION,
	.allow_peer2peer = false,
	.move_notify = peer_move_notify,
};

/* The socket has room again: sends what was deferred, until it is full. */
static void notify_flush(struct dmb_peer *peer)
{
	struct dmb_handle *h;

	RB_FOREACH(h, dmb_handle_tree, &peer->handles) {
		if (!peer->notifies_pending)
			break;
		if (h->type != DMB_H_ATTACHMENT || !h->att.notify_pending)
			continue;
		if (notify_send(peer, h) == -EAGAIN)
			return;
		h->att.notify_pending = false;
		peer->notifies_pending--;
	}
	if (!peer->notifies_pending)
		dmb_source_mod(peer->ctx, &peer->src, EPOLLIN);
}

/* "<@name>@<@pid>" into @out (DMB_WIRE_NAME_LEN + 16 bytes): the peer's
 * device's name as the exporter's ops see it, without snprintf()'s cost
 * per ATTACH. */
static void peer_device_name(char *out, const char *name, pid_t pid)
{
	char digits[12];
	size_t n = strnlen(name, DMB_WIRE_NAME_LEN), k = 0;
	unsigned int v = pid < 0 ? 0u - (unsigned int)pid : (unsigned int)pid;

	memcpy(out, name, n);
	out[n++] = '@';
	if (pid < 0)
		out[n++] = '-';
	do
		digits[k++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (k)
		out[n++] = digits[--k];
	out[n] = '\0';
}

/* The attachment a peer's ATTACH asks for, under handle id @id (0: the
 * next server-chosen one). */
static int attach_make(struct dmb_peer *peer, struct dmb_handle *imp,
		       const struct dmb_wire_attach *a, uint64_t id,
		       struct dmb_handle **out)
{
	struct dmabuf_device_info info = {
		.dma_mask_bits = a->dma_mask_bits,
		.max_segment_size = a->max_segment_size,
		.segment_boundary = a->segment_boundary,
		.alignment = a->alignment,
		.flags = a->dev_flags,
	};
	char name[DMB_WIRE_NAME_LEN + 16];
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmb_handle *h;
	int ret;

	/* The exporter's ops see the peer's device under its own name. */
	peer_device_name(name, a->name, peer->pid);
	info.name = name;
	ret = peer_device_get(peer, &info, &dev);
	if (ret < 0)
		return ret;
	h = handle_new(peer, DMB_H_ATTACHMENT, imp, id);
	if (!h) {
		peer_device_put(peer, dev);
		return -ENOMEM;
	}
	h->att.peer = peer;
	if (a->attach_flags & DMB_WIRE_ATTACH_DYNAMIC)
		ret = dmb_dynamic_attach_locked(imp->imp.buf, dev, &peer_importer_ops, h, &att);
	else
		ret = dmb_attach_locked(imp->imp.buf, dev, &att);
	if (ret < 0) {
		LIST_REMOVE(h, sibling);
		RB_REMOVE(dmb_handle_tree, &peer->handles, h);
		free(h);
		peer_device_put(peer, dev);
		return ret;
	}
	h->att.att = att;
	h->att.dev = dev;
	peer->nattachments++;
	*out = h;
	return 0;
}

/*
 * One-way ATTACH (version 4, docs/protocol.md §6 item 4b): the client
 * named the attachment after the request's serial and went on, so even a
 * failure leaves that id behind, holding the errno that a MAP or PIN of it
 * answers, until its DETACH. The client sends these only far below the
 * limit, and serials never repeat: anything else is a protocol error.
 */
static int attach_one_way(struct dmb_peer *peer, struct dmb_handle *imp,
			  const struct dmb_msg *req)
{
	uint64_t id = DMB_WIRE_ONE_WAY_ATT_ID(req->serial);
	struct dmb_handle key = { .id = id }, *h;
	int ret;

	if (peer->nattachments >= DMB_PEER_MAX_ATTACHMENTS ||
	    (req->serial & DMB_WIRE_ONE_WAY_ATT_BITS) ||
	    RB_FIND(dmb_handle_tree, &peer->handles, &key)) {
		dmb_warn(peer->ctx, "peer pid %d: one-way ATTACH (serial %llu) at its attachment limit or naming a used id",
			 (int)peer->pid, (unsigned long long)req->serial);
		return -EPROTO;
	}
	ret = attach_make(peer, imp, &req->u.attach, id, &h);
	if (ret == 0)
		return 0;
	h = handle_new(peer, DMB_H_ATTACHMENT, imp, id);
	if (!h)
		return -EPROTO; /* the id would name nothing: drop the peer */
	h->att.err = ret;
	peer->nattachments++;
	/* Its MAPs from now on ask, so they hear the errno; one already on
	 * its way is map_one_way()'s. */
	dmb_map_state_failed(peer, imp, 1);
	dmb_info(peer->ctx, "peer pid %d: one-way ATTACH to %s failed (%d): its MAP answers that",
		 (int)peer->pid, imp->imp.buf->exp_name, ret);
	return 0;
}

static int do_attach(struct dmb_peer *peer, struct dmb_handle *imp,
		     const struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmb_handle *h;
	int ret;

	if (req->flags & DMB_WIRE_F_NO_REPLY)
		return attach_one_way(peer, imp, req);
	if (peer->nattachments >= DMB_PEER_MAX_ATTACHMENTS)
		return -ENOSPC;
	ret = attach_make(peer, imp, &req->u.attach, 0, &h);
	if (ret < 0)
		return ret;
	reply->u.attach_reply.attachment_id = h->id;
	return 0;
}

static int do_detach(struct dmb_peer *peer, struct dmb_handle *ah,
		     const struct dmb_msg *req, struct dmb_msg *reply)
{
	handle_destroy(peer, ah);
	return 0;
}

/*
 * A one-way MAP that cannot be made here (@err): its ATTACH failed for
 * another reason than a revoke, or the peer went past its limit and no
 * table or record could be made. The peer's map has returned its cached
 * table already, so the errno can only reach it later: the attachment
 * keeps it (the first one kept: a failed ATTACH's), and every later MAP
 * of it, which asks from now on (dmb_map_state_failed()), answers it; the
 * peer's UNMAP and DETACH work as for any mapping. The mapping stays the
 * peer's, counted against its limit, and holds the frames its table names
 * against a migration (-EBUSY) until its UNMAP: under @h (the record held
 * for it), or, without one (nothing allocates here: memory ran out),
 * counted on the attachment until its DETACH (the UNMAP then names an id
 * this side does not know: -ENOENT, only logged). The connection stays.
 */
static void map_unmade(struct dmb_peer *peer, struct dmb_handle *ah, struct dmb_handle *h,
		       uint64_t id, enum dmabuf_direction dir, int err)
{
	if (!ah->att.err) {
		ah->att.err = err;
		dmb_map_state_failed(peer, ah->parent, 1);
	}
	if ((h = handle_insert(peer, h, DMB_H_MAPPING, ah, id))) {
		h->map.sgt = NULL;
		h->map.dir = dir;
		h->map.unmade = true;
	} else {
		ah->att.unmade++;
	}
	ah->parent->imp.unmade++;
	peer->nmappings++;
	dmb_map_state_refill(peer, ah->parent);
	dmb_info(peer->ctx, "peer pid %d: its one-way MAP of %s cannot be made here (%d): its next MAP of that attachment answers %d",
		 (int)peer->pid, ah->parent->imp.buf->exp_name, err, ah->att.err);
}

/*
 * A one-way MAP (version 7, docs/protocol.md §6 item 5a): the peer's map
 * returned the table it cached, so this is where the kernel's map ran; it
 * cannot fail any more. Named after its serial, as a one-way ATTACH. Its
 * table and record were made ahead (the peer sends one only within the
 * limit this side writes in its page: mapcache.c), so the map op's answer
 * is that table. A peer past its limit gets them made now; what cannot be
 * made then, and a MAP whose one-way ATTACH failed for another reason than
 * a revoke, is map_unmade()'s.
 */
static int map_one_way(struct dmb_peer *peer, struct dmb_handle *ah,
		       const struct dmb_msg *req)
{
	uint64_t id = DMB_WIRE_ONE_WAY_ATT_ID(req->serial);
	enum dmabuf_direction dir = (enum dmabuf_direction)req->u.map.dir;
	struct dmb_handle key = { .id = id }, *h;
	struct dmabuf_sg_table *sgt = NULL, *reserved = NULL;
	struct dmabuf *buf = ah->parent->imp.buf;
	int ret;

	if ((req->serial & DMB_WIRE_ONE_WAY_ATT_BITS) ||
	    RB_FIND(dmb_handle_tree, &peer->handles, &key) ||
	    peer->nmappings >= DMB_PEER_MAX_MAPPINGS ||
	    (ah->att.att && ah->att.att->importer_ops)) {
		dmb_warn(peer->ctx, "peer pid %d: one-way MAP (serial %llu) of a dynamic attachment, at its mapping limit or naming a used id",
			 (int)peer->pid, (unsigned long long)req->serial);
		return -EPROTO;
	}
	if (dmb_map_state_check_seq(peer, ah->parent, req->u.map.seq) < 0)
		return -EPROTO;
	h = dmb_map_state_take(ah->parent, &reserved);
	if (ah->att.att && !ah->att.err) {
		ret = dmb_map_announced_locked(ah->att.att, dir, reserved, &sgt);
	} else {
		/* Its one-way ATTACH met a revoke that came after the peer's
		 * map returned: a mapping made stale, with nothing to undo. */
		if (reserved)
			dmb_sgt_free(reserved);
		ret = !ah->att.att && ah->att.err == -ENODEV && buf->revoked ? 0 : ah->att.err;
	}
	if (ret == 0) {
		/* Past its limit: the record made now. */
		h = handle_insert(peer, h ? h : record_alloc(), DMB_H_MAPPING, ah, id);
		if (!h) {
			if (sgt)
				dmb_unmap_locked(ah->att.att, sgt, dir);
			ret = -ENOMEM;
		}
	}
	if (ret < 0) {
		map_unmade(peer, ah, h, id, dir, ret);
		return 0;
	}
	h->map.sgt = sgt;
	h->map.dir = dir;
	peer->nmappings++;
	dmb_map_state_refill(peer, ah->parent);
	return 0;
}

static int do_map(struct dmb_peer *peer, struct dmb_handle *ah,
		  const struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmb_handle *h;
	struct dmb_wire_map_reply *r = &reply->u.map_reply;
	enum dmabuf_direction dir = (enum dmabuf_direction)req->u.map.dir;
	struct dmabuf_sg_table *sgt, *reserved;
	struct dmb_handle *held = NULL;
	bool announced = req->u.map.flags & DMB_WIRE_MAP_ANNOUNCED;
	uint32_t seq = 0;
	int ret, fd, slot = -1;

	/* Version 8 (prepub.c): a static MAP of an import with no slot
	 * takes what was published of its buffer to this peer. */
	if (dmb_prepub_claim(peer, ah->parent, !(ah->att.att && ah->att.att->importer_ops),
			     req->u.map.flags, req->u.map.pub) < 0)
		return -EPROTO;
	if (ah->att.att && dmb_map_state_eligible(peer, ah))
		dmb_prepub_note(peer, dir);
	if (announced && dmb_map_state_count(peer, ah->parent) < 0)
		return -EPROTO;
	if (req->flags & DMB_WIRE_F_NO_REPLY)
		return map_one_way(peer, ah, req);
	if (ah->att.err)
		return ah->att.err; /* a one-way ATTACH or MAP that failed */
	if (peer->nmappings >= DMB_PEER_MAX_MAPPINGS)
		return -ENOSPC;
	/* The number before the map: a KERNEL fence added after this is
	 * waited for below, or moves the number on. */
	if (dmb_map_state_eligible(peer, ah))
		slot = dmb_map_state_slot(peer, ah->parent, &seq);
	ret = dmb_map_locked(ah->att.att, dir, &sgt);
	/* An announced MAP may have been taken for made by a migration
	 * (-EBUSY, mapcache.c), which held a pair for it: short of memory,
	 * the map op's answer is the held table (the op is
	 * dmabuf_backing_map(), the frames those of the pair), the record
	 * the held one; not when the -ENOMEM may be the KERNEL fences'
	 * wait's, which the held table must not skip. */
	if (ret == -ENOMEM && announced && slot >= 0 &&
	    dmabuf_resv_test_signaled(ah->parent->imp.buf->resv, DMABUF_RESV_USAGE_KERNEL) == 1 &&
	    (held = dmb_map_state_take(ah->parent, &reserved)))
		ret = dmb_map_announced_locked(ah->att.att, dir, reserved, &sgt);
	if (ret < 0) {
		free(held);
		return ret;
	}
	h = held ? held : record_alloc();
	if (!h && announced && slot >= 0 && (h = dmb_map_state_take(ah->parent, &reserved)))
		dmb_sgt_free(reserved);
	h = handle_insert(peer, h, DMB_H_MAPPING, ah, 0);
	if (!h) {
		dmb_unmap_locked(ah->att.att, sgt, dir);
		return -ENOMEM;
	}
	h->map.sgt = sgt;
	h->map.dir = dir;
	peer->nmappings++;
	r->mapping_id = h->id;
	r->size = sgt->size;
	r->count = sgt->cpu_count;
	if (slot >= 0 && (sgt->cpu_count > DMB_WIRE_MAX_INLINE_SG ||
			  sgt->cpu_count <= DMB_WIRE_MAX_INLINE_SG_CACHE)) {
		r->flags |= DMB_WIRE_MAP_CACHE;
		r->slot = (uint32_t)slot;
		r->seq = seq;
		/* What the peer's next one-way MAPs need, before it can
		 * send one (its limit is written here). */
		dmb_map_state_refill(peer, ah->parent);
	}
	if (sgt->cpu_count <= DMB_WIRE_MAX_INLINE_SG) {
		memcpy(r->sg, sgt->cpu, sgt->cpu_count * sizeof(*sgt->cpu));
		return 0;
	}
	/* A large table travels as a sealed memfd: one message, zero copy
	 * on the wire. */
	fd = dmb_scm_sg_memfd_create(sgt->cpu, sgt->cpu_count);
	if (fd < 0) {
		handle_destroy(peer, h);
		return fd;
	}
	r->flags |= DMB_WIRE_MAP_SG_MEMFD;
	reply->fds[0] = fd;
	reply->nfds = 1;
	return 0;
}

static int do_unmap(struct dmb_peer *peer, struct dmb_handle *h,
		    const struct dmb_msg *req, struct dmb_msg *reply)
{
	if (h->map.dir != (enum dmabuf_direction)req->u.map.dir)
		return -EINVAL;
	handle_destroy(peer, h);
	return 0;
}

static int do_begin_cpu_access(struct dmb_peer *peer, struct dmb_handle *imp,
			       const struct dmb_msg *req, struct dmb_msg *reply)
{
	enum dmabuf_direction dir = (enum dmabuf_direction)req->u.cpu_access.dir;
	int ret;

	/* Never block the event loop on fences: the importer waits for
	 * them itself (FENCE_EXPORT) and asks again. */
	ret = dmb_cpu_begin_locked(imp->imp.buf, dir, 0);
	if (ret == 0)
		imp->imp.cpu_open[dir]++;
	return ret;
}

static int do_end_cpu_access(struct dmb_peer *peer, struct dmb_handle *imp,
			     const struct dmb_msg *req, struct dmb_msg *reply)
{
	enum dmabuf_direction dir = (enum dmabuf_direction)req->u.cpu_access.dir;

	/* END without this peer's START: as any END without START (the
	 * exporter's op decides; strict mode refuses), and never closes a
	 * bracket another holder opened. */
	if (!dmb_cpu_bracket_close(imp->imp.cpu_open, dir))
		return dmb_cpu_end_unmatched_locked(imp->imp.buf, dir);
	return dmb_cpu_end_locked(imp->imp.buf, dir);
}

static int do_set_name(struct dmb_peer *peer, struct dmb_handle *imp,
		       const struct dmb_msg *req, struct dmb_msg *reply)
{
	return dmb_buf_set_name(imp->imp.buf, req->u.set_name.name);
}

static int do_describe(struct dmb_peer *peer, struct dmb_handle *imp,
		       const struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmb_wire_describe_reply *r = &reply->u.describe_reply;
	struct dmabuf *buf = imp->imp.buf;
	struct dmb_peer *p;

	r->size = buf->size;
	r->flags = (uint32_t)buf->flags;
	r->info_flags = (buf->backing.runs ? DMB_WIRE_INFO_BACKING_ALLOCATED : 0) |
			(buf->backing.nruns == 1 ? DMB_WIRE_INFO_CONTIGUOUS : 0) |
			(dmb_buf_name_set(buf) ? DMB_WIRE_INFO_NAME_SET : 0);
	r->attachments = buf->nattachments;
	r->mappings = buf->nmappings;
	r->vmap_count = dmb_buf_vmap_count(buf);
	LIST_FOREACH(p, &peer->ctx->endpoint->peers, link) {
		struct dmb_handle *h;

		LIST_FOREACH(h, &p->imports, sibling)
			r->importers += h->imp.buf == buf;
	}
	strlcpy(r->exp_name, buf->exp_name, sizeof(r->exp_name));
	strlcpy(r->name, dmb_buf_name(buf), sizeof(r->name));
	return 0;
}

static int do_fence_attach(struct dmb_peer *peer, struct dmb_handle *imp,
			   const struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmabuf_fence *fence;
	int ret;

	/* As DMA_BUF_IOCTL_IMPORT_SYNC_FILE: an importer adds READ or WRITE
	 * fences only. A KERNEL fence would be waited for by every map, in
	 * this event loop, for as long as the peer likes. */
	if (req->u.fence_attach.usage != DMABUF_RESV_USAGE_READ &&
	    req->u.fence_attach.usage != DMABUF_RESV_USAGE_WRITE)
		return -EINVAL;
	ret = dmabuf_sync_file_import(req->fds[0], &fence);
	if (ret < 0)
		return ret;
	ret = dmabuf_resv_add_fence(imp->imp.buf->resv, fence,
				    (enum dmabuf_resv_usage)req->u.fence_attach.usage);
	dmabuf_fence_put(fence);
	return ret;
}

static int do_fence_export(struct dmb_peer *peer, struct dmb_handle *imp,
			   const struct dmb_msg *req, struct dmb_msg *reply)
{
	int fd;

	fd = dmb_buf_export_sync_file_locked(imp->imp.buf, req->u.fence_export.flags);
	if (fd < 0)
		return fd;
	reply->fds[0] = fd;
	reply->nfds = 1;
	return 0;
}

/* As dmabuf_pin() on the exporter's side: only a DYNAMIC attachment pins
 * (dma_buf_pin()'s WARN_ON), a revoked buffer is -ENODEV, and the
 * exporter's pin op decides. A pinned buffer refuses moves (-EBUSY). */
static int do_pin(struct dmb_peer *peer, struct dmb_handle *ah,
		  const struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmabuf_attachment *att = ah->att.att;

	if (ah->att.err)
		return ah->att.err; /* a one-way ATTACH or MAP that failed */
	if (!att->importer_ops) {
		dmb_info(peer->ctx, "peer pid %d: PIN of a static attachment (only a dynamic importer pins)",
			 (int)peer->pid);
		return -EINVAL;
	}
	if (att->buf->revoked)
		return -ENODEV;
	return peer_pin(att);
}

/* One-way (dma_buf_unpin() returns void): an UNPIN without a PIN of that
 * attachment is refused and logged, never taken from another's pins. */
static int do_unpin(struct dmb_peer *peer, struct dmb_handle *ah,
		    const struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmabuf_attachment *att = ah->att.att;

	if (!att || !att->importer_ops || !att->pins) {
		dmb_info(peer->ctx, "peer pid %d: UNPIN without a pin of its attachment",
			 (int)peer->pid);
		return -EINVAL;
	}
	peer_unpin(att);
	return 0;
}

static int do_cache_open(struct dmb_peer *peer, struct dmb_handle *unused,
			 const struct dmb_msg *req, struct dmb_msg *reply)
{
	int ret, fd;

	if (peer->version < DMB_WIRE_VERSION_MAP_CACHE)
		return -EOPNOTSUPP;
	ret = dmb_map_state_open(peer, req->fds[0], &fd);
	if (ret < 0)
		return ret;
	reply->fds[0] = fd;
	reply->nfds = 1;
	return 0;
}

typedef int (*dmb_serve_fn)(struct dmb_peer *peer, struct dmb_handle *target,
			    const struct dmb_msg *req, struct dmb_msg *reply);

/* The handler of each request opcode. HELLO is the connection's own
 * business (peer_handle_one()); a request the descriptor marks reserved
 * would have none and be answered -EOPNOTSUPP. */
static const dmb_serve_fn serve[DMB_OP__LAST_REQUEST + 1] = {
	[DMB_OP_IMPORT] = do_import,
	[DMB_OP_RELEASE] = do_release,
	[DMB_OP_ATTACH] = do_attach,
	[DMB_OP_DETACH] = do_detach,
	[DMB_OP_MAP] = do_map,
	[DMB_OP_UNMAP] = do_unmap,
	[DMB_OP_BEGIN_CPU_ACCESS] = do_begin_cpu_access,
	[DMB_OP_END_CPU_ACCESS] = do_end_cpu_access,
	[DMB_OP_SET_NAME] = do_set_name,
	[DMB_OP_DESCRIBE] = do_describe,
	[DMB_OP_FENCE_ATTACH] = do_fence_attach,
	[DMB_OP_FENCE_EXPORT] = do_fence_export,
	[DMB_OP_GET_BACKING] = do_get_backing,
	[DMB_OP_PIN] = do_pin,
	[DMB_OP_UNPIN] = do_unpin,
	[DMB_OP_CACHE_OPEN] = do_cache_open,
};

/* Looks up what the request names (its descriptor says which id, of which
 * kind: another kind's id, or a stale one, is -ENOENT), then runs the
 * opcode's handler. */
static int handle_request(struct dmb_peer *peer, const struct dmb_msg *req,
			  struct dmb_msg *reply)
{
	const struct dmb_wire_desc *d = dmb_wire_op_desc(req->op);
	struct dmb_handle *target = NULL;

	if (!d || d->kind != DMB_WIRE_REQUEST || d->reserved ||
	    req->op > DMB_OP__LAST_REQUEST || !serve[req->op])
		return -EOPNOTSUPP;
	if (d->target != DMB_WIRE_TARGET_NONE) {
		target = handle_find(peer, dmb_wire_target_id(req),
				     (enum dmb_handle_type)d->target);
		/* A one-way MAP's map has returned already: of nothing, it
		 * is a protocol error (version 7). */
		if (!target && req->op == DMB_OP_MAP && (req->flags & DMB_WIRE_F_NO_REPLY)) {
			dmb_warn(peer->ctx, "peer pid %d: one-way MAP of an attachment it does not have",
				 (int)peer->pid);
			return -EPROTO;
		}
		if (!target)
			return -ENOENT;
	}
	return serve[req->op](peer, target, req, reply);
}

/* ---- connection handling ------------------------------------------------- */

/* Sends a message; a peer that does not read (full socket) is dropped
 * rather than waited for. */
static int peer_send(struct dmb_peer *peer, struct dmb_msg *msg)
{
	uint8_t buf[DMB_WIRE_MAX_MSG];
	int len = dmb_wire_encode(buf, sizeof(buf), msg);

	if (len < 0) {
		dmb_err(peer->ctx, "cannot encode %s for peer pid %d: %d",
			dmb_wire_op_name(msg->op), (int)peer->pid, len);
		return len;
	}
	dmb_wire_trace("exporter", peer->trace_name, true, msg);
	return dmb_scm_send(peer->fd, buf, (size_t)len, msg->fds, msg->nfds);
}

static int peer_reply_error(struct dmb_peer *peer, const struct dmb_msg *req, int status)
{
	uint8_t buf[DMB_WIRE_MAX_MSG];
	int len = dmb_wire_encode_error(buf, sizeof(buf), req->op, req->serial, status);

	if (len < 0)
		return len;
	return dmb_scm_send(peer->fd, buf, (size_t)len, NULL, 0);
}

/*
 * Takes the peer's next packet: the first one kept from the last read, else
 * from the socket. @ahead: read up to that many packets more in the same
 * call, keeping them in peer->next; *drained is then set when the socket
 * had no more (the read returned fewer than asked, and the packet returned
 * is the last of them), so the caller need not read again only to find it
 * empty.
 */
static ssize_t peer_recv_packet(struct dmb_peer *peer, uint8_t *buf, int *fds,
				size_t *nfds, bool *lost, unsigned int ahead,
				bool *drained);

/* The next message of the packet peer->rest holds. */
static ssize_t rest_take(struct dmb_peer *peer, uint8_t *buf, int *fds,
			 size_t *nfds, bool *lost, bool *drained)
{
	const struct dmb_wire_part *part = &peer->rest.part[peer->rest.first++];

	peer->rest.count--;
	memcpy(buf, peer->rest_buf + part->off, part->len);
	for (size_t i = 0; i < DMB_WIRE_MAX_FDS; i++)
		fds[i] = -1;
	*nfds = 0;
	*lost = peer->rest.lost && part->nfds;
	if (!peer->rest.lost) {
		for (size_t i = 0; i < part->nfds; i++) {
			fds[i] = peer->rest.fds[part->fd_first + i];
			peer->rest.fds[part->fd_first + i] = -1;
		}
		*nfds = part->nfds;
	}
	*drained = !peer->rest.count && peer->rest.drained;
	return part->len;
}

/*
 * Takes the peer's next message: one of the packet being split, else the
 * first of the next packet (peer_recv_packet()). From version 5 a packet
 * may hold several (dmb_wire_split()): the first is returned, the others
 * kept in peer->rest. A packet that does not split is a protocol error,
 * with every fd it brought closed.
 */
static ssize_t peer_recv(struct dmb_peer *peer, uint8_t *buf, int *fds,
			 size_t *nfds, bool *lost, unsigned int ahead, bool *drained)
{
	struct dmb_wire_part part[DMB_WIRE_MAX_PACKED];
	ssize_t len;
	int n;

	if (peer->rest.count)
		return rest_take(peer, buf, fds, nfds, lost, drained);
	len = peer_recv_packet(peer, buf, fds, nfds, lost, ahead, drained);
	if (len < DMB_WIRE_HDR_SIZE || !peer->hello_done ||
	    peer->version < DMB_WIRE_VERSION_PACKED ||
	    dmb_wire_get32(buf + DMB_WIRE_HDR_LENGTH) >= (uint64_t)len)
		return len; /* one message (or none): decoded as it is */
	n = dmb_wire_split(buf, (size_t)len, *nfds, !*lost, part, DMB_WIRE_MAX_PACKED);
	if (n < 0) {
		dmb_scm_close_fds(fds, *nfds);
		*nfds = 0;
		dmb_warn(peer->ctx, "peer pid %d sent a packet that does not split into messages",
			 (int)peer->pid);
		return n;
	}
	memcpy(peer->rest_buf, buf, (size_t)len);
	memcpy(peer->rest.part, part, (size_t)n * sizeof(part[0]));
	for (size_t i = 0; i < DMB_WIRE_MAX_FDS; i++)
		peer->rest.fds[i] = i < *nfds ? fds[i] : -1;
	peer->rest.first = 0;
	peer->rest.count = (unsigned int)n;
	peer->rest.lost = *lost;
	peer->rest.drained = *drained;
	return rest_take(peer, buf, fds, nfds, lost, drained);
}

/* Takes the peer's next packet (see peer_recv()). */
static ssize_t peer_recv_packet(struct dmb_peer *peer, uint8_t *buf, int *fds,
				size_t *nfds, bool *lost, unsigned int ahead,
				bool *drained)
{
	struct dmb_scm_pkt pkt[1 + DMB_PEER_READ_AHEAD] = {
		{ .data = buf, .cap = DMB_WIRE_MAX_MSG, .fds = fds,
		  .max_fds = DMB_WIRE_MAX_FDS },
	};
	int n;

	*drained = false;
	if (peer->next.count) {
		unsigned int k = peer->next.first++;

		peer->next.count--;
		memcpy(buf, peer->next.pkt[k].buf,
		       peer->next.pkt[k].len > 0 ? (size_t)peer->next.pkt[k].len : 0);
		memcpy(fds, peer->next.pkt[k].fds, sizeof(peer->next.pkt[k].fds));
		*nfds = peer->next.pkt[k].nfds;
		*lost = peer->next.pkt[k].lost;
		*drained = !peer->next.count && peer->next.drained;
		return peer->next.pkt[k].len;
	}
	if (ahead > DMB_PEER_READ_AHEAD)
		ahead = DMB_PEER_READ_AHEAD;
	for (unsigned int i = 0; i < ahead; i++)
		pkt[1 + i] = (struct dmb_scm_pkt){
			.data = peer->next.pkt[i].buf, .cap = DMB_WIRE_MAX_MSG,
			.fds = peer->next.pkt[i].fds, .max_fds = DMB_WIRE_MAX_FDS };
	n = dmb_scm_recv_many(peer->fd, pkt, 1 + ahead, 0);
	if (n < 0)
		return n;
	peer->next.first = 0;
	peer->next.count = (unsigned int)n - 1;
	peer->next.drained = ahead && (unsigned int)n < 1 + ahead;
	for (int i = 1; i < n; i++) {
		peer->next.pkt[i - 1].len = pkt[i].len;
		peer->next.pkt[i - 1].nfds = pkt[i].nfds;
		peer->next.pkt[i - 1].lost = pkt[i].lost;
	}
	*drained = !peer->next.count && peer->next.drained;
	*nfds = pkt[0].nfds;
	*lost = pkt[0].lost;
	return pkt[0].len;
}

/* Handles one message (@ahead, *drained: see peer_recv()). Returns 0 to go
 * on, -EAGAIN when nothing is left to read, or another negative errno to
 * drop the peer. */
static int peer_handle_one(struct dmb_peer *peer, unsigned int ahead, bool *drained)
{
	struct dmabuf_ctx *ctx = peer->ctx;
	uint8_t buf[DMB_WIRE_MAX_MSG];
	int fds[DMB_WIRE_MAX_FDS];
	struct dmb_msg req, reply;
	size_t nfds = 0;
	bool lost;
	ssize_t len;
	int ret, status;

	len = peer_recv(peer, buf, fds, &nfds, &lost, ahead, drained);
	if (len < 0)
		return (int)len; /* fds already closed */
	if (lost) {
		/* This process is at RLIMIT_NOFILE and the request's fds were
		 * dropped by the kernel: the peer did nothing wrong. Fail that
		 * one request, as a local call short of fds would, and keep
		 * the peer and everything it holds. */
		ret = dmb_wire_decode_fdless(buf, (size_t)len, DMB_WIRE_SERVER, &req);
		if (ret == 0 && peer->hello_done && req.version == peer->version) {
			dmb_warn(ctx, "peer pid %d: no free fd for %s (RLIMIT_NOFILE): answering -EMFILE",
				 (int)peer->pid, dmb_wire_op_name(req.op));
			ret = peer_reply_error(peer, &req, -EMFILE);
			return ret == -EAGAIN ? -EPIPE : ret;
		}
		if (ret == 0)
			ret = -EPROTO;
	} else {
		ret = dmb_wire_decode(buf, (size_t)len, fds, nfds, DMB_WIRE_SERVER, &req);
	}
	if (ret < 0) {
		dmb_scm_close_fds(fds, nfds);
		dmb_warn(ctx, "peer pid %d sent a malformed message (%d)", (int)peer->pid, ret);
		/* An unknown request of a newer client gets an answer. */
		if (ret == -EOPNOTSUPP && peer->hello_done && req.serial &&
		    peer_reply_error(peer, &req, -EOPNOTSUPP) == 0)
			return 0;
		return -EPROTO;
	}
	dmb_wire_trace("exporter", peer->trace_name, false, &req);
	if (!peer->hello_done ? req.op != DMB_OP_HELLO
			      : req.op == DMB_OP_HELLO || req.version != peer->version) {
		dmb_scm_close_fds(fds, nfds);
		dmb_warn(ctx, "peer pid %d: %s out of sequence", (int)peer->pid,
			 dmb_wire_op_name(req.op));
		return -EPROTO;
	}

	memset(&reply, 0, DMB_WIRE_MSG_FIXED); /* sg records: up to count */
	reply.op = req.op | DMB_WIRE_OP_REPLY; /* answered by its reply opcode */
	reply.serial = req.serial;
	if (req.op == DMB_OP_HELLO) {
		ret = dmb_wire_negotiate(req.u.hello.min_version, req.u.hello.max_version);
		/* Version 4 trusts the marks of this process's memfds; with
		 * vm.memfd_noexec = 2 here (per pid namespace: the peer's
		 * may be lower) every memfd carries one, so a buffer with an
		 * attach op would have its ATTACH answered by the importer. */
		if (ret >= DMB_WIRE_VERSION_ONE_WAY_ATTACH &&
		    req.u.hello.min_version < DMB_WIRE_VERSION_ONE_WAY_ATTACH &&
		    !dmb_memfd_marks_trusted())
			ret = DMB_WIRE_VERSION_ONE_WAY_ATTACH - 1;
		if (ret < 0) {
			peer_reply_error(peer, &req, ret);
			return ret;
		}
		if (ctx->endpoint->npeers >= DMB_ENDPOINT_MAX_PEERS) {
			dmb_warn(ctx, "refusing peer pid %d: %u peers already", (int)peer->pid,
				 DMB_ENDPOINT_MAX_PEERS);
			peer_reply_error(peer, &req, -EUSERS);
			return -EUSERS;
		}
		peer->version = (uint16_t)ret;
		peer->hello_done = true;
		ctx->endpoint->npending--;
		ctx->endpoint->npeers++;
		reply.version = DMB_WIRE_VERSION_BASE;
		reply.u.hello_reply = (struct dmb_wire_hello_reply){
			.version = peer->version,
			.max_msg = DMB_WIRE_MAX_MSG,
			.max_fds = DMB_WIRE_MAX_FDS,
			.max_buffers = DMB_PEER_MAX_IMPORTS,
			.max_attachments = DMB_PEER_MAX_ATTACHMENTS,
			.max_mappings = DMB_PEER_MAX_MAPPINGS,
			.pid = (uint32_t)ctx->endpoint->pid,
		};
		status = 0;
	} else {
		reply.version = peer->version;
		status = handle_request(peer, &req, &reply);
	}
	/* The request's fds were only looked at: the peer keeps its own. */
	dmb_scm_close_fds(fds, nfds);
	if (peer->violation) {
		dmb_scm_close_fds(reply.fds, reply.nfds);
		return -EPROTO;
	}
	/* A handler's 1: success, and nothing a QUIET request needs to hear. */
	if (status == 1) {
		status = 0;
		if (req.flags & DMB_WIRE_F_QUIET)
			return 0;
	}
	if (req.flags & DMB_WIRE_F_NO_REPLY) {
		/* Nobody waits for it (unmap, detach, put return void; an
		 * attach whose answer the client knew). */
		dmb_scm_close_fds(reply.fds, reply.nfds);
		if (status == -EPROTO)
			return -EPROTO; /* a one-way ATTACH it may not send */
		if (status < 0)
			dmb_warn(ctx, "peer pid %d: %s failed (%d), not answered: it asked for no reply",
				 (int)peer->pid, dmb_wire_op_name(req.op), status);
		return 0;
	}
	if (status < 0) {
		dmb_scm_close_fds(reply.fds, reply.nfds);
		ret = peer_reply_error(peer, &req, status);
	} else {
		reply.status = 0;
		ret = peer_send(peer, &reply);
		dmb_scm_close_fds(reply.fds, reply.nfds);
	}
	if (ret == -EAGAIN) {
		dmb_warn(ctx, "peer pid %d does not read its replies: dropping it", (int)peer->pid);
		return -EPIPE;
	}
	return ret;
}

static void peer_ready(struct dmb_source *src, uint32_t events)
{
	struct dmb_peer *peer = src->data;
	int ret = 0;

	if (peer->doomed)
		return; /* an outer frame of this peer frees it */
	if ((events & EPOLLOUT) && peer->notifies_pending)
		notify_flush(peer);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	peer->depth++;
	for (unsigned int i = 0; i < DMB_PEER_BATCH && !peer->doomed; i++) {
		/* Up to four packets per read, so a read that finds fewer
		 * says the socket is empty (no read that only returns
		 * EAGAIN). Not in a nested frame, and never past the batch's
		 * end: the kept ones must be handled before this frame
		 * returns. */
		unsigned int room = DMB_PEER_BATCH - i - 1;
		bool drained;

		ret = peer_handle_one(peer, peer->depth == 1 ? room : 0, &drained);
		if (ret < 0 || drained)
			break;
	}
	/* A packet of several messages took more than one turn each: what
	 * it, and the packets read with it, left is handled before this
	 * frame returns (the socket may be empty: no event would come). */
	while (ret == 0 && !peer->doomed && (peer->rest.count || peer->next.count)) {
		bool drained;

		ret = peer_handle_one(peer, 0, &drained);
	}
	peer->depth--;
	if (ret == -EAGAIN || ret == 0) {
		if (peer->doomed && !peer->depth)
			peer_destroy(peer, "connection closed");
		return; /* more next round, or nothing left */
	}
	peer_destroy(peer, ret == -ECONNRESET ? "connection closed" : "protocol error");
}

/*
 * Closes the oldest connection that has not said HELLO, after reading what
 * it sent (a HELLO that is already there makes it a peer, not a victim).
 * Returns true when one was closed.
 */
static bool evict_oldest_pending(struct dmabuf_ctx *ctx, const char *why)
{
	struct dmb_endpoint *ep = ctx->endpoint;

	for (;;) {
		struct dmb_peer *p, *oldest = NULL;
		int ret;

		LIST_FOREACH(p, &ep->peers, link)
			if (!p->hello_done && !p->doomed && (!oldest || p->seq < oldest->seq))
				oldest = p;
		if (!oldest)
			return false;
		bool drained;

		ret = peer_handle_one(oldest, false, &drained);
		if (ret == 0 && oldest->hello_done)
			continue; /* it spoke in time: look at the next */
		dmb_info(ctx, "closing a connection of pid %d that said nothing (%s)",
			 (int)oldest->pid, why);
		peer_destroy(oldest, why);
		return true;
	}
}

static void accept_pause(struct dmabuf_ctx *ctx, int err)
{
	struct dmb_endpoint *ep = ctx->endpoint;
	struct itimerspec its = { .it_value.tv_nsec = DMB_ENDPOINT_RETRY_MS * 1000000L };

	if (ep->paused)
		return;
	dmb_warn(ctx, "endpoint %s cannot take a new connection (%d): not accepting for %d ms or until a peer goes",
		 ep->name, err, DMB_ENDPOINT_RETRY_MS);
	ep->paused = true;
	dmb_source_mod(ctx, &ep->src, 0);
	timerfd_settime(ep->retry_fd, 0, &its, NULL);
}

static void accept_resume(struct dmabuf_ctx *ctx)
{
	struct dmb_endpoint *ep = ctx->endpoint;
	struct itimerspec off = { 0 };

	if (!ep || !ep->paused)
		return;
	ep->paused = false;
	timerfd_settime(ep->retry_fd, 0, &off, NULL);
	dmb_source_mod(ctx, &ep->src, EPOLLIN);
}

static void accept_retry(struct dmb_source *src, uint32_t events)
{
	struct dmabuf_ctx *ctx = src->data;
	uint64_t n;

	if (read(ctx->endpoint->retry_fd, &n, sizeof(n)) < 0) {
		/* not expired, or already read: nothing to do */
	}
	accept_resume(ctx);
}

/*
 * Takes one connection per event, and reads it at once: the importer sends
 * HELLO right after connect(), so it is usually there already, and then
 * the accept and the HELLO are one wake-up of this process (when it is
 * not, that read's EAGAIN stands for the accept4() that would have found
 * the backlog empty). A further connection keeps the listening socket
 * readable (level-triggered): the next round of the loop takes it.
 */
static void peer_accept(struct dmb_source *src, uint32_t events)
{
	struct dmabuf_ctx *ctx = src->data;
	struct dmb_endpoint *ep = ctx->endpoint;
	struct dmb_peer *peer;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	int fd;

	for (;;) {
		fd = accept4(ep->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			int err = errno;

			if (err == EINTR || err == ECONNABORTED)
				continue;
			if (err == EAGAIN || err == EWOULDBLOCK)
				return;
			/* No fd (or memory) for it: a connection that never
			 * spoke gives its fd up, else the socket rests. It
			 * stays readable, so polling it again at once would
			 * spin. */
			if ((err == EMFILE || err == ENFILE) &&
			    evict_oldest_pending(ctx, "no fd for a new connection"))
				continue;
			accept_pause(ctx, -err);
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
			close(fd);
			continue;
		}
		if (!(ctx->config.flags & DMABUF_CTX_ANY_UID) && cred.uid != ep->uid) {
			dmb_warn(ctx, "refusing peer pid %d: uid %u is not ours",
				 (int)cred.pid, (unsigned int)cred.uid);
			close(fd);
			continue;
		}
		if (ep->npending >= DMB_ENDPOINT_MAX_PENDING)
			evict_oldest_pending(ctx, "too many unfinished handshakes");
		/* pkt is written before it is read (peer_recv()). */
		peer = malloc(sizeof(*peer));
		if (!peer) {
			close(fd);
			continue;
		}
		memset(peer, 0, offsetof(struct dmb_peer, next.pkt));
		for (size_t i = 0; i < DMB_WIRE_MAX_FDS; i++)
			peer->rest.fds[i] = -1;
		peer->ctx = ctx;
		peer->fd = fd;
		peer->pid = cred.pid;
		snprintf(peer->trace_name, sizeof(peer->trace_name), "pid %d", (int)cred.pid);
		peer->uid = cred.uid;
		peer->seq = ++ep->next_seq;
		RB_INIT(&peer->handles);
		LIST_INIT(&peer->imports);
		if (dmb_source_add(ctx, &peer->src, fd, EPOLLIN, peer_ready, peer) < 0) {
			close(fd);
			free(peer);
			continue;
		}
		LIST_INSERT_HEAD(&ep->peers, peer, link);
		ep->npending++;
		dmb_dbg(ctx, "peer pid %d connected", (int)cred.pid);
		peer_ready(&peer->src, EPOLLIN);
		return;
	}
}
