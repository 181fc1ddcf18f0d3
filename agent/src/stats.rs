//! The agent's own counters: on `/metrics` in Prometheus text, and shipped as `tally.agent.*`
//! series with the rest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tally_common::metrics::{Kind, Sample};

tally_common::counters! {
    /// Counters shared by the reading loop, the shipper and the HTTP server.
    pub struct Stats {
        lines_read: Counter = "Lines read from the logs.",
        lines_unmatched: Counter = "Lines no rule counted.",
        lines_bad: Counter = "Lines the presets could not read, or whose time or value did not parse.",
        lines_late: Counter = "Lines older than the lateness window, not counted.",
        lines_future: Counter = "Lines dated too far in the future, not counted.",
        lines_too_long: Counter = "Lines cut at max_line_size.",
        bytes_read: Counter = "Bytes read from the logs.",
        truncations: Counter = "Files found truncated (copytruncate or truncation).",
        files_open: Gauge = "Files being followed.",
        files_lost: Counter = "Checkpointed files not found again at start-up.",
        backlog_bytes: Gauge = "Bytes in the followed files not read yet.",
        tag_overflow: Counter = "New series sent to \"other\" by a cardinality cap.",
        series: Gauge = "Distinct series known.",
        open_buckets: Gauge = "Buckets within the lateness window.",
        commits: Counter = "Checkpoints written.",
        points_spooled: Counter = "Points written to the spool.",
        points_shipped: Counter = "Points the destination acknowledged.",
        points_dropped: Counter = "Points dropped unsent because the spool was full.",
        spool_segments: Gauge = "Segments waiting in the spool.",
        spool_bytes: Gauge = "Bytes waiting in the spool.",
        spool_points: Gauge = "Points waiting in the spool.",
        ship_batches: Counter = "Batches delivered.",
        ship_errors: Counter = "Failed delivery attempts.",
        ship_latency_ms: Gauge = "Age of the oldest point of the last delivered batch, in ms.",
        ship_request_ms: Gauge = "Duration of the last delivery, in ms.",
        statsd_packets: Counter = "statsd datagrams and TCP lines accepted (written to the journal).",
        statsd_metrics: Counter = "statsd metrics counted.",
        statsd_bad: Counter = "statsd metrics that did not parse (logged at most once per 10 s).",
        statsd_dropped: Counter = "statsd datagrams and TCP lines not accepted: the journal was full or failed, or a line was longer than max_line_size.",
        statsd_journal_bytes: Gauge = "Bytes in the statsd journal not yet deleted (read and committed segments are).",
        statsd_connections: Gauge = "statsd TCP connections open.",
        statsd_series: Gauge = "Distinct statsd series known.",
    }
    extra {
        /// Lines matched per rule, in the rules' order.
        pub matched: Mutex<Vec<RuleMatches>>,
        pub stopping: AtomicBool,
        wake: (Mutex<bool>, Condvar),
    }
}

/// How many lines one rule counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatches {
    pub rule: String,
    pub lines: u64,
}

impl Stats {
    /// Every counter, and the per-rule matches as `lines_matched{rule=...}`.
    pub fn all_samples(&self) -> Vec<Sample> {
        let mut out = self.samples();
        for m in self.matched.lock().map(|m| m.clone()).unwrap_or_default() {
            out.push(
                Sample::new(
                    "lines_matched",
                    Kind::Counter,
                    "Lines each rule counted.",
                    m.lines,
                )
                .label("rule", m.rule),
            );
        }
        out
    }

    /// Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        tally_common::metrics::write_text(&mut out, "tally_agent", &self.all_samples());
        out
    }

    /// Every counter as one JSON object (`tally agent --once` prints it).
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        for s in self.samples() {
            m.insert(s.name.into(), s.value.into());
        }
        let matched: serde_json::Map<String, serde_json::Value> = self
            .matched
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.rule, m.lines.into()))
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
