//! What the store counts about itself, for `/metrics` (Prometheus text) and `tally.store.*`:
//! counters declared with the shared `tally_common::counters!` and written by the shared
//! Prometheus writer, so the store and the agent expose theirs the same way.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use tally_common::metrics::{Kind, Sample};

tally_common::counters! {
    /// Counters, updated with relaxed atomics on the ingest path.
    pub struct Stats {
        points_received: Counter = "Good points decoded from any listener.",
        points_written: Counter = "Points written to the log (durable or buffered).",
        points_skipped: Counter = "Lines without a point: blank or NaN value.",
        lines_bad: Counter = "Bad lines, skipped.",
        series_created: Counter = "New series.",
        batches_acked: Counter = "Acknowledged batches answered after a durable write.",
        write_errors: Counter = "Writes that failed (nothing was acknowledged).",
        write_refusals: Counter = "Writes of points refused (low disk space, a failed write, read-only); nothing of them was written.",
        points_refused: Counter = "Points in refused writes: HTTP ingest answered 507, plaintext TCP held and retried, UDP dropped.",
        udp_points_dropped: Counter = "Plaintext UDP points dropped because writes were refused.",
        points_outside_retention: Counter = "Points refused because they are older than every archive of their series keeps.",
        db_reopens: Counter = "Times the database was closed and opened again in place (after a failed write, or read-only to read-write).",
        write_seconds_micros: Counter = "Time spent in log writes, microseconds.",
        writes: Counter = "Log writes.",
        flushes: Counter = "Head flushes into chunks.",
        flush_micros: Counter = "Time spent flushing, microseconds.",
        corrupt_chunks: Counter = "Chunks that failed to decode and were skipped.",
        connections_total: Counter = "Plaintext TCP connections accepted.",
        connections_refused: Counter = "Connections refused by the allowlist or the connection limit.",
        connections_open: Gauge = "Plaintext TCP connections open now.",
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// Prometheus text exposition of `values`, each `tally_store_<name>`.
pub fn prometheus(values: &[Sample]) -> String {
    let mut out = String::new();
    tally_common::metrics::write_text(&mut out, "tally_store", values);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_types_and_values() {
        let stats = Stats::default();
        Stats::add(&stats.lines_bad, 2);
        let mut values = stats.samples();
        values.retain(|m| m.name == "lines_bad");
        values.push(Sample::new(
            "series",
            Kind::Gauge,
            "Series in the index.",
            7,
        ));
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
