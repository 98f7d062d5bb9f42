# SPDX-License-Identifier: MIT
"""What the syscall-count checks (check-*-syscalls.py) share: their main()
(run: usage, the skips, the exit status), one strace run, its summary or its
calls between marks, the per-unit difference of two runs (start-up and
tear-down cancel out), the lowest of a few measurements and the bound's
verdict. The bounds stay named constants at the top of each script."""
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


def traced_calls(cmd, want_marks=None, why=''):
    """marked_calls() of `strace -f` of cmd (its calls only); exits 1 unless
    the trace holds want_marks marks (when given; why says where from)."""
    calls, marks = marked_calls(trace(cmd, []))
    if want_marks is not None and marks != want_marks:
        print(f'{marks} marks in the trace, want {want_marks} ({why})')
        sys.exit(1)
    return calls


def tally(calls, between_only=False):
    """Calls per syscall name (and 'total') of traced_calls(), of every
    process and thread, or (between_only) only those between their marks."""
    per = {'total': 0}
    for _, name, between in calls:
        if between or not between_only:
            per[name] = per.get(name, 0) + 1
            per['total'] += 1
    return per


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


def per_cycle(count, n1, n2, bound=None):
    """per_unit(count, n1, n2); with a bound, lowest_total() of it."""
    if bound is None:
        return per_unit(count, n1, n2)
    return lowest_total(lambda: per_unit(count, n1, n2), bound)


def within(total, bound, what, slack=0):
    """Whether total is within bound (+ slack); if not, says so in a FAIL
    line that ends with what (the path that gained syscalls)."""
    if total > bound + slack:
        print(f'FAIL: {total:.2f} > {bound}: {what}')
        return False
    return True


def run(doc, check, nargs=1):
    """A check script's main(): sys.argv[1:1 + nargs] are check()'s
    arguments, the one after them b_sanitize. Without them prints doc and
    returns 2; returns 77 (after a SKIP line) when skip_reason() gives a
    reason, else 0 when check(*args) returns true, 1 when it returns false.
    Use: sys.exit(run(__doc__, check))."""
    if len(sys.argv) < nargs + 1:
        print(doc)
        return 2
    why = skip_reason(sys.argv[nargs + 1] if len(sys.argv) > nargs + 1 else None)
    if why:
        print('SKIP:', why)
        return 77
    return 0 if check(*sys.argv[1:nargs + 1]) else 1


def show(per, indent=''):
    """Prints the non-zero counts, most frequent first ('total' left out)."""
    for name, v in sorted(per.items(), key=lambda kv: -kv[1]):
        if v and name != 'total':
            print(f'{indent}{v:8.2f}  {name}')
