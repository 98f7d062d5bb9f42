#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Syscalls per remote device cycle served by the exporter's service thread.

Runs tests/syscall-service (see its header: an importer process makes N
cycles of attach, map, unmap, detach on a buffer whose exporter serves it
with dmabuf_ctx_start_thread()) under `strace -f` for two cycle counts,
counts every call of every thread of both processes, and divides the
difference of the totals by the difference of the counts. Prints the
per-cycle count of every syscall and fails when the lowest total of up to
three measurements exceeds MAX_PER_CYCLE. A count, never a time: stable on
a loaded machine. Skipped (77) without strace, when ptrace is not allowed,
or in a sanitizer build.

usage: check-service-syscalls.py SYSCALL-SERVICE-EXE [B_SANITIZE]
"""
import sys

from stracecount import per_cycle, run, show, tally, traced_calls, within

# Per cycle: the importer's sendmmsg (ATTACH + MAP), recvmsg (the MAP
# reply) and sendmmsg (UNMAP + DETACH); the service thread's epoll_wait +
# recvmmsg per wake-up and the reply's sendmsg: 8 when each burst is a
# wake-up, fewer when one wake-up finds both (usual under strace: measured
# 6.60 to 6.97, lowest of three). Before the service thread waited in
# epoll_wait() itself it polled the epoll fd and then read it, one poll()
# more per wake-up (7.33 to 7.80): no poll() at all is allowed now. Slack
# 0.5: a wake-up that finds only part of a burst (the importer preempted
# inside its sendmmsg) adds an epoll_wait and a recvmmsg.
MAX_PER_CYCLE = 7.5
MAX_POLLS = 0.05
N1, N2 = 20, 60


def check(exe):
    per = per_cycle(lambda n: tally(traced_calls([exe, str(n)])), N1, N2,
                    MAX_PER_CYCLE)
    total = per['total']
    show(per)
    print(f'syscalls per remote cycle with the service thread (both processes): '
          f'{total:.2f} (bound {MAX_PER_CYCLE})')
    polls = per.get('poll', 0) + per.get('ppoll', 0)
    if polls > MAX_POLLS:
        print(f'FAIL: {polls:.2f} poll() per cycle: the service thread polls before '
              'it reads its epoll set again')
        return False
    return within(total, MAX_PER_CYCLE, 'a change added syscalls to the remote '
                  'call path or to the service thread\'s wake-up')


if __name__ == '__main__':
    sys.exit(run(__doc__, check))
