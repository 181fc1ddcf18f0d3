//! Ingest into a running store: acknowledged batches survive kill -9; plaintext over TCP keeps
//! every good line around bad ones; slow clients do not stall others; the allowlist refuses.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use tally_common::unix_now;

use tally_proto::IngestReply;
use tally_store::{Store, StoreOptions};

use crate::proc::StoreProc;

fn post_batch(store: &StoreProc, body: String) -> IngestReply {
    let resp = reqwest::blocking::Client::new()
        .post(store.url("/api/v1/ingest"))
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .send()
        .expect("ingest request");
    assert_eq!(resp.status(), 200);
    serde_json::from_str(&resp.text().expect("body")).expect("ingest reply is JSON")
}

/// Opens the data directory in this process (the server must have exited) and reads a series.
fn read_back(dir: &std::path::Path, name: &str, from: i64, until: i64) -> Vec<Option<f64>> {
    let store = Store::open(StoreOptions::new(dir)).expect("store opens after the server is gone");
    store
        .read(name, from, until, None)
        .expect("read")
        .map(|s| s.values)
        .unwrap_or_default()
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = unix_now() - unix_now() % 10 - 3000;
    let mut proc = StoreProc::start(dir.path(), &[]);
    let (series, points) = (50, 100);
    for s in 0..series {
        let mut body = String::new();
        for p in 0..points {
            body.push_str(&format!(
                "kill9.s{s};host=web{} {} {}\n",
                s % 3,
                s * 1000 + p,
                t0 + p * 10
            ));
        }
        body.push_str("this line is bad\n");
        let reply = post_batch(&proc, body);
        assert_eq!((reply.accepted, reply.rejected), (points as u64, 1));
        assert!(
            reply.errors[0].starts_with(&format!("line {}: ", points + 1)),
            "{:?}",
            reply.errors
        );
    }
    proc.kill9();
    for s in 0..series {
        let got = read_back(
            dir.path(),
            &format!("kill9.s{s};host=web{}", s % 3),
            t0 - 10,
            t0 + (points - 1) * 10,
        );
        let want: Vec<Option<f64>> = (0..points).map(|p| Some((s * 1000 + p) as f64)).collect();
        assert_eq!(got, want, "series {s}");
    }
    // And the server itself starts again on the same data and stops cleanly.
    let mut again = StoreProc::start(dir.path(), &[]);
    assert!(again.terminate().success());
}

#[test]
fn plaintext_keeps_good_lines_around_bad_ones_and_sigterm_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = unix_now() - unix_now() % 10 - 600;
    let mut proc = StoreProc::start(dir.path(), &[]);
    let mut conn = TcpStream::connect(proc.line).expect("connect");
    let text = format!(
        "tcp.a 1 {t0}\r\nnot a metric\ntcp.a 2 {}\ntcp.b NaN {t0}\ntcp.a..b 1 {t0}\ntcp.b 5.5 {t0}\ntcp.c 7 {}",
        t0 + 10,
        t0 + 20
    );
    // Split mid-line across writes; the last line has no newline and ends at EOF.
    for piece in text.as_bytes().chunks(7) {
        conn.write_all(piece).expect("write");
        conn.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = proc.metrics();
    assert!(metrics.contains("tally_store_lines_bad 2\n"), "{metrics}");
    assert!(
        metrics.contains("tally_store_points_skipped 1\n"),
        "{metrics}"
    );
    assert!(proc.terminate().success());
    assert_eq!(
        read_back(dir.path(), "tcp.a", t0 - 10, t0 + 10),
        [Some(1.0), Some(2.0)]
    );
    assert_eq!(read_back(dir.path(), "tcp.b", t0 - 10, t0), [Some(5.5)]);
    assert_eq!(
        read_back(dir.path(), "tcp.c", t0 + 10, t0 + 20),
        [Some(7.0)]
    );
}

/// Issue 17: a plaintext point outside every retention (a timestamp of 17) was counted as
/// written and could never be read. It is refused and counted apart; the line after it goes in.
#[test]
fn issue_17_plaintext_points_outside_every_retention_are_counted_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut proc = StoreProc::start_quiet(dir.path());
    let t = unix_now() - unix_now() % 10 - 60;
    let mut conn = TcpStream::connect(proc.line).expect("connect");
    conn.write_all(format!("old.x 1 17\nnew.x 2 {t}\n").as_bytes())
        .expect("write");
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = proc.metrics();
    for want in [
        "tally_store_points_received 2\n",
        "tally_store_points_outside_retention 1\n",
        "tally_store_points_written 1\n",
        "tally_store_series 1\n",
    ] {
        assert!(metrics.contains(want), "{want} missing from {metrics}");
    }
    assert!(proc.terminate().success());
    assert_eq!(
        read_back(&dir.path().join("data"), "new.x", t - 10, t),
        [Some(2.0)]
    );
}

#[test]
fn an_idle_client_does_not_stall_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = unix_now() - unix_now() % 10 - 600;
    let mut proc = StoreProc::start(dir.path(), &[]);
    // A client that sends half a line and then nothing.
    let mut idle = TcpStream::connect(proc.line).expect("connect");
    idle.write_all(b"idle.half 1").expect("write");
    let mut many = Vec::new();
    for c in 0..20 {
        let mut conn = TcpStream::connect(proc.line).expect("connect");
        conn.write_all(format!("busy.c{c} {c} {t0}\n").as_bytes())
            .expect("write");
        many.push(conn);
    }
    drop(many);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = proc.metrics();
    assert!(
        metrics.contains("tally_store_points_received 20\n"),
        "{metrics}"
    );
    assert!(
        proc.terminate().success(),
        "an idle connection must not block shutdown"
    );
    drop(idle);
    for c in 0..20 {
        assert_eq!(
            read_back(dir.path(), &format!("busy.c{c}"), t0 - 10, t0),
            [Some(f64::from(c))]
        );
    }
}

#[test]
fn the_allowlist_refuses_other_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut proc = StoreProc::start_with_config(
        dir.path(),
        "allow_cidrs = [\"10.0.0.0/8\"]\nself_metrics_interval = \"0s\"\n",
    );
    let mut conn = TcpStream::connect(proc.line).expect("connect");
    let _ = conn.write_all(format!("refused.x 1 {}\n", unix_now()).as_bytes());
    drop(conn);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = proc.metrics();
    assert!(
        metrics.contains("tally_store_connections_refused 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("tally_store_series 0\n"), "{metrics}");
    assert!(proc.terminate().success());
}

#[test]
fn check_config_reports_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "line_listen = \"nope\"\nflush_interval = \"0s\"\ndefault_retentions = \"10s\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["store", "--check-config", "--config"])
        .arg(&cfg)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "line_listen: \"nope\"",
        "flush_interval: \"0s\" must be more than 0",
        "default_retentions: \"10s\"",
    ] {
        assert!(err.contains(want), "{want} missing from {err}");
    }
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "store",
            "--check-config",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/store.toml"),
        ])
        .output()
        .expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn udp_datagrams_are_split_into_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = unix_now() - unix_now() % 10 - 600;
    let mut proc = StoreProc::start(dir.path(), &["--udp"]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let datagram = format!("udp.a 1 {t0}\nbad\nudp.a 2 {}\nudp.b 3 {t0}", t0 + 10);
    sock.send_to(datagram.as_bytes(), proc.line).expect("send");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = proc.metrics();
        if metrics.contains("tally_store_points_received 3\n") {
            assert!(metrics.contains("tally_store_lines_bad 1\n"), "{metrics}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "datagram not ingested: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(proc.terminate().success());
    assert_eq!(
        read_back(dir.path(), "udp.a", t0 - 10, t0 + 10),
        [Some(1.0), Some(2.0)]
    );
    assert_eq!(read_back(dir.path(), "udp.b", t0 - 10, t0), [Some(3.0)]);
}

#[test]
fn points_are_readable_the_moment_they_are_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = unix_now() - unix_now() % 10 - 600;
    let proc = StoreProc::start(dir.path(), &[]);
    let reply = post_batch(&proc, format!("fresh.series;dc=ny 42 {t0}\n"));
    assert_eq!(reply.accepted, 1);
    // No wait at all: a new series is readable as soon as its batch is acknowledged.
    let url = proc.url(&format!(
        "/api/v1/read?name=fresh.series%3Bdc%3Dny&from={}&until={t0}",
        t0 - 10
    ));
    let body: serde_json::Value = serde_json::from_str(
        &reqwest::blocking::get(url)
            .expect("read")
            .text()
            .expect("text"),
    )
    .expect("json");
    assert_eq!(body["values"], serde_json::json!([42.0]));
    assert_eq!(body["step"], 10);
    let missing = reqwest::blocking::get(proc.url("/api/v1/read?name=nope")).expect("read");
    assert_eq!(missing.status(), 404);
    let bad = reqwest::blocking::get(proc.url("/api/v1/read?name=x&from=yesterday")).expect("read");
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .unwrap_or_default()
        .contains("\\\"yesterday\\\" is not epoch seconds"));
}

#[test]
fn the_write_token_is_required_for_ingest_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc = StoreProc::start_with_config(dir.path(), "write_token = \"s3cret\"\n");
    let client = reqwest::blocking::Client::new();
    let body = format!("tok.x 1 {}\n", unix_now());
    let denied = client
        .post(proc.url("/api/v1/ingest"))
        .body(body.clone())
        .send()
        .expect("post");
    assert_eq!(denied.status(), 401);
    let ok = client
        .post(proc.url("/api/v1/ingest"))
        .header("authorization", "Bearer s3cret")
        .body(body)
        .send()
        .expect("post");
    assert_eq!(ok.status(), 200);
}

#[test]
fn the_store_writes_its_own_metrics_as_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc = StoreProc::start_with_config(dir.path(), "self_metrics_interval = \"1s\"\n");
    post_batch(&proc, format!("some.series 1 {}\n", unix_now()));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let url = proc.url(&format!(
            "/api/v1/read?name=tally.store.batches_acked&from={}",
            unix_now() - 60
        ));
        let resp = reqwest::blocking::get(url).expect("read");
        if resp.status() == 200 {
            let body: serde_json::Value =
                serde_json::from_str(&resp.text().expect("text")).expect("json");
            let values = body["values"].as_array().cloned().unwrap_or_default();
            if values.iter().any(|v| v.as_f64() == Some(1.0)) {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tally.store.batches_acked never showed 1"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 3: SIGTERM right after the store says it is listening must still be a clean stop. The
/// handler was once installed lazily, after that line, so an early SIGTERM killed the process.
#[test]
fn issue_3_sigterm_right_after_start_is_a_clean_stop() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut proc = StoreProc::start_quiet(dir.path());
        assert!(
            proc.terminate().success(),
            "SIGTERM right after start killed the store"
        );
    }
}
