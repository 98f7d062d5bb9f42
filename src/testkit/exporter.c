/* SPDX-License-Identifier: MIT */
/* The counting test exporter with failure knobs (dmabuf-test.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testkit.h"

struct dmabuf_test_exporter {
	char name[DMABUF_NAME_LEN];
	const struct dmabuf_ops *ops;
	atomic_uint count[DMABUF_TEST_OP_COUNT];
	atomic_int refuse[DMABUF_TEST_OP_COUNT];	/* errno, 0 = accept */
	atomic_uint fail_left[DMABUF_TEST_OP_COUNT];	/* countdown to a failure */
	atomic_int fail_err[DMABUF_TEST_OP_COUNT];
	atomic_uint delay_us[DMABUF_TEST_OP_COUNT];
	atomic_uint live;
	atomic_int last_dir;
};

#define MAX_DELAY_US 10000000u

static bool can_fail(enum dmabuf_test_op op)
{
	switch (op) {
	case DMABUF_TEST_OP_ATTACH:
	case DMABUF_TEST_OP_MAP:
	case DMABUF_TEST_OP_BEGIN_CPU_ACCESS:
	case DMABUF_TEST_OP_END_CPU_ACCESS:
	case DMABUF_TEST_OP_MMAP:
	case DMABUF_TEST_OP_VMAP:
	case DMABUF_TEST_OP_PIN:
		return true;
	default:
		return false;
	}
}

static void sleep_us(unsigned int us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Every op starts here: counts, sleeps, and says whether to fail (a
 * negative errno) or go on (0). */
static int enter(struct dmabuf_test_exporter *tx, enum dmabuf_test_op op)
{
	unsigned int delay, left;

	atomic_fetch_add(&tx->count[op], 1);
	delay = atomic_load(&tx->delay_us[op]);
	if (delay)
		sleep_us(delay);
	if (!can_fail(op))
		return 0;
	left = atomic_load(&tx->fail_left[op]);
	while (left > 0) {
		if (atomic_compare_exchange_weak(&tx->fail_left[op], &left, left - 1)) {
			if (left == 1)
				return -atomic_load(&tx->fail_err[op]);
			break;
		}
	}
	return -atomic_load(&tx->refuse[op]);
}

static struct dmabuf_test_exporter *of_buf(struct dmabuf *buf)
{
	return dmabuf_get_priv(buf);
}

static struct dmabuf_test_exporter *of_att(struct dmabuf_attachment *att)
{
	return of_buf(dmabuf_attachment_get_buf(att));
}

static int tk_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	int ret = enter(of_buf(buf), DMABUF_TEST_OP_ATTACH);

	return ret ? ret : dmabuf_backing_check_device(buf, dmabuf_attachment_get_device(att));
}

static void tk_detach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	enter(of_buf(buf), DMABUF_TEST_OP_DETACH);
}

static int tk_map(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		  struct dmabuf_sg_table **sgt)
{
	struct dmabuf_test_exporter *tx = of_att(att);
	int ret;

	atomic_store(&tx->last_dir, (int)dir);
	ret = enter(tx, DMABUF_TEST_OP_MAP);
	return ret ? ret : dmabuf_backing_map(att, dir, sgt);
}

static void tk_unmap(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
		     enum dmabuf_direction dir)
{
	enter(of_att(att), DMABUF_TEST_OP_UNMAP);
	dmabuf_backing_unmap(att, sgt, dir);
}

static void tk_release(struct dmabuf *buf)
{
	struct dmabuf_test_exporter *tx = of_buf(buf);

	enter(tx, DMABUF_TEST_OP_RELEASE);
	atomic_fetch_sub(&tx->live, 1);
}

static int tk_begin(struct dmabuf *buf, enum dmabuf_direction dir)
{
	return enter(of_buf(buf), DMABUF_TEST_OP_BEGIN_CPU_ACCESS);
}

static int tk_end(struct dmabuf *buf, enum dmabuf_direction dir)
{
	return enter(of_buf(buf), DMABUF_TEST_OP_END_CPU_ACCESS);
}

static int tk_mmap(struct dmabuf *buf, uint64_t off, uint64_t len, int prot)
{
	return enter(of_buf(buf), DMABUF_TEST_OP_MMAP);
}

static int tk_vmap(struct dmabuf *buf, void **vaddr)
{
	int ret = enter(of_buf(buf), DMABUF_TEST_OP_VMAP);

	return ret ? ret : dmabuf_backing_vmap(buf, vaddr);
}

static void tk_vunmap(struct dmabuf *buf, void *vaddr)
{
	enter(of_buf(buf), DMABUF_TEST_OP_VUNMAP);
	dmabuf_backing_vunmap(buf, vaddr);
}

static int tk_pin(struct dmabuf_attachment *att)
{
	return enter(of_att(att), DMABUF_TEST_OP_PIN);
}

static void tk_unpin(struct dmabuf_attachment *att)
{
	enter(of_att(att), DMABUF_TEST_OP_UNPIN);
}

static const struct dmabuf_ops plain_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = tk_attach, .detach = tk_detach,
	.map = tk_map, .unmap = tk_unmap, .release = tk_release,
	.begin_cpu_access = tk_begin, .end_cpu_access = tk_end,
	.mmap = tk_mmap, .vmap = tk_vmap, .vunmap = tk_vunmap,
};

static const struct dmabuf_ops pin_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = tk_attach, .detach = tk_detach,
	.pin = tk_pin, .unpin = tk_unpin,
	.map = tk_map, .unmap = tk_unmap, .release = tk_release,
	.mmap = tk_mmap, .vmap = tk_vmap, .vunmap = tk_vunmap,
};

DMABUF_TEST_EXPORT int dmabuf_test_exporter_new(const char *name, uint32_t flags,
						struct dmabuf_test_exporter **out)
{
	struct dmabuf_test_exporter *tx;

	if (!out || (flags & ~(uint32_t)DMABUF_TEST_EXPORTER_PIN))
		return -EINVAL;
	tx = calloc(1, sizeof(*tx));
	if (!tx)
		return -ENOMEM;
	tk_strlcpy(tx->name, name ? name : "test", sizeof(tx->name));
	tx->ops = flags & DMABUF_TEST_EXPORTER_PIN ? &pin_ops : &plain_ops;
	atomic_store(&tx->last_dir, (int)DMABUF_NONE);
	*out = tx;
	return 0;
}

DMABUF_TEST_EXPORT int dmabuf_test_exporter_destroy(struct dmabuf_test_exporter *tx)
{
	if (!tx)
		return 0;
	if (atomic_load(&tx->live))
		return -EBUSY;
	free(tx);
	return 0;
}

DMABUF_TEST_EXPORT int dmabuf_test_exporter_export(struct dmabuf_test_exporter *tx,
						   struct dmabuf_ctx *ctx, uint64_t size,
						   int flags, enum dmabuf_alloc alloc,
						   struct dmabuf **out)
{
	struct dmabuf_export_info info = {
		.exp_name = NULL, .size = size, .flags = flags, .alloc = alloc,
	};
	int ret;

	if (!tx)
		return -EINVAL;
	info.exp_name = tx->name;
	info.ops = tx->ops;
	info.priv = tx;
	/* Counted before: a release may come from another thread as soon as
	 * the buffer exists. */
	atomic_fetch_add(&tx->live, 1);
	ret = dmabuf_export(ctx, &info, out);
	if (ret < 0)
		atomic_fetch_sub(&tx->live, 1);
	return ret;
}

DMABUF_TEST_EXPORT unsigned int dmabuf_test_exporter_get_count(const struct dmabuf_test_exporter *tx,
							       enum dmabuf_test_op op)
{
	if (!tx || (unsigned int)op >= DMABUF_TEST_OP_COUNT)
		return 0;
	return atomic_load(&((struct dmabuf_test_exporter *)tx)->count[op]);
}

DMABUF_TEST_EXPORT unsigned int dmabuf_test_exporter_get_live(const struct dmabuf_test_exporter *tx)
{
	return tx ? atomic_load(&((struct dmabuf_test_exporter *)tx)->live) : 0;
}

DMABUF_TEST_EXPORT enum dmabuf_direction
dmabuf_test_exporter_get_last_direction(const struct dmabuf_test_exporter *tx)
{
	if (!tx)
		return DMABUF_NONE;
	return (enum dmabuf_direction)atomic_load(&((struct dmabuf_test_exporter *)tx)->last_dir);
}

DMABUF_TEST_EXPORT void dmabuf_test_exporter_reset_counts(struct dmabuf_test_exporter *tx)
{
	if (!tx)
		return;
	for (int i = 0; i < DMABUF_TEST_OP_COUNT; i++)
		atomic_store(&tx->count[i], 0);
}

DMABUF_TEST_EXPORT int dmabuf_test_exporter_refuse(struct dmabuf_test_exporter *tx,
						   enum dmabuf_test_op op, int err)
{
	if (!tx || (unsigned int)op >= DMABUF_TEST_OP_COUNT || !can_fail(op) || err < 0)
		return -EINVAL;
	atomic_store(&tx->refuse[op], err);
	return 0;
}

DMABUF_TEST_EXPORT int dmabuf_test_exporter_fail_nth(struct dmabuf_test_exporter *tx,
						     enum dmabuf_test_op op,
						     unsigned int nth, int err)
{
	if (!tx || (unsigned int)op >= DMABUF_TEST_OP_COUNT || !can_fail(op) ||
	    (nth && err <= 0))
		return -EINVAL;
	atomic_store(&tx->fail_err[op], err);
	atomic_store(&tx->fail_left[op], nth);
	return 0;
}

DMABUF_TEST_EXPORT int dmabuf_test_exporter_set_delay(struct dmabuf_test_exporter *tx,
						      enum dmabuf_test_op op,
						      unsigned int delay_us)
{
	if (!tx || (unsigned int)op >= DMABUF_TEST_OP_COUNT || delay_us > MAX_DELAY_US)
		return -EINVAL;
	atomic_store(&tx->delay_us[op], delay_us);
	return 0;
}
