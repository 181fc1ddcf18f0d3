//! Threshold alerting on the query engine: rules in TOML ([`config`]), one state machine per
//! alert instance ([`machine`]), the evaluation loop with persistence and notifiers
//! (Alertmanager API v2, PagerDuty Events v2, webhook, console) ([`engine`]), the HTTP API
//! ([`routes`]) and the Nagios plugin's threshold ranges ([`nagios`]). The wire formats follow
//! `contracts/alerting.md`.

pub mod config;
pub mod engine;
pub mod machine;
pub mod nagios;
pub mod routes;

pub use config::{Alerting, Rule};
pub use engine::{Engine, Observed};
