//! Getting notifications out without ever holding evaluation up. Two ways, because the peers
//! want two things (`contracts/alerting.md`):
//!
//! - PagerDuty and webhooks want one event per state change. A transition queues one document
//!   per notifier in the outbox, which is saved with the state; delivery sends what is due and
//!   retries connection errors, 429 and 5xx with one backoff policy ([`retry_after`]); any other
//!   4xx is dropped (counted, logged), since sending it again cannot help.
//! - Alertmanager wants state, re-sent: every `resend_interval` each firing instance goes out with
//!   `endsAt` a few intervals ahead, each resolved one with its `endsAt` for
//!   `resolved_resend_for`, and so do alerts that ended under other labels ([`AmResolved`]).
//!   Alertmanager knows an alert by its labels alone, so an instance remembers the alert it was
//!   sent: its resolve carries the same labels, and when its labels change (another level, a
//!   changed rule) the old alert is ended. Nothing is queued: a send that does not connect is
//!   made again a few seconds later, one that is refused at the next re-send.
//!
//! Failures are counted per notifier ([`NotifierStats`]) and never reach evaluation.

use std::collections::BTreeMap;

use serde_json::Value;

use super::config::{NotifyKind, Rule};
use super::engine::{Engine, Inner};
use super::machine::{Level, State, Transition};
use super::payload::{self, Notice};
use super::state::{AmAlert, AmResolved, Outgoing};

/// Delivery counters of one notifier.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NotifierStats {
    /// `alertmanager`, `pagerduty`, `webhook` or `console`.
    pub kind: &'static str,
    pub sent: u64,
    pub failed_attempts: u64,
    /// Notifications the receiver refused (4xx other than 429): not retried.
    pub dropped: u64,
    /// Notifications in the outbox for it.
    pub pending: usize,
    pub last_error: Option<String>,
}

/// Seconds to wait before sending an outbox notification again after `attempts` failed ones:
/// 2, 4, 8 … up to 5 minutes (PagerDuty asks for backoff; about 120 events a minute per key).
pub(crate) fn retry_after(attempts: u32) -> i64 {
    (2i64 << attempts.min(8)).min(300)
}

/// How soon an Alertmanager batch that did not get through is sent again.
const AM_RETRY_SECS: i64 = 5;

/// At most this many outbox notifications are sent per delivery round.
const OUTBOX_BATCH: usize = 50;

impl Inner {
    /// Queues what a transition of instance `key` of `rule` notifies (PagerDuty, webhook,
    /// console), and has Alertmanager told at the next delivery.
    pub(super) fn notify(&mut self, rule: &Rule, key: &str, tr: &Transition, now: i64) {
        let Some(e) = self
            .p
            .rules
            .get(&rule.name)
            .and_then(|r| r.instances.get(key))
            .cloned()
        else {
            return;
        };
        let n = Notice::new(&self.cfg.external_url, rule, &e, tr, now);
        // Any transition goes to Alertmanager at the next delivery, not at the next re-send
        // (a level change ends the alert of the old level there: its labels differ).
        if let Some(x) = self
            .p
            .rules
            .get_mut(&rule.name)
            .and_then(|r| r.instances.get_mut(key))
        {
            x.am_sent = 0;
        }
        let silenced = self.p.silenced(&rule.name, &e.series, now);
        self.console.push(n.console_line(silenced));
        if silenced {
            return;
        }
        for (i, notifier) in self.cfg.notifiers.iter().enumerate() {
            if !notifier.wants(&rule.name) {
                continue;
            }
            let body = match &notifier.kind {
                NotifyKind::PagerDuty { routing_key, .. } => n.pagerduty(routing_key),
                NotifyKind::Webhook { .. } => n.webhook(),
                NotifyKind::Alertmanager { .. } | NotifyKind::Console => continue,
            };
            self.p.outbox.push(Outgoing {
                notifier: i,
                body,
                attempts: 0,
                next_try: now,
                created: now,
            });
        }
        self.dirty = true;
    }

    /// The Alertmanager batch due at `now`: firing instances due for a re-send, resolved ones
    /// within the re-send window, and alerts that ended under other labels. A firing instance
    /// whose labels are no longer those Alertmanager has (another level, a changed rule) ends
    /// the old alert here; a resolved one is sent under the labels it fired with.
    pub(super) fn am_batch(&mut self, now: i64) -> Vec<Value> {
        let resend = self.cfg.resend_interval;
        let keep = self.cfg.resolved_resend_for;
        // Prometheus: `endsAt` is 4 × max(evaluation interval, re-send delay) ahead.
        let ends_ahead =
            4 * resend.max(self.cfg.rules.iter().map(|r| r.interval).max().unwrap_or(0));
        let mut out = Vec::new();
        let mut ended = Vec::new();
        let p = &mut self.p;
        for rule in &self.cfg.rules {
            let Some(run) = p.rules.get_mut(&rule.name) else {
                continue;
            };
            for e in run.instances.values_mut() {
                let firing = e.inst.state == State::Firing;
                let resolved = e.inst.state == State::Ok
                    && e.inst.resolved_at.is_some_and(|t| now - t <= keep);
                if !(firing || resolved)
                    || now - e.am_sent < resend
                    || super::state::silenced(&p.silences, &rule.name, &e.series, now)
                {
                    continue;
                }
                let level = if firing {
                    e.inst.level
                } else {
                    e.inst.resolved_level
                }
                .unwrap_or(Level::Warning);
                let labels = match &e.am_alert {
                    Some(sent) if !firing => sent.labels.clone(),
                    _ => payload::labels(rule, e, level),
                };
                let alert = AmAlert {
                    labels,
                    annotations: payload::annotations(rule, e, level),
                    starts_at: e.inst.since,
                    ends_at: if firing {
                        now + ends_ahead
                    } else {
                        e.inst.resolved_at.unwrap_or(now)
                    },
                    generator_url: payload::graph_url(&self.cfg.external_url, rule, &e.series),
                };
                out.push(payload::alertmanager(&alert));
                e.am_sent = now;
                if firing {
                    if let Some(old) = e.am_alert.take().filter(|a| a.labels != alert.labels) {
                        ended.push(AmAlert {
                            ends_at: now,
                            ..old
                        });
                    }
                    e.am_alert = Some(alert);
                }
            }
        }
        p.am_resolved
            .extend(ended.into_iter().map(|alert| AmResolved { alert, sent: 0 }));
        p.am_resolved.retain(|a| now - a.alert.ends_at <= keep);
        for a in p.am_resolved.iter_mut().filter(|a| now - a.sent >= resend) {
            a.sent = now;
            out.push(payload::alertmanager(&a.alert));
        }
        if !out.is_empty() {
            self.dirty = true;
        }
        out
    }
}

impl Engine {
    /// Delivers what is due: the Alertmanager batch and the outbox. Failures are counted and
    /// retried; evaluation never waits for them.
    pub(crate) async fn deliver(&self, client: &reqwest::Client, now: i64) {
        self.deliver_alertmanager(client, now).await;
        self.deliver_outbox(client, now).await;
    }

    async fn deliver_alertmanager(&self, client: &reqwest::Client, now: i64) {
        let (targets, batch) = {
            let mut g = self.lock();
            let targets: Vec<(usize, String)> = g
                .cfg
                .notifiers
                .iter()
                .enumerate()
                .filter_map(|(i, n)| match &n.kind {
                    NotifyKind::Alertmanager { url } => Some((i, url.clone())),
                    _ => None,
                })
                .collect();
            let batch = if targets.is_empty() {
                Vec::new()
            } else {
                g.am_batch(now)
            };
            (targets, batch)
        };
        if batch.is_empty() {
            return;
        }
        for (i, url) in targets {
            let wanted: Vec<&Value> = {
                let g = self.lock();
                let n = &g.cfg.notifiers[i];
                batch
                    .iter()
                    .filter(|a| n.wants(a["labels"]["alertname"].as_str().unwrap_or("")))
                    .collect()
            };
            if wanted.is_empty() {
                continue;
            }
            let res = client
                .post(format!("{url}/api/v2/alerts"))
                .json(&wanted)
                .send()
                .await;
            let mut g = self.lock();
            // A reload while the request was out may have taken the notifier away.
            let Some(st) = g.stats.get_mut(i) else {
                continue;
            };
            match res {
                Ok(r) if r.status().is_success() => st.sent += wanted.len() as u64,
                Ok(r) => {
                    st.failed_attempts += 1;
                    st.last_error = Some(format!("HTTP {}", r.status()));
                }
                Err(e) => {
                    st.failed_attempts += 1;
                    st.last_error = Some(e.to_string());
                    // Sent again in a few seconds, not at the next re-send.
                    let retry_at = now - g.cfg.resend_interval + AM_RETRY_SECS;
                    for run in g.p.rules.values_mut() {
                        for e in run.instances.values_mut() {
                            if e.am_sent == now {
                                e.am_sent = retry_at;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn deliver_outbox(&self, client: &reqwest::Client, now: i64) {
        let due: Vec<(usize, Outgoing, NotifyKind)> = {
            let g = self.lock();
            g.p.outbox
                .iter()
                .enumerate()
                .filter(|(_, o)| o.next_try <= now)
                .filter_map(|(i, o)| {
                    g.cfg
                        .notifiers
                        .get(o.notifier)
                        .map(|n| (i, o.clone(), n.kind.clone()))
                })
                .take(OUTBOX_BATCH)
                .collect()
        };
        let mut done: Vec<usize> = Vec::new();
        let mut retry: Vec<usize> = Vec::new();
        for (idx, o, kind) in due {
            let (url, headers) = match &kind {
                NotifyKind::PagerDuty { url, .. } => (url.clone(), BTreeMap::new()),
                NotifyKind::Webhook { url, headers } => (url.clone(), headers.clone()),
                _ => {
                    done.push(idx);
                    continue;
                }
            };
            let mut req = client.post(&url).json(&o.body);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let res = req.send().await;
            let mut g = self.lock();
            let Some(st) = g.stats.get_mut(o.notifier) else {
                continue;
            };
            match res {
                Ok(r) if r.status().is_success() => {
                    st.sent += 1;
                    done.push(idx);
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    st.failed_attempts += 1;
                    st.last_error = Some(format!("HTTP {}", r.status()));
                    retry.push(idx);
                }
                Ok(r) => {
                    // 4xx other than 429: the event itself is refused; retrying cannot help.
                    st.dropped += 1;
                    st.last_error = Some(format!("HTTP {} (not retried)", r.status()));
                    tracing::error!(notifier = st.kind, status = %r.status(), "a notification was refused");
                    done.push(idx);
                }
                Err(e) => {
                    st.failed_attempts += 1;
                    st.last_error = Some(e.to_string());
                    retry.push(idx);
                }
            }
        }
        if done.is_empty() && retry.is_empty() {
            return;
        }
        let mut g = self.lock();
        for idx in retry {
            if let Some(o) = g.p.outbox.get_mut(idx) {
                o.next_try = now + retry_after(o.attempts);
                o.attempts += 1;
            }
        }
        let mut i = 0;
        g.p.outbox.retain(|_| {
            let keep = !done.contains(&i);
            i += 1;
            keep
        });
        g.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_backoff_doubles_up_to_five_minutes() {
        let waits: Vec<i64> = (0..10).map(retry_after).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }
}
