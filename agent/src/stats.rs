//! The agent's own counters: on `/metrics` in Prometheus text, and shipped as `tally.agent.*`
//! series with the rest.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Counters shared by the reading loop, the shipper and the HTTP server.
#[derive(Debug, Default)]
pub struct Stats {
    pub lines_read: AtomicU64,
    pub lines_unmatched: AtomicU64,
    pub lines_bad: AtomicU64,
    pub lines_late: AtomicU64,
    pub lines_future: AtomicU64,
    pub lines_too_long: AtomicU64,
    pub bytes_read: AtomicU64,
    pub truncations: AtomicU64,
    pub files_open: AtomicU64,
    pub files_lost: AtomicU64,
    pub backlog_bytes: AtomicU64,
    pub tag_overflow: AtomicU64,
    pub series: AtomicU64,
    pub open_buckets: AtomicU64,
    pub commits: AtomicU64,
    pub points_spooled: AtomicU64,
    pub points_shipped: AtomicU64,
    pub points_dropped: AtomicU64,
    pub spool_segments: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_points: AtomicU64,
    pub ship_batches: AtomicU64,
    pub ship_errors: AtomicU64,
    pub ship_latency_ms: AtomicU64,
    pub ship_request_ms: AtomicU64,
    /// Lines matched per rule, by rule name.
    pub matched: Mutex<Vec<(String, u64)>>,
    pub stopping: AtomicBool,
    wake: (Mutex<bool>, Condvar),
}

impl Stats {
    /// Every scalar as (name, Prometheus type, help, value).
    pub fn scalars(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            (
                "lines_read",
                "counter",
                "Lines read from the logs.",
                g(&self.lines_read),
            ),
            (
                "lines_unmatched",
                "counter",
                "Lines no rule counted.",
                g(&self.lines_unmatched),
            ),
            (
                "lines_bad",
                "counter",
                "Lines the presets could not read, or whose time or value did not parse.",
                g(&self.lines_bad),
            ),
            (
                "lines_late",
                "counter",
                "Lines older than the lateness window, not counted.",
                g(&self.lines_late),
            ),
            (
                "lines_future",
                "counter",
                "Lines dated too far in the future, not counted.",
                g(&self.lines_future),
            ),
            (
                "lines_too_long",
                "counter",
                "Lines cut at max_line_bytes.",
                g(&self.lines_too_long),
            ),
            (
                "bytes_read",
                "counter",
                "Bytes read from the logs.",
                g(&self.bytes_read),
            ),
            (
                "truncations",
                "counter",
                "Files found truncated (copytruncate or truncation).",
                g(&self.truncations),
            ),
            (
                "files_open",
                "gauge",
                "Files being followed.",
                g(&self.files_open),
            ),
            (
                "files_lost",
                "counter",
                "Checkpointed files not found again at start-up.",
                g(&self.files_lost),
            ),
            (
                "backlog_bytes",
                "gauge",
                "Bytes in the followed files not read yet.",
                g(&self.backlog_bytes),
            ),
            (
                "tag_overflow",
                "counter",
                "New series sent to \"other\" by a cardinality cap.",
                g(&self.tag_overflow),
            ),
            ("series", "gauge", "Distinct series known.", g(&self.series)),
            (
                "open_buckets",
                "gauge",
                "Buckets within the lateness window.",
                g(&self.open_buckets),
            ),
            (
                "commits",
                "counter",
                "Checkpoints written.",
                g(&self.commits),
            ),
            (
                "points_spooled",
                "counter",
                "Points written to the spool.",
                g(&self.points_spooled),
            ),
            (
                "points_shipped",
                "counter",
                "Points the destination acknowledged.",
                g(&self.points_shipped),
            ),
            (
                "points_dropped",
                "counter",
                "Points dropped unsent because the spool was full.",
                g(&self.points_dropped),
            ),
            (
                "spool_segments",
                "gauge",
                "Segments waiting in the spool.",
                g(&self.spool_segments),
            ),
            (
                "spool_bytes",
                "gauge",
                "Bytes waiting in the spool.",
                g(&self.spool_bytes),
            ),
            (
                "spool_points",
                "gauge",
                "Points waiting in the spool.",
                g(&self.spool_points),
            ),
            (
                "ship_batches",
                "counter",
                "Batches delivered.",
                g(&self.ship_batches),
            ),
            (
                "ship_errors",
                "counter",
                "Failed delivery attempts.",
                g(&self.ship_errors),
            ),
            (
                "ship_latency_ms",
                "gauge",
                "Age of the oldest point of the last delivered batch, in ms.",
                g(&self.ship_latency_ms),
            ),
            (
                "ship_request_ms",
                "gauge",
                "Duration of the last delivery, in ms.",
                g(&self.ship_request_ms),
            ),
        ]
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, v) in self.scalars() {
            let _ = writeln!(out, "# HELP tally_agent_{name} {help}\n# TYPE tally_agent_{name} {kind}\ntally_agent_{name} {v}");
        }
        let _ = writeln!(out, "# HELP tally_agent_lines_matched Lines each rule counted.\n# TYPE tally_agent_lines_matched counter");
        for (rule, v) in self.matched.lock().map(|m| m.clone()).unwrap_or_default() {
            let _ = writeln!(out, "tally_agent_lines_matched{{rule=\"{rule}\"}} {v}");
        }
        out
    }

    /// Every counter as one JSON object (`tally agent --once` prints it).
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        for (name, _, _, v) in self.scalars() {
            m.insert(name.into(), v.into());
        }
        let matched: serde_json::Map<String, serde_json::Value> = self
            .matched
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        m.insert("lines_matched".into(), matched.into());
        serde_json::Value::Object(m).to_string()
    }

    /// Wakes the shipper: a segment was written, or the agent is stopping.
    pub fn notify(&self) {
        if let Ok(mut w) = self.wake.0.lock() {
            *w = true;
            self.wake.1.notify_all();
        }
    }

    /// Waits for [`Stats::notify`] or `timeout`.
    pub fn wait_for_work(&self, timeout: Duration) {
        if let Ok(mut w) = self.wake.0.lock() {
            if !*w {
                if let Ok((g, _)) = self.wake.1.wait_timeout(w, timeout) {
                    w = g;
                } else {
                    return;
                }
            }
            *w = false;
        }
    }

    /// Sleeps, returning early when the agent starts stopping.
    pub fn sleep_unless_stopping(&self, d: Duration) {
        let end = std::time::Instant::now() + d;
        while !self.stopping.load(Ordering::Relaxed) {
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            if let Ok(w) = self.wake.0.lock() {
                let _ = self
                    .wake
                    .1
                    .wait_timeout(w, left.min(Duration::from_millis(100)));
            }
        }
    }
}
