/* SPDX-License-Identifier: MIT */
/*
 * SCM_RIGHTS send/receive, the public fd-passing helpers (dmabuf-scm.h),
 * and the sg-entries memfd of the wire protocol.
 *
 * Fd hygiene, as libwayland's connection.c does it and a little more:
 * MSG_CMSG_CLOEXEC so no fd leaks into an exec between recvmsg and fcntl;
 * every cmsg walked (a peer or the kernel may deliver several); fds in a
 * truncated or otherwise failed receive closed before returning; control
 * buffers zeroed and aligned through a union with struct cmsghdr.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "base.h"
#include "scm.h"
#include "wire.h"

#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04	/* Linux 6.5: an fd, closed like any other */
#endif

#define SCM_MAX_IOV 4

union scm_ctrl_send {
	struct cmsghdr align;
	char buf[CMSG_SPACE(sizeof(int) * DMB_SCM_MAX_FDS)];
};

/* Room for our fds plus what the kernel may add unasked or if the socket
 * has SO_PASSCRED / SO_PASSPIDFD set: credentials and a pidfd. */
union scm_ctrl_recv {
	struct cmsghdr align;
	char buf[CMSG_SPACE(sizeof(int) * DMB_SCM_MAX_FDS) +
		 CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int))];
};

void dmb_scm_close_fds(int *fds, size_t n)
{
	int saved = errno;

	for (size_t i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
	errno = saved;
}

static int wait_for(int sock, short events)
{
	struct pollfd pfd = { .fd = sock, .events = events };

	for (;;) {
		int r = poll(&pfd, 1, -1);

		if (r >= 0)
			return 0;	/* HUP/ERR: the next call reports it */
		if (errno != EINTR)
			return -errno;
	}
}

/* ---- send ------------------------------------------------------------------ */

static int sendv_flags(int sock, const struct iovec *iov_in, size_t iovcnt,
		       const int *fds, size_t nfds, int flags)
{
	union scm_ctrl_send ctrl;
	struct iovec iov[SCM_MAX_IOV];
	struct msghdr msg = { 0 };
	size_t total = 0, sent = 0, first = 0;
	int err;

	if (!iov_in || iovcnt == 0 || iovcnt > SCM_MAX_IOV ||
	    nfds > DMB_SCM_MAX_FDS || (nfds && !fds))
		return -EINVAL;
	for (size_t i = 0; i < iovcnt; i++) {
		if (iov_in[i].iov_len && !iov_in[i].iov_base)
			return -EINVAL;
		if (iov_in[i].iov_len > SIZE_MAX - total)
			return -EINVAL;
		total += iov_in[i].iov_len;
		iov[i] = iov_in[i];
	}
	/* Ancillary data rides on data bytes: never send it alone. */
	if (total == 0)
		return -EINVAL;

	err = dmb_sys_fail(DMB_SYS_SENDMSG);
	if (err)
		return -err;

	memset(&ctrl, 0, sizeof(ctrl));
	if (nfds) {
		struct cmsghdr *cmsg;

		msg.msg_control = ctrl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
	}

	while (sent < total) {
		ssize_t n;

		msg.msg_iov = iov + first;
		msg.msg_iovlen = iovcnt - first;
		/* Without fds, one buffer goes by send(): the same call to the
		 * socket, without the msghdr and iovec copied in (issue 11). */
		if (!msg.msg_controllen && msg.msg_iovlen == 1)
			n = send(sock, iov[first].iov_base, iov[first].iov_len,
				 MSG_NOSIGNAL | flags);
		else
			n = sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if ((errno == EAGAIN || errno == EWOULDBLOCK) && sent) {
				/* Part of a stream message is out: finish it. */
				err = wait_for(sock, POLLOUT);
				if (err)
					return err;
				continue;
			}
			return -errno;
		}
		/* The fds went with the first byte. */
		msg.msg_control = NULL;
		msg.msg_controllen = 0;
		sent += (size_t)n;
		while (n > 0 && first < iovcnt) {
			size_t step = (size_t)n < iov[first].iov_len
					      ? (size_t)n : iov[first].iov_len;

			iov[first].iov_base = (char *)iov[first].iov_base + step;
			iov[first].iov_len -= step;
			n -= (ssize_t)step;
			if (iov[first].iov_len == 0)
				first++;
		}
		while (first < iovcnt && iov[first].iov_len == 0)
			first++;
	}
	return 0;
}

int dmb_scm_sendv(int sock, const struct iovec *iov_in, size_t iovcnt,
		  const int *fds, size_t nfds)
{
	return sendv_flags(sock, iov_in, iovcnt, fds, nfds, 0);
}

int dmb_scm_send_flags(int sock, const void *data, size_t len, const int *fds,
		       size_t nfds, int flags)
{
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };

	if (!data || len == 0 || (flags & ~MSG_DONTWAIT))
		return -EINVAL;
	return sendv_flags(sock, &iov, 1, fds, nfds, flags);
}

int dmb_scm_send(int sock, const void *data, size_t len, const int *fds,
		 size_t nfds)
{
	return dmb_scm_send_flags(sock, data, len, fds, nfds, 0);
}

int dmb_scm_send_many(int sock, const struct dmb_scm_out *pkts, size_t count,
		      int flags)
{
	union scm_ctrl_send ctrl[DMB_SCM_MAX_BATCH];
	struct iovec iov[DMB_SCM_MAX_BATCH];
	struct mmsghdr mm[DMB_SCM_MAX_BATCH];
	int n, err;

	if (!pkts || count == 0 || count > DMB_SCM_MAX_BATCH || (flags & ~MSG_DONTWAIT))
		return -EINVAL;
	memset(mm, 0, sizeof(mm[0]) * count);
	for (size_t i = 0; i < count; i++) {
		const struct dmb_scm_out *p = &pkts[i];

		if (!p->data || !p->len || p->nfds > DMB_SCM_MAX_FDS || (p->nfds && !p->fds))
			return -EINVAL;
		iov[i] = (struct iovec){ .iov_base = (void *)p->data, .iov_len = p->len };
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
		if (p->nfds) {
			struct cmsghdr *cmsg;

			memset(&ctrl[i], 0, sizeof(ctrl[i]));
			mm[i].msg_hdr.msg_control = ctrl[i].buf;
			mm[i].msg_hdr.msg_controllen = CMSG_SPACE(sizeof(int) * p->nfds);
			cmsg = CMSG_FIRSTHDR(&mm[i].msg_hdr);
			cmsg->cmsg_level = SOL_SOCKET;
			cmsg->cmsg_type = SCM_RIGHTS;
			cmsg->cmsg_len = CMSG_LEN(sizeof(int) * p->nfds);
			memcpy(CMSG_DATA(cmsg), p->fds, sizeof(int) * p->nfds);
		}
	}
	err = dmb_sys_fail(DMB_SYS_SENDMSG);
	if (err)
		return -err;
	do {
		/* One packet without fds (a request the importer packed, issue
		 * 11): send(), which copies in no msghdr; on a SEQPACKET or
		 * datagram socket it sends all of it or fails, as the packet
		 * in sendmmsg() would. */
		if (count == 1 && !pkts[0].nfds)
			n = send(sock, pkts[0].data, pkts[0].len, MSG_NOSIGNAL | flags) < 0 ? -1 : 1;
		else
			n = sendmmsg(sock, mm, (unsigned int)count, MSG_NOSIGNAL | flags);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

/* ---- receive ---------------------------------------------------------------- */

/* After MSG_CTRUNC: -EMFILE when this process is at RLIMIT_NOFILE (the
 * kernel installs fds until one fails, then truncates), else 0. */
static int fd_table_full(int sock)
{
	int fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	return errno == EMFILE || errno == ENFILE ? -errno : 0;
}

ssize_t dmb_scm_recv(int sock, void *data, size_t cap, int *fds,
		     size_t max_fds, size_t *nfds)
{
	return dmb_scm_recv_lossy(sock, data, cap, fds, max_fds, nfds, NULL);
}

ssize_t dmb_scm_recv_lossy(int sock, void *data, size_t cap, int *fds,
			   size_t max_fds, size_t *nfds, bool *fds_lost)
{
	return dmb_scm_recv_lossy_flags(sock, data, cap, fds, max_fds, nfds,
					fds_lost, 0);
}

/*
 * What one received packet amounts to (see dmb_scm_recv()): its fds are
 * collected first, whatever happens next. @table_full: -EMFILE/-ENFILE or
 * 0 as fd_table_full() found it, or 1 when not probed yet (it is probed
 * before any fd that arrived is closed: they may be what filled the
 * table).
 */
static ssize_t recv_finish(int sock, struct msghdr *msg, ssize_t n, int *fds,
			   size_t max_fds, size_t *nfds, bool *fds_lost,
			   int table_full)
{
	int got[sizeof(union scm_ctrl_recv) / sizeof(int)];
	size_t ngot = 0;
	struct cmsghdr *cmsg;
	int err;

	for (cmsg = CMSG_FIRSTHDR(msg); cmsg; cmsg = CMSG_NXTHDR(msg, cmsg)) {
		size_t k;

		if (cmsg->cmsg_level != SOL_SOCKET ||
		    (cmsg->cmsg_type != SCM_RIGHTS &&
		     cmsg->cmsg_type != SCM_PIDFD) ||
		    cmsg->cmsg_len < CMSG_LEN(0))
			continue;
		k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(fd));
			if (cmsg->cmsg_type == SCM_PIDFD) {
				close(fd);	/* not asked for */
				continue;
			}
			if (ngot < DMB_ARRAY_SIZE(got))
				got[ngot++] = fd;
			else
				close(fd);
		}
	}

	if (n == 0)
		err = -ECONNRESET;
	else if (msg->msg_flags & MSG_TRUNC)
		err = -EMSGSIZE;
	else if (ngot > max_fds)
		err = -EPROTO;
	else if (msg->msg_flags & MSG_CTRUNC)
		err = (table_full == 1 ? fd_table_full(sock) : table_full) ?: -EPROTO;
	else
		err = 0;
	if (err == -EMFILE || err == -ENFILE) {
		dmb_scm_close_fds(got, ngot);
		if (!fds_lost)
			return err;
		*fds_lost = true;	/* the data is intact */
		return n;
	}
	if (err) {
		dmb_scm_close_fds(got, ngot);
		return err;
	}
	if (ngot)
		memcpy(fds, got, ngot * sizeof(int));
	*nfds = ngot;
	return n;
}

static bool recv_args_ok(const void *data, size_t cap, const int *fds,
			 size_t max_fds, const size_t *nfds, int flags)
{
	return nfds && data && cap && max_fds <= DMB_SCM_MAX_FDS &&
	       (!max_fds || fds) && !(flags & ~MSG_DONTWAIT);
}

static void recv_reset(int *fds, size_t max_fds, size_t *nfds, bool *fds_lost)
{
	*nfds = 0;
	if (fds_lost)
		*fds_lost = false;
	for (size_t i = 0; i < max_fds; i++)
		fds[i] = -1;
}

ssize_t dmb_scm_recv_lossy_flags(int sock, void *data, size_t cap, int *fds,
				 size_t max_fds, size_t *nfds, bool *fds_lost,
				 int flags)
{
	union scm_ctrl_recv ctrl;
	struct iovec iov = { .iov_base = data, .iov_len = cap };
	struct msghdr msg = { 0 };
	ssize_t n;
	int err;

	if (!recv_args_ok(data, cap, fds, max_fds, nfds, flags))
		return -EINVAL;
	recv_reset(fds, max_fds, nfds, fds_lost);

	err = dmb_sys_fail(DMB_SYS_RECVMSG);
	if (err)
		return -err;

	memset(&ctrl, 0, sizeof(ctrl));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctrl.buf;
	msg.msg_controllen = sizeof(ctrl.buf);
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return recv_finish(sock, &msg, n, fds, max_fds, nfds, fds_lost, 1);
}

int dmb_scm_recv_many(int sock, struct dmb_scm_pkt *pkts, size_t count, int flags)
{
	union scm_ctrl_recv ctrl[DMB_SCM_MAX_BATCH];
	struct iovec iov[DMB_SCM_MAX_BATCH];
	struct mmsghdr mm[DMB_SCM_MAX_BATCH];
	int table_full = 1, n, err;

	if (!pkts || count == 0 || count > DMB_SCM_MAX_BATCH)
		return -EINVAL;
	for (size_t i = 0; i < count; i++) {
		struct dmb_scm_pkt *p = &pkts[i];

		if (!recv_args_ok(p->data, p->cap, p->fds, p->max_fds, &p->nfds, flags))
			return -EINVAL;
		recv_reset(p->fds, p->max_fds, &p->nfds, &p->lost);
		p->len = 0;
	}

	err = dmb_sys_fail(DMB_SYS_RECVMSG);
	if (err)
		return -err;

	memset(mm, 0, sizeof(mm[0]) * count);
	for (size_t i = 0; i < count; i++) {
		memset(&ctrl[i], 0, sizeof(ctrl[i]));
		iov[i] = (struct iovec){ .iov_base = pkts[i].data, .iov_len = pkts[i].cap };
		mm[i].msg_hdr.msg_iov = &iov[i];
		mm[i].msg_hdr.msg_iovlen = 1;
		mm[i].msg_hdr.msg_control = ctrl[i].buf;
		mm[i].msg_hdr.msg_controllen = sizeof(ctrl[i].buf);
	}
	do {
		n = recvmmsg(sock, mm, (unsigned int)count, MSG_CMSG_CLOEXEC | flags, NULL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	/* One probe for the whole batch, before any fd is closed. */
	for (int i = 0; i < n; i++)
		if (mm[i].msg_hdr.msg_flags & MSG_CTRUNC) {
			table_full = fd_table_full(sock);
			break;
		}
	for (int i = 0; i < n; i++) {
		struct dmb_scm_pkt *p = &pkts[i];

		p->len = recv_finish(sock, &mm[i].msg_hdr, (ssize_t)mm[i].msg_len,
				     p->fds, p->max_fds, &p->nfds, &p->lost,
				     table_full);
	}
	return n;
}

/* ---- public helpers ------------------------------------------------------------ */

#define FRAME_MAGIC 0x46424d44u	/* "DMBF" */
#define FRAME_HDR 8u

static int sock_type(int sock)
{
	int type;
	socklen_t len = sizeof(type);

	if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return -errno;
	if (type != SOCK_STREAM && type != SOCK_SEQPACKET && type != SOCK_DGRAM)
		return -EINVAL;
	return type;
}

static void frame_put(uint8_t *h, size_t len, int nfds)
{
	uint32_t magic = FRAME_MAGIC;

	for (int i = 0; i < 4; i++)
		h[i] = (uint8_t)(magic >> (8 * i));
	h[4] = (uint8_t)len;
	h[5] = (uint8_t)(len >> 8);
	h[6] = (uint8_t)nfds;
	h[7] = 0;
}

/* Returns the payload length, or -EPROTO for a header we did not write. */
static int frame_get(const uint8_t *h, size_t nfds)
{
	uint32_t magic = (uint32_t)h[0] | (uint32_t)h[1] << 8 |
			 (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
	size_t len = (size_t)h[4] | (size_t)h[5] << 8;

	if (magic != FRAME_MAGIC || h[6] != nfds || h[7] != 0 ||
	    len > DMABUF_SCM_MAX_PAYLOAD)
		return -EPROTO;
	return (int)len;
}

DMABUF_EXPORT int dmabuf_send_fd(int sock, int fd, const void *payload,
				 size_t len)
{
	uint8_t hdr[FRAME_HDR];
	struct iovec iov[2];

	if (len > DMABUF_SCM_MAX_PAYLOAD || (len && !payload) || fd < -1)
		return -EINVAL;
	/* No up-front checks of sock or fd: sendmsg() reports -ENOTSOCK and
	 * -EBADF itself, and the framing is the same for every socket type. */

	frame_put(hdr, len, fd >= 0);
	iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
	iov[1] = (struct iovec){ .iov_base = (void *)payload, .iov_len = len };
	return dmb_scm_sendv(sock, iov, len ? 2 : 1, fd >= 0 ? &fd : NULL,
			     fd >= 0);
}

/*
 * Stream: reads exactly len bytes into buf (which may be a scratch buffer),
 * adding any fds that arrive to fds/nfds (at most max). *started tells
 * whether a byte of this message was read before: before that, -EAGAIN is
 * returned as is; after it, the rest is waited for. *lost is set when fds
 * came that RLIMIT_NOFILE kept out.
 */
static int stream_read(int sock, uint8_t *buf, size_t len, int *fds,
		       size_t *nfds, size_t max, bool *started, bool *lost)
{
	size_t done = 0;

	while (done < len) {
		int more[DMB_SCM_MAX_FDS];
		size_t nmore = 0;
		bool gone;
		ssize_t n;

		n = dmb_scm_recv_lossy(sock, buf + done, len - done, more,
				       DMB_SCM_MAX_FDS, &nmore, &gone);
		if (n > 0 && gone)
			*lost = true;	/* read on: stay in step */
		if (n == -EAGAIN && *started) {
			int err = wait_for(sock, POLLIN);

			if (err)
				return err;
			continue;
		}
		if (n < 0)
			return (int)n;
		*started = true;
		if (nmore > max - *nfds) {
			dmb_scm_close_fds(more, nmore);
			return -EPROTO;
		}
		memcpy(fds + *nfds, more, nmore * sizeof(int));
		*nfds += nmore;
		done += (size_t)n;
	}
	return 0;
}

DMABUF_EXPORT int dmabuf_recv_fd(int sock, int *fd, void *payload, size_t cap,
				 size_t *len)
{
	uint8_t buf[FRAME_HDR + DMABUF_SCM_MAX_PAYLOAD];
	int fds[1] = { -1 };
	size_t nfds = 0, plen;
	bool lost = false;
	int type, ret;

	if (!fd || (cap && !payload))
		return -EINVAL;
	type = sock_type(sock);
	if (type < 0)
		return type;

	if (type == SOCK_STREAM) {
		bool started = false;

		ret = stream_read(sock, buf, FRAME_HDR, fds, &nfds, 1, &started, &lost);
		if (ret < 0)
			goto fail;
		ret = frame_get(buf, lost ? buf[6] : nfds);
		if (ret < 0)
			goto fail;
		plen = (size_t)ret;
		/* Read the payload even if it will not fit: the stream must
		 * stay in step with the sender. No fd may come with it. */
		ret = stream_read(sock, buf + FRAME_HDR, plen, fds, &nfds, nfds,
				  &started, &lost);
		if (ret < 0)
			goto fail;
	} else {
		ssize_t n = dmb_scm_recv_lossy(sock, buf, sizeof(buf), fds, 1, &nfds, &lost);

		if (n < 0)
			return (int)n;
		ret = -EPROTO;
		if ((size_t)n < FRAME_HDR)
			goto fail;
		ret = frame_get(buf, lost ? buf[6] : nfds);
		if (ret < 0)
			goto fail;
		plen = (size_t)ret;
		if (plen != (size_t)n - FRAME_HDR) {
			ret = -EPROTO;
			goto fail;
		}
	}

	if (lost) {
		/* A whole message of ours whose fd RLIMIT_NOFILE kept out. */
		ret = -EMFILE;
		goto fail;
	}
	if (plen > cap) {
		ret = -EMSGSIZE;
		goto fail;
	}
	if (plen)
		memcpy(payload, buf + FRAME_HDR, plen);
	*fd = nfds ? fds[0] : -1;
	if (len)
		*len = plen;
	return 0;

fail:
	dmb_scm_close_fds(fds, nfds);
	return ret;
}

/* ---- sg-entries memfd ------------------------------------------------------------ */

#define SG_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

/* Whether struct dmabuf_sg_entry in memory is its wire form (three
 * little-endian u64: dmb_wire_put_sg()): then a table travels with one
 * pwrite() and one pread(), no encoding (a 1 GiB buffer of 64 KiB
 * segments: 16,384 entries, 97 calls of 4080 bytes a side before). */
#define SG_NATIVE (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ &&                 \
		   sizeof(struct dmabuf_sg_entry) == DMB_WIRE_SG_ENTRY_SIZE &&      \
		   offsetof(struct dmabuf_sg_entry, length) == 8 &&                 \
		   offsetof(struct dmabuf_sg_entry, phys) == 16)

/* pwrite()/pread() of all @len bytes at @pos; a short count goes on,
 * EOF reads as -EPROTO (a sealed file cannot shrink: be safe). */
static int sg_io(int fd, void *buf, size_t len, bool write)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = write ? pwrite(fd, (uint8_t *)buf + off, len - off, (off_t)off)
				  : pread(fd, (uint8_t *)buf + off, len - off, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return write ? -EIO : -EPROTO;
		off += (size_t)n;
	}
	return 0;
}

int dmb_scm_sg_memfd_create(const struct dmabuf_sg_entry *sg, size_t count)
{
	size_t bytes = count * DMB_WIRE_SG_ENTRY_SIZE;
	uint8_t *wire = NULL;
	int fd, err;

	if (!sg || count == 0 || count > DMB_WIRE_MAX_SG_ENTRIES)
		return -EINVAL;
	err = dmb_sys_fail(DMB_SYS_MEMFD_CREATE);
	if (err)
		return -err;
	if (!SG_NATIVE) {
		wire = malloc(bytes);
		if (!wire)
			return -ENOMEM;
		for (size_t i = 0; i < count; i++)
			dmb_wire_put_sg(wire + i * DMB_WIRE_SG_ENTRY_SIZE, &sg[i]);
	}
	fd = memfd_create("dmabuf-sg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		err = -errno;
		free(wire);
		return err;
	}
	/* The write sizes the file: no ftruncate(). */
	err = sg_io(fd, wire ? (void *)wire : (void *)sg, bytes, true);
	free(wire);
	if (err == 0 && fcntl(fd, F_ADD_SEALS, SG_SEALS) < 0)
		err = -errno;
	if (err < 0) {
		close(fd);
		return err;
	}
	return fd;
}

int dmb_scm_sg_memfd_read(int fd, uint32_t count, uint64_t size,
			  struct dmabuf_sg_entry **out)
{
	struct dmabuf_sg_entry *sg;
	struct stat st;
	int seals, ret;

	if (!out)
		return -EINVAL;
	if (count == 0 || count > DMB_WIRE_MAX_SG_ENTRIES)
		return -EPROTO;
	if (fstat(fd, &st) < 0)
		return -errno;
	/* Only a memfd takes seals; F_SEAL_WRITE means no writable mapping
	 * exists and none can appear, so what we check is what we use. */
	seals = fcntl(fd, F_GET_SEALS);
	if (!S_ISREG(st.st_mode) || seals < 0 ||
	    (seals & SG_SEALS) != SG_SEALS ||
	    (uint64_t)st.st_size != (uint64_t)count * DMB_WIRE_SG_ENTRY_SIZE)
		return -EPROTO;

	if (dmb_sys_fail(DMB_SYS_CALLOC))
		return -ENOMEM;
	sg = calloc(count, sizeof(*sg));
	if (!sg)
		return -ENOMEM;
	/* The wire bytes land in the array; decoded in place (entry i's
	 * bytes are where entry i goes) unless they are its form already. */
	ret = sg_io(fd, sg, (size_t)count * DMB_WIRE_SG_ENTRY_SIZE, false);
	if (ret < 0)
		goto fail;
	if (!SG_NATIVE) {
		for (size_t i = count; i-- > 0;) {
			struct dmabuf_sg_entry e;

			dmb_wire_get_sg((const uint8_t *)sg + i * DMB_WIRE_SG_ENTRY_SIZE, &e);
			sg[i] = e;
		}
	}
	ret = dmb_wire_check_sg(sg, count, size);
	if (ret < 0)
		goto fail;
	*out = sg;
	return 0;

fail:
	free(sg);
	return ret;
}
