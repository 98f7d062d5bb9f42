/* SPDX-License-Identifier: MIT */
/* What the syscall-count programs (syscall-*.c, run under strace by the
 * check-*-syscalls.py scripts) share: the check that ends the program on a
 * failed call, the marks that bound a counted phase, and the counting
 * exporter whose buffers they hand around. */
#ifndef DMABUF_TESTS_SYSCALL_COMMON_H
#define DMABUF_TESTS_SYSCALL_COMMON_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "dmabuf.h"

#define SIZE (64u << 10)

#define CHECK(x) do { long r_ = (long)(x); if (r_ < 0) { \
	fprintf(stderr, "%s:%d: %s = %ld\n", __FILE__, __LINE__, #x, r_); \
	exit(1); } } while (0)

/* A faccessat() of a path that cannot exist: a call the program makes
 * nowhere else, so the checks count only what lies between the two. */
#define MARK_BEGIN "/dmabuf-syscall-mark/begin"
#define MARK_END "/dmabuf-syscall-mark/end"

static inline void mark(const char *path)
{
	(void)faccessat(AT_FDCWD, path, F_OK, 0);
}

/* The exporter: the library's backing helpers, and a count of releases. */
static unsigned long releases __attribute__((unused));
static int priv_state __attribute__((unused));

static inline void op_release(struct dmabuf *buf)
{
	(void)buf;
	releases++;
}

static const struct dmabuf_ops ops __attribute__((unused)) = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = op_release,
	.vmap = dmabuf_backing_vmap,
	.vunmap = dmabuf_backing_vunmap,
};

#endif
