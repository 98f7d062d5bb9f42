/* SPDX-License-Identifier: MIT */
/*
 * The second adversarial review (after tests/test-attack.c): recycled
 * memfds (src/core/recycle.c) against holders that strip the release
 * probe's lock or inherited the memfd over fork(), the lazy context's
 * first-use errors, and the service loop. Each test says whether it pinned
 * a bug (its fix is in the commit that added the test) or a behaviour no
 * other test covered.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"

#define SZ (64 * 1024ull)

static unsigned long ino_of(struct dmabuf *buf)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	return (unsigned long)info.inode;
}

/* A new buffer of the recycled kind (read-write, library backing, tx_ops,
 * SZ) filled with @byte through its fd; returns it and its inode. */
static struct dmabuf *secret_buffer(struct dmabuf_ctx *ctx, struct test_exporter *tx,
				    uint8_t byte, unsigned long *ino)
{
	struct dmabuf *buf = tx_export(ctx, tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	uint8_t *p;

	assert_true(fd >= 0);
	p = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	memset(p, byte, SZ);
	munmap(p, SZ);
	close(fd);
	*ino = ino_of(buf);
	return buf;
}

/* Whether the file behind @fd shows @byte at its start. */
static bool fd_shows(int fd, uint8_t byte)
{
	uint8_t c = 0;

	assert_int_equal(pread(fd, &c, 1, 0), 1);
	return c == byte;
}

/* ---- 1. recycled memfds ------------------------------------------------- */

/* Bug (fixed in recycle.c): a fork() child inherits every fd of the
 * parent, the memfds of its live buffers too. The pool dropped only what
 * it held at the fork: a buffer alive then (never shared, so its last put
 * releases at once) was kept at its release and its memfd given to the
 * next export while the child could still read and write it through the
 * inherited fd. A memfd that existed at a fork is never kept now. */
struct forked {
	unsigned long ino;
	struct harness_sync sync;
};

/* The inherited fd of inode @ino, or -1. */
static int inherited_fd(unsigned long ino)
{
	int fds[256], n = harness_list_fds(fds, 256);
	struct stat st;

	for (int i = 0; i < n; i++)
		if (fstat(fds[i], &st) == 0 && (unsigned long)st.st_ino == ino &&
		    S_ISREG(st.st_mode))
			return fds[i];
	return -1;
}

static int fork_holder(void *arg)
{
	struct forked *f = arg;
	int fd;

	harness_sync_child(&f->sync);
	fd = inherited_fd(f->ino);
	child_check(fd >= 0);
	harness_sync_tell_parent(&f->sync, 'h');
	child_check(harness_sync_wait_parent(&f->sync) == 'n');
	child_check(!fd_shows(fd, 0x77));
	return 0;
}

static void fork_child_never_gets_the_next_buffer(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	/* never shared: its last put releases it at once */
	struct dmabuf *buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM), *next;
	struct forked f = { .ino = ino_of(buf) };
	unsigned long next_ino;
	pid_t pid;

	harness_sync_init(&f.sync);
	pid = harness_fork(fork_holder, &f);
	harness_sync_parent(&f.sync);
	assert_int_equal(harness_sync_wait_child(&f.sync), 'h');
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 1);
	next = secret_buffer(ctx, &tx, 0x77, &next_ino);
	assert_true(next_ino != f.ino);
	harness_sync_tell_child(&f.sync, 'n');
	assert_int_equal(harness_wait(pid), 0);
	harness_sync_close(&f.sync);
	assert_int_equal(dmabuf_put(next), 0);
	assert_int_equal(tx.release, 2);
	/* memfds made after the fork are kept again */
	buf = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	f.ino = ino_of(buf);
	assert_int_equal(dmabuf_put(buf), 0);
	next = tx_export(ctx, &tx, SZ, O_RDWR, DMABUF_ALLOC_SYSTEM);
	assert_int_equal(ino_of(next), f.ino);
	assert_int_equal(dmabuf_put(next), 0);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(fork_child_never_gets_the_next_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
