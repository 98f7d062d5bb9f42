#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# One entry point for building, testing and running libdmabuf on Debian 12.
# Every subcommand does its own set-up: missing Debian packages are installed
# (as root or via passwordless `sudo -n`) or the exact apt-get command is
# printed; the meson build directory is configured (or reconfigured) and built.
#
#   ./run.sh demo [ARGS...]   build and run build/examples/dmabuf-demo
#   ./run.sh test             normal tests, valgrind memcheck, ASan+UBSan
#   ./run.sh bench            build and run the benchmarks
#   ./run.sh fuzz [SECONDS]   clang libFuzzer build (build-fuzz/), run each
#                             fuzz/ harness for SECONDS (default 60)
#   ./run.sh conformance      the conformance programs on a real kernel (QEMU)
#                             and under dmabuf-run; writes docs/conformance.md
#   ./run.sh help
#
# `./run.sh test` stops at the first failing stage, always prints a summary
# with per-stage timings, and ends with one line `N passed, M failed` counting
# meson test results over all stages (passed = Ok + Expected Fail, failed =
# Fail + Unexpected Pass + Timeout).
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
  demo [ARGS...]   install missing packages, build, run build/examples/dmabuf-demo
                   (its exit code is passed through)
  test             install missing packages, then run in order, stopping at the
                   first failure:
                     1. build/ + meson test (all suites)
                     2. meson test --setup valgrind (memcheck; python 'build'
                        suite excluded)
                     3. build-asan/ (-Db_sanitize=address,undefined) + meson test
                   ends with a line "N passed, M failed"
  bench            build and run the benchmarks (meson test --benchmark)
  fuzz [SECONDS]   clang + libFuzzer build in build-fuzz/ (-Dfuzzing=true, ASan,
                   UBSan); run each fuzz/ harness for SECONDS (default 60)
  conformance [-k PKG] [-2 PKG] [--record] [--no-vm]
                   run tests/conformance/ on a Debian kernel in QEMU
                   (tools/conformance-vm.sh; PKG: kernel package, -2: a second
                   one to compare versions) and under build/tools/dmabuf-run,
                   write docs/conformance.md; fails on any difference that is
                   not a documented departure. Without QEMU (or --no-vm) the
                   emulated half is compared with the recorded kernel results
                   (tests/conformance/expected-6.12.txt); --record updates them
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

# has_target DIR NAME: true if ninja in DIR knows the linked output NAME
# (a path relative to DIR, e.g. examples/dmabuf-demo).
has_target() {
	ninja -C "$1" -t targets all 2>/dev/null | grep -q "^$2: "
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
LOGDIR=

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

# meson_test LOGNAME MESON-TEST-ARGS...: run meson test, tee its output and
# add its summary counts to the totals. Used as a stage body.
meson_test() {
	local log=$LOGDIR/$1.log rc ok xfail fail xpass timeout skip
	shift
	msg "meson test $*"
	if meson test --num-processes "$JOBS" "$@" 2>&1 </dev/null | tee "$log"; then
		rc=0
	else
		rc=$?
	fi
	# The summary block is at the end; take the last value of each line.
	read -r ok xfail fail xpass timeout skip < <(awk '
		/^Ok:/              { ok = $2 }
		/^Expected Fail:/   { xf = $3 }
		/^Fail:/            { f = $2 }
		/^Unexpected Pass:/ { xp = $3 }
		/^Timeout:/         { to = $2 }
		/^Skipped:/         { sk = $2 }
		END { printf "%d %d %d %d %d %d\n", ok, xf, f, xp, to, sk }' "$log")
	TOTAL_PASSED=$((TOTAL_PASSED + ok + xfail))
	TOTAL_FAILED=$((TOTAL_FAILED + fail + xpass + timeout))
	STAGE_NOTE="$((ok + xfail)) passed, $((fail + xpass + timeout)) failed"
	[[ $skip -gt 0 ]] && STAGE_NOTE+=", $skip skipped"
	if [[ $rc -eq 0 && $((fail + xpass + timeout)) -gt 0 ]]; then
		rc=1 # should not happen, but never report failures as success
	fi
	if [[ $rc -ne 0 ]] && ! grep -q '^Ok:' "$log"; then
		STAGE_NOTE+=" (meson test produced no summary)"
	fi
	return "$rc"
}

print_summary() {
	local rc=$? i
	[[ -n $LOGDIR ]] && rm -rf "$LOGDIR"
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
	LOGDIR=$(mktemp -d)
	trap print_summary EXIT

	stage "dependencies" deps || exit 1

	# (1) normal build, all suites.
	stage "configure build/" setup_dir build -Dtests=true -Db_sanitize=none || exit 1
	stage "compile build/" ninja -C build -j "$JOBS" || exit 1
	stage "meson test (build/)" meson_test plain -C build --print-errorlogs || exit 1

	# (2) the same suites under valgrind memcheck. The 'build' suite is the
	# python symbol check: valgrinding the interpreter proves nothing.
	stage "valgrind memcheck (build/)" meson_test valgrind -C build --setup valgrind \
		--no-suite build --print-errorlogs || exit 1

	# (3) AddressSanitizer + UndefinedBehaviorSanitizer build.
	stage "configure build-asan/" setup_dir build-asan -Dtests=true "${ASAN_FLAGS[@]}" || exit 1
	stage "compile build-asan/" ninja -C build-asan -j "$JOBS" || exit 1
	asan_env
	stage "meson test (build-asan/, ASan+UBSan)" meson_test asan -C build-asan \
		--print-errorlogs || exit 1
}

cmd_demo() {
	local demo=examples/dmabuf-demo
	deps || exit 1
	setup_dir build -Dtests=true -Db_sanitize=none || die "meson setup build failed"
	if ! has_target build "$demo"; then
		die "the demo is not written yet: examples/meson.build does not build $demo"
	fi
	ninja -C build -j "$JOBS" "$demo" || die "building build/$demo failed"
	msg "running build/$demo $*"
	exec "build/$demo" "$@"
}

cmd_bench() {
	local exe found=0 rc=0
	[[ $# -eq 0 ]] || { usage >&2; exit 2; }
	deps || exit 1
	setup_dir build -Dtests=true -Db_sanitize=none || die "meson setup build failed"
	ninja -C build -j "$JOBS" || die "build failed"
	if meson introspect --benchmarks build | grep -q '"name"'; then
		# Meson 1.0 has no `meson benchmark`; `meson test --benchmark` runs
		# them one at a time, --verbose shows their output.
		meson test -C build --benchmark --verbose </dev/null || die "benchmarks failed"
		return 0
	fi
	# No benchmark() registered: run any bench executables directly.
	for exe in build/bench/*; do
		[[ -f $exe && -x $exe ]] || continue
		found=1
		msg "running $exe"
		"$exe" </dev/null || { rc=$?; msg "$exe failed (exit $rc)"; }
	done
	[[ $found -eq 1 ]] || die "no benchmarks defined yet (bench/meson.build is empty)"
	[[ $rc -eq 0 ]] || die "a benchmark failed"
}

cmd_fuzz() {
	local secs=${1:-60} name short exe seeds dir failed=()
	[[ $# -le 1 && $secs =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
	deps --fuzz || exit 1
	if [[ -f build-fuzz/meson-info/intro-compilers.json ]] &&
		! grep -q '"id": "clang"' build-fuzz/meson-info/intro-compilers.json; then
		msg "build-fuzz/ was configured with another compiler; wiping it"
		rm -rf build-fuzz
	fi
	CC=clang setup_dir build-fuzz -Dfuzzing=true "${ASAN_FLAGS[@]}" ||
		die "meson setup build-fuzz failed"

	local harnesses=()
	mapfile -t harnesses < <(ninja -C build-fuzz -t targets all 2>/dev/null |
		sed -n 's|^\(fuzz/fuzz-[^/:]*\): [a-z_]*LINKER$|\1|p' | sort)
	[[ ${#harnesses[@]} -gt 0 ]] ||
		die "no fuzz harnesses defined yet (fuzz/meson.build should build fuzz-wire)"
	ninja -C build-fuzz -j "$JOBS" "${harnesses[@]}" || die "building the fuzz harnesses failed"

	asan_env
	for exe in "${harnesses[@]}"; do
		name=${exe#fuzz/}
		short=${name#fuzz-}
		dir=build-fuzz/corpus/$name
		mkdir -p "$dir" build-fuzz/artifacts
		seeds=()
		for cand in "fuzz/corpus/$short" "fuzz/corpus/$name" "fuzz/corpus-$short" "fuzz/$short-corpus"; do
			[[ -d $cand ]] && seeds+=("$cand")
		done
		# With one harness, fuzz/corpus/ itself holds its seeds.
		if [[ ${#seeds[@]} -eq 0 && ${#harnesses[@]} -eq 1 && -d fuzz/corpus ]]; then
			seeds+=(fuzz/corpus)
		fi
		msg "fuzzing $name for ${secs}s (corpus $dir${seeds:+, seeds ${seeds[*]}})"
		dict=()
		[[ -f fuzz/$short.dict ]] && dict=("-dict=fuzz/$short.dict")
		if ! "build-fuzz/$exe" -max_total_time="$secs" -print_final_stats=1 \
			${dict[@]+"${dict[@]}"} \
			-artifact_prefix="build-fuzz/artifacts/$name-" \
			"$dir" ${seeds[@]+"${seeds[@]}"} </dev/null; then
			failed+=("$name")
			msg "$name found a crash; reproducer in build-fuzz/artifacts/"
		fi
	done
	[[ ${#failed[@]} -eq 0 ]] || die "fuzzing failed: ${failed[*]}"
	msg "fuzzing finished, no crashes"
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
		--emulated "$dir/emulated.txt" ${kargs[@]+"${kargs[@]}"} \
		${k2args[@]+"${k2args[@]}"} --vm-note "$note" \
		--notes tests/conformance/notes.md --md docs/conformance.md
}

# ------------------------------------------------------------------- main

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case "$cmd" in
demo)  cmd_demo "$@" ;;
test)  cmd_test "$@" ;;
bench) cmd_bench "$@" ;;
fuzz)  cmd_fuzz "$@" ;;
conformance) cmd_conformance "$@" ;;
help|-h|--help) usage ;;
*)
	[[ -n $cmd ]] && msg "unknown command '$cmd'"
	usage >&2
	exit 2
	;;
esac
