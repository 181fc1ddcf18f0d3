#!/usr/bin/python3
"""The heaviest graphite functions, Tally against graphite-web 1.1.8 (over carbon), on the same
data in the same run (issue 12; goal: Tally at least 20x faster).

Data, at 60 s steps (both servers keep 60s:15d):
  hw.*.*   100 series x 14 days (a daily wave plus noise): the 7 days asked for and the 7 days of
           Holt-Winters bootstrap before them;
  pc.*.*   1,000 series x 24 h.

Each query runs --runs times on each server; the median wall time is printed, with the ratio.
Before the timed runs every query is sent once to each server, untimed for the ratio: data
that has just arrived is still being flushed and compacted (Tally's first holtWintersForecast
took 283 ms against 83-92 ms a few seconds later), and graphite-web's first request loads its
code. That first time is printed as `first`, so the cold figures stay visible.
The time is a client's, from connecting to the last byte: with --client curl (the default) curl's
`time_total` with the body discarded as it arrives; with --client python urllib's, which reads
the body into memory (for answers of 30-70 MB that reading is tens of milliseconds, the same for
both servers, and a large part of Tally's figure):

  holtWintersForecast         holtWintersForecast(hw.*.*) over 7 d
  holtWintersConfidenceBands  holtWintersConfidenceBands(hw.*.*) over 7 d
  smartSummarize              smartSummarize(pc.*.*, '1h', 'avg') over 24 h
  nPercentile                 nPercentile(pc.*.*, 95) over 24 h
  removeAbovePercentile       removeAbovePercentile(pc.*.*, 95) over 24 h

    cargo build --release --bin tally
    /usr/bin/python3 benches/functions_compare.py [--runs 3] [--client curl|python]
"""

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest_compare import Carbon, Tally, send_tcp  # noqa: E402
from query_compare import GraphiteWeb, median_time, wait_until  # noqa: E402

STEP = 60
RETENTIONS = "60s:15d"
DAY = 86400


def generate(path, end):
    rng = random.Random(7)
    hw = [f"hw.h{i // 10}.m{i % 10}" for i in range(100)]
    pc = [f"pc.h{i // 10}.m{i % 10}" for i in range(1000)]
    with open(path, "w") as f:
        for ts in range(end - 14 * DAY + STEP, end + 1, STEP):
            phase = 2 * math.pi * (ts % DAY) / DAY
            f.write("".join(f"{n} {50 + 20 * math.sin(phase + k) + rng.gauss(0, 3):.3f} {ts}\n"
                            for k, n in enumerate(hw)))
        for ts in range(end - DAY + STEP, end + 1, STEP):
            f.write("".join(f"{n} {rng.uniform(0, 100):.3f} {ts}\n" for n in pc))
    return hw, pc


def queries(end):
    week = {"from": end - 7 * DAY, "until": end}
    day = {"from": end - DAY, "until": end}
    return [
        ("holtWintersForecast", "holtWintersForecast(hw.*.*)", week),
        ("holtWintersConfidenceBands", "holtWintersConfidenceBands(hw.*.*)", week),
        ("smartSummarize", "smartSummarize(pc.*.*, '1h', 'avg')", day),
        ("nPercentile", "nPercentile(pc.*.*, 95)", day),
        ("removeAbovePercentile", "removeAbovePercentile(pc.*.*, 95)", day),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--client", choices=["curl", "python"], default="curl",
                    help="what times each request (see above)")
    args = ap.parse_args()
    top = tempfile.mkdtemp(prefix="tally_functions_")
    servers = []
    end = int(time.time()) // STEP * STEP
    try:
        path = os.path.join(top, "points.txt")
        hw, pc = generate(path, end)
        print(f"# {len(hw)} series x 14 d and {len(pc)} series x 24 h at {STEP} s; {args.runs} runs each, timed by {args.client}", flush=True)

        os.makedirs(os.path.join(top, "tally"))
        t = Tally(os.path.join(top, "tally"), retentions=RETENTIONS)
        servers.append(t)
        send_tcp(path, t.line_port)
        os.makedirs(os.path.join(top, "carbon"))
        c = Carbon(os.path.join(top, "carbon"), retentions=RETENTIONS)
        servers.append(c)
        g = GraphiteWeb(os.path.join(top, "carbon"), c)
        servers.append(g)
        send_tcp(path, c.line_port, timeout=5)
        for s in (t, c):
            wait_until(s.name, lambda: s.count(pc[-1], end - 3540, end) == 60
                       and s.count(hw[-1], end - 14 * DAY + 2 * STEP, end - 13 * DAY) > 1000, limit=1800)

        bases = {"tally": f"http://127.0.0.1:{t.http_port}", "graphite-web": f"http://127.0.0.1:{g.port}"}
        urls = [(label, urllib.parse.urlencode({"target": target, "format": "json", **rng}))
                for label, target, rng in queries(end)]
        first = {}
        for label, q in urls:
            for name, base in bases.items():
                first[(label, name)] = median_time(f"{base}/render?{q}", 1, args.client)[0]
        results = {}
        for label, q in urls:
            for name, base in bases.items():
                results[(label, name)] = median_time(f"{base}/render?{q}", args.runs, args.client)
        worst = None
        for label, _, _ in queries(end):
            (tt, tb), (gt, gb) = results[(label, "tally")], results[(label, "graphite-web")]
            ratio = gt / tt
            worst = ratio if worst is None else min(worst, ratio)
            ft, fg = first[(label, "tally")], first[(label, "graphite-web")]
            print(f"{label:<28} tally {tt * 1000:9.1f} ms ({tb} B; first {ft * 1000:.1f})   "
                  f"graphite-web {gt * 1000:9.1f} ms ({gb} B; first {fg * 1000:.1f})   x{ratio:.1f}", flush=True)
        print(f"slowest ratio: x{worst:.1f} (goal x20: {'met' if worst >= 20 else 'NOT met'})")
    finally:
        for s in reversed(servers):
            try:
                s.stop()
            except Exception:
                if getattr(s, "proc", None) and s.proc.poll() is None:
                    s.proc.kill()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
