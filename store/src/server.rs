//! `tally store`: the engine, its listeners, and the background work, started and stopped as one.
//!
//! Shutdown (SIGTERM, Ctrl-C) stops accepting, lets in-flight writes finish, flushes the head
//! into chunks and syncs the WAL before returning: a clean stop leaves nothing to replay.
//!
//! The HTTP port is served by `front` (connection cap, timeouts, load shedding, TLS); with TLS
//! configured, SIGHUP reads the certificate and key again (`tls.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::batch::PointBatch;
use crate::config::Settings;
use crate::engine::{Durability, Recovery, RecoveryProgress, Store, StoreOptions};
use crate::error::{Error, Result};
use crate::front::{self, Counters, FrontOptions};
use crate::listener::{serve_tcp, serve_udp, ListenCtx};
use crate::tls::Tls;

/// Where a running store listens (ports resolved, so `:0` in tests becomes a real port).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub line: SocketAddr,
    pub http: SocketAddr,
}

/// Opens the store and serves until `shutdown` completes. `extra` routes (the query API) are
/// merged into the HTTP router. `on_bound` is told the real addresses once listening.
pub async fn run(
    settings: Settings,
    extra: Option<Box<dyn FnOnce(Store) -> Router + Send>>,
    on_bound: impl FnOnce(Bound),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut opts = StoreOptions::new(&settings.data_dir);
    opts.schemas = settings.schemas.clone();
    opts.max_head_points = settings.max_head_points;
    opts.min_free = settings.min_free;
    let (tls, front_opts) = front_settings(&settings)?;
    // Installed before the port is announced, so that a SIGHUP never finds the default action
    // (which ends the process).
    let mut hup = hup_for(&tls)?;
    // The HTTP port answers at once: while the store opens (recovery after a crash can take a
    // while), every request gets 503 with the progress and an ETA, so a person sees why.
    let http_std = std::net::TcpListener::bind(settings.http_listen)?;
    http_std.set_nonblocking(true)?;
    let progress = Arc::new(Recovery::default());
    opts.progress = Some(progress.clone());
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel::<()>();
    let interim = {
        let listener = TcpListener::from_std(http_std.try_clone()?)?;
        let app = recovering_router(progress.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let counters = Counters::Alone(Arc::default());
            front::serve(listener, app, front_opts, tls, counters, async move {
                let _ = opened_rx.await;
            })
            .await;
        })
    };
    let started = Instant::now();
    let store = tokio::task::spawn_blocking(move || Store::open(opts))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    let _ = opened_tx.send(());
    // A client holding a connection open must not keep the interim server alive.
    let mut interim = interim;
    if tokio::time::timeout(Duration::from_secs(5), &mut interim)
        .await
        .is_err()
    {
        interim.abort();
    }
    info!(dir = %settings.data_dir.display(), series = store.series_count(), elapsed_ms = started.elapsed().as_millis() as u64, "store open");

    check_descriptor_limit(&settings);
    let line = TcpListener::bind(settings.line_listen).await?;
    let line_addr = line.local_addr()?;
    let udp = if settings.udp_enabled {
        Some(UdpSocket::bind(line_addr).await?)
    } else {
        None
    };
    let http = TcpListener::from_std(http_std)?;
    let http_addr = http.local_addr()?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut ctx = ListenCtx::new(store.clone(), &settings);
    ctx.tls = tls
        .clone()
        .filter(|_| settings.tls.as_ref().is_some_and(|t| t.line));
    let ctx = Arc::new(ctx);
    let mut tasks = vec![tokio::spawn(serve_tcp(line, ctx.clone(), stop_rx.clone()))];
    if let Some(udp) = udp {
        tasks.push(tokio::spawn(serve_udp(udp, ctx.clone(), stop_rx.clone())));
    }
    let mut app = crate::http::router(store.clone(), Arc::new(settings.tokens.clone()));
    if let Some(extra) = extra {
        app = app.merge(extra(store.clone()));
    }
    let mut http_stop = stop_rx.clone();
    let counters = Counters::Store(store.clone());
    tasks.push(tokio::spawn(front::serve(
        http,
        app,
        front_opts,
        tls.clone(),
        counters,
        async move {
            let _ = http_stop.changed().await;
        },
    )));
    if let Some(reload) = reload_tls_on_hup(tls, hup.take(), stop_rx.clone()) {
        tasks.push(reload);
    }
    tasks.push(tokio::spawn(sync_wal_loop(
        store.clone(),
        settings.wal_sync_interval,
        stop_rx.clone(),
    )));
    // Free space against the reserve, and the reopen after a failed write (engine/gate.rs).
    let space = store.clone();
    let space_check = move || space.check_space();
    tasks.push(tokio::spawn(periodically(
        Duration::from_secs(1),
        stop_rx.clone(),
        space_check,
    )));
    if let Some(every) = settings.self_metrics_interval {
        tasks.push(tokio::spawn(self_metrics_loop(
            store.clone(),
            every,
            stop_rx.clone(),
        )));
    }
    let flusher_stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (store, stop) = (store.clone(), flusher_stop.clone());
        let (every, compact_every) = (settings.flush_interval, settings.compact_interval);
        std::thread::Builder::new()
            .name("tally-flush".into())
            .spawn(move || flush_loop(store, every, compact_every, stop))?
    };

    info!(line = %line_addr, udp = settings.udp_enabled, http = %http_addr, "listening");
    on_bound(Bound {
        line: line_addr,
        http: http_addr,
    });
    shutdown.await;

    info!("shutting down: finishing writes, flushing");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    flusher_stop.store(true, Ordering::Relaxed);
    store.request_flush();
    let _ = flusher.join();
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.close())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    info!("stopped cleanly");
    Ok(())
}

/// Serves `app` alone on `settings.http_listen` with the store's HTTP front (connection cap,
/// header, body and idle timeouts, load shedding, TLS reloaded on SIGHUP) until `shutdown`
/// completes: the port of a process that holds no store (`tally query`). `on_bound` is told the
/// real address once listening. The front's own counters are `stats`.
pub async fn serve_http(
    settings: &Settings,
    app: Router,
    stats: Arc<crate::Stats>,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (tls, front_opts) = front_settings(settings)?;
    let hup = hup_for(&tls)?;
    let listener = TcpListener::bind(settings.http_listen).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let reload = reload_tls_on_hup(tls.clone(), hup, stop_rx);
    info!(http = %addr, "listening");
    on_bound(addr);
    front::serve(
        listener,
        app,
        front_opts,
        tls,
        Counters::Alone(stats),
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    if let Some(r) = reload {
        let _ = r.await;
    }
    Ok(())
}

/// With TLS, the SIGHUP handler that reloads it. Install it before the port is announced, so
/// that a SIGHUP never finds the default action (which ends the process).
fn hup_for(tls: &Option<Arc<Tls>>) -> Result<Option<tokio::signal::unix::Signal>> {
    Ok(match tls {
        Some(_) => Some(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        )?),
        None => None,
    })
}

/// Reads the certificate and key again on each SIGHUP until `stop` changes.
fn reload_tls_on_hup(
    tls: Option<Arc<Tls>>,
    hup: Option<tokio::signal::unix::Signal>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let (tls, mut hup) = (tls?, hup?);
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                _ = stop.changed() => return,
            }
            tls.reload_logged();
        }
    }))
}

/// The HTTP front's TLS (loaded) and limits, from the settings.
fn front_settings(settings: &Settings) -> Result<(Option<Arc<Tls>>, FrontOptions)> {
    let tls = match &settings.tls {
        Some(t) => Some(Arc::new(
            Tls::load(t.files.clone()).map_err(|e| Error::Config(vec![format!("tls: {e}")]))?,
        )),
        None => None,
    };
    let front_opts = FrontOptions {
        max_connections: settings.http.max_connections,
        max_requests: settings.http.max_requests,
        header_timeout: settings.http.header_timeout,
        body_timeout: settings.http.body_timeout,
        idle_timeout: settings.http.idle_timeout,
    };
    Ok((tls, front_opts))
}

/// Descriptors the store needs besides its connections: RocksDB's files, the runtime, logs.
const STORE_DESCRIPTORS: usize = 256;

/// Warns when the open-file limit is below what the connection caps allow: the state in which
/// accepts fail with "Too many open files".
fn check_descriptor_limit(settings: &Settings) {
    let Some(limit) = open_files_limit() else {
        return;
    };
    let wanted = settings.max_connections + settings.http.max_connections + STORE_DESCRIPTORS;
    if limit < wanted as u64 {
        warn!(
            limit,
            max_connections = settings.max_connections,
            http_max_connections = settings.http.max_connections,
            "the open-file limit is below the connection caps plus {STORE_DESCRIPTORS} for the store; \
             raise it (LimitNOFILE) or lower max_connections and http_max_connections"
        );
    }
}

/// This process' soft limit on open files (Linux: `/proc/self/limits`).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn flush_loop(store: Store, every: Duration, compact_every: Duration, stop: Arc<AtomicBool>) {
    let mut last_flush = Instant::now();
    let mut last_compact = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let asked = store.wait_flush_request(Duration::from_millis(500));
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if asked || last_flush.elapsed() >= every {
            if let Err(e) = store.flush() {
                error!(error = %e, "flush failed; the head stays in memory and the log on disk, retrying");
            }
            last_flush = Instant::now();
        }
        if last_compact.elapsed() >= compact_every {
            if let Err(e) = store.compact() {
                error!(error = %e, "compaction failed");
            }
            last_compact = Instant::now();
        }
    }
}

/// Runs `job` on a blocking thread every `every` until `stop` fires.
async fn periodically<F>(every: Duration, mut stop: watch::Receiver<bool>, job: F)
where
    F: Fn() + Clone + Send + 'static,
{
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let job = job.clone();
        let _ = tokio::task::spawn_blocking(job).await;
    }
}

async fn sync_wal_loop(store: Store, every: Duration, stop: watch::Receiver<bool>) {
    periodically(every, stop, move || {
        if let Err(e) = store.sync_wal() {
            error!(error = %e, "WAL sync failed: buffered plaintext points may be lost on power failure");
        }
    })
    .await;
}

/// Writes the store's own counters as `tally.store.<name>` series.
async fn self_metrics_loop(store: Store, every: Duration, stop: watch::Receiver<bool>) {
    periodically(every, stop, move || {
        let now = tally_common::unix_now();
        let mut batch = PointBatch::default();
        for m in store.metrics() {
            batch.push(&format!("tally.store.{}", m.name), now, m.value as f64);
        }
        match store.write(&batch, Durability::Buffered) {
            Ok(_) | Err(crate::Error::WritesRefused(_)) => {}
            Err(e) => error!(error = %e, "writing self-metrics failed"),
        }
    })
    .await;
}

/// What the HTTP port answers while the store is still opening: 503 with the recovery's
/// progress and ETA, as JSON on `/api/v1/status` and as a page that refreshes itself elsewhere.
fn recovering_router(progress: Arc<Recovery>) -> Router {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let status = move |uri: axum::http::Uri| {
        let progress = progress.clone();
        async move {
            let RecoveryProgress {
                done,
                total,
                eta_secs: eta,
            } = progress.snapshot();
            let pct = (done * 100).checked_div(total).unwrap_or(0);
            if uri.path() == "/api/v1/status" {
                let body = format!(
                    "{{\"state\":\"recovering\",\"done\":{done},\"total\":{total},\"percent\":{pct},\"eta_secs\":{}}}",
                    eta.map_or("null".to_string(), |e| e.to_string())
                );
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response();
            }
            let eta = eta.map_or("estimating".to_string(), |e| format!("about {e} s left"));
            let body = format!(
                "<!doctype html><meta http-equiv=refresh content=2><title>Tally: recovering</title>\
                 <body style=\"font:16px system-ui;background:#0f1419;color:#d8dee6;padding:40px\">\
                 <h1>Tally is recovering</h1><p>Replaying writes that were not flushed before the last stop: \
                 {done} of {total} records ({pct}%), {eta}.</p><p>This page refreshes itself.</p>"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::RETRY_AFTER, "2"),
                ],
                body,
            )
                .into_response()
        }
    };
    Router::new().fallback(status)
}

#[cfg(test)]
mod recovering_tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::Ordering::Relaxed;
    use tower::ServiceExt;

    #[test]
    fn the_open_file_limit_is_read() {
        let limit = open_files_limit().expect("Linux has /proc/self/limits");
        assert!(limit >= 64, "{limit}");
    }

    #[tokio::test]
    async fn while_opening_every_request_gets_progress_and_an_eta() {
        let p = Arc::new(Recovery::default());
        p.total.store(1000, Relaxed);
        p.done.store(250, Relaxed);
        p.elapsed_ms.store(10_000, Relaxed);
        let app = recovering_router(p);
        let req = axum::http::Request::get("/api/v1/status")
            .body(axum::body::Body::empty())
            .expect("req");
        let resp = app.clone().oneshot(req).await.expect("resp");
        assert_eq!(resp.status(), 503);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            std::str::from_utf8(&body).expect("utf8"),
            r#"{"state":"recovering","done":250,"total":1000,"percent":25,"eta_secs":30}"#
        );
        let req = axum::http::Request::get("/render?target=x")
            .body(axum::body::Body::empty())
            .expect("req");
        let resp = app.oneshot(req).await.expect("resp");
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "2");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("250 of 1000 records (25%), about 30 s left"),
            "{text}"
        );
    }
}
