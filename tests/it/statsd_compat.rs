//! Issue 16: the agent's statsd against the real Etsy statsd 0.9.0 (npm `statsd`, run with
//! node; `scripts/setup.sh test` installs it into /opt/tally). Both get the same datagrams at
//! the same moments; Etsy's graphite backend and the agent (`naming = "etsy"`, output carbon)
//! both write to plaintext catchers on loopback, with the same flush interval. For every flush
//! interval of the run, with and without traffic, the two must write the same series with the
//! same values: counters (sample rates), their rates, gauges (deltas, carried into quiet
//! intervals), timers' count, count_ps, sum, sum_squares, mean, lower, upper, std, count_P
//! exactly (to float rounding), and the rank statistics (median, upper_P, mean_P, sum_P,
//! sum_squares_P) within the HDR histogram's precision; sets' unique counts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::proc::{free_port, AgentProc};

/// Where `scripts/setup.sh test` installs Etsy's statsd.
const ETSY_STATSD: &str = "/opt/tally/statsd-0.9.0/node_modules/statsd/stats.js";

/// The flush interval of both, in seconds.
const INTERVAL: i64 = 2;

/// Graphite plaintext lines received on a loopback port: `(name, value, timestamp)`.
pub struct LineCatcher {
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<(String, f64, i64)>>>,
}

impl LineCatcher {
    pub fn start() -> LineCatcher {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let lines: Arc<Mutex<Vec<(String, f64, i64)>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        let mut f = line.split_whitespace();
                        let (Some(n), Some(v), Some(t)) = (f.next(), f.next(), f.next()) else {
                            continue;
                        };
                        if let (Ok(v), Ok(t)) = (v.parse(), t.parse()) {
                            sink.lock().expect("lines").push((n.to_string(), v, t));
                        }
                    }
                });
            }
        });
        LineCatcher { addr, lines }
    }

    pub fn lines(&self) -> Vec<(String, f64, i64)> {
        self.lines.lock().expect("lines").clone()
    }
}

struct Etsy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Etsy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Etsy's statsd on a loopback UDP port, flushing to `graphite` (its graphite backend, not the
/// legacy namespace), percentiles 90 and 50.
fn start_etsy(port: u16, graphite: SocketAddr) -> Etsy {
    assert!(
        Path::new(ETSY_STATSD).exists(),
        "Etsy statsd is not installed ({ETSY_STATSD}): run scripts/setup.sh test (./x test does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.js");
    std::fs::write(
        &config,
        format!(
            "{{ port: {port}, address: \"127.0.0.1\", mgmt_port: {mgmt}, mgmt_address: \"127.0.0.1\",\n\
             flushInterval: {ms}, backends: [\"./backends/graphite\"],\n\
             graphiteHost: \"127.0.0.1\", graphitePort: {gport},\n\
             graphite: {{ legacyNamespace: false, globalPrefix: \"stats\" }},\n\
             percentThreshold: [90, 50] }}\n",
            mgmt = free_port(),
            ms = INTERVAL * 1000,
            gport = graphite.port(),
        ),
    )
    .expect("config");
    let root = Path::new(ETSY_STATSD).parent().expect("package dir");
    let child = Command::new("node")
        .arg(ETSY_STATSD)
        .arg(&config)
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs Etsy statsd");
    Etsy { child, _dir: dir }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The traffic of one burst: counters with sample rates, gauges and deltas, timers, sets, a
/// tagged counter, several metrics per datagram.
fn burst(k: u64) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    for i in 0..200u64 {
        let mut p = String::new();
        p.push_str("cmp.hits:1|c\n");
        if i % 4 == 0 {
            p.push_str(&format!("cmp.sampled:{}|c|@0.25\n", 1 + i % 3));
        }
        p.push_str(&format!(
            "cmp.latency:{}|ms\n",
            (i * 37 + k * 11) % 1000 + (i % 10) / 4
        ));
        p.push_str(&format!("cmp.small:{}.5|ms|@0.5\n", i % 7));
        p.push_str(&format!("cmp.users:user{}|s\n", (i * 7 + k) % 53));
        if i % 50 == 0 {
            p.push_str(&format!("cmp.tagged:2|c|#env:prod,dc:ny{k}\n"));
        }
        packets.push(p.into_bytes());
    }
    // Gauges: a value, then deltas on it (the second burst's deltas apply to the first's).
    if k == 0 {
        packets.push(b"cmp.queue:10|g\ncmp.queue:+5|g\ncmp.queue:-3|g\ncmp.temp:21.5|g".to_vec());
    } else {
        packets.push(b"cmp.queue:-20|g\ncmp.queue:+1.5|g\ncmp.one:7|ms".to_vec());
    }
    packets
}

/// The series of one flush, by canonical name, for the names this test sent.
fn interval(lines: &[(String, f64, i64)], t: i64) -> BTreeMap<String, f64> {
    lines
        .iter()
        .filter(|(n, _, ts)| *ts == t && n.contains(".cmp."))
        .filter_map(|(n, v, _)| {
            tally_proto::series_name::canonicalize(n)
                .ok()
                .map(|c| (c.into_owned(), *v))
        })
        .collect()
}

/// Whether a timer statistic is read from the histogram (a rank), not kept exactly.
fn by_rank(name: &str) -> bool {
    let stat = name
        .split(';')
        .next()
        .unwrap_or(name)
        .rsplit('.')
        .next()
        .unwrap_or_default();
    let pct = stat
        .rsplit_once('_')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()));
    stat == "median" || (pct && !stat.starts_with("count_"))
}

#[test]
fn issue_16_statsd_matches_etsy_statsd_on_the_same_datagrams() {
    let etsy_out = LineCatcher::start();
    let agent_out = LineCatcher::start();
    let etsy_port = free_port();
    let _etsy = start_etsy(etsy_port, etsy_out.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent_port = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"host = "diff"
data_dir = "{data}"
interval = "{INTERVAL}s"
lateness = "10s"
commit_interval = "100ms"
poll_interval = "20ms"
metrics_listen = "127.0.0.1:0"

[presets]
enable = []

[statsd]
enabled = true
udp_listen = "127.0.0.1:{agent_port}"
tcp_listen = ""
naming = "etsy"
legacy_namespace = false
percentiles = [90.0, 50.0]

[output]
kind = "carbon"
address = "{out}"
max_backoff = "200ms"
"#,
            data = dir.path().join("agent").display(),
            out = agent_out.addr,
        ),
    )
    .expect("config");
    let agent = AgentProc::start(&config);
    // Etsy flushes at whole seconds, every INTERVAL from its start: its first flush gives the
    // phase. Bursts go 0.3 s after one of its flushes, which is inside one of the agent's
    // buckets too (they start at multiples of INTERVAL).
    let deadline = Instant::now() + Duration::from_secs(30);
    let phase = loop {
        if let Some(t) = etsy_out.lines().iter().map(|l| l.2).max() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "Etsy statsd did not flush within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut sent_at = Vec::new();
    // Bursts in intervals 1 and 3; 2 and 4 are quiet (zeros, carried gauges, empty sets).
    let mut next = phase + INTERVAL;
    for k in 0..4u64 {
        let at = next as f64 + 0.3;
        while now_secs() < at {
            std::thread::sleep(Duration::from_millis(2));
        }
        if k % 2 == 0 {
            for p in burst(k / 2) {
                sock.send_to(&p, ("127.0.0.1", etsy_port)).expect("send");
                sock.send_to(&p, ("127.0.0.1", agent_port)).expect("send");
                // Paced, so that neither receive buffer overflows.
                std::thread::sleep(Duration::from_micros(200));
            }
            assert!(
                now_secs() < at + 1.0,
                "a burst took more than a second to send"
            );
        }
        sent_at.push(next);
        next += INTERVAL;
    }
    // Etsy stamps a flush with its own time (the interval's end); the agent with the bucket's
    // start. Wait for both of the last interval.
    let last = *sent_at.last().expect("intervals");
    let etsy_t = |start: i64| start + INTERVAL;
    let agent_t = |start: i64| start - start.rem_euclid(INTERVAL);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && (interval(&etsy_out.lines(), etsy_t(last)).is_empty()
            || interval(&agent_out.lines(), agent_t(last)).is_empty())
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (etsy_lines, agent_lines) = (etsy_out.lines(), agent_out.lines());
    let mut report = Vec::new();
    let mut compared = 0;
    for (i, &start) in sent_at.iter().enumerate() {
        let want = interval(&etsy_lines, etsy_t(start));
        let got = interval(&agent_lines, agent_t(start));
        assert!(
            !want.is_empty(),
            "interval {i}: Etsy statsd wrote nothing at {}",
            etsy_t(start)
        );
        for (name, w) in &want {
            compared += 1;
            match got.get(name) {
                None => report.push(format!("interval {i}: {name}: Etsy {w}, agent none")),
                Some(g) => {
                    let tolerance = if by_rank(name) {
                        // Two significant digits: within 1% of the sample Etsy picked.
                        0.01 * w.abs()
                    } else {
                        1e-9 * w.abs().max(1.0)
                    };
                    if (g - w).abs() > tolerance {
                        report.push(format!("interval {i}: {name}: Etsy {w}, agent {g}"));
                    }
                }
            }
        }
        for (name, g) in &got {
            if !want.contains_key(name) {
                report.push(format!("interval {i}: {name}: agent {g}, Etsy none"));
            }
        }
    }
    let hits: Vec<_> = agent_lines
        .iter()
        .chain(&etsy_lines)
        .filter(|l| l.0.contains("cmp.hits.count") || l.0.contains("cmp.queue"))
        .collect();
    assert!(
        report.is_empty(),
        "{} of {compared} differ:\n{}\nintervals {sent_at:?}; the hits counter on both sides: {hits:?}",
        report.len(),
        report.join("\n")
    );
    // Every kind was compared, and the quiet intervals too.
    let names: Vec<String> = interval(&etsy_lines, etsy_t(sent_at[1]))
        .into_keys()
        .collect();
    for want in [
        "stats.counters.cmp.hits.count",
        "stats.counters.cmp.sampled.rate",
        "stats.gauges.cmp.queue",
        "stats.sets.cmp.users.count",
        "stats.timers.cmp.latency.count",
        "stats.counters.cmp.tagged.count;dc=ny0;env=prod",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(compared > 100, "only {compared} values compared");
    assert_eq!(agent.metric("tally_agent_statsd_bad"), Some(0.0));
}
