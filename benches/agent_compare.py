#!/usr/bin/python3
"""The agent against mtail, side by side, on the same generated access log.

`tally gen-log` writes N realistic combined-format lines (with vhost, CDN and request time
fields, a few percent failure beacons and 0.2% malformed lines) and the exact expected counts.
Then each program reads the whole file once, from a warm page cache:

  mtail   mtail --one_shot with benches/mtail/access.mtail (lines, unparsed lines, requests by
          status and by vhost, beacons by source, a request-time histogram)
  tally   tally agent --once with its presets (requests by vhost and status class, bytes by
          vhost, request-time HDR histograms by vhost, beacons by source, requests by CDN)

Both sets of counters are checked against the generator's counts, so neither wins by skipping
work. The figure of merit is lines per CPU-second (user+sys: mtail uses more than one core);
wall time is printed too. Medians over --runs, and the ratio tally/mtail.

    benches/agent_compare.py [--lines 1000000] [--runs 3] [--keep]

Needs a release build (cargo build --release) and mtail (scripts/setup.sh bench).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TALLY = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "tally")
MTAIL_PROG = os.path.join(ROOT, "benches", "mtail")


def timed(cmd, cwd):
    """Runs cmd under /usr/bin/time; returns (stdout, wall_s, cpu_s, peak_rss_mb)."""
    tf = os.path.join(cwd, "time.txt")
    out = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf] + cmd, cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    wall, user, sys_, rss = open(tf).read().split()
    return out.stdout, float(wall), float(user) + float(sys_), int(rss) / 1024


def check(name, got, want):
    ok = got == want
    print(f"  check {name:<28} {'OK' if ok else 'MISMATCH got=%s want=%s' % (got, want)}")
    return ok


def run_mtail(log, tmp, truth):
    out, wall, cpu, rss = timed(["mtail", "-one_shot", "-one_shot_format", "json", "-progs", MTAIL_PROG,
                                 "-logs", log, "-logtostderr", "-address", "127.0.0.1", "-port", "0"], tmp)
    got = {}
    for name, metrics in json.loads(out).items():
        for m in metrics:
            for lv in m.get("LabelValues", []):
                key = ",".join(lv.get("Labels", []))
                v = lv["Value"]
                if "Buckets" in v:
                    got[name] = {"count": v["Count"]}
                else:
                    got.setdefault(name, {})[key] = v["Value"]
    good = truth["lines"] - truth["bad"]
    ok = all([
        check("mtail lines", got["lines_total"][""], truth["lines"]),
        check("mtail unparsed", got.get("unparsed_lines_total", {}).get("", 0), truth["bad"]),
        check("mtail requests by status", got["requests_by_status"], {str(k): v for k, v in truth["status"].items()}),
        check("mtail beacons by source", got["beacon_hits_total"], truth["beacons"]),
        check("mtail histogram count", got["request_time_seconds"]["count"], good),
    ])
    return wall, cpu, rss, ok


def run_tally(log, tmp, truth):
    data = os.path.join(tmp, "agent-data")
    shutil.rmtree(data, ignore_errors=True)
    cfg = os.path.join(tmp, "agent.toml")
    with open(cfg, "w") as f:
        # Nothing listens on port 9: the points stay in the spool, as with a store that is away.
        f.write(f'data_dir = "{data}"\n[[input]]\npaths = ["{log}"]\nstart_at = "beginning"\n'
                f'[output]\nurl = "http://127.0.0.1:9"\n')
    out, wall, cpu, rss = timed([TALLY, "-q", "agent", "--config", cfg, "--once"], tmp)
    c = json.loads(out.strip().splitlines()[-1])
    good = truth["lines"] - truth["bad"]
    ok = all([
        check("tally lines", c["lines_read"], truth["lines"]),
        check("tally bad", c["lines_bad"], truth["bad"]),
        check("tally requests", c["lines_matched"]["requests"], good),
        check("tally beacons", c["lines_matched"]["beacons"], sum(truth["beacons"].values())),
        check("tally latency count", c["lines_matched"]["latency"], good),
    ])
    return wall, cpu, rss, ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    if not os.path.exists(TALLY):
        sys.exit(f"{TALLY} missing: cargo build --release")
    if not shutil.which("mtail"):
        sys.exit("mtail missing: scripts/setup.sh bench")
    tmp = tempfile.mkdtemp(prefix="tally_agent_bench_")
    try:
        log = os.path.join(tmp, "access.log")
        tf = os.path.join(tmp, "truth.json")
        subprocess.run([TALLY, "gen-log", "--out", log, "--lines", str(a.lines), "--seed", "1",
                        "--start", "1790000000", "--truth", tf], check=True)
        truth = json.load(open(tf))
        size = os.path.getsize(log)
        with open(log, "rb") as f:  # warm the page cache: time the programs, not the disk
            while f.read(1 << 24):
                pass
        print(f"{a.lines} lines, {size / 1e6:.0f} MB, {os.cpu_count()} cores, mtail "
              f"{subprocess.run(['mtail', '--version'], capture_output=True, text=True).stdout.split()[2]}")
        res = {"mtail": [], "tally": []}
        all_ok = True
        for r in range(a.runs):
            for name, fn in (("mtail", run_mtail), ("tally", run_tally)):
                wall, cpu, rss, ok = fn(log, tmp, truth)
                all_ok &= ok
                res[name].append((wall, cpu, rss))
                print(f"run {r + 1} {name:<6} wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
                      f"{a.lines / wall / 1e6:6.3f} M lines/s  {a.lines / max(cpu, 1e-3) / 1e6:6.3f} M lines/CPU-s  "
                      f"peak RSS {rss:6.1f} MB")
        med = {n: [statistics.median(x[i] for x in v) for i in range(3)] for n, v in res.items()}
        print("\nmedians:")
        for n, (wall, cpu, rss) in med.items():
            print(f"  {n:<6} {a.lines / max(cpu, 1e-3) / 1e6:7.3f} M lines per CPU-second, "
                  f"{a.lines / wall / 1e6:7.3f} M lines/s wall, {size / wall / 1e6:7.1f} MB/s, peak RSS {rss:.1f} MB")
        print(f"  ratio tally/mtail: x{med['mtail'][1] / max(med['tally'][1], 1e-3):.1f} per CPU-second, "
              f"x{med['mtail'][0] / max(med['tally'][0], 1e-3):.1f} wall")
        if not all_ok:
            sys.exit("some counters did not match the generator's")
    finally:
        if a.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
