//! The storage engine: [`Store`], one type whose methods are spread over the files of this
//! folder, one concern each (as Prometheus' tsdb splits its head):
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the type, its options, opening a database |
//! | `write.rs` | the write path: names to ids, the log record, the head |
//! | `recover.rs` | opening: the index loaded, unflushed log records replayed, progress |
//! | `flush.rs` | the head into chunks and rollups, and the log records it covered deleted |
//! | `read.rs` | reads of one series at the resolution a range needs, and index lookups |
//! | `admin.rs` | register, delete, events, meta documents, compaction, metrics |
//!
//! Below them, [`crate::layout`] says what lives where in RocksDB, [`crate::chunk`] encodes
//! chunks, [`crate::rollup`] computes rollup rows and [`crate::head`] holds unflushed points.
//!
//! ## What the engine promises
//! A write returns only once its points are in a `log` record in RocksDB's WAL, and from then
//! on they are readable, survive the process crashing, and are counted once at every
//! resolution. They survive a power loss too once the WAL is synced: before the write returns
//! for [`Durability::Sync`], on the server's timer ([`Store::sync_wal`]) for buffered writes. The head (in memory) and the log (on disk) hold the same points
//! until a flush moves them into chunks. A flush is two RocksDB writes (the finest archive, then
//! the rollups with the deletion of the log records); it may stop anywhere, because replaying
//! the log over what it already wrote is idempotent (see `flush.rs`).

mod admin;
mod flush;
mod read;
mod recover;
mod write;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use rocksdb::{ColumnFamily, Options, DB};

use crate::error::{Error, Result};
use crate::head::Head;
use crate::index::Index;
use crate::layout;
use crate::retention::Schemas;
use crate::stats::Stats;

pub use read::Series;
pub use recover::{Recovery, RecoveryProgress};
pub use write::Durability;

pub(crate) use tally_common::unix_now;

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
    /// Every archive family, as opened. The set is known at open (the configured archives and
    /// any family on disk) and nothing creates one later: a series only ever gets archives of
    /// the configured schemas. Kept here so that `/metrics` and deletes do not ask the disk.
    archive_cfs: Vec<String>,
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
    /// Makes the next flushes fail after their first write, as a crash there would.
    #[cfg(test)]
    fail_before_second_flush_write: std::sync::atomic::AtomicBool,
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
            archives.extend(existing.iter().filter_map(|n| layout::parse_archive_cf(n)));
        }
        archives.sort_by_key(|a| (a.step_secs, a.retention_secs));
        archives.dedup();
        let mut cfs = layout::fixed_cf_descriptors();
        cfs.extend(archives.iter().map(|a| layout::archive_cf_descriptor(*a)));
        let archive_cfs = archives.iter().map(layout::archive_cf).collect();
        let db = DB::open_cf_descriptors(&db_opts, &path, cfs)?;
        let store = Store {
            inner: Arc::new(Inner {
                db,
                dir: opts.data_dir.clone(),
                archive_cfs,
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
                #[cfg(test)]
                fail_before_second_flush_write: Default::default(),
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

    /// A column family's handle.
    fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.inner
            .db
            .cf_handle(name)
            .ok_or_else(|| Error::Corrupt(format!("column family {name} missing")))
    }

    /// The archive families' names.
    fn archive_cfs(&self) -> impl Iterator<Item = &str> {
        self.inner.archive_cfs.iter().map(String::as_str)
    }

    /// Every family's name: the fixed ones, then the archives'.
    fn all_cfs(&self) -> impl Iterator<Item = &str> {
        layout::FIXED_CFS.into_iter().chain(self.archive_cfs())
    }

    /// Flushes the head and syncs the WAL: the clean-shutdown path.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        self.sync_wal()
    }
}

/// What the engine's unit tests share: a store in a temp dir, with one rolled-up schema.
#[cfg(test)]
pub(crate) mod testing {
    use regex::Regex;

    use super::{Store, StoreOptions};
    use crate::retention::{parse_retentions, Aggregate, Schema, Schemas};

    /// Series under `rolled.` keep 10 s for a day and 60 s rollups for a week; others 10 s.
    pub(crate) fn options(dir: &std::path::Path) -> StoreOptions {
        let mut o = StoreOptions::new(dir);
        o.schemas = Schemas {
            rules: vec![Schema {
                name: "rolled".into(),
                pattern: Regex::new(r"^rolled\.").expect("regex"),
                archives: parse_retentions("10s:1d,60s:7d").expect("valid"),
                aggregate: Aggregate::Average,
            }],
            default: parse_retentions("10s:1d").expect("valid"),
        };
        o
    }

    pub(crate) fn open(dir: &std::path::Path) -> Store {
        Store::open(options(dir)).expect("open")
    }

    /// How many records the `log` family holds.
    pub(crate) fn log_records(store: &Store) -> usize {
        let cf = store.cf(crate::layout::CF_LOG).expect("log family");
        store
            .inner
            .db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .count()
    }
}
