/* SPDX-License-Identifier: MIT */
/*
 * Cross-process sharing: proxies, proof of possession, remote attach/map,
 * device DMA in the importer, two contexts in one process, and processes
 * that export to each other.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmabuf-scm.h"
#include "exporter.h"

#define MiB (1024ull * 1024)

static void dispatch_until(struct dmabuf_ctx *ctx, const int *flag, int want)
{
	for (int i = 0; i < 500 && *flag != want; i++)
		dmabuf_ctx_dispatch_timeout(ctx, 10);
}

static void two_contexts_share_a_buffer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, 4 * MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(imp, "encoder", 64, DMABUF_DEVICE_IOMMU, 64 * 1024);
	struct dmabuf *proxy, *again;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_info info = { 0 };
	uint8_t *v, byte;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_int_equal(dmabuf_vmap(buf, (void **)&v), 0);
	v[MiB + 5] = 0xa5;
	/* The importer's context has never seen this buffer: it imports it
	 * from the exporter's endpoint, proving possession with the fd. */
	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	assert_ptr_not_equal(proxy, buf);
	assert_int_equal(dmabuf_get(imp, fd, &again), 0);
	assert_ptr_equal(again, proxy); /* one proxy per buffer */
	assert_int_equal(dmabuf_put(again), 0);
	assert_int_equal(dmabuf_get_info(proxy, &info), 0);
	assert_true(info.imported);
	assert_int_equal(info.size, 4 * MiB);
	assert_string_equal(info.exp_name, "test");

	/* attach and map run the exporter's ops, in the exporter */
	assert_int_equal(dmabuf_attach(proxy, dev, &att), 0);
	assert_int_equal(tx.attach, 1);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_int_equal(tx.map, 1);
	assert_int_equal(dmabuf_sg_table_get_size(sgt), 4 * MiB);
	/* device addresses were assigned here, for the importer's device */
	assert_int_equal(dmabuf_sg_table_get_dma_count(sgt), 64);
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(sgt)[16].dma_addr + 5,
					 &byte, 1), 0);
	assert_int_equal(byte, 0xa5);
	byte = 0x3c;
	assert_int_equal(dmabuf_dma_write(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
					  &byte, 1), 0);
	assert_int_equal(v[0], 0x3c);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.attachments, 1);
	assert_int_equal(info.mappings, 1);

	/* CPU access brackets reach the exporter's ops */
	assert_int_equal(dmabuf_begin_cpu_access(proxy, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(tx.begin, 1);
	assert_int_equal(dmabuf_end_cpu_access(proxy, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(tx.end, 1);
	/* END without START reaches the exporter's op, which decides, as an
	 * END on a dma-buf fd in another process would */
	assert_int_equal(dmabuf_end_cpu_access(proxy, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(tx.end, 2);
	assert_int_equal(dmabuf_set_name(proxy, "frame-1"), 0);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_string_equal(info.name, "frame-1");

	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(dmabuf_detach(proxy, att), 0);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(dmabuf_put(proxy), 0);
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	assert_int_equal(tx.release, 0); /* fd still open */
	close(fd);
	dispatch_until(exp, &tx.release, 1);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
}

/* The empty name is a name on both sides, and no name is no name
 * (dma_buf_show_fdinfo() prints name: only after DMA_BUF_SET_NAME). */
static void empty_name_is_a_name_on_both_sides(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *a = tx_export(exp, &tx, 16 * 4096, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf *b = tx_export(exp, &tx, 16 * 4096, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fa = dmabuf_fd(a, O_CLOEXEC), fb = dmabuf_fd(b, O_CLOEXEC);
	struct dmabuf *pa, *pb;
	struct dmabuf_info info = { 0 };

	/* named "" before the import: the import reply says so */
	assert_int_equal(dmabuf_set_name(a, ""), 0);
	assert_int_equal(dmabuf_get(imp, fa, &pa), 0);
	assert_int_equal(dmabuf_get(imp, fb, &pb), 0);
	assert_int_equal(dmabuf_get_info(pa, &info), 0);
	assert_true(info.name_set);
	assert_string_equal(info.name, "");
	assert_int_equal(dmabuf_get_info(pb, &info), 0);
	assert_false(info.name_set);
	/* the importer names b "": the exporter sees a name */
	assert_int_equal(dmabuf_set_name(pb, ""), 0);
	assert_int_equal(dmabuf_get_info(b, &info), 0);
	assert_true(info.name_set);
	assert_string_equal(info.name, "");
	assert_int_equal(dmabuf_get_info(pb, &info), 0);
	assert_true(info.name_set);
	assert_int_equal(dmabuf_put(pa), 0);
	assert_int_equal(dmabuf_put(pb), 0);
	/* the proxy remembers it after the exporter is gone */
	assert_int_equal(dmabuf_get(imp, fa, &pa), 0);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(dmabuf_get_info(pa, &info), 0);
	assert_true(info.name_set);
	assert_int_equal(dmabuf_put(pa), 0);
	close(fa);
	close(fb);
	dmabuf_ctx_destroy(imp);
}

/* An importer that puts its proxy inside CPU brackets: the exporter ends
 * each once (at RELEASE), the proxy sends no END of its own. */
static void proxy_put_inside_brackets_ends_them_once(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, 16 * 4096, O_RDWR, DMABUF_ALLOC_SYSTEM);
	int fd = dmabuf_fd(buf, O_CLOEXEC);
	struct dmabuf *px;

	assert_int_equal(dmabuf_get(imp, fd, &px), 0);
	assert_int_equal(dmabuf_begin_cpu_access(px, DMABUF_FROM_DEVICE), 0);
	assert_int_equal(dmabuf_begin_cpu_access(px, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(tx.begin, 2);
	assert_int_equal(dmabuf_put(px), 0);
	dispatch_until(exp, &tx.end, 2);
	for (int i = 0; i < 5; i++)
		dmabuf_ctx_dispatch(exp);
	assert_int_equal(tx.end, 2);
	assert_int_equal(tx.release, 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dispatch_until(exp, &tx.release, 1);
	assert_int_equal(tx.release, 1);
	assert_int_equal(tx.end, 2);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
}

static void large_table_travels_in_a_memfd(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, 512 * MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(imp, "gpu", 64, DMABUF_DEVICE_IOMMU, 0xfffff000);
	struct dmabuf_attachment *att, *latt;
	struct dmabuf_sg_table *sgt, *lsgt;
	struct dmabuf_device *ldev = tx_device(exp, "local", 64, DMABUF_DEVICE_IOMMU, 0xfffff000);
	struct dmabuf *proxy;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	assert_int_equal(dmabuf_attach(proxy, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	/* same page list as a local mapping of the same buffer */
	assert_int_equal(dmabuf_attach(buf, ldev, &latt), 0);
	assert_int_equal(dmabuf_map_attachment(latt, DMABUF_TO_DEVICE, &lsgt), 0);
	assert_true(dmabuf_sg_table_get_cpu_count(sgt) > 168); /* beyond inline */
	assert_int_equal(dmabuf_sg_table_get_cpu_count(sgt), dmabuf_sg_table_get_cpu_count(lsgt));
	assert_memory_equal(dmabuf_sg_table_get_cpu_entries(sgt), dmabuf_sg_table_get_cpu_entries(lsgt),
			    dmabuf_sg_table_get_cpu_count(sgt) * sizeof(struct dmabuf_sg_entry));
	assert_int_equal(dmabuf_unmap_attachment(latt, lsgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(buf, latt), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(proxy, att), 0);
	assert_int_equal(dmabuf_put(proxy), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dispatch_until(exp, &tx.release, 1);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
}

/*
 * What a peer imported stays: the import holds a reference in the exporter,
 * so even an exporter that drops every reference and fd of its own keeps
 * serving the buffer, and releases it only after the importer's RELEASE.
 * That is why the protocol has no "buffer gone" event (docs/protocol.md §5).
 */
static void import_keeps_the_buffer_until_released(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, 64 * 1024, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(imp, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_info info = { 0 };
	struct dmabuf *proxy;
	uint8_t byte = 0x5a, back = 0;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	/* The exporter lets go of everything it had. */
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	for (int i = 0; i < 20; i++)
		dmabuf_ctx_dispatch_timeout(exp, 5);
	assert_int_equal(tx.release, 0);
	/* Device operations still reach the exporter's ops. */
	assert_int_equal(dmabuf_attach(proxy, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	assert_int_equal(dmabuf_dma_write(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
					  &byte, 1), 0);
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
					 &back, 1), 0);
	assert_int_equal(back, 0x5a);
	assert_int_equal(dmabuf_get_info(proxy, &info), 0);
	assert_int_equal(info.attachments, 1);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(proxy, att), 0);
	assert_int_equal(tx.attach, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(tx.release, 0);
	/* The importer's release is the last reference. */
	assert_int_equal(dmabuf_put(proxy), 0);
	dispatch_until(exp, &tx.release, 1);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 1);
}

static void exporter_refusal_reaches_importer(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	/* scattered frames: a scanout device without IOMMU is refused */
	struct dmabuf *buf = tx_export(exp, &tx, 8 * MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *disp = tx_device(imp, "display", 32, DMABUF_DEVICE_CONTIGUOUS,
					       0xfffff000);
	struct dmabuf_attachment *att = NULL;
	struct dmabuf_sg_table *sgt = NULL;
	struct dmabuf *proxy;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	assert_int_equal(dmabuf_attach(proxy, disp, &att), -EBUSY);
	assert_null(att);
	tx.refuse_map = -ENOSPC;
	struct dmabuf_device *gpu = tx_device(imp, "gpu", 64, DMABUF_DEVICE_IOMMU, 0);
	assert_int_equal(dmabuf_attach(proxy, gpu, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), -ENOSPC);
	assert_null(sgt);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_NONE, &sgt), -EINVAL);
	assert_int_equal(dmabuf_detach(proxy, att), 0);
	assert_int_equal(dmabuf_put(proxy), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 1);
}

static void read_only_share_stays_read_only(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_RDONLY, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(imp, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_dma_fault fault;
	struct dmabuf *proxy;
	uint8_t *p, byte = 1;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	assert_int_equal(dmabuf_mmap(proxy, 0, MiB, PROT_READ | PROT_WRITE, (void **)&p), -EACCES);
	assert_int_equal(dmabuf_attach(proxy, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	/* the device may read, never write, a read-only buffer */
	assert_int_equal(dmabuf_dma_read(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr, &byte, 1), 0);
	assert_int_equal(dmabuf_dma_write(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr, &byte, 1),
			 -EFAULT);
	assert_int_equal(dmabuf_device_get_faults(dev, &fault, 1), 1);
	assert_int_equal(fault.reason, DMABUF_FAULT_READ_ONLY);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(proxy, att), 0);
	assert_int_equal(dmabuf_put(proxy), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
}

/* An O_WRONLY buffer, as the kernel's: no holder maps its file (do_mmap()
 * wants FMODE_READ), while devices on both sides read and write it. */
static void write_only_share_cannot_be_mapped(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_WRONLY, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(imp, "dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf *proxy;
	uint8_t *p, byte = 0x5a, back = 0;
	void *v;
	int fd = dmabuf_fd(buf, O_CLOEXEC);

	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_WRONLY);
	assert_ptr_equal(mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0), MAP_FAILED);
	assert_int_equal(errno, EACCES);
	assert_int_equal(dmabuf_mmap(buf, 0, MiB, PROT_READ, (void **)&p), -EACCES);
	assert_int_equal(dmabuf_mmap(buf, 0, MiB, PROT_WRITE, (void **)&p), -EACCES);
	assert_int_equal(tx.mmap, 0);
	assert_int_equal(dmabuf_begin_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_end_cpu_access(buf, DMABUF_BIDIRECTIONAL), 0);

	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	assert_int_equal(dmabuf_get_info(proxy, &info), 0);
	assert_int_equal(info.flags, O_WRONLY);
	assert_int_equal(dmabuf_mmap(proxy, 0, MiB, PROT_READ, (void **)&p), -EACCES);
	assert_int_equal(dmabuf_attach(proxy, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_BIDIRECTIONAL, &sgt), 0);
	/* the importer's device writes; the exporter's vmap sees it */
	uint64_t da = dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr + 100;
	assert_int_equal(dmabuf_dma_write(dev, da, &byte, 1), 0);
	assert_int_equal(dmabuf_dma_read(dev, da, &back, 1), 0);
	assert_int_equal(back, 0x5a);
	assert_int_equal(dmabuf_vmap(buf, &v), 0);
	assert_int_equal(((uint8_t *)v)[100], 0x5a);
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_BIDIRECTIONAL), 0);
	assert_int_equal(dmabuf_detach(proxy, att), 0);
	assert_int_equal(dmabuf_put(proxy), 0);
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
	assert_int_equal(tx.release, 1);
}

static void fd_without_exporter_is_rejected(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct dmabuf *buf;
	int fd = memfd_create("dmabuf:fake@dmabuf-1-0000000000000000",
			      MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	/* right name, no seals: not a buffer */
	assert_int_equal(dmabuf_get(ctx, fd, &buf), -EINVAL);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
	/* sealed, but nobody listens there */
	assert_int_equal(dmabuf_get(ctx, fd, &buf), -ENODEV);
	close(fd);
	dmabuf_ctx_destroy(ctx);
}

static void reimports_reuse_one_connection(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0), *imp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_info info = { 0 };
	struct dmabuf *proxy;
	int fd = dmabuf_fd(buf, O_CLOEXEC), fds;

	assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
	assert_int_equal(dmabuf_put(proxy), 0);
	fds = harness_count_fds();
	/* RELEASE does not wait for its reply; each later call drops the
	 * replies before its own, so none piles up and the exporter keeps
	 * every import balanced. */
	for (int i = 0; i < 300; i++) {
		assert_int_equal(dmabuf_get(imp, fd, &proxy), 0);
		assert_int_equal(dmabuf_put(proxy), 0);
	}
	assert_int_equal(harness_count_fds(), fds); /* one idle connection */
	for (int i = 0; i < 20; i++)
		dmabuf_ctx_dispatch(exp);
	assert_int_equal(dmabuf_get_info(buf, &info), 0);
	assert_int_equal(info.refcount, 1); /* every import was released */
	assert_int_equal(dmabuf_put(buf), 0);
	close(fd);
	dispatch_until(exp, &tx.release, 1);
	assert_int_equal(tx.release, 1);
	dmabuf_ctx_destroy(imp);
	dmabuf_ctx_destroy(exp);
}

/* ---- across fork --------------------------------------------------------- */

struct child_env {
	int sock;
	int mode;
};

/* The child: a device process that imports whatever fd it receives,
 * attaches, maps, writes a pattern by DMA and reports. */
static int device_process(void *arg)
{
	struct child_env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf_device *dev;
	struct dmabuf *buf;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	struct dmabuf_device_info info = { .name = "child-dev", .flags = DMABUF_DEVICE_IOMMU };
	uint8_t pattern[64];
	char c = 0;
	size_t len;
	int fd;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	child_check(dmabuf_device_new(ctx, &info, &dev) == 0);
	child_check(dmabuf_recv_fd(env->sock, &fd, &c, 1, &len) == 0);
	child_check(dmabuf_get(ctx, fd, &buf) == 0);
	child_check(dmabuf_attach(buf, dev, &att) == 0);
	child_check(dmabuf_map_attachment(att, DMABUF_FROM_DEVICE, &sgt) == 0);
	memset(pattern, 0x5a, sizeof(pattern));
	child_check(dmabuf_dma_write(dev, dmabuf_sg_table_get_dma_entries(sgt)[0].dma_addr,
				     pattern, sizeof(pattern)) == 0);
	child_check(dmabuf_send_fd(env->sock, -1, "m", 1) == 0);
	if (env->mode == 1) /* wait to be killed while holding everything */
		for (int i = 0; i < 300; i++)
			usleep(100000);
	child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_FROM_DEVICE) == 0);
	child_check(dmabuf_detach(buf, att) == 0);
	child_check(dmabuf_put(buf) == 0);
	close(fd);
	dmabuf_ctx_destroy(ctx);
	child_check(dmabuf_send_fd(env->sock, -1, "d", 1) == 0);
	return 0;
}

static void child_process_imports_and_writes(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct child_env env = { .mode = 0 };
	int sv[2], fd = dmabuf_fd(buf, O_CLOEXEC);
	uint8_t *v;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(device_process, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	assert_int_equal(tx_wait_byte(sv[0], exp), 'm');
	assert_int_equal(tx.map, 1);
	assert_int_equal(dmabuf_vmap(buf, (void **)&v), 0);
	assert_int_equal(v[0], 0x5a);
	assert_int_equal(v[63], 0x5a);
	assert_int_equal(v[64], 0);
	assert_int_equal(dmabuf_vunmap(buf, v), 0);
	assert_int_equal(tx_wait_byte(sv[0], exp), 'd');
	assert_int_equal(harness_wait(pid), 0);
	/* Unmap and detach of another process are one-way: they reach the
	 * exporter in order, but the byte on the side channel may come
	 * first. */
	dispatch_until(exp, &tx.detach, 1);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(dmabuf_put(buf), 0);
	dispatch_until(exp, &tx.release, 1);
	assert_int_equal(tx.release, 1);
	close(sv[0]);
	dmabuf_ctx_destroy(exp);
}

static void killed_importer_is_cleaned_up_once(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct child_env env = { .mode = 1 };
	struct dmabuf_info info = { 0 };
	int sv[2], fd = dmabuf_fd(buf, O_CLOEXEC);
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(device_process, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	assert_int_equal(tx_wait_byte(sv[0], exp), 'm');
	assert_int_equal(dmabuf_put(buf), 0); /* only the child holds it now */
	assert_int_equal(tx.release, 0);
	kill(pid, SIGKILL);
	assert_int_equal(harness_wait(pid), 128 + SIGKILL);
	dispatch_until(exp, &tx.release, 1);
	/* everything the child held was undone, exactly once, then released */
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(tx.release, 1);
	for (int i = 0; i < 10; i++)
		dmabuf_ctx_dispatch_timeout(exp, 2);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(tx.detach, 1);
	assert_int_equal(tx.release, 1);
	assert_int_equal(dmabuf_get_info(buf, &info), -EINVAL);
	close(sv[0]);
	dmabuf_ctx_destroy(exp);
}

/* Two processes that export to each other, with no service thread: each
 * imports the other's buffer while the other does the same. */
static int mutual_peer(void *arg)
{
	int sock = *(int *)arg;
	struct dmabuf_ctx *ctx;
	struct test_exporter tx = { 0 };
	struct dmabuf_export_info info = {
		.exp_name = "child", .ops = &tx_ops, .size = MiB, .flags = O_RDWR, .priv = &tx,
	};
	struct dmabuf_device_info di = { .name = "child-dev", .flags = DMABUF_DEVICE_IOMMU };
	struct dmabuf_device *dev;
	struct dmabuf *mine, *theirs;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	char c;
	size_t len;
	int fd, got;

	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	child_check(dmabuf_device_new(ctx, &di, &dev) == 0);
	child_check(dmabuf_export(ctx, &info, &mine) == 0);
	fd = dmabuf_fd(mine, O_CLOEXEC);
	child_check(dmabuf_send_fd(sock, fd, "x", 1) == 0);
	child_check(dmabuf_recv_fd(sock, &got, &c, 1, &len) == 0);
	child_check(dmabuf_get(ctx, got, &theirs) == 0);
	child_check(dmabuf_attach(theirs, dev, &att) == 0);
	child_check(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt) == 0);
	child_check(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE) == 0);
	child_check(dmabuf_detach(theirs, att) == 0);
	child_check(dmabuf_put(theirs) == 0);
	close(got);
	/* stay to serve the parent until it is done with our buffer */
	child_check(dmabuf_send_fd(sock, -1, "k", 1) == 0);
	for (int i = 0; i < 3000; i++) { /* at most ~30 s if the parent fails */
		struct pollfd p[2] = { { .fd = sock, .events = POLLIN },
				       { .fd = dmabuf_ctx_get_fd(ctx), .events = POLLIN } };

		poll(p, 2, 10);
		if (p[1].revents)
			dmabuf_ctx_dispatch(ctx);
		if (p[0].revents)
			break;
	}
	child_check(tx.map == 1 && tx.unmap == 1);
	close(fd);
	dmabuf_put(mine);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void processes_exporting_to_each_other_do_not_deadlock(void **state)
{
	struct dmabuf_ctx *ctx = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *mine = tx_export(ctx, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct dmabuf_device *dev = tx_device(ctx, "parent-dev", 64, DMABUF_DEVICE_IOMMU, 0);
	struct dmabuf *theirs;
	struct dmabuf_attachment *att;
	struct dmabuf_sg_table *sgt;
	int sv[2], fd = dmabuf_fd(mine, O_CLOEXEC), got, child_sock;
	char c;
	size_t len;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	child_sock = sv[1];
	pid = harness_fork_sock(mutual_peer, &child_sock, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "x", 1), 0);
	assert_int_equal(dmabuf_recv_fd(sv[0], &got, &c, 1, &len), 0);
	/* Both sides now import at once: each waits for the other's reply
	 * while serving the other's requests. */
	assert_int_equal(dmabuf_get(ctx, got, &theirs), 0);
	assert_int_equal(dmabuf_attach(theirs, dev, &att), 0);
	assert_int_equal(dmabuf_map_attachment(att, DMABUF_TO_DEVICE, &sgt), 0);
	assert_int_equal(dmabuf_unmap_attachment(att, sgt, DMABUF_TO_DEVICE), 0);
	assert_int_equal(dmabuf_detach(theirs, att), 0);
	assert_int_equal(dmabuf_put(theirs), 0);
	close(got);
	assert_int_equal(tx_wait_byte(sv[0], ctx), 'k');
	dispatch_until(ctx, &tx.unmap, 1); /* one-way from the child */
	assert_int_equal(tx.map, 1);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(dmabuf_send_fd(sv[0], -1, "q", 1), 0);
	assert_int_equal(harness_wait(pid), 0);
	close(sv[0]);
	close(fd);
	assert_int_equal(dmabuf_put(mine), 0);
	dmabuf_ctx_destroy(ctx);
}

/* The exporter serves from its own thread: the test thread never
 * dispatches, it only waits on the socket. */
static void service_thread_serves_peers(void **state)
{
	struct dmabuf_ctx *exp = tx_ctx_new(0);
	struct test_exporter tx = { 0 };
	struct dmabuf *buf = tx_export(exp, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
	struct child_env env = { .mode = 0 };
	int sv[2], fd = dmabuf_fd(buf, O_CLOEXEC), got = -1;
	size_t len;
	char c = 0;
	pid_t pid;

	assert_int_equal(dmabuf_ctx_stop_thread(exp), -ESRCH);
	assert_int_equal(dmabuf_ctx_start_thread(exp), 0);
	assert_int_equal(dmabuf_ctx_start_thread(exp), -EBUSY);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	env.sock = sv[1];
	pid = harness_fork_sock(device_process, &env, sv[0]);
	close(sv[1]);
	assert_int_equal(dmabuf_send_fd(sv[0], fd, "f", 1), 0);
	close(fd);
	assert_int_equal(dmabuf_recv_fd(sv[0], &got, &c, 1, &len), 0);
	assert_int_equal(c, 'm');
	assert_int_equal(dmabuf_recv_fd(sv[0], &got, &c, 1, &len), 0);
	assert_int_equal(c, 'd');
	assert_int_equal(harness_wait(pid), 0);
	assert_int_equal(dmabuf_ctx_stop_thread(exp), 0);
	dispatch_until(exp, &tx.unmap, 1); /* one-way: may still be queued */
	assert_int_equal(tx.map, 1);
	assert_int_equal(tx.unmap, 1);
	assert_int_equal(dmabuf_put(buf), 0);
	dispatch_until(exp, &tx.release, 1);
	assert_int_equal(tx.release, 1);
	close(sv[0]);
	dmabuf_ctx_destroy(exp);
}

struct uid_env {
	int fd;
	int expect;
};

static int import_as_nobody(void *arg)
{
	struct uid_env *env = arg;
	struct dmabuf_ctx *ctx;
	struct dmabuf *buf;
	int ret;

	child_check(setgid(65534) == 0 && setuid(65534) == 0);
	child_check(dmabuf_ctx_new(NULL, &ctx) == 0);
	/* The handshake's answer comes with the first call that needs the
	 * exporter (HELLO and IMPORT are sent without waiting). */
	ret = dmabuf_get(ctx, env->fd, &buf);
	if (ret == 0) {
		ret = dmabuf_set_name(buf, "uid");
		dmabuf_put(buf);
	}
	child_check(ret == env->expect);
	dmabuf_ctx_destroy(ctx);
	return 0;
}

static void endpoint_checks_peer_uid(void **state)
{
	struct dmabuf_ctx *exp;
	struct test_exporter tx = { 0 };
	struct dmabuf *buf;
	struct uid_env env;
	pid_t pid;

	if (geteuid() != 0)
		skip(); /* needs to become another user */
	for (int any = 0; any < 2; any++) {
		exp = tx_ctx_new(any ? DMABUF_CTX_ANY_UID : 0);
		buf = tx_export(exp, &tx, MiB, O_RDWR, DMABUF_ALLOC_SYSTEM);
		env.fd = dmabuf_fd(buf, O_CLOEXEC);
		/* another uid is turned away unless the exporter opted in */
		env.expect = any ? 0 : -ENODEV;
		int status = -1;

		pid = harness_fork(import_as_nobody, &env);
		for (int i = 0; i < 3000; i++) {
			if (waitpid(pid, &status, WNOHANG) == pid) {
				pid = 0;
				break;
			}
			dmabuf_ctx_dispatch_timeout(exp, 5);
		}
		assert_int_equal(pid, 0);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0); /* the child's checks held */
		close(env.fd);
		assert_int_equal(dmabuf_put(buf), 0);
		dmabuf_ctx_destroy(exp);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		harness_test(two_contexts_share_a_buffer),
		harness_test(empty_name_is_a_name_on_both_sides),
		harness_test(proxy_put_inside_brackets_ends_them_once),
		harness_test(large_table_travels_in_a_memfd),
		harness_test(import_keeps_the_buffer_until_released),
		harness_test(exporter_refusal_reaches_importer),
		harness_test(read_only_share_stays_read_only),
		harness_test(write_only_share_cannot_be_mapped),
		harness_test(fd_without_exporter_is_rejected),
		harness_test(reimports_reuse_one_connection),
		harness_test(child_process_imports_and_writes),
		harness_test(killed_importer_is_cleaned_up_once),
		harness_test(processes_exporting_to_each_other_do_not_deadlock),
		harness_test(service_thread_serves_peers),
		harness_test(endpoint_checks_peer_uid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
