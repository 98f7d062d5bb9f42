/* SPDX-License-Identifier: MIT */
/*
 * sw_sync timelines and sync-file names: state the kernel keeps in a file
 * and the emulation keeps in this process, found from the fd's inode.
 *
 * A timeline's file is a memfd named "dmabuf-uapi-sw_sync" (one per open,
 * as the kernel's one timeline per open of the debugfs file). The layer
 * holds a second open file description of it (the probe) and the program's
 * description holds flock(LOCK_SH): when flock(LOCK_EX|LOCK_NB) on the probe
 * succeeds after a close, no fd of the program's description is left in any
 * process, and the timeline is destroyed, its pending fences signalling
 * with -ENOENT as sw_sync_debugfs_release() does.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <dmabuf-fence.h>
#include <dmabuf.h>

#include "core.h"

struct timeline {
	dev_t dev;
	ino_t ino;
	int probe;
	struct dmabuf_timeline *tl;
	struct timeline *next;
};

static pthread_mutex_t tl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timeline *timelines;

int dmb_uapi_timeline_open(int flags)
{
	char comm[17] = "", proc[40];
	struct timeline *t;
	struct stat st;
	int fd, ret;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	fd = memfd_create("dmabuf-uapi-sw_sync", flags & O_CLOEXEC ? MFD_CLOEXEC : 0);
	if (fd < 0) {
		ret = -errno;
		free(t);
		return ret;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	t->probe = open(proc, O_RDONLY | O_CLOEXEC);
	if (t->probe < 0 || fstat(fd, &st) < 0 || flock(fd, LOCK_SH) < 0) {
		ret = -errno;
		goto fail;
	}
	/* The kernel names the timeline after the opening task. */
	prctl(PR_GET_NAME, comm, 0, 0, 0);
	ret = dmabuf_timeline_new(comm, &t->tl);
	if (ret)
		goto fail;
	t->dev = st.st_dev;
	t->ino = st.st_ino;
	pthread_mutex_lock(&tl_lock);
	t->next = timelines;
	timelines = t;
	pthread_mutex_unlock(&tl_lock);
	return fd;
fail:
	if (t->probe >= 0)
		close(t->probe);
	close(fd);
	free(t);
	return ret;
}

struct dmabuf_timeline *dmb_uapi_timeline_lookup(int fd)
{
	struct dmabuf_timeline *tl = NULL;
	struct timeline *t;
	struct stat st;

	if (fstat(fd, &st) < 0)
		return NULL;
	pthread_mutex_lock(&tl_lock);
	for (t = timelines; t; t = t->next)
		if (t->ino == st.st_ino && t->dev == st.st_dev)
			tl = t->tl;
	pthread_mutex_unlock(&tl_lock);
	return tl;
}

/* The parent's timelines, in a forked child: kept reachable, not used. */
static struct timeline *volatile parent_timelines;

void dmb_uapi_timelines_forked(void)
{
	pthread_mutex_init(&tl_lock, NULL);
	parent_timelines = timelines;
	timelines = NULL;
}

bool dmb_uapi_close_matters(void)
{
	struct dmabuf_ctx_stats stats = { .struct_size = sizeof(stats) };
	struct dmabuf_ctx *ctx;

	/* Unlocked reads: a stale answer only costs or saves one fstat. */
	if (timelines || dmb_uapi_have_held())
		return true;
	ctx = dmb_uapi_ctx_if_made();
	return ctx && dmabuf_ctx_get_stats(ctx, &stats) == 0 && stats.buffers_live;
}

void dmb_uapi_closed(enum dmb_uapi_kind kind, dev_t dev, ino_t ino)
{
	struct timeline **pp, *t, *gone = NULL;
	struct dmabuf_ctx *ctx;

	if (kind == DMB_UAPI_DMABUF) {
		/* close() returns after the file's last reference went, so
		 * the exporter's close event is queued: handle it now, and a
		 * buffer whose last holder this was is released before the
		 * program's close() returns, as the kernel's. */
		if (ino && dmb_uapi_have_held())
			dmb_uapi_release_held(dev, ino);
		ctx = dmb_uapi_ctx_if_made();
		if (ctx)
			dmabuf_ctx_dispatch(ctx);
		return;
	}
	if (kind != DMB_UAPI_SW_SYNC)
		return;
	pthread_mutex_lock(&tl_lock);
	for (pp = &timelines; (t = *pp); pp = &t->next) {
		if (t->ino == ino && t->dev == dev) {
			if (flock(t->probe, LOCK_EX | LOCK_NB) == 0) {
				*pp = t->next;
				gone = t;
			}
			break;
		}
	}
	pthread_mutex_unlock(&tl_lock);
	if (gone) {
		dmabuf_timeline_destroy(gone->tl);
		close(gone->probe);
		free(gone);
	}
}

/* ---- sync-file names ------------------------------------------------------ */

#define NAMES 256

static struct {
	dev_t dev;
	ino_t ino;
	char name[32];
} names[NAMES];
static unsigned int names_next;

void dmb_uapi_sync_name_set(int fd, const char *name)
{
	struct stat st;
	unsigned int i;

	if (fstat(fd, &st) < 0)
		return;
	pthread_mutex_lock(&tl_lock);
	/* A ring: the oldest name goes first. A lost name falls back to the
	 * kernel's default form. */
	i = names_next++ % NAMES;
	names[i].dev = st.st_dev;
	names[i].ino = st.st_ino;
	snprintf(names[i].name, sizeof(names[i].name), "%s", name);
	pthread_mutex_unlock(&tl_lock);
}

int dmb_uapi_sync_name_get(int fd, char *name, size_t size)
{
	struct stat st;
	unsigned int i;
	int ret = -ENOENT;

	if (fstat(fd, &st) < 0)
		return -errno;
	pthread_mutex_lock(&tl_lock);
	for (i = 0; i < NAMES; i++) {
		if (names[i].ino == st.st_ino && names[i].dev == st.st_dev && names[i].ino) {
			snprintf(name, size, "%s", names[i].name);
			ret = 0;
		}
	}
	pthread_mutex_unlock(&tl_lock);
	return ret;
}

/* ---- fence context numbers ------------------------------------------------ */

#define CONTEXTS 256

/* The core draws a random 64-bit base for contexts (unique across
 * processes); the kernel's are small counters. The number shown in a
 * default sync-file name is a per-process ordinal instead, so the name has
 * the kernel's shape and is not cut at 31 bytes. */
static struct {
	uint64_t context;
	unsigned long long number;
} contexts[CONTEXTS];
static unsigned long long contexts_next;

unsigned long long dmb_uapi_context_number(uint64_t context)
{
	unsigned long long n = 0;
	unsigned int i;

	pthread_mutex_lock(&tl_lock);
	for (i = 0; i < CONTEXTS && i < contexts_next; i++)
		if (contexts[i].context == context)
			n = contexts[i].number;
	if (!n) {
		/* A ring: a forgotten context gets a new number, never an
		 * old one, so numbers stay unique within the process. */
		n = ++contexts_next;
		contexts[(n - 1) % CONTEXTS].context = context;
		contexts[(n - 1) % CONTEXTS].number = n;
	}
	pthread_mutex_unlock(&tl_lock);
	return n;
}

/* ---- sw_sync deadlines ---------------------------------------------------- */

#define DEADLINES 256

/* The earliest deadline set on a sw_sync point (sw_sync_set_deadline()),
 * by the point's context and seqno. */
static struct {
	uint64_t context, seqno, ns;
	bool used;
} deadlines[DEADLINES];
static unsigned int deadlines_next;

void dmb_uapi_deadline_set(uint64_t context, uint64_t seqno, uint64_t ns)
{
	unsigned int i;

	pthread_mutex_lock(&tl_lock);
	for (i = 0; i < DEADLINES; i++) {
		if (deadlines[i].used && deadlines[i].context == context &&
		    deadlines[i].seqno == seqno) {
			if (ns < deadlines[i].ns)
				deadlines[i].ns = ns;
			pthread_mutex_unlock(&tl_lock);
			return;
		}
	}
	/* A ring: the oldest point's deadline is forgotten first. */
	i = deadlines_next++ % DEADLINES;
	deadlines[i].context = context;
	deadlines[i].seqno = seqno;
	deadlines[i].ns = ns;
	deadlines[i].used = true;
	pthread_mutex_unlock(&tl_lock);
}

int dmb_uapi_deadline_get(uint64_t context, uint64_t seqno, uint64_t *ns)
{
	int ret = -ENOENT;
	unsigned int i;

	pthread_mutex_lock(&tl_lock);
	for (i = 0; i < DEADLINES; i++) {
		if (deadlines[i].used && deadlines[i].context == context &&
		    deadlines[i].seqno == seqno) {
			*ns = deadlines[i].ns;
			ret = 0;
		}
	}
	pthread_mutex_unlock(&tl_lock);
	return ret;
}
