/* SPDX-License-Identifier: MIT */
/**
 * @file dmabuf.h
 * libdmabuf: the Linux dma-buf sharing core, emulated in userspace.
 *
 * Concepts and names follow the kernel's include/linux/dma-buf.h with a
 * `dmabuf_` prefix. Conventions, for every function in this header:
 *
 * - Return values: 0 (or a count, or an fd) on success, a negative errno on
 *   failure. Constructors fill an out-parameter and leave it untouched on
 *   failure. The errno is the kernel's for the same misuse.
 * - File descriptors: a function that takes an fd borrows it (the library
 *   dups what it keeps; the caller still owns and closes its fd). A function
 *   that returns an fd returns a new O_CLOEXEC fd that the caller owns.
 * - References: a function that returns a struct dmabuf gives the caller one
 *   reference, dropped with dmabuf_put(). Attachments, sg tables, devices and
 *   contexts have a single owner and an explicit destroy/detach/unmap call.
 * - Bad pointers: objects are validated against a registry of live objects,
 *   so a stale or doubly released buffer, attachment or sg table is reported
 *   as -EINVAL (with a log line) instead of corrupting memory.
 * - Names: a getter is `dmabuf_<object>_get_<what>()` (`dmabuf_get_<what>()`
 *   for the buffer itself); a predicate is `dmabuf_<object>_is_<what>()`.
 * - Threads: all objects of one context are protected by one recursive lock
 *   per context, so any call may come from any thread. Exporter ops run with
 *   that lock held (it is recursive: an op may call back into libdmabuf on the
 *   same thread) and must not wait for another thread that uses the same
 *   context. Fences (dmabuf-fence.h) have their own locking.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dmabuf-version.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The library's version at run time, as DMABUF_VERSION_ENCODE() gives it;
 * compare with DMABUF_VERSION, the headers' version at build time.
 *
 * @return the encoded version of the loaded library (never fails)
 */
unsigned int dmabuf_version(void);

struct dmabuf_ctx;
struct dmabuf_device;
struct dmabuf;
struct dmabuf_attachment;
struct dmabuf_sg_table;
struct dmabuf_resv;
struct dmabuf_fence;

/* ------------------------------------------------------------------------ */
/** @defgroup ctx Context: one simulated host                               */
/* ------------------------------------------------------------------------ */

/** Log priorities, as syslog's. */
enum dmabuf_log_priority {
	DMABUF_LOG_ERROR = 3,
	DMABUF_LOG_WARNING = 4,
	DMABUF_LOG_INFO = 6,
	DMABUF_LOG_DEBUG = 7,
};

/**
 * Log handler. @p msg is one line without a trailing newline.
 * Called with the context lock held; it must not call into the context.
 */
typedef void (*dmabuf_log_fn)(void *data, enum dmabuf_log_priority priority,
			      const char *msg);

/** Context flags (struct dmabuf_ctx_config.flags). */
enum dmabuf_ctx_flags {
	/**
	 * Strict CPU access: mappings made by dmabuf_mmap() and dmabuf_vmap()
	 * are inaccessible (PROT_NONE) outside a begin/end_cpu_access bracket,
	 * so CPU access without one faults at once instead of silently
	 * working as it does on a cache-coherent machine. An END without a
	 * matching begin (dmabuf_end_cpu_access(), dmabuf_fd_sync(), a peer's
	 * END) is -EINVAL with a log line, and the exporter's
	 * end_cpu_access does not run; the kernel leaves that to each
	 * exporter.
	 */
	DMABUF_CTX_STRICT_CPU_ACCESS = 1u << 0,
	/**
	 * Accept importers of any user id. By default the exporter endpoint
	 * only serves peers with the same effective uid (SO_PEERCRED); others
	 * are disconnected at once.
	 */
	DMABUF_CTX_ANY_UID = 1u << 1,
	/**
	 * Keep no released memfds. By default the context keeps the memfds
	 * of up to 4 released read-write buffers with library backing
	 * (dmabuf_export() without backing, dmabuf_heap_alloc()), their
	 * pages dropped, and the next export of the same size, exporter name
	 * and attach mark takes one instead of making a new file (fewer
	 * syscalls per allocation, the inode number reused). Each kept memfd
	 * is an open fd of the process until it is reused, the process runs
	 * out of fds or the context is destroyed. With this flag every export
	 * makes its own memfd and a release leaves no fd behind (for a
	 * program that checks its fds, or an emulation of the kernel's uapi).
	 */
	DMABUF_CTX_NO_RECYCLE = 1u << 2,
};

/**
 * Versioned structs. Every struct a caller fills or receives starts with
 * `uint32_t struct_size`: set it to sizeof() the struct (or leave it 0 for
 * the first layout). A program built against an older header keeps working
 * with a newer library (fields it does not know are zero), and one built
 * against a newer header works with an older library as long as it leaves
 * the fields that library does not know at zero (-E2BIG otherwise, as the
 * kernel's copy_struct_from_user()). The first layout of each struct is
 * DMABUF_STRUCT_V1 (the 0.1.0 layout): a caller that leaves struct_size 0
 * gets only the fields of that layout, so set it to sizeof() to receive
 * the fields added since (dmabuf_info from pin_count on, dmabuf_ctx_stats
 * from moves on).
 */
#define DMABUF_STRUCT_V1 0u

/**
 * Configuration of a context. Zero-initialise it and set what you need;
 * every zero field takes the documented default.
 */
struct dmabuf_ctx_config {
	/** sizeof() this struct as the caller was built with: the library
	 * reads what it knows, takes zero for fields newer than the caller,
	 * and refuses (-E2BIG) non-zero fields it does not know. 0 means
	 * this layout (DMABUF_STRUCT_V1). */
	uint32_t struct_size;
	/** Seed of the simulated physical memory (frame placement). Same seed,
	 * same calls: same physical addresses. */
	uint64_t seed;
	/** Simulated RAM in bytes (page multiple). Default 16 GiB. */
	uint64_t phys_size;
	/** Start of simulated RAM. Default 0. Give contexts that feed the same
	 * device without an IOMMU distinct bases so their addresses differ. */
	uint64_t phys_base;
	/** Size of the contiguous (CMA-like) region, carved below 4 GiB.
	 * Default 1 GiB. */
	uint64_t cma_size;
	/** Bitwise OR of enum dmabuf_ctx_flags; unknown bits are -EINVAL. */
	uint32_t flags;
	/** Log handler; NULL uses the process-wide one
	 * (dmabuf_set_log_handler()), else stderr. */
	dmabuf_log_fn log_fn;
	/** Passed to log_fn as its first argument. */
	void *log_data;
	/** Messages above this priority are dropped. Default: the level of
	 * DMABUF_DEBUG, else DMABUF_LOG_ERROR. */
	enum dmabuf_log_priority log_priority;
	/** How long an importer waits for its exporter's answer (and for a
	 * connect to a full backlog, and for room in a full socket) before
	 * the call fails with -ETIMEDOUT. The connection is then given up:
	 * closed, so the exporter undoes what this context held through it;
	 * later device operations on that exporter's buffers are -ENODEV,
	 * unmap, detach and put still succeed. Default 30000 ms. */
	unsigned int call_timeout_ms;
	/** The bound for fence waits on behalf of a remote exporter: how long
	 * dmabuf_begin_cpu_access() on an imported buffer may wait for the
	 * exporter's fences and ask again when new ones came meanwhile
	 * (-EBUSY), all together; then it fails with -ETIMEDOUT and the
	 * connection is kept (the exporter did answer). Each round trip in it
	 * is bounded by call_timeout_ms on its own. Default: call_timeout_ms. */
	unsigned int fence_timeout_ms;
};

/**
 * Creates a context.
 *
 * @param config configuration, or NULL for all defaults
 * @param[out] out the new context, owned by the caller
 * @return 0; -EINVAL for unknown flags or sizes that are not page multiples
 *         or do not fit; -ENOMEM; a negative errno from memfd, epoll or
 *         inotify set-up.
 */
int dmabuf_ctx_new(const struct dmabuf_ctx_config *config,
		   struct dmabuf_ctx **out);

/**
 * Destroys a context. Every buffer the caller still references and every
 * device it did not destroy is a leak: reported (DMABUF_LOG_ERROR), then
 * unmapped, detached and released, and the devices destroyed. Fds the caller
 * got from dmabuf_fd() stay valid as plain memfds. With the environment
 * variable DMABUF_LEAKS=fatal, a leak aborts the process after the report,
 * so a test fails where it leaked.
 *
 * @param ctx the context, or NULL (no-op)
 * @return the number of leaked buffers and devices (0 when clean);
 *         -EINVAL when ctx is not a live context of this process
 */
int dmabuf_ctx_destroy(struct dmabuf_ctx *ctx);

/**
 * Sets the process-wide log handler. It receives the messages that belong to
 * no context (a double dmabuf_fence_put(), a stale pointer, a context used
 * after fork()) and those of contexts that have no handler of their own;
 * without it they go to stderr. The environment variable DMABUF_DEBUG sets
 * the default level of both (error, warning, info, debug; "protocol" adds a
 * trace of every message between processes; "1" or "all" is everything).
 *
 * @param fn the handler, or NULL for stderr
 * @param data passed to fn
 * @param priority messages above it are dropped; 0 for DMABUF_DEBUG's level
 *        (DMABUF_LOG_ERROR when unset). Applies to context-less messages;
 *        a context's own level applies to its messages.
 */
void dmabuf_set_log_handler(dmabuf_log_fn fn, void *data,
			    enum dmabuf_log_priority priority);

/**
 * Changes the log handler and priority (see struct dmabuf_ctx_config).
 *
 * @param ctx the context (a bad one is ignored)
 * @param fn the handler, or NULL for the process-wide one
 * @param data passed to fn
 * @param priority messages above it are dropped
 */
void dmabuf_ctx_set_log(struct dmabuf_ctx *ctx, dmabuf_log_fn fn, void *data,
			enum dmabuf_log_priority priority);

/**
 * One pollable fd for everything the context waits on (buffer release
 * events, and later the exporter endpoint and peer connections). When it is
 * readable, call dmabuf_ctx_dispatch().
 *
 * @param ctx the context
 * @return the fd, owned by the context (do not close it); -EINVAL for a
 *         bad context
 */
int dmabuf_ctx_get_fd(struct dmabuf_ctx *ctx);

/**
 * Handles every pending event without blocking: runs ops->release for
 * buffers whose last file reference went away in any process, serves peers.
 *
 * @param ctx the context
 * @return the number of events handled (>= 0), or a negative errno
 */
int dmabuf_ctx_dispatch(struct dmabuf_ctx *ctx);

/**
 * Waits up to @p timeout_ms (-1: forever) for an event, then dispatches.
 *
 * @param ctx the context
 * @param timeout_ms how long to wait; -1 forever, 0 not at all
 * @return events handled (0 on timeout), or a negative errno
 */
int dmabuf_ctx_dispatch_timeout(struct dmabuf_ctx *ctx, int timeout_ms);

/**
 * Starts a thread that dispatches the context whenever its fd is readable,
 * so an exporter serves peers without an event loop of its own.
 *
 * @param ctx the context
 * @return 0; -EBUSY if the thread already runs; -errno from pthread/eventfd
 */
int dmabuf_ctx_start_thread(struct dmabuf_ctx *ctx);

/**
 * Stops and joins the service thread (dmabuf_ctx_destroy() does it too).
 *
 * @param ctx the context
 * @return 0; -ESRCH if no thread runs; -EDEADLK from the thread itself
 */
int dmabuf_ctx_stop_thread(struct dmabuf_ctx *ctx);

/** Counters of a context, for tests and reports. */
struct dmabuf_ctx_stats {
	/** sizeof() this struct as the caller was built with: the library
	 * writes no more than that. 0 means this layout (DMABUF_STRUCT_V1). */
	uint32_t struct_size;
	uint64_t buffers_live;	  /**< exported, not yet released */
	uint64_t buffers_released; /**< ops->release calls so far */
	uint64_t attachments_live; /**< attachments not yet detached */
	uint64_t mappings_live;	  /**< sg tables mapped, not yet unmapped */
	uint64_t phys_total;	  /**< simulated RAM, bytes */
	uint64_t phys_used;	  /**< frames handed to buffers, bytes */
	uint64_t cma_total;	  /**< contiguous (CMA-like) region, bytes */
	uint64_t cma_used;	  /**< of it handed to buffers, bytes */
	uint64_t moves;		  /**< dmabuf_backing_migrate() moves done */
	uint64_t move_notifies;	  /**< importers' move_notify calls made */
};

/**
 * Fills @p stats.
 *
 * @param ctx the context
 * @param[out] stats zero-initialised by the caller, struct_size set
 * @return 0; -EINVAL for a bad context or NULL stats
 */
int dmabuf_ctx_get_stats(struct dmabuf_ctx *ctx, struct dmabuf_ctx_stats *stats);

/* ------------------------------------------------------------------------ */
/** @defgroup device Stand-in devices and their DMA constraints             */
/* ------------------------------------------------------------------------ */

/** Device flags (struct dmabuf_device_info.flags). */
enum dmabuf_device_flags {
	/** Behind an IOMMU: DMA addresses come from the device's own IOVA
	 * space, so any frames are reachable and a mapping is contiguous in
	 * device address space. */
	DMABUF_DEVICE_IOMMU = 1u << 0,
	/** Needs the whole buffer as one DMA segment. Without an IOMMU this
	 * means physically contiguous memory. */
	DMABUF_DEVICE_CONTIGUOUS = 1u << 1,
	/** Can do peer-to-peer DMA (reported to exporters; informational). */
	DMABUF_DEVICE_P2P = 1u << 2,
};

/** What a device can address. Zero fields take the defaults. */
struct dmabuf_device_info {
	/** sizeof() this struct as the caller was built with: the library
	 * reads what it knows, takes zero for fields newer than the caller,
	 * and refuses (-E2BIG) non-zero fields it does not know. 0 means
	 * this layout (DMABUF_STRUCT_V1). */
	uint32_t struct_size;
	/** Name used in logs and reports (copied; at most 31 bytes kept). */
	const char *name;
	/** DMA address width in bits, 12..64. Default 64. (The kernel's
	 * default mask is 32 bits; say what your device has.) */
	unsigned int dma_mask_bits;
	/** Longest DMA segment in bytes, page multiple. Default 64 KiB, the
	 * kernel's default (dma_get_max_seg_size()). */
	uint64_t max_segment_size;
	/** Segment boundary mask: no segment crosses a multiple of mask + 1.
	 * Default 0xffffffff, the kernel's default. */
	uint64_t segment_boundary;
	/** Alignment of every segment's DMA address, a power of two >= the page
	 * size. Default: the page size. */
	uint64_t alignment;
	/** Bitwise OR of enum dmabuf_device_flags; unknown bits are -EINVAL. */
	uint32_t flags;
};

/**
 * Creates a stand-in device in @p ctx.
 *
 * @param ctx the context the device belongs to
 * @param info constraints (copied)
 * @param[out] out the device, owned by the caller until
 *        dmabuf_device_destroy() or dmabuf_ctx_destroy()
 * @return 0; -EINVAL for a NULL argument, unknown flags, a mask outside
 *         12..64 bits, a segment size or alignment that is not a page
 *         multiple or power of two; -ENOMEM
 */
int dmabuf_device_new(struct dmabuf_ctx *ctx,
		      const struct dmabuf_device_info *info,
		      struct dmabuf_device **out);

/**
 * Destroys a device.
 *
 * @param dev the device
 * @return 0; -EBUSY while the device is still attached to a buffer;
 *         -EINVAL for a pointer that is not a live device
 */
int dmabuf_device_destroy(struct dmabuf_device *dev);

/**
 * @param dev the device
 * @return the device's name (owned by the device), NULL for a bad device
 */
const char *dmabuf_device_get_name(const struct dmabuf_device *dev);

/**
 * Copies the device's effective constraints (defaults filled in) into
 * @p info; info->name points into the device.
 *
 * @param dev the device
 * @param[out] info the constraints
 * @return 0; -EINVAL for a bad device or NULL info
 */
int dmabuf_device_get_info(const struct dmabuf_device *dev,
			   struct dmabuf_device_info *info);

/* ------------------------------------------------------------------------ */
/** @defgroup export Exporting buffers                                       */
/* ------------------------------------------------------------------------ */

/** DMA direction, with the kernel's enum dma_data_direction values. */
enum dmabuf_direction {
	DMABUF_BIDIRECTIONAL = 0,
	DMABUF_TO_DEVICE = 1,
	DMABUF_FROM_DEVICE = 2,
	DMABUF_NONE = 3,
};

/** Version of struct dmabuf_ops this header describes. */
#define DMABUF_OPS_VERSION 1

/**
 * Exporter operations, as the kernel's struct dma_buf_ops.
 *
 * Locking, for every op: it runs in the exporter's process, on the thread
 * that made the call that caused it (or the thread dispatching the context
 * for a remote importer), with the context lock held. The lock is
 * recursive: an op may call back into libdmabuf on the same thread, on this
 * or another buffer. An op may sleep (it runs in process context), but it
 * must not wait for another thread that needs the same context, since that
 * thread cannot take the lock; the library itself drops the lock while it
 * waits for fences. Each member says whether it is mandatory, when it is
 * called and what it returns.
 */
struct dmabuf_ops {
	/** The DMABUF_OPS_VERSION the table was written for (0 means 1).
	 * Each member below says the version it appeared in; the library
	 * calls a member only when the table's version is at least that, so
	 * a table written for an older library leaves newer members unused,
	 * and one written for a newer library is used for the members this
	 * library knows. All members listed here are version 1. */
	uint32_t version;

	/**
	 * [optional] called from dmabuf_attach() when a device
	 * attaches. It may refuse with -EBUSY when the current backing cannot
	 * serve the device (dmabuf_backing_check_device() says so), or any
	 * other negative errno, which dmabuf_attach() returns. It may store
	 * per-attachment state with dmabuf_attachment_set_priv().
	 */
	int (*attach)(struct dmabuf *buf, struct dmabuf_attachment *att);

	/** [optional] called from dmabuf_detach(); undoes attach. */
	void (*detach)(struct dmabuf *buf, struct dmabuf_attachment *att);

	/**
	 * [optional, with unpin] pins the backing so it cannot move
	 * while a dynamic importer uses it. Exactly one of pin/unpin is
	 * -EINVAL at export.
	 */
	int (*pin)(struct dmabuf_attachment *att);

	/** [optional, with pin] undoes pin. */
	void (*unpin)(struct dmabuf_attachment *att);

	/**
	 * [mandatory] returns the page list of the buffer for the
	 * attached device, as map_dma_buf. Fill *sgt with CPU entries (buffer
	 * offset, length, physical address), usually through
	 * dmabuf_backing_map(). The library then assigns device addresses
	 * for att's device (the part dma_map_sgtable() does in the kernel),
	 * in the process the device lives in; if that fails, `unmap` is called
	 * and dmabuf_map_attachment() returns the error.
	 * Return 0 or a negative errno.
	 */
	int (*map)(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		   struct dmabuf_sg_table **sgt);

	/** [mandatory] releases a table `map` returned. */
	void (*unmap)(struct dmabuf_attachment *att,
		      struct dmabuf_sg_table *sgt, enum dmabuf_direction dir);

	/**
	 * [mandatory] called exactly once, after the last
	 * reference, the last fd in any process, the last fd in flight in a
	 * socket and the last mmap are gone. Free the exporter's state here.
	 */
	void (*release)(struct dmabuf *buf);

	/**
	 * [optional] called from
	 * dmabuf_begin_cpu_access() after fences are waited for; may fail.
	 */
	int (*begin_cpu_access)(struct dmabuf *buf, enum dmabuf_direction dir);

	/**
	 * [optional] called from dmabuf_end_cpu_access(),
	 * also for an END without a matching begin (outside strict mode),
	 * which it may refuse, as the kernel's exporters decide that; and at
	 * release for every bracket a holder left open.
	 */
	int (*end_cpu_access)(struct dmabuf *buf, enum dmabuf_direction dir);

	/**
	 * [optional] permission hook for dmabuf_mmap(): return 0 to let
	 * the library map the range, or a negative errno. Without it
	 * dmabuf_mmap() is -EINVAL, as dma_buf_mmap() without an mmap op.
	 * (A plain mmap() of the fd is a memfd mapping and cannot be hooked.)
	 */
	int (*mmap)(struct dmabuf *buf, uint64_t offset, uint64_t len, int prot);

	/**
	 * [optional] maps the whole buffer for the CPU, as vmap;
	 * usually dmabuf_backing_vmap(). Called for the first dmabuf_vmap()
	 * only; later ones share the address. Without it dmabuf_vmap() is
	 * -EINVAL.
	 */
	int (*vmap)(struct dmabuf *buf, void **vaddr);

	/** [optional] undoes vmap, after the last dmabuf_vunmap(). */
	void (*vunmap)(struct dmabuf *buf, void *vaddr);
};

/** When the simulated physical frames of a buffer are chosen. */
enum dmabuf_alloc {
	/** Scattered frames in mixed chunk orders, like the system heap. */
	DMABUF_ALLOC_SYSTEM = 0,
	/** One physically contiguous run from the CMA-like region. */
	DMABUF_ALLOC_CONTIGUOUS = 1,
	/** Deferred to the first map, then chosen to satisfy every attached
	 * device: contiguous if a device without IOMMU needs it, below the
	 * smallest DMA mask of devices without IOMMU. */
	DMABUF_ALLOC_DEFERRED = 2,
};

/** Export description, as struct dma_buf_export_info. */
struct dmabuf_export_info {
	/** sizeof() this struct as the caller was built with: the library
	 * reads what it knows, takes zero for fields newer than the caller,
	 * and refuses (-E2BIG) non-zero fields it does not know. 0 means
	 * this layout (DMABUF_STRUCT_V1). */
	uint32_t struct_size;
	/** Exporter name for reports (copied; at most 31 bytes kept).
	 * NULL: "unknown". */
	const char *exp_name;
	/** Ops table; must outlive the buffer. */
	const struct dmabuf_ops *ops;
	/** Size in bytes: a non-zero multiple of the page size. */
	uint64_t size;
	/** O_RDWR, O_RDONLY or O_WRONLY, optionally with O_CLOEXEC (ignored:
	 * every fd is close-on-exec). A read-only buffer can be written only by
	 * the exporter (through dmabuf_vmap()), never through its fd. A
	 * write-only buffer's file is O_WRONLY: no holder can mmap it
	 * (dmabuf_mmap() -EACCES), as do_mmap() refuses a file without read
	 * access; devices, dmabuf_vmap() and CPU access brackets work. */
	int flags;
	/** Exporter's private pointer; mandatory (non-NULL), as the kernel's. */
	void *priv;
	/** Backing allocation policy. */
	enum dmabuf_alloc alloc;
};

/**
 * Exports a new buffer, as dma_buf_export(): creates its memfd (sealed
 * against shrink and grow, and against writes for a read-only buffer) and,
 * unless alloc is DEFERRED, its simulated frames. The buffer holds one fd
 * of the process; its dma-buf file is opened when it is first handed out
 * (dmabuf_fd(), dmabuf_mmap()).
 *
 * @param ctx the exporter's context
 * @param info what to export (copied; info->ops must outlive the buffer)
 * @param[out] out the buffer, with one reference for the caller
 * @return 0; -EINVAL for a NULL ops or priv, a missing map, unmap or release,
 *         only one of pin/unpin, an unknown ops version, a zero or unaligned
 *         size, or flags other than O_RDONLY/O_WRONLY/O_RDWR(|O_CLOEXEC); -ENOMEM when
 *         the simulated memory cannot hold the buffer; -EMFILE/-ENFILE
 *         from the kernel (fds)
 */
int dmabuf_export(struct dmabuf_ctx *ctx, const struct dmabuf_export_info *info,
		  struct dmabuf **out);

/**
 * Returns a new fd for the buffer's dma-buf file, as dma_buf_fd(). Every fd
 * refers to the same open file description. Unlike dma_buf_fd(), the caller's
 * reference is not consumed: the fd and the reference are independent.
 *
 * @param buf the buffer
 * @param flags O_CLOEXEC or 0 (the fd is close-on-exec either way); other
 *        bits are -EINVAL
 * @return the fd (owned by the caller), or -EINVAL; -EMFILE/-ENFILE from the
 *         kernel (the first call also opens the dma-buf file)
 */
int dmabuf_fd(struct dmabuf *buf, int flags);

/**
 * Returns the buffer behind @p fd, as dma_buf_get(), with one reference.
 * Two calls for fds of the same buffer give the same object.
 *
 * For a buffer another context exported (another process, or another
 * context of this one) the result is a proxy: the first call connects to the
 * exporter's endpoint (once per exporter), proves possession by sending the
 * fd, and from then on attach, map, CPU access, names and fences run the
 * exporter's ops in the exporter. If the exporter dies, the proxy keeps CPU
 * access to the memory; new device operations fail with -ENODEV, while
 * unmap, detach and put still succeed.
 *
 * As dma_buf_get(), which only checks the file, the call does not wait for
 * an exporter in another process that speaks protocol version 3 (the
 * library's own) when the buffer's bytes are its file and it is not
 * write-only: size, access mode and exporter name come from the fd, and
 * the handshake and import go with the first call that needs the
 * exporter. The errors below that only the exporter can see (an fd it does
 * not know as one of its buffers, its fd limit, -EUSERS, -ETIMEDOUT,
 * -EPROTONOSUPPORT, a refused uid as -ENODEV, its -ENOMEM) then come from
 * that call and every later call of the proxy, with the same errno;
 * dmabuf_put() still succeeds. See docs/design.md §6.
 *
 * @param ctx the importer's context
 * @param fd borrowed; any fd of the buffer's dma-buf file (from
 *        dmabuf_fd(), a heap, a socket, inherited over fork)
 * @param[out] out the buffer
 * @return 0, or:
 *         -EINVAL for a NULL @p out, a context that is not live (or was
 *         inherited over fork()), an fd that is not a libdmabuf buffer
 *         (wrong name, unsealed, not a regular file, or an fd the
 *         exporter does not know as one of its buffers);
 *         -EBADF for a bad fd or an O_PATH fd (no open file: the
 *         kernel's fget() refuses it too);
 *         -ENODEV when its exporter is gone (nobody listens any more, it
 *         closed the connection, or it broke the protocol);
 *         -ETIMEDOUT when the exporter did not accept the connection or
 *         answer within call_timeout_ms (the connection is given up);
 *         -EMFILE or -ENFILE when this process, or the exporter, has no
 *         free fd (for the socket, for the library's own reference to the
 *         file, or for the proof of possession on the exporter's side);
 *         -ENOSPC beyond the exporter's per-peer limit of buffers;
 *         -EUSERS when the exporter already serves its maximum of peers
 *         (256);
 *         -EPROTO when a udmabuf's exporter lists memfds that
 *         udmabuf_create() would refuse, or ranges not the buffer's size;
 *         -EPROTONOSUPPORT when the exporter speaks no common protocol
 *         version;
 *         -EPROTO when the exporter and the file disagree on the size;
 *         -ENOMEM, -ENOBUFS when memory runs out here or in the exporter
 */
int dmabuf_get(struct dmabuf_ctx *ctx, int fd, struct dmabuf **out);

/**
 * Takes one more reference.
 *
 * @param buf the buffer
 * @return @p buf, with one more reference owned by the caller (NULL if buf
 *         is not live; nothing is taken)
 */
struct dmabuf *dmabuf_ref(struct dmabuf *buf);

/**
 * Drops one reference, as dma_buf_put(). After the last reference the
 * library closes its own file; ops->release runs once no fd, fd in flight
 * or mapping of the buffer remains anywhere (possibly later, from
 * dmabuf_ctx_dispatch()). A buffer never handed out is released at once.
 * If the release probe cannot be set up (fds or inotify watches exhausted:
 * logged), the library keeps the file and the buffer stays until it is
 * revived with dmabuf_get() or the context is destroyed.
 *
 * @param buf the reference to drop
 * @return 0; -EINVAL for a buffer that is not live or has no reference left
 *         (a double put), with a log line
 */
int dmabuf_put(struct dmabuf *buf);

/**
 * @param buf the buffer
 * @return the exporter's priv pointer; NULL for an invalid buffer
 */
void *dmabuf_get_priv(const struct dmabuf *buf);

/**
 * @param buf the buffer
 * @return the buffer's size in bytes; 0 for an invalid buffer
 */
uint64_t dmabuf_get_size(const struct dmabuf *buf);

/**
 * @param buf the buffer
 * @return the context the buffer lives in (not owned by the caller); NULL
 *         for an invalid buffer
 */
struct dmabuf_ctx *dmabuf_get_ctx(const struct dmabuf *buf);

/**
 * Sets the buffer's name, as DMA_BUF_SET_NAME. The empty name is a name:
 * afterwards dmabuf_info.name_set is true, as the kernel's dmabuf->name is
 * non-NULL and its fdinfo shows an empty "name:" line.
 *
 * @param buf the buffer
 * @param name NUL-terminated, at most DMABUF_NAME_LEN - 1 bytes (copied)
 * @return 0; -EINVAL for NULL or a longer name; -ENOMEM when the copy
 *         cannot be allocated (as dma_buf_set_name()), the old name kept
 */
int dmabuf_set_name(struct dmabuf *buf, const char *name);

/** Name length limit including the NUL, as DMA_BUF_NAME_LEN. */
#define DMABUF_NAME_LEN 32

/** A snapshot of a buffer, as the kernel's debugfs bufinfo line. */
struct dmabuf_info {
	/** sizeof() this struct as the caller was built with: the library
	 * writes no more than that. 0 means this layout (DMABUF_STRUCT_V1). */
	uint32_t struct_size;
	uint64_t size;			/**< bytes */
	int flags;			/**< O_RDONLY, O_WRONLY or O_RDWR */
	uint64_t inode;			/**< of the dma-buf file */
	char exp_name[DMABUF_NAME_LEN];	/**< exporter name */
	char name[DMABUF_NAME_LEN];	/**< "" until dmabuf_set_name() */
	unsigned int refcount;		/**< library references */
	unsigned int attachments;	/**< attached devices */
	unsigned int mappings;		/**< live device mappings */
	unsigned int vmap_count;	/**< dmabuf_vmap() calls not undone */
	bool backing_allocated;		/**< false while DEFERRED and unmapped */
	bool contiguous;		/**< backing is one physical run */
	bool imported;			/**< a proxy of another context's buffer */
	/** True once a name was set, the empty name included: the kernel's
	 * fdinfo prints a "name:" line only then (dma_buf_show_fdinfo()). */
	bool name_set;
	/** Pins in force (static attachments of a pinning exporter and
	 * dmabuf_pin()); always 0 on an imported buffer (its exporter counts
	 * the pins of every process). */
	unsigned int pin_count;
	bool revoked;			/**< dmabuf_revoke() ran */
};

/**
 * Fills @p info.
 *
 * @param buf the buffer
 * @param[out] info zero-initialised by the caller, struct_size set
 * @return 0; -EINVAL for a bad buffer or NULL info; for an imported buffer
 *         the exporter's counts when it answers, what this side knows when
 *         it is gone, and the errno of an import the exporter refused or
 *         a call it did not answer (dmabuf_get(): -EINVAL, -ETIMEDOUT, ...)
 */
int dmabuf_get_info(struct dmabuf *buf, struct dmabuf_info *info);

/**
 * @param buf the buffer
 * @return the buffer's reservation object (see dmabuf-fence.h), owned by
 *         the buffer; NULL for an invalid buffer
 */
struct dmabuf_resv *dmabuf_get_resv(struct dmabuf *buf);

/* ------------------------------------------------------------------------ */
/** @defgroup attach Attachments and page lists                              */
/* ------------------------------------------------------------------------ */

/**
 * Attaches @p dev to @p buf, as dma_buf_attach(). Calls ops->attach.
 *
 * @param buf the buffer
 * @param dev a device of the buffer's context
 * @param[out] out the attachment, owned by the caller until dmabuf_detach()
 * @return 0; -EINVAL for NULL or dead objects or a device of another
 *         context; -EBUSY (or another errno) when ops->attach refuses;
 *         -ENODEV for a revoked buffer; -ENOMEM. For a buffer imported
 *         from another process whose exporter has no attach and no pin op,
 *         the exporter is not asked (as dma_buf_attach() of such an
 *         exporter asks nobody): what it finds surfaces from the first
 *         dmabuf_map_attachment() of @p out (docs/design.md §6)
 */
int dmabuf_attach(struct dmabuf *buf, struct dmabuf_device *dev,
		  struct dmabuf_attachment **out);

/**
 * Detaches, as dma_buf_detach(). Mappings still live are unmapped first
 * (with a warning), then ops->detach runs and @p att is freed.
 *
 * @param buf the buffer
 * @param att the attachment
 * @return 0; -EINVAL if att is not a live attachment of buf
 */
int dmabuf_detach(struct dmabuf *buf, struct dmabuf_attachment *att);

/**
 * @param att the attachment
 * @return the attachment's buffer (no new reference); NULL for a bad
 *         attachment
 */
struct dmabuf *dmabuf_attachment_get_buf(const struct dmabuf_attachment *att);
/**
 * @param att the attachment
 * @return the attachment's device; NULL for a bad attachment
 */
struct dmabuf_device *dmabuf_attachment_get_device(const struct dmabuf_attachment *att);
/**
 * @param att the attachment
 * @return the exporter's per-attachment pointer (set by ops->attach);
 *         NULL for a bad attachment
 */
void *dmabuf_attachment_get_priv(const struct dmabuf_attachment *att);
/**
 * Sets the exporter's per-attachment pointer.
 *
 * @param att the attachment
 * @param priv the pointer (the library never dereferences it)
 * @return 0; -EINVAL for a bad attachment
 */
int dmabuf_attachment_set_priv(struct dmabuf_attachment *att, void *priv);

/**
 * Maps the buffer for the attached device, as dma_buf_map_attachment():
 * runs ops->map, then assigns device addresses. A static attachment of an
 * exporter with pin/unpin returns the table mapped at attach, in any
 * direction, without calling ops->map (the kernel's cached attach->sgt).
 *
 * @param att the attachment
 * @param dir BIDIRECTIONAL, TO_DEVICE or FROM_DEVICE (NONE is -EINVAL)
 * @param[out] out the table, owned by the attachment until
 *        dmabuf_unmap_attachment()
 * @return 0; -EINVAL for a bad direction or a layout a device needing
 *         contiguous memory cannot use; -EIO for frames beyond a device's
 *         DMA mask without IOMMU; -ENOMEM (IOVA space or frames exhausted);
 *         an errno from ops->map. On an imported buffer also -ENODEV when
 *         the exporter is gone, -ETIMEDOUT when it did not answer within
 *         call_timeout_ms, and -EMFILE when this process has no free fd
 *         for a table that travels in a memfd (the exporter's mapping is
 *         undone, the connection kept)
 */
int dmabuf_map_attachment(struct dmabuf_attachment *att,
			  enum dmabuf_direction dir,
			  struct dmabuf_sg_table **out);

/**
 * Unmaps, as dma_buf_unmap_attachment(): releases the device addresses
 * (later DMA to them faults), then runs ops->unmap.
 *
 * @param att the attachment
 * @param sgt the table dmabuf_map_attachment() gave; freed here
 * @param dir the direction it was mapped with
 * @return 0; -EINVAL if @p sgt is not a live mapping of @p att or @p dir
 *         differs from the map's. The table mapped at attach (see
 *         dmabuf_map_attachment()) stays until detach: 0, nothing undone.
 */
int dmabuf_unmap_attachment(struct dmabuf_attachment *att,
			    struct dmabuf_sg_table *sgt,
			    enum dmabuf_direction dir);

/* ------------------------------------------------------------------------ */
/** @defgroup dynamic Dynamic attachments, moves, pinning and revocation      */
/* ------------------------------------------------------------------------ */

/** Version of struct dmabuf_importer_ops this header describes. */
#define DMABUF_IMPORTER_OPS_VERSION 1

/**
 * Importer operations of a dynamic attachment, as the kernel's struct
 * dma_buf_attach_ops. A dynamic importer accepts that the exporter moves
 * the buffer while it is attached: it is told through move_notify and maps
 * again (the next dmabuf_map_attachment() returns the new placement). Its
 * maps do not wait for the buffer's KERNEL fences (it must obey the fences
 * itself, as the kernel's dynamic importers do) and do not pin.
 */
struct dmabuf_importer_ops {
	/** The DMABUF_IMPORTER_OPS_VERSION the table was written for (0 means
	 * 1); a larger one than this library knows is -EINVAL at attach. */
	uint32_t version;
	/** The importer can reach the exporter's memory peer to peer (the
	 * kernel's allow_peer2peer); exporters read it with
	 * dmabuf_attachment_get_peer2peer(). */
	bool allow_peer2peer;
	/**
	 * [mandatory] the buffer is about to move, or was revoked: every
	 * mapping of @p att is stale once the move is done (device access
	 * through it faults as DMABUF_FAULT_STALE); unmap it and map again
	 * when needed. Runs in the thread that called dmabuf_move_notify(),
	 * dmabuf_backing_migrate() or dmabuf_revoke(), with the context lock
	 * and the buffer's reservation lock held (as the kernel calls it with
	 * the resv held); it may unmap and map @p att, but must not detach it.
	 * For an attachment of an imported buffer it runs while the importer
	 * dispatches its context, when the exporter's MOVE_NOTIFY arrives.
	 */
	void (*move_notify)(struct dmabuf_attachment *att);
};

/**
 * Attaches @p dev to @p buf as a dynamic importer, as
 * dma_buf_dynamic_attach(). With @p ops NULL this is dmabuf_attach(). A
 * static attachment (dmabuf_attach()) of an exporter that has pin/unpin
 * is pinned here and mapped once (ops->map, BIDIRECTIONAL, waiting for
 * the buffer's KERNEL fences), as dma_buf_dynamic_attach() pins it and
 * caches the table; a dynamic one is neither. On an imported buffer the
 * exporter does both, on its side.
 *
 * @param buf the buffer
 * @param dev a device of the buffer's context
 * @param ops the importer's ops (must outlive the attachment), or NULL
 * @param importer_priv the importer's pointer, returned by
 *        dmabuf_attachment_get_importer_priv()
 * @param[out] out the attachment, owned by the caller until dmabuf_detach()
 * @return 0; -EINVAL for ops without move_notify or of an unknown version,
 *         and as dmabuf_attach(); -ENODEV for a revoked buffer; an errno
 *         from ops->attach, ops->pin or the attach-time map (all undone
 *         then); -ENOMEM
 */
int dmabuf_dynamic_attach(struct dmabuf *buf, struct dmabuf_device *dev,
			  const struct dmabuf_importer_ops *ops, void *importer_priv,
			  struct dmabuf_attachment **out);

/**
 * @param att the attachment
 * @return 1 for a dynamic attachment, 0 for a static one, -EINVAL for a bad
 *         attachment
 */
int dmabuf_attachment_get_dynamic(const struct dmabuf_attachment *att);

/**
 * @param att the attachment
 * @return 1 when the importer allows peer-to-peer access, 0 when not (and
 *         for a static attachment), -EINVAL for a bad attachment
 */
int dmabuf_attachment_get_peer2peer(const struct dmabuf_attachment *att);

/**
 * @param att the attachment
 * @return the importer_priv given to dmabuf_dynamic_attach(); NULL for a
 *         static or bad attachment
 */
void *dmabuf_attachment_get_importer_priv(const struct dmabuf_attachment *att);

/**
 * Pins the buffer for a dynamic importer, as dma_buf_pin(): the exporter
 * must not move it until dmabuf_unpin() (dmabuf_backing_migrate() then
 * refuses with -EBUSY). Calls ops->pin when the exporter has one. The
 * caller holds the buffer's reservation lock (dmabuf_resv_lock() on
 * dmabuf_get_resv()), as the kernel requires.
 *
 * @param att a dynamic attachment
 * @return 0; -EINVAL for a bad or static attachment (the kernel warns and
 *         lets only dynamic importers pin) or when the caller does not hold
 *         the reservation lock; -ENODEV for a revoked buffer; an errno
 *         from ops->pin. On an imported buffer the exporter pins (its pin
 *         op, with its resv held; a PIN request) and answers with these
 *         errnos; -ENODEV also when the exporter is gone, -EOPNOTSUPP from
 *         an exporter of a version without PIN
 */
int dmabuf_pin(struct dmabuf_attachment *att);

/**
 * Undoes one dmabuf_pin(), as dma_buf_unpin(); calls ops->unpin. Same
 * locking rule as dmabuf_pin(). Pins left at detach are undone there; the
 * pins of an importer in another process also when it dies.
 *
 * @param att a dynamic attachment
 * @return 0; -EINVAL for a bad or static attachment, one without a pin
 *         left, or when the caller does not hold the reservation lock
 */
int dmabuf_unpin(struct dmabuf_attachment *att);

/**
 * Tells every dynamic importer that the buffer moves, as
 * dma_buf_move_notify(): each one's move_notify runs (on this thread;
 * importers in other processes get a MOVE_NOTIFY event). As in the kernel
 * it does not look at pins: an exporter must not move a pinned buffer.
 * The caller holds the buffer's reservation lock. When another thread
 * holds the context lock, the reservation lock is dropped while this call
 * waits for the context lock (the lock order is context, then resv).
 *
 * @param buf an exported buffer of this process
 * @return 0; -EINVAL for a bad or imported buffer, or when the caller does
 *         not hold the reservation lock
 */
int dmabuf_move_notify(struct dmabuf *buf);

/**
 * Moves the buffer's simulated frames to a new placement, as an exporter
 * evicts or migrates (TTM's moves): new frames are chosen for @p alloc
 * (SYSTEM: scattered frames; CONTIGUOUS: one run from the CMA-like region,
 * standing for VRAM), dynamic importers are notified (as
 * dmabuf_move_notify()), every live mapping becomes stale (device access
 * through it faults as DMABUF_FAULT_STALE) and the old frames are freed.
 * The bytes stay (the copy a real move makes). @p fence, if not NULL, is
 * added to the reservation object with KERNEL usage: it tells when the
 * move is complete, and a static attachment's map waits for it.
 * The caller holds the buffer's reservation lock, as for move_notify.
 *
 * @param buf an exported buffer of this process
 * @param alloc DMABUF_ALLOC_SYSTEM or DMABUF_ALLOC_CONTIGUOUS
 * @param fence the move's fence (borrowed: the resv takes its own
 *        reference), or NULL when the move is already complete
 * @return 0; -EINVAL for a bad, imported or udmabuf buffer, another alloc,
 *         or without the reservation lock; -EBUSY while the buffer is
 *         pinned (a static attachment of a pinning exporter, or
 *         dmabuf_pin()) or a static attachment of an exporter without pin
 *         has a live mapping (it cannot be told); -ENODEV for a revoked
 *         buffer; -ENOMEM when no frames fit (nothing changed)
 */
int dmabuf_backing_migrate(struct dmabuf *buf, enum dmabuf_alloc alloc,
			   struct dmabuf_fence *fence);

/**
 * Revokes device access to the buffer, as exporters do on device removal:
 * dynamic importers are notified (move_notify), every live mapping becomes
 * stale (device access faults as DMABUF_FAULT_STALE), and later maps and
 * attaches fail with -ENODEV (an importer in another process attaching to a
 * buffer whose exporter has no attach and no pin op gets it from its first
 * dmabuf_map_attachment(), as the kernel's dma_buf_attach() of such an
 * exporter asks nobody: docs/design.md §6); unmap and detach still work. CPU access
 * keeps working (the fd, dmabuf_mmap() and dmabuf_vmap()), as the kernel's
 * dma-buf core cannot revoke a file's CPU mappings (docs/design.md). The
 * caller may or may not hold the reservation lock. Revoking twice is a
 * no-op.
 *
 * @param buf an exported buffer of this process
 * @return 0; -EINVAL for a bad or imported buffer
 */
int dmabuf_revoke(struct dmabuf *buf);

/* ------------------------------------------------------------------------ */
/** @defgroup sgt Page lists (sg tables)                                     */
/* ------------------------------------------------------------------------ */

/** A CPU-side entry: a run of the buffer and where it sits in (simulated)
 * physical memory. Like a scatterlist entry before DMA mapping. */
struct dmabuf_sg_entry {
	uint64_t offset;	/**< byte offset in the buffer */
	uint64_t length;	/**< bytes, page multiple */
	uint64_t phys;		/**< simulated physical address */
};

/** A device-side entry, as sg_dma_address()/sg_dma_len(). */
struct dmabuf_dma_entry {
	uint64_t dma_addr;	/**< address the device uses */
	uint64_t length;	/**< bytes */
	uint64_t offset;	/**< byte offset in the buffer it starts at */
};

/**
 * @param sgt the table
 * @return the number of CPU entries (the kernel's orig_nents); 0 for a bad
 *         table
 */
unsigned int dmabuf_sg_table_get_cpu_count(const struct dmabuf_sg_table *sgt);
/**
 * @param sgt the table
 * @return the CPU entries, valid while the table lives (owned by it);
 *         NULL for a bad table
 */
const struct dmabuf_sg_entry *dmabuf_sg_table_get_cpu_entries(const struct dmabuf_sg_table *sgt);
/**
 * @param sgt the table
 * @return the number of DMA entries (the kernel's nents); 0 before device
 *         mapping or for a bad table
 */
unsigned int dmabuf_sg_table_get_dma_count(const struct dmabuf_sg_table *sgt);
/**
 * @param sgt the table
 * @return the DMA entries, valid while the table lives (owned by it);
 *         NULL for a bad table
 */
const struct dmabuf_dma_entry *dmabuf_sg_table_get_dma_entries(const struct dmabuf_sg_table *sgt);
/**
 * @param sgt the table
 * @return the total bytes the table covers; 0 for a bad table
 */
uint64_t dmabuf_sg_table_get_size(const struct dmabuf_sg_table *sgt);

/** Iterates CPU entries, as for_each_sgtable_sg(). */
#define dmabuf_for_each_sgtable_sg(sgt, ent, i)                                \
	for ((i) = 0, (ent) = dmabuf_sg_table_get_cpu_entries(sgt);                 \
	     (i) < dmabuf_sg_table_get_cpu_count(sgt); (i)++, (ent)++)

/** Iterates DMA entries, as for_each_sgtable_dma_sg(). */
#define dmabuf_for_each_sgtable_dma_sg(sgt, ent, i)                            \
	for ((i) = 0, (ent) = dmabuf_sg_table_get_dma_entries(sgt);                 \
	     (i) < dmabuf_sg_table_get_dma_count(sgt); (i)++, (ent)++)

/* ------------------------------------------------------------------------ */
/** @defgroup backing Helpers for exporter ops                               */
/* ------------------------------------------------------------------------ */

/**
 * The usual body of ops->map: allocates a DEFERRED backing now (satisfying
 * every attached device), then builds a table of the backing's physical runs,
 * coalescing adjacent frames.
 *
 * @param att the attachment
 * @param dir the direction ops->map received
 * @param[out] sgt a new table, to be returned from ops->map
 * @return 0; -ENOMEM when no frames satisfy every attached device
 */
int dmabuf_backing_map(struct dmabuf_attachment *att, enum dmabuf_direction dir,
		       struct dmabuf_sg_table **sgt);

/**
 * The usual body of ops->unmap: frees a table from dmabuf_backing_map().
 *
 * @param att the attachment
 * @param sgt the table, freed
 * @param dir the direction ops->unmap received
 */
void dmabuf_backing_unmap(struct dmabuf_attachment *att,
			  struct dmabuf_sg_table *sgt,
			  enum dmabuf_direction dir);

/**
 * For ops->attach: tells whether the buffer's backing (if already chosen)
 * can serve @p dev.
 *
 * @param buf the buffer
 * @param dev the attaching device
 * @return 0; -EBUSY if the device has no IOMMU and needs
 * contiguous memory the backing does not have, or cannot reach its frames
 */
int dmabuf_backing_check_device(struct dmabuf *buf,
				const struct dmabuf_device *dev);

/**
 * The usual body of ops->vmap: one mapping of the whole buffer, writable
 * for the exporter.
 *
 * @param buf the buffer
 * @param[out] vaddr the mapping
 * @return 0 or a negative errno from mmap (-ENOMEM...)
 */
int dmabuf_backing_vmap(struct dmabuf *buf, void **vaddr);

/**
 * The usual body of ops->vunmap.
 *
 * @param buf the buffer
 * @param vaddr the address dmabuf_backing_vmap() gave
 */
void dmabuf_backing_vunmap(struct dmabuf *buf, void *vaddr);

/* ------------------------------------------------------------------------ */
/** @defgroup dma Simulated device DMA                                       */
/* ------------------------------------------------------------------------ */

/** Why a device access faulted. */
enum dmabuf_fault_reason {
	DMABUF_FAULT_UNMAPPED = 1,	/**< no live mapping covers the address */
	DMABUF_FAULT_AFTER_UNMAP = 2,	/**< covered by a mapping since unmapped */
	DMABUF_FAULT_DIRECTION = 3,	/**< read of FROM_DEVICE / write of TO_DEVICE */
	DMABUF_FAULT_READ_ONLY = 4,	/**< write to a read-only buffer */
	/** through a mapping the buffer's move or revocation made stale */
	DMABUF_FAULT_STALE = 5,
};

/** One recorded fault. */
struct dmabuf_dma_fault {
	uint64_t dma_addr;	/**< device address of the access */
	uint64_t length;	/**< bytes accessed */
	bool write;		/**< a write (else a read) */
	enum dmabuf_fault_reason reason; /**< why it faulted */
};

/**
 * The device reads @p len bytes at device address @p dma_addr into @p dst,
 * through its own live mappings only (may span consecutive segments).
 * The first access to a mapped buffer maps it into this process (the
 * device map itself maps nothing).
 *
 * @param dev the device
 * @param dma_addr device address
 * @param[out] dst where the bytes go
 * @param len bytes
 * @return 0; -EFAULT on an IOMMU-style fault (nothing copied; the fault is
 *         recorded, see dmabuf_device_get_faults()); -EINVAL for NULL;
 *         the negative errno of mmap() (e.g. -ENOMEM) if the buffer cannot
 *         be mapped at the first access (nothing copied, no fault recorded)
 */
int dmabuf_dma_read(struct dmabuf_device *dev, uint64_t dma_addr, void *dst,
		    size_t len);

/**
 * The device writes @p len bytes from @p src at @p dma_addr. Same rules
 * as dmabuf_dma_read(); nothing is written on a fault.
 *
 * @param dev the device
 * @param dma_addr device address
 * @param src the bytes
 * @param len bytes
 * @return 0; -EFAULT on a fault (recorded); -EINVAL for NULL; the
 *         negative errno of mmap() if the buffer cannot be mapped at the
 *         first access (nothing written, no fault recorded)
 */
int dmabuf_dma_write(struct dmabuf_device *dev, uint64_t dma_addr,
		     const void *src, size_t len);

/**
 * Copies up to @p max recorded faults (oldest first) into @p faults and
 * clears them.
 *
 * @param dev the device
 * @param[out] faults room for @p max faults (may be NULL when max is 0)
 * @param max room in @p faults
 * @return the number of faults recorded since the last call (may exceed
 *         @p max; only the last 64 are kept), or -EINVAL
 */
int dmabuf_device_get_faults(struct dmabuf_device *dev,
			     struct dmabuf_dma_fault *faults, size_t max);

/* ------------------------------------------------------------------------ */
/** @defgroup cpu CPU access                                                 */
/* ------------------------------------------------------------------------ */

/**
 * Starts CPU access, as dma_buf_begin_cpu_access(): waits for the fences the
 * direction requires (writers for a read, everything for a write), then
 * calls ops->begin_cpu_access.
 *
 * @param buf the buffer
 * @param dir the kernel's convention: FROM_DEVICE for a CPU read (SYNC_READ),
 *        TO_DEVICE for a CPU write (SYNC_WRITE), BIDIRECTIONAL for both;
 *        NONE is -EINVAL
 * @return 0; -EINVAL; -ENOMEM at a buffer's first CPU access when its
 *         bookkeeping cannot be allocated; an errno from the op. On an
 *         imported buffer also:
 *         -ETIMEDOUT when the exporter's fences did not signal, or it kept
 *         answering -EBUSY, within fence_timeout_ms (the connection is
 *         kept), or it did not answer within call_timeout_ms (given up);
 *         -EMFILE when this process has no free fd for the fences' sync
 *         file (the connection is kept); -ENODEV when the exporter is gone
 */
int dmabuf_begin_cpu_access(struct dmabuf *buf, enum dmabuf_direction dir);

/**
 * Ends CPU access, as dma_buf_end_cpu_access(). A BIDIRECTIONAL bracket is
 * ended by one BIDIRECTIONAL end, or by a FROM_DEVICE and a TO_DEVICE end.
 * An end without a matching begin goes to ops->end_cpu_access, which
 * decides, as in the kernel: the system, cma and deferred heaps accept it,
 * udmabuf refuses it with -EINVAL until its first begin (end_cpu_udmabuf()),
 * an exporter without the op accepts it. In strict CPU-access mode
 * (DMABUF_CTX_STRICT_CPU_ACCESS) it is -EINVAL with a log line instead.
 * A bracket still open when the buffer is released is ended then, with a
 * log line, before ops->release.
 *
 * @param buf the buffer
 * @param dir the direction of the begin it ends
 * @return 0; -EINVAL for a bad direction or, in strict mode, an end without
 *         a matching begin; an errno from ops->end_cpu_access (the
 *         bracket is closed anyway)
 */
int dmabuf_end_cpu_access(struct dmabuf *buf, enum dmabuf_direction dir);

/**
 * Maps a page range of the buffer for the CPU, as dma_buf_mmap().
 *
 * @param buf the buffer
 * @param offset byte offset, page multiple
 * @param len bytes, non-zero; rounded up to pages
 * @param prot PROT_READ and/or PROT_WRITE
 * @param[out] addr the mapping, released with dmabuf_munmap(); it keeps the
 *        buffer alive as a vma keeps a dma-buf file (for a udmabuf, only
 *        until dmabuf_munmap(), not a plain munmap())
 * @return 0; -EINVAL for an unaligned offset, a range beyond the buffer,
 *         bad prot, or an exporter without ops->mmap; -EACCES for
 *         PROT_WRITE on a read-only buffer and for any mapping of a
 *         write-only one; -EMFILE/-ENFILE when the dma-buf file must be
 *         opened (not handed out before); -ENOMEM when the mapping's
 *         bookkeeping cannot be allocated; an errno from ops->mmap or mmap
 */
int dmabuf_mmap(struct dmabuf *buf, uint64_t offset, uint64_t len, int prot,
		void **addr);

/**
 * Undoes dmabuf_mmap().
 *
 * @param buf the buffer
 * @param addr the mapping's address
 * @param len the length given to dmabuf_mmap()
 * @return 0; -EINVAL if addr/len is not a live mapping made by dmabuf_mmap()
 *         for this buffer
 */
int dmabuf_munmap(struct dmabuf *buf, void *addr, uint64_t len);

/**
 * Maps the whole buffer, as dma_buf_vmap(); refcounted: every call returns
 * the same address until the last dmabuf_vunmap().
 *
 * @param buf the buffer
 * @param[out] vaddr the mapping
 * @return 0; -EINVAL without ops->vmap; -ENOMEM at a buffer's first CPU
 *         access when its bookkeeping cannot be allocated; an errno from it
 */
int dmabuf_vmap(struct dmabuf *buf, void **vaddr);

/**
 * Drops one vmap.
 *
 * @param buf the buffer
 * @param vaddr the address dmabuf_vmap() gave
 * @return 0; -EINVAL if vaddr is not the buffer's vmap address or there is
 *         no vmap left
 */
int dmabuf_vunmap(struct dmabuf *buf, void *vaddr);

/** DMA_BUF_IOCTL_SYNC flags: CPU reads (DMA_BUF_SYNC_READ). */
#define DMABUF_SYNC_READ (1u << 0)
/** CPU writes (DMA_BUF_SYNC_WRITE). */
#define DMABUF_SYNC_WRITE (2u << 0)
/** CPU reads and writes (DMA_BUF_SYNC_RW). */
#define DMABUF_SYNC_RW (DMABUF_SYNC_READ | DMABUF_SYNC_WRITE)
/** Begin CPU access (DMA_BUF_SYNC_START). */
#define DMABUF_SYNC_START (0u << 2)
/** End CPU access (DMA_BUF_SYNC_END). */
#define DMABUF_SYNC_END (1u << 2)
/** Every valid flag bit (DMA_BUF_SYNC_VALID_FLAGS_MASK). */
#define DMABUF_SYNC_VALID_FLAGS_MASK (DMABUF_SYNC_RW | DMABUF_SYNC_END)

/**
 * The DMA_BUF_IOCTL_SYNC equivalent on an fd: START begins and END ends CPU
 * access for the buffer behind @p fd, a buffer this context exported or
 * imported (an orphan too: the fd is the caller's reference). Errors come
 * in the ioctl's order: the fd, the file, then the flags.
 *
 * @param ctx the context that exported or imported the buffer
 * @param fd borrowed
 * @param flags DMABUF_SYNC_START or DMABUF_SYNC_END with READ, WRITE or RW
 * @return 0; -EINVAL for a dead @p ctx; -EBADF for a bad or O_PATH fd (the
 *         ioctl's fdget()); -ENOTTY for a file that is not a dma-buf (it has
 *         no such ioctl); -EINVAL for a libdmabuf buffer of another context
 *         (dmabuf_get() it first), for flags outside
 *         DMABUF_SYNC_VALID_FLAGS_MASK or with neither READ nor WRITE; an
 *         errno of dmabuf_begin_cpu_access() or dmabuf_end_cpu_access()
 */
int dmabuf_fd_sync(struct dmabuf_ctx *ctx, int fd, uint64_t flags);

/* ------------------------------------------------------------------------ */
/** @defgroup heap Heaps (dma-heap and udmabuf)                              */
/* ------------------------------------------------------------------------ */

/**
 * Allocates from a built-in heap, as DMA_HEAP_IOCTL_ALLOC. The memory is
 * zeroed. Heaps: "system" (scattered frames), "cma" (one contiguous run from
 * the reserved region), "deferred" (frames chosen at first map to satisfy
 * every attached device).
 *
 * @param ctx the context the buffer is exported in
 * @param heap the heap's name
 * @param len bytes, rounded up to the page size
 * @param fd_flags O_RDWR, O_RDONLY or O_WRONLY (the file's access mode, as
 *        the kernel's heaps give it), optionally | O_CLOEXEC
 * @param heap_flags must be 0
 * @return a new buffer fd owned by the caller; -EINVAL for len 0, fd_flags
 *         outside O_ACCMODE|O_CLOEXEC, non-zero heap_flags; -ENOENT for an
 *         unknown heap (the open() of `/dev/dma_heap/<name>` that would fail,
 *         so it comes before the other checks); -ENOMEM when the heap cannot satisfy the request;
 *         -EMFILE/-ENFILE/-ENOSPC from the kernel (fds, the release's inotify watch)
 */
int dmabuf_heap_alloc(struct dmabuf_ctx *ctx, const char *heap, uint64_t len,
		      uint32_t fd_flags, uint64_t heap_flags);

/** udmabuf flags, as UDMABUF_FLAGS_CLOEXEC. */
#define DMABUF_UDMABUF_FLAGS_CLOEXEC 0x01

/** One range of a memfd, as struct udmabuf_create_item. */
struct dmabuf_udmabuf_item {
	int memfd;		/**< borrowed memfd, same seal rules as dmabuf_udmabuf_create() */
	uint32_t pad;		/**< 0 */
	uint64_t offset;	/**< page multiple */
	uint64_t size;		/**< page multiple, non-zero */
};

/** Most items in one list, as udmabuf's list_limit. */
#define DMABUF_UDMABUF_LIST_LIMIT 1024
/** Largest udmabuf, as udmabuf's default size_limit_mb (64 MiB). */
#define DMABUF_UDMABUF_SIZE_LIMIT (64ull << 20)

/**
 * Wraps a range of the caller's memfd as a buffer, as UDMABUF_CREATE. The
 * buffer sees the caller's pages (through dmabuf_mmap()/dmabuf_vmap() and
 * device DMA).
 *
 * @param ctx the context the buffer is exported in
 * @param memfd borrowed; must have F_SEAL_SHRINK and neither F_SEAL_WRITE nor
 *        F_SEAL_FUTURE_WRITE
 * @param flags DMABUF_UDMABUF_FLAGS_CLOEXEC or 0; other bits are ignored, as
 *        udmabuf_create() ignores them in Linux 6.12. The fd is close-on-exec
 *        in every case (the library's rule for every fd it returns).
 * @param offset byte offset in the memfd, page multiple
 * @param size bytes, page multiple, non-zero
 * @return a new buffer fd owned by the caller; -EBADFD if memfd is not a
 *         memfd or not an open fd (the driver's fget() failure, also for an
 *         O_PATH fd); -EINVAL for bad seals,
 *         unaligned or zero offset/size, a range beyond the memfd, or a
 *         size over DMABUF_UDMABUF_SIZE_LIMIT
 */
int dmabuf_udmabuf_create(struct dmabuf_ctx *ctx, int memfd, uint32_t flags,
			  uint64_t offset, uint64_t size);

/**
 * Several memfd ranges as one buffer, as UDMABUF_CREATE_LIST. Same rules
 * per item.
 *
 * @param ctx the context the buffer is exported in
 * @param flags as for dmabuf_udmabuf_create()
 * @param items the ranges (their memfds borrowed), in buffer order
 * @param count how many
 * @return a new buffer fd owned by the caller; the errnos of
 *         dmabuf_udmabuf_create() for any item; -EINVAL for count 0 or over
 *         DMABUF_UDMABUF_LIST_LIMIT, or a total over
 *         DMABUF_UDMABUF_SIZE_LIMIT
 */
int dmabuf_udmabuf_create_list(struct dmabuf_ctx *ctx, uint32_t flags,
			       const struct dmabuf_udmabuf_item *items,
			       uint32_t count);

/* ------------------------------------------------------------------------ */
/** @defgroup testing Hooks for tests: settle, live objects, fault injection */
/* ------------------------------------------------------------------------ */

/**
 * Handles events until nothing is pending in @p ctx: no event ready on its
 * fd (release events, peers' messages and connections), no release probe
 * waiting to be retried (the kernel sends a close event before it drops the
 * file's lock, so a probe may have to be repeated), and every buffer whose
 * last reference, fd and mapping are already gone released (ops->release
 * run). A holder that still has an fd, a mapping or a reference keeps its
 * buffer; settle does not wait for it. This replaces a test's loop of
 * dmabuf_ctx_dispatch_timeout() calls waiting for a release.
 *
 * @param ctx the context
 * @param timeout_ms the bound, >= 0, or -1 for no bound
 * @return the number of events handled (>= 0); -ETIMEDOUT when something
 *         was still pending after @p timeout_ms (what was handled is kept);
 *         -EINVAL for a bad context or a timeout below -1; a negative errno
 *         of dmabuf_ctx_dispatch()
 */
int dmabuf_ctx_settle(struct dmabuf_ctx *ctx, int timeout_ms);

/** What a struct dmabuf_live_object describes. */
enum dmabuf_live_type {
	/** A buffer the caller holds a reference to (exported or imported):
	 * a leak at dmabuf_ctx_destroy(). */
	DMABUF_LIVE_BUFFER = 1,
	/** A buffer without references whose file is still open (an fd, a
	 * mapping, a file in flight, or a peer's import): released when the
	 * last holder lets go. */
	DMABUF_LIVE_BUFFER_FILE = 2,
	/** A device not destroyed: a leak at dmabuf_ctx_destroy(). */
	DMABUF_LIVE_DEVICE = 3,
	/** An attachment of one of this context's devices, not detached. */
	DMABUF_LIVE_ATTACHMENT = 4,
	/** A mapped sg table, not unmapped. */
	DMABUF_LIVE_MAPPING = 5,
};

/** One live object, as dmabuf_ctx_for_each_live() reports it. */
struct dmabuf_live_object {
	/** sizeof() the struct as the library fills it: read only the
	 * fields it covers (DMABUF_STRUCT_V1 layout: all fields below). */
	uint32_t struct_size;
	/** What the object is. */
	enum dmabuf_live_type type;
	/** The object: a struct dmabuf, dmabuf_device, dmabuf_attachment or
	 * dmabuf_sg_table pointer, for comparison only. */
	const void *object;
	/** Buffers, attachments and mappings: the exporter's name; devices:
	 * the device's name. */
	char name[DMABUF_NAME_LEN];
	/** Buffers, attachments and mappings: the buffer's name ("" if
	 * none); devices: "". */
	char buf_name[DMABUF_NAME_LEN];
	/** Attachments and mappings: the device's name; otherwise "". */
	char device[DMABUF_NAME_LEN];
	/** Buffers, attachments, mappings: inode of the buffer's file. */
	uint64_t inode;
	/** Buffers and mappings: size in bytes; otherwise 0. */
	uint64_t size;
	/** Buffers: references the caller holds; devices: attachments using
	 * it; attachments: their mappings; mappings: 0. */
	unsigned int count;
	/** True for a buffer imported from another context. */
	bool imported;
};

/**
 * Called once per live object by dmabuf_ctx_for_each_live(), with the
 * context lock held: it must not call into the context.
 *
 * @param data the caller's pointer
 * @param obj the object (valid during the call only)
 * @return 0 to go on, non-zero to stop (dmabuf_ctx_for_each_live() then
 *         returns that value)
 */
typedef int (*dmabuf_live_fn)(void *data, const struct dmabuf_live_object *obj);

/**
 * Reports what is still live in @p ctx: every buffer (referenced, or only
 * its file open), device, attachment of a device of this context and mapped
 * sg table, in that order; a peer's devices and attachments are not the
 * caller's and are not reported. Call dmabuf_ctx_settle() first so that
 * released buffers are gone.
 *
 * @param ctx the context
 * @param fn called per object
 * @param data passed to fn
 * @return the number of objects reported (>= 0), or the non-zero value fn
 *         stopped with; -EINVAL for a bad context or a NULL fn
 */
int dmabuf_ctx_for_each_live(struct dmabuf_ctx *ctx, dmabuf_live_fn fn, void *data);

/** The library's system calls that fault injection can fail. */
enum dmabuf_fault_call {
	DMABUF_FAULT_MEMFD_CREATE = 0,	/**< memfd_create() of a buffer, or its reuse of a released one's */
	DMABUF_FAULT_REOPEN = 1,	/**< open() of a memfd's /proc/self/fd link */
	DMABUF_FAULT_MMAP = 2,		/**< mmap() of a buffer or backing */
	DMABUF_FAULT_INOTIFY_ADD_WATCH = 3, /**< the release watch of an export */
	DMABUF_FAULT_DUP = 4,		/**< the new fd of dmabuf_fd() */
	DMABUF_FAULT_SENDMSG = 5,	/**< sendmsg() to a peer */
	DMABUF_FAULT_RECVMSG = 6,	/**< recvmsg() from a peer */
	DMABUF_FAULT_SOCKET = 7,	/**< socket() of an endpoint or connection */
	DMABUF_FAULT_ALLOC = 8,		/**< allocation of an attachment, a received page list, a context's frame bitmap (its first frame allocation), or an exporter's record of a peer's mapping (one made ahead or at its MAP) */
	DMABUF_FAULT_CALL_COUNT = 9,	/**< number of calls above */
};

/**
 * Makes the @p nth next call of @p call (1: the very next) in this process
 * fail with @p err, once; the call then returns -err as the kernel's would.
 * Process-wide, for every context; meant for single-threaded tests.
 *
 * @param call which call
 * @param nth 1 for the next call, 2 for the one after, ...; 0 disarms
 * @param err the errno to fail with, > 0 (ignored when nth is 0)
 * @return 0; -EINVAL for an unknown call or err <= 0 with nth > 0
 */
int dmabuf_fault_inject(enum dmabuf_fault_call call, unsigned int nth, int err);

/**
 * Starts or stops counting the calls of every enum dmabuf_fault_call
 * (dmabuf_fault_get_count()); starting resets the counts. Counting costs
 * an atomic increment per call, so it is off by default.
 *
 * @param on true to count
 */
void dmabuf_fault_set_counting(bool on);

/**
 * @param call which call
 * @return how often @p call was attempted since counting started (an
 *         injected failure included); 0 for an unknown call or while
 *         counting is off
 */
uint64_t dmabuf_fault_get_count(enum dmabuf_fault_call call);

/** Disarms every injected fault and stops counting. */
void dmabuf_fault_reset(void);

#ifdef __cplusplus
}
#endif
