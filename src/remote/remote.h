/* SPDX-License-Identifier: MIT */
/*
 * The remote layer (src/remote/), cross-process sharing (docs/design.md §6):
 * the exporter's endpoint and its peers
 * (endpoint.c), the importer's connections (connection.c) and the proxy
 * buffers that forward device operations to the exporter (proxy.c).
 */
#pragma once

#include <sys/types.h>

#include "private.h"
#include "scm.h"
#include "wire.h"

#define DMB_ENDPOINT_NAME_MAX 48

/* Per-peer limits the endpoint enforces (docs/protocol.md §4). */
#define DMB_PEER_MAX_IMPORTS 1024u
#define DMB_PEER_MAX_ATTACHMENTS 1024u
#define DMB_PEER_MAX_MAPPINGS 4096u
/* Connections that have not said HELLO yet: beyond this, the oldest one is
 * closed, so silent connections cannot take the exporter's fds. */
#define DMB_ENDPOINT_MAX_PENDING 16u
/* Peers past HELLO: beyond this, HELLO is answered -EUSERS. */
#define DMB_ENDPOINT_MAX_PEERS 256u
/* How long the listening socket rests when no fd is free for a new
 * connection. */
#define DMB_ENDPOINT_RETRY_MS 100
/* Messages handled for one peer per dispatch round: a flooding peer cannot
 * starve the others. */
#define DMB_PEER_BATCH 32u
/* Packets read in one recvmmsg() beyond the one handled first: a burst
 * (a held-back UNMAP with its DETACH, an IMPORT with its ATTACH)
 * is one read that also tells the socket is empty. */
#define DMB_PEER_READ_AHEAD (DMB_SCM_MAX_BATCH - 1)
/* Stand-ins of a peer's devices kept after their last DETACH, for its next
 * ATTACH of the same device (endpoint.c); beyond it the oldest is freed. */
#define DMB_PEER_IDLE_DEVICES 4u

/* ---- server side ---------------------------------------------------------- */

/* What a peer's id names: the wire's target kinds (the opcode descriptors
 * say which kind each request names), so the endpoint looks ids up from the
 * descriptor alone. */
enum dmb_handle_type {
	DMB_H_IMPORT = DMB_WIRE_TARGET_BUFFER,
	DMB_H_ATTACHMENT = DMB_WIRE_TARGET_ATTACHMENT,
	DMB_H_MAPPING = DMB_WIRE_TARGET_MAPPING,
};

/* Something a peer holds, named on the wire by a per-peer id that is never
 * reused, so a stale id is recognised as such. */
struct dmb_handle {
	RB_ENTRY(dmb_handle) node;
	uint64_t id;
	enum dmb_handle_type type;
	struct dmb_handle *parent;
	LIST_HEAD(, dmb_handle) children;
	LIST_ENTRY(dmb_handle) sibling;
	union {
		struct { /* IMPORT: holds one buffer reference */
			struct dmabuf *buf;
			unsigned int cpu_open[3]; /* by enum dmabuf_direction */
			/* Version 7 (mapcache.c): the buffer's slot in the
			 * published pages + 1 (0: none given), and the
			 * announced MAPs of it handled. */
			uint32_t slot1;
			uint32_t handled;
			/* The tables and records held for its next one-way
			 * MAPs (mapcache.c); NULL until it has a slot. */
			struct dmb_map_reserve *reserve;
			/* Version 8 (prepub.c): the generation of the
			 * publication whose slot it took (0: none). */
			uint32_t pub;
			/* Its attachments that hold an errno (a failed
			 * one-way ATTACH, or a one-way MAP that could not be
			 * made): while any, its limit stays at what was
			 * handled, so every MAP of it asks (and one of such
			 * an attachment hears the errno). */
			unsigned int failed;
			/* One-way MAPs of it that could not be made, still
			 * the peer's: its table names these frames, so a
			 * migration answers -EBUSY until they go. */
			unsigned int unmade;
		} imp;
		struct { /* ATTACHMENT on a device standing for the peer's */
			/* NULL (and dev NULL) for a one-way ATTACH that failed:
			 * the handle keeps its errno, which MAP and PIN answer,
			 * until the peer's DETACH (docs/protocol.md §6 4b). */
			struct dmabuf_attachment *att;
			struct dmabuf_device *dev;
			/* Non-zero also with att set when one of its one-way
			 * MAPs could not be made: MAP answers it from then on. */
			int err;
			/* Such MAPs for which not even a record could be
			 * made: counted here until the DETACH. */
			unsigned int unmade;
			/* DYNAMIC: the peer it tells, and whether a MOVE_NOTIFY
			 * waits for room in the peer's socket (one at most:
			 * notifications of one attachment coalesce). */
			struct dmb_peer *peer;
			bool notify_pending;
		} att;
		struct { /* MAPPING */
			struct dmabuf_sg_table *sgt;
			enum dmabuf_direction dir;
			/* A one-way MAP that could not be made (no sgt):
			 * counted in its import's imp.unmade. */
			bool unmade;
		} map;
	};
};
RB_HEAD(dmb_handle_tree, dmb_handle);

struct dmb_peer {
	struct dmabuf_ctx *ctx;
	LIST_ENTRY(dmb_peer) link;
	int fd;
	struct dmb_source src;
	pid_t pid;
	char trace_name[24];	/* "pid N", for DMABUF_DEBUG=protocol */
	uid_t uid;
	bool hello_done;
	uint16_t version;
	uint64_t seq;		/* accept order: the oldest handshake goes first */
	/* peer_ready() frames of this peer on the stack (an exporter op may
	 * make a call that serves this peer again): it is freed by the
	 * outermost one. */
	unsigned int depth;
	bool doomed;
	uint64_t next_id;
	uint64_t last_client_id;	/* the last IMPORT id it chose (v3) */
	/* IMPORTs still to check the long way after one whose fd was not the
	 * newest buffer's file (do_import()): a peer that imports older
	 * buffers pays the guess's syscall once in 1 + DMB_PEER_GUESS_SKIP. */
	unsigned int guess_skip;
	struct dmb_handle_tree handles;
	LIST_HEAD(, dmb_handle) imports;
	unsigned int nimports, nattachments, nmappings;
	/* MOVE_NOTIFY events that found the socket full: sent when it has
	 * room again (EPOLLOUT), so a slow peer never blocks the exporter. */
	unsigned int notifies_pending;
	/* A handler found a protocol error in an answered request: the peer
	 * is dropped after it (mapcache.c). */
	bool violation;
	/* Version 7: the peer's page (CACHE_OPEN): its counts of announced
	 * MAPs, then the limits this side writes; NULL until then. */
	_Atomic uint32_t *announced;
	/* Its size: DMB_WIRE_CACHE_CLIENT_PAGE, or from version 8
	 * DMB_WIRE_CACHE_CLIENT_PAGE_PREPUB (with the published area). */
	uint32_t page_size;
	/* Version 8 (prepub.c): the buffers published to this peer, made at
	 * the first publication; NULL until then. */
	struct dmb_prepub_peer *prepub;
	/* Stand-ins of its devices that no attachment uses any more, oldest
	 * first, freed with the peer (endpoint.c: peer_device_get()). */
	struct dmabuf_device *idle_dev[DMB_PEER_IDLE_DEVICES];
	unsigned int nidle_dev;
	/* The messages after the first of a version 5 packet (dmb_wire_split()),
	 * handled in order before anything else (kept packets included):
	 * part[first..first+count) of rest_buf, with their fds in fds[] (-1
	 * once handed out, so peer_destroy() closes only what is left).
	 * lost: the packet's fds were dropped (RLIMIT_NOFILE); drained: as
	 * next.drained, for the packet they came in. */
	struct {
		unsigned int count, first;
		bool lost, drained;
		struct dmb_wire_part part[DMB_WIRE_MAX_PACKED];
		int fds[DMB_WIRE_MAX_FDS];
	} rest;
	/* The packets after the first of one read (peer_handle_one()),
	 * handled in order before anything else is read from this peer; only
	 * the outermost frame fills them, and never past the end of its
	 * batch, so they are always gone when a frame returns to the event
	 * loop. drained: that read found the socket empty after them. Last,
	 * so a new peer zeroes only what comes before pkt (12 KiB less). */
	struct {
		unsigned int count, first;
		bool drained;
		struct {
			ssize_t len;
			size_t nfds;
			bool lost;
			int fds[DMB_WIRE_MAX_FDS];
			uint8_t buf[DMB_WIRE_MAX_MSG];
		} pkt[DMB_PEER_READ_AHEAD];
	} next;
	uint8_t rest_buf[DMB_WIRE_MAX_MSG];	/* of rest, not zeroed */
};

struct dmb_endpoint {
	int fd;
	pid_t pid;		/* this process's, in its name and HELLO_REPLY */
	/* The effective uid the endpoint was made with, which the kernel
	 * recorded as the listening socket's credentials at listen(): a
	 * peer of another uid is refused (unless DMABUF_CTX_ANY_UID). */
	uid_t uid;
	struct dmb_source src;
	char name[DMB_ENDPOINT_NAME_MAX];
	LIST_HEAD(, dmb_peer) peers;
	unsigned int npending;	/* connected, no HELLO yet */
	unsigned int npeers;	/* past HELLO */
	uint64_t next_seq;
	/* No fd for a new connection and no unfinished handshake to give
	 * one up: the listening socket is left out of the event loop until
	 * a peer goes or retry_fd (a timerfd) fires, rather than spinning on
	 * a socket that stays readable. */
	bool paused;
	int retry_fd;
	struct dmb_source retry_src;
	/* The published map state (mapcache.c), made at the first
	 * CACHE_OPEN. */
	struct dmb_map_state *map_state;
	/* Version 8 (prepub.c): the peer a new buffer's table is published
	 * to (the one whose static MAP was latest) and that MAP's direction;
	 * the last generation given to a publication. */
	struct dmb_peer *prepub_peer;
	uint32_t prepub_dir;
	uint32_t prepub_gen;
};

/* DMABUF_DEBUG=protocol: traces one message on stderr (trace.c). side is
 * "importer" or "exporter", peer the other end's name. */
void dmb_wire_trace(const char *side, const char *peer, bool sent,
		    const struct dmb_msg *m);

/* Registers the hooks through which the core reaches this layer (hooks.c);
 * called at every context creation. */
void dmb_remote_register(void);

/* Creates the endpoint if the context has none yet. */
int dmb_endpoint_ensure(struct dmabuf_ctx *ctx);
/* Drops every peer (undoing what each held) and closes the endpoint. */
void dmb_endpoint_destroy(struct dmabuf_ctx *ctx);

/* ---- client side ------------------------------------------------------------ */

/* A call waiting for its reply. Replies are matched to their call by
 * serial, whichever call reads them, so calls nested on one connection (an
 * exporter op served while a call waits, calling into the same exporter)
 * each get their own reply, at any depth. */
struct dmb_call {
	LIST_ENTRY(dmb_call) link;
	const struct dmb_msg *req;
	struct dmb_msg *reply;
	bool done;		/* *reply is filled */
};

/* An IMPORT sent without waiting (wire version 3, docs/protocol.md §6
 * item 3a): the proxy was made from what the importer sees, and its
 * IMPORT_REPLY is taken in by whichever read of the connection meets it
 * (replies come in request order, so always before the reply of any later
 * request about the buffer). */
struct dmb_pending_import {
	LIST_ENTRY(dmb_pending_import) link;
	uint64_t serial;
	uint64_t id;		/* the id this side chose */
	struct dmabuf *buf;	/* the proxy; NULL once it is released */
	bool queued;		/* not sent yet: in dmb_conn.queue */
};

/* IMPORTs held back until the connection's next send, which carries them
 * in the same sendmmsg() (at most this many wait; with the send itself
 * they fill one DMB_SCM_MAX_BATCH). One that is released before is never
 * sent, and neither is its RELEASE. */
#define DMB_CONN_MAX_QUEUED 3u
#define DMB_CONN_QUEUED_MSG 104u	/* an ATTACH; an IMPORT: 40 bytes */

/* Pipelined IMPORTs waiting for their reply, at most: beyond, an import
 * waits for its reply again (which takes in the earlier ones), so a
 * process that imports and puts without ever calling cannot fill the
 * exporter's socket with replies nobody reads. */
#define DMB_CONN_MAX_PENDING_IMPORTS 16u

struct dmb_conn {
	struct dmabuf_ctx *ctx;
	LIST_ENTRY(dmb_conn) link;
	char endpoint[DMB_ENDPOINT_NAME_MAX];
	int fd;			/* -1 once the connection is given up */
	uint64_t next_serial;
	uint16_t version;
	struct dmb_wire_hello_reply limits;
	bool dead;		/* the exporter went away, or was given up */
	bool warned_silent;	/* the "is it serving?" warning was given */
	bool exporter_is_us;	/* the endpoint is in this process */
	bool blocking;		/* fd is blocking, SO_RCVTIMEO set (at the
				 * first wait that blocks in recvmsg()) */
	bool blocking_failed;	/* it could not be: waits poll */
	/* HELLO sent, its answer not applied yet (dmb_conn_ready()); until
	 * then version, limits and exporter_is_us are guesses. hello_err:
	 * the handshake's failure, for the first call after it. The answer
	 * is taken in by whichever read meets it (hello_answered,
	 * hello_status, hello_reply), and applied by the first frame that
	 * waits for it and returns. */
	bool hello_pending;
	bool hello_answered;
	int hello_status;
	int hello_err;
	uint64_t hello_serial;
	struct dmb_wire_hello_reply hello_reply;
	unsigned int users;	/* proxies using this connection */
	/* Attachments of this connection's proxies: a one-way ATTACH goes
	 * only far below the exporter's max_attachments. */
	unsigned int nattachments;
	LIST_HEAD(, dmb_call) calls;	/* waiting, innermost first */
	/* Requests sent without waiting (RELEASE, UNMAP, DETACH) to a
	 * version 1 exporter, which answers them anyway: their replies are
	 * dropped as they come. */
	unsigned int unanswered;
	/* Version 3: the next buffer id this side gives an IMPORT. */
	uint64_t next_import_id;
	LIST_HEAD(, dmb_pending_import) pending;
	unsigned int npending;
	struct {
		uint8_t data[DMB_CONN_QUEUED_MSG];
		size_t len;
		int fd;		/* the proxy's own file: borrowed */
		struct dmb_pending_import *p;
	} queue[DMB_CONN_MAX_QUEUED];
	unsigned int nqueued;
	/* Once a DYNAMIC attachment is made (dmb_conn_watch()): the socket is
	 * read by the context's dispatch, so MOVE_NOTIFY events arrive
	 * without a call, and an eventfd makes the dispatch run the
	 * importers' move_notify for events a call took in. */
	bool watched;
	struct dmb_source src;
	int evt_fd;
	struct dmb_source evt_src;
	/* Version 7 (mapcache.c): 0 not asked yet, 1 the pages are mapped,
	 * -1 not to be (an older exporter, a failure). cache_announced is
	 * this side's page, cache_seq the exporter's. nmappings: mappings of
	 * this connection's proxies (a one-way MAP only far below the
	 * exporter's max_mappings). */
	int cache_state;
	_Atomic uint32_t *cache_announced;	/* then the exporter's limits */
	const _Atomic uint32_t *cache_seq;
	unsigned int nmappings;
	/* Version 8 (prepub.c): per entry of the published area, the last
	 * generation a proxy of this connection took (each is taken once). */
	uint32_t prepub_used[DMB_WIRE_PREPUB_ENTRIES];
};

/* Takes in the handshake's answer if it has not come yet (HELLO is sent
 * without waiting); 0, or the handshake's failure (once; -ENODEV after). */
int dmb_conn_ready(struct dmb_conn *conn);

/* Makes the context's dispatch read the connection (idempotent); -errno. */
int dmb_conn_watch(struct dmb_conn *conn);

/* The connection to an endpoint, made (with the handshake) on first use. */
int dmb_conn_get(struct dmabuf_ctx *ctx, const char *endpoint, struct dmb_conn **out);
/* A proxy stops using the connection. The connection stays open, idle, for
 * the next import from the same exporter (connect + HELLO cost ~35 us). */
void dmb_conn_put(struct dmb_conn *conn);
/* Closes every connection of the context (teardown). */
void dmb_conns_destroy(struct dmabuf_ctx *ctx);

/*
 * Sends a request and waits for its reply, serving this process's contexts
 * meanwhile (so two processes, or two contexts, exporting to each other never
 * deadlock). The request's fds are borrowed. On success the reply's fds are
 * the caller's to close. Returns the reply's status (0 or -errno), -ENODEV
 * when the exporter is gone, -ETIMEDOUT, or a transport error.
 */
int dmb_conn_call(struct dmb_conn *conn, struct dmb_msg *req, struct dmb_msg *reply);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t dmb_now_ms(void);
/* getpid(), asked once per process (again in a forked child). */
pid_t dmb_self_pid(void);
/* Waits until @fd (a sync file) is readable or @deadline (dmb_now_ms()
 * time) passes, serving this process's contexts as a waiting call does: the
 * fence's signaller may be a request to one of them. The lock is dropped
 * while blocked. Returns 1 when ready, 0 at the deadline, or -errno. */
int dmb_wait_fd_serving(struct dmabuf_ctx *ctx, int fd, int64_t deadline);

/* Sends a request whose answer nobody needs (RELEASE, UNMAP, DETACH: void
 * in the kernel): no round trip, and from a version 2 exporter no reply
 * (DMB_WIRE_F_NO_REPLY); a version 1 exporter's is dropped later. The
 * request carries no fds. -ENODEV when the connection is dead. */
int dmb_conn_send_only(struct dmb_conn *conn, struct dmb_msg *req);

/* Sends a request whose reply comes later, to a pending entry (IMPORT,
 * version 3): @p is filled (serial) and queued on the connection on
 * success; the request's fds are borrowed. -ENODEV when the connection is
 * dead. */
int dmb_conn_send_pipelined(struct dmb_conn *conn, struct dmb_msg *req,
			    struct dmb_pending_import *p);
/* The same, held back until the connection's next send (its one fd must
 * stay open until then, or until dmb_conn_unqueue()); sent at once when
 * DMB_CONN_MAX_QUEUED wait already. */
int dmb_conn_queue(struct dmb_conn *conn, struct dmb_msg *req,
		   struct dmb_pending_import *p);
/* Takes back a held-back request (its proxy is released): never sent;
 * @p is freed. */
void dmb_conn_unqueue(struct dmb_conn *conn, struct dmb_pending_import *p);

/* A request the kernel's counterpart of returns void (UNMAP, DETACH): to an
 * exporter in this process a call (its op has run on return), to another
 * process dmb_conn_send_only(): no round trip; the exporter handles it
 * before any later request of this connection. */
int dmb_conn_send_void(struct dmb_conn *conn, struct dmb_msg *req);

/* ---- the published map state (mapcache.c) ------------------------------------ */

struct dmb_map_state;

/* Exporter: CACHE_OPEN of a peer (@fd its page, borrowed): *out_fd is a
 * new fd of the endpoint's page for the reply. -EPROTO for a second one,
 * -EINVAL for a page that is not a sealed memfd of the right size. */
int dmb_map_state_open(struct dmb_peer *peer, int fd, int *out_fd);
void dmb_map_state_peer_gone(struct dmb_peer *peer);
void dmb_map_state_destroy(struct dmb_endpoint *ep);
/* An import handle goes: its slot is given up. */
void dmb_map_state_import_gone(struct dmb_peer *peer, struct dmb_handle *imp);
/* Whether a MAP of the static attachment @ah may be answered cacheable. */
bool dmb_map_state_eligible(const struct dmb_peer *peer, const struct dmb_handle *ah);
/* The slot of @imp's buffer (given to @imp) and its sequence number now,
 * or -1 (no slot free). */
int dmb_map_state_slot(struct dmb_peer *peer, struct dmb_handle *imp, uint32_t *seq);
/* An announced MAP of @imp: counted; -EPROTO when the peer's page says
 * otherwise, or it has no slot. */
int dmb_map_state_count(struct dmb_peer *peer, struct dmb_handle *imp);
/* A one-way MAP's seq: 0, or -EPROTO when never current. */
int dmb_map_state_check_seq(struct dmb_peer *peer, struct dmb_handle *imp, uint32_t seq);
/* A table and a record held for a one-way MAP of @imp (taken: *sgt and the
 * returned handle, zeroed, are the caller's), or NULL when none is held (a
 * peer past its limit). */
struct dmb_handle *dmb_map_state_take(struct dmb_handle *imp, struct dmabuf_sg_table **sgt);
/* After an announced MAP of @imp (either way): the reserve made up again
 * as far as memory allows, and the peer's limit written. */
void dmb_map_state_refill(struct dmb_peer *peer, struct dmb_handle *imp);
/* One attachment of @imp more (@delta 1) or less (-1) that holds an
 * errno (0: the limit written again): while any does, the peer's limit for
 * the buffer is what was handled, so its MAPs of it ask. */
void dmb_map_state_failed(struct dmb_peer *peer, struct dmb_handle *imp, int delta);
/* The hooks of migrate and revoke (struct dmb_remote_hooks). */
bool dmb_map_state_announced(struct dmabuf *buf);
void dmb_map_state_changed(struct dmabuf *buf);

/* Importer: maps the two pages (one round trip, once per connection);
 * conn->cache_state says the outcome. */
int dmb_conn_cache_open(struct dmb_conn *conn);
void dmb_conn_cache_close(struct dmb_conn *conn);
/* Counts a MAP at @slot, then returns the exporter's number for it; *room:
 * the exporter holds what a one-way MAP of that slot needs (its limit). */
uint32_t dmb_conn_cache_announce(struct dmb_conn *conn, uint32_t slot, bool *room);
/* The client page's size for the version agreed (7: counts and limits;
 * 8: the published area too). */
uint32_t dmb_map_state_client_page(uint16_t version);

/* ---- tables published before the MAP (prepub.c, version 8) ---------------- */

struct dmb_prepub_peer;
/* The publish and released hooks (struct dmb_remote_hooks). */
void dmb_prepub_publish(struct dmabuf *buf);
void dmb_prepub_released(struct dmabuf *buf);
/* A static MAP of @peer in @dir: the next new buffer is published to it. */
void dmb_prepub_note(struct dmb_peer *peer, enum dmabuf_direction dir);
/* Before a peer's pages go: its publications are dropped. */
void dmb_prepub_peer_gone(struct dmb_peer *peer);
/* The handle standing for @buf's publication to @peer (its slot, count
 * base and reserve), or NULL: for the migrate hook. */
struct dmb_handle *dmb_prepub_handle(struct dmb_peer *peer, const struct dmabuf *buf);
/* A MAP of @imp: when @take (a static attachment's) and @imp has no slot
 * yet, takes its buffer's publication to @peer if there is one. Then checks the MAP's PREPUB claim (@pub, 0 none): -EPROTO (the
 * peer is dropped) when it names no publication @imp took. */
int dmb_prepub_claim(struct dmb_peer *peer, struct dmb_handle *imp, bool take,
		     uint32_t flags, uint32_t pub);
/* Importer: the published entry of @buf for @dir on @conn, taken (each
 * once): its slot, seq, generation and table (malloc'd, *count entries).
 * false when there is none. */
bool dmb_conn_prepub_take(struct dmb_conn *conn, const struct dmabuf *buf,
			  enum dmabuf_direction dir, uint32_t *slot, uint32_t *seq,
			  uint32_t *gen, struct dmabuf_sg_entry **sg, uint32_t *count);

/* ---- proxies ----------------------------------------------------------------- */

/* Makes (or finds) the proxy of a buffer another context exported; st is
 * the fd's stat, seals its F_GET_SEALS. -EINVAL when the fd is not a
 * libdmabuf buffer. */
int dmb_import(struct dmabuf_ctx *ctx, int fd, const struct stat *st,
	       int seals, struct dmabuf **out);
/* The IMPORT_REPLY of a pending import came: the proxy learns the
 * exporter's answer (a failure is what its later calls answer). Returns
 * -EPROTO when the reply contradicts what the proxy was made from (the
 * caller drops the connection); its fds are closed in any case. */
int dmb_proxy_import_reply(struct dmb_conn *conn, struct dmb_pending_import *p,
			   struct dmb_msg *msg);
/* A held-back IMPORT made on a wrong guess about the exporter (another
 * version, or this process): sent again as a call, its answer the proxy's
 * (id, or the failure its later calls give). @p is not freed. */
void dmb_proxy_import_resend(struct dmb_conn *conn, struct dmb_pending_import *p);
/* Whether this process's memfd marks mean anything (dmb_memfd_attach_known()):
 * false where vm.memfd_noexec = 2 seals every memfd. That setting is per
 * pid namespace, so an importer can only judge marks made in its own
 * namespace; an exporter whose marks say nothing agrees to no version that
 * trusts them. Read once per process. */
bool dmb_memfd_marks_trusted(void);

/* The endpoint named in a buffer fd's memfd name, or -EINVAL. */
int dmb_endpoint_of_fd(int fd, char *name, size_t cap);
/* The same, and the exporter's name (exp_name) from that memfd name. */
int dmb_names_of_fd(int fd, char *name, size_t cap, char *exp, size_t expcap);

/* Forwarded buffer-level fence operations (buffer_sync.c). */
int dmb_proxy_export_sync_file(struct dmabuf *buf, uint32_t flags);
int dmb_proxy_import_sync_file(struct dmabuf *buf, uint32_t flags, int fd);
int dmb_proxy_describe(struct dmabuf *buf, struct dmabuf_info *info);
int dmb_proxy_set_name(struct dmabuf *buf, const char *name);
/* A MOVE_NOTIFY for attachment id arrived on conn: its mappings are stale
 * at once, its move_notify is due. -EPROTO when no DYNAMIC attachment of
 * conn has that id (the exporter broke the protocol). */
int dmb_proxy_move_event(struct dmb_conn *conn, uint64_t att_id);
/* Runs the move_notify of every attachment of conn that is due. */
void dmb_proxy_deliver_moves(struct dmb_conn *conn);
