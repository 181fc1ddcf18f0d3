//! The store's one error type.

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Every configuration problem, one per line.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
    #[error("bad pattern \"{pattern}\": {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("bad tag expression \"{expr}\": {reason}")]
    TagExpr { expr: String, reason: String },
    #[error("unknown series \"{0}\"")]
    UnknownSeries(String),
    /// Writes are refused for now (low disk space, a failed write, a read-only database);
    /// they resume by themselves.
    #[error("writes refused: {0}")]
    WritesRefused(crate::engine::Refusal),
    /// The database is not open (it is being reopened, or reopening failed).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// Whether the error is about what the caller asked for (a bad glob or tag expression, a
    /// series that does not exist) rather than a failure of the store. This is the one place
    /// store errors are classified; the store's routes and the query crate both ask it.
    pub fn is_caller_mistake(&self) -> bool {
        match self {
            Error::Pattern { .. } | Error::TagExpr { .. } | Error::UnknownSeries(_) => true,
            Error::Rocks(_)
            | Error::Io(_)
            | Error::Corrupt(_)
            | Error::Config(_)
            | Error::WritesRefused(_)
            | Error::Unavailable(_) => false,
        }
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
