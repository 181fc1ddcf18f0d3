//! The store's HTTP side: the acknowledged batch (`POST /api/v1/ingest`) and `/metrics`.
//! The query crate adds the Graphite API to the same router.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tally_proto::batch::MAX_BATCH_BYTES;
use tally_proto::{decode_batch, IngestReply, INGEST_PATH};
use tracing::error;

use crate::batch::PointBatch;
use crate::engine::{Durability, Store};
use crate::stats::{prometheus, Stats};

#[derive(Debug, Clone)]
struct AppState {
    store: Store,
    token: Option<String>,
}

/// An error answer: client mistakes say what is wrong; internal failures are logged and answered
/// with a generic message.
#[derive(Debug)]
pub enum ApiError {
    Client(StatusCode, String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Client(status, message) => (status, message),
            ApiError::Internal(detail) => {
                error!(error = %detail, "request failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store could not complete the write; retry later".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

/// The store's routes.
pub fn router(store: Store, token: Option<String>) -> Router {
    Router::new()
        .route(INGEST_PATH, post(ingest))
        .route("/metrics", get(metrics))
        .route("/api/v1/read", get(read))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(AppState { store, token })
}

fn authorized(headers: &HeaderMap, token: &Option<String>) -> bool {
    let Some(token) = token else { return true };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given.as_bytes() == token.as_bytes())
}

/// Decodes the batch and answers only once every good point is in the synced WAL.
async fn ingest(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<IngestReply>, ApiError> {
    if !authorized(&headers, &app.token) {
        return Err(ApiError::Client(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        ));
    }
    if let Some(enc) = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    {
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(ApiError::Client(
                StatusCode::BAD_REQUEST,
                format!("content encoding \"{enc}\" is not supported; send plain text"),
            ));
        }
    }
    let store = app.store.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut batch = PointBatch::default();
        let reply = decode_batch(&body, |m| batch.push_metric(&m, now));
        let stats = store.stats();
        Stats::add(&stats.points_received, batch.len() as u64);
        Stats::add(&stats.lines_bad, reply.rejected);
        Stats::add(&stats.points_skipped, reply.skipped);
        store.write(&batch, Durability::Sync).map(|_| reply)
    })
    .await;
    match joined {
        Ok(Ok(reply)) => {
            Stats::add(&app.store.stats().batches_acked, 1);
            Ok(Json(reply))
        }
        Ok(Err(e)) => Err(ApiError::Internal(e.to_string())),
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
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
    Query(p): Query<ReadParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bad = |m: String| ApiError::Client(StatusCode::BAD_REQUEST, m);
    let name = p
        .name
        .ok_or_else(|| bad("parameter \"name\" is required".into()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let epoch = |key: &str, v: Option<String>, default: i64| -> Result<i64, ApiError> {
        v.map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| bad(format!("parameter \"{key}\": \"{v}\" is not epoch seconds")))
        })
    };
    let until = epoch("until", p.until, now)?;
    let from = epoch("from", p.from, until - 3600)?;
    let store = app.store.clone();
    let series = tokio::task::spawn_blocking(move || {
        store.read(&name, from, until, None).map(|s| (name, s))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    match series {
        Ok((_, Some(s))) => Ok(Json(serde_json::json!({
            "name": s.name, "start": s.start, "step": s.step, "values": s.values,
        }))),
        Ok((name, None)) => Err(ApiError::Client(
            StatusCode::NOT_FOUND,
            format!("no series \"{name}\""),
        )),
        Err(e) => Err(bad(e.to_string())),
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let store = app.store.clone();
    let text = tokio::task::spawn_blocking(move || prometheus(&store.metrics()))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
