//! Differential tests with stored data: the same plaintext goes to a real carbon-cache (behind
//! graphite-web 1.1.8) and to Tally; then the same `/render`, `/metrics/find`, `/metrics/expand`
//! and tag requests go to both, and the answers must match.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::compat::{diff_json, enc, get};
use crate::graphite_web::GraphiteWeb;
use crate::proc::StoreProc;

/// 40 minutes of 10 s points for plain and tagged series, with gaps and a counter reset.
pub(crate) fn plaintext(now: i64) -> String {
    let mut out = String::new();
    let start = now - 2400;
    for i in 0..240i64 {
        let t = start + i * 10;
        for (h, host) in ["web1", "web2", "web3"].iter().enumerate() {
            let h = h as i64;
            let mut total = 1000 * (h + 1) + i * (5 + h) + (i * i) % 7;
            if h == 1 && i >= 150 {
                total -= 1000; // a counter reset
            }
            out.push_str(&format!("srv.{host}.requests {total} {t}\n"));
            if !(h == 2 && i % 7 == 0) {
                out.push_str(&format!(
                    "srv.{host}.cpu {:.2} {t}\n",
                    ((i * 37 + h * 11) % 1000) as f64 / 10.0
                ));
            }
            for status in ["200", "503"] {
                let n = (i * (h + 3) + if status == "503" { 1 } else { 40 }) % 50;
                out.push_str(&format!("requests;host={host};status={status} {n} {t}\n"));
            }
        }
        for (k, src) in ["cdn_fastly", "cdn_akamai"].iter().enumerate() {
            out.push_str(&format!(
                "beacons.{src}.count {} {t}\n",
                (i * (k as i64 + 2)) % 13
            ));
        }
        out.push_str(&format!(
            "latency;host=web1;vhost=www {:.3} {t}\n",
            ((i * 13) % 400) as f64 / 1000.0
        ));
    }
    out
}

pub(crate) const RENDER: &[&str] = &[
    "srv.web1.requests",
    "srv.*.cpu",
    "srv.{web1,web3}.cpu",
    "srv.web[12].requests",
    "beacons.*.count",
    "nonexistent.series",
    "sumSeries(srv.*.requests)",
    "sumSeries(beacons.*.count)",
    "averageSeries(srv.*.cpu)",
    "maxSeries(srv.*.cpu)",
    "aliasByNode(srv.*.cpu, 1)",
    "aliasByNode(sumSeries(srv.*.requests), 0)",
    "groupByNode(srv.*.*, 2, 'sum')",
    "groupByNodes(srv.*.*, 'max', 1)",
    "perSecond(srv.*.requests)",
    "nonNegativeDerivative(srv.*.requests)",
    "derivative(srv.web1.requests)",
    "movingAverage(srv.web1.cpu, 6)",
    "movingAverage(srv.web3.cpu, '2min')",
    "movingMedian(srv.*.cpu, 5)",
    "summarize(beacons.*.count, '5min')",
    "summarize(srv.web1.cpu, '10min', 'max')",
    "hitcount(beacons.cdn_fastly.count, '5min')",
    "integral(beacons.cdn_fastly.count)",
    "keepLastValue(srv.web3.cpu)",
    "transformNull(srv.web3.cpu, 0)",
    "timeShift(srv.web1.cpu, '10min')",
    "highestCurrent(srv.*.cpu, 2)",
    "highestAverage(srv.*.cpu, 1)",
    "sortByMaxima(srv.*.cpu)",
    "sortByTotal(beacons.*.count)",
    "asPercent(srv.web1.requests, sumSeries(srv.*.requests))",
    "asPercent(beacons.*.count)",
    "divideSeries(srv.web1.cpu, srv.web2.cpu)",
    "countSeries(srv.*.cpu)",
    "percentileOfSeries(srv.*.cpu, 90)",
    "removeBelowValue(srv.web1.cpu, 50)",
    "exclude(srv.*.cpu, 'web2')",
    "scale(srv.web1.cpu, 0.01)",
    "consolidateBy(beacons.cdn_fastly.count, 'sum')",
    "seriesByTag('name=requests')",
    "seriesByTag('name=requests', 'status=~5..')",
    "seriesByTag('name=requests', 'host!=web3', 'status=200')",
    "seriesByTag('host=web1')",
    "sumSeries(seriesByTag('name=requests', 'status=503'))",
    "groupByTags(seriesByTag('name=requests'), 'sum', 'status')",
    "groupByTags(seriesByTag('name=requests'), 'max', 'host', 'name')",
    "aliasByTags(seriesByTag('name=requests', 'host=web2'), 'status')",
    "aliasByTags(seriesByTag('name=latency'), 'host', 'vhost')",
    "requests;host=web1;status=200",
    "aliasSub(sumSeries(srv.*.requests), \"(^.*$)\", \"\\1 A\")",
    "aliasSub(seriesByTag('name=requests', 'status=503'), \"(^.*$)\", \"\\1 B\")",
    "cactiStyle(srv.*.cpu)",
    "averageAbove(srv.*.cpu, 50)",
    "averageBelow(srv.*.cpu, 50)",
    "currentAbove(srv.*.cpu, 50)",
    "currentBelow(srv.*.cpu, 50)",
    "maximumAbove(srv.*.cpu, 95)",
    "maximumBelow(srv.*.cpu, 95)",
    "minimumAbove(srv.*.cpu, 1)",
    "minimumBelow(srv.*.cpu, 1)",
    "lowest(srv.*.cpu, 2, 'max')",
    "movingSum(beacons.*.count, '1min')",
    "legendValue(beacons.*.count, 'sum', 'max')",
    // graphite-web 1.1.8's other functions (issue 12).
    "holtWintersForecast(srv.web1.cpu, '10min', '2min')",
    "holtWintersConfidenceBands(srv.*.cpu, 3, '10min', '2min')",
    "holtWintersAberration(srv.web3.cpu, 2, '10min', '2min')",
    "holtWintersConfidenceArea(srv.web1.cpu, 3, '10min', '2min')",
    "holtWintersForecast(seriesByTag('name=latency'), '10min', '2min')",
    "nPercentile(srv.*.cpu, 90)",
    "nPercentile(seriesByTag('name=requests', 'status=200'), 50)",
    "removeAbovePercentile(srv.*.cpu, 80)",
    "removeBelowPercentile(srv.web3.cpu, 20)",
    "removeAbovePercentile(seriesByTag('name=requests', 'host=web3'), 50)",
    "smartSummarize(srv.*.cpu, '5min', 'avg')",
    "smartSummarize(beacons.*.count, '10min', 'sum', 'minutes')",
    "exponentialMovingAverage(srv.web3.cpu, 6)",
    "exponentialMovingAverage(srv.web1.cpu, '1min')",
    "linearRegression(srv.web1.requests)",
    "sumSeriesWithWildcards(srv.*.cpu, 1)",
    "aggregateWithWildcards(srv.*.*, 'max', 1)",
    "applyByNode(srv.*.cpu, 1, 'divideSeries(%.cpu, %.requests)')",
    "applyByNode(srv.*.requests, 1, 'sumSeries(%.*)', '%.total')",
    "reduceSeries(mapSeries(srv.*.*, 1), 'asPercent', 2, 'cpu', 'requests')",
    "divideSeriesLists(srv.*.cpu, srv.*.requests)",
    "sumSeriesLists(srv.*.cpu, srv.*.requests)",
    "weightedAverage(srv.*.cpu, srv.*.requests, 1)",
    "useSeriesAbove(srv.web[12].cpu, 90, 'cpu', 'requests')",
    "interpolate(srv.web3.cpu)",
    "delay(srv.web1.cpu, 3)",
    "changed(srv.web3.cpu)",
    "isNonNull(srv.web3.cpu)",
    "stdev(srv.web3.cpu, 6)",
    "integralByInterval(beacons.cdn_fastly.count, '5min')",
    "sortBy(srv.*.cpu, 'max', true)",
    "filterSeries(srv.*.cpu, 'max', '>', 95)",
    "mostDeviant(srv.*.cpu, 2)",
    "averageOutsidePercentile(srv.*.cpu, 60)",
    "unique(srv.*.cpu, srv.web1.cpu)",
    "fallbackSeries(nonexistent.series, srv.web1.cpu)",
    "aliasQuery(srv.web1.cpu, 'cpu', 'requests', '%d requests')",
    "pct(srv.web1.requests, sumSeries(srv.*.requests))",
    "add(seriesByTag('name=requests', 'host=web1'), 3)",
    "round(seriesByTag('name=latency'), 1)",
    "invert(seriesByTag('name=requests', 'status=503'))",
    "log(seriesByTag('name=requests', 'host=web2'), 2)",
    "sortBy(seriesByTag('name=requests'), 'sum')",
    "minMax(seriesByTag('name=latency'))",
    "offsetToZero(srv.*.cpu)",
    "scaleToSeconds(seriesByTag('name=requests', 'host=web1'), 60)",
    "exp(scale(srv.web1.cpu, 0.01))",
    "sigmoid(scale(seriesByTag('name=latency'), 10))",
    "movingWindow(srv.web3.cpu, 5, 'avg_zero')",
    "sumSeries(delay(srv.*.cpu, 1))",
    "aggregateWithWildcards(seriesByTag('name=requests'), 'sum', 1)",
];

/// Every function the library lists appears in some compared target.
#[test]
fn compat_targets_use_every_function() {
    let all: Vec<&str> = RENDER
        .iter()
        .chain(crate::compat::TARGETS)
        .copied()
        .collect();
    let json = tally_query::graphite::functions_json();
    let names: Vec<&String> = json
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let missing: Vec<&&String> = names
        .iter()
        .filter(|n| !all.iter().any(|t| t.contains(&format!("{n}("))))
        .collect();
    assert!(
        missing.is_empty(),
        "functions with no compatibility target: {missing:?}"
    );
    let distinct: std::collections::BTreeSet<&str> = all.iter().copied().collect();
    assert!(distinct.len() >= 150, "{} distinct targets", distinct.len());
}

pub(crate) const FIND: &[&str] = &[
    "*",
    "srv.*",
    "srv.web1.*",
    "srv.*.cpu",
    "beacons.*",
    "srv.web[12]",
    "srv.{web1,web3}.*",
    "nothing.*",
];

/// Removes what graphite-web exposes of its own storage, which is not part of the API: its
/// `_tagged` whisper directory in finds, and the sqlite row `id`s in tag answers.
fn intended(v: Value, tags: bool) -> Value {
    match v {
        Value::Array(a) => Value::Array(
            a.into_iter()
                .filter(|x| x.get("text").and_then(Value::as_str) != Some("_tagged"))
                .map(|x| intended(x, tags))
                .collect(),
        ),
        Value::Object(mut m) => {
            if tags {
                m.remove("id");
            }
            if let Some(Value::Array(ms)) = m.remove("metrics") {
                let kept = ms
                    .into_iter()
                    .filter(|x| x.get("name").and_then(Value::as_str) != Some("_tagged"))
                    .collect();
                m.insert("metrics".into(), Value::Array(kept));
            }
            Value::Object(m.into_iter().map(|(k, v)| (k, intended(v, tags))).collect())
        }
        other => other,
    }
}

/// graphite-web orders completer matches of equal names by directory order; compare as sets.
fn sorted_metrics(mut v: Value) -> Value {
    if let Some(Value::Array(ms)) = v.get_mut("metrics") {
        ms.sort_by_key(|m| m.to_string());
    }
    v
}

/// POSTs a form body; the status and the body text.
fn post_form(url: &str, body: &str) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .expect("post");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

/// Sends the same request to Tally and to graphite-web and records any difference.
struct Compare<'a> {
    tally: &'a StoreProc,
    gw: &'a GraphiteWeb,
    total: usize,
    failures: Vec<String>,
}

impl Compare<'_> {
    /// A GET whose JSON answers must be equal (up to graphite-web's internals, see `intended`).
    fn get(&mut self, path: String) {
        self.total += 1;
        let ((ts, tb), (gs, gb)) = (get(&self.tally.url(&path)), get(&self.gw.url(&path)));
        let tv = serde_json::from_str::<Value>(&tb).ok();
        let gv = serde_json::from_str::<Value>(&gb)
            .ok()
            .map(|v| intended(v, path.starts_with("/tags")));
        let (tv, gv) = if path.contains("format=completer") {
            (tv.map(sorted_metrics), gv.map(sorted_metrics))
        } else {
            (tv, gv)
        };
        // Render answers compare as the storage-free ones do: numbers by value (graphite-web
        // writes an event count as 1, Tally as 1.0), and the failure says where they differ.
        let render = path.starts_with("/render");
        let differs = if render {
            diff_json(&tb, &gb)
        } else {
            (tv != gv).then(String::new)
        };
        if ts != gs || differs.is_some() || tv.is_none() {
            self.failures.push(format!(
                "{path}: {} {ts} {tb:.300} vs {gs} {gb:.300}",
                differs.unwrap_or_default()
            ));
        }
    }

    /// A form POST whose answers must be equal.
    fn post(&mut self, path: &str, body: String) {
        self.total += 1;
        let send = |url: String| post_form(&url, &body);
        let ((ts, tb), (gs, gb)) = (send(self.tally.url(path)), send(self.gw.url(path)));
        let (tv, gv) = (
            serde_json::from_str::<Value>(&tb).ok(),
            serde_json::from_str::<Value>(&gb).ok(),
        );
        if ts != gs || tv != gv {
            self.failures.push(format!(
                "POST {path} {body}: {ts} {tb:.200} vs {gs} {gb:.200}"
            ));
        }
    }
}

pub(crate) fn wait_for(gw: &GraphiteWeb, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "graphite-web never showed {what}\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn stored_data_matches_carbon_and_graphite_web() {
    let now = tally_common::unix_now();
    let now = now - now % 10;
    let text = plaintext(now);
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = StoreProc::start_quiet(dir.path());
    let gw = GraphiteWeb::start_with_carbon();
    gw.send(&text);
    {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(tally.line).expect("tally accepts");
        c.write_all(text.as_bytes()).expect("write");
    }
    // carbon writes whisper files and registers tags with graphite-web in the background.
    wait_for(&gw, "all plain series", || {
        let (_, b) = get(&gw.url("/metrics/expand?query=srv.*.*&query=beacons.*.*&leavesOnly=1"));
        serde_json::from_str::<Value>(&b)
            .ok()
            .and_then(|v| v["results"].as_array().map(Vec::len))
            == Some(8)
    });
    wait_for(&gw, "all tagged series", || {
        let (_, b) = get(&gw.url(&format!("/tags/findSeries?expr={}", enc("host=~web"))));
        serde_json::from_str::<Value>(&b)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            == Some(7)
    });
    // Points still in carbon's cache are served through carbonlink; give the last ones a moment.
    let until = now - 10;
    let from = now - 1800;
    wait_for(&gw, "the newest points", || {
        let (_, b) = get(&gw.url(&format!(
            "/render?target=srv.web1.cpu&from={}&until={until}&format=json",
            until - 10
        )));
        b.contains(&format!(", {until}]")) && !b.contains("[null")
    });

    let mut failures = Vec::new();
    let mut total = 0;
    for target in RENDER {
        total += 1;
        let q = format!(
            "/render?target={}&from={from}&until={until}&format=json",
            enc(target)
        );
        let (ts, tb) = get(&tally.url(&q));
        let (gs, gb) = get(&gw.url(&q));
        let d = if ts != gs {
            Some(format!("status {ts} vs {gs}: {tb:.200} / {gb:.300}"))
        } else {
            diff_json(&tb, &gb)
        };
        if let Some(d) = d {
            failures.push(format!("render {target}: {d}"));
        }
    }
    // Grafana's panel query shape: POST, form-encoded, maxDataPoints.
    for target in [
        "sumSeries(srv.*.requests)",
        "seriesByTag('name=requests', 'status=503')",
    ] {
        total += 1;
        let body = format!(
            "target={}&from={from}&until={until}&format=json&maxDataPoints=50",
            enc(&format!("aliasSub({target}, \"(^.*$)\", \"\\1 A\")"))
        );
        let post = |url: String| post_form(&url, &body);
        let ((ts, tb), (gs, gb)) = (post(tally.url("/render")), post(gw.url("/render")));
        let d = if ts != gs {
            Some(format!("status {ts} vs {gs}"))
        } else {
            diff_json(&tb, &gb)
        };
        if let Some(d) = d {
            failures.push(format!("POST render {target}: {d}"));
        }
    }
    let mut cmp = Compare {
        tally: &tally,
        gw: &gw,
        total,
        failures,
    };
    for q in FIND {
        cmp.get(format!("/metrics/find?query={}", enc(q)));
        cmp.get(format!("/metrics/find?query={}&format=completer", enc(q)));
    }
    for q in ["srv.*.cpu", "srv.*", "*.*.count"] {
        cmp.get(format!("/metrics/expand?query={}", enc(q)));
    }
    cmp.get(format!(
        "/metrics/expand?query={}&query={}&leavesOnly=1",
        enc("srv.web1.*"),
        enc("beacons.*.count")
    ));
    cmp.get(format!(
        "/tags/findSeries?expr={}&expr={}",
        enc("name=requests"),
        enc("status=~5..")
    ));
    cmp.get(format!(
        "/tags/autoComplete/tags?expr={}",
        enc("name=requests")
    ));
    cmp.get(format!(
        "/tags/autoComplete/tags?tagPrefix=h&expr={}",
        enc("host=~web")
    ));
    cmp.get(format!(
        "/tags/autoComplete/values?tag=status&expr={}",
        enc("name=requests")
    ));
    cmp.get(format!(
        "/tags/autoComplete/values?tag=host&valuePrefix=web&expr={}",
        enc("status=503")
    ));
    cmp.get("/tags/host".to_owned());
    cmp.get("/tags".to_owned());

    // Events (Grafana annotations): the same events posted to both, read back with filters.
    let events = [
        format!(
            r#"{{"what": "deploy v2", "tags": ["deploy", "web"], "when": {}, "data": "build 42"}}"#,
            now - 900
        ),
        format!(
            r#"{{"what": "cdn incident", "tags": "cdn fastly", "when": {}}}"#,
            now - 600
        ),
        format!(
            r#"{{"what": "deploy v3", "tags": ["deploy"], "when": {}, "data": ""}}"#,
            now - 300
        ),
    ];
    for e in &events {
        for url in [tally.url("/events/"), gw.url("/events/")] {
            let r = reqwest::blocking::Client::new()
                .post(url.clone())
                .body(e.clone())
                .send()
                .expect("post event");
            assert_eq!(r.status(), 200, "{url}: {}", r.text().unwrap_or_default());
        }
    }
    let since = now - 3600;
    cmp.get(format!("/events/get_data?from={since}&until={now}"));
    cmp.get(format!(
        "/events/get_data?from={since}&until={now}&tags=deploy"
    ));
    cmp.get(format!(
        "/events/get_data?from={since}&until={now}&tags=deploy%20web"
    ));
    cmp.get(format!(
        "/events/get_data?from={since}&until={now}&tags=web%20cdn&set=union"
    ));
    cmp.get(format!(
        "/events/get_data?from={}&until={}",
        now - 700,
        now - 400
    ));
    // events() as a series: one point per second, counting the events with every tag given.
    for target in [
        "events('*')",
        "events('deploy')",
        "events('deploy', 'web')",
        "summarize(events('deploy'), '10min', 'sum')",
    ] {
        cmp.get(format!(
            "/render?target={}&from={since}&until={now}&format=json",
            enc(target)
        ));
    }

    // Tag writes: register, register several, delete; then the tag index is compared again.
    cmp.post(
        "/tags/tagSeries",
        format!("path={}", enc("disk.free;host=web9;dev=sda")),
    );
    cmp.post(
        "/tags/tagMultiSeries",
        format!(
            "path={}&path={}",
            enc("disk.free;host=web8"),
            enc("up;zone=b;az=1")
        ),
    );
    cmp.post(
        "/tags/delSeries",
        format!("path={}", enc("requests;host=web3;status=503")),
    );
    cmp.get(format!("/tags/findSeries?expr={}", enc("host=~web")));
    cmp.get("/tags/host".to_owned());
    cmp.get(format!(
        "/tags/autoComplete/tags?expr={}",
        enc("name=disk.free")
    ));
    // The metric tree as Grafana asks for it: POST with the query in the body.
    cmp.post(
        &format!("/metrics/find?from={from}&until={until}"),
        "query=srv.*".to_owned(),
    );
    cmp.post("/metrics/find", format!("query={}", enc("srv.web1.*")));
    // Grafana's version probe: plain text.
    cmp.total += 1;
    let (tv, gv) = (get(&tally.url("/version")), get(&gw.url("/version")));
    if tv.0 != gv.0 || tv.1.trim() != gv.1.trim() {
        cmp.failures.push(format!("/version: {tv:?} vs {gv:?}"));
    }
    // Grafana's "test connection": constantLine(100) over -1h..now with maxDataPoints=300. The two
    // servers see "now" a moment apart, so compare the shape: one series named 100.0, 3 points.
    cmp.total += 1;
    let probe = format!(
        "/render?target={}&from=-1h&until=now&format=json&maxDataPoints=300",
        enc("constantLine(100)")
    );
    let shape = |(status, body): (u16, String)| {
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        (
            status,
            v[0]["target"].clone(),
            v[0]["datapoints"].as_array().map(Vec::len),
            v.as_array().map(Vec::len),
        )
    };
    let (ts, gs) = (shape(get(&tally.url(&probe))), shape(get(&gw.url(&probe))));
    if ts != gs {
        cmp.failures
            .push(format!("test connection: {ts:?} vs {gs:?}"));
    }
    let (total, failed) = (cmp.total, cmp.failures.len());
    println!(
        "compat (stored): {} passed, {failed} failed of {total} requests",
        total - failed
    );
    assert!(
        cmp.failures.is_empty(),
        "differences from carbon + graphite-web 1.1.8:\n{}",
        cmp.failures.join("\n")
    );
}
