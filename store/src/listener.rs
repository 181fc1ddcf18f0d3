//! Graphite plaintext listeners: TCP (many concurrent connections) and optional UDP.
//!
//! Each TCP connection is its own task: reads are decoded as they come (a line split across reads
//! is joined by the decoder), then written as one batch per read on a blocking thread. A slow
//! client only slows itself (TCP backpressure on its own socket); an idle one is closed after the
//! idle timeout; a hostile one cannot grow memory (lines are bounded, and each read is written
//! before the next is taken); connections past the limit are closed at once. Bad lines are
//! counted and logged at a bounded rate, and never cost the good lines around them.
//!
//! While the store refuses writes (its disk below the free-space reserve, see
//! `engine/gate.rs`) a TCP connection keeps the batch it read and stops reading until writes
//! are taken again, then writes it: the sender backs off through TCP flow control and no line
//! is lost. UDP has no flow control: its datagrams are dropped then, and counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::Mutex;
use tally_proto::{Decoder, Lines, ParseError, Parsed};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, error, warn};

use crate::batch::PointBatch;
use crate::engine::{Durability, Store};
use crate::stats::Stats;

/// What the listeners share.
#[derive(Debug)]
pub(crate) struct ListenCtx {
    pub store: Store,
    pub allow: Vec<IpNet>,
    pub idle_timeout: Duration,
    pub max_line_bytes: usize,
    pub connections: Arc<Semaphore>,
    pub bad_lines: RateLimited,
}

impl ListenCtx {
    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// A warning at most once per period, with how many were held back.
#[derive(Debug)]
pub(crate) struct RateLimited {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    pub(crate) fn new(period: Duration) -> Self {
        RateLimited {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    pub(crate) fn warn_bad_line(&self, peer: &str, e: &ParseError) {
        let mut s = self.state.lock();
        let now = Instant::now();
        if s.0
            .is_some_and(|last| now.duration_since(last) < self.period)
        {
            s.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut s.1);
        s.0 = Some(now);
        drop(s);
        warn!(peer, suppressed, error = %e, "bad plaintext line skipped");
    }
}

/// Adds a decoded line to `batch`, counting what is not a point.
fn collect(
    ctx: &ListenCtx,
    peer: &str,
    batch: &mut PointBatch,
    now: i64,
    r: Result<Parsed<'_>, ParseError>,
) {
    let stats = ctx.store.stats();
    match r {
        Ok(Parsed::Metric(m)) => batch.push_metric(&m, now),
        Ok(Parsed::Skipped(_)) => Stats::add(&stats.points_skipped, 1),
        Err(e) => {
            Stats::add(&stats.lines_bad, 1);
            ctx.bad_lines.warn_bad_line(peer, &e);
        }
    }
}

/// Writes a batch on a blocking thread; hands the batch back, cleared if it was written and
/// intact if not (refused, or failed: the store then refuses writes until it is reopened).
async fn write(ctx: &ListenCtx, batch: PointBatch) -> (PointBatch, bool) {
    let store = ctx.store.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let r = store.write(&batch, Durability::Buffered);
        (batch, r)
    })
    .await;
    match joined {
        Ok((mut batch, Ok(_))) => {
            batch.clear();
            (batch, true)
        }
        Ok((batch, Err(e))) => {
            // A refusal is logged by the store once per change of state; anything else here.
            if !matches!(e, crate::Error::WritesRefused(_)) {
                error!(points = batch.len(), error = %e, "plaintext points could not be written; holding them until writes are taken again");
            }
            (batch, false)
        }
        Err(e) => {
            error!(error = %e, "write task failed");
            (PointBatch::default(), false)
        }
    }
}

/// Waits until the store takes writes again (polled), or `shutdown`; false on shutdown.
async fn until_writable(ctx: &ListenCtx, shutdown: &mut watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => return false,
        }
        if ctx.store.accepts_writes() {
            return true;
        }
    }
}

pub(crate) async fn serve_tcp(
    listener: TcpListener,
    ctx: Arc<ListenCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let stats = ctx.store.stats();
        if !ctx.allowed(peer.ip()) {
            Stats::add(&stats.connections_refused, 1);
            debug!(%peer, "connection refused by allow_cidrs");
            continue;
        }
        let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
            Stats::add(&stats.connections_refused, 1);
            warn!(%peer, "connection limit reached; closing");
            continue;
        };
        Stats::add(&stats.connections_total, 1);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let open = &ctx.store.stats().connections_open;
            Stats::add(open, 1);
            handle_tcp(sock, peer, &ctx, shutdown).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(permit);
        });
    }
}

async fn handle_tcp(
    mut sock: TcpStream,
    peer: SocketAddr,
    ctx: &ListenCtx,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer_s = peer.to_string();
    let mut buf = vec![0u8; 64 * 1024];
    let mut decoder = Decoder::new(ctx.max_line_bytes);
    let mut batch = PointBatch::default();
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(ctx.idle_timeout, sock.read(&mut buf)) => r,
            _ = shutdown.changed() => break,
        };
        let now = tally_common::unix_now();
        let eof = match read {
            Ok(Ok(0)) => true,
            Ok(Ok(n)) => {
                decoder.feed(&buf[..n], |r| collect(ctx, &peer_s, &mut batch, now, r));
                false
            }
            Ok(Err(e)) => {
                debug!(peer = %peer_s, error = %e, "read failed");
                true
            }
            Err(_) => {
                debug!(peer = %peer_s, "idle timeout");
                true
            }
        };
        if eof {
            decoder.finish(|r| collect(ctx, &peer_s, &mut batch, now, r));
        }
        if !batch.is_empty() {
            Stats::add(&ctx.store.stats().points_received, batch.len() as u64);
            // Not read again until the batch is written: while writes are refused the socket
            // is left alone, so the sender's window fills and it waits.
            loop {
                let (b, ok) = write(ctx, std::mem::take(&mut batch)).await;
                batch = b;
                if ok {
                    break;
                }
                if !until_writable(ctx, &mut shutdown).await {
                    debug!(peer = %peer_s, points = batch.len(), "shutting down with refused points unwritten");
                    return;
                }
            }
        }
        if eof {
            return;
        }
    }
}

pub(crate) async fn serve_udp(
    sock: UdpSocket,
    ctx: Arc<ListenCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => { warn!(error = %e, "udp receive failed"); continue; }
            },
            _ = shutdown.changed() => return,
        };
        if !ctx.allowed(peer.ip()) {
            Stats::add(&ctx.store.stats().connections_refused, 1);
            continue;
        }
        let peer_s = peer.to_string();
        let now = tally_common::unix_now();
        let mut batch = PointBatch::default();
        for r in Lines::starting_at(&buf[..n], 1, ctx.max_line_bytes) {
            collect(&ctx, &peer_s, &mut batch, now, r);
        }
        if !batch.is_empty() {
            let stats = ctx.store.stats();
            let points = batch.len() as u64;
            Stats::add(&stats.points_received, points);
            if !write(&ctx, batch).await.1 {
                Stats::add(&stats.udp_points_dropped, points);
            }
        }
    }
}
