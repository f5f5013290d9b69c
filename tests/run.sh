#!/usr/bin/env bash
# The test command: installs what the tests need (tests/install-deps.sh), then runs every test of
# the workspace against the real Kamailio, SIPp, dnsmasq, SMTP server and Alertmanager.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
cargo test --workspace --locked --no-fail-fast "$@"
