//! The agent's own counters: on `/metrics` in Prometheus text, and shipped as `tally.agent.*`
//! series with the rest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
        points_spooled: Counter = "Points written to the spool (with several stores, once per store holding it).",
        points_shipped: Counter = "Points the destination acknowledged (with several stores, each store's acknowledgement counts).",
        points_dropped: Counter = "Points dropped unsent because the spool (a store's queue) was full.",
        spool_segments: Gauge = "Segments waiting in the spool (every store's queue).",
        spool_bytes: Gauge = "Bytes waiting in the spool (every store's queue).",
        spool_points: Gauge = "Points waiting in the spool (every store's queue; a point for two stores counts twice).",
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
        /// With several stores, each store's own counters, in the order of the stores.
        pub stores: Mutex<Vec<Arc<StoreStats>>>,
        /// How many times the shippers were woken (each remembers the last it saw).
        wake: (Mutex<u64>, Condvar),
    }
}

/// One of several stores' counters, labelled `store="<url>"` on `/metrics`.
#[derive(Debug)]
pub struct StoreStats {
    pub url: String,
    pub spool_points: AtomicU64,
    pub points_shipped: AtomicU64,
    pub ship_errors: AtomicU64,
}

impl StoreStats {
    pub(crate) fn new(url: &str) -> StoreStats {
        StoreStats {
            url: url.to_string(),
            spool_points: AtomicU64::new(0),
            points_shipped: AtomicU64::new(0),
            ship_errors: AtomicU64::new(0),
        }
    }
}

/// How many lines one rule counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatches {
    pub rule: String,
    pub lines: u64,
}

impl Stats {
    /// Every counter, the per-rule matches as `lines_matched{rule=...}`, and with several
    /// stores each one's `store_spool_points`, `store_points_shipped` and `store_ship_errors`
    /// labelled `store=<url>`.
    pub fn all_samples(&self) -> Vec<Sample> {
        let mut out = self.samples();
        let stores = self.stores.lock().map(|s| s.clone()).unwrap_or_default();
        type Field = fn(&StoreStats) -> &AtomicU64;
        let per_store: [(&'static str, Kind, &'static str, Field); 3] = [
            (
                "store_spool_points",
                Kind::Gauge,
                "Points waiting in this store's queue.",
                |s| &s.spool_points,
            ),
            (
                "store_points_shipped",
                Kind::Counter,
                "Points this store acknowledged.",
                |s| &s.points_shipped,
            ),
            (
                "store_ship_errors",
                Kind::Counter,
                "Failed deliveries to this store.",
                |s| &s.ship_errors,
            ),
        ];
        for (name, kind, help, field) in per_store {
            for s in &stores {
                out.push(
                    Sample::new(name, kind, help, field(s).load(Ordering::Relaxed))
                        .label("store", s.url.clone()),
                );
            }
        }
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

    /// Wakes the shippers: a segment was written, or the agent is stopping.
    pub fn notify(&self) {
        if let Ok(mut w) = self.wake.0.lock() {
            *w = w.wrapping_add(1);
            self.wake.1.notify_all();
        }
    }

    /// Waits for a [`Stats::notify`] after the one `seen` last (then remembered there), or
    /// `timeout`.
    pub fn wait_for_work(&self, seen: &mut u64, timeout: Duration) {
        if let Ok(mut w) = self.wake.0.lock() {
            if *w == *seen {
                if let Ok((g, _)) = self.wake.1.wait_timeout(w, timeout) {
                    w = g;
                } else {
                    return;
                }
            }
            *seen = *w;
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
