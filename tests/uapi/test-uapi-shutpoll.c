/* SPDX-License-Identifier: MIT */
/*
 * The seccomp supervisor's poll of a sync file a holder shut down
 * (docs/seccomp.md, readiness; docs/fences.md, "A holder's shutdown()").
 * A sync file is a socket here, shared by every holder; a program under
 * the supervisor cannot shut it down (ENOTSOCK), but a process using the
 * library's API can. The socket then polls ready for good, with the fence
 * still pending: sync_file_poll() reports nothing until the signal, so the
 * supervisor's poll must keep waiting, and since the socket can wake it no
 * more, it looks at the fence's state again every 1 ms (seccomp-ready.c,
 * pwait_look()'s `shut`) until the fence signals (POLLIN, status 1) or its
 * signaller dies (POLLIN, -EPIPE).
 *
 * The exporter is uapi-fence-peer (libdmabuf's API, a timeline of its
 * own); the program is this binary under `dmabuf-run --seccomp`
 * (argument "program"), polling the sync file with no timeout. The suite
 * waits for the supervisor's thread to be in each state (waiting on the
 * socket, then re-looking) by what /proc shows it calling, never for a
 * time.
 */
#include <signal.h>
#include <sys/wait.h>

#include "uapi-supervisor.h"

/* seccomp-ready.c: a waiting poll waits in slices of 100 ms on the
 * sockets; with a shut sync file among its fds, the slice is 1 ms and
 * the shut socket is out of the set. */
#define SLICE_MS 100
#define RELOOK_MS 1

/* ---- the program, under the supervisor --------------------------------------- */

static int program(int out, int in, int sf)
{
	struct pollfd p = { .fd = sf, .events = POLLIN };
	int n;

	(void)in;
	if (uapi_fence_status(sf) != 0)
		return 10;
	dprintf(out, "ready %d\n", (int)getpid());
	/* The suite's hang guard bounds this wait. */
	n = poll(&p, 1, -1);
	dprintf(out, "poll %d %#x status %d\n", n, (unsigned int)p.revents, uapi_fence_status(sf));
	close(sf);
	return 0;
}

/* ---- the suite ------------------------------------------------------------------ */

/* A supervisor thread in poll(fds, nfds, timeout) with these two. */
struct in_poll {
	unsigned long long nfds, timeout;
};

static bool thread_in_poll(const struct sup_call *c, void *arg)
{
	const struct in_poll *want = arg;

	return c->nr == SYS_poll && c->arg[0] && c->arg[1] == want->nfds &&
	       c->arg[2] == want->timeout;
}

/* Waits for a supervisor thread in that poll, the program's poll still
 * waiting (the fence is pending: an answer now is wrong). */
static void wait_in_poll(pid_t sup, int out, unsigned long long nfds, unsigned long long timeout,
			 const char *what)
{
	struct in_poll want = { nfds, timeout };
	struct pollfd p = { .fd = out, .events = POLLIN };
	char line[128];

	harness_guard_start(what, 60);
	while (!sup_any_thread(sup, thread_in_poll, &want)) {
		if (poll(&p, 1, 0) == 1) {
			sup_read_line(out, line, sizeof(line));
			fail_msg("the program's poll of a pending sync file returned: \"%s\"", line);
		}
		usleep(1000);
	}
	harness_guard_done();
}

static void say(int sock, char c)
{
	char back = 0;

	assert_int_equal(write(sock, &c, 1), 1);
	assert_int_equal(read(sock, &back, 1), 1);
	assert_int_equal(back, c);
}

enum end { SIGNALLED, SIGNALLER_KILLED };

static void shut_sync_file_in_a_waiting_poll(enum end how, const char *want)
{
	char line[128], arg[16];
	int sv[2], sf, out, in;
	pid_t peer, sup, prog;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	peer = fork();
	assert_true(peer >= 0);
	if (peer == 0) {
		int s = dup(sv[1]); /* inherited over the exec */

		snprintf(arg, sizeof(arg), "%d", s);
		execl(UAPI_FENCE_PEER, UAPI_FENCE_PEER, arg, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	sf = uapi_recv_fd(sv[0]);
	assert_true(sf >= 0);
	sup = sup_start(DMABUF_RUN, sf, &out, &in);
	close(sf); /* the program's and the exporter's are the holders */
	sup_read_line(out, line, sizeof(line));
	if (sscanf(line, "ready %d", &prog) != 1)
		fail_msg("the program did not start: \"%s\"", line);

	/* The program's poll waits in a thread of the supervisor, on the
	 * sync file's socket. */
	wait_in_poll(sup, out, 1, SLICE_MS, "the supervisor's poll waiting on the sync file's socket");
	/* The exporter, a holder, shuts it down: ready for good, pending. */
	say(sv[0], 's');
	wait_in_poll(sup, out, 0, RELOOK_MS,
		     "the supervisor's poll re-looking at the shut sync file every 1 ms");
	{
		struct pollfd p = { .fd = out, .events = POLLIN };

		/* The fence is pending: the program still waits. */
		assert_int_equal(poll(&p, 1, 0), 0);
	}

	if (how == SIGNALLED) {
		say(sv[0], 'g');
	} else {
		assert_int_equal(kill(peer, SIGKILL), 0);
		assert_int_equal(harness_wait(peer), 128 + SIGKILL);
	}
	sup_wait_line(out, line, sizeof(line),
		      how == SIGNALLED
			      ? "the program's poll returning after the shut sync file's signal"
			      : "the program's poll returning after the shut sync file's signaller died");
	assert_string_equal(line, want);

	close(sv[0]);
	if (how == SIGNALLED)
		assert_int_equal(harness_wait(peer), 0);
	assert_int_equal(sup_end(sup, out, in), 0);
}

/* The signal finds the socket shut (the record cannot go in): its status
 * is in the name of the signaller's end, which the re-look reads. */
static void shut_then_signalled(void **state)
{
	(void)state;
	shut_sync_file_in_a_waiting_poll(SIGNALLED, "poll 1 0x1 status 1");
}

/* The signaller dies after the shutdown: -EPIPE (DMABUF_FENCE_ESIGNALLER). */
static void shut_then_signaller_killed(void **state)
{
	(void)state;
	shut_sync_file_in_a_waiting_poll(SIGNALLER_KILLED, "poll 1 0x1 status -32");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		harness_test(shut_then_signalled),
		harness_test(shut_then_signaller_killed),
	};

	if (argc == 5 && !strcmp(argv[1], "program"))
		return program(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
