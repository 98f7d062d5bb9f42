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

struct dmb_obj {
	RB_ENTRY(dmb_obj) node;
	const void *ptr;
	enum dmb_obj_type type;
};

static int obj_cmp(const struct dmb_obj *a, const struct dmb_obj *b)
{
	uintptr_t x = (uintptr_t)a->ptr, y = (uintptr_t)b->ptr;

	return x < y ? -1 : x > y;
}

RB_HEAD(dmb_obj_tree, dmb_obj);
RB_GENERATE_STATIC(dmb_obj_tree, dmb_obj, node, obj_cmp)

static struct dmb_obj_tree objects = RB_INITIALIZER(&objects);
static pthread_mutex_t objects_lock = PTHREAD_MUTEX_INITIALIZER;

int dmb_obj_add(const void *obj, enum dmb_obj_type type)
{
	struct dmb_obj *o = malloc(sizeof(*o));

	if (!o)
		return -ENOMEM;
	o->ptr = obj;
	o->type = type;
	pthread_mutex_lock(&objects_lock);
	if (RB_INSERT(dmb_obj_tree, &objects, o)) {
		pthread_mutex_unlock(&objects_lock);
		free(o);
		return -EEXIST;
	}
	pthread_mutex_unlock(&objects_lock);
	return 0;
}

void dmb_obj_del(const void *obj)
{
	struct dmb_obj key = { .ptr = obj }, *o;

	pthread_mutex_lock(&objects_lock);
	o = RB_FIND(dmb_obj_tree, &objects, &key);
	if (o)
		RB_REMOVE(dmb_obj_tree, &objects, o);
	pthread_mutex_unlock(&objects_lock);
	free(o);
}

bool dmb_obj_live(const void *obj, enum dmb_obj_type type)
{
	struct dmb_obj key = { .ptr = obj }, *o;
	bool live;

	if (!obj)
		return false;
	pthread_mutex_lock(&objects_lock);
	o = RB_FIND(dmb_obj_tree, &objects, &key);
	live = o && o->type == type;
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
	struct dmb_obj key = { .ptr = obj }, *o;
	struct dmabuf_ctx *ctx = NULL;

	if (!obj)
		return NULL;
	/* Read the owner under the registry lock so the object cannot be
	 * freed between the check and the read... */
	pthread_mutex_lock(&objects_lock);
	o = RB_FIND(dmb_obj_tree, &objects, &key);
	if (o && o->type == type)
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
