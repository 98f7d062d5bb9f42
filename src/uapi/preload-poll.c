/* SPDX-License-Identifier: MIT */
/*
 * Readiness: a dma-buf's is its fences', which no file of the kernel here
 * reports, and a sync file's is the record in its socket (POLLIN only).
 * poll(), ppoll(), select() and pselect() with such an fd among theirs
 * poll the others for real and re-check the buffers every millisecond.
 * (epoll is epoll.c's.) Apart because it is the one family that waits.
 *
 * The program's arrays and sets are never read here before the kernel
 * has said they can be (fs/select.c answers a bad pointer with EFAULT,
 * where a read in the program's process would kill it): poll and ppoll
 * ask the kernel first and look at the array only once it succeeded;
 * select and pselect copy the sets with process_vm_readv, and only when
 * a tagged fd is below nfds.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "preload-int.h"

REAL(poll, int, struct pollfd *, nfds_t, int)
REAL(ppoll, int, struct pollfd *, nfds_t, const struct timespec *, const sigset_t *)
REAL(select, int, int, fd_set *, fd_set *, fd_set *, struct timeval *)
REAL(pselect, int, int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *)

/* A kind whose readiness is emulated. */
static inline bool polled_kind(enum dmb_uapi_kind k)
{
	return k == DMB_UAPI_DMABUF || k == DMB_UAPI_SYNC_FILE;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A valid timeout in ms (rounded up, as the kernel waits at least that
 * long), at most INT_MAX. */
static int timeout_ms(int64_t sec, int64_t nsec)
{
	if (sec < 0 || nsec < 0)
		return 0;
	if (sec >= INT_MAX / 1000 - 1)
		return INT_MAX;
	return (int)(sec * 1000 + (nsec + 999999) / 1000000);
}

/*
 * A dma-buf's readiness is its fences', which no file of the kernel here
 * reports: poll the other fds for real and re-check the buffers' fences
 * every millisecond until something is ready or the timeout passes.
 * answered: the kernel's answer to the same call, already in fds (>= 0),
 * given back when none of the fds is emulated; -1 if it was not asked.
 */
static int emulated_poll(struct pollfd *fds, nfds_t n, int timeout, int answered)
{
	struct pollfd *copy;
	enum dmb_uapi_kind *kinds;
	bool *shut;
	int64_t deadline = timeout < 0 ? -1 : now_ms() + timeout;
	int ready, ret;
	bool any = false;
	nfds_t i;

	kinds = calloc(n ? n : 1, sizeof(*kinds));
	copy = calloc(n ? n : 1, sizeof(*copy));
	shut = calloc(n ? n : 1, sizeof(*shut));
	if (!kinds || !copy || !shut) {
		free(kinds);
		free(copy);
		free(shut);
		return answered >= 0 ? answered : get_poll()(fds, n, timeout);
	}
	for (i = 0; i < n; i++) {
		kinds[i] = dmb_preload_fd_kind(fds[i].fd);
		any |= polled_kind(kinds[i]);
	}
	if (!any) {
		free(kinds);
		free(copy);
		free(shut);
		return answered >= 0 ? answered : get_poll()(fds, n, timeout);
	}
	for (;;) {
		int slice;

		ready = 0;
		for (i = 0; i < n; i++) {
			copy[i] = fds[i];
			/* The kernel's answer stands for the first pass. */
			copy[i].revents = answered >= 0 ? fds[i].revents : 0;
			if (kinds[i] == DMB_UAPI_DMABUF || shut[i]) {
				copy[i].fd = -1;
				fds[i].revents = IN_CORE(dmb_uapi_poll_events(
					fds[i].fd, kinds[i], fds[i].events));
				ready += fds[i].revents != 0;
			} else if (kinds[i] == DMB_UAPI_SYNC_FILE) {
				/* Only the socket's POLLIN (the record, or EOF) means
				 * signalled; its POLLOUT and POLLHUP are not the
				 * sync file's. */
				copy[i].events = fds[i].events & POLLIN;
				if (!copy[i].events)
					copy[i].fd = -1;
			}
		}
		slice = ready ? 0 : 1;
		if (deadline >= 0 && now_ms() + slice > deadline)
			slice = (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0);
		if (answered >= 0) {
			/* The kernel has just polled these fds (a sync file's
			 * socket for more than POLLIN): what the copy asks. */
			for (i = 0; i < n; i++)
				copy[i].revents = copy[i].fd < 0 ? 0
						  : kinds[i] == DMB_UAPI_SYNC_FILE
							  ? copy[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)
							  : copy[i].revents;
			answered = -1;
			ret = 0;
		} else {
			ret = get_poll()(copy, n, slice);
		}
		if (ret < 0) {
			ready = -1;
			break;
		}
		for (i = 0; i < n; i++) {
			if (kinds[i] == DMB_UAPI_SYNC_FILE && !shut[i]) {
				/* sync_file_poll(): EPOLLIN once signalled, else 0. */
				fds[i].revents = copy[i].revents & POLLNVAL ? POLLNVAL
						 : copy[i].revents & (POLLIN | POLLHUP | POLLERR) ? POLLIN
						 : 0;
				/* The socket ready is a wake-up, the library's
				 * answer the state: a holder's shutdown() makes
				 * it ready for good, and then the file is looked
				 * at every slice, as a dma-buf is. */
				if (fds[i].revents == POLLIN &&
				    !IN_CORE(dmb_uapi_poll_events(fds[i].fd, kinds[i], POLLIN))) {
					fds[i].revents = 0;
					shut[i] = true;
				}
			} else if (kinds[i] != DMB_UAPI_DMABUF && !shut[i]) {
				fds[i].revents = copy[i].revents;
			}
			if (kinds[i] != DMB_UAPI_DMABUF && !shut[i])
				ready += fds[i].revents != 0;
		}
		if (ready || (deadline >= 0 && now_ms() >= deadline))
			break;
	}
	free(kinds);
	free(copy);
	free(shut);
	return ready;
}

/* True if the process may have emulated fds: until then nothing of the
 * call is looked at. */
static inline bool active(void)
{
	return atomic_load_explicit(&dmb_preload_active, memory_order_relaxed);
}

/* True if any fd of the set is tagged (may be an emulated one). Only on
 * an array the kernel has just read and written. */
static inline bool any_tagged(const struct pollfd *fds, nfds_t n)
{
	nfds_t i;

	for (i = 0; i < n; i++)
		if (dmb_preload_fd_maybe(fds[i].fd))
			return true;
	return false;
}

/*
 * After the kernel's poll of the program's array answered ret >= 0 for
 * the call that began at start (ms, when timeout > 0) and a tagged fd is
 * in it: the emulated answer if a dma-buf or sync file is among the fds,
 * else the kernel's. The kernel's poll did not wait longer than the
 * emulation would: a dma-buf is a memfd, always ready for POLLIN and
 * POLLOUT (with neither asked for, dma_buf_poll() never reports it), and
 * a sync file's socket becomes readable when it signals, the one event
 * the emulation waits for too.
 */
static int poll_after_kernel(struct pollfd *fds, nfds_t n, int timeout, int64_t start, int ret)
{
	if (timeout > 0) {
		int64_t left = start + timeout - now_ms();

		timeout = left > 0 ? (int)left : 0;
	}
	/* Nothing was ready for the kernel: one look at the buffers. */
	if (!ret)
		timeout = 0;
	return emulated_poll(fds, n, timeout, ret);
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	int64_t start;
	int ret;

	if (__builtin_expect(!active(), 1) || LAYER_CALL())
		return get_poll()(fds, n, timeout);
	/* The kernel first: a bad array is its EFAULT, too many fds its
	 * EINVAL, and the array is read only once it was readable. */
	start = timeout > 0 ? now_ms() : 0;
	ret = get_poll()(fds, n, timeout);
	if (ret < 0 || !any_tagged(fds, n))
		return ret;
	return poll_after_kernel(fds, n, timeout, start, ret);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *sig)
{
	int64_t start = 0;
	int ret, timeout = -1;

	if (__builtin_expect(!active(), 1) || LAYER_CALL())
		return get_ppoll()(fds, n, ts, sig);
	/* libc's ppoll() reads *ts before the system call: no other fault. */
	if (ts) {
		timeout = timeout_ms(ts->tv_sec, ts->tv_nsec);
		start = timeout > 0 ? now_ms() : 0;
	}
	/* The kernel first, as for poll(): its EFAULT for a bad array,
	 * timeout or signal mask, its EINVAL for a bad timeout. */
	ret = get_ppoll()(fds, n, ts, sig);
	if (ret < 0 || !any_tagged(fds, n))
		return ret;
	/* The signal mask is not applied while dma-bufs are polled. */
	return poll_after_kernel(fds, n, timeout, start, ret);
}

/* The bytes of an fd_set of nfds bits that fs/select.c reads and writes
 * (FDS_BYTES: whole longs). */
static inline size_t set_bytes(int nfds)
{
	return ((size_t)nfds + 8 * sizeof(long) - 1) / (8 * sizeof(long)) * sizeof(long);
}

/* valgrind cannot see that process_vm_readv filled our own memory. */
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

static pid_t self_pid(void)
{
	return dmb_preload_pid ? dmb_preload_pid : getpid();
}

/* The fd table's size (FDSize), to which the kernel bounds select()'s
 * nfds (core_sys_select()); nfds itself if it cannot be read. */
static int bound_nfds(int nfds)
{
	char buf[4096], *l;
	ssize_t n;
	long size;
	int fd;

	if (nfds <= FD_SETSIZE)
		return nfds;
	fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return nfds;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return nfds;
	buf[n] = '\0';
	l = strstr(buf, "\nFDSize:");
	if (!l)
		return nfds;
	size = strtol(l + 8, NULL, 10);
	return size > 0 && size < nfds ? (int)size : nfds;
}

/*
 * select()'s bound: core_sys_select() cuts nfds down to the fd table's
 * size (max_fds). The layer's fds (at half RLIMIT_NOFILE) make the real
 * table larger than the program's fds alone would, and the kernel would
 * then read (and fault on) more of the program's sets than without the
 * layer, or find closed fds where it would look at none (EBADF). The
 * bound is the program's own table instead: the size the kernel gives a
 * table that holds the highest fd the program is known to have had (its
 * close()s and the fds open now, looked at in /proc/self/fd only when
 * nfds is beyond what is known already).
 */
atomic_int dmb_preload_fd_high;

void dmb_preload_fd_high_raise(int fd)
{
	int high = atomic_load_explicit(&dmb_preload_fd_high, memory_order_relaxed);

	while (fd > high && !atomic_compare_exchange_weak(&dmb_preload_fd_high, &high, fd))
		;
}

/* The size alloc_fdtable() gives a table for fd: NR_OPEN_DEFAULT
 * (BITS_PER_LONG) slots at first, then 1 KiB of pointers times a power
 * of two. */
static int table_for(int fd)
{
	unsigned long n, p = 1, per = 1024 / sizeof(void *);

	if (fd < (int)(8 * sizeof(long)))
		return 8 * (int)sizeof(long);
	n = (unsigned long)fd / per + 1;
	while (p < n)
		p <<= 1;
	return p * per > INT_MAX ? INT_MAX : (int)(p * per);
}

/* The program's fds open now (the layer's left out): the highest raises
 * dmb_preload_fd_high. */
static void look_at_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d) && !dmb_layer_fd_is(fd))
			dmb_preload_fd_seen(fd);
	}
	closedir(d);
}

static int program_nfds(int nfds)
{
	int table = table_for(atomic_load_explicit(&dmb_preload_fd_high, memory_order_relaxed));

	if (nfds <= table)
		return nfds;
	look_at_fds();
	table = table_for(atomic_load_explicit(&dmb_preload_fd_high, memory_order_relaxed));
	return nfds < table ? nfds : table;
}

/* The bits of an fd set, as fs/select.c sees them: longs of nfds bits
 * (fd_set's macros stop at FD_SETSIZE, which nfds may pass). */
#define LONG_BITS (8 * (int)sizeof(long))

static inline bool bit_isset(const unsigned long *set, int fd)
{
	return set[fd / LONG_BITS] >> (fd % LONG_BITS) & 1;
}

static inline void bit_set(unsigned long *set, int fd)
{
	set[fd / LONG_BITS] |= 1ul << (fd % LONG_BITS);
}

/*
 * The program's sets (those not NULL) copied into sets[] (set_bytes(nfds)
 * each), and for pselect its signal mask (the kernel's sigsetsize bytes,
 * checked only): one process_vm_readv on this process, so a bad pointer
 * is a short copy, never a fault. False if anything was unreadable: the
 * kernel answers the call itself (EFAULT, or its own answer when it reads
 * less: it bounds nfds by its fd table).
 */
static bool sets_read(int nfds, fd_set *const prog[3], const sigset_t *sig, unsigned long *sets[3])
{
	struct iovec l[4], r[4];
	unsigned long mask;
	size_t len = set_bytes(nfds), want = 0;
	int k, c = 0;
	ssize_t got;

	for (k = 0; k < 3; k++) {
		if (!prog[k])
			continue;
		l[c] = (struct iovec){ sets[k], len };
		r[c++] = (struct iovec){ prog[k], len };
		want += len;
	}
	if (sig) {
		l[c] = (struct iovec){ &mask, sizeof(mask) };
		r[c++] = (struct iovec){ (void *)sig, sizeof(mask) };
		want += sizeof(mask);
	}
	if (!c)
		return true;
	got = process_vm_readv(self_pid(), l, (unsigned long)c, r, (unsigned long)c, 0);
	if (got != (ssize_t)want)
		return false;
	for (k = 0; k < 3; k++)
		if (prog[k])
			VALGRIND_MAKE_MEM_DEFINED(sets[k], len);
	return true;
}

/* The sets written back into the program's (those not NULL), as the
 * kernel's set_fd_set(): false (EFAULT) if one is not writable. */
static bool sets_write(int nfds, fd_set *const prog[3], unsigned long *const sets[3])
{
	struct iovec l[3], r[3];
	size_t len = set_bytes(nfds), want = 0;
	int k, c = 0;

	for (k = 0; k < 3; k++) {
		if (!prog[k])
			continue;
		l[c] = (struct iovec){ sets[k], len };
		r[c++] = (struct iovec){ prog[k], len };
		want += len;
	}
	return !c || process_vm_writev(self_pid(), l, (unsigned long)c, r, (unsigned long)c, 0) ==
			     (ssize_t)want;
}

/* select() and pselect() on dma-bufs: the same readiness, through poll,
 * on the copies of the sets, written back at the end. */
static int select_as_poll(int nfds, fd_set *const prog[3], unsigned long *const sets[3],
			  int timeout)
{
	struct pollfd *p;
	int fd, n = 0, i, ret, bits = 0;
	unsigned long *r = prog[0] ? sets[0] : NULL, *w = prog[1] ? sets[1] : NULL,
		      *e = prog[2] ? sets[2] : NULL;
	size_t len = set_bytes(nfds);

	p = calloc((size_t)nfds, sizeof(*p));
	if (!p) {
		errno = ENOMEM;
		return -1;
	}
	for (fd = 0; fd < nfds; fd++) {
		short ev = (r && bit_isset(r, fd) ? POLLIN : 0) |
			   (w && bit_isset(w, fd) ? POLLOUT : 0) | (e && bit_isset(e, fd) ? POLLPRI : 0);

		if (ev)
			p[n++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	ret = emulated_poll(p, (nfds_t)n, timeout, -1);
	if (ret < 0) {
		free(p);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (p[i].revents & POLLNVAL) {
			free(p);
			errno = EBADF;
			return -1;
		}
	}
	if (r)
		memset(r, 0, len);
	if (w)
		memset(w, 0, len);
	if (e)
		memset(e, 0, len);
	for (i = 0; i < n; i++) {
		short rev = p[i].revents;

		if (r && (p[i].events & POLLIN) && (rev & (POLLIN | POLLHUP | POLLERR))) {
			bit_set(r, p[i].fd);
			bits++;
		}
		if (w && (p[i].events & POLLOUT) && (rev & (POLLOUT | POLLERR))) {
			bit_set(w, p[i].fd);
			bits++;
		}
		if (e && (p[i].events & POLLPRI) && (rev & POLLPRI)) {
			bit_set(e, p[i].fd);
			bits++;
		}
	}
	free(p);
	if (!sets_write(nfds, prog, sets)) {
		errno = EFAULT;
		return -1;
	}
	return bits;
}

/* True if an fd below nfds is tagged: without one, no set can name an
 * emulated fd, and nothing of the program's is read. */
static bool tagged_below(int nfds)
{
	int fd;

	if (!active() || nfds <= 0)
		return false;
	for (fd = 0; fd < nfds; fd++)
		if (dmb_preload_fd_maybe(fd))
			return true;
	return false;
}

/* True if a dma-buf or sync file is among the read and write sets. */
static bool sets_have_polled(int nfds, fd_set *const prog[3], unsigned long *const sets[3])
{
	int fd;

	for (fd = 0; fd < nfds; fd++)
		if (((prog[0] && bit_isset(sets[0], fd)) || (prog[1] && bit_isset(sets[1], fd))) &&
		    polled_kind(dmb_preload_fd_kind(fd)))
			return true;
	return false;
}

/*
 * The copies of the program's sets for nfds (bounded as the kernel bounds
 * it): on the stack up to FD_SETSIZE, else allocated (*heap, to free).
 * 0 if the kernel is to answer the call itself: no tagged fd below nfds,
 * a set unreadable, no dma-buf or sync file in them, or no memory.
 */
static int select_prepare(int nfds, fd_set *const prog[3], const sigset_t *sig,
			  fd_set stack[3], unsigned long *sets[3], unsigned long **heap)
{
	int k;

	*heap = NULL;
	if (__builtin_expect(!active(), 1) || nfds <= 0)
		return 0;
	nfds = bound_nfds(nfds);
	if (!tagged_below(nfds))
		return 0;
	if (nfds > FD_SETSIZE) {
		*heap = malloc(3 * set_bytes(nfds));
		if (!*heap)
			return 0;
	}
	for (k = 0; k < 3; k++)
		sets[k] = *heap ? *heap + k * set_bytes(nfds) / sizeof(long)
				: (unsigned long *)(void *)&stack[k];
	if (!sets_read(nfds, prog, sig, sets) || !sets_have_polled(nfds, prog, sets)) {
		free(*heap);
		*heap = NULL;
		return 0;
	}
	return nfds;
}

/*
 * The kernel's select() failed with err for nfds: the nfds to ask again
 * with, as the kernel would have cut it down for the program's own table,
 * or 0 to keep the answer. Only an answer given before the wait: EBADF
 * (a bit of no open fd, which may be one beyond the program's table) or
 * an EFAULT of the sets' read (a set shorter than the layer's table, not
 * than the program's); an EFAULT of readable sets was the write-back,
 * after the wait, and stands. Failed calls alone pay for this.
 */
static int select_retry_nfds(int nfds, fd_set *const prog[3], int err)
{
	unsigned long none[3] = { 0 }, *probe[3] = { none, none, none }, *heap = NULL;
	int bound;

	if ((err != EBADF && err != EFAULT) || nfds <= table_for(0))
		return 0;
	bound = program_nfds(nfds);
	if (bound >= nfds)
		return 0;
	if (err == EFAULT) {
		/* Readable in full: the write-back's fault, after the wait. */
		heap = malloc(3 * set_bytes(nfds));
		if (heap) {
			for (int k = 0; k < 3; k++)
				probe[k] = heap + k * set_bytes(nfds) / sizeof(long);
			if (sets_read(nfds, prog, NULL, probe))
				bound = 0;
		}
		free(heap);
	}
	return bound;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	fd_set *const prog[3] = { r, w, e };
	fd_set stack[3];
	unsigned long *sets[3], *heap;
	int n, ret;

	if (LAYER_CALL() || !(n = select_prepare(nfds, prog, NULL, stack, sets, &heap))) {
		ret = get_select()(nfds, r, w, e, tv);
		if (ret < 0 && !LAYER_CALL()) {
			int err = errno;

			n = select_retry_nfds(nfds, prog, err);
			errno = err;
			if (n)
				ret = get_select()(n, r, w, e, tv);
		}
		return ret;
	}
	/* libc's select() reads *tv before the system call: no other fault.
	 * Its EINVAL for a negative one (poll_select_set_timeout()'s). */
	if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)) {
		free(heap);
		errno = EINVAL;
		return -1;
	}
	ret = select_as_poll(n, prog, sets,
			     tv ? timeout_ms(tv->tv_sec, (int64_t)tv->tv_usec * 1000) : -1);
	free(heap);
	return ret;
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		   const sigset_t *sig)
{
	fd_set *const prog[3] = { r, w, e };
	fd_set stack[3];
	unsigned long *sets[3], *heap;
	int n, ret;

	if (LAYER_CALL() || !(n = select_prepare(nfds, prog, sig, stack, sets, &heap))) {
		ret = get_pselect()(nfds, r, w, e, ts, sig);
		if (ret < 0 && !LAYER_CALL()) {
			int err = errno;

			n = select_retry_nfds(nfds, prog, err);
			errno = err;
			if (n)
				ret = get_pselect()(n, r, w, e, ts, sig);
		}
		return ret;
	}
	/* The signal mask is not applied while dma-bufs are waited for (only
	 * checked readable); libc's pselect() reads *ts before the call, the
	 * kernel refuses an invalid one (poll_select_set_timeout()). */
	if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000)) {
		free(heap);
		errno = EINVAL;
		return -1;
	}
	ret = select_as_poll(n, prog, sets, ts ? timeout_ms(ts->tv_sec, ts->tv_nsec) : -1);
	free(heap);
	return ret;
}
