#!/usr/bin/env bash
# Starts (or stops) the loopback Mosquitto broker that tests, CI, benchmarks and the emulator use.
#
#   bash scripts/mosquitto.sh [start|start-free|stop|status]
#
# Address: LEASEDLOCK_TEST_BROKER (127.0.0.1:PORT, default 127.0.0.1:1883), the variable the tests
# read; the broker listens on 127.0.0.1 only. `start` installs Mosquitto from Debian's packages if
# it is missing, runs it in the background with the project's config (scripts/mosquitto.conf),
# waits until the port accepts connections, and does nothing if something already listens there.
# `start-free` starts one on a free port instead and prints its address (for
# LEASEDLOCK_TEST_BROKER); `stop` with that address stops it. Runtime files live in
# ${TMPDIR:-/tmp}/leasedlock-mosquitto-PORT.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
address="${LEASEDLOCK_TEST_BROKER:-127.0.0.1:1883}"
port="${address##*:}"
case "$port" in
  '' | *[!0-9]*)
    echo "mosquitto.sh: LEASEDLOCK_TEST_BROKER must be 127.0.0.1:PORT, not ${address}" >&2
    exit 2
    ;;
esac
action="${1:-start}"
set_port() {
  port="$1"
  run_dir="${TMPDIR:-/tmp}/leasedlock-mosquitto-${port}"
}
set_port "$port"

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
}

find_mosquitto() {
  if command -v mosquitto >/dev/null 2>&1; then
    command -v mosquitto
  elif [ -x /usr/sbin/mosquitto ]; then
    echo /usr/sbin/mosquitto
  else
    return 1
  fi
}

install_mosquitto() {
  bash "$here/deps.sh" >&2
}

start() {
  if port_open; then
    echo "mosquitto.sh: 127.0.0.1:${port} already accepts connections; leaving it running" >&2
    return 0
  fi
  launch
}

# Starts a broker on a free port and prints its address. A port found closed may be taken before
# Mosquitto binds it; then Mosquitto exits and the next candidate is tried.
start_free() {
  local tries
  for tries in $(seq 1 20); do
    set_port $((20000 + RANDOM % 40000))
    port_open && continue
    if launch; then
      echo "127.0.0.1:${port}"
      return 0
    fi
  done
  echo "mosquitto.sh: no free port found in ${tries} tries" >&2
  return 1
}

launch() {
  local bin
  if ! bin="$(find_mosquitto)"; then
    install_mosquitto
    bin="$(find_mosquitto)"
  fi
  mkdir -p "$run_dir"
  : >"$run_dir/mosquitto.log"
  {
    cat "$here/mosquitto.conf"
    echo
    echo "listener ${port} 127.0.0.1"
  } >"$run_dir/mosquitto.conf"
  # The shell opens the log as the current user, so the broker may drop privileges freely.
  nohup "$bin" -c "$run_dir/mosquitto.conf" >>"$run_dir/mosquitto.log" 2>&1 </dev/null &
  echo $! >"$run_dir/mosquitto.pid"
  for _ in $(seq 1 100); do
    if port_open; then
      echo "mosquitto.sh: mosquitto listening on 127.0.0.1:${port} (pid $(cat "$run_dir/mosquitto.pid"))" >&2
      return 0
    fi
    if ! kill -0 "$(cat "$run_dir/mosquitto.pid")" 2>/dev/null; then
      echo "mosquitto.sh: mosquitto exited; its log follows" >&2
      cat "$run_dir/mosquitto.log" >&2
      rm -f "$run_dir/mosquitto.pid"
      return 1
    fi
    sleep 0.1
  done
  echo "mosquitto.sh: 127.0.0.1:${port} did not open within 10 s" >&2
  return 1
}

stop() {
  if [ -f "$run_dir/mosquitto.pid" ]; then
    local pid
    pid="$(cat "$run_dir/mosquitto.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
    rm -f "$run_dir/mosquitto.pid"
    rm -rf "$run_dir"
    echo "mosquitto.sh: stopped the broker on port ${port}" >&2
  else
    echo "mosquitto.sh: no broker started by this script on port ${port}" >&2
  fi
}

case "$action" in
  start) start ;;
  start-free) start_free ;;
  stop) stop ;;
  status)
    if port_open; then echo "listening on 127.0.0.1:${port}"; else echo "not listening on 127.0.0.1:${port}"; exit 1; fi
    ;;
  *)
    echo "usage: $0 [start|start-free|stop|status]" >&2
    exit 2
    ;;
esac
