/* SPDX-License-Identifier: MIT */
/*
 * A raw client of an exporter's endpoint, for tests that must say things the
 * library's own client never says: any bytes, any fds, any order. Messages
 * are built with the wire codec (dmb_wire_encode) and then corrupted at will;
 * fds travel through a plain sendmsg() so any number and kind can be sent.
 *
 * Every wait waits for its event (a packet, the end of the connection),
 * with the clock only as a hang guard: harness_guard_start() for
 * RP_GUARD_S seconds, naming what did not arrive ("hang guard: the
 * exporter's reply to ATTACH (serial 7) did not happen"), never a timeout
 * that a loaded machine can reach and a test then takes for an answer. So
 * a wait must not be called while the caller runs a guard of its own (one
 * at a time).
 * When the exporter lives in the calling process, pass its context: the
 * waits dispatch it while they poll. Part of the test helper library
 * (tests/meson.build): the bodies are in rawpeer.c.
 */
#pragma once

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dmabuf.h"
#include "remote.h"
#include "wire.h"

/* The hang guard of every wait, in seconds: a bound on a hang, never an
 * assertion. */
#define RP_GUARD_S 60
#define RP_MAX_FDS 64
/* rp_call(): the server closed the connection instead of answering. */
#define RP_CLOSED 1

/* CLOCK_MONOTONIC in milliseconds. */
int64_t rp_now_ms(void);

/* Raw field access, for tests that patch encoded messages: the codec's own
 * little-endian accessors, at wire.h's named offsets (DMB_WIRE_HDR_*,
 * DMB_WIRE_BODY, DMB_WIRE_REPLY_*). */
#define rp_put16 dmb_wire_put16
#define rp_put32 dmb_wire_put32
#define rp_put64 dmb_wire_put64
#define rp_get16 dmb_wire_get16
#define rp_get32 dmb_wire_get32
#define rp_get64 dmb_wire_get64

/* True for an event: unanswered, serial 0. */
bool rp_is_event(uint16_t op);

/* Connects to the abstract endpoint @name. Returns the socket or -errno. */
int rp_connect_name(const char *name);

/* Connects to the exporter named in a buffer fd's memfd name. */
int rp_connect(int buffd);

/* A fake exporter's endpoint: a SOCK_SEQPACKET socket bound to the abstract
 * @name, listening with a backlog of 1. Returns it or -errno. */
int rp_listen_name(const char *name);

/* A buffer fd as an exporter of endpoint @name would make it: a memfd named
 * "dmabuf:<tag>@<name>" of @size bytes, made with MFD_CLOEXEC |
 * MFD_ALLOW_SEALING | @mfd_flags and sealed with @seals. Returns it or
 * -errno. */
int rp_fake_buffer(const char *tag, const char *name, uint64_t size,
		   unsigned int mfd_flags, int seals);

/* One packet of @len bytes (0 allowed) with @nfds fds, by plain sendmsg().
 * Returns 0 or -errno (never raises SIGPIPE). */
int rp_send_raw(int sock, const void *data, size_t len,
		const int *fds, size_t nfds, int flags);

/* Encodes a well-formed message (a fresh serial if it has none). Returns the
 * length or the codec's errno. */
int rp_encode(struct dmb_msg *m, uint8_t *buf);

/* rp_encode() and rp_send_raw() with the message's own fds. */
int rp_send(int sock, struct dmb_msg *m);

/*
 * Waits for one packet, dispatching @exp (may be NULL) meanwhile, under
 * the hang guard named @what (what the caller waits for: "the exporter's
 * reply to ..."). @what NULL: no wait, only a packet already there
 * (-EAGAIN if none). Fds that came with it are closed; their count is in
 * *nfds. Returns the length (> 0), 0 when the other end closed the
 * connection (EOF or ECONNRESET), or another -errno.
 */
ssize_t rp_recv_raw(int sock, struct dmabuf_ctx *exp, void *data,
		    size_t cap, size_t *nfds, const char *what);

/* Receives and decodes one message as a client (guard: "a message from
 * the exporter"). Returns 1 with *m filled (its fds already closed), 0
 * when the connection closed, or the decoder's errno. */
int rp_recv(int sock, struct dmabuf_ctx *exp, struct dmb_msg *m);

/* Receives the reply to (op, serial), skipping events (guard: "the
 * exporter's reply to OP (serial N)"). Returns its status, RP_CLOSED, or
 * -EPROTO for an answer to something else. */
int rp_reply(int sock, struct dmabuf_ctx *exp, uint16_t op,
	     uint64_t serial, struct dmb_msg *reply);

/* Sends a request and waits for its reply: the reply's status (0 or
 * -errno), RP_CLOSED when the server closed instead, or a local error. */
int rp_call(int sock, struct dmabuf_ctx *exp, struct dmb_msg *m,
	    struct dmb_msg *reply);

/* Waits for the server to close the connection (guard: "the exporter
 * closing the connection"); messages before that are counted and dropped.
 * Returns the count, or -errno. */
int rp_expect_closed(int sock, struct dmabuf_ctx *exp);

/* ---- well-formed requests --------------------------------------------------- */

/* Each sends one request and waits for its reply (rp_call()): the reply's
 * status, RP_CLOSED or a local error. The ids the replies carry are stored
 * through the optional out-pointers. */
int rp_hello(int sock, struct dmabuf_ctx *exp);
int rp_import(int sock, struct dmabuf_ctx *exp, int buffd, uint64_t *id);
/* An ATTACH of a plain 64-bit IOMMU device named "raw". */
void rp_attach_msg(struct dmb_msg *m, uint64_t buffer_id);
int rp_attach(int sock, struct dmabuf_ctx *exp, uint64_t buffer_id,
	      uint64_t *att);
int rp_map(int sock, struct dmabuf_ctx *exp, uint64_t att,
	   enum dmabuf_direction dir, uint64_t *map);
int rp_unmap(int sock, struct dmabuf_ctx *exp, uint64_t map,
	     enum dmabuf_direction dir);
/* RELEASE, DETACH, DESCRIBE: requests whose body is one id. */
int rp_id_call(int sock, struct dmabuf_ctx *exp, uint16_t op, uint64_t id);
/* BEGIN_CPU_ACCESS or END_CPU_ACCESS. */
int rp_cpu(int sock, struct dmabuf_ctx *exp, uint16_t op,
	   uint64_t buffer_id, enum dmabuf_direction dir);
