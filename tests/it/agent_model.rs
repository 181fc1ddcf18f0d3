//! The agent's promise, tested as a model: random sequences of appends, rename rotations,
//! copytruncates, truncations, deletions, statsd bursts (TCP and UDP), `kill -9` of the agent
//! and of the store, run against real files, the real agent and the real store. At the end the
//! per-file totals in the store equal the lines written, and the statsd totals the metrics the
//! agent accepted, exactly: nothing lost, nothing counted twice (issue 16: a gauge's `+1`
//! deltas, applied twice, would show too).
//!
//! `TALLY_MODEL_SEED` and `TALLY_MODEL_STEPS` replay or lengthen a run; the seed and the
//! operations are printed, so a failure can be replayed.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::proc::{free_port, unix_now as now, AgentProc, Rng, StoreProc};

/// The store's total of `lines;file=<f>`, or `None` if the store does not answer.
fn stored_total(http: &str, file: &str) -> Option<u64> {
    total_of(http, &format!("seriesByTag('name=lines','file={file}')"))
}

/// The store's total of every point of `series`, or `None` if the store does not answer.
fn total_of(http: &str, series: &str) -> Option<u64> {
    let url =
        format!("http://{http}/render?target=sumSeries({series})&from=-2h&until=%2B2h&format=json");
    let resp = reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&resp.text().ok()?).ok()?;
    let series = v.as_array()?;
    let mut total = 0.0;
    for s in series {
        for p in s["datapoints"].as_array().into_iter().flatten() {
            total += p[0].as_f64().unwrap_or(0.0);
        }
    }
    Some(total as u64)
}

/// The newest non-null value of `series`.
fn last_value(http: &str, series: &str) -> Option<f64> {
    let url = format!("http://{http}/render?target={series}&from=-2h&until=%2B2h&format=json");
    let v: serde_json::Value =
        serde_json::from_str(&reqwest::blocking::get(url).ok()?.text().ok()?).ok()?;
    v.as_array()?.first()?["datapoints"]
        .as_array()?
        .iter()
        .rev()
        .find_map(|p| p[0].as_f64())
}

struct Model {
    dir: PathBuf,
    logs: PathBuf,
    http: String,
    rng: Rng,
    files: Vec<&'static str>,
    written: Vec<u64>,
    seq: u64,
    rotations: u64,
    store: Option<StoreProc>,
    agent: Option<AgentProc>,
    log: Vec<String>,
    /// The statsd ports (fixed, so that a restarted agent listens where the last one did).
    statsd_udp: u16,
    statsd_tcp: u16,
    /// statsd counter increments and timer samples accepted (each burst metric is one of
    /// each, and one `+1` of the gauge).
    statsd: u64,
    /// Datagrams and lines the running agent accepted since it started.
    accepted_by_agent: u64,
}

impl Model {
    fn path(&self, f: usize) -> PathBuf {
        self.logs.join(format!("{}.log", self.files[f]))
    }

    fn append(&mut self, f: usize, n: u64) {
        let path = self.path(f);
        let mut text = String::new();
        for _ in 0..n {
            self.seq += 1;
            text.push_str(&format!(
                "{} {} seq={} GET /status/images/beacon.gif\n",
                now(),
                self.files[f],
                self.seq
            ));
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open log");
        // Sometimes the last line arrives in two writes, as a partial line first.
        if n > 0 && self.rng.below(4) == 0 {
            let cut = text.len() - 5;
            file.write_all(&text.as_bytes()[..cut]).expect("write");
            std::thread::sleep(Duration::from_millis(self.rng.below(120)));
            file.write_all(&text.as_bytes()[cut..]).expect("write");
        } else {
            file.write_all(text.as_bytes()).expect("write");
        }
        self.written[f] += n;
    }

    fn rotated_name(&mut self, f: usize) -> PathBuf {
        self.rotations += 1;
        self.logs
            .join(format!("{}.log.{}", self.files[f], self.rotations))
    }

    fn start_agent(&mut self) {
        self.agent = Some(AgentProc::start(&self.dir.join("agent.toml")));
        self.accepted_by_agent = 0;
    }

    /// Sends `n` statsd lines (a counter, a timer sample and a gauge delta each) over TCP or
    /// UDP and waits until the agent says it accepted them; only then do they count.
    fn statsd_burst(&mut self, n: u64, tcp: bool) {
        let line = b"m.hits:1|c
m.time:5|ms
m.level:+1|g
";
        if tcp {
            let mut c = TcpStream::connect(("127.0.0.1", self.statsd_tcp)).expect("statsd tcp");
            for _ in 0..n {
                c.write_all(line).expect("statsd write");
            }
            // Three lines each.
            self.accepted_by_agent += 3 * n;
        } else {
            let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
            for _ in 0..n {
                s.send_to(line, ("127.0.0.1", self.statsd_udp))
                    .expect("statsd send");
            }
            self.accepted_by_agent += n;
        }
        let agent = self.agent.as_ref().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent.metric("tally_agent_statsd_packets") != Some(self.accepted_by_agent as f64) {
            assert!(
                Instant::now() < deadline,
                "the agent did not accept a statsd burst: {:?} of {}; ops {:#?}",
                agent.metric("tally_agent_statsd_packets"),
                self.accepted_by_agent,
                self.log
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.statsd += n;
    }

    fn start_store(&mut self) {
        self.store = Some(StoreProc::start_on(
            &self.dir.join("store"),
            &self.http,
            &[],
        ));
    }

    /// The files' totals, then statsd's counter total and timer count.
    fn totals(&self) -> Option<Vec<u64>> {
        let mut t: Vec<Option<u64>> = self
            .files
            .iter()
            .map(|f| stored_total(&self.http, f))
            .collect();
        t.push(total_of(
            &self.http,
            "seriesByTag('name=m.hits','stat=count')",
        ));
        t.push(total_of(
            &self.http,
            "seriesByTag('name=m.time','stat=count')",
        ));
        t.into_iter().collect()
    }

    /// What [`Model::totals`] must come to.
    fn expected(&self) -> Vec<u64> {
        let mut w = self.written.clone();
        w.push(self.statsd);
        w.push(self.statsd);
        w
    }

    /// Waits until the store holds exactly what was written; false on timeout.
    fn wait_converged(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.totals() == Some(self.expected()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    fn converge_or_fail(&self, before: &str) {
        if !self.wait_converged(Duration::from_secs(60)) {
            panic!(
                "no convergence before {before}: store {:?}, written {:?}; ops: {:#?}",
                self.totals(),
                self.expected(),
                self.log
            );
        }
    }

    fn step(&mut self) {
        let f = self.rng.below(self.files.len() as u64) as usize;
        let up = self.store.is_some() && self.agent.is_some();
        let op = self.rng.below(100);
        let what = match op {
            0..=44 => {
                let n = 1 + self.rng.below(40);
                self.append(f, n);
                format!("append {} x{n}", self.files[f])
            }
            45..=54 => {
                let to = self.rotated_name(f);
                if self.path(f).exists() {
                    fs::rename(self.path(f), &to).expect("rename");
                }
                format!("rotate {} -> {}", self.files[f], to.display())
            }
            55..=62 => {
                let to = self.rotated_name(f);
                if self.path(f).exists() {
                    fs::copy(self.path(f), &to).expect("copy");
                    OpenOptions::new()
                        .write(true)
                        .open(self.path(f))
                        .expect("open")
                        .set_len(0)
                        .expect("truncate");
                }
                format!("copytruncate {} -> {}", self.files[f], to.display())
            }
            // Truncation and deletion destroy unread lines by definition: only once read.
            63..=67 if up => {
                self.converge_or_fail("truncate");
                if self.path(f).exists() {
                    OpenOptions::new()
                        .write(true)
                        .open(self.path(f))
                        .expect("open")
                        .set_len(0)
                        .expect("truncate");
                }
                format!("truncate {}", self.files[f])
            }
            68..=71 if up => {
                self.converge_or_fail("delete");
                let _ = fs::remove_file(self.path(f));
                format!("delete {}", self.files[f])
            }
            72..=81 => match self.agent.take() {
                Some(mut a) => {
                    a.kill9();
                    "kill -9 agent".into()
                }
                None => {
                    self.start_agent();
                    "start agent".into()
                }
            },
            82..=89 => match self.store.take() {
                Some(mut s) => {
                    if self.rng.below(2) == 0 {
                        s.kill9();
                        "kill -9 store".into()
                    } else {
                        s.terminate();
                        "stop store".into()
                    }
                }
                None => {
                    self.start_store();
                    "start store".into()
                }
            },
            90..=99 if self.agent.is_some() => {
                let n = 1 + self.rng.below(60);
                let tcp = self.rng.below(2) == 0;
                self.statsd_burst(n, tcp);
                format!("statsd {} x{n}", if tcp { "tcp" } else { "udp" })
            }
            _ => {
                let ms = self.rng.below(800);
                std::thread::sleep(Duration::from_millis(ms));
                format!("sleep {ms}ms")
            }
        };
        self.log.push(what);
        std::thread::sleep(Duration::from_millis(self.rng.below(150)));
    }
}

#[test]
fn issue_5_store_totals_equal_lines_written_through_rotation_crashes_and_outages() {
    let seed: u64 = std::env::var("TALLY_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now() as u64);
    let steps: usize = std::env::var("TALLY_MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(70);
    eprintln!("agent model: TALLY_MODEL_SEED={seed} TALLY_MODEL_STEPS={steps}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).expect("mkdir");
    let http = format!("127.0.0.1:{}", free_port());
    let (statsd_udp, statsd_tcp) = (free_port(), free_port());
    let config = format!(
        r#"host = "model"
data_dir = "{data}"
interval = "10s"
lateness = "1h"
commit_interval = "200ms"
poll_interval = "50ms"
scan_interval = "200ms"
metrics_listen = "127.0.0.1:0"

[statsd]
enabled = true
udp_listen = "127.0.0.1:{udp}"
tcp_listen = "127.0.0.1:{tcp}"

[[input]]
paths = ["{logs}/*.log*"]
rotate_wait = "1s"

[presets]
enable = []

[[rule]]
name = "lines"
regex = '^(?P<ts>\d+) (?P<file>[a-z]+) seq='
time = "ts"
time_format = "unix"

[output]
url = "http://{http}"
timeout = "2s"
max_backoff = "500ms"
"#,
        data = dir.join("agent").display(),
        logs = logs.display(),
        udp = statsd_udp,
        tcp = statsd_tcp,
    );
    fs::write(dir.join("agent.toml"), config).expect("config");
    let mut m = Model {
        dir: dir.clone(),
        logs,
        http,
        rng: Rng(seed),
        files: vec!["a", "b"],
        written: vec![0, 0],
        seq: 0,
        rotations: 0,
        store: None,
        agent: None,
        log: Vec::new(),
        statsd_udp,
        statsd_tcp,
        statsd: 0,
        accepted_by_agent: 0,
    };
    m.start_store();
    m.start_agent();
    for _ in 0..steps {
        m.step();
    }
    if m.store.is_none() {
        m.start_store();
        m.log.push("start store".into());
    }
    if m.agent.is_none() {
        m.start_agent();
        m.log.push("start agent".into());
    }
    let converged = m.wait_converged(Duration::from_secs(90));
    let totals = m.totals();
    assert!(
        converged,
        "seed {seed}: store totals {totals:?} != lines and statsd metrics written {:?}\nops: {:#?}",
        m.expected(),
        m.log
    );
    // And nothing arrives later to double a count.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        m.totals(),
        Some(m.expected()),
        "seed {seed}: a count changed after convergence; ops: {:#?}",
        m.log
    );
    // Every `+1` of the gauge applied exactly once: its last value is the number sent.
    let level = last_value(&m.http, "seriesByTag('name=m.level')");
    assert_eq!(
        level,
        (m.statsd > 0).then_some(m.statsd as f64),
        "seed {seed}: the gauge; ops: {:#?}",
        m.log
    );
    let mut agent = m.agent.take().expect("running");
    assert_eq!(agent.metric("tally_agent_lines_bad"), Some(0.0));
    assert_eq!(agent.metric("tally_agent_statsd_bad"), Some(0.0));
    assert!(
        agent.terminate().success(),
        "the agent stops cleanly on SIGTERM"
    );
    eprintln!(
        "agent model: seed {seed}: {} ops ({} statsd bursts, {} agent kills), {:?} lines and {} \
         statsd metrics, all counted exactly once",
        m.log.len(),
        m.log.iter().filter(|o| o.starts_with("statsd")).count(),
        m.log.iter().filter(|o| *o == "kill -9 agent").count(),
        m.written,
        m.statsd
    );
}
