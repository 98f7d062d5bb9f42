/* SPDX-License-Identifier: MIT */
/*
 * Sync files: a fence as an fd that any process can poll, pass on over
 * SCM_RIGHTS and import back. Design (docs/fences.md has the long form):
 *
 * - The sync-file fd is one end (R) of an AF_UNIX stream socketpair. The
 *   exporting process keeps the other end (W) with the fence. When the
 *   fence signals, a small record (error, timestamp, names) is written to
 *   W and W is closed: R then polls POLLIN, in every process holding it.
 *   The record is only ever peeked (MSG_PEEK), so every holder reads it.
 * - If W closes without a record (the exporting process died, or dropped
 *   the last reference to an unsignalled fence), R still polls POLLIN (EOF)
 *   and importers signal with DMABUF_FENCE_ESIGNALLER instead of hanging.
 * - R is bound to an abstract address that carries the fence's context and
 *   seqno, so another process can rebuild the fence's identity from the fd
 *   alone (getsockname()) and merge rules work across processes.
 * - Within a process a table keyed by R's inode maps a sync file back to its
 *   fence, so importing returns the original fence (with every fence of a
 *   merge), and importing twice returns the same fence.
 * - An imported fence learns of its signal by polling R: waits poll it,
 *   status queries peek it, and callbacks (e.g. a merge that contains it)
 *   are driven by one watcher thread per process, started on demand and
 *   stopped when nothing is watched.
 * - Deadlines travel the other way: a holder of R writes a deadline record
 *   into it (the socket is bidirectional), which lands in W's receive
 *   queue. When the fence has a set_deadline op (R's name says so), the
 *   same watcher thread watches W and hands each deadline to the fence.
 */
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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
	bool keyed;			/* in sf_table */
	dev_t dev;
	ino_t ino;
	long pid;
	unsigned long serial;
	struct dmabuf_fence *fence;	/* weak; tryget */
	LIST_ENTRY(sf_key) link;	/* sf_table, under sf_lock */
};

/* One sync file made by an export: its W end. */
struct sf_export {
	struct sf_key key;
	int wfd;			/* -1 once closed */
	bool recorded;			/* the record is in W */
	/* Under sf_lock: the watcher's id for W (deadlines), 0 if none. */
	uint64_t watch_id;
	struct sf_attach *owner;
	LIST_ENTRY(sf_export) fence_link;	/* owner->exports */
	TAILQ_ENTRY(sf_export) open_link;	/* sf_open while wfd >= 0 */
};

/* Hung on an exported fence of any subtype: its exports. */
struct sf_attach {
	struct dmb_fence_attachment a;
	struct dmabuf_fence_cb cb;	/* writes the records at signal */
	bool cb_added;			/* under the fence lock */
	struct dmabuf_fence *fence;
	LIST_HEAD(, sf_export) exports;	/* under sf_lock */
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
/* Deadline records read from one W per watcher event; more wait for the
 * next one (epoll is level-triggered), so a flooding holder cannot hold
 * the watcher on one fence. */
#define SF_DEADLINES_PER_EVENT 64

/* Bounds the record to what a socket buffer surely holds. */
#define SF_MAX_CHILDREN 256
/* Sweep dead W ends when the open ones exceed twice the live ones of the
 * last sweep, and at least this many. */
#define SF_SWEEP_MIN 64

static pthread_mutex_t sf_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, sf_key) sf_table = LIST_HEAD_INITIALIZER(sf_table);
static TAILQ_HEAD(, sf_export) sf_open = TAILQ_HEAD_INITIALIZER(sf_open);
static unsigned int sf_nopen, sf_sweep_at = SF_SWEEP_MIN;
static atomic_ulong sf_counter;
/* Open W ends the watcher watches for deadlines (changed under sf_lock). */
static atomic_uint sf_nwatched;

/* An imported fence: a subtype signalled through its copy of R. */
struct sf_imported {
	struct dmabuf_fence base;
	struct sf_key key;
	/* Under base.lock: R's copy (-1 once closed) and its users (threads
	 * polling it, plus one while the watcher has it). */
	int rfd;
	unsigned int users;
	/* Under watcher.lock. */
	uint64_t watch_id;		/* 0: not watched */
	LIST_ENTRY(sf_imported) watch_link;
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

static struct sf_imported *to_imported(struct dmabuf_fence *f)
{
	return dmb_container_of(f, struct sf_imported, base);
}

static const struct dmabuf_fence_ops imported_ops32, imported_ops64;

static bool is_imported(struct dmabuf_fence *f)
{
	return f->ops == &imported_ops32 || f->ops == &imported_ops64;
}

static bool imp_poll(struct sf_imported *imp, int timeout_ms, bool user_held);

/* Drops a user of R; the last one closes it once the fence signalled. */
static void rfd_put(struct sf_imported *imp)
{
	pthread_mutex_lock(&imp->base.lock);
	if (--imp->users == 0 && imp->rfd >= 0 &&
	    atomic_load_explicit(&imp->base.signaled, memory_order_relaxed)) {
		close(imp->rfd);
		imp->rfd = -1;
	}
	pthread_mutex_unlock(&imp->base.lock);
}

/* ---- the watcher thread ------------------------------------------------- */

/*
 * Drives callbacks on imported fences (epoll on their copies of R) and
 * hands on deadlines written into W ends. The epoll data is a watch id,
 * looked up under the lock, so that an event racing with another thread's
 * unwatch finds nothing. The two fds (an instance) exist only while
 * something is watched. The call that unwatches the last thing stops the
 * instance and waits until the thread closed its fds, so no fd of the
 * watcher outlives that call; only inside a fence callback (where the wait
 * could be for a lock held around us) or in the watcher itself does the
 * instance stop on its own. The thread outlives its instance by
 * WATCH_LINGER_S, parked with no fd, so that a process that exports and
 * drops fences one after another does not make a thread for each; the
 * next instance runs on it, and the library destructor joins it.
 */
struct watch_inst {
	int epfd, wakefd;
	bool stopped;			/* its fds are closed */
	unsigned int refs;		/* the thread's, and a waiter's */
};

#define WATCH_LINGER_S 2

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* next, stopped, exiting changed */
	struct watch_inst *cur;		/* the running instance, or NULL */
	struct watch_inst *next;	/* handed to the thread, not taken */
	struct watch_inst *running;	/* the one the thread runs */
	bool thread_alive, exiting;
	pthread_t thread;
	/* A thread that ended its lingering: joined by the next start. */
	bool reap;
	pthread_t reap_thread;
	unsigned int nwatch;
	uint64_t next_id;
	LIST_HEAD(, sf_imported) watched;
} watcher = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

#define WATCH_STOP 0
/* Watch ids of W ends (deadlines) have this bit; those of imports not. */
#define WATCH_EXPORT (1ull << 63)

/* Nothing to watch: neither imported fences nor W ends. */
static bool watcher_idle_locked(void)
{
	return watcher.nwatch == 0 && atomic_load(&sf_nwatched) == 0;
}

static struct dmabuf_fence *export_deadline(uint64_t id, int64_t *dl);
static const struct dmb_fence_attachment_ops sf_attach_ops;
static void sf_after_signal(void);

static struct sf_imported *watched_find_locked(uint64_t id)
{
	struct sf_imported *imp;

	LIST_FOREACH(imp, &watcher.watched, watch_link)
		if (imp->watch_id == id)
			return imp;
	return NULL;
}

/* Under watcher.lock: stops watching imp; the watcher's reference and
 * imp's watch user pass to the caller. */
static void unwatch_locked(struct sf_imported *imp)
{
	if (watcher.cur)
		epoll_ctl(watcher.cur->epfd, EPOLL_CTL_DEL, imp->rfd, NULL);
	LIST_REMOVE(imp, watch_link);
	imp->watch_id = 0;
	watcher.nwatch--;
}

static bool on_watcher_thread_locked(void)
{
	return watcher.thread_alive && pthread_equal(watcher.thread, pthread_self());
}

/* Under watcher.lock: the current instance stops; returned (for
 * watcher_join()) when the caller may wait for it now. */
static struct watch_inst *watcher_stop_locked(bool join_now)
{
	struct watch_inst *w = watcher.cur;
	uint64_t one = 1;

	if (!w)
		return NULL;
	watcher.cur = NULL;
	if (watcher.next == w) {
		/* never taken by the thread: nothing waits on its fds */
		watcher.next = NULL;
		close(w->epfd);
		close(w->wakefd);
		w->epfd = w->wakefd = -1;
		w->stopped = true;
		if (--w->refs == 0) {
			free(w);
			return NULL;
		}
	} else if (write(w->wakefd, &one, sizeof(one)) < 0) {
		dmb_err(NULL, "sync file: cannot stop the fence watcher");
	}
	if (join_now && !on_watcher_thread_locked()) {
		w->refs++;
		return w;
	}
	return NULL;
}

/* Waits until w's fds are closed (the thread stays, parked). */
static void watcher_join(struct watch_inst *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&watcher.lock);
	while (!w->stopped)
		pthread_cond_wait(&watcher.cond, &watcher.lock);
	if (--w->refs == 0)
		free(w);
	pthread_mutex_unlock(&watcher.lock);
}

/* Runs one instance until it stops (its fds closed). */
static void watch_run(struct watch_inst *w)
{
	for (;;) {
		struct epoll_event ev[8];
		int n = epoll_wait(w->epfd, ev, DMB_ARRAY_SIZE(ev), -1);

		if (n < 0 && errno == EINTR)
			continue;
		for (int i = 0; i < n; i++) {
			struct sf_imported *imp = NULL;
			struct dmabuf_fence *dl_fence = NULL;
			int64_t dl = 0;
			bool stop, exp = ev[i].data.u64 & WATCH_EXPORT;

			pthread_mutex_lock(&watcher.lock);
			stop = ev[i].data.u64 == WATCH_STOP || watcher.cur != w;
			if (!stop && exp) {
				/* A W end: the deadline to hand on, or its
				 * EOF closed it; the last one stops the
				 * watcher in the same locked section, so a
				 * thread that finds W gone finds this
				 * instance stopped (and joins it). */
				dl_fence = export_deadline(ev[i].data.u64, &dl);
				if (watcher_idle_locked()) {
					watcher_stop_locked(false);
					stop = true;
				}
			}
			if (!stop && !exp)
				imp = watched_find_locked(ev[i].data.u64);
			if (imp) {
				unwatch_locked(imp);
				/* The last one: stop before running callbacks,
				 * so whoever they wake finds no fd of ours. */
				if (watcher_idle_locked()) {
					watcher_stop_locked(false);
					stop = true;
				}
			}
			if (stop) {
				close(w->epfd);
				close(w->wakefd);
				w->epfd = w->wakefd = -1;
				w->stopped = true;
				/* Not running from here on: a fork before
				 * watcher_main() relocks must not find w
				 * (freed below) as the running instance. */
				watcher.running = NULL;
				pthread_cond_broadcast(&watcher.cond);
				if (--w->refs == 0)
					free(w);
			}
			pthread_mutex_unlock(&watcher.lock);
			if (imp) {
				/* With the watch user, which it drops. */
				imp_poll(imp, 0, true);
				dmabuf_fence_put(&imp->base);
			}
			if (dl_fence) {
				/* The op runs with no lock of ours held. */
				dmabuf_fence_set_deadline(dl_fence, dl);
				dmabuf_fence_put(dl_fence);
			}
			if (stop)
				return;
		}
	}
}

static void *watcher_main(void *arg)
{
	pthread_mutex_lock(&watcher.lock);
	for (;;) {
		struct watch_inst *w = watcher.next;
		struct timespec ts;

		if (w) {
			watcher.next = NULL;
			watcher.running = w;
			pthread_mutex_unlock(&watcher.lock);
			watch_run(w);
			pthread_mutex_lock(&watcher.lock);
			watcher.running = NULL;
			continue;
		}
		if (watcher.exiting)
			break;
		/* parked, with no fd, until the next instance or the end */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += WATCH_LINGER_S;
		if (pthread_cond_timedwait(&watcher.cond, &watcher.lock, &ts) == ETIMEDOUT &&
		    !watcher.next)
			break;
	}
	watcher.thread_alive = false;
	watcher.reap = true;
	watcher.reap_thread = pthread_self();
	pthread_mutex_unlock(&watcher.lock);
	return NULL;
}

/* Under watcher.lock: a running instance, started if need be. */
static struct watch_inst *watcher_start_locked(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = WATCH_STOP };
	struct watch_inst *w;

	/* A thread that ended its lingering is joined first (it has
	 * returned, or is about to). */
	while (!watcher.cur && !watcher.thread_alive && watcher.reap) {
		pthread_t t = watcher.reap_thread;

		watcher.reap = false;
		pthread_mutex_unlock(&watcher.lock);
		pthread_join(t, NULL);
		pthread_mutex_lock(&watcher.lock);
	}
	if (watcher.cur)
		return watcher.cur;
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->refs = 1;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->epfd < 0 || w->wakefd < 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) ||
	    (!watcher.thread_alive &&
	     pthread_create(&watcher.thread, NULL, watcher_main, NULL))) {
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->wakefd >= 0)
			close(w->wakefd);
		free(w);
		return NULL;
	}
	watcher.thread_alive = true;
	watcher.next = w;
	watcher.cur = w;
	pthread_cond_broadcast(&watcher.cond);
	return w;
}

/* ops->enable_signaling of imported fences: watch R. */
static bool imp_enable_signaling(struct dmabuf_fence *f)
{
	struct sf_imported *imp = to_imported(f);
	struct epoll_event ev = { .events = EPOLLIN };
	struct watch_inst *w;

	pthread_mutex_lock(&watcher.lock);
	w = watcher_start_locked();
	if (!w) {
		pthread_mutex_unlock(&watcher.lock);
		dmb_err(NULL, "sync file: cannot start the fence watcher");
		return true;
	}
	/* A watch user, so that R stays open while registered. */
	pthread_mutex_lock(&f->lock);
	if (imp->rfd < 0 || atomic_load_explicit(&f->signaled, memory_order_relaxed)) {
		pthread_mutex_unlock(&f->lock);
		if (watcher_idle_locked())
			w = watcher_stop_locked(!dmb_fence_in_callback());
		else
			w = NULL;
		pthread_mutex_unlock(&watcher.lock);
		watcher_join(w);
		return true;
	}
	imp->users++;
	pthread_mutex_unlock(&f->lock);
	dmabuf_fence_get(f);
	ev.data.u64 = imp->watch_id = ++watcher.next_id;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, imp->rfd, &ev)) {
		imp->watch_id = 0;
		dmb_err(NULL, "sync file: cannot watch fd %d: %s", imp->rfd,
			strerror(errno));
		if (watcher_idle_locked())
			w = watcher_stop_locked(!dmb_fence_in_callback());
		else
			w = NULL;
		pthread_mutex_unlock(&watcher.lock);
		watcher_join(w);
		rfd_put(imp);
		dmabuf_fence_put(f);
		return true;
	}
	LIST_INSERT_HEAD(&watcher.watched, imp, watch_link);
	watcher.nwatch++;
	pthread_mutex_unlock(&watcher.lock);
	return true;
}

/* The fence signalled in this thread: if the watcher still has it, take it
 * back, and stop the watcher when nothing else is watched. */
static void imp_unwatch(struct sf_imported *imp)
{
	struct watch_inst *w = NULL;

	pthread_mutex_lock(&watcher.lock);
	if (!imp->watch_id) {
		pthread_mutex_unlock(&watcher.lock);
		return;
	}
	unwatch_locked(imp);
	if (watcher_idle_locked())
		w = watcher_stop_locked(!dmb_fence_in_callback());
	pthread_mutex_unlock(&watcher.lock);
	watcher_join(w);
	rfd_put(imp);
	dmabuf_fence_put(&imp->base);
}

__attribute__((destructor)) static void watcher_fini(void)
{
	struct watch_inst *w;
	pthread_t t = pthread_self();
	bool alive, reap;

	pthread_mutex_lock(&watcher.lock);
	w = watcher_stop_locked(true);
	watcher.exiting = true;
	pthread_cond_broadcast(&watcher.cond);
	alive = watcher.thread_alive && !on_watcher_thread_locked();
	if (alive)
		t = watcher.thread;
	pthread_mutex_unlock(&watcher.lock);
	watcher_join(w);
	if (alive)
		pthread_join(t, NULL);
	pthread_mutex_lock(&watcher.lock);
	reap = watcher.reap && !(alive && pthread_equal(watcher.reap_thread, t));
	watcher.reap = false;
	t = watcher.reap_thread;
	pthread_mutex_unlock(&watcher.lock);
	if (reap)
		pthread_join(t, NULL);
}

/* ---- fork: the child is not the signaller -------------------------------- */

static void sf_atfork_prepare(void)
{
	pthread_mutex_lock(&watcher.lock);
	pthread_mutex_lock(&sf_lock);
}

static void sf_atfork_parent(void)
{
	pthread_mutex_unlock(&sf_lock);
	pthread_mutex_unlock(&watcher.lock);
}

static void sf_atfork_child(void)
{
	struct sf_imported *imp;
	struct sf_export *e;

	/* A forked child must not keep the parent's signal ends open, or a
	 * dead parent would look alive to every importer. Its copies of
	 * those fences can still signal locally. */
	while ((e = TAILQ_FIRST(&sf_open))) {
		TAILQ_REMOVE(&sf_open, e, open_link);
		close(e->wfd);
		e->wfd = -1;
		e->watch_id = 0;
	}
	sf_nopen = 0;
	atomic_store(&sf_nwatched, 0);
	/* The watcher thread does not exist in the child; what it watched
	 * stays unwatched (docs/fences.md, limits). */
	/* The parent's thread does not exist here: the fds of its
	 * instances (the current one, one still stopping) are closed; the
	 * memory of one stopping stays (the parent's thread owned it). */
	if (watcher.running && watcher.running != watcher.cur &&
	    watcher.running->epfd >= 0) {
		close(watcher.running->epfd);
		close(watcher.running->wakefd);
	}
	watcher.running = NULL;
	if (watcher.cur) {
		close(watcher.cur->epfd);
		close(watcher.cur->wakefd);
		free(watcher.cur);
		watcher.cur = NULL;
	}
	watcher.next = NULL;
	watcher.thread_alive = false;
	watcher.reap = false;
	watcher.exiting = false;
	pthread_cond_init(&watcher.cond, NULL);
	/* Their watch users and references stay: the child cannot know the
	 * state of their locks. Their copies of R close with them. */
	while ((imp = LIST_FIRST(&watcher.watched))) {
		LIST_REMOVE(imp, watch_link);
		imp->watch_id = 0;
	}
	watcher.nwatch = 0;
	pthread_mutex_unlock(&sf_lock);
	pthread_mutex_unlock(&watcher.lock);
}

__attribute__((constructor)) static void sf_init(void)
{
	/* watcher.lock (6), then sf_lock (8) */
	dmb_fork_hook_add(6, sf_atfork_prepare, sf_atfork_parent, sf_atfork_child);
	dmb_fence_set_after_signal(sf_after_signal);
}

/* ---- records ------------------------------------------------------------- */

/* snprintf(dst, DMABUF_SYNC_NAME_LEN, "%s", src) without stdio: on the
 * signalling path the two names of a record cost more than the rest of
 * the signal's user-space work together. Reads at most
 * DMABUF_SYNC_NAME_LEN - 1 bytes of src (a peer's record may lack the NUL). */
static void copy_name(char *dst, const char *src)
{
	size_t n = src ? strnlen(src, DMABUF_SYNC_NAME_LEN - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

static void fill_info(struct dmabuf_fence *f, struct dmabuf_sync_fence_info *i);

/* The record of a signalled fence: in *one for a fence without children
 * (no allocation on the signalling path), else malloc'd; *len its size. */
static struct dmb_sf_record *make_record(struct dmabuf_fence *f, struct dmb_sf_record *one,
					 size_t *len)
{
	unsigned int n = dmb_fence_unwrap_count(f);
	struct dmb_sf_record *rec = one;

	if (dmb_fence_unwrap_child(f, 0) == f)
		n = 0;
	if (n > SF_MAX_CHILDREN)
		n = SF_MAX_CHILDREN;
	*len = sizeof(*rec) + n * sizeof(struct dmabuf_sync_fence_info);
	if (n)
		rec = calloc(1, *len);
	else
		memset(rec, 0, sizeof(*rec));
	if (!rec) {
		dmb_err(NULL, "sync file: no memory for the signal record");
		return NULL;
	}
	rec->magic = SF_MAGIC;
	rec->error = f->error;
	rec->timestamp_ns = f->timestamp;
	rec->context = f->context;
	rec->seqno = f->seqno;
	rec->nchildren = n;
	copy_name(rec->driver, f->ops->get_driver_name(f));
	copy_name(rec->timeline, f->ops->get_timeline_name(f));
	for (unsigned int i = 0; i < n; i++)
		fill_info(dmb_fence_unwrap_child(f, i),
			  (struct dmabuf_sync_fence_info *)(rec + 1) + i);
	return rec;
}

/* Under sf_lock: W is done with, by a record or by its peers' absence. */
static void export_close_locked(struct sf_export *e)
{
	if (e->wfd < 0)
		return;
	TAILQ_REMOVE(&sf_open, e, open_link);
	sf_nopen--;
	/* Closing W (its only fd) also takes it out of the watcher's set. */
	if (e->watch_id) {
		e->watch_id = 0;
		atomic_fetch_sub(&sf_nwatched, 1);
	}
	close(e->wfd);
	e->wfd = -1;
}

/* Under sf_lock: writes the record into W once. W then stays open (the
 * close is kept off the signalling path, and a close would wake every
 * poller a second time) until every copy of R is gone (the sweep) or the
 * fence is freed. */
static void send_record_locked(struct sf_export *e, const struct dmb_sf_record *rec,
			       size_t len)
{
	ssize_t r = -1;

	if (e->wfd < 0 || e->recorded)
		return;
	e->recorded = true;
	if (rec) {
		do
			r = send(e->wfd, rec, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (r < 0 && errno == EINTR);
		if (r == (ssize_t)len)
			return;
		/* EPIPE: every copy of R is gone already. */
		if (!(r < 0 && errno == EPIPE))
			dmb_err(NULL, "sync file: cannot write the signal record: %s",
				r < 0 ? strerror(errno) : "short write");
	}
	/* No record: closing W at least tells every holder (EOF). */
	export_close_locked(e);
}

/* The fence has signalled: every open W gets the record. */
static void sf_flush(struct sf_attach *at)
{
	struct dmb_sf_record one, *rec;
	struct sf_export *e;
	size_t len = 0;

	/* Built before sf_lock: the names and children's status may call
	 * into other fences. */
	rec = make_record(at->fence, &one, &len);
	pthread_mutex_lock(&sf_lock);
	LIST_FOREACH(e, &at->exports, fence_link)
		send_record_locked(e, rec, len);
	pthread_mutex_unlock(&sf_lock);
	if (rec != &one)
		free(rec);
}

/* ---- deadlines from the holders of R ---------------------------------------- */

/*
 * The last watched W end went (its fence was freed): stop the watcher if
 * nothing else is watched, joined here so none of its fds outlives this
 * call. Inside a fence callback (an array's last put from its child's
 * signal), where the watcher lock may not be waited for (lock order 7
 * before 6), only a free lock is taken and the instance stops on its own.
 */
static atomic_bool idle_check_pending;

static void watcher_check_idle(void)
{
	struct watch_inst *w = NULL;

	if (dmb_fence_in_callback()) {
		/* done by the signalling call once its callbacks are over */
		atomic_store(&idle_check_pending, true);
		return;
	}
	pthread_mutex_lock(&watcher.lock);
	if (watcher.cur && watcher_idle_locked())
		w = watcher_stop_locked(true);
	pthread_mutex_unlock(&watcher.lock);
	watcher_join(w);
}

/* After a signal, outside callbacks: the idle check a callback left. */
static void sf_after_signal(void)
{
	if (atomic_load_explicit(&idle_check_pending, memory_order_relaxed) &&
	    atomic_exchange(&idle_check_pending, false))
		watcher_check_idle();
}

/* A new export of a fence with a set_deadline op: its W joins the
 * watcher's set, so deadlines written into R reach the fence. */
static void export_watch(struct sf_export *e)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct watch_inst *w;

	pthread_mutex_lock(&watcher.lock);
	w = watcher_start_locked();
	if (w) {
		pthread_mutex_lock(&sf_lock);
		if (e->wfd >= 0 && !e->recorded && !e->watch_id) {
			ev.data.u64 = ++watcher.next_id | WATCH_EXPORT;
			if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, e->wfd, &ev) == 0) {
				e->watch_id = ev.data.u64;
				atomic_fetch_add(&sf_nwatched, 1);
			} else {
				dmb_err(NULL, "sync file: cannot watch for deadlines: %s",
					strerror(errno));
			}
		}
		pthread_mutex_unlock(&sf_lock);
	} else {
		dmb_err(NULL, "sync file: cannot start the fence watcher: deadlines from other processes are lost");
	}
	w = w && watcher_idle_locked() ? watcher_stop_locked(!dmb_fence_in_callback()) : NULL;
	pthread_mutex_unlock(&watcher.lock);
	watcher_join(w);
}

/*
 * Under watcher.lock, the watcher's event on a W end (id): reads the
 * deadline records that holders of R wrote; returns the fence (a
 * reference) and in *dl the earliest, for the caller to hand on unlocked
 * (the op keeps the earliest of all, as the kernel's drivers do), or
 * NULL. An EOF means every R is gone: W is closed and forgotten, as the
 * sweep would. Bytes that are no deadline record (a holder may write
 * anything) are dropped.
 */
/*
 * Under sf_lock: reads the deadline records waiting in W (at most
 * SF_DEADLINES_PER_EVENT), keeping the earliest in *earliest / *have.
 * Bytes that are no deadline record (a holder of R may write anything)
 * are dropped. Returns -1 at EOF (every R is gone), else 1 when something
 * was read, 0 when W's queue was empty.
 */
static int read_deadlines(int wfd, int64_t *earliest, bool *have)
{
	struct dmb_sf_deadline rec[SF_DEADLINES_PER_EVENT];
	ssize_t n;

	do
		n = recv(wfd, rec, sizeof(rec), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
		return -1;
	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(rec[0]); i++) {
		if (rec[i].magic != SF_DEADLINE_MAGIC || rec[i].pad)
			continue;
		if (!*have || rec[i].deadline_ns < *earliest)
			*earliest = rec[i].deadline_ns;
		*have = true;
	}
	return n > 0;
}

/*
 * Under watcher.lock, the watcher's event on a W end (id): returns the
 * fence (a reference) and in *dl the earliest deadline read, for the
 * caller to hand on unlocked (the op keeps the earliest of all, as the
 * kernel's drivers do), or NULL. At EOF W is closed and forgotten, as the
 * sweep would.
 */
static struct dmabuf_fence *export_deadline(uint64_t id, int64_t *dl)
{
	struct dmabuf_fence *f = NULL;
	struct sf_export *e;
	int64_t earliest = 0;
	bool have = false;

	pthread_mutex_lock(&sf_lock);
	TAILQ_FOREACH(e, &sf_open, open_link)
		if (e->watch_id == id)
			break;
	if (!e) {
		/* closed meanwhile (sweep, last put) */
		pthread_mutex_unlock(&sf_lock);
		return NULL;
	}
	if (read_deadlines(e->wfd, &earliest, &have) < 0) {
		export_close_locked(e);
		LIST_REMOVE(e, fence_link);
		LIST_REMOVE(&e->key, link);
		free(e);
	} else if (have && dmb_fence_tryget(e->key.fence)) {
		f = e->key.fence;
	}
	pthread_mutex_unlock(&sf_lock);
	*dl = earliest;
	return f;
}

void dmb_sync_file_pull_deadlines(struct dmabuf_fence *f)
{
	struct sf_attach *at;
	struct sf_export *e;
	int64_t earliest = 0;
	bool have = false;

	/* The caller's reference keeps the attachment. */
	pthread_mutex_lock(&f->lock);
	at = (struct sf_attach *)dmb_fence_find_attachment_locked(f, &sf_attach_ops);
	pthread_mutex_unlock(&f->lock);
	if (!at)
		return;
	pthread_mutex_lock(&sf_lock);
	/* A bounded drain: a holder that keeps writing cannot hold us. */
	LIST_FOREACH(e, &at->exports, fence_link)
		for (int i = 0; e->wfd >= 0 && i < 64; i++)
			if (read_deadlines(e->wfd, &earliest, &have) <= 0)
				break;
	pthread_mutex_unlock(&sf_lock);
	if (have)
		dmabuf_fence_set_deadline(f, earliest);
}

/* Runs under the fence lock, in the signalling thread. */
static void sf_signal_cb(struct dmabuf_fence *f, struct dmabuf_fence_cb *cb)
{
	sf_flush(dmb_container_of(cb, struct sf_attach, cb));
}

/* From the last put: an unsignalled fence closes W without a record, which
 * tells every holder of R that the signaller is gone. */
static void sf_detach(struct dmabuf_fence *f, struct dmb_fence_attachment *a)
{
	struct sf_attach *at = dmb_container_of(a, struct sf_attach, a);
	struct sf_export *e;
	bool watched = false;

	pthread_mutex_lock(&f->lock);
	if (at->cb.next != &at->cb) {
		at->cb.prev->next = at->cb.next;
		at->cb.next->prev = at->cb.prev;
	}
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_lock(&sf_lock);
	while ((e = LIST_FIRST(&at->exports))) {
		watched |= e->watch_id != 0;
		LIST_REMOVE(e, fence_link);
		LIST_REMOVE(&e->key, link);
		export_close_locked(e);
		free(e);
	}
	pthread_mutex_unlock(&sf_lock);
	free(at);
	/* A W end of it may have been closed by the watcher (EOF), which
	 * then stopped: reaped here. */
	if (watched || dmb_fence_has_op(f, set_deadline))
		watcher_check_idle();
}

static const struct dmb_fence_attachment_ops sf_attach_ops = {
	.detach = sf_detach,
};

/* Closes the W ends whose every R is gone (POLLHUP) and forgets those
 * sync files: nobody can present them any more. Under sf_lock. */
static void sweep_locked(void)
{
	struct pollfd *p;
	struct sf_export *e, *next;
	unsigned int n = 0, i = 0;

	if (!sf_nopen)
		return;
	p = calloc(sf_nopen, sizeof(*p));
	if (!p)
		return;
	TAILQ_FOREACH(e, &sf_open, open_link)
		p[n++] = (struct pollfd){ .fd = e->wfd, .events = 0 };
	if (poll(p, n, 0) > 0) {
		for (e = TAILQ_FIRST(&sf_open); e; e = next, i++) {
			next = TAILQ_NEXT(e, open_link);
			if (!(p[i].revents & (POLLHUP | POLLERR)))
				continue;
			export_close_locked(e);
			LIST_REMOVE(e, fence_link);
			LIST_REMOVE(&e->key, link);
			free(e);
		}
	}
	free(p);
	sf_sweep_at = sf_nopen * 2 > SF_SWEEP_MIN ? sf_nopen * 2 : SF_SWEEP_MIN;
}

/* ---- import-side polling -------------------------------------------------- */

/* The fence entries after a record, or NULL. */
static struct dmabuf_sync_fence_info *peek_children(int fd, uint32_t n)
{
	size_t len = sizeof(struct dmb_sf_record) + n * sizeof(struct dmabuf_sync_fence_info);
	struct dmabuf_sync_fence_info *children = NULL;
	char *buf = malloc(len);
	ssize_t r;

	if (!buf)
		return NULL;
	do
		r = recv(fd, buf, len, MSG_PEEK | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r == (ssize_t)len) {
		children = malloc(n * sizeof(*children));
		if (children)
			memcpy(children, buf + sizeof(struct dmb_sf_record),
			       n * sizeof(*children));
	}
	free(buf);
	return children;
}

/* Checks R without blocking (timeout_ms 0) or waits on it, and signals the
 * fence when R says so. The caller holds a reference. Returns true once
 * the fence has signalled. */
static bool imp_poll(struct sf_imported *imp, int timeout_ms, bool user_held)
{
	struct dmabuf_fence *f = &imp->base;
	struct dmabuf_sync_fence_info *children = NULL;
	struct dmb_sf_record rec;
	int64_t end = timeout_ms > 0 ? dmb_now_ns() + (int64_t)timeout_ms * 1000000 : 0;
	struct pollfd p = { .events = POLLIN };
	bool signalled_here = false;
	int error, r;
	ssize_t n;

	pthread_mutex_lock(&f->lock);
	if (!user_held) {
		if (atomic_load_explicit(&f->signaled, memory_order_relaxed) ||
		    imp->rfd < 0) {
			pthread_mutex_unlock(&f->lock);
			return atomic_load(&f->signaled);
		}
		imp->users++;
	}
	p.fd = imp->rfd;
	pthread_mutex_unlock(&f->lock);
	for (;;) {
		r = poll(&p, 1, timeout_ms);
		if (r >= 0 || errno != EINTR)
			break;
		if (timeout_ms > 0) {
			int64_t left = (end - dmb_now_ns()) / 1000000;

			timeout_ms = left > 0 ? (int)left : 0;
		}
	}
	if (r <= 0)
		goto out;
	do
		n = recv(p.fd, &rec, sizeof(rec), MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		goto out;
	if (n == (ssize_t)sizeof(rec) && rec.magic == SF_MAGIC && rec.error <= 0 &&
	    rec.error >= -4095 && rec.nchildren <= SF_MAX_CHILDREN) {
		error = rec.error;
		if (rec.nchildren)
			children = peek_children(p.fd, rec.nchildren);
	} else {
		/* EOF without a record: the signaller is gone. */
		error = DMABUF_FENCE_ESIGNALLER;
		memset(&rec, 0, sizeof(rec));
		rec.timestamp_ns = dmb_now_ns();
	}
	pthread_mutex_lock(&f->lock);
	if (!atomic_load_explicit(&f->signaled, memory_order_relaxed)) {
		if (rec.driver[0]) {
			copy_name(imp->driver, rec.driver);
			copy_name(imp->timeline, rec.timeline);
		}
		if (children) {
			imp->children = children;
			imp->nchildren = rec.nchildren;
			children = NULL;
		}
		/* Done with R: close it before the callbacks run, unless
		 * another thread is still polling it (it closes it then). */
		if (--imp->users == 0) {
			close(imp->rfd);
			imp->rfd = -1;
		}
		signalled_here = true;
		dmb_fence_signal_locked(f, error, rec.timestamp_ns);
	}
	pthread_mutex_unlock(&f->lock);
	free(children);
	if (signalled_here) {
		imp_unwatch(imp);
		if (!dmb_fence_in_callback())
			sf_after_signal();
		return true;
	}
out:
	rfd_put(imp);
	return atomic_load(&f->signaled);
}

/* imp_poll() signals the fence itself, with the record's error and time. */
static bool imp_signaled(struct dmabuf_fence *f)
{
	return imp_poll(to_imported(f), 0, false);
}

static int imp_wait(struct dmabuf_fence *f, int timeout_ms)
{
	return imp_poll(to_imported(f), timeout_ms, false);
}

static const char *imp_driver_name(struct dmabuf_fence *f)
{
	return to_imported(f)->driver;
}

static const char *imp_timeline_name(struct dmabuf_fence *f)
{
	return to_imported(f)->timeline;
}

static void imp_release(struct dmabuf_fence *f)
{
	struct sf_imported *imp = to_imported(f);

	pthread_mutex_lock(&sf_lock);
	if (imp->key.keyed)
		LIST_REMOVE(&imp->key, link);
	pthread_mutex_unlock(&sf_lock);
	if (imp->rfd >= 0)
		close(imp->rfd);
	free(imp->children);
}

/* ops->set_deadline of an imported fence: one-way, to the signaller, as a
 * record written into R (never blocking: a full socket drops the hint).
 * Only an earlier deadline than the last one sent travels. */
static void imp_set_deadline(struct dmabuf_fence *f, int64_t deadline_ns)
{
	struct sf_imported *imp = to_imported(f);
	struct dmb_sf_deadline rec = { .magic = SF_DEADLINE_MAGIC,
				       .deadline_ns = deadline_ns };
	ssize_t r;

	if (!imp->listens)
		return; /* its fence has no set_deadline op */
	pthread_mutex_lock(&f->lock);
	if (imp->rfd >= 0 && !atomic_load_explicit(&f->signaled, memory_order_relaxed) &&
	    (!imp->deadline_sent || deadline_ns < imp->deadline)) {
		do
			r = send(imp->rfd, &rec, sizeof(rec), MSG_DONTWAIT | MSG_NOSIGNAL);
		while (r < 0 && errno == EINTR);
		if (r == (ssize_t)sizeof(rec)) {
			imp->deadline_sent = true;
			imp->deadline = deadline_ns;
		}
	}
	pthread_mutex_unlock(&f->lock);
}

/* The seqno width travels in R's name. */
static const struct dmabuf_fence_ops imported_ops32 = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = imp_driver_name,
	.get_timeline_name = imp_timeline_name,
	.release = imp_release,
	.enable_signaling = imp_enable_signaling,
	.signaled = imp_signaled,
	.wait = imp_wait,
	.set_deadline = imp_set_deadline,
};

static const struct dmabuf_fence_ops imported_ops64 = {
	.version = DMABUF_FENCE_OPS_VERSION,
	.get_driver_name = imp_driver_name,
	.get_timeline_name = imp_timeline_name,
	.release = imp_release,
	.enable_signaling = imp_enable_signaling,
	.signaled = imp_signaled,
	.wait = imp_wait,
	.use_64bit_seqno = true,
	.set_deadline = imp_set_deadline,
};

/* ---- names and lookup ---------------------------------------------------- */

struct sf_name {
	uint64_t context, seqno;
	long pid;
	unsigned long serial;
	unsigned int bits;
	bool listens;		/* "/d": the signaller reads deadlines */
};

/* Parses R's address; -EINVAL if R is not ours, -EBADF if fd is none. */
static int sf_parse_name(int fd, struct sf_name *nm)
{
	struct sockaddr_un addr;
	socklen_t len = sizeof(addr);
	char name[sizeof(addr.sun_path)];
	size_t nlen;
	unsigned long long c, s;
	unsigned long cnt;
	unsigned int bits = 32;
	char flag = 0;
	int n;

	if (getsockname(fd, (struct sockaddr *)&addr, &len))
		return errno == EBADF ? -EBADF : -EINVAL;
	if (addr.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) + 1 ||
	    addr.sun_path[0] != '\0')
		return -EINVAL;
	nlen = len - offsetof(struct sockaddr_un, sun_path) - 1;
	memcpy(name, addr.sun_path + 1, nlen);
	name[nlen] = '\0';
	if (strncmp(name, SF_PREFIX, strlen(SF_PREFIX)))
		return -EINVAL;
	n = sscanf(name + strlen(SF_PREFIX), "%16llx/%16llx/%ld/%lu/%u/%c", &c, &s,
		   &nm->pid, &cnt, &bits, &flag);
	nm->listens = n == 6 && flag == 'd';
	if (n < 4 || (bits != 32 && bits != 64))
		return -EINVAL;
	nm->context = c;
	nm->seqno = s;
	nm->serial = cnt;
	nm->bits = bits;
	return 0;
}

static struct dmabuf_fence *sf_lookup_locked(dev_t dev, ino_t ino,
					     const struct sf_name *nm)
{
	struct sf_key *k;

	LIST_FOREACH(k, &sf_table, link)
		if (k->dev == dev && k->ino == ino && k->pid == nm->pid &&
		    k->serial == nm->serial && dmb_fence_tryget(k->fence))
			return k->fence;
	return NULL;
}

/* ---- export -------------------------------------------------------------- */

/* A new sync file for f: returns R (the caller's), keeps W. The record is
 * written at once if f has signalled. */
static int sf_create(struct dmabuf_fence *f)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct sf_attach *at, *fresh = NULL;
	struct sf_export *e;
	struct stat st;
	int sv[2], n, ret;
	unsigned long serial;
	bool add_cb;
	/* Holders may send deadlines: only to a fence that has the op. */
	bool listens = dmb_fence_has_op(f, set_deadline);

	e = calloc(1, sizeof(*e));
	fresh = calloc(1, sizeof(*fresh));
	if (!e || !fresh) {
		free(e);
		free(fresh);
		return -ENOMEM;
	}
	/* R blocks (as a kernel sync file, it has no O_NONBLOCK), so that
	 * dmabuf_sync_file_wait() can wait in its peek; every other read of R
	 * and every send into W passes MSG_DONTWAIT. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		ret = -errno;
		if (ret == -EMFILE || ret == -ENFILE) {
			/* Dead W ends may be all that stands in the way. */
			pthread_mutex_lock(&sf_lock);
			sweep_locked();
			pthread_mutex_unlock(&sf_lock);
			if (!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
				ret = 0;
		}
		if (ret) {
			free(e);
			free(fresh);
			return ret;
		}
	}
	serial = atomic_fetch_add(&sf_counter, 1);
	n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1,
		     SF_PREFIX "%016llx/%016llx/%ld/%lu/%u%s",
		     (unsigned long long)f->context, (unsigned long long)f->seqno,
		     (long)getpid(), serial,
		     dmb_fence_has_op(f, use_64bit_seqno) ? 64u : 32u,
		     listens ? "/d" : "");
	if (bind(sv[0], (struct sockaddr *)&addr,
		 offsetof(struct sockaddr_un, sun_path) + 1 + n) || fstat(sv[0], &st)) {
		ret = -errno;
		close(sv[0]);
		close(sv[1]);
		free(e);
		free(fresh);
		return ret;
	}
	e->key = (struct sf_key){ .keyed = true, .dev = st.st_dev, .ino = st.st_ino,
				  .pid = getpid(), .serial = serial, .fence = f };
	e->wfd = sv[1];

	pthread_mutex_lock(&f->lock);
	at = (struct sf_attach *)dmb_fence_find_attachment_locked(f, &sf_attach_ops);
	if (!at) {
		at = fresh;
		fresh = NULL;
		at->a.ops = &sf_attach_ops;
		at->fence = f;
		LIST_INIT(&at->exports);
		at->cb.next = at->cb.prev = &at->cb;
		dmb_fence_attach_locked(f, &at->a);
	}
	e->owner = at;
	add_cb = !at->cb_added;
	at->cb_added = true;
	pthread_mutex_lock(&sf_lock);
	LIST_INSERT_HEAD(&at->exports, e, fence_link);
	LIST_INSERT_HEAD(&sf_table, &e->key, link);
	TAILQ_INSERT_TAIL(&sf_open, e, open_link);
	sf_nopen++;
	if (sf_nopen > sf_sweep_at)
		sweep_locked();
	pthread_mutex_unlock(&sf_lock);
	pthread_mutex_unlock(&f->lock);
	free(fresh);

	if (listens && !(f->flags & DMB_FENCE_PULL_DEADLINE) && !dmb_fence_test_signaled(f))
		export_watch(e);
	/* One callback per fence writes the record into every export's W
	 * when it signals (and enables signalling, so that arrays and
	 * imported fences get watched). Whatever signalled before: now. */
	if (add_cb)
		dmabuf_fence_add_callback(f, &at->cb, sf_signal_cb);
	if (dmb_fence_test_signaled(f))
		sf_flush(at);
	return sv[0];
}

DMABUF_EXPORT int dmabuf_sync_file_export(struct dmabuf_fence *f)
{
	int fd = -EINVAL;

	if (!dmabuf_fence_get(f))
		return -EINVAL;
	if (is_imported(f)) {
		struct sf_imported *imp = to_imported(f);

		/* Pending: the same sync file, so that its identity (and the
		 * exporter's fence) survives the round trip. */
		pthread_mutex_lock(&f->lock);
		if (imp->rfd >= 0) {
			fd = fcntl(imp->rfd, F_DUPFD_CLOEXEC, 0);
			if (fd < 0)
				fd = -errno;
		}
		pthread_mutex_unlock(&f->lock);
		if (fd != -EINVAL) {
			dmabuf_fence_put(f);
			return fd;
		}
	}
	fd = sf_create(f);
	dmabuf_fence_put(f);
	return fd;
}

/* ---- import -------------------------------------------------------------- */

static int sf_stat(int fd, struct stat *st)
{
	int fl;

	/* fget() refuses an O_PATH fd: it is no open file of the sync file. */
	if (fd < 0 || (fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_PATH) || fstat(fd, st))
		return -EBADF;
	return S_ISSOCK(st->st_mode) ? 0 : -EINVAL;
}

DMABUF_EXPORT int dmabuf_sync_file_import(int fd, struct dmabuf_fence **out)
{
	struct dmabuf_fence *f, *found;
	struct sf_imported *imp;
	struct sf_name nm;
	struct stat st;
	int ret, rfd;

	if (!out)
		return -EINVAL;
	ret = sf_stat(fd, &st);
	if (ret)
		return ret;
	ret = sf_parse_name(fd, &nm);
	if (ret)
		return ret;
	pthread_mutex_lock(&sf_lock);
	found = sf_lookup_locked(st.st_dev, st.st_ino, &nm);
	pthread_mutex_unlock(&sf_lock);
	if (found) {
		*out = found;
		return 0;
	}
	rfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (rfd < 0)
		return -errno;
	ret = dmb_fence_create(nm.bits == 64 ? &imported_ops64 : &imported_ops32,
			       sizeof(*imp), NULL, nm.context, nm.seqno,
			       DMB_FENCE_FOREIGN, &f);
	if (ret) {
		close(rfd);
		return ret;
	}
	imp = to_imported(f);
	imp->rfd = rfd;
	imp->listens = nm.listens;
	imp->key = (struct sf_key){ .dev = st.st_dev, .ino = st.st_ino,
				    .pid = nm.pid, .serial = nm.serial, .fence = f };
	snprintf(imp->driver, sizeof(imp->driver), "sync_file");
	snprintf(imp->timeline, sizeof(imp->timeline), "pid %ld", nm.pid);
	pthread_mutex_lock(&sf_lock);
	/* Another thread may have imported the same file meanwhile. */
	found = sf_lookup_locked(st.st_dev, st.st_ino, &nm);
	if (!found) {
		LIST_INSERT_HEAD(&sf_table, &imp->key, link);
		imp->key.keyed = true;
	}
	pthread_mutex_unlock(&sf_lock);
	if (found) {
		dmabuf_fence_put(f);
		*out = found;
		return 0;
	}
	imp_poll(imp, 0, false);
	*out = f;
	return 0;
}

DMABUF_EXPORT int dmabuf_sync_file_merge(int fd1, int fd2)
{
	struct dmabuf_fence *f[2] = { NULL, NULL }, *m;
	int ret;

	/* SYNC_IOC_MERGE is an ioctl on fd1: a file that is not a sync file
	 * has no such ioctl (-ENOTTY). sync_file_ioctl_merge() then answers
	 * -ENOENT when sync_file_fdget(fd2) finds no sync file, a bad fd
	 * included. */
	ret = dmabuf_sync_file_import(fd1, &f[0]);
	if (ret == -EINVAL)
		ret = -ENOTTY;
	if (!ret) {
		ret = dmabuf_sync_file_import(fd2, &f[1]);
		if (ret == -EINVAL || ret == -EBADF)
			ret = -ENOENT;
	}
	if (!ret)
		ret = dmabuf_fence_merge(f, 2, &m);
	if (!ret) {
		ret = dmabuf_sync_file_export(m);
		dmabuf_fence_put(m);
	}
	dmabuf_fence_put(f[0]);
	dmabuf_fence_put(f[1]);
	return ret;
}

DMABUF_EXPORT int dmabuf_sync_file_set_deadline(int fd, int64_t deadline_ns)
{
	struct dmabuf_fence *f;
	int ret;

	/* An ioctl on fd: another kind of file has no such ioctl. */
	ret = dmabuf_sync_file_import(fd, &f);
	if (ret)
		return ret == -EINVAL ? -ENOTTY : ret;
	ret = dmabuf_fence_set_deadline(f, deadline_ns);
	dmabuf_fence_put(f);
	return ret;
}

DMABUF_EXPORT int dmabuf_sync_file_wait(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct dmb_sf_record rec;
	struct sf_name nm;
	ssize_t n = -1;
	bool empty = false;
	int ret;

	if (fd < 0)
		return -EBADF;
	/*
	 * The waiter's hot path is one syscall, as a raw eventfd read is: R is
	 * a blocking socket, so a peek at the record waits for it (timeout -1)
	 * or tests for it (0), and a record with our magic both identifies the
	 * file and says it signalled. recv() also answers for a bad fd
	 * (EBADF) and for a file that is no socket (ENOTSOCK). Everything else
	 * (EOF, nothing yet, a caller's O_NONBLOCK, a socket of someone else's,
	 * a timeout to keep) is settled by R's name and poll(), as before.
	 */
	if (timeout_ms <= 0) {
		do
			n = recv(fd, &rec, sizeof(rec),
				 MSG_PEEK | (timeout_ms ? 0 : MSG_DONTWAIT));
		while (n < 0 && errno == EINTR);
		if (n == (ssize_t)sizeof(rec) && rec.magic == SF_MAGIC)
			return 1;
		if (n < 0 && errno == EBADF)
			return -EBADF;
		if (n < 0 && errno == ENOTSOCK)
			return -EINVAL;
		empty = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
	}
	ret = sf_parse_name(fd, &nm);
	if (ret)
		return ret;
	/* Ours: EOF is a signaller gone (R polls POLLIN), and nothing yet is
	 * the answer of a test. */
	if (n == 0)
		return 1;
	if (empty && timeout_ms == 0)
		return 0;
	do
		ret = poll(&p, 1, timeout_ms);
	while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return -errno;
	return ret > 0 && (p.revents & (POLLIN | POLLHUP)) ? 1 : 0;
}

static void fill_info(struct dmabuf_fence *f, struct dmabuf_sync_fence_info *i)
{
	memset(i, 0, sizeof(*i));
	i->status = dmabuf_fence_get_status(f);
	copy_name(i->obj_name, f->ops->get_timeline_name(f));
	copy_name(i->driver_name, f->ops->get_driver_name(f));
	i->context = f->context;
	i->seqno = f->seqno;
	if (i->status)
		i->timestamp_ns = f->timestamp;
}

DMABUF_EXPORT int dmabuf_sync_file_info(int fd, int *status,
					struct dmabuf_sync_fence_info *info,
					unsigned int max)
{
	struct dmabuf_fence *f;
	unsigned int n;
	int ret;

	if (max && !info)
		return -EINVAL;
	/* SYNC_IOC_FILE_INFO is an ioctl on fd: another kind of file has no
	 * such ioctl (-ENOTTY). */
	ret = dmabuf_sync_file_import(fd, &f);
	if (ret)
		return ret == -EINVAL ? -ENOTTY : ret;
	if (is_imported(f) && dmabuf_fence_is_signaled(f) &&
	    to_imported(f)->nchildren) {
		/* A merge signalled elsewhere: what its signaller reported. */
		n = to_imported(f)->nchildren;
		for (unsigned int i = 0; i < n && i < max; i++)
			info[i] = to_imported(f)->children[i];
	} else {
		n = dmb_fence_unwrap_count(f);
		for (unsigned int i = 0; i < n && i < max; i++)
			fill_info(dmb_fence_unwrap_child(f, i), &info[i]);
	}
	if (status)
		*status = dmabuf_fence_get_status(f);
	dmabuf_fence_put(f);
	return (int)n;
}
