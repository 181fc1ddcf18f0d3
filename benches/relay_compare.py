#!/usr/bin/python3
"""Ingest through carbon-c-relay into 1, 2 and 3 Tally stores, against one store fed directly.

The same Graphite plaintext as benches/ingest_compare.py (S series x P points, 10 s apart,
time-major) goes, in the same run, to

  direct     one `tally store`, over TCP, no relay (the reference)
  relay-N    carbon-c-relay 3.7 (Debian carbon-c-relay) with `carbon_ch replication R` in front
             of N stores (R = min(N, --replication), the cluster of examples/relay/carbon_ch.conf
             with N servers), over TCP to the relay

each started fresh on 127.0.0.1 ports picked here. A configuration is done when every copy of
a sample of series (first, last and evenly spread) is readable on the stores (R copies each),
and the processes have gone idle; then the stores are stopped (their flush counts, as in
ingest_compare.py). The figure is points sent per CPU-second of the whole (user+sys of the
relay and every store, from /proc and getrusage), with the relay's share; "stored/cpu_s"
counts every replica. The relay's queue per store (-q) is made large enough for the whole
input, so that nothing is dropped for want of room (a check of the sample would say so).

    benches/relay_compare.py [--series 100000] [--points 10] [--stores 1,2,3] [--runs 3]

Medians over --runs. Needs a release build (cargo build --release) and carbon-c-relay
(scripts/setup.sh bench).
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest_compare import TALLY, Tally, cpu_s, free_port, generate, send_tcp, wait_port  # noqa: E402

RELAY = "/usr/bin/carbon-c-relay"


class Relay:
    def __init__(self, workdir, stores, replication, queue):
        self.port = free_port()
        servers = " ".join(f"127.0.0.1:{s.line_port}={chr(ord('a') + i)}" for i, s in enumerate(stores))
        conf = os.path.join(workdir, "relay.conf")
        with open(conf, "w") as f:
            f.write(f"listen type linemode 127.0.0.1:{self.port} proto tcp ;\n"
                    f"cluster tally carbon_ch replication {replication} {servers} ;\n"
                    "match * send to tally stop ;\n")
        self.log = open(os.path.join(workdir, "relay.log"), "w")
        self.proc = subprocess.Popen([RELAY, "-f", conf, "-q", str(queue), "-H", "bench"],
                                     stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        if not wait_port(self.port):
            raise RuntimeError("carbon-c-relay did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def idle(pids, limit=120):
    """Waits until the processes together burn < 0.05 CPU-s per second twice in a row."""
    total = lambda: sum(cpu_s(p) for p in pids)  # noqa: E731
    quiet, prev, end = 0, total(), time.time() + limit
    while time.time() < end and quiet < 2:
        time.sleep(1)
        cur = total()
        quiet = quiet + 1 if cur - prev < 0.05 else 0
        prev = cur


def run_one(n, replication, path, names, start, end, points, wait, workdir):
    """One configuration: n stores (0: direct to one store, no relay)."""
    stores = []
    for i in range(max(n, 1)):
        os.makedirs(os.path.join(workdir, f"store{i}"))
        stores.append(Tally(os.path.join(workdir, f"store{i}")))
    relay = None
    repl = min(n, replication) if n else 1
    try:
        if n:
            relay = Relay(workdir, stores, repl, queue=2 * len(names) * points)
        time.sleep(0.5)
        pids = [s.pid for s in stores] + ([relay.pid] if relay else [])
        cpu0 = sum(cpu_s(p) for p in pids)
        relay0 = cpu_s(relay.pid) if relay else 0.0
        t0 = time.time()
        send_tcp(path, relay.port if relay else stores[0].line_port, timeout=5)
        accept = time.time() - t0
        sample = sorted({0, len(names) - 1, *range(0, len(names), max(1, len(names) // 18))})
        pending = [names[i] for i in sample]
        done = None
        deadline = time.time() + wait
        while time.time() < deadline:
            pending = [m for m in pending if sum(s.count(m, start, end) for s in stores) < repl * points]
            if not pending:
                done = time.time() - t0
                break
            time.sleep(0.2)
        idle(pids)
        relay_cpu = (cpu_s(relay.pid) - relay0) if relay else 0.0
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if relay:
            relay.stop()
        for s in stores:
            s.stop()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) - cpu0
        return {"accept_s": accept, "done_s": done, "cpu_s": cpu, "relay_cpu_s": relay_cpu,
                "replication": repl, "missing": len(pending)}
    finally:
        for p in [s.proc for s in stores] + ([relay.proc] if relay else []):
            if p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--stores", default="1,2,3", help="relay configurations, by number of stores")
    ap.add_argument("--replication", type=int, default=2, help="at most this many copies (fewer stores: fewer)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--wait", type=int, default=600, help="max seconds for the sample to be readable")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not os.access(TALLY, os.X_OK):
        sys.exit(f"{TALLY} missing: cargo build --release first")
    if not os.path.exists(RELAY):
        sys.exit("carbon-c-relay is not installed: scripts/setup.sh bench")
    configs = [0] + [int(n) for n in args.stores.split(",")]
    top = tempfile.mkdtemp(prefix="tally_relay_")
    try:
        path = os.path.join(top, "points.txt")
        names, start, end = generate(path, args.series, args.points, "counts")
        npts = args.series * args.points
        print(f"# {npts} points: {args.series} series x {args.points}, "
              f"{os.path.getsize(path) / 1e6:.0f} MB, {os.cpu_count()} cores, {args.runs} runs", flush=True)
        results = {n: [] for n in configs}
        for run in range(args.runs):
            for n in configs:
                workdir = os.path.join(top, f"run{run}-{n}")
                os.makedirs(workdir)
                r = run_one(n, args.replication, path, names, start, end, args.points, args.wait, workdir)
                label = f"relay-{n}" if n else "direct"
                done = f"{r['done_s']:.2f}" if r["done_s"] else f"timeout ({r['missing']} sample series short)"
                print(f"run {run} {label:<8} R={r['replication']} accept_s={r['accept_s']:.2f} done_s={done} "
                      f"cpu_s={r['cpu_s']:.2f} (relay {r['relay_cpu_s']:.2f}) "
                      f"pts/cpu_s={npts / r['cpu_s']:.0f} stored/cpu_s={npts * r['replication'] / r['cpu_s']:.0f}",
                      flush=True)
                results[n].append(r)
                if args.keep:
                    print(f"# kept {workdir}", flush=True)
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
        print(f"\nmedians over {args.runs} runs (points sent per CPU-second of relay + stores):")
        base = None
        for n in configs:
            rs = results[n]
            cpu = statistics.median(r["cpu_s"] for r in rs)
            relay = statistics.median(r["relay_cpu_s"] for r in rs)
            repl = rs[0]["replication"]
            pts = npts / cpu
            base = base or pts
            label = f"relay -> {n} store{'s' if n > 1 else ''}" if n else "one store, no relay"
            print(f"{label:<22} R={repl} pts/cpu_s={pts:>10.0f} stored/cpu_s={pts * repl:>10.0f} "
                  f"relay share={relay / cpu:5.1%} vs direct x{base / pts:.2f} CPU per point")
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
