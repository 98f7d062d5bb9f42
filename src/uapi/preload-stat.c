/* SPDX-License-Identifier: MIT */
/*
 * What a path lookup and a stat see: the emulated /dev entries are
 * redirected into the emulated tree (stat, access, opendir), the heap and
 * udmabuf nodes are shown as the character devices they are on Linux, and
 * a dma-buf's fstat has the buffer's size. Apart because it is about how
 * the files look, not what they do.
 */
/* Both the plain and the 64 entry points are defined here, so the headers
 * must not rename one into the other. */
#undef _FILE_OFFSET_BITS
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "preload-int.h"

/* glibc entry points without a public prototype. */
int __xstat(int ver, const char *path, struct stat *st);
int __xstat64(int ver, const char *path, struct stat64 *st);
int __lxstat(int ver, const char *path, struct stat *st);
int __lxstat64(int ver, const char *path, struct stat64 *st);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);
int __fxstat(int ver, int fd, struct stat *st);
int __fxstat64(int ver, int fd, struct stat64 *st);

REAL(opendir, DIR *, const char *)
REAL(stat, int, const char *, struct stat *)
REAL(stat64, int, const char *, struct stat64 *)
REAL(lstat, int, const char *, struct stat *)
REAL(lstat64, int, const char *, struct stat64 *)
REAL(fstatat, int, int, const char *, struct stat *, int)
REAL(fstatat64, int, int, const char *, struct stat64 *, int)
REAL(__xstat, int, int, const char *, struct stat *)
REAL(__xstat64, int, int, const char *, struct stat64 *)
REAL(__lxstat, int, int, const char *, struct stat *)
REAL(__lxstat64, int, int, const char *, struct stat64 *)
REAL(__fxstatat, int, int, int, const char *, struct stat *, int)
REAL(__fxstatat64, int, int, int, const char *, struct stat64 *, int)
REAL(statx, int, int, const char *, int, unsigned int, struct statx *)
REAL(access, int, const char *, int)
REAL(faccessat, int, int, const char *, int, int)
REAL(fstat, int, int, struct stat *)
REAL(fstat64, int, int, struct stat64 *)
REAL(__fxstat, int, int, int, struct stat *)
REAL(__fxstat64, int, int, int, struct stat64 *)

/* ---- paths: stat family, access, opendir ---------------------------------- */

/* Rewrites an emulated path into buf; returns the path to use. */
static const char *redirect(const char *path, char *buf, size_t size)
{
	if (!dmb_uapi_path_is_emulated(path) || dmb_uapi_redirect(path, buf, size))
		return path;
	return buf;
}

/* The heap and udmabuf nodes are files of the emulated tree; the kernel's
 * are character devices (dma_heap_init()'s class, the misc device). */
static bool is_device_node(dev_t dev, ino_t ino)
{
	struct stat st = { .st_dev = dev, .st_ino = ino };
	enum dmb_uapi_kind k = dmb_uapi_tree_kind(&st, NULL);

	return k == DMB_UAPI_HEAP || k == DMB_UAPI_UDMABUF;
}

#define DEV_MODE(dev, ino, mode)                                               \
	do {                                                                   \
		if (is_device_node((dev), (ino)))                              \
			(mode) = (__typeof__(mode))(S_IFCHR | ((mode) & 07777)); \
	} while (0)

#define PATHBUF char rbuf[512]
#define R(p) redirect((p), rbuf, sizeof(rbuf))

EXPORT DIR *opendir(const char *path)
{
	PATHBUF;
	return get_opendir()(R(path));
}

/* A stat of a path: the emulated /dev entries are redirected (R) and
 * shown as character devices. PARAMS and ARGS are the call's own, with
 * `path` and `st` among them; ARGS passes rp for path. */
#define PATH_STAT_WRAPPER(name, params, args)                                  \
	EXPORT int name params                                                 \
	{                                                                      \
		PATHBUF;                                                       \
		const char *rp = R(path);                                      \
		int ret = get_##name() args;                                   \
		if (!ret && rp != path)                                        \
			DEV_MODE(st->st_dev, st->st_ino, st->st_mode);         \
		return ret;                                                    \
	}
PATH_STAT_WRAPPER(stat, (const char *path, struct stat *st), (rp, st))
PATH_STAT_WRAPPER(stat64, (const char *path, struct stat64 *st), (rp, st))
PATH_STAT_WRAPPER(lstat, (const char *path, struct stat *st), (rp, st))
PATH_STAT_WRAPPER(lstat64, (const char *path, struct stat64 *st), (rp, st))
PATH_STAT_WRAPPER(fstatat, (int dirfd, const char *path, struct stat *st, int flags), (dirfd, rp, st, flags))
PATH_STAT_WRAPPER(fstatat64, (int dirfd, const char *path, struct stat64 *st, int flags), (dirfd, rp, st, flags))
PATH_STAT_WRAPPER(__xstat, (int ver, const char *path, struct stat *st), (ver, rp, st))
PATH_STAT_WRAPPER(__xstat64, (int ver, const char *path, struct stat64 *st), (ver, rp, st))
PATH_STAT_WRAPPER(__lxstat, (int ver, const char *path, struct stat *st), (ver, rp, st))
PATH_STAT_WRAPPER(__lxstat64, (int ver, const char *path, struct stat64 *st), (ver, rp, st))
PATH_STAT_WRAPPER(__fxstatat, (int ver, int dirfd, const char *path, struct stat *st, int flags), (ver, dirfd, rp, st, flags))
PATH_STAT_WRAPPER(__fxstatat64, (int ver, int dirfd, const char *path, struct stat64 *st, int flags), (ver, dirfd, rp, st, flags))

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *st)
{
	PATHBUF;
	const char *rp = R(path);
	int ret = get_statx()(dirfd, rp, flags, mask, st);

	if (!ret && rp != path)
		DEV_MODE(makedev(st->stx_dev_major, st->stx_dev_minor), st->stx_ino, st->stx_mode);
	return ret;
}

EXPORT int access(const char *path, int mode)
{
	PATHBUF;
	return get_access()(R(path), mode);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	PATHBUF;
	return get_faccessat()(dirfd, R(path), mode, flags);
}

/* ---- fstat ---------------------------------------------------------------- */

/* A dma-buf's inode has the buffer's size, a udmabuf's handle too. */
static void fix_size(int fd, off_t *size)
{
	int64_t s;

	if (*size == 0 && dmb_preload_fd_kind(fd) == DMB_UAPI_DMABUF &&
	    (s = IN_CORE(dmb_uapi_dmabuf_size(fd))) > 0)
		*size = s;
}

/* A stat of an fd: a dma-buf's size, the device nodes' type. PARAMS and
 * ARGS are the call's own, with `fd` and `st` among them. */
#define FD_STAT_WRAPPER(name, params, args)                                    \
	EXPORT int name params                                                 \
	{                                                                      \
		int ret = get_##name() args;                                   \
		if (!ret && !LAYER_CALL()) {                                   \
			fix_size(fd, &st->st_size);                            \
			DEV_MODE(st->st_dev, st->st_ino, st->st_mode);         \
		}                                                              \
		return ret;                                                    \
	}
FD_STAT_WRAPPER(fstat, (int fd, struct stat *st), (fd, st))
FD_STAT_WRAPPER(fstat64, (int fd, struct stat64 *st), (fd, st))
FD_STAT_WRAPPER(__fxstat, (int ver, int fd, struct stat *st), (ver, fd, st))
FD_STAT_WRAPPER(__fxstat64, (int ver, int fd, struct stat64 *st), (ver, fd, st))
