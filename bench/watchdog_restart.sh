#!/usr/bin/env bash
# Benchmark for the restart watchdog (issue: the watchdog), against a real Kamailio with a real
# shared-memory leak (an htable keeping every OPTIONS), restarted by the command method and
# verified by SIP OPTIONS. Two figures, written to stdout as Markdown:
#  1. threshold: seconds from the test seeing the shm pool past the threshold
#     ("kamailio_shm > 60% for 2s", agent interval 1s) to the verified restart in the audit;
#  2. forecast: the detector's time to the limit at the last sample before the restart, i.e. how
#     long before the forecast exhaustion the restart happened (margin 10s, one-minute windows
#     every other minute, detector time constants scaled from hours to seconds).
# Usage: bench/watchdog_restart.sh [N] [M]   (N threshold runs, default 5; M forecast runs, default 1)
# Needs kamailio (tests/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5}"
M="${2:-1}"
cargo test -q -p sipwatch --test watchdog_kamailio --no-run 2>/dev/null
run() {
    cargo test -q -p sipwatch --test watchdog_kamailio "$1" -- --nocapture 2>/dev/null \
        | sed -n "s/^BENCH $2=\([0-9.]*\).*/\1/p"
}
stats() {
    sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "no data"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "median %.2f s, min %.2f s, max %.2f s (%d runs)\n", m, a[1], a[NR], NR}'
}
t=$(for _ in $(seq "$N"); do run threshold_restart threshold_to_verified_restart_seconds; done)
f=$(for _ in $(seq "$M"); do run forecast_restart forecast_restart_before_exhaustion_seconds; done)
echo "| figure | result |"
echo "|---|---|"
echo "| threshold crossing -> verified restart | $(echo "$t" | stats) |"
echo "| forecast restart, time left before the forecast exhaustion | $(echo "$f" | stats) |"
