//! The agent shipping Graphite plaintext to a real carbon-cache (Debian `graphite-carbon`), read
//! back through the real graphite-web: every total the generator wrote arrives.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::compat::get;
use crate::graphite_web::GraphiteWeb;
use crate::proc::AgentProc;

fn total(gw: &GraphiteWeb, target: &str) -> Option<f64> {
    let (status, body) = get(&gw.url(&format!(
        "/render?target={target}&from=-20min&until=now&format=json"
    )));
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    let series = v.as_array()?;
    if series.is_empty() {
        return None;
    }
    Some(
        series
            .iter()
            .flat_map(|s| s["datapoints"].as_array().cloned().unwrap_or_default())
            .map(|p| p[0].as_f64().unwrap_or(0.0))
            .sum(),
    )
}

#[test]
fn issue_5_agent_ships_exact_totals_to_a_real_carbon() {
    let gw = GraphiteWeb::start_with_carbon();
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("access.log");
    let now = tally_common::unix_now();
    // Ten minutes of traffic that ended a minute ago, at 10 lines a second.
    let mut g = tally_agent::gen::Gen::new(5, now - 660, 10);
    g.beacon_share = 0.05;
    let mut truth = tally_agent::gen::Truth::default();
    let mut text = Vec::new();
    for _ in 0..6000 {
        g.line(&mut text, &mut truth);
    }
    std::fs::write(&log, &text).expect("log");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"host = "web1"
data_dir = "{data}"
commit_interval = "200ms"
poll_interval = "50ms"
metrics_listen = "127.0.0.1:0"
[[input]]
paths = ["{log}"]
start_at = "beginning"
[output]
kind = "carbon"
address = "127.0.0.1:{port}"
"#,
            data = tmp.path().join("agent").display(),
            log = log.display(),
            port = gw.line_port
        ),
    )
    .expect("config");
    let agent = AgentProc::start(&config);
    let beacons: u64 = truth.beacons.values().sum();
    let requests = truth.lines - truth.bad;
    let five_xx: u64 = truth
        .status
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    let want = [
        (
            "sumSeries(seriesByTag('name=beacons'))".to_string(),
            beacons as f64,
        ),
        (
            "sumSeries(seriesByTag('name=beacons','source=cdn_fastly'))".to_string(),
            truth.beacons["cdn_fastly"] as f64,
        ),
        (
            "sumSeries(seriesByTag('name=requests'))".to_string(),
            requests as f64,
        ),
        (
            "sumSeries(seriesByTag('name=requests','status=5xx'))".to_string(),
            five_xx as f64,
        ),
        (
            "sumSeries(seriesByTag('name=latency','stat=count'))".to_string(),
            requests as f64,
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut got: Vec<Option<f64>> = Vec::new();
    while Instant::now() < deadline {
        got = want.iter().map(|(t, _)| total(&gw, t)).collect();
        if got.iter().zip(&want).all(|(g, w)| *g == Some(w.1)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for ((target, w), g) in want.iter().zip(&got) {
        assert_eq!(*g, Some(*w), "{target}\ncarbon log:\n{}", gw.logs());
    }
    assert_eq!(
        agent.metric("tally_agent_lines_bad"),
        Some(truth.bad as f64)
    );
    // The agent's own counters travel with the rest.
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(
        &gw,
        "seriesByTag('name=tally.agent.lines_read','host=web1')",
    )
    .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no tally.agent.lines_read;host=web1 in carbon"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(agent.metric("tally_agent_ship_errors"), Some(0.0));
}
