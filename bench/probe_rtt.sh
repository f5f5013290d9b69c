#!/usr/bin/env bash
# Benchmark for `sipwatch probe` (issue: SIP probe engine), two parts, written to stdout as Markdown:
#  1. median OPTIONS RTT reported by `sipwatch probe --count N` vs sipsak (-vv "reply received after")
#     against the same Kamailio on loopback, in the same run;
#  2. the UDP retransmission schedule towards a silent port, captured with tshark on lo, compared
#     with RFC 3261's T1, 2*T1, 4*T1 ... capped at T2.
# Usage: bench/probe_rtt.sh [N]      (default N=1000; needs kamailio, sipsak, tshark: tests/install-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
PORT=5090   # sipsak truncates 5-digit ports in its request URI: keep it at 4 digits
tests/install-deps.sh >/dev/null
command -v tshark >/dev/null || { apt-get install -y -q tshark >/dev/null; }
cargo build --release --locked -q
bin="$PWD/target/release/sipwatch"
work="$(mktemp -d)"
trap 'kill $(cat "$work/k.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/k.cfg" <<CFG
#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:$PORT
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
request_route { sl_send_reply("200", "OK"); exit; }
CFG
kamailio -f "$work/k.cfg" -P "$work/k.pid" -w "$work" -m 32 -M 8 -E 2>"$work/k.log"
for _ in $(seq 100); do "$bin" probe --timeout 200ms "sip:127.0.0.1:$PORT" >/dev/null 2>&1 && break; sleep 0.1; done

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# Warm up both, then measure.
"$bin" probe --count 50 --interval 0s "sip:127.0.0.1:$PORT" >/dev/null
for _ in $(seq 50); do sipsak -s "sip:bench@127.0.0.1:$PORT" >/dev/null 2>&1 || true; done

"$bin" probe --json --count "$N" --interval 0s "sip:127.0.0.1:$PORT" \
  | python3 -c 'import sys,json; [print(json.loads(l)["rtt_ms"]) for l in sys.stdin if l.strip()]' > "$work/sipwatch.txt"
: > "$work/sipsak.txt"
for _ in $(seq "$N"); do
  sipsak -vv -s "sip:bench@127.0.0.1:$PORT" 2>/dev/null | sed -n 's/.*reply received after \([0-9.]*\) ms.*/\1/p' | head -1 >> "$work/sipsak.txt"
done
sw=$(median < "$work/sipwatch.txt"); ss=$(median < "$work/sipsak.txt")
sw_n=$(wc -l < "$work/sipwatch.txt"); ss_n=$(wc -l < "$work/sipsak.txt")
diff=$(python3 -c "print(f'{$sw - $ss:+.4f}')")

echo "### OPTIONS RTT on loopback, sipwatch vs sipsak ($(date -u +%F), N=$N)"
echo
echo "| tool | probes answered | median RTT (ms) |"
echo "|---|---|---|"
echo "| sipwatch probe --count $N | $sw_n | $sw |"
echo "| sipsak -vv (one process per probe) | $ss_n | $ss |"
echo
echo "Difference of medians (sipwatch - sipsak): **$diff ms** (goal: within 0.1 ms)."
echo

# Part 2: retransmissions to a silent port, captured on the wire.
python3 - "$work/silent.port" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
s.settimeout(15)
try:
    while True: s.recvfrom(65535)
except Exception: pass
PY
silent_pid=$!
for _ in $(seq 50); do [ -s "$work/silent.port" ] && break; sleep 0.1; done
SP=$(cat "$work/silent.port")
T1=100; T2=800; TF=6000
tshark -i lo -f "udp dst port $SP" -T fields -e frame.time_epoch -a duration:9 -l > "$work/cap.txt" 2>/dev/null &
tshark_pid=$!
sleep 2   # tshark needs a moment to open the capture; the schedule is read from the capture itself
"$bin" probe --json --t1 ${T1}ms --t2 ${T2}ms --timeout ${TF}ms "sip:127.0.0.1:$SP" > "$work/silent.json" || true
wait $tshark_pid || true
kill $silent_pid 2>/dev/null || true
python3 - "$work/cap.txt" "$work/silent.json" $T1 $T2 <<'PY'
import json, sys
times = [float(l) for l in open(sys.argv[1]) if l.strip()]
rep = json.loads(open(sys.argv[2]).read().splitlines()[0])
t1, t2 = int(sys.argv[3]), int(sys.argv[4])
print(f"### UDP retransmissions to a silent port (T1={t1} ms, T2={t2} ms, Timer F=6 s), captured with tshark on lo")
print()
print("| # | sent at (ms) | interval (ms) | RFC 3261 interval (ms) | error (ms) |")
print("|---|---|---|---|---|")
worst = 0.0
expect = t1
for i, t in enumerate(times):
    at = (t - times[0]) * 1e3
    if i == 0:
        print(f"| 0 | 0.0 | - | - | - |")
        continue
    iv = (t - times[i - 1]) * 1e3
    err = iv - expect
    worst = max(worst, abs(err))
    print(f"| {i} | {at:.1f} | {iv:.1f} | {expect} | {err:+.2f} |")
    expect = min(expect * 2, t2)
print()
print(f"Packets on the wire: {len(times)}; sipwatch reported retransmissions={rep['retransmissions']}, result={rep['result']}. "
      f"Largest deviation from the RFC schedule: **{worst:.2f} ms** (goal: within 5 ms).")
PY
