/* SPDX-License-Identifier: MIT */
/*
 * Fence chains (dma_fence_chain): a node links a fence to the node before
 * it, under a 64-bit seqno, as a timeline semaphore's points. A node
 * signals once its fence and every fence before it in the chain have.
 *
 * A node is a subtype of the base fence with its own ops, found by those
 * ops only (fence.c names no subtype). A walk drops signalled links from
 * the chain as it goes (the kernel's garbage collection), so a long-lived
 * chain stays as short as its pending part.
 *
 * Signalling: unlike the kernel, which re-arms one callback at a time from
 * an irq_work, enable_signaling arms a callback on every pending fence of
 * the chain at once (as an array does), because a callback here runs under
 * the signalled fence's lock and adding a callback to another fence from
 * there would order fence locks by chain position. The node signals when
 * the last of them has run.
 */
#include <stdlib.h>

#include "fence_private.h"

struct dmb_chain_cb {
	struct dmabuf_fence_cb cb;
	struct dmabuf_fence *node;	/* reference while armed */
	struct dmabuf_fence *child;	/* reference, put at release */
};

struct dmb_fence_chain {
	struct dmabuf_fence base;
	pthread_mutex_t prev_lock;	/* leaf: prev */
	struct dmabuf_fence *prev;	/* reference or NULL */
	uint64_t prev_seqno;
	struct dmabuf_fence *fence;	/* reference, constant */
	atomic_uint pending;
	struct dmb_chain_cb *cbs;
	unsigned int ncbs;
};

static const struct dmabuf_fence_ops chain_ops;

static struct dmb_fence_chain *to_chain(struct dmabuf_fence *f)
{
	return f && f->ops == &chain_ops
	       ? dmb_container_of(f, struct dmb_fence_chain, base) : NULL;
}

bool dmb_fence_is_chain(struct dmabuf_fence *f)
{
	return to_chain(f) != NULL;
}

struct dmabuf_fence *dmb_fence_chain_contained(struct dmabuf_fence *f)
{
	struct dmb_fence_chain *c = to_chain(f);

	return c ? c->fence : f;
}

/* A reference to the link before c (dma_fence_chain_get_prev()). */
static struct dmabuf_fence *chain_get_prev(struct dmb_fence_chain *c)
{
	struct dmabuf_fence *p;

	pthread_mutex_lock(&c->prev_lock);
	p = dmabuf_fence_get(c->prev);
	pthread_mutex_unlock(&c->prev_lock);
	return p;
}

DMABUF_EXPORT struct dmabuf_fence *dmabuf_fence_chain_walk(struct dmabuf_fence *fence)
{
	struct dmb_fence_chain *c = to_chain(fence);
	struct dmabuf_fence *prev;

	if (!c) {
		dmabuf_fence_put(fence);
		return NULL;
	}
	/* Unlink every signalled link right before c, then stop at the
	 * first pending one. */
	while ((prev = chain_get_prev(c))) {
		struct dmb_fence_chain *pc = to_chain(prev);
		struct dmabuf_fence *repl, *drop;

		if (pc) {
			if (!dmabuf_fence_is_signaled(pc->fence))
				break;
			repl = chain_get_prev(pc);
		} else {
			if (!dmabuf_fence_is_signaled(prev))
				break;
			repl = NULL;
		}
		pthread_mutex_lock(&c->prev_lock);
		if (c->prev == prev) {
			c->prev = repl;		/* takes repl's reference */
			drop = prev;		/* the link's old reference */
		} else {
			drop = repl;		/* someone else unlinked it */
		}
		pthread_mutex_unlock(&c->prev_lock);
		dmabuf_fence_put(drop);
		dmabuf_fence_put(prev);
	}
	dmabuf_fence_put(fence);
	return prev;
}

DMABUF_EXPORT int dmabuf_fence_chain_find_seqno(struct dmabuf_fence **pfence,
						uint64_t seqno)
{
	struct dmabuf_fence *head, *it;

	if (!pfence)
		return -EINVAL;
	if (!seqno)
		return 0;
	head = *pfence;
	if (!to_chain(head) || !dmb_fence_live(head) || head->seqno < seqno)
		return -EINVAL;
	for (it = dmabuf_fence_get(head); it; it = dmabuf_fence_chain_walk(it))
		if (it->context != head->context ||
		    to_chain(it)->prev_seqno < seqno)
			break;
	dmabuf_fence_put(head);
	*pfence = it;
	return 0;
}

static const char *chain_driver_name(struct dmabuf_fence *f)
{
	return "dma_fence_chain";
}

static const char *chain_timeline_name(struct dmabuf_fence *f)
{
	return "unbound";
}

static void chain_done(struct dmabuf_fence *node)
{
	if (atomic_fetch_sub(&to_chain(node)->pending, 1) == 1)
		dmb_fence_signal_ts(node, 0, dmb_now_ns());
}

/* Runs under the child's lock, in the thread that signals the child. */
static void chain_cb_func(struct dmabuf_fence *child, struct dmabuf_fence_cb *cb)
{
	struct dmb_chain_cb *ccb = dmb_container_of(cb, struct dmb_chain_cb, cb);
	struct dmabuf_fence *node = ccb->node;

	chain_done(node);
	dmabuf_fence_put(node);
}

/* ops->enable_signaling, once, no lock held: collect the pending fences
 * of the chain (collecting signalled links on the way) and watch them. */
static bool chain_enable_signaling(struct dmabuf_fence *f)
{
	struct dmb_fence_chain *c = to_chain(f);
	unsigned int n = 0, cap = 0;
	struct dmb_chain_cb *cbs = NULL;

	for (struct dmabuf_fence *it = dmabuf_fence_get(f); it;
	     it = dmabuf_fence_chain_walk(it)) {
		struct dmabuf_fence *child = dmb_fence_chain_contained(it);

		if (dmabuf_fence_is_signaled(child))
			continue;
		if (n == cap) {
			unsigned int ncap = cap ? 2 * cap : 4;
			struct dmb_chain_cb *m = realloc(cbs, ncap * sizeof(*m));

			if (!m) {
				/* No memory to watch: the status queries
				 * (ops->signaled) still find completion. */
				dmabuf_fence_put(it);
				break;
			}
			cbs = m;
			cap = ncap;
		}
		cbs[n].child = dmabuf_fence_get(child);
		cbs[n].node = NULL;
		n++;
	}
	c->cbs = cbs;
	c->ncbs = n;
	atomic_store(&c->pending, n + 1);
	for (unsigned int i = 0; i < n; i++) {
		atomic_fetch_add(&f->refcount, 1);
		cbs[i].node = f;
		if (dmabuf_fence_add_callback(cbs[i].child, &cbs[i].cb, chain_cb_func)) {
			chain_done(f);
			dmabuf_fence_put(f);
		}
	}
	chain_done(f);
	return true;
}

/* ops->signaled: this fence and every one before it have signalled. */
static bool chain_signaled(struct dmabuf_fence *f)
{
	for (struct dmabuf_fence *it = dmabuf_fence_get(f); it;
	     it = dmabuf_fence_chain_walk(it)) {
		if (!dmabuf_fence_is_signaled(dmb_fence_chain_contained(it))) {
			dmabuf_fence_put(it);
			return false;
		}
	}
	return true;
}

/* As dma_fence_chain_set_deadline(): the fence of every pending link. */
static void chain_set_deadline(struct dmabuf_fence *f, int64_t deadline_ns)
{
	for (struct dmabuf_fence *it = dmabuf_fence_get(f); it;
	     it = dmabuf_fence_chain_walk(it))
		dmabuf_fence_set_deadline(dmb_fence_chain_contained(it), deadline_ns);
}

/* Drops the links iteratively: a long chain freed by its last reference
 * must not recurse once per link. */
static void chain_release(struct dmabuf_fence *f)
{
	struct dmb_fence_chain *c = to_chain(f);
	struct dmabuf_fence *prev = c->prev;

	c->prev = NULL;
	while (prev && to_chain(prev) &&
	       atomic_load(&prev->refcount) == 1) {
		struct dmb_fence_chain *pc = to_chain(prev);
		struct dmabuf_fence *pp;

		pthread_mutex_lock(&pc->prev_lock);
		pp = pc->prev;
		pc->prev = NULL;
		pthread_mutex_unlock(&pc->prev_lock);
		dmabuf_fence_put(prev);
		prev = pp;
	}
	dmabuf_fence_put(prev);
	for (unsigned int i = 0; i < c->ncbs; i++)
		dmabuf_fence_put(c->cbs[i].child);
	free(c->cbs);
	dmabuf_fence_put(c->fence);
	pthread_mutex_destroy(&c->prev_lock);
}

static const struct dmabuf_fence_ops chain_ops = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = chain_driver_name,
	.get_timeline_name = chain_timeline_name,
	.release = chain_release,
	.enable_signaling = chain_enable_signaling,
	.signaled = chain_signaled,
	.use_64bit_seqno = true,
	.set_deadline = chain_set_deadline,
};

DMABUF_EXPORT int dmabuf_fence_chain_new(struct dmabuf_fence *prev,
					 struct dmabuf_fence *fence,
					 uint64_t seqno, struct dmabuf_fence **out)
{
	struct dmb_fence_chain *pc = to_chain(prev), *c;
	struct dmabuf_fence *f;
	uint64_t context, prev_seqno = 0;
	int ret;

	if (!out || !dmb_fence_live(fence) || (prev && !dmb_fence_live(prev)))
		return -EINVAL;
	/* As dma_fence_chain_init(): a later seqno continues prev's
	 * timeline; anything else starts a new one, never going back. */
	if (pc && seqno > prev->seqno) {
		prev_seqno = prev->seqno;
		context = prev->context;
	} else {
		context = dmabuf_fence_context_alloc(1);
		if (pc && prev->seqno > seqno)
			seqno = prev->seqno;
	}
	ret = dmb_fence_create(&chain_ops, sizeof(*c), NULL, context, seqno, 0, &f);
	if (ret)
		return ret;
	c = dmb_container_of(f, struct dmb_fence_chain, base);
	pthread_mutex_init(&c->prev_lock, NULL);
	c->prev = dmabuf_fence_get(prev);
	c->prev_seqno = prev_seqno;
	c->fence = dmabuf_fence_get(fence);
	*out = f;
	return 0;
}

DMABUF_EXPORT struct dmabuf_fence *dmabuf_fence_chain_get_fence(struct dmabuf_fence *fence)
{
	if (!dmb_fence_live(fence))
		return NULL;
	return dmb_fence_chain_contained(fence);
}

/* Calls fn for each fence a chain holds, head first, without collecting
 * (for unwrap). Stops when fn returns false. Each link is held while fn
 * runs, so a concurrent walk that unlinks it cannot free it under us. */
void dmb_fence_chain_for_each_contained(struct dmabuf_fence *f,
					bool (*fn)(void *d, struct dmabuf_fence *c),
					void *d)
{
	struct dmabuf_fence *it = dmabuf_fence_get(f);

	while (it) {
		struct dmb_fence_chain *ic = to_chain(it);
		struct dmabuf_fence *next;

		if (!fn(d, ic ? ic->fence : it) || !ic) {
			dmabuf_fence_put(it);
			return;
		}
		next = chain_get_prev(ic);
		dmabuf_fence_put(it);
		it = next;
	}
}
