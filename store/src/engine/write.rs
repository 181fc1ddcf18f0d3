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
use std::time::Instant;

use rocksdb::{WriteBatch, WriteOptions};

use super::Store;
use crate::batch::PointBatch;
use crate::error::Result;
use crate::layout;
use crate::stats::Stats;

/// How a write must be made durable before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the synced WAL before returning: for acknowledged batches.
    Sync,
    /// In the WAL, synced by the timer: plain TCP/UDP plaintext.
    Buffered,
}

impl Store {
    /// Writes a batch: durable as `durability` says when this returns, readable right after.
    pub fn write(&self, batch: &PointBatch, durability: Durability) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let ids = self.resolve(batch);
        let record = layout::encode_log_record(batch);
        let seq = self.inner.next_log.fetch_add(1, Relaxed);
        let mut wb = WriteBatch::default();
        let pending = self.take_unpersisted(&mut wb)?;
        wb.put_cf(self.cf(layout::CF_LOG)?, layout::log_key(seq), &record);
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Sync);
        if let Err(e) = self.inner.db.write_opt(wb, &wo) {
            self.inner.unpersisted.lock().extend(pending);
            Stats::add(&self.inner.stats.write_errors, 1);
            return Err(e.into());
        }
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
        Ok(batch.len())
    }

    /// Syncs the WAL: bounds what buffered (plain TCP) writes can lose.
    pub(crate) fn sync_wal(&self) -> Result<()> {
        self.inner.db.flush_wal(true)?;
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
    pub(super) fn take_unpersisted(&self, wb: &mut WriteBatch) -> Result<Vec<u32>> {
        let pending = std::mem::take(&mut *self.inner.unpersisted.lock());
        if pending.is_empty() {
            return Ok(pending);
        }
        let cf = self.cf(layout::CF_SERIES)?;
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
        let points = [
            ("rolled.a", 1_700_000_000, 1.0),
            ("plain.b", 1_700_000_000, 2.0),
            ("rolled.a", 1_700_000_010, 3.0),
        ];
        assert_eq!(
            store
                .write(&batch(&points), Durability::Sync)
                .expect("write"),
            3
        );
        assert_eq!(store.head_points(), 3);
        assert_eq!(log_records(&store), 1);

        let db = &store.inner.db;
        let log = store.cf(layout::CF_LOG).expect("log");
        let (key, record) = db
            .iterator_cf(log, IteratorMode::Start)
            .next()
            .expect("a record")
            .expect("readable");
        assert_eq!(layout::parse_log_key(&key).expect("a log key"), 0);
        let mut back = PointBatch::default();
        layout::decode_log_record(&record, &mut back);
        assert_eq!(back.iter().collect::<Vec<_>>(), points);

        let series = store.cf(layout::CF_SERIES).expect("series");
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
            0
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
        let b = batch(&[("x", 1_700_000_000, 1.0), ("x", 1_700_000_010, 1.0)]);
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
