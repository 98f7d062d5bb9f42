/* SPDX-License-Identifier: MIT */
/*
 * A holder that shuts a sync file down, seen from a program under the
 * preload: the program's own shutdown() and syscall(SYS_shutdown) are
 * -ENOTSOCK (the kernel's sync file is no socket), and a holder outside
 * the emulation (an inline syscall instruction, which no wrapper sees)
 * signals nothing: poll(), select() and SYNC_IOC_FILE_INFO still say
 * pending until the signal. Before, syscall(SYS_shutdown) reached the
 * socket, and the preload's poll() took the shut socket's readiness for
 * the signal.
 */
#include <sys/select.h>
#include <sys/syscall.h>

#include "uapi-common.h"

/* shutdown() as a program outside the emulation makes it: no libc. */
static long raw_shutdown(int fd, int how)
{
#if defined(__x86_64__)
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "0"((long)SYS_shutdown), "D"((long)fd), "S"((long)how)
			 : "rcx", "r11", "memory");
	return ret;
#else
	(void)fd;
	(void)how;
	return -ENOSYS;
#endif
}

static void shutdown_is_not_a_socket_call(void **state)
{
	int tl = uapi_timeline_open();
	int fd = uapi_fence_create(tl, 1);

	errno = 0;
	assert_int_equal(shutdown(fd, SHUT_RDWR), -1);
	assert_int_equal(errno, ENOTSOCK);
	errno = 0;
	assert_int_equal(syscall(SYS_shutdown, fd, SHUT_RDWR), -1);
	assert_int_equal(errno, ENOTSOCK);
	errno = 0;
	assert_int_equal(syscall(SYS_getsockname, fd, NULL, NULL), -1);
	assert_int_equal(errno, ENOTSOCK);
	assert_false(uapi_ready(fd));
	close(fd);
	close(tl);
}

static void raw_shutdown_signals_nothing(void **state)
{
	int tl = uapi_timeline_open();
	int fd = uapi_fence_create(tl, 1);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct timeval tv = { 0, 0 };
	fd_set r;

	if (raw_shutdown(fd, SHUT_RDWR) == -ENOSYS) {
		close(fd);
		close(tl);
		skip();
	}
	assert_false(uapi_ready(fd));
	assert_int_equal(poll(&p, 1, 20), 0);
	FD_ZERO(&r);
	FD_SET(fd, &r);
	assert_int_equal(select(fd + 1, &r, NULL, NULL, &tv), 0);
	assert_int_equal(uapi_fence_status(fd), 0);
	assert_int_equal(uapi_tl_inc(tl, 1), 0);
	p.revents = 0;
	assert_int_equal(poll(&p, 1, -1), 1);
	assert_int_equal(p.revents, POLLIN);
	assert_int_equal(uapi_fence_status(fd), 1);
	close(fd);
	close(tl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(shutdown_is_not_a_socket_call),
		harness_test(raw_shutdown_signals_nothing),
	};

	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
