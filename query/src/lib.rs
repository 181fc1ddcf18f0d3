//! The query side of Tally: graphite-web 1.1.8's target language, function library and HTTP API,
//! over any [`Source`] of series (the RocksDB store in production, memory in tests).
//!
//! - [`expr`]: the target grammar (nom), with positions in syntax errors;
//! - [`time`]: the `from`/`until` grammar;
//! - [`eval`] and [`functions`]: evaluation with graphite's semantics for nulls, steps (lcm),
//!   names and tags;
//! - [`render`]: `maxDataPoints` consolidation and the json/csv/raw formats;
//! - [`api`]: the routes Grafana's Graphite data source calls.

pub mod alert;
pub mod api;
pub mod client;
pub mod config;
mod error;
pub mod eval;
pub mod expr;
pub mod functions;
pub mod render;
pub mod series;
pub mod source;
pub mod svg;
pub mod time;

pub use api::{router, router_with, ApiOptions, GRAPHITE_VERSION};
pub use client::{RenderClient, RenderedSeries};
pub use config::{QueryConfig, QuerySettings};
pub use error::{QueryError, Result};
pub use eval::Limits;
pub use series::TimeSeries;
pub use source::{Fetched, MemSource, Source};
