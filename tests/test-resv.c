/* SPDX-License-Identifier: MIT */
/* Reservation objects: mirrors the kernel's dma-resv selftests
 * (st-dma-resv.c), run for every usage level, plus the replacement rule. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "dmabuf-fence.h"

static const char *mock_name(struct dmabuf_fence *f)
{
	return "mock";
}

static const struct dmabuf_fence_ops mock_ops = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = mock_name,
	.get_timeline_name = mock_name,
};

static struct dmabuf_fence *fence_at(uint64_t ctx, uint64_t seqno)
{
	struct dmabuf_fence *f = NULL;

	assert_int_equal(dmabuf_fence_new(&mock_ops, NULL, ctx, seqno, &f), 0);
	return f;
}

static struct dmabuf_fence *alloc_fence(void)
{
	return fence_at(dmabuf_fence_context_alloc(1), 1);
}

static const enum dmabuf_resv_usage usages[] = {
	DMABUF_RESV_USAGE_KERNEL, DMABUF_RESV_USAGE_WRITE,
	DMABUF_RESV_USAGE_READ, DMABUF_RESV_USAGE_BOOKKEEP,
};

static void test_sanity(void **state)
{
	struct dmabuf_resv *r = NULL;
	struct dmabuf_fence *f = alloc_fence();

	assert_int_equal(dmabuf_resv_new(&r), 0);
	assert_int_equal(dmabuf_resv_test_signaled(r, DMABUF_RESV_USAGE_BOOKKEEP), 1);
	assert_int_equal(dmabuf_resv_add_fence(r, f, 4), -EINVAL);
	assert_int_equal(dmabuf_resv_test_signaled(r, 7), -EINVAL);
	/* The object holds its own reference. */
	assert_int_equal(dmabuf_resv_add_fence(r, f, DMABUF_RESV_USAGE_WRITE), 0);
	dmabuf_fence_signal(f);
	dmabuf_fence_put(f);
	assert_int_equal(dmabuf_resv_test_signaled(r, DMABUF_RESV_USAGE_WRITE), 1);
	dmabuf_resv_destroy(r);
	dmabuf_resv_destroy(NULL);
}

static void test_signaling(void **state)
{
	for (unsigned int u = 0; u < 4; u++) {
		struct dmabuf_resv *r;
		struct dmabuf_fence *f = alloc_fence();

		assert_int_equal(dmabuf_resv_new(&r), 0);
		assert_int_equal(dmabuf_resv_add_fence(r, f, usages[u]), 0);
		/* Seen at its usage and every weaker query... */
		for (unsigned int q = u; q < 4; q++)
			assert_int_equal(dmabuf_resv_test_signaled(r, usages[q]), 0);
		/* ...not by stronger queries. */
		for (unsigned int q = 0; q < u; q++)
			assert_int_equal(dmabuf_resv_test_signaled(r, usages[q]), 1);
		dmabuf_fence_signal(f);
		assert_int_equal(dmabuf_resv_test_signaled(r, usages[u]), 1);
		dmabuf_fence_put(f);
		dmabuf_resv_destroy(r);
	}
}

struct iter {
	struct dmabuf_fence *want;
	enum dmabuf_resv_usage usage;
	int found, others;
};

static int iter_fn(void *data, struct dmabuf_fence *f, enum dmabuf_resv_usage usage)
{
	struct iter *it = data;

	if (f == it->want && usage == it->usage)
		it->found++;
	else
		it->others++;
	return 0;
}

static void test_for_each(void **state)
{
	for (unsigned int u = 0; u < 4; u++) {
		struct dmabuf_resv *r;
		struct dmabuf_fence *f = alloc_fence();
		struct iter it = { .want = f, .usage = usages[u] };

		assert_int_equal(dmabuf_resv_new(&r), 0);
		assert_int_equal(dmabuf_resv_add_fence(r, f, usages[u]), 0);
		assert_int_equal(dmabuf_resv_for_each_fence(r, usages[u], iter_fn, &it), 1);
		assert_int_equal(it.found, 1);
		assert_int_equal(it.others, 0);
		if (u > 0) {
			it.found = 0;
			assert_int_equal(dmabuf_resv_for_each_fence(r, usages[u - 1],
								    iter_fn, &it), 0);
			assert_int_equal(it.found, 0);
		}
		dmabuf_fence_signal(f);
		dmabuf_fence_put(f);
		dmabuf_resv_destroy(r);
	}
}

static int stop_fn(void *data, struct dmabuf_fence *f, enum dmabuf_resv_usage usage)
{
	return ++*(int *)data == 2 ? 42 : 0;
}

static void test_for_each_stop(void **state)
{
	struct dmabuf_resv *r;
	struct dmabuf_fence *f[3];
	int n = 0;

	assert_int_equal(dmabuf_resv_new(&r), 0);
	for (int i = 0; i < 3; i++) {
		f[i] = alloc_fence();
		dmabuf_resv_add_fence(r, f[i], DMABUF_RESV_USAGE_READ);
	}
	assert_int_equal(dmabuf_resv_for_each_fence(r, DMABUF_RESV_USAGE_READ, stop_fn, &n), 42);
	assert_int_equal(n, 2);
	for (int i = 0; i < 3; i++) {
		dmabuf_fence_signal(f[i]);
		dmabuf_fence_put(f[i]);
	}
	dmabuf_resv_destroy(r);
}

static void test_get_fences(void **state)
{
	for (unsigned int u = 0; u < 4; u++) {
		struct dmabuf_resv *r;
		struct dmabuf_fence *f = alloc_fence(), **fences = NULL;
		unsigned int n = 99;

		assert_int_equal(dmabuf_resv_new(&r), 0);
		assert_int_equal(dmabuf_resv_add_fence(r, f, usages[u]), 0);
		assert_int_equal(dmabuf_resv_get_fences(r, usages[u], &fences, &n), 0);
		assert_int_equal(n, 1);
		assert_ptr_equal(fences[0], f);
		dmabuf_resv_put_fences(fences, n);
		if (u > 0) {
			assert_int_equal(dmabuf_resv_get_fences(r, usages[u - 1], &fences, &n), 0);
			assert_int_equal(n, 0);
			assert_null(fences);
		}
		dmabuf_fence_signal(f);
		dmabuf_fence_put(f);
		dmabuf_resv_destroy(r);
	}
}

/* One fence per usage: a query returns its level and all stronger ones. */
static void test_usage_levels(void **state)
{
	struct dmabuf_resv *r;
	struct dmabuf_fence *f[4], **fences;
	unsigned int n;

	assert_int_equal(dmabuf_resv_new(&r), 0);
	for (int u = 0; u < 4; u++) {
		f[u] = alloc_fence();
		assert_int_equal(dmabuf_resv_add_fence(r, f[u], usages[u]), 0);
	}
	for (int q = 0; q < 4; q++) {
		assert_int_equal(dmabuf_resv_get_fences(r, usages[q], &fences, &n), 0);
		assert_int_equal(n, q + 1);
		for (unsigned int i = 0; i < n; i++)
			assert_ptr_equal(fences[i], f[i]);
		dmabuf_resv_put_fences(fences, n);
	}
	/* Signalling the KERNEL and WRITE fences satisfies WRITE only. */
	dmabuf_fence_signal(f[0]);
	dmabuf_fence_signal(f[1]);
	assert_int_equal(dmabuf_resv_test_signaled(r, DMABUF_RESV_USAGE_WRITE), 1);
	assert_int_equal(dmabuf_resv_test_signaled(r, DMABUF_RESV_USAGE_READ), 0);
	assert_int_equal(dmabuf_resv_wait(r, DMABUF_RESV_USAGE_WRITE, 0), 1);
	assert_int_equal(dmabuf_resv_wait(r, DMABUF_RESV_USAGE_READ, 10), 0);
	for (int u = 2; u < 4; u++)
		dmabuf_fence_signal(f[u]);
	assert_int_equal(dmabuf_resv_wait(r, DMABUF_RESV_USAGE_BOOKKEEP, 0), 1);
	for (int u = 0; u < 4; u++)
		dmabuf_fence_put(f[u]);
	dmabuf_resv_destroy(r);
}

static unsigned int count_at(struct dmabuf_resv *r, enum dmabuf_resv_usage u)
{
	struct dmabuf_fence **fences;
	unsigned int n;

	assert_int_equal(dmabuf_resv_get_fences(r, u, &fences, &n), 0);
	dmabuf_resv_put_fences(fences, n);
	return n;
}

static void test_replace(void **state)
{
	uint64_t ctx = dmabuf_fence_context_alloc(1);
	struct dmabuf_resv *r;
	struct dmabuf_fence *a = fence_at(ctx, 1), *b = fence_at(ctx, 2);
	struct dmabuf_fence *c = fence_at(ctx, 3), *d = fence_at(ctx, 4);
	struct dmabuf_fence *other = alloc_fence(), **fences;
	unsigned int n;

	assert_int_equal(dmabuf_resv_new(&r), 0);
	dmabuf_resv_add_fence(r, a, DMABUF_RESV_USAGE_READ);
	dmabuf_resv_add_fence(r, other, DMABUF_RESV_USAGE_READ);
	/* Same context, later, stronger usage: replaces a (still pending). */
	dmabuf_resv_add_fence(r, b, DMABUF_RESV_USAGE_WRITE);
	assert_int_equal(count_at(r, DMABUF_RESV_USAGE_BOOKKEEP), 2);
	assert_int_equal(count_at(r, DMABUF_RESV_USAGE_WRITE), 1);
	/* Weaker usage does not replace a stronger one: both stay. */
	dmabuf_resv_add_fence(r, c, DMABUF_RESV_USAGE_BOOKKEEP);
	assert_int_equal(count_at(r, DMABUF_RESV_USAGE_BOOKKEEP), 3);
	assert_int_equal(dmabuf_resv_get_fences(r, DMABUF_RESV_USAGE_WRITE, &fences, &n), 0);
	assert_int_equal(n, 1);
	assert_ptr_equal(fences[0], b);
	dmabuf_resv_put_fences(fences, n);
	/* Signalled fences are dropped on the next add. */
	dmabuf_fence_signal(other);
	dmabuf_fence_signal(a);
	dmabuf_resv_add_fence(r, d, DMABUF_RESV_USAGE_KERNEL);
	/* d replaced b (same context, stronger, later) and c; other went. */
	assert_int_equal(count_at(r, DMABUF_RESV_USAGE_BOOKKEEP), 1);
	assert_int_equal(count_at(r, DMABUF_RESV_USAGE_KERNEL), 1);
	/* Adding the same fence twice keeps one entry. */
	dmabuf_resv_add_fence(r, d, DMABUF_RESV_USAGE_KERNEL);
	assert_int_equal(count_at(r, DMABUF_RESV_USAGE_BOOKKEEP), 1);
	dmabuf_fence_signal(b);
	dmabuf_fence_signal(c);
	dmabuf_fence_signal(d);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
	dmabuf_fence_put(c);
	dmabuf_fence_put(d);
	dmabuf_fence_put(other);
	dmabuf_resv_destroy(r);
}

static void *signal_later(void *arg)
{
	struct timespec ts = { 0, 20 * 1000000 };

	nanosleep(&ts, NULL);
	dmabuf_fence_signal(arg);
	return NULL;
}

static void test_wait(void **state)
{
	struct dmabuf_resv *r;
	struct dmabuf_fence *w = alloc_fence(), *rd = alloc_fence();
	pthread_t t;

	assert_int_equal(dmabuf_resv_new(&r), 0);
	dmabuf_resv_add_fence(r, w, DMABUF_RESV_USAGE_WRITE);
	dmabuf_resv_add_fence(r, rd, DMABUF_RESV_USAGE_READ);
	assert_int_equal(dmabuf_resv_wait(r, DMABUF_RESV_USAGE_WRITE, 20), 0);
	assert_int_equal(pthread_create(&t, NULL, signal_later, w), 0);
	/* A reader waits for the writer only. */
	assert_int_equal(dmabuf_resv_wait(r, DMABUF_RESV_USAGE_WRITE, 10000), 1);
	assert_int_equal(dmabuf_resv_wait(r, DMABUF_RESV_USAGE_READ, 0), 0);
	pthread_join(t, NULL);
	dmabuf_fence_signal(rd);
	assert_int_equal(dmabuf_resv_wait(r, DMABUF_RESV_USAGE_READ, -1), 1);
	dmabuf_fence_put(w);
	dmabuf_fence_put(rd);
	dmabuf_resv_destroy(r);
}

static void test_singleton(void **state)
{
	struct dmabuf_resv *r;
	struct dmabuf_fence *a = alloc_fence(), *b = alloc_fence(), *s;

	assert_int_equal(dmabuf_resv_new(&r), 0);
	assert_int_equal(dmabuf_resv_get_singleton(r, DMABUF_RESV_USAGE_READ, &s), 0);
	assert_null(s);
	dmabuf_resv_add_fence(r, a, DMABUF_RESV_USAGE_WRITE);
	assert_int_equal(dmabuf_resv_get_singleton(r, DMABUF_RESV_USAGE_READ, &s), 0);
	assert_ptr_equal(s, a);
	dmabuf_fence_put(s);
	dmabuf_resv_add_fence(r, b, DMABUF_RESV_USAGE_READ);
	assert_int_equal(dmabuf_resv_get_singleton(r, DMABUF_RESV_USAGE_READ, &s), 0);
	assert_int_equal(dmabuf_fence_unwrap(s, NULL, 0), 2);
	dmabuf_fence_signal(a);
	assert_false(dmabuf_fence_is_signaled(s));
	dmabuf_fence_signal(b);
	assert_true(dmabuf_fence_is_signaled(s));
	dmabuf_fence_put(s);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
	dmabuf_resv_destroy(r);
}

static void test_lock_nesting(void **state)
{
	struct dmabuf_resv *r;
	struct dmabuf_fence *f = alloc_fence();

	assert_int_equal(dmabuf_resv_new(&r), 0);
	/* Test-then-add under the caller's lock; internal calls nest. */
	dmabuf_resv_lock(r);
	if (dmabuf_resv_test_signaled(r, DMABUF_RESV_USAGE_WRITE) == 1)
		assert_int_equal(dmabuf_resv_add_fence(r, f, DMABUF_RESV_USAGE_WRITE), 0);
	dmabuf_resv_unlock(r);
	assert_int_equal(dmabuf_resv_test_signaled(r, DMABUF_RESV_USAGE_WRITE), 0);
	dmabuf_fence_signal(f);
	dmabuf_fence_put(f);
	dmabuf_resv_destroy(r);
}

/* dma_resv_add_fence() compares seqnos as dma_fence_is_later_or_same():
 * on a sw_sync timeline about to wrap, the point past the wrap is the
 * later one, and an add of the earlier point must not replace it. */
static void test_replace_seqno_wrap(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *before, *after;
	struct dmabuf_resv *r;

	assert_int_equal(dmabuf_resv_new(&r), 0);
	assert_int_equal(dmabuf_timeline_new("wrap", &tl), 0);
	assert_int_equal(dmabuf_timeline_inc(tl, 0xfffffff0u), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 0xffffffffu, &before), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 2, &after), 0);
	assert_int_equal(dmabuf_resv_add_fence(r, after, DMABUF_RESV_USAGE_WRITE), 0);
	assert_int_equal(dmabuf_resv_add_fence(r, before, DMABUF_RESV_USAGE_WRITE), 0);
	assert_int_equal(count_at(r, DMABUF_RESV_USAGE_WRITE), 2);
	assert_int_equal(dmabuf_timeline_inc(tl, 0xf), 0);
	assert_int_equal(dmabuf_resv_test_signaled(r, DMABUF_RESV_USAGE_WRITE), 0);
	assert_int_equal(dmabuf_timeline_inc(tl, 3), 0);
	assert_int_equal(dmabuf_resv_test_signaled(r, DMABUF_RESV_USAGE_WRITE), 1);
	/* And the point past the wrap replaces the one before it. */
	dmabuf_resv_destroy(r);
	dmabuf_fence_put(before);
	dmabuf_fence_put(after);
	dmabuf_timeline_destroy(tl);
	assert_int_equal(dmabuf_resv_new(&r), 0);
	assert_int_equal(dmabuf_timeline_new("wrap", &tl), 0);
	assert_int_equal(dmabuf_timeline_inc(tl, 0xfffffff0u), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 0xfffffff8u, &before), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 3, &after), 0);
	assert_int_equal(dmabuf_resv_add_fence(r, before, DMABUF_RESV_USAGE_WRITE), 0);
	assert_int_equal(dmabuf_resv_add_fence(r, after, DMABUF_RESV_USAGE_WRITE), 0);
	assert_int_equal(count_at(r, DMABUF_RESV_USAGE_WRITE), 1);
	assert_false(dmabuf_fence_is_signaled(before));
	dmabuf_resv_destroy(r);
	dmabuf_fence_put(before);
	dmabuf_fence_put(after);
	dmabuf_timeline_destroy(tl);
}

/* st-dma-resv test_for_each_unlocked, for every usage: one fence, found
 * once with the restart flag on the first walk, and found again (flag on)
 * after a change of the object restarts the walk. The kernel test forces
 * the restart by corrupting the cursor; here another fence is added. */
static void test_for_each_unlocked(void **state)
{
	for (unsigned int u = 0; u < 4; u++) {
		struct dmabuf_resv_iter it = { .struct_size = sizeof(it) };
		struct dmabuf_resv *r;
		struct dmabuf_fence *f = alloc_fence(), *g = alloc_fence(), *x;
		int seen_f = 0, seen_g = 0, restarts = 0;

		assert_int_equal(dmabuf_resv_new(&r), 0);
		assert_int_equal(dmabuf_resv_add_fence(r, f, usages[u]), 0);
		assert_int_equal(dmabuf_resv_iter_begin(&it, r, usages[u]), 0);
		for (x = dmabuf_resv_iter_first_unlocked(&it); x;
		     x = dmabuf_resv_iter_next_unlocked(&it)) {
			if (dmabuf_resv_iter_is_restarted(&it)) {
				restarts++;
				seen_f = seen_g = 0;
			}
			assert_int_equal(dmabuf_resv_iter_get_usage(&it), usages[u]);
			if (x == f)
				seen_f++;
			else if (x == g)
				seen_g++;
			else
				fail();
			/* The first time round, change the object. */
			if (restarts == 1 && x == f && !seen_g)
				assert_int_equal(dmabuf_resv_add_fence(r, g, usages[u]), 0);
			assert_true(restarts <= 2);
		}
		dmabuf_resv_iter_end(&it);
		assert_int_equal(restarts, 2);
		assert_int_equal(seen_f, 1);
		assert_int_equal(seen_g, 1);
		/* A stronger query sees neither. */
		if (u > 0) {
			assert_int_equal(dmabuf_resv_iter_begin(&it, r, usages[u - 1]), 0);
			assert_null(dmabuf_resv_iter_first_unlocked(&it));
			dmabuf_resv_iter_end(&it);
		}
		dmabuf_fence_signal(f);
		dmabuf_fence_signal(g);
		dmabuf_fence_put(f);
		dmabuf_fence_put(g);
		dmabuf_resv_destroy(r);
	}
}

/* The unlocked cursor skips signalled fences (the locked for_each does
 * not), keeps a reference to the fence it returned, and checks its
 * arguments. */
static void test_iter_unlocked_rules(void **state)
{
	struct dmabuf_resv_iter it = { .struct_size = sizeof(it) };
	struct dmabuf_resv_iter small = { .struct_size = 4 };
	struct dmabuf_resv_iter zero = { 0 };
	struct dmabuf_resv *r;
	struct dmabuf_fence *a = alloc_fence(), *b = alloc_fence(), *x;

	assert_int_equal(dmabuf_resv_new(&r), 0);
	assert_int_equal(dmabuf_resv_iter_begin(NULL, r, 0), -EINVAL);
	assert_int_equal(dmabuf_resv_iter_begin(&it, NULL, 0), -EINVAL);
	assert_int_equal(dmabuf_resv_iter_begin(&it, r, 4), -EINVAL);
	assert_int_equal(dmabuf_resv_iter_begin(&small, r, 0), -EINVAL);
	assert_int_equal(dmabuf_resv_iter_begin(&zero, r, 0), 0);
	assert_null(dmabuf_resv_iter_first_unlocked(&zero));
	dmabuf_resv_iter_end(&zero);
	dmabuf_resv_iter_end(NULL);

	assert_int_equal(dmabuf_resv_add_fence(r, a, DMABUF_RESV_USAGE_READ), 0);
	assert_int_equal(dmabuf_resv_add_fence(r, b, DMABUF_RESV_USAGE_WRITE), 0);
	dmabuf_fence_signal(a);
	assert_int_equal(dmabuf_resv_iter_begin(&it, r, DMABUF_RESV_USAGE_BOOKKEEP), 0);
	x = dmabuf_resv_iter_first_unlocked(&it);
	assert_ptr_equal(x, b);
	assert_true(dmabuf_resv_iter_is_restarted(&it));
	assert_int_equal(dmabuf_resv_iter_get_usage(&it), DMABUF_RESV_USAGE_WRITE);
	/* The cursor's reference keeps b alive past the object's and ours. */
	dmabuf_fence_put(b);
	dmabuf_resv_destroy(r);
	assert_false(dmabuf_fence_is_signaled(x));
	dmabuf_fence_signal(x);
	dmabuf_resv_iter_end(&it);
	dmabuf_fence_put(a);
}

struct holder {
	struct dmabuf_resv *r;
	pthread_mutex_t m;
	pthread_cond_t c;
	bool held, release;
};

static void *hold_resv(void *arg)
{
	struct holder *h = arg;

	dmabuf_resv_lock(h->r);
	pthread_mutex_lock(&h->m);
	h->held = true;
	pthread_cond_broadcast(&h->c);
	while (!h->release)
		pthread_cond_wait(&h->c, &h->m);
	pthread_mutex_unlock(&h->m);
	dmabuf_resv_unlock(h->r);
	return NULL;
}

/* Every read (cursor, get, test, wait, for_each, singleton) works while
 * another thread holds the object's lock: none of them takes it, which
 * lets callers take the resv lock after their own locks. */
static void test_reads_do_not_take_the_lock(void **state)
{
	struct holder h = { .m = PTHREAD_MUTEX_INITIALIZER,
			    .c = PTHREAD_COND_INITIALIZER };
	struct dmabuf_resv_iter it = { .struct_size = sizeof(it) };
	struct dmabuf_fence *f = alloc_fence(), **arr, *one;
	struct iter cb = { .want = f, .usage = DMABUF_RESV_USAGE_READ };
	unsigned int n;
	pthread_t t;

	assert_int_equal(dmabuf_resv_new(&h.r), 0);
	assert_int_equal(dmabuf_resv_add_fence(h.r, f, DMABUF_RESV_USAGE_READ), 0);
	assert_int_equal(pthread_create(&t, NULL, hold_resv, &h), 0);
	pthread_mutex_lock(&h.m);
	while (!h.held)
		pthread_cond_wait(&h.c, &h.m);
	pthread_mutex_unlock(&h.m);

	assert_int_equal(dmabuf_resv_iter_begin(&it, h.r, DMABUF_RESV_USAGE_READ), 0);
	assert_ptr_equal(dmabuf_resv_iter_first_unlocked(&it), f);
	assert_null(dmabuf_resv_iter_next_unlocked(&it));
	dmabuf_resv_iter_end(&it);
	assert_int_equal(dmabuf_resv_test_signaled(h.r, DMABUF_RESV_USAGE_READ), 0);
	assert_int_equal(dmabuf_resv_wait(h.r, DMABUF_RESV_USAGE_READ, 0), 0);
	assert_int_equal(dmabuf_resv_get_fences(h.r, DMABUF_RESV_USAGE_READ, &arr, &n), 0);
	assert_int_equal(n, 1);
	dmabuf_resv_put_fences(arr, n);
	assert_int_equal(dmabuf_resv_get_singleton(h.r, DMABUF_RESV_USAGE_READ, &one), 0);
	assert_ptr_equal(one, f);
	dmabuf_fence_put(one);
	assert_int_equal(dmabuf_resv_for_each_fence(h.r, DMABUF_RESV_USAGE_READ,
						    iter_fn, &cb), 1);
	assert_int_equal(cb.found, 1);

	pthread_mutex_lock(&h.m);
	h.release = true;
	pthread_cond_broadcast(&h.c);
	pthread_mutex_unlock(&h.m);
	pthread_join(t, NULL);
	dmabuf_fence_signal(f);
	dmabuf_fence_put(f);
	dmabuf_resv_destroy(h.r);
}

struct churn {
	struct dmabuf_resv *r;
	uint64_t ctx;
	atomic_bool stop;
};

static void *churn_adds(void *arg)
{
	struct churn *c = arg;

	for (uint64_t s = 1; !atomic_load(&c->stop) || s < 64; s++) {
		struct dmabuf_fence *f = fence_at(c->ctx, s);

		assert_int_equal(dmabuf_resv_add_fence(c->r, f, DMABUF_RESV_USAGE_WRITE), 0);
		dmabuf_fence_signal(f);
		dmabuf_fence_put(f);
	}
	return NULL;
}

/* A writer replaces fences while a reader walks: every walk that was not
 * restarted sees each context at most once, and the fence of the fixed
 * context exactly once (no torn or freed slot; valgrind/ASan check the
 * rest). */
static void test_iter_unlocked_vs_writer(void **state)
{
	struct churn c = { .ctx = dmabuf_fence_context_alloc(1) };
	struct dmabuf_fence *fixed = alloc_fence();
	pthread_t t;

	assert_int_equal(dmabuf_resv_new(&c.r), 0);
	assert_int_equal(dmabuf_resv_add_fence(c.r, fixed, DMABUF_RESV_USAGE_KERNEL), 0);
	assert_int_equal(pthread_create(&t, NULL, churn_adds, &c), 0);
	for (int round = 0; round < 200; round++) {
		struct dmabuf_resv_iter it = { .struct_size = sizeof(it) };
		struct dmabuf_fence *x;
		int fixed_seen = 0;

		assert_int_equal(dmabuf_resv_iter_begin(&it, c.r, DMABUF_RESV_USAGE_BOOKKEEP), 0);
		for (x = dmabuf_resv_iter_first_unlocked(&it); x;
		     x = dmabuf_resv_iter_next_unlocked(&it)) {
			if (dmabuf_resv_iter_is_restarted(&it))
				fixed_seen = 0;
			if (x == fixed)
				fixed_seen++;
			else
				assert_int_equal(dmabuf_fence_get_context(x), c.ctx);
		}
		dmabuf_resv_iter_end(&it);
		assert_int_equal(fixed_seen, 1);
	}
	atomic_store(&c.stop, true);
	pthread_join(t, NULL);
	dmabuf_fence_signal(fixed);
	dmabuf_fence_put(fixed);
	dmabuf_resv_destroy(c.r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(test_sanity),
		harness_test(test_signaling),
		harness_test(test_for_each),
		harness_test(test_for_each_stop),
		harness_test(test_get_fences),
		harness_test(test_usage_levels),
		harness_test(test_replace),
		harness_test(test_wait),
		harness_test(test_singleton),
		harness_test(test_lock_nesting),
		harness_test(test_replace_seqno_wrap),
		harness_test(test_for_each_unlocked),
		harness_test(test_iter_unlocked_rules),
		harness_test(test_reads_do_not_take_the_lock),
		harness_test(test_iter_unlocked_vs_writer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
