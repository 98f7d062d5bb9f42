/* SPDX-License-Identifier: MIT */
/*
 * Logging and leaks: the process-wide handler (context-less messages and
 * contexts without a handler), DMABUF_DEBUG's parser, the leak count of
 * dmabuf_ctx_destroy() and DMABUF_LEAKS=fatal.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exporter.h"
#include "base.h"

#define MiB (1024ull * 1024)

struct seen {
	int count;
	enum dmabuf_log_priority prio;
	char last[512];
};

static void record(void *data, enum dmabuf_log_priority prio, const char *msg)
{
	struct seen *s = data;

	s->count++;
	s->prio = prio;
	snprintf(s->last, sizeof(s->last), "%s", msg);
}

static void contextless_errors_reach_the_process_handler(void **state)
{
	struct seen s = { 0 };
	long bogus[16] = { 0 };

	dmabuf_set_log_handler(record, &s, 0);
	assert_int_equal(dmabuf_ctx_destroy((struct dmabuf_ctx *)bogus), -EINVAL);
	assert_int_equal(s.count, 1);
	assert_int_equal(s.prio, DMABUF_LOG_ERROR);
	assert_non_null(strstr(s.last, "not a live context"));
	/* a level below error drops it */
	dmabuf_set_log_handler(record, &s, (enum dmabuf_log_priority)1);
	assert_int_equal(dmabuf_ctx_destroy((struct dmabuf_ctx *)bogus), -EINVAL);
	assert_int_equal(s.count, 1);
	dmabuf_set_log_handler(NULL, NULL, 0);
}

static void a_context_without_handler_uses_the_process_one(void **state)
{
	struct dmabuf_ctx_config cfg = { .log_priority = DMABUF_LOG_DEBUG };
	struct test_exporter tx = { 0 };
	struct seen s = { 0 }, own = { 0 };
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_ctx *ctx = NULL;
	struct dmabuf *buf;
	long bogus[16] = { 0 };

	dmabuf_set_log_handler(record, &s, DMABUF_LOG_ERROR);
	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	buf = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(dmabuf_attach(buf, (struct dmabuf_device *)bogus, &att), -EINVAL);
	assert_true(s.count >= 1);
	assert_non_null(strstr(s.last, "not a live device"));
	/* its own handler takes over */
	s.count = 0;
	dmabuf_ctx_set_log(ctx, record, &own, DMABUF_LOG_ERROR);
	assert_int_equal(dmabuf_attach(buf, (struct dmabuf_device *)bogus, &att), -EINVAL);
	assert_int_equal(s.count, 0);
	assert_int_equal(own.count, 1);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(dmabuf_ctx_destroy(ctx), 0);
	dmabuf_set_log_handler(NULL, NULL, 0);
}

static void debug_variable_is_parsed(void **state)
{
	struct dmb_log_env e;

	dmb_log_env_parse(NULL, &e);
	assert_int_equal(e.priority, DMABUF_LOG_ERROR);
	assert_false(e.protocol);
	dmb_log_env_parse("debug,protocol", &e);
	assert_int_equal(e.priority, DMABUF_LOG_DEBUG);
	assert_true(e.protocol);
	dmb_log_env_parse("4", &e);
	assert_int_equal(e.priority, DMABUF_LOG_WARNING);
	assert_false(e.protocol);
	dmb_log_env_parse("protocol", &e);
	assert_int_equal(e.priority, DMABUF_LOG_ERROR);
	assert_true(e.protocol);
	dmb_log_env_parse("all", &e);
	assert_int_equal(e.priority, DMABUF_LOG_DEBUG);
	assert_true(e.protocol);
	dmb_log_env_parse("info nonsense", &e);
	assert_int_equal(e.priority, DMABUF_LOG_INFO);
}

static void destroy_counts_leaked_buffers_and_devices(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };

	tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	tx_device(ctx, "forgotten", 64, 0, 0);
	assert_int_equal(dmabuf_ctx_destroy(ctx), 2);
	assert_int_equal(tx.release, 1); /* released anyway */
	ctx = tx_ctx_new(0);
	assert_int_equal(dmabuf_ctx_destroy(ctx), 0);
}

static void leaks_fatal_aborts(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct test_exporter tx = { 0 };
		struct dmabuf_ctx *ctx = tx_ctx_new(0);

		setenv("DMABUF_LEAKS", "fatal", 1);
		tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
		dmabuf_ctx_destroy(ctx);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	/* and a clean context does not abort */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct dmabuf_ctx *ctx = tx_ctx_new(0);

		setenv("DMABUF_LEAKS", "fatal", 1);
		_exit(dmabuf_ctx_destroy(ctx) == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(contextless_errors_reach_the_process_handler),
		harness_test(a_context_without_handler_uses_the_process_one),
		harness_test(debug_variable_is_parsed),
		harness_test(destroy_counts_leaked_buffers_and_devices),
		harness_test(leaks_fatal_aborts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
