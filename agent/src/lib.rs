//! The agent that runs on every web host: tails access logs, matches rules, aggregates per interval
//! and ships acknowledged batches to the store (or plaintext to carbon).
//!
//! Not built yet (issue 5). It depends on `tally-proto` only, never on the store.
