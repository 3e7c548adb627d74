#!/usr/bin/env bash
# Checks the Helm chart's alerting rules with promtool: renders the chart's PrometheusRule,
# `promtool check rules` on its spec, and `promtool test rules` with alerts-test.yaml (each alert
# firing, and not firing, on made-up series). Also checks that the chart renders no
# PrometheusRule unless prometheusRule.enabled. hack/test.sh runs it; quick once promtool (build.sh)
# and helm (hack/cluster/build.sh) are cached.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

promtool="${PROMTOOL:-$(hack/promtool/build.sh)}"
helm="${HELM:-$(hack/cluster/build.sh)/helm}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# Keep helm's config, cache and data out of $HOME; `helm template` of a local chart needs none.
export HELM_CONFIG_HOME="$scratch/helm" HELM_CACHE_HOME="$scratch/helm" HELM_DATA_HOME="$scratch/helm"
chart=charts/webhook-ca-operator

if "$helm" template webhook-ca-operator "$chart" --namespace webhook-ca-operator |
  grep -q '^kind: PrometheusRule$'; then
  echo "check.sh: the chart renders a PrometheusRule with its default values (prometheusRule.enabled is false)" >&2
  exit 1
fi

"$helm" template webhook-ca-operator "$chart" --namespace webhook-ca-operator \
  --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml >"$scratch/rendered.yaml"
# promtool reads a rules file, which is the PrometheusRule's spec: every line below `spec:`,
# de-indented by two spaces.
awk 'found { sub(/^  /, ""); print } /^spec:$/ { found = 1 }' "$scratch/rendered.yaml" >"$scratch/rules.yaml"
grep -q '^groups:' "$scratch/rules.yaml" || {
  echo "check.sh: no groups under spec: in the rendered PrometheusRule" >&2
  cat "$scratch/rendered.yaml" >&2
  exit 1
}

echo "check.sh: $("$promtool" --version 2>&1 | head -n1)" >&2
"$promtool" check rules "$scratch/rules.yaml"
cp "$here/alerts-test.yaml" "$scratch/alerts-test.yaml"
(cd "$scratch" && "$promtool" test rules alerts-test.yaml)
