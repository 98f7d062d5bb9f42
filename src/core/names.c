/* SPDX-License-Identifier: MIT */
/*
 * A buffer's names, out of line (issue 11: memory per live buffer).
 *
 * The exporter's name is the same for every buffer of an exporter: the
 * context keeps one refcounted copy of each (a tree by string) and a buffer
 * points to it. The buffer's own name is rare: it is allocated when
 * DMA_BUF_SET_NAME sets it, as the kernel's dma_buf_set_name() allocates
 * dmabuf->name. Both are read as plain strings (buf->exp_name,
 * dmb_buf_name()): fdinfo, DMA_BUF_GET_NAME and dmabuf_get_info() see the
 * same bytes as before.
 */
#include <stdlib.h>
#include <string.h>

#include "private.h"

struct dmb_name {
	RB_ENTRY(dmb_name) node;
	unsigned long refs;
	char str[DMABUF_NAME_LEN];
};

static int name_cmp(const struct dmb_name *a, const struct dmb_name *b)
{
	return strcmp(a->str, b->str);
}

RB_GENERATE_STATIC(dmb_name_tree, dmb_name, node, name_cmp)

/* The entry of an interned string; "" is no entry (the literal of a
 * buffer whose exporter name is not known yet). */
static struct dmb_name *entry_of(const char *str)
{
	return *str ? (struct dmb_name *)(str - offsetof(struct dmb_name, str)) : NULL;
}

static void name_unref(struct dmabuf_ctx *ctx, const char *str)
{
	struct dmb_name *n = str ? entry_of(str) : NULL;

	if (n && --n->refs == 0) {
		RB_REMOVE(dmb_name_tree, &ctx->names, n);
		free(n);
	}
}

int dmb_buf_set_exp_name(struct dmabuf *buf, const char *exp_name)
{
	struct dmabuf_ctx *ctx = buf->ctx;
	struct dmb_name key, *n;
	size_t len = strnlen(exp_name, DMABUF_NAME_LEN - 1);

	dmb_assert_locked(ctx);
	memcpy(key.str, exp_name, len);
	key.str[len] = '\0';
	if (!len) {
		name_unref(ctx, buf->exp_name);
		buf->exp_name = "";
		return 0;
	}
	n = RB_FIND(dmb_name_tree, &ctx->names, &key);
	if (!n) {
		n = malloc(sizeof(*n));
		if (!n)
			return -ENOMEM;
		memcpy(n->str, key.str, len + 1);
		n->refs = 0;
		RB_INSERT(dmb_name_tree, &ctx->names, n);
	}
	n->refs++;
	/* After the new reference: the old name may be the same entry. */
	name_unref(ctx, buf->exp_name);
	buf->exp_name = n->str;
	return 0;
}

int dmb_buf_set_name(struct dmabuf *buf, const char *name)
{
	char *copy = NULL;

	dmb_assert_locked(buf->ctx);
	if (name) {
		copy = strndup(name, DMABUF_NAME_LEN - 1);
		if (!copy)
			return -ENOMEM;
	}
	free(buf->name);
	buf->name = copy;
	return 0;
}

void dmb_buf_extras_free(struct dmabuf *buf)
{
	name_unref(buf->ctx, buf->exp_name);
	buf->exp_name = "";
	free(buf->name);
	buf->name = NULL;
	if (buf->cpu) {
		/* dmb_cpu_access_fini() undid what it holds at release; a
		 * buffer that never got that far holds nothing in it. */
		free(buf->cpu);
		buf->cpu = NULL;
	}
}

void dmb_names_fini(struct dmabuf_ctx *ctx)
{
	struct dmb_name *n, *tmp;

	RB_FOREACH_SAFE(n, dmb_name_tree, &ctx->names, tmp) {
		RB_REMOVE(dmb_name_tree, &ctx->names, n);
		free(n);
	}
}
