#!/usr/bin/env bash
# Installs the system packages the build and the tests need, when one is missing: Mosquitto (the
# test broker), and libssl-dev + pkg-config (the official SDK used as an interop peer links
# OpenSSL). Debian/Ubuntu; as root, or through sudo otherwise.
set -euo pipefail

missing=()
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  missing+=(mosquitto)
fi
# `dpkg -s` succeeds for a removed package whose configuration files remain: ask for the state.
installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}
for pkg in libssl-dev pkg-config; do
  installed "$pkg" || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "deps.sh: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "deps.sh: installing ${missing[*]} from Debian's packages" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
