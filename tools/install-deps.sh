#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Make sure the Debian 12 packages that libdmabuf's build needs are installed.
#
#   tools/install-deps.sh [--fuzz] [--check] [PACKAGE...]
#
# With no PACKAGE, checks the base set (meson ninja-build pkg-config gcc
# libcmocka-dev libbsd-dev valgrind python3 graphviz (test-tool renders
# dmabuf-ls --dot with it) doxygen scdoc (the API reference and the man
# pages, built by ./run.sh test)); --fuzz adds clang and
# libclang-rt-14-dev (libFuzzer runtime).  Each package is tested with
# `dpkg-query -W -f='${Status}'`.  Missing packages are installed with
# apt-get (update first, non-interactive, -y, quiet) when running as root or
# when `sudo -n` works without a password; otherwise the exact apt-get command
# line is printed and the script exits 1.  --check only reports, never
# installs.  Never reads standard input, so it is safe in CI.
#
# Environment (for testing the missing-package path on a machine that already
# has everything):
#   DMABUF_FORCE_MISSING="pkg1 pkg2"  treat these packages as missing even if
#                                     dpkg says they are installed (commas or
#                                     spaces separate names).
#   DMABUF_NO_INSTALL=1               behave as if neither root nor sudo were
#                                     available: print the command and fail.
#
# Exit status: 0 all present (or installed now), 1 missing and could not
# install, 2 usage error.
set -euo pipefail

msg() { printf 'run.sh: %s\n' "$*" >&2; }

base_pkgs=(meson ninja-build pkg-config gcc libcmocka-dev libbsd-dev valgrind python3 graphviz abigail-tools doxygen scdoc)
fuzz_pkgs=(clang libclang-rt-14-dev)

check_only=0
want_fuzz=0
pkgs=()
for arg in "$@"; do
	case "$arg" in
	--fuzz) want_fuzz=1 ;;
	--check) check_only=1 ;;
	-h|--help) sed -n '3,28s/^# \{0,1\}//p' "$0"; exit 0 ;;
	-*) msg "install-deps: unknown option '$arg'"; exit 2 ;;
	*) pkgs+=("$arg") ;;
	esac
done
if [[ ${#pkgs[@]} -eq 0 ]]; then
	pkgs=("${base_pkgs[@]}")
fi
if [[ $want_fuzz -eq 1 ]]; then
	pkgs+=("${fuzz_pkgs[@]}")
fi

# pkg_installed PKG: true iff dpkg reports PKG as installed and not forced
# missing through DMABUF_FORCE_MISSING.
pkg_installed() {
	local pkg=$1 status forced list
	local list=${DMABUF_FORCE_MISSING:-}
	for forced in ${list//,/ }; do
		[[ $forced == "$pkg" ]] && return 1
	done
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || return 1
	[[ $status == "install ok installed" ]]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
	msg "dpkg-query not found: not a Debian system, cannot check packages."
	msg "make sure these (Debian names) are installed: ${pkgs[*]}"
	exit 0
fi

missing=()
for pkg in "${pkgs[@]}"; do
	pkg_installed "$pkg" || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
	exit 0
fi

msg "missing Debian packages: ${missing[*]}"

apt_install=(apt-get install -y -q "${missing[@]}")
sudo=()
if [[ $check_only -eq 1 || ${DMABUF_NO_INSTALL:-0} == 1 ]]; then
	can_install=0
elif [[ $(id -u) -eq 0 ]]; then
	can_install=1
elif command -v sudo >/dev/null 2>&1 && sudo -n true </dev/null >/dev/null 2>&1; then
	can_install=1
	sudo=(sudo -n)
else
	can_install=0
fi

if [[ $can_install -eq 0 ]]; then
	if [[ $check_only -eq 1 || ${DMABUF_NO_INSTALL:-0} == 1 ]]; then
		msg "not installing (check only); install them with:"
	else
		msg "not root and passwordless sudo (sudo -n) is not available; install them with:"
	fi
	printf '    sudo apt-get update && sudo apt-get install -y %s\n' "${missing[*]}" >&2
	exit 1
fi

msg "installing with apt-get: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null; then
	msg "apt-get update failed"
	exit 1
fi
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${apt_install[@]}" </dev/null; then
	msg "apt-get install failed: ${apt_install[*]}"
	exit 1
fi

# Re-check: apt-get can succeed without installing what we asked for.
still=()
for pkg in "${missing[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || status=
	[[ $status == "install ok installed" ]] || still+=("$pkg")
done
if [[ ${#still[@]} -ne 0 ]]; then
	msg "still not installed after apt-get: ${still[*]}"
	exit 1
fi
msg "installed: ${missing[*]}"
