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
//! | `gate.rs` | whether writes are taken: the free-space reserve, failed writes, reopening |
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
//!
//! A full disk does not stop it either: below a free-space reserve writes are refused with the
//! reason, and a write RocksDB fails makes the store reopen the database in place once there is
//! space again, without losing anything it acknowledged (see `gate.rs`).

mod admin;
mod flush;
mod gate;
mod read;
mod recover;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use rocksdb::{ColumnFamily, Options, DB};
use tracing::warn;

use crate::error::{Error, Result};
use crate::head::Head;
use crate::index::Index;
use crate::layout;
use crate::retention::{Archive, Schemas};
use crate::stats::Stats;

pub use gate::{MinFree, Refusal};
pub use read::Series;
pub use recover::{Recovery, RecoveryProgress};
pub use write::{Durability, Written};

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
    /// The free space kept on the data directory's filesystem: below it, writes are refused.
    pub min_free: MinFree,
}

impl StoreOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            data_dir: data_dir.into(),
            schemas: Schemas::default(),
            max_head_points: 4_000_000,
            max_points_per_read: 10_000_000,
            progress: None,
            min_free: MinFree::Default,
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
    /// The database. `None` only while it is being reopened (or if reopening failed): see
    /// [`Store::db`] and `gate.rs`.
    db: RwLock<Option<Arc<Db>>>,
    reopening: AtomicBool,
    /// Where the database is and the archive families it has: what reopening it needs.
    path: PathBuf,
    archives: Vec<Archive>,
    /// Whether writes are taken now, and why not.
    gate: gate::Gate,
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
    /// What flushes know of the chunks of series created since open (held by the flusher).
    flushed_to: Mutex<flush::FlushedTo>,
    flush_wanted: (Mutex<bool>, Condvar),
    next_log: AtomicU64,
    next_event: AtomicU64,
    schemas: Schemas,
    max_head_points: usize,
    max_points_per_read: usize,
    /// Points no retention keeps are refused; below this age a point needs no look-up (the
    /// shortest of the schemas' longest retentions).
    keep_at_least_secs: i64,
    old_points_log: write::OldPointsLog,
    stats: Stats,
    /// Makes the next flushes fail after their first write, as a crash there would.
    #[cfg(test)]
    fail_before_second_flush_write: std::sync::atomic::AtomicBool,
    /// Lets points of any age in, as data written before they were refused (or by an older
    /// version) still is on disk: for the tests of what expires it.
    #[cfg(test)]
    accept_any_age: std::sync::atomic::AtomicBool,
}

/// One open RocksDB database: what [`Store::db`] hands out.
pub(super) struct Db {
    rocks: DB,
    /// Opened read-only (on a nearly full disk): reads only, writes refused by the gate.
    read_only: bool,
}

impl std::ops::Deref for Db {
    type Target = DB;
    fn deref(&self) -> &DB {
        &self.rocks
    }
}

impl Db {
    /// The options every open uses.
    fn options() -> Options {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_max_total_wal_size(512 << 20);
        db_opts.set_keep_log_file_num(5);
        // RocksDB's own LOG at INFO is option dumps and compaction statistics, hundreds of KB a
        // day that nobody running Tally reads (its errors reach Tally's log as errors); warnings
        // and errors are kept.
        db_opts.set_log_level(rocksdb::LogLevel::Warn);
        db_opts
    }

    /// Opens the database at `path` with the fixed families and one per archive.
    fn open(path: &Path, archives: &[Archive], read_only: bool) -> Result<Db, rocksdb::Error> {
        let mut cfs = layout::fixed_cf_descriptors();
        cfs.extend(archives.iter().map(|a| layout::archive_cf_descriptor(*a)));
        let opts = Db::options();
        let rocks = if read_only {
            DB::open_cf_descriptors_read_only(&opts, path, cfs, false)?
        } else {
            DB::open_cf_descriptors(&opts, path, cfs)?
        };
        Ok(Db { rocks, read_only })
    }

    /// A column family's handle.
    fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.rocks
            .cf_handle(name)
            .ok_or_else(|| Error::Corrupt(format!("column family {name} missing")))
    }
}

impl Store {
    /// Opens (or creates) a store, replaying log records that were not flushed before a crash.
    ///
    /// On a filesystem below the free-space reserve, or when opening for writing fails for want
    /// of space, the database is opened read-only: reads work, writes are refused until
    /// [`Store::check_space`] finds room and reopens it for writing.
    pub fn open(opts: StoreOptions) -> Result<Store> {
        std::fs::create_dir_all(&opts.data_dir)?;
        let path = opts.data_dir.join("db");
        let mut archives = opts.schemas.all_archives();
        // Families of archives no longer configured still hold data, and still expire.
        if let Ok(existing) = DB::list_cf(&Db::options(), &path) {
            archives.extend(existing.iter().filter_map(|n| layout::parse_archive_cf(n)));
        }
        archives.sort_by_key(|a| (a.step_secs, a.retention_secs));
        archives.dedup();
        let archive_cfs = archives.iter().map(layout::archive_cf).collect();

        let gate = gate::Gate::new(opts.data_dir.clone(), opts.min_free);
        gate.measure();
        let exists = path.join("CURRENT").exists();
        let (db, read_only_why) = if exists && gate.below_reserve() {
            let why = format!(
                "the disk was below the free-space reserve at start-up: {} free of {} kept",
                gate::size(gate.free()),
                gate::size(gate.reserve())
            );
            (Db::open(&path, &archives, true)?, Some(why))
        } else {
            match Db::open(&path, &archives, false) {
                Ok(db) => (db, None),
                Err(e) if exists && gate::cause(&e) == "no space left on device" => {
                    warn!(error = %e, "opening the database for writing failed; opening it read-only");
                    let why = "it could not be opened for writing: no space left on device";
                    (Db::open(&path, &archives, true)?, Some(why.to_owned()))
                }
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(why) = read_only_why {
            warn!(dir = %opts.data_dir.display(), "opened read-only: {why}; reads work, writes are refused until there is free space");
            gate.refuse(Refusal::ReadOnly { cause: why });
        }
        let keep_at_least_secs = opts.schemas.shortest_longest_retention_secs();
        let store = Store {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(Arc::new(db))),
                reopening: AtomicBool::new(false),
                path,
                archives,
                gate,
                dir: opts.data_dir.clone(),
                archive_cfs,
                index: RwLock::new(Index::default()),
                unpersisted: Mutex::new(Vec::new()),
                head: Mutex::new(Head::default()),
                frozen: RwLock::new(None),
                flush_lock: Mutex::new(()),
                flushed_to: Mutex::new(flush::FlushedTo::default()),
                flush_wanted: (Mutex::new(false), Condvar::new()),
                next_log: AtomicU64::new(0),
                next_event: AtomicU64::new(1),
                schemas: opts.schemas,
                max_head_points: opts.max_head_points,
                max_points_per_read: opts.max_points_per_read,
                keep_at_least_secs,
                old_points_log: Default::default(),
                stats: Stats::default(),
                #[cfg(test)]
                fail_before_second_flush_write: Default::default(),
                #[cfg(test)]
                accept_any_age: Default::default(),
            }),
        };
        store.load_index()?;
        let existing = store.inner.index.read().id_count();
        *store.inner.flushed_to.lock() = flush::FlushedTo::at_open(existing);
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

    /// The database, for one operation: hold the handle no longer than it takes. While it is
    /// being reopened this waits (up to 30 s) for the new one.
    fn db(&self) -> Result<Arc<Db>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(db) = self.inner.db.read().as_ref() {
                return Ok(db.clone());
            }
            if !self.inner.reopening.load(Ordering::Acquire) || Instant::now() >= deadline {
                return Err(Error::Unavailable(
                    "the database is not open (reopening it failed; see the log)".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The archive families' names.
    fn archive_cfs(&self) -> impl Iterator<Item = &str> {
        self.inner.archive_cfs.iter().map(String::as_str)
    }

    /// Every family's name: the fixed ones, then the archives'.
    fn all_cfs(&self) -> impl Iterator<Item = &str> {
        layout::FIXED_CFS.into_iter().chain(self.archive_cfs())
    }

    /// Flushes the head and syncs the WAL: the clean-shutdown path. With the database
    /// read-only or waiting for a reopen there is nothing to do: the log records stay in the
    /// WAL, replayed at the next open.
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
        let db = store.db().expect("open");
        let cf = db.cf(crate::layout::CF_LOG).expect("log family");
        db.iterator_cf(cf, rocksdb::IteratorMode::Start).count()
    }
}
