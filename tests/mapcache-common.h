/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the tests of the MAP answered from the exporter's
 * published state (test-remote-mapcache*.c): the exporter dispatched until
 * its view of a buffer reaches a count, and a migration under the buffer's
 * reservation lock; the kernel's one-way mark, a byte sent, a one-way
 * mapping told. Include after exporter.h and rawpeer.h.
 */
#ifndef MAPCACHE_COMMON_H
#define MAPCACHE_COMMON_H

/* Whether this kernel lets a memfd carry the one-way ATTACH mark (as in
 * test-remote-attach.c): without it the ATTACH waits, which the tests that
 * hold the exporter back cannot have. */
static inline bool kernel_marks(struct dmabuf *buf)
{
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	bool marked = tx_fd_marked(fd);

	close(fd);
	return marked;
}

/* One byte with no fd on @sock. */
static inline void send_byte(int sock, char c)
{
	assert_int_equal(dmabuf_send_fd(sock, -1, &c, 1), 0);
}

/* Whether @sgt is a mapping the importer made one-way (its id's mark). */
static inline bool one_way_mapping(const struct dmabuf_sg_table *sgt)
{
	return (sgt->remote_id & DMB_WIRE_ONE_WAY_ATT_BITS) == DMB_WIRE_ONE_WAY_ATT_BITS;
}

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
