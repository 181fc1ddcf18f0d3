//! What notifications say, built in one place (`contracts/alerting.md` §2–4): the labels an
//! instance is known by — one builder, used for Alertmanager, the webhook, PagerDuty's details
//! and the API — its annotations, the graph link, and the document each notifier takes:
//! Alertmanager API v2 alerts, PagerDuty Events v2, the generic webhook, the console line.
//! Nothing here sends or keeps anything; [`delivery`](super::delivery) does.

use serde_json::{json, Value};

use super::config::{fmt_value, render_template, Rule};
use super::machine::{Level, Transition};
use super::state::{AmAlert, Entry, Incident, Labels};

/// A time as Alertmanager and PagerDuty write it: `2026-11-22T02:56:35Z`.
pub(crate) fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The labels of an instance at `level`: its series' tags (graphite's `name` tag becomes
/// `metric` unless it is the whole series), `series`, the rule's labels, `alertname` and
/// `severity`. Alertmanager identifies an alert by exactly this set.
pub(crate) fn labels(rule: &Rule, e: &Entry, level: Level) -> Labels {
    let mut l = Labels::new();
    for (k, v) in &e.tags {
        // graphite's `name` tag is the metric name (the whole path for a plain series).
        if k == "name" {
            if *v != e.series {
                l.insert("metric".into(), v.clone());
            }
            continue;
        }
        l.insert(sanitize_label(k), v.clone());
    }
    if !e.series.is_empty() {
        l.insert("series".into(), e.series.clone());
    }
    l.extend(rule.labels.clone());
    l.insert("alertname".into(), rule.name.clone());
    l.insert("severity".into(), level.as_str().into());
    l
}

/// A tag name as a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn sanitize_label(k: &str) -> String {
    let s: String = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{s}")
    } else {
        s
    }
}

/// The annotations of an instance at `level`: the summary (at most 1024 characters, as PagerDuty
/// takes it), the runbook URL and the rule's own annotations, templated.
pub(crate) fn annotations(rule: &Rule, e: &Entry, level: Level) -> Labels {
    let vars = |k: &str| -> Option<String> {
        Some(match k {
            "rule" => rule.name.clone(),
            "series" => {
                if e.series.is_empty() {
                    rule.target.clone()
                } else {
                    e.series.clone()
                }
            }
            "value" => e.inst.value.map_or("no data".into(), fmt_value),
            "threshold" => e.inst.threshold.map_or("-".into(), fmt_value),
            "level" => level.as_str().into(),
            "state" => format!("{:?}", e.inst.state).to_lowercase(),
            "error" => e.inst.error.clone().unwrap_or_default(),
            "target" => rule.target.clone(),
            _ => {
                let tag = k
                    .strip_prefix("tags.")
                    .or_else(|| k.strip_prefix("labels."))?;
                e.tags
                    .get(tag)
                    .cloned()
                    .or_else(|| rule.labels.get(tag).cloned())?
            }
        })
    };
    let mut a = Labels::new();
    let mut summary = render_template(&rule.summary, &vars);
    if level == Level::Nodata {
        summary = format!(
            "{}: no data for {}",
            rule.name,
            vars("series").unwrap_or_default()
        );
    } else if level == Level::Error {
        summary = format!(
            "{}: query failed: {}",
            rule.name,
            e.inst.error.clone().unwrap_or_default()
        );
    }
    summary.truncate(1024);
    a.insert("summary".into(), summary);
    if let Some(r) = &rule.runbook_url {
        a.insert("runbook_url".into(), render_template(r, &vars));
    }
    for (k, v) in &rule.annotations {
        a.insert(k.clone(), render_template(v, &vars));
    }
    a
}

/// The link to the graph of `series` (of the rule's target for the rule-level instance).
pub(crate) fn graph_url(external_url: &str, rule: &Rule, series: &str) -> String {
    let target = if series.is_empty() {
        rule.target.as_str()
    } else {
        series
    };
    if rule.atlas.is_some() {
        // The Atlas graph of the rule's expression (lines are not Graphite targets).
        let q: String = form_urlencoded::byte_serialize(rule.target.as_bytes()).collect();
        return format!("{external_url}/api/v1/graph?q={q}&s=e-3h&format=std.json");
    }
    let target: String = form_urlencoded::byte_serialize(target.as_bytes()).collect();
    format!("{external_url}/render?target={target}&from=-3h&format=svg")
}

/// The document `POST /api/v2/alerts` takes for one alert.
pub(crate) fn alertmanager(a: &AmAlert) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at),
        "generatorURL": a.generator_url,
    })
}

/// The dedup key of a new incident of instance `e` of `rule` (PagerDuty keeps one incident per
/// key): `tally:<rule>:<series>`, then, when the rule has labels, a fingerprint of them, so that
/// other labels in the file make another incident. At most 255 characters: a longer key keeps
/// its beginning and ends with a fingerprint of the whole.
pub(crate) fn incident_key(rule: &Rule, e: &Entry) -> String {
    let series = if e.series.is_empty() {
        "(rule)"
    } else {
        &e.series
    };
    let mut key = format!("tally:{}:{series}", rule.name);
    if !rule.labels.is_empty() {
        let mut text = String::new();
        for (k, v) in &rule.labels {
            text.push_str(k);
            text.push('\0');
            text.push_str(v);
            text.push('\0');
        }
        key.push_str(&format!(":{:016x}", fingerprint(text.as_bytes())));
    }
    if key.chars().count() > 255 {
        let tail = format!("~{:016x}", fingerprint(key.as_bytes()));
        key = key.chars().take(255 - tail.len()).collect::<String>() + &tail;
    }
    key
}

/// The key builds before [`incident_key`] used, `tally:<rule>:<series>` cut at 255 characters:
/// incidents they opened are resolved under it.
pub(crate) fn legacy_key(rule: &str, series: &str) -> String {
    let series = if series.is_empty() { "(rule)" } else { series };
    format!("tally:{rule}:{series}").chars().take(255).collect()
}

/// FNV-1a (64 bits) of `bytes`: a fingerprint that does not change between builds.
fn fingerprint(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// A state change kept as a Graphite event ([`Notice::event`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertEvent {
    pub when: i64,
    pub what: String,
    pub data: String,
    pub tags: Vec<String>,
}

/// A state change of one instance as PagerDuty, the webhook and the console are told it.
pub(crate) struct Notice {
    pub rule: String,
    pub target: String,
    pub op: String,
    /// The series; empty for the rule-level instance.
    pub series: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub level: Level,
    /// The level before: the old one of a level change, the resolved one of a resolve.
    pub previous: Option<Level>,
    pub labels: Labels,
    pub annotations: Labels,
    pub graph_url: String,
    /// The incident's dedup key.
    pub key: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// When the instance began firing.
    pub since: i64,
    pub now: i64,
    /// Why an incident ended while its condition may still hold (`rule removed`, `labels
    /// changed`); `None` for state changes.
    pub reason: Option<&'static str>,
    /// A re-send of a firing instance with no change (webhooks, every `resend_interval`).
    pub resend: bool,
}

impl Notice {
    /// Transition `tr` of instance `e` of `rule`, in the incident with dedup key `key`.
    pub fn new(
        external_url: &str,
        rule: &Rule,
        e: &Entry,
        tr: &Transition,
        key: String,
        now: i64,
    ) -> Notice {
        let (state, level, previous) = match tr {
            Transition::Fired { level, previous } => ("firing", *level, *previous),
            Transition::Resolved { level } => ("resolved", *level, Some(*level)),
        };
        Notice {
            rule: rule.name.clone(),
            target: rule.target.clone(),
            op: rule.op.as_str().into(),
            series: e.series.clone(),
            state,
            level,
            previous,
            labels: labels(rule, e, level),
            annotations: annotations(rule, e, level),
            graph_url: graph_url(external_url, rule, &e.series),
            key,
            value: e.inst.value,
            threshold: e.inst.threshold,
            since: e.inst.since,
            now,
            reason: None,
            resend: false,
        }
    }

    /// The resolve of `incident` of instance `e` of rule `rule`, which ends for `reason` (the
    /// rule was removed, or its labels changed): it says what the incident's triggers said.
    pub fn ended(
        rule: &str,
        e: &Entry,
        incident: &Incident,
        reason: &'static str,
        now: i64,
    ) -> Notice {
        Notice {
            rule: rule.to_string(),
            target: incident.target.clone(),
            op: incident.op.clone(),
            series: e.series.clone(),
            state: "resolved",
            level: incident.level,
            previous: Some(incident.level),
            labels: incident.labels.clone(),
            annotations: incident.annotations.clone(),
            graph_url: incident.graph_url.clone(),
            key: incident.key.clone(),
            value: e.inst.value,
            threshold: e.inst.threshold,
            since: e.inst.since,
            now,
            reason: Some(reason),
            resend: false,
        }
    }

    /// The incident a trigger opens or continues, told to no notifier yet.
    pub fn incident(&self, rule_labels: &Labels) -> Incident {
        Incident {
            key: self.key.clone(),
            rule_labels: rule_labels.clone(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            level: self.level,
            target: self.target.clone(),
            op: self.op.clone(),
            graph_url: self.graph_url.clone(),
            notifiers: Vec::new(),
            sent_at: self.now,
        }
    }

    fn resolved(&self) -> bool {
        self.state == "resolved"
    }

    /// `ALERT FIRING Beacons beacons.a warning value=25 threshold=10`.
    pub fn console_line(&self, silenced: bool) -> String {
        format!(
            "ALERT {} {}{} {} value={} threshold={}{}{}",
            self.state.to_uppercase(),
            self.rule,
            if self.series.is_empty() {
                String::new()
            } else {
                format!(" {}", self.series)
            },
            self.level.as_str(),
            self.value.map_or("none".into(), fmt_value),
            self.threshold.map_or("-".into(), fmt_value),
            self.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
            if silenced { " (silenced)" } else { "" },
        )
    }

    /// The Graphite event (`/events`) a state change leaves in the store, so graphs can show
    /// when each alert fired and resolved (the web page's bands, Grafana's annotations):
    /// `what` names the rule, state and level; `data` is the console line with the summary;
    /// the tags are `alert`, the rule's name, the state, the level and `series=<series>` (one
    /// tag of the event's list, whatever the series' name holds: a function's name can hold
    /// spaces).
    pub fn event(&self, silenced: bool) -> AlertEvent {
        let mut data = self.console_line(silenced);
        if let Some(s) = self.annotations.get("summary").filter(|s| !s.is_empty()) {
            data.push('\n');
            data.push_str(s);
        }
        AlertEvent {
            when: self.now,
            what: format!("{} {} {}", self.rule, self.state, self.level.as_str()),
            data,
            tags: vec![
                "alert".to_owned(),
                self.rule.clone(),
                self.state.to_owned(),
                self.level.as_str().to_owned(),
                format!("series={}", self.series),
            ],
        }
    }

    /// A PagerDuty Events v2 `trigger`, or the `resolve` with the same dedup key.
    pub fn pagerduty(&self, routing_key: &str) -> Value {
        let mut b = json!({
            "routing_key": routing_key,
            "event_action": if self.resolved() { "resolve" } else { "trigger" },
            "dedup_key": self.key,
        });
        if !self.resolved() {
            let severity = match self.level {
                Level::Critical => "critical",
                Level::Warning => "warning",
                Level::Nodata | Level::Error => "error",
            };
            b["payload"] = json!({
                "summary": self.annotations.get("summary").cloned().unwrap_or_default(),
                "source": "tally",
                "severity": severity,
                "timestamp": rfc3339(self.now),
                "component": self.series,
                "group": self.rule,
                "custom_details": {
                    "value": self.value,
                    "threshold": self.threshold,
                    "target": self.target,
                    "labels": self.labels,
                    "annotations": self.annotations,
                },
            });
            b["links"] = json!([{"href": self.graph_url, "text": "graph"}]);
        }
        b
    }

    /// The generic webhook's document (version 1).
    pub fn webhook(&self) -> Value {
        json!({
            "version": "1",
            "rule": self.rule,
            "target": self.target,
            "series": self.series,
            "labels": self.labels,
            "annotations": self.annotations,
            "state": self.state,
            "previous_state": if self.previous.is_some() { "firing" } else { "ok" },
            "level": self.level.as_str(),
            "previous_level": self.previous.map(Level::as_str),
            "value": self.value,
            "threshold": self.threshold,
            "op": self.op,
            "starts_at": rfc3339(self.since),
            "ends_at": if self.resolved() { Some(rfc3339(self.now)) } else { None },
            "timestamp": rfc3339(self.now),
            "graph_url": self.graph_url,
            "dedup_key": self.key,
            "reason": self.reason,
            "resend": self.resend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::config::Alerting;

    fn rule() -> Rule {
        Alerting::parse(
            "[[rule]]\nname = \"B\"\ntarget = \"seriesByTag('name=beacons')\"\ncrit = 10\nlabels = { team = \"web\" }\n",
        )
        .expect("valid")
        .rules
        .remove(0)
    }

    fn entry(series: &str, tags: &[(&str, &str)]) -> Entry {
        let tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut e = Entry::new(series.into(), tags);
        e.inst.value = Some(42.0);
        e.inst.threshold = Some(10.0);
        e
    }

    #[test]
    fn labels_are_tags_as_prometheus_names_then_the_rules_then_identity() {
        let e = entry(
            "beacons;1st-cdn=fastly;name=beacons",
            &[("name", "beacons"), ("1st-cdn", "fastly")],
        );
        let got = labels(&rule(), &e, Level::Critical);
        let want: Labels = [
            ("_1st_cdn", "fastly"),
            ("alertname", "B"),
            ("metric", "beacons"),
            ("series", "beacons;1st-cdn=fastly;name=beacons"),
            ("severity", "critical"),
            ("team", "web"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        // A plain series: its `name` tag is the series itself, not repeated as `metric`.
        let got = labels(&rule(), &entry("a.b", &[("name", "a.b")]), Level::Warning);
        assert!(!got.contains_key("metric"), "{got:?}");
    }

    #[test]
    fn a_resolve_reuses_the_dedup_key_and_says_what_it_was() {
        let r = rule();
        let e = entry("beacons;source=x", &[("name", "beacons"), ("source", "x")]);
        let fired = Transition::Fired {
            level: Level::Critical,
            previous: None,
        };
        let resolved = Transition::Resolved {
            level: Level::Critical,
        };
        let key = incident_key(&r, &e);
        let f = Notice::new("http://t", &r, &e, &fired, key.clone(), 100);
        let s = Notice::new("http://t", &r, &e, &resolved, key, 160);
        // FNV-1a 64 of "team\0web\0", the rule's labels (computed apart, in Python).
        assert_eq!(
            f.pagerduty("K")["dedup_key"],
            "tally:B:beacons;source=x:ed36014e5ee52936"
        );
        assert_eq!(s.pagerduty("K")["dedup_key"], f.pagerduty("K")["dedup_key"]);
        assert_eq!(s.pagerduty("K")["event_action"], "resolve");
        assert!(s.pagerduty("K").get("payload").is_none());
        assert_eq!(f.webhook()["previous_state"], "ok");
        assert_eq!(s.webhook()["previous_state"], "firing");
        assert_eq!(s.webhook()["ends_at"], "1970-01-01T00:02:40Z");
        assert_eq!(
            f.console_line(true),
            "ALERT FIRING B beacons;source=x critical value=42 threshold=10 (silenced)"
        );
        assert!(f
            .graph_url
            .starts_with("http://t/render?target=beacons%3Bsource%3Dx&"));
    }

    #[test]
    fn incident_keys_follow_the_rules_labels_and_fit_255_characters() {
        let r = rule();
        let e = entry("a.b", &[("name", "a.b")]);
        let mut other = rule();
        other.labels.insert("team".into(), "ops".into());
        assert_ne!(incident_key(&r, &e), incident_key(&other, &e));
        other.labels.clear();
        assert_eq!(
            incident_key(&other, &e),
            "tally:B:a.b",
            "no labels: as before"
        );
        assert_eq!(legacy_key("B", ""), "tally:B:(rule)");
        // Two long series that differ only past the cut get two keys.
        let long = "x".repeat(300);
        let (a, b) = (
            entry(&format!("{long}.a"), &[]),
            entry(&format!("{long}.b"), &[]),
        );
        let (ka, kb) = (incident_key(&r, &a), incident_key(&r, &b));
        assert_eq!(ka.chars().count(), 255);
        assert_ne!(ka, kb);
        assert!(ka.starts_with("tally:B:xxx"), "{ka}");
    }
}
