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
    # Built while apt works (a debug build: it only packs files, and builds in half the time).
    echo "installing cargo-deb (cargo install cargo-deb --locked --debug --version 3.8.0)"
    cargo install cargo-deb --locked --debug --version 3.8.0 > /tmp/sipwatch-cargo-deb.log 2>&1 &
    cargo_deb_pid=$!
  fi
fi
finish_cargo_deb() {
  if [ -n "${cargo_deb_pid:-}" ]; then
    if ! wait "$cargo_deb_pid"; then
      cat /tmp/sipwatch-cargo-deb.log >&2
      echo "cargo install cargo-deb failed (log above)" >&2
      exit 1
    fi
    cargo_deb_pid=""
  fi
}
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  finish_cargo_deb
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
finish_cargo_deb
