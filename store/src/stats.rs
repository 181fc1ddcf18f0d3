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
        connections_refused: Counter = "Plaintext connections refused: by the allowlist, the per-address cap, or a full table of busy connections.",
        connections_refused_per_address: Counter = "Plaintext connections refused because their address held max_connections_per_address.",
        connections_evicted: Counter = "Idle plaintext connections closed to let a new one in when max_connections were open.",
        connections_open: Gauge = "Plaintext TCP connections open now.",
        http_connections_total: Counter = "HTTP connections accepted.",
        http_connections_open: Gauge = "HTTP connections open now.",
        http_connections_refused: Counter = "HTTP connections closed at once: http_max_connections were open and none was idle.",
        http_connections_evicted: Counter = "Idle HTTP connections closed to make room for a new one at http_max_connections.",
        http_header_timeouts: Counter = "HTTP connections closed because a request's headers took longer than http_header_timeout.",
        http_body_timeouts: Counter = "HTTP requests answered 408 because the body took longer than http_body_timeout.",
        http_send_timeouts: Counter = "HTTP connections closed because the client took no response bytes for http_idle_timeout.",
        http_idle_closed: Counter = "HTTP connections closed after http_idle_timeout without a request.",
        http_requests_shed: Counter = "HTTP requests answered 503 because http_max_requests were being served.",
        http_accept_errors: Counter = "Failed accepts on the HTTP port (such as no file descriptor left), each followed by a pause.",
        tls_handshake_failures: Counter = "TLS handshakes that failed or took too long, on either port.",
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
