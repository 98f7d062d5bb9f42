/* SPDX-License-Identifier: MIT */
/*
 * What the files of the preload (libdmabuf-preload.so) share: who is
 * calling, whether the process has emulated objects, and the placement of
 * the layer's own fds (fdplace.c). Not part of the core (uapi.h, core.h):
 * all of it is about the program's own address space and fd table.
 */
#pragma once

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#define EXPORT __attribute__((visibility("default")))

/* The next definition of a libc function the preload wraps (dlsym
 * RTLD_NEXT, looked up at first use): DECLARE_REAL(name) once per file,
 * then GET_REAL(name)(args). Needs <dlfcn.h>. */
#define DECLARE_REAL(name)                                                     \
	static __typeof__(&name) real_##name;                                  \
	static __typeof__(&name) next_##name(void)                             \
	{                                                                      \
		if (!real_##name)                                              \
			real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name); \
		return real_##name;                                            \
	}
#define GET_REAL(name) next_##name()

/* True if the return address ra is in the preload or in libdmabuf. */
bool dmb_preload_from_layer(const void *ra);
#define LAYER_CALL() dmb_preload_from_layer(__builtin_return_address(0))

/* True if ra is in the preload itself (the emulation core included). */
bool dmb_preload_from_self(const void *ra);

/* The process has emulated objects (docs/uapi.md, "Cost"). */
extern atomic_bool dmb_preload_active;

/*
 * The pass-through test (fdplace.c, "Tags"): one byte per fd number below
 * DMB_PRELOAD_FDS, 0 when the fd cannot be an emulated one, else a
 * generation. Until the process is active nothing is classified; once it
 * is, an fd whose byte is 0 goes to the kernel untouched (no fstat, no
 * lock). Every gate through which an emulated file can reach an fd number
 * tags it before the number is returned to the program.
 */
#define DMB_PRELOAD_FDS 65536
extern _Atomic unsigned char dmb_preload_fd_tags[DMB_PRELOAD_FDS];

/* True if fd may be an emulated one and must be classified. fds above the
 * table are classified whenever the process is active. */
static inline bool dmb_preload_fd_maybe(int fd)
{
	if (__builtin_expect(!atomic_load_explicit(&dmb_preload_active, memory_order_relaxed), 1))
		return false;
	if (__builtin_expect((unsigned int)fd < DMB_PRELOAD_FDS, 1))
		return atomic_load_explicit(&dmb_preload_fd_tags[fd], memory_order_relaxed) != 0;
	return fd >= 0;
}

/* Tags fd (a new generation); fds < 0 or above the table are left as they
 * are. Returns fd. */
int dmb_preload_fd_tag(int fd);

/* Tags fd if the process is active (an inactive one classifies nothing;
 * its activation tags what it holds). Returns fd. */
int dmb_preload_fd_tag_active(int fd);

/* The process becomes active (it has or may have emulated fds): the first
 * time, every emulated fd it already holds is tagged. */
void dmb_preload_activate(void);

/* Tags every emulated fd the process holds (from /proc/self/fd); true if
 * there was one. */
bool dmb_preload_tag_held(void);

/* The tag of fd (0 if none), read before closing it. */
static inline unsigned char dmb_preload_fd_tag_of(int fd)
{
	if ((unsigned int)fd >= DMB_PRELOAD_FDS)
		return 0;
	return atomic_load_explicit(&dmb_preload_fd_tags[fd], memory_order_relaxed);
}

/* After the program's fd was closed: clears its tag if it is still `gen`
 * (no other thread tagged a new file at that number meanwhile). Only in
 * the process that owns the table: the caller checks that it is not a
 * vfork child (which shares the table, not the fd table). */
void dmb_preload_fd_untag(int fd, unsigned char gen);

/*
 * A pass-through system call of up to three arguments made here, as libc's
 * wrapper makes it, for calls that are no cancellation point (ioctl, dup,
 * fcntl but F_SETLKW): no second indirect call. -1 with errno on failure.
 * Where it is not implemented, DMB_PRELOAD_RAW_SYSCALL is 0 and the caller
 * uses the next definition.
 */
#if defined(__x86_64__)
#define DMB_PRELOAD_RAW_SYSCALL 1
static inline long dmb_preload_sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	if ((unsigned long)ret > -4096ul) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}
#else
#define DMB_PRELOAD_RAW_SYSCALL 0
#define dmb_preload_sys3(nr, a, b, c) (errno = ENOSYS, -1L)
#endif

/* Before a dup of oldfd to newfd (newfd < 0: after, with the new fd): tags
 * newfd if oldfd is tagged or layer (a call from libdmabuf for its API
 * user) is true. */
void dmb_preload_dup_tag(int oldfd, int newfd, bool layer);

/* sockops.c: true (errno ENOTSOCK) if fd is an emulated file, which is
 * no socket in the kernel, and ra (the wrapper's return address) is the
 * program's: its socket calls on it are refused (a sync file is one
 * here). False for an untagged fd without a syscall. */
bool dmb_preload_not_a_socket(int fd, const void *ra);

/* The process's id, kept without a syscall (updated in a forked child). */
extern pid_t dmb_preload_pid;

/* Depth of calls into the emulation core on this thread: libdmabuf's fds
 * made meanwhile are the layer's; outside, they are those of a program
 * using libdmabuf's API. */
/* initial-exec: the preload is loaded at start-up (LD_PRELOAD), so its
 * TLS is static and every wrapper reads it without __tls_get_addr(). */
extern __thread int dmb_preload_in_core __attribute__((tls_model("initial-exec")));
#define IN_CORE(expr)                                                          \
	({                                                                     \
		dmb_preload_in_core++;                                         \
		__auto_type in_core_ret_ = (expr);                             \
		dmb_preload_in_core--;                                         \
		in_core_ret_;                                                  \
	})
#define IN_CORE_VOID(stmt)                                                     \
	do {                                                                   \
		dmb_preload_in_core++;                                         \
		stmt;                                                          \
		dmb_preload_in_core--;                                         \
	} while (0)

/* True if a call with return address ra makes fds of the layer's own. */
static inline bool dmb_preload_layer_owned(const void *ra)
{
	return dmb_preload_from_self(ra) ||
	       (dmb_preload_in_core > 0 && dmb_preload_from_layer(ra));
}
#define LAYER_OWNED() dmb_preload_layer_owned(__builtin_return_address(0))

/*
 * A new fd of the layer's own: moved to the lowest free number at or above
 * the layer's base (half the RLIMIT_NOFILE soft limit, at most 16384), so
 * the program's fds are numbered as on Linux, and marked as the layer's.
 * cloexec: whether the fd has FD_CLOEXEC. Returns the fd's number (the
 * old one if there is no room up there); negative fds are returned as
 * they are.
 */
int dmb_layer_fd(int fd, bool cloexec);

/* An fd the layer made for the program (an emulated open, an ioctl's new
 * fd, an fdinfo text): moved to the lowest free number, as the kernel's
 * fd_install() would place it, unmarked. Returns the number. */
int dmb_program_fd(int fd, bool cloexec);

/* True if fd is one of the layer's own. */
bool dmb_layer_fd_is(int fd);

/* The layer closes one of its own fds. */
void dmb_layer_fd_forget(int fd);

/* The layer maps (or unmaps) a file for itself: recorded in the registry
 * (core.h), so fdinfo's count leaves it out. */
void dmb_layer_map_note(void *addr, size_t len);
void dmb_layer_map_forget(void *addr, size_t len);

/* In a forked child: the registry becomes this process's own. */
void dmb_layer_forked(void);

/* The program's close_range(): the same call on the gaps between the
 * layer's fds. 0 or -1 with errno. */
int dmb_program_close_range(unsigned int lo, unsigned int hi, int flags);

/* epoll on dma-bufs (epoll.c): true if the program registered any; after
 * the program closed an fd of inode (dev, ino) (a buffer or an epoll set);
 * in a forked child. */
bool dmb_preload_epoll_any(void);
void dmb_preload_epoll_closed(dev_t dev, ino_t ino);
void dmb_preload_epoll_sweep(void);
void dmb_preload_epoll_forked(void);
/* In a forked child, once the core is this process's: the records of sync
 * files get callbacks of this process (epoll.c). */
void dmb_preload_epoll_adopt(void);
