/* SPDX-License-Identifier: MIT */
/*
 * SCM_RIGHTS plumbing (scm.c): the only place where fds enter or leave the
 * process over a socket, and the I/O half of the wire protocol (the sealed
 * memfd that carries large sg lists).
 *
 * Rules every function here keeps: received fds are O_CLOEXEC
 * (MSG_CMSG_CLOEXEC); on any error every fd that arrived is closed before
 * returning, so a caller never holds an fd it was not told about; sends use
 * MSG_NOSIGNAL (a closed peer is -EPIPE, never SIGPIPE); EINTR is retried.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dmabuf.h"

/* Most fds one receive takes in. More than that truncates the control data
 * (MSG_CTRUNC) and fails; callers pass their own, smaller, limit. */
#define DMB_SCM_MAX_FDS 16u

/*
 * Sends one message with @nfds fds attached to its first byte.
 * @len must be >= 1 (ancillary data needs a data byte). On a SOCK_STREAM
 * socket partial writes are continued (waiting with poll() if the socket is
 * non-blocking and part of the message already went out), so the message is
 * never cut; SOCK_SEQPACKET sends are atomic.
 * The fds are borrowed: the kernel takes its own references.
 *
 * Returns 0; -EINVAL (len 0, too many fds, NULL pointers); -EAGAIN when a
 * non-blocking socket is full and nothing was sent; -EPIPE/-ECONNRESET
 * when the peer is gone; -EMSGSIZE for a packet larger than the socket
 * allows; -EBADF for a bad fd to send; any other sendmsg errno.
 */
int dmb_scm_send(int sock, const void *data, size_t len, const int *fds,
		 size_t nfds);

/* The same with @flags added to sendmsg()'s: 0 or MSG_DONTWAIT (a blocking
 * socket that must not block here); anything else is -EINVAL. */
int dmb_scm_send_flags(int sock, const void *data, size_t len, const int *fds,
		       size_t nfds, int flags);

/* One packet of dmb_scm_send_many(): its bytes and the fds it carries
 * (borrowed). */
struct dmb_scm_out {
	const void *data;
	size_t len;
	const int *fds;
	size_t nfds;
};

/*
 * Sends up to DMB_SCM_MAX_BATCH packets in order with one sendmmsg() (one
 * packet without fds: send()) (SOCK_SEQPACKET / SOCK_DGRAM: each one
 * whole), @flags as
 * dmb_scm_send_flags(). Returns how many went (>= 1; the rest did not),
 * or the errno of the first one as dmb_scm_send() (-EAGAIN: none went).
 */
int dmb_scm_send_many(int sock, const struct dmb_scm_out *pkts, size_t count,
		      int flags);

/* Same with a gather list (at most 4 parts). */
struct iovec;
int dmb_scm_sendv(int sock, const struct iovec *iov, size_t iovcnt,
		  const int *fds, size_t nfds);

/*
 * Receives one packet (SOCK_SEQPACKET/DGRAM) or what one read returns
 * (SOCK_STREAM) into @data, and the fds that came with it into @fds
 * (filled with -1 beyond *nfds).
 *
 * Returns the number of bytes (>= 1) with *nfds set; or, with every fd that
 * arrived already closed and *nfds = 0:
 *  -EAGAIN       non-blocking socket, nothing to read
 *  -ECONNRESET   the peer closed (a 0-byte read: EOF, or an empty packet,
 *                which the protocol forbids)
 *  -EMSGSIZE     the packet was larger than @cap (MSG_TRUNC)
 *  -EMFILE       this process is at RLIMIT_NOFILE: the kernel could not
 *                install every fd that came (MSG_CTRUNC with the fd table
 *                full); the packet is consumed
 *  -EPROTO       more fds than @max_fds arrived, or the kernel truncated the
 *                control data for another reason (more than
 *                DMB_SCM_MAX_FDS fds)
 *  -EINVAL       bad arguments; any other recvmsg errno
 * SCM_CREDENTIALS is ignored; an SCM_PIDFD fd is closed.
 */
ssize_t dmb_scm_recv(int sock, void *data, size_t cap, int *fds,
		     size_t max_fds, size_t *nfds);

/*
 * The same, except where dmb_scm_recv() returns -EMFILE (or -ENFILE):
 * the packet's length is returned, with *nfds = 0, every fd that did arrive
 * closed and *fds_lost = true, so the caller can still tell which request
 * the packet was and fail only that one.
 */
ssize_t dmb_scm_recv_lossy(int sock, void *data, size_t cap, int *fds,
			   size_t max_fds, size_t *nfds, bool *fds_lost);

/* The same with @flags added to recvmsg()'s: 0 or MSG_DONTWAIT (-EINVAL
 * otherwise). On a blocking socket with SO_RCVTIMEO, 0 waits up to that
 * time and then returns -EAGAIN. */
ssize_t dmb_scm_recv_lossy_flags(int sock, void *data, size_t cap, int *fds,
				 size_t max_fds, size_t *nfds, bool *fds_lost,
				 int flags);

/* Most packets one dmb_scm_recv_many() takes in. */
#define DMB_SCM_MAX_BATCH 4u

/* One packet of dmb_scm_recv_many(): data, cap, fds and max_fds are the
 * caller's; len (bytes, or a negative errno as dmb_scm_recv_lossy()
 * returns), nfds and lost are filled. */
struct dmb_scm_pkt {
	void *data;
	size_t cap;
	int *fds;
	size_t max_fds;
	ssize_t len;
	size_t nfds;
	bool lost;
};

/*
 * Receives up to @count (<= DMB_SCM_MAX_BATCH) packets in one recvmmsg()
 * call, each as dmb_scm_recv_lossy() would (its result in pkts[i].len, its
 * fds closed when that is negative). @flags: 0 or MSG_DONTWAIT. Returns
 * how many packets came (>= 1; fewer than @count on a non-blocking socket
 * means it had no more), or a negative errno with nothing received
 * (-EAGAIN: nothing to read).
 */
int dmb_scm_recv_many(int sock, struct dmb_scm_pkt *pkts, size_t count, int flags);

/* Closes fds[0..n) that are >= 0 and sets them to -1. Keeps errno. */
void dmb_scm_close_fds(int *fds, size_t n);

/*
 * The sg-entries memfd of MAP_REPLY (docs/protocol.md): count little-endian
 * entries of 24 bytes, sealed against shrink, grow, write and further seals.
 * Returns a new O_CLOEXEC memfd or a negative errno.
 */
int dmb_scm_sg_memfd_create(const struct dmabuf_sg_entry *sg, size_t count);

/*
 * Reads and checks an sg-entries memfd received from a peer: a memfd with
 * (at least) F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL, size
 * exactly count * 24, entries passing dmb_wire_check_sg(sg, count, size).
 * The fd is borrowed. On success *out is a malloc'ed array of count entries.
 * Returns 0; -EPROTO for anything a well-behaved peer does not send; -ENOMEM;
 * an errno from fstat/pread.
 */
int dmb_scm_sg_memfd_read(int fd, uint32_t count, uint64_t size,
			  struct dmabuf_sg_entry **out);
