//! Threshold alerting on the query engine. The wire formats follow `contracts/alerting.md`.
//!
//! - [`config`]: the alerting file (rules and notifiers, TOML);
//! - [`machine`]: one alert instance's states and how an observation moves them (pure);
//! - `observe`: what one evaluation sees of each series, the same live and in a backtest;
//! - [`engine`]: the evaluator, which runs the rules when due and applies what they saw;
//! - [`backtest`]: the same rules replayed over stored history (`tally rules test`);
//! - `state`: what is saved across restarts (instances, silences, outbox);
//! - `payload`: the labels, annotations and documents of every notifier (Alertmanager API v2,
//!   PagerDuty Events v2, webhook, console);
//! - `delivery`: the incidents PagerDuty and webhooks are told of, the outbox with its
//!   backoff, and the Alertmanager re-send loop;
//! - `reconcile`: the state made to fit the file after a reload or a start (rules removed or
//!   relabeled, notifiers reordered);
//! - `snapshot` and `routes`: typed views of the engine and the HTTP API over them;
//! - [`nagios`]: the Nagios plugin's threshold ranges (`tally check`).

pub mod backtest;
pub mod config;
mod delivery;
pub mod engine;
pub mod machine;
pub mod nagios;
mod observe;
mod payload;
mod reconcile;
pub(crate) mod routes;
mod snapshot;
mod state;
#[cfg(test)]
mod test_support;

pub use config::{Alerting, Rule};
pub use engine::Engine;
pub use observe::span;
pub use snapshot::AlertSnapshot;
