/* SPDX-License-Identifier: MIT */
/*
 * The uapi layer's release re-probes (timelines.c, seccomp-ready.c): the
 * kernel sends a close event from __fput() before it drops the file's
 * locks, and the closer can be held up between the two for any time, so a
 * probe that fails after a close event is retried with a back-off per
 * object, 1, 2, 4 ... ms, then every 1024 ms, for as long as the object is
 * queued (no give-up: the event that would have told is spent).
 *
 * The same scheme as the library's own release detection (its
 * src/core/release.c), which the uapi layer cannot call (it uses the
 * public API only): one list pair per back-off level, each level with its
 * time, so a re-probe is O(1) and the next wake-up is the earliest of
 * REPROBE_LEVELS times. The caller's thread sleeps in poll() with
 * dmb_uapi_reprobe_timeout(); with nothing queued that is -1, so the
 * usual path makes no extra call. Not locked: the caller's lock.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define DMB_UAPI_REPROBE_LEVELS 11
#define DMB_UAPI_REPROBE_NS 1000000 /* level 0's period; level k's is 2^k times it */

struct dmb_uapi_reprobe {
	struct dmb_uapi_reprobe *next, **pprev; /* valid while queued */
	unsigned char level;
	bool queued;
};

struct dmb_uapi_reprobes {
	struct {
		/* `due` are probed at at_ns (0: idle), `next` one period later */
		struct dmb_uapi_reprobe *due, *next;
		int64_t at_ns;
	} lv[DMB_UAPI_REPROBE_LEVELS];
	struct dmb_uapi_reprobe *batch; /* taken by the pass under way */
	unsigned int n;			/* queued, over all levels and batch */
};

static inline int64_t dmb_uapi_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t dmb_uapi_reprobe_period(unsigned int level)
{
	return (int64_t)DMB_UAPI_REPROBE_NS << level;
}

static inline void dmb_uapi_reprobe_link(struct dmb_uapi_reprobe **head, struct dmb_uapi_reprobe *it)
{
	it->next = *head;
	if (it->next)
		it->next->pprev = &it->next;
	it->pprev = head;
	*head = it;
}

static inline void dmb_uapi_reprobe_unlink(struct dmb_uapi_reprobe *it)
{
	if (it->next)
		it->next->pprev = it->pprev;
	*it->pprev = it->next;
}

/* Moves a whole list from *from to *to (empty). */
static inline void dmb_uapi_reprobe_move(struct dmb_uapi_reprobe **from, struct dmb_uapi_reprobe **to)
{
	*to = *from;
	if (*to)
		(*to)->pprev = to;
	*from = NULL;
}

/* Puts it on level k, to be probed no sooner than one period from now and
 * before two. */
static inline void dmb_uapi_reprobe_add(struct dmb_uapi_reprobes *q, struct dmb_uapi_reprobe *it,
					unsigned int k, int64_t now)
{
	if (!q->lv[k].at_ns)
		q->lv[k].at_ns = now + dmb_uapi_reprobe_period(k);
	if (q->lv[k].at_ns - now >= dmb_uapi_reprobe_period(k))
		dmb_uapi_reprobe_link(&q->lv[k].due, it);
	else
		dmb_uapi_reprobe_link(&q->lv[k].next, it);
	it->level = (unsigned char)k;
}

/* A probe of it failed after a close event: re-probe it from the shortest
 * period again (a new close restarts the race). */
static inline void dmb_uapi_reprobe_queue(struct dmb_uapi_reprobes *q, struct dmb_uapi_reprobe *it)
{
	if (it->queued) {
		dmb_uapi_reprobe_unlink(it);
	} else {
		it->queued = true;
		q->n++;
	}
	dmb_uapi_reprobe_add(q, it, 0, dmb_uapi_now_ns());
}

/* it needs no re-probe (gone, or let go). */
static inline void dmb_uapi_reprobe_cancel(struct dmb_uapi_reprobes *q, struct dmb_uapi_reprobe *it)
{
	if (!it->queued)
		return;
	dmb_uapi_reprobe_unlink(it);
	it->queued = false;
	if (--q->n)
		return; /* an emptied level finds nothing at its time */
	for (unsigned int k = 0; k < DMB_UAPI_REPROBE_LEVELS; k++)
		q->lv[k].at_ns = 0;
}

/* poll()'s timeout until the earliest level's time: -1 with nothing
 * queued, 0 when a level is due. */
static inline int dmb_uapi_reprobe_timeout(const struct dmb_uapi_reprobes *q)
{
	int64_t at = 0, now;

	if (!q->n)
		return -1;
	for (unsigned int k = 0; k < DMB_UAPI_REPROBE_LEVELS; k++)
		if (q->lv[k].at_ns && (!at || q->lv[k].at_ns < at))
			at = q->lv[k].at_ns;
	now = dmb_uapi_now_ns();
	if (!at || at <= now)
		return 0;
	return (int)((at - now + 999999) / 1000000);
}

/* Starts a pass: the `due` lists of the levels whose time has come become
 * the batch, their `next` lists their new `due`. */
static inline void dmb_uapi_reprobe_begin(struct dmb_uapi_reprobes *q)
{
	int64_t now;

	if (!q->n)
		return;
	now = dmb_uapi_now_ns();
	for (unsigned int k = 0; k < DMB_UAPI_REPROBE_LEVELS; k++) {
		struct dmb_uapi_reprobe *list, *it;

		if (!q->lv[k].at_ns || q->lv[k].at_ns > now)
			continue;
		dmb_uapi_reprobe_move(&q->lv[k].due, &list);
		dmb_uapi_reprobe_move(&q->lv[k].next, &q->lv[k].due);
		q->lv[k].at_ns = q->lv[k].due ? now + dmb_uapi_reprobe_period(k) : 0;
		while ((it = list)) {
			dmb_uapi_reprobe_unlink(it);
			dmb_uapi_reprobe_link(&q->batch, it);
		}
	}
}

/* The pass's next object to probe, or NULL: moved one level up first (the
 * last level keeps it), so that it stays queued until the caller cancels
 * it (the probe found it gone) and is never probed twice in one pass. */
static inline struct dmb_uapi_reprobe *dmb_uapi_reprobe_pop(struct dmb_uapi_reprobes *q)
{
	struct dmb_uapi_reprobe *it = q->batch;
	unsigned int up;

	if (!it)
		return NULL;
	up = it->level + 1u < DMB_UAPI_REPROBE_LEVELS ? it->level + 1u : it->level;
	dmb_uapi_reprobe_unlink(it);
	dmb_uapi_reprobe_add(q, it, up, dmb_uapi_now_ns());
	return it;
}

#define dmb_uapi_reprobe_of(it, type, member) \
	((type *)(void *)((char *)(it) - offsetof(type, member)))
