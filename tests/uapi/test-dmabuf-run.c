/* SPDX-License-Identifier: MIT */
/*
 * The launcher: options, exit status, LD_PRELOAD, children, the leak
 * report, the trace and static binaries.
 */
#include <signal.h>
#include <sys/wait.h>

#include "uapi-common.h"
#include "uapi-run.h"

static char out[16384];

static void help_and_usage(void **state)
{
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "--help", NULL }, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "usage: dmabuf-run"));
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, NULL }, out, sizeof(out)), 2);
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "--leaks=sometimes", "/bin/true", NULL },
			     out, sizeof(out)), 2);
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "/nonexistent/prog", NULL }, out,
			     sizeof(out)), 127);
}

static void exit_status_and_children(void **state)
{
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "/bin/sh", "-c", "exit 7", NULL }, out,
			     sizeof(out)), 7);
	/* The shell's children see the emulated tree too. */
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "/bin/sh", "-c",
					 "/bin/ls /dev/dma_heap/ && test -e /dev/udmabuf", NULL },
			     out, sizeof(out)), 0);
	assert_non_null(strstr(out, "system"));
	assert_non_null(strstr(out, "linux,cma"));
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "--cma-heap=reserved", "/bin/ls",
					 "/dev/dma_heap/", NULL }, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "reserved"));
	assert_null(strstr(out, "linux,cma"));
}

static void preload_appended(void **state)
{
	char *old = getenv("LD_PRELOAD") ? strdup(getenv("LD_PRELOAD")) : NULL;

	setenv("LD_PRELOAD", old ? old : "", 1);
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "/bin/sh", "-c", "echo \"[$LD_PRELOAD]\"",
					 NULL }, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "libdmabuf-preload.so]"));
	if (old)
		assert_non_null(strstr(out, old));
	if (old)
		setenv("LD_PRELOAD", old, 1);
	else
		unsetenv("LD_PRELOAD");
	free(old);
}

static void leaks_reported(void **state)
{
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "--leaks", UAPI_LEAKER, "leak", NULL }, out,
			     sizeof(out)), 0);
	assert_non_null(strstr(out, "leak: fd"));
	assert_non_null(strstr(out, "dma-buf /memfd:dmabuf:system@"));
	assert_non_null(strstr(out, "sync file"));
	assert_non_null(strstr(out, "leak: mapping"));
	assert_non_null(strstr(out, "uapi-leaker"));
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "--leaks=fatal", UAPI_LEAKER, "leak", NULL },
			     out, sizeof(out)), 99);
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "--leaks=fatal", UAPI_LEAKER, "clean", NULL },
			     out, sizeof(out)), 0);
	assert_null(strstr(out, "leak:"));
}

static void strict_cpu_access(void **state)
{
	int st;

	/* Inside a bracket the mapping works... */
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "--strict", UAPI_LEAKER, "strict-ok", NULL },
			     out, sizeof(out)), 0);
	/* ...outside one it faults, and the message names the buffer. */
	st = uapi_run((char *[]){ DMABUF_RUN, "--strict", UAPI_LEAKER, "strict-bad", NULL }, out,
		 sizeof(out));
	/* The program's own SIGSEGV handler runs after the message: under
	 * ASan that is ASan's, which aborts. */
	assert_true(st == 128 + SIGSEGV || st == 128 + SIGABRT);
	assert_non_null(strstr(out, "CPU access to dma-buf"));
	assert_non_null(strstr(out, "frame-7"));
	/* Without --strict the same program runs. */
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, UAPI_LEAKER, "strict-bad", NULL }, out,
			     sizeof(out)), 0);
}

static void trace_lines(void **state)
{
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, "--trace", UAPI_LEAKER, "clean", NULL }, out,
			     sizeof(out)), 0);
	assert_non_null(strstr(out, "open"));
	assert_non_null(strstr(out, "\"/dev/dma_heap/system\""));
	assert_non_null(strstr(out, "ioctl("));
	assert_non_null(strstr(out, "<heap>, H/0 size 24"));
	assert_non_null(strstr(out, "close("));
}

/* A static binary is served by the seccomp supervisor (tests/uapi-static/
 * has the full suite): the heap opens. */
static void static_binary_emulated(void **state)
{
	assert_int_equal(uapi_run((char *[]){ DMABUF_RUN, UAPI_STATIC, NULL }, out, sizeof(out)), 0);
	assert_null(strstr(out, "is statically linked"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(help_and_usage),
		harness_test(exit_status_and_children),
		harness_test(preload_appended),
		harness_test(leaks_reported),
		harness_test(strict_cpu_access),
		harness_test(trace_lines),
		harness_test(static_binary_emulated),
	};

	uapi_clean_preload();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
