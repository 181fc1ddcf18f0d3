//! The statsd listeners: one UDP thread, one TCP accept thread and a thread per TCP connection
//! (at most `tcp_max_connections`), all appending to the one journal writer.
//!
//! *Accepted* means written to the journal. A datagram waits in the writer's buffer for at most
//! a few milliseconds (the buffer is written as soon as the socket has nothing more, or when it
//! holds 256 KiB, or after 5 ms of steady traffic), so a burst costs one `write(2)`, not one per
//! datagram. A TCP connection's complete lines are written before more is read from it; a full
//! journal stops reading the connection (the sender waits on TCP's flow control) where a
//! datagram would be dropped. UDP has no acknowledgement: a datagram the kernel dropped (a full
//! receive buffer) or that arrived while the agent was down was never accepted.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tally_common::unix_now;

use super::journal::Writer;
use super::StatsdSettings;
use crate::error::{Error, Result};
use crate::stats::Stats;

/// The writer's buffer is written once it holds this much.
const FLUSH_BYTES: usize = 256 << 10;
/// ... or once it has waited this long under steady traffic.
const FLUSH_AFTER: Duration = Duration::from_millis(5);

/// The running listeners.
#[derive(Debug)]
pub(crate) struct Listeners {
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) tcp: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Waits for the listeners to stop (after `stats.stopping`) and write what they hold.
    pub(crate) fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn lock(w: &Mutex<Writer>) -> std::sync::MutexGuard<'_, Writer> {
    // A listener that panicked holding the lock left a writer whose buffer is still whole
    // lines: keep using it.
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// Binds the configured sockets and starts their threads.
pub(crate) fn start(
    s: &StatsdSettings,
    writer: Arc<Mutex<Writer>>,
    stats: Arc<Stats>,
) -> Result<Listeners> {
    let mut out = Listeners {
        udp: None,
        tcp: None,
        threads: Vec::new(),
    };
    let spawn = |name: &'static str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|source| Error::Thread { name, source })
    };
    if let Some(addr) = s.udp {
        let listen_error = |source| Error::StatsdListen {
            proto: "udp",
            addr,
            source,
        };
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(listen_error)?;
        // A larger receive buffer rides out bursts while the writer holds the lock; the
        // kernel caps it at net.core.rmem_max, which is not an error.
        let _ = sock.set_recv_buffer_size(s.receive_buffer_bytes);
        sock.bind(&addr.into()).map_err(listen_error)?;
        let sock: UdpSocket = sock.into();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(listen_error)?;
        out.udp = Some(sock.local_addr().map_err(listen_error)?);
        let (writer, stats) = (writer.clone(), stats.clone());
        out.threads.push(spawn(
            "agent-statsd-udp",
            Box::new(move || udp_loop(&sock, &writer, &stats)),
        )?);
    }
    if let Some(addr) = s.tcp {
        let listen_error = |source| Error::StatsdListen {
            proto: "tcp",
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        out.tcp = Some(listener.local_addr().map_err(listen_error)?);
        let (max_conns, max_line) = (s.tcp_max_connections, s.max_line_bytes);
        out.threads.push(spawn(
            "agent-statsd-tcp",
            Box::new(move || accept_loop(&listener, &writer, &stats, max_conns, max_line)),
        )?);
    }
    Ok(out)
}

fn udp_loop(sock: &UdpSocket, writer: &Mutex<Writer>, stats: &Stats) {
    let mut buf = vec![0u8; 65536];
    // Whether the writer holds datagrams of ours, and since when; whether the socket waits
    // only briefly (a setsockopt per change, not per datagram).
    let mut pending: Option<Instant> = None;
    let mut short_wait = false;
    let mut error_logged: Option<Instant> = None;
    loop {
        if stats.stopping.load(Ordering::Relaxed) {
            lock(writer).flush();
            return;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let mut w = lock(writer);
                w.append(&buf[..n], 1, unix_now());
                let since = *pending.get_or_insert_with(Instant::now);
                if w.buffered_bytes() >= FLUSH_BYTES || since.elapsed() >= FLUSH_AFTER {
                    w.flush();
                    pending = None;
                }
                drop(w);
                if pending.is_some() != short_wait {
                    // Only wait briefly for more while something waits to be written.
                    short_wait = pending.is_some();
                    let wait = if short_wait { 1 } else { 100 };
                    let _ = sock.set_read_timeout(Some(Duration::from_millis(wait)));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if pending.take().is_some() {
                    lock(writer).flush();
                }
                if short_wait {
                    short_wait = false;
                    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
                }
            }
            Err(e) => {
                if error_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "statsd: UDP receive failed");
                    error_logged = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    writer: &Arc<Mutex<Writer>>,
    stats: &Arc<Stats>,
    max_conns: usize,
    max_line: usize,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    let mut refused_logged: Option<Instant> = None;
    while !stats.stopping.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, peer)) => {
                if open.load(Ordering::Relaxed) >= max_conns {
                    if refused_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(%peer, max_conns, "statsd: too many TCP connections, closing a new one");
                        refused_logged = Some(Instant::now());
                    }
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                stats
                    .statsd_connections
                    .store(open.load(Ordering::Relaxed) as u64, Ordering::Relaxed);
                let (writer, stats, open) = (writer.clone(), stats.clone(), open.clone());
                let spawned = std::thread::Builder::new()
                    .name("agent-statsd-conn".into())
                    .spawn(move || {
                        conn_loop(conn, &writer, &stats, max_line);
                        open.fetch_sub(1, Ordering::Relaxed);
                        stats
                            .statsd_connections
                            .store(open.load(Ordering::Relaxed) as u64, Ordering::Relaxed);
                    });
                match spawned {
                    Ok(h) => conns.push(h),
                    Err(e) => {
                        tracing::warn!(error = %e, "statsd: cannot start a connection thread")
                    }
                }
                conns.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                // EMFILE and the like: wait, do not spin.
                tracing::debug!(error = %e, "statsd: accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    for h in conns {
        let _ = h.join();
    }
}

/// Reads one connection's lines into the journal until it closes or the agent stops.
fn conn_loop(mut conn: TcpStream, writer: &Mutex<Writer>, stats: &Stats, max_line: usize) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    // In the middle of an over-long line: skip to its newline.
    let mut skipping = false;
    loop {
        if stats.stopping.load(Ordering::Relaxed) {
            return;
        }
        // A full journal: hold the sender rather than drop its lines.
        if !lock(writer).has_room() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let n = match conn.read(&mut chunk) {
            Ok(0) => {
                // The last line needs no newline.
                if !buf.is_empty() && !skipping {
                    let mut w = lock(writer);
                    w.append(&buf, 1, unix_now());
                    w.flush();
                }
                return;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        let mut data = &chunk[..n];
        if skipping {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    skipping = false;
                    data = &data[i + 1..];
                }
                None => continue,
            }
        }
        buf.extend_from_slice(data);
        let Some(last_nl) = memchr::memrchr(b'\n', &buf) else {
            if buf.len() > max_line {
                stats.statsd_dropped.fetch_add(1, Ordering::Relaxed);
                buf.clear();
                skipping = true;
            }
            continue;
        };
        let whole = &buf[..=last_nl];
        let lines = memchr::memchr_iter(b'\n', whole).count() as u64;
        let too_long = whole.split(|&b| b == b'\n').any(|l| l.len() > max_line);
        {
            let mut w = lock(writer);
            if too_long {
                let (mut kept, mut n) = (Vec::with_capacity(whole.len()), 0);
                for l in whole[..whole.len() - 1].split(|&b| b == b'\n') {
                    if l.len() > max_line {
                        stats.statsd_dropped.fetch_add(1, Ordering::Relaxed);
                    } else {
                        kept.extend_from_slice(l);
                        kept.push(b'\n');
                        n += 1;
                    }
                }
                if n > 0 {
                    w.append(&kept, n, unix_now());
                }
            } else {
                w.append(whole, lines, unix_now());
            }
            w.flush();
        }
        buf.drain(..=last_nl);
    }
}
