#!/usr/bin/env bash
# The project's test command: format, lint, unit tests, and integration tests against a real
# Kubernetes API server (tests/cluster) and the fake provider. Prints how long each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."

export TPP_CACHE="${TPP_CACHE:-$HOME/.cache/tpp-operator}"
# Reused between runs (and by CI on the same machine): builds are slow on 2 cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TPP_CACHE/target}"
mkdir -p "$TPP_CACHE"

stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "==> $name"
  "$@"
  echo "<== $name: $((SECONDS - start)) s"
}

cluster_pid=""
cluster_dir=""
cleanup() {
  if [ -n "$cluster_pid" ] && kill -0 "$cluster_pid" 2>/dev/null; then
    kill -TERM "$cluster_pid" 2>/dev/null || true
    wait "$cluster_pid" 2>/dev/null || true
  fi
  if [ -n "$cluster_dir" ]; then rm -rf "$cluster_dir"; fi
}
trap cleanup EXIT

start_cluster() {
  cluster_dir=$(mktemp -d /tmp/tpp-testcluster.XXXXXX)
  "$TPP_CACHE/bin/tpp-testcluster" --dir "$cluster_dir" > "$cluster_dir/stdout" &
  cluster_pid=$!
  for _ in $(seq 1 300); do
    if grep -q '^READY ' "$cluster_dir/stdout" 2>/dev/null; then
      TPP_TEST_KUBECONFIG=$(sed -n 's/^READY //p' "$cluster_dir/stdout" | head -n1)
      export TPP_TEST_KUBECONFIG
      return 0
    fi
    if ! kill -0 "$cluster_pid" 2>/dev/null; then
      echo "test control plane exited early; its log:" >&2
      tail -n 50 "$cluster_dir/controlplane.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  echo "test control plane not ready after 150 s" >&2
  tail -n 50 "$cluster_dir/controlplane.log" >&2 || true
  return 1
}

stage "build test control plane" scripts/build-testcluster.sh
stage "install kubectl and helm" scripts/install-tools.sh
stage "helm lint" "$TPP_CACHE/bin/helm" lint charts/tpp-operator
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# Licenses, banned crates and sources (deny.toml); advisories need a database this machine
# cannot fetch.
stage "cargo deny" "$TPP_CACHE/bin/cargo-deny" check bans licenses sources
stage "build tests" cargo test --workspace --locked --no-run
# The end-to-end tests and the benchmark run the operator from the container image: scripts/image.sh
# builds the static release binary, writes the OCI image and unpacks it again; the benchmark is built
# in the same cargo invocation so that the two share one release build.
export TPP_IMAGE_DIR="$TPP_CACHE/image"
stage "build release binaries and image" scripts/image.sh --with-bench
# shellcheck source=/dev/null
. "$TPP_IMAGE_DIR/image.env"
export TPP_OPERATOR_BIN TPP_BENCH_BIN
echo "image archive: $IMAGE_ARCHIVE_BYTES bytes; root filesystem: $ROOTFS_BYTES bytes"
stage "start test control plane" start_cluster
# Integration tests mostly wait on timers, so more threads than cores keeps the run short.
stage "cargo test" cargo test --workspace --locked -- --test-threads="${TPP_TEST_THREADS:-8}"
# The README's demo must keep working: run it once in its self-checking mode.
stage "demo check" scripts/demo.sh --check
# The benchmark must keep working: its smallest size once (figures are printed, not judged).
bench_smallest() {
  scripts/bench.sh --sizes 100 --steady-seconds 10 \
    --lifetime-registrations 50 --lifetime-seconds 60 \
    --registrations 5 --consents 50 \
    --steady-registrations 20 --steady-token-seconds 30 --steady-window-seconds 30 \
    --timeout-seconds 300
}
stage "benchmark, smallest size" bench_smallest
