#!/usr/bin/env bash
# Builds the operator's container image without a container engine, reproducibly:
#   1. a static binary: `cargo build --release --target x86_64-unknown-linux-musl` (installs the
#      rustup target, and Debian's musl-tools for the C that aws-lc-sys compiles, when missing);
#   2. the image, assembled by hack/image/main.go with go-containerregistry (hack/image/tools.sh):
#      one layer with the binary, Mozilla's CA roots and /etc/passwd; entrypoint the binary, user
#      65532:65532, no shell, OCI labels; every timestamp the last commit's time
#      (SOURCE_DATE_EPOCH overrides), so the same commit gives the same digest.
# Writes OUT/oci (an OCI image layout), OUT/webhook-ca-operator.tar (for `docker load` or
# `podman load`) and OUT/digest; prints the digest. OUT defaults to target/image.
# Push with crane: `crane push target/image/oci REGISTRY/webhook-ca-operator:VERSION`.
#
# Usage: hack/image.sh [--out DIR]
# Environment: IMAGE_REPOSITORY (default ghcr.io/webhook-ca-operator/webhook-ca-operator),
#              IMAGE_SOURCE (the org.opencontainers.image.source label), SOURCE_DATE_EPOCH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

out="$root/target/image"
case "${1:-}" in
  --out) out="${2:?--out wants a directory}" ;;
  "") ;;
  *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
esac
log() { echo "image.sh: $*" >&2; }
target=x86_64-unknown-linux-musl

if ! rustup target list --installed | grep -qx "$target"; then
  log "adding the rustup target $target"
  rustup target add "$target" >&2
fi
# aws-lc-sys (rustls' crypto) compiles C; for musl the cc crate uses musl-gcc.
if ! command -v musl-gcc >/dev/null; then
  log "installing musl-tools (musl-gcc)"
  command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]] ||
    { log "musl-gcc is missing: install Debian's musl-tools (or your distribution's musl-gcc)"; exit 1; }
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >&2
fi

# Stripped, and with the checkout and cargo home mapped to fixed names, so that the binary does
# not depend on where the source was cloned.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export CARGO_PROFILE_RELEASE_STRIP=symbols
export RUSTFLAGS="--remap-path-prefix=$root=/src --remap-path-prefix=$cargo_home=/cargo"
log "cargo build --release --target $target"
cargo build --release --locked --target "$target" --bin webhook-ca-operator >&2
binary="$root/target/$target/release/webhook-ca-operator"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
revision="$(git rev-parse HEAD)"
git diff --quiet HEAD -- || revision+="-dirty"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"

tools="$(hack/image/tools.sh)"
mkdir -p "$out"
digest="$("$tools/wco-image" assemble --binary "$binary" --out "$out/oci" \
  --tarball "$out/webhook-ca-operator.tar" \
  --repository "${IMAGE_REPOSITORY:-ghcr.io/webhook-ca-operator/webhook-ca-operator}" \
  --version "$version" --revision "$revision" --epoch "$epoch" \
  --source "${IMAGE_SOURCE:-https://github.com/webhook-ca-operator/webhook-ca-operator}")"
echo "$digest" >"$out/digest"
log "image $version $digest in $out/oci"
echo "$digest"
