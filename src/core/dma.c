/* SPDX-License-Identifier: MIT */
/*
 * The simulated DMA engine: a device reads and writes through its own live
 * mappings only, as through an IOMMU. Each device keeps a translation tree
 * of live ranges keyed by (dma_addr, seq), one node per range that is
 * contiguous in device and buffer addresses (not per DMA entry); the seq
 * tie-break lets two mappings of the same frames on a device without IOMMU
 * coexist. Anything else is a fault: returned, recorded and logged, never
 * silently performed. The bytes are reached through the caller's base
 * address or the buffer's library mapping, made at the first access.
 */
#include <limits.h>
#include <string.h>

#include "private.h"

static int seg_cmp(const struct dmb_dma_seg *a, const struct dmb_dma_seg *b)
{
	if (a->dma_addr != b->dma_addr)
		return a->dma_addr < b->dma_addr ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

RB_GENERATE_STATIC(dmb_dma_tree, dmb_dma_seg, node, seg_cmp)

int dmb_dma_insert(struct dmabuf_device *dev, struct dmb_dma_seg *seg)
{
	seg->seq = ++dev->dma_seq;
	if (RB_INSERT(dmb_dma_tree, &dev->dma_tree, seg))
		return -EEXIST;
	if (seg->length > dev->dma_max_len)
		dev->dma_max_len = seg->length;
	return 0;
}

/* Remembers [start, start + len) as recently unmapped; a range that
 * continues the newest entry extends it, so unmapping a long mapping
 * segment by segment takes one slot, not thousands. */
static void unmapped_record(struct dmabuf_device *dev, uint64_t start, uint64_t len)
{
	if (dev->unmapped_count) {
		unsigned int last = (dev->unmapped_head + DMB_UNMAPPED_RING - 1) %
				    DMB_UNMAPPED_RING;
		uint64_t s = dev->unmapped[last].start, l = dev->unmapped[last].length;

		if (s + l == start) {
			dev->unmapped[last].length += len;
			return;
		}
		if (start + len == s) {
			dev->unmapped[last].start = start;
			dev->unmapped[last].length += len;
			return;
		}
	}
	dev->unmapped[dev->unmapped_head].start = start;
	dev->unmapped[dev->unmapped_head].length = len;
	dev->unmapped_head = (dev->unmapped_head + 1) % DMB_UNMAPPED_RING;
	if (dev->unmapped_count < DMB_UNMAPPED_RING)
		dev->unmapped_count++;
}

void dmb_dma_remove(struct dmabuf_device *dev, struct dmb_dma_seg *seg)
{
	RB_REMOVE(dmb_dma_tree, &dev->dma_tree, seg);
	if (RB_EMPTY(&dev->dma_tree))
		dev->dma_max_len = 0;
	unmapped_record(dev, seg->dma_addr, seg->length);
}

static bool was_unmapped(const struct dmabuf_device *dev, uint64_t addr)
{
	for (unsigned int i = 0; i < dev->unmapped_count; i++)
		if (addr - dev->unmapped[i].start < dev->unmapped[i].length)
			return true;
	return false;
}

/* The IOMMU's view of a mapping direction (dma_info_to_prot()). */
static bool seg_allows(const struct dmb_dma_seg *seg, bool write,
		       enum dmabuf_fault_reason *why)
{
	if (!write) {
		if (seg->dir == DMABUF_BIDIRECTIONAL || seg->dir == DMABUF_TO_DEVICE)
			return true;
		*why = DMABUF_FAULT_DIRECTION;
		return false;
	}
	if (seg->dir != DMABUF_BIDIRECTIONAL && seg->dir != DMABUF_FROM_DEVICE) {
		*why = DMABUF_FAULT_DIRECTION;
		return false;
	}
	if (!seg->writable) {
		*why = DMABUF_FAULT_READ_ONLY;
		return false;
	}
	return true;
}

/* The bytes behind seg, mapping the buffer first if nobody has yet; NULL
 * with *err set if that mapping fails. */
static uint8_t *seg_bytes(const struct dmb_dma_seg *seg, int *err)
{
	struct dmabuf_sg_table *sgt = seg->sgt;
	int ret;

	if (sgt->cpu_base)
		return sgt->cpu_base + seg->offset;
	if (!sgt->backing->map) {
		ret = dmb_backing_map_cpu(sgt->backing, true);
		/* Out of fds for the reopen: spare fds go first. */
		if (ret < 0 && sgt->mapped_dev && dmb_buf_spares_drop(sgt->mapped_dev->ctx, ret))
			ret = dmb_backing_map_cpu(sgt->backing, true);
		if (ret < 0) {
			*err = ret;
			return NULL;
		}
	}
	return sgt->backing->map + seg->offset;
}

/*
 * The node that translates addr for this access, and its bytes: the newest
 * node with the greatest start <= addr that covers addr and permits the
 * access, else an older or lower one that does (only the same frames
 * mapped more than once overlap). 0 and *out, -EFAULT with *why set, or
 * another -errno when the buffer cannot be mapped into this process.
 */
static int translate(struct dmabuf_device *dev, uint64_t addr, bool write,
		     const struct dmb_dma_seg **out, uint8_t **bytes,
		     enum dmabuf_fault_reason *why)
{
	struct dmb_dma_seg *n = RB_ROOT(&dev->dma_tree), *best = NULL;
	bool covered = false;
	int err = 0;

	while (n) {
		if (n->dma_addr <= addr) {
			best = n;
			n = RB_RIGHT(n, node);
		} else {
			n = RB_LEFT(n, node);
		}
	}
	/* Nodes further down than the longest one cannot reach addr. */
	for (n = best; n && addr - n->dma_addr < dev->dma_max_len;
	     n = RB_PREV(dmb_dma_tree, &dev->dma_tree, n)) {
		uint8_t *p;

		if (addr - n->dma_addr >= n->length)
			continue;
		covered = true;
		if (n->sgt && n->sgt->stale) {
			*why = DMABUF_FAULT_STALE;
			continue;
		}
		if (!seg_allows(n, write, why))
			continue;
		p = seg_bytes(n, &err);
		if (!p)
			return err;
		/* a mapping the memfd allowed only for reading */
		if (write && !n->sgt->cpu_base && !n->sgt->backing->map_writable) {
			*why = DMABUF_FAULT_READ_ONLY;
			continue;
		}
		*out = n;
		*bytes = p;
		return 0;
	}
	if (!covered)
		*why = was_unmapped(dev, addr) ? DMABUF_FAULT_AFTER_UNMAP
					       : DMABUF_FAULT_UNMAPPED;
	return -EFAULT;
}

static const char *reason_name(enum dmabuf_fault_reason r)
{
	switch (r) {
	case DMABUF_FAULT_UNMAPPED: return "no mapping";
	case DMABUF_FAULT_AFTER_UNMAP: return "DMA after unmap";
	case DMABUF_FAULT_DIRECTION: return "direction not allowed by the mapping";
	case DMABUF_FAULT_READ_ONLY: return "write to a read-only buffer";
	case DMABUF_FAULT_STALE: return "stale mapping (the buffer moved or was revoked)";
	}
	return "?";
}

static void fault_record(struct dmabuf_device *dev, uint64_t addr, uint64_t len,
			 bool write, enum dmabuf_fault_reason why, uint64_t at)
{
	struct dmabuf_dma_fault *f = &dev->faults[dev->fault_head];

	f->dma_addr = addr;
	f->length = len;
	f->write = write;
	f->reason = why;
	dev->fault_head = (dev->fault_head + 1) % DMB_FAULT_RING;
	if (dev->fault_kept < DMB_FAULT_RING)
		dev->fault_kept++;
	if (dev->fault_total < UINT_MAX)
		dev->fault_total++;
	dmb_warn(dev->ctx, "DMA fault: device %s %s %llu byte(s) at %#llx: %s at %#llx",
		 dev->name, write ? "write" : "read", (unsigned long long)len,
		 (unsigned long long)addr, reason_name(why), (unsigned long long)at);
}

/* Checks the whole access, then copies: a fault anywhere moves no byte. */
static int dma_access(struct dmabuf_device *dev, uint64_t addr, uint8_t *buf,
		      size_t len, bool write)
{
	enum dmabuf_fault_reason why = DMABUF_FAULT_UNMAPPED;
	const struct dmb_dma_seg *seg;
	uint64_t pos, left;
	uint8_t *p;
	int ret;

	if (len && addr + (len - 1) < addr) {
		fault_record(dev, addr, len, write, DMABUF_FAULT_UNMAPPED, addr);
		return -EFAULT;
	}
	for (pos = addr, left = len; left; ) {
		uint64_t n;

		ret = translate(dev, pos, write, &seg, &p, &why);
		if (ret == -EFAULT)
			fault_record(dev, addr, len, write, why, pos);
		else if (ret < 0)
			dmb_err(dev->ctx, "DMA by %s at %#llx: cannot map the buffer: %d",
				dev->name, (unsigned long long)pos, ret);
		if (ret < 0)
			return ret;
		n = seg->length - (pos - seg->dma_addr);
		if (n > left)
			n = left;
		pos += n;
		left -= n;
	}
	for (pos = addr, left = len; left; ) {
		uint64_t n;

		/* the same answers as above: nothing changed in between */
		(void)translate(dev, pos, write, &seg, &p, &why);
		p += pos - seg->dma_addr;
		n = seg->length - (pos - seg->dma_addr);
		if (n > left)
			n = left;
		if (write)
			memcpy(p, buf, n);
		else
			memcpy(buf, p, n);
		buf += n;
		pos += n;
		left -= n;
	}
	return 0;
}

static struct dmabuf_ctx *dev_lock(const struct dmabuf_device *dev)
{
	/* &dev->ctx of a NULL dev is undefined: check first */
	if (!dev)
		return NULL;
	return dmb_obj_lock_ctx(dev, DMB_OBJ_DEVICE, &dev->ctx);
}

DMABUF_EXPORT int dmabuf_dma_read(struct dmabuf_device *dev, uint64_t dma_addr,
				  void *dst, size_t len)
{
	struct dmabuf_ctx *ctx;
	int ret;

	if (!dst && len)
		return -EINVAL;
	ctx = dev_lock(dev);
	if (!ctx)
		return -EINVAL;
	ret = dma_access(dev, dma_addr, dst, len, false);
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_dma_write(struct dmabuf_device *dev, uint64_t dma_addr,
				   const void *src, size_t len)
{
	struct dmabuf_ctx *ctx;
	int ret;

	if (!src && len)
		return -EINVAL;
	ctx = dev_lock(dev);
	if (!ctx)
		return -EINVAL;
	/* dma_access() only reads from buf when writing. */
	ret = dma_access(dev, dma_addr, (uint8_t *)(uintptr_t)src, len, true);
	dmb_unlock(ctx);
	return ret;
}

DMABUF_EXPORT int dmabuf_device_get_faults(struct dmabuf_device *dev,
					   struct dmabuf_dma_fault *faults,
					   size_t max)
{
	struct dmabuf_ctx *ctx;
	unsigned int first, n;
	int ret;

	if (!faults && max)
		return -EINVAL;
	ctx = dev_lock(dev);
	if (!ctx)
		return -EINVAL;
	n = dev->fault_kept < max ? dev->fault_kept : (unsigned int)max;
	/* oldest kept first */
	first = (dev->fault_head + DMB_FAULT_RING - dev->fault_kept) % DMB_FAULT_RING;
	for (unsigned int i = 0; i < n; i++)
		faults[i] = dev->faults[(first + i) % DMB_FAULT_RING];
	ret = dev->fault_total > INT_MAX ? INT_MAX : (int)dev->fault_total;
	dev->fault_head = dev->fault_kept = dev->fault_total = 0;
	dmb_unlock(ctx);
	return ret;
}
