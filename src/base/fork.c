/* SPDX-License-Identifier: MIT */
/*
 * fork() while other threads are inside the library: every process-wide
 * lock is taken before the fork, in the lock order (docs/design.md §8), and
 * released on both sides after it, so the child never inherits a lock that
 * a thread it does not have was holding. One pthread_atfork() registration
 * for the whole library: the order of several would depend on the order of
 * constructors. Layers above base add their locks with dmb_fork_hook_add().
 */
#include <pthread.h>
#include <stdlib.h>

#include "base.h"

#define MAX_HOOKS 8

static struct {
	int rank;
	void (*prepare)(void), (*parent)(void), (*child)(void);
} hooks[MAX_HOOKS];
static size_t nhooks;

void dmb_fork_hook_add(int rank, void (*prepare)(void), void (*parent)(void),
		       void (*child)(void))
{
	size_t i;

	if (nhooks == MAX_HOOKS)
		abort(); /* a library bug, found by every test */
	/* Kept sorted by rank: prepare walks up, parent and child down. */
	for (i = nhooks; i > 0 && hooks[i - 1].rank > rank; i--)
		hooks[i] = hooks[i - 1];
	hooks[i].rank = rank;
	hooks[i].prepare = prepare;
	hooks[i].parent = parent;
	hooks[i].child = child;
	nhooks++;
}

static void fork_prepare(void)
{
	dmb_contexts_fork_prepare();	/* 2 */
	dmb_objects_fork_prepare();	/* 3 */
	for (size_t i = 0; i < nhooks; i++)
		hooks[i].prepare();
	dmb_log_fork_prepare();		/* the log handler: a leaf */
}

static void fork_parent(void)
{
	dmb_log_fork_parent();
	for (size_t i = nhooks; i > 0; i--)
		hooks[i - 1].parent();
	dmb_objects_fork_parent();
	dmb_contexts_fork_parent();
}

static void fork_child(void)
{
	dmb_log_fork_child();
	dmb_sys_fork_child();
	for (size_t i = nhooks; i > 0; i--)
		hooks[i - 1].child();
	dmb_objects_fork_child();
	dmb_contexts_fork_child();
}

__attribute__((constructor)) static void fork_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}
