#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""DMABUF_DEBUG=protocol traces every wire message in both directions.

Usage: check-trace.py DEMO. Runs the multi-process demo with the variable
set and checks that each IMPORT an importer sends is seen by the exporter,
answered, and the answer seen by the importer, with the same serial; and
that without the variable nothing is traced.
"""
import os
import re
import subprocess
import sys

LINE = re.compile(r'libdmabuf\[(\d+)\] (importer|exporter) (->|<-) (.+?): (\w+) serial (\d+)')


def run(demo, env):
    r = subprocess.run([demo], env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.stdout.write(r.stdout + r.stderr)
        raise SystemExit(f'check-trace: the demo failed ({r.returncode})')
    return r.stderr


def main(demo):
    env = dict(os.environ)
    env.pop('DMABUF_DEBUG', None)
    if LINE.search(run(demo, env)):
        raise SystemExit('check-trace: traced without DMABUF_DEBUG=protocol')
    env['DMABUF_DEBUG'] = 'protocol'
    seen = set()
    for m in LINE.finditer(run(demo, env)):
        pid, side, arrow, peer, op, serial = m.groups()
        seen.add((side, arrow, op, serial))
    imports = [s for (side, arrow, op, s) in seen
               if side == 'importer' and arrow == '->' and op == 'IMPORT']
    if not imports:
        raise SystemExit('check-trace: no IMPORT traced')
    for s in imports:
        for want in [('exporter', '<-', 'IMPORT', s), ('exporter', '->', 'IMPORT_REPLY', s),
                     ('importer', '<-', 'IMPORT_REPLY', s)]:
            if want not in seen:
                raise SystemExit(f'check-trace: missing {want}')
    print(f'check-trace: ok ({len(seen)} distinct messages, {len(imports)} imports)')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
