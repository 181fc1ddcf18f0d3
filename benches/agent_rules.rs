//! The agent's per-line work on one core, without I/O: the presets (access, beacons, cdn) over
//! generated access-log lines, and the same with one regex rule added, in lines per second.
//!
//! `cargo bench --bench agent_rules`. The end-to-end figure against mtail (file reading,
//! checkpoint and spool included) is `benches/agent_compare.py`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_agent::agg::Agg;
use tally_agent::config::{PresetConfig, RuleConfig};
use tally_agent::gen::{Gen, Truth};
use tally_agent::naming::Naming;
use tally_agent::rules::RuleSet;

fn lines(n: usize) -> Vec<u8> {
    let mut g = Gen::new(42, 1_790_000_000, 1000);
    let mut truth = Truth::default();
    let mut out = Vec::new();
    for _ in 0..n {
        g.line(&mut out, &mut truth);
    }
    out
}

fn run(set: &RuleSet, input: &[u8]) -> u64 {
    let mut agg = Agg::new(
        10,
        300,
        3600,
        set.shapes().to_vec(),
        Naming {
            host: "web1".into(),
            path_prefix: None,
        },
    );
    let mut m = set.matcher();
    for l in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        set.process(&mut m, &mut agg, l, 1_790_000_000);
    }
    m.counts.lines
}

fn rules(c: &mut Criterion) {
    let n = 100_000;
    let input = lines(n);
    let mut group = c.benchmark_group("agent_rules");
    group.throughput(Throughput::Elements(n as u64));
    let presets = RuleSet::compile(&PresetConfig::default(), &[]).expect("presets");
    assert_eq!(run(&presets, &input), n as u64);
    group.bench_function("presets", |b| b.iter(|| run(&presets, &input)));
    let custom = RuleConfig {
        name: "checkout".into(),
        regex: r#""(?P<method>POST) /checkout[^"]*" (?P<status>\d{3})"#.into(),
        prefilter: vec!["POST /checkout".into()],
        transform: [("status".to_string(), "class".to_string())].into(),
        ..RuleConfig::default()
    };
    let with_regex = RuleSet::compile(&PresetConfig::default(), &[custom]).expect("rules");
    group.bench_function("presets+regex_rule", |b| {
        b.iter(|| run(&with_regex, &input))
    });
    let unfiltered = RuleConfig {
        name: "by_method".into(),
        regex: r#"\] "(?P<method>[A-Z]+) "#.into(),
        ..RuleConfig::default()
    };
    let every_line = RuleSet::compile(&PresetConfig::default(), &[unfiltered]).expect("rules");
    group.bench_function("presets+regex_on_every_line", |b| {
        b.iter(|| run(&every_line, &input))
    });
    group.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
