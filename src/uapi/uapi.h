/* SPDX-License-Identifier: MIT */
/*
 * The uapi emulation core: the kernel's dma-heap, udmabuf, dma-buf,
 * sync_file and sw_sync uapi, answered on top of libdmabuf's public API.
 *
 * The core knows nothing of how it is reached. Two front ends use it:
 * - the preload (preload*.c, libdmabuf-preload.so), which wraps libc in the
 *   program's own address space;
 * - a seccomp user-notification supervisor, which runs in another process
 *   and reaches the program's memory with process_vm_readv/writev and its fd
 *   table with SECCOMP_IOCTL_NOTIF_ADDFD.
 * Every access to the program's memory and fd table goes through struct
 * dmb_uapi_io, so both front ends share every check and every errno.
 *
 * Identity always comes from the fd itself (its inode, its memfd or socket
 * name), never from a table keyed by fd number: fds are dup'd, inherited
 * over fork and exec, and passed over SCM_RIGHTS. See docs/uapi.md.
 *
 * All functions are thread-safe. Names use the dmb_ prefix: none of this is
 * libdmabuf API.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What an fd of the calling process is, as far as the emulation goes. */
enum dmb_uapi_kind {
	DMB_UAPI_NONE = 0,	/* not ours: pass the call through */
	DMB_UAPI_HEAP,		/* /dev/dma_heap/<name> */
	DMB_UAPI_UDMABUF,	/* /dev/udmabuf */
	DMB_UAPI_DMABUF,	/* a dma-buf (libdmabuf buffer memfd / udmabuf handle) */
	DMB_UAPI_SYNC_FILE,	/* a libdmabuf sync file */
	DMB_UAPI_SW_SYNC,	/* a sw_sync timeline (one per open) */
	DMB_UAPI_DIR,		/* a directory of the emulated tree (/dev/dma_heap) */
};

/*
 * How the emulation reaches the calling program: the preload copies with
 * probing (EFAULT, never SIGSEGV) in its own address space and installs fds
 * as they are; the seccomp supervisor uses process_vm_readv/writev and
 * SECCOMP_IOCTL_NOTIF_ADDFD.
 */
struct dmb_uapi_io {
	/* Copy n bytes from the program's address uaddr. 0 or -EFAULT. */
	int (*copy_in)(struct dmb_uapi_io *io, void *dst, uint64_t uaddr, size_t n);
	/* Copy n bytes to the program's address uaddr. 0 or -EFAULT. */
	int (*copy_out)(struct dmb_uapi_io *io, uint64_t uaddr, const void *src, size_t n);
	/* Give `fd` (owned by this process, consumed even on failure) to the
	 * program with O_CLOEXEC from o_flags (other bits ignored); returns the
	 * program's fd number or a negative errno. */
	int (*install_fd)(struct dmb_uapi_io *io, int fd, unsigned int o_flags);
	/* Get the program's fd `ufd` as an fd of this process (a new one,
	 * owned by the caller) or -EBADF. The preload returns dup(ufd). Used
	 * for fds that arrive inside ioctl arguments (udmabuf memfds,
	 * sync files to import or merge). */
	int (*get_fd)(struct dmb_uapi_io *io, int ufd);
};

/* Options, read from the environment by dmb_uapi_init() (docs/uapi.md). */
struct dmb_uapi_config {
	char cma_heap[64];	/* name of the contiguous heap; "linux,cma" */
	bool trace;		/* DMABUF_UAPI_TRACE: one line per emulated call */
	bool strict;		/* DMABUF_UAPI_STRICT: PROT_NONE outside SYNC */
	int leaks;		/* DMABUF_UAPI_LEAKS: 0 off, 1 report, 2 fatal */
	char root[256];		/* real directory holding the emulated tree */
};

/*
 * Reads the configuration and makes sure the emulated tree exists (a real
 * directory: `<root>/dev/dma_heap/{system,<cma>}`, `<root>/dev/udmabuf`,
 * `<root>/dev/sw_sync`, `<root>/sys/kernel/debug/sync/sw_sync`). Idempotent;
 * called by every entry point below. @return 0 or -errno
 */
int dmb_uapi_init(void);

/* The configuration in effect (after dmb_uapi_init()). */
const struct dmb_uapi_config *dmb_uapi_config(void);

/* 1 if `path` (absolute, as the program passed it) is emulated. Cheap: a
 * prefix test, no syscall. */
int dmb_uapi_path_is_emulated(const char *path);

/*
 * Where an emulated path really lives, for stat/access/opendir: writes
 * `<root><path>` into buf. @return 0, -ENAMETOOLONG, or -ENOENT if the path
 * is not emulated
 */
int dmb_uapi_redirect(const char *path, char *buf, size_t size);

/*
 * open/openat of an emulated path. Makes the process's context first (so a
 * program counting fds around a later failing ioctl sees no change).
 * @return an fd of THIS process, or -errno (-ENOENT for an unknown heap,
 *         -EEXIST for O_CREAT|O_EXCL, -EISDIR for a directory opened for
 *         writing, ...)
 */
int dmb_uapi_open(const char *path, int flags, mode_t mode);

/* Kind of an fd of this process (DMB_UAPI_NONE for "not ours: pass
 * through"). One fstat, plus a readlink or getsockname for memfds and
 * sockets. */
enum dmb_uapi_kind dmb_uapi_classify(int fd);

/* 1 if an ioctl number can belong to the emulation (its type is one of
 * 'H', 'u', 'b', '>', 'W'). No syscall. */
static inline int dmb_uapi_ioctl_maybe_ours(unsigned long cmd)
{
	unsigned int type = (cmd >> 8) & 0xff;

	return type == 'H' || type == 'u' || type == 'b' || type == '>' || type == 'W';
}

/*
 * An emulated ioctl on an fd of this process; `uarg` is the program's
 * pointer. @return >= 0 or -errno, exactly as the kernel's ioctl handler
 * for that file (-ENOTTY for numbers the file does not know).
 */
long dmb_uapi_ioctl(struct dmb_uapi_io *io, int fd, enum dmb_uapi_kind kind,
		    unsigned long cmd, uint64_t uarg);

struct stat;

/* dmb_uapi_ioctl() with the fstat of fd the front end made to classify it
 * (dmb_uapi_classify_stat()): the core uses it instead of its own. */
long dmb_uapi_ioctl_stat(struct dmb_uapi_io *io, int fd, const struct stat *st,
			 enum dmb_uapi_kind kind, unsigned long cmd, uint64_t uarg);

/*
 * Called after the program closed `fd` (already closed) which was of kind
 * `kind` with inode (dev, ino): a sw_sync timeline whose last reference
 * went signals its pending fences with -ENOENT.
 */
void dmb_uapi_closed(enum dmb_uapi_kind kind, dev_t dev, ino_t ino);

/*
 * For a front end that does not see the program's close() (the seccomp
 * supervisor): drops the references the core took on buffers of this
 * process's own context (they stay orphans of the context, known again at
 * the next call), so that the buffer's file goes, and the buffer is
 * released, when the program's last fd and mapping of it go. Imports from
 * other processes stay held. Call it after a call is answered.
 */
void dmb_uapi_unhold_own(void);

/* Size of a dma-buf fd of this process (for lseek, mmap bounds, fstat of a
 * udmabuf) or -errno. */
int64_t dmb_uapi_dmabuf_size(int fd);

/*
 * The program maps a dma-buf: checks as dma_buf_mmap_internal() (offset +
 * len beyond the size: -EINVAL; PROT_WRITE on a read-only buffer with
 * MAP_SHARED: -EACCES) and maps a udmabuf's own pages.
 * @return the address or a negative errno cast to void * (as the kernel's
 *         IS_ERR); NULL means "not handled here, use the real mmap"
 */
void *dmb_uapi_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);

/* Poll events of a dma-buf or sync-file fd as the kernel's poll op sees
 * them (fence state), limited to `events`. */
short dmb_uapi_poll_events(int fd, enum dmb_uapi_kind kind, short events);

/* The text of /proc/<pid>/fdinfo/<fd> for a dma-buf fd of this process
 * (the file's own lines plus the dma-buf ones), or -errno. */
int dmb_uapi_fdinfo(int fd, char *buf, size_t size);

/* The same for the file whose real fdinfo is at `path` (another
 * process's /proc/<pid>/fdinfo/<n>, already opened once, so the kernel's
 * permission check passed); `fd` is an fd of this process for the same
 * buffer (an open of /proc/<pid>/fd/<n>): the dma-buf lines are its. */
int dmb_uapi_fdinfo_at(int fd, const char *path, char *buf, size_t size);

/* One line on stderr when tracing is on (DMABUF_UAPI_TRACE). */
__attribute__((format(printf, 1, 2))) void dmb_uapi_trace(const char *fmt, ...);
