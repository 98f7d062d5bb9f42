/* SPDX-License-Identifier: MIT */
/*
 * Fences across processes and fence bookkeeping costs.
 *
 * Two processes (fork): A signals, B waits. Rounds of the library and of its
 * baseline are interleaved and reported as the ratio of their medians.
 *
 *   wake-up       A creates N fences (dmabuf_fence_new), exports each as a
 *                 sync file and sends the fds to B before the clock starts.
 *                 Timed, per fence: A dmabuf_fence_signal(); B, blocked in
 *                 dmabuf_sync_file_wait() (poll), wakes and replies 1 byte on
 *                 a socket; A receives it.
 *                 Baseline: eventfd ping-pong (A writes efd1; B, blocked in
 *                 read, writes efd2; A reads it).                 target 1.1x
 *   wake-up, eventfd reply  the same, but B replies on efd2 as the baseline
 *                 does: isolates the signal path from the reply channel.
 *   raw socket    the kernel part of the library's signal without its code:
 *                 A sends a record of the library's size into a stream
 *                 socketpair of its own per wake-up (handed over untimed),
 *                 B waits in a blocking MSG_PEEK and replies on efd2. The
 *                 floor of a signal that is a unix-socket send: the
 *                 library's eventfd-reply figure is also printed against it.
 *   candidates    raw floors of a signal that wakes the waiter through a
 *                 cheaper primitive shipped with the sync file (an eventfd,
 *                 a futex word in a shared page) while the record still
 *                 goes into the socket for every other observer: see
 *                 enum cand. No library code; printed against the eventfd
 *                 ping-pong.
 *   hand-over     per fence, untimed in the wake-up: dmabuf_fence_new +
 *                 dmabuf_sync_file_export + dmabuf_send_fd, B dmabuf_recv_fd;
 *                 vs eventfd() + raw SCM_RIGHTS + recvmsg.
 *
 * In one process (A, after B is gone):
 *   fence life    dmabuf_fence_new + signal + put; timeline create_fence +
 *                 inc + put; vs eventfd() + write + close
 *   merge         dmabuf_fence_merge of 2, 8, 64 unsignalled fences of distinct
 *                 contexts (+ put of the result), vs the fence life above
 *   sync files    dmabuf_fence_new + dmabuf_sync_file_export + signal + close +
 *                 put (a fresh fence each time: a second export only dups), and
 *                 dmabuf_sync_file_merge of two fds (+ close); vs socketpair()
 *                 + 2 close(), the fds a sync file is made of
 *
 * Beside the wall time per wake-up, the CPU time both processes spent in
 * the timed loop (getrusage user + system, A's and B's, per wake-up), and
 * its ratio to the baseline's: other processes' load on the machine
 * stretches the wall time of a ping-pong but hardly what it costs the two
 * processes themselves. And the context switches per wake-up of A and B
 * (getrusage, all threads; voluntary + involuntary), for every kind: 2
 * when each process is switched in once per wake-up and no other thread.
 *
 * After its timed loop B sends its usage and then blocks until A stopped
 * its clock before it does anything else (checks, closes): on one CPU
 * B's work after its last reply would otherwise run before A's last
 * wake-up, inside A's timed loop (a slice of it under CFS, all of it
 * under SCHED_FIFO).
 *
 * Both processes run on one CPU (as bench-remote does: on a small VM a
 * cross-CPU wake-up of an idle vCPU costs 20-60 us and varies, hiding the
 * software path); BENCH_UNPINNED=1 lets them float.
 *
 * Fails (non-zero) only when an API call fails or a result is wrong.
 */
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "dmabuf-scm.h"
#include "bench-common.h"

#define BENCH "fence"
#define ROUNDS 7
#define N_WAKE 300
#define N_LIFE 20000
#define N_MERGE 2000
#define N_SFMERGE 1000

enum cmd {
	C_RAW = 1, C_FENCE_SOCK, C_FENCE_EFD, C_RECV_FENCES, C_RECV_RAW, C_RECV_SOCKS,
	C_SOCK_PEEK, C_RECV_PAIRS, C_CAND_POLL, C_CAND_READ, C_CAND_FUTEX, C_CAND_SHUT,
	C_CAND_BINDSHUT, C_QUIT
};

/*
 * Candidate fast paths (raw, no library code): what a wake-up would cost if
 * the signal woke the waiter through a cheaper primitive shipped with the
 * sync file, the record still sent into the socket for every other
 * observer. Each kind hands over, untimed, a socketpair end per fence and
 * (the eventfd kinds) an eventfd per fence.
 *   poll    A sends the record, then writes the fence's eventfd; B waits
 *           in poll() of both R and the eventfd (R for the signaller's
 *           death: an eventfd does not see it), replies on efd_ba.
 *   read    the same, B in a blocking read() of the eventfd alone: blind
 *           to the signaller's death, the cheapest eventfd wake.
 *   futex   A stores 1 in the fence's word of a page both map, FUTEX_WAKE,
 *           then sends the record; B FUTEX_WAITs on the word: as blind to
 *           the signaller's death, and a peek of R right after the wake
 *           may still find it empty.
 *   shut    no record: A shuts W down for writing (no skb: R reads EOF,
 *           polls POLLIN everywhere); B's blocking peek returns 0. Today
 *           EOF means "signaller gone" or a holder's shutdown, so this
 *           alone carries no status.
 *   bindshut  the status in W's name instead of a record (as a signal
 *           that finds R shut does, docs/fences.md): A binds W to an
 *           abstract name made before the clock, then shuts it down; B
 *           peeks (0) and reads the name with getpeername().
 */
enum cand { CAND_POLL, CAND_READ, CAND_FUTEX, CAND_SHUT, CAND_BINDSHUT, N_CAND };
static const char *const cand_name[N_CAND] = { "poll", "read", "futex", "shut", "bindshut" };
static const enum cmd cand_cmd[N_CAND] = { C_CAND_POLL, C_CAND_READ, C_CAND_FUTEX,
					   C_CAND_SHUT, C_CAND_BINDSHUT };
static _Atomic uint32_t *futex_words;	/* N_WAKE words, MAP_SHARED before fork */

/* The raw socket signal: a record of the library's size (struct
 * dmb_sf_record: magic, error, timestamp, context, seqno, two names,
 * nchildren, pad), sent into a stream socketpair of its own per wake-up. */
#define RAW_RECORD 104

struct ctl_msg {
	uint32_t cmd, n;
};

static int ctl_fd, data_fd, efd_ab, efd_ba;

/* What a timed loop cost one process: CPU time (user + system, ns) and
 * context switches (voluntary: it blocked; involuntary: it was preempted),
 * all its threads together. */
struct usage {
	uint64_t cpu_ns, vcsw, ivcsw;
};

static struct usage usage_now(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		BENCH_FAIL("getrusage: %s", strerror(errno));
	return (struct usage){
		.cpu_ns = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
			  (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull,
		.vcsw = (uint64_t)ru.ru_nvcsw,
		.ivcsw = (uint64_t)ru.ru_nivcsw,
	};
}

static struct usage usage_since(struct usage u0)
{
	struct usage u = usage_now();

	return (struct usage){ u.cpu_ns - u0.cpu_ns, u.vcsw - u0.vcsw, u.ivcsw - u0.ivcsw };
}

/* B's usage of a timed loop, sent to A on the control socket after it. */
static void usage_send(struct usage u)
{
	if (send(ctl_fd, &u, sizeof(u), MSG_NOSIGNAL) != (ssize_t)sizeof(u))
		BENCH_FAIL("ctl send: %s", strerror(errno));
}

static struct usage usage_recv(void)
{
	struct usage u;

	if (recv(ctl_fd, &u, sizeof(u), 0) != (ssize_t)sizeof(u))
		BENCH_FAIL("ctl recv: %s", strerror(errno));
	return u;
}

/* Per wake-up, both processes: CPU ns, and context switches of A and B. */
struct wake_cost {
	double cpu, cs_a, cs_b, ivcs;
};

static void wake_cost(struct usage a, struct usage b, uint32_t n, struct wake_cost *c)
{
	c->cpu = (double)(a.cpu_ns + b.cpu_ns) / n;
	c->cs_a = (double)(a.vcsw + a.ivcsw) / n;
	c->cs_b = (double)(b.vcsw + b.ivcsw) / n;
	c->ivcs = (double)(a.ivcsw + b.ivcsw) / n;
}

static const char *drv_name(struct dmabuf_fence *f)
{
	(void)f;
	return "bench";
}

static const char *tl_name(struct dmabuf_fence *f)
{
	(void)f;
	return "bench-timeline";
}

static const struct dmabuf_fence_ops fops = {
	.get_driver_name = drv_name,
	.get_timeline_name = tl_name,
};

static void ctl_send(uint32_t cmd, uint32_t n)
{
	struct ctl_msg m = { cmd, n };

	if (send(ctl_fd, &m, sizeof(m), MSG_NOSIGNAL) != (ssize_t)sizeof(m))
		BENCH_FAIL("ctl send: %s", strerror(errno));
}

static void efd_write(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) != sizeof(one))
		BENCH_FAIL("eventfd write: %s", strerror(errno));
}

static void efd_read(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v) || v != 1)
		BENCH_FAIL("eventfd read: %s (value %llu)", strerror(errno),
			   (unsigned long long)v);
}

static void raw_send_fd(int sock, int fd, uint32_t seq)
{
	bench_raw_send_fd(sock, fd, &seq, sizeof(seq));
}

static int raw_recv_fd(int sock, uint32_t expect)
{
	uint32_t seq = ~0u;
	size_t len = 0;
	int fd = bench_raw_recv_fd(sock, &seq, sizeof(seq), &len);

	if (len != sizeof(seq) || seq != expect)
		BENCH_FAIL("raw fd message %u of %zu bytes, want %u", seq, len, expect);
	return fd;
}

/* ---- B: the waiter --------------------------------------------------------- */

static int b_main(void)
{
	int fds[N_WAKE], efds[N_WAKE];
	uint32_t nfds = 0;

	for (;;) {
		struct ctl_msg m;

		if (recv(ctl_fd, &m, sizeof(m), 0) != (ssize_t)sizeof(m))
			BENCH_FAIL("ctl recv: %s", strerror(errno));
		switch (m.cmd) {
		case C_RAW: {
			struct usage u0 = usage_now();

			for (uint32_t i = 0; i < m.n; i++) {
				efd_read(efd_ab);
				efd_write(efd_ba);
			}
			usage_send(usage_since(u0));
			break;
		}
		case C_SOCK_PEEK: {
			struct usage u0 = usage_now();
			char rec[RAW_RECORD];

			if (m.n != nfds)
				BENCH_FAIL("%u sockets asked, %u held", m.n, nfds);
			/* As dmabuf_sync_file_wait(fd, -1): a blocking peek. */
			for (uint32_t i = 0; i < m.n; i++) {
				if (recv(fds[i], rec, sizeof(rec), MSG_PEEK) != (ssize_t)sizeof(rec))
					BENCH_FAIL("socket peek: %s", strerror(errno));
				efd_write(efd_ba);
			}
			usage_send(usage_since(u0));
			bench_recv_byte(data_fd);	/* A stopped its clock */
			for (uint32_t i = 0; i < nfds; i++)
				close(fds[i]);
			nfds = 0;
			bench_send_byte(data_fd);
			break;
		}
		case C_RECV_PAIRS:
			if (m.n > N_WAKE)
				BENCH_FAIL("too many fds");
			for (uint32_t i = 0; i < m.n; i++) {
				fds[i] = raw_recv_fd(data_fd, 2 * i);
				efds[i] = raw_recv_fd(data_fd, 2 * i + 1);
			}
			nfds = m.n;
			bench_send_byte(data_fd);
			break;
		case C_CAND_POLL:
		case C_CAND_READ:
		case C_CAND_FUTEX:
		case C_CAND_SHUT:
		case C_CAND_BINDSHUT: {
			struct usage u0 = usage_now();

			if (m.n != nfds)
				BENCH_FAIL("%u sockets asked, %u held", m.n, nfds);
			for (uint32_t i = 0; i < m.n; i++) {
				if (m.cmd == C_CAND_POLL) {
					struct pollfd p[2] = { { fds[i], POLLIN, 0 },
							       { efds[i], POLLIN, 0 } };

					if (poll(p, 2, -1) < 1)
						BENCH_FAIL("poll: %s", strerror(errno));
				} else if (m.cmd == C_CAND_READ) {
					efd_read(efds[i]);
				} else if (m.cmd != C_CAND_FUTEX) {
					char rec[8];
					struct sockaddr_un a;
					socklen_t alen = sizeof(a);

					if (recv(fds[i], rec, sizeof(rec), MSG_PEEK) != 0)
						BENCH_FAIL("socket peek: not EOF (%s)", strerror(errno));
					if (m.cmd == C_CAND_BINDSHUT &&
					    (getpeername(fds[i], (struct sockaddr *)&a, &alen) < 0 ||
					     alen <= offsetof(struct sockaddr_un, sun_path) + 1))
						BENCH_FAIL("getpeername: %s", strerror(errno));
				} else {
					while (!atomic_load_explicit(&futex_words[i],
								     memory_order_acquire))
						syscall(SYS_futex, &futex_words[i], FUTEX_WAIT, 0,
							NULL, NULL, 0);
				}
				efd_write(efd_ba);
			}
			usage_send(usage_since(u0));
			bench_recv_byte(data_fd);	/* A stopped its clock */
			for (uint32_t i = 0; i < nfds; i++) {
				close(fds[i]);
				close(efds[i]);
			}
			nfds = 0;
			bench_send_byte(data_fd);
			break;
		}
		case C_RECV_FENCES:
		case C_RECV_RAW:
		case C_RECV_SOCKS:
			if (m.n > N_WAKE)
				BENCH_FAIL("too many fds");
			for (uint32_t i = 0; i < m.n; i++) {
				if (m.cmd != C_RECV_FENCES) {
					fds[i] = raw_recv_fd(data_fd, i);
				} else {
					uint32_t seq;
					size_t len;

					BENCH_CHECK(dmabuf_recv_fd(data_fd, &fds[i], &seq,
								   sizeof(seq), &len));
					if (len != sizeof(seq) || seq != i)
						BENCH_FAIL("sync file %u arrived as %u", i, seq);
				}
			}
			nfds = m.n;
			bench_send_byte(data_fd);
			if (m.cmd == C_RECV_RAW) {
				for (uint32_t i = 0; i < nfds; i++)
					close(fds[i]);
				nfds = 0;
			}
			break;
		case C_FENCE_SOCK:
		case C_FENCE_EFD: {
			struct usage u0 = usage_now();

			if (m.n != nfds)
				BENCH_FAIL("%u fences asked, %u held", m.n, nfds);
			for (uint32_t i = 0; i < m.n; i++) {
				int r = dmabuf_sync_file_wait(fds[i], -1);

				if (r != 1)
					BENCH_FAIL("dmabuf_sync_file_wait: %d", r);
				if (m.cmd == C_FENCE_SOCK)
					bench_send_byte(data_fd);
				else
					efd_write(efd_ba);
			}
			usage_send(usage_since(u0));
			/* Untimed, once A stopped its clock (waiting here, so that
			 * A's last wake-up is not held behind this work on a
			 * shared CPU): each signalled without error, with its
			 * record. */
			bench_recv_byte(data_fd);
			for (uint32_t i = 0; i < nfds; i++) {
				int status = 0;

				BENCH_CHECK(dmabuf_sync_file_info(fds[i], &status, NULL, 0));
				if (status != 1)
					BENCH_FAIL("sync file %u status %d", i, status);
				close(fds[i]);
			}
			nfds = 0;
			bench_send_byte(data_fd);
			break;
		}
		case C_QUIT:
			return 0;
		default:
			BENCH_FAIL("unknown command %u", m.cmd);
		}
	}
}

/* ---- A: the signaller -------------------------------------------------------- */

/* Returns ns per wake-up; *c: what it cost both processes per wake-up. */
static double a_raw_round(uint32_t n, struct wake_cost *c)
{
	struct usage u0;
	uint64_t t0, t;

	ctl_send(C_RAW, n);
	t0 = bench_now_ns();
	u0 = usage_now();
	for (uint32_t i = 0; i < n; i++) {
		efd_write(efd_ab);
		efd_read(efd_ba);
	}
	u0 = usage_since(u0);
	t = bench_now_ns() - t0;
	wake_cost(u0, usage_recv(), n, c);
	return (double)t / n;
}

/*
 * The kernel part of the library's signal alone: per wake-up A sends a
 * record into a stream socketpair of its own (made and handed over
 * before the clock, as a sync file is), B waits for it in a blocking
 * MSG_PEEK and writes efd_ba, A reads it: the same 4 syscalls as the
 * library's wake-up with eventfd reply, without its code.
 */
static double a_sock_round(uint32_t n, struct wake_cost *c)
{
	static int w[N_WAKE];
	char rec[RAW_RECORD];
	struct usage u0;
	uint64_t t0, t;

	memset(rec, 0x5a, sizeof(rec));
	ctl_send(C_RECV_SOCKS, n);
	for (uint32_t i = 0; i < n; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			BENCH_FAIL("socketpair: %s", strerror(errno));
		raw_send_fd(data_fd, sv[0], i);
		close(sv[0]);
		w[i] = sv[1];
	}
	bench_recv_byte(data_fd);
	ctl_send(C_SOCK_PEEK, n);
	t0 = bench_now_ns();
	u0 = usage_now();
	for (uint32_t i = 0; i < n; i++) {
		if (send(w[i], rec, sizeof(rec), MSG_NOSIGNAL | MSG_DONTWAIT) !=
		    (ssize_t)sizeof(rec))
			BENCH_FAIL("socket send: %s", strerror(errno));
		efd_read(efd_ba);
	}
	u0 = usage_since(u0);
	t = bench_now_ns() - t0;
	wake_cost(u0, usage_recv(), n, c);
	bench_send_byte(data_fd);	/* clock stopped: B may close */
	bench_recv_byte(data_fd);	/* B closed its ends */
	for (uint32_t i = 0; i < n; i++)
		close(w[i]);
	return (double)t / n;
}

/* A candidate fast path (see enum cand); returns ns per wake-up. */
static double a_cand_round(enum cand k, uint32_t n, struct wake_cost *c)
{
	static int w[N_WAKE], e[N_WAKE];
	static struct sockaddr_un addr[N_WAKE];
	static socklen_t alen[N_WAKE];
	static unsigned int serial;
	char rec[RAW_RECORD];
	struct usage u0;
	uint64_t t0, t;

	memset(rec, 0x5a, sizeof(rec));
	ctl_send(C_RECV_PAIRS, n);
	for (uint32_t i = 0; i < n; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			BENCH_FAIL("socketpair: %s", strerror(errno));
		e[i] = eventfd(0, EFD_CLOEXEC);
		if (e[i] < 0)
			BENCH_FAIL("eventfd: %s", strerror(errno));
		raw_send_fd(data_fd, sv[0], 2 * i);
		raw_send_fd(data_fd, e[i], 2 * i + 1);
		close(sv[0]);
		w[i] = sv[1];
		atomic_store(&futex_words[i], 0);
		addr[i].sun_family = AF_UNIX;
		addr[i].sun_path[0] = 0;
		alen[i] = offsetof(struct sockaddr_un, sun_path) + 1 +
			  snprintf(addr[i].sun_path + 1, sizeof(addr[i].sun_path) - 1,
				   "bench-fence/%d/%u/S/0/1234567890123", (int)getpid(), serial++);
	}
	bench_recv_byte(data_fd);
	ctl_send(cand_cmd[k], n);
	t0 = bench_now_ns();
	u0 = usage_now();
	for (uint32_t i = 0; i < n; i++) {
		if (k == CAND_FUTEX) {
			atomic_store_explicit(&futex_words[i], 1, memory_order_release);
			syscall(SYS_futex, &futex_words[i], FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
		}
		if (k == CAND_BINDSHUT && bind(w[i], (struct sockaddr *)&addr[i], alen[i]) < 0)
			BENCH_FAIL("bind: %s", strerror(errno));
		if (k == CAND_SHUT || k == CAND_BINDSHUT) {
			if (shutdown(w[i], SHUT_WR) < 0)
				BENCH_FAIL("shutdown: %s", strerror(errno));
		} else if (send(w[i], rec, sizeof(rec), MSG_NOSIGNAL | MSG_DONTWAIT) !=
			   (ssize_t)sizeof(rec)) {
			BENCH_FAIL("socket send: %s", strerror(errno));
		}
		if (k == CAND_POLL || k == CAND_READ)
			efd_write(e[i]);
		efd_read(efd_ba);
	}
	u0 = usage_since(u0);
	t = bench_now_ns() - t0;
	wake_cost(u0, usage_recv(), n, c);
	bench_send_byte(data_fd);	/* clock stopped: B may close */
	bench_recv_byte(data_fd);	/* B closed its ends */
	for (uint32_t i = 0; i < n; i++) {
		close(w[i]);
		close(e[i]);
	}
	return (double)t / n;
}

/* Creates, exports and hands over n fences; returns ns per fence. */
static double a_hand_over(struct dmabuf_fence **f, uint32_t n, uint64_t context)
{
	uint64_t t0 = bench_now_ns();

	ctl_send(C_RECV_FENCES, n);
	for (uint32_t i = 0; i < n; i++) {
		int fd;

		BENCH_CHECK(dmabuf_fence_new(&fops, NULL, context, i + 1, &f[i]));
		fd = dmabuf_sync_file_export(f[i]);
		BENCH_CHECK(fd);
		BENCH_CHECK(dmabuf_send_fd(data_fd, fd, &i, sizeof(i)));
		close(fd);
	}
	bench_recv_byte(data_fd);
	return (double)(bench_now_ns() - t0) / n;
}

static double a_hand_over_raw(uint32_t n)
{
	uint64_t t0 = bench_now_ns();

	ctl_send(C_RECV_RAW, n);
	for (uint32_t i = 0; i < n; i++) {
		int fd = eventfd(0, EFD_CLOEXEC);

		if (fd < 0)
			BENCH_FAIL("eventfd: %s", strerror(errno));
		raw_send_fd(data_fd, fd, i);
		close(fd);
	}
	bench_recv_byte(data_fd);
	return (double)(bench_now_ns() - t0) / n;
}

static double a_fence_round(uint32_t n, bool efd_reply, double *hand_over,
			    struct wake_cost *c)
{
	static struct dmabuf_fence *f[N_WAKE];
	struct usage u0;
	uint64_t t0, t;

	*hand_over = a_hand_over(f, n, dmabuf_fence_context_alloc(1));
	ctl_send(efd_reply ? C_FENCE_EFD : C_FENCE_SOCK, n);
	t0 = bench_now_ns();
	u0 = usage_now();
	for (uint32_t i = 0; i < n; i++) {
		BENCH_CHECK(dmabuf_fence_signal(f[i]));
		if (efd_reply)
			efd_read(efd_ba);
		else
			bench_recv_byte(data_fd);
	}
	u0 = usage_since(u0);
	t = bench_now_ns() - t0;
	wake_cost(u0, usage_recv(), n, c);
	bench_send_byte(data_fd);	/* clock stopped: B may check */
	bench_recv_byte(data_fd);	/* B checked and closed its fds */
	for (uint32_t i = 0; i < n; i++)
		dmabuf_fence_put(f[i]);
	return (double)t / n;
}

/* ---- single-process costs ----------------------------------------------------- */

static double life_eventfd(uint32_t n)
{
	uint64_t t0 = bench_now_ns();

	for (uint32_t i = 0; i < n; i++) {
		int fd = eventfd(0, EFD_CLOEXEC);

		if (fd < 0)
			BENCH_FAIL("eventfd: %s", strerror(errno));
		efd_write(fd);
		close(fd);
	}
	return (double)(bench_now_ns() - t0) / n;
}

static double life_fence(uint32_t n)
{
	uint64_t ctx = dmabuf_fence_context_alloc(1), t0 = bench_now_ns();

	for (uint32_t i = 0; i < n; i++) {
		struct dmabuf_fence *f;

		BENCH_CHECK(dmabuf_fence_new(&fops, NULL, ctx, i + 1, &f));
		BENCH_CHECK(dmabuf_fence_signal(f));
		dmabuf_fence_put(f);
	}
	return (double)(bench_now_ns() - t0) / n;
}

static double life_timeline(uint32_t n)
{
	struct dmabuf_timeline *tl;
	uint64_t t0;

	BENCH_CHECK(dmabuf_timeline_new("bench", &tl));
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		struct dmabuf_fence *f;

		BENCH_CHECK(dmabuf_timeline_create_fence(tl, i + 1, &f));
		BENCH_CHECK(dmabuf_timeline_inc(tl, 1));
		if (dmabuf_fence_get_status(f) != 1)
			BENCH_FAIL("timeline point %u not signalled by inc", i + 1);
		dmabuf_fence_put(f);
	}
	t0 = bench_now_ns() - t0;
	dmabuf_timeline_destroy(tl);
	return (double)t0 / n;
}

static double merge_cost(unsigned int k, uint32_t n)
{
	struct dmabuf_fence *f[64];
	uint64_t base = dmabuf_fence_context_alloc(k), t0;

	for (unsigned int i = 0; i < k; i++)
		BENCH_CHECK(dmabuf_fence_new(&fops, NULL, base + i, 1, &f[i]));
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		struct dmabuf_fence *m;

		BENCH_CHECK(dmabuf_fence_merge(f, k, &m));
		if (k > 1 && dmabuf_fence_unwrap(m, NULL, 0) != (int)k)
			BENCH_FAIL("merge of %u fences holds %d", k, dmabuf_fence_unwrap(m, NULL, 0));
		dmabuf_fence_put(m);
	}
	t0 = bench_now_ns() - t0;
	for (unsigned int i = 0; i < k; i++) {
		BENCH_CHECK(dmabuf_fence_signal(f[i]));
		dmabuf_fence_put(f[i]);
	}
	return (double)t0 / n;
}

static double socketpair_cost(uint32_t n)
{
	uint64_t t0 = bench_now_ns();

	for (uint32_t i = 0; i < n; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			BENCH_FAIL("socketpair: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
	}
	return (double)(bench_now_ns() - t0) / n;
}

/* A fresh fence each time: exporting the same fence again only dups. */
static double export_cost(uint32_t n)
{
	uint64_t ctx = dmabuf_fence_context_alloc(1), t0 = bench_now_ns();

	for (uint32_t i = 0; i < n; i++) {
		struct dmabuf_fence *f;
		int fd;

		BENCH_CHECK(dmabuf_fence_new(&fops, NULL, ctx, i + 1, &f));
		fd = dmabuf_sync_file_export(f);
		BENCH_CHECK(fd);
		BENCH_CHECK(dmabuf_fence_signal(f));
		close(fd);
		dmabuf_fence_put(f);
	}
	return (double)(bench_now_ns() - t0) / n;
}

static double sync_merge_cost(uint32_t n)
{
	struct dmabuf_fence *f[2];
	uint64_t base = dmabuf_fence_context_alloc(2), t0;
	int fd[2];

	for (int i = 0; i < 2; i++) {
		BENCH_CHECK(dmabuf_fence_new(&fops, NULL, base + (uint64_t)i, 1, &f[i]));
		fd[i] = dmabuf_sync_file_export(f[i]);
		BENCH_CHECK(fd[i]);
	}
	t0 = bench_now_ns();
	for (uint32_t i = 0; i < n; i++) {
		int m = dmabuf_sync_file_merge(fd[0], fd[1]);

		BENCH_CHECK(m);
		close(m);
	}
	t0 = bench_now_ns() - t0;
	for (int i = 0; i < 2; i++) {
		BENCH_CHECK(dmabuf_fence_signal(f[i]));
		dmabuf_fence_put(f[i]);
		close(fd[i]);
	}
	return (double)t0 / n;
}

/* ---- report ------------------------------------------------------------------ */

static void row(const char *what, double lib, double base, const char *base_name,
		double target)
{
	double ratio = lib / base;

	printf("  %-40s %10.3f %10.3f %8.2fx  %-28s", what, lib / 1000, base / 1000, ratio,
	       base_name);
	if (target > 0)
		printf(" <= %.1fx %s", target, ratio <= target ? "met" : "MISSED");
	printf("\n");
}

static void lines_t(const char *name, double lib, double base, double target)
{
	char key[96];

	bench_line(BENCH, name, lib, "ns");
	snprintf(key, sizeof(key), "%s_baseline", name);
	bench_line(BENCH, key, base, "ns");
	snprintf(key, sizeof(key), "%s_ratio", name);
	bench_target(BENCH, key, lib / base, "x", target);
}

static void lines(const char *name, double lib, double base)
{
	lines_t(name, lib, base, 0);
}

/* Median of each figure over the rounds (each sorted on its own). */
static struct wake_cost cost_median(const struct wake_cost *c)
{
	double v[4][ROUNDS];
	struct wake_cost m;

	for (int r = 0; r < ROUNDS; r++) {
		v[0][r] = c[r].cpu;
		v[1][r] = c[r].cs_a;
		v[2][r] = c[r].cs_b;
		v[3][r] = c[r].ivcs;
	}
	m.cpu = bench_median(v[0], ROUNDS);
	m.cs_a = bench_median(v[1], ROUNDS);
	m.cs_b = bench_median(v[2], ROUNDS);
	m.ivcs = bench_median(v[3], ROUNDS);
	return m;
}

static void cs_row(const char *what, const struct wake_cost *c)
{
	printf("  %-40s %6.2f  (A %.2f, B %.2f; involuntary %.2f)\n", what,
	       c->cs_a + c->cs_b, c->cs_a, c->cs_b, c->ivcs);
}

/* Context switches of both processes per wake-up, and the baseline's. */
static void cs_lines(const char *name, const struct wake_cost *lib,
		     const struct wake_cost *base)
{
	char key[96];

	bench_line(BENCH, name, lib->cs_a + lib->cs_b, "count");
	snprintf(key, sizeof(key), "%s_baseline", name);
	bench_line(BENCH, key, base->cs_a + base->cs_b, "count");
	snprintf(key, sizeof(key), "%s_involuntary", name);
	bench_line(BENCH, key, lib->ivcs, "count");
}

int main(void)
{
	static const unsigned int merge_k[3] = { 2, 8, 64 };
	double raw[ROUNDS], sock[ROUNDS], efd[ROUNDS], rsock[ROUNDS], ho[ROUNDS], ho_raw[ROUNDS];
	double dummy;
	struct wake_cost c_raw[ROUNDS], c_sock[ROUNDS], c_efd[ROUNDS], c_rsock[ROUNDS], cdummy;
	struct wake_cost m_craw, m_csock, m_cefd, m_crsock;
	double cand[N_CAND][ROUNDS], m_cand[N_CAND];
	struct wake_cost c_cand[N_CAND][ROUNDS], m_ccand[N_CAND];
	double m_rsock;
	double l_efd[ROUNDS], l_fence[ROUNDS], l_tl[ROUNDS], mg[3][ROUNDS];
	double sp[ROUNDS], exp_[ROUNDS], sfm[ROUNDS];
	double m_raw, m_sock, m_efd, m_ho, m_ho_raw, m_lefd, m_lfence, m_ltl, m_mg[3];
	double m_sp, m_exp, m_sfm;
	int ctl[2], data[2], status;
	pid_t pid;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!(getenv("BENCH_UNPINNED") && *getenv("BENCH_UNPINNED") == '1')) {
		cpu_set_t set;
		int first = 0;

		if (sched_getaffinity(0, sizeof(set), &set) < 0)
			BENCH_FAIL("sched_getaffinity: %s", strerror(errno));
		while (first < CPU_SETSIZE - 1 && !CPU_ISSET(first, &set))
			first++;
		CPU_ZERO(&set);
		CPU_SET(first, &set);
		if (sched_setaffinity(0, sizeof(set), &set) < 0)
			BENCH_FAIL("sched_setaffinity: %s", strerror(errno));
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, data) < 0)
		BENCH_FAIL("socketpair: %s", strerror(errno));
	futex_words = mmap(NULL, N_WAKE * sizeof(*futex_words), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (futex_words == MAP_FAILED)
		BENCH_FAIL("mmap: %s", strerror(errno));
	efd_ab = eventfd(0, EFD_CLOEXEC);
	efd_ba = eventfd(0, EFD_CLOEXEC);
	if (efd_ab < 0 || efd_ba < 0)
		BENCH_FAIL("eventfd: %s", strerror(errno));

	pid = fork();
	if (pid < 0)
		BENCH_FAIL("fork: %s", strerror(errno));
	if (pid == 0) {
		ctl_fd = ctl[1], data_fd = data[1];
		close(ctl[0]);
		close(data[0]);
		_exit(b_main());
	}
	ctl_fd = ctl[0], data_fd = data[0];
	close(ctl[1]);
	close(data[1]);

	/* warm-up */
	a_raw_round(100, &cdummy);
	a_fence_round(100, false, &dummy, &cdummy);
	a_sock_round(100, &cdummy);
	a_hand_over_raw(100);
	for (int k = 0; k < N_CAND; k++)
		a_cand_round(k, 100, &cdummy);
	for (int r = 0; r < ROUNDS; r++) {
		for (int k = 0; k < N_CAND; k++)
			cand[k][r] = a_cand_round(k, N_WAKE, &c_cand[k][r]);
		raw[r] = a_raw_round(N_WAKE, &c_raw[r]);
		sock[r] = a_fence_round(N_WAKE, false, &ho[r], &c_sock[r]);
		efd[r] = a_fence_round(N_WAKE, true, &dummy, &c_efd[r]);
		rsock[r] = a_sock_round(N_WAKE, &c_rsock[r]);
		ho_raw[r] = a_hand_over_raw(N_WAKE);
	}
	ctl_send(C_QUIT, 0);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		BENCH_FAIL("waiter process failed (status %#x)", status);

	life_fence(N_LIFE / 4);
	merge_cost(8, N_MERGE / 4);
	sync_merge_cost(N_SFMERGE / 4);
	for (int r = 0; r < ROUNDS; r++) {
		l_efd[r] = life_eventfd(N_LIFE);
		l_fence[r] = life_fence(N_LIFE);
		l_tl[r] = life_timeline(N_LIFE);
		for (int k = 0; k < 3; k++)
			mg[k][r] = merge_cost(merge_k[k], N_MERGE);
		sp[r] = socketpair_cost(N_SFMERGE);
		exp_[r] = export_cost(N_SFMERGE);
		sfm[r] = sync_merge_cost(N_SFMERGE);
	}

	m_raw = bench_median(raw, ROUNDS);
	m_sock = bench_median(sock, ROUNDS);
	m_efd = bench_median(efd, ROUNDS);
	m_rsock = bench_median(rsock, ROUNDS);
	m_craw = cost_median(c_raw);
	m_csock = cost_median(c_sock);
	m_cefd = cost_median(c_efd);
	m_crsock = cost_median(c_rsock);
	for (int k = 0; k < N_CAND; k++) {
		m_cand[k] = bench_median(cand[k], ROUNDS);
		m_ccand[k] = cost_median(c_cand[k]);
	}
	m_ho = bench_median(ho, ROUNDS);
	m_ho_raw = bench_median(ho_raw, ROUNDS);
	m_lefd = bench_median(l_efd, ROUNDS);
	m_lfence = bench_median(l_fence, ROUNDS);
	m_ltl = bench_median(l_tl, ROUNDS);
	for (int k = 0; k < 3; k++)
		m_mg[k] = bench_median(mg[k], ROUNDS);
	m_sp = bench_median(sp, ROUNDS);
	m_exp = bench_median(exp_, ROUNDS);
	m_sfm = bench_median(sfm, ROUNDS);

	printf("\nfences: 2 processes (fork, %s) for the wake-up, 1 for the costs\n",
	       getenv("BENCH_UNPINNED") && *getenv("BENCH_UNPINNED") == '1' ? "unpinned" : "one CPU");
	printf("(median of %d rounds; us per operation)\n\n", ROUNDS);
	printf("  %-40s %10s %10s %9s  %-28s %s\n", "figure", "library", "baseline", "ratio",
	       "baseline is", "target");
	row("signal -> B wakes, replies on socket", m_sock, m_raw, "eventfd ping-pong", 1.1);
	row("signal -> B wakes, replies on eventfd", m_efd, m_raw, "eventfd ping-pong", 1.1);
	row("raw socket: send record, peek, eventfd", m_rsock, m_raw, "eventfd ping-pong", 0);
	row("library eventfd reply vs raw socket", m_efd, m_rsock, "raw socket signal", 0);
	row("CPU of both: socket reply", m_csock.cpu, m_craw.cpu, "eventfd ping-pong CPU", 0);
	row("CPU of both: eventfd reply", m_cefd.cpu, m_craw.cpu, "eventfd ping-pong CPU", 0);
	row("CPU of both: raw socket", m_crsock.cpu, m_craw.cpu, "eventfd ping-pong CPU", 0);
	for (int k = 0; k < N_CAND; k++) {
		char what[64];

		snprintf(what, sizeof(what), "candidate %s: signal + wake", cand_name[k]);
		row(what, m_cand[k], m_raw, "eventfd ping-pong", 0);
		snprintf(what, sizeof(what), "CPU of both: candidate %s", cand_name[k]);
		row(what, m_ccand[k].cpu, m_craw.cpu, "eventfd ping-pong CPU", 0);
	}
	row("hand-over: new + export + send + recv", m_ho, m_ho_raw, "eventfd + SCM_RIGHTS", 0);
	row("fence_new + signal + put", m_lfence, m_lefd, "eventfd + write + close", 0);
	row("timeline create_fence + inc + put", m_ltl, m_lefd, "eventfd + write + close", 0);
	for (int k = 0; k < 3; k++) {
		char what[64];

		snprintf(what, sizeof(what), "fence_merge of %u (+ put)", merge_k[k]);
		row(what, m_mg[k], m_lfence, "fence_new + signal + put", 0);
	}
	row("new + sync_file_export + signal + put", m_exp, m_sp, "socketpair + 2 close", 0);
	row("sync_file_merge of 2 fds (+ close)", m_sfm, m_sp, "socketpair + 2 close", 0);
	printf("\n  context switches per wake-up (getrusage, voluntary + involuntary;\n"
	       "  signaller A, waiter B, of which involuntary):\n");
	cs_row("eventfd ping-pong", &m_craw);
	cs_row("library, socket reply", &m_csock);
	cs_row("library, eventfd reply", &m_cefd);
	cs_row("raw socket signal, eventfd reply", &m_crsock);
	for (int k = 0; k < N_CAND; k++) {
		char what[64];

		snprintf(what, sizeof(what), "candidate %s", cand_name[k]);
		cs_row(what, &m_ccand[k]);
	}
	printf("\n");

	lines_t("wake_socket_reply", m_sock, m_raw, 1.1);
	lines_t("wake_eventfd_reply", m_efd, m_raw, 1.1);
	lines("wake_socket_reply_cpu", m_csock.cpu, m_craw.cpu);
	lines("wake_eventfd_reply_cpu", m_cefd.cpu, m_craw.cpu);
	lines("wake_raw_socket", m_rsock, m_raw);
	lines("wake_raw_socket_cpu", m_crsock.cpu, m_craw.cpu);
	bench_line(BENCH, "wake_eventfd_reply_vs_raw_socket", m_efd / m_rsock, "x");
	cs_lines("wake_eventfd_reply_cswitch", &m_cefd, &m_craw);
	cs_lines("wake_socket_reply_cswitch", &m_csock, &m_craw);
	cs_lines("wake_raw_socket_cswitch", &m_crsock, &m_craw);
	for (int k = 0; k < N_CAND; k++) {
		char name[48];

		snprintf(name, sizeof(name), "wake_cand_%s", cand_name[k]);
		lines(name, m_cand[k], m_raw);
		snprintf(name, sizeof(name), "wake_cand_%s_cpu", cand_name[k]);
		lines(name, m_ccand[k].cpu, m_craw.cpu);
		snprintf(name, sizeof(name), "wake_cand_%s_cswitch", cand_name[k]);
		cs_lines(name, &m_ccand[k], &m_craw);
	}
	lines("hand_over", m_ho, m_ho_raw);
	lines("fence_life", m_lfence, m_lefd);
	lines("timeline_life", m_ltl, m_lefd);
	for (int k = 0; k < 3; k++) {
		char name[32];

		snprintf(name, sizeof(name), "merge_%u", merge_k[k]);
		lines(name, m_mg[k], m_lfence);
	}
	lines("sync_file_export", m_exp, m_sp);
	lines("sync_file_merge", m_sfm, m_sp);
	return 0;
}
