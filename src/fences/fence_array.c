/* SPDX-License-Identifier: MIT */
/*
 * Fence arrays and merging (dma_fence_array, dma_fence_unwrap_merge): an
 * array signals when every fence in it has, with the first error among them.
 *
 * An array is a subtype of the base fence (struct dmb_fence_array embeds
 * it) with its own ops. As the kernel's, it is lazy: it watches its fences
 * only once signalling is enabled (a callback, a wait, a sync-file export);
 * until then a status query looks at the fences themselves, and an array
 * nobody waits for is freed with its last reference. Once enabled, each
 * pending fence holds a callback that holds a reference to the array, so an
 * array cannot go away under a fence that is signalling.
 */
#include <stdlib.h>
#include <string.h>

#include "fence_private.h"

struct dmb_array_cb {
	struct dmabuf_fence_cb cb;
	struct dmabuf_fence *array;
};

struct dmb_fence_array {
	struct dmabuf_fence base;
	unsigned int n;
	atomic_uint pending;
	atomic_int error;
	struct dmabuf_fence **fences;	/* references, sorted by context */
	struct dmb_array_cb *cbs;
};

static struct dmb_fence_array *to_array(struct dmabuf_fence *f)
{
	return dmb_container_of(f, struct dmb_fence_array, base);
}

static const char *array_driver_name(struct dmabuf_fence *f)
{
	return "dma_fence_array";
}

static const char *array_timeline_name(struct dmabuf_fence *f)
{
	return "unbound";
}

static void array_child_done(struct dmabuf_fence *array, int child_status)
{
	struct dmb_fence_array *a = to_array(array);
	int zero = 0;

	if (child_status < 0)
		atomic_compare_exchange_strong(&a->error, &zero, child_status);
	if (atomic_fetch_sub(&a->pending, 1) == 1)
		dmb_fence_signal_ts(array, atomic_load(&a->error), dmb_now_ns());
}

/* Runs under the child's lock, in the thread that signals the child. */
static void array_cb_func(struct dmabuf_fence *child, struct dmabuf_fence_cb *cb)
{
	struct dmb_array_cb *acb = dmb_container_of(cb, struct dmb_array_cb, cb);
	struct dmabuf_fence *array = acb->array;

	array_child_done(array, child->error);
	dmabuf_fence_put(array);
}

/* ops->enable_signaling, once, no lock held: watch every fence. */
static bool array_enable_signaling(struct dmabuf_fence *f)
{
	struct dmb_fence_array *a = to_array(f);

	for (unsigned int i = 0; i < a->n; i++) {
		struct dmb_array_cb *acb = &a->cbs[i];

		atomic_fetch_add(&f->refcount, 1);
		acb->array = f;
		if (dmabuf_fence_add_callback(a->fences[i], &acb->cb, array_cb_func)) {
			/* Signalled meanwhile: account for it here. */
			array_child_done(f, dmabuf_fence_get_status(a->fences[i]));
			dmabuf_fence_put(f);
		}
	}
	/* The extra count taken at creation: the array could not signal
	 * while callbacks were still being added. */
	array_child_done(f, 0);
	return true;
}

/* ops->signaled: every fence has signalled. Signals the array itself with
 * the first error (a callback in flight may signal it first: same end). */
static bool array_signaled(struct dmabuf_fence *f)
{
	struct dmb_fence_array *a = to_array(f);
	int error = 0;

	for (unsigned int i = 0; i < a->n; i++) {
		int st = dmabuf_fence_get_status(a->fences[i]);

		if (st == 0)
			return false;
		if (st < 0 && !error)
			error = st;
	}
	if (atomic_load(&a->error))
		error = atomic_load(&a->error);
	dmb_fence_signal_ts(f, error, dmb_now_ns());
	return true;
}

static void array_release(struct dmabuf_fence *f)
{
	struct dmb_fence_array *a = to_array(f);

	for (unsigned int i = 0; i < a->n; i++)
		dmabuf_fence_put(a->fences[i]);
	free(a->fences);
	free(a->cbs);
}

/* As dma_fence_array_set_deadline(): every fence gets the hint. */
static void array_set_deadline(struct dmabuf_fence *f, int64_t deadline_ns)
{
	struct dmb_fence_array *a = to_array(f);

	for (unsigned int i = 0; i < a->n; i++)
		dmabuf_fence_set_deadline(a->fences[i], deadline_ns);
}

static const struct dmabuf_fence_ops array_ops = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = array_driver_name,
	.get_timeline_name = array_timeline_name,
	.release = array_release,
	.enable_signaling = array_enable_signaling,
	.signaled = array_signaled,
	.set_deadline = array_set_deadline,
};

static unsigned int array_count(struct dmabuf_fence *f)
{
	return f->ops == &array_ops ? to_array(f)->n : 1;
}

static struct dmabuf_fence *array_child(struct dmabuf_fence *f, unsigned int i)
{
	return f->ops == &array_ops ? to_array(f)->fences[i] : f;
}

/* The unwrap walk (dma_fence_unwrap_for_each()): the fences of a chain's
 * links, head first, each array flattened into its fences. */
struct unwrap_walk {
	unsigned int seen, want;
	struct dmabuf_fence *found;
};

static bool unwrap_step(void *d, struct dmabuf_fence *f)
{
	struct unwrap_walk *w = d;
	unsigned int n = array_count(f);

	if (!w->found && w->want >= w->seen && w->want < w->seen + n)
		w->found = array_child(f, w->want - w->seen);
	w->seen += n;
	return !w->found;
}

unsigned int dmb_fence_unwrap_count(struct dmabuf_fence *f)
{
	struct unwrap_walk w = { .want = ~0u };

	if (!dmb_fence_is_chain(f))
		return array_count(f);
	dmb_fence_chain_for_each_contained(f, unwrap_step, &w);
	return w.seen;
}

struct dmabuf_fence *dmb_fence_unwrap_child(struct dmabuf_fence *f, unsigned int i)
{
	struct unwrap_walk w = { .want = i };

	if (!dmb_fence_is_chain(f))
		return array_child(f, i);
	dmb_fence_chain_for_each_contained(f, unwrap_step, &w);
	return w.found;
}

/* Takes over the references in fences[] (n >= 2, distinct contexts). */
static int array_create(struct dmabuf_fence **fences, unsigned int n,
			struct dmabuf_fence **out)
{
	struct dmb_array_cb *cbs;
	struct dmabuf_fence *f;
	struct dmb_fence_array *a;
	int ret;

	cbs = calloc(n, sizeof(*cbs));
	if (!cbs)
		return -ENOMEM;
	ret = dmb_fence_create(&array_ops, sizeof(*a), NULL,
			       dmabuf_fence_context_alloc(1), 1, 0, &f);
	if (ret) {
		free(cbs);
		return ret;
	}
	a = to_array(f);
	a->n = n;
	a->fences = fences;
	a->cbs = cbs;
	atomic_init(&a->pending, n + 1);
	atomic_init(&a->error, 0);
	*out = f;
	return 0;
}

DMABUF_EXPORT int dmabuf_fence_unwrap(struct dmabuf_fence *f,
				      struct dmabuf_fence **fences, unsigned int max)
{
	unsigned int n;

	if (!dmb_fence_live(f) || (max && !fences))
		return -EINVAL;
	n = dmb_fence_unwrap_count(f);
	for (unsigned int i = 0; i < n && i < max; i++)
		fences[i] = dmb_fence_unwrap_child(f, i);
	return (int)n;
}

/* As the kernel's fence_cmp(): by context, and the later fence first
 * within one, so that deduplication keeps the first of each context. */
static int fence_cmp(const void *pa, const void *pb)
{
	struct dmabuf_fence *a = *(struct dmabuf_fence *const *)pa;
	struct dmabuf_fence *b = *(struct dmabuf_fence *const *)pb;

	if (a->context != b->context)
		return a->context < b->context ? -1 : 1;
	if (dmb_fence_is_later(b, a))
		return 1;
	if (dmb_fence_is_later(a, b))
		return -1;
	return 0;
}

/* A signalled stub carrying the latest timestamp of what was dropped, as
 * dma_fence_allocate_private_stub(timestamp). */
static int stub_at(int64_t ts, struct dmabuf_fence **out)
{
	int ret = dmabuf_fence_get_stub(out);

	if (!ret && ts)
		(*out)->timestamp = ts;
	return ret;
}

DMABUF_EXPORT int dmabuf_fence_merge(struct dmabuf_fence *const *in, unsigned int n,
				     struct dmabuf_fence **out)
{
	struct dmabuf_fence **keep;
	unsigned int total = 0, count = 0, j;
	int64_t ts = 0;
	int ret;

	if (!in || !n || !out)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++) {
		if (!dmb_fence_live(in[i]))
			return -EINVAL;
		total += dmb_fence_unwrap_count(in[i]);
	}
	keep = calloc(total, sizeof(*keep));
	if (!keep)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		for (unsigned int k = 0; k < dmb_fence_unwrap_count(in[i]); k++) {
			struct dmabuf_fence *f = dmb_fence_unwrap_child(in[i], k);

			if (!dmb_fence_test_signaled(f))
				keep[count++] = f;
			else if (f->timestamp > ts)
				ts = f->timestamp;
		}
	}
	if (count == 0) {
		free(keep);
		return stub_at(ts, out);
	}
	qsort(keep, count, sizeof(*keep), fence_cmp);
	/* One fence per context: the first, which is the latest. */
	for (unsigned int i = j = 1; i < count; i++)
		if (keep[i]->context != keep[j - 1]->context)
			keep[j++] = keep[i];
	count = j;
	for (unsigned int k = 0; k < count; k++)
		dmabuf_fence_get(keep[k]);
	if (count == 1) {
		*out = keep[0];
		free(keep);
		return 0;
	}
	ret = array_create(keep, count, out);
	if (ret) {
		for (unsigned int k = 0; k < count; k++)
			dmabuf_fence_put(keep[k]);
		free(keep);
	}
	return ret;
}
