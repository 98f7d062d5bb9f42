/* SPDX-License-Identifier: MIT */
/* Fences: mirrors the kernel's dma-fence selftests (st-dma-fence.c). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dmabuf-fence.h"

static const char *mock_name(struct dmabuf_fence *f)
{
	return "mock";
}

static atomic_int released;

static void mock_release(struct dmabuf_fence *f)
{
	atomic_fetch_add(&released, 1);
}

static const struct dmabuf_fence_ops mock_ops = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = mock_name,
	.get_timeline_name = mock_name,
	.release = mock_release,
};

static struct dmabuf_fence *mock_fence(void)
{
	struct dmabuf_fence *f = NULL;

	assert_int_equal(dmabuf_fence_new(&mock_ops, NULL,
					  dmabuf_fence_context_alloc(1), 1, &f), 0);
	assert_non_null(f);
	return f;
}

struct simple_cb {
	struct dmabuf_fence_cb cb;
	atomic_bool seen;
};

static void simple_callback(struct dmabuf_fence *f, struct dmabuf_fence_cb *cb)
{
	struct simple_cb *s = (struct simple_cb *)cb;

	atomic_store(&s->seen, true);
}

static void test_sanity(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	const struct dmabuf_fence_ops bad = { .get_driver_name = mock_name };
	struct dmabuf_fence *g = NULL;
	int before = atomic_load(&released);

	assert_string_equal(dmabuf_fence_driver_name(f), "mock");
	assert_string_equal(dmabuf_fence_timeline_name(f), "mock");
	assert_int_equal(dmabuf_fence_get_seqno(f), 1);
	assert_int_equal(dmabuf_fence_new(&bad, NULL, 1, 1, &g), -EINVAL);
	assert_null(g);
	assert_int_equal(dmabuf_fence_new(NULL, NULL, 1, 1, &g), -EINVAL);
	assert_int_equal(dmabuf_fence_signal(f), 0);
	dmabuf_fence_put(f);
	assert_int_equal(atomic_load(&released), before + 1);
	/* A dead fence is reported, not dereferenced. */
	assert_null(dmabuf_fence_get(f));
	assert_int_equal(dmabuf_fence_get_status(f), -EINVAL);
	assert_int_equal(dmabuf_fence_signal(f), -EINVAL);
}

static void test_context_alloc(void **state)
{
	uint64_t a = dmabuf_fence_context_alloc(3);
	uint64_t b = dmabuf_fence_context_alloc(1);

	assert_true(a != 0);
	assert_true(b >= a + 3);
}

static void test_signaling(void **state)
{
	struct dmabuf_fence *f = mock_fence();

	assert_false(dmabuf_fence_is_signaled(f));
	assert_int_equal(dmabuf_fence_signal(f), 0);
	assert_true(dmabuf_fence_is_signaled(f));
	/* Signals once. */
	assert_int_equal(dmabuf_fence_signal(f), -EINVAL);
	dmabuf_fence_put(f);
}

static void test_add_callback(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	struct simple_cb cb = { 0 };

	assert_int_equal(dmabuf_fence_add_callback(f, &cb.cb, simple_callback), 0);
	assert_false(atomic_load(&cb.seen));
	dmabuf_fence_signal(f);
	assert_true(atomic_load(&cb.seen));
	dmabuf_fence_put(f);
}

static void test_late_add_callback(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	struct simple_cb cb = { 0 };

	dmabuf_fence_signal(f);
	assert_int_equal(dmabuf_fence_add_callback(f, &cb.cb, simple_callback), -ENOENT);
	assert_false(atomic_load(&cb.seen));
	/* Never added, so not removable either. */
	assert_false(dmabuf_fence_remove_callback(f, &cb.cb));
	dmabuf_fence_put(f);
}

static void test_rm_callback(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	struct simple_cb cb = { 0 };

	assert_int_equal(dmabuf_fence_add_callback(f, &cb.cb, simple_callback), 0);
	assert_true(dmabuf_fence_remove_callback(f, &cb.cb));
	dmabuf_fence_signal(f);
	assert_false(atomic_load(&cb.seen));
	dmabuf_fence_put(f);
}

static void test_late_rm_callback(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	struct simple_cb cb = { 0 };

	assert_int_equal(dmabuf_fence_add_callback(f, &cb.cb, simple_callback), 0);
	dmabuf_fence_signal(f);
	assert_true(atomic_load(&cb.seen));
	assert_false(dmabuf_fence_remove_callback(f, &cb.cb));
	dmabuf_fence_put(f);
}

static void test_status(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	int64_t ts = -1;

	assert_int_equal(dmabuf_fence_get_status(f), 0);
	assert_int_equal(dmabuf_fence_get_timestamp(f, &ts), -EBUSY);
	dmabuf_fence_signal(f);
	assert_int_equal(dmabuf_fence_get_status(f), 1);
	assert_int_equal(dmabuf_fence_get_timestamp(f, &ts), 0);
	assert_true(ts > 0);
	dmabuf_fence_put(f);
}

static void test_error(void **state)
{
	struct dmabuf_fence *f = mock_fence();

	assert_int_equal(dmabuf_fence_set_error(f, 1), -EINVAL);
	assert_int_equal(dmabuf_fence_set_error(f, 0), -EINVAL);
	assert_int_equal(dmabuf_fence_set_error(f, -EIO), 0);
	/* Not visible before the signal. */
	assert_int_equal(dmabuf_fence_get_status(f), 0);
	assert_false(dmabuf_fence_is_signaled(f));
	dmabuf_fence_signal(f);
	assert_int_equal(dmabuf_fence_get_status(f), -EIO);
	/* Too late now: status unchanged. */
	assert_int_equal(dmabuf_fence_set_error(f, -ENODEV), -EBUSY);
	assert_int_equal(dmabuf_fence_get_status(f), -EIO);
	dmabuf_fence_put(f);
}

static void test_wait(void **state)
{
	struct dmabuf_fence *f = mock_fence();

	assert_int_equal(dmabuf_fence_wait(f, 0), 0);
	assert_int_equal(dmabuf_fence_wait(f, 1), 0);
	dmabuf_fence_signal(f);
	assert_int_equal(dmabuf_fence_wait(f, 0), 1);
	assert_int_equal(dmabuf_fence_wait(f, -1), 1);
	dmabuf_fence_put(f);
}

static void *signal_later(void *arg)
{
	struct timespec ts = { 0, 20 * 1000000 };

	nanosleep(&ts, NULL);
	dmabuf_fence_signal(arg);
	return NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_wait_timeout(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	pthread_t t;
	int64_t start;

	/* Times out, after about the time asked for. */
	start = now_ms();
	assert_int_equal(dmabuf_fence_wait(f, 30), 0);
	assert_true(now_ms() - start >= 29);
	/* Woken by a signal from another thread: 1, not the timeout's 0 (no
	 * upper bound on the time: load may stretch it, the answer says it). */
	assert_int_equal(pthread_create(&t, NULL, signal_later, f), 0);
	assert_int_equal(dmabuf_fence_wait(f, 10000), 1);
	pthread_join(t, NULL);
	dmabuf_fence_put(f);
}

static void test_stub(void **state)
{
	struct dmabuf_fence *f = NULL;
	struct simple_cb cb = { 0 };

	assert_int_equal(dmabuf_fence_get_stub(&f), 0);
	assert_true(dmabuf_fence_is_signaled(f));
	assert_int_equal(dmabuf_fence_get_status(f), 1);
	assert_int_equal(dmabuf_fence_get_context(f), 0);
	assert_int_equal(dmabuf_fence_wait(f, 0), 1);
	assert_int_equal(dmabuf_fence_add_callback(f, &cb.cb, simple_callback), -ENOENT);
	dmabuf_fence_put(f);
}

static void test_refcount(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	int before = atomic_load(&released);

	assert_ptr_equal(dmabuf_fence_get(f), f);
	dmabuf_fence_put(f);
	assert_int_equal(atomic_load(&released), before);
	assert_int_equal(dmabuf_fence_get_status(f), 0);
	dmabuf_fence_signal(f);
	dmabuf_fence_put(f);
	assert_int_equal(atomic_load(&released), before + 1);
}

/* Race between signal on one thread and add_callback on another, as the
 * kernel's race_signal_callback: the callback either runs (added in time)
 * or add_callback says -ENOENT; never both, never neither. */
struct race {
	struct dmabuf_fence *_Atomic fence;
	atomic_int step;
	int iterations;
	int ran, late, bad;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;

	for (int i = 1; i <= r->iterations; i++) {
		struct dmabuf_fence *f = mock_fence();
		struct simple_cb cb = { 0 };
		int ret;

		atomic_store(&r->fence, f);
		atomic_store(&r->step, i);	/* main thread signals now */
		/* A varying head start, so both outcomes happen. */
		for (volatile int k = 0; k < (i % 32) * 40; k++)
			;
		ret = dmabuf_fence_add_callback(f, &cb.cb, simple_callback);
		while (atomic_load(&r->step) != -i)
			;
		/* The signal is done: the outcome must be settled. */
		if (ret == 0 && atomic_load(&cb.seen))
			r->ran++;
		else if (ret == -ENOENT && !atomic_load(&cb.seen))
			r->late++;
		else
			r->bad++;
		if (dmabuf_fence_remove_callback(f, &cb.cb))
			r->bad++;
		dmabuf_fence_put(f);
	}
	return NULL;
}

static void test_race_signal_callback(void **state)
{
	struct race r = { .iterations = harness_under_valgrind() ? 200 : 5000 };
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, race_thread, &r), 0);
	for (int i = 1; i <= r.iterations; i++) {
		while (atomic_load(&r.step) != i)
			;
		dmabuf_fence_signal(atomic_load(&r.fence));
		atomic_store(&r.step, -i);
	}
	pthread_join(t, NULL);
	assert_int_equal(r.bad, 0);
	assert_int_equal(r.ran + r.late, r.iterations);
	print_message("race: %d callbacks ran, %d added late\n", r.ran, r.late);
}

/* Callbacks run in the signalling thread, in order of registration. */
struct order_cb {
	struct dmabuf_fence_cb cb;
	int *log;
	int *pos;
	int id;
};

static void order_callback(struct dmabuf_fence *f, struct dmabuf_fence_cb *cb)
{
	struct order_cb *o = (struct order_cb *)cb;

	/* Lock-free queries work from a callback. */
	assert_int_equal(dmabuf_fence_get_status(f), 1);
	o->log[(*o->pos)++] = o->id;
}

static void test_callback_order(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	struct order_cb cbs[4];
	int log[4] = { 0 }, pos = 0;

	for (int i = 0; i < 4; i++) {
		cbs[i] = (struct order_cb){ .log = log, .pos = &pos, .id = i + 1 };
		assert_int_equal(dmabuf_fence_add_callback(f, &cbs[i].cb, order_callback), 0);
	}
	assert_true(dmabuf_fence_remove_callback(f, &cbs[2].cb));
	dmabuf_fence_signal(f);
	assert_int_equal(pos, 3);
	assert_int_equal(log[0], 1);
	assert_int_equal(log[1], 2);
	assert_int_equal(log[2], 4);
	dmabuf_fence_put(f);
}

static void test_merge(void **state)
{
	struct dmabuf_fence *a = mock_fence(), *b = mock_fence(), *m = NULL;
	struct dmabuf_fence *in[3], *out[4];
	struct simple_cb cb = { 0 };

	/* Merging a fence with itself: that one fence. */
	in[0] = a;
	in[1] = a;
	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	assert_ptr_equal(m, a);
	dmabuf_fence_put(m);

	/* Two contexts: an array that signals when both have, with the
	 * first error. */
	in[1] = b;
	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	assert_ptr_not_equal(m, a);
	assert_ptr_not_equal(m, b);
	assert_int_equal(dmabuf_fence_unwrap(m, out, 4), 2);
	assert_int_equal(dmabuf_fence_add_callback(m, &cb.cb, simple_callback), 0);
	dmabuf_fence_set_error(b, -EIO);
	dmabuf_fence_signal(b);
	assert_int_equal(dmabuf_fence_get_status(m), 0);
	dmabuf_fence_signal(a);
	assert_true(atomic_load(&cb.seen));
	assert_int_equal(dmabuf_fence_get_status(m), -EIO);
	dmabuf_fence_put(m);

	/* Everything signalled: the stub. */
	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	assert_int_equal(dmabuf_fence_get_context(m), 0);
	assert_true(dmabuf_fence_is_signaled(m));
	dmabuf_fence_put(m);
	assert_int_equal(dmabuf_fence_merge(in, 0, &m), -EINVAL);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
}

static void test_merge_same_context(void **state)
{
	uint64_t ctx = dmabuf_fence_context_alloc(1);
	struct dmabuf_fence *f[3], *m = NULL, *inner = NULL;

	for (int i = 0; i < 3; i++)
		assert_int_equal(dmabuf_fence_new(&mock_ops, NULL, ctx, 5 + i, &f[i]), 0);
	/* One per context, the later seqno wins. */
	assert_int_equal(dmabuf_fence_merge(f, 3, &m), 0);
	assert_ptr_equal(m, f[2]);
	dmabuf_fence_put(m);
	/* Arrays are flattened. */
	struct dmabuf_fence *g = mock_fence(), *pair[2] = { f[0], g };
	assert_int_equal(dmabuf_fence_merge(pair, 2, &inner), 0);
	pair[0] = inner;
	pair[1] = f[1];
	assert_int_equal(dmabuf_fence_merge(pair, 2, &m), 0);
	assert_int_equal(dmabuf_fence_unwrap(m, NULL, 0), 2);
	struct dmabuf_fence *kids[2];
	dmabuf_fence_unwrap(m, kids, 2);
	assert_true((kids[0] == f[1] && kids[1] == g) || (kids[0] == g && kids[1] == f[1]));
	for (int i = 0; i < 3; i++)
		dmabuf_fence_signal(f[i]);
	assert_false(dmabuf_fence_is_signaled(m));
	dmabuf_fence_signal(g);
	assert_int_equal(dmabuf_fence_wait(m, 1000), 1);
	assert_int_equal(dmabuf_fence_get_status(inner), 1);
	dmabuf_fence_put(m);
	dmabuf_fence_put(inner);
	dmabuf_fence_put(g);
	for (int i = 0; i < 3; i++)
		dmabuf_fence_put(f[i]);
}

/* ---- seqno order (__dma_fence_is_later) ---------------------------------- */

static const struct dmabuf_fence_ops ops64 = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = mock_name,
	.get_timeline_name = mock_name,
	.use_64bit_seqno = true,
};

/* A table of version 0 has no use_64bit_seqno: the member is not read. */
static const struct dmabuf_fence_ops ops64_v0 = {
	.version = 0,
	.get_driver_name = mock_name,
	.get_timeline_name = mock_name,
	.use_64bit_seqno = true,
};

/* The fence merge(a, b) keeps for one context. */
static struct dmabuf_fence *later_of(const struct dmabuf_fence_ops *ops,
				     uint64_t sa, uint64_t sb,
				     struct dmabuf_fence **a, struct dmabuf_fence **b)
{
	uint64_t ctx = dmabuf_fence_context_alloc(1);
	struct dmabuf_fence *in[2], *m = NULL;

	assert_int_equal(dmabuf_fence_new(ops, NULL, ctx, sa, a), 0);
	assert_int_equal(dmabuf_fence_new(ops, NULL, ctx, sb, b), 0);
	in[0] = *a;
	in[1] = *b;
	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	dmabuf_fence_put(m);	/* one of a, b: they keep it alive */
	return m;
}

static void test_merge_seqno_32bit(void **state)
{
	struct dmabuf_fence *a, *b, *m;

	/* Default ops: low 32 bits with wrap-around, so 1 follows
	 * 0xffffffff and 2^32 (low bits 0) precedes 1. */
	m = later_of(&mock_ops, 0xffffffffu, 1, &a, &b);
	assert_ptr_equal(m, b);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
	m = later_of(&mock_ops, 1ull << 32, 1, &a, &b);
	assert_ptr_equal(m, b);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
	/* 64-bit ops: plain comparison. */
	m = later_of(&ops64, 0xffffffffu, 1, &a, &b);
	assert_ptr_equal(m, a);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
	m = later_of(&ops64, 1ull << 32, 1, &a, &b);
	assert_ptr_equal(m, a);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
	/* The flag of a version-0 table is not read: 32-bit. */
	m = later_of(&ops64_v0, 1ull << 32, 1, &a, &b);
	assert_ptr_equal(m, b);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
}

/* A sw_sync timeline about to wrap: the merged fence must not signal
 * while its later point (past the wrap) is pending. */
static void test_merge_timeline_wrap(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *before, *after, *in[2], *m = NULL;

	assert_int_equal(dmabuf_timeline_new("wrap", &tl), 0);
	assert_int_equal(dmabuf_timeline_inc(tl, 0xfffffff0u), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 0xffffffffu, &before), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 2, &after), 0);
	assert_false(dmabuf_fence_is_signaled(after));
	in[0] = before;
	in[1] = after;
	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	assert_ptr_equal(m, after);
	assert_int_equal(dmabuf_timeline_inc(tl, 0xf), 0);
	assert_true(dmabuf_fence_is_signaled(before));
	assert_false(dmabuf_fence_is_signaled(m));
	assert_int_equal(dmabuf_timeline_inc(tl, 3), 0);
	assert_true(dmabuf_fence_is_signaled(m));
	dmabuf_fence_put(m);
	dmabuf_fence_put(before);
	dmabuf_fence_put(after);
	dmabuf_timeline_destroy(tl);
}

/* ---- merge order (__dma_fence_unwrap_merge sorts by context) ------------- */

static void test_merge_sorted_by_context(void **state)
{
	uint64_t base = dmabuf_fence_context_alloc(4);
	struct dmabuf_fence *f[4], *in[4], *m = NULL, *out[4], *m2 = NULL;

	for (int i = 0; i < 4; i++)
		assert_int_equal(dmabuf_fence_new(&mock_ops, NULL, base + i, 1, &f[i]), 0);
	/* Given in the order 2, 0, 3, 1. */
	in[0] = f[2];
	in[1] = f[0];
	in[2] = f[3];
	in[3] = f[1];
	assert_int_equal(dmabuf_fence_merge(in, 4, &m), 0);
	assert_int_equal(dmabuf_fence_unwrap(m, out, 4), 4);
	for (int i = 0; i < 4; i++)
		assert_ptr_equal(out[i], f[i]);
	/* Merging an array with a fence of a lower context re-sorts. */
	in[0] = m;
	in[1] = f[0];
	assert_int_equal(dmabuf_fence_merge(in, 2, &m2), 0);
	assert_int_equal(dmabuf_fence_unwrap(m2, out, 4), 4);
	for (int i = 0; i < 4; i++)
		assert_ptr_equal(out[i], f[i]);
	dmabuf_fence_put(m2);
	dmabuf_fence_put(m);
	for (int i = 0; i < 4; i++) {
		dmabuf_fence_signal(f[i]);
		dmabuf_fence_put(f[i]);
	}
}

/* ---- ops tables: versions and the optional ops --------------------------- */

struct op_counts {
	atomic_int enable, signaled, wait;
	atomic_bool done;
};

static struct op_counts counts;

static bool count_enable(struct dmabuf_fence *f)
{
	atomic_fetch_add(&counts.enable, 1);
	return true;
}

static bool count_signaled(struct dmabuf_fence *f)
{
	atomic_fetch_add(&counts.signaled, 1);
	return atomic_load(&counts.done);
}

static int count_wait(struct dmabuf_fence *f, int timeout_ms)
{
	atomic_fetch_add(&counts.wait, 1);
	if (!atomic_load(&counts.done))
		return 0;
	return dmabuf_fence_signal(f) == 0 || dmabuf_fence_is_signaled(f);
}

/* A table from a newer header: same layout for what we know, plus a
 * member we do not. */
struct future_ops {
	struct dmabuf_fence_ops known;
	void (*set_deadline)(struct dmabuf_fence *f, int64_t ns);
};

static const struct future_ops future = {
	.known = {
		.version = DMABUF_FENCE_OPS_VERSION + 1,
		.get_driver_name = mock_name,
		.get_timeline_name = mock_name,
		.enable_signaling = count_enable,
		.signaled = count_signaled,
		.wait = count_wait,
	},
};

static const struct dmabuf_fence_ops optional_v0 = {
	.version = 0,
	.get_driver_name = mock_name,
	.get_timeline_name = mock_name,
	.enable_signaling = count_enable,
	.signaled = count_signaled,
	.wait = count_wait,
};

static void test_ops_versions(void **state)
{
	struct simple_cb cb = { .seen = false };
	struct dmabuf_fence *f;

	memset(&counts, 0, sizeof(counts));
	/* Version 0: the optional ops of version 1 are never called. */
	assert_int_equal(dmabuf_fence_new(&optional_v0, NULL, 1, 1, &f), 0);
	assert_false(dmabuf_fence_is_signaled(f));
	assert_int_equal(dmabuf_fence_add_callback(f, &cb.cb, simple_callback), 0);
	assert_int_equal(dmabuf_fence_wait(f, 1), 0);
	assert_int_equal(atomic_load(&counts.enable) + atomic_load(&counts.signaled) +
			 atomic_load(&counts.wait), 0);
	dmabuf_fence_signal(f);
	assert_true(atomic_load(&cb.seen));
	dmabuf_fence_put(f);

	/* A newer table is accepted and its ops are used. */
	atomic_store(&cb.seen, false);
	assert_int_equal(dmabuf_fence_new(&future.known, NULL, 1, 1, &f), 0);
	assert_false(dmabuf_fence_is_signaled(f));
	assert_int_equal(atomic_load(&counts.signaled), 1);
	assert_int_equal(atomic_load(&counts.enable), 0);
	assert_int_equal(dmabuf_fence_add_callback(f, &cb.cb, simple_callback), 0);
	assert_int_equal(atomic_load(&counts.enable), 1);
	assert_int_equal(dmabuf_fence_wait(f, 5), 0);
	assert_int_equal(atomic_load(&counts.wait), 1);
	/* enable_signaling runs once per fence. */
	assert_int_equal(dmabuf_fence_wait(f, 5), 0);
	assert_int_equal(atomic_load(&counts.enable), 1);
	/* signaled() saying "done" signals the fence: callbacks run. */
	atomic_store(&counts.done, true);
	assert_int_equal(dmabuf_fence_get_status(f), 1);
	assert_true(atomic_load(&cb.seen));
	dmabuf_fence_put(f);
}

/* dma_fence_set_deadline(): the hint reaches ops->set_deadline (version 2
 * tables only) of pending fences, through arrays and chains; sw_sync
 * points keep the earliest; SYNC_IOC_SET_DEADLINE's library form does the
 * same through a sync-file fd. */
static _Atomic int64_t last_deadline;
static atomic_int deadline_calls;

static void record_deadline(struct dmabuf_fence *f, int64_t ns)
{
	atomic_store(&last_deadline, ns);
	atomic_fetch_add(&deadline_calls, 1);
}

static const struct dmabuf_fence_ops deadline_v2 = {
	.version = 2,
	.get_driver_name = mock_name,
	.get_timeline_name = mock_name,
	.set_deadline = record_deadline,
};

static const struct dmabuf_fence_ops deadline_v1 = {
	.version = 1,	/* set_deadline is not in version 1: never read */
	.get_driver_name = mock_name,
	.get_timeline_name = mock_name,
	.set_deadline = record_deadline,
};

static void test_set_deadline(void **state)
{
	struct dmabuf_fence *a, *b, *old, *m, *c, *pt1, *pt2, *in[2];
	struct dmabuf_timeline *tl;
	int64_t ns;
	int fd, p[2], closed;

	atomic_store(&deadline_calls, 0);
	assert_int_equal(dmabuf_fence_set_deadline(NULL, 1), -EINVAL);
	assert_int_equal(dmabuf_fence_new(&deadline_v2, NULL,
					  dmabuf_fence_context_alloc(1), 1, &a), 0);
	assert_int_equal(dmabuf_fence_new(&deadline_v2, NULL,
					  dmabuf_fence_context_alloc(1), 1, &b), 0);
	assert_int_equal(dmabuf_fence_new(&deadline_v1, NULL,
					  dmabuf_fence_context_alloc(1), 1, &old), 0);
	assert_int_equal(dmabuf_fence_set_deadline(a, 1000), 0);
	assert_int_equal(atomic_load(&deadline_calls), 1);
	assert_int_equal(atomic_load(&last_deadline), 1000);
	assert_int_equal(dmabuf_fence_set_deadline(old, 5), 0);
	assert_int_equal(atomic_load(&deadline_calls), 1);

	/* An array passes it to each fence, a chain to each link's. */
	in[0] = a;
	in[1] = b;
	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	assert_int_equal(dmabuf_fence_set_deadline(m, 2000), 0);
	assert_int_equal(atomic_load(&deadline_calls), 3);
	assert_int_equal(dmabuf_fence_chain_new(NULL, m, 1, &c), 0);
	assert_int_equal(dmabuf_fence_set_deadline(c, 3000), 0);
	assert_int_equal(atomic_load(&deadline_calls), 5);
	assert_int_equal(atomic_load(&last_deadline), 3000);

	/* Through a sync-file fd. */
	fd = dmabuf_sync_file_export(c);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_sync_file_set_deadline(fd, 4000), 0);
	assert_int_equal(atomic_load(&deadline_calls), 7);
	/* A signalled fence has no use for it. */
	dmabuf_fence_signal(a);
	assert_int_equal(dmabuf_fence_set_deadline(a, 1), 0);
	assert_int_equal(atomic_load(&deadline_calls), 7);
	close(fd);

	/* An fd that is not a sync file has no such ioctl; a closed one is
	 * -EBADF. Likewise SYNC_IOC_FILE_INFO. */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(dmabuf_sync_file_set_deadline(p[0], 1), -ENOTTY);
	assert_int_equal(dmabuf_sync_file_info(p[0], NULL, NULL, 0), -ENOTTY);
	/* The closed fd is a high number: the library's threads make short
	 * lived fds of their own (the sync file watcher asks the socket
	 * diagnostics when a watched file's holders close it, a netlink
	 * socket for a moment), and one of them may take a low number the
	 * test just closed. */
	closed = fcntl(p[0], F_DUPFD_CLOEXEC, 900);
	assert_true(closed >= 900);
	close(closed);
	close(p[0]);
	close(p[1]);
	assert_int_equal(dmabuf_sync_file_set_deadline(closed, 1), -EBADF);
	assert_int_equal(dmabuf_sync_file_info(closed, NULL, NULL, 0), -EBADF);

	/* sw_sync points keep the earliest, through a merge too. */
	assert_int_equal(dmabuf_timeline_new("dl", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &pt1), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 2, &pt2), 0);
	assert_int_equal(dmabuf_timeline_point_get_deadline(pt1, &ns), -ENOENT);
	assert_int_equal(dmabuf_timeline_point_get_deadline(b, &ns), -EINVAL);
	assert_int_equal(dmabuf_timeline_point_get_deadline(pt1, NULL), -EINVAL);
	assert_int_equal(dmabuf_fence_set_deadline(pt1, 500), 0);
	assert_int_equal(dmabuf_fence_set_deadline(pt1, 900), 0);
	assert_int_equal(dmabuf_timeline_point_get_deadline(pt1, &ns), 0);
	assert_int_equal(ns, 500);
	dmabuf_fence_put(m);
	in[0] = pt1;
	in[1] = old;
	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	assert_int_equal(dmabuf_fence_set_deadline(m, 100), 0);
	assert_int_equal(dmabuf_timeline_point_get_deadline(pt1, &ns), 0);
	assert_int_equal(ns, 100);
	assert_int_equal(dmabuf_timeline_point_get_deadline(pt2, &ns), -ENOENT);

	dmabuf_fence_signal(b);
	dmabuf_fence_signal(old);
	dmabuf_timeline_destroy(tl);
	dmabuf_fence_put(m);
	dmabuf_fence_put(c);
	dmabuf_fence_put(pt1);
	dmabuf_fence_put(pt2);
	dmabuf_fence_put(a);
	dmabuf_fence_put(b);
	dmabuf_fence_put(old);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(test_sanity),
		harness_test(test_context_alloc),
		harness_test(test_signaling),
		harness_test(test_add_callback),
		harness_test(test_late_add_callback),
		harness_test(test_rm_callback),
		harness_test(test_late_rm_callback),
		harness_test(test_status),
		harness_test(test_error),
		harness_test(test_wait),
		harness_test(test_wait_timeout),
		harness_test(test_stub),
		harness_test(test_refcount),
		harness_test(test_race_signal_callback),
		harness_test(test_callback_order),
		harness_test(test_merge),
		harness_test(test_merge_same_context),
		harness_test(test_merge_seqno_32bit),
		harness_test(test_merge_timeline_wrap),
		harness_test(test_merge_sorted_by_context),
		harness_test(test_ops_versions),
		harness_test(test_set_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
