/* SPDX-License-Identifier: MIT */
/*
 * Raw peers of a version 8 exporter (test-remote-prepub*.c): a connection
 * with a client page of a chosen size, an import, an attachment and one MAP
 * round trip (so the exporter publishes its next buffers to it), and the
 * entries of its published area (docs/protocol.md §6 item 5b). Include
 * after rawpeer.h.
 */
#ifndef PREPUB_COMMON_H
#define PREPUB_COMMON_H

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct raw {
	int sock;
	uint16_t version;
	uint32_t page_size;
	_Atomic uint32_t *page;
	uint64_t imp, att;
};

static inline int page_fd(uint32_t size, void **map)
{
	int fd = memfd_create("raw-page", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	*map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(*map != MAP_FAILED);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
	return fd;
}

/* A connection of @version with a page of @page_size, an import and an
 * attachment of @buf, and one MAP round trip of it (so the exporter
 * publishes its next buffers to this peer, when it can). */
static inline void raw_open(struct dmabuf_ctx *exp, struct dmabuf *buf, uint16_t version,
		     uint32_t page_size, struct raw *r)
{
	struct dmb_msg m = { .op = DMB_OP_HELLO }, reply;
	void *map;
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	uint64_t mapping;

	r->version = version;
	r->page_size = page_size;
	r->sock = rp_connect(fd);
	assert_true(r->sock >= 0);
	m.u.hello.min_version = DMB_WIRE_VERSION_MIN;
	m.u.hello.max_version = version;
	m.u.hello.pid = (uint32_t)getpid();
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	assert_int_equal(reply.u.hello_reply.version, version);
	m = (struct dmb_msg){ .op = DMB_OP_CACHE_OPEN, .nfds = 1, .version = version };
	m.fds[0] = page_fd(page_size, &map);
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	assert_int_equal(reply.nfds, 1);
	close(m.fds[0]);
	r->page = map;
	m = (struct dmb_msg){ .op = DMB_OP_IMPORT, .nfds = 1, .version = version };
	m.fds[0] = fd;
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	r->imp = reply.u.import_reply.buffer_id;
	close(fd);
	rp_attach_msg(&m, r->imp);
	m.version = version;
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	r->att = reply.u.attach_reply.attachment_id;
	m = (struct dmb_msg){ .op = DMB_OP_MAP, .version = version };
	m.u.map.id = r->att;
	assert_int_equal(rp_call(r->sock, exp, &m, &reply), 0);
	mapping = reply.u.map_reply.mapping_id;
	m = (struct dmb_msg){ .op = DMB_OP_UNMAP, .version = version };
	m.u.map.id = mapping;
	assert_int_equal(rp_call(r->sock, exp, &m, NULL), 0);
}

static inline void raw_close(struct raw *r)
{
	munmap((void *)r->page, r->page_size);
	close(r->sock);
}

static inline const _Atomic uint32_t *raw_entry(const struct raw *r, unsigned int i)
{
	return r->page + 2 * DMB_WIRE_CACHE_SLOTS + i * DMB_WIRE_PREPUB_WORDS;
}

static inline uint64_t word64(const _Atomic uint32_t *w)
{
	return w[0] | (uint64_t)w[1] << 32;
}

/* The entry of the buffer of @fd in @r's area, or -1. */
static inline int raw_find(const struct raw *r, int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	for (unsigned int i = 0; i < DMB_WIRE_PREPUB_ENTRIES; i++) {
		const _Atomic uint32_t *w = raw_entry(r, i);

		if (w[0] && !(w[0] & 1) && word64(&w[6]) == (uint64_t)st.st_ino &&
		    word64(&w[4]) == (uint64_t)st.st_dev)
			return (int)i;
	}
	return -1;
}

#endif
