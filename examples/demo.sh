#!/usr/bin/env bash
# The main job against something real: installs Kamailio (if missing), starts it on loopback with
# UDP, TCP and TLS listeners and digest auth, then probes it with sipwatch the way on-call would.
#
#   examples/demo.sh            # run, print what sipwatch sees, stop Kamailio
#   KEEP=1 examples/demo.sh     # leave Kamailio running afterwards (pid in $DEMO_DIR/kamailio.pid)
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
cargo build --release --locked -q
bin="$PWD/target/release/sipwatch"
DEMO_DIR="${DEMO_DIR:-/tmp/sipwatch-demo}"
PORT="${PORT:-25060}"
mkdir -p "$DEMO_DIR"
cd "$DEMO_DIR"

# A self-signed certificate for the TLS listener.
[ -f server.pem ] || openssl req -x509 -newkey rsa:2048 -nodes -days 90 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout server.key -out server.pem 2>/dev/null
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
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
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
kamailio -f kamailio.cfg -P kamailio.pid -w "$DEMO_DIR" -m 64 -M 8 -E 2>kamailio.log
stop() { [ -n "${KEEP:-}" ] || kill "$(cat "$DEMO_DIR/kamailio.pid")" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 100); do "$bin" probe --timeout 200ms "sip:127.0.0.1:$PORT" >/dev/null 2>&1 && break; sleep 0.1; done

echo "== Kamailio is running on 127.0.0.1:$PORT (udp/tcp) and :$((PORT + 1)) (tls); log: $DEMO_DIR/kamailio.log"
echo "== OPTIONS over UDP, TCP and TLS:"
"$bin" probe --ca server.pem "sip:127.0.0.1:$PORT" "sip:127.0.0.1:$PORT;transport=tcp" "sips:127.0.0.1:$((PORT + 1))" || true
echo "== REGISTER with digest auth (password from SIPWATCH_PASSWORD, never printed):"
SIPWATCH_PASSWORD=demo-secret "$bin" probe -m register -u alice "sip:127.0.0.1:$PORT" || true
echo "== REGISTER with a wrong password (exit 2, CRITICAL):"
SIPWATCH_PASSWORD=wrong "$bin" probe -m register -u alice "sip:127.0.0.1:$PORT" || echo "exit code $?"
echo "== ping-style, 5 rounds, JSON for scripts on the last one:"
"$bin" probe --count 5 --interval 200ms "sip:127.0.0.1:$PORT" || true
"$bin" probe --json "sip:127.0.0.1:$PORT" || true
