#!/usr/bin/python3
"""The agent against mtail and collectd, side by side, on the same generated access log.

`tally gen-log` writes N realistic combined-format lines (with vhost, CDN and request time
fields, a few percent failure beacons and 0.2% malformed lines) and the exact expected counts.
Then each program reads the whole file once, from a warm page cache:

  mtail   mtail --one_shot with benches/mtail/access.mtail (lines, unparsed lines, requests by
          status and by vhost, beacons by source, a request-time histogram)
  collectd collectd 5.12 (Debian collectd-core) with its tail plugin, from a collectd.conf
          generated in the temp dir (no system config), reporting through write_graphite to a
          TCP catcher in this script; one Match per series, since a tail Match has a fixed
          name: requests by vhost x status class, bytes by vhost, request-time percentiles and
          max by vhost, beacons by source, requests by CDN (COLLECTD_NOT_EQUIVALENT below says
          where this differs from the presets)
  tally   tally agent --once with its presets (requests by vhost and status class, bytes by
          vhost, request-time HDR histograms by vhost, beacons by source, requests by CDN)

Every program's counters are checked against the generator's counts, so none wins by skipping
work. The figure of merit is lines per CPU-second (user+sys: mtail uses more than one core);
wall time is printed too. Medians over --runs, and the ratio of tally to each peer.

collectd is a daemon that follows a file from its end, so it is started on an empty file of
that name, and once it holds that open, the log (a hard link to it: a new inode) is renamed
over it; collectd's tail reader sees the new inode at its next pass and reads it from the
start. Its CPU is user+sys of the process from /proc at the moment the catcher has its final
counts (lines equal to the file's), its wall time from the rename to then.

    benches/agent_compare.py [--lines 1000000] [--runs 3] [--peers mtail,collectd] [--keep]

Needs a release build (cargo build --release); mtail and collectd come from scripts/setup.sh
bench, and a peer that is not installed is skipped.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TALLY = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "tally")
MTAIL_PROG = os.path.join(ROOT, "benches", "mtail")
COLLECTD = "/usr/sbin/collectd"


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


# --- collectd ------------------------------------------------------------------------------
#
# collectd's tail plugin runs every <Match> of a file on every line (POSIX extended regexes,
# glibc's regexec), and a Match writes one fixed series: its name cannot come from a capture.
# So each series the presets write by a captured value (vhost, status class, beacon source,
# CDN) is one Match here, for the values the generator writes (agent/src/gen.rs; the vhosts and
# sources from its truth file, the CDNs below). What is not equivalent is listed here and
# printed with the results.
COLLECTD_CDNS = ["fastly", "akamai", "edgecast", "origin"]  # gen.rs CDNS
COLLECTD_NOT_EQUIVALENT = [
    "series are fixed per Match: only the vhosts, status classes, beacon sources and CDNs listed "
    "in its config are counted (the presets take any value, up to max_values, then 'other')",
    "every Match runs its own regex on every line; the presets parse a line once",
    "the regexes check a line from the '] \"' after its time on: the IP, ident, user and time "
    "are not checked, and the time is not used",
    "counts and sums are cumulative since collectd started, stamped with the time collectd read "
    "them; the presets count per 10 s interval by the log line's own time",
    "request time: collectd's Distribution gives p50/p90/p99 per read pass from a 1000-bin linear "
    "histogram whose bin width doubles to fit the largest value (coarse), ignores times of 0, "
    "and has no count (the presets: HDR count, p50/p90/p99, max per interval); max is a separate "
    "GaugeMax Match, per read pass",
    "a line that begins with a NUL byte looks like end of file to collectd's reader: it is not "
    "counted, and it ends the read pass until the next Interval",
    "no 'bad line' count: a malformed line just matches nothing",
]

# One access line, as the presets read it: IP ident user [time] "METHOD PATH PROTO" STATUS
# BYTES "REFERER" "UA" vhost=V cdn=C rt=S. POSIX ERE: no \d, \S or non-capturing groups, and
# the value a Match takes is its first group. The regexes begin at the '] "' that ends the time,
# not at ^: collectd compiles them with REG_NEWLINE, under which glibc tries a ^-anchored regex
# at every position of the line (about x3 the CPU here), while a leading literal lets it skip to
# the one ']'. So the IP, ident, user and time are not checked (the presets parse them).
_CD_HEAD = r'\] "[A-Z]+ '
_CD_REQ = _CD_HEAD + r'[^ ]+ [^"]*" '


def _ere(s):
    return re.sub(r"([.?+*()\[\]{}|^$\\])", r"\\\1", s)


def collectd_matches(truth):
    """The <Match> blocks: (type, instance, dstype, regex, extra options)."""
    def rest(vhost="[^ ]+", cdn="[^ ]+", rt="[0-9.]+"):
        return f'"[^"]*" "[^"]*" vhost={vhost} cdn={cdn} rt={rt}$'
    # "^." rather than "^": collectd cannot take an empty match (match_substr fails).
    ms = [("derive", "lines", "DeriveInc", "^.", "")]
    classes = sorted({str(s)[0] for s in truth["status"]})
    for v in sorted(truth["vhost"]):
        ev = _ere(v)
        for c in classes:
            ms.append(("http_requests", f"req-{v}-{c}xx", "DeriveInc",
                       _CD_REQ + f"{c}[0-9][0-9] [0-9-]+ " + rest(vhost=ev), ""))
        ms.append(("total_bytes", f"bytes-{v}", "DeriveAdd",
                   _CD_REQ + "[0-9]{3} ([0-9]+) " + rest(vhost=ev), ""))
        ms.append(("latency", f"rt-{v}", "Distribution",
                   _CD_REQ + "[0-9]{3} [0-9-]+ " + rest(vhost=ev, rt="([0-9.]+)"),
                   "Percentile 50\nPercentile 90\nPercentile 99\n"))
        ms.append(("latency", f"rtmax-{v}", "GaugeMax",
                   _CD_REQ + "[0-9]{3} [0-9-]+ " + rest(vhost=ev, rt="([0-9.]+)"), ""))
    for src in sorted(truth["beacons"]):
        ms.append(("http_requests", f"beacon-{src}", "DeriveInc",
                   _CD_HEAD + r'/status/images/beacon\.gif\?([^ "]*&)?source=' + _ere(src)
                   + r'[& ][^"]*" [0-9]{3} [0-9-]+ ' + rest(), ""))
    for cdn in COLLECTD_CDNS:
        ms.append(("http_requests", f"cdn-{cdn}", "DeriveInc",
                   _CD_REQ + "[0-9]{3} [0-9-]+ " + rest(cdn=_ere(cdn)), ""))
    return ms


def _cq(s):
    """A collectd.conf string: backslashes and quotes escaped."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def collectd_conf(d, log, port, matches, interval):
    blocks = []
    for typ, inst, ds, rx, extra in matches:
        if extra:  # Distribution's Percentile options go in a DSType block
            dst = (f"      <DSType {_cq(ds)}>\n" + "".join(f"        {o}\n" for o in extra.splitlines())
                   + "      </DSType>\n")
        else:
            dst = f"      DSType {_cq(ds)}\n"
        blocks.append(f"    <Match>\n      Regex {_cq(rx)}\n{dst}"
                      f"      Type {_cq(typ)}\n      Instance {_cq(inst)}\n    </Match>\n")
    return f"""# Generated by benches/agent_compare.py; no system configuration is read.
Hostname "bench"
FQDNLookup false
BaseDir {_cq(d)}
PIDFile {_cq(os.path.join(d, "collectd.pid"))}
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
AutoLoadPlugin false
Interval {interval}
# The tail read runs in one thread; a second one runs write_graphite's flush beside it.
ReadThreads 2
# One writer keeps the values in dispatch order on the catcher's connection.
WriteThreads 1

LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File {_cq(os.path.join(d, "collectd.log"))}
  Timestamp true
</Plugin>

<LoadPlugin write_graphite>
  FlushInterval {interval}
</LoadPlugin>
<Plugin write_graphite>
  <Node "catcher">
    Host "127.0.0.1"
    Port "{port}"
    Protocol "tcp"
    Prefix "collectd."
    StoreRates false
    AlwaysAppendDS false
    SeparateInstances false
    EscapeCharacter "_"
    LogSendErrors true
  </Node>
</Plugin>

LoadPlugin tail
<Plugin tail>
  <File {_cq(log)}>
    Instance "access"
    Interval {interval}
{"".join(blocks)}  </File>
</Plugin>
"""


def collectd_name(typ, inst):
    """The write_graphite name of a Match's series (dots in instances become '_')."""
    return f"collectd.bench.tail-access.{typ}-{inst.replace('.', '_')}"


class Catcher:
    """A Graphite plaintext listener on 127.0.0.1 that keeps the last value of each name."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.last = {}
        self.lines = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        buf = b""
        with conn:
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    parts = line.split()
                    if len(parts) == 3:
                        self.last[parts[0].decode()] = float(parts[1])
                        self.lines += 1

    def close(self):
        self.sock.close()


def proc_cpu_rss(pid):
    """User+sys CPU seconds (all threads) and peak RSS in MB of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def holds_open(pid, path):
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def run_collectd(log, tmp, truth, nul_lines, interval=0.02, stall_s=60):
    d = os.path.join(tmp, "collectd")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    path = os.path.join(d, "access.log")
    open(path, "w").close()  # what collectd opens (and seeks to the end of) first
    matches = collectd_matches(truth)
    catcher = Catcher()
    conf = os.path.join(d, "collectd.conf")
    with open(conf, "w") as f:
        f.write(collectd_conf(d, path, catcher.port, matches, interval))
    name = {inst: collectd_name(typ, inst) for typ, inst, _, _, _ in matches}
    good = truth["lines"] - truth["bad"]
    want_lines = truth["lines"] - nul_lines
    classes = sorted({str(s)[0] for s in truth["status"]})
    want_class = {c: sum(n for s, n in truth["status"].items() if str(s)[0] == c) for c in classes}

    def got():
        v = catcher.last
        g = {"lines": v.get(name["lines"]),
             "class": {c: sum(v.get(name[f"req-{h}-{c}xx"], 0) for h in truth["vhost"]) for c in classes},
             "vhost": {h: sum(v.get(name[f"req-{h}-{c}xx"], 0) for c in classes) for h in truth["vhost"]},
             "beacons": {s: v.get(name[f"beacon-{s}"], 0) for s in truth["beacons"]},
             "cdn": sum(v.get(name[f"cdn-{c}"], 0) for c in COLLECTD_CDNS)}
        return g

    def complete(g):
        return (g["lines"] == want_lines and g["class"] == want_class and g["vhost"] == truth["vhost"]
                and g["beacons"] == truth["beacons"] and g["cdn"] == good)

    logf = open(os.path.join(d, "stderr.txt"), "w")
    p = subprocess.Popen([COLLECTD, "-f", "-C", conf], cwd=d, stdout=logf, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not holds_open(p.pid, path):
            if p.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"collectd did not open {path}:\n"
                         + open(os.path.join(d, "collectd.log")).read()[-2000:])
            time.sleep(0.01)
        nxt = path + ".next"
        os.link(log, nxt)
        t0 = time.monotonic()
        os.rename(nxt, path)  # a new inode: collectd's next pass reads it from the start
        progress, seen, at_lines = time.monotonic(), None, None
        while True:
            g = got()
            now = time.monotonic()
            if complete(g):
                cpu, rss = proc_cpu_rss(p.pid)
                wall = now - t0
                break
            if g["lines"] != seen:
                seen, progress = g["lines"], now
            if g["lines"] == want_lines and at_lines is None:
                at_lines = now
            # All lines read but the counters do not add up (after a few flushes): a mismatch.
            if (at_lines is not None and now - at_lines > 3) or now - progress > stall_s or p.poll() is not None:
                cpu, rss = proc_cpu_rss(p.pid) if p.poll() is None else (0.0, 0.0)
                wall = now - t0
                print(f"  collectd stopped at {g['lines']} of {want_lines} lines; its log:\n"
                      + open(os.path.join(d, "collectd.log")).read()[-1500:])
                break
            time.sleep(0.01)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        logf.close()
        catcher.close()
    g = got()
    last = catcher.last
    lat = [last.get(name[f"rt-{h}"] + "-99") for h in truth["vhost"]]
    ok = all([
        check("collectd lines", g["lines"], want_lines),
        check("collectd requests by class", g["class"], want_class),
        check("collectd requests by vhost", g["vhost"], truth["vhost"]),
        check("collectd beacons by source", g["beacons"], truth["beacons"]),
        check("collectd requests by CDN, sum", g["cdn"], good),
        check("collectd latency p99 written", all(x is not None for x in lat), True),
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


def version(cmd, pick):
    out = subprocess.run(cmd, capture_output=True, text=True)
    return pick(out.stdout + out.stderr)


PEERS = {
    "mtail": (lambda: shutil.which("mtail"),
              lambda: version(["mtail", "--version"], lambda o: o.split()[2])),
    "collectd": (lambda: os.access(COLLECTD, os.X_OK),
                 lambda: version([COLLECTD, "-h"], lambda o: re.search(r"^collectd (\S+),", o, re.M).group(1))),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peers", default="mtail,collectd", help="comma-separated; a missing one is skipped")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    if not os.path.exists(TALLY):
        sys.exit(f"{TALLY} missing: cargo build --release")
    peers = []
    for p in a.peers.split(","):
        if not p:
            continue
        if p not in PEERS:
            sys.exit(f"unknown peer {p!r} (known: {', '.join(PEERS)})")
        if PEERS[p][0]():
            peers.append(p)
        else:
            print(f"{p} is not installed (scripts/setup.sh bench): skipped")
    tmp = tempfile.mkdtemp(prefix="tally_agent_bench_")
    try:
        log = os.path.join(tmp, "access.log")
        tf = os.path.join(tmp, "truth.json")
        subprocess.run([TALLY, "gen-log", "--out", log, "--lines", str(a.lines), "--seed", "1",
                        "--start", "1790000000", "--truth", tf], check=True)
        truth = json.load(open(tf))
        size = os.path.getsize(log)
        nul_lines = 0
        with open(log, "rb") as f:  # warm the page cache: time the programs, not the disk
            for line in f:
                nul_lines += line.startswith(b"\0")
        versions = ", ".join(f"{p} {PEERS[p][1]()}" for p in peers)
        print(f"{a.lines} lines, {size / 1e6:.0f} MB, {os.cpu_count()} cores" + (f", {versions}" if versions else ""))
        if "collectd" in peers:
            print(f"collectd: {len(collectd_matches(truth))} tail Matches; "
                  f"{nul_lines} lines begin with a NUL byte, which collectd's reader skips; not equivalent "
                  "to the presets:\n" + "".join(f"  - {x}\n" for x in COLLECTD_NOT_EQUIVALENT), end="")
        runners = {"mtail": lambda: run_mtail(log, tmp, truth),
                   "collectd": lambda: run_collectd(log, tmp, truth, nul_lines),
                   "tally": lambda: run_tally(log, tmp, truth)}
        names = peers + ["tally"]
        res = {n: [] for n in names}
        all_ok = True
        for r in range(a.runs):
            for name in names:
                wall, cpu, rss, ok = runners[name]()
                all_ok &= ok
                res[name].append((wall, cpu, rss))
                print(f"run {r + 1} {name:<8} wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
                      f"{a.lines / wall / 1e6:6.3f} M lines/s  {a.lines / max(cpu, 1e-3) / 1e6:6.3f} M lines/CPU-s  "
                      f"peak RSS {rss:6.1f} MB")
        med = {n: [statistics.median(x[i] for x in v) for i in range(3)] for n, v in res.items()}
        print("\nmedians:")
        for n, (wall, cpu, rss) in med.items():
            print(f"  {n:<8} {a.lines / max(cpu, 1e-3) / 1e6:7.3f} M lines per CPU-second, "
                  f"{a.lines / wall / 1e6:7.3f} M lines/s wall, {size / wall / 1e6:7.1f} MB/s, peak RSS {rss:.1f} MB")
        for p in peers:
            print(f"  ratio tally/{p}: x{med[p][1] / max(med['tally'][1], 1e-3):.1f} per CPU-second, "
                  f"x{med[p][0] / max(med['tally'][0], 1e-3):.1f} wall")
        if "collectd" in peers:
            print("  (collectd's rules are not all equivalent to the presets: see the list above)")
        if not all_ok:
            sys.exit("some counters did not match the generator's")
    finally:
        if a.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
