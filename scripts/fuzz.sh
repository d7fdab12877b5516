#!/usr/bin/env bash
# Runs the cargo-fuzz targets: frame_decoder, stream_state, link.
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 600 link        # one target, 10 minutes
# Installs what it needs: the nightly toolchain (rustup) and a pinned cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder stream_state link)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version 0.13.2

for t in "${targets[@]}"; do
  echo "== fuzzing $t for ${seconds}s"
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- -max_total_time="$seconds"
done
