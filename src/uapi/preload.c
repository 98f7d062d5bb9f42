/* SPDX-License-Identifier: MIT */
/*
 * libdmabuf-preload.so: the libc interposition in front of the emulation
 * core (uapi.h). Every wrapper first decides, as cheaply as it can, whether
 * the call is the emulation's; everything else goes to the next definition
 * (RTLD_NEXT) at once:
 * - paths: a prefix test on the string, no syscall;
 * - ioctls: the number's type byte, no syscall, then one fstat; other
 *   numbers (not the VFS's own) one fstat if the fd is tagged (below), as
 *   the heap, udmabuf and dma-buf drivers see them;
 * - other calls on fds (read, write, lseek, mmap, fstat, fcntl, poll,
 *   select, close): one relaxed load of the fd's tag (fdplace.c), 0 for
 *   every fd that cannot be an emulated one; a tagged fd costs one fstat.
 * Calls made by libdmabuf itself or by this library are never emulated:
 * their return address is in one of the two objects.
 *
 * The wrappers are one file per family of calls (preload-int.h lists
 * them); this one holds what they all rest on: who is calling, start-up,
 * exit and fork.
 */
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <dmabuf.h>

#include "preload-int.h"

/* ---- who is calling ------------------------------------------------------- */

static uintptr_t self_lo, self_hi, lib_lo, lib_hi;
atomic_bool dmb_preload_active;

static int find_range(struct dl_phdr_info *info, size_t size, void *data)
{
	uintptr_t want = (uintptr_t)data, lo = UINTPTR_MAX, hi = 0;
	int i;

	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD)
			continue;
		if (info->dlpi_addr + ph->p_vaddr < lo)
			lo = info->dlpi_addr + ph->p_vaddr;
		if (info->dlpi_addr + ph->p_vaddr + ph->p_memsz > hi)
			hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
	}
	if (want >= lo && want < hi) {
		if (want == (uintptr_t)&self_lo) {
			self_lo = lo;
			self_hi = hi;
		} else {
			lib_lo = lo;
			lib_hi = hi;
		}
		return 1;
	}
	return 0;
}

bool dmb_preload_from_layer(const void *ra)
{
	uintptr_t a = (uintptr_t)ra;

	return (a >= self_lo && a < self_hi) || (a >= lib_lo && a < lib_hi);
}

bool dmb_preload_from_self(const void *ra)
{
	uintptr_t a = (uintptr_t)ra;

	return a >= self_lo && a < self_hi;
}

int dmb_uapi_leak_report(void);

/* Exit status of a run whose leaks are fatal (DMABUF_UAPI_LEAKS=fatal). */
#define LEAKS_EXIT_STATUS 99

static void report_leaks(void)
{
	int n = dmb_uapi_leak_report();

	if (n && dmb_uapi_config()->leaks == 2) {
		fprintf(stderr, "dmabuf-run: %d leak(s) and --leaks=fatal: exit status %d\n", n,
			LEAKS_EXIT_STATUS);
		fflush(NULL);
		_exit(LEAKS_EXIT_STATUS);
	}
}

static void forked_child(void)
{
	dmb_preload_pid = getpid();
	dmb_layer_forked();
	dmb_preload_epoll_forked();
	dmb_uapi_forked();
	dmb_preload_epoll_adopt();
}

__attribute__((constructor)) static void preload_init(void)
{
	dmb_preload_pid = getpid();
	dl_iterate_phdr(find_range, (void *)&self_lo);
	dl_iterate_phdr(find_range, (void *)(uintptr_t)&dmabuf_ctx_new);
	pthread_atfork(NULL, NULL, forked_child);
	dmb_uapi_init();
	/* Registered first, so it runs after the program's own handlers. */
	if (dmb_uapi_config()->leaks)
		atexit(report_leaks);
	/* Emulated fds inherited over exec are tagged and make this process
	 * active. */
	if (dmb_preload_tag_held())
		atomic_store(&dmb_preload_active, true);
}

__attribute__((destructor)) static void preload_fini(void)
{
	IN_CORE_VOID(dmb_uapi_exit());
}

const char *dmb_preload_kind_name(enum dmb_uapi_kind k)
{
	static const char *const names[] = { "-", "heap", "udmabuf", "dma-buf",
					     "sync_file", "sw_sync", "dir" };

	return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

