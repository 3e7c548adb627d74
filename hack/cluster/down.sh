#!/usr/bin/env bash
# Stops the cluster that up.sh started in DIR (default: target/test-cluster/dev): SIGTERM, then
# SIGKILL after 15 s, each process by its recorded pid. Removes etcd's data (the next up.sh starts
# fresh anyway) and keeps the logs, certificates and kubeconfig for a post-mortem. Exits non-zero
# if any component process of DIR is still running afterwards.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${1:-$repo/target/test-cluster/dev}"
# shellcheck source=lib.sh
source "$here/lib.sh"
if [[ ! -d "$dir" ]]; then echo "down.sh: no cluster directory $dir" >&2; exit 0; fi
dir="$(cd "$dir" && pwd)"
if [[ ! -f "$dir/env" ]]; then echo "down.sh: nothing recorded in $dir (already stopped)" >&2; exit 0; fi
# shellcheck disable=SC1091
source "$dir/env"
bin="$WCO_CLUSTER_BIN"

# The watchdog runs this script itself when its owner exits; otherwise it has nothing left to do.
if [[ -z "${WCO_FROM_WATCHDOG:-}" && -n "${WCO_WATCHDOG_PID:-}" ]] && proc_alive "$WCO_WATCHDOG_PID"; then
  # Its own session: the group id is its pid, and the group holds its `sleep` too.
  kill -TERM -- "-$WCO_WATCHDOG_PID" 2>/dev/null || true
fi

# stop PIDS...: SIGTERM, then SIGKILL for whatever still runs after 15 s.
stop() {
  local p deadline=$((SECONDS + 15))
  kill -TERM "$@" 2>/dev/null || true
  for p in "$@"; do
    while proc_alive "$p" && ((SECONDS < deadline)); do sleep 0.1; done
    if proc_alive "$p"; then
      echo "down.sh: pid $p ignored SIGTERM; sending SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
}
# stop_components NAME...: the recorded pids of NAMEs that still run them.
stop_components() {
  local c p pids=()
  for c in "$@"; do
    p="$(component_pid "$c")"
    component_pid_alive "$p" "$bin" "$c" && pids+=("$p")
  done
  [[ ${#pids[@]} -eq 0 ]] || stop "${pids[@]}"
}
# Clients first, etcd last: an apiserver that loses etcd first spends ~10 s in retries on exit.
stop_components kwok kube-scheduler kube-controller-manager
stop_components kube-apiserver
stop_components etcd

left=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  left="$(leftover_pids "$bin" "$dir")"
  [[ -z "$left" ]] && break
  sleep 0.5
done
if [[ -n "$left" ]]; then
  echo "down.sh: still running for $dir:" >&2
  for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline" >&2; echo >&2; done
  exit 1
fi
rm -rf "$dir/etcd"
mv "$dir/env" "$dir/env.stopped"
echo "down.sh: stopped the cluster in $dir (logs: $dir/logs)" >&2
