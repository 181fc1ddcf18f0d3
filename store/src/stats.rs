//! What the store counts about itself, for `/metrics` (Prometheus text) and `tally.store.*`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident: $kind:literal, $help:literal;)*) => {
        /// Counters, updated with relaxed atomics on the ingest path.
        #[derive(Debug, Default)]
        pub struct Stats {
            $(pub $name: AtomicU64,)*
        }

        impl Stats {
            /// `(name, kind, help, value)` of every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
                vec![$((stringify!($name), $kind, $help, self.$name.load(Relaxed)),)*]
            }
        }
    };
}

counters! {
    points_received: "counter", "Good points decoded from any listener.";
    points_written: "counter", "Points written to the log (durable or buffered).";
    points_skipped: "counter", "Lines without a point: blank or NaN value.";
    lines_bad: "counter", "Bad lines, skipped.";
    series_created: "counter", "New series.";
    batches_acked: "counter", "Acknowledged batches answered after a durable write.";
    write_errors: "counter", "Writes that failed (nothing was acknowledged).";
    write_seconds_micros: "counter", "Time spent in log writes, microseconds.";
    writes: "counter", "Log writes.";
    flushes: "counter", "Head flushes into chunks.";
    flush_micros: "counter", "Time spent flushing, microseconds.";
    corrupt_chunks: "counter", "Chunks that failed to decode and were skipped.";
    connections_total: "counter", "Plaintext TCP connections accepted.";
    connections_refused: "counter", "Connections refused by the allowlist or the connection limit.";
    connections_open: "gauge", "Plaintext TCP connections open now.";
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// Prometheus text exposition of `values`, each `tally_store_<name>`.
pub fn prometheus(values: &[(&str, &str, &str, u64)]) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in values {
        let _ = writeln!(out, "# HELP tally_store_{name} {help}");
        let _ = writeln!(out, "# TYPE tally_store_{name} {kind}");
        let _ = writeln!(out, "tally_store_{name} {value}");
    }
    out
}
