//! The store's HTTP side: the acknowledged batch (`POST /api/v1/ingest`, a write), one series as
//! stored (`GET /api/v1/read`, a read) and `/metrics` (a read unless `metrics_open`). The query
//! crate adds the Graphite API to the same port. Every route is declared with what it needs
//! ([`tally_common::auth::Routes`]) and the token is checked before any handler runs, so a
//! missing series and a forbidden one look the same (401) to a client without the token.
//!
//! Every error of these routes is an [`ApiError`], answered as JSON, `{"error": "..."}`, with
//! the status that tells a client what to do: a 4xx says what was wrong with the request and
//! quotes it; a 5xx is generic (the detail goes to the log, not to the client), and only a
//! failed write says "retry" (see `tally_proto::batch` for what the agent does with each).
//! Refused writes (disk below the free-space reserve, a database that waits for a reopen) are
//! the one 5xx that says why: 507 with the reason and `Retry-After`, since the operator, not
//! the client, has to act.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::Arc;
use tally_common::auth::{Access, Routes, Tokens};
use tally_proto::batch::{MAX_BATCH_BYTES, MAX_REPORTED_ERRORS};
use tally_proto::{IngestReply, INGEST_PATH};
use tracing::error;

use crate::batch::PointBatch;
use crate::engine::{Durability, Store};
use crate::error::Error;
use crate::stats::{prometheus, Stats};

#[derive(Debug, Clone)]
struct AppState {
    store: Store,
}

/// How a request to the store's routes failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The request was wrong: the status and what was wrong, quoting the input.
    Client(StatusCode, String),
    /// The store could not take a write (the detail is logged): 503, retry later.
    WriteFailed(String),
    /// Writes are refused for now: 507 with the reason and `Retry-After`.
    Refused(crate::engine::Refusal),
    /// Anything else that failed inside (the detail is logged): 500.
    Internal(String),
}

impl ApiError {
    fn bad_request(message: String) -> ApiError {
        ApiError::Client(StatusCode::BAD_REQUEST, message)
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Client(status, _) => *status,
            ApiError::WriteFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Refused(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A store error met while serving a request: the caller's mistake when it is about what the
/// request asked for, an internal failure otherwise.
impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::UnknownSeries(_) => ApiError::Client(StatusCode::NOT_FOUND, e.to_string()),
            Error::WritesRefused(r) => ApiError::Refused(r),
            _ if e.is_caller_mistake() => ApiError::bad_request(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

/// An extractor's rejection (a body over the limit, a query string that does not parse): the
/// client's mistake, with axum's status and message.
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        ApiError::Client(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::Client(r.status(), r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut retry_after = None;
        let message = match self {
            ApiError::Client(_, message) => message,
            ApiError::WriteFailed(detail) => {
                error!(error = %detail, "write failed; the client was told to retry");
                retry_after = Some(1);
                "the store could not complete the write; retry later".to_owned()
            }
            ApiError::Refused(refusal) => {
                // Logged by the store once per change of state, not per request.
                retry_after = Some(refusal.retry_after_secs());
                format!("writes refused: {refusal}")
            }
            ApiError::Internal(detail) => {
                error!(error = %detail, "request failed");
                "internal error; the store's log has the details".to_owned()
            }
        };
        let mut resp = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}

/// The store's routes behind `tokens`.
pub fn router(store: Store, tokens: Arc<Tokens>) -> Router {
    routes(store).guard(tokens, unauthorized)
}

/// The store's routes, each declared with what it needs.
pub fn routes(store: Store) -> Routes {
    Routes::new()
        .add(Method::POST, INGEST_PATH, Access::Write, ingest)
        .add(Method::POST, "/api/v1/publish", Access::Write, publish)
        .add(Method::GET, "/metrics", Access::Metrics, metrics)
        .add(Method::GET, "/api/v1/read", Access::Read, read)
        .map_router(|r| r.layer(DefaultBodyLimit::max(MAX_BATCH_BYTES)))
        .with_state(AppState { store })
}

/// The answer without the right token, before any handler ran.
fn unauthorized(_path: &str) -> Response {
    ApiError::Client(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token".into(),
    )
    .into_response()
}

/// Decodes the batch and answers only once every good point is in the synced WAL.
async fn ingest(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestReply>, ApiError> {
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(ApiError::bad_request(format!(
                "content encoding \"{enc}\" is not supported; send plain text"
            )));
        }
    }
    let body = body?;
    // Refused before the body is even decoded: the sender keeps the batch and comes back. Its
    // points are counted as its lines that are not blank (decoding is what the refusal saves).
    if let Some(refusal) = app.store.refusal() {
        let stats = app.store.stats();
        Stats::add(&stats.write_refusals, 1);
        let lines = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .count();
        Stats::add(&stats.points_refused, lines as u64);
        return Err(ApiError::Refused(refusal));
    }
    let store = app.store.clone();
    let written = tokio::task::spawn_blocking(move || {
        let now = tally_common::unix_now();
        let (batch, mut reply) = PointBatch::from_ingest_body(&body, now);
        let stats = store.stats();
        Stats::add(&stats.points_received, batch.len() as u64);
        Stats::add(&stats.lines_bad, reply.rejected);
        Stats::add(&stats.points_skipped, reply.skipped);
        store.write(&batch, Durability::Sync).map(|w| {
            reply.accepted = w.points as u64;
            reply.outside_retention = w.outside_retention as u64;
            let room = MAX_REPORTED_ERRORS.saturating_sub(reply.errors.len());
            reply.errors.extend(w.reasons.into_iter().take(room));
            reply
        })
    })
    .await
    .map_err(|e| ApiError::WriteFailed(format!("ingest task: {e}")))?;
    let reply = written.map_err(|e| match e {
        Error::WritesRefused(refusal) => ApiError::Refused(refusal),
        // The disk filled behind the reserve's back (another process wrote between two
        // measures): the failed write has turned writes off, and the client is told why
        // (507, as below the reserve) rather than a bare failure.
        e => match app.store.refusal() {
            Some(refusal) if e.to_string().contains("No space left") => {
                tracing::warn!(error = %e, "a write failed for lack of space; writes are refused until there is room");
                ApiError::Refused(refusal)
            }
            _ => ApiError::WriteFailed(format!("ingest: {e}")),
        },
    })?;
    Stats::add(&app.store.stats().batches_acked, 1);
    Ok(Json(reply))
}

/// `POST /api/v1/publish`: Atlas's JSON payload (`crate::publish`), with the ingest
/// endpoint's limits and token, answered once the good points are in the synced WAL: 200 when
/// every item was good, 202 with `{"type": "partial", "errorCount", "message"}` when some were
/// not (the good ones are written), 400 with `"type": "error"` when none was.
async fn publish(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    if let Some(refusal) = app.store.refusal() {
        Stats::add(&app.store.stats().write_refusals, 1);
        return Err(ApiError::Refused(refusal));
    }
    let store = app.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let p = crate::publish::decode(&body).map_err(ApiError::bad_request)?;
        let stats = store.stats();
        Stats::add(&stats.points_received, p.batch.len() as u64);
        Stats::add(&stats.lines_bad, p.failures as u64);
        let written = store
            .write(&p.batch, Durability::Sync)
            .map_err(|e| match e {
                Error::WritesRefused(refusal) => ApiError::Refused(refusal),
                e => ApiError::WriteFailed(format!("publish: {e}")),
            })?;
        Ok::<_, ApiError>((p, written))
    })
    .await
    .map_err(|e| ApiError::WriteFailed(format!("publish task: {e}")))?;
    let (mut p, written) = done?;
    // Points no retention keeps are failures too, as Atlas fails data that is too old.
    if written.outside_retention > 0 {
        p.failures += written.outside_retention;
        p.messages.extend(written.reasons);
    }
    Stats::add(&app.store.stats().batches_acked, 1);
    if p.items == 0 {
        return Err(ApiError::bad_request("empty payload".into()));
    }
    if p.failures == 0 {
        return Ok(StatusCode::OK.into_response());
    }
    let (status, kind) = if p.failures >= p.items {
        (StatusCode::BAD_REQUEST, "error")
    } else {
        (StatusCode::ACCEPTED, "partial")
    };
    let body = serde_json::json!({"type": kind, "errorCount": p.failures, "message": p.messages});
    Ok((status, Json(body)).into_response())
}

#[derive(Debug, serde::Deserialize)]
struct ReadParams {
    name: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

/// `GET /api/v1/read?name=<canonical name>&from=<epoch>&until=<epoch>`: one series, raw, as
/// stored (the finest archive covering `from`). For debugging and tests; Grafana uses `/render`.
async fn read(
    State(app): State<AppState>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(p) = params?;
    let name = p
        .name
        .ok_or_else(|| ApiError::bad_request("parameter \"name\" is required".into()))?;
    let now = tally_common::unix_now();
    let epoch = |key: &str, v: Option<String>, default: i64| -> Result<i64, ApiError> {
        v.map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!("parameter \"{key}\": \"{v}\" is not epoch seconds"))
            })
        })
    };
    let until = epoch("until", p.until, now)?;
    let from = epoch("from", p.from, until - 3600)?;
    let store = app.store.clone();
    let series = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || store.read(&name, from, until, None))
            .await
            .map_err(|e| ApiError::Internal(format!("read task: {e}")))?
    };
    match series {
        Ok(Some(s)) => Ok(Json(serde_json::json!({
            "name": s.name, "start": s.start, "step": s.step, "values": s.values,
        }))),
        Ok(None) => Err(ApiError::Client(
            StatusCode::NOT_FOUND,
            format!("no series \"{name}\""),
        )),
        Err(e) => Err(match ApiError::from(e) {
            ApiError::Internal(detail) => ApiError::Internal(format!(
                "reading \"{name}\" over ({from}, {until}]: {detail}"
            )),
            client => client,
        }),
    }
}

async fn metrics(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let store = app.store.clone();
    let text = tokio::task::spawn_blocking(move || prometheus(&store.metrics()))
        .await
        .map_err(|e| ApiError::Internal(format!("metrics task: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::engine::StoreOptions;

    use tally_common::unix_now as now;

    /// A store in a temp dir (kept alive by the returned guard) and its router.
    fn app(token: Option<&str>, max_points_per_read: usize) -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = StoreOptions::new(dir.path());
        opts.max_points_per_read = max_points_per_read;
        let store = Store::open(opts).expect("open");
        let tokens = Tokens::new(None, token.map(str::to_owned), false);
        (dir, router(store, Arc::new(tokens)))
    }

    /// Sends `req`; returns the status, the content type and the body.
    async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String, String) {
        let resp = app.clone().oneshot(req).await.expect("a response");
        let status = resp.status();
        let kind = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, kind, String::from_utf8_lossy(&body).into_owned())
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).expect("request")
    }

    fn post() -> axum::http::request::Builder {
        Request::post(INGEST_PATH).header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
    }

    fn error_of(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        v["error"].as_str().expect("an error message").to_owned()
    }

    #[tokio::test]
    async fn ingest_answers_the_reply_once_written_and_the_points_read_back() {
        let (_dir, app) = app(None, 1000);
        let t = now() - now() % 10 - 60;
        let body = format!("http.a 1.5 {t}\nnot a point\n");
        let req = post().body(Body::from(body.clone())).expect("request");
        let (status, kind, text) = send(&app, req).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, "application/json")
        );
        let reply: IngestReply = serde_json::from_str(&text).expect("an ingest reply");
        assert_eq!((reply.accepted, reply.rejected), (1, 1));

        let uri = format!("/api/v1/read?name=http.a&from={}&until={t}", t - 10);
        let (status, _, text) = send(&app, get(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["values"], serde_json::json!([1.5]));

        let (status, kind, text) = send(&app, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(kind.starts_with("text/plain"), "{kind}");
        assert!(text.contains("tally_store_lines_bad 1\n"), "{text}");
    }

    /// Issue 13: Atlas's publish: acknowledged once durable, the good items kept and the bad
    /// ones reported by index (202), all bad 400, all good 200.
    #[tokio::test]
    async fn publish_keeps_the_good_items_and_reports_the_bad_by_index() {
        let (_dir, app) = app(None, 1000);
        let t = now() - now() % 10 - 60;
        let publish = |body: String| {
            Request::post("/api/v1/publish")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .expect("request")
        };
        let body = format!(
            r#"{{"tags":{{"host":"web1"}},"metrics":[
                {{"tags":{{"name":"pub.requests","status":"5xx"}},"timestamp":{ms},"value":3}},
                {{"tags":{{"status":"2xx"}},"timestamp":{ms},"value":1}}]}}"#,
            ms = t * 1000 + 250
        );
        let (status, _, text) = send(&app, publish(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["type"], "partial");
        assert_eq!(v["errorCount"], 1);
        assert_eq!(v["message"][0], "metrics[1]: missing key \"name\"");
        let uri = format!(
            "/api/v1/read?name=pub.requests;host=web1;status=5xx&from={}&until={t}",
            t - 10
        );
        let (status, _, text) = send(&app, get(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["values"], serde_json::json!([3.0]));
        let good = format!(
            r#"{{"metrics":[{{"tags":{{"name":"pub.ok"}},"timestamp":{},"value":1}}]}}"#,
            t * 1000
        );
        let (status, _, text) = send(&app, publish(good)).await;
        assert_eq!((status, text.as_str()), (StatusCode::OK, ""));
        let (status, _, text) = send(&app, publish(r#"{"metrics":[{"tags":{}}]}"#.into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("\"type\":\"error\""), "{text}");
        let (status, _, text) = send(&app, publish("not json".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            error_of(&text).starts_with("not a publish payload"),
            "{text}"
        );
        let (status, _, text) = send(&app, publish(r#"{"metrics":[]}"#.into())).await;
        assert_eq!(
            (status, error_of(&text).as_str()),
            (StatusCode::BAD_REQUEST, "empty payload")
        );
    }

    #[tokio::test]
    async fn ingest_mistakes_are_json_4xx_that_say_what_was_wrong() {
        let (_dir, app) = app(Some("s3cret"), 1000);
        let line = format!("http.a 1 {}\n", now());
        for (auth, encoding, want_status, want) in [
            (
                None,
                None,
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
            ),
            (
                Some("Bearer wrong"),
                None,
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
            ),
            (
                Some("Bearer s3cret"),
                Some("gzip"),
                StatusCode::BAD_REQUEST,
                "content encoding \"gzip\" is not supported; send plain text",
            ),
        ] {
            let mut req = post();
            if let Some(auth) = auth {
                req = req.header(header::AUTHORIZATION, auth);
            }
            if let Some(enc) = encoding {
                req = req.header(header::CONTENT_ENCODING, enc);
            }
            let req = req.body(Body::from(line.clone())).expect("request");
            let (status, kind, text) = send(&app, req).await;
            assert_eq!(status, want_status, "{auth:?} {encoding:?}: {text}");
            assert_eq!(kind, "application/json");
            assert_eq!(error_of(&text), want);
        }
        let big = "x".repeat(MAX_BATCH_BYTES + 1);
        let req = post()
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .body(Body::from(big))
            .expect("request");
        let (status, kind, text) = send(&app, req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        assert_eq!(kind, "application/json");
        assert!(!error_of(&text).is_empty());
    }

    #[tokio::test]
    async fn read_mistakes_are_json_4xx_that_quote_the_input() {
        let (_dir, app) = app(None, 100);
        let t = now();
        let line = format!("known.series 1 {t}\n");
        let req = post().body(Body::from(line.clone())).expect("request");
        assert_eq!(send(&app, req).await.0, StatusCode::OK);
        for (uri, want_status, want) in [
            (
                "/api/v1/read".to_owned(),
                StatusCode::BAD_REQUEST,
                "parameter \"name\" is required".to_owned(),
            ),
            (
                "/api/v1/read?name=known.series&from=yesterday".to_owned(),
                StatusCode::BAD_REQUEST,
                "parameter \"from\": \"yesterday\" is not epoch seconds".to_owned(),
            ),
            (
                "/api/v1/read?name=no.such".to_owned(),
                StatusCode::NOT_FOUND,
                "no series \"no.such\"".to_owned(),
            ),
            (
                // 101 points at 10 s, over the limit of 100.
                format!("/api/v1/read?name=known.series&from={}&until={t}", t - 1010),
                StatusCode::BAD_REQUEST,
                "bad pattern \"known.series\": 101 points at 10s exceeds the limit of 100 per series"
                    .to_owned(),
            ),
        ] {
            let (status, kind, text) = send(&app, get(&uri)).await;
            assert_eq!(status, want_status, "{uri}: {text}");
            assert_eq!(kind, "application/json", "{uri}");
            assert_eq!(error_of(&text), want, "{uri}");
        }
    }

    /// A request for each of the store's routes, by its declared path, and the access the
    /// route must declare; a route without one here fails the walk below, so a new route cannot
    /// skip it.
    fn sample(route: &tally_common::auth::Route) -> Request<axum::body::Body> {
        let t = now();
        let (uri, body, access) = match route.path {
            INGEST_PATH => (
                INGEST_PATH.to_owned(),
                format!("walk.series 1 {t}\n"),
                Access::Write,
            ),
            "/metrics" => ("/metrics".to_owned(), String::new(), Access::Metrics),
            "/api/v1/publish" => (
                "/api/v1/publish".to_owned(),
                format!(
                    r#"{{"metrics":[{{"tags":{{"name":"walk"}},"timestamp":{},"value":1}}]}}"#,
                    t * 1000
                ),
                Access::Write,
            ),
            "/api/v1/read" => (
                "/api/v1/read?name=known.series".to_owned(),
                String::new(),
                Access::Read,
            ),
            other => panic!("no sample request for the route {other}: add one"),
        };
        assert_eq!(route.access, access, "{} {}", route.method, route.path);
        Request::builder()
            .method(route.method.clone())
            .uri(uri)
            .body(Body::from(body))
            .expect("request")
    }

    /// Issue 17: `/api/v1/read` and `/metrics` answered without the read token, and with only
    /// a write token ingest was open. Every route the store declares is called with no token,
    /// a wrong one, the read token and the write token.
    #[tokio::test]
    async fn issue_17_every_store_route_is_guarded_by_its_token() {
        use tally_common::auth::testing::walk_router;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreOptions::new(dir.path())).expect("open");
        let table = routes(store.clone()).table().to_vec();
        assert_eq!(table.len(), 4, "{table:?}");
        let wrong = walk_router(
            &table,
            |tokens| router(store.clone(), Arc::new(tokens)),
            sample,
        )
        .await;
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// Issue 17: without the token, a series that exists and one that does not get the same
    /// answer (the guard runs before any lookup).
    #[tokio::test]
    async fn issue_17_a_missing_series_and_a_forbidden_one_look_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreOptions::new(dir.path())).expect("open");
        let mut batch = PointBatch::default();
        batch.push("known.series", now(), 1.0);
        store.write(&batch, Durability::Sync).expect("write");
        let tokens = Tokens::new(Some("r".into()), Some("w".into()), false);
        let app = router(store, Arc::new(tokens));
        let known = send(&app, get("/api/v1/read?name=known.series")).await;
        let missing = send(&app, get("/api/v1/read?name=no.such.series")).await;
        assert_eq!(known.0, StatusCode::UNAUTHORIZED);
        assert_eq!(known, missing);
        assert_eq!(error_of(&known.2), "missing or wrong bearer token");
        let req = Request::get("/api/v1/read?name=known.series")
            .header(header::AUTHORIZATION, "Bearer r")
            .body(Body::empty())
            .expect("request");
        assert_eq!(send(&app, req).await.0, StatusCode::OK);
    }

    /// Issue 17: below the free-space reserve an acknowledged batch is refused with 507, the
    /// reason in the JSON body and `Retry-After`; reads and `/metrics` go on and say so.
    #[tokio::test]
    async fn issue_17_a_refused_ingest_is_507_with_the_reason_and_retry_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = StoreOptions::new(dir.path());
        opts.min_free = crate::engine::MinFree::Bytes(8 << 20);
        let store = Store::open(opts).expect("open");
        let app = router(store.clone(), Arc::new(Tokens::default()));
        let t = now() - now() % 10 - 60;
        let req = post()
            .body(Body::from(format!("kept.a 1 {t}\n")))
            .expect("request");
        assert_eq!(send(&app, req).await.0, StatusCode::OK);

        store.fake_free_space(5 << 20, 100 << 20);
        store.check_space();
        let req = post()
            .body(Body::from(format!("refused.a 1 {t}\n\nrefused.b 2 {t}\n")))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("a response");
        assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "10");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            error_of(&String::from_utf8_lossy(&body)),
            "writes refused: 5.00 MiB free in the data directory's filesystem, below the reserve \
             of 8.00 MiB (min_free_space); writes resume by themselves once 9.00 MiB are free"
        );

        let uri = format!("/api/v1/read?name=kept.a&from={}&until={t}", t - 10);
        let (status, _, text) = send(&app, get(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (_, _, text) = send(&app, get("/metrics")).await;
        for want in [
            "tally_store_writes_refused 1\n",
            "tally_store_write_refusals 1\n",
            "tally_store_points_refused 2\n",
            "tally_store_disk_free_bytes 5242880\n",
            "tally_store_disk_reserve_bytes 8388608\n",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        assert!(text.contains("tally_store_series 1\n"), "{text}");
    }

    /// Issue 17: a point outside every retention (a timestamp of 17) is not counted accepted:
    /// the reply counts it apart and says which point and which retention.
    #[tokio::test]
    async fn issue_17_ingest_reports_points_outside_every_retention() {
        let (_dir, app) = app(None, 1000);
        let t = now() - now() % 10 - 60;
        let req = post()
            .body(Body::from(format!("bad line\nold.a 1 17\nnew.a 2 {t}\n")))
            .expect("request");
        let (status, _, text) = send(&app, req).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let reply: IngestReply = serde_json::from_str(&text).expect("an ingest reply");
        assert_eq!(
            (reply.accepted, reply.rejected, reply.outside_retention),
            (1, 1, 1)
        );
        assert_eq!(reply.errors.len(), 2, "{:?}", reply.errors);
        assert_eq!(
            reply.errors[1],
            "point \"old.a\" at 17 is older than the 5y its series keeps \
             (retentions 10s:7d,1m:90d,10m:5y)"
        );
        let (_, _, text) = send(&app, get("/metrics")).await;
        assert!(
            text.contains("tally_store_points_outside_retention 1\n"),
            "{text}"
        );
        assert!(text.contains("tally_store_points_written 1\n"), "{text}");
    }

    /// Issue 11: an internal failure on a read answered "the store could not complete the write".
    /// Internal errors are now a generic 500 (the detail only in the log), and only a failed
    /// write says to retry it.
    #[tokio::test]
    async fn issue_11_internal_errors_are_generic_and_only_a_write_says_write() {
        let internal = ApiError::from(Error::Corrupt("chunk of 3 bytes".into())).into_response();
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = internal
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let message = error_of(&String::from_utf8_lossy(&body));
        assert_eq!(message, "internal error; the store's log has the details");
        assert!(!message.contains("write") && !message.contains("chunk"));

        let write = ApiError::WriteFailed("rocksdb: IO error".into()).into_response();
        assert_eq!(write.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = write.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            error_of(&String::from_utf8_lossy(&body)),
            "the store could not complete the write; retry later"
        );

        for (e, want) in [
            (Error::UnknownSeries("a.b".into()), StatusCode::NOT_FOUND),
            (
                Error::TagExpr {
                    expr: "x".into(),
                    reason: "no operator".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (
                Error::Io(std::io::Error::other("disk")),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            assert_eq!(ApiError::from(e).status(), want);
        }
    }
}
