/* SPDX-License-Identifier: MIT */
/*
 * epoll on dma-buf fds, as the kernel's dma_buf_poll() answers it.
 *
 * A buffer's fd is a memfd here, which epoll_ctl() refuses (EPERM: a
 * regular file has no poll). So the program's registration of a dma-buf is
 * carried by a stand-in: an eventfd with a count of 1 (always readable and
 * writable) registered in the program's epoll set with the program's flags
 * and a pointer to the record as its data. What the set may report is
 * the registered event mask: the requested EPOLLIN/EPOLLOUT that the buffer's fences allow
 * (dma_buf_poll(): EPOLLIN once the writers are done, EPOLLOUT once
 * everyone is), kept up to date with EPOLL_CTL_MOD, level-triggered.
 * EPOLLET is dropped: the kernel's dma_buf_poll() wakes the file's waiters
 * itself when it adds no fence callback, which queues an edge-triggered
 * item again at every look once the buffer is ready, so the kernel
 * reports it at every epoll_wait(), as a level-triggered one.
 * The program's epoll_wait() family re-checks each reported stand-in
 * against the fences (a fence may have come since), gives back the
 * program's own data and events, and while a registered buffer is busy
 * waits in 1 ms slices to see its fences signal, as poll() does here.
 * EPOLLONESHOT is the set's own (a fired record is not re-armed until the
 * program's EPOLL_CTL_MOD); EPOLLEXCLUSIVE is remembered, not passed (an
 * exclusive item cannot be modified, and the mask must be).
 *
 * A sync file (a socket here) polls as the kernel's sync_file_poll():
 * EPOLLIN once its fence has signalled, else nothing, never EPOLLOUT or
 * EPOLLHUP (the socket's own events). Its stand-in is an eventfd with a
 * count of 0, registered with the program's flags, events (EPOLLOUT taken
 * out: the eventfd's writability is not the sync file's) and data; a
 * callback on the fence writes the count to 1 when it signals, once, as
 * the kernel's fence_check_cb_func() wakes the file's waiters once. The
 * set then reports EPOLLIN by itself, level- or edge-triggered, one-shot
 * or not, with the program's data: the program's epoll_wait() needs no
 * emulation for such items.
 *
 * The record goes when the program deletes it, when the last fd of the
 * buffer or sync file in this process is closed (the kernel: when the last
 * reference to the file goes), or when the epoll set's last fd here is
 * closed.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kcmp.h>

#include <dmabuf-fence.h>

#include "core.h"
#include "preload.h"

DECLARE_REAL(epoll_ctl)
DECLARE_REAL(epoll_wait)
DECLARE_REAL(epoll_pwait)
DECLARE_REAL(epoll_pwait2)

#define IO_EVENTS (EPOLLIN | EPOLLOUT)

/* An epoll set with items of the layer's: its dup, one for all of them. */
struct epset {
	int fd;			/* the layer's dup of the program's epoll fd: the
				 * set is this open file, whatever fd names it,
				 * and the layer's own epoll_ctl() goes here */
	unsigned int refs;	/* the records in it */
	dev_t dev;		/* its inode (every set's is the same one) */
	ino_t ino;
	bool gone;		/* no program fd of it is left (at a close) */
	struct epset *next;
};

struct reg {
	int epown;		/* its set's fd (set->fd) */
	struct epset *set;
	dev_t ep_dev;		/* the epoll set's inode */
	ino_t ep_ino;
	int fd;			/* the program's dma-buf fd (the kernel's key) */
	dev_t dev;		/* the buffer's inode */
	ino_t ino;
	int standin;		/* the eventfd in the set (a layer fd) */
	int own;		/* the layer's dup of the buffer's fd, to ask the
				 * fences after the program's fd is closed */
	uint32_t events;	/* the program's events, EPOLLEXCLUSIVE removed */
	bool exclusive;
	bool fired;		/* EPOLLONESHOT reported: disabled until MOD */
	uint32_t mask;		/* the registered event mask */
	uint32_t seen;		/* readiness last seen (for edges) */
	epoll_data_t data;	/* the program's, given back untouched */
	/* A sync file's: its fence and the callback that writes the
	 * stand-in's count when it signals (fence NULL for a dma-buf). */
	struct dmabuf_fence *fence;
	struct dmabuf_fence_cb cb;
	pid_t fence_pid;	/* the process whose fence it is */
	struct reg *next;
};

static pthread_mutex_t regs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reg *regs;
static struct epset *sets;
/* Records of dma-bufs (whose waits are emulated) and of sync files. */
static atomic_int nregs, nsync;

static uint32_t readiness(struct reg *r)
{
	return (uint32_t)IN_CORE(dmb_uapi_poll_events(r->own, DMB_UAPI_DMABUF,
						      (short)(r->events & IO_EVENTS))) &
	       r->events & IO_EVENTS;
}

/* The mask a record should have for readiness `ready`. */
static uint32_t mask_for(const struct reg *r, uint32_t ready)
{
	uint32_t flags = r->events & ~(uint32_t)IO_EVENTS;

	return flags | ready;
}

static int set_mask(struct reg *r, int op, uint32_t mask)
{
	struct epoll_event ev = { .events = mask, .data.ptr = r };

	if (next_epoll_ctl()(r->epown, op, r->standin, &ev) < 0)
		return -errno;
	r->mask = mask;
	return 0;
}

/* Brings a record's registration up to date with the fences. */
static void refresh(struct reg *r)
{
	uint32_t ready;

	if (r->fired)
		return;
	ready = readiness(r);
	if (mask_for(r, ready) != r->mask)
		set_mask(r, EPOLL_CTL_MOD, mask_for(r, ready));
	r->seen = ready;
}

/* True if fds a and b are one open file. Every epoll set is the same
 * anonymous inode, so the inode cannot tell two sets apart (nor a set from
 * an eventfd); without kcmp() (CONFIG_KCMP) the inode is all there is. */
static bool same_file(int a, int b)
{
	long ret = syscall(SYS_kcmp, dmb_preload_pid, dmb_preload_pid, KCMP_FILE, a, b);

	return ret == 0 || (ret < 0 && (errno == ENOSYS || errno == EPERM));
}

/* The layer's dup of the set epfd, shared by its records: an item costs
 * the layer its stand-in alone. Under regs_lock; NULL (errno) if there is
 * no fd for a first one. */
static struct epset *set_get(int epfd, const struct stat *est)
{
	struct epset *e;

	for (e = sets; e; e = e->next)
		if (same_file(e->fd, epfd)) {
			e->refs++;
			return e;
		}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->fd = fcntl(epfd, F_DUPFD_CLOEXEC, 0);
	if (e->fd < 0) {
		free(e);
		return NULL;
	}
	e->refs = 1;
	e->dev = est->st_dev;
	e->ino = est->st_ino;
	e->next = sets;
	sets = e;
	return e;
}

static void set_put(struct epset *e)
{
	struct epset **pp;

	if (--e->refs)
		return;
	for (pp = &sets; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	close(e->fd);
	free(e);
}

/* The item of (set, fd): the kernel's key is the set's file and the
 * target's file and fd number, so a dup of the set finds it too. */
static struct reg *find(int epfd, const struct stat *est, int fd, const struct stat *st)
{
	struct reg *r;

	for (r = regs; r; r = r->next)
		if (r->fd == fd && r->ino == st->st_ino && r->dev == st->st_dev &&
		    r->ep_ino == est->st_ino && r->ep_dev == est->st_dev &&
		    same_file(r->epown, epfd))
			return r;
	return NULL;
}

static void drop(struct reg **pp, bool del)
{
	struct reg *r = *pp;

	*pp = r->next;
	/* The program's DEL takes the item out of the set. Otherwise closing
	 * the stand-in does, if this was its last fd: a set and stand-ins
	 * shared over fork keep the item while another process holds them,
	 * as the kernel keeps it while the target's file lives. */
	if (del)
		next_epoll_ctl()(r->epown, EPOLL_CTL_DEL, r->standin, NULL);
	if (r->fence) {
		/* The callback may run in another thread: once removed (or
		 * run to its end) it no longer writes the stand-in. A forked
		 * child's fence is a copy of the parent's: not touched. */
		if (r->fence_pid == getpid()) {
			IN_CORE(dmabuf_fence_remove_callback(r->fence, &r->cb));
			IN_CORE_VOID(dmabuf_fence_put(r->fence));
		}
		atomic_fetch_sub(&nsync, 1);
	} else {
		atomic_fetch_sub(&nregs, 1);
	}
	close(r->standin);
	if (r->own >= 0)
		close(r->own);
	set_put(r->set);
	free(r);
}

/*
 * The count a signalled sync file's stand-in holds: the largest an eventfd
 * takes. The first write of it wakes the set; a second (another process's
 * callback on the same stand-in, after fork or exec) finds no room and
 * fails with EAGAIN (the stand-in is non-blocking) without waking anyone,
 * so the item is woken once per signal however many processes watch the
 * fence, as the kernel's fence_check_cb_func() wakes the file's waiters
 * once. The eventfd then polls EPOLLIN and not EPOLLOUT, never EPOLLERR.
 */
#define SIGNALLED_COUNT (UINT64_MAX - 1)

static void standin_signal(int standin)
{
	(void)eventfd_write(standin, SIGNALLED_COUNT);
}

/* sync_file_poll() as the set sees it: the stand-in's count is set, and
 * the eventfd polls EPOLLIN from then on. Under the fence's lock. */
static void sync_signalled(struct dmabuf_fence *fence, struct dmabuf_fence_cb *cb)
{
	struct reg *r = (struct reg *)((char *)cb - offsetof(struct reg, cb));

	(void)fence;
	standin_signal(r->standin);
}

/* The callback of this process on the record's fence (r->fence, a
 * reference of this process's), which writes the stand-in at the signal;
 * at once if it has signalled. */
static void sync_arm(struct reg *r)
{
	r->fence_pid = getpid();
	if (IN_CORE(dmabuf_fence_add_callback(r->fence, &r->cb, sync_signalled)) == -ENOENT)
		standin_signal(r->standin);
}

/* What a sync file's stand-in is registered with: the program's events
 * without EPOLLOUT (an eventfd is writable, a sync file never is). */
static int sync_set(struct reg *r, int op)
{
	struct epoll_event ev = { .events = r->events & ~(uint32_t)EPOLLOUT, .data = r->data };

	if (next_epoll_ctl()(r->epown, op, r->standin, &ev) < 0)
		return -errno;
	r->mask = ev.events;
	return 0;
}

/* A new record of the sync file fd: the stand-in is added with a count of
 * 0 and set to 1 by the fence's callback (at once if it has signalled).
 * Under regs_lock; r's identity fields are filled. */
static int sync_add(struct reg *r, int fd)
{
	int ret;

	r->standin = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->standin < 0)
		return -ENOMEM;
	ret = IN_CORE(dmabuf_sync_file_import(fd, &r->fence));
	if (ret) {
		r->fence = NULL;
		close(r->standin);
		return ret;
	}
	ret = sync_set(r, EPOLL_CTL_ADD);
	if (ret) {
		IN_CORE_VOID(dmabuf_fence_put(r->fence));
		close(r->standin);
		return ret;
	}
	sync_arm(r);
	atomic_fetch_add(&nsync, 1);
	return 0;
}

/*
 * MOD or DEL of an fd the layer has no item of in the set: EINVAL when
 * @epfd is not a set (the buffer itself included), which do_epoll_ctl()
 * checks before it looks for the item; else ENOENT. One readlink, only
 * on this error path (the kernel cannot be asked: the file under an
 * emulated one may not poll, where it answers EPERM first).
 */
static int not_ours(int epfd)
{
	char path[64], link[32];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", epfd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n > 0) {
		link[n] = '\0';
		if (strcmp(link, "anon_inode:[eventpoll]"))
			return -EINVAL;
	}
	return -ENOENT;
}

/* fst: the fd's, from the fstat that classified it. */
static int emulated_ctl(int epfd, int op, int fd, enum dmb_uapi_kind kind,
			const struct stat *fst, struct epoll_event *uev)
{
	struct epoll_event ev = { 0 };
	struct stat st = *fst, est;
	struct reg *r, **pp;
	int ret = 0;

	/* The kernel copies the event (copy_from_user(): EFAULT) before it
	 * looks at either fd, and takes none for DEL: it is asked first,
	 * with no target (fd -1, its EBADF once the event was copied), and
	 * the event is read here only once the kernel could read it. The
	 * call costs nothing: the fd's fstat is the one that classified it. */
	if (op != EPOLL_CTL_DEL && next_epoll_ctl()(epfd, op, -1, uev) < 0 && errno == EFAULT)
		return -EFAULT;
	if (fstat(epfd, &est) < 0)
		return -EBADF;
	if (op != EPOLL_CTL_DEL) {
		ev = *uev;
		/* dma_buf_poll() wakes the file's waiters itself when it adds
		 * no fence callback (dma_buf_poll_cb()), and once a fence's
		 * callback ran the next look adds none: an edge-triggered
		 * item of a buffer is queued again at every look once ready,
		 * which is a level-triggered one. */
		if (kind == DMB_UAPI_DMABUF)
			ev.events &= ~(uint32_t)EPOLLET;
		/* ep_op_has_event() ... EPOLLEXCLUSIVE: only with ADD and
		 * with the few events the kernel allows beside it. */
		if ((ev.events & EPOLLEXCLUSIVE) &&
		    (op == EPOLL_CTL_MOD ||
		     (ev.events & ~(uint32_t)(EPOLLEXCLUSIVE | EPOLLIN | EPOLLOUT | EPOLLERR |
					      EPOLLHUP | EPOLLWAKEUP | EPOLLET |
					      EPOLLRDNORM | EPOLLWRNORM | EPOLLRDBAND |
					      EPOLLWRBAND))))
			return -EINVAL;
	}
	pthread_mutex_lock(&regs_lock);
	r = find(epfd, &est, fd, &st);
	switch (op) {
	case EPOLL_CTL_ADD:
		if (r) {
			ret = -EEXIST;
			break;
		}
		r = calloc(1, sizeof(*r));
		if (!r) {
			ret = -ENOMEM;
			break;
		}
		r->ep_dev = est.st_dev;
		r->ep_ino = est.st_ino;
		r->fd = fd;
		r->dev = st.st_dev;
		r->ino = st.st_ino;
		r->exclusive = ev.events & EPOLLEXCLUSIVE;
		r->events = ev.events & ~(uint32_t)EPOLLEXCLUSIVE;
		r->data = ev.data;
		r->own = -1;
		/* The layer's fds (a dup of the set, the stand-in) are all it
		 * needs, where the kernel's ADD makes none: without them
		 * (RLIMIT_NOFILE), ENOMEM, as ep_insert()'s failure. */
		r->set = set_get(epfd, &est);
		if (!r->set) {
			ret = -ENOMEM;
			free(r);
			break;
		}
		r->epown = r->set->fd;
		if (kind == DMB_UAPI_SYNC_FILE) {
			ret = sync_add(r, fd);
			if (ret) {
				set_put(r->set);
				free(r);
				break;
			}
			r->next = regs;
			regs = r;
			break;
		}
		r->standin = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
		r->own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		r->seen = r->standin < 0 || r->own < 0 ? 0 : readiness(r);
		ret = r->standin < 0 || r->own < 0 ? -ENOMEM
						   : set_mask(r, EPOLL_CTL_ADD, mask_for(r, r->seen));
		if (ret) {
			if (r->standin >= 0)
				close(r->standin);
			if (r->own >= 0)
				close(r->own);
			set_put(r->set);
			free(r);
			break;
		}
		r->next = regs;
		regs = r;
		atomic_fetch_add(&nregs, 1);
		break;
	case EPOLL_CTL_MOD:
		if (!r) {
			ret = not_ours(epfd);
			break;
		}
		if (r->exclusive) {
			ret = -EINVAL;
			break;
		}
		r->events = ev.events;
		r->data = ev.data;
		r->fired = false;
		if (r->fence) {
			ret = sync_set(r, EPOLL_CTL_MOD);
			break;
		}
		r->seen = readiness(r);
		ret = set_mask(r, EPOLL_CTL_MOD, mask_for(r, r->seen));
		break;
	case EPOLL_CTL_DEL:
		if (!r) {
			ret = not_ours(epfd);
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
	return ret;
}

EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	enum dmb_uapi_kind kind;
	struct stat st;
	int ret;

	if (LAYER_CALL() || !dmb_preload_fd_maybe(fd))
		return next_epoll_ctl()(epfd, op, fd, ev);
	/* dmb_uapi_classify() with the fstat kept for the record. */
	if (fd < 0 || fstat(fd, &st) < 0)
		return next_epoll_ctl()(epfd, op, fd, ev);
	dmb_uapi_init();
	kind = dmb_uapi_classify_stat(fd, &st);
	if (kind != DMB_UAPI_DMABUF && kind != DMB_UAPI_SYNC_FILE)
		return next_epoll_ctl()(epfd, op, fd, ev);
	ret = emulated_ctl(epfd, op, fd, kind, &st, ev);
	/* The event only if the kernel could read it (not for DEL). */
	dmb_uapi_trace("epoll_ctl(%d, %d, %d <%s>, %#x) = %d%s%s", epfd, op, fd,
		       kind == DMB_UAPI_DMABUF ? "dma-buf" : "sync file",
		       op == EPOLL_CTL_DEL || ret == -EFAULT ? 0u : ev->events,
		       ret < 0 ? -1 : ret, ret < 0 ? " " : "",
		       ret < 0 ? strerror(-ret) : "");
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return 0;
}

/* ---- waiting ------------------------------------------------------------------ */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Brings this set's records up to date; true if one may still become
 * ready (a busy buffer), so the wait must look again soon. */
static bool refresh_set(dev_t dev, ino_t ino)
{
	struct reg *r;
	bool busy = false;

	pthread_mutex_lock(&regs_lock);
	for (r = regs; r; r = r->next) {
		if (r->ep_ino != ino || r->ep_dev != dev || r->fence)
			continue;
		refresh(r);
		busy |= !r->fired && (r->seen & r->events & IO_EVENTS) != (r->events & IO_EVENTS);
	}
	pthread_mutex_unlock(&regs_lock);
	return busy;
}

/* The program's view of what the set reported: stand-ins become the
 * program's events and data, or go when the buffer is no longer ready. */
static int translate(struct epoll_event *evs, int n)
{
	struct reg *r;
	int i, out = 0;

	pthread_mutex_lock(&regs_lock);
	for (i = 0; i < n; i++) {
		/* A sync file's stand-in carries the program's own data. */
		for (r = regs; r && (r != evs[i].data.ptr || r->fence); r = r->next)
			;
		if (!r) {
			evs[out++] = evs[i];
			continue;
		}
		r->seen = readiness(r);
		if (r->events & EPOLLONESHOT)
			r->fired = true;
		if (!(r->seen & r->mask)) {
			/* Busy again since it was queued: not reported. A
			 * one-shot item the set disabled is armed again, with
			 * nothing ready; another one loses the bits. */
			r->fired = false;
			set_mask(r, EPOLL_CTL_MOD, mask_for(r, r->seen));
			continue;
		}
		evs[out].events = r->seen & r->mask;
		evs[out].data = r->data;
		out++;
	}
	pthread_mutex_unlock(&regs_lock);
	return out;
}

static int real_wait(int epfd, struct epoll_event *evs, int max, int64_t timeout_ns,
		     const sigset_t *sig)
{
	struct timespec ts;

	if (timeout_ns < 0)
		return next_epoll_pwait()(epfd, evs, max, -1, sig);
	ts.tv_sec = timeout_ns / 1000000000;
	ts.tv_nsec = timeout_ns % 1000000000;
	if (next_epoll_pwait2()) {
		int n = next_epoll_pwait2()(epfd, evs, max, &ts, sig);

		/* Older kernels (and valgrind) lack it: the ms form. */
		if (n >= 0 || errno != ENOSYS)
			return n;
	}
	return next_epoll_pwait()(epfd, evs, max, (int)((timeout_ns + 999999) / 1000000), sig);
}

static int emulated_wait(int epfd, struct epoll_event *evs, int max, int64_t timeout_ns,
			 const sigset_t *sig)
{
	int64_t deadline = timeout_ns < 0 ? -1 : now_ns() + timeout_ns;
	struct stat st;

	if (fstat(epfd, &st) < 0 || max <= 0 || !evs)
		return real_wait(epfd, evs, max, timeout_ns, sig);
	for (;;) {
		int64_t left = deadline < 0 ? -1 : deadline - now_ns();
		bool busy = refresh_set(st.st_dev, st.st_ino);
		int n;

		if (left < 0 && deadline >= 0)
			left = 0;
		if (busy && (left < 0 || left > 1000000))
			left = 1000000;
		n = real_wait(epfd, evs, max, left, sig);
		if (n <= 0 && !(n == 0 && busy))
			return n;
		n = translate(evs, n);
		if (n || (deadline >= 0 && now_ns() >= deadline))
			return n;
	}
}

static inline bool waits_here(void)
{
	return atomic_load_explicit(&nregs, memory_order_relaxed) > 0;
}

/* A thread of libdmabuf's that waits on the layer's epoll is the service
 * thread of the layer's context: what it makes is the layer's (the
 * connections of importers, the fds it sends them). */
static inline void note_layer_thread(int epfd)
{
	if (dmb_preload_in_core == 0 && dmb_layer_fd_is(epfd))
		dmb_preload_in_core = 1;
}

EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	if (LAYER_CALL()) {
		note_layer_thread(epfd);
		return next_epoll_wait()(epfd, evs, max, timeout);
	}
	if (!waits_here())
		return next_epoll_wait()(epfd, evs, max, timeout);
	return emulated_wait(epfd, evs, max, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL);
}

EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout,
		       const sigset_t *sig)
{
	if (LAYER_CALL()) {
		note_layer_thread(epfd);
		return next_epoll_pwait()(epfd, evs, max, timeout, sig);
	}
	if (!waits_here())
		return next_epoll_pwait()(epfd, evs, max, timeout, sig);
	return emulated_wait(epfd, evs, max, timeout < 0 ? -1 : (int64_t)timeout * 1000000, sig);
}

EXPORT int epoll_pwait2(int epfd, struct epoll_event *evs, int max, const struct timespec *ts,
			const sigset_t *sig)
{
	if (!waits_here() || LAYER_CALL())
		return next_epoll_pwait2()(epfd, evs, max, ts, sig);
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)) {
		errno = EINVAL;
		return -1;
	}
	return emulated_wait(epfd, evs, max,
			     ts ? (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec : -1, sig);
}

/* ---- the program's close ---------------------------------------------------------- */

/* True if a program fd of this process has the inode and, if `file` is
 * not -1, is that open file (an epoll set: they all share one inode). */
static bool inode_open(dev_t dev, ino_t ino, int file)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	struct stat st;
	bool found = false;

	if (!d)
		return true;
	while (!found && (e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d) || dmb_layer_fd_is(fd))
			continue;
		found = fstat(fd, &st) == 0 && st.st_ino == ino && st.st_dev == dev &&
			(file < 0 || same_file(fd, file));
	}
	closedir(d);
	return found;
}

bool dmb_preload_epoll_any(void)
{
	return waits_here() || atomic_load_explicit(&nsync, memory_order_relaxed) > 0;
}

struct fdid {
	dev_t dev;
	ino_t ino;
	int fd;
};

static int fdid_cmp(const void *a, const void *b)
{
	const struct fdid *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/*
 * After the program closed fds by other means than close() (a dup2() or
 * dup3() onto one, close_range()): the records whose target has no
 * program fd left here, or whose set has none, go, as the kernel's items
 * go with their files. One look at /proc/self/fd for all of them.
 */
void dmb_preload_epoll_sweep(void)
{
	struct fdid *ids = NULL, key;
	size_t n = 0, cap = 0;
	struct reg **pp, *r;
	struct epset *e;
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (!dmb_preload_epoll_any())
		return;
	d = opendir("/proc/self/fd");
	if (!d)
		return;
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] == '.' || fd == dirfd(d) || dmb_layer_fd_is(fd) ||
		    fstat(fd, &st) < 0)
			continue;
		if (n == cap) {
			struct fdid *grown = realloc(ids, (cap = cap ? 2 * cap : 64) * sizeof(*ids));

			if (!grown) {
				free(ids);
				closedir(d);
				return; /* nothing known: nothing dropped */
			}
			ids = grown;
		}
		ids[n++] = (struct fdid){ st.st_dev, st.st_ino, fd };
	}
	closedir(d);
	if (n)
		qsort(ids, n, sizeof(*ids), fdid_cmp);
	pthread_mutex_lock(&regs_lock);
	for (e = sets; e; e = e->next) {
		struct fdid *hit;

		e->gone = true;
		key = (struct fdid){ e->dev, e->ino, -1 };
		hit = n ? bsearch(&key, ids, n, sizeof(*ids), fdid_cmp) : NULL;
		if (!hit)
			continue;
		/* Every set is one inode: the fds of it, around the hit. */
		while (hit > ids && !fdid_cmp(hit - 1, &key))
			hit--;
		for (; hit < ids + n && !fdid_cmp(hit, &key) && e->gone; hit++)
			e->gone = !same_file(hit->fd, e->fd);
	}
	for (pp = &regs; (r = *pp);) {
		key = (struct fdid){ r->dev, r->ino, -1 };
		if (r->set->gone || !n || !bsearch(&key, ids, n, sizeof(*ids), fdid_cmp)) {
			drop(pp, false);
			continue;
		}
		pp = &r->next;
	}
	pthread_mutex_unlock(&regs_lock);
	free(ids);
}

void dmb_preload_epoll_closed(dev_t dev, ino_t ino)
{
	struct reg **pp, *r;
	struct epset *e;
	bool buf_gone = false, buf_checked = false, sets_checked = false;

	if (!dmb_preload_epoll_any())
		return;
	pthread_mutex_lock(&regs_lock);
	for (pp = &regs; (r = *pp);) {
		/* Every epoll set (and eventfd) is one inode: each set is
		 * looked for once, not once per item. */
		if (!sets_checked && r->ep_ino == ino && r->ep_dev == dev) {
			for (e = sets; e; e = e->next)
				e->gone = !inode_open(dev, ino, e->fd);
			sets_checked = true;
		}
		if (r->ino == ino && r->dev == dev) {
			if (!buf_checked)
				buf_gone = !inode_open(dev, ino, -1), buf_checked = true;
			if (buf_gone) {
				drop(pp, false);
				continue;
			}
		} else if (r->ep_ino == ino && r->ep_dev == dev && r->set->gone) {
			/* The set's last program fd: the layer's dup is all
			 * that holds it. */
			drop(pp, false);
			continue;
		}
		pp = &r->next;
	}
	pthread_mutex_unlock(&regs_lock);
}

/* In a forked child the set and the stand-ins are shared with the parent
 * (as the kernel's epoll items are): the records stay; only the lock is
 * made anew. */
void dmb_preload_epoll_forked(void)
{
	pthread_mutex_init(&regs_lock, NULL);
}

/*
 * After dmb_preload_epoll_forked() and the core's own fork handling: each
 * sync file's record gets a callback of this process, on the fence that
 * this process imports from the program's fd, so that the stand-in (the
 * shared item) is written at the signal whichever process still holds
 * the file: the parent's callback goes when the parent closes its copy or
 * exits, where the kernel's item stays and reports the signal in every
 * process that waits on the set. A record whose fd no longer is its file
 * here, or whose fence cannot be imported (no fd), keeps only the
 * parent's callback (the record's fence is the parent's copy, never
 * touched).
 */
void dmb_preload_epoll_adopt(void)
{
	struct dmabuf_fence *f;
	struct reg *r;
	struct stat st;

	if (!atomic_load_explicit(&nsync, memory_order_relaxed))
		return;
	pthread_mutex_lock(&regs_lock);
	for (r = regs; r; r = r->next) {
		if (!r->fence || r->fence_pid == getpid())
			continue;
		if (fstat(r->fd, &st) || st.st_ino != r->ino || st.st_dev != r->dev ||
		    IN_CORE(dmabuf_sync_file_import(r->fd, &f)))
			continue;
		r->fence = f;
		sync_arm(r);
	}
	pthread_mutex_unlock(&regs_lock);
}
