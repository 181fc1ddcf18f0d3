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
        let db = &self.inner.db;
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
                if let Ok(handle) = self.cf(cf) {
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
        let mut wb = WriteBatch::default();
        let pending = self.take_unpersisted(&mut wb)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        if let Err(e) = self.inner.db.write_opt(wb, &wo) {
            self.inner.unpersisted.lock().extend(pending);
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
        self.flush_locked()?;
        let Some(id) = self.inner.index.write().remove(&name) else {
            return Ok(false);
        };
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(layout::CF_SERIES)?, layout::series_key(&name));
        let (start, end) = layout::series_chunk_range(id);
        for cf in self.archive_cfs() {
            wb.delete_range_cf(self.cf(cf)?, &start, &end);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.inner.db.write_opt(wb, &wo)?;
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
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let mut wb = WriteBatch::default();
        wb.put_cf(
            self.cf(layout::CF_EVENTS)?,
            layout::event_key(when, id),
            value,
        );
        self.inner.db.write_opt(wb, &wo)?;
        Ok(id)
    }

    /// Stores a small named document durably (synced), for state other parts keep in the
    /// store, such as alert states. Keys live in RocksDB's default column family under `meta/`.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let mut wb = WriteBatch::default();
        wb.put(layout::meta_key(key), value);
        self.inner.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// A document stored by [`Store::put_meta`].
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.db.get(layout::meta_key(key))?)
    }

    /// Events with `from <= when <= until`, by time.
    pub fn events(&self, from: i64, until: i64) -> Result<Vec<Event>> {
        let cf = self.cf(layout::CF_EVENTS)?;
        let start = layout::event_key(from, 0);
        let mut out = Vec::new();
        for item in self
            .inner
            .db
            .iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
        {
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
        for cf in self.archive_cfs() {
            let cf = self.cf(cf)?;
            let start = layout::chunk_key(id, 0);
            for item in self
                .inner
                .db
                .iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
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
    pub fn compact(&self) -> Result<()> {
        for name in self.all_cfs() {
            let cf = self.cf(name)?;
            self.inner
                .db
                .compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}
