#!/usr/bin/env bash
# Builds the .deb packages of `fleethub` (the server) and `fleetedge` (the edge runtime) with
# cargo-deb, from the [package.metadata.deb] tables of crates/fleethub-server and
# crates/fleetedge (units, maintainer scripts and the default config in packaging/deb/).
# docs/operations.md ("Packages") describes what the packages install.
#
#   ./scripts/package.sh              both packages
#   ./scripts/package.sh fleethub     one of them (fleethub | fleetedge)
#
# Output: $CARGO_TARGET_DIR/debian/*.deb (default target/debian). Needs a release build
# (several minutes); installs cargo-deb with `cargo install` when it is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if ! cargo deb --version >/dev/null 2>&1; then
  echo "==> cargo-deb is missing: cargo install cargo-deb --locked"
  cargo install cargo-deb --locked
fi

packages=("$@")
[[ ${#packages[@]} -eq 0 ]] && packages=(fleethub fleetedge)
for p in "${packages[@]}"; do
  case $p in
    fleethub) crate=fleethub-server ;;
    fleetedge) crate=fleetedge ;;
    *) echo "unknown package '$p' (fleethub | fleetedge)" >&2; exit 2 ;;
  esac
  echo "==> $p (cargo deb -p $crate)"
  cargo deb -p "$crate" --locked
done
ls -l "${CARGO_TARGET_DIR:-$ROOT/target}"/debian/*.deb
