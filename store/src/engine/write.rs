//! The write path: a batch of points becomes one `log` record and then head points.
//!
//! Names are resolved to series ids first (creating series, whose index entries go into the same
//! RocksDB write as the record). The record holds the points as Graphite plaintext with absolute
//! timestamps, so that replaying it needs nothing but the record. Only once RocksDB has taken the
//! write (synced, for [`Durability::Sync`]) do the points enter the head and become readable; a
//! failed write leaves no trace but the series it created, whose entries are retried with the
//! next write. One RocksDB write per batch rather than per point is what lets a single node take
//! millions of points a second.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocksdb::{WriteBatch, WriteOptions};
use tally_proto::batch::MAX_REPORTED_ERRORS;
use tracing::warn;

use super::Store;
use crate::batch::PointBatch;
use crate::error::Result;
use crate::layout;
use crate::retention::{retentions_text, span_text};
use crate::stats::Stats;

/// How a write must be made durable before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the synced WAL before returning: for acknowledged batches.
    Sync,
    /// In the WAL, synced by the timer: plain TCP/UDP plaintext.
    Buffered,
}

/// What a write did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Points written, durable as asked.
    pub points: usize,
    /// Points refused because they are older than the longest retention of their series: no
    /// read could ever return them.
    pub outside_retention: usize,
    /// Why, for the first few of those: the point and the retention it is outside of.
    pub reasons: Vec<String>,
}

/// The warning about points outside every retention, at most once per period.
#[derive(Debug, Default)]
pub(super) struct OldPointsLog(Mutex<(Option<Instant>, u64)>);

impl OldPointsLog {
    const PERIOD: Duration = Duration::from_secs(10);

    fn warn(&self, refused: usize, example: &str) {
        let mut s = self.0.lock();
        let now = Instant::now();
        if s.0
            .is_some_and(|last| now.duration_since(last) < Self::PERIOD)
        {
            s.1 += refused as u64;
            return;
        }
        let suppressed = std::mem::take(&mut s.1);
        s.0 = Some(now);
        drop(s);
        warn!(
            refused,
            suppressed, example, "points outside every retention refused"
        );
    }
}

impl Store {
    /// Writes a batch: durable as `durability` says when this returns, readable right after.
    ///
    /// Points older than every archive of their series keeps are refused (counted and
    /// explained in [`Written`], never written). While writes are refused (low disk space, a
    /// failed write, a read-only database) this returns [`crate::Error::WritesRefused`] and
    /// writes nothing.
    pub fn write(&self, batch: &PointBatch, durability: Durability) -> Result<Written> {
        if batch.is_empty() {
            return Ok(Written::default());
        }
        if let Err(refusal) = self.inner.gate.admit() {
            let s = &self.inner.stats;
            Stats::add(&s.write_refusals, 1);
            Stats::add(&s.points_refused, batch.len() as u64);
            return Err(refusal.into());
        }
        let started = Instant::now();
        let mut written = Written::default();
        let kept;
        let batch = match self.outside_retention(batch, &mut written) {
            None => batch,
            Some(within) => {
                kept = within;
                &kept
            }
        };
        written.points = batch.len();
        if batch.is_empty() {
            return Ok(written);
        }
        let ids = self.resolve(batch);
        let record = layout::encode_log_record(batch);
        let seq = self.inner.next_log.fetch_add(1, Relaxed);
        let db = self.db()?;
        let mut wb = WriteBatch::default();
        let pending = self.take_unpersisted(&db, &mut wb)?;
        wb.put_cf(db.cf(layout::CF_LOG)?, layout::log_key(seq), &record);
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Sync);
        if let Err(e) = db.write_opt(wb, &wo) {
            self.inner.unpersisted.lock().extend(pending);
            drop(db);
            self.write_failed("a write of points", &e);
            return Err(e.into());
        }
        drop(db);
        self.inner.gate.spend(record.len() as u64);
        let need_flush = {
            let mut head = self.inner.head.lock();
            for (&id, (_, ts, value)) in ids.iter().zip(batch.iter()) {
                head.append(id, ts, value);
            }
            head.log_keys.push(seq);
            head.points() >= self.inner.max_head_points
        };
        let s = &self.inner.stats;
        Stats::add(&s.points_written, batch.len() as u64);
        Stats::add(&s.writes, 1);
        Stats::add(
            &s.write_seconds_micros,
            started.elapsed().as_micros() as u64,
        );
        if need_flush {
            self.request_flush();
        }
        Ok(written)
    }

    /// The points of `batch` some archive of their series keeps, if any point is outside
    /// every retention (`None`: all are within, the common case, checked without a look-up
    /// for any point younger than the shortest longest retention). The refused ones are
    /// counted and explained in `written`.
    fn outside_retention(&self, batch: &PointBatch, written: &mut Written) -> Option<PointBatch> {
        #[cfg(test)]
        if self.inner.accept_any_age.load(Relaxed) {
            return None;
        }
        let now = super::unix_now();
        let surely_kept = now.saturating_sub(self.inner.keep_at_least_secs);
        if batch.iter().all(|(_, ts, _)| ts >= surely_kept) {
            return None;
        }
        let mut within = PointBatch::default();
        let ix = self.inner.index.read();
        for (name, ts, value) in batch.iter() {
            if ts >= surely_kept {
                within.push(name, ts, value);
                continue;
            }
            let set = match ix.get(name) {
                Some(id) => ix.archive_set(id).clone(),
                None => self.inner.schemas.for_name(name),
            };
            let keep = set.archives.last().map_or(0, |a| a.retention_secs);
            if now.saturating_sub(ts) as u64 <= keep {
                within.push(name, ts, value);
                continue;
            }
            written.outside_retention += 1;
            if written.reasons.len() < MAX_REPORTED_ERRORS {
                written.reasons.push(format!(
                    "point \"{name}\" at {ts} is older than the {} its series keeps \
                     (retentions {})",
                    span_text(keep),
                    retentions_text(&set.archives)
                ));
            }
        }
        drop(ix);
        Stats::add(
            &self.inner.stats.points_outside_retention,
            written.outside_retention as u64,
        );
        if let Some(first) = written.reasons.first() {
            self.inner
                .old_points_log
                .warn(written.outside_retention, first);
        }
        Some(within)
    }

    /// Syncs the WAL: bounds what buffered (plain TCP) writes can lose. Nothing to do while
    /// the database is read-only or waits for a reopen (which replays the WAL).
    pub(crate) fn sync_wal(&self) -> Result<()> {
        if !self.db_writable() {
            return Ok(());
        }
        let db = self.db()?;
        if db.read_only {
            return Ok(());
        }
        if let Err(e) = db.flush_wal(true) {
            drop(db);
            self.write_failed("syncing the WAL", &e);
            return Err(e.into());
        }
        Ok(())
    }

    /// Resolves names to ids, creating new series; returns the ids in batch order. New series
    /// are readable at once; their index entries wait in `unpersisted` for the next write.
    pub(super) fn resolve(&self, batch: &PointBatch) -> Vec<u32> {
        let mut ids = Vec::with_capacity(batch.len());
        let mut missing = false;
        {
            let ix = self.inner.index.read();
            for (name, _, _) in batch.iter() {
                let id = ix.get(name);
                missing |= id.is_none();
                ids.push(id.unwrap_or(u32::MAX));
            }
        }
        if missing {
            let mut ix = self.inner.index.write();
            let mut created = Vec::new();
            for (slot, (name, _, _)) in ids.iter_mut().zip(batch.iter()) {
                if *slot != u32::MAX {
                    continue;
                }
                *slot = match ix.get(name) {
                    Some(id) => id,
                    None => {
                        let id = ix.insert(name, self.inner.schemas.for_name(name));
                        created.push(id);
                        id
                    }
                };
            }
            Stats::add(&self.inner.stats.series_created, created.len() as u64);
            self.inner.unpersisted.lock().extend(created);
        }
        ids
    }

    /// Moves not-yet-persisted index entries into `wb`; returns them to put back on failure.
    pub(super) fn take_unpersisted(&self, db: &super::Db, wb: &mut WriteBatch) -> Result<Vec<u32>> {
        let pending = std::mem::take(&mut *self.inner.unpersisted.lock());
        if pending.is_empty() {
            return Ok(pending);
        }
        let cf = match db.cf(layout::CF_SERIES) {
            Ok(cf) => cf,
            Err(e) => {
                self.inner.unpersisted.lock().extend(pending);
                return Err(e);
            }
        };
        let ix = self.inner.index.read();
        for &id in &pending {
            let name = ix.name(id);
            let entry = layout::SeriesEntry {
                id,
                set: ix.archive_set(id).clone(),
            };
            wb.put_cf(cf, layout::series_key(name), entry.encode());
        }
        Ok(pending)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rocksdb::IteratorMode;

    use super::*;
    use crate::engine::testing::{log_records, open, options};
    use crate::layout::SeriesEntry;

    fn batch(points: &[(&str, i64, f64)]) -> PointBatch {
        let mut b = PointBatch::default();
        for &(name, ts, value) in points {
            b.push(name, ts, value);
        }
        b
    }

    /// One RocksDB write per batch: one log record holding every point, and the index entries
    /// of the series it created; the points are in the head at once.
    #[test]
    fn a_batch_is_one_log_record_with_the_entries_of_its_new_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let t0 = crate::engine::unix_now() - 600;
        let points = [
            ("rolled.a", t0, 1.0),
            ("plain.b", t0, 2.0),
            ("rolled.a", t0 + 10, 3.0),
        ];
        assert_eq!(
            store
                .write(&batch(&points), Durability::Sync)
                .expect("write")
                .points,
            3
        );
        assert_eq!(store.head_points(), 3);
        assert_eq!(log_records(&store), 1);

        let db = store.db().expect("open");
        let log = db.cf(layout::CF_LOG).expect("log");
        let (key, record) = db
            .iterator_cf(log, IteratorMode::Start)
            .next()
            .expect("a record")
            .expect("readable");
        assert_eq!(layout::parse_log_key(&key).expect("a log key"), 0);
        let mut back = PointBatch::default();
        layout::decode_log_record(&record, &mut back);
        assert_eq!(back.iter().collect::<Vec<_>>(), points);

        let series = db.cf(layout::CF_SERIES).expect("series");
        let entry = |name: &str| {
            let value = db
                .get_cf(series, layout::series_key(name))
                .expect("readable")
                .expect("an entry");
            SeriesEntry::decode(&value).expect("decodes")
        };
        let schemas = options(dir.path()).schemas;
        assert_eq!(entry("rolled.a").id, 0);
        assert_eq!(entry("rolled.a").set, schemas.for_name("rolled.a"));
        assert_eq!(entry("plain.b").id, 1);
        assert_eq!(entry("plain.b").set.archives.len(), 1);
    }

    #[test]
    fn an_empty_batch_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        assert_eq!(
            store
                .write(&PointBatch::default(), Durability::Sync)
                .expect("write"),
            Written::default()
        );
        assert_eq!((log_records(&store), store.series_count()), (0, 0));
    }

    /// A head past `max_head_points` asks the flusher for a flush rather than waiting for the
    /// timer.
    #[test]
    fn a_full_head_asks_for_a_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = options(dir.path());
        opts.max_head_points = 3;
        let store = Store::open(opts).expect("open");
        let t0 = crate::engine::unix_now() - 600;
        let b = batch(&[("x", t0, 1.0), ("x", t0 + 10, 1.0)]);
        store.write(&b, Durability::Buffered).expect("write");
        assert!(!store.wait_flush_request(Duration::ZERO), "2 of 3 points");
        store.write(&b, Durability::Buffered).expect("write");
        assert!(store.wait_flush_request(Duration::ZERO), "4 of 3 points");
        assert!(
            !store.wait_flush_request(Duration::ZERO),
            "a request is taken once"
        );
    }
}
