#!/usr/bin/env bash
# Starts (or stops) the loopback Mosquitto broker that tests, CI, benchmarks and the emulator use.
#
#   bash scripts/mosquitto.sh [start|stop|status]
#
# Port: LEASEDLOCK_MQTT_PORT (default 1883); the broker listens on 127.0.0.1 only. `start` installs
# Mosquitto from Debian's packages if it is missing, runs it in the background with the project's
# config (scripts/mosquitto.conf), waits until the port accepts connections, and does nothing if
# something already listens there. Runtime files live in ${TMPDIR:-/tmp}/leasedlock-mosquitto-PORT.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
port="${LEASEDLOCK_MQTT_PORT:-1883}"
run_dir="${TMPDIR:-/tmp}/leasedlock-mosquitto-${port}"
action="${1:-start}"

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
  echo "mosquitto.sh: installing mosquitto from Debian's packages" >&2
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq mosquitto >/dev/null
}

start() {
  if port_open; then
    echo "mosquitto.sh: 127.0.0.1:${port} already accepts connections; leaving it running" >&2
    return 0
  fi
  local bin
  if ! bin="$(find_mosquitto)"; then
    install_mosquitto
    bin="$(find_mosquitto)"
  fi
  mkdir -p "$run_dir"
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
    echo "mosquitto.sh: stopped the broker on port ${port}" >&2
  else
    echo "mosquitto.sh: no broker started by this script on port ${port}" >&2
  fi
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status)
    if port_open; then echo "listening on 127.0.0.1:${port}"; else echo "not listening on 127.0.0.1:${port}"; exit 1; fi
    ;;
  *)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
