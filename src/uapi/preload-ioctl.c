/* SPDX-License-Identifier: MIT */
/*
 * ioctl(): the dispatch to the emulation core, and the io the core needs
 * for it in this process (copies from and to the program's memory, its new
 * fds). An ioctl is the emulation's when its number's type is one of the
 * emulated drivers' (no syscall to know) and the fd is an emulated file
 * (one fstat), or when a tagged fd of a heap, udmabuf or dma-buf gets any
 * other number the VFS does not answer itself. Apart because it is the
 * core's main entry and the only caller of its io.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/fiemap.h>
#include <linux/fs.h>

#include "preload-int.h"

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

REAL(ioctl, int, int, unsigned long, ...)
REAL(fstat, int, int, struct stat *)

/* ---- io for the core: this address space ---------------------------------- */

/* This process's id without a syscall (kept by the fork handler; a vfork
 * child shares the memory, so the parent's id reads the same memory). */
static inline pid_t self_pid(void)
{
	return dmb_preload_pid ? dmb_preload_pid : getpid();
}

/* process_vm_readv/writev on this very process: the kernel's copy with its
 * checks, so a bad pointer is -EFAULT, never a SIGSEGV in the layer.
 * valgrind cannot see that the "remote" memory is ours: tell it. */
static int self_copy_in(struct dmb_uapi_io *io, void *dst, uint64_t uaddr, size_t n)
{
	struct iovec l = { dst, n }, r = { (void *)(uintptr_t)uaddr, n };

	if (!n)
		return 0;
	if (process_vm_readv(self_pid(), &l, 1, &r, 1, 0) != (ssize_t)n)
		return -EFAULT;
	VALGRIND_MAKE_MEM_DEFINED(dst, n);
	return 0;
}

static int self_copy_out(struct dmb_uapi_io *io, uint64_t uaddr, const void *src, size_t n)
{
	struct iovec l = { (void *)src, n }, r = { (void *)(uintptr_t)uaddr, n };

	if (!n)
		return 0;
	if (process_vm_writev(self_pid(), &l, 1, &r, 1, 0) != (ssize_t)n)
		return -EFAULT;
	VALGRIND_MAKE_MEM_DEFINED((void *)(uintptr_t)uaddr, n);
	return 0;
}

/* The program's new fd goes to the lowest free number, as fd_install(). */
static int self_install_fd(struct dmb_uapi_io *io, int fd, unsigned int o_flags)
{
	return dmb_program_fd(fd, o_flags & O_CLOEXEC);
}

static int self_get_fd(struct dmb_uapi_io *io, int ufd)
{
	int fd = ufd < 0 ? -1 : fcntl(ufd, F_DUPFD_CLOEXEC, 0);

	return fd < 0 ? -EBADF : fd;
}

static struct dmb_uapi_io self_io = {
	.copy_in = self_copy_in,
	.copy_out = self_copy_out,
	.install_fd = self_install_fd,
	.get_fd = self_get_fd,
};

/* ---- ioctl ---------------------------------------------------------------- */

static long emulated_ioctl(int fd, const struct stat *st, enum dmb_uapi_kind kind,
			   unsigned long cmd, void *arg)
{
	long ret = IN_CORE(dmb_uapi_ioctl_stat(&self_io, fd, st, kind, cmd, (uint64_t)(uintptr_t)arg));
	struct dma_buf_sync sync;

	/* Strict CPU access follows the program's brackets. */
	if (ret == 0 && kind == DMB_UAPI_DMABUF && cmd == DMA_BUF_IOCTL_SYNC &&
	    dmb_uapi_config()->strict &&
	    !self_copy_in(&self_io, &sync, (uint64_t)(uintptr_t)arg, sizeof(sync)))
		dmb_uapi_map_sync(fd, !(sync.flags & DMA_BUF_SYNC_END));
	if (ret == 0 && kind == DMB_UAPI_DMABUF &&
	    (cmd == DMA_BUF_SET_NAME_A || cmd == DMA_BUF_SET_NAME_B))
		dmb_uapi_map_renamed(fd);

	dmb_uapi_trace("ioctl(%d <%s>, %c/%lu size %lu, %p) = %ld%s%s", fd,
		       dmb_preload_kind_name(kind), (int)_IOC_TYPE(cmd), (unsigned long)_IOC_NR(cmd),
		       (unsigned long)_IOC_SIZE(cmd), arg, ret < 0 ? -1L : ret,
		       ret < 0 ? " " : "", ret < 0 ? strerror((int)-ret) : "");
	if (ret < 0) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

/* The commands do_vfs_ioctl() answers itself for any file (FIONREAD and
 * FIOQSIZE only for regular files, which no emulated file is): they go to
 * the real file. */
static bool vfs_generic_ioctl(unsigned long cmd)
{
	switch (cmd) {
	case FIOCLEX:
	case FIONCLEX:
	case FIONBIO:
	case FIOASYNC:
	case FIFREEZE:
	case FITHAW:
	case FS_IOC_FIEMAP:
	case FIGETBSZ:
	case FICLONE:
	case FICLONERANGE:
	case FIDEDUPERANGE:
	case FS_IOC_GETFLAGS:
	case FS_IOC_SETFLAGS:
	case FS_IOC_FSGETXATTR:
	case FS_IOC_FSSETXATTR:
		return true;
	default:
		return false;
	}
}

/* The kind of fd from one fstat, kept in st for the core. */
static enum dmb_uapi_kind classify_keep(int fd, struct stat *st)
{
	if (fd < 0 || get_fstat()(fd, st) < 0)
		return DMB_UAPI_NONE;
	dmb_uapi_init();
	return dmb_uapi_classify_stat(fd, st);
}

int dmb_preload_program_ioctl(int fd, unsigned long cmd, void *arg)
{
	enum dmb_uapi_kind kind;
	struct stat st;

	if (dmb_uapi_ioctl_maybe_ours(cmd)) {
		kind = classify_keep(fd, &st);
		if (kind != DMB_UAPI_NONE && kind != DMB_UAPI_DIR)
			return (int)emulated_ioctl(fd, &st, kind, cmd, arg);
	} else if (dmb_preload_fd_maybe(fd) && !vfs_generic_ioctl(cmd)) {
		/* Other numbers reach the driver too: dma_heap_ioctl() looks
		 * only at _IOC_NR, dma_buf_ioctl() and udmabuf_ioctl() answer
		 * -ENOTTY (FIONREAD included: their inodes are no regular
		 * files). One fstat, for a tagged fd only. */
		kind = classify_keep(fd, &st);
		if (kind == DMB_UAPI_HEAP || kind == DMB_UAPI_DMABUF || kind == DMB_UAPI_UDMABUF)
			return (int)emulated_ioctl(fd, &st, kind, cmd, arg);
	}
	return get_ioctl()(fd, cmd, arg);
}

/* The pass-through ioctl: the system call itself, as libc's ioctl() makes
 * it (not a cancellation point), without a second indirect call. */
static inline int pass_ioctl(int fd, unsigned long cmd, void *arg)
{
	if (DMB_PRELOAD_RAW_SYSCALL)
		return (int)dmb_preload_sys3(SYS_ioctl, fd, (long)cmd, (long)arg);
	return get_ioctl()(fd, cmd, arg);
}

EXPORT int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	/* Not a type of the emulation's and an untagged fd: the kernel's. */
	if (__builtin_expect(!dmb_uapi_ioctl_maybe_ours(cmd) && !dmb_preload_fd_maybe(fd), 1))
		return pass_ioctl(fd, cmd, arg);
	if (LAYER_CALL())
		return get_ioctl()(fd, cmd, arg);
	return dmb_preload_program_ioctl(fd, cmd, arg);
}
