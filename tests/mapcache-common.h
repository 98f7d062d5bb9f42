/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the tests of the MAP answered from the exporter's
 * published state (test-remote-mapcache*.c): the exporter dispatched until
 * its view of a buffer reaches a count, and a migration under the buffer's
 * reservation lock. Include after exporter.h.
 */
#ifndef MAPCACHE_COMMON_H
#define MAPCACHE_COMMON_H

/* Dispatches @exp until its view of @buf has @mappings mappings and
 * @attachments attachments (the importer's one-way requests read and
 * handled); the bound is a hang guard. */
static inline void dispatch_until_mappings(struct dmabuf_ctx *exp, struct dmabuf *buf,
					   unsigned int mappings, unsigned int attachments)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };

	for (int i = 0; i < 1000; i++) {
		assert_int_equal(dmabuf_get_info(buf, &info), 0);
		if (info.mappings == mappings && info.attachments == attachments)
			break;
		dmabuf_ctx_dispatch_timeout(exp, 10);
	}
	assert_int_equal(info.mappings, mappings);
	assert_int_equal(info.attachments, attachments);
}

/* Migrates @buf's backing to @alloc under its reservation lock. */
static inline int migrate(struct dmabuf *buf, enum dmabuf_alloc alloc)
{
	int ret;

	dmabuf_resv_lock(dmabuf_get_resv(buf));
	ret = dmabuf_backing_migrate(buf, alloc, NULL);
	dmabuf_resv_unlock(dmabuf_get_resv(buf));
	return ret;
}

#endif
