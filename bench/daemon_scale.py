#!/usr/bin/env python3
"""Scale benchmark for `sipwatch run` (the prober daemon), printed as Markdown.

1. N1 targets (default 2,000) at a 1 s interval against one Kamailio on loopback for D seconds
   (default 60): false downs (must be 0), and the CPU per probe of the daemon and of SIPp sending
   the same OPTIONS rate at the same Kamailio at the same time (side by side, same window), in
   microseconds per probe, with their ratio.
2. N2 targets (default 10,000) at a 10 s interval for D2 seconds (default 60): the daemon's resident
   memory (and per target, against a run with N2/10 targets), the 99th percentile of probe start
   lateness (from its own histogram sipwatch_probe_start_lateness_seconds), the time to serve `/`
   and /api/v2/components.json while probing (median of 20 loads each), then lateness again while
   20 clients load pages back to back for --load seconds (default 30).

Usage: bench/daemon_scale.py [--n1 2000] [--n2 10000] [--duration 60] [--duration2 60] [--load 30]
       [--skip1 | --skip2] [--binary PATH]
Needs: kamailio, sipp (tests/install-deps.sh); builds sipwatch in release mode (honours
CARGO_TARGET_DIR).
"""
import argparse
import statistics
import threading
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    """utime+stime of a process and its reaped children, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / CLK


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def http(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_quantile(text, name, q):
    buckets = []
    for line in text.splitlines():
        m = re.match(name + r'_bucket\{.*le="([^"]+)".*\} (\S+)', line)
        if m:
            le = float("inf") if m.group(1) in ("+Inf", "inf") else float(m.group(1))
            buckets.append((le, float(m.group(2))))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    want = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= want:
            if le == float("inf"):
                return prev_le
            frac = (want - prev_c) / (c - prev_c) if c > prev_c else 0
            return prev_le + (le - prev_le) * frac
        prev_le, prev_c = le, c
    return prev_le


def start_kamailio(work, port):
    cfg = os.path.join(work, "k.cfg")
    with open(cfg, "w") as f:
        f.write(f"""#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=4
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
request_route {{ sl_send_reply("200", "OK"); exit; }}
""")
    pidfile = os.path.join(work, "k.pid")
    subprocess.run(["kamailio", "-f", cfg, "-P", pidfile, "-w", work, "-m", "64", "-M", "8", "-E"],
                   check=True, stderr=open(os.path.join(work, "k.log"), "w"))
    for _ in range(100):
        if os.path.exists(pidfile):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    return int(open(pidfile).read().strip())


def write_config(path, db, listen, port, n, interval, timeout):
    with open(path, "w") as f:
        f.write(f'[http]\nlisten = "{listen}"\n[store]\npath = "{db}"\n')
        f.write(f'[defaults]\ninterval = "{interval}"\ntimeout = "{timeout}"\n')
        f.write('[scheduler]\nmax_in_flight = 4096\nudp_sockets = 4\n')
        for i in range(n):
            f.write(f'[[target]]\nname = "t{i}"\nuri = "sip:probe{i}@127.0.0.1:{port}"\n')


def run_daemon(binary, cfg, work, listen):
    log = open(os.path.join(work, "daemon.log"), "w")
    p = subprocess.Popen([binary, "run", "-c", cfg], stdout=subprocess.DEVNULL, stderr=log,
                         env={**os.environ, "SIPWATCH_LOG": "info"})
    for _ in range(300):
        try:
            http(f"http://{listen}/healthz")
            return p
        except Exception:
            time.sleep(0.1)
    p.kill()
    sys.exit("daemon did not start; see " + log.name)


UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS ping">
  <send retrans="500"><![CDATA[
OPTIONS sip:probe@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPp[call_number]
To: <sip:probe@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


def part1(args, binary, work, kport):
    out = []
    listen = f"127.0.0.1:{free_port()}"
    cfg = os.path.join(work, "p1.toml")
    write_config(cfg, os.path.join(work, "p1.db"), listen, kport, args.n1, "1s", "900ms")
    d = run_daemon(binary, cfg, work, listen)
    uac = os.path.join(work, "uac.xml")
    open(uac, "w").write(UAC)
    rate = args.n1  # 1 s interval: one probe per target per second
    sipp = subprocess.Popen(["sipp", "-sf", uac, "-r", str(rate), "-m", str(rate * (args.duration + 20)),
                             "-nostdin", "-i", "127.0.0.1", "-p", str(free_port()), f"127.0.0.1:{kport}",
                             "-trace_stat", "-stf", os.path.join(work, "sipp.csv"), "-fd", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    time.sleep(5)  # every target has had its first probes; SIPp is at its rate
    m0 = http(f"http://{listen}/metrics")
    c0, sc0, t0 = cpu_seconds(d.pid), cpu_seconds(sipp.pid), time.time()
    time.sleep(args.duration)
    m1 = http(f"http://{listen}/metrics")
    c1, sc1, t1 = cpu_seconds(d.pid), cpu_seconds(sipp.pid), time.time()
    sipp_calls = sipp_successful(work)
    comps = http(f"http://{listen}/api/v2/components.json")
    probes = metric_sum(m1, "sipwatch_probes_total") - metric_sum(m0, "sipwatch_probes_total")
    ok = sum(float(l.rsplit(" ", 1)[1]) for l in m1.splitlines()
             if l.startswith("sipwatch_probes_total{") and 'result="ok"' in l) - \
        sum(float(l.rsplit(" ", 1)[1]) for l in m0.splitlines()
            if l.startswith("sipwatch_probes_total{") and 'result="ok"' in l)
    not_operational = comps.count('"status":"') - comps.count('"status":"operational"')
    sipp.kill()
    sipp.wait()
    d.send_signal(signal.SIGTERM)
    d.wait(timeout=30)
    log = open(os.path.join(work, "daemon.log")).read()
    # The log is coloured (ANSI): strip it before matching.
    false_downs = len(re.findall(r'to="?down', re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", log)))
    elapsed = t1 - t0
    daemon_us = (c1 - c0) / probes * 1e6 if probes else float("nan")
    sipp_sent = rate * elapsed
    sipp_us = (sc1 - sc0) / sipp_sent * 1e6
    out.append(f"### {args.n1} targets at 1 s for {args.duration} s, SIPp at the same rate next to it, one Kamailio on loopback ({time.strftime('%Y-%m-%d %H:%M')})\n")
    out.append("| measure | value |\n|---|---|")
    out.append(f"| probes in the window | {int(probes)} ({probes / elapsed:.0f}/s), ok {int(ok)} |")
    out.append(f"| components not operational at the end | {not_operational} |")
    out.append(f"| false downs (node state changes to down in the log) | **{false_downs}** |")
    out.append(f"| sipwatch CPU per probe | **{daemon_us:.1f} us** ({c1 - c0:.2f} s in {elapsed:.0f} s) |")
    out.append(f"| SIPp CPU per OPTIONS, {rate}/s, same window (successful calls at the end: {sipp_calls}) | **{sipp_us:.1f} us** ({sc1 - sc0:.2f} s) |")
    out.append(f"| ratio sipwatch / SIPp | **{daemon_us / sipp_us:.2f}** (goal: at most 0.40, and at most 20 us) |")
    out.append("")
    return out


def sipp_successful(work):
    try:
        lines = open(os.path.join(work, "sipp.csv")).read().splitlines()
        head = lines[0].split(";")
        last = lines[-1].split(";")
        return last[head.index("SuccessfulCall(C)")]
    except Exception:
        return "?"


def timed_get(url):
    t = time.perf_counter()
    http(url)
    return time.perf_counter() - t


def lateness_window(m0, m1):
    name = "sipwatch_probe_start_lateness_seconds"
    def buckets(text):
        return {m.group(1): float(m.group(2)) for m in re.finditer(name + r'_bucket\{.*?le="([^"]+)".*?\} (\S+)', text)}
    b0, b1 = buckets(m0), buckets(m1)
    window = "\n".join(f'{name}_bucket{{le="{le}"}} {b1[le] - b0.get(le, 0)}' for le in b1)
    return histogram_quantile(window, name, 0.50), histogram_quantile(window, name, 0.99)


def memory_run(binary, work, kport, n, seconds):
    """Peak RSS of the daemon with n targets at 10 s."""
    listen = f"127.0.0.1:{free_port()}"
    cfg = os.path.join(work, f"m{n}.toml")
    write_config(cfg, os.path.join(work, f"m{n}.db"), listen, kport, n, "10s", "5s")
    d = run_daemon(binary, cfg, work, listen)
    peak = 0.0
    end = time.time() + seconds
    while time.time() < end:
        peak = max(peak, rss_mb(d.pid))
        time.sleep(1)
    d.send_signal(signal.SIGTERM)
    d.wait(timeout=60)
    return peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=10000)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--duration2", type=int, default=60)
    ap.add_argument("--load", type=int, default=30)
    ap.add_argument("--binary", help="use this sipwatch binary instead of building one")
    ap.add_argument("--skip1", action="store_true", help="only part 2")
    ap.add_argument("--skip2", action="store_true", help="only part 1")
    args = ap.parse_args()
    if args.binary:
        binary = args.binary
    else:
        subprocess.run([os.path.join(ROOT, "tests", "install-deps.sh")], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "sipwatch", "--bin", "sipwatch"],
                       cwd=ROOT, check=True)
        target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        binary = os.path.join(target_dir, "release", "sipwatch")
    work = tempfile.mkdtemp(prefix="sipwatch-bench-")
    kport = free_port()
    kpid = start_kamailio(work, kport)
    out = []
    try:
        # Part 1: N1 targets at 1 s, and SIPp at the same rate next to it, same window.
        if not args.skip1:
            out.extend(part1(args, binary, work, kport))
        if args.skip2:
            print("\n".join(out))
            return
        # Part 2: N2 targets at 10 s.
        small = max(1, args.n2 // 10)
        rss_small = memory_run(binary, work, kport, small, 25)
        listen = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(work, "p2.toml")
        write_config(cfg, os.path.join(work, "p2.db"), listen, kport, args.n2, "10s", "5s")
        d = run_daemon(binary, cfg, work, listen)
        time.sleep(12)
        m0 = http(f"http://{listen}/metrics")
        peak = 0.0
        end = time.time() + args.duration2
        while time.time() < end:
            peak = max(peak, rss_mb(d.pid))
            time.sleep(1)
        m1 = http(f"http://{listen}/metrics")
        p50, p99 = lateness_window(m0, m1)
        probes2 = metric_sum(m1, "sipwatch_probes_total") - metric_sum(m0, "sipwatch_probes_total")
        # The status page and the feed while probing: 20 loads each, one at a time.
        page = [timed_get(f"http://{listen}/") for _ in range(20)]
        feed = [timed_get(f"http://{listen}/api/v2/components.json") for _ in range(20)]
        # 20 clients loading pages back to back: does probing keep its schedule?
        m2 = http(f"http://{listen}/metrics")
        stop = time.time() + args.load
        loads = []
        def client(i):
            path = "/" if i % 2 == 0 else "/api/v2/components.json"
            while time.time() < stop:
                try:
                    loads.append(timed_get(f"http://{listen}{path}"))
                except Exception:
                    loads.append(float("nan"))
        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        m3 = http(f"http://{listen}/metrics")
        after_loads = rss_mb(d.pid)
        lp50, lp99 = lateness_window(m2, m3)
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=60)
        per_target = (peak - rss_small) * 1024 * 1024 / (args.n2 - small)
        fmt = lambda v: f"{v * 1e3:.2f} ms" if v is not None else "n/a"
        out.append(f"### {args.n2} targets at 10 s for {args.duration2} s\n")
        out.append("| measure | value |\n|---|---|")
        out.append(f"| probes in the window | {int(probes2)} ({probes2 / args.duration2:.0f}/s) |")
        out.append(f"| peak resident memory (VmRSS) while probing | **{peak:.1f} MB** (goal: at most 64 MB) |")
        out.append(f"| resident memory after the {args.load} s of page loads | {after_loads:.1f} MB |")
        out.append(f"| same with {small} targets | {rss_small:.1f} MB |")
        out.append(f"| per target, (RSS({args.n2}) - RSS({small})) / {args.n2 - small} | **{per_target:.0f} bytes** |")
        out.append(f"| probe start lateness, median | {fmt(p50)} |")
        out.append(f"| probe start lateness, 99th percentile | **{fmt(p99)}** (goal: at most 10 ms) |")
        out.append(f"| `/` (status page), median of 20 loads while probing | **{statistics.median(page) * 1e3:.1f} ms** (goal: at most 100 ms) |")
        out.append(f"| /api/v2/components.json, median of 20 loads | **{statistics.median(feed) * 1e3:.1f} ms** (goal: at most 100 ms) |")
        ok_loads = [x for x in loads if x == x]
        out.append(f"| 20 clients loading pages for {args.load} s: loads, median time | {len(ok_loads)} ({len(loads) - len(ok_loads)} failed), {statistics.median(ok_loads) * 1e3:.1f} ms |" if ok_loads else "| loads | none |")
        out.append(f"| probe start lateness during those loads, median / 99th percentile | {fmt(lp50)} / **{fmt(lp99)}** (goal: p99 at most 10 ms) |")
        out.append("")
    finally:
        os.kill(kpid, signal.SIGTERM)
        time.sleep(1)
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(out))


if __name__ == "__main__":
    main()
