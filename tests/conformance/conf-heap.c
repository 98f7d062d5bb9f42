/* SPDX-License-Identifier: MIT */
/*
 * /dev/dma_heap: the directory, the system heap device and the ALLOC ioctl,
 * including the size-compatible argument copy (smaller and larger structs,
 * as tools/testing/selftests/dmabuf-heaps/ exercises) and the ioctl
 * numbers the kernel's table lookup accepts or refuses.
 */
#include "conf.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/dma-heap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void heap_dir(void)
{
	struct stat st;
	char *names[32];
	char list[512] = "";
	size_t n = 0;
	DIR *d;

	if (stat("/dev/dma_heap", &st) < 0) {
		conf_line("heap.dir.stat", "%s", conf_errname(errno));
		return;
	}
	conf_line("heap.dir.stat", "%s", S_ISDIR(st.st_mode) ? "dir" : "notdir");
	d = opendir("/dev/dma_heap");
	if (!d) {
		conf_line("heap.dir.list", "%s", conf_errname(errno));
		return;
	}
	for (struct dirent *e; (e = readdir(d)) && n < 32;)
		if (e->d_name[0] != '.')
			names[n++] = strdup(e->d_name);
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_str);
	for (size_t i = 0; i < n; i++) {
		strncat(list, i ? "," : "", sizeof(list) - strlen(list) - 1);
		strncat(list, names[i], sizeof(list) - strlen(list) - 1);
		free(names[i]);
	}
	conf_line("heap.dir.list", "%s", list);
	conf_line("heap.system.stat", "%s",
		  stat("/dev/dma_heap/system", &st) < 0 ? conf_errname(errno)
		  : S_ISCHR(st.st_mode)                 ? "chr"
							: "notchr");
	conf_sys("heap.system.access_rw", access("/dev/dma_heap/system", R_OK | W_OK));
	int fd = open("/dev/dma_heap/linux,cma", O_RDWR | O_CLOEXEC);
	conf_sys("heap.cma.open", fd);
	if (fd >= 0)
		close(fd);
	fd = open("/dev/dma_heap/nonexistent", O_RDWR | O_CLOEXEC);
	conf_sys("heap.unknown.open", fd);
	if (fd >= 0)
		close(fd);
}

/* ALLOC with the given struct; prints rc and closes the fd it got. */
static void alloc_check(int heap, const char *id, struct dma_heap_allocation_data d)
{
	int r = ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d);

	conf_sys(id, r);
	if (r >= 0 && (int)d.fd > 0)
		close((int)d.fd);
}

static void heap_alloc(int heap)
{
	struct dma_heap_allocation_data d = { .len = 1 << 20, .fd_flags = O_RDWR | O_CLOEXEC };
	int r = ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d);

	conf_sys("heap.alloc.basic", r);
	if (r >= 0) {
		conf_line("heap.alloc.ret", "%d", r);
		conf_line("heap.alloc.fd_valid", "%s", fcntl((int)d.fd, F_GETFD) >= 0 ? "yes" : "no");
		conf_line("heap.alloc.cloexec", "%d", conf_cloexec((int)d.fd));
		conf_line("heap.alloc.size", "%lld", (long long)lseek((int)d.fd, 0, SEEK_END));
		close((int)d.fd);
	}
	d = (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDWR };
	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) >= 0) {
		conf_line("heap.alloc.no_cloexec", "%d", conf_cloexec((int)d.fd));
		close((int)d.fd);
	} else {
		conf_line("heap.alloc.no_cloexec", "%s", conf_errname(errno));
	}
	d = (struct dma_heap_allocation_data){ .len = 100, .fd_flags = O_RDWR | O_CLOEXEC };
	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) >= 0) {
		conf_line("heap.alloc.len_rounded", "%lld", (long long)lseek((int)d.fd, 0, SEEK_END));
		close((int)d.fd);
	} else {
		conf_line("heap.alloc.len_rounded", "%s", conf_errname(errno));
	}
	alloc_check(heap, "heap.alloc.len0",
		    (struct dma_heap_allocation_data){ .len = 0, .fd_flags = O_RDWR });
	alloc_check(heap, "heap.alloc.len_wraps",
		    (struct dma_heap_allocation_data){ .len = ~0ull, .fd_flags = O_RDWR });
	alloc_check(heap, "heap.alloc.fd_nonzero",
		    (struct dma_heap_allocation_data){ .len = PAGE, .fd = 5, .fd_flags = O_RDWR });
	alloc_check(heap, "heap.alloc.fd_flags_nonblock",
		    (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDWR | O_NONBLOCK });
	alloc_check(heap, "heap.alloc.fd_flags_inverse",
		    (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = ~(O_RDWR | O_CLOEXEC) });
	alloc_check(heap, "heap.alloc.heap_flags",
		    (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDWR, .heap_flags = 0x111111 });
	alloc_check(heap, "heap.alloc.heap_flags_bit63",
		    (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDWR, .heap_flags = 1ull << 63 });
	alloc_check(heap, "heap.alloc.accmode3",
		    (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_ACCMODE });

	/* fd_flags O_RDONLY / O_WRONLY give files of that access mode. */
	d = (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDONLY | O_CLOEXEC };
	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) >= 0) {
		int fl = fcntl((int)d.fd, F_GETFL);
		conf_line("heap.alloc.rdonly_accmode", "%d", fl & O_ACCMODE);
		void *p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, (int)d.fd, 0);
		conf_line("heap.alloc.rdonly_mmap_read", "%s", p == MAP_FAILED ? conf_errname(errno) : "ok");
		if (p != MAP_FAILED)
			munmap(p, PAGE);
		p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, (int)d.fd, 0);
		conf_line("heap.alloc.rdonly_mmap_write", "%s", p == MAP_FAILED ? conf_errname(errno) : "ok");
		if (p != MAP_FAILED)
			munmap(p, PAGE);
		close((int)d.fd);
	} else {
		conf_line("heap.alloc.rdonly_accmode", "%s", conf_errname(errno));
	}
	d = (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_WRONLY | O_CLOEXEC };
	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) >= 0) {
		conf_line("heap.alloc.wronly_accmode", "%d", fcntl((int)d.fd, F_GETFL) & O_ACCMODE);
		void *p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, (int)d.fd, 0);
		conf_line("heap.alloc.wronly_mmap_read", "%s", p == MAP_FAILED ? conf_errname(errno) : "ok");
		if (p != MAP_FAILED)
			munmap(p, PAGE);
		close((int)d.fd);
	} else {
		conf_line("heap.alloc.wronly_accmode", "%s", conf_errname(errno));
	}
}

/* Buffers come zeroed even when freed ones were dirty (selftest: zeroed). */
static void heap_zeroed(void)
{
	const size_t sz = 64 * 1024;
	int fds[8], dirty_ok = 1, zero = 1;

	for (int i = 0; i < 8; i++) {
		fds[i] = conf_heap_alloc(sz, O_RDWR | O_CLOEXEC);
		char *p = fds[i] < 0 ? MAP_FAILED
				     : mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
		if (p == MAP_FAILED) {
			dirty_ok = 0;
			continue;
		}
		memset(p, 0xa5, sz);
		munmap(p, sz);
	}
	for (int i = 0; i < 8; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (int i = 0; i < 8; i++) {
		int fd = conf_heap_alloc(sz, O_RDWR | O_CLOEXEC);
		unsigned char *p = fd < 0 ? MAP_FAILED : mmap(NULL, sz, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			zero = 0;
		} else {
			for (size_t j = 0; j < sz; j++)
				if (p[j])
					zero = 0;
			munmap(p, sz);
		}
		if (fd >= 0)
			close(fd);
	}
	conf_line("heap.alloc.zeroed", "%s", !dirty_ok ? "setup-failed" : zero ? "zeroed" : "dirty");
}

/* The kernel finds the command by _IOC_NR only and copies
 * min(user size, its size), zero-filling the rest. */
static void heap_compat(int heap)
{
	struct {
		uint64_t len;
		uint32_t fd, fd_flags;
	} small = { .len = 1 << 20, .fd_flags = O_RDWR | O_CLOEXEC };
	struct {
		uint64_t len;
		uint32_t fd, fd_flags;
		uint64_t heap_flags, g1, g2, g3;
	} big = { .len = 1 << 20, .fd_flags = O_RDWR | O_CLOEXEC,
		  .g1 = 0xffffffff, .g2 = 0x88888888, .g3 = 0x11111111 };
	struct dma_heap_allocation_data d = { .len = PAGE, .fd_flags = O_RDWR | O_CLOEXEC };
	int r;

	r = ioctl(heap, _IOWR(DMA_HEAP_IOC_MAGIC, 0x0, typeof(small)), &small);
	conf_sys("heap.compat.smaller", r);
	if (r >= 0 && small.fd) {
		conf_line("heap.compat.smaller_size", "%lld", (long long)lseek((int)small.fd, 0, SEEK_END));
		close((int)small.fd);
	}
	r = ioctl(heap, _IOWR(DMA_HEAP_IOC_MAGIC, 0x0, typeof(big)), &big);
	conf_sys("heap.compat.larger", r);
	if (r >= 0 && big.fd) {
		conf_line("heap.compat.larger_tail_kept", "%s",
			  big.g1 == 0xffffffff && big.g2 == 0x88888888 ? "yes" : "no");
		close((int)big.fd);
	}
	/* Only the len (an _IOWR of 8 bytes): fd_flags read as 0, so the
	 * file is O_RDONLY, and the fd is not copied back. It is the lowest
	 * free fd; find it there and close it. */
	uint64_t only_len[1] = { PAGE };
	int lowest = dup(0);
	char link[64];
	if (lowest >= 0)
		close(lowest);
	r = ioctl(heap, _IOWR(DMA_HEAP_IOC_MAGIC, 0x0, uint64_t), only_len);
	conf_sys("heap.compat.len_only", r);
	if (r >= 0 && lowest >= 0 && conf_fdlink(lowest, link, sizeof(link)) == 0) {
		conf_line("heap.compat.len_only_fd", "%s", link);
		conf_line("heap.compat.len_only_accmode", "%d", fcntl(lowest, F_GETFL) & O_ACCMODE);
		if (!strncmp(link, "/dmabuf", 7))
			close(lowest);
	}
	/* No argument at all: len reads as 0. */
	r = ioctl(heap, _IO(DMA_HEAP_IOC_MAGIC, 0x0));
	conf_sys("heap.ioctl.nr0_noarg", r);
	/* A different type byte with nr 0 still reaches ALLOC. */
	r = ioctl(heap, _IOWR('Z', 0x0, struct dma_heap_allocation_data), &d);
	conf_sys("heap.ioctl.nr0_other_type", r);
	if (r >= 0 && d.fd)
		close((int)d.fd);
	d = (struct dma_heap_allocation_data){ .len = PAGE, .fd_flags = O_RDWR | O_CLOEXEC };
	r = ioctl(heap, _IOWR(DMA_HEAP_IOC_MAGIC, 0x1, struct dma_heap_allocation_data), &d);
	conf_sys("heap.ioctl.nr1", r);
	r = ioctl(heap, _IOWR(DMA_HEAP_IOC_MAGIC, 0x7f, struct dma_heap_allocation_data), &d);
	conf_sys("heap.ioctl.nr127", r);
	r = ioctl(heap, TCGETS, &d);
	conf_sys("heap.ioctl.tcgets", r);
	r = ioctl(heap, DMA_HEAP_IOCTL_ALLOC, (void *)8);
	conf_sys("heap.ioctl.efault", r);
	r = ioctl(heap, DMA_HEAP_IOCTL_ALLOC, NULL);
	conf_sys("heap.ioctl.efault_null", r);
}

static void heap_fileops(int heap)
{
	char c;
	void *p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, heap, 0);

	conf_line("heap.dev.mmap", "%s", p == MAP_FAILED ? conf_errname(errno) : "ok");
	if (p != MAP_FAILED)
		munmap(p, PAGE);
	conf_sys("heap.dev.read", read(heap, &c, 1));
	conf_sys("heap.dev.write", write(heap, &c, 1));
	conf_sys("heap.dev.lseek", lseek(heap, 0, SEEK_SET));
	int fd = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	conf_sys("heap.dev.open_rdonly", fd);
	if (fd >= 0) {
		struct dma_heap_allocation_data d = { .len = PAGE, .fd_flags = O_RDWR | O_CLOEXEC };
		int r = ioctl(fd, DMA_HEAP_IOCTL_ALLOC, &d);
		conf_sys("heap.dev.alloc_from_rdonly", r);
		if (r >= 0)
			close((int)d.fd);
		close(fd);
	}
	/* ALLOC on fds that are not a heap. */
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) == 0) {
		struct dma_heap_allocation_data d = { .len = PAGE, .fd_flags = O_RDWR };
		conf_sys("heap.alloc.on_pipe", ioctl(pfd[0], DMA_HEAP_IOCTL_ALLOC, &d));
		close(pfd[0]);
		conf_sys("heap.alloc.on_closed_fd", ioctl(pfd[0], DMA_HEAP_IOCTL_ALLOC, &d));
		close(pfd[1]);
	}
}

void conf_heaps(void)
{
	heap_dir();
	int heap = conf_heap_open("system");
	if (heap < 0) {
		conf_unavailable("heap.alloc.basic", "no-system-heap");
		return;
	}
	heap_alloc(heap);
	heap_zeroed();
	heap_compat(heap);
	heap_fileops(heap);
	close(heap);
}
