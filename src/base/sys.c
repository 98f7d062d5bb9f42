/* SPDX-License-Identifier: MIT */
/* Fault injection (sys.h) and its public face (dmabuf.h, "testing"). */
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base.h"
#include "sys.h"

/* The public enum is the internal one under stable numbers. */
_Static_assert((int)DMABUF_FAULT_MEMFD_CREATE == (int)DMB_SYS_MEMFD_CREATE &&
	       (int)DMABUF_FAULT_REOPEN == (int)DMB_SYS_REOPEN &&
	       (int)DMABUF_FAULT_MMAP == (int)DMB_SYS_MMAP &&
	       (int)DMABUF_FAULT_INOTIFY_ADD_WATCH == (int)DMB_SYS_INOTIFY_ADD_WATCH &&
	       (int)DMABUF_FAULT_DUP == (int)DMB_SYS_DUP &&
	       (int)DMABUF_FAULT_SENDMSG == (int)DMB_SYS_SENDMSG &&
	       (int)DMABUF_FAULT_RECVMSG == (int)DMB_SYS_RECVMSG &&
	       (int)DMABUF_FAULT_SOCKET == (int)DMB_SYS_SOCKET &&
	       (int)DMABUF_FAULT_ALLOC == (int)DMB_SYS_CALLOC &&
	       (int)DMABUF_FAULT_CALL_COUNT == (int)DMB_SYS__PUBLIC,
	       "enum dmabuf_fault_call follows enum dmb_sys_call");

static atomic_uint countdown[DMB_SYS__COUNT];
static int inject_errno[DMB_SYS__COUNT];
static atomic_ullong calls[DMB_SYS__COUNT];
static atomic_bool counting;
/* Armed faults, plus one while counting: disarmed, a call costs one
 * relaxed load. */
static atomic_uint armed;

int dmb_sys_fail(enum dmb_sys_call call)
{
	if (!atomic_load_explicit(&armed, memory_order_relaxed))
		return 0;
	if (atomic_load_explicit(&counting, memory_order_relaxed))
		atomic_fetch_add_explicit(&calls[call], 1, memory_order_relaxed);
	unsigned int left = atomic_load(&countdown[call]);
	while (left > 0) {
		if (atomic_compare_exchange_weak(&countdown[call], &left, left - 1)) {
			if (left == 1) {
				atomic_fetch_sub(&armed, 1);
				return inject_errno[call];
			}
			return 0;
		}
	}
	return 0;
}

void dmb_sys_inject(enum dmb_sys_call call, unsigned int nth, int err)
{
	unsigned int old = atomic_exchange(&countdown[call], nth);

	inject_errno[call] = err;
	if (old && !nth)
		atomic_fetch_sub(&armed, 1);
	else if (!old && nth)
		atomic_fetch_add(&armed, 1);
}

DMABUF_EXPORT int dmabuf_fault_inject(enum dmabuf_fault_call call,
				      unsigned int nth, int err)
{
	if ((unsigned int)call >= DMB_SYS__PUBLIC || (nth && err <= 0))
		return -EINVAL;
	dmb_sys_inject((enum dmb_sys_call)call, nth, err);
	return 0;
}

DMABUF_EXPORT void dmabuf_fault_set_counting(bool on)
{
	if (on)
		for (int i = 0; i < DMB_SYS__COUNT; i++)
			atomic_store(&calls[i], 0);
	if (atomic_exchange(&counting, on) == on)
		return;
	if (on)
		atomic_fetch_add(&armed, 1);
	else
		atomic_fetch_sub(&armed, 1);
}

DMABUF_EXPORT uint64_t dmabuf_fault_get_count(enum dmabuf_fault_call call)
{
	if ((unsigned int)call >= DMB_SYS__PUBLIC || !atomic_load(&counting))
		return 0;
	return atomic_load(&calls[call]);
}

DMABUF_EXPORT void dmabuf_fault_reset(void)
{
	for (int i = 0; i < DMB_SYS__COUNT; i++)
		dmb_sys_inject((enum dmb_sys_call)i, 0, 0);
	dmabuf_fault_set_counting(false);
}

#ifndef F_DUPFD_QUERY
#define F_DUPFD_QUERY 1027	/* Linux 6.10 */
#endif

/* How dmb_sys_same_file() asks: F_DUPFD_QUERY, else kcmp(), else it
 * cannot tell. Each step down is taken once, at the first failure that is
 * not a bad fd: a kernel before 6.10 (or valgrind) refuses the fcntl
 * command with EINVAL; kcmp() fails without CONFIG_KCMP or under a seccomp
 * filter. */
enum { SAME_QUERY, SAME_KCMP, SAME_NONE };
static atomic_int same_how = SAME_QUERY;
/* kcmp() takes pids: this process's, cached (0: not yet), forgotten in a
 * fork child (dmb_sys_fork_child()). */
static atomic_int self_pid;

void dmb_sys_fork_child(void)
{
	atomic_store_explicit(&self_pid, 0, memory_order_relaxed);
}

int dmb_sys_same_file(int a, int b)
{
	int how = atomic_load_explicit(&same_how, memory_order_relaxed);
	pid_t self;
	long r;

	if (how == SAME_QUERY) {
		r = fcntl(a, F_DUPFD_QUERY, b);
		if (r >= 0)
			return r == 1;
		if (errno != EINVAL)
			return 0;	/* a bad fd: not the same */
		atomic_store_explicit(&same_how, how = SAME_KCMP, memory_order_relaxed);
	}
	if (how != SAME_KCMP)
		return 0;
	self = atomic_load_explicit(&self_pid, memory_order_relaxed);
	if (!self) {
		self = getpid();
		atomic_store_explicit(&self_pid, self, memory_order_relaxed);
	}
	r = syscall(SYS_kcmp, self, self, KCMP_FILE, a, b);
	if (r < 0 && errno != EBADF)
		atomic_store_explicit(&same_how, SAME_NONE, memory_order_relaxed);
	return r == 0;
}
