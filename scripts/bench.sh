#!/usr/bin/env bash
# The benchmark: how far one operator instance scales and what it costs (docs/benchmark.md).
# Builds the test control plane and the release binaries if needed, then runs tpp-bench, which
# prints a Markdown report on stdout and its progress on stderr. Any tpp-bench flag can be
# passed, e.g. `scripts/bench.sh --sizes 100 --lifetime-registrations 100 --lifetime-seconds 60`.
# It prints figures; it fails only when a run cannot finish.
set -euo pipefail
cd "$(dirname "$0")/.."

export TPP_CACHE="${TPP_CACHE:-$HOME/.cache/tpp-operator}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TPP_CACHE/target}"

scripts/build-testcluster.sh >&2
cargo build --release --locked -p tpp-operator -p tpp-bench --bins >&2
exec "$CARGO_TARGET_DIR/release/tpp-bench" \
  --operator-bin "$CARGO_TARGET_DIR/release/tpp-operator" \
  --testcluster-bin "$TPP_CACHE/bin/tpp-testcluster" \
  "$@"
