#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fails when a layer of the library calls a layer it may not.

Usage: check-layers.py NAME=LIB.a ... (bottom to top, as src/meson.build
lists them). Each layer's static library is read with `nm`: every symbol a
layer uses (undefined in it) and another layer defines is an edge, and each
edge must point to a layer in ALLOWED[name]. The allowed edges are the ones
docs/architecture.md draws.
"""
import subprocess
import sys

ALLOWED = {
    'base': set(),
    'memory': {'base'},
    'fences': {'base'},
    'transport': {'base'},
    'core': {'base', 'memory', 'fences', 'transport'},
    'remote': {'base', 'memory', 'fences', 'transport', 'core'},
    'api': {'base', 'memory', 'fences', 'transport', 'core', 'remote'},
    # The test kit (src/testkit/) sits above api and links the shared
    # library: it may reach any layer, but only through exported functions.
    'testkit': {'base', 'memory', 'fences', 'transport', 'core', 'remote', 'api'},
}
# Layers that may call only the public API (PUBLIC_PREFIX) of the others.
PUBLIC_ONLY = {'testkit'}
PUBLIC_PREFIX = 'dmabuf_'


def symbols(lib):
    """(defined, {undefined symbol: [object files]}) of a static library."""
    out = subprocess.run(['nm', '-A', lib], check=True, capture_output=True,
                         text=True).stdout
    defined, used = set(), {}
    for line in out.splitlines():
        where, _, rest = line.rpartition(': ')
        fields = rest.split()
        obj = where.rsplit(':', 1)[-1]
        if len(fields) == 2 and fields[0] == 'U':
            used.setdefault(fields[1], []).append(obj)
        elif len(fields) == 3 and fields[1] in 'TDBRCVW':
            defined.add(fields[2])
    return defined, used


def main(args):
    layers = [a.split('=', 1) for a in args]
    unknown = [n for n, _ in layers if n not in ALLOWED]
    if unknown or not layers:
        print(f'check-layers: unknown layers {unknown}', file=sys.stderr)
        return 2
    table = {name: symbols(lib) for name, lib in layers}
    owner = {}
    for name, (defined, _) in table.items():
        for sym in defined:
            owner.setdefault(sym, name)
    bad = 0
    edges = set()
    for name, (defined, used) in table.items():
        for sym, objs in sorted(used.items()):
            to = owner.get(sym)
            if to is None or to == name or sym in defined:
                continue
            edges.add((name, to))
            if name in PUBLIC_ONLY and not sym.startswith(PUBLIC_PREFIX):
                bad += 1
                print(f'layer violation: {name} ({", ".join(sorted(set(objs)))}) '
                      f'calls {sym} of {to}, which is not public API')
            elif to not in ALLOWED[name]:
                bad += 1
                print(f'layer violation: {name} ({", ".join(sorted(set(objs)))}) '
                      f'calls {sym} of {to}')
    for a, b in sorted(edges):
        print(f'edge: {a} -> {b}')
    print(f'{len(edges)} edges between {len(layers)} layers, {bad} violations')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
