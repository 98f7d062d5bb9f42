/* SPDX-License-Identifier: MIT */
/* A raw client of an exporter's endpoint (rawpeer.h). */
#include "rawpeer.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>

#include "harness.h"

/* Serials of the requests rp_encode() numbers, process-wide. */
static uint64_t rp_serial;
/* Ids of the IMPORTs rp_encode() names (version 3), process-wide. */
static uint64_t rp_import_id;

int64_t rp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool rp_is_event(uint16_t op)
{
	const struct dmb_wire_desc *d = dmb_wire_op_desc(op);

	return d && d->kind == DMB_WIRE_EVENT;
}

/* A SOCK_SEQPACKET socket connected to the abstract @name, or (listening)
 * bound to it and listening with a backlog of 1; or -errno. */
static int abstract_socket(const char *name, bool listening)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
	int fd, err;

	if (len + 1 > sizeof(addr.sun_path))
		return -EINVAL;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(addr.sun_path + 1, name, len);
	if (listening ? bind(fd, (struct sockaddr *)&addr, alen) < 0 || listen(fd, 1) < 0
		      : connect(fd, (struct sockaddr *)&addr, alen) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int rp_connect_name(const char *name)
{
	return abstract_socket(name, false);
}

int rp_listen_name(const char *name)
{
	return abstract_socket(name, true);
}

int rp_fake_buffer(const char *tag, const char *name, uint64_t size,
		   unsigned int mfd_flags, int seals)
{
	char memfd_name[128];
	int fd, err;

	if (snprintf(memfd_name, sizeof(memfd_name), "dmabuf:%s@%s", tag, name) >=
	    (int)sizeof(memfd_name))
		return -EINVAL;
	fd = memfd_create(memfd_name, MFD_CLOEXEC | MFD_ALLOW_SEALING | mfd_flags);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, seals) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int rp_connect(int buffd)
{
	char name[DMB_ENDPOINT_NAME_MAX];

	if (dmb_endpoint_of_fd(buffd, name, sizeof(name)) < 0)
		return -EINVAL;
	return rp_connect_name(name);
}

int rp_send_raw(int sock, const void *data, size_t len,
		const int *fds, size_t nfds, int flags)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * RP_MAX_FDS)];
	} ctrl;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > RP_MAX_FDS)
		return -EINVAL;
	memset(&ctrl, 0, sizeof(ctrl));
	if (nfds) {
		struct cmsghdr *c;

		msg.msg_control = ctrl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

int rp_encode(struct dmb_msg *m, uint8_t *buf)
{
	/* Version 3: an IMPORT carries the id the client gives it; a fresh
	 * one with every fresh serial (a test that wants its own sets the
	 * serial too). */
	if (!m->serial && m->op == DMB_OP_IMPORT &&
	    (!m->version || m->version >= DMB_WIRE_VERSION_CLIENT_IDS))
		m->u.import.buffer_id = DMB_WIRE_CLIENT_ID_BIT | ++rp_import_id;
	if (!m->serial && !rp_is_event(m->op))
		m->serial = ++rp_serial;
	return dmb_wire_encode(buf, DMB_WIRE_MAX_MSG, m);
}

int rp_send(int sock, struct dmb_msg *m)
{
	uint8_t buf[DMB_WIRE_MAX_MSG];
	int len = rp_encode(m, buf);

	if (len < 0)
		return len;
	return rp_send_raw(sock, buf, (size_t)len, m->fds, m->nfds, 0);
}

/* One packet if one is there: its length, 0 at EOF, -EAGAIN if none, or
 * -errno. */
static ssize_t recv_now(int sock, void *data, size_t cap, size_t *nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * RP_MAX_FDS)];
	} ctrl;
	struct iovec iov = { .iov_base = data, .iov_len = cap };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctrl.buf,
			      .msg_controllen = sizeof(ctrl.buf) };
	ssize_t n;

	do
		n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == ECONNRESET || errno == EPIPE ? 0 : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			close(fd);
			(*nfds)++;
		}
	}
	return n;
}

ssize_t rp_recv_raw(int sock, struct dmabuf_ctx *exp, void *data,
		    size_t cap, size_t *nfds, const char *what)
{
	ssize_t n;

	*nfds = 0;
	n = recv_now(sock, data, cap, nfds);
	if (n != -EAGAIN || !what)
		return n;
	/* Waited for: the packet or the hang-up is the event; the guard's
	 * clock only bounds a hang and names what did not come. */
	harness_guard_start(what, RP_GUARD_S);
	while ((n = recv_now(sock, data, cap, nfds)) == -EAGAIN) {
		struct pollfd p = { .fd = sock, .events = POLLIN };

		if (exp) {
			/* the exporter answers from its dispatch: a slice,
			 * not a bound */
			dmabuf_ctx_dispatch(exp);
			poll(&p, 1, 2);
		} else {
			poll(&p, 1, -1);
		}
	}
	harness_guard_done();
	return n;
}

/* rp_recv() under the guard named @what. */
static int recv_msg(int sock, struct dmabuf_ctx *exp, struct dmb_msg *m, const char *what)
{
	static const int fake[DMB_WIRE_MAX_FDS] = { 1000, 1001, 1002, 1003 };
	uint8_t buf[DMB_WIRE_MAX_MSG + 64];
	size_t nfds;
	ssize_t n = rp_recv_raw(sock, exp, buf, sizeof(buf), &nfds, what);
	int ret;

	if (n <= 0)
		return (int)n;
	if (nfds > DMB_WIRE_MAX_FDS)
		return -EMSGSIZE;
	ret = dmb_wire_decode(buf, (size_t)n, fake, nfds, DMB_WIRE_CLIENT, m);
	if (ret < 0)
		return ret;
	for (unsigned int i = 0; i < DMB_WIRE_MAX_FDS; i++)
		m->fds[i] = -1;
	return 1;
}

int rp_recv(int sock, struct dmabuf_ctx *exp, struct dmb_msg *m)
{
	return recv_msg(sock, exp, m, "a message from the exporter");
}

int rp_reply(int sock, struct dmabuf_ctx *exp, uint16_t op,
	     uint64_t serial, struct dmb_msg *reply)
{
	const char *name = dmb_wire_op_name(op);
	char what[96];

	if (name && strcmp(name, "?"))
		snprintf(what, sizeof(what), "the exporter's reply to %s (serial %llu)", name,
			 (unsigned long long)serial);
	else
		snprintf(what, sizeof(what), "the exporter's reply to op %#x (serial %llu)",
			 (unsigned int)op, (unsigned long long)serial);
	for (;;) {
		int ret = recv_msg(sock, exp, reply, what);

		if (ret == 0)
			return RP_CLOSED;
		if (ret < 0)
			return ret;
		if (rp_is_event(reply->op))
			continue;
		if (reply->serial != serial || reply->op != (op | DMB_WIRE_OP_REPLY))
			return -EPROTO;
		return reply->status;
	}
}

int rp_call(int sock, struct dmabuf_ctx *exp, struct dmb_msg *m,
	    struct dmb_msg *reply)
{
	struct dmb_msg scratch;
	int ret = rp_send(sock, m);

	if (ret == -EPIPE || ret == -ECONNRESET)
		return RP_CLOSED;
	if (ret < 0)
		return ret;
	return rp_reply(sock, exp, m->op, m->serial, reply ? reply : &scratch);
}

int rp_expect_closed(int sock, struct dmabuf_ctx *exp)
{
	uint8_t buf[DMB_WIRE_MAX_MSG + 64];
	int count = 0;

	for (;;) {
		size_t nfds;
		ssize_t n = rp_recv_raw(sock, exp, buf, sizeof(buf), &nfds,
					"the exporter closing the connection");

		if (n == 0)
			return count;
		if (n < 0)
			return (int)n;
		count++;
	}
}

int rp_hello(int sock, struct dmabuf_ctx *exp)
{
	struct dmb_msg m = { .op = DMB_OP_HELLO };

	m.u.hello.min_version = DMB_WIRE_VERSION_MIN;
	m.u.hello.max_version = DMB_WIRE_VERSION_MAX;
	m.u.hello.pid = (uint32_t)getpid();
	return rp_call(sock, exp, &m, NULL);
}

int rp_import(int sock, struct dmabuf_ctx *exp, int buffd, uint64_t *id)
{
	struct dmb_msg m = { .op = DMB_OP_IMPORT, .nfds = 1 }, r;
	int ret;

	m.fds[0] = buffd;
	ret = rp_call(sock, exp, &m, &r);
	if (ret == 0 && id)
		*id = r.u.import_reply.buffer_id;
	return ret;
}

void rp_attach_msg(struct dmb_msg *m, uint64_t buffer_id)
{
	memset(m, 0, sizeof(*m));
	m->op = DMB_OP_ATTACH;
	m->u.attach.buffer_id = buffer_id;
	strcpy(m->u.attach.name, "raw");
	m->u.attach.dma_mask_bits = 64;
	m->u.attach.dev_flags = DMABUF_DEVICE_IOMMU;
	m->u.attach.max_segment_size = 0x10000;
	m->u.attach.segment_boundary = 0xffffffffull;
	m->u.attach.alignment = 4096;
}

int rp_attach(int sock, struct dmabuf_ctx *exp, uint64_t buffer_id,
	      uint64_t *att)
{
	struct dmb_msg m, r;
	int ret;

	rp_attach_msg(&m, buffer_id);
	ret = rp_call(sock, exp, &m, &r);
	if (ret == 0 && att)
		*att = r.u.attach_reply.attachment_id;
	return ret;
}

int rp_map(int sock, struct dmabuf_ctx *exp, uint64_t att,
	   enum dmabuf_direction dir, uint64_t *map)
{
	struct dmb_msg m = { .op = DMB_OP_MAP }, r;
	int ret;

	m.u.map.id = att;
	m.u.map.dir = (uint32_t)dir;
	ret = rp_call(sock, exp, &m, &r);
	if (ret == 0 && map)
		*map = r.u.map_reply.mapping_id;
	return ret;
}

int rp_unmap(int sock, struct dmabuf_ctx *exp, uint64_t map,
	     enum dmabuf_direction dir)
{
	struct dmb_msg m = { .op = DMB_OP_UNMAP };

	m.u.map.id = map;
	m.u.map.dir = (uint32_t)dir;
	return rp_call(sock, exp, &m, NULL);
}

int rp_id_call(int sock, struct dmabuf_ctx *exp, uint16_t op, uint64_t id)
{
	struct dmb_msg m;

	dmb_wire_msg_init(&m, op, id);
	return rp_call(sock, exp, &m, NULL);
}

int rp_cpu(int sock, struct dmabuf_ctx *exp, uint16_t op,
	   uint64_t buffer_id, enum dmabuf_direction dir)
{
	struct dmb_msg m = { .op = op };

	m.u.cpu_access.buffer_id = buffer_id;
	m.u.cpu_access.dir = (uint32_t)dir;
	return rp_call(sock, exp, &m, NULL);
}
