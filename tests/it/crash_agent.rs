//! Issue 17: the agent tailing a log that `tally gen-log` keeps appending to (with its exact
//! expected counts), `kill -9`ed many times and restarted each time: at random moments, within
//! 40 ms of lines landing (while it reads, commits and ships them), and right after a restart;
//! the log is rotated now and then. At
//! the end the store must hold exactly the generator's counts: requests by status class and by
//! vhost, beacons by source, latency samples. Fewer is a lost line, more a line counted twice.
//!
//! Issue 16: statsd traffic goes next to the log lines. Before some kills a burst of statsd
//! lines is sent over TCP and, once the agent's `/metrics` says it accepted them (wrote them to
//! its journal), the kill follows within 40 ms, while the journal is read, counted and
//! committed; the store must end with exactly the accepted counter increments and timer samples.
//!
//! The parameters are `crash.rs`'s (`TALLY_CRASH_*`). The long run of the session:
//!
//! ```text
//! TALLY_BIN=target/release/tally TALLY_CRASH_KILLS=100 TALLY_CRASH_SECS=3600 \
//!   cargo test --test it crash_agent:: -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crash::{tail, Child9, Params};
use crate::proc::{free_port, tally_bin, unix_now, Rng, StoreProc};

/// Log-time lines per second of the generated log.
const RATE: i64 = 1000;

/// What `tally gen-log` wrote, summed over its runs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Truth {
    pub(crate) lines: u64,
    pub(crate) bad: u64,
    pub(crate) status: BTreeMap<String, u64>,
    pub(crate) vhost: BTreeMap<String, u64>,
    pub(crate) beacons: BTreeMap<String, u64>,
}

impl Truth {
    fn add(&mut self, json: &str) {
        let v: serde_json::Value = serde_json::from_str(json).expect("gen-log's truth");
        self.lines += v["lines"].as_u64().unwrap_or(0);
        self.bad += v["bad"].as_u64().unwrap_or(0);
        for (key, map) in [
            ("status", &mut self.status),
            ("vhost", &mut self.vhost),
            ("beacons", &mut self.beacons),
        ] {
            for (k, n) in v[key].as_object().into_iter().flatten() {
                *map.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }

    /// (target, expected total) for every count the store must hold.
    fn expected(&self) -> Vec<(String, u64)> {
        let mut want = vec![
            (
                "sumSeries(seriesByTag('name=requests'))".to_string(),
                self.lines - self.bad,
            ),
            (
                "sumSeries(seriesByTag('name=latency','stat=count'))".to_string(),
                self.lines - self.bad,
            ),
        ];
        let mut classes: BTreeMap<char, u64> = BTreeMap::new();
        for (status, n) in &self.status {
            *classes
                .entry(status.chars().next().unwrap_or('?'))
                .or_default() += n;
        }
        for (class, n) in classes {
            want.push((
                format!("sumSeries(seriesByTag('name=requests','status={class}xx'))"),
                n,
            ));
        }
        for (vhost, n) in &self.vhost {
            want.push((
                format!("sumSeries(seriesByTag('name=requests','vhost={vhost}'))"),
                *n,
            ));
        }
        for (source, n) in &self.beacons {
            want.push((
                format!("sumSeries(seriesByTag('name=beacons','source={source}'))"),
                *n,
            ));
        }
        want
    }
}

/// The store's total of `target` over the whole log, or `None` if it does not answer.
fn total(http: &str, target: &str) -> Option<u64> {
    let resp = reqwest::blocking::Client::new()
        .get(format!("http://{http}/render"))
        .query(&[
            ("target", target),
            ("from", "-2h"),
            ("until", "+1h"),
            ("format", "json"),
        ])
        .timeout(Duration::from_secs(20))
        .send()
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&resp.text().ok()?).ok()?;
    let mut sum = 0.0;
    for s in v.as_array()? {
        for p in s["datapoints"].as_array().into_iter().flatten() {
            sum += p[0].as_f64().unwrap_or(0.0);
        }
    }
    Some(sum as u64)
}

/// Appends `tally gen-log` runs to the log until told to stop, now and then rotating it first.
/// The log's time follows the clock, as a live log's does: a line far behind the agent's
/// watermark is late by design (counted, not shipped), which is not what is tested here.
pub(crate) fn generate(
    logs: PathBuf,
    truth: Arc<Mutex<Truth>>,
    stop: Arc<AtomicBool>,
    appended: Arc<AtomicU64>,
    seed: u64,
) -> (u64, u64) {
    let mut rng = Rng(seed ^ 0x5851_F42D_4C95_7F2D);
    let (mut next, mut runs, mut rotations) = (unix_now() - 30, 0u64, 0u64);
    let log = logs.join("access.log");
    let truth_file = logs.join("truth.json");
    while !stop.load(Relaxed) {
        next = next.max(unix_now() - 30);
        if next > unix_now() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if rng.below(15) == 0 && log.exists() {
            rotations += 1;
            std::fs::rename(&log, logs.join(format!("access.log.{rotations}"))).expect("rotate");
        }
        let lines = 200 + rng.below(1300) as i64;
        let out = std::process::Command::new(tally_bin())
            .args(["-q", "gen-log", "--out"])
            .arg(&log)
            .args(["--lines", &lines.to_string()])
            .args(["--seed", &rng.next().to_string()])
            .args(["--rate", &RATE.to_string()])
            .args(["--start", &next.to_string()])
            .arg("--truth")
            .arg(&truth_file)
            .output()
            .expect("gen-log runs");
        assert!(out.status.success(), "gen-log: {out:?}");
        truth
            .lock()
            .expect("truth")
            .add(&std::fs::read_to_string(&truth_file).expect("truth file"));
        next += lines / RATE + 1;
        runs += 1;
        appended.store(runs, Relaxed);
        std::thread::sleep(Duration::from_millis(150 + rng.below(250)));
    }
    (runs, rotations)
}

/// The agent's statsd TCP port and `/metrics` port (fixed: every restart listens there).
#[derive(Debug, Clone, Copy)]
struct Ports {
    statsd: u16,
    metrics: u16,
}

/// Sends `n` statsd lines (a counter increment and a timer sample each) over TCP to an agent
/// that has accepted nothing yet (every kill is followed by a start, every burst by a kill) and
/// waits until it has accepted all `2n` lines; `false` if it was not listening within 5 s (then
/// nothing was sent). Once sent, the lines must be accepted.
fn statsd_burst(ports: Ports, n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut conn = loop {
        match TcpStream::connect(("127.0.0.1", ports.statsd)) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return false,
        }
    };
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("crash.hits:1|c\ncrash.time:{}|ms\n", i % 50));
    }
    if conn.write_all(text.as_bytes()).is_err() {
        return false;
    }
    drop(conn);
    let want = (2 * n) as f64;
    while Instant::now() < deadline {
        let got = reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", ports.metrics))
            .ok()
            .and_then(|r| r.text().ok())
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("tally_agent_statsd_packets ")
                        .and_then(|v| v.parse::<f64>().ok())
                })
            });
        if got == Some(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the running agent did not accept {n} statsd lines within 5 s");
}

fn agent_config(dir: &Path, http: &str, rng: &mut Rng, ports: Ports) -> PathBuf {
    let commit = ["100ms", "300ms", "1s"][rng.below(3) as usize];
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"host = "crash"
data_dir = "{data}"
interval = "10s"
lateness = "1h"
commit_interval = "{commit}"
poll_interval = "50ms"
scan_interval = "200ms"
metrics_listen = "127.0.0.1:{metrics}"

[statsd]
enabled = true
udp_listen = ""
tcp_listen = "127.0.0.1:{statsd}"

[[input]]
paths = ["{logs}/access.log*"]
start_at = "beginning"
rotate_wait = "2s"

[output]
url = "http://{http}"
timeout = "2s"
max_backoff = "300ms"
"#,
            data = dir.join("agent").display(),
            logs = dir.join("logs").display(),
            metrics = ports.metrics,
            statsd = ports.statsd,
        ),
    )
    .expect("agent config");
    path
}

#[derive(Debug, Default)]
struct Kills {
    total: usize,
    /// Within 300 ms of its start (the start itself, the first commit).
    early: usize,
    /// Threads seen busy at the moment of a kill: the reader (which commits), the shipper.
    reading: usize,
    shipping: usize,
}

#[test]
fn issue_17_agent_crash_loop_counts_every_line_exactly_once() {
    let params = Params::from_env(5);
    eprintln!("agent crash loop: {params:?}");
    let tmp = crate::crash::temp_dir();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("logs")).expect("mkdir");
    let http = format!("127.0.0.1:{}", free_port());
    let mut store = StoreProc::start_on(&dir.join("store"), &http, &[]);
    let truth = Arc::new(Mutex::new(Truth::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let generator = {
        let (logs, truth) = (dir.join("logs"), truth.clone());
        let (stop, appended) = (stop.clone(), appended.clone());
        std::thread::spawn(move || generate(logs, truth, stop, appended, params.seed))
    };
    let mut rng = Rng(params.seed);
    let log = dir.join("agent.log");
    let ports = Ports {
        statsd: free_port(),
        metrics: free_port(),
    };
    // statsd counter increments the agents accepted (each also a timer sample).
    let mut statsd_total = 0u64;
    let mut bursts = 0usize;
    let start = |rng: &mut Rng| {
        let config = agent_config(&dir, &http, rng, ports).display().to_string();
        Child9::spawn(&["-q", "agent", "--config", &config], &log)
    };
    let mut agent = start(&mut rng);
    let mut kills = Kills::default();
    let mut ops: Vec<String> = Vec::new();
    let started = Instant::now();
    while kills.total < params.kills && started.elapsed().as_secs() < params.secs {
        let what = if rng.below(10) < 3 {
            // Just after statsd lines were accepted: while the journal is read and committed.
            let n = 1 + rng.below(300);
            let mut what = String::from("statsd burst not accepted, then kill");
            if statsd_burst(ports, n) {
                statsd_total += n;
                bursts += 1;
                let ms = rng.below(40);
                std::thread::sleep(Duration::from_millis(ms));
                what = format!("{ms} ms after {n} statsd lines were accepted");
            }
            what
        } else if rng.below(10) < 4 {
            // Just after lines land: while the agent reads, commits and ships them.
            let seen = appended.load(Relaxed);
            let deadline = Instant::now() + Duration::from_secs(5);
            while appended.load(Relaxed) == seen && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let ms = rng.below(40);
            std::thread::sleep(Duration::from_millis(ms));
            format!("{ms} ms after an append")
        } else {
            let ms = match rng.below(10) {
                0..=2 => rng.below(300),
                3..=7 => 300 + rng.below(1700),
                _ => 2000 + rng.below(3000),
            };
            std::thread::sleep(Duration::from_millis(ms));
            format!("{ms} ms after its start")
        };
        if let Ok(Some(status)) = agent.child.try_wait() {
            panic!(
                "the agent exited by itself ({status}); ops {ops:?}\nlog:\n{}",
                tail(&log, 30)
            );
        }
        let age = agent.started.elapsed();
        let busy = agent.kill9().unwrap_or_default();
        kills.total += 1;
        kills.early += usize::from(age < Duration::from_millis(300));
        kills.reading += usize::from(busy.iter().any(|t| t == "agent"));
        kills.shipping += usize::from(busy.iter().any(|t| t == "agent-ship"));
        ops.push(format!("kill -9 {what} (busy: {})", busy.join(",")));
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        agent = start(&mut rng);
    }
    stop.store(true, Relaxed);
    let (runs, rotations) = generator.join().expect("generator");
    let truth = truth.lock().expect("truth").clone();
    let mut want = truth.expected();
    for stat in ["crash.hits", "crash.time"] {
        want.push((
            format!("sumSeries(seriesByTag('name={stat}','stat=count'))"),
            statsd_total,
        ));
    }
    let totals = || -> Vec<Option<u64>> { want.iter().map(|(t, _)| total(&http, t)).collect() };
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut got = totals();
    while Instant::now() < deadline && got.iter().zip(&want).any(|(g, w)| *g != Some(w.1)) {
        std::thread::sleep(Duration::from_millis(500));
        got = totals();
    }
    // Nothing may arrive later to double a count.
    std::thread::sleep(Duration::from_secs(3));
    let after = totals();
    let (mut lost, mut doubled) = (0u64, 0u64);
    for ((g, a), (_, w)) in got.iter().zip(&after).zip(&want) {
        let g = a.or(*g).unwrap_or(0);
        lost += w.saturating_sub(g);
        doubled += g.saturating_sub(*w);
    }
    eprintln!(
        "agent crash loop, seed {}: {} kills in {:.0} s ({} within 300 ms of a start; busy at \
         the kill: reading {}, shipping {}); {} lines ({} bad) in {} gen-log runs, {} rotations; \
         {statsd_total} statsd lines in {bursts} bursts; {} totals checked: lost {lost}, counted \
         twice {doubled}",
        params.seed,
        kills.total,
        started.elapsed().as_secs_f64(),
        kills.early,
        kills.reading,
        kills.shipping,
        truth.lines,
        truth.bad,
        runs,
        rotations,
        want.len(),
    );
    let report: Vec<String> = want
        .iter()
        .zip(&after)
        .filter(|((_, w), g)| **g != Some(*w))
        .map(|((t, w), g)| format!("{t}: store {g:?}, written {w}"))
        .collect();
    assert!(
        report.is_empty() && got == after,
        "seed {}: {report:#?}\nops: {ops:?}\nagent log:\n{}",
        params.seed,
        tail(&log, 30)
    );
    assert!(truth.lines > 0, "the generator wrote nothing");
    assert!(
        crate::proc::terminate(&mut agent.child, "agent").success(),
        "the agent stops cleanly on SIGTERM"
    );
    assert!(store.terminate().success());
}
