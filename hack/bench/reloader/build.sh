#!/usr/bin/env bash
# Builds stakater Reloader, the reference the benchmark runs beside the operator, from its Go
# module at the version pinned by go.mod/go.sum in this directory (a wrapper module: Reloader
# pins a github.com/openshift/api pseudo-version the module proxy no longer serves, replaced
# in go.mod by one that it serves and that builds). Cached under a key made of the Reloader
# version and a hash of this module's files, like hack/image/tools.sh: a warm cache returns at
# once. Prints the binary's path on stdout; exits non-zero (with the reason on stderr) when it
# cannot be built, which hack/bench.sh reports as "Reloader n/a".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

version="$(awk '$1 == "require" && $2 == "github.com/stakater/Reloader" { print $3 }' go.mod)"
[[ -n "$version" ]] || { echo "reloader/build.sh: go.mod names no Reloader version" >&2; exit 1; }
sum="$(cat go.mod tools.go build.sh $(ls go.sum 2>/dev/null) | sha256sum | cut -c1-12)"
cache_root="${WCO_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webhook-ca-operator/bench}"
out="$cache_root/reloader-${version}_${sum}/reloader"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

command -v go >/dev/null || { echo "reloader/build.sh: Go is required to build Reloader" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS="-trimpath" CGO_ENABLED=0
# go.sum is written on the first successful resolution and committed; -mod=mod lets that first
# resolution happen, later builds verify against it.
if [[ ! -f go.sum ]]; then
  go mod tidy >&2 || { echo "reloader/build.sh: cannot resolve Reloader $version from the module proxy" >&2; exit 1; }
fi
mkdir -p "$(dirname "$out")"
echo "reloader/build.sh: building Reloader $version" >&2
go build -mod=readonly -ldflags "-s -w" -o "$out.tmp" github.com/stakater/Reloader
mv "$out.tmp" "$out"
echo "$out"
