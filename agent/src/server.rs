//! `/metrics`: the agent's own counters in Prometheus text, for a scraper on the host.
//!
//! The agent itself is threads, not tasks: the reading loop and the shipper block on files and
//! sockets. The one HTTP endpoint therefore gets a thread with a current-thread tokio runtime
//! of its own, and reads nothing but [`Stats`], so a slow scraper never slows the loop.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::stats::Stats;

/// Serves `/metrics` on `addr` from a small runtime of its own; returns the bound address.
pub(crate) fn serve_metrics(addr: SocketAddr, stats: Arc<Stats>) -> Result<SocketAddr> {
    let listen_error = |source| Error::MetricsListen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    std::thread::Builder::new()
        .name("agent-metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the metrics server");
                    return;
                }
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let stats = stats.clone();
                        async move {
                            (
                                [("content-type", "text/plain; version=0.0.4")],
                                stats.prometheus(),
                            )
                        }
                    }),
                );
                let _ = axum::serve(listener, app).await;
            });
        })
        .map_err(|source| Error::Thread {
            name: "agent-metrics",
            source,
        })?;
    Ok(bound)
}
