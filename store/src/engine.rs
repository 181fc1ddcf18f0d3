//! The storage engine: durable writes, the head, flushing into compressed chunks, rollups,
//! retention and reads.
//!
//! ## Write path
//! A batch of points first resolves names to series ids (creating series as needed), then goes to
//! RocksDB as one `log` record (the points as plaintext, with absolute timestamps) in the same
//! write batch as any new index entries. Acknowledged batches are written with `sync`, so they
//! are in the fsynced WAL before anyone hears "accepted"; plain TCP points are written without
//! sync and the WAL is synced on a timer, which bounds what a power loss can take. Only then do
//! the points enter the in-memory [`Head`], which is what makes them readable.
//!
//! One RocksDB write per batch rather than per point is what lets a single node take millions of
//! points a second.
//!
//! ## Flush
//! Every `flush_interval` (or when the head grows past a bound) the head is swapped out and
//! written as chunks: per series and time bucket, the stored chunk is read, the new points are
//! merged in (last write wins for a timestamp, so out-of-order and duplicate points are fine),
//! and the result is put back. Read-modify-write at flush, not a merge operand: RocksDB re-runs a
//! merge operator on every read of a key that still holds operands, and a live bucket is read by
//! every dashboard refresh but flushed once a minute (measured: reading 8.6 M fresh points took
//! 241 ms with operands, 76 ms without). Rollup slots that the new points touch are then recomputed *from the finest
//! archive* and written, in the same atomic write that deletes the flushed log records.
//! Recomputing from raw points (instead of adding deltas) is what keeps re-sent points idempotent
//! at every resolution.
//!
//! ## Layout
//! Column families: `series` (the index), `log`, and one per archive (`a<step>s_<retention>s`),
//! keyed by series id and bucket start (big-endian, so a series' buckets are contiguous). Each
//! archive family has a compaction filter that drops buckets past its retention: expiry costs
//! nothing on the write path and never scans.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex, RwLock};
use rocksdb::compaction_filter::Decision;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, IteratorMode,
    Options, WriteBatch, WriteOptions, DB,
};
use tally_proto::{Lines, Parsed, Timestamp};
use tracing::{debug, info, warn};

use crate::batch::PointBatch;
use crate::chunk::{self, Points};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::head::Head;
use crate::index::{ArchiveSet, FindMatch, Index};
use crate::retention::{Aggregate, Archive, Schemas};
use crate::stats::Stats;
use crate::tag_expr::TagExpr;

const CF_SERIES: &str = "series";
const CF_LOG: &str = "log";
const CF_EVENTS: &str = "events";
/// Columns of a rollup row.
const ROLLUP_COLS: usize = 5;
const SUM: usize = 0;
const COUNT: usize = 1;
const MIN: usize = 2;
const MAX: usize = 3;
const LAST: usize = 4;

/// How a write must be made durable before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// In the synced WAL before returning: for acknowledged batches.
    Sync,
    /// In the WAL, synced by the timer: plain TCP/UDP plaintext.
    Buffered,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub data_dir: PathBuf,
    pub schemas: Schemas,
    /// Flush the head into chunks when it holds this many points.
    pub max_head_points: usize,
    /// Most points one read may return.
    pub max_points_per_read: usize,
    /// Where opening reports its recovery progress (for the page served while it runs).
    pub progress: Option<Arc<Recovery>>,
}

impl StoreOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            data_dir: data_dir.into(),
            schemas: Schemas::default(),
            max_head_points: 4_000_000,
            max_points_per_read: 10_000_000,
            progress: None,
        }
    }
}

/// Progress of the recovery a store does while it opens: log records replayed of the total.
#[derive(Debug, Default)]
pub struct Recovery {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub elapsed_ms: AtomicU64,
}

impl Recovery {
    /// `(done, total, eta_secs)`; the ETA is `None` until something is done.
    pub fn snapshot(&self) -> (u64, u64, Option<u64>) {
        let done = self.done.load(Relaxed);
        let total = self.total.load(Relaxed);
        let ms = self.elapsed_ms.load(Relaxed);
        let eta = (done > 0 && total >= done).then(|| ms * (total - done) / done / 1000);
        (done, total, eta)
    }
}

/// One series read over a range at one step: `values[i]` is at `start + i * step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub start: i64,
    pub step: u32,
    pub values: Vec<Option<f64>>,
}

/// The store: cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

struct Inner {
    db: DB,
    dir: PathBuf,
    index: RwLock<Index>,
    /// Series created but whose index entry is not yet known to be written.
    unpersisted: Mutex<Vec<u32>>,
    head: Mutex<Head>,
    /// A head being flushed (still readable), or one whose flush failed and will be retried.
    frozen: RwLock<Option<Arc<Head>>>,
    flush_lock: Mutex<()>,
    flush_wanted: (Mutex<bool>, Condvar),
    next_log: AtomicU64,
    next_event: AtomicU64,
    schemas: Schemas,
    max_head_points: usize,
    max_points_per_read: usize,
    stats: Stats,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn cf_name(a: &Archive) -> String {
    format!("a{}s_{}s", a.step_secs, a.retention_secs)
}

fn parse_cf_name(name: &str) -> Option<Archive> {
    let rest = name.strip_prefix('a')?;
    let (step, ret) = rest.split_once("s_")?;
    Some(Archive {
        step_secs: step.parse().ok()?,
        retention_secs: ret.strip_suffix('s')?.parse().ok()?,
    })
}

fn chunk_key(id: u32, bucket: i64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&id.to_be_bytes());
    k[4..].copy_from_slice(&(bucket.max(0) as u64).to_be_bytes());
    k
}

fn floor(ts: i64, step: i64) -> i64 {
    ts - ts.rem_euclid(step)
}

fn archive_cf_options(a: Archive) -> Options {
    let mut o = Options::default();
    let keep = a.retention_secs as i64 + i64::from(a.bucket_secs());
    o.set_compaction_filter(
        "tally.retention",
        move |_level, key: &[u8], _value: &[u8]| {
            let Some(bucket) = key.get(4..12).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                return Decision::Keep;
            };
            if (u64::from_be_bytes(bucket) as i64) + keep < now_secs() {
                Decision::Remove
            } else {
                Decision::Keep
            }
        },
    );
    // Files that nothing new lands on are not compacted by RocksDB on its own: the server runs
    // `Store::compact` daily so that they expire too (the 0.20 bindings lack periodic compaction).
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    let mut block = BlockBasedOptions::default();
    block.set_bloom_filter(10.0, false);
    // Larger blocks give zstd more of the byte-aligned offsets to entropy-code at once.
    block.set_block_size(16 * 1024);
    o.set_block_based_table_factory(&block);
    o
}

impl Store {
    /// Opens (or creates) a store, replaying log records that were not flushed before a crash.
    pub fn open(opts: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(&opts.data_dir)?;
        let path = opts.data_dir.join("db");
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_max_total_wal_size(512 << 20);
        db_opts.set_keep_log_file_num(5);

        let mut archives = opts.schemas.all_archives();
        // Families of archives no longer configured still hold data, and still expire.
        if let Ok(existing) = DB::list_cf(&db_opts, &path) {
            archives.extend(existing.iter().filter_map(|n| parse_cf_name(n)));
        }
        archives.sort_by_key(|a| (a.step_secs, a.retention_secs));
        archives.dedup();
        let mut log_opts = Options::default();
        log_opts.set_write_buffer_size(128 << 20);
        let mut cfs = vec![
            ColumnFamilyDescriptor::new(CF_SERIES, Options::default()),
            ColumnFamilyDescriptor::new(CF_LOG, log_opts),
            ColumnFamilyDescriptor::new(CF_EVENTS, Options::default()),
        ];
        cfs.extend(
            archives
                .iter()
                .map(|a| ColumnFamilyDescriptor::new(cf_name(a), archive_cf_options(*a))),
        );
        let db = DB::open_cf_descriptors(&db_opts, &path, cfs)?;
        let store = Store {
            inner: Arc::new(Inner {
                db,
                dir: opts.data_dir.clone(),
                index: RwLock::new(Index::default()),
                unpersisted: Mutex::new(Vec::new()),
                head: Mutex::new(Head::default()),
                frozen: RwLock::new(None),
                flush_lock: Mutex::new(()),
                flush_wanted: (Mutex::new(false), Condvar::new()),
                next_log: AtomicU64::new(0),
                next_event: AtomicU64::new(1),
                schemas: opts.schemas,
                max_head_points: opts.max_head_points,
                max_points_per_read: opts.max_points_per_read,
                stats: Stats::default(),
            }),
        };
        store.load_index()?;
        store.replay_log(opts.progress.as_deref())?;
        let last_event = store
            .events(i64::MIN, i64::MAX)?
            .iter()
            .map(|e| e.id)
            .max()
            .unwrap_or(0);
        store.inner.next_event.store(last_event + 1, Relaxed);
        Ok(store)
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.inner
            .db
            .cf_handle(name)
            .ok_or_else(|| Error::Corrupt(format!("column family {name} missing")))
    }

    fn load_index(&self) -> Result<()> {
        let started = Instant::now();
        let cf = self.cf(CF_SERIES)?;
        let mut ix = self.inner.index.write();
        for item in self.inner.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item?;
            let Some(name) = key.strip_prefix(b"n") else {
                continue;
            };
            let name = std::str::from_utf8(name)
                .map_err(|_| Error::Corrupt("series name is not UTF-8".into()))?;
            let (id, set) = decode_series_value(&value)
                .ok_or_else(|| Error::Corrupt(format!("index entry of \"{name}\"")))?;
            ix.restore(id, name, set)?;
        }
        info!(
            series = ix.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index loaded"
        );
        Ok(())
    }

    /// Puts every log record still present back into the head: these are the points that were
    /// written but not yet flushed into chunks when the process stopped.
    fn replay_log(&self, progress: Option<&Recovery>) -> Result<()> {
        let started = Instant::now();
        let cf = self.cf(CF_LOG)?;
        let (mut records, mut points, mut next) = (0u64, 0u64, 0u64);
        let mut batch = PointBatch::default();
        let mut keys = Vec::new();
        // Records are numbered in order and deleted in order once flushed, so the first and last
        // numbers bound how many remain: enough for progress and an ETA on a long recovery.
        let seq_of = |key: &[u8]| {
            <[u8; 8]>::try_from(key)
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt("log key".into()))
        };
        let first = match self.inner.db.iterator_cf(cf, IteratorMode::Start).next() {
            Some(item) => seq_of(&item?.0)?,
            None => 0,
        };
        let last = match self.inner.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => seq_of(&item?.0)?,
            None => 0,
        };
        let total = (last + 1).saturating_sub(first).max(1);
        if let Some(p) = progress {
            p.total.store(total, Relaxed);
        }
        let mut reported = Instant::now();
        for item in self.inner.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item?;
            let seq = seq_of(&key)?;
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
            for parsed in Lines::new(&value) {
                if let Ok(Parsed::Metric(m)) = parsed {
                    batch.push_metric(&m, 0);
                }
            }
            keys.push(seq);
            records += 1;
            if batch.len() >= 1_000_000 {
                points += batch.len() as u64;
                self.apply_to_head(&batch, std::mem::take(&mut keys))?;
                batch.clear();
            }
        }
        points += batch.len() as u64;
        self.apply_to_head(&batch, keys)?;
        self.inner.next_log.store(next, Relaxed);
        if records > 0 {
            info!(
                records,
                points,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "replayed unflushed log records"
            );
            self.flush()?;
        }
        Ok(())
    }

    /// Resolves names to ids, creating new series; returns the ids in batch order.
    fn resolve(&self, batch: &PointBatch) -> Vec<u32> {
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
                        let (archives, agg) = self.inner.schemas.for_name(name);
                        let id = ix.insert(name, (archives.to_vec(), agg));
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
    fn take_unpersisted(&self, wb: &mut WriteBatch) -> Result<Vec<u32>> {
        let pending = std::mem::take(&mut *self.inner.unpersisted.lock());
        if pending.is_empty() {
            return Ok(pending);
        }
        let cf = self.cf(CF_SERIES)?;
        let ix = self.inner.index.read();
        for &id in &pending {
            let name = ix.name(id);
            let mut key = Vec::with_capacity(name.len() + 1);
            key.push(b'n');
            key.extend_from_slice(name.as_bytes());
            wb.put_cf(cf, key, encode_series_value(id, ix.archive_set(id)));
        }
        Ok(pending)
    }

    /// Writes a batch: durable as `durability` says when this returns, readable right after.
    pub fn write(&self, batch: &PointBatch, durability: Durability) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let ids = self.resolve(batch);
        let mut record = Vec::with_capacity(batch.name_bytes() + batch.len() * 24);
        for (name, ts, value) in batch.iter() {
            tally_proto::encode(name, value, Timestamp::At(ts), &mut record);
        }
        let key = self.inner.next_log.fetch_add(1, Relaxed);
        let mut wb = WriteBatch::default();
        let pending = self.take_unpersisted(&mut wb)?;
        wb.put_cf(self.cf(CF_LOG)?, key.to_be_bytes(), &record);
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
            head.log_keys.push(key);
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

    /// Replay: points go to the head under existing log keys (no new log record).
    fn apply_to_head(&self, batch: &PointBatch, keys: Vec<u64>) -> Result<()> {
        let ids = self.resolve(batch);
        let mut head = self.inner.head.lock();
        for (&id, (_, ts, value)) in ids.iter().zip(batch.iter()) {
            head.append(id, ts, value);
        }
        head.log_keys.extend(keys);
        Ok(())
    }

    /// Syncs the WAL: bounds what buffered (plain TCP) writes can lose.
    pub fn sync_wal(&self) -> Result<()> {
        self.inner.db.flush_wal(true)?;
        Ok(())
    }

    /// Wakes the flusher (used at shutdown so it notices the stop at once).
    pub fn request_flush_public(&self) {
        self.request_flush();
    }

    fn request_flush(&self) {
        let (lock, cv) = &self.inner.flush_wanted;
        *lock.lock() = true;
        cv.notify_one();
    }

    /// Waits up to `timeout` for a flush request; true if one came.
    pub fn wait_flush_request(&self, timeout: Duration) -> bool {
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

    /// Writes the head into chunks and rollups, then drops its log records, atomically.
    pub fn flush(&self) -> Result<()> {
        let _guard = self.inner.flush_lock.lock();
        self.flush_locked()
    }

    /// [`Store::flush`], with `flush_lock` already held.
    fn flush_locked(&self) -> Result<()> {
        // A head whose earlier flush failed goes first.
        if let Some(old) = self.inner.frozen.read().clone() {
            self.flush_head(&old)?;
            *self.inner.frozen.write() = None;
        }
        let head = Arc::new(std::mem::take(&mut *self.inner.head.lock()));
        if head.points() == 0 && head.log_keys.is_empty() {
            let mut wb = WriteBatch::default();
            let pending = self.take_unpersisted(&mut wb)?;
            if !pending.is_empty() {
                if let Err(e) = self.inner.db.write(wb) {
                    self.inner.unpersisted.lock().extend(pending);
                    return Err(e.into());
                }
            }
            return Ok(());
        }
        *self.inner.frozen.write() = Some(head.clone());
        self.flush_head(&head)?;
        *self.inner.frozen.write() = None;
        Ok(())
    }

    fn flush_head(&self, head: &Head) -> Result<()> {
        let started = Instant::now();
        // Phase 1: new points into the finest archive (and any index entries not yet written).
        let mut wb = WriteBatch::default();
        let pending = self.take_unpersisted(&mut wb)?;
        let sets: Vec<(u32, ArchiveSet)> = {
            let ix = self.inner.index.read();
            head.touched()
                .iter()
                .map(|&id| (id, ix.archive_set(id).clone()))
                .collect()
        };
        for (id, (archives, _)) in &sets {
            let Some(finest) = archives.first() else {
                continue;
            };
            let cf = self.cf(&cf_name(finest))?;
            let step = i64::from(finest.step_secs);
            let points: Vec<(i64, f64)> = head
                .of(*id)
                .iter()
                .map(|&(t, v)| (floor(t, step), v))
                .collect();
            let run = Points {
                ts: points.iter().map(|p| p.0).collect(),
                cols: vec![points.iter().map(|p| p.1).collect()],
            };
            let merged = chunk::merge_sorted(1, [run]);
            let mut parts = Vec::new();
            for_each_bucket(&merged, i64::from(finest.bucket_secs()), |bucket, part| {
                parts.push((bucket, part))
            });
            for (bucket, part) in parts {
                self.put_merged(&mut wb, cf, chunk_key(*id, bucket), part)?;
            }
        }
        if let Err(e) = self.inner.db.write(wb) {
            self.inner.unpersisted.lock().extend(pending);
            return Err(e.into());
        }
        // Phase 2: rollup slots the new points touch, recomputed from the finest archive, with
        // the deletion of the flushed log records, in one synced write.
        let mut wb = WriteBatch::default();
        for (id, (archives, _)) in &sets {
            let Some((finest, coarser)) = archives.split_first() else {
                continue;
            };
            if coarser.is_empty() {
                continue;
            }
            let pts = head.of(*id);
            let lo = pts.iter().map(|p| p.0).min().unwrap_or(0);
            let hi = pts.iter().map(|p| p.0).max().unwrap_or(0);
            let coarsest = i64::from(coarser.last().map_or(1, |a| a.step_secs));
            let raw = self.read_chunks(
                *id,
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
                let cf = self.cf(&cf_name(a))?;
                let mut parts = Vec::new();
                for_each_bucket(&rows, i64::from(a.bucket_secs()), |bucket, part| {
                    parts.push((bucket, part))
                });
                for (bucket, part) in parts {
                    self.put_merged(&mut wb, cf, chunk_key(*id, bucket), part)?;
                }
            }
        }
        let log = self.cf(CF_LOG)?;
        for key in &head.log_keys {
            wb.delete_cf(log, key.to_be_bytes());
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.inner.db.write_opt(wb, &wo)?;
        let s = &self.inner.stats;
        Stats::add(&s.flushes, 1);
        Stats::add(&s.flush_micros, started.elapsed().as_micros() as u64);
        debug!(
            points = head.points(),
            series = sets.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed head"
        );
        Ok(())
    }

    /// Folds `part` into the chunk stored at `key` (last write wins) and puts the result.
    ///
    /// Read-modify-write at flush rather than a merge operand: a live bucket is flushed about
    /// once a minute but read by every dashboard refresh, and RocksDB re-runs the merge operator
    /// on every read of a key that still holds operands (a full decode and re-encode each time).
    /// Flushes are serialised by `flush_lock`, so nothing else writes these keys meanwhile.
    fn put_merged(
        &self,
        wb: &mut WriteBatch,
        cf: &ColumnFamily,
        key: [u8; 12],
        part: Points,
    ) -> Result<()> {
        let ncols = part.cols.len();
        let combined = match self.inner.db.get_pinned_cf(cf, key)? {
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
        wb.put_cf(cf, key, chunk::encode(&combined));
        Ok(())
    }

    /// Stored points of one series and archive with `lo <= ts <= hi`, merged and sorted.
    fn read_chunks(&self, id: u32, a: &Archive, lo: i64, hi: i64) -> Result<Points> {
        let cf = self.cf(&cf_name(a))?;
        let bucket = i64::from(a.bucket_secs());
        let start = chunk_key(id, floor(lo, bucket));
        let end = chunk_key(id, floor(hi, bucket));
        let mut out: Option<Points> = None;
        for item in self
            .inner
            .db
            .iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
        {
            let (key, value) = item?;
            if *key > end[..] {
                break;
            }
            let p = match chunk::decode(&value) {
                Ok(p) => p,
                Err(e) => {
                    Stats::add(&self.inner.stats.corrupt_chunks, 1);
                    warn!(series = id, error = %e, "skipping a chunk that does not decode");
                    continue;
                }
            };
            let acc = out.get_or_insert_with(|| Points::new(p.cols.len()));
            for (i, &t) in p.ts.iter().enumerate() {
                if (lo..=hi).contains(&t) && p.cols.len() == acc.cols.len() {
                    acc.ts.push(t);
                    for (c, col) in acc.cols.iter_mut().enumerate() {
                        col.push(p.cols[c][i]);
                    }
                }
            }
        }
        Ok(out.unwrap_or_else(|| Points::new(1)))
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

    /// The archives and default aggregate of a series.
    pub fn archives(&self, name: &str) -> Option<(Vec<Archive>, Aggregate)> {
        self.lookup(name).map(|(_, set)| set)
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
        let now = now_secs();
        let Some((id, (archives, default_agg))) = self.lookup(name) else {
            return Ok(None);
        };
        let age = now - from;
        let i = archives
            .iter()
            .position(|a| a.retention_secs as i64 >= age)
            .unwrap_or(archives.len().saturating_sub(1));
        let agg = aggregate.unwrap_or(default_agg);
        self.read_series(id, name, &archives, i, from, until, agg, now)
            .map(Some)
    }

    /// A series' id and archive set, looked up once per read.
    fn lookup(&self, name: &str) -> Option<(u32, ArchiveSet)> {
        let ix = self.inner.index.read();
        ix.get(name).map(|id| (id, ix.archive_set(id).clone()))
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
        let (id, (archives, _)) = self
            .lookup(name)
            .ok_or_else(|| Error::UnknownSeries(name.to_owned()))?;
        self.read_series(id, name, &archives, archive, from, until, aggregate, now)
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
        let (from, until) = (from.min(until), from.max(until));
        let first = floor(from, step) + step;
        let last = floor(until, step);
        let n = if last >= first {
            ((last - first) / step + 1) as usize
        } else {
            0
        };
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
            let stored = self.read_chunks(id, &a, first, last)?;
            for (i, &t) in stored.ts.iter().enumerate() {
                if let Some(s) = slot(t) {
                    values[s] = Some(stored.cols[0][i]);
                }
            }
            for &(t, v) in &head {
                if let Some(s) = slot(floor(t, step)) {
                    values[s] = Some(v);
                }
            }
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
        let oldest = now - a.retention_secs as i64;
        for (i, v) in values.iter_mut().enumerate() {
            if first + i as i64 * step <= oldest {
                *v = None;
            }
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

    pub fn tag_values(&self, tag: &str) -> Vec<(String, usize)> {
        self.inner.index.read().tag_values(tag)
    }

    pub fn series_count(&self) -> usize {
        self.inner.index.read().len()
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Counters plus engine gauges, for `/metrics` and `tally.store.*`.
    pub fn metrics(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
        let mut m = self.inner.stats.snapshot();
        m.push((
            "series",
            "gauge",
            "Series in the index.",
            self.series_count() as u64,
        ));
        m.push((
            "head_points",
            "gauge",
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
            for cf in self.cf_names() {
                if let Ok(handle) = self.cf(&cf) {
                    total += db
                        .property_int_value_cf(handle, prop)
                        .ok()
                        .flatten()
                        .unwrap_or(0);
                }
            }
            m.push((name, "gauge", help, total));
        }
        m
    }

    fn cf_names(&self) -> Vec<String> {
        let mut names = vec![
            CF_SERIES.to_owned(),
            CF_LOG.to_owned(),
            CF_EVENTS.to_owned(),
        ];
        let path = self.inner.dir.join("db");
        if let Ok(all) = DB::list_cf(&Options::default(), &path) {
            names.extend(all.into_iter().filter(|n| parse_cf_name(n).is_some()));
        }
        names
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
        let mut key = vec![b'n'];
        key.extend_from_slice(name.as_bytes());
        wb.delete_cf(self.cf(CF_SERIES)?, key);
        for cf_name in self
            .cf_names()
            .iter()
            .filter(|n| parse_cf_name(n).is_some())
        {
            let start = chunk_key(id, 0).to_vec();
            let end = if id == u32::MAX {
                vec![0xff; 13]
            } else {
                chunk_key(id + 1, 0).to_vec()
            };
            wb.delete_range_cf(self.cf(cf_name)?, start, end);
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
        let value = serde_json::to_vec(&event).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_EVENTS)?, crate::events::key(when, id), value);
        self.inner.db.write_opt(wb, &wo)?;
        Ok(id)
    }

    /// Stores a small named document durably (synced), for state other parts keep in the
    /// store, such as alert states. Keys live in RocksDB's default column family under `meta/`.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let mut wb = WriteBatch::default();
        wb.put(format!("meta/{key}"), value);
        self.inner.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// A document stored by [`Store::put_meta`].
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.db.get(format!("meta/{key}"))?)
    }

    /// Events with `from <= when <= until`, by time.
    pub fn events(&self, from: i64, until: i64) -> Result<Vec<Event>> {
        let cf = self.cf(CF_EVENTS)?;
        let start = crate::events::key(from, 0);
        let mut out = Vec::new();
        for item in self
            .inner
            .db
            .iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
        {
            let (_, value) = item?;
            let e: Event = serde_json::from_slice(&value)
                .map_err(|e| Error::Corrupt(format!("event: {e}")))?;
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
        for cf_name in self
            .cf_names()
            .iter()
            .filter(|n| parse_cf_name(n).is_some())
        {
            let cf = self.cf(cf_name)?;
            let start = chunk_key(id, 0);
            for item in self
                .inner
                .db
                .iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
            {
                let (key, _) = item?;
                if key.get(..4) != Some(&id.to_be_bytes()[..]) {
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
        for name in self.cf_names() {
            let cf = self.cf(&name)?;
            self.inner
                .db
                .compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Flushes the head and syncs the WAL: the clean-shutdown path.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        self.sync_wal()
    }
}

/// Splits sorted points into runs of one bucket each.
fn for_each_bucket(points: &Points, bucket_secs: i64, mut f: impl FnMut(i64, Points)) {
    let mut i = 0;
    while i < points.ts.len() {
        let bucket = floor(points.ts[i], bucket_secs);
        let mut part = Points::new(points.cols.len());
        while i < points.ts.len() && floor(points.ts[i], bucket_secs) == bucket {
            let row: Vec<f64> = points.cols.iter().map(|c| c[i]).collect();
            part.push(points.ts[i], &row);
            i += 1;
        }
        f(bucket, part);
    }
}

/// Sum, count, min, max and last of the raw points in each slot `[t, t + step)`.
fn rollup(raw: &Points, slots: &[i64], step: i64) -> Points {
    let mut out = Points::new(ROLLUP_COLS);
    let mut j = 0;
    for &slot in slots {
        while j < raw.ts.len() && raw.ts[j] < slot {
            j += 1;
        }
        let mut row = [0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0];
        let mut k = j;
        while k < raw.ts.len() && raw.ts[k] < slot + step {
            let v = raw.cols[0][k];
            row[SUM] += v;
            row[COUNT] += 1.0;
            row[MIN] = row[MIN].min(v);
            row[MAX] = row[MAX].max(v);
            row[LAST] = v;
            k += 1;
        }
        if row[COUNT] > 0.0 {
            out.push(slot, &row);
        }
    }
    out
}

fn reduce(row: &[f64], aggregate: Aggregate) -> Option<f64> {
    let count = *row.get(COUNT)?;
    if count <= 0.0 {
        return None;
    }
    Some(match aggregate {
        Aggregate::Average => row[SUM] / count,
        Aggregate::Sum => row[SUM],
        Aggregate::Min => row[MIN],
        Aggregate::Max => row[MAX],
        Aggregate::Last => row[LAST],
        Aggregate::Count => count,
    })
}

fn encode_series_value(id: u32, set: &ArchiveSet) -> Vec<u8> {
    let mut v = Vec::with_capacity(6 + set.0.len() * 12);
    v.extend_from_slice(&id.to_be_bytes());
    v.push(set.1 as u8);
    v.push(set.0.len() as u8);
    for a in &set.0 {
        v.extend_from_slice(&a.step_secs.to_be_bytes());
        v.extend_from_slice(&a.retention_secs.to_be_bytes());
    }
    v
}

fn decode_series_value(v: &[u8]) -> Option<(u32, ArchiveSet)> {
    let id = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
    let agg = match v.get(4)? {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        4 => Aggregate::Last,
        5 => Aggregate::Count,
        _ => return None,
    };
    let n = *v.get(5)? as usize;
    let mut archives = Vec::with_capacity(n);
    for i in 0..n {
        let at = 6 + i * 12;
        archives.push(Archive {
            step_secs: u32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?),
            retention_secs: u64::from_be_bytes(v.get(at + 4..at + 12)?.try_into().ok()?),
        });
    }
    (!archives.is_empty()).then_some((id, (archives, agg)))
}
