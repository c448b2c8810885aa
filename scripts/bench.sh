#!/usr/bin/env bash
# The benchmark: how far one operator instance scales and what it costs (docs/benchmark.md).
# Builds the test control plane and the release binaries if needed, then runs tpp-bench, which
# prints a Markdown report on stdout and its progress on stderr. Any tpp-bench flag can be
# passed (`--help` lists them). Without a scenario flag it runs N = 100, 1 000, 10 000 and the
# short-token scenario; naming any scenario runs only those named, e.g.
#   scripts/bench.sh --sizes 100 --lifetime-registrations 100 --lifetime-seconds 60
#   scripts/bench.sh --registrations 10 --consents 10000           # few registrations, many consents
#   scripts/bench.sh --steady-registrations 1000 --steady-token-seconds 300 --steady-window-seconds 600
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
