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
 *
 * This file holds the file's identity (R's name, the table that maps R
 * back to its fence) and the ioctls on a sync-file fd; the exporting side,
 * the imported fence and the watcher thread are files of their own
 * (sync_file_private.h says which).
 */
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sync_file_private.h"

pthread_mutex_t dmb_sf_lock = PTHREAD_MUTEX_INITIALIZER;
struct sf_table_head dmb_sf_table = LIST_HEAD_INITIALIZER(dmb_sf_table);

/* ---- names and lookup ---------------------------------------------------- */

int dmb_sf_parse_name(int fd, struct sf_name *nm)
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

struct dmabuf_fence *dmb_sf_lookup_locked(dev_t dev, ino_t ino, const struct sf_name *nm)
{
	struct sf_key *k;

	LIST_FOREACH(k, &dmb_sf_table, link)
		if (k->dev == dev && k->ino == ino && k->pid == nm->pid &&
		    k->serial == nm->serial && dmb_fence_tryget(k->fence))
			return k->fence;
	return NULL;
}

/* ---- the names and status a sync file reports ---------------------------- */

/* snprintf(dst, DMABUF_SYNC_NAME_LEN, "%s", src) without stdio: on the
 * signalling path the two names of a record cost more than the rest of
 * the signal's user-space work together. Reads at most
 * DMABUF_SYNC_NAME_LEN - 1 bytes of src (a peer's record may lack the NUL). */
void dmb_sf_copy_name(char *dst, const char *src)
{
	size_t n = src ? strnlen(src, DMABUF_SYNC_NAME_LEN - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

void dmb_sf_fill_info(struct dmabuf_fence *f, struct dmabuf_sync_fence_info *i)
{
	memset(i, 0, sizeof(*i));
	i->status = dmabuf_fence_get_status(f);
	dmb_sf_copy_name(i->obj_name, f->ops->get_timeline_name(f));
	dmb_sf_copy_name(i->driver_name, f->ops->get_driver_name(f));
	i->context = f->context;
	i->seqno = f->seqno;
	if (i->status)
		i->timestamp_ns = f->timestamp;
}

/* ---- the ioctls on a sync file -------------------------------------------- */

/* The fence of fd for an ioctl on it: another kind of file has no such
 * ioctl (-ENOTTY). */
static int ioctl_fence(int fd, struct dmabuf_fence **f)
{
	int ret = dmabuf_sync_file_import(fd, f);

	return ret == -EINVAL ? -ENOTTY : ret;
}

DMABUF_EXPORT int dmabuf_sync_file_merge(int fd1, int fd2)
{
	struct dmabuf_fence *f[2] = { NULL, NULL }, *m;
	int ret;

	/* SYNC_IOC_MERGE is an ioctl on fd1. sync_file_ioctl_merge() then
	 * answers -ENOENT when sync_file_fdget(fd2) finds no sync file, a bad
	 * fd included. */
	ret = ioctl_fence(fd1, &f[0]);
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

	ret = ioctl_fence(fd, &f);
	if (ret)
		return ret;
	ret = dmabuf_fence_set_deadline(f, deadline_ns);
	dmabuf_fence_put(f);
	return ret;
}

DMABUF_EXPORT int dmabuf_sync_file_wait(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct dmb_sf_record rec;
	struct sf_name nm;
	int64_t end = timeout_ms > 0 ? dmb_now_ns() + (int64_t)timeout_ms * 1000000 : 0;
	ssize_t n = -1;
	bool shut = false;
	int ret, slice = 1;

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
	}
	ret = dmb_sf_parse_name(fd, &nm);
	if (ret)
		return ret;
	/* Ours: only its signaller writes into R, so any data is the signal,
	 * and EOF is one once sync_file_peer.c says so (W closed, or its
	 * status in W's name); with W open a holder shut R down, which R's
	 * readiness cannot tell from a signal any more: the wait sleeps in
	 * slices and looks again. */
	for (;;) {
		int left = timeout_ms;
		int error;
		int64_t ts;

		if (n > 0)
			return 1;
		if (n == 0) {
			/* Not known (no fd or memory for the question, none
			 * held by an import of this file): said, not taken
			 * as the signal. */
			ret = dmb_sf_eof_truth(fd, &error, &ts);
			if (ret)
				return ret;
			shut = true;
		}
		if (timeout_ms > 0) {
			int64_t l = (end - dmb_now_ns()) / 1000000;

			left = l > 0 ? (int)l : 0;
		}
		if (left == 0)
			return 0;
		if (shut) {
			poll(NULL, 0, left < 0 || left > slice ? slice : left);
			slice = slice * 2 > 64 ? 64 : slice * 2;
		} else {
			ret = poll(&p, 1, left);
			if (ret < 0 && errno != EINTR)
				return -errno;
			if (ret > 0 && (p.revents & POLLNVAL))
				return -EBADF;
		}
		do
			n = recv(fd, &rec, sizeof(rec), MSG_PEEK | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n < 0 && errno == EBADF)
			return -EBADF;
		/* ECONNRESET: W went with bytes unread in it, then EOF. */
		if (n < 0 && errno == ECONNRESET)
			n = 0;
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return 1; /* R polled ready and cannot be read: as poll() */
	}
}

/*
 * SYNC_IOC_FILE_INFO of a sync file this process cannot import for want
 * of an fd (its copy of R): the kernel's ioctl needs none, so the answer
 * comes from R itself, as an import's first look would have it. The
 * record, peeked (with a merge's fences), says signalled; nothing in R
 * says pending (one entry, from R's name, as an import reports it); EOF
 * is asked about (sync_file_peer.c), and a question that cannot be asked
 * is said (-errno), never taken as the signal.
 */
static int info_unimported(int fd, int *status, struct dmabuf_sync_fence_info *info,
			   unsigned int max)
{
	struct dmb_sf_record rec, *full = NULL;
	struct dmabuf_sync_fence_info one;
	struct sf_name nm;
	int ret, error = 0, st;
	int64_t ts = 0;
	unsigned int n = 1;
	ssize_t r;

	ret = dmb_sf_parse_name(fd, &nm);
	if (ret)
		return ret;
	memset(&one, 0, sizeof(one));
	snprintf(one.driver_name, sizeof(one.driver_name), "sync_file");
	snprintf(one.obj_name, sizeof(one.obj_name), "pid %ld", nm.pid);
	one.context = nm.context;
	one.seqno = nm.seqno;
	do
		r = recv(fd, &rec, sizeof(rec), MSG_PEEK | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r == (ssize_t)sizeof(rec) && rec.magic == SF_MAGIC && rec.error <= 0 &&
	    rec.error >= -4095 && rec.nchildren <= SF_MAX_CHILDREN) {
		size_t len = sizeof(rec) + rec.nchildren * sizeof(one);

		st = rec.error ? rec.error : 1;
		if (rec.nchildren && (full = malloc(len))) {
			do
				r = recv(fd, full, len, MSG_PEEK | MSG_DONTWAIT);
			while (r < 0 && errno == EINTR);
			if (r == (ssize_t)len) {
				n = rec.nchildren;
				for (unsigned int i = 0; i < n && i < max; i++)
					info[i] = ((struct dmabuf_sync_fence_info *)(full + 1))[i];
			}
			free(full);
			if (r == (ssize_t)len)
				goto done;
		}
		dmb_sf_copy_name(one.driver_name, rec.driver);
		dmb_sf_copy_name(one.obj_name, rec.timeline);
		one.status = st;
		one.timestamp_ns = rec.timestamp_ns;
	} else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		st = 0;
	} else if (r == 0 || (r < 0 && errno == ECONNRESET)) {
		ret = dmb_sf_eof_truth(fd, &error, &ts);
		if (ret < 0)
			return ret;
		st = ret ? (error ? error : 1) : 0;
		one.status = st;
		one.timestamp_ns = ret ? ts : 0;
	} else {
		/* bytes that are no record: as a signaller gone (import) */
		st = one.status = DMABUF_FENCE_ESIGNALLER;
		one.timestamp_ns = dmb_now_ns();
	}
	if (max)
		info[0] = one;
done:
	if (status)
		*status = st;
	return (int)n;
}

DMABUF_EXPORT int dmabuf_sync_file_info(int fd, int *status,
					struct dmabuf_sync_fence_info *info,
					unsigned int max)
{
	const struct dmabuf_sync_fence_info *children;
	struct dmabuf_fence *f;
	unsigned int n;
	int ret;

	if (max && !info)
		return -EINVAL;
	ret = ioctl_fence(fd, &f); /* SYNC_IOC_FILE_INFO */
	if (ret == -EMFILE || ret == -ENFILE)
		return info_unimported(fd, status, info, max);
	if (ret)
		return ret;
	n = dmb_sf_imported_children(f, &children);
	if (n) {
		/* A merge signalled elsewhere: what its signaller reported. */
		for (unsigned int i = 0; i < n && i < max; i++)
			info[i] = children[i];
	} else {
		n = dmb_fence_unwrap_count(f);
		for (unsigned int i = 0; i < n && i < max; i++)
			dmb_sf_fill_info(dmb_fence_unwrap_child(f, i), &info[i]);
	}
	if (status)
		*status = dmabuf_fence_get_status(f);
	dmabuf_fence_put(f);
	return (int)n;
}

/* ---- fork ------------------------------------------------------------------ */

static void sf_atfork_prepare(void)
{
	pthread_mutex_lock(&dmb_sf_lock);
}

static void sf_atfork_parent(void)
{
	pthread_mutex_unlock(&dmb_sf_lock);
}

static void sf_atfork_child(void)
{
	struct sf_key *k;

	dmb_sf_exports_forked();
	/* The parent's fences are copies here that nothing signals (the
	 * parent signals its own, the watcher is gone): a sync file the
	 * child imports is the shared file, learnt from R as any other
	 * process's, so none of them is found by its import. */
	while ((k = LIST_FIRST(&dmb_sf_table))) {
		LIST_REMOVE(k, link);
		k->keyed = false;
		/* Linked to itself: the LIST_REMOVE of its release touches
		 * nothing else. */
		k->link.le_next = NULL;
		k->link.le_prev = &k->link.le_next;
	}
	pthread_mutex_unlock(&dmb_sf_lock);
}

__attribute__((constructor)) static void sf_init(void)
{
	/* dmb_sf_lock is 8 in the lock order (docs/design.md §8), after the
	 * watcher's (6, sync_file_watcher.c) */
	dmb_fork_hook_add(8, sf_atfork_prepare, sf_atfork_parent, sf_atfork_child);
}
