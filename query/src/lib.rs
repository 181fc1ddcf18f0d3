//! The Graphite-compatible query side of Tally: target expressions, the function library, the
//! graphite-web 1.1.8 HTTP API that Grafana reads, and threshold alert rules.
//!
//! Not built yet (issues 4 and 6). It will depend on `tally-store` through a small read trait.
