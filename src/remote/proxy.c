/* SPDX-License-Identifier: MIT */
/*
 * Proxies: the importer's struct dmabuf for a buffer another context
 * exported. Its ops table forwards every device-side operation to the
 * exporter over the connection, so the public API runs the same code for
 * local and imported buffers: attach, map (the exporter's page list, then
 * device addresses assigned here, where the device lives), unmap, detach,
 * pin and unpin of dynamic attachments, CPU access brackets and release.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bsd/string.h>

#include "dmabuf-fence.h"
#include "remote.h"
#include "scm.h"

struct dmb_proxy {
	struct dmb_conn *conn;
	uint64_t id; /* the exporter's import id */
	/* A pipelined IMPORT (version 3) whose reply has not come yet, and
	 * the exporter's answer once it came: a failure (say -EINVAL, the
	 * fd is none of its buffers) is what every later call answers. */
	struct dmb_pending_import *pending;
	int import_err;
	/* The exporter has no attach or pin op (its memfd says so:
	 * dmb_memfd_attach_known()): its side of an attach cannot refuse what this side
	 * checked, so ATTACH may go one-way (docs/protocol.md §6 item 4b). */
	bool attach_known;
	/* Version 7 (mapcache.c): the exporter's slot of the buffer + 1 (0:
	 * none given yet), and, made at the first table a MAP_REPLY lets this
	 * side keep (most proxies are never mapped), per direction the last
	 * such table with the slot's number it holds for (sg NULL: none). */
	uint32_t cache_slot1;
	struct dmb_proxy_cache {
		struct dmabuf_sg_entry *sg;
		uint32_t count;
		uint32_t seq;
	} *cache;
	/* Version 8 (prepub.c): the generation of the published entry the
	 * slot came from, until the first MAP that names it is sent. */
	uint32_t pub;
};

static struct dmb_proxy *proxy_of(struct dmabuf *buf)
{
	return buf->priv;
}

/*
 * A call about this buffer. After a pipelined IMPORT that failed, its
 * answer came before this call's (replies come in request order): the call
 * fails with the import's errno, the one the unpipelined dmabuf_get()
 * gave, and the exporter's own answer (-ENOENT: no such import) is dropped.
 */
static int proxy_call(struct dmb_proxy *px, struct dmb_msg *req, struct dmb_msg *reply)
{
	const struct dmb_wire_desc *d = dmb_wire_op_desc(req->op);
	uint64_t id = px->id;
	int ret;

	if (px->import_err)
		return px->import_err;
	/* The handshake's answer first: an IMPORT held back on the guess of
	 * version 3 is re-sent to an older exporter, which gives it its own
	 * id, the one this request must name. */
	ret = dmb_conn_ready(px->conn);
	if (ret < 0)
		return ret;
	if (px->import_err)
		return px->import_err;
	if (px->id != id && d && d->target == DMB_WIRE_TARGET_BUFFER &&
	    dmb_wire_target_id(req) == id)
		memcpy((uint8_t *)req + d->target_off, &px->id, sizeof(px->id));
	ret = dmb_conn_call(px->conn, req, reply);
	if (px->import_err) {
		if (ret == 0)
			dmb_scm_close_fds(reply->fds, reply->nfds);
		return px->import_err;
	}
	return ret;
}

static void proxy_detach(struct dmabuf *buf, struct dmabuf_attachment *att);

/*
 * Whether an ATTACH may go without waiting (version 4): the exporter's
 * answer is known here. Its attach can fail only for what the core checked
 * on this side already (the device, the importer ops) when it has no
 * attach op and no pin op; what is left is its state (a revoked buffer:
 * -ENODEV) and its memory, which the first MAP of the attachment reports.
 * A forged mark (only possible on a memfd of the forger's own) only costs
 * its forger: the exporter still checks, and the MAP says what it found.
 * Only to another process (one in this process answers at no
 * cross-process cost), after a handshake that agreed version 4, and far
 * below the exporter's attachment limit (so its -ENOSPC is never the
 * answer).
 */
static bool attach_may_go_one_way(const struct dmb_proxy *px)
{
	const struct dmb_conn *conn = px->conn;

	return px->attach_known && !px->import_err && !conn->dead &&
	       !conn->hello_pending && !conn->exporter_is_us &&
	       conn->version >= DMB_WIRE_VERSION_ONE_WAY_ATTACH &&
	       conn->nattachments < conn->limits.max_attachments / 2;
}

static int proxy_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	struct dmb_proxy *px = proxy_of(buf);
	const struct dmabuf_device_info *di = &att->dev->info;
	struct dmb_msg req, reply;
	int ret;

	/* Whether it may go one-way depends on the version agreed. */
	if (px->attach_known && !px->import_err && (ret = dmb_conn_ready(px->conn)) < 0)
		return ret;

	dmb_wire_msg_init(&req, DMB_OP_ATTACH, px->id);
	strlcpy(req.u.attach.name, att->dev->name, sizeof(req.u.attach.name));
	req.u.attach.dma_mask_bits = di->dma_mask_bits;
	req.u.attach.dev_flags = di->flags;
	req.u.attach.max_segment_size = di->max_segment_size;
	req.u.attach.segment_boundary = di->segment_boundary;
	req.u.attach.alignment = di->alignment;
	if (att->importer_ops)
		req.u.attach.attach_flags = DMB_WIRE_ATTACH_DYNAMIC;
	if (attach_may_go_one_way(px)) {
		/* Held back until the connection's next request (the MAP),
		 * which carries it; the attachment is named by its serial. */
		ret = dmb_conn_send_void(px->conn, &req);
		if (ret < 0)
			return ret;
		att->remote_id = DMB_WIRE_ONE_WAY_ATT_ID(req.serial);
	} else {
		ret = proxy_call(px, &req, &reply);
		if (ret < 0)
			return ret;
		att->remote_id = reply.u.attach_reply.attachment_id;
	}
	px->conn->nattachments++;
	/* A dynamic importer hears of moves between its calls too. */
	if (att->importer_ops && (ret = dmb_conn_watch(px->conn)) < 0) {
		proxy_detach(buf, att);
		return ret;
	}
	return 0;
}

static void proxy_detach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	struct dmb_msg req;

	/* A dead exporter took its side with it: nothing to undo there.
	 * dma_buf_detach() returns void: nothing to wait for. */
	dmb_wire_msg_init(&req, DMB_OP_DETACH, att->remote_id);
	proxy_of(buf)->conn->nattachments--;
	dmb_conn_send_void(proxy_of(buf)->conn, &req);
}

static int sgt_from(const struct dmabuf_sg_entry *sg, uint32_t count,
		    struct dmabuf_sg_table **out)
{
	struct dmabuf_sg_table *sgt;
	int ret = dmb_sgt_new(&sgt);

	for (uint32_t i = 0; ret == 0 && i < count; i++)
		ret = dmb_sgt_append(sgt, sg[i].offset, sg[i].length, sg[i].phys);
	if (ret < 0 && sgt)
		dmb_sgt_free(sgt);
	if (ret == 0)
		*out = sgt;
	return ret;
}

/* A MAP_REPLY that says the table may be cached (version 7): kept for the
 * next MAP of this direction. A failure to keep it only costs that MAP
 * its round trip. */
static void cache_fill(struct dmb_proxy *px, const struct dmb_wire_map_reply *r,
		       const struct dmabuf_sg_entry *sg, enum dmabuf_direction dir)
{
	struct dmabuf_sg_entry *copy;

	if (!(r->flags & DMB_WIRE_MAP_CACHE) ||
	    (px->cache_slot1 && px->cache_slot1 != r->slot + 1))
		return;
	px->cache_slot1 = r->slot + 1;
	if (!px->cache && !(px->cache = calloc(3, sizeof(*px->cache))))
		return;
	copy = malloc(r->count * sizeof(*copy));
	if (!copy)
		return;
	memcpy(copy, sg, r->count * sizeof(*copy));
	free(px->cache[dir].sg);
	px->cache[dir].sg = copy;
	px->cache[dir].count = r->count;
	px->cache[dir].seq = r->seq;
}

/*
 * Whether a MAP may be counted in the connection's page (version 7,
 * mapcache.c): a static attachment of a buffer the exporter gave a slot,
 * to another process.
 */
static bool map_announces(const struct dmb_proxy *px, const struct dmabuf_attachment *att)
{
	return !att->importer_ops && px->cache_slot1 && px->conn->cache_state > 0 &&
	       !px->conn->dead && !px->import_err;
}

/* An announced MAP whose slot came from a published entry names it (the
 * first such MAP sent: the exporter's import takes the slot there). */
static void map_claim(struct dmb_proxy *px, struct dmb_msg *req)
{
	if (px->pub) {
		req->u.map.flags |= DMB_WIRE_MAP_PREPUB;
		req->u.map.pub = px->pub;
		px->pub = 0;
	}
}

/*
 * A new buffer's first MAP (version 8, prepub.c): the table the exporter
 * published for this buffer and direction, with its slot, kept as a
 * MAP_REPLY's would be; the MAP then goes as a cached one. Nothing
 * published (or no memory to keep it): the round trip.
 */
static void map_take_published(struct dmb_proxy *px, const struct dmabuf *buf,
			       enum dmabuf_direction dir)
{
	struct dmabuf_sg_entry *sg;
	uint32_t slot, seq, gen, count;

	if (!px->cache && !(px->cache = calloc(3, sizeof(*px->cache))))
		return;
	if (!dmb_conn_prepub_take(px->conn, buf, dir, &slot, &seq, &gen, &sg, &count))
		return;
	px->cache_slot1 = slot + 1;
	px->pub = gen;
	free(px->cache[dir].sg);
	px->cache[dir].sg = sg;
	px->cache[dir].count = count;
	px->cache[dir].seq = seq;
}

/*
 * The MAP answered from the cached table: counted, then the exporter's
 * number read (mapcache.c); the same number as the table's means nothing
 * that changes the answer happened since (a migration that would have
 * could not go ahead without seeing the count), so the MAP goes one-way,
 * named after its serial. Only far below the exporter's mapping limit, so
 * its -ENOSPC is never the answer. Returns 1 when the round trip must be
 * asked (the MAP is counted already, so it goes ANNOUNCED).
 */
static int map_cached(struct dmb_proxy *px, struct dmabuf_attachment *att,
		      enum dmabuf_direction dir, struct dmabuf_sg_table **out)
{
	struct dmb_conn *conn = px->conn;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmb_msg req;
	uint32_t slot = px->cache_slot1 - 1, seq;
	bool room;
	int ret;

	if (px->cache && px->cache[dir].sg && conn->nmappings < conn->limits.max_mappings / 2) {
		ret = sgt_from(px->cache[dir].sg, px->cache[dir].count, &sgt);
		if (ret < 0)
			return ret; /* before anything is counted or sent */
	}
	seq = dmb_conn_cache_announce(conn, slot, &room);
	if (!sgt || seq != px->cache[dir].seq || !room) {
		if (sgt)
			dmb_sgt_free(sgt);
		return 1;
	}
	dmb_wire_msg_init(&req, DMB_OP_MAP, att->remote_id);
	req.u.map.dir = (uint32_t)dir;
	req.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
	req.u.map.seq = seq;
	map_claim(px, &req);
	ret = dmb_conn_send_only(conn, &req);
	if (ret < 0) {
		dmb_sgt_free(sgt);
		return ret;
	}
	sgt->remote_id = DMB_WIRE_ONE_WAY_ATT_ID(req.serial);
	conn->nmappings++;
	*out = sgt;
	return 0;
}

static int proxy_map(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		     struct dmabuf_sg_table **out)
{
	struct dmb_proxy *px = proxy_of(att->buf);
	struct dmb_conn *conn = px->conn;
	struct dmb_msg req, reply, unmap;
	struct dmabuf_sg_entry *entries = NULL;
	const struct dmabuf_sg_entry *sg;
	struct dmabuf_sg_table *sgt = NULL;
	bool announced = false;
	int ret;

	/* Version 7: the pages, once per connection, at the first MAP of a
	 * static attachment (the handshake's answer decides). */
	if (!att->importer_ops && !conn->cache_state && !px->import_err &&
	    dmb_conn_ready(conn) == 0) {
		if (conn->version >= DMB_WIRE_VERSION_MAP_CACHE && !conn->exporter_is_us)
			dmb_conn_cache_open(conn);
		else
			conn->cache_state = -1;
	}
	if (!px->cache_slot1 && !att->importer_ops && conn->cache_state > 0 && !px->import_err)
		map_take_published(px, att->buf, dir);
	if (map_announces(px, att)) {
		ret = map_cached(px, att, dir, out);
		if (ret <= 0)
			return ret;
		announced = true;
	}
	dmb_wire_msg_init(&req, DMB_OP_MAP, att->remote_id);
	req.u.map.dir = (uint32_t)dir;
	if (announced) {
		req.u.map.flags = DMB_WIRE_MAP_ANNOUNCED;
		map_claim(px, &req);
	}
	ret = proxy_call(px, &req, &reply);
	if (ret < 0)
		return ret;
	sg = reply.u.map_reply.sg;
	if (reply.u.map_reply.flags & DMB_WIRE_MAP_SG_MEMFD) {
		ret = dmb_scm_sg_memfd_read(reply.fds[0], reply.u.map_reply.count,
					    reply.u.map_reply.size, &entries);
		dmb_scm_close_fds(reply.fds, reply.nfds);
		sg = entries;
	}
	/* The table must cover exactly this buffer. */
	if (ret == 0 && reply.u.map_reply.size != att->buf->size)
		ret = -EPROTO;
	if (ret == 0)
		ret = sgt_from(sg, reply.u.map_reply.count, &sgt);
	if (ret == 0 && !att->importer_ops)
		cache_fill(px, &reply.u.map_reply, sg, dir);
	free(entries);
	if (ret < 0) {
		dmb_wire_msg_init(&unmap, DMB_OP_UNMAP, reply.u.map_reply.mapping_id);
		unmap.u.map.dir = (uint32_t)dir;
		dmb_conn_send_void(px->conn, &unmap);
		return ret;
	}
	sgt->remote_id = reply.u.map_reply.mapping_id;
	conn->nmappings++;
	*out = sgt;
	return 0;
}

static void proxy_unmap(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
			enum dmabuf_direction dir)
{
	struct dmb_msg req;

	/* dma_buf_unmap_attachment() returns void: the errors a caller can
	 * make were found by the core before this; nothing to wait for. */
	dmb_wire_msg_init(&req, DMB_OP_UNMAP, sgt->remote_id);
	req.u.map.dir = (uint32_t)dir;
	proxy_of(att->buf)->conn->nmappings--;
	dmb_conn_send_void(proxy_of(att->buf)->conn, &req);
	dmb_sgt_free(sgt);
}

/* dmabuf_pin() of a dynamic attachment (the core checked the importer's
 * side: dynamic, resv held): the exporter pins, with its own rules. */
static int proxy_pin(struct dmabuf_attachment *att)
{
	struct dmb_msg req, reply;

	dmb_wire_msg_init(&req, DMB_OP_PIN, att->remote_id);
	return dmb_conn_call(proxy_of(att->buf)->conn, &req, &reply);
}

static void proxy_unpin(struct dmabuf_attachment *att)
{
	struct dmb_msg req;

	/* dma_buf_unpin() returns void; the core counted the pin. A dead
	 * exporter took its pins with it. */
	dmb_wire_msg_init(&req, DMB_OP_UNPIN, att->remote_id);
	dmb_conn_send_void(proxy_of(att->buf)->conn, &req);
}

static void proxy_release(struct dmabuf *buf)
{
	struct dmb_proxy *px = proxy_of(buf);
	struct dmb_msg req;

	/* Nothing to learn from the answer: do not wait for it. An import
	 * the exporter refused holds nothing there. */
	if (px->pending && px->pending->queued) {
		/* Its IMPORT never left: the exporter has nothing to undo. */
		dmb_conn_unqueue(px->conn, px->pending);
		px->pending = NULL;
		px->import_err = -ENOENT;
	}
	if (px->pending)
		px->pending->buf = NULL;
	for (int d = 0; px->cache && d < 3; d++)
		free(px->cache[d].sg);
	free(px->cache);
	dmb_wire_msg_init(&req, DMB_OP_RELEASE, px->id);
	if (!px->import_err)
		dmb_conn_send_only(px->conn, &req);
	dmb_conn_put(px->conn);
	free(px);
}

static int cpu_call(struct dmabuf *buf, uint16_t op, enum dmabuf_direction dir)
{
	struct dmb_msg req, reply;

	dmb_wire_msg_init(&req, op, proxy_of(buf)->id);
	req.u.cpu_access.dir = (uint32_t)dir;
	return proxy_call(proxy_of(buf), &req, &reply);
}

static int proxy_begin_cpu_access(struct dmabuf *buf, enum dmabuf_direction dir)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	uint32_t flags = dir == DMABUF_FROM_DEVICE ? DMABUF_SYNC_READ
			 : dir == DMABUF_TO_DEVICE ? DMABUF_SYNC_WRITE : DMABUF_SYNC_RW;
	unsigned int limit = ctx->config.fence_timeout_ms ? ctx->config.fence_timeout_ms
			     : ctx->config.call_timeout_ms ? ctx->config.call_timeout_ms
			     : 30000;
	/* One deadline for the whole call: fence waits and retries. Each
	 * round trip is bounded by call_timeout_ms on its own. */
	int64_t deadline = dmb_now_ms() + limit;
	int ret, fd;

	/* The exporter never blocks on fences for a peer: wait for them here,
	 * then ask; if new ones came meanwhile (-EBUSY), wait again. */
	for (;;) {
		fd = dmb_proxy_export_sync_file(buf, flags);
		if (fd < 0)
			return fd;
		/* Serving meanwhile: the fence may be signalled by a request
		 * to this very process. */
		ret = dmb_wait_fd_serving(ctx, fd, deadline);
		close(fd);
		if (ret < 0)
			return ret;
		if (ret == 0)
			break; /* the fences did not signal in time */
		ret = cpu_call(buf, DMB_OP_BEGIN_CPU_ACCESS, dir);
		if (ret != -EBUSY)
			return ret;
		if (dmb_now_ms() >= deadline)
			break; /* the exporter keeps answering -EBUSY */
	}
	dmb_err(ctx, "begin_cpu_access(%s): the exporter's fences did not let it start within %u ms",
		buf->exp_name, limit);
	return -ETIMEDOUT;
}

static int proxy_end_cpu_access(struct dmabuf *buf, enum dmabuf_direction dir)
{
	return cpu_call(buf, DMB_OP_END_CPU_ACCESS, dir);
}

static int proxy_mmap(struct dmabuf *buf, uint64_t offset, uint64_t len, int prot)
{
	return 0; /* the importer holds the file: mapping it is its right */
}

static const struct dmabuf_ops proxy_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = proxy_attach,
	.detach = proxy_detach,
	.map = proxy_map,
	.unmap = proxy_unmap,
	.pin = proxy_pin,
	.unpin = proxy_unpin,
	.release = proxy_release,
	.begin_cpu_access = proxy_begin_cpu_access,
	.end_cpu_access = proxy_end_cpu_access,
	.mmap = proxy_mmap,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

int dmb_proxy_export_sync_file(struct dmabuf *buf, uint32_t flags)
{
	struct dmb_msg req, reply;
	int ret;

	dmb_wire_msg_init(&req, DMB_OP_FENCE_EXPORT, proxy_of(buf)->id);
	req.u.fence_export.flags = flags;
	ret = proxy_call(proxy_of(buf), &req, &reply);
	return ret < 0 ? ret : reply.fds[0];
}

int dmb_proxy_import_sync_file(struct dmabuf *buf, uint32_t flags, int fd)
{
	struct dmb_msg req, reply;
	struct dmabuf_fence *fence;
	int ret;

	/* Check it here, as the local call would, before it travels:
	 * dma_buf_import_sync_file() answers -EINVAL for any fd that is not
	 * a sync file, a bad one included. */
	ret = dmabuf_sync_file_import(fd, &fence);
	if (ret < 0)
		return ret == -EBADF ? -EINVAL : ret;
	dmabuf_fence_put(fence);
	dmb_wire_msg_init(&req, DMB_OP_FENCE_ATTACH, proxy_of(buf)->id);
	req.u.fence_attach.usage = flags & DMABUF_SYNC_WRITE ? DMABUF_RESV_USAGE_WRITE
							     : DMABUF_RESV_USAGE_READ;
	req.nfds = 1;
	req.fds[0] = fd;
	return proxy_call(proxy_of(buf), &req, &reply);
}

int dmb_proxy_describe(struct dmabuf *buf, struct dmabuf_info *info)
{
	struct dmb_msg req, reply;
	const struct dmb_wire_describe_reply *r = &reply.u.describe_reply;
	int ret;

	dmb_wire_msg_init(&req, DMB_OP_DESCRIBE, proxy_of(buf)->id);
	ret = proxy_call(proxy_of(buf), &req, &reply);
	if (ret < 0)
		return ret;
	/* The exporter's view: its attachments and mappings, all peers'. */
	info->attachments = r->attachments;
	info->mappings = r->mappings;
	info->vmap_count = r->vmap_count;
	info->backing_allocated = r->info_flags & DMB_WIRE_INFO_BACKING_ALLOCATED;
	info->contiguous = r->info_flags & DMB_WIRE_INFO_CONTIGUOUS;
	strlcpy(info->name, r->name, sizeof(info->name));
	info->name_set = r->info_flags & DMB_WIRE_INFO_NAME_SET;
	/* Remembered, for when the exporter is gone (a copy this side
	 * cannot allocate keeps the one it had). */
	(void)dmb_buf_set_name(buf, info->name_set ? r->name : NULL);
	return 0;
}

int dmb_proxy_set_name(struct dmabuf *buf, const char *name)
{
	struct dmb_msg req, reply;
	int ret;

	dmb_wire_msg_init(&req, DMB_OP_SET_NAME, proxy_of(buf)->id);
	strlcpy(req.u.set_name.name, name, sizeof(req.u.set_name.name));
	ret = proxy_call(proxy_of(buf), &req, &reply);
	if (ret == 0)
		(void)dmb_buf_set_name(buf, name); /* this side's copy */
	return ret;
}

int dmb_endpoint_of_fd(int fd, char *name, size_t cap)
{
	return dmb_names_of_fd(fd, name, cap, NULL, 0);
}

int dmb_names_of_fd(int fd, char *name, size_t cap, char *exp, size_t expcap)
{
	static const char prefix[] = "/memfd:dmabuf:", deleted[] = " (deleted)";
	char path[64], target[320];
	const char *at, *end;
	ssize_t len;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	len = readlink(path, target, sizeof(target) - 1);
	if (len < 0)
		return -EINVAL;
	target[len] = '\0';
	if (strncmp(target, prefix, sizeof(prefix) - 1))
		return -EINVAL;
	end = target + len;
	if ((size_t)len > sizeof(deleted) - 1 &&
	    !strcmp(end - (sizeof(deleted) - 1), deleted))
		end -= sizeof(deleted) - 1;
	at = memrchr(target, '@', (size_t)(end - target));
	if (!at || (size_t)(end - at - 1) >= cap || end - at - 1 < 8 ||
	    strncmp(at + 1, "dmabuf-", 7))
		return -EINVAL;
	for (const char *p = at + 1; p < end; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || *p == '-'))
			return -EINVAL;
	memcpy(name, at + 1, (size_t)(end - at - 1));
	name[end - at - 1] = '\0';
	if (exp) {
		/* "dmabuf:<exp_name>@<endpoint>" (dmb_buf_create()) */
		const char *e = target + sizeof(prefix) - 1;

		if ((size_t)(at - e) >= expcap)
			return -EINVAL;
		memcpy(exp, e, (size_t)(at - e));
		exp[at - e] = '\0';
	}
	return 0;
}

/* A write-only buffer's file cannot be mapped (no FMODE_READ), but the
 * importer's devices read it as the kernel's do: the library's own view
 * comes from a second open file description of the same memfd. */
static int writeonly_backing(struct dmabuf *buf)
{
	char path[64];
	int fd, err;

	if ((err = dmb_sys_fail(DMB_SYS_REOPEN)))
		return -err;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", buf->file_fd);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf->backing.ranges[0].fd = fd;
	buf->backing.ranges[0].owned = true;
	return 0;
}

/*
 * One batch of a udmabuf's backing ranges: each memfd is checked as
 * udmabuf_create() checks the creator's (a regular file sealed against
 * shrinking, not against writes, the range within it), so an exporter cannot
 * hand this process a mapping that faults; each range keeps a dup of its
 * memfd. The batch's fds are closed.
 */
static int take_batch(const struct dmb_wire_ranges *b, int *fds, size_t nfds,
		      struct dmb_backing *bk)
{
	int ret = 0;

	for (uint32_t i = 0; i < b->count && ret == 0; i++) {
		const struct dmb_wire_range *r = &b->r[i];
		struct dmb_backing_range *out = &bk->ranges[bk->nranges];
		int mfd = fds[r->fd_index]; /* the decoder checked the indices */
		int seals = fcntl(mfd, F_GET_SEALS);
		struct stat st;

		if (fstat(mfd, &st) < 0 || !S_ISREG(st.st_mode) || seals < 0 ||
		    !(seals & F_SEAL_SHRINK) || (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) ||
		    r->offset > (uint64_t)st.st_size || r->size > (uint64_t)st.st_size - r->offset) {
			ret = -EPROTO;
			break;
		}
		out->fd = fcntl(mfd, F_DUPFD_CLOEXEC, 0);
		if (out->fd < 0) {
			ret = -errno;
			break;
		}
		out->owned = true;
		out->offset = r->offset;
		out->size = r->size;
		bk->size += r->size;
		bk->nranges++;
	}
	dmb_scm_close_fds(fds, nfds);
	return ret;
}

/* A udmabuf's bytes: the first batch came with IMPORT_REPLY, the others
 * are asked for with GET_BACKING, in order, until total. */
static int udmabuf_backing(struct dmb_conn *conn, struct dmb_msg *reply, struct dmabuf *buf)
{
	const uint32_t total = reply->u.import_reply.backing.total;
	struct dmb_backing *bk = &buf->backing;
	struct dmb_msg req, more;
	int ret;

	bk->ranges = calloc(total, sizeof(*bk->ranges));
	if (!bk->ranges) {
		dmb_scm_close_fds(reply->fds, reply->nfds);
		reply->nfds = 0;
		return -ENOMEM;
	}
	ret = take_batch(&reply->u.import_reply.backing, reply->fds, reply->nfds, bk);
	reply->nfds = 0;
	while (ret == 0 && bk->nranges < total) {
		dmb_wire_msg_init(&req, DMB_OP_GET_BACKING, reply->u.import_reply.buffer_id);
		req.u.get_backing.first = (uint32_t)bk->nranges;
		ret = dmb_conn_call(conn, &req, &more);
		if (ret < 0)
			break;
		if (more.u.backing.total != total || more.u.backing.first != bk->nranges) {
			dmb_scm_close_fds(more.fds, more.nfds);
			ret = -EPROTO;
			break;
		}
		ret = take_batch(&more.u.backing, more.fds, more.nfds, bk);
	}
	/* The ranges are the whole buffer, no more, no less. */
	if (ret == 0 && bk->size != buf->size)
		ret = -EPROTO;
	return ret;
}

static void backing_ranges_free(struct dmb_backing *bk)
{
	for (size_t i = 0; i < bk->nranges; i++)
		if (bk->ranges[i].owned)
			close(bk->ranges[i].fd);
	free(bk->ranges);
	bk->ranges = NULL;
	bk->nranges = 0;
}

/* A proxy with nothing in it yet but what every import sets. */
static struct dmabuf *proxy_alloc(struct dmabuf_ctx *ctx, struct dmb_conn *conn,
				  const struct stat *st, uint64_t id)
{
	struct dmb_proxy *px = calloc(1, sizeof(*px));
	struct dmabuf *buf = calloc(1, sizeof(*buf));

	if (!px || !buf) {
		free(px);
		free(buf);
		return NULL;
	}
	px->conn = conn;
	px->id = id;
	buf->file_fd = -1;
	buf->ctx = ctx;
	buf->key.dev = st->st_dev;
	buf->key.ino = st->st_ino;
	buf->refcount = 1;
	buf->state = DMB_BUF_LIVE;
	buf->ops = &proxy_ops;
	buf->priv = px;
	buf->imported = true;
	buf->exp_name = "";
	buf->probe_fd = buf->wd = -1;
	LIST_INIT(&buf->attachments);
	return buf;
}

static void proxy_free(struct dmabuf *buf)
{
	if (buf->resv)
		dmabuf_resv_destroy(buf->resv);
	backing_ranges_free(&buf->backing);
	if (buf->file_fd >= 0)
		close(buf->file_fd);
	dmb_buf_extras_free(buf);
	free(buf->priv);
	free(buf);
}

/* The proxy's own file and bytes, once its size and flags are known;
 * @reply: a udmabuf's IMPORT_REPLY (its first ranges), else NULL. */
static int proxy_fill(struct dmb_conn *conn, struct dmabuf *buf, int fd,
		      const struct stat *st, struct dmb_msg *reply)
{
	int ret;

	buf->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (buf->file_fd < 0)
		return -errno;
	/* A udmabuf's file is a handle (empty): its bytes are the ranges. */
	if ((uint64_t)st->st_size != (buf->handle_only ? 0 : buf->size))
		return -EPROTO; /* the exporter and the file disagree */
	if (buf->handle_only)
		ret = udmabuf_backing(conn, reply, buf);
	else
		ret = dmb_backing_init_memfd(&buf->backing, buf->file_fd, buf->size);
	if (ret == 0 && buf->flags == O_WRONLY && !buf->handle_only)
		ret = writeonly_backing(buf);
	if (ret == 0)
		ret = dmabuf_resv_new(&buf->resv);
	if (ret == 0)
		ret = dmb_obj_add(buf, DMB_OBJ_BUFFER);
	return ret;
}

static void proxy_publish(struct dmabuf_ctx *ctx, struct dmabuf *buf,
			  const char *endpoint, struct dmabuf **out)
{
	RB_INSERT(dmb_buf_tree, &ctx->by_inode, buf);
	ctx->stats.buffers_live++;
	dmb_dbg(ctx, "imported %s (%llu bytes) from %s", buf->exp_name,
		(unsigned long long)buf->size, endpoint);
	*out = buf;
}

/*
 * Whether dmabuf_get() may answer from what this side sees and send its
 * IMPORT without waiting (docs/protocol.md §6 item 3a). Only where the
 * answer is certain but for the exporter's identity check: a version 3
 * exporter in another process (one in this process answers at no
 * cross-process cost), a buffer whose bytes are its file (st_size is its
 * size; a udmabuf's ranges come with the reply), an access mode the
 * proxy's views need no reply for (not O_WRONLY), far below the exporter's
 * import limit (so its -ENOSPC cannot be the answer) and few imports still
 * unanswered.
 */
static bool import_may_pipeline(const struct dmb_conn *conn, const struct stat *st, int fl)
{
	return conn->version >= DMB_WIRE_VERSION_CLIENT_IDS && !conn->exporter_is_us &&
	       st->st_size > 0 && (fl & O_ACCMODE) != O_WRONLY &&
	       conn->npending < DMB_CONN_MAX_PENDING_IMPORTS &&
	       conn->users <= conn->limits.max_buffers / 2;
}

static int import_pipelined(struct dmabuf_ctx *ctx, struct dmb_conn *conn, int fd,
			    const struct stat *st, int fl, const char *exp_name,
			    const char *endpoint, bool attach_known, struct dmabuf **out)
{
	struct dmb_pending_import *p = calloc(1, sizeof(*p));
	uint64_t id = conn->next_import_id + 1;
	struct dmabuf *buf = proxy_alloc(ctx, conn, st, id);
	struct dmb_msg req;
	int ret = -ENOMEM;

	if (!p || !buf)
		goto fail;
	proxy_of(buf)->attach_known = attach_known;
	/* What the reply would say, from the file: its size (sealed), its
	 * access mode (the exporter's: the file is the one it opened), the
	 * exporter's name (in the memfd's name). The buffer's own name comes
	 * with the reply. */
	buf->size = (uint64_t)st->st_size;
	buf->flags = fl & O_ACCMODE;
	ret = dmb_buf_set_exp_name(buf, exp_name);
	if (ret == 0)
		ret = proxy_fill(conn, buf, fd, st, NULL);
	if (ret < 0)
		goto fail;
	dmb_wire_msg_init(&req, DMB_OP_IMPORT, 0);
	req.u.import.buffer_id = id;
	req.nfds = 1;
	/* Proof of possession: the proxy's own file (the same open file as
	 * fd), open until the request leaves with the connection's next send
	 * or the proxy's release takes it back. */
	req.fds[0] = buf->file_fd;
	p->id = id;
	p->buf = buf;
	ret = dmb_conn_queue(conn, &req, p);
	if (ret < 0)
		goto fail;
	conn->next_import_id = id;
	proxy_of(buf)->pending = p;
	proxy_publish(ctx, buf, endpoint, out);
	return 0;

fail:
	if (buf) {
		if (dmb_obj_live(buf, DMB_OBJ_BUFFER))
			dmb_obj_del(buf);
		proxy_free(buf);
	}
	free(p);
	dmb_conn_put(conn);
	return ret;
}

int dmb_proxy_import_reply(struct dmb_conn *conn, struct dmb_pending_import *p,
			   struct dmb_msg *msg)
{
	struct dmabuf *buf = p->buf;
	struct dmb_proxy *px = buf ? proxy_of(buf) : NULL;
	const struct dmb_wire_import_reply *r;

	if (px)
		px->pending = NULL;
	if (!msg)
		return 0; /* the connection went first: its calls say -ENODEV */
	if (msg->status < 0) {
		if (px) {
			px->import_err = msg->status;
			dmb_info(conn->ctx, "exporter %s refused the import of %s: %d",
				 conn->endpoint, buf->exp_name, msg->status);
		}
		return 0;
	}
	r = &msg->u.import_reply;
	if (msg->nfds || r->backing.total || r->buffer_id != p->id ||
	    (buf && (r->size != buf->size || strcmp(r->exp_name, buf->exp_name)))) {
		dmb_scm_close_fds(msg->fds, msg->nfds);
		if (px)
			px->import_err = -EPROTO;
		return -EPROTO;
	}
	if (buf) {
		/* The exporter's word on the access mode wins (a file reopened
		 * through /proc may have another). */
		buf->flags = r->flags & O_ACCMODE;
		(void)dmb_buf_set_name(buf, r->info_flags & DMB_WIRE_INFO_NAME_SET ? r->name : NULL);
	}
	return 0;
}

void dmb_proxy_import_resend(struct dmb_conn *conn, struct dmb_pending_import *p)
{
	struct dmabuf *buf = p->buf;
	struct dmb_proxy *px = proxy_of(buf);
	struct dmb_msg req, reply;
	int ret;

	px->pending = NULL;
	dmb_wire_msg_init(&req, DMB_OP_IMPORT, 0);
	if (conn->version >= DMB_WIRE_VERSION_CLIENT_IDS)
		req.u.import.buffer_id = p->id;
	req.nfds = 1;
	req.fds[0] = buf->file_fd;
	ret = dmb_conn_call(conn, &req, &reply);
	if (ret < 0) {
		px->import_err = ret;
		return;
	}
	if (conn->version < DMB_WIRE_VERSION_CLIENT_IDS)
		p->id = px->id = reply.u.import_reply.buffer_id;
	if (dmb_proxy_import_reply(conn, p, &reply) < 0) {
		/* not the buffer its file is: undone there, refused here */
		struct dmb_msg rel;

		dmb_wire_msg_init(&rel, DMB_OP_RELEASE, reply.u.import_reply.buffer_id);
		dmb_conn_send_only(conn, &rel);
	}
}

/* vm.memfd_noexec = 2 seals every memfd as the mark does: then it says
 * nothing (read once per process). */
bool dmb_memfd_marks_trusted(void)
{
	static atomic_int trusted = -1;
	int t = atomic_load_explicit(&trusted, memory_order_relaxed);

	if (t < 0) {
		char c = '0';
		int fd = open("/proc/sys/vm/memfd_noexec", O_RDONLY | O_CLOEXEC);

		if (fd >= 0) {
			if (read(fd, &c, 1) != 1)
				c = '2'; /* unknown: trust nothing */
			close(fd);
		}
		t = c != '2';
		atomic_store_explicit(&trusted, t, memory_order_relaxed);
	}
	return t;
}

static bool attach_known(int seals, const struct stat *st)
{
	return dmb_memfd_attach_known(seals, st->st_mode) && dmb_memfd_marks_trusted();
}

/*
 * The access mode of the buffer an fd names, without asking the fd, when
 * its exporter's memfd mark tells it: from version 6 a marked file
 * (dmb_memfd_attach_known()) is never of an O_WRONLY buffer, and a
 * read-only buffer's memfd is sealed against writes (docs/design.md §2).
 * Only once the handshake has said the version: an older exporter marks
 * write-only buffers too. -1 when the fd must be asked. The fd's own mode
 * may be narrower (a file reopened through /proc): the exporter's word,
 * which wins either way, is the buffer's mode, and that is what this
 * gives.
 */
static int mode_from_mark(const struct dmb_conn *conn, int seals, const struct stat *st)
{
	if (conn->hello_pending || conn->version < DMB_WIRE_VERSION_MODE_MARK ||
	    !attach_known(seals, st))
		return -1;
	return seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE) ? O_RDONLY : O_RDWR;
}

int dmb_import(struct dmabuf_ctx *ctx, int fd, const struct stat *st,
	       int seals, struct dmabuf **out)
{
	const int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	struct dmb_msg req, reply, rel;
	char endpoint[DMB_ENDPOINT_NAME_MAX], exp_name[DMABUF_NAME_LEN];
	struct dmabuf *buf = NULL;
	struct dmb_conn *conn;
	uint64_t id = 0;
	int ret, fl;

	if ((seals & need) != need)
		goto not_ours;
	if (!dmb_file_names_find(ctx, st, endpoint, sizeof(endpoint),
				 exp_name, sizeof(exp_name))) {
		if (dmb_names_of_fd(fd, endpoint, sizeof(endpoint), exp_name,
				    sizeof(exp_name)) < 0)
			goto not_ours;
		dmb_file_names_add(ctx, st, endpoint, exp_name);
	}
	if (ctx->endpoint && !strcmp(endpoint, ctx->endpoint->name))
		return -EINVAL; /* ours, but not (any more) a buffer */
	ret = dmb_conn_get(ctx, endpoint, &conn);
	if (ret < 0)
		return ret; /* -ENODEV: the exporter is gone */
	fl = mode_from_mark(conn, seals, st);
	if (fl < 0 && (fl = fcntl(fd, F_GETFL)) < 0) {
		ret = -errno;
		dmb_conn_put(conn);
		return ret;
	}
	if (import_may_pipeline(conn, st, fl))
		return import_pipelined(ctx, conn, fd, st, fl, exp_name, endpoint,
					attach_known(seals, st), out);
	/* The request's layout depends on the version the handshake agrees. */
	ret = dmb_conn_ready(conn);
	if (ret < 0) {
		dmb_conn_put(conn);
		return ret;
	}
	dmb_wire_msg_init(&req, DMB_OP_IMPORT, 0);
	if (conn->version >= DMB_WIRE_VERSION_CLIENT_IDS)
		id = req.u.import.buffer_id = ++conn->next_import_id;
	req.nfds = 1;
	req.fds[0] = fd; /* proof of possession */
	ret = dmb_conn_call(conn, &req, &reply);
	if (ret < 0) {
		dmb_conn_put(conn);
		return ret;
	}
	ret = -EPROTO; /* the exporter must take the id this side chose */
	if (id && reply.u.import_reply.buffer_id != id)
		goto fail;
	ret = -ENOMEM;
	buf = proxy_alloc(ctx, conn, st, reply.u.import_reply.buffer_id);
	if (!buf)
		goto fail;
	proxy_of(buf)->attach_known = attach_known(seals, st);
	buf->size = reply.u.import_reply.size;
	buf->flags = reply.u.import_reply.flags & O_ACCMODE;
	buf->handle_only = reply.u.import_reply.backing.total != 0;
	ret = dmb_buf_set_exp_name(buf, reply.u.import_reply.exp_name);
	if (ret == 0)
		ret = dmb_buf_set_name(buf, reply.u.import_reply.info_flags & DMB_WIRE_INFO_NAME_SET
						    ? reply.u.import_reply.name : NULL);
	if (ret == 0)
		ret = proxy_fill(conn, buf, fd, st, &reply);
	if (ret < 0)
		goto fail;
	proxy_publish(ctx, buf, endpoint, out);
	return 0;

fail:
	dmb_scm_close_fds(reply.fds, reply.nfds);
	dmb_wire_msg_init(&rel, DMB_OP_RELEASE, reply.u.import_reply.buffer_id);
	dmb_conn_send_only(conn, &rel);
	dmb_conn_put(conn);
	if (buf) {
		if (dmb_obj_live(buf, DMB_OBJ_BUFFER))
			dmb_obj_del(buf);
		proxy_free(buf);
	}
	return ret;

not_ours:
	dmb_dbg(ctx, "fd %d is not a libdmabuf buffer", fd);
	return -EINVAL;
}

/* ---- MOVE_NOTIFY ---------------------------------------------------------- */

/* The DYNAMIC attachment of conn with the exporter's id, or NULL. */
static struct dmabuf_attachment *dynamic_att(struct dmb_conn *conn, uint64_t id)
{
	struct dmabuf *buf;
	struct dmabuf_attachment *att;

	RB_FOREACH(buf, dmb_buf_tree, &conn->ctx->by_inode) {
		if (!buf->imported || buf->state == DMB_BUF_RELEASED ||
		    proxy_of(buf)->conn != conn)
			continue;
		LIST_FOREACH(att, &buf->attachments, buf_link)
			if (att->remote_id == id && att->importer_ops)
				return att;
	}
	return NULL;
}

int dmb_proxy_move_event(struct dmb_conn *conn, uint64_t att_id)
{
	struct dmabuf_attachment *att = dynamic_att(conn, att_id);
	struct dmabuf_sg_table *sgt;

	if (!att) {
		/* Once this side made a DYNAMIC attachment, an event may be
		 * on its way while it detaches (ids are never reused, so it
		 * names nothing else); before, it is a protocol error. */
		return conn->watched ? 0 : -EPROTO;
	}
	/* The exporter moves right after telling: what this side mapped
	 * before is stale from now on. */
	LIST_FOREACH(sgt, &att->mappings, att_link)
		sgt->stale = true;
	att->move_pending = true;
	return 0;
}

void dmb_proxy_deliver_moves(struct dmb_conn *conn)
{
	struct dmabuf *buf;
	struct dmabuf_attachment *att;

	dmb_assert_locked(conn->ctx);
again:
	RB_FOREACH(buf, dmb_buf_tree, &conn->ctx->by_inode) {
		if (!buf->imported || proxy_of(buf)->conn != conn)
			continue;
		LIST_FOREACH(att, &buf->attachments, buf_link) {
			if (!att->move_pending)
				continue;
			att->move_pending = false;
			conn->ctx->stats.move_notifies++;
			att->importer_ops->move_notify(att);
			goto again; /* the callback ran foreign code */
		}
	}
}
