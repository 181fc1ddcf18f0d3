//! PNG rendering (`/render` with no format): a 10-series, 24 h graph at 60 s (1,440 points a
//! series), 800x400, legend and axes on, as graphite-web's LineGraph draws it. Seeded random
//! walks; the series are made once and cloned into each render (rendering consolidates them).
//! Goal (issue 12): at most 30 ms a graph.
//!
//! `cargo bench --bench graph_png`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_query::graphite::render_png;
use tally_query::TimeSeries;

#[path = "corpus.rs"]
mod corpus;

fn series() -> Vec<TimeSeries> {
    let mut rng = corpus::Rng::new(12);
    let start = 1_700_000_000;
    (0..10)
        .map(|i| {
            let mut v = 50.0;
            let values = (0..1440)
                .map(|_| {
                    v += (rng.below(2001) as f64 - 1000.0) / 500.0;
                    Some(v)
                })
                .collect();
            TimeSeries::new(format!("bench.host{i}.requests"), start, 60, values)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = series();
    let params = [
        ("width", "800"),
        ("height", "400"),
        ("title", "requests"),
        ("tz", "UTC"),
    ];
    let png = render_png(data.clone(), params).expect("renders");
    assert!(png.starts_with(b"\x89PNG"));
    let mut g = c.benchmark_group("graph_png");
    g.throughput(Throughput::Elements(10 * 1440));
    g.bench_function("10_series_24h_800x400", |b| {
        b.iter(|| render_png(data.clone(), params).expect("renders"))
    });
    // What of that is the PNG encoding alone (the decoded graph, encoded again).
    let pixmap = tiny_skia::Pixmap::decode_png(&png).expect("decodes");
    g.bench_function("encode_only_800x400", |b| {
        b.iter(|| pixmap.encode_png().expect("encodes"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
