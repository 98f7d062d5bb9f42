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
 * holder shut R down (W is kept). Only these rare paths pay for it (three
 * syscalls: fstat, sendto, recv, on the process's socket below; socket
 * and close more when nothing holds it); the record's path is unchanged.
 * Apart from the exporting and importing sides because both ask it.
 */
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <poll.h>
#include <sys/syscall.h>
#include <time.h>
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

/*
 * The process's diagnostics socket: every question is asked on it, under
 * its lock, each with a number of its own (a reply left over from an
 * earlier question, whose recv() failed, is skipped). It exists while
 * something holds it: an imported fence while it has its copy of R, the
 * watcher's instance while it runs, and a question asked with no other
 * holder (which then makes it and closes it, as one socket per question
 * did). So a wait, a status or the watcher's look at a pending imported
 * fence needs no new fd: under an fd limit with no number free it is
 * still answered (the kernel's sync_file never fails for want of an fd),
 * and no fd of the library outlives the last fence that needs one.
 * Lock 8b of docs/design.md §8: a leaf, taken under the watcher's lock,
 * a fence lock or dmb_sf_lock.
 */
static struct {
	pthread_mutex_t lock;
	int fd;			/* -1 while nobody holds it */
	unsigned int holds;
	uint32_t seq;
} diag = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

bool dmb_sf_diag_scarce(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOMEM || err == -ENOBUFS;
}

int dmb_sf_diag_hold(void)
{
	int ret = 0;

	pthread_mutex_lock(&diag.lock);
	if (diag.fd < 0) {
		diag.fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
		if (diag.fd < 0)
			ret = -errno;
	}
	if (!ret)
		diag.holds++;
	pthread_mutex_unlock(&diag.lock);
	return ret;
}

void dmb_sf_diag_release(void)
{
	pthread_mutex_lock(&diag.lock);
	if (--diag.holds == 0 && diag.fd >= 0) {
		close(diag.fd);
		diag.fd = -1;
	}
	pthread_mutex_unlock(&diag.lock);
}

/* Under diag.lock: asks the question q on the socket, the answer into a. */
static ssize_t diag_ask_locked(void *q, size_t qlen, struct nlmsghdr *a, size_t alen)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	struct nlmsghdr *h = q;
	ssize_t n;

	h->nlmsg_seq = ++diag.seq;
	do
		n = sendto(diag.fd, q, qlen, 0, (struct sockaddr *)&sa, sizeof(sa));
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)qlen)
		return n < 0 ? -errno : -EPROTO;
	do
		n = recv(diag.fd, a, alen, 0);
	while ((n < 0 && errno == EINTR) ||
	       (n >= (ssize_t)NLMSG_HDRLEN && a->nlmsg_seq != h->nlmsg_seq));
	return n < 0 ? -errno : n;
}

int dmb_sf_peer_open(int fd)
{
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} q = {
		.h = { .nlmsg_len = sizeof(q), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		       .nlmsg_flags = NLM_F_REQUEST },
		.r = { .sdiag_family = AF_UNIX, .udiag_show = UDIAG_SHOW_PEER,
		       .udiag_cookie = { ~0u, ~0u } },
	};
	union {
		struct nlmsghdr h;
		char b[512];
	} a;
	struct unix_diag_msg *m;
	struct rtattr *at;
	struct stat st;
	ssize_t n;
	int len, ret;

	if (fstat(fd, &st))
		return -errno;
	q.r.udiag_ino = (unsigned int)st.st_ino;
	/* Held by the caller's fence or the watcher: no syscall here. */
	ret = dmb_sf_diag_hold();
	if (ret)
		return ret;
	pthread_mutex_lock(&diag.lock);
	n = diag_ask_locked(&q, sizeof(q), &a.h, sizeof(a));
	pthread_mutex_unlock(&diag.lock);
	dmb_sf_diag_release();
	if (n < 0)
		return (int)n;
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

/*
 * R's readiness (POLLHUP, POLLERR), or POLLHUP when poll cannot say. The
 * kernel's own view of the socket, asked by a raw ppoll: under the uapi
 * preload with a sanitizer, poll() reaches the preload from the
 * sanitizer's interceptor, which the preload cannot tell from the
 * program, and its emulated poll of a sync file would come back here.
 */
static short peer_poll(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct timespec zero = { 0, 0 };
	long r;

	do
		r = syscall(SYS_ppoll, &p, 1, &zero, NULL, 0);
	while (r < 0 && errno == EINTR);
	return r < 0 ? POLLHUP : p.revents;
}

int dmb_sf_eof_truth(int fd, int *error, int64_t *ts)
{
	struct sf_name nm;
	int open;

	if (dmb_sf_parse_name(fd, &nm))
		goto gone;
	/* Seen without a question (no fd, no syscall but poll): W's last
	 * close shuts R down both ways, which R polls as POLLHUP; R at EOF
	 * without it was shut down for reading by a holder, and W is open
	 * (its status, bound before W closes, is looked for all the same). */
	if (!(peer_poll(fd) & (POLLHUP | POLLERR))) {
		if (peer_status(fd, &nm, error, ts))
			return 1;
		return 0;
	}
	/* W's state first: a signaller binds W before it closes it, so a
	 * closed W shows its status, if it has one, to the look after. */
	open = dmb_sf_peer_open(fd);
	if (peer_status(fd, &nm, error, ts))
		return 1;
	if (open > 0)
		return 0; /* a holder shut R down: still pending */
	/* No answer for want of an fd or memory: not known, never taken as
	 * the signal (the caller looks again later, or says so). */
	if (dmb_sf_diag_scarce(open))
		return open;
	/* W closed without a status, or no answer (no socket diagnostics
	 * here, another network namespace): as a signaller gone. */
gone:
	*error = DMABUF_FENCE_ESIGNALLER;
	*ts = dmb_now_ns();
	return 1;
}

/* ---- fork: the child's own socket ----------------------------------------- */

static void diag_atfork_prepare(void)
{
	pthread_mutex_lock(&diag.lock);
}

static void diag_atfork_parent(void)
{
	pthread_mutex_unlock(&diag.lock);
}

/* The parent's socket is one netlink port shared by both processes: either
 * could read the other's answers. The child's holders (its copies of the
 * imported fences) keep theirs on a socket of its own, made in the number
 * the parent's one frees (so even a child with no fd number free has it);
 * without one its questions make their own, as when nobody holds it. */
static void diag_atfork_child(void)
{
	pthread_mutex_unlock(&diag.lock);
	if (diag.fd < 0)
		return;
	close(diag.fd);
	diag.fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
}

__attribute__((constructor)) static void diag_init(void)
{
	/* diag.lock is 8b in the lock order (docs/design.md §8): a leaf,
	 * after dmb_sf_lock (8), which the sweep asks under. */
	dmb_fork_hook_add(9, diag_atfork_prepare, diag_atfork_parent, diag_atfork_child);
}
