/* SPDX-License-Identifier: MIT */
/* The smallest exporter: the library's backing helpers and a release
 * counter, so a benchmark can check that every buffer was released. */
#pragma once

#include "dmabuf.h"

static unsigned long releases;

static void op_release(struct dmabuf *buf)
{
	(void)buf;
	releases++;
}

static const struct dmabuf_ops ops = {
	.version = DMABUF_OPS_VERSION,
	.map = dmabuf_backing_map,
	.unmap = dmabuf_backing_unmap,
	.release = op_release,
};
