#!/usr/bin/python3
"""The agent's statsd against Etsy's statsd (node), side by side, on the same UDP datagrams.

A seeded generator makes N datagrams of M metrics each (counters with and without sample
rates, timers, gauges and deltas, sets, a few DogStatsD tags, over a few thousand names). The
same datagrams go, one program after the other in the same run, to

  etsy    Etsy statsd 0.9.0 (node; scripts/setup.sh bench installs it into /opt/tally), its
          graphite backend writing to a catcher here; what it counted is the sum of its own
          stats.counters.statsd.metrics_received over its flushes
  tally   tally agent with [statsd] on (tagged naming; output to a port nobody listens on: the
          points stay in the spool); what it counted is tally_agent_statsd_metrics on /metrics

The figure of merit is metrics counted per CPU-second of the program (user+sys of all its
threads, from /proc, between the first datagram and the moment it has counted everything it
will), and the ratio tally/etsy. Datagrams a program was too slow for are dropped by its
kernel socket buffer; they are neither counted nor paid for, and the counts say how many.

    benches/statsd_compare.py [--datagrams 50000] [--metrics 20] [--rate 5000] [--keep]

At the default rate (100k metrics/s) both count every datagram, so the CPU each spends on the
same work is compared; --rate 0 shows how much each can take (the rest the kernel drops).

Needs a release build (cargo build --release) and Etsy statsd (scripts/setup.sh bench).
"""

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TALLY = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "tally")
ETSY = "/opt/tally/statsd-0.9.0/node_modules/statsd/stats.js"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def datagrams(n, m, seed=1):
    rng = random.Random(seed)
    names = [f"app.svc{i % 40}.op{i}" for i in range(3000)]
    out = []
    for _ in range(n):
        lines = []
        for _ in range(m):
            name = rng.choice(names)
            r = rng.random()
            if r < 0.4:
                lines.append(f"{name}.hits:1|c" if rng.random() < 0.7 else f"{name}.hits:{rng.randint(1, 9)}|c|@0.1")
            elif r < 0.75:
                lines.append(f"{name}.time:{rng.randint(0, 2000) / 4}|ms")
            elif r < 0.85:
                lines.append(f"{name}.queue:{rng.choice(['', '+', '-'])}{rng.randint(0, 100)}|g")
            elif r < 0.95:
                lines.append(f"{name}.users:u{rng.randint(0, 500)}|s")
            else:
                lines.append(f"{name}.req:1|c|#env:prod,dc:dc{rng.randint(0, 3)}")
        out.append("\n".join(lines).encode())
    return out


def send(port, packets, rate):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.time()
    for i, p in enumerate(packets):
        s.sendto(p, ("127.0.0.1", port))
        if rate and i % 100 == 0:
            ahead = i / rate - (time.time() - start)
            if ahead > 0:
                time.sleep(ahead)
    return time.time() - start


def settle(counted, cpu, timeout=120, quiet=3.0):
    """Waits until the count stops moving (`quiet` s without change: both publish their counts
    about once a second); returns (count, cpu)."""
    last, since, deadline = -1, time.time(), time.time() + timeout
    while time.time() < deadline:
        c = counted()
        if c != last:
            last, since = c, time.time()
        elif time.time() - since > quiet:
            break
        time.sleep(0.1)
    return last, cpu()


def run_etsy(tmp, packets, rate):
    got = []
    lock = threading.Lock()
    catcher = socket.socket()
    catcher.bind(("127.0.0.1", 0))
    catcher.listen(16)

    def accept():
        while True:
            try:
                c, _ = catcher.accept()
            except OSError:
                return
            data = b""
            while True:
                b = c.recv(1 << 16)
                if not b:
                    break
                data += b
            for line in data.decode(errors="replace").splitlines():
                f = line.split()
                if len(f) == 3 and f[0] == "stats.counters.statsd.metrics_received.count":
                    with lock:
                        got.append(float(f[1]))

    threading.Thread(target=accept, daemon=True).start()
    port = free_port(socket.SOCK_DGRAM)
    cfg = os.path.join(tmp, "etsy.js")
    with open(cfg, "w") as f:
        f.write(f'{{ port: {port}, address: "127.0.0.1", mgmt_port: {free_port()}, mgmt_address: "127.0.0.1",'
                f' flushInterval: 1000, backends: ["./backends/graphite"], graphiteHost: "127.0.0.1",'
                f' graphitePort: {catcher.getsockname()[1]}, graphite: {{ legacyNamespace: false }},'
                f' percentThreshold: [90] }}\n')
    p = subprocess.Popen(["node", ETSY, cfg], cwd=os.path.dirname(ETSY), stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        before = cpu_seconds(p.pid)
        wall = send(port, packets, rate)

        def counted():
            with lock:
                return sum(got)
        # A flush per second: the count moves until the last datagram's flush.
        time.sleep(1.2)
        n, after = settle(counted, lambda: cpu_seconds(p.pid))
        return n, after - before, wall
    finally:
        p.kill()
        p.wait()
        catcher.close()


def run_tally(tmp, packets, rate):
    port = free_port(socket.SOCK_DGRAM)
    data = os.path.join(tmp, "agent-data")
    shutil.rmtree(data, ignore_errors=True)
    cfg = os.path.join(tmp, "agent.toml")
    with open(cfg, "w") as f:
        f.write(f'host = "bench"\ndata_dir = "{data}"\nmetrics_listen = "127.0.0.1:0"\n'
                f'[statsd]\nenabled = true\nudp_listen = "127.0.0.1:{port}"\ntcp_listen = ""\n'
                f'max_series = 100000\n[output]\nurl = "http://127.0.0.1:9"\n')
    p = subprocess.Popen([TALLY, "-q", "agent", "--config", cfg], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        metrics = [w.split("=", 1)[1] for w in line.split() if w.startswith("metrics=")][0]

        def counted():
            with urllib.request.urlopen(f"http://{metrics}/metrics") as r:
                for l in r.read().decode().splitlines():
                    if l.startswith("tally_agent_statsd_metrics "):
                        return float(l.split()[1])
            return 0.0
        time.sleep(0.5)
        before = cpu_seconds(p.pid)
        wall = send(port, packets, rate)
        n, after = settle(counted, lambda: cpu_seconds(p.pid))
        return n, after - before, wall
    finally:
        p.terminate()
        p.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datagrams", type=int, default=50_000)
    ap.add_argument("--metrics", type=int, default=20, help="metrics per datagram")
    ap.add_argument("--rate", type=float, default=5000,
                    help="datagrams per second, paced so that both keep up (0: as fast as Python sends)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    if not os.path.exists(TALLY):
        sys.exit(f"{TALLY} missing: cargo build --release")
    if not os.path.exists(ETSY):
        sys.exit(f"{ETSY} missing: scripts/setup.sh bench")
    packets = datagrams(a.datagrams, a.metrics)
    sent = a.datagrams * a.metrics
    tmp = tempfile.mkdtemp(prefix="tally_statsd_bench_")
    try:
        print(f"{a.datagrams} datagrams x {a.metrics} metrics = {sent} metrics, "
              f"{sum(map(len, packets)) / 1e6:.1f} MB, {os.cpu_count()} cores, node "
              f"{subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}")
        res = {}
        for name, fn in (("etsy", run_etsy), ("tally", run_tally)):
            n, cpu, wall = fn(tmp, packets, a.rate)
            res[name] = (n, cpu)
            print(f"{name:<6} counted {n:>10.0f} of {sent} metrics ({100 * n / sent:5.1f}%) in {wall:5.2f} s of "
                  f"sending; CPU {cpu:6.2f} s; {n / max(cpu, 1e-3) / 1e6:7.3f} M metrics per CPU-second")
        e, t = (res[k][0] / max(res[k][1], 1e-3) for k in ("etsy", "tally"))
        print(f"ratio tally/etsy: x{t / max(e, 1e-9):.1f} metrics per CPU-second")
    finally:
        if a.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
