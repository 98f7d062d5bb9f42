/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base.h"

static const char *prio_name(enum dmabuf_log_priority prio)
{
	switch (prio) {
	case DMABUF_LOG_ERROR: return "error";
	case DMABUF_LOG_WARNING: return "warning";
	case DMABUF_LOG_INFO: return "info";
	default: return "debug";
	}
}

void dmb_log(struct dmabuf_ctx *ctx, enum dmabuf_log_priority prio, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	/* Without a context (early failures) only errors reach stderr. */
	if (ctx ? prio > DMB_CTX_BASE(ctx)->log_priority : prio > DMABUF_LOG_ERROR)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ctx && DMB_CTX_BASE(ctx)->log_fn)
		DMB_CTX_BASE(ctx)->log_fn(DMB_CTX_BASE(ctx)->log_data, prio, msg);
	else
		fprintf(stderr, "libdmabuf[%d] %s: %s\n", (int)getpid(),
			prio_name(prio), msg);
}
