#!/usr/bin/python3
"""Two builds of `tally store` on the same data in the same run, interleaved (an A/B of a change).

3,000 series x 2,160 3-decimal floats into each, a minute for the flush (every point in chunks),
then rounds of 5 queries each, alternating the stores: `sumSeries(bench.*.*)` as JSON, and a query
node's read of 1,000 series by name (`series=`, `format=tally`). Prints the median CPU ms per
query of each store's process and the ratio. Machines here are noisy: run it both ways round.

    /usr/bin/python3 benches/store_ab.py OLD_TALLY NEW_TALLY [ROUNDS]
"""
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingest_compare as ic  # noqa: E402

if len(sys.argv) < 3:
    sys.exit(__doc__)
bins = sys.argv[1:3]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
work = tempfile.mkdtemp(prefix="same-")
data = os.path.join(work, "in.txt")
names, start, end = ic.generate(data, 3000, 2160, "floats")
stores = []
for i, b in enumerate(bins):
    ic.TALLY = b
    d = os.path.join(work, f"s{i}"); os.makedirs(d)
    stores.append(ic.Tally(d))
for s in stores:
    ic.send_tcp(data, s.line_port)
time.sleep(75)  # a flush (every minute): everything in chunks
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
frm, until = start - 10, end
sumq = "/render?" + urllib.parse.urlencode({"target": "sumSeries(bench.*.*)", "from": frm, "until": until, "format": "json"})
allnames = json.load(urllib.request.urlopen(f"http://127.0.0.1:{stores[0].http_port}/metrics/expand?query=bench.*.*"))["results"][:1000]
body = (f"format=tally&local=1&noCache=1&from={frm}&until={until}" + "".join("&series=" + urllib.parse.quote(x, safe="") for x in allnames)).encode()
def q(s, kind):
    if kind == "sum":
        return urllib.request.urlopen(f"http://127.0.0.1:{s.http_port}{sumq}").read()
    return urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{s.http_port}/render", data=body)).read()
res = {}
for r in range(rounds):
    for kind in ("sum", "tally"):
        for i, s in enumerate(stores):
            c0 = cpu(s.pid)
            for _ in range(5):
                q(s, kind)
            res.setdefault((i, kind), []).append((cpu(s.pid) - c0) / 5 * 1000)
for kind in ("sum", "tally"):
    a, b = statistics.median(res[(0, kind)]), statistics.median(res[(1, kind)])
    print(f"{kind:6} {os.path.basename(bins[0])} {a:.1f} ms  {os.path.basename(bins[1])} {b:.1f} ms  ratio {b/a:.3f}")
for s in stores:
    s.stop()
shutil.rmtree(work, ignore_errors=True)
