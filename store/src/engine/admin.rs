//! Everything around the data path: creating and deleting series, events, small documents kept
//! for other parts (alert state), compaction, and what the store reports about itself.

use std::sync::atomic::Ordering::Relaxed;

use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use super::Store;
use crate::batch::PointBatch;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::layout;
use crate::stats::{Kind, Sample, Stats};

impl Store {
    /// The store's counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Counters plus engine gauges, for `/metrics` and `tally.store.*`.
    pub fn metrics(&self) -> Vec<Sample> {
        let gauge = |name, help, value| Sample::new(name, Kind::Gauge, help, value);
        let mut m = self.inner.stats.samples();
        m.push(gauge(
            "series",
            "Series in the index.",
            self.series_count() as u64,
        ));
        m.push(gauge(
            "head_points",
            "Points not yet flushed into chunks.",
            self.head_points() as u64,
        ));
        for (name, help, value) in super::gate::gauges(self) {
            m.push(gauge(name, help, value));
        }
        let Ok(db) = self.db() else {
            return m;
        };
        m.push(gauge(
            "rocksdb_background_errors",
            "Background errors RocksDB met since the database was last opened.",
            db.property_int_value("rocksdb.background-errors")
                .ok()
                .flatten()
                .unwrap_or(0),
        ));
        for (name, help, prop) in [
            (
                "rocksdb_sst_bytes",
                "Size of all SST files.",
                "rocksdb.total-sst-files-size",
            ),
            (
                "rocksdb_live_data_bytes",
                "Estimated live data.",
                "rocksdb.estimate-live-data-size",
            ),
            (
                "rocksdb_memtable_bytes",
                "Size of all memtables.",
                "rocksdb.cur-size-all-mem-tables",
            ),
            (
                "rocksdb_pending_compaction_bytes",
                "Estimated bytes compaction must rewrite.",
                "rocksdb.estimate-pending-compaction-bytes",
            ),
        ] {
            let mut total = 0;
            for cf in self.all_cfs() {
                if let Ok(handle) = db.cf(cf) {
                    total += db
                        .property_int_value_cf(handle, prop)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                }
            }
            m.push(gauge(name, help, total));
        }
        m
    }

    /// Creates a series with no points yet (graphite's `/tags/tagSeries`); returns its canonical
    /// name. The index entry is written (synced) before this returns.
    pub fn register(&self, raw: &str) -> Result<String> {
        let name = tally_proto::series_name::canonicalize(raw)
            .map_err(|e| Error::Pattern {
                pattern: raw.to_owned(),
                reason: e.to_string(),
            })?
            .into_owned();
        let mut batch = PointBatch::default();
        batch.push(&name, 0, 0.0);
        self.resolve(&batch);
        let db = self.writable_db()?;
        let mut wb = WriteBatch::default();
        let pending = self.take_unpersisted(&db, &mut wb)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        if let Err(e) = db.write_opt(wb, &wo) {
            self.inner.unpersisted.lock().extend(pending);
            drop(db);
            self.write_failed("registering a series", &e);
            return Err(e.into());
        }
        Ok(name)
    }

    /// Deletes a series and all its points (graphite's `/tags/delSeries`); false if there was no
    /// such series. The head is flushed first, so no log record can bring it back after a crash.
    pub fn delete_series(&self, raw: &str) -> Result<bool> {
        let name = match tally_proto::series_name::canonicalize(raw) {
            Ok(n) => n.into_owned(),
            Err(_) => return Ok(false),
        };
        let _flushing = self.inner.flush_lock.lock();
        let db = self.writable_db()?;
        self.flush_locked()?;
        let Some(id) = self.inner.index.write().remove(&name) else {
            return Ok(false);
        };
        let mut wb = WriteBatch::default();
        wb.delete_cf(db.cf(layout::CF_SERIES)?, layout::series_key(&name));
        let (start, end) = layout::series_chunk_range(id);
        for cf in self.archive_cfs() {
            wb.delete_range_cf(db.cf(cf)?, &start, &end);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        if let Err(e) = db.write_opt(wb, &wo) {
            drop(db);
            self.write_failed("deleting a series", &e);
            return Err(e.into());
        }
        Ok(true)
    }

    /// Records an event (synced); returns its id.
    pub fn add_event(&self, when: i64, what: &str, data: &str, tags: Vec<String>) -> Result<u64> {
        let id = self.inner.next_event.fetch_add(1, Relaxed);
        let event = Event {
            id,
            when,
            what: what.to_owned(),
            data: data.to_owned(),
            tags,
        };
        let value = layout::encode_event(&event)?;
        let db = self.writable_db()?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let mut wb = WriteBatch::default();
        wb.put_cf(
            db.cf(layout::CF_EVENTS)?,
            layout::event_key(when, id),
            value,
        );
        if let Err(e) = db.write_opt(wb, &wo) {
            drop(db);
            self.write_failed("recording an event", &e);
            return Err(e.into());
        }
        Ok(id)
    }

    /// Stores a small named document durably (synced), for state other parts keep in the
    /// store, such as alert states. Keys live in RocksDB's default column family under `meta/`.
    ///
    /// Small documents are taken below the free-space reserve (which leaves room for them); only
    /// a read-only database or one waiting for a reopen refuses them.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let db = self.writable_db()?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let mut wb = WriteBatch::default();
        wb.put(layout::meta_key(key), value);
        if let Err(e) = db.write_opt(wb, &wo) {
            drop(db);
            self.write_failed("storing a document", &e);
            return Err(e.into());
        }
        Ok(())
    }

    /// A document stored by [`Store::put_meta`].
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db()?.get(layout::meta_key(key))?)
    }

    /// The database for a write other than points (which pass the gate): refused while it is
    /// read-only or waits for a reopen, taken below the reserve.
    fn writable_db(&self) -> Result<std::sync::Arc<super::Db>> {
        if !self.db_writable() {
            if let Some(refusal) = self.refusal() {
                return Err(refusal.into());
            }
        }
        let db = self.db()?;
        if db.read_only {
            return Err(Error::Unavailable("the database is open read-only".into()));
        }
        Ok(db)
    }

    /// Events with `from <= when <= until`, by time.
    pub fn events(&self, from: i64, until: i64) -> Result<Vec<Event>> {
        let db = self.db()?;
        let cf = db.cf(layout::CF_EVENTS)?;
        let start = layout::event_key(from, 0);
        let mut out = Vec::new();
        for item in db.iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward)) {
            let (_, value) = item?;
            let e = layout::decode_event(&value)?;
            if e.when > until {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    /// How many chunks a series has on disk, over all its archives (for tests and debugging).
    pub fn stored_chunks(&self, name: &str) -> Result<usize> {
        let Some(id) = self.inner.index.read().get(name) else {
            return Ok(0);
        };
        let mut n = 0;
        let db = self.db()?;
        for cf in self.archive_cfs() {
            let cf = db.cf(cf)?;
            let start = layout::chunk_key(id, 0);
            for item in db.iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
            {
                let (key, _) = item?;
                if layout::chunk_key_series(&key) != Some(id) {
                    break;
                }
                n += 1;
            }
        }
        Ok(n)
    }

    /// Compacts every family, which is also what drops archive buckets past their retention
    /// (the compaction filter): the server runs it daily, benchmarks to measure bytes on disk.
    ///
    /// Skipped while writes are refused: a compaction needs room to write its output.
    pub fn compact(&self) -> Result<()> {
        if !self.accepts_writes() {
            return Ok(());
        }
        let db = self.db()?;
        if db.read_only {
            return Ok(());
        }
        for name in self.all_cfs() {
            let cf = db.cf(name)?;
            db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use crate::batch::PointBatch;
    use crate::engine::testing::open;
    use crate::engine::{unix_now, Durability};

    /// The retention compaction filter: a chunk (2 h bucket) whose end is past the 1 day of
    /// the default here goes at compaction. Such chunks come from data that aged on disk; new
    /// points that old are refused, so the test lets one in as old data is.
    #[test]
    fn compaction_drops_chunks_past_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        store.inner.accept_any_age.store(true, Relaxed);
        let (old, fresh) = (unix_now() - 3 * 86_400, unix_now() - 60);
        let mut batch = PointBatch::default();
        batch.push("expiring", old, 1.0);
        batch.push("expiring", fresh, 2.0);
        store.write(&batch, Durability::Sync).expect("write");
        store.flush().expect("flush");
        assert_eq!(store.stored_chunks("expiring").expect("count"), 2);
        store.compact().expect("compact");
        assert_eq!(
            store.stored_chunks("expiring").expect("count"),
            1,
            "the old bucket is dropped"
        );
        let read = store
            .read("expiring", fresh - 10, fresh, None)
            .expect("read")
            .expect("exists");
        assert_eq!(read.values, [Some(2.0)]);
    }

    /// Before compaction, a read does not show what is past its archive's retention: slots a
    /// step either side of the edge, over a read that starts long before it.
    #[test]
    fn reads_hide_points_past_retention_before_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        store.inner.accept_any_age.store(true, Relaxed);
        let now = unix_now();
        let edge = now - 86_400;
        let mut batch = PointBatch::default();
        for t in [edge - 3_600, edge - 20, edge + 30, now - 60] {
            batch.push("edge", t, 1.0);
        }
        store.write(&batch, Durability::Sync).expect("write");
        for flushed in [false, true] {
            if flushed {
                store.flush().expect("flush");
            }
            let read = store
                .read("edge", edge - 7_200, now, None)
                .expect("read")
                .expect("exists");
            let held: Vec<i64> = (0..read.values.len())
                .filter(|&i| read.values[i].is_some())
                .map(|i| read.start + i as i64 * i64::from(read.step))
                .collect();
            let floor = |t: i64| t - t.rem_euclid(10);
            assert_eq!(
                held,
                [floor(edge + 30), floor(now - 60)],
                "flushed: {flushed}"
            );
        }
    }
}
