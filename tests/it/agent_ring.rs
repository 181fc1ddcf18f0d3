//! Issue 14: the agent placing its series on three stores itself (`examples/relay/agent.toml`:
//! `carbon_ch`, replication 2, with the test's ports) while `tally gen-log` appends to its log.
//! One store is `kill -9`ed and stays away for a while; meanwhile the agent is `kill -9`ed and
//! restarted once; then the store comes back on its port. While it is away only its queue
//! grows (the other two stores keep receiving); afterwards:
//!
//! - every store holds exactly the series the ring gives it (the relay's placement for the
//!   same cluster, `relay.rs` checks that), and no other;
//! - the two replicas of each series hold the same points;
//! - one copy of each series adds up to exactly what the generator wrote (requests by status
//!   class and by vhost, beacons by source, latency samples): nothing lost, nothing doubled.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_agent::config::{Output, StoreTarget};
use tally_agent::ring::Ring;

use crate::crash_agent::{generate, Truth};
use crate::proc::{free_port, AgentProc, StoreProc};
use crate::relay::{example_text, held};

/// `examples/relay/agent.toml` with the test's stores, directories and quick timings, naming
/// series by path so that they spread over the ring one by one.
fn agent_config(dir: &Path, http: &[String], metrics: u16) -> String {
    let mut text = example_text("agent.toml");
    let mut swap = |from: &str, to: &str| {
        assert!(
            text.contains(from),
            "agent.toml has no {from:?}: update the test"
        );
        text = text.replacen(from, to, 1);
    };
    swap(
        "data_dir = \"./agent-data\"\n",
        &format!(
            "data_dir = \"{}\"\nnaming = \"path\"\ninterval = \"10s\"\nlateness = \"1h\"\n\
             commit_interval = \"300ms\"\npoll_interval = \"50ms\"\nscan_interval = \"200ms\"\n\
             metrics_listen = \"127.0.0.1:{metrics}\"\n",
            dir.join("agent").display()
        ),
    );
    swap(
        "paths = [\"/var/log/nginx/access.log*\"]\n",
        &format!(
            "paths = [\"{}/access.log*\"]\nstart_at = \"beginning\"\nrotate_wait = \"2s\"\n",
            dir.join("logs").display()
        ),
    );
    swap(
        "kind = \"tally\"\n",
        "kind = \"tally\"\ntimeout = \"2s\"\nmax_backoff = \"300ms\"\n",
    );
    for (i, h) in http.iter().enumerate() {
        swap(
            &format!("http://127.0.0.1:{}", 8081 + i),
            &format!("http://{h}"),
        );
    }
    text
}

/// The stores and ring of an agent config, as the agent builds them.
fn ring_of(config: &str) -> (Vec<StoreTarget>, Ring) {
    let settings = tally_agent::Settings::try_from(
        tally_agent::AgentConfig::parse(config).expect("config parses"),
    )
    .expect("config is valid");
    match settings.output {
        Output::Stores { stores, ring, .. } => (stores, ring),
        other => panic!("not several stores: {other:?}"),
    }
}

/// The path form of a tag value (`www.example.com` -> `www_example_com`).
fn node(v: &str) -> String {
    v.replace(['.', '/'], "_")
}

/// Every series of every store, then the check: `Ok` with how many series each store holds,
/// or what is wrong.
fn check(stores: &[StoreProc], ring: &Ring, truth: &Truth) -> Result<Vec<usize>, Vec<String>> {
    let targets = ["servers.web1.*.*", "servers.web1.*.*.*"];
    let mut held_by: Vec<BTreeMap<String, Vec<(i64, f64)>>> = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        match held(s, &targets) {
            Some(h) => held_by.push(h),
            None => return Err(vec![format!("store {i} does not answer")]),
        }
    }
    let mut wrong = Vec::new();
    let mut names: Vec<&String> = held_by.iter().flat_map(|h| h.keys()).collect();
    names.sort();
    names.dedup();
    let mut owners = Vec::new();
    // One copy of each series.
    let mut one: BTreeMap<&str, f64> = BTreeMap::new();
    for name in names {
        ring.place_series(name.as_bytes(), &mut owners);
        for (q, h) in held_by.iter().enumerate() {
            if h.contains_key(name) != owners.contains(&q) {
                wrong.push(format!(
                    "{name}: on store {q} {}, the ring says {owners:?}",
                    if h.contains_key(name) { "yes" } else { "no" }
                ));
            }
        }
        let copies: Vec<&Vec<(i64, f64)>> = owners
            .iter()
            .filter_map(|&q| held_by[q].get(name))
            .collect();
        if copies.windows(2).any(|w| w[0] != w[1]) {
            wrong.push(format!("{name}: the replicas differ"));
        }
        if let Some(c) = copies.first() {
            one.insert(name, c.iter().map(|(_, v)| v).sum());
        }
    }
    // servers.web1.requests.<vhost>.<class>, .latency.<vhost>.count, .beacons.<source>
    let sum = |f: &dyn Fn(&[&str]) -> bool| -> u64 {
        one.iter()
            .filter(|(n, _)| f(&n.split('.').collect::<Vec<_>>()))
            .map(|(_, v)| *v)
            .sum::<f64>() as u64
    };
    let mut want: Vec<(String, u64, u64)> = Vec::new();
    let good = truth.lines - truth.bad;
    want.push((
        "requests".into(),
        good,
        sum(&|n| n.len() == 5 && n[2] == "requests"),
    ));
    want.push((
        "latency count".into(),
        good,
        sum(&|n| n.len() == 5 && n[2] == "latency" && n[4] == "count"),
    ));
    let mut classes: BTreeMap<String, u64> = BTreeMap::new();
    for (status, n) in &truth.status {
        *classes.entry(format!("{}xx", &status[..1])).or_default() += n;
    }
    for (class, n) in classes {
        let got = sum(&|p| p.len() == 5 && p[2] == "requests" && p[4] == class);
        want.push((format!("requests {class}"), n, got));
    }
    for (vhost, n) in &truth.vhost {
        let v = node(vhost);
        let got = sum(&|p| p.len() == 5 && p[2] == "requests" && p[3] == v);
        want.push((format!("requests vhost {vhost}"), *n, got));
    }
    for (source, n) in &truth.beacons {
        let s = node(source);
        let got = sum(&|p| p.len() == 4 && p[2] == "beacons" && p[3] == s);
        want.push((format!("beacons {source}"), *n, got));
    }
    for (what, w, g) in want {
        if w != g {
            wrong.push(format!("{what}: written {w}, stores {g}"));
        }
    }
    if wrong.is_empty() {
        Ok(held_by.iter().map(|h| h.len()).collect())
    } else {
        Err(wrong)
    }
}

#[test]
fn issue_14_agent_on_three_stores_with_replication_2_keeps_every_share_exact_through_an_outage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("logs")).expect("mkdir");
    let http: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let store_dir = |i: usize| dir.join(format!("store{i}"));
    let mut stores: Vec<StoreProc> = (0..3)
        .map(|i| StoreProc::start_on(&store_dir(i), &http[i], &[]))
        .collect();
    let metrics = free_port();
    let config = agent_config(dir, &http, metrics);
    let path = dir.join("agent.toml");
    std::fs::write(&path, &config).expect("agent config");
    let (targets, ring) = ring_of(&config);
    let queue = |agent: &AgentProc, i: usize| {
        agent.metric(&format!(
            "tally_agent_store_spool_points{{store=\"{}\"}}",
            targets[i].url
        ))
    };

    let truth = Arc::new(Mutex::new(Truth::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let generator = {
        let (logs, truth, stop, appended) = (
            dir.join("logs"),
            truth.clone(),
            stop.clone(),
            appended.clone(),
        );
        std::thread::spawn(move || generate(logs, truth, stop, appended, 14))
    };
    let mut agent = AgentProc::start(&path);
    let wait = |what: &str, secs: u64, f: &mut dyn FnMut() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(Instant::now() < deadline, "{what} within {secs} s");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Everything flows to all three first.
    wait("every store receives", 30, &mut || {
        (0..3).all(|i| {
            agent
                .metric(&format!(
                    "tally_agent_store_points_shipped{{store=\"{}\"}}",
                    targets[i].url
                ))
                .is_some_and(|v| v > 0.0)
        })
    });

    // Store 1 goes away: its queue grows, the other two keep being emptied.
    stores[1].kill9();
    let away = Instant::now();
    wait("store 1's queue grows", 30, &mut || {
        queue(&agent, 1).is_some_and(|v| v > 0.0)
    });
    let seen = appended.load(Relaxed);
    wait("more lines are appended", 30, &mut || {
        appended.load(Relaxed) > seen + 2
    });
    let mut others_drained = false;
    let mut grown = 0.0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !others_drained {
        let q: Vec<f64> = (0..3).map(|i| queue(&agent, i).unwrap_or(-1.0)).collect();
        grown = q[1];
        others_drained = q[0] == 0.0 && q[2] == 0.0 && q[1] > 0.0;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        others_drained,
        "while store 1 is down, only its queue holds points (last seen {grown} there)"
    );

    // The agent dies too, and comes back to the queue it left.
    agent.kill9();
    std::thread::sleep(Duration::from_millis(300));
    agent = AgentProc::start(&path);
    wait("store 1's queue is still there", 10, &mut || {
        queue(&agent, 1).is_some_and(|v| v >= grown)
    });
    std::thread::sleep(Duration::from_secs(2));
    stores[1] = StoreProc::start_on(&store_dir(1), &http[1], &[]);
    eprintln!(
        "store 1 was away {:.1} s; {grown} points waited for it",
        away.elapsed().as_secs_f64()
    );
    wait("store 1's queue is delivered", 60, &mut || {
        queue(&agent, 1) == Some(0.0)
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Relaxed);
    let (runs, rotations) = generator.join().expect("generator");
    let truth = truth.lock().expect("truth").clone();

    // Once the totals are there, the agent stops (its last commit delivered to both replicas):
    // while it runs, every interval brings new points (zero-filled counters, its own counters)
    // that reach one replica a moment before the other.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut result = check(&stores, &ring, &truth);
    while result.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        result = check(&stores, &ring, &truth);
    }
    assert!(agent.terminate().success(), "the agent stops cleanly");
    let result = check(&stores, &ring, &truth);
    // Nothing may arrive later to double a count.
    std::thread::sleep(Duration::from_secs(3));
    let again = check(&stores, &ring, &truth);
    let held = match (&result, &again) {
        (Ok(a), Ok(b)) if a == b => a.clone(),
        _ => panic!(
            "after {runs} gen-log runs ({} lines, {rotations} rotations): {:#?}",
            truth.lines,
            again.err().or(result.err()).unwrap_or_default()
        ),
    };
    eprintln!(
        "agent on three stores: {} lines in {runs} gen-log runs, {rotations} rotations; series \
         per store {held:?}",
        truth.lines
    );
    assert!(truth.lines > 0, "the generator wrote nothing");
    assert!(
        held.iter().all(|&n| n > 0) && held[1] > 0,
        "every store has a share: {held:?}"
    );
    for s in &mut stores {
        assert!(s.terminate().success());
    }
}
