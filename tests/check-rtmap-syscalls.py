#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Syscalls per round-trip remote MAP cycle, both processes together.

Runs tests/syscall-rtmap (see its header: an importer process makes N
cycles of attach, map, unmap, detach on a buffer whose exporter has a map
op of its own, so every MAP is a round trip) under `strace -f` for two
cycle counts, served by the exporter's own poll loop + dmabuf_ctx_dispatch()
and by its service thread; counts every call of every thread of both
processes and divides the difference of the totals by the difference of
the counts. Prints the per-cycle count of every syscall and fails when the
lowest total of up to three measurements exceeds the mode's bound. A raw
SEQPACKET request/response (bench/bench-remote.c's baseline) makes 5: the
client's send + recv, the server's poll + recv + send. A count, never a
time: stable on a loaded machine. Skipped (77) without strace, when ptrace
is not allowed, or in a sanitizer build.

usage: check-rtmap-syscalls.py SYSCALL-RTMAP-EXE [B_SANITIZE]
"""
import sys

from stracecount import per_cycle, run, show, tally, traced_calls, within

# Per cycle, the importer: sendmmsg (ATTACH held + MAP), the MAP reply's
# recvmsg, sendmmsg (UNMAP held + DETACH): 3. The exporter per wake-up:
# dispatch mode the loop's poll + the dispatch's epoll_wait + recvmmsg,
# thread mode epoll_wait + recvmmsg; the reply's sendmsg. Under strace one
# wake-up usually finds the one-way burst and the next cycle's MAP
# together: 7 (dispatch) and 6 (thread), measured 6.97 to 7.25 and 6.10 to
# 6.40; a second wake-up per cycle (usual without strace) makes 10 and 8.
# The MAP's own part is 6 (dispatch: the epoll_wait is the one over a raw
# round trip's 5) and 5 (thread: as many as raw). The bounds hold the
# measured counts + 0.25 to 0.5 for a wake-up that finds only part of a
# burst: one call more per MAP fails either.
MAX_PER_CYCLE = {'dispatch': 7.5, 'thread': 7.0}
N1, N2 = 20, 60


def check(exe):
    ok = True
    for mode, bound in MAX_PER_CYCLE.items():
        per = per_cycle(lambda n: tally(traced_calls([exe, str(n), mode])), N1, N2,
                        bound)
        total = per['total']
        print(f'{mode}:')
        show(per, '  ')
        print(f'  syscalls per round-trip MAP cycle, {mode} (both processes): '
              f'{total:.2f} (bound {bound})')
        ok = within(total, bound, 'a change added syscalls to the round-trip MAP '
                    f'path ({mode})') and ok
    return ok


if __name__ == '__main__':
    sys.exit(run(__doc__, check))
