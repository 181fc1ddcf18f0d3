//! The graphite-web 1.1.8 HTTP API that Grafana's Graphite data source calls: `/render`,
//! `/metrics/find`, `/metrics/expand`, `/metrics/index.json`, `/tags/*`, `/functions`,
//! `/version`. GET and POST parameters are merged, as in graphite-web. Client mistakes answer
//! 400 with what is wrong, in graphite-web's shape for the route (text from `/render` and
//! `/metrics/*`, `{"error": ...}` from the JSON views); internal failures answer 500 generically
//! and are logged ([`crate::api_error`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use tally_common::unix_now;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use regex::Regex;
use serde_json::json;
use tally_common::auth::{Access, Routes};

use crate::api_error::{ApiError, ErrorBody};
use crate::error::QueryError;
use crate::fetch::Ctx;
use crate::graphite::cluster;
use crate::graphite::eval::evaluate;
use crate::graphite::expr::{parse, Expr};
use crate::graphite::functions::functions_json;
use crate::graphite::render::{
    consolidate_for_display, csv, dygraph, json, json_parts, raw, rickshaw,
};
use crate::limits::{Budget, Limits};
use crate::source::Source;
use crate::time::parse_time;

/// The version graphite-web reports; Grafana enables tags and `/functions` from 1.1.0.
pub const GRAPHITE_VERSION: &str = "1.1.8";

#[derive(Clone)]
struct Api {
    source: Arc<dyn Source>,
    limits: Limits,
    budget: Arc<Budget>,
}

/// Request parameters: query string and form body together, in order, repeatable.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(query: Option<String>, body: &[u8]) -> Params {
        let mut v: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            v.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        v.extend(form_urlencoded::parse(body).into_owned());
        Params(v)
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, keys: &[&str]) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| matches!(v, "1" | "true" | "True"))
    }
    fn usize(&self, key: &str) -> Result<Option<usize>, QueryError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse().map_err(|_| {
                    QueryError::BadRequest(format!("parameter \"{key}\": \"{v}\" is not a count"))
                })
            })
            .transpose()
    }
}

/// The longest `jsonp` callback taken: longer than any real one, short enough to say no fast.
const MAX_JSONP_CALLBACK: usize = 128;

/// The `jsonp` parameter, when given: a JavaScript identifier or a dotted path of them
/// (`cb`, `jQuery123_456`, `a.b.$c`), or a 400 naming the parameter. Anything else would be
/// script written into every page that embeds the answer.
fn jsonp_callback(p: &Params) -> Result<Option<&str>, QueryError> {
    let Some(cb) = p.get("jsonp").filter(|cb| !cb.is_empty()) else {
        return Ok(None);
    };
    let ident = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    if cb.len() <= MAX_JSONP_CALLBACK && cb.split('.').all(ident) {
        return Ok(Some(cb));
    }
    let shown: String = cb.chars().take(40).collect();
    let more = if shown.len() < cb.len() { "..." } else { "" };
    Err(QueryError::BadRequest(format!(
        "parameter \"jsonp\": {:?}{more} is not a JavaScript function name \
         (letters, digits, _ and $, not starting with a digit, dotted, at most {MAX_JSONP_CALLBACK} characters)",
        shown
    )))
}

/// `callback(body)` as a script that a browser will only run as one.
fn jsonp(callback: &str, body: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{callback}({body})"),
    )
        .into_response()
}

/// A path's last node: the name `/metrics/find` shows for it.
fn last_node(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn json_response(v: &serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// Runs blocking work (reads) off the async executor; an error answers with `body`, the shape
/// graphite-web gives that route's errors.
async fn blocking<F>(body: ErrorBody, f: F) -> Result<Response, ApiError>
where
    F: FnOnce() -> Result<Response, QueryError> + Send + 'static,
{
    match tokio::task::spawn_blocking(|| crate::partial::collect(f)).await {
        Ok((r, missed)) => {
            crate::partial::marked(r.map_err(|e| ApiError::from(e).with_body(body)), &missed)
        }
        Err(e) => Err(ApiError::internal(format!("query task failed: {e}")).with_body(body)),
    }
}

/// graphite-web's routes, over any [`Source`], each declared with what it needs: everything
/// reads except posting an event and tag writes and deletes.
pub(crate) fn routes(source: Arc<dyn Source>, limits: Limits, budget: Arc<Budget>) -> Routes {
    use Access::{Read, Write};
    Routes::new()
        .add(Method::GET, "/events", Read, events_get)
        .add(Method::POST, "/events", Write, event_post)
        .add(Method::GET, "/events/", Read, events_get)
        .add(Method::POST, "/events/", Write, event_post)
        .get_post("/events/get_data", Read, events_get)
        .get_post("/render", Read, render)
        .get_post("/render/", Read, render)
        .get_post("/metrics/find", Read, find)
        .get_post("/metrics/find/", Read, find)
        .get_post("/metrics/expand", Read, expand)
        .add(Method::GET, "/metrics/index.json", Read, index_json)
        .add(Method::GET, "/tags", Read, tag_list)
        .add(Method::GET, "/tags/", Read, tag_list)
        .get_post("/tags/findSeries", Read, find_series)
        .add(Method::POST, "/tags/tagSeries", Write, tag_series)
        .add(
            Method::POST,
            "/tags/tagMultiSeries",
            Write,
            tag_multi_series,
        )
        .add(Method::POST, "/tags/delSeries", Write, del_series)
        .get_post("/tags/autoComplete/tags", Read, autocomplete_tags)
        .get_post("/tags/autoComplete/values", Read, autocomplete_values)
        .add(Method::GET, "/tags/:tag", Read, tag_details)
        .add(Method::GET, "/functions", Read, functions)
        .add(Method::GET, "/functions/", Read, functions)
        .add(Method::GET, "/functions/:name", Read, function)
        .add(Method::GET, "/version", Read, version)
        .add(Method::GET, "/version/", Read, version)
        .with_state(Api {
            source,
            limits,
            budget,
        })
}

async fn render(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Text, move || {
        let p = Params::new(q, &body);
        let now = match p.get("now").filter(|s| !s.is_empty()) {
            Some(n) => parse_time(n, unix_now())?,
            None => unix_now(),
        };
        let mut from = parse_time(
            p.get("from").filter(|s| !s.is_empty()).unwrap_or("-1d"),
            now,
        )?;
        let mut until = parse_time(
            p.get("until").filter(|s| !s.is_empty()).unwrap_or("now"),
            now,
        )?;
        if from > until {
            std::mem::swap(&mut from, &mut until);
        }
        if from == until {
            return Err(QueryError::BadRequest(format!(
                "empty time range: from and until are both {from}"
            )));
        }
        let ctx = Ctx::new(api.source.clone(), from, until)
            .with_limits(api.limits)
            .with_budget(api.budget.clone());
        if let Some(kind) = p.get("graphType").filter(|t| *t != "line") {
            let cache = cache_timeout(&p)?;
            let mut resp = render_pie(&p, &ctx, kind)?;
            cache_headers(&mut resp, cache, now);
            return Ok(resp);
        }
        let local = p.flag("local");
        if local && p.get("format") == Some("tally") {
            if let Some(names) = pushed_down_names(&ctx, &p)? {
                // A query node's pushed-down fetch: encoded series by series, never all held.
                p.usize("maxDataPoints")?;
                let cache = cache_timeout(&p)?;
                let parts = cluster::render_tally_names(&ctx, names)?;
                let mut resp = (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    axum::body::Body::new(Parts::new(parts)),
                )
                    .into_response();
                cache_headers(&mut resp, cache, now);
                return Ok(resp);
            }
        }
        let mut series = Vec::new();
        for target in p.all(&["target", "target[]"]) {
            if target.trim().is_empty() {
                continue;
            }
            let expr = parse(target)?;
            series.extend(evaluate(&ctx, &expr)?);
        }
        // Tally's own addition to the cluster protocol: `series=<name>` (repeated) with
        // `local=1` reads those stored series as they are, names taken verbatim, not parsed
        // as targets; a query node asks each store for its share of a read this way.
        let names: Vec<String> = p.all(&["series"]).into_iter().map(str::to_owned).collect();
        if !names.is_empty() && local {
            series.extend(crate::fetch::read_names(&ctx, names, "")?);
        }
        let cache = cache_timeout(&p)?;
        let mut resp = render_format(&p, series)?;
        cache_headers(&mut resp, cache, now);
        Ok(resp)
    })
    .await
}

/// The names of every series a `local=1` render asks for, when it asks only for stored series
/// as they are: its targets all path expressions or `seriesByTag` calls (what a query node
/// pushes down), and its `series=` names (Tally's addition: a node's share of a read, names
/// taken verbatim). `None` when a target calls a function: then it is evaluated as any render.
fn pushed_down_names(ctx: &Ctx, p: &Params) -> Result<Option<Vec<String>>, QueryError> {
    // Every target parsed before any is expanded: a function in the last one must not cost
    // the expansion of the others.
    // A path expression (`Ok`) or a `seriesByTag` call (`Err`).
    let mut pushed = Vec::new();
    for target in p.all(&["target", "target[]"]) {
        if target.trim().is_empty() {
            continue;
        }
        match parse(target)? {
            Expr::Path(pattern) => pushed.push(Ok(pattern)),
            Expr::Call(c) if c.name == "seriesByTag" => pushed.push(Err(c)),
            _ => return Ok(None),
        }
    }
    let mut names: Vec<String> = p.all(&["series"]).into_iter().map(str::to_owned).collect();
    for target in pushed {
        match target {
            Ok(pattern) => names.extend(crate::fetch::path_names(ctx, &pattern)?),
            Err(c) => {
                let exprs = crate::graphite::eval::tag_exprs(&c)?;
                names.extend(ctx.source.select_by_tags(&exprs)?);
            }
        }
    }
    Ok(Some(names))
}

/// A response body of pieces sent one after the other, with its exact length (so the answer
/// keeps its `Content-Length`): the JSON writers' parts, not copied into one buffer.
struct Parts(std::collections::VecDeque<axum::body::Bytes>);

impl Parts {
    fn new(parts: Vec<Vec<u8>>) -> Parts {
        Parts(parts.into_iter().map(axum::body::Bytes::from).collect())
    }
}

impl http_body::Body for Parts {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// The format a render asks for, as graphite-web picks it: `pickle` or `rawData` present, then
/// `format`; none at all is a PNG graph.
fn render_format(
    p: &Params,
    mut series: Vec<crate::series::TimeSeries>,
) -> Result<Response, QueryError> {
    let mut format = "png";
    if p.get("pickle").is_some() {
        format = "pickle";
    }
    if p.get("rawData").is_some() {
        format = "raw";
    }
    if let Some(f) = p.get("format") {
        format = f;
    }
    let text =
        |ctype: &'static str, body: String| ([(header::CONTENT_TYPE, ctype)], body).into_response();
    let json_or_jsonp = |body: String| -> Result<Response, QueryError> {
        Ok(match jsonp_callback(p)? {
            Some(cb) => jsonp(cb, &body),
            None => text("application/json", body),
        })
    };
    let graph_params = || p.0.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    // Checked whatever the format (graphite-web ignores a bad one; we say so).
    let max_points = p.usize("maxDataPoints")?;
    match format {
        "json" => {
            if let Some(max) = max_points {
                consolidate_for_display(&mut series, max);
            }
            let no_null = p.flag("noNullPoints");
            match jsonp_callback(p)? {
                Some(cb) => Ok(jsonp(cb, &json(&series, no_null))),
                None => Ok((
                    [(header::CONTENT_TYPE, "application/json")],
                    axum::body::Body::new(Parts::new(json_parts(&series, no_null))),
                )
                    .into_response()),
            }
        }
        "csv" => Ok(text("text/csv", csv(&series))),
        "raw" => Ok(text("text/plain", raw(&series))),
        "dygraph" => json_or_jsonp(dygraph(&series)),
        "rickshaw" => json_or_jsonp(rickshaw(&series)),
        "pickle" => Ok(([(header::CONTENT_TYPE, "application/pickle")], cluster::render_pickle(&series)?).into_response()),
        "msgpack" => Ok(([(header::CONTENT_TYPE, "application/x-msgpack")], cluster::render_msgpack(&series)?).into_response()),
        // Tally's own answer for a query node (`cluster::render_tally`).
        "tally" => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], cluster::render_tally(&series)).into_response()),
        "svg" => {
            let svg = crate::graphite::graph::render_svg(series, graph_params())?;
            match jsonp_callback(p)? {
                Some(cb) => Ok(jsonp(cb, &serde_json::to_string(&svg).unwrap_or_default())),
                None => Ok(text("image/svg+xml", svg)),
            }
        }
        "png" | "" => Ok(([(header::CONTENT_TYPE, "image/png")], crate::graphite::graph::render_png(series, graph_params())?).into_response()),
        "pdf" => Ok(([(header::CONTENT_TYPE, "application/x-pdf")], crate::graphite::graph::render_pdf(series, graph_params())?).into_response()),
        other => Err(QueryError::BadRequest(format!(
            "format \"{other}\" is not supported: use png, svg, pdf, json, csv, raw, dygraph, rickshaw, pickle or msgpack"
        ))),
    }
}

/// `graphType=pie`, graphite-web's other graph type (`line` is the default): a slice per
/// `name:value` target and per series of the others, as a PNG unless `format` is svg or pdf
/// (graphite-web's data formats are for series: asked of a pie, it draws the PNG).
fn render_pie(p: &Params, ctx: &Ctx, graph_type: &str) -> Result<Response, QueryError> {
    use crate::graphite::graph::{pie_slices, render_pie, ImageFormat, PieMode};
    if graph_type != "pie" {
        return Err(QueryError::BadRequest(format!(
            "parameter \"graphType\": \"{graph_type}\" is not one of line, pie"
        )));
    }
    let format = match p.get("format").unwrap_or("png") {
        "svg" => ImageFormat::Svg,
        "pdf" => ImageFormat::Pdf,
        "png" | "" | "json" | "csv" | "raw" | "dygraph" | "rickshaw" | "pickle" | "msgpack" => {
            ImageFormat::Png
        }
        other => {
            return Err(QueryError::BadRequest(format!(
                "format \"{other}\" is not supported: use png, svg, pdf, json, csv, raw, dygraph, rickshaw, pickle or msgpack"
            )))
        }
    };
    let mode = PieMode::parse(p.get("pieMode"))?;
    let targets = p.all(&["target", "target[]"]);
    let targets = targets.into_iter().filter(|t| !t.trim().is_empty());
    let slices = pie_slices(targets, mode, |t| evaluate(ctx, &parse(t)?))?;
    let image = render_pie(
        slices,
        p.0.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        format,
    )?;
    Ok(match format {
        ImageFormat::Png => ([(header::CONTENT_TYPE, "image/png")], image).into_response(),
        ImageFormat::Pdf => ([(header::CONTENT_TYPE, "application/x-pdf")], image).into_response(),
        ImageFormat::Svg => {
            let svg = String::from_utf8(image)
                .map_err(|e| QueryError::Internal(format!("the pie's svg is not utf-8: {e}")))?;
            match jsonp_callback(p)? {
                Some(cb) => jsonp(cb, &serde_json::to_string(&svg).unwrap_or_default()),
                None => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
            }
        }
    })
}

/// graphite-web's caching parameters: `noCache`, or `cacheTimeout` seconds (default 60, 0 is
/// no cache). Tally answers from the store every time; the answer's headers say how long a
/// client or proxy may keep it, as graphite-web's do.
fn cache_timeout(p: &Params) -> Result<Option<i64>, QueryError> {
    let timeout = match p.get("cacheTimeout").filter(|s| !s.is_empty()) {
        Some(t) => t.trim().parse::<i64>().map_err(|_| {
            QueryError::BadRequest(format!(
                "parameter \"cacheTimeout\": \"{t}\" is not a whole number of seconds"
            ))
        })?,
        None => 60,
    };
    Ok((p.get("noCache").is_none() && timeout != 0).then_some(timeout.max(0)))
}

fn http_date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

/// Django's `patch_response_headers` (cacheable for `timeout` s) or `add_never_cache_headers`.
fn cache_headers(r: &mut Response, timeout: Option<i64>, now: i64) {
    let (expires, control) = match timeout {
        Some(t) => (http_date(now + t), format!("max-age={t}")),
        None => (
            http_date(now),
            "max-age=0, no-cache, no-store, must-revalidate, private".to_owned(),
        ),
    };
    for (k, v) in [(header::EXPIRES, expires), (header::CACHE_CONTROL, control)] {
        if let Ok(v) = header::HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
}

async fn find(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Text, move || {
        let p = Params::new(q, &body);
        let query = p.get("query").filter(|s| !s.is_empty()).ok_or_else(|| QueryError::BadRequest("parameter \"query\" is required".into()))?;
        let leaves_only = p.flag("leavesOnly");
        let mut matches = api.source.find(query)?;
        if leaves_only {
            matches.retain(|m| m.is_leaf);
        }
        let base = query.rsplit_once('.').map_or(String::new(), |(b, _)| format!("{b}."));
        let text = |m: &tally_store::FindMatch| last_node(&m.path).to_owned();
        let format = p.get("format").unwrap_or("treejson");
        if matches!(format, "pickle" | "msgpack" | "json") {
            return cluster_find(&p, format, matches);
        }
        let v = match format {
            "treejson" => {
                // graphite-web's tree_json: one node per name (the first in path order wins),
                // branches before leaves, each in name order. The first of each name is found
                // in one pass rather than by sorting every match by name: `big.*.*.x7` over 1M
                // names matches 100,000 paths of one name. (The index walk, not this, is most
                // of that find's time.)
                let mut first: std::collections::BTreeMap<&str, &tally_store::FindMatch> =
                    std::collections::BTreeMap::new();
                for m in &matches {
                    first
                        .entry(last_node(&m.path))
                        .and_modify(|f| {
                            if m.path < f.path {
                                *f = m;
                            }
                        })
                        .or_insert(m);
                }
                let sorted: Vec<&tally_store::FindMatch> = first.into_values().collect();
                let node = |m: &tally_store::FindMatch, branch: bool| {
                    json!({"text": text(m), "id": format!("{base}{}", text(m)), "allowChildren": u8::from(branch),
                           "expandable": u8::from(branch), "leaf": u8::from(!branch)})
                };
                let mut out: Vec<serde_json::Value> = sorted.iter().filter(|m| m.has_children).map(|m| node(m, true)).collect();
                out.extend(sorted.iter().filter(|m| !m.has_children).map(|m| node(m, false)));
                serde_json::Value::Array(out)
            }
            "completer" => {
                let metrics: Vec<serde_json::Value> = matches
                    .iter()
                    .map(|m| {
                        let leaf = m.is_leaf && !m.has_children;
                        json!({"path": if leaf { m.path.clone() } else { format!("{}.", m.path) }, "name": text(m), "is_leaf": if leaf { "1" } else { "0" }})
                    })
                    .collect();
                json!({ "metrics": metrics })
            }
            "nodelist" => {
                let position: i64 = p.get("position").and_then(|s| s.parse().ok()).unwrap_or(-1);
                let nodes: BTreeSet<String> = matches
                    .iter()
                    .filter_map(|m| {
                        let parts: Vec<&str> = m.path.split('.').collect();
                        let i = if position < 0 { parts.len() as i64 + position } else { position };
                        usize::try_from(i).ok().and_then(|i| parts.get(i)).map(|s| s.to_string())
                    })
                    .collect();
                json!({ "nodes": nodes })
            }
            other => return Err(QueryError::BadRequest(format!("format \"{other}\" is not one of treejson, completer, nodelist, json, pickle, msgpack"))),
        };
        Ok(json_response(&v))
    })
    .await
}

/// `/metrics/find` in the formats graphite-web's cluster members ask for (`local=1`: Tally has
/// only its own data): nodes sorted by their last component, a leaf with its interval (the
/// asked range, else everything up to now); a path both leaf and branch is both nodes.
fn cluster_find(
    p: &Params,
    format: &str,
    matches: Vec<tally_store::FindMatch>,
) -> Result<Response, QueryError> {
    let now = unix_now();
    let time = |k: &str| -> Result<Option<i64>, QueryError> {
        match p.get(k).filter(|s| !s.is_empty() && *s != "-1") {
            Some(t) => Ok(Some(parse_time(t, now)?)),
            None => Ok(None),
        }
    };
    let interval = (
        time("from")?.unwrap_or(0) as f64,
        time("until")?.unwrap_or(now) as f64,
    );
    let mut nodes: Vec<cluster::NodeInfo> = Vec::new();
    for m in matches {
        if m.has_children || !m.is_leaf {
            nodes.push(cluster::NodeInfo {
                path: m.path.clone(),
                is_leaf: false,
                intervals: None,
            });
        }
        if m.is_leaf {
            nodes.push(cluster::NodeInfo {
                path: m.path,
                is_leaf: true,
                intervals: Some(vec![interval]),
            });
        }
    }
    let name = |n: &cluster::NodeInfo| n.path.rsplit('.').next().unwrap_or(&n.path).to_owned();
    nodes.sort_by_key(|n| name(n));
    let bytes = |ctype: &'static str, b: Vec<u8>| {
        (
            [
                (header::CONTENT_TYPE, ctype),
                (header::CACHE_CONTROL, "no-cache"),
                (header::PRAGMA, "no-cache"),
            ],
            b,
        )
            .into_response()
    };
    Ok(match format {
        "pickle" => bytes("application/pickle", cluster::find_pickle(&nodes)?),
        "msgpack" => bytes("application/x-msgpack", cluster::find_msgpack(&nodes)?),
        _ => {
            nodes.sort_by(|a, b| a.path.cmp(&b.path));
            let v: Vec<serde_json::Value> = nodes
                .iter()
                .map(|n| match &n.intervals {
                    Some(iv) => json!({"path": n.path, "is_leaf": true, "intervals": iv.iter().map(|(s, e)| json!({"start": s, "end": e})).collect::<Vec<_>>()}),
                    None => json!({"path": n.path, "is_leaf": false}),
                })
                .collect();
            json_response(&serde_json::Value::Array(v))
        }
    })
}

async fn expand(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Text, move || {
        let p = Params::new(q, &body);
        let leaves_only = p.flag("leavesOnly");
        let group = p.flag("groupByExpr");
        let mut all = BTreeSet::new();
        let mut grouped = serde_json::Map::new();
        for query in p.all(&["query"]) {
            let set: BTreeSet<String> = api
                .source
                .find(query)?
                .into_iter()
                .filter(|m| m.is_leaf || !leaves_only)
                .map(|m| m.path)
                .collect();
            all.extend(set.iter().cloned());
            grouped.insert(query.to_owned(), json!(set));
        }
        Ok(json_response(&if group {
            json!({ "results": grouped })
        } else {
            json!({ "results": all })
        }))
    })
    .await
}

async fn index_json(State(api): State<Api>) -> Result<Response, ApiError> {
    blocking(ErrorBody::Text, move || {
        Ok(json_response(&json!(api.source.expand("**")?)))
    })
    .await
}

fn limit_and_filter(
    values: Vec<String>,
    filter: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<String>, QueryError> {
    let re = filter
        .filter(|f| !f.is_empty())
        .map(|f| {
            Regex::new(f).map_err(|e| QueryError::BadRequest(format!("parameter \"filter\": {e}")))
        })
        .transpose()?;
    let mut v: Vec<String> = values
        .into_iter()
        .filter(|x| re.as_ref().is_none_or(|r| r.is_match(x)))
        .collect();
    if let Some(l) = limit {
        v.truncate(l);
    }
    Ok(v)
}

async fn tag_list(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let p = Params::new(q, &[]);
        let tags = limit_and_filter(api.source.tag_names(), p.get("filter"), p.usize("limit")?)?;
        Ok(json_response(&json!(tags
            .into_iter()
            .map(|t| json!({"tag": t}))
            .collect::<Vec<_>>())))
    })
    .await
}

async fn tag_details(
    State(api): State<Api>,
    Path(tag): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let p = Params::new(q, &[]);
        let values = api.source.tag_values(&tag);
        let keep = limit_and_filter(
            values.iter().map(|v| v.value.clone()).collect(),
            p.get("filter"),
            p.usize("limit")?,
        )?;
        let out: Vec<serde_json::Value> = values
            .into_iter()
            .filter(|v| keep.contains(&v.value))
            .map(|v| json!({"count": v.series, "value": v.value}))
            .collect();
        Ok(json_response(&json!({"tag": tag, "values": out})))
    })
    .await
}

async fn find_series(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let p = Params::new(q, &body);
        let exprs = p.all(&["expr", "expr[]"]);
        if exprs.is_empty() {
            return Err(QueryError::BadRequest(
                "parameter \"expr\" is required".into(),
            ));
        }
        Ok(json_response(&json!(api.source.select_by_tags(&exprs)?)))
    })
    .await
}

/// `POST /tags/tagSeries path=<name>`: registers a series; answers its canonical name.
async fn tag_series(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let p = Params::new(q, &body);
        let path = p
            .get("path")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| QueryError::BadRequest("parameter \"path\" is required".into()))?;
        Ok(json_response(&json!(api.source.register(path)?)))
    })
    .await
}

/// `POST /tags/tagMultiSeries path=..&path=..`: canonical names, in order.
async fn tag_multi_series(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let p = Params::new(q, &body);
        let paths = p.all(&["path", "path[]"]);
        let names = paths
            .iter()
            .map(|path| api.source.register(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json_response(&json!(names)))
    })
    .await
}

/// `POST /tags/delSeries path=..`: deletes series and their points; answers `true`.
async fn del_series(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let p = Params::new(q, &body);
        let paths = p.all(&["path", "path[]"]);
        if paths.is_empty() {
            return Err(QueryError::BadRequest(
                "parameter \"path\" is required".into(),
            ));
        }
        for path in paths {
            api.source.delete(path)?;
        }
        Ok(json_response(&json!(true)))
    })
    .await
}

/// Tags of the series matching `expr` (or all tags), minus the tags `expr` names.
async fn autocomplete_tags(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let p = Params::new(q, &body);
        let prefix = p.get("tagPrefix").unwrap_or("").to_owned();
        let limit = p.usize("limit")?.unwrap_or(100);
        let exprs = p.all(&["expr", "expr[]"]);
        let mut tags: BTreeSet<String> = BTreeSet::new();
        if exprs.is_empty() {
            tags.extend(api.source.tag_names());
        } else {
            let named: BTreeSet<String> = exprs
                .iter()
                .filter_map(|e| e.split(['=', '!']).next())
                .map(str::to_owned)
                .collect();
            for name in api.source.select_by_tags(&exprs)? {
                for (k, _) in crate::series::tags_of(&name) {
                    if !named.contains(&k) {
                        tags.insert(k);
                    }
                }
            }
        }
        let out: Vec<String> = tags
            .into_iter()
            .filter(|t| t.starts_with(&prefix))
            .take(limit)
            .collect();
        Ok(json_response(&json!(out)))
    })
    .await
}

async fn autocomplete_values(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let p = Params::new(q, &body);
        let tag = p
            .get("tag")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| QueryError::BadRequest("parameter \"tag\" is required".into()))?
            .to_owned();
        let prefix = p.get("valuePrefix").unwrap_or("").to_owned();
        let limit = p.usize("limit")?.unwrap_or(100);
        let exprs = p.all(&["expr", "expr[]"]);
        let mut values: BTreeSet<String> = BTreeSet::new();
        if exprs.is_empty() {
            values.extend(api.source.tag_values(&tag).into_iter().map(|v| v.value));
        } else {
            for name in api.source.select_by_tags(&exprs)? {
                if let Some(v) = crate::series::tags_of(&name).get(&tag) {
                    values.insert(v.clone());
                }
            }
        }
        let out: Vec<String> = values
            .into_iter()
            .filter(|v| v.starts_with(&prefix))
            .take(limit)
            .collect();
        Ok(json_response(&json!(out)))
    })
    .await
}

/// `POST /events`: `{"what", "tags" (array or space-separated), "when" (epoch, default now), "data"}`.
async fn event_post(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    blocking(ErrorBody::Json, move || {
        let bad = |m: &str| QueryError::BadRequest(m.to_owned());
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| QueryError::BadRequest(format!("event is not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("event must be a JSON object"))?;
        let what = obj
            .get("what")
            .and_then(|w| w.as_str())
            .ok_or_else(|| bad("event needs a \"what\" string"))?;
        let tags: Vec<String> = match obj.get("tags") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|t| t.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("\"tags\" must be an array or space-separated string"))?,
            Some(_) => return Err(bad("\"tags\" must be an array or space-separated string")),
        };
        let when = match obj.get("when") {
            None | Some(serde_json::Value::Null) => unix_now(),
            Some(w) => {
                w.as_f64()
                    .ok_or_else(|| bad("\"when\" must be epoch seconds"))? as i64
            }
        };
        let data = obj.get("data").and_then(|d| d.as_str()).unwrap_or("");
        api.source.add_event(when, what, data, tags)?;
        Ok(StatusCode::OK.into_response())
    })
    .await
}

/// `/events/get_data?from=&until=&tags=a b&set=union|intersection`: events by time, for Grafana
/// annotations.
async fn events_get(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    blocking(ErrorBody::Text, move || {
        let p = Params::new(q, &body);
        let now = unix_now();
        let from = p.get("from").filter(|s| !s.is_empty()).map(|s| parse_time(s, now)).transpose()?.unwrap_or(0);
        let until = p.get("until").filter(|s| !s.is_empty()).map(|s| parse_time(s, now)).transpose()?.unwrap_or(now);
        let tags: Option<Vec<String>> = p.get("tags").map(|t| t.split(' ').map(str::to_owned).collect());
        let how = if p.get("set") == Some("union") { tally_store::TagMatch::Any } else { tally_store::TagMatch::All };
        let out: Vec<serde_json::Value> = api
            .source
            .events(from, until)?
            .into_iter()
            .filter(|e| tags.as_ref().is_none_or(|t| e.matches(t, how)))
            .map(|e| json!({"when": e.when, "what": e.what, "data": e.data, "tags": e.tags, "id": e.id}))
            .collect();
        let body = serde_json::Value::Array(out).to_string();
        Ok(match jsonp_callback(&p)? {
            Some(cb) => jsonp(cb, &body),
            None => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        })
    })
    .await
}

async fn functions() -> Response {
    json_response(&functions_json())
}

async fn function(Path(name): Path<String>) -> Result<Response, ApiError> {
    match functions_json().get(&name) {
        Some(f) => Ok(json_response(f)),
        None => Err(ApiError::client(
            StatusCode::NOT_FOUND,
            format!("unknown function \"{name}\""),
        )),
    }
}

async fn version() -> &'static str {
    GRAPHITE_VERSION
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use tally_store::{Event, FindMatch};
    use tower::ServiceExt;

    use super::*;
    use crate::error::Result;
    use crate::source::{Fetched, MemSource};

    /// A store whose disk has failed: every read is an internal error.
    struct Broken;

    impl Broken {
        fn fail<T>() -> Result<T> {
            Err(tally_store::Error::Io(std::io::Error::other("sector 9 unreadable")).into())
        }
    }

    impl Source for Broken {
        fn find(&self, _: &str) -> Result<Vec<FindMatch>> {
            Self::fail()
        }
        fn expand(&self, _: &str) -> Result<Vec<String>> {
            Self::fail()
        }
        fn select_by_tags(&self, _: &[&str]) -> Result<Vec<String>> {
            Self::fail()
        }
        fn fetch(&self, _: &str, _: i64, _: i64) -> Result<Option<Fetched>> {
            Self::fail()
        }
        fn tag_names(&self) -> Vec<String> {
            Vec::new()
        }
        fn tag_values(&self, _: &str) -> Vec<tally_store::TagValue> {
            Vec::new()
        }
        fn register(&self, _: &str) -> Result<String> {
            Self::fail()
        }
        fn delete(&self, _: &str) -> Result<bool> {
            Self::fail()
        }
        fn add_event(&self, _: i64, _: &str, _: &str, _: Vec<String>) -> Result<u64> {
            Self::fail()
        }
        fn events(&self, _: i64, _: i64) -> Result<Vec<Event>> {
            Self::fail()
        }
        fn load_state(&self, _: &str) -> Result<Option<Vec<u8>>> {
            Self::fail()
        }
        fn save_state(&self, _: &str, _: &[u8]) -> Result<()> {
            Self::fail()
        }
    }

    /// The status, content type and body of one request.
    async fn call(source: Arc<dyn Source>, method: &str, uri: &str) -> (u16, String, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let r = routes(source, Limits::default(), Budget::new(usize::MAX))
            .guard(Default::default(), |_| {
                StatusCode::UNAUTHORIZED.into_response()
            })
            .oneshot(req)
            .await
            .expect("answer");
        crate::api_error::read_response(r).await
    }

    fn mem() -> Arc<dyn Source> {
        Arc::new(MemSource::default())
    }

    /// A GET through the routes, the whole answer kept (no body limit).
    async fn get_all(source: Arc<dyn Source>, uri: &str) -> Response {
        routes(source, Limits::default(), Budget::new(usize::MAX))
            .guard(Default::default(), |_| {
                StatusCode::UNAUTHORIZED.into_response()
            })
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("answer")
    }

    /// A wide JSON answer goes out as its writers' parts: the same text as one buffer would
    /// be, with its exact `Content-Length`; a `jsonp` one is still one piece.
    #[tokio::test]
    async fn a_wide_json_answer_is_sent_in_parts_with_its_length() {
        let now = tally_common::unix_now();
        let start = now - now % 60 - 300 * 60;
        let mut m = MemSource::default();
        for i in 0..800 {
            let values = (0..300)
                .map(|k| Some(f64::from((i * 7 + k) % 1000) / 8.0))
                .collect();
            m.add(&format!("w.s{i}"), start, 60, values);
        }
        let source: Arc<dyn Source> = Arc::new(m);
        let uri = format!("/render?target=w.*&from={start}&until={now}&format=json");
        let r = get_all(source.clone(), &uri).await;
        assert_eq!(r.status(), 200);
        let length: usize = r.headers()[header::CONTENT_LENGTH]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("a number");
        let body = axum::body::to_bytes(r.into_body(), 1 << 28)
            .await
            .expect("body");
        assert_eq!(body.len(), length);
        let series: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(series.len(), 800);
        let names: std::collections::BTreeSet<&str> =
            series.iter().filter_map(|s| s["target"].as_str()).collect();
        assert!(names.len() == 800 && names.contains("w.s799"), "{names:?}");
        assert_eq!(
            series[0]["datapoints"].as_array().map(Vec::len),
            Some(300),
            "every point of a series, whichever part wrote it"
        );
        let r = get_all(source, &format!("{uri}&jsonp=cb")).await;
        assert_eq!(r.status(), 200);
        let text = axum::body::to_bytes(r.into_body(), 1 << 28)
            .await
            .expect("body");
        assert_eq!(
            text,
            format!("cb({})", std::str::from_utf8(&body).expect("utf-8")).as_bytes()
        );
    }

    /// graphite-web 1.1.8 answers a bad `/render` or `/metrics/find` with the message as text, and
    /// a bad request to its JSON views (`/tags/*`, `/functions/<name>`) with `{"error": ...}`.
    #[tokio::test]
    async fn client_mistakes_answer_in_graphite_webs_shape_issue_11() {
        let (status, ctype, body) = call(mem(), "GET", "/render?target=nosuch(a.b)").await;
        assert_eq!(status, 400);
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        assert_eq!(body, "unknown function \"nosuch\"\n");
        let (status, ctype, body) = call(mem(), "GET", "/metrics/find").await;
        assert_eq!((status, ctype.starts_with("text/plain")), (400, true));
        assert!(body.contains("parameter \"query\" is required"), "{body}");
        // A pattern the store refuses is the caller's mistake too.
        let (status, _, body) = call(mem(), "GET", "/metrics/find?query=a..b").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body, "bad pattern \"a..b\": empty node\n");
        let (status, ctype, body) = call(mem(), "GET", "/tags/autoComplete/values").await;
        assert_eq!((status, ctype.as_str()), (400, "application/json"));
        assert_eq!(body, r#"{"error":"parameter \"tag\" is required"}"#);
        let (status, ctype, body) = call(mem(), "GET", "/tags/findSeries?expr=a%21%3Db").await;
        assert_eq!((status, ctype.as_str()), (400, "application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert!(v["error"]
            .as_str()
            .is_some_and(|e| e.contains("must not match the empty string")));
        let (status, ctype, body) = call(mem(), "GET", "/functions/nosuch").await;
        assert_eq!((status, ctype.as_str()), (404, "application/json"));
        assert_eq!(body, r#"{"error":"unknown function \"nosuch\""}"#);
    }

    /// Issue 17: the `jsonp` callback was written into the answer as given, so
    /// `jsonp=alert(document.cookie);cb` ran script in any page embedding it. Only identifiers
    /// (dotted) are taken; the answer is `text/javascript` with `nosniff`.
    #[tokio::test]
    async fn issue_17_jsonp_callbacks_are_identifiers_only() {
        let mut m = MemSource::default();
        m.add("a.b", unix_now() - 60, 10, vec![Some(1.0); 3]);
        let src: Arc<dyn Source> = Arc::new(m);
        let routes = routes(src, Limits::default(), Budget::new(usize::MAX))
            .guard(Default::default(), |_| {
                StatusCode::UNAUTHORIZED.into_response()
            });
        let call = |uri: String| {
            let req = Request::get(uri).body(Body::empty()).expect("request");
            let routes = routes.clone();
            async move { routes.oneshot(req).await.expect("answer") }
        };
        for base in [
            "/render?target=a.b&from=-5min&format=json",
            "/events/get_data?from=-1h",
        ] {
            for cb in ["cb", "jQuery3_1$x", "a.b.$c", "_"] {
                let r = call(format!("{base}&jsonp={}", enc(cb))).await;
                assert_eq!(r.status(), 200, "{base} {cb}");
                assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript");
                assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
                let (_, _, body) = crate::api_error::read_response(r).await;
                assert!(
                    body.starts_with(&format!("{cb}([")) && body.ends_with("])"),
                    "{body}"
                );
            }
            let long = "a".repeat(MAX_JSONP_CALLBACK + 1);
            for bad in [
                "alert(document.cookie);cb",
                "</script><script>alert(1)</script>",
                "cb//",
                "1cb",
                "a..b",
                "a.",
                ".a",
                "a-b",
                "caf\u{e9}",
                long.as_str(),
            ] {
                let r = call(format!("{base}&jsonp={}", enc(bad))).await;
                let (status, ctype, body) = crate::api_error::read_response(r).await;
                assert_eq!(status, 400, "{base} {bad}: {body}");
                assert!(ctype.starts_with("text/plain"), "{ctype}");
                assert!(body.starts_with("parameter \"jsonp\": "), "{body}");
                assert!(body.contains("is not a JavaScript function name"), "{body}");
            }
        }
    }

    async fn get_bytes(
        source: Arc<dyn Source>,
        uri: &str,
    ) -> (u16, String, axum::http::HeaderMap, Vec<u8>) {
        let req = Request::get(uri).body(Body::empty()).expect("request");
        let r = routes(source, Limits::default(), Budget::new(usize::MAX))
            .guard(Default::default(), |_| {
                StatusCode::UNAUTHORIZED.into_response()
            })
            .oneshot(req)
            .await
            .expect("answer");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, ctype, headers, body)
    }

    fn two_series() -> Arc<dyn Source> {
        let mut m = MemSource::default();
        m.add("a.b", 600, 60, vec![Some(1.0), None, Some(3.0)]);
        m.add("a.c", 600, 60, vec![Some(2.0), Some(2.0), Some(2.0)]);
        Arc::new(m)
    }

    /// Issue 14: a query node's share of a read: `series=` names with `local=1`, verbatim
    /// (a name that would not parse as a target too), and ignored without `local=1`.
    #[tokio::test]
    async fn issue_14_series_by_name_for_a_query_node() {
        let mut m = MemSource::default();
        m.add("a.b", 600, 60, vec![Some(1.0), None, Some(3.0)]);
        m.add("odd(name),x", 600, 60, vec![Some(4.0), None, None]);
        let src: Arc<dyn Source> = Arc::new(m);
        let (status, _, _, body) = get_bytes(
            src.clone(),
            "/render?format=tally&local=1&from=540&until=720&series=a.b&series=odd%28name%29%2Cx&series=no.such",
        )
        .await;
        assert_eq!(status, 200);
        let got = crate::graphite::cluster::read_render_tally(&body).expect("reads");
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a.b", "odd(name),x"]);
        assert_eq!(got[1].values, [Some(4.0), None, None]);
        let (_, _, _, body) =
            get_bytes(src, "/render?format=tally&from=540&until=720&series=a.b").await;
        assert!(crate::graphite::cluster::read_render_tally(&body)
            .expect("reads")
            .is_empty());
    }

    /// Issue 14: a wide share read by name or a pushed-down glob (read in parallel, encoded
    /// series by series) is byte for byte the answer of the same series evaluated and held,
    /// whatever order the names come in, and is refused as any read is when it is over the
    /// request's limits.
    #[tokio::test]
    async fn issue_14_a_share_read_by_name_is_the_targets_answer_byte_for_byte() {
        let mut m = MemSource::default();
        let mut names = Vec::new();
        for i in 0..300 {
            let name = format!("w.s{i:03}");
            // Decimals, a gap, raw floats and an empty series, so every encoding is crossed.
            let values: Vec<Option<f64>> = (0..20)
                .map(|j| match i % 4 {
                    0 => Some(f64::from(i * 20 + j) / 1000.0),
                    1 => (j % 3 != 0).then_some(f64::from(j)),
                    2 => Some(f64::from(i + j).sqrt()),
                    _ => None,
                })
                .collect();
            m.add(&name, 600, 60, values);
            names.push(name);
        }
        let src: Arc<dyn Source> = Arc::new(m);
        let range = "from=540&until=1800";
        // Through a function the series are evaluated and held, as any render's are.
        let (status, _, _, held) = get_bytes(
            src.clone(),
            &format!("/render?format=tally&local=1&{range}&target=group(w.*)"),
        )
        .await;
        assert_eq!(status, 200);
        // A pushed-down glob (what a node at replication 1 asks) is streamed.
        let (status, _, _, by_target) = get_bytes(
            src.clone(),
            &format!("/render?format=tally&local=1&{range}&target=w.*"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(by_target, held);
        // Reversed, and with a name the source does not hold.
        let mut query = format!("/render?format=tally&local=1&{range}&series=no.such");
        for n in names.iter().rev() {
            query.push_str("&series=");
            query.push_str(n);
        }
        let (status, ctype, headers, by_name) = get_bytes(src.clone(), &query).await;
        assert_eq!(status, 200);
        assert_eq!(ctype, "application/octet-stream");
        assert_eq!(
            headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()),
            Some(by_name.len().to_string().as_str())
        );
        assert_eq!(by_name, held);
        let got = crate::graphite::cluster::read_render_tally(&by_name).expect("reads");
        assert_eq!(got.len(), 300);
        assert_eq!(got[5].values[0], None);
        assert_eq!(got[5].values[1], Some(1.0));

        let limits = Limits {
            max_series: 100,
            ..Limits::default()
        };
        let req = Request::get(query).body(Body::empty()).expect("request");
        let r = routes(src, limits, Budget::new(usize::MAX))
            .guard(Default::default(), |_| {
                StatusCode::UNAUTHORIZED.into_response()
            })
            .oneshot(req)
            .await
            .expect("answer");
        let (status, _, body) = crate::api_error::read_response(r).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("max_series_per_request"), "{body}");
    }

    /// Issue 14: what a node pushes down for tags (`seriesByTag`, a tagged name in any tag
    /// order) is streamed too, and answers as the held read does; a bad `seriesByTag` is the
    /// same 400 either way.
    #[tokio::test]
    async fn issue_14_pushed_down_tag_reads_match_the_held_ones() {
        let mut m = MemSource::default();
        m.add("req;dc=x;host=a", 600, 60, vec![Some(1.5), None, Some(3.0)]);
        m.add("req;dc=y;host=b", 600, 60, vec![Some(2.0), Some(2.0), None]);
        m.add("other;dc=x", 600, 60, vec![Some(9.0); 3]);
        let src: Arc<dyn Source> = Arc::new(m);
        let range = "from=540&until=720";
        for (streamed, held) in [
            (
                "seriesByTag('name=req','dc=~x|y')",
                "group(seriesByTag('name=req','dc=~x|y'))",
            ),
            ("req;host=a;dc=x", "group(req;host=a;dc=x)"),
        ] {
            let q = |t: &str| format!("/render?format=tally&local=1&{range}&target={}", enc(t));
            let (s1, _, _, a) = get_bytes(src.clone(), &q(streamed)).await;
            let (s2, _, _, b) = get_bytes(src.clone(), &q(held)).await;
            assert_eq!((s1, s2), (200, 200), "{streamed}");
            assert_eq!(a, b, "{streamed}");
            assert!(!crate::graphite::cluster::read_render_tally(&a)
                .expect("reads")
                .is_empty());
        }
        for bad in ["seriesByTag(1)", "group(seriesByTag(1))"] {
            let (status, _, _, body) = get_bytes(
                src.clone(),
                &format!("/render?format=tally&local=1&{range}&target={}", enc(bad)),
            )
            .await;
            assert_eq!(status, 400, "{bad}: {}", String::from_utf8_lossy(&body));
        }
    }

    /// Issue 12: no format at all is graphite-web's PNG graph; the text formats graphite-web
    /// has (dygraph, rickshaw) answer in its shapes, and the cache parameters set its headers.
    #[tokio::test]
    async fn issue_12_png_by_default_dygraph_rickshaw_and_cache_headers() {
        let (status, ctype, headers, body) = get_bytes(
            two_series(),
            "/render?target=a.*&from=540&until=720&now=720",
        )
        .await;
        assert_eq!((status, ctype.as_str()), (200, "image/png"));
        let png = tiny_skia::Pixmap::decode_png(&body).expect("a png");
        assert_eq!((png.width(), png.height()), (330, 250));
        assert_eq!(headers[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(headers[header::EXPIRES], "Thu, 01 Jan 1970 00:13:00 GMT");
        let (_, _, headers, _) = get_bytes(
            two_series(),
            "/render?target=a.b&from=540&until=720&format=json&noCache=1",
        )
        .await;
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "max-age=0, no-cache, no-store, must-revalidate, private"
        );
        let (_, _, headers, _) = get_bytes(
            two_series(),
            "/render?target=a.b&from=540&until=720&format=json&cacheTimeout=0",
        )
        .await;
        assert!(headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap_or("")
            .contains("no-cache"));
        let (_, _, headers, _) = get_bytes(
            two_series(),
            "/render?target=a.b&from=540&until=720&format=json&cacheTimeout=300",
        )
        .await;
        assert_eq!(headers[header::CACHE_CONTROL], "max-age=300");
        let (status, _, _, body) = get_bytes(
            two_series(),
            "/render?target=a.b&from=540&until=720&cacheTimeout=soon",
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            String::from_utf8_lossy(&body),
            "parameter \"cacheTimeout\": \"soon\" is not a whole number of seconds\n"
        );
        let (_, ctype, _, body) = get_bytes(
            two_series(),
            "/render?target=a.*&from=540&until=720&format=dygraph",
        )
        .await;
        assert_eq!(ctype, "application/json");
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"labels" : ["Time", "a.b", "a.c"], "data" : [[600000, 1.0, 2.0], [660000, null, 2.0], [720000, 3.0, 2.0]]}"#
        );
        let (_, ctype, _, body) = get_bytes(
            two_series(),
            "/render?target=a.b&from=540&until=720&format=rickshaw&jsonp=cb",
        )
        .await;
        assert_eq!(ctype, "text/javascript");
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"cb([{"target": "a.b", "datapoints": [{"x": 600, "y": 1.0}, {"x": 660, "y": null}, {"x": 720, "y": 3.0}]}])"#
        );
        let (status, ctype, _, body) = get_bytes(
            two_series(),
            "/render?target=color(a.b,'red')&from=540&until=720&format=svg",
        )
        .await;
        assert_eq!((status, ctype.as_str()), (200, "image/svg+xml"));
        assert!(
            String::from_utf8_lossy(&body).contains("stroke=\"#c80032\""),
            "red is graphite's (200,0,50)"
        );
        let (status, _, _, body) = get_bytes(
            two_series(),
            "/render?target=a.b&from=540&until=720&lineMode=wavy",
        )
        .await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    }

    /// Issue 12: what a federating graphite-web asks with local=1: pickle and msgpack of
    /// `TimeSeries.getInfo()` from /render and of nodes from /metrics/find.
    #[tokio::test]
    async fn issue_12_cluster_formats_for_render_and_find() {
        use serde_pickle::{HashableValue as H, Value as V};
        let (status, ctype, _, body) = get_bytes(
            two_series(),
            "/render?target=a.*&from=540&until=720&format=pickle&local=1&noCache=1",
        )
        .await;
        assert_eq!((status, ctype.as_str()), (200, "application/pickle"));
        let V::List(list) =
            serde_pickle::value_from_slice(&body, Default::default()).expect("unpickles")
        else {
            panic!()
        };
        assert_eq!(list.len(), 2);
        let V::Dict(d) = &list[0] else {
            panic!("{list:?}")
        };
        assert_eq!(
            d.get(&H::String("name".into())),
            Some(&V::String("a.b".into()))
        );
        assert_eq!(
            d.get(&H::String("pathExpression".into())),
            Some(&V::String("a.*".into()))
        );
        assert_eq!(
            d.get(&H::String("values".into())),
            Some(&V::List(vec![V::F64(1.0), V::None, V::F64(3.0)]))
        );
        // `pickle=1` without a format is the same answer.
        let (_, ctype, _, again) = get_bytes(
            two_series(),
            "/render?target=a.*&from=540&until=720&pickle=1",
        )
        .await;
        assert_eq!((ctype.as_str(), &again), ("application/pickle", &body));
        let (_, ctype, _, body) = get_bytes(
            two_series(),
            "/render?target=a.c&from=540&until=720&format=msgpack&local=1",
        )
        .await;
        assert_eq!(ctype, "application/x-msgpack");
        let v: serde_json::Value = rmp_serde::from_slice(&body).expect("unpacks");
        assert_eq!(
            v,
            serde_json::json!([{"name": "a.c", "pathExpression": "a.c", "start": 600, "end": 780, "step": 60,
            "values": [2.0, 2.0, 2.0], "valuesPerPoint": 1, "consolidationFunc": "average", "xFilesFactor": 0.0}])
        );
        let (_, ctype, headers, body) = get_bytes(
            two_series(),
            "/metrics/find?query=a.*&local=1&format=pickle&from=540&until=720",
        )
        .await;
        assert_eq!(ctype, "application/pickle");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let nodes = serde_pickle::value_from_slice(&body, Default::default()).expect("unpickles");
        let leaf = |p: &str| {
            V::Dict(
                [
                    (H::String("path".into()), V::String(p.into())),
                    (H::String("is_leaf".into()), V::Bool(true)),
                    (
                        H::String("intervals".into()),
                        V::List(vec![V::Tuple(vec![V::F64(540.0), V::F64(720.0)])]),
                    ),
                ]
                .into_iter()
                .collect(),
            )
        };
        assert_eq!(nodes, V::List(vec![leaf("a.b"), leaf("a.c")]));
        let (_, ctype, _, body) =
            get_bytes(two_series(), "/metrics/find?query=*&local=1&format=msgpack").await;
        assert_eq!(ctype, "application/x-msgpack");
        let v: serde_json::Value = rmp_serde::from_slice(&body).expect("unpacks");
        assert_eq!(v, serde_json::json!([{"path": "a", "is_leaf": false}]));
        let (_, _, _, body) = get_bytes(
            two_series(),
            "/metrics/find?query=a.b&format=json&from=540&until=720",
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!([{"path": "a.b", "is_leaf": true, "intervals": [{"start": 540.0, "end": 720.0}]}])
        );
    }

    fn enc(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    /// Issue 17: a render past the budget of every request in flight is the server being busy:
    /// 503 with `Retry-After`, not the caller's mistake; a request that fits still runs.
    #[tokio::test]
    async fn issue_17_a_render_past_the_shared_budget_is_503_with_retry_after() {
        let mut src = MemSource::default();
        src.add("a.b", 0, 60, vec![Some(1.0); 10]);
        let source: Arc<dyn Source> = Arc::new(src);
        let budget = Budget::new(15);
        let render = |target: &str| {
            let uri = format!("/render?target={target}&from=0&until=600&format=json");
            let req = Request::get(uri).body(Body::empty()).expect("request");
            let app = routes(source.clone(), Limits::default(), budget.clone())
                .guard(Default::default(), |_| {
                    StatusCode::UNAUTHORIZED.into_response()
                });
            async move { app.oneshot(req).await.expect("answer") }
        };
        let r = render("a.b").await;
        assert_eq!(r.status(), 200);
        let r = render("group(a.b,a.b)").await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let (_, ctype, body) = crate::api_error::read_response(r).await;
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        assert!(body.starts_with("the server is busy: "), "{body}");
        assert_eq!(budget.held(), 0, "every request gave its points back");
    }

    /// A store that refuses writes (its disk is below the free-space reserve).
    struct Full(MemSource);

    impl Full {
        fn refuse<T>() -> Result<T> {
            Err(
                tally_store::Error::WritesRefused(tally_store::Refusal::LowSpace {
                    free: 1 << 20,
                    reserve: 256 << 20,
                })
                .into(),
            )
        }
    }

    impl Source for Full {
        fn find(&self, p: &str) -> Result<Vec<FindMatch>> {
            self.0.find(p)
        }
        fn expand(&self, p: &str) -> Result<Vec<String>> {
            self.0.expand(p)
        }
        fn select_by_tags(&self, e: &[&str]) -> Result<Vec<String>> {
            self.0.select_by_tags(e)
        }
        fn fetch(&self, n: &str, f: i64, u: i64) -> Result<Option<Fetched>> {
            self.0.fetch(n, f, u)
        }
        fn tag_names(&self) -> Vec<String> {
            self.0.tag_names()
        }
        fn tag_values(&self, t: &str) -> Vec<tally_store::TagValue> {
            self.0.tag_values(t)
        }
        fn register(&self, _: &str) -> Result<String> {
            Self::refuse()
        }
        fn delete(&self, _: &str) -> Result<bool> {
            Self::refuse()
        }
        fn add_event(&self, _: i64, _: &str, _: &str, _: Vec<String>) -> Result<u64> {
            Self::refuse()
        }
        fn events(&self, f: i64, u: i64) -> Result<Vec<Event>> {
            self.0.events(f, u)
        }
        fn load_state(&self, k: &str) -> Result<Option<Vec<u8>>> {
            self.0.load_state(k)
        }
        fn save_state(&self, _: &str, _: &[u8]) -> Result<()> {
            Self::refuse()
        }
    }

    /// Issue 17: on a full disk the query side's writes (events, tag writes and deletes) answer
    /// as the store's ingest does, 507 with the reason and `Retry-After`, and reads go on.
    #[tokio::test]
    async fn issue_17_refused_writes_answer_507_with_the_reason() {
        let mut m = MemSource::default();
        m.add("a.b", 0, 60, vec![Some(1.0); 10]);
        let source: Arc<dyn Source> = Arc::new(Full(m));
        for (uri, body) in [
            ("/events", r#"{"what":"deploy","tags":"x"}"#),
            ("/tags/tagSeries", "path=a.b;x=y"),
            ("/tags/delSeries", "path=a.b"),
        ] {
            let req = Request::post(uri)
                .header(
                    header::CONTENT_TYPE,
                    if uri == "/events" {
                        "application/json"
                    } else {
                        "application/x-www-form-urlencoded"
                    },
                )
                .body(Body::from(body))
                .expect("request");
            let r = routes(source.clone(), Limits::default(), Budget::new(usize::MAX))
                .guard(Default::default(), |_| {
                    StatusCode::UNAUTHORIZED.into_response()
                })
                .oneshot(req)
                .await
                .expect("answer");
            assert_eq!(r.status(), 507, "{uri}");
            assert_eq!(r.headers()[header::RETRY_AFTER], "10", "{uri}");
            let (_, _, body) = crate::api_error::read_response(r).await;
            assert!(body.contains("writes refused: "), "{uri}: {body}");
            assert!(body.contains("min_free_space"), "{uri}: {body}");
        }
        let (status, _, body) = call(
            source,
            "GET",
            "/render?target=a.b&from=0&until=600&format=json",
        )
        .await;
        assert_eq!(status, 200, "reads go on: {body}");
    }

    /// Issue 17: functions that make points from nothing (`time`, `sinFunction`, `summarize`
    /// on a finer grid) count them against the request's limit before making them, together
    /// with what the request read; a request over it is a 400 naming the limit.
    #[tokio::test]
    async fn issue_17_points_made_by_functions_count_against_the_limit() {
        let mut src = MemSource::default();
        src.add("daily", 0, 86_400, vec![Some(1.0); 10]);
        let source: Arc<dyn Source> = Arc::new(src);
        let limits = Limits {
            max_points: 1000,
            ..Limits::default()
        };
        let render = |target: &str, range: &str| {
            let uri = format!("/render?target={target}&{range}&format=json");
            let req = Request::get(uri).body(Body::empty()).expect("request");
            let app = routes(source.clone(), limits, Budget::new(usize::MAX))
                .guard(Default::default(), |_| {
                    StatusCode::UNAUTHORIZED.into_response()
                });
            async move { crate::api_error::read_response(app.oneshot(req).await.expect("answer")).await }
        };
        let ten_min = "from=0&until=600";
        let (status, _, body) = render("time('a',1)", ten_min).await;
        assert_eq!(status, 200, "{body}");
        let three_days = "from=0&until=259200";
        for (target, range, func) in [
            ("group(time('a',1),time('b',1))", ten_min, "time"),
            (
                "group(sinFunction('a',1,1),sinFunction('b',1,1))",
                ten_min,
                "sinFunction",
            ),
            ("summarize(daily,'1s')", three_days, "summarize"),
        ] {
            let (status, ctype, body) = render(target, range).await;
            assert_eq!(status, 400, "{target}: {body}");
            assert!(ctype.starts_with("text/plain"), "{ctype}");
            assert!(body.starts_with(&format!("{func}: ")), "{target}: {body}");
            assert!(
                body.contains("past 1000 points (max_points_per_request)"),
                "{target}: {body}"
            );
        }
        // A century of time() at 1 s is refused before a value is made; constantLine makes
        // three points whatever the range.
        let century = "from=0&until=3153600000";
        let (status, _, body) = render("time('a',1)", century).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.starts_with("time: 3153600001 points"), "{body}");
        let (status, _, body) = render("constantLine(7)", century).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v[0]["datapoints"].as_array().map(Vec::len),
            Some(3),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_failing_store_answers_500_without_its_detail_issue_11() {
        for (method, uri) in [
            ("GET", "/render?target=a.*"),
            ("GET", "/metrics/find?query=a.*"),
            ("GET", "/metrics/index.json"),
            ("GET", "/tags/findSeries?expr=name%3Da"),
            ("GET", "/events/get_data"),
            ("POST", "/tags/tagSeries?path=a.b"),
        ] {
            let (status, _, body) = call(Arc::new(Broken), method, uri).await;
            assert_eq!(status, 500, "{uri}: {body}");
            assert!(
                body.contains("internal error; see the server log"),
                "{uri}: {body}"
            );
            assert!(
                !body.contains("sector 9"),
                "{uri}: the detail stays in the log"
            );
            assert!(!body.contains("write"), "{uri}: {body}");
        }
    }
}
