//! Issue 12: Tally as a cluster member of real graphite-web 1.1.8 sites, and its graphs next to
//! graphite-web's.
//!
//! - A graphite-web with no data of its own and `CLUSTER_SERVERS` pointing at a Tally store
//!   asks Tally with `local=1` in pickle (its default) and answers render, find and tag
//!   auto-completion as Tally itself answers them.
//! - Tally's pickle and msgpack answers, decoded by graphite-web's own `unpickle` and
//!   `umsgpack` (the code that reads them in a cluster), equal what graphite-web fed by carbon
//!   sends for the same data.
//! - A dashboard graph drawn by both: sizes and the rows of a series must agree. Each run
//!   writes the pair under the target's tmp dir (`issue12/`); `tests/artifacts/` keeps the pair
//!   of one run, to look at side by side.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::compat::{diff_json, enc, get};
use crate::compat_stored::{plaintext, wait_for};
use crate::graphite_web::GraphiteWeb;
use crate::proc::StoreProc;

/// A find answer as JSON, its completer nodes in path order (a remote finder's same-named
/// nodes come out of a dict, in no set order).
pub(crate) fn by_path(body: &str) -> Value {
    let mut v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if let Some(m) = v.get_mut("metrics").and_then(Value::as_array_mut) {
        m.sort_by_key(|n| n["path"].as_str().unwrap_or("").to_owned());
    }
    v
}

/// Status, content type and body of a GET.
pub(crate) fn bytes(url: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::blocking::get(url).expect("request");
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        status,
        ctype,
        r.bytes().map(|b| b.to_vec()).unwrap_or_default(),
    )
}

fn send_to_tally(tally: &StoreProc, text: &str) {
    let mut c = std::net::TcpStream::connect(tally.line).expect("tally accepts");
    c.write_all(text.as_bytes()).expect("write");
}

fn wait_tally(tally: &StoreProc, target: &str, from: i64, until: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, b) = get(&tally.url(&format!(
            "/render?target={}&from={from}&until={until}&format=json",
            enc(target)
        )));
        if b.contains(&format!(", {until}]")) && !b.ends_with("[null, {until}]]}]") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tally never had {target}: {b:.300}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn issue_12_graphite_web_federating_tally_answers_as_tally_does() {
    let now = tally_common::unix_now();
    let now = now - now % 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = StoreProc::start_quiet(dir.path());
    send_to_tally(&tally, &plaintext(now));
    let (from, until) = (now - 1800, now - 10);
    wait_tally(&tally, "beacons.cdn_akamai.count", from, until);
    let gw = GraphiteWeb::start_cluster(&[tally.http.to_string()]);

    let mut failures = Vec::new();
    let mut total = 0;
    for target in [
        "srv.web1.requests",
        "srv.*.cpu",
        "srv.{web1,web3}.cpu",
        "sumSeries(srv.*.requests)",
        "aliasByNode(srv.*.cpu, 1)",
        "seriesByTag('name=requests', 'status=503')",
        "sumSeries(seriesByTag('name=requests'))",
        "color(srv.web1.cpu, 'red')",
        "nonexistent.series",
    ] {
        total += 1;
        let q = format!(
            "/render?target={}&from={from}&until={until}&format=json",
            enc(target)
        );
        let ((ts, tb), (gs, gb)) = (get(&tally.url(&q)), get(&gw.url(&q)));
        let d = if ts != gs {
            Some(format!("status {ts} vs {gs}: {tb:.200} / {gb:.300}"))
        } else {
            diff_json(&tb, &gb)
        };
        if let Some(d) = d {
            failures.push(format!("render {target}: {d}"));
        }
    }
    for path in [
        "/metrics/find?query=*",
        "/metrics/find?query=srv.*",
        "/metrics/find?query=srv.*.*&format=completer",
        "/metrics/find?query=beacons.*&format=treejson",
        // One node per name, the first in path order: every match here is named `cpu`.
        "/metrics/find?query=srv.*.cpu",
        "/metrics/find?query=srv.*.*",
        "/metrics/expand?query=srv.*.cpu&leavesOnly=1",
        &format!("/tags/autoComplete/tags?expr={}", enc("name=requests")),
        &format!(
            "/tags/autoComplete/values?tag=host&expr={}",
            enc("name=requests")
        ),
        "/tags/autoComplete/tags?tagPrefix=st",
    ] {
        total += 1;
        let ((ts, tb), (gs, gb)) = (get(&tally.url(path)), get(&gw.url(path)));
        // graphite-web sorts completer nodes by name only, and a remote finder's nodes come out
        // of a dict: same-named nodes are in no set order there. Compared by path.
        let (t, g): (Value, Value) = (by_path(&tb), by_path(&gb));
        if ts != gs || t != g || t.is_null() {
            failures.push(format!("{path}: {ts} {tb:.300}\n   vs {gs} {gb:.300}"));
        }
    }
    println!(
        "cluster: {} of {total} requests answered alike by a federating graphite-web",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "a graphite-web federating Tally differs from Tally:\n{}\n{}",
        failures.join("\n"),
        gw.logs()
    );
}

/// Decodes pickles and msgpack with graphite-web's own readers (`graphite.util.unpickle`, its
/// bundled `umsgpack`), into JSON; an `IntervalSet` becomes its list of `[start, end]`.
const DECODE: &str = r#"
import collections, collections.abc, json, sys
# Debian's python 3.11 has no collections.Hashable, which graphite's bundled umsgpack still
# uses to read maps: a graphite-web there cannot read msgpack at all (pickle is its default).
collections.Hashable = collections.abc.Hashable
from graphite.util import unpickle
import graphite.umsgpack as umsgpack
from graphite.intervals import IntervalSet
data = sys.stdin.buffer.read()
v = umsgpack.unpackb(data) if sys.argv[1] == 'msgpack' else unpickle.loads(data)
def plain(x):
    if isinstance(x, IntervalSet):
        return [[i.start, i.end] for i in x]
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(i) for i in x]
    return x
print(json.dumps(plain(v)))
"#;

fn decode(kind: &str, body: &[u8]) -> Value {
    let mut p = Command::new("/usr/bin/python3")
        .args(["-c", DECODE, kind])
        .env("DJANGO_SETTINGS_MODULE", "graphite.settings")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    p.stdin
        .take()
        .expect("stdin")
        .write_all(body)
        .expect("write");
    let out = p.wait_with_output().expect("decoder ends");
    assert!(
        out.status.success(),
        "graphite's decoder refused it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// A leaf's interval is the store's own (whisper: now minus its retention to its mtime; Tally:
/// the asked range): kept to its shape.
/// Nodes come sorted by their last component only, ties in the finder's order: sorted by path.
fn without_interval_values(mut v: Value) -> Value {
    if let Some(nodes) = v.as_array_mut() {
        if nodes.iter().all(|n| n.get("path").is_some()) {
            nodes.sort_by_key(|n| n["path"].as_str().unwrap_or("").to_owned());
        }
    }
    for n in v.as_array_mut().into_iter().flatten() {
        if let Some(iv) = n.get_mut("intervals") {
            let shape: Vec<usize> = iv
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| i.as_array().map_or(0, Vec::len))
                .collect();
            *iv = serde_json::json!(shape);
        }
    }
    v
}

fn close(t: &Value, g: &Value) -> bool {
    match (t, g) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| close(x, y)))
        }
        _ => t == g,
    }
}

/// The rows of column `x` closer to the colour `c` than to the white background (a line drawn
/// antialiased covers at least half of them).
fn rows(p: &tiny_skia::Pixmap, x: u32, c: (u8, u8, u8)) -> Vec<u32> {
    let dist = |a: (u8, u8, u8), b: (u8, u8, u8)| {
        u32::from(a.0.abs_diff(b.0)) + u32::from(a.1.abs_diff(b.1)) + u32::from(a.2.abs_diff(b.2))
    };
    (0..p.height())
        .filter(|&y| {
            p.pixel(x, y).map(|p| p.demultiply()).is_some_and(|px| {
                let px = (px.red(), px.green(), px.blue());
                dist(px, c) < dist(px, (255, 255, 255))
            })
        })
        .collect()
}

#[test]
fn issue_12_cluster_formats_and_graphs_match_graphite_web() {
    let now = tally_common::unix_now();
    let now = now - now % 10;
    let text = plaintext(now);
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = StoreProc::start_quiet(dir.path());
    let gw = GraphiteWeb::start_with_carbon();
    gw.send(&text);
    send_to_tally(&tally, &text);
    let (from, until) = (now - 1800, now - 10);
    wait_for(&gw, "all plain series", || {
        let (_, b) = get(&gw.url("/metrics/expand?query=srv.*.*&query=beacons.*.*&leavesOnly=1"));
        serde_json::from_str::<Value>(&b)
            .ok()
            .and_then(|v| v["results"].as_array().map(Vec::len))
            == Some(8)
    });
    wait_for(&gw, "the newest points", || {
        let (_, b) = get(&gw.url(&format!(
            "/render?target=srv.*.cpu&from={}&until={until}&format=json",
            until - 10
        )));
        b.matches(&format!(", {until}]")).count() == 3 && !b.contains("[null")
    });
    wait_tally(&tally, "srv.web1.cpu", from, until);

    let mut failures = Vec::new();
    for (path, kind, ctype) in [
        (format!("/render/?target=srv.*.cpu&from={from}&until={until}&now={now}&format=pickle&local=1&noCache=1"), "pickle", "application/pickle"),
        (format!("/render/?target=beacons.*.count&from={from}&until={until}&format=msgpack&local=1&noCache=1"), "msgpack", "application/x-msgpack"),
        (format!("/render?target=sumSeries(srv.*.requests)&from={from}&until={until}&pickle=1"), "pickle", "application/pickle"),
        (format!("/metrics/find/?local=1&format=pickle&query=srv.*&from={from}&until={until}"), "pickle", "application/pickle"),
        (format!("/metrics/find/?local=1&format=pickle&query=srv.web1.*&from={from}&until={until}"), "pickle", "application/pickle"),
        (format!("/metrics/find/?local=1&format=msgpack&query=srv.*.c*&from={from}&until={until}"), "msgpack", "application/x-msgpack"),
    ] {
        let (ts, tc, tb) = bytes(&tally.url(&path));
        let (gs, gc, gb) = bytes(&gw.url(&path));
        if (ts, tc.as_str()) != (gs, gc.as_str()) || tc != ctype {
            failures.push(format!("{path}: {ts} {tc} vs {gs} {gc}"));
            continue;
        }
        let mut t = without_interval_values(decode(kind, &tb));
        let mut g = without_interval_values(decode(kind, &gb));
        // carbon's whisper files carry their xFilesFactor (0.5 by default); Tally's series 0.
        for v in [&mut t, &mut g] {
            for s in v.as_array_mut().into_iter().flatten() {
                if let Some(x) = s.get_mut("xFilesFactor") {
                    *x = Value::Null;
                }
            }
        }
        if !close(&t, &g) {
            failures.push(format!("{path}:\n  tally    {t:.400}\n  graphite {g:.400}"));
        }
    }

    // A dashboard graph, drawn by both and kept as artifacts.
    let graph = format!(
        "/render?target=srv.*.cpu&target=secondYAxis(sumSeries(srv.*.requests))&target=threshold(80,'limit','red')\
         &from={from}&until={until}&width=800&height=400&title=Servers&vtitle=cpu%20%25&vtitleRight=requests&tz=UTC"
    );
    let (ts, tc, tpng) = bytes(&tally.url(&graph));
    let (gs, gc, gpng) = bytes(&gw.url(&graph));
    assert_eq!((ts, tc.as_str()), (200, "image/png"));
    assert_eq!((gs, gc.as_str()), (200, "image/png"));
    // Each run's pair goes to the target's tmp dir; tests/artifacts keeps one run's pair.
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("issue12");
    std::fs::create_dir_all(&artifacts).expect("mkdir");
    std::fs::write(artifacts.join("issue12_dashboard_tally.png"), &tpng).expect("write");
    std::fs::write(artifacts.join("issue12_dashboard_graphite_web.png"), &gpng).expect("write");
    let (t, g) = (
        tiny_skia::Pixmap::decode_png(&tpng).expect("tally's png"),
        tiny_skia::Pixmap::decode_png(&gpng).expect("graphite-web's png"),
    );
    assert_eq!((t.width(), t.height()), (g.width(), g.height()));
    // The threshold (graphite's red) lies on the same rows in every column both draw it.
    let mut compared = 0;
    for x in (150..650).step_by(25) {
        let (tr, gr) = (rows(&t, x, (200, 0, 50)), rows(&g, x, (200, 0, 50)));
        if let (Some(a), Some(b)) = (tr.first(), gr.first()) {
            compared += 1;
            if a.abs_diff(*b) > 2 {
                failures.push(format!("threshold at x {x}: row {a} vs graphite-web's {b}"));
            }
        }
    }
    if compared < 10 {
        failures.push(format!(
            "the threshold was found in only {compared} columns of both"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
