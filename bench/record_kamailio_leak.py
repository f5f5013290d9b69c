#!/usr/bin/env python3
"""Records a real Kamailio shared-memory leak (and a non-leaking control) as CSV for the leak
detector's tests and benchmark.

The leaking Kamailio stores every OPTIONS in an htable that never expires (KAMAILIO-NOTES.md);
SIPp sends OPTIONS at a steady rate; every second the summed PSS of all Kamailio processes
(/proc/PID/smaps_rollup) and Kamailio's own shm `real_used` (kamcmd core.shmmem) are written down,
until Kamailio logs `no more shm` (or --max-seconds). The control run uses the same load with an
htable whose entries expire after 2 s: the pool fills a little and then stays level.

Output (in --out, default tests/data/):
  kamailio-htable-leak-pss.csv, kamailio-htable-leak-shm.csv   timestamp,value (unix s, bytes)
  kamailio-noleak-pss.csv,      kamailio-noleak-shm.csv
  kamailio-leak.json            shm size, rate, when `no more shm` was first logged, ...
Usage: bench/record_kamailio_leak.py [--rate 60] [--shm-mb 64] [--sample-every 10] [--max-seconds 5400]
(the leak and the control run side by side, on their own ports, under the same load)
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS load">
  <send retrans="500"><![CDATA[
OPTIONS sip:load@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPp[call_number]
To: <sip:load@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def kamailio_cfg(port, ctl, leak):
    autoexpire = "" if leak else "autoexpire=2;"
    return f"""#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "textops.so"
loadmodule "htable.so"
modparam("ctl", "binrpc", "unix:{ctl}")
modparam("htable", "htable", "leak=>size=16;{autoexpire}")
request_route {{
  if (is_method("OPTIONS")) {{ $sht(leak=>$ci) = $mb; sl_send_reply("200", "OK"); exit; }}
  sl_send_reply("404", "Not here");
}}
"""


def pids_of(main_pid):
    pids = [main_pid]
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            stat = open(f"/proc/{e}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == main_pid:
            pids.append(int(e))
    return pids


def pss_bytes(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def shm_used(ctl):
    try:
        out = subprocess.run(["kamcmd", "-s", f"unix:{ctl}", "core.shmmem"], capture_output=True, text=True, timeout=2).stdout
        m = re.search(r"real_used:\s*(\d+)", out)
        return int(m.group(1)) if m else None
    except Exception:
        return None


def record(name, leak, args, out_dir, stop_at=None, stop_event=None):
    work = tempfile.mkdtemp(prefix=f"kam-{name}-")
    port = free_port()
    ctl = os.path.join(work, "ctl.sock")
    cfg = os.path.join(work, "k.cfg")
    open(cfg, "w").write(kamailio_cfg(port, ctl, leak))
    log_path = os.path.join(work, "k.log")
    pidfile = os.path.join(work, "k.pid")
    subprocess.run(["kamailio", "-f", cfg, "-P", pidfile, "-w", work, "-m", str(args.shm_mb), "-M", "8", "-E"],
                   check=True, stderr=open(log_path, "w"))
    while not os.path.exists(pidfile):
        time.sleep(0.05)
    time.sleep(0.5)
    main_pid = int(open(pidfile).read().strip())
    uac = os.path.join(work, "uac.xml")
    open(uac, "w").write(UAC)
    sipp = subprocess.Popen(["sipp", "-sf", uac, "-r", str(args.rate), "-nostdin", "-i", "127.0.0.1",
                             "-p", str(free_port()), f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows_pss, rows_shm = [], []
    exhausted_at = None
    t_start = time.time()
    deadline = t_start + (stop_at if stop_at else args.max_seconds)
    next_t = t_start
    step = args.sample_every
    while time.time() < deadline and not (stop_event is not None and stop_event.is_set()):
        now = time.time()
        pids = pids_of(main_pid)
        rows_pss.append((now, pss_bytes(pids)))
        shm = shm_used(ctl)
        if shm is not None:
            rows_shm.append((now, shm))
        if exhausted_at is None and "no more shm" in open(log_path, errors="replace").read():
            exhausted_at = now
            if leak:
                # Keep a few samples after exhaustion so the plot shows it, then stop.
                deadline = min(deadline, now + 6 * step)
        next_t += step
        while time.time() < next_t and not (stop_event is not None and stop_event.is_set()):
            time.sleep(min(0.5, max(0.0, next_t - time.time())))
    sipp.send_signal(signal.SIGINT)
    try:
        sipp.wait(timeout=10)
    except subprocess.TimeoutExpired:
        sipp.kill()
    os.kill(main_pid, signal.SIGTERM)
    time.sleep(1)
    for kind, rows in (("pss", rows_pss), ("shm", rows_shm)):
        with open(os.path.join(out_dir, f"kamailio-{name}-{kind}.csv"), "w") as f:
            f.write("timestamp,value\n")
            for t, v in rows:
                f.write(f"{t:.3f},{v}\n")
    return {"started_at": t_start, "samples": len(rows_pss), "no_more_shm_at": exhausted_at,
            "seconds": time.time() - t_start}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=60)
    ap.add_argument("--shm-mb", type=int, default=64)
    ap.add_argument("--sample-every", type=float, default=10.0)
    ap.add_argument("--max-seconds", type=int, default=5400)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import threading
    results = {}
    control_stop = threading.Event()
    def run(name, leak):
        results[name] = record(name, leak, args, args.out, stop_event=None if leak else control_stop)
        if leak:
            control_stop.set()
    threads = [threading.Thread(target=run, args=(n, l)) for n, l in (("htable-leak", True), ("noleak", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    leak, control = results["htable-leak"], results["noleak"]
    meta = {"rate_per_second": args.rate, "shm_mb": args.shm_mb, "leak": leak, "control": control,
            "recorded_with": "bench/record_kamailio_leak.py", "kamailio": "5.6.3 (Debian)", "load": "SIPp OPTIONS"}
    json.dump(meta, open(os.path.join(args.out, "kamailio-leak.json"), "w"), indent=2)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
