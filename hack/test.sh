#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, rustdoc, generated-file drift, unit tests, and
# the tests against a real Kubernetes control plane (built from Go modules on first use, cached).
# This is the README's test command and what CI runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo doc --no-deps, warnings denied (broken intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked

step "supply chain: cargo deny check licenses bans sources (advisories: hack/deny.sh advisories, needs the network)"
hack/deny.sh

step "test cluster binaries (cached by version)"
bin="$(hack/cluster/build.sh)"
export WCO_CLUSTER_BIN="$bin"

step "the chart's alerting rules: promtool check rules and test rules (built once, cached)"
HELM="$bin/helm" hack/promtool/check.sh

# One control plane for every test binary of this run: each test gets its own namespace in it.
cluster_dir="$root/target/test-cluster/test-run"
step "starting the test cluster in $cluster_dir"
hack/cluster/down.sh "$cluster_dir" >/dev/null 2>&1 || true
trap 'hack/cluster/down.sh "$cluster_dir" >&2 || true' EXIT
hack/cluster/up.sh --dir "$cluster_dir" --owner-pid $$ >&2
export WCO_TEST_KUBECONFIG="$cluster_dir/kubeconfig"

step "cargo test"
cargo test --all-targets --locked "$@"

step "container image: hack/image.sh builds it, hack/image/test.sh proves it"
hack/image.sh >/dev/null
hack/image/test.sh

step "the cluster tests on the oldest supported Kubernetes: hack/cluster/test-oldest.sh"
hack/cluster/test-oldest.sh
