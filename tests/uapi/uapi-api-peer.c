/* SPDX-License-Identifier: MIT */
/*
 * A process that uses libdmabuf's own API, for test-uapi-share: it receives
 * a buffer allocated through /dev/dma_heap by a uapi program, imports it
 * with dmabuf_get(), and reads and writes it with a stand-in device's DMA.
 *
 * usage: uapi-api-peer SOCKET-FD; exits 0 when every step worked.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dmabuf.h>

#include "uapi-fdpass.h"

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "uapi-api-peer: %s:%d: %s\n", __FILE__,     \
				__LINE__, #cond);                              \
			exit(1);                                               \
		}                                                              \
	} while (0)

int main(int argc, char **argv)
{
	struct dmabuf_device_info info = { .struct_size = sizeof(info), .name = "peer-dev", .flags = DMABUF_DEVICE_IOMMU };
	const struct dmabuf_dma_entry *e;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_device *dev;
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	char px[4];
	int sock, fd;

	CHECK(argc == 2);
	sock = atoi(argv[1]);
	CHECK(dmabuf_ctx_new(NULL, &ctx) == 0);
	fd = uapi_recv_fd(sock); /* from a uapi program */
	CHECK(fd >= 0);
	CHECK(dmabuf_get(ctx, fd, &buf) == 0);
	CHECK(dmabuf_get_size(buf) == 8192);
	CHECK(dmabuf_device_new(ctx, &info, &dev) == 0);
	CHECK(dmabuf_attach(buf, dev, &att) == 0);
	CHECK(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == 0);
	e = dmabuf_sg_table_get_dma_entries(sgt);
	CHECK(dmabuf_dma_read(dev, e[0].dma_addr, px, 4) == 0);
	CHECK(!memcmp(px, "uapi", 4));
	CHECK(dmabuf_dma_write(dev, e[0].dma_addr + 4, "-dma", 4) == 0);
	CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
	CHECK(dmabuf_detach(buf, att) == 0);
	CHECK(dmabuf_device_destroy(dev) == 0);
	CHECK(dmabuf_put(buf) == 0);
	close(fd);
	CHECK(write(sock, "k", 1) == 1);
	dmabuf_ctx_destroy(ctx);
	close(sock);
	return 0;
}
