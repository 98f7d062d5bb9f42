/* SPDX-License-Identifier: MIT */
/*
 * Attachments: one device attached to one buffer, and the device mappings
 * made through it.
 */
#include <fcntl.h>
#include <stdlib.h>

#include "private.h"

static struct dmabuf_ctx *att_lock(const struct dmabuf_attachment *att)
{
	return att ? dmb_obj_lock_ctx(att, DMB_OBJ_ATTACHMENT, &att->ctx) : NULL;
}

static bool dir_valid(enum dmabuf_direction dir)
{
	return dir == DMABUF_BIDIRECTIONAL || dir == DMABUF_TO_DEVICE ||
	       dir == DMABUF_FROM_DEVICE;
}

int dmb_dynamic_attach_locked(struct dmabuf *buf, struct dmabuf_device *dev,
			      const struct dmabuf_importer_ops *iops, void *ipriv,
			      struct dmabuf_attachment **out)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	struct dmabuf_attachment *att;
	int ret;

	dmb_assert_locked(ctx);
	if (buf->revoked) {
		dmb_info(ctx, "attach %s to %s: the buffer was revoked", dev->name,
			 buf->exp_name);
		return -ENODEV;
	}
	if ((ret = dmb_sys_fail(DMB_SYS_CALLOC)))
		return -ret;
	att = calloc(1, sizeof(*att));
	if (!att)
		return -ENOMEM;
	att->ctx = ctx;
	att->buf = buf;
	att->dev = dev;
	att->importer_ops = iops;
	att->importer_priv = iops ? ipriv : NULL;
	LIST_INIT(&att->mappings);
	ret = dmb_obj_add(att, DMB_OBJ_ATTACHMENT);
	if (ret < 0) {
		free(att);
		return ret;
	}
	if (buf->ops->attach) {
		ret = DMB_OP(buf, attach)(buf, att);
		if (ret < 0) {
			dmb_info(ctx, "attach %s to %s refused by exporter: %d",
				 dev->name, buf->exp_name, ret);
			dmb_obj_del(att);
			free(att);
			return ret;
		}
	}
	/* A static importer cannot be told of a move: a dynamic exporter
	 * (one with pin) keeps the buffer in place for it from attach to
	 * detach, as dma_buf_dynamic_attach() pins it. A proxy's exporter
	 * does that on its side (the peer's static attachment). */
	if (!iops && buf->ops->pin && !buf->imported) {
		ret = dmb_pin_op_locked(att);
		if (ret < 0) {
			dmb_info(ctx, "attach %s to %s: pin refused by exporter: %d",
				 dev->name, buf->exp_name, ret);
			if (buf->ops->detach)
				DMB_OP(buf, detach)(buf, att);
			dmb_obj_del(att);
			free(att);
			return ret;
		}
		att->pinned = true;
	}
	LIST_INSERT_HEAD(&buf->attachments, att, buf_link);
	buf->nattachments++;
	dev->attach_count++;
	ctx->stats.attachments_live++;
	/* ... and maps it once, BIDIRECTIONAL, the table cached until detach
	 * (attach->sgt): every map returns it, unmaps keep it. */
	if (att->pinned) {
		struct dmabuf_sg_table *sgt;

		ret = dmb_map_locked(att, DMABUF_BIDIRECTIONAL, &sgt);
		if (ret < 0) {
			dmb_info(ctx, "attach %s to %s: the attach-time map failed: %d",
				 dev->name, buf->exp_name, ret);
			/* the wait for KERNEL fences may have dropped the lock */
			if (dmb_obj_live(att, DMB_OBJ_ATTACHMENT))
				dmb_detach_locked(att);
			return ret;
		}
		att->cached = sgt;
	}
	*out = att;
	return 0;
}

int dmb_attach_locked(struct dmabuf *buf, struct dmabuf_device *dev,
		      struct dmabuf_attachment **out)
{
	return dmb_dynamic_attach_locked(buf, dev, NULL, NULL, out);
}

DMABUF_EXPORT int dmabuf_dynamic_attach(struct dmabuf *buf, struct dmabuf_device *dev,
					const struct dmabuf_importer_ops *ops,
					void *importer_priv,
					struct dmabuf_attachment **out)
{
	struct dmabuf_ctx *ctx;
	int ret;

	if (!out)
		return -EINVAL;
	ctx = dmb_buf_lock(buf);
	if (!ctx)
		return -EINVAL;
	if (!dmb_obj_live(dev, DMB_OBJ_DEVICE) || dev->ctx != ctx || dev->remote) {
		dmb_err(ctx, "dmabuf_attach(%s): not a live device of this context",
			buf->exp_name);
		ret = -EINVAL;
	} else if (ops && (!ops->move_notify || ops->version > DMABUF_IMPORTER_OPS_VERSION)) {
		/* dma_buf_dynamic_attach(): WARN_ON(!importer_ops->move_notify) */
		dmb_err(ctx, "dmabuf_dynamic_attach(%s): importer ops %s", buf->exp_name,
			ops->move_notify ? "of an unknown version" : "without move_notify");
		ret = -EINVAL;
	} else {
		ret = dmb_dynamic_attach_locked(buf, dev, ops, importer_priv, out);
	}
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_attach(struct dmabuf *buf, struct dmabuf_device *dev,
				struct dmabuf_attachment **out)
{
	return dmabuf_dynamic_attach(buf, dev, NULL, NULL, out);
}

static void mapping_undo(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt)
{
	struct dmabuf *buf = att->buf;
	enum dmabuf_direction dir = sgt->dir;

	dmb_sgt_dma_unmap(sgt);
	LIST_REMOVE(sgt, att_link);
	sgt->att = NULL;
	att->nmappings--;
	buf->nmappings--;
	att->ctx->stats.mappings_live--;
	DMB_OP(buf, unmap)(att, sgt, dir);
}

void dmb_detach_locked(struct dmabuf_attachment *att)
{
	struct dmabuf *buf = att->buf;
	struct dmabuf_sg_table *sgt;

	dmb_assert_locked(att->ctx);

	while ((sgt = LIST_FIRST(&att->mappings))) {
		if (sgt != att->cached)
			dmb_warn(att->ctx, "detach of %s from %s with a live mapping: unmapping it",
				 att->dev->name, buf->exp_name);
		mapping_undo(att, sgt);
	}
	att->cached = NULL;
	if (att->pins)
		dmb_warn(att->ctx, "detach of %s from %s with %u pin(s) left: unpinning",
			 att->dev->name, buf->exp_name, att->pins);
	while (att->pins) {
		att->pins--;
		dmb_unpin_op_locked(att);
	}
	if (att->pinned) {
		dmb_unpin_op_locked(att);
		att->pinned = false;
	}
	if (buf->ops->detach)
		DMB_OP(buf, detach)(buf, att);
	LIST_REMOVE(att, buf_link);
	buf->nattachments--;
	att->dev->attach_count--;
	att->ctx->stats.attachments_live--;
	dmb_obj_del(att);
	free(att);
}

void dmb_attachments_destroy_all(struct dmabuf *buf)
{
	struct dmabuf_attachment *att;

	while ((att = LIST_FIRST(&buf->attachments)))
		dmb_detach_locked(att);
}

DMABUF_EXPORT int dmabuf_detach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	struct dmabuf_ctx *ctx = att_lock(att);

	if (!ctx) {
		dmb_err(NULL, "dmabuf_detach(%p): not a live attachment (detached twice?)",
			(void *)att);
		return -EINVAL;
	}
	if (att->buf != buf || att->dev->remote) {
		dmb_err(ctx, "dmabuf_detach: attachment belongs to another buffer or to a peer");
		dmb_unlock(ctx);
		return -EINVAL;
	}
	dmb_detach_locked(att);
	dmb_unlock(ctx);
	return 0;
}

DMABUF_EXPORT struct dmabuf *dmabuf_attachment_get_buf(const struct dmabuf_attachment *att)
{
	return dmb_obj_live(att, DMB_OBJ_ATTACHMENT) ? att->buf : NULL;
}

DMABUF_EXPORT struct dmabuf_device *
dmabuf_attachment_get_device(const struct dmabuf_attachment *att)
{
	return dmb_obj_live(att, DMB_OBJ_ATTACHMENT) ? att->dev : NULL;
}

DMABUF_EXPORT void *dmabuf_attachment_get_priv(const struct dmabuf_attachment *att)
{
	return dmb_obj_live(att, DMB_OBJ_ATTACHMENT) ? att->priv : NULL;
}

DMABUF_EXPORT int dmabuf_attachment_get_dynamic(const struct dmabuf_attachment *att)
{
	return dmb_obj_live(att, DMB_OBJ_ATTACHMENT) ? att->importer_ops != NULL : -EINVAL;
}

DMABUF_EXPORT int dmabuf_attachment_get_peer2peer(const struct dmabuf_attachment *att)
{
	if (!dmb_obj_live(att, DMB_OBJ_ATTACHMENT))
		return -EINVAL;
	return att->importer_ops && att->importer_ops->allow_peer2peer;
}

DMABUF_EXPORT void *dmabuf_attachment_get_importer_priv(const struct dmabuf_attachment *att)
{
	return dmb_obj_live(att, DMB_OBJ_ATTACHMENT) ? att->importer_priv : NULL;
}

DMABUF_EXPORT int dmabuf_attachment_set_priv(struct dmabuf_attachment *att, void *priv)
{
	struct dmabuf_ctx *ctx = att_lock(att);

	if (!ctx)
		return -EINVAL;
	att->priv = priv;
	dmb_unlock(ctx);
	return 0;
}

static void map_install(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
			enum dmabuf_direction dir)
{
	sgt->att = att;
	sgt->dir = dir;
	LIST_INSERT_HEAD(&att->mappings, sgt, att_link);
	att->nmappings++;
	att->buf->nmappings++;
	att->ctx->stats.mappings_live++;
}

int dmb_map_locked(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		   struct dmabuf_sg_table **out)
{
	struct dmabuf_ctx *ctx = att->ctx;
	struct dmabuf *buf = att->buf;
	struct dmabuf_sg_table *sgt = NULL;
	int ret;

	dmb_assert_locked(ctx);
	if (!dir_valid(dir)) {
		dmb_err(ctx, "map of %s for %s: invalid direction %d", buf->exp_name,
			att->dev->name, (int)dir);
		return -EINVAL;
	}
	if (buf->revoked)
		return -ENODEV;
	/* dma_buf_map_attachment() returns the cached table as it is: no
	 * wait, any direction (it was mapped BIDIRECTIONAL). */
	if (att->cached) {
		*out = att->cached;
		return 0;
	}
	/* No CPU mapping here: the simulated DMA maps the buffer at its
	 * first access (dma.c), so most device maps cost no syscall. A static
	 * importer sees the pages once memory management (moves, clears:
	 * KERNEL fences) is done, as __map_dma_buf() waits; a dynamic one
	 * must obey the fences itself and does not wait. */
	ret = att->importer_ops ? 0 : dmb_buf_wait_kernel(buf);
	if (ret < 0)
		return ret;
	/* The wait dropped the lock: another thread may have detached or
	 * revoked. */
	if (!dmb_obj_live(att, DMB_OBJ_ATTACHMENT))
		return -EINVAL;
	if (buf->revoked)
		return -ENODEV;
	ret = DMB_OP(buf, map)(att, dir, &sgt);
	if (ret == 0 && (!dmb_obj_live(sgt, DMB_OBJ_SG_TABLE) || sgt->att)) {
		dmb_err(ctx, "exporter %s: map op returned no usable sg table", buf->exp_name);
		ret = -EINVAL;
		sgt = NULL;
	}
	/* A peer's device gets its addresses in the peer's process. */
	if (ret == 0 && !att->dev->remote) {
		ret = dmb_sgt_dma_map_backing(sgt, att->dev, dir, &buf->backing,
					      buf->flags != O_RDONLY);
		if (ret < 0) {
			dmb_info(ctx, "map of %s for %s: device cannot use the layout: %d",
				 buf->exp_name, att->dev->name, ret);
			DMB_OP(buf, unmap)(att, sgt, dir);
		}
	}
	if (ret < 0)
		return ret;
	map_install(att, sgt, dir);
	*out = sgt;
	return 0;
}

int dmb_map_announced_locked(struct dmabuf_attachment *att, enum dmabuf_direction dir,
			     struct dmabuf_sg_table *reserved, struct dmabuf_sg_table **out)
{
	struct dmabuf *buf = att->buf;
	struct dmabuf_sg_table *sgt = reserved;
	int ret = 0;

	dmb_assert_locked(att->ctx);
	if (!dir_valid(dir) || att->importer_ops || att->cached || !att->dev->remote) {
		if (reserved)
			dmb_sgt_free(reserved);
		return -EINVAL;
	}
	if (!sgt)
		ret = DMB_OP(buf, map)(att, dir, &sgt);
	if (ret == 0 && (!dmb_obj_live(sgt, DMB_OBJ_SG_TABLE) || sgt->att))
		return -EINVAL;
	if (ret < 0)
		return ret;
	sgt->stale = buf->revoked;
	map_install(att, sgt, dir);
	*out = sgt;
	return 0;
}

DMABUF_EXPORT int dmabuf_map_attachment(struct dmabuf_attachment *att,
					enum dmabuf_direction dir,
					struct dmabuf_sg_table **out)
{
	struct dmabuf_ctx *ctx;
	int ret;

	if (!out)
		return -EINVAL;
	ctx = att_lock(att);
	if (!ctx)
		return -EINVAL;
	/* A peer's attachment is the peer's to map, through its requests. */
	ret = att->dev->remote ? -EINVAL : dmb_map_locked(att, dir, out);
	dmb_unlock(ctx);
	return ret;
}

int dmb_unmap_locked(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
		     enum dmabuf_direction dir)
{
	dmb_assert_locked(att->ctx);
	if (!dmb_obj_live(sgt, DMB_OBJ_SG_TABLE) || sgt->att != att) {
		dmb_err(att->ctx, "unmap for %s: table %p is not a live mapping of this attachment",
			att->dev->name, (void *)sgt);
		return -EINVAL;
	}
	/* dma_buf_unmap_attachment(): the cached table stays until detach. */
	if (sgt == att->cached)
		return 0;
	if (sgt->dir != dir) {
		dmb_err(att->ctx, "unmap for %s: direction %d differs from the map's %d",
			att->dev->name, (int)dir, (int)sgt->dir);
		return -EINVAL;
	}
	mapping_undo(att, sgt);
	return 0;
}

DMABUF_EXPORT int dmabuf_unmap_attachment(struct dmabuf_attachment *att,
					  struct dmabuf_sg_table *sgt,
					  enum dmabuf_direction dir)
{
	struct dmabuf_ctx *ctx = att_lock(att);
	int ret;

	if (!ctx)
		return -EINVAL;
	ret = att->dev->remote ? -EINVAL : dmb_unmap_locked(att, sgt, dir);
	dmb_unlock(ctx);
	return ret;
}
