/* SPDX-License-Identifier: MIT */
/*
 * Logging. A message goes to its context's handler; without one (or without
 * a context: a double put, a stale pointer) to the process-wide handler of
 * dmabuf_set_log_handler(), else to stderr. DMABUF_DEBUG sets the default
 * level (error, warning, info, debug or 3..7) and, with "protocol", asks
 * for a trace of every wire message.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"

static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	dmabuf_log_fn fn;
	void *data;
	enum dmabuf_log_priority priority; /* 0: the environment's default */
} global;

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static struct dmb_log_env env = { .priority = DMABUF_LOG_ERROR };

static const char *prio_name(enum dmabuf_log_priority prio)
{
	switch (prio) {
	case DMABUF_LOG_ERROR: return "error";
	case DMABUF_LOG_WARNING: return "warning";
	case DMABUF_LOG_INFO: return "info";
	default: return "debug";
	}
}

void dmb_log_env_parse(const char *s, struct dmb_log_env *out)
{
	static const struct { const char *name; enum dmabuf_log_priority prio; } levels[] = {
		{ "error", DMABUF_LOG_ERROR }, { "warning", DMABUF_LOG_WARNING },
		{ "info", DMABUF_LOG_INFO }, { "debug", DMABUF_LOG_DEBUG },
	};
	char buf[128], *tok, *save = NULL;

	*out = (struct dmb_log_env){ .priority = DMABUF_LOG_ERROR };
	if (!s)
		return;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (!strcmp(tok, "protocol")) {
			out->protocol = true;
			continue;
		}
		if (!strcmp(tok, "1") || !strcmp(tok, "all")) {
			out->priority = DMABUF_LOG_DEBUG;
			out->protocol = true;
			continue;
		}
		for (size_t i = 0; i < DMB_ARRAY_SIZE(levels); i++)
			if (!strcmp(tok, levels[i].name))
				out->priority = levels[i].prio;
		if (tok[0] >= '3' && tok[0] <= '7' && !tok[1])
			out->priority = (enum dmabuf_log_priority)(tok[0] - '0');
	}
}

static void env_load(void)
{
	dmb_log_env_parse(getenv("DMABUF_DEBUG"), &env);
}

const struct dmb_log_env *dmb_log_env(void)
{
	pthread_once(&env_once, env_load);
	return &env;
}

void dmb_log_fork_prepare(void)
{
	pthread_mutex_lock(&global_lock);
}

void dmb_log_fork_parent(void)
{
	pthread_mutex_unlock(&global_lock);
}

void dmb_log_fork_child(void)
{
	pthread_mutex_init(&global_lock, NULL);
}

DMABUF_EXPORT void dmabuf_set_log_handler(dmabuf_log_fn fn, void *data,
					  enum dmabuf_log_priority priority)
{
	pthread_mutex_lock(&global_lock);
	global.fn = fn;
	global.data = data;
	global.priority = priority;
	pthread_mutex_unlock(&global_lock);
}

void dmb_log(struct dmabuf_ctx *ctx, enum dmabuf_log_priority prio, const char *fmt, ...)
{
	enum dmabuf_log_priority max;
	dmabuf_log_fn fn = NULL;
	void *data = NULL;
	char msg[512];
	va_list ap;

	if (ctx && DMB_CTX_BASE(ctx)->log_fn) {
		max = DMB_CTX_BASE(ctx)->log_priority;
		fn = DMB_CTX_BASE(ctx)->log_fn;
		data = DMB_CTX_BASE(ctx)->log_data;
	} else {
		pthread_mutex_lock(&global_lock);
		fn = global.fn;
		data = global.data;
		max = global.priority ? global.priority : dmb_log_env()->priority;
		pthread_mutex_unlock(&global_lock);
		/* A context's own level still applies to its messages. */
		if (ctx)
			max = DMB_CTX_BASE(ctx)->log_priority;
	}
	if (prio > max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (fn)
		fn(data, prio, msg);
	else
		fprintf(stderr, "libdmabuf[%d] %s: %s\n", (int)getpid(),
			prio_name(prio), msg);
}
