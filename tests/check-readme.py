#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The README's first C example is examples/readme.c, which the tests build
and run: the README must show exactly that file's code (everything after its
header comment), so the snippet compiles as written.

usage: check-readme.py README.md examples/readme.c
"""
import sys


def code_of(example):
    lines = open(example, encoding='utf-8').read().splitlines()
    # skip the SPDX line and the header comment that follows it
    for i, line in enumerate(lines):
        if line.startswith('#include'):
            return '\n'.join(lines[i:]).strip('\n')
    sys.exit(f'{example}: no #include line')


def first_c_block(readme):
    lines = open(readme, encoding='utf-8').read().splitlines()
    try:
        start = lines.index('```c')
        end = lines.index('```', start + 1)
    except ValueError:
        sys.exit(f'{readme}: no ```c block')
    return '\n'.join(lines[start + 1:end]).strip('\n')


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    want, got = code_of(sys.argv[2]), first_c_block(sys.argv[1])
    if want != got:
        import difflib
        diff = difflib.unified_diff(want.splitlines(), got.splitlines(),
                                    sys.argv[2], sys.argv[1], lineterm='')
        print('\n'.join(diff))
        sys.exit(f'{sys.argv[1]}: the C example differs from {sys.argv[2]}')
    print(f'{sys.argv[1]}: the C example is {sys.argv[2]}')


main()
