/* SPDX-License-Identifier: MIT */
/*
 * Release detection: ops->release runs exactly once, after the last
 * reference, the last fd in any process, the last fd in flight and the last
 * mmap of the dma-buf file are gone.
 *
 * Every holder of the dma-buf file shares one OFD, which holds a shared
 * flock from the moment the file first leaves the library. The library
 * keeps one fd per buffer: the dma-buf file while it holds references,
 * then a private probe OFD of the same inode. A buffer whose file never
 * left the library is released by the last put at once: nobody else can
 * hold it. Otherwise the last put opens the probe OFD, arms a one-shot
 * inotify watch on the inode (IN_CLOSE_* fires when any OFD of it is
 * finally released, including by munmap of its last mapping), closes the
 * library's dma-buf fd and probes the probe OFD, which succeeds only when
 * the dma-buf OFD is gone: a read lease for a recyclable buffer (which no
 * holder can fool by dropping the shared flock: lease_probe()), else
 * flock(LOCK_EX | LOCK_NB). The watch is
 * armed before the library's fd goes, so the file's final close, which can
 * only come after it, is always seen. When the fds are usually closed
 * before the put, the put probes first and arms the watch only if the
 * probe fails (dmb_release_last_put()).
 *
 * One shot: the close event that ends the buffer also removes its watch
 * (IN_IGNORED follows in the same queue), so a release needs no
 * inotify_rm_watch and queues nothing more. A close event that does not end
 * it (another OFD of the inode went) is followed by IN_IGNORED, and the
 * watch is armed again then, before the next probe. A released buffer's
 * watch, if still armed, fires at the library's own close of the probe OFD
 * and goes with it.
 *
 * The kernel sends the close event from __fput() before it drops the file's
 * locks and its write access, so a probe that runs at once can lose that
 * race, and the closer
 * can be held up between the two for any time (preempted, stopped). A
 * failed probe after an event is therefore retried from the context's one
 * timerfd with a back-off per buffer: 1, 2, 4 ... ms, then every 1024 ms,
 * for as long as the buffer is an orphan (no give-up: the event that would
 * have told is spent). The waiting buffers are kept by back-off level, one
 * list pair per level, so a re-probe costs O(1) and the timer's next expiry
 * is the earliest of the levels' (reprobe_fire()).
 */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "private.h"
#include "sys.h"

#define REPROBE_NS 1000000 /* level 0's period; level k's is 2^k times it */

int dmb_release_sources(struct dmabuf_ctx *ctx)
{
	int ino, tfd, ret;

	dmb_assert_locked(ctx);
	if (ctx->inotify_fd >= 0)
		return 0;
	ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (ino < 0)
		return -errno;
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (tfd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = dmb_source_add(ctx, &ctx->inotify_src, ino, EPOLLIN, dmb_release_inotify, ctx);
	if (ret < 0)
		goto fail;
	ret = dmb_source_add(ctx, &ctx->reprobe_src, tfd, EPOLLIN, dmb_release_reprobe, ctx);
	if (ret < 0) {
		dmb_source_del(ctx, &ctx->inotify_src);
		goto fail;
	}
	ctx->inotify_fd = ino;
	ctx->reprobe_fd = tfd;
	return 0;
fail:
	if (tfd >= 0)
		close(tfd);
	close(ino);
	return ret;
}

/* Arms the one-shot watch of an orphan's inode (again). A watch still
 * armed is the same wd; one that has fired but is not gone yet is too, and
 * its IN_IGNORED then arms it once more. */
static int watch_arm(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	char path[64];
	int err, wd;

	if (buf->watch_kept)
		return 0;
	if ((err = dmb_sys_fail(DMB_SYS_INOTIFY_ADD_WATCH)))
		return -err;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", buf->probe_fd);
	/* A recyclable buffer's watch is persistent: it stays with the inode
	 * into the memfd's next life (recycle.c), whose release then arms
	 * none, and the kernel destroys no mark per release. */
	wd = inotify_add_watch(ctx->inotify_fd, path,
			       IN_CLOSE_WRITE | IN_CLOSE_NOWRITE |
			       (buf->recyclable ? 0 : IN_ONESHOT));
	if (wd < 0) {
		err = -errno;
		if (err == -ENOSPC)
			dmb_err(ctx, "no inotify watch left for buffer %s: raise fs.inotify.max_user_watches",
				buf->exp_name);
		return err;
	}
	if (buf->wd != wd) {
		if (buf->wd >= 0)
			RB_REMOVE(dmb_wd_tree, &ctx->by_wd, buf);
		buf->wd = wd;
		RB_INSERT(dmb_wd_tree, &ctx->by_wd, buf);
	}
	buf->watch_kept = buf->recyclable;
	return 0;
}

/* Forgets the watch; the kernel's side ends by itself (above). */
static void watch_forget(struct dmabuf *buf)
{
	if (buf->wd < 0)
		return;
	RB_REMOVE(dmb_wd_tree, &buf->ctx->by_wd, buf);
	buf->wd = -1;
	buf->watch_kept = false;
}

/* The probe OFD, opened from the dma-buf file if the buffer has none.
 * *opened tells whether this call made it. */
static int probe_open(struct dmabuf *buf, bool *opened)
{
	int fd;

	*opened = false;
	if (buf->probe_fd >= 0)
		return 0;
	/* Read-write so that it can also carry the library's mappings. */
	fd = dmb_backing_reopen_at(dmb_ctx_fd_dir(buf->ctx), buf->file_fd, O_RDWR);
	if (fd == -EACCES)
		fd = dmb_backing_reopen_at(dmb_ctx_fd_dir(buf->ctx), buf->file_fd, O_RDONLY);
	/* Out of fds: other buffers' spare fds go first, as at a hand-out;
	 * without a probe this buffer would stay until its context goes. */
	if (fd < 0 && dmb_buf_spares_drop(buf->ctx, fd))
		return probe_open(buf, opened);
	if (fd < 0)
		return fd;
	buf->probe_fd = fd;
	*opened = true;
	return 0;
}

int dmb_release_arm(struct dmabuf *buf)
{
	bool opened;
	int ret;

	ret = probe_open(buf, &opened);
	if (ret == 0)
		ret = watch_arm(buf);
	if (ret < 0 && opened) {
		close(buf->probe_fd);
		buf->probe_fd = -1;
	}
	return ret;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t level_period(unsigned int level)
{
	return (int64_t)REPROBE_NS << level;
}

/* The timer expires at the earliest level's time (absolute), or is
 * disarmed; a call only when that changes. O(DMB_REPROBE_LEVELS). */
static void timer_update(struct dmabuf_ctx *ctx)
{
	struct itimerspec its = { 0 };
	int64_t at = 0;

	for (unsigned int k = 0; k < DMB_REPROBE_LEVELS; k++) {
		int64_t t = ctx->reprobe[k].at_ns;

		if (t && (!at || t < at))
			at = t;
	}
	if (at == ctx->reprobe_timer_ns)
		return;
	ctx->reprobe_timer_ns = at;
	its.it_value.tv_sec = at / 1000000000;
	its.it_value.tv_nsec = at % 1000000000;
	timerfd_settime(ctx->reprobe_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Puts buf on level k, to be probed no sooner than one period from now
 * and before two: on the list probed at the level's time if that is at
 * least a period away, else on the one after it. */
static void level_add(struct dmabuf *buf, unsigned int k, int64_t now)
{
	struct dmb_reprobe_level *lv = &buf->ctx->reprobe[k];

	if (!lv->at_ns)
		lv->at_ns = now + level_period(k);
	if (lv->at_ns - now >= level_period(k))
		LIST_INSERT_HEAD(&lv->due, buf, reprobe_link);
	else
		LIST_INSERT_HEAD(&lv->next, buf, reprobe_link);
}

void dmb_release_cancel(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = buf->ctx;

	if (!buf->reprobe_queued)
		return;
	LIST_REMOVE(buf, reprobe_link);
	buf->reprobe_queued = false;
	if (--ctx->nreprobe)
		return; /* an emptied level finds nothing at its time */
	for (unsigned int k = 0; k < DMB_REPROBE_LEVELS; k++)
		ctx->reprobe[k].at_ns = 0;
	timer_update(ctx);
}

bool dmb_release_reprobe_soon(struct dmabuf_ctx *ctx)
{
	for (unsigned int k = 0; k < DMB_REPROBE_SETTLE_LEVELS; k++)
		if (!LIST_EMPTY(&ctx->reprobe[k].due) || !LIST_EMPTY(&ctx->reprobe[k].next))
			return true;
	return false;
}

/*
 * The probe of a recyclable buffer: a read lease on the memfd's own OFD,
 * given back at once. The kernel refuses it (check_conflicting_open():
 * -EAGAIN while inode_is_open_for_write()) while any file of the inode is
 * open for writing, and counts the memfd's own file as none
 * (alloc_file_pseudo() takes no write access), so it succeeds only when
 * the read-write dma-buf file is gone: no holder has an fd, an fd in
 * flight, a fork child's copy or a mapping of it (a mapping holds the
 * file). Unlike the flock, no holder can take that away from the kernel's
 * count (flock(fd, LOCK_UN) on the description every holder shares). The
 * probe fd of a recyclable buffer is always the memfd's own (spare_close()
 * ends recyclable), and a holder's description of its own that the lease
 * cannot see (O_RDONLY) ends it too (dmb_buf_get_ref()). Given back at
 * once: a lease held would stop the next open for writing (break_lease()).
 * 0, -EAGAIN (held), or another -errno: leases are off
 * (fs.leases-enable = 0: -EINVAL) or refused (fsuid not the owner:
 * -EACCES), and the flock answers instead. A lease that cannot be given
 * back goes with the memfd, which is then not kept.
 */
static int lease_probe(struct dmabuf *buf)
{
	int err = dmb_sys_fail(DMB_SYS_LEASE);

	if (err)
		return -err;
	if (fcntl(buf->probe_fd, F_SETLEASE, F_RDLCK) < 0)
		return -errno;
	if (fcntl(buf->probe_fd, F_SETLEASE, F_UNLCK) < 0)
		buf->recyclable = false;
	return 0;
}

/* True if the dma-buf file no longer exists: by the lease for a
 * recyclable buffer, else by flock (the probe OFD then holds the
 * exclusive lock; the buffer's memfd is not kept). */
static bool probe_free(struct dmabuf *buf)
{
	int ret;

	if (buf->state != DMB_BUF_ORPHAN || buf->probe_fd < 0 || dmb_sys_fail(DMB_SYS_PROBE))
		return false;
	if (buf->recyclable) {
		ret = lease_probe(buf);
		if (ret == 0)
			return true;
		if (ret == -EAGAIN)
			return false;
		dmb_dbg(buf->ctx, "buffer %s: no lease probe (%s): flock probes it, its memfd is not kept",
			buf->exp_name, strerror(-ret));
		buf->recyclable = false;
	}
	return flock(buf->probe_fd, LOCK_EX | LOCK_NB) == 0;
}

/* True (and the buffer is gone) if the dma-buf file no longer exists. */
static bool probe_at(struct dmabuf *buf, bool at_put)
{
	if (!probe_free(buf))
		return false;
	dmb_buf_release_unheld(buf, at_put);
	return true;
}

static bool probe(struct dmabuf *buf)
{
	return probe_at(buf, false);
}

void dmb_release_check(struct dmabuf *buf)
{
	probe(buf);
}

/* A probe of buf failed after an event that may have been its final
 * close: re-probe it from the timer, from the shortest period again (a
 * new close restarts the race). */
static void reprobe_queue(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = buf->ctx;

	if (buf->reprobe_queued) {
		LIST_REMOVE(buf, reprobe_link);
	} else {
		buf->reprobe_queued = true;
		ctx->nreprobe++;
	}
	level_add(buf, 0, now_ns());
	timer_update(ctx);
}

/*
 * The last put of a shared buffer, in one of two orders, picked by what the
 * context's previous such puts found:
 *  - the file was still held (a hand-off: the fd is out and closed later):
 *    arm the watch, drop the library's file, probe. 3 calls; the probe
 *    fails and the watch sees the final close, which can only come later.
 *  - it was not, PROBE_FIRST_AFTER times in a row (the fds are closed
 *    before the put): drop the file and probe first. A release then costs
 *    2 calls and no watch, so the close raises no event, the kernel
 *    destroys no mark (a kworker wake-up) and nothing wakes whoever waits
 *    on the context's fd. Only if the probe fails is the watch armed and
 *    the probe made again. A final close between the two probes can be
 *    missed by both: its event went before the watch, its lock may go
 *    after the second probe (__fput() order, above), so that buffer is
 *    re-probed from the timer.
 * One held file is enough to go back to the first order, and more than one
 * free one to leave it, so a workload that alternates pays for no guess; a
 * wrong guess costs a probe and the re-probes, never a release. Without a
 * probe OFD or a watch nothing could tell when the file is gone: the first
 * order keeps the file then, and the buffer stays until revived or the
 * context is destroyed.
 */
#define PROBE_FIRST_AFTER DMB_PROBE_FIRST_AFTER

static void put_found(struct dmabuf_ctx *ctx, bool freed)
{
	if (!freed)
		ctx->puts_freed = 0;
	else if (ctx->puts_freed < PROBE_FIRST_AFTER)
		ctx->puts_freed++;
}

void dmb_release_last_put(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	bool opened;
	int ret;

	if (ctx->puts_freed < PROBE_FIRST_AFTER) {
		ret = dmb_release_arm(buf);
		if (ret < 0) {
			dmb_err(ctx, "buffer %s: no release probe (%s): it stays until revived or the context is destroyed",
				buf->exp_name, strerror(-ret));
			return;
		}
		dmb_buf_drop_file(buf);
		/* Counted before the release: it decides whether the memfd is
		 * kept with its watch (recycle.c). */
		if (probe_free(buf)) {
			put_found(ctx, true);
			dmb_buf_release_unheld(buf, true);
		} else {
			put_found(ctx, false);
		}
		return;
	}
	ret = probe_open(buf, &opened);
	if (ret < 0) {
		dmb_err(ctx, "buffer %s: no release probe (%s): it stays until revived or the context is destroyed",
			buf->exp_name, strerror(-ret));
		return;
	}
	dmb_buf_drop_file(buf);
	if (probe_at(buf, true))
		return;
	put_found(ctx, false);
	if (watch_arm(buf) < 0)
		dmb_err(ctx, "buffer %s: its watch could not be armed: only re-probes can release it",
			buf->exp_name);
	if (!probe(buf))
		reprobe_queue(buf);
}

/* The watch of an orphan is gone (or may be): arm it, then probe, so no
 * final close falls between the two unseen. */
static void rearm_and_probe(struct dmabuf *buf)
{
	if (watch_arm(buf) < 0)
		dmb_err(buf->ctx, "buffer %s: its watch could not be armed again: only re-probes can release it",
			buf->exp_name);
	if (!probe(buf))
		reprobe_queue(buf);
}

/* The kernel dropped events (the queue holds 16384 by default): any
 * orphaned buffer may have lost its close event, so probe them all. */
static void lost_events(struct dmabuf_ctx *ctx)
{
	struct dmabuf *buf, *tmp;

	dmb_warn(ctx, "inotify queue overflowed: re-checking every orphaned buffer");
	RB_FOREACH_SAFE(buf, dmb_buf_tree, &ctx->by_inode, tmp)
		if (buf->state == DMB_BUF_ORPHAN && buf->probe_fd >= 0)
			rearm_and_probe(buf);
}

void dmb_release_inotify(struct dmb_source *src, uint32_t events)
{
	struct dmabuf_ctx *ctx = src->data;
	char evbuf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool overflow = false, again = true;
	ssize_t len;

	/* A read returns every queued event that fits, so one that leaves
	 * room for another event found the queue empty: read again only if
	 * it was full. A release queues nothing (its watch is gone or goes
	 * with the probe OFD). No read that only finds EAGAIN. */
	while (again && (len = read(ctx->inotify_fd, evbuf, sizeof(evbuf))) > 0) {
		again = (size_t)len > sizeof(evbuf) - sizeof(struct inotify_event) - NAME_MAX - 1;
		for (char *p = evbuf; p < evbuf + len;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			struct dmabuf key = { .wd = ev->wd }, *buf;

			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW)
				overflow = true;
			if (!(ev->mask & (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_IGNORED)))
				continue;
			buf = RB_FIND(dmb_wd_tree, &ctx->by_wd, &key);
			if (!buf)
				continue;
			if (ev->mask & IN_IGNORED) {
				/* The one shot has fired (handled at its event)
				 * and this wd is gone for good. */
				watch_forget(buf);
				if (buf->state == DMB_BUF_ORPHAN && buf->probe_fd >= 0)
					rearm_and_probe(buf);
			} else if (buf->state == DMB_BUF_ORPHAN && !probe(buf)) {
				reprobe_queue(buf);
			}
		}
	}
	if (overflow)
		lost_events(ctx);
}

/*
 * The levels whose time has come: each probes its `due` list, whose
 * buffers have waited at least its period, and those still held move one
 * level up (the last level keeps them), before the probe, so that a
 * release (which unlinks the buffer, and may release others through
 * ops->release) leaves nothing dangling. A buffer moved up is never
 * probed twice in one pass: its new level's time is at least a period
 * away, or it waits on that level's `next` list.
 */
void dmb_release_reprobe(struct dmb_source *src, uint32_t events)
{
	struct dmabuf_ctx *ctx = src->data;
	uint64_t ticks;
	ssize_t n;
	int64_t now;

	n = read(ctx->reprobe_fd, &ticks, sizeof(ticks));
	if (n < 0 && errno != EAGAIN)
		return;
	/* A one-shot timer that expired is disarmed; EAGAIN: a re-arm since
	 * cleared the expiry, and the timer stays as it was set. */
	if (n > 0)
		ctx->reprobe_timer_ns = 0;
	now = now_ns();
	for (unsigned int k = 0; k < DMB_REPROBE_LEVELS; k++) {
		struct dmb_reprobe_level *lv = &ctx->reprobe[k];
		unsigned int up = k + 1 < DMB_REPROBE_LEVELS ? k + 1 : k;
		LIST_HEAD(, dmabuf) batch;
		struct dmabuf *buf;

		if (!lv->at_ns || lv->at_ns > now)
			continue;
		LIST_INIT(&batch);
		if ((buf = LIST_FIRST(&lv->due))) {
			batch.lh_first = buf;
			buf->reprobe_link.le_prev = &batch.lh_first;
		}
		LIST_INIT(&lv->due);
		if ((buf = LIST_FIRST(&lv->next))) {
			lv->due.lh_first = buf;
			buf->reprobe_link.le_prev = &lv->due.lh_first;
		}
		LIST_INIT(&lv->next);
		lv->at_ns = LIST_EMPTY(&lv->due) ? 0 : now + level_period(k);
		while ((buf = LIST_FIRST(&batch))) {
			LIST_REMOVE(buf, reprobe_link);
			level_add(buf, up, now);
			probe(buf); /* released: unlinked by dmb_buf_release_now */
		}
	}
	if (ctx->nreprobe == 0)
		for (unsigned int k = 0; k < DMB_REPROBE_LEVELS; k++)
			ctx->reprobe[k].at_ns = 0;
	timer_update(ctx);
}

void dmb_buf_release_now(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = buf->ctx;

	dmb_release_cancel(buf);
	buf->state = DMB_BUF_RELEASED;
	/* Whoever still holds a CPU bracket, a vmap or an attachment lost it
	 * with the buffer: the kernel warns here too. Undo it, in the
	 * reverse of the usual order of making them, so the exporter's ops
	 * see a balanced sequence before release. */
	dmb_cpu_access_fini(buf);
	if (buf->nattachments)
		dmb_err(ctx, "buffer %s released with %u attachment(s) still attached",
			buf->exp_name, buf->nattachments);
	dmb_attachments_destroy_all(buf);
	watch_forget(buf);
	if (buf->published && dmb_remote() && dmb_remote()->released)
		dmb_remote()->released(buf);
	dmb_dbg(ctx, "release %s (ino %lu)", buf->exp_name, (unsigned long)buf->key.ino);
	DMB_OP(buf, release)(buf);
	ctx->stats.buffers_released++;
	dmb_buf_destroy(buf);
}
