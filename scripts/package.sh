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
args=()
for p in "${published[@]}"; do args+=(-p "$p"); done
cargo package --locked "${args[@]}" "$@"
