#!/usr/bin/env bash
# Install the Debian packages formcheck needs, only those missing. Idempotent.
# Uses apt-get directly as root, through sudo when that works without a prompt,
# and otherwise says exactly what to install.
#   deploy/system-packages.sh base     the virtualenv and OpenCV's libraries: every machine, edge nodes too
#   deploy/system-packages.sh server   the broker and the database `make demo` and the tests run (never on a node:
#                                      Debian's influxdb listens on :8086 without authentication)
#   deploy/system-packages.sh test     what only the test suite needs (the emulated Raspberry Pi, a Compose
#                                      implementation that validates docker-compose.yml, Chromium for the pages,
#                                      poppler's pdftoppm to render the printable QR sheet)
#   deploy/system-packages.sh web      Node.js and npm: `make web` bundles the member and station pages
#   deploy/system-packages.sh --list MODE   print that set, install nothing
set -euo pipefail

packages_for() {
  case "$1" in
    base) echo "python3-venv python3-dev libgl1 libglib2.0-0" ;;
    server) echo "mosquitto mosquitto-clients influxdb openssl" ;;
    test) echo "qemu-user-static mmdebstrap docker-compose chromium poppler-utils" ;;
    web) echo "nodejs npm" ;;
    *) echo "formcheck: unknown package set '$1' (base, server, test, web)" >&2; exit 2 ;;
  esac
}

if [ "${1:-}" = "--list" ]; then
  packages_for "${2:-base}"
  exit 0
fi
read -r -a packages <<< "$(packages_for "${1:-base}")"
missing=()
for pkg in "${packages[@]}"; do
  # A Node.js from elsewhere (e.g. NodeSource's, which bundles npm and conflicts with Debian's npm) is used as it is.
  case "$pkg" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
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
