//! The shipper: sends spooled segments, oldest first, and deletes them once delivered.
//!
//! To Tally, a batch is one `POST /api/v1/ingest`; the store answers 200 only when the points
//! are durable, and only then are the segments deleted. To carbon (Graphite plaintext over TCP,
//! which has no acknowledgement) a segment is deleted once written to the socket. A failure
//! keeps the segments and waits, doubling the wait up to `max_backoff`; evaluation of the logs
//! never waits for the shipper.
//!
//! With several stores each store's queue (`spool`) has a shipper thread of its own, so a store
//! that is down holds back only its own share; the spool gauges are the sums over the queues,
//! and each store's own counters carry its URL.
//!
//! Both can go over TLS (an `https://` url; `tls = true` for carbon), verifying the server
//! against the configured CA and presenting a client certificate when one is configured.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tally_common::tls::rustls;

use crate::config::Output;
use crate::spool::{list, Segment};
use crate::stats::{Stats, StoreStats};

/// One batch is at most this large (well under the store's 32 MiB limit).
const BATCH_BYTES: u64 = 4 << 20;

enum Dest {
    Tally {
        client: reqwest::blocking::Client,
        url: String,
        token: Option<String>,
    },
    Carbon {
        address: String,
        conn: Option<Box<dyn Write + Send>>,
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

/// The host part of `host:port` (`[::1]:2003` too), as the name a TLS server must prove.
fn server_name(address: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{address}: \"{host}\" is not a host name for TLS: {e}"))
}

impl Dest {
    fn send(&mut self, body: Vec<u8>) -> Result<(), String> {
        match self {
            Dest::Tally { client, url, token } => {
                let mut req = client
                    .post(format!("{url}{}", tally_proto::INGEST_PATH))
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(body);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().map_err(|e| format!("{url}: {e}"))?;
                let status = resp.status();
                let text = resp.text().unwrap_or_default();
                if !status.is_success() {
                    return Err(format!("{url}: HTTP {status}: {}", text.trim()));
                }
                match serde_json::from_str::<tally_proto::IngestReply>(&text) {
                    Ok(reply) if reply.rejected > 0 || reply.outside_retention > 0 => {
                        tracing::warn!(rejected = reply.rejected, outside_retention = reply.outside_retention, errors = ?reply.errors, "the store rejected some points");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(format!("{url}: not an ingest reply ({e}): {}", text.trim()))
                    }
                }
                Ok(())
            }
            Dest::Carbon {
                address,
                conn,
                timeout,
                tls,
            } => {
                if conn.is_none() {
                    let addr = std::net::ToSocketAddrs::to_socket_addrs(address.as_str())
                        .map_err(|e| format!("{address}: {e}"))?
                        .next()
                        .ok_or_else(|| format!("{address}: no address"))?;
                    let c = TcpStream::connect_timeout(&addr, *timeout)
                        .map_err(|e| format!("{address}: {e}"))?;
                    c.set_write_timeout(Some(*timeout))
                        .and_then(|_| c.set_read_timeout(Some(*timeout)))
                        .map_err(|e| format!("{address}: {e}"))?;
                    *conn = Some(match tls {
                        None => Box::new(c),
                        Some(config) => {
                            let session = rustls::ClientConnection::new(
                                config.clone(),
                                server_name(address)?,
                            )
                            .map_err(|e| format!("{address}: TLS: {e}"))?;
                            Box::new(rustls::StreamOwned::new(session, c))
                        }
                    });
                }
                let Some(c) = conn.as_mut() else {
                    return Err(format!("{address}: not connected"));
                };
                if let Err(e) = c.write_all(&body).and_then(|_| c.flush()) {
                    *conn = None;
                    return Err(format!("{address}: {e}"));
                }
                Ok(())
            }
        }
    }
}

/// What one shipper delivers: a spool directory, to one destination.
#[derive(Debug)]
pub(crate) struct Queue {
    /// A `Tally` or `Carbon` output (one of several stores is a `Tally` of its own).
    pub(crate) output: Output,
    pub(crate) dir: PathBuf,
    /// One of several stores: its own counters.
    pub(crate) store: Option<Arc<StoreStats>>,
}

/// The shippers of `output`'s queues (`dirs`, one per store in the order of the stores).
pub(crate) fn queues(output: &Output, dirs: Vec<PathBuf>, stats: &Stats) -> Vec<Queue> {
    match output {
        Output::Stores {
            stores, token, tls, ..
        } => {
            let mut all = Vec::with_capacity(stores.len());
            let mut per_store = Vec::with_capacity(stores.len());
            for (store, dir) in stores.iter().zip(dirs) {
                let counters = Arc::new(StoreStats::new(&store.url));
                per_store.push(counters.clone());
                all.push(Queue {
                    output: Output::Tally {
                        url: store.url.clone(),
                        token: token.clone(),
                        tls: tls.clone(),
                    },
                    dir,
                    store: Some(counters),
                });
            }
            if let Ok(mut s) = stats.stores.lock() {
                *s = per_store;
            }
            all
        }
        _ => dirs
            .into_iter()
            .take(1)
            .map(|dir| Queue {
                output: output.clone(),
                dir,
                store: None,
            })
            .collect(),
    }
}

/// What this queue last added to the spool gauges (which sum over the queues).
#[derive(Default)]
struct Shares {
    segments: u64,
    bytes: u64,
    points: u64,
}

impl Shares {
    fn update(&mut self, stats: &Stats, segs: &[Segment]) {
        let now = Shares {
            segments: segs.len() as u64,
            bytes: segs.iter().map(|s| s.bytes).sum(),
            points: segs.iter().map(|s| s.points).sum(),
        };
        // Wrapping adds of the differences: each queue moves the sums by its own change.
        stats
            .spool_segments
            .fetch_add(now.segments.wrapping_sub(self.segments), Ordering::Relaxed);
        stats
            .spool_bytes
            .fetch_add(now.bytes.wrapping_sub(self.bytes), Ordering::Relaxed);
        stats
            .spool_points
            .fetch_add(now.points.wrapping_sub(self.points), Ordering::Relaxed);
        *self = now;
    }
}

/// Runs until `stats.stopping` is set (then makes a last attempt for a short while).
pub(crate) fn run(queue: Queue, stats: Arc<Stats>, timeout: Duration, max_backoff: Duration) {
    const TLS_NAMES: [&str; 3] = ["output.ca_file", "output.client_cert", "output.client_key"];
    let Queue { output, dir, store } = queue;
    // Where the points go, for the log.
    let label = match &output {
        Output::Tally { url, .. } => url.clone(),
        Output::Carbon { address, .. } => address.clone(),
        Output::Stores { .. } => String::new(),
    };
    let label = label.as_str();
    let mut dest = match output {
        Output::Tally { url, token, tls } => {
            let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
            if tls.is_set() {
                match tls.load(TLS_NAMES) {
                    Ok(config) => builder = builder.use_preconfigured_tls(config),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot set up TLS; nothing will be shipped");
                        return;
                    }
                }
            }
            let client = match builder.build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the HTTP client; nothing will be shipped");
                    return;
                }
            };
            Dest::Tally { client, url, token }
        }
        Output::Stores { .. } => {
            tracing::error!("a shipper was given several stores; nothing will be shipped");
            return;
        }
        Output::Carbon { address, tls } => {
            let tls = match tls.map(|files| files.load(TLS_NAMES)).transpose() {
                Ok(config) => config.map(Arc::new),
                Err(e) => {
                    tracing::error!(error = %e, "cannot set up TLS; nothing will be shipped");
                    return;
                }
            };
            Dest::Carbon {
                address,
                conn: None,
                timeout,
                tls,
            }
        }
    };
    let mut backoff = Duration::from_millis(250);
    let mut failing = false;
    let mut stop_at: Option<Instant> = None;
    let mut shares = Shares::default();
    let mut seen = 0;
    loop {
        let segs = list(&dir);
        shares.update(&stats, &segs);
        if let Some(s) = &store {
            s.spool_points.store(shares.points, Ordering::Relaxed);
        }
        if stats.stopping.load(Ordering::Relaxed) {
            // On the way out, deliver what is there if the destination answers; never hang.
            let deadline = *stop_at.get_or_insert_with(|| Instant::now() + Duration::from_secs(2));
            if segs.is_empty() || failing || Instant::now() > deadline {
                return;
            }
        }
        if segs.is_empty() {
            stats.wait_for_work(&mut seen, Duration::from_millis(500));
            continue;
        }
        let mut batch: Vec<&Segment> = Vec::new();
        let mut bytes = 0;
        for s in &segs {
            if !batch.is_empty() && bytes + s.bytes > BATCH_BYTES {
                break;
            }
            bytes += s.bytes;
            batch.push(s);
        }
        let mut body = Vec::with_capacity(bytes as usize);
        let mut sent: Vec<&Segment> = Vec::new();
        for s in batch {
            // A segment the spool dropped meanwhile is simply gone.
            if let Ok(b) = std::fs::read(&s.path) {
                body.extend_from_slice(&b);
                sent.push(s);
            }
        }
        let oldest = sent
            .first()
            .and_then(|s| std::fs::metadata(&s.path).ok()?.modified().ok());
        let points: u64 = sent.iter().map(|s| s.points).sum();
        let started = Instant::now();
        match dest.send(body) {
            Ok(()) => {
                for s in &sent {
                    let _ = std::fs::remove_file(&s.path);
                }
                if failing {
                    tracing::info!(to = label, "shipping again");
                }
                if let Some(s) = &store {
                    s.points_shipped.fetch_add(points, Ordering::Relaxed);
                }
                failing = false;
                backoff = Duration::from_millis(250);
                stats.points_shipped.fetch_add(points, Ordering::Relaxed);
                stats.ship_batches.fetch_add(1, Ordering::Relaxed);
                stats
                    .ship_request_ms
                    .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                if let Some(age) = oldest.and_then(|t| SystemTime::now().duration_since(t).ok()) {
                    stats
                        .ship_latency_ms
                        .store(age.as_millis() as u64, Ordering::Relaxed);
                }
            }
            Err(e) => {
                stats.ship_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(s) = &store {
                    s.ship_errors.fetch_add(1, Ordering::Relaxed);
                }
                if !failing {
                    tracing::warn!(error = %e, to = label, spooled_points = shares.points, "shipping failed; keeping the points in the spool and retrying");
                } else {
                    tracing::debug!(error = %e, to = label, ?backoff, "shipping still failing");
                }
                failing = true;
                if !stats.stopping.load(Ordering::Relaxed) {
                    stats.sleep_unless_stopping(backoff);
                }
                backoff = (backoff * 2).min(max_backoff.max(Duration::from_millis(250)));
            }
        }
    }
}
