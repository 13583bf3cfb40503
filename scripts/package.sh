#!/usr/bin/env bash
# Packages every published crate the way `cargo publish` would, and verifies each package by
# building it from its .crate file (unpublished workspace dependencies are resolved from the
# packages made in the same run). The internal crates (tests/*, fuzz: `publish = false`) are
# not packaged.
set -euo pipefail
cd "$(dirname "$0")/.."
published=(
  leasedlock-core
  leasedlock-mqtt-session
  leasedlock-api
  leasedlock-async-std
  leasedlock-tokio
  leasedlock-emulator
  leasedlock-cli
)
# Cargo unpacks the packages it verifies against into its registry cache, in a directory named
# after this run's temporary registry, and never unpacks the same name and version there again:
# a second run from the same checkout would verify against the first run's sources (seen: a
# module added since was "not found"). Forget those unpacked copies first.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/leasedlock-*
args=()
for p in "${published[@]}"; do args+=(-p "$p"); done
cargo package --locked "${args[@]}" "$@"
