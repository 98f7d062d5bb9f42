#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Run the conformance programs (tests/conformance/) on a real Linux kernel:
# a Debian kernel package, booted in QEMU (TCG, no KVM needed) with the
# programs linked statically as /init of an initramfs.
#
#   tools/conformance-vm.sh [-k PACKAGE] [-o FILE]
#
#   -k PACKAGE  Debian kernel image package (default: the newest
#               linux-image-6.12.*-amd64-unsigned apt knows), e.g.
#               linux-image-6.1.0-57-amd64-unsigned to compare versions
#   -o FILE     results file (default build/conformance/kernel-<release>.txt)
#
# What it does:
#   1. installs qemu-system-x86, gcc, libc6-dev, cpio with apt-get (through
#      tools/install-deps.sh) if missing;
#   2. downloads the kernel package with `apt-get download` into a cache
#      directory and extracts it with dpkg-deb -x (the host's kernel is not
#      touched); the cache is $DMABUF_CONFORMANCE_CACHE, default
#      ~/.cache/libdmabuf-conformance;
#   3. reads the image's config and prints the options the checks need;
#      options built as modules (=m) get their .ko files copied into the
#      initramfs, and /init loads them with finit_module;
#   4. builds tests/conformance/*.c with gcc -static as /init, packs the
#      initramfs with cpio, boots it (2 vCPUs, 512 MiB), results come on
#      the second serial port, kernel messages on the first (ttyS0,
#      kept next to the results as *.console);
#   5. /init mounts devtmpfs, proc, sysfs, debugfs, runs every check and
#      powers the machine off.
#
# Exit status: 0 results written, 1 failure, 2 usage, 3 QEMU or the kernel
# package cannot be installed here (the caller may skip the VM half).
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
msg() { printf 'conformance-vm: %s\n' "$*" >&2; }

pkg=
out=
while getopts "k:o:h" opt; do
	case $opt in
	k) pkg=$OPTARG ;;
	o) out=$OPTARG ;;
	h) sed -n '3,33s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) exit 2 ;;
	esac
done

if ! bash "$ROOT/tools/install-deps.sh" qemu-system-x86 gcc libc6-dev cpio; then
	msg "cannot install QEMU / a static C toolchain here"
	exit 3
fi

if [[ -z $pkg ]]; then
	pkg=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9.]+\+deb[0-9]+-amd64-unsigned$' |
		awk '{print $1}' | sort -V | tail -n 1)
	if [[ -z $pkg ]]; then
		msg "apt knows no linux-image-6.12.*-amd64-unsigned (bookworm-backports or security missing from sources?)"
		exit 3
	fi
fi

cache=${DMABUF_CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/libdmabuf-conformance}/$pkg
mkdir -p "$cache"
if ! compgen -G "$cache/*.deb" >/dev/null; then
	msg "downloading $pkg"
	# apt's sandbox user may not write into $cache; download in a directory
	# it can, then move.
	dl=$(mktemp -d)
	chmod 0777 "$dl"
	if ! (cd "$dl" && apt-get download -q "$pkg" </dev/null >&2); then
		rm -rf "$dl"
		msg "apt-get download $pkg failed"
		exit 3
	fi
	mv "$dl"/*.deb "$cache"/
	rm -rf "$dl"
fi
if [[ ! -d $cache/x/boot ]]; then
	rm -rf "$cache/x"
	dpkg-deb -x "$cache"/*.deb "$cache/x"
fi
vmlinuz=$(ls "$cache"/x/boot/vmlinuz-* | head -n 1)
config=$(ls "$cache"/x/boot/config-* | head -n 1)
release=${vmlinuz##*/vmlinuz-}
[[ -n $out ]] || out=$ROOT/build/conformance/kernel-$release.txt
mkdir -p "$(dirname "$out")"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/modules"

# Config: what the image has decides which checks it can run.
options=(CONFIG_DMABUF_HEAPS CONFIG_DMABUF_HEAPS_SYSTEM CONFIG_DMABUF_HEAPS_CMA
	CONFIG_UDMABUF CONFIG_SW_SYNC CONFIG_SYNC_FILE CONFIG_DEBUG_FS CONFIG_CMA)
declare -A modname=([CONFIG_UDMABUF]=udmabuf [CONFIG_DMABUF_HEAPS_SYSTEM]=system_heap
	[CONFIG_DMABUF_HEAPS_CMA]=cma_heap)
summary=()
: >"$work/root/modules/order"
for o in "${options[@]}"; do
	v=$(sed -n "s/^$o=\(.*\)/\1/p" "$config")
	[[ -n $v ]] || v=n
	summary+=("$o=$v")
	if [[ $v == m && -n ${modname[$o]:-} ]]; then
		ko=$(find "$cache/x/lib/modules" -name "${modname[$o]}.ko*" | head -n 1)
		if [[ -n $ko ]]; then
			cp "$ko" "$work/root/modules/"
			echo "${ko##*/}" >>"$work/root/modules/order"
		fi
	fi
done
msg "kernel $release ($pkg): ${summary[*]}"

# /init: the conformance programs, static.
gcc -std=gnu11 -D_GNU_SOURCE -O2 -static -o "$work/root/init" \
	"$ROOT"/tests/conformance/conf-*.c 2> >(grep -v 'statically linked' >&2)
(cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

msg "booting (TCG, 2 vCPUs)"
start=$(date +%s.%N)
timeout 600 qemu-system-x86_64 -M pc -accel tcg -smp 2 -m 512 \
	-nodefaults -no-user-config -display none -monitor none -no-reboot \
	-serial "file:$work/console.log" -serial "file:$work/results.raw" \
	-kernel "$vmlinuz" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 loglevel=4 panic=-1 rdinit=/init" </dev/null || {
	msg "qemu failed or timed out; console:"
	tail -n 30 "$work/console.log" >&2 || true
	exit 1
}
secs=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")

tr -d '\r' <"$work/results.raw" >"$work/results.txt"
cp "$work/console.log" "${out%.txt}.console"
if ! grep -q '^CONF-END$' "$work/results.txt"; then
	msg "the programs did not finish; console:"
	tail -n 30 "$work/console.log" >&2
	exit 1
fi
{
	echo "# kernel package: $pkg"
	echo "# kernel release: $release"
	echo "# config: ${summary[*]}"
	sed -n '/^CONF-BEGIN/,/^CONF-END$/p' "$work/results.txt" | grep -v '^CONF-'
} >"$out"
n=$(grep -vc '^#' "$out")
msg "$n results in $out; VM run took ${secs}s"
