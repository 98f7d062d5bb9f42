/* SPDX-License-Identifier: MIT */
/*
 * What the files of the sync file share (sync_file.c has the design):
 * the socket's name and records, the exporter's and the importer's
 * structs, the table of sync files, and the calls between the pieces:
 * - sync_file.c: the file's identity (R's name, the table) and the ioctls
 *   on a sync-file fd (merge, deadline, wait, info);
 * - sync_file_export.c: export, the W ends, the records at signal, the
 *   sweep, deadlines read from W;
 * - sync_file_import.c: import, the imported-fence subtype that learns of
 *   its signal through R;
 * - sync_file_watcher.c: the watcher thread that drives both from epoll;
 * - sync_file_peer.c: what an EOF of R means (W still open? a status in
 *   W's name?), so that a holder's shutdown() of R signals nothing.
 * Locks (docs/design.md §8): the watcher's lock (6) before a fence lock
 * (7) before dmb_sf_lock (8).
 */
#pragma once

#include <sys/stat.h>

#include "fence_private.h"

#define SF_PREFIX "dmabuf-sync-file/1/"
#define SF_MAGIC 0x46534d44u /* "DMSF" */

/*
 * Who holds which fd (docs/fences.md, "Limits"):
 * - An export keeps W only (never R), so R's peers are the caller's copies
 *   alone: once every copy of R is closed in every process, W polls
 *   POLLHUP. A sweep closes such W ends of pending fences (amortised over
 *   exports, and before any export that hits the fd limit).
 * - At signal the record goes into every open W. W stays open (off the
 *   signalling path) until the sweep finds R gone or the fence is freed.
 * - An imported fence holds a copy of R while pending and closes it in the
 *   call that learns the signal, before callbacks run.
 */

/* Identity of one sync file within this process (R's inode plus the
 * exporter's pid and serial from R's name): maps an fd back to its fence. */
struct sf_key {
	bool keyed;			/* in dmb_sf_table */
	dev_t dev;
	ino_t ino;
	long pid;
	unsigned long serial;
	struct dmabuf_fence *fence;	/* weak; tryget */
	LIST_ENTRY(sf_key) link;	/* dmb_sf_table, under dmb_sf_lock */
};

/* One sync file made by an export: its W end. */
struct sf_export {
	struct sf_key key;
	int wfd;			/* -1 once closed */
	bool recorded;			/* the record is in W */
	/* A holder shut R down (W polled POLLHUP, or read EOF, while R
	 * is open): kept out of the sweep, closed at signal or free. */
	bool held;
	/* Under dmb_sf_lock: the watcher's id for W (deadlines), 0 if none. */
	uint64_t watch_id;
	struct sf_attach *owner;
	LIST_ENTRY(sf_export) fence_link;	/* owner->exports */
	TAILQ_ENTRY(sf_export) open_link;	/* the open ones while wfd >= 0 */
};

/* Hung on an exported fence of any subtype: its exports. */
struct sf_attach {
	struct dmb_fence_attachment a;
	struct dmabuf_fence_cb cb;	/* writes the records at signal */
	bool cb_added;			/* under the fence lock */
	struct dmabuf_fence *fence;
	LIST_HEAD(, sf_export) exports;	/* under dmb_sf_lock */
};

/* What the signaller leaves in the socket; peeked, never consumed. */
struct dmb_sf_record {
	uint32_t magic;
	int32_t error;
	int64_t timestamp_ns;
	uint64_t context;
	uint64_t seqno;
	char driver[DMABUF_SYNC_NAME_LEN];
	char timeline[DMABUF_SYNC_NAME_LEN];
	/* A merge also reports its fences (struct dmabuf_sync_fence_info
	 * each, after the record), so that per-fence status outlives it. */
	uint32_t nchildren;
	uint32_t pad;
};

/* A deadline, written into R by a holder, read from W by the signaller. */
struct dmb_sf_deadline {
	uint32_t magic;
	uint32_t pad;			/* 0 */
	int64_t deadline_ns;		/* CLOCK_MONOTONIC */
};

#define SF_DEADLINE_MAGIC 0x4c444d44u /* "DMDL" */

/* Bounds the record to what a socket buffer surely holds. */
#define SF_MAX_CHILDREN 256

/* An imported fence: a subtype signalled through its copy of R. */
struct sf_imported {
	struct dmabuf_fence base;
	struct sf_key key;
	/* Under base.lock: R's copy (-1 once closed) and its users (threads
	 * polling it, plus one while the watcher has it); while R is open, a
	 * hold on the diagnostics socket (dmb_sf_diag_hold()), if it had one. */
	int rfd;
	unsigned int users;
	bool diag_held;
	/* Under the watcher's lock. */
	uint64_t watch_id;		/* 0: not watched */
	LIST_ENTRY(sf_imported) watch_link;
	/* A holder shut R down (R is ready for good): not in the epoll set
	 * but looked at every slow_ms (doubling), next at slow_at. */
	int slow_ms;
	int64_t slow_at;
	char driver[DMABUF_SYNC_NAME_LEN];
	char timeline[DMABUF_SYNC_NAME_LEN];
	/* A merge signalled elsewhere: the fences the signaller reported. */
	struct dmabuf_sync_fence_info *children;
	unsigned int nchildren;
	/* R's name says the signaller reads deadlines; under base.lock, the
	 * earliest one sent (later ones are not: the earliest wins). */
	bool listens;
	bool deadline_sent;
	int64_t deadline;
};

/* What R's name says. */
struct sf_name {
	uint64_t context, seqno;
	long pid;
	unsigned long serial;
	unsigned int bits;
	bool listens;		/* "/d": the signaller reads deadlines */
};

/* sync_file.c: the table of this process's sync files (exported and
 * imported), keyed by R's identity. */
extern pthread_mutex_t dmb_sf_lock;
extern LIST_HEAD(sf_table_head, sf_key) dmb_sf_table;
/* Parses R's address; -EINVAL if R is not ours, -EBADF if fd is none. */
int dmb_sf_parse_name(int fd, struct sf_name *nm);
/* Under dmb_sf_lock: the fence of that sync file (a reference), or NULL. */
struct dmabuf_fence *dmb_sf_lookup_locked(dev_t dev, ino_t ino, const struct sf_name *nm);
/* snprintf(dst, DMABUF_SYNC_NAME_LEN, "%s", src) without stdio. */
void dmb_sf_copy_name(char *dst, const char *src);
/* The entry SYNC_IOC_FILE_INFO reports for f. */
void dmb_sf_fill_info(struct dmabuf_fence *f, struct dmabuf_sync_fence_info *i);

/* sync_file_peer.c */
/* 1 if the other end of the socket fd is open, 0 if it is closed, or
 * -errno when the kernel cannot say (no socket diagnostics; or, see
 * dmb_sf_diag_scarce(), no fd or memory for the question). */
int dmb_sf_peer_open(int fd);
/* A hold on the process's socket for those questions (made, O_CLOEXEC, by
 * the first hold): 0, or -errno and nothing held. Taken by whatever must
 * be able to ask without a new fd (an imported fence while it has R, the
 * watcher's instance); lock 8b, a leaf. */
int dmb_sf_diag_hold(void);
/* Drops a hold; the last one closes the socket. */
void dmb_sf_diag_release(void);
/* err (negative) says the question could not be had for want of an fd or
 * memory, not that the kernel cannot answer it. */
bool dmb_sf_diag_scarce(int err);
/* Binds W to the name that carries the signal's status (R could not take
 * the record); 0 or -errno. */
int dmb_sf_bind_status(int wfd, long pid, unsigned long serial, int error, int64_t ts);
/* R is at EOF without a record: 1 if the fence has signalled (*error,
 * *ts: the status W's name carries, or DMABUF_FENCE_ESIGNALLER when W is
 * closed without one), 0 if W is open (a holder shut R down), -errno
 * (dmb_sf_diag_scarce()) when the question could not be asked. */
int dmb_sf_eof_truth(int fd, int *error, int64_t *ts);

/* sync_file_export.c */
/* Under dmb_sf_lock, in a forked child: every W end is closed. */
void dmb_sf_exports_forked(void);
/* Under the watcher's lock, its event on the W end with watch id `id`
 * (in the watcher's epoll set epfd): the fence (a reference) and in *dl
 * the earliest deadline read, or NULL. */
struct dmabuf_fence *dmb_sf_export_deadline(uint64_t id, int epfd, int64_t *dl);

/* sync_file_import.c */
/* Checks R without blocking (timeout_ms 0) or waits on it, and signals the
 * fence when R says so. The caller holds a reference; user_held: it holds
 * a user of R too, which this drops. True once the fence has signalled. */
bool dmb_sf_imp_poll(struct sf_imported *imp, int timeout_ms, bool user_held);
/* Drops a user of R; the last one closes it once the fence signalled. */
void dmb_sf_rfd_put(struct sf_imported *imp);
/* A pending imported fence's sync file again (a new fd of R), else
 * -EINVAL (another subtype, or R closed), or -errno. */
int dmb_sf_imported_dup(struct dmabuf_fence *f);
/* An imported merge that signalled elsewhere: the number of fences its
 * signaller reported, and them in *children (borrowed); else 0. */
unsigned int dmb_sf_imported_children(struct dmabuf_fence *f,
				      const struct dmabuf_sync_fence_info **children);

/* sync_file_watcher.c */
/* Open W ends the watcher watches for deadlines (changed under dmb_sf_lock). */
extern atomic_uint dmb_sf_nwatched;
/* ops->enable_signaling of imported fences: the watcher watches R. */
bool dmb_sf_watch_import(struct sf_imported *imp);
/* imp signalled in this thread: if the watcher still has it, take it back. */
void dmb_sf_unwatch_import(struct sf_imported *imp);
/* A new export of a fence with a set_deadline op: W joins the watcher. */
void dmb_sf_watch_export(struct sf_export *e);
/* A watched W end went: stop the watcher if nothing else is watched. */
void dmb_sf_watcher_check_idle(void);
/* After a signal, outside callbacks: the idle check a callback left. */
void dmb_sf_after_signal(void);
