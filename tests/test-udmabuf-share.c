/* SPDX-License-Identifier: MIT */
/*
 * A udmabuf shared with another process: the importer sees the creator's
 * memfd pages (IMPORT_REPLY's ranges, then GET_BACKING), both ways, by CPU
 * and by DMA, after the creator closed its memfds, and either side may be
 * SIGKILLed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"
#include "rawpeer.h"

#define PG 4096
/* More ranges than one batch (32) and more memfds than one message's
 * fds (4): the import needs GET_BACKING. */
#define NITEMS 40
#define NMEMFDS 6
#define SIZE ((uint64_t)NITEMS * PG)

struct creator {
	int memfd[NMEMFDS];
	uint8_t *map[NMEMFDS];
	int fd; /* the udmabuf */
};

/* Item i is page i % PER of memfd i / PER: the buffer's page i. */
#define PER 7
static uint8_t *page_of(struct creator *c, int i)
{
	return c->map[i / PER] + (size_t)(i % PER) * PG;
}

static void creator_init(struct creator *c, struct dmabuf_ctx *ctx)
{
	struct dmabuf_udmabuf_item items[NITEMS];
	const size_t len = PER * PG;

	for (int m = 0; m < NMEMFDS; m++) {
		c->memfd[m] = memfd_create("caller", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		child_check(c->memfd[m] >= 0 && ftruncate(c->memfd[m], (off_t)len) == 0);
		child_check(fcntl(c->memfd[m], F_ADD_SEALS, F_SEAL_SHRINK) == 0);
		c->map[m] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd[m], 0);
		child_check(c->map[m] != MAP_FAILED);
	}
	for (int i = 0; i < NITEMS; i++) {
		items[i] = (struct dmabuf_udmabuf_item){
			.memfd = c->memfd[i / PER], .offset = (uint64_t)(i % PER) * PG, .size = PG,
		};
		page_of(c, i)[0] = (uint8_t)(i + 1);
	}
	c->fd = dmabuf_udmabuf_create_list(ctx, 0, items, NITEMS);
	child_check(c->fd >= 0);
}

static void creator_close_memfds(struct creator *c)
{
	for (int m = 0; m < NMEMFDS; m++) {
		close(c->memfd[m]);
		c->memfd[m] = -1;
	}
}

static void creator_fini(struct creator *c)
{
	for (int m = 0; m < NMEMFDS; m++) {
		if (c->memfd[m] >= 0)
			close(c->memfd[m]);
		munmap(c->map[m], PER * PG);
	}
	close(c->fd);
}

struct env {
	int sock;
	int mode; /* 0: finish, 1: wait to be killed */
};

/* The importing process: every page the creator wrote, then its own
 * writes by CPU and by DMA; after 'c' the creator's later write. */
static int importer(void *arg)
{
	struct env *env = arg;
	struct dmabuf_device_info di = { .name = "imp-dev", .flags = DMABUF_DEVICE_IOMMU };
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf *buf;
	uint8_t *p, byte = 0xee, back = 0;
	char c;
	size_t len;
	int fd;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	child_check(dmabuf_device_new(ctx, &di, &dev) == 0);
	child_check(dmabuf_recv_fd(env->sock, &fd, &c, 1, &len) == 0 && fd >= 0);
	child_check(dmabuf_get(ctx, fd, &buf) == 0);
	child_check(dmabuf_get_size(buf) == SIZE);
	child_check(dmabuf_mmap(buf, 0, SIZE, PROT_READ | PROT_WRITE, (void **)&p) == 0);
	for (int i = 0; i < NITEMS; i++) {
		child_check(p[(size_t)i * PG] == (uint8_t)(i + 1));
		p[(size_t)i * PG + 1] = (uint8_t)(0x80 + i);
	}
	child_check(dmabuf_attach(buf, dev, &att) == 0);
	child_check(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt) == 0);
	/* The importer's device reads and writes the creator's pages. */
	uint64_t dma = dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr;
	child_check(dmabuf_sg_table_get_dma_count(sgt) >= 1);
	child_check(dmabuf_dma_read(dev, dma, &back, 1) == 0 && back == 1);
	child_check(dmabuf_dma_write(dev, dma + 2, &byte, 1) == 0);
	child_check(dmabuf_send_fd(env->sock, -1, "m", 1) == 0);
	if (env->mode == 1)
		for (;;)
			pause(); /* killed holding all of it */
	/* The creator closed its memfds and wrote again. */
	child_check(dmabuf_recv_fd(env->sock, &fd, &c, 1, &len) == 0 && c == 'c');
	child_check(p[(size_t)(NITEMS - 1) * PG + 3] == 0x77);
	child_check(dmabuf_munmap(buf, p, SIZE) == 0);
	child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL) == 0);
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
	child_check(dmabuf_send_fd(env->sock, -1, "d", 1) == 0);
	return 0;
}

static void importer_sees_creators_pages(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct env env = { .mode = 0 };
	struct creator c;
	int sv[2];
	pid_t pid;

	creator_init(&c, ctx);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(importer, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], c.fd, "f", 1), 0);
	assert_int_equal(tx_wait_byte(sv[0], ctx), 'm');
	/* the importer's CPU writes and its device's write, in our memfds */
	for (int i = 0; i < NITEMS; i++)
		assert_int_equal(page_of(&c, i)[1], 0x80 + i);
	assert_int_equal(page_of(&c, 0)[2], 0xee);
	creator_close_memfds(&c);
	page_of(&c, NITEMS - 1)[3] = 0x77;
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "c", 1), 0);
	assert_int_equal(tx_wait_byte(sv[0], ctx), 'd');
	assert_int_equal(harness_wait(pid), 0);
	close(sv[0]);
	creator_fini(&c);
	dmabuf_ctx_destroy(ctx);
}

/* The importer dies holding a mapping, an attachment and a DMA mapping:
 * the creator's buffer is whole and its own again. */
static void killed_importer_leaves_nothing(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct env env = { .mode = 1 };
	struct dmabuf *buf;
	struct creator c;
	int sv[2];
	pid_t pid;

	creator_init(&c, ctx);
	assert_int_equal(dmabuf_get(ctx, c.fd, &buf), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(importer, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], c.fd, "f", 1), 0);
	assert_int_equal(tx_wait_byte(sv[0], ctx), 'm');
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 1);
	kill(pid, SIGKILL);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	for (int i = 0; i < 500 && (dmabuf_get_info(buf, &info), info.attachments); i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
	assert_int_equal(info.attachments, 0);
	assert_int_equal(info.mappings, 0);
	assert_int_equal(info.refcount, 1);
	assert_int_equal(page_of(&c, 5)[1], 0x85);
	assert_int_equal(dmabuf_put(buf), 0);
	close(sv[0]);
	creator_fini(&c);
	dmabuf_ctx_destroy(ctx);
}

/* The creating process: makes the udmabuf, sends it, waits to be killed. */
static int creator_process(void *arg)
{
	struct env *env = arg;
	struct dmabuf_ctx *ctx;
	struct creator c;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	child_check(dmabuf_ctx_start_thread(ctx) == 0);
	creator_init(&c, ctx);
	creator_close_memfds(&c);
	child_check(dmabuf_send_fd(env->sock, c.fd, "f", 1) == 0);
	for (;;)
		pause();
	return 0;
}

/* The creator dies: the importer's mapping keeps the pages (as a vma keeps
 * the kernel's), new mappings are -ENODEV, the put cleans up. */
static void killed_creator_keeps_importers_pages(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf_device *dev = tx_device(ctx, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct env env = { .mode = 0 };
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf *buf;
	int sv[2], fd;
	uint8_t *p;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(creator_process, &env, sv[0]);
	close(sv[1]);
	char ch = 0;
	size_t len;
	assert_int_equal(dmabuf_recv_fd(sv[0], &fd, &ch, 1, &len), 0);
	assert_true(fd >= 0);
	assert_int_equal(dmabuf_get(ctx, fd, &buf), 0);
	assert_int_equal(dmabuf_mmap(buf, 0, SIZE, PROT_READ | PROT_WRITE, (void **)&p), 0);
	assert_int_equal(p[7 * PG], 8);
	kill(pid, SIGKILL);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	p[7 * PG + 1] = 0x42;
	assert_int_equal(p[7 * PG], 8);
	assert_int_equal(p[7 * PG + 1], 0x42);
	/* A udmabuf's exporter has no attach op: the attach is answered
	 * here, as the kernel's dma_buf_attach() asks no exporter, and the
	 * first map finds the exporter gone (docs/design.md §11). */
	assert_int_equal(dmabuf_attach(buf, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), -ENODEV);
	assert_int_equal(dmabuf_detach(buf, att), 0);
	assert_int_equal(dmabuf_munmap(buf, p, SIZE), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	close(sv[0]);
	dmabuf_device_destroy(dev);
	dmabuf_ctx_destroy(ctx);
}

/* The exporter's side of the protocol, seen raw: ranges in order, as
 * many per message as 32 ranges of at most 4 memfds allow (items of one
 * memfd share its fd), GET_BACKING for the rest, -EINVAL past the end. */
static void backing_travels_in_batches(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmb_msg m = { .op = DMB_OP_IMPORT, .nfds = 1 }, r;
	struct creator c;
	int sock, fds0;

	creator_init(&c, ctx);
	fds0 = harness_count_fds();
	sock = rp_connect(c.fd);
	assert_true(sock >= 0);
	assert_int_equal(rp_hello(sock, ctx), 0);
	m.fds[0] = c.fd;
	assert_int_equal(rp_call(sock, ctx, &m, &r), 0);
	/* memfds 0..3 hold items 0..27 */
	assert_int_equal(r.u.import_reply.backing.total, NITEMS);
	assert_int_equal(r.u.import_reply.backing.first, 0);
	assert_int_equal(r.u.import_reply.backing.count, 4 * PER);
	assert_int_equal(r.nfds, 4);
	assert_int_equal(r.u.import_reply.backing.r[PER].fd_index, 1);
	assert_int_equal(r.u.import_reply.backing.r[PER].offset, 0);
	uint64_t id = r.u.import_reply.buffer_id;
	m = (struct dmb_msg){ .op = DMB_OP_GET_BACKING };
	m.u.get_backing.buffer_id = id;
	m.u.get_backing.first = 4 * PER;
	assert_int_equal(rp_call(sock, ctx, &m, &r), 0);
	assert_int_equal(r.u.backing.total, NITEMS);
	assert_int_equal(r.u.backing.first, 4 * PER);
	assert_int_equal(r.u.backing.count, NITEMS - 4 * PER);
	assert_int_equal(r.nfds, 2);
	m.u.get_backing.first = NITEMS;
	assert_int_equal(rp_call(sock, ctx, &m, &r), -EINVAL);
	/* the connection goes on */
	assert_int_equal(rp_id_call(sock, ctx, DMB_OP_DESCRIBE, id), 0);
	close(sock);
	for (int i = 0; i < 500 && harness_count_fds() != fds0; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
	assert_int_equal(harness_count_fds(), fds0);
	creator_fini(&c);
	dmabuf_ctx_destroy(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(importer_sees_creators_pages),
		harness_test(killed_importer_leaves_nothing),
		harness_test(killed_creator_keeps_importers_pages),
		harness_test(backing_travels_in_batches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
