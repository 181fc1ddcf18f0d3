//! What the agent's fuzz targets check, one function per target, shared by the targets under
//! cargo-fuzz (`fuzz_targets/`) and, on every `cargo test`, the replay of the checked-in inputs
//! (`tests/fuzz_corpora.rs` at the workspace root). Nothing here may panic on any input; the
//! asserts are what must hold for every input.
//!
//! Log lines are outside bytes: anyone who can send a request writes one. The access-log parser
//! and the time formats are reached the way the agent reaches them, through the compiled rules.

use std::sync::OnceLock;

use tally_agent::agg::Agg;
use tally_agent::config::{PresetConfig, RuleConfig};
use tally_agent::naming::Naming;
use tally_agent::rules::RuleSet;
use tally_agent::statsd::parse;
use tally_agent::{AgentConfig, Settings};

/// A fixed clock: the checks must not depend on when they run.
const NOW: i64 = 1_800_000_000;

/// Runs `set` over every line of `text` and checks the counts add up: each line is counted
/// once, and a rule counts a line at most once.
fn run(set: &RuleSet, text: &[u8], path_naming: bool) {
    let naming = Naming {
        host: "web1".into(),
        path_prefix: path_naming.then(|| "servers".into()),
    };
    let mut agg = Agg::new(10, 300, 3600, set.shapes().to_vec(), naming);
    let mut m = set.matcher();
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    for line in &lines {
        set.process(&mut m, &mut agg, line, NOW);
    }
    let c = &m.counts;
    assert_eq!(c.lines, lines.len() as u64);
    assert!(c.bad + c.unmatched <= c.lines, "{c:?}");
    assert!(c.matched.iter().all(|&n| n <= c.lines), "{c:?}");
}

/// The presets (`access`, `beacons`, `cdn`) over log lines: the combined / nginx parser, its
/// `key=value` fields, query parameters, numbers and the CLF time. The first byte picks the
/// preset options (naming, where the request time is, its unit, extra beacon fields).
pub fn access_line(data: &[u8]) {
    let Some((&options, text)) = data.split_first() else {
        return;
    };
    static SETS: OnceLock<Vec<RuleSet>> = OnceLock::new();
    let sets = SETS.get_or_init(|| {
        (0..8u8)
            .map(|o| {
                let presets = PresetConfig {
                    request_time_field: if o & 1 == 0 { "rt" } else { "$last" }.into(),
                    request_time_unit: if o & 2 == 0 { "s" } else { "ms" }.into(),
                    beacon_fields: if o & 4 == 0 {
                        Vec::new()
                    } else {
                        vec!["server_identity".into()]
                    },
                    ..PresetConfig::default()
                };
                RuleSet::compile(&presets, &[]).expect("the presets compile")
            })
            .collect()
    });
    run(&sets[usize::from(options & 7)], text, options & 8 != 0);
}

fn rule(name: &str, regex: &str, edit: impl FnOnce(&mut RuleConfig)) -> RuleConfig {
    let mut r = RuleConfig {
        name: name.into(),
        regex: regex.into(),
        ..RuleConfig::default()
    };
    edit(&mut r);
    r
}

/// `[[rule]]`s of every kind, time format and transform, next to the presets.
fn rules() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        let transform = |k: &str, t: &str| [(k.to_string(), t.to_string())].into();
        let rules = [
            rule("r_unix", r"^u (?P<ts>\S+) (?P<k>\S*)", |r| {
                r.time = Some("ts".into());
                r.time_format = "unix".into();
                r.transform = transform("k", "class");
            }),
            rule("r_ms", r"^m (?P<ts>\S+) (?P<v>\S+)", |r| {
                r.time = Some("ts".into());
                r.time_format = "unix_ms".into();
                r.kind = "sum".into();
                r.value = Some("v".into());
            }),
            rule("r_rfc", r"^r (?P<ts>\S+) (?P<v>\S+) (?P<k>.*)$", |r| {
                r.time = Some("ts".into());
                r.time_format = "rfc3339".into();
                r.kind = "gauge".into();
                r.value = Some("v".into());
                r.transform = transform("k", "lower");
                r.max_values = 3;
            }),
            rule("r_local", r"^l (?P<ts>.{19}) (?P<v>\S+)", |r| {
                r.time = Some("ts".into());
                r.time_format = "%Y-%m-%d %H:%M:%S".into();
                r.kind = "latency".into();
                r.unit = "ms".into();
                r.value = Some("v".into());
            }),
            rule("r_zoned", r"^z (?P<ts>.+?) (?P<v>\S+)$", |r| {
                r.time = Some("ts".into());
                r.time_format = "%Y-%m-%dT%H:%M:%S%z".into();
                r.kind = "latency".into();
                r.unit = "us".into();
                r.value = Some("v".into());
                r.percentiles = vec![0.1, 50.0, 100.0];
            }),
            rule("r_clf", r"\[(?P<ts>[^\]]*)\] (?P<v>\S+)", |r| {
                r.time = Some("ts".into());
                r.kind = "latency".into();
                r.unit = "ns".into();
                r.value = Some("v".into());
                r.prefilter = vec!["[".into()];
            }),
            rule("r_now", r"^n (?P<any>.{0,12})", |r| {
                r.prefilter = vec!["n ".into()];
                r.max_values = 2;
            }),
        ];
        RuleSet::compile(&PresetConfig::default(), &rules).expect("the fuzz rules compile")
    })
}

/// Log lines through `[[rule]]`s: regex captures as tags and values, every time format
/// (unix, unix_ms, rfc3339, strftime with and without a zone, CLF), kinds and transforms.
/// The first byte picks the naming.
pub fn rules_line(data: &[u8]) {
    let Some((&options, text)) = data.split_first() else {
        return;
    };
    run(rules(), text, options & 1 != 0);
}

/// statsd datagrams (Etsy's protocol with DogStatsD tags), as the listeners journal them and
/// the reading loop parses them: no panic; every part is a metric or bad with a reason and the
/// part quoted from the line; and a metric, written back, parses to itself.
pub fn statsd_packet(data: &[u8]) {
    parse::lines(data, |line| {
        parse::parse_line(line, |r| match r {
            Ok(m) => {
                assert!(!m.name.is_empty() && m.rate > 0.0 && m.rate.is_finite());
                let mut text = Vec::new();
                parse::encode(&m, &mut text);
                let mut again = Vec::new();
                parse::lines(&text, |l| {
                    parse::parse_line(l, |r| {
                        again.push(r.map(|m| format!("{m:?}")).map_err(|b| b.to_string()))
                    })
                });
                let want = format!("{m:?}");
                // A negative absolute gauge is written as 0 and then the delta: the last metric
                // written back is the one.
                assert!(
                    again.iter().all(Result::is_ok),
                    "{want} came back as {again:?}"
                );
                if !matches!(m.value, parse::Value::Gauge { delta: false, value } if value.is_sign_negative())
                {
                    assert_eq!(again, [Ok(want)]);
                }
            }
            Err(b) => {
                assert!(!b.reason.is_empty());
                assert!(memchr_in(line, b.part), "the bad part is not from the line");
            }
        })
    });
}

fn memchr_in(line: &[u8], part: &[u8]) -> bool {
    part.is_empty() || line.windows(part.len()).any(|w| w == part)
}

/// The agent's config file, as `tally agent --config` reads it: text to [`AgentConfig`], then
/// validated into [`Settings`] (rules compiled, globs, durations, sizes, addresses).
pub fn agent_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let checked = AgentConfig::parse(text).and_then(Settings::try_from);
    if let Err(problems) = checked {
        assert!(!problems.is_empty() && problems.iter().all(|p| !p.is_empty()));
    }
}
