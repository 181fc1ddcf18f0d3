//! End-to-end tests: the real `tally` binary, real sockets on 127.0.0.1, real RocksDB.

mod agent_carbon;
mod agent_model;
mod alert_incidents;
mod alertmanager;
mod alerts;
mod atlas;
mod catcher;
mod cli;
mod compat;
mod compat_stored;
mod crash;
mod crash_agent;
mod crash_store;
mod demo;
mod disk_full;
mod grafana;
mod graphite_cluster;
mod graphite_web;
mod http_front;
mod pki;
mod proc;
mod query_api;
mod statsd_compat;
mod store_ingest;
mod tls;
mod web;
