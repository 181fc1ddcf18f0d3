//! What one request may cost, whatever its language: the series and points it reads and the wall
//! time it takes. [`crate::Ctx`] counts against these as it fetches, so a request over a wide glob
//! or a long range is refused with a message instead of exhausting the server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
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

/// The points every request in flight holds, against one bound for the whole process: one
/// request is bounded by [`Limits::max_points`], and this bounds the sum, so 256 concurrent
/// renders (the HTTP port's request limit) cannot each take their own share of memory. A
/// request that would take the sum past the bound is refused as the server being busy (503
/// with `Retry-After`), not as the caller's mistake; its points are given back when the request
/// ends. [`crate::Ctx::new`] uses the process's budget ([`Budget::process`]), whose bound
/// `tally store` sets from `query.max_points_in_flight`.
#[derive(Debug)]
pub struct Budget {
    limit: AtomicUsize,
    held: AtomicUsize,
}

/// `query.max_points_in_flight` by default: twice one request's default, about 1.6 GB of
/// points (16 bytes each as they are read).
pub const DEFAULT_MAX_POINTS_IN_FLIGHT: usize = 100_000_000;

impl Budget {
    /// A budget of its own (for tests, or a query node serving several sources).
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
        })
    }

    /// The process's budget, shared by every request and every alert evaluation.
    pub fn process() -> Arc<Budget> {
        static PROCESS: OnceLock<Arc<Budget>> = OnceLock::new();
        PROCESS
            .get_or_init(|| Budget::new(DEFAULT_MAX_POINTS_IN_FLIGHT))
            .clone()
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Points held by the requests in flight.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes `points` if they fit; otherwise takes nothing and says what is held.
    pub(crate) fn take(&self, points: usize) -> Result<(), usize> {
        let limit = self.limit();
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let after = held.saturating_add(points);
                (after <= limit).then_some(after)
            })
            .map(|_| ())
    }

    pub(crate) fn give_back(&self, points: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(points))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_takes_what_fits_and_nothing_else() {
        let b = Budget::new(100);
        assert_eq!(b.take(60), Ok(()));
        assert_eq!(b.take(50), Err(60), "past the bound: nothing taken");
        assert_eq!(b.held(), 60);
        assert_eq!(b.take(40), Ok(()));
        b.give_back(100);
        assert_eq!(b.held(), 0);
        assert_eq!(b.take(usize::MAX), Err(0), "no overflow");
    }
}
