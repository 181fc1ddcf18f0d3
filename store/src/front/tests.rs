//! The front on real sockets on 127.0.0.1, each hostile client as it behaves on the wire.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

use super::*;

fn opts() -> FrontOptions {
    FrontOptions {
        max_connections: 8,
        max_requests: 4,
        header_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
    }
}

/// A front on a port of its own over a small router: `/fast`, `/hold` (answers once `release`
/// is notified), `POST /echo` (the body's length) and `/metrics`.
struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    release: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(opts: FrontOptions) -> Server {
        let release = Arc::new(Notify::new());
        let held = release.clone();
        let app = Router::new()
            .route("/fast", get(|| async { "fast" }))
            .route(
                "/hold",
                get(move || {
                    let held = held.clone();
                    async move {
                        held.notified().await;
                        "held"
                    }
                }),
            )
            .route("/echo", post(|b: Bytes| async move { b.len().to_string() }))
            .route("/big", get(|| async { vec![b'x'; 32 << 20] }))
            .route("/metrics", get(|| async { "metrics" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let counters = Counters::Alone(stats.clone());
        let task = tokio::spawn(serve(listener, app, opts, None, counters, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stats,
            release,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the front stops")
            .expect("joined");
    }
}

/// Sends `request` on `sock` and reads until the server closes, for at most `wait`: the status
/// and the whole answer, or `None` if nothing came in time.
async fn exchange(sock: &mut TcpStream, request: &str, wait: Duration) -> Option<(u16, String)> {
    sock.write_all(request.as_bytes()).await.ok()?;
    read_answer(sock, wait).await
}

async fn read_answer(sock: &mut TcpStream, wait: Duration) -> Option<(u16, String)> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&out).into_owned();
    if read.is_err() && text.is_empty() {
        return None;
    }
    let status = text.get(9..12)?.parse().ok()?;
    Some((status, text))
}

fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
}

/// Whether the server closed `sock` (read returns end of stream or a reset) within `wait`.
async fn closed_within(sock: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn idle_connections_over_the_cap_do_not_lock_out_a_request() {
    let server = Server::start(opts()).await;
    // Three times the cap in connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..24 {
        idle.push(server.connect().await);
    }
    let mut sock = server.connect().await;
    let got = exchange(&mut sock, &get_close("/fast"), Duration::from_secs(5)).await;
    let (status, text) = got.expect("an answer despite the idle connections");
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("fast"), "{text}");
    assert!(
        server.stats.http_connections_open.load(Relaxed) <= 8,
        "never more than the cap open"
    );
    assert!(server.stats.http_connections_evicted.load(Relaxed) >= 17);
    server.stop().await;
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_newcomer_is_told_503() {
    let mut o = opts();
    o.max_connections = 2;
    let server = Server::start(o).await;
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = server.connect().await;
        s.write_all(get_close("/hold").as_bytes())
            .await
            .expect("write");
        busy.push(s);
    }
    // Both requests are in the handler (it waits), so neither connection is idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sock = server.connect().await;
    let (status, text) = read_answer(&mut sock, Duration::from_secs(5))
        .await
        .expect("told, then closed");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("(http_max_connections)"), "{text}");
    assert_eq!(server.stats.http_connections_refused.load(Relaxed), 1);
    assert_eq!(server.stats.http_connections_evicted.load(Relaxed), 0);
    server.release.notify_waiters();
    for mut s in busy {
        let (status, _) = read_answer(&mut s, Duration::from_secs(5))
            .await
            .expect("the held requests finish");
        assert_eq!(status, 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn slowloris_is_closed_after_the_header_timeout() {
    let mut o = opts();
    o.header_timeout = Duration::from_millis(600);
    let server = Server::start(o).await;
    let mut sock = server.connect().await;
    // An idle connection is not cut by the header timeout...
    tokio::time::sleep(Duration::from_millis(900)).await;
    // ...but once a request starts, its headers must be complete in time: one byte every
    // 100 ms never gets there.
    let request = get_close("/fast");
    let mut closed_after = None;
    let started = tokio::time::Instant::now();
    for b in request.as_bytes() {
        if sock.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        if closed_within(&mut sock, Duration::from_millis(100)).await {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("closed before the headers were complete");
    assert!(
        closed_after >= Duration::from_millis(500),
        "{closed_after:?}"
    );
    assert_eq!(server.stats.http_header_timeouts.load(Relaxed), 1);
    // The same request sent at once is served.
    let mut sock = server.connect().await;
    let got = exchange(&mut sock, &request, Duration::from_secs(5)).await;
    assert_eq!(got.map(|g| g.0), Some(200));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_body_gets_408_and_the_connection_closes() {
    let mut o = opts();
    o.body_timeout = Duration::from_millis(500);
    let server = Server::start(o).await;
    let mut sock = server.connect().await;
    let head = "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789";
    let (status, text) = exchange(&mut sock, head, Duration::from_secs(5))
        .await
        .expect("an answer, then the end of the connection");
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(
        text.contains(
            r#"{"error":"the request body did not arrive within 0.5 s (http_body_timeout)"}"#
        ),
        "{text}"
    );
    assert_eq!(server.stats.http_body_timeouts.load(Relaxed), 1);
    // A body that arrives in time is read.
    let mut sock = server.connect().await;
    let req = "POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 3\r\n\r\nabc";
    let (status, text) = exchange(&mut sock, req, Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(status, 200);
    assert!(text.ends_with("\r\n\r\n3"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_get_503_not_a_wait() {
    let server = Server::start(opts()).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = server.connect().await;
        s.write_all(get_close("/hold").as_bytes())
            .await
            .expect("write");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sock = server.connect().await;
    let (status, text) = exchange(&mut sock, &get_close("/fast"), Duration::from_secs(5))
        .await
        .expect("an answer at once, not a wait");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(
        text.contains("its limit of 4 requests at once (http_max_requests); retry later"),
        "{text}"
    );
    // /metrics is not limited: the overload can be watched.
    let mut sock = server.connect().await;
    let got = exchange(&mut sock, &get_close("/metrics"), Duration::from_secs(5)).await;
    assert_eq!(got.map(|g| g.0), Some(200));
    assert_eq!(server.stats.http_requests_shed.load(Relaxed), 1);
    server.release.notify_waiters();
    for mut s in held {
        assert_eq!(
            read_answer(&mut s, Duration::from_secs(5))
                .await
                .map(|g| g.0),
            Some(200)
        );
    }
    let mut sock = server.connect().await;
    let got = exchange(&mut sock, &get_close("/fast"), Duration::from_secs(5)).await;
    assert_eq!(
        got.map(|g| g.0),
        Some(200),
        "served again once under the limit"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_head_past_64_kib_gets_431_and_a_long_body_still_arrives() {
    let server = Server::start(opts()).await;
    let mut sock = server.connect().await;
    let huge = format!(
        "GET /fast HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let got = exchange(&mut sock, &huge, Duration::from_secs(5)).await;
    assert_eq!(got.map(|g| g.0), Some(431));
    // The bound is on what is buffered, not on a body read as it comes.
    let body = "b".repeat(1 << 20);
    let req = format!(
        "POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut sock = server.connect().await;
    let (status, text) = exchange(&mut sock, &req, Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(status, 200);
    assert!(text.ends_with("\r\n\r\n1048576"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let mut o = opts();
    o.idle_timeout = Duration::from_millis(500);
    let server = Server::start(o).await;
    let mut sock = server.connect().await;
    sock.write_all(b"GET /fast HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = sock.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut sock, Duration::from_secs(5)).await);
    assert_eq!(server.stats.http_idle_closed.load(Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_takes_no_response_bytes_is_closed_after_the_idle_timeout() {
    let mut o = opts();
    o.idle_timeout = Duration::from_millis(500);
    let server = Server::start(o).await;
    let mut sock = server.connect().await;
    sock.write_all(get_close("/big").as_bytes())
        .await
        .expect("write");
    // 32 MiB fill the socket buffers long before they are written; nothing is read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.stats.http_send_timeouts.load(Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.stats.http_connections_open.load(Relaxed), 0);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let server = Server::start(opts()).await;
    let mut sock = server.connect().await;
    sock.write_all(get_close("/hold").as_bytes())
        .await
        .expect("write");
    let idle = server.connect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let release = server.release.clone();
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "waits for the request in flight");
    release.notify_waiters();
    let got = read_answer(&mut sock, Duration::from_secs(5)).await;
    assert_eq!(got.map(|g| g.0), Some(200));
    stopping.await.expect("stopped");
    drop(idle);
}
