/* SPDX-License-Identifier: MIT */
/*
 * Moving buffers: the exporter side of dynamic attachments. Pins (which
 * keep a buffer in place), move notification of dynamic importers, the
 * migration of a buffer's simulated frames to a new placement, and
 * revocation. The kernel makes these calls with the buffer's reservation
 * lock held (dma_resv_assert_held()); here the context lock serialises
 * them with maps, so they take it too, in the order context -> resv
 * (docs/design.md §8): a caller holding the resv that has to wait for the
 * context lock drops the resv meanwhile.
 */
#include <stdlib.h>

#include "private.h"
#include "fence_private.h"
#include "physmem.h"

int dmb_pin_op_locked(struct dmabuf_attachment *att)
{
	struct dmabuf *buf = att->buf;
	int ret = 0;

	dmb_assert_locked(att->ctx);
	if (buf->ops->pin)
		ret = DMB_OP(buf, pin)(att);
	/* A proxy's pins are counted by the exporter (its pin_count). */
	if (ret == 0 && !buf->imported)
		buf->pin_count++;
	return ret;
}

void dmb_unpin_op_locked(struct dmabuf_attachment *att)
{
	struct dmabuf *buf = att->buf;

	dmb_assert_locked(att->ctx);
	if (buf->ops->unpin)
		DMB_OP(buf, unpin)(att);
	if (!buf->imported)
		buf->pin_count--;
}

void dmb_move_notify_locked(struct dmabuf *buf)
{
	struct dmabuf_attachment *att;
	unsigned int gen;

	dmb_assert_locked(buf->ctx);
	gen = ++buf->ctx->notify_gen;
	/* A callback may unmap and map (changing nothing in the list) but
	 * runs foreign code: restart after each one, skipping those already
	 * told in this round. */
again:
	LIST_FOREACH(att, &buf->attachments, buf_link) {
		if (!att->importer_ops || att->notified_gen == gen)
			continue;
		att->notified_gen = gen;
		buf->ctx->stats.move_notifies++;
		att->importer_ops->move_notify(att);
		goto again;
	}
}

void dmb_mappings_stale_locked(struct dmabuf *buf)
{
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;

	dmb_assert_locked(buf->ctx);
	LIST_FOREACH(att, &buf->attachments, buf_link)
		LIST_FOREACH(sgt, &att->mappings, att_link)
			sgt->stale = true;
}

/*
 * Locks buf's context for a call the kernel makes under the resv. With
 * need_resv, the calling thread must hold buf's resv (-EINVAL otherwise);
 * without, the resv is taken here if the caller does not hold it (*took).
 * Returns the locked context, or NULL (nothing locked, resv as it was).
 */
static struct dmabuf_ctx *lock_for_move(struct dmabuf *buf, bool need_resv,
					bool *took, const char *what)
{
	struct dmabuf_resv *resv;
	struct dmabuf_ctx *ctx;
	bool held;

	*took = false;
	if (!dmb_obj_live(buf, DMB_OBJ_BUFFER))
		return NULL;
	/* The caller's reference keeps buf (and its resv) alive. */
	resv = buf->resv;
	held = dmb_resv_held(resv);
	if (need_resv && !held) {
		dmb_err(buf->ctx, "%s(%s): the buffer's reservation lock is not held",
			what, buf->exp_name);
		return NULL;
	}
	if (held && !dmb_ctx_held(buf->ctx)) {
		/* The order is context -> resv: waiting for the context with
		 * the resv held would deadlock against a thread that holds the
		 * context and waits for the resv. */
		if (dmb_trylock(buf->ctx)) {
			ctx = dmb_buf_lock(buf);
			dmb_unlock(buf->ctx);
		} else {
			unsigned int depth = dmb_resv_unlock_all(resv);

			ctx = dmb_buf_lock(buf);
			dmb_resv_relock(resv, depth);
		}
	} else {
		ctx = dmb_buf_lock(buf);
		if (ctx && !held) {
			dmabuf_resv_lock(resv);
			*took = true;
		}
	}
	return ctx;
}

static void unlock_for_move(struct dmabuf *buf, struct dmabuf_ctx *ctx, bool took)
{
	if (took)
		dmabuf_resv_unlock(buf->resv);
	dmb_unlock(ctx);
}

static struct dmabuf_ctx *att_lock_for_pin(struct dmabuf_attachment *att,
					   const char *what)
{
	struct dmabuf_ctx *ctx;
	bool took;

	if (!att || !dmb_obj_live(att, DMB_OBJ_ATTACHMENT))
		return NULL;
	/* The caller's attachment keeps its buffer alive. */
	ctx = lock_for_move(att->buf, true, &took, what);
	if (ctx && !dmb_obj_live(att, DMB_OBJ_ATTACHMENT)) {
		dmb_unlock(ctx);
		return NULL;
	}
	return ctx;
}

DMABUF_EXPORT int dmabuf_pin(struct dmabuf_attachment *att)
{
	struct dmabuf_ctx *ctx = att_lock_for_pin(att, "dmabuf_pin");
	int ret;

	if (!ctx)
		return -EINVAL;
	if (!att->importer_ops || att->dev->remote) {
		/* dma_buf_pin(): WARN_ON(!dma_buf_attachment_is_dynamic()) */
		dmb_err(ctx, "dmabuf_pin(%s): only a dynamic importer pins",
			att->buf->exp_name);
		ret = -EINVAL;
	} else if (att->buf->revoked) {
		/* A proxy is never revoked itself: its exporter answers
		 * -ENODEV, as here. */
		ret = -ENODEV;
	} else {
		ret = dmb_pin_op_locked(att);
		if (ret == 0)
			att->pins++;
	}
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_unpin(struct dmabuf_attachment *att)
{
	struct dmabuf_ctx *ctx = att_lock_for_pin(att, "dmabuf_unpin");
	int ret = 0;

	if (!ctx)
		return -EINVAL;
	if (!att->importer_ops || att->dev->remote || !att->pins) {
		dmb_err(ctx, "dmabuf_unpin(%s): %s", att->buf->exp_name,
			att->pins ? "only a dynamic importer unpins" : "no pin to undo");
		ret = -EINVAL;
	} else {
		att->pins--;
		dmb_unpin_op_locked(att);
	}
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_move_notify(struct dmabuf *buf)
{
	bool took;
	struct dmabuf_ctx *ctx = lock_for_move(buf, true, &took, "dmabuf_move_notify");

	if (!ctx)
		return -EINVAL;
	if (buf->imported) {
		dmb_err(ctx, "dmabuf_move_notify(%s): an imported buffer moves in its exporter",
			buf->exp_name);
		unlock_for_move(buf, ctx, took);
		return -EINVAL;
	}
	dmb_move_notify_locked(buf);
	unlock_for_move(buf, ctx, took);
	return 0;
}

/* True when a mapping exists that nobody can be told about. */
static bool static_mapping_live(struct dmabuf *buf)
{
	struct dmabuf_attachment *att;

	LIST_FOREACH(att, &buf->attachments, buf_link)
		if (!att->importer_ops && att->nmappings)
			return true;
	return false;
}

static int migrate_locked(struct dmabuf *buf, enum dmabuf_alloc alloc,
			  struct dmabuf_fence *fence)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	struct dmb_backing *b = &buf->backing;
	struct dmb_phys_run *old_runs = b->runs;
	size_t old_nruns = b->nruns;
	bool old_cma = b->from_cma;
	enum dmabuf_alloc old_alloc = buf->alloc;
	int ret;

	if (buf->imported || buf->handle_only ||
	    (alloc != DMABUF_ALLOC_SYSTEM && alloc != DMABUF_ALLOC_CONTIGUOUS)) {
		dmb_err(ctx, "dmabuf_backing_migrate(%s): %s", buf->exp_name,
			buf->imported ? "an imported buffer moves in its exporter" :
			buf->handle_only ? "a udmabuf's pages are its creator's" :
			"alloc must be SYSTEM or CONTIGUOUS");
		return -EINVAL;
	}
	if (buf->revoked)
		return -ENODEV;
	if (buf->pin_count || static_mapping_live(buf)) {
		dmb_info(ctx, "dmabuf_backing_migrate(%s): %s", buf->exp_name,
			 buf->pin_count ? "pinned" : "a static importer has it mapped");
		return -EBUSY;
	}
	/* A peer's MAP answered from its cached table may not have reached
	 * the endpoint yet: its map returned first, as a static mapping. */
	if (dmb_remote() && dmb_remote()->maps_announced &&
	    dmb_remote()->maps_announced(buf)) {
		dmb_info(ctx, "dmabuf_backing_migrate(%s): a peer's static map of it is on its way",
			 buf->exp_name);
		return -EBUSY;
	}
	/* New frames first: a failed move changes nothing. */
	b->runs = NULL;
	b->nruns = 0;
	buf->alloc = alloc;
	ret = dmb_backing_alloc(ctx, buf);
	if (ret < 0) {
		b->runs = old_runs;
		b->nruns = old_nruns;
		b->from_cma = old_cma;
		buf->alloc = old_alloc;
		return ret;
	}
	if (alloc == DMABUF_ALLOC_SYSTEM)
		b->from_cma = false;
	if (fence) {
		ret = dmabuf_resv_add_fence(buf->resv, fence, DMABUF_RESV_USAGE_KERNEL);
		if (ret < 0) {
			dmb_physmem_free(ctx->physmem, b->runs, b->nruns);
			free(b->runs);
			b->runs = old_runs;
			b->nruns = old_nruns;
			b->from_cma = old_cma;
			buf->alloc = old_alloc;
			return ret;
		}
	}
	dmb_move_notify_locked(buf);
	dmb_mappings_stale_locked(buf);
	if (old_runs) {
		dmb_physmem_free(ctx->physmem, old_runs, old_nruns);
		free(old_runs);
	}
	ctx->stats.moves++;
	dmb_dbg(ctx, "buffer %s moved to %s frames", buf->exp_name,
		alloc == DMABUF_ALLOC_CONTIGUOUS ? "contiguous" : "system");
	return 0;
}

DMABUF_EXPORT int dmabuf_backing_migrate(struct dmabuf *buf, enum dmabuf_alloc alloc,
					 struct dmabuf_fence *fence)
{
	bool took;
	struct dmabuf_ctx *ctx = lock_for_move(buf, true, &took, "dmabuf_backing_migrate");
	int ret;

	if (!ctx)
		return -EINVAL;
	ret = migrate_locked(buf, alloc, fence);
	unlock_for_move(buf, ctx, took);
	return ret;
}

DMABUF_EXPORT int dmabuf_revoke(struct dmabuf *buf)
{
	bool took;
	struct dmabuf_ctx *ctx = lock_for_move(buf, false, &took, "dmabuf_revoke");

	if (!ctx)
		return -EINVAL;
	if (buf->imported) {
		dmb_err(ctx, "dmabuf_revoke(%s): only the exporter revokes", buf->exp_name);
		unlock_for_move(buf, ctx, took);
		return -EINVAL;
	}
	if (!buf->revoked) {
		buf->revoked = true;
		if (dmb_remote() && dmb_remote()->map_state_changed)
			dmb_remote()->map_state_changed(buf);
		dmb_move_notify_locked(buf);
		dmb_mappings_stale_locked(buf);
		dmb_info(ctx, "buffer %s revoked", buf->exp_name);
	}
	unlock_for_move(buf, ctx, took);
	return 0;
}
