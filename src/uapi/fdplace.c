/* SPDX-License-Identifier: MIT */
/*
 * Where the layer's own fds live, and their protection from the program.
 *
 * The kernel gives a program the lowest free fd; the emulation holds fds
 * of its own (the context's sockets, epoll and eventfds, buffer memfds,
 * probe descriptions). Left where they fall, they take the numbers the
 * program expects for its own files (an 8-byte DMA_HEAP_IOCTL_ALLOC, whose
 * fd is not copied back, leaves the buffer at "the lowest free fd"). So
 * every fd the layer makes for itself is moved up to the layer's base (half
 * the RLIMIT_NOFILE soft limit, at most 16384) and marked in a bitmap;
 * fds the layer makes for the program are moved down to the lowest free
 * number, where fd_install() would have put them.
 *
 * The marks protect the layer's fds from a program that closes what it
 * does not own (close_range(3, ~0U), closefrom(3), a loop of close()):
 * on Linux those fds do not exist in the program, so close() of one is
 * EBADF and a range skips them. dup2()/dup3() onto one cannot be done
 * without breaking the layer: EBUSY (docs/uapi.md, "Limits").
 *
 * Whose is a new fd: the preload's own calls make layer fds, and so does
 * everything on a thread that is inside the emulation core (IN_CORE) or
 * is the layer context's service thread (epoll.c knows it by its wait on
 * the layer's epoll fd). libdmabuf's calls on behalf of a program using
 * its API are the program's and stay where they fall.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core.h"
#include "preload.h"

__thread int dmb_preload_in_core __attribute__((tls_model("initial-exec")));

/* The next definition of name, looked up once. */
DECLARE_REAL(close);
DECLARE_REAL(fcntl);

static int sys_close(int fd)
{
	return GET_REAL(close)(fd);
}

static int sys_dupfd(int fd, int min, bool cloexec)
{
	return GET_REAL(fcntl)(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, min);
}

/* ---- the marks ---------------------------------------------------------- */

#define MAX_TRACKED DMB_UAPI_REGISTRY_FDS

/* The registry (core.h): static until the shared one is made, or if it
 * cannot be. */
static struct dmb_uapi_registry fallback;
static struct dmb_uapi_registry *reg = &fallback;
static int reg_fd = -1;
#define marks ((_Atomic uint64_t *)reg->marks)
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;

static void mark(int fd, bool on)
{
	if (fd < 0 || fd >= MAX_TRACKED)
		return;
	if (on)
		atomic_fetch_or(&marks[fd / 64], 1ull << (fd % 64));
	else
		atomic_fetch_and(&marks[fd / 64], ~(1ull << (fd % 64)));
}

bool dmb_layer_fd_is(int fd)
{
	if (fd < 0 || fd >= MAX_TRACKED)
		return false;
	return atomic_load_explicit(&marks[fd / 64], memory_order_relaxed) & (1ull << (fd % 64));
}

void dmb_layer_fd_forget(int fd)
{
	mark(fd, false);
}

/* The first marked fd in [from, to], or -1. */
static long next_mark(unsigned long from, unsigned long to)
{
	unsigned long fd = from;

	while (fd <= to && fd < MAX_TRACKED) {
		uint64_t w = atomic_load(&marks[fd / 64]) >> (fd % 64);

		if (w)
			return (long)(fd + (unsigned long)__builtin_ctzll(w)) <= (long)to
				       ? (long)(fd + (unsigned long)__builtin_ctzll(w))
				       : -1;
		fd = (fd / 64 + 1) * 64;
	}
	return -1;
}

/* ---- tags: which fd numbers may hold an emulated file -------------------- */

/*
 * The invariant: an fd number that refers to an emulated file (a heap,
 * udmabuf, dma-buf, sync file or sw_sync fd) has a non-zero tag. The
 * gates, each tagging before the number is returned:
 * - fds the layer makes for the program (dmb_program_fd: emulated opens,
 *   the new fds of ioctls), and every fd libdmabuf makes for a program
 *   using its API (OWN: a call from the layer that is not the layer's own);
 * - fds received with SCM_RIGHTS (recvmsg, recvmmsg, their syscall()s);
 * - a dup of a tagged fd (dup, dup2, dup3, F_DUPFD, F_DUPFD_CLOEXEC); for
 *   dup2/dup3 the target is tagged before the call, so no thread can see
 *   the new file at an untagged number;
 * - opens that may reach an emulated file by another name: a relative
 *   path (openat on the emulated tree's directory), /proc/... and
 *   /dev/fd/... (a reopen of an fd), and pidfd_getfd();
 * - fds inherited over exec (classified once at start-up).
 * A tag is cleared only after the program's close() of the fd, and only if
 * it is still the generation read before the close: a thread that tagged a
 * new file at the same number in between changed it, and the tag stays.
 * A vfork child shares the table with its parent but not the fd table: it
 * never clears. A stale tag costs one fstat (the classification), never a
 * wrong answer; a missing one would pass an emulated fd through, so every
 * doubtful case tags.
 */
_Atomic unsigned char dmb_preload_fd_tags[DMB_PRELOAD_FDS];
static atomic_uint tag_gen;
pid_t dmb_preload_pid;

int dmb_preload_fd_tag(int fd)
{
	unsigned int g;

	if ((unsigned int)fd >= DMB_PRELOAD_FDS)
		return fd;
	g = atomic_fetch_add_explicit(&tag_gen, 1, memory_order_relaxed) % 255 + 1;
	atomic_store_explicit(&dmb_preload_fd_tags[fd], (unsigned char)g, memory_order_release);
	return fd;
}

int dmb_preload_fd_tag_active(int fd)
{
	/* After the call that made fd: an activation that did not see this
	 * load's false scans the fd table after fd was in it. */
	if (fd >= 0 && atomic_load(&dmb_preload_active))
		dmb_preload_fd_tag(fd);
	return fd;
}

bool dmb_preload_tag_held(void)
{
	bool found = false;
	DIR *d;
	struct dirent *e;

	d = opendir("/proc/self/fd");
	if (!d)
		return false;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d) && !dmb_layer_fd_is(fd) &&
		    dmb_uapi_classify(fd) != DMB_UAPI_NONE) {
			dmb_preload_fd_tag(fd);
			found = true;
		}
	}
	closedir(d);
	return found;
}

void dmb_preload_activate(void)
{
	if (atomic_load_explicit(&dmb_preload_active, memory_order_relaxed) ||
	    atomic_exchange(&dmb_preload_active, true))
		return;
	/* Until now only what the layer made for the program was tagged: the
	 * emulated fds an inactive process got by the other gates (a relative
	 * open in the tree, libdmabuf's fds for its API user) are found here. */
	dmb_preload_tag_held();
}

void dmb_preload_fd_untag(int fd, unsigned char gen)
{
	unsigned char expect = gen;

	if (!gen || (unsigned int)fd >= DMB_PRELOAD_FDS)
		return;
	atomic_compare_exchange_strong(&dmb_preload_fd_tags[fd], &expect, 0);
}

/* ---- placement ------------------------------------------------------------ */

static atomic_int base;

static int compute_base(void)
{
	struct rlimit rl;
	rlim_t b;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	b = rl.rlim_cur == RLIM_INFINITY ? 16384 : rl.rlim_cur / 2;
	if (b > 16384)
		b = 16384;
	/* Too few fds to keep any apart. */
	if (b < 16)
		b = 0;
	atomic_store(&base, (int)b);
	return (int)b;
}

int dmb_layer_fd(int fd, bool cloexec)
{
	int b = atomic_load_explicit(&base, memory_order_relaxed), nfd;

	if (fd < 0)
		return fd;
	if (!b)
		b = compute_base();
	if (b && fd < b) {
		nfd = sys_dupfd(fd, b, cloexec);
		/* The limit changed under us: a new base next time. */
		if (nfd < 0 && errno == EINVAL)
			compute_base();
		if (nfd >= 0) {
			sys_close(fd);
			fd = nfd;
		}
		errno = 0;
	}
	mark(fd, true);
	return fd;
}

int dmb_program_fd(int fd, bool cloexec)
{
	int nfd, e = errno;

	if (fd < 0)
		return fd;
	mark(fd, false);
	nfd = sys_dupfd(fd, 0, cloexec);
	if (nfd < 0)
		return dmb_preload_fd_tag(fd);
	if (nfd > fd) {
		/* Already the lowest: keep it, with the flag asked for. */
		sys_close(nfd);
		GET_REAL(fcntl)(fd, F_SETFD, cloexec ? FD_CLOEXEC : 0);
		errno = e;
		return dmb_preload_fd_tag(fd);
	}
	dmb_preload_fd_tag(nfd);
	sys_close(fd);
	errno = e;
	return nfd;
}

/* ---- the registry --------------------------------------------------------- */

DECLARE_REAL(mmap);
DECLARE_REAL(munmap);

/* A shared registry of its own for this process, filled with `from`. */
static void registry_make(const struct dmb_uapi_registry *from)
{
	struct dmb_uapi_registry *r;
	int fd = (int)syscall(SYS_memfd_create, DMB_UAPI_REGISTRY_NAME, MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (ftruncate(fd, sizeof(*r)) < 0 ||
	    (r = GET_REAL(mmap)(NULL, sizeof(*r), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
		    MAP_FAILED) {
		sys_close(fd);
		return;
	}
	memcpy(r, from, sizeof(*r));
	r->magic = DMB_UAPI_REGISTRY_MAGIC;
	reg = r;
	reg_fd = dmb_layer_fd(fd, true);
}

__attribute__((constructor(101))) static void registry_init(void)
{
	registry_make(&fallback);
}

void dmb_layer_forked(void)
{
	struct dmb_uapi_registry *old = reg;
	int old_fd = reg_fd;

	/* The parent's registry is the parent's: a copy of our own. */
	pthread_mutex_init(&maps_lock, NULL);
	if (old == &fallback)
		return;
	registry_make(old);
	if (reg != old) {
		mark(old_fd, false);
		sys_close(old_fd);
		GET_REAL(munmap)(old, sizeof(*old));
	}
}

void dmb_layer_map_note(void *addr, size_t len)
{
	int i;

	pthread_mutex_lock(&maps_lock);
	for (i = 0; i < DMB_UAPI_REGISTRY_MAPS; i++) {
		if (reg->maps[i].lo == reg->maps[i].hi) {
			reg->maps[i].hi = (uintptr_t)addr + len;
			reg->maps[i].lo = (uintptr_t)addr;
			break;
		}
	}
	pthread_mutex_unlock(&maps_lock);
}

void dmb_layer_map_forget(void *addr, size_t len)
{
	uint64_t lo = (uintptr_t)addr, hi = lo + len;
	int i;

	pthread_mutex_lock(&maps_lock);
	for (i = 0; i < DMB_UAPI_REGISTRY_MAPS; i++)
		if (reg->maps[i].lo != reg->maps[i].hi && reg->maps[i].lo >= lo &&
		    reg->maps[i].hi <= hi)
			reg->maps[i].lo = reg->maps[i].hi = 0;
	pthread_mutex_unlock(&maps_lock);
}

/* ---- calls that make fds ---------------------------------------------------- */

/* The layer's own fds go up; an fd libdmabuf makes for a program using its
 * API may be a dma-buf or a sync file: tagged. */
#define OWN(fd, cloexec)                                                       \
	(!LAYER_CALL()	 ? (fd)                                                \
	 : LAYER_OWNED() ? dmb_layer_fd((fd), (cloexec))                       \
			 : dmb_preload_fd_tag_active(fd))

DECLARE_REAL(memfd_create);
EXPORT int memfd_create(const char *name, unsigned int flags)
{
	int fd = GET_REAL(memfd_create)(name, flags);

	return OWN(fd, flags & MFD_CLOEXEC);
}

DECLARE_REAL(socket);
EXPORT int socket(int domain, int type, int proto)
{
	int fd = GET_REAL(socket)(domain, type, proto);

	return OWN(fd, type & SOCK_CLOEXEC);
}

DECLARE_REAL(socketpair);
EXPORT int socketpair(int domain, int type, int proto, int sv[2])
{
	int ret = GET_REAL(socketpair)(domain, type, proto, sv);

	if (!ret) {
		sv[0] = OWN(sv[0], type & SOCK_CLOEXEC);
		sv[1] = OWN(sv[1], type & SOCK_CLOEXEC);
	}
	return ret;
}

DECLARE_REAL(accept4);
EXPORT int accept4(int s, struct sockaddr *addr, socklen_t *len, int flags)
{
	int fd;

	if (dmb_preload_not_a_socket(s, __builtin_return_address(0)))
		return -1;
	fd = GET_REAL(accept4)(s, addr, len, flags);

	return OWN(fd, flags & SOCK_CLOEXEC);
}

DECLARE_REAL(eventfd);
EXPORT int eventfd(unsigned int count, int flags)
{
	int fd = GET_REAL(eventfd)(count, flags);

	return OWN(fd, flags & EFD_CLOEXEC);
}

DECLARE_REAL(epoll_create1);
EXPORT int epoll_create1(int flags)
{
	int fd = GET_REAL(epoll_create1)(flags);

	return OWN(fd, flags & EPOLL_CLOEXEC);
}

DECLARE_REAL(inotify_init1);
EXPORT int inotify_init1(int flags)
{
	int fd = GET_REAL(inotify_init1)(flags);

	return OWN(fd, flags & IN_CLOEXEC);
}

DECLARE_REAL(timerfd_create);
EXPORT int timerfd_create(int clock, int flags)
{
	int fd = GET_REAL(timerfd_create)(clock, flags);

	return OWN(fd, flags & TFD_CLOEXEC);
}

DECLARE_REAL(pipe2);
EXPORT int pipe2(int p[2], int flags)
{
	int ret = GET_REAL(pipe2)(p, flags);

	if (!ret) {
		p[0] = OWN(p[0], flags & O_CLOEXEC);
		p[1] = OWN(p[1], flags & O_CLOEXEC);
	}
	return ret;
}

/* ---- the program's calls on the layer's fds ------------------------------------ */

/* dup2()/dup3() onto a layer fd would take the layer's file away. */
static bool dup_target_refused(bool owned, int oldfd, int newfd)
{
	if (owned)
		return false;
	if (dmb_layer_fd_is(oldfd)) {
		errno = EBADF;
		return true;
	}
	if (dmb_layer_fd_is(newfd)) {
		errno = EBUSY;
		return true;
	}
	return false;
}

/* The target of a dup of a tagged fd is tagged before the call. */
void dmb_preload_dup_tag(int oldfd, int newfd, bool layer)
{
	if (dmb_preload_fd_maybe(oldfd))
		dmb_preload_fd_tag(newfd);
	else if (layer)
		dmb_preload_fd_tag_active(newfd);
}

/* The program's dup2()/dup3() closed what newfd held: an epoll item of
 * it may go, as with close() (src/uapi/epoll.c). */
static int dup_closed(bool owned, int oldfd, int newfd, int ret, bool was_open)
{
	if (ret >= 0 && was_open && !owned && oldfd != newfd)
		dmb_preload_epoll_sweep();
	return ret;
}

static inline bool epoll_target_open(bool owned, int newfd)
{
	return !owned && dmb_preload_epoll_any() && GET_REAL(fcntl)(newfd, F_GETFD) >= 0;
}

DECLARE_REAL(dup2);
EXPORT int dup2(int oldfd, int newfd)
{
	bool owned = LAYER_CALL() && LAYER_OWNED(), was_open;

	if (dup_target_refused(owned, oldfd, newfd))
		return -1;
	dmb_preload_dup_tag(oldfd, newfd, !owned && LAYER_CALL());
	was_open = epoll_target_open(owned, newfd);
	return dup_closed(owned, oldfd, newfd, GET_REAL(dup2)(oldfd, newfd), was_open);
}

DECLARE_REAL(dup3);
EXPORT int dup3(int oldfd, int newfd, int flags)
{
	bool owned = LAYER_CALL() && LAYER_OWNED(), was_open;

	if (dup_target_refused(owned, oldfd, newfd))
		return -1;
	dmb_preload_dup_tag(oldfd, newfd, !owned && LAYER_CALL());
	was_open = epoll_target_open(owned, newfd);
	return dup_closed(owned, oldfd, newfd, GET_REAL(dup3)(oldfd, newfd, flags), was_open);
}

DECLARE_REAL(dup);
EXPORT int dup(int fd)
{
	bool owned;
	int nfd;

	/* The program's dup of an untagged fd that is not the layer's: the
	 * kernel's, at once. */
	if (__builtin_expect(DMB_PRELOAD_RAW_SYSCALL && !dmb_preload_fd_maybe(fd) &&
			     !dmb_layer_fd_is(fd) && !LAYER_CALL(), 1))
		return (int)dmb_preload_sys3(SYS_dup, fd, 0, 0);
	owned = LAYER_CALL() && LAYER_OWNED();

	if (!owned && dmb_layer_fd_is(fd)) {
		errno = EBADF;
		return -1;
	}
	nfd = GET_REAL(dup)(fd);
	if (!owned && dmb_preload_fd_maybe(fd))
		return dmb_preload_fd_tag(nfd);
	return OWN(nfd, false);
}

/* close_range() of the program: the same call on the gaps between the
 * layer's fds. */
int dmb_program_close_range(unsigned int lo, unsigned int hi, int flags)
{
	unsigned long from = lo;
	long m;
	int ret = 0;

	if (lo > hi) {
		errno = EINVAL;
		return -1;
	}
	while (from <= hi) {
		m = next_mark(from, hi);
		if (m != (long)from) {
			unsigned int to = m < 0 ? hi : (unsigned int)(m - 1);

			ret = (int)syscall(SYS_close_range, (unsigned int)from, to, flags);
			if (ret < 0)
				return ret;
			/* An unshared table is unshared once. */
			flags &= ~(int)CLOSE_RANGE_UNSHARE;
		}
		if (m < 0)
			break;
		from = (unsigned long)m + 1;
	}
	/* Closed fds may have held epoll items (src/uapi/epoll.c). */
	if (!(flags & CLOSE_RANGE_CLOEXEC))
		dmb_preload_epoll_sweep();
	return ret;
}

EXPORT int close_range(unsigned int lo, unsigned int hi, int flags)
{
	if (LAYER_OWNED())
		return (int)syscall(SYS_close_range, lo, hi, flags);
	return dmb_program_close_range(lo, hi, flags);
}

EXPORT void closefrom(int lowfd)
{
	bool owned = LAYER_OWNED();
	DIR *d;
	struct dirent *e;

	if (lowfd < 0)
		lowfd = 0;
	if (owned ? !syscall(SYS_close_range, (unsigned int)lowfd, ~0U, 0)
			  : !dmb_program_close_range((unsigned int)lowfd, ~0U, 0))
		return;
	/* No close_range(): one close per open fd, as glibc falls back. */
	d = opendir("/proc/self/fd");
	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd >= lowfd && fd != dirfd(d) &&
		    (owned || !dmb_layer_fd_is(fd)))
			sys_close(fd);
	}
	closedir(d);
}
