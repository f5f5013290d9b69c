#!/usr/bin/env python3
"""Overhead of the node agent, printed as Markdown.

Starts 20 services of 10 processes each (a shell with 9 sleeping children, found by pidfile, so
the agent follows descendants as it does for Kamailio), runs `sipwatch agent` on them at a 10 s
interval for --duration seconds (default 120) with the default gauges (PSS/RSS/USS, fds, threads),
and reports the agent's CPU share of one core, its resident memory, and its time per tick, next to
a sysinfo full process-table refresh on the same host (bench/src/bin/sysinfo_refresh.rs). It also
times the kernel's smaps_rollup walk of the same processes alone (the floor of PSS on every tick).

Usage: bench/agent_overhead.py [--services 20] [--per-service 10] [--duration 120] [--interval 10s]
"""
import argparse
import json
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


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def thread_cpu_ns(pid):
    """CPU time of each live thread of `pid`, in ns (/proc/PID/task/TID/schedstat, first field)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def open_smaps(pids):
    """Each process's smaps_rollup, held open (as the agent holds it)."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.open(f"/proc/{pid}/smaps_rollup", os.O_RDONLY))
        except OSError:
            pass
    return fds


def smaps_walk_ms(fds):
    """The kernel's part of PSS alone: CPU time of one pread of each smaps_rollup, in ms."""
    start = time.thread_time()
    for fd in fds:
        os.pread(fd, 4096, 0)
    return (time.thread_time() - start) * 1e3


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def parse_seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    if not m:
        raise SystemExit(f"--interval {text!r}: write it like 10s, 500ms or 1m")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=20)
    ap.add_argument("--per-service", type=int, default=10)
    ap.add_argument("--duration", type=int, default=120)
    ap.add_argument("--interval", default="10s")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "sipwatch", "-p", "sipwatch-bench"],
                   cwd=ROOT, check=True)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target_dir, "release", "sipwatch")
    refresh = os.path.join(target_dir, "release", "sysinfo_refresh")
    work = tempfile.mkdtemp(prefix="sipwatch-agent-bench-")
    groups = []
    try:
        for i in range(args.services):
            kids = " ".join(["sleep 100000 &"] * (args.per_service - 1))
            p = subprocess.Popen(["sh", "-c", f"{kids} wait"], start_new_session=True)
            pidfile = os.path.join(work, f"svc{i}.pid")
            open(pidfile, "w").write(str(p.pid))
            groups.append(p)
        time.sleep(1)
        listen = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(work, "agent.toml")
        with open(cfg, "w") as f:
            f.write(f'[agent]\nlisten = "{listen}"\ninterval = "{args.interval}"\nstate_dir = "{work}/state"\n')
            for i in range(args.services):
                f.write(f'[[service]]\nname = "svc{i}"\npidfile = "{work}/svc{i}.pid"\n')
        agent = subprocess.Popen([binary, "agent", "-c", cfg], stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(work, "agent.log"), "w"))
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{listen}/healthz", timeout=2)
                break
            except Exception:
                time.sleep(0.1)
        # The CPU is measured over a whole number of intervals, from half-way between two ticks
        # to half-way between two later ones, so that every window holds the same number of ticks
        # (a 60 s window at 10 s would otherwise hold 6 or 7). utime+stime of /proc/PID/stat count
        # every thread of the agent, exited ones included, and nothing else (no child, no harness);
        # their resolution is a clock tick, so the threads' run times (ns) are printed as well.
        interval_s = parse_seconds(args.interval)
        ticks_in_window = max(1, round(args.duration / interval_s))
        started = time.time()  # the first ticks happen right after start
        time.sleep(15)  # first ticks, history files created
        phase = (time.time() - started) % interval_s
        time.sleep((interval_s / 2 - phase) % interval_s)
        # The kernel's smaps_rollup walk of the same processes, alone, once per interval half-way
        # between the agent's ticks (as cold as the agent's own): the floor of PSS on every tick.
        listed = json.loads(urllib.request.urlopen(f"http://{listen}/api/v1/services", timeout=5).read())
        smaps = open_smaps([pid for s in listed.get("services", []) for pid in s.get("pids", [])])
        walks = []
        c0, t0 = cpu_seconds(agent.pid), time.time()
        threads0 = thread_cpu_ns(agent.pid)
        peak = 0.0
        end = t0 + ticks_in_window * interval_s
        next_walk = t0
        while time.time() < end:
            if time.time() >= next_walk:
                walks.append(smaps_walk_ms(smaps))
                next_walk += interval_s
            peak = max(peak, rss_mb(agent.pid))
            time.sleep(min(1.0, max(0.0, min(end, next_walk) - time.time())))
        c1, t1 = cpu_seconds(agent.pid), time.time()
        threads1 = thread_cpu_ns(agent.pid)
        metrics = urllib.request.urlopen(f"http://{listen}/metrics", timeout=5).read().decode()
        report = json.loads(urllib.request.urlopen(f"http://{listen}/api/v1/services", timeout=5).read())
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
        ticks = [float(m.group(1)) for m in re.finditer(r'^sipwatch_agent_tick_duration_seconds\{[^}]*\} (\S+)', metrics, re.M)]
        followed = sum(s.get("processes", 0) for s in report.get("services", []))
        per_tick_ms = sum(ticks) * 1e3  # every service ticks once per interval
        ref = json.loads(subprocess.run([refresh, "20"], capture_output=True, text=True, check=True).stdout)
        for fd in smaps:
            os.close(fd)
        walks.sort()
        walk_ms = walks[len(walks) // 2] if walks else float("nan")
        share = (c1 - c0) / (t1 - t0) * 100
        # utime+stime count in clock ticks (10 ms): over 120 s that is +-0.008 % of a core. The
        # threads' own run time is in ns; it is the whole agent's when no thread came or went.
        precise = None
        if threads0.keys() == threads1.keys():
            precise = sum(threads1.values()) - sum(threads0.values())
        print(f"### Agent overhead: {args.services} services, {followed} processes, interval {args.interval}, {args.duration} s ({time.strftime('%Y-%m-%d')})\n")
        print("| measure | value |\n|---|---|")
        print(f"| CPU, share of one core ({ticks_in_window} ticks in {t1 - t0:.0f} s) | **{share:.3f} %** (goal: at most 0.05 %) |")
        print(f"| agent CPU per tick, all {args.services} services (user+system) | {(c1 - c0) / ticks_in_window * 1e3:.1f} ms |")
        if precise is not None:
            print(f"| same, from the threads' run time (ns resolution) | {precise / (t1 - t0) / 1e7:.4f} % of a core, "
                  f"{precise / ticks_in_window / 1e6:.2f} ms per tick |")
        else:
            print("| same, from the threads' run time | n/a (a thread started or ended in the window) |")
        print(f"| the kernel's smaps_rollup walk alone: one pread of each of the {len(smaps)} processes from the "
              f"harness, once per interval between the agent's ticks, median of {len(walks)} | {walk_ms:.2f} ms per tick, "
              f"{walk_ms / interval_s / 10:.3f} % of a core |")
        print(f"| peak resident memory | **{peak:.1f} MB** (goal: at most 15 MB) |")
        print(f"| wall time per tick, all {args.services} services (sum of last tick durations) | {per_tick_ms:.2f} ms |")
        print(f"| sysinfo full process refresh, same host ({ref['processes']} processes), median | {ref['median_ms']:.2f} ms |")
        print(f"| ratio sysinfo refresh / sipwatch tick | {ref['median_ms'] / per_tick_ms:.1f}x |" if per_tick_ms else "")
    finally:
        for p in groups:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except Exception:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
