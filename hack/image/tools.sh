#!/usr/bin/env bash
# Builds the image tooling from Go modules: go-containerregistry's crane and wco-image (main.go
# here), pinned by go.mod/go.sum in this directory. Cached under a key made of the
# go-containerregistry version and a hash of this module's files, so a warm cache makes this a
# no-op and any change rebuilds. Prints the bin directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

ggcr="$(awk '$1 == "github.com/google/go-containerregistry" { print $2 }' go.mod)"
[[ -n "$ggcr" ]] || { echo "tools.sh: go.mod names no go-containerregistry version" >&2; exit 1; }
sum="$(cat go.mod go.sum main.go tools.sh | sha256sum | cut -c1-12)"
cache_root="${WCO_IMAGE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webhook-ca-operator/image-tools}"
bin="$cache_root/ggcr-${ggcr}_${sum}/bin"
if [[ -x "$bin/crane" && -x "$bin/wco-image" ]]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "tools.sh: Go is required to build the image tooling" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath" CGO_ENABLED=0
mkdir -p "$bin"
echo "tools.sh: building crane ${ggcr} and wco-image" >&2
go build -ldflags "-s -w" -o "$bin/crane.tmp" github.com/google/go-containerregistry/cmd/crane
go build -ldflags "-s -w" -o "$bin/wco-image.tmp" .
mv "$bin/crane.tmp" "$bin/crane"
mv "$bin/wco-image.tmp" "$bin/wco-image"
echo "$bin"
