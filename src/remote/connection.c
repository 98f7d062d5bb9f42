/* SPDX-License-Identifier: MIT */
/*
 * The importer's side of a connection to an exporter's endpoint: connect,
 * handshake, and synchronous calls that keep serving this process's
 * contexts while they wait.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <bsd/string.h>

#include "remote.h"
#include "scm.h"

#define MAX_WAIT_FDS 16
/* A call blocked in recvmsg() looks at its deadline this often. */
#define DMB_CONN_RECV_SLICE_MS 100

pid_t dmb_self_pid(void)
{
	/* (fork generation + 1) << 32 | pid: the generation changes in
	 * every forked child, so the pid is asked once per process. */
	static _Atomic uint64_t cache;
	uint64_t c = atomic_load_explicit(&cache, memory_order_relaxed);
	uint32_t gen = dmb_fork_gen() + 1u;

	if ((uint32_t)(c >> 32) != gen) {
		c = (uint64_t)gen << 32 | (uint32_t)getpid();
		atomic_store_explicit(&cache, c, memory_order_relaxed);
	}
	return (pid_t)(uint32_t)c;
}

int64_t dmb_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Gives the connection up: closed at once, so the exporter sees this peer
 * go and undoes everything it held (imports, attachments, mappings, CPU
 * brackets), as for a dead process. Nothing later needs the socket: every
 * call on a dead connection is -ENODEV, and puts, unmaps and detaches of
 * what the proxies hold complete locally.
 */
static void conn_unwatch(struct dmb_conn *conn)
{
	if (!conn->watched)
		return;
	dmb_source_del(conn->ctx, &conn->src);
	dmb_source_del(conn->ctx, &conn->evt_src);
	close(conn->evt_fd);
	conn->evt_fd = -1;
	conn->watched = false;
}

static void conn_kill(struct dmb_conn *conn, const char *why)
{
	if (conn->dead)
		return;
	dmb_warn(conn->ctx, "connection to exporter %s given up (%s): device operations on its buffers now fail with -ENODEV",
		 conn->endpoint, why);
	conn->dead = true;
	for (unsigned int i = 0; i < conn->nqueued; i++)
		if (conn->queue[i].p)
			conn->queue[i].p->queued = false; /* never to go */
	conn->nqueued = 0;
	conn_unwatch(conn);
	if (conn->fd >= 0) {
		close(conn->fd);
		conn->fd = -1;
	}
}

static int wait_serving(struct dmabuf_ctx *ctx, int fd, short events, int ms,
			bool unlocked);
static int conn_take(struct dmb_conn *conn);
static int conn_take_ex(struct dmb_conn *conn, bool wait);
static unsigned int call_timeout(const struct dmabuf_ctx *ctx);

/*
 * Version 5: the @n messages of one send, back to back in @packet (their
 * fds in order in @fds), so the exporter wakes once for all of them
 * (docs/protocol.md §1a). Returns 1 with out[0] the packet, or @n with
 * @out as it was when they do not fit in one (DMB_WIRE_MAX_MSG bytes,
 * DMB_WIRE_MAX_FDS fds).
 */
static size_t pack(struct dmb_scm_out *out, size_t n, uint8_t *packet, int *fds)
{
	size_t len = 0, nfds = 0;

	for (size_t i = 0; i < n; i++) {
		len += out[i].len;
		nfds += out[i].nfds;
	}
	if (len > DMB_WIRE_MAX_MSG || nfds > DMB_WIRE_MAX_FDS || n > DMB_WIRE_MAX_PACKED)
		return n;
	len = nfds = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(packet + len, out[i].data, out[i].len);
		len += out[i].len;
		for (size_t k = 0; k < out[i].nfds; k++)
			fds[nfds++] = out[i].fds[k];
	}
	out[0] = (struct dmb_scm_out){ packet, len, fds, nfds };
	return 1;
}

/*
 * Sends a request, after the requests held back for this send
 * (dmb_conn_queue()), all in one sendmmsg(). A full socket means the
 * exporter has not read what came before yet (many RELEASEs in a row, an
 * exporter busy in an op): wait for room, taking in its replies (it drops
 * a peer that does not read) and serving meanwhile, rather than lose the
 * request. An exporter that reads nothing for call_timeout_ms is given up.
 */
static int conn_send(struct dmb_conn *conn, struct dmb_msg *msg)
{
	struct dmb_scm_out out[DMB_CONN_MAX_QUEUED + 1];
	uint8_t buf[DMB_WIRE_MAX_MSG];
	uint8_t held[DMB_CONN_MAX_QUEUED][DMB_CONN_QUEUED_MSG];
	uint8_t packet[DMB_WIRE_MAX_MSG];
	int packet_fds[DMB_WIRE_MAX_FDS];
	int held_fd[DMB_CONN_MAX_QUEUED];
	int64_t deadline = 0;
	size_t n = 0, done = 0;
	int len, ret = 0;

	len = dmb_wire_encode(buf, sizeof(buf), msg);
	if (len < 0)
		return len;
	dmb_wire_trace("importer", conn->endpoint, true, msg);
	/* The held-back requests are this send's from now on: a send nested
	 * in the wait below goes after them, never with them again. */
	for (unsigned int i = 0; i < conn->nqueued; i++, n++) {
		memcpy(held[i], conn->queue[i].data, conn->queue[i].len);
		held_fd[i] = conn->queue[i].fd;
		if (conn->queue[i].p)
			conn->queue[i].p->queued = false;
		out[n] = (struct dmb_scm_out){ held[i], conn->queue[i].len, &held_fd[i],
					       held_fd[i] >= 0 };
	}
	conn->nqueued = 0;
	out[n++] = (struct dmb_scm_out){ buf, (size_t)len, msg->fds, msg->nfds };
	if (n > 1 && conn->version >= DMB_WIRE_VERSION_PACKED && !conn->hello_pending)
		n = pack(out, n, packet, packet_fds);
	while (done < n) {
		int ev;

		if (conn->dead)
			return -ENODEV;
		ret = dmb_scm_send_many(conn->fd, out + done, n - done, MSG_DONTWAIT);
		if (ret > 0) {
			done += (size_t)ret;
			ret = 0;
			continue;
		}
		if (ret != -EAGAIN)
			break;
		if (!deadline)
			deadline = dmb_now_ms() + call_timeout(conn->ctx);
		if (dmb_now_ms() >= deadline) {
			conn_kill(conn, "exporter does not read");
			return -ENODEV;
		}
		ev = wait_serving(conn->ctx, conn->fd, POLLIN | POLLOUT, 10, false);
		if (ev > 0 && (ev & (POLLIN | POLLHUP | POLLERR)))
			conn_take(conn);
	}
	if (ret == -EPIPE || ret == -ECONNRESET) {
		conn_kill(conn, "connection closed");
		return -ENODEV;
	}
	return ret;
}

/*
 * Receives and decodes one message; every received fd is closed on error.
 * Returns 0, 1 when the message came without its fds (this process is at
 * RLIMIT_NOFILE: they are -1 in @msg), -EAGAIN, or -ENODEV. The protocol has
 * one event, MOVE_NOTIFY, which an exporter sends only for DYNAMIC
 * attachments: conn_take() hands it to the proxy, and one for anything
 * else is a protocol error, like a reply to nothing it asked.
 */
static int conn_recv(struct dmb_conn *conn, struct dmb_msg *msg, bool wait)
{
	const struct dmb_wire_desc *d;
	uint8_t buf[DMB_WIRE_MAX_MSG];
	int fds[DMB_WIRE_MAX_FDS];
	size_t nfds = 0;
	bool lost;
	ssize_t len;
	int ret;

	len = dmb_scm_recv_lossy_flags(conn->fd, buf, sizeof(buf), fds,
				       DMB_WIRE_MAX_FDS, &nfds, &lost,
				       wait ? 0 : MSG_DONTWAIT);
	if (len == -EAGAIN)
		return -EAGAIN;
	if (len < 0) {
		conn_kill(conn, len == -ECONNRESET ? "connection closed" : "receive error");
		return -ENODEV;
	}
	if (lost)
		ret = dmb_wire_decode_fdless(buf, (size_t)len, DMB_WIRE_CLIENT, msg);
	else
		ret = dmb_wire_decode(buf, (size_t)len, fds, nfds, DMB_WIRE_CLIENT, msg);
	if (ret < 0) {
		dmb_scm_close_fds(fds, nfds);
		dmb_err(conn->ctx, "exporter %s sent a malformed message (%d): dropping the connection",
			conn->endpoint, ret);
		conn_kill(conn, "protocol error");
		return -ENODEV;
	}
	dmb_wire_trace("importer", conn->endpoint, false, msg);
	d = dmb_wire_op_desc(msg->op);
	if (d && d->kind == DMB_WIRE_EVENT &&
	    (msg->op != DMB_OP_MOVE_NOTIFY ||
	     dmb_proxy_move_event(conn, msg->u.id.id) < 0)) {
		dmb_scm_close_fds(msg->fds, msg->nfds);
		dmb_err(conn->ctx, "exporter %s sent %s, which this importer never asked for: dropping the connection",
			conn->endpoint, d->name);
		conn_kill(conn, "protocol error");
		return -ENODEV;
	}
	if (d && d->kind == DMB_WIRE_EVENT) {
		/* Taken: its move_notify runs from the dispatch. */
		uint64_t one = 1;

		if (conn->watched && write(conn->evt_fd, &one, sizeof(one)) < 0) {
			/* the counter is already non-zero: the dispatch runs */
		}
		return 2;
	}
	return lost;
}

/* Sends a request without waiting for its reply: an exporter of version 2
 * or later sends none (DMB_WIRE_F_NO_REPLY), an older one's conn_take()
 * drops. */
static int conn_send_nowait(struct dmb_conn *conn, struct dmb_msg *req)
{
	const struct dmb_wire_desc *d = dmb_wire_op_desc(req->op);
	bool no_reply;
	int ret = dmb_conn_ready(conn);

	if (ret < 0)
		return ret;
	no_reply = dmb_wire_may_no_reply(d, conn->version);
	req->version = conn->version;
	req->serial = ++conn->next_serial;
	req->flags = no_reply ? DMB_WIRE_F_NO_REPLY : 0;
	ret = conn_send(conn, req);
	if (ret == 0 && !no_reply)
		conn->unanswered++;
	return ret;
}

/*
 * A reply whose fds this process could not take in (RLIMIT_NOFILE) fails
 * its call with -EMFILE, as a local call that cannot get an fd does. What
 * the exporter set up for that reply is undone, so nothing is left behind
 * on its side; the connection stays.
 */
static void reply_without_fds(struct dmb_conn *conn, const struct dmb_msg *req,
			      struct dmb_msg *reply)
{
	struct dmb_msg undo = { 0 };

	dmb_warn(conn->ctx, "no free fd for the reply to %s (RLIMIT_NOFILE): that call fails with -EMFILE",
		 dmb_wire_op_name(reply->op));
	if (reply->status == 0 && reply->op == DMB_OP_MAP_REPLY && req) {
		undo.op = DMB_OP_UNMAP;
		undo.u.map.id = reply->u.map_reply.mapping_id;
		undo.u.map.dir = req->u.map.dir;
		conn_send_nowait(conn, &undo);
	} else if (reply->status == 0 && reply->op == DMB_OP_IMPORT_REPLY) {
		undo.op = DMB_OP_RELEASE;
		undo.u.id.id = reply->u.import_reply.buffer_id;
		conn_send_nowait(conn, &undo);
	}
	reply->status = -EMFILE;
	reply->nfds = 0;
}

/* A reply to the request with @serial came: every IMPORT sent before it
 * that had no reply was a QUIET success (the exporter answers in order). */
static void conn_settle(struct dmb_conn *conn, uint64_t serial)
{
	struct dmb_pending_import *p, *tmp;

	LIST_FOREACH_SAFE(p, &conn->pending, link, tmp) {
		if (p->queued || p->serial >= serial)
			continue;
		LIST_REMOVE(p, link);
		conn->npending--;
		dmb_proxy_import_reply(conn, p, NULL);
		free(p);
	}
}

/*
 * A decoded reply into its waiting call's slot. A struct dmb_msg is 4 KiB
 * (the room for a MAP_REPLY's inline table) and a decode writes its fixed
 * part and the records it carries only: a MAP_REPLY is copied that far
 * (its inline entries up to their count), anything else whole. Copying all
 * of it cost a round-trip MAP about as much as its decode (issue 11).
 */
static void reply_move(struct dmb_msg *dst, const struct dmb_msg *src)
{
	size_t len = sizeof(*src);

	if (src->op == DMB_OP_MAP_REPLY) {
		const struct dmb_wire_map_reply *r = &src->u.map_reply;
		size_t n = r->count < DMB_WIRE_MAX_INLINE_SG ? r->count : DMB_WIRE_MAX_INLINE_SG;

		len = offsetof(struct dmb_msg, u.map_reply.sg) + n * sizeof(r->sg[0]);
		if (len < DMB_WIRE_MSG_FIXED)
			len = DMB_WIRE_MSG_FIXED;
	}
	memcpy(dst, src, len);
}

static struct dmb_call *call_find(struct dmb_conn *conn, uint64_t serial)
{
	struct dmb_call *call;

	LIST_FOREACH(call, &conn->calls, link)
		if (call->req->serial == serial)
			return call;
	return NULL;
}

/*
 * Takes in one message, if one is there (@wait: waits for one up to the
 * socket's SO_RCVTIMEO), and hands it to its owner: a
 * reply goes to the waiting call with its serial (whichever call is
 * reading), a reply to a request sent without waiting is dropped, an event
 * needs no answer yet. Returns 0 when a message was taken, -EAGAIN when
 * none was there, -ENODEV when the connection is (now) dead.
 */
static int conn_take_ex(struct dmb_conn *conn, bool wait)
{
	struct dmb_call *call;
	struct dmb_msg msg;
	int ret;

	if (conn->dead)
		return -ENODEV;
	ret = conn_recv(conn, &msg, wait);
	if (ret < 0)
		return ret;
	if (ret == 2)
		return 0; /* an event, handed to its attachment */
	if (conn->npending)
		conn_settle(conn, msg.serial);
	if (conn->hello_pending && !conn->hello_answered &&
	    msg.serial == conn->hello_serial && msg.op == DMB_OP_HELLO_REPLY) {
		/* For whichever frame finishes the handshake (dmb_conn_ready()). */
		dmb_scm_close_fds(msg.fds, msg.nfds);
		conn->hello_status = msg.status;
		conn->hello_reply = msg.u.hello_reply;
		conn->hello_answered = true;
		return 0;
	}
	call = call_find(conn, msg.serial);
	if (!call && msg.op == DMB_OP_IMPORT_REPLY && conn->npending) {
		struct dmb_pending_import *p;

		LIST_FOREACH(p, &conn->pending, link)
			if (p->serial == msg.serial)
				break;
		if (p) {
			LIST_REMOVE(p, link);
			conn->npending--;
			/* Lost fds (ret 1) leave nfds set: a pipelined
			 * import's reply carries none, so it is refused. */
			ret = dmb_proxy_import_reply(conn, p, &msg);
			free(p);
			if (ret < 0) {
				dmb_err(conn->ctx, "exporter %s answered an IMPORT with what contradicts the buffer's file",
					conn->endpoint);
				conn_kill(conn, "protocol error");
				return -ENODEV;
			}
			return 0;
		}
	}
	if (ret == 1)
		reply_without_fds(conn, call ? call->req : NULL, &msg);
	if (call && !call->done && msg.op == (call->req->op | DMB_WIRE_OP_REPLY)) {
		reply_move(call->reply, &msg);
		call->done = true;
		return 0;
	}
	if (!call && conn->unanswered && msg.serial <= conn->next_serial &&
	    (msg.op == DMB_OP_RELEASE_REPLY || msg.op == DMB_OP_UNMAP_REPLY ||
	     msg.op == DMB_OP_DETACH_REPLY)) {
		dmb_scm_close_fds(msg.fds, msg.nfds);
		conn->unanswered--;
		return 0;
	}
	dmb_scm_close_fds(msg.fds, msg.nfds);
	dmb_err(conn->ctx, "exporter %s sent %s serial %llu, which no call waits for",
		conn->endpoint, dmb_wire_op_name(msg.op), (unsigned long long)msg.serial);
	conn_kill(conn, "protocol error");
	return -ENODEV;
}

static int conn_take(struct dmb_conn *conn)
{
	return conn_take_ex(conn, false);
}

int dmb_conn_send_only(struct dmb_conn *conn, struct dmb_msg *req)
{
	if (conn->dead)
		return -ENODEV;
	/* Take in what already arrived, so unread replies never fill the
	 * socket (the exporter drops a peer that does not read). Replies of
	 * waiting calls are kept for them. Nothing to take when every
	 * request sent without waiting was sent with NO_REPLY. */
	while (conn->unanswered && conn_take(conn) == 0)
		;
	if (conn->dead)
		return -ENODEV;
	return conn_send_nowait(conn, req);
}

int dmb_conn_send_pipelined(struct dmb_conn *conn, struct dmb_msg *req,
			    struct dmb_pending_import *p)
{
	int ret = dmb_conn_ready(conn);

	if (ret < 0)
		return ret;
	req->version = conn->version;
	req->serial = ++conn->next_serial;
	req->flags = DMB_WIRE_F_QUIET;
	ret = conn_send(conn, req);
	if (ret < 0)
		return ret;
	p->serial = req->serial;
	LIST_INSERT_HEAD(&conn->pending, p, link);
	conn->npending++;
	return 0;
}

int dmb_conn_queue(struct dmb_conn *conn, struct dmb_msg *req,
		   struct dmb_pending_import *p)
{
	int len;

	if (conn->dead)
		return -ENODEV;
	if (conn->nqueued >= DMB_CONN_MAX_QUEUED || req->nfds != 1)
		return dmb_conn_send_pipelined(conn, req, p);
	req->version = conn->version;
	req->serial = ++conn->next_serial;
	req->flags = DMB_WIRE_F_QUIET;
	len = dmb_wire_encode(conn->queue[conn->nqueued].data, DMB_CONN_QUEUED_MSG, req);
	if (len < 0)
		return len;
	dmb_wire_trace("importer", conn->endpoint, true, req);
	conn->queue[conn->nqueued].len = (size_t)len;
	conn->queue[conn->nqueued].fd = req->fds[0];
	conn->queue[conn->nqueued].p = p;
	conn->nqueued++;
	p->serial = req->serial;
	p->queued = true;
	LIST_INSERT_HEAD(&conn->pending, p, link);
	conn->npending++;
	return 0;
}

void dmb_conn_unqueue(struct dmb_conn *conn, struct dmb_pending_import *p)
{
	for (unsigned int i = 0; i < conn->nqueued; i++) {
		if (conn->queue[i].p != p)
			continue;
		memmove(conn->queue + i, conn->queue + i + 1,
			(conn->nqueued - i - 1) * sizeof(conn->queue[0]));
		conn->nqueued--;
		break;
	}
	LIST_REMOVE(p, link);
	conn->npending--;
	free(p);
}

int dmb_conn_send_void(struct dmb_conn *conn, struct dmb_msg *req)
{
	struct dmb_msg reply;
	int len = dmb_conn_ready(conn);

	if (len < 0)
		return len;
	/* An exporter in this process is served while the call waits, at no
	 * cross-process cost: its op has run when the call returns, as in
	 * the kernel. Another process's learns of it in order, later. */
	if (conn->exporter_is_us)
		return dmb_conn_call(conn, req, &reply);
	/* Version 3: an UNMAP is held back until the connection's next send
	 * (the next MAP, the DETACH after it), which carries it in the same
	 * sendmmsg(). A DETACH or an UNPIN goes now, with what is held: each
	 * may end a pin, and a pin stops the exporter's moves, so the exporter
	 * must not wait for this process's next request to learn of it. */
	if (conn->version < DMB_WIRE_VERSION_CLIENT_IDS || conn->dead ||
	    conn->nqueued >= DMB_CONN_MAX_QUEUED || req->nfds ||
	    req->op == DMB_OP_DETACH || req->op == DMB_OP_UNPIN)
		return dmb_conn_send_only(conn, req);
	req->version = conn->version;
	req->serial = ++conn->next_serial;
	req->flags = DMB_WIRE_F_NO_REPLY;
	len = dmb_wire_encode(conn->queue[conn->nqueued].data, DMB_CONN_QUEUED_MSG, req);
	if (len < 0)
		return len;
	dmb_wire_trace("importer", conn->endpoint, true, req);
	conn->queue[conn->nqueued].len = (size_t)len;
	conn->queue[conn->nqueued].fd = -1;
	conn->queue[conn->nqueued].p = NULL;
	conn->nqueued++;
	return 0;
}

/*
 * Waits up to @ms for @events on @fd (-1: none), serving meanwhile
 * requests to this context and to the process's other contexts, so two
 * processes, or two contexts, that wait for each other never deadlock.
 * @unlocked: the context's lock is dropped (one level) while blocked, as
 * for every fence wait, and taken again to serve.
 * Returns @fd's revents when it is ready, 0 otherwise, or -errno.
 */
static int wait_serving(struct dmabuf_ctx *ctx, int fd, short events, int ms,
			bool unlocked)
{
	struct pollfd pfd[2 + MAX_WAIT_FDS];
	int fds[MAX_WAIT_FDS];
	int others, ret;

	pfd[0] = (struct pollfd){ .fd = fd, .events = events };
	pfd[1] = (struct pollfd){ .fd = dmb_ctx_epoll_fd(ctx), .events = POLLIN };
	others = dmb_ctx_other_fds(ctx, fds, MAX_WAIT_FDS);
	for (int i = 0; i < others; i++)
		pfd[2 + i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	if (unlocked)
		dmb_unlock(ctx);
	ret = poll(pfd, (nfds_t)(2 + others), ms);
	if (unlocked)
		dmb_lock(ctx);
	if (ret < 0)
		return errno == EINTR ? 0 : -errno;
	if (ret == 0)
		return 0;
	if (fd >= 0 && pfd[0].revents)
		return pfd[0].revents;
	if (pfd[1].revents)
		dmb_ctx_dispatch_locked(ctx, 0);
	for (int i = 0; i < others; i++)
		if (pfd[2 + i].revents) {
			dmb_ctx_serve_others(ctx);
			break;
		}
	return 0;
}

int dmb_wait_fd_serving(struct dmabuf_ctx *ctx, int fd, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - dmb_now_ms();
		int ev;

		if (left <= 0)
			return 0;
		ev = wait_serving(ctx, fd, POLLIN, left > 100 ? 100 : (int)left, true);
		if (ev != 0)
			return ev < 0 ? ev : 1;
	}
}

static unsigned int call_timeout(const struct dmabuf_ctx *ctx)
{
	return ctx->config.call_timeout_ms ? ctx->config.call_timeout_ms : 30000;
}

/*
 * The socket is made blocking, bounded by SO_RCVTIMEO, at the first wait
 * that can use it, not at connect: a connection that never waits (an
 * import put before any call) saves the two calls, and the HELLO leaves
 * right after connect(). Every other send and receive passes
 * MSG_DONTWAIT. A socket that cannot be made blocking stays as it was,
 * and its waits poll.
 */
static bool conn_make_blocking(struct dmb_conn *conn)
{
	struct timeval slice = { .tv_usec = DMB_CONN_RECV_SLICE_MS * 1000 };

	if (conn->blocking || conn->blocking_failed)
		return conn->blocking;
	conn->blocking = fcntl(conn->fd, F_SETFL, 0) == 0 &&
			 setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO,
				    &slice, sizeof(slice)) == 0;
	if (!conn->blocking) {
		fcntl(conn->fd, F_SETFL, O_NONBLOCK);
		conn->blocking_failed = true;
	}
	return conn->blocking;
}

/*
 * A waiting call may block in recvmsg() itself, with no poll() first,
 * when nothing else in this process could need serving meanwhile: this
 * context has no endpoint (no other process can call into it) and it is
 * the process's only context. A context made while the call waits is
 * looked at again after at most DMB_CONN_RECV_SLICE_MS.
 */
static bool call_may_block(struct dmb_conn *conn)
{
	int other;

	return !conn->ctx->endpoint && dmb_ctx_other_fds(conn->ctx, &other, 1) == 0 &&
	       conn_make_blocking(conn);
}

/*
 * Waits until *@done (the answer to a request of opcode @op, sent already,
 * is in), taking in what the connection brings and serving meanwhile.
 * Returns 0, -ENODEV, -ETIMEDOUT, or a wait's -errno.
 */
static int conn_wait(struct dmb_conn *conn, uint16_t op, const bool *done)
{
	struct dmabuf_ctx *ctx = conn->ctx;
	int64_t deadline, warn_at, now = dmb_now_ms();
	bool now_read = true;
	int ret;

	/* One clock read for the first turn (a reply usually comes in it). */
	deadline = now + call_timeout(ctx);
	/* An exporter that never serves (no dispatch, no service thread) is
	 * the usual cause of a long wait: say so early, once per connection. */
	warn_at = now + (call_timeout(ctx) / 4 < 1000 ? call_timeout(ctx) / 4 : 1000);

	for (;;) {
		int64_t left;

		/* A call nested in the dispatch below may have taken our
		 * answer in: it is parked in our slot. */
		if (*done) {
			ret = 0;
			break;
		}
		if (conn->dead) {
			ret = -ENODEV;
			break;
		}
		if (!now_read)
			now = dmb_now_ms();
		now_read = false; /* read again next turn */
		left = deadline - now;
		if (left <= 0) {
			dmb_err(ctx, "exporter %s did not answer %s in time",
				conn->endpoint, dmb_wire_op_name(op));
			/* A late answer would have no call: give it up. */
			conn_kill(conn, "timeout");
			ret = -ETIMEDOUT;
			break;
		}
		if (!conn->warned_silent && now >= warn_at) {
			conn->warned_silent = true;
			dmb_err(ctx, "exporter %s has not answered %s for %lld ms: is it serving its context (dmabuf_ctx_dispatch() on dmabuf_ctx_get_fd(), or dmabuf_ctx_start_thread())? Giving up after %u ms",
				conn->endpoint, dmb_wire_op_name(op),
				(long long)(now - (deadline - call_timeout(ctx))),
				call_timeout(ctx));
		}
		if (call_may_block(conn)) {
			ret = 0;
			conn_take_ex(conn, true);
			continue;
		}
		ret = wait_serving(ctx, conn->fd, POLLIN, left > 100 ? 100 : (int)left, false);
		if (ret < 0)
			break;
		if (ret > 0)
			conn_take(conn);
	}
	return ret;
}

/* Waits for the reply to @req, sent already; see dmb_conn_call(). */
static int conn_wait_reply(struct dmb_conn *conn, const struct dmb_msg *req,
			   struct dmb_msg *reply)
{
	struct dmb_call call = { .req = req, .reply = reply };
	int ret;

	LIST_INSERT_HEAD(&conn->calls, &call, link);
	ret = conn_wait(conn, req->op, &call.done);
	LIST_REMOVE(&call, link);
	return ret < 0 ? ret : reply->status;
}

int dmb_conn_call(struct dmb_conn *conn, struct dmb_msg *req, struct dmb_msg *reply)
{
	int ret = dmb_conn_ready(conn);

	if (ret < 0)
		return ret;
	req->version = conn->version ? conn->version : DMB_WIRE_VERSION_BASE;
	req->serial = ++conn->next_serial;
	ret = conn_send(conn, req);
	if (ret < 0)
		return ret;
	return conn_wait_reply(conn, req, reply);
}

static int conn_connect(struct dmb_conn *conn)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	size_t len = strlen(conn->endpoint);
	int64_t deadline = dmb_now_ms() + call_timeout(conn->ctx);
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
	while (connect(conn->fd, (struct sockaddr *)&addr, alen) < 0) {
		err = errno;
		/* A full backlog (an exporter busy, or flooded) is -EAGAIN on
		 * a non-blocking socket: try again, serving meanwhile, until
		 * the call's time is up. */
		if (err == EAGAIN && dmb_now_ms() < deadline) {
			wait_serving(conn->ctx, -1, 0, 10, false);
			continue;
		}
		if (err == EINTR)
			continue;
		err = err == ECONNREFUSED || err == ENOENT ? -ENODEV
		      : err == EAGAIN ? -ETIMEDOUT : -err;
		close(conn->fd);
		conn->fd = -1;
		return err;
	}
	/* Connected, still non-blocking: the HELLO goes next, at once (the
	 * exporter, woken by the connect, then finds it with the
	 * connection); conn_make_blocking() later if a call waits. */
	return 0;
}

/* The pid in an endpoint's name ("dmabuf-<pid>-<hex>"), or 0. */
static pid_t endpoint_pid(const char *name)
{
	long pid = 0;

	if (strncmp(name, "dmabuf-", 7))
		return 0;
	for (const char *p = name + 7; *p >= '0' && *p <= '9'; p++)
		if ((pid = pid * 10 + (*p - '0')) > INT32_MAX)
			return 0;
	return (pid_t)pid;
}

/*
 * Sends HELLO without waiting for its answer (docs/protocol.md §6 item
 * 1a): the connection's first request that must go out waits for it
 * (dmb_conn_ready()). Until then the connection is taken to speak this build's
 * version with an exporter in another process, unless the endpoint's name
 * says this process: what is held back for its first send is re-sent if
 * the answer says otherwise.
 */
static int conn_hello_send(struct dmb_conn *conn)
{
	struct dmb_msg hello, *req = &hello;
	int ret;

	dmb_wire_msg_init(req, DMB_OP_HELLO, 0);
	req->u.hello.min_version = DMB_WIRE_VERSION_MIN;
	req->u.hello.max_version = DMB_WIRE_VERSION_MAX;
	req->u.hello.pid = (uint32_t)dmb_self_pid();
	req->version = DMB_WIRE_VERSION_BASE;
	req->serial = ++conn->next_serial;
	ret = conn_send(conn, req);
	if (ret < 0)
		return ret;
	conn->hello_pending = true;
	conn->hello_serial = req->serial;
	conn->version = DMB_WIRE_VERSION_MAX;
	/* A child forked later cannot use this context (dmb_ctx_usable()),
	 * so this connection's process stays the one that made it. */
	conn->exporter_is_us = endpoint_pid(conn->endpoint) == (pid_t)req->u.hello.pid;
	/* Imports pipelined before the answer: one (the limits are unknown). */
	conn->limits.max_buffers = 2;
	return 0;
}

/*
 * Waits for the HELLO's answer and applies it. Every frame that needs the
 * answer waits here, a call nested in another's wait (served meanwhile)
 * as well: until the answer is in, the version is a guess, and a request
 * sent at the guess to an older exporter would lose the connection. The
 * first frame back applies it. Returns 1 when this frame did, 0 when a
 * nested one did, or the handshake's -errno.
 */
static int conn_hello_finish(struct dmb_conn *conn)
{
	const struct dmb_wire_hello_reply *r = &conn->hello_reply;
	int ret;

	ret = conn_wait(conn, DMB_OP_HELLO, &conn->hello_answered);
	if (!conn->hello_pending)
		return conn->dead ? -ENODEV : 0;
	conn->hello_pending = false;
	if (ret == 0)
		ret = conn->hello_status;
	if (ret == 0 && (r->version < DMB_WIRE_VERSION_MIN || r->version > DMB_WIRE_VERSION_MAX))
		ret = -EPROTONOSUPPORT;
	if (ret < 0) {
		dmb_info(conn->ctx, "cannot reach exporter %s: %d", conn->endpoint, ret);
		conn_kill(conn, "handshake failed");
		conn->hello_err = ret;
		return ret;
	}
	conn->version = r->version;
	conn->limits = *r;
	conn->exporter_is_us = conn->limits.pid == (uint32_t)dmb_self_pid();
	return 1;
}

/*
 * Before a request goes out: the handshake's answer is in. IMPORTs held
 * back on the guess that the exporter speaks version 3 from another
 * process are re-sent as this connection's version and place want them
 * (waiting for each reply), when the guess was wrong. Returns 0, or
 * -errno (the handshake's failure once, -ENODEV after).
 */
int dmb_conn_ready(struct dmb_conn *conn)
{
	struct dmb_pending_import *held[DMB_CONN_MAX_QUEUED];
	unsigned int n = 0;
	int ret;

	if (conn->dead) {
		ret = conn->hello_err ? conn->hello_err : -ENODEV;
		conn->hello_err = 0;
		return ret;
	}
	if (!conn->hello_pending)
		return 0;
	ret = conn_hello_finish(conn);
	if (ret < 0) {
		conn->hello_err = 0;
		return ret;
	}
	if (ret == 0)
		return 0; /* finished, and what was held re-sent, by a nested call */
	if (conn->version >= DMB_WIRE_VERSION_CLIENT_IDS && !conn->exporter_is_us) {
		/* Held back as the newest version: from version 3 on their
		 * bodies are the same, only the header says which. */
		for (unsigned int i = 0; i < conn->nqueued; i++)
			dmb_wire_put16(conn->queue[i].data + DMB_WIRE_HDR_VERSION, conn->version);
		return 0;
	}
	for (unsigned int i = 0; i < conn->nqueued; i++)
		if (conn->queue[i].p) {
			held[n] = conn->queue[i].p;
			held[n]->queued = false;
			LIST_REMOVE(held[n], link);
			conn->npending--;
			n++;
		}
	conn->nqueued = 0;
	for (unsigned int i = 0; i < n; i++) {
		dmb_proxy_import_resend(conn, held[i]);
		free(held[i]);
	}
	return conn->dead ? -ENODEV : 0;
}

/* Frees a closed connection and the IMPORTs whose replies never came. */
static void conn_free(struct dmb_conn *conn)
{
	struct dmb_pending_import *p;

	dmb_conn_cache_close(conn);
	while ((p = LIST_FIRST(&conn->pending))) {
		LIST_REMOVE(p, link);
		if (p->buf)
			dmb_proxy_import_reply(conn, p, NULL);
		free(p);
	}
	free(conn);
}

int dmb_conn_get(struct dmabuf_ctx *ctx, const char *endpoint, struct dmb_conn **out)
{
	struct dmb_conn *conn;
	int ret;

	struct dmb_conn *tmp;

	LIST_FOREACH_SAFE(conn, &ctx->conns, link, tmp) {
		if (conn->dead && !conn->users) { /* idle and useless */
			LIST_REMOVE(conn, link);
			conn_free(conn);
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
	LIST_INIT(&conn->calls);
	LIST_INIT(&conn->pending);
	conn->next_import_id = DMB_WIRE_CLIENT_ID_BIT;
	strlcpy(conn->endpoint, endpoint, sizeof(conn->endpoint));
	ret = conn_connect(conn);
	if (ret == 0)
		ret = conn_hello_send(conn);
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

/* The socket is readable outside a call: replies of requests sent
 * without waiting, and events. */
static void conn_readable(struct dmb_source *src, uint32_t events)
{
	struct dmb_conn *conn = src->data;

	while (conn_take(conn) == 0)
		;
}

static void conn_deliver(struct dmb_source *src, uint32_t events)
{
	struct dmb_conn *conn = src->data;
	uint64_t n;

	if (read(conn->evt_fd, &n, sizeof(n)) < 0) {
		/* already read by an earlier round */
	}
	dmb_proxy_deliver_moves(conn);
}

int dmb_conn_watch(struct dmb_conn *conn)
{
	struct dmabuf_ctx *ctx = conn->ctx;
	int ret;

	if (conn->watched)
		return 0;
	if (conn->dead)
		return -ENODEV;
	conn->evt_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (conn->evt_fd < 0)
		return -errno;
	ret = dmb_source_add(ctx, &conn->src, conn->fd, EPOLLIN, conn_readable, conn);
	if (ret == 0) {
		ret = dmb_source_add(ctx, &conn->evt_src, conn->evt_fd, EPOLLIN,
				     conn_deliver, conn);
		if (ret < 0)
			dmb_source_del(ctx, &conn->src);
	}
	if (ret < 0) {
		close(conn->evt_fd);
		conn->evt_fd = -1;
		return ret;
	}
	conn->watched = true;
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
		conn_unwatch(conn);
		if (conn->fd >= 0)
			close(conn->fd);
		conn_free(conn);
	}
}
