#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licences, bans (duplicate major versions,
# each one named and justified there) and sources (crates.io only). cargo-deny is installed once
# per version into the cache, from crates.io with its own Cargo.lock (--locked).
#
# The advisory database (RustSec) is fetched from GitHub, which these machines cannot reach, so
# the test command does not check advisories. On a machine with internet access:
#   hack/deny.sh advisories
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

version=0.20.2
cache="${XDG_CACHE_HOME:-$HOME/.cache}/webhook-ca-operator/cargo-deny-$version"
deny="$cache/bin/cargo-deny"
if [[ ! -x "$deny" ]]; then
  printf 'installing cargo-deny %s into %s (once; a few minutes on two cores)\n' "$version" "$cache" >&2
  cargo install cargo-deny --version "$version" --locked --root "$cache" >&2
fi

if [[ $# -eq 0 ]]; then
  set -- licenses bans sources
fi
if [[ " $* " == *" advisories "* ]]; then
  exec "$deny" --all-features check "$@"
fi
# --offline: the crates index and sources are only read from the local cargo cache.
exec "$deny" --offline --all-features check "$@"
