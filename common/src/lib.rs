//! What every part of Tally does the same way, so that it is done once: the clock
//! ([`time`]), configuration files ([`config`]: one strict TOML loader that reports every
//! problem at once, one way to write durations and sizes), bearer tokens and the one guard
//! every HTTP route stands behind ([`auth`]), the counters each program exposes on `/metrics`
//! and ships as its own series ([`metrics`]), and TLS configurations from PEM files, for the
//! store's listeners and every client ([`tls`]).
//!
//! Depends on no other Tally crate; the store, the agent and the query side all use it.

pub mod auth;
pub mod config;
pub mod metrics;
pub mod time;
pub mod tls;

pub use time::unix_now;
