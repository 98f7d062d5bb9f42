/* SPDX-License-Identifier: MIT */
/* The counting test exporter (exporter.h). */
#include "exporter.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "remote.h"

int tx_attach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	struct test_exporter *tx = dmabuf_get_priv(buf);

	tx->attach++;
	tx->last_dev = dmabuf_attachment_get_device(att);
	if (tx->refuse_attach)
		return tx->refuse_attach;
	return dmabuf_backing_check_device(buf, dmabuf_attachment_get_device(att));
}

void tx_detach(struct dmabuf *buf, struct dmabuf_attachment *att)
{
	((struct test_exporter *)dmabuf_get_priv(buf))->detach++;
}

int tx_map(struct dmabuf_attachment *att, enum dmabuf_direction dir,
	   struct dmabuf_sg_table **sgt)
{
	struct test_exporter *tx = dmabuf_get_priv(dmabuf_attachment_get_buf(att));

	tx->map++;
	tx->last_dir = dir;
	if (tx->refuse_map)
		return tx->refuse_map;
	return dmabuf_backing_map(att, dir, sgt);
}

void tx_unmap(struct dmabuf_attachment *att, struct dmabuf_sg_table *sgt,
	      enum dmabuf_direction dir)
{
	((struct test_exporter *)dmabuf_get_priv(dmabuf_attachment_get_buf(att)))->unmap++;
	dmabuf_backing_unmap(att, sgt, dir);
}

void tx_release(struct dmabuf *buf)
{
	((struct test_exporter *)dmabuf_get_priv(buf))->release++;
}

int tx_begin(struct dmabuf *buf, enum dmabuf_direction dir)
{
	((struct test_exporter *)dmabuf_get_priv(buf))->begin++;
	return 0;
}

int tx_end(struct dmabuf *buf, enum dmabuf_direction dir)
{
	((struct test_exporter *)dmabuf_get_priv(buf))->end++;
	return 0;
}

int tx_mmap(struct dmabuf *buf, uint64_t off, uint64_t len, int prot)
{
	((struct test_exporter *)dmabuf_get_priv(buf))->mmap++;
	return 0;
}

int tx_vmap(struct dmabuf *buf, void **vaddr)
{
	((struct test_exporter *)dmabuf_get_priv(buf))->vmap++;
	return dmabuf_backing_vmap(buf, vaddr);
}

void tx_vunmap(struct dmabuf *buf, void *vaddr)
{
	((struct test_exporter *)dmabuf_get_priv(buf))->vunmap++;
	dmabuf_backing_vunmap(buf, vaddr);
}

int tx_pin(struct dmabuf_attachment *att)
{
	((struct test_exporter *)dmabuf_get_priv(dmabuf_attachment_get_buf(att)))->pin++;
	return 0;
}

void tx_unpin(struct dmabuf_attachment *att)
{
	((struct test_exporter *)dmabuf_get_priv(dmabuf_attachment_get_buf(att)))->unpin++;
}

const struct dmabuf_ops tx_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = tx_attach,
	.detach = tx_detach,
	.map = tx_map,
	.unmap = tx_unmap,
	.release = tx_release,
	.begin_cpu_access = tx_begin,
	.end_cpu_access = tx_end,
	.mmap = tx_mmap,
	.vmap = tx_vmap,
	.vunmap = tx_vunmap,
};

const struct dmabuf_ops tx_pin_ops = {
	.version = DMABUF_OPS_VERSION,
	.attach = tx_attach, .detach = tx_detach,
	.map = tx_map, .unmap = tx_unmap, .release = tx_release,
	.pin = tx_pin, .unpin = tx_unpin,
	.mmap = tx_mmap, .vmap = tx_vmap, .vunmap = tx_vunmap,
};

const struct dmabuf_ops tx_bare_ops = {
	.version = DMABUF_OPS_VERSION,
	.map = tx_map, .unmap = tx_unmap, .release = tx_release,
	.mmap = tx_mmap, .vmap = tx_vmap, .vunmap = tx_vunmap,
};

struct dmabuf_ctx *tx_ctx_new(uint32_t flags)
{
	struct dmabuf_ctx_config cfg = { .seed = 42, .flags = flags };
	struct dmabuf_ctx *ctx = NULL;

	assert_int_equal(dmabuf_ctx_new(&cfg, &ctx), 0);
	dmabuf_ctx_set_log(ctx, NULL, NULL, (enum dmabuf_log_priority)0);
	return ctx;
}

static struct dmabuf *export(struct dmabuf_ctx *ctx, struct test_exporter *tx,
			     const struct dmabuf_ops *ops, uint64_t size, int flags,
			     enum dmabuf_alloc alloc)
{
	struct dmabuf_export_info info = {
		.exp_name = "test", .ops = ops, .size = size, .flags = flags,
		.priv = tx, .alloc = alloc,
	};
	struct dmabuf *buf = NULL;

	assert_int_equal(dmabuf_export(ctx, &info, &buf), 0);
	assert_non_null(buf);
	return buf;
}

struct dmabuf *tx_export(struct dmabuf_ctx *ctx, struct test_exporter *tx,
			 uint64_t size, int flags, enum dmabuf_alloc alloc)
{
	return export(ctx, tx, &tx_ops, size, flags, alloc);
}

struct dmabuf *tx_export_ops(struct dmabuf_ctx *ctx, struct test_exporter *tx,
			     const struct dmabuf_ops *ops, uint64_t size)
{
	return export(ctx, tx, ops, size, O_RDWR, DMABUF_ALLOC_SYSTEM);
}

bool tx_fd_marked(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return dmb_memfd_attach_known(fcntl(fd, F_GET_SEALS), st.st_mode);
}

struct dmb_peer *tx_only_peer(struct dmabuf_ctx *ctx)
{
	struct dmb_peer *peer = LIST_FIRST(&ctx->endpoint->peers);

	assert_non_null(peer);
	return peer;
}

static void *dispatch_loop(void *arg)
{
	struct tx_dispatcher *d = arg;

	while (!atomic_load(&d->stop))
		if (dmabuf_ctx_dispatch_timeout(d->ctx, d->timeout_ms) < 0)
			d->errors++;
	return NULL;
}

void tx_dispatcher_start(struct tx_dispatcher *d)
{
	atomic_store(&d->stop, false);
	d->errors = 0;
	assert_int_equal(pthread_create(&d->thread, NULL, dispatch_loop, d), 0);
}

int tx_dispatcher_stop(struct tx_dispatcher *d)
{
	atomic_store(&d->stop, true);
	assert_int_equal(pthread_join(d->thread, NULL), 0);
	return d->errors;
}

pid_t tx_fork_importer(struct dmabuf *buf, int (*fn)(void *arg), void *arg,
		       int *child_sock, int *sock)
{
	int sv[2], fd = dmabuf_fd(buf, O_CLOEXEC);
	pid_t pid;

	assert_true(fd >= 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	*child_sock = sv[1];
	pid = harness_fork_sock(fn, arg, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	*sock = sv[0];
	return pid;
}

int tx_child_import(int sock, const char *dev_name, struct dmabuf_ctx **ctx,
		    struct dmabuf_device **dev, struct dmabuf **buf)
{
	struct dmabuf_device_info info = { .name = dev_name, .flags = DMABUF_DEVICE_IOMMU };
	char c = 0;
	size_t len;
	int fd;

	child_check(dmabuf_ctx_new(NULL, ctx) == 0);
	child_check(dmabuf_device_new(*ctx, &info, dev) == 0);
	child_check(dmabuf_recv_fd(sock, &fd, &c, 1, &len) == 0 && fd >= 0);
	child_check(dmabuf_get(*ctx, fd, buf) == 0);
	return fd;
}

bool tx_one_way_id(const struct dmabuf_attachment *att)
{
	return (att->remote_id & DMB_WIRE_ONE_WAY_ATT_BITS) == DMB_WIRE_ONE_WAY_ATT_BITS;
}

struct dmabuf_device *tx_device(struct dmabuf_ctx *ctx, const char *name,
				unsigned int bits, uint32_t flags,
				uint64_t max_seg)
{
	struct dmabuf_device_info info = {
		.name = name, .dma_mask_bits = bits, .flags = flags,
		.max_segment_size = max_seg,
	};
	struct dmabuf_device *dev = NULL;

	assert_int_equal(dmabuf_device_new(ctx, &info, &dev), 0);
	return dev;
}

int tx_wait_byte(int sock, struct dmabuf_ctx *serve)
{
	char c = 0;
	size_t len;
	int fd = -1;

	for (int i = 0;; i++) {
		struct pollfd p = { .fd = sock, .events = POLLIN };

		if (poll(&p, 1, 5) == 1)
			break;
		if (i > 12000)
			return -1;
		if (serve)
			dmabuf_ctx_dispatch(serve);
	}
	if (dmabuf_recv_fd(sock, &fd, &c, 1, &len) < 0 || len != 1)
		return -1;
	if (fd >= 0)
		close(fd);
	return c;
}
