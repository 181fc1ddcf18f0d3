//! The agent library's one error type: why [`run`](crate::run) could not start or had to stop.
//!
//! Each variant names what was being done and where (the path or address); the cause, an I/O
//! or JSON error, is its [`source`](std::error::Error::source), so `{:#}` through `anyhow`
//! prints `writing the checkpoint /var/lib/tally-agent/checkpoint.json: No space left on
//! device (os error 28)`. Problems in the configuration are not errors of this kind: `config`
//! and `rules` collect every one of them and report them together.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything that can stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One of the agent's own files or directories could not be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done: `creating`, `reading`, `writing the checkpoint`, ...
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The data directory's lock is held by another process.
    #[error("{}: another agent is using this data directory", dir.display())]
    Locked { dir: PathBuf },
    /// `checkpoint.json` exists but does not parse.
    #[error("{}: not a checkpoint (move it away to start over, re-reading from the end of each file)", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The `/metrics` address could not be listened on.
    #[error("metrics_listen \"{addr}\"")]
    MetricsListen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A statsd address (`[statsd] udp_listen`, `tcp_listen`) could not be listened on.
    #[error("statsd {proto} listen \"{addr}\"")]
    StatsdListen {
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A thread of the agent (the shipper, the metrics server) could not be started.
    #[error("starting the {name} thread")]
    Thread {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error while doing `action` on `path`.
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The agent library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
