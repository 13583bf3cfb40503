#!/usr/bin/env bash
# The project's test command: installs what the tests need (scripts/deps.sh), starts a private
# Mosquitto on a free loopback port, exports it to every test as LEASEDLOCK_TEST_BROKER
# (host:port), runs every test in the workspace (or, given arguments, `cargo test ARGS`: e.g.
# `-p leasedlock-async-std-e2e`), and stops the broker on exit. A broker or a `leasedlock serve` already on 1883 is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

LEASEDLOCK_TEST_BROKER="$(bash scripts/mosquitto.sh start-free)"
export LEASEDLOCK_TEST_BROKER
trap 'bash scripts/mosquitto.sh stop' EXIT
echo "test.sh: test broker at ${LEASEDLOCK_TEST_BROKER}" >&2

if [ "$#" -eq 0 ]; then
  set -- --workspace
fi
cargo test "$@"
