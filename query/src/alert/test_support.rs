//! What the alert engine's unit tests share: engines over an in-memory source (with or without a
//! rules file to reload), a model of what Alertmanager makes of the batches it is sent, and a
//! receiver on a loopback port that records every POST and answers as told.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Router;
use serde_json::Value;

use super::config::Alerting;
use super::engine::Engine;
use super::payload::rfc3339;
use crate::source::{MemSource, Source};

/// An engine over `src` with `rules`, no file.
pub(super) fn engine(src: &Arc<dyn Source>, rules: &str) -> Engine {
    let cfg = Alerting::parse(rules).expect("rules");
    Engine::new(src.clone(), cfg, None).expect("engine")
}

/// An engine reading its rules from a file, and the file's directory.
pub(super) fn engine_on_file(src: &Arc<dyn Source>, rules: &str) -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alerts.toml");
    std::fs::write(&path, rules).expect("write");
    let cfg = Alerting::load(&path).expect("rules");
    let e = Engine::new(src.clone(), cfg, Some(path)).expect("engine");
    (e, dir)
}

/// Writes `rules` to the engine's file and reloads it at `now`.
pub(super) fn reload_at(e: &Engine, dir: &tempfile::TempDir, rules: &str, now: i64) {
    std::fs::write(dir.path().join("alerts.toml"), rules).expect("write");
    e.reload_at(now).expect("reload");
}

/// A source with one series per `(name, start, values)`, 10 s apart.
pub(super) fn source(series: &[(&str, i64, Vec<Option<f64>>)]) -> Arc<dyn Source> {
    let mut m = MemSource::default();
    for (name, start, values) in series {
        m.add(name, *start, 10, values.clone());
    }
    Arc::new(m)
}

/// What Alertmanager makes of the batches it is sent, as far as its receivers see it: an alert
/// (a label set) is active while its `endsAt` is ahead, the last alert sent wins, and each time
/// one becomes active or stops being active is one notification (`firing`, `resolved`).
#[derive(Default)]
pub(super) struct AmModel {
    ends_at: BTreeMap<String, String>,
    active: BTreeMap<String, bool>,
    /// The notifications, as (`severity/team`, status).
    pub log: Vec<(String, &'static str)>,
}

impl AmModel {
    pub fn feed(&mut self, batch: &[Value], now: i64) {
        for a in batch {
            self.ends_at.insert(
                a["labels"].to_string(),
                a["endsAt"].as_str().unwrap_or("").to_string(),
            );
        }
        let now = rfc3339(now);
        for (labels, ends_at) in &self.ends_at {
            let active = *ends_at > now;
            if self.active.get(labels).copied().unwrap_or(false) != active {
                self.active.insert(labels.clone(), active);
                let l: Value = serde_json::from_str(labels).unwrap_or(Value::Null);
                let name = format!(
                    "{}/{}",
                    l["severity"].as_str().unwrap_or("-"),
                    l["team"].as_str().unwrap_or("-")
                );
                self.log
                    .push((name, if active { "firing" } else { "resolved" }));
            }
        }
    }
}

/// Statuses still to answer, per path prefix; then 200.
type Plan = Vec<(String, VecDeque<u16>)>;

/// Every request received, as (path, JSON body).
type Got = Arc<Mutex<Vec<(String, Value)>>>;

/// A receiver on a loopback port: records every POST (path, JSON body) in order.
pub(super) struct Receiver {
    pub url: String,
    got: Got,
    plan: Arc<Mutex<Plan>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Got = Arc::default();
        let plan: Arc<Mutex<Plan>> = Arc::default();
        let state = (got.clone(), plan.clone());
        let app = Router::new().fallback(
            |State((got, plan)): State<(Got, Arc<Mutex<Plan>>)>,
             uri: Uri,
             body: axum::body::Bytes| async move {
                let path = uri.path().to_string();
                let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                got.lock().expect("got").push((path.clone(), v));
                let code = plan
                    .lock()
                    .expect("plan")
                    .iter_mut()
                    .find(|(p, _)| path.starts_with(p.as_str()))
                    .and_then(|(_, q)| q.pop_front())
                    .unwrap_or(200);
                StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app.with_state(state)).await;
        });
        Receiver { url, got, plan }
    }

    /// Answers the next requests on paths starting with `prefix` with `codes`.
    pub fn answer(&self, prefix: &str, codes: &[u16]) {
        self.plan
            .lock()
            .expect("plan")
            .push((prefix.to_string(), codes.iter().copied().collect()));
    }

    /// The bodies received on paths starting with `prefix`, in order.
    pub fn bodies(&self, prefix: &str) -> Vec<Value> {
        self.got
            .lock()
            .expect("got")
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }
}
