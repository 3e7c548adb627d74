#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licences (an allow-list matching the tree),
# bans (a second version of a crate fails unless deny.toml names it with its reason) and
# sources (crates.io only). cargo-deny is installed once per version into the cache, from
# crates.io with its own Cargo.lock (--locked); cold: about 4 CPU-minutes.
#
# The advisory database (RustSec) comes from GitHub, which these machines cannot reach, so the
# test command does not check advisories. On a machine with internet access:
#   hack/deny.sh advisories
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

version=0.20.2
cache="${XDG_CACHE_HOME:-$HOME/.cache}/webhook-ca-operator/cargo-deny-$version"
deny="$cache/bin/cargo-deny"
if [[ ! -x "$deny" ]]; then
  printf 'installing cargo-deny %s into %s (once)\n' "$version" "$cache" >&2
  cargo install cargo-deny --version "$version" --locked --root "$cache" >&2
fi

if [[ $# -eq 0 ]]; then
  set -- licenses bans sources
fi
if [[ " $* " == *" advisories "* ]]; then
  # Fetches the advisory database: needs the network.
  exec "$deny" --locked --workspace check "$@"
fi
# cargo-deny reads `cargo metadata`, which wants every crate of the lock file, those of other
# platforms included: cargo fetches them (crates.io), then the check itself runs offline.
cargo fetch --locked --quiet
exec "$deny" --offline --locked --workspace check --hide-inclusion-graph "$@"
