#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Syscalls per buffer life in one process (export, first fd, put, close,
release), for each release path of tests/syscall-lifecycle.c: put-last (the
put releases), close-last (the close's event does, in a dispatch) and heap
(dmabuf_heap_alloc, close, dispatch), each with recycled memfds and fresh
ones (fresh-: DMABUF_CTX_NO_RECYCLE).

Runs it under `strace -f -c` for two cycle counts per path and divides the
difference of the totals by the difference of the counts, so start-up and
tear-down cancel out. Prints the per-cycle count of every syscall and fails
when a path's total exceeds its bound in MAX_PER_CYCLE: a change that adds
a syscall to a buffer's life must raise a bound on purpose. A count, never
a time. Skipped (77) without strace, when ptrace is not allowed, or in a
sanitizer build.

usage: check-lifecycle-syscalls.py SYSCALL-LIFECYCLE-EXE [B_SANITIZE]
"""
import sys

from stracecount import per_cycle, run, show, summary, within

# Each count includes the one poll() of the context's fd that the program
# makes per cycle. Before issue 11's lifecycle work (main e5b2f4d): put-last
# 15, close-last 16, heap 13 (docs/performance.md, "Export, first fd and
# release"). put-last 12 since a last put that follows one which found its
# file free probes before it arms a watch (no watch, no close event, no
# read). With recycled memfds (each export takes the one the previous
# release kept: no memfd_create, ftruncate, seals, fstat; a persistent
# watch, so no inotify_add_watch and no close of the probe; the release
# pays a hole punch and an unlock): put-last 12 -> 9, close-last 16 -> 12,
# heap 13 -> 9. A memfd released after its file was shared is kept only
# when a read lease says no other file of it is open for writing (set and
# dropped: any holder can strip the probe's flock, test-attack2): put-last
# 9 -> 11, close-last 12 -> 14, heap 9 -> 11. The lease as the release
# probe itself (no flock(LOCK_EX), no separate lease check, no unlock: a
# recycled release's 4 calls -> 2): put-last 11 -> 9, close-last 14 -> 12,
# heap 11 -> 9. The fresh- paths (DMABUF_CTX_NO_RECYCLE, as the uapi
# emulation) keep the counts from before. Nothing on these paths depends on
# timing: no slack.
MAX_PER_CYCLE = {'put-last': 9, 'close-last': 12, 'heap': 9,
                 'fresh-put-last': 12, 'fresh-close-last': 16, 'fresh-heap': 13}
N1, N2 = 20, 60


def check(exe):
    ok = True
    for order, bound in MAX_PER_CYCLE.items():
        per = per_cycle(lambda n: summary([exe, order, str(n)]), N1, N2)
        total = per.pop('total')
        print(f'{order}: {total:.2f} syscalls per buffer life (bound {bound})')
        show(per, '  ')
        ok = within(total, bound, f'{order}: a change added syscalls to a '
                    'buffer\'s life', slack=0.01) and ok
    return ok


if __name__ == '__main__':
    sys.exit(run(__doc__, check))
