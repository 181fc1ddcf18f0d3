//! The query crate's one error type. Messages quote the input and say where it went wrong.
//! [`QueryError::is_client_error`] tells the caller's mistakes from the server's failures
//! ([`crate::api_error`] also answers a busy server and refused writes with their own status).

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("bad target \"{target}\" at position {pos}: expected {expected}")]
    Syntax {
        target: String,
        pos: usize,
        expected: String,
    },
    #[error("bad time \"{input}\": {reason}")]
    Time { input: String, reason: String },
    #[error("unknown function \"{0}\"")]
    UnknownFunction(String),
    #[error("{func}: {reason}")]
    Argument { func: String, reason: String },
    #[error("{0}")]
    Limit(String),
    /// The server cannot take the request now (the points every request in flight holds are at
    /// their bound): not the caller's mistake; retry shortly.
    #[error("{0}")]
    Busy(String),
    /// No store a query node federates answered: not the caller's mistake; retry shortly.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadRequest(String),
    /// The store refused what the caller asked for: a bad glob, tag expression or series name.
    #[error(transparent)]
    Refused(tally_store::Error),
    /// The store failed (RocksDB, I/O, corrupt data): not the caller's doing.
    #[error(transparent)]
    Store(tally_store::Error),
    /// Something of ours failed (encoding an image, a compiled-in font): not the caller's doing.
    #[error("{0}")]
    Internal(String),
}

/// Store errors convert here, once, by the store's own classification
/// ([`tally_store::Error::is_caller_mistake`]).
impl From<tally_store::Error> for QueryError {
    fn from(e: tally_store::Error) -> Self {
        if e.is_caller_mistake() {
            QueryError::Refused(e)
        } else {
            QueryError::Store(e)
        }
    }
}

impl QueryError {
    /// Whether the request was at fault (answered 4xx with this message) rather than the server
    /// (answered 5xx generically, the detail logged).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            QueryError::Store(_)
                | QueryError::Busy(_)
                | QueryError::Unavailable(_)
                | QueryError::Internal(_)
        )
    }
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_are_classified_once_issue_11() {
        let refused: QueryError = tally_store::Error::Pattern {
            pattern: "a.[".into(),
            reason: "unclosed [".into(),
        }
        .into();
        assert!(refused.is_client_error());
        assert_eq!(refused.to_string(), "bad pattern \"a.[\": unclosed [");
        let tag: QueryError = tally_store::Error::TagExpr {
            expr: "a!=b".into(),
            reason: "matches the empty string".into(),
        }
        .into();
        assert!(tag.is_client_error());
        let failed: QueryError = tally_store::Error::Corrupt("chunk 7".into()).into();
        assert!(!failed.is_client_error());
        let io: QueryError = tally_store::Error::Io(std::io::Error::other("disk")).into();
        assert!(!io.is_client_error());
    }
}
