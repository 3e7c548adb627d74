# shellcheck shell=bash
# Process helpers shared by up.sh, down.sh and the watchdog. Sourced, never run.
# Processes are identified by pid plus start time or command line, never by name alone, so that
# a recycled pid is not mistaken for a cluster component.

# proc_alive PID: running and not a zombie (an orphan whose reaper is slow still has a /proc entry).
proc_alive() {
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  s="${s##*) }"
  [[ "${s:0:1}" != Z && "${s:0:1}" != X ]]
}

# proc_start_time PID: start time in clock ticks since boot (field 22 of /proc/PID/stat); empty
# when the process is gone. The command name in field 2 may hold spaces, so fields count from ')'.
proc_start_time() {
  local s f
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  s="${s##*) }"
  read -r -a f <<<"$s"
  echo "${f[19]}"
}

# component_pid_alive PID BIN NAME: PID is alive and runs BIN/NAME.
component_pid_alive() {
  local cmd
  [[ -n "$1" ]] && proc_alive "$1" || return 1
  cmd="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == "$2/$3 "* ]]
}

COMPONENTS=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
# component_pid NAME: the pid recorded for NAME in a sourced env file.
component_pid() {
  case "$1" in
    etcd) echo "${WCO_ETCD_PID:-}" ;;
    kube-apiserver) echo "${WCO_APISERVER_PID:-}" ;;
    kube-controller-manager) echo "${WCO_KCM_PID:-}" ;;
    kube-scheduler) echo "${WCO_SCHEDULER_PID:-}" ;;
    kwok) echo "${WCO_KWOK_PID:-}" ;;
  esac
}

# cluster_in_use DIR: some component recorded in DIR/env runs and its owner (if any) still lives.
cluster_in_use() (
  # shellcheck disable=SC1091
  source "$1/env" || exit 1
  if [[ -n "${WCO_OWNER_PID:-}" && "$(proc_start_time "$WCO_OWNER_PID")" != "${WCO_OWNER_START:-}" ]]; then
    exit 1
  fi
  for c in "${COMPONENTS[@]}"; do
    component_pid_alive "$(component_pid "$c")" "$WCO_CLUSTER_BIN" "$c" && exit 0
  done
  exit 1
)

# leftover_pids BIN DIR: pids of any process running a component binary from BIN with DIR in its
# arguments (every component gets a path under DIR), whether or not env recorded it.
leftover_pids() {
  local p cmd re
  re="$(printf '%s' "$1" | sed 's/[][\.*^$+?(){}|]/\\&/g')"
  for p in $(pgrep -f -- "^$re/(etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kwok) " || true); do
    cmd="$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" || continue
    [[ "$cmd" == *"$2/"* ]] && proc_alive "$p" && echo "$p"
  done
  return 0
}
