#!/usr/bin/env bash
# The Python suite from scratch: venv, pinned tools, the wheel built by pip through
# maturin, the Rust peer for the cross-process test, pytest with timeouts (mypy --strict
# on the examples is one of the tests). Everything builds --locked: this crate's
# Cargo.lock also pins the core's dependencies, so a change of those updates it too.
#   bindings/python/test.sh            # from anywhere
#   VENV=/path/to/venv bindings/python/test.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv}"
py="${PYTHON:-python3}"

step() { printf '\n==== %s\n' "$*"; }

step "Python: venv $venv and pinned tools"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements-dev.txt"
export PATH="$venv/bin:$PATH"   # maturin's PEP 517 hooks run the maturin binary

step "Python: pip install ./bindings/python (maturin builds the abi3 wheel)"
# Without build isolation: the pinned maturin of requirements-dev.txt builds it.
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps --no-build-isolation "$here"

step "Python: cargo fmt and clippy on the extension crate"
(cd "$here" && cargo fmt --check && cargo clippy --quiet --locked --all-targets -- -D warnings)

step "Python: the Rust peer for the cross-process test"
(cd "$here" && cargo build --quiet --locked --example rust_peer)
export ASTRANET_RUST_PEER="$here/target/debug/examples/rust_peer"

step "Python: the original Go package as a peer (tests/interop/gopeer)"
if [ -z "${ASTRANET_GOPEER:-}" ]; then
  (cd "$root/tests/interop/gopeer" && go build -o "$root/target/interop/gopeer" .)
  export ASTRANET_GOPEER="$root/target/interop/gopeer"
fi

step "Python: pytest (each test has a timeout), and the Python scenario of the interop suites"
# Run from the tests folder so that the installed package is imported, not the source.
cd "$here/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider --timeout=120 -o testpaths=. . "$root/tests/interop/python"
