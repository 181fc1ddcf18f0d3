//! Making the saved state fit the alerting file, after a reload or at a start (the file may have
//! changed while the store was down, and the state may have been saved by an older build).
//! Whatever the receivers were told must still end, and be told only once:
//!
//! - the instances of a rule that is gone are forgotten; Alertmanager is told their alerts
//!   ended, under the labels it was sent, and PagerDuty and webhooks get the resolve of each open
//!   incident, under its key, from the notifiers its triggers went to;
//! - a firing instance whose rule now has other labels is another incident: the old one
//!   resolves, a new one is triggered under a key of the new labels (Alertmanager, which knows an
//!   alert by its labels, ends the old alert at the next delivery: see `delivery`);
//! - notifiers are known by [`Notifier::id`](super::config::Notifier::id), not by their place in
//!   the file: their counters and queued notifications follow them when the file is reordered,
//!   and only those of notifiers that are gone are dropped;
//! - a firing instance saved before incidents were kept gets one under the key it was paged
//!   with, so its resolve closes that incident.

use super::config::Rule;
use super::delivery::NotifierStats;
use super::engine::Inner;
use super::machine::{Level, State, Transition};
use super::payload::{self, Notice};
use super::state::{AmAlert, AmResolved, Incident};

impl Inner {
    /// Makes the state fit `self.cfg` at `now`.
    pub(super) fn reconcile(&mut self, now: i64) {
        self.retarget_outbox();
        self.keep_stats();
        self.adopt_incidents();
        self.end_removed_rules(now);
        self.reopen_relabeled(now);
    }

    /// Names each queued notification's notifier by id (older builds saved its place in the
    /// file), numbers the ones saved without an id, and drops those of notifiers that are gone.
    fn retarget_outbox(&mut self) {
        let p = &mut self.p;
        for o in p.outbox.iter_mut() {
            if o.to.is_empty() {
                if let Some(n) = o.notifier.and_then(|i| self.cfg.notifiers.get(i)) {
                    o.to = n.id.clone();
                }
            }
            if o.id == 0 {
                p.next_outgoing += 1;
                o.id = p.next_outgoing;
            }
        }
        let before = p.outbox.len();
        p.outbox.retain(|o| self.cfg.notifier(&o.to).is_some());
        if p.outbox.len() != before {
            tracing::warn!(
                dropped = before - p.outbox.len(),
                "notifications queued for notifiers no longer configured were dropped"
            );
            self.dirty = true;
        }
    }

    /// One set of counters per configured notifier, the same as before for the same notifier.
    fn keep_stats(&mut self) {
        let mut old = std::mem::take(&mut self.stats);
        for n in &self.cfg.notifiers {
            let st = old.remove(&n.id).unwrap_or_else(|| NotifierStats {
                kind: n.name(),
                ..Default::default()
            });
            self.stats.insert(n.id.clone(), st);
        }
    }

    /// Gives an incident to each firing instance saved without one: the key older builds used,
    /// the rule's labels as they are now, and the notifiers that want the rule.
    fn adopt_incidents(&mut self) {
        let names: Vec<String> = self.p.rules.keys().cloned().collect();
        for name in names {
            let rule = self.cfg.rules.iter().find(|r| r.name == name).cloned();
            let notifiers = self.wanting(&name);
            let Some(run) = self.p.rules.get_mut(&name) else {
                continue;
            };
            for e in run.instances.values_mut() {
                if e.inst.state != State::Firing || e.incident.is_some() {
                    continue;
                }
                let level = e.inst.level.unwrap_or(Level::Warning);
                let key = payload::legacy_key(&name, &e.series);
                let mut incident = match &rule {
                    Some(rule) => {
                        let tr = Transition::Fired {
                            level,
                            previous: None,
                        };
                        Notice::new(&self.cfg.external_url, rule, e, &tr, key, 0)
                            .incident(&rule.labels)
                    }
                    None => {
                        let sent = e.am_alert.clone();
                        Incident {
                            key,
                            rule_labels: Default::default(),
                            labels: sent.as_ref().map(|a| a.labels.clone()).unwrap_or_default(),
                            annotations: sent
                                .as_ref()
                                .map(|a| a.annotations.clone())
                                .unwrap_or_default(),
                            level,
                            target: String::new(),
                            op: String::new(),
                            graph_url: sent.map(|a| a.generator_url).unwrap_or_default(),
                            notifiers: Vec::new(),
                            sent_at: 0,
                        }
                    }
                };
                incident.notifiers = notifiers.clone();
                e.incident = Some(incident);
                self.dirty = true;
            }
        }
    }

    /// Forgets the instances of rules that are gone, ending what the receivers were told.
    fn end_removed_rules(&mut self, now: i64) {
        let keep = self.cfg.resolved_resend_for;
        let gone: Vec<String> = self
            .p
            .rules
            .keys()
            .filter(|k| !self.cfg.rules.iter().any(|r| &r.name == *k))
            .cloned()
            .collect();
        for name in gone {
            let Some(run) = self.p.rules.remove(&name) else {
                continue;
            };
            for e in run.instances.into_values() {
                if let Some(incident) = &e.incident {
                    let n = Notice::ended(&name, &e, incident, "rule removed", now);
                    self.tell(&n, false);
                    self.queue_to(&incident.notifiers, &n);
                }
                let ends_at = match (e.inst.state, e.inst.resolved_at) {
                    (State::Firing, _) => now,
                    // Resolved a moment ago: its resolve goes on being re-sent.
                    (State::Ok, Some(t)) if now - t <= keep => t,
                    _ => continue,
                };
                if let Some(alert) = e.am_alert {
                    self.p.am_resolved.push(AmResolved {
                        alert: AmAlert { ends_at, ..alert },
                        sent: 0,
                    });
                }
            }
            self.dirty = true;
        }
    }

    /// Ends the incident of each firing instance whose rule's labels changed, and triggers one
    /// under the new labels.
    fn reopen_relabeled(&mut self, now: i64) {
        let rules: Vec<Rule> = self.cfg.rules.clone();
        for rule in &rules {
            let Some(run) = self.p.rules.get_mut(&rule.name) else {
                continue;
            };
            let mut changed = Vec::new();
            for (key, e) in run.instances.iter_mut() {
                if e.inst.state != State::Firing {
                    continue;
                }
                if let Some(old) = e.incident.take_if(|i| i.rule_labels != rule.labels) {
                    changed.push((key.clone(), e.clone(), old));
                }
            }
            for (key, e, old) in changed {
                let n = Notice::ended(&rule.name, &e, &old, "labels changed", now);
                self.tell(&n, false);
                self.queue_to(&old.notifiers, &n);
                let tr = Transition::Fired {
                    level: e.inst.level.unwrap_or(Level::Warning),
                    previous: None,
                };
                self.notify(rule, &key, &tr, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::alert::engine::Engine;
    use crate::alert::state::STATE_KEY;
    use crate::alert::test_support::{engine, engine_on_file, reload_at, source};

    const T: i64 = 1_800_000_000;

    const NOTIFY: &str =
        "[[notify]]\nkind = \"pagerduty\"\nurl = \"http://127.0.0.1:9/pd\"\nrouting_key = \"K\"\n\
        [[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n";

    const RULE: &str = "[[rule]]\nname = \"High\"\ntarget = \"test.value\"\nwindow = \"10s\"\ncrit = 50\ninterval = \"10s\"\nnodata = \"keep\"\nlabels = { team = \"web\" }\n";

    /// The queued bodies as (notifier kind, event or state, dedup key).
    fn queued(e: &Engine) -> Vec<(String, String, String)> {
        e.lock()
            .p
            .outbox
            .iter()
            .map(|o| {
                let b = &o.body;
                (
                    o.to.split(' ').next().unwrap_or("").to_string(),
                    b["event_action"]
                        .as_str()
                        .or(b["state"].as_str())
                        .unwrap_or("")
                        .to_string(),
                    b["dedup_key"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn rows(r: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        r.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn issue_17_removing_a_firing_rule_resolves_its_incident_at_pagerduty_and_webhooks() {
        let s = source(&[("test.value", T, vec![Some(60.0); 3])]);
        let (e, dir) = engine_on_file(&s, &format!("{NOTIFY}{RULE}"));
        e.evaluate_due(T);
        let key = queued(&e)[0].2.clone();
        reload_at(&e, &dir, NOTIFY, T + 5);
        assert_eq!(
            queued(&e),
            rows(&[
                ("pagerduty", "trigger", &key),
                ("webhook", "firing", &key),
                ("pagerduty", "resolve", &key),
                ("webhook", "resolved", &key),
            ])
        );
        let g = e.lock();
        let pd = &g.p.outbox[2].body;
        assert_eq!(pd["routing_key"], "K");
        let hook = &g.p.outbox[3].body;
        assert_eq!(hook["reason"], "rule removed");
        assert_eq!(hook["labels"]["team"], "web");
        assert_eq!(hook["target"], "test.value");
        assert_eq!(hook["op"], ">");
        assert!(g
            .console
            .last()
            .is_some_and(|l| l.ends_with("(rule removed)")));
    }

    #[test]
    fn issue_17_a_rule_removed_or_relabeled_while_the_store_was_down_resolves_its_incident() {
        let s = source(&[("test.value", T, vec![Some(60.0); 3])]);
        let e = engine(&s, &format!("{NOTIFY}{RULE}"));
        e.evaluate_due(T);
        let key = queued(&e)[0].2.clone();
        e.persist();
        let relabeled = engine(&s, &format!("{NOTIFY}{}", RULE.replace("web", "ops")));
        let got = queued(&relabeled);
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(
            got[2..4],
            rows(&[
                ("pagerduty", "resolve", &key),
                ("webhook", "resolved", &key)
            ])
        );
        assert_eq!(got[4].1, "trigger");
        assert_ne!(got[4].2, key);
        let removed = engine(&s, NOTIFY);
        assert_eq!(
            queued(&removed)[2..],
            rows(&[
                ("pagerduty", "resolve", &key),
                ("webhook", "resolved", &key)
            ])
        );
    }

    #[test]
    fn issue_17_state_saved_before_incidents_resolves_under_the_key_it_paged_with() {
        // An older build's document: a firing instance with no incident, and a webhook
        // notification queued for the notifier at place 1 of the file.
        let doc = json!({
            "rules": {"High": {"instances": {"test.value": {
                "series": "test.value", "tags": {"name": "test.value"},
                "inst": {"state": "firing", "level": "critical", "since": T - 60,
                         "last_true": T - 10, "value": 60.0, "threshold": 50.0, "error": null,
                         "resolved_at": null, "resolved_level": null, "last_eval": T - 10}}}}},
            "silences": [],
            "outbox": [{"notifier": 1, "body": {"state": "firing", "dedup_key": "tally:High:test.value"},
                        "attempts": 0, "next_try": 0}],
        });
        let s = source(&[("test.value", T, vec![Some(60.0), Some(1.0)])]);
        s.save_state(STATE_KEY, doc.to_string().as_bytes())
            .expect("save");
        let e = engine(&s, &format!("{NOTIFY}{RULE}"));
        assert_eq!(
            queued(&e),
            rows(&[("webhook", "firing", "tally:High:test.value")]),
            "no page again at the start"
        );
        e.evaluate_due(T);
        assert_eq!(queued(&e).len(), 1, "still firing: nothing new");
        e.evaluate_due(T + 10);
        assert_eq!(
            queued(&e)[1..],
            rows(&[
                ("pagerduty", "resolve", "tally:High:test.value"),
                ("webhook", "resolved", "tally:High:test.value"),
            ])
        );
        let ids: Vec<u64> = e.lock().p.outbox.iter().map(|o| o.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let hook: Value = e.lock().p.outbox[2].body.clone();
        assert_eq!(hook["labels"]["team"], "web");
    }
}
