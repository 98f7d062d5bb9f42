/* SPDX-License-Identifier: MIT */
/*
 * A CMocka test with the test kit (docs/testing.md): the kit's fd fixture
 * as CMocka setup/teardown, a refusing exporter, fault injection and a
 * leak check per test.
 *
 *   cc test.c $(pkg-config --cflags --libs libdmabuf-test cmocka)
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dmabuf-test.h>

static struct dmabuf_ctx *quiet_ctx(void)
{
	struct dmabuf_ctx *ctx = NULL;

	assert_int_equal(dmabuf_ctx_new(NULL, &ctx), 0);
	/* Expected errors are not printed. */
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	return ctx;
}

static void no_leak(struct dmabuf_ctx *ctx)
{
	char report[1024];
	int leaks = dmabuf_test_ctx_destroy(ctx, report, sizeof(report));

	if (leaks)
		fail_msg("%d leak(s):\n%s", leaks, report);
}

/* A GPU that the exporter refuses: the importer sees the exporter's errno. */
static void refused_attach(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = NULL;
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_device *gpu = NULL;
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_test_exporter_new("cmocka", 0, &tx), 0);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, 65536, O_RDWR,
						     DMABUF_ALLOC_SYSTEM, &buf), 0);
	assert_int_equal(dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, NULL, &gpu), 0);
	assert_int_equal(dmabuf_test_exporter_refuse(tx, DMABUF_TEST_OP_ATTACH, EBUSY), 0);
	assert_int_equal(dmabuf_attach(buf, gpu, &att), -EBUSY);
	assert_int_equal(dmabuf_test_exporter_get_count(tx, DMABUF_TEST_OP_ATTACH), 1);
	assert_int_equal(dmabuf_device_destroy(gpu), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	no_leak(ctx);
	assert_int_equal(dmabuf_test_exporter_get_count(tx, DMABUF_TEST_OP_RELEASE), 1);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

/* The library's own system calls can fail on demand. */
static void export_without_fds(void **state)
{
	struct dmabuf_ctx *ctx = quiet_ctx();
	struct dmabuf_test_exporter *tx = NULL;
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_test_exporter_new("cmocka", 0, &tx), 0);
	assert_int_equal(dmabuf_fault_inject(DMABUF_FAULT_MEMFD_CREATE, 1, EMFILE), 0);
	assert_int_equal(dmabuf_test_exporter_export(tx, ctx, 4096, O_RDWR,
						     DMABUF_ALLOC_SYSTEM, &buf), -EMFILE);
	assert_null(buf);
	no_leak(ctx);
	assert_int_equal(dmabuf_test_exporter_destroy(tx), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(refused_attach, dmabuf_test_fd_setup,
						dmabuf_test_fd_teardown),
		cmocka_unit_test_setup_teardown(export_without_fds, dmabuf_test_fd_setup,
						dmabuf_test_fd_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
