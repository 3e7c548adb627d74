#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, rustdoc, generated-file drift, unit tests, and
# the tests against a real Kubernetes control plane (built from Go modules on first use, cached).
# This is the README's test command and what CI runs.
#
# The builds that later steps need (the Go-built tools, the image's release binary) run in the
# background while the foreground checks and tests: on two cores the end-to-end tests leave most
# of the CPU idle (they wait out debounces, restart throttles and rollouts), so a cold run takes
# far less than the sum of its parts. Each background build writes target/ci-logs/<name>.log,
# printed when it fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }

logs="$root/target/ci-logs"
mkdir -p "$logs"
declare -A pids=()
background() {
  local name="$1"
  shift
  "$@" >"$logs/$name.out" 2>"$logs/$name.log" &
  pids[$name]=$!
}
# Waits for a background build; prints its log and fails the run when it failed.
await() {
  local name="$1"
  if ! wait "${pids[$name]}"; then
    echo "test.sh: the background build '$name' failed; its log ($logs/$name.log) ends:" >&2
    tail -n 60 "$logs/$name.log" >&2
    exit 1
  fi
  unset "pids[$name]"
}
cluster_dir="$root/target/test-cluster/test-run"
# A background build is a script whose Go or cargo children outlive it unless stopped too.
kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill_tree "$pid"; done
  hack/cluster/down.sh "$cluster_dir" >&2 2>/dev/null || true
}
trap cleanup EXIT

# What the tests show (logs at debug level, each test namespace's Events and statuses) and the
# secrets they used, for the secret scan after them: this run's only (test_support::test_logs).
export WCO_TEST_LOGS="$root/target/test-logs"
rm -rf "$WCO_TEST_LOGS"
# The whole run leaves logs and secrets to scan, and none means a broken recording; a run of a
# few tests (arguments for cargo test) may leave none.
scan_args=()
(($# == 0)) || scan_args=(--allow-empty)

step "cargo fmt --check"
cargo fmt --all -- --check

step "background: test cluster binaries (newest and oldest Kubernetes), promtool, image tools, cargo-deny (cached by version)"
background cluster hack/cluster/build.sh
background cluster-oldest hack/cluster/build.sh hack/cluster/oldest
background tools bash -c 'hack/promtool/build.sh && hack/image/tools.sh'
# cargo-deny: installed once per version (cached), then licences, bans and sources; advisories
# need the network (`hack/deny.sh advisories`).
background deny hack/deny.sh

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc --no-deps, warnings denied (broken intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked

step "cargo test --no-run (the build of every test binary)"
cargo test --all-targets --locked --no-run "$@"

step "background: the container image (hack/image.sh: a static release binary, then the image)"
await tools
background image hack/image.sh

step "the chart's alerting rules: promtool check rules and test rules"
await cluster
bin="$(cat "$logs/cluster.out")"
export WCO_CLUSTER_BIN="$bin"
HELM="$bin/helm" hack/promtool/check.sh

# One control plane for every test binary of this run: each test gets its own namespace in it.
step "starting the test cluster in $cluster_dir"
hack/cluster/down.sh "$cluster_dir" >/dev/null 2>&1 || true
hack/cluster/up.sh --dir "$cluster_dir" --owner-pid $$ >&2
export WCO_TEST_KUBECONFIG="$cluster_dir/kubeconfig"

step "cargo test"
cargo test --all-targets --locked "$@"
hack/cluster/down.sh "$cluster_dir" >&2

# What the fault matrix counted (test_support::figure!): cargo test shows a passing test's
# output only under --nocapture. Printed, then cleared for the pass on the oldest Kubernetes.
figures() {
  step "$1"
  cat "$WCO_TEST_LOGS"/figures/*.txt 2>/dev/null || echo "(none: no test that counts ran)"
  rm -rf "$WCO_TEST_LOGS/figures"
}
figures "the fault matrix's figures: kills, uploads and rollouts per bundle, what the conditions said"

step "the secret scan: every password, token and private key the tests used, in every log (debug level) and every test namespace's Events and statuses they left in target/test-logs"
cargo run -q --locked -p test-support --bin scan-test-logs -- "${scan_args[@]}"

step "supply chain: cargo deny check licenses bans sources (advisories: hack/deny.sh advisories)"
await deny
cat "$logs/deny.log" >&2

step "container image: hack/image/test.sh proves what hack/image.sh built"
await image
hack/image/test.sh

step "the cluster tests on the oldest supported Kubernetes: hack/cluster/test-oldest.sh"
await cluster-oldest
hack/cluster/test-oldest.sh
figures "the fault matrix's figures on the oldest Kubernetes"

step "the secret scan again, with what the tests on the oldest Kubernetes showed"
cargo run -q --locked -p test-support --bin scan-test-logs -- "${scan_args[@]}"
