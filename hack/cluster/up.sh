#!/usr/bin/env bash
# Starts a throwaway Kubernetes control plane on loopback: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (which plays the kubelets of fake nodes), all
# built from Go modules by build.sh. Returns once the API is ready, the nodes are Ready and the
# `default` ServiceAccount exists; on failure it prints the failing component's log tail, stops
# whatever it started and exits non-zero.
#
# Usage: up.sh [--name NAME] [--dir DIR] [--owner-pid PID] [--nodes N]
#   --dir DIR        state directory (default: target/test-cluster/NAME, NAME defaults to "dev")
#   --owner-pid PID  a watchdog stops the cluster once that process has exited
#   --nodes N        number of kwok Nodes (default 2)
# Environment: WCO_CLUSTER_BIN (binary dir; default: output of build.sh),
#              WCO_CLUSTER_TIMEOUT (seconds allowed per readiness step; default 120).
# Writes DIR/kubeconfig (admin) and DIR/env (KUBECONFIG, ports, pids); stop with down.sh DIR.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

name=dev dir="" owner_pid="" nodes=2
usage() { sed -n '8,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit "$1"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="${2:?}"; shift 2 ;;
    --dir) dir="${2:?}"; shift 2 ;;
    --owner-pid) owner_pid="${2:?}"; shift 2 ;;
    --nodes) nodes="${2:?}"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "up.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done
[[ "$nodes" =~ ^[1-9][0-9]*$ ]] || { echo "up.sh: --nodes wants a positive number" >&2; exit 2; }
if [[ -n "$owner_pid" ]] && ! kill -0 "$owner_pid" 2>/dev/null; then
  echo "up.sh: owner process $owner_pid is not running" >&2; exit 2
fi
timeout_s="${WCO_CLUSTER_TIMEOUT:-120}"

dir="${dir:-$repo/target/test-cluster/$name}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
t_start="$EPOCHREALTIME"
log() { printf 'up.sh [%5.1fs]: %s\n' "$(bc <<<"$EPOCHREALTIME - $t_start")" "$*" >&2; }

bin="${WCO_CLUSTER_BIN:-$("$here/build.sh")}"
bin="$(cd "$bin" && pwd)"
stages_src="$bin/../kwok-stages"
for t in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl; do
  [[ -x "$bin/$t" ]] || { echo "up.sh: $bin/$t is missing; run hack/cluster/build.sh" >&2; exit 1; }
done

# shellcheck source=lib.sh
source "$here/lib.sh"

# A previous cluster in this directory: refuse while it is in use, otherwise clear it away.
if [[ -f "$dir/env" ]]; then
  if cluster_in_use "$dir"; then
    echo "up.sh: a cluster is already running in $dir; stop it with hack/cluster/down.sh $dir" >&2
    exit 1
  fi
  "$here/down.sh" "$dir" >&2
fi
rm -rf "$dir/etcd" "$dir/pki" "$dir/logs" "$dir/kwok" "$dir/kubeconfig" "$dir/env"
pki="$dir/pki" logs="$dir/logs"
mkdir -p "$pki" "$logs" "$dir/kwok"

# Ports: free now on loopback, below the ephemeral range so outgoing connections do not take them.
taken=" $(ss -Htln 2>/dev/null | awk '{n = split($4, a, ":"); print a[n]}' | tr '\n' ' ') "
pick_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    [[ "$taken" == *" $p "* ]] && continue
    taken+="$p "
    echo "$p"; return
  done
}
etcd_port=$(pick_port) etcd_peer_port=$(pick_port) api_port=$(pick_port)
kcm_port=$(pick_port) sched_port=$(pick_port)

declare -A pid=()
owner_start="" watchdog_pid=""
[[ -n "$owner_pid" ]] && owner_start="$(proc_start_time "$owner_pid")"
write_env() {
  {
    printf '%s=%q\n' \
      KUBECONFIG "$dir/kubeconfig" WCO_CLUSTER_DIR "$dir" WCO_CLUSTER_BIN "$bin" \
      WCO_APISERVER_URL "https://127.0.0.1:$api_port" \
      WCO_ETCD_PORT "$etcd_port" WCO_ETCD_PEER_PORT "$etcd_peer_port" WCO_APISERVER_PORT "$api_port" \
      WCO_KCM_PORT "$kcm_port" WCO_SCHEDULER_PORT "$sched_port" \
      WCO_ETCD_PID "${pid[etcd]:-}" WCO_APISERVER_PID "${pid[kube-apiserver]:-}" \
      WCO_KCM_PID "${pid[kube-controller-manager]:-}" WCO_SCHEDULER_PID "${pid[kube-scheduler]:-}" \
      WCO_KWOK_PID "${pid[kwok]:-}" WCO_WATCHDOG_PID "$watchdog_pid" \
      WCO_OWNER_PID "$owner_pid" WCO_OWNER_START "$owner_start"
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
}

started=0
on_exit() {
  local rc=$?
  if [[ $started -eq 0 ]]; then
    log "startup failed; stopping what was started (logs stay in $logs)"
    WCO_FROM_WATCHDOG="" "$here/down.sh" "$dir" >&2 || true
  fi
  exit "$rc"
}
trap on_exit EXIT
write_env

if [[ -n "$owner_pid" ]]; then
  # Own session, deaf to the terminal's signals: a Ctrl-C that kills the owner must still leave
  # the watchdog alive to clean up after it.
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  setsid bash -c 'trap "" INT HUP
    source "$1/lib.sh"
    while [[ "$(proc_start_time "$2")" == "$3" ]]; do sleep 1; done
    echo "owner $2 exited: stopping the cluster"
    WCO_FROM_WATCHDOG=1 exec bash "$1/down.sh" "$4"' \
    wco-watchdog "$here" "$owner_pid" "$owner_start" "$dir" >>"$logs/watchdog.log" 2>&1 </dev/null &
  watchdog_pid=$!
  write_env
fi

# --- certificates -------------------------------------------------------------------------------
cat >"$pki/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = webhook-ca-operator test cluster CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
EOF
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# issue NAME SUBJECT EXT_KEY_USAGE [SAN]
issue() {
  newkey "$pki/$1.key"
  openssl req -new -config "$pki/openssl.cnf" -key "$pki/$1.key" -subj "$2" -out "$pki/$1.csr"
  {
    echo "basicConstraints = critical,CA:FALSE"
    echo "keyUsage = critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage = $3"
    echo "authorityKeyIdentifier = keyid"
    [[ -n "${4:-}" ]] && echo "subjectAltName = $4"
  } >"$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
  rm -f "$pki/$1.csr" "$pki/$1.ext"
}
# new_ca NAME SUBJECT
new_ca() {
  newkey "$pki/$1.key"
  openssl req -x509 -new -config "$pki/openssl.cnf" -extensions v3_ca -key "$pki/$1.key" \
    -subj "$2" -days 30 -sha256 -out "$pki/$1.crt"
}
new_ca ca "/CN=webhook-ca-operator test cluster CA"
# The front-proxy CA signs nothing: it only completes the apiserver's request-header settings,
# without which the controller manager and scheduler fill their logs with errors about it.
new_ca front-proxy-ca "/CN=webhook-ca-operator test front-proxy CA"
rm -f "$pki/front-proxy-ca.key"
loopback_san="IP:127.0.0.1,DNS:localhost"
issue apiserver "/CN=kube-apiserver" serverAuth "$loopback_san"
issue components-serving "/CN=loopback-components" serverAuth "$loopback_san"
issue admin "/O=system:masters/CN=wco-admin" clientAuth
issue kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
issue kube-scheduler "/CN=system:kube-scheduler" clientAuth
# kwok writes status for every Node and Pod and deletes Pods: cluster-admin is the honest scope.
issue kwok "/O=system:masters/CN=kwok-controller" clientAuth
newkey "$pki/sa.key"
openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
chmod 600 "$pki"/*.key

# kubeconfig FILE USER: certificates embedded, so the file works wherever it is copied.
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: wco-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$2.crt")
    client-key-data: $(base64 -w0 <"$pki/$2.key")
contexts:
- name: wco-test
  context:
    cluster: wco-test
    user: $2
    namespace: default
current-context: wco-test
EOF
  chmod 600 "$1"
}
kubeconfig "$dir/kubeconfig" admin
for u in kube-controller-manager kube-scheduler kwok; do kubeconfig "$pki/$u.kubeconfig" "$u"; done

# --- processes ----------------------------------------------------------------------------------
# start NAME ARGS...: own session, so that a signal for the caller's process group (Ctrl-C in a
# test run) leaves cleanup to down.sh or the watchdog instead of killing components half-way.
start() {
  local n="$1"; shift
  setsid "$bin/$n" "$@" >"$logs/$n.log" 2>&1 </dev/null &
  pid[$n]=$!
  write_env
}
fail() {
  local n="$1"; shift
  log "$n: $*"
  if [[ -f "$logs/$n.log" ]]; then
    echo "----- last 40 lines of $logs/$n.log -----" >&2
    tail -n 40 "$logs/$n.log" >&2
    echo "-----" >&2
  fi
  exit 1
}
# wait_for NAME WHAT CMD...: polls CMD until it succeeds; fails with NAME's log when NAME dies or
# the time runs out.
wait_for() {
  local n="$1" what="$2"; shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    [[ -n "${pid[$n]:-}" ]] && ! proc_alive "${pid[$n]}" && fail "$n" "exited while waiting for $what"
    ((SECONDS < deadline)) || fail "$n" "no $what after ${timeout_s}s"
    sleep 0.5
  done
}
probe() { curl -sf --noproxy '*' --max-time 2 --cacert "$pki/ca.crt" "$@"; }
kctl() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }

log "starting etcd on 127.0.0.1:$etcd_port (data: $dir/etcd)"
start etcd --name=wco --data-dir="$dir/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="wco=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync --log-level=warn
wait_for etcd "etcd health" curl -sf --noproxy '*' --max-time 2 "http://127.0.0.1:$etcd_port/health"

log "starting kube-apiserver on https://127.0.0.1:$api_port"
# --endpoint-reconciler-type=none: the reconciler refuses a loopback advertise address, and the
# `kubernetes` Service's endpoints are for in-cluster clients, which kwok pods never are.
start kube-apiserver --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
  --cert-dir="$pki" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=Node,RBAC --allow-privileged=true --profiling=false \
  --endpoint-reconciler-type=none
wait_for kube-apiserver "/readyz" probe "https://127.0.0.1:$api_port/readyz"

# shellcheck disable=SC2054 # the commas belong to the flag's value
common=(--bind-address=127.0.0.1 --leader-elect=false --profiling=false
  --tls-cert-file="$pki/components-serving.crt" --tls-private-key-file="$pki/components-serving.key"
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics)
log "starting kube-controller-manager, kube-scheduler and kwok"
# --use-service-account-credentials: the system:kube-controller-manager role only covers getting
# started; each controller acts through its own ServiceAccount, as in kubeadm clusters.
kcm_kc="$pki/kube-controller-manager.kubeconfig"
start kube-controller-manager "${common[@]}" --secure-port="$kcm_port" \
  --kubeconfig="$kcm_kc" --authentication-kubeconfig="$kcm_kc" --authorization-kubeconfig="$kcm_kc" \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true \
  --service-cluster-ip-range=10.96.0.0/16
sched_kc="$pki/kube-scheduler.kubeconfig"
start kube-scheduler "${common[@]}" --secure-port="$sched_port" \
  --kubeconfig="$sched_kc" --authentication-kubeconfig="$sched_kc" --authorization-kubeconfig="$sched_kc"

# kwok v0.8 ships no built-in stages: the same set kwokctl uses (nodes become Ready and keep a
# lease, pods become Running/Ready, deleted pods go away). Its node and pod IPs are labels only.
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  [[ -f "$stages_src/$f" ]] || fail kwok "stage file $stages_src/$f is missing (rebuild with build.sh)"
  cat "$stages_src/$f"; echo "---"
done >"$dir/kwok/stages.yaml"
# And the repository's own stages for tests (hack/cluster/stages/: Pods labelled
# wco.test/never-ready=true run but never become Ready).
for f in "$here/stages/"*.yaml; do
  cat "$f"; echo "---"
done >>"$dir/kwok/stages.yaml"
# HOME points kwok away from a user's ~/.kwok/kwok.yaml, which it would otherwise load too.
HOME="$dir/kwok" start kwok --kubeconfig="$pki/kwok.kubeconfig" --config="$dir/kwok/stages.yaml" \
  --manage-all-nodes=true --cidr=10.244.0.0/16 --node-ip=10.0.0.1 --node-lease-duration-seconds=40

for ((i = 0; i < nodes; i++)); do
  cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    type: kwok
---
EOF
done >"$dir/kwok/nodes.yaml"
kctl apply -f "$dir/kwok/nodes.yaml" >"$logs/nodes.log" 2>&1 || fail kube-apiserver "creating nodes failed: $(cat "$logs/nodes.log")"

log "waiting for the controller manager, the scheduler, $nodes Ready nodes and ServiceAccount default"
wait_for kube-controller-manager "/healthz" probe "https://127.0.0.1:$kcm_port/healthz"
wait_for kube-scheduler "/healthz" probe "https://127.0.0.1:$sched_port/healthz"
nodes_ready() {
  local ready
  ready="$(kctl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')"
  [[ "$ready" -ge "$nodes" ]]
}
wait_for kwok "$nodes Ready nodes" nodes_ready
wait_for kube-controller-manager "ServiceAccount default/default" kctl get serviceaccount default -n default

started=1
log "cluster ready: export KUBECONFIG=$dir/kubeconfig (stop: hack/cluster/down.sh $dir)"
echo "$dir"
