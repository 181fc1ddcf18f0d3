//! Line protocol parsing speed on one core: MB/s over a seeded corpus of plain and tagged lines.
//!
//! `cargo bench --bench proto_parse`. Lines/s = MB/s divided by the mean line length printed first.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tally_proto::{Decoder, Lines, Parsed};

#[path = "corpus.rs"]
mod corpus;

fn count(lines: Lines<'_>) -> (u64, u64) {
    let (mut ok, mut bad) = (0, 0);
    for r in lines {
        match r {
            Ok(Parsed::Metric(m)) => {
                black_box(&m);
                ok += 1
            }
            Ok(Parsed::Skipped(_)) => {}
            Err(_) => bad += 1,
        }
    }
    (ok, bad)
}

fn parse(c: &mut Criterion) {
    let n = 200_000;
    let mut group = c.benchmark_group("proto_parse");
    for (label, tagged_pct) in [("plain", 0), ("tagged", 100), ("mixed", 50)] {
        let input = corpus::plaintext(n, tagged_pct, 42);
        let (ok, bad) = count(Lines::new(&input));
        assert_eq!((ok, bad), (n as u64, 0), "corpus must parse cleanly");
        eprintln!(
            "{label}: {} lines, {} bytes, {:.1} bytes/line",
            n,
            input.len(),
            input.len() as f64 / n as f64
        );
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("lines/{label}"), |b| {
            b.iter(|| count(Lines::new(black_box(&input))))
        });
        if label == "mixed" {
            // The socket path: 64 KiB reads, lines split across reads.
            group.bench_function("decoder_64k_reads/mixed", |b| {
                b.iter(|| {
                    let mut d = Decoder::default();
                    let mut ok = 0u64;
                    for chunk in input.chunks(64 * 1024) {
                        d.feed(chunk, |r| {
                            ok += u64::from(matches!(r, Ok(Parsed::Metric(_))))
                        });
                    }
                    d.finish(|r| ok += u64::from(matches!(r, Ok(Parsed::Metric(_)))));
                    ok
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
