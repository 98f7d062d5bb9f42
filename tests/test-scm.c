/* SPDX-License-Identifier: MIT */
/*
 * SCM_RIGHTS plumbing over real socketpairs: fds arrive close-on-exec and
 * refer to what was sent; every failure path leaves no fd behind.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "scm.h"
#include "sys.h"
#include "wire.h"

static void pair(int type, int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds), 0);
}

static void close_pair(int fds[2])
{
	close(fds[0]);
	close(fds[1]);
}

static int memfd_with(const char *text)
{
	int fd = memfd_create("scm-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	return fd;
}

static void assert_same_file(int a, int b)
{
	struct stat sa, sb;

	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_int_equal(sa.st_ino, sb.st_ino);
	assert_int_equal(sa.st_dev, sb.st_dev);
	assert_int_not_equal(a, b);
}

static void assert_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	assert_true(fl >= 0);
	assert_true(fl & FD_CLOEXEC);
}

/* Sends nfds fds with raw sendmsg, split over `ncmsg` cmsgs. */
static void raw_send(int sock, const void *data, size_t len, const int *fds,
		     size_t nfds, size_t ncmsg)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 64) * 2];
	} ctrl;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	size_t per = ncmsg ? (nfds + ncmsg - 1) / ncmsg : 0, done = 0, space = 0;

	memset(&ctrl, 0, sizeof(ctrl));
	if (nfds) {
		msg.msg_control = ctrl.buf;
		msg.msg_controllen = sizeof(ctrl.buf);
		c = CMSG_FIRSTHDR(&msg);
		while (done < nfds) {
			size_t k = nfds - done < per ? nfds - done : per;

			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * k);
			memcpy(CMSG_DATA(c), fds + done, sizeof(int) * k);
			space += CMSG_SPACE(sizeof(int) * k);
			done += k;
			c = (struct cmsghdr *)((char *)c + CMSG_SPACE(sizeof(int) * k));
		}
		msg.msg_controllen = space;
	}
	assert_int_equal(sendmsg(sock, &msg, MSG_NOSIGNAL), (ssize_t)len);
}

/* ---- internal send/recv ----------------------------------------------------- */

static void test_fds_arrive_cloexec(void **state)
{
	int sv[2], sent[3], got[4];
	char data[16] = { 0 };
	size_t n = 99;

	pair(SOCK_SEQPACKET, sv);
	for (int i = 0; i < 3; i++)
		sent[i] = memfd_with("x");
	assert_int_equal(dmb_scm_send(sv[0], "hello", 5, sent, 3), 0);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), got, 4, &n), 5);
	assert_int_equal(n, 3);
	assert_memory_equal(data, "hello", 5);
	for (int i = 0; i < 3; i++) {
		assert_cloexec(got[i]);
		assert_same_file(sent[i], got[i]);
	}
	assert_int_equal(got[3], -1);
	dmb_scm_close_fds(got, 3);
	assert_int_equal(got[0], -1);
	dmb_scm_close_fds(sent, 3);
	close_pair(sv);
}

static void test_too_many_fds_closed(void **state)
{
	int sv[2], sent[20], got[2], before;
	char data[8];
	size_t n = 7;

	pair(SOCK_SEQPACKET, sv);
	for (int i = 0; i < 20; i++)
		sent[i] = memfd_with("y");

	/* More fds than the caller allows, but within the control buffer. */
	assert_int_equal(dmb_scm_send(sv[0], "a", 1, sent, 3), 0);
	before = harness_count_fds();
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), got, 2, &n),
			 -EPROTO);
	assert_int_equal(n, 0);
	assert_int_equal(got[0], -1);
	assert_int_equal(got[1], -1);
	assert_int_equal(harness_count_fds(), before);

	/* More than the control buffer holds: MSG_CTRUNC. */
	raw_send(sv[0], "b", 1, sent, 20, 1);
	before = harness_count_fds();
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), got, 2, &n),
			 -EPROTO);
	assert_int_equal(harness_count_fds(), before);

	/* The connection is still usable afterwards. */
	assert_int_equal(dmb_scm_send(sv[0], "c", 1, sent, 1), 0);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), got, 2, &n), 1);
	assert_int_equal(n, 1);
	assert_same_file(sent[0], got[0]);
	close(got[0]);

	for (int i = 0; i < 20; i++)
		close(sent[i]);
	close_pair(sv);
}

static void test_no_fds_expected(void **state)
{
	int sv[2], fd = memfd_with("z"), before;
	char data[8];
	size_t n;

	pair(SOCK_SEQPACKET, sv);
	assert_int_equal(dmb_scm_send(sv[0], "a", 1, &fd, 1), 0);
	before = harness_count_fds();
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), NULL, 0, &n),
			 -EPROTO);
	assert_int_equal(harness_count_fds(), before);
	close(fd);
	close_pair(sv);
}

static void test_multiple_cmsgs(void **state)
{
	int sv[2], sent[4], got[4];
	char data[8];
	size_t n;

	pair(SOCK_SEQPACKET, sv);
	for (int i = 0; i < 4; i++)
		sent[i] = memfd_with("m");
	raw_send(sv[0], "x", 1, sent, 4, 2);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), got, 4, &n), 1);
	assert_int_equal(n, 4);
	for (int i = 0; i < 4; i++) {
		assert_same_file(sent[i], got[i]);
		assert_cloexec(got[i]);
	}
	dmb_scm_close_fds(got, 4);
	dmb_scm_close_fds(sent, 4);
	close_pair(sv);
}

static void test_truncated_data_closes_fds(void **state)
{
	int sv[2], fd = memfd_with("t"), got[1], before;
	char big[200] = { 1 }, small[10];
	size_t n;

	pair(SOCK_SEQPACKET, sv);
	assert_int_equal(dmb_scm_send(sv[0], big, sizeof(big), &fd, 1), 0);
	before = harness_count_fds();
	assert_int_equal(dmb_scm_recv(sv[1], small, sizeof(small), got, 1, &n),
			 -EMSGSIZE);
	assert_int_equal(got[0], -1);
	assert_int_equal(harness_count_fds(), before);
	close(fd);
	close_pair(sv);
}

/* Several packets in one call: each with its own fds and verdict; fewer
 * than asked means the socket had no more; then -EAGAIN. */
static void test_recv_many(void **state)
{
	int sv[2], a = memfd_with("a"), b = memfd_with("b"), fa[2], fb[2], fc[2];
	char big[200] = { 1 }, d0[100], d1[100];
	struct dmb_scm_pkt p[2] = {
		{ .data = d0, .cap = sizeof(d0), .fds = fa, .max_fds = 2 },
		{ .data = d1, .cap = sizeof(d1), .fds = fb, .max_fds = 2 },
	};
	int before;

	pair(SOCK_SEQPACKET, sv);
	assert_int_equal(dmb_scm_send(sv[0], "one", 3, &a, 1), 0);
	assert_int_equal(dmb_scm_send(sv[0], big, sizeof(big), &b, 1), 0); /* too big */
	assert_int_equal(dmb_scm_send(sv[0], "three", 5, NULL, 0), 0);
	before = harness_count_fds();
	assert_int_equal(dmb_scm_recv_many(sv[1], p, 2, MSG_DONTWAIT), 2);
	assert_int_equal(p[0].len, 3);
	assert_int_equal(p[0].nfds, 1);
	assert_same_file(a, fa[0]);
	assert_cloexec(fa[0]);
	assert_int_equal(p[1].len, -EMSGSIZE);
	assert_int_equal(p[1].nfds, 0);
	assert_int_equal(fb[0], -1);
	assert_int_equal(harness_count_fds(), before + 1); /* b's copy closed */
	close(fa[0]);
	p[1].fds = fc;
	assert_int_equal(dmb_scm_recv_many(sv[1], p, 2, MSG_DONTWAIT), 1);
	assert_int_equal(p[0].len, 5);
	assert_memory_equal(d0, "three", 5);
	assert_int_equal(dmb_scm_recv_many(sv[1], p, 2, MSG_DONTWAIT), -EAGAIN);
	assert_int_equal(dmb_scm_recv_many(sv[1], p, DMB_SCM_MAX_BATCH + 1, 0), -EINVAL);
	assert_int_equal(dmb_scm_recv_many(sv[1], p, 1, MSG_PEEK), -EINVAL);
	close(sv[0]);
	/* EOF */
	assert_int_equal(dmb_scm_recv_many(sv[1], p, 1, 0), 1);
	assert_int_equal(p[0].len, -ECONNRESET);
	close(sv[1]);
	close(a);
	close(b);
}

static void test_credentials_ignored(void **state)
{
	int sv[2], fd = memfd_with("c"), got[1], on = 1;
	char data[8];
	size_t n;

	pair(SOCK_SEQPACKET, sv);
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
	assert_int_equal(dmb_scm_send(sv[0], "p", 1, &fd, 1), 0);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), got, 1, &n), 1);
	assert_int_equal(n, 1);
	assert_same_file(fd, got[0]);
	close(got[0]);
	/* Credentials alone, no fds. */
	assert_int_equal(dmb_scm_send(sv[0], "q", 1, NULL, 0), 0);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), got, 1, &n), 1);
	assert_int_equal(n, 0);
	close(fd);
	close_pair(sv);
}

#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif

/* With SO_PASSPIDFD (Linux 6.5) the kernel adds an SCM_PIDFD fd to every
 * message: it is not ours to keep, and must not leak. */
static void test_pidfd_closed(void **state)
{
	int sv[2], fd = memfd_with("d"), got[2], on = 1, before;
	char data[8];
	size_t n;

	pair(SOCK_SEQPACKET, sv);
	if (setsockopt(sv[1], SOL_SOCKET, SO_PASSPIDFD, &on, sizeof(on)) < 0) {
		close(fd);
		close_pair(sv);
		skip();
	}
	assert_int_equal(dmb_scm_send(sv[0], "p", 1, &fd, 1), 0);
	before = harness_count_fds();
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), got, 2, &n), 1);
	assert_int_equal(n, 1);
	assert_same_file(fd, got[0]);
	assert_int_equal(harness_count_fds(), before + 1);
	close(got[0]);
	close(fd);
	close_pair(sv);
}

static void test_peer_closed(void **state)
{
	int sv[2], fd = memfd_with("p");
	char data[8];
	size_t n;

	/* A closed peer is an errno, never SIGPIPE (which would kill us). */
	pair(SOCK_SEQPACKET, sv);
	close(sv[1]);
	assert_int_equal(dmb_scm_send(sv[0], "x", 1, &fd, 1), -EPIPE);
	close(sv[0]);

	pair(SOCK_SEQPACKET, sv);
	close(sv[0]);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), NULL, 0, &n),
			 -ECONNRESET);
	close(sv[1]);

	pair(SOCK_STREAM, sv);
	close(sv[1]);
	assert_int_equal(dmb_scm_send(sv[0], "x", 1, &fd, 1), -EPIPE);
	close(sv[0]);
	close(fd);
}

static void test_nonblocking(void **state)
{
	int sv[2], ret, sent = 0;
	char data[512] = { 0 };
	size_t n;

	pair(SOCK_SEQPACKET | SOCK_NONBLOCK, sv);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), NULL, 0, &n),
			 -EAGAIN);
	while ((ret = dmb_scm_send(sv[0], data, sizeof(data), NULL, 0)) == 0)
		sent++;
	assert_int_equal(ret, -EAGAIN);
	assert_true(sent > 0);
	/* Every packet that went out is whole. */
	for (int i = 0; i < sent; i++)
		assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), NULL, 0, &n),
				 (ssize_t)sizeof(data));
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), NULL, 0, &n),
			 -EAGAIN);
	close_pair(sv);
}

static void test_bad_arguments(void **state)
{
	int sv[2], fds[DMB_SCM_MAX_FDS + 1] = { 0 }, devnull;
	char data[8];
	size_t n;

	pair(SOCK_SEQPACKET, sv);
	assert_int_equal(dmb_scm_send(sv[0], "x", 0, NULL, 0), -EINVAL);
	assert_int_equal(dmb_scm_send(sv[0], NULL, 1, NULL, 0), -EINVAL);
	assert_int_equal(dmb_scm_send(sv[0], "x", 1, NULL, 1), -EINVAL);
	assert_int_equal(dmb_scm_send(sv[0], "x", 1, fds, DMB_SCM_MAX_FDS + 1),
			 -EINVAL);
	assert_int_equal(dmb_scm_recv(sv[1], data, 0, NULL, 0, &n), -EINVAL);
	assert_int_equal(dmb_scm_recv(sv[1], data, 8, NULL, 1, &n), -EINVAL);
	assert_int_equal(dmb_scm_recv(sv[1], data, 8, NULL, 0, NULL), -EINVAL);

	/* A closed fd to send: the kernel refuses, nothing is delivered. */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(devnull >= 0);
	close(devnull);
	assert_int_equal(dmb_scm_send(sv[0], "x", 1, &devnull, 1), -EBADF);
	close_pair(sv);
}

static void test_fault_injection(void **state)
{
	int sv[2];
	char data[8];
	size_t n;

	pair(SOCK_SEQPACKET | SOCK_NONBLOCK, sv);
	dmb_sys_inject(DMB_SYS_SENDMSG, 1, EIO);
	assert_int_equal(dmb_scm_send(sv[0], "x", 1, NULL, 0), -EIO);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), NULL, 0, &n),
			 -EAGAIN);
	assert_int_equal(dmb_scm_send(sv[0], "x", 1, NULL, 0), 0);
	dmb_sys_inject(DMB_SYS_RECVMSG, 1, ENOMEM);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), NULL, 0, &n),
			 -ENOMEM);
	assert_int_equal(dmb_scm_recv(sv[1], data, sizeof(data), NULL, 0, &n), 1);
	close_pair(sv);
}

/* ---- public helpers ------------------------------------------------------------ */

static void roundtrip_public(int type)
{
	int sv[2], fd = memfd_with("payload"), got = -2;
	char buf[64];
	size_t len = 0;

	pair(type, sv);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "meta", 4), 0);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(buf, "meta", 4);
	assert_cloexec(got);
	assert_same_file(fd, got);
	close(got);

	/* No fd, empty payload. */
	got = -2;
	assert_int_equal(dmabuf_send_fd(sv[0], -1, NULL, 0), 0);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, NULL, 0, &len), 0);
	assert_int_equal(got, -1);
	assert_int_equal(len, 0);

	/* Boundaries survive back-to-back messages. */
	static char big[DMABUF_SCM_MAX_PAYLOAD];
	static char rbig[DMABUF_SCM_MAX_PAYLOAD];

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, big, sizeof(big)), 0);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "ab", 2), 0);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "cde", 3), 0);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, rbig, sizeof(rbig), &len), 0);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(rbig, big, sizeof(big));
	assert_same_file(fd, got);
	close(got);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), 0);
	assert_int_equal(got, -1);
	assert_int_equal(len, 2);
	assert_memory_equal(buf, "ab", 2);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "cde", 3);
	assert_same_file(fd, got);
	close(got);

	/* Payload larger than the buffer: error, fd closed, next one fine. */
	int before;

	assert_int_equal(dmabuf_send_fd(sv[0], fd, "0123456789", 10), 0);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "ok", 2), 0);
	before = harness_count_fds();
	got = -2;
	len = 77;
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, 5, &len), -EMSGSIZE);
	assert_int_equal(got, -2);
	assert_int_equal(len, 77);
	assert_int_equal(harness_count_fds(), before);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 2);
	assert_memory_equal(buf, "ok", 2);
	assert_same_file(fd, got);
	close(got);

	/* Too large to send; bad fd. */
	assert_int_equal(dmabuf_send_fd(sv[0], fd, big, sizeof(big) + 1), -EINVAL);
	assert_int_equal(dmabuf_send_fd(sv[0], -2, NULL, 0), -EINVAL);
	assert_int_equal(dmabuf_send_fd(sv[0], 1000000, NULL, 0), -EBADF);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, NULL, 3), -EINVAL);
	assert_int_equal(dmabuf_recv_fd(sv[1], NULL, buf, 5, &len), -EINVAL);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, NULL, 5, &len), -EINVAL);

	/* Peer closed. */
	close(sv[0]);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len),
			 -ECONNRESET);
	assert_int_equal(dmabuf_send_fd(sv[1], fd, "x", 1), -EPIPE);
	close(sv[1]);
	close(fd);
}

static void test_public_seqpacket(void **state)
{
	roundtrip_public(SOCK_SEQPACKET);
}

static void test_public_stream(void **state)
{
	roundtrip_public(SOCK_STREAM);
}

static void test_public_nonblocking(void **state)
{
	int sv[2], got;
	char buf[8];
	size_t len;

	pair(SOCK_STREAM | SOCK_NONBLOCK, sv);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len),
			 -EAGAIN);
	close_pair(sv);
	pair(SOCK_SEQPACKET | SOCK_NONBLOCK, sv);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len),
			 -EAGAIN);
	close_pair(sv);
}

static void test_public_not_a_socket(void **state)
{
	int p[2], got;
	char buf[8];

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(dmabuf_send_fd(p[1], -1, "x", 1), -ENOTSOCK);
	assert_int_equal(dmabuf_recv_fd(p[0], &got, buf, sizeof(buf), NULL),
			 -ENOTSOCK);
	close(p[0]);
	close(p[1]);
}

/* Frames that dmabuf_send_fd() never produces. */
static void test_public_garbage(void **state)
{
	int sv[2], fds[2], got = -2, before;
	char buf[64];
	size_t len;
	uint8_t hdr[8] = { 'D', 'M', 'B', 'F', 2, 0, 1, 0 };

	fds[0] = memfd_with("g");
	fds[1] = memfd_with("h");

	/* Not a frame at all. */
	pair(SOCK_SEQPACKET, sv);
	raw_send(sv[0], "hello world", 11, fds, 1, 1);
	before = harness_count_fds();
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), -EPROTO);
	assert_int_equal(harness_count_fds(), before);
	/* Two fds in one frame. */
	raw_send(sv[0], hdr, 6, fds, 2, 1);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), -EPROTO);
	assert_int_equal(harness_count_fds(), before);
	/* Header says one fd, none came. */
	raw_send(sv[0], hdr, 6, NULL, 0, 0);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), -EPROTO);
	/* Length disagrees with the packet. */
	raw_send(sv[0], hdr, 8, fds, 1, 1);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), -EPROTO);
	assert_int_equal(harness_count_fds(), before);
	assert_int_equal(got, -2);
	close_pair(sv);

	/* Stream: an fd riding on payload bytes instead of the header. */
	pair(SOCK_STREAM, sv);
	hdr[6] = 0;
	assert_int_equal(write(sv[0], hdr, 8), 8);
	raw_send(sv[0], "xy", 2, fds, 1, 1);
	before = harness_count_fds();
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len), -EPROTO);
	assert_int_equal(harness_count_fds(), before);
	/* EOF in the middle of a frame. */
	assert_int_equal(write(sv[0], hdr, 5), 5);
	close(sv[0]);
	assert_int_equal(dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len),
			 -ECONNRESET);
	close(sv[1]);

	close(fds[0]);
	close(fds[1]);
}

/* A stream message that arrives in pieces is waited for, even on a
 * non-blocking socket, once its first byte is in. */
struct pieces_arg {
	int sock;
};

static int send_in_pieces(void *p)
{
	struct pieces_arg *a = p;
	uint8_t frame[8 + 5] = { 'D', 'M', 'B', 'F', 5, 0, 0, 0,
				 'h', 'e', 'l', 'l', 'o' };

	child_check(write(a->sock, frame, 3) == 3);
	usleep(50 * 1000);
	child_check(write(a->sock, frame + 3, 7) == 7);
	usleep(50 * 1000);
	child_check(write(a->sock, frame + 10, 3) == 3);
	return 0;
}

static void test_public_stream_pieces(void **state)
{
	int sv[2], got;
	char buf[8];
	size_t len;
	struct pieces_arg a;
	pid_t pid;
	int ret;

	pair(SOCK_STREAM, sv);
	a.sock = sv[0];
	pid = harness_fork_sock(send_in_pieces, &a, sv[1]);
	close(sv[0]);
	assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	/* Spin until the first byte is there, then the call must wait. */
	while ((ret = dmabuf_recv_fd(sv[1], &got, buf, sizeof(buf), &len)) == -EAGAIN)
		usleep(1000);
	assert_int_equal(ret, 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(got, -1);
	assert_int_equal(harness_wait(pid), 0);
	close(sv[1]);
}

/* Across fork: the child gets a memfd, writes through it, sends it back. */
static int child_echo(void *p)
{
	int sock = *(int *)p, fd = -1;
	char buf[16];
	size_t len = 0;
	void *map;

	child_check(dmabuf_recv_fd(sock, &fd, buf, sizeof(buf), &len) == 0);
	child_check(fd >= 0);
	child_check(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	child_check(len == 4 && memcmp(buf, "ping", 4) == 0);
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	child_check(map != MAP_FAILED);
	child_check(memcmp(map, "parent", 6) == 0);
	memcpy(map, "child!", 6);
	munmap(map, 4096);
	child_check(dmabuf_send_fd(sock, fd, "pong", 4) == 0);
	close(fd);
	return 0;
}

static void test_across_fork(void **state)
{
	int sv[2], fd = memfd_with("parent"), got = -1;
	char buf[16];
	size_t len;
	pid_t pid;

	assert_int_equal(ftruncate(fd, 4096), 0);
	pair(SOCK_SEQPACKET, sv);
	pid = harness_fork_sock(child_echo, &sv[1], sv[0]);
	/* Only the child holds its end: if it dies, we see EOF, not a hang. */
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "ping", 4), 0);
	assert_int_equal(dmabuf_recv_fd(sv[0], &got, buf, sizeof(buf), &len), 0);
	assert_int_equal(harness_wait(pid), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(buf, "pong", 4);
	assert_same_file(fd, got);
	assert_int_equal(pread(got, buf, 6, 0), 6);
	assert_memory_equal(buf, "child!", 6);
	close(got);
	close(fd);
	close(sv[0]);
}

/* ---- sg-entries memfd ------------------------------------------------------------ */

static void test_sg_memfd(void **state)
{
	enum { N = 1000 };
	struct dmabuf_sg_entry *sg = calloc(N, sizeof(*sg)), *out = NULL;
	int fd, plain;

	assert_non_null(sg);
	for (unsigned i = 0; i < N; i++)
		sg[i] = (struct dmabuf_sg_entry){ i * 8192ull, 8192,
						  (uint64_t)(N - i) << 20 };
	fd = dmb_scm_sg_memfd_create(sg, N);
	assert_true(fd >= 0);
	assert_cloexec(fd);
	assert_int_equal(dmb_scm_sg_memfd_read(fd, N, N * 8192ull, &out), 0);
	assert_memory_equal(out, sg, N * sizeof(*sg));
	free(out);
	out = NULL;
	/* Sealed: the sender cannot change the entries afterwards. */
	assert_int_equal(pwrite(fd, "x", 1, 0), -1);
	assert_int_equal(errno, EPERM);
	/* Count or size that disagree. */
	assert_int_equal(dmb_scm_sg_memfd_read(fd, N - 1, N * 8192ull, &out), -EPROTO);
	assert_int_equal(dmb_scm_sg_memfd_read(fd, N, N * 8192ull + 4096, &out), -EPROTO);
	assert_int_equal(dmb_scm_sg_memfd_read(fd, 0, 4096, &out), -EPROTO);
	assert_null(out);
	close(fd);

	/* Unsealed memfd with the right bytes. */
	plain = memfd_create("plain", MFD_CLOEXEC);
	assert_true(plain >= 0);
	{
		uint8_t b[24];

		dmb_wire_put_sg(b, &sg[0]);
		assert_int_equal(write(plain, b, 24), 24);
	}
	assert_int_equal(dmb_scm_sg_memfd_read(plain, 1, 8192, &out), -EPROTO);
	close(plain);

	/* Not a memfd at all. */
	{
		int p[2];

		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		assert_int_equal(dmb_scm_sg_memfd_read(p[0], 1, 8192, &out), -EPROTO);
		close(p[0]);
		close(p[1]);
	}

	/* Sealed, right size, entries that do not tile the buffer. */
	sg[1].offset = 0;
	fd = dmb_scm_sg_memfd_create(sg, 2);
	assert_true(fd >= 0);
	assert_int_equal(dmb_scm_sg_memfd_read(fd, 2, 16384, &out), -EPROTO);
	assert_null(out);
	close(fd);

	assert_int_equal(dmb_scm_sg_memfd_create(sg, 0), -EINVAL);
	assert_int_equal(dmb_scm_sg_memfd_create(NULL, 1), -EINVAL);
	free(sg);
}

/* A 1 GiB buffer of 64 KiB segments: 16,384 entries, 384 KiB of table,
 * written and read whole (one pwrite(), one pread()), every entry intact
 * and in its wire form in the file. */
static void test_sg_memfd_large(void **state)
{
	enum { N = 16384 };
	struct dmabuf_sg_entry *sg = calloc(N, sizeof(*sg)), *out = NULL;
	uint8_t wire[DMB_WIRE_SG_ENTRY_SIZE], got[DMB_WIRE_SG_ENTRY_SIZE];
	int fd;

	(void)state;
	assert_non_null(sg);
	for (unsigned i = 0; i < N; i++)
		sg[i] = (struct dmabuf_sg_entry){ i * 65536ull, 65536,
						  0x100000000ull + (uint64_t)(N - i) * 0x20000 };
	fd = dmb_scm_sg_memfd_create(sg, N);
	assert_true(fd >= 0);
	for (unsigned i = 0; i < N; i += N / 4 - 1) {
		dmb_wire_put_sg(wire, &sg[i]);
		assert_int_equal(pread(fd, got, sizeof(got), (off_t)i * sizeof(got)),
				 (ssize_t)sizeof(got));
		assert_memory_equal(got, wire, sizeof(wire));
	}
	assert_int_equal(dmb_scm_sg_memfd_read(fd, N, N * 65536ull, &out), 0);
	assert_memory_equal(out, sg, N * sizeof(*sg));
	free(out);
	close(fd);
	free(sg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(test_fds_arrive_cloexec),
		harness_test(test_too_many_fds_closed),
		harness_test(test_no_fds_expected),
		harness_test(test_multiple_cmsgs),
		harness_test(test_truncated_data_closes_fds),
		harness_test(test_recv_many),
		harness_test(test_credentials_ignored),
		harness_test(test_pidfd_closed),
		harness_test(test_peer_closed),
		harness_test(test_nonblocking),
		harness_test(test_bad_arguments),
		harness_test(test_fault_injection),
		harness_test(test_public_seqpacket),
		harness_test(test_public_stream),
		harness_test(test_public_nonblocking),
		harness_test(test_public_not_a_socket),
		harness_test(test_public_garbage),
		harness_test(test_public_stream_pieces),
		harness_test(test_across_fork),
		harness_test(test_sg_memfd),
		harness_test(test_sg_memfd_large),
	};

	/* A SIGPIPE would kill the suite: prove MSG_NOSIGNAL instead. */
	signal(SIGPIPE, SIG_DFL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
