#!/usr/bin/env bash
# Builds everything and runs the headline demo: two nodes, one TCP link, a million
# concurrent streams each echoing a message.   scripts/demo.sh [STREAMS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --release --locked
cargo run --release --locked -p astranet --example million -- "${1:-1000000}"
