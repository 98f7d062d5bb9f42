/* SPDX-License-Identifier: MIT */
/*
 * syscall(): a program may make the calls the other files wrap without
 * libc's wrappers (ioctl, open, the dup family, pidfd_getfd, recvmsg,
 * close, close_range, the socket calls); each number goes to the gate its libc call would
 * have reached. Apart because it is one entry point for every family.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload-int.h"

REAL(syscall, long, long, ...)

/* The call passed on as it was made. */
#define PASS() get_syscall()(nr, a[0], a[1], a[2], a[3], a[4], a[5])

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
			return dmb_preload_program_ioctl((int)a[0], (unsigned long)a[1],
							 (void *)a[2]);
		case SYS_openat:
			if (dmb_uapi_path_is_emulated((const char *)a[1]))
				return dmb_preload_emulated_open("openat", (const char *)a[1],
								 (int)a[2], (mode_t)a[3]);
			return OPENED((int)PASS(), (const char *)a[1], false);
#ifdef SYS_open
		case SYS_open:
			if (dmb_uapi_path_is_emulated((const char *)a[0]))
				return dmb_preload_emulated_open("open", (const char *)a[0],
								 (int)a[1], (mode_t)a[2]);
			return OPENED((int)PASS(), (const char *)a[0], false);
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
				return dmb_preload_fd_tag((int)PASS());
			break;
		case SYS_fcntl:
			if ((a[1] == F_DUPFD || a[1] == F_DUPFD_CLOEXEC) &&
			    dmb_preload_fd_maybe((int)a[0]))
				return dmb_preload_fd_tag((int)PASS());
			break;
#ifdef SYS_pidfd_getfd
		case SYS_pidfd_getfd:
			return dmb_preload_fd_tag_active((int)PASS());
#endif
		case SYS_recvmsg: {
			long ret;

			if (dmb_preload_not_a_socket((int)a[0], __builtin_return_address(0)))
				return -1;
			ret = PASS();

			dmb_preload_received_msg(ret, (struct msghdr *)a[1], (int)a[2],
						 __builtin_return_address(0));
			return ret;
		}
		case SYS_recvmmsg: {
			long ret;

			if (dmb_preload_not_a_socket((int)a[0], __builtin_return_address(0)))
				return -1;
			ret = PASS();

			dmb_preload_received_mmsg((struct mmsghdr *)a[1], ret, (int)a[3],
						  __builtin_return_address(0));
			return ret;
		}
		/* sockops.c's socket calls, reached without libc. */
		case SYS_getsockopt:
		case SYS_setsockopt:
		case SYS_getsockname:
		case SYS_getpeername:
		case SYS_bind:
		case SYS_connect:
		case SYS_listen:
		case SYS_accept:
		case SYS_accept4:
		case SYS_shutdown:
		case SYS_sendto:
		case SYS_sendmsg:
		case SYS_sendmmsg:
		case SYS_recvfrom:
			if (dmb_preload_not_a_socket((int)a[0], __builtin_return_address(0)))
				return -1;
			break;
		case SYS_close:
			return dmb_preload_program_close((int)a[0]);
		case SYS_close_range:
			return dmb_program_close_range((unsigned int)a[0], (unsigned int)a[1],
						       (int)a[2]);
		default:
			break;
		}
	}
	return PASS();
}
