//! The flush: the head moved into chunks and rollups, and the log records it covered deleted.
//!
//! Every `flush_interval` (or when the head grows past a bound) the head is swapped out (frozen:
//! still readable, and kept for a retry if the flush fails) and written in **two** RocksDB writes:
//!
//! 1. the head's points into the finest archive: per series and time bucket the stored chunk is
//!    read, the new points are merged in (last write wins for a timestamp, so out-of-order and
//!    duplicate points are fine) and the result is put back; with it go any index entries not
//!    written yet. Not synced.
//! 2. the rollup slots those points touch, recomputed *from the finest archive* as write 1 left
//!    it, for every coarser archive; and the deletion of exactly the log records whose points
//!    the head held. Synced, which also makes write 1 durable (the WAL is one ordered file).
//!
//! It takes two writes because write 2 reads what write 1 wrote: RocksDB does not read a batch
//! that is not yet written.
//!
//! ## Why an interrupted flush is safe: the flush is idempotent
//! A crash (or an error) between or during the writes leaves the log records in place, so the
//! points are replayed at the next open (or the frozen head is flushed again first) and the whole
//! flush runs again over data it may already have written. That repeats nothing: write 1 merges
//! with last write wins, so merging the same points into a chunk that holds them gives the same
//! chunk; write 2 recomputes each slot from the raw points instead of adding to it, so a point
//! is never counted twice. Records are replayed in write order, so a later overwrite still wins.
//! The same property makes re-sent points harmless. The test
//! `issue_11_crash_between_the_two_writes_of_a_flush_loses_and_doubles_nothing` proves it.
//!
//! Read-modify-write, not a merge operand: RocksDB re-runs a merge operator on every read of a
//! key that still holds operands, and a live bucket is read by every dashboard refresh but
//! flushed once a minute (measured: reading 8.6 M fresh points took 241 ms with operands, 76 ms
//! without).

#[cfg(test)]
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamily, WriteBatch, WriteOptions};
use tracing::{debug, warn};

use super::{Db, Store};
use crate::chunk::{self, Points};
use crate::error::Result;
use crate::head::Head;
use crate::layout;
use crate::retention::ArchiveSet;
use crate::rollup::{floor, rollup, split_buckets};
use crate::stats::Stats;

impl Store {
    /// Wakes the flusher: when the head is full, and at shutdown so it notices the stop at once.
    pub(crate) fn request_flush(&self) {
        let (lock, cv) = &self.inner.flush_wanted;
        *lock.lock() = true;
        cv.notify_one();
    }

    /// Waits up to `timeout` for a flush request; true if one came.
    pub(crate) fn wait_flush_request(&self, timeout: Duration) -> bool {
        let (lock, cv) = &self.inner.flush_wanted;
        let mut wanted = lock.lock();
        if !*wanted {
            cv.wait_for(&mut wanted, timeout);
        }
        std::mem::replace(&mut *wanted, false)
    }

    /// Points in the head (not yet in chunks).
    pub fn head_points(&self) -> usize {
        self.inner.head.lock().points()
    }

    /// Writes the head into chunks and rollups, then deletes its log records (two writes; see
    /// the module doc for why that is safe at any point).
    ///
    /// While the database is read-only or waits for a reopen after a failed write, this does
    /// nothing: the head stays readable and its log records stay in the WAL.
    pub fn flush(&self) -> Result<()> {
        let _guard = self.inner.flush_lock.lock();
        self.flush_locked()
    }

    /// [`Store::flush`], with `flush_lock` already held.
    pub(super) fn flush_locked(&self) -> Result<()> {
        if !self.db_writable() {
            return Ok(());
        }
        let db = self.db()?;
        if db.read_only {
            return Ok(());
        }
        let flushed = self.flush_with(&db);
        if let Err(crate::Error::Rocks(e)) = &flushed {
            drop(db);
            self.write_failed("a flush", e);
        }
        flushed
    }

    fn flush_with(&self, db: &Db) -> Result<()> {
        // A head whose earlier flush failed goes first. (The read guard must be gone before the
        // write below: held across the `if let`, it deadlocked every retry.)
        let failed = self.inner.frozen.read().clone();
        if let Some(old) = failed {
            self.flush_head(db, &old)?;
            *self.inner.frozen.write() = None;
        }
        // The next head gets a slot per series there is now, so it does not grow while points
        // arrive (the index's lock is let go before the head's is taken).
        let series = self.inner.index.read().id_count();
        let head = Arc::new(std::mem::replace(
            &mut *self.inner.head.lock(),
            Head::with_series(series),
        ));
        if head.points() == 0 && head.log_keys.is_empty() {
            let mut wb = WriteBatch::default();
            let pending = self.take_unpersisted(db, &mut wb)?;
            if !pending.is_empty() {
                if let Err(e) = db.write(wb) {
                    self.inner.unpersisted.lock().extend(pending);
                    return Err(e.into());
                }
            }
            return Ok(());
        }
        *self.inner.frozen.write() = Some(head.clone());
        self.flush_head(db, &head)?;
        *self.inner.frozen.write() = None;
        Ok(())
    }

    fn flush_head(&self, db: &Db, head: &Head) -> Result<()> {
        let started = Instant::now();
        // Per touched series its id and which archive set it keeps (8 bytes each; the sets
        // themselves are a handful, copied once).
        let (series, sets): (Vec<(u32, u16)>, Vec<ArchiveSet>) = {
            let ix = self.inner.index.read();
            let series = head
                .touched()
                .iter()
                .map(|&id| (id, ix.set_slot(id)))
                .collect();
            (series, ix.sets().to_vec())
        };
        // Write 1: new points into the finest archive (and any index entries not yet written),
        // in batches of about BATCH_BYTES. Splitting it is safe for the same reason a crash
        // inside it is: nothing is deleted before write 2.
        let mut out = Batches::new(db, false);
        let pending = self.take_unpersisted(db, &mut out.wb)?;
        let written = self.write_finest(db, head, &series, &sets, &mut out);
        let written = written.and_then(|()| out.write_last());
        if written.is_err() && out.writes_done == 0 {
            // The index entries were not written: the next write or flush takes them.
            self.inner.unpersisted.lock().extend(pending);
        }
        written?;
        // Write 2: rollup slots the new points touch, recomputed from the finest archive as
        // write 1 left it, then (last, synced) the deletion of the flushed log records.
        #[cfg(test)]
        if self.inner.fail_before_second_flush_write.load(Relaxed) {
            return Err(crate::Error::Corrupt(
                "test: the process stops between the two writes of a flush".into(),
            ));
        }
        let mut out = Batches::new(db, true);
        for &(id, slot) in &series {
            let Some((finest, coarser)) = sets[slot as usize].archives.split_first() else {
                continue;
            };
            if coarser.is_empty() {
                continue;
            }
            let pts = head.of(id);
            let lo = pts.iter().map(|p| p.0).min().unwrap_or(0);
            let hi = pts.iter().map(|p| p.0).max().unwrap_or(0);
            let coarsest = i64::from(coarser.last().map_or(1, |a| a.step_secs));
            let raw = self.read_chunks_in(
                db,
                id,
                finest,
                floor(lo, coarsest),
                floor(hi, coarsest) + coarsest,
            )?;
            for a in coarser {
                let step = i64::from(a.step_secs);
                let mut slots: Vec<i64> = pts.iter().map(|p| floor(p.0, step)).collect();
                slots.sort_unstable();
                slots.dedup();
                let rows = rollup(&raw, &slots, step);
                let cf = db.cf(&layout::archive_cf(a))?;
                for (bucket, part) in split_buckets(&rows, i64::from(a.bucket_secs())) {
                    self.put_merged(db, &mut out, cf, layout::chunk_key(id, bucket), part, true)?;
                }
            }
        }
        let log = db.cf(layout::CF_LOG)?;
        for &seq in &head.log_keys {
            out.wb.delete_cf(log, layout::log_key(seq));
        }
        out.write_last()?;
        let s = &self.inner.stats;
        Stats::add(&s.flushes, 1);
        Stats::add(&s.flush_micros, started.elapsed().as_micros() as u64);
        debug!(
            points = head.points(),
            series = series.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed head"
        );
        Ok(())
    }

    /// Write 1's puts: each series' points, per bucket of its finest archive, merged into the
    /// stored chunk. A bucket newer than any this process has flushed for a series it created
    /// cannot have a chunk yet, so it is put without reading one (`flushed_to`).
    fn write_finest(
        &self,
        db: &Db,
        head: &Head,
        series: &[(u32, u16)],
        sets: &[ArchiveSet],
        out: &mut Batches<'_>,
    ) -> Result<()> {
        let mut flushed_to = self.inner.flushed_to.lock();
        for &(id, slot) in series {
            let Some(finest) = sets[slot as usize].archives.first() else {
                continue;
            };
            let cf = db.cf(&layout::archive_cf(finest))?;
            let step = i64::from(finest.step_secs);
            let bucket_secs = i64::from(finest.bucket_secs());
            let pts = head.of(id);
            let run = Points {
                ts: pts.iter().map(|&(t, _)| floor(t, step)).collect(),
                cols: vec![pts.iter().map(|&(_, v)| v).collect()],
            };
            let merged = chunk::merge_sorted(1, [run]);
            for (bucket, part) in split_buckets(&merged, bucket_secs) {
                let may_exist = flushed_to.may_exist(id, bucket, bucket_secs);
                self.put_merged(db, out, cf, layout::chunk_key(id, bucket), part, may_exist)?;
            }
        }
        Ok(())
    }

    /// Folds `part` into the chunk stored at `key` (last write wins) and puts the result into
    /// the flush's batches; without reading when the caller knows no chunk is stored there
    /// (`may_exist` false).
    ///
    /// Flushes are serialised by `flush_lock`, so nothing else writes these keys meanwhile.
    fn put_merged(
        &self,
        db: &Db,
        out: &mut Batches<'_>,
        cf: &ColumnFamily,
        key: [u8; 12],
        part: Points,
        may_exist: bool,
    ) -> Result<()> {
        let ncols = part.cols.len();
        let stored = if may_exist {
            db.get_pinned_cf(cf, key)?
        } else {
            None
        };
        let combined = match stored {
            None => part,
            Some(bytes) => match chunk::decode(&bytes) {
                Ok(old) if old.cols.len() == ncols => chunk::merge_sorted(ncols, [old, part]),
                _ => {
                    Stats::add(&self.inner.stats.corrupt_chunks, 1);
                    warn!(key = ?key, "replacing a chunk that does not decode");
                    part
                }
            },
        };
        out.wb.put_cf(cf, key, chunk::encode(&combined));
        out.maybe_write()
    }
}

/// A flush's write batches: a batch is written once it holds about [`BATCH_BYTES`], so a flush
/// of a million series never holds all its chunks in one batch; the last is synced if asked.
struct Batches<'a> {
    db: &'a Db,
    wb: WriteBatch,
    sync_last: bool,
    writes_done: usize,
}

/// Size at which a flush writes its batch and starts the next.
const BATCH_BYTES: usize = 8 << 20;

impl<'a> Batches<'a> {
    fn new(db: &'a Db, sync_last: bool) -> Self {
        Batches {
            db,
            wb: WriteBatch::default(),
            sync_last,
            writes_done: 0,
        }
    }

    fn maybe_write(&mut self) -> Result<()> {
        if self.wb.size_in_bytes() < BATCH_BYTES {
            return Ok(());
        }
        let wb = std::mem::take(&mut self.wb);
        self.db.write(wb)?;
        self.writes_done += 1;
        Ok(())
    }

    fn write_last(&mut self) -> Result<()> {
        let wb = std::mem::take(&mut self.wb);
        if wb.is_empty() && !self.sync_last {
            return Ok(());
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync_last);
        self.db.write_opt(wb, &wo)?;
        self.writes_done += 1;
        Ok(())
    }
}

/// Per series created since the store opened, the newest bucket of its finest archive a flush
/// has put (plus one; 0 for none): no chunk of it is stored beyond that. Series that existed at
/// open are unknown (their chunks are read before every put). 4 bytes a series.
#[derive(Debug, Default)]
pub(super) struct FlushedTo {
    newest: Vec<u32>,
}

/// [`FlushedTo`] of a series whose stored chunks are unknown.
const UNKNOWN: u32 = u32::MAX;

impl FlushedTo {
    /// Ids below `existing` were there at open: unknown.
    pub(super) fn at_open(existing: usize) -> Self {
        FlushedTo {
            newest: vec![UNKNOWN; existing],
        }
    }

    /// Whether a chunk of `id` may be stored at `bucket`; notes that one will be from now on.
    fn may_exist(&mut self, id: u32, bucket: i64, bucket_secs: i64) -> bool {
        let i = id as usize;
        if self.newest.len() <= i {
            self.newest.resize(i + 1, 0);
        }
        let n = u32::try_from(bucket.max(0) / bucket_secs.max(1) + 1).unwrap_or(UNKNOWN - 1);
        let known = self.newest[i];
        if known == UNKNOWN {
            return true;
        }
        if n > known {
            self.newest[i] = n;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::batch::PointBatch;
    use crate::engine::testing::{log_records, open};
    use crate::engine::Durability;
    use crate::retention::Aggregate;

    const AGGREGATES: [Aggregate; 6] = [
        Aggregate::Average,
        Aggregate::Sum,
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Last,
        Aggregate::Count,
    ];

    fn now() -> i64 {
        crate::engine::unix_now()
    }

    /// A first batch, and a second that overwrites two of its points, repeats one unchanged and
    /// adds a slot: what the second flush writes lands in chunks and slots that already exist.
    fn batches(t0: i64) -> [PointBatch; 2] {
        let mut first = PointBatch::default();
        for i in 0..12 {
            first.push("rolled.x", t0 + i * 10, i as f64);
            first.push("plain.y", t0 + i * 10, -(i as f64));
        }
        let mut second = PointBatch::default();
        second.push("rolled.x", t0 + 20, 100.0);
        second.push("rolled.x", t0 + 30, 200.0);
        second.push("rolled.x", t0 + 40, 4.0);
        for i in 12..18 {
            second.push("rolled.x", t0 + i * 10, 1.0);
        }
        second.push("plain.y", t0, 7.0);
        [first, second]
    }

    /// Everything reads can see: both series raw, and every aggregate of the rollup.
    fn seen(store: &Store, t0: i64) -> Vec<Vec<Option<f64>>> {
        let now = now();
        let read = |name, archive, agg| {
            store
                .read_archive(name, archive, t0 - 60, t0 + 180, agg, now)
                .expect("read")
                .values
        };
        let mut out = vec![
            read("rolled.x", 0, Aggregate::Last),
            read("plain.y", 0, Aggregate::Last),
        ];
        out.extend(AGGREGATES.map(|agg| read("rolled.x", 1, agg)));
        out
    }

    /// What a store that never failed shows after the same two batches.
    fn reference(t0: i64) -> Vec<Vec<Option<f64>>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        for batch in batches(t0) {
            store.write(&batch, Durability::Sync).expect("write");
            store.flush().expect("flush");
        }
        seen(&store, t0)
    }

    /// Writes and flushes the first batch, writes the second, and makes its flush stop after
    /// the first of its two writes; returns the second batch.
    fn fail_a_flush_after_its_first_write(store: &Store, t0: i64) -> PointBatch {
        let [first, second] = batches(t0);
        store.write(&first, Durability::Sync).expect("write");
        store.flush().expect("flush");
        store.write(&second, Durability::Sync).expect("write");
        store
            .inner
            .fail_before_second_flush_write
            .store(true, Relaxed);
        assert!(store.flush().is_err());
        second
    }

    /// Issue 11: the flush is two writes; a crash between them leaves the finest archive written
    /// and the log records in place. Reopening replays them over what was written: the data must
    /// be the same as without the crash, no point counted twice in a rollup.
    #[test]
    fn issue_11_crash_between_the_two_writes_of_a_flush_loses_and_doubles_nothing() {
        let t0 = now() - now() % 60 - 3600;
        let want = reference(t0);
        // Each rollup slot counts its distinct timestamps once: 6, 6, then the 6 added.
        assert_eq!(want[7], [Some(6.0), Some(6.0), Some(6.0), None]);
        assert_eq!(want[3][0], Some(0.0 + 1.0 + 100.0 + 200.0 + 4.0 + 5.0));

        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = open(dir.path());
            fail_a_flush_after_its_first_write(&store, t0);
            assert_eq!(
                log_records(&store),
                1,
                "the second batch is still in the log"
            );
            let entry = store.lookup("rolled.x").expect("exists");
            let stored = store
                .read_chunks(entry.id, &entry.set.archives[0], t0 + 20, t0 + 30)
                .expect("read");
            assert_eq!(stored.cols[0], [100.0, 200.0], "the first write is in");
            // Dropped without close or a further flush: the crash.
        }
        let store = open(dir.path());
        assert_eq!((store.head_points(), log_records(&store)), (0, 0));
        assert_eq!(seen(&store, t0), want);
        drop(store);
        let store = open(dir.path());
        assert_eq!(seen(&store, t0), want, "and again after a clean reopen");
    }

    /// The same failure without a crash: the frozen head stays readable and is flushed again
    /// first by the next flush, with the same result; re-sending a batch changes nothing either.
    #[test]
    fn issue_11_a_flush_that_failed_after_its_first_write_is_retried_exactly() {
        let t0 = now() - now() % 60 - 3600;
        let want = reference(t0);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let second = fail_a_flush_after_its_first_write(&store, t0);
        assert_eq!(
            seen(&store, t0),
            want,
            "readable while the flush is pending"
        );
        store
            .inner
            .fail_before_second_flush_write
            .store(false, Relaxed);
        store.flush().expect("the retry succeeds");
        assert_eq!((store.head_points(), log_records(&store)), (0, 0));
        assert_eq!(seen(&store, t0), want);
        store.write(&second, Durability::Sync).expect("write");
        store.flush().expect("flush");
        assert_eq!(seen(&store, t0), want, "a re-sent batch is counted once");
    }

    /// A series created in this process is put without reading its newest chunk only when the
    /// bucket is newer than any flushed: points into an older bucket, into the same one again,
    /// and after a reopen (when nothing is known) are all merged with what is stored.
    #[test]
    fn puts_without_a_read_never_lose_a_stored_point() {
        let bucket = 7200;
        let t0 = now() - now() % bucket - 3 * bucket;
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |store: &Store, pts: &[(i64, f64)]| {
            let mut b = PointBatch::default();
            for &(t, v) in pts {
                b.push("plain.z", t, v);
            }
            store.write(&b, Durability::Sync).expect("write");
            store.flush().expect("flush");
        };
        let read = |store: &Store| {
            store
                .read_archive("plain.z", 0, t0, t0 + 3 * bucket, Aggregate::Last, now())
                .expect("read")
                .values
                .into_iter()
                .flatten()
                .collect::<Vec<f64>>()
        };
        {
            let store = open(dir.path());
            write(&store, &[(t0 + bucket + 10, 2.0)]); // a new bucket: no read
            write(&store, &[(t0 + 10, 1.0)]); // an older bucket: read (none there)
            write(&store, &[(t0 + bucket + 20, 3.0)]); // the same bucket again: read
            write(&store, &[(t0 + 2 * bucket, 4.0)]); // newer again: no read
            assert_eq!(read(&store), [1.0, 2.0, 3.0, 4.0]);
        }
        let store = open(dir.path());
        write(&store, &[(t0 + 2 * bucket + 10, 5.0)]); // unknown after the reopen: read
        assert_eq!(read(&store), [1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    /// A flush bigger than one batch is written in several, and all of it lands.
    #[test]
    fn a_flush_of_many_series_is_written_in_batches_and_whole() {
        let t0 = now() - now() % 60 - 3600;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        let mut b = PointBatch::default();
        // About 40 bytes of batch per series: 300k series is well over BATCH_BYTES.
        let n = 3 * BATCH_BYTES / 40;
        for i in 0..n {
            b.push(&format!("many.s{i}"), t0, i as f64);
        }
        store.write(&b, Durability::Sync).expect("write");
        store.flush().expect("flush");
        assert_eq!((store.head_points(), log_records(&store)), (0, 0));
        for i in [0, n / 2, n - 1] {
            let got = store
                .read_archive(
                    &format!("many.s{i}"),
                    0,
                    t0 - 10,
                    t0 + 10,
                    Aggregate::Last,
                    now(),
                )
                .expect("read")
                .values;
            assert_eq!(got.into_iter().flatten().collect::<Vec<_>>(), [i as f64]);
        }
    }
}
