#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Syscalls per cross-process fence wake-up, both processes together.

Runs tests/syscall-wake (see its header: per fence, the parent signals and
reads an eventfd, the child waits in dmabuf_sync_file_wait() and writes that
eventfd) under `strace -f` for two fence counts, counts in each process the
calls between its two marks (a faccessat() of /dmabuf-syscall-mark/begin and
.../end), and divides the difference of the totals by the difference of the
counts. Prints the per-wake count of every syscall and fails when the total
exceeds MAX_PER_WAKE. The raw eventfd ping-pong it is measured against
(bench/bench-fence.c) makes 4: write and read on each side. A count, never a
time: stable on a loaded machine. Skipped (77) without strace, when ptrace
is not allowed, or in a sanitizer build.

usage: check-wake-syscalls.py SYSCALL-WAKE-EXE [B_SANITIZE]
"""
import sys

from stracecount import per_cycle, run, show, tally, traced_calls, within

# 5 before issue 11's wake-up work (signal: send; wait: getsockname + poll;
# the eventfd write and read); 4 since the wait is one blocking peek at the
# record: as many as the raw ping-pong. No slack: nothing on this path
# depends on timing.
MAX_PER_WAKE = 4
N1, N2 = 20, 60


def check(exe):
    per = per_cycle(lambda n: tally(traced_calls([exe, str(n)], 4, '2 per process'),
                                    between_only=True), N1, N2)
    total = per.pop('total')
    show(per)
    print(f'syscalls per fence wake-up (both processes): {total:.2f} '
          f'(bound {MAX_PER_WAKE}; raw eventfd ping-pong: 4)')
    return within(total, MAX_PER_WAKE, 'a change added syscalls to the fence '
                  'signal -> wake path')


if __name__ == '__main__':
    sys.exit(run(__doc__, check))
