#!/usr/bin/env bash
# Runs every test suite of the repository. This is the command CI runs (.ci/run).
#   scripts/test.sh            # all suites
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzz smoke run
#   scripts/test.sh --soak [SECONDS] # only the fault soak test (root; 600 s by default)
# It installs what it needs by itself (a nightly toolchain and a pinned cargo-fuzz for
# the fuzz smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==== %s\n' "$*"; }

if [ "${1:-}" = "--soak" ]; then
  # Mixed traffic through a router over a lossy link that is cut every 10 s
  # (astranet-node/tests/faults.rs, docs/FAULTS.md); prints bytes, errors, peak memory.
  seconds=${2:-600}
  step "Soak: ${seconds}s of traffic and link cuts across network namespaces"
  ASTRANET_SOAK_SECONDS=$seconds cargo test -p astranet-node --locked --test faults -- --exact soak --nocapture
  exit
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

step "Rust: formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust: unit, integration and doc tests (workspace), with the interop suites against the Go original"
command -v go >/dev/null || { echo "the Go toolchain (go) is needed: the interop suites build the original Go package" >&2; exit 1; }
cargo test --workspace --locked 2>&1 | tee -a "$log"

step "C API: header freshness, ctest, ctest under AddressSanitizer, pkg-config install"
for tool in cmake pkg-config; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool"; }
done
astranet-ffi/test.sh 2>&1 | tee -a "$log"

step "Python: the astranet package (pip install ./bindings/python, pytest, mypy --strict)"
bindings/python/test.sh 2>&1 | tee -a "$log"

step "Go: the package over libastranet (go test -race, examples, one mesh with the original)"
bindings/go/test.sh 2>&1 | tee -a "$log"

fuzz_seconds=${FUZZ_SECONDS:-15}
if [ "$fuzz_seconds" -gt 0 ]; then
  step "Fuzz smoke run: every target for ${fuzz_seconds}s"
  scripts/fuzz.sh "$fuzz_seconds"
fi

step "No Go peer left running"
# A Go process of the interop suites that outlived its test is a failure.
if leftover=$(pgrep -a -x gopeer); then
  echo "FAIL: Go peers still running after the suites:" >&2
  echo "$leftover" >&2
  pkill -x gopeer || true
  echo "test result: FAILED. 0 passed; 1 failed" >> "$log"
  leftover_failed=1
else
  echo "none"
fi

# One closing line over every suite's "test result" lines.
# cargo and ctest write "test result: ... N passed; N failed", pytest "N passed in ...".
awk '/^test result:/ || /^[0-9]+ (passed|failed)/ {
       for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\nall suites: %d passed, %d failed\n", p, f }' "$log"
[ "${leftover_failed:-0}" = 0 ]
