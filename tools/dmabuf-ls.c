/* SPDX-License-Identifier: MIT */
/*
 * dmabuf-ls: lists every libdmabuf buffer this user can see, with its
 * exporter and every process that holds it, as the kernel's
 * /sys/kernel/debug/dma_buf/bufinfo does for real dma-bufs, but without root.
 *
 * Everything comes from /proc; no buffer is opened, so the scan neither keeps
 * a buffer alive nor disturbs the exporter's release probe:
 *  - /proc/<pid>/fd/<n>: readlink gives "/memfd:dmabuf:<exp>@<endpoint>
 *    (deleted)", stat gives the buffer's identity (st_dev, st_ino) and size;
 *  - /proc/<pid>/fdinfo/<n>: the open flags (read-only or read-write), the
 *    inode (to catch an fd number reused mid-scan), and a "lock:" line for an
 *    fd of the dma-buf file, whose holders all share a flock(LOCK_SH); the
 *    exporter's private probe OFD has no lock;
 *  - /proc/<pid>/maps: mappings, by device and inode.
 * The endpoint is "dmabuf-<exporter pid>-<16 hex>".
 *
 * Processes come and go during the scan: whatever vanishes or is not
 * readable is skipped.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
	uint64_t size;		/* fd records: st_size; map records: length */
	char *name;		/* memfd name without "/memfd:" and " (deleted)" */
};

struct proc {
	pid_t pid;
	char comm[64];
};

/* A process's share of one buffer. */
struct holder {
	pid_t pid;
	const char *comm;
	const struct rec *fds;	/* n_fds fd records, sorted by fd */
	size_t n_fds;
	size_t n_maps;
	uint64_t mapped;
	bool exporter;
};

struct buffer {
	dev_t dev;
	ino_t ino;
	const char *name;	/* the full memfd name */
	char exp_name[256];
	pid_t exp_pid;		/* 0 when the endpoint cannot be parsed */
	bool have_size;
	uint64_t size;
	const char *access;	/* "rw", "ro", "wo" or "?" */
	struct holder *holders;
	size_t n_holders;
};

static struct rec *recs;
static size_t n_recs, cap_recs;
static struct proc *procs;
static size_t n_procs, cap_procs;

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

static void scan_fds(pid_t pid)
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
		return;		/* gone, or not ours to read */
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
}

static void scan_maps(pid_t pid)
{
	char path[64];
	char *line = NULL;
	size_t cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long start, end, off, ino;
		unsigned int maj, min;
		char perms[8], *p;
		const char *name;
		struct rec *r;
		size_t len;
		int pos = 0;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms,
			   &off, &maj, &min, &ino, &pos) < 7 || pos == 0)
			continue;
		p = line + pos;
		len = strlen(p);
		if (len && p[len - 1] == '\n')
			p[--len] = '\0';
		name = buffer_name(p);
		if (!name || end < start)
			continue;
		r = new_rec();
		r->dev = makedev(maj, min);
		r->ino = (ino_t)ino;
		r->pid = pid;
		r->is_map = true;
		r->fd = -1;
		r->accmode = -1;
		r->size = end - start;
		r->name = xstrdup(name);
	}
	free(line);
	fclose(f);
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
	while ((de = readdir(d))) {
		size_t before;

		if (!parse_pid(de->d_name, &pid))
			continue;
		before = n_recs;
		scan_fds(pid);
		scan_maps(pid);
		if (n_recs == before)
			continue;
		procs = grow(procs, &cap_procs, n_procs + 1, sizeof(*procs));
		procs[n_procs].pid = pid;
		read_comm(pid, procs[n_procs].comm, sizeof(procs[n_procs].comm));
		n_procs++;
	}
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

static struct buffer *bufs;
static size_t n_bufs;

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
			h->fds = &recs[k];
			while (e < j && recs[e].pid == h->pid) {
				if (recs[e].is_map) {
					h->n_maps++;
					h->mapped += recs[e].size;
				} else {
					h->n_fds++;
				}
				e++;
			}
			k = e;
		}
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

static void print_text(FILE *out, pid_t only)
{
	uint64_t total = 0;
	size_t shown = 0;

	fprintf(out, "%-10s %-12s %-6s %-8s %s\n", "INODE", "SIZE", "ACCESS", "EXP-PID",
		"EXPORTER");
	fprintf(out, "  %-8s %-16s %5s %12s  %s\n", "PID", "COMM", "MAPS", "MAPPED", "FDS");
	for (size_t i = 0; i < n_bufs; i++) {
		const struct buffer *b = &bufs[i];
		bool exp_listed = false;
		char num[32];

		if (only && !holds(b, only))
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
		for (size_t k = 0; k < b->n_holders; k++) {
			const struct holder *h = &b->holders[k];

			fprintf(out, "  %-8d ", (int)h->pid);
			put_padded(out, h->comm ? h->comm : "?", 16);
			fprintf(out, " %5zu %12" PRIu64 "  ", h->n_maps, h->mapped);
			put_fds(out, h);
			if (h->exporter) {
				fputs("  [exporter]", out);
				exp_listed = true;
			}
			fputc('\n', out);
		}
		if (b->exp_pid && !exp_listed)
			fprintf(out, "  %-8d %-16s  [exporter, %s]\n", (int)b->exp_pid, "-",
				kill(b->exp_pid, 0) == 0 || errno == EPERM ? "holds nothing"
									   : "gone");
	}
	fprintf(out, "%zu buffer%s, %" PRIu64 " bytes\n", shown, shown == 1 ? "" : "s", total);
}

static void dot_proc_node(FILE *out, pid_t pid, const char *comm, bool gone,
			  pid_t *seen, size_t *n_seen)
{
	for (size_t i = 0; i < *n_seen; i++)
		if (seen[i] == pid)
			return;
	seen[(*n_seen)++] = pid;
	fprintf(out, "  \"p%d\" [shape=box, label=\"pid %d\\n", (int)pid, (int)pid);
	put_escaped(out, comm ? comm : "?", true);
	fprintf(out, "%s\"%s];\n", gone ? "\\n(gone)" : "", gone ? ", style=dashed" : "");
}

static void print_dot(FILE *out, pid_t only)
{
	pid_t *seen;
	size_t n_seen = 0, max = 0;

	for (size_t i = 0; i < n_bufs; i++)
		max += bufs[i].n_holders + 1;
	seen = calloc(max ? max : 1, sizeof(*seen));
	if (!seen)
		oom();
	fputs("digraph dmabuf {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n"
	      "  edge [fontname=\"monospace\", fontsize=10];\n", out);
	for (size_t i = 0; i < n_bufs; i++) {
		const struct buffer *b = &bufs[i];
		bool exp_listed = false;
		char id[64];

		if (only && !holds(b, only))
			continue;
		snprintf(id, sizeof(id), "b%ju_%ju", (uintmax_t)b->dev, (uintmax_t)b->ino);
		fprintf(out, "  \"%s\" [shape=ellipse, label=\"", id);
		put_escaped(out, b->exp_name, true);
		fprintf(out, "\\nino %ju\\n", (uintmax_t)b->ino);
		if (b->have_size)
			fprintf(out, "%" PRIu64 " bytes", b->size);
		else
			fputs("? bytes", out);
		fprintf(out, " %s\"];\n", b->access);
		for (size_t k = 0; k < b->n_holders; k++) {
			const struct holder *h = &b->holders[k];

			dot_proc_node(out, h->pid, h->comm, false, seen, &n_seen);
			fprintf(out, "  \"p%d\" -> \"%s\" [label=\"%s", (int)h->pid, id,
				h->exporter ? "exports\\n" : "");
			if (h->exporter)
				exp_listed = true;
			fputs("fds ", out);
			put_fds(out, h);
			fprintf(out, "\\n%zu map%s, %" PRIu64 " bytes\"%s];\n", h->n_maps,
				h->n_maps == 1 ? "" : "s", h->mapped,
				h->exporter ? ", style=bold" : "");
		}
		if (b->exp_pid && !exp_listed) {
			bool gone = kill(b->exp_pid, 0) < 0 && errno == ESRCH;
			char comm[64];

			read_comm(b->exp_pid, comm, sizeof(comm));
			dot_proc_node(out, b->exp_pid, comm, gone, seen, &n_seen);
			fprintf(out, "  \"p%d\" -> \"%s\" [label=\"exports\", style=dashed];\n",
				(int)b->exp_pid, id);
		}
	}
	fputs("}\n", out);
	free(seen);
}

static void usage(FILE *out)
{
	fputs("Usage: dmabuf-ls [--dot] [--pid PID]\n"
	      "Lists every libdmabuf buffer visible in /proc: its inode, size, access,\n"
	      "exporter, and each process holding it with its fds and mappings.\n"
	      "\n"
	      "  --dot        print a Graphviz digraph instead of a table\n"
	      "  -p, --pid PID  only buffers that process PID holds (fd or mapping)\n"
	      "  -h, --help   this help\n", out);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dot", no_argument, NULL, 'd' },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool dot = false;
	pid_t only = 0;
	int c;

	while ((c = getopt_long(argc, argv, "p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dot = true;
			break;
		case 'p':
			if (!parse_pid(optarg, &only)) {
				fprintf(stderr, "dmabuf-ls: bad pid '%s'\n", optarg);
				return 1;
			}
			break;
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

	scan();
	build();
	if (dot)
		print_dot(stdout, only);
	else
		print_text(stdout, only);
	fflush(stdout);

	for (size_t i = 0; i < n_bufs; i++)
		free(bufs[i].holders);
	free(bufs);
	for (size_t i = 0; i < n_recs; i++)
		free(recs[i].name);
	free(recs);
	free(procs);
	return 0;
}
