/* SPDX-License-Identifier: MIT */
/*
 * DMABUF_DEBUG=protocol: one line on stderr per wire message, in both
 * directions, as WAYLAND_DEBUG=1 prints libwayland's. The line names the
 * process, its side, the peer, the opcode, serial, status and fd count, so
 * two processes' traces can be read side by side.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remote.h"

void dmb_wire_trace(const char *side, const char *peer, bool sent,
		    const struct dmb_msg *m)
{
	const struct dmb_wire_desc *d;
	char line[256], extra[64] = "";
	struct timespec ts;
	uint64_t id;
	int n;

	if (!dmb_log_env()->protocol)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	d = dmb_wire_op_desc(m->op);
	id = d ? dmb_wire_target_id(m) : 0;
	if (id)
		snprintf(extra, sizeof(extra), " id %" PRIu64, id);
	if (d && d->kind == DMB_WIRE_REPLY)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
			 " status %d", m->status);
	/* One write per line, so the traces of two processes on one
	 * terminal do not interleave mid-line. */
	n = snprintf(line, sizeof(line), "[%7ld.%06ld] libdmabuf[%d] %s %s %s: %s serial %" PRIu64 "%s fds %u\n",
		     (long)ts.tv_sec % 10000000, ts.tv_nsec / 1000, (int)getpid(),
		     side, sent ? "->" : "<-", peer, dmb_wire_op_name(m->op),
		     m->serial, extra, (unsigned int)m->nfds);
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) < 0) {
		/* nothing to do: a trace line is best effort */
	}
}
