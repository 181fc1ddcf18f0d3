//! The query side of Tally: graphite-web 1.1.8's target language, function library and HTTP API,
//! over any [`Source`] of series (the RocksDB store in production, memory in tests).
//!
//! - [`graphite`]: the target language, its functions, render formats and routes;
//! - [`time`]: the `from`/`until` grammar.

pub mod alert;
mod api_error;
mod error;
mod fetch;
pub mod graphite;
mod limits;
mod router;
pub mod series;
pub mod source;
pub mod time;

pub use error::{QueryError, Result};
pub use fetch::Ctx;
pub use graphite::GRAPHITE_VERSION;
pub use limits::Limits;
pub use router::{router, router_with, ApiOptions};
pub use series::TimeSeries;
pub use source::{Fetched, MemSource, Source};
