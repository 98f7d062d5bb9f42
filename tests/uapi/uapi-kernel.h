/* SPDX-License-Identifier: MIT */
/*
 * For the test programs written against the kernel's uapi only (built by
 * the C compiler directly, linking nothing of libdmabuf nor the CMocka
 * harness): the sw_sync ioctls, small checks, and the count of an epoll
 * set's items. A failed check prints
 * "FAIL <case>: <where>: <what> (errno ...)" and exits 1; the program sets
 * @current to the name of the case it runs.
 */
#ifndef UAPI_KERNEL_H
#define UAPI_KERNEL_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <linux/types.h>

/* The sw_sync uapi has no installed header; the kernel selftests define it
 * the same way. */
struct sw_sync_create_fence_data {
	__u32 value;
	char name[32];
	__s32 fence;
};
#define SW_SYNC_IOC_CREATE_FENCE _IOWR('W', 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC _IOW('W', 1, __u32)

/* The case being run, for a failed check. */
static const char *current;

#define CHECK(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			printf("FAIL %s: %s:%d: %s (errno %d %s)\n", current,    \
			       __FILE__, __LINE__, #cond, errno, strerror(errno)); \
			exit(1);                                                 \
		}                                                                \
	} while (0)

/* errno of a call expected to fail. */
#define FAILS_WITH(call, err)                        \
	do {                                         \
		errno = 0;                           \
		CHECK((call) < 0 && errno == (err)); \
	} while (0)

/* The program's fds. Under the preload (the dynamic program run by
 * dmabuf-run without --seccomp) the layer's own fds are in the table too,
 * at or above half the RLIMIT_NOFILE soft limit (at most 16384): left
 * out. */
static inline int count_fds(void)
{
	const char *pre = getenv("LD_PRELOAD");
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long top = -1;
	struct rlimit rl;
	int n = 0;

	CHECK(d);
	if (pre && strstr(pre, "libdmabuf-preload") && getrlimit(RLIMIT_NOFILE, &rl) == 0)
		top = rl.rlim_cur / 2 < 16384 ? (long)(rl.rlim_cur / 2) : 16384;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.' && (top < 0 || atol(e->d_name) < top);
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* The epoll set's items (tfd lines of its fdinfo). */
static inline int epoll_items(int ep)
{
	char path[64], line[256];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	f = fopen(path, "re");
	CHECK(f);
	while (fgets(line, sizeof(line), f))
		n += !strncmp(line, "tfd:", 4);
	fclose(f);
	return n;
}

/* Waits (bounded by a count, not a clock) until the set has n items: the
 * supervisor learns of a last close from the inode's close event. */
static inline int epoll_items_become(int ep, int n)
{
	int i;

	for (i = 0; i < 20000 && epoll_items(ep) != n; i++)
		usleep(500);
	return epoll_items(ep) == n;
}

#endif
