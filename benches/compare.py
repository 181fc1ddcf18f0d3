#!/usr/bin/python3
"""The whole performance table in one run: Tally against VictoriaMetrics (and the agent against
mtail and collectd), each harness run once with the peer on the same input in the same run, and
the table printed as the README's Numbers section shows it (`./x bench compare`).

Rows (issue 15's measures; each from the harness named in its last column):

  ingest, points per server CPU-second: 100k x 10, 1M x 5, 1,000 x 8,640 counts and floats
  1M x 5: points per second until every point is queryable; peak RSS; bytes per series
  100k x 10: peak RSS and bytes per series
  bytes per point after compaction: counts, 3-decimal floats
  reads over 1,000 x 24 h: sumSeries, a narrow glob of 10 series, find over 1M names, and
    p50/p99 under 20 dashboard queries a second
  agent: lines per CPU-second with the presets, against mtail and collectd

    /usr/bin/python3 benches/compare.py [--quick] [--skip ingest,query,agent]

--quick runs smaller shapes (for a look, not for the README). Figures move by +-20% between runs
on a shared 2-core machine; ratios come from both systems in the same run.
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"


def run(args, what):
    """Runs a harness, echoing its output to stderr, and returns its stdout."""
    print(f"# {what}: {' '.join(args)}", file=sys.stderr, flush=True)
    t = time.time()
    p = subprocess.run([PY, *args], stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(HERE))
    sys.stderr.write(p.stdout)
    print(f"# {what}: {time.time() - t:.0f} s, exit {p.returncode}", file=sys.stderr, flush=True)
    return p.stdout


def fields(out, target):
    """key=value pairs of ingest_compare's line for `target`."""
    for line in out.splitlines():
        if line.split(" ", 1)[0] == target:
            return {k: v for k, v in re.findall(r"(\S+?)=(\S+)", line)}
    return {}


def num(d, k):
    try:
        return float(d[k])
    except (KeyError, ValueError):
        return None


def m(x, unit=" M", scale=1e6, digits=2):
    return "—" if x is None else f"{x / scale:.{digits}f}{unit}"


def ratio(a, b, higher_better=True):
    if not a or not b:
        return "—"
    return f"x{a / b:.2f}" if higher_better else f"x{b / a:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", default="")
    a = ap.parse_args()
    skip = set(a.skip.split(",")) - {""}
    rows = []
    shapes = [(100_000, 10, "counts"), (1_000_000, 5, "counts"), (1000, 8640, "counts"), (1000, 8640, "floats")]
    if a.quick:
        shapes = [(10_000, 10, "counts"), (100_000, 5, "counts"), (100, 8640, "counts"), (100, 8640, "floats")]
    if "ingest" not in skip:
        for series, points, kind in shapes:
            out = run([f"{HERE}/ingest_compare.py", "--series", str(series), "--points", str(points),
                       "--kind", kind, "--targets", "tally,vm"], f"ingest {series}x{points} {kind}")
            t, v = fields(out, "tally"), fields(out, "victoria-metrics")
            shape = f"{series:,} x {points:,} {kind}"
            tc, vc = num(t, "pts/cpu_s"), num(v, "pts/cpu_s")
            rows.append((f"ingest {shape}, points per server CPU-s", m(tc), m(vc), ratio(tc, vc), "x2"))
            if points <= 10:
                tq, vq = num(t, "pts/s(queryable)"), num(v, "pts/s(queryable)")
                rows.append((f"ingest {shape}, points/s until all queryable", m(tq, " M/s"), m(vq, " M/s"),
                             ratio(tq, vq), "1.5 M/s at 1M series"))
                tr, vr = num(t, "rss_mb"), num(v, "rss_mb")
                per = lambda r: "—" if r is None else f"{r:.0f} MB ({r * 1e6 / series:.0f} B/series)"
                rows.append((f"ingest {shape}, peak RSS", per(tr), per(vr), ratio(tr, vr, False),
                             "<= VictoriaMetrics, 300 B/series"))
            else:
                tb, vb = num(t, "bytes/pt"), num(v, "bytes/pt")
                goal = "0.30" if kind == "floats" else "0.60"
                rows.append((f"bytes per point after compaction, {kind}", m(tb, "", 1, 3), m(vb, "", 1, 3),
                             ratio(tb, vb, False), goal))
    if "query" not in skip:
        args = [f"{HERE}/query_compare.py", "--targets", "tally,vm", "--runs", "5",
                "--find-series", "100000" if a.quick else "1000000"]
        if a.quick:
            args += ["--series", "100"]
        out = run(args, "reads")
        ms = {}
        for line in out.replace("victoria-metrics", "vm").splitlines():
            name = line.split(" ", 1)[0]
            for k, v in re.findall(r"(\w+)=([\d.]+)ms\(", line):
                ms[(name, k)] = float(v)
            f = re.match(r"find over (\d+) names, (\S+) (\S+): ([\d.]+)ms", line)
            if f:
                ms[(f.group(2), "bigfind" if "*.*" in f.group(3) else "nodefind")] = float(f.group(4))
            ld = re.match(r"load (\S+): .*p50=([\d.]+|inf)ms p99=([\d.]+|inf)ms shed=(\d+)/(\d+)", line)
            if ld:
                ms[(ld.group(1), "p50")], ms[(ld.group(1), "p99")] = float(ld.group(2)), float(ld.group(3))
                ms[(ld.group(1), "shed")] = f"{ld.group(4)} of {ld.group(5)}"
        fmt = lambda x: "—" if x is None else f"{x:.1f} ms"
        for key, label, goal in [("sum", "sumSeries over 1,000 series x 24 h", "60 ms"),
                                 ("narrow", "narrow glob, 10 series x 24 h", "2 ms"),
                                 ("bigfind", "/metrics/find over 1M names: big.*.*.x7 (100k match)", "5 ms"),
                                 ("nodefind", "/metrics/find over 1M names: big.h7.* (one node)", "5 ms"),
                                 ("p50", "p50 under 20 dashboard queries/s", "reported"),
                                 ("p99", "p99 under 20 dashboard queries/s", "reported")]:
            t, v = ms.get(("tally", key)), ms.get(("vm", key))
            rows.append((label, fmt(t), fmt(v), ratio(t, v, False), goal))
        shed = lambda who: ms.get((who, "shed"), "—")
        rows.append(("queries shed (503) in that load", shed("tally"), shed("vm"), "", "none"))
    if "agent" not in skip:
        out = run([f"{HERE}/agent_compare.py", "--runs", "1"] + (["--lines", "200000"] if a.quick else []), "agent")
        rates = dict(re.findall(r"^\s+(\S+)\s+([\d.]+) M lines per CPU-second", out, re.M))
        t = float(rates["tally"]) * 1e6 if "tally" in rates else None
        for peer in ("mtail", "collectd"):
            p = float(rates[peer]) * 1e6 if peer in rates else None
            rows.append((f"agent, combined log with the presets, lines per CPU-s (vs {peer})",
                         m(t), m(p, " M", 1e6, 3), ratio(t, p), "3 M"))
    print()
    print("| measure | Tally | VictoriaMetrics or peer | ratio | goal |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\n{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; `./x bench compare`"
          + (" --quick" if a.quick else ""))


if __name__ == "__main__":
    main()
