#!/usr/bin/env bash
# The benchmark (issue 12): memory and CPU to list and settle with many Secrets, Secret → upload
# → ReplicaSet latency, a burst, steady-state API calls and fleet scale, beside stakater Reloader.
# Builds the operator and the bench driver (crates/bench) in release mode, Reloader from its Go
# module (hack/bench/reloader/build.sh, cached), starts its own loopback cluster in
# target/bench/cluster, runs the operator and Reloader as host processes against it, prints the
# table on stdout and stops the cluster. Not part of hack/test.sh: the full run takes ~25 min.
#
# Usage: bash hack/bench.sh [--quick] [--only memory|latency|fleet]...
#   --quick   a scaled-down run (1,000 Secrets, 5,000 small, 8 rotations, 60 s steady, 100 fleet)
#   --only X  one part (repeatable)
#   --fleet N the fleet's size (default 1,000; 100 with --quick)
# Environment: WCO_CLUSTER_BIN (cluster binaries; default: hack/cluster/build.sh),
#              WCO_BENCH_RELOADER (a Reloader binary to use instead of building one),
#              WCO_BENCH_OPERATOR (the operator binary to measure instead of the glibc release
#              build, e.g. the image's static musl one: target/x86_64-unknown-linux-musl/release/
#              webhook-ca-operator after hack/image.sh; its allocator returns memory sooner).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

cargo build --release --quiet -p webhook-ca-operator -p wco-bench
# Copies, so that a build during the run cannot swap the binaries between its parts.
mkdir -p target/bench/bin
cp target/release/wco-bench target/bench/bin/
cp "${WCO_BENCH_OPERATOR:-target/release/webhook-ca-operator}" target/bench/bin/webhook-ca-operator
bin="${WCO_CLUSTER_BIN:-$(hack/cluster/build.sh)}"
reloader="${WCO_BENCH_RELOADER:-}"
if [[ -z "$reloader" ]]; then
  reloader="$(hack/bench/reloader/build.sh)" || {
    echo "bench.sh: Reloader could not be built; its columns read n/a" >&2
    reloader=""
  }
fi

dir="$repo/target/bench/cluster"
logs="$repo/target/bench/logs"
mkdir -p "$logs"
WCO_CLUSTER_BIN="$bin" hack/cluster/up.sh --dir "$dir" --owner-pid $$ >&2
trap 'hack/cluster/down.sh "$dir" >&2 || true' EXIT
export KUBECONFIG="$dir/kubeconfig"
"$bin/kubectl" apply --server-side -f crds >&2
"$bin/kubectl" wait --for=condition=Established crd/webhookcacertificates.webhookca.io >&2

echo "## Machine"
echo
echo "- $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- operator $(git rev-parse --short HEAD) (${WCO_BENCH_OPERATOR:-glibc release build}, $(file -b target/bench/bin/webhook-ca-operator | cut -d, -f1-2)), Kubernetes $("$bin/kubectl" version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1), Reloader: ${reloader:-not built}"
echo
"$repo/target/bench/bin/wco-bench" --operator "$repo/target/bench/bin/webhook-ca-operator" \
  ${reloader:+--reloader "$reloader"} --logdir "$logs" "$@"
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
