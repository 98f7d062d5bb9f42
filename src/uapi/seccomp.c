/* SPDX-License-Identifier: MIT */
/*
 * The seccomp user-notification supervisor (see seccomp.h, docs/seccomp.md).
 *
 * Every notification is answered; a program's syscall that is not the
 * emulation's gets SECCOMP_USER_NOTIF_FLAG_CONTINUE, i.e. the kernel runs it
 * as if nothing had looked. The program's memory is read and written with
 * process_vm_readv/writev, which fail with EFAULT on a bad pointer: the
 * emulation answers EFAULT as the kernel's copy_from_user would. After
 * reading the program's memory and before acting on it, the notification
 * id is checked (SECCOMP_IOCTL_NOTIF_ID_VALID): the thread may have been
 * killed and its pid reused.
 *
 * Calls are answered in line, except a DMA_BUF_IOCTL_SYNC that would wait
 * for a pending fence: it gets a thread of its own (see defer_ioctl()).
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/dma-buf.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seccomp.h"
#include "seccomp-int.h"
#include "uapi.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef SECCOMP_ADDFD_FLAG_SEND
#define SECCOMP_ADDFD_FLAG_SEND (1UL << 1)
#endif

#if defined(__x86_64__)
#define DMB_AUDIT_ARCH AUDIT_ARCH_X86_64
#define DMB_X32_BIT 0x40000000u
#else
#define DMB_AUDIT_ARCH 0
#endif

#define PAGE 4096u

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("dmabuf-run: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- the filter ------------------------------------------------------------ */

#if DMB_AUDIT_ARCH
#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
/* Low 32 bits of argument i (little-endian). */
#define LD_ARG(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define JEQ(k, t, f) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (t), (f))

/*
 * Layout: arch check, then one JEQ per path syscall jumping to NOTIFY, then
 * ioctl and mmap, each to its own argument test. Offsets are counted from
 * the instruction after the jump; the tables below keep them in one place.
 */
static const unsigned int notified_syscalls[] = {
	__NR_open, __NR_openat, __NR_openat2, __NR_creat,
	__NR_stat, __NR_lstat, __NR_newfstatat, __NR_statx,
	__NR_access, __NR_faccessat, __NR_faccessat2,
	/* Readiness of dma-buf fds (seccomp-ready.c). */
	__NR_poll, __NR_ppoll, __NR_select, __NR_pselect6, __NR_epoll_ctl,
	/* Socket calls that change a socket (handle_sockcall()). */
	__NR_shutdown, __NR_setsockopt, __NR_bind, __NR_connect, __NR_listen,
	__NR_accept, __NR_accept4,
};
#define NNOTIFIED (sizeof(notified_syscalls) / sizeof(notified_syscalls[0]))
static const unsigned int ioctl_types[] = { 'H', 'u', 'b', '>', 'W' };
#define NTYPES (sizeof(ioctl_types) / sizeof(ioctl_types[0]))

/* Fills prog (at least 64 instructions); returns the count. */
static unsigned int build_filter(struct sock_filter *f)
{
	unsigned int n = 0, i, notify, allow, ioctl_at, mmap_at, end_of_jeqs;

	f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
					      offsetof(struct seccomp_data, arch));
	f[n++] = (struct sock_filter)JEQ(DMB_AUDIT_ARCH, 1, 0);
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW);
	f[n++] = (struct sock_filter)LD_NR;
	/* x32 syscalls (nr | 0x40000000) are not looked at: x32 is not
	 * supported and its numbers are not those below. */
	f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, DMB_X32_BIT, 0, 1);
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW);
	/* Jumps are resolved after the layout is known: JEQ nr → NOTIFY for
	 * path syscalls, → ioctl test, → mmap test, else ALLOW. */
	end_of_jeqs = n + NNOTIFIED + 2;
	ioctl_at = end_of_jeqs + 1;		  /* after RET ALLOW */
	mmap_at = ioctl_at + 2 + NTYPES + 1;	  /* LD, AND, JEQs, RET ALLOW */
	notify = mmap_at + 3 + 1;		  /* LD, AND, JEQ, RET ALLOW */
	allow = end_of_jeqs;
	for (i = 0; i < NNOTIFIED; i++, n++)
		f[n] = (struct sock_filter)JEQ(notified_syscalls[i], notify - n - 1, 0);
	f[n] = (struct sock_filter)JEQ(__NR_ioctl, ioctl_at - n - 1, 0);
	n++;
	f[n] = (struct sock_filter)JEQ(__NR_mmap, mmap_at - n - 1, 0);
	n++;
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW); /* == allow */
	(void)allow;
	/* ioctl: the type byte of the command (bits 8..15). */
	f[n++] = (struct sock_filter)LD_ARG(1);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xff00);
	for (i = 0; i < NTYPES; i++, n++)
		f[n] = (struct sock_filter)JEQ(ioctl_types[i] << 8, notify - n - 1, 0);
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW);
	/* mmap: only mappings of a file (no MAP_ANONYMOUS). */
	f[n++] = (struct sock_filter)LD_ARG(3);
	f[n++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, MAP_ANONYMOUS);
	f[n] = (struct sock_filter)JEQ(0, notify - n - 1, 0);
	n++;
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_ALLOW);
	f[n++] = (struct sock_filter)RET(SECCOMP_RET_USER_NOTIF); /* == notify */
	return n;
}
#endif

/* ---- talking to the program ------------------------------------------------ */

bool dmb_sec_valid(struct call *c)
{
	return ioctl(c->sup->listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &c->n->id) == 0;
}
#define notif_valid dmb_sec_valid

/* Reads from the program; short reads (an unmapped page) are EFAULT. */
static int io_copy_in(struct dmb_uapi_io *io, void *dst, uint64_t uaddr, size_t n)
{
	struct call *c = (struct call *)io;
	struct iovec l = { dst, n }, r = { (void *)(uintptr_t)uaddr, n };
	ssize_t got;

	if (n == 0)
		return 0;
	got = process_vm_readv((pid_t)c->n->pid, &l, 1, &r, 1, 0);
	if (got != (ssize_t)n)
		return -EFAULT;
	/* The pid may have been reused by another process since the
	 * notification: what was read is then not the program's. */
	return notif_valid(c) ? 0 : -EFAULT;
}

static int io_copy_out(struct dmb_uapi_io *io, uint64_t uaddr, const void *src, size_t n)
{
	struct call *c = (struct call *)io;
	struct iovec l = { (void *)src, n }, r = { (void *)(uintptr_t)uaddr, n };

	if (n == 0)
		return 0;
	if (!notif_valid(c))
		return -EFAULT;
	return process_vm_writev((pid_t)c->n->pid, &l, 1, &r, 1, 0) == (ssize_t)n ? 0 : -EFAULT;
}

static int io_install_fd(struct dmb_uapi_io *io, int fd, unsigned int o_flags)
{
	struct call *c = (struct call *)io;
	struct seccomp_notif_addfd a = {
		.id = c->n->id,
		.srcfd = (uint32_t)fd,
		.newfd_flags = o_flags & O_CLOEXEC,
	};
	int ret = ioctl(c->sup->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &a);

	if (ret < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* A pidfd for the thread that made the call. pidfd_open() of a thread that
 * is not its group's leader fails (EINVAL before 6.9, ENOENT since): then
 * PIDFD_THREAD (6.9+), else its thread group's leader. */
static int call_pidfd(struct call *c)
{
	char path[64], line[128];
	FILE *f;
	int tgid = 0;

	if (c->pidfd >= 0)
		return c->pidfd;
	c->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)c->n->pid, 0);
	if (c->pidfd < 0 && (errno == EINVAL || errno == ENOENT))
		c->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)c->n->pid, PIDFD_THREAD);
	if (c->pidfd < 0) {
		snprintf(path, sizeof(path), "/proc/%u/status", c->n->pid);
		f = fopen(path, "re");
		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "Tgid: %d", &tgid) == 1)
				break;
		if (f)
			fclose(f);
		if (tgid > 0)
			c->pidfd = (int)syscall(SYS_pidfd_open, tgid, 0);
	}
	return c->pidfd;
}

int dmb_sec_get_fd(struct call *c, int ufd)
{
	return c->io.get_fd(&c->io, ufd);
}

static int io_get_fd(struct dmb_uapi_io *io, int ufd)
{
	struct call *c = (struct call *)io;
	int pidfd, fd;

	if (ufd < 0)
		return -EBADF;
	pidfd = call_pidfd(c);
	if (pidfd < 0)
		return -EBADF;
	fd = (int)syscall(SYS_pidfd_getfd, pidfd, ufd, 0);
	return fd < 0 ? -EBADF : fd;
}

static void call_init(struct call *c, struct sup *sup, struct seccomp_notif *n)
{
	*c = (struct call){
		.io = {
			.copy_in = io_copy_in,
			.copy_out = io_copy_out,
			.install_fd = io_install_fd,
			.get_fd = io_get_fd,
		},
		.sup = sup,
		.n = n,
		.pidfd = -1,
	};
}

static void call_fini(struct call *c)
{
	if (c->pidfd >= 0)
		close(c->pidfd);
}

/* Answers the call: CONTINUE (the kernel runs it), or a result. */
void dmb_sec_reply(struct call *c, bool cont, long val)
{
	struct seccomp_notif_resp r = { .id = c->n->id };

	if (cont)
		r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	else if (val < 0)
		r.error = (int32_t)val;
	else
		r.val = val;
	/* ENOENT: the thread is gone (killed, or its syscall interrupted by
	 * a signal and restarted as a new notification). Nothing to do. */
	(void)ioctl(c->sup->listener, SECCOMP_IOCTL_NOTIF_SEND, &r);
}
#define reply dmb_sec_reply

/*
 * Reads the NUL-terminated path at uaddr, page by page so that a string
 * ending just before an unmapped page is read. 0, -EFAULT or
 * -ENAMETOOLONG (the kernel's answers for the same pointer).
 */
static int read_path(struct call *c, uint64_t uaddr, char *buf, size_t size)
{
	size_t have = 0, chunk;
	struct iovec l, r;
	ssize_t got;

	while (have < size) {
		chunk = PAGE - ((uaddr + have) % PAGE);
		if (chunk > size - have)
			chunk = size - have;
		l = (struct iovec){ buf + have, chunk };
		r = (struct iovec){ (void *)(uintptr_t)(uaddr + have), chunk };
		got = process_vm_readv((pid_t)c->n->pid, &l, 1, &r, 1, 0);
		if (got <= 0)
			return -EFAULT;
		if (memchr(buf + have, '\0', (size_t)got))
			return 0;
		have += (size_t)got;
	}
	return -ENAMETOOLONG;
}

/* ---- path syscalls ---------------------------------------------------------- */

/* The count of file references was made while our copy of the program's
 * fd (pidfd_getfd) was open: it is one too many. Returns the new length. */
static int uncount_copy(char *text, size_t len, size_t size)
{
	char *line = strstr(text, "\ncount:\t"), *end, tail[2048];
	long count;

	if (!line)
		return (int)len;
	line += strlen("\ncount:\t");
	count = strtol(line, &end, 10);
	if (end == line || count < 1 || strlen(end) >= sizeof(tail))
		return (int)len;
	strcpy(tail, end);
	snprintf(line, size - (size_t)(line - text), "%ld%s", count - 1, tail);
	return (int)strlen(text);
}

/* /proc/self/fdinfo/N (or /proc/<pid>/fdinfo/N of the caller) of a dma-buf:
 * the kernel's dma-buf lines, served from a memfd. 1 handled, 0 not ours. */
static int open_fdinfo(struct call *c, const char *path, long *res)
{
	const char *p = path + strlen("/proc/");
	char *end, text[2048];
	long pid, ufd;
	int fd, mfd, len;

	if (strncmp(path, "/proc/", 6))
		return 0;
	if (!strncmp(p, "self/", 5) || !strncmp(p, "thread-self/", 12)) {
		p = strchr(p, '/') + 1;
	} else {
		pid = strtol(p, &end, 10);
		if (end == p || *end != '/' || pid != (long)c->n->pid)
			return 0;
		p = end + 1;
	}
	if (strncmp(p, "fdinfo/", 7))
		return 0;
	p += 7;
	ufd = strtol(p, &end, 10);
	if (end == p || *end || ufd < 0 || ufd > INT_MAX)
		return 0;
	fd = io_get_fd(&c->io, (int)ufd);
	if (fd < 0)
		return 0;
	len = dmb_uapi_classify(fd) == DMB_UAPI_DMABUF ? dmb_uapi_fdinfo(fd, text, sizeof(text)) : -1;
	close(fd);
	if (len < 0)
		return 0;
	len = uncount_copy(text, (size_t)len, sizeof(text));
	mfd = memfd_create("dmabuf-fdinfo", MFD_CLOEXEC);
	if (mfd < 0 || write(mfd, text, (size_t)len) != len || lseek(mfd, 0, SEEK_SET) != 0) {
		if (mfd >= 0)
			close(mfd);
		*res = -ENOMEM;
		return 1;
	}
	*res = io_install_fd(&c->io, mfd, O_CLOEXEC);
	return 1;
}

/*
 * A sw_sync timeline goes to the program as a file reopened from the core's
 * memfd: the file memfd_create() made sends no inotify close event, a
 * reopened one does, and the watcher needs it to see the program's last
 * reference go (close() is not notified). The program's file takes over
 * the shared lock that tells the core the timeline is still referenced.
 * Returns the fd to install (fd consumed).
 */
static int give_timeline(int fd)
{
	char proc[40];
	int re;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	re = open(proc, O_RDWR | O_CLOEXEC);
	if (re < 0 || flock(re, LOCK_SH) < 0) {
		if (re >= 0)
			close(re);
		dmb_sec_watch_timeline(fd);
		return fd;
	}
	close(fd);
	dmb_sec_watch_timeline(re);
	return re;
}

/*
 * A relative path that may name the emulated tree ("dma_heap/system" after
 * chdir("/dev"), "sync/sw_sync" relative to a /sys/kernel/debug fd) is
 * made absolute from the caller's working directory or directory fd
 * (/proc/<tid>/cwd, /proc/<tid>/fd/<dirfd>). Other relative paths (no
 * emulated name in them) cost nothing and are left to the kernel, and so
 * are paths relative to a directory of the emulated tree itself (a real
 * directory of the per-run root: the result is not an emulated path).
 * Returns true if path is now absolute.
 */
static bool absolute_path(struct call *c, int dirfd, char *path, size_t size)
{
	char link[64], base[PATH_MAX], joined[PATH_MAX];
	const char *rel = path;
	ssize_t n;

	if (path[0] == '/')
		return true;
	if (!strstr(path, "dma_heap") && !strstr(path, "udmabuf") && !strstr(path, "sw_sync"))
		return false;
	if (dirfd == AT_FDCWD)
		snprintf(link, sizeof(link), "/proc/%u/cwd", c->n->pid);
	else
		snprintf(link, sizeof(link), "/proc/%u/fd/%d", c->n->pid, dirfd);
	n = readlink(link, base, sizeof(base) - 1);
	if (n <= 0)
		return false;
	base[n] = '\0';
	if (base[0] != '/')
		return false;
	while (rel[0] == '.' && rel[1] == '/')
		rel += 2;
	if (snprintf(joined, sizeof(joined), "%s/%s", strcmp(base, "/") ? base : "", rel) >=
	    (int)sizeof(joined))
		return false;
	if (strlen(joined) >= size)
		return false;
	strcpy(path, joined);
	return true;
}

/* open, openat, openat2, creat. */
static void handle_open(struct call *c)
{
	const struct seccomp_data *d = &c->n->data;
	char path[PATH_MAX];
	struct open_how how = { 0 };
	int flags;
	uint64_t upath;
	mode_t mode;
	long res;
	int fd;

	switch (d->nr) {
	case __NR_open:
		upath = d->args[0], flags = (int)d->args[1], mode = (mode_t)d->args[2];
		break;
	case __NR_creat:
		upath = d->args[0], flags = O_CREAT | O_WRONLY | O_TRUNC, mode = (mode_t)d->args[1];
		break;
	case __NR_openat2:
		/* The kernel refuses sizes below the first version; leave
		 * every oddity to it. */
		if (d->args[3] < sizeof(how) ||
		    io_copy_in(&c->io, &how, d->args[2], sizeof(how)))
			{ reply(c, true, 0); return; }
		upath = d->args[1], flags = (int)how.flags, mode = (mode_t)how.mode;
		break;
	default: /* openat */
		upath = d->args[1], flags = (int)d->args[2], mode = (mode_t)d->args[3];
		break;
	}
	/* A directory fd from the emulated tree is a real directory: openat
	 * relative to it resolves natively. */
	if (read_path(c, upath, path, sizeof(path)) ||
	    !absolute_path(c, d->nr == __NR_openat || d->nr == __NR_openat2 ? (int)d->args[0]
									  : AT_FDCWD,
			   path, sizeof(path)))
		{ reply(c, true, 0); return; }
	if (!dmb_uapi_path_is_emulated(path)) {
		/* A reply to a call that is gone fails harmlessly (ENOENT). */
		if (open_fdinfo(c, path, &res))
			reply(c, false, res);
		else
			reply(c, true, 0);
		return;
	}
	if (!notif_valid(c))
		return;
	fd = dmb_uapi_open(path, flags, mode);
	if (fd >= 0 && dmb_uapi_classify(fd) == DMB_UAPI_SW_SYNC)
		fd = give_timeline(fd);
	res = fd < 0 ? fd : io_install_fd(&c->io, fd, (unsigned int)flags);
	if (dmb_uapi_config()->trace)
		dmb_uapi_trace("[seccomp %u] open(\"%s\", 0%o) = %ld", c->n->pid, path, flags, res);
	reply(c, false, res);
}

/* stat, lstat, newfstatat, statx, access, faccessat, faccessat2 on an
 * emulated path: the same call on the real file of the emulated tree. */
static void handle_stat(struct call *c)
{
	const struct seccomp_data *d = &c->n->data;
	char path[PATH_MAX], full[PATH_MAX];
	struct statx stx;
	struct stat st;
	uint64_t upath, ubuf = 0;
	int flags = 0, ret;
	bool isstatx = false, isstat = true;

	switch (d->nr) {
	case __NR_stat:
	case __NR_lstat:
		upath = d->args[0], ubuf = d->args[1];
		flags = d->nr == __NR_lstat ? AT_SYMLINK_NOFOLLOW : 0;
		break;
	case __NR_newfstatat:
		upath = d->args[1], ubuf = d->args[2], flags = (int)d->args[3];
		break;
	case __NR_statx:
		upath = d->args[1], flags = (int)d->args[2], ubuf = d->args[4];
		isstatx = true;
		break;
	case __NR_access:
		upath = d->args[0], isstat = false;
		break;
	default: /* faccessat, faccessat2 */
		upath = d->args[1], isstat = false;
		flags = d->nr == __NR_faccessat2 ? (int)d->args[3] : 0;
		break;
	}
	if (read_path(c, upath, path, sizeof(path)) ||
	    !absolute_path(c, d->nr == __NR_stat || d->nr == __NR_lstat || d->nr == __NR_access
				      ? AT_FDCWD : (int)d->args[0],
			   path, sizeof(path)) ||
	    dmb_uapi_redirect(path, full, sizeof(full)))
		{ reply(c, true, 0); return; }
	if (!notif_valid(c))
		return;
	if (isstatx) {
		ret = statx(AT_FDCWD, full, flags, (unsigned int)d->args[3], &stx) ? -errno : 0;
		if (!ret)
			ret = io_copy_out(&c->io, ubuf, &stx, sizeof(stx));
	} else if (isstat) {
		ret = fstatat(AT_FDCWD, full, &st, flags) ? -errno : 0;
		if (!ret)
			ret = io_copy_out(&c->io, ubuf, &st, sizeof(st));
	} else {
		int mode = (int)(d->nr == __NR_access ? d->args[1] : d->args[2]);

		ret = faccessat(AT_FDCWD, full, mode, flags) ? -errno : 0;
	}
	if (dmb_uapi_config()->trace)
		dmb_uapi_trace("[seccomp %u] syscall %d(\"%s\") = %d", c->n->pid, d->nr, path, ret);
	reply(c, false, ret);
}

/* ---- fd syscalls ------------------------------------------------------------ */

/* The rest of an ioctl on the program's fd, fetched as `fd` (consumed). */
static void finish_ioctl(struct call *c, int fd, enum dmb_uapi_kind kind)
{
	const struct seccomp_data *d = &c->n->data;
	/* The kernel's ioctl takes the command as unsigned int. */
	long res = dmb_uapi_ioctl(&c->io, fd, kind, (unsigned int)d->args[1], d->args[2]);

	close(fd);
	/* An imported fence makes the buffer busy: the program's epoll sets
	 * must see it before its next epoll_wait. */
	if (kind == DMB_UAPI_DMABUF || kind == DMB_UAPI_SW_SYNC)
		dmb_sec_ready_changed();
	reply(c, false, res);
}

/* A call answered in a thread: it may wait. */
struct deferred {
	struct call c; /* first: the io is handed back as a struct call */
	void (*fn)(struct call *c, void *arg);
	void *arg;
};

static void *deferred_thread(void *arg)
{
	struct deferred *df = arg;
	struct sup *sup = df->c.sup;

	df->fn(&df->c, df->arg);
	dmb_uapi_unhold_own();
	call_fini(&df->c);
	free(df->c.n);
	free(df);
	atomic_fetch_sub(&sup->threads, 1);
	return NULL;
}

bool dmb_sec_defer(struct call *c, void (*fn)(struct call *c, void *arg), void *arg)
{
	pthread_attr_t attr;
	struct deferred *df;
	pthread_t t;
	int ret;

	df = malloc(sizeof(*df));
	if (!df)
		return false; /* in line rather than not at all */
	df->c = *c;
	df->fn = fn;
	df->arg = arg;
	atomic_fetch_add(&c->sup->threads, 1);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	ret = pthread_create(&t, &attr, deferred_thread, df);
	pthread_attr_destroy(&attr);
	if (ret) {
		atomic_fetch_sub(&c->sup->threads, 1);
		free(df);
		return false;
	}
	return true;
}

struct ioctl_job {
	int fd;
	enum dmb_uapi_kind kind;
};

static void ioctl_job(struct call *c, void *arg)
{
	struct ioctl_job *j = arg;

	finish_ioctl(c, j->fd, j->kind);
	free(j);
}

/*
 * Only DMA_BUF_IOCTL_SYNC waits (for the buffer's fences, as the kernel's
 * dma_buf_begin_cpu_access), and only while a fence is pending. Such a
 * call goes to a thread of its own, so that the fence's signaller (another
 * thread of the program, through this supervisor) is still served; all
 * other calls are answered in line, which costs a fraction of a thread.
 * Takes c over (true) or leaves it to the caller (false).
 */
static bool defer_ioctl(struct call *c, int fd, enum dmb_uapi_kind kind)
{
	struct ioctl_job *j;

	if (kind != DMB_UAPI_DMABUF || (unsigned int)c->n->data.args[1] != DMA_BUF_IOCTL_SYNC ||
	    dmb_uapi_poll_events(fd, kind, POLLIN | POLLOUT) == (POLLIN | POLLOUT))
		return false;
	j = malloc(sizeof(*j));
	if (!j)
		return false;
	j->fd = fd;
	j->kind = kind;
	if (dmb_sec_defer(c, ioctl_job, j))
		return true;
	free(j);
	return false;
}

/* Takes c over (true: answered later by a thread) or not (false). */
static bool handle_ioctl(struct call *c)
{
	enum dmb_uapi_kind kind;
	int fd;

	fd = io_get_fd(&c->io, (int)c->n->data.args[0]);
	if (fd < 0) {
		reply(c, true, 0);
		return false;
	}
	kind = dmb_uapi_classify(fd);
	if (kind == DMB_UAPI_NONE || !notif_valid(c)) {
		close(fd);
		reply(c, true, 0);
		return false;
	}
	if (defer_ioctl(c, fd, kind))
		return true;
	finish_ioctl(c, fd, kind);
	return false;
}

/* mmap of a dma-buf: the bounds check of dma_buf_mmap_internal(); the
 * mapping itself is the kernel's (the buffer's memfd maps its pages). */
static void handle_mmap(struct call *c)
{
	struct sup *sup = c->sup;
	const struct seccomp_data *d = &c->n->data;
	uint64_t len = d->args[1], off = d->args[5];
	struct stat st;
	int64_t size;
	int fd;

	fd = io_get_fd(&c->io, (int)d->args[4]);
	if (fd < 0)
		{ reply(c, true, 0); return; }
	if (dmb_uapi_classify(fd) != DMB_UAPI_DMABUF || fstat(fd, &st) < 0 ||
	    (size = dmb_uapi_dmabuf_size(fd)) < 0 || off % PAGE) {
		close(fd);
		{ reply(c, true, 0); return; }
	}
	close(fd);
	if (len && (len > UINT64_MAX - off - PAGE ||
		    off + ((len + PAGE - 1) & ~(uint64_t)(PAGE - 1)) > (uint64_t)size))
		{ reply(c, false, -EINVAL); return; }
	/* A udmabuf's file is an empty handle: its pages are the caller's
	 * memfds, which only a mapping made in the program can stitch. */
	if (st.st_size != size) {
		if (!atomic_exchange(&sup->udmabuf_mmap_said, true))
			say("mmap of a udmabuf is not supported under the seccomp supervisor (static "
			    "program); use a dynamically linked one (ENODEV)");
		{ reply(c, false, -ENODEV); return; }
	}
	reply(c, true, 0);
}

/*
 * shutdown(), setsockopt(), bind(), connect(), listen(), accept() and
 * accept4() of an emulated file: the kernel's are no sockets (ENOTSOCK,
 * sockfd_lookup()), as the preload answers (sockops.c). A sync file is a
 * socket here, shared by every holder, and these would change it for all
 * of them. Any other fd: the call runs as if nothing had looked. These
 * calls are rare in a program (set-up, not data): the round trip to the
 * supervisor is paid there, never on send/recv. The calls that only read
 * (getsockname, getpeername, getsockopt) and the data calls are left to
 * the kernel: libdmabuf linked into a static program makes the reading
 * ones on its sync files itself, and the supervisor cannot tell its calls
 * from the program's (docs/seccomp.md).
 */
static void handle_sockcall(struct call *c)
{
	int fd = io_get_fd(&c->io, (int)c->n->data.args[0]);
	enum dmb_uapi_kind kind;

	if (fd < 0) {
		reply(c, true, 0);
		return;
	}
	kind = dmb_uapi_classify(fd);
	close(fd);
	if (kind == DMB_UAPI_NONE)
		reply(c, true, 0);
	else
		reply(c, false, -ENOTSOCK);
}

/* One notification. */
static void dispatch(struct sup *sup, struct seccomp_notif *n)
{
	struct call c;

	call_init(&c, sup, n);
	switch (n->data.nr) {
	case __NR_ioctl:
		if (handle_ioctl(&c))
			return; /* the thread owns c and n */
		break;
	case __NR_mmap: handle_mmap(&c); break;
	case __NR_poll:
	case __NR_ppoll:
	case __NR_select:
	case __NR_pselect6:
		if (dmb_sec_poll(&c))
			return;
		break;
	case __NR_epoll_ctl: dmb_sec_epoll_ctl(&c); break;
	case __NR_shutdown:
	case __NR_setsockopt:
	case __NR_bind:
	case __NR_connect:
	case __NR_listen:
	case __NR_accept:
	case __NR_accept4: handle_sockcall(&c); break;
	case __NR_open:
	case __NR_openat:
	case __NR_openat2:
	case __NR_creat: handle_open(&c); break;
	default: handle_stat(&c); break;
	}
	dmb_uapi_unhold_own();
	call_fini(&c);
	free(n);
}

/* ---- the program ------------------------------------------------------------ */

static volatile sig_atomic_t child_pid;

static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill((pid_t)child_pid, sig);
}

static int send_fd(int sock, int fd, int err)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &err, sizeof(err) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (fd >= 0) {
		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(sock, &m, MSG_NOSIGNAL) == sizeof(err) ? 0 : -1;
}

/* Receives the child's listener, or its errno (fd -1, *err set). */
static int recv_fd(int sock, int *err)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { err, sizeof(*err) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	ssize_t r;
	int fd = -1;

	*err = EPIPE;
	do
		r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r != sizeof(*err))
		*err = EPIPE;
	for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/*
 * In the child: filter, hand the listener over, exec. With argv NULL (the
 * probe) it exits 0 after handing the listener over. Never returns.
 */
static _Noreturn void child_main(int sock, pid_t parent, char *const argv[])
{
#if DMB_AUDIT_ARCH
	struct sock_filter f[64];
	struct sock_fprog prog = { .filter = f };
	int listener, err = 0;

	/* Without the supervisor the program's emulated calls would fail
	 * with ENOSYS: do not outlive it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	prog.len = (unsigned short)build_filter(f);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		err = errno;
	listener = err ? -1 : (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
					    SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (listener < 0 && !err)
		err = errno;
	if (send_fd(sock, listener, err) || err)
		_exit(126);
	close(listener);
	close(sock);
	if (!argv)
		_exit(0);
	execvp(argv[0], argv);
	err = errno;
	say("cannot run %s: %s", argv[0], strerror(err));
	_exit(err == ENOENT ? 127 : 126);
#else
	(void)parent;
	(void)argv;
	send_fd(sock, -1, ENOSYS);
	_exit(126);
#endif
}

/* Forks the child; returns its pid and the listener (or -errno in *lfd). */
static pid_t start_child(char *const argv[], int *lfd)
{
	int sv[2], err;
	pid_t pid, parent = getpid();

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		*lfd = -errno;
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		child_main(sv[1], parent, argv);
	}
	close(sv[1]);
	if (pid < 0) {
		*lfd = -errno;
		close(sv[0]);
		return -1;
	}
	*lfd = recv_fd(sv[0], &err);
	close(sv[0]);
	if (*lfd < 0)
		*lfd = -err;
	return pid;
}

static const char *seccomp_reason(int err)
{
	switch (err) {
	case EBUSY:
		return "seccomp user notification is refused (EBUSY): this process is already "
		       "under another supervisor's filter";
	case EINVAL:
	case ENOSYS:
		return "this kernel or architecture has no seccomp user notification (needs "
		       "Linux >= 5.9 on x86_64)";
	case EACCES:
	case EPERM:
		return "seccomp filters are not allowed here (a container's seccomp profile?)";
	default:
		return NULL;
	}
}

int dmb_seccomp_available(char *why, size_t size)
{
	const char *r;
	int lfd, self, probe, st;
	pid_t pid;

	/* pidfd_getfd (5.6): on our own pid, which needs no privilege. */
	self = (int)syscall(SYS_pidfd_open, getpid(), 0);
	probe = self < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, self, 2, 0);
	if (probe < 0) {
		snprintf(why, size, "pidfd_getfd() is not available (%s): needs Linux >= 5.9",
			 strerror(errno));
		if (self >= 0)
			close(self);
		return -ENOSYS;
	}
	close(probe);
	close(self);
	pid = start_child(NULL, &lfd);
	if (pid < 0) {
		snprintf(why, size, "cannot fork: %s", strerror(-lfd));
		return lfd;
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (lfd < 0) {
		r = seccomp_reason(-lfd);
		if (r)
			snprintf(why, size, "%s", r);
		else
			snprintf(why, size, "seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER): %s",
				 strerror(-lfd));
		return lfd;
	}
	close(lfd);
	return 0;
}

int dmb_seccomp_run(char *const argv[])
{
	struct sup sup = { .listener = -1 };
	struct sigaction sa = { .sa_handler = forward_signal }, old[4];
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct seccomp_notif *n;
	struct pollfd p[2];
	int pidfd, lfd, status = 0, result = -1, i;
	size_t nsize;
	pid_t pid;

	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sup.sizes) < 0) {
		say("%s", seccomp_reason(errno) ? seccomp_reason(errno) : strerror(errno));
		return 126;
	}
	nsize = sup.sizes.seccomp_notif > sizeof(*n) ? sup.sizes.seccomp_notif : sizeof(*n);
	for (i = 0; i < 4; i++)
		sigaction(sigs[i], &sa, &old[i]);
	pid = start_child(argv, &lfd);
	if (pid < 0 || lfd < 0) {
		const char *r = seccomp_reason(-lfd);

		say("cannot start the seccomp supervisor: %s", r ? r : strerror(-lfd));
		if (pid > 0)
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
		result = 126;
		goto out;
	}
	child_pid = pid;
	sup.listener = lfd;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

	/* Serve until no process is left under the filter (POLLHUP on the
	 * listener); the program itself is reaped as soon as it exits, so
	 * that its zombie does not keep the filter alive. */
	for (;;) {
		p[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		if (poll(p, pidfd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			say("poll: %s", strerror(errno));
			break;
		}
		if (pidfd >= 0 && p[1].revents) {
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			child_pid = 0;
			close(pidfd);
			pidfd = -1;
		}
		if (p[0].revents & POLLIN) {
			n = calloc(1, nsize);
			if (!n) {
				say("out of memory");
				break;
			}
			if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, n) < 0) {
				/* ENOENT: the caller died before we got it. */
				free(n);
				if (errno != ENOENT && errno != EINTR) {
					say("SECCOMP_IOCTL_NOTIF_RECV: %s", strerror(errno));
					break;
				}
				continue;
			}
			dispatch(&sup, n);
		} else if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
			break;
		}
	}
	if (pidfd >= 0) {
		/* Left the loop on an error with the program still running. */
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		close(pidfd);
	}
	child_pid = 0;
	/* ioctl threads answer calls of processes that are gone by now; let
	 * them finish before the listener (and the caller's state) goes. One
	 * may wait for a fence that nobody is left to signal: after a second,
	 * leave it (and the listener) to the process's exit. */
	for (i = 0; i < 1000 && atomic_load(&sup.threads) > 0; i++)
		usleep(1000);
	if (atomic_load(&sup.threads) == 0)
		close(lfd);
out:
	for (i = 0; i < 4; i++)
		sigaction(sigs[i], &old[i], NULL);
	return result < 0 ? 126 : result;
}

int dmb_run_supervised(char **argv)
{
	char why[256];
	int err;

	if (dmb_seccomp_available(why, sizeof(why))) {
		say("%s needs the seccomp supervisor, which cannot work here: %s; running it "
		    "without emulation", argv[0], why);
		fflush(NULL);
		execvp(argv[0], argv);
		err = errno;
		say("cannot run %s: %s", argv[0], strerror(err));
		return err == ENOENT ? 127 : 126;
	}
	if (dmb_uapi_config()->trace)
		dmb_uapi_trace("%s: static program, served by the seccomp supervisor", argv[0]);
	return dmb_seccomp_run(argv);
}
