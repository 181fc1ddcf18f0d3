//! What one request may cost, whatever its language: the series and points it reads and the wall
//! time it takes. [`crate::Ctx`] counts against these as it fetches, so a request over a wide glob
//! or a long range is refused with a message instead of exhausting the server.

use std::time::Duration;

/// Bounds on what one request may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_series: usize,
    pub max_points: usize,
    /// Wall time one request may take; checked at every fetch and every function call.
    pub max_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series: 100_000,
            max_points: 50_000_000,
            max_time: Duration::from_secs(30),
        }
    }
}
