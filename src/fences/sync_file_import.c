/* SPDX-License-Identifier: MIT */
/*
 * The importing side of a sync file: dmabuf_sync_file_import() of an fd
 * that no fence of this process stands behind makes an imported fence, a
 * subtype that holds a copy of R and learns of its signal from it (waits
 * poll R, status queries peek it, callbacks come from the watcher), and
 * that sends deadlines into R. Apart from the exporting side
 * (sync_file_export.c) because it is a fence subtype of its own, with its
 * own fd and ops.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sync_file_private.h"

static struct sf_imported *to_imported(struct dmabuf_fence *f)
{
	return dmb_container_of(f, struct sf_imported, base);
}

static const struct dmabuf_fence_ops imported_ops[2];

static bool is_imported(struct dmabuf_fence *f)
{
	return f->ops == &imported_ops[0] || f->ops == &imported_ops[1];
}

int dmb_sf_imported_dup(struct dmabuf_fence *f)
{
	struct sf_imported *imp = to_imported(f);
	int fd = -EINVAL;

	if (!is_imported(f))
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	if (imp->rfd >= 0) {
		fd = fcntl(imp->rfd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			fd = -errno;
	}
	pthread_mutex_unlock(&f->lock);
	return fd;
}

unsigned int dmb_sf_imported_children(struct dmabuf_fence *f,
				      const struct dmabuf_sync_fence_info **children)
{
	if (!is_imported(f) || !dmabuf_fence_is_signaled(f) || !to_imported(f)->nchildren)
		return 0;
	*children = to_imported(f)->children;
	return to_imported(f)->nchildren;
}

/* Closes R's copy and lets the diagnostics socket go with it (the last
 * hold closes it, so no fd of ours outlives the call that signalled). */
static void rfd_close(struct sf_imported *imp)
{
	close(imp->rfd);
	imp->rfd = -1;
	if (imp->diag_held) {
		imp->diag_held = false;
		dmb_sf_diag_release();
	}
}

void dmb_sf_rfd_put(struct sf_imported *imp)
{
	pthread_mutex_lock(&imp->base.lock);
	if (--imp->users == 0 && imp->rfd >= 0 &&
	    atomic_load_explicit(&imp->base.signaled, memory_order_relaxed))
		rfd_close(imp);
	pthread_mutex_unlock(&imp->base.lock);
}

/* ---- learning of the signal from R --------------------------------------- */

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

/* A holder shut R down: nothing to poll (R is ready for good); how long to
 * sleep before looking again, doubling from 1 ms up to this. */
#define SF_SHUT_SLICE_MAX_MS 64

/* Checks R without blocking (timeout_ms 0) or waits on it, and signals the
 * fence when R says so. The caller holds a reference. Returns true once
 * the fence has signalled. An EOF without a record is asked about first
 * (sync_file_peer.c): with W still open it is a holder's shutdown of R,
 * a wake-up that the wait then sleeps through in slices; so is a question
 * that could not be asked (no fd or memory for it): the fence stays
 * pending and the next look asks again. */
bool dmb_sf_imp_poll(struct sf_imported *imp, int timeout_ms, bool user_held)
{
	struct dmabuf_fence *f = &imp->base;
	struct dmabuf_sync_fence_info *children = NULL;
	struct dmb_sf_record rec;
	int64_t end = timeout_ms > 0 ? dmb_now_ns() + (int64_t)timeout_ms * 1000000 : 0;
	struct pollfd p = { .events = POLLIN };
	bool signalled_here = false, shut = false;
	int error, r, slice = 1;
	int64_t ts;
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
		int left = timeout_ms;

		if (timeout_ms > 0) {
			int64_t l = (end - dmb_now_ns()) / 1000000;

			left = l > 0 ? (int)l : 0;
		}
		if (shut) {
			/* R polls ready for good: sleep, then look again. */
			if (left == 0)
				goto out;
			r = left < 0 || left > slice ? slice : left;
			poll(NULL, 0, r);
			slice = slice * 2 > SF_SHUT_SLICE_MAX_MS ? SF_SHUT_SLICE_MAX_MS : slice * 2;
		} else {
			r = poll(&p, 1, left);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				goto out;
		}
		do
			n = recv(p.fd, &rec, sizeof(rec), MSG_PEEK | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* a wake-up with nothing in R */
			if (left == 0)
				goto out;
			continue;
		}
		if (n == (ssize_t)sizeof(rec) && rec.magic == SF_MAGIC && rec.error <= 0 &&
		    rec.error >= -4095 && rec.nchildren <= SF_MAX_CHILDREN) {
			error = rec.error;
			if (rec.nchildren)
				children = peek_children(p.fd, rec.nchildren);
			break;
		}
		memset(&rec, 0, sizeof(rec));
		/* ECONNRESET: W went with bytes unread in it, then EOF. */
		if (n < 0 && errno == ECONNRESET)
			n = 0;
		if (n == 0 && dmb_sf_eof_truth(p.fd, &error, &ts) <= 0) {
			/* W is open: a holder shut R down, still pending
			 * (or not known: looked at again) */
			shut = true;
			if (left == 0)
				goto out;
			continue;
		}
		if (n != 0) {
			/* Bytes that are no record (R is ours: it cannot be
			 * anyone else's), or an error: as a signaller gone. */
			error = DMABUF_FENCE_ESIGNALLER;
			ts = dmb_now_ns();
		}
		/* EOF: the signaller is gone, or its status in W's name. */
		rec.timestamp_ns = ts;
		break;
	}
	pthread_mutex_lock(&f->lock);
	if (!atomic_load_explicit(&f->signaled, memory_order_relaxed)) {
		if (rec.driver[0]) {
			dmb_sf_copy_name(imp->driver, rec.driver);
			dmb_sf_copy_name(imp->timeline, rec.timeline);
		}
		if (children) {
			imp->children = children;
			imp->nchildren = rec.nchildren;
			children = NULL;
		}
		/* Done with R: close it before the callbacks run, unless
		 * another thread is still polling it (it closes it then). */
		if (--imp->users == 0)
			rfd_close(imp);
		signalled_here = true;
		dmb_fence_signal_locked(f, error, rec.timestamp_ns);
	}
	pthread_mutex_unlock(&f->lock);
	free(children);
	if (signalled_here) {
		dmb_sf_unwatch_import(imp);
		if (!dmb_fence_in_callback())
			dmb_sf_after_signal();
		return true;
	}
out:
	dmb_sf_rfd_put(imp);
	return atomic_load(&f->signaled);
}

/* ---- the subtype's ops --------------------------------------------------- */

/* ops->enable_signaling: the watcher watches R. */
static bool imp_enable_signaling(struct dmabuf_fence *f)
{
	return dmb_sf_watch_import(to_imported(f));
}

/* dmb_sf_imp_poll() signals the fence itself, with the record's error and time. */
static bool imp_signaled(struct dmabuf_fence *f)
{
	return dmb_sf_imp_poll(to_imported(f), 0, false);
}

static int imp_wait(struct dmabuf_fence *f, int timeout_ms)
{
	return dmb_sf_imp_poll(to_imported(f), timeout_ms, false);
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

	pthread_mutex_lock(&dmb_sf_lock);
	if (imp->key.keyed)
		LIST_REMOVE(&imp->key, link);
	pthread_mutex_unlock(&dmb_sf_lock);
	if (imp->rfd >= 0)
		rfd_close(imp);
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

/* The seqno width travels in R's name: a table for each, [1] 64-bit. */
#define IMPORTED_OPS(wide)                                                     \
	{                                                                      \
		.version = DMABUF_FENCE_OPS_VERSION,                           \
		.get_driver_name = imp_driver_name,                            \
		.get_timeline_name = imp_timeline_name,                        \
		.release = imp_release,                                        \
		.enable_signaling = imp_enable_signaling,                      \
		.signaled = imp_signaled,                                      \
		.wait = imp_wait,                                              \
		.use_64bit_seqno = (wide),                                     \
		.set_deadline = imp_set_deadline,                              \
	}
static const struct dmabuf_fence_ops imported_ops[2] = { IMPORTED_OPS(false),
							 IMPORTED_OPS(true) };

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
	int ret, rfd, held;

	if (!out)
		return -EINVAL;
	ret = sf_stat(fd, &st);
	if (ret)
		return ret;
	ret = dmb_sf_parse_name(fd, &nm);
	if (ret)
		return ret;
	pthread_mutex_lock(&dmb_sf_lock);
	found = dmb_sf_lookup_locked(st.st_dev, st.st_ino, &nm);
	pthread_mutex_unlock(&dmb_sf_lock);
	if (found) {
		*out = found;
		return 0;
	}
	rfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (rfd < 0)
		return -errno;
	ret = dmb_fence_create(&imported_ops[nm.bits == 64],
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
	/*
	 * The first look, before any other thread can see the fence. A file
	 * that signalled already needs nothing more (its R is closed now).
	 * A pending one holds the process's diagnostics socket while it has
	 * R, so that its waits and status (an EOF of R is a question,
	 * sync_file_peer.c) never need an fd. Where the kernel has no socket
	 * diagnostics none is held (an EOF then reads as the signaller gone);
	 * for want of an fd the import fails, as its copy of R would have.
	 */
	if (!dmb_sf_imp_poll(imp, 0, false)) {
		held = dmb_sf_diag_hold();
		if (dmb_sf_diag_scarce(held)) {
			dmabuf_fence_put(f);
			return held;
		}
		imp->diag_held = held == 0;
	}
	pthread_mutex_lock(&dmb_sf_lock);
	/* Another thread may have imported the same file meanwhile. */
	found = dmb_sf_lookup_locked(st.st_dev, st.st_ino, &nm);
	if (!found) {
		LIST_INSERT_HEAD(&dmb_sf_table, &imp->key, link);
		imp->key.keyed = true;
	}
	pthread_mutex_unlock(&dmb_sf_lock);
	if (found) {
		dmabuf_fence_put(f);
		*out = found;
		return 0;
	}
	*out = f;
	return 0;
}
