//! The acknowledged batch: how the agent knows a batch is durable before it deletes it.
//!
//! Plain TCP plaintext has no acknowledgement: a sender cannot tell which lines the server wrote
//! before a connection broke. So the agent ships the *same plaintext lines* as the body of
//!
//! ```text
//! POST /api/v1/ingest
//! Content-Type: text/plain; charset=utf-8
//! ```
//!
//! and the store answers only after every accepted point is durable (in the RocksDB WAL, synced):
//!
//! | status | meaning | the sender |
//! |---|---|---|
//! | 200 | the batch is durable; body is an [`IngestReply`] (bad lines are counted there, not fatal) | deletes the batch |
//! | 400 | not a batch at all (for example a wrong content encoding) | keeps it, reports the error |
//! | 401 | a token is configured and this request lacks it | keeps it |
//! | 413 | larger than [`MAX_BATCH_BYTES`] | splits it |
//! | 507 | writes refused for now (the store's disk is below its free-space reserve, or its database waits for a reopen); the reason is in the body, and `Retry-After` | retries later |
//! | 5xx / no answer | nothing is promised | retries later |
//!
//! Re-sending a batch is harmless: a point is a value at a timestamp of a series, and the store
//! keeps the last write for a timestamp, so the same points give the same stored data. That is
//! what makes retry after a lost acknowledgement safe. [`decode_batch`] is the one decoding both
//! sides agree on.

use serde::{Deserialize, Serialize};

use crate::decoder::{Lines, DEFAULT_MAX_LINE_BYTES};
use crate::error::ParseError;
use crate::line::{Metric, Parsed};

/// The path of the acknowledged batch endpoint.
pub const INGEST_PATH: &str = "/api/v1/ingest";

/// The largest body the store takes in one batch.
pub const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// How many bad lines a reply quotes; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// The store's answer to a durable batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReply {
    /// Points written durably.
    pub accepted: u64,
    /// Bad lines, skipped.
    pub rejected: u64,
    /// Good lines that carry no point: blank, or a NaN value (dropped as carbon does).
    pub skipped: u64,
    /// Good points refused because they are older than every archive of their series keeps
    /// (no read could return them); not in `accepted`. Absent from older stores' replies.
    #[serde(default)]
    pub outside_retention: u64,
    /// The first [`MAX_REPORTED_ERRORS`] bad lines, each with its line number, and then the
    /// reasons points were refused, each naming the point and the retention.
    pub errors: Vec<String>,
}

impl IngestReply {
    /// Counts one bad line, quoting it if there is room.
    pub fn reject(&mut self, error: &ParseError) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(error.to_string());
        }
    }

    /// Folds another reply into this one (a batch split in parts).
    pub fn merge(&mut self, other: IngestReply) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.skipped += other.skipped;
        self.outside_retention += other.outside_retention;
        let room = MAX_REPORTED_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }
}

/// Decodes a batch body, handing each good point to `point` and counting the rest.
///
/// `accepted` counts the points handed over; the caller acknowledges only after writing them.
pub fn decode_batch<F>(body: &[u8], mut point: F) -> IngestReply
where
    F: FnMut(Metric<'_>),
{
    let mut reply = IngestReply::default();
    for parsed in Lines::starting_at(body, 1, DEFAULT_MAX_LINE_BYTES) {
        match parsed {
            Ok(Parsed::Metric(m)) => {
                reply.accepted += 1;
                point(m);
            }
            Ok(Parsed::Skipped(_)) => reply.skipped += 1,
            Err(e) => reply.reject(&e),
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_counted_and_good_ones_kept() {
        let mut names = Vec::new();
        let mut body = b"a.b 1 10\nbroken\nc.d NaN 10\n".to_vec();
        for i in 0..20 {
            body.extend_from_slice(format!("bad{i}\n").as_bytes());
        }
        body.extend_from_slice(b"e.f 2 20");
        let reply = decode_batch(&body, |m| names.push(m.name.into_owned()));
        assert_eq!(names, ["a.b", "e.f"]);
        assert_eq!((reply.accepted, reply.rejected, reply.skipped), (2, 21, 1));
        assert_eq!(reply.errors.len(), MAX_REPORTED_ERRORS);
        assert!(
            reply.errors[0].starts_with("line 2: "),
            "{}",
            reply.errors[0]
        );
    }

    #[test]
    fn reply_json_shape() {
        let reply = IngestReply {
            accepted: 3,
            rejected: 1,
            skipped: 0,
            outside_retention: 2,
            errors: vec!["line 2: x".into()],
        };
        let json = serde_json::to_string(&reply).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"accepted":3,"rejected":1,"skipped":0,"outside_retention":2,"errors":["line 2: x"]}"#
        );
        let back: IngestReply = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, reply);
        // A store from before the field: it reads as 0.
        let old: IngestReply =
            serde_json::from_str(r#"{"accepted":3,"rejected":1,"skipped":0,"errors":[]}"#)
                .unwrap_or_default();
        assert_eq!((old.accepted, old.outside_retention), (3, 0));
    }
}
