/* SPDX-License-Identifier: MIT */
/*
 * The preload's pass-through test (docs/uapi.md, "Cheap classification"):
 * an fd whose tag is clear goes to the kernel untouched, so every way an
 * emulated fd can reach a number must tag it. Each case checks an answer
 * only the emulation gives: read() of a dma-buf is -EINVAL and lseek(CUR)
 * too (a plain memfd would read and seek), lseek() of a heap is -ESPIPE.
 */
#include <dirent.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "uapi-common.h"

/* fd is a dma-buf as the kernel's dma_buf_fops answers. */
static bool is_emulated_buf(int fd)
{
	char c;

	errno = 0;
	if (read(fd, &c, 1) != -1 || errno != EINVAL)
		return false;
	errno = 0;
	return lseek(fd, 0, SEEK_CUR) == -1 && errno == EINVAL;
}

static void dups_are_tagged(void **state)
{
	int heap = uapi_open_heap("system"), fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	int d[8], i;

	assert_true(fd >= 0);
	d[0] = dup(fd);
	d[1] = dup2(fd, 300);
	d[2] = dup3(fd, 301, O_CLOEXEC);
	d[3] = fcntl(fd, F_DUPFD, 302);
	d[4] = fcntl(fd, F_DUPFD_CLOEXEC, 310);
	d[5] = (int)syscall(SYS_dup, fd);
	d[6] = (int)syscall(SYS_dup3, fd, 320, 0);
	d[7] = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 330);
	close(fd);
	for (i = 0; i < 8; i++) {
		assert_true(d[i] >= 0);
		assert_true(is_emulated_buf(d[i]));
		close(d[i]);
	}
	close(heap);
}

static void received_fds_are_tagged(void **state)
{
	int heap = uapi_open_heap("system"), fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg;
	struct mmsghdr mm;
	struct iovec iov;
	int sv[2], got, round;
	char c = 'x';

	assert_true(fd >= 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	for (round = 0; round < 3; round++) {
		struct cmsghdr *cm;

		memset(u.buf, 0, sizeof(u.buf));
		iov = (struct iovec){ &c, 1 };
		msg = (struct msghdr){ .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
				       .msg_controllen = sizeof(u.buf) };
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		assert_int_equal(sendmsg(sv[0], &msg, 0), 1);
		msg.msg_controllen = sizeof(u.buf);
		memset(u.buf, 0, sizeof(u.buf));
		/* recvmsg, recvmmsg, and recvmsg through syscall(). */
		if (round == 0) {
			assert_int_equal(recvmsg(sv[1], &msg, MSG_CMSG_CLOEXEC), 1);
		} else if (round == 1) {
			mm = (struct mmsghdr){ .msg_hdr = msg };
			assert_int_equal(recvmmsg(sv[1], &mm, 1, MSG_CMSG_CLOEXEC, NULL), 1);
			msg = mm.msg_hdr;
		} else {
			assert_int_equal(syscall(SYS_recvmsg, sv[1], &msg, MSG_CMSG_CLOEXEC), 1);
		}
		cm = CMSG_FIRSTHDR(&msg);
		assert_non_null(cm);
		memcpy(&got, CMSG_DATA(cm), sizeof(int));
		assert_true(got != fd);
		assert_true(is_emulated_buf(got));
		close(got);
	}
	close(sv[0]);
	close(sv[1]);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void other_names_are_tagged(void **state)
{
	int heap = uapi_open_heap("system"), fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	char path[64];
	DIR *d;
	int r, h;

	assert_true(fd >= 0);
	/* A reopen through /proc/self/fd (docs/design.md §11.3). */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = open(path, O_RDWR | O_CLOEXEC);
	assert_true(r >= 0);
	assert_true(is_emulated_buf(r));
	close(r);
	/* openat() relative to the emulated directory: a heap, not seekable. */
	d = opendir("/dev/dma_heap");
	assert_non_null(d);
	h = openat(dirfd(d), "system", O_RDONLY | O_CLOEXEC);
	assert_true(h >= 0);
	errno = 0;
	assert_int_equal(lseek(h, 0, SEEK_CUR), -1);
	assert_int_equal(errno, ESPIPE);
	close(h);
	closedir(d);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void numbers_reused(void **state)
{
	char tmpl[] = "/tmp/uapi-tags-XXXXXX", c;
	int heap = uapi_open_heap("system"), fd, n, f;
	FILE *fp;

	/* A closed buffer's number, reused by a regular file: the kernel's. */
	fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	n = fd;
	close(fd);
	f = mkstemp(tmpl);
	assert_int_equal(f, n);
	unlink(tmpl);
	assert_int_equal(write(f, "ab", 2), 2);
	assert_int_equal(lseek(f, 0, SEEK_SET), 0);
	assert_int_equal(read(f, &c, 1), 1);
	/* A number freed behind the preload's back (fclose() closes inside
	 * libc), then taken by a new buffer: emulated again. */
	fp = fdopen(f, "r");
	assert_non_null(fp);
	fclose(fp);
	fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	assert_int_equal(fd, n);
	assert_true(is_emulated_buf(fd));
	uapi_close_last_and_wait(fd);
	close(heap);
}

/* Two threads allocate and close at the same numbers: every new buffer is
 * emulated whatever the other thread's close does. A stress, not a proof:
 * the window between a close and its clearing is a few instructions (the
 * argument for the compare-and-swap is in fdplace.c, "tags"). */
static void *alloc_close_loop(void *arg)
{
	int heap = *(int *)arg, i, fd;

	for (i = 0; i < 300; i++) {
		fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
		if (fd < 0 || !is_emulated_buf(fd))
			return (void *)1;
		close(fd);
	}
	return NULL;
}

static void close_races_new_tag(void **state)
{
	int heap = uapi_open_heap("system");
	pthread_t t;
	void *r1, *r2;

	assert_int_equal(pthread_create(&t, NULL, alloc_close_loop, &heap), 0);
	r1 = alloc_close_loop(&heap);
	assert_int_equal(pthread_join(t, &r2), 0);
	assert_null(r1);
	assert_null(r2);
	close(heap);
}

/* A vfork child shares the parent's memory, not its fds: its close leaves
 * the parent's buffer emulated. */
static void vfork_child_close(void **state)
{
	int heap = uapi_open_heap("system"), fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	int status;
	pid_t pid;

	assert_true(fd >= 0);
	pid = vfork();
	if (pid == 0) {
		close(fd);
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(is_emulated_buf(fd));
	uapi_close_last_and_wait(fd);
	close(heap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(dups_are_tagged),
		harness_test(received_fds_are_tagged),
		harness_test(other_names_are_tagged),
		harness_test(numbers_reused),
		harness_test(close_races_new_tag),
		harness_test(vfork_child_close),
	};

	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
