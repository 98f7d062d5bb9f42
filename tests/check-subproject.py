#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""libdmabuf as a Meson subproject of a parent project.

Usage: check-subproject.py SOURCE_ROOT. Makes a parent project in a temporary
directory whose subprojects/libdmabuf points at SOURCE_ROOT, configures and
builds it, and checks what a parent expects: dependency('libdmabuf',
fallback : 'libdmabuf') resolves (meson.override_dependency), the parent's
program links and runs, so does one built with the test kit
(dependency('libdmabuf-test', fallback : 'libdmabuf')), and the subproject
adds no tests, benchmarks or
installed tools to the parent.
"""
import json
import os
import subprocess
import sys
import tempfile

PARENT = """project('parent', 'c')
dmabuf = dependency('libdmabuf', fallback : 'libdmabuf')
exe = executable('parent', 'parent.c', dependencies : dmabuf)
test('parent', exe)
kit = dependency('libdmabuf-test', fallback : 'libdmabuf')
kit_exe = executable('parent-kit', 'parent-kit.c', dependencies : kit)
test('parent-kit', kit_exe)
"""

PROGRAM = """#include <dmabuf.h>
int main(void)
{
	struct dmabuf_ctx *ctx = 0;

	if (dmabuf_ctx_new(0, &ctx) != 0)
		return 1;
	dmabuf_ctx_destroy(ctx);
	return 0;
}
"""

KIT_PROGRAM = """#include <fcntl.h>
#include <dmabuf-test.h>
int main(void)
{
	struct dmabuf_test_exporter *tx = 0;
	struct dmabuf_ctx *ctx = 0;
	struct dmabuf *buf = 0;

	if (dmabuf_ctx_new(0, &ctx) || dmabuf_test_exporter_new(0, 0, &tx) ||
	    dmabuf_test_exporter_export(tx, ctx, 4096, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf) ||
	    dmabuf_put(buf) || dmabuf_test_ctx_destroy(ctx, 0, 0) ||
	    dmabuf_test_exporter_get_count(tx, DMABUF_TEST_OP_RELEASE) != 1)
		return 1;
	return dmabuf_test_exporter_destroy(tx);
}
"""


def run(*cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stdout.write(r.stdout + r.stderr)
        raise SystemExit(f'check-subproject: {" ".join(cmd)} failed ({r.returncode})')
    return r.stdout


def main(root):
    with tempfile.TemporaryDirectory() as tmp:
        os.mkdir(os.path.join(tmp, 'subprojects'))
        os.symlink(os.path.abspath(root), os.path.join(tmp, 'subprojects', 'libdmabuf'))
        with open(os.path.join(tmp, 'meson.build'), 'w') as f:
            f.write(PARENT)
        with open(os.path.join(tmp, 'parent.c'), 'w') as f:
            f.write(PROGRAM)
        with open(os.path.join(tmp, 'parent-kit.c'), 'w') as f:
            f.write(KIT_PROGRAM)
        build = os.path.join(tmp, 'build')
        run('meson', 'setup', build, cwd=tmp)
        run('ninja', '-C', build, cwd=tmp)
        tests = json.loads(run('meson', 'introspect', '--tests', build, cwd=tmp))
        names = sorted(t['name'] for t in tests)
        if names != ['parent', 'parent-kit']:
            raise SystemExit(f'check-subproject: the parent sees tests {names}, expected only its own')
        benches = json.loads(run('meson', 'introspect', '--benchmarks', build, cwd=tmp))
        if benches:
            raise SystemExit(f'check-subproject: the subproject adds {len(benches)} benchmarks')
        installed = json.loads(run('meson', 'introspect', '--installed', build, cwd=tmp))
        tools = [p for p in installed.values() if '/bin/' in p]
        if tools:
            raise SystemExit(f'check-subproject: the subproject installs tools {tools}')
        targets = json.loads(run('meson', 'introspect', '--targets', build, cwd=tmp))
        run(os.path.join(build, 'parent'), cwd=tmp)
        run(os.path.join(build, 'parent-kit'), cwd=tmp)
        print(f'check-subproject: ok ({len(targets)} targets, tests {names})')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
