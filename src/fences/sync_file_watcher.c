/* SPDX-License-Identifier: MIT */
/*
 * The sync-file watcher: one thread per process that learns of signals
 * and deadlines through fds no caller is waiting on. Apart from the
 * exporter's and the importer's files because its life (an instance of
 * fds started on demand, a thread that lingers, stopping without leaving
 * an fd behind, fork) is a concept of its own that both sides use.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "sync_file_private.h"

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
	/* A hold on the process's diagnostics socket (sync_file_peer.c),
	 * so that the thread's questions need no fd of their own; false if
	 * the kernel gave none. */
	bool diag_held;
	bool stopped;			/* its fds are closed */
	unsigned int refs;		/* the thread's, and a waiter's */
};

#define WATCH_LINGER_S 2

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* next, stopped, exiting, looking changed */
	struct watch_inst *cur;		/* the running instance, or NULL */
	struct watch_inst *next;	/* handed to the thread, not taken */
	struct watch_inst *running;	/* the one the thread runs */
	bool thread_alive, exiting;
	pthread_t thread;
	/* A thread that ended its lingering: joined by the next start. */
	bool reap;
	pthread_t reap_thread;
	unsigned int nwatch;
	/* The import the thread took out of the set and is looking at (its
	 * user of R), or NULL. */
	struct sf_imported *looking;
	uint64_t next_id;
	LIST_HEAD(, sf_imported) watched;
} watcher = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

#define WATCH_STOP 0
/* Watch ids of W ends (deadlines) have this bit; those of imports not. */
#define WATCH_EXPORT (1ull << 63)

atomic_uint dmb_sf_nwatched;

/* Nothing to watch: neither imported fences nor W ends. */
static bool watcher_idle_locked(void)
{
	return watcher.nwatch == 0 && atomic_load(&dmb_sf_nwatched) == 0;
}

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
	imp->slow_ms = 0;
	watcher.nwatch--;
}

static bool on_watcher_thread_locked(void)
{
	return watcher.thread_alive && pthread_equal(watcher.thread, pthread_self());
}

/* Under watcher.lock: closes w's fds; w has stopped. */
static void inst_close_locked(struct watch_inst *w)
{
	close(w->epfd);
	close(w->wakefd);
	if (w->diag_held)
		dmb_sf_diag_release();
	w->epfd = w->wakefd = -1;
	w->diag_held = false;
	w->stopped = true;
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
		inst_close_locked(w);
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

/* Under watcher.lock, which it drops: the instance stops if nothing is
 * watched any more, and is waited for unless inside a fence callback
 * (where the wait could be for a lock held around us). */
static void watcher_unlock_idle(void)
{
	struct watch_inst *w = NULL;

	if (watcher_idle_locked())
		w = watcher_stop_locked(!dmb_fence_in_callback());
	pthread_mutex_unlock(&watcher.lock);
	watcher_join(w);
}

/* Slow watches: the longest sleep between looks at an R a holder shut
 * down (sync_file_import.c sleeps as long in a wait). */
#define WATCH_SLOW_MAX_MS 64

static void watch_import_slow(struct sf_imported *imp);

/* Under watcher.lock: ms until the next slow watch is due, or -1. */
static int slow_timeout_locked(void)
{
	struct sf_imported *imp;
	int64_t next = -1, now = 0;

	LIST_FOREACH(imp, &watcher.watched, watch_link) {
		if (!imp->slow_ms)
			continue;
		if (!now)
			now = dmb_now_ns();
		if (next < 0 || imp->slow_at < next)
			next = imp->slow_at;
	}
	if (next < 0)
		return -1;
	return next <= now ? 0 : (int)((next - now + 999999) / 1000000);
}

/* Looks at the slow watches that are due (outside the lock: the look
 * signals the fence, and its unwatch takes the lock). */
static void slow_look(void)
{
	for (;;) {
		struct sf_imported *imp;
		int64_t now = dmb_now_ns();

		pthread_mutex_lock(&watcher.lock);
		LIST_FOREACH(imp, &watcher.watched, watch_link)
			if (imp->slow_ms && imp->slow_at <= now)
				break;
		if (imp) {
			/* The watch's reference keeps it while listed. */
			dmabuf_fence_get(&imp->base);
			imp->slow_ms = imp->slow_ms * 2 > WATCH_SLOW_MAX_MS ? WATCH_SLOW_MAX_MS
									   : imp->slow_ms * 2;
			imp->slow_at = now + (int64_t)imp->slow_ms * 1000000;
		}
		pthread_mutex_unlock(&watcher.lock);
		if (!imp)
			return;
		dmb_sf_imp_poll(imp, 0, false);
		dmabuf_fence_put(&imp->base);
	}
}

/* Runs one instance until it stops (its fds closed). */
static void watch_run(struct watch_inst *w)
{
	for (;;) {
		struct epoll_event ev[8];
		int n, timeout;

		slow_look();
		pthread_mutex_lock(&watcher.lock);
		timeout = slow_timeout_locked();
		pthread_mutex_unlock(&watcher.lock);
		n = epoll_wait(w->epfd, ev, DMB_ARRAY_SIZE(ev), timeout);
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
				dl_fence = dmb_sf_export_deadline(ev[i].data.u64, w->epfd, &dl);
				if (watcher_idle_locked()) {
					watcher_stop_locked(false);
					stop = true;
				}
			}
			if (!stop && !exp)
				imp = watched_find_locked(ev[i].data.u64);
			if (imp) {
				unwatch_locked(imp);
				watcher.looking = imp;
				/* The last one: stop before running callbacks,
				 * so whoever they wake finds no fd of ours. */
				if (watcher_idle_locked()) {
					watcher_stop_locked(false);
					stop = true;
				}
			}
			if (stop) {
				/* imp's look still has the diagnostics socket:
				 * imp holds it while its R is open, and lets it
				 * go with R, before the callbacks run. */
				inst_close_locked(w);
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
				/* With the watch user, which it drops. Still
				 * pending: a holder shut R down (or a wake-up
				 * with nothing in R): watched slowly. */
				bool done = dmb_sf_imp_poll(imp, 0, true);

				pthread_mutex_lock(&watcher.lock);
				watcher.looking = NULL;
				pthread_cond_broadcast(&watcher.cond);
				pthread_mutex_unlock(&watcher.lock);
				if (!done)
					watch_import_slow(imp);
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
	/* Without one (no socket diagnostics here) its queries try to
	 * make one each, as other threads' do. */
	w->diag_held = dmb_sf_diag_hold() == 0;
	if (w->epfd < 0 || w->wakefd < 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &ev) ||
	    (!watcher.thread_alive &&
	     pthread_create(&watcher.thread, NULL, watcher_main, NULL))) {
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->wakefd >= 0)
			close(w->wakefd);
		if (w->diag_held)
			dmb_sf_diag_release();
		free(w);
		return NULL;
	}
	watcher.thread_alive = true;
	watcher.next = w;
	watcher.cur = w;
	pthread_cond_broadcast(&watcher.cond);
	return w;
}

/* Watches R: in the epoll set, or (slow) by looking at it every few ms. */
static void watch_import(struct sf_imported *imp, bool slow)
{
	struct dmabuf_fence *f = &imp->base;
	struct epoll_event ev = { .events = EPOLLIN };
	struct watch_inst *w;

	pthread_mutex_lock(&watcher.lock);
	w = watcher_start_locked();
	if (!w) {
		pthread_mutex_unlock(&watcher.lock);
		dmb_err(NULL, "sync file: cannot start the fence watcher");
		return;
	}
	/* A watch user, so that R stays open while registered. */
	pthread_mutex_lock(&f->lock);
	if (imp->rfd < 0 || imp->watch_id ||
	    atomic_load_explicit(&f->signaled, memory_order_relaxed)) {
		pthread_mutex_unlock(&f->lock);
		watcher_unlock_idle();
		return;
	}
	imp->users++;
	pthread_mutex_unlock(&f->lock);
	dmabuf_fence_get(f);
	ev.data.u64 = imp->watch_id = ++watcher.next_id;
	imp->slow_ms = slow ? 1 : 0;
	imp->slow_at = slow ? dmb_now_ns() + 1000000 : 0;
	if (!slow && epoll_ctl(w->epfd, EPOLL_CTL_ADD, imp->rfd, &ev)) {
		imp->watch_id = 0;
		dmb_err(NULL, "sync file: cannot watch fd %d: %s", imp->rfd,
			strerror(errno));
		watcher_unlock_idle();
		dmb_sf_rfd_put(imp);
		dmabuf_fence_put(f);
		return;
	}
	LIST_INSERT_HEAD(&watcher.watched, imp, watch_link);
	watcher.nwatch++;
	/* A slow watch is only made by the watcher thread (watch_run()),
	 * whose next wait takes its timeout into account. */
	pthread_mutex_unlock(&watcher.lock);
}

/* ops->enable_signaling of imported fences: watch R. */
bool dmb_sf_watch_import(struct sf_imported *imp)
{
	watch_import(imp, false);
	return true;
}

static void watch_import_slow(struct sf_imported *imp)
{
	watch_import(imp, true);
}

/* The fence signalled in this thread: if the watcher still has it, take it
 * back, and stop the watcher when nothing else is watched. */
void dmb_sf_unwatch_import(struct sf_imported *imp)
{
	pthread_mutex_lock(&watcher.lock);
	if (!imp->watch_id) {
		/* The watcher took it out of its set on R's event and may
		 * still be looking at R (its user of R, and R's hold on the
		 * diagnostics socket):
		 * wait for that look, which does not block, so that no fd of
		 * the watcher outlives the call that signalled (as when the
		 * fence is still watched: the instance is then joined).
		 * Not in a callback, where the wait could be for a lock held
		 * around us. */
		while (watcher.looking == imp && !on_watcher_thread_locked() &&
		       !dmb_fence_in_callback())
			pthread_cond_wait(&watcher.cond, &watcher.lock);
		pthread_mutex_unlock(&watcher.lock);
		return;
	}
	unwatch_locked(imp);
	watcher_unlock_idle();
	dmb_sf_rfd_put(imp);
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

/* ---- stopping when idle -------------------------------------------------- */

/*
 * The last watched W end went (its fence was freed): stop the watcher if
 * nothing else is watched, joined here so none of its fds outlives this
 * call. Inside a fence callback (an array's last put from its child's
 * signal), where the watcher lock may not be waited for (lock order 7
 * before 6), only a free lock is taken and the instance stops on its own.
 */
static atomic_bool idle_check_pending;

void dmb_sf_watcher_check_idle(void)
{
	if (dmb_fence_in_callback()) {
		/* done by the signalling call once its callbacks are over */
		atomic_store(&idle_check_pending, true);
		return;
	}
	pthread_mutex_lock(&watcher.lock);
	watcher_unlock_idle();
}

/* After a signal, outside callbacks: the idle check a callback left. */
void dmb_sf_after_signal(void)
{
	if (atomic_load_explicit(&idle_check_pending, memory_order_relaxed) &&
	    atomic_exchange(&idle_check_pending, false))
		dmb_sf_watcher_check_idle();
}

/* ---- deadlines from the holders of R ------------------------------------- */

/* A new export of a fence with a set_deadline op: its W joins the
 * watcher's set, so deadlines written into R reach the fence. */
void dmb_sf_watch_export(struct sf_export *e)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct watch_inst *w;

	pthread_mutex_lock(&watcher.lock);
	w = watcher_start_locked();
	if (w) {
		pthread_mutex_lock(&dmb_sf_lock);
		if (e->wfd >= 0 && !e->recorded && !e->watch_id) {
			ev.data.u64 = ++watcher.next_id | WATCH_EXPORT;
			if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, e->wfd, &ev) == 0) {
				e->watch_id = ev.data.u64;
				atomic_fetch_add(&dmb_sf_nwatched, 1);
			} else {
				dmb_err(NULL, "sync file: cannot watch for deadlines: %s",
					strerror(errno));
			}
		}
		pthread_mutex_unlock(&dmb_sf_lock);
	} else {
		dmb_err(NULL, "sync file: cannot start the fence watcher: deadlines from other processes are lost");
	}
	watcher_unlock_idle();
}

/* ---- fork: the child has no watcher thread ------------------------------- */

static void watcher_atfork_prepare(void)
{
	pthread_mutex_lock(&watcher.lock);
}

static void watcher_atfork_parent(void)
{
	pthread_mutex_unlock(&watcher.lock);
}

static void watcher_atfork_child(void)
{
	struct sf_imported *imp;

	/* The watcher thread does not exist in the child; what it watched
	 * stays unwatched (docs/fences.md, limits). */
	/* The parent's thread does not exist here: the fds of its
	 * instances (the current one, one still stopping) are closed; the
	 * memory of one stopping stays (the parent's thread owned it). */
	if (watcher.running && watcher.running != watcher.cur &&
	    watcher.running->epfd >= 0)
		inst_close_locked(watcher.running);
	watcher.running = NULL;
	if (watcher.cur) {
		inst_close_locked(watcher.cur);
		free(watcher.cur);
		watcher.cur = NULL;
	}
	watcher.next = NULL;
	watcher.looking = NULL;
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
	pthread_mutex_unlock(&watcher.lock);
}

__attribute__((constructor)) static void watcher_init(void)
{
	/* watcher.lock is 6 in the lock order (docs/design.md §8) */
	dmb_fork_hook_add(6, watcher_atfork_prepare, watcher_atfork_parent,
			  watcher_atfork_child);
	dmb_fence_set_after_signal(dmb_sf_after_signal);
}
