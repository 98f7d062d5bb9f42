/* SPDX-License-Identifier: MIT */
/*
 * The fd-leak fixture (dmabuf-test.h): the fds of /proc/self/fd before and
 * after a test. valgrind does not fail on a leaked fd, so tests count them.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testkit.h"

struct dmabuf_test_fds {
	int *fds;
	size_t n;
};

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* The open fds, sorted, without the directory's own. */
static int list_fds(int **out, size_t *count)
{
	size_t n = 0, cap = 64;
	int *fds = malloc(cap * sizeof(*fds)), self, err;
	struct dirent *de;
	DIR *dir;

	if (!fds)
		return -ENOMEM;
	dir = opendir("/proc/self/fd");
	if (!dir) {
		err = -errno;
		free(fds);
		return err;
	}
	self = dirfd(dir);
	while ((de = readdir(dir))) {
		char *end;
		long fd;

		if (de->d_name[0] == '.')
			continue;
		fd = strtol(de->d_name, &end, 10);
		if (*end || fd == self)
			continue;
		if (n == cap) {
			int *more = realloc(fds, 2 * cap * sizeof(*fds));

			if (!more) {
				closedir(dir);
				free(fds);
				return -ENOMEM;
			}
			fds = more;
			cap *= 2;
		}
		fds[n++] = (int)fd;
	}
	closedir(dir);
	qsort(fds, n, sizeof(*fds), cmp_int);
	*out = fds;
	*count = n;
	return 0;
}

static bool has(const int *set, size_t n, int fd)
{
	return bsearch(&fd, set, n, sizeof(*set), cmp_int) != NULL;
}

DMABUF_TEST_EXPORT int dmabuf_test_fds_begin(struct dmabuf_test_fds **out)
{
	struct dmabuf_test_fds *rec;
	int ret;

	if (!out)
		return -EINVAL;
	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	ret = list_fds(&rec->fds, &rec->n);
	if (ret < 0) {
		free(rec);
		return ret;
	}
	*out = rec;
	return 0;
}

DMABUF_TEST_EXPORT int dmabuf_test_fds_end(struct dmabuf_test_fds *rec, int *leaked,
					   unsigned int max, char *report,
					   size_t report_size)
{
	unsigned int nleaked = 0;
	int *now, diff = 0, ret;
	size_t n;

	if (!rec)
		return -EINVAL;
	if (report && report_size)
		report[0] = '\0';
	ret = list_fds(&now, &n);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		char path[64], target[256] = "?";
		ssize_t len;

		if (has(rec->fds, rec->n, now[i]))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", now[i]);
		len = readlink(path, target, sizeof(target) - 1);
		if (len >= 0)
			target[len] = '\0';
		tk_report(report, report_size, "fd %d -> %s: opened and not closed",
			  now[i], target);
		if (leaked && nleaked < max)
			leaked[nleaked++] = now[i];
		diff++;
	}
	for (size_t i = 0; i < rec->n; i++) {
		if (has(now, n, rec->fds[i]))
			continue;
		tk_report(report, report_size, "fd %d: open before, closed since", rec->fds[i]);
		diff++;
	}
	free(now);
	ret = diff;
out:
	free(rec->fds);
	free(rec);
	return ret;
}

/* The CMocka fixture's record: CMocka runs one test at a time. */
static struct dmabuf_test_fds *fixture;

DMABUF_TEST_EXPORT int dmabuf_test_fd_setup(void **state)
{
	if (fixture) {
		free(fixture->fds);
		free(fixture);
		fixture = NULL;
	}
	return dmabuf_test_fds_begin(&fixture) < 0 ? -1 : 0;
}

DMABUF_TEST_EXPORT int dmabuf_test_fd_teardown(void **state)
{
	char report[4096];
	struct dmabuf_test_fds *rec = fixture;
	int ret;

	if (!rec) {
		fprintf(stderr, "dmabuf_test_fd_teardown: no record (dmabuf_test_fd_setup did not run)\n");
		return -1;
	}
	fixture = NULL;
	ret = dmabuf_test_fds_end(rec, NULL, 0, report, sizeof(report));
	if (ret > 0)
		fprintf(stderr, "fd leak check:\n%s", report);
	return ret == 0 ? 0 : -1;
}
