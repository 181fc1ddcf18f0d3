//! PNG rendering (`/render` with no format): a 10-series, 24 h graph at 60 s (1,440 points a
//! series), 800x400, legend and axes on, as graphite-web's LineGraph draws it. Seeded random
//! walks; the series are made once and cloned into each render (rendering consolidates them).
//! Goal (issue 12): at most 30 ms a graph.
//!
//! The same graph through Atlas's graph API (issue 13: a 10-line PNG at most 30 ms):
//! `name,bench,:eq,(,host,),:by` over the same 10 series held in memory, 800x400, the whole
//! request (parse, evaluate, draw, encode) through the router.
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
    atlas(&mut g, &data);
    g.finish();
}

fn atlas(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    data: &[TimeSeries],
) {
    use tower::ServiceExt;
    let mut mem = tally_query::MemSource::default();
    // On the step's grid, as a store keeps points.
    let start = data[0].start - data[0].start.rem_euclid(60);
    for (i, s) in data.iter().enumerate() {
        mem.add(&format!("bench;host=host{i}"), start, 60, s.raw().to_vec());
    }
    let app = tally_query::router(std::sync::Arc::new(mem));
    let end = start + 1440 * 60;
    let uri = format!(
        "/api/v1/graph?q=name,bench,:eq,(,host,),:by&s={start}&e={end}&step=60s&w=800&h=400&tz=UTC&title=requests"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let call = || {
        rt.block_on(async {
            let r = app
                .clone()
                .oneshot(
                    axum::http::Request::get(uri.as_str())
                        .body(axum::body::Body::empty())
                        .expect("request"),
                )
                .await
                .expect("answer");
            assert_eq!(r.status(), 200);
            axum::body::to_bytes(r.into_body(), 1 << 26)
                .await
                .expect("body")
        })
    };
    let png = call();
    assert!(png.starts_with(b"\x89PNG"), "an Atlas PNG");
    let img = tiny_skia::Pixmap::decode_png(&png).expect("decodes");
    // Atlas's layout: the 800-pixel canvas, a value axis (64) and right padding (24); the
    // title, time axis and ten legend entries with stats below a 400-pixel canvas.
    assert_eq!(img.width(), 800 + 64 + 24);
    assert_eq!(img.height(), 20 + 5 + 400 + 24 + 5 + 5 + 10 * 61 + 15 + 14);
    // The lines are drawn (coloured pixels, not only the white, black and grey of the frame).
    let coloured = img
        .pixels()
        .iter()
        .filter(|p| p.red().abs_diff(p.green()) > 40 || p.green().abs_diff(p.blue()) > 40)
        .count();
    std::fs::write(std::env::temp_dir().join("tally-bench-atlas.png"), &png).expect("write");
    assert!(
        coloured > 5_000,
        "{coloured} coloured pixels: no lines drawn?"
    );
    g.bench_function("atlas_10_lines_24h_800x400", |b| b.iter(call));
}

criterion_group!(benches, bench);
criterion_main!(benches);
