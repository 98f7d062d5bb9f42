/* SPDX-License-Identifier: MIT */
/*
 * The second adversarial review (tests/test-attack2.c), through the
 * kernel's uapi only: odd but legal programs under the preload, compared
 * with what the kernel answers. Each test says whether it pinned a bug
 * (fixed in the commit that added it) or a behaviour no other test
 * covered.
 */
#include <dlfcn.h>
#include <sys/un.h>

#include "uapi-common.h"

#define ENOTSOCK_CALL(call)                                                    \
	do {                                                                   \
		errno = 0;                                                     \
		assert_int_equal((long)(call), -1);                            \
		assert_int_equal(errno, ENOTSOCK);                             \
	} while (0)

/* Every socket call the kernel refuses on a file that is no socket. */
static void socket_calls_refused(int fd)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	socklen_t len = sizeof(sun);
	int v = 0;
	socklen_t vlen = sizeof(v);
	char b[64] = "x";
	struct iovec iov = { b, sizeof(b) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct mmsghdr mm = { .msg_hdr = m };

	ENOTSOCK_CALL(getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vlen));
	ENOTSOCK_CALL(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)));
	ENOTSOCK_CALL(getsockname(fd, (struct sockaddr *)&sun, &len));
	ENOTSOCK_CALL(getpeername(fd, (struct sockaddr *)&sun, &len));
	ENOTSOCK_CALL(bind(fd, (struct sockaddr *)&sun, sizeof(sa_family_t)));
	ENOTSOCK_CALL(connect(fd, (struct sockaddr *)&sun, sizeof(sa_family_t)));
	ENOTSOCK_CALL(listen(fd, 1));
	ENOTSOCK_CALL(accept(fd, NULL, NULL));
	ENOTSOCK_CALL(accept4(fd, NULL, NULL, SOCK_CLOEXEC));
	ENOTSOCK_CALL(send(fd, b, 8, MSG_DONTWAIT));
	ENOTSOCK_CALL(sendto(fd, b, 8, MSG_DONTWAIT, NULL, 0));
	ENOTSOCK_CALL(sendmsg(fd, &m, MSG_DONTWAIT));
	ENOTSOCK_CALL(sendmmsg(fd, &mm, 1, MSG_DONTWAIT));
	ENOTSOCK_CALL(recv(fd, b, sizeof(b), MSG_DONTWAIT));
	ENOTSOCK_CALL(recv(fd, b, sizeof(b), MSG_DONTWAIT | MSG_PEEK));
	ENOTSOCK_CALL(recvfrom(fd, b, sizeof(b), MSG_DONTWAIT, NULL, NULL));
	ENOTSOCK_CALL(recvmsg(fd, &m, MSG_DONTWAIT));
	ENOTSOCK_CALL(recvmmsg(fd, &mm, 1, MSG_DONTWAIT, NULL));
	ENOTSOCK_CALL(shutdown(fd, SHUT_RDWR));
}

/* Bug (fixed in src/uapi/sockops.c, and recvmsg/recvmmsg in preload.c): a
 * sync file is a Unix socket here, shared by every holder, and socket
 * calls on it went to the kernel: getsockopt(SO_TYPE) said SOCK_STREAM
 * (the kernel: ENOTSOCK, an anon inode), and shutdown() made an
 * unsignalled fence poll POLLIN in every process holding it (while
 * SYNC_IOC_FILE_INFO still said pending). Every socket call on an emulated
 * file is ENOTSOCK now, as sockfd_lookup() answers, and the fence is
 * untouched by them. (dma-buf, heap and sw_sync fds were already: not
 * sockets.) */
static void socket_calls_on_emulated_files_are_enotsock(void **state)
{
	int tl, f, heap, buf;
	uint32_t one = 1;

	/* behind ASan's interceptors the preload cannot tell who called:
	 * it passes every socket call through (src/uapi/sockops.c) */
	if (dlsym(RTLD_DEFAULT, "__asan_init"))
		skip();
	tl = uapi_timeline_open();
	f = uapi_fence_create(tl, 1);
	heap = uapi_open_heap("system");
	buf = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	assert_true(buf >= 0);
	socket_calls_refused(f);
	assert_false(uapi_ready(f));
	assert_int_equal(uapi_fence_status(f), 0);
	assert_int_equal(ioctl(tl, SW_SYNC_IOC_INC, &one), 0);
	assert_true(uapi_ready(f));
	assert_int_equal(uapi_fence_status(f), 1);
	socket_calls_refused(f);
	assert_true(uapi_ready(f));
	assert_int_equal(uapi_fence_status(f), 1);
	socket_calls_refused(tl);
	socket_calls_refused(heap);
	socket_calls_refused(buf);
	uapi_close_last_and_wait(buf);
	close(heap);
	close(f);
	close(tl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(socket_calls_on_emulated_files_are_enotsock),
	};

	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
