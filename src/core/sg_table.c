/* SPDX-License-Identifier: MIT */
/*
 * sg tables: CPU entries (buffer offset, length, simulated physical address)
 * built from a buffer's physical runs, and the DMA entries one device sees
 * after the dma_map_sgtable() step done here: IOVA from the device's own
 * space behind an IOMMU, physical addresses otherwise, cut to the device's
 * segment limits either way.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "private.h"

/* ---- public accessors ----------------------------------------------------
 * Stale tables read as empty: the registry check keeps a freed table from
 * being dereferenced. */

static bool sgt_ok(const struct dmabuf_sg_table *sgt)
{
	return dmb_obj_live(sgt, DMB_OBJ_SG_TABLE);
}

DMABUF_EXPORT unsigned int dmabuf_sg_table_get_cpu_count(const struct dmabuf_sg_table *sgt)
{
	return sgt_ok(sgt) ? sgt->cpu_count : 0;
}

DMABUF_EXPORT const struct dmabuf_sg_entry *
dmabuf_sg_table_get_cpu_entries(const struct dmabuf_sg_table *sgt)
{
	return sgt_ok(sgt) ? sgt->cpu : NULL;
}

DMABUF_EXPORT unsigned int dmabuf_sg_table_get_dma_count(const struct dmabuf_sg_table *sgt)
{
	return sgt_ok(sgt) ? sgt->dma_count : 0;
}

DMABUF_EXPORT const struct dmabuf_dma_entry *
dmabuf_sg_table_get_dma_entries(const struct dmabuf_sg_table *sgt)
{
	return sgt_ok(sgt) ? sgt->dma : NULL;
}

DMABUF_EXPORT uint64_t dmabuf_sg_table_get_size(const struct dmabuf_sg_table *sgt)
{
	return sgt_ok(sgt) ? sgt->size : 0;
}

/* ---- building ------------------------------------------------------------ */

int dmb_sgt_new(struct dmabuf_sg_table **out)
{
	struct dmabuf_sg_table *sgt;
	int ret;

	if (!out)
		return -EINVAL;
	sgt = calloc(1, sizeof(*sgt));
	if (!sgt)
		return -ENOMEM;
	ret = dmb_obj_add(sgt, DMB_OBJ_SG_TABLE);
	if (ret < 0) {
		free(sgt);
		return ret;
	}
	*out = sgt;
	return 0;
}

void dmb_sgt_free(struct dmabuf_sg_table *sgt)
{
	if (!sgt)
		return;
	/* Defensive: a table freed while mapped must leave no translation
	 * behind pointing into it. */
	dmb_sgt_dma_unmap(sgt);
	dmb_obj_del(sgt);
	free(sgt->cpu);
	free(sgt);
}

static int cpu_reserve(struct dmabuf_sg_table *sgt, size_t extra)
{
	size_t need = (size_t)sgt->cpu_count + extra, cap = sgt->cpu_cap;
	struct dmabuf_sg_entry *e;

	if (need <= cap)
		return 0;
	if (need > UINT_MAX)
		return -ENOMEM;
	while (cap < need)
		cap = cap ? cap * 2 : 8;
	if (cap > UINT_MAX)
		cap = UINT_MAX;
	e = realloc(sgt->cpu, cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	sgt->cpu = e;
	sgt->cpu_cap = (unsigned int)cap;
	return 0;
}

int dmb_sgt_append(struct dmabuf_sg_table *sgt, uint64_t offset, uint64_t len,
		   uint64_t phys)
{
	struct dmabuf_sg_entry *last;
	int ret;

	/* Entries cover the buffer in order, whole pages, without gaps: DMA
	 * entries derive their buffer offsets from that. */
	if (!sgt || sgt->mapped_dev || offset != sgt->size || !len ||
	    !DMB_ALIGNED(len | phys, DMB_PAGE_SIZE) || phys + len < phys ||
	    offset + len < offset)
		return -EINVAL;
	last = sgt->cpu_count ? &sgt->cpu[sgt->cpu_count - 1] : NULL;
	if (last && last->phys + last->length == phys) {
		last->length += len;
	} else {
		ret = cpu_reserve(sgt, 1);
		if (ret < 0)
			return ret;
		sgt->cpu[sgt->cpu_count++] = (struct dmabuf_sg_entry){
			.offset = offset, .length = len, .phys = phys,
		};
	}
	sgt->size += len;
	return 0;
}

int dmb_sgt_from_runs(struct dmabuf_sg_table *sgt,
		      const struct dmb_phys_run *runs, size_t nruns)
{
	unsigned int count0;
	uint64_t size0, last_len0;
	int ret;

	if (!sgt || (!runs && nruns))
		return -EINVAL;
	/* One allocation up front: the loop below cannot fail for memory. */
	ret = cpu_reserve(sgt, nruns);
	if (ret < 0)
		return ret;
	count0 = sgt->cpu_count;
	size0 = sgt->size;
	last_len0 = count0 ? sgt->cpu[count0 - 1].length : 0;
	for (size_t i = 0; i < nruns; i++) {
		ret = dmb_sgt_append(sgt, sgt->size, runs[i].npages << DMB_PAGE_SHIFT,
				     runs[i].addr);
		if (ret < 0) {
			/* undo, including a merge into the last old entry */
			if (count0)
				sgt->cpu[count0 - 1].length = last_len0;
			sgt->cpu_count = count0;
			sgt->size = size0;
			return ret;
		}
	}
	return 0;
}

/* ---- device mapping ------------------------------------------------------ */

/* How a device cuts a mapping into DMA entries. */
struct cut_rule {
	uint64_t max_len;	/* max_segment_size, aligned down to alignment */
	uint64_t bmask;		/* segment boundary mask; UINT64_MAX: none */
};

/*
 * Cuts [addr, addr + len) (buffer offset `offset`) into entries; writes them
 * to out when non-NULL. Returns how many there are.
 */
static size_t cut(const struct cut_rule *r, uint64_t addr, uint64_t len,
		  uint64_t offset, struct dmabuf_dma_entry *out)
{
	size_t n = 0;

	while (len) {
		uint64_t l = len < r->max_len ? len : r->max_len;

		if (r->bmask != UINT64_MAX) {
			uint64_t room = (addr | r->bmask) - addr + 1;

			if (l > room)
				l = room;
		}
		if (out)
			out[n] = (struct dmabuf_dma_entry){
				.dma_addr = addr, .length = l, .offset = offset,
			};
		n++;
		addr += l;
		offset += l;
		len -= l;
	}
	return n;
}

/* Every DMA entry of the table for dev (out NULL: just count). */
static size_t layout(const struct dmabuf_sg_table *sgt, const struct dmabuf_device *dev,
		     const struct cut_rule *r, uint64_t iova,
		     struct dmabuf_dma_entry *out)
{
	size_t n = 0;

	if (dev->info.flags & DMABUF_DEVICE_IOMMU)
		return cut(r, iova, sgt->size, 0, out);
	for (unsigned int i = 0; i < sgt->cpu_count; i++) {
		const struct dmabuf_sg_entry *e = &sgt->cpu[i];

		n += cut(r, e->phys, e->length, e->offset, out ? out + n : NULL);
	}
	return n;
}

static const char *dir_name(enum dmabuf_direction dir)
{
	switch (dir) {
	case DMABUF_BIDIRECTIONAL: return "bidirectional";
	case DMABUF_TO_DEVICE: return "to-device";
	case DMABUF_FROM_DEVICE: return "from-device";
	default: return "none";
	}
}

/* Translation nodes for the mapping: one for the whole IOVA range behind an
 * IOMMU (buffer offsets run along with it), one per CPU entry without (a
 * physical run, which dmb_sgt_append() keeps maximal). */
static size_t node_count(const struct dmabuf_sg_table *sgt, bool iommu)
{
	return iommu ? 1 : sgt->cpu_count;
}

static void nodes_fill(const struct dmabuf_sg_table *sgt, bool iommu, uint64_t iova,
		       struct dmb_dma_seg *segs)
{
	if (iommu) {
		segs[0].dma_addr = iova;
		segs[0].length = sgt->size;
		segs[0].offset = 0;
		return;
	}
	for (unsigned int i = 0; i < sgt->cpu_count; i++) {
		segs[i].dma_addr = sgt->cpu[i].phys;
		segs[i].length = sgt->cpu[i].length;
		segs[i].offset = sgt->cpu[i].offset;
	}
}

static int dma_map(struct dmabuf_sg_table *sgt, struct dmabuf_device *dev,
		   enum dmabuf_direction dir, uint8_t *cpu_base,
		   struct dmb_backing *backing, bool writable)
{
	const struct dmabuf_device_info *di;
	struct dmabuf_dma_entry *dma = NULL;
	struct dmb_dma_seg *segs = NULL;
	struct cut_rule rule;
	uint64_t iova = 0, align;
	bool iommu;
	size_t n = 0, nnodes, inserted = 0;
	int ret;

	if (!sgt || !dev || (!cpu_base && !backing) || sgt->mapped_dev || !sgt->cpu_count ||
	    (dir != DMABUF_BIDIRECTIONAL && dir != DMABUF_TO_DEVICE &&
	     dir != DMABUF_FROM_DEVICE))
		return -EINVAL;
	di = &dev->info;
	iommu = di->flags & DMABUF_DEVICE_IOMMU;
	align = di->alignment;
	rule.bmask = di->segment_boundary;
	rule.max_len = di->max_segment_size >= align
			       ? di->max_segment_size & ~(align - 1)
			       : di->max_segment_size;

	if (iommu) {
		ret = dmb_iova_alloc(&dev->iova, sgt->size, align, &iova);
		if (ret < 0) {
			dmb_info(dev->ctx, "map for %s: no %llu bytes of IOVA space left",
				 dev->name, (unsigned long long)sgt->size);
			return ret;
		}
	} else {
		for (unsigned int i = 0; i < sgt->cpu_count; i++) {
			const struct dmabuf_sg_entry *e = &sgt->cpu[i];

			if (e->phys + e->length - 1 > dev->dma_mask) {
				dmb_info(dev->ctx, "map for %s: frame %#llx beyond the %u-bit DMA mask",
					 dev->name,
					 (unsigned long long)(e->phys + e->length - 1),
					 di->dma_mask_bits);
				return -EIO;
			}
		}
	}

	n = layout(sgt, dev, &rule, iova, NULL);
	ret = -EINVAL;
	if ((di->flags & DMABUF_DEVICE_CONTIGUOUS) && n != 1) {
		dmb_info(dev->ctx, "map for %s: needs one contiguous segment, the layout has %zu (%u physical run(s))",
			 dev->name, n, sgt->cpu_count);
		goto fail;
	}
	ret = -ENOMEM;
	if (n > UINT_MAX)
		goto fail;
	nnodes = node_count(sgt, iommu);
	dma = malloc(n * sizeof(*dma));
	segs = calloc(nnodes, sizeof(*segs));
	if (!dma || !segs)
		goto fail;
	layout(sgt, dev, &rule, iova, dma);
	/* Without an IOMMU the frames decide where segments start; behind
	 * one, the range is aligned and cut at aligned lengths when the
	 * segment size allows. */
	ret = -EINVAL;
	for (size_t i = 0; i < n && !iommu; i++) {
		if (!DMB_ALIGNED(dma[i].dma_addr, align)) {
			dmb_info(dev->ctx, "map for %s: segment at %#llx violates the %#llx alignment",
				 dev->name, (unsigned long long)dma[i].dma_addr,
				 (unsigned long long)align);
			goto fail;
		}
	}
	nodes_fill(sgt, iommu, iova, segs);
	for (inserted = 0; inserted < nnodes; inserted++) {
		struct dmb_dma_seg *s = &segs[inserted];

		s->dir = dir;
		s->writable = writable;
		s->sgt = sgt;
		ret = dmb_dma_insert(dev, s);
		if (ret < 0)
			goto fail;
	}
	sgt->dma = dma;
	sgt->dma_count = (unsigned int)n;
	sgt->segs = segs;
	sgt->nsegs = (unsigned int)nnodes;
	sgt->cpu_base = cpu_base;
	sgt->backing = cpu_base ? NULL : backing;
	sgt->mapped_dev = dev;
	sgt->iova_base = iova;
	sgt->iova_size = iommu ? sgt->size : 0;
	dmb_dbg(dev->ctx, "mapped %llu bytes for %s (%s): %u CPU entr%s, %zu DMA entr%s at %#llx",
		(unsigned long long)sgt->size, dev->name, dir_name(dir),
		sgt->cpu_count, sgt->cpu_count == 1 ? "y" : "ies", n,
		n == 1 ? "y" : "ies", (unsigned long long)dma[0].dma_addr);
	return 0;

fail:
	/* Only a duplicate key fails an insert, which unique seqs rule out;
	 * still, leave the tree as it was. */
	for (size_t i = 0; i < inserted; i++)
		dmb_dma_remove(dev, &segs[i]);
	if (iommu)
		dmb_iova_free(&dev->iova, iova);
	free(dma);
	free(segs);
	return ret;
}

int dmb_sgt_dma_map(struct dmabuf_sg_table *sgt, struct dmabuf_device *dev,
		    enum dmabuf_direction dir, uint8_t *cpu_base, bool writable)
{
	if (!cpu_base)
		return -EINVAL;
	return dma_map(sgt, dev, dir, cpu_base, NULL, writable);
}

int dmb_sgt_dma_map_backing(struct dmabuf_sg_table *sgt, struct dmabuf_device *dev,
			    enum dmabuf_direction dir, struct dmb_backing *backing,
			    bool writable)
{
	if (!backing)
		return -EINVAL;
	return dma_map(sgt, dev, dir, NULL, backing, writable);
}

void dmb_sgt_dma_unmap(struct dmabuf_sg_table *sgt)
{
	struct dmabuf_device *dev;

	if (!sgt || !sgt->mapped_dev)
		return;
	dev = sgt->mapped_dev;
	for (unsigned int i = 0; i < sgt->nsegs; i++)
		dmb_dma_remove(dev, &sgt->segs[i]);
	if (sgt->iova_size)
		dmb_iova_free(&dev->iova, sgt->iova_base);
	free(sgt->segs);
	free(sgt->dma);
	sgt->segs = NULL;
	sgt->nsegs = 0;
	sgt->dma = NULL;
	sgt->dma_count = 0;
	sgt->cpu_base = NULL;
	sgt->backing = NULL;
	sgt->iova_base = sgt->iova_size = 0;
	sgt->mapped_dev = NULL;
}
