#!/usr/bin/python3
"""Render and find latency, side by side: Tally, graphite-web 1.1.8 (over carbon) and
VictoriaMetrics, on the same data, in the same run.

1000 series x 24 h at 10 s (8.64 M points) go to each server; then each query runs --runs times
and the median wall time is printed, with Tally's speed-up:

  sum       sumSeries(bench.*.*) over 24 h        (VictoriaMetrics: /api/v1/query_range sum(...))
  highest   aliasByNode(highestCurrent(bench.*.*, 5), 1) over 24 h   (graphite-web only; VM 1.79
            has no /render)
  narrow    bench.host7.* over 24 h: the ~10 series one dashboard panel shows
            (VictoriaMetrics: /api/v1/query_range {__name__=~"bench\\.host7\\..*"})
  find      /metrics/find?query=bench.*           (all three)
  load      a dashboard's mix (sum, narrow, and highest where the server has it) sent open-loop
            at --load-qps for --load-seconds; p50 and p99 latency, counted from when each query
            was due, so a server that falls behind shows it

With --find-series N (e.g. 1000000) it also loads N one-point series into Tally and VM and times
/metrics/find?query=big.*.*.x7 (a tenth of the names match) and big.h7.* (one node's children,
what an editor's autocompletion asks); carbon would need N preallocated whisper files: skipped.

    /usr/bin/python3 benches/query_compare.py [--runs 5] [--targets tally,graphite,vm] [--find-series 0] [--client curl|python]
        [--load-qps 20 --load-seconds 10]
"""

import argparse
import concurrent.futures
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest_compare import Carbon, Tally, Vm, free_port, generate, send_tcp, wait_port  # noqa: E402


def timed_get(url, timeout=600):
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
    return time.perf_counter() - t, body


def curl_get(url, timeout=600):
    """(seconds, body length) as curl measures a GET: connect to last byte, the body thrown
    away as it arrives. For answers of tens of megabytes Python's own reading of the body is a
    large part of `timed_get`'s figure, whichever server sent it."""
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "--max-time", str(timeout),
         "-w", "%{time_total} %{size_download}", url],
        check=True, capture_output=True, text=True).stdout
    secs, size = out.split()
    return float(secs), int(size)


def median_time(url, runs, client="python"):
    times = []
    for _ in range(runs):
        if client == "curl":
            dt, size = curl_get(url)
        else:
            dt, body = timed_get(url)
            size = len(body)
        times.append(dt)
    return statistics.median(times), size


def load_latency(urls, qps, seconds):
    """p50 and p99 seconds of `urls` (cycled) sent open-loop at `qps` for `seconds`."""
    if qps <= 0 or seconds <= 0:
        return None
    n = int(qps * seconds)
    t0 = time.perf_counter() + 0.2

    def one(i):
        due = t0 + i / qps
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            timed_get(urls[i % len(urls)])
        except urllib.error.HTTPError as e:
            if e.code in (429, 503):
                return None  # shed by the server's concurrency limit: counted, not timed
            raise
        return time.perf_counter() - due

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        done = list(pool.map(one, range(n)))
    lat = sorted(x for x in done if x is not None)
    shed = len(done) - len(lat)
    if not lat:
        return float("inf"), float("inf"), shed, n
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], shed, n


class GraphiteWeb:
    """graphite-web under gunicorn, reading the whisper files of a Carbon (and its cache)."""

    def __init__(self, workdir, carbon):
        d = workdir
        os.makedirs(os.path.join(d, "web"), exist_ok=True)
        self.port = free_port()
        with open(os.path.join(d, "web", "bench_settings.py"), "w") as f:
            f.write(f"""SECRET_KEY = 'bench'
ALLOWED_HOSTS = ['*']
TIME_ZONE = 'UTC'
DEFAULT_XFILES_FACTOR = 0
STORAGE_DIR = '{d}/storage/'
WHISPER_DIR = '{carbon.whisper}/'
LOG_DIR = '{d}/log/'
INDEX_FILE = '{d}/storage/index'
CARBONLINK_HOSTS = ['127.0.0.1:{carbon.link_port}']
DATABASES = {{'default': {{'NAME': '{d}/graphite.db', 'ENGINE': 'django.db.backends.sqlite3'}}}}
""")
        os.makedirs(os.path.join(d, "log"), exist_ok=True)
        env = dict(os.environ, PYTHONPATH=os.path.join(d, "web"), DJANGO_SETTINGS_MODULE="graphite.settings",
                   GRAPHITE_SETTINGS_MODULE="bench_settings", TZ="UTC")
        subprocess.run(["/usr/bin/python3", "-m", "django", "migrate", "--noinput"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "/usr/bin/gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "2",
             "--timeout", "600", "graphite.wsgi:application"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port, 60):
            raise RuntimeError("graphite-web did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


# Readiness is checked on the newest hour: carbon keeps exactly one day (10s:1d), so after a few
# minutes of loading its oldest points have already aged out.
def expanded(base, pattern):
    """How many names /metrics/expand returns (graphite: {"results": [...]}, VictoriaMetrics: [...])."""
    import json
    _, body = timed_get(f"{base}/metrics/expand?" + urllib.parse.urlencode({"query": pattern}))
    v = json.loads(body)
    return len(v["results"] if isinstance(v, dict) else v)


def wait_until(what, ok, limit=900):
    end = time.time() + limit
    while time.time() < end:
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--points", type=int, default=8640)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--targets", default="tally,graphite,vm")
    ap.add_argument("--find-series", type=int, default=0)
    ap.add_argument("--load-qps", type=float, default=20)
    ap.add_argument("--load-seconds", type=float, default=10)
    ap.add_argument("--client", choices=("curl", "python"), default="curl",
                    help="what times a GET: curl (connect to last byte, the body discarded) or "
                         "Python's urllib (its reading of a large body is part of the figure)")
    args = ap.parse_args()
    want = set(args.targets.split(","))
    top = tempfile.mkdtemp(prefix="tally_query_")
    servers = []
    try:
        path = os.path.join(top, "points.txt")
        names, start, end = generate(path, args.series, args.points, "floats")
        frm, until = end - args.points * 10, end
        print(f"# {len(names) * args.points} points: {args.series} series x {args.points}; {args.runs} runs each", flush=True)
        q = lambda **kw: urllib.parse.urlencode(kw)
        results = {}
        loads = {}

        if "tally" in want:
            os.makedirs(os.path.join(top, "tally"))
            t = Tally(os.path.join(top, "tally"))
            servers.append(t)
            send_tcp(path, t.line_port)
            base = f"http://127.0.0.1:{t.http_port}"
            wait_until("tally", lambda: t.count(names[-1], end - 3590, end) == 360)
            urls = [f"{base}/render?" + q(target=t, **{"from": frm, "until": until}, format="json")
                    for t in ("sumSeries(bench.*.*)", "bench.host7.*", "aliasByNode(highestCurrent(bench.*.*, 5), 1)")]
            results["tally"] = {
                "sum": median_time(urls[0], args.runs, args.client),
                "highest": median_time(urls[2], args.runs, args.client),
                "narrow": median_time(urls[1], args.runs, args.client),
                "find": median_time(f"{base}/metrics/find?" + q(query="bench.*"), args.runs, args.client),
            }
            loads["tally"] = load_latency(urls, args.load_qps, args.load_seconds)
        if "graphite" in want:
            os.makedirs(os.path.join(top, "carbon"))
            c = Carbon(os.path.join(top, "carbon"))
            servers.append(c)
            g = GraphiteWeb(os.path.join(top, "carbon"), c)
            servers.append(g)
            send_tcp(path, c.line_port, timeout=5)
            base = f"http://127.0.0.1:{g.port}"
            wait_until("carbon", lambda: c.count(names[-1], end - 3590, end) == 360)
            results["graphite"] = {
                "sum": median_time(f"{base}/render?" + q(target="sumSeries(bench.*.*)", **{"from": frm, "until": until}, format="json"), args.runs, args.client),
                "highest": median_time(f"{base}/render?" + q(target="aliasByNode(highestCurrent(bench.*.*, 5), 1)", **{"from": frm, "until": until}, format="json"), args.runs, args.client),
                "find": median_time(f"{base}/metrics/find?" + q(query="bench.*"), args.runs, args.client),
            }
        if "vm" in want and shutil.which("victoria-metrics"):
            os.makedirs(os.path.join(top, "vm"))
            v = Vm(os.path.join(top, "vm"))
            servers.append(v)
            send_tcp(path, v.line_port, timeout=5)
            base = f"http://127.0.0.1:{v.http_port}"
            wait_until("vm", lambda: v.count(names[-1], end - 3590, end) == 360)
            urls = [f"{base}/api/v1/query_range?" + q(query=e, start=frm, end=until, step=10)
                    for e in ('sum({__name__=~"bench\\\\..*"})', '{__name__=~"bench\\\\.host7\\\\..*"}')]
            results["vm"] = {
                "sum": median_time(urls[0], args.runs, args.client),
                "narrow": median_time(urls[1], args.runs, args.client),
                "find": median_time(f"{base}/metrics/find?" + q(query="bench.*"), args.runs, args.client),
            }
            loads["vm"] = load_latency(urls, args.load_qps, args.load_seconds)
        for name, r in results.items():
            print(f"{name:<9} " + " ".join(f"{k}={v[0] * 1000:.1f}ms({v[1]}B)" for k, v in r.items()), flush=True)
        for name, lat in loads.items():
            if lat:
                print(f"load {name}: {args.load_qps:g} queries/s for {args.load_seconds:g} s: "
                      f"p50={lat[0] * 1000:.1f}ms p99={lat[1] * 1000:.1f}ms shed={lat[2]}/{lat[3]}", flush=True)
        if "tally" in results:
            for peer in ("graphite", "vm"):
                for k, v in results.get(peer, {}).items():
                    if k in results["tally"]:
                        print(f"ratio {peer}/tally {k}: x{v[0] / results['tally'][k][0]:.1f}")

        if args.find_series:
            big = os.path.join(top, "big.txt")
            now = int(time.time())
            with open(big, "w") as f:
                for i in range(args.find_series):
                    f.write(f"big.h{i // 1000}.m{i % 1000 // 10}.x{i % 10} 1 {now}\n")
            pattern = "big.*.*.x7"
            found = {}
            for s in servers:
                if isinstance(s, Tally):
                    send_tcp(big, s.line_port)
                    base = f"http://127.0.0.1:{s.http_port}"
                elif isinstance(s, Vm):
                    send_tcp(big, s.line_port, timeout=5)
                    base = f"http://127.0.0.1:{s.http_port}"
                else:
                    continue
                url = f"{base}/metrics/find?" + q(query=pattern)
                want = args.find_series // 10
                wait_until(f"{s.name} big names", lambda: expanded(base, pattern) == want)
                found[s.name] = median_time(url, args.runs, args.client)
                # What Grafana's query editor asks as one types: the children of one node.
                found[s.name + " one node"] = median_time(f"{base}/metrics/find?" + q(query="big.h7.*"), args.runs, args.client)
            for name, (dt, size) in found.items():
                what = "big.h7.*" if name.endswith(" one node") else pattern
                print(f"find over {args.find_series} names, {name.removesuffix(' one node')} {what}: "
                      f"{dt * 1000:.1f}ms ({size}B)")
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception:
                if getattr(s, "proc", None) and s.proc.poll() is None:
                    s.proc.kill()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
