//! The agent that runs on every web host: it tails access logs, counts what the rules match in
//! intervals of the log's own time, and ships the totals to the store (acknowledged batches over
//! HTTP) or to carbon (plaintext). It depends on `tally-proto` only, never on the store.
//!
//! ```text
//! tail --lines--> rules --observations--> agg --points--> spool --segments--> ship --> store | carbon
//!   \__ file offsets __ checkpoint __ open buckets __/
//! ```
//!
//! **No line lost, none counted twice**, across restarts and `kill -9`: every commit writes the
//! points of the completed buckets as a spool segment, then a checkpoint of the file offsets and
//! the open buckets, each file atomically; the shipper deletes a segment only once the store has
//! acknowledged it durable (carbon acknowledges nothing: there, once written to the socket).
//! Points are per-bucket totals, which overwrite in the store, so what a crash makes the agent
//! send twice changes nothing.
//!
//! The modules, in the order a line passes them:
//! - [`tail`]: files by glob, followed through rotation, truncation and restarts.
//! - `access`: the combined / nginx line parser and the log's time formats.
//! - [`rules`]: what a line counts for: the presets and the `[[rule]]`s.
//! - [`agg`]: buckets of the log's time, one cell per series, emitted as totals.
//! - [`naming`]: what the series are called, the rules' and the agent's own alike.
//! - `pipeline`: the reading loop and the commit ([`run`]); `checkpoint`: where a restart
//!   continues.
//! - [`ring`]: which of several stores hold a series (carbon-c-relay's consistent hashing).
//! - `spool`: segments waiting for the destination, one queue per store; `ship`: sends them,
//!   then deletes them.
//! - `stats`: the agent's own counters ([`Stats`]); `server`: `/metrics`.
//! - [`config`]: the TOML file, validated into [`Settings`]; `error`: [`Error`].
//! - [`statsd`]: the statsd listeners, their journal, the protocol and its aggregation.
//! - [`gen`]: a deterministic access-log generator with exact expected totals (tests, benches,
//!   the demo).

mod access;
pub mod agg;
mod checkpoint;
pub mod config;
mod error;
pub mod gen;
pub mod naming;
mod pipeline;
pub mod ring;
pub mod rules;
mod server;
mod ship;
mod spool;
mod stats;
pub mod statsd;
pub mod tail;

pub use config::{AgentConfig, Settings};
pub use error::{Error, Result};
pub use pipeline::{run, Ready};
pub use stats::{Stats, StoreStats};
