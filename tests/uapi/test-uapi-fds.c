/* SPDX-License-Identifier: MIT */
/*
 * The program's fd table as on Linux: the layer's own fds are kept apart
 * (above half of RLIMIT_NOFILE), so the program's new fds take the lowest
 * free numbers, and a program that closes what it does not own
 * (close_range(3, ~0U), closefrom(3), a close() loop) keeps a working
 * emulation. Written against the kernel uapi only.
 */
#include <dirent.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "uapi-common.h"

#define PAGE 4096

/* The lowest free fd, as the kernel's next fd. */
static int lowest_free(void)
{
	int fd = dup(0);

	assert_true(fd >= 0);
	close(fd);
	return fd;
}

static bool is_dmabuf(int fd)
{
	char path[64], link[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = 0;
	return strstr(link, "dmabuf") != NULL;
}

/* An 8-byte ALLOC (len only): the fd is not copied back, the buffer is at
 * the lowest free fd, and its file is O_RDONLY (fd_flags read as 0). */
static void len_only_alloc_is_at_lowest_fd(void **state)
{
	int heap = uapi_open_heap("system");
	uint64_t only_len[1] = { PAGE };
	int lowest = lowest_free();

	assert_int_equal(ioctl(heap, _IOWR(DMA_HEAP_IOC_MAGIC, 0x0, uint64_t), only_len), 0);
	assert_true(is_dmabuf(lowest));
	assert_int_equal(fcntl(lowest, F_GETFL) & O_ACCMODE, O_RDONLY);
	assert_int_equal(lseek(lowest, 0, SEEK_END), PAGE);
	close(lowest);
	close(heap);
}

/* Opens and ALLOCs take consecutive lowest numbers, as fd_install(). */
static void new_fds_are_lowest(void **state)
{
	int lowest = lowest_free(), heap, a, b;

	heap = uapi_open_heap("system");
	assert_int_equal(heap, lowest);
	a = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	b = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	assert_int_equal(a, lowest + 1);
	assert_int_equal(b, lowest + 2);
	/* The O_CLOEXEC of fd_flags, and none without it. */
	assert_int_equal(fcntl(a, F_GETFD), FD_CLOEXEC);
	close(b);
	b = uapi_heap_alloc(heap, PAGE, O_RDWR);
	assert_int_equal(b, lowest + 2);
	assert_int_equal(fcntl(b, F_GETFD), 0);
	uapi_close_last_and_wait(a);
	uapi_close_last_and_wait(b);
	close(heap);
}

/* Every fd above 2 that the test does not hold is the layer's. */
static int a_layer_fd(int keep1, int keep2)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;

	assert_non_null(d);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd > 2 && fd != dirfd(d) && fd != keep1 && fd != keep2 &&
		    found < 0)
			found = fd;
	}
	closedir(d);
	return found;
}

/* The emulation after the program closed everything it did not keep:
 * the buffer kept, its mapping, a new heap fd and buffer, a sync file. */
static int emulation_works(int buf, unsigned char *map)
{
	struct dma_buf_sync s = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	struct dma_buf_export_sync_file ex = { .flags = DMA_BUF_SYNC_RW, .fd = -1 };
	int heap, nb;
	struct pollfd p;

	child_check(ioctl(buf, DMA_BUF_IOCTL_SYNC, &s) == 0);
	child_check(map[0] == 0x5a && map[PAGE - 1] == 0x5a);
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	child_check(ioctl(buf, DMA_BUF_IOCTL_SYNC, &s) == 0);
	child_check(lseek(buf, 0, SEEK_END) == PAGE);
	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	child_check(heap >= 0);
	nb = uapi_heap_alloc(heap, 2 * PAGE, O_RDWR | O_CLOEXEC);
	child_check(nb >= 0);
	child_check(lseek(nb, 0, SEEK_END) == 2 * PAGE);
	child_check(ioctl(nb, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &ex) == 0);
	p = (struct pollfd){ .fd = ex.fd, .events = POLLIN };
	child_check(poll(&p, 1, 1000) == 1 && (p.revents & POLLIN));
	child_check(close(ex.fd) == 0);
	child_check(close(nb) == 0);
	child_check(close(heap) == 0);
	return 0;
}

enum closer { CLOSE_RANGE, CLOSEFROM, CLOSE_LOOP };

static int close_everything(void *arg)
{
	enum closer how = (enum closer)(intptr_t)arg;
	int heap = uapi_open_heap("system");
	int buf = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	unsigned char *map;
	struct rlimit rl;
	int fd, closed = 0;

	child_check(buf >= 0);
	map = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	child_check(map != MAP_FAILED);
	memset(map, 0x5a, PAGE);
	close(heap);
	/* Keep only stdio and the buffer: put it at 0. */
	child_check(dup2(buf, 0) == 0);
	close(buf);
	buf = 0;
	switch (how) {
	case CLOSE_RANGE:
		/* The raw syscall (as a program without glibc's wrapper
		 * makes it), then glibc's. */
		child_check(syscall(SYS_close_range, 3U, ~0U, 0) == 0);
		child_check(close_range(3, ~0U, 0) == 0);
		break;
	case CLOSEFROM:
		closefrom(3);
		break;
	case CLOSE_LOOP:
		child_check(getrlimit(RLIMIT_NOFILE, &rl) == 0);
		for (fd = 3; fd < (int)rl.rlim_cur && fd < 65536; fd++)
			closed += close(fd) == 0;
		/* The layer's fds are no fds of the program: EBADF. */
		child_check(closed == 0);
		break;
	}
	return emulation_works(buf, map);
}

static void close_range_keeps_the_layer(void **state)
{
	assert_int_equal(harness_wait(harness_fork(close_everything, (void *)CLOSE_RANGE)), 0);
}

static void closefrom_keeps_the_layer(void **state)
{
	assert_int_equal(harness_wait(harness_fork(close_everything, (void *)CLOSEFROM)), 0);
}

static void close_loop_keeps_the_layer(void **state)
{
	assert_int_equal(harness_wait(harness_fork(close_everything, (void *)CLOSE_LOOP)), 0);
}

/* The layer's fds are not the program's: dup2() onto one is refused
 * (EBUSY) rather than taking the layer's file, dup() of one is EBADF. */
static int dup_onto_layer(void *arg)
{
	int heap = uapi_open_heap("system");
	int buf = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	int lfd = a_layer_fd(heap, buf);

	child_check(buf >= 0 && lfd > 2);
	child_check(dup2(heap, lfd) == -1 && errno == EBUSY);
	child_check(dup3(heap, lfd, O_CLOEXEC) == -1 && errno == EBUSY);
	child_check(dup(lfd) == -1 && errno == EBADF);
	child_check(close(lfd) == -1 && errno == EBADF);
	child_check(fcntl(lfd, F_GETFD) >= 0); /* still there */
	close(buf);
	buf = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	child_check(buf >= 0);
	close(buf);
	close(heap);
	return 0;
}

static void dup2_onto_a_layer_fd(void **state)
{
	assert_int_equal(harness_wait(harness_fork(dup_onto_layer, NULL)), 0);
}

/* At RLIMIT_NOFILE an ALLOC is EMFILE, as get_unused_fd_flags() says, and
 * works again once the program closed one of its fds. */
static int fill_the_table(void *arg)
{
	struct rlimit rl = { .rlim_cur = 64, .rlim_max = 0 };
	int heap = uapi_open_heap("system"), fds[64], n = 0, i, fd;

	child_check(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = 64;
	child_check(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	while (n < 64 && (fd = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC)) >= 0)
		fds[n++] = fd;
	child_check(fd == -EMFILE);
	child_check(n > 0);
	child_check(uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC) == -EMFILE);
	close(fds[--n]);
	fd = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	child_check(fd >= 0);
	close(fd);
	for (i = 0; i < n; i++)
		close(fds[i]);
	close(heap);
	return 0;
}

static void emfile_at_the_limit(void **state)
{
	assert_int_equal(harness_wait(harness_fork(fill_the_table, NULL)), 0);
}

static long fdinfo_count(int fd)
{
	char path[64], line[128];
	long count = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	fp = fopen(path, "re");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp))
		if (!strncmp(line, "count:", 6))
			count = strtol(line + 6, NULL, 10);
	fclose(fp);
	return count;
}

/* fdinfo's count is the kernel's file count: the fds and mappings of the
 * program in every process, none of the layers' (the child's import,
 * the exporter's views, the fds a child inherits from the parent's
 * layer, an epoll item's dup). */
static void count_leaves_out_the_layers(void **state)
{
	int heap = uapi_open_heap("system");
	int buf = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	struct harness_sync s;
	unsigned char *p;
	pid_t pid;

	assert_true(buf >= 0);
	assert_int_equal(fdinfo_count(buf), 1);
	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(fdinfo_count(buf), 2);
	munmap(p, PAGE);
	harness_sync_init(&s);
	pid = fork();
	if (pid == 0) {
		harness_sync_child(&s);
		unsigned char *q = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, buf, 0);
		struct dma_buf_sync sy = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ };

		child_check(q != MAP_FAILED);
		child_check(ioctl(buf, DMA_BUF_IOCTL_SYNC, &sy) == 0);
		harness_sync_tell_parent(&s, 'm');
		harness_sync_wait_parent(&s);
		_exit(0);
	}
	assert_true(pid > 0);
	harness_sync_parent(&s);
	assert_int_equal(harness_sync_wait_child(&s), 'm');
	/* This fd, the child's inherited one and its mapping. */
	assert_int_equal(fdinfo_count(buf), 3);
	harness_sync_tell_child(&s, 'x');
	assert_int_equal(harness_wait(pid), 0);
	harness_sync_close(&s);
	assert_int_equal(fdinfo_count(buf), 1);
	uapi_close_last_and_wait(buf);
	close(heap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(len_only_alloc_is_at_lowest_fd),
		harness_test(new_fds_are_lowest),
		harness_test(close_range_keeps_the_layer),
		harness_test(closefrom_keeps_the_layer),
		harness_test(close_loop_keeps_the_layer),
		harness_test(dup2_onto_a_layer_fd),
		harness_test(emfile_at_the_limit),
		harness_test(count_leaves_out_the_layers),
	};

	/* These tests tell the layer's fds from the program's by which are
	 * open: an fd a shell or CI runner handed down (meson closes them, an
	 * interactive shell may not) would be taken for the layer's. The
	 * layer keeps its own through closefrom() (closefrom_keeps_the_layer). */
	closefrom(3);
	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
