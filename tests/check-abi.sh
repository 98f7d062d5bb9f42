#!/bin/sh
# SPDX-License-Identifier: MIT
# The shared library's ABI against the checked-in baseline of this release
# (tests/abi/libdmabuf.so.0.abi, written by abidw). Any difference, an added
# symbol included, fails: a change that is meant must update the baseline
# (`./run.sh abi-baseline`) in the same commit, where a reviewer sees it.
# Usage: check-abi.sh ABIDIFF BASELINE LIBRARY INCLUDE_DIR BUILD_INCLUDE_DIR
set -eu
abidiff=$1 baseline=$2 lib=$3 inc=$4 binc=$5
if "$abidiff" --headers-dir2 "$inc" --headers-dir2 "$binc" \
	"$baseline" "$lib"; then
	echo "abi: no change against $baseline"
	exit 0
fi
echo "abi: the ABI differs from $baseline (see above)"
exit 1
