/* SPDX-License-Identifier: MIT */
/*
 * Readiness: a dma-buf's is its fences', which no file of the kernel here
 * reports, and a sync file's is the record in its socket (POLLIN only).
 * poll(), ppoll(), select() and pselect() with such an fd among theirs
 * poll the others for real and re-check the buffers every millisecond.
 * (epoll is epoll.c's.) Apart because it is the one family that waits.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/select.h>
#include <time.h>

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

/*
 * A dma-buf's readiness is its fences', which no file of the kernel here
 * reports: poll the other fds for real and re-check the buffers' fences
 * every millisecond until something is ready or the timeout passes.
 */
static int emulated_poll(struct pollfd *fds, nfds_t n, int timeout)
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
		return get_poll()(fds, n, timeout);
	}
	for (i = 0; i < n; i++) {
		kinds[i] = dmb_preload_fd_kind(fds[i].fd);
		any |= polled_kind(kinds[i]);
	}
	if (!any) {
		free(kinds);
		free(copy);
		free(shut);
		return get_poll()(fds, n, timeout);
	}
	for (;;) {
		int slice;

		ready = 0;
		for (i = 0; i < n; i++) {
			copy[i] = fds[i];
			copy[i].revents = 0;
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
		ret = get_poll()(copy, n, slice);
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

/* True if any fd of the set is tagged (may be an emulated one). */
static inline bool any_tagged(const struct pollfd *fds, nfds_t n)
{
	nfds_t i;

	for (i = 0; i < n; i++)
		if (dmb_preload_fd_maybe(fds[i].fd))
			return true;
	return false;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (!any_tagged(fds, n) || LAYER_CALL())
		return get_poll()(fds, n, timeout);
	return emulated_poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *sig)
{
	nfds_t i;

	if (!any_tagged(fds, n) || LAYER_CALL())
		return get_ppoll()(fds, n, ts, sig);
	for (i = 0; i < n; i++)
		if (polled_kind(dmb_preload_fd_kind(fds[i].fd)))
			break;
	if (i == n)
		return get_ppoll()(fds, n, ts, sig);
	/* The signal mask is not applied while dma-bufs are polled. */
	return emulated_poll(fds, n, ts ? (int)(ts->tv_sec * 1000 + ts->tv_nsec / 1000000) : -1);
}

/* select() and pselect() on dma-bufs: the same readiness, through poll. */
static int select_as_poll(int nfds, fd_set *r, fd_set *w, fd_set *e, int timeout_ms)
{
	struct pollfd *p;
	int fd, n = 0, i, ret, bits = 0;

	p = calloc((size_t)nfds, sizeof(*p));
	if (!p) {
		errno = ENOMEM;
		return -1;
	}
	for (fd = 0; fd < nfds; fd++) {
		short ev = (r && FD_ISSET(fd, r) ? POLLIN : 0) |
			   (w && FD_ISSET(fd, w) ? POLLOUT : 0) | (e && FD_ISSET(fd, e) ? POLLPRI : 0);

		if (ev)
			p[n++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	ret = emulated_poll(p, (nfds_t)n, timeout_ms);
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
		FD_ZERO(r);
	if (w)
		FD_ZERO(w);
	if (e)
		FD_ZERO(e);
	for (i = 0; i < n; i++) {
		short rev = p[i].revents;

		if (r && (p[i].events & POLLIN) && (rev & (POLLIN | POLLHUP | POLLERR))) {
			FD_SET(p[i].fd, r);
			bits++;
		}
		if (w && (p[i].events & POLLOUT) && (rev & (POLLOUT | POLLERR))) {
			FD_SET(p[i].fd, w);
			bits++;
		}
		if (e && (p[i].events & POLLPRI) && (rev & POLLPRI)) {
			FD_SET(p[i].fd, e);
			bits++;
		}
	}
	free(p);
	return bits;
}

/* True if a dma-buf is among the fds of the sets (active processes only). */
static bool sets_have_dmabuf(int nfds, fd_set *r, fd_set *w, fd_set *e)
{
	int fd;

	if (!atomic_load_explicit(&dmb_preload_active, memory_order_relaxed) || nfds <= 0 || nfds > FD_SETSIZE)
		return false;

	for (fd = 0; fd < nfds; fd++)
		if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w))) &&
		    polled_kind(dmb_preload_fd_kind(fd)))
			return true;
	return false;
}

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	if (LAYER_CALL() || !sets_have_dmabuf(nfds, r, w, e))
		return get_select()(nfds, r, w, e, tv);
	return select_as_poll(nfds, r, w, e,
			      tv ? (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000) : -1);
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		   const sigset_t *sig)
{
	if (LAYER_CALL() || !sets_have_dmabuf(nfds, r, w, e))
		return get_pselect()(nfds, r, w, e, ts, sig);
	/* The signal mask is not applied while dma-bufs are waited for. */
	return select_as_poll(nfds, r, w, e,
			      ts ? (int)(ts->tv_sec * 1000 + ts->tv_nsec / 1000000) : -1);
}
