#!/usr/bin/env bash
# The C suite of libastranet, from scratch:
#   1. cbindgen (pinned) regenerates include/astranet.h into a temp file: fails if the
#      committed header is stale (UPDATE_HEADER=1 rewrites it instead);
#   2. the top-level CMake build (which runs cargo) in a fresh folder, and ctest on its
#      suite (every test has a timeout);
#   3. the same under AddressSanitizer (leak checking on);
#   4. `cmake --install` into a temporary prefix; the suite built against it on its
#      own through find_package(astranet), linked shared and then static; the examples
#      built through pkg-config (shared and static) and through their CMakeLists.txt.
# Usage: astranet-ffi/test.sh [--header-only] [--no-asan]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CBINDGEN_VERSION=0.29.4
header_only=0
asan=1
for a in "$@"; do
  case $a in
    --header-only) header_only=1 ;;
    --no-asan) asan=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

step() { printf '\n==== %s\n' "$*"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "C: include/astranet.h is what cbindgen $CBINDGEN_VERSION generates"
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
  cargo install --locked cbindgen --version "$CBINDGEN_VERSION"
fi
cbindgen --quiet --config astranet-ffi/cbindgen.toml --crate astranet-ffi --output "$work/astranet.h"
if ! cmp -s "$work/astranet.h" include/astranet.h; then
  if [ "${UPDATE_HEADER:-0}" = 1 ]; then
    cp "$work/astranet.h" include/astranet.h
    echo "include/astranet.h updated"
  else
    diff -u include/astranet.h "$work/astranet.h" | head -50 || true
    echo "FAIL: include/astranet.h is stale: run UPDATE_HEADER=1 astranet-ffi/test.sh --header-only" >&2
    exit 1
  fi
else
  echo "header is fresh"
fi
[ "$header_only" = 1 ] && exit 0

target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
passed=0

# Configures, builds and runs one ctest suite in a fresh folder: name, source, cmake args...
run_suite() {
  local name=$1 source=$2
  shift 2
  local build=$target/ctest-$name
  rm -rf "$build"
  cmake -S "$source" -B "$build" -DCMAKE_BUILD_TYPE=Debug "$@" > "$work/cmake-$name.log" 2>&1 \
    || { cat "$work/cmake-$name.log"; exit 1; }
  cmake --build "$build" -j 2 > "$work/build-$name.log" 2>&1 || { cat "$work/build-$name.log"; exit 1; }
  ctest --test-dir "$build" --output-on-failure --timeout 300 | tee "$work/ctest-$name.log"
  local total
  total=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$work/ctest-$name.log")
  passed=$((passed + total))
}

step "C: the top-level CMake build (cargo inside) and its ctest suite"
run_suite plain .

if [ "$asan" = 1 ]; then
  step "C: ctest under AddressSanitizer (leaks included)"
  run_suite asan . -DASTRANET_SANITIZE=ON
fi

step "C: cmake --install, then the suite against the installed package (find_package)"
prefix=$work/prefix
cmake --install "$target/ctest-plain" --prefix "$prefix" > "$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
run_suite installed-shared tests -DCMAKE_PREFIX_PATH="$prefix"
run_suite installed-static tests -DCMAKE_PREFIX_PATH="$prefix" -DASTRANET_TEST_STATIC=ON
if ldd "$target/ctest-installed-static/echo" | grep -q libastranet; then
  echo "FAIL: the suite linked with astranet::static loads libastranet.so" >&2
  exit 1
fi

step "C: the examples through pkg-config and through their CMakeLists.txt"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --modversion astranet)" = "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" ]
readelf -d "$prefix/lib/libastranet.so" | grep -q 'Library soname: \[libastranet.so.0\]'
# As examples/c/README.md says: shared with an rpath, static with Libs.private.
# shellcheck disable=SC2046
cc -Wall -Wextra -Werror -o "$work/echo_epoll" examples/c/echo_epoll.c $(pkg-config --cflags --libs astranet) \
  -Wl,-rpath,"$prefix/lib"
# shellcheck disable=SC2046
cc -Wall -Wextra -Werror -o "$work/echo_fd_static" examples/c/echo_fd.c $(pkg-config --cflags astranet) \
  "$prefix/lib/libastranet.a" $(pkg-config --static --libs-only-l astranet | sed 's/-lastranet//')
if ldd "$work/echo_fd_static" | grep -q libastranet; then echo "FAIL: the static program loads libastranet.so" >&2; exit 1; fi
timeout 60 "$work/echo_epoll" both 127.0.0.1:0 200
timeout 60 "$work/echo_fd_static"
cmake -S examples/c -B "$work/examples" -DCMAKE_PREFIX_PATH="$prefix" > "$work/examples.log" 2>&1 \
  && cmake --build "$work/examples" >> "$work/examples.log" 2>&1 || { cat "$work/examples.log"; exit 1; }
timeout 60 "$work/examples/echo_epoll" both 127.0.0.1:0 200
timeout 60 "$work/examples/echo_fd"
echo "examples: pkg-config and CMake, shared and static, built and ran"

echo
echo "C suite: all passed"
# The line scripts/test.sh's closing tally reads (same form as cargo's).
echo "test result: ok. $passed passed; 0 failed (ctest: top-level build, AddressSanitizer, installed shared and static)"
