/* SPDX-License-Identifier: MIT */
/*
 * The seccomp supervisor's re-probe (docs/seccomp.md): an epoll item of a
 * dma-buf goes when the buffer's file goes, which the watcher learns from
 * the inode's close event and a probe of the shared lock the buffer's open
 * files hold. The kernel sends the close event from __fput() before it
 * drops the file's locks, so a probe may find the lock still held after
 * the last close; no event follows when the lock goes, and only the
 * re-probe (with its back-off) can see it.
 *
 * This suite makes that window as long as it likes: it holds a shared lock
 * on a file of its own of the buffer's inode (as the late closer would),
 * the program closes its last fd of the buffer, the suite waits until the
 * watcher has read the close event and the supervisor is idle (its probe
 * failed), then takes its lock off without closing anything. The item must
 * go. The program runs under `dmabuf-run --seccomp` (the same binary, with
 * the argument "program").
 */
#include <sys/epoll.h>
#include <sys/file.h>

#include "uapi-supervisor.h"

#define PAGE 4096

/* ---- the program, under the supervisor --------------------------------------- */

static int epoll_items(int ep)
{
	char path[64], line[256];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += !strncmp(line, "tfd:", 4);
	fclose(f);
	return n;
}

static int program(int out, int in)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 5 };
	int heap, buf, ep;
	char c;

	heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
	if (heap < 0)
		return 10;
	buf = uapi_heap_alloc(heap, PAGE, O_RDWR | O_CLOEXEC);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (buf < 0 || ep < 0)
		return 11;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, buf, &ev) || epoll_items(ep) != 1)
		return 12;
	dprintf(out, "ready %d %d\n", (int)getpid(), buf);
	if (read(in, &c, 1) != 1)
		return 13;
	close(buf);
	dprintf(out, "closed\n");
	if (read(in, &c, 1) != 1)
		return 14;
	/* The suite's hang guard bounds this wait; the suite gone (its end
	 * of the pipe hung up), the program goes too. */
	while (epoll_items(ep) != 0) {
		struct pollfd p = { .fd = in, .events = POLLIN };

		if (poll(&p, 1, 1) > 0)
			return 15;
	}
	dprintf(out, "dropped\n");
	close(ep);
	close(heap);
	return 0;
}

/* ---- the suite ------------------------------------------------------------------ */

static void item_goes_when_the_lock_goes_after_the_close_event(void **state)
{
	char line[128];
	int out, in, prog_fd, pfd, ifd, h;
	pid_t sup, prog;
	struct stat st;
	long before;

	(void)state;
	sup = sup_start(DMABUF_RUN, -1, &out, &in);
	sup_read_line(out, line, sizeof(line));
	if (sscanf(line, "ready %d %d", &prog, &prog_fd) != 2)
		fail_msg("the program did not start: \"%s\"", line);

	/* The late closer: a file of the buffer's inode holding the shared
	 * lock, as the program's file does until __fput() drops it. */
	h = sup_late_closer(prog, prog_fd, &st);
	/* The watcher's: close events only (the core's own watch of the
	 * buffer is one-shot). */
	ifd = sup_inotify(sup, st.st_ino, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE);
	if (ifd < 0)
		fail_msg("the supervisor has no inotify watch of the buffer's inode");
	pfd = sup_pidfd(sup);
	before = sup_wait_idle(sup, "the supervisor idle after the program's epoll_ctl");

	/* The last close of the program's file: the close event comes, the
	 * probe finds the lock held. */
	sup_close_and_wait_event(sup, in, out, pfd, &ifd, 1, before,
				 "the watcher reading the buffer's close event");

	/* The lock goes with no event: only a re-probe sees it. */
	sup_unlock_expect_and_end(sup, in, out, h, pfd,
				  "the epoll item going after the buffer's lock went (the re-probe)",
				  "dropped");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		harness_test(item_goes_when_the_lock_goes_after_the_close_event),
	};

	if (argc == 5 && !strcmp(argv[1], "program"))
		return program(atoi(argv[2]), atoi(argv[3]));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
