/* SPDX-License-Identifier: MIT */
/*
 * A plain C test with the test kit (docs/testing.md): no test framework,
 * exit status 0 on success. It checks that an importer's failed map is
 * undone and that nothing leaks: no fd, no buffer, no device.
 *
 *   cc test.c $(pkg-config --cflags --libs libdmabuf-test)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <dmabuf-test.h>

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n",         \
				__FILE__, __LINE__, #cond);                  \
			return 1;                                            \
		}                                                            \
	} while (0)

int main(void)
{
	struct dmabuf_test_exporter *tx = NULL;
	struct dmabuf_test_fds *fds = NULL;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf_device *display = NULL;
	struct dmabuf_ctx *ctx = NULL;
	struct dmabuf *buf = NULL;
	char report[1024];
	int fd;

	CHECK(dmabuf_test_fds_begin(&fds) == 0);
	CHECK(dmabuf_ctx_new(NULL, &ctx) == 0);
	CHECK(dmabuf_test_exporter_new("plain", 0, &tx) == 0);
	CHECK(dmabuf_test_exporter_export(tx, ctx, 1 << 20, O_RDWR,
					  DMABUF_ALLOC_DEFERRED, &buf) == 0);
	CHECK(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_DISPLAY, NULL, &display) == 0);
	CHECK(dmabuf_attach(buf, display, &att) == 0);

	/* The exporter fails the first map as a driver out of memory would. */
	CHECK(dmabuf_test_exporter_fail_nth(tx, DMABUF_TEST_OP_MAP, 1, ENOMEM) == 0);
	CHECK(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) == -ENOMEM);
	CHECK(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) == 0);
	CHECK(dmabuf_test_exporter_get_count(tx, DMABUF_TEST_OP_MAP) == 2);
	CHECK(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE) == 0);
	CHECK(dmabuf_detach(buf, att) == 0);
	CHECK(dmabuf_device_destroy(display) == 0);

	/* The last fd goes, then the release runs: settle instead of a loop. */
	fd = dmabuf_fd(buf, O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(dmabuf_put(buf) == 0);
	close(fd);
	CHECK(dmabuf_ctx_settle(ctx, 5000) >= 0);
	CHECK(dmabuf_test_exporter_get_count(tx, DMABUF_TEST_OP_RELEASE) == 1);

	if (dmabuf_test_ctx_destroy(ctx, report, sizeof(report)) != 0) {
		fprintf(stderr, "leaked:\n%s", report);
		return 1;
	}
	CHECK(dmabuf_test_exporter_destroy(tx) == 0);
	if (dmabuf_test_fds_end(fds, NULL, 0, report, sizeof(report)) != 0) {
		fprintf(stderr, "fd leak:\n%s", report);
		return 1;
	}
	puts("testkit-plain: ok");
	return 0;
}
