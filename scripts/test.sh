#!/usr/bin/env bash
# The project's test command: starts the loopback Mosquitto the end-to-end tests need (installing
# it from Debian's packages if missing), then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/mosquitto.sh ] || [ -f scripts/mosquitto.sh ]; then
  bash scripts/mosquitto.sh start
fi
cargo test --workspace "$@"
