//! Atlas's HTTP API: `GET /api/v1/graph` (`atlas-eval` `graph/Grapher.scala`, the engines of
//! `atlas-chart`) and `GET /api/v1/tags[/{key}]` (`atlas-webapi` `TagsApi.scala`).
//!
//! Graph formats: `png` (the default), `json` (NaN written bare, as Atlas does), `std.json` (NaN
//! quoted, so any JSON parser reads it), `stats.json`, `csv` and `txt`. The PNG is Atlas's own
//! chart (`super::chart`, a port of `atlas-chart`'s `DefaultGraphEngine`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tally_common::auth::{Access, Routes};

use super::query::Tags;
use super::{evaluate, parse_in, time, Graph};
use crate::api_error::ApiError;
use crate::fetch::Ctx;
use crate::limits::{Budget, Limits};
use crate::source::Source;

#[derive(Clone)]
struct Api {
    source: Arc<dyn Source>,
    limits: Limits,
    budget: Arc<Budget>,
}

/// Atlas's routes, each declared with what it needs: all read.
pub(crate) fn routes(source: Arc<dyn Source>, limits: Limits, budget: Arc<Budget>) -> Routes {
    Routes::new()
        .add(Method::GET, "/api/v1/graph", Access::Read, graph)
        .add(Method::GET, "/api/v1/tags", Access::Read, tags)
        .add(Method::GET, "/api/v1/tags/", Access::Read, tags)
        .add(Method::GET, "/api/v1/tags/:key", Access::Read, tag_values)
        .with_state(Api {
            source,
            limits,
            budget,
        })
}

/// The query string's parameters in order (repeatable, like `tz`).
fn params(q: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(super) fn get<'p>(p: &'p [(String, String)], key: &str) -> Option<&'p str> {
    p.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::client(StatusCode::BAD_REQUEST, msg.into())
}

async fn blocking<F>(f: F) -> Result<Response, ApiError>
where
    F: FnOnce() -> Result<Response, ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(|| crate::partial::collect(f)).await {
        Ok((r, missed)) => crate::partial::marked(r, &missed),
        Err(e) => Err(ApiError::internal(format!("atlas task failed: {e}"))),
    }
}

const FORMATS: &str = "png, json, std.json, stats.json, csv or txt";

async fn graph(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    blocking(move || {
        let p = params(q);
        let q = get(&p, "q")
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| bad("parameter \"q\" is required"))?;
        let format = get(&p, "format").unwrap_or("png");
        if !matches!(
            format,
            "png" | "json" | "std.json" | "stats.json" | "csv" | "txt"
        ) {
            return Err(bad(format!(
                "unknown format \"{format}\"; one of {FORMATS}"
            )));
        }
        // The first `tz` is the graph's; Atlas repeats it for extra axes' labels.
        let tz_name = p
            .iter()
            .find(|(k, _)| k == "tz")
            .map_or("US/Pacific", |(_, v)| v.as_str());
        let tz = time::parse_tz(tz_name).map_err(bad)?;
        let now = tally_common::unix_now() * 1000;
        let (s, e) = time::time_range(
            get(&p, "s").unwrap_or("e-3h"),
            get(&p, "e").unwrap_or("now"),
            tz,
            now,
        )
        .map_err(|m| bad(format!("bad time range: {m}")))?;
        let step = match get(&p, "step") {
            None | Some("") => None,
            Some(d) => {
                let ms =
                    time::parse_duration(d).map_err(|m| bad(format!("parameter \"step\": {m}")))?;
                if ms < 1000 {
                    return Err(bad(format!(
                        "parameter \"step\": \"{d}\" is below Tally's resolution of 1s"
                    )));
                }
                Some(ms / 1000)
            }
        };
        let width = match get(&p, "w") {
            None => 700,
            Some(w) => w
                .parse::<usize>()
                .ok()
                .filter(|w| (1..=10_000).contains(w))
                .ok_or_else(|| {
                    bad(format!(
                        "parameter \"w\": \"{w}\" is not a width from 1 to 10000"
                    ))
                })?,
        };
        // The program runs with `tz` set to the graph's zone, as Atlas's `Grapher` runs it.
        let exprs = parse_in(q, get(&p, "cq"), Some(tz_name)).map_err(ApiError::from)?;
        let (start, end) = (s.div_euclid(1000), e.div_euclid(1000));
        let ctx = Ctx::new(api.source.clone(), start, end)
            .with_limits(api.limits)
            .with_budget(api.budget.clone());
        let g = evaluate(&ctx, &exprs, start, end, step, width).map_err(ApiError::from)?;
        if format == "png" {
            return png(&g, &p);
        }
        Ok(render(&g, format, tz))
    })
    .await
}

/// The graph as a PNG in Atlas's own layout (`chart`): a time axis per `tz`, in order.
fn png(g: &Graph, p: &[(String, String)]) -> Result<Response, ApiError> {
    let mut zones = Vec::new();
    for (_, v) in p.iter().filter(|(k, _)| k == "tz") {
        zones.push((v.clone(), time::parse_tz(v).map_err(bad)?));
    }
    if zones.is_empty() {
        zones.push(("US/Pacific".to_string(), chrono_tz::US::Pacific));
    }
    let png = super::chart::render(g, p, zones).map_err(ApiError::from)?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

/// A JSON number as Atlas writes it: NaN and the infinities bare (`json`) or quoted
/// (`std.json`).
fn number(v: f64, quote_nan: bool) -> String {
    if v.is_finite() {
        let s = format!("{v}");
        if s.contains(['.', 'e', 'E']) {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        };
        if quote_nan {
            format!("\"{s}\"")
        } else {
            s.to_owned()
        }
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn tags_json(tags: &Tags) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

fn render(g: &Graph, format: &str, tz: chrono_tz::Tz) -> Response {
    let start_ms = g.grid.start * 1000;
    let step_ms = g.grid.step * 1000;
    let legend: Vec<String> = g.lines.iter().map(|d| json_str(&d.line.label)).collect();
    let metrics: Vec<String> = g.lines.iter().map(|d| tags_json(&d.line.tags)).collect();
    let notices: Vec<String> = g.notices.iter().map(|n| json_str(n)).collect();
    let (ctype, body) = match format {
        "json" | "std.json" => {
            let quote = format == "std.json";
            let rows: Vec<String> = (0..g.grid.len())
                .map(|i| {
                    let row: Vec<String> = g
                        .lines
                        .iter()
                        .map(|d| number(d.line.values.get(i).copied().unwrap_or(f64::NAN), quote))
                        .collect();
                    format!("[{}]", row.join(","))
                })
                .collect();
            (
                "application/json",
                format!(
                    "{{\"start\":{start_ms},\"step\":{step_ms},\"legend\":[{}],\"metrics\":[{}],\"values\":[{}],\"notices\":[{}]}}",
                    legend.join(","),
                    metrics.join(","),
                    rows.join(","),
                    notices.join(",")
                ),
            )
        }
        "stats.json" => {
            let stats: Vec<String> = g
                .lines
                .iter()
                .map(|d| {
                    let s = super::expr::Summary::of(&d.line.values);
                    if s.count == 0 {
                        "{\"count\":0}".to_string()
                    } else {
                        format!(
                            "{{\"count\":{},\"avg\":{},\"total\":{},\"max\":{},\"min\":{},\"last\":{}}}",
                            s.count,
                            number(s.avg(), true),
                            number(s.total, true),
                            number(s.max, true),
                            number(s.min, true),
                            number(s.last, true)
                        )
                    }
                })
                .collect();
            (
                "application/json",
                format!(
                    "{{\"start\":{start_ms},\"end\":{},\"step\":{step_ms},\"legend\":[{}],\"metrics\":[{}],\"stats\":[{}],\"notices\":[{}]}}",
                    g.grid.end * 1000,
                    legend.join(","),
                    metrics.join(","),
                    stats.join(","),
                    notices.join(",")
                ),
            )
        }
        _ => {
            let sep = if format == "csv" { "," } else { "\t" };
            let mut out = String::from("\"timestamp\"");
            for d in &g.lines {
                out.push_str(sep);
                out.push_str(&format!("\"{}\"", d.line.label.replace('"', "\"\"")));
            }
            out.push('\n');
            use chrono::TimeZone;
            for (i, t) in g.grid.times().enumerate() {
                let when = tz
                    .timestamp_opt(t, 0)
                    .single()
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                    .unwrap_or_default();
                out.push_str(&when);
                for d in &g.lines {
                    out.push_str(sep);
                    let v = d.line.values.get(i).copied().unwrap_or(f64::NAN);
                    out.push_str(&if v.is_finite() {
                        format!("{v}")
                    } else {
                        number(v, false)
                    });
                }
                out.push('\n');
            }
            (
                if format == "csv" {
                    "text/csv"
                } else {
                    "text/plain"
                },
                out,
            )
        }
    };
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

/// Tags of the series a `q` matches: every series' tags, and how many series have each.
fn tag_counts(
    api: &Api,
    q: Option<&str>,
) -> Result<BTreeMap<String, BTreeMap<String, usize>>, ApiError> {
    let mut out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    match q.filter(|q| !q.trim().is_empty()) {
        None => {
            for key in std::iter::once("name".to_string()).chain(api.source.tag_names()) {
                let values = api.source.tag_values(&key);
                if values.is_empty() {
                    continue;
                }
                let m = out.entry(key).or_default();
                for v in values {
                    m.insert(v.value, v.series);
                }
            }
        }
        Some(q) => {
            let items = super::stack::Run::program(q)
                .map_err(|e| bad(format!("bad query \"{q}\": {e}")))?;
            let [super::stack::Item::Query(query)] = items.as_slice() else {
                return Err(bad(format!(
                    "bad query \"{q}\": expected a single query on the stack"
                )));
            };
            let lookups = query.lookups().ok_or_else(|| {
                bad(format!(
                    "the query \"{query}\" does not narrow the series enough to look them up: add a clause like k,v,:eq"
                ))
            })?;
            let mut names = BTreeSet::new();
            for l in lookups {
                if !l.exprs.is_empty() {
                    let refs: Vec<&str> = l.exprs.iter().map(String::as_str).collect();
                    names.extend(api.source.select_by_tags(&refs).map_err(ApiError::from)?);
                }
            }
            for n in names {
                let tags = crate::series::tags_of(&n);
                if !query.matches(&tags) {
                    continue;
                }
                for (k, v) in tags {
                    *out.entry(k).or_default().entry(v).or_default() += 1;
                }
            }
        }
    }
    Ok(out)
}

struct TagParams {
    limit: usize,
    offset: String,
    verbose: bool,
    text: bool,
}

fn tag_params(p: &[(String, String)]) -> Result<TagParams, ApiError> {
    let limit = match get(p, "limit") {
        None => 1000,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| bad(format!("limit must be positive (got {l})")))?
            .min(10_000),
    };
    Ok(TagParams {
        limit,
        offset: get(p, "offset").unwrap_or("").to_owned(),
        verbose: get(p, "verbose") == Some("1"),
        text: get(p, "format") == Some("txt"),
    })
}

/// The answer, with `x-nflx-atlas-next-offset` when the page is full.
fn listing(items: Vec<(String, String)>, tp: &TagParams) -> Response {
    let next = (items.len() >= tp.limit)
        .then(|| items.last().map(|i| i.0.clone()))
        .flatten();
    let body = if tp.text {
        items
            .iter()
            .map(|i| i.1.clone())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        format!(
            "[{}]",
            items
                .iter()
                .map(|i| i.1.clone())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let ctype = if tp.text {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    let mut r = ([(header::CONTENT_TYPE, ctype)], body).into_response();
    if let Some(n) = next.and_then(|n| n.parse().ok()) {
        r.headers_mut().insert("x-nflx-atlas-next-offset", n);
    }
    r
}

async fn tags(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    blocking(move || {
        let p = params(q);
        let tp = tag_params(&p)?;
        let counts = tag_counts(&api, get(&p, "q"))?;
        let items: Vec<(String, String)> = if tp.verbose {
            counts
                .iter()
                .flat_map(|(k, vs)| vs.iter().map(move |(v, n)| (k, v, n)))
                .map(|(k, v, n)| (format!("{k},{v}"), k, v, n))
                .filter(|(off, ..)| off.as_str() > tp.offset.as_str())
                .take(tp.limit)
                .map(|(off, k, v, n)| {
                    let item = if tp.text {
                        format!("{k}\t{v}\t{n}")
                    } else {
                        serde_json::json!({"key": k, "value": v, "count": n}).to_string()
                    };
                    (off, item)
                })
                .collect()
        } else {
            counts
                .keys()
                .filter(|k| k.as_str() > tp.offset.as_str())
                .take(tp.limit)
                .map(|k| (k.clone(), if tp.text { k.clone() } else { json_str(k) }))
                .collect()
        };
        Ok(listing(items, &tp))
    })
    .await
}

async fn tag_values(
    State(api): State<Api>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    blocking(move || {
        let p = params(q);
        let tp = tag_params(&p)?;
        let counts = tag_counts(&api, get(&p, "q"))?;
        let empty = BTreeMap::new();
        let values = counts.get(&key).unwrap_or(&empty);
        let items: Vec<(String, String)> = values
            .iter()
            .filter(|(v, _)| v.as_str() > tp.offset.as_str())
            .take(tp.limit)
            .map(|(v, n)| {
                let item = match (tp.verbose, tp.text) {
                    (true, true) => format!("{key}\t{v}\t{n}"),
                    (true, false) => {
                        serde_json::json!({"key": key, "value": v, "count": n}).to_string()
                    }
                    (false, true) => v.clone(),
                    (false, false) => json_str(v),
                };
                (v.clone(), item)
            })
            .collect();
        Ok(listing(items, &tp))
    })
    .await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::source::MemSource;

    fn source() -> Arc<dyn Source> {
        let now = tally_common::unix_now();
        let start = now - now % 60 - 3600;
        let mut m = MemSource::default();
        m.add(
            "requests;status=5xx;vhost=a",
            start,
            60,
            vec![Some(2.0); 60],
        );
        m.add(
            "requests;status=2xx;vhost=a",
            start,
            60,
            vec![Some(10.0); 60],
        );
        m.add("requests;status=5xx;vhost=b", start, 60, vec![None; 60]);
        Arc::new(m)
    }

    async fn call(uri: &str) -> (u16, String, String, Option<String>) {
        let app = routes(source(), Limits::default(), Budget::new(usize::MAX))
            .guard(Default::default(), |_| {
                StatusCode::UNAUTHORIZED.into_response()
            });
        let r = app
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let next = r
            .headers()
            .get("x-nflx-atlas-next-offset")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (status, ctype, body) = crate::api_error::read_response(r).await;
        (status, ctype, body, next)
    }

    #[tokio::test]
    async fn graph_formats() {
        let q = "q=name,requests,:eq,:sum,(,vhost,),:by&s=e-1h&e=now&tz=UTC";
        let (status, ctype, body, _) = call(&format!("/api/v1/graph?{q}&format=std.json")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(ctype, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).expect("std.json is JSON");
        assert_eq!(v["legend"], serde_json::json!(["(vhost=a)", "(vhost=b)"]));
        assert_eq!(v["metrics"][0]["vhost"], "a");
        assert_eq!(v["step"], 60_000);
        let rows = v["values"].as_array().expect("rows");
        assert_eq!(rows.len(), 60, "{}", v["start"]);
        assert!(rows.iter().any(|r| r[0] == 12.0), "{body}");
        assert!(
            rows.iter().all(|r| r[1] == "NaN"),
            "the vhost of nulls stays NaN, not 0"
        );
        let (_, _, body, _) = call(&format!("/api/v1/graph?{q}&format=json")).await;
        assert!(
            body.contains("NaN") && !body.contains("\"NaN\""),
            "json writes NaN bare"
        );
        let (_, ctype, body, _) = call(&format!("/api/v1/graph?{q}&format=csv")).await;
        assert_eq!(ctype, "text/csv");
        let mut lines = body.lines();
        assert_eq!(
            lines.next(),
            Some("\"timestamp\",\"(vhost=a)\",\"(vhost=b)\"")
        );
        assert!(
            lines.next().is_some_and(|l| l.ends_with("Z,12,NaN")),
            "{body}"
        );
        let (_, _, body, _) = call(&format!("/api/v1/graph?{q}&format=txt")).await;
        assert!(body.starts_with("\"timestamp\"\t\"(vhost=a)\""), "{body}");
        let (_, _, body, _) = call(&format!("/api/v1/graph?{q}&format=stats.json")).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        // The window is (s, e] at the step, as Atlas draws it: the point stored at the
        // rounded start is before it, and the last step has no data yet.
        assert_eq!(v["stats"][0]["count"], 59);
        assert_eq!(v["stats"][0]["avg"], 12.0);
        assert_eq!(v["stats"][1], serde_json::json!({"count": 0}));
    }

    #[tokio::test]
    async fn graph_mistakes_are_400_with_the_message() {
        for (uri, want) in [
            ("/api/v1/graph?format=json", "parameter \"q\" is required"),
            (
                "/api/v1/graph?q=name,a,:eq,:foo&format=json",
                "unknown word ':foo' (at \":foo\", position 11)",
            ),
            (
                "/api/v1/graph?q=:sum&format=json",
                "no matches for word ':sum' with stack []",
            ),
            (
                "/api/v1/graph?q=name,a,:eq&s=now&e=now-1h&format=json",
                "end time is before start time",
            ),
            (
                "/api/v1/graph?q=name,a,:eq&tz=Mars/Olympus&format=json",
                "unknown time zone",
            ),
            (
                "/api/v1/graph?q=name,a,:eq&format=gif",
                "unknown format \"gif\"",
            ),
            (
                "/api/v1/graph?q=1,x,:legend,foo,:decode&format=json",
                "unknown encoding 'foo' (at \":decode\", position 16)",
            ),
            (
                "/api/v1/graph?q=ge,gs,:time-span&format=json",
                ":time-span: start must be <= end (s=ge, e=gs)",
            ),
            (
                "/api/v1/graph?q=s-1h,ge,:time-span&format=json",
                "start time is relative to itself",
            ),
            (
                "/api/v1/graph?q=x,:srandom&format=json",
                "no matches for word ':srandom' with stack [String]",
            ),
            (
                "/api/v1/graph?q=name,a,:eq&step=0s&format=json",
                "below Tally's resolution",
            ),
        ] {
            let (status, _, body, _) = call(uri).await;
            assert_eq!(status, 400, "{uri}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
            let message = v["error"].as_str().unwrap_or_default();
            assert!(message.contains(want), "{uri}: {message}");
        }
    }

    /// The docs' graphs of `:random`, `:time-span` and `:decode`, as the graph API answers
    /// them: the program runs with `tz` set to the graph's zone.
    #[tokio::test]
    async fn generator_and_decode_examples_from_the_docs() {
        let json = |body: &str| -> serde_json::Value {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };
        let column = |v: &serde_json::Value| -> Vec<f64> {
            let rows = v["values"].as_array().expect("rows");
            rows.iter()
                .map(|r| r[0].as_f64().expect("a number"))
                .collect()
        };
        let (status, _, body, _) = call(
            "/api/v1/graph?w=200&h=125&s=e-3h&e=2012-01-01T07:00&tz=UTC&q=:random&format=json",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v = json(&body);
        assert_eq!(v["legend"], serde_json::json!(["random"]));
        let values = column(&v);
        assert_eq!(values.len(), 180);
        assert_eq!(values[175..], [0.119, 0.72, 0.656, 0.457, 0.653]);
        let (_, _, body, _) = call(
            "/api/v1/graph?w=200&h=125&s=e-3h&e=2012-01-01T07:00&tz=UTC&q=42,:srandom&format=json",
        )
        .await;
        let v = json(&body);
        assert_eq!(v["legend"], serde_json::json!(["seeded-random(42)"]));
        assert_eq!(column(&v)[175..], [0.755, 0.982, 0.982, 0.885, 0.185]);
        let (_, _, body, _) = call(
            "/api/v1/graph?w=200&h=125&s=e-3h&e=2012-01-01T07:00&tz=UTC&q=e-30m,ge,:time-span&format=json",
        )
        .await;
        let v = json(&body);
        assert_eq!(v["legend"], serde_json::json!(["e-30m to ge"]));
        let values = column(&v);
        assert!(values[..150].iter().all(|x| *x == 0.0) && values[150..].iter().all(|x| *x == 1.0));
        // 13:00 to 13:30 in the graph's zone, US/Pacific (the default) or as asked, on a
        // graph from 12:00 to 15:00 Pacific.
        let span = "q=2014-02-20T13:00,s%2B30m,:time-span&s=1392926400&e=1392937200&format=json";
        for (tz, ones) in [("", 31), ("&tz=US/Pacific", 31), ("&tz=UTC", 0)] {
            let (status, _, body, _) = call(&format!("/api/v1/graph?{span}{tz}")).await;
            assert_eq!(status, 200, "{body}");
            let got = column(&json(&body)).iter().filter(|x| **x == 1.0).count();
            assert_eq!(got, ones, "{tz}");
        }
        let (status, _, body, _) = call(
            "/api/v1/graph?w=200&h=125&s=e-3h&e=2014-02-20T15:01&tz=US/Pacific&q=1,one_21_25_26_3F,:legend,hex,:decode&format=json",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["legend"], serde_json::json!(["one!%&?"]));
    }

    /// The default format is a PNG of the requested size, with the style words drawn: a red
    /// stacked line is red pixels.
    #[tokio::test]
    async fn png_is_the_default_and_draws_the_style_words() {
        let q =
            "q=name,requests,:eq,:sum,(,vhost,),:by,ff0000,:color,:stack&s=e-1h&tz=UTC&w=400&h=200";
        let app = routes(source(), Limits::default(), Budget::new(usize::MAX))
            .guard(Default::default(), |_| {
                StatusCode::UNAUTHORIZED.into_response()
            });
        let r = app
            .oneshot(
                Request::get(format!("/api/v1/graph?{q}"))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
        let body = axum::body::to_bytes(r.into_body(), 1 << 24)
            .await
            .expect("body");
        let img = tiny_skia::Pixmap::decode_png(&body).expect("a PNG");
        // Atlas's layout: the canvas is w x h, with a value axis (64) and right padding (24)
        // beside it, a time axis (24) under it and the legend below.
        assert_eq!(img.width(), 400 + 64 + 24);
        assert!(img.height() > 200 + 24, "{}", img.height());
        let red = img
            .pixels()
            .iter()
            .filter(|p| p.red() > 200 && p.green() < 60 && p.blue() < 60)
            .count();
        assert!(red > 100, "{red} red pixels");
    }

    #[tokio::test]
    async fn tags_list_keys_values_and_pages() {
        let (status, _, body, next) = call("/api/v1/tags").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, r#"["name","status","vhost"]"#);
        assert!(next.is_none());
        let (_, _, body, next) = call("/api/v1/tags/vhost?limit=1").await;
        assert_eq!(body, r#"["a"]"#);
        assert_eq!(next.as_deref(), Some("a"));
        let (_, _, body, _) = call("/api/v1/tags/vhost?limit=1&offset=a").await;
        assert_eq!(body, r#"["b"]"#);
        let (_, _, body, _) =
            call("/api/v1/tags/vhost?q=status,5xx,:eq,name,requests,:eq,:and&verbose=1").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!([{"key":"vhost","value":"a","count":1},{"key":"vhost","value":"b","count":1}])
        );
        let (_, ctype, body, _) = call("/api/v1/tags/status?format=txt").await;
        assert!(ctype.starts_with("text/plain"));
        assert_eq!(body, "2xx\n5xx");
        let (status, _, body, _) = call("/api/v1/tags?limit=0").await;
        assert_eq!(status, 400, "{body}");
    }
}
