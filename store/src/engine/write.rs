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
