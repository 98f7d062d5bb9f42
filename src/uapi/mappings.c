/* SPDX-License-Identifier: MIT */
/*
 * The program's own mappings of dma-bufs, for the two checks the kernel
 * cannot make (both off unless asked for):
 * - the leak report lists the ones still mapped at exit;
 * - strict CPU access (DMABUF_UAPI_STRICT) keeps them PROT_NONE outside a
 *   DMA_BUF_IOCTL_SYNC START/END bracket of this process, and a fault in
 *   one is reported with the buffer's name before the process dies of it.
 * Entries are made by the preload's mmap and dropped by its munmap; at
 * exit what is listed is checked against /proc/self/maps, the truth.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <dmabuf.h>

#include "core.h"

#define MAX_MAPS 1024

struct map {
	uintptr_t addr;
	size_t len;
	dev_t dev;
	ino_t ino;
	int prot;
	char what[96];	/* preformatted for the signal handler */
};

static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
static struct map maps[MAX_MAPS];
static unsigned int nmaps;

/* Open SYNC brackets of this process, per buffer. */
static struct {
	dev_t dev;
	ino_t ino;
	int depth;
} brackets[64];

static struct sigaction old_segv;
static bool handler_installed;

static int bracket_depth_locked(dev_t dev, ino_t ino)
{
	unsigned int i;

	for (i = 0; i < sizeof(brackets) / sizeof(brackets[0]); i++)
		if (brackets[i].depth && brackets[i].ino == ino && brackets[i].dev == dev)
			return brackets[i].depth;
	return 0;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	unsigned int i;

	for (i = 0; i < nmaps; i++) {
		if (a >= maps[i].addr && a < maps[i].addr + maps[i].len) {
			static const char pre[] = "dmabuf-run: CPU access to ";
			static const char post[] = " outside a DMA_BUF_IOCTL_SYNC START/END "
						   "bracket (strict CPU access)\n";

			if (write(STDERR_FILENO, pre, sizeof(pre) - 1) < 0 ||
			    write(STDERR_FILENO, maps[i].what, strlen(maps[i].what)) < 0 ||
			    write(STDERR_FILENO, post, sizeof(post) - 1) < 0) {
				/* dying anyway */
			}
			break;
		}
	}
	/* Die of it as the program would have, or let its handler run. */
	sigaction(SIGSEGV, &old_segv, NULL);
	if (!(old_segv.sa_flags & SA_SIGINFO) && old_segv.sa_handler == SIG_DFL)
		return; /* the access faults again, with the default action */
	if (old_segv.sa_flags & SA_SIGINFO)
		old_segv.sa_sigaction(sig, si, uc);
	else if (old_segv.sa_handler != SIG_IGN)
		old_segv.sa_handler(sig);
}

/* "dma-buf '<name>' (<exp_name>, ino N)", made ahead for the handler. */
static void describe(int fd, const struct stat *st, char *what, size_t size)
{
	struct dmabuf_info info = { .struct_size = sizeof(info) };
	struct dmabuf *buf;

	snprintf(what, size, "dma-buf (ino %llu)", (unsigned long long)st->st_ino);
	if (dmb_uapi_get_buf(fd, &buf) == 0) {
		if (dmabuf_get_info(buf, &info) == 0)
			snprintf(what, size, "dma-buf '%s' (%s, ino %llu)",
				 info.name[0] ? info.name : "(no name)", info.exp_name,
				 (unsigned long long)st->st_ino);
		dmabuf_put(buf);
	}
}

void dmb_uapi_map_renamed(int fd)
{
	struct stat st;
	unsigned int i;

	if (fstat(fd, &st) < 0)
		return;
	pthread_mutex_lock(&maps_lock);
	for (i = 0; i < nmaps; i++)
		if (maps[i].ino == st.st_ino && maps[i].dev == st.st_dev)
			describe(fd, &st, maps[i].what, sizeof(maps[i].what));
	pthread_mutex_unlock(&maps_lock);
}

void dmb_uapi_map_note(void *addr, size_t len, int prot, int fd)
{
	const struct dmb_uapi_config *cfg = dmb_uapi_config();
	struct stat st;
	struct map *m;

	if ((!cfg->leaks && !cfg->strict) || fstat(fd, &st) < 0)
		return;
	pthread_mutex_lock(&maps_lock);
	if (nmaps == MAX_MAPS) {
		pthread_mutex_unlock(&maps_lock);
		return;
	}
	m = &maps[nmaps];
	m->addr = (uintptr_t)addr;
	m->len = (len + DMB_UAPI_PAGE - 1) & ~(size_t)(DMB_UAPI_PAGE - 1);
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->prot = prot;
	describe(fd, &st, m->what, sizeof(m->what));
	nmaps++;
	if (cfg->strict && !bracket_depth_locked(st.st_dev, st.st_ino))
		mprotect(addr, m->len, PROT_NONE);
	if (cfg->strict && !handler_installed) {
		struct sigaction sa = { 0 };

		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigemptyset(&sa.sa_mask);
		handler_installed = sigaction(SIGSEGV, &sa, &old_segv) == 0;
	}
	pthread_mutex_unlock(&maps_lock);
}

void dmb_uapi_map_forget(void *addr, size_t len)
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + len;
	unsigned int i;

	pthread_mutex_lock(&maps_lock);
	for (i = 0; i < nmaps;) {
		if (maps[i].addr < hi && lo < maps[i].addr + maps[i].len)
			maps[i] = maps[--nmaps];
		else
			i++;
	}
	pthread_mutex_unlock(&maps_lock);
}

void dmb_uapi_map_sync(int fd, bool start)
{
	struct stat st;
	unsigned int i, free_slot = ~0u;
	int depth = 0;

	if (!dmb_uapi_config()->strict || fstat(fd, &st) < 0)
		return;
	pthread_mutex_lock(&maps_lock);
	for (i = 0; i < sizeof(brackets) / sizeof(brackets[0]); i++) {
		if (brackets[i].depth && brackets[i].ino == st.st_ino && brackets[i].dev == st.st_dev)
			break;
		if (!brackets[i].depth && free_slot == ~0u)
			free_slot = i;
	}
	if (i == sizeof(brackets) / sizeof(brackets[0])) {
		if (!start || free_slot == ~0u) {
			pthread_mutex_unlock(&maps_lock);
			return;
		}
		i = free_slot;
		brackets[i].dev = st.st_dev;
		brackets[i].ino = st.st_ino;
	}
	brackets[i].depth += start ? 1 : -1;
	depth = brackets[i].depth;
	for (i = 0; i < nmaps; i++)
		if (maps[i].ino == st.st_ino && maps[i].dev == st.st_dev)
			mprotect((void *)maps[i].addr, maps[i].len, depth > 0 ? maps[i].prot : PROT_NONE);
	pthread_mutex_unlock(&maps_lock);
}

int dmb_uapi_map_report(void)
{
	char line[512], want[40];
	unsigned int i;
	int leaks = 0;
	FILE *fp;

	pthread_mutex_lock(&maps_lock);
	for (i = 0; i < nmaps; i++) {
		bool mapped = false;

		/* Still mapped, to the same file? */
		snprintf(want, sizeof(want), "%lx-", (unsigned long)maps[i].addr);
		fp = fopen("/proc/self/maps", "re");
		while (fp && !mapped && fgets(line, sizeof(line), fp)) {
			unsigned long long ino;

			mapped = !strncmp(line, want, strlen(want)) &&
				 sscanf(line, "%*s %*s %*s %*s %llu", &ino) == 1 &&
				 ino == maps[i].ino;
		}
		if (fp)
			fclose(fp);
		if (!mapped)
			continue;
		fprintf(stderr, "dmabuf-run: leak: mapping %#lx (%zu bytes) of %s\n",
			(unsigned long)maps[i].addr, maps[i].len, maps[i].what);
		leaks++;
	}
	pthread_mutex_unlock(&maps_lock);
	return leaks;
}
