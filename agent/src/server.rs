//! `/metrics`: the agent's own counters in Prometheus text, for a scraper on the host.
//!
//! The agent itself is threads, not tasks: the reading loop and the shipper block on files and
//! sockets. The one HTTP endpoint therefore gets a thread with a current-thread tokio runtime
//! of its own, and reads nothing but [`Stats`], so a slow scraper never slows the loop. With
//! `metrics_token` set it is behind the same guard as the store's routes
//! ([`tally_common::auth`]): a bearer token compared in constant time, 401 otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tally_common::auth::{Access, Routes, Tokens};

use crate::error::{Error, Result};
use crate::stats::Stats;

/// Serves `/metrics` on `addr` from a small runtime of its own; returns the bound address.
pub(crate) fn serve_metrics(
    addr: SocketAddr,
    stats: Arc<Stats>,
    token: Option<String>,
) -> Result<SocketAddr> {
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
                let _ = axum::serve(listener, router(stats, token)).await;
            });
        })
        .map_err(|source| Error::Thread {
            name: "agent-metrics",
            source,
        })?;
    Ok(bound)
}

/// `/metrics` behind `token` (open when `None`).
fn router(stats: Arc<Stats>, token: Option<String>) -> axum::Router {
    let metrics = move || {
        let stats = stats.clone();
        async move {
            (
                [("content-type", "text/plain; version=0.0.4")],
                stats.prometheus(),
            )
        }
    };
    Routes::new()
        .add(Method::GET, "/metrics", Access::Metrics, metrics)
        .guard(Arc::new(Tokens::new(token, None, false)), unauthorized)
}

fn unauthorized(_path: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (metrics_token)\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// One GET of `/metrics` on a real socket, with `token` as bearer; the status line's code
    /// and the whole answer.
    fn get(addr: SocketAddr, token: Option<&str>) -> (u16, String) {
        let mut conn = std::net::TcpStream::connect(addr).expect("connects");
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            conn,
            "GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .expect("sends");
        let mut answer = String::new();
        conn.read_to_string(&mut answer).expect("reads");
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, answer)
    }

    /// Issue 17: with `metrics_token` set the agent's counters answer only that token, compared
    /// as the store's tokens are; without one they are open.
    #[test]
    fn metrics_need_the_token_when_one_is_set() {
        let any = "127.0.0.1:0".parse().expect("addr");
        let guarded = serve_metrics(any, Arc::default(), Some("s3cret".into())).expect("serves");
        for token in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
            let (status, answer) = get(guarded, token);
            assert_eq!(status, 401, "{token:?}: {answer}");
            assert!(answer.contains("www-authenticate: Bearer"), "{answer}");
            assert!(answer.contains("metrics_token"), "{answer}");
            assert!(!answer.contains("tally_agent_"), "{answer}");
        }
        let (status, answer) = get(guarded, Some("s3cret"));
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("tally_agent_lines_read"), "{answer}");
        let open = serve_metrics(any, Arc::default(), None).expect("serves");
        let (status, answer) = get(open, None);
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("tally_agent_lines_read"), "{answer}");
    }
}
