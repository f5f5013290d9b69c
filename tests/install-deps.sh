#!/usr/bin/env bash
# Installs the Debian packages listed in tests/packages.txt that are missing (apt-get update first),
# or only the packages named as arguments (the demo: tests/install-deps.sh kamailio openssl curl).
# Without arguments it also installs cargo-deb (tests/package_deb.rs builds the .deb with it).
# Idempotent: does nothing when everything is there. Needs root (or sudo).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -gt 0 ]; then
  wanted=("$@")
else
  mapfile -t wanted < <(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$')
  if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb (cargo install cargo-deb --locked --version 3.8.0)"
    cargo install cargo-deb --locked --version 3.8.0
  fi
fi
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
