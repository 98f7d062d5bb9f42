#!/bin/sh
# SPDX-License-Identifier: MIT
# The installed library as a user sees it: `meson install` into a temporary
# DESTDIR, then a program built only with pkg-config's flags, including the
# headers both as <dmabuf.h> and as <libdmabuf/dmabuf.h>, linked and run;
# then the same for the test kit (libdmabuf-test.pc, <dmabuf-test.h>).
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

# The test kit, from its own pkg-config file alone (it Requires libdmabuf).
pkg-config --exists libdmabuf-test ||
	{ echo "check-install: no libdmabuf-test.pc installed"; exit 1; }
cat >"$tmp/kit.c" <<'C'
#include <fcntl.h>
#include <dmabuf-test.h>
#include <libdmabuf/dmabuf-test.h>
int main(void)
{
	struct dmabuf_test_exporter *tx = 0;
	struct dmabuf_test_fds *fds = 0;
	struct dmabuf_device *dev = 0;
	struct dmabuf_ctx *ctx = 0;
	struct dmabuf *buf = 0;

	if (dmabuf_test_fds_begin(&fds) || dmabuf_ctx_new(0, &ctx) ||
	    dmabuf_test_exporter_new("installed", 0, &tx) ||
	    dmabuf_test_exporter_export(tx, ctx, 4096, O_RDWR, DMABUF_ALLOC_SYSTEM, &buf) ||
	    dmabuf_test_device_new(ctx, DMABUF_TEST_DEVICE_GPU, 0, &dev) ||
	    dmabuf_device_destroy(dev) || dmabuf_put(buf) ||
	    dmabuf_test_ctx_destroy(ctx, 0, 0) ||
	    dmabuf_test_exporter_get_count(tx, DMABUF_TEST_OP_RELEASE) != 1 ||
	    dmabuf_test_exporter_destroy(tx))
		return 1;
	return dmabuf_test_fds_end(fds, 0, 0, 0, 0) != 0;
}
C
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror -o "$tmp/kit" "$tmp/kit.c" \
	$(pkg-config --cflags --libs libdmabuf-test) -I"$(dirname "$hdrs")"
[ -e "$libdir/libdmabuf-test.so.0" ] ||
	{ echo "check-install: no libdmabuf-test.so.0 installed"; exit 1; }
LD_LIBRARY_PATH="$libdir" "$tmp/kit"
echo "check-install: ok ($(pkg-config --cflags libdmabuf); test kit: $(pkg-config --libs libdmabuf-test))"
