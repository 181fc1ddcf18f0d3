//! What the alert engine keeps across restarts: one JSON document saved through
//! [`Source::save_state`] under [`STATE_KEY`], holding every instance of every rule, the
//! silences, the notifications not yet delivered and the Alertmanager alerts still being sent as
//! resolved. Loading it back is what keeps a firing alert firing after a restart (no second page)
//! and an undelivered resolve waiting (none lost). Fields added later carry `#[serde(default)]`,
//! so a document saved by an earlier build still loads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::machine::{Instance, Level};
use crate::source::Source;

/// The key the engine's state is saved under.
pub(crate) const STATE_KEY: &str = "alerts";

/// Label or annotation names to values, sorted (Alertmanager identifies an alert by its labels).
pub(crate) type Labels = BTreeMap<String, String>;

/// One alert instance with what identifies it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The series it follows (empty for the rule-level instance: no data, errors).
    pub series: String,
    pub tags: BTreeMap<String, String>,
    pub inst: Instance,
    /// When Alertmanager was last sent this instance.
    #[serde(default)]
    pub am_sent: i64,
    /// The alert Alertmanager was last sent for this instance while it fired. Its end goes out
    /// under exactly these labels, whatever the rule says by then: it may have been changed
    /// (other labels, another severity) or removed, and Alertmanager knows an alert only by its
    /// labels.
    #[serde(default)]
    pub am_alert: Option<AmAlert>,
    /// The incident PagerDuty and webhooks were told of while it fires (from its first trigger
    /// to its resolve).
    #[serde(default)]
    pub incident: Option<Incident>,
}

impl Entry {
    pub fn new(series: String, tags: BTreeMap<String, String>) -> Entry {
        Entry {
            series,
            tags,
            inst: Instance::new(),
            am_sent: 0,
            am_alert: None,
            incident: None,
        }
    }
}

/// What PagerDuty and webhooks were told of a firing instance: an incident they keep open under
/// `key` until its resolve comes. The resolve goes where the triggers went, under the same key,
/// and says what the triggers said, even when the rule has been changed or removed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Incident {
    /// The dedup key it was triggered under.
    pub key: String,
    /// The rule's own labels when it was triggered: the incident is the instance under these.
    /// Other labels in the file make another incident (the old one resolves).
    pub rule_labels: Labels,
    /// What its last trigger said: labels (with the severity of its level), annotations, the
    /// level, the rule's target and direction, the graph link.
    pub labels: Labels,
    pub annotations: Labels,
    pub level: Level,
    pub target: String,
    pub op: String,
    pub graph_url: String,
    /// The notifiers ([`Notifier::id`](super::config::Notifier::id)) a trigger was queued for.
    pub notifiers: Vec<String>,
    /// When webhooks were last sent a document of it (its trigger, a level change or a
    /// re-send): the next re-send is `resend_interval` after.
    #[serde(default)]
    pub sent_at: i64,
}

/// One rule's instances (by series; `""` is the rule-level one) and its last evaluation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RuleRun {
    pub instances: BTreeMap<String, Entry>,
    #[serde(default)]
    pub last_eval: i64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_duration_ms: u64,
    /// When the rule is due again; not saved, so a restart evaluates every rule at once.
    #[serde(skip)]
    pub next_eval: i64,
}

/// A silence: notifications of a rule (or of one of its instances) are held back until `until`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Silence {
    pub id: u64,
    pub rule: String,
    /// One series of the rule, or every instance.
    pub series: Option<String>,
    pub until: i64,
    #[serde(default)]
    pub comment: String,
}

/// Whether one of `silences` holds back the notifications of `series` of `rule` at `now`.
pub(crate) fn silenced(silences: &[Silence], rule: &str, series: &str, now: i64) -> bool {
    silences
        .iter()
        .any(|s| s.until > now && s.rule == rule && s.series.as_deref().is_none_or(|x| x == series))
}

/// A notification waiting for delivery (PagerDuty, webhook), kept across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Outgoing {
    /// Unique in the outbox: delivery finds an entry again by it after sending.
    #[serde(default)]
    pub id: u64,
    /// The notifier it goes to ([`Notifier::id`](super::config::Notifier::id)).
    #[serde(default)]
    pub to: String,
    /// What builds before notifier ids saved instead: the notifier's place in the file.
    #[serde(default, skip_serializing)]
    pub notifier: Option<usize>,
    pub body: Value,
    pub attempts: u32,
    pub next_try: i64,
    /// When it was queued.
    #[serde(default)]
    pub created: i64,
}

impl Outgoing {
    /// The incident it is about (both PagerDuty's and the webhook's documents carry the dedup
    /// key): the notifications of one incident to one notifier go out in the order queued.
    pub fn incident(&self) -> &str {
        self.body["dedup_key"].as_str().unwrap_or("")
    }
}

/// An alert as Alertmanager is sent it (API v2), times in Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AmAlert {
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: i64,
    pub ends_at: i64,
    pub generator_url: String,
}

/// An Alertmanager alert that ended under labels no instance has any more (the level changed,
/// the rule was changed or removed): sent as resolved for a while, like any resolved alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AmResolved {
    #[serde(flatten)]
    pub alert: AmAlert,
    /// When it was last sent.
    #[serde(default)]
    pub sent: i64,
}

/// The whole saved document.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Persisted {
    pub rules: BTreeMap<String, RuleRun>,
    pub silences: Vec<Silence>,
    pub outbox: Vec<Outgoing>,
    #[serde(default)]
    pub am_resolved: Vec<AmResolved>,
    #[serde(default)]
    pub next_silence: u64,
    /// The last [`Outgoing::id`] given out.
    #[serde(default)]
    pub next_outgoing: u64,
}

impl Persisted {
    /// The saved state, or an empty one when there is none or it does not parse (logged: the
    /// alerts start from ok rather than not at all).
    pub fn load(source: &dyn Source) -> crate::Result<Persisted> {
        Ok(match source.load_state(STATE_KEY)? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the saved alert state does not parse; starting from ok");
                Persisted::default()
            }),
            None => Persisted::default(),
        })
    }

    /// The document [`Persisted::load`] reads back.
    pub fn encode(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    pub fn silenced(&self, rule: &str, series: &str, now: i64) -> bool {
        silenced(&self.silences, rule, series, now)
    }

    /// Queues `body` for the notifier `to`, due at `now`.
    pub fn queue(&mut self, to: &str, body: Value, now: i64) {
        self.next_outgoing += 1;
        self.outbox.push(Outgoing {
            id: self.next_outgoing,
            to: to.to_string(),
            notifier: None,
            body,
            attempts: 0,
            next_try: now,
            created: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolved_alertmanager_alert_keeps_its_flat_saved_form() {
        let r = AmResolved {
            alert: AmAlert {
                labels: Labels::from([("alertname".into(), "A".into())]),
                annotations: Labels::new(),
                starts_at: 1,
                ends_at: 2,
                generator_url: "http://x".into(),
            },
            sent: 3,
        };
        let v = serde_json::to_value(&r).expect("encodes");
        assert_eq!(
            v,
            serde_json::json!({"labels": {"alertname": "A"}, "annotations": {}, "starts_at": 1,
                "ends_at": 2, "generator_url": "http://x", "sent": 3})
        );
        let back: AmResolved = serde_json::from_value(v).expect("decodes");
        assert_eq!(back.alert, r.alert);
    }

    #[test]
    fn a_document_without_the_later_fields_loads() {
        let doc = br#"{"rules": {"A": {"instances": {"a.b": {"series": "a.b", "tags": {},
            "inst": {"state": "firing", "level": "critical", "since": 5, "last_true": 5,
            "value": 1.0, "threshold": 0.5, "error": null, "resolved_at": null,
            "resolved_level": null, "last_eval": 5}}}}}, "silences": [], "outbox": []}"#;
        let p: Persisted = serde_json::from_slice(doc).expect("loads");
        let e = &p.rules["A"].instances["a.b"];
        assert_eq!(e.am_sent, 0);
        assert!(e.am_alert.is_none());
    }
}
