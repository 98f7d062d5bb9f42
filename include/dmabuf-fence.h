/* SPDX-License-Identifier: MIT */
/**
 * @file dmabuf-fence.h
 * libdmabuf: fences, reservation objects, sync files and sw_sync timelines.
 *
 * The kernel's dma_fence, dma_resv, sync_file and sw_sync with a `dmabuf_`
 * prefix. The conventions of dmabuf.h apply (negative errno, out-parameters,
 * fds borrowed on input and returned O_CLOEXEC and owned by the caller).
 * Specific to this header:
 *
 * - Fences do not belong to a dmabuf_ctx. They are reference counted
 *   (dmabuf_fence_get()/dmabuf_fence_put()), thread-safe on their own (one
 *   mutex per fence) and may be signalled from any thread.
 * - Every fence pointer is validated against the registry of live objects:
 *   a fence whose last reference is gone is -EINVAL, not a use-after-free.
 * - Callbacks run in the thread that signals the fence, with the fence's
 *   lock held, exactly as dma_fence callbacks run under fence->lock: a
 *   callback must not block and must not call dmabuf_fence_add_callback(),
 *   dmabuf_fence_remove_callback(), dmabuf_fence_signal(),
 *   dmabuf_fence_set_error() or dmabuf_fence_wait() on the same fence. It
 *   may call dmabuf_fence_get(), dmabuf_fence_put() (never the last
 *   reference: the signaller holds one), dmabuf_fence_is_signaled() and
 *   dmabuf_fence_get_status(), and may signal other fences. Because of the
 *   lock, dmabuf_fence_remove_callback() returning false means the callback
 *   has already run to completion.
 * - Sync files are real fds (AF_UNIX sockets) that poll readable once the
 *   fence signals, in any process, and travel over SCM_RIGHTS; see
 *   docs/fences.md for the design and its limits.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "dmabuf.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dmabuf_fence;
struct dmabuf_resv;
struct dmabuf_timeline;

/* ------------------------------------------------------------------------ */
/** @defgroup fence Fences (dma_fence)                                       */
/* ------------------------------------------------------------------------ */

/** Version of struct dmabuf_fence_ops this header describes. */
#define DMABUF_FENCE_OPS_VERSION 2

/**
 * Fence operations, as struct dma_fence_ops. Zero-initialise the table and
 * set @p version to DMABUF_FENCE_OPS_VERSION. The library reads a member
 * only from tables whose version has it ("since" below), so tables written
 * for an older header keep working and tables from a newer one are
 * accepted with their unknown members ignored. The library's own fences
 * (arrays, sw_sync points, imported sync files, the stub) use this same
 * table.
 *
 * Locking, per op: "no lock" means the library holds no lock of its own
 * when it calls the op (in particular not the fence's); ops may then call
 * any function of this header on other fences, and the lock-free getters on
 * this one.
 */
struct dmabuf_fence_ops {
	/** DMABUF_FENCE_OPS_VERSION of the header the table was
	 * written for; 0 is a table with the version-0 members only. */
	uint32_t version;

	/** [mandatory, since 0] name of the driver that
	 * made the fence. Called from the getters, from sync-file info and
	 * export, possibly with the fence lock held (in a callback or at
	 * signal time); must not sleep or take the fence lock. The string
	 * must live as long as the fence. */
	const char *(*get_driver_name)(struct dmabuf_fence *fence);

	/** [mandatory, since 0] name of the fence's
	 * timeline; same rules as get_driver_name. */
	const char *(*get_timeline_name)(struct dmabuf_fence *fence);

	/** [optional, since 0] called once, from the last
	 * dmabuf_fence_put(), before the fence is freed; frees what priv
	 * points to. No lock held; may sleep; must not use the fence except
	 * through dmabuf_fence_get_priv() and the getters. */
	void (*release)(struct dmabuf_fence *fence);

	/** [optional, since 1] called once, the first time
	 * something needs the fence to signal without being asked: a
	 * callback is added, a wait starts, or the fence is exported as a
	 * sync file (dma_fence_enable_sw_signaling()). No lock held (unlike
	 * the kernel, which holds the fence lock, so that it may add
	 * callbacks to other fences); must not sleep. Returns true, or false
	 * if the fence has already completed, in which case the library
	 * signals it. */
	bool (*enable_signaling)(struct dmabuf_fence *fence);

	/** [optional, since 1] asked by dmabuf_fence_is_signaled()
	 * and the other status queries while the fence is not signalled yet,
	 * as dma_fence_ops.signaled. No lock held; may run in a callback of
	 * another fence; must not sleep. Returns true if the fence has
	 * completed: the library then signals it (with the error set by
	 * dmabuf_fence_set_error(), if any). */
	bool (*signaled)(struct dmabuf_fence *fence);

	/** [optional, since 1] replaces the default wait (enable
	 * signalling, then sleep until signalled) in dmabuf_fence_wait(),
	 * which calls it only for a pending fence and timeout_ms != 0. No
	 * lock held; may sleep. Returns 1 once the fence has signalled, 0 on
	 * timeout, or a negative errno that dmabuf_fence_wait() returns. */
	int (*wait)(struct dmabuf_fence *fence, int timeout_ms);

	/** [since 1] compare seqnos of this fence as 64-bit
	 * numbers; by default (false) only their low 32 bits count, with
	 * wrap-around, as the kernel's __dma_fence_is_later(). */
	bool use_64bit_seqno;

	/** [optional, since 2] a hint that someone waits for the fence
	 * by @p deadline_ns (CLOCK_MONOTONIC), as dma_fence_ops.set_deadline:
	 * called by dmabuf_fence_set_deadline() for a pending fence, possibly
	 * several times (keep the earliest). No lock held; must not sleep. */
	void (*set_deadline)(struct dmabuf_fence *fence, int64_t deadline_ns);
};

struct dmabuf_fence_cb;

/** Fence callback, see dmabuf_fence_add_callback(). */
typedef void (*dmabuf_fence_func_t)(struct dmabuf_fence *fence,
				    struct dmabuf_fence_cb *cb);

/**
 * A callback registration, embedded by the caller in its own structure (as
 * struct dma_fence_cb) and alive until the callback ran or was removed.
 * The members are private to the library.
 */
struct dmabuf_fence_cb {
	/** The function to run (private). */
	dmabuf_fence_func_t func;
	/** Next and previous in the fence's list of callbacks (private). */
	struct dmabuf_fence_cb *next, /**< next callback (private) */
		*prev; /**< previous callback (private) */
};

/**
 * Allocates @p num consecutive fence contexts, as dma_fence_context_alloc().
 * Contexts are unique within the process and, being drawn from a random
 * 63-bit base (re-drawn in a forked child), practically unique across the
 * processes that exchange sync files. Context 0 is never returned (it is
 * the stub fence's).
 *
 * @param num how many contexts, at least 1
 * @return the first context; thread-safe (never fails)
 */
uint64_t dmabuf_fence_context_alloc(unsigned int num);

/**
 * Creates an unsignalled fence, as dma_fence_init().
 *
 * @param ops fence operations (get_driver_name and get_timeline_name are
 *        mandatory; any version, see struct dmabuf_fence_ops); must
 *        outlive the fence
 * @param priv driver data, returned by dmabuf_fence_get_priv()
 * @param context from dmabuf_fence_context_alloc()
 * @param seqno position on that context's timeline
 * @param[out] out the fence, with one reference owned by the caller
 * @return 0; -EINVAL for NULL ops/out or a missing mandatory op; -ENOMEM
 */
int dmabuf_fence_new(const struct dmabuf_fence_ops *ops, void *priv,
		     uint64_t context, uint64_t seqno,
		     struct dmabuf_fence **out);

/**
 * A new, already signalled fence (context 0, seqno 0), as
 * dma_fence_get_stub(): what to hand out when there is nothing to wait for.
 *
 * @param[out] out one reference owned by the caller
 * @return 0, -EINVAL, -ENOMEM
 */
int dmabuf_fence_get_stub(struct dmabuf_fence **out);

/**
 * Takes a reference.
 *
 * @param fence the fence
 * @return @p fence, with one more reference owned by the caller, or NULL if
 *         it is not a live fence (no errno: nothing is taken)
 */
struct dmabuf_fence *dmabuf_fence_get(struct dmabuf_fence *fence);

/**
 * Drops a reference; the last one frees the fence (ops->release first).
 *
 * @param fence the reference to drop; NULL is a no-op, a dead fence is
 *        logged and ignored
 */
void dmabuf_fence_put(struct dmabuf_fence *fence);

/**
 * @param fence the fence
 * @return the driver data given to dmabuf_fence_new() (NULL for library
 *         fences and dead fences); no errno
 */
void *dmabuf_fence_get_priv(struct dmabuf_fence *fence);
/**
 * @param fence the fence
 * @return the fence's context (0 for a dead fence); no errno
 */
uint64_t dmabuf_fence_get_context(struct dmabuf_fence *fence);
/**
 * @param fence the fence
 * @return the fence's seqno (0 for a dead fence); no errno
 */
uint64_t dmabuf_fence_get_seqno(struct dmabuf_fence *fence);
/**
 * @param fence the fence
 * @return ops->get_driver_name(), or "" for a dead fence; borrowed, valid
 *         while the fence is
 */
const char *dmabuf_fence_driver_name(struct dmabuf_fence *fence);
/**
 * @param fence the fence
 * @return ops->get_timeline_name(), or "" for a dead fence; borrowed,
 *         valid while the fence is
 */
const char *dmabuf_fence_timeline_name(struct dmabuf_fence *fence);

/**
 * Signals the fence, as dma_fence_signal(): records the timestamp, runs
 * every callback (in this thread, under the fence lock), wakes waiters and
 * makes exported sync files readable. A fence signals once.
 *
 * @param fence the fence to signal
 * @return 0; -EINVAL if already signalled, not a live fence, or imported
 *         from a sync file (only its signaller signals it)
 */
int dmabuf_fence_signal(struct dmabuf_fence *fence);

/**
 * Records an error to report once the fence signals, as
 * dma_fence_set_error(). Call it before dmabuf_fence_signal().
 *
 * @param fence the fence
 * @param error a negative errno (>= -4095)
 * @return 0; -EINVAL for a bad error value or fence, or an imported fence
 *         (its error comes from its signaller); -EBUSY if the fence has
 *         already signalled (the error is not recorded)
 */
int dmabuf_fence_set_error(struct dmabuf_fence *fence, int error);

/**
 * Status, as dma_fence_get_status(): 0 while pending, 1 when signalled
 * without error, the negative error when signalled with one (an error set
 * before signalling shows only after the signal). Lock-free; callable from
 * a callback.
 *
 * @param fence the fence
 * @return 0 pending, 1 signalled, the negative error it signalled with;
 *         -EINVAL for a dead fence
 */
int dmabuf_fence_get_status(struct dmabuf_fence *fence);

/**
 * Lock-free.
 *
 * @param fence the fence
 * @return true once signalled (false for a dead fence)
 */
bool dmabuf_fence_is_signaled(struct dmabuf_fence *fence);

/**
 * Signal time (CLOCK_MONOTONIC, ns), as fence->timestamp.
 *
 * @param fence the fence
 * @param[out] ns the time it signalled
 * @return 0 and *ns; -EBUSY while pending; -EINVAL for a dead fence or NULL
 *         ns
 */
int dmabuf_fence_get_timestamp(struct dmabuf_fence *fence, int64_t *ns);

/**
 * Registers @p func to run when the fence signals, as
 * dma_fence_add_callback().
 *
 * @param fence the fence
 * @param cb caller-owned storage, valid until the callback ran or
 *        dmabuf_fence_remove_callback() returned
 * @param func the callback; runs once, in the signalling thread, under the
 *        fence lock
 * @return 0; -ENOENT if the fence has already signalled (func will never
 *         run; cb is initialised so that removing it returns false);
 *         -EINVAL for NULL arguments or a dead fence
 */
int dmabuf_fence_add_callback(struct dmabuf_fence *fence,
			      struct dmabuf_fence_cb *cb,
			      dmabuf_fence_func_t func);

/**
 * Unregisters a callback, as dma_fence_remove_callback().
 *
 * @param fence the fence it was added to
 * @param cb the registration given to dmabuf_fence_add_callback()
 * @return true if it was pending and is now removed (it will not run);
 *         false if it already ran (and has completed) or was never added
 */
bool dmabuf_fence_remove_callback(struct dmabuf_fence *fence,
				  struct dmabuf_fence_cb *cb);

/**
 * Waits for the fence to signal, as dma_fence_wait_timeout(). May be called
 * from any thread except from a callback of the same fence.
 *
 * @param fence the fence (the caller keeps its reference)
 * @param timeout_ms -1 to wait forever, 0 to test
 * @return 1 once signalled (with or without error; see
 *         dmabuf_fence_get_status()), 0 on timeout, -EINVAL
 */
int dmabuf_fence_wait(struct dmabuf_fence *fence, int timeout_ms);

/**
 * Tells the fence's signaller that a waiter needs it by @p deadline_ns, as
 * dma_fence_set_deadline(): calls ops->set_deadline (since version 2) of a
 * pending fence; a fence without the op ignores the hint. Arrays and
 * chains pass it to each of their fences; a sw_sync point keeps the
 * earliest (dmabuf_timeline_point_get_deadline()). An imported fence of
 * another process sends it to the signalling process, without waiting,
 * where the fence's own ops->set_deadline gets it from the library's
 * watcher thread (docs/fences.md, "Deadlines").
 *
 * @param fence the fence (borrowed)
 * @param deadline_ns CLOCK_MONOTONIC time in ns
 * @return 0, -EINVAL for a dead fence
 */
int dmabuf_fence_set_deadline(struct dmabuf_fence *fence, int64_t deadline_ns);

/**
 * Merges fences, as dma_fence_unwrap_merge(): arrays and chains are flattened,
 * signalled fences are dropped, the rest is sorted by context and one
 * fence is kept per context, the later one as __dma_fence_is_later()
 * says (32-bit seqnos with wrap-around unless the fence's ops set
 * use_64bit_seqno). The result is a signalled stub (carrying the latest
 * timestamp of the dropped fences) if nothing is left, the single fence
 * left itself, or else a fence array (new context, seqno 1) that signals
 * when all its fences have, with the first error among them. An array
 * watches its fences only once something waits for it (a wait, a
 * callback, a sync-file export); until then status queries look at its
 * fences.
 *
 * @param fences the fences to merge (borrowed; the result takes its own
 *        references)
 * @param n how many
 * @param[out] out one reference owned by the caller
 * @return 0; -EINVAL for a NULL or dead fence or n == 0; -ENOMEM
 */
int dmabuf_fence_merge(struct dmabuf_fence *const *fences, unsigned int n,
		       struct dmabuf_fence **out);

/**
 * The fences inside a fence array (a fence made by dmabuf_fence_merge()),
 * sorted by context, or inside a fence chain (the fence of each link, head
 * first, arrays among them flattened), as dma_fence_unwrap_for_each().
 * For any other fence, the fence itself. Merges unwrap chains the same way.
 *
 * @param fence the fence
 * @param fences filled with at most @p max borrowed pointers (no
 *        reference; valid while @p fence is and, for a chain, until a walk
 *        drops the signalled links that hold them), may be NULL when max
 *        is 0
 * @param max room in @p fences
 * @return the number of fences (which may exceed max), -EINVAL
 */
int dmabuf_fence_unwrap(struct dmabuf_fence *fence,
			struct dmabuf_fence **fences, unsigned int max);

/**
 * Creates a fence-chain node, as dma_fence_chain_init(): a point @p seqno
 * on a timeline whose points before it are @p prev. The node signals once
 * @p fence and every fence before it in the chain have signalled. If
 * @p prev is a chain node and @p seqno is later (64-bit comparison), the
 * node continues prev's context; otherwise it gets a new context, and its
 * seqno is never below prev's.
 *
 * @param prev the previous node or any fence (the node takes its own
 *        reference), or NULL for the first point
 * @param fence the fence of this point (the node takes its own reference)
 * @param seqno the point's 64-bit seqno (chains use 64-bit seqnos)
 * @param[out] out one reference owned by the caller
 * @return 0; -EINVAL for a NULL @p out or @p fence, or a dead fence; -ENOMEM
 */
int dmabuf_fence_chain_new(struct dmabuf_fence *prev, struct dmabuf_fence *fence,
			   uint64_t seqno, struct dmabuf_fence **out);

/**
 * Steps to the link before @p fence, as dma_fence_chain_walk(): drops the
 * signalled links right before it from the chain (garbage collection) and
 * returns the first pending one.
 *
 * @param fence a reference the call consumes (a fence that is no chain
 *        node is just put)
 * @return a reference to the previous pending link (a node, or the fence
 *         the first node was chained to), or NULL when there is none
 */
struct dmabuf_fence *dmabuf_fence_chain_walk(struct dmabuf_fence *fence);

/**
 * Finds the link to wait on for point @p seqno, as
 * dma_fence_chain_find_seqno(): on return *pfence is the oldest link of
 * the chain's context whose point is at least @p seqno and that still has
 * unsignalled fences at or before it, or NULL when everything up to
 * @p seqno has signalled. A @p seqno of 0 leaves *pfence as it is.
 *
 * @param[in,out] pfence a reference to a chain node, replaced by a
 *        reference (or NULL) that the caller owns
 * @param seqno the point looked for
 * @return 0; -EINVAL if *pfence is no chain node or @p seqno is beyond
 *         its point (*pfence then unchanged)
 */
int dmabuf_fence_chain_find_seqno(struct dmabuf_fence **pfence, uint64_t seqno);

/**
 * As dma_fence_chain_contained().
 *
 * @param fence a fence
 * @return the fence a chain node holds (borrowed, valid while the node
 *         is), @p fence itself if it is no chain node, NULL if dead
 */
struct dmabuf_fence *dmabuf_fence_chain_get_fence(struct dmabuf_fence *fence);

/* ------------------------------------------------------------------------ */
/** @defgroup resv Reservation objects (dma_resv)                           */
/* ------------------------------------------------------------------------ */

/**
 * Usage of a fence in a reservation object, as enum dma_resv_usage. A query
 * at one level returns the fences of that level and every stronger (lower)
 * one: READ returns KERNEL, WRITE and READ fences.
 */
enum dmabuf_resv_usage {
	DMABUF_RESV_USAGE_KERNEL = 0,	/**< memory management (moves, clears) */
	DMABUF_RESV_USAGE_WRITE = 1,	/**< implicit-sync writers */
	DMABUF_RESV_USAGE_READ = 2,	/**< implicit-sync readers */
	DMABUF_RESV_USAGE_BOOKKEEP = 3,	/**< explicit sync only, never waited on
					 * implicitly */
};

/**
 * Creates an empty reservation object (a buffer owns one).
 * @param[out] out owned by the caller until dmabuf_resv_destroy()
 * @return 0, -EINVAL, -ENOMEM
 */
int dmabuf_resv_new(struct dmabuf_resv **out);

/**
 * Drops every fence reference and frees the object. No other thread may use
 * it concurrently.
 *
 * @param resv the object, or NULL (no-op)
 */
void dmabuf_resv_destroy(struct dmabuf_resv *resv);

/**
 * Takes the object's lock, as dma_resv_lock(), to make a sequence of calls
 * atomic (e.g. test then add). The lock is recursive; adding a fence takes
 * it internally, reading (get, test, wait, iterate) never does. Do not wait on fences while holding it if
 * other threads must add fences meanwhile.
 *
 * @param resv the object
 */
void dmabuf_resv_lock(struct dmabuf_resv *resv);
/**
 * Releases the lock taken by dmabuf_resv_lock().
 *
 * @param resv the object
 */
void dmabuf_resv_unlock(struct dmabuf_resv *resv);

/**
 * Adds a fence, as dma_resv_add_fence(): the object takes its own
 * reference. The new fence replaces a fence of the same context whose
 * usage is the same or weaker (numerically greater or equal) when it is
 * that fence or later (dma_fence_is_later_or_same(): 32-bit seqnos wrap
 * unless the ops set use_64bit_seqno); signalled fences are dropped.
 *
 * @param resv the object
 * @param fence borrowed; the object takes its own reference
 * @param usage how the fence uses the buffer
 * @return 0; -EINVAL for a bad usage or a dead fence; -ENOMEM
 */
int dmabuf_resv_add_fence(struct dmabuf_resv *resv, struct dmabuf_fence *fence,
			  enum dmabuf_resv_usage usage);

/**
 * Copies out the fences at @p usage or stronger, as dma_resv_get_fences().
 *
 * @param resv the reservation object
 * @param usage the weakest usage to include
 * @param[out] fences a malloc'd array of references (NULL when empty);
 *        release it with dmabuf_resv_put_fences()
 * @param[out] count number of fences
 * @return 0, -EINVAL, -ENOMEM
 */
int dmabuf_resv_get_fences(struct dmabuf_resv *resv, enum dmabuf_resv_usage usage,
			   struct dmabuf_fence ***fences, unsigned int *count);

/**
 * Drops the references and frees an array from dmabuf_resv_get_fences().
 *
 * @param fences the array (NULL is a no-op)
 * @param count its length
 */
void dmabuf_resv_put_fences(struct dmabuf_fence **fences, unsigned int count);

/**
 * One fence for everything at @p usage or stronger, as
 * dma_resv_get_singleton(): NULL when there is none, the fence itself when
 * there is one, else a merge (dmabuf_fence_merge()).
 *
 * @param resv the reservation object
 * @param usage the weakest usage to include
 * @param[out] out NULL or one reference owned by the caller
 * @return 0, -EINVAL, -ENOMEM
 */
int dmabuf_resv_get_singleton(struct dmabuf_resv *resv,
			      enum dmabuf_resv_usage usage,
			      struct dmabuf_fence **out);

/**
 * As dma_resv_test_signaled().
 *
 * @param resv the reservation object
 * @param usage the weakest usage to include
 * @return 1 if every fence at @p usage or stronger has signalled, 0 if
 *         not, -EINVAL
 */
int dmabuf_resv_test_signaled(struct dmabuf_resv *resv,
			      enum dmabuf_resv_usage usage);

/**
 * Waits for every fence at @p usage or stronger, as dma_resv_wait_timeout()
 * (fences added during the wait are not waited for). The lock is not held
 * while waiting.
 *
 * @param resv the reservation object
 * @param usage the weakest usage to include
 * @param timeout_ms -1 forever, 0 to test; the budget is for all fences
 * @return 1 when all have signalled, 0 on timeout, -EINVAL
 */
int dmabuf_resv_wait(struct dmabuf_resv *resv, enum dmabuf_resv_usage usage,
		     int timeout_ms);

/** Iterator callback: return 0 to continue, anything else to stop. */
typedef int (*dmabuf_resv_iter_fn)(void *data, struct dmabuf_fence *fence,
				   enum dmabuf_resv_usage usage);

/**
 * Calls @p fn for each fence at @p usage or stronger, in insertion order,
 * as dma_resv_for_each_fence(). It iterates over a snapshot (taken
 * without the object's lock, as every read) and calls fn with no lock
 * held, so fn may use the object.
 *
 * @param resv the reservation object
 * @param usage the weakest usage to include
 * @param fn called for each fence (a borrowed pointer, valid during the
 *        call) with its usage
 * @param data passed to fn
 * @return the number of fences visited; fn's non-zero value if it stopped
 *         the iteration early (returned as is); -EINVAL; -ENOMEM
 */
int dmabuf_resv_for_each_fence(struct dmabuf_resv *resv,
			       enum dmabuf_resv_usage usage,
			       dmabuf_resv_iter_fn fn, void *data);

/**
 * Cursor over a reservation object's fences without its lock, as the
 * kernel's struct dma_resv_iter with dma_resv_iter_first_unlocked() and
 * dma_resv_iter_next_unlocked(). Declare it on the stack with struct_size
 * set (or zero), start it with dmabuf_resv_iter_begin() and finish with
 * dmabuf_resv_iter_end(). The members after struct_size are the library's;
 * read them through the functions below.
 *
 * @code
 * struct dmabuf_resv_iter it = { .struct_size = sizeof(it) };
 * struct dmabuf_fence *f;
 *
 * dmabuf_resv_iter_begin(&it, resv, DMABUF_RESV_USAGE_READ);
 * for (f = dmabuf_resv_iter_first_unlocked(&it); f;
 *      f = dmabuf_resv_iter_next_unlocked(&it)) {
 *         if (dmabuf_resv_iter_is_restarted(&it))
 *                 forget_what_was_counted();
 *         count(f);
 * }
 * dmabuf_resv_iter_end(&it);
 * @endcode
 */
struct dmabuf_resv_iter {
	uint32_t struct_size;		/**< sizeof(struct dmabuf_resv_iter) or 0 */
	/** @cond INTERNAL */
	struct dmabuf_resv *resv;
	enum dmabuf_resv_usage usage;
	struct dmabuf_fence *fence;
	enum dmabuf_resv_usage fence_usage;
	unsigned int index;
	uint64_t seq;
	bool is_restarted;
	/** @endcond */
};

/**
 * Starts an unlocked iteration over the fences at @p usage or stronger.
 * Neither this nor the other dmabuf_resv_iter_* calls takes the object's
 * lock (dmabuf_resv_lock()), so they may be called with any lock held,
 * including that one.
 *
 * @param iter the cursor (caller's memory)
 * @param resv the reservation object; it must outlive the iteration
 * @param usage the weakest usage to include
 * @return 0; -EINVAL for a NULL argument, a bad usage or a struct_size
 *         smaller than this version's cursor
 */
int dmabuf_resv_iter_begin(struct dmabuf_resv_iter *iter,
			   struct dmabuf_resv *resv,
			   enum dmabuf_resv_usage usage);

/**
 * The first unsignalled fence at the cursor's usage or stronger, as
 * dma_resv_iter_first_unlocked(). Signalled fences are skipped.
 *
 * @param iter a begun cursor
 * @return a fence borrowed from the cursor (it holds a reference until the
 *         next call or dmabuf_resv_iter_end(); take your own with
 *         dmabuf_fence_get() to keep it), or NULL when there is none
 */
struct dmabuf_fence *dmabuf_resv_iter_first_unlocked(struct dmabuf_resv_iter *iter);

/**
 * The next unsignalled fence, as dma_resv_iter_next_unlocked(). When a
 * fence was added (or replaced) since the previous call, the cursor starts
 * again from the first fence and dmabuf_resv_iter_is_restarted() is true
 * for the fence it returns: whatever the caller accumulated must be
 * discarded.
 *
 * @param iter a begun cursor
 * @return as dmabuf_resv_iter_first_unlocked()
 */
struct dmabuf_fence *dmabuf_resv_iter_next_unlocked(struct dmabuf_resv_iter *iter);

/**
 * As dma_resv_iter_is_restarted().
 *
 * @param iter the cursor
 * @return true if the fence last returned is the first of a (re)started
 *         walk: always for the first fence, and after a concurrent change
 */
bool dmabuf_resv_iter_is_restarted(const struct dmabuf_resv_iter *iter);

/**
 * As dma_resv_iter_usage().
 *
 * @param iter the cursor
 * @return the usage of the fence last returned
 */
enum dmabuf_resv_usage dmabuf_resv_iter_get_usage(const struct dmabuf_resv_iter *iter);

/**
 * Ends the iteration, as dma_resv_iter_end(): drops the cursor's reference.
 *
 * @param iter the cursor, or NULL (no-op)
 */
void dmabuf_resv_iter_end(struct dmabuf_resv_iter *iter);

/* ------------------------------------------------------------------------ */
/** @defgroup sync_file Sync files: fences as fds                           */
/* ------------------------------------------------------------------------ */

/** The sync-file fd signalled with an error because the process that could
 * signal the fence is gone (exited or killed, or dropped the last reference
 * of an unsignalled fence). */
#define DMABUF_FENCE_ESIGNALLER (-EPIPE)

/**
 * Exports a fence as a sync-file fd, as sync_file_create() plus an fd.
 * The fd polls POLLIN once the fence signals (in any process it reaches),
 * can be sent over SCM_RIGHTS, and is imported back with
 * dmabuf_sync_file_import(). Each export makes a new sync file, as
 * DMA_BUF_IOCTL_EXPORT_SYNC_FILE does (except for a pending fence
 * imported from a sync file: that sync file again, so that it maps back
 * to the original fence in its exporter). Do not read() or recv() from
 * the fd: the signal record in it is peeked, never consumed. The library
 * keeps the other end of the socket while the fence lives and some copy of
 * the fd is open in some process; once every copy is closed it lets go of
 * it at a later export (at most 64 such ends wait) or when the fd limit is
 * reached.
 *
 * @param fence borrowed; the sync file takes its own reference
 * @return a new O_CLOEXEC fd, owned by the caller; -EINVAL for a dead fence; -EMFILE, -ENOMEM...
 */
int dmabuf_sync_file_export(struct dmabuf_fence *fence);

/**
 * The fence behind a sync-file fd, as sync_file_get_fence(). In the process
 * that exported it, the original fence; in another process a fence with
 * the same context and seqno that signals when the original does, with its
 * error, or with DMABUF_FENCE_ESIGNALLER if the original's process dies
 * first. Importing the same sync file twice gives the same fence. An
 * imported fence keeps a copy of the fd until it signals (the call that
 * learns of the signal closes it, before callbacks run), then none; while
 * any imported fence is pending the process also has one socket-diagnostics
 * socket, shared by all, so that their waits and status queries need no
 * new fd.
 *
 * @param fd borrowed
 * @param[out] out one reference owned by the caller
 * @return 0; -EBADF for a bad or O_PATH fd (fget() fails); -EINVAL if fd is
 *         not a sync file; -ENOMEM; -EMFILE or -ENFILE when no fd is free
 *         for the copy (or, at the first pending import, for that socket)
 */
int dmabuf_sync_file_import(int fd, struct dmabuf_fence **out);

/**
 * Merges two sync files into a new one, as SYNC_IOC_MERGE on @p fd1 (see
 * dmabuf_fence_merge() for the rules).
 *
 * @param fd1 borrowed; the fd the ioctl would be issued on
 * @param fd2 borrowed
 * @return a new O_CLOEXEC fd; -EBADF for a bad @p fd1; -ENOTTY if @p fd1 is
 *         not a sync file (that file has no such ioctl); -ENOENT if @p fd2
 *         is not a sync file or not an fd (sync_file_ioctl_merge()); -ENOMEM
 */
int dmabuf_sync_file_merge(int fd1, int fd2);

/**
 * SYNC_IOC_SET_DEADLINE on @p fd: dmabuf_fence_set_deadline() on the fence
 * behind it; for a fence another process signals, the hint travels to that
 * process's fence (one-way, a hint: dropped if the sync file's socket is
 * full).
 *
 * @param fd a sync-file fd (borrowed)
 * @param deadline_ns CLOCK_MONOTONIC time in ns
 * @return 0; -EBADF for a closed fd, -ENOTTY for an fd that is not a
 *         sync file (as the ioctl on another file); -ENOMEM
 */
int dmabuf_sync_file_set_deadline(int fd, int64_t deadline_ns);

/**
 * Waits until the sync file signals, like libsync's sync_wait(), from the
 * fd alone. With @p timeout_ms -1 or 0 it is one syscall when the answer is
 * "signalled" (a peek at the signal record, which waits for it); a timeout
 * above 0 polls.
 *
 * @param fd the sync file, borrowed
 * @param timeout_ms -1 forever, 0 to test, else milliseconds
 * @return 1 signalled, 0 on timeout, -EBADF; -EINVAL for an fd that is
 *         not a sync file (where poll() would answer for that other file);
 *         -EMFILE, -ENFILE, -ENOMEM or -ENOBUFS when the file reads EOF
 *         (a holder shut it down, or its signaller went) and the question
 *         that tells the two apart found no fd or memory (no pending
 *         imported fence of the process kept the socket it is asked on):
 *         never taken as a signal.
 *         Only a connected socket of another kind with nothing to read
 *         waits (timeout -1) as poll() would, until it has data or EOF
 *         (then -EINVAL).
 */
int dmabuf_sync_file_wait(int fd, int timeout_ms);

/** Size of the name fields of struct dmabuf_sync_fence_info, NUL included. */
#define DMABUF_SYNC_NAME_LEN 32

/** One fence of a sync file, as struct sync_fence_info. */
struct dmabuf_sync_fence_info {
	char obj_name[DMABUF_SYNC_NAME_LEN];	/**< timeline name */
	char driver_name[DMABUF_SYNC_NAME_LEN];	/**< driver name */
	uint64_t context;	/**< fence context */
	uint64_t seqno;		/**< seqno on that context */
	int32_t status;		/**< as dmabuf_fence_get_status() */
	uint32_t flags;		/**< 0 */
	int64_t timestamp_ns;	/**< CLOCK_MONOTONIC; 0 while pending */
};

/**
 * Status of a sync file and of each of its fences, as SYNC_IOC_FILE_INFO.
 *
 * @param fd the sync file, borrowed
 * @param[out] status optional: 1 all signalled, 0 some pending, or the
 *        first error
 * @param[out] info filled with at most @p max entries (may be NULL if max is 0)
 * @param max room in @p info
 * @return the number of fences in the sync file (may exceed max); -EBADF
 *         for a bad or O_PATH fd; -ENOTTY for an fd that is not a sync
 *         file (as the ioctl on another file); -EINVAL for NULL @p info
 *         with @p max > 0. Needs no free fd (a file this process cannot
 *         import for want of one is answered from the fd itself), except
 *         for a file whose socket a holder shut down both ways, which
 *         reads as its signaller gone until asked about: then -EMFILE,
 *         -ENFILE, -ENOMEM or -ENOBUFS when the question cannot be asked,
 *         never a signal
 */
int dmabuf_sync_file_info(int fd, int *status,
			  struct dmabuf_sync_fence_info *info, unsigned int max);

/* ------------------------------------------------------------------------ */
/** @defgroup sw_sync Software timelines (sw_sync), for tests              */
/* ------------------------------------------------------------------------ */

/**
 * Creates a timeline at value 0 with its own fence context, as opening
 * sw_sync. Thread-safe.
 *
 * @param name timeline name (truncated to 31 bytes), NULL for "sw_sync"
 * @param[out] out owned by the caller until dmabuf_timeline_destroy()
 * @return 0, -EINVAL, -ENOMEM
 */
int dmabuf_timeline_new(const char *name, struct dmabuf_timeline **out);

/**
 * Destroys the timeline, as closing sw_sync: every fence still pending
 * signals with -ENOENT (the kernel's error). Signalled fences stay valid.
 *
 * @param tl the timeline, or NULL (no-op)
 */
void dmabuf_timeline_destroy(struct dmabuf_timeline *tl);

/**
 * A fence that signals when the timeline reaches @p value, as
 * SW_SYNC_IOC_CREATE_FENCE (already signalled if it has). Driver name
 * "sw_sync", seqno @p value (32-bit wrap-around comparison, as sw_sync).
 *
 * @param tl the timeline
 * @param value the timeline value at which the fence signals
 * @param[out] out one reference owned by the caller
 * @return 0, -EINVAL, -ENOMEM
 */
int dmabuf_timeline_create_fence(struct dmabuf_timeline *tl, uint32_t value,
				 struct dmabuf_fence **out);

/**
 * Advances the timeline by @p inc, as SW_SYNC_IOC_INC, signalling every
 * fence it reaches (callbacks run in this thread).
 *
 * @param tl the timeline
 * @param inc how much to add to its value
 * @return 0, -EINVAL for a dead timeline
 */
int dmabuf_timeline_inc(struct dmabuf_timeline *tl, uint32_t inc);

/**
 * @param tl the timeline
 * @return its current value (0 for a dead timeline); no errno
 */
uint32_t dmabuf_timeline_value(struct dmabuf_timeline *tl);

/**
 * The earliest deadline set on a sw_sync point (dmabuf_fence_set_deadline()
 * while it was pending), as SW_SYNC_GET_DEADLINE.
 *
 * @param fence a fence made by dmabuf_timeline_create_fence()
 * @param[out] deadline_ns the deadline (CLOCK_MONOTONIC ns)
 * @return 0; -ENOENT when none was set; -EINVAL for a NULL argument or a
 *         fence that is no sw_sync point of this process
 */
int dmabuf_timeline_point_get_deadline(struct dmabuf_fence *fence,
				       int64_t *deadline_ns);

/* ------------------------------------------------------------------------ */
/** @defgroup buffer_sync Buffers and implicit synchronisation              */
/* ------------------------------------------------------------------------ */

/**
 * Exports the buffer's fences as one sync file, as
 * DMA_BUF_IOCTL_EXPORT_SYNC_FILE: with DMABUF_SYNC_WRITE every fence (what a
 * writer must wait for), with DMABUF_SYNC_READ only the writers. A buffer
 * without such fences gives an already signalled sync file.
 *
 * @param buf the buffer (borrowed; the caller keeps its reference)
 * @param flags DMABUF_SYNC_READ and/or DMABUF_SYNC_WRITE (dmabuf.h)
 * @return a new O_CLOEXEC sync-file fd owned by the caller; -EINVAL for
 *         flags empty or outside READ|WRITE, or an invalid buffer
 */
int dmabuf_export_sync_file(struct dmabuf *buf, uint32_t flags);

/**
 * Adds the fence of a sync file to the buffer, as
 * DMA_BUF_IOCTL_IMPORT_SYNC_FILE: with DMABUF_SYNC_WRITE as a write fence,
 * otherwise as a read fence.
 *
 * @param buf the buffer (borrowed; the caller keeps its reference)
 * @param flags DMABUF_SYNC_WRITE for a write fence, DMABUF_SYNC_READ for a
 *        read fence
 * @param fd borrowed sync-file fd
 * @return 0; -EINVAL for bad flags or an fd that is not a sync file (a bad
 *         or O_PATH fd too, as dma_buf_import_sync_file() whose
 *         sync_file_get_fence() fails); -ENOMEM
 */
int dmabuf_import_sync_file(struct dmabuf *buf, uint32_t flags, int fd);

/**
 * Readiness of a buffer, as poll() on a dma-buf fd: POLLIN once every write
 * fence has signalled, POLLOUT once every fence has.
 *
 * @param buf the buffer (borrowed; the caller keeps its reference)
 * @param events POLLIN and/or POLLOUT
 * @return the ready subset of @p events (>= 0), or -EINVAL
 */
int dmabuf_poll(struct dmabuf *buf, short events);

#ifdef __cplusplus
}
#endif
