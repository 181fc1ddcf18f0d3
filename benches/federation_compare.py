#!/usr/bin/python3
"""Federated reads against one store, in the same run (issue 14).

S series x P points (10 s apart) go through a real carbon-c-relay (carbon_ch, --replication) to
three `tally store`s and, the same file, straight into one reference store. A `tally query` node
reads the three. Each query then runs --runs times against the node and against the reference,
and the median wall times are printed with their ratio (goal: the node at most 1.5x):

  sum      sumSeries(bench.*.*) over the whole range (every point of every series read)
  narrow   bench.host7.* over the whole range (10 series)
  find     /metrics/find?query=bench.*

    /usr/bin/python3 benches/federation_compare.py [--series 3000] [--points 2160] [--runs 7] [--replication 2]

Needs a release build (cargo build --release --bin tally) and carbon-c-relay
(scripts/setup.sh test installs it).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest_compare import TALLY, Tally, free_port, generate, send_tcp, wait_port  # noqa: E402

RELAY = "/usr/bin/carbon-c-relay"


class Relay:
    """carbon-c-relay over the stores' plaintext ports: carbon_ch hashes host and instance."""

    def __init__(self, workdir, line_ports, replication=2):
        servers = "".join(f"        127.0.0.1:{p}={chr(97 + i)}\n" for i, p in enumerate(line_ports))
        conf = os.path.join(workdir, "relay.conf")
        with open(conf, "w") as f:
            f.write(f"cluster tally\n    carbon_ch replication {replication}\n{servers}    ;\n"
                    "match *\n    send to tally\n    stop\n    ;\n")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [RELAY, "-f", conf, "-p", str(self.port), "-s", "-w", "2", "-q", "2000000",
             "-l", os.path.join(workdir, "relay.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


class QueryNode:
    def __init__(self, workdir, http_ports, replication=2):
        peers = ",".join(f"http://127.0.0.1:{p}" for p in http_ports)
        self.proc = subprocess.Popen(
            [TALLY, "-q", "query", "--peers", peers, "--replication", str(replication),
             "--http-listen", "127.0.0.1:0", "--state-dir", os.path.join(workdir, "node")],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        self.http_port = int(fields["http"].rsplit(":", 1)[1])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def get(url, timeout=600):
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
        partial = r.headers.get("x-tally-partial")
    return time.perf_counter() - t, body, partial


def render(port, target, frm, until):
    q = urllib.parse.urlencode({"target": target, "from": frm, "until": until, "format": "json"})
    return f"http://127.0.0.1:{port}/render?{q}"


def complete(port, series, until):
    """Every series present with its last point."""
    try:
        _, body, _ = get(render(port, "bench.*.*", until - 10, until))
        got = json.loads(body)
        return len(got) == series and all(s["datapoints"][-1][0] is not None for s in got)
    except (OSError, ValueError, KeyError, IndexError):
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=3000)
    ap.add_argument("--points", type=int, default=2160)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--replication", type=int, default=2, help="the relay's and the node's (1-3)")
    ap.add_argument("--hold", type=int, default=0, metavar="SECONDS",
                    help="keep the stores and the node up this long after the table (to profile them)")
    args = ap.parse_args()
    for need in (TALLY, RELAY):
        if not os.path.exists(need):
            sys.exit(f"{need} is missing (cargo build --release --bin tally; scripts/setup.sh test)")
    work = tempfile.mkdtemp(prefix="tally-federation-")
    # A TERM (ending a --hold early) stops the stores and the node too, as the end of a run does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    procs = []
    try:
        data = os.path.join(work, "input.txt")
        names, start, end = generate(data, args.series, args.points, "floats")
        stores = []
        for i in range(3):
            d = os.path.join(work, f"s{i}")
            os.makedirs(d)
            stores.append(Tally(d, retentions="10s:2d"))
        ref_dir = os.path.join(work, "reference")
        os.makedirs(ref_dir)
        ref = Tally(ref_dir, retentions="10s:2d")
        procs = stores + [ref]
        relay = Relay(work, [s.line_port for s in stores], args.replication)
        procs.append(relay)
        node = QueryNode(work, [s.http_port for s in stores], args.replication)
        procs.append(node)
        t = time.perf_counter()
        send_tcp(data, relay.port)
        send_tcp(data, ref.line_port)
        deadline = time.time() + 1800
        while not (complete(node.http_port, args.series, end)
                   and complete(ref.http_port, args.series, end)):
            if time.time() > deadline:
                sys.exit("the stores never held every point")
            time.sleep(1)
        print(f"{args.series} series x {args.points} points: through the relay to 3 stores "
              f"(replication {args.replication}) and into the reference, all queryable after {time.perf_counter() - t:.1f} s")
        frm, until = start - 10, end
        queries = {
            "sum": lambda p: render(p, "sumSeries(bench.*.*)", frm, until),
            "narrow": lambda p: render(p, "bench.host7.*", frm, until),
            "find": lambda p: f"http://127.0.0.1:{p}/metrics/find?query=bench.*",
        }
        print(f"{'query':8} {'one store ms':>13} {'query node ms':>14} {'node/store':>11}")
        for name, url in queries.items():
            one, fed = [], []
            body_one = body_fed = None
            for _ in range(args.runs):
                dt, body_one, _ = get(url(ref.http_port))
                one.append(dt)
                dt, body_fed, partial = get(url(node.http_port))
                fed.append(dt)
                if partial:
                    sys.exit(f"{name}: the node's answer is partial ({partial})")
            same = json.loads(body_one) == json.loads(body_fed)
            a, b = statistics.median(one) * 1000, statistics.median(fed) * 1000
            print(f"{name:8} {a:13.1f} {b:14.1f} {b / a:10.2f}x{'' if same else '  ANSWERS DIFFER'}")
        if args.hold:
            pids = " ".join(str(s.proc.pid) for s in stores)
            print(f"holding {args.hold} s: node http://127.0.0.1:{node.http_port} (pid {node.proc.pid}), "
                  f"reference http://127.0.0.1:{ref.http_port}, stores pids {pids}; "
                  f"sum: {queries['sum'](node.http_port)}", flush=True)
            time.sleep(args.hold)
    finally:
        for p in reversed(procs):
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
