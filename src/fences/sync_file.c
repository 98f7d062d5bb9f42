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

struct dmb_sf_export {
	struct dmabuf_fence *fence;	/* weak: the fence owns this */
	int rfd;			/* R: the sync file itself */
	int wfd;			/* W: open until the fence is freed; -1 if imported */
	bool signalled;			/* the record is written */
	dev_t dev;
	ino_t ino;
	bool watched;
	/* Imported merges: the fences the signaller reported. */
	struct dmabuf_sync_fence_info *children;
	unsigned int nchildren;
	LIST_ENTRY(dmb_sf_export) link;
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

/* Bounds the record to what a socket buffer surely holds. */
#define SF_MAX_CHILDREN 256

static pthread_mutex_t sf_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, dmb_sf_export) sf_table = LIST_HEAD_INITIALIZER(sf_table);
static atomic_ulong sf_counter;

/* ---- the watcher thread ------------------------------------------------- */

static struct {
	pthread_mutex_t lock;
	pthread_t thread;
	bool joinable;	/* a thread exists that nobody joined yet */
	bool running;	/* its loop runs; epfd and wakefd are open */
	int epfd, wakefd;
	unsigned int nwatch;
} watcher = { .lock = PTHREAD_MUTEX_INITIALIZER, .epfd = -1, .wakefd = -1 };

static void watcher_close_locked(void)
{
	close(watcher.epfd);
	close(watcher.wakefd);
	watcher.epfd = watcher.wakefd = -1;
	watcher.running = false;
}

static void *watcher_main(void *arg)
{
	for (;;) {
		struct epoll_event ev[8];
		int n = epoll_wait(watcher.epfd, ev, DMB_ARRAY_SIZE(ev), -1);

		if (n < 0 && errno == EINTR)
			continue;
		for (int i = 0; i < n; i++) {
			struct dmabuf_fence *f = ev[i].data.ptr;
			bool last;

			pthread_mutex_lock(&watcher.lock);
			if (!f) {
				/* Stop request (process exit). */
				watcher_close_locked();
				pthread_mutex_unlock(&watcher.lock);
				return NULL;
			}
			epoll_ctl(watcher.epfd, EPOLL_CTL_DEL, f->sf->rfd, NULL);
			f->sf->watched = false;
			last = --watcher.nwatch == 0;
			/* Close before running callbacks: whoever they wake
			 * finds no fd of ours left open. */
			if (last)
				watcher_close_locked();
			pthread_mutex_unlock(&watcher.lock);
			dmb_sf_poll_imported(f, 0);
			dmabuf_fence_put(f);
			if (last)
				return NULL;
		}
	}
}

void dmb_sf_watch(struct dmabuf_fence *f)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ret;

	pthread_mutex_lock(&watcher.lock);
again:
	if (f->sf->watched) {
		pthread_mutex_unlock(&watcher.lock);
		return;
	}
	if (!watcher.running) {
		if (watcher.joinable) {
			pthread_t t = watcher.thread;

			watcher.joinable = false;
			if (pthread_equal(t, pthread_self())) {
				pthread_detach(t);
			} else {
				pthread_mutex_unlock(&watcher.lock);
				pthread_join(t, NULL);
				pthread_mutex_lock(&watcher.lock);
				goto again;
			}
		}
		watcher.epfd = epoll_create1(EPOLL_CLOEXEC);
		watcher.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (watcher.epfd < 0 || watcher.wakefd < 0 ||
		    epoll_ctl(watcher.epfd, EPOLL_CTL_ADD, watcher.wakefd, &ev) ||
		    pthread_create(&watcher.thread, NULL, watcher_main, NULL)) {
			if (watcher.epfd >= 0)
				close(watcher.epfd);
			if (watcher.wakefd >= 0)
				close(watcher.wakefd);
			watcher.epfd = watcher.wakefd = -1;
			pthread_mutex_unlock(&watcher.lock);
			dmb_err(NULL, "sync file: cannot start the fence watcher");
			return;
		}
		watcher.running = watcher.joinable = true;
	}
	dmabuf_fence_get(f);
	ev.data.ptr = f;
	ret = epoll_ctl(watcher.epfd, EPOLL_CTL_ADD, f->sf->rfd, &ev);
	if (ret) {
		pthread_mutex_unlock(&watcher.lock);
		dmabuf_fence_put(f);
		dmb_err(NULL, "sync file: cannot watch fd %d: %s", f->sf->rfd,
			strerror(errno));
		return;
	}
	f->sf->watched = true;
	watcher.nwatch++;
	pthread_mutex_unlock(&watcher.lock);
}

__attribute__((destructor)) static void watcher_fini(void)
{
	pthread_t t;
	bool join;

	pthread_mutex_lock(&watcher.lock);
	if (watcher.running) {
		uint64_t one = 1;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		/* data.ptr NULL on the wake fd means stop. */
		epoll_ctl(watcher.epfd, EPOLL_CTL_MOD, watcher.wakefd, &ev);
		if (write(watcher.wakefd, &one, sizeof(one)) < 0)
			dmb_err(NULL, "sync file: cannot stop the fence watcher");
	}
	join = watcher.joinable;
	t = watcher.thread;
	watcher.joinable = false;
	pthread_mutex_unlock(&watcher.lock);
	if (join)
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
	struct dmb_sf_export *e;

	/* A forked child must not keep the parent's signal ends open, or a
	 * dead parent would look alive to every importer. Its copies of
	 * those fences can still signal locally. */
	LIST_FOREACH(e, &sf_table, link) {
		if (e->wfd >= 0) {
			close(e->wfd);
			e->wfd = -1;
		}
	}
	/* The watcher thread does not exist in the child. */
	if (watcher.running)
		watcher_close_locked();
	watcher.joinable = false;
	watcher.nwatch = 0;
	pthread_mutex_unlock(&sf_lock);
	pthread_mutex_unlock(&watcher.lock);
}

__attribute__((constructor)) static void sf_init(void)
{
	pthread_atfork(sf_atfork_prepare, sf_atfork_parent, sf_atfork_child);
}

/* ---- records ------------------------------------------------------------- */

static void copy_name(char *dst, const char *src)
{
	snprintf(dst, DMABUF_SYNC_NAME_LEN, "%s", src ? src : "");
}

static void fill_info(struct dmabuf_fence *f, struct dmabuf_sync_fence_info *i);

static void write_record(struct dmabuf_fence *f, int wfd)
{
	unsigned int n = dmb_fence_array_count(f);
	struct dmb_sf_record *rec;
	size_t len;
	ssize_t r;

	if (f->kind != DMB_FENCE_ARRAY)
		n = 0;
	if (n > SF_MAX_CHILDREN)
		n = SF_MAX_CHILDREN;
	len = sizeof(*rec) + n * sizeof(struct dmabuf_sync_fence_info);
	rec = calloc(1, len);
	if (!rec) {
		dmb_err(NULL, "sync file: no memory for the signal record");
		return;
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
		fill_info(dmb_fence_array_child(f, i),
			  (struct dmabuf_sync_fence_info *)(rec + 1) + i);
	do
		r = send(wfd, rec, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)len)
		dmb_err(NULL, "sync file: cannot write the signal record: %s",
			r < 0 ? strerror(errno) : "short write");
	free(rec);
}

/* Under f->lock, f signalled: complete its sync file. The record alone
 * makes R readable everywhere; W stays open until the fence is freed
 * (dmb_sf_fini), which keeps the close off the signalling path. */
void dmb_sf_signalled_locked(struct dmabuf_fence *f)
{
	struct dmb_sf_export *e = f->sf;
	int wfd;

	pthread_mutex_lock(&sf_lock);
	wfd = e->signalled ? -1 : e->wfd;
	e->signalled = true;
	pthread_mutex_unlock(&sf_lock);
	if (wfd >= 0)
		write_record(f, wfd);
}

void dmb_sf_fini(struct dmabuf_fence *f)
{
	struct dmb_sf_export *e = f->sf;

	pthread_mutex_lock(&sf_lock);
	LIST_REMOVE(e, link);
	pthread_mutex_unlock(&sf_lock);
	/* Unsignalled and nobody left to signal it: closing W tells every
	 * importer so (EOF without a record). */
	if (e->wfd >= 0)
		close(e->wfd);
	close(e->rfd);
	free(e->children);
	free(e);
	f->sf = NULL;
}

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

bool dmb_sf_poll_imported(struct dmabuf_fence *f, int timeout_ms)
{
	struct pollfd p = { .fd = f->sf->rfd, .events = POLLIN };
	struct dmabuf_sync_fence_info *children = NULL;
	struct dmb_sf_record rec;
	int64_t end = timeout_ms > 0 ? dmb_now_ns() + (int64_t)timeout_ms * 1000000 : 0;
	int error, r;
	ssize_t n;

	for (;;) {
		if (atomic_load_explicit(&f->signaled, memory_order_acquire))
			return true;
		r = poll(&p, 1, timeout_ms);
		if (r >= 0 || errno != EINTR)
			break;
		if (timeout_ms > 0) {
			int64_t left = (end - dmb_now_ns()) / 1000000;

			timeout_ms = left > 0 ? (int)left : 0;
		}
	}
	if (r <= 0)
		return atomic_load(&f->signaled);
	do
		n = recv(p.fd, &rec, sizeof(rec), MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return atomic_load(&f->signaled);
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
			copy_name(f->imp_driver, rec.driver);
			copy_name(f->imp_timeline, rec.timeline);
		}
		if (children) {
			f->sf->children = children;
			f->sf->nchildren = rec.nchildren;
			children = NULL;
		}
		dmb_fence_signal_locked(f, error, rec.timestamp_ns);
	}
	pthread_mutex_unlock(&f->lock);
	free(children);
	return true;
}

/* ---- export -------------------------------------------------------------- */

static int sf_stat(int fd, struct stat *st)
{
	int fl;

	/* fget() refuses an O_PATH fd: it is no open file of the sync file. */
	if (fd < 0 || (fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_PATH) || fstat(fd, st))
		return -EBADF;
	return S_ISSOCK(st->st_mode) ? 0 : -EINVAL;
}

/* Fills the context and seqno from R's address; -EINVAL if R is not ours. */
static int sf_parse_name(int fd, uint64_t *context, uint64_t *seqno, long *pid)
{
	struct sockaddr_un addr;
	socklen_t len = sizeof(addr);
	char name[sizeof(addr.sun_path)];
	size_t nlen;
	unsigned long long c, s;
	unsigned long long cnt;

	if (getsockname(fd, (struct sockaddr *)&addr, &len) ||
	    addr.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) + 1 ||
	    addr.sun_path[0] != '\0')
		return -EINVAL;
	nlen = len - offsetof(struct sockaddr_un, sun_path) - 1;
	memcpy(name, addr.sun_path + 1, nlen);
	name[nlen] = '\0';
	if (strncmp(name, SF_PREFIX, strlen(SF_PREFIX)) ||
	    sscanf(name + strlen(SF_PREFIX), "%16llx/%16llx/%ld/%llu", &c, &s, pid,
		   &cnt) != 4)
		return -EINVAL;
	*context = c;
	*seqno = s;
	return 0;
}

static struct dmabuf_fence *sf_lookup_locked(dev_t dev, ino_t ino)
{
	struct dmb_sf_export *e;

	LIST_FOREACH(e, &sf_table, link)
		if (e->dev == dev && e->ino == ino && dmb_fence_tryget(e->fence))
			return e->fence;
	return NULL;
}

/* Under f->lock: gives f a sync file. */
static int sf_create_locked(struct dmabuf_fence *f)
{
	struct dmb_sf_export *e;
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	int sv[2], n, ret;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv)) {
		ret = -errno;
		free(e);
		return ret;
	}
	n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1,
		     SF_PREFIX "%016llx/%016llx/%ld/%lu",
		     (unsigned long long)f->context, (unsigned long long)f->seqno,
		     (long)getpid(), atomic_fetch_add(&sf_counter, 1));
	if (bind(sv[0], (struct sockaddr *)&addr,
		 offsetof(struct sockaddr_un, sun_path) + 1 + n) || fstat(sv[0], &st)) {
		ret = -errno;
		close(sv[0]);
		close(sv[1]);
		free(e);
		return ret;
	}
	e->fence = f;
	e->rfd = sv[0];
	e->wfd = sv[1];
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	f->sf = e;
	pthread_mutex_lock(&sf_lock);
	LIST_INSERT_HEAD(&sf_table, e, link);
	pthread_mutex_unlock(&sf_lock);
	if (atomic_load_explicit(&f->signaled, memory_order_relaxed))
		dmb_sf_signalled_locked(f);
	return 0;
}

DMABUF_EXPORT int dmabuf_sync_file_export(struct dmabuf_fence *f)
{
	int fd, ret = 0;

	if (!dmabuf_fence_get(f))
		return -EINVAL;
	pthread_mutex_lock(&f->lock);
	if (!f->sf)
		ret = sf_create_locked(f);
	fd = ret ? ret : fcntl(f->sf->rfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0 && !ret)
		fd = -errno;
	pthread_mutex_unlock(&f->lock);
	dmabuf_fence_put(f);
	return fd;
}

/* ---- import -------------------------------------------------------------- */

static const char *imp_driver_name(struct dmabuf_fence *f)
{
	return f->imp_driver;
}

static const char *imp_timeline_name(struct dmabuf_fence *f)
{
	return f->imp_timeline;
}

static const struct dmabuf_fence_ops imported_ops = {
	.get_driver_name = imp_driver_name,
	.get_timeline_name = imp_timeline_name,
};

DMABUF_EXPORT int dmabuf_sync_file_import(int fd, struct dmabuf_fence **out)
{
	struct dmabuf_fence *f, *found;
	struct dmb_sf_export *e;
	uint64_t context, seqno;
	struct stat st;
	long pid;
	int ret;

	if (!out)
		return -EINVAL;
	ret = sf_stat(fd, &st);
	if (ret)
		return ret;
	pthread_mutex_lock(&sf_lock);
	found = sf_lookup_locked(st.st_dev, st.st_ino);
	pthread_mutex_unlock(&sf_lock);
	if (found) {
		*out = found;
		return 0;
	}
	ret = sf_parse_name(fd, &context, &seqno, &pid);
	if (ret)
		return ret;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->rfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (e->rfd < 0) {
		ret = -errno;
		free(e);
		return ret;
	}
	e->wfd = -1;
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	ret = dmb_fence_create(&imported_ops, NULL, context, seqno,
			       DMB_FENCE_IMPORTED, &f);
	if (ret) {
		close(e->rfd);
		free(e);
		return ret;
	}
	snprintf(f->imp_driver, sizeof(f->imp_driver), "sync_file");
	snprintf(f->imp_timeline, sizeof(f->imp_timeline), "pid %ld", pid);
	e->fence = f;
	pthread_mutex_lock(&sf_lock);
	/* Another thread may have imported the same file meanwhile. */
	found = sf_lookup_locked(st.st_dev, st.st_ino);
	if (!found) {
		f->sf = e;
		LIST_INSERT_HEAD(&sf_table, e, link);
	}
	pthread_mutex_unlock(&sf_lock);
	if (found) {
		close(e->rfd);
		free(e);
		dmabuf_fence_put(f);
		*out = found;
		return 0;
	}
	dmb_sf_poll_imported(f, 0);
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

DMABUF_EXPORT int dmabuf_sync_file_wait(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t c, s;
	long pid;
	int ret;

	/* One syscall identifies it (the waiter's hot path): getsockname()
	 * fails with EBADF for a bad fd, and the name is ours or not. */
	if (fd < 0)
		return -EBADF;
	ret = sf_parse_name(fd, &c, &s, &pid);
	if (ret && fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	if (ret)
		return ret;
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
	ret = dmabuf_sync_file_import(fd, &f);
	if (ret)
		return ret;
	if (f->kind == DMB_FENCE_IMPORTED && dmabuf_fence_is_signaled(f) &&
	    f->sf->nchildren) {
		/* A merge signalled elsewhere: what its signaller reported. */
		n = f->sf->nchildren;
		for (unsigned int i = 0; i < n && i < max; i++)
			info[i] = f->sf->children[i];
	} else {
		n = dmb_fence_array_count(f);
		for (unsigned int i = 0; i < n && i < max; i++)
			fill_info(dmb_fence_array_child(f, i), &info[i]);
	}
	if (status)
		*status = dmabuf_fence_get_status(f);
	dmabuf_fence_put(f);
	return (int)n;
}
