/* SPDX-License-Identifier: MIT */
/*
 * A process that uses libdmabuf's own API, for test-uapi-shutpoll: it
 * exports a sync file of a pending point of a timeline of its own, sends
 * it over SOCKET-FD (one byte with SCM_RIGHTS) and keeps a copy of it,
 * then obeys one-byte commands, each answered with the same byte:
 *   's'  shutdown(SHUT_RD) of its copy (a holder's shutdown, docs/fences.md)
 *   'g'  the signal (the timeline's INC)
 * and exits 0 at EOF. SIGKILLed, its end of the sync file closes with it.
 *
 * usage: uapi-fence-peer SOCKET-FD
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dmabuf-fence.h>

#include "uapi-fdpass.h"

#define CHECK(cond)                                                                \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "uapi-fence-peer: %s:%d: %s\n", __FILE__,  \
				__LINE__, #cond);                                  \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

int main(int argc, char **argv)
{
	struct dmabuf_timeline *tl;
	struct dmabuf_fence *f;
	int sock, sf;
	char c;

	CHECK(argc == 2);
	sock = atoi(argv[1]);
	CHECK(dmabuf_timeline_new("peer", &tl) == 0);
	CHECK(dmabuf_timeline_create_fence(tl, 1, &f) == 0);
	sf = dmabuf_sync_file_export(f);
	CHECK(sf >= 0);
	CHECK(uapi_send_fd(sock, sf) == 0);
	while (read(sock, &c, 1) == 1) {
		if (c == 's')
			CHECK(shutdown(sf, SHUT_RD) == 0);
		else if (c == 'g')
			CHECK(dmabuf_timeline_inc(tl, 1) == 0);
		else
			CHECK(!"a known command");
		CHECK(write(sock, &c, 1) == 1);
	}
	close(sf);
	dmabuf_fence_put(f);
	dmabuf_timeline_destroy(tl);
	close(sock);
	return 0;
}
