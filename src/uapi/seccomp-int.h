/* SPDX-License-Identifier: MIT */
/*
 * What the files of the seccomp supervisor share (seccomp.c: the filter,
 * the loop, paths, ioctls, mmap; seccomp-ready.c: readiness of dma-buf fds
 * for poll, select and epoll). Not part of any contract.
 */
#pragma once

#include <linux/seccomp.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "uapi.h"

struct sup {
	int listener;
	struct seccomp_notif_sizes sizes;
	atomic_int threads;	/* deferred calls still running */
	atomic_bool udmabuf_mmap_said;
};

/* One notification being answered. */
struct call {
	struct dmb_uapi_io io;	/* first: the core hands it back to us */
	struct sup *sup;
	struct seccomp_notif *n;
	int pidfd;		/* of the calling thread's process, lazily */
};

/* SECCOMP_IOCTL_NOTIF_ID_VALID: the call is still waiting for us. */
bool dmb_sec_valid(struct call *c);

/* Answers: CONTINUE (the kernel runs the call), or the result val. */
void dmb_sec_reply(struct call *c, bool cont, long val);

/* The program's fd ufd as a new fd of the supervisor, or -EBADF. */
int dmb_sec_get_fd(struct call *c, int ufd);

/*
 * Answers c in a detached thread of its own: fn(c, arg) replies (or not,
 * when the call went away); then the call is finished and freed.
 * @return true if c (and its notification) now belong to the thread,
 *         false if the caller keeps it (no thread could be made)
 */
bool dmb_sec_defer(struct call *c, void (*fn)(struct call *c, void *arg), void *arg);

/*
 * poll, ppoll, select, pselect6: answered when a dma-buf fd is among the
 * fds (its readiness is the buffer's fences, as dma_buf_poll()), otherwise
 * CONTINUE. @return true if c was taken over (see dmb_sec_defer())
 */
bool dmb_sec_poll(struct call *c);

/* epoll_ctl on a dma-buf fd (any other: CONTINUE). Always replies. */
void dmb_sec_epoll_ctl(struct call *c);

/* After an emulated call that may have changed a buffer's fences: brings
 * the epoll registrations up to date before the program goes on. */
void dmb_sec_ready_changed(void);

/* The program is given the sw_sync timeline `fd` (the supervisor's, still
 * open): when the program's file of it goes, its pending fences signal
 * with -ENOENT (close() is not notified; the watcher sees it). */
void dmb_sec_watch_timeline(int fd);
