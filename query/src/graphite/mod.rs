//! graphite-web 1.1.8's language on Tally's engine: the target grammar ([`parse`]), the
//! evaluator ([`evaluate`]) with graphite's semantics for nulls, steps (lcm), names and tags, the
//! function library, the render formats (`maxDataPoints` consolidation; png, svg, pdf, json, csv, raw, dygraph, rickshaw, pickle, msgpack; line and pie graphs)
//! and the graphite-web routes Grafana's Graphite data source calls.
//!
//! It reads series through what every language shares: [`crate::Ctx`] and the fetch behind it,
//! the [`crate::Source`], the series model and [`crate::Limits`].
//!
//! - `expr`: the target grammar (nom), with positions in syntax errors;
//! - `eval`: targets to series; `args`: a function's arguments, evaluated on demand;
//! - `functions`: the library, and the `/functions` listing;
//! - `py_number`: Python's number formatting, which graphite's names and formats use;
//! - `render`: the `/render` text formats; `graph`: the PNG, SVG and PDF graphs; `cluster`: the
//!   pickle and msgpack formats graphite-web's cluster members exchange;
//! - `routes`: graphite-web's HTTP API.

mod args;
pub(crate) mod cluster;
mod eval;
mod expr;
mod functions;
pub mod graph;
mod py_number;
pub(crate) mod render;
pub(crate) mod routes;

pub use cluster::{read_render_tally, render_tally, RemoteSeries};
pub use eval::evaluate;
pub use expr::{parse, Call, Expr};
pub use functions::functions_json;
pub use graph::{render_pdf, render_pie, render_png, render_svg, ImageFormat};
pub use routes::GRAPHITE_VERSION;
