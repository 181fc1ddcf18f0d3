//! The store's HTTP port under hostile clients (issue 17), against the real binary: idle
//! connections past the descriptor limit, slowloris, a slow body, more requests than it serves
//! at once. Each failed on the `axum::serve` the port had before.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::proc::{unix_now, StoreProc};

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Everything the server sends until it closes (or 10 s pass): the status and the text.
fn answer(s: &mut TcpStream) -> (u16, String) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

fn metric(store: &StoreProc, name: &str) -> u64 {
    let text = store.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

fn store(dir: &std::path::Path, config: &str) -> StoreProc {
    StoreProc::start_with_config(dir, &format!("self_metrics_interval = \"0s\"\n{config}"))
}

#[test]
fn issue_17_idle_connections_past_the_descriptor_limit_do_not_stop_render_or_ingest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("store.toml");
    std::fs::write(
        &cfg,
        "self_metrics_interval = \"0s\"\nhttp_max_connections = 100\nmax_connections = 50\n",
    )
    .expect("config");
    let mut cmd = StoreProc::command(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &["--config", cfg.to_str().unwrap_or_default()],
    );
    #[allow(unsafe_code)]
    // SAFETY: setrlimit is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 400,
                rlim_max: 400,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let store = StoreProc::spawn(&mut cmd);
    // Two and a half times the store's descriptors in connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        if let Ok(s) = TcpStream::connect_timeout(&store.http, Duration::from_secs(1)) {
            idle.push(s);
        }
    }
    let t = unix_now() - unix_now() % 10 - 60;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let ingest = client
        .post(store.url("/api/v1/ingest"))
        .body(format!("under.siege 42 {t}\n"))
        .send()
        .expect("ingest answers despite the idle connections");
    assert_eq!(ingest.status(), 200);
    let render = client
        .get(store.url(&format!(
            "/render?target=under.siege&from={}&until={}&format=json",
            t - 10,
            t + 10
        )))
        .send()
        .expect("render answers despite the idle connections");
    assert_eq!(render.status(), 200);
    let body = render.text().expect("body");
    assert!(body.contains("[42.0,"), "{body}");
    assert!(
        idle.len() >= 500,
        "only {} connections were made",
        idle.len()
    );
    assert!(metric(&store, "tally_store_http_connections_open") <= 100);
    // Idle connections past the cap made room by closing the one idle the longest: more of
    // them than the store has descriptors.
    let evicted = metric(&store, "tally_store_http_connections_evicted");
    let refused = metric(&store, "tally_store_http_connections_refused");
    assert!(evicted >= 400, "evicted {evicted}, refused {refused}");
    assert_eq!(metric(&store, "tally_store_http_accept_errors"), 0);
    drop(idle);
}

#[test]
fn issue_17_slowloris_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), "http_header_timeout = \"1s\"\n");
    let request =
        b"GET /render?target=a.b HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut socks: Vec<Option<TcpStream>> = (0..50)
        .map(|_| {
            let s = connect(store.http);
            s.set_nonblocking(true).expect("nonblocking");
            Some(s)
        })
        .collect();
    let started = Instant::now();
    let mut closed = 0;
    // One byte a connection every 200 ms: the headers would take 15 s.
    for &b in request.iter() {
        for slot in socks.iter_mut() {
            let Some(s) = slot else { continue };
            let mut buf = [0u8; 64];
            let gone = match s.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            } || s.write_all(&[b]).is_err();
            if gone {
                *slot = None;
                closed += 1;
            }
        }
        if closed == socks.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(closed, 50, "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(metric(&store, "tally_store_http_header_timeouts"), 50);
}

#[test]
fn issue_17_a_slow_ingest_body_gets_408_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), "http_body_timeout = \"1s\"\n");
    let t = unix_now() - 60;
    let mut s = connect(store.http);
    write!(
        s,
        "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
         Content-Length: 1000\r\n\r\nslow.body 1 {t}\n"
    )
    .expect("write");
    let (status, text) = answer(&mut s);
    assert_eq!(status, 408, "{text}");
    assert!(
        text.contains(
            r#"{"error":"the request body did not arrive within 1 s (http_body_timeout)"}"#
        ),
        "{text}"
    );
    assert!(text.contains("connection: close"), "{text}");
    let read = reqwest::blocking::get(store.url("/api/v1/read?name=slow.body")).expect("read");
    assert_eq!(read.status(), 404, "nothing of the cut batch was written");
    assert_eq!(metric(&store, "tally_store_http_body_timeouts"), 1);
}

#[test]
fn issue_17_requests_over_the_concurrency_limit_get_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path(), "http_max_requests = 2\n");
    let t = unix_now() - unix_now() % 10 - 60;
    let line = format!("held.batch 7 {t}\n");
    // Two ingests whose bodies are still on their way hold both places.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(store.http);
            write!(
                s,
                "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Length: {}\r\n\r\n",
                line.len()
            )
            .expect("write");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let resp = reqwest::blocking::Client::new()
        .get(store.url("/render?target=held.batch&format=json"))
        .timeout(Duration::from_secs(10))
        .send()
        .expect("an answer, not a hang");
    assert_eq!(resp.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().expect("a JSON error");
    assert_eq!(
        body["error"],
        "the store is serving its limit of 2 requests at once (http_max_requests); retry later"
    );
    // /metrics still answers, and counts it.
    assert_eq!(metric(&store, "tally_store_http_requests_shed"), 1);
    for s in held.iter_mut() {
        s.write_all(line.as_bytes()).expect("rest of the body");
    }
    for mut s in held {
        let (status, text) = answer(&mut s);
        assert_eq!(status, 200, "{text}");
    }
    let resp = reqwest::blocking::get(store.url(&format!(
        "/render?target=held.batch&from={}&until={}&format=json",
        t - 10,
        t + 10
    )))
    .expect("render");
    assert_eq!(resp.status(), 200, "served again below the limit");
}
