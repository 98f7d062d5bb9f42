#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# One entry point for building, testing and running libdmabuf on Debian 12.
# Every subcommand does its own set-up: missing Debian packages are installed
# (as root or via passwordless `sudo -n`) or the exact apt-get command is
# printed; the meson build directory is configured (or reconfigured) and built.
#
#   ./run.sh demo [--frames N] [--fps N]
#                             build and run build/examples/dmabuf-demo
#   ./run.sh test             normal tests, valgrind memcheck, ASan+UBSan
#   ./run.sh bench [--write-doc] [--runs N] [NAME...]
#                             release build (build-bench/), every benchmark N
#                             times pinned and unpinned, the table of figures
#   ./run.sh fuzz [SECONDS]   clang libFuzzer build (build-fuzz/), run each
#                             fuzz/ harness for SECONDS (default 60)
#   ./run.sh kselftest [TEST...]  the kernel's dma-buf selftests, built from
#                             Debian's linux-source-6.12, run under dmabuf-run
#   ./run.sh conformance      the conformance programs on a real kernel (QEMU)
#                             and under dmabuf-run; writes docs/conformance.md
#   ./run.sh help
#
# `./run.sh test` stops at the first failing stage, always prints a summary
# with per-stage timings, and ends with one line `N passed, M failed` counting
# meson test results over all stages, read from each run's
# meson-logs/testlog*.json (passed = OK + EXPECTEDFAIL, failed = every other
# result but SKIP).
#
# Environment:
#   DMABUF_JOBS=N            parallel compile/test jobs (default: nproc)
#   DMABUF_FORCE_MISSING=..  (testing) treat these packages as not installed;
#   DMABUF_NO_INSTALL=1      (testing) never install, only print the command;
#                            both are handled by tools/install-deps.sh.
# Works without standard input (CI runs `bash .ci/run` with CI=true).
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
cd "$ROOT"

JOBS=${DMABUF_JOBS:-$(nproc 2>/dev/null || echo 2)}
ASAN_FLAGS=("-Db_sanitize=address,undefined" "-Db_lundef=false")
SAN_ASAN_OPTIONS_LEAKS='detect_leaks=1:abort_on_error=1'
SAN_ASAN_OPTIONS_NOLEAKS='detect_leaks=0:abort_on_error=1'
SAN_UBSAN_OPTIONS='print_stacktrace=1:halt_on_error=1'

msg() { printf 'run.sh: %s\n' "$*" >&2; }
die() { msg "error: $*"; exit 1; }

usage() {
	cat <<'EOF'
usage: ./run.sh <command> [args]

commands:
  demo [--frames N] [--fps N]
                   install missing packages, build, run build/examples/dmabuf-demo
                   with these options (N frames, default 4; at most N frames a
                   second, default as fast as it goes, to watch it with
                   build/tools/dmabuf-ls); its exit code is passed through
  test             install missing packages, then run in order, stopping at the
                   first failure:
                     1. build/ + meson test (all suites)
                     2. meson test --setup valgrind (memcheck; python 'build'
                        suite excluded)
                     3. build-asan/ (-Db_sanitize=address,undefined) + meson test
                     4. build-doc/ (-Ddocumentation=true): the doxygen API
                        reference (warnings are errors) and the man pages
                   ends with a line "N passed, M failed"
  bench [--write-doc] [--runs N] [NAME...]
                   release build in build-bench/; runs every benchmark (or the
                   NAMEs: handoff remote fence map-1g memory importers
                   buffer-cycle uapi)
                   N times (default 5) pinned (taskset -c 0) and N times
                   unpinned, prints the table of figures (min/median/max,
                   ratio vs the issue's target); --write-doc rewrites the
                   figures table in docs/performance.md. Never fails on a
                   missed target, only when a benchmark fails
  fuzz [SECONDS]   clang + libFuzzer build in build-fuzz/ (-Dfuzzing=true, ASan,
                   UBSan); run each fuzz/ harness for SECONDS (default 60)
  kselftest [TEST...]
                   build build/, then the kernel's own selftests (dmabuf-heaps,
                   drivers/dma-buf/udmabuf, sync) from Debian's linux-source-6.12
                   (cached in build/kselftest/), run each under
                   build/tools/dmabuf-run; ends with "N passed, N failed, N skipped"
                   (tools/kselftest.sh --help for details)
  conformance [-k PKG] [-2 PKG] [--record] [--no-vm]
                   run tests/conformance/ on a Debian kernel in QEMU
                   (tools/conformance-vm.sh; PKG: kernel package, -2: a second
                   one to compare versions) and under build/tools/dmabuf-run,
                   write docs/conformance.md; fails on any difference that is
                   not a documented departure. Without QEMU (or --no-vm) the
                   emulated half is compared with the recorded kernel results
                   (tests/conformance/expected-6.12.txt); --record updates them
  abi-baseline     rewrite the ABI baselines tests/abi/libdmabuf*.so.0.abi from
                   build/ (the `abi` test compares the library with it)
  help             show this text

environment: DMABUF_JOBS (default nproc), DMABUF_FORCE_MISSING, DMABUF_NO_INSTALL
EOF
}

# ---------------------------------------------------------------- helpers

# deps [--fuzz]: install missing Debian packages or explain how to.
deps() {
	bash "$ROOT/tools/install-deps.sh" "$@"
}

# setup_dir DIR [MESON-OPTIONS...]: configure DIR, reusing an existing one.
setup_dir() {
	local dir=$1
	shift
	if [[ -f $dir/meson-private/coredata.dat ]]; then
		meson setup --reconfigure "$dir" "$@"
	else
		meson setup "$dir" "$@"
	fi
}

# lsan_works: LeakSanitizer needs ptrace-like thread suspension, which some
# containers (and running under strace/gdb) forbid. Compile a program that
# leaks on purpose and check that LSan reports it rather than dying.
lsan_works() {
	local tmp out cc=${CC:-cc}
	tmp=$(mktemp -d)
	printf '%s\n' '#include <stdlib.h>' 'void *volatile p;' \
		'int main(void) { p = malloc(33); p = 0; return 0; }' >"$tmp/leak.c"
	if ! "$cc" -fsanitize=address -O0 -g "$tmp/leak.c" -o "$tmp/leak" >/dev/null 2>&1; then
		rm -rf "$tmp"
		return 0 # cannot tell; let the real build report the problem
	fi
	out=$(ASAN_OPTIONS=detect_leaks=1 "$tmp/leak" 2>&1 </dev/null) || true
	rm -rf "$tmp"
	[[ $out == *"LeakSanitizer: detected memory leaks"* ]]
}

# asan_env: export ASAN_OPTIONS/UBSAN_OPTIONS, with leak detection if it works.
asan_env() {
	if lsan_works; then
		export ASAN_OPTIONS=$SAN_ASAN_OPTIONS_LEAKS
	else
		msg "note: LeakSanitizer does not work here (ptrace restricted?);" \
			"running ASan with detect_leaks=0"
		export ASAN_OPTIONS=$SAN_ASAN_OPTIONS_NOLEAKS
	fi
	export UBSAN_OPTIONS=$SAN_UBSAN_OPTIONS
	msg "ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS"
}

# ------------------------------------------------------- test bookkeeping

STAGE_NAMES=()
STAGE_RESULTS=()
STAGE_TIMES=()
STAGE_NOTES=()
TOTAL_PASSED=0
TOTAL_FAILED=0
FAILED_STAGE=
START_TIME=$SECONDS

# stage NAME CMD...: run CMD as a named stage, record result and time.
stage() {
	local name=$1 start rc
	shift
	msg "==> stage: $name"
	start=$SECONDS
	if "$@"; then rc=0; else rc=$?; fi
	STAGE_NAMES+=("$name")
	STAGE_TIMES+=($((SECONDS - start)))
	if [[ $rc -eq 0 ]]; then
		STAGE_RESULTS+=(PASS)
	else
		STAGE_RESULTS+=(FAIL)
		FAILED_STAGE=$name
		msg "stage '$name' FAILED (exit $rc)"
	fi
	STAGE_NOTES+=("${STAGE_NOTE:-}")
	STAGE_NOTE=
	return "$rc"
}

# meson_test DIR SETUP MESON-TEST-ARGS...: run meson test in DIR (with the
# test setup SETUP unless it is empty) and add its results to the totals.
# The counts come from the machine-readable log meson writes for the run,
# DIR/meson-logs/testlog[-SETUP].json (one JSON object per test), never from
# the text summary. Used as a stage body.
meson_test() {
	local dir=$1 setup=$2 json rc counts passed failed skipped
	shift 2
	json=$dir/meson-logs/testlog${setup:+-$setup}.json
	local args=(-C "$dir" ${setup:+--setup "$setup"} --num-processes "$JOBS" "$@")
	rm -f "$json" # a stale log must not be counted
	msg "meson test ${args[*]}"
	if meson test "${args[@]}" </dev/null; then rc=0; else rc=$?; fi
	if [[ ! -f $json ]]; then
		STAGE_NOTE="meson test wrote no $json"
		TOTAL_FAILED=$((TOTAL_FAILED + 1))
		return $((rc ? rc : 1))
	fi
	# passed = OK + EXPECTEDFAIL; skipped = SKIP; every other result
	# (FAIL, UNEXPECTEDPASS, TIMEOUT, ERROR, ...) is a failure.
	counts=$(python3 -c '
import json, sys
n = {"passed": 0, "failed": 0, "skipped": 0}
with open(sys.argv[1]) as f:
    for line in f:
        if line.strip():
            r = json.loads(line).get("result")
            n["passed" if r in ("OK", "EXPECTEDFAIL") else
              "skipped" if r == "SKIP" else "failed"] += 1
print(n["passed"], n["failed"], n["skipped"])' "$json") || {
		STAGE_NOTE="cannot read $json"
		TOTAL_FAILED=$((TOTAL_FAILED + 1))
		return 1
	}
	read -r passed failed skipped <<<"$counts"
	TOTAL_PASSED=$((TOTAL_PASSED + passed))
	TOTAL_FAILED=$((TOTAL_FAILED + failed))
	STAGE_NOTE="$passed passed, $failed failed"
	[[ $skipped -gt 0 ]] && STAGE_NOTE+=", $skipped skipped"
	if [[ $rc -eq 0 && $failed -gt 0 ]]; then
		rc=1 # never report failures as success
	fi
	return "$rc"
}

print_summary() {
	local rc=$? i
	{
		echo
		echo "run.sh: ================= summary ================="
		for i in "${!STAGE_NAMES[@]}"; do
			printf 'run.sh:   %-4s %-40s %5ss  %s\n' "${STAGE_RESULTS[i]}" \
				"${STAGE_NAMES[i]}" "${STAGE_TIMES[i]}" "${STAGE_NOTES[i]}"
		done
		printf 'run.sh:   total time %ss\n' "$((SECONDS - START_TIME))"
		if [[ -n $FAILED_STAGE ]]; then
			echo "run.sh: FAILED at stage: $FAILED_STAGE"
		elif [[ $rc -ne 0 ]]; then
			echo "run.sh: FAILED (exit $rc) outside any stage"
		else
			echo "run.sh: all stages passed"
		fi
	} >&2
	echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
	exit "$rc"
}

# ---------------------------------------------------------------- commands

cmd_test() {
	[[ $# -eq 0 ]] || { usage >&2; exit 2; }
	trap print_summary EXIT

	stage "dependencies" deps || exit 1

	# (1) normal build, all suites.
	stage "configure build/" setup_dir build -Dtests=true -Db_sanitize=none || exit 1
	stage "compile build/" ninja -C build -j "$JOBS" || exit 1
	stage "meson test (build/)" meson_test build "" --print-errorlogs || exit 1

	# (2) the same suites under valgrind memcheck. The 'build' suite is the
	# python symbol check: valgrinding the interpreter proves nothing.
	stage "valgrind memcheck (build/)" meson_test build valgrind \
		--no-suite build --print-errorlogs || exit 1

	# (3) AddressSanitizer + UndefinedBehaviorSanitizer build.
	stage "configure build-asan/" setup_dir build-asan -Dtests=true "${ASAN_FLAGS[@]}" || exit 1
	stage "compile build-asan/" ninja -C build-asan -j "$JOBS" || exit 1
	asan_env
	stage "meson test (build-asan/, ASan+UBSan)" meson_test build-asan "" \
		--print-errorlogs || exit 1

	# (4) the API reference (doxygen, every warning an error) and the man
	# pages (scdoc), in a build directory of their own.
	if command -v doxygen >/dev/null 2>&1; then
		stage "configure build-doc/" setup_dir build-doc -Ddocumentation=true \
			-Dtests=false -Dbenchmarks=false -Dtools=true || exit 1
		stage "documentation (build-doc/)" ninja -C build-doc -j "$JOBS" || exit 1
	else
		msg "doxygen not installed: documentation stage skipped"
	fi
}

cmd_demo() {
	local demo=examples/dmabuf-demo
	deps || exit 1
	setup_dir build -Dtests=true -Db_sanitize=none || die "meson setup build failed"
	ninja -C build -j "$JOBS" "$demo" || die "building build/$demo failed"
	msg "running build/$demo $*"
	exec "build/$demo" "$@"
}

# bench [--write-doc] [--runs N] [NAME...]: a release build in build-bench/,
# every benchmark (or the NAMEs) N times (default 5) pinned (taskset -c 0:
# both processes on CPU 0) and N times unpinned (BENCH_UNPINNED=1), outputs
# in build-bench/bench-results/, then tools/bench-report.py prints the table
# (min / median / max per figure) and with --write-doc rewrites the figures
# in docs/performance.md. The commands come from `meson introspect
# --benchmarks`, so `meson test -C build-bench --benchmark` runs the same.
cmd_bench() {
	local runs=5 write_doc=0 names=() name cmd mode i out dir=build-bench/bench-results
	while [[ $# -gt 0 ]]; do
		case $1 in
		--write-doc) write_doc=1 ;;
		--runs) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }; runs=$2; shift ;;
		-*) usage >&2; exit 2 ;;
		*) names+=("$1") ;;
		esac
		shift
	done
	deps || exit 1
	# The wl_shm baseline of bench-handoff; without it that figure is skipped.
	deps libwayland-dev || msg "libwayland-dev missing: no wl_shm baseline"
	command -v taskset >/dev/null || die "taskset (util-linux) not found"
	setup_dir build-bench --buildtype=release -Db_sanitize=none -Dtests=false \
		-Dbenchmarks=true || die "meson setup build-bench failed"
	ninja -C build-bench -j "$JOBS" || die "build failed"
	rm -rf "$dir"
	mkdir -p "$dir"
	# One line per benchmark: NAME<TAB>shell-quoted command.
	local list
	list=$(meson introspect --benchmarks build-bench | python3 -c '
import json, shlex, sys
for b in json.load(sys.stdin):
    print(b["name"] + "\t" + " ".join(shlex.quote(c) for c in b["cmd"]))') ||
		die "meson introspect --benchmarks failed"
	while IFS=$'\t' read -r name cmd; do
		if [[ ${#names[@]} -gt 0 && ! " ${names[*]} " =~ " $name " ]]; then
			continue
		fi
		for mode in pinned unpinned; do
			for ((i = 1; i <= runs; i++)); do
				out=$dir/$name.$mode.$i.txt
				msg "bench $name ($mode, run $i of $runs)"
				if [[ $mode == pinned ]]; then
					eval "taskset -c 0 $cmd" >"$out" 2>&1 </dev/null ||
						{ cat "$out" >&2; die "benchmark $name failed"; }
				else
					eval "BENCH_UNPINNED=1 $cmd" >"$out" 2>&1 </dev/null ||
						{ cat "$out" >&2; die "benchmark $name failed"; }
				fi
			done
		done
		# The first pinned run's own report, for the human reader.
		grep -v '^BENCH ' "$dir/$name.pinned.1.txt" || true
	done <<<"$list"
	local commit
	commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown) ($(git log -1 --format=%s 2>/dev/null | cut -c1-60))"
	if [[ $write_doc -eq 1 ]]; then
		python3 tools/bench-report.py "$dir" --commit "$commit" --write-doc docs/performance.md
	else
		python3 tools/bench-report.py "$dir" --commit "$commit"
	fi
}

# The libFuzzer harnesses fuzz/meson.build builds with -Dfuzzing=true:
# NAME -> build-fuzz/fuzz/fuzz-NAME, seeds in FUZZ_SEEDS[NAME], dictionary
# fuzz/NAME.dict.
FUZZ_HARNESSES=(wire)
declare -A FUZZ_SEEDS=([wire]=fuzz/corpus)

cmd_fuzz() {
	local secs=${1:-60} name exe dir failed=()
	[[ $# -le 1 && $secs =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
	deps --fuzz || exit 1
	if [[ -f build-fuzz/meson-info/intro-compilers.json ]] &&
		! grep -q '"id": "clang"' build-fuzz/meson-info/intro-compilers.json; then
		msg "build-fuzz/ was configured with another compiler; wiping it"
		rm -rf build-fuzz
	fi
	CC=clang setup_dir build-fuzz -Dfuzzing=true "${ASAN_FLAGS[@]}" ||
		die "meson setup build-fuzz failed"
	ninja -C build-fuzz -j "$JOBS" "${FUZZ_HARNESSES[@]/#/fuzz/fuzz-}" ||
		die "building the fuzz harnesses failed"

	asan_env
	mkdir -p build-fuzz/artifacts
	for name in "${FUZZ_HARNESSES[@]}"; do
		exe=build-fuzz/fuzz/fuzz-$name
		# New inputs go to build-fuzz/corpus/; the committed seeds are read.
		dir=build-fuzz/corpus/fuzz-$name
		mkdir -p "$dir"
		msg "fuzzing fuzz-$name for ${secs}s (corpus $dir, seeds ${FUZZ_SEEDS[$name]})"
		if ! "$exe" -max_total_time="$secs" -print_final_stats=1 \
			-dict="fuzz/$name.dict" \
			-artifact_prefix="build-fuzz/artifacts/fuzz-$name-" \
			"$dir" "${FUZZ_SEEDS[$name]}" </dev/null; then
			failed+=("fuzz-$name")
			msg "fuzz-$name found a crash; reproducer in build-fuzz/artifacts/"
		fi
	done
	[[ ${#failed[@]} -eq 0 ]] || die "fuzzing failed: ${failed[*]}"
	msg "fuzzing finished, no crashes"
}

cmd_kselftest() {
	deps || exit 1
	setup_dir build -Dtests=true -Db_sanitize=none || die "meson setup build failed"
	ninja -C build -j "$JOBS" || die "build failed"
	exec bash "$ROOT/tools/kselftest.sh" --build build "$@" </dev/null
}

cmd_conformance() {
	local pkg= pkg2= record=0 vm=1 dir=build/conformance rc=0 note= kargs=() k2args=()
	local recorded=tests/conformance/expected-6.12.txt
	while [[ $# -gt 0 ]]; do
		case $1 in
		-k) pkg=${2:?}; shift 2 ;;
		-2) pkg2=${2:?}; shift 2 ;;
		--record) record=1; shift ;;
		--no-vm) vm=0; shift ;;
		*) usage >&2; exit 2 ;;
		esac
	done
	deps || exit 1
	setup_dir build -Dtests=true -Db_sanitize=none >/dev/null || die "meson setup build failed"
	ninja -C build -j "$JOBS" || die "build failed"
	[[ -x build/tools/dmabuf-run ]] ||
		die "build/tools/dmabuf-run is not built: the emulated half needs the uapi layer"
	mkdir -p "$dir"

	# Emulated half: the same programs, dynamically linked, under dmabuf-run.
	msg "conformance: emulated half (dmabuf-run)"
	build/tools/dmabuf-run build/tests/conformance/dmabuf-conformance \
		>"$dir/emulated.txt" 2>"$dir/emulated.stderr" </dev/null ||
		die "dmabuf-conformance under dmabuf-run failed (exit $?); see $dir/emulated.stderr"
	grep -q '^CONF-END$' "$dir/emulated.txt" || die "the emulated run did not finish"

	# Kernel half.
	if [[ $vm -eq 1 ]]; then
		local start=$SECONDS
		msg "conformance: kernel half (QEMU)"
		if tools/conformance-vm.sh ${pkg:+-k "$pkg"} -o "$dir/kernel.txt"; then
			kargs=(--kernel "$dir/kernel.txt")
			note="booted by tools/conformance-vm.sh in $((SECONDS - start)) s on $(nproc) cores (TCG)"
			if [[ $record -eq 1 ]]; then
				cp "$dir/kernel.txt" "$recorded"
				msg "recorded the kernel results in $recorded"
			fi
		else
			rc=$?
			[[ $rc -eq 3 ]] || die "the kernel half failed"
			msg "conformance: QEMU or the kernel package cannot be installed here;" \
				"VM half SKIPPED, comparing with the recorded $recorded"
			note="VM half skipped (QEMU unavailable); kernel results as recorded"
		fi
		if [[ -n $pkg2 ]] && tools/conformance-vm.sh -k "$pkg2" -o "$dir/kernel2.txt"; then
			k2args=(--kernel2 "$dir/kernel2.txt")
		fi
	else
		msg "conformance: --no-vm: comparing with the recorded $recorded"
		note="VM half not run (--no-vm); kernel results as recorded"
	fi
	python3 tests/conformance/compare.py --recorded "$recorded" \
		--source tests/conformance/expected-source.txt \
		--departures tests/conformance/departures.txt \
		--known-bugs tests/conformance/known-bugs.txt \
		--emulated "$dir/emulated.txt" ${kargs[@]+"${kargs[@]}"} \
		${k2args[@]+"${k2args[@]}"} --vm-note "$note" \
		--notes tests/conformance/notes.md --md docs/conformance.md
}

# abi-baseline: rewrite tests/abi/libdmabuf.so.0.abi and the test kit's
# tests/abi/libdmabuf-test.so.0.abi from build/ (after a deliberate ABI
# change; commit them with the change).
cmd_abi_baseline() {
	deps abigail-tools || exit 1
	setup_dir build -Dtests=true -Db_sanitize=none >/dev/null || die "meson setup build failed"
	ninja -C build -j "$JOBS" || die "build failed"
	abidw --headers-dir include --headers-dir build/include --no-corpus-path \
		--out-file tests/abi/libdmabuf.so.0.abi build/src/libdmabuf.so.0 ||
		die "abidw failed"
	abidw --headers-dir include --headers-dir build/include --no-corpus-path \
		--out-file tests/abi/libdmabuf-test.so.0.abi build/src/testkit/libdmabuf-test.so.0 ||
		die "abidw failed (test kit)"
	msg "wrote tests/abi/libdmabuf.so.0.abi and tests/abi/libdmabuf-test.so.0.abi"
}

# ------------------------------------------------------------------- main

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
demo)  cmd_demo "$@" ;;
test)  cmd_test "$@" ;;
bench) cmd_bench "$@" ;;
fuzz)  cmd_fuzz "$@" ;;
kselftest) cmd_kselftest "$@" ;;
conformance) cmd_conformance "$@" ;;
abi-baseline) cmd_abi_baseline "$@" ;;
help|-h|--help) usage ;;
*)
	[[ -n $cmd ]] && msg "unknown command '$cmd'"
	usage >&2
	exit 2
	;;
esac
