/* SPDX-License-Identifier: MIT */
/*
 * The exporting side of a sync file: dmabuf_sync_file_export() makes the
 * socketpair and keeps W; at signal one callback per fence writes the
 * record into every W; the sweep closes W ends whose every R is gone;
 * deadlines that holders of R write arrive in W and are read here. Apart
 * from the importer's side (sync_file_import.c) because it holds the other
 * end, with its own state (struct sf_export, struct sf_attach) and lists.
 */
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sync_file_private.h"

/* Deadline records read from one W per watcher event; more wait for the
 * next one (epoll is level-triggered), so a flooding holder cannot hold
 * the watcher on one fence. */
#define SF_DEADLINES_PER_EVENT 64
/* Sweep dead W ends when the open ones exceed twice the live ones of the
 * last sweep, and at least this many. */
#define SF_SWEEP_MIN 64

/* The open W ends, under dmb_sf_lock. */
static TAILQ_HEAD(, sf_export) sf_open = TAILQ_HEAD_INITIALIZER(sf_open);
static unsigned int sf_nopen, sf_sweep_at = SF_SWEEP_MIN;
static atomic_ulong sf_counter;

static const struct dmb_fence_attachment_ops sf_attach_ops;
static void sweep_locked(void);

/* ---- records ------------------------------------------------------------- */

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
	dmb_sf_copy_name(rec->driver, f->ops->get_driver_name(f));
	dmb_sf_copy_name(rec->timeline, f->ops->get_timeline_name(f));
	for (unsigned int i = 0; i < n; i++)
		dmb_sf_fill_info(dmb_fence_unwrap_child(f, i),
			  (struct dmabuf_sync_fence_info *)(rec + 1) + i);
	return rec;
}

/* Under dmb_sf_lock: W is done with, by a record or by its peers' absence. */
static void export_close_locked(struct sf_export *e)
{
	if (e->wfd < 0)
		return;
	TAILQ_REMOVE(&sf_open, e, open_link);
	sf_nopen--;
	/* Closing W (its only fd) also takes it out of the watcher's set. */
	if (e->watch_id) {
		e->watch_id = 0;
		atomic_fetch_sub(&dmb_sf_nwatched, 1);
	}
	close(e->wfd);
	e->wfd = -1;
}

/* Under dmb_sf_lock: writes the record into W once. W then stays open (the
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
		/* EPIPE: every copy of R is gone already, or a holder shut R
		 * down for reading: then the status goes into W's name, which
		 * every holder reads once W is closed (sync_file_peer.c). */
		if (r < 0 && errno == EPIPE)
			dmb_sf_bind_status(e->wfd, e->key.pid, e->key.serial, rec->error,
					   rec->timestamp_ns);
		else
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

	/* Built before dmb_sf_lock: the names and children's status may call
	 * into other fences. */
	rec = make_record(at->fence, &one, &len);
	pthread_mutex_lock(&dmb_sf_lock);
	LIST_FOREACH(e, &at->exports, fence_link)
		send_record_locked(e, rec, len);
	pthread_mutex_unlock(&dmb_sf_lock);
	if (rec != &one)
		free(rec);
}

/* Under dmb_sf_lock: W is closed and e forgotten; nobody can present its
 * sync file any more. */
static void export_forget_locked(struct sf_export *e)
{
	export_close_locked(e);
	LIST_REMOVE(e, fence_link);
	LIST_REMOVE(&e->key, link);
	free(e);
}

/* ---- deadlines from the holders of R ------------------------------------- */

/*
 * Under dmb_sf_lock: reads the deadline records waiting in W (at most
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
struct dmabuf_fence *dmb_sf_export_deadline(uint64_t id, int epfd, int64_t *dl)
{
	struct dmabuf_fence *f = NULL;
	struct sf_export *e;
	int64_t earliest = 0;
	bool have = false;

	pthread_mutex_lock(&dmb_sf_lock);
	TAILQ_FOREACH(e, &sf_open, open_link)
		if (e->watch_id == id)
			break;
	if (!e) {
		/* closed meanwhile (sweep, last put) */
		pthread_mutex_unlock(&dmb_sf_lock);
		return NULL;
	}
	if (read_deadlines(e->wfd, &earliest, &have) < 0) {
		if (dmb_sf_peer_open(e->wfd) > 0) {
			/* A holder shut R down for writing: R is still open,
			 * and so stays W; no deadline can come any more. */
			epoll_ctl(epfd, EPOLL_CTL_DEL, e->wfd, NULL);
			e->watch_id = 0;
			atomic_fetch_sub(&dmb_sf_nwatched, 1);
			e->held = true;
		} else {
			export_forget_locked(e);
		}
	} else if (have && dmb_fence_tryget(e->key.fence))
		f = e->key.fence;
	pthread_mutex_unlock(&dmb_sf_lock);
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
	pthread_mutex_lock(&dmb_sf_lock);
	/* A bounded drain: a holder that keeps writing cannot hold us. */
	LIST_FOREACH(e, &at->exports, fence_link)
		for (int i = 0; e->wfd >= 0 && i < 64; i++)
			if (read_deadlines(e->wfd, &earliest, &have) <= 0)
				break;
	pthread_mutex_unlock(&dmb_sf_lock);
	if (have)
		dmabuf_fence_set_deadline(f, earliest);
}

/* ---- the signal, the last put, the sweep ---------------------------------- */

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
	pthread_mutex_lock(&dmb_sf_lock);
	while ((e = LIST_FIRST(&at->exports))) {
		watched |= e->watch_id != 0;
		export_forget_locked(e);
	}
	pthread_mutex_unlock(&dmb_sf_lock);
	free(at);
	/* A W end of it may have been closed by the watcher (EOF), which
	 * then stopped: reaped here. */
	if (watched || dmb_fence_has_op(f, set_deadline))
		dmb_sf_watcher_check_idle();
}

static const struct dmb_fence_attachment_ops sf_attach_ops = {
	.detach = sf_detach,
};

/* Closes the W ends whose every R is gone (POLLHUP) and forgets those
 * sync files: nobody can present them any more. Under dmb_sf_lock. */
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
		p[n++] = (struct pollfd){ .fd = e->held ? -1 : e->wfd, .events = 0 };
	if (poll(p, n, 0) > 0) {
		/* The questions of one sweep on one diagnostics socket (not
		 * tried yet: 1; held: 0; -errno) */
		int held = 1, open;
		bool freed = false, tried_since = false;

		for (e = TAILQ_FIRST(&sf_open); e; e = next, i++) {
			next = TAILQ_NEXT(e, open_link);
			/* POLLERR: R went with the record in it (ECONNRESET),
			 * only a close does that. POLLHUP alone: every R is
			 * closed, or a holder shut R down both ways, which
			 * keeps W (sync_file_peer.c). */
			if (p[i].revents & POLLERR) {
				export_forget_locked(e);
				freed = true;
				continue;
			}
			if (!(p[i].revents & POLLHUP))
				continue;
			if (held > 0 || (held < 0 && freed && !tried_since)) {
				held = dmb_sf_diag_hold();
				tried_since = true;
			}
			open = dmb_sf_peer_open(e->wfd);
			if (open > 0) {
				e->held = true;
			} else if (open == 0 || !dmb_sf_diag_scarce(open) || !freed) {
				/* Closed, or no diagnostics here; or no fd
				 * number free at all (the sweep before a
				 * retried export): this one is closed unasked,
				 * as when every question made its socket, so
				 * that the next ones can be asked. */
				export_forget_locked(e);
				freed = true;
				tried_since = false;
			}
			/* else not known now (no socket for want of memory):
			 * kept for the next sweep */
		}
		if (held == 0)
			dmb_sf_diag_release();
	}
	free(p);
	sf_sweep_at = sf_nopen * 2 > SF_SWEEP_MIN ? sf_nopen * 2 : SF_SWEEP_MIN;
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
			pthread_mutex_lock(&dmb_sf_lock);
			sweep_locked();
			pthread_mutex_unlock(&dmb_sf_lock);
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
	pthread_mutex_lock(&dmb_sf_lock);
	LIST_INSERT_HEAD(&at->exports, e, fence_link);
	LIST_INSERT_HEAD(&dmb_sf_table, &e->key, link);
	TAILQ_INSERT_TAIL(&sf_open, e, open_link);
	sf_nopen++;
	if (sf_nopen > sf_sweep_at)
		sweep_locked();
	pthread_mutex_unlock(&dmb_sf_lock);
	pthread_mutex_unlock(&f->lock);
	free(fresh);

	if (listens && !(f->flags & DMB_FENCE_PULL_DEADLINE) && !dmb_fence_test_signaled(f))
		dmb_sf_watch_export(e);
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
	int fd;

	if (!dmabuf_fence_get(f))
		return -EINVAL;
	/* A pending imported fence: the same sync file, so that its identity
	 * (and the exporter's fence) survives the round trip. */
	fd = dmb_sf_imported_dup(f);
	if (fd == -EINVAL)
		fd = sf_create(f);
	dmabuf_fence_put(f);
	return fd;
}

/* ---- fork: the child is not the signaller -------------------------------- */

void dmb_sf_exports_forked(void)
{
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
	atomic_store(&dmb_sf_nwatched, 0);
}
