#!/usr/bin/env bash
# The Go benchmark: this package against the original Go astranet, hashicorp/yamux and
# xtaci/smux, on loopback, in one run (see bench/main.go for what each row measures).
# Builds libastranet in release mode (top-level CMake build) into target/go-prefix-release.
#   bindings/go/bench.sh                         # everything (a few minutes on 2 cores)
#   bindings/go/bench.sh -bulk-mib 64 -max-open 10000   # a quick run
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
prefix=$root/target/go-prefix-release
cmake -S . -B target/go-lib-release -DCMAKE_BUILD_TYPE=Release -DASTRANET_BUILD_TESTS=OFF > /dev/null
cmake --build target/go-lib-release > /dev/null
cmake --install target/go-lib-release --prefix "$prefix" > /dev/null
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export CGO_LDFLAGS="-Wl,-rpath,$prefix/lib"
cd "$here/bench"
exec go run . "$@"
