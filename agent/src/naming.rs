//! Series naming: what the series the agent writes are called, decided in one place.
//!
//! Every name the agent ships is built here, the rules' series and the agent's own counters
//! alike, in one of two forms (`naming` in the config):
//!
//! - **tags** (the default): carbon 1.1 tagged names in canonical form (tags sorted), with the
//!   `host` tag: `requests;host=web1;status=2xx;vhost=www`, `tally.agent.lines_read;host=web1`.
//! - **path**: plain Graphite paths, `prefix.host.metric.value1.value2[.stat]`, the tag values in
//!   the rule's tag order and the host's dots written as `_`:
//!   `servers.web1_example_com.requests.www.2xx`, `servers.web1.tally_agent.lines_read`.
//!
//! Tag values come from log lines. `push_sanitized` makes a value safe before it becomes part
//! of a series key (and then of a name): no bytes at or below space, no `;`, no DEL or non-ASCII,
//! no leading `~`, never empty, and in the path form no `.` or `/` either, so one value is one
//! path node.

use tally_proto::series_name::tagged_name;

use crate::agg::RuleShape;

/// How emitted series are named: the host and the form.
#[derive(Debug, Clone)]
pub struct Naming {
    /// The `host` tag, or the path node after the prefix.
    pub host: String,
    /// `Some(prefix)`: plain Graphite paths `prefix.host.rule.v1.v2`; an empty prefix is left
    /// out. `None`: tagged names.
    pub path_prefix: Option<String>,
}

impl Naming {
    /// Whether names are plain paths (tag values are then sanitized as path nodes too).
    pub(crate) fn is_path(&self) -> bool {
        self.path_prefix.is_some()
    }

    /// The name of one series of a rule: `values` are its tag values (sanitized), in the rule's
    /// tag order; `stat` is the statistic of a latency rule (`count`, `p99`, `max`). A name that
    /// cannot be built (a value the store would refuse) falls back to the rule's name.
    pub(crate) fn rule_series(
        &self,
        rule: &RuleShape,
        values: &[String],
        stat: Option<&str>,
    ) -> String {
        self.rule_name(rule, values, stat.map(|s| ("stat", s)).as_slice())
    }

    /// The name of one percentile bucket counter of a latency rule's series: its tags and
    /// `percentile=<bucket>;stat=percentile`, as the statsd timers' buckets are named.
    pub(crate) fn rule_bucket_series(
        &self,
        rule: &RuleShape,
        values: &[String],
        bucket: &str,
    ) -> String {
        self.rule_name(
            rule,
            values,
            &[("percentile", bucket), ("stat", "percentile")],
        )
    }

    /// A rule's series name: its tags (`values` in the rule's tag order) and `extra`.
    fn rule_name(&self, rule: &RuleShape, values: &[String], extra: &[(&str, &str)]) -> String {
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(values.len() + extra.len());
        tags.extend(
            rule.tags
                .iter()
                .map(String::as_str)
                .zip(values.iter().map(String::as_str)),
        );
        tags.extend_from_slice(extra);
        self.name(&rule.name, &rule.name, &tags)
            .unwrap_or_else(|| rule.name.clone())
    }

    /// The name of one of the agent's own counters: `tally.agent.<metric>;host=...` or
    /// `prefix.host.tally_agent.<metric>`; `label` is its one label (`rule` of the per-rule
    /// `lines_matched`, `store` of the per-store counters: a store's URL without its scheme,
    /// sanitized as a tag value or path node). A name that cannot be built is empty.
    pub(crate) fn agent_series(&self, metric: &str, label: Option<(&str, &str)>) -> String {
        let mut store = Vec::new();
        let tags: Vec<(&str, &str)> = match label {
            Some(("store", url)) => {
                let url = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"))
                    .unwrap_or(url);
                push_sanitized(&mut store, url.as_bytes(), self.is_path());
                vec![("store", std::str::from_utf8(&store).unwrap_or("none"))]
            }
            other => other.into_iter().collect(),
        };
        self.name(
            &format!("tally_agent.{metric}"),
            &format!("tally.agent.{metric}"),
            &tags,
        )
        .unwrap_or_default()
    }

    /// `path_metric` is the metric's node(s) in the path form, `tagged_metric` its name in the
    /// tagged form; `tags` come after `host`, in order (the path form keeps only their values).
    fn name(
        &self,
        path_metric: &str,
        tagged_metric: &str,
        tags: &[(&str, &str)],
    ) -> Option<String> {
        match &self.path_prefix {
            Some(prefix) => {
                let mut n = String::new();
                if !prefix.is_empty() {
                    n.push_str(prefix);
                    n.push('.');
                }
                n.push_str(&self.host.replace('.', "_"));
                n.push('.');
                n.push_str(path_metric);
                for (_, v) in tags {
                    n.push('.');
                    n.push_str(v);
                }
                Some(n)
            }
            None => {
                let mut all: Vec<(&str, &str)> = Vec::with_capacity(tags.len() + 1);
                all.push(("host", &self.host));
                all.extend_from_slice(tags);
                tagged_name(tagged_metric, &all).ok()
            }
        }
    }
}

/// What [`push_sanitized`] makes of each byte, in a tag value (`[0]`) and in a path node
/// (`[1]`, which also has no `.` or `/`): printable ASCII but `;` is kept, the rest is `_`.
static SANITIZED: [[u8; 256]; 2] = {
    let mut t = [[b'_'; 256]; 2];
    let mut b = 0x21;
    while b < 0x7f {
        if b != b';' as usize {
            t[0][b] = b as u8;
            if b != b'.' as usize && b != b'/' as usize {
                t[1][b] = b as u8;
            }
        }
        b += 1;
    }
    t
};

/// Appends `v` to a series key, made safe as a tag value (and as a path node with `path`); at
/// most 200 bytes of it are kept, and an empty value becomes `none`.
pub(crate) fn push_sanitized(out: &mut Vec<u8>, v: &[u8], path: bool) {
    let start = out.len();
    // One `extend` of the bytes mapped through a table: reserved once, no capacity check or
    // branch a byte (a push a byte after four comparisons was an eighth of the agent's time
    // over a combined log).
    let v = &v[..v.len().min(200)];
    let table = &SANITIZED[usize::from(path)];
    out.extend(v.iter().map(|&b| table[usize::from(b)]));
    if out.len() == start {
        out.extend_from_slice(b"none");
    } else if out[start] == b'~' {
        out[start] = b'_';
    }
}

/// Which statsd namespace a series is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatsdType {
    Counter,
    Gauge,
    Timer,
    /// A timer's percentile bucket counter (`stat` is its bucket, `T0042`).
    Bucket,
    Set,
}

/// How the statsd series are named (`[statsd] naming`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsdNaming {
    /// Tally's tagged names: `<name>;host=web1;<packet tags>;stat=<stat>`; gauges and sets
    /// carry no `stat`, bucket counters `stat=percentile;percentile=T0042`.
    Tags { host: String },
    /// Etsy statsd's graphite backend (`backends/graphite.js`): with `legacy`,
    /// `stats.<name>` (counter rate), `stats_counts.<name>`, `stats.timers.<name>.<stat>`,
    /// `stats.gauges.<name>`, `stats.sets.<name>.count`; without, `<global>.<counter>.<name>.rate`
    /// and `.count`, `<global>.<timer>.<name>.<stat>`, `<global>.<gauge>.<name>`,
    /// `<global>.<set>.<name>.count` (an empty prefix is left out). Packet tags follow as
    /// `;k=v`, as Etsy writes them.
    Etsy {
        legacy: bool,
        global: String,
        counter: String,
        timer: String,
        gauge: String,
        set: String,
    },
}

impl StatsdNaming {
    pub(crate) fn is_etsy(&self) -> bool {
        matches!(self, StatsdNaming::Etsy { .. })
    }

    pub(crate) fn tags(host: &str) -> StatsdNaming {
        StatsdNaming::Tags {
            host: host.to_string(),
        }
    }

    /// The name of one statistic of a statsd series. `name` is its sanitized name, `tags` its
    /// tags as `k=v;k2=v2` (sorted; may be empty). `None` for a name the store would refuse.
    pub(crate) fn name(
        &self,
        ty: StatsdType,
        name: &str,
        tags: &str,
        stat: Option<&str>,
    ) -> Option<String> {
        let parsed = || {
            tags.split(';')
                .filter_map(|t| t.split_once('='))
                .collect::<Vec<(&str, &str)>>()
        };
        match self {
            StatsdNaming::Tags { host } => {
                let mut all = parsed();
                all.push(("host", host));
                match (ty, stat) {
                    (StatsdType::Bucket, Some(b)) => {
                        all.push(("percentile", b));
                        all.push(("stat", "percentile"));
                    }
                    (StatsdType::Gauge | StatsdType::Set, _) => {}
                    (_, Some(s)) => all.push(("stat", s)),
                    (_, None) => {}
                }
                tagged_name(name, &all).ok()
            }
            StatsdNaming::Etsy {
                legacy,
                global,
                counter,
                timer,
                gauge,
                set,
            } => {
                let mut n = String::with_capacity(name.len() + tags.len() + 32);
                let node = |n: &mut String, s: &str| {
                    if !s.is_empty() {
                        if !n.is_empty() {
                            n.push('.');
                        }
                        n.push_str(s);
                    }
                };
                let (space, last): (&[&str], Option<&str>) = match (ty, legacy, stat) {
                    (StatsdType::Counter, true, Some("rate")) => (&["stats"], None),
                    (StatsdType::Counter, true, _) => (&["stats_counts"], None),
                    (StatsdType::Counter, false, s) => (&[global, counter], s),
                    (StatsdType::Timer, true, s) => (&["stats", "timers"], s),
                    (StatsdType::Timer, false, s) => (&[global, timer], s),
                    (StatsdType::Bucket, true, _) => (&["stats", "timers"], None),
                    (StatsdType::Bucket, false, _) => (&[global, timer], None),
                    (StatsdType::Gauge, true, _) => (&["stats", "gauges"], None),
                    (StatsdType::Gauge, false, _) => (&[global, gauge], None),
                    (StatsdType::Set, true, _) => (&["stats", "sets"], Some("count")),
                    (StatsdType::Set, false, _) => (&[global, set], Some("count")),
                };
                for s in space {
                    node(&mut n, s);
                }
                node(&mut n, name);
                if ty == StatsdType::Bucket {
                    node(&mut n, "percentile");
                    node(&mut n, stat.unwrap_or_default());
                }
                if let Some(l) = last {
                    node(&mut n, l);
                }
                if !tags.is_empty() {
                    n.push(';');
                    n.push_str(tags);
                }
                tally_proto::series_name::canonicalize(&n)
                    .ok()
                    .map(|c| c.into_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::Kind;

    fn rule(tags: &[&str]) -> RuleShape {
        RuleShape {
            name: "requests".into(),
            kind: Kind::Counter,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            max_values: 10,
        }
    }

    fn tags() -> Naming {
        Naming {
            host: "web1.example.com".into(),
            path_prefix: None,
        }
    }

    fn path(prefix: &str) -> Naming {
        Naming {
            host: "web1.example.com".into(),
            path_prefix: Some(prefix.into()),
        }
    }

    #[test]
    fn both_forms_for_rule_series_and_the_agents_own() {
        let r = rule(&["vhost", "status"]);
        let values = ["www".to_string(), "2xx".to_string()];
        let table: &[(Naming, Option<&str>, &str)] = &[
            (
                tags(),
                None,
                "requests;host=web1.example.com;status=2xx;vhost=www",
            ),
            (
                tags(),
                Some("p99"),
                "requests;host=web1.example.com;stat=p99;status=2xx;vhost=www",
            ),
            (
                path("servers"),
                None,
                "servers.web1_example_com.requests.www.2xx",
            ),
            (
                path("servers"),
                Some("max"),
                "servers.web1_example_com.requests.www.2xx.max",
            ),
            (path(""), None, "web1_example_com.requests.www.2xx"),
        ];
        for (naming, stat, want) in table {
            assert_eq!(naming.rule_series(&r, &values, *stat), *want);
        }
        let table: &[(Naming, Option<&str>, &str)] = &[
            (tags(), None, "tally.agent.lines_read;host=web1.example.com"),
            (
                tags(),
                Some("checkout"),
                "tally.agent.lines_read;host=web1.example.com;rule=checkout",
            ),
            (
                path("servers"),
                None,
                "servers.web1_example_com.tally_agent.lines_read",
            ),
            (
                path("servers"),
                Some("checkout"),
                "servers.web1_example_com.tally_agent.lines_read.checkout",
            ),
            (path(""), None, "web1_example_com.tally_agent.lines_read"),
        ];
        for (naming, rule, want) in table {
            let label = rule.map(|r| ("rule", r));
            assert_eq!(naming.agent_series("lines_read", label), *want);
        }
        // A store's URL is one tag value, or one path node.
        let store = Some(("store", "http://10.0.0.1:8080"));
        assert_eq!(
            tags().agent_series("store_ship_errors", store),
            "tally.agent.store_ship_errors;host=web1.example.com;store=10.0.0.1:8080"
        );
        assert_eq!(
            path("servers").agent_series("store_ship_errors", store),
            "servers.web1_example_com.tally_agent.store_ship_errors.10_0_0_1:8080"
        );
    }

    #[test]
    fn a_name_the_store_would_refuse_falls_back() {
        let r = rule(&["vhost"]);
        assert_eq!(tags().rule_series(&r, &["~x".into()], None), "requests");
        assert_eq!(
            tags().agent_series("lines_matched", Some(("rule", "~x"))),
            ""
        );
    }

    #[test]
    fn sanitizing_tag_values_and_path_nodes() {
        let table: &[(&[u8], bool, &[u8])] = &[
            (b"www.example.com", false, b"www.example.com"),
            (b"www.example.com", true, b"www_example_com"),
            (b"/a/b", true, b"_a_b"),
            (b"~a;b c", false, b"_a_b_c"),
            (b"", false, b"none"),
            (b"caf\xc3\xa9\x1f", false, b"caf___"),
        ];
        for (v, path, want) in table {
            let mut out = Vec::new();
            push_sanitized(&mut out, v, *path);
            assert_eq!(out, *want, "{:?}", String::from_utf8_lossy(v));
        }
        let mut out = Vec::new();
        push_sanitized(&mut out, &[b'a'; 300], false);
        assert_eq!(out.len(), 200);
    }

    proptest::proptest! {
        /// Any bytes: appended after what is there, at most 200 of them, each kept or `_` by
        /// itself, never empty, never starting with `~`.
        #[test]
        fn sanitized_values_are_byte_for_byte(
            before in proptest::collection::vec(proptest::num::u8::ANY, 0..8),
            v in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            path: bool,
        ) {
            let mut out = before.clone();
            push_sanitized(&mut out, &v, path);
            proptest::prop_assert_eq!(&out[..before.len()], &before[..]);
            let got = &out[before.len()..];
            if v.is_empty() {
                proptest::prop_assert_eq!(got, b"none");
            } else {
                proptest::prop_assert_eq!(got.len(), v.len().min(200));
                for (i, (&g, &b)) in got.iter().zip(&v).enumerate() {
                    let ok = (0x21..0x7f).contains(&b) && b != b';' && !(path && (b == b'.' || b == b'/'));
                    let want = if i == 0 && b == b'~' { b'_' } else if ok { b } else { b'_' };
                    proptest::prop_assert_eq!(g, want, "byte {} of {:?}", i, v);
                }
            }
        }
    }
}
