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
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(values.len() + 1);
        tags.extend(
            rule.tags
                .iter()
                .map(String::as_str)
                .zip(values.iter().map(String::as_str)),
        );
        if let Some(stat) = stat {
            tags.push(("stat", stat));
        }
        self.name(&rule.name, &rule.name, &tags)
            .unwrap_or_else(|| rule.name.clone())
    }

    /// The name of one of the agent's own counters: `tally.agent.<metric>;host=...` or
    /// `prefix.host.tally_agent.<metric>`; `rule` is the rule of the per-rule `lines_matched`.
    /// A name that cannot be built is empty.
    pub(crate) fn agent_series(&self, metric: &str, rule: Option<&str>) -> String {
        let tags: Vec<(&str, &str)> = rule.map(|r| ("rule", r)).into_iter().collect();
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

/// Appends `v` to a series key, made safe as a tag value (and as a path node with `path`); at
/// most 200 bytes of it are kept, and an empty value becomes `none`.
pub(crate) fn push_sanitized(out: &mut Vec<u8>, v: &[u8], path: bool) {
    let start = out.len();
    for &b in v.iter().take(200) {
        let ok = b > b' ' && b < 0x7f && b != b';' && !(path && (b == b'.' || b == b'/'));
        out.push(if ok { b } else { b'_' });
    }
    if out.len() == start {
        out.extend_from_slice(b"none");
    } else if out[start] == b'~' {
        out[start] = b'_';
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
            assert_eq!(naming.agent_series("lines_read", *rule), *want);
        }
    }

    #[test]
    fn a_name_the_store_would_refuse_falls_back() {
        let r = rule(&["vhost"]);
        assert_eq!(tags().rule_series(&r, &["~x".into()], None), "requests");
        assert_eq!(tags().agent_series("lines_matched", Some("~x")), "");
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
}
