/* SPDX-License-Identifier: MIT */
/*
 * dma-heap and dma-buf uapi: what an unmodified program sees under the
 * preload, errno for errno with Linux 6.12.
 */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "uapi-common.h"

static const char *self_path; /* argv[0], for the exec case */

static void heap_dir_exists(void **state)
{
	bool system = false, cma = false;
	struct dirent *e;
	struct stat st;
	DIR *d;

	assert_int_equal(stat("/dev/dma_heap", &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(access("/dev/dma_heap/system", R_OK), 0);
	assert_int_equal(access("/dev/udmabuf", F_OK), 0);
	assert_int_equal(access("/sys/kernel/debug/sync/sw_sync", F_OK), 0);
	assert_int_equal(faccessat(AT_FDCWD, "/dev/dma_heap/linux,cma", F_OK, 0), 0);
	d = opendir("/dev/dma_heap");
	assert_non_null(d);
	while ((e = readdir(d))) {
		system |= !strcmp(e->d_name, "system");
		cma |= !strcmp(e->d_name, "linux,cma");
	}
	closedir(d);
	assert_true(system && cma);
	errno = 0;
	assert_int_equal(open("/dev/dma_heap/nonesuch", O_RDONLY), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(stat("/dev/dma_heap/nonesuch", &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void alloc_map_sync(void **state)
{
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 3 * 4096 + 1, O_RDWR | O_CLOEXEC);
	char *p;

	assert_true(fd >= 0);
	/* The length is page aligned, the fd close-on-exec as asked. */
	assert_int_equal(lseek(fd, 0, SEEK_END), 4 * 4096);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s), 0);
	/* Zeroed, as the heaps' memory. */
	assert_int_equal(p[0] | p[4 * 4096 - 1], 0);
	memset(p, 0xab, 4 * 4096);
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s), 0);
	assert_int_equal(munmap(p, 4 * 4096), 0);
	close(fd);
	/* Without O_CLOEXEC the fd is inheritable. */
	fd = uapi_heap_alloc(heap, 4096, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void cma_heap_allocates(void **state)
{
	int heap = uapi_open_heap("linux,cma");
	int fd = uapi_heap_alloc(heap, 1 << 20, O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(lseek(fd, 0, SEEK_END), 1 << 20);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void alloc_errors(void **state)
{
	struct dma_heap_allocation_data d;
	int heap = uapi_open_heap("system");
	int before = harness_count_fds();

	/* dma_heap_ioctl_allocate()'s checks, in order. */
	d = (struct dma_heap_allocation_data){ .len = 4096, .fd = 3, .fd_flags = O_RDWR };
	assert_int_equal(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(uapi_heap_alloc(heap, 4096, O_RDWR | O_NONBLOCK), -EINVAL);
	d = (struct dma_heap_allocation_data){ .len = 4096, .fd_flags = O_RDWR, .heap_flags = 1 };
	assert_int_equal(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(uapi_heap_alloc(heap, 0, O_RDWR), -EINVAL);
	assert_int_equal(uapi_heap_alloc(heap, UINT64_MAX, O_RDWR), -EINVAL);
	/* More than RAM. */
	assert_int_equal(uapi_heap_alloc(heap, 1ull << 50, O_RDWR), -ENOMEM);
	/* Unknown numbers: nr >= 1 is -EINVAL before anything else. */
	assert_int_equal(ioctl(heap, _IOWR('H', 1, struct dma_heap_allocation_data), &d), -1);
	assert_int_equal(errno, EINVAL);
	/* The heap only looks at the number: a dma-buf ioctl is nr 1. */
	assert_int_equal(ioctl(heap, DMA_BUF_SET_NAME_B, "x"), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(harness_count_fds(), before);
	close(heap);
}

/* The ioctl copies min/max of the user's and the kernel's struct size. */
static void alloc_struct_sizes(void **state)
{
	struct {
		struct dma_heap_allocation_data d;
		uint64_t extra[4];
	} big = { .d = { .len = 4096, .fd_flags = O_RDWR | O_CLOEXEC } };
	struct {
		uint64_t len;
		uint32_t fd;
		uint32_t fd_flags;
	} small = { .len = 4096, .fd_flags = O_RDWR | O_CLOEXEC };
	int heap = uapi_open_heap("system");

	assert_int_equal(ioctl(heap, _IOWR('H', 0, big), &big), 0);
	assert_true((int)big.d.fd > 0);
	assert_int_equal(lseek((int)big.d.fd, 0, SEEK_END), 4096);
	close((int)big.d.fd);
	/* Extra bytes are copied in too: non-zero there is not looked at. */
	big.d.fd = 0;
	big.extra[0] = 7;
	assert_int_equal(ioctl(heap, _IOWR('H', 0, big), &big), 0);
	close((int)big.d.fd);
	/* Older struct without heap_flags: the rest reads as zero. */
	assert_int_equal(ioctl(heap, _IOWR('H', 0, small), &small), 0);
	assert_true((int)small.fd > 0);
	close((int)small.fd);
	/* _IOR: nothing is copied in, so len reads 0. */
	assert_int_equal(ioctl(heap, _IOR('H', 0, struct dma_heap_allocation_data), &big), -1);
	assert_int_equal(errno, EINVAL);
	close(heap);
}

static void alloc_efault(void **state)
{
	struct dma_heap_allocation_data d = { .len = 4096, .fd_flags = O_RDWR };
	int heap = uapi_open_heap("system");
	int before = harness_count_fds();
	void *bad = uapi_bad_ptr(), *ro = uapi_ro_page(&d, sizeof(d));

	assert_int_equal(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, bad), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, NULL), -1);
	assert_int_equal(errno, EFAULT);
	/* Readable but not writable: copy_to_user fails, no fd is made. */
	assert_int_equal(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, ro), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(harness_count_fds(), before);
	munmap(bad, 4096);
	munmap(ro, 4096);
	/* And the heap still works. */
	d.fd_flags |= O_CLOEXEC;
	assert_int_equal(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d), 0);
	close((int)d.fd);
	close(heap);
}

static void dmabuf_file_ops(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 2 * 4096, O_RDWR | O_CLOEXEC);
	int ro = uapi_heap_alloc(heap, 4096, O_RDONLY | O_CLOEXEC);
	char byte = 0;
	void *p;

	assert_true(fd >= 0 && ro >= 0);
	/* dma_buf_llseek(): only SEEK_SET/SEEK_END with offset 0. */
	assert_int_equal(lseek(fd, 0, SEEK_CUR), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(lseek(fd, 4096, SEEK_SET), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(lseek(fd, 0, SEEK_DATA), -1);
	assert_int_equal(errno, EINVAL);
	/* No read, write or truncation on a dma-buf. */
	assert_int_equal(read(fd, &byte, 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(write(fd, &byte, 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(ftruncate(fd, 4096), -1);
	assert_int_equal(errno, EINVAL);
	/* mmap bounds. */
	assert_true(mmap(NULL, 3 * 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	assert_true(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 2 * 4096) == MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 4096);
	assert_true(p != MAP_FAILED);
	munmap(p, 4096);
	/* A read-only buffer: no shared writable mapping. */
	assert_true(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED);
	assert_int_equal(errno, EACCES);
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, ro, 0);
	assert_true(p != MAP_FAILED);
	munmap(p, 4096);
	close(ro);
	uapi_close_last_and_wait(fd);
	close(heap);
}

/* fd_flags O_WRONLY: the file is O_WRONLY, as the heaps' exp_info.flags
 * make it; do_mmap() refuses any mapping of it (before the size check of
 * dma_buf_mmap_internal()), vfs_read() is EBADF; SYNC works. */
static void write_only_buffer(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 4096, O_WRONLY | O_CLOEXEC);
	struct dma_buf_sync sync = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE };
	char byte = 0;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_WRONLY);
	assert_true(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED);
	assert_int_equal(errno, EACCES);
	assert_true(mmap(NULL, 4096, PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
	assert_int_equal(errno, EACCES);
	assert_true(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED);
	assert_int_equal(errno, EACCES);
	assert_true(mmap(NULL, 2 * 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED);
	assert_int_equal(errno, EACCES);
	assert_int_equal(read(fd, &byte, 1), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(write(fd, &byte, 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync), 0);
	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE;
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync), 0);
	uapi_close_last_and_wait(fd);
	close(heap);
}

/* The calls conformance does not make: the vector and positioned variants,
 * posix_fallocate, F_GETFL, mremap, and the heap device's own file. */
static void dmabuf_file_ops_more(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 2 * 4096, O_RDWR | O_CLOEXEC);
	int ro = uapi_heap_alloc(heap, 4096, O_RDONLY | O_CLOEXEC);
	char byte = 0x5a;
	struct iovec iov = { &byte, 1 };
	struct stat st;
	unsigned char *p;

	(void)state;
	assert_true(fd >= 0 && ro >= 0);
	/* No FMODE_PREAD/PWRITE: ESPIPE, a negative position EINVAL first. */
	assert_int_equal(preadv(fd, &iov, 1, 0), -1);
	assert_int_equal(errno, ESPIPE);
	assert_int_equal(pwritev(fd, &iov, 1, 0), -1);
	assert_int_equal(errno, ESPIPE);
	assert_int_equal(pread(fd, &byte, 1, -1), -1);
	assert_int_equal(errno, EINVAL);
	/* vfs_write(): not open for writing is EBADF, else no ->write EINVAL. */
	assert_int_equal(writev(fd, &iov, 1), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(writev(ro, &iov, 1), -1);
	assert_int_equal(errno, EBADF);
	/* vfs_fallocate(): EBADF on a read-only file, else ENODEV. */
	assert_int_equal(posix_fallocate(fd, 0, 4096), ENODEV);
	assert_int_equal(posix_fallocate(ro, 0, 4096), EBADF);
	assert_int_equal(fallocate(fd, 0, -1, 4096), -1);
	assert_int_equal(errno, EINVAL);
	/* pwrite() wrote nothing: the buffer is still zero. */
	assert_int_equal(pwrite(fd, &byte, 1, 0), -1);
	p = mmap(NULL, 2 * 4096, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(p[0], 0);
	/* VM_DONTEXPAND: no growing, shrinking works. */
	assert_true(mremap(p, 2 * 4096, 3 * 4096, MREMAP_MAYMOVE) == MAP_FAILED);
	assert_int_equal(errno, EFAULT);
	assert_true(mremap(p, 2 * 4096, 4096, 0) == p);
	munmap(p, 4096);
	/* The file has no O_LARGEFILE. */
	assert_int_equal(fcntl(fd, F_GETFL), O_RDWR);
	/* The heap device: a character device, nonseekable, no mmap. */
	assert_int_equal(fstat(heap, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(lseek(heap, 0, SEEK_SET), -1);
	assert_int_equal(errno, ESPIPE);
	assert_int_equal(pread(heap, &byte, 1, 0), -1);
	assert_int_equal(errno, ESPIPE);
	assert_true(mmap(NULL, 4096, PROT_READ, MAP_SHARED, heap, 0) == MAP_FAILED);
	assert_int_equal(errno, ENODEV);
	/* Ioctls of other types reach the drivers. */
	assert_int_equal(ioctl(fd, FIONREAD, &st), -1);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(ioctl(heap, FIONREAD, &st), -1);
	assert_int_equal(errno, EINVAL);
	/* ...but FIOCLEX is the VFS's. */
	assert_int_equal(ioctl(heap, FIOCLEX), 0);
	close(ro);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void dmabuf_ioctl_errors(void **state)
{
	struct dma_buf_sync s = { 0 };
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	void *bad = uapi_bad_ptr();
	char longname[40];

	s.flags = DMA_BUF_SYNC_START; /* neither READ nor WRITE */
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s), -1);
	assert_int_equal(errno, EINVAL);
	s.flags = DMA_BUF_SYNC_RW | 0x100;
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, bad), -1);
	assert_int_equal(errno, EFAULT);
	/* An END without a START is fine for the heaps. */
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
	assert_int_equal(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s), 0);
	/* Names: both encodings, NUL within 32 bytes. */
	assert_int_equal(ioctl(fd, DMA_BUF_SET_NAME_A, "one"), 0);
	assert_int_equal(ioctl(fd, DMA_BUF_SET_NAME_B, "two"), 0);
	memset(longname, 'x', sizeof(longname));
	longname[32] = '\0';
	assert_int_equal(ioctl(fd, DMA_BUF_SET_NAME_B, longname), -1);
	assert_int_equal(errno, EINVAL);
	longname[31] = '\0';
	assert_int_equal(ioctl(fd, DMA_BUF_SET_NAME_B, longname), 0);
	assert_int_equal(ioctl(fd, DMA_BUF_SET_NAME_B, bad), -1);
	assert_int_equal(errno, EFAULT);
	/* Unknown 'b' numbers. */
	assert_int_equal(ioctl(fd, _IOW('b', 9, __u64), &s), -1);
	assert_int_equal(errno, ENOTTY);
	/* Not our fd types: passed through to the kernel. */
	assert_int_equal(ioctl(0x7fff, DMA_BUF_IOCTL_SYNC, &s), -1);
	assert_int_equal(errno, EBADF);
	munmap(bad, 4096);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void read_fdinfo(int fd, char *buf, size_t size)
{
	char path[64];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void fdinfo_fields(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 8192, O_RDWR | O_CLOEXEC);
	char buf[2048];
	void *p;
	int fd2;

	read_fdinfo(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "size:\t8192\n"));
	assert_non_null(strstr(buf, "exp_name:\tsystem\n"));
	assert_non_null(strstr(buf, "count:\t1\n"));
	assert_non_null(strstr(buf, "flags:\t"));
	assert_null(strstr(buf, "name:\tframe"));
	/* A dup and a mapping are file references too. */
	fd2 = dup(fd);
	p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(ioctl(fd, DMA_BUF_SET_NAME_B, "frame"), 0);
	read_fdinfo(fd2, buf, sizeof(buf));
	assert_non_null(strstr(buf, "count:\t3\n"));
	assert_non_null(strstr(buf, "\nname:\tframe\n"));
	munmap(p, 8192);
	close(fd2);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void dup_family(void **state)
{
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ };
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	int a = dup(fd), b = fcntl(fd, F_DUPFD, 100), c = dup2(fd, 200), h2 = dup(heap);

	assert_true(a >= 0 && b >= 100 && c == 200 && h2 >= 0);
	close(fd);
	/* Identity comes from the file, whatever the number. */
	assert_int_equal(ioctl(a, DMA_BUF_IOCTL_SYNC, &s), 0);
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
	assert_int_equal(ioctl(b, DMA_BUF_IOCTL_SYNC, &s), 0);
	assert_int_equal(lseek(c, 0, SEEK_END), 4096);
	fd = uapi_heap_alloc(h2, 4096, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	/* dup3 over an emulated fd: the old file goes, the new one works. */
	assert_int_equal(dup3(fd, a, O_CLOEXEC), a);
	assert_int_equal(lseek(a, 0, SEEK_END), 4096);
	close(fd);
	close(a);
	close(b);
	close(c);
	close(h2);
	close(heap);
}

static int child_uses_inherited(void *arg)
{
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	int fd = *(int *)arg;
	char *p;

	child_check(lseek(fd, 0, SEEK_END) == 4096);
	child_check(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) == 0);
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	child_check(p != MAP_FAILED);
	child_check(p[0] == 'p');
	p[1] = 'c';
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	child_check(ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) == 0);
	munmap(p, 4096);
	return 0;
}

static void fork_child_uses_buffer(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	pid_t pid;

	assert_true(p != MAP_FAILED);
	p[0] = 'p';
	pid = harness_fork(child_uses_inherited, &fd);
	assert_int_equal(harness_wait(pid), 0);
	assert_int_equal(p[1], 'c');
	munmap(p, 4096);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void exec_child_uses_buffer(void **state)
{
	int heap = uapi_open_heap("system");
	int fd = uapi_heap_alloc(heap, 4096, O_RDWR); /* inherited over exec */
	char arg[16], *p;
	pid_t pid;

	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	p[0] = 'p';
	snprintf(arg, sizeof(arg), "%d", fd);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Not /proc/self/exe, which is valgrind's tool under valgrind;
		 * the child runs without valgrind, with the preload. */
		uapi_clean_preload();
		execl(self_path, "test-uapi-heap", "--child", arg, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(harness_wait(pid), 0);
	assert_int_equal(p[1], 'c');
	munmap(p, 4096);
	uapi_close_last_and_wait(fd);
	close(heap);
}

static void *thread_allocs(void *arg)
{
	int heap = *(int *)arg, i;

	for (i = 0; i < 50; i++) {
		struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE };
		int fd = uapi_heap_alloc(heap, 4096, O_RDWR | O_CLOEXEC);

		if (fd < 0 || ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) != 0)
			return (void *)1;
		s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE;
		if (ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) != 0)
			return (void *)1;
		close(fd);
	}
	return NULL;
}

static void threads_allocate(void **state)
{
	int heap = uapi_open_heap("system");
	pthread_t t[4];
	void *ret;
	int i;

	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, thread_allocs, &heap), 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_null(ret);
	}
	close(heap);
}

static void pass_through_untouched(void **state)
{
	int p[2], n = -1;
	char path[] = "/tmp/uapi-passthrough-XXXXXX";
	int fd = mkstemp(path);
	char c = 'x';

	/* ioctls of other types on other fds, and file ops on regular files,
	 * are the kernel's. */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "ab", 2), 2);
	assert_int_equal(ioctl(p[0], FIONREAD, &n), 0);
	assert_int_equal(n, 2);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, &c, 1), 1);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 1);
	assert_int_equal(ftruncate(fd, 100), 0);
	assert_int_equal(lseek(fd, 0, SEEK_END), 100);
	close(fd);
	close(p[0]);
	close(p[1]);
}

static int exec_child_main(int fd)
{
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	char *p;

	if (lseek(fd, 0, SEEK_END) != 4096 || ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) != 0)
		return 1;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || p[0] != 'p')
		return 2;
	p[1] = 'c';
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	if (ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) != 0)
		return 3;
	munmap(p, 4096);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		harness_test(heap_dir_exists),
		harness_test(alloc_map_sync),
		harness_test(cma_heap_allocates),
		harness_test(alloc_errors),
		harness_test(alloc_struct_sizes),
		harness_test(alloc_efault),
		harness_test(dmabuf_file_ops),
		harness_test(dmabuf_file_ops_more),
		harness_test(write_only_buffer),
		harness_test(dmabuf_ioctl_errors),
		harness_test(fdinfo_fields),
		harness_test(dup_family),
		harness_test(fork_child_uses_buffer),
		harness_test(exec_child_uses_buffer),
		harness_test(threads_allocate),
		harness_test(pass_through_untouched),
	};

	self_path = argv[0];
	if (argc == 3 && !strcmp(argv[1], "--child"))
		return exec_child_main(atoi(argv[2]));
	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
