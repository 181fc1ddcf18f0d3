//! Render path on one machine: reading 1000 series x 24 h at 10 s from a RocksDB store, and
//! evaluating `sumSeries` and `highestCurrent` over them. Seeded data, flushed twice so a bucket
//! is rewritten by a second flush as on a live store.
//!
//! `cargo bench --bench query_render`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_query::graphite::{evaluate, parse};
use tally_query::Ctx;
use tally_store::{Durability, PointBatch, Store, StoreOptions};

#[path = "corpus.rs"]
mod corpus;

const SERIES: usize = 1000;
const POINTS: i64 = 8640;

fn store(dir: &std::path::Path, end: i64) -> Store {
    let mut opts = StoreOptions::new(dir);
    opts.schemas.default = tally_store::retention::parse_retentions("10s:2d").expect("valid");
    let store = Store::open(opts).expect("open");
    let mut rng = corpus::Rng::new(7);
    let start = end - (POINTS - 1) * 10;
    for half in 0..2 {
        let mut batch = PointBatch::default();
        for p in (half * POINTS / 2)..((half + 1) * POINTS / 2) {
            for s in 0..SERIES {
                let v = (rng.below(5000) as f64) / 1000.0;
                batch.push(
                    &format!("bench.host{}.metric{}", s / 10, s % 10),
                    start + p * 10,
                    v,
                );
            }
            if batch.len() >= 200_000 {
                store.write(&batch, Durability::Buffered).expect("write");
                batch.clear();
            }
        }
        store.write(&batch, Durability::Buffered).expect("write");
        store.flush().expect("flush");
    }
    store
}

/// Reads every series whole; returns the points read.
fn read_all(store: &Store, names: &[String], from: i64, end: i64) -> usize {
    names
        .iter()
        .map(|n| {
            store
                .read(n, from, end, None)
                .expect("read")
                .map_or(0, |s| s.values.len())
        })
        .sum()
}

fn render(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = tally_common::unix_now();
    let end = now - now % 10;
    let store = store(dir.path(), end);
    let from = end - POINTS * 10;
    let mut group = c.benchmark_group("query_render");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SERIES as u64 * POINTS as u64));
    let names = store.expand("bench.*.*").expect("expand");
    assert_eq!(names.len(), SERIES);
    group.bench_function("read_1000x8640", |b| {
        b.iter(|| read_all(&store, &names, from, end))
    });
    let source: Arc<dyn tally_query::Source> = Arc::new(store.clone());
    for (label, target) in [
        ("sumSeries", "sumSeries(bench.*.*)"),
        (
            "highestCurrent",
            "aliasByNode(highestCurrent(bench.*.*, 5), 1)",
        ),
    ] {
        let expr = parse(target).expect("parses");
        group.bench_function(label, |b| {
            b.iter(|| {
                let ctx = Ctx::new(source.clone(), from, end);
                evaluate(&ctx, &expr).expect("evaluates").len()
            })
        });
    }
    // The same read once compaction has rewritten the SST files.
    store.compact().expect("compact");
    group.bench_function("read_1000x8640_compacted", |b| {
        b.iter(|| read_all(&store, &names, from, end))
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
