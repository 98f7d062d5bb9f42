/* SPDX-License-Identifier: MIT */
/*
 * /dev/udmabuf through the kernel's uapi: the driver's checks, and a
 * udmabuf fd that maps, stats and seeks to the caller's pages.
 */
#include <sys/stat.h>

#include "uapi-common.h"

static int sealed_memfd(size_t size)
{
	int fd = memfd_create("uapi-udmabuf", MFD_ALLOW_SEALING | MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	return fd;
}

static int dev_open(void)
{
	int fd = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static void create_maps_callers_pages(void **state)
{
	int dev = dev_open(), memfd = sealed_memfd(4 * 4096), buf;
	struct udmabuf_create c = { .memfd = (__u32)memfd, .flags = UDMABUF_FLAGS_CLOEXEC,
				    .offset = 4096, .size = 2 * 4096 };
	struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	char *mine, *theirs;
	struct stat st;

	mine = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	assert_true(mine != MAP_FAILED);
	mine[4096] = 'a';
	mine[3 * 4096 - 1] = 'z';
	buf = ioctl(dev, UDMABUF_CREATE, &c);
	assert_true(buf >= 0);
	assert_int_equal(fcntl(buf, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(lseek(buf, 0, SEEK_END), 2 * 4096);
	assert_int_equal(fstat(buf, &st), 0);
	assert_int_equal(st.st_size, 2 * 4096);
	theirs = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	assert_true(theirs != MAP_FAILED);
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_SYNC, &s), 0);
	assert_int_equal(theirs[0], 'a');
	assert_int_equal(theirs[2 * 4096 - 1], 'z');
	theirs[1] = 'b';
	assert_int_equal(mine[4097], 'b');
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	assert_int_equal(ioctl(buf, DMA_BUF_IOCTL_SYNC, &s), 0);
	assert_true(mmap(NULL, 3 * 4096, PROT_READ, MAP_SHARED, buf, 0) == MAP_FAILED);
	assert_int_equal(errno, EINVAL);
	munmap(theirs, 2 * 4096);
	munmap(mine, 4 * 4096);
	uapi_close_last_and_wait(buf);
	/* Without the flag the fd is inheritable; 6.12 ignores other bits. */
	c.flags = 0x100;
	buf = ioctl(dev, UDMABUF_CREATE, &c);
	assert_true(buf >= 0);
	assert_int_equal(fcntl(buf, F_GETFD) & FD_CLOEXEC, 0);
	uapi_close_last_and_wait(buf);
	close(memfd);
	close(dev);
}

static void create_list(void **state)
{
	int dev = dev_open(), m1 = sealed_memfd(2 * 4096), m2 = sealed_memfd(4096), buf;
	struct {
		struct udmabuf_create_list head;
		struct udmabuf_create_item items[2];
	} l = { .head = { .flags = UDMABUF_FLAGS_CLOEXEC, .count = 2 },
		.items = { { .memfd = (__u32)m1, .offset = 0, .size = 2 * 4096 },
			   { .memfd = (__u32)m2, .offset = 0, .size = 4096 } } };

	buf = ioctl(dev, UDMABUF_CREATE_LIST, &l);
	assert_true(buf >= 0);
	assert_int_equal(lseek(buf, 0, SEEK_END), 3 * 4096);
	uapi_close_last_and_wait(buf);
	l.head.count = 0;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE_LIST, &l), -1);
	assert_int_equal(errno, EINVAL);
	l.head.count = 1025;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE_LIST, &l), -1);
	assert_int_equal(errno, EINVAL);
	/* Items beyond a mapped page. */
	l.head.count = 1000;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE_LIST, &l), -1);
	assert_int_equal(errno, EFAULT);
	close(m1);
	close(m2);
	close(dev);
}

static void create_errors(void **state)
{
	int dev = dev_open(), memfd = sealed_memfd(4 * 4096), before = harness_count_fds();
	int unsealed = memfd_create("unsealed", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	struct udmabuf_create c = { .memfd = (__u32)memfd, .offset = 0, .size = 4096 };
	void *bad = uapi_bad_ptr();

	assert_true(unsealed >= 0);
	assert_int_equal(ftruncate(unsealed, 4096), 0);
	/* Sizes and alignments first. */
	c.size = 4095;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, &c), -1);
	assert_int_equal(errno, EINVAL);
	c.size = 4096;
	c.offset = 1;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, &c), -1);
	assert_int_equal(errno, EINVAL);
	c.offset = 0;
	c.size = 0;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, &c), -1);
	assert_int_equal(errno, EINVAL);
	c.size = 128ull << 20;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, &c), -1);
	assert_int_equal(errno, EINVAL);
	/* Then the fd: not a memfd, or not open. */
	c.size = 4096;
	c.memfd = 0x7fff;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, &c), -1);
	assert_int_equal(errno, EBADFD);
	c.memfd = (__u32)dev;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, &c), -1);
	assert_int_equal(errno, EBADFD);
	/* Then the seals and the range. */
	c.memfd = (__u32)unsealed;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, &c), -1);
	assert_int_equal(errno, EINVAL);
	c.memfd = (__u32)memfd;
	c.offset = 4 * 4096;
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, &c), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(ioctl(dev, UDMABUF_CREATE, bad), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(ioctl(dev, _IOW('u', 0x44, struct udmabuf_create), &c), -1);
	assert_int_equal(errno, ENOTTY);
	assert_int_equal(harness_count_fds(), before + 1);
	munmap(bad, 4096);
	close(unsealed);
	close(memfd);
	close(dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(create_maps_callers_pages),
		harness_test(create_list),
		harness_test(create_errors),
	};

	uapi_warm_up();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
