//! End-to-end tests: the real `tally` binary, real sockets on 127.0.0.1, real RocksDB.

mod proc;
mod store_ingest;
