#!/usr/bin/env bash
# Runs every test binary that uses the test cluster (the files of tests/ that reach it)
# against the oldest Kubernetes minor the chart supports (hack/cluster/oldest/versions.env), on
# a cluster of its own. hack/test.sh runs everything on the newest minor first, then this.
# Arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

# The files that reach the cluster through test_support (cluster(), a test namespace, the
# end-to-end setup, or a dedicated cluster); the others do not touch Kubernetes and run once.
mapfile -t tests < <(grep -lE 'cluster\(\)|setup\(|setup_with\(|synced\(|dedicated_cluster|TestNamespace' tests/*.rs |
  xargs -n1 basename | sed 's/\.rs$//')
((${#tests[@]} > 0)) || { echo "test-oldest.sh: found no test that uses the cluster" >&2; exit 1; }

bin="$(hack/cluster/build.sh hack/cluster/oldest)"
export WCO_CLUSTER_BIN="$bin"
dir="$root/target/test-cluster/test-run-oldest"
hack/cluster/down.sh "$dir" >/dev/null 2>&1 || true
trap 'hack/cluster/down.sh "$dir" >&2 || true' EXIT
hack/cluster/up.sh --dir "$dir" --owner-pid $$ >&2
export WCO_TEST_KUBECONFIG="$dir/kubeconfig"
# shellcheck source=oldest/versions.env
want="$(source hack/cluster/oldest/versions.env && echo "$K8S_VERSION")"
server="$("$bin/kubectl" --kubeconfig "$WCO_TEST_KUBECONFIG" version -o json |
  sed -n 's/^ *"gitVersion": "\(.*\)",$/\1/p' | tail -n1)"
[[ "$server" == "$want" ]] || { echo "test-oldest.sh: the cluster runs $server, not $want" >&2; exit 1; }
echo "test-oldest.sh: Kubernetes $server: cargo test ${tests[*]/#/--test }" >&2
cargo test --locked "${tests[@]/#/--test=}" "$@"
