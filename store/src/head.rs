//! The head: points written since the last flush, per series, in arrival order.
//!
//! Every point in the head is also in a `log` record in RocksDB (written, and synced for
//! acknowledged batches, before the point reaches the head). A flush turns the head into chunks
//! and rollups and, in its second and last write, deletes exactly the log records whose points
//! it held; after a crash the log records still present are replayed into a new head.

/// Points not yet in chunks.
#[derive(Debug, Default)]
pub(crate) struct Head {
    series: Vec<Vec<(i64, f64)>>,
    touched: Vec<u32>,
    points: usize,
    /// Keys of the log records whose points are in this head.
    pub(crate) log_keys: Vec<u64>,
}

impl Head {
    pub(crate) fn append(&mut self, id: u32, ts: i64, value: f64) {
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, Vec::new);
        }
        let s = &mut self.series[i];
        if s.is_empty() {
            self.touched.push(id);
        }
        s.push((ts, value));
        self.points += 1;
    }

    pub(crate) fn points(&self) -> usize {
        self.points
    }

    /// Series with points, in first-touched order.
    pub(crate) fn touched(&self) -> &[u32] {
        &self.touched
    }

    /// A series' points in arrival order (later arrivals win for a repeated timestamp).
    pub(crate) fn of(&self, id: u32) -> &[(i64, f64)] {
        self.series.get(id as usize).map_or(&[], Vec::as_slice)
    }
}
