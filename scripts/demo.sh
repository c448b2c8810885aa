#!/usr/bin/env bash
# One-command local demo: a real control plane, the fake bank and the operator on this machine,
# with the examples applied. Ctrl-C stops everything. `scripts/demo.sh --check` stops by itself
# once the registration is Ready (CI runs that so the demo cannot rot).
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
[ "${1:-}" = "--check" ] && check=true

export TPP_CACHE="${TPP_CACHE:-$HOME/.cache/tpp-operator}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TPP_CACHE/target}"
bin="$TPP_CACHE/bin"

scripts/build-testcluster.sh >/dev/null
scripts/install-tools.sh >/dev/null
cargo build --quiet --workspace --bins

work=$(mktemp -d /tmp/tpp-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for_line() { # file pattern seconds
  for _ in $(seq 1 $(( $3 * 2 ))); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "timed out waiting for '$2' in $1" >&2
  return 1
}

echo "Starting a Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)..."
"$bin/tpp-testcluster" --dir "$work/cluster" > "$work/cluster.out" &
pids+=($!)
wait_for_line "$work/cluster.out" '^READY ' 120
export KUBECONFIG="$work/cluster/kubeconfig"
kubectl="$bin/kubectl"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "Starting the fake bank on 127.0.0.1:$port (180 s tokens)..."
"$CARGO_TARGET_DIR/debug/fake-provider" --listen "127.0.0.1:$port" --token-lifetime 180 \
  --jwks-url "http://127.0.0.1:$http_port/jwks" > "$work/fake.log" 2>&1 &
pids+=($!)
wait_for_line "$work/fake.log" 'listening on' 30

"$kubectl" apply --server-side -f crds/ >/dev/null
echo "Starting tpp-operator (JWKS and callback on http://127.0.0.1:$http_port, metrics on http://127.0.0.1:$metrics_port/metrics)..."
# The fake bank as the cluster's one provider (the chart declares its providers the same way).
cat > "$work/providers.json" <<EOF
[{"name": "fake-bank", "profile": "leatherback", "url": "http://127.0.0.1:$port",
  "allowedNamespaces": {"selector": {}}}]
EOF
"$CARGO_TARGET_DIR/debug/tpp-operator" run --providers-file "$work/providers.json" --default-provider fake-bank \
  --public-addr "127.0.0.1:$http_port" --metrics-addr "127.0.0.1:$metrics_port" > "$work/operator.log" 2>&1 &
pids+=($!)

"$kubectl" apply -f examples/tpp-registration.yaml
echo "Waiting for the registration to be Ready..."
"$kubectl" wait tpp/cway --for=condition=Ready --timeout=60s >/dev/null

"$kubectl" apply -f examples/account-consent.yaml
echo "Waiting for the consent to be created at the bank..."
"$kubectl" wait consent/cway-accounts --for=jsonpath='{.status.consentStatus}'=AwaitingAuthorisation --timeout=60s >/dev/null
echo "Playing the customer: opening the authorisation URL and following the bank's redirect to /callback..."
url=$("$kubectl" get consent cway-accounts -o jsonpath='{.status.authorisationUrl}')
python3 - "$url" "http://127.0.0.1:$http_port/callback" <<'PY'
import sys, urllib.error, urllib.request
class Stop(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None
try:
    urllib.request.build_opener(Stop).open(sys.argv[1])
    sys.exit("the bank did not redirect")
except urllib.error.HTTPError as e:
    location = e.headers.get("Location") if e.code == 303 else None
    if not location:
        sys.exit(f"the bank refused the authorisation request: {e.code} {e.read()[:200]!r}")
urllib.request.urlopen(sys.argv[2] + "?" + location.split("?", 1)[1]).read()
PY
"$kubectl" wait consent/cway-accounts --for=condition=Ready --timeout=60s >/dev/null

cat <<EOT

== kubectl get openbanking
$("$kubectl" get openbanking)

== kubectl get tpp -o wide
$("$kubectl" get tpp -o wide)

== kubectl get consent
$("$kubectl" get consent)

== Secrets the operator wrote (keys only)
$("$kubectl" get secret cway-credentials -o jsonpath='cway-credentials: {.data}' | sed -E 's/"([a-z_]+)":"[^"]*"/\1/g')
$("$kubectl" get secret cway-token -o jsonpath='cway-token: {.data}' | sed -E 's/"([a-z_]+)":"[^"]*"/\1/g')
$("$kubectl" get secret cway-accounts-token -o jsonpath='cway-accounts-token: {.data}' | sed -E 's/"([a-z_]+)":"[^"]*"/\1/g')

== Events
$("$kubectl" get events.events.k8s.io -o custom-columns=TYPE:.type,REASON:.reason,NOTE:.note)

EOT
if $check; then
  echo "demo check passed"
  exit 0
fi
cat <<EOT
Everything runs locally. In another terminal:
  export KUBECONFIG=$KUBECONFIG
  $kubectl get tpp -w                      # the token is refreshed every ~90 s (90 s before expiry)
  $kubectl get secret cway-token -o jsonpath='{.data.expires_at}' | base64 -d
  curl -s http://127.0.0.1:$metrics_port/metrics | grep tpp_operator_token
  curl -s -XPOST http://127.0.0.1:$port/__admin/faults -d '{"endpoint":"ClientToken","fault":{"Status":503}}' -H 'content-type: application/json'
                                           # a bank outage: watch RefreshFailing, then recovery after
  curl -s -XDELETE http://127.0.0.1:$port/__admin/faults
Logs: $work/operator.log. Press Ctrl-C to stop everything.
EOT
wait
