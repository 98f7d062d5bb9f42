#!/bin/sh
# SPDX-License-Identifier: MIT
# The installed library as a user sees it: `meson install` into a temporary
# DESTDIR, then a program built only with pkg-config's flags, including the
# headers both as <dmabuf.h> and as <libdmabuf/dmabuf.h>, linked and run.
# Usage: check-install.sh BUILD_DIR
set -eu
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
DESTDIR="$tmp/root" meson install -C "$build" --no-rebuild --quiet >/dev/null
pc=$(find "$tmp/root" -name libdmabuf.pc | head -n 1)
[ -n "$pc" ] || { echo "check-install: no libdmabuf.pc installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$tmp/root"
cat >"$tmp/user.c" <<'C'
#include <dmabuf.h>
#include <libdmabuf/dmabuf-fence.h>
#include <libdmabuf/dmabuf-version.h>
int main(void)
{
	struct dmabuf_ctx *ctx = 0;

	if (dmabuf_version() != DMABUF_VERSION || dmabuf_ctx_new(0, &ctx) != 0)
		return 1;
	return dmabuf_ctx_destroy(ctx);
}
C
# <libdmabuf/...> resolves from the include directory itself, which is on
# the compiler's default path for a normal prefix; here it is under DESTDIR.
hdrs=$(dirname "$(find "$tmp/root" -name dmabuf.h | head -n 1)")
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$tmp/user" "$tmp/user.c" \
	$(pkg-config --cflags --libs libdmabuf) -I"$(dirname "$hdrs")"
libdir=$(dirname "$(find "$tmp/root" -name 'libdmabuf.so.0' | head -n 1)")
LD_LIBRARY_PATH="$libdir" "$tmp/user"
echo "check-install: ok ($(pkg-config --cflags libdmabuf))"
