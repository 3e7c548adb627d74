#!/usr/bin/env bash
# Builds the test cluster's binaries from Go modules into a cache directory keyed by the pinned
# versions (versions.env). A warm cache makes this a no-op. Prints the bin directory on stdout.
# Usage: build.sh [DIR]  DIR holds versions.env, go.mod and go.sum of one Kubernetes minor:
#   hack/cluster (the default) the newest, hack/cluster/oldest the oldest the chart supports.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$(cd "${1:-$here}" && pwd)"
# shellcheck source=versions.env
source "$mod/versions.env"

cache_root="${WCO_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webhook-ca-operator/cluster}"
key="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_r${BUILD_RECIPE}"
bin="$cache_root/$key/bin"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

complete() {
  for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || return 1; done
  [[ -f "$bin/.complete" && -d "$bin/../kwok-stages/node" && -d "$bin/../kwok-stages/pod" ]]
}
if complete; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "build.sh: Go is required to build the test cluster" >&2; exit 1; }
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -trimpath" CGO_ENABLED=0
mkdir -p "$bin"
log() { echo "build.sh: $*" >&2; }

minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
# K8S_EXTRA_LDFLAGS: what an older Kubernetes needs to link with today's Go (see versions.env).
k8s_ldflags="-s -w ${K8S_EXTRA_LDFLAGS:-}"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

cd "$mod"
for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [[ -x "$bin/$t" ]] && continue
  log "building $t ${K8S_VERSION}"
  go build -ldflags "$k8s_ldflags" -o "$bin/$t.tmp" "k8s.io/kubernetes/cmd/$t"
  mv "$bin/$t.tmp" "$bin/$t"
done
if [[ ! -x "$bin/etcd" ]]; then
  log "building etcd ${ETCD_VERSION}"
  go build -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$bin/etcd.tmp" "$bin/etcd"
fi

# kwok and helm carry no replace directives, so `go install` resolves them in their own module graphs.
# They do not depend on the Kubernetes minor: built once into a cache of their own, shared by the
# bin directories of every minor.
shared="$cache_root/kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_r${BUILD_RECIPE}"
mkdir -p "$shared"
gobin_tmp="$(mktemp -d)"
trap 'rm -rf "$gobin_tmp"' EXIT
if [[ ! -x "$shared/kwok" ]]; then
  log "building kwok ${KWOK_VERSION}"
  GOBIN="$gobin_tmp" GOFLAGS="-trimpath" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  mv "$gobin_tmp/kwok" "$shared/kwok"
fi
if [[ ! -x "$shared/helm" ]]; then
  log "building helm ${HELM_VERSION}"
  # Like helm's Makefile: without the client-go minor stamped in, `helm template` and `helm lint`
  # assume Kubernetes v1.20 and refuse charts whose kubeVersion asks for anything newer.
  helm_gomod="$(cd "$gobin_tmp" && GOFLAGS="" go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  helm_k8s_minor="$(awk '$1 == "k8s.io/client-go" { split($2, v, "."); print v[2] }' "$helm_gomod")"
  [[ -n "$helm_k8s_minor" ]] || { log "cannot read helm's client-go version from $helm_gomod"; exit 1; }
  helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${helm_k8s_minor}"
  done
  GOBIN="$gobin_tmp" GOFLAGS="-trimpath" go install -ldflags "$helm_ldflags" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
  mv "$gobin_tmp/helm" "$shared/helm"
fi
cp "$shared/kwok" "$shared/helm" "$bin/"
# kwok v0.8 has no built-in stages: keep the module's own stage files beside the binaries.
stages="$(go env GOMODCACHE)/sigs.k8s.io/kwok@${KWOK_VERSION}/kustomize/stage"
[[ -d "$stages" ]] || { log "kwok's stage files are missing: $stages"; exit 1; }
mkdir -p "$bin/../kwok-stages" && cp -r "$stages/." "$bin/../kwok-stages/" && chmod -R u+w "$bin/../kwok-stages"
touch "$bin/.complete"
echo "$bin"
