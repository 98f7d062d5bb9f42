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

from stracecount import marked_calls, per_unit, show, skip_reason, trace

# 5 before issue 11's wake-up work (signal: send; wait: getsockname + poll;
# the eventfd write and read); 4 since the wait is one blocking peek at the
# record: as many as the raw ping-pong. No slack: nothing on this path
# depends on timing.
MAX_PER_WAKE = 4
N1, N2 = 20, 60


def count(exe, n):
    calls, marks = marked_calls(trace([exe, str(n)], []))
    if marks != 4:
        print(f'{marks} marks in the trace, want 4 (2 per process)')
        sys.exit(1)
    per = {}
    for _, name, between in calls:
        if between:
            per[name] = per.get(name, 0) + 1
    return per


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    exe = sys.argv[1]
    why = skip_reason(sys.argv[2] if len(sys.argv) > 2 else None)
    if why:
        print('SKIP:', why)
        return 77
    per = per_unit(lambda n: count(exe, n), N1, N2)
    total = sum(per.values())
    show(per)
    print(f'syscalls per fence wake-up (both processes): {total:.2f} '
          f'(bound {MAX_PER_WAKE}; raw eventfd ping-pong: 4)')
    if total > MAX_PER_WAKE:
        print(f'FAIL: {total:.2f} > {MAX_PER_WAKE}: a change added syscalls '
              'to the fence signal -> wake path')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
