//! graphite-web 1.1.8's language on Tally's engine.
mod args;
pub mod eval;
pub mod expr;
pub mod functions;
mod py_number;
pub mod render;
pub(crate) mod routes;
pub mod svg;

pub use eval::evaluate;
pub use expr::{parse, Expr};
pub use functions::functions_json;
pub use routes::GRAPHITE_VERSION;
