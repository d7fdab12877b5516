#!/usr/bin/env bash
# Builds and installs libastranet (shared + static), include/astranet.h and astranet.pc.
#   astranet-ffi/install.sh [--prefix /usr/local] [--libdir DIR] [--debug] [--destdir DIR]
# Also reachable as `make -C astranet-ffi install PREFIX=...`.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
libdir=
profile=release
destdir=
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --libdir) libdir=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --debug) profile=debug; shift ;;
    --release) profile=release; shift ;;
    -h|--help) sed -n 2,4p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
libdir=${libdir:-$prefix/lib}
includedir=$prefix/include

if [ "$profile" = release ]; then
  cargo build -p astranet-ffi --locked --release
else
  cargo build -p astranet-ffi --locked
fi
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
out=$target/$profile
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}

# The native libraries a program linking libastranet.a needs, as printed by
# `cargo rustc -p astranet-ffi --crate-type staticlib -- --print native-static-libs`
# on Linux/glibc.
libs_private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

install -d "$destdir$libdir/pkgconfig" "$destdir$includedir"
install -m 644 include/astranet.h "$destdir$includedir/astranet.h"
install -m 755 "$out/libastranet.so" "$destdir$libdir/libastranet.so.$version"
ln -sf "libastranet.so.$version" "$destdir$libdir/libastranet.so.$major"
ln -sf "libastranet.so.$major" "$destdir$libdir/libastranet.so"
install -m 644 "$out/libastranet.a" "$destdir$libdir/libastranet.a"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$libs_private|" \
    astranet-ffi/astranet.pc.in > "$destdir$libdir/pkgconfig/astranet.pc"
echo "installed libastranet $version ($profile) under $destdir$prefix"
