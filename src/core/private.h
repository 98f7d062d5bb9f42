/* SPDX-License-Identifier: MIT */
/*
 * The core layer (src/core/): the context's state, buffers, attachments,
 * CPU access and release: what the kernel keeps in dma-buf.c, which may stay
 * one mutually recursive group. It calls the layers below (base, memory,
 * fences, transport) and reaches the remote layer above only through the
 * hooks it registers (struct dmb_remote_hooks).
 */
#pragma once

#include "base.h"
#include "memory.h"

/* ---- context ------------------------------------------------------------- */

struct dmb_physmem;
struct dmb_endpoint;
struct dmb_conn;

struct dmb_inode_key {
	dev_t dev;
	ino_t ino;
};

RB_HEAD(dmb_buf_tree, dmabuf);
RB_HEAD(dmb_wd_tree, dmabuf);
RB_HEAD(dmb_name_tree, dmb_name);

/* release.c: the re-probes of one back-off level, every 2^level ms up to
 * 2^(DMB_REPROBE_LEVELS - 1) (about 1 s). `due` are probed at `at_ns`
 * (CLOCK_MONOTONIC; 0: the level is idle), `next` one period later. */
#define DMB_REPROBE_LEVELS 11
struct dmb_reprobe_level {
	LIST_HEAD(, dmabuf) due, next;
	int64_t at_ns;
};

struct dmabuf_ctx {
	struct dmb_ctx_base base; /* first: the loop's view (base/base.h) */
	struct dmabuf_ctx_config config;

	struct dmb_physmem *physmem;

	/* The release watches' inotify fd: -1 until the first share
	 * (dmb_release_sources()). */
	int inotify_fd;
	struct dmb_source inotify_src;
	/* The directory /proc/self/fd, for reopening an fd as a new open
	 * file description without walking the whole path: opened at the
	 * first reopen (dmb_ctx_fd_dir()), so a context that only imports
	 * never pays for it; -1 not yet, -2 could not (walk the path). */
	int fd_dir;
	/* timerfd that re-runs release probes which raced with __fput();
	 * made with inotify_fd. */
	int reprobe_fd;
	struct dmb_source reprobe_src;

	struct dmb_buf_tree by_inode;	/* every struct dmabuf of this ctx */
	/* What dmabuf_get() returned last (maybe freed since: checked with
	 * dmb_obj_live()), and how many gets make no guess after a wrong one
	 * (buffer.c: likely_get()). */
	const struct dmabuf *last_got;
	unsigned int get_guess_skip;
	struct dmb_wd_tree by_wd;	/* exported buffers, by inotify wd */
	LIST_HEAD(, dmabuf_device) devices;
	/* Orphans waiting for a re-probe, by back-off level (release.c). */
	struct dmb_reprobe_level reprobe[DMB_REPROBE_LEVELS];
	unsigned int nreprobe;		/* how many, over all levels */
	int64_t reprobe_timer_ns;	/* the timer's expiry; 0: disarmed */

	struct dmb_endpoint *endpoint;	/* exporter side, made at first export */
	LIST_HEAD(, dmb_conn) conns;	/* importer side, one per exporter */

	struct dmabuf_ctx_stats stats;

	/* RLIMIT_NOFILE's soft limit, read at the first share (buffer.c:
	 * shared buffers keep a second fd only while there is room). */
	unsigned long nofile;
	/* How many last puts of shared buffers in a row found their file no
	 * longer held (saturating): from PROBE_FIRST_AFTER on, a last put
	 * probes before it arms a watch (release.c). */
	unsigned int puts_freed;
	/* Buffers holding two fds (struct dmabuf's spare bit); trimmed in a
	 * batch when there are more than nofile / 16. */
	unsigned long nspare;
	/* recycle.c: released memfds kept for the next export of their kind;
	 * NULL until the first. */
	struct dmb_recycle_pool *pool;
	/* recycle.c: dmb_fork_count() when it last looked; a fork() since
	 * then gave a child a copy of every memfd's fd. */
	unsigned int recycle_forks;
	/* The newest buffer exported here, NULL once it is gone (the
	 * exporter's one-call IMPORT check guesses it: endpoint.c). */
	struct dmabuf *newest;

	struct dmb_name_tree names; /* names.c: interned exporter names */
	/* names.c: the names readlink found for the last few imported
	 * inodes (a recycled memfd comes back with the same one). */
	struct dmb_file_names *file_names;
	/* move.c: bumped by every move_notify round, of any buffer (a round
	 * tells each attachment once: its notified_gen). */
	unsigned int notify_gen;
};


/* ---- the remote layer, as the core reaches it -----------------------------
 * The core never calls src/remote/ by name. The remote layer registers these
 * hooks (dmb_remote_register(), from context creation), so the dependency
 * points up only through data. Each hook is called with the context lock
 * held and returns 0 or a negative errno.
 */
struct stat;
struct dmb_remote_hooks {
	/* Makes the context's endpoint if it has none; *name is its name. */
	int (*endpoint_name)(struct dmabuf_ctx *ctx, const char **name);
	/* Makes (or finds) the proxy of another context's buffer; st is the
	 * fd's stat, seals its F_GET_SEALS (the fd is open, not O_PATH, a
	 * memfd). -EINVAL when the fd is not a libdmabuf buffer. */
	int (*import)(struct dmabuf_ctx *ctx, int fd, const struct stat *st,
		      int seals, struct dmabuf **out);
	/* On a proxy: the exporter's counts into info (best effort). */
	int (*describe)(struct dmabuf *buf, struct dmabuf_info *info);
	/* On a proxy: forwarded name and fence operations. */
	int (*set_name)(struct dmabuf *buf, const char *name);
	int (*export_sync_file)(struct dmabuf *buf, uint32_t flags);
	int (*import_sync_file)(struct dmabuf *buf, uint32_t flags, int fd);
	/* On an exported buffer, before a migration decides (version 7
	 * published map state, docs/design.md §6): true when a peer has a
	 * MAP of it announced that the endpoint has not handled yet (a
	 * static mapping the kernel's order made first: -EBUSY). Otherwise
	 * the buffer's published sequence number moves on, so no later MAP
	 * is answered from a cached table. */
	bool (*maps_announced)(struct dmabuf *buf);
	/* On an exported buffer: its published state changed (revoked). */
	void (*map_state_changed)(struct dmabuf *buf);
	/* On an exported buffer at its first dmabuf_fd() (version 8,
	 * docs/design.md §6): its table may be published to the peer that
	 * mapped last, before that peer asks; sets buf->published if so. */
	void (*publish)(struct dmabuf *buf);
	/* On a buffer with buf->published, before ops->release: what was
	 * published and never used goes. */
	void (*released)(struct dmabuf *buf);
};

/* The registered hooks; NULL before the first context exists. */
const struct dmb_remote_hooks *dmb_remote(void);
/* Called once per context creation by the remote layer's registration. */
void dmb_remote_set_hooks(const struct dmb_remote_hooks *hooks);

/* ---- buffer ------------------------------------------------------------- */

enum dmb_buf_state {
	DMB_BUF_LIVE,	  /* referenced by the library's callers */
	DMB_BUF_ORPHAN,	  /* no library reference; file still open somewhere */
	DMB_BUF_RELEASED, /* ops->release has run (about to be freed) */
};

/* cpu_access.c: the CPU access state of a buffer, made at its first begin,
 * mmap or vmap (most buffers never have one: issue 11, RSS per buffer). */
struct dmb_buf_cpu {
	/* Open CPU access brackets, by enum dmabuf_direction; ended at
	 * release if a holder left them open. */
	unsigned int open[3];
	/* vmap refcount, address and whether it is writable */
	unsigned int vmap_count;
	void *vmap_addr;
	LIST_HEAD(, dmb_cpu_map) maps; /* dmabuf_mmap() mappings */
	bool vmap_writable;
};

/*
 * One buffer. Every live buffer has one, so its size is the library's memory
 * per buffer (docs/performance.md, "Memory per live buffer"; the bound is
 * checked by tests/test-buffer.c): fields are ordered so that no padding is
 * wasted, the small ones are bitfields, and what most buffers never need is
 * out of line (the names, CPU access state).
 */
struct dmabuf {
	struct dmabuf_ctx *ctx;
	RB_ENTRY(dmabuf) inode_node;
	RB_ENTRY(dmabuf) wd_node;
	struct dmb_inode_key key;

	unsigned int refcount; /* library references, under ctx->lock */
	unsigned int state : 2;	 /* enum dmb_buf_state */
	unsigned int flags : 2;	 /* O_RDONLY, O_WRONLY or O_RDWR */
	unsigned int alloc : 2;	 /* enum dmabuf_alloc */
	/* The file has left the library (an fd or a mapping of it was
	 * handed out): it exists and holds the shared flock, and the last put
	 * must probe. Never shared, the buffer goes with the last put. */
	bool shared : 1;
	bool handle_only : 1; /* udmabuf: the file is a handle, bytes elsewhere */
	bool imported : 1;    /* a proxy of another context's buffer */
	bool revoked : 1;     /* dmabuf_revoke(): maps and attaches -ENODEV */
	/* The remote layer was offered the buffer at its first dmabuf_fd()
	 * (publish hook), and whether it holds a publication of it then
	 * (dropped through the released hook). */
	bool publish_offered : 1;
	bool published : 1;
	/* file_fd is the OFD share() opened, of access mode flags (not the
	 * dup of an fd that revived an orphan): an fd of the same OFD needs
	 * no check (do_import()). */
	bool file_opened_here : 1;
	/* Holds both file_fd and probe_fd, counted in ctx->nspare (buffer.c:
	 * the spare fds are trimmed in batches). */
	bool spare : 1;
	/* recycle.c: probe_fd is the memfd's own OFD of a read-write buffer
	 * with library backing, so a release can keep it for the next export
	 * of the same kind; mark_req is the exec-seal mark the export asked
	 * for (part of that kind). */
	bool recyclable : 1;
	bool mark_req : 1;
	/* wd is a persistent (not one-shot) watch, which stays with the inode
	 * when the memfd is recycled (release.c). */
	bool watch_kept : 1;
	/* release.c: queued for a re-probe (reprobe_link valid, on the list
	 * of its back-off level in ctx->reprobe). */
	bool reprobe_queued : 1;

	const struct dmabuf_ops *ops;
	void *priv;
	uint64_t size;
	/* names.c: the exporter's name, interned per context ("" until set,
	 * never NULL), and the DMA_BUF_SET_NAME name, NULL until set (the
	 * kernel's dmabuf->name: set, even to "", fdinfo shows a name: line).
	 * Read them with dmb_buf_name() and dmb_buf_name_set(). */
	const char *exp_name;
	char *name;

	/* The dma-buf file, one open file description (OFD) of the memfd
	 * made by a real open of /proc/self/fd/N (the memfd's own OFD is a
	 * pseudo file, whose close the kernel may not report to inotify),
	 * made when the file first leaves the library (dmb_buf_share()).
	 * file_fd is the library's reference to it while refcount > 0, else
	 * -1. (An orphan whose probe could not be opened keeps it: it stays
	 * until revived or the context is destroyed.) */
	int file_fd;
	/* A private OFD of the same inode, -1 if none: the memfd's own until
	 * shared; the release probe of an orphan (flock LOCK_EX succeeds only
	 * when the dma-buf file is gone) and the source of the library's own
	 * mappings, which must not pin the dma-buf file. A shared buffer with
	 * references keeps it only while the process has fds to spare
	 * (buffer.c), so a buffer holds one fd, at most two. */
	int probe_fd;
	int wd; /* one-shot inotify watch of an orphan, -1 if none */
	/* move.c: pins of the exporter's pin op in force (static attachments
	 * and dmabuf_pin()); moves are refused while non-zero. */
	unsigned int pin_count;
	LIST_ENTRY(dmabuf) reprobe_link; /* valid while reprobe_queued */

	struct dmb_backing backing;

	LIST_HEAD(, dmabuf_attachment) attachments;
	unsigned int nattachments;
	unsigned int nmappings;

	struct dmb_buf_cpu *cpu; /* NULL until the first CPU access */
	struct dmabuf_resv *resv;
};

/* The DMA_BUF_SET_NAME name ("" if none) and whether one was set. */
static inline const char *dmb_buf_name(const struct dmabuf *buf)
{
	return buf->name ? buf->name : "";
}

static inline bool dmb_buf_name_set(const struct dmabuf *buf)
{
	return buf->name != NULL;
}

static inline unsigned int dmb_buf_vmap_count(const struct dmabuf *buf)
{
	return buf->cpu ? buf->cpu->vmap_count : 0;
}

/* names.c, with the context lock held */
/* The exporter's name, interned in the context (truncated to
 * DMABUF_NAME_LEN - 1 as the kernel's); 0 or -ENOMEM, nothing changed. */
int dmb_buf_set_exp_name(struct dmabuf *buf, const char *exp_name);
/* The buffer's own name: a copy of name (truncated to DMABUF_NAME_LEN - 1),
 * or none for NULL. 0 or -ENOMEM (the kernel's dma_buf_set_name() allocates
 * too), nothing changed. */
int dmb_buf_set_name(struct dmabuf *buf, const char *name);
/* Frees what a buffer holds out of line (names, CPU access state); for the
 * buffer's free, also a proxy's. */
void dmb_buf_extras_free(struct dmabuf *buf);
/* The names left at context destruction (none: every buffer dropped its). */
void dmb_names_fini(struct dmabuf_ctx *ctx);
/* The endpoint and exporter names an import of this context read from
 * the memfd of st's inode before (dmb_file_names_add()): true and the
 * names copied, or false. Only where the kernel never reuses a memfd's
 * inode number (names.c). */
bool dmb_file_names_find(struct dmabuf_ctx *ctx, const struct stat *st,
			 char *endpoint, size_t epcap, char *exp, size_t expcap);
/* Whether this kernel never reuses the inode number of a (page-sized)
 * memfd for the system's life (names.c). */
bool dmb_memfd_inodes_unique(void);
/* Remembers what readlink said of st's memfd (a failed allocation
 * remembers nothing). */
void dmb_file_names_add(struct dmabuf_ctx *ctx, const struct stat *st,
			const char *endpoint, const char *exp);

RB_PROTOTYPE(dmb_buf_tree, dmabuf, inode_node, dmb_buf_inode_cmp);

/* An exporter op of buf, called as DMB_OP(buf, map)(att, dir, &sgt): every op
 * runs with the context lock held (include/dmabuf.h says so per op), and
 * this is where it is asserted. */
#define DMB_OP(buf, name) (dmb_assert_locked((buf)->ctx), (buf)->ops->name)
RB_PROTOTYPE(dmb_wd_tree, dmabuf, wd_node, dmb_buf_wd_cmp);

/* Validates buf (live object with a reference) and takes its context lock;
 * NULL, with nothing locked, otherwise. */
struct dmabuf_ctx *dmb_buf_lock(const struct dmabuf *buf);
/* The same, also accepting a buffer whose last reference is gone but whose
 * file is still open (for calls that undo a mapping). */
struct dmabuf_ctx *dmb_buf_lock_any(const struct dmabuf *buf);

/* buffer.c */
int dmb_export_validate(const struct dmabuf_export_info *info);
/* Creates a buffer; with `backing` (udmabuf), its ranges are taken over and
 * the dma-buf file is a separate handle memfd. */
int dmb_buf_create(struct dmabuf_ctx *ctx, const struct dmabuf_export_info *info,
		   struct dmb_backing *backing, struct dmabuf **out);
void dmb_buf_destroy(struct dmabuf *buf);
/* dmabuf_fd(buf, O_CLOEXEC) then dmabuf_put(buf) in one step (a heap
 * allocation): when that put drops the last reference, the library's own
 * descriptor of the file becomes the returned fd: no dup, no close, no
 * probe (the fd still holds the file); the release probe is armed first,
 * and a failure to arm it releases the buffer. The fd or -errno; the
 * reference is gone either way. */
int dmb_buf_fd_and_put(struct dmabuf *buf);
/* The file is about to leave the library (dmabuf_fd(), dmabuf_mmap()):
 * takes the shared lock every holder shares, once. 0 or -errno. */
int dmb_buf_share(struct dmabuf *buf);
/* One more reference on a buffer found by an fd of its file; an orphan is
 * revived on that fd. */
int dmb_buf_get_ref(struct dmabuf *buf, int fd);
/* True if fd's file carries the name every buffer's memfd gets (a libdmabuf
 * buffer of some context, maybe of another process). */
bool dmb_buf_fd_is_named(int fd);

/* Linux 6.3's memfd exec controls (uapi values; Debian 12's headers predate
 * them). */
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010u
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008u
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
/*
 * A buffer's memfd says "the exporter has no attach and no pin op" (its side
 * of an attach cannot refuse what the importer's core accepted, so importers
 * in other processes need not wait for it: docs/protocol.md §6 item 4b) by
 * being made MFD_NOEXEC_SEAL: exec bits clear, frozen by F_SEAL_EXEC. Every
 * other buffer's memfd is made MFD_EXEC (no F_SEAL_EXEC). No holder can
 * forge the mark on the exporter's file: F_SEAL_SEAL stops new seals, and
 * F_SEAL_EXEC a chmod of the exec bits. (F_SEAL_EXEC with exec bits set
 * would imply F_SEAL_WRITE.) Kernels before 6.3 make neither: the importer
 * asks; with vm.memfd_noexec = 2 every memfd is sealed so, and the importer
 * ignores the mark (dmb_memfd_marks_trusted()); an exporter there speaks
 * version 3 at most, as the setting is per pid namespace. An O_WRONLY
 * buffer's memfd is never marked (from version 6 an importer takes a
 * marked file for a read-write or read-only buffer, DMB_WIRE_VERSION_MODE_MARK).
 */
static inline bool dmb_memfd_attach_known(int seals, mode_t mode)
{
	return seals >= 0 && (seals & F_SEAL_EXEC) && !(mode & 0111);
}
int dmb_buf_lookup(struct dmabuf_ctx *ctx, int fd, struct stat *st,
		   struct dmabuf **found);
/* The same, and the fd's F_GETFL into *fl (one fcntl for both uses). */
int dmb_buf_lookup_fl(struct dmabuf_ctx *ctx, int fd, struct stat *st, int *fl,
		      struct dmabuf **found);

/* release.c */
/* The context's inotify fd and re-probe timerfd in its epoll set, made at
 * its first share (share() in buffer.c): only a shared buffer can need a
 * release watch, so a context that only imports never holds them. 0 (also
 * when they exist), or -errno with nothing made. */
int dmb_release_sources(struct dmabuf_ctx *ctx);
/* Before the library lets go of the dma-buf file of a shared buffer: opens
 * the probe OFD and arms the watch. 0, or -errno with nothing changed. */
int dmb_release_arm(struct dmabuf *buf);
/* buffer.c: ctx->fd_dir, opened if need be (under the lock), for
 * dmb_backing_reopen_at(); -1 when it cannot be had (walk the path). */
int dmb_ctx_fd_dir(struct dmabuf_ctx *ctx);
/* buffer.c: out of fds (err -EMFILE or -ENFILE), closes every spare fd;
 * true if any went (then a failed open is worth trying again). */
bool dmb_buf_spares_drop(struct dmabuf_ctx *ctx, int err);
/* The last reference of a shared buffer is gone: lets go of the dma-buf
 * file and releases the buffer if nobody else holds it, or leaves it an
 * orphan that the file's final close releases. */
void dmb_release_last_put(struct dmabuf *buf);
/* The library lets go of the dma-buf file (its mappings move to the probe
 * OFD, which must be open). */
void dmb_buf_drop_file(struct dmabuf *buf);
void dmb_release_cancel(struct dmabuf *buf);
void dmb_release_check(struct dmabuf *buf);
void dmb_release_inotify(struct dmb_source *src, uint32_t events);
void dmb_release_reprobe(struct dmb_source *src, uint32_t events);
/* True while a buffer waits for one of its re-probes on the levels below
 * DMB_REPROBE_SETTLE_LEVELS (the first 127 ms after its close event):
 * dmabuf_ctx_settle() waits for those, as the lock drop that follows a
 * close event usually comes within them, and not for the later ones (a
 * buffer still held then is held, as far as settle can tell). */
#define DMB_REPROBE_SETTLE_LEVELS 7
bool dmb_release_reprobe_soon(struct dmabuf_ctx *ctx);
void dmb_buf_release_now(struct dmabuf *buf);
/* The last put probes before it arms a watch once this many last puts in a
 * row found their file free (release.c). */
#define DMB_PROBE_FIRST_AFTER 2

/* recycle.c */
/* A released memfd of buf's kind (exp_name, size, mark_req), taken for
 * it: its probe_fd, key and kept watch (wd, not yet in ctx->by_wd). False
 * if there is none. */
bool dmb_recycle_take(struct dmabuf_ctx *ctx, struct dmabuf *buf);
/* Releases buf, whose file nobody holds any more (a probe succeeded: for
 * a buffer still recyclable, its lease probe, which leaves no lock; or the
 * file never left the library), and keeps its memfd for reuse when it is
 * of a recyclable kind. at_put:
 * a last put released it right after its own close of the file (not a
 * close event, a re-probe or a buffer that was never shared). */
void dmb_buf_release_unheld(struct dmabuf *buf, bool at_put);
/* Closes every kept memfd (out of fds, context destruction). True if any. */
bool dmb_recycle_drop(struct dmabuf_ctx *ctx);
/* Context destruction, after the last release: the pool goes. */
void dmb_recycle_fini(struct dmabuf_ctx *ctx);

/* backing_ops.c: frames for a buffer, chosen for its attached devices at
 * first map when the allocation is deferred. */
int dmb_backing_alloc(struct dmabuf_ctx *ctx, struct dmabuf *buf);

/* ---- attachment ----------------------------------------------------------- */

struct dmb_mapping; /* sg_table.h */

struct dmabuf_attachment {
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	struct dmabuf_device *dev;
	LIST_ENTRY(dmabuf_attachment) buf_link;
	void *priv;
	LIST_HEAD(, dmabuf_sg_table) mappings;
	unsigned int nmappings;
	bool pinned;		/* static: pinned at attach */
	/* The same static attachments: mapped once at attach, the table
	 * every map returns, undone at detach (the kernel's attach->sgt). */
	struct dmabuf_sg_table *cached;
	uint64_t remote_id;	/* proxies: the exporter's attachment id */
	/* Dynamic attachments (dmabuf_dynamic_attach()): NULL ops = static. */
	const struct dmabuf_importer_ops *importer_ops;
	void *importer_priv;
	unsigned int pins;	/* dmabuf_pin() calls not undone */
	unsigned int notified_gen; /* the last move_notify round that ran it */
	/* Proxies: the exporter's MOVE_NOTIFY arrived; move_notify runs at
	 * the next dispatch of the connection (remote/proxy.c). */
	bool move_pending;
};

/* cpu_access.c: one dmabuf_mmap() mapping */
struct dmb_cpu_map {
	LIST_ENTRY(dmb_cpu_map) link;
	void *addr;
	uint64_t len;
	int prot;
	/* udmabuf: the mapping is of the caller's memfds, so a PROT_NONE page
	 * of the dma-buf file holds that file as the vma would in the
	 * kernel; NULL otherwise. */
	void *pin;
};

void dmb_cpu_access_fini(struct dmabuf *buf);
/* timeout_ms: how long to wait for fences (-1 forever); -EBUSY when they
 * are still pending after it. */
int dmb_cpu_begin_locked(struct dmabuf *buf, enum dmabuf_direction dir, int timeout_ms);
int dmb_cpu_end_locked(struct dmabuf *buf, enum dmabuf_direction dir);
/* An END that matches none of the caller's brackets (a peer's, for the
 * endpoint): refused in strict mode, else passed to ops->end_cpu_access,
 * which decides, as dma_buf_end_cpu_access() does. Closes no bracket. */
int dmb_cpu_end_unmatched_locked(struct dmabuf *buf, enum dmabuf_direction dir);
/* Closes one bracket of open[] (by direction) that an END of dir ends; a
 * BIDIRECTIONAL bracket is ended by one BIDIRECTIONAL END or by a read and
 * a write END. False, nothing changed, when none matches. */
bool dmb_cpu_bracket_close(unsigned int open[3], enum dmabuf_direction dir);
/* buffer_sync.c: waits for the fences CPU access must wait for (writers for
 * a read; everything for a write). */
int dmb_buf_wait_for_cpu(struct dmabuf *buf, bool write, int timeout_ms);
int dmb_buf_export_sync_file_locked(struct dmabuf *buf, uint32_t flags);
int dmb_buf_wait_kernel(struct dmabuf *buf);
void dmb_attachments_destroy_all(struct dmabuf *buf);
/* attachment.c, with the context lock held and arguments validated */
int dmb_attach_locked(struct dmabuf *buf, struct dmabuf_device *dev,
		      struct dmabuf_attachment **out);
/* The same for a dynamic importer (iops non-NULL, validated). */
int dmb_dynamic_attach_locked(struct dmabuf *buf, struct dmabuf_device *dev,
			      const struct dmabuf_importer_ops *iops, void *ipriv,
			      struct dmabuf_attachment **out);
void dmb_detach_locked(struct dmabuf_attachment *att);
int dmb_map_locked(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		   struct dmabuf_sg_table **out);
int dmb_unmap_locked(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
		     enum dmabuf_direction dir);
/* A peer's one-way MAP (wire version 7) of a static attachment: the peer's
 * map has returned already, so this is where the kernel's map ran. No wait
 * for KERNEL fences (any were added after it returned) and no -ENODEV: on
 * a buffer revoked since, the mapping is made already stale, as the
 * revoke made the others. @reserved (taken, may be NULL): the table of a
 * buffer whose map op is dmabuf_backing_map(), made ahead
 * (dmb_backing_table_locked()), used as that op's answer, so nothing here
 * can fail; NULL: the op runs. */
int dmb_map_announced_locked(struct dmabuf_attachment *att, enum dmabuf_direction dir,
			     struct dmabuf_sg_table *reserved, struct dmabuf_sg_table **out);
/* backing_ops.c: the table dmabuf_backing_map() answers for any attachment
 * of @buf now, made ahead (the exporter's reserve for a one-way MAP; the
 * frames change only at a migration, which drops the reserve). */
int dmb_backing_table_locked(struct dmabuf *buf, struct dmabuf_sg_table **out);

/* move.c, with the context lock held */
/* Runs move_notify of every dynamic attachment once (each may unmap and
 * map, not detach). */
void dmb_move_notify_locked(struct dmabuf *buf);
/* Marks every live mapping of buf stale (DMA through it faults). */
void dmb_mappings_stale_locked(struct dmabuf *buf);
/* Calls the exporter's pin/unpin op for att and counts it. */
int dmb_pin_op_locked(struct dmabuf_attachment *att);
void dmb_unpin_op_locked(struct dmabuf_attachment *att);

#include "device.h"
#include "sg_table.h"
