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
 * An open-addressing hash set of the live objects' addresses, each entry
 * the address with the type in its low bits (objects are structs with
 * pointers: 8-aligned). Linear probing; a removal shifts the entries after
 * it back, so there are no tombstones. Lookups are O(1) whatever the
 * number of live objects, and an object costs 8 bytes at a load of 3/8 to
 * 3/4, not a tree node of its own (issue 11: 10,000 live buffers).
 */
#define TYPE_MASK ((uintptr_t)7)
#define MIN_CAP 64

static uintptr_t *table;
static size_t cap, count; /* cap: a power of two, 0 before the first add */
static pthread_mutex_t objects_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(uintptr_t addr, size_t c)
{
	/* Fibonacci hashing of the address without its always-zero bits. */
	return (size_t)(((uint64_t)(addr >> 3) * 0x9E3779B97F4A7C15ull) >> 32) & (c - 1);
}

/* The slot holding addr, or the empty slot where it would go. */
static size_t find_slot(uintptr_t addr)
{
	size_t i = slot_of(addr, cap);

	while (table[i] && (table[i] & ~TYPE_MASK) != addr)
		i = (i + 1) & (cap - 1);
	return i;
}

static int resize(size_t new_cap)
{
	uintptr_t *old = table;
	size_t old_cap = cap;

	table = calloc(new_cap, sizeof(*table));
	if (!table) {
		table = old;
		return -ENOMEM;
	}
	cap = new_cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i])
			table[find_slot(old[i] & ~TYPE_MASK)] = old[i];
	free(old);
	return 0;
}

/* The entry of obj (0 if it is not live); under objects_lock. */
static uintptr_t entry_of(const void *obj)
{
	return cap ? table[find_slot((uintptr_t)obj)] : 0;
}

int dmb_obj_add(const void *obj, enum dmb_obj_type type)
{
	uintptr_t addr = (uintptr_t)obj;
	size_t i;
	int ret = 0;

	if (addr & TYPE_MASK || (uintptr_t)type > TYPE_MASK || !type)
		return -EINVAL;
	pthread_mutex_lock(&objects_lock);
	if ((count + 1) * 4 > cap * 3)
		ret = resize(cap ? cap * 2 : MIN_CAP);
	if (ret == 0) {
		i = find_slot(addr);
		if (table[i]) {
			ret = -EEXIST;
		} else {
			table[i] = addr | (uintptr_t)type;
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
	if (!cap || !table[i = find_slot((uintptr_t)obj)]) {
		pthread_mutex_unlock(&objects_lock);
		return;
	}
	table[i] = 0;
	count--;
	/* Backward shift: an entry after the hole moves into it unless its
	 * home slot lies (cyclically) in (i, j]. */
	for (j = (i + 1) & (cap - 1); table[j]; j = (j + 1) & (cap - 1)) {
		home = slot_of(table[j] & ~TYPE_MASK, cap);
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		table[i] = table[j];
		table[j] = 0;
		i = j;
	}
	/* Give memory back once most objects are gone (a failed shrink keeps
	 * the larger table), all of it with the last. */
	if (!count) {
		free(table);
		table = NULL;
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
	live = entry_of(obj) == ((uintptr_t)obj | (uintptr_t)type);
	pthread_mutex_unlock(&objects_lock);
	return live;
}

static unsigned int fork_gen;

void dmb_objects_fork_prepare(void)
{
	pthread_mutex_lock(&objects_lock);
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

struct dmabuf_ctx *dmb_obj_lock_ctx(const void *obj, enum dmb_obj_type type,
				    struct dmabuf_ctx *const *ctxp)
{
	struct dmabuf_ctx *ctx = NULL;

	if (!obj)
		return NULL;
	/* Read the owner under the registry lock so the object cannot be
	 * freed between the check and the read... */
	pthread_mutex_lock(&objects_lock);
	if (entry_of(obj) == ((uintptr_t)obj | (uintptr_t)type))
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
