/* SPDX-License-Identifier: MIT */
/*
 * The importer's side of a connection to an exporter's endpoint: connect,
 * handshake, and synchronous calls that keep serving this process's
 * contexts while they wait.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <bsd/string.h>

#include "remote.h"
#include "scm.h"

#define MAX_WAIT_FDS 16

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conn_kill(struct dmb_conn *conn, const char *why)
{
	if (conn->dead)
		return;
	dmb_warn(conn->ctx, "exporter %s is gone (%s): device operations on its buffers now fail with -ENODEV",
		 conn->endpoint, why);
	conn->dead = true;
}

static int conn_send(struct dmb_conn *conn, struct dmb_msg *msg)
{
	uint8_t buf[DMB_WIRE_MAX_MSG];
	int len, ret;

	len = dmb_wire_encode(buf, sizeof(buf), msg);
	if (len < 0)
		return len;
	ret = dmb_scm_send(conn->fd, buf, (size_t)len, msg->fds, msg->nfds);
	if (ret == -EPIPE || ret == -ECONNRESET) {
		conn_kill(conn, "connection closed");
		return -ENODEV;
	}
	return ret;
}

/* Receives and decodes one reply; every received fd is closed on error.
 * Version 1 has one event, MOVE_NOTIFY, which an exporter sends only for
 * DYNAMIC attachments; this importer never makes one, so an event is a
 * protocol error, like a reply to nothing it asked. */
static int conn_recv(struct dmb_conn *conn, struct dmb_msg *msg)
{
	const struct dmb_wire_desc *d;
	uint8_t buf[DMB_WIRE_MAX_MSG];
	int fds[DMB_WIRE_MAX_FDS];
	size_t nfds = 0;
	ssize_t len;
	int ret;

	len = dmb_scm_recv(conn->fd, buf, sizeof(buf), fds, DMB_WIRE_MAX_FDS, &nfds);
	if (len == -EAGAIN)
		return -EAGAIN;
	if (len < 0) {
		conn_kill(conn, len == -ECONNRESET ? "connection closed" : "receive error");
		return -ENODEV;
	}
	ret = dmb_wire_decode(buf, (size_t)len, fds, nfds, DMB_WIRE_CLIENT, msg);
	if (ret < 0) {
		dmb_scm_close_fds(fds, nfds);
		dmb_err(conn->ctx, "exporter %s sent a malformed message (%d): dropping the connection",
			conn->endpoint, ret);
		conn_kill(conn, "protocol error");
		return -ENODEV;
	}
	d = dmb_wire_op_desc(msg->op);
	if (d && d->kind == DMB_WIRE_EVENT) {
		dmb_err(conn->ctx, "exporter %s sent %s, which this importer never asked for: dropping the connection",
			conn->endpoint, d->name);
		conn_kill(conn, "protocol error");
		return -ENODEV;
	}
	return 0;
}

/* A reply to a request sent with dmb_conn_send_only(): drop it. Replies
 * come in request order, so those are the ones before ours. */
static bool drop_unanswered(struct dmb_conn *conn, struct dmb_msg *reply,
			    uint64_t serial)
{
	if (!conn->unanswered || reply->serial >= serial ||
	    reply->op != DMB_OP_RELEASE_REPLY)
		return false;
	dmb_scm_close_fds(reply->fds, reply->nfds);
	conn->unanswered--;
	return true;
}

int dmb_conn_send_only(struct dmb_conn *conn, struct dmb_msg *req)
{
	struct dmb_msg reply;
	int ret;

	if (conn->dead)
		return -ENODEV;
	/* Take in what already arrived, so unread replies never fill the
	 * socket (the exporter drops a peer that does not read). */
	while (conn->unanswered && conn_recv(conn, &reply) == 0)
		if (!drop_unanswered(conn, &reply, conn->next_serial + 1))
			dmb_scm_close_fds(reply.fds, reply.nfds);
	if (conn->dead)
		return -ENODEV;
	req->version = conn->version;
	req->serial = ++conn->next_serial;
	ret = conn_send(conn, req);
	if (ret == 0)
		conn->unanswered++;
	return ret;
}

int dmb_conn_call(struct dmb_conn *conn, struct dmb_msg *req, struct dmb_msg *reply)
{
	struct dmabuf_ctx *ctx = conn->ctx;
	struct pollfd pfd[2 + MAX_WAIT_FDS];
	int64_t deadline;
	int others, ret;

	if (conn->dead)
		return -ENODEV;
	req->version = conn->version ? conn->version : DMB_WIRE_VERSION_BASE;
	req->serial = ++conn->next_serial;
	ret = conn_send(conn, req);
	if (ret < 0)
		return ret;
	deadline = now_ms() + (ctx->config.call_timeout_ms ? ctx->config.call_timeout_ms : 30000);

	for (;;) {
		int64_t left = deadline - now_ms();

		if (left <= 0) {
			dmb_err(ctx, "exporter %s did not answer %s in time",
				conn->endpoint, dmb_wire_op_name(req->op));
			conn_kill(conn, "timeout");
			return -ETIMEDOUT;
		}
		/* Wait for the reply, for requests to this context, and for
		 * requests to the process's other contexts. */
		pfd[0] = (struct pollfd){ .fd = conn->fd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = dmb_ctx_epoll_fd(ctx), .events = POLLIN };
		{
			int fds[MAX_WAIT_FDS];

			others = dmb_ctx_other_fds(ctx, fds, MAX_WAIT_FDS);
			for (int i = 0; i < others; i++)
				pfd[2 + i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		}
		ret = poll(pfd, (nfds_t)(2 + others), left > 100 ? 100 : (int)left);
		if (ret < 0 && errno != EINTR)
			return -errno;
		if (pfd[0].revents) {
			ret = conn_recv(conn, reply);
			if (ret == -EAGAIN)
				continue;
			if (ret < 0)
				return ret;
			if (drop_unanswered(conn, reply, req->serial))
				continue;
			if (reply->serial != req->serial ||
			    reply->op != (req->op | DMB_WIRE_OP_REPLY)) {
				dmb_scm_close_fds(reply->fds, reply->nfds);
				dmb_err(ctx, "exporter %s answered %s serial %llu to %s serial %llu",
					conn->endpoint, dmb_wire_op_name(reply->op),
					(unsigned long long)reply->serial,
					dmb_wire_op_name(req->op),
					(unsigned long long)req->serial);
				conn_kill(conn, "protocol error");
				return -ENODEV;
			}
			return reply->status;
		}
		if (pfd[1].revents)
			dmb_ctx_dispatch_locked(ctx, 0);
		for (int i = 0; i < others; i++)
			if (pfd[2 + i].revents) {
				dmb_ctx_serve_others(ctx);
				break;
			}
	}
}

static int conn_connect(struct dmb_conn *conn)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(conn->endpoint);
	socklen_t alen;
	int err;

	if ((err = dmb_sys_fail(DMB_SYS_SOCKET)))
		return -err;
	conn->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (conn->fd < 0)
		return -errno;
	/* abstract name: a leading NUL, no terminating one */
	memcpy(addr.sun_path + 1, conn->endpoint, len);
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
	if (connect(conn->fd, (struct sockaddr *)&addr, alen) < 0) {
		err = errno == ECONNREFUSED || errno == ENOENT ? -ENODEV : -errno;
		close(conn->fd);
		conn->fd = -1;
		return err;
	}
	return 0;
}

static int conn_hello(struct dmb_conn *conn)
{
	struct dmb_msg req, reply;
	int ret;

	dmb_wire_msg_init(&req, DMB_OP_HELLO, 0);
	req.u.hello.min_version = DMB_WIRE_VERSION_MIN;
	req.u.hello.max_version = DMB_WIRE_VERSION_MAX;
	req.u.hello.pid = (uint32_t)getpid();
	ret = dmb_conn_call(conn, &req, &reply);
	if (ret < 0)
		return ret;
	if (reply.u.hello_reply.version < DMB_WIRE_VERSION_MIN ||
	    reply.u.hello_reply.version > DMB_WIRE_VERSION_MAX)
		return -EPROTONOSUPPORT;
	conn->version = reply.u.hello_reply.version;
	conn->limits = reply.u.hello_reply;
	return 0;
}

int dmb_conn_get(struct dmabuf_ctx *ctx, const char *endpoint, struct dmb_conn **out)
{
	struct dmb_conn *conn;
	int ret;

	struct dmb_conn *tmp;

	LIST_FOREACH_SAFE(conn, &ctx->conns, link, tmp) {
		if (conn->dead && !conn->users) { /* idle and useless */
			LIST_REMOVE(conn, link);
			close(conn->fd);
			free(conn);
			continue;
		}
		if (!conn->dead && !strcmp(conn->endpoint, endpoint)) {
			conn->users++;
			*out = conn;
			return 0;
		}
	}
	conn = calloc(1, sizeof(*conn));
	if (!conn)
		return -ENOMEM;
	conn->ctx = ctx;
	conn->fd = -1;
	strlcpy(conn->endpoint, endpoint, sizeof(conn->endpoint));
	ret = conn_connect(conn);
	if (ret == 0)
		ret = conn_hello(conn);
	if (ret < 0) {
		dmb_info(ctx, "cannot reach exporter %s: %d", endpoint, ret);
		if (conn->fd >= 0)
			close(conn->fd);
		free(conn);
		return ret;
	}
	conn->users = 1;
	LIST_INSERT_HEAD(&ctx->conns, conn, link);
	*out = conn;
	return 0;
}

void dmb_conn_put(struct dmb_conn *conn)
{
	/* Idle connections stay for the next import from this exporter;
	 * dmb_conn_get() frees dead ones, context teardown the rest. */
	conn->users--;
}

void dmb_conns_destroy(struct dmabuf_ctx *ctx)
{
	struct dmb_conn *conn;

	while ((conn = LIST_FIRST(&ctx->conns))) {
		LIST_REMOVE(conn, link);
		close(conn->fd);
		free(conn);
	}
}
