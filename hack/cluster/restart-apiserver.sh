#!/usr/bin/env bash
# Restarts only the kube-apiserver of a cluster started by up.sh, as an upgrade or a crash would:
# stop it, wait until it is gone, optionally stay down a while, start it again with the very
# same command line (read from /proc before the stop), record its new pid in DIR/env, and return
# once /readyz answers. etcd and the other components keep running.
#
# Usage: restart-apiserver.sh DIR [--down SECONDS] [--signal TERM|KILL]
#   --down SECONDS  how long the apiserver stays stopped (default 0)
#   --signal SIG    TERM (default) is a graceful stop, which waits up to 60 s for open watches;
#                   KILL is a crash: every connection drops at once
# Environment: WCO_CLUSTER_TIMEOUT (seconds allowed for the stop and for /readyz; default 120).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh"

dir="${1:?usage: restart-apiserver.sh DIR [--down SECONDS] [--signal TERM|KILL]}"
shift
down=0 signal=TERM
while [[ $# -gt 0 ]]; do
  case "$1" in
    --down) down="${2:?}"; shift 2 ;;
    --signal) signal="${2:?}"; shift 2 ;;
    *) echo "restart-apiserver.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
timeout_s="${WCO_CLUSTER_TIMEOUT:-120}"
dir="$(cd "$dir" && pwd)"
[[ -f "$dir/env" ]] || { echo "restart-apiserver.sh: no running cluster in $dir" >&2; exit 1; }
source "$dir/env"
pid="${WCO_APISERVER_PID:-}"
if ! component_pid_alive "$pid" "$WCO_CLUSTER_BIN" kube-apiserver; then
  echo "restart-apiserver.sh: the kube-apiserver of $dir (pid ${pid:-none}) is not running" >&2
  exit 1
fi

mapfile -d '' cmd <"/proc/$pid/cmdline"
kill "-$signal" "$pid"
deadline=$((SECONDS + timeout_s))
while proc_alive "$pid"; do
  ((SECONDS < deadline)) || { echo "restart-apiserver.sh: pid $pid did not stop" >&2; exit 1; }
  sleep 0.1
done
sleep "$down"

# The same way up.sh starts it: its own session, so that the test's signals do not reach it.
setsid "${cmd[@]}" >>"$dir/logs/kube-apiserver.log" 2>&1 </dev/null &
new_pid=$!
sed -i "s/^WCO_APISERVER_PID=.*/WCO_APISERVER_PID=$new_pid/" "$dir/env"

deadline=$((SECONDS + timeout_s))
until curl -sf --noproxy '*' --max-time 2 --cacert "$dir/pki/ca.crt" \
  "$WCO_APISERVER_URL/readyz" >/dev/null 2>&1; do
  if ! proc_alive "$new_pid"; then
    echo "restart-apiserver.sh: kube-apiserver exited; last lines of its log:" >&2
    tail -n 40 "$dir/logs/kube-apiserver.log" >&2
    exit 1
  fi
  ((SECONDS < deadline)) || { echo "restart-apiserver.sh: no /readyz after ${timeout_s}s" >&2; exit 1; }
  sleep 0.2
done
echo "restart-apiserver.sh: kube-apiserver of $dir restarted (pid $new_pid)" >&2
