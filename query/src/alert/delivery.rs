//! Getting notifications out without ever holding evaluation up. Two ways, because the peers
//! want two things (`contracts/alerting.md`):
//!
//! - PagerDuty and webhooks want one event per state change, grouped in incidents. An
//!   instance's first trigger opens its incident (a dedup key, [`payload::incident_key`]); level
//!   changes continue it; its resolve goes to the notifiers its triggers went to, under that key.
//!   A transition queues one document per notifier in the outbox, which is saved with the state;
//!   delivery sends what is due and retries connection errors, 429 and 5xx with one backoff
//!   policy ([`retry_after`]); any other 4xx is dropped (counted, logged), since sending it again
//!   cannot help. The documents of one incident to one notifier go out in order: a resolve never
//!   overtakes the trigger it closes.
//! - Alertmanager wants state, re-sent: every `resend_interval` each firing instance goes out with
//!   `endsAt` a few intervals ahead, each resolved one with its `endsAt` for
//!   `resolved_resend_for`, and so do alerts that ended under other labels ([`AmResolved`]).
//!   Alertmanager knows an alert by its labels alone, so an instance remembers the alert it was
//!   sent: its resolve carries the same labels, and when its labels change (another level, a
//!   changed rule) the old alert is ended, until those labels fire again (the level came back):
//!   then the ended alert is no longer sent, or Alertmanager would resolve what fires. Nothing is
//!   queued: a send that does not connect is made again a few seconds later, one that is refused
//!   at the next re-send.
//!
//! Failures are counted per notifier ([`NotifierStats`], kept across reloads) and never reach
//! evaluation.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::config::{NotifyKind, Rule};
use super::engine::{Engine, Inner};
use super::machine::{Level, State, Transition};
use super::payload::{self, Notice};
use super::state::{AmAlert, AmResolved, Labels, Outgoing};

/// Delivery counters of one notifier, kept under its [`Notifier::id`](super::config::Notifier::id)
/// so that a reload keeps them.
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

/// How long one notification may take.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The HTTP clients delivery sends with: one shared by the notifiers without TLS files, and
/// one of its own for each notifier with a CA file or a client certificate. Those are built
/// again after every reload (which is how a renewed certificate is read); one whose files no
/// longer load fails its sends, counted and retried like a receiver that is down, until a
/// reload brings files that do.
pub(crate) struct Clients {
    shared: reqwest::Client,
    own: BTreeMap<String, Result<reqwest::Client, String>>,
    /// The engine's reload count they were built at (`None`: not built yet).
    built_at: Option<u64>,
}

impl Clients {
    pub(crate) fn new(shared: reqwest::Client) -> Clients {
        Clients {
            shared,
            own: BTreeMap::new(),
            built_at: None,
        }
    }

    /// A shared client with the usual timeout.
    pub(crate) fn standard() -> Clients {
        let shared = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "no HTTP client with a timeout; using the default one");
                reqwest::Client::new()
            });
        Clients::new(shared)
    }

    /// Builds the notifiers' own clients if the configuration was reloaded since.
    fn refresh(&mut self, reloads: u64, notifiers: &[super::config::Notifier]) {
        if self.built_at == Some(reloads) {
            return;
        }
        self.built_at = Some(reloads);
        self.own = notifiers
            .iter()
            .filter(|n| n.tls.is_set())
            .map(|n| {
                let names = ["ca_file", "client_cert", "client_key"];
                let client = n.tls.load(names).and_then(|config| {
                    reqwest::Client::builder()
                        .timeout(SEND_TIMEOUT)
                        .use_preconfigured_tls(config)
                        .build()
                        .map_err(|e| format!("TLS client: {e}"))
                });
                if let Err(e) = &client {
                    tracing::error!(notifier = %n.id, error = %e, "the notifier's TLS files do not load; its sends fail until a reload");
                }
                (n.id.clone(), client)
            })
            .collect();
    }

    /// The client notifier `id` sends with, or why it cannot send.
    fn get(&self, id: &str) -> Result<&reqwest::Client, String> {
        match self.own.get(id) {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(&self.shared),
        }
    }
}

impl Inner {
    /// Queues what a transition of instance `key` of `rule` notifies (PagerDuty, webhook,
    /// console), and has Alertmanager told at the next delivery. A first trigger opens the
    /// instance's incident; a level change continues it; a resolve goes to the notifiers the
    /// triggers went to, under the incident's key, even when a silence began in between (a
    /// silence holds back pages, it does not leave incidents open).
    pub(super) fn notify(&mut self, rule: &Rule, key: &str, tr: &Transition, now: i64) {
        let Some(x) = self
            .p
            .rules
            .get_mut(&rule.name)
            .and_then(|r| r.instances.get_mut(key))
        else {
            return;
        };
        // Any transition goes to Alertmanager at the next delivery, not at the next re-send
        // (a level change ends the alert of the old level there: its labels differ).
        x.am_sent = 0;
        let e = x.clone();
        let silenced = self.p.silenced(&rule.name, &e.series, now);
        let (key_of, open) = match (tr, &e.incident) {
            (Transition::Fired { previous: None, .. }, _) | (_, None) => {
                (payload::incident_key(rule, &e), None)
            }
            (_, Some(i)) => (i.key.clone(), Some(i.clone())),
        };
        let n = Notice::new(&self.cfg.external_url, rule, &e, tr, key_of, now);
        self.tell(&n, silenced);
        let incident = match tr {
            Transition::Resolved { .. } => {
                if let Some(i) = &open {
                    self.queue_to(&i.notifiers, &n);
                }
                None
            }
            Transition::Fired { .. } => {
                let mut i = n.incident(&rule.labels);
                if let Some(o) = open {
                    i.notifiers = o.notifiers;
                }
                if !silenced {
                    let to = self.wanting(&rule.name);
                    self.queue_to(&to, &n);
                    for id in to {
                        if !i.notifiers.contains(&id) {
                            i.notifiers.push(id);
                        }
                    }
                }
                Some(i)
            }
        };
        if let Some(x) = self
            .p
            .rules
            .get_mut(&rule.name)
            .and_then(|r| r.instances.get_mut(key))
        {
            x.incident = incident;
        }
        self.dirty = true;
    }

    /// Webhooks get a document per re-send too (`contracts/alerting.md`, section 4): every
    /// `resend_interval` each firing instance whose incident went to a webhook that takes
    /// re-sends is sent again under the incident's key, as it is now, marked `"resend": true`.
    /// Not while it is silenced (a silence holds back pages); PagerDuty gets state changes only.
    pub(super) fn webhook_resends(&mut self, now: i64) {
        let resend = self.cfg.resend_interval;
        let mut due: Vec<(Vec<String>, Notice)> = Vec::new();
        let (cfg, p) = (&self.cfg, &mut self.p);
        for rule in &cfg.rules {
            let Some(run) = p.rules.get_mut(&rule.name) else {
                continue;
            };
            for e in run.instances.values_mut() {
                let Some(level) = e.inst.level.filter(|_| e.inst.state == State::Firing) else {
                    continue;
                };
                let Some(i) = e.incident.as_mut().filter(|i| now - i.sent_at >= resend) else {
                    continue;
                };
                i.sent_at = now;
                let to: Vec<String> = i
                    .notifiers
                    .iter()
                    .filter(|id| {
                        matches!(
                            cfg.notifier(id).map(|n| &n.kind),
                            Some(NotifyKind::Webhook { resend: true, .. })
                        )
                    })
                    .cloned()
                    .collect();
                let key = i.key.clone();
                if to.is_empty() || super::state::silenced(&p.silences, &rule.name, &e.series, now)
                {
                    continue;
                }
                let tr = Transition::Fired {
                    level,
                    previous: Some(level),
                };
                let mut n = Notice::new(&cfg.external_url, rule, e, &tr, key, now);
                n.resend = true;
                due.push((to, n));
            }
        }
        for (to, n) in due {
            self.queue_to(&to, &n);
        }
    }

    /// The PagerDuty and webhook notifiers that want notifications of rule `rule`.
    pub(super) fn wanting(&self, rule: &str) -> Vec<String> {
        self.cfg
            .notifiers
            .iter()
            .filter(|n| {
                matches!(
                    n.kind,
                    NotifyKind::PagerDuty { .. } | NotifyKind::Webhook { .. }
                ) && n.wants(rule)
            })
            .map(|n| n.id.clone())
            .collect()
    }

    /// Queues `n` for each of the notifiers `to` that is still configured.
    pub(super) fn queue_to(&mut self, to: &[String], n: &Notice) {
        for id in to {
            let body = match self.cfg.notifier(id).map(|x| &x.kind) {
                Some(NotifyKind::PagerDuty { routing_key, .. }) => n.pagerduty(routing_key),
                Some(NotifyKind::Webhook { .. }) => n.webhook(),
                _ => continue,
            };
            self.p.queue(id, body, n.now);
        }
        self.dirty = true;
    }

    /// The Alertmanager batch due at `now`: firing instances due for a re-send, resolved ones
    /// within the re-send window, and alerts that ended under other labels. A firing instance
    /// whose labels are no longer those Alertmanager has (another level, a changed rule) ends
    /// the old alert here; a resolved one is sent under the labels it fired with. An ended alert
    /// whose labels fire again (the level came back, the labels were changed back) is not sent
    /// as resolved any more: Alertmanager would end the alert that fires.
    pub(super) fn am_batch(&mut self, now: i64) -> Vec<Value> {
        let resend = self.cfg.resend_interval;
        let keep = self.cfg.resolved_resend_for;
        // Prometheus: `endsAt` is 4 × max(evaluation interval, re-send delay) ahead.
        let ends_ahead =
            4 * resend.max(self.cfg.rules.iter().map(|r| r.interval).max().unwrap_or(0));
        let mut out = Vec::new();
        let mut ended = Vec::new();
        let mut firing_labels: Vec<Labels> = Vec::new();
        let p = &mut self.p;
        // The rules with ended alerts still being sent: only their firing labels can match.
        let ended_rules: HashSet<String> = p
            .am_resolved
            .iter()
            .filter_map(|a| a.alert.labels.get("alertname").cloned())
            .collect();
        for rule in &self.cfg.rules {
            let Some(run) = p.rules.get_mut(&rule.name) else {
                continue;
            };
            let check_ended = ended_rules.contains(&rule.name);
            for e in run.instances.values_mut() {
                let firing = e.inst.state == State::Firing;
                let resolved = e.inst.state == State::Ok
                    && e.inst.resolved_at.is_some_and(|t| now - t <= keep);
                let level = if firing {
                    e.inst.level
                } else {
                    e.inst.resolved_level
                }
                .unwrap_or(Level::Warning);
                if firing && check_ended {
                    firing_labels.push(payload::labels(rule, e, level));
                }
                if !(firing || resolved)
                    || now - e.am_sent < resend
                    || super::state::silenced(&p.silences, &rule.name, &e.series, now)
                {
                    continue;
                }
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
        p.am_resolved
            .retain(|a| now - a.alert.ends_at <= keep && !firing_labels.contains(&a.alert.labels));
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
    pub(crate) async fn deliver(&self, clients: &mut Clients, now: i64) {
        {
            let g = self.lock();
            clients.refresh(g.reloads, &g.cfg.notifiers);
        }
        self.deliver_alertmanager(clients, now).await;
        self.lock().webhook_resends(now);
        self.deliver_outbox(clients, now).await;
    }

    async fn deliver_alertmanager(&self, clients: &Clients, now: i64) {
        let (targets, batch) = {
            let mut g = self.lock();
            let targets: Vec<(String, String, Vec<String>)> = g
                .cfg
                .notifiers
                .iter()
                .filter_map(|n| match &n.kind {
                    NotifyKind::Alertmanager { url } => {
                        Some((n.id.clone(), url.clone(), n.rules.clone()))
                    }
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
        for (id, url, rules) in targets {
            let wanted: Vec<&Value> = batch
                .iter()
                .filter(|a| {
                    let rule = a["labels"]["alertname"].as_str().unwrap_or("");
                    rules.is_empty() || rules.iter().any(|r| r == rule)
                })
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let res = match clients.get(&id) {
                Ok(client) => client
                    .post(format!("{url}/api/v2/alerts"))
                    .json(&wanted)
                    .send()
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let mut g = self.lock();
            let retry_at = now - g.cfg.resend_interval + AM_RETRY_SECS;
            // A reload while the request was out may have taken the notifier away.
            let Some(st) = g.stats.get_mut(&id) else {
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
                    st.last_error = Some(e);
                    // Sent again in a few seconds, not at the next re-send.
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

    /// Sends the outbox notifications that are due, oldest first. The notifications of one
    /// incident to one notifier go out in the order they were queued: one waits while an
    /// earlier one waits for its retry, so a resolve never overtakes its trigger (PagerDuty
    /// would open the incident after closing it, and keep it open).
    async fn deliver_outbox(&self, clients: &Clients, now: i64) {
        let due: Vec<(Outgoing, NotifyKind)> = {
            let g = self.lock();
            let mut waiting: HashSet<(&str, &str)> = HashSet::new();
            let mut due = Vec::new();
            for o in &g.p.outbox {
                if due.len() == OUTBOX_BATCH {
                    break;
                }
                let incident = (o.to.as_str(), o.incident());
                if waiting.contains(&incident) {
                    continue;
                }
                if o.next_try > now {
                    waiting.insert(incident);
                    continue;
                }
                if let Some(n) = g.cfg.notifier(&o.to) {
                    due.push((o.clone(), n.kind.clone()));
                }
            }
            due
        };
        let mut done: HashSet<u64> = HashSet::new();
        let mut retry: HashSet<u64> = HashSet::new();
        let mut failed: HashSet<(String, String)> = HashSet::new();
        for (o, kind) in due {
            let incident = (o.to.clone(), o.incident().to_string());
            if failed.contains(&incident) {
                continue;
            }
            let (url, headers) = match &kind {
                NotifyKind::PagerDuty { url, .. } => (url.clone(), BTreeMap::new()),
                NotifyKind::Webhook { url, headers, .. } => (url.clone(), headers.clone()),
                _ => {
                    done.insert(o.id);
                    continue;
                }
            };
            let res = match clients.get(&o.to) {
                Ok(client) => {
                    let mut req = client.post(&url).json(&o.body);
                    for (k, v) in &headers {
                        req = req.header(k, v);
                    }
                    req.send().await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            let mut g = self.lock();
            let Some(st) = g.stats.get_mut(&o.to) else {
                continue;
            };
            match res {
                Ok(r) if r.status().is_success() => {
                    st.sent += 1;
                    done.insert(o.id);
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    st.failed_attempts += 1;
                    st.last_error = Some(format!("HTTP {}", r.status()));
                    retry.insert(o.id);
                    failed.insert(incident);
                }
                Ok(r) => {
                    // 4xx other than 429: the event itself is refused; retrying cannot help.
                    st.dropped += 1;
                    st.last_error = Some(format!("HTTP {} (not retried)", r.status()));
                    tracing::error!(notifier = st.kind, status = %r.status(), "a notification was refused");
                    done.insert(o.id);
                }
                Err(e) => {
                    st.failed_attempts += 1;
                    st.last_error = Some(e);
                    retry.insert(o.id);
                    failed.insert(incident);
                }
            }
        }
        if done.is_empty() && retry.is_empty() {
            return;
        }
        let mut g = self.lock();
        for o in g.p.outbox.iter_mut().filter(|o| retry.contains(&o.id)) {
            o.next_try = now + retry_after(o.attempts);
            o.attempts += 1;
        }
        g.p.outbox.retain(|o| !done.contains(&o.id));
        g.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::alert::test_support::{engine_on_file, reload_at, source, AmModel, Receiver};

    const T: i64 = 1_800_000_000;

    #[test]
    fn one_backoff_doubles_up_to_five_minutes() {
        let waits: Vec<i64> = (0..10).map(retry_after).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    /// An alerting file: `notify` (TOML), and one rule on `test.value` (warning above 20,
    /// critical above 50, evaluated every 10 s on the last point) with the label `team`.
    fn rules(notify: &str, team: &str) -> String {
        format!(
            r#"resend_interval = "10s"
resolved_resend_for = "5m"
{notify}
[[rule]]
name = "High"
target = "test.value"
window = "10s"
reduce = "last"
warn = 20
crit = 50
interval = "10s"
nodata = "keep"
labels = {{ team = "{team}" }}
"#
        )
    }

    const AM: &str = "[[notify]]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9\"\n";
    const PD_HOOK: &str =
        "[[notify]]\nkind = \"pagerduty\"\nurl = \"http://127.0.0.1:9/pd\"\nrouting_key = \"K\"\n\
        [[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n";

    /// `test.value` from `T`, every 10 s.
    fn values(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().copied().map(Some).collect()
    }

    /// Issue 17 (`contracts/alerting.md`, section 4): a webhook gets a document per state
    /// change and per re-send: every `resend_interval` while the instance fires, under the
    /// incident's key, marked `"resend": true`; never after the resolve, never while silenced.
    /// A webhook with `resend = false`, and PagerDuty, get the state changes only.
    #[test]
    fn issue_17_webhooks_get_a_document_per_re_send_while_firing() {
        let s = source(&[(
            "test.value",
            T,
            values(&[60., 60., 60., 60., 60., 1., 1., 1., 1., 1., 1., 1.]),
        )]);
        let notify = format!(
            "{PD_HOOK}[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/quiet\"\nresend = false\n"
        );
        let (e, _dir) = engine_on_file(&s, &rules(&notify, "web"));
        for t in (T..=T + 110).step_by(5) {
            e.evaluate_due(t);
            e.lock().webhook_resends(t);
        }
        let summary = |bodies: Vec<Value>| -> Vec<(String, bool)> {
            bodies
                .iter()
                .map(|h| {
                    (
                        h["state"].as_str().unwrap_or("?").to_string(),
                        h["resend"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        };
        let hooks: Vec<Value> = e
            .lock()
            .p
            .outbox
            .iter()
            .filter(|o| o.to == "webhook http://127.0.0.1:9/hook")
            .map(|o| o.body.clone())
            .collect();
        let got = summary(hooks.clone());
        let resends = got.iter().filter(|(_, r)| *r).count();
        assert!(resends >= 2, "{got:?}");
        assert_eq!(got.first(), Some(&("firing".to_string(), false)), "{got:?}");
        assert_eq!(
            got.last(),
            Some(&("resolved".to_string(), false)),
            "{got:?}"
        );
        assert_eq!(got.len(), resends + 2, "{got:?}");
        let key = &hooks[0]["dedup_key"];
        assert!(hooks.iter().all(|h| &h["dedup_key"] == key), "one incident");
        for h in &hooks[1..hooks.len() - 1] {
            assert_eq!(h["previous_state"], "firing");
            assert_eq!(h["level"], "critical");
            assert_eq!(h["value"], 60.0);
        }
        let times: Vec<i64> = hooks
            .iter()
            .filter_map(|h| h["timestamp"].as_str())
            .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp())
            .collect();
        assert!(
            times[..times.len() - 1]
                .windows(2)
                .all(|w| w[1] - w[0] >= 10),
            "re-sent every resend_interval: {times:?}"
        );
        let quiet: Vec<Value> = e
            .lock()
            .p
            .outbox
            .iter()
            .filter(|o| o.to.ends_with("/quiet"))
            .map(|o| o.body.clone())
            .collect();
        assert_eq!(
            summary(quiet),
            [
                ("firing".to_string(), false),
                ("resolved".to_string(), false)
            ]
        );
        assert_eq!(
            pd_events(&queued(&e, "pagerduty"))
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>(),
            ["trigger", "resolve"]
        );
    }

    /// A silenced instance is not re-sent to webhooks.
    #[test]
    fn issue_17_a_silenced_instance_is_not_re_sent() {
        let s = source(&[("test.value", T, values(&[60.; 12]))]);
        let (e, _dir) = engine_on_file(&s, &rules(PD_HOOK, "web"));
        e.evaluate_due(T);
        assert_eq!(queued(&e, "webhook").len(), 1, "the trigger");
        e.lock().p.silences.push(super::super::state::Silence {
            id: 1,
            rule: "High".into(),
            series: None,
            until: T + 1000,
            comment: String::new(),
        });
        for t in (T + 5..=T + 60).step_by(5) {
            e.evaluate_due(t);
            e.lock().webhook_resends(t);
        }
        assert_eq!(
            queued(&e, "webhook").len(),
            1,
            "{:?}",
            queued(&e, "webhook")
        );
    }

    /// The queued bodies for the notifier whose id starts with `kind`, in order.
    fn queued(e: &Engine, kind: &str) -> Vec<Value> {
        e.lock()
            .p
            .outbox
            .iter()
            .filter(|o| o.to.starts_with(kind))
            .map(|o| o.body.clone())
            .collect()
    }

    /// PagerDuty events as (action, dedup key).
    fn pd_events(bodies: &[Value]) -> Vec<(String, String)> {
        bodies
            .iter()
            .map(|b| {
                (
                    b["event_action"].as_str().unwrap_or("").to_string(),
                    b["dedup_key"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn log(entries: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
        entries.iter().map(|(a, s)| (a.to_string(), *s)).collect()
    }

    #[test]
    fn issue_17_a_level_that_comes_back_is_not_resolved_in_alertmanager_again() {
        // Critical, warning, critical for 50 s (five re-sends), then ok.
        let s = source(&[(
            "test.value",
            T,
            values(&[60., 30., 60., 60., 60., 60., 60., 1., 1., 1., 1., 1., 1.]),
        )]);
        let (e, _dir) = engine_on_file(&s, &rules(&format!("{AM}{PD_HOOK}"), "web"));
        let mut am = AmModel::default();
        for t in (T..=T + 120).step_by(10) {
            e.evaluate_due(t);
            let batch = e.lock().am_batch(t);
            am.feed(&batch, t);
        }
        assert_eq!(
            am.log,
            log(&[
                ("critical/web", "firing"),
                ("critical/web", "resolved"),
                ("warning/web", "firing"),
                ("critical/web", "firing"),
                ("warning/web", "resolved"),
                ("critical/web", "resolved"),
            ])
        );
        // PagerDuty: one incident throughout (a level change is a trigger of the same key).
        let pd = pd_events(&queued(&e, "pagerduty"));
        let actions: Vec<&str> = pd.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(actions, ["trigger", "trigger", "trigger", "resolve"]);
        assert!(pd.iter().all(|(_, k)| *k == pd[0].1), "{pd:?}");
        let hooks: Vec<String> = queued(&e, "webhook")
            .iter()
            .map(|h| format!("{} {} {}", h["state"], h["level"], h["previous_level"]))
            .collect();
        assert_eq!(
            hooks,
            [
                r#""firing" "critical" null"#,
                r#""firing" "warning" "critical""#,
                r#""firing" "critical" "warning""#,
                r#""resolved" "critical" "critical""#,
            ]
        );
    }

    #[test]
    fn issue_17_a_label_edit_ends_the_old_incident_everywhere_and_opens_one_under_the_new() {
        let s = source(&[(
            "test.value",
            T,
            values(&[60., 60., 60., 60., 1., 1., 1., 1., 1., 1., 1.]),
        )]);
        let notify = format!("{AM}{PD_HOOK}");
        let (e, dir) = engine_on_file(&s, &rules(&notify, "web"));
        let mut am = AmModel::default();
        for t in (T..=T + 100).step_by(5) {
            if t == T + 15 {
                reload_at(&e, &dir, &rules(&notify, "ops"), t);
            }
            if t == T + 25 {
                // Only the summary: the same incident, nothing to tell.
                let text = rules(&notify, "ops")
                    .replace("[[rule]]", "[[rule]]\nsummary = \"now {{value}}\"");
                reload_at(&e, &dir, &text, t);
            }
            e.evaluate_due(t);
            let batch = e.lock().am_batch(t);
            am.feed(&batch, t);
        }
        assert_eq!(
            am.log,
            log(&[
                ("critical/web", "firing"),
                ("critical/ops", "firing"),
                ("critical/web", "resolved"),
                ("critical/ops", "resolved"),
            ])
        );
        let pd = pd_events(&queued(&e, "pagerduty"));
        let (web, ops) = (pd[0].1.clone(), pd[2].1.clone());
        assert_ne!(web, ops, "another incident");
        let want: Vec<(String, String)> = [
            ("trigger", &web),
            ("resolve", &web),
            ("trigger", &ops),
            ("resolve", &ops),
        ]
        .iter()
        .map(|(a, k)| (a.to_string(), k.to_string()))
        .collect();
        assert_eq!(pd, want);
        let hooks = queued(&e, "webhook");
        let got: Vec<(Value, Value, Value, Value)> = hooks
            .iter()
            .map(|h| {
                (
                    h["state"].clone(),
                    h["labels"]["team"].clone(),
                    h["dedup_key"].clone(),
                    h["reason"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (json!("firing"), json!("web"), json!(web), Value::Null),
                (
                    json!("resolved"),
                    json!("web"),
                    json!(web),
                    json!("labels changed")
                ),
                (json!("firing"), json!("ops"), json!(ops), Value::Null),
                (json!("resolved"), json!("ops"), json!(ops), Value::Null),
            ]
        );
        assert_eq!(hooks[3]["annotations"]["summary"], "now 1");
    }

    #[test]
    fn issue_17_a_resolve_goes_where_the_trigger_went_even_under_a_silence() {
        let s = source(&[("test.value", T, values(&[60., 1., 1.]))]);
        let (e, _dir) = engine_on_file(&s, &rules(PD_HOOK, "web"));
        e.evaluate_due(T);
        e.silence("High", None, 3600, "maintenance".into(), T + 5)
            .expect("silence");
        e.evaluate_due(T + 10);
        let pd = pd_events(&queued(&e, "pagerduty"));
        assert_eq!(
            pd.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
            ["trigger", "resolve"],
            "the incident it opened closes: {pd:?}"
        );
        assert_eq!(pd[0].1, pd[1].1);
        assert_eq!(queued(&e, "webhook").len(), 2);
        assert!(e.take_console()[1].ends_with("(silenced)"));
    }

    #[tokio::test]
    async fn issue_17_a_resolve_never_overtakes_its_trigger() {
        let rx = Receiver::start().await;
        let s = source(&[("test.value", T, values(&[60., 1., 1.]))]);
        let notify = format!(
            "[[notify]]\nkind = \"pagerduty\"\nurl = \"{}/pd\"\nrouting_key = \"K\"\n",
            rx.url
        );
        let (e, _dir) = engine_on_file(&s, &rules(&notify, "web"));
        e.evaluate_due(T);
        e.evaluate_due(T + 10);
        let mut client = Clients::new(reqwest::Client::new());
        rx.answer("/pd", &[429]);
        e.deliver(&mut client, T + 10).await;
        let actions = |rx: &Receiver| -> Vec<String> {
            pd_events(&rx.bodies("/pd"))
                .into_iter()
                .map(|(a, _)| a)
                .collect()
        };
        assert_eq!(actions(&rx), ["trigger"], "the resolve waits behind it");
        e.deliver(&mut client, T + 11).await;
        assert_eq!(actions(&rx), ["trigger"], "backing off");
        e.deliver(&mut client, T + 12).await;
        assert_eq!(actions(&rx), ["trigger", "trigger", "resolve"]);
        assert_eq!(e.notifiers()[0].pending, 0);
    }

    #[tokio::test]
    async fn issue_17_counters_and_queued_notifications_follow_their_notifier_across_a_reload() {
        let rx = Receiver::start().await;
        let s = source(&[("test.value", T, values(&[60., 1., 1.]))]);
        let hook_a = format!("[[notify]]\nkind = \"webhook\"\nurl = \"{}/a\"\n", rx.url);
        let pd = format!(
            "[[notify]]\nkind = \"pagerduty\"\nurl = \"{}/pd\"\nrouting_key = \"K\"\n",
            rx.url
        );
        let hook_b = format!("[[notify]]\nkind = \"webhook\"\nurl = \"{}/b\"\n", rx.url);
        let (e, dir) = engine_on_file(&s, &rules(&format!("{hook_a}{pd}"), "web"));
        let mut client = Clients::new(reqwest::Client::new());
        e.evaluate_due(T);
        e.deliver(&mut client, T).await;
        rx.answer("/a", &[503]);
        e.evaluate_due(T + 10);
        e.deliver(&mut client, T + 10).await;
        let counts = |e: &Engine| -> Vec<(&'static str, u64, u64, usize)> {
            e.notifiers()
                .iter()
                .map(|n| (n.kind, n.sent, n.failed_attempts, n.pending))
                .collect()
        };
        assert_eq!(counts(&e), [("webhook", 1, 1, 1), ("pagerduty", 2, 0, 0)]);
        // Reordered, and one more: each keeps its counters and its queue.
        reload_at(
            &e,
            &dir,
            &rules(&format!("{pd}{hook_a}{hook_b}"), "web"),
            T + 11,
        );
        assert_eq!(
            counts(&e),
            [
                ("pagerduty", 2, 0, 0),
                ("webhook", 1, 1, 1),
                ("webhook", 0, 0, 0)
            ]
        );
        e.deliver(&mut client, T + 12).await;
        assert_eq!(
            counts(&e),
            [
                ("pagerduty", 2, 0, 0),
                ("webhook", 2, 1, 0),
                ("webhook", 0, 0, 0)
            ]
        );
        let states: Vec<Value> = rx.bodies("/a").iter().map(|b| b["state"].clone()).collect();
        assert_eq!(
            states,
            [json!("firing"), json!("resolved"), json!("resolved")]
        );
        assert_eq!(
            rx.bodies("/pd").len(),
            2,
            "nothing of the webhook's went to PagerDuty"
        );
        assert!(rx.bodies("/b").is_empty());
    }
}
