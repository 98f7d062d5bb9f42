/* SPDX-License-Identifier: MIT */
/*
 * The emulated tree and the identity of fds.
 *
 * The paths the kernel would provide (/dev/dma_heap/<name>, /dev/udmabuf,
 * /dev/sw_sync, /sys/kernel/debug/sync/sw_sync) are real files in a real
 * directory, the root (<DMABUF_UAPI_ROOT or /tmp/dmabuf-uapi-<uid>>/<cma heap
 * name>). Programs' paths are redirected
 * there, so stat, access, opendir and readdir simply work, and a heap or
 * udmabuf fd is recognised by its inode (st_dev, st_ino) in any process that
 * uses the same root: dup'd, inherited and received fds included.
 *
 * sw_sync needs one timeline per open, so its fd is a fresh memfd named
 * "dmabuf-uapi-sw_sync" instead (timelines.c). Buffers are libdmabuf memfds
 * ("dmabuf:<exp>@<endpoint>"), sync files libdmabuf's sockets, bound to an
 * abstract address starting with "dmabuf-sync-file/".
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <dmabuf.h>

#include "core.h"

#define SYNC_FILE_PREFIX "dmabuf-sync-file/"
#define BUFFER_PREFIX "/memfd:dmabuf:"
#define SW_SYNC_NAME "dmabuf-uapi-sw_sync"

struct tree_entry {
	const char *path;	/* as the program names it */
	enum dmb_uapi_kind kind;
	const char *heap;	/* library heap for DMB_UAPI_HEAP */
	bool dir;
	dev_t dev;
	ino_t ino;
};

static struct dmb_uapi_config config;
static char cma_path[96];
static struct tree_entry tree[] = {
	{ "/dev/dma_heap", DMB_UAPI_DIR, NULL, true, 0, 0 },
	{ "/dev/dma_heap/system", DMB_UAPI_HEAP, "system", false, 0, 0 },
	{ cma_path, DMB_UAPI_HEAP, "cma", false, 0, 0 },
	{ "/dev/udmabuf", DMB_UAPI_UDMABUF, NULL, false, 0, 0 },
	{ "/dev/sw_sync", DMB_UAPI_SW_SYNC, NULL, false, 0, 0 },
	{ "/sys/kernel/debug/sync/sw_sync", DMB_UAPI_SW_SYNC, NULL, false, 0, 0 },
};
#define NTREE (sizeof(tree) / sizeof(tree[0]))

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_error;
static dev_t root_dev;

static bool env_flag(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0") != 0;
}

/* mkdir -p below the root; every component must end up a real directory
 * owned by us (the default root is in /tmp). */
static int make_dirs(const char *path)
{
	char buf[512];
	struct stat st;
	size_t i;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (i = 1;; i++) {
		char c = buf[i];

		if (c != '/' && c != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = c;
		if (c == '\0')
			break;
	}
	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
		return -EPERM;
	return 0;
}

static int make_tree(void)
{
	char full[600], *slash;
	struct stat st;
	size_t i;
	int ret, fd;

	for (i = 0; i < NTREE; i++) {
		if (snprintf(full, sizeof(full), "%s%s", config.root, tree[i].path) >=
		    (int)sizeof(full))
			return -ENAMETOOLONG;
		if (tree[i].dir) {
			ret = make_dirs(full);
		} else {
			slash = strrchr(full, '/');
			*slash = '\0';
			ret = make_dirs(full);
			*slash = '/';
			if (!ret) {
				fd = open(full, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
				if (fd < 0)
					ret = -errno;
				else
					close(fd);
			}
		}
		if (ret)
			return ret;
		if (lstat(full, &st) < 0)
			return -errno;
		tree[i].dev = st.st_dev;
		tree[i].ino = st.st_ino;
		root_dev = st.st_dev;
	}
	return 0;
}

static void do_init(void)
{
	const char *v;

	v = getenv("DMABUF_UAPI_CMA_HEAP");
	snprintf(config.cma_heap, sizeof(config.cma_heap), "%s",
		 v && *v && !strchr(v, '/') ? v : "linux,cma");
	snprintf(cma_path, sizeof(cma_path), "/dev/dma_heap/%s", config.cma_heap);
	config.trace = env_flag("DMABUF_UAPI_TRACE");
	config.strict = env_flag("DMABUF_UAPI_STRICT");
	v = getenv("DMABUF_UAPI_LEAKS");
	config.leaks = !v || !*v || !strcmp(v, "0") ? 0 : !strcmp(v, "fatal") ? 2 : 1;
	/* One tree per contiguous-heap name, so /dev/dma_heap lists the
	 * heaps of this run only. */
	v = getenv("DMABUF_UAPI_ROOT");
	if (v && *v == '/')
		snprintf(config.root, sizeof(config.root), "%s/%s", v, config.cma_heap);
	else
		snprintf(config.root, sizeof(config.root), "/tmp/dmabuf-uapi-%u/%s",
			 (unsigned int)geteuid(), config.cma_heap);
	init_error = make_tree();
	if (init_error)
		fprintf(stderr, "libdmabuf-preload: cannot make the emulated tree in %s: %s\n",
			config.root, strerror(-init_error));
}

int dmb_uapi_init(void)
{
	pthread_once(&init_once, do_init);
	return init_error;
}

const struct dmb_uapi_config *dmb_uapi_config(void)
{
	dmb_uapi_init();
	return &config;
}

/* ---- paths ---------------------------------------------------------------- */

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}

int dmb_uapi_path_is_emulated(const char *path)
{
	/* The common case (any other path) costs two byte compares. */
	if (!path || path[0] != '/')
		return 0;
	if (path[1] == 'd')
		return under(path, "/dev/dma_heap") || !strcmp(path, "/dev/udmabuf") ||
		       !strcmp(path, "/dev/sw_sync");
	if (path[1] == 's')
		return !strcmp(path, "/sys/kernel/debug/sync/sw_sync");
	return 0;
}

int dmb_uapi_redirect(const char *path, char *buf, size_t size)
{
	if (!dmb_uapi_path_is_emulated(path))
		return -ENOENT;
	if (dmb_uapi_init())
		return init_error;
	if (snprintf(buf, size, "%s%s", config.root, path) >= (int)size)
		return -ENAMETOOLONG;
	return 0;
}

int dmb_uapi_open(const char *path, int flags, mode_t mode)
{
	char full[600];
	struct stat st;
	const char *heap;
	int ret, fd;

	ret = dmb_uapi_redirect(path, full, sizeof(full));
	if (ret)
		return ret;
	/* The context before anything else, so that later calls do not
	 * change the program's fd count. */
	if (!dmb_uapi_ctx())
		return -errno;
	fd = open(full, flags | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	/* Files the program made itself (O_CREAT in /dev/dma_heap) are
	 * not heaps: the kernel would have refused to create them. */
	switch (dmb_uapi_tree_kind(&st, &heap)) {
	case DMB_UAPI_NONE:
		close(fd);
		unlinkat(AT_FDCWD, full, 0);
		return -EACCES;
	case DMB_UAPI_SW_SYNC:
		close(fd);
		return dmb_uapi_timeline_open(flags);
	default:
		return fd;
	}
}

enum dmb_uapi_kind dmb_uapi_tree_kind(const struct stat *st, const char **heap)
{
	size_t i;

	for (i = 0; i < NTREE; i++) {
		if (tree[i].ino == st->st_ino && tree[i].dev == st->st_dev) {
			if (heap)
				*heap = tree[i].heap;
			return tree[i].kind;
		}
	}
	return DMB_UAPI_NONE;
}

/* ---- identity ------------------------------------------------------------- */

int dmb_uapi_fd_link(int fd, char *buf, size_t size)
{
	char proc[40];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = readlink(proc, buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static enum dmb_uapi_kind classify_socket(int fd)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	size_t n = sizeof(SYNC_FILE_PREFIX) - 1;

	if (getsockname(fd, (struct sockaddr *)&sun, &len) < 0 || sun.sun_family != AF_UNIX)
		return DMB_UAPI_NONE;
	if (len < offsetof(struct sockaddr_un, sun_path) + 1 + n)
		return DMB_UAPI_NONE;
	if (sun.sun_path[0] == '\0' && !memcmp(sun.sun_path + 1, SYNC_FILE_PREFIX, n))
		return DMB_UAPI_SYNC_FILE;
	return DMB_UAPI_NONE;
}

static enum dmb_uapi_kind classify_memfd(int fd)
{
	char link[128];

	if (dmb_uapi_fd_link(fd, link, sizeof(link)))
		return DMB_UAPI_NONE;
	if (!strncmp(link, BUFFER_PREFIX, sizeof(BUFFER_PREFIX) - 1))
		return DMB_UAPI_DMABUF;
	if (!strncmp(link, "/memfd:" SW_SYNC_NAME, sizeof("/memfd:" SW_SYNC_NAME) - 1))
		return DMB_UAPI_SW_SYNC;
	return DMB_UAPI_NONE;
}

enum dmb_uapi_kind dmb_uapi_classify_stat(int fd, const struct stat *st)
{
	if (S_ISSOCK(st->st_mode))
		return classify_socket(fd);
	/* Files on disk have links; memfds have none. A buffer this process
	 * holds is known by its (live) inode without reading the name. */
	if (S_ISREG(st->st_mode) && st->st_nlink == 0)
		return dmb_uapi_held_has(st->st_dev, st->st_ino) ? DMB_UAPI_DMABUF
								  : classify_memfd(fd);
	if (st->st_dev == root_dev && root_dev)
		return dmb_uapi_tree_kind(st, NULL);
	return DMB_UAPI_NONE;
}

enum dmb_uapi_kind dmb_uapi_classify(int fd)
{
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return DMB_UAPI_NONE;
	dmb_uapi_init();
	return dmb_uapi_classify_stat(fd, &st);
}

/* ---- the process's context ------------------------------------------------ */

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dmabuf_ctx *proc_ctx;

static void log_to_stderr(void *data, enum dmabuf_log_priority prio, const char *msg)
{
	fprintf(stderr, "libdmabuf-preload[%d]: %s\n", (int)getpid(), msg);
}

struct dmabuf_ctx *dmb_uapi_ctx(void)
{
	struct dmabuf_ctx_config cfg = { .struct_size = sizeof(cfg) };
	struct dmabuf_ctx *ctx;
	int ret;

	pthread_mutex_lock(&ctx_lock);
	ctx = proc_ctx;
	if (!ctx) {
		/* A kernel's release leaves no fd in the program. */
		cfg.flags = DMABUF_CTX_NO_RECYCLE;
		cfg.log_fn = log_to_stderr;
		cfg.log_priority = config.trace ? DMABUF_LOG_DEBUG : DMABUF_LOG_ERROR;
		ret = dmabuf_ctx_new(&cfg, &ctx);
		if (ret) {
			ctx = NULL;
			errno = -ret;
		}
		proc_ctx = ctx;
	}
	pthread_mutex_unlock(&ctx_lock);
	return ctx;
}

static bool serving;

struct dmabuf_ctx *dmb_uapi_ctx_exporting(void)
{
	struct dmabuf_ctx *ctx = dmb_uapi_ctx();
	int ret;

	if (!ctx)
		return NULL;
	/* The service thread answers other processes' imports of what this
	 * one allocates; a process that only imports needs none. */
	pthread_mutex_lock(&ctx_lock);
	if (!serving) {
		ret = dmabuf_ctx_start_thread(ctx);
		serving = ret == 0 || ret == -EBUSY;
		if (!serving)
			fprintf(stderr, "libdmabuf-preload: no service thread (%s): other "
				"processes cannot import this one's buffers\n", strerror(-ret));
	}
	pthread_mutex_unlock(&ctx_lock);
	return ctx;
}

struct dmabuf_ctx *dmb_uapi_ctx_if_made(void)
{
	struct dmabuf_ctx *ctx;

	pthread_mutex_lock(&ctx_lock);
	ctx = proc_ctx;
	pthread_mutex_unlock(&ctx_lock);
	return ctx;
}

void dmb_uapi_exit(void)
{
	struct dmabuf_ctx *ctx;

	dmb_uapi_timelines_exit();
	pthread_mutex_lock(&ctx_lock);
	ctx = proc_ctx;
	proc_ctx = NULL;
	pthread_mutex_unlock(&ctx_lock);
	if (!ctx)
		return;
	dmb_uapi_held_exit();
	/* The program's leaks were the leak report's business; the
	 * library's own report of what it still tracks would repeat them. */
	if (!config.trace)
		dmabuf_ctx_set_log(ctx, log_to_stderr, NULL, 0);
	if (serving)
		dmabuf_ctx_stop_thread(ctx);
	serving = false;
	dmabuf_ctx_destroy(ctx);
}

/* A forked child's copy of the parent's context: kept reachable, never
 * used or freed (its threads are the parent's). */
static struct dmabuf_ctx *volatile parent_ctx;

void dmb_uapi_forked(void)
{
	/* The parent's context (and its threads) are not the child's; its
	 * memory is left as it is, since the child must not run its teardown. */
	pthread_mutex_init(&ctx_lock, NULL);
	if (proc_ctx)
		parent_ctx = proc_ctx;
	proc_ctx = NULL;
	serving = false;
	dmb_uapi_held_forked();
	dmb_uapi_timelines_forked();
}

/* ---- trace ---------------------------------------------------------------- */

void dmb_uapi_trace(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	if (!config.trace)
		return;
	n = snprintf(line, sizeof(line), "[dmabuf-uapi %d] ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	/* One write, so lines of several processes do not interleave. */
	if (write(STDERR_FILENO, line, strlen(line)) < 0) {
		/* nothing to do */
	}
}
