/* SPDX-License-Identifier: MIT */
/*
 * For test-dmabuf-run: linked statically, so no preload reaches it. Exits
 * 0 if /dev/dma_heap/system opens, 3 if it does not exist.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	return errno == ENOENT ? 3 : 4;
}
