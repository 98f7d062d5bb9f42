/* SPDX-License-Identifier: MIT */
/*
 * sw_sync timelines and sync-file names: state the kernel keeps in a file,
 * which the emulation keeps in the file too (timelines) or in this process.
 *
 * A timeline's file is a memfd named "dmabuf-uapi-sw_sync" (one per open,
 * as the kernel's one timeline per open of the debugfs file). Its first
 * page is the timeline (struct tl_shared): the value, the name, whether a
 * second process uses it and whether it was destroyed. Every process that
 * uses the file (the opener, a forked child, an exec'd program, a receiver
 * over SCM_RIGHTS) maps it shared through a description of its own (the
 * probe) and keeps a library timeline that mirrors the value: the points
 * a process makes live there and signal when its mirror reaches them.
 *
 * - SW_SYNC_IOC_INC adds to the shared value, brings this process's mirror
 *   up to it and, once a second process uses the file, writes one byte to
 *   it: an IN_MODIFY event on the inode, seen by every process watching.
 * - A process with pending points watches the inode (one inotify fd and
 *   one thread per process, while it watches any): on IN_MODIFY it brings
 *   its mirror up, so its points signal; on a close event it looks for the
 *   last reference.
 * - The last reference: the program's description holds flock(LOCK_SH);
 *   flock(LOCK_EX|LOCK_NB) on a probe succeeds only when no fd of it is
 *   left in any process (a SIGKILLed holder's included: the kernel closes
 *   them, which is a close event). Then the timeline is destroyed: the
 *   flag is set, the file written to, and every process's pending points
 *   signal with -ENOENT, as sw_sync_debugfs_release() does.
 *
 * Locks: t->mu (one timeline in this process: mirror, points, its end)
 * before tbl_lock (the table and the watcher). Fence callbacks never come
 * back here, so signalling under t->mu is safe.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <dmabuf-fence.h>
#include <dmabuf.h>

#include "core.h"
#include "reprobe.h"

#define TL_MAGIC 0x6c74627573646dull
#define TL_SIZE DMB_UAPI_PAGE
/* The byte written to announce a change (never read). */
#define TL_NOTIFY_OFFSET (TL_SIZE - 1)

/* The timeline, in its file's first page. */
struct tl_shared {
	uint64_t magic;
	_Atomic uint32_t value;		/* the timeline's value */
	_Atomic uint32_t shared;	/* a second process uses the file */
	_Atomic uint32_t destroyed;	/* the last reference went */
	uint32_t pad;
	char name[32];			/* the opener's task name */
};

struct timeline {
	dev_t dev;
	ino_t ino;
	int probe;			/* O_RDWR description, the layer's */
	struct tl_shared *sh;		/* the file's first page */
	struct dmabuf_timeline *tl;	/* this process's points */
	pthread_mutex_t mu;
	uint32_t mirror;		/* tl's value, under mu */
	uint32_t last_pending;		/* latest pending point made here */
	bool any_pending;		/* a point was made pending here */
	bool gone;			/* destroyed or let go, under mu */
	int wd;				/* inotify watch, -1: none */
	/* Queued for a re-probe after a close event (tl_reprobes, under
	 * tbl_lock): while watched, for as long as it takes. */
	struct dmb_uapi_reprobe reprobe;
	atomic_int refs;		/* the table's and lookups' */
	struct timeline *next;
};

/* The watcher: one thread reading one inotify fd, while watches exist. */
struct watcher {
	int ifd;
	pthread_t thread;
	bool stop; /* under tbl_lock */
};

static pthread_mutex_t tbl_lock = PTHREAD_MUTEX_INITIALIZER;
/* The records below (names, contexts, deadlines). */
static pthread_mutex_t tl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timeline *timelines;
static struct watcher *watcher;	/* under tbl_lock */
static int watched;		/* under tbl_lock */
static struct dmb_uapi_reprobes tl_reprobes; /* under tbl_lock */
/* Held by the watcher while it signals: a point's sync file is made
 * ready by the signal, its layer fd closed by the put right after (the
 * library closes an export's socket when the fence is freed). */
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;

static bool reached(uint32_t value, uint32_t point)
{
	return (int32_t)(value - point) >= 0;
}

static void tl_put(struct timeline *t)
{
	if (atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* Brings the mirror up to v (t->mu held): the points it reaches signal,
 * in INT_MAX steps as sw_sync_ioctl_inc() signals. */
static void mirror_to(struct timeline *t, uint32_t v)
{
	while (t->mirror != v) {
		uint32_t step = v - t->mirror;

		if (step > INT_MAX)
			step = INT_MAX;
		dmabuf_timeline_inc(t->tl, step);
		t->mirror += step;
	}
}

/* One byte written: IN_MODIFY for every process watching the inode. */
static void notify(struct timeline *t)
{
	char b = 0;

	if (pwrite(t->probe, &b, 1, TL_NOTIFY_OFFSET) < 0) {
		/* nothing to do: the value is in the shared page already */
	}
}

/* True if an fd of this process other than the probe is a file of t. */
static bool have_fd(const struct timeline *t)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	struct stat st;
	bool found = false;

	if (!d)
		return true;
	while (!found && (e = readdir(d))) {
		int fd = atoi(e->d_name);

		found = e->d_name[0] != '.' && fd != dirfd(d) && fd != t->probe &&
			fstat(fd, &st) == 0 && st.st_ino == t->ino && st.st_dev == t->dev;
	}
	closedir(d);
	return found;
}

static void *watch_thread(void *arg);

/* Watches t's inode (t->mu held). false if it cannot be watched. */
static bool watch_add(struct timeline *t)
{
	char path[40];
	struct watcher *w;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", t->probe);
	pthread_mutex_lock(&tbl_lock);
	if (!watcher) {
		w = calloc(1, sizeof(*w));
		if (w) {
			w->ifd = inotify_init1(IN_CLOEXEC);
			if (w->ifd >= 0 && pthread_create(&w->thread, NULL, watch_thread, w) == 0) {
				watcher = w;
			} else {
				if (w->ifd >= 0)
					close(w->ifd);
				free(w);
			}
		}
	}
	if (watcher) {
		t->wd = inotify_add_watch(watcher->ifd, path,
					  IN_MODIFY | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE);
		if (t->wd >= 0)
			watched++;
	}
	pthread_mutex_unlock(&tbl_lock);
	return t->wd >= 0;
}

static void watcher_join(struct watcher *w)
{
	if (!w)
		return;
	pthread_join(w->thread, NULL);
	close(w->ifd);
	free(w);
}

/*
 * t is watched no more (t->mu held). The watcher stops with its last
 * watch: returned for the caller to join with no lock held, or, when the
 * watcher itself is the caller, its fd closed now (before any signal it
 * goes on to give) and NULL returned: it ends on its own.
 */
static struct watcher *unwatch(struct timeline *t, bool in_watcher)
{
	struct watcher *stopped = NULL;

	pthread_mutex_lock(&tbl_lock);
	dmb_uapi_reprobe_cancel(&tl_reprobes, &t->reprobe);
	if (t->wd >= 0) {
		if (--watched == 0) {
			/* The removal of the watch below is the thread's
			 * next event: it sees stop then. */
			stopped = watcher;
			stopped->stop = true;
			watcher = NULL;
		}
		inotify_rm_watch(stopped ? stopped->ifd : watcher->ifd, t->wd);
		t->wd = -1;
	}
	pthread_mutex_unlock(&tbl_lock);
	if (stopped && in_watcher) {
		close(stopped->ifd);
		stopped->ifd = -1;
		stopped = NULL;
	}
	return stopped;
}

/*
 * The end of t in this process (t->mu held, t not gone): destroyed (the
 * last reference went: every process's pending points signal -ENOENT) or
 * let go (no fd of it is left here, and the points made here are reached
 * by the value). The fds go first, so that a program woken by a signal
 * finds them closed; the table entry goes last, so that a close() in
 * another thread waits on t->mu until the points have signalled.
 * Returns a stopped watcher for the caller to join with no lock held, or
 * NULL (none, or the watcher itself is the caller: it ends on its own).
 */
static struct watcher *tl_end(struct timeline *t, bool destroy, bool in_watcher)
{
	struct watcher *stopped = NULL;
	struct timeline **pp;
	uint32_t v = atomic_load(&t->sh->value);

	t->gone = true;
	if (destroy) {
		atomic_store(&t->sh->destroyed, 1);
		notify(t);
	}
	stopped = unwatch(t, in_watcher);
	close(t->probe);
	t->probe = -1;
	munmap(t->sh, TL_SIZE);
	t->sh = NULL;
	if (!destroy)
		mirror_to(t, v);
	dmabuf_timeline_destroy(t->tl);
	t->tl = NULL;
	pthread_mutex_lock(&tbl_lock);
	for (pp = &timelines; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	pthread_mutex_unlock(&tbl_lock);
	tl_put(t); /* the table's reference */
	return stopped;
}

/*
 * Something happened to t's file: a write or a close seen by the watcher,
 * or a close of an fd of it by this process (closed). Destroys t when the
 * last reference went, lets it go when this process needs it no more,
 * else brings the mirror up.
 */
static struct watcher *tl_event(struct timeline *t, bool closed, bool in_watcher)
{
	struct watcher *w = NULL;
	uint32_t v;

	pthread_mutex_lock(&t->mu);
	if (t->gone) {
		/* done already: the lock waited for its signals */
	} else if (atomic_load(&t->sh->destroyed) ||
		   (closed && flock(t->probe, LOCK_EX | LOCK_NB) == 0)) {
		w = tl_end(t, true, in_watcher);
	} else {
		bool pending;

		v = atomic_load(&t->sh->value);
		pending = t->any_pending && !reached(v, t->last_pending);
		if (!pending && (closed || t->wd >= 0) && !have_fd(t))
			w = tl_end(t, false, in_watcher);
		else if (!pending && t->wd >= 0)
			/* Nothing pending here: nothing to watch for until
			 * the next pending point (its fd's close is seen by
			 * the close() here). */
			w = unwatch(t, in_watcher);
		if (!t->gone)
			mirror_to(t, v);
	}
	pthread_mutex_unlock(&t->mu);
	return w;
}

/* The kernel sends a close event from __fput() before it drops the file's
 * locks, and the closer can be held up between the two for any time: a
 * timeline still watched after a close event is probed again with a
 * back-off (reprobe.h), 1, 2, 4 ... ms, then every 1024 ms, until it goes
 * or is watched no more (unwatch() cancels). */
static void reprobe_queue(struct timeline *t)
{
	pthread_mutex_lock(&tbl_lock);
	if (t->wd >= 0 && !t->gone)
		dmb_uapi_reprobe_queue(&tl_reprobes, &t->reprobe);
	pthread_mutex_unlock(&tbl_lock);
}

/* The re-probes whose time has come (the watcher, under sig_lock): O(1)
 * each. A timeline still there stays queued, one level up. */
static void reprobe_due(void)
{
	struct dmb_uapi_reprobe *it;
	struct timeline *t;

	pthread_mutex_lock(&tbl_lock);
	dmb_uapi_reprobe_begin(&tl_reprobes);
	while ((it = dmb_uapi_reprobe_pop(&tl_reprobes))) {
		t = dmb_uapi_reprobe_of(it, struct timeline, reprobe);
		atomic_fetch_add(&t->refs, 1);
		pthread_mutex_unlock(&tbl_lock);
		tl_event(t, true, true);
		tl_put(t);
		pthread_mutex_lock(&tbl_lock);
	}
	pthread_mutex_unlock(&tbl_lock);
}

/* A close event on every watched timeline (lost events): each is probed,
 * and re-probed from the shortest period. */
static void all_closed(void)
{
	struct timeline *t, **list = NULL;
	int n = 0, i;

	pthread_mutex_lock(&tbl_lock);
	for (t = timelines; t; t = t->next)
		n += t->wd >= 0;
	list = n ? calloc((size_t)n, sizeof(*list)) : NULL;
	n = 0;
	for (t = timelines; list && t; t = t->next) {
		if (t->wd >= 0) {
			atomic_fetch_add(&t->refs, 1);
			list[n++] = t;
		}
	}
	pthread_mutex_unlock(&tbl_lock);
	for (i = 0; i < n; i++) {
		tl_event(list[i], true, true);
		reprobe_queue(list[i]);
		tl_put(list[i]);
	}
	free(list);
}

static bool watcher_stopped(struct watcher *w)
{
	bool stop;

	pthread_mutex_lock(&tbl_lock);
	stop = w->stop;
	pthread_mutex_unlock(&tbl_lock);
	return stop;
}

static void *watch_thread(void *arg)
{
	struct watcher *w = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	while (!watcher_stopped(w)) {
		struct pollfd p = { .fd = w->ifd, .events = POLLIN };
		ssize_t n = 0;
		int timeout;

		/* Nothing to re-probe (the usual case): straight to the
		 * blocking read, no poll. */
		pthread_mutex_lock(&tbl_lock);
		timeout = dmb_uapi_reprobe_timeout(&tl_reprobes);
		pthread_mutex_unlock(&tbl_lock);
		if (timeout < 0 || poll(&p, 1, timeout) > 0)
			n = read(w->ifd, buf, sizeof(buf));
		if (watcher_stopped(w))
			break;
		/* Held while signalling and until what that frees is freed
		 * (dmb_uapi_timelines_settle()). */
		pthread_mutex_lock(&sig_lock);
		for (char *e = buf; n > 0 && e < buf + n;) {
			const struct inotify_event *ev = (const void *)e;
			bool closed = (ev->mask & (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE)) != 0;
			struct timeline *t;

			e += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				all_closed();
				continue;
			}
			pthread_mutex_lock(&tbl_lock);
			for (t = timelines; t && t->wd != ev->wd; t = t->next)
				;
			if (t)
				atomic_fetch_add(&t->refs, 1);
			pthread_mutex_unlock(&tbl_lock);
			if (!t || (ev->mask & IN_IGNORED)) {
				if (t)
					tl_put(t);
				continue;
			}
			tl_event(t, closed, true);
			if (closed)
				reprobe_queue(t);
			tl_put(t);
		}
		if (w->ifd < 0)
			goto self_stopped;
		reprobe_due();
		if (w->ifd < 0)
			goto self_stopped;
		pthread_mutex_unlock(&sig_lock);
	}
	/* Stopped by another thread, which joins. */
	return NULL;
self_stopped:
	/* Stopped by itself (its fd is closed already): it goes on its own. */
	pthread_detach(pthread_self());
	free(w);
	pthread_mutex_unlock(&sig_lock);
	return NULL;
}

/* A new entry for the timeline file fd (already checked to be one). */
static struct timeline *tl_attach(int fd, const struct stat *st, bool opener)
{
	char proc[40];
	struct timeline *t, *o;
	void *map;

	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	t->probe = open(proc, O_RDWR | O_CLOEXEC);
	if (t->probe < 0)
		goto fail;
	if (opener && ftruncate(t->probe, TL_SIZE) < 0)
		goto fail;
	map = mmap(NULL, TL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, t->probe, 0);
	if (map == MAP_FAILED)
		goto fail;
	t->sh = map;
	if (opener) {
		t->sh->magic = TL_MAGIC;
		/* The kernel names the timeline after the opening task. */
		prctl(PR_GET_NAME, t->sh->name, 0, 0, 0);
		t->sh->name[16] = 0;
	} else if (st->st_size < (off_t)TL_SIZE || t->sh->magic != TL_MAGIC) {
		goto fail;
	}
	if (dmabuf_timeline_new(t->sh->name, &t->tl))
		goto fail;
	pthread_mutex_init(&t->mu, NULL);
	atomic_init(&t->refs, 2); /* the table's and the caller's */
	t->dev = st->st_dev;
	t->ino = st->st_ino;
	t->wd = -1;
	if (!opener)
		atomic_store(&t->sh->shared, 1);
	pthread_mutex_lock(&t->mu);
	mirror_to(t, atomic_load(&t->sh->value));
	pthread_mutex_unlock(&t->mu);
	pthread_mutex_lock(&tbl_lock);
	for (o = timelines; o; o = o->next)
		if (o->ino == t->ino && o->dev == t->dev)
			break;
	if (o) {
		/* Another thread attached first: use its entry. */
		atomic_fetch_add(&o->refs, 1);
		pthread_mutex_unlock(&tbl_lock);
		dmabuf_timeline_destroy(t->tl);
		munmap(t->sh, TL_SIZE);
		close(t->probe);
		pthread_mutex_destroy(&t->mu);
		free(t);
		return o;
	}
	t->next = timelines;
	timelines = t;
	pthread_mutex_unlock(&tbl_lock);
	return t;
fail:
	if (t->sh)
		munmap(t->sh, TL_SIZE);
	if (t->probe >= 0)
		close(t->probe);
	free(t);
	return NULL;
}

int dmb_uapi_timeline_open(int flags)
{
	struct timeline *t;
	struct stat st;
	int fd, ret;

	char proc[40];
	int mfd = memfd_create("dmabuf-uapi-sw_sync", MFD_CLOEXEC);

	if (mfd < 0)
		return -errno;
	/* The program's description is a second open of the memfd: since
	 * Linux 6.13 the memfd's own file sends no inotify events, and the
	 * close of the program's is the one other processes watch for. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", mfd);
	fd = open(proc, O_RDWR | (flags & O_CLOEXEC));
	ret = -errno;
	close(mfd);
	if (fd < 0)
		return ret;
	if (fstat(fd, &st) < 0 || flock(fd, LOCK_SH) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	t = tl_attach(fd, &st, true);
	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	tl_put(t);
	return fd;
}

/* The entry of the timeline file fd, attached at its first use in this
 * process; one reference. NULL if fd is no timeline (or a dead one). */
static struct timeline *tl_get(int fd)
{
	struct timeline *t;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return NULL;
	pthread_mutex_lock(&tbl_lock);
	for (t = timelines; t; t = t->next)
		if (t->ino == st.st_ino && t->dev == st.st_dev)
			break;
	if (t)
		atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&tbl_lock);
	if (t || dmb_uapi_classify_stat(fd, &st) != DMB_UAPI_SW_SYNC)
		return t;
	return tl_attach(fd, &st, false);
}

int dmb_uapi_timeline_create_fence(int fd, uint32_t value, struct dmabuf_fence **out)
{
	struct timeline *t = tl_get(fd);
	int ret = -EINVAL;

	if (!t)
		return -EINVAL;
	pthread_mutex_lock(&t->mu);
	if (!t->gone) {
		mirror_to(t, atomic_load(&t->sh->value));
		ret = dmabuf_timeline_create_fence(t->tl, value, out);
		if (!ret && dmabuf_fence_get_status(*out) == 0) {
			if (!t->any_pending || reached(value, t->last_pending))
				t->last_pending = value;
			t->any_pending = true;
			/* Watched before the value is read again: a later
			 * INC elsewhere is an event. */
			if (t->wd < 0)
				watch_add(t);
			mirror_to(t, atomic_load(&t->sh->value));
		}
	}
	pthread_mutex_unlock(&t->mu);
	tl_put(t);
	return ret;
}

int dmb_uapi_timeline_inc(int fd, uint32_t value)
{
	struct timeline *t = tl_get(fd);
	int ret = -EINVAL;

	if (!t)
		return -EINVAL;
	pthread_mutex_lock(&t->mu);
	if (!t->gone) {
		atomic_fetch_add(&t->sh->value, value);
		mirror_to(t, atomic_load(&t->sh->value));
		/* After the add: a process that attached before it was seen
		 * here has read the new value itself. */
		if (atomic_load(&t->sh->shared))
			notify(t);
		ret = 0;
	}
	pthread_mutex_unlock(&t->mu);
	tl_put(t);
	return ret;
}

/* The parent's timelines and watcher, in a forked child: their fds are
 * closed (the child attaches with descriptions of its own), their memory
 * kept reachable, untouched (another thread of the parent may hold a
 * lock in it). */
static struct timeline *volatile parent_timelines;
static struct watcher *volatile parent_watcher;

void dmb_uapi_timelines_forked(void)
{
	struct timeline *t;

	pthread_mutex_init(&tl_lock, NULL);
	pthread_mutex_init(&tbl_lock, NULL);
	pthread_mutex_init(&sig_lock, NULL);
	for (t = timelines; t; t = t->next) {
		if (t->probe >= 0)
			close(t->probe);
		if (t->sh)
			munmap(t->sh, TL_SIZE);
	}
	if (watcher && watcher->ifd >= 0)
		close(watcher->ifd);
	parent_timelines = timelines;
	parent_watcher = watcher;
	timelines = NULL;
	watcher = NULL;
	watched = 0;
	memset(&tl_reprobes, 0, sizeof(tl_reprobes)); /* the parent's, with them */
}

void dmb_uapi_timelines_exit(void)
{
	struct watcher *w;
	struct timeline *t;

	pthread_mutex_lock(&tbl_lock);
	w = watcher;
	watcher = NULL;
	if (w) {
		/* The removals wake the thread, which sees stop. */
		w->stop = true;
		for (t = timelines; t; t = t->next) {
			if (t->wd >= 0)
				inotify_rm_watch(w->ifd, t->wd);
			t->wd = -1;
			dmb_uapi_reprobe_cancel(&tl_reprobes, &t->reprobe);
		}
		watched = 0;
	}
	pthread_mutex_unlock(&tbl_lock);
	watcher_join(w);
}

void dmb_uapi_timelines_settle(void)
{
	pthread_mutex_lock(&sig_lock);
	pthread_mutex_unlock(&sig_lock);
}

bool dmb_uapi_close_matters(void)
{
	struct dmabuf_ctx_stats stats = { .struct_size = sizeof(stats) };
	struct dmabuf_ctx *ctx;

	/* Unlocked reads: a stale answer only costs or saves one fstat. */
	if (timelines || dmb_uapi_have_held())
		return true;
	ctx = dmb_uapi_ctx_if_made();
	return ctx && dmabuf_ctx_get_stats(ctx, &stats) == 0 && stats.buffers_live;
}

void dmb_uapi_closed(enum dmb_uapi_kind kind, dev_t dev, ino_t ino)
{
	struct dmabuf_ctx *ctx;
	struct timeline *t;

	if (kind == DMB_UAPI_DMABUF) {
		/* close() returns after the file's last reference went, so
		 * the exporter's close event is queued: handle it now, and a
		 * buffer whose last holder this was is released before the
		 * program's close() returns, as the kernel's. */
		if (ino && dmb_uapi_have_held())
			dmb_uapi_release_held(dev, ino);
		ctx = dmb_uapi_ctx_if_made();
		if (ctx)
			dmabuf_ctx_dispatch(ctx);
		return;
	}
	if (kind != DMB_UAPI_SW_SYNC)
		return;
	pthread_mutex_lock(&tbl_lock);
	for (t = timelines; t; t = t->next)
		if (t->ino == ino && t->dev == dev)
			break;
	if (t)
		atomic_fetch_add(&t->refs, 1);
	pthread_mutex_unlock(&tbl_lock);
	if (!t)
		return;
	watcher_join(tl_event(t, true, false));
	tl_put(t);
}

/* ---- sync-file names ------------------------------------------------------ */

#define NAMES 256

static struct {
	dev_t dev;
	ino_t ino;
	char name[32];
} names[NAMES];
static unsigned int names_next;

void dmb_uapi_sync_name_set(int fd, const char *name)
{
	struct stat st;
	unsigned int i;

	if (fstat(fd, &st) < 0)
		return;
	pthread_mutex_lock(&tl_lock);
	/* A ring: the oldest name goes first. A lost name falls back to the
	 * kernel's default form. */
	i = names_next++ % NAMES;
	names[i].dev = st.st_dev;
	names[i].ino = st.st_ino;
	snprintf(names[i].name, sizeof(names[i].name), "%s", name);
	pthread_mutex_unlock(&tl_lock);
}

int dmb_uapi_sync_name_get(int fd, char *name, size_t size)
{
	struct stat st;
	unsigned int i;
	int ret = -ENOENT;

	if (fstat(fd, &st) < 0)
		return -errno;
	pthread_mutex_lock(&tl_lock);
	for (i = 0; i < NAMES; i++) {
		if (names[i].ino == st.st_ino && names[i].dev == st.st_dev && names[i].ino) {
			snprintf(name, size, "%s", names[i].name);
			ret = 0;
		}
	}
	pthread_mutex_unlock(&tl_lock);
	return ret;
}

/* ---- fence context numbers ------------------------------------------------ */

#define CONTEXTS 256

/* The core draws a random 64-bit base for contexts (unique across
 * processes); the kernel's are small counters. The number shown in a
 * default sync-file name is a per-process ordinal instead, so the name has
 * the kernel's shape and is not cut at 31 bytes. */
static struct {
	uint64_t context;
	unsigned long long number;
} contexts[CONTEXTS];
static unsigned long long contexts_next;

unsigned long long dmb_uapi_context_number(uint64_t context)
{
	unsigned long long n = 0;
	unsigned int i;

	pthread_mutex_lock(&tl_lock);
	for (i = 0; i < CONTEXTS && i < contexts_next; i++)
		if (contexts[i].context == context)
			n = contexts[i].number;
	if (!n) {
		/* A ring: a forgotten context gets a new number, never an
		 * old one, so numbers stay unique within the process. */
		n = ++contexts_next;
		contexts[(n - 1) % CONTEXTS].context = context;
		contexts[(n - 1) % CONTEXTS].number = n;
	}
	pthread_mutex_unlock(&tl_lock);
	return n;
}

/* ---- sw_sync deadlines ---------------------------------------------------- */

#define DEADLINES 256

/* The earliest deadline set on a sw_sync point (sw_sync_set_deadline()),
 * by the point's context and seqno. */
static struct {
	uint64_t context, seqno, ns;
	bool used;
} deadlines[DEADLINES];
static unsigned int deadlines_next;

void dmb_uapi_deadline_set(uint64_t context, uint64_t seqno, uint64_t ns)
{
	unsigned int i;

	pthread_mutex_lock(&tl_lock);
	for (i = 0; i < DEADLINES; i++) {
		if (deadlines[i].used && deadlines[i].context == context &&
		    deadlines[i].seqno == seqno) {
			if (ns < deadlines[i].ns)
				deadlines[i].ns = ns;
			pthread_mutex_unlock(&tl_lock);
			return;
		}
	}
	/* A ring: the oldest point's deadline is forgotten first. */
	i = deadlines_next++ % DEADLINES;
	deadlines[i].context = context;
	deadlines[i].seqno = seqno;
	deadlines[i].ns = ns;
	deadlines[i].used = true;
	pthread_mutex_unlock(&tl_lock);
}

int dmb_uapi_deadline_get(uint64_t context, uint64_t seqno, uint64_t *ns)
{
	int ret = -ENOENT;
	unsigned int i;

	pthread_mutex_lock(&tl_lock);
	for (i = 0; i < DEADLINES; i++) {
		if (deadlines[i].used && deadlines[i].context == context &&
		    deadlines[i].seqno == seqno) {
			*ns = deadlines[i].ns;
			ret = 0;
		}
	}
	pthread_mutex_unlock(&tl_lock);
	return ret;
}
