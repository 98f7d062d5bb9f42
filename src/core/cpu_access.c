/* SPDX-License-Identifier: MIT */
/*
 * CPU access: begin/end brackets, mmap of a range, vmap of the whole buffer,
 * and the DMA_BUF_IOCTL_SYNC equivalent on an fd.
 *
 * Strict mode (DMABUF_CTX_STRICT_CPU_ACCESS) keeps every mapping made here
 * PROT_NONE outside a bracket, so a forgotten begin_cpu_access() faults at
 * once instead of working by accident on a coherent machine.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "private.h"

static bool strict(const struct dmabuf *buf)
{
	return buf->ctx->config.flags & DMABUF_CTX_STRICT_CPU_ACCESS;
}

static unsigned int reads_open(const unsigned int open[3])
{
	return open[DMABUF_FROM_DEVICE] + open[DMABUF_BIDIRECTIONAL];
}

static unsigned int writes_open(const unsigned int open[3])
{
	return open[DMABUF_TO_DEVICE] + open[DMABUF_BIDIRECTIONAL];
}

/* What a mapping with protection `prot` may do right now. */
static int effective_prot(const struct dmabuf *buf, int prot)
{
	int allowed = 0;

	if (!strict(buf))
		return prot;
	if (!buf->cpu)
		return 0;
	if (reads_open(buf->cpu->open))
		allowed |= PROT_READ;
	if (writes_open(buf->cpu->open))
		allowed |= PROT_READ | PROT_WRITE;
	return prot & allowed;
}

static void strict_apply(struct dmabuf *buf)
{
	struct dmb_buf_cpu *c = buf->cpu;
	struct dmb_cpu_map *m;

	if (!strict(buf) || !c)
		return;
	LIST_FOREACH(m, &c->maps, link)
		mprotect(m->addr, m->len, effective_prot(buf, m->prot));
	if (c->vmap_addr)
		mprotect(c->vmap_addr, buf->size,
			 c->vmap_count ? effective_prot(buf, c->vmap_writable ?
							    PROT_READ | PROT_WRITE : PROT_READ)
				       : PROT_NONE);
}

/* The buffer's CPU access state, made at its first use; NULL if out of
 * memory. */
static struct dmb_buf_cpu *cpu_state(struct dmabuf *buf)
{
	if (!buf->cpu) {
		buf->cpu = calloc(1, sizeof(*buf->cpu));
		if (buf->cpu)
			LIST_INIT(&buf->cpu->maps);
	}
	return buf->cpu;
}

static bool dir_valid(enum dmabuf_direction dir)
{
	return dir == DMABUF_BIDIRECTIONAL || dir == DMABUF_TO_DEVICE ||
	       dir == DMABUF_FROM_DEVICE;
}

/* The kernel's convention: FROM_DEVICE = the CPU reads, TO_DEVICE = it
 * writes. */
static bool dir_reads(enum dmabuf_direction dir) { return dir != DMABUF_TO_DEVICE; }
static bool dir_writes(enum dmabuf_direction dir) { return dir != DMABUF_FROM_DEVICE; }

int dmb_cpu_begin_locked(struct dmabuf *buf, enum dmabuf_direction dir, int timeout_ms)
{
	int ret;

	dmb_assert_locked(buf->ctx);

	if (!dir_valid(dir))
		return -EINVAL;
	/* Before the exporter's begin, which a failure here cannot undo. */
	if (!cpu_state(buf))
		return -ENOMEM;
	ret = dmb_buf_wait_for_cpu(buf, dir_writes(dir), timeout_ms);
	if (ret < 0)
		return ret;
	if (buf->ops->begin_cpu_access) {
		ret = DMB_OP(buf, begin_cpu_access)(buf, dir);
		if (ret < 0)
			return ret;
	}
	buf->cpu->open[dir]++;
	strict_apply(buf);
	return 0;
}

bool dmb_cpu_bracket_close(unsigned int open[3], enum dmabuf_direction dir)
{
	if ((dir_reads(dir) && !reads_open(open)) || (dir_writes(dir) && !writes_open(open)))
		return false;
	if (open[dir]) {
		open[dir]--;
	} else if (dir == DMABUF_BIDIRECTIONAL) {
		/* a read and a write bracket, ended together */
		open[DMABUF_FROM_DEVICE]--;
		open[DMABUF_TO_DEVICE]--;
	} else {
		/* half of a BIDIRECTIONAL bracket ends; the other half stays */
		open[DMABUF_BIDIRECTIONAL]--;
		open[dir == DMABUF_TO_DEVICE ? DMABUF_FROM_DEVICE : DMABUF_TO_DEVICE]++;
	}
	return true;
}

int dmb_cpu_end_unmatched_locked(struct dmabuf *buf, enum dmabuf_direction dir)
{
	dmb_assert_locked(buf->ctx);
	if (!dir_valid(dir))
		return -EINVAL;
	/* dma_buf_end_cpu_access() keeps no brackets: END without START is
	 * the exporter's to judge (the system and cma heaps accept it,
	 * udmabuf refuses it until its first START). Strict mode checks. */
	if (strict(buf)) {
		dmb_err(buf->ctx, "end_cpu_access(%s, dir %d) without a matching begin (strict CPU access)",
			buf->exp_name, (int)dir);
		return -EINVAL;
	}
	dmb_dbg(buf->ctx, "end_cpu_access(%s, dir %d) without a matching begin: the exporter decides",
		buf->exp_name, (int)dir);
	return buf->ops->end_cpu_access ? DMB_OP(buf, end_cpu_access)(buf, dir) : 0;
}

int dmb_cpu_end_locked(struct dmabuf *buf, enum dmabuf_direction dir)
{
	int ret = 0;

	dmb_assert_locked(buf->ctx);

	if (!dir_valid(dir))
		return -EINVAL;
	if (!buf->cpu || !dmb_cpu_bracket_close(buf->cpu->open, dir))
		return dmb_cpu_end_unmatched_locked(buf, dir);
	/* The bracket closes even if the exporter's end fails: the caller
	 * cannot retry an end. */
	if (buf->ops->end_cpu_access)
		ret = DMB_OP(buf, end_cpu_access)(buf, dir);
	strict_apply(buf);
	return ret;
}

DMABUF_EXPORT int dmabuf_begin_cpu_access(struct dmabuf *buf, enum dmabuf_direction dir)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock(buf);
	int ret;

	if (!ctx)
		return -EINVAL;
	ret = dmb_cpu_begin_locked(buf, dir, -1);
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_end_cpu_access(struct dmabuf *buf, enum dmabuf_direction dir)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock(buf);
	int ret;

	if (!ctx)
		return -EINVAL;
	ret = dmb_cpu_end_locked(buf, dir);
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_mmap(struct dmabuf *buf, uint64_t offset, uint64_t len,
			      int prot, void **addr)
{
	struct dmabuf_ctx *ctx;
	struct dmb_cpu_map *m;
	void *p;
	int ret;

	if (!addr)
		return -EINVAL;
	ctx = dmb_buf_lock(buf);
	if (!ctx)
		return -EINVAL;
	len = DMB_ALIGN_UP(len, DMB_PAGE_SIZE);
	ret = -EINVAL;
	if (!prot || (prot & ~(PROT_READ | PROT_WRITE)) || !len ||
	    !DMB_ALIGNED(offset, DMB_PAGE_SIZE) || offset > buf->size ||
	    len > buf->size - offset) {
		dmb_err(ctx, "dmabuf_mmap(%s): bad range %#llx+%#llx or prot %#x",
			buf->exp_name, (unsigned long long)offset,
			(unsigned long long)len, prot);
		goto out;
	}
	if (!buf->ops->mmap) {
		dmb_err(ctx, "dmabuf_mmap(%s): the exporter has no mmap op", buf->exp_name);
		goto out;
	}
	/* do_mmap(): no mapping at all of a file without FMODE_READ, and no
	 * writable one of a file without FMODE_WRITE. */
	if (buf->flags == O_WRONLY || ((prot & PROT_WRITE) && buf->flags == O_RDONLY)) {
		ret = -EACCES;
		goto out;
	}
	ret = -ENOMEM;
	if (!cpu_state(buf))
		goto out;
	/* The mapping below holds the dma-buf file: from now on it is out. */
	ret = dmb_buf_share(buf);
	if (ret < 0)
		goto out;
	ret = DMB_OP(buf, mmap)(buf, offset, len, prot);
	if (ret < 0)
		goto out;
	m = calloc(1, sizeof(*m));
	if (!m) {
		ret = -ENOMEM;
		goto out;
	}
	/* Through the dma-buf file, so the mapping keeps the buffer alive as
	 * a vma keeps its dma-buf file alive in the kernel. A udmabuf's bytes
	 * are not in its file: one inaccessible page of the file does that. */
	if (buf->handle_only) {
		m->pin = mmap(NULL, DMB_PAGE_SIZE, PROT_NONE, MAP_SHARED, buf->file_fd, 0);
		if (m->pin == MAP_FAILED) {
			ret = -errno;
			free(m);
			goto out;
		}
	}
	p = dmb_backing_map_range(&buf->backing, offset, len, effective_prot(buf, prot),
				  buf->handle_only ? -1 : buf->file_fd);
	if (p == MAP_FAILED) {
		ret = -errno;
		if (m->pin)
			munmap(m->pin, DMB_PAGE_SIZE);
		free(m);
		goto out;
	}
	m->addr = p;
	m->len = len;
	m->prot = prot;
	LIST_INSERT_HEAD(&buf->cpu->maps, m, link);
	*addr = p;
out:
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_munmap(struct dmabuf *buf, void *addr, uint64_t len)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock_any(buf);
	struct dmb_cpu_map *m;

	if (!ctx)
		return -EINVAL;
	len = DMB_ALIGN_UP(len, DMB_PAGE_SIZE);
	m = NULL;
	if (buf->cpu)
		LIST_FOREACH(m, &buf->cpu->maps, link)
			if (m->addr == addr && m->len == len)
				break;
	if (!m) {
		dmb_err(ctx, "dmabuf_munmap(%s): %p+%#llx is not a mapping of this buffer",
			buf->exp_name, addr, (unsigned long long)len);
		dmb_unlock(ctx);
		return -EINVAL;
	}
	LIST_REMOVE(m, link);
	munmap(m->addr, m->len);
	if (m->pin)
		munmap(m->pin, DMB_PAGE_SIZE);
	free(m);
	/* That mapping may have been the last holder of the file. */
	dmb_release_check(buf);
	dmb_unlock(ctx);
	return 0;
}

DMABUF_EXPORT int dmabuf_vmap(struct dmabuf *buf, void **vaddr)
{
	struct dmabuf_ctx *ctx;
	void *p = NULL;
	int ret = 0;

	if (!vaddr)
		return -EINVAL;
	ctx = dmb_buf_lock(buf);
	if (!ctx)
		return -EINVAL;
	if (dmb_buf_vmap_count(buf)) {
		buf->cpu->vmap_count++;
		*vaddr = buf->cpu->vmap_addr;
		goto out;
	}
	if (!buf->ops->vmap) {
		ret = -EINVAL;
		goto out;
	}
	if (!cpu_state(buf)) {
		ret = -ENOMEM;
		goto out;
	}
	ret = DMB_OP(buf, vmap)(buf, &p);
	if (ret < 0)
		goto out;
	if (!p) {
		ret = -EINVAL;
		goto out;
	}
	buf->cpu->vmap_addr = p;
	buf->cpu->vmap_count = 1;
	/* Not mapped yet: a read-write export, whose own memfd is writable. */
	buf->cpu->vmap_writable = buf->backing.map ? buf->backing.map_writable
						   : buf->flags == O_RDWR;
	strict_apply(buf);
	*vaddr = p;
out:
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_vunmap(struct dmabuf *buf, void *vaddr)
{
	struct dmabuf_ctx *ctx = dmb_buf_lock_any(buf);

	if (!ctx)
		return -EINVAL;
	if (!dmb_buf_vmap_count(buf) || vaddr != buf->cpu->vmap_addr) {
		dmb_err(ctx, "dmabuf_vunmap(%s): %p is not the buffer's vmap address",
			buf->exp_name, vaddr);
		dmb_unlock(ctx);
		return -EINVAL;
	}
	if (--buf->cpu->vmap_count == 0) {
		/* In strict mode a stale vmap pointer faults from now on. */
		strict_apply(buf);
		if (buf->ops->vunmap)
			DMB_OP(buf, vunmap)(buf, vaddr);
		buf->cpu->vmap_addr = NULL;
	}
	dmb_unlock(ctx);
	return 0;
}

DMABUF_EXPORT int dmabuf_fd_sync(struct dmabuf_ctx *ctx, int fd, uint64_t flags)
{
	enum dmabuf_direction dir;
	struct dmabuf *buf;
	struct stat st;
	int ret;

	if (!dmb_ctx_usable(ctx))
		return -EINVAL;
	/* The kernel's order: the ioctl's fdget() (-EBADF, also for O_PATH),
	 * then the file's own ioctl handler (a file that is not a dma-buf has
	 * no DMA_BUF_IOCTL_SYNC: -ENOTTY), then dma_buf_ioctl()'s flag
	 * checks (-EINVAL). */
	dmb_lock(ctx);
	ret = dmb_buf_lookup(ctx, fd, &st, &buf);
	if (ret == -EINVAL)
		ret = -ENOTTY; /* not a regular file: no dma-buf */
	if (ret == 0 && !buf) {
		/* A libdmabuf buffer this context has neither exported nor
		 * imported is a dma-buf the kernel would sync; here it must be
		 * dmabuf_get() first (docs/design.md, known limits). */
		if (dmb_buf_fd_is_named(fd)) {
			dmb_err(ctx, "dmabuf_fd_sync(fd %d): a buffer of another context: dmabuf_get() it first",
				fd);
			ret = -EINVAL;
		} else {
			ret = -ENOTTY;
		}
	}
	if (ret < 0)
		goto out;
	ret = -EINVAL;
	if (flags & ~(uint64_t)DMABUF_SYNC_VALID_FLAGS_MASK)
		goto out;
	switch (flags & DMABUF_SYNC_RW) {
	case DMABUF_SYNC_READ: dir = DMABUF_FROM_DEVICE; break;
	case DMABUF_SYNC_WRITE: dir = DMABUF_TO_DEVICE; break;
	case DMABUF_SYNC_RW: dir = DMABUF_BIDIRECTIONAL; break;
	default: goto out;
	}
	/* The fd itself is the caller's reference: an orphaned buffer (no
	 * library reference left) is still fine to sync. */
	ret = flags & DMABUF_SYNC_END ? dmb_cpu_end_locked(buf, dir)
				      : dmb_cpu_begin_locked(buf, dir, -1);
out:
	dmb_unlock(ctx);
	return ret;
}

void dmb_cpu_access_fini(struct dmabuf *buf)
{
	struct dmb_buf_cpu *c = buf->cpu;
	struct dmb_cpu_map *m;
	unsigned int left;

	if (!c)
		return; /* no CPU access ever */
	left = c->open[0] + c->open[1] + c->open[2];
	/* Brackets a holder left open are ended before release, innermost
	 * state first (before the vmap they may have been opened under), as
	 * attachments and vmaps are undone. A proxy's are the exporter's to
	 * end: its RELEASE handling closes them, without a round trip each. */
	if (left) {
		dmb_err(buf->ctx, "buffer %s released with %u CPU access bracket(s) open",
			buf->exp_name, left);
		for (int d = DMABUF_BIDIRECTIONAL; d <= DMABUF_FROM_DEVICE; d++)
			while (c->open[d]) {
				c->open[d]--;
				if (!buf->imported && buf->ops->end_cpu_access)
					DMB_OP(buf, end_cpu_access)(buf, (enum dmabuf_direction)d);
			}
	}

	/* Mappings the caller still has stay valid (they map the memfd);
	 * only the bookkeeping goes, and the library's own pins. */
	while ((m = LIST_FIRST(&c->maps))) {
		LIST_REMOVE(m, link);
		if (m->pin)
			munmap(m->pin, DMB_PAGE_SIZE);
		free(m);
	}
	if (c->vmap_count) {
		dmb_err(buf->ctx, "buffer %s released with %u vmap(s) left",
			buf->exp_name, c->vmap_count);
		if (buf->ops->vunmap)
			DMB_OP(buf, vunmap)(buf, c->vmap_addr);
		c->vmap_count = 0;
	}
	free(c);
	buf->cpu = NULL;
}
