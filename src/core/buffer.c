/* SPDX-License-Identifier: MIT */
/*
 * Buffers: export, the dma-buf file, lookup by inode, references.
 *
 * The dma-buf file is one open file description (OFD) of a sealed memfd,
 * made by reopening the memfd through /proc/self/fd with the buffer's
 * access mode when it first leaves the library. dmabuf_fd() hands out dups
 * of that OFD, exactly as dma_buf_fd() installs the same struct file. The
 * memfd's own OFD is the library's: its mappings (which must not keep the
 * dma-buf file alive) and the release probe (release.c). A buffer never
 * shared holds that one fd only.
 */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bsd/string.h>

#include "private.h"
#include "dmabuf-fence.h"

static int inode_cmp(const struct dmabuf *a, const struct dmabuf *b)
{
	if (a->key.dev != b->key.dev)
		return a->key.dev < b->key.dev ? -1 : 1;
	return a->key.ino < b->key.ino ? -1 : a->key.ino > b->key.ino;
}

static int wd_cmp(const struct dmabuf *a, const struct dmabuf *b)
{
	return a->wd < b->wd ? -1 : a->wd > b->wd;
}

RB_GENERATE(dmb_buf_tree, dmabuf, inode_node, inode_cmp)
RB_GENERATE(dmb_wd_tree, dmabuf, wd_node, wd_cmp)

struct dmabuf_ctx *dmb_buf_lock_any(const struct dmabuf *buf)
{
	return buf ? dmb_obj_lock_ctx(buf, DMB_OBJ_BUFFER, &buf->ctx) : NULL;
}

struct dmabuf_ctx *dmb_buf_lock(const struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock_any(buf);

	if (ctx && buf->state != DMB_BUF_LIVE) {
		dmb_err(ctx, "buffer %s (ino %lu) used after its last dmabuf_put()",
			buf->exp_name, (unsigned long)buf->key.ino);
		dmb_unlock(ctx);
		return NULL;
	}
	return ctx;
}

int dmb_export_validate(const struct dmabuf_export_info *info)
{
	const struct dmabuf_ops *ops;

	if (!info || !info->ops || !info->priv)
		return -EINVAL;
	ops = info->ops;
	if (!ops->map || !ops->unmap || !ops->release)
		return -EINVAL;
	if (!ops->pin != !ops->unpin)
		return -EINVAL;
	if (!info->size || !DMB_ALIGNED(info->size, DMB_PAGE_SIZE))
		return -EINVAL;
	if (info->flags & ~(O_ACCMODE | O_CLOEXEC))
		return -EINVAL;
	/* O_ACCMODE itself (3) is no access mode. */
	if ((info->flags & O_ACCMODE) == O_ACCMODE)
		return -EINVAL;
	if (info->alloc != DMABUF_ALLOC_SYSTEM && info->alloc != DMABUF_ALLOC_CONTIGUOUS &&
	    info->alloc != DMABUF_ALLOC_DEFERRED)
		return -EINVAL;
	return 0;
}

/* The prefix new_memfd() gives every buffer's memfd, as /proc/self/fd
 * shows it. */
#define MEMFD_PREFIX "/memfd:dmabuf:"

bool dmb_buf_fd_is_named(int fd)
{
	char path[64], target[sizeof(MEMFD_PREFIX)];
	ssize_t len;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	len = readlink(path, target, sizeof(target));
	return len == (ssize_t)sizeof(target) &&
	       !memcmp(target, MEMFD_PREFIX, sizeof(MEMFD_PREFIX) - 1);
}

/* Cleared once memfd_create() refused the flag (a kernel before 6.3, or
 * MFD_EXEC under vm.memfd_noexec = 2): not asked again. */
static atomic_bool memfd_exec_ok = true, memfd_noexec_ok = true;

/* @mark: in, the exporter has no attach and no pin op; out, the file
 * carries the mark (dmb_memfd_attach_known()). */
static int new_memfd(const char *exp_name, const char *endpoint, uint64_t size,
		     bool *mark)
{
	const unsigned int flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	atomic_bool *ok = *mark ? &memfd_noexec_ok : &memfd_exec_ok;
	char name[128];
	int fd = -1, err;

	/* The name tells any holder of the fd that this is a libdmabuf
	 * buffer (and, with cross-process sharing, where its exporter is). */
	snprintf(name, sizeof(name), "dmabuf:%s@%s", exp_name, endpoint);
	if (atomic_load_explicit(ok, memory_order_relaxed)) {
		fd = memfd_create(name, flags | (*mark ? MFD_NOEXEC_SEAL : MFD_EXEC));
		/* Only a refused flag falls back to a plain memfd: under
		 * vm.memfd_noexec = 1 that one is sealed too, so after any
		 * other failure (EMFILE, ENOMEM) a buffer with attach ops
		 * would carry the mark. */
		if (fd < 0 && errno != EINVAL && errno != EACCES)
			return -errno;
		if (fd < 0)
			atomic_store_explicit(ok, false, memory_order_relaxed);
	}
	if (fd < 0) {
		*mark = false;
		fd = memfd_create(name, flags);
	}
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void buf_free(struct dmabuf_ctx *ctx, struct dmabuf *buf)
{
	if (buf->spare)
		ctx->nspare--;
	if (buf->resv)
		dmabuf_resv_destroy(buf->resv);
	dmb_backing_fini(ctx->physmem, &buf->backing);
	if (buf->file_fd >= 0)
		close(buf->file_fd);
	if (buf->probe_fd >= 0)
		close(buf->probe_fd);
	dmb_buf_extras_free(buf);
	free(buf);
}

static bool spares_drop(struct dmabuf_ctx *ctx, int err);

int dmb_buf_create(struct dmabuf_ctx *ctx, const struct dmabuf_export_info *info,
		   struct dmb_backing *backing, struct dmabuf **out)
{
	struct dmabuf *buf;
	struct stat st;
	int rdonly = (info->flags & O_ACCMODE) == O_RDONLY;
	int wronly = (info->flags & O_ACCMODE) == O_WRONLY;
	int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
	/* Nothing on this side can refuse an attach the importer's core
	 * accepted: importers in other processes need not wait for it. */
	/* Nor is an O_WRONLY buffer's memfd marked: an importer speaking
	 * version 6 takes a marked file for a read-write or (sealed against
	 * writes) read-only buffer without asking its access mode. */
	bool mark = !info->ops->attach && !info->ops->pin && !wronly;
	bool recycled;
	const char *endpoint;
	int ret;

	/* Never more than the (simulated) RAM, as the system heap's
	 * totalram check: -ENOMEM before a memfd size that ftruncate() would
	 * refuse with -EINVAL (>= 2^63) or a huge mapping is attempted. */
	if (info->size > ctx->config.phys_size)
		return -ENOMEM;
	buf = calloc(1, sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	buf->ctx = ctx;
	buf->exp_name = "";
	buf->file_fd = buf->probe_fd = buf->wd = -1;
	buf->ops = info->ops;
	buf->priv = info->priv;
	buf->size = info->size;
	buf->flags = info->flags & O_ACCMODE;
	buf->alloc = info->alloc;
	buf->refcount = 1;
	buf->state = DMB_BUF_LIVE;
	LIST_INIT(&buf->attachments);
	ret = dmb_buf_set_exp_name(buf, info->exp_name ? info->exp_name : "unknown");
	if (ret < 0)
		goto fail;

	/* A udmabuf's file is a handle of its own: its bytes live in the
	 * caller's memfds, which one file cannot present. */
	ret = dmb_remote()->endpoint_name(ctx, &endpoint);
	if (ret < 0)
		goto fail;
	/* The buffer's allocation, new or recycled: one fault point. */
	if ((ret = -dmb_sys_fail(DMB_SYS_MEMFD_CREATE)) < 0)
		goto fail;
	buf->recyclable = !backing && buf->flags == O_RDWR &&
			  !(ctx->config.flags & DMABUF_CTX_NO_RECYCLE);
	buf->mark_req = mark;
	recycled = buf->recyclable && dmb_recycle_take(ctx, buf);
	if (!recycled) {
		ret = new_memfd(buf->exp_name, endpoint, backing ? 0 : info->size, &mark);
		/* Out of fds: the kept memfds are the first to go, then the
		 * spare fds, as at a hand-out. */
		if ((ret == -EMFILE || ret == -ENFILE) &&
		    (dmb_recycle_drop(ctx) | spares_drop(ctx, ret))) {
			mark = !info->ops->attach && !info->ops->pin && !wronly;
			ret = new_memfd(buf->exp_name, endpoint, backing ? 0 : info->size, &mark);
		}
		if (ret < 0)
			goto fail;
		buf->probe_fd = ret;
	}

	if (backing) {
		buf->backing = *backing;
		*backing = (struct dmb_backing){ 0 };
		buf->handle_only = true;
		ret = dmb_backing_map_cpu(&buf->backing, !rdonly);
	} else {
		ret = dmb_backing_init_memfd(&buf->backing, buf->probe_fd, info->size);
		/* The exporter's writable mappings exist before a read-only
		 * buffer is sealed, so only the exporter can write it. A
		 * read-write buffer is mapped when first needed (vmap, DMA):
		 * most are never touched by the library. */
		if (ret == 0 && rdonly)
			ret = dmb_backing_map_view(&buf->backing);
	}
	if (ret < 0)
		goto fail;
	if (rdonly || backing)
		seals |= F_SEAL_FUTURE_WRITE;
	/* A recycled memfd has its seals, and its inode is the key. */
	if (!recycled && fcntl(buf->probe_fd, F_ADD_SEALS, seals) < 0) {
		ret = -errno;
		goto fail;
	}
	if (!recycled && fstat(buf->probe_fd, &st) < 0) {
		ret = -errno;
		goto fail;
	}
	if (!recycled) {
		buf->key.dev = st.st_dev;
		buf->key.ino = st.st_ino;
	}

	ret = dmabuf_resv_new(&buf->resv);
	if (ret < 0)
		goto fail;

	if (buf->alloc != DMABUF_ALLOC_DEFERRED) {
		ret = dmb_backing_alloc(ctx, buf);
		if (ret < 0)
			goto fail;
	}
	ret = dmb_obj_add(buf, DMB_OBJ_BUFFER);
	if (ret < 0)
		goto fail;
	RB_INSERT(dmb_buf_tree, &ctx->by_inode, buf);
	if (buf->wd >= 0)
		RB_INSERT(dmb_wd_tree, &ctx->by_wd, buf); /* a recycled one's */
	ctx->newest = buf;
	ctx->stats.buffers_live++;
	dmb_dbg(ctx, "export %s: %llu bytes, %s, ino %lu", buf->exp_name,
		(unsigned long long)buf->size, rdonly ? "read-only" : wronly ? "write-only" : "read-write",
		(unsigned long)buf->key.ino);
	*out = buf;
	return 0;

fail:
	if (backing && buf->handle_only) {
		/* Give the ranges back to the caller, who cleans them up. */
		*backing = buf->backing;
		if (backing->map)
			munmap(backing->map, backing->size);
		backing->map = NULL;
		/* The frames are the library's, not the caller's. */
		if (backing->runs) {
			dmb_physmem_free(ctx->physmem, backing->runs, backing->nruns);
			free(backing->runs);
			backing->runs = NULL;
			backing->nruns = 0;
		}
		buf->backing = (struct dmb_backing){ 0 };
	}
	buf_free(ctx, buf);
	return ret;
}

DMABUF_EXPORT int dmabuf_export(struct dmabuf_ctx *ctx,
				const struct dmabuf_export_info *info,
				struct dmabuf **out)
{
	struct dmabuf_export_info in;
	int ret;

	if (!out || !dmb_ctx_usable(ctx) || !info)
		return -EINVAL;
	ret = dmb_struct_in(&in, sizeof(in), info, DMB_V1_SIZE(struct dmabuf_export_info));
	if (ret == 0)
		ret = dmb_export_validate(&in);
	dmb_lock(ctx);
	if (ret < 0)
		dmb_err(ctx, "dmabuf_export(%s): invalid export info (size field, ops, priv, size or flags)",
			info->exp_name ? info->exp_name : "?");
	else
		ret = dmb_buf_create(ctx, &in, NULL, out);
	dmb_unlock(ctx);
	return ret;
}

/* Called by release.c (or context teardown) once the file is gone. */
void dmb_buf_destroy(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = buf->ctx;

	RB_REMOVE(dmb_buf_tree, &ctx->by_inode, buf);
	if (ctx->newest == buf)
		ctx->newest = NULL;
	dmb_obj_del(buf);
	ctx->stats.buffers_live--;
	buf_free(ctx, buf);
}

/* Where the library's own mappings come from: the private OFD, or fresh
 * OFDs of the dma-buf file while there is none. */
static void backing_fd_update(struct dmabuf *buf)
{
	struct dmb_backing_range *r = &buf->backing.ranges[0];

	if (buf->handle_only)
		return; /* the caller's memfds */
	r->reopen = buf->probe_fd < 0;
	r->fd = r->reopen ? buf->file_fd : buf->probe_fd;
}

/* file_fd or probe_fd changed: where the mappings come from, and whether
 * the buffer holds a spare fd (both), counted in ctx->nspare. */
static void fds_changed(struct dmabuf *buf)
{
	bool spare = buf->file_fd >= 0 && buf->probe_fd >= 0 && !buf->imported;

	if (spare != buf->spare) {
		buf->spare = spare;
		if (spare)
			buf->ctx->nspare++;
		else
			buf->ctx->nspare--;
	}
	backing_fd_update(buf);
}

static void spare_close(struct dmabuf *buf)
{
	close(buf->probe_fd);
	buf->probe_fd = -1;
	/* A probe reopened later is no memfd to recycle. */
	buf->recyclable = false;
	fds_changed(buf);
}

/* How many buffers may hold a spare fd: 1/16 of RLIMIT_NOFILE's soft
 * limit (read once, at the first share). */
static unsigned long spare_budget(struct dmabuf_ctx *ctx)
{
	if (!ctx->nofile) {
		struct rlimit rl;

		ctx->nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
				      ? (unsigned long)rl.rlim_cur : 1024ul * 1024;
	}
	return ctx->nofile / 16;
}

/* Closes spare fds until at most `keep` buffers hold one; buf's first (the
 * one being shared or revived), then others in inode order. */
static void spares_trim(struct dmabuf_ctx *ctx, struct dmabuf *buf, unsigned long keep)
{
	struct dmabuf *b;

	if (buf && buf->spare && ctx->nspare > keep)
		spare_close(buf);
	if (ctx->nspare <= keep)
		return;
	RB_FOREACH(b, dmb_buf_tree, &ctx->by_inode) {
		if (b->spare)
			spare_close(b);
		if (ctx->nspare <= keep)
			break;
	}
}

/*
 * A shared buffer with references keeps its private OFD too: its last put
 * then needs no reopen, and sharing it closes nothing (two syscalls less
 * per buffer life). Up to 1/16 of the fd limit of buffers may do so; the
 * one that goes past it trims them to half of that in one walk of the
 * buffers (amortised: one walk per 1/32 of the limit of shares), so the
 * cost per operation does not grow with the number of live buffers and
 * the limit still bounds the buffers at about 15/16 of it, not at half.
 */
static void spare_check(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	unsigned long budget = spare_budget(ctx);

	if (ctx->nspare > budget)
		spares_trim(ctx, budget ? NULL : buf, budget / 2);
}

/* Out of fds: the kept memfds and the spare fds are the first to go. True
 * if any went. */
static bool spares_drop(struct dmabuf_ctx *ctx, int err)
{
	bool any;

	if (err != -EMFILE && err != -ENFILE)
		return false;
	any = dmb_recycle_drop(ctx);
	if (!ctx->nspare)
		return any;
	spares_trim(ctx, NULL, 0);
	return true;
}

bool dmb_buf_spares_drop(struct dmabuf_ctx *ctx, int err)
{
	return spares_drop(ctx, err);
}

int dmb_ctx_fd_dir(struct dmabuf_ctx *ctx)
{
	dmb_assert_locked(ctx);
	if (ctx->fd_dir == -1) {
		/* Best effort: without it every reopen walks /proc/self/fd/N. */
		ctx->fd_dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		/* Out of fds: asked again next time, else never again. */
		if (ctx->fd_dir < 0)
			ctx->fd_dir = errno == EMFILE || errno == ENFILE ? -1 : -2;
	}
	return ctx->fd_dir >= 0 ? ctx->fd_dir : -1;
}

static int share(struct dmabuf *buf, bool trim)
{
	int fd, err;

	/* A proxy's file_fd is its dup of the exporter's file. */
	if (buf->shared || buf->imported)
		return 0;
	/* Its last put may need a release watch: the first share of the
	 * context makes what that takes, or fails here, cleanly. */
	err = dmb_release_sources(buf->ctx);
	/* Out of fds: the kept memfds go first, as below. */
	if (err < 0 && spares_drop(buf->ctx, err))
		err = dmb_release_sources(buf->ctx);
	if (err < 0)
		return err;
	/* A real open, whose final close inotify reports, with the buffer's
	 * access mode: a write-only file is O_WRONLY, so no holder can mmap
	 * it (do_mmap() needs FMODE_READ). */
	fd = dmb_backing_reopen_at(dmb_ctx_fd_dir(buf->ctx), buf->probe_fd, buf->flags);
	if (fd < 0 && spares_drop(buf->ctx, fd))
		fd = dmb_backing_reopen_at(dmb_ctx_fd_dir(buf->ctx), buf->probe_fd, buf->flags);
	if (fd < 0)
		return fd;
	/* Every holder of the file shares this lock; the release probe's
	 * exclusive lock succeeds only when the file is gone. */
	if (flock(fd, LOCK_SH) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	buf->file_fd = fd;
	buf->file_opened_here = true;
	buf->shared = true;
	fds_changed(buf);
	if (trim)
		spare_check(buf);
	return 0;
}

int dmb_buf_share(struct dmabuf *buf)
{
	return share(buf, true);
}

DMABUF_EXPORT int dmabuf_fd(struct dmabuf *buf, int flags)
{
	struct dmabuf_ctx *ctx;
	int fd, err;

	if (flags & ~O_CLOEXEC)
		return -EINVAL;
	ctx = dmb_buf_lock(buf);
	if (!ctx)
		return -EINVAL;
	if ((err = dmb_sys_fail(DMB_SYS_DUP))) {
		fd = -err;
	} else if ((fd = dmb_buf_share(buf)) == 0) {
		fd = fcntl(buf->file_fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			fd = -errno;
		if (fd < 0 && spares_drop(ctx, fd)) {
			fd = fcntl(buf->file_fd, F_DUPFD_CLOEXEC, 0);
			if (fd < 0)
				fd = -errno;
		}
	}
	if (fd >= 0 && !buf->publish_offered && !buf->imported && ctx->endpoint) {
		buf->publish_offered = true;
		if (dmb_remote() && dmb_remote()->publish)
			dmb_remote()->publish(buf);
	}
	dmb_unlock(ctx);
	return fd;
}

/* Looks up the buffer of an fd's inode. -EBADF, -EINVAL, or 0 with *found
 * (NULL when the inode is not one of ours). Only a real open file counts:
 * an O_PATH fd of the buffer's inode is no holder of the dma-buf file (it
 * takes no flock and keeps nothing alive), and the kernel's fget() and
 * fdget() refuse it with -EBADF (dma_buf_get(), the ioctls). */
int dmb_buf_lookup(struct dmabuf_ctx *ctx, int fd, struct stat *st,
		   struct dmabuf **found)
{
	int fl;

	return dmb_buf_lookup_fl(ctx, fd, st, &fl, found);
}

/* The lookups' common end: fd's stat into st, the buffer of its inode
 * (NULL for none) into *found; -EINVAL for a file that is not regular. */
static int lookup_inode(struct dmabuf_ctx *ctx, int fd, struct stat *st,
			struct dmabuf **found)
{
	struct dmabuf key;

	if (fstat(fd, st) < 0)
		return -EBADF;
	if (!S_ISREG(st->st_mode))
		return -EINVAL;
	key.key.dev = st->st_dev;
	key.key.ino = st->st_ino;
	*found = RB_FIND(dmb_buf_tree, &ctx->by_inode, &key);
	return 0;
}

int dmb_buf_lookup_fl(struct dmabuf_ctx *ctx, int fd, struct stat *st, int *flp,
		      struct dmabuf **found)
{
	int fl;

	if (fd < 0 || (fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_PATH))
		return -EBADF;
	*flp = fl;
	return lookup_inode(ctx, fd, st, found);
}

/* The library lets go of the dma-buf file: its own mappings come from the
 * probe OFD (release.c armed it). */
void dmb_buf_drop_file(struct dmabuf *buf)
{
	close(buf->file_fd);
	buf->file_fd = -1;
	fds_changed(buf);
}

int dmb_buf_get_ref(struct dmabuf *buf, int fd)
{
	int dupfd;

	if (buf->state == DMB_BUF_ORPHAN) {
		/* The library dropped its file reference with the last put, but
		 * the file lived on (fd is proof): hold it again, unless the
		 * library never let go of it (no probe could be opened). */
		if (buf->file_fd < 0) {
			dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
			/* Out of fds: the spare ones go first (dma_buf_get()
			 * needs no fd). */
			if (dupfd < 0 && spares_drop(buf->ctx, -errno))
				dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
			if (dupfd < 0)
				return -errno;
			/* No-op on the dma-buf file itself; a reopened file of
			 * the same memfd becomes a holder too. */
			flock(dupfd, LOCK_SH);
			/* A read-only one is invisible to the lease probe of a
			 * recyclable buffer (release.c): the flock probes it,
			 * and its memfd is not kept. */
			if (buf->recyclable) {
				int fl = fcntl(dupfd, F_GETFL);

				if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
					buf->recyclable = false;
			}
			buf->file_fd = dupfd;
			buf->file_opened_here = false;
			fds_changed(buf);
			spare_check(buf);
		}
		buf->state = DMB_BUF_LIVE;
		dmb_release_cancel(buf);
	}
	buf->refcount++;
	return 0;
}

#define GET_GUESS_SKIP 8

/*
 * The buffer whose file fd is, found with one syscall instead of the
 * F_GETFL and fstat() of dmb_buf_lookup_fl(): the one dmabuf_get() returned
 * last (a swapchain buffer coming back, the fd sent again), if fd is the
 * very open file description the library holds for it (then it is open,
 * not O_PATH, and of that inode: what the lookup would find). NULL when it
 * is not: the caller looks the fd up as before. A wrong guess costs a
 * syscall, so after one the next GET_GUESS_SKIP gets make none.
 */
static struct dmabuf *likely_get(struct dmabuf_ctx *ctx, int fd)
{
	struct dmabuf *buf = (struct dmabuf *)ctx->last_got;

	if (!buf || fd < 0)
		return NULL;
	if (ctx->get_guess_skip) {
		ctx->get_guess_skip--;
		return NULL;
	}
	if (!dmb_obj_live(buf, DMB_OBJ_BUFFER) || buf->ctx != ctx ||
	    buf->state == DMB_BUF_RELEASED || buf->file_fd < 0)
		return NULL;
	if (dmb_sys_same_file(buf->file_fd, fd))
		return buf;
	ctx->get_guess_skip = GET_GUESS_SKIP;
	return NULL;
}

/*
 * dmabuf_get()'s lookup: dmb_buf_lookup_fl() with F_GET_SEALS in place of
 * F_GETFL. Every buffer's file, this context's or another process's, is a
 * memfd, whose seals an import checks anyway; the same call refuses what
 * the F_GETFL refused: a closed fd and an O_PATH one (-EBADF: fcntl()
 * allows an O_PATH fd only F_GETFL, F_GETFD, F_SETFD and the dups). A
 * file the kernel keeps no seals for (-EINVAL) is no buffer, as the
 * import's check of the seals said before. The access mode is asked only
 * by an import whose exporter's mark does not tell it (dmb_import()).
 */
static int get_lookup(struct dmabuf_ctx *ctx, int fd, struct stat *st, int *seals,
		      struct dmabuf **found)
{
	if (fd < 0)
		return -EBADF;
	*seals = fcntl(fd, F_GET_SEALS);
	if (*seals < 0)
		return errno == EBADF ? -EBADF : -EINVAL;
	return lookup_inode(ctx, fd, st, found);
}

DMABUF_EXPORT int dmabuf_get(struct dmabuf_ctx *ctx, int fd, struct dmabuf **out)
{
	struct dmabuf *buf;
	struct stat st;
	int ret, seals;

	if (!out || !dmb_ctx_usable(ctx))
		return -EINVAL;
	dmb_lock(ctx);
	buf = likely_get(ctx, fd);
	if (!buf) {
		ret = get_lookup(ctx, fd, &st, &seals, &buf);
		if (ret < 0)
			goto out;
	}
	if (!buf) {
		/* Another context's buffer: import it from its exporter. */
		ret = dmb_remote()->import(ctx, fd, &st, seals, out);
		goto out;
	}
	ret = dmb_buf_get_ref(buf, fd);
	if (ret == 0)
		*out = buf;
out:
	if (ret == 0)
		ctx->last_got = *out;
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT struct dmabuf *dmabuf_ref(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock(buf);

	if (!ctx)
		return NULL;
	buf->refcount++;
	dmb_unlock(ctx);
	return buf;
}

int dmb_buf_fd_and_put(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock(buf);
	int fd, ret;

	if (!ctx)
		return -EINVAL;
	if (buf->refcount != 1 || buf->imported) {
		fd = dmabuf_fd(buf, O_CLOEXEC);
		dmabuf_put(buf);
		dmb_unlock(ctx);
		return fd;
	}
	/* What dmabuf_put() does at the last reference, minus the close:
	 * the library's descriptor becomes the caller's. Nobody else can
	 * have the file yet, so a failure releases the buffer. */
	ret = share(buf, false); /* the memfd's OFD is the probe */
	if (ret == 0)
		ret = dmb_release_arm(buf);
	buf->refcount = 0;
	buf->state = DMB_BUF_ORPHAN;
	if (ret < 0) {
		dmb_buf_release_now(buf);
		dmb_unlock(ctx);
		return ret;
	}
	fd = buf->file_fd;
	buf->file_fd = -1;
	fds_changed(buf);
	dmb_unlock(ctx);
	return fd;
}

/* The last library reference of an exported buffer is gone. */
static void last_put(struct dmabuf *buf)
{
	buf->state = DMB_BUF_ORPHAN;
	if (!buf->shared) {
		/* No fd or mapping of the file ever left the library (there
		 * is no file): nobody else can hold the buffer. No put closed
		 * a watched file either, so a kept watch stays. */
		dmb_buf_release_unheld(buf, false);
		return;
	}
	dmb_release_last_put(buf);
}

DMABUF_EXPORT int dmabuf_put(struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock_any(buf);

	if (!ctx) {
		dmb_err(NULL, "dmabuf_put(%p): not a live buffer (double put?)", (void *)buf);
		return -EINVAL;
	}
	if (buf->state != DMB_BUF_LIVE || buf->refcount == 0) {
		dmb_err(ctx, "dmabuf_put(%s): no reference left (double put)", buf->exp_name);
		dmb_unlock(ctx);
		return -EINVAL;
	}
	if (--buf->refcount == 0 && buf->imported) {
		/* A proxy ends with its last reference; the exporter sees
		 * the file go when the last fd does. */
		dmb_buf_release_now(buf);
	} else if (buf->refcount == 0) {
		last_put(buf);
	}
	dmb_unlock(ctx);
	return 0;
}

DMABUF_EXPORT void *dmabuf_get_priv(const struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock_any(buf);
	void *priv;

	if (!ctx)
		return NULL;
	priv = buf->priv;
	dmb_unlock(ctx);
	return priv;
}

DMABUF_EXPORT uint64_t dmabuf_get_size(const struct dmabuf *buf)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock_any(buf);
	uint64_t size;

	if (!ctx)
		return 0;
	size = buf->size;
	dmb_unlock(ctx);
	return size;
}

DMABUF_EXPORT struct dmabuf_ctx *dmabuf_get_ctx(const struct dmabuf *buf)
{
	return dmb_obj_live(buf, DMB_OBJ_BUFFER) ? buf->ctx : NULL;
}

DMABUF_EXPORT struct dmabuf_resv *dmabuf_get_resv(struct dmabuf *buf)
{
	return dmb_obj_live(buf, DMB_OBJ_BUFFER) ? buf->resv : NULL;
}

DMABUF_EXPORT int dmabuf_set_name(struct dmabuf *buf, const char *name)
{
	struct dmabuf_ctx *ctx;
	int ret;

	if (!name || strnlen(name, DMABUF_NAME_LEN) >= DMABUF_NAME_LEN)
		return -EINVAL;
	ctx = dmb_buf_lock(buf);
	if (!ctx)
		return -EINVAL;
	if (buf->imported) {
		ret = dmb_remote()->set_name(buf, name);
		dmb_unlock(ctx);
		return ret;
	}
	ret = dmb_buf_set_name(buf, name);
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_get_info(struct dmabuf *buf, struct dmabuf_info *info)
{
	struct dmabuf_ctx *ctx;
	struct dmabuf_info in;

	if (!info)
		return -EINVAL;
	ctx = dmb_buf_lock_any(buf);
	if (!ctx)
		return -EINVAL;
	memset(&in, 0, sizeof(in));
	in.size = buf->size;
	in.flags = buf->flags;
	in.inode = buf->key.ino;
	strlcpy(in.exp_name, buf->exp_name, sizeof(in.exp_name));
	strlcpy(in.name, dmb_buf_name(buf), sizeof(in.name));
	in.name_set = dmb_buf_name_set(buf);
	in.refcount = buf->refcount;
	in.attachments = buf->nattachments;
	in.mappings = buf->nmappings;
	in.vmap_count = dmb_buf_vmap_count(buf);
	in.backing_allocated = buf->backing.runs != NULL;
	in.contiguous = buf->backing.nruns == 1;
	in.imported = buf->imported;
	in.pin_count = buf->pin_count;
	in.revoked = buf->revoked;
	if (buf->imported && buf->state == DMB_BUF_LIVE) {
		/* The exporter's counts, if it is there (gone: -ENODEV, what
		 * this side knows). One that does not answer, or refused the
		 * import dmabuf_get() sent without waiting, is the caller's to
		 * hear. */
		int ret = dmb_remote()->describe(buf, &in);

		if (ret < 0 && ret != -ENODEV) {
			dmb_unlock(ctx);
			return ret;
		}
	}
	dmb_unlock(ctx);
	return dmb_struct_out(info, &in, sizeof(in), DMB_V1_UPTO(struct dmabuf_info, pin_count));
}

static _Atomic(const struct dmb_remote_hooks *) remote_hooks;

const struct dmb_remote_hooks *dmb_remote(void)
{
	return atomic_load_explicit(&remote_hooks, memory_order_acquire);
}

void dmb_remote_set_hooks(const struct dmb_remote_hooks *hooks)
{
	atomic_store_explicit(&remote_hooks, hooks, memory_order_release);
}
