//! The agent that runs on every web host: tails access logs, matches rules, aggregates per
//! interval and ships acknowledged batches to the store (or plaintext to carbon).
//!
//! ```text
//! files --tail--> lines --rules--> Agg (buckets of the log's time) --commit--> spool --ship--> store
//!                                          \__ checkpoint: offsets + open buckets __/
//! ```
//!
//! **No line lost, none counted twice.** One thread reads and aggregates. Every
//! `commit_interval` it *commits*: the points of completed buckets go into a spool segment
//! (written atomically), then the checkpoint (written atomically) records the file offsets
//! together with the open buckets' totals. A crash between the two re-reads from the previous
//! checkpoint and produces the same totals again; totals overwrite in the store, so the segment
//! sent twice changes nothing. The shipper deletes a segment only after the store acknowledged
//! it durable. It depends on `tally-proto` only, never on the store.

mod access;
pub mod agg;
mod checkpoint;
pub mod config;
mod error;
pub mod gen;
pub mod naming;
mod pipeline;
pub mod rules;
mod server;
mod ship;
mod spool;
mod stats;
pub mod tail;

pub use config::{AgentConfig, Settings};
pub use error::{Error, Result};
pub use pipeline::{run, Ready};
pub use stats::Stats;
