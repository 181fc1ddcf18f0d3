//! The query side of Tally: query languages over any [`Source`] of series (the RocksDB store in
//! production, memory in tests), their HTTP API, and alerting on top.
//!
//! What every language shares sits at the crate root:
//! - `series`: the series model ([`TimeSeries`], with graphite-web's pending consolidation);
//! - `source`: the [`Source`] trait the engine reads through, and [`MemSource`];
//! - `fetch`: reading a glob or a tag selection for a request ([`Ctx`]), wide matches in
//!   parallel, counted against the request's [`Limits`] (`limits`);
//! - [`time`]: the `from`/`until` grammar;
//! - `error` and `api_error`: [`QueryError`], and the HTTP error answer;
//! - `router`: everything served, behind the bearer tokens ([`router_with`]);
//! - `federate`: a query node's source, the stores behind a relay read as one, and `partial`,
//!   how an answer missing a store's share says so.
//!
//! Each language is a module of its own: [`graphite`] is graphite-web 1.1.8's target language,
//! function library, render formats and routes; [`atlas`] is Netflix Atlas's stack language and
//! graph API on the same engine. [`alert`] evaluates threshold rules on them.

pub mod alert;
mod api_error;
pub mod atlas;
pub mod client;
pub mod config;
mod error;
pub mod federate;
mod fetch;
pub mod graphite;
mod limits;
pub mod partial;
mod router;
mod series;
mod source;
pub mod time;
mod web;

pub use client::{RenderClient, RenderedSeries};
pub use config::{QueryConfig, QuerySettings};
pub use error::{QueryError, Result};
pub use fetch::Ctx;
pub use graphite::GRAPHITE_VERSION;
pub use limits::{Budget, Limits, DEFAULT_MAX_POINTS_IN_FLIGHT};
pub use router::{router, router_with, router_with_extra, ApiOptions};
pub use series::{Consolidation, Style, TimeSeries};
pub use source::{Fetched, MemSource, Named, Source};
