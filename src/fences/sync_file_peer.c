/* SPDX-License-Identifier: MIT */
/*
 * What a sync file's socket says is not always the truth: any holder of R
 * can shutdown() it (it is one socket, shared by every holder), and then R
 * reads EOF and polls POLLIN in every process, which is also what a
 * signaller gone looks like. The kernel's sync_file cannot be signalled by
 * a holder, so an EOF without a record is only believed once this file has
 * asked the kernel about the other end:
 * - whether W is still open: the socket diagnostics (NETLINK_SOCK_DIAG,
 *   UNIX_DIAG_PEER) name R's peer by its inode while W is open, and 0 once
 *   W is closed (the kernel orphans W's sock at its last close). Nothing a
 *   holder of R can do changes that;
 * - the signal's status when R could not take the record (a holder shut R
 *   down for reading before the signal: the send fails with EPIPE): the
 *   signaller binds W to a name that carries it, and getpeername() of R
 *   reads it in every process, whatever state R is in. Only W's holder (the
 *   signaller) can bind W, once.
 * So EOF with W closed and no status is a signaller gone, EOF with a status
 * is the signal, and EOF with W open and no status is a holder's shutdown:
 * the fence is still pending. The same question tells the signaller apart
 * a W end whose every R is gone (closed: the sweep closes W) from one whose
 * holder shut R down (W is kept). Only these rare paths pay for it (five
 * syscalls: fstat, socket, sendto, recv, close; three on the watcher
 * thread, which asks on a socket of its own); the record's path is
 * unchanged.
 * Apart from the exporting and importing sides because both ask it.
 */
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sync_file_private.h"

/* W's name once it carries the status: pid, serial, error, timestamp. */
#define SF_STATUS_PREFIX SF_PREFIX "S/"

int dmb_sf_diag_socket(void)
{
	return socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
}

int dmb_sf_peer_open(int fd)
{
	/* A question's number: a reply left over from an earlier question on
	 * the watcher's socket (a recv that failed) is skipped. */
	static atomic_uint seq;
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} q = {
		.h = { .nlmsg_len = sizeof(q), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		       .nlmsg_flags = NLM_F_REQUEST },
		.r = { .sdiag_family = AF_UNIX, .udiag_show = UDIAG_SHOW_PEER,
		       .udiag_cookie = { ~0u, ~0u } },
	};
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	union {
		struct nlmsghdr h;
		char b[512];
	} a;
	struct unix_diag_msg *m;
	struct rtattr *at;
	struct stat st;
	ssize_t n;
	int nl, len, ret = 0;
	bool own;

	if (fstat(fd, &st))
		return -errno;
	q.r.udiag_ino = (unsigned int)st.st_ino;
	q.h.nlmsg_seq = atomic_fetch_add_explicit(&seq, 1, memory_order_relaxed) + 1;
	/* The watcher asks on its own socket (it lives as long as its
	 * epoll set: no fd of a question comes and goes there, where the
	 * holders' shutdowns make it ask); any other thread, in a call of
	 * its caller's, on one of the call's own. */
	nl = dmb_sf_watcher_diag();
	own = nl < 0;
	if (own)
		nl = dmb_sf_diag_socket();
	if (nl < 0)
		return -errno;
	do
		n = sendto(nl, &q, sizeof(q), 0, (struct sockaddr *)&sa, sizeof(sa));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(q)) {
		do
			n = recv(nl, &a, sizeof(a), 0);
		while ((n < 0 && errno == EINTR) ||
		       (n >= (ssize_t)NLMSG_HDRLEN && a.h.nlmsg_seq != q.h.nlmsg_seq));
	} else {
		n = -1;
	}
	if (n < 0)
		ret = -errno;
	if (own)
		close(nl);
	if (ret)
		return ret;
	if (n < (ssize_t)NLMSG_HDRLEN || !NLMSG_OK(&a.h, (size_t)n))
		return -EPROTO;
	if (a.h.nlmsg_type == NLMSG_ERROR) {
		struct nlmsgerr *e = NLMSG_DATA(&a.h);

		/* ENOENT: R is not in this network namespace's table. */
		return e->error ? e->error : -EPROTO;
	}
	if (a.h.nlmsg_type != SOCK_DIAG_BY_FAMILY ||
	    a.h.nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
		return -EPROTO;
	m = NLMSG_DATA(&a.h);
	if (m->udiag_ino != q.r.udiag_ino)
		return -EPROTO;
	at = (struct rtattr *)(m + 1);
	len = (int)(a.h.nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
	for (; RTA_OK(at, len); at = RTA_NEXT(at, len))
		if (at->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(at) >= sizeof(uint32_t)) {
			uint32_t peer;

			memcpy(&peer, RTA_DATA(at), sizeof(peer));
			return peer != 0;
		}
	/* No peer attribute: the socket has no peer at all. */
	return 0;
}

int dmb_sf_bind_status(int wfd, long pid, unsigned long serial, int error, int64_t ts)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int n = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1,
			 SF_STATUS_PREFIX "%ld/%lu/%d/%lld", pid, serial, error, (long long)ts);

	if (bind(wfd, (struct sockaddr *)&addr, offsetof(struct sockaddr_un, sun_path) + 1 + n))
		return -errno;
	return 0;
}

/* The status W's name carries: 1 and *error, *ts, or 0 (none yet). */
static int peer_status(int fd, const struct sf_name *nm, int *error, int64_t *ts)
{
	struct sockaddr_un addr;
	socklen_t len = sizeof(addr);
	char name[sizeof(addr.sun_path)];
	size_t nlen, plen = strlen(SF_STATUS_PREFIX);
	long pid;
	unsigned long serial;
	long long t;
	int e;

	if (getpeername(fd, (struct sockaddr *)&addr, &len) ||
	    len <= offsetof(struct sockaddr_un, sun_path) + 1 || addr.sun_path[0] != '\0')
		return 0;
	nlen = len - offsetof(struct sockaddr_un, sun_path) - 1;
	memcpy(name, addr.sun_path + 1, nlen);
	name[nlen] = '\0';
	if (strncmp(name, SF_STATUS_PREFIX, plen) ||
	    sscanf(name + plen, "%ld/%lu/%d/%lld", &pid, &serial, &e, &t) != 4)
		return 0;
	/* W's name is its signaller's: the one R's name says. */
	if (pid != nm->pid || serial != nm->serial || e > 0 || e < -4095)
		return 0;
	*error = e;
	*ts = t;
	return 1;
}

int dmb_sf_eof_truth(int fd, int *error, int64_t *ts)
{
	struct sf_name nm;
	int open;

	if (dmb_sf_parse_name(fd, &nm))
		goto gone;
	/* W's state first: a signaller binds W before it closes it, so a
	 * closed W shows its status, if it has one, to the look after. */
	open = dmb_sf_peer_open(fd);
	if (peer_status(fd, &nm, error, ts))
		return 1;
	if (open > 0)
		return 0; /* a holder shut R down: still pending */
	/* W closed without a status, or no answer (no socket diagnostics
	 * here, another network namespace): as a signaller gone. */
gone:
	*error = DMABUF_FENCE_ESIGNALLER;
	*ts = dmb_now_ns();
	return 1;
}
