#!/usr/bin/env bash
# Regenerates go.mod and go.sum of the wrapper module from versions.env. k8s.io/kubernetes
# requires its staging modules at v0.0.0 and replaces them with ./staging/... paths that exist
# only in its own repository; this writes one replace per staging module, pointing at the
# published tag v0.<minor>.<patch> that matches K8S_VERSION, then lets `go mod tidy` fill in the rest.
# Usage: gen-gomod.sh [DIR]  the module directory, as for build.sh (default: this one).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$(cd "${1:-$here}" && pwd)"
# shellcheck source=versions.env
source "$mod/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
k8s_gomod="$(cd "$scratch" && GOFLAGS="" go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
[[ -f "$k8s_gomod" ]] || { echo "gen-gomod.sh: no go.mod for k8s.io/kubernetes@${K8S_VERSION}" >&2; exit 1; }
staging_version="v0.${K8S_VERSION#v1.}"
staging="$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$k8s_gomod")"
[[ -n "$staging" ]] || { echo "gen-gomod.sh: no staging replaces in $k8s_gomod" >&2; exit 1; }

# The `tool` directives keep the commands' packages in go.sum (tools.go does the same in this
# directory); they need go 1.24 or newer in the go directive.
go_version="$(printf '%s\n' "$(awk '$1 == "go" { print $2 }' "$k8s_gomod")" 1.24.0 | sort -V | tail -n1)"
{
  sed -n '1,4p' "$here/go.mod" | grep '^//' || true
  echo "module webhook-ca-operator/hack/cluster${mod#"$here"}"
  echo
  echo "go $go_version"
  echo
  echo "tool ("
  echo "	go.etcd.io/etcd/server/v3"
  for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do echo "	k8s.io/kubernetes/cmd/$t"; done
  echo ")"
  echo
  echo "require ("
  echo "	go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
  echo "	k8s.io/kubernetes ${K8S_VERSION}"
  echo ")"
  echo
  echo "replace ("
  for m in $staging; do echo "	$m => $m ${staging_version}"; done
  echo ")"
} >"$scratch/go.mod"
cp "$scratch/go.mod" "$mod/go.mod"
cd "$mod"
go mod tidy
echo "gen-gomod.sh: $(echo "$staging" | wc -l) staging modules replaced at ${staging_version}" >&2
