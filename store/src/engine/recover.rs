//! Opening a store: the index loaded from the `series` family, then every log record still
//! present replayed into the head and flushed, with progress for the page served meanwhile.
//!
//! A log record is deleted only by the flush that moved its points into chunks, so the records
//! present at open are exactly the points that may be missing from the chunks: the tail written
//! since the last flush, and those of a flush that was interrupted. Replaying them is always safe
//! because a flush is idempotent (see `flush.rs`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rocksdb::IteratorMode;
use tracing::info;

use super::Store;
use crate::batch::PointBatch;
use crate::error::{Error, Result};
use crate::layout;

/// Progress of the recovery a store does while it opens: log records replayed of the total.
#[derive(Debug, Default)]
pub struct Recovery {
    pub(crate) done: AtomicU64,
    pub(crate) total: AtomicU64,
    pub(crate) elapsed_ms: AtomicU64,
}

/// Where a recovery stands, read once from a [`Recovery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryProgress {
    /// Log records replayed.
    pub done: u64,
    /// Log records to replay.
    pub total: u64,
    /// Seconds left at the pace so far; `None` until something is done.
    pub eta_secs: Option<u64>,
}

impl Recovery {
    /// The progress so far.
    pub fn snapshot(&self) -> RecoveryProgress {
        let done = self.done.load(Relaxed);
        let total = self.total.load(Relaxed);
        let ms = self.elapsed_ms.load(Relaxed);
        let eta_secs = (done > 0 && total >= done).then(|| ms * (total - done) / done / 1000);
        RecoveryProgress {
            done,
            total,
            eta_secs,
        }
    }
}

impl Store {
    /// Rebuilds the in-memory index from the `series` family.
    pub(super) fn load_index(&self) -> Result<()> {
        let started = Instant::now();
        let db = self.db()?;
        let cf = db.cf(layout::CF_SERIES)?;
        let mut ix = self.inner.index.write();
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item?;
            let Some(name) = layout::series_key_name(&key) else {
                continue;
            };
            let name = name?;
            let entry = layout::SeriesEntry::decode(&value)
                .ok_or_else(|| Error::Corrupt(format!("index entry of \"{name}\"")))?;
            ix.restore(entry.id, name, entry.set)?;
        }
        info!(
            series = ix.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index loaded"
        );
        Ok(())
    }

    /// Puts every log record still present back into the head, then flushes: these are the
    /// points that were written but not yet flushed into chunks when the process stopped.
    pub(super) fn replay_log(&self, progress: Option<&Recovery>) -> Result<()> {
        let started = Instant::now();
        let db = self.db()?;
        let cf = db.cf(layout::CF_LOG)?;
        let (mut records, mut points, mut next) = (0u64, 0u64, 0u64);
        let mut batch = PointBatch::default();
        let mut keys = Vec::new();
        // Records are numbered in order and deleted in order once flushed, so the first and last
        // numbers bound how many remain: enough for progress and an ETA on a long recovery.
        let first = match db.iterator_cf(cf, IteratorMode::Start).next() {
            Some(item) => layout::parse_log_key(&item?.0)?,
            None => 0,
        };
        let last = match db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => layout::parse_log_key(&item?.0)?,
            None => 0,
        };
        let total = (last + 1).saturating_sub(first).max(1);
        if let Some(p) = progress {
            p.total.store(total, Relaxed);
        }
        let mut reported = Instant::now();
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item?;
            let seq = layout::parse_log_key(&key)?;
            next = next.max(seq + 1);
            if let Some(p) = progress {
                p.done
                    .store((seq + 1).saturating_sub(first).min(total), Relaxed);
                p.elapsed_ms
                    .store(started.elapsed().as_millis() as u64, Relaxed);
            }
            if reported.elapsed() >= Duration::from_secs(2) {
                reported = Instant::now();
                let done = (seq + 1).saturating_sub(first).min(total);
                let secs = started.elapsed().as_secs_f64();
                let eta = secs / done.max(1) as f64 * (total - done) as f64;
                info!(
                    done,
                    total,
                    percent = done * 100 / total,
                    eta_secs = eta.round() as u64,
                    "recovering: replaying unflushed log records"
                );
            }
            layout::decode_log_record(&value, &mut batch);
            keys.push(seq);
            records += 1;
            if batch.len() >= 1_000_000 {
                points += batch.len() as u64;
                self.apply_to_head(&batch, std::mem::take(&mut keys));
                batch.clear();
            }
        }
        points += batch.len() as u64;
        self.apply_to_head(&batch, keys);
        drop(db);
        self.inner.next_log.store(next, Relaxed);
        if records > 0 {
            info!(
                records,
                points,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "replayed unflushed log records"
            );
            // A flush that fails here (a full disk) leaves the points readable in the head and
            // their records in the log; the store opens with writes refused rather than not at
            // all, and the flush is retried once the database is reopened.
            if let Err(e) = self.flush() {
                if !matches!(e, Error::Rocks(_)) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Replay: points go to the head under their existing log keys (no new log record).
    fn apply_to_head(&self, batch: &PointBatch, keys: Vec<u64>) {
        let ids = self.resolve(batch);
        let mut head = self.inner.head.lock();
        for (&id, (_, ts, value)) in ids.iter().zip(batch.iter()) {
            head.append(id, ts, value);
        }
        head.log_keys.extend(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{log_records, open, options};
    use crate::engine::Durability;

    fn write(store: &Store, name: &str, ts: i64, value: f64) {
        let mut b = PointBatch::default();
        b.push(name, ts, value);
        store.write(&b, Durability::Sync).expect("write");
    }

    #[test]
    fn progress_has_an_eta_once_something_is_done() {
        let p = Recovery::default();
        p.total.store(1000, Relaxed);
        assert_eq!(p.snapshot().eta_secs, None);
        p.done.store(250, Relaxed);
        p.elapsed_ms.store(10_000, Relaxed);
        assert_eq!(
            p.snapshot(),
            RecoveryProgress {
                done: 250,
                total: 1000,
                eta_secs: Some(30)
            }
        );
    }

    /// Every record left is replayed and flushed at open, progress says so, and the log
    /// numbering continues after the last record (a reused number would overwrite a record).
    #[test]
    fn replay_reports_its_progress_and_the_log_numbering_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = crate::engine::unix_now() - 600;
        {
            let store = open(dir.path());
            for i in 0..3 {
                write(&store, "replayed", t0 + i * 10, i as f64);
            }
            // Dropped without a flush: three records to replay.
        }
        let progress = std::sync::Arc::new(Recovery::default());
        let mut opts = options(dir.path());
        opts.progress = Some(progress.clone());
        let store = Store::open(opts).expect("reopen");
        let p = progress.snapshot();
        assert_eq!((p.done, p.total), (3, 3));
        assert_eq!((store.head_points(), log_records(&store)), (0, 0));
        assert_eq!(store.inner.next_log.load(Relaxed), 3);
        let read = store
            .read("replayed", t0 - 10, t0 + 20, None)
            .expect("read")
            .expect("exists");
        assert_eq!(read.values.iter().flatten().count(), 3);
    }

    /// An index entry that does not decode stops the open, naming the series: a store that
    /// cannot trust its index must not assign ids.
    #[test]
    fn a_corrupt_index_entry_stops_the_open_and_names_the_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = open(dir.path());
            let db = store.db().expect("open");
            let cf = db.cf(layout::CF_SERIES).expect("series");
            db.put_cf(cf, layout::series_key("bad.entry"), [0, 0, 0, 1, 77, 1])
                .expect("put");
        }
        let err = Store::open(options(dir.path())).expect_err("refuses to open");
        assert_eq!(
            err.to_string(),
            "corrupt data: index entry of \"bad.entry\""
        );
    }
}
