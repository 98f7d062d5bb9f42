/* SPDX-License-Identifier: MIT */
/*
 * dmabuf_ctx_for_each_live(): what a context still holds, for leak reports
 * that name each object (the test kit's leak assertions).
 */
#include <string.h>

#include <bsd/string.h>

#include "private.h"

struct walk {
	dmabuf_live_fn fn;
	void *data;
	int count;
};

/* Calls fn; non-zero when it asked to stop. */
static int emit(struct walk *w, struct dmabuf_live_object *o)
{
	int ret;

	o->struct_size = sizeof(*o);
	ret = w->fn(w->data, o);
	w->count++;
	return ret;
}

static void describe_buf(struct dmabuf_live_object *o, const struct dmabuf *buf)
{
	strlcpy(o->name, buf->exp_name, sizeof(o->name));
	strlcpy(o->buf_name, dmb_buf_name(buf), sizeof(o->buf_name));
	o->inode = (uint64_t)buf->key.ino;
	o->imported = buf->imported;
}

static int walk_locked(struct dmabuf_ctx *ctx, struct walk *w)
{
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	int ret;

	dmb_assert_locked(ctx);
	RB_FOREACH(buf, dmb_buf_tree, &ctx->by_inode) {
		struct dmabuf_live_object o = { 0 };

		if (buf->state == DMB_BUF_RELEASED)
			continue;
		o.type = buf->state == DMB_BUF_LIVE ? DMABUF_LIVE_BUFFER
						    : DMABUF_LIVE_BUFFER_FILE;
		o.object = buf;
		describe_buf(&o, buf);
		o.size = buf->size;
		o.count = buf->refcount;
		if ((ret = emit(w, &o)))
			return ret;
	}
	LIST_FOREACH(dev, &ctx->devices, ctx_link) {
		struct dmabuf_live_object o = { 0 };

		if (dev->remote)
			continue;
		o.type = DMABUF_LIVE_DEVICE;
		o.object = dev;
		strlcpy(o.name, dev->name, sizeof(o.name));
		o.count = dev->attach_count;
		if ((ret = emit(w, &o)))
			return ret;
	}
	/* Attachments, then their mappings: a buffer's attachments are listed
	 * by the buffer. */
	for (int pass = 0; pass < 2; pass++) {
		RB_FOREACH(buf, dmb_buf_tree, &ctx->by_inode) {
			struct dmabuf_attachment *att;

			if (buf->state == DMB_BUF_RELEASED)
				continue;
			LIST_FOREACH(att, &buf->attachments, buf_link) {
				struct dmabuf_sg_table *sgt;
				struct dmabuf_live_object o = { 0 };

				if (att->dev->remote)
					continue;
				describe_buf(&o, buf);
				strlcpy(o.device, att->dev->name, sizeof(o.device));
				if (pass == 0) {
					o.type = DMABUF_LIVE_ATTACHMENT;
					o.object = att;
					o.count = att->nmappings;
					if ((ret = emit(w, &o)))
						return ret;
					continue;
				}
				LIST_FOREACH(sgt, &att->mappings, att_link) {
					o.type = DMABUF_LIVE_MAPPING;
					o.object = sgt;
					o.size = sgt->size;
					if ((ret = emit(w, &o)))
						return ret;
				}
			}
		}
	}
	return 0;
}

DMABUF_EXPORT int dmabuf_ctx_for_each_live(struct dmabuf_ctx *ctx,
					   dmabuf_live_fn fn, void *data)
{
	struct walk w = { .fn = fn, .data = data };
	int ret;

	if (!fn || !dmb_ctx_lock_usable(ctx))
		return -EINVAL;
	ret = walk_locked(ctx, &w);
	dmb_unlock(ctx);
	return ret ? ret : w.count;
}
