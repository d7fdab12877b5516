#!/usr/bin/env bash
# Builds and installs libastranet (shared + static), include/astranet.h, astranet.pc and
# the CMake package, through the top-level CMake build (which runs cargo):
#   astranet-ffi/install.sh [--prefix /usr/local] [--libdir DIR] [--debug] [--destdir DIR]
# Also reachable as `make -C astranet-ffi install PREFIX=...`; the same as
#   cmake -S . -B build && cmake --build build && cmake --install build --prefix P
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
libdir=lib
build_type=Release
destdir=
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --libdir) libdir=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --debug) build_type=Debug; shift ;;
    --release) build_type=Release; shift ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

build=target/cmake-install-$build_type
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="$build_type" -DASTRANET_BUILD_TESTS=OFF \
  -DCMAKE_INSTALL_LIBDIR="$libdir" > /dev/null
cmake --build "$build"
DESTDIR=$destdir cmake --install "$build" --prefix "$prefix"
echo "installed libastranet ($build_type) under $destdir$prefix"
