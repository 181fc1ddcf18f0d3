//! Reads: one series over a range, at the resolution the range needs, with the head's points
//! that are not flushed yet; and lookups in the index (globs, tags).
//!
//! A read picks the finest archive that still covers `from` (as whisper does) and answers on
//! that archive's grid, `(from, until]`. Stored chunks and head points are combined so that a
//! point is readable from the moment its write returns: on the finest archive head points
//! override stored ones; on a coarser one the slots head points touch are rolled up from the
//! finest archive on the fly, exactly as the next flush will store them.

use rocksdb::IteratorMode;
use tracing::warn;

use super::{unix_now, Db, Store};
use crate::chunk::{self, Points};
use crate::error::{Error, Result};
use crate::index::FindMatch;
use crate::layout::{self, SeriesEntry};
use crate::retention::{Aggregate, Archive};
use crate::rollup::{floor, reduce, rollup, ROLLUP_COLS};
use crate::stats::Stats;
use crate::tag_expr::TagExpr;

/// One series read over a range at one step: `values[i]` is at `start + i * step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub start: i64,
    pub step: u32,
    pub values: Vec<Option<f64>>,
    /// `Some(k)` when every held value is an integer divided by 10^k, correctly rounded (as
    /// stored decimal chunks decode): what a writer of decimals need not
    /// check again. `None` promises nothing.
    pub places: Option<u32>,
}

/// The archive a read starting `age` seconds ago uses: the finest that still covers it.
fn archive_for(archives: &[Archive], age: i64) -> usize {
    archives
        .iter()
        .position(|a| a.retention_secs as i64 >= age)
        .unwrap_or(archives.len().saturating_sub(1))
}

/// The slots of `(from, until]` at `step`: the first and last slot times and their number.
fn grid(step: i64, from: i64, until: i64) -> (i64, i64, usize) {
    let (from, until) = (from.min(until), from.max(until));
    let first = floor(from, step) + step;
    let last = floor(until, step);
    let n = if last >= first {
        ((last - first) / step + 1) as usize
    } else {
        0
    };
    (first, last, n)
}

impl Store {
    /// Stored points of one series and archive with `lo <= ts <= hi`, merged and sorted.
    pub(super) fn read_chunks(&self, id: u32, a: &Archive, lo: i64, hi: i64) -> Result<Points> {
        let db = self.db()?;
        self.read_chunks_in(&db, id, a, lo, hi)
    }

    /// [`Store::read_chunks`] in a database handle the caller holds.
    pub(super) fn read_chunks_in(
        &self,
        db: &Db,
        id: u32,
        a: &Archive,
        lo: i64,
        hi: i64,
    ) -> Result<Points> {
        let mut out: Option<Points> = None;
        self.for_each_chunk_in(db, id, a, lo, hi, |p, _| {
            let acc = out.get_or_insert_with(|| Points::new(p.cols.len()));
            // A chunk wholly inside the range (most of a long read) goes in whole: moved when
            // it is the first, appended column by column after that.
            let inside =
                p.ts.first().is_some_and(|t| *t >= lo) && p.ts.last().is_some_and(|t| *t <= hi);
            if inside && p.cols.len() == acc.cols.len() {
                if acc.ts.is_empty() {
                    *acc = p;
                } else {
                    acc.ts.extend_from_slice(&p.ts);
                    for (col, add) in acc.cols.iter_mut().zip(&p.cols) {
                        col.extend_from_slice(add);
                    }
                }
                return;
            }
            for (i, &t) in p.ts.iter().enumerate() {
                if (lo..=hi).contains(&t) && p.cols.len() == acc.cols.len() {
                    acc.ts.push(t);
                    for (c, col) in acc.cols.iter_mut().enumerate() {
                        col.push(p.cols[c][i]);
                    }
                }
            }
        })?;
        Ok(out.unwrap_or_else(|| Points::new(1)))
    }

    /// Each stored chunk of one series and archive that may hold points in `lo..=hi`, decoded,
    /// in time order (a chunk that does not decode is counted, logged and skipped). For reads
    /// that fold chunks into something else (a grid) without first joining them. Each comes with
    /// its columns' decimal places.
    fn for_each_chunk_in(
        &self,
        db: &Db,
        id: u32,
        a: &Archive,
        lo: i64,
        hi: i64,
        mut f: impl FnMut(Points, chunk::Scaled),
    ) -> Result<()> {
        let cf = db.cf(&layout::archive_cf(a))?;
        let bucket = i64::from(a.bucket_secs());
        let start = layout::chunk_key(id, floor(lo, bucket));
        let end = layout::chunk_key(id, floor(hi, bucket));
        for item in db.iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward)) {
            let (key, value) = item?;
            if *key > end[..] {
                break;
            }
            match chunk::decode_scaled(&value) {
                Ok((p, places)) => f(p, places),
                Err(e) => {
                    Stats::add(&self.inner.stats.corrupt_chunks, 1);
                    warn!(series = id, error = %e, "skipping a chunk that does not decode");
                }
            }
        }
        Ok(())
    }

    /// Head points of a series (frozen first, then active), in write order.
    fn head_points_of(&self, id: u32) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        if let Some(frozen) = self.inner.frozen.read().as_ref() {
            out.extend_from_slice(frozen.of(id));
        }
        out.extend_from_slice(self.inner.head.lock().of(id));
        out
    }

    /// Reads a series over `(from, until]` from the finest archive that still covers `from`
    /// (as whisper does), reduced with `aggregate` (default: the series' own) when coarser.
    pub fn read(
        &self,
        name: &str,
        from: i64,
        until: i64,
        aggregate: Option<Aggregate>,
    ) -> Result<Option<Series>> {
        let now = unix_now();
        let Some(SeriesEntry { id, set }) = self.lookup(name) else {
            return Ok(None);
        };
        let archives = set.archives;
        let i = archive_for(&archives, now - from);
        let agg = aggregate.unwrap_or(set.aggregate);
        self.read_series(id, name, &archives, i, from, until, agg, now)
            .map(Some)
    }

    /// How many points [`Store::read`] would return for `name` over `(from, until]`, without
    /// reading them (`None` for an unknown series): what a caller counts against its limits
    /// before it reads.
    pub fn points_in_range(&self, name: &str, from: i64, until: i64) -> Option<usize> {
        let SeriesEntry { set, .. } = self.lookup(name)?;
        let a = set
            .archives
            .get(archive_for(&set.archives, unix_now() - from))?;
        Some(grid(i64::from(a.step_secs), from, until).2)
    }

    /// A series' id and archive set, looked up once per read.
    pub(super) fn lookup(&self, name: &str) -> Option<SeriesEntry> {
        let ix = self.inner.index.read();
        ix.get(name).map(|id| SeriesEntry {
            id,
            set: ix.archive_set(id).clone(),
        })
    }

    /// Reads one archive of a series over `(from, until]`.
    pub fn read_archive(
        &self,
        name: &str,
        archive: usize,
        from: i64,
        until: i64,
        aggregate: Aggregate,
        now: i64,
    ) -> Result<Series> {
        let SeriesEntry { id, set } = self
            .lookup(name)
            .ok_or_else(|| Error::UnknownSeries(name.to_owned()))?;
        self.read_series(
            id,
            name,
            &set.archives,
            archive,
            from,
            until,
            aggregate,
            now,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn read_series(
        &self,
        id: u32,
        name: &str,
        archives: &[Archive],
        archive: usize,
        from: i64,
        until: i64,
        aggregate: Aggregate,
        now: i64,
    ) -> Result<Series> {
        let a = *archives
            .get(archive)
            .ok_or_else(|| Error::UnknownSeries(name.to_owned()))?;
        let step = i64::from(a.step_secs);
        let (first, last, n) = grid(step, from, until);
        if n > self.inner.max_points_per_read {
            return Err(Error::Pattern {
                pattern: name.to_owned(),
                reason: format!(
                    "{n} points at {step}s exceeds the limit of {} per series",
                    self.inner.max_points_per_read
                ),
            });
        }
        let mut values = vec![None; n];
        let mut series = Series {
            name: name.to_owned(),
            start: first,
            step: a.step_secs,
            values: Vec::new(),
            places: None,
        };
        if n == 0 {
            return Ok(series);
        }
        let slot = |t: i64| -> Option<usize> {
            (t >= first && t <= last).then(|| ((t - first) / step) as usize)
        };
        let head = self.head_points_of(id);
        let finest = archives[0];
        let fstep = i64::from(finest.step_secs);
        if archive == 0 {
            // Chunk by chunk straight into the grid, never joined first (joining was a tenth of
            // a wide read). Stored points are mostly one step apart: their slot is the last
            // one's plus one, without the division `slot` makes (a fifth of a wide read's time).
            let db = self.db()?;
            let mut prev: Option<(i64, usize)> = None;
            // The most decimal places of any chunk read (finer places hold coarser values).
            let mut places = Some(0);
            self.for_each_chunk_in(&db, id, &a, first, last, |p, k| {
                // A raw archive's chunks have one column; anything else is not read as one.
                let [col] = p.cols.as_slice() else { return };
                places = places
                    .zip(k.first().copied().flatten())
                    .map(|(a, b)| a.max(b));
                for (&t, &v) in p.ts.iter().zip(col) {
                    let s = match prev {
                        Some((pt, ps)) if t == pt + step && t <= last => Some(ps + 1),
                        _ => slot(t),
                    };
                    if let Some(s) = s {
                        values[s] = Some(v);
                        prev = Some((t, s));
                    }
                }
            })?;
            drop(db);
            // The same for head points, in write order, mostly a step apart: two divisions a
            // point (`floor`, `slot`) were two thirds of reading a fresh series.
            let mut prev: Option<(i64, usize)> = None;
            for &(t, v) in &head {
                let s = match prev {
                    // Slot `ps` is the step-aligned time `first + ps * step`, so the next one is
                    // in the grid while it is below `n`.
                    Some((pt, ps)) if t == pt + step && ps + 1 < n => Some(ps + 1),
                    _ => slot(floor(t, step)),
                };
                if let Some(s) = s {
                    values[s] = Some(v);
                    prev = Some((t, s));
                    // Head points were never through a chunk: each is checked (they are few).
                    places = places.and_then(|k| chunk::decimal_places(v, k));
                }
            }
            series.places = places;
        } else {
            let stored = self.read_chunks(id, &a, first, last)?;
            for (i, &t) in stored.ts.iter().enumerate() {
                if let (Some(s), true) = (slot(t), stored.cols.len() == ROLLUP_COLS) {
                    let row: Vec<f64> = stored.cols.iter().map(|c| c[i]).collect();
                    values[s] = reduce(&row, aggregate);
                }
            }
            // Slots that head points touch are not rolled up yet: compute them from raw.
            if let Some(lo) = head.iter().map(|p| floor(p.0, step)).min() {
                let lo = lo.max(first);
                if lo <= last {
                    let mut raw = self.read_chunks(id, &finest, lo, last + step - 1)?;
                    let extra = Points {
                        ts: head.iter().map(|p| floor(p.0, fstep)).collect(),
                        cols: vec![head.iter().map(|p| p.1).collect()],
                    };
                    raw = chunk::merge_sorted(1, [raw, extra]);
                    let slots: Vec<i64> = (0..)
                        .map(|k| lo + k * step)
                        .take_while(|&t| t <= last)
                        .collect();
                    let rows = rollup(&raw, &slots, step);
                    for s in slots.iter().filter_map(|&t| slot(t)) {
                        values[s] = None;
                    }
                    for (i, &t) in rows.ts.iter().enumerate() {
                        if let Some(s) = slot(t) {
                            let row: Vec<f64> = rows.cols.iter().map(|c| c[i]).collect();
                            values[s] = reduce(&row, aggregate);
                        }
                    }
                }
            }
        }
        // Past the archive's retention nothing is promised: do not show what compaction has not
        // dropped yet.
        // Those are the slots `i` with `first + i * step <= oldest`: a prefix, cleared at once
        // (slot by slot, a multiplication each, it was a sixth of a long read).
        let oldest = now - a.retention_secs as i64;
        if oldest >= first {
            let past = ((oldest - first) / step).saturating_add(1);
            let past = usize::try_from(past).map_or(values.len(), |p| p.min(values.len()));
            values[..past].fill(None);
        }
        series.values = values;
        Ok(series)
    }

    /// `/metrics/find`: nodes matching a glob.
    pub fn find(&self, pattern: &str) -> Result<Vec<FindMatch>> {
        self.inner.index.read().find(pattern)
    }

    /// Series paths matching a glob, sorted.
    pub fn expand(&self, pattern: &str) -> Result<Vec<String>> {
        self.inner.index.read().expand(pattern)
    }

    /// Tagged series matching `seriesByTag` expressions, sorted.
    pub fn select_by_tags(&self, exprs: &[&str]) -> Result<Vec<String>> {
        let parsed: Vec<TagExpr> = exprs
            .iter()
            .map(|e| TagExpr::parse(e))
            .collect::<Result<_>>()?;
        self.inner.index.read().select(&parsed)
    }

    pub fn tag_names(&self) -> Vec<String> {
        self.inner.index.read().tag_names()
    }

    pub fn tag_values(&self, tag: &str) -> Vec<crate::TagValue> {
        self.inner.index.read().tag_values(tag)
    }

    pub fn series_count(&self) -> usize {
        self.inner.index.read().len()
    }
}
