//! Answers that are missing a store's share: a query node ([`crate::federate`]) whose store did
//! not answer in time answers with what the others sent, and says so. Never silently: every
//! such answer carries the `X-Tally-Partial` header naming the stores, is counted, and is
//! logged; an alert evaluation that saw one is an evaluation error, not "no data".
//!
//! A request's work runs on one blocking thread (the routes' `blocking` helpers, one alert
//! evaluation); [`collect`] gives that thread a scope the source marks into. Threads a request
//! fans out to carry the scope with them ([`current`] and [`enter`]), as `fetch` does.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The response header naming the stores an answer lacks.
pub const HEADER: &str = "x-tally-partial";

/// The stores one request did not hear from.
pub type Scope = Arc<Mutex<BTreeSet<String>>>;

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `f` with a fresh scope on this thread; returns its result and the stores it missed.
pub fn collect<T>(f: impl FnOnce() -> T) -> (T, BTreeSet<String>) {
    let scope = Scope::default();
    let out = enter(Some(scope.clone()), f);
    let missed = std::mem::take(&mut *scope.lock().unwrap_or_else(|p| p.into_inner()));
    (out, missed)
}

/// This thread's scope, to hand to a thread the request fans out to.
pub fn current() -> Option<Scope> {
    SCOPE.with(|s| s.borrow().clone())
}

/// Runs `f` inside `scope` (the one [`current`] returned on the request's thread).
pub fn enter<T>(scope: Option<Scope>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Scope>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = self.0.take();
            SCOPE.with(|s| *s.borrow_mut() = old);
        }
    }
    let old = SCOPE.with(|s| s.replace(scope));
    let _restore = Restore(old);
    f()
}

/// Records that `store` did not answer for this thread's request. Returns false when no scope
/// is installed (the caller still counts and logs it).
pub fn mark(store: &str) -> bool {
    SCOPE.with(|s| match &*s.borrow() {
        Some(scope) => {
            scope
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(store.to_owned());
            true
        }
        None => false,
    })
}

/// The header's value: the stores, comma-separated.
pub fn header_value(missed: &BTreeSet<String>) -> String {
    missed.iter().cloned().collect::<Vec<_>>().join(",")
}

/// A route's answer, with the header when it lacks some stores' share (an error too: what it
/// says may come from the stores that answered).
pub(crate) fn marked(
    r: Result<axum::response::Response, crate::api_error::ApiError>,
    missed: &BTreeSet<String>,
) -> Result<axum::response::Response, crate::api_error::ApiError> {
    use axum::response::IntoResponse;
    if missed.is_empty() {
        return r;
    }
    let mut resp = match r {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    if let Ok(v) = axum::http::HeaderValue::from_str(&header_value(missed)) {
        resp.headers_mut().insert(HEADER, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_reach_the_requests_scope_across_threads_and_nowhere_else() {
        assert!(!mark("nobody-listens"), "no scope, no record");
        let ((), missed) = collect(|| {
            mark("a:1");
            let scope = current();
            std::thread::scope(|s| {
                s.spawn(|| enter(scope, || mark("b:2")));
            });
            let ((), inner) = collect(|| {
                mark("c:3");
            });
            assert_eq!(inner.into_iter().collect::<Vec<_>>(), ["c:3"]);
        });
        assert_eq!(missed.into_iter().collect::<Vec<_>>(), ["a:1", "b:2"]);
        assert!(current().is_none(), "the scope ends with collect");
    }
}
