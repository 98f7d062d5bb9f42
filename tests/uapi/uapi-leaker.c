/* SPDX-License-Identifier: MIT */
/*
 * For test-dmabuf-run: a uapi program that leaks. "leak" allocates a heap
 * buffer, maps it and exports a sync file, and exits holding all three;
 * "clean" does the same and releases everything. The exit status is 0.
 * "strict-ok" writes the mapping inside a SYNC bracket, "strict-bad"
 * outside one (which faults under --strict).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

int main(int argc, char **argv)
{
	struct dma_heap_allocation_data d = { .len = 4096, .fd_flags = O_RDWR | O_CLOEXEC };
	struct dma_buf_export_sync_file e = { .flags = DMA_BUF_SYNC_RW };
	int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	void *p;

	if (argc != 2 || heap < 0 || ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &d) < 0)
		return 10;
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, (int)d.fd, 0);
	if (p == MAP_FAILED || ioctl((int)d.fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &e) < 0)
		return 11;
	close(heap);
	if (!strcmp(argv[1], "strict-ok") || !strcmp(argv[1], "strict-bad")) {
		struct dma_buf_sync s = { DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE };

		ioctl((int)d.fd, DMA_BUF_SET_NAME_B, "frame-7");
		if (!strcmp(argv[1], "strict-ok") && ioctl((int)d.fd, DMA_BUF_IOCTL_SYNC, &s))
			return 12;
		*(volatile char *)p = 'x';
		s.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE;
		if (!strcmp(argv[1], "strict-ok") && ioctl((int)d.fd, DMA_BUF_IOCTL_SYNC, &s))
			return 13;
	}
	if (strcmp(argv[1], "leak")) {
		munmap(p, 4096);
		close(e.fd);
		close((int)d.fd);
	}
	return 0;
}
