/* SPDX-License-Identifier: MIT */
/*
 * A buffer's backing: the memfd range(s) that hold its bytes, the library's
 * own mapping of them, and the simulated physical frames behind them.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memory.h"

/* The decimal digits of fd (>= 0) at the end of buf[0..end), NUL-terminated
 * at end; returns where they start. What snprintf("%d") writes, at a tenth
 * of its cost: this runs at every buffer life's first dmabuf_fd(). */
static char *fd_digits(char *buf, size_t end, int fd)
{
	char *p = buf + end;
	unsigned int v = (unsigned int)fd;

	*p = '\0';
	do
		*--p = (char)('0' + v % 10);
	while (v /= 10);
	return p;
}

int dmb_backing_reopen_at(int fd_dir, int fd, int flags)
{
	static const char prefix[] = "/proc/self/fd/";
	char path[sizeof(prefix) + 16];
	char *digits;
	int err, ret;

	if ((err = dmb_sys_fail(DMB_SYS_REOPEN)))
		return -err;
	if (fd < 0)
		return -ENOENT;	/* what the open of "/proc/self/fd/-1" gives */
	digits = fd_digits(path, sizeof(path) - 1, fd);
	/* Through a held /proc/self/fd the walk is one component, not
	 * four (/proc, the self link, fd, the fd): a quarter of the open. */
	if (fd_dir >= 0) {
		ret = openat(fd_dir, digits, flags | O_CLOEXEC);
	} else {
		digits -= sizeof(prefix) - 1;
		memcpy(digits, prefix, sizeof(prefix) - 1);
		ret = open(digits, flags | O_CLOEXEC);
	}
	return ret < 0 ? -errno : ret;
}

int dmb_backing_punch(int fd, uint64_t size)
{
	int err;

	if ((err = dmb_sys_fail(DMB_SYS_FALLOCATE)))
		return -err;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)size) < 0)
		return -errno;
	return 0;
}

int dmb_backing_reopen(int fd, int flags)
{
	return dmb_backing_reopen_at(-1, fd, flags);
}

/* mmap of one range; a reopen range is mapped through a description of its
 * own, which then lives on in the mapping alone. */
static void *map_one(const struct dmb_backing_range *r, void *addr, uint64_t len,
		     int prot, int flags, int fd, uint64_t skip)
{
	void *p;
	int tmp = -1, err;

	if (fd < 0 && r->reopen) {
		tmp = dmb_backing_reopen(r->fd, O_RDWR);
		if (tmp == -EACCES)
			tmp = dmb_backing_reopen(r->fd, O_RDONLY);
		if (tmp < 0) {
			errno = -tmp;
			return MAP_FAILED;
		}
		fd = tmp;
	}
	if (fd < 0)
		fd = r->fd;
	p = mmap(addr, len, prot, flags, fd, (off_t)(r->offset + skip));
	if (tmp >= 0) {
		err = errno;
		close(tmp);
		errno = err;
	}
	return p;
}

int dmb_backing_init_memfd(struct dmb_backing *b, int memfd, uint64_t size)
{
	b->ranges = calloc(1, sizeof(*b->ranges));
	if (!b->ranges)
		return -ENOMEM;
	b->ranges[0].fd = memfd;
	b->ranges[0].offset = 0;
	b->ranges[0].size = size;
	b->nranges = 1;
	b->size = size;
	return 0;
}

/* A new mapping of [offset, offset + len) of the buffer: the parts of every
 * range it covers, stitched into one address range (a PROT_NONE reservation
 * with each part mapped over it). */
void *dmb_backing_map_range(struct dmb_backing *b, uint64_t offset, uint64_t len,
			    int prot, int fd_override)
{
	uint8_t *base;
	uint64_t pos = 0, done = 0;
	int err;

	if ((err = dmb_sys_fail(DMB_SYS_MMAP))) {
		errno = err;
		return MAP_FAILED;
	}
	if (b->nranges == 1)
		return map_one(&b->ranges[0], NULL, len, prot, MAP_SHARED, fd_override, offset);
	base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		return MAP_FAILED;
	for (size_t i = 0; i < b->nranges && done < len; i++) {
		const struct dmb_backing_range *r = &b->ranges[i];
		uint64_t skip, part;

		if (offset >= pos + r->size) {
			pos += r->size;
			continue;
		}
		skip = offset > pos ? offset - pos : 0;
		part = r->size - skip;
		if (part > len - done)
			part = len - done;
		if (map_one(r, base + done, part, prot, MAP_SHARED | MAP_FIXED, -1,
			    skip) == MAP_FAILED) {
			err = errno;
			munmap(base, len);
			errno = err;
			return MAP_FAILED;
		}
		done += part;
		pos += r->size;
	}
	return base;
}

void *dmb_backing_map_new(struct dmb_backing *b, int prot, int fd_override)
{
	return dmb_backing_map_range(b, 0, b->size, prot, fd_override);
}

/*
 * The library's own views (b->map, b->cpu_view) stand in for the kernel's
 * vmap: no process sees those in its /proc/PID/maps. Ours are in the maps
 * file, so they carry a mark a reader can tell them by: MADV_DONTDUMP (the
 * "dd" VmFlag of /proc/PID/smaps; dmabuf-ls counts such a mapping as an
 * internal view, not as a mapping of the program). It also keeps a second
 * copy of every buffer out of core dumps. Best effort: the mapping works
 * without the mark.
 */
static void *mark_internal(void *p, uint64_t len)
{
	if (p != MAP_FAILED)
		(void)madvise(p, len, MADV_DONTDUMP);
	return p;
}

int dmb_backing_map_cpu(struct dmb_backing *b, bool writable)
{
	void *p;

	if (b->map)
		return 0;
	p = mark_internal(dmb_backing_map_new(b, PROT_READ | (writable ? PROT_WRITE : 0), -1),
			  b->size);
	if (p == MAP_FAILED && writable && (errno == EACCES || errno == EPERM)) {
		/* A caller's memfd opened read-only: map it for reading. */
		writable = false;
		p = mark_internal(dmb_backing_map_new(b, PROT_READ, -1), b->size);
	}
	if (p == MAP_FAILED)
		return -errno;
	b->map = p;
	b->map_writable = writable;
	return 0;
}

int dmb_backing_map_view(struct dmb_backing *b)
{
	void *p;
	int ret;

	if (b->cpu_view)
		return 0;
	ret = dmb_backing_map_cpu(b, true);
	if (ret < 0)
		return ret;
	p = mark_internal(dmb_backing_map_new(b, PROT_READ | (b->map_writable ? PROT_WRITE : 0), -1),
			  b->size);
	if (p == MAP_FAILED)
		return -errno;
	b->cpu_view = p;
	return 0;
}

void dmb_backing_fini(struct dmb_physmem *pm, struct dmb_backing *b)
{
	if (b->map)
		munmap(b->map, b->size);
	if (b->cpu_view)
		munmap(b->cpu_view, b->size);
	if (b->runs) {
		dmb_physmem_free(pm, b->runs, b->nruns);
		free(b->runs);
	}
	for (size_t i = 0; i < b->nranges; i++)
		if (b->ranges[i].owned && b->ranges[i].fd >= 0)
			close(b->ranges[i].fd);
	free(b->ranges);
	*b = (struct dmb_backing){ 0 };
}

