#!/usr/bin/env bash
# Install the Debian packages formcheck needs, only those missing. Idempotent.
# Uses apt-get directly as root, through sudo when that works without a prompt,
# and otherwise says exactly what to install.
#   deploy/system-packages.sh        what `make demo` and the services need
#   deploy/system-packages.sh test   what only the test suite needs (the emulated Raspberry Pi)
set -euo pipefail

if [ "${1:-}" = "test" ]; then
  packages=(qemu-user-static mmdebstrap)
else
  packages=(mosquitto mosquitto-clients influxdb openssl python3-venv python3-dev libgl1 libglib2.0-0)
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "formcheck: missing Debian packages: ${missing[*]}" >&2
  echo "formcheck: install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "formcheck: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
