#!/usr/bin/env python3
"""What strangers on the network can do to `sipwatch run`, printed as Markdown.

One daemon (agents enabled, one target), then, in order:
1. H held unauthenticated uploads (default 1,000): each announces a 900 kB agent report with a
   wrong token and sends the first 64 KiB, then holds the connection open.
2. I idle connections (default 20,000) that never send a byte.
While both are held: the daemon's resident memory (VmRSS) and open descriptors, and the latency of
`GET /healthz` (a fresh connection each, retried on a refused or reset connection, for S seconds;
default 15). The same figures are taken before the load for the baseline.

Usage: bench/http_strangers.py [--bin target/release/sipwatch] [--held 1000] [--idle 20000]
Needs: root or a high RLIMIT_NOFILE (the client holds every connection).
"""
import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def healthz(port, timeout=30.0):
    """Seconds until a 200 from /healthz, retrying refused or reset connections."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            s.settimeout(timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = s.recv(64)
            s.close()
            if data.startswith(b"HTTP/1.1 200"):
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.01)
    return float("inf")


def latencies(port, seconds):
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(healthz(port))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/sipwatch"))
    ap.add_argument("--held", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.held + args.idle + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if want > limit:
        args.idle = max(0, limit - args.held - 1000)
        print(f"(descriptor limit {limit}: holding {args.idle} idle connections)", file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="sipwatch-strangers-")
    port = free_port()
    token = os.path.join(tmp, "agent.token")
    with open(token, "w") as f:
        f.write("the-real-token\n")
    cfg = os.path.join(tmp, "sipwatch.toml")
    with open(cfg, "w") as f:
        f.write(
            f'[http]\nlisten = "127.0.0.1:{port}"\n[store]\npath = "{tmp}/state.db"\n'
            f'[agents]\ntoken_file = "{token}"\n[[target]]\nname = "t"\n'
            f'uri = "sip:127.0.0.1:{free_port()}"\ninterval = "10s"\ntimeout = "1s"\n'
        )
    log = open(os.path.join(tmp, "daemon.log"), "w")
    daemon = subprocess.Popen([args.bin, "run", "-c", cfg], stderr=log)
    try:
        if healthz(port) == float("inf"):
            sys.exit("the daemon did not answer /healthz")
        base = (rss_kib(daemon.pid), fds(daemon.pid), latencies(port, 3))
        held = []
        head = (
            f"POST /api/v1/agents/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
            f"Content-Type: application/json\r\nContent-Length: 900000\r\n\r\n"
        ).encode()
        chunk = b"x" * 65536
        refused_early = 0
        for _ in range(args.held):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(head)
                try:
                    s.sendall(chunk)
                except OSError:
                    refused_early += 1
                held.append(s)
            except OSError:
                pass
        idle = []
        for _ in range(args.idle):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                pass
        time.sleep(1)
        loaded = (rss_kib(daemon.pid), fds(daemon.pid), latencies(port, args.seconds))
        peak_rss = rss_kib(daemon.pid)
        for s in held + idle:
            s.close()
        print(f"### Strangers against `sipwatch run` ({time.strftime('%Y-%m-%d')})\n")
        print(f"Command: `bench/http_strangers.py --bin {os.path.relpath(args.bin, ROOT)} "
              f"--held {args.held} --idle {args.idle}`\n")
        print("| | before | with the load held |")
        print("|---|---|---|")
        print(f"| connections opened by the client | 0 | {len(held)} uploads + {len(idle)} idle |")
        print(f"| daemon RSS | {base[0] / 1024:.1f} MiB | {loaded[0] / 1024:.1f} MiB "
              f"(x{loaded[0] / max(base[0], 1):.2f}) |")
        print(f"| daemon open descriptors | {base[1]} | {loaded[1]} |")
        b, l = base[2], loaded[2]
        print(f"| `/healthz` latency, median (n) | {statistics.median(b) * 1e3:.1f} ms ({len(b)}) | "
              f"{statistics.median(l) * 1e3:.1f} ms ({len(l)}) |")
        print(f"| `/healthz` latency, max | {max(b) * 1e3:.1f} ms | {max(l) * 1e3:.1f} ms |")
        print(f"\nRSS at the end of the load: {peak_rss / 1024:.1f} MiB.")
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)


if __name__ == "__main__":
    main()
