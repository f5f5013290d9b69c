#!/usr/bin/env python3
"""Detection time of `sipwatch run`, measured by killing real Kamailios, printed as Markdown.

Three Kamailios on loopback in one group; the daemon probes them with interval 1 s, timeout 1 s,
fail_threshold 3 (the README's promise: down at most fail_threshold x interval + timeout = 4 s after
the node died). Each round picks a Kamailio, waits a random part of a second (so kills fall
anywhere in the probe cycle), then either
- stops it (SIGSTOP on all its processes: a silent host, probes run to their timeout), or
- crashes it (SIGKILL: its port is closed, the kernel answers ICMP port unreachable),
and takes the time from the signal to the daemon's log line taking that node to down. Then the
node is brought back (SIGCONT, or a new Kamailio on the same port) and must be up again before
the next round.

Usage: bench/detection.py [--kills 20] [--binary PATH]
Needs: kamailio (tests/install-deps.sh); builds sipwatch in release mode (honours CARGO_TARGET_DIR).
"""
import argparse
import datetime
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import json
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


class Kamailio:
    def __init__(self, work, name, port):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port
        self.cfg = os.path.join(self.dir, "k.cfg")
        with open(self.cfg, "w") as f:
            f.write(f"""#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
request_route {{ sl_send_reply("200", "OK"); exit; }}
""")
        self.start()

    def start(self):
        pidfile = os.path.join(self.dir, "k.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        subprocess.run(["kamailio", "-f", self.cfg, "-P", pidfile, "-w", self.dir, "-m", "16", "-M", "4", "-E"],
                       check=True, stderr=open(os.path.join(self.dir, "k.log"), "a"))
        for _ in range(100):
            if os.path.exists(pidfile) and open(pidfile).read().strip():
                break
            time.sleep(0.05)
        self.main = int(open(pidfile).read().strip())

    def pids(self):
        pids = [self.main]
        for e in os.listdir("/proc"):
            if not e.isdigit():
                continue
            try:
                stat = open(f"/proc/{e}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.main:
                pids.append(int(e))
        return pids

    def signal(self, sig):
        for p in self.pids():
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def wait_gone(self, pids):
        deadline = time.time() + 10
        while time.time() < deadline:
            alive = [p for p in pids if os.path.exists(f"/proc/{p}") and ") Z " not in open(f"/proc/{p}/stat").read()]
            if not alive:
                return
            time.sleep(0.02)


def down_at(log_path, name, after_offset):
    with open(log_path) as f:
        f.seek(after_offset)
        for line in f:
            line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line)
            if "node state changed" in line and f"target={name} " in line and 'to="down"' in line:
                stamp = line.split()[0]
                return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return None


def last_state(log_path, name):
    """The state the daemon's log last took `name` to ("up", "down", ...), or None."""
    state = None
    with open(log_path) as f:
        for line in f:
            line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line)
            if "node state changed" in line and f"target={name} " in line:
                m = re.search(r'to="(\w+)"', line)
                if m:
                    state = m.group(1)
    return state


def status(listen, name):
    comps = json.loads(http(f"http://{listen}/api/v2/components.json"))
    for c in comps["components"]:
        if c["name"] == name:
            return c["status"]
    return "missing"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--binary")
    args = ap.parse_args()
    if args.binary:
        binary = args.binary
    else:
        subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "sipwatch", "--bin", "sipwatch"],
                       cwd=ROOT, check=True)
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "sipwatch")
    work = tempfile.mkdtemp(prefix="sipwatch-detect-")
    ks = [Kamailio(work, f"k{i + 1}", free_port()) for i in range(3)]
    listen = f"127.0.0.1:{free_port()}"
    cfg = os.path.join(work, "d.toml")
    with open(cfg, "w") as f:
        f.write(f'[http]\nlisten = "{listen}"\n[store]\npath = "{work}/d.db"\n')
        f.write('[defaults]\ninterval = "1s"\ntimeout = "1s"\nfail_threshold = 3\nok_threshold = 2\n')
        f.write('[[group]]\nname = "edges"\nmin_up = 1\n')
        for i, k in enumerate(ks):
            f.write(f'[[target]]\nname = "k{i + 1}"\nuri = "sip:127.0.0.1:{k.port}"\ngroup = "edges"\n')
    log_path = os.path.join(work, "daemon.log")
    d = subprocess.Popen([binary, "run", "-c", cfg], stdout=subprocess.DEVNULL, stderr=open(log_path, "w"),
                         env={**os.environ, "SIPWATCH_LOG": "info"})
    results = {"silent": [], "crash": []}
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if all(status(listen, f"k{i + 1}") == "operational" for i in range(3)):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        rng = random.Random(12)
        for round_ in range(2 * args.kills):
            mode = "silent" if round_ % 2 == 0 else "crash"
            i = rng.randrange(3)
            k, name = ks[i], f"k{i + 1}"
            # The node must be up (in the daemon's log) before it is killed again.
            deadline = time.time() + 60
            while last_state(log_path, name) != "up" and time.time() < deadline:
                time.sleep(0.1)
            if last_state(log_path, name) != "up":
                sys.exit(f"{name} did not come back up; see {work}")
            time.sleep(rng.random())
            offset = os.path.getsize(log_path)
            pids = k.pids()
            at = time.time()
            k.signal(signal.SIGSTOP if mode == "silent" else signal.SIGKILL)
            found = None
            deadline = time.time() + 15
            while found is None and time.time() < deadline:
                time.sleep(0.05)
                found = down_at(log_path, name, offset)
            results[mode].append(found - at if found else float("inf"))
            if mode == "silent":
                k.signal(signal.SIGCONT)
            else:
                k.wait_gone(pids)
                k.start()
            deadline = time.time() + 15
            while time.time() < deadline and status(listen, name) != "operational":
                time.sleep(0.1)
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=30)
        for k in ks:
            k.signal(signal.SIGCONT)
            k.signal(signal.SIGTERM)

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

    print(f"### Detection time, 3 Kamailios, interval 1 s, timeout 1 s, fail_threshold 3, {args.kills} kills of each kind ({time.strftime('%Y-%m-%d %H:%M')})\n")
    print("| kill | promise | min | median | p99 | max |\n|---|---|---|---|---|---|")
    for mode, promise in (("silent", "4.0 s (3 x 1 s + 1 s)"), ("crash", "3.0 s (3 x 1 s; ICMP fails each probe at once)")):
        xs = results[mode]
        print(f"| {'SIGSTOP (silent host)' if mode == 'silent' else 'SIGKILL (port closed)'} | {promise} | {min(xs):.2f} s | {pct(xs, 0.5):.2f} s | **{pct(xs, 0.99):.2f} s** | {max(xs):.2f} s |")
    print()
    print("all, seconds:", {m: [round(x, 2) for x in xs] for m, xs in results.items()})


if __name__ == "__main__":
    main()
