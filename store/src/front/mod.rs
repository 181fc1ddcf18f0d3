//! The HTTP front: what stands between the store's HTTP socket and its router, so that no
//! client, however slow, idle or numerous, takes the port from the others.
//!
//! Our own accept loop over hyper's HTTP/1 connections (rather than `axum::serve`, which has no
//! connection cap and no timeouts), with:
//! - a **connection cap** (`http_max_connections`, well under the descriptor limit): at the cap
//!   the connection idle the longest is closed to make room (as nginx reuses keep-alive
//!   connections); when every connection is serving a request the newcomer gets a canned 503
//!   and is closed at once. An accept that fails (no descriptor left) pauses the loop, doubling
//!   up to a second, instead of spinning.
//! - **timeouts** per phase of a connection (see `conn.rs`): idle between requests
//!   (`http_idle_timeout`), a request's headers (`http_header_timeout`, which ends slowloris),
//!   its body (`http_body_timeout`: a body that has not arrived gets 408 and the connection is
//!   closed), and a client that reads no response bytes for `http_idle_timeout`.
//! - a **concurrency limit with load shedding** (tower's `ConcurrencyLimit` and `LoadShed`,
//!   `http_max_requests`): a request over the limit is answered 503 with `Retry-After` at once,
//!   never queued into a hang. `/metrics` is not limited, so the overload can be watched.
//! - **bounded buffers**: a request's head must fit in 64 KiB (else 431), and a connection
//!   buffers at most that much of what it writes before waiting for its client.
//! - optional **TLS** (`crate::tls`), the handshake bounded by the header timeout.
//!
//! Every refusal is counted (`tally_store_http_*` on `/metrics`) and logged at most once per
//! ten seconds as one line of counts. Shutdown stops accepting, lets requests in flight finish
//! (hyper's graceful shutdown closes idle connections at once), and closes what is left after a
//! few seconds.

mod body;
mod conn;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::limit::ConcurrencyLimit;
use tower::load_shed::error::Overloaded;
use tower::load_shed::LoadShed;
use tower::ServiceExt;
use tracing::{debug, error, warn};

use self::body::{DeadlineBody, HeldBody};
use self::conn::{Busy, Clock, ConnState, Expired, Timeouts, Watched};
use crate::engine::Store;
use crate::stats::Stats;
use crate::tls::Tls;

/// How long shutdown waits for requests in flight before closing their connections.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a newcomer at the cap waits for the idle connection it displaces to close.
const EVICTION_WAIT: Duration = Duration::from_millis(250);
/// Pauses after a failed accept, doubling from the first to the second.
const ACCEPT_PAUSE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// The most a connection buffers: a request's head must fit (longer gets 431), and writes
/// wait for the client past it. Bounds the memory of a connection at the cap: 1024 of them
/// hold at most 64 MiB of buffers.
const MAX_BUFFER: usize = 64 << 10;
/// Refusals are logged as one line of counts at most this often.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The front's limits (from `Settings`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrontOptions {
    pub max_connections: usize,
    pub max_requests: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Where the front counts: the store's counters once it is open; its own (not exported) while
/// the store is still opening.
#[derive(Clone)]
pub(crate) enum Counters {
    Store(Store),
    Alone(Arc<Stats>),
}

impl Deref for Counters {
    type Target = Stats;

    fn deref(&self) -> &Stats {
        match self {
            Counters::Store(s) => s.stats(),
            Counters::Alone(s) => s,
        }
    }
}

type Limited = LoadShed<ConcurrencyLimit<Router>>;

struct Shared {
    opts: FrontOptions,
    app: Router,
    limited: Limited,
    stats: Counters,
    tls: Option<Arc<Tls>>,
    clock: Clock,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    slots: Arc<Semaphore>,
}

impl Shared {
    /// A place for a new connection: a free one, or one an idle connection makes by closing.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Some(p);
        }
        let victim = {
            let conns = self.conns.lock();
            conns
                .values()
                .filter_map(|c| c.idle_since().map(|since| (since, c.clone())))
                .min_by_key(|(since, _)| *since)
                .map(|(_, c)| c)
        };
        victim?.evict();
        tokio::time::timeout(EVICTION_WAIT, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn timeouts(&self) -> Timeouts {
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX / 4)) as u64;
        Timeouts {
            idle: ms(self.opts.idle_timeout),
            header: ms(self.opts.header_timeout),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    opts: FrontOptions,
    tls: Option<Arc<Tls>>,
    stats: Counters,
    shutdown: impl Future<Output = ()>,
) {
    let limited = tower::ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(opts.max_requests)
        .service(app.clone());
    let shared = Arc::new(Shared {
        opts,
        app,
        limited,
        stats,
        tls,
        clock: Clock::new(),
        conns: Mutex::new(HashMap::new()),
        slots: Arc::new(Semaphore::new(opts.max_connections)),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let summary = tokio::spawn(log_refusals(shared.stats.clone(), stop_rx.clone()));
    tokio::pin!(shutdown);
    let mut id = 0u64;
    let mut pause = ACCEPT_PAUSE.0;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (sock, peer) = match accepted {
            Ok(a) => {
                pause = ACCEPT_PAUSE.0;
                a
            }
            Err(e) if one_connection_failed(&e) => {
                debug!(error = %e, "an incoming HTTP connection failed before it was accepted");
                continue;
            }
            Err(e) => {
                Stats::add(&shared.stats.http_accept_errors, 1);
                debug!(error = %e, pause_ms = pause.as_millis() as u64, "HTTP accept failed; pausing");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = &mut shutdown => break,
                }
                pause = (pause * 2).min(ACCEPT_PAUSE.1);
                continue;
            }
        };
        let Some(permit) = shared.slot().await else {
            Stats::add(&shared.stats.http_connections_refused, 1);
            if shared.tls.is_none() {
                // Best effort, never waiting: the client learns why and when to come back.
                let _ = sock.try_write(refusal(shared.opts.max_connections).as_bytes());
            }
            continue;
        };
        let _ = sock.set_nodelay(true);
        Stats::add(&shared.stats.http_connections_total, 1);
        id += 1;
        tokio::spawn(connection(
            shared.clone(),
            sock,
            peer,
            permit,
            id,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every slot back means every connection closed.
    let all = u32::try_from(shared.opts.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        DRAIN + Duration::from_secs(1),
        shared.slots.acquire_many(all),
    )
    .await;
    let _ = summary.await;
}

/// Accept errors about one incoming connection (it was reset before we took it), after which
/// the next accept can go on at once; any other (EMFILE, ENFILE, ENOBUFS) calls for a pause.
fn one_connection_failed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// Unregisters a connection and frees its slot when its task ends, however it ends.
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.conns.lock().remove(&self.id);
        self.shared
            .stats
            .http_connections_open
            .fetch_sub(1, Relaxed);
    }
}

async fn connection(
    shared: Arc<Shared>,
    sock: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    id: u64,
    mut stop: watch::Receiver<bool>,
) {
    let state = ConnState::new(shared.clock);
    shared.conns.lock().insert(id, state.clone());
    Stats::add(&shared.stats.http_connections_open, 1);
    let _registered = Registered {
        shared: &shared,
        id,
        _permit: permit,
    };
    let io = Watched::new(sock, state.clone());
    let Some(tls) = shared.tls.clone() else {
        return serve_http(&shared, io, &state, stop).await;
    };
    let handshake = tokio::time::timeout(shared.opts.header_timeout, tls.accept(io));
    let stream = tokio::select! {
        r = handshake => r,
        _ = state.evict.notified() => {
            Stats::add(&shared.stats.http_connections_evicted, 1);
            return;
        }
        _ = stop.wait_for(|s| *s) => return,
    };
    match stream {
        Ok(Ok(stream)) => serve_http(&shared, stream, &state, stop).await,
        Ok(Err(e)) => {
            Stats::add(&shared.stats.tls_handshake_failures, 1);
            debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            Stats::add(&shared.stats.tls_handshake_failures, 1);
            debug!(%peer, "TLS handshake timed out");
        }
    }
}

/// Serves HTTP/1 on one connection until it ends, a phase of it lasts too long, it is chosen
/// to make room, or the server stops.
async fn serve_http<I>(
    shared: &Arc<Shared>,
    io: I,
    state: &Arc<ConnState>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let (shared, state) = (shared.clone(), state.clone());
        hyper::service::service_fn(move |req| handle(shared.clone(), state.clone(), req))
    };
    let mut builder = http1::Builder::new();
    // The phases' timeouts are ours (`conn.rs`): hyper's header timeout also runs while a
    // connection is idle, so it cannot be longer than the idle timeout.
    builder.header_read_timeout(None);
    builder.max_buf_size(MAX_BUFFER).max_header_size(MAX_BUFFER);
    let http = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(http);
    let timeouts = shared.timeouts();
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        let wake = match state.check(timeouts) {
            Ok(wake) => wake,
            Err(why) => {
                let s = &shared.stats;
                let counter = match why {
                    Expired::Idle => &s.http_idle_closed,
                    Expired::Headers => &s.http_header_timeouts,
                    Expired::Send => &s.http_send_timeouts,
                };
                Stats::add(counter, 1);
                debug!(?why, "closing an HTTP connection");
                return;
            }
        };
        tokio::select! {
            r = http.as_mut() => {
                if let Err(e) = r {
                    debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = state.evict.notified() => {
                if state.confirm_eviction() {
                    Stats::add(&shared.stats.http_connections_evicted, 1);
                    return;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.wait_for(|s| *s), if draining.is_none() => {
                http.as_mut().graceful_shutdown();
                draining = Some(tokio::time::Instant::now() + DRAIN);
            }
            _ = tokio::time::sleep_until(draining.unwrap_or(wake)), if draining.is_some() => return,
        }
    }
}

/// One request: counted busy until its response is written, its body under the deadline, and
/// through the concurrency limit (but `/metrics`).
async fn handle(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<HeldBody>, Infallible> {
    let busy = Busy::begin(&state);
    let timed_out = Arc::new(AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + shared.opts.body_timeout;
    let unlimited = req.uri().path() == "/metrics";
    let req = req.map(|b| Body::new(DeadlineBody::new(b, deadline, timed_out.clone())));
    let resp = if unlimited {
        match shared.app.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    } else {
        match shared.limited.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) if e.is::<Overloaded>() => {
                Stats::add(&shared.stats.http_requests_shed, 1);
                overloaded(shared.opts.max_requests)
            }
            Err(e) => {
                error!(error = %e, "request failed");
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the store's log has the details".into(),
                )
            }
        }
    };
    let resp = if timed_out.load(Relaxed) {
        Stats::add(&shared.stats.http_body_timeouts, 1);
        body_timeout(shared.opts.body_timeout)
    } else {
        resp
    };
    Ok(resp.map(|b| HeldBody::new(b, busy)))
}

/// An error answer in the shape of the store's and the query API's: `{"error": "..."}`.
fn json_error(status: StatusCode, message: String) -> Response<Body> {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn overloaded(max: usize) -> Response<Body> {
    let mut r = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store is serving its limit of {max} requests at once (http_max_requests); retry later"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

fn body_timeout(limit: Duration) -> Response<Body> {
    let mut r = json_error(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} s (http_body_timeout)",
            limit.as_secs_f64()
        ),
    );
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// What a connection refused at the cap is told before it is closed.
fn refusal(max: usize) -> String {
    let body = serde_json::json!({
        "error": format!("the store has its limit of {max} HTTP connections open (http_max_connections), all busy; retry later")
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One warning per period with how many clients were refused or cut off, by kind.
async fn log_refusals(stats: Counters, mut stop: watch::Receiver<bool>) {
    let read = |s: &Stats| {
        [
            &s.http_connections_refused,
            &s.http_connections_evicted,
            &s.http_header_timeouts,
            &s.http_body_timeouts,
            &s.http_send_timeouts,
            &s.http_requests_shed,
            &s.http_accept_errors,
            &s.tls_handshake_failures,
        ]
        .map(|c| c.load(Relaxed))
    };
    let mut last = read(&stats);
    let mut tick = tokio::time::interval(REFUSAL_LOG_PERIOD);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = read(&stats);
        let d: Vec<u64> = now
            .iter()
            .zip(&last)
            .map(|(n, l)| n.saturating_sub(*l))
            .collect();
        last = now;
        if d.iter().any(|&n| n > 0) {
            warn!(
                refused_at_cap = d[0],
                idle_closed_for_room = d[1],
                header_timeouts = d[2],
                body_timeouts = d[3],
                send_timeouts = d[4],
                shed = d[5],
                accept_errors = d[6],
                tls_handshake_failures = d[7],
                period_secs = REFUSAL_LOG_PERIOD.as_secs(),
                "HTTP clients refused or cut off in the last period (counts; tally_store_http_* on /metrics)"
            );
        }
    }
}
