/* SPDX-License-Identifier: MIT */
/*
 * Recycling of released memfds: an allocator detail of the exports with
 * library backing.
 *
 * The kernel hands a new dma-buf fresh zeroed pages; how they are found is
 * the allocator's business. When a read-write buffer the library allocated
 * is released, nothing in any process holds its file any more: the release
 * probe, a read lease on the memfd for such a buffer (release.c), proved
 * that the dma-buf file is gone (no fd, none in flight, no mapping), or the
 * file never left the library. Its memfd, already sized
 * and sealed, is then kept here with its pages dropped (PUNCH_HOLE keeps
 * the size: the next user reads zeros, and a kept memfd costs no memory),
 * and the next export of the same kind takes it instead of making one:
 * no memfd_create, ftruncate, F_ADD_SEALS or fstat. Its persistent release
 * watch stays with the inode (release.c), so that export's release arms
 * none either.
 *
 * The kind is everything a holder can tell the file by: its size, its
 * seals (only read-write buffers with library backing are kept: a
 * read-only one's F_SEAL_FUTURE_WRITE refuses the punch, a write-only
 * one's importer maps through a second description of its own that no
 * probe sees, and a udmabuf's file is a handle), the exec-seal mark of
 * one-way ATTACH, and the memfd's name (which readlink shows: the exporter
 * name and the context's endpoint, which is one per context for its life,
 * so the pool, one per context, keys on the exporter name). The inode number is reused: docs/design.md says why no
 * holder can observe it.
 *
 * At most POOL_MAX memfds per context (the oldest goes first); they are
 * the first fds to go when the process runs out (dmb_recycle_drop()), and
 * none survives a fork(): the child inherited them, so they are closed,
 * not reused, in the parent (and a child's contexts are not usable). The
 * same holds for the memfd of every buffer alive at a fork, whose fd the
 * child has as well: its release keeps none (forks_seen()).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "private.h"

#define POOL_MAX 4

struct recycled {
	int fd;		/* the memfd's own OFD, unlocked, pages punched */
	int wd;		/* its persistent watch, -1 if none */
	struct dmb_inode_key key;
	uint64_t size;
	bool mark;
	char exp_name[DMABUF_NAME_LEN];
};

struct dmb_recycle_pool {
	unsigned int n;
	struct recycled e[POOL_MAX]; /* oldest first */
};

bool dmb_recycle_drop(struct dmabuf_ctx *ctx)
{
	struct dmb_recycle_pool *pool = ctx->pool;
	bool any;

	if (!pool)
		return false;
	any = pool->n > 0;
	/* A kept watch goes with its inode (its IN_IGNORED names a wd no
	 * buffer has: ignored). */
	while (pool->n)
		close(pool->e[--pool->n].fd);
	return any;
}

/* A fork() since the context last looked gave the child a copy of every
 * fd the process had: the kept memfds are dropped, and no buffer that
 * exists now is kept at its release. Every export that could be kept
 * looks first (dmb_recycle_take()), and so does every release that could
 * keep one (dmb_buf_release_unheld()), under the context's lock, so a
 * buffer still marked recyclable had its memfd made or taken after the
 * last fork: that walk of the buffers comes once per fork. */
static void forks_seen(struct dmabuf_ctx *ctx)
{
	unsigned int forks = dmb_fork_count();
	struct dmabuf *buf;

	if (ctx->recycle_forks == forks)
		return;
	ctx->recycle_forks = forks;
	dmb_recycle_drop(ctx);
	RB_FOREACH(buf, dmb_buf_tree, &ctx->by_inode)
		buf->recyclable = false;
}

/* The pool, empty if a fork() happened since its entries were kept. */
static struct dmb_recycle_pool *pool_of(struct dmabuf_ctx *ctx)
{
	forks_seen(ctx);
	return ctx->pool;
}

void dmb_recycle_fini(struct dmabuf_ctx *ctx)
{
	dmb_recycle_drop(ctx);
	free(ctx->pool);
	ctx->pool = NULL;
}

bool dmb_recycle_take(struct dmabuf_ctx *ctx, struct dmabuf *buf)
{
	struct dmb_recycle_pool *pool = pool_of(ctx);

	if (!pool)
		return false;
	for (unsigned int i = pool->n; i-- > 0;) {
		struct recycled *e = &pool->e[i];

		if (e->size != buf->size || e->mark != buf->mark_req ||
		    strcmp(e->exp_name, buf->exp_name))
			continue;
		buf->probe_fd = e->fd;
		buf->key = e->key;
		buf->wd = e->wd;
		buf->watch_kept = e->wd >= 0;
		memmove(e, e + 1, (pool->n - i - 1) * sizeof(*e));
		pool->n--;
		dmb_dbg(ctx, "export %s: recycled ino %lu", buf->exp_name,
			(unsigned long)buf->key.ino);
		return true;
	}
	return false;
}

/* Keeps e, or closes it if it cannot be made fit for a new buffer. */
static void pool_put(struct dmabuf_ctx *ctx, struct recycled *e, bool at_put)
{
	struct dmb_recycle_pool *pool = pool_of(ctx);
	int ret;

	/* Released by a last put that probes before it arms a watch (the
	 * fds are closed before the put): a kept watch would report the
	 * next life's put's own close of the file (a wake-up and a read per
	 * buffer), so it goes with its inode. Releases by the close event
	 * (hand-offs, heap buffers) keep theirs. */
	if (e->wd >= 0 && at_put && ctx->puts_freed >= DMB_PROBE_FIRST_AFTER)
		goto drop;
	if (!pool) {
		pool = calloc(1, sizeof(*pool));
		if (!pool)
			goto drop;
		ctx->pool = pool;
	}
	/* The release was proved by the lease probe (release.c), which
	 * no holder can fool and which leaves no lock on the memfd, or the
	 * file never left the library. */
	ret = dmb_backing_punch(e->fd, e->size);
	if (ret < 0) {
		dmb_dbg(ctx, "release %s: not recycled (%s)", e->exp_name, strerror(-ret));
		goto drop;
	}
	if (pool->n == POOL_MAX) {
		close(pool->e[0].fd);
		memmove(&pool->e[0], &pool->e[1], (POOL_MAX - 1) * sizeof(pool->e[0]));
		pool->n--;
	}
	pool->e[pool->n++] = *e;
	return;
drop:
	close(e->fd);
}

void dmb_buf_release_unheld(struct dmabuf *buf, bool at_put)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	struct recycled e;
	bool keep;

	forks_seen(ctx);
	keep = buf->recyclable && buf->probe_fd >= 0;

	if (keep) {
		e.fd = buf->probe_fd;
		e.wd = buf->watch_kept ? buf->wd : -1;
		e.key = buf->key;
		e.size = buf->size;
		e.mark = buf->mark_req;
		strlcpy(e.exp_name, buf->exp_name, sizeof(e.exp_name));
		/* The buffer lets go of them: its release closes neither.
		 * Its library mappings of the memfd go with the release,
		 * before the punch. */
		buf->probe_fd = -1;
		if (e.wd >= 0) {
			RB_REMOVE(dmb_wd_tree, &ctx->by_wd, buf);
			buf->wd = -1;
			buf->watch_kept = false;
		}
	}
	dmb_buf_release_now(buf);
	if (keep)
		pool_put(ctx, &e, at_put);
}
