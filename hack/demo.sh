#!/usr/bin/env bash
# The operator's main job end to end, on this machine alone: a local Kubernetes control plane
# (built from Go modules on first use, cached), the On-Premises API simulator over TLS, a coreapp
# Deployment, and the operator. It creates a WebhookCaCertificate, waits until the API holds the
# bundle and the coreapps have restarted, rotates the CA, and shows the operator follow. Then it
# stops everything it started. Everything listens on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="$root/target/demo"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

say "building the operator and the On-Premises API simulator"
cargo build --quiet -p webhook-ca-operator -p onprem-sim
wco="$root/target/debug/webhook-ca-operator"
sim="$root/target/debug/onprem-sim"
bin="$(hack/cluster/build.sh)"
kubectl() { "$bin/kubectl" "$@"; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  hack/cluster/down.sh "$work/cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"

say "starting a local control plane (etcd, kube-apiserver, controller manager, scheduler, kwok)"
hack/cluster/up.sh --dir "$work/cluster" --owner-pid $$ >"$work/cluster-up.log" 2>&1 ||
  { cat "$work/cluster-up.log" >&2; exit 1; }
export KUBECONFIG="$work/cluster/kubeconfig"

say "starting the On-Premises API simulator"
password="Demo-$(openssl rand -hex 6)-Pw1!"
WCO_SIM_ADMIN_PASSWORD="$password" "$sim" --listen 127.0.0.1:0 \
  --write-ca "$work/webapp-ca.pem" >"$work/simulator.json" 2>"$work/simulator.log" &
pids+=($!)
for _ in $(seq 50); do [[ -s "$work/simulator.json" ]] && break; sleep 0.1; done
url="$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$work/simulator.json")"
[[ -n "$url" ]] || { echo "the simulator did not start:" >&2; cat "$work/simulator.log" >&2; exit 1; }
echo "webapp at $url" >&2

say "an internal CA, as a team would keep it in a Secret"
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
    -subj "/CN=$1" -days 365 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
make_ca "Demo Internal Root CA 2026" >"$work/internal-ca.pem"

kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/webhookcacertificates.webhookca.io >/dev/null
kubectl create namespace whatsapp >/dev/null
kubectl -n whatsapp create secret generic wa-admin \
  --from-literal=username=admin --from-literal=password="$password" >/dev/null
kubectl -n whatsapp create secret generic webapp-tls --from-file=ca.crt="$work/webapp-ca.pem" >/dev/null
kubectl -n whatsapp create secret generic internal-ca --from-file=ca.crt="$work/internal-ca.pem" >/dev/null
kubectl -n whatsapp create deployment coreapp --image=docker.whatsapp.biz/coreapp:v2.53 --replicas=2 >/dev/null
kubectl -n whatsapp label deployment coreapp type=coreapp >/dev/null
kubectl -n whatsapp rollout status deployment/coreapp --timeout=120s >&2

say "starting the operator"
"$wco" run --metrics-bind 127.0.0.1:0 --log-format text >"$work/operator.log" 2>&1 &
pids+=($!)

say "creating the WebhookCaCertificate"
kubectl -n whatsapp apply -f - <<EOF
apiVersion: webhookca.io/v1alpha1
kind: WebhookCaCertificate
metadata:
  name: prod
spec:
  sources:
    - secret: {name: internal-ca, key: ca.crt}
  api:
    url: $url
    credentials:
      loginSecret: {name: wa-admin}
    tls:
      caSecret: {name: webapp-tls, key: ca.crt}
  restart:
    targets: [{kind: Deployment, name: coreapp}]
    minInterval: 5s
  debounce: 2s
EOF
kubectl -n whatsapp wait --for=condition=Ready wcc/prod --timeout=120s >&2
kubectl -n whatsapp get wcc >&2
kubectl -n whatsapp get replicasets >&2

api_get() {
  WA_API_USERNAME=admin WA_API_PASSWORD="$password" \
    "$wco" api get --url "$url" --ca-file "$work/webapp-ca.pem"
}
say "what the API holds now"
api_get | "$wco" bundle inspect - >&2

say "rotating the CA: the Secret gains a second certificate"
make_ca "Demo Internal Root CA 2027" >"$work/next-ca.pem"
cat "$work/internal-ca.pem" "$work/next-ca.pem" >"$work/both.pem"
kubectl -n whatsapp create secret generic internal-ca --from-file=ca.crt="$work/both.pem" \
  --dry-run=client -o yaml | kubectl apply --server-side --force-conflicts -f - >/dev/null
expected="$("$wco" bundle build "$work/both.pem" 2>/dev/null | sha256sum | cut -d' ' -f1)"
for _ in $(seq 120); do
  [[ "$(kubectl -n whatsapp get wcc prod -o jsonpath='{.status.uploadedSha256}')" == "$expected" ]] && break
  sleep 1
done
kubectl -n whatsapp wait --for=condition=Ready wcc/prod --timeout=120s >&2
kubectl -n whatsapp get wcc >&2
kubectl -n whatsapp get replicasets >&2
say "what the API holds after the rotation"
api_get | "$wco" bundle inspect - >&2

say "the operator's Events"
kubectl -n whatsapp get events --field-selector involvedObject.kind=WebhookCaCertificate \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message >&2

if [[ "$(kubectl -n whatsapp get wcc prod -o jsonpath='{.status.uploadedSha256}')" != "$expected" ]]; then
  echo "demo failed: the API does not hold the rotated bundle; see $work/operator.log" >&2
  exit 1
fi
say "done: the API holds the rotated bundle and the coreapps run with it (logs in $work)"
