/* SPDX-License-Identifier: MIT */
/*
 * The open family: open, openat, creat and their 64 and _FORTIFY_SOURCE
 * forms, fopen, and the /proc/<pid>/fdinfo/N text of a dma-buf. An
 * emulated path is opened by the core; any other open passes through, its
 * fd tagged when it may be an emulated file (preload-int.h, OPENED) or
 * placed when it is the layer's own. Apart because it is the one family
 * that decides on a path, before any fd exists.
 */
/* Both the plain and the 64 entry points are defined here, so the headers
 * must not rename one into the other. */
#undef _FILE_OFFSET_BITS
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "preload-int.h"

/* glibc entry points without a public prototype. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

REAL(open, int, const char *, int, ...)
REAL(open64, int, const char *, int, ...)
REAL(openat, int, int, const char *, int, ...)
REAL(openat64, int, int, const char *, int, ...)
REAL(__open_2, int, const char *, int)
REAL(__open64_2, int, const char *, int)
REAL(__openat_2, int, int, const char *, int)
REAL(__openat64_2, int, int, const char *, int)
REAL(creat, int, const char *, mode_t)
REAL(creat64, int, const char *, mode_t)
REAL(fopen, FILE *, const char *, const char *)
REAL(fopen64, FILE *, const char *, const char *)
REAL(close, int, int)
REAL(write, ssize_t, int, const void *, size_t)
REAL(lseek, off_t, int, off_t, int)

int dmb_preload_emulated_open(const char *what, const char *path, int flags, mode_t mode)
{
	int fd = IN_CORE(dmb_uapi_open(path, flags, mode));

	if (fd >= 0)
		fd = dmb_program_fd(fd, flags & O_CLOEXEC);
	dmb_uapi_trace("%s(\"%s\", %#x) = %d%s%s", what, path, flags, fd < 0 ? -1 : fd,
		       fd < 0 ? " " : "", fd < 0 ? strerror(-fd) : "");
	if (fd < 0) {
		errno = -fd;
		return -1;
	}
	dmb_preload_activate();
	return fd;
}

static mode_t va_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

/* open() and openat() and their 64 forms: PARAMS and ARGS are the call's
 * own, with `path` and `flags` among them; ARGS passes the mode. */
#define OPEN_WRAPPER(name, params, args)                                       \
	EXPORT int name params                                                 \
	{                                                                      \
		va_list ap;                                                    \
		mode_t mode;                                                   \
		va_start(ap, flags);                                           \
		mode = va_mode(flags, ap);                                     \
		va_end(ap);                                                    \
		if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())          \
			return dmb_preload_emulated_open(#name, path, flags, mode); \
		if (__builtin_expect(!LAYER_CALL(), 1))                        \
			return OPENED(get_##name() args, path, false);         \
		if (LAYER_OWNED())                                             \
			return dmb_layer_fd(get_##name() args, flags & O_CLOEXEC); \
		return OPENED(get_##name() args, path, true);                  \
	}
OPEN_WRAPPER(open, (const char *path, int flags, ...), (path, flags, mode))
OPEN_WRAPPER(open64, (const char *path, int flags, ...), (path, flags, mode))
OPEN_WRAPPER(openat, (int dirfd, const char *path, int flags, ...), (dirfd, path, flags, mode))
OPEN_WRAPPER(openat64, (int dirfd, const char *path, int flags, ...), (dirfd, path, flags, mode))

/* The _FORTIFY_SOURCE entry points and creat(): no mode argument to read,
 * or no flags. WHAT is the name in the trace; FLAGS and MODE those of the
 * emulated open. */
#define PLAIN_OPEN_WRAPPER(name, what, params, args, flags, mode)              \
	EXPORT int name params                                                 \
	{                                                                      \
		if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())          \
			return dmb_preload_emulated_open(what, path, flags, mode); \
		return OPENED(get_##name() args, path, LAYER_CALL());          \
	}
PLAIN_OPEN_WRAPPER(__open_2, "open", (const char *path, int flags), (path, flags), flags, 0)
PLAIN_OPEN_WRAPPER(__open64_2, "open64", (const char *path, int flags), (path, flags), flags, 0)
PLAIN_OPEN_WRAPPER(__openat_2, "openat", (int dirfd, const char *path, int flags),
		   (dirfd, path, flags), flags, 0)
PLAIN_OPEN_WRAPPER(__openat64_2, "openat64", (int dirfd, const char *path, int flags),
		   (dirfd, path, flags), flags, 0)
PLAIN_OPEN_WRAPPER(creat, "creat", (const char *path, mode_t mode), (path, mode),
		   O_CREAT | O_WRONLY | O_TRUNC, mode)
PLAIN_OPEN_WRAPPER(creat64, "creat64", (const char *path, mode_t mode), (path, mode),
		   O_CREAT | O_WRONLY | O_TRUNC, mode)

/*
 * /proc/<pid>/fdinfo/N of another process's fd: if the kernel lets this
 * process open it (its ptrace-read check; else the real call's errno is
 * the answer) and /proc/<pid>/fd/N is a dma-buf, the buffer's text, with
 * the generic lines of that process's file. -1: not handled.
 */
static int fdinfo_other(const char *path, const char *pid, size_t pid_len, const char *fdnum,
			char *text, size_t size)
{
	char fdpath[96];
	int real, fd, n = -1;

	if (pid_len > 20 || strspn(pid, "0123456789") != pid_len || !fdnum[0] ||
	    strspn(fdnum, "0123456789") != strlen(fdnum))
		return -1;
	real = get_open()(path, O_RDONLY | O_CLOEXEC);
	if (real < 0)
		return -1;
	get_close()(real);
	snprintf(fdpath, sizeof(fdpath), "/proc/%.*s/fd/%s", (int)pid_len, pid, fdnum);
	/* A description of our own of the buffer's file (it holds no flock,
	 * so the count leaves it out). */
	fd = get_open()(fdpath, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fd = get_open()(fdpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (dmb_uapi_classify(fd) == DMB_UAPI_DMABUF)
		n = IN_CORE(dmb_uapi_fdinfo_at(fd, path, text, size));
	get_close()(fd);
	return n;
}

/* /proc/self/fdinfo/N (or /proc/<pid>/fdinfo/N, this process's or
 * another's) of a dma-buf fd. */
static int fdinfo_fd(const char *path)
{
	char own[32], text[2048];
	const char *rest, *slash;
	int fd, n, mfd;

	if (strncmp(path, "/proc/", 6))
		return -1;
	rest = path + 6;
	snprintf(own, sizeof(own), "%d/", (int)getpid());
	if (!strncmp(rest, "self/", 5)) {
		rest += 5;
	} else if (!strncmp(rest, own, strlen(own))) {
		rest += strlen(own);
	} else if (!strncmp(rest, "thread-self/", 12)) {
		rest += 12;
	} else {
		slash = strchr(rest, '/');
		if (!slash || strncmp(slash, "/fdinfo/", 8))
			return -1;
		n = fdinfo_other(path, rest, (size_t)(slash - rest), slash + 8, text, sizeof(text));
		goto text;
	}
	if (strncmp(rest, "fdinfo/", 7) || !rest[7])
		return -1;
	fd = atoi(rest + 7);
	if (!atomic_load(&dmb_preload_active) || dmb_uapi_classify(fd) != DMB_UAPI_DMABUF)
		return -1;
	n = IN_CORE(dmb_uapi_fdinfo(fd, text, sizeof(text)));
text:
	if (n < 0)
		return -1;
	/* The text as a file of its own, read from the start. */
	mfd = memfd_create("dmabuf-uapi-fdinfo", MFD_CLOEXEC);
	if (mfd < 0)
		return -1;
	mfd = dmb_program_fd(mfd, true); /* the program's FILE */
	if (get_write()(mfd, text, (size_t)n) != n || get_lseek()(mfd, 0, SEEK_SET) != 0) {
		get_close()(mfd);
		return -1;
	}
	return mfd;
}

static FILE *fopen_common(const char *name, FILE *(*real)(const char *, const char *),
			  const char *path, const char *mode)
{
	int fd;

	if (!path || LAYER_CALL())
		return real(path, mode);
	FILE *fp;

	if (dmb_uapi_path_is_emulated(path)) {
		int flags = strchr(mode, '+') ? O_RDWR : mode[0] == 'r' ? O_RDONLY : O_WRONLY;

		if (mode[0] != 'r')
			flags |= O_CREAT | (mode[0] == 'w' ? O_TRUNC : O_APPEND);
		if (strchr(mode, 'e'))
			flags |= O_CLOEXEC;
		fd = dmb_preload_emulated_open(name, path, flags, 0666);
		if (fd < 0)
			return NULL;
		fp = fdopen(fd, mode);
		if (!fp)
			get_close()(fd);
		return fp;
	}
	if (path[0] == '/' && path[1] == 'p' && (fd = fdinfo_fd(path)) >= 0) {
		fp = fdopen(fd, "r");
		if (!fp)
			get_close()(fd);
		return fp;
	}
	fp = real(path, mode);
	if (fp && dmb_preload_path_doubtful(path))
		dmb_preload_fd_tag_active(fileno(fp));
	return fp;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	return fopen_common("fopen", get_fopen(), path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	return fopen_common("fopen64", get_fopen64(), path, mode);
}
