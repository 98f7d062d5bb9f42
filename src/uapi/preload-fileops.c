/* SPDX-License-Identifier: MIT */
/*
 * The file operations of the emulated files that Linux refuses or answers
 * in its own way: lseek (dma_buf_llseek(), a heap's nonseekable file),
 * read and write (dma_buf_fops has neither, a sync file is O_RDONLY),
 * the positioned calls, fallocate, fsync, ftruncate, and fcntl (no seals
 * on a dma-buf, no O_LARGEFILE, and F_DUPFD as a gate of the fd tags).
 * Untagged fds pass at once. Apart because each answers for an operation
 * the emulated files' file_operations lack.
 */
/* Both the plain and the 64 entry points are defined here, so the headers
 * must not rename one into the other. */
#undef _FILE_OFFSET_BITS
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload-int.h"

REAL(lseek, off_t, int, off_t, int)
REAL(lseek64, off64_t, int, off64_t, int)
REAL(read, ssize_t, int, void *, size_t)
REAL(write, ssize_t, int, const void *, size_t)
REAL(pread, ssize_t, int, void *, size_t, off_t)
REAL(pread64, ssize_t, int, void *, size_t, off64_t)
REAL(pwrite, ssize_t, int, const void *, size_t, off_t)
REAL(pwrite64, ssize_t, int, const void *, size_t, off64_t)
REAL(readv, ssize_t, int, const struct iovec *, int)
REAL(writev, ssize_t, int, const struct iovec *, int)
REAL(preadv, ssize_t, int, const struct iovec *, int, off_t)
REAL(preadv64, ssize_t, int, const struct iovec *, int, off64_t)
REAL(pwritev, ssize_t, int, const struct iovec *, int, off_t)
REAL(pwritev64, ssize_t, int, const struct iovec *, int, off64_t)
REAL(fallocate, int, int, int, off_t, off_t)
REAL(fallocate64, int, int, int, off64_t, off64_t)
REAL(posix_fallocate, int, int, off_t, off_t)
REAL(posix_fallocate64, int, int, off64_t, off64_t)
REAL(fsync, int, int)
REAL(fdatasync, int, int)
REAL(fcntl, int, int, int, ...)
REAL(fcntl64, int, int, int, ...)
REAL(ftruncate, int, int, off_t)
REAL(ftruncate64, int, int, off64_t)

/* ---- lseek ---------------------------------------------------------------- */

static int64_t dmabuf_lseek(int fd, int64_t off, int whence)
{
	int64_t size;

	/* dma_buf_llseek(): the end of the buffer can be found, and SEEK_SET
	 * to 0 works; nothing else does. */
	if ((whence != SEEK_END && whence != SEEK_SET) || off != 0) {
		errno = EINVAL;
		return -1;
	}
	if (whence == SEEK_SET)
		return 0;
	size = IN_CORE(dmb_uapi_dmabuf_size(fd));
	if (size < 0) {
		errno = (int)-size;
		return -1;
	}
	return size;
}

/* dma_heap_open() makes the file nonseekable: no FMODE_LSEEK. */
static int64_t emulated_lseek(int fd, enum dmb_uapi_kind k, int64_t off, int whence)
{
	if (k == DMB_UAPI_HEAP) {
		errno = ESPIPE;
		return -1;
	}
	return dmabuf_lseek(fd, off, whence);
}

#define LSEEK_WRAPPER(name, type)                                              \
	EXPORT type name(int fd, type off, int whence)                         \
	{                                                                      \
		enum dmb_uapi_kind k = LAYER_CALL() ? DMB_UAPI_NONE : dmb_preload_fd_kind(fd); \
		if (k == DMB_UAPI_DMABUF || k == DMB_UAPI_HEAP)                \
			return emulated_lseek(fd, k, off, whence);             \
		return get_##name()(fd, off, whence);                          \
	}
LSEEK_WRAPPER(lseek, off_t)
LSEEK_WRAPPER(lseek64, off64_t)

/* ---- read, write and the positioned calls --------------------------------- */

/* dma_buf_fops has no read, write or truncation. */
static bool refused_kind(enum dmb_uapi_kind k)
{
	if (k != DMB_UAPI_DMABUF && k != DMB_UAPI_HEAP && k != DMB_UAPI_UDMABUF &&
	    k != DMB_UAPI_SW_SYNC)
		return false;
	errno = EINVAL;
	return true;
}

static bool refused(int fd)
{
	return refused_kind(dmb_preload_fd_kind(fd));
}

/* vfs_read()/vfs_write() of a tagged fd (one classification): a sync file
 * is O_RDONLY with no read, so reading is EINVAL and writing EBADF (no
 * FMODE_WRITE) before any SIGPIPE could arise; on the others a file not
 * open for the direction is EBADF before the missing operation is EINVAL. */
static bool refused_rw(int fd, bool writing)
{
	enum dmb_uapi_kind k = dmb_uapi_classify(fd);
	int fl;

	if (k == DMB_UAPI_SYNC_FILE) {
		errno = writing ? EBADF : EINVAL;
		return true;
	}
	if (!refused_kind(k))
		return false;
	fl = get_fcntl()(fd, F_GETFL);
	if (fl >= 0 && (fl & O_ACCMODE) == (writing ? O_RDONLY : O_WRONLY))
		errno = EBADF;
	return true;
}

/* The test of the read and write family: untagged fds pass at once. */
#define RW_REFUSED(fd, writing)                                                \
	(__builtin_expect(dmb_preload_fd_maybe(fd), 0) && !LAYER_CALL() &&     \
	 refused_rw((fd), (writing)))

/* A dma-buf's file is no seekable one (no FMODE_PREAD / FMODE_PWRITE): the
 * positioned calls are ESPIPE once the position is valid. */
static bool refused_positioned(int fd, off64_t pos)
{
	enum dmb_uapi_kind k = dmb_preload_fd_kind(fd);

	/* The heap's file is nonseekable_open()ed: no FMODE_PREAD either. */
	if (k != DMB_UAPI_DMABUF && k != DMB_UAPI_HEAP)
		return false;
	errno = pos < 0 ? EINVAL : ESPIPE;
	return true;
}

/* read(), write(), readv(), writev(): PARAMS and ARGS are the call's own,
 * with `fd` among them. */
#define RW_WRAPPER(name, writing, params, args)                                \
	EXPORT ssize_t name params                                             \
	{                                                                      \
		if (RW_REFUSED(fd, writing))                                   \
			return -1;                                             \
		return get_##name() args;                                      \
	}
RW_WRAPPER(read, false, (int fd, void *buf, size_t n), (fd, buf, n))
RW_WRAPPER(write, true, (int fd, const void *buf, size_t n), (fd, buf, n))
RW_WRAPPER(readv, false, (int fd, const struct iovec *iov, int n), (fd, iov, n))
RW_WRAPPER(writev, true, (int fd, const struct iovec *iov, int n), (fd, iov, n))

#define POSITIONED(name, type, buft)                                           \
	EXPORT ssize_t name(int fd, buft buf, size_t n, type pos)             \
	{                                                                      \
		if (!LAYER_CALL() && refused_positioned(fd, pos))              \
			return -1;                                             \
		return get_##name()(fd, buf, n, pos);                          \
	}
POSITIONED(pread, off_t, void *)
POSITIONED(pread64, off64_t, void *)
POSITIONED(pwrite, off_t, const void *)
POSITIONED(pwrite64, off64_t, const void *)

#define POSITIONED_V(name, type)                                               \
	EXPORT ssize_t name(int fd, const struct iovec *iov, int n, type pos) \
	{                                                                      \
		if (!LAYER_CALL() && refused_positioned(fd, pos))              \
			return -1;                                             \
		return get_##name()(fd, iov, n, pos);                          \
	}
POSITIONED_V(preadv, off_t)
POSITIONED_V(preadv64, off64_t)
POSITIONED_V(pwritev, off_t)
POSITIONED_V(pwritev64, off64_t)

/* ---- fallocate, fsync, ftruncate ------------------------------------------ */

/* vfs_fallocate(): a file not open for writing is EBADF, then an inode
 * that is neither regular nor a block device is ENODEV (a dma-buf's anon
 * inode has no type bits). Returns the errno, 0 if the call is not ours. */
static int fallocate_errno(int fd, int64_t off, int64_t len)
{
	int fl;

	if (dmb_preload_fd_kind(fd) != DMB_UAPI_DMABUF)
		return 0;
	if (off < 0 || len <= 0)
		return EINVAL;
	fl = get_fcntl()(fd, F_GETFL);
	if (fl >= 0 && (fl & O_ACCMODE) == O_RDONLY)
		return EBADF;
	return ENODEV;
}

#define FALLOCATE(name, type)                                                  \
	EXPORT int name(int fd, int mode, type off, type len)                  \
	{                                                                      \
		int e = LAYER_CALL() ? 0 : fallocate_errno(fd, off, len);      \
		if (e) {                                                       \
			errno = e;                                             \
			return -1;                                             \
		}                                                              \
		return get_##name()(fd, mode, off, len);                       \
	}
FALLOCATE(fallocate, off_t)
FALLOCATE(fallocate64, off64_t)

/* posix_fallocate() returns the error instead of setting errno. */
#define POSIX_FALLOCATE(name, type)                                            \
	EXPORT int name(int fd, type off, type len)                            \
	{                                                                      \
		int e = LAYER_CALL() ? 0 : fallocate_errno(fd, off, len);      \
		return e ? e : get_##name()(fd, off, len);                     \
	}
POSIX_FALLOCATE(posix_fallocate, off_t)
POSIX_FALLOCATE(posix_fallocate64, off64_t)

/* vfs_fsync_range(): dma_buf_fops has no fsync. */
/* vfs_fsync_range(): dma_buf_fops has no fsync. */
#define FSYNC_WRAPPER(name)                                                    \
	EXPORT int name(int fd)                                                \
	{                                                                      \
		if (!LAYER_CALL() && dmb_preload_fd_kind(fd) == DMB_UAPI_DMABUF) { \
			errno = EINVAL;                                        \
			return -1;                                             \
		}                                                              \
		return get_##name()(fd);                                       \
	}
FSYNC_WRAPPER(fsync)
FSYNC_WRAPPER(fdatasync)

#define FTRUNCATE_WRAPPER(name, type)                                          \
	EXPORT int name(int fd, type len)                                      \
	{                                                                      \
		if (!LAYER_CALL() && refused(fd))                              \
			return -1;                                             \
		return get_##name()(fd, len);                                  \
	}
FTRUNCATE_WRAPPER(ftruncate, off_t)
FTRUNCATE_WRAPPER(ftruncate64, off64_t)

/* ---- fcntl ---------------------------------------------------------------- */

/* memfd_fcntl(): seals exist only on shmem and hugetlbfs files, which a
 * dma-buf's is not; the other commands are the real file's. */
static int program_fcntl(int (*real)(int, int, ...), const void *ra, int fd, int cmd, void *arg)
{
	bool layer = dmb_preload_from_layer(ra);

	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
		if (dmb_preload_layer_owned(ra))
			return dmb_layer_fd(real(fd, cmd, arg), cmd == F_DUPFD_CLOEXEC);
		if (!layer && dmb_layer_fd_is(fd)) {
			errno = EBADF; /* not the program's */
			return -1;
		}
		if (layer || dmb_preload_fd_maybe(fd))
			return dmb_preload_fd_tag(real(fd, cmd, arg));
		return real(fd, cmd, arg);
	}
	if (__builtin_expect(!dmb_preload_fd_maybe(fd), 1) || layer)
		return real(fd, cmd, arg);
	if ((cmd == F_ADD_SEALS || cmd == F_GET_SEALS) && dmb_preload_fd_kind(fd) == DMB_UAPI_DMABUF) {
		errno = EINVAL;
		return -1;
	}
	if (cmd == F_GETFL && dmb_preload_fd_kind(fd) == DMB_UAPI_DMABUF) {
		/* alloc_file_pseudo() gives a dma-buf no O_LARGEFILE. */
		int fl = real(fd, cmd, arg);

		return fl < 0 ? fl : fl & ~(int)DMB_UAPI_O_LARGEFILE;
	}
	return real(fd, cmd, arg);
}

/* fcntl commands that are cancellation points: libc's own call. */
static inline bool fcntl_waits(int cmd)
{
	return cmd == F_SETLKW || cmd == F_OFD_SETLKW;
}

/* The fast path of fcntl() and of fcntl64() (what fcntl() is with
 * _FILE_OFFSET_BITS=64): not a dup and an untagged fd, the kernel's at
 * once. */
static inline bool fcntl_passes(int fd, int cmd)
{
	return DMB_PRELOAD_RAW_SYSCALL && cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC &&
	       !fcntl_waits(cmd) && !dmb_preload_fd_maybe(fd);
}

/* fcntl() and fcntl64(); REAL is the next definition to call. */
#define FCNTL_WRAPPER(name, real)                                              \
	EXPORT int name(int fd, int cmd, ...)                                  \
	{                                                                      \
		va_list ap;                                                    \
		void *arg;                                                     \
		va_start(ap, cmd);                                             \
		arg = va_arg(ap, void *);                                      \
		va_end(ap);                                                    \
		if (__builtin_expect(fcntl_passes(fd, cmd), 1))                \
			return (int)dmb_preload_sys3(SYS_fcntl, fd, cmd, (long)arg); \
		return program_fcntl(real, __builtin_return_address(0), fd, cmd, arg); \
	}
FCNTL_WRAPPER(fcntl, get_fcntl())
FCNTL_WRAPPER(fcntl64, get_fcntl64() ? get_fcntl64() : get_fcntl())
