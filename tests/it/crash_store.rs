//! Issue 17: the store under acknowledged load, `kill -9`ed at random moments many times (while
//! it flushes, while it compacts, while it recovers from the previous kill, while `tally
//! compact` runs on its directory), restarted each time with a different flush and compaction
//! setting. Every point whose batch was acknowledged (a 200 with its reply) must read back
//! with its value, no value may appear that was not written, and every 1-minute rollup must be
//! the sum of the raw points under it (a point replayed twice into a rollup would show there).
//!
//! Writers own disjoint series and write each (series, timestamp) once, with a value derived
//! from both; a batch whose answer was lost is sent again, as the agent does, until it is
//! acknowledged. Slots are written in a shuffled order within blocks, so later batches merge
//! into chunks and rollup slots that earlier flushes already wrote.
//!
//! After each restart the batches acknowledged last before the kill (the ones a crash is most
//! likely to lose) are read back at once; at the end, after one more kill and a restart, every
//! series is read back whole, raw and rolled up. The figures are printed at the end; see
//! `crash.rs` for the parameters (`TALLY_CRASH_*`). The long run of the session:
//!
//! ```text
//! TALLY_BIN=target/release/tally TALLY_CRASH_KILLS=200 TALLY_CRASH_SECS=3600 \
//!   cargo test --test it crash_store:: -- --nocapture
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tally_proto::IngestReply;

use crate::crash::{tail, Child9, Params};
use crate::proc::{free_port, unix_now, Rng};

const WRITERS: usize = 4;
const SERIES_PER_WRITER: usize = 150;
const STEP: i64 = 10;
/// Slots per series: 6 days of 10 s steps, all inside the 7-day finest archive.
const SLOTS: u32 = 6 * 86_400 / 10;
const SENT: u8 = 1;
const ACKED: u8 = 2;

/// The value of a slot: derived from the series and the slot, an integer (exact sums).
fn value(series: usize, slot: u32) -> f64 {
    ((series as u64 * 7919 + u64::from(slot) * 104_729) % 1_000_003) as f64
}

/// The `k`th slot written: blocks of 64 in a fixed shuffled order (37 is prime to 64).
fn slot_at(k: u32) -> u32 {
    k / 64 * 64 + (k % 64 * 37 + 11) % 64
}

fn series_name(s: usize) -> String {
    format!("crash.s{s:03};w={}", s / SERIES_PER_WRITER)
}

struct SeriesLedger {
    /// Slots handed out so far (`slot_at(0..next)`).
    next: u32,
    /// Per slot: 0 never sent, `SENT`, `ACKED`.
    state: Vec<u8>,
}

/// One batch: per series, its slots.
type Parts = Vec<(usize, Vec<u32>)>;

struct Shared {
    t0: i64,
    http: String,
    series: Vec<Mutex<SeriesLedger>>,
    /// The batches acknowledged last, newest at the back.
    recent: Mutex<VecDeque<Parts>>,
    acked_points: AtomicU64,
    acked_batches: AtomicU64,
    failed_posts: AtomicU64,
    /// Answers no correct store gives: a 4xx, or a 200 that did not accept every line.
    anomalies: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn ts(&self, slot: u32) -> i64 {
        self.t0 + i64::from(slot) * STEP
    }
}

fn make_batch(shared: &Shared, rng: &mut Rng, w: usize) -> Option<(Parts, String)> {
    let mut parts = Vec::new();
    let mut body = String::new();
    for _ in 0..1 + rng.below(6) {
        let s = w * SERIES_PER_WRITER + rng.below(SERIES_PER_WRITER as u64) as usize;
        let mut l = shared.series[s].lock().expect("ledger");
        let name = series_name(s);
        let mut slots = Vec::new();
        for _ in 0..1 + rng.below(30) {
            if l.next >= SLOTS {
                break;
            }
            let slot = slot_at(l.next);
            l.next += 1;
            l.state[slot as usize] = SENT;
            body.push_str(&format!("{name} {} {}\n", value(s, slot), shared.ts(slot)));
            slots.push(slot);
        }
        if !slots.is_empty() {
            parts.push((s, slots));
        }
    }
    (!parts.is_empty()).then_some((parts, body))
}

/// POSTs one batch; `Ok` only with a 200 whose reply was read whole.
fn post(client: &reqwest::blocking::Client, http: &str, body: &str) -> Result<IngestReply, String> {
    let resp = client
        .post(format!("http://{http}/api/v1/ingest"))
        .header("content-type", "text/plain; charset=utf-8")
        .body(body.to_string())
        .send()
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("reply {text:?}: {e}"))
}

/// Sends batches until told to stop; a batch without an acknowledgement is sent again until it
/// has one, so at the end every point sent is acknowledged.
fn writer(shared: Arc<Shared>, w: usize, seed: u64) {
    let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut pending: Option<(Parts, String)> = None;
    loop {
        let (parts, body) = match pending.take() {
            Some(b) => b,
            None if shared.stop.load(Relaxed) => return,
            None => match make_batch(&shared, &mut rng, w) {
                Some(b) => b,
                None => return,
            },
        };
        let points: usize = parts.iter().map(|p| p.1.len()).sum();
        match post(&client, &shared.http, &body) {
            Ok(reply) => {
                if reply.accepted != points as u64 || reply.rejected != 0 {
                    shared
                        .anomalies
                        .lock()
                        .expect("anomalies")
                        .push(format!("{points} points sent, reply {reply:?}"));
                }
                for (s, slots) in &parts {
                    let mut l = shared.series[*s].lock().expect("ledger");
                    for &slot in slots {
                        l.state[slot as usize] = ACKED;
                    }
                }
                shared.acked_points.fetch_add(points as u64, Relaxed);
                shared.acked_batches.fetch_add(1, Relaxed);
                let mut recent = shared.recent.lock().expect("recent");
                recent.push_back(parts);
                if recent.len() > 16 {
                    recent.pop_front();
                }
                drop(recent);
                std::thread::sleep(Duration::from_millis(rng.below(20)));
            }
            Err(e) => {
                if e.starts_with('4') {
                    shared.anomalies.lock().expect("anomalies").push(e);
                }
                shared.failed_posts.fetch_add(1, Relaxed);
                pending = Some((parts, body));
                std::thread::sleep(Duration::from_millis(20 + rng.below(30)));
            }
        }
    }
}

/// `GET /api/v1/read`: (start, step, values), or `None` for an unknown series.
type Read = Option<(i64, i64, Vec<Option<f64>>)>;

fn read(http: &str, name: &str, from: i64, until: i64) -> Result<Read, String> {
    let resp = reqwest::blocking::Client::new()
        .get(format!("http://{http}/api/v1/read"))
        .query(&[
            ("name", name.to_string()),
            ("from", from.to_string()),
            ("until", until.to_string()),
        ])
        .timeout(Duration::from_secs(60))
        .send()
        .map_err(|e| e.to_string())?;
    if resp.status() == 404 {
        return Ok(None);
    }
    let status = resp.status();
    let text = resp.text().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("read {name}: {status}: {text}"));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let values = v["values"]
        .as_array()
        .ok_or("no values")?
        .iter()
        .map(serde_json::Value::as_f64)
        .collect();
    Ok(Some((
        v["start"].as_i64().ok_or("no start")?,
        v["step"].as_i64().ok_or("no step")?,
        values,
    )))
}

/// What reading back found.
#[derive(Debug, Default)]
struct Found {
    checked: u64,
    /// Acknowledged, yet missing.
    lost: Vec<String>,
    /// A value that was never written there.
    wrong: Vec<String>,
    /// Missing on the first read, present on the second: a read that raced a flush.
    read_gaps: u64,
    rollups_checked: u64,
    /// A 1-minute rollup that is not the sum of the raw points under it.
    rollup_wrong: Vec<String>,
}

impl Found {
    fn add(&mut self, o: Found) {
        self.checked += o.checked;
        self.lost.extend(o.lost);
        self.wrong.extend(o.wrong);
        self.read_gaps += o.read_gaps;
        self.rollups_checked += o.rollups_checked;
        self.rollup_wrong.extend(o.rollup_wrong);
    }
}

/// Reads series `s` raw over slots `lo..=hi` and compares it with the ledger; with `rollups`,
/// also its 1-minute archive against the raw points.
fn check_series(shared: &Shared, s: usize, lo: u32, hi: u32, rollups: bool) -> Found {
    let mut found = Found::default();
    let name = series_name(s);
    let (from, until) = (shared.ts(lo) - STEP, shared.ts(hi));
    // Writers may be running: what was acknowledged before the read must be there, and what
    // the read shows must have been sent before it ended (a slot is marked before its POST).
    let snapshot =
        || shared.series[s].lock().expect("ledger").state[lo as usize..=hi as usize].to_vec();
    let acked = snapshot();
    let raw = |f: &mut Found| -> Vec<Option<f64>> {
        let got = match read(&shared.http, &name, from, until) {
            Ok(r) => r,
            Err(e) => {
                f.lost.push(format!("{name}: {e}"));
                return Vec::new();
            }
        };
        let mut by_slot = vec![None; (hi - lo + 1) as usize];
        if let Some((start, step, values)) = got {
            assert_eq!(step, STEP, "{name}: the finest archive's step");
            for (i, v) in values.into_iter().enumerate() {
                let slot = (start + i as i64 * step - shared.t0) / STEP;
                if let Some(cell) = by_slot.get_mut((slot - i64::from(lo)) as usize) {
                    *cell = v;
                }
            }
        }
        by_slot
    };
    let mut got = raw(&mut found);
    if got.is_empty() {
        return found;
    }
    let missing = |got: &[Option<f64>]| {
        (lo..=hi)
            .any(|slot| acked[(slot - lo) as usize] == ACKED && got[(slot - lo) as usize].is_none())
    };
    if missing(&got) {
        std::thread::sleep(Duration::from_millis(300));
        let again = raw(&mut found);
        if !again.is_empty() && !missing(&again) {
            found.read_gaps += 1;
            got = again;
        }
    }
    let sent = snapshot();
    for slot in lo..=hi {
        let want = value(s, slot);
        let i = (slot - lo) as usize;
        match (acked[i].max(sent[i]), got[i]) {
            (_, None) if acked[i] == ACKED => found
                .lost
                .push(format!("{name} at {} (slot {slot})", shared.ts(slot))),
            (_, Some(v)) if v != want => found.wrong.push(format!(
                "{name} at {}: {v}, written {want}",
                shared.ts(slot)
            )),
            (0, Some(v)) => found
                .wrong
                .push(format!("{name} at {}: {v}, never written", shared.ts(slot))),
            _ => {}
        }
        found.checked += u64::from(acked[i] == ACKED);
    }
    if rollups {
        // A `from` older than the finest archive's 7 days reads the 1-minute one.
        let from = unix_now() - 7 * 86_400 - 3600;
        match read(&shared.http, &name, from, until) {
            Ok(Some((start, 60, values))) => {
                for (i, v) in values.into_iter().enumerate() {
                    let minute = start + i as i64 * 60;
                    if minute + 60 <= shared.ts(lo) || minute > shared.ts(hi) {
                        continue;
                    }
                    let under: Vec<f64> = (0..6)
                        .filter_map(|k| {
                            let slot = (minute + k * STEP - shared.t0) / STEP;
                            let i = slot.checked_sub(i64::from(lo))?;
                            got.get(usize::try_from(i).ok()?).copied().flatten()
                        })
                        .collect();
                    let want = (!under.is_empty()).then(|| under.iter().sum::<f64>());
                    found.rollups_checked += 1;
                    if v != want {
                        found
                            .rollup_wrong
                            .push(format!("{name} minute {minute}: {v:?}, raw sum {want:?}"));
                    }
                }
            }
            other => found
                .rollup_wrong
                .push(format!("{name}: 1-minute read gave {other:?}")),
        }
    }
    found
}

/// The batches acknowledged last before a kill, read back.
fn check_recent(shared: &Shared) -> Found {
    let recent: Vec<Parts> = shared
        .recent
        .lock()
        .expect("recent")
        .iter()
        .cloned()
        .collect();
    let mut found = Found::default();
    for parts in recent {
        for (s, slots) in parts {
            let lo = *slots.iter().min().unwrap_or(&0);
            let hi = *slots.iter().max().unwrap_or(&0);
            found.add(check_series(shared, s, lo, hi, false));
        }
    }
    found
}

/// Every series whole, raw and rolled up.
fn check_all(shared: &Shared) -> Found {
    let mut found = Found::default();
    for s in 0..shared.series.len() {
        let next = shared.series[s].lock().expect("ledger").next;
        if next == 0 {
            continue;
        }
        // Slots are handed out by whole blocks of 64; check to the end of the last one.
        let hi = (next.div_ceil(64) * 64).min(SLOTS) - 1;
        found.add(check_series(shared, s, 0, hi, true));
    }
    found
}

/// One store configuration, chosen at random for each start: how often it flushes and
/// compacts decides what a kill interrupts.
fn write_config(dir: &Path, n: usize, rng: &mut Rng) -> PathBuf {
    let flush = ["100ms", "500ms", "3s", "1m"][rng.below(4) as usize];
    let head = [2_000, 50_000, 4_000_000][rng.below(3) as usize];
    let compact = ["1s", "3s", "1d"][rng.below(3) as usize];
    let path = dir.join(format!("store-{}.toml", n % 8));
    std::fs::write(
        &path,
        format!(
            r#"self_metrics_interval = "1s"
flush_interval = "{flush}"
max_head_points = {head}
compact_interval = "{compact}"

[[retention]]
name = "crash loop"
pattern = '^crash\.'
retentions = "10s:7d,1m:30d"
aggregation = "sum"
"#
        ),
    )
    .expect("config");
    path
}

#[derive(Debug, Default)]
struct Kills {
    total: usize,
    under_load: usize,
    /// Killed before it was ready again (RocksDB's own recovery, then the log replay).
    in_recovery: usize,
    /// `tally compact` killed before it finished.
    in_offline_compact: usize,
    /// Threads seen busy at the moment of a kill, by name.
    head_flush: usize,
    rocksdb_compaction: usize,
    rocksdb_flush: usize,
}

struct Loop {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    http: String,
    rng: Rng,
    starts: usize,
    store: Option<Child9>,
    kills: Kills,
    /// How long a start takes to be ready, and `tally compact` to finish (the last seen).
    start_secs: f64,
    compact_secs: f64,
    ops: Vec<String>,
}

impl Loop {
    fn start(&mut self) -> Child9 {
        let config = write_config(&self.dir, self.starts, &mut self.rng);
        self.starts += 1;
        let (cfg, data) = (
            config.display().to_string(),
            self.data.display().to_string(),
        );
        Child9::spawn(
            &[
                "-q",
                "store",
                "--config",
                &cfg,
                "--data-dir",
                &data,
                "--line-listen",
                "127.0.0.1:0",
                "--http-listen",
                &self.http,
            ],
            &self.log,
        )
    }

    /// Starts the store and waits until it is ready; a store that does not come back is the
    /// worst failure there is.
    fn start_ready(&mut self) {
        let mut s = self.start();
        match s.wait_ready(Duration::from_secs(120)) {
            Ok(took) => self.start_secs = took.as_secs_f64(),
            Err(e) => panic!(
                "the store did not come back after {} kills: {e}\nops: {:?}\nlog:\n{}",
                self.kills.total,
                self.ops,
                tail(&self.log, 40)
            ),
        }
        self.store = Some(s);
    }

    fn kill(&mut self, what: &str) {
        let Some(mut s) = self.store.take() else {
            return;
        };
        let ready = s.is_ready();
        let busy = s.kill9().unwrap_or_default();
        self.kills.total += 1;
        if ready {
            self.kills.under_load += 1;
        } else {
            self.kills.in_recovery += 1;
        }
        let has = |p: &str| busy.iter().any(|t| t.starts_with(p));
        self.kills.head_flush += usize::from(has("tally-flush"));
        self.kills.rocksdb_compaction += usize::from(has("rocksdb:low"));
        self.kills.rocksdb_flush += usize::from(has("rocksdb:high"));
        self.ops.push(format!("{what} (busy: {})", busy.join(",")));
        if self.ops.len() > 60 {
            self.ops.remove(0);
        }
    }

    /// Waits a random while under load: mostly short, sometimes long enough for the head to
    /// fill and flushes and compactions to run.
    fn load_for(&mut self) {
        let ms = match self.rng.below(10) {
            0..=2 => self.rng.below(150),
            3..=7 => 150 + self.rng.below(1500),
            _ => 1500 + self.rng.below(3000),
        };
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// One round: a kill under load, then sometimes a kill during the recovery that follows, or
    /// of a `tally compact` run on the stopped store's directory.
    fn round(&mut self) {
        self.load_for();
        self.kill("kill -9 under load");
        match self.rng.below(10) {
            0..=2 => {
                // Killed again while it recovers: before it is ready, at a random point.
                let mut s = self.start();
                let ms = self.rng.below((self.start_secs * 1300.0) as u64 + 20);
                std::thread::sleep(Duration::from_millis(ms));
                s.is_ready();
                self.store = Some(s);
                self.kill(&format!("kill -9 {ms} ms into a start"));
            }
            3 => {
                let data = self.data.display().to_string();
                let mut c = Child9::spawn(&["-q", "compact", "--data-dir", &data], &self.log);
                let ms = self.rng.below((self.compact_secs * 1300.0) as u64 + 20);
                let deadline = c.started + Duration::from_millis(ms);
                while Instant::now() < deadline {
                    if let Ok(Some(status)) = c.child.try_wait() {
                        assert!(
                            status.success(),
                            "tally compact failed: {}",
                            tail(&self.log, 20)
                        );
                        self.compact_secs = c.started.elapsed().as_secs_f64();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                if c.kill9().is_some() {
                    self.kills.total += 1;
                    self.kills.in_offline_compact += 1;
                    self.ops
                        .push(format!("kill -9 tally compact after {ms} ms"));
                } else {
                    self.ops.push("tally compact finished".into());
                }
            }
            _ => {}
        }
        self.start_ready();
    }
}

#[test]
fn issue_17_store_crash_loop_loses_no_acknowledged_point() {
    let params = Params::from_env(6);
    eprintln!("store crash loop: {params:?}");
    let tmp = crate::crash::temp_dir();
    let dir = tmp.path().to_path_buf();
    let http = format!("127.0.0.1:{}", free_port());
    let t0 = unix_now() - 6 * 86_400 - unix_now() % 600 + 600;
    let shared = Arc::new(Shared {
        t0,
        http: http.clone(),
        series: (0..WRITERS * SERIES_PER_WRITER)
            .map(|_| {
                Mutex::new(SeriesLedger {
                    next: 0,
                    state: vec![0; SLOTS as usize],
                })
            })
            .collect(),
        recent: Mutex::new(VecDeque::new()),
        acked_points: AtomicU64::new(0),
        acked_batches: AtomicU64::new(0),
        failed_posts: AtomicU64::new(0),
        anomalies: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let mut lp = Loop {
        data: dir.join("data"),
        log: dir.join("store.log"),
        dir,
        http,
        rng: Rng(params.seed),
        starts: 0,
        store: None,
        kills: Kills::default(),
        start_secs: 0.5,
        compact_secs: 1.0,
        ops: Vec::new(),
    };
    lp.start_ready();
    let writers: Vec<JoinHandle<()>> = (0..WRITERS)
        .map(|w| {
            let shared = shared.clone();
            std::thread::spawn(move || writer(shared, w, params.seed))
        })
        .collect();
    let started = Instant::now();
    let mut found = Found::default();
    while lp.kills.total < params.kills && started.elapsed().as_secs() < params.secs {
        lp.round();
        let f = check_recent(&shared);
        if !f.lost.is_empty() || !f.wrong.is_empty() {
            eprintln!(
                "after kill {}: lost {:?} wrong {:?}; ops {:?}",
                lp.kills.total, f.lost, f.wrong, lp.ops
            );
        }
        found.add(f);
    }
    // Every batch sent gets its acknowledgement, then one more kill and a last recovery.
    shared.stop.store(true, Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    lp.kill("kill -9 after the last acknowledgement");
    lp.start_ready();
    let all = check_all(&shared);
    let recent_checked = found.checked;
    found.add(all);
    let mut store = lp.store.take().expect("running");
    let clean = crate::proc::terminate(&mut store.child, "store");
    let anomalies = shared.anomalies.lock().expect("anomalies").clone();
    let k = &lp.kills;
    eprintln!(
        "store crash loop, seed {}: {} kills in {:.0} s ({} under load, {} during recovery, {} of \
         tally compact; busy at the kill: head flush {}, RocksDB compaction {}, RocksDB memtable \
         flush {}); {} starts; {} batches / {} points acknowledged ({} posts failed and were \
         retried); read back: {} points after each restart, {} at the end, {} rollup minutes; \
         lost {}, wrong or doubled {}, rollups wrong {}, reads that raced a flush {}",
        params.seed,
        k.total,
        started.elapsed().as_secs_f64(),
        k.under_load,
        k.in_recovery,
        k.in_offline_compact,
        k.head_flush,
        k.rocksdb_compaction,
        k.rocksdb_flush,
        lp.starts,
        shared.acked_batches.load(Relaxed),
        shared.acked_points.load(Relaxed),
        shared.failed_posts.load(Relaxed),
        recent_checked,
        found.checked - recent_checked,
        found.rollups_checked,
        found.lost.len(),
        found.wrong.len(),
        found.rollup_wrong.len(),
        found.read_gaps,
    );
    let first = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>();
    assert!(
        found.lost.is_empty() && found.wrong.is_empty() && found.rollup_wrong.is_empty(),
        "seed {}: lost {:?}, wrong {:?}, rollups {:?}\nops: {:?}",
        params.seed,
        first(&found.lost),
        first(&found.wrong),
        first(&found.rollup_wrong),
        lp.ops
    );
    assert!(
        anomalies.is_empty(),
        "answers no store may give: {anomalies:?}"
    );
    assert!(
        shared.acked_points.load(Relaxed) > 0 && found.checked >= shared.acked_points.load(Relaxed),
        "every acknowledged point must have been read back"
    );
    assert!(clean.success(), "the store stops cleanly after it all");
}
