/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness for the wire decoder (src/transport/wire.c).
 *
 * Input: one control byte, then the message. Control bits 0-2: number of
 * fds that "arrived" with it (0..7, so too many is reachable); bit 3: the
 * receiver is the client (else the server). Other bits are ignored.
 *
 * Invariants checked (abort() on violation, which libFuzzer reports):
 * - the decoder returns 0 or one of its documented errnos;
 * - a rejected message hands nothing on (no fds, no status);
 * - an accepted message carries exactly the fds given, in order, and
 *   re-encodes to the very same bytes (the format is canonical), and
 *   decoding those bytes again gives the same struct;
 * - inline sg entries of an accepted MAP_REPLY pass dmb_wire_check_sg();
 * - an accepted message is one its opcode's descriptor allows: the
 *   receiver's side, its fixed fd count, serial 0 exactly for events, a
 *   non-zero target id; only a bare failed reply may lack a descriptor.
 *
 * Built with -Dfuzzing=true it is a libFuzzer target; otherwise
 * (DMB_FUZZ_REPLAY) main() replays every file of a corpus directory, plus
 * simple deterministic mutations of each, as a regular test.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wire.h"

#define NFDS_MAX 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fds[NFDS_MAX];

/* Real fds, opened once: the decoder must treat them as plain numbers. */
static void init_fds(void)
{
	static int done;

	if (done)
		return;
	for (int i = 0; i < NFDS_MAX; i++) {
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			abort();
	}
	done = 1;
}

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz-wire: invariant violated: %s\n", what);
		abort();
	}
}

static int documented(int ret)
{
	return ret == -EMSGSIZE || ret == -EBADMSG || ret == -EPROTO ||
	       ret == -EPROTONOSUPPORT || ret == -EOPNOTSUPP;
}

/*
 * The same bytes as a version 5 packet (dmb_wire_split()): either -EPROTO,
 * or messages that tile the packet in order, each at least a header, whose
 * fds add up to the packet's (when known), each then decoded as any
 * message with its own fds; a message the decoder takes whole is a packet
 * of one.
 */
static void split(const uint8_t *p, size_t size, size_t nfds, bool known,
		  enum dmb_wire_side side)
{
	struct dmb_wire_part part[DMB_WIRE_MAX_PACKED];
	static struct dmb_msg m;
	size_t off = 0, fd = 0;
	int n = dmb_wire_split(p, size, nfds, known, part, DMB_WIRE_MAX_PACKED);

	if (n < 0) {
		check(n == -EPROTO, "split: undocumented errno");
		check(dmb_wire_decode(p, size, fds, nfds, side, &m) < 0 || !known,
		      "split refuses a message the decoder takes");
		return;
	}
	check(n >= 1 && n <= (int)DMB_WIRE_MAX_PACKED, "split: count");
	for (int i = 0; i < n; i++) {
		int ret;

		check(part[i].off == off && part[i].len >= DMB_WIRE_HDR_SIZE &&
		      part[i].len <= size - off, "split: parts do not tile");
		check(!known || part[i].fd_first == fd, "split: fd order");
		ret = dmb_wire_decode(p + off, part[i].len, fds + (known ? fd : 0),
				      known ? part[i].nfds : 0, side, &m);
		check(ret == 0 || documented(ret), "split: undocumented errno");
		off += part[i].len;
		fd += part[i].nfds;
	}
	check(off == size, "split: bytes left over");
	check(!known || fd == nfds, "split: fds do not add up");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dmb_msg m, again;
	static uint8_t buf[DMB_WIRE_MAX_MSG];
	const struct dmb_wire_desc *d;
	enum dmb_wire_side side;
	size_t nfds;
	uint8_t *copy;
	int ret, n;

	if (size < 1)
		return 0;
	init_fds();
	nfds = data[0] & 7;
	side = (data[0] & 8) ? DMB_WIRE_CLIENT : DMB_WIRE_SERVER;
	data++;
	size--;

	/* An exact-size heap copy, so any over-read is caught by ASan or
	 * valgrind (and malloc(0) is fine: the decoder rejects size 0). */
	copy = malloc(size ? size : 1);
	check(copy != NULL, "malloc");
	if (size)
		memcpy(copy, data, size);

	split(copy, size, nfds, !(data[-1] & 16), side);

	/* The decoder clears only the struct's DMB_WIRE_MSG_FIXED bytes:
	 * start both decodes from the same garbage, so whatever it reads or
	 * leaves unwritten outside them shows in the comparisons below. */
	memset(&m, 0xa5, sizeof(m));
	memset(&again, 0xa5, sizeof(again));
	ret = dmb_wire_decode(copy, size, fds, nfds, side, &m);
	if (ret < 0) {
		check(documented(ret), "undocumented errno");
		check(m.nfds == 0 && m.status == 0, "rejected message leaks");
		for (int i = 0; i < (int)DMB_WIRE_MAX_FDS; i++)
			check(m.fds[i] == -1, "rejected message keeps fds");
		free(copy);
		return 0;
	}

	check(m.nfds == nfds, "fd count");
	for (size_t i = 0; i < DMB_WIRE_MAX_FDS; i++)
		check(m.fds[i] == (i < nfds ? fds[i] : -1), "fd numbers");
	check(m.op != 0 && strcmp(dmb_wire_op_name(m.op), "?") != 0, "op name");
	d = dmb_wire_op_desc(m.op);
	if (!d) {
		check(side == DMB_WIRE_CLIENT && m.status < 0 && nfds == 0 &&
		      size == DMB_WIRE_REPLY_PAYLOAD, "unknown opcode accepted");
	} else {
		check((d->kind == DMB_WIRE_REQUEST) == (side == DMB_WIRE_SERVER),
		      "wrong side");
		check((d->kind == DMB_WIRE_EVENT) == (m.serial == 0), "serial");
		if (d->kind == DMB_WIRE_REPLY && m.status < 0)
			check(nfds == 0 && size == DMB_WIRE_REPLY_PAYLOAD,
			      "failed reply with a payload");
		else if (d->nfds != DMB_WIRE_FDS_VARIABLE)
			check(nfds == (size_t)d->nfds, "descriptor fd count");
		if (d->kind != DMB_WIRE_REPLY && d->target != DMB_WIRE_TARGET_NONE)
			check(dmb_wire_target_id(&m) != 0, "zero target id");
	}
	if (m.op == DMB_OP_MAP_REPLY && m.status == 0 &&
	    !(m.u.map_reply.flags & DMB_WIRE_MAP_SG_MEMFD))
		check(dmb_wire_check_sg(m.u.map_reply.sg, m.u.map_reply.count,
					m.u.map_reply.size) == 0, "sg entries");

	n = dmb_wire_encode(buf, sizeof(buf), &m);
	check(n > 0, "accepted message does not encode");
	check((size_t)n == size, "re-encoded length differs");
	check(memcmp(buf, copy, size) == 0, "re-encoded bytes differ");

	check(dmb_wire_decode(buf, (size_t)n, fds, nfds, side, &again) == 0,
	      "re-decode fails");
	check(memcmp(&m, &again, sizeof(m)) == 0, "re-decoded struct differs");

	free(copy);
	return 0;
}

#ifdef DMB_FUZZ_REPLAY
#include <dirent.h>

static unsigned long runs;

static void run(const uint8_t *data, size_t size)
{
	LLVMFuzzerTestOneInput(data, size);
	runs++;
}

/* Every input, its truncations, and byte-wise corruptions of it. */
static void replay(const uint8_t *data, size_t size)
{
	static const uint8_t masks[] = { 0x01, 0x80, 0xff };
	uint8_t *m = malloc(size ? size : 1);

	if (!m)
		abort();
	run(data, size);
	for (size_t cut = 0; cut < size; cut++)
		run(data, cut);
	memcpy(m, data, size);
	for (size_t i = 0; i < size; i++) {
		for (size_t k = 0; k < sizeof(masks); k++) {
			m[i] ^= masks[k];
			run(m, size);
			m[i] ^= masks[k];
		}
		m[i] = 0;
		run(m, size);
		m[i] = data[i];
	}
	free(m);
}

int main(int argc, char **argv)
{
	unsigned long files = 0;

	for (int a = 1; a < argc; a++) {
		DIR *dir = opendir(argv[a]);
		struct dirent *de;

		if (!dir) {
			perror(argv[a]);
			return 1;
		}
		while ((de = readdir(dir))) {
			char path[4096];
			uint8_t data[DMB_WIRE_MAX_MSG + 2];
			size_t size;
			FILE *f;

			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[a], de->d_name);
			f = fopen(path, "rb");
			if (!f) {
				perror(path);
				return 1;
			}
			size = fread(data, 1, sizeof(data), f);
			fclose(f);
			replay(data, size);
			files++;
		}
		closedir(dir);
	}
	printf("fuzz-wire: %lu corpus files, %lu executions, no invariant violated\n",
	       files, runs);
	/* An empty or missing corpus must not pass silently. */
	return files ? 0 : 1;
}
#endif
