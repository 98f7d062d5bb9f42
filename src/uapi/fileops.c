/* SPDX-License-Identifier: MIT */
/*
 * File operations on dma-buf fds as the kernel's dma_buf_fops answers them:
 * the size behind lseek(SEEK_END), mmap's checks, poll readiness from the
 * buffer's fences and the fdinfo text.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <dmabuf-fence.h>
#include <dmabuf.h>

#include "core.h"

/* Mappings the library made for the program (a udmabuf's pages): the
 * program's munmap() of one must go through dmabuf_munmap(). */
struct lib_map {
	void *addr;
	size_t len;
	struct dmabuf *buf;	/* one reference */
	struct lib_map *next;
};

static pthread_mutex_t lib_maps_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lib_map *lib_maps;

static bool lib_map_add(void *addr, size_t len, struct dmabuf *buf)
{
	struct lib_map *m = calloc(1, sizeof(*m));

	if (!m)
		return false;
	m->addr = addr;
	m->len = len;
	m->buf = buf;
	pthread_mutex_lock(&lib_maps_lock);
	m->next = lib_maps;
	lib_maps = m;
	pthread_mutex_unlock(&lib_maps_lock);
	return true;
}

/*
 * A buffer is held (one library reference) from the first emulated call on
 * one of its fds until the program closes an fd of it. Without it every
 * call would revive and drop the buffer (for an import: open and close the
 * exporter's side, and drop a CPU-access bracket between the START and END
 * ioctls). After a close the next call takes it again, so fds and mappings
 * the program still has keep working (the library's orphans). The table is
 * a cache of references keyed by inode; what an fd is still comes from the
 * fd (an inode in it is alive, so it cannot be reused).
 */
struct held {
	dev_t dev;
	ino_t ino;
	struct dmabuf *buf;
	struct held *next;
};

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct held *held;

int dmb_uapi_get_buf(int fd, struct dmabuf **out)
{
	struct dmabuf_ctx *ctx = dmb_uapi_ctx();
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct held *h;
	struct stat st;
	int ret;

	if (!ctx)
		return -errno;
	if (dmb_uapi_fstat(fd, &st) < 0)
		return -EBADF;
	pthread_mutex_lock(&held_lock);
	for (h = held; h; h = h->next) {
		if (h->ino == st.st_ino && h->dev == st.st_dev && dmabuf_ref(h->buf)) {
			*out = h->buf;
			pthread_mutex_unlock(&held_lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&held_lock);
	ret = dmabuf_get(ctx, fd, out);
	if (ret || dmabuf_get_info(*out, &info))
		return ret;
	h = calloc(1, sizeof(*h));
	if (!h)
		return 0;
	h->dev = st.st_dev;
	h->ino = st.st_ino;
	h->buf = dmabuf_ref(*out);
	pthread_mutex_lock(&held_lock);
	h->next = held;
	held = h;
	pthread_mutex_unlock(&held_lock);
	return 0;
}

void dmb_uapi_release_held(dev_t dev, ino_t ino)
{
	struct held **pp, *h, *gone = NULL;

	pthread_mutex_lock(&held_lock);
	for (pp = &held; (h = *pp);) {
		if (h->ino == ino && h->dev == dev) {
			*pp = h->next;
			h->next = gone;
			gone = h;
		} else {
			pp = &h->next;
		}
	}
	pthread_mutex_unlock(&held_lock);
	while ((h = gone)) {
		gone = h->next;
		dmabuf_put(h->buf);
		free(h);
	}
}

void dmb_uapi_unhold_own(void)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct held **pp, *h, *gone = NULL;

	if (!held)
		return;
	pthread_mutex_lock(&held_lock);
	for (pp = &held; (h = *pp);) {
		if (!dmabuf_get_info(h->buf, &info) && !info.imported) {
			*pp = h->next;
			h->next = gone;
			gone = h;
		} else {
			pp = &h->next;
		}
	}
	pthread_mutex_unlock(&held_lock);
	while ((h = gone)) {
		gone = h->next;
		dmabuf_put(h->buf);
		free(h);
	}
}

bool dmb_uapi_held_has(dev_t dev, ino_t ino)
{
	struct held *h;
	bool found = false;

	pthread_mutex_lock(&held_lock);
	for (h = held; h && !found; h = h->next)
		found = h->ino == ino && h->dev == dev;
	pthread_mutex_unlock(&held_lock);
	return found;
}

bool dmb_uapi_have_held(void)
{
	return held != NULL;
}

void dmb_uapi_held_exit(void)
{
	struct held *h;

	pthread_mutex_lock(&held_lock);
	while ((h = held)) {
		held = h->next;
		dmabuf_put(h->buf);
		free(h);
	}
	pthread_mutex_unlock(&held_lock);
}

/* The parent's references, in a forked child: kept reachable, not put. */
static struct held *volatile parent_held;

static struct lib_map *volatile parent_lib_maps;

void dmb_uapi_held_forked(void)
{
	pthread_mutex_init(&held_lock, NULL);
	parent_held = held;
	held = NULL;
	/* The child's munmap of these is a plain one. */
	pthread_mutex_init(&lib_maps_lock, NULL);
	parent_lib_maps = lib_maps;
	lib_maps = NULL;
}

#define get_buf dmb_uapi_get_buf

int64_t dmb_uapi_dmabuf_size(int fd)
{
	struct dmabuf *buf;
	int64_t size;
	int ret;

	ret = get_buf(fd, &buf);
	if (ret)
		return ret;
	size = (int64_t)dmabuf_get_size(buf);
	dmabuf_put(buf);
	return size;
}

void *dmb_uapi_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct dmabuf *buf;
	struct stat st = { 0 };
	uint64_t pages;
	void *map;
	int ret, fl;

	if (off < 0 || (uint64_t)off % DMB_UAPI_PAGE || !len)
		return (void *)(intptr_t)-EINVAL;
	ret = get_buf(fd, &buf);
	if (ret)
		return (void *)(intptr_t)ret;
	ret = dmabuf_get_info(buf, &info);
	pages = (len + DMB_UAPI_PAGE - 1) / DMB_UAPI_PAGE;
	fl = fcntl(fd, F_GETFL);
	if (ret) {
		map = (void *)(intptr_t)ret;
	} else if ((fl & O_ACCMODE) == O_WRONLY) {
		/* do_mmap(): no mapping of a file without FMODE_READ, before
		 * the file's own mmap op sees the range. */
		map = (void *)(intptr_t)-EACCES;
	} else if ((uint64_t)off / DMB_UAPI_PAGE + pages > info.size / DMB_UAPI_PAGE) {
		/* dma_buf_mmap_internal(): beyond the buffer's size. */
		map = (void *)(intptr_t)-EINVAL;
	} else if ((flags & MAP_TYPE) == MAP_SHARED && (prot & PROT_WRITE) &&
		   (fl & O_ACCMODE) == O_RDONLY) {
		/* do_mmap(): a shared writable mapping of a read-only file. */
		map = (void *)(intptr_t)-EACCES;
	} else if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < info.size &&
		   (flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE) {
		/* mmap_udmabuf(): only shared mappings. */
		map = (void *)(intptr_t)-EINVAL;
	} else if (st.st_ino && (uint64_t)st.st_size < info.size) {
		/* A udmabuf's file is a handle: its pages are the caller's
		 * memfds, which the library stitches together. */
		ret = dmabuf_mmap(buf, (uint64_t)off, len, prot, &map);
		if (ret)
			map = (void *)(intptr_t)ret;
		else if (lib_map_add(map, len, buf))
			buf = NULL; /* the mapping's reference, put at munmap */
	} else {
		map = NULL; /* the real mmap of the buffer's memfd */
	}
	if (buf)
		dmabuf_put(buf);
	return map;
}

int dmb_uapi_munmap_lib(void *addr, size_t len)
{
	struct lib_map **pp, *m;

	pthread_mutex_lock(&lib_maps_lock);
	for (pp = &lib_maps; (m = *pp); pp = &m->next) {
		if (m->addr == addr && m->len == len) {
			*pp = m->next;
			break;
		}
	}
	pthread_mutex_unlock(&lib_maps_lock);
	if (!m)
		return 0;
	dmabuf_munmap(m->buf, addr, len);
	dmabuf_put(m->buf);
	free(m);
	return 1;
}

short dmb_uapi_poll_events(int fd, enum dmb_uapi_kind kind, short events)
{
	struct dmabuf *buf;
	int ret;

	if (kind == DMB_UAPI_SYNC_FILE)
		/* sync_file_poll(): EPOLLIN once signalled. The socket's own
		 * readiness is not the truth: a holder's shutdown() makes it
		 * ready for good (docs/fences.md, "A holder's shutdown"). */
		return dmabuf_sync_file_wait(fd, 0) == 1 ? (short)(events & POLLIN) : 0;
	if (kind != DMB_UAPI_DMABUF)
		return events;
	if (get_buf(fd, &buf))
		return POLLERR;
	ret = dmabuf_poll(buf, events & (POLLIN | POLLOUT));
	dmabuf_put(buf);
	return ret < 0 ? POLLERR : (short)ret;
}

/* The registry of process `pid`'s layer (core.h), if it has one: read into
 * *out (allocated), else *out stays NULL. fd is its number there. */
static void registry_read(const char *pid, const char *fd, struct dmb_uapi_registry **out)
{
	char path[600], link[128];
	struct dmb_uapi_registry *r;
	ssize_t n;
	int rfd;

	snprintf(path, sizeof(path), "/proc/%s/fd/%s", pid, fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return;
	link[n] = 0;
	if (strncmp(link, "/memfd:" DMB_UAPI_REGISTRY_NAME, 7 + strlen(DMB_UAPI_REGISTRY_NAME)))
		return;
	r = malloc(sizeof(*r));
	rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (r && rfd >= 0 && pread(rfd, r, sizeof(*r), 0) == (ssize_t)sizeof(*r) &&
	    r->magic == DMB_UAPI_REGISTRY_MAGIC) {
		free(*out);
		*out = r;
		r = NULL;
	}
	if (rfd >= 0)
		close(rfd);
	free(r);
}

static bool registry_has_fd(const struct dmb_uapi_registry *r, long fd)
{
	return r && fd >= 0 && fd < DMB_UAPI_REGISTRY_FDS &&
	       (r->marks[fd / 64] & (1ull << (fd % 64)));
}

static bool registry_has_map(const struct dmb_uapi_registry *r, uint64_t lo, uint64_t hi)
{
	int i;

	for (i = 0; r && i < DMB_UAPI_REGISTRY_MAPS; i++)
		if (r->maps[i].lo != r->maps[i].hi && lo >= r->maps[i].lo && hi <= r->maps[i].hi)
			return true;
	return false;
}

/*
 * The kernel's file count of the buffer: in every process, the fds of
 * (dev, ino) whose open file holds the dma-buf's shared flock (the
 * program's files; the library's probe descriptions hold none) and the
 * mappings of it, leaving out the fds and mappings each process's layer
 * registered as its own (core.h).
 */
static long count_refs(dev_t dev, ino_t ino)
{
	char path[600], line[256];
	struct dirent *p, *f;
	DIR *procdir, *fddir;
	struct stat st;
	long count = 0;
	FILE *fp;

	procdir = opendir("/proc");
	if (!procdir)
		return -1;
	while ((p = readdir(procdir))) {
		struct dmb_uapi_registry *reg = NULL;
		long *lfds = NULL, nlfds = 0, i;

		if (p->d_name[0] < '0' || p->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", p->d_name);
		fddir = opendir(path);
		if (!fddir)
			continue;
		while ((f = readdir(fddir))) {
			bool locked = false;
			long *grown;

			if (f->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/fd/%s", p->d_name, f->d_name);
			if (stat(path, &st))
				continue;
			if (st.st_size == (off_t)sizeof(struct dmb_uapi_registry) &&
			    (st.st_ino != ino || st.st_dev != dev)) {
				registry_read(p->d_name, f->d_name, &reg);
				continue;
			}
			if (st.st_ino != ino || st.st_dev != dev)
				continue;
			snprintf(path, sizeof(path), "/proc/%s/fdinfo/%s", p->d_name, f->d_name);
			fp = fopen(path, "re");
			if (!fp)
				continue;
			while (fgets(line, sizeof(line), fp))
				if (!strncmp(line, "lock:", 5) && strstr(line, "FLOCK"))
					locked = true;
			fclose(fp);
			if (!locked)
				continue;
			grown = realloc(lfds, (size_t)(nlfds + 1) * sizeof(*lfds));
			if (!grown)
				continue;
			lfds = grown;
			lfds[nlfds++] = strtol(f->d_name, NULL, 10);
		}
		closedir(fddir);
		for (i = 0; i < nlfds; i++)
			count += !registry_has_fd(reg, lfds[i]);
		free(lfds);
		snprintf(path, sizeof(path), "/proc/%s/maps", p->d_name);
		fp = fopen(path, "re");
		if (fp) {
			while (fgets(line, sizeof(line), fp)) {
				unsigned long long lino, lo, hi;

				if (sscanf(line, "%llx-%llx %*s %*s %*s %llu", &lo, &hi, &lino) == 3 &&
				    lino == ino && strstr(line, "memfd:dmabuf:") &&
				    !registry_has_map(reg, lo, hi))
					count++;
			}
			fclose(fp);
		}
		free(reg);
	}
	closedir(procdir);
	return count;
}

int dmb_uapi_fdinfo(int fd, char *out, size_t size)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	return dmb_uapi_fdinfo_at(fd, path, out, size);
}

int dmb_uapi_fdinfo_at(int fd, const char *path, char *out, size_t size)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct dmabuf *buf;
	struct stat st;
	size_t n = 0;
	FILE *fp;
	int ret;

	ret = get_buf(fd, &buf);
	if (ret)
		return ret;
	ret = dmabuf_get_info(buf, &info);
	if (fstat(fd, &st) < 0)
		ret = -errno;
	/* The layer's own reference is no file reference of the program's:
	 * without it the library closes its file, and the count below is
	 * the program's fds and mappings only. */
	if (!ret)
		dmb_uapi_release_held(st.st_dev, st.st_ino);
	dmabuf_put(buf);
	if (ret)
		return ret;
	/* The generic lines (pos, flags, mnt_id, ino) are the real file's. */
	fp = fopen(path, "re");
	if (!fp)
		return -errno;
	while (n + 1 < size && fgets(out + n, (int)(size - n), fp)) {
		if (!strncmp(out + n, "lock:", 5)) /* the layer's bookkeeping */
			continue;
		if (!strncmp(out + n, "flags:", 6)) {
			/* A dma-buf's file is made by alloc_file_pseudo() without
			 * O_LARGEFILE; the memfd behind it has it. */
			unsigned long fl = strtoul(out + n + 6, NULL, 8) & ~DMB_UAPI_O_LARGEFILE;
			int w = snprintf(out + n, size - n, "flags:\t0%lo\n", fl);

			if (w > 0 && (size_t)w < size - n)
				n += (size_t)w;
			continue;
		}
		n += strlen(out + n);
	}
	fclose(fp);
	n += snprintf(out + n, size > n ? size - n : 0,
		      "size:\t%llu\ncount:\t%ld\nexp_name:\t%s\n",
		      (unsigned long long)info.size,
		      count_refs(st.st_dev, st.st_ino),
		      /* The contiguous heap exports under its configured name. */
		      strcmp(info.exp_name, "cma") ? info.exp_name
						   : dmb_uapi_config()->cma_heap);
	/* dma_buf_show_fdinfo(): a "name:" line once any name was set, the
	 * empty one included. */
	if (info.name_set)
		n += snprintf(out + n, size > n ? size - n : 0, "name:\t%s\n", info.name);
	return n >= size ? -ENOSPC : (int)n;
}
