//! Rules: what a line counts for. Presets for combined / nginx access logs, and `[[rule]]`s with
//! a regex whose named captures become tags.
//!
//! All rules run in one pass per line: one Aho-Corasick scan over every rule's literal
//! prefilters picks the candidate rules, the access-log fields are parsed at most once, and only
//! candidates run their regex.

use aho_corasick::AhoCorasick;
use regex::bytes::{CaptureLocations, Regex};

use crate::access::{self, Access, TimeCache, TimeFormat};
use crate::agg::{Agg, Kind, Obs, RuleShape, SEP};
use crate::config::{PresetConfig, RuleConfig};
use crate::naming::push_sanitized;

/// What a preset rule reads from an access line.
#[derive(Debug, Clone, PartialEq)]
enum Preset {
    /// `requests;vhost;status=5xx`
    Requests,
    /// `bytes;vhost`: the sum of response bytes.
    Bytes,
    /// `latency;vhost;stat`: the request time.
    Latency,
    /// `beacons;source[;extra fields]`
    Beacons { extra: Vec<Vec<u8>> },
    /// `cdn;cdn`: requests by CDN provider.
    Cdn,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    None,
    Class,
    Lower,
}

#[derive(Debug, Clone)]
enum Source {
    Preset(Preset),
    Regex {
        re: Regex,
        /// Capture index of each tag.
        tags: Vec<usize>,
        value: Option<usize>,
        time: Option<(usize, TimeFormat)>,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    source: Source,
    transforms: Vec<Transform>,
    /// Microseconds per unit of a latency value.
    unit_us: f64,
    prefiltered: bool,
}

/// Counters of the matching, for the agent's own metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MatchCounts {
    pub lines: u64,
    pub unmatched: u64,
    /// Lines the presets could not read as an access log line (or whose time did not parse).
    pub bad: u64,
    /// Lines each rule counted.
    pub matched: Vec<u64>,
}

/// The compiled rules.
#[derive(Debug, Default, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    shapes: Vec<RuleShape>,
    prefilter: Option<AhoCorasick>,
    /// The rule of each prefilter pattern.
    pattern_rule: Vec<usize>,
    presets: PresetConfig,
    any_preset: bool,
}

/// Per-thread matching scratch: capture slots, time caches, the candidate mask.
#[derive(Debug)]
pub struct Matcher {
    locs: Vec<CaptureLocations>,
    times: Vec<TimeCache>,
    access_time: TimeCache,
    candidates: Vec<bool>,
    pub counts: MatchCounts,
}

fn unit_us(unit: &str) -> Option<f64> {
    Some(match unit {
        "s" => 1e6,
        "ms" => 1e3,
        "us" => 1.0,
        "ns" => 1e-3,
        _ => return None,
    })
}

fn transform(name: &str) -> Option<Transform> {
    Some(match name {
        "class" => Transform::Class,
        "lower" => Transform::Lower,
        "none" => Transform::None,
        _ => return None,
    })
}

impl RuleSet {
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules as the aggregator sees them, in order.
    pub fn shapes(&self) -> &[RuleShape] {
        &self.shapes
    }

    /// Compiles presets and `[[rule]]`s, reporting every problem.
    pub fn compile(presets: &PresetConfig, rules: &[RuleConfig]) -> Result<RuleSet, Vec<String>> {
        let mut problems = Vec::new();
        let mut set = RuleSet {
            presets: presets.clone(),
            ..RuleSet::default()
        };
        let mut literals: Vec<(String, usize)> = Vec::new();
        let lat_unit = unit_us(&presets.request_time_unit).unwrap_or_else(|| {
            problems.push(format!(
                "presets.request_time_unit: \"{}\" is not one of s, ms, us, ns",
                presets.request_time_unit
            ));
            1e6
        });
        check_percentiles("presets.percentiles", &presets.percentiles, &mut problems);
        for p in &presets.enable {
            let max_values = presets.max_values;
            let add = |set: &mut RuleSet,
                       name: &str,
                       kind: Kind,
                       tags: &[&str],
                       preset: Preset,
                       transforms: Vec<Transform>| {
                set.shapes.push(RuleShape {
                    name: name.into(),
                    kind,
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    max_values,
                });
                set.rules.push(Rule {
                    source: Source::Preset(preset),
                    transforms,
                    unit_us: lat_unit,
                    prefiltered: false,
                });
            };
            match p.as_str() {
                "access" => {
                    add(
                        &mut set,
                        "requests",
                        Kind::Counter,
                        &["vhost", "status"],
                        Preset::Requests,
                        vec![Transform::None, Transform::Class],
                    );
                    add(
                        &mut set,
                        "bytes",
                        Kind::Sum,
                        &["vhost"],
                        Preset::Bytes,
                        vec![Transform::None],
                    );
                    add(
                        &mut set,
                        "latency",
                        Kind::Latency {
                            percentiles: presets.percentiles.clone(),
                            buckets: presets.percentile_buckets,
                        },
                        &["vhost"],
                        Preset::Latency,
                        vec![Transform::None],
                    );
                }
                "beacons" => {
                    let mut tags = vec!["source"];
                    tags.extend(presets.beacon_fields.iter().map(String::as_str));
                    let extra = presets
                        .beacon_fields
                        .iter()
                        .map(|f| f.as_bytes().to_vec())
                        .collect();
                    let n = tags.len();
                    add(
                        &mut set,
                        "beacons",
                        Kind::Counter,
                        &tags,
                        Preset::Beacons { extra },
                        vec![Transform::None; n],
                    );
                    if presets.beacon_path.is_empty() {
                        problems.push("presets.beacon_path: empty".into());
                    }
                    literals.push((presets.beacon_path.clone(), set.rules.len() - 1));
                    if let Some(r) = set.rules.last_mut() {
                        r.prefiltered = true;
                    }
                }
                "cdn" => add(
                    &mut set,
                    "cdn",
                    Kind::Counter,
                    &["cdn"],
                    Preset::Cdn,
                    vec![Transform::None],
                ),
                other => problems.push(format!(
                    "presets.enable: unknown preset \"{other}\" (access, beacons, cdn)"
                )),
            }
        }
        set.any_preset = !set.rules.is_empty();
        for (i, r) in rules.iter().enumerate() {
            let place = format!("rule[{i}] (\"{}\")", r.name);
            match compile_rule(r, &place) {
                Ok((rule, shape)) => {
                    if set.shapes.iter().any(|s| s.name == shape.name) {
                        problems.push(format!(
                            "{place}.name: another rule already writes \"{}\"",
                            shape.name
                        ));
                    }
                    for lit in &r.prefilter {
                        if lit.is_empty() {
                            problems.push(format!(
                                "{place}.prefilter: an empty literal matches everything"
                            ));
                        }
                        literals.push((lit.clone(), set.rules.len()));
                    }
                    set.rules.push(Rule {
                        prefiltered: !r.prefilter.is_empty(),
                        ..rule
                    });
                    set.shapes.push(shape);
                }
                Err(mut ps) => problems.append(&mut ps),
            }
        }
        if !literals.is_empty() {
            match AhoCorasick::new(literals.iter().map(|l| l.0.as_bytes())) {
                Ok(ac) => set.prefilter = Some(ac),
                Err(e) => problems.push(format!("prefilters: {e}")),
            }
            set.pattern_rule = literals.iter().map(|l| l.1).collect();
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(problems)
        }
    }

    /// Fresh scratch for matching.
    pub fn matcher(&self) -> Matcher {
        Matcher {
            locs: self
                .rules
                .iter()
                .map(|r| match &r.source {
                    Source::Regex { re, .. } => re.capture_locations(),
                    Source::Preset(_) => REGEX_NONE.capture_locations(),
                })
                .collect(),
            times: self.rules.iter().map(|_| TimeCache::default()).collect(),
            access_time: TimeCache::default(),
            candidates: vec![false; self.rules.len()],
            counts: MatchCounts {
                matched: vec![0; self.rules.len()],
                ..MatchCounts::default()
            },
        }
    }

    /// Runs every rule over one line (without its newline), adding to `agg`. `now` is the
    /// time of lines whose rule has no time capture.
    pub fn process(&self, m: &mut Matcher, agg: &mut Agg, line: &[u8], now: i64) {
        m.counts.lines += 1;
        for (c, r) in m.candidates.iter_mut().zip(&self.rules) {
            *c = !r.prefiltered;
        }
        if let Some(ac) = &self.prefilter {
            for hit in ac.find_overlapping_iter(line) {
                m.candidates[self.pattern_rule[hit.pattern().as_usize()]] = true;
            }
        }
        let path = agg.naming().is_path();
        let mut access: Option<Option<(Access<'_>, Option<i64>)>> = None;
        // The vhost field, looked up once per line for all the presets that tag by it.
        let mut vhost: Option<Option<&[u8]>> = None;
        let mut any = false;
        let mut bad = false;
        let mut key = agg.take_key();
        for (i, rule) in self.rules.iter().enumerate() {
            if !m.candidates[i] {
                continue;
            }
            key.clear();
            let matched = match &rule.source {
                Source::Preset(p) => {
                    let a = access.get_or_insert_with(|| {
                        access::parse(line).map(|a| {
                            let t = m.access_time.parse(&TimeFormat::Clf, a.time);
                            (a, t)
                        })
                    });
                    match a {
                        Some((a, Some(t))) => self
                            .preset(p, rule, a, &mut vhost, &mut key, path)
                            .map(|obs| (obs, *t)),
                        _ => None,
                    }
                }
                Source::Regex {
                    re,
                    tags,
                    value,
                    time,
                } => {
                    let locs = &mut m.locs[i];
                    if re.captures_read(locs, line).is_none() {
                        continue;
                    }
                    let cap = |idx: usize| locs.get(idx).map_or(&b""[..], |(s, e)| &line[s..e]);
                    for (&idx, tf) in tags.iter().zip(&rule.transforms) {
                        push_tag(&mut key, cap(idx), *tf, path);
                    }
                    let t = match time {
                        Some((idx, fmt)) => m.times[i].parse(fmt, cap(*idx)),
                        None => Some(now),
                    };
                    let obs = match (agg.kind(i), value) {
                        (_, None) => Some(Obs::Count),
                        (Kind::Latency { .. }, Some(v)) => access::number(cap(*v))
                            .map(|x| Obs::Micros((x * rule.unit_us).max(0.0) as u64)),
                        (_, Some(v)) => access::number(cap(*v)).map(Obs::Value),
                    };
                    match (obs, t) {
                        (Some(obs), Some(t)) => Some((obs, t)),
                        _ => {
                            bad = true;
                            None
                        }
                    }
                }
            };
            if let Some((obs, t)) = matched {
                agg.add(i, &key, t, now, obs);
                m.counts.matched[i] += 1;
                any = true;
            }
        }
        agg.give_key(key);
        // A line some rule counted is good; otherwise it is bad if a preset could not read it
        // (or a rule's time or value did not parse), and merely unmatched if not.
        if !any {
            if bad || matches!(access, Some(None) | Some(Some((_, None)))) {
                m.counts.bad += 1;
            } else {
                m.counts.unmatched += 1;
            }
        }
    }

    /// A preset's observation and tags for one access line, or `None` if it does not apply.
    fn preset<'l>(
        &self,
        p: &Preset,
        rule: &Rule,
        a: &Access<'l>,
        vhost_field: &mut Option<Option<&'l [u8]>>,
        key: &mut Vec<u8>,
        path: bool,
    ) -> Option<Obs> {
        let cfg = &self.presets;
        let mut vhost = || {
            vhost_field
                .get_or_insert_with(|| access::field(a.rest, cfg.vhost_field.as_bytes()))
                .unwrap_or(cfg.default_vhost.as_bytes())
        };
        match p {
            Preset::Requests => {
                push_tag(key, vhost(), Transform::None, path);
                let class = [b'0' + (a.status / 100 % 10) as u8, b'x', b'x'];
                push_tag(key, &class, Transform::None, path);
                Some(Obs::Count)
            }
            Preset::Bytes => {
                push_tag(key, vhost(), Transform::None, path);
                Some(Obs::Value(a.bytes.unwrap_or(0) as f64))
            }
            Preset::Latency => {
                let rt = if cfg.request_time_field == "$last" {
                    access::last_field(a.rest)
                } else {
                    access::field(a.rest, cfg.request_time_field.as_bytes())
                }?;
                let v = access::number(rt)?;
                push_tag(key, vhost(), Transform::None, path);
                Some(Obs::Micros((v * rule.unit_us).max(0.0) as u64))
            }
            Preset::Beacons { extra } => {
                let target = a.path;
                let beacon = cfg.beacon_path.as_bytes();
                if !target.starts_with(beacon)
                    || !matches!(target.get(beacon.len()), None | Some(b'?'))
                {
                    return None;
                }
                push_tag(
                    key,
                    access::query_param(target, b"source").unwrap_or(b"unknown"),
                    Transform::None,
                    path,
                );
                for f in extra {
                    push_tag(
                        key,
                        access::query_param(target, f).unwrap_or(b"none"),
                        Transform::None,
                        path,
                    );
                }
                Some(Obs::Count)
            }
            Preset::Cdn => {
                push_tag(
                    key,
                    access::field(a.rest, cfg.cdn_field.as_bytes())?,
                    Transform::None,
                    path,
                );
                Some(Obs::Count)
            }
        }
    }
}

fn push_tag(key: &mut Vec<u8>, v: &[u8], tf: Transform, path: bool) {
    match tf {
        Transform::None => push_sanitized(key, v, path),
        Transform::Class => match v.first() {
            Some(d) if d.is_ascii_digit() => key.extend_from_slice(&[*d, b'x', b'x']),
            _ => push_sanitized(key, v, path),
        },
        Transform::Lower => {
            let start = key.len();
            push_sanitized(key, v, path);
            key[start..].make_ascii_lowercase();
        }
    }
    key.push(SEP);
}

static REGEX_NONE: std::sync::LazyLock<Regex> =
    std::sync::LazyLock::new(|| Regex::new("").expect("empty regex"));

fn check_percentiles(place: &str, ps: &[f64], problems: &mut Vec<String>) {
    for p in ps {
        if !(*p > 0.0 && *p <= 100.0) {
            problems.push(format!("{place}: {p} is not a percentile in (0, 100]"));
        }
    }
}

fn compile_rule(r: &RuleConfig, place: &str) -> Result<(Rule, RuleShape), Vec<String>> {
    let mut problems = Vec::new();
    if r.name.is_empty()
        || tally_proto::series_name::canonicalize(&r.name).is_err()
        || r.name.contains(';')
    {
        problems.push(format!("{place}.name: \"{}\" is not a metric name", r.name));
    }
    let re = match Regex::new(&r.regex) {
        Ok(re) if !r.regex.is_empty() => Some(re),
        Ok(_) => {
            problems.push(format!("{place}.regex: missing"));
            None
        }
        Err(e) => {
            problems.push(format!(
                "{place}.regex: {}",
                e.to_string().replace('\n', " ")
            ));
            None
        }
    };
    let kind = match r.kind.as_str() {
        "counter" => Kind::Counter,
        "sum" => Kind::Sum,
        "gauge" => Kind::Gauge,
        "latency" => Kind::Latency {
            percentiles: r.percentiles.clone(),
            buckets: r.percentile_buckets,
        },
        other => {
            problems.push(format!(
                "{place}.kind: \"{other}\" is not counter, sum, gauge or latency"
            ));
            Kind::Counter
        }
    };
    check_percentiles(
        &format!("{place}.percentiles"),
        &r.percentiles,
        &mut problems,
    );
    let unit = unit_us(&r.unit).unwrap_or_else(|| {
        problems.push(format!(
            "{place}.unit: \"{}\" is not one of s, ms, us, ns",
            r.unit
        ));
        1e6
    });
    if kind != Kind::Counter && r.value.is_none() {
        problems.push(format!(
            "{place}.value: a {} rule needs the capture holding its number",
            r.kind
        ));
    }
    let time_format = TimeFormat::new(&r.time_format);
    if r.time.is_some() {
        if let Err(e) = time_format.validate() {
            problems.push(format!("{place}.time_format: {e}"));
        }
    }
    if r.max_values == 0 {
        problems.push(format!("{place}.max_values: at least 1"));
    }
    let Some(re) = re else { return Err(problems) };
    let index = |name: &str, what: &str, problems: &mut Vec<String>| -> usize {
        re.capture_names()
            .position(|n| n == Some(name))
            .unwrap_or_else(|| {
                problems.push(format!(
                    "{place}.{what}: the regex has no capture named \"{name}\""
                ));
                0
            })
    };
    let value = r.value.as_deref().map(|v| index(v, "value", &mut problems));
    let time = r
        .time
        .as_deref()
        .map(|t| (index(t, "time", &mut problems), time_format));
    let tag_names: Vec<String> = match &r.tags {
        Some(t) => t.clone(),
        None => re
            .capture_names()
            .flatten()
            .filter(|n| Some(*n) != r.value.as_deref() && Some(*n) != r.time.as_deref())
            .map(str::to_string)
            .collect(),
    };
    let tags: Vec<usize> = tag_names
        .iter()
        .map(|t| index(t, "tags", &mut problems))
        .collect();
    for t in &tag_names {
        let latency = matches!(kind, Kind::Latency { .. });
        if t == "host" || t == "name" || (latency && (t == "stat" || t == "percentile")) {
            problems.push(format!(
                "{place}.tags: \"{t}\" is set by the agent itself; rename the capture"
            ));
        }
    }
    let mut transforms = vec![Transform::None; tag_names.len()];
    for (tag, tf) in &r.transform {
        match (tag_names.iter().position(|t| t == tag), transform(tf)) {
            (Some(i), Some(tf)) => transforms[i] = tf,
            (None, _) => problems.push(format!(
                "{place}.transform: \"{tag}\" is not one of its tags"
            )),
            (_, None) => problems.push(format!(
                "{place}.transform.{tag}: \"{tf}\" is not class, lower or none"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((
        Rule {
            source: Source::Regex {
                re,
                tags,
                value,
                time,
            },
            transforms,
            unit_us: unit,
            prefiltered: false,
        },
        RuleShape {
            name: r.name.clone(),
            kind,
            tags: tag_names,
            max_values: r.max_values,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::Point;
    use crate::naming::Naming;

    fn run(
        presets: PresetConfig,
        rules: &[RuleConfig],
        lines: &[&str],
    ) -> (Vec<(String, f64, i64)>, MatchCounts) {
        let set = RuleSet::compile(&presets, rules).expect("compiles");
        let mut agg = Agg::new(
            10,
            60,
            0,
            set.shapes().to_vec(),
            Naming {
                host: "h".into(),
                path_prefix: None,
            },
        );
        let mut m = set.matcher();
        for l in lines {
            set.process(&mut m, &mut agg, l.as_bytes(), 1_704_067_200);
        }
        agg.advance(1_704_067_300);
        let mut out: Vec<Point> = Vec::new();
        agg.emit(&mut out);
        let mut got: Vec<_> = out.into_iter().map(|p| (p.name, p.value, p.time)).collect();
        got.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
        (got, m.counts)
    }

    const T0: i64 = 1_704_067_200;

    #[test]
    fn presets_count_requests_beacons_cdn_bytes_and_latency() {
        let lines = [
            r#"1.1.1.1 - - [01/Jan/2024:00:00:01 +0000] "GET /a HTTP/1.1" 200 100 "-" "ua" vhost=www cdn=fastly rt=0.010"#,
            r#"1.1.1.1 - - [01/Jan/2024:00:00:02 +0000] "GET /b HTTP/1.1" 503 50 "-" "ua" vhost=www cdn=akamai rt=0.500"#,
            r#"1.1.1.1 - - [01/Jan/2024:00:00:12 +0000] "GET /status/images/beacon.gif?source=cdn_fastly&server_identity=c1 HTTP/1.1" 200 43 "-" "ua" vhost=www cdn=fastly rt=0.001"#,
            r#"1.1.1.1 - - [01/Jan/2024:00:00:13 +0000] "GET /status/images/beacon.gifx HTTP/1.1" 404 0 "-" "ua" vhost=api cdn=fastly rt=0.001"#,
            r#"junk"#,
        ];
        let presets = PresetConfig {
            beacon_fields: vec!["server_identity".into()],
            ..PresetConfig::default()
        };
        let (got, counts) = run(presets, &[], &lines);
        let get = |n: &str, t: i64| got.iter().find(|p| p.0 == n && p.2 == t).map(|p| p.1);
        assert_eq!(get("requests;host=h;status=2xx;vhost=www", T0), Some(1.0));
        assert_eq!(get("requests;host=h;status=5xx;vhost=www", T0), Some(1.0));
        assert_eq!(
            get("requests;host=h;status=4xx;vhost=api", T0 + 10),
            Some(1.0)
        );
        assert_eq!(
            get(
                "beacons;host=h;server_identity=c1;source=cdn_fastly",
                T0 + 10
            ),
            Some(1.0)
        );
        assert_eq!(
            got.iter().filter(|p| p.0.starts_with("beacons")).count(),
            1,
            "{got:?}"
        );
        assert_eq!(get("bytes;host=h;vhost=www", T0), Some(150.0));
        assert_eq!(get("cdn;cdn=akamai;host=h", T0), Some(1.0));
        assert_eq!(get("latency;host=h;stat=count;vhost=www", T0), Some(2.0));
        assert_eq!(get("latency;host=h;stat=max;vhost=www", T0), Some(0.5));
        assert_eq!((counts.lines, counts.bad, counts.unmatched), (5, 1, 0));
    }

    /// `percentile_buckets` on the presets (and on a latency rule) adds the request time's
    /// bucket counters; a latency rule may not capture a `percentile` tag of its own.
    #[test]
    fn percentile_buckets_from_the_presets_and_a_latency_rule() {
        let lines = [
            r#"1.1.1.1 - - [01/Jan/2024:00:00:01 +0000] "GET /a HTTP/1.1" 200 100 "-" "ua" vhost=www cdn=fastly rt=0.010"#,
            r#"1.1.1.1 - - [01/Jan/2024:00:00:02 +0000] "GET /b HTTP/1.1" 200 50 "-" "ua" vhost=www cdn=akamai rt=0.010"#,
        ];
        let presets = PresetConfig {
            percentile_buckets: true,
            ..PresetConfig::default()
        };
        let (got, _) = run(presets, &[], &lines);
        let bucket = format!(
            "latency;host=h;percentile=T{:04X};stat=percentile;vhost=www",
            crate::statsd::buckets::index(10_000_000)
        );
        let buckets: Vec<_> = got.iter().filter(|p| p.0.contains("percentile=")).collect();
        assert_eq!(buckets, [&(bucket, 2.0, T0)], "{got:?}");
        let (plain, _) = run(PresetConfig::default(), &[], &lines);
        assert!(plain.iter().all(|p| !p.0.contains("percentile=")));
        let rule = RuleConfig {
            name: "checkout".into(),
            regex: r"(?P<percentile>\d+) (?P<ms>\d+)".into(),
            kind: "latency".into(),
            value: Some("ms".into()),
            unit: "ms".into(),
            percentile_buckets: true,
            ..RuleConfig::default()
        };
        let problems = RuleSet::compile(&PresetConfig::default(), &[rule]).expect_err("refused");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("\"percentile\" is set by the agent itself")),
            "{problems:?}"
        );
    }

    #[test]
    fn regex_rule_with_time_capture_value_transform_and_prefilter() {
        let rule = RuleConfig {
            name: "checkout".into(),
            regex: r"^(?P<ts>\S+) (?P<status>\d{3}) (?P<ms>\d+)ms (?P<shop>\w+)".into(),
            prefilter: vec![" 5".into(), " 2".into()],
            kind: "latency".into(),
            value: Some("ms".into()),
            unit: "ms".into(),
            time: Some("ts".into()),
            time_format: "unix".into(),
            transform: [
                ("status".to_string(), "class".to_string()),
                ("shop".to_string(), "lower".to_string()),
            ]
            .into(),
            ..RuleConfig::default()
        };
        let lines = [
            format!("{} 503 250ms ShopA", T0 + 1),
            format!("{} 200 50ms shopa", T0 + 15),
            format!("{} 404 40ms shopa", T0 + 15), // no prefilter literal: never reaches the regex
            "x 200 1ms a".to_string(),             // the time does not parse: bad
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let presets = PresetConfig {
            enable: vec![],
            ..PresetConfig::default()
        };
        let (got, counts) = run(presets, &[rule], &lines);
        let get = |n: &str, t: i64| got.iter().find(|p| p.0 == n && p.2 == t).map(|p| p.1);
        assert_eq!(
            get("checkout;host=h;shop=shopa;stat=max;status=5xx", T0),
            Some(0.25)
        );
        assert_eq!(
            get("checkout;host=h;shop=shopa;stat=count;status=2xx", T0 + 10),
            Some(1.0)
        );
        assert_eq!(
            (
                counts.lines,
                counts.bad,
                counts.unmatched,
                counts.matched.clone()
            ),
            (4, 1, 1, vec![2])
        );
    }

    #[test]
    fn gauge_keeps_the_last_value_and_nginx_request_time_is_the_last_field() {
        let gauge = RuleConfig {
            name: "queue".into(),
            regex: r"^(?P<ts>\d+) queue=(?P<q>\w+) depth=(?P<depth>\d+)".into(),
            kind: "gauge".into(),
            value: Some("depth".into()),
            time: Some("ts".into()),
            time_format: "unix".into(),
            ..RuleConfig::default()
        };
        let presets = PresetConfig {
            enable: vec!["access".into()],
            request_time_field: "$last".into(),
            ..PresetConfig::default()
        };
        let lines = [
            format!("{} queue=mail depth=7", T0 + 1),
            format!("{} queue=mail depth=3", T0 + 2),
            r#"1.1.1.1 - - [01/Jan/2024:00:00:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" 0.250"#
                .to_string(),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (got, counts) = run(presets, &[gauge], &lines);
        let get = |n: &str| got.iter().find(|p| p.0 == n).map(|p| p.1);
        assert_eq!(get("queue;host=h;q=mail"), Some(3.0));
        assert_eq!(get("latency;host=h;stat=max;vhost=default"), Some(0.25));
        // The gauge lines are not access lines, but a rule counted them: not bad.
        assert_eq!((counts.bad, counts.unmatched), (0, 0));
    }

    proptest::proptest! {
        /// Arbitrary bytes, and generated access lines with arbitrary bytes spliced in, through
        /// every preset and a rule with a time capture: nothing panics, every line is counted
        /// as matched, unmatched or bad.
        #[test]
        fn any_line_is_processed_without_panicking(
            junk in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 1..20),
            splice in 0usize..300,
            now in proptest::prelude::any::<i64>(),
        ) {
            let rule = RuleConfig {
                name: "t".into(),
                regex: r"^(?P<ts>\S+) (?P<v>\S+)".into(),
                kind: "latency".into(),
                value: Some("v".into()),
                time: Some("ts".into()),
                time_format: "unix".into(),
                ..RuleConfig::default()
            };
            let set = RuleSet::compile(&PresetConfig::default(), &[rule]).expect("compiles");
            let mut agg = Agg::new(10, 60, 3600, set.shapes().to_vec(), Naming { host: "h".into(), path_prefix: None });
            let mut m = set.matcher();
            let now = now / 2;
            let mut g = crate::gen::Gen::new(1, 1_790_000_000, 10);
            let mut truth = crate::gen::Truth::default();
            for j in &junk {
                let mut line = Vec::new();
                g.line(&mut line, &mut truth);
                line.pop();
                let at = splice.min(line.len());
                line.splice(at..at, j.iter().copied());
                set.process(&mut m, &mut agg, &line, now);
                set.process(&mut m, &mut agg, j, now);
            }
            agg.advance(now);
            let mut out = Vec::new();
            agg.emit(&mut out);
            let c = &m.counts;
            proptest::prop_assert_eq!(c.lines, 2 * junk.len() as u64);
            let matched_lines = c.lines - c.bad - c.unmatched;
            proptest::prop_assert!(matched_lines <= c.lines);
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let presets = PresetConfig {
            enable: vec!["nope".into()],
            request_time_unit: "min".into(),
            ..PresetConfig::default()
        };
        let bad = RuleConfig {
            name: "x".into(),
            regex: "(?P<a>".into(),
            kind: "histo".into(),
            ..RuleConfig::default()
        };
        let bad2 = RuleConfig {
            name: "y".into(),
            regex: "(?P<a>.)".into(),
            kind: "gauge".into(),
            time: Some("t".into()),
            ..RuleConfig::default()
        };
        let err = RuleSet::compile(&presets, &[bad, bad2]).expect_err("invalid");
        let all = err.join("\n");
        for want in [
            "unknown preset \"nope\"",
            "request_time_unit",
            "rule[0] (\"x\").regex",
            "\"histo\"",
            "rule[1] (\"y\").value",
            "no capture named \"t\"",
        ] {
            assert!(all.contains(want), "{want} missing from:\n{all}");
        }
    }
}
