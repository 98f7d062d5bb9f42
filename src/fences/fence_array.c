/* SPDX-License-Identifier: MIT */
/*
 * Fence arrays and merging (dma_fence_array, dma_fence_unwrap_merge): an
 * array signals when every fence in it has, with the first error among them.
 * Each pending child holds a callback that holds a reference to the array,
 * so an array cannot go away under a child that is signalling.
 */
#include <stdlib.h>
#include <string.h>

#include "fence_private.h"

struct dmb_array_cb {
	struct dmabuf_fence_cb cb;
	struct dmabuf_fence *array;
};

struct dmb_fence_array {
	unsigned int n;
	atomic_uint pending;
	atomic_int error;
	struct dmabuf_fence **fences;	/* references */
	struct dmb_array_cb *cbs;
};

static const char *array_driver_name(struct dmabuf_fence *f)
{
	return "dma_fence_array";
}

static const char *array_timeline_name(struct dmabuf_fence *f)
{
	return "unbound";
}

static const struct dmabuf_fence_ops array_ops = {
	.get_driver_name = array_driver_name,
	.get_timeline_name = array_timeline_name,
};

static void array_child_done(struct dmabuf_fence *array, int child_status)
{
	struct dmb_fence_array *a = array->array;
	int zero = 0;

	if (child_status < 0)
		atomic_compare_exchange_strong(&a->error, &zero, child_status);
	if (atomic_fetch_sub(&a->pending, 1) == 1) {
		pthread_mutex_lock(&array->lock);
		dmb_fence_signal_locked(array, atomic_load(&a->error), dmb_now_ns());
		pthread_mutex_unlock(&array->lock);
	}
}

/* Runs under the child's lock, in the thread that signals the child. */
static void array_cb_func(struct dmabuf_fence *child, struct dmabuf_fence_cb *cb)
{
	struct dmb_array_cb *acb = dmb_container_of(cb, struct dmb_array_cb, cb);
	struct dmabuf_fence *array = acb->array;

	array_child_done(array, child->error);
	dmabuf_fence_put(array);
}

void dmb_fence_array_fini(struct dmabuf_fence *f)
{
	struct dmb_fence_array *a = f->array;

	if (!a)
		return;
	for (unsigned int i = 0; i < a->n; i++)
		dmabuf_fence_put(a->fences[i]);
	free(a->fences);
	free(a->cbs);
	free(a);
	f->array = NULL;
}

unsigned int dmb_fence_array_count(struct dmabuf_fence *f)
{
	return f->kind == DMB_FENCE_ARRAY && f->array ? f->array->n : 1;
}

struct dmabuf_fence *dmb_fence_array_child(struct dmabuf_fence *f, unsigned int i)
{
	return f->kind == DMB_FENCE_ARRAY && f->array ? f->array->fences[i] : f;
}

/* Takes over the references in fences[] (n >= 2, all distinct contexts). */
static int array_create(struct dmabuf_fence **fences, unsigned int n,
			struct dmabuf_fence **out)
{
	struct dmb_fence_array *a;
	struct dmabuf_fence *f;
	int ret;

	a = calloc(1, sizeof(*a));
	if (a)
		a->cbs = calloc(n, sizeof(*a->cbs));
	if (!a || !a->cbs) {
		free(a);
		return -ENOMEM;
	}
	ret = dmb_fence_create(&array_ops, NULL, dmabuf_fence_context_alloc(1), 1,
			       DMB_FENCE_ARRAY, &f);
	if (ret) {
		free(a->cbs);
		free(a);
		return ret;
	}
	a->n = n;
	a->fences = fences;
	/* One extra count so the array cannot signal while callbacks are
	 * still being added. */
	atomic_init(&a->pending, n + 1);
	atomic_init(&a->error, 0);
	f->array = a;
	for (unsigned int i = 0; i < n; i++) {
		struct dmb_array_cb *acb = &a->cbs[i];

		atomic_fetch_add(&f->refcount, 1);
		acb->array = f;
		ret = dmabuf_fence_add_callback(fences[i], &acb->cb, array_cb_func);
		if (ret) {
			/* Signalled meanwhile: account for it here. */
			array_child_done(f, dmabuf_fence_get_status(fences[i]));
			dmabuf_fence_put(f);
		}
	}
	array_child_done(f, 0);
	*out = f;
	return 0;
}

DMABUF_EXPORT int dmabuf_fence_unwrap(struct dmabuf_fence *f,
				      struct dmabuf_fence **fences, unsigned int max)
{
	unsigned int n;

	if (!dmb_fence_live(f) || (max && !fences))
		return -EINVAL;
	n = dmb_fence_array_count(f);
	for (unsigned int i = 0; i < n && i < max; i++)
		fences[i] = dmb_fence_array_child(f, i);
	return (int)n;
}

DMABUF_EXPORT int dmabuf_fence_merge(struct dmabuf_fence *const *in, unsigned int n,
				     struct dmabuf_fence **out)
{
	struct dmabuf_fence **keep;
	unsigned int total = 0, count = 0;
	int ret;

	if (!in || !n || !out)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++) {
		if (!dmb_fence_live(in[i]))
			return -EINVAL;
		total += dmb_fence_array_count(in[i]);
	}
	keep = calloc(total, sizeof(*keep));
	if (!keep)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++) {
		for (unsigned int j = 0; j < dmb_fence_array_count(in[i]); j++) {
			struct dmabuf_fence *f = dmb_fence_array_child(in[i], j);
			unsigned int k;

			if (dmabuf_fence_is_signaled(f))
				continue;
			/* One fence per context: the later one wins. */
			for (k = 0; k < count; k++)
				if (keep[k]->context == f->context)
					break;
			if (k == count)
				keep[count++] = f;
			else if (f->seqno > keep[k]->seqno)
				keep[k] = f;
		}
	}
	if (count == 0) {
		free(keep);
		return dmabuf_fence_get_stub(out);
	}
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
