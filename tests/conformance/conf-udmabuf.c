/* SPDX-License-Identifier: MIT */
/*
 * /dev/udmabuf: UDMABUF_CREATE and UDMABUF_CREATE_LIST, every check of the
 * driver in its order (sizes and alignment, then each fd, then the seals),
 * and the resulting dma-buf: size, mapping of the caller's pages, SYNC.
 * tools/testing/selftests/drivers/dma-buf/udmabuf.c covers a subset.
 */
#include "conf.h"

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/udmabuf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEAL_OK (F_SEAL_SHRINK)

static int create(int dev, int memfd, uint64_t off, uint64_t size, uint32_t flags)
{
	struct udmabuf_create c = { .memfd = (uint32_t)memfd, .flags = flags,
				    .offset = off, .size = size };
	int r = ioctl(dev, UDMABUF_CREATE, &c);

	return r < 0 ? -errno : r;
}

/* create, print the result, close the buffer. */
static void create_check(int dev, const char *id, int memfd, uint64_t off,
			 uint64_t size, uint32_t flags)
{
	int r = create(dev, memfd, off, size, flags);

	conf_neg(id, r);
	if (r >= 0)
		close(r);
}

struct list {
	struct udmabuf_create_list head;
	struct udmabuf_create_item items[1025];
};

static void list_check(int dev, const char *id, struct list *l)
{
	int r = ioctl(dev, UDMABUF_CREATE_LIST, l);

	conf_sys(id, r);
	if (r >= 0)
		close(r);
}

static void create_checks(int dev)
{
	int mfd = conf_memfd(4 * PAGE, SEAL_OK);
	int r;

	if (mfd < 0) {
		conf_line("udmabuf.create.basic", "setup:%s", conf_errname(-mfd));
		return;
	}
	r = create(dev, mfd, 0, 4 * PAGE, UDMABUF_FLAGS_CLOEXEC);
	conf_neg("udmabuf.create.basic", r);
	if (r >= 0) {
		conf_line("udmabuf.create.ret_is_fd", "%s", fcntl(r, F_GETFD) >= 0 ? "yes" : "no");
		conf_line("udmabuf.create.cloexec", "%d", conf_cloexec(r));
		close(r);
	}
	r = create(dev, mfd, 0, 4 * PAGE, 0);
	if (r >= 0) {
		conf_line("udmabuf.create.no_cloexec", "%d", conf_cloexec(r));
		close(r);
	} else {
		conf_neg("udmabuf.create.no_cloexec", r);
	}
	create_check(dev, "udmabuf.create.flags_unknown", mfd, 0, PAGE, 0x2);
	create_check(dev, "udmabuf.create.flags_all", mfd, 0, PAGE, ~0u);
	create_check(dev, "udmabuf.create.offset_page", mfd, PAGE, 3 * PAGE, 0);
	create_check(dev, "udmabuf.create.offset_unaligned", mfd, PAGE / 2, PAGE, 0);
	create_check(dev, "udmabuf.create.size_unaligned", mfd, 0, PAGE / 2, 0);
	create_check(dev, "udmabuf.create.size0", mfd, 0, 0, 0);
	create_check(dev, "udmabuf.create.size_beyond", mfd, 0, 5 * PAGE, 0);
	create_check(dev, "udmabuf.create.offset_at_end", mfd, 4 * PAGE, PAGE, 0);
	create_check(dev, "udmabuf.create.offset_far", mfd, 1ull << 40, PAGE, 0);
	create_check(dev, "udmabuf.create.offset_wraps", mfd, ~0ull - PAGE + 1, PAGE, 0);
	create_check(dev, "udmabuf.create.size_limit_plus1", mfd, 0, (64ull << 20) + PAGE, 0);
	/* Size checks come before the fd: an invalid fd with a bad size is EINVAL. */
	create_check(dev, "udmabuf.create.order_size_before_fd", -1, 0, PAGE / 2, 0);
	close(mfd);

	int big = conf_memfd(64u << 20, SEAL_OK);
	if (big >= 0) {
		create_check(dev, "udmabuf.create.size_limit_exact", big, 0, 64ull << 20, 0);
		close(big);
	}

	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) == 0) {
		create_check(dev, "udmabuf.create.not_memfd_pipe", pfd[0], 0, PAGE, 0);
		close(pfd[0]);
		close(pfd[1]);
		create_check(dev, "udmabuf.create.closed_fd", pfd[0], 0, PAGE, 0);
	}
	int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (dn >= 0) {
		create_check(dev, "udmabuf.create.not_memfd_devnull", dn, 0, PAGE, 0);
		close(dn);
	}
	create_check(dev, "udmabuf.create.fd_huge", 0x7fffffff, 0, PAGE, 0);

	int nos = memfd_create("conf", MFD_CLOEXEC); /* no MFD_ALLOW_SEALING */
	if (nos >= 0 && ftruncate(nos, PAGE) == 0)
		create_check(dev, "udmabuf.create.memfd_no_sealing", nos, 0, PAGE, 0);
	if (nos >= 0)
		close(nos);
	int s;
	s = conf_memfd(PAGE, 0);
	if (s >= 0) {
		create_check(dev, "udmabuf.create.no_seal_shrink", s, 0, PAGE, 0);
		close(s);
	}
	s = conf_memfd(PAGE, F_SEAL_GROW);
	if (s >= 0) {
		create_check(dev, "udmabuf.create.seal_grow_only", s, 0, PAGE, 0);
		close(s);
	}
	s = conf_memfd(PAGE, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	if (s >= 0) {
		create_check(dev, "udmabuf.create.seal_shrink_grow_seal", s, 0, PAGE, 0);
		close(s);
	}
	s = conf_memfd(PAGE, F_SEAL_SHRINK | F_SEAL_WRITE);
	if (s >= 0) {
		create_check(dev, "udmabuf.create.seal_write", s, 0, PAGE, 0);
		close(s);
	}
	s = conf_memfd(PAGE, F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE);
	if (s >= 0) {
		create_check(dev, "udmabuf.create.seal_future_write", s, 0, PAGE, 0);
		close(s);
	}
	/* Sealing is checked only after the sizes: an unsealed memfd with a bad
	 * size is EINVAL from the size check, not the seal check (same errno),
	 * so probe the fd-before-seal order with a pipe and a good size. */

	int dummy = 0;
	conf_sys("udmabuf.create.efault", ioctl(dev, UDMABUF_CREATE, (void *)8));
	conf_sys("udmabuf.ioctl.unknown", ioctl(dev, _IOW('u', 0x44, struct udmabuf_create), &dummy));
	conf_sys("udmabuf.ioctl.create_wrong_size", ioctl(dev, _IOW('u', 0x42, uint64_t), &dummy));
	conf_sys("udmabuf.ioctl.create_as_iowr",
		 ioctl(dev, _IOWR('u', 0x42, struct udmabuf_create), &dummy));
}

static void list_checks(int dev)
{
	struct list *l = calloc(1, sizeof(*l));
	int mfd = conf_memfd(1024 * PAGE, SEAL_OK);
	int r;

	if (!l || mfd < 0) {
		free(l);
		return;
	}
	l->head.flags = UDMABUF_FLAGS_CLOEXEC;
	l->head.count = 2;
	l->items[0] = (struct udmabuf_create_item){ .memfd = (uint32_t)mfd, .offset = 0, .size = PAGE };
	l->items[1] = (struct udmabuf_create_item){ .memfd = (uint32_t)mfd, .offset = 8 * PAGE, .size = 2 * PAGE };
	r = ioctl(dev, UDMABUF_CREATE_LIST, l);
	conf_sys("udmabuf.list.basic", r);
	if (r >= 0) {
		conf_line("udmabuf.list.size", "%lld", (long long)lseek(r, 0, SEEK_END));
		conf_line("udmabuf.list.cloexec", "%d", conf_cloexec(r));
		/* The pages of the two ranges, in list order. */
		char *m = mmap(NULL, 1024 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
		char *u = mmap(NULL, 3 * PAGE, PROT_READ, MAP_SHARED, r, 0);
		if (m != MAP_FAILED && u != MAP_FAILED) {
			m[0] = 'a';
			m[8 * PAGE] = 'b';
			m[9 * PAGE + 7] = 'c';
			conf_line("udmabuf.list.content", "%s",
				  u[0] == 'a' && u[PAGE] == 'b' && u[2 * PAGE + 7] == 'c' ? "same" : "differs");
		} else {
			conf_line("udmabuf.list.content", "%s", conf_errname(errno));
		}
		if (m != MAP_FAILED)
			munmap(m, 1024 * PAGE);
		if (u != MAP_FAILED)
			munmap(u, 3 * PAGE);
		close(r);
	}
	l->head.count = 1;
	l->head.flags = 0;
	r = ioctl(dev, UDMABUF_CREATE_LIST, l);
	if (r >= 0) {
		conf_line("udmabuf.list.no_cloexec", "%d", conf_cloexec(r));
		close(r);
	} else {
		conf_line("udmabuf.list.no_cloexec", "%s", conf_errname(errno));
	}
	l->head.count = 0;
	list_check(dev, "udmabuf.list.count0", l);

	for (int i = 0; i < 1025; i++)
		l->items[i] = (struct udmabuf_create_item){ .memfd = (uint32_t)mfd,
							    .offset = (uint64_t)(i % 1024) * PAGE,
							    .size = PAGE };
	l->head.count = 1024;
	list_check(dev, "udmabuf.list.count1024", l);
	l->head.count = 1025;
	list_check(dev, "udmabuf.list.count1025", l);
	l->head.count = 0xffffffff;
	list_check(dev, "udmabuf.list.count_max", l);

	l->head.count = 2;
	l->items[1].offset = PAGE + 1;
	list_check(dev, "udmabuf.list.item_unaligned", l);
	l->items[1].offset = PAGE;
	l->items[1].memfd = (uint32_t)-1;
	list_check(dev, "udmabuf.list.second_bad_fd", l);
	l->items[1].memfd = (uint32_t)mfd;
	l->items[1].size = 64u << 20; /* sum = 64 MiB + 1 page */
	list_check(dev, "udmabuf.list.sum_over_limit", l);
	l->items[1].size = PAGE;
	l->items[1].offset = 1024 * PAGE;
	list_check(dev, "udmabuf.list.second_beyond", l);
	l->items[0].size = 0;
	l->items[1] = l->items[0];
	list_check(dev, "udmabuf.list.all_size0", l);
	free(l);

	/* Items read past the header: the list ends at a PROT_NONE page. */
	char *g = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g != MAP_FAILED) {
		mprotect(g + PAGE, PAGE, PROT_NONE);
		struct udmabuf_create_list *h = (void *)(g + PAGE - sizeof(*h));
		h->flags = 0;
		h->count = 1;
		conf_sys("udmabuf.list.items_efault", ioctl(dev, UDMABUF_CREATE_LIST, h));
		munmap(g, 2 * PAGE);
	}
	conf_sys("udmabuf.list.efault", ioctl(dev, UDMABUF_CREATE_LIST, (void *)8));
	close(mfd);
}

/* The buffer: its size, its mapping of the caller's pages, SYNC order. */
static void buffer_checks(int dev)
{
	int mfd = conf_memfd(4 * PAGE, SEAL_OK);
	int buf = mfd < 0 ? mfd : create(dev, mfd, PAGE, 2 * PAGE, UDMABUF_FLAGS_CLOEXEC);
	char v[128];
	struct stat st;

	if (buf < 0) {
		conf_line("udmabuf.buf.create", "%s", conf_errname(-buf));
		if (mfd >= 0)
			close(mfd);
		return;
	}
	conf_line("udmabuf.buf.size", "%lld", (long long)lseek(buf, 0, SEEK_END));
	conf_line("udmabuf.buf.fstat_size", "%lld", fstat(buf, &st) ? -1ll : (long long)st.st_size);
	conf_line("udmabuf.buf.accmode", "%d", fcntl(buf, F_GETFL) & O_ACCMODE);
	conf_line("udmabuf.buf.exp_name", "%s", conf_fdinfo(buf, "exp_name", v, sizeof(v)) ? "none" : v);
	conf_line("udmabuf.buf.fdinfo_size", "%s", conf_fdinfo(buf, "size", v, sizeof(v)) ? "none" : v);
	conf_line("udmabuf.buf.link", "%s", conf_fdlink(buf, v, sizeof(v)) ? "none" : v);

	char *m = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	char *u = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	conf_line("udmabuf.buf.mmap_shared", "%s", u == MAP_FAILED ? conf_errname(errno) : "ok");
	if (m != MAP_FAILED && u != MAP_FAILED) {
		m[PAGE] = 'x';
		m[3 * PAGE - 1] = 'y';
		conf_line("udmabuf.buf.sees_memfd", "%s", u[0] == 'x' && u[2 * PAGE - 1] == 'y' ? "same" : "differs");
		u[10] = 'z';
		conf_line("udmabuf.buf.memfd_sees", "%s", m[PAGE + 10] == 'z' ? "same" : "differs");
	}
	if (u != MAP_FAILED)
		munmap(u, 2 * PAGE);
	u = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, buf, 0);
	conf_line("udmabuf.buf.mmap_private", "%s", u == MAP_FAILED ? conf_errname(errno) : "ok");
	if (u != MAP_FAILED)
		munmap(u, PAGE);
	u = mmap(NULL, 3 * PAGE, PROT_READ, MAP_SHARED, buf, 0);
	conf_line("udmabuf.buf.mmap_beyond", "%s", u == MAP_FAILED ? conf_errname(errno) : "ok");
	if (u != MAP_FAILED)
		munmap(u, 3 * PAGE);

	struct dma_buf_sync s = { .flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW };
	conf_sys("udmabuf.buf.sync_end_first", ioctl(buf, DMA_BUF_IOCTL_SYNC, &s));
	s.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ;
	conf_sys("udmabuf.buf.sync_start", ioctl(buf, DMA_BUF_IOCTL_SYNC, &s));
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
	conf_sys("udmabuf.buf.sync_end", ioctl(buf, DMA_BUF_IOCTL_SYNC, &s));
	s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE;
	conf_sys("udmabuf.buf.sync_end_again", ioctl(buf, DMA_BUF_IOCTL_SYNC, &s));

	conf_sys("udmabuf.buf.memfd_shrink", ftruncate(mfd, PAGE));
	conf_sys("udmabuf.buf.memfd_add_write_seal", fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE));
	if (m != MAP_FAILED)
		munmap(m, 4 * PAGE);
	/* The buffer keeps the pages after the memfd is closed. */
	close(mfd);
	u = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, buf, 0);
	conf_line("udmabuf.buf.after_memfd_close", "%s",
		  u == MAP_FAILED ? conf_errname(errno) : u[0] == 'x' ? "same" : "differs");
	if (u != MAP_FAILED)
		munmap(u, 2 * PAGE);
	close(buf);
}

void conf_udmabuf(void)
{
	struct stat st;
	int dev;

	conf_line("udmabuf.dev.stat", "%s",
		  stat("/dev/udmabuf", &st) < 0 ? conf_errname(errno)
		  : S_ISCHR(st.st_mode)        ? "chr"
					       : "notchr");
	dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		conf_unavailable("udmabuf.create.basic", conf_errname(errno));
		return;
	}
	create_checks(dev);
	list_checks(dev);
	buffer_checks(dev);
	int ro = open("/dev/udmabuf", O_RDONLY | O_CLOEXEC);
	conf_sys("udmabuf.dev.open_rdonly", ro);
	if (ro >= 0) {
		int mfd = conf_memfd(PAGE, SEAL_OK);
		create_check(ro, "udmabuf.dev.create_from_rdonly", mfd, 0, PAGE, 0);
		if (mfd >= 0)
			close(mfd);
		close(ro);
	}
	close(dev);
}
