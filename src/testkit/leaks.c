/* SPDX-License-Identifier: MIT */
/* Leak assertions over dmabuf_ctx_for_each_live() (dmabuf-test.h). */
#include <errno.h>
#include <string.h>

#include "testkit.h"

/* How long a leak check waits for the context to settle. */
#define SETTLE_MS 5000

struct leak_walk {
	uint32_t mask;
	char *report;
	size_t size;
	int count;
};

static int one(void *data, const struct dmabuf_live_object *o)
{
	struct leak_walk *w = data;
	const char *name = o->buf_name[0] ? o->buf_name : "";

	if (!(w->mask & (1u << o->type)))
		return 0;
	w->count++;
	switch (o->type) {
	case DMABUF_LIVE_BUFFER:
		tk_report(w->report, w->size, "buffer %s%s%s%s (ino %llu, %llu bytes, %u reference(s)%s)",
			  o->name, *name ? " \"" : "", name, *name ? "\"" : "",
			  (unsigned long long)o->inode, (unsigned long long)o->size,
			  o->count, o->imported ? ", imported" : "");
		break;
	case DMABUF_LIVE_BUFFER_FILE:
		tk_report(w->report, w->size, "buffer %s%s%s%s (ino %llu, %llu bytes): no reference, but its file is still open (an fd or a mapping)",
			  o->name, *name ? " \"" : "", name, *name ? "\"" : "",
			  (unsigned long long)o->inode, (unsigned long long)o->size);
		break;
	case DMABUF_LIVE_DEVICE:
		tk_report(w->report, w->size, "device %s (%u attachment(s))", o->name, o->count);
		break;
	case DMABUF_LIVE_ATTACHMENT:
		tk_report(w->report, w->size, "attachment of device %s to buffer %s (ino %llu, %u mapping(s))",
			  o->device, o->name, (unsigned long long)o->inode, o->count);
		break;
	case DMABUF_LIVE_MAPPING:
		tk_report(w->report, w->size, "mapping of buffer %s (ino %llu, %llu bytes) for device %s",
			  o->name, (unsigned long long)o->inode,
			  (unsigned long long)o->size, o->device);
		break;
	default:
		tk_report(w->report, w->size, "object of type %d", (int)o->type);
		break;
	}
	return 0;
}

DMABUF_TEST_EXPORT int dmabuf_test_leaks(struct dmabuf_ctx *ctx, uint32_t mask,
					 char *report, size_t report_size)
{
	struct leak_walk w = { .mask = mask, .report = report, .size = report_size };
	int ret;

	if (!(mask & DMABUF_TEST_LEAKS_ALL))
		return -EINVAL;
	if (report && report_size)
		report[0] = '\0';
	ret = dmabuf_ctx_settle(ctx, SETTLE_MS);
	if (ret < 0)
		return ret;
	ret = dmabuf_ctx_for_each_live(ctx, one, &w);
	return ret < 0 ? ret : w.count;
}

DMABUF_TEST_EXPORT int dmabuf_test_ctx_destroy(struct dmabuf_ctx *ctx, char *report,
					       size_t report_size)
{
	int leaks;

	if (!ctx)
		return 0;
	leaks = dmabuf_test_leaks(ctx, DMABUF_TEST_LEAKS_ALL, report, report_size);
	if (leaks == -EINVAL)
		return leaks;
	/* A context that did not settle is still destroyed: the caller
	 * asked for it, and the report says why. */
	if (leaks < 0) {
		tk_report(report, report_size, "the context did not settle (%s)",
			  strerror(-leaks));
		leaks = 1;
	}
	dmabuf_ctx_destroy(ctx);
	return leaks;
}
