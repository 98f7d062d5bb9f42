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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

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

	free(ctx->file_names);
	ctx->file_names = NULL;

	RB_FOREACH_SAFE(n, dmb_name_tree, &ctx->names, tmp) {
		RB_REMOVE(dmb_name_tree, &ctx->names, n);
		free(n);
	}
}

/*
 * The names of imported memfds by inode. A memfd's name is fixed for the
 * file's life, and the exporter's recycled memfd (recycle.c) brings the
 * same inode back for each new buffer: the import of it needs no second
 * readlink. Exact only while an inode number names one file for the
 * system's life: since Linux 5.9 the internal shmem mount that holds
 * every memfd numbers its inodes from a 64-bit counter (a 64-bit kernel),
 * where older kernels and hugetlbfs (st_blksize a huge page) take the
 * 32-bit get_next_ino(), which wraps. Filled only from the context's own
 * readlink: nothing a peer says goes in.
 */
#define FILE_NAMES_MAX 4

struct dmb_file_name {
	dev_t dev;
	ino_t ino;
	char endpoint[64];
	char exp[DMABUF_NAME_LEN];
};

struct dmb_file_names {
	unsigned int next;
	struct dmb_file_name e[FILE_NAMES_MAX];
};

bool dmb_memfd_inodes_unique(void)
{
	static int unique = -1;	/* racy only in asking uname twice */

	if (unique < 0) {
		struct utsname u;
		int major = 0, minor = 0;

		unique = sizeof(ino_t) >= 8 && sizeof(long) >= 8 &&
			 uname(&u) == 0 &&
			 sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
			 (major > 5 || (major == 5 && minor >= 9));
	}
	return unique;
}

static bool inodes_unique(const struct stat *st)
{
	return dmb_memfd_inodes_unique() && st->st_blksize == sysconf(_SC_PAGESIZE);
}

bool dmb_file_names_find(struct dmabuf_ctx *ctx, const struct stat *st,
			 char *endpoint, size_t epcap, char *exp, size_t expcap)
{
	struct dmb_file_names *fn = ctx->file_names;

	if (!fn || !inodes_unique(st))
		return false;
	for (unsigned int i = 0; i < FILE_NAMES_MAX; i++) {
		const struct dmb_file_name *e = &fn->e[i];

		if (e->ino == st->st_ino && e->dev == st->st_dev && e->ino &&
		    strlen(e->endpoint) < epcap && strlen(e->exp) < expcap) {
			strcpy(endpoint, e->endpoint);
			strcpy(exp, e->exp);
			return true;
		}
	}
	return false;
}

void dmb_file_names_add(struct dmabuf_ctx *ctx, const struct stat *st,
			const char *endpoint, const char *exp)
{
	struct dmb_file_names *fn = ctx->file_names;
	struct dmb_file_name *e;

	if (!inodes_unique(st) || strlen(endpoint) >= sizeof(e->endpoint) ||
	    strlen(exp) >= sizeof(e->exp))
		return;
	if (!fn) {
		fn = ctx->file_names = calloc(1, sizeof(*fn));
		if (!fn)
			return;
	}
	e = &fn->e[fn->next++ % FILE_NAMES_MAX];
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	strcpy(e->endpoint, endpoint);
	strcpy(e->exp, exp);
}
