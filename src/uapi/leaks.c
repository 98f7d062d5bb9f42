/* SPDX-License-Identifier: MIT */
/*
 * The leak report (DMABUF_UAPI_LEAKS): at exit, every dma-buf fd, dma-buf
 * mapping and sync file the program still holds, with its name and the
 * call site that made it. What is held is read from the process itself
 * (/proc/self/fd, /proc/self/maps), so fds that were dup'd, inherited or
 * received count too; the creation backtraces are notes kept per inode.
 */
#include <dirent.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dmabuf.h>

#include "core.h"

/* Deep enough to reach the program past the preload and the core (7
 * frames in an unoptimised build). */
#define FRAMES 12

struct note {
	dev_t dev;
	ino_t ino;
	const char *what;
	int nframes;
	void *frames[FRAMES];
	struct note *next;
};

static pthread_mutex_t notes_lock = PTHREAD_MUTEX_INITIALIZER;
static struct note *notes;

void dmb_uapi_leak_note(int fd, const char *what)
{
	struct note *n;
	struct stat st;

	if (!dmb_uapi_config()->leaks || fstat(fd, &st) < 0)
		return;
	n = calloc(1, sizeof(*n));
	if (!n)
		return;
	n->dev = st.st_dev;
	n->ino = st.st_ino;
	n->what = what;
	n->nframes = backtrace(n->frames, FRAMES);
	pthread_mutex_lock(&notes_lock);
	n->next = notes;
	notes = n;
	pthread_mutex_unlock(&notes_lock);
}

static void print_origin(const struct stat *st)
{
	struct note *n;
	char **sym;
	int i;

	for (n = notes; n; n = n->next)
		if (n->ino == st->st_ino && n->dev == st->st_dev)
			break;
	if (!n) {
		fprintf(stderr, "    made elsewhere (inherited or received)\n");
		return;
	}
	sym = backtrace_symbols(n->frames, n->nframes);
	/* Frames 0-2 are the layer's own. */
	for (i = 3; sym && i < n->nframes; i++)
		fprintf(stderr, "    #%d %s\n", i - 3, sym[i]);
	free(sym);
}

/* Returns the number of leaks reported. */
int dmb_uapi_leak_report(void);
int dmb_uapi_leak_report(void)
{
	char link[160], line[512];
	struct dirent *e;
	struct stat st;
	int leaks = 0;
	DIR *d;

	d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		enum dmb_uapi_kind kind;

		if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) < 0)
			continue;
		kind = dmb_uapi_classify_stat(fd, &st);
		if (kind != DMB_UAPI_DMABUF && kind != DMB_UAPI_SYNC_FILE)
			continue;
		/* The library's own descriptions are close-on-exec and not
		 * the program's; the program's fds of a buffer hold its
		 * flock, which fdinfo shows. */
		if (kind == DMB_UAPI_DMABUF) {
			char path[64];
			bool holder = false;
			FILE *fp;

			snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
			fp = fopen(path, "re");
			while (fp && fgets(line, sizeof(line), fp))
				holder |= !strncmp(line, "lock:", 5);
			if (fp)
				fclose(fp);
			if (!holder)
				continue;
		}
		dmb_uapi_fd_link(fd, link, sizeof(link));
		fprintf(stderr, "dmabuf-run: leak: fd %d, %s %s\n", fd,
			kind == DMB_UAPI_DMABUF ? "dma-buf" : "sync file", link);
		print_origin(&st);
		leaks++;
	}
	closedir(d);
	leaks += dmb_uapi_map_report();
	return leaks;
}
