/* SPDX-License-Identifier: MIT */
/*
 * Sharing across processes: dma-buf and sync-file fds over SCM_RIGHTS
 * between two uapi programs, and a heap buffer imported and DMA'd by a
 * process that uses libdmabuf's API (uapi-api-peer).
 */
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "uapi-common.h"

struct peer {
	int sock;
};

/* The receiving uapi program: SYNC, map, check, write, set a fence. */
static int receiver(void *arg)
{
	struct peer *p = arg;
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	struct sync_file_info info = { 0 };
	int fd = uapi_recv_fd(p->sock), sf;
	char *map;

	child_check(fd >= 0);
	child_check(lseek(fd, 0, SEEK_END) == 8192);
	child_check(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) == 0);
	map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	child_check(map != MAP_FAILED);
	child_check(!memcmp(map, "uapi", 4));
	memcpy(map + 8, "peer", 4);
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	child_check(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) == 0);
	child_check(ioctl(fd, DMA_BUF_SET_NAME_B, "shared") == 0);
	/* A sync file from the other process. */
	sf = uapi_recv_fd(p->sock);
	child_check(sf >= 0);
	child_check(ioctl(sf, SYNC_IOC_FILE_INFO, &info) == 0);
	child_check(info.num_fences == 1);
	munmap(map, 8192);
	close(sf);
	close(fd);
	child_check(write(p->sock, "d", 1) == 1);
	return 0;
}

static void scm_rights_between_uapi_programs(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 8192, O_RDWR | O_CLOEXEC), sv[2];
	int tl = open("/dev/sw_sync", O_RDWR | O_CLOEXEC);
	struct sw_sync_create_fence_data d = { .value = 1 };
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE };
	struct peer p;
	char *map, c;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s), 0);
	memcpy(map, "uapi", 4);
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE;
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s), 0);
	p.sock = sv[1];
	pid = harness_fork_sock(receiver, &p, sv[0]);
	close(sv[1]);
	assert_int_equal(uapi_send_fd(sv[0], fd), 0);
	assert_int_equal(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &d), 0);
	assert_int_equal(uapi_send_fd(sv[0], d.fence), 0);
	assert_int_equal(read(sv[0], &c, 1), 1);
	assert_int_equal(harness_wait(pid), 0);
	assert_memory_equal(map + 8, "peer", 4);
	close(d.fence);
	close(tl);
	munmap(map, 8192);
	close(sv[0]);
	uapi_close_last_and_wait(fd);
	close(heap);
}

/* The receiving end of a udmabuf: its size, and a mapping of the creator's
 * pages, both ways. */
static int udmabuf_receiver(void *arg)
{
	struct peer *p = arg;
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	int fd = uapi_recv_fd(p->sock);
	char *map;

	child_check(fd >= 0);
	child_check(lseek(fd, 0, SEEK_END) == 8192);
	child_check(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) == 0);
	map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	child_check(map != MAP_FAILED);
	child_check(!memcmp(map + 4096, "uapi", 4));
	memcpy(map + 4100, "peer", 4);
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	child_check(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) == 0);
	munmap(map, 8192);
	close(fd);
	child_check(write(p->sock, "d", 1) == 1);
	return 0;
}

/* A udmabuf sent to another uapi program maps the creator's memfd there. */
static void udmabuf_between_uapi_programs(void **state)
{
	int dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC), sv[2];
	int memfd = memfd_create("pages", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	struct udmabuf_create create = { .size = 8192 };
	struct peer p;
	char *map, c;
	pid_t pid;
	int fd;

	assert_true(dev >= 0 && memfd >= 0);
	assert_int_equal(ftruncate(memfd, 3 * 4096), 0);
	assert_int_equal(fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	map = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	assert_true(map != MAP_FAILED);
	memcpy(map + 2 * 4096, "uapi", 4);
	create.memfd = (uint32_t)memfd;
	create.offset = 4096;
	fd = ioctl(dev, UDMABUF_CREATE, &create);
	assert_true(fd >= 0);
	close(memfd); /* the udmabuf keeps the pages */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	p.sock = sv[1];
	pid = harness_fork_sock(udmabuf_receiver, &p, sv[0]);
	close(sv[1]);
	assert_int_equal(uapi_send_fd(sv[0], fd), 0);
	assert_int_equal(read(sv[0], &c, 1), 1);
	assert_int_equal(harness_wait(pid), 0);
	assert_memory_equal(map + 2 * 4096 + 4, "peer", 4);
	munmap(map, 3 * 4096);
	close(sv[0]);
	uapi_close_last_and_wait(fd);
	close(dev);
}

static void api_process_imports_and_dmas(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 8192, O_RDWR | O_CLOEXEC), sv[2];
	char *map, arg[16], c;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	memcpy(map, "uapi", 4);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The peer gets its end of the socket over exec. */
		int s = dup(sv[1]);

		uapi_clean_preload();
		snprintf(arg, sizeof(arg), "%d", s);
		execl(UAPI_API_PEER, "uapi-api-peer", arg, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	assert_int_equal(uapi_send_fd(sv[0], fd), 0);
	assert_int_equal(read(sv[0], &c, 1), 1);
	assert_int_equal(harness_wait(pid), 0);
	/* The device's write is in the program's mapping. */
	assert_memory_equal(map + 4, "-dma", 4);
	munmap(map, 8192);
	close(sv[0]);
	uapi_close_last_and_wait(fd);
	close(heap);
}

struct fdinfo_peer {
	pid_t parent;
	int fd;
};

static bool read_text(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
	return true;
}

/* The child reads its parent's fdinfo (the import it makes for it, and
 * its connection to the parent, stay out of the parent's fds). */
static int fdinfo_reader(void *arg)
{
	struct fdinfo_peer *p = arg;
	char path[64], buf[2048];

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)p->parent, p->fd);
	child_check(read_text(path, buf, sizeof(buf)));
	child_check(strstr(buf, "size:\t12288\n"));
	child_check(strstr(buf, "exp_name:\tsystem\n"));
	/* The parent's fd and mapping, and this child's inherited ones. */
	child_check(strstr(buf, "count:\t4\n"));
	child_check(strstr(buf, "\nname:\tother\n"));
	child_check(strstr(buf, "flags:\t02000002\n"));
	child_check(!strstr(buf, "lock:"));
	/* An fd the parent does not have: the kernel's ENOENT. */
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)p->parent, 1000);
	child_check(!fopen(path, "r") && errno == ENOENT);
	return 0;
}

/* /proc/<other pid>/fdinfo/N of a dma-buf: the kernel's fields, as for
 * /proc/self. */
static void fdinfo_of_another_process(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 12288, O_RDWR | O_CLOEXEC);
	struct fdinfo_peer p = { getpid(), fd };
	void *map;

	assert_int_equal(ioctl(fd, DMA_BUF_SET_NAME_B, "other"), 0);
	map = mmap(NULL, 12288, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(harness_wait(harness_fork(fdinfo_reader, &p)), 0);
	munmap(map, 12288);
	uapi_close_last_and_wait(fd);
	close(heap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(scm_rights_between_uapi_programs),
		harness_test(api_process_imports_and_dmas),
		harness_test(udmabuf_between_uapi_programs),
		harness_test(fdinfo_of_another_process),
	};

	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
