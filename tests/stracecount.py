# SPDX-License-Identifier: MIT
"""What the syscall-count checks (check-*-syscalls.py) share: the skips, one strace run, its summary, and
the per-unit difference of two runs (start-up and tear-down cancel out)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile


def skip_reason(sanitize):
    """Why the counts cannot be taken here (exit 77), or None."""
    if sanitize not in (None, '', 'none'):
        return 'sanitizer build (b_sanitize=%s)' % sanitize
    if not shutil.which('strace'):
        return 'strace is not installed'
    return None


def trace(cmd, strace_opts, env=None):
    """Runs cmd under `strace -f` + strace_opts; returns the trace's text.
    Exits 77 when ptrace is not allowed, 1 when cmd fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'strace.txt')
        r = subprocess.run(['strace', '-f'] + strace_opts + ['-o', out] + cmd,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=100, env=env)
        if r.returncode != 0:
            text = r.stderr
            if 'ptrace' in text and ('Operation not permitted' in text or
                                     'PTRACE' in text):
                print('SKIP: ptrace not permitted:', text.strip())
                sys.exit(77)
            print(f'{cmd} failed ({r.returncode}):\n{r.stdout}{r.stderr}')
            sys.exit(1)
        with open(out) as f:
            return f.read()


MARK = '/dmabuf-syscall-mark/'
_LINE = re.compile(r'^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()')


def marked_calls(text):
    """The calls of an `strace -f` trace (no -c), as (pid, name, between)
    in order, `between` telling whether the call lies between its process's
    marks (syscall-common.h: a faccessat() of MARK + 'begin' / 'end'; the
    marks themselves left out), and the number of marks seen."""
    state, calls, marks = {}, [], 0
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or m.group(2):
            continue        # not a call, or the rest of one counted
        pid, name = m.group(1), m.group(3)
        if MARK + 'begin' in line:
            state[pid] = True
            marks += 1
        elif MARK + 'end' in line:
            state[pid] = False
            marks += 1
        else:
            calls.append((pid, name, bool(state.get(pid))))
    return calls, marks


def summary(cmd, env=None):
    """Calls per syscall name (and 'total') from `strace -c` of cmd."""
    text = trace(cmd, ['-c'], env)
    calls = {}
    for line in text.splitlines():
        tok = line.split()
        if len(tok) < 5 or not tok[0][0].isdigit():
            continue
        calls[tok[-1]] = int(tok[3])
    if 'total' not in calls:
        print('no strace summary in', text)
        sys.exit(1)
    return calls


def per_unit(count, n1, n2):
    """(count(n2) - count(n1)) / (n2 - n1), per syscall name."""
    a, b = count(n1), count(n2)
    return {k: (b.get(k, 0) - a.get(k, 0)) / (n2 - n1) for k in set(a) | set(b)}


def lowest_total(measure, bound, tries=3):
    """measure() -> per-unit counts; measured again (up to tries times) while
    the total is above bound, and the lowest kept. The calls that depend on
    timing (an extra wake-up: poll, epoll_wait, a read that finds nothing)
    only ever add, while a syscall added to the path shows in every run, so
    the lowest total is the one to judge."""
    best = None
    for _ in range(tries):
        per = measure()
        if best is None or per['total'] < best['total']:
            best = per
        if best['total'] <= bound:
            break
    return best


def show(per, indent=''):
    """Prints the non-zero counts, most frequent first ('total' left out)."""
    for name, v in sorted(per.items(), key=lambda kv: -kv[1]):
        if v and name != 'total':
            print(f'{indent}{v:8.2f}  {name}')
