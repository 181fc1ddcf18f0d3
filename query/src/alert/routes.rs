//! The alerting HTTP API, merged into the store's router:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/alerts` | every instance: rule, series, labels, state, level, value, threshold, since, silenced, graph |
//! | `GET /api/v1/alerts/rules` | every rule with its settings, last evaluation, error and instance counts |
//! | `GET /api/v1/alerts/notifiers` | delivery counters per notifier (sent, failed attempts, dropped, pending) |
//! | `GET /api/v1/alerts/silences` | active silences |
//! | `POST /api/v1/alerts/silences` | `{"rule": R, "series": S?, "duration": "1h", "comment": ""}` |
//! | `DELETE /api/v1/alerts/silences/{id}` | ends a silence |
//! | `POST /api/v1/alerts/reload` | re-reads the alerting file (as SIGHUP does) |
//!
//! Writes need the API write token when one is configured.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::engine::Engine;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn routes(engine: Arc<Engine>) -> Router {
    Router::new()
        .route(
            "/api/v1/alerts",
            get(|State(e): State<Arc<Engine>>| async move { Json(e.alerts_json(now())) }),
        )
        .route(
            "/api/v1/alerts/rules",
            get(|State(e): State<Arc<Engine>>| async move { Json(e.rules_json()) }),
        )
        .route(
            "/api/v1/alerts/notifiers",
            get(|State(e): State<Arc<Engine>>| async move { Json(e.notifiers_json()) }),
        )
        .route(
            "/api/v1/alerts/silences",
            get(list_silences).post(add_silence),
        )
        .route("/api/v1/alerts/silences/:id", delete(del_silence))
        .route("/api/v1/alerts/reload", post(reload))
        .with_state(engine)
}

async fn list_silences(State(e): State<Arc<Engine>>) -> Response {
    Json(json!({ "silences": e.silences(now()) })).into_response()
}

#[derive(Deserialize)]
struct SilenceReq {
    rule: String,
    series: Option<String>,
    duration: String,
    #[serde(default)]
    comment: String,
}

fn bad(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": msg.into() })),
    )
        .into_response()
}

async fn add_silence(State(e): State<Arc<Engine>>, body: axum::body::Bytes) -> Response {
    let req: SilenceReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(err) => {
            return bad(format!(
                "body: {err} (want {{\"rule\", \"series\"?, \"duration\", \"comment\"?}})"
            ))
        }
    };
    let secs = match tally_common::config::parse_duration(&req.duration) {
        Ok(d) if d.as_secs() > 0 => d.as_secs() as i64,
        Ok(_) => return bad("duration: must be at least 1s"),
        Err(err) => return bad(format!("duration: {err}")),
    };
    match e.silence(
        &req.rule,
        req.series.filter(|s| !s.is_empty()),
        secs,
        req.comment,
        now(),
    ) {
        Ok(s) => (StatusCode::OK, Json(json!(s))).into_response(),
        Err(err) => bad(err),
    }
}

async fn del_silence(State(e): State<Arc<Engine>>, Path(id): Path<u64>) -> Response {
    if e.unsilence(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no silence {id}") })),
        )
            .into_response()
    }
}

async fn reload(State(e): State<Arc<Engine>>) -> Response {
    match tokio::task::spawn_blocking(move || e.reload()).await {
        Ok(Ok(n)) => Json(json!({ "rules": n })).into_response(),
        Ok(Err(problems)) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "errors": problems }))).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "reload failed\n").into_response(),
    }
}
