//! Issue 14: the real carbon-c-relay 3.7 (Debian `carbon-c-relay`), as the placement oracle of
//! the agent's ring and as the router in front of several stores.
//!
//! - `carbon-c-relay -t` (test mode: reads names on stdin, prints where each would go) over
//!   10,000 names, for `carbon_ch`, `fnv1a_ch` and `jump_fnv1a_ch` over 3 and 5 servers with
//!   replication 1 and 2, and for the configurations of `examples/relay/` against the agent of
//!   `examples/relay/agent.toml`: the ring must name the same stores, in the same order.
//! - Three `tally store`s behind a live relay run with `examples/relay/carbon_ch.conf`
//!   (`replication 2`): every series, path and tagged, lands on exactly the two stores the ring
//!   names, with every value exact; the others hold none of it.
//!
//! [`Relay`] runs the relay on a loopback port the test picks and kills it on drop; [`example`]
//! instantiates a file of `examples/relay/` with the test's ports, so the examples are what is
//! tested.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tally_agent::config::Output;
use tally_agent::ring::{Hashing, Member, Ring};

use crate::proc::{free_port, unix_now, Rng, StoreProc};

pub const BIN: &str = "/usr/bin/carbon-c-relay";

fn installed() {
    assert!(
        Path::new(BIN).exists(),
        "carbon-c-relay is not installed: run scripts/setup.sh test (./x test does)"
    );
}

/// A file of `examples/relay/`.
pub fn example_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/relay")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `examples/relay/<name>` (a relay configuration) listening on `listen`, with `stores` (their
/// plaintext addresses) in place of the example's 127.0.0.1:2103, :2203 and :2303, in order.
pub fn example(name: &str, listen: u16, stores: &[SocketAddr]) -> String {
    let mut text = example_text(name);
    let mut swap = |from: &str, to: &str| {
        assert!(
            text.contains(from),
            "{name} has no {from:?}: update the test"
        );
        text = text.replace(from, to);
    };
    swap(
        "        2003 proto tcp",
        &format!("        127.0.0.1:{listen} proto tcp"),
    );
    for (from, to) in ["127.0.0.1:2103=", "127.0.0.1:2203=", "127.0.0.1:2303="]
        .iter()
        .zip(stores)
    {
        swap(from, &format!("{to}="));
    }
    text
}

/// A carbon-c-relay routing plaintext, killed when dropped.
pub struct Relay {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// Runs the relay with `config` (which listens on `port`); returns once it accepts.
    pub fn start(config: &str, port: u16) -> Relay {
        installed();
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("relay.conf");
        std::fs::write(&conf, config).expect("relay config");
        let log = dir.path().join("relay.log");
        let out = std::fs::File::create(&log).expect("relay log");
        let mut child = Command::new(BIN)
            .arg("-f")
            .arg(&conf)
            // -s: submission mode, no statistics of the relay's own in the stream (they would
            // be series the tests did not send).
            .args(["-s", "-w", "2", "-H", "tallytest"])
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("carbon-c-relay starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "carbon-c-relay exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "carbon-c-relay did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Relay {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Sends plaintext over one TCP connection.
    pub fn send(&self, text: &str) {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        c.write_all(text.as_bytes()).expect("send");
    }

    /// What the relay logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `carbon-c-relay -t -f <config>` sends each of `names`: per name, per cluster, the
/// servers (`ip:port`) in the order it prints them.
fn test_mode(config: &str, names: &[String]) -> Vec<BTreeMap<String, Vec<String>>> {
    installed();
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("relay.conf");
    std::fs::write(&conf, config).expect("config");
    let mut child = Command::new(BIN)
        .arg("-t")
        .arg("-f")
        .arg(&conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("carbon-c-relay -t starts");
    let mut input = String::new();
    for n in names {
        input.push_str(n);
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("carbon-c-relay -t");
    writer.join().expect("writer").expect("stdin written");
    assert!(out.status.success(), "carbon-c-relay -t: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    // match
    //     * -> NAME
    //     carbon_ch(CLUSTER)
    //         127.0.0.1:2103
    //     stop
    let mut records: Vec<(String, BTreeMap<String, Vec<String>>)> = Vec::new();
    let mut cluster: Option<String> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("    * -> ") {
            records.push((name.to_string(), BTreeMap::new()));
            cluster = None;
        } else if let Some(rest) = line.strip_prefix("    ") {
            if let Some(dest) = rest.strip_prefix("    ") {
                if let (Some(c), Some((_, r))) = (&cluster, records.last_mut()) {
                    r.entry(c.clone())
                        .or_default()
                        .push(dest.trim().to_string());
                }
            } else if let Some((_, c)) = rest
                .strip_suffix(')')
                .and_then(|r| r.split_once('('))
                .filter(|(kind, _)| kind.ends_with("_ch"))
            {
                cluster = (!records.is_empty()).then(|| c.to_string());
            } else {
                cluster = None;
            }
        }
    }
    assert_eq!(records.len(), names.len(), "one record per name");
    records
        .into_iter()
        .zip(names)
        .map(|((printed, r), n)| {
            assert_eq!(&printed, n, "the relay's records come in input order");
            r
        })
        .collect()
}

/// 10,000 names: Graphite paths of the usual shapes, names with every byte the relay keeps
/// (`-_:#`), digits, long nodes, UTF-8 (bytes above 0x7f, which the relay hashes as signed
/// chars) and tagged names (which `-t` hashes whole).
fn names(n: usize) -> Vec<String> {
    let mut rng = Rng(14);
    let words = [
        "servers",
        "web",
        "api",
        "requests",
        "latency",
        "p99",
        "count",
        "cpu",
        "user",
        "disk",
        "eth0",
        "rx_bytes",
        "www_example_com",
        "2xx",
        "5xx",
        "cdn",
        "beacons",
        "origin",
    ];
    let odd = ["café", "naïve", "日本", "ünï", "x-y", "a:b", "c#d", "_"];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let nodes = 1 + rng.below(6) as usize;
        let mut name = String::new();
        for j in 0..nodes {
            if j > 0 {
                name.push('.');
            }
            match rng.below(10) {
                0..=5 => name.push_str(words[rng.below(words.len() as u64) as usize]),
                6 => name.push_str(odd[rng.below(odd.len() as u64) as usize]),
                7 => name.push_str(&format!("host{}", rng.below(500))),
                8 => {
                    for _ in 0..1 + rng.below(40) {
                        name.push((b'a' + rng.below(26) as u8) as char);
                    }
                }
                _ => name.push_str(&i.to_string()),
            }
        }
        if rng.below(10) == 0 {
            name.push_str(&format!(
                ";host=web{};status={}xx",
                rng.below(9),
                2 + rng.below(4)
            ));
        }
        out.push(name);
    }
    out
}

/// Compares `ring` (over `members`) with the relay's answers for `cluster`.
fn same_as_relay(
    what: &str,
    ring: &Ring,
    members: &[Member],
    cluster: &str,
    names: &[String],
    relay: &[BTreeMap<String, Vec<String>>],
) -> Vec<String> {
    let index: BTreeMap<String, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{}:{}", m.host, m.port), i))
        .collect();
    let mut wrong = Vec::new();
    let mut ours = Vec::new();
    for (name, r) in names.iter().zip(relay) {
        let theirs: Vec<usize> = r
            .get(cluster)
            .unwrap_or_else(|| panic!("{what}: no answer for {name}"))
            .iter()
            .map(|d| index[d.as_str()])
            .collect();
        ring.place_key(name.as_bytes(), &mut ours);
        if ours != theirs {
            wrong.push(format!("{what}: {name}: relay {theirs:?}, ring {ours:?}"));
        }
    }
    wrong
}

#[test]
fn issue_14_the_agents_ring_places_10000_names_as_carbon_c_relay_does() {
    let names = names(10_000);
    // Three servers on one host told apart by instance; five without instances (carbon_ch by
    // host, fnv1a_ch by host and port); numeric instances out of order (jump_fnv1a_ch sorts).
    let sets: [(&str, Vec<&str>); 4] = [
        (
            "i3",
            vec!["127.0.0.1:2103=a", "127.0.0.1:2203=b", "127.0.0.1:2303=c"],
        ),
        (
            "h5",
            vec![
                "10.0.0.1:2003",
                "10.0.0.2:2003",
                "10.0.0.3:2004",
                "10.0.0.4:2003",
                "10.0.0.5:2003",
            ],
        ),
        (
            "p5",
            vec![
                "127.0.0.2:2103",
                "127.0.0.2:2203",
                "127.0.0.2:2303",
                "127.0.0.3:2103",
                "127.0.0.3:2203",
            ],
        ),
        (
            "n3",
            vec!["10.0.1.1:2003=3", "10.0.1.2:2003=1", "10.0.1.3:2003=2"],
        ),
    ];
    let mut config = String::new();
    let mut clusters: Vec<(String, Hashing, usize, Vec<Member>)> = Vec::new();
    for (set, servers) in &sets {
        for hashing in [Hashing::CarbonCh, Hashing::Fnv1aCh, Hashing::JumpFnv1aCh] {
            // carbon_ch cannot tell p5's servers apart (one host, no instances).
            if *set == "p5" && hashing == Hashing::CarbonCh {
                continue;
            }
            for repl in [1, 2] {
                let name = format!("{set}_{hashing}_{repl}");
                config.push_str(&format!(
                    "cluster {name} {hashing} replication {repl} {} ;\n",
                    servers.join(" ")
                ));
                let members = servers
                    .iter()
                    .map(|s| Member::parse(s).expect("member"))
                    .collect();
                clusters.push((name, hashing, repl, members));
            }
        }
    }
    let all: Vec<&str> = clusters.iter().map(|c| c.0.as_str()).collect();
    config.push_str(&format!("match * send to {} stop ;\n", all.join(" ")));
    let relay = test_mode(&config, &names);
    let mut wrong = Vec::new();
    for (name, hashing, repl, members) in &clusters {
        let ring = Ring::new(*hashing, members, *repl).expect("ring");
        wrong.extend(same_as_relay(name, &ring, members, name, &names, &relay));
    }
    // The examples: the relay's files as they are, and the agent of examples/relay/agent.toml.
    let agent = tally_agent::Settings::try_from(
        tally_agent::AgentConfig::parse(&example_text("agent.toml")).expect("agent.toml parses"),
    )
    .expect("agent.toml is valid");
    let Output::Stores { stores, ring, .. } = agent.output else {
        panic!("agent.toml has several stores");
    };
    let members: Vec<Member> = stores.iter().map(|s| s.server.clone()).collect();
    let relay = test_mode(&example_text("carbon_ch.conf"), &names);
    wrong.extend(same_as_relay(
        "examples/relay/carbon_ch.conf",
        &ring,
        &members,
        "tally",
        &names,
        &relay,
    ));
    let fnv = Ring::new(Hashing::Fnv1aCh, &members, 2).expect("ring");
    let relay = test_mode(&example_text("fnv1a_ch.conf"), &names);
    wrong.extend(same_as_relay(
        "examples/relay/fnv1a_ch.conf",
        &fnv,
        &members,
        "tally",
        &names,
        &relay,
    ));
    assert!(
        wrong.is_empty(),
        "{} placements differ, the first: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
}

/// Every series a store holds under `targets` over the last hour: name -> (time, value).
pub fn held(store: &StoreProc, targets: &[&str]) -> Option<BTreeMap<String, Vec<(i64, f64)>>> {
    let mut q: Vec<(&str, String)> = targets.iter().map(|t| ("target", t.to_string())).collect();
    q.extend([
        ("from", "-2h".to_string()),
        ("until", "+1h".to_string()),
        ("format", "json".to_string()),
    ]);
    let resp = reqwest::blocking::Client::new()
        .get(store.url("/render"))
        .query(&q)
        .timeout(Duration::from_secs(20))
        .send()
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&resp.text().ok()?).ok()?;
    let mut out = BTreeMap::new();
    for s in v.as_array()? {
        let points: Vec<(i64, f64)> = s["datapoints"]
            .as_array()?
            .iter()
            .filter_map(|p| Some((p[1].as_i64()?, p[0].as_f64()?)))
            .collect();
        if !points.is_empty() {
            out.insert(s["target"].as_str()?.to_string(), points);
        }
    }
    Some(out)
}

#[test]
fn issue_14_three_stores_behind_the_relay_hold_each_series_on_its_two() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stores: Vec<StoreProc> = ["a", "b", "c"]
        .iter()
        .map(|n| StoreProc::start_quiet(&tmp.path().join(n)))
        .collect();
    let lines: Vec<SocketAddr> = stores.iter().map(|s| s.line).collect();
    let port = free_port();
    let relay = Relay::start(&example("carbon_ch.conf", port, &lines), port);
    // The ring of the same cluster, with the test's addresses in it.
    let members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .zip(&lines)
        .map(|(i, a)| Member::parse(&format!("{a}={i}")).expect("member"))
        .collect();
    let ring = Ring::new(Hashing::CarbonCh, &members, 2).expect("ring");

    // 300 path series and 150 tagged ones (30 names, 5 tag values each), three points each,
    // with values exact in decimal.
    let t0 = unix_now() / 10 * 10 - 600;
    let mut text = String::new();
    let mut want: Vec<BTreeMap<String, Vec<(i64, f64)>>> = vec![BTreeMap::new(); 3];
    let mut owners = Vec::new();
    let mut add = |name: String, k: usize, text: &mut String| {
        let points: Vec<(i64, f64)> = (0..3)
            .map(|p| (t0 + 10 * p, k as f64 + p as f64 / 4.0))
            .collect();
        for (t, v) in &points {
            text.push_str(&format!("{name} {v} {t}\n"));
        }
        ring.place_series(name.as_bytes(), &mut owners);
        assert_eq!(owners.len(), 2);
        for &o in &owners {
            want[o].insert(name.clone(), points.clone());
        }
    };
    for i in 0..100 {
        for m in 0..3 {
            add(format!("relaytest.s{i}.m{m}"), i * 3 + m, &mut text);
        }
    }
    for k in 0..30 {
        for i in 0..5 {
            add(format!("relaytagged{k};i={i}"), 1000 + k * 5 + i, &mut text);
        }
    }
    relay.send(&text);
    let targets = ["relaytest.*.*", "seriesByTag('name=~^relaytagged')"];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got: Vec<_> = stores.iter().map(|s| held(s, &targets)).collect();
    while Instant::now() < deadline && got.iter().zip(&want).any(|(g, w)| g.as_ref() != Some(w)) {
        std::thread::sleep(Duration::from_millis(300));
        got = stores.iter().map(|s| held(s, &targets)).collect();
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let g = g.clone().unwrap_or_default();
        let missing: Vec<&String> = w.keys().filter(|k| g.get(*k) != w.get(*k)).collect();
        let stray: Vec<&String> = g.keys().filter(|k| !w.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && stray.is_empty(),
            "store {i} ({} series wanted, {} held): missing or different {missing:?}, not its own \
             {stray:?}\nrelay log:\n{}",
            w.len(),
            g.len(),
            relay.log()
        );
    }
    // Every store has a share, every series is on two: 2 x 450 in all.
    assert!(
        want.iter().all(|w| w.len() > 150),
        "{:?}",
        want.iter().map(|w| w.len()).collect::<Vec<_>>()
    );
    assert_eq!(want.iter().map(|w| w.len()).sum::<usize>(), 900);
    // The test tells the relay's rule (the name before ';') from hashing the whole name: some
    // tagged series would be elsewhere by the latter.
    let (mut by_name, mut whole) = (Vec::new(), Vec::new());
    let differ = (0..30).any(|k| {
        let n = format!("relaytagged{k};i=0");
        ring.place_series(n.as_bytes(), &mut by_name);
        ring.place_key(n.as_bytes(), &mut whole);
        by_name != whole
    });
    assert!(differ, "no tagged series tells the two rules apart");
    drop(relay);
    for mut s in stores {
        assert!(s.terminate().success());
    }
}
