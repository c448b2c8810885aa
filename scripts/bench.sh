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
# The operator measured is the one in the container image (and its static release build).
scripts/image.sh --with-bench >&2
# shellcheck source=/dev/null
. "${TPP_IMAGE_DIR:-$TPP_CACHE/image}/image.env"
exec "$TPP_BENCH_BIN" \
  --operator-bin "$TPP_OPERATOR_BIN" \
  --testcluster-bin "$TPP_CACHE/bin/tpp-testcluster" \
  "$@"
