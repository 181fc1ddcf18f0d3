//! The head: points written since the last flush, per series, in arrival order.
//!
//! Every point in the head is also in a `log` record in RocksDB (written, and synced for
//! acknowledged batches, before the point reaches the head). A flush turns the head into chunks
//! and rollups and, in its second and last write, deletes exactly the log records whose points
//! it held; after a crash the log records still present are replayed into a new head.
//!
//! Memory: a store with a million series has a head with up to a million of them at once, so the
//! per-series cost is what counts. A series costs 4 bytes in `slot` (indexed by id, sized once
//! from the index when the head is created, so it never doubles while points arrive) and, once
//! touched, one vector in `points` (24 bytes) plus its points, 16 bytes each. Untouched series
//! cost only their slot.

/// `slot` of a series with no points in this head.
const NONE: u32 = u32::MAX;

/// Points not yet in chunks.
#[derive(Debug, Default)]
pub(crate) struct Head {
    /// Per series id: its index in `points` and `ids`, or [`NONE`].
    slot: Vec<u32>,
    /// The touched series' points, in first-touched order.
    points: Vec<Vec<(i64, f64)>>,
    /// The id of each entry of `points`.
    ids: Vec<u32>,
    len: usize,
    /// Keys of the log records whose points are in this head.
    pub(crate) log_keys: Vec<u64>,
}

impl Head {
    /// An empty head with room for series ids below `series` without growing.
    pub(crate) fn with_series(series: usize) -> Head {
        Head {
            slot: vec![NONE; series],
            ..Head::default()
        }
    }

    pub(crate) fn append(&mut self, id: u32, ts: i64, value: f64) {
        let i = id as usize;
        if self.slot.len() <= i {
            self.slot.resize(i + 1, NONE);
        }
        let slot = match self.slot[i] {
            NONE => {
                let s = self.points.len();
                self.slot[i] = s as u32;
                self.points.push(Vec::new());
                self.ids.push(id);
                s
            }
            s => s as usize,
        };
        self.points[slot].push((ts, value));
        self.len += 1;
    }

    pub(crate) fn points(&self) -> usize {
        self.len
    }

    /// Series with points, in first-touched order.
    pub(crate) fn touched(&self) -> &[u32] {
        &self.ids
    }

    /// A series' points in arrival order (later arrivals win for a repeated timestamp).
    pub(crate) fn of(&self, id: u32) -> &[(i64, f64)] {
        match self.slot.get(id as usize) {
            Some(&s) if s != NONE => &self.points[s as usize],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Head;

    #[test]
    fn points_are_kept_per_series_in_arrival_order() {
        let mut h = Head::with_series(2);
        h.append(1, 20, 2.0);
        h.append(5, 10, 5.0);
        h.append(1, 10, 1.0);
        assert_eq!(h.of(1), &[(20, 2.0), (10, 1.0)]);
        assert_eq!(h.of(5), &[(10, 5.0)]);
        assert_eq!(h.of(0), &[]);
        assert_eq!(h.of(99), &[]);
        assert_eq!(h.touched(), &[1, 5]);
        assert_eq!(h.points(), 3);
    }
}
