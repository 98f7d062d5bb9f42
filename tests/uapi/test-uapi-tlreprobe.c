/* SPDX-License-Identifier: MIT */
/*
 * The seccomp supervisor's re-probe of a sw_sync timeline (docs/seccomp.md,
 * "last close of a sw_sync timeline"): the program's timeline file holds
 * the shared lock that says the timeline is referenced; when the inode's
 * close event comes and no open file holds that lock any more, the
 * timeline is destroyed and its pending points signal -ENOENT, as
 * sw_sync_debugfs_release() does. The kernel sends the close event from
 * __fput() before it drops the file's locks, so the probe at the event may
 * find the lock still held; no event follows when it goes, and only the
 * re-probes (with their back-off, src/uapi/reprobe.h) can see it.
 *
 * This suite makes that window as long as it likes: it holds the shared
 * lock on a file of its own of the timeline's inode (as the late closer
 * would), the program closes its timeline fd, the suite waits until the
 * supervisor has read the close event from every inotify watching the
 * inode and is idle (its probes failed), checks the point is still
 * pending, then takes its lock off without closing anything. The point
 * must signal -ENOENT. The program is this binary under `dmabuf-run
 * --seccomp` (argument "program").
 */
#include <sys/file.h>
#include <sys/inotify.h>

#include "uapi-supervisor.h"

/* ---- the program, under the supervisor --------------------------------------- */

static int program(int out, int in)
{
	struct pollfd p;
	int tl, pt, st;
	char c;

	tl = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	if (tl < 0)
		return 10;
	pt = uapi_fence_create(tl, 1);
	if (pt < 0)
		return 11;
	dprintf(out, "ready %d %d\n", (int)getpid(), tl);
	if (read(in, &c, 1) != 1)
		return 12;
	close(tl);
	dprintf(out, "closed\n");
	/* The suite holds the lock: the timeline is still referenced. */
	if (read(in, &c, 1) != 1)
		return 13;
	st = uapi_fence_status(pt);
	dprintf(out, "status %d\n", st);
	if (read(in, &c, 1) != 1)
		return 14;
	/* The lock went: only a re-probe sees it. The suite's hang guard
	 * bounds this wait. */
	p = (struct pollfd){ .fd = pt, .events = POLLIN };
	st = poll(&p, 1, -1);
	dprintf(out, "poll %d %#x status %d\n", st, (unsigned int)p.revents, uapi_fence_status(pt));
	close(pt);
	return 0;
}

/* ---- the suite ------------------------------------------------------------------ */

static void point_signals_when_the_lock_goes_after_the_close_event(void **state)
{
	char line[128];
	int out, in, tl_fd, pfd, h, ifd[2], n = 0;
	pid_t sup, prog;
	struct stat st;
	long before;

	(void)state;
	sup = sup_start(DMABUF_RUN, -1, &out, &in);
	sup_read_line(out, line, sizeof(line));
	if (sscanf(line, "ready %d %d", &prog, &tl_fd) != 2)
		fail_msg("the program did not start: \"%s\"", line);

	/* The late closer: a file of the timeline's inode holding the
	 * shared lock, as the program's file does until __fput() drops it. */
	h = sup_late_closer(prog, tl_fd, &st);
	/* The supervisor watches the inode twice: its watcher of the
	 * program's timelines (close events) and the emulation's watcher of
	 * timelines with pending points (writes and closes). */
	ifd[n] = sup_inotify(sup, st.st_ino, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE);
	if (ifd[n] < 0)
		fail_msg("the supervisor has no inotify watch of the timeline's close events");
	n++;
	ifd[n] = sup_inotify(sup, st.st_ino, IN_MODIFY | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE);
	n += ifd[n] >= 0;
	pfd = sup_pidfd(sup);
	before = sup_wait_idle(sup, "the supervisor idle after the program's CREATE_FENCE");

	/* The program's last close: the close event comes, the probes find
	 * the lock held. */
	sup_close_and_wait_event(sup, in, out, pfd, ifd, n, before,
				 "the supervisor reading the timeline's close event");
	assert_int_equal(write(in, "s", 1), 1);
	sup_read_line(out, line, sizeof(line));
	assert_string_equal(line, "status 0");

	/* The lock goes with no event: only a re-probe sees it. */
	sup_unlock_expect_and_end(sup, in, out, h, pfd,
				  "the timeline's pending point signalling after its lock went (the re-probe)",
				  "poll 1 0x1 status -2");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		harness_test(point_signals_when_the_lock_goes_after_the_close_event),
	};

	if (argc == 5 && !strcmp(argv[1], "program"))
		return program(atoi(argv[2]), atoi(argv[3]));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
