//! The Graphite plaintext line protocol, with carbon 1.1 tags, as Tally speaks it on both sides.
//!
//! - [`parse_line`], [`Lines`] and [`Decoder`] read `<path> <value> <timestamp>` lines from a
//!   buffer or a stream in pieces, borrowing from the input: no allocation per line for names that
//!   are already canonical. Every bad line is an error with its line number and text, and never
//!   disturbs the good lines around it.
//! - [`series_name`] holds the naming rules: canonical tagged names (`name;a=1;b=2`, tags sorted)
//!   and carbon's tag validation.
//! - [`encode`] writes lines back; encode-then-parse is the identity (a property test).
//! - [`batch`] defines the acknowledged batch the agent ships to the store, once, for both sides.

pub mod batch;
mod decoder;
mod encoder;
mod error;
mod line;
pub mod series_name;

pub use batch::{decode_batch, IngestReply, INGEST_PATH};
pub use decoder::{Decoder, Lines, DEFAULT_MAX_LINE_BYTES};
pub use encoder::{encode, encode_metric, write_value};
pub use error::{LineError, ParseError, Result, CLIP_CHARS};
pub use line::{parse_line, Metric, Parsed, Skip, Timestamp, MAX_TIMESTAMP};
pub use series_name::NameError;
