//! Typed snapshots of the engine, taken under its lock and handed out by value: what the HTTP
//! API shows ([`routes`](super::routes) turns them into JSON) and what tests look at. The
//! engine's own state types stay private, so what it keeps can change without the API changing.

use std::collections::BTreeMap;

use super::config::Rule;
use super::delivery::NotifierStats;
use super::engine::Engine;
use super::machine::Level;
use super::payload;
use super::state::Labels;

/// One alert instance as people read it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSnapshot {
    pub rule: String,
    /// The series it follows; empty for the rule-level instance (no data at all, errors).
    pub series: String,
    pub labels: Labels,
    pub annotations: Labels,
    /// `ok`, `pending`, `firing`, `nodata`, `error`, or `resolved` for a while after a resolve.
    pub state: &'static str,
    pub level: Option<Level>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub since: i64,
    pub last_eval: i64,
    pub resolved_at: Option<i64>,
    pub error: Option<String>,
    pub silenced: bool,
    pub graph_url: String,
}

/// One rule with its last evaluation.
#[derive(Debug, Clone)]
pub(crate) struct RuleSnapshot {
    pub rule: Rule,
    /// `None` until the rule was evaluated once.
    pub last_eval: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: Option<u64>,
    /// How many instances are in each state (as [`AlertSnapshot::state`] names them).
    pub instances: BTreeMap<&'static str, usize>,
}

impl Engine {
    /// Every instance of every rule, by rule then series.
    pub fn alerts(&self, now: i64) -> Vec<AlertSnapshot> {
        let g = self.lock();
        let mut out = Vec::new();
        for rule in &g.cfg.rules {
            let Some(run) = g.p.rules.get(&rule.name) else {
                continue;
            };
            for e in run.instances.values() {
                let level = e
                    .inst
                    .level
                    .or(e.inst.resolved_level)
                    .unwrap_or(Level::Warning);
                out.push(AlertSnapshot {
                    rule: rule.name.clone(),
                    series: e.series.clone(),
                    labels: payload::labels(rule, e, level),
                    annotations: payload::annotations(rule, e, level),
                    state: e.inst.display_state(now, g.cfg.resolved_resend_for),
                    level: e.inst.level,
                    value: e.inst.value,
                    threshold: e.inst.threshold,
                    since: e.inst.since,
                    last_eval: e.inst.last_eval,
                    resolved_at: e.inst.resolved_at,
                    error: e.inst.error.clone(),
                    silenced: g.p.silenced(&rule.name, &e.series, now),
                    graph_url: payload::graph_url(&g.cfg.external_url, rule, &e.series),
                });
            }
        }
        out
    }

    /// Every rule with its settings and last evaluation.
    pub(crate) fn rules(&self, now: i64) -> Vec<RuleSnapshot> {
        let g = self.lock();
        g.cfg
            .rules
            .iter()
            .map(|r| {
                let run = g.p.rules.get(&r.name);
                let mut instances: BTreeMap<&'static str, usize> = BTreeMap::new();
                for e in run.into_iter().flat_map(|x| x.instances.values()) {
                    *instances
                        .entry(e.inst.display_state(now, g.cfg.resolved_resend_for))
                        .or_default() += 1;
                }
                RuleSnapshot {
                    rule: r.clone(),
                    last_eval: run.map(|x| x.last_eval),
                    last_error: run.and_then(|x| x.last_error.clone()),
                    last_duration_ms: run.map(|x| x.last_duration_ms),
                    instances,
                }
            })
            .collect()
    }

    /// Delivery counters of each notifier, in the order of the configuration.
    pub(crate) fn notifiers(&self) -> Vec<NotifierStats> {
        let g = self.lock();
        g.cfg
            .notifiers
            .iter()
            .map(|n| {
                let mut s = g
                    .stats
                    .get(&n.id)
                    .cloned()
                    .unwrap_or_else(|| NotifierStats {
                        kind: n.name(),
                        ..Default::default()
                    });
                s.pending = g.p.outbox.iter().filter(|o| o.to == n.id).count();
                s
            })
            .collect()
    }
}
