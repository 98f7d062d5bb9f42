/* SPDX-License-Identifier: MIT */
/*
 * Mappings: mmap() of a dma-buf goes to the core (dma_buf_mmap_internal()'s
 * checks, the buffer's memfd, strict CPU access), of a heap or udmabuf
 * device fails as on Linux; mremap() refuses to grow a dma-buf's mapping;
 * munmap() of the last mapping of a buffer may release it. The layer's
 * own mappings are recorded so that fdinfo leaves them out. Apart because
 * it is about the address space, not the fd table.
 */
/* Both the plain and the 64 entry points are defined here, so the headers
 * must not rename one into the other. */
#undef _FILE_OFFSET_BITS
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "preload-int.h"

REAL(mmap, void *, void *, size_t, int, int, int, off_t)
REAL(mmap64, void *, void *, size_t, int, int, int, off64_t)
REAL(mremap, void *, void *, size_t, size_t, int, ...)
REAL(munmap, int, void *, size_t)
REAL(fcntl, int, int, int, ...)
REAL(fopen, FILE *, const char *, const char *)

/* The program mapped a dma-buf once: only then can an munmap release one
 * (inherited by a forked child with the mappings, gone at exec). */
static atomic_bool mapped_dmabuf;

static void *emulated_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off,
			   bool *handled)
{
	void *map = IN_CORE(dmb_uapi_mmap(addr, len, prot, flags, fd, off));

	*handled = map != NULL;
	if (map && (intptr_t)map < 0 && (intptr_t)map > -4096) {
		dmb_uapi_trace("mmap(%p, %zu, %#x, %#x, %d <dma-buf>, %lld) = -1 %s", addr, len,
			       prot, flags, fd, (long long)off, strerror((int)-(intptr_t)map));
		errno = (int)-(intptr_t)map;
		return MAP_FAILED;
	}
	if (!map)
		map = get_mmap()(addr, len, prot, flags, fd, off);
	*handled = true;
	dmb_uapi_trace("mmap(%p, %zu, %#x, %#x, %d <dma-buf>, %lld) = %p", addr, len, prot,
		       flags, fd, (long long)off, map);
	if (map != MAP_FAILED)
		atomic_store_explicit(&mapped_dmabuf, true, memory_order_relaxed);
	if (map != MAP_FAILED && (flags & MAP_TYPE) == MAP_SHARED)
		dmb_uapi_map_note(map, len, prot, fd);
	return map;
}

/* do_mmap() on the heap or udmabuf device: the access checks, then no
 * ->mmap in their file_operations is ENODEV. */
static void *device_mmap(int fd, int prot, int flags)
{
	int fl = get_fcntl()(fd, F_GETFL);

	if (fl >= 0 && ((fl & O_ACCMODE) == O_WRONLY ||
			((flags & MAP_TYPE) == MAP_SHARED && (prot & PROT_WRITE) &&
			 (fl & O_ACCMODE) != O_RDWR)))
		errno = EACCES;
	else
		errno = ENODEV;
	return MAP_FAILED;
}

#define MMAP_WRAPPER(name, type)                                               \
	EXPORT void *name(void *addr, size_t len, int prot, int flags, int fd, type off) \
	{                                                                      \
		enum dmb_uapi_kind k = DMB_UAPI_NONE;                          \
		bool handled;                                                  \
		void *map;                                                     \
		if (!(flags & MAP_ANONYMOUS) && !LAYER_CALL())                 \
			k = dmb_preload_fd_kind(fd);                           \
		if (k == DMB_UAPI_HEAP || k == DMB_UAPI_UDMABUF)               \
			return device_mmap(fd, prot, flags);                   \
		if (k == DMB_UAPI_DMABUF) {                                    \
			map = emulated_mmap(addr, len, prot, flags, fd, off, &handled); \
			if (handled)                                           \
				return map;                                    \
		}                                                              \
		map = get_##name()(addr, len, prot, flags, fd, off);           \
		if (map != MAP_FAILED && !(flags & MAP_ANONYMOUS) && LAYER_CALL() && \
		    LAYER_OWNED())                                             \
			dmb_layer_map_note(map, len);                          \
		return map;                                                    \
	}
MMAP_WRAPPER(mmap, off_t)
MMAP_WRAPPER(mmap64, off64_t)

/* True if addr is in a mapping of a dma-buf's file (the buffer memfds are
 * named "dmabuf:..."), from /proc/self/maps. */
static bool in_dmabuf_mapping(uintptr_t addr)
{
	char line[512];
	bool found = false;
	FILE *fp = get_fopen()("/proc/self/maps", "re");

	if (!fp)
		return false;
	while (!found && fgets(line, sizeof(line), fp)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && addr >= lo && addr < hi)
			found = strstr(line, "/memfd:dmabuf:") != NULL;
	}
	fclose(fp);
	return found;
}

/* dma_buf_mmap_internal() sets VM_DONTEXPAND: vma_to_resize() refuses to
 * grow the mapping with EFAULT. Shrinking and moving are the real call's. */
EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	va_list ap;
	void *new_addr;

	va_start(ap, flags);
	new_addr = flags & MREMAP_FIXED ? va_arg(ap, void *) : NULL;
	va_end(ap);
	if (new_len > old_len && !((uintptr_t)old & (DMB_UAPI_PAGE - 1)) && !LAYER_CALL() &&
	    atomic_load_explicit(&dmb_preload_active, memory_order_relaxed) &&
	    in_dmabuf_mapping((uintptr_t)old)) {
		errno = EFAULT;
		return MAP_FAILED;
	}
	return get_mremap()(old, old_len, new_len, flags, new_addr);
}

EXPORT int munmap(void *addr, size_t len)
{
	int ret;

	/* The library's mappings (a udmabuf's) are made by emulated_mmap. */
	if (atomic_load_explicit(&mapped_dmabuf, memory_order_relaxed) && !LAYER_CALL() &&
	    IN_CORE(dmb_uapi_munmap_lib(addr, len)))
		ret = 0;
	else
		ret = get_munmap()(addr, len);
	if (!ret && LAYER_CALL())
		dmb_layer_map_forget(addr, len);
	/* The last mapping of a buffer may have gone: release it now. */
	if (!ret && atomic_load_explicit(&mapped_dmabuf, memory_order_relaxed) && !LAYER_CALL()) {
		dmb_uapi_map_forget(addr, len);
		IN_CORE_VOID(dmb_uapi_closed(DMB_UAPI_DMABUF, 0, 0));
	}
	return ret;
}
