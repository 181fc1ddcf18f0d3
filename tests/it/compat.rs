//! Differential tests against the real graphite-web 1.1.8: the same `/render` request goes to
//! both, and the answers must match (names, tags, timestamps, values to 1e-9 relative).
//!
//! These targets need no stored data: they are built on `constantLine`, `time` and `sinFunction`,
//! which both servers compute from the request alone. Every supported function appears.

use serde_json::Value;

use crate::graphite_web::GraphiteWeb;
use crate::proc::StoreProc;

/// Storage-free targets, each sent to both servers.
pub(crate) const TARGETS: &[&str] = &[
    "constantLine(100)",
    "constantLine(1.5)",
    "constantLine(-3)",
    "time('t')",
    "time('t', 10)",
    "timeFunction('tf', 30)",
    "sinFunction('s')",
    "sinFunction('s', 2)",
    "sinFunction('s', 2, 30)",
    "scale(time('t', 60), 2)",
    "scale(time('t', 60), 0.5)",
    "offset(time('t', 60), -1700000000)",
    "absolute(offset(time('t', 60), -1700001800))",
    "absolute(sinFunction('s', 1, 60))",
    "sumSeries(time('a', 60), time('b', 60))",
    "sum(time('a', 60), sinFunction('b', 1, 60))",
    "averageSeries(time('a', 60), sinFunction('b', 1, 60))",
    "avg(time('a', 60), time('b', 120))",
    "minSeries(time('a', 60), sinFunction('b', 1, 60))",
    "maxSeries(time('a', 60), sinFunction('b', 1, 60))",
    "diffSeries(time('a', 60), sinFunction('b', 1, 60))",
    "multiplySeries(sinFunction('a', 2, 60), sinFunction('b', 3, 60))",
    "stddevSeries(sinFunction('a', 2, 60), sinFunction('b', 3, 60), time('c', 60))",
    "rangeOfSeries(sinFunction('a', 2, 60), time('c', 60))",
    "countSeries(time('a', 60), time('b', 60))",
    "sumSeries(time('a', 60), time('b', 120))",
    "averageSeries(time('a', 30), time('b', 45))",
    "aggregate(group(time('a', 60), sinFunction('b', 1, 60)), 'median')",
    "aggregate(group(time('a', 60), sinFunction('b', 1, 60)), 'avg_zero')",
    "aggregate(group(time('a', 60), sinFunction('b', 1, 60)), 'diff')",
    "aggregate(group(time('a', 60), sinFunction('b', 1, 60)), 'last')",
    "aggregate(group(time('a', 60), sinFunction('b', 1, 60)), 'count')",
    "aggregate(group(time('a', 60), sinFunction('b', 1, 60)), 'range')",
    "aggregate(group(time('a', 60), sinFunction('b', 1, 60)), 'multiply')",
    "aggregate(group(time('a', 60), sinFunction('b', 1, 60)), 'sumSeries')",
    "derivative(time('t', 60))",
    "derivative(sinFunction('s', 5, 60))",
    "nonNegativeDerivative(sinFunction('s', 10, 60))",
    "nonNegativeDerivative(sinFunction('s', 10, 60), 20)",
    "perSecond(time('t', 60))",
    "perSecond(sinFunction('s', 100, 60))",
    "integral(sinFunction('s', 1, 60))",
    "keepLastValue(removeBelowValue(sinFunction('s', 1, 60), 0))",
    "keepLastValue(removeBelowValue(sinFunction('s', 1, 60), 0), 2)",
    "transformNull(removeAboveValue(sinFunction('s', 1, 60), 0.5))",
    "transformNull(removeAboveValue(sinFunction('s', 1, 60), 0.5), -1)",
    "removeAboveValue(sinFunction('s', 1, 60), 0.5)",
    "removeBelowValue(sinFunction('s', 1, 60), -0.5)",
    "movingAverage(time('t', 60), 5)",
    "movingAverage(sinFunction('s', 1, 60), '5min')",
    "movingMedian(sinFunction('s', 1, 60), 3)",
    "movingSum(time('t', 60), 2)",
    "movingMin(sinFunction('s', 1, 60), 4)",
    "movingMax(sinFunction('s', 1, 60), '10min')",
    "summarize(time('t', 60), '10min')",
    "summarize(time('t', 60), '10min', 'avg')",
    "summarize(time('t', 60), '15min', 'max', true)",
    "summarize(sinFunction('s', 1, 60), '1h', 'last')",
    "hitcount(time('t', 60), '5min')",
    "hitcount(sinFunction('s', 1, 60), '7min')",
    "timeShift(time('t', 60), '1h')",
    "timeShift(time('t', 60), '-30min')",
    "timeStack(time('t', 60), '10min', 0, 2)",
    "alias(time('t', 60), 'foo')",
    "aliasSub(time('t', 60), '(^.*$)', '\\1 A')",
    "aliasSub(sumSeries(time('x.y', 60), time('x.z', 60)), \"(^.*$)\", \"\\1 B\")",
    "aliasByNode(time('a.b.c', 60), 1)",
    "aliasByNode(sumSeries(time('a.b.c', 60)), -1)",
    "aliasByNode(time('a.b.c', 60), 0, 2)",
    "aliasByMetric(time('a.b.c', 60))",
    "highestAverage(group(time('a', 60), sinFunction('b', 1, 60), constantLine(5)), 2)",
    "highestCurrent(group(time('a', 60), sinFunction('b', 1, 60)), 1)",
    "highestMax(group(time('a', 60), sinFunction('b', 1, 60)), 1)",
    "lowestAverage(group(time('a', 60), sinFunction('b', 1, 60)), 1)",
    "lowestCurrent(group(time('a', 60), sinFunction('b', 1, 60)), 1)",
    "highest(group(time('a', 60), sinFunction('b', 1, 60)), 1, 'max')",
    "sortByTotal(group(sinFunction('a', 1, 60), time('b', 60)))",
    "sortByMaxima(group(sinFunction('a', 1, 60), time('b', 60)))",
    "sortByMinima(group(time('b', 60), sinFunction('a', 1, 60)))",
    "sortByName(group(time('b', 60), time('a', 60)))",
    "sortByName(group(time('a10', 60), time('a9', 60)), true)",
    "limit(group(time('a', 60), time('b', 60)), 1)",
    "exclude(group(time('aa', 60), time('bb', 60)), 'a')",
    "grep(group(time('aa', 60), time('bb', 60)), 'a')",
    "removeEmptySeries(group(removeAboveValue(time('a', 60), 0), time('b', 60)))",
    "asPercent(sinFunction('a', 1, 60), 2)",
    "asPercent(group(time('a', 60), sinFunction('b', 1, 60)))",
    "asPercent(time('a', 60), time('b', 60))",
    "divideSeries(sinFunction('a', 1, 60), time('b', 60))",
    "divideSeries(time('a', 60), constantLine(2))",
    "percentileOfSeries(group(time('a', 60), sinFunction('b', 1, 60), constantLine(5)), 50)",
    "groupByNode(group(time('x.a.1', 60), time('x.b.1', 60), time('x.a.2', 60)), 1, 'sum')",
    "groupByNodes(group(time('x.a.1', 60), time('x.b.1', 60), time('x.a.2', 60)), 'max', 1, 2)",
    "consolidateBy(time('t', 60), 'sum')",
    "color(time('t', 60), 'red')",
    "lineWidth(time('t', 60), 2)",
    "secondYAxis(time('t', 60))",
    "alpha(time('t', 60), 0.5)",
    "dashed(time('t', 60))",
    "dashed(time('t', 60), 2.5)",
    "drawAsInfinite(time('t', 60))",
    "stacked(group(time('a', 60), time('b', 60)))",
    "stacked(time('a', 60), 'mystack')",
    "areaBetween(group(time('a', 60), scale(time('b', 60), 2)))",
    "threshold(5)",
    "threshold(5.5, 'limit', 'red')",
    "verticalLine('1700001800', 'deploy', 'blue')",
    "cactiStyle(time('t', 60))",
    "legendValue(time('t', 60), 'avg')",
    "time('t', 60) | scale(2)",
    "time('t', 60)|offset(1)|alias('piped')",
    // graphite-web 1.1.8's other functions (issue 12).
    "add(time('t', 60), 5)",
    "add(removeBelowValue(sinFunction('s', 1, 60), 0), 1.5)",
    "pow(sinFunction('s', 2, 60), 2)",
    "pow(sinFunction('s', 2, 60), 0.5)",
    "powSeries(sinFunction('a', 2, 60), sinFunction('b', 3, 60))",
    "powSeries(time('a', 60), constantLine(0.5))",
    "exp(sinFunction('s', 1, 60))",
    "log(time('t', 60))",
    "log(sinFunction('s', 10, 60), 2)",
    "logit(scale(sinFunction('s', 1, 60), 0.9))",
    "sigmoid(sinFunction('s', 5, 60))",
    "squareRoot(sinFunction('s', 4, 60))",
    "invert(sinFunction('s', 4, 60))",
    "isNonNull(removeBelowValue(sinFunction('s', 1, 60), 0))",
    "round(sinFunction('s', 100, 60))",
    "round(sinFunction('s', 100, 60), 2)",
    "round(sinFunction('s', 100, 60), -1)",
    "scaleToSeconds(sinFunction('s', 100, 60), 1)",
    "minMax(sinFunction('s', 3, 60))",
    "offsetToZero(sinFunction('s', 3, 60))",
    "changed(round(sinFunction('s', 1, 60)))",
    "delay(time('t', 60), 2)",
    "delay(removeBelowValue(sinFunction('s', 1, 60), 0), -3)",
    "delay(time('t', 60), 0)",
    "interpolate(removeBelowValue(sinFunction('s', 1, 60), 0))",
    "interpolate(removeBelowValue(sinFunction('s', 1, 60), 0), 3)",
    "integralByInterval(sinFunction('s', 1, 60), '10min')",
    "timeSlice(time('t', 60), '1700001200', '1700002400')",
    "timeSlice(removeBelowValue(sinFunction('s', 1, 60), 0), '1700001200')",
    "substr(time('a.b.c', 60), 1)",
    "substr(sumSeries(time('a.b.c', 60)), 0, 2)",
    "substr(time('a.b.c', 60), -2, -1)",
    "setXFilesFactor(time('t', 60), 0.5)",
    "xFilesFactor(time('t', 60), 1)",
    "cumulative(time('t', 60))",
    "movingWindow(sinFunction('s', 1, 60), 5)",
    "movingWindow(removeBelowValue(sinFunction('s', 1, 60), 0), '10min', 'median')",
    "movingWindow(time('t', 60), 3, 'rangeOf')",
    "movingWindow(removeBelowValue(sinFunction('s', 1, 60), 0), 4, 'avg_zero', 0.5)",
    "sin('s', 2, 60)",
    "holtWintersForecast(sinFunction('s', 10, 60))",
    "holtWintersForecast(removeBelowValue(sinFunction('s', 10, 60), -5), '2h', '30min')",
    "holtWintersConfidenceBands(sinFunction('s', 10, 60), 2, '2h', '30min')",
    "holtWintersConfidenceBands(group(time('a', 60), removeBelowValue(sinFunction('b', 10, 60), 0)), 3, '3h', '20min')",
    "holtWintersConfidenceArea(sinFunction('s', 10, 60), 3, '2h', '30min')",
    "holtWintersAberration(sinFunction('s', 10, 60), 1, '2h', '30min')",
    "exponentialMovingAverage(sinFunction('s', 1, 60), 5)",
    "exponentialMovingAverage(removeBelowValue(sinFunction('s', 1, 60), 0), '10min')",
    "linearRegression(time('t', 60))",
    "linearRegression(sinFunction('s', 1, 60), '1700000000', '1700001800')",
    "nPercentile(sinFunction('s', 1, 60), 50)",
    "nPercentile(removeBelowValue(sinFunction('s', 1, 60), 0), 95.5)",
    "removeAbovePercentile(sinFunction('s', 1, 60), 75)",
    "removeBelowPercentile(removeBelowValue(sinFunction('s', 1, 60), -0.5), 25)",
    "removeBetweenPercentile(group(sinFunction('a', 1, 60), sinFunction('b', 2, 60), sinFunction('c', 3, 60), time('d', 60)), 30)",
    "averageOutsidePercentile(group(sinFunction('a', 1, 60), sinFunction('b', 2, 60), time('c', 60), scale(time('d', 60), 2)), 60)",
    "mostDeviant(group(sinFunction('a', 1, 60), sinFunction('b', 5, 60), time('c', 60)), 2)",
    "stdev(sinFunction('s', 1, 60), 5)",
    "stdev(removeBelowValue(sinFunction('s', 1, 60), 0), 4, 0.5)",
    "aggregateLine(sinFunction('s', 1, 60))",
    "aggregateLine(sinFunction('s', 1, 60), 'max', true)",
    "aggregateLine(removeBelowValue(sinFunction('s', 1, 60), 5))",
    "identity('i')",
    "aggregateSeriesLists(group(time('a', 60), time('b', 60)), group(sinFunction('c', 1, 60), sinFunction('d', 2, 60)), 'max')",
    "sumSeriesLists(group(time('a', 60), time('b', 60)), group(sinFunction('c', 1, 60), removeBelowValue(sinFunction('d', 2, 60), 0)))",
    "diffSeriesLists(group(time('a', 60), time('b', 60)), group(sinFunction('c', 1, 60), sinFunction('d', 2, 60)))",
    "multiplySeriesLists(group(time('a', 60), time('b', 60)), group(sinFunction('c', 1, 60), sinFunction('d', 2, 60)))",
    "divideSeriesLists(group(time('a', 60), time('b', 60)), group(sinFunction('c', 1, 60), time('d', 120)))",
    "aggregateWithWildcards(group(time('x.a.1', 60), time('x.b.1', 60), time('x.a.2', 60)), 'sum', 1)",
    "sumSeriesWithWildcards(group(time('x.a.1', 60), time('x.b.1', 60), time('x.a.2', 60)), 2)",
    "averageSeriesWithWildcards(group(time('x.a.1', 60), sinFunction('x.b.1', 1, 60), time('x.a.2', 60)), 1)",
    "multiplySeriesWithWildcards(group(sinFunction('x.a.1', 2, 60), sinFunction('x.b.1', 3, 60), time('x.a.2', 60)), 1, 2)",
    "applyByNode(group(time('x.a.1', 60), time('x.b.1', 60)), 1, \"scale(time('%', 60), 2)\")",
    "applyByNode(group(time('x.a.1', 60), time('x.b.1', 60)), 1, \"sinFunction('%', 2, 60)\", '%.sin')",
    "reduceSeries(mapSeries(group(time('x.a.n', 60), time('x.a.d', 120), time('x.b.n', 60), sinFunction('x.b.d', 1, 60)), 1), 'divideSeries', 2, 'n', 'd')",
    "reduce(map(group(time('x.a.n', 60), time('x.a.d', 60), time('x.b.n', 60), time('x.b.d', 60)), 1), 'asPercent', 2, 'n', 'd')",
    "weightedAverage(group(time('x.a.v', 60), time('x.b.v', 60)), group(sinFunction('x.a.w', 2, 60), time('x.b.w', 60)), 1)",
    "pct(time('a', 60), 2)",
    "smartSummarize(time('t', 60), '10min')",
    "smartSummarize(sinFunction('s', 1, 60), '15min', 'max', 'hours')",
    "smartSummarize(removeBelowValue(sinFunction('s', 1, 60), 0), '7min', 'avg', 'minutes')",
    "smartSummarize(time('t', 60), '1d', 'last', 'days')",
    "filterSeries(group(time('a', 60), sinFunction('b', 1, 60)), 'max', '>', 0.5)",
    "filterSeries(group(time('a', 60), removeBelowValue(sinFunction('b', 1, 60), 5)), 'sum', '<=', 100)",
    "sortBy(group(sinFunction('a', 1, 60), time('b', 60), constantLine(5)), 'max')",
    "sortBy(group(sinFunction('a', 1, 60), time('b', 60), constantLine(5)), 'last', true)",
    "unique(time('a', 60), time('a', 60), time('b', 60))",
    "useSeriesAbove(group(time('x.a', 60), sinFunction('x.b', 1, 60)), 100, '^(.*)$', \"time('\\1.y', 60)\")",
    "fallbackSeries(removeEmptySeries(removeBelowValue(time('a', 60), 1e12)), constantLine(1))",
    "fallbackSeries(time('a', 60), constantLine(1))",
    "aliasQuery(time('x.a', 60), '^.*$', 'constantLine(7)', 'v %d')",
    "aliasQuery(time('x.a', 60), '^.*$', 'scale(constantLine(7), 0.25)', 'v %.1f')",
    "events('*')",
    "events('deploy', 'web')",
    // Random values: compared for names, tags and timestamps only (see `RANDOM`).
    "randomWalk('r')",
    "randomWalkFunction('r', 120)",
    "percentileOfSeries(group(time('a', 60), sinFunction('b', 1, 60), constantLine(5)), 40)",
    "percentileOfSeries(group(time('a', 60), sinFunction('b', 1, 60), constantLine(5)), 40, true)",
];

/// Extra request shapes: (query string without target, target).
const SHAPES: &[(&str, &str)] = &[
    ("maxDataPoints=7", "time('t', 60)"),
    ("maxDataPoints=7", "sinFunction('s', 1, 60)"),
    ("maxDataPoints=1", "time('t', 60)"),
    ("maxDataPoints=300", "time('t', 60)"),
    (
        "noNullPoints=true",
        "removeBelowValue(sinFunction('s', 1, 60), 0)",
    ),
    ("format=raw", "time('t', 600)"),
    (
        "format=dygraph",
        "group(time('t', 600), removeBelowValue(sinFunction('s', 1, 600), 0))",
    ),
    (
        "format=rickshaw",
        "removeBelowValue(sinFunction('s', 1, 600), 0)",
    ),
    (
        "format=csv",
        "removeBelowValue(sinFunction('s', 1, 600), 0)",
    ),
];

/// Targets whose values are random: their values are not compared.
const RANDOM: &[&str] = &["randomWalk"];

/// The answer with every value null, for targets with random values.
fn without_values(body: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    for s in v.as_array_mut().into_iter().flatten() {
        for p in s["datapoints"].as_array_mut().into_iter().flatten() {
            p[0] = Value::Null;
        }
    }
    v.to_string()
}

const FROM: i64 = 1_700_000_000;
const UNTIL: i64 = 1_700_003_600;

pub(crate) fn get(url: &str) -> (u16, String) {
    let r = reqwest::blocking::get(url).expect("request");
    (r.status().as_u16(), r.text().unwrap_or_default())
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn value_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => close(x, y),
        _ => a.is_null() && b.is_null(),
    }
}

/// Compares two `/render` JSON answers; tag values are compared as strings.
pub(crate) fn diff_json(tally: &str, graphite: &str) -> Option<String> {
    let (t, g): (Value, Value) = match (serde_json::from_str(tally), serde_json::from_str(graphite))
    {
        (Ok(t), Ok(g)) => (t, g),
        _ => {
            return Some(format!(
                "not both JSON: tally {tally:.200} / graphite {graphite:.200}"
            ))
        }
    };
    let (t, g) = (
        t.as_array().cloned().unwrap_or_default(),
        g.as_array().cloned().unwrap_or_default(),
    );
    if t.len() != g.len() {
        let names = |v: &[Value]| {
            v.iter()
                .map(|s| s["target"].to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        return Some(format!(
            "{} series vs {}: [{}] vs [{}]",
            t.len(),
            g.len(),
            names(&t),
            names(&g)
        ));
    }
    for (ts, gs) in t.iter().zip(&g) {
        if ts["target"] != gs["target"] {
            return Some(format!("target {} vs {}", ts["target"], gs["target"]));
        }
        let tags = |v: &Value| -> Vec<(String, String)> {
            let mut out: Vec<(String, String)> = v["tags"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.sort();
            out
        };
        if tags(ts) != tags(gs) {
            return Some(format!(
                "{}: tags {:?} vs {:?}",
                ts["target"],
                tags(ts),
                tags(gs)
            ));
        }
        let (tp, gp) = (
            ts["datapoints"].as_array().cloned().unwrap_or_default(),
            gs["datapoints"].as_array().cloned().unwrap_or_default(),
        );
        if tp.len() != gp.len() {
            return Some(format!(
                "{}: {} points vs {}: first {:?} vs {:?}",
                ts["target"],
                tp.len(),
                gp.len(),
                tp.first(),
                gp.first()
            ));
        }
        for (a, b) in tp.iter().zip(&gp) {
            if a[1] != b[1] || !value_eq(&a[0], &b[0]) {
                return Some(format!("{}: point {a} vs {b}", ts["target"]));
            }
        }
    }
    None
}

fn diff_text(tally: &str, graphite: &str) -> Option<String> {
    // csv/raw: compare field by field, numbers numerically.
    let (t, g): (Vec<&str>, Vec<&str>) = (tally.lines().collect(), graphite.lines().collect());
    if t.len() != g.len() {
        return Some(format!("{} lines vs {}", t.len(), g.len()));
    }
    for (a, b) in t.iter().zip(&g) {
        let (fa, fb): (Vec<&str>, Vec<&str>) =
            (a.split([',', '|']).collect(), b.split([',', '|']).collect());
        let same = fa.len() == fb.len()
            && fa.iter().zip(&fb).all(|(x, y)| {
                x == y
                    || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q)) if close(p, q))
            });
        if !same {
            return Some(format!("line {a:?} vs {b:?}"));
        }
    }
    None
}

#[test]
fn storage_free_targets_match_graphite_web() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = StoreProc::start_quiet(dir.path());
    let gw = GraphiteWeb::start();
    let mut cases: Vec<(String, String)> = TARGETS
        .iter()
        .map(|t| (String::new(), (*t).to_owned()))
        .collect();
    cases.extend(
        SHAPES
            .iter()
            .map(|(q, t)| ((*q).to_owned(), (*t).to_owned())),
    );
    let mut failures = Vec::new();
    for (extra, target) in &cases {
        let q = format!(
            "/render?target={}&from={FROM}&until={UNTIL}{}{}",
            enc(target),
            if extra.is_empty() { "" } else { "&" },
            extra
        );
        let q = if extra.contains("format=") {
            q
        } else {
            format!("{q}&format=json")
        };
        let (ts, tb) = get(&tally.url(&q));
        let (gs, gb) = get(&gw.url(&q));
        let diff = if ts != gs {
            Some(format!("status {ts} vs {gs}: {tb:.200} / {gb:.300}"))
        } else if [
            "format=raw",
            "format=csv",
            "format=dygraph",
            "format=rickshaw",
        ]
        .iter()
        .any(|f| extra.contains(f))
        {
            diff_text(&tb, &gb)
        } else if RANDOM.iter().any(|r| target.starts_with(r)) {
            diff_json(&without_values(&tb), &without_values(&gb))
        } else {
            diff_json(&tb, &gb)
        };
        if let Some(d) = diff {
            failures.push(format!("{target} [{extra}]: {d}"));
        }
    }
    let passed = cases.len() - failures.len();
    println!(
        "compat: {passed} passed, {} failed of {} storage-free render requests",
        failures.len(),
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "differences from graphite-web 1.1.8:\n{}",
        failures.join("\n")
    );
}
