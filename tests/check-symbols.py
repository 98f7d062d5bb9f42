#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The shared library must export exactly the functions declared in the public
headers: no internal symbol leaks out, and no declared function is missing."""
import pathlib
import re
import subprocess
import sys

lib, incdir = sys.argv[1], pathlib.Path(sys.argv[2])
keep = lambda name: True
if len(sys.argv) == 5 and sys.argv[3] == '--prefix':
    keep = lambda name, p=sys.argv[4]: name.startswith(p)
elif len(sys.argv) == 5 and sys.argv[3] == '--exclude-prefix':
    keep = lambda name, p=sys.argv[4]: not name.startswith(p)
elif len(sys.argv) != 3:
    sys.exit(__doc__)

declared = set()
decl = re.compile(r'\b(dmabuf_[a-z0-9_]+)\s*\(')
for header in sorted(incdir.glob('*.h')):
    text = header.read_text()
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)   # comments
    text = re.sub(r'^\s*#.*?(?<!\\)$', '', text, flags=re.M | re.S)  # macros
    for stmt in text.split(';'):
        stmt = stmt.strip()
        if stmt.startswith('typedef') or '{' in stmt and 'struct' in stmt.split('{')[0] and '(' not in stmt.split('{')[0]:
            # struct bodies hold function pointers, not functions
            stmt = stmt.split('}')[-1]
        m = decl.search(stmt)
        if m and not re.search(r'\(\s*\*\s*' + m.group(1), stmt):
            if keep(m.group(1)):
                declared.add(m.group(1))

out = subprocess.run(['nm', '-D', '--defined-only', lib], check=True,
                     capture_output=True, text=True).stdout
exported = set()
for line in out.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in 'TWDBRV' and parts[1].isupper():
        exported.add(parts[2].split('@')[0])

leaked = sorted(exported - declared)
missing = sorted(declared - exported)
for s in leaked:
    print(f'exported but not declared in include/: {s}')
for s in missing:
    print(f'declared in include/ but not exported: {s}')
print(f'{len(exported)} exported, {len(declared)} declared')
sys.exit(1 if leaked or missing else 0)
