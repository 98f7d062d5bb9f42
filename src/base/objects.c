/* SPDX-License-Identifier: MIT */
/*
 * Process-wide registry of live objects. Handing out raw pointers is the API
 * style (libinput, sd-bus), but a dma-buf user who puts a buffer twice or
 * reuses a detached attachment should get -EINVAL, not heap corruption. So
 * every object is entered here while it lives and every entry point checks
 * it before touching the object.
 */
#include <stdlib.h>

#include "base.h"

/*
 * An open-addressing hash set of the live objects' addresses, with their
 * types in a parallel byte array (the addresses stay exact pointers, so
 * leak checkers see the objects as reachable). Linear probing; a removal
 * shifts the entries after it back, so there are no tombstones. Lookups
 * are O(1) whatever the number of live objects, and an object costs 9
 * bytes at a load of 3/8 to 3/4, not a tree node of its own (issue 11:
 * 10,000 live buffers).
 */
#define MIN_CAP 64

static const void **table; /* cap addresses, then cap types (one allocation) */
static uint8_t *types;
static size_t cap, count; /* cap: a power of two, 0 before the first add */
static pthread_mutex_t objects_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(const void *obj, size_t c)
{
	/* Fibonacci hashing of the address without its always-zero bits. */
	return (size_t)(((uint64_t)((uintptr_t)obj >> 3) * 0x9E3779B97F4A7C15ull) >> 32) &
	       (c - 1);
}

/* The slot holding obj, or the empty slot where it would go. */
static size_t find_slot(const void *obj)
{
	size_t i = slot_of(obj, cap);

	while (table[i] && table[i] != obj)
		i = (i + 1) & (cap - 1);
	return i;
}

static int resize(size_t new_cap)
{
	const void **old = table;
	uint8_t *old_types = types;
	size_t old_cap = cap, i;

	table = calloc(new_cap, sizeof(*table) + 1);
	if (!table) {
		table = old;
		return -ENOMEM;
	}
	types = (uint8_t *)(table + new_cap);
	cap = new_cap;
	for (size_t j = 0; j < old_cap; j++)
		if (old[j]) {
			i = find_slot(old[j]);
			table[i] = old[j];
			types[i] = old_types[j];
		}
	free(old);
	return 0;
}

/* Whether obj is live with that type; under objects_lock. */
static bool is_live(const void *obj, enum dmb_obj_type type)
{
	size_t i;

	if (!cap)
		return false;
	i = find_slot(obj);
	return table[i] && types[i] == (uint8_t)type;
}

int dmb_obj_add(const void *obj, enum dmb_obj_type type)
{
	size_t i;
	int ret = 0;

	if (!obj || !type)
		return -EINVAL;
	pthread_mutex_lock(&objects_lock);
	if ((count + 1) * 4 > cap * 3)
		ret = resize(cap ? cap * 2 : MIN_CAP);
	if (ret == 0) {
		i = find_slot(obj);
		if (table[i]) {
			ret = -EEXIST;
		} else {
			table[i] = obj;
			types[i] = (uint8_t)type;
			count++;
		}
	}
	pthread_mutex_unlock(&objects_lock);
	return ret;
}

void dmb_obj_del(const void *obj)
{
	size_t i, j, home;

	pthread_mutex_lock(&objects_lock);
	if (!cap || !obj || !table[i = find_slot(obj)]) {
		pthread_mutex_unlock(&objects_lock);
		return;
	}
	table[i] = NULL;
	count--;
	/* Backward shift: an entry after the hole moves into it unless its
	 * home slot lies (cyclically) in (i, j]. */
	for (j = (i + 1) & (cap - 1); table[j]; j = (j + 1) & (cap - 1)) {
		home = slot_of(table[j], cap);
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		table[i] = table[j];
		types[i] = types[j];
		table[j] = NULL;
		i = j;
	}
	/* Give memory back once most objects are gone (a failed shrink keeps
	 * the larger table), all of it with the last. */
	if (!count) {
		free(table);
		table = NULL;
		types = NULL;
		cap = 0;
	} else if (cap > MIN_CAP && count * 8 < cap) {
		(void)resize(cap / 2);
	}
	pthread_mutex_unlock(&objects_lock);
}

bool dmb_obj_live(const void *obj, enum dmb_obj_type type)
{
	bool live;

	if (!obj)
		return false;
	pthread_mutex_lock(&objects_lock);
	live = is_live(obj, type);
	pthread_mutex_unlock(&objects_lock);
	return live;
}

static unsigned int fork_gen;
static atomic_uint forks;

void dmb_objects_fork_prepare(void)
{
	pthread_mutex_lock(&objects_lock);
	atomic_fetch_add_explicit(&forks, 1, memory_order_relaxed);
}

void dmb_objects_fork_parent(void)
{
	pthread_mutex_unlock(&objects_lock);
}

void dmb_objects_fork_child(void)
{
	fork_gen++;
	/* Ours since the prepare; initialised afresh as the child's thread
	 * is not the one that locked it (a new tid). */
	pthread_mutex_init(&objects_lock, NULL);
}

unsigned int dmb_fork_gen(void)
{
	return fork_gen;
}

unsigned int dmb_fork_count(void)
{
	return atomic_load_explicit(&forks, memory_order_relaxed);
}

struct dmabuf_ctx *dmb_obj_lock_ctx(const void *obj, enum dmb_obj_type type,
				    struct dmabuf_ctx *const *ctxp)
{
	struct dmabuf_ctx *ctx = NULL;

	if (!obj)
		return NULL;
	/* Read the owner under the registry lock so the object cannot be
	 * freed between the check and the read... */
	pthread_mutex_lock(&objects_lock);
	if (is_live(obj, type))
		ctx = *ctxp;
	pthread_mutex_unlock(&objects_lock);
	if (!ctx)
		return NULL;
	if (DMB_CTX_BASE(ctx)->fork_gen != fork_gen) {
		dmb_err(NULL, "a context inherited over fork() was used in the child: create a new one there");
		return NULL;
	}
	dmb_lock(ctx);
	/* ...and check again under the context lock, which is what frees it. */
	if (!dmb_obj_live(obj, type)) {
		dmb_unlock(ctx);
		return NULL;
	}
	return ctx;
}
