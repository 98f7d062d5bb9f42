/* SPDX-License-Identifier: MIT */
/*
 * Thin fault-injection layer over the syscalls whose failure paths matter.
 * The library calls dmb_sys_fail(call) right before a syscall; a non-zero
 * return is an errno to fail with instead. Tests (which link the static
 * library) arm it with dmb_sys_inject(). Disarmed, it costs one relaxed
 * atomic load.
 */
#pragma once

enum dmb_sys_call {
	DMB_SYS_MEMFD_CREATE,
	DMB_SYS_REOPEN,		/* open("/proc/self/fd/N") */
	DMB_SYS_MMAP,
	DMB_SYS_INOTIFY_ADD_WATCH,
	DMB_SYS_DUP,
	DMB_SYS_SENDMSG,
	DMB_SYS_RECVMSG,
	DMB_SYS_SOCKET,
	DMB_SYS_CALLOC,		/* allocation of library objects */
	/* The calls above are enum dmabuf_fault_call's (public); those below
	 * are the library's own tests' only. */
	DMB_SYS__PUBLIC,
	DMB_SYS_FALLOCATE = DMB_SYS__PUBLIC, /* a recycled memfd's hole punch */
	/* The release probe (release.c's lease or flock): an injected errno
	 * is a probe that finds the file still held. */
	DMB_SYS_PROBE,
	/* The lease probe's F_SETLEASE F_RDLCK: an injected errno other
	 * than EAGAIN is the kernel refusing leases (EINVAL, EACCES). */
	DMB_SYS_LEASE,
	DMB_SYS__COUNT
};

/* The errno to fail this call with, or 0 to go ahead. */
int dmb_sys_fail(enum dmb_sys_call call);

/* Makes the nth next call (1 = the very next) of `call` fail with err.
 * nth 0 disarms. Process-wide; meant for single-threaded tests. */
void dmb_sys_inject(enum dmb_sys_call call, unsigned int nth, int err);

/* Whether fds a and b are the same open file description (kcmp(2)
 * KCMP_FILE in this process): 1 or 0. 0 also when kcmp cannot tell (no
 * CONFIG_KCMP, a seccomp filter): the caller then checks the fd the
 * long way, so this is only ever a shortcut. */
int dmb_sys_same_file(int a, int b);
/* Called in a fork child (fork.c): forgets the cached pid. */
void dmb_sys_fork_child(void);
