//! Issue 17: a full disk must not kill the store. The data directory is on a 48 MiB tmpfs, a
//! filler file takes most of it, acknowledged batches go in until the store refuses them, and
//! then: reads, `/render`, the page and `/metrics` answer; plaintext lines are held, not lost;
//! deleting the filler brings writes back without a restart; a restart while full opens; and
//! every acknowledged point reads back.
//!
//! Mounting needs root (CI runs as root); elsewhere each test says it is skipped and passes.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use tally_common::unix_now;

use crate::proc::StoreProc;

const MIB: u64 = 1 << 20;

/// A size-limited tmpfs mounted for one test, unmounted when dropped (also when the test
/// fails: the guard is dropped while unwinding, after the store guards declared after it).
struct Tmpfs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Tmpfs {
    /// `None` (with a note on stderr) when this process may not mount.
    fn mount(size_mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        #[allow(unsafe_code)]
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&mnt)
            .status()
            .expect("mount runs");
        if !status.success() {
            eprintln!("SKIPPED: mount -t tmpfs failed ({status}); no permission to mount here");
            return None;
        }
        Some(Tmpfs { dir, mnt })
    }

    fn free(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.mnt).expect("statvfs");
        st.f_bavail * st.f_frsize
    }

    /// Writes a filler file that leaves `leave` bytes free.
    fn fill_leaving(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.mnt.join(name);
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x5a_u8; 1 << 16];
        let mut left = self.free().saturating_sub(leave);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        f.sync_all().ok();
        path
    }

    /// A config file outside the tmpfs with `extra`; the data directory inside it.
    fn start_store(&self, extra: &str) -> StoreProc {
        let cfg = self.dir.path().join("store.toml");
        std::fs::write(
            &cfg,
            format!("self_metrics_interval = \"0s\"\nflush_interval = \"2s\"\n{extra}"),
        )
        .expect("config");
        StoreProc::start(
            &self.mnt.join("data"),
            &["--config", cfg.to_str().expect("utf-8 path")],
        )
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// What was acknowledged: per series, the slot numbers and values, to read back.
struct Acked {
    t0: i64,
    series: Vec<Vec<(i64, f64)>>,
}

const SERIES: usize = 50;
const BATCH: usize = 2000;

impl Acked {
    fn new() -> Acked {
        // 5 days ago, so every slot of the test stays within the default 7 days of 10 s points.
        let t0 = unix_now() - unix_now() % 10 - 5 * 86_400;
        Acked {
            t0,
            series: vec![Vec::new(); SERIES],
        }
    }

    fn name(s: usize) -> String {
        format!("full.s{s};disk=tmpfs")
    }

    /// Batch `b`: 2000 consecutive 10 s slots of one series, each value unique.
    fn body(&self, b: usize) -> (usize, Vec<(i64, f64)>, String) {
        let s = b % SERIES;
        let first = (b / SERIES * BATCH) as i64;
        let points: Vec<(i64, f64)> = (0..BATCH as i64)
            .map(|k| (first + k, (b * 100_000) as f64 + k as f64))
            .collect();
        let name = Acked::name(s);
        let body = points
            .iter()
            .map(|(slot, v)| format!("{name} {v} {}\n", self.t0 + slot * 10))
            .collect();
        (s, points, body)
    }

    fn points(&self) -> usize {
        self.series.iter().map(Vec::len).sum()
    }

    /// Every acknowledged point, read back over HTTP.
    fn check(&self, store: &StoreProc, when: &str) {
        for (s, want) in self.series.iter().enumerate() {
            let Some(last) = want.iter().map(|p| p.0).max() else {
                continue;
            };
            let url = store.url(&format!(
                "/api/v1/read?name={}&from={}&until={}",
                crate::compat::enc(&Acked::name(s)),
                self.t0 - 10,
                self.t0 + last * 10
            ));
            let resp = reqwest::blocking::get(&url).expect("read");
            assert_eq!(resp.status(), 200, "{when}: series {s}");
            let v: serde_json::Value = resp.json().expect("JSON");
            let values = v["values"].as_array().expect("values");
            for &(slot, value) in want {
                assert_eq!(
                    values.get(slot as usize).and_then(|x| x.as_f64()),
                    Some(value),
                    "{when}: series {s} slot {slot}"
                );
            }
        }
    }
}

/// POSTs batches until one is not acknowledged; returns its status, headers' Retry-After and
/// body. Every acknowledged batch is recorded.
fn ingest_until_refused(
    store: &StoreProc,
    acked: &mut Acked,
    next: &mut usize,
) -> (u16, Option<String>, String) {
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "never refused after {} batches",
            *next
        );
        let (s, points, body) = acked.body(*next);
        let resp = client
            .post(store.url("/api/v1/ingest"))
            .body(body)
            .send()
            .expect("the store answers");
        let status = resp.status().as_u16();
        if status == 200 {
            let reply: tally_proto::IngestReply = resp.json().expect("reply");
            assert_eq!(reply.accepted, BATCH as u64);
            acked.series[s].extend(points);
            *next += 1;
            continue;
        }
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        return (status, retry, resp.text().unwrap_or_default());
    }
}

/// Sends the next batch until it is acknowledged (writes resumed), within `limit`.
fn ingest_when_resumed(store: &StoreProc, acked: &mut Acked, next: &mut usize, limit: Duration) {
    let client = Client::new();
    let deadline = Instant::now() + limit;
    loop {
        let (s, points, body) = acked.body(*next);
        let resp = client
            .post(store.url("/api/v1/ingest"))
            .body(body)
            .send()
            .expect("the store answers");
        if resp.status() == 200 {
            acked.series[s].extend(points);
            *next += 1;
            return;
        }
        assert_eq!(resp.status(), 507, "{}", resp.text().unwrap_or_default());
        assert!(
            Instant::now() < deadline,
            "writes did not resume within {limit:?}: {}",
            resp.text().unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn metric(store: &StoreProc, name: &str) -> Option<f64> {
    store.metrics().lines().find_map(|l| {
        l.strip_prefix(&format!("tally_store_{name} "))?
            .parse()
            .ok()
    })
}

/// Reads, `/render`, the page and `/metrics` answer while writes are refused.
fn reads_answer(store: &StoreProc, acked: &Acked) {
    acked.check(store, "while refused");
    let target = crate::compat::enc("seriesByTag('disk=tmpfs')");
    let from = acked.t0 - 10;
    let resp = reqwest::blocking::get(store.url(&format!(
        "/render?target={target}&from={from}&until={}&format=json",
        from + 3600
    )))
    .expect("render");
    assert_eq!(resp.status(), 200);
    let rendered: serde_json::Value = resp.json().expect("JSON");
    assert!(!rendered.as_array().expect("series").is_empty());
    let page = reqwest::blocking::get(store.url("/")).expect("page");
    assert_eq!(page.status(), 200);
    assert_eq!(metric(store, "writes_refused"), Some(1.0));
}

#[test]
fn issue_17_below_the_reserve_writes_are_refused_reads_go_on_and_writes_resume() {
    let Some(fs) = Tmpfs::mount(48) else { return };
    let filler = fs.fill_leaving("filler", 20 * MIB);
    let mut store = fs.start_store("min_free_space = \"8MiB\"\n");
    let (mut acked, mut next) = (Acked::new(), 0);

    let (status, retry, body) = ingest_until_refused(&store, &mut acked, &mut next);
    assert_eq!(status, 507, "{body}");
    assert_eq!(retry.as_deref(), Some("10"));
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    let error = error["error"].as_str().expect("a message");
    assert!(
        error.starts_with("writes refused: ") && error.contains("below the reserve of 8.00 MiB"),
        "{error}"
    );
    assert!(acked.points() > 0, "some batches went in first");
    reads_answer(&store, &acked);

    // Plaintext lines sent meanwhile are held, not dropped: the connection is not read.
    let held_t = unix_now() - unix_now() % 10 - 60;
    let mut conn = TcpStream::connect(store.line).expect("connect");
    conn.write_all(format!("held.a 1 {held_t}\nheld.a 2 {}\n", held_t + 10).as_bytes())
        .expect("send");
    std::thread::sleep(Duration::from_millis(500));
    assert!(metric(&store, "points_refused").unwrap_or(0.0) >= 2.0);

    std::fs::remove_file(&filler).expect("delete the filler");
    ingest_when_resumed(&store, &mut acked, &mut next, Duration::from_secs(30));
    assert_eq!(metric(&store, "writes_refused"), Some(0.0));
    // The held connection was kept open: its lines are written, and it takes more.
    conn.write_all(format!("held.a 3 {}\n", held_t + 20).as_bytes())
        .expect("the connection is still open");
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let url = store.url(&format!(
            "/api/v1/read?name=held.a&from={}&until={}",
            held_t - 10,
            held_t + 20
        ));
        let resp = reqwest::blocking::get(&url).expect("read");
        let got = if resp.status() == 200 {
            resp.json::<serde_json::Value>().expect("JSON")["values"].clone()
        } else {
            serde_json::Value::Null
        };
        if got == serde_json::json!([1.0, 2.0, 3.0]) || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(held, serde_json::json!([1.0, 2.0, 3.0]));
    acked.check(&store, "after writes resumed");

    // Full again, and restarted while full: it opens (read-only), serves every point, and
    // takes writes again once space returns, without another restart.
    let (status, _, body) = {
        let _ = fs.fill_leaving("filler2", 4 * MIB);
        ingest_until_refused(&store, &mut acked, &mut next)
    };
    assert_eq!(status, 507, "{body}");
    store.kill9();
    let store = fs.start_store("min_free_space = \"8MiB\"\n");
    assert_eq!(metric(&store, "read_only"), Some(1.0));
    acked.check(&store, "after a restart while full");
    std::fs::remove_file(fs.mnt.join("filler2")).expect("delete");
    ingest_when_resumed(&store, &mut acked, &mut next, Duration::from_secs(30));
    assert_eq!(metric(&store, "read_only"), Some(0.0));
    acked.check(&store, "after the read-only start was reopened for writing");
}

/// Without a reserve the disk really fills up and RocksDB fails a write (the WAL append gets
/// ENOSPC): the store must neither abort (Debian's asserting librocksdb did) nor lose an
/// acknowledged point; it refuses writes, serves reads, reopens the database once the filler is
/// deleted, and comes up again after a kill -9 on the full disk.
#[test]
fn issue_17_a_write_that_fails_on_a_full_disk_loses_nothing_and_the_store_recovers() {
    let Some(fs) = Tmpfs::mount(48) else { return };
    let filler = fs.fill_leaving("filler", 16 * MIB);
    let mut store = fs.start_store("min_free_space = \"0\"\n");
    let (mut acked, mut next) = (Acked::new(), 0);

    let (status, retry, body) = ingest_until_refused(&store, &mut acked, &mut next);
    assert!(status == 503 || status == 507, "{status}: {body}");
    assert!(retry.is_some(), "Retry-After on {status}");
    assert!(acked.points() > 0);
    assert!(
        store.child.try_wait().expect("status").is_none(),
        "the store is still running"
    );
    // The write that failed put the store into refusing: the next is 507 with the reason.
    let (status, _, body) = ingest_until_refused(&store, &mut acked, &mut next);
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("no space left on device"), "{body}");
    acked.check(&store, "after the failed write");

    std::fs::remove_file(&filler).expect("delete the filler");
    ingest_when_resumed(&store, &mut acked, &mut next, Duration::from_secs(30));
    assert!(metric(&store, "db_reopens").unwrap_or(0.0) >= 1.0);
    acked.check(&store, "after the reopen");

    // Full again (a filler takes all but 2 MiB, batches the rest), then kill -9 and a restart
    // on the full disk. The filler is what an operator deletes; the store's own data is not.
    let filler = fs.fill_leaving("filler", 2 * MIB);
    let (status, _, body) = ingest_until_refused(&store, &mut acked, &mut next);
    assert!(status == 503 || status == 507, "{status}: {body}");
    store.kill9();
    let _ = fs.fill_leaving("last-bytes", 0);
    let store = fs.start_store("min_free_space = \"0\"\n");
    acked.check(&store, "after a restart on the full disk");
    std::fs::remove_file(&filler).expect("delete the filler");
    ingest_when_resumed(&store, &mut acked, &mut next, Duration::from_secs(30));
    acked.check(&store, "at the end");
}
