/* SPDX-License-Identifier: MIT */
/*
 * Waiting on dma-bufs and sync files: poll, ppoll, select, pselect and
 * epoll (fs/select.c, fs/eventpoll.c) with a dma-buf (dma_buf_poll(), no
 * fences: readable and writable) and a sync file (sync_file_poll(): EPOLLIN
 * once signalled, nothing else) among the fds. The argument checks come
 * first: bad pointers (EFAULT), invalid timeouts (EINVAL), bad signal masks
 * of ppoll and pselect6 (set_user_sigmask()), each with a dma-buf in the set
 * so that an emulation that looks at the fds is on the path. Then what
 * each call reports, and epoll's rules: edge-triggered and one-shot items,
 * one file in two sets, a set made again at a closed set's number, and the
 * argument checks of epoll_ctl and the epoll_wait family.
 *
 * The checks with bad pointers run in a child: a wrapper that dereferences
 * what the kernel would refuse kills the child, and the result is the
 * signal's name instead of a hung or aborted run.
 */
#include "conf.h"

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/sync_file.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The kernel's sigset_t on x86-64 and the argument pack of pselect6. */
#define KSIGSET 8
struct sigpack {
	const void *ss;
	size_t ss_len;
};

static int buf = -1;  /* a dma-buf with no fences */
static int sf = -1;   /* a signalled sync file exported from it */
static int msf = -1;  /* the merge of two such sync files */
static char *edge;    /* the last bytes before an unmapped page */
static char *ro_page; /* a read-only page */
/* An address no mapping holds, hidden from the compiler's bound checks. */
static volatile uintptr_t bad_addr = 8;
#define BAD ((void *)bad_addr)
static volatile int minus_one = -1;

/* "<n>:<revents>,<revents>..." or the errno name. */
static void poll_result(const char *id, long r, const struct pollfd *p, int n)
{
	char out[128];
	size_t used;

	if (r < 0) {
		conf_line(id, "%s", conf_errname(errno));
		return;
	}
	used = (size_t)snprintf(out, sizeof(out), "%ld:", r);
	for (int i = 0; i < n && used < sizeof(out); i++) {
		char ev[32] = "";
		short e = p[i].revents;

		if (e & POLLIN)
			strcat(ev, "|IN");
		if (e & POLLOUT)
			strcat(ev, "|OUT");
		if (e & POLLPRI)
			strcat(ev, "|PRI");
		if (e & POLLERR)
			strcat(ev, "|ERR");
		if (e & POLLHUP)
			strcat(ev, "|HUP");
		if (e & POLLNVAL)
			strcat(ev, "|NVAL");
		if (e & ~(POLLIN | POLLOUT | POLLPRI | POLLERR | POLLHUP | POLLNVAL))
			strcat(ev, "|OTHER");
		used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%s",
					 i ? "," : "", ev[0] ? ev + 1 : "0");
	}
	conf_line(id, "%s", out);
}

/* select's answer for fd as "<n>:" and r/w/x, or the errno name. */
static void select_result(const char *id, long r, int fd, fd_set *rd, fd_set *wr, fd_set *ex)
{
	if (r < 0) {
		conf_line(id, "%s", conf_errname(errno));
		return;
	}
	conf_line(id, "%ld:%s%s%s%s", r,
		  rd && FD_ISSET(fd, rd) ? "r" : "",
		  wr && FD_ISSET(fd, wr) ? "w" : "",
		  ex && FD_ISSET(fd, ex) ? "x" : "",
		  (rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) ||
				  (ex && FD_ISSET(fd, ex))
			  ? ""
			  : "none");
}

/* Runs check(id) in a child; a child killed by a signal gives its name. */
static void guarded(const char *id, void (*check)(const char *id))
{
	int st;
	pid_t pid = fork();

	if (pid < 0) {
		conf_line(id, "fork:%s", conf_errname(errno));
		return;
	}
	if (pid == 0) {
		check(id);
		fflush(stdout);
		_exit(0);
	}
	if (waitpid(pid, &st, 0) < 0)
		conf_line(id, "waitpid:%s", conf_errname(errno));
	else if (WIFSIGNALED(st))
		conf_line(id, "killed:%s", sigabbrev_np(WTERMSIG(st)) ?: "?");
	else if (WEXITSTATUS(st))
		conf_line(id, "exit:%d", WEXITSTATUS(st));
}

/* ------------------------------------------------------------ poll, ppoll */

static void poll_bad_array(const char *id)
{
	conf_sys(id, poll(BAD, 1, 0));
}

/* The dma-buf's entry is readable, the second one is past the page. */
static void poll_array_past_page(const char *id)
{
	struct pollfd *p = (struct pollfd *)(edge - sizeof(*p));

	*p = (struct pollfd){ .fd = buf, .events = POLLIN };
	conf_sys(id, poll(p, 2, 0));
}

/* More entries than RLIMIT_NOFILE, refused before the array is read. */
static void poll_nfds_over_rlimit(const char *id)
{
	conf_sys(id, poll(BAD, 1u << 30, 0));
}

/* The kernel reads the array and fails writing revents back. */
static void poll_readonly_array(const char *id)
{
	conf_sys(id, poll((struct pollfd *)ro_page, 1, 0));
}

static void ppoll_bad_array(const char *id)
{
	struct timespec ts = { 0, 0 };

	conf_sys(id, ppoll(BAD, 1, &ts, NULL));
}

static void ppoll_bad_sigmask(const char *id)
{
	struct pollfd p = { .fd = buf, .events = POLLIN };
	struct timespec ts = { 0, 0 };

	conf_sys(id, ppoll(&p, 1, &ts, BAD));
}

/* glibc copies ppoll's timeout: a bad one goes in by syscall(). */
static void ppoll_bad_timeout(const char *id)
{
	struct pollfd p = { .fd = buf, .events = POLLIN };

	conf_sys(id, syscall(SYS_ppoll, &p, 1, BAD, NULL, KSIGSET));
}

static void ppoll_sigmask_past_page(const char *id)
{
	struct pollfd p = { .fd = buf, .events = POLLIN };
	struct timespec ts = { 0, 0 };

	conf_sys(id, syscall(SYS_ppoll, &p, 1, &ts, edge - 4, KSIGSET));
}

static void poll_checks(void)
{
	struct pollfd p[5];
	struct timespec ts = { 0, 0 };
	sigset_t mask;
	int pfd[2], closed;

	guarded("poll.efault.array", poll_bad_array);
	guarded("poll.efault.array_past_page", poll_array_past_page);
	guarded("poll.efault.array_readonly", poll_readonly_array);
	guarded("poll.einval.nfds_over_rlimit", poll_nfds_over_rlimit);
	conf_sys("poll.null_zero", poll(NULL, 0, 0));

	/* One array of every kind: the kernel answers the fds that are not
	 * dma-bufs or sync files, a negative fd is skipped, a closed one is
	 * POLLNVAL. */
	if (pipe2(pfd, O_CLOEXEC) == 0) {
		closed = dup(pfd[0]);
		close(closed);
		p[0] = (struct pollfd){ .fd = buf, .events = POLLIN | POLLOUT };
		p[1] = (struct pollfd){ .fd = -1, .events = POLLIN };
		p[2] = (struct pollfd){ .fd = sf, .events = POLLIN | POLLOUT };
		p[3] = (struct pollfd){ .fd = closed, .events = POLLIN };
		p[4] = (struct pollfd){ .fd = pfd[1], .events = POLLIN | POLLOUT };
		poll_result("poll.mixed", poll(p, 5, 0), p, 5);
		p[0].revents = p[2].revents = 0;
		poll_result("poll.ppoll_mixed", ppoll(p, 5, &ts, NULL), p, 5);
		close(pfd[0]);
		close(pfd[1]);
	}
	/* The same dma-buf twice, and a sync file asked only for POLLOUT. */
	p[0] = (struct pollfd){ .fd = buf, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = buf, .events = POLLOUT };
	p[2] = (struct pollfd){ .fd = sf, .events = POLLOUT };
	p[3] = (struct pollfd){ .fd = msf, .events = POLLIN | POLLPRI };
	poll_result("poll.twice_and_out_only", poll(p, 4, 0), p, 4);

	guarded("ppoll.efault.array", ppoll_bad_array);
	guarded("ppoll.efault.sigmask", ppoll_bad_sigmask);
	guarded("ppoll.efault.timeout", ppoll_bad_timeout);
	guarded("ppoll.efault.sigmask_past_page", ppoll_sigmask_past_page);
	p[0] = (struct pollfd){ .fd = buf, .events = POLLIN | POLLOUT };
	ts = (struct timespec){ 0, 1000000000 };
	conf_sys("ppoll.einval.nsec_1e9", ppoll(p, 1, &ts, NULL));
	ts = (struct timespec){ 0, -1 };
	conf_sys("ppoll.einval.nsec_negative", ppoll(p, 1, &ts, NULL));
	ts = (struct timespec){ -1, 0 };
	conf_sys("ppoll.einval.sec_negative", ppoll(p, 1, &ts, NULL));
	/* The timeout is checked before the mask, the mask before the fds. */
	conf_sys("ppoll.einval.timeout_before_sigmask",
		 syscall(SYS_ppoll, p, 1, &ts, BAD, KSIGSET));
	sigemptyset(&mask);
	ts = (struct timespec){ 0, 0 };
	conf_sys("ppoll.einval.sigsetsize",
		 syscall(SYS_ppoll, p, 1, &ts, &mask, KSIGSET + 8));
	conf_sys("ppoll.einval.sigsetsize_before_array",
		 syscall(SYS_ppoll, BAD, 1, &ts, &mask, 4));
	/* No mask: its size is not looked at. */
	p[0].revents = 0;
	poll_result("ppoll.sigsetsize_no_mask",
		    syscall(SYS_ppoll, p, 1, &ts, NULL, 1), p, 1);
	p[0].revents = 0;
	poll_result("ppoll.with_mask", ppoll(p, 1, &ts, &mask), p, 1);
	p[0] = (struct pollfd){ .fd = sf, .events = POLLIN | POLLOUT };
	poll_result("ppoll.sync_file", ppoll(p, 1, NULL, &mask), p, 1);
}

/* -------------------------------------------------------- select, pselect */

static void select_bad_readfds(const char *id)
{
	struct timeval tv = { 0, 0 };

	conf_sys(id, select(buf + 1, BAD, NULL, NULL, &tv));
}

static void select_bad_exceptfds(const char *id)
{
	fd_set r;
	struct timeval tv = { 0, 0 };

	FD_ZERO(&r);
	FD_SET(buf, &r);
	conf_sys(id, select(buf + 1, &r, NULL, BAD, &tv));
}

/* The kernel reads and writes only the bytes nfds covers: a set of 8
 * bytes before an unmapped page is whole for nfds <= 64. */
static void select_short_set(const char *id)
{
	fd_set *r = (fd_set *)(edge - 8);
	struct timeval tv = { 0, 0 };

	if (buf >= 64) {
		conf_line(id, "fd_over_63");
		return;
	}
	memset(r, 0, 8);
	FD_SET(buf, r);
	select_result(id, select(buf + 1, r, NULL, NULL, &tv), buf, r, NULL, NULL);
}

/* nfds 65 needs 16 bytes: the second 8 are past the page. */
static void select_set_past_page(const char *id)
{
	fd_set *r = (fd_set *)(edge - 8);
	struct timeval tv = { 0, 0 };

	memset(r, 0, 8);
	FD_SET(buf, r);
	conf_sys(id, select(65, r, NULL, NULL, &tv));
}

/* nfds 1 << 20 with a set of 512 bytes (4096 bits) before an unmapped
 * page: core_sys_select() cuts nfds down to the fd table, far below
 * 4096 here, so nothing past the page is read, and bit 4000 (no fd
 * there, beyond the table) is neither refused (EBADF) nor cleared. */
static void select_nfds_beyond_table(const char *id)
{
	unsigned long *r = (unsigned long *)(edge - 512);
	int far = 4000, lb = 8 * (int)sizeof(long);
	struct timeval tv = { 0, 0 };
	long n;

	if (sf >= far || fcntl(far, F_GETFD) >= 0) {
		conf_line(id, "fd_at_4000");
		return;
	}
	memset(r, 0, 512);
	r[sf / lb] |= 1ul << (sf % lb);
	r[far / lb] |= 1ul << (far % lb);
	n = select(1 << 20, (fd_set *)r, NULL, NULL, &tv);
	if (n < 0) {
		conf_line(id, "%s", conf_errname(errno));
		return;
	}
	conf_line(id, "%ld:%s:%s", n, r[sf / lb] >> (sf % lb) & 1 ? "r" : "none",
		  r[far / lb] >> (far % lb) & 1 ? "far_kept" : "far_cleared");
}

/* Read, polled, and refused when the answer is written back. */
static void select_readonly_set(const char *id)
{
	struct timeval tv = { 0, 0 };

	conf_sys(id, select(buf + 1, (fd_set *)(ro_page + 64), NULL, NULL, &tv));
}

static void pselect_bad_sigmask(const char *id)
{
	fd_set r;
	struct timespec ts = { 0, 0 };

	FD_ZERO(&r);
	FD_SET(buf, &r);
	conf_sys(id, pselect(buf + 1, &r, NULL, NULL, &ts, BAD));
}

static void pselect_bad_pack(const char *id)
{
	fd_set r;
	struct timespec ts = { 0, 0 };

	FD_ZERO(&r);
	FD_SET(buf, &r);
	conf_sys(id, syscall(SYS_pselect6, buf + 1, &r, NULL, NULL, &ts, BAD));
}

static void pselect_bad_timeout(const char *id)
{
	fd_set r;

	FD_ZERO(&r);
	FD_SET(buf, &r);
	conf_sys(id, syscall(SYS_pselect6, buf + 1, &r, NULL, NULL, BAD, NULL));
}

static void select_one(const char *id, int fd, int want_r, int want_w, int want_x, int use_pselect)
{
	fd_set r, w, x;
	struct timeval tv = { 0, 0 };
	struct timespec ts = { 0, 0 };
	long n;

	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_ZERO(&x);
	if (want_r)
		FD_SET(fd, &r);
	if (want_w)
		FD_SET(fd, &w);
	if (want_x)
		FD_SET(fd, &x);
	n = use_pselect ? pselect(fd + 1, &r, &w, &x, &ts, NULL) : select(fd + 1, &r, &w, &x, &tv);
	select_result(id, n, fd, &r, &w, &x);
}

static void select_checks(void)
{
	fd_set r, w;
	struct timeval tv;
	struct timespec ts;
	sigset_t mask;
	struct sigpack pack;

	select_one("select.dmabuf.rwx", buf, 1, 1, 1, 0);
	select_one("select.dmabuf.w", buf, 0, 1, 0, 0);
	select_one("select.sync.rwx", sf, 1, 1, 1, 0);
	select_one("select.sync.w", sf, 0, 1, 0, 0);
	select_one("select.merged.rw", msf, 1, 1, 0, 0);
	select_one("pselect.dmabuf.rwx", buf, 1, 1, 1, 1);
	select_one("pselect.sync.rwx", sf, 1, 1, 1, 1);
	select_one("pselect.sync.w", sf, 0, 1, 0, 1);

	guarded("select.efault.readfds", select_bad_readfds);
	guarded("select.efault.exceptfds", select_bad_exceptfds);
	guarded("select.efault.set_past_page", select_set_past_page);
	guarded("select.efault.readonly_set", select_readonly_set);
	guarded("select.short_set", select_short_set);
	guarded("select.nfds_beyond_table", select_nfds_beyond_table);
	conf_sys("select.einval.nfds_negative", select(-1, NULL, NULL, NULL, NULL));

	FD_ZERO(&r);
	FD_SET(buf, &r);
	tv = (struct timeval){ -1, 0 };
	conf_sys("select.einval.sec_negative", select(buf + 1, &r, NULL, NULL, &tv));
	tv = (struct timeval){ 0, -1 };
	conf_sys("select.einval.usec_negative", select(buf + 1, &r, NULL, NULL, &tv));
	/* A tv_usec of a second or more is carried into tv_sec, as the
	 * kernel's select() does. */
	tv = (struct timeval){ 0, 1000001 };
	select_result("select.usec_over_1e6", select(buf + 1, &r, NULL, NULL, &tv), buf, &r, NULL, NULL);

	guarded("pselect.efault.sigmask", pselect_bad_sigmask);
	guarded("pselect.efault.sigpack", pselect_bad_pack);
	guarded("pselect.efault.timeout", pselect_bad_timeout);
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(buf, &r);
	FD_SET(buf, &w);
	ts = (struct timespec){ 0, 1000000000 };
	conf_sys("pselect.einval.nsec_1e9", pselect(buf + 1, &r, &w, NULL, &ts, NULL));
	ts = (struct timespec){ 0, -1 };
	conf_sys("pselect.einval.nsec_negative", pselect(buf + 1, &r, &w, NULL, &ts, NULL));
	ts = (struct timespec){ -1, 0 };
	conf_sys("pselect.einval.sec_negative", pselect(buf + 1, &r, &w, NULL, &ts, NULL));
	sigemptyset(&mask);
	ts = (struct timespec){ 0, 0 };
	pack = (struct sigpack){ &mask, KSIGSET + 8 };
	conf_sys("pselect.einval.sigsetsize",
		 syscall(SYS_pselect6, buf + 1, &r, &w, NULL, &ts, &pack));
	/* No mask in the pack: its size is not looked at. */
	pack = (struct sigpack){ NULL, 1 };
	FD_SET(buf, &r);
	FD_SET(buf, &w);
	select_result("pselect.sigsetsize_no_mask",
		      syscall(SYS_pselect6, buf + 1, &r, &w, NULL, &ts, &pack), buf, &r, &w, NULL);
	FD_SET(buf, &r);
	FD_SET(buf, &w);
	select_result("pselect.with_mask", pselect(buf + 1, &r, &w, NULL, &ts, &mask), buf, &r, &w, NULL);
}

/* ------------------------------------------------------------------ epoll */

/* "<n>:<file>=<events>,..." of one epoll_wait with no timeout, or the
 * errno name. */
static void epoll_result(const char *id, int ep)
{
	struct epoll_event out[4];
	char ev[64] = "";
	int n = epoll_wait(ep, out, 4, 0);

	if (n < 0) {
		conf_line(id, "%s", conf_errname(errno));
		return;
	}
	/* in file order: the ready list's order is not part of the interface */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && out[j - 1].data.u32 > out[j].data.u32; j--) {
			struct epoll_event t = out[j];

			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	for (int i = 0; i < n; i++) {
		uint32_t e = out[i].events;
		char one[32] = "";

		if (e & EPOLLIN)
			strcat(one, "|IN");
		if (e & EPOLLOUT)
			strcat(one, "|OUT");
		if (e & EPOLLPRI)
			strcat(one, "|PRI");
		if (e & EPOLLERR)
			strcat(one, "|ERR");
		if (e & EPOLLHUP)
			strcat(one, "|HUP");
		if (e & EPOLLRDHUP)
			strcat(one, "|RDHUP");
		if (e & ~(uint32_t)(EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
			strcat(one, "|OTHER");
		snprintf(ev + strlen(ev), sizeof(ev) - strlen(ev), "%s%s=%s", i ? "," : "",
			 out[i].data.u32 == 0 ? "buf" : out[i].data.u32 == 1 ? "sync" : "merged",
			 one[0] ? one + 1 : "0");
	}
	conf_line(id, "%d:%s", n, n ? ev : "none");
}

/* epoll_ctl with which file it is as the item's data: 0 the dma-buf, 1
 * the sync file, 2 the merged one. */
static int ctl(int ep, int op, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u32 = fd == buf ? 0 : fd == sf ? 1 : 2 };

	return epoll_ctl(ep, op, fd, &ev);
}

static int epoll_with(int fd, uint32_t events)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		return -errno;
	if (ctl(ep, EPOLL_CTL_ADD, fd, events) < 0) {
		int e = errno;

		close(ep);
		return -e;
	}
	return ep;
}

/* An item with the given interest: the add, then three waits in a row. */
static void epoll_item(const char *id, int fd, uint32_t events)
{
	char name[96];
	int ep = epoll_with(fd, events);

	snprintf(name, sizeof(name), "%s.add", id);
	conf_neg(name, ep);
	if (ep < 0)
		return;
	snprintf(name, sizeof(name), "%s.wait", id);
	epoll_result(name, ep);
	snprintf(name, sizeof(name), "%s.wait_again", id);
	epoll_result(name, ep);
	snprintf(name, sizeof(name), "%s.wait_third", id);
	epoll_result(name, ep);
	close(ep);
}

static void epoll_mod_rearm(const char *id, int fd, uint32_t events)
{
	char name[96];
	int ep = epoll_with(fd, events);

	if (ep < 0) {
		conf_neg(id, ep);
		return;
	}
	epoll_result(id, ep);
	snprintf(name, sizeof(name), "%s.after_mod", id);
	if (ctl(ep, EPOLL_CTL_MOD, fd, events) < 0)
		conf_line(name, "mod:%s", conf_errname(errno));
	else
		epoll_result(name, ep);
	close(ep);
}

/* The argument checks of epoll_ctl and the epoll_wait family, with a
 * ready dma-buf and sync file in the set (an emulation that looks at the
 * reported items is on the path). */
static int args_ep = -1;

static void epoll_wait_bad_events(const char *id)
{
	conf_sys(id, epoll_wait(args_ep, BAD, 4, 0));
}

static void epoll_pwait_bad_sigmask(const char *id)
{
	struct epoll_event out[4];

	conf_sys(id, epoll_pwait(args_ep, out, 4, 0, BAD));
}

static void epoll_pwait2_bad_timeout(const char *id)
{
	struct epoll_event out[4];

	conf_sys(id, syscall(SYS_epoll_pwait2, args_ep, out, 4, BAD, NULL, KSIGSET));
}

static void epoll_ctl_bad_event(const char *id)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	conf_sys(id, epoll_ctl(ep, EPOLL_CTL_ADD, buf, BAD));
}

static void epoll_ctl_bad_event_sync(const char *id)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	conf_sys(id, epoll_ctl(ep, EPOLL_CTL_ADD, sf, BAD));
}

static void epoll_ctl_mod_bad_event(const char *id)
{
	conf_sys(id, epoll_ctl(args_ep, EPOLL_CTL_MOD, buf, BAD));
}

/* The event is copied before either fd is looked at. */
static void epoll_ctl_bad_event_closed_epfd(const char *id)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);

	close(ep);
	conf_sys(id, epoll_ctl(ep, EPOLL_CTL_ADD, buf, BAD));
}

/* DEL takes no event: the pointer is not looked at. */
static void epoll_ctl_del_bad_event(const char *id)
{
	int ep = epoll_with(buf, EPOLLIN);

	conf_sys(id, ep < 0 ? ep : epoll_ctl(ep, EPOLL_CTL_DEL, buf, BAD));
}

static void epoll_arg_checks(void)
{
	struct epoll_event out[4];
	struct timespec ts;
	sigset_t mask;
	int pfd[2];

	args_ep = epoll_with(buf, EPOLLIN | EPOLLOUT);
	if (args_ep < 0 || ctl(args_ep, EPOLL_CTL_ADD, sf, EPOLLIN) < 0) {
		conf_line("epoll.args.setup", "%s", conf_errname(args_ep < 0 ? -args_ep : errno));
		return;
	}
	guarded("epoll.args.wait_efault_events", epoll_wait_bad_events);
	guarded("epoll.args.pwait_efault_sigmask", epoll_pwait_bad_sigmask);
	guarded("epoll.args.pwait2_efault_timeout", epoll_pwait2_bad_timeout);
	guarded("epoll.args.ctl_efault_event", epoll_ctl_bad_event);
	guarded("epoll.args.ctl_efault_event_sync", epoll_ctl_bad_event_sync);
	guarded("epoll.args.ctl_mod_efault_event", epoll_ctl_mod_bad_event);
	guarded("epoll.args.ctl_efault_before_ebadf", epoll_ctl_bad_event_closed_epfd);
	guarded("epoll.args.ctl_del_bad_event", epoll_ctl_del_bad_event);
	conf_sys("epoll.args.wait_maxevents_0", epoll_wait(args_ep, out, 0, 0));
	conf_sys("epoll.args.wait_maxevents_negative", epoll_wait(args_ep, out, minus_one, 0));
	conf_sys("epoll.args.wait_not_epoll", epoll_wait(buf, out, 4, 0));
	conf_sys("epoll.args.wait_not_epoll_sync", epoll_wait(sf, out, 4, 0));
	conf_sys("epoll.args.ctl_not_epoll", ctl(buf, EPOLL_CTL_ADD, sf, EPOLLIN));
	conf_sys("epoll.args.ctl_self", ctl(args_ep, EPOLL_CTL_ADD, args_ep, EPOLLIN));
	conf_sys("epoll.args.ctl_bad_op", ctl(args_ep, 99, buf, EPOLLIN));
	conf_sys("epoll.args.ctl_closed_fd", ctl(args_ep, EPOLL_CTL_ADD, 1000, EPOLLIN));
	if (pipe2(pfd, O_CLOEXEC) == 0) {
		int closed = pfd[0];

		close(pfd[0]);
		close(pfd[1]);
		conf_sys("epoll.args.wait_closed_epfd", epoll_wait(closed, out, 4, 0));
	}
	sigemptyset(&mask);
	conf_sys("epoll.args.pwait_sigsetsize",
		 syscall(SYS_epoll_pwait, args_ep, out, 4, 0, &mask, KSIGSET + 8));
	ts = (struct timespec){ 0, 1000000000 };
	conf_sys("epoll.args.pwait2_nsec_1e9",
		 syscall(SYS_epoll_pwait2, args_ep, out, 4, &ts, NULL, KSIGSET));
	ts = (struct timespec){ -1, 0 };
	conf_sys("epoll.args.pwait2_sec_negative",
		 syscall(SYS_epoll_pwait2, args_ep, out, 4, &ts, NULL, KSIGSET));
	ts = (struct timespec){ 0, 0 };
	conf_sys("epoll.args.pwait2_sigsetsize",
		 syscall(SYS_epoll_pwait2, args_ep, out, 4, &ts, &mask, KSIGSET + 8));
	/* What epoll_pwait and epoll_pwait2 report, with a mask. */
	epoll_result("epoll.args.wait_both", args_ep);
	{
		int n = epoll_pwait(args_ep, out, 4, 0, &mask);

		conf_line("epoll.args.pwait_count", "%s", n < 0 ? conf_errname(errno) : n == 2 ? "2" : "other");
		n = (int)syscall(SYS_epoll_pwait2, args_ep, out, 4, &ts, &mask, KSIGSET);
		conf_line("epoll.args.pwait2_count", "%s", n < 0 ? conf_errname(errno) : n == 2 ? "2" : "other");
	}
	close(args_ep);
	args_ep = -1;
}

static void epoll_checks(void)
{
	uint32_t ev = EPOLLIN | EPOLLOUT;
	int ep1, ep2, ep3, num;

	/* A sync file is EPOLLIN once signalled, never EPOLLOUT or
	 * EPOLLHUP, whatever is asked. */
	epoll_item("epoll.sync.inout", sf, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI);
	epoll_item("epoll.sync.out_only", sf, EPOLLOUT);
	epoll_item("epoll.sync.none", sf, 0);
	epoll_item("epoll.sync.et", sf, EPOLLIN | EPOLLET);
	epoll_item("epoll.sync.oneshot", sf, EPOLLIN | EPOLLONESHOT);
	epoll_mod_rearm("epoll.sync.et_rearm", sf, EPOLLIN | EPOLLET);
	epoll_mod_rearm("epoll.sync.oneshot_rearm", sf, EPOLLIN | EPOLLONESHOT);
	epoll_item("epoll.merged.inout", msf, EPOLLIN | EPOLLOUT);
	/* A dma-buf with no fences: readable and writable. */
	epoll_item("epoll.dmabuf.inout", buf, EPOLLIN | EPOLLOUT);
	epoll_item("epoll.dmabuf.out_only", buf, EPOLLOUT);
	/* Edge-triggered: with no fences, dma_buf_poll() wakes the file's
	 * waiters itself (dma_buf_poll_cb() when no callback could be
	 * added), so each look at the item queues it again. */
	epoll_item("epoll.dmabuf.et", buf, EPOLLIN | EPOLLOUT | EPOLLET);
	epoll_item("epoll.dmabuf.et_in", buf, EPOLLIN | EPOLLET);
	epoll_item("epoll.dmabuf.et_out", buf, EPOLLOUT | EPOLLET);
	epoll_item("epoll.dmabuf.oneshot", buf, EPOLLIN | EPOLLONESHOT);
	epoll_mod_rearm("epoll.dmabuf.et_rearm", buf, EPOLLIN | EPOLLOUT | EPOLLET);

	/* The ctl rules on one item. */
	ep1 = epoll_create1(EPOLL_CLOEXEC);
	if (ep1 < 0) {
		conf_line("epoll.create", "%s", conf_errname(errno));
		return;
	}
	conf_sys("epoll.ctl.mod_absent", ctl(ep1, EPOLL_CTL_MOD, buf, ev));
	conf_sys("epoll.ctl.del_absent", ctl(ep1, EPOLL_CTL_DEL, buf, 0));
	conf_sys("epoll.ctl.add", ctl(ep1, EPOLL_CTL_ADD, buf, ev));
	conf_sys("epoll.ctl.add_again", ctl(ep1, EPOLL_CTL_ADD, buf, ev));
	conf_sys("epoll.ctl.add_sync", ctl(ep1, EPOLL_CTL_ADD, sf, ev));
	conf_sys("epoll.ctl.add_sync_again", ctl(ep1, EPOLL_CTL_ADD, sf, ev));
	conf_sys("epoll.ctl.del", ctl(ep1, EPOLL_CTL_DEL, buf, 0));
	conf_sys("epoll.ctl.del_again", ctl(ep1, EPOLL_CTL_DEL, buf, 0));
	conf_sys("epoll.ctl.add_after_del", ctl(ep1, EPOLL_CTL_ADD, buf, ev));
	ev = EPOLLIN | EPOLLEXCLUSIVE;
	conf_sys("epoll.ctl.mod_exclusive", ctl(ep1, EPOLL_CTL_MOD, buf, ev));
	epoll_result("epoll.ctl.both_wait", ep1);

	/* The same dma-buf and sync file in a second set. */
	ep2 = epoll_create1(EPOLL_CLOEXEC);
	ev = EPOLLIN | EPOLLOUT;
	conf_sys("epoll.two_sets.add_dmabuf", ctl(ep2, EPOLL_CTL_ADD, buf, ev));
	conf_sys("epoll.two_sets.add_sync", ctl(ep2, EPOLL_CTL_ADD, sf, ev));
	epoll_result("epoll.two_sets.second_wait", ep2);
	epoll_result("epoll.two_sets.first_wait", ep1);
	conf_sys("epoll.two_sets.del_first", ctl(ep1, EPOLL_CTL_DEL, buf, 0));
	epoll_result("epoll.two_sets.second_after_del", ep2);

	/* A set made again at a closed set's number knows nothing of the
	 * old one's items. */
	num = ep2;
	close(ep2);
	ep3 = epoll_create1(EPOLL_CLOEXEC);
	conf_line("epoll.remade.same_number", "%s", ep3 == num ? "yes" : "no");
	conf_sys("epoll.remade.mod_old_item", ctl(ep3, EPOLL_CTL_MOD, buf, ev));
	conf_sys("epoll.remade.add_dmabuf", ctl(ep3, EPOLL_CTL_ADD, buf, ev));
	conf_sys("epoll.remade.add_sync", ctl(ep3, EPOLL_CTL_ADD, sf, ev));
	epoll_result("epoll.remade.wait", ep3);
	epoll_result("epoll.remade.first_still", ep1);
	close(ep3);
	close(ep1);
}

void conf_poll_section(void)
{
	char *map;
	int hi;

	buf = conf_heap_alloc(PAGE, O_RDWR | O_CLOEXEC);
	sf = buf < 0 ? buf : conf_export_sync(buf, DMA_BUF_SYNC_READ);
	if (sf >= 0) {
		int b = conf_export_sync(buf, DMA_BUF_SYNC_WRITE);
		struct sync_merge_data m = { .fd2 = b, .name = "conf-poll" };

		msf = b < 0 || ioctl(sf, SYNC_IOC_MERGE, &m) < 0 ? -errno : m.fence;
		if (b >= 0)
			close(b);
	}
	map = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf < 0 || sf < 0 || msf < 0 || map == MAP_FAILED) {
		conf_unavailable("poll.setup", conf_errname(buf < 0 ? -buf : sf < 0 ? -sf : msf < 0 ? -msf : errno));
		goto out;
	}
	/* page 0 read-only (a pollfd at 0, an fd_set at 64), page 1
	 * read-write, page 2 unmapped */
	munmap(map + 2 * PAGE, PAGE);
	ro_page = map;
	memset(ro_page, 0, PAGE);
	((struct pollfd *)ro_page)->fd = buf;
	((struct pollfd *)ro_page)->events = POLLIN;
	((fd_set *)(ro_page + 64))->fds_bits[0] |= 1ul << buf;
	mprotect(ro_page, PAGE, PROT_READ);
	edge = map + 2 * PAGE;
	/* select reads FDS_BYTES(nfds) with nfds cut to the fd table's size,
	 * and a child's table is as large as its highest open fd needs: an fd
	 * held at 200 during the checks makes the table larger than 64 here
	 * as the layer's high fds do under the emulation, so that nfds 65
	 * means 16 bytes on both. */
	hi = fcntl(sf, F_DUPFD_CLOEXEC, 200);
	poll_checks();
	select_checks();
	epoll_checks();
	epoll_arg_checks();
	if (hi >= 0)
		close(hi);
	munmap(map, 2 * PAGE);
out:
	if (msf >= 0)
		close(msf);
	if (sf >= 0)
		close(sf);
	if (buf >= 0)
		close(buf);
	buf = sf = msf = -1;
}
