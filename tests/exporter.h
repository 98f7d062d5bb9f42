/* SPDX-License-Identifier: MIT */
/*
 * A test exporter whose ops count their calls, so tests can assert exactly
 * when and how often the library calls into an exporter. Part of the test
 * helper library (tests/meson.build): the bodies are in exporter.c.
 */
#pragma once

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "dmabuf.h"
#include "harness.h"

struct dmb_peer;

struct test_exporter {
	int attach, detach, map, unmap, release, begin, end, mmap, vmap, vunmap;
	int pin, unpin;
	int refuse_attach;	/* errno ops->attach returns, 0 = accept */
	int refuse_map;
	enum dmabuf_direction last_dir;
	const struct dmabuf_device *last_dev;	/* ops->attach's last device */
};

/* The ops, each counting its calls in the struct test_exporter that is the
 * buffer's priv; attach and map can be made to refuse (refuse_attach,
 * refuse_map), the others succeed. Exposed so that a suite's own ops can
 * wrap them. */
int tx_attach(struct dmabuf *buf, struct dmabuf_attachment *att);
void tx_detach(struct dmabuf *buf, struct dmabuf_attachment *att);
int tx_map(struct dmabuf_attachment *att, enum dmabuf_direction dir,
	   struct dmabuf_sg_table **sgt);
void tx_unmap(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
	      enum dmabuf_direction dir);
void tx_release(struct dmabuf *buf);
int tx_begin(struct dmabuf *buf, enum dmabuf_direction dir);
int tx_end(struct dmabuf *buf, enum dmabuf_direction dir);
int tx_mmap(struct dmabuf *buf, uint64_t off, uint64_t len, int prot);
int tx_vmap(struct dmabuf *buf, void **vaddr);
void tx_vunmap(struct dmabuf *buf, void *vaddr);
int tx_pin(struct dmabuf_attachment *att);
void tx_unpin(struct dmabuf_attachment *att);

/* tx_ops: every op above but pin/unpin. tx_pin_ops: a pinning exporter
 * (pin/unpin), without CPU access brackets. tx_bare_ops: without attach,
 * detach, pin or unpin (as bench/bench-exporter.h): nothing on its side can
 * refuse an attach, and its buffers' memfds carry the mark of one-way
 * ATTACH (tx_fd_marked()). */
extern const struct dmabuf_ops tx_ops;
extern const struct dmabuf_ops tx_pin_ops;
extern const struct dmabuf_ops tx_bare_ops;

/* Quiet context: expected errors in tests are not printed. */
struct dmabuf_ctx *tx_ctx_new(uint32_t flags);

/* Exports a buffer with tx_ops and tx as priv; fails the test on error. */
struct dmabuf *tx_export(struct dmabuf_ctx *ctx, struct test_exporter *tx,
			 uint64_t size, int flags, enum dmabuf_alloc alloc);

/* The same with @ops, O_RDWR and system memory. */
struct dmabuf *tx_export_ops(struct dmabuf_ctx *ctx, struct test_exporter *tx,
			     const struct dmabuf_ops *ops, uint64_t size);

/* Whether the memfd behind @fd carries the one-way ATTACH mark (its
 * exporter has no attach and no pin op: dmb_memfd_attach_known()). */
bool tx_fd_marked(int fd);

/* The one peer (an importer process) of @ctx's endpoint; fails the test
 * when it has none. */
struct dmb_peer *tx_only_peer(struct dmabuf_ctx *ctx);

/* Another thread that dispatches ctx, dmabuf_ctx_dispatch_timeout(ctx,
 * timeout_ms) in a loop, from tx_dispatcher_start() to tx_dispatcher_stop(),
 * which returns how many of those dispatches failed. Both fail the test
 * when the thread cannot be made or joined. */
struct tx_dispatcher {
	struct dmabuf_ctx *ctx;
	int timeout_ms;
	atomic_bool stop;
	int errors;
	pthread_t thread;
};
void tx_dispatcher_start(struct tx_dispatcher *d);
int tx_dispatcher_stop(struct tx_dispatcher *d);

/* Forks fn(arg) as an importer process (harness_fork()) with one end of a
 * new SOCK_SEQPACKET pair, put in *child_sock (a field of *arg) before the
 * fork and closed here after it, and sends it @buf's fd with the byte 'f'
 * (dmabuf_send_fd). Returns the pid; *sock is this side's end. Fails the
 * test on error. */
pid_t tx_fork_importer(struct dmabuf *buf, int (*fn)(void *arg), void *arg,
		       int *child_sock, int *sock);

/* In an importer process (tx_fork_importer()): a context, an IOMMU device
 * named @dev_name, and the buffer of the fd received (with one byte) on
 * @sock, whose fd it returns; a child_check() failure on error. */
int tx_child_import(int sock, const char *dev_name, struct dmabuf_ctx **ctx,
		    struct dmabuf_device **dev, struct dmabuf **buf);

/* Whether @att, an importer's attachment, was answered by the importer
 * itself (one-way ATTACH: its remote id has DMB_WIRE_ONE_WAY_ATT_BITS). */
bool tx_one_way_id(const struct dmabuf_attachment *att);

/* A device; fails the test on error. */
struct dmabuf_device *tx_device(struct dmabuf_ctx *ctx, const char *name,
				unsigned int bits, uint32_t flags,
				uint64_t max_seg);

/* Waits for one byte on sock (a dmabuf_send_fd() message of the other
 * process), running dmabuf_ctx_dispatch(serve) between 5 ms polls when
 * serve is not NULL (an exporter serving its importer meanwhile). Closes an
 * fd that came with it. Returns the byte, or -1 on EOF, a message that is
 * not one byte, or after 60 s. */
int tx_wait_byte(int sock, struct dmabuf_ctx *serve);
