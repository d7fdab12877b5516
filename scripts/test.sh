#!/usr/bin/env bash
# Runs every test suite of the repository. This is the command CI runs (.ci/run).
#   scripts/test.sh            # all suites
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzz smoke run
# It installs what it needs by itself (a nightly toolchain and a pinned cargo-fuzz for
# the fuzz smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==== %s\n' "$*"; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

step "Rust: formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust: unit, integration and doc tests (workspace)"
cargo test --workspace --locked 2>&1 | tee -a "$log"

step "C API: header freshness, ctest, ctest under AddressSanitizer, pkg-config install"
for tool in cmake pkg-config; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool"; }
done
astranet-ffi/test.sh 2>&1 | tee -a "$log"

step "Python: the astranet package (pip install ./bindings/python, pytest, mypy --strict)"
bindings/python/test.sh 2>&1 | tee -a "$log"

fuzz_seconds=${FUZZ_SECONDS:-15}
if [ "$fuzz_seconds" -gt 0 ]; then
  step "Fuzz smoke run: every target for ${fuzz_seconds}s"
  scripts/fuzz.sh "$fuzz_seconds"
fi

# One closing line over every suite's "test result" lines.
# cargo and ctest write "test result: ... N passed; N failed", pytest "N passed in ...".
awk '/^test result:/ || /^[0-9]+ (passed|failed)/ {
       for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\nall suites: %d passed, %d failed\n", p, f }' "$log"
