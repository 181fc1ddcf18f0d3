//! What the store counts about itself, for `/metrics` (Prometheus text) and `tally.store.*`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Whether a value only grows (a Prometheus counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    /// The word Prometheus' `# TYPE` line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One value the store reports about itself: a row of `/metrics`, and a `tally.store.<name>`
/// series.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub value: u64,
}

macro_rules! counters {
    ($($name:ident: $kind:ident, $help:literal;)*) => {
        /// Counters, updated with relaxed atomics on the ingest path.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(pub $name: AtomicU64,)*
        }

        impl Stats {
            /// Every counter's current value.
            pub fn snapshot(&self) -> Vec<Metric> {
                vec![$(Metric {
                    name: stringify!($name),
                    help: $help,
                    kind: MetricKind::$kind,
                    value: self.$name.load(Relaxed),
                },)*]
            }
        }
    };
}

counters! {
    points_received: Counter, "Good points decoded from any listener.";
    points_written: Counter, "Points written to the log (durable or buffered).";
    points_skipped: Counter, "Lines without a point: blank or NaN value.";
    lines_bad: Counter, "Bad lines, skipped.";
    series_created: Counter, "New series.";
    batches_acked: Counter, "Acknowledged batches answered after a durable write.";
    write_errors: Counter, "Writes that failed (nothing was acknowledged).";
    write_seconds_micros: Counter, "Time spent in log writes, microseconds.";
    writes: Counter, "Log writes.";
    flushes: Counter, "Head flushes into chunks.";
    flush_micros: Counter, "Time spent flushing, microseconds.";
    corrupt_chunks: Counter, "Chunks that failed to decode and were skipped.";
    connections_total: Counter, "Plaintext TCP connections accepted.";
    connections_refused: Counter, "Connections refused by the allowlist or the connection limit.";
    connections_open: Gauge, "Plaintext TCP connections open now.";
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// Prometheus text exposition of `values`, each `tally_store_<name>`.
pub fn prometheus(values: &[Metric]) -> String {
    let mut out = String::new();
    for m in values {
        let name = m.name;
        let _ = writeln!(out, "# HELP tally_store_{name} {}", m.help);
        let _ = writeln!(out, "# TYPE tally_store_{name} {}", m.kind.as_str());
        let _ = writeln!(out, "tally_store_{name} {}", m.value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_types_and_values() {
        let stats = Stats::default();
        Stats::add(&stats.lines_bad, 2);
        let mut values = stats.snapshot();
        values.retain(|m| m.name == "lines_bad");
        values.push(Metric {
            name: "series",
            help: "Series in the index.",
            kind: MetricKind::Gauge,
            value: 7,
        });
        assert_eq!(
            prometheus(&values),
            "# HELP tally_store_lines_bad Bad lines, skipped.\n\
             # TYPE tally_store_lines_bad counter\n\
             tally_store_lines_bad 2\n\
             # HELP tally_store_series Series in the index.\n\
             # TYPE tally_store_series gauge\n\
             tally_store_series 7\n"
        );
    }
}
