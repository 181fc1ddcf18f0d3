//! The write gate: whether the store takes writes now, and if not, why not and until when.
//!
//! A full disk must not take the store down, and nothing acknowledged may be lost on one. So
//! the store keeps a free-space reserve ([`MinFree`], `min_free_space`): below it, writes of
//! points are refused with a [`Refusal`] that says why (ingest answers 507, plaintext TCP
//! connections stop being read, UDP datagrams are dropped and counted), while reads, flushes and
//! the small documents other parts keep (alert state) go on. RocksDB's own flushes and
//! compactions need room too, which is what the reserve leaves them.
//!
//! Free space is measured with `statvfs` once a second ([`Store::check_space`], run by the
//! server) and again by the write path as soon as what it wrote since the last measure could
//! have crossed the reserve, so a fast writer cannot run past it between two measures. Writes
//! resume by themselves once free space is back above the reserve by a margin (so that a disk at
//! the edge does not flap), with one log line per change of state, never one per request.
//!
//! ## When a write fails anyway
//! If RocksDB fails a write (the disk filled up faster, or another program filled it), the
//! store refuses writes at once and **reopens the database** once space is back: it closes it
//! and opens it again in place, which replays the WAL up to the last write RocksDB accepted. It
//! does not resume the failed handle: RocksDB 7.9's C API has no `rocksdb_resume`, and resuming
//! after a WAL write error had bugs upstream (facebook/rocksdb#12448, #12767, #12873), while a
//! replay from the files is the path every crash test exercises. A write is acknowledged only
//! after RocksDB accepted it, so everything acknowledged is in the WAL that is replayed; the
//! in-memory index and head stay as they are (they hold exactly the accepted writes). Reads wait
//! for the reopen (it takes as long as RocksDB's own recovery) and go on.
//!
//! ## On a nearly full disk at start-up
//! Below the reserve, or when the read-write open fails for want of space, the store opens the
//! database read-only (which writes nothing) and says so; reads work, writes are refused, and
//! the next check with enough free space reopens it read-write.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{error, info, warn};

use super::{Db, Store};
use crate::error::Error;
use crate::stats::Stats;

/// How much free space the store keeps on its filesystem: below it, writes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MinFree {
    /// The larger of [`MinFree::DEFAULT_BYTES`] and [`MinFree::DEFAULT_PERCENT`] of the
    /// filesystem.
    #[default]
    Default,
    /// A number of bytes; 0 turns the reserve off (a failed write is still handled).
    Bytes(u64),
    /// A share of the filesystem's size, in percent (0 to 100).
    Percent(f64),
}

impl MinFree {
    /// The smallest default reserve: room for RocksDB to flush its memtables and compact.
    pub const DEFAULT_BYTES: u64 = 256 << 20;
    /// The default reserve as a share of the filesystem, for large disks.
    pub const DEFAULT_PERCENT: f64 = 1.0;

    /// The reserve in bytes on a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        let share = |pct: f64| (total as f64 * pct / 100.0) as u64;
        match self {
            MinFree::Default => Self::DEFAULT_BYTES.max(share(Self::DEFAULT_PERCENT)),
            MinFree::Bytes(n) => n,
            MinFree::Percent(p) => share(p),
        }
    }
}

/// Why writes are refused right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Free space is below the reserve.
    LowSpace {
        /// Bytes free (for unprivileged users) in the data directory's filesystem.
        free: u64,
        /// The reserve, in bytes.
        reserve: u64,
    },
    /// RocksDB failed a write; the database is reopened once there is space.
    WriteFailed {
        /// What failed, in a few words (the full error is in the log).
        cause: String,
    },
    /// The database is open read-only; it is reopened for writing once there is space.
    ReadOnly {
        /// Why it was opened read-only.
        cause: String,
    },
}

impl Refusal {
    /// Seconds a client should wait before it tries again (the `Retry-After` header).
    pub fn retry_after_secs(&self) -> u64 {
        10
    }

    fn kind(&self) -> &'static str {
        match self {
            Refusal::LowSpace { .. } => "low_space",
            Refusal::WriteFailed { .. } => "write_failed",
            Refusal::ReadOnly { .. } => "read_only",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::LowSpace { free, reserve } => write!(
                f,
                "{} free in the data directory's filesystem, below the reserve of {} \
                 (min_free_space); writes resume by themselves once {} are free",
                size(*free),
                size(*reserve),
                size(resume_at(*reserve))
            ),
            Refusal::WriteFailed { cause } => write!(
                f,
                "a write to the database failed ({cause}); it is reopened, and writes resume, \
                 once there is free space"
            ),
            Refusal::ReadOnly { cause } => write!(
                f,
                "the database is open read-only ({cause}); it is reopened for writing once \
                 there is free space"
            ),
        }
    }
}

/// Bytes for people, precise enough near a reserve: `7.99 MiB`, `1.50 GiB`, `512 bytes`.
pub(super) fn size(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", b / (MIB * 1024.0))
    } else if bytes >= 1 << 20 {
        format!("{:.2} MiB", b / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Free space at which refused writes resume: the reserve plus a margin (5 %, at least 1 MiB),
/// so that a filesystem at the edge does not flip between the two states on every check.
fn resume_at(reserve: u64) -> u64 {
    reserve.saturating_add((reserve / 20).max(1 << 20))
}

/// The few words of a RocksDB error a client is told (the whole error goes to the log).
pub(super) fn cause(e: &rocksdb::Error) -> String {
    cause_of(e.as_ref())
}

fn cause_of(text: &str) -> String {
    if text.contains("No space left on device") || text.contains("NoSpace") {
        "no space left on device".into()
    } else if text.contains("IO error") {
        "an I/O error".into()
    } else {
        "a database error".into()
    }
}

/// The gate's state, shared by every clone of a store.
#[derive(Debug)]
pub(super) struct Gate {
    dir: PathBuf,
    min_free: MinFree,
    /// Set while `state` holds a refusal: the write path's one load.
    refusing: AtomicBool,
    state: Mutex<Option<Refusal>>,
    /// The last measure, and the reserve it gave.
    free: AtomicU64,
    reserve: AtomicU64,
    /// Bytes written since the last measure (the log records: an estimate of what the disk
    /// took, which is re-measured as soon as it could have crossed the reserve).
    spent: AtomicU64,
    /// Whether the last measure failed (logged once per failure streak).
    measure_failed: AtomicBool,
    /// When a reopen that did not give a writable database may be tried again, and the next
    /// wait (doubling from 1 s to a minute): a database that only opens read-only for another
    /// reason than space must not be closed and opened every second.
    retry_reopen: Mutex<(Option<Instant>, Duration)>,
    /// Free and total bytes the tests make the filesystem report.
    #[cfg(test)]
    pub(super) fake: Mutex<Option<(u64, u64)>>,
}

impl Gate {
    pub(super) fn new(dir: PathBuf, min_free: MinFree) -> Gate {
        Gate {
            dir,
            min_free,
            refusing: AtomicBool::new(false),
            state: Mutex::new(None),
            free: AtomicU64::new(u64::MAX),
            reserve: AtomicU64::new(0),
            spent: AtomicU64::new(0),
            measure_failed: AtomicBool::new(false),
            retry_reopen: Mutex::new((None, Duration::from_secs(1))),
            #[cfg(test)]
            fake: Mutex::new(None),
        }
    }

    /// Free and total bytes of the data directory's filesystem.
    fn statvfs(&self) -> std::io::Result<(u64, u64)> {
        #[cfg(test)]
        if let Some(fake) = *self.fake.lock() {
            return Ok(fake);
        }
        let st = rustix::fs::statvfs(&self.dir)?;
        Ok((
            st.f_bavail.saturating_mul(st.f_frsize),
            st.f_blocks.saturating_mul(st.f_frsize),
        ))
    }

    /// Measures free space now; `None` if the filesystem cannot say (then nothing is refused
    /// for space, and a failed write is still handled).
    pub(super) fn measure(&self) -> Option<u64> {
        match self.statvfs() {
            Ok((free, total)) => {
                self.free.store(free, Ordering::Relaxed);
                self.reserve
                    .store(self.min_free.bytes(total), Ordering::Relaxed);
                self.spent.store(0, Ordering::Relaxed);
                if self.measure_failed.swap(false, Ordering::Relaxed) {
                    info!(dir = %self.dir.display(), "free space can be measured again");
                }
                Some(free)
            }
            Err(e) => {
                if !self.measure_failed.swap(true, Ordering::Relaxed) {
                    warn!(dir = %self.dir.display(), error = %e, "cannot measure free space; the reserve is not enforced meanwhile");
                }
                self.free.store(u64::MAX, Ordering::Relaxed);
                None
            }
        }
    }

    pub(super) fn reserve(&self) -> u64 {
        self.reserve.load(Ordering::Relaxed)
    }

    pub(super) fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Whether the last measure is below the reserve.
    pub(super) fn below_reserve(&self) -> bool {
        self.free() < self.reserve()
    }

    /// Whether the last measure leaves room to take writes again (or reopen for them).
    fn room_to_resume(&self) -> bool {
        self.free() >= resume_at(self.reserve())
    }

    pub(super) fn current(&self) -> Option<Refusal> {
        self.state.lock().clone()
    }

    pub(super) fn is_refusing(&self) -> bool {
        self.refusing.load(Ordering::Acquire)
    }

    /// Whether the database must be reopened before it takes writes again.
    fn needs_reopen(&self) -> bool {
        matches!(
            *self.state.lock(),
            Some(Refusal::WriteFailed { .. } | Refusal::ReadOnly { .. })
        )
    }

    /// Whether a reopen may be tried now.
    fn reopen_due(&self) -> bool {
        self.retry_reopen
            .lock()
            .0
            .is_none_or(|at| Instant::now() >= at)
    }

    /// After a reopen: writable (retry at once next time), or not (wait, twice as long as before).
    fn reopened(&self, writable: bool) {
        let mut retry = self.retry_reopen.lock();
        *retry = if writable {
            (None, Duration::from_secs(1))
        } else {
            (
                Some(Instant::now() + retry.1),
                (retry.1 * 2).min(Duration::from_secs(60)),
            )
        };
    }

    /// Refuses writes from now on for `why`; logs when the state changes. A refusal that needs
    /// a reopen is not replaced by one for low space.
    pub(super) fn refuse(&self, why: Refusal) {
        let mut state = self.state.lock();
        let changed = match (&*state, &why) {
            (None, _) => true,
            (Some(old), new) if old.kind() == new.kind() => false,
            (Some(Refusal::LowSpace { .. }), _) => true,
            (Some(_), Refusal::LowSpace { .. }) => return,
            (Some(_), _) => true,
        };
        if changed {
            match &why {
                Refusal::LowSpace { .. } => {
                    warn!(dir = %self.dir.display(), reason = %why, "refusing writes: free space is below the reserve")
                }
                Refusal::WriteFailed { .. } => {
                    error!(dir = %self.dir.display(), reason = %why, "refusing writes: a database write failed")
                }
                Refusal::ReadOnly { .. } => {
                    warn!(dir = %self.dir.display(), reason = %why, "refusing writes: the database is read-only")
                }
            }
        }
        *state = Some(why);
        self.refusing.store(true, Ordering::Release);
    }

    /// Takes writes again; logs it if they were refused.
    fn resume(&self, how: &str) {
        let mut state = self.state.lock();
        if let Some(old) = state.take() {
            info!(dir = %self.dir.display(), free = %size(self.free()), was = old.kind(), "{how}: taking writes again");
        }
        self.refusing.store(false, Ordering::Release);
    }

    /// Whether a write may go ahead: the refusal if not. Re-measures first when what was written
    /// since the last measure could have taken free space below the reserve.
    pub(super) fn admit(&self) -> std::result::Result<(), Refusal> {
        if self.is_refusing() {
            if let Some(r) = self.current() {
                return Err(r);
            }
        }
        let reserve = self.reserve();
        if reserve > 0 && self.spent.load(Ordering::Relaxed).saturating_add(reserve) >= self.free()
        {
            if let Some(free) = self.measure() {
                let reserve = self.reserve();
                if free < reserve {
                    let why = Refusal::LowSpace { free, reserve };
                    self.refuse(why.clone());
                    return Err(why);
                }
            }
        }
        Ok(())
    }

    /// Counts bytes written since the last measure.
    pub(super) fn spend(&self, bytes: u64) {
        self.spent.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Store {
    /// Why writes are refused now, if they are.
    pub fn refusal(&self) -> Option<Refusal> {
        self.inner.gate.current()
    }

    /// Whether writes are taken now (cheap: one atomic load).
    pub fn accepts_writes(&self) -> bool {
        !self.inner.gate.is_refusing()
    }

    /// Measures free space and moves the gate: refuses below the reserve, resumes above it,
    /// and reopens the database (read-write if it can) after a failed write or a read-only
    /// open once there is room. The server calls it every second; it blocks while reopening.
    pub fn check_space(&self) {
        let gate = &self.inner.gate;
        let measured = gate.measure();
        if gate.needs_reopen() {
            if (measured.is_none() || gate.room_to_resume()) && gate.reopen_due() {
                self.reopen();
                gate.reopened(!gate.needs_reopen());
            }
            return;
        }
        if measured.is_none() {
            return;
        }
        if gate.below_reserve() {
            gate.refuse(Refusal::LowSpace {
                free: gate.free(),
                reserve: gate.reserve(),
            });
        } else if gate.is_refusing() && gate.room_to_resume() {
            gate.resume("free space is back above the reserve");
        } else if let Some(Refusal::LowSpace { .. }) = gate.current() {
            // Still refusing (between the reserve and the margin): keep the figures current.
            *gate.state.lock() = Some(Refusal::LowSpace {
                free: gate.free(),
                reserve: gate.reserve(),
            });
        }
    }

    /// A RocksDB write failed: refuse writes until the database is reopened.
    pub(super) fn write_failed(&self, what: &str, e: &rocksdb::Error) {
        self.failed(what, e.as_ref());
    }

    /// [`Store::write_failed`], from the error's text.
    fn failed(&self, what: &str, error: &str) {
        Stats::add(&self.inner.stats.write_errors, 1);
        if !self.inner.gate.needs_reopen() {
            error!(
                error,
                "{what} failed; the database will be reopened once there is free space"
            );
        }
        self.inner.gate.refuse(Refusal::WriteFailed {
            cause: cause_of(error),
        });
    }

    /// Whether the database takes writes of any kind now (flushes, meta documents): false while
    /// it is read-only or a failed write waits for the reopen.
    pub(super) fn db_writable(&self) -> bool {
        !self.inner.gate.needs_reopen()
    }

    /// Closes the database and opens it again in place (see the module doc): read-write if it
    /// can, else read-only. The head and the index stay; reads wait while it runs.
    fn reopen(&self) {
        let _flushing = self.inner.flush_lock.lock();
        let started = Instant::now();
        self.inner.reopening.store(true, Ordering::Release);
        let old = self.inner.db.write().take();
        if let Some(old) = old {
            if let Err(old) = wait_for_last(old, Duration::from_secs(60)) {
                warn!("the database is still in use after 60 s; reopening later");
                *self.inner.db.write() = Some(old);
                self.inner.reopening.store(false, Ordering::Release);
                return;
            }
        }
        let (path, archives) = (&self.inner.path, &self.inner.archives);
        let opened = match Db::open(path, archives, false) {
            Ok(db) => Ok(db),
            Err(e) => {
                warn!(error = %e, "reopening the database for writing failed; opening it read-only");
                let why = format!("it could not be opened for writing: {}", cause(&e));
                Db::open(path, archives, true)
                    .inspect(|_| self.inner.gate.refuse(Refusal::ReadOnly { cause: why }))
            }
        };
        Stats::add(&self.inner.stats.db_reopens, 1);
        match opened {
            Ok(db) => {
                let read_only = db.read_only;
                *self.inner.db.write() = Some(Arc::new(db));
                info!(
                    read_only,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "database reopened"
                );
                if !read_only {
                    if self.inner.gate.below_reserve() {
                        // Open for writing, but the reserve still holds writes back.
                        *self.inner.gate.state.lock() = None;
                        self.inner.gate.refuse(Refusal::LowSpace {
                            free: self.inner.gate.free(),
                            reserve: self.inner.gate.reserve(),
                        });
                    } else {
                        self.inner.gate.resume("the database is open for writing");
                    }
                }
            }
            Err(e) => {
                error!(error = %e, "the database could not be reopened, not even read-only; retrying every second");
            }
        }
        self.inner.reopening.store(false, Ordering::Release);
    }
}

#[cfg(test)]
impl Store {
    /// Makes the filesystem report `free` of `total` bytes from now on (tests).
    pub(crate) fn fake_free_space(&self, free: u64, total: u64) {
        *self.inner.gate.fake.lock() = Some((free, total));
    }
}

/// Waits until `db` is the last handle (in-flight reads and writes done), then drops it, which
/// closes RocksDB; gives it back if that takes longer than `limit`.
fn wait_for_last(mut db: Arc<Db>, limit: Duration) -> std::result::Result<(), Arc<Db>> {
    let deadline = Instant::now() + limit;
    loop {
        match Arc::try_unwrap(db) {
            Ok(last) => {
                drop(last);
                return Ok(());
            }
            Err(shared) if Instant::now() < deadline => {
                db = shared;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(shared) => return Err(shared),
        }
    }
}

/// A refused write, as the store's error.
impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        Error::WritesRefused(r)
    }
}

/// The gate's figures for `/metrics`.
pub(super) fn gauges(store: &Store) -> [(&'static str, &'static str, u64); 4] {
    let gate = &store.inner.gate;
    let free = gate.free();
    [
        (
            "writes_refused",
            "1 while writes are refused (low disk space, a failed write, read-only).",
            u64::from(gate.is_refusing()),
        ),
        (
            "disk_free_bytes",
            "Free bytes in the data directory's filesystem, as last measured.",
            if free == u64::MAX { 0 } else { free },
        ),
        (
            "disk_reserve_bytes",
            "The free-space reserve (min_free_space): below it writes are refused.",
            gate.reserve(),
        ),
        (
            "read_only",
            "1 while the database is open read-only.",
            u64::from(matches!(gate.current(), Some(Refusal::ReadOnly { .. }))),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::PointBatch;
    use crate::engine::testing::options;
    use crate::engine::{unix_now, Durability};

    const MIB: u64 = 1 << 20;

    /// A store with an 8 MiB reserve on a filesystem of 100 MiB that reports `free`.
    fn store_with_free(dir: &std::path::Path, free: u64) -> Store {
        let mut o = options(dir);
        o.min_free = MinFree::Bytes(8 * MIB);
        let store = Store::open(o).expect("open");
        set_free(&store, free);
        store
    }

    fn set_free(store: &Store, free: u64) {
        store.fake_free_space(free, 100 * MIB);
    }

    fn points(name: &str, n: i64) -> PointBatch {
        let t0 = unix_now() - 3600;
        let mut b = PointBatch::default();
        for i in 0..n {
            b.push(name, t0 + i * 10, i as f64);
        }
        b
    }

    fn metric(store: &Store, name: &str) -> u64 {
        store
            .metrics()
            .into_iter()
            .find(|m| m.name == name)
            .map_or(u64::MAX, |m| m.value)
    }

    /// Issue 17: below the reserve a write is refused, says why, writes nothing and creates no
    /// series; reads go on; once free space is back above the reserve by the margin, writes are
    /// taken again without a restart (and not before: 8.5 MiB is above 8 but below 9).
    #[test]
    fn issue_17_below_the_reserve_writes_are_refused_and_resume_by_themselves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_free(dir.path(), 50 * MIB);
        store.check_space();
        store
            .write(&points("before", 3), Durability::Sync)
            .expect("write");

        // Just above the reserve as last measured; the disk then fills faster than the poll.
        set_free(&store, 8 * MIB + 32);
        store.check_space();
        set_free(&store, 5 * MIB);
        store
            .write(&points("before", 3), Durability::Sync)
            .expect("32 bytes were left as last measured");
        let err = store
            .write(&points("refused", 3), Durability::Sync)
            .expect_err("the write path measured again: what it wrote could have crossed");
        let Error::WritesRefused(refusal) = &err else {
            panic!("{err}");
        };
        assert_eq!(
            *refusal,
            Refusal::LowSpace {
                free: 5 * MIB,
                reserve: 8 * MIB
            }
        );
        assert!(
            err.to_string().starts_with("writes refused: 5.00 MiB free"),
            "{err}"
        );
        assert!(!store.accepts_writes());
        assert_eq!(store.series_count(), 1, "a refused write creates no series");
        assert_eq!(
            (
                metric(&store, "write_refusals"),
                metric(&store, "points_refused")
            ),
            (1, 3)
        );
        assert_eq!(
            (
                metric(&store, "writes_refused"),
                metric(&store, "disk_free_bytes")
            ),
            (1, 5 * MIB)
        );
        let read = store
            .read("before", unix_now() - 3700, unix_now(), None)
            .expect("reads go on")
            .expect("exists");
        assert_eq!(read.values.iter().flatten().count(), 3);
        store.flush().expect("flushes go on below the reserve");

        set_free(&store, 8 * MIB + MIB / 2);
        store.check_space();
        assert!(!store.accepts_writes(), "within the margin: still refused");
        set_free(&store, 9 * MIB);
        store.check_space();
        assert!(store.accepts_writes());
        assert_eq!(metric(&store, "writes_refused"), 0);
        store
            .write(&points("after", 3), Durability::Sync)
            .expect("taken again");
    }

    /// Issue 17: after a failed write the store refuses writes, keeps serving reads, and once
    /// there is space closes and reopens the database in place: everything written before,
    /// flushed or only in the log, is still there and writes go on, in the same process.
    #[test]
    fn issue_17_after_a_failed_write_the_database_is_reopened_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_free(dir.path(), 50 * MIB);
        store
            .write(&points("flushed", 5), Durability::Sync)
            .expect("write");
        store.flush().expect("flush");
        store
            .write(&points("in.log", 5), Durability::Sync)
            .expect("write");

        set_free(&store, 0);
        store.failed(
            "a write of points",
            "IO error: No space left on device: While appending to file: 000009.log",
        );
        let Some(Refusal::WriteFailed { cause }) = store.refusal() else {
            panic!("{:?}", store.refusal());
        };
        assert_eq!(cause, "no space left on device");
        store.flush().expect("a flush waits for the reopen");
        store.check_space();
        assert_eq!(metric(&store, "db_reopens"), 0, "no reopen without space");

        // A reader holds the database while the reopen starts: it waits for the reader.
        let reader = {
            let store = store.clone();
            std::thread::spawn(move || {
                let db = store.db().expect("open");
                std::thread::sleep(std::time::Duration::from_millis(200));
                drop(db);
                store.read("flushed", unix_now() - 3700, unix_now(), None)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        set_free(&store, 50 * MIB);
        store.check_space();
        assert_eq!(metric(&store, "db_reopens"), 1);
        assert!(store.accepts_writes(), "{:?}", store.refusal());
        let read = reader
            .join()
            .expect("reader")
            .expect("read")
            .expect("exists");
        assert_eq!(read.values.iter().flatten().count(), 5);
        store
            .write(&points("after", 5), Durability::Sync)
            .expect("writes go on");
        store.flush().expect("flush");
        drop(store);

        let store = Store::open(options(dir.path())).expect("reopen");
        for name in ["flushed", "in.log", "after"] {
            let read = store
                .read(name, unix_now() - 3700, unix_now(), None)
                .expect("read")
                .expect("exists");
            assert_eq!(read.values.iter().flatten().count(), 5, "{name}");
        }
    }

    /// Issue 17: a restart on a disk below the reserve opens the database read-only rather than
    /// failing: the points still in the log are replayed and readable, writes of every kind are
    /// refused, and once there is space the database is reopened for writing in place.
    #[test]
    fn issue_17_below_the_reserve_at_start_up_the_store_opens_read_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(options(dir.path())).expect("open");
            store
                .write(&points("in.log", 5), Durability::Sync)
                .expect("write");
            // Dropped without a flush: the points are only in the log.
        }
        let mut o = options(dir.path());
        o.min_free = MinFree::Bytes(1 << 50);
        let store = Store::open(o).expect("opens read-only below the reserve");
        let Some(Refusal::ReadOnly { cause }) = store.refusal() else {
            panic!("{:?}", store.refusal());
        };
        assert!(
            cause.starts_with("the disk was below the free-space reserve"),
            "{cause}"
        );
        assert_eq!(metric(&store, "read_only"), 1);
        let read = store
            .read("in.log", unix_now() - 3700, unix_now(), None)
            .expect("read")
            .expect("replayed");
        assert_eq!(read.values.iter().flatten().count(), 5);
        assert!(matches!(
            store.write(&points("refused", 1), Durability::Sync),
            Err(Error::WritesRefused(Refusal::ReadOnly { .. }))
        ));
        assert!(store.put_meta("k", b"v").is_err());
        store.flush().expect("nothing to do read-only");

        store.fake_free_space(1 << 51, 1 << 52);
        store.check_space();
        assert!(store.accepts_writes(), "{:?}", store.refusal());
        assert_eq!(metric(&store, "read_only"), 0);
        store.put_meta("k", b"v").expect("writable again");
        store
            .write(&points("after", 5), Durability::Sync)
            .expect("write");
        store.flush().expect("flush");
        let read = store
            .read("in.log", unix_now() - 3700, unix_now(), None)
            .expect("read")
            .expect("exists");
        assert_eq!(read.values.iter().flatten().count(), 5);
    }

    #[test]
    fn the_default_reserve_is_the_larger_of_256_mib_and_one_percent() {
        assert_eq!(MinFree::Default.bytes(1 << 30), 256 << 20);
        assert_eq!(MinFree::Default.bytes(100 << 30), (1 << 30) as u64);
        assert_eq!(MinFree::Bytes(0).bytes(1 << 30), 0);
        assert_eq!(MinFree::Percent(10.0).bytes(1000), 100);
    }

    #[test]
    fn resuming_needs_a_margin_above_the_reserve() {
        assert_eq!(resume_at(0), 1 << 20);
        assert_eq!(resume_at(256 << 20), (256 << 20) + (256 << 20) / 20);
    }

    #[test]
    fn a_refusal_says_why_and_what_brings_writes_back() {
        assert_eq!(
            (size(512), size(3 << 30), size((1 << 20) * 3 / 2)),
            ("512 bytes".into(), "3.00 GiB".into(), "1.50 MiB".into())
        );
        let r = Refusal::LowSpace {
            free: (5 << 20) - 10_000,
            reserve: 8 << 20,
        };
        assert_eq!(
            r.to_string(),
            "4.99 MiB free in the data directory's filesystem, below the reserve of 8.00 MiB \
             (min_free_space); writes resume by themselves once 9.00 MiB are free"
        );
    }
}
