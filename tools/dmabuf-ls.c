/* SPDX-License-Identifier: MIT */
/*
 * dmabuf-ls: lists every libdmabuf buffer this user can see, with its
 * exporter, name, attachments and every process that holds it, as the
 * kernel's /sys/kernel/debug/dma_buf/bufinfo and Android's dmabuf_dump do
 * for real dma-bufs, but without root.
 *
 * The scan reads /proc only; it opens no buffer:
 *  - /proc/<pid>/fd/<n>: readlink gives "/memfd:dmabuf:<exp>@<endpoint>
 *    (deleted)", stat gives the buffer's identity (st_dev, st_ino) and size;
 *  - /proc/<pid>/fdinfo/<n>: the open flags (read-only or read-write), the
 *    inode (to catch an fd number reused mid-scan), and a "lock:" line for an
 *    fd of the dma-buf file, whose holders all share a flock(LOCK_SH); the
 *    exporter's private probe OFD has no lock;
 *  - /proc/<pid>/smaps: mappings by device and inode, with Rss, Pss and
 *    VmFlags. The library marks its own views of a buffer (its stand-in for
 *    the kernel's vmap) MADV_DONTDUMP, VmFlag "dd": those are counted as
 *    views, not as the program's mappings. Without smaps, /proc/<pid>/maps
 *    gives the mappings without that distinction.
 * The endpoint is "dmabuf-<exporter pid>-<16 hex>".
 *
 * Then, unless --no-query, it asks each buffer's exporter (over its
 * endpoint, as any importer: the DESCRIBE request) for what /proc cannot
 * show: the buffer's name, its attachments, device mappings and vmaps, and
 * whether its backing is allocated and contiguous. That imports the buffer
 * for a moment (a holder's fd opened through /proc), so the exporter must be
 * serving; one that does not answer in --timeout ms is not asked again.
 * The exporter reports counts; which devices are attached it does not send
 * (DESCRIBE_REPLY carries no device list, docs/protocol.md).
 *
 * Processes come and go during the scan: whatever vanishes or is not
 * readable is skipped.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#include <dmabuf.h>

#define MEMFD_PREFIX "/memfd:"
#define NAME_PREFIX "dmabuf:"
#define DELETED_SUFFIX " (deleted)"

/* One fd or one mapping of a buffer in a process. */
struct rec {
	dev_t dev;
	ino_t ino;
	pid_t pid;
	bool is_map;
	int fd;			/* fd records */
	int accmode;		/* fd records: O_RDONLY, O_WRONLY, O_RDWR, or -1 */
	bool locked;		/* fd records: an fd of the dma-buf file */
	bool have_size;		/* fd records */
	bool internal;		/* map records: the library's own view ("dd") */
	uint64_t size;		/* fd records: st_size; map records: length */
	uint64_t rss, pss;	/* map records, bytes (0 without smaps) */
	char *name;		/* memfd name without "/memfd:" and " (deleted)" */
};

struct proc {
	pid_t pid;
	char comm[64];
	bool have_smaps;
};

/* A process's share of one buffer. */
struct holder {
	pid_t pid;
	const char *comm;
	const struct rec *fds;	/* n_fds fd records, sorted by fd */
	size_t n_fds;
	size_t n_maps, n_views;	/* the program's mappings; the library's views */
	uint64_t mapped, rss, pss, views_size;
	bool exporter;
};

/* What the exporter said about a buffer (DESCRIBE), if asked. */
enum query_state { Q_NOT_ASKED, Q_OK, Q_FAILED };

struct buffer {
	dev_t dev;
	ino_t ino;
	const char *name;	/* the full memfd name */
	char exp_name[256];
	pid_t exp_pid;		/* 0 when the endpoint cannot be parsed */
	const char *exp_state;	/* "holds", "holds nothing", "gone", "unknown" */
	bool have_size;
	uint64_t size;
	const char *access;	/* "rw", "ro", "wo" or "?" */
	struct holder *holders;
	size_t n_holders;
	bool shown;		/* passes the filters */
	enum query_state q;
	int q_err;		/* Q_FAILED: negative errno */
	struct dmabuf_info info; /* Q_OK */
};

/* Per-process totals over the buffers shown. */
struct total {
	pid_t pid;
	const char *comm;
	size_t buffers, fds, maps, views;
	uint64_t buf_size, mapped, rss, pss;
};

struct filters {
	pid_t pid;
	const char *exporter, *name, *comm;
};

static struct rec *recs;
static size_t n_recs, cap_recs;
static struct proc *procs;
static size_t n_procs, cap_procs;
static struct buffer *bufs;
static size_t n_bufs;

static _Noreturn void oom(void)
{
	fputs("dmabuf-ls: out of memory\n", stderr);
	exit(1);
}

static void *grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *p;

	if (need <= *cap)
		return arr;
	ncap = *cap ? *cap * 2 : 64;
	while (ncap < need)
		ncap *= 2;
	p = reallocarray(arr, ncap, elem);
	if (!p)
		oom();
	*cap = ncap;
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		oom();
	return p;
}

static struct rec *new_rec(void)
{
	recs = grow(recs, &cap_recs, n_recs + 1, sizeof(*recs));
	memset(&recs[n_recs], 0, sizeof(recs[n_recs]));
	return &recs[n_recs++];
}

/* Strips "/memfd:" and " (deleted)"; NULL unless it names a libdmabuf buffer. */
static const char *buffer_name(char *path)
{
	size_t len, slen = strlen(DELETED_SUFFIX);

	if (strncmp(path, MEMFD_PREFIX, strlen(MEMFD_PREFIX)) != 0)
		return NULL;
	path += strlen(MEMFD_PREFIX);
	len = strlen(path);
	if (len >= slen && strcmp(path + len - slen, DELETED_SUFFIX) == 0)
		path[len - slen] = '\0';
	if (strncmp(path, NAME_PREFIX, strlen(NAME_PREFIX)) != 0)
		return NULL;
	return path;
}

/* Reads a small /proc file into buf (NUL-terminated); -1 if it cannot. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	ssize_t n, total = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)total < size - 1) {
		n = read(fd, buf + total, size - 1 - (size_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	close(fd);
	buf[total] = '\0';
	return total;
}

static bool parse_pid(const char *s, pid_t *out)
{
	char *end;
	long v;

	if (!s || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v <= 0 || v > INT_MAX)
		return false;
	*out = (pid_t)v;
	return true;
}

static void read_comm(pid_t pid, char *comm, size_t size)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	n = read_small(path, comm, size);
	if (n <= 0) {
		snprintf(comm, size, "?");
		return;
	}
	if (comm[n - 1] == '\n')
		comm[n - 1] = '\0';
}

/* fdinfo of one fd: flags, inode and whether it holds a flock. False for an
 * fd that is no holder: an O_PATH fd is no open file of the buffer (it
 * keeps nothing alive, and the kernel's fget() refuses it). */
static bool read_fdinfo(pid_t pid, int fd, ino_t ino, struct rec *r)
{
	char path[64], buf[4096];
	char *line, *save = NULL;
	bool have_flags = false;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, fd);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return false;
	r->accmode = -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "flags:", 6) == 0) {
			unsigned long flags;

			if (sscanf(line + 6, "%lo", &flags) == 1) {
				if (flags & O_PATH)
					return false;
				r->accmode = (int)(flags & O_ACCMODE);
				have_flags = true;
			}
		} else if (strncmp(line, "ino:", 4) == 0) {
			unsigned long long v;

			/* the fd number was reused between stat and here */
			if (sscanf(line + 4, "%llu", &v) == 1 && (ino_t)v != ino)
				return false;
		} else if (strncmp(line, "lock:", 5) == 0 && strstr(line, "FLOCK")) {
			r->locked = true;
		}
	}
	return have_flags;
}

/* -1 if /proc/<pid>/fd cannot be read (errno says why). */
static int scan_fds(pid_t pid)
{
	char dpath[64], path[96], link[PATH_MAX + 64];
	struct dirent *de;
	const char *name;
	struct stat st;
	ssize_t n;
	DIR *d;
	int fd;

	snprintf(dpath, sizeof(dpath), "/proc/%d/fd", (int)pid);
	d = opendir(dpath);
	if (!d)
		return -1;	/* gone, or not ours to read */
	while ((de = readdir(d))) {
		struct rec tmp = { 0 };
		struct rec *r;
		char *end;
		long v;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		v = strtol(de->d_name, &end, 10);
		if (*end || v < 0 || v > INT_MAX)
			continue;
		fd = (int)v;
		snprintf(path, sizeof(path), "%s/%d", dpath, fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0 || (size_t)n >= sizeof(link) - 1)
			continue;
		link[n] = '\0';
		name = buffer_name(link);
		if (!name)
			continue;
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (!read_fdinfo(pid, fd, st.st_ino, &tmp))
			continue;
		r = new_rec();
		*r = tmp;
		r->dev = st.st_dev;
		r->ino = st.st_ino;
		r->pid = pid;
		r->fd = fd;
		r->size = (uint64_t)st.st_size;
		r->have_size = true;
		r->name = xstrdup(name);
	}
	closedir(d);
	return 0;
}

/*
 * A mapping line of maps or smaps: "start-end perms off maj:min ino path".
 * Returns the new record if the path is a libdmabuf buffer, else NULL.
 */
static struct rec *map_line(pid_t pid, char *line)
{
	unsigned long long start, end, off, ino;
	unsigned int maj, min;
	char perms[8], *p;
	const char *name;
	struct rec *r;
	size_t len;
	int pos = 0;

	if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &off, &maj,
		   &min, &ino, &pos) < 7 || pos == 0)
		return NULL;
	p = line + pos;
	len = strlen(p);
	if (len && p[len - 1] == '\n')
		p[--len] = '\0';
	name = buffer_name(p);
	if (!name || end < start)
		return NULL;
	r = new_rec();
	r->dev = makedev(maj, min);
	r->ino = (ino_t)ino;
	r->pid = pid;
	r->is_map = true;
	r->fd = -1;
	r->accmode = -1;
	r->size = end - start;
	r->name = xstrdup(name);
	return r;
}

/* Mappings from smaps (with Rss, Pss, VmFlags) or, failing that, maps.
 * Returns whether smaps was read. */
static bool scan_maps(pid_t pid)
{
	char path[64];
	char *line = NULL;
	size_t cap = 0, cur = SIZE_MAX;
	bool smaps = true;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f) {
		smaps = false;
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
		f = fopen(path, "re");
		if (!f)
			return false;
	}
	while (getline(&line, &cap, f) > 0) {
		unsigned long long kb;
		struct rec *r;

		/* smaps: "Key:   value" lines follow each mapping line */
		if (smaps && isupper((unsigned char)line[0]) && !strchr(line, '-')) {
			if (cur == SIZE_MAX)
				continue;
			if (sscanf(line, "Rss: %llu kB", &kb) == 1)
				recs[cur].rss = kb * 1024;
			else if (sscanf(line, "Pss: %llu kB", &kb) == 1)
				recs[cur].pss = kb * 1024;
			else if (strncmp(line, "VmFlags:", 8) == 0)
				recs[cur].internal = strstr(line + 8, " dd") != NULL;
			continue;
		}
		r = map_line(pid, line);
		cur = r ? (size_t)(r - recs) : SIZE_MAX;
	}
	free(line);
	fclose(f);
	return smaps;
}

static void scan_pid(pid_t pid)
{
	size_t before = n_recs;
	bool smaps;

	scan_fds(pid);
	smaps = scan_maps(pid);
	if (n_recs == before)
		return;
	procs = grow(procs, &cap_procs, n_procs + 1, sizeof(*procs));
	procs[n_procs].pid = pid;
	procs[n_procs].have_smaps = smaps;
	read_comm(pid, procs[n_procs].comm, sizeof(procs[n_procs].comm));
	n_procs++;
}

static void scan(void)
{
	struct dirent *de;
	DIR *d = opendir("/proc");
	pid_t pid;

	if (!d) {
		fprintf(stderr, "dmabuf-ls: /proc: %s\n", strerror(errno));
		return;
	}
	while ((de = readdir(d)))
		if (parse_pid(de->d_name, &pid))
			scan_pid(pid);
	closedir(d);
}

static int cmp_rec(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	if (x->is_map != y->is_map)
		return x->is_map ? 1 : -1;
	return x->fd < y->fd ? -1 : x->fd > y->fd;
}

static int cmp_proc(const void *a, const void *b)
{
	const struct proc *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static const char *comm_of(pid_t pid)
{
	struct proc key = { .pid = pid };
	struct proc *p = bsearch(&key, procs, n_procs, sizeof(*procs), cmp_proc);

	return p ? p->comm : NULL;
}

/*
 * "dmabuf:<exp_name>@dmabuf-<pid>-<16 hex>". The exporter's name may itself
 * contain '@', so the endpoint follows the last one.
 */
static void parse_name(struct buffer *b)
{
	const char *exp = b->name + strlen(NAME_PREFIX);
	const char *at = strrchr(exp, '@');
	const char *ep, *p;
	size_t len, i;
	pid_t pid;
	char num[16];

	b->exp_pid = 0;
	len = at ? (size_t)(at - exp) : strlen(exp);
	if (len >= sizeof(b->exp_name))
		len = sizeof(b->exp_name) - 1;
	memcpy(b->exp_name, exp, len);
	b->exp_name[len] = '\0';
	if (!at)
		return;
	ep = at + 1;
	if (strncmp(ep, "dmabuf-", 7) != 0)
		return;
	p = ep + 7;
	for (i = 0; isdigit((unsigned char)p[i]) && i < sizeof(num) - 1; i++)
		num[i] = p[i];
	num[i] = '\0';
	if (p[i] != '-')
		return;
	p += i + 1;
	for (i = 0; i < 16; i++)
		if (!isxdigit((unsigned char)p[i]))
			return;
	if (p[16] != '\0')
		return;
	if (parse_pid(num, &pid))
		b->exp_pid = pid;
}

static const char *access_of(const struct rec *r, size_t n, pid_t exp_pid)
{
	int mode = -1;
	size_t i;

	/* The dma-buf file (the fds with the shared flock) says it all. */
	for (i = 0; i < n; i++)
		if (!r[i].is_map && r[i].locked && r[i].accmode >= 0)
			mode = r[i].accmode;
	/* Otherwise any fd but the exporter's probe (always O_RDWR). */
	for (i = 0; mode < 0 && i < n; i++)
		if (!r[i].is_map && r[i].accmode >= 0 && r[i].pid != exp_pid)
			mode = r[i].accmode;
	switch (mode) {
	case O_RDONLY: return "ro";
	case O_WRONLY: return "wo";
	case O_RDWR: return "rw";
	default: return "?";
	}
}

static void build(void)
{
	size_t i = 0, j, k, cap = 0;

	/* qsort() must not be given NULL, even for zero elements. */
	if (n_recs)
		qsort(recs, n_recs, sizeof(*recs), cmp_rec);
	if (n_procs)
		qsort(procs, n_procs, sizeof(*procs), cmp_proc);
	while (i < n_recs) {
		struct buffer *b;
		const struct rec *first_fd = NULL;
		bool exp_listed = false;

		for (j = i; j < n_recs && recs[j].dev == recs[i].dev && recs[j].ino == recs[i].ino; j++)
			if (!recs[j].is_map && !first_fd)
				first_fd = &recs[j];
		bufs = grow(bufs, &cap, n_bufs + 1, sizeof(*bufs));
		b = &bufs[n_bufs++];
		memset(b, 0, sizeof(*b));
		b->dev = recs[i].dev;
		b->ino = recs[i].ino;
		/* an fd's name is exact; maps escape '\n' */
		b->name = first_fd ? first_fd->name : recs[i].name;
		b->have_size = first_fd != NULL;
		b->size = first_fd ? first_fd->size : 0;
		parse_name(b);
		b->access = access_of(&recs[i], j - i, b->exp_pid);

		for (k = i; k < j; ) {
			size_t e = k;
			struct holder *h;

			b->holders = reallocarray(b->holders, b->n_holders + 1, sizeof(*b->holders));
			if (!b->holders)
				oom();
			h = &b->holders[b->n_holders++];
			memset(h, 0, sizeof(*h));
			h->pid = recs[k].pid;
			h->comm = comm_of(h->pid);
			h->exporter = h->pid == b->exp_pid;
			exp_listed |= h->exporter;
			h->fds = &recs[k];
			while (e < j && recs[e].pid == h->pid) {
				const struct rec *r = &recs[e];

				if (r->is_map && r->internal) {
					h->n_views++;
					h->views_size += r->size;
				} else if (r->is_map) {
					h->n_maps++;
					h->mapped += r->size;
					h->rss += r->rss;
					h->pss += r->pss;
				} else {
					h->n_fds++;
				}
				e++;
			}
			k = e;
		}
		if (!b->exp_pid)
			b->exp_state = "unknown";
		else if (exp_listed)
			b->exp_state = "holds";
		else
			b->exp_state = kill(b->exp_pid, 0) == 0 || errno == EPERM ? "holds nothing"
										  : "gone";
		i = j;
	}
}

static bool holds(const struct buffer *b, pid_t pid)
{
	for (size_t i = 0; i < b->n_holders; i++)
		if (b->holders[i].pid == pid)
			return true;
	return false;
}

static bool comm_matches(const struct buffer *b, const char *pattern)
{
	for (size_t i = 0; i < b->n_holders; i++)
		if (b->holders[i].comm && fnmatch(pattern, b->holders[i].comm, 0) == 0)
			return true;
	return false;
}

/* Everything but --name, which needs the exporter's answer. */
static bool passes_local(const struct buffer *b, const struct filters *f)
{
	if (f->pid && !holds(b, f->pid))
		return false;
	if (f->exporter && fnmatch(f->exporter, b->exp_name, 0) != 0)
		return false;
	if (f->comm && !comm_matches(b, f->comm))
		return false;
	return true;
}

/* ------------------------------------------------------------ the query */

static void quiet_log(void *data, enum dmabuf_log_priority prio, const char *msg)
{
	(void)data;
	(void)prio;
	(void)msg;
}

/*
 * Opens the buffer through a holder's fd to prove possession: an fd of the
 * dma-buf file first, else any. A holder may close its fd after the scan,
 * so each is tried in turn. -ENOENT when none is left, -EBADF when no
 * holder had an fd (mapped only).
 */
static int open_buffer(const struct buffer *b)
{
	int err = -EBADF;

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < b->n_holders; i++)
			for (size_t k = 0; k < b->holders[i].n_fds; k++) {
				const struct rec *r = &b->holders[i].fds[k];
				char path[64];
				struct stat st;
				int fd;

				if (r->locked != (pass == 0))
					continue;
				if (err == -EBADF)
					err = -ENOENT;
				snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)r->pid, r->fd);
				fd = open(path, O_RDONLY | O_CLOEXEC);
				if (fd < 0) {
					if (errno != ENOENT)
						err = -errno;
					continue;
				}
				/* the same buffer, not a new file under a reused number */
				if (fstat(fd, &st) == 0 && st.st_dev == b->dev && st.st_ino == b->ino)
					return fd;
				close(fd);
			}
	return err;
}

static void query_one(struct dmabuf_ctx *ctx, struct buffer *b)
{
	struct dmabuf *buf = NULL;
	int fd, ret;

	fd = open_buffer(b);
	if (fd < 0) {
		b->q = Q_FAILED;
		b->q_err = fd;
		return;
	}
	ret = dmabuf_get(ctx, fd, &buf);
	if (ret == 0) {
		b->info.struct_size = sizeof(b->info);
		ret = dmabuf_get_info(buf, &b->info);
		dmabuf_put(buf);
	}
	close(fd);
	b->q = ret == 0 ? Q_OK : Q_FAILED;
	b->q_err = ret;
}

/* Asks each shown buffer's exporter; one that times out is not asked again. */
static void query(unsigned int timeout_ms)
{
	struct dmabuf_ctx_config cfg = {
		.struct_size = sizeof(cfg), .log_fn = quiet_log,
		.call_timeout_ms = timeout_ms,
	};
	struct dmabuf_ctx *ctx;
	pid_t *dead = NULL;
	size_t n_dead = 0, cap_dead = 0;

	if (dmabuf_ctx_new(&cfg, &ctx) < 0) {
		fputs("dmabuf-ls: cannot create a libdmabuf context; not asking exporters\n",
		      stderr);
		return;
	}
	for (size_t i = 0; i < n_bufs; i++) {
		struct buffer *b = &bufs[i];
		bool skip = !b->exp_pid || strcmp(b->exp_state, "gone") == 0;

		if (!b->shown)
			continue;
		for (size_t k = 0; k < n_dead && !skip; k++)
			skip = dead[k] == b->exp_pid;
		if (skip) {
			b->q = Q_FAILED;
			b->q_err = b->exp_pid && strcmp(b->exp_state, "gone") ? -ETIMEDOUT : -ENODEV;
			continue;
		}
		query_one(ctx, b);
		if (b->q == Q_FAILED && b->q_err == -ETIMEDOUT) {
			dead = grow(dead, &cap_dead, n_dead + 1, sizeof(*dead));
			dead[n_dead++] = b->exp_pid;
		}
	}
	free(dead);
	dmabuf_ctx_destroy(ctx);
}

/* ------------------------------------------------------------ totals */

static struct total *totals;
static size_t n_totals;

static struct total *total_of(pid_t pid, const char *comm)
{
	static size_t cap;

	for (size_t i = 0; i < n_totals; i++)
		if (totals[i].pid == pid)
			return &totals[i];
	totals = grow(totals, &cap, n_totals + 1, sizeof(*totals));
	memset(&totals[n_totals], 0, sizeof(*totals));
	totals[n_totals].pid = pid;
	totals[n_totals].comm = comm;
	return &totals[n_totals++];
}

static int cmp_total(const void *a, const void *b)
{
	const struct total *x = a, *y = b;

	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static void sum_up(void)
{
	for (size_t i = 0; i < n_bufs; i++) {
		const struct buffer *b = &bufs[i];

		if (!b->shown)
			continue;
		for (size_t k = 0; k < b->n_holders; k++) {
			const struct holder *h = &b->holders[k];
			struct total *t = total_of(h->pid, h->comm);

			t->buffers++;
			t->fds += h->n_fds;
			t->maps += h->n_maps;
			t->views += h->n_views;
			t->buf_size += b->size;
			t->mapped += h->mapped;
			t->rss += h->rss;
			t->pss += h->pss;
		}
	}
	if (n_totals)
		qsort(totals, n_totals, sizeof(*totals), cmp_total);
}

/* ------------------------------------------------------------ text */

/* Writes s with anything unprintable as \xHH; for dot, '"' and '\' too. */
static void put_escaped(FILE *out, const char *s, bool dot)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p >= 0x7f)
			fprintf(out, dot ? "\\\\x%02x" : "\\x%02x", *p);
		else if (dot && (*p == '"' || *p == '\\'))
			fprintf(out, "\\%c", *p);
		else
			fputc(*p, out);
	}
}

static size_t escaped_len(const char *s)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += (*p < 0x20 || *p >= 0x7f) ? 4 : 1;
	return n;
}

static void put_padded(FILE *out, const char *s, size_t width)
{
	size_t n = escaped_len(s);

	put_escaped(out, s, false);
	for (; n < width; n++)
		fputc(' ', out);
}

static const char *fd_role(const struct holder *h, const struct rec *r)
{
	if (r->locked)
		return "file";
	return h->exporter ? "probe" : "fd";
}

/* "3,4,7(probe)" or "-". */
static void put_fds(FILE *out, const struct holder *h)
{
	if (!h->n_fds) {
		fputc('-', out);
		return;
	}
	for (size_t i = 0; i < h->n_fds; i++)
		fprintf(out, "%s%d%s", i ? "," : "", h->fds[i].fd,
			h->exporter && !h->fds[i].locked ? "(probe)" : "");
}

static void put_query(FILE *out, const struct buffer *b)
{
	const struct dmabuf_info *in = &b->info;

	if (b->q == Q_NOT_ASKED) {
		fputs("  exporter not asked (--no-query)\n", out);
		return;
	}
	if (b->q == Q_FAILED && b->q_err == -ENOENT) {
		fputs("  exporter not asked: released, or its fds closed, since the scan\n", out);
		return;
	}
	if (b->q == Q_FAILED && b->q_err == -EBADF) {
		fputs("  exporter not asked: no process holds an fd of it to prove possession\n",
		      out);
		return;
	}
	if (b->q == Q_FAILED) {
		fprintf(out, "  exporter did not describe it: %s\n", strerror(-b->q_err));
		return;
	}
	/* as the kernel's fdinfo: a name once one was set, even "" */
	if (in->name_set) {
		fputs("  name \"", out);
		put_escaped(out, in->name, false);
		fputs("\"", out);
	} else {
		fputs("  no name", out);
	}
	fprintf(out, ", %u attachment%s, %u device mapping%s, %u vmap%s, backing %s%s\n",
		in->attachments, in->attachments == 1 ? "" : "s", in->mappings,
		in->mappings == 1 ? "" : "s", in->vmap_count, in->vmap_count == 1 ? "" : "s",
		in->backing_allocated ? "allocated" : "not allocated",
		in->backing_allocated ? (in->contiguous ? ", contiguous" : ", scattered") : "");
}

static void print_text(FILE *out)
{
	uint64_t total = 0, mapped = 0, pss = 0;
	size_t shown = 0;

	fprintf(out, "%-10s %-12s %-6s %-8s %s\n", "INODE", "SIZE", "ACCESS", "EXP-PID",
		"EXPORTER");
	fprintf(out, "  %-8s %-16s %5s %12s %12s %12s %5s  %s\n", "PID", "COMM", "MAPS",
		"MAPPED", "RSS", "PSS", "VIEWS", "FDS");
	for (size_t i = 0; i < n_bufs; i++) {
		const struct buffer *b = &bufs[i];
		char num[32];

		if (!b->shown)
			continue;
		shown++;
		if (b->have_size) {
			snprintf(num, sizeof(num), "%" PRIu64, b->size);
			total += b->size;
		} else {
			snprintf(num, sizeof(num), "?");
		}
		fprintf(out, "%-10ju %-12s %-6s ", (uintmax_t)b->ino, num, b->access);
		if (b->exp_pid)
			fprintf(out, "%-8d ", (int)b->exp_pid);
		else
			fprintf(out, "%-8s ", "?");
		put_escaped(out, b->exp_name[0] ? b->exp_name : "-", false);
		fputc('\n', out);
		put_query(out, b);
		for (size_t k = 0; k < b->n_holders; k++) {
			const struct holder *h = &b->holders[k];

			fprintf(out, "  %-8d ", (int)h->pid);
			put_padded(out, h->comm ? h->comm : "?", 16);
			fprintf(out, " %5zu %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %5zu  ",
				h->n_maps, h->mapped, h->rss, h->pss, h->n_views);
			put_fds(out, h);
			if (h->exporter)
				fputs("  [exporter]", out);
			fputc('\n', out);
			mapped += h->mapped;
			pss += h->pss;
		}
		if (strcmp(b->exp_state, "holds") && b->exp_pid)
			fprintf(out, "  %-8d %-16s  [exporter, %s]\n", (int)b->exp_pid, "-",
				b->exp_state);
	}
	if (n_totals) {
		fputs("\nPER PROCESS\n", out);
		fprintf(out, "  %-8s %-16s %7s %5s %5s %5s %12s %12s %12s %12s\n", "PID", "COMM",
			"BUFFERS", "FDS", "MAPS", "VIEWS", "SIZE", "MAPPED", "RSS", "PSS");
		for (size_t i = 0; i < n_totals; i++) {
			const struct total *t = &totals[i];

			fprintf(out, "  %-8d ", (int)t->pid);
			put_padded(out, t->comm ? t->comm : "?", 16);
			fprintf(out, " %7zu %5zu %5zu %5zu %12" PRIu64 " %12" PRIu64 " %12" PRIu64
				" %12" PRIu64 "\n", t->buffers, t->fds, t->maps, t->views,
				t->buf_size, t->mapped, t->rss, t->pss);
		}
		fprintf(out, "mapped %" PRIu64 " bytes, PSS %" PRIu64 " bytes\n", mapped, pss);
	}
	fprintf(out, "%zu buffer%s, %" PRIu64 " bytes\n", shown, shown == 1 ? "" : "s", total);
}

/* ------------------------------------------------------------ JSON */

static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			/* names are bytes, not UTF-8: one code point per byte */
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void print_json(FILE *out)
{
	uint64_t total = 0, mapped = 0, pss = 0;
	size_t shown = 0;
	bool first = true;

	fputs("{\n  \"version\": ", out);
	json_str(out, DMABUF_VERSION_STRING);
	fputs(",\n  \"buffers\": [", out);
	for (size_t i = 0; i < n_bufs; i++) {
		const struct buffer *b = &bufs[i];

		if (!b->shown)
			continue;
		shown++;
		total += b->size;
		fprintf(out, "%s\n    {\"inode\": %ju, \"dev\": \"%u:%u\", \"size\": ",
			first ? "" : ",", (uintmax_t)b->ino, major(b->dev), minor(b->dev));
		first = false;
		if (b->have_size)
			fprintf(out, "%" PRIu64, b->size);
		else
			fputs("null", out);
		fprintf(out, ", \"access\": \"%s\", \"exporter\": ", b->access);
		json_str(out, b->exp_name);
		if (b->exp_pid)
			fprintf(out, ", \"exporter_pid\": %d", (int)b->exp_pid);
		else
			fputs(", \"exporter_pid\": null", out);
		fprintf(out, ", \"exporter_state\": \"%s\",\n     \"query\": ", b->exp_state);
		if (b->q == Q_OK) {
			const struct dmabuf_info *in = &b->info;

			fputs("\"ok\", \"name\": ", out);
			if (in->name_set)
				json_str(out, in->name);
			else
				fputs("null", out);
			fprintf(out, ", \"attachments\": %u, \"device_mappings\": %u, \"vmaps\": %u"
				", \"backing_allocated\": %s, \"contiguous\": %s",
				in->attachments, in->mappings, in->vmap_count,
				in->backing_allocated ? "true" : "false",
				in->contiguous ? "true" : "false");
		} else if (b->q == Q_FAILED) {
			fputs("\"failed\", \"error\": ", out);
			json_str(out, strerror(-b->q_err));
		} else {
			fputs("\"not asked\"", out);
		}
		fputs(",\n     \"holders\": [", out);
		for (size_t k = 0; k < b->n_holders; k++) {
			const struct holder *h = &b->holders[k];

			fprintf(out, "%s\n       {\"pid\": %d, \"comm\": ", k ? "," : "", (int)h->pid);
			json_str(out, h->comm ? h->comm : "?");
			fprintf(out, ", \"exporter\": %s, \"fds\": [", h->exporter ? "true" : "false");
			for (size_t f = 0; f < h->n_fds; f++) {
				const struct rec *r = &h->fds[f];
				const char *acc = r->accmode == O_RDONLY ? "ro"
						  : r->accmode == O_WRONLY ? "wo"
						  : r->accmode == O_RDWR ? "rw" : "?";

				fprintf(out, "%s{\"fd\": %d, \"access\": \"%s\", \"role\": \"%s\"}",
					f ? ", " : "", r->fd, acc, fd_role(h, r));
			}
			fprintf(out, "], \"maps\": %zu, \"mapped\": %" PRIu64 ", \"rss\": %" PRIu64
				", \"pss\": %" PRIu64 ", \"views\": %zu, \"views_size\": %" PRIu64 "}",
				h->n_maps, h->mapped, h->rss, h->pss, h->n_views, h->views_size);
			mapped += h->mapped;
			pss += h->pss;
		}
		fputs("]}", out);
	}
	fputs("\n  ],\n  \"processes\": [", out);
	for (size_t i = 0; i < n_totals; i++) {
		const struct total *t = &totals[i];

		fprintf(out, "%s\n    {\"pid\": %d, \"comm\": ", i ? "," : "", (int)t->pid);
		json_str(out, t->comm ? t->comm : "?");
		fprintf(out, ", \"buffers\": %zu, \"fds\": %zu, \"maps\": %zu, \"views\": %zu"
			", \"size\": %" PRIu64 ", \"mapped\": %" PRIu64 ", \"rss\": %" PRIu64
			", \"pss\": %" PRIu64 "}", t->buffers, t->fds, t->maps, t->views,
			t->buf_size, t->mapped, t->rss, t->pss);
	}
	fprintf(out, "\n  ],\n  \"total\": {\"buffers\": %zu, \"size\": %" PRIu64
		", \"mapped\": %" PRIu64 ", \"pss\": %" PRIu64 "}\n}\n", shown, total, mapped, pss);
}

/* ------------------------------------------------------------ Graphviz */

/*
 * One cluster per exporter (name and process). Inside, the buffers that
 * the same processes hold in the same roles are one node: a table of
 * up to ~sqrt(n) columns, so 100 frames of one pipeline are one square
 * block with one edge per holder, not 100 nodes and 300 edges in a strip.
 */
static void html_escaped(FILE *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '&')
			fputs("&amp;", out);
		else if (*p == '<')
			fputs("&lt;", out);
		else if (*p == '>')
			fputs("&gt;", out);
		else if (*p == '"')
			fputs("&quot;", out);
		else if (*p < 0x20 || *p >= 0x7f)
			fprintf(out, "\\x%02x", *p);
		else
			fputc(*p, out);
	}
}

static bool same_exporter(const struct buffer *a, const struct buffer *b)
{
	return a->exp_pid == b->exp_pid && strcmp(a->exp_name, b->exp_name) == 0;
}

static bool same_holders(const struct buffer *a, const struct buffer *b)
{
	if (a->n_holders != b->n_holders)
		return false;
	for (size_t k = 0; k < a->n_holders; k++)
		if (a->holders[k].pid != b->holders[k].pid ||
		    a->holders[k].exporter != b->holders[k].exporter)
			return false;
	return true;
}

static void size_str(char *buf, size_t cap, uint64_t v)
{
	if (v >= (1ull << 20) && v % (1ull << 20) == 0)
		snprintf(buf, cap, "%" PRIu64 " MiB", v >> 20);
	else if (v >= 1024 && v % 1024 == 0)
		snprintf(buf, cap, "%" PRIu64 " KiB", v >> 10);
	else
		snprintf(buf, cap, "%" PRIu64 " B", v);
}

static void dot_proc_node(FILE *out, pid_t pid, const char *comm, bool gone,
			  pid_t *seen, size_t *n_seen)
{
	for (size_t i = 0; i < *n_seen; i++)
		if (seen[i] == pid)
			return;
	seen[(*n_seen)++] = pid;
	fprintf(out, "  \"p%d\" [shape=box, style=\"rounded%s\", label=\"pid %d\\n", (int)pid,
		gone ? ",dashed" : "", (int)pid);
	put_escaped(out, comm ? comm : "?", true);
	fprintf(out, "%s\"];\n", gone ? "\\n(gone)" : "");
}

static void dot_buffer_cell(FILE *out, const struct buffer *b)
{
	char sz[32];

	size_str(sz, sizeof(sz), b->size);
	fprintf(out, "<TD>ino %ju<BR/>%s %s", (uintmax_t)b->ino, b->have_size ? sz : "?",
		b->access);
	if (b->q == Q_OK && b->info.name_set && b->info.name[0]) {
		fputs("<BR/>", out);
		html_escaped(out, b->info.name);
	}
	if (b->q == Q_OK && b->info.attachments)
		fprintf(out, "<BR/>%u att, %u map", b->info.attachments, b->info.mappings);
	fputs("</TD>", out);
}

static void print_dot(FILE *out)
{
	size_t n = 0, max = 0, cluster = 0;
	size_t *group;		/* bufs index -> group number + 1 (0: none yet) */
	pid_t *seen;
	size_t n_seen = 0;

	for (size_t i = 0; i < n_bufs; i++)
		max += bufs[i].n_holders + 1;
	seen = calloc(max ? max : 1, sizeof(*seen));
	group = calloc(n_bufs ? n_bufs : 1, sizeof(*group));
	if (!seen || !group)
		oom();
	fputs("digraph dmabuf {\n  rankdir=LR;\n  newrank=true;\n"
	      "  node [fontname=\"monospace\", fontsize=10];\n"
	      "  edge [fontname=\"monospace\", fontsize=9];\n", out);
	/* Process nodes first, outside every cluster. */
	for (size_t i = 0; i < n_bufs; i++) {
		const struct buffer *b = &bufs[i];

		if (!b->shown)
			continue;
		for (size_t k = 0; k < b->n_holders; k++)
			dot_proc_node(out, b->holders[k].pid, b->holders[k].comm, false, seen,
				      &n_seen);
		if (b->exp_pid && strcmp(b->exp_state, "holds")) {
			char comm[64];

			read_comm(b->exp_pid, comm, sizeof(comm));
			dot_proc_node(out, b->exp_pid, comm, strcmp(b->exp_state, "gone") == 0,
				      seen, &n_seen);
		}
	}
	for (size_t i = 0; i < n_bufs; i++) {
		const struct buffer *b = &bufs[i];
		size_t g0 = n;

		if (!b->shown || group[i])
			continue;
		/* a new exporter: its cluster holds all of its groups */
		fprintf(out, "  subgraph \"cluster_%zu\" {\n    label=\"", cluster++);
		put_escaped(out, b->exp_name[0] ? b->exp_name : "-", true);
		if (b->exp_pid)
			fprintf(out, " (exporter pid %d)", (int)b->exp_pid);
		fputs("\";\n    style=rounded;\n", out);
		for (size_t j = i; j < n_bufs; j++) {
			const struct buffer *lead = &bufs[j];
			size_t members = 0, cols, col = 0;
			uint64_t bytes = 0;

			if (!lead->shown || group[j] || !same_exporter(lead, b))
				continue;
			n++;
			for (size_t m = j; m < n_bufs; m++)
				if (bufs[m].shown && !group[m] && same_exporter(&bufs[m], b) &&
				    same_holders(&bufs[m], lead)) {
					group[m] = n;
					members++;
					bytes += bufs[m].size;
				}
			for (cols = 1; cols * cols < members; cols++)
				;
			fprintf(out, "    \"g%zu\" [shape=plain, label=<<TABLE BORDER=\"1\" "
				"CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"3\">", n);
			if (members > 1) {
				char sz[32];

				size_str(sz, sizeof(sz), bytes);
				fprintf(out, "<TR><TD COLSPAN=\"%zu\"><B>%zu buffers, %s</B></TD></TR>",
					cols, members, sz);
			}
			for (size_t m = j; m < n_bufs; m++) {
				if (group[m] != n)
					continue;
				if (col == 0)
					fputs("<TR>", out);
				dot_buffer_cell(out, &bufs[m]);
				if (++col == cols) {
					fputs("</TR>", out);
					col = 0;
				}
			}
			if (col) {
				for (; col < cols; col++)
					fputs("<TD></TD>", out);
				fputs("</TR>", out);
			}
			fputs("</TABLE>>];\n", out);
		}
		fputs("  }\n", out);
		/* one edge per holder and group */
		for (size_t g = g0 + 1; g <= n; g++) {
			const struct buffer *lead = NULL;
			size_t members = 0;

			for (size_t m = 0; m < n_bufs; m++)
				if (group[m] == g) {
					lead = lead ? lead : &bufs[m];
					members++;
				}
			for (size_t k = 0; k < lead->n_holders; k++) {
				const struct holder *h0 = &lead->holders[k];
				size_t fds = 0, maps = 0;
				uint64_t mapped = 0;
				char sz[32];

				for (size_t m = 0; m < n_bufs; m++)
					if (group[m] == g) {
						fds += bufs[m].holders[k].n_fds;
						maps += bufs[m].holders[k].n_maps;
						mapped += bufs[m].holders[k].mapped;
					}
				size_str(sz, sizeof(sz), mapped);
				fprintf(out, "  \"p%d\" -> \"g%zu\" [label=\"%s", (int)h0->pid, g,
					h0->exporter ? "exports\\n" : "");
				if (members == 1) {
					fputs("fds ", out);
					put_fds(out, h0);
				} else {
					fprintf(out, "%zu fds", fds);
				}
				fprintf(out, "\\n%zu map%s, %s\"%s];\n", maps, maps == 1 ? "" : "s", sz,
					h0->exporter ? ", style=bold" : "");
			}
			if (lead->exp_pid && strcmp(lead->exp_state, "holds"))
				fprintf(out, "  \"p%d\" -> \"g%zu\" [label=\"exports\", style=dashed];\n",
					(int)lead->exp_pid, g);
		}
	}
	fputs("}\n", out);
	free(group);
	free(seen);
}

/* ------------------------------------------------------------ main */

static void usage(FILE *out)
{
	fputs("Usage: dmabuf-ls [OPTION]...\n"
	      "Lists every libdmabuf buffer visible in /proc: inode, size, access, exporter,\n"
	      "name, attachments, and each process holding it with its fds, mappings, RSS\n"
	      "and PSS; then the totals per process.\n"
	      "\n"
	      "  -j, --json             JSON instead of a table\n"
	      "      --dot              a Graphviz digraph, one cluster per exporter\n"
	      "  -p, --pid PID          only buffers that process PID holds (fd or mapping)\n"
	      "  -e, --exporter PATTERN only buffers whose exporter name matches (glob)\n"
	      "  -n, --name PATTERN     only buffers whose name matches (glob; asks exporters)\n"
	      "  -c, --comm PATTERN     only buffers a process of that command holds (glob)\n"
	      "      --no-query         do not ask exporters (no names, no attachments)\n"
	      "  -t, --timeout MS       how long to wait for an exporter (default 1000)\n"
	      "  -V, --version          print the version\n"
	      "  -h, --help             this help\n", out);
}

static void free_all(void)
{
	for (size_t i = 0; i < n_bufs; i++)
		free(bufs[i].holders);
	free(bufs);
	for (size_t i = 0; i < n_recs; i++)
		free(recs[i].name);
	free(recs);
	free(procs);
	free(totals);
}

/* A --pid that names no process, or one we may not read, is an error. */
static int check_pid(pid_t pid)
{
	char path[64];
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (access(path, F_OK) < 0) {
		fprintf(stderr, "dmabuf-ls: no process with pid %d\n", (int)pid);
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "dmabuf-ls: cannot read /proc/%d/fd: %s\n", (int)pid,
			strerror(errno));
		return -1;
	}
	closedir(d);
	return 0;
}

int main(int argc, char **argv)
{
	enum { OPT_DOT = 256, OPT_NO_QUERY };
	static const struct option opts[] = {
		{ "dot", no_argument, NULL, OPT_DOT },
		{ "json", no_argument, NULL, 'j' },
		{ "pid", required_argument, NULL, 'p' },
		{ "exporter", required_argument, NULL, 'e' },
		{ "name", required_argument, NULL, 'n' },
		{ "comm", required_argument, NULL, 'c' },
		{ "no-query", no_argument, NULL, OPT_NO_QUERY },
		{ "timeout", required_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct filters f = { 0 };
	bool dot = false, json = false, ask = true;
	unsigned int timeout_ms = 1000;
	int c;

	while ((c = getopt_long(argc, argv, "jp:e:n:c:t:Vh", opts, NULL)) != -1) {
		switch (c) {
		case OPT_DOT:
			dot = true;
			break;
		case 'j':
			json = true;
			break;
		case 'p':
			if (!parse_pid(optarg, &f.pid)) {
				fprintf(stderr, "dmabuf-ls: bad pid '%s'\n", optarg);
				return 1;
			}
			break;
		case 'e':
			f.exporter = optarg;
			break;
		case 'n':
			f.name = optarg;
			break;
		case 'c':
			f.comm = optarg;
			break;
		case OPT_NO_QUERY:
			ask = false;
			break;
		case 't': {
			pid_t v;

			if (!parse_pid(optarg, &v) || v > 600000) {
				fprintf(stderr, "dmabuf-ls: bad timeout '%s' (1..600000 ms)\n", optarg);
				return 1;
			}
			timeout_ms = (unsigned int)v;
			break;
		}
		case 'V': {
			/* built with these headers; the library loaded may be newer */
			unsigned int v = dmabuf_version();

			printf("dmabuf-ls (libdmabuf) %s, library %u.%u.%u\n", DMABUF_VERSION_STRING,
			       v >> 16, (v >> 8) & 0xff, v & 0xff);
			return 0;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "dmabuf-ls: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 1;
	}
	if (dot && json) {
		fputs("dmabuf-ls: --dot and --json exclude each other\n", stderr);
		return 1;
	}
	if (f.name && !ask) {
		fputs("dmabuf-ls: --name needs the exporters' answer; drop --no-query\n", stderr);
		return 1;
	}
	if (f.pid && check_pid(f.pid) < 0)
		return 1;

	scan();
	build();
	for (size_t i = 0; i < n_bufs; i++)
		bufs[i].shown = passes_local(&bufs[i], &f);
	if (ask)
		query(timeout_ms);
	for (size_t i = 0; f.name && i < n_bufs; i++)
		bufs[i].shown &= bufs[i].q == Q_OK && bufs[i].info.name_set &&
				 fnmatch(f.name, bufs[i].info.name, 0) == 0;
	sum_up();
	if (dot)
		print_dot(stdout);
	else if (json)
		print_json(stdout);
	else
		print_text(stdout);
	fflush(stdout);
	free_all();
	return ferror(stdout) ? 1 : 0;
}
