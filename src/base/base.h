/* SPDX-License-Identifier: MIT */
/*
 * The base layer (src/base/): what every other layer may use. Logging, the
 * registry of live objects, the syscall layer, and the part of a context that
 * runs the event loop (its lock, epoll set, service thread, and the list of
 * the process's contexts). Nothing here calls a higher layer: a higher layer
 * reaches the loop by adding sources with callbacks.
 *
 * Nothing here is API: internal functions use the dmb_ prefix (never dmabuf_,
 * which is the exported namespace checked by tests/check-symbols.py).
 */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/queue.h>
#include <sys/types.h>

/* glibc's sys/queue.h lacks the _SAFE iterators. */
#ifndef LIST_FOREACH_SAFE
#define LIST_FOREACH_SAFE(var, head, field, tvar)                          \
	for ((var) = LIST_FIRST((head));                                   \
	     (var) && ((tvar) = LIST_NEXT((var), field), 1); (var) = (tvar))
#endif

/* libbsd's RB_GENERATE_STATIC expects the BSD __unused. */
#ifndef __unused
#define __unused __attribute__((unused))
#endif
#include <bsd/sys/tree.h>

#include "dmabuf.h"

#define DMABUF_EXPORT __attribute__((visibility("default")))

#define DMB_PAGE_SIZE 4096ull
#define DMB_PAGE_SHIFT 12

#define DMB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DMB_ALIGNED(x, a) (((x) & ((a)-1)) == 0)
#define DMB_ALIGN_UP(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))
static inline bool dmb_is_pow2(uint64_t x) { return x && !(x & (x - 1)); }
#define dmb_container_of(ptr, type, member) \
	((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- logging (log.c) ---------------------------------------------------- */

__attribute__((format(printf, 3, 4))) void
dmb_log(struct dmabuf_ctx *ctx, enum dmabuf_log_priority prio, const char *fmt, ...);

/* DMABUF_DEBUG, read once: the default level and the protocol trace. */
struct dmb_log_env {
	enum dmabuf_log_priority priority;
	bool protocol;
};
const struct dmb_log_env *dmb_log_env(void);
/* The parser behind it (for tests). */
void dmb_log_env_parse(const char *s, struct dmb_log_env *out);

#define dmb_err(ctx, ...) dmb_log((ctx), DMABUF_LOG_ERROR, __VA_ARGS__)
#define dmb_warn(ctx, ...) dmb_log((ctx), DMABUF_LOG_WARNING, __VA_ARGS__)
#define dmb_info(ctx, ...) dmb_log((ctx), DMABUF_LOG_INFO, __VA_ARGS__)
#define dmb_dbg(ctx, ...) dmb_log((ctx), DMABUF_LOG_DEBUG, __VA_ARGS__)

/* ---- versioned structs (include/dmabuf.h, DMABUF_STRUCT_V1) ---------------
 * A caller's struct begins with uint32_t struct_size. dmb_struct_in() copies
 * it into the library's full-size struct dst: size 0 means v1_size, a shorter
 * struct is zero-extended, a longer one must be zero beyond what the library
 * knows (-E2BIG, as copy_struct_from_user()). dmb_struct_out() writes at most
 * the caller's size. -EINVAL for a size smaller than the size field.
 */
/* The size of a struct's first layout (0.1.0), what struct_size 0 means:
 * sizeof for a struct that has not grown since; for one that has, the
 * offset of its first field added later (DMB_V1_UPTO), so that a caller
 * built against the first layout is never written past its end. */
#define DMB_V1_SIZE(type) sizeof(type)
#define DMB_V1_UPTO(type, first_new_member) offsetof(type, first_new_member)
int dmb_struct_in(void *dst, size_t dst_size, const void *src, size_t v1_size);
int dmb_struct_out(void *dst, const void *src, size_t src_size, size_t v1_size);

/* ---- live-object registry (objects.c) ------------------------------------
 * Every object handed to a caller is registered here while it lives, so a
 * stale or doubly freed pointer is detected (-EINVAL) instead of being
 * dereferenced. The registry is process-wide and has its own lock.
 */
enum dmb_obj_type {
	DMB_OBJ_CTX = 1,
	DMB_OBJ_DEVICE,
	DMB_OBJ_BUFFER,
	DMB_OBJ_ATTACHMENT,
	DMB_OBJ_SG_TABLE,
	DMB_OBJ_FENCE,
	DMB_OBJ_TIMELINE,
};

int dmb_obj_add(const void *obj, enum dmb_obj_type type);
void dmb_obj_del(const void *obj);
bool dmb_obj_live(const void *obj, enum dmb_obj_type type);
/* Checks obj is live, then takes the lock of the context *ctxp points to
 * (a field of obj) and checks again. Returns the locked context, or NULL
 * (nothing locked) when obj is not a live object of that type. */
struct dmabuf_ctx *dmb_obj_lock_ctx(const void *obj, enum dmb_obj_type type,
				    struct dmabuf_ctx *const *ctxp);

/* ---- event loop (loop.c) ----------------------------------------------------
 * A source is an fd in the context's epoll set with a callback; epoll's
 * data.ptr points to the source.
 */
struct dmb_source;
typedef void (*dmb_source_fn)(struct dmb_source *src, uint32_t events);

struct dmb_source {
	int fd;
	dmb_source_fn fn;
	void *data;
};

int dmb_source_add(struct dmabuf_ctx *ctx, struct dmb_source *src, int fd,
		   uint32_t events, dmb_source_fn fn, void *data);
int dmb_source_mod(struct dmabuf_ctx *ctx, struct dmb_source *src, uint32_t events);
void dmb_source_del(struct dmabuf_ctx *ctx, struct dmb_source *src);
int dmb_ctx_dispatch_locked(struct dmabuf_ctx *ctx, int timeout_ms);

/* ---- the context's base ----------------------------------------------
 * The first member of struct dmabuf_ctx (core/private.h), so the loop can
 * work on any context without knowing the layers above.
 */
struct dmb_ctx_base {
	/* Recursive: exporter ops and log handlers may call back into the
	 * library on the thread that holds it. */
	pthread_mutex_t lock;
	/* Who holds the lock and how deep (dmb_lock()): for the held-lock
	 * assertions and for waits that must drop a recursive lock whole.
	 * owner is written by the holder and read by anyone; depth only by the
	 * holder. */
	_Atomic(pthread_t) owner;
	unsigned int depth;
	dmabuf_log_fn log_fn;
	void *log_data;
	enum dmabuf_log_priority log_priority;

	int epoll_fd;
	/* Bumped by every dmb_source_del(): dispatch stops a batch whose
	 * remaining events may name a freed source. */
	unsigned int sources_gen;

	/* Every context of the process, so a thread waiting for a reply can
	 * serve the others (two contexts in one process must not deadlock). */
	LIST_ENTRY(dmb_ctx_base) process_link;
	/* The process generation that made it: a forked child inherits a
	 * copy of the context (and shares its epoll, inotify and endpoint
	 * fds), which it must not use. */
	unsigned int fork_gen;

	/* Bumped by every dmb_ctx_dispatch_locked(): the service thread runs
	 * the events it waited for without the lock only if nobody
	 * dispatched (or removed a source) meanwhile. */
	unsigned int dispatch_gen;

	/* optional service thread */
	pthread_t thread;
	bool thread_running;
	/* Set under the lock by dmabuf_ctx_stop_thread(); the thread reads it
	 * under the lock before each wait and after it. */
	bool thread_stop;
	/* The thread is in (or on its way into) its unlocked epoll_wait():
	 * set under the lock, cleared as the wait returns (stop_ready(),
	 * loop.c). */
	atomic_bool thread_waiting;
	int thread_stop_fd;
	struct dmb_source thread_stop_src;
};

#define DMB_CTX_BASE(ctx) ((struct dmb_ctx_base *)(ctx))

/* Initialises the base of a new context (lock, epoll fd); -errno. */
int dmb_ctx_base_init(struct dmabuf_ctx *ctx);
/* Makes the context visible to the process (serve_others, other_fds). */
void dmb_ctx_base_publish(struct dmabuf_ctx *ctx);
/* Stops the service thread and removes the context from the process list. */
void dmb_ctx_base_unpublish(struct dmabuf_ctx *ctx);
/* Closes the epoll fd and destroys the lock. */
void dmb_ctx_base_fini(struct dmabuf_ctx *ctx);

/* Incremented in every forked child (pthread_atfork). */
unsigned int dmb_fork_gen(void);
/* Bumped before every fork() (pthread_atfork prepare), on both sides: what
 * a process kept for reuse before a fork may be in a child's hands now. */
unsigned int dmb_fork_count(void);
/* fork() safety (fork.c): a layer above base adds the handlers of its
 * process-wide locks, rank = their place in the lock order (docs/design.md
 * §8). Before fork() the prepares run by rising rank, after base's own
 * locks (2, 3); afterwards parent or child run by falling rank. From
 * constructors only. */
void dmb_fork_hook_add(int rank, void (*prepare)(void), void (*parent)(void),
		       void (*child)(void));
/* base's own locks, for fork.c: contexts_lock, objects_lock, the log's. */
void dmb_contexts_fork_prepare(void);
void dmb_contexts_fork_parent(void);
void dmb_contexts_fork_child(void);
void dmb_objects_fork_prepare(void);
void dmb_objects_fork_parent(void);
void dmb_objects_fork_child(void);
void dmb_log_fork_prepare(void);
void dmb_log_fork_parent(void);
void dmb_log_fork_child(void);
/* Live, and made by this process (not inherited over fork()). */
bool dmb_ctx_usable(const struct dmabuf_ctx *ctx);
/* dmb_ctx_usable(), then the lock; NULL (nothing locked) when not usable. */
struct dmabuf_ctx *dmb_ctx_lock_usable(struct dmabuf_ctx *ctx);

/* Serves every other context of the process that is ready and whose lock is
 * free (trylock), without blocking. */
void dmb_ctx_serve_others(struct dmabuf_ctx *self);
/* The epoll fds of every other context, for a wait that must wake when any
 * of them has work; returns how many were written (at most max). */
int dmb_ctx_other_fds(struct dmabuf_ctx *self, int *fds, int max);

/* ---- the context lock -------------------------------------------------
 * One recursive lock per context; its place in the library's lock order is
 * written down in docs/design.md §8. Every `_locked` function and every call
 * of an exporter op asserts it is held (dmb_assert_locked(); on unless built
 * with -Dlock_checks=false).
 */
/* nonnull: callers pass a context they checked, and it tells GCC so (its
 * sanitizer build otherwise warns of a store through a NULL context). */
static inline __attribute__((nonnull)) void dmb_lock(struct dmabuf_ctx *ctx)
{
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);

	pthread_mutex_lock(&b->lock);
	if (b->depth++ == 0)
		atomic_store_explicit(&b->owner, pthread_self(), memory_order_relaxed);
}

static inline bool dmb_trylock(struct dmabuf_ctx *ctx)
{
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);

	if (pthread_mutex_trylock(&b->lock) != 0)
		return false;
	if (b->depth++ == 0)
		atomic_store_explicit(&b->owner, pthread_self(), memory_order_relaxed);
	return true;
}

static inline void dmb_unlock(struct dmabuf_ctx *ctx)
{
	struct dmb_ctx_base *b = DMB_CTX_BASE(ctx);

	if (--b->depth == 0)
		atomic_store_explicit(&b->owner, (pthread_t)0, memory_order_relaxed);
	pthread_mutex_unlock(&b->lock);
}

/* True when the calling thread holds the context lock (at any depth). */
static inline bool dmb_ctx_held(struct dmabuf_ctx *ctx)
{
	return pthread_equal(atomic_load_explicit(&DMB_CTX_BASE(ctx)->owner,
						  memory_order_relaxed),
			     pthread_self());
}

/* Drops the lock completely, however deep the caller holds it, and returns
 * the depth to give back to dmb_relock(). A wait for another thread (a
 * fence signal) must not keep a recursive lock that an outer frame took. */
unsigned int dmb_unlock_all(struct dmabuf_ctx *ctx);
void dmb_relock(struct dmabuf_ctx *ctx, unsigned int depth);

/* Logs where the rule was broken and aborts. */
__attribute__((noreturn)) void dmb_lock_violation(struct dmabuf_ctx *ctx,
						  const char *func);

#ifndef DMB_LOCK_CHECKS
#define DMB_LOCK_CHECKS 1
#endif
#if DMB_LOCK_CHECKS
/* An expression, so it can guard an op call (DMB_OP in core/private.h). */
#define dmb_assert_locked(ctx)                                                 \
	((void)(dmb_ctx_held(ctx) || (dmb_lock_violation((ctx), __func__), 0)))
#else
#define dmb_assert_locked(ctx) ((void)(ctx))
#endif
static inline int dmb_ctx_epoll_fd(struct dmabuf_ctx *ctx) { return DMB_CTX_BASE(ctx)->epoll_fd; }

/* Syscall layer for fault injection (sys.c): tests make the Nth call of a
 * given syscall fail with an errno. */
#include "sys.h"
