//! The storage engine. Being built (issue 3).
