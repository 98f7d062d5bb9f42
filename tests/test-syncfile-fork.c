/* SPDX-License-Identifier: MIT */
/*
 * A sync file after fork: the child's fd is the same file as the
 * parent's, as the kernel's one file is one fence in every process, so
 * once the parent signals it the child sees it signalled through every
 * call (its status, SYNC_IOC_FILE_INFO's entries, a wait, an import).
 * The child also has a copy of the parent's fence in its memory, which
 * never learns of the parent's signal: on the code whose forked child
 * kept the parent's exports in its table of sync files, the child's
 * import and dmabuf_sync_file_info() found that copy and said pending
 * after the signal, while a wait (which reads the socket) said signalled.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmabuf-fence.h"
#include "harness.h"

struct forked {
	int fd;				/* the parent's sync file, inherited */
	unsigned int nfences;		/* entries its info reports */
	struct harness_sync sync;
};

/* The child: pending before the parent's signal, signalled after it. */
static int child_main(void *arg)
{
	struct forked *k = arg;
	struct dmabuf_sync_fence_info info[2];
	struct dmabuf_fence *f;
	int status = 99;

	harness_sync_child(&k->sync);
	/* A pending merge is one entry here, as in any process that did not
	 * make it (docs/fences.md, limits); its entries come with the signal. */
	child_check(dmabuf_sync_file_info(k->fd, &status, info, 2) == 1);
	child_check(status == 0);
	child_check(dmabuf_sync_file_wait(k->fd, 0) == 0);
	harness_sync_tell_parent(&k->sync, 'a');
	child_check(harness_sync_wait_parent(&k->sync) == 's');
	/* Signalled in the parent, before it said so. */
	child_check(dmabuf_sync_file_wait(k->fd, 0) == 1);
	status = 99;
	memset(info, 0, sizeof(info));
	child_check(dmabuf_sync_file_info(k->fd, &status, info, 2) == (int)k->nfences);
	child_check(status == 1);
	for (unsigned int i = 0; i < k->nfences; i++) {
		child_check(info[i].status == 1);
		child_check(info[i].timestamp_ns != 0);
	}
	child_check(dmabuf_sync_file_import(k->fd, &f) == 0);
	child_check(dmabuf_fence_get_status(f) == 1);
	child_check(dmabuf_fence_is_signaled(f));
	dmabuf_fence_put(f);
	/* exit(), not _exit(): the destructor joins the watcher thread. */
	exit(0);
}

static void signal_after_fork(bool merge)
{
	struct dmabuf_timeline *tl[2];
	struct dmabuf_fence *p[2], *f;
	struct forked k = { .nfences = merge ? 2 : 1 };
	pid_t pid;

	for (int i = 0; i < 2; i++) {
		assert_int_equal(dmabuf_timeline_new("fork", &tl[i]), 0);
		assert_int_equal(dmabuf_timeline_create_fence(tl[i], 1, &p[i]), 0);
	}
	if (merge)
		assert_int_equal(dmabuf_fence_merge(p, 2, &f), 0);
	else
		f = dmabuf_fence_get(p[0]);
	k.fd = dmabuf_sync_file_export(f);
	assert_true(k.fd >= 0);
	harness_sync_init(&k.sync);
	pid = harness_fork(child_main, &k);
	harness_sync_parent(&k.sync);
	assert_int_equal(harness_sync_wait_child(&k.sync), 'a');
	for (int i = 0; i < 2; i++)
		assert_int_equal(dmabuf_timeline_inc(tl[i], 1), 0);
	assert_int_equal(dmabuf_fence_get_status(f), 1);
	harness_sync_tell_child(&k.sync, 's');
	assert_int_equal(harness_wait(pid), 0);
	harness_sync_close(&k.sync);
	close(k.fd);
	dmabuf_fence_put(f);
	for (int i = 0; i < 2; i++) {
		dmabuf_fence_put(p[i]);
		dmabuf_timeline_destroy(tl[i]);
	}
}

/* A sw_sync point exported, the process forked, the point signalled in the
 * parent: the child's status and import say signalled. */
static void point_signalled_in_parent(void **state)
{
	signal_after_fork(false);
}

/* The same for a merge of two points: each entry signalled. */
static void merge_signalled_in_parent(void **state)
{
	signal_after_fork(true);
}

/* The parent destroys the timeline: the point signals -ENOENT there, and
 * the child reads that error, not a pending fence. */
static int orphan_child(void *arg)
{
	struct forked *k = arg;
	int status = 99;

	harness_sync_child(&k->sync);
	harness_sync_tell_parent(&k->sync, 'a');
	child_check(harness_sync_wait_parent(&k->sync) == 'd');
	child_check(dmabuf_sync_file_wait(k->fd, 0) == 1);
	child_check(dmabuf_sync_file_info(k->fd, &status, NULL, 0) == 1);
	child_check(status == -ENOENT);
	exit(0);
}

static void timeline_destroyed_in_parent(void **state)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *p;
	struct forked k = { 0 };
	pid_t pid;

	assert_int_equal(dmabuf_timeline_new("fork", &tl), 0);
	assert_int_equal(dmabuf_timeline_create_fence(tl, 1, &p), 0);
	k.fd = dmabuf_sync_file_export(p);
	assert_true(k.fd >= 0);
	harness_sync_init(&k.sync);
	pid = harness_fork(orphan_child, &k);
	harness_sync_parent(&k.sync);
	assert_int_equal(harness_sync_wait_child(&k.sync), 'a');
	dmabuf_timeline_destroy(tl);
	assert_int_equal(dmabuf_fence_get_status(p), -ENOENT);
	harness_sync_tell_child(&k.sync, 'd');
	assert_int_equal(harness_wait(pid), 0);
	harness_sync_close(&k.sync);
	close(k.fd);
	dmabuf_fence_put(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(point_signalled_in_parent),
		harness_test(merge_signalled_in_parent),
		harness_test(timeline_destroyed_in_parent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
