/* SPDX-License-Identifier: MIT */
/* Fence chains: the scenarios of the kernel's st-dma-fence-chain.c and the
 * chain cases of st-dma-fence-unwrap.c, plus a chain in a sync file. */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

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

static struct dmabuf_fence *mock_fence(void)
{
	struct dmabuf_fence *f = NULL;

	assert_int_equal(dmabuf_fence_new(&mock_ops, NULL,
					  dmabuf_fence_context_alloc(1), 1, &f), 0);
	return f;
}

static struct dmabuf_fence *mock_chain(struct dmabuf_fence *prev,
				       struct dmabuf_fence *f, uint64_t seqno)
{
	struct dmabuf_fence *c = NULL;

	assert_int_equal(dmabuf_fence_chain_new(prev, f, seqno, &c), 0);
	return c;
}

#define MAX_CHAIN 64

struct fence_chains {
	unsigned int n;
	struct dmabuf_fence *fences[MAX_CHAIN], *chains[MAX_CHAIN], *tail;
};

static uint64_t seqno_inc(unsigned int i)
{
	return i + 1;
}

static uint64_t seqno_inc2(unsigned int i)
{
	return 2 * i + 2;
}

static void chains_init(struct fence_chains *fc, unsigned int n,
			uint64_t (*seqno)(unsigned int))
{
	fc->n = n;
	fc->tail = NULL;
	for (unsigned int i = 0; i < n; i++) {
		fc->fences[i] = mock_fence();
		fc->chains[i] = mock_chain(fc->tail, fc->fences[i], seqno(i));
		fc->tail = fc->chains[i];
	}
}

static void chains_fini(struct fence_chains *fc)
{
	for (unsigned int i = 0; i < fc->n; i++) {
		dmabuf_fence_signal(fc->fences[i]);
		dmabuf_fence_put(fc->chains[i]);
		dmabuf_fence_put(fc->fences[i]);
	}
}

static void test_sanitycheck(void **state)
{
	struct dmabuf_fence *f = mock_fence(), *c = mock_chain(NULL, f, 1);

	assert_ptr_equal(dmabuf_fence_chain_get_fence(c), f);
	assert_ptr_equal(dmabuf_fence_chain_get_fence(f), f);
	assert_false(dmabuf_fence_is_signaled(c));
	dmabuf_fence_signal(f);
	assert_true(dmabuf_fence_is_signaled(c));
	assert_int_equal(dmabuf_fence_chain_new(NULL, NULL, 1, &c), -EINVAL);
	assert_int_equal(dmabuf_fence_chain_new(NULL, f, 1, NULL), -EINVAL);
	dmabuf_fence_put(c);
	dmabuf_fence_put(f);
}

/* dma_fence_chain_init(): a later seqno continues the context, anything
 * else starts a new one without going back; seqnos are 64-bit. */
static void test_context_rule(void **state)
{
	struct dmabuf_fence *f = mock_fence();
	struct dmabuf_fence *a = mock_chain(NULL, f, 1ull << 40);
	struct dmabuf_fence *b = mock_chain(a, f, (1ull << 40) + 1);
	struct dmabuf_fence *c = mock_chain(b, f, 5);

	assert_int_equal(dmabuf_fence_get_context(a), dmabuf_fence_get_context(b));
	assert_int_not_equal(dmabuf_fence_get_context(b), dmabuf_fence_get_context(c));
	assert_int_equal(dmabuf_fence_get_seqno(c), (1ull << 40) + 1);
	dmabuf_fence_signal(f);
	dmabuf_fence_put(c);
	dmabuf_fence_put(b);
	dmabuf_fence_put(a);
	dmabuf_fence_put(f);
}

static void test_find_seqno(void **state)
{
	struct fence_chains fc;
	struct dmabuf_fence *fence;

	chains_init(&fc, MAX_CHAIN, seqno_inc);
	fence = dmabuf_fence_get(fc.tail);
	assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, 0), 0);
	assert_ptr_equal(fence, fc.tail);
	dmabuf_fence_put(fence);
	for (unsigned int i = 0; i < fc.n; i++) {
		fence = dmabuf_fence_get(fc.tail);
		assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, i + 1), 0);
		assert_ptr_equal(fence, fc.chains[i]);
		/* Finding itself again. */
		assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, i + 1), 0);
		assert_ptr_equal(fence, fc.chains[i]);
		dmabuf_fence_put(fence);

		fence = dmabuf_fence_get(fc.chains[i]);
		if (i > 0) {
			assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, i), 0);
			assert_ptr_equal(fence, fc.chains[i - 1]);
		}
		dmabuf_fence_put(fence);
		/* A point beyond the node is an error, *pfence kept. */
		fence = fc.chains[i];
		assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, i + 2), -EINVAL);
		assert_ptr_equal(fence, fc.chains[i]);
	}
	fence = fc.fences[0];
	assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, 1), -EINVAL);
	chains_fini(&fc);
}

static void test_find_signaled(void **state)
{
	struct fence_chains fc;
	struct dmabuf_fence *fence;

	chains_init(&fc, 2, seqno_inc);
	dmabuf_fence_signal(fc.fences[0]);
	fence = dmabuf_fence_get(fc.tail);
	assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, 1), 0);
	assert_true(fence == NULL || fence == fc.chains[0]);
	dmabuf_fence_put(fence);
	chains_fini(&fc);
}

static void test_find_out_of_order(void **state)
{
	struct fence_chains fc;
	struct dmabuf_fence *fence;

	chains_init(&fc, 3, seqno_inc);
	dmabuf_fence_signal(fc.fences[1]);
	fence = dmabuf_fence_get(fc.tail);
	assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, 2), 0);
	/* Point 2 is collected on the way; point 1 is what to wait for. */
	assert_ptr_equal(fence, fc.chains[0]);
	dmabuf_fence_put(fence);
	chains_fini(&fc);
}

static void test_find_gap(void **state)
{
	struct fence_chains fc;
	struct dmabuf_fence *fence;

	chains_init(&fc, MAX_CHAIN, seqno_inc2);
	for (unsigned int i = 0; i < fc.n; i++) {
		fence = dmabuf_fence_get(fc.tail);
		assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, 2 * i + 1), 0);
		assert_ptr_equal(fence, fc.chains[i]);
		assert_int_equal(dmabuf_fence_chain_find_seqno(&fence, 2 * i + 2), 0);
		assert_ptr_equal(fence, fc.chains[i]);
		dmabuf_fence_put(fence);
	}
	chains_fini(&fc);
}

struct race {
	struct fence_chains fc;
	unsigned int seed;
	atomic_int errors;
};

static void *find_race_thread(void *arg)
{
	struct race *r = arg;
	unsigned int seed = r->seed;

	for (int round = 0; round < 2000; round++) {
		struct dmabuf_fence *fence = dmabuf_fence_get(r->fc.tail);
		uint64_t seqno = 1 + rand_r(&seed) % r->fc.n;

		if (dmabuf_fence_chain_find_seqno(&fence, seqno)) {
			atomic_fetch_add(&r->errors, 1);
			dmabuf_fence_put(fence);
			break;
		}
		/* Only the point looked for can find itself. */
		if (fence && dmabuf_fence_get_seqno(fence) == seqno &&
		    dmabuf_fence_chain_find_seqno(&fence, seqno))
			atomic_fetch_add(&r->errors, 1);
		dmabuf_fence_put(fence);
		dmabuf_fence_signal(r->fc.fences[rand_r(&seed) % (r->fc.n - 1)]);
	}
	return NULL;
}

static void test_find_race(void **state)
{
	struct race r = { .seed = 1 };
	pthread_t t[2];
	unsigned int count = 0;

	chains_init(&r.fc, MAX_CHAIN, seqno_inc);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, find_race_thread, &r), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&r.errors), 0);
	for (unsigned int i = 0; i < r.fc.n; i++)
		count += dmabuf_fence_is_signaled(r.fc.fences[i]);
	assert_true(count > 0);
	chains_fini(&r.fc);
}

static void test_signal_forward(void **state)
{
	struct fence_chains fc;

	chains_init(&fc, MAX_CHAIN, seqno_inc);
	for (unsigned int i = 0; i < fc.n; i++) {
		dmabuf_fence_signal(fc.fences[i]);
		assert_true(dmabuf_fence_is_signaled(fc.chains[i]));
		if (i + 1 < fc.n)
			assert_false(dmabuf_fence_is_signaled(fc.chains[i + 1]));
	}
	chains_fini(&fc);
}

static void test_signal_backward(void **state)
{
	struct fence_chains fc;

	chains_init(&fc, MAX_CHAIN, seqno_inc);
	for (unsigned int i = fc.n; i-- > 1;) {
		dmabuf_fence_signal(fc.fences[i]);
		assert_false(dmabuf_fence_is_signaled(fc.chains[i]));
	}
	dmabuf_fence_signal(fc.fences[0]);
	for (unsigned int i = 0; i < fc.n; i++)
		assert_true(dmabuf_fence_is_signaled(fc.chains[i]));
	chains_fini(&fc);
}

enum order { FORWARD, BACKWARD, RANDOM };

struct waiter {
	struct dmabuf_fence *tail;
	int ret;
};

static void *wait_tail(void *arg)
{
	struct waiter *w = arg;

	w->ret = dmabuf_fence_wait(w->tail, -1);
	return NULL;
}

/* st-dma-fence-chain wait_*: a thread waits on the tail (the wait arms
 * the chain) while the fences signal in the given order; the waiter wakes
 * only once all have, and the tail is the last to signal. */
static void wait_order(enum order order)
{
	struct fence_chains fc;
	struct waiter w;
	unsigned int idx[MAX_CHAIN], seed = 7;
	pthread_t t;

	chains_init(&fc, MAX_CHAIN, seqno_inc);
	w.tail = fc.tail;
	w.ret = -1;
	for (unsigned int i = 0; i < fc.n; i++)
		idx[i] = order == BACKWARD ? fc.n - 1 - i : i;
	if (order == RANDOM)
		for (unsigned int i = fc.n - 1; i > 0; i--) {
			unsigned int j = rand_r(&seed) % (i + 1), x = idx[i];

			idx[i] = idx[j];
			idx[j] = x;
		}
	/* Arm the tail before signalling, as the waiter would. */
	assert_int_equal(dmabuf_fence_wait(fc.tail, 0), 0);
	assert_int_equal(pthread_create(&t, NULL, wait_tail, &w), 0);
	for (unsigned int i = 0; i < fc.n; i++) {
		assert_false(dmabuf_fence_is_signaled(fc.tail));
		dmabuf_fence_signal(fc.fences[idx[i]]);
	}
	pthread_join(t, NULL);
	assert_int_equal(w.ret, 1);
	assert_true(dmabuf_fence_is_signaled(fc.tail));
	chains_fini(&fc);
}

static void test_wait_forward(void **state)
{
	wait_order(FORWARD);
}

static void test_wait_backward(void **state)
{
	wait_order(BACKWARD);
}

static void test_wait_random(void **state)
{
	wait_order(RANDOM);
}

/* A signalled-by-callback path: a callback on the tail runs once, after
 * the last fence, even with the chain armed before any signal. */
static void count_cb(struct dmabuf_fence *f, struct dmabuf_fence_cb *cb)
{
	(*(int *)(cb + 1))++;
}

static void test_callback_after_all(void **state)
{
	struct {
		struct dmabuf_fence_cb cb;
		int count;
	} c = { .count = 0 };
	struct fence_chains fc;

	chains_init(&fc, 8, seqno_inc);
	assert_int_equal(dmabuf_fence_add_callback(fc.tail, &c.cb, count_cb), 0);
	for (unsigned int i = 0; i < fc.n; i++) {
		assert_int_equal(c.count, 0);
		dmabuf_fence_signal(fc.fences[i]);
	}
	assert_int_equal(c.count, 1);
	chains_fini(&fc);
}

/* Dropping the only reference to a long chain frees every link without
 * recursing per link (valgrind and ASan see the frees). */
static void test_long_chain_release(void **state)
{
	struct dmabuf_fence *f = mock_fence(), *tail = NULL;

	for (unsigned int i = 0; i < 100000; i++) {
		struct dmabuf_fence *c = mock_chain(tail, f, i + 1);

		dmabuf_fence_put(tail);
		tail = c;
	}
	dmabuf_fence_signal(f);
	dmabuf_fence_put(tail);
	dmabuf_fence_put(f);
}

/* st-dma-fence-unwrap unwrap_chain: both fences of a two-link chain. */
static void test_unwrap_chain(void **state)
{
	struct dmabuf_fence *f1 = mock_fence(), *f2 = mock_fence();
	struct dmabuf_fence *c1 = mock_chain(NULL, f1, 1), *c2 = mock_chain(c1, f2, 2);
	struct dmabuf_fence *out[4];

	assert_int_equal(dmabuf_fence_unwrap(c2, out, 4), 2);
	assert_ptr_equal(out[0], f2);
	assert_ptr_equal(out[1], f1);
	dmabuf_fence_signal(f1);
	dmabuf_fence_signal(f2);
	dmabuf_fence_put(c2);
	dmabuf_fence_put(c1);
	dmabuf_fence_put(f1);
	dmabuf_fence_put(f2);
}

/* unwrap_chain_array: a chain link holding an array is flattened. */
static void test_unwrap_chain_array(void **state)
{
	struct dmabuf_fence *f[2] = { mock_fence(), mock_fence() }, *arr, *c;
	struct dmabuf_fence *out[4];
	int n;

	assert_int_equal(dmabuf_fence_merge(f, 2, &arr), 0);
	c = mock_chain(NULL, arr, 1);
	n = dmabuf_fence_unwrap(c, out, 4);
	assert_int_equal(n, 2);
	assert_true((out[0] == f[0] && out[1] == f[1]) ||
		    (out[0] == f[1] && out[1] == f[0]));
	dmabuf_fence_signal(f[0]);
	dmabuf_fence_signal(f[1]);
	assert_true(dmabuf_fence_is_signaled(c));
	dmabuf_fence_put(c);
	dmabuf_fence_put(arr);
	dmabuf_fence_put(f[0]);
	dmabuf_fence_put(f[1]);
}

/* unwrap_merge_chain: merging two chains gives an array of their fences;
 * a merge of a chain with its own fence keeps that fence once. */
static void test_merge_chain(void **state)
{
	struct dmabuf_fence *f1 = mock_fence(), *f2 = mock_fence();
	struct dmabuf_fence *c1 = mock_chain(NULL, f1, 1), *c2 = mock_chain(NULL, f2, 1);
	struct dmabuf_fence *in[2] = { c1, c2 }, *m, *out[4];

	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	assert_int_equal(dmabuf_fence_unwrap(m, out, 4), 2);
	assert_true((out[0] == f1 && out[1] == f2) || (out[0] == f2 && out[1] == f1));
	dmabuf_fence_put(m);
	in[1] = f1;
	assert_int_equal(dmabuf_fence_merge(in, 2, &m), 0);
	assert_ptr_equal(m, f1);
	dmabuf_fence_put(m);
	dmabuf_fence_signal(f1);
	dmabuf_fence_signal(f2);
	dmabuf_fence_put(c1);
	dmabuf_fence_put(c2);
	dmabuf_fence_put(f1);
	dmabuf_fence_put(f2);
}

/* A chain inside a sync file: info lists the links' fences, the fd
 * signals once the whole chain has. */
static void test_chain_in_sync_file(void **state)
{
	struct dmabuf_fence *f1 = mock_fence(), *f2 = mock_fence();
	struct dmabuf_fence *c1 = mock_chain(NULL, f1, 1), *c2 = mock_chain(c1, f2, 2);
	struct dmabuf_sync_fence_info info[4];
	int fd, status = 7;

	fd = dmabuf_sync_file_export(c2);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_sync_file_info(fd, &status, info, 4), 2);
	assert_int_equal(status, 0);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 0);
	dmabuf_fence_signal(f2);
	assert_int_equal(dmabuf_sync_file_wait(fd, 0), 0);
	dmabuf_fence_signal(f1);
	assert_int_equal(dmabuf_sync_file_wait(fd, -1), 1);
	assert_int_equal(dmabuf_sync_file_info(fd, &status, NULL, 0), 2);
	assert_int_equal(status, 1);
	close(fd);
	dmabuf_fence_put(c2);
	dmabuf_fence_put(c1);
	dmabuf_fence_put(f1);
	dmabuf_fence_put(f2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(test_sanitycheck),
		harness_test(test_context_rule),
		harness_test(test_find_seqno),
		harness_test(test_find_signaled),
		harness_test(test_find_out_of_order),
		harness_test(test_find_gap),
		harness_test(test_find_race),
		harness_test(test_signal_forward),
		harness_test(test_signal_backward),
		harness_test(test_wait_forward),
		harness_test(test_wait_backward),
		harness_test(test_wait_random),
		harness_test(test_callback_after_all),
		harness_test(test_long_chain_release),
		harness_test(test_unwrap_chain),
		harness_test(test_unwrap_chain_array),
		harness_test(test_merge_chain),
		harness_test(test_chain_in_sync_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
