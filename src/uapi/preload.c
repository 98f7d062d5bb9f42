/* SPDX-License-Identifier: MIT */
/*
 * libdmabuf-preload.so: the libc interposition in front of the emulation
 * core (uapi.h). Every wrapper first decides, as cheaply as it can, whether
 * the call is the emulation's; everything else goes to the next definition
 * (RTLD_NEXT) at once:
 * - paths: a prefix test on the string, no syscall;
 * - ioctls: the number's type byte, no syscall, then one fstat; other
 *   numbers (not the VFS's own) one fstat if the fd is tagged (below), as
 *   the heap, udmabuf and dma-buf drivers see them;
 * - other calls on fds (read, write, lseek, mmap, fstat, fcntl, poll,
 *   select, close): one relaxed load of the fd's tag (fdplace.c), 0 for
 *   every fd that cannot be an emulated one; a tagged fd costs one fstat.
 * Calls made by libdmabuf itself or by this library are never emulated:
 * their return address is in one of the two objects.
 */
/* Both the plain and the 64 entry points are defined here, so the headers
 * must not rename one into the other. */
#undef _FILE_OFFSET_BITS
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/fiemap.h>
#include <linux/fs.h>

#include <dmabuf.h>

#include "core.h"
#include "preload.h"

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

/* glibc entry points without a public prototype. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);
int __xstat(int ver, const char *path, struct stat *st);
int __xstat64(int ver, const char *path, struct stat64 *st);
int __lxstat(int ver, const char *path, struct stat *st);
int __lxstat64(int ver, const char *path, struct stat64 *st);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);
int __fxstat(int ver, int fd, struct stat *st);
int __fxstat64(int ver, int fd, struct stat64 *st);

/* ---- the next definitions --------------------------------------------------- */

#define REAL(name, ret, ...)                                                   \
	static ret (*real_##name)(__VA_ARGS__);                                \
	static inline ret (*get_##name(void))(__VA_ARGS__)                     \
	{                                                                      \
		if (!real_##name)                                              \
			real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name); \
		return real_##name;                                            \
	}

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
REAL(ioctl, int, int, unsigned long, ...)
REAL(lseek, off_t, int, off_t, int)
REAL(lseek64, off64_t, int, off64_t, int)
REAL(mmap, void *, void *, size_t, int, int, int, off_t)
REAL(mmap64, void *, void *, size_t, int, int, int, off64_t)
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
REAL(mremap, void *, void *, size_t, size_t, int, ...)
REAL(ftruncate, int, int, off_t)
REAL(ftruncate64, int, int, off64_t)
REAL(fstat, int, int, struct stat *)
REAL(fstat64, int, int, struct stat64 *)
REAL(__fxstat, int, int, int, struct stat *)
REAL(__fxstat64, int, int, int, struct stat64 *)
REAL(poll, int, struct pollfd *, nfds_t, int)
REAL(ppoll, int, struct pollfd *, nfds_t, const struct timespec *, const sigset_t *)
REAL(close, int, int)
REAL(recvmsg, ssize_t, int, struct msghdr *, int)
REAL(syscall, long, long, ...)

/* ---- who is calling ------------------------------------------------------- */

static uintptr_t self_lo, self_hi, lib_lo, lib_hi;
atomic_bool dmb_preload_active;

static int find_range(struct dl_phdr_info *info, size_t size, void *data)
{
	uintptr_t want = (uintptr_t)data, lo = UINTPTR_MAX, hi = 0;
	int i;

	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD)
			continue;
		if (info->dlpi_addr + ph->p_vaddr < lo)
			lo = info->dlpi_addr + ph->p_vaddr;
		if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
			hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	if (want >= lo && want < hi) {
		if (want == (uintptr_t)&self_lo) {
			self_lo = lo;
			self_hi = hi;
		} else {
			lib_lo = lo;
			lib_hi = hi;
		}
		return 1;
	}
	return 0;
}

bool dmb_preload_from_layer(const void *ra)
{
	uintptr_t a = (uintptr_t)ra;

	return (a >= self_lo && a < self_hi) || (a >= lib_lo && a < lib_hi);
}

bool dmb_preload_from_self(const void *ra)
{
	uintptr_t a = (uintptr_t)ra;

	return a >= self_lo && a < self_hi;
}

int dmb_uapi_leak_report(void);

/* Exit status of a run whose leaks are fatal (DMABUF_UAPI_LEAKS=fatal). */
#define LEAKS_EXIT_STATUS 99

static void report_leaks(void)
{
	int n = dmb_uapi_leak_report();

	if (n && dmb_uapi_config()->leaks == 2) {
		fprintf(stderr, "dmabuf-run: %d leak(s) and --leaks=fatal: exit status %d\n", n,
			LEAKS_EXIT_STATUS);
		fflush(NULL);
		_exit(LEAKS_EXIT_STATUS);
	}
}

static void forked_child(void)
{
	dmb_preload_pid = getpid();
	dmb_layer_forked();
	dmb_preload_epoll_forked();
	dmb_uapi_forked();
}

__attribute__((constructor)) static void preload_init(void)
{
	dmb_preload_pid = getpid();
	dl_iterate_phdr(find_range, (void *)&self_lo);
	dl_iterate_phdr(find_range, (void *)(uintptr_t)&dmabuf_ctx_new);
	pthread_atfork(NULL, NULL, forked_child);
	dmb_uapi_init();
	/* Registered first, so it runs after the program's own handlers. */
	if (dmb_uapi_config()->leaks)
		atexit(report_leaks);
	/* Emulated fds inherited over exec are tagged and make this process
	 * active. */
	if (dmb_preload_tag_held())
		atomic_store(&dmb_preload_active, true);
}

__attribute__((destructor)) static void preload_fini(void)
{
	IN_CORE_VOID(dmb_uapi_exit());
}

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

static const char *kind_name(enum dmb_uapi_kind k)
{
	static const char *const names[] = { "-", "heap", "udmabuf", "dma-buf",
					     "sync_file", "sw_sync", "dir" };

	return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* ---- open family ---------------------------------------------------------- */

static int emulated_open(const char *what, const char *path, int flags, mode_t mode)
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

/* A path that may name an emulated file other than by its emulated name:
 * relative (openat on the tree's directory), or a reopen of an fd
 * (/proc/.../fd/N, /dev/fd/N, /dev/stdin...). Its fd is tagged. */
static inline bool path_doubtful(const char *path)
{
	if (!path || path[0] != '/')
		return true;
	if (path[1] == 'p')
		return !strncmp(path, "/proc/", 6);
	if (path[1] == 'd')
		return !strncmp(path, "/dev/fd/", 8) || !strncmp(path, "/dev/std", 8);
	return false;
}

/* The fd of a passed-through open: tagged if it may be an emulated file,
 * or if libdmabuf made it for a program using its API. */
#define OPENED(fd, path, layer) ((layer) || path_doubtful(path) ? dmb_preload_fd_tag_active(fd) : (fd))

static mode_t va_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

#define OPEN_WRAPPER(name)                                                     \
	EXPORT int name(const char *path, int flags, ...)                     \
	{                                                                      \
		va_list ap;                                                    \
		mode_t mode;                                                   \
		va_start(ap, flags);                                           \
		mode = va_mode(flags, ap);                                     \
		va_end(ap);                                                    \
		if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())          \
			return emulated_open(#name, path, flags, mode);        \
		if (__builtin_expect(!LAYER_CALL(), 1))                        \
			return OPENED(get_##name()(path, flags, mode), path, false); \
		if (LAYER_OWNED())                                             \
			return dmb_layer_fd(get_##name()(path, flags, mode),   \
					    flags & O_CLOEXEC);                \
		return OPENED(get_##name()(path, flags, mode), path, true);    \
	}
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                                   \
	EXPORT int name(int dirfd, const char *path, int flags, ...)          \
	{                                                                      \
		va_list ap;                                                    \
		mode_t mode;                                                   \
		va_start(ap, flags);                                           \
		mode = va_mode(flags, ap);                                     \
		va_end(ap);                                                    \
		if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())          \
			return emulated_open(#name, path, flags, mode);        \
		if (__builtin_expect(!LAYER_CALL(), 1))                        \
			return OPENED(get_##name()(dirfd, path, flags, mode), path, false); \
		if (LAYER_OWNED())                                             \
			return dmb_layer_fd(get_##name()(dirfd, path, flags, mode), \
					    flags & O_CLOEXEC);                \
		return OPENED(get_##name()(dirfd, path, flags, mode), path, true); \
	}
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

/* The _FORTIFY_SOURCE entry points. */
EXPORT int __open_2(const char *path, int flags)
{
	if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())
		return emulated_open("open", path, flags, 0);
	return OPENED(get___open_2()(path, flags), path, LAYER_CALL());
}

EXPORT int __open64_2(const char *path, int flags)
{
	if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())
		return emulated_open("open64", path, flags, 0);
	return OPENED(get___open64_2()(path, flags), path, LAYER_CALL());
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())
		return emulated_open("openat", path, flags, 0);
	return OPENED(get___openat_2()(dirfd, path, flags), path, LAYER_CALL());
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())
		return emulated_open("openat64", path, flags, 0);
	return OPENED(get___openat64_2()(dirfd, path, flags), path, LAYER_CALL());
}

EXPORT int creat(const char *path, mode_t mode)
{
	if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())
		return emulated_open("creat", path, O_CREAT | O_WRONLY | O_TRUNC, mode);
	return OPENED(get_creat()(path, mode), path, LAYER_CALL());
}

EXPORT int creat64(const char *path, mode_t mode)
{
	if (dmb_uapi_path_is_emulated(path) && !LAYER_CALL())
		return emulated_open("creat64", path, O_CREAT | O_WRONLY | O_TRUNC, mode);
	return OPENED(get_creat64()(path, mode), path, LAYER_CALL());
}

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
		fd = emulated_open(name, path, flags, 0666);
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
	if (fp && path_doubtful(path))
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

	dmb_uapi_trace("ioctl(%d <%s>, %c/%lu size %lu, %p) = %ld%s%s", fd, kind_name(kind),
		       (int)_IOC_TYPE(cmd), (unsigned long)_IOC_NR(cmd),
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

static int program_ioctl(int fd, unsigned long cmd, void *arg)
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
	return program_ioctl(fd, cmd, arg);
}

/* ---- file operations on emulated fds -------------------------------------- */

/* The kind of fd: an untagged fd is none without a syscall. */
static inline enum dmb_uapi_kind fd_kind(int fd)
{
	if (__builtin_expect(!dmb_preload_fd_maybe(fd), 1))
		return DMB_UAPI_NONE;
	return dmb_uapi_classify(fd);
}

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

EXPORT off_t lseek(int fd, off_t off, int whence)
{
	enum dmb_uapi_kind k = LAYER_CALL() ? DMB_UAPI_NONE : fd_kind(fd);

	if (k == DMB_UAPI_DMABUF || k == DMB_UAPI_HEAP)
		return emulated_lseek(fd, k, off, whence);
	return get_lseek()(fd, off, whence);
}

EXPORT off64_t lseek64(int fd, off64_t off, int whence)
{
	enum dmb_uapi_kind k = LAYER_CALL() ? DMB_UAPI_NONE : fd_kind(fd);

	if (k == DMB_UAPI_DMABUF || k == DMB_UAPI_HEAP)
		return emulated_lseek(fd, k, off, whence);
	return get_lseek64()(fd, off, whence);
}

/* The program mapped a dma-buf once: only then can an munmap release one
 * (inherited by a forked child with the mappings, gone at exec). */
static atomic_bool mapped_dmabuf;

static void *emulated_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off,
			   bool *handled)
{
	void *map = IN_CORE(dmb_uapi_mmap(addr, len, prot, flags, fd, off));

	*handled = map != NULL;
	if (map && (intptr_t)map < 0 && (intptr_t)map > -4096) {
		dmb_uapi_trace("mmap(%p, %zu, %#x, %#x, %d <dma-buf>, %lld) = -1 %s", addr, len,
			       prot, flags, fd, (long long)off, strerror((int)-(intptr_t)map));
		errno = (int)-(intptr_t)map;
		return MAP_FAILED;
	}
	if (!map)
		map = get_mmap()(addr, len, prot, flags, fd, off);
	*handled = true;
	dmb_uapi_trace("mmap(%p, %zu, %#x, %#x, %d <dma-buf>, %lld) = %p", addr, len, prot,
		       flags, fd, (long long)off, map);
	if (map != MAP_FAILED)
		atomic_store_explicit(&mapped_dmabuf, true, memory_order_relaxed);
	if (map != MAP_FAILED && (flags & MAP_TYPE) == MAP_SHARED)
		dmb_uapi_map_note(map, len, prot, fd);
	return map;
}

/* do_mmap() on the heap or udmabuf device: the access checks, then no
 * ->mmap in their file_operations is ENODEV. */
static void *device_mmap(int fd, int prot, int flags)
{
	int fl = get_fcntl()(fd, F_GETFL);

	if (fl >= 0 && ((fl & O_ACCMODE) == O_WRONLY ||
			((flags & MAP_TYPE) == MAP_SHARED && (prot & PROT_WRITE) &&
			 (fl & O_ACCMODE) != O_RDWR)))
		errno = EACCES;
	else
		errno = ENODEV;
	return MAP_FAILED;
}

#define MMAP_WRAPPER(name, type)                                               \
	EXPORT void *name(void *addr, size_t len, int prot, int flags, int fd, type off) \
	{                                                                      \
		enum dmb_uapi_kind k = DMB_UAPI_NONE;                          \
		bool handled;                                                  \
		void *map;                                                     \
		if (!(flags & MAP_ANONYMOUS) && !LAYER_CALL())                 \
			k = fd_kind(fd);                                       \
		if (k == DMB_UAPI_HEAP || k == DMB_UAPI_UDMABUF)               \
			return device_mmap(fd, prot, flags);                   \
		if (k == DMB_UAPI_DMABUF) {                                    \
			map = emulated_mmap(addr, len, prot, flags, fd, off, &handled); \
			if (handled)                                           \
				return map;                                    \
		}                                                              \
		map = get_##name()(addr, len, prot, flags, fd, off);           \
		if (map != MAP_FAILED && !(flags & MAP_ANONYMOUS) && LAYER_CALL() && \
		    LAYER_OWNED())                                             \
			dmb_layer_map_note(map, len);                          \
		return map;                                                    \
	}
MMAP_WRAPPER(mmap, off_t)
MMAP_WRAPPER(mmap64, off64_t)

/* True if addr is in a mapping of a dma-buf's file (the buffer memfds are
 * named "dmabuf:..."), from /proc/self/maps. */
static bool in_dmabuf_mapping(uintptr_t addr)
{
	char line[512];
	bool found = false;
	FILE *fp = get_fopen()("/proc/self/maps", "re");

	if (!fp)
		return false;
	while (!found && fgets(line, sizeof(line), fp)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && addr >= lo && addr < hi)
			found = strstr(line, "/memfd:dmabuf:") != NULL;
	}
	fclose(fp);
	return found;
}

/* dma_buf_mmap_internal() sets VM_DONTEXPAND: vma_to_resize() refuses to
 * grow the mapping with EFAULT. Shrinking and moving are the real call's. */
EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	va_list ap;
	void *new_addr;

	va_start(ap, flags);
	new_addr = flags & MREMAP_FIXED ? va_arg(ap, void *) : NULL;
	va_end(ap);
	if (new_len > old_len && !((uintptr_t)old & (DMB_UAPI_PAGE - 1)) && !LAYER_CALL() &&
	    atomic_load_explicit(&dmb_preload_active, memory_order_relaxed) &&
	    in_dmabuf_mapping((uintptr_t)old)) {
		errno = EFAULT;
		return MAP_FAILED;
	}
	return get_mremap()(old, old_len, new_len, flags, new_addr);
}

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
	return refused_kind(fd_kind(fd));
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
	enum dmb_uapi_kind k = fd_kind(fd);

	/* The heap's file is nonseekable_open()ed: no FMODE_PREAD either. */
	if (k != DMB_UAPI_DMABUF && k != DMB_UAPI_HEAP)
		return false;
	errno = pos < 0 ? EINVAL : ESPIPE;
	return true;
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	if (RW_REFUSED(fd, false))
		return -1;
	return get_read()(fd, buf, n);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	if (RW_REFUSED(fd, true))
		return -1;
	return get_write()(fd, buf, n);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	if (RW_REFUSED(fd, false))
		return -1;
	return get_readv()(fd, iov, n);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	if (RW_REFUSED(fd, true))
		return -1;
	return get_writev()(fd, iov, n);
}

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

/* vfs_fallocate(): a file not open for writing is EBADF, then an inode
 * that is neither regular nor a block device is ENODEV (a dma-buf's anon
 * inode has no type bits). Returns the errno, 0 if the call is not ours. */
static int fallocate_errno(int fd, int64_t off, int64_t len)
{
	int fl;

	if (fd_kind(fd) != DMB_UAPI_DMABUF)
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
EXPORT int fsync(int fd)
{
	if (!LAYER_CALL() && fd_kind(fd) == DMB_UAPI_DMABUF) {
		errno = EINVAL;
		return -1;
	}
	return get_fsync()(fd);
}

EXPORT int fdatasync(int fd)
{
	if (!LAYER_CALL() && fd_kind(fd) == DMB_UAPI_DMABUF) {
		errno = EINVAL;
		return -1;
	}
	return get_fdatasync()(fd);
}

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
	if ((cmd == F_ADD_SEALS || cmd == F_GET_SEALS) && fd_kind(fd) == DMB_UAPI_DMABUF) {
		errno = EINVAL;
		return -1;
	}
	if (cmd == F_GETFL && fd_kind(fd) == DMB_UAPI_DMABUF) {
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

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	/* Not a dup and an untagged fd: the kernel's, at once. */
	if (__builtin_expect(DMB_PRELOAD_RAW_SYSCALL && cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC &&
			     !fcntl_waits(cmd) && !dmb_preload_fd_maybe(fd), 1))
		return (int)dmb_preload_sys3(SYS_fcntl, fd, cmd, (long)arg);
	return program_fcntl(get_fcntl(), __builtin_return_address(0), fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	/* What fcntl() is with _FILE_OFFSET_BITS=64: the same fast path. */
	if (__builtin_expect(DMB_PRELOAD_RAW_SYSCALL && cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC &&
			     !fcntl_waits(cmd) && !dmb_preload_fd_maybe(fd), 1))
		return (int)dmb_preload_sys3(SYS_fcntl, fd, cmd, (long)arg);
	return program_fcntl(get_fcntl64() ? get_fcntl64() : get_fcntl(),
			     __builtin_return_address(0), fd, cmd, arg);
}

EXPORT int ftruncate(int fd, off_t len)
{
	if (!LAYER_CALL() && refused(fd))
		return -1;
	return get_ftruncate()(fd, len);
}

EXPORT int ftruncate64(int fd, off64_t len)
{
	if (!LAYER_CALL() && refused(fd))
		return -1;
	return get_ftruncate64()(fd, len);
}

/* A dma-buf's inode has the buffer's size, a udmabuf's handle too. */
static void fix_size(int fd, off_t *size)
{
	int64_t s;

	if (*size == 0 && fd_kind(fd) == DMB_UAPI_DMABUF && (s = IN_CORE(dmb_uapi_dmabuf_size(fd))) > 0)
		*size = s;
}

EXPORT int fstat(int fd, struct stat *st)
{
	int ret = get_fstat()(fd, st);

	if (!ret && !LAYER_CALL()) {
		fix_size(fd, &st->st_size);
		DEV_MODE(st->st_dev, st->st_ino, st->st_mode);
	}
	return ret;
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	int ret = get_fstat64()(fd, st);

	if (!ret && !LAYER_CALL()) {
		fix_size(fd, &st->st_size);
		DEV_MODE(st->st_dev, st->st_ino, st->st_mode);
	}
	return ret;
}

EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	int ret = get___fxstat()(ver, fd, st);

	if (!ret && !LAYER_CALL()) {
		fix_size(fd, &st->st_size);
		DEV_MODE(st->st_dev, st->st_ino, st->st_mode);
	}
	return ret;
}

EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	int ret = get___fxstat64()(ver, fd, st);

	if (!ret && !LAYER_CALL()) {
		fix_size(fd, &st->st_size);
		DEV_MODE(st->st_dev, st->st_ino, st->st_mode);
	}
	return ret;
}

/* ---- poll ----------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A dma-buf's readiness is its fences', which no file of the kernel here
 * reports: poll the other fds for real and re-check the buffers' fences
 * every millisecond until something is ready or the timeout passes.
 */
static int emulated_poll(struct pollfd *fds, nfds_t n, int timeout)
{
	struct pollfd *copy;
	enum dmb_uapi_kind *kinds;
	int64_t deadline = timeout < 0 ? -1 : now_ms() + timeout;
	int ready, ret;
	bool any = false;
	nfds_t i;

	kinds = calloc(n ? n : 1, sizeof(*kinds));
	copy = calloc(n ? n : 1, sizeof(*copy));
	if (!kinds || !copy) {
		free(kinds);
		free(copy);
		return get_poll()(fds, n, timeout);
	}
	for (i = 0; i < n; i++) {
		kinds[i] = fd_kind(fds[i].fd);
		any |= kinds[i] == DMB_UAPI_DMABUF || kinds[i] == DMB_UAPI_SYNC_FILE;
	}
	if (!any) {
		free(kinds);
		free(copy);
		return get_poll()(fds, n, timeout);
	}
	for (;;) {
		int slice;

		ready = 0;
		for (i = 0; i < n; i++) {
			copy[i] = fds[i];
			copy[i].revents = 0;
			if (kinds[i] == DMB_UAPI_DMABUF) {
				copy[i].fd = -1;
				fds[i].revents = IN_CORE(dmb_uapi_poll_events(
					fds[i].fd, kinds[i], fds[i].events));
				ready += fds[i].revents != 0;
			} else if (kinds[i] == DMB_UAPI_SYNC_FILE) {
				/* Only the socket's POLLIN (the record, or EOF) means
				 * signalled; its POLLOUT and POLLHUP are not the
				 * sync file's. */
				copy[i].events = fds[i].events & POLLIN;
				if (!copy[i].events)
					copy[i].fd = -1;
			}
		}
		slice = ready ? 0 : 1;
		if (deadline >= 0 && now_ms() + slice > deadline)
			slice = (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0);
		ret = get_poll()(copy, n, slice);
		if (ret < 0) {
			ready = -1;
			break;
		}
		for (i = 0; i < n; i++) {
			if (kinds[i] == DMB_UAPI_SYNC_FILE)
				/* sync_file_poll(): EPOLLIN once signalled, else 0. */
				fds[i].revents = copy[i].revents & POLLNVAL ? POLLNVAL
						 : copy[i].revents & (POLLIN | POLLHUP | POLLERR) ? POLLIN
						 : 0;
			else if (kinds[i] != DMB_UAPI_DMABUF)
				fds[i].revents = copy[i].revents;
			if (kinds[i] != DMB_UAPI_DMABUF)
				ready += fds[i].revents != 0;
		}
		if (ready || (deadline >= 0 && now_ms() >= deadline))
			break;
	}
	free(kinds);
	free(copy);
	return ready;
}

/* True if any fd of the set is tagged (may be an emulated one). */
static bool any_tagged(const struct pollfd *fds, nfds_t n)
{
	nfds_t i;

	for (i = 0; i < n; i++)
		if (dmb_preload_fd_maybe(fds[i].fd))
			return true;
	return false;
}

EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	if (!any_tagged(fds, n) || LAYER_CALL())
		return get_poll()(fds, n, timeout);
	return emulated_poll(fds, n, timeout);
}

EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *sig)
{
	enum dmb_uapi_kind k;
	nfds_t i;

	if (!any_tagged(fds, n) || LAYER_CALL())
		return get_ppoll()(fds, n, ts, sig);
	for (i = 0; i < n; i++)
		if ((k = fd_kind(fds[i].fd)) == DMB_UAPI_DMABUF || k == DMB_UAPI_SYNC_FILE)
			break;
	if (i == n)
		return get_ppoll()(fds, n, ts, sig);
	/* The signal mask is not applied while dma-bufs are polled. */
	return emulated_poll(fds, n, ts ? (int)(ts->tv_sec * 1000 + ts->tv_nsec / 1000000) : -1);
}

/* select() and pselect() on dma-bufs: the same readiness, through poll. */
static int select_as_poll(int nfds, fd_set *r, fd_set *w, fd_set *e, int timeout_ms)
{
	struct pollfd *p;
	int fd, n = 0, i, ret, bits = 0;

	p = calloc((size_t)nfds, sizeof(*p));
	if (!p) {
		errno = ENOMEM;
		return -1;
	}
	for (fd = 0; fd < nfds; fd++) {
		short ev = (r && FD_ISSET(fd, r) ? POLLIN : 0) |
			   (w && FD_ISSET(fd, w) ? POLLOUT : 0) | (e && FD_ISSET(fd, e) ? POLLPRI : 0);

		if (ev)
			p[n++] = (struct pollfd){ .fd = fd, .events = ev };
	}
	ret = emulated_poll(p, (nfds_t)n, timeout_ms);
	if (ret < 0) {
		free(p);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (p[i].revents & POLLNVAL) {
			free(p);
			errno = EBADF;
			return -1;
		}
	}
	if (r)
		FD_ZERO(r);
	if (w)
		FD_ZERO(w);
	if (e)
		FD_ZERO(e);
	for (i = 0; i < n; i++) {
		short rev = p[i].revents;

		if (r && (p[i].events & POLLIN) && (rev & (POLLIN | POLLHUP | POLLERR))) {
			FD_SET(p[i].fd, r);
			bits++;
		}
		if (w && (p[i].events & POLLOUT) && (rev & (POLLOUT | POLLERR))) {
			FD_SET(p[i].fd, w);
			bits++;
		}
		if (e && (p[i].events & POLLPRI) && (rev & POLLPRI)) {
			FD_SET(p[i].fd, e);
			bits++;
		}
	}
	free(p);
	return bits;
}

/* True if a dma-buf is among the fds of the sets (active processes only). */
static bool sets_have_dmabuf(int nfds, fd_set *r, fd_set *w, fd_set *e)
{
	enum dmb_uapi_kind k;
	int fd;

	if (!atomic_load_explicit(&dmb_preload_active, memory_order_relaxed) || nfds <= 0 || nfds > FD_SETSIZE)
		return false;

	for (fd = 0; fd < nfds; fd++)
		if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w))) &&
		    ((k = fd_kind(fd)) == DMB_UAPI_DMABUF || k == DMB_UAPI_SYNC_FILE))
			return true;
	return false;
}

REAL(select, int, int, fd_set *, fd_set *, fd_set *, struct timeval *)
REAL(pselect, int, int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *)

EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	if (LAYER_CALL() || !sets_have_dmabuf(nfds, r, w, e))
		return get_select()(nfds, r, w, e, tv);
	return select_as_poll(nfds, r, w, e,
			      tv ? (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000) : -1);
}

EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
		   const sigset_t *sig)
{
	if (LAYER_CALL() || !sets_have_dmabuf(nfds, r, w, e))
		return get_pselect()(nfds, r, w, e, ts, sig);
	/* The signal mask is not applied while dma-bufs are waited for. */
	return select_as_poll(nfds, r, w, e,
			      ts ? (int)(ts->tv_sec * 1000 + ts->tv_nsec / 1000000) : -1);
}

/* ---- close, recvmsg ------------------------------------------------------- */

static int program_close(int fd)
{
	enum dmb_uapi_kind kind;
	unsigned char tag;
	struct stat st;
	bool maybe;
	int ret;

	/* On Linux the program has no such fd. */
	if (dmb_layer_fd_is(fd)) {
		errno = EBADF;
		return -1;
	}
	/* An untagged fd is no emulated file: nothing to do after. */
	maybe = dmb_preload_fd_maybe(fd);
	if (__builtin_expect(!maybe, 1) && !dmb_preload_epoll_any())
		return get_close()(fd);
	tag = dmb_preload_fd_tag_of(fd); /* 0 above the table: nothing to clear */
	if (maybe && getpid() != dmb_preload_pid)
		/* A vfork child: the memory is the parent's, the fd table
		 * is not. The parent's bookkeeping stays as it is. */
		return get_close()(fd);
	if (dmb_preload_epoll_any() && get_fstat()(fd, &st) == 0) {
		/* An epoll record may go with this fd. */
		kind = atomic_load_explicit(&dmb_preload_active, memory_order_relaxed)
			       ? dmb_uapi_classify_stat(fd, &st)
			       : DMB_UAPI_NONE;
		ret = get_close()(fd);
		if (!ret)
			dmb_preload_epoll_closed(st.st_dev, st.st_ino);
		goto closed;
	}
	if (!dmb_uapi_close_matters() || get_fstat()(fd, &st) < 0) {
		ret = get_close()(fd);
		if (!ret)
			dmb_preload_fd_untag(fd, tag);
		return ret;
	}
	kind = dmb_uapi_classify_stat(fd, &st);
	ret = get_close()(fd);
closed:
	if (!ret)
		dmb_preload_fd_untag(fd, tag);
	if (kind != DMB_UAPI_NONE) {
		dmb_uapi_trace("close(%d <%s>) = %d", fd, kind_name(kind), ret);
		if (!ret)
			IN_CORE_VOID(dmb_uapi_closed(kind, st.st_dev, st.st_ino));
	}
	return ret;
}

REAL(munmap, int, void *, size_t)

EXPORT int munmap(void *addr, size_t len)
{
	int ret;

	/* The library's mappings (a udmabuf's) are made by emulated_mmap. */
	if (atomic_load_explicit(&mapped_dmabuf, memory_order_relaxed) && !LAYER_CALL() &&
	    IN_CORE(dmb_uapi_munmap_lib(addr, len)))
		ret = 0;
	else
		ret = get_munmap()(addr, len);
	if (!ret && LAYER_CALL())
		dmb_layer_map_forget(addr, len);
	/* The last mapping of a buffer may have gone: release it now. */
	if (!ret && atomic_load_explicit(&mapped_dmabuf, memory_order_relaxed) && !LAYER_CALL()) {
		dmb_uapi_map_forget(addr, len);
		IN_CORE_VOID(dmb_uapi_closed(DMB_UAPI_DMABUF, 0, 0));
	}
	return ret;
}

EXPORT int close(int fd)
{
	if (LAYER_CALL()) {
		dmb_layer_fd_forget(fd);
		return get_close()(fd);
	}
	return program_close(fd);
}

enum received { RECEIVED_LAYER, RECEIVED_API, RECEIVED_PROGRAM };

/* The SCM_RIGHTS fds of a received message: the layer's own are moved up;
 * the others may be emulated ones and are tagged. The program's make the
 * process active. */
static void received_fds(struct msghdr *msg, int flags, enum received whose)
{
	struct cmsghdr *c;
	bool any = false;

	if (!msg || !msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr))
		return;
	for (c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		int *fds = (int *)CMSG_DATA(c), i;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (i = 0; i < (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)); i++) {
			if (whose == RECEIVED_LAYER)
				fds[i] = dmb_layer_fd(fds[i], flags & MSG_CMSG_CLOEXEC);
			else if (whose == RECEIVED_API)
				dmb_preload_fd_tag_active(fds[i]);
			else
				dmb_preload_fd_tag(fds[i]);
			any = true;
		}
	}
	if (any && whose == RECEIVED_PROGRAM)
		dmb_preload_activate();
}

static enum received receiver(const void *ra)
{
	if (!dmb_preload_from_layer(ra))
		return RECEIVED_PROGRAM;
	return dmb_preload_layer_owned(ra) ? RECEIVED_LAYER : RECEIVED_API;
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t ret = get_recvmsg()(fd, msg, flags);

	if (ret >= 0 && msg && msg->msg_controllen)
		received_fds(msg, flags, receiver(__builtin_return_address(0)));
	return ret;
}

REAL(recvmmsg, int, int, struct mmsghdr *, unsigned int, int, struct timespec *)

EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t)
{
	int ret = get_recvmmsg()(fd, v, n, flags, t), i;
	enum received whose;

	if (ret <= 0)
		return ret;
	/* The library's endpoint reads its requests this way; what it
	 * receives stays where it falls (only recvmsg moves the layer's). */
	whose = receiver(__builtin_return_address(0));
	for (i = 0; i < ret && whose != RECEIVED_LAYER; i++)
		if (v[i].msg_hdr.msg_controllen)
			received_fds(&v[i].msg_hdr, flags, whose);
	return ret;
}

/* ---- syscall() -------------------------------------------------------------- */

EXPORT long syscall(long nr, ...)
{
	long a[6];
	va_list ap;
	int i;

	va_start(ap, nr);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (!LAYER_CALL()) {
		switch (nr) {
		case SYS_ioctl:
			return program_ioctl((int)a[0], (unsigned long)a[1], (void *)a[2]);
		case SYS_openat:
			if (dmb_uapi_path_is_emulated((const char *)a[1]))
				return emulated_open("openat", (const char *)a[1], (int)a[2],
						     (mode_t)a[3]);
			return OPENED((int)get_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5]),
				      (const char *)a[1], false);
#ifdef SYS_open
		case SYS_open:
			if (dmb_uapi_path_is_emulated((const char *)a[0]))
				return emulated_open("open", (const char *)a[0], (int)a[1],
						     (mode_t)a[2]);
			return OPENED((int)get_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5]),
				      (const char *)a[0], false);
#endif
		/* The gates of fdplace.c's tags, reached without libc. */
#ifdef SYS_dup2
		case SYS_dup2:
#endif
		case SYS_dup3:
			if (dmb_layer_fd_is((int)a[1])) {
				errno = EBUSY;
				return -1;
			}
			dmb_preload_dup_tag((int)a[0], (int)a[1], false);
			break;
		case SYS_dup:
			if (dmb_preload_fd_maybe((int)a[0]))
				return dmb_preload_fd_tag((int)get_syscall()(nr, a[0], a[1], a[2],
									   a[3], a[4], a[5]));
			break;
		case SYS_fcntl:
			if ((a[1] == F_DUPFD || a[1] == F_DUPFD_CLOEXEC) &&
			    dmb_preload_fd_maybe((int)a[0]))
				return dmb_preload_fd_tag((int)get_syscall()(nr, a[0], a[1], a[2],
									   a[3], a[4], a[5]));
			break;
#ifdef SYS_pidfd_getfd
		case SYS_pidfd_getfd:
			return dmb_preload_fd_tag_active(
				(int)get_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5]));
#endif
		case SYS_recvmsg: {
			long ret = get_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
			struct msghdr *msg = (struct msghdr *)a[1];

			if (ret >= 0 && msg && msg->msg_controllen)
				received_fds(msg, (int)a[2], RECEIVED_PROGRAM);
			return ret;
		}
		case SYS_recvmmsg: {
			long ret = get_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
			struct mmsghdr *v = (struct mmsghdr *)a[1];

			for (i = 0; i < ret; i++)
				if (v[i].msg_hdr.msg_controllen)
					received_fds(&v[i].msg_hdr, (int)a[3], RECEIVED_PROGRAM);
			return ret;
		}
		case SYS_close:
			return program_close((int)a[0]);
		case SYS_close_range:
			return dmb_program_close_range((unsigned int)a[0], (unsigned int)a[1],
						       (int)a[2]);
		default:
			break;
		}
	}
	return get_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
