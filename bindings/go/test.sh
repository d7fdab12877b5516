#!/usr/bin/env bash
# The Go package's suite, from scratch:
#   1. libastranet built by the top-level CMake build (cargo inside) and installed into
#      target/go-prefix, which PKG_CONFIG_PATH and an rpath point cgo at;
#   2. gofmt and go vet; go test -race on the package; the examples run;
#   3. the interop test against the original Go package (../shared/peers/astranet-go),
#      without -race: the original has data races of its own.
# Usage: bindings/go/test.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

step() { printf '\n==== %s\n' "$*"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "Go: libastranet installed into target/go-prefix"
prefix=$root/target/go-prefix
cmake -S . -B target/go-lib -DCMAKE_BUILD_TYPE=Debug -DASTRANET_BUILD_TESTS=OFF > "$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log"; exit 1; }
cmake --build target/go-lib > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
cmake --install target/go-lib --prefix "$prefix" > /dev/null
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export CGO_LDFLAGS="-Wl,-rpath,$prefix/lib"

cd "$here"
step "Go: gofmt, go vet"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "FAIL: not gofmt-ed:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
(cd interop && go vet ./...)

step "Go: go test -race (each test has a timeout)"
go test -race -count=1 -timeout 300s -v ./... 2>&1 | tee "$work/test.log"

step "Go: the examples"
timeout 120 go run ./examples/echo -n 2
timeout 120 go run ./examples/http

step "Go: one mesh with the original Go package"
(cd interop && go test -count=1 -timeout 300s -v ./...) 2>&1 | tee -a "$work/test.log"

passed=$(grep -c '^--- PASS' "$work/test.log" || true)
failed=$(grep -c '^--- FAIL' "$work/test.log" || true)
echo
# The line scripts/test.sh's closing tally reads (same form as cargo's).
echo "test result: ok. $passed passed; $failed failed (go test)"
[ "$failed" = 0 ]
