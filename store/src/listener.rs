//! Graphite plaintext listeners: TCP (many concurrent connections) and optional UDP.
//!
//! Each TCP connection is its own task: reads are decoded as they come (a line split across reads
//! is joined by the decoder), then written as one batch per read on a blocking thread. A slow
//! client only slows itself (TCP backpressure on its own socket); an idle one is closed after the
//! idle timeout; a hostile one cannot grow memory (lines are bounded, and each read is written
//! before the next is taken). Bad lines are counted and logged at a bounded rate, and never cost
//! the good lines around them.
//!
//! Who gets a connection ([`Connections`]): one address (an IPv6 /64) holds at most
//! `max_connections_per_address`, so one host cannot take every slot; when all
//! `max_connections` are taken, a newcomer is let in by closing a connection that has sent
//! nothing for at least a second, taken from the address holding the most connections and, among
//! its, the one idle longest. Only when every connection has sent something within the last
//! second is the newcomer refused. Idle connections therefore make way for real senders instead
//! of locking them out until the idle timeout, and a host that opens many connections loses its
//! own first. Refusals and closings are counted on `/metrics` and logged at most once per
//! period, with how many were held back.
//!
//! The per-connection loop ([`handle_conn`]) is generic over the stream, so a TLS stream can be
//! handed to it as well as a TCP one.
//!
//! While the store refuses writes (its disk below the free-space reserve, see
//! `engine/gate.rs`) a TCP connection keeps the batch it read and stops reading until writes
//! are taken again, then writes it: the sender backs off through TCP flow control and no line
//! is lost. UDP has no flow control: its datagrams are dropped then, and counted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::Mutex;
use tally_proto::{Decoder, Lines, ParseError, Parsed};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Notify};
use tracing::{debug, error, warn};

use crate::batch::PointBatch;
use crate::config::Settings;
use crate::engine::{Durability, Store};
use crate::stats::Stats;

/// How long warnings of one kind are held back after one is logged.
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// A connection that sent something this recently is never closed for a newcomer.
const BUSY_WITHIN: Duration = Duration::from_secs(1);

/// What the listeners share.
#[derive(Debug)]
pub(crate) struct ListenCtx {
    pub store: Store,
    pub allow: Vec<IpNet>,
    pub idle_timeout: Duration,
    pub max_line_bytes: usize,
    pub connections: Arc<Connections>,
    pub bad_lines: RateLimited,
    /// Refused and closed connections, logged at a bounded rate.
    pub refusals: RateLimited,
    /// Failed accepts (out of descriptors), logged at a bounded rate.
    pub accept_errors: RateLimited,
    /// TLS on the TCP listener (`[tls] line = true`).
    pub tls: Option<Arc<crate::tls::Tls>>,
}

impl ListenCtx {
    /// The listeners' shared state for `settings`.
    pub(crate) fn new(store: Store, settings: &Settings) -> ListenCtx {
        ListenCtx {
            store,
            allow: settings.allow.clone(),
            idle_timeout: settings.idle_timeout,
            max_line_bytes: settings.max_line_bytes,
            connections: Arc::new(Connections::new(
                settings.max_connections,
                settings.max_connections_per_address,
                BUSY_WITHIN,
            )),
            bad_lines: RateLimited::new(LOG_PERIOD),
            refusals: RateLimited::new(LOG_PERIOD),
            accept_errors: RateLimited::new(LOG_PERIOD),
            tls: None,
        }
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// Something logged at most once per period, with how many were held back.
#[derive(Debug)]
pub struct RateLimited {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    pub fn new(period: Duration) -> Self {
        RateLimited {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when a line may be logged now; `None` (and one
    /// more held back) within the period of the last.
    pub fn tick(&self) -> Option<u64> {
        let mut s = self.state.lock();
        let now = Instant::now();
        if s.0
            .is_some_and(|last| now.duration_since(last) < self.period)
        {
            s.1 += 1;
            return None;
        }
        s.0 = Some(now);
        Some(std::mem::take(&mut s.1))
    }

    pub(crate) fn warn_bad_line(&self, peer: &str, e: &ParseError) {
        if let Some(suppressed) = self.tick() {
            warn!(peer, suppressed, error = %e, "bad plaintext line skipped");
        }
    }
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address already holds `max_connections_per_address`.
    PerAddress,
    /// Every connection is taken and none has been idle long enough to make way.
    Full,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::PerAddress => "its address holds max_connections_per_address already",
            Refusal::Full => "max_connections are open and all of them are sending",
        }
    }
}

/// The open plaintext connections, by address, with when each last sent something.
#[derive(Debug)]
pub(crate) struct Connections {
    max_total: usize,
    max_per_address: usize,
    busy_within: Duration,
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, (IpAddr, Arc<Activity>)>,
    per_address: HashMap<IpAddr, usize>,
}

impl Table {
    fn forget(&mut self, id: u64) -> Option<Arc<Activity>> {
        let (ip, activity) = self.open.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
        Some(activity)
    }
}

/// The address a connection is counted under: an IPv4 address (also when written as an
/// IPv4-mapped IPv6 one), or an IPv6 /64, which one host usually holds whole.
fn address_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// One connection's last activity, and the signal that closes it for a newcomer.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    close: Notify,
}

impl Activity {
    fn ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Records that the connection just sent something.
    pub(crate) fn touch(&self) {
        self.last_ms.store(self.ms(), Ordering::Relaxed);
    }

    /// Completes when the connection is to be closed to make way for a newcomer.
    pub(crate) async fn closed(&self) {
        self.close.notified().await;
    }
}

/// A place among the open connections, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    connections: Arc<Connections>,
    pub activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.table.lock().forget(self.id);
    }
}

/// A connection let in, and whether another was closed to make way for it.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub slot: Slot,
    pub evicted: bool,
}

impl Connections {
    pub(crate) fn new(max_total: usize, max_per_address: usize, busy_within: Duration) -> Self {
        Connections {
            max_total,
            max_per_address,
            busy_within,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        }
    }

    /// Lets a connection from `ip` in, closing another to make way when all are taken (see the
    /// module's doc for which), or says why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let ip = address_of(ip);
        let now = self.epoch.elapsed().as_millis() as u64;
        let busy = self.busy_within.as_millis() as u64;
        let mut table = self.table.lock();
        if table.per_address.get(&ip).copied().unwrap_or(0) >= self.max_per_address {
            return Err(Refusal::PerAddress);
        }
        let mut evicted = false;
        if table.open.len() >= self.max_total {
            let t = &*table;
            let victim = t
                .open
                .iter()
                .map(|(id, (ip, a))| {
                    let idle = now.saturating_sub(a.last_ms.load(Ordering::Relaxed));
                    (*id, t.per_address.get(ip).copied().unwrap_or(0), idle)
                })
                .filter(|(_, _, idle)| *idle >= busy)
                .max_by_key(|(id, held, idle)| (*held, *idle, std::cmp::Reverse(*id)))
                .map(|(id, _, _)| id);
            let Some(victim) = victim else {
                return Err(Refusal::Full);
            };
            if let Some(activity) = table.forget(victim) {
                activity.close.notify_one();
            }
            evicted = true;
        }
        let id = table.next_id;
        table.next_id += 1;
        let activity = Arc::new(Activity {
            epoch: self.epoch,
            last_ms: AtomicU64::new(now),
            close: Notify::new(),
        });
        table.open.insert(id, (ip, activity.clone()));
        *table.per_address.entry(ip).or_default() += 1;
        Ok(Admitted {
            slot: Slot {
                id,
                connections: self.clone(),
                activity,
            },
            evicted,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.table.lock().open.len()
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
                if let Some(suppressed) = ctx.accept_errors.tick() {
                    warn!(error = %e, suppressed, "plaintext accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = admit(&ctx, peer) else {
            continue;
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let open = &ctx.store.stats().connections_open;
            Stats::add(open, 1);
            handle_tcp_or_tls(sock, peer, &ctx, &slot, shutdown).await;
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// The place of a connection just accepted from `peer`, or `None` when it is to be closed at
/// once (counted, and logged at a bounded rate).
pub(crate) fn admit(ctx: &ListenCtx, peer: SocketAddr) -> Option<Slot> {
    let stats = ctx.store.stats();
    if !ctx.allowed(peer.ip()) {
        Stats::add(&stats.connections_refused, 1);
        debug!(%peer, "connection refused by allow_cidrs");
        return None;
    }
    match ctx.connections.admit(peer.ip()) {
        Ok(Admitted { slot, evicted }) => {
            Stats::add(&stats.connections_total, 1);
            if evicted {
                Stats::add(&stats.connections_evicted, 1);
                if let Some(held_back) = ctx.refusals.tick() {
                    warn!(%peer, held_back, "plaintext connections full: closed an idle one to let a new one in");
                }
            }
            Some(slot)
        }
        Err(refusal) => {
            Stats::add(&stats.connections_refused, 1);
            if refusal == Refusal::PerAddress {
                Stats::add(&stats.connections_refused_per_address, 1);
            }
            if let Some(held_back) = ctx.refusals.tick() {
                warn!(%peer, held_back, reason = refusal.as_str(), "plaintext connection refused");
            }
            None
        }
    }
}

/// The connection as it comes, or after its TLS handshake when the listener has TLS.
async fn handle_tcp_or_tls(
    sock: TcpStream,
    peer: SocketAddr,
    ctx: &ListenCtx,
    slot: &Slot,
    shutdown: watch::Receiver<bool>,
) {
    let Some(tls) = &ctx.tls else {
        return handle_conn(sock, peer, ctx, slot, shutdown).await;
    };
    match tokio::time::timeout(crate::tls::LINE_HANDSHAKE_TIMEOUT, tls.accept(sock)).await {
        Ok(Ok(stream)) => handle_conn(stream, peer, ctx, slot, shutdown).await,
        Ok(Err(e)) => {
            Stats::add(&ctx.store.stats().tls_handshake_failures, 1);
            debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            Stats::add(&ctx.store.stats().tls_handshake_failures, 1);
            debug!(%peer, "TLS handshake timed out");
        }
    }
}

/// Reads one plaintext connection until it ends, is idle for the idle timeout, is closed for a
/// newcomer, or the store stops. Generic over the stream so TLS can be layered under it.
pub(crate) async fn handle_conn<S>(
    mut sock: S,
    peer: SocketAddr,
    ctx: &ListenCtx,
    slot: &Slot,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + Unpin,
{
    let peer_s = peer.to_string();
    let mut buf = vec![0u8; 64 * 1024];
    let mut decoder = Decoder::new(ctx.max_line_bytes);
    let mut batch = PointBatch::default();
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(ctx.idle_timeout, sock.read(&mut buf)) => r,
            _ = slot.activity.closed() => {
                // Idle for a while (else it would not have been chosen): nothing is in flight;
                // an unterminated last line is dropped rather than parsed cut short.
                debug!(peer = %peer_s, "closed to make way for a new connection");
                return;
            }
            _ = shutdown.changed() => break,
        };
        let now = tally_common::unix_now();
        let eof = match read {
            Ok(Ok(0)) => true,
            Ok(Ok(n)) => {
                slot.activity.touch();
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpSocket, TcpStream};
    use tokio::time::{sleep, timeout};

    use super::*;
    use crate::engine::StoreOptions;

    /// A store and its plaintext listener on 127.0.0.1, on a port the system picks.
    struct Server {
        _dir: tempfile::TempDir,
        store: Store,
        addr: SocketAddr,
        ctx: Arc<ListenCtx>,
        _stop: watch::Sender<bool>,
    }

    async fn server(max_total: usize, max_per_address: usize, busy_within: Duration) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreOptions::new(dir.path())).expect("open");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ctx = Arc::new(ListenCtx {
            store: store.clone(),
            allow: Vec::new(),
            idle_timeout: Duration::from_secs(600),
            max_line_bytes: 1024,
            connections: Arc::new(Connections::new(max_total, max_per_address, busy_within)),
            bad_lines: RateLimited::new(LOG_PERIOD),
            refusals: RateLimited::new(LOG_PERIOD),
            accept_errors: RateLimited::new(LOG_PERIOD),
            tls: None,
        });
        let (stop, rx) = watch::channel(false);
        tokio::spawn(serve_tcp(listener, ctx.clone(), rx));
        Server {
            _dir: dir,
            store,
            addr,
            ctx,
            _stop: stop,
        }
    }

    /// A connection from `ip` (any of 127.0.0.0/8 is on the loopback).
    async fn connect_from(ip: [u8; 4], to: SocketAddr) -> TcpStream {
        let sock = TcpSocket::new_v4().expect("socket");
        sock.bind(SocketAddr::from((ip, 0))).expect("bind");
        sock.connect(to).await.expect("connect")
    }

    /// Whether the server closes `s` within `wait` (it never writes, so any read ends it).
    async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
        let mut b = [0u8; 16];
        matches!(timeout(wait, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
    }

    fn count(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Waits until `name` holds a point in the store.
    async fn stored(store: &Store, name: &str) -> bool {
        let now = tally_common::unix_now();
        for _ in 0..100 {
            if let Ok(Some(s)) = store.read(name, now - 600, now + 60, None) {
                if s.values.iter().any(Option::is_some) {
                    return true;
                }
            }
            sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Issue 17: 4,096 idle connections from one address locked every real sender out for
    /// the idle timeout. One address now holds at most its cap; another still gets in.
    #[tokio::test]
    async fn issue_17_one_address_opening_many_connections_cannot_lock_out_another() {
        let s = server(16, 4, BUSY_WITHIN).await;
        let mut hog = Vec::new();
        for _ in 0..40 {
            hog.push(connect_from([127, 0, 0, 2], s.addr).await);
        }
        let mut refused = 0;
        for c in &mut hog {
            if closed_within(c, Duration::from_millis(300)).await {
                refused += 1;
            }
        }
        assert_eq!(
            refused, 36,
            "all past the per-address cap of 4 are closed at once"
        );
        let stats = s.store.stats();
        assert_eq!(count(&stats.connections_refused_per_address), 36);
        let mut sender = connect_from([127, 0, 0, 3], s.addr).await;
        let line = format!("other.sender 7 {}\n", tally_common::unix_now());
        sender.write_all(line.as_bytes()).await.expect("send");
        assert!(
            stored(&s.store, "other.sender").await,
            "the other sender got in"
        );
        assert_eq!(count(&stats.connections_open), 5);
    }

    /// Issue 17: at the global cap a newcomer is let in by closing an idle connection, never
    /// one that is sending; when all are sending, it is refused.
    #[tokio::test]
    async fn issue_17_idle_connections_make_way_for_newcomers_and_senders_keep_theirs() {
        let busy = Duration::from_secs(1);
        let s = server(6, 6, busy).await;
        // Three idle connections (two from one address), then three that keep sending, all
        // from one address (which so holds the most, but is never idle).
        let mut idle = Vec::new();
        for ip in [[127, 0, 0, 2], [127, 0, 0, 2], [127, 0, 0, 4]] {
            idle.push(connect_from(ip, s.addr).await);
        }
        let mut senders = Vec::new();
        for i in 0..3 {
            let (mut read, mut write) = connect_from([127, 0, 0, 3], s.addr).await.into_split();
            let task = tokio::spawn(async move {
                loop {
                    let line = format!("active.s{i} 1 {}\n", tally_common::unix_now());
                    if write.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                    sleep(Duration::from_millis(50)).await;
                }
            });
            senders.push(async move {
                let mut b = [0u8; 1];
                let closed = matches!(
                    timeout(Duration::from_millis(100), read.read(&mut b)).await,
                    Ok(Ok(0) | Err(_))
                );
                task.abort();
                closed
            });
        }
        sleep(busy + Duration::from_millis(300)).await;
        assert_eq!(s.ctx.connections.open(), 6);
        // Three newcomers: each closes one idle connection.
        let mut newcomers = Vec::new();
        for n in 0..3u8 {
            let mut c = connect_from([127, 0, 0, 10 + n], s.addr).await;
            let line = format!("newcomer.n{n} 1 {}\n", tally_common::unix_now());
            c.write_all(line.as_bytes()).await.expect("send");
            assert!(
                stored(&s.store, &format!("newcomer.n{n}")).await,
                "newcomer {n}"
            );
            newcomers.push(c);
        }
        for (i, c) in idle.iter_mut().enumerate() {
            assert!(
                closed_within(c, Duration::from_secs(2)).await,
                "idle {i} closed"
            );
        }
        let stats = s.store.stats();
        assert_eq!(count(&stats.connections_evicted), 3);
        // Now every connection sent something within `busy`: the next one is refused.
        for c in &mut newcomers {
            c.write_all(b"newcomer.again 1 -1\n").await.expect("send");
        }
        let mut late = connect_from([127, 0, 0, 20], s.addr).await;
        assert!(closed_within(&mut late, Duration::from_secs(2)).await);
        assert_eq!(count(&stats.connections_refused), 1);
        for (i, sender) in senders.into_iter().enumerate() {
            assert!(!sender.await, "sender {i} kept its connection");
        }
        for (i, c) in newcomers.iter_mut().enumerate() {
            assert!(
                !closed_within(c, Duration::from_millis(100)).await,
                "newcomer {i}"
            );
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Issue 17: one log line per refusal flooded the log. 300 refusals make one line (the
    /// next says how many were held back) and are all counted.
    #[tokio::test]
    async fn issue_17_refusals_are_counted_and_logged_at_a_bounded_rate() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let s = server(100, 1, BUSY_WITHIN).await;
        let _kept = connect_from([127, 0, 0, 2], s.addr).await;
        for _ in 0..300 {
            let mut c = connect_from([127, 0, 0, 2], s.addr).await;
            assert!(closed_within(&mut c, Duration::from_secs(2)).await);
        }
        let stats = s.store.stats();
        assert_eq!(count(&stats.connections_refused), 300);
        assert_eq!(count(&stats.connections_refused_per_address), 300);
        let text = String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("plaintext connection refused"))
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].contains("held_back=0"), "{}", lines[0]);
        assert!(
            lines[0].contains("max_connections_per_address"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let c = Arc::new(Connections::new(10, 2, Duration::ZERO));
        let v6 = |s: &str| s.parse::<IpAddr>().expect("address");
        let _a = c.admit(v6("2001:db8:1:2::1")).expect("first");
        let _b = c.admit(v6("2001:db8:1:2:ffff::9")).expect("second");
        assert_eq!(
            c.admit(v6("2001:db8:1:2::77")).err(),
            Some(Refusal::PerAddress)
        );
        assert!(c.admit(v6("2001:db8:1:3::1")).is_ok(), "another /64");
        let _m = c.admit(v6("::ffff:192.0.2.1")).expect("mapped");
        let _v4 = c.admit(v6("192.0.2.1")).expect("the same v4 host, second");
        assert_eq!(c.admit(v6("192.0.2.1")).err(), Some(Refusal::PerAddress));
    }

    #[test]
    fn a_rate_limited_line_says_how_many_were_held_back() {
        let r = RateLimited::new(Duration::from_millis(200));
        assert_eq!(r.tick(), Some(0));
        for _ in 0..99 {
            assert_eq!(r.tick(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(r.tick(), Some(99));
        assert_eq!(r.tick(), None);
    }

    /// The choice itself: the busiest address gives back its longest-idle connection.
    #[test]
    fn the_address_holding_the_most_gives_back_its_longest_idle_connection() {
        let c = Arc::new(Connections::new(4, 4, Duration::ZERO));
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let a1 = c.admit(ip(1)).expect("a1");
        let b1 = c.admit(ip(2)).expect("b1");
        let b2 = c.admit(ip(2)).expect("b2");
        let a2 = c.admit(ip(1)).expect("a2");
        std::thread::sleep(Duration::from_millis(20));
        b1.slot.activity.touch();
        a1.slot.activity.touch();
        std::thread::sleep(Duration::from_millis(20));
        // Both addresses hold two; a2 and b2 have been idle longest, b2 since before a2.
        let n = c.admit(ip(3)).expect("newcomer");
        assert!(n.evicted);
        assert_eq!(c.open(), 4);
        // b2's slot was taken from the table; dropping it now changes nothing.
        drop(b2);
        assert_eq!(c.open(), 4);
        // Address 1 now holds the most (two): its longest idle (a2) goes next.
        let m = c.admit(ip(4)).expect("newcomer");
        assert!(m.evicted);
        drop(a2);
        assert_eq!(c.open(), 4);
        assert!(c.table.lock().per_address.get(&ip(1)) == Some(&1));
        drop((a1, b1, n, m));
        assert_eq!(c.open(), 0);
        assert!(c.table.lock().per_address.is_empty());
    }
}
