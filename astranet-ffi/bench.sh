#!/usr/bin/env bash
# Benchmark of the C API against the Rust API, in one run on this machine:
# bulk throughput on 1 stream and on 1,000 streams, through tier 1 (node fd +
# astranet_poll) and tier 2 (socketpair fds), each as a ratio of the Rust API's figure
# for the same transfer (target: >= 0.9x). Release builds; median of --repeat runs.
#   astranet-ffi/bench.sh [--quick] [--repeat N]
set -euo pipefail
cd "$(dirname "$0")/.."

repeat=3
bulk=$((1 << 30))
per=$((1 << 20))
while [ $# -gt 0 ]; do
  case $1 in
    --quick) bulk=$((256 << 20)); per=$((256 << 10)); repeat=1; shift ;;
    --repeat) repeat=$2; shift 2 ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

cargo build -p astranet-ffi --locked --release --lib --example bench_rust
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$target/release/libastranet.so" "$work/libastranet.so.0"
ln -s "$target/release/libastranet.so" "$work/libastranet.so"
cc -O2 -Wall -Wextra -Werror -pthread -Iinclude -o "$work/bench_c" astranet-ffi/bench/bench_c.c -L"$work" -lastranet \
  -Wl,-rpath,"$work"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
measure() { # command...: median MiB/s of $repeat runs
  for _ in $(seq "$repeat"); do timeout 300 "$@" | awk '{ print $4 }'; done | median
}

printf '\n%-34s %10s %10s %10s %8s %8s\n' "transfer" "Rust MiB/s" "C tier 1" "C tier 2" "t1/Rust" "t2/Rust"
json="["
for shape in "1 $bulk" "1000 $per"; do
  set -- $shape
  rust=$(measure "$target/release/examples/bench_rust" "$1" "$2")
  t1=$(measure "$work/bench_c" tier1 "$1" "$2")
  t2=$(measure "$work/bench_c" tier2 "$1" "$2")
  r1=$(awk -v a="$t1" -v b="$rust" 'BEGIN { printf "%.2f", a / b }')
  r2=$(awk -v a="$t2" -v b="$rust" 'BEGIN { printf "%.2f", a / b }')
  label="$1 stream(s) x $(($2 >> 10)) KiB"
  printf '%-34s %10s %10s %10s %7sx %7sx\n' "$label" "$rust" "$t1" "$t2" "$r1" "$r2"
  json="$json{\"streams\":$1,\"bytes_per_stream\":$2,\"rust_mib_s\":$rust,\"tier1_mib_s\":$t1,\"tier2_mib_s\":$t2,\"tier1_ratio\":$r1,\"tier2_ratio\":$r2},"
done
echo
echo "${json%,}]"
