#!/usr/bin/env bash
# Builds promtool from Go modules, pinned by go.mod/go.sum in this directory (Prometheus's Go
# module v0.3XX.Y is Prometheus 3.XX.Y). Cached under a key made of that version and a hash of
# this module's files, so a warm cache makes this a no-op and any change rebuilds. Prints the
# path of the promtool binary on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

module="$(awk '$1 == "require" && $2 == "github.com/prometheus/prometheus" { print $3 }' go.mod)"
[[ -n "$module" ]] || { echo "build.sh: go.mod names no github.com/prometheus/prometheus version" >&2; exit 1; }
# v0.316.0 -> 3.16.0
release="$(sed -E 's/^v0\.3([0-9]{2})\.([0-9]+)$/3.\1.\2/; s/^3\.0([0-9])/3.\1/' <<<"$module")"
sum="$(cat go.mod go.sum tools.go build.sh | sha256sum | cut -c1-12)"
cache_root="${WCO_PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webhook-ca-operator/promtool}"
out="$cache_root/prometheus-${release}_${sum}/promtool"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: Go is required to build promtool" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath" CGO_ENABLED=0
mkdir -p "$(dirname "$out")"
echo "build.sh: building promtool ${release} (first use; several minutes)" >&2
# Stamped like Prometheus's own release builds, so that `promtool --version` names the release.
go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=${release} \
  -X github.com/prometheus/common/version.Branch=module -X github.com/prometheus/common/version.Revision=${module}" \
  -o "$out.tmp" github.com/prometheus/prometheus/cmd/promtool
mv "$out.tmp" "$out"
echo "$out"
