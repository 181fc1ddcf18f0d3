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
//! Views are reads and changes are writes ([`tally_common::auth`]). The engine hands out typed
//! snapshots ([`snapshot`](super::snapshot)); the JSON shapes are decided here.

use std::sync::Arc;
use tally_common::unix_now;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tally_common::auth::{Access, Routes};

use super::delivery::NotifierStats;
use super::engine::Engine;
use super::machine::Level;
use super::snapshot::{AlertSnapshot, RuleSnapshot};
use super::state::Silence;
use crate::api_error::ApiError;

/// The routes, each declared with what it needs: the views read, the changes write.
pub(crate) fn routes(engine: Arc<Engine>) -> Routes {
    use Access::{Read, Write};
    Routes::new()
        .add(
            Method::GET,
            "/api/v1/alerts",
            Read,
            |State(e): State<Arc<Engine>>| async move { Json(alerts_json(&e.alerts(unix_now()))) },
        )
        .add(
            Method::GET,
            "/api/v1/alerts/rules",
            Read,
            |State(e): State<Arc<Engine>>| async move { Json(rules_json(&e.rules(unix_now()))) },
        )
        .add(
            Method::GET,
            "/api/v1/alerts/notifiers",
            Read,
            |State(e): State<Arc<Engine>>| async move { Json(notifiers_json(&e.notifiers())) },
        )
        .add(Method::GET, "/api/v1/alerts/silences", Read, list_silences)
        .add(Method::POST, "/api/v1/alerts/silences", Write, add_silence)
        .add(
            Method::DELETE,
            "/api/v1/alerts/silences/:id",
            Write,
            del_silence,
        )
        .add(Method::POST, "/api/v1/alerts/reload", Write, reload)
        .with_state(engine)
}

/// `{"alerts": [...]}`: every instance.
pub(crate) fn alerts_json(alerts: &[AlertSnapshot]) -> Value {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "rule": a.rule,
                "series": a.series,
                "labels": a.labels,
                "annotations": a.annotations,
                "state": a.state,
                "level": a.level.map(Level::as_str),
                "value": a.value,
                "threshold": a.threshold,
                "since": a.since,
                "last_eval": a.last_eval,
                "resolved_at": a.resolved_at,
                "error": a.error,
                "silenced": a.silenced,
                "graph_url": a.graph_url,
            })
        })
        .collect();
    json!({ "alerts": alerts })
}

/// `{"rules": [...]}`: every rule's settings (durations in seconds) and last evaluation.
pub(crate) fn rules_json(rules: &[RuleSnapshot]) -> Value {
    let rules: Vec<Value> = rules
        .iter()
        .map(|s| {
            let r = &s.rule;
            json!({
                "name": r.name,
                "target": r.target,
                "interval": r.interval,
                "window": r.window,
                "reduce": r.reduce,
                "op": r.op,
                "warn": r.warn,
                "crit": r.crit,
                "recover": r.recover,
                "for": r.for_,
                "keep_firing_for": r.keep_firing_for,
                "nodata": r.nodata,
                "on_error": r.on_error,
                "absent_for": r.absent.map(|a| a.absent_for),
                "labels": r.labels,
                "last_eval": s.last_eval,
                "last_error": s.last_error,
                "last_duration_ms": s.last_duration_ms,
                "instances": s.instances,
            })
        })
        .collect();
    json!({ "rules": rules })
}

/// `{"notifiers": [...]}`: delivery counters, in the order of the configuration.
pub(crate) fn notifiers_json(stats: &[NotifierStats]) -> Value {
    let notifiers: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "kind": s.kind,
                "sent": s.sent,
                "failed_attempts": s.failed_attempts,
                "dropped": s.dropped,
                "pending": s.pending,
                "last_error": s.last_error,
            })
        })
        .collect();
    json!({ "notifiers": notifiers })
}

fn silence_json(s: &Silence) -> Value {
    json!({
        "id": s.id,
        "rule": s.rule,
        "series": s.series,
        "until": s.until,
        "comment": s.comment,
    })
}

async fn list_silences(State(e): State<Arc<Engine>>) -> Response {
    let silences: Vec<Value> = e.silences(unix_now()).iter().map(silence_json).collect();
    Json(json!({ "silences": silences })).into_response()
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
    ApiError::client(StatusCode::BAD_REQUEST, msg).into_response()
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
        unix_now(),
    ) {
        Ok(s) => (StatusCode::OK, Json(silence_json(&s))).into_response(),
        Err(err) => bad(err),
    }
}

async fn del_silence(State(e): State<Arc<Engine>>, Path(id): Path<u64>) -> Response {
    if e.unsilence(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::client(StatusCode::NOT_FOUND, format!("no silence {id}")).into_response()
    }
}

async fn reload(State(e): State<Arc<Engine>>) -> Response {
    match tokio::task::spawn_blocking(move || e.reload()).await {
        Ok(Ok(n)) => Json(json!({ "rules": n })).into_response(),
        Ok(Err(problems)) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "errors": problems }))).into_response()
        }
        Err(err) => ApiError::internal(format!("the alert rules' reload task failed: {err}"))
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::config::Alerting;
    use crate::source::{MemSource, Source};
    use axum::body::Body;
    use axum::http::Request;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_owned()))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("answer");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    #[tokio::test]
    async fn the_json_views() {
        let t = unix_now() / 10 * 10;
        let mut m = MemSource::default();
        m.add("beacons;source=cdn", t - 60, 10, vec![Some(42.0); 7]);
        let src: Arc<dyn Source> = Arc::new(m);
        let cfg = Alerting::parse(
            "[[rule]]\nname = \"B\"\ntarget = \"seriesByTag('name=beacons')\"\nwindow = \"1m\"\nwarn = 10\ncrit = 20\nlabels = { team = \"web\" }\n[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
        )
        .expect("rules");
        let engine = Arc::new(Engine::new(src, cfg, None).expect("engine"));
        engine.evaluate_due(t);
        let app = routes(engine).guard(Default::default(), |_| {
            StatusCode::UNAUTHORIZED.into_response()
        });

        let (status, v) = call(&app, "GET", "/api/v1/alerts", "").await;
        assert_eq!(status, StatusCode::OK);
        let url = "http://127.0.0.1:8080/render?target=beacons%3Bsource%3Dcdn&from=-3h&format=svg";
        assert_eq!(
            v,
            json!({"alerts": [{
                "rule": "B", "series": "beacons;source=cdn",
                "labels": {"alertname": "B", "metric": "beacons", "series": "beacons;source=cdn",
                           "severity": "critical", "source": "cdn", "team": "web"},
                "annotations": {"summary": "B: beacons;source=cdn is 42 (critical threshold 20)"},
                "state": "firing", "level": "critical", "value": 42.0, "threshold": 20.0,
                "since": t, "last_eval": t, "resolved_at": null, "error": null,
                "silenced": false, "graph_url": url,
            }]})
        );

        let (_, v) = call(&app, "GET", "/api/v1/alerts/rules", "").await;
        assert_eq!(
            v,
            json!({"rules": [{
                "name": "B", "target": "seriesByTag('name=beacons')", "interval": 30,
                "window": 60, "reduce": "last", "op": ">", "warn": 10.0, "crit": 20.0,
                "recover": null, "for": 0, "keep_firing_for": 0, "nodata": "alert",
                "on_error": "alert", "absent_for": null, "labels": {"team": "web"},
                "last_eval": t, "last_error": null, "last_duration_ms": v["rules"][0]["last_duration_ms"],
                "instances": {"firing": 1},
            }]})
        );

        let (_, v) = call(&app, "GET", "/api/v1/alerts/notifiers", "").await;
        assert_eq!(
            v,
            json!({"notifiers": [{"kind": "webhook", "sent": 0, "failed_attempts": 0,
                                  "dropped": 0, "pending": 1, "last_error": null}]})
        );

        let (status, s) = call(
            &app,
            "POST",
            "/api/v1/alerts/silences",
            r#"{"rule": "B", "duration": "1h", "comment": "deploy"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let until = s["until"].as_i64().expect("until");
        assert!((3600..3700).contains(&(until - t)), "{s}");
        let (_, v) = call(&app, "GET", "/api/v1/alerts/silences", "").await;
        assert_eq!(
            v,
            json!({"silences": [{"id": 1, "rule": "B", "series": null, "until": until,
                                 "comment": "deploy"}]})
        );
        let (status, v) = call(
            &app,
            "POST",
            "/api/v1/alerts/silences",
            r#"{"rule": "B", "duration": "0s"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v, json!({"error": "duration: must be at least 1s"}));
        let (status, _) = call(&app, "DELETE", "/api/v1/alerts/silences/1", "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, v) = call(&app, "DELETE", "/api/v1/alerts/silences/1", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v, json!({"error": "no silence 1"}));
    }
}
