#!/usr/bin/python3
"""End-to-end ingest, side by side: Tally, VictoriaMetrics and carbon-cache on the same input.

Each server starts fresh in a temp dir on 127.0.0.1 ports picked here, gets the same Graphite
plaintext (S series x P points, 10 s apart, time-major as live traffic is), and is measured the
same way:

  accept_s     send start -> the whole file is written and the server has closed the connection
  queryable_s  send start -> a sample of series (first, last and evenly spread) has every point
               readable over the server's own read API (carbon: in the whisper files)
  cpu_s        server CPU seconds (user+sys, with children) from send start until it is idle again
  rss_mb       the server's peak resident memory
  bytes/pt     data directory size after a flush and full compaction, per point

and prints points per server CPU-second, with the ratio of Tally to each peer. `tally-ack` is the
acknowledged path: the same lines POSTed to /api/v1/ingest in batches, each answered only when
durable. Peers that are not installed are skipped (scripts/setup.sh bench installs them).

    benches/ingest_compare.py --series 100000 --points 10 [--kind counts|floats] [--targets ...]

Run with Debian's /usr/bin/python3 (it has the whisper module carbon's check needs).
"""

import argparse
import http.client
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TALLY = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "tally")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    """User+sys CPU seconds of pid and its reaped children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_hwm_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def du_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def generate(path, series, points, kind, seed=42):
    """Plaintext `bench.host{h}.metric{m} VALUE TS`, 10 metrics per host, last point at now."""
    rng = random.Random(seed)
    end = int(time.time()) // 10 * 10
    start = end - (points - 1) * 10
    names = [f"bench.host{i // 10}.metric{i % 10}" for i in range(series)]
    level = [rng.uniform(0.01, 0.5) for _ in range(series)]
    with open(path, "w") as f:
        for p in range(points):
            ts = start + p * 10
            lines = []
            for i, name in enumerate(names):
                if kind == "counts":
                    v = str(max(0, int(rng.gauss(50, 7))))
                else:
                    level[i] = max(0.001, level[i] * rng.uniform(0.9, 1.1))
                    v = f"{level[i]:.3f}"
                lines.append(f"{name} {v} {ts}\n")
            f.write("".join(lines))
    return names, start, end


def send_tcp(path, port, timeout=600):
    with socket.create_connection(("127.0.0.1", port)) as s, open(path, "rb") as f:
        s.sendfile(f)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(timeout)
        try:
            while s.recv(65536):
                pass
        except (socket.timeout, ConnectionResetError):
            pass


def send_ack(path, port, batch_lines=20000):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    accepted = 0
    for i in range(0, len(lines), batch_lines):
        body = b"\n".join(lines[i:i + batch_lines])
        conn.request("POST", "/api/v1/ingest", body, {"Content-Type": "text/plain"})
        resp = conn.getresponse()
        reply = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"ingest answered {resp.status}: {reply[:200]!r}")
        accepted += json.loads(reply)["accepted"]
    conn.close()
    return accepted


def settle(pid, limit=120):
    """Waits until the server burns < 0.05 CPU-s per second twice in a row."""
    idle, prev, end = 0, cpu_s(pid), time.time() + limit
    while time.time() < end and idle < 2:
        time.sleep(1)
        cur = cpu_s(pid)
        idle = idle + 1 if cur - prev < 0.05 else 0
        prev = cur


class Tally:
    name = "tally"

    def __init__(self, workdir, ack=False, retentions="10s:2d"):
        self.dir = os.path.join(workdir, "data")
        self.ack = ack
        self.name = "tally-ack" if ack else "tally"
        cfg = os.path.join(workdir, "store.toml")
        with open(cfg, "w") as f:
            f.write(f'self_metrics_interval = "0s"\ndefault_retentions = "{retentions}"\n')
        self.proc = subprocess.Popen(
            [TALLY, "-q", "store", "--config", cfg, "--data-dir", self.dir,
             "--line-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        self.line_port = int(fields["line"].rsplit(":", 1)[1])
        self.http_port = int(fields["http"].rsplit(":", 1)[1])
        self.pid = self.proc.pid

    def send(self, path):
        if self.ack:
            send_ack(path, self.http_port)
        else:
            send_tcp(path, self.line_port)

    def count(self, name, start, end):
        q = urllib.parse.urlencode({"name": name, "from": start - 10, "until": end})
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/api/v1/read?{q}", timeout=30) as r:
                return sum(v is not None for v in json.load(r)["values"])
        except OSError:
            return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)

    def compact(self):
        subprocess.run([TALLY, "-q", "compact", "--data-dir", self.dir], check=True, stdout=subprocess.DEVNULL)
        return du_bytes(self.dir)


class Vm:
    name = "victoria-metrics"

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "data")
        self.line_port, self.http_port = free_port(), free_port()
        self.log = open(os.path.join(workdir, "vm.log"), "w")
        self.proc = subprocess.Popen(
            ["/usr/bin/victoria-metrics", f"-storageDataPath={self.dir}", "-retentionPeriod=1",
             f"-httpListenAddr=127.0.0.1:{self.http_port}", f"-graphiteListenAddr=127.0.0.1:{self.line_port}",
             "-search.latencyOffset=0s", "-search.disableCache", "-loggerLevel=WARN"],
            stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        if not (wait_port(self.http_port) and wait_port(self.line_port)):
            raise RuntimeError("victoria-metrics did not start")

    def send(self, path):
        send_tcp(path, self.line_port, timeout=5)

    def count(self, name, start, end):
        q = urllib.parse.urlencode({"match[]": '{__name__="%s"}' % name, "start": start - 1, "end": end})
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/api/v1/export?{q}", timeout=30) as r:
                body = r.read().strip()
        except OSError:
            return 0
        return sum(len(json.loads(line)["values"]) for line in body.splitlines() if line)

    def compact(self):
        for path in ("/internal/force_flush", "/internal/force_merge"):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=300).read()
            except OSError:
                pass
        settle(self.pid, 120)
        return du_bytes(self.dir)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


class Carbon:
    name = "carbon-cache"

    def __init__(self, workdir, retentions="10s:1d"):
        d = workdir
        self.whisper = os.path.join(d, "storage", "whisper")
        for sub in ("conf", "storage/whisper", "storage/lists", "log"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        self.line_port, self.link_port = free_port(), free_port()
        cl = self.link_port
        with open(os.path.join(d, "conf", "carbon.conf"), "w") as f:
            f.write(f"""[cache]
STORAGE_DIR = {d}/storage/
LOCAL_DATA_DIR = {d}/storage/whisper/
WHITELISTS_DIR = {d}/storage/lists/
CONF_DIR = {d}/conf/
LOG_DIR = {d}/log/
PID_DIR = {d}/
ENABLE_LOGROTATION = False
USER =
DATABASE = whisper
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {self.line_port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = 0
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {cl}
USE_FLOW_CONTROL = True
LOG_UPDATES = False
LOG_CREATES = False
CACHE_WRITE_STRATEGY = sorted
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = True
ENABLE_TAGS = False
CARBON_METRIC_INTERVAL = 0
""")
        with open(os.path.join(d, "conf", "storage-schemas.conf"), "w") as f:
            f.write(f"[everything]\npattern = .*\nretentions = {retentions}\n")
        with open(os.path.join(d, "conf", "storage-aggregation.conf"), "w") as f:
            f.write("[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n")
        self.log = open(os.path.join(d, "carbon.out"), "w")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "/usr/bin/carbon-cache", f"--config={d}/conf/carbon.conf",
             f"--pidfile={d}/carbon.pid", "--nodaemon", f"--logdir={d}/log", "start"],
            stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        if not wait_port(self.line_port, 60):
            raise RuntimeError("carbon-cache did not start")

    def send(self, path):
        send_tcp(path, self.line_port, timeout=5)

    def count(self, name, start, end):
        import whisper  # Debian python3-whisper
        path = os.path.join(self.whisper, *name.split(".")) + ".wsp"
        try:
            _, values = whisper.fetch(path, start - 10, end + 1)
        except Exception:  # not created yet, or being written
            return 0
        return sum(v is not None for v in values)

    def compact(self):
        return du_bytes(self.whisper)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)


def run(target_name, path, names, start, end, points, args, workdir):
    sample = sorted({0, len(names) - 1, *range(0, len(names), max(1, len(names) // 18))})
    sample = [names[i] for i in sample]
    server = {
        "tally": lambda: Tally(workdir),
        "tally-ack": lambda: Tally(workdir, ack=True),
        "vm": lambda: Vm(workdir),
        "carbon": lambda: Carbon(workdir),
    }[target_name]()
    try:
        time.sleep(0.5)
        cpu0, t0 = cpu_s(server.pid), time.time()
        server.send(path)
        accept = time.time() - t0
        queryable = None
        deadline = time.time() + args.wait
        pending = list(sample)
        while time.time() < deadline:
            pending = [n for n in pending if server.count(n, start, end) < points]
            if not pending:
                queryable = time.time() - t0
                break
            time.sleep(0.2)
        settle(server.pid)
        rss = rss_hwm_mb(server.pid)
        # Ingest CPU: from send start until idle. Tally flushes its head at SIGTERM, so its
        # shutdown is counted too (through getrusage once it is reaped); the forced compaction
        # before measuring disk is not counted for anyone.
        if isinstance(server, Tally):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            server.stop()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) - cpu0
            disk = server.compact()
        else:
            cpu = cpu_s(server.pid) - cpu0
            disk = server.compact()
            server.stop()
        return {"target": server.name, "accept_s": accept, "queryable_s": queryable, "cpu_s": cpu,
                "rss_mb": rss, "bytes_per_point": disk / (len(names) * points)}
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--kind", choices=["counts", "floats"], default="counts")
    ap.add_argument("--targets", default="tally,tally-ack,vm,carbon")
    ap.add_argument("--wait", type=int, default=600, help="max seconds to wait for queryability")
    ap.add_argument("--keep", action="store_true", help="keep the data directories (printed) for inspection")
    args = ap.parse_args()
    if not os.access(TALLY, os.X_OK):
        sys.exit(f"{TALLY} missing: cargo build --release first")
    have = {"tally": True, "tally-ack": True, "vm": shutil.which("victoria-metrics") is not None,
            "carbon": os.path.exists("/usr/bin/carbon-cache")}
    top = tempfile.mkdtemp(prefix="tally_ingest_")
    try:
        path = os.path.join(top, "points.txt")
        names, start, end = generate(path, args.series, args.points, args.kind)
        npts = args.series * args.points
        print(f"# {npts} points: {args.series} series x {args.points}, {args.kind}, "
              f"{os.path.getsize(path) / 1e6:.0f} MB, {os.cpu_count()} cores", flush=True)
        results = []
        for t in args.targets.split(","):
            if not have.get(t):
                print(f"# {t}: not installed, skipped", flush=True)
                continue
            workdir = os.path.join(top, t)
            os.makedirs(workdir)
            r = run(t, path, names, start, end, args.points, args, workdir)
            r["pts_per_cpu_s"] = npts / r["cpu_s"] if r["cpu_s"] > 0 else float("inf")
            r["pts_per_s"] = npts / r["queryable_s"] if r["queryable_s"] else 0
            results.append(r)
            q = f"{r['queryable_s']:.2f}" if r["queryable_s"] else "timeout"
            print(f"{r['target']:<17} accept_s={r['accept_s']:.2f} queryable_s={q} cpu_s={r['cpu_s']:.2f} "
                  f"rss_mb={r['rss_mb']:.0f} bytes/pt={r['bytes_per_point']:.2f} "
                  f"pts/cpu_s={r['pts_per_cpu_s']:.0f} pts/s(queryable)={r['pts_per_s']:.0f}", flush=True)
            if args.keep:
                print(f"# kept {workdir}", flush=True)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        base = next((r for r in results if r["target"] == "tally"), None)
        if base:
            for r in results:
                if r is base or not r["pts_per_cpu_s"]:
                    continue
                print(f"ratio tally/{r['target']}: pts per CPU-s x{base['pts_per_cpu_s'] / r['pts_per_cpu_s']:.2f}, "
                      f"bytes/pt x{base['bytes_per_point'] / max(r['bytes_per_point'], 1e-9):.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
