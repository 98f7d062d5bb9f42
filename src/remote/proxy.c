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
};

static struct dmb_proxy *proxy_of(struct dmabuf *buf)
{
	return buf->priv;
}

static void proxy_detach(struct dmabuf *buf, struct dmabuf_attachment *att);

static int proxy_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	struct dmb_proxy *px = proxy_of(buf);
	const struct dmabuf_device_info *di = &att->dev->info;
	struct dmb_msg req, reply;
	int ret;

	dmb_wire_msg_init(&req, DMB_OP_ATTACH, px->id);
	strlcpy(req.u.attach.name, att->dev->name, sizeof(req.u.attach.name));
	req.u.attach.dma_mask_bits = di->dma_mask_bits;
	req.u.attach.dev_flags = di->flags;
	req.u.attach.max_segment_size = di->max_segment_size;
	req.u.attach.segment_boundary = di->segment_boundary;
	req.u.attach.alignment = di->alignment;
	if (att->importer_ops)
		req.u.attach.attach_flags = DMB_WIRE_ATTACH_DYNAMIC;
	ret = dmb_conn_call(px->conn, &req, &reply);
	if (ret < 0)
		return ret;
	att->remote_id = reply.u.attach_reply.attachment_id;
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
	dmb_conn_send_void(proxy_of(buf)->conn, &req);
}

static int proxy_map(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		     struct dmabuf_sg_table **out)
{
	struct dmb_proxy *px = proxy_of(att->buf);
	struct dmb_msg req, reply, unmap;
	struct dmabuf_sg_entry *entries = NULL;
	const struct dmabuf_sg_entry *sg;
	struct dmabuf_sg_table *sgt = NULL;
	int ret;

	dmb_wire_msg_init(&req, DMB_OP_MAP, att->remote_id);
	req.u.map.dir = (uint32_t)dir;
	ret = dmb_conn_call(px->conn, &req, &reply);
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
		ret = dmb_sgt_new(&sgt);
	for (uint32_t i = 0; ret == 0 && i < reply.u.map_reply.count; i++)
		ret = dmb_sgt_append(sgt, sg[i].offset, sg[i].length, sg[i].phys);
	free(entries);
	if (ret < 0) {
		if (sgt)
			dmb_sgt_free(sgt);
		dmb_wire_msg_init(&unmap, DMB_OP_UNMAP, reply.u.map_reply.mapping_id);
		unmap.u.map.dir = (uint32_t)dir;
		dmb_conn_send_void(px->conn, &unmap);
		return ret;
	}
	sgt->remote_id = reply.u.map_reply.mapping_id;
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

	/* Nothing to learn from the answer: do not wait for it. */
	dmb_wire_msg_init(&req, DMB_OP_RELEASE, px->id);
	dmb_conn_send_only(px->conn, &req);
	dmb_conn_put(px->conn);
	free(px);
}

static int cpu_call(struct dmabuf *buf, uint16_t op, enum dmabuf_direction dir)
{
	struct dmb_msg req, reply;

	dmb_wire_msg_init(&req, op, proxy_of(buf)->id);
	req.u.cpu_access.dir = (uint32_t)dir;
	return dmb_conn_call(proxy_of(buf)->conn, &req, &reply);
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
	ret = dmb_conn_call(proxy_of(buf)->conn, &req, &reply);
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
	return dmb_conn_call(proxy_of(buf)->conn, &req, &reply);
}

int dmb_proxy_describe(struct dmabuf *buf, struct dmabuf_info *info)
{
	struct dmb_msg req, reply;
	const struct dmb_wire_describe_reply *r = &reply.u.describe_reply;
	int ret;

	dmb_wire_msg_init(&req, DMB_OP_DESCRIBE, proxy_of(buf)->id);
	ret = dmb_conn_call(proxy_of(buf)->conn, &req, &reply);
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
	/* Remembered, for when the exporter is gone. */
	strlcpy(buf->name, r->name, sizeof(buf->name));
	buf->name_set = info->name_set;
	return 0;
}

int dmb_proxy_set_name(struct dmabuf *buf, const char *name)
{
	struct dmb_msg req, reply;
	int ret;

	dmb_wire_msg_init(&req, DMB_OP_SET_NAME, proxy_of(buf)->id);
	strlcpy(req.u.set_name.name, name, sizeof(req.u.set_name.name));
	ret = dmb_conn_call(proxy_of(buf)->conn, &req, &reply);
	if (ret == 0) {
		strlcpy(buf->name, name, sizeof(buf->name));
		buf->name_set = true;
	}
	return ret;
}

int dmb_endpoint_of_fd(int fd, char *name, size_t cap)
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

int dmb_import(struct dmabuf_ctx *ctx, int fd, const struct stat *st,
	       struct dmabuf **out)
{
	const int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	struct dmb_msg req, reply, rel;
	char endpoint[DMB_ENDPOINT_NAME_MAX];
	struct dmb_proxy *px = NULL;
	struct dmabuf *buf = NULL;
	struct dmb_conn *conn;
	int ret, seals;

	seals = fcntl(fd, F_GET_SEALS);
	if (dmb_endpoint_of_fd(fd, endpoint, sizeof(endpoint)) < 0 || seals < 0 ||
	    (seals & need) != need) {
		dmb_dbg(ctx, "fd %d is not a libdmabuf buffer", fd);
		return -EINVAL;
	}
	if (ctx->endpoint && !strcmp(endpoint, ctx->endpoint->name))
		return -EINVAL; /* ours, but not (any more) a buffer */
	ret = dmb_conn_get(ctx, endpoint, &conn);
	if (ret < 0)
		return ret; /* -ENODEV: the exporter is gone */
	dmb_wire_msg_init(&req, DMB_OP_IMPORT, 0);
	req.nfds = 1;
	req.fds[0] = fd; /* proof of possession */
	ret = dmb_conn_call(conn, &req, &reply);
	if (ret < 0) {
		dmb_conn_put(conn);
		return ret;
	}
	ret = -ENOMEM;
	px = calloc(1, sizeof(*px));
	buf = calloc(1, sizeof(*buf));
	if (!px || !buf)
		goto fail;
	px->conn = conn;
	px->id = reply.u.import_reply.buffer_id;
	buf->file_fd = -1;
	buf->ctx = ctx;
	buf->key.dev = st->st_dev;
	buf->key.ino = st->st_ino;
	buf->refcount = 1;
	buf->state = DMB_BUF_LIVE;
	buf->ops = &proxy_ops;
	buf->priv = px;
	buf->size = reply.u.import_reply.size;
	buf->flags = (int)reply.u.import_reply.flags;
	buf->imported = true;
	buf->probe_fd = buf->wd = -1;
	strlcpy(buf->exp_name, reply.u.import_reply.exp_name, sizeof(buf->exp_name));
	strlcpy(buf->name, reply.u.import_reply.name, sizeof(buf->name));
	buf->name_set = reply.u.import_reply.info_flags & DMB_WIRE_INFO_NAME_SET;
	LIST_INIT(&buf->attachments);
	LIST_INIT(&buf->cpu_maps);
	buf->file_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (buf->file_fd < 0) {
		ret = -errno;
		goto fail;
	}
	/* A udmabuf's file is a handle (empty): its bytes are the ranges. */
	buf->handle_only = reply.u.import_reply.backing.total != 0;
	if ((uint64_t)st->st_size != (buf->handle_only ? 0 : buf->size)) {
		ret = -EPROTO; /* the exporter and the file disagree */
		goto fail;
	}
	if (buf->handle_only)
		ret = udmabuf_backing(conn, &reply, buf);
	else
		ret = dmb_backing_init_memfd(&buf->backing, buf->file_fd, buf->size);
	if (ret == 0 && buf->flags == O_WRONLY && !buf->handle_only)
		ret = writeonly_backing(buf);
	if (ret == 0)
		ret = dmabuf_resv_new(&buf->resv);
	if (ret == 0)
		ret = dmb_obj_add(buf, DMB_OBJ_BUFFER);
	if (ret < 0)
		goto fail;
	RB_INSERT(dmb_buf_tree, &ctx->by_inode, buf);
	ctx->stats.buffers_live++;
	dmb_dbg(ctx, "imported %s (%llu bytes) from %s", buf->exp_name,
		(unsigned long long)buf->size, endpoint);
	*out = buf;
	return 0;

fail:
	dmb_scm_close_fds(reply.fds, reply.nfds);
	dmb_wire_msg_init(&rel, DMB_OP_RELEASE, reply.u.import_reply.buffer_id);
	dmb_conn_send_only(conn, &rel);
	dmb_conn_put(conn);
	if (buf) {
		if (buf->resv)
			dmabuf_resv_destroy(buf->resv);
		backing_ranges_free(&buf->backing);
		if (buf->file_fd >= 0)
			close(buf->file_fd);
	}
	free(buf);
	free(px);
	return ret;
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
