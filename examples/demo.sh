#!/usr/bin/env bash
# The main job against something real: installs Kamailio (if missing), starts it on loopback with
# UDP, TCP and TLS listeners and digest auth, then probes it with sipwatch the way on-call would.
#
# Then it runs the prober daemon against two Kamailio instances (a group with a quorum) and the
# node agent watching the first Kamailio's memory, and prints where to look.
#
#   examples/demo.sh                  # run ~30 s, print what sipwatch sees, stop everything
#   DEMO_SECONDS=600 examples/demo.sh # keep the daemon and agent up longer (open the status page)
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what the demo runs: Kamailio (with TLS), openssl for the certificates, curl and python3 to
# read the daemon's JSON. The tests need more (tests/packages.txt); the demo does not.
echo "== installing what the demo needs (if missing): kamailio kamailio-tls-modules openssl curl python3"
tests/install-deps.sh kamailio kamailio-tls-modules openssl curl python3
echo "== building sipwatch (cargo build --release; the first build compiles every dependency and"
echo "   takes several minutes on a small machine, later runs take seconds)"
cargo build --release --locked
bin="$PWD/target/release/sipwatch"
DEMO_DIR="${DEMO_DIR:-/tmp/sipwatch-demo}"
PORT="${PORT:-25060}"
mkdir -p "$DEMO_DIR"
cd "$DEMO_DIR"

# A private CA and a server certificate signed by it, for the TLS listener.
if [ ! -f server.pem ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=sipwatch demo CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
    -extfile server.ext -out server.pem 2>/dev/null
fi
cat > tls.cfg <<TLS
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = $DEMO_DIR/server.key
certificate = $DEMO_DIR/server.pem
TLS
cat > kamailio.cfg <<CFG
#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
tcp_children=2
auto_aliases=no
enable_tls=yes
listen=udp:127.0.0.1:$PORT
listen=tcp:127.0.0.1:$PORT
listen=tls:127.0.0.1:$((PORT + 1))
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tls.so"
modparam("tls", "config", "$DEMO_DIR/tls.cfg")
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
loadmodule "kex.so"
modparam("jsonrpcs", "transport", 1)
event_route[xhttp:request] {
  if (\$hu =~ "^/RPC") { jsonrpc_dispatch(); } else { xhttp_reply("404", "Not Found", "text/plain", ""); }
}
request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (is_method("OPTIONS")) { sl_send_reply("200", "OK"); exit; }
  if (is_method("REGISTER")) {
    if (!pv_www_authenticate("\$td", "demo-secret", "0")) { www_challenge("\$td", "1"); exit; }
    save("location");
    exit;
  }
  sl_send_reply("404", "Not here");
}
CFG
if [ -f kamailio.pid ] && kill -0 "$(cat kamailio.pid)" 2>/dev/null; then
  kill "$(cat kamailio.pid)"; while kill -0 "$(cat kamailio.pid)" 2>/dev/null; do sleep 0.1; done
fi
kamailio -f kamailio.cfg -P kamailio.pid -w "$DEMO_DIR" -m 64 -M 8 -E 2>kamailio.log \
  || { echo "kamailio failed to start; see $DEMO_DIR/kamailio.log" >&2; exit 1; }
# A second Kamailio, same config on the next ports, so the daemon has a group of two.
sed -e "s/:$PORT\$/:$((PORT + 10))/" -e "s/:$((PORT + 1))\$/:$((PORT + 11))/" kamailio.cfg > kamailio2.cfg
if [ -f kamailio2.pid ] && kill -0 "$(cat kamailio2.pid)" 2>/dev/null; then
  kill "$(cat kamailio2.pid)"; while kill -0 "$(cat kamailio2.pid)" 2>/dev/null; do sleep 0.1; done
fi
kamailio -f kamailio2.cfg -P kamailio2.pid -w "$DEMO_DIR" -m 64 -M 8 -E 2>kamailio2.log \
  || { echo "kamailio failed to start; see $DEMO_DIR/kamailio2.log" >&2; exit 1; }
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in kamailio.pid kamailio2.pid; do kill "$(cat "$DEMO_DIR/$f")" 2>/dev/null || true; done
}
trap stop EXIT
for _ in $(seq 100); do "$bin" probe --timeout 200ms "sip:127.0.0.1:$PORT" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== Kamailio is running on 127.0.0.1:$PORT (udp/tcp) and :$((PORT + 1)) (tls); log: $DEMO_DIR/kamailio.log"
echo "== OPTIONS over UDP, TCP and TLS:"
"$bin" probe --ca ca.pem "sip:127.0.0.1:$PORT" "sip:127.0.0.1:$PORT;transport=tcp" "sips:127.0.0.1:$((PORT + 1))" || true
echo "== REGISTER with digest auth (password from SIPWATCH_PASSWORD, never printed):"
SIPWATCH_PASSWORD=demo-secret "$bin" probe -m register -u alice "sip:127.0.0.1:$PORT" || true
echo "== REGISTER with a wrong password (exit 2, CRITICAL):"
SIPWATCH_PASSWORD=wrong "$bin" probe -m register -u alice "sip:127.0.0.1:$PORT" || echo "exit code $?"
echo "== ping-style, 5 rounds, JSON for scripts on the last one:"
"$bin" probe --count 5 --interval 200ms "sip:127.0.0.1:$PORT" || true
"$bin" probe --json "sip:127.0.0.1:$PORT" || true

echo "== the prober daemon and the node agent:"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > agent.token
cat > sipwatch.toml <<TOML
[http]
listen = "127.0.0.1:8479"
[store]
path = "$DEMO_DIR/state.db"
[defaults]
interval = "2s"
timeout = "1s"
[status]
page_name = "sipwatch demo"
[agents]
token_file = "$DEMO_DIR/agent.token"
[[group]]
name = "frontends"
min_up = 1
[[target]]
name = "kamailio-1"
uri = "sip:127.0.0.1:$PORT"
group = "frontends"
[[target]]
name = "kamailio-2"
uri = "sip:127.0.0.1:$((PORT + 10));transport=tcp"
group = "frontends"
[[target]]
name = "kamailio-1-tls"
uri = "sips:127.0.0.1:$((PORT + 1))"
ca = "$DEMO_DIR/ca.pem"
[[target]]
name = "kamailio-1-register"
uri = "sip:127.0.0.1:$PORT"
probe = "register"
username = "alice"
password = "demo-secret"
interval = "4s"
timeout = "2s"
TOML
cat > agent.toml <<TOML
[agent]
listen = "127.0.0.1:9198"
interval = "2s"
state_dir = "$DEMO_DIR/agent"
[daemon]
url = "http://127.0.0.1:8479"
token_file = "$DEMO_DIR/agent.token"
report_interval = "2s"
[[service]]
name = "kamailio-1"
pidfile = "$DEMO_DIR/kamailio.pid"
[[service.gauge]]
kind = "pss"
[[service.gauge]]
kind = "kamailio_shm"
url = "http://127.0.0.1:$PORT/RPC"
[[service.gauge]]
kind = "fds"
[[service.gauge]]
kind = "log_alert"
name = "shm_exhausted"
file = "$DEMO_DIR/kamailio.log"
patterns = ["no more shm", "could not allocate shared memory"]
# The restart watchdog, in dry run: it decides and records, restarts nothing (a real policy would
# use method = "systemd" or a command, and a [service.restart.drain]; see the README).
[service.restart]
schedule = "Tue,Fri 03:00 Europe/Zurich"
threshold = "kamailio_shm > 90% for 1m"
on_log = ["shm_exhausted"]
dry_run = true
method = "signal"
[service.restart.verify]
uri = "sip:127.0.0.1:$PORT"
within = "10s"
TOML
"$bin" check-config sipwatch.toml
"$bin" check-config agent.toml
SIPWATCH_LOG=info "$bin" run -c sipwatch.toml 2>daemon.log & pids+=($!)
for _ in $(seq 100); do curl -fsS http://127.0.0.1:8479/healthz >/dev/null 2>&1 && break; sleep 0.1; done
SIPWATCH_LOG=info "$bin" agent -c agent.toml 2>agent.log & pids+=($!)
secs="${DEMO_SECONDS:-30}"
echo "   status page  http://127.0.0.1:8479/      (components: /api/v2/components.json, agents: /api/v1/agents)"
echo "   metrics      http://127.0.0.1:8479/metrics and http://127.0.0.1:9198/metrics (agent)"
echo "   logs         $DEMO_DIR/daemon.log, $DEMO_DIR/agent.log; running for $secs s (DEMO_SECONDS=...)"
sleep "$secs"
echo "== components after $secs s:"
curl -fsS http://127.0.0.1:8479/api/v2/components.json | python3 -c '
import json, sys
for c in json.load(sys.stdin)["components"]:
    print("   %-22s %s" % (c["name"], c["status"]))'
echo "== what the agent reports about kamailio-1:"
curl -fsS http://127.0.0.1:8479/api/v1/agents | python3 -c '
import json, sys
for a in json.load(sys.stdin)["agents"]:
    for s in a["services"]:
        for g in s["gauges"]:
            v = g["value"]
            print("   %s %s %-14s %s %s verdict=%s" % (a["host"], s["name"], g["name"], v if v is None else round(v), g["unit"], g["verdict"] or "-"))'
echo "== the restart watchdog's plan for kamailio-1 (sipwatch restart plan):"
"$bin" restart plan -c agent.toml | sed 's/^/   /'
echo "== a manual restart through the guards (dry run: recorded as would_restart):"
"$bin" restart now -c agent.toml kamailio-1 | sed 's/^/   /'
for _ in $(seq 100); do
  curl -fsS http://127.0.0.1:9198/api/v1/restarts | grep -q would_restart && break
  sleep 0.1
done
curl -fsS http://127.0.0.1:9198/api/v1/restarts | python3 -c '
import json, sys
for r in json.load(sys.stdin)["restarts"][:3]:
    print("   %s %s trigger=%s decision=%s why=%s: %s" % (r["at"], r["service"], r["trigger"], r["decision"], r["why"], r["summary"]))'
echo "== metrics (a few lines):"
curl -fsS http://127.0.0.1:8479/metrics | grep -E "^sipwatch_(probe_up|group_up)" | head -8
