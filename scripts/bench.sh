#!/usr/bin/env bash
# The benchmark: astranet against raw TCP (the physical limit), the yamux crate and the
# original Go astranet package (needs the Go toolchain; --transports leaves it out), on
# loopback, in one run. Prints a table, then the same figures as JSON with ratios.
#   scripts/bench.sh                      # everything (a few minutes on 2 cores)
#   scripts/bench.sh --quick              # a smoke run, under a minute
#   scripts/bench.sh --streams-10m        # the opens test up to 10,000,000 open streams
#   scripts/bench.sh --json bench.json    # also write the JSON to a file
# `scripts/bench.sh --help` lists every option. Run it on an otherwise idle machine:
# figures taken while other processes use the CPUs are flagged.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p astranet-bench
exec target/release/astranet-bench "$@"
