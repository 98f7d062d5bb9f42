/* SPDX-License-Identifier: MIT */
/*
 * Readiness of dma-buf fds under the seccomp supervisor (docs/seccomp.md).
 *
 * A dma-buf fd is the buffer's memfd, which the kernel polls as a regular
 * file: always ready, and epoll_ctl() refuses it (EPERM). The kernel's
 * dma_buf_poll() answers from the fences instead: EPOLLIN once the writers
 * are done, EPOLLOUT once everyone is.
 *
 * poll, ppoll, select, pselect6: the supervisor looks at the fds (copies
 * taken with pidfd_getfd(), identity from the file); without a dma-buf
 * among them the kernel runs the call (CONTINUE). With one, the call is
 * answered in a thread of its own: the other fds are polled here through
 * their copies (the same open files, so the same readiness), the buffers'
 * readiness comes from their fences, and a busy buffer is waited for
 * through a sync file of its fences, so nothing spins. A sync file (a
 * socket here) among them is answered here too, as sync_file_poll():
 * POLLIN once its fence has signalled, else 0 (the socket's POLLOUT and
 * POLLHUP are not the sync file's); its socket ready is only the wake-up.
 *
 * epoll_ctl on a dma-buf fd: the registration is carried by a stand-in, an
 * eventfd with a count of 1 (always readable and writable) that the
 * supervisor adds to the program's own epoll set (a copy of its epoll fd)
 * with the program's flags and data and, as the event mask, the requested
 * EPOLLIN/EPOLLOUT that the fences allow. A watcher thread keeps the mask
 * up to date (EPOLL_CTL_MOD) as the fences signal, so the program's
 * epoll_wait() runs in the kernel, unnotified, and reports what
 * dma_buf_poll() would. The item goes with the program's EPOLL_CTL_DEL or
 * when the dma-buf file itself goes (its last fd, mapping and in-flight
 * reference in any process): the watcher sees the buffer's inode closed
 * (inotify) and then that the buffer's open file, which holds a shared
 * flock (see src/core/release.c), is gone.
 *
 * epoll_ctl on a sync file (a socket here, whose own events are EPOLLOUT
 * while pending and EPOLLIN|EPOLLHUP once signalled): the stand-in is an
 * eventfd with a count of 0, added with the program's flags, data and
 * events without EPOLLOUT; a callback on the fence (imported here: the
 * original when the supervisor exported it) writes the count to 1 when it
 * signals, once, so the set reports what sync_file_poll() would: nothing
 * while pending, EPOLLIN once signalled. Nothing of the program's file is
 * held, so its inode's close event comes with the file's last reference
 * (a socket has one open file): the item goes then, as the kernel's goes
 * in __fput().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kcmp.h>

#include <dmabuf-fence.h>
#include <dmabuf.h>

#include "core.h"
#include "reprobe.h"
#include "seccomp-int.h"

#define IO_EVENTS (EPOLLIN | EPOLLOUT)
/* poll()'s own limit is RLIMIT_NOFILE; more is left to the kernel. */
#define MAX_FDS 4096
/* A waiting call looks at whether the program still waits this often. */
#define SLICE_NS 100000000LL

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A sync file that signals when `events` of the dma-buf `fd` may have
 * become ready: the writers' fences for POLLIN, all of them for POLLOUT.
 * -errno when there is none to wait for. */
static int wait_fd(int fd, short events)
{
	struct dmabuf *buf;
	int ret;

	ret = dmb_uapi_get_buf(fd, &buf);
	if (ret)
		return ret;
	ret = dmabuf_export_sync_file(buf, events & POLLIN ? DMABUF_SYNC_READ : DMABUF_SYNC_WRITE);
	dmabuf_put(buf);
	return ret;
}

/* ---- poll and select ------------------------------------------------------- */

struct pwait {
	int n;			/* entries */
	struct pollfd *fds;	/* the program's array (fd, events) */
	int *copy;		/* the supervisor's copy of each fd, or -1 */
	bool *dmabuf;
	bool *sync;		/* a sync file (sync_file_poll()'s readiness) */
	bool *shut;		/* a sync file whose socket is ready unsignalled */
	int64_t deadline;	/* CLOCK_MONOTONIC ns, -1: none */
	int nr;			/* the syscall */
	/* select: the program's sets and how many bits */
	int nbits;
	uint64_t sets[3];
};

static void pwait_free(struct pwait *w)
{
	int i;

	for (i = 0; i < w->n; i++)
		if (w->copy[i] >= 0)
			close(w->copy[i]);
	free(w->fds);
	free(w->copy);
	free(w->dmabuf);
	free(w->sync);
	free(w->shut);
	free(w);
}

/* Fetches every fd of the call; true if a dma-buf or a sync file is among
 * them (the kernel would poll a sync file's socket: POLLOUT while pending,
 * POLLHUP once signalled, which sync_file_poll() never reports). */
static bool pwait_fetch(struct call *c, struct pwait *w)
{
	bool any = false;
	int i;

	for (i = 0; i < w->n; i++) {
		w->copy[i] = -1;
		if (w->fds[i].fd < 0)
			continue;
		w->copy[i] = dmb_sec_get_fd(c, w->fds[i].fd);
		if (w->copy[i] < 0)
			continue;
		switch (dmb_uapi_classify(w->copy[i])) {
		case DMB_UAPI_DMABUF:
			w->dmabuf[i] = any = true;
			break;
		case DMB_UAPI_SYNC_FILE:
			w->sync[i] = any = true;
			break;
		default:
			break;
		}
	}
	return any;
}

static struct pwait *pwait_new(int n)
{
	struct pwait *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->n = n;
	w->fds = calloc((size_t)n + 1, sizeof(*w->fds));
	w->copy = calloc((size_t)n + 1, sizeof(*w->copy));
	w->dmabuf = calloc((size_t)n + 1, sizeof(*w->dmabuf));
	w->sync = calloc((size_t)n + 1, sizeof(*w->sync));
	w->shut = calloc((size_t)n + 1, sizeof(*w->shut));
	if (!w->fds || !w->copy || !w->dmabuf || !w->sync || !w->shut) {
		free(w->fds);
		free(w->copy);
		free(w->dmabuf);
		free(w->sync);
		free(w->shut);
		free(w);
		return NULL;
	}
	return w;
}

/* A timespec of the program: deadline, or false if it is to be left to
 * the kernel (unreadable, invalid). */
static bool read_timespec(struct call *c, uint64_t uts, int64_t *deadline)
{
	struct timespec ts;

	*deadline = -1;
	if (!uts)
		return true;
	if (c->io.copy_in(&c->io, &ts, uts, sizeof(ts)) || ts.tv_sec < 0 || ts.tv_nsec < 0 ||
	    ts.tv_nsec >= 1000000000)
		return false;
	*deadline = now_ns() + (ts.tv_sec > INT32_MAX ? (int64_t)INT32_MAX * 1000000000
						      : (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
	return true;
}

/* The signal mask of ppoll (uss, its size) is readable and of the
 * kernel's size, as set_user_sigmask() wants; false if it is to be left
 * to the kernel (its EFAULT or EINVAL). The mask itself is not applied
 * here. */
static bool sigmask_ok(struct call *c, uint64_t uss, uint64_t size)
{
	uint64_t mask;

	return !uss || (size == sizeof(mask) && !c->io.copy_in(&c->io, &mask, uss, sizeof(mask)));
}

/* pselect6's sixth argument, { mask, size }, as get_sigset_argpack()
 * reads it. */
static bool sigpack_ok(struct call *c, uint64_t upack)
{
	uint64_t pack[2];

	if (!upack)
		return true;
	return !c->io.copy_in(&c->io, pack, upack, sizeof(pack)) && sigmask_ok(c, pack[0], pack[1]);
}

/* select's sets as poll entries: POLLIN_SET, POLLOUT_SET, POLLEX_SET of
 * fs/select.c ask for these events. */
#define SEL_IN (POLLIN | POLLRDNORM | POLLRDBAND)
#define SEL_OUT (POLLOUT | POLLWRNORM | POLLWRBAND)
#define SEL_EX POLLPRI

static struct pwait *select_read(struct call *c)
{
	const struct seccomp_data *d = &c->n->data;
	int nbits = (int)d->args[0], i, k, n = 0;
	size_t words;
	uint64_t *bits[3] = { 0 };
	struct timeval tv;
	struct pwait *w = NULL;
	int64_t deadline = -1;
	bool ok = true;

	if (nbits < 0 || nbits > MAX_FDS)
		return NULL;
	words = ((size_t)nbits + 63) / 64;
	for (k = 0; k < 3 && ok; k++) {
		if (!d->args[1 + k] || !words)
			continue;
		bits[k] = calloc(words, 8);
		ok = bits[k] && !c->io.copy_in(&c->io, bits[k], d->args[1 + k], words * 8);
	}
	if (ok && d->nr == __NR_select && d->args[4]) {
		ok = !c->io.copy_in(&c->io, &tv, d->args[4], sizeof(tv)) && tv.tv_sec >= 0 &&
		     tv.tv_usec >= 0 && tv.tv_usec < 1000000;
		if (ok)
			deadline = now_ns() + (tv.tv_sec > INT32_MAX
						       ? (int64_t)INT32_MAX * 1000000000
						       : (int64_t)tv.tv_sec * 1000000000 +
								 (int64_t)tv.tv_usec * 1000);
	} else if (ok && d->nr == __NR_pselect6) {
		ok = read_timespec(c, d->args[4], &deadline) && sigpack_ok(c, d->args[5]);
	}
	for (i = 0; ok && i < nbits; i++)
		for (k = 0; k < 3; k++)
			if (bits[k] && (bits[k][i / 64] >> (i % 64)) & 1) {
				n++;
				break;
			}
	if (ok)
		w = pwait_new(n);
	for (i = 0, n = 0; w && i < nbits; i++) {
		short ev = 0;

		for (k = 0; k < 3; k++)
			if (bits[k] && (bits[k][i / 64] >> (i % 64)) & 1)
				ev |= k == 0 ? SEL_IN : k == 1 ? SEL_OUT : SEL_EX;
		if (ev)
			w->fds[n++] = (struct pollfd){ .fd = i, .events = ev };
	}
	if (w) {
		w->nbits = nbits;
		w->deadline = deadline;
		for (k = 0; k < 3; k++)
			w->sets[k] = bits[k] ? d->args[1 + k] : 0;
	}
	for (k = 0; k < 3; k++)
		free(bits[k]);
	return w;
}

static struct pwait *poll_read(struct call *c)
{
	const struct seccomp_data *d = &c->n->data;
	uint64_t nfds = d->args[1];
	struct pwait *w;
	int64_t deadline = -1;

	if (nfds > MAX_FDS)
		return NULL;
	if (d->nr == __NR_poll) {
		if ((int)d->args[2] >= 0)
			deadline = now_ns() + (int64_t)(int)d->args[2] * 1000000;
	} else if (!read_timespec(c, d->args[2], &deadline) || !sigmask_ok(c, d->args[3], d->args[4])) {
		return NULL;
	}
	w = pwait_new((int)nfds);
	if (!w)
		return NULL;
	if (nfds && c->io.copy_in(&c->io, w->fds, d->args[0], nfds * sizeof(*w->fds))) {
		pwait_free(w);
		return NULL;
	}
	w->deadline = deadline;
	return w;
}

/* One look at every fd: fills revents, returns how many are ready (or
 * -ENOMEM). When none is, waits up to wait_ns for one to change. */
static int pwait_look(struct pwait *w, int64_t wait_ns)
{
	struct pollfd *p = calloc((size_t)w->n * 2 + 1, sizeof(*p));
	int *map = calloc((size_t)w->n * 2 + 1, sizeof(*map));
	int i, np = 0, ready = 0, t;
	bool look_again = false;

	if (!p || !map) {
		free(p);
		free(map);
		return -ENOMEM;
	}
	for (i = 0; i < w->n; i++) {
		w->fds[i].revents = 0;
		if (w->fds[i].fd < 0)
			continue;
		if (w->copy[i] < 0) {
			w->fds[i].revents = POLLNVAL;
			ready++;
		} else if (w->dmabuf[i]) {
			w->fds[i].revents = dmb_uapi_poll_events(w->copy[i], DMB_UAPI_DMABUF,
								 w->fds[i].events);
			if (w->fds[i].revents) {
				ready++;
			} else if (wait_ns) {
				int sf = wait_fd(w->copy[i], w->fds[i].events);

				if (sf >= 0) {
					map[np] = -1;
					p[np++] = (struct pollfd){ .fd = sf, .events = POLLIN };
				}
			}
		} else if (w->sync[i]) {
			/* sync_file_poll(): EPOLLIN once signalled, else 0; a
			 * poll without POLLIN never sees anything of it. */
			if (!(w->fds[i].events & POLLIN))
				continue;
			if (w->shut[i]) {
				/* Its socket is ready for good (a holder's
				 * shutdown()): the state is looked at every
				 * millisecond. */
				w->fds[i].revents = dmb_uapi_poll_events(w->copy[i],
									 DMB_UAPI_SYNC_FILE, POLLIN);
				ready += w->fds[i].revents != 0;
				look_again = true;
				continue;
			}
			map[np] = i;
			p[np++] = (struct pollfd){ .fd = w->copy[i], .events = POLLIN };
		} else {
			map[np] = i;
			p[np++] = (struct pollfd){ .fd = w->copy[i], .events = w->fds[i].events };
		}
	}
	t = ready || !wait_ns ? 0 : (int)((wait_ns + 999999) / 1000000);
	if (look_again && t > 1)
		t = 1;
	if (poll(p, (nfds_t)np, t) > 0)
		for (i = 0; i < np; i++) {
			int k = map[i];

			if (k < 0 || !p[i].revents)
				continue;
			if (w->sync[k]) {
				/* The socket ready is a wake-up; the answer
				 * is the fence's state, POLLIN alone. */
				w->fds[k].revents = dmb_uapi_poll_events(w->copy[k],
									 DMB_UAPI_SYNC_FILE, POLLIN);
				if (!w->fds[k].revents) {
					w->shut[k] = true;
					continue;
				}
			} else {
				w->fds[k].revents = p[i].revents;
			}
			ready++;
		}
	for (i = 0; i < np; i++)
		if (map[i] < 0)
			close(p[i].fd);
	free(p);
	free(map);
	return ready;
}

/* The remaining time written back, as the kernel's poll_select_finish(). */
static void write_left(struct call *c, struct pwait *w)
{
	const struct seccomp_data *d = &c->n->data;
	int64_t left = w->deadline < 0 ? -1 : w->deadline - now_ns();
	uint64_t uaddr = d->nr == __NR_ppoll ? d->args[2] : d->args[4];

	if (left < 0 || d->nr == __NR_poll || !uaddr)
		return;
	if (d->nr == __NR_select) {
		struct timeval tv = { left / 1000000000, left % 1000000000 / 1000 };

		(void)c->io.copy_out(&c->io, uaddr, &tv, sizeof(tv));
	} else {
		struct timespec ts = { left / 1000000000, left % 1000000000 };

		(void)c->io.copy_out(&c->io, uaddr, &ts, sizeof(ts));
	}
}

/* The result in the program's memory; returns the call's result. */
static long pwait_answer(struct call *c, struct pwait *w, int ready)
{
	const struct seccomp_data *d = &c->n->data;
	size_t words = ((size_t)w->nbits + 63) / 64;
	uint64_t *bits[3] = { 0 };
	long res = ready;
	int i, k;

	if (d->nr == __NR_poll || d->nr == __NR_ppoll) {
		if (w->n && c->io.copy_out(&c->io, d->args[0], w->fds, (size_t)w->n * sizeof(*w->fds)))
			return -EFAULT;
		write_left(c, w);
		return res;
	}
	/* select: a bad fd in a set fails the whole call. */
	for (i = 0; i < w->n; i++)
		if (w->fds[i].revents & POLLNVAL)
			return -EBADF;
	for (k = 0; k < 3; k++)
		if (w->sets[k] && words && !(bits[k] = calloc(words, 8)))
			res = -ENOMEM;
	for (i = 0, ready = 0; res >= 0 && i < w->n; i++) {
		short r = w->fds[i].revents, ev = w->fds[i].events;
		int fd = w->fds[i].fd;
		uint64_t bit = 1ull << (fd % 64);

		if (bits[0] && (ev & SEL_IN) && (r & (SEL_IN | POLLHUP | POLLERR)))
			bits[0][fd / 64] |= bit, ready++;
		if (bits[1] && (ev & SEL_OUT) && (r & (SEL_OUT | POLLERR)))
			bits[1][fd / 64] |= bit, ready++;
		if (bits[2] && (ev & SEL_EX) && (r & SEL_EX))
			bits[2][fd / 64] |= bit, ready++;
	}
	for (k = 0; res >= 0 && k < 3; k++)
		if (bits[k] && c->io.copy_out(&c->io, w->sets[k], bits[k], words * 8))
			res = -EFAULT;
	for (k = 0; k < 3; k++)
		free(bits[k]);
	if (res >= 0) {
		res = ready;
		write_left(c, w);
	}
	return res;
}

static void pwait_run(struct call *c, void *arg)
{
	struct pwait *w = arg;
	int ready;

	for (;;) {
		int64_t left = w->deadline < 0 ? SLICE_NS : w->deadline - now_ns();

		if (left < 0)
			left = 0;
		if (left > SLICE_NS)
			left = SLICE_NS;
		ready = pwait_look(w, left);
		if (ready != 0 || (w->deadline >= 0 && now_ns() >= w->deadline))
			break;
		/* A signal took the program out of its call (it is restarted
		 * as a new notification, or returns EINTR): nobody waits. */
		if (!dmb_sec_valid(c)) {
			pwait_free(w);
			return;
		}
	}
	if (dmb_uapi_config()->trace)
		dmb_uapi_trace("[seccomp %u] syscall %d on %d fds with a dma-buf or sync file = %d", c->n->pid,
			       c->n->data.nr, w->n, ready);
	dmb_sec_reply(c, false, ready < 0 ? ready : pwait_answer(c, w, ready));
	pwait_free(w);
}

bool dmb_sec_poll(struct call *c)
{
	int nr = c->n->data.nr, ready;
	struct pwait *w;

	w = nr == __NR_poll || nr == __NR_ppoll ? poll_read(c) : select_read(c);
	if (!w) {
		/* Not ours to judge (bad pointers, sizes, timeouts): the
		 * kernel answers, with its errno. */
		dmb_sec_reply(c, true, 0);
		return false;
	}
	w->nr = nr;
	if (!pwait_fetch(c, w) || !dmb_sec_valid(c)) {
		pwait_free(w);
		dmb_sec_reply(c, true, 0);
		return false;
	}
	/* Ready now (or no time to wait): answered in line; otherwise the
	 * call waits in a thread of its own. */
	ready = pwait_look(w, 0);
	if (ready != 0 || (w->deadline >= 0 && w->deadline <= now_ns())) {
		dmb_sec_reply(c, false, ready < 0 ? ready : pwait_answer(c, w, ready));
		pwait_free(w);
		return false;
	}
	if (dmb_sec_defer(c, pwait_run, w))
		return true;
	pwait_run(c, w);
	return false;
}

/* ---- epoll -------------------------------------------------------------------- */

struct reg {
	int epfd;		/* the supervisor's copy of the program's set */
	dev_t ep_dev;		/* the set's inode */
	ino_t ep_ino;
	int ufd;		/* the program's fd number (the kernel's key) */
	dev_t dev;		/* the buffer's inode */
	ino_t ino;
	int own;		/* an open file of the buffer's inode of our own */
	int wd;			/* inotify watch of the inode */
	int standin;		/* the eventfd in the set */
	int sf;			/* sync file waited for while busy, or -1 */
	uint32_t events;	/* the program's, EPOLLEXCLUSIVE removed */
	bool exclusive;
	bool fired;		/* EPOLLONESHOT reported: disabled until MOD */
	uint32_t set;		/* the IO bits in the item's mask now */
	uint64_t data;		/* the program's, given back untouched */
	/* After a close event: probe at the watcher's next pass (probe_now),
	 * then again with a back-off (reprobe.h) for as long as it takes, as
	 * the kernel sends the event before it drops the file's locks. */
	struct dmb_uapi_reprobe reprobe;
	bool probe_now;
	/* A sync file's: its fence and the callback that writes the
	 * stand-in's count (fence NULL for a dma-buf). */
	struct dmabuf_fence *fence;
	struct dmabuf_fence_cb cb;
	struct reg *next;
};

/* A sw_sync timeline the program opened: its pending fences signal with
 * -ENOENT when the program's file of it goes (close is not notified). */
struct tlw {
	dev_t dev;
	ino_t ino;
	int own;		/* our own open file of the inode (no lock) */
	int wd;
	struct dmb_uapi_reprobe reprobe; /* as a reg's */
	bool probe_now;
	struct tlw *next;
};

static pthread_mutex_t regs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reg *regs;
static struct tlw *tlws;
/* The re-probes of regs and of tlws, under regs_lock. */
static struct dmb_uapi_reprobes reg_reprobes, tlw_reprobes;
static int inotify_fd = -1, wake_fd = -1;
static bool watcher_started;

static int set_mask(struct reg *r, int op, uint32_t ready)
{
	struct epoll_event ev = { .events = (r->events & ~(uint32_t)IO_EVENTS) | ready,
				  .data.u64 = r->data };

	/* A sync file's stand-in reports by its count: the program's EPOLLIN
	 * (never EPOLLOUT, which the eventfd would report). */
	if (r->fence)
		ev.events = r->events & ~(uint32_t)EPOLLOUT;
	/* dma_buf_poll() wakes the file's waiters itself when it adds no
	 * fence callback (dma_buf_poll_cb()), and once a fence's callback
	 * ran the next look adds none: an edge-triggered item of a buffer is
	 * queued again at every look once ready, as a level-triggered one. */
	else
		ev.events &= ~(uint32_t)EPOLLET;

	if (epoll_ctl(r->epfd, op, r->standin, &ev) < 0)
		return -errno;
	r->set = ready;
	return 0;
}

/* The set disabled a one-shot item after reporting it: its mask has no
 * event left (fs/eventpoll.c keeps only EP_PRIVATE_BITS), which the
 * set's fdinfo shows. */
static bool oneshot_fired(struct reg *r)
{
	char path[64], line[256];
	unsigned int events;
	bool fired = false;
	FILE *f;
	int tfd;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", r->epfd);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "tfd: %d events: %x", &tfd, &events) == 2 && tfd == r->standin) {
			fired = !(events & IO_EVENTS);
			break;
		}
	fclose(f);
	return fired;
}

/*
 * Readiness of a registration's buffer. `own` is our own open file of the
 * inode: the core revives an orphaned buffer from it and makes it a holder
 * of the dma-buf file (a shared flock). That must not outlive the look, or
 * the file would never be seen to go: the reference is dropped and the
 * lock taken off again.
 */
static uint32_t reg_ready(struct reg *r, uint32_t want)
{
	uint32_t ready = (uint32_t)dmb_uapi_poll_events(r->own, DMB_UAPI_DMABUF, (short)want) & want;

	dmb_uapi_unhold_own();
	flock(r->own, LOCK_UN);
	return ready;
}

static int reg_wait_fd(struct reg *r, short events)
{
	int sf = wait_fd(r->own, events);

	dmb_uapi_unhold_own();
	flock(r->own, LOCK_UN);
	return sf;
}

/* Brings a registration up to date with the fences. Under regs_lock. */
static void refresh(struct reg *r)
{
	uint32_t want = r->events & IO_EVENTS, ready;
	struct pollfd p;

	if (r->fired || r->fence)
		return;
	ready = reg_ready(r, want);
	if (ready != r->set) {
		if ((r->events & EPOLLONESHOT) && r->set && oneshot_fired(r)) {
			r->fired = true;
			ready = want; /* nothing to wait for until the program's MOD */
		} else {
			set_mask(r, EPOLL_CTL_MOD, ready);
		}
	}
	if (r->sf >= 0) {
		p = (struct pollfd){ .fd = r->sf, .events = POLLIN };
		if (ready == want || poll(&p, 1, 0) != 0) {
			close(r->sf);
			r->sf = -1;
		}
	}
	if (ready != want && r->sf < 0) {
		int sf = reg_wait_fd(r, (short)(want & ~ready));

		r->sf = sf >= 0 ? sf : -1;
	}
}

static void wake_watcher(void)
{
	uint64_t one = 1;

	if (wake_fd >= 0)
		(void)!write(wake_fd, &one, sizeof(one));
}

static void drop(struct reg **pp, bool del)
{
	struct reg *r = *pp, *o;
	bool shared = false;

	*pp = r->next;
	dmb_uapi_reprobe_cancel(&reg_reprobes, &r->reprobe);
	if (del)
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, r->standin, NULL);
	/* inotify gives one watch per inode: keep it while another
	 * registration of the buffer needs it. */
	for (o = regs; o; o = o->next)
		shared |= o->wd == r->wd;
	for (struct tlw *t = tlws; t; t = t->next)
		shared |= t->wd == r->wd;
	if (!shared && r->wd >= 0)
		inotify_rm_watch(inotify_fd, r->wd);
	if (r->fence) {
		/* Once removed (or run to its end) the callback no longer
		 * writes the stand-in. */
		dmabuf_fence_remove_callback(r->fence, &r->cb);
		dmabuf_fence_put(r->fence);
	}
	if (r->standin >= 0)
		close(r->standin);
	if (r->own >= 0)
		close(r->own);
	close(r->epfd);
	if (r->sf >= 0)
		close(r->sf);
	free(r);
}

/* True if the buffer's file is gone: no open file holds its shared lock. */
static bool buffer_gone(struct reg *r)
{
	/* A sync file's inode has one open file: its close event is the
	 * file's release. */
	if (r->fence)
		return true;
	if (flock(r->own, LOCK_EX | LOCK_NB) < 0)
		return false;
	flock(r->own, LOCK_UN);
	return true;
}

static bool tl_shares_wd(int wd)
{
	struct tlw *t;
	struct reg *r;

	for (t = tlws; t; t = t->next)
		if (t->wd == wd)
			return true;
	for (r = regs; r; r = r->next)
		if (r->wd == wd)
			return true;
	return false;
}

/* After close events: a timeline whose program file is gone (no open file
 * holds its shared lock) is closed for the core, which signals its
 * pending fences. Under regs_lock. */
static void timelines_probe(void)
{
	struct tlw **pp, *t;

	for (pp = &tlws; (t = *pp);) {
		if (!t->probe_now) {
			pp = &t->next;
			continue;
		}
		t->probe_now = false;
		dmb_uapi_closed(DMB_UAPI_SW_SYNC, t->dev, t->ino);
		if (flock(t->own, LOCK_EX | LOCK_NB) < 0) {
			pp = &t->next;
			continue;
		}
		flock(t->own, LOCK_UN);
		/* Gone; the core's own probe may have run just before the
		 * last lock went: once more. */
		dmb_uapi_closed(DMB_UAPI_SW_SYNC, t->dev, t->ino);
		*pp = t->next;
		dmb_uapi_reprobe_cancel(&tlw_reprobes, &t->reprobe);
		if (!tl_shares_wd(t->wd))
			inotify_rm_watch(inotify_fd, t->wd);
		close(t->own);
		free(t);
	}
}

/* poll()'s timeout: the earlier of the two queues' (-1: none). */
static int reprobe_timeout(void)
{
	int a = dmb_uapi_reprobe_timeout(&reg_reprobes), b = dmb_uapi_reprobe_timeout(&tlw_reprobes);

	return a < 0 ? b : b < 0 || a < b ? a : b;
}

/* The re-probes whose time has come are probed in this pass, each O(1);
 * those still there stay queued, one level up. Under regs_lock. */
static void reprobe_due(void)
{
	struct dmb_uapi_reprobe *it;

	dmb_uapi_reprobe_begin(&reg_reprobes);
	while ((it = dmb_uapi_reprobe_pop(&reg_reprobes)))
		dmb_uapi_reprobe_of(it, struct reg, reprobe)->probe_now = true;
	dmb_uapi_reprobe_begin(&tlw_reprobes);
	while ((it = dmb_uapi_reprobe_pop(&tlw_reprobes)))
		dmb_uapi_reprobe_of(it, struct tlw, reprobe)->probe_now = true;
}

static void *watcher(void *arg)
{
	char evbuf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct pollfd *p = NULL;
	struct reg *r, **pp;
	size_t cap = 0, np;
	int timeout;

	(void)arg;
	for (;;) {
		pthread_mutex_lock(&regs_lock);
		np = 2;
		for (r = regs; r; r = r->next)
			np += r->sf >= 0;
		timeout = reprobe_timeout();
		if (np > cap) {
			struct pollfd *grown = realloc(p, np * sizeof(*p));

			if (grown)
				p = grown, cap = np;
		}
		if (p) {
			p[0] = (struct pollfd){ .fd = wake_fd, .events = POLLIN };
			p[1] = (struct pollfd){ .fd = inotify_fd, .events = POLLIN };
			np = 2;
			for (r = regs; r && np < cap; r = r->next)
				if (r->sf >= 0)
					p[np++] = (struct pollfd){ .fd = r->sf, .events = POLLIN };
		}
		pthread_mutex_unlock(&regs_lock);
		if (!p) {
			usleep(1000);
			continue;
		}
		if (poll(p, (nfds_t)np, timeout) < 0 && errno != EINTR)
			usleep(1000);
		if (p[0].revents) {
			uint64_t v;

			(void)!read(wake_fd, &v, sizeof(v));
		}
		pthread_mutex_lock(&regs_lock);
		if (p[1].revents) {
			ssize_t len;

			while ((len = read(inotify_fd, evbuf, sizeof(evbuf))) > 0)
				for (char *e = evbuf; e < evbuf + len;) {
					struct inotify_event *ev = (struct inotify_event *)e;

					e += sizeof(*ev) + ev->len;
					/* An overflow says nothing of a sync file
					 * (it has no lock to probe): only its own
					 * event drops its item. */
					for (r = regs; r; r = r->next)
						if (r->wd == ev->wd ||
						    ((ev->mask & IN_Q_OVERFLOW) && !r->fence)) {
							r->probe_now = true;
							dmb_uapi_reprobe_queue(&reg_reprobes, &r->reprobe);
						}
					for (struct tlw *t = tlws; t; t = t->next)
						if (t->wd == ev->wd || (ev->mask & IN_Q_OVERFLOW)) {
							t->probe_now = true;
							dmb_uapi_reprobe_queue(&tlw_reprobes, &t->reprobe);
						}
				}
		}
		reprobe_due();
		timelines_probe();
		for (pp = &regs; (r = *pp);) {
			if (r->probe_now) {
				r->probe_now = false;
				if (buffer_gone(r)) {
					drop(pp, true);
					continue;
				}
			}
			refresh(r);
			pp = &r->next;
		}
		pthread_mutex_unlock(&regs_lock);
	}
	return NULL;
}

/* Under regs_lock. */
static int start_watcher(void)
{
	pthread_attr_t attr;
	pthread_t t;
	int ret;

	if (watcher_started)
		return 0;
	if (inotify_fd < 0)
		inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (wake_fd < 0)
		wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (inotify_fd < 0 || wake_fd < 0)
		return -errno;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&t, &attr, watcher, NULL);
	pthread_attr_destroy(&attr);
	if (ret)
		return -ret;
	watcher_started = true;
	return 0;
}

static bool is_epoll(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	return !strcmp(link, "anon_inode:[eventpoll]");
}

/* True if fds a and b of this process are one open file. Every epoll set
 * is the same anonymous inode, so the inode cannot tell two sets apart;
 * without kcmp() (CONFIG_KCMP) the inode is all there is. */
static bool same_file(int a, int b)
{
	pid_t pid = getpid();
	long ret = syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);

	return ret == 0 || (ret < 0 && (errno == ENOSYS || errno == EPERM));
}

static struct reg *find(int epfd, const struct stat *est, int ufd, const struct stat *st)
{
	struct reg *r;

	for (r = regs; r; r = r->next)
		if (r->ep_ino == est->st_ino && r->ep_dev == est->st_dev && r->ufd == ufd &&
		    r->ino == st->st_ino && r->dev == st->st_dev && same_file(r->epfd, epfd))
			return r;
	return NULL;
}

/* A record of the item `ufd` with @ev in the set `epfd` (both consumed by
 * the caller's add: on -ENOMEM here, @fd and @epfd are closed). */
static struct reg *new_reg(int epfd, const struct stat *est, int ufd, int fd,
			   const struct stat *st, const struct epoll_event *ev)
{
	struct reg *r = calloc(1, sizeof(*r));

	if (!r) {
		close(fd);
		close(epfd);
		return NULL;
	}
	*r = (struct reg){ .epfd = epfd, .ep_dev = est->st_dev, .ep_ino = est->st_ino, .ufd = ufd,
			   .dev = st->st_dev, .ino = st->st_ino, .own = -1, .wd = -1, .sf = -1,
			   .events = ev->events & ~(uint32_t)EPOLLEXCLUSIVE,
			   .exclusive = ev->events & EPOLLEXCLUSIVE, .data = ev->data.u64 };
	return r;
}

/* The close events of the inode of @fd, for @r: 0, -ENOSPC (the
 * watches' limit), else -ENOMEM. */
static int watch_inode(struct reg *r, int fd)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r->wd = inotify_add_watch(inotify_fd, path, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE);
	if (r->wd < 0)
		return errno == ENOSPC ? -ENOSPC : -ENOMEM;
	return 0;
}

/* A new registration of the buffer `fd` (consumed) in the set `epfd`
 * (consumed). Under regs_lock. */
static int add(int epfd, const struct stat *est, int ufd, int fd, const struct stat *st,
	       const struct epoll_event *ev)
{
	struct reg *r = new_reg(epfd, est, ufd, fd, st, ev);
	char path[64];
	int ret;

	if (!r)
		return -ENOMEM;
	/* Our own open file of the inode: the buffer's file (which holds
	 * the shared lock) must not be kept alive by us. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r->own = open(path, O_RDONLY | O_CLOEXEC);
	close(fd);
	r->standin = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = r->own < 0 || r->standin < 0 ? -ENOMEM : start_watcher();
	if (!ret)
		ret = watch_inode(r, r->own);
	if (!ret)
		ret = set_mask(r, EPOLL_CTL_ADD, reg_ready(r, r->events & IO_EVENTS));
	if (ret) {
		r->next = NULL;
		drop(&r, false);
		return ret;
	}
	r->next = regs;
	regs = r;
	refresh(r);
	return 0;
}

/* sync_file_poll() as the set sees it: the stand-in's count goes to 1.
 * Runs once, under the fence's lock, in the thread that signals. */
static void sync_signalled(struct dmabuf_fence *fence, struct dmabuf_fence_cb *cb)
{
	struct reg *r = (struct reg *)((char *)cb - offsetof(struct reg, cb));

	(void)fence;
	(void)eventfd_write(r->standin, 1);
}

/* A new registration of the sync file `fd` (consumed) in the set `epfd`
 * (consumed): nothing of the file is kept but its inode's watch. Under
 * regs_lock. */
static int add_sync(int epfd, const struct stat *est, int ufd, int fd, const struct stat *st,
		    const struct epoll_event *ev)
{
	struct reg *r = new_reg(epfd, est, ufd, fd, st, ev);
	int ret;

	if (!r)
		return -ENOMEM;
	r->standin = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = r->standin < 0 ? -ENOMEM : start_watcher();
	if (!ret)
		ret = watch_inode(r, fd);
	if (!ret && dmabuf_sync_file_import(fd, &r->fence))
		ret = -ENOMEM;
	close(fd);
	if (!ret)
		ret = set_mask(r, EPOLL_CTL_ADD, 0);
	if (ret) {
		r->next = NULL;
		drop(&r, false);
		return ret;
	}
	if (dmabuf_fence_add_callback(r->fence, &r->cb, sync_signalled) == -ENOENT)
		(void)eventfd_write(r->standin, 1);
	r->next = regs;
	regs = r;
	return 0;
}

static int emulated_ctl(struct call *c, int fd)
{
	const struct seccomp_data *d = &c->n->data;
	int op = (int)d->args[1], ufd = (int)d->args[2], epfd, ret = 0;
	struct epoll_event ev = { 0 };
	struct stat st, est;
	struct reg *r, **pp;

	/* The kernel's order: the event is copied first, then the fds. */
	if (op != EPOLL_CTL_DEL && c->io.copy_in(&c->io, &ev, d->args[3], sizeof(ev))) {
		close(fd);
		return -EFAULT;
	}
	epfd = dmb_sec_get_fd(c, (int)d->args[0]);
	if (epfd < 0) {
		close(fd);
		return -EBADF;
	}
	if (!is_epoll(epfd) || fstat(fd, &st) < 0 || fstat(epfd, &est) < 0) {
		close(fd);
		close(epfd);
		return -EINVAL;
	}
	/* ep_op_has_event(): EPOLLEXCLUSIVE only with ADD and with the few
	 * events allowed beside it. */
	if (op != EPOLL_CTL_DEL && (ev.events & EPOLLEXCLUSIVE) &&
	    (op == EPOLL_CTL_MOD ||
	     (ev.events & ~(uint32_t)(EPOLLEXCLUSIVE | EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP |
				      EPOLLWAKEUP | EPOLLET | EPOLLRDNORM | EPOLLWRNORM |
				      EPOLLRDBAND | EPOLLWRBAND)))) {
		close(fd);
		close(epfd);
		return -EINVAL;
	}
	if (!dmb_sec_valid(c)) {
		close(fd);
		close(epfd);
		return -ENOENT; /* nobody to answer: the reply fails harmlessly */
	}
	pthread_mutex_lock(&regs_lock);
	r = find(epfd, &est, ufd, &st);
	switch (op) {
	case EPOLL_CTL_ADD:
		if (r) {
			ret = -EEXIST;
			break;
		}
		ret = S_ISSOCK(st.st_mode) ? add_sync(epfd, &est, ufd, fd, &st, &ev)
					   : add(epfd, &est, ufd, fd, &st, &ev);
		fd = epfd = -1;
		break;
	case EPOLL_CTL_MOD:
		if (!r) {
			ret = -ENOENT;
			break;
		}
		if (r->exclusive) {
			ret = -EINVAL;
			break;
		}
		r->events = ev.events;
		r->data = ev.data.u64;
		r->fired = false;
		ret = set_mask(r, EPOLL_CTL_MOD,
			       r->fence ? 0 : reg_ready(r, r->events & IO_EVENTS));
		refresh(r);
		break;
	case EPOLL_CTL_DEL:
		if (!r) {
			ret = -ENOENT;
			break;
		}
		for (pp = &regs; *pp != r; pp = &(*pp)->next)
			;
		drop(pp, true);
		break;
	default:
		ret = -EINVAL;
	}
	pthread_mutex_unlock(&regs_lock);
	if (fd >= 0)
		close(fd);
	if (epfd >= 0)
		close(epfd);
	wake_watcher();
	return ret;
}

void dmb_sec_epoll_ctl(struct call *c)
{
	const struct seccomp_data *d = &c->n->data;
	int fd = dmb_sec_get_fd(c, (int)d->args[2]);
	enum dmb_uapi_kind kind = fd < 0 ? DMB_UAPI_NONE : dmb_uapi_classify(fd);
	int ret;

	if (kind != DMB_UAPI_DMABUF && kind != DMB_UAPI_SYNC_FILE) {
		if (fd >= 0)
			close(fd);
		dmb_sec_reply(c, true, 0);
		return;
	}
	ret = emulated_ctl(c, fd);
	if (dmb_uapi_config()->trace)
		dmb_uapi_trace("[seccomp %u] epoll_ctl(%d, %d, %d <%s>) = %d", c->n->pid,
			       (int)d->args[0], (int)d->args[1], (int)d->args[2],
			       kind == DMB_UAPI_DMABUF ? "dma-buf" : "sync file", ret);
	dmb_sec_reply(c, false, ret);
}

void dmb_sec_watch_timeline(int fd)
{
	struct tlw *t = calloc(1, sizeof(*t));
	char path[64];
	struct stat st;

	if (!t || fstat(fd, &st) < 0) {
		free(t);
		return;
	}
	t->dev = st.st_dev;
	t->ino = st.st_ino;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	t->own = open(path, O_RDONLY | O_CLOEXEC);
	pthread_mutex_lock(&regs_lock);
	if (t->own >= 0 && !start_watcher()) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", t->own);
		t->wd = inotify_add_watch(inotify_fd, path, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE);
	} else {
		t->wd = -1;
	}
	if (t->wd < 0) {
		pthread_mutex_unlock(&regs_lock);
		if (t->own >= 0)
			close(t->own);
		free(t);
		return;
	}
	t->next = tlws;
	tlws = t;
	pthread_mutex_unlock(&regs_lock);
	wake_watcher();
}

void dmb_sec_ready_changed(void)
{
	struct reg *r;

	if (!__atomic_load_n(&regs, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&regs_lock);
	for (r = regs; r; r = r->next)
		refresh(r);
	pthread_mutex_unlock(&regs_lock);
	wake_watcher();
}
