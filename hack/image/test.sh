#!/usr/bin/env bash
# Proves the image that hack/image.sh built, not just its recipe (part of hack/test.sh):
#   - a second hack/image.sh run gives the same digest (cargo's build is current by then: this
#     proves the assembly deterministic, not a cold rebuild of the binary);
#   - pushed to a registry on loopback (`crane registry serve`), it is pulled back by digest and
#     its filesystem exported from there;
#   - its config: user 65532:65532, entrypoint the binary, the OCI labels, the fixed timestamp;
#   - its filesystem holds exactly the binary, the CA roots, /etc/passwd, /etc/group and /tmp:
#     no shell; the binary is static (no ELF interpreter, no shared library);
#   - the binary runs from that filesystem (chroot, as 65532): `--version`, `crd`;
#   - with no CA named it verifies against the image's roots: an HTTPS server whose CA is not
#     among them is refused for an unknown issuer, and accepted once its CA is added to them;
#   - the chart's default image tag is the version the image carries.
# Prints the image's digest and sizes. Needs root (chroot) or unprivileged user namespaces.
# Usage: hack/image/test.sh [IMAGE_DIR]  (default target/image, the output of hack/image.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
image_dir="${1:-$root/target/image}"

tools="$(hack/image/tools.sh)"
crane="$tools/crane"
work="$(mktemp -d)"
registry_pid="" fixture_pid=""
cleanup() {
  local pid
  for pid in $fixture_pid $registry_pid; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
checks=0
ok() { checks=$((checks + 1)); echo "image test: ok: $*" >&2; }
fail() { echo "image test: FAILED: $*" >&2; exit 1; }

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
digest="$(cat "$image_dir/digest")"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || fail "no digest in $image_dir/digest"

# Reproducible: the same commit assembled again gives the same bytes.
again="$(hack/image.sh --out "$work/again" 2>"$work/again.log")" || { cat "$work/again.log" >&2; fail "second build"; }
[[ "$again" == "$digest" ]] || fail "two builds differ: $digest and $again"
ok "two builds give the same digest $digest"

# A registry on loopback; crane prints the port it chose.
"$crane" registry serve --address 127.0.0.1:0 2>"$work/registry.log" &
registry_pid=$!
for _ in $(seq 100); do
  port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log")"
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "$port" ]] || { cat "$work/registry.log" >&2; fail "crane registry serve did not start"; }
repo="127.0.0.1:$port/webhook-ca-operator"

pushed="$("$crane" push "$image_dir/oci" "$repo:$version")"
[[ "$pushed" == "$repo@$digest" ]] || fail "push answered $pushed, want $repo@$digest"
[[ "$("$crane" digest "$repo:$version")" == "$digest" ]] || fail "the tag does not resolve to $digest"
"$crane" pull --format oci "$repo@$digest" "$work/pulled"
grep -qE "\"digest\": *\"$digest\"" "$work/pulled/index.json" || fail "pulled layout is not $digest"
ok "pushed to $repo, tag resolves and pull by digest gives $digest back"

# The config, as the registry serves it (compact JSON written by go-containerregistry).
config="$("$crane" config "$repo@$digest")"
epoch="$(git log -1 --format=%ct)"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
revision="$(git rev-parse HEAD)"
for want in '"User":"65532:65532"' \
  '"Entrypoint":["/usr/local/bin/webhook-ca-operator"]' \
  '"Cmd":["run"]' '"architecture":"amd64"' '"os":"linux"' \
  "\"created\":\"$created\"" \
  "\"org.opencontainers.image.version\":\"$version\"" \
  "\"org.opencontainers.image.revision\":\"$revision" \
  '"org.opencontainers.image.licenses":"Apache-2.0"' \
  '"org.opencontainers.image.source":"https://'; do
  [[ "$config" == *"$want"* ]] || fail "config lacks $want: $config"
done
[[ "$config" != *Shell* && "$config" != *'"Volumes"'* ]] || fail "config has a shell or volumes: $config"
ok "config: user 65532:65532, entrypoint the binary, OCI labels, created $created"

# The filesystem, exported from the registry by digest.
rootfs="$work/rootfs"
mkdir -p "$rootfs"
"$crane" export "$repo@$digest" "$work/fs.tar"
tar -tf "$work/fs.tar" | sed 's|/$||' | sort >"$work/files"
printf '%s\n' etc etc/group etc/passwd etc/ssl etc/ssl/certs etc/ssl/certs/ca-certificates.crt \
  tmp usr usr/local usr/local/bin usr/local/bin/webhook-ca-operator | sort >"$work/want-files"
diff -u "$work/want-files" "$work/files" >&2 || fail "the image's files differ from the list above"
tar -xf "$work/fs.tar" -C "$rootfs"
ok "filesystem: the binary, CA roots, passwd, group, /tmp and nothing else (no shell)"

binary="$rootfs/usr/local/bin/webhook-ca-operator"
readelf -lW "$binary" >"$work/phdrs"
grep -q 'Elf file type is' "$work/phdrs" || fail "the binary is not an ELF file"
! grep -q 'INTERP' "$work/phdrs" || fail "the binary asks for a dynamic loader"
! readelf -dW "$binary" | grep -q '(NEEDED)' || fail "the binary needs shared libraries"
ok "the binary is static: no ELF interpreter, no shared library"

# Run it from the image's filesystem, as the image's user, with an empty environment.
in_image() {
  local dir="$1"; shift
  if [[ "$(id -u)" == 0 ]]; then
    env -i "$@" "$(command -v chroot)" --userspec=65532:65532 "$dir" /usr/local/bin/webhook-ca-operator "${cli_args[@]}"
  else
    env -i "$@" "$(command -v unshare)" --user --map-root-user --root="$dir" /usr/local/bin/webhook-ca-operator "${cli_args[@]}"
  fi
}
cli_args=(--version)
[[ "$(in_image "$rootfs")" == "webhook-ca-operator $version" ]] || fail "--version from the image"
cli_args=(crd)
in_image "$rootfs" >"$work/crd.yaml" || fail "crd from the image"
cmp -s "$work/crd.yaml" crds/webhookcacertificates.yaml || fail "crd from the image differs from crds/"
ok "runs from the image's filesystem as 65532: --version, crd"

roots="$(grep -c 'BEGIN CERTIFICATE' "$rootfs/etc/ssl/certs/ca-certificates.crt")"
((roots >= 100)) || fail "only $roots CA roots in the image"
exec 3> >(exec "$tools/wco-image" https-fixture --dir "$work")
fixture_pid=$!
for _ in $(seq 100); do [[ -s "$work/addr" ]] && break; sleep 0.1; done
[[ -s "$work/addr" ]] || fail "the HTTPS fixture did not start"
cli_args=(api --url "https://$(cat "$work/addr")" health)
if in_image "$rootfs" WA_API_TOKEN=t >"$work/api.out" 2>"$work/api.err"; then
  fail "the image trusted a CA it does not ship"
fi
grep -qi 'issuer' "$work/api.err" || { cat "$work/api.err" >&2; fail "not refused for an unknown issuer"; }
cp -a "$rootfs" "$work/rootfs-ca"
cat "$work/ca.pem" >>"$work/rootfs-ca/etc/ssl/certs/ca-certificates.crt"
in_image "$work/rootfs-ca" WA_API_TOKEN=t >"$work/api.out" 2>"$work/api.err" ||
  { cat "$work/api.err" >&2; fail "refused the fixture once its CA is among the image's roots"; }
grep -q 'gateway_status: connected' "$work/api.out" || fail "health answer: $(cat "$work/api.out")"
exec 3>&-
ok "verifies with the image's $roots CA roots at /etc/ssl/certs/ca-certificates.crt"

helm="${WCO_CLUSTER_BIN:-$(hack/cluster/build.sh)}/helm"
image="$("$helm" template wco charts/webhook-ca-operator | sed -n 's/^ *image: "\(.*\)"$/\1/p')"
[[ "$image" == "ghcr.io/webhook-ca-operator/webhook-ca-operator:$version" ]] ||
  fail "the chart's default image is $image; the image built is $version"
grep -qE "\"org.opencontainers.image.ref.name\": *\"$version\"" "$image_dir/oci/index.json" ||
  fail "the OCI layout is not tagged $version"
ok "the chart's default image tag is $version, the image's version"

size="$("$crane" manifest "$repo@$digest" | grep -o '"size":[0-9]*' | cut -d: -f2 | paste -sd+ | bc)"
echo "image test: all $checks checks passed; image $version $digest:" \
  "$size bytes compressed (config + layer), $(du -b "$work/fs.tar" | cut -f1) bytes unpacked," \
  "binary $(stat -c %s "$binary") bytes" >&2
