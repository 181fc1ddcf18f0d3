//! Tally's time-series store: a RocksDB engine with an in-memory head, compressed chunks,
//! exact rollups and pattern-based retention, and the listeners that feed it (Graphite plaintext
//! over TCP and UDP, and the acknowledged batch over HTTP).
//!
//! The promise is that nothing acknowledged is lost: an acknowledged batch is in the synced WAL
//! before the answer goes out, and a crash at any moment is recovered by replaying the log
//! records that were not yet flushed into chunks. [`Store`] is the engine (its methods are spread
//! over `engine/`, one file per concern); `layout.rs` says what lives where in RocksDB.

mod batch;
mod bits;
mod chunk;
pub mod config;
mod engine;
mod error;
mod events;
mod front;
mod glob;
mod head;
mod http;
mod index;
mod layout;
mod listener;
pub mod publish;
pub mod retention;
mod rollup;
pub mod server;
mod stats;
mod tag_expr;
mod tls;

pub use batch::PointBatch;
pub use chunk::{decimal_places, scale_exactly};
pub use config::{HttpLimits, Settings, StoreConfig, TlsConfig, TlsSettings};
pub use engine::{
    Durability, MinFree, Recovery, RecoveryProgress, Refusal, Series, Store, StoreOptions, Written,
};
pub use error::{Error, Result};
pub use events::{Event, TagMatch};
pub use index::{FindMatch, MemIndex, TagValue};
pub use listener::RateLimited;
pub use retention::{Aggregate, Archive, Schema, Schemas};
pub use stats::{Kind, Sample, Stats};
