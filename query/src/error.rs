//! The query crate's one error type. Messages quote the input and say where it went wrong.

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
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] tally_store::Error),
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;
