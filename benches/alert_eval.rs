//! Alert rule evaluations per second: 10,000 rules over 100,000 series in a RocksDB store
//! (10 minutes at 10 s each), every rule evaluated once per round as the engine does it
//! (query, reduction over the window, state machine; queries spread over the cores). Prints each
//! round and the median. About a hundred rules fire, so notifications are built too.
//!
//! `cargo bench --bench alert_eval` (TALLY_BENCH_RULES / TALLY_BENCH_SERIES to scale).

use std::sync::Arc;
use std::time::Instant;

use tally_query::alert::{Alerting, Engine};
use tally_query::Source;
use tally_store::{Durability, PointBatch, Store, StoreOptions};

fn env(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is expected.
    let rules = env("TALLY_BENCH_RULES", 10_000);
    let series = env("TALLY_BENCH_SERIES", 100_000);
    let per_host = (series / rules).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = StoreOptions::new(dir.path());
    opts.schemas.default = tally_store::retention::parse_retentions("10s:1d").expect("valid");
    let store = Store::open(opts).expect("open");
    let now = tally_common::unix_now() / 10 * 10;
    let loaded = Instant::now();
    let mut batch = PointBatch::default();
    for p in 0..60 {
        for s in 0..series {
            // Host 7, 107, 207...: a spike, so some rules fire.
            let v = if (s / per_host) % 100 == 7 {
                500.0
            } else {
                ((s * 31 + p * 17) % 100) as f64
            };
            batch.push(
                &format!("bench.host{}.metric{}", s / per_host, s % per_host),
                now - 600 + p as i64 * 10,
                v,
            );
        }
        if batch.len() >= 500_000 {
            store.write(&batch, Durability::Buffered).expect("write");
            batch.clear();
        }
    }
    store.write(&batch, Durability::Buffered).expect("write");
    store.flush().expect("flush");
    eprintln!(
        "loaded {series} series x 60 points in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );
    let mut text = String::new();
    for r in 0..rules {
        // Half sum a host's series over the window, half watch one series' average.
        if r % 2 == 0 {
            text.push_str(&format!(
                "[[rule]]\nname = \"host{r}\"\ntarget = \"sumSeries(bench.host{r}.*)\"\nwindow = \"5m\"\nreduce = \"avg\"\nwarn = 700\ncrit = 2000\n"
            ));
        } else {
            text.push_str(&format!(
                "[[rule]]\nname = \"m{r}\"\ntarget = \"bench.host{r}.metric0\"\nwindow = \"2m\"\nreduce = \"max\"\ncrit = 300\n"
            ));
        }
    }
    let cfg = Alerting::parse(&text).expect("rules");
    let source: Arc<dyn Source> = Arc::new(store);
    let engine = Engine::new(source, cfg, None).expect("engine");
    let mut rates = Vec::new();
    for round in 0..5 {
        let t = Instant::now();
        // Every rule is due again a minute later (the default interval is 30 s).
        let n = engine.evaluate_due(now + round * 60);
        let secs = t.elapsed().as_secs_f64();
        let firing = engine
            .alerts(now)
            .iter()
            .filter(|a| a.state == "firing")
            .count();
        eprintln!(
            "round {round}: {n} rules in {secs:.3} s = {:.0} evaluations/s ({firing} firing)",
            n as f64 / secs
        );
        rates.push(n as f64 / secs);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!(
        "alert_eval: {rules} rules over {series} series: median {:.0} rule evaluations per second ({} threads)",
        rates[rates.len() / 2],
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}
