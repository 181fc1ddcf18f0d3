//! The alert engine: evaluates each rule at its interval on the query engine, keeps one
//! instance per returned series, notifies on transitions, and persists everything (instances,
//! silences, undelivered notifications) in the store, so a restart neither pages twice nor
//! loses a resolve.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::{fmt_value, render_template, Alerting, NotifyKind, Rule};
use super::machine::{resolve, step, Instance, Level, Obs, State, Transition};
use crate::graphite::evaluate;
use crate::source::Source;
use crate::Ctx;

/// The key the engine's state is saved under.
pub const STATE_KEY: &str = "alerts";

/// One alert instance with what identifies it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The series it follows (empty for the rule-level instance: no data, errors).
    pub series: String,
    pub tags: BTreeMap<String, String>,
    pub inst: Instance,
    /// When Alertmanager was last sent this instance.
    #[serde(default)]
    pub am_sent: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleRun {
    pub instances: BTreeMap<String, Entry>,
    #[serde(default)]
    pub last_eval: i64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_duration_ms: u64,
    #[serde(skip)]
    pub next_eval: i64,
}

/// A silence: notifications of a rule (or of one of its instances) are held back until `until`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Silence {
    pub id: u64,
    pub rule: String,
    /// One series of the rule, or every instance.
    pub series: Option<String>,
    pub until: i64,
    #[serde(default)]
    pub comment: String,
}

/// A notification waiting for delivery (PagerDuty, webhook), kept across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outgoing {
    pub notifier: usize,
    pub body: Value,
    pub attempts: u32,
    pub next_try: i64,
    /// When it was queued.
    #[serde(default)]
    pub created: i64,
}

/// An Alertmanager alert that ended with a level change (its labels changed with the severity):
/// sent as resolved for a while, like any resolved alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AmResolved {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub generator_url: String,
    #[serde(default)]
    pub sent: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    rules: BTreeMap<String, RuleRun>,
    silences: Vec<Silence>,
    outbox: Vec<Outgoing>,
    #[serde(default)]
    am_resolved: Vec<AmResolved>,
    #[serde(default)]
    next_silence: u64,
}

/// Delivery counters of one notifier.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifierStats {
    pub kind: &'static str,
    pub sent: u64,
    pub failed_attempts: u64,
    pub dropped: u64,
    pub pending: usize,
    pub last_error: Option<String>,
}

struct Inner {
    cfg: Alerting,
    p: Persisted,
    stats: Vec<NotifierStats>,
    dirty: bool,
    /// Lines for the console notifier, printed by the runner.
    console: Vec<String>,
}

/// The engine; shared by the evaluation loop and the HTTP API.
pub struct Engine {
    source: Arc<dyn Source>,
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("path", &self.path).finish()
    }
}

/// What evaluating one rule saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Series(Vec<(String, BTreeMap<String, String>, Option<f64>)>),
    Error(String),
}

/// Evaluates a rule's target at `now` and reduces each series over the window. For an absence
/// rule the value is the seconds since the series last reported (series with no point in the
/// look-back are not listed).
pub fn observe(source: &Arc<dyn Source>, rule: &Rule, now: i64) -> Observed {
    let from = now - rule.absent.map_or(rule.window, |(_, lookback)| lookback);
    let ctx = Ctx::new(source.clone(), from, now, now);
    match evaluate(&ctx, &rule.expr) {
        Err(e) => Observed::Error(e.to_string()),
        Ok(series) => Observed::Series(
            series
                .into_iter()
                .filter_map(|s| {
                    let values = s.values_cow();
                    let v = match rule.absent {
                        None => rule.reduce.apply(&values),
                        Some(_) => {
                            let last = values
                                .iter()
                                .rposition(|v| v.is_some_and(|x| !x.is_nan()))?;
                            // A point at `start + i*step` covers until the next step.
                            let t = s.start + (last as i64 + 1) * s.step;
                            Some((now - t).max(0) as f64)
                        }
                    };
                    Some((s.name.clone(), s.tags.clone(), v))
                })
                .collect(),
        ),
    }
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Inner {
    fn silenced(&self, rule: &str, series: &str, now: i64) -> bool {
        self.p.silences.iter().any(|s| {
            s.until > now && s.rule == rule && s.series.as_deref().is_none_or(|x| x == series)
        })
    }

    /// Labels of an instance as Alertmanager sees them.
    fn labels(rule: &Rule, e: &Entry, level: Level) -> BTreeMap<String, String> {
        let mut l = BTreeMap::new();
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

    fn annotations(rule: &Rule, e: &Entry, level: Level) -> BTreeMap<String, String> {
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
        let mut a = BTreeMap::new();
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

    fn graph_url(&self, rule: &Rule, series: &str) -> String {
        let target = if series.is_empty() {
            rule.target.as_str()
        } else {
            series
        };
        format!(
            "{}/render?target={}&from=-3h&format=svg",
            self.cfg.external_url,
            enc(target)
        )
    }

    /// Queues what a transition notifies (PagerDuty, webhook, console).
    fn notify(&mut self, rule: &Rule, key: &str, tr: &Transition, now: i64) {
        let Some(e) = self
            .p
            .rules
            .get(&rule.name)
            .and_then(|r| r.instances.get(key))
            .cloned()
        else {
            return;
        };
        let (state, level, previous) = match tr {
            Transition::Fired { level, previous } => ("firing", *level, *previous),
            Transition::Resolved { level } => ("resolved", *level, Some(*level)),
        };
        let labels = Self::labels(rule, &e, level);
        let annotations = Self::annotations(rule, &e, level);
        let graph = self.graph_url(rule, &e.series);
        // A level change ends the Alertmanager alert of the old level (its labels differ).
        if let (
            Transition::Fired {
                previous: Some(prev),
                ..
            },
            true,
        ) = (tr, e.inst.state == State::Firing)
        {
            self.p.am_resolved.push(AmResolved {
                labels: Self::labels(rule, &e, *prev),
                annotations: annotations.clone(),
                starts_at: e.inst.since,
                ends_at: now,
                generator_url: graph.clone(),
                sent: 0,
            });
        }
        // Any transition goes to Alertmanager at the next delivery, not at the next re-send.
        if let Some(x) = self
            .p
            .rules
            .get_mut(&rule.name)
            .and_then(|r| r.instances.get_mut(key))
        {
            x.am_sent = 0;
        }
        let silenced = self.silenced(&rule.name, &e.series, now);
        self.console.push(format!(
            "ALERT {} {}{} {} value={} threshold={}{}",
            state.to_uppercase(),
            rule.name,
            if e.series.is_empty() {
                String::new()
            } else {
                format!(" {}", e.series)
            },
            level.as_str(),
            e.inst.value.map_or("none".into(), fmt_value),
            e.inst.threshold.map_or("-".into(), fmt_value),
            if silenced { " (silenced)" } else { "" },
        ));
        if silenced {
            return;
        }
        let dedup = format!(
            "tally:{}:{}",
            rule.name,
            if e.series.is_empty() {
                "(rule)"
            } else {
                &e.series
            }
        );
        let dedup: String = dedup.chars().take(255).collect();
        for (i, n) in self.cfg.notifiers.iter().enumerate() {
            if !n.wants(&rule.name) {
                continue;
            }
            let body = match &n.kind {
                NotifyKind::PagerDuty { routing_key, .. } => {
                    let severity = match level {
                        Level::Critical => "critical",
                        Level::Warning => "warning",
                        Level::Nodata | Level::Error => "error",
                    };
                    let mut b = json!({
                        "routing_key": routing_key,
                        "event_action": if state == "resolved" { "resolve" } else { "trigger" },
                        "dedup_key": dedup,
                    });
                    if state != "resolved" {
                        b["payload"] = json!({
                            "summary": annotations.get("summary").cloned().unwrap_or_default(),
                            "source": "tally",
                            "severity": severity,
                            "timestamp": rfc3339(now),
                            "component": e.series,
                            "group": rule.name,
                            "custom_details": {
                                "value": e.inst.value,
                                "threshold": e.inst.threshold,
                                "target": rule.target,
                                "labels": labels,
                                "annotations": annotations,
                            },
                        });
                        b["links"] = json!([{"href": graph, "text": "graph"}]);
                    }
                    b
                }
                NotifyKind::Webhook { .. } => json!({
                    "version": "1",
                    "rule": rule.name,
                    "target": rule.target,
                    "series": e.series,
                    "labels": labels,
                    "annotations": annotations,
                    "state": state,
                    "previous_state": match (tr, previous) {
                        (Transition::Resolved { .. }, _) => "firing",
                        (_, Some(_)) => "firing",
                        _ => "ok",
                    },
                    "level": level.as_str(),
                    "previous_level": previous.map(Level::as_str),
                    "value": e.inst.value,
                    "threshold": e.inst.threshold,
                    "op": rule.op.as_str(),
                    "starts_at": rfc3339(e.inst.since),
                    "ends_at": if state == "resolved" { Some(rfc3339(now)) } else { None },
                    "timestamp": rfc3339(now),
                    "graph_url": graph,
                    "dedup_key": dedup,
                }),
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

    /// Applies one evaluation of `rule` at `now`.
    fn apply(&mut self, rule: &Rule, observed: Observed, now: i64, took_ms: u64) {
        let run = self.p.rules.entry(rule.name.clone()).or_default();
        run.last_eval = now;
        run.last_duration_ms = took_ms;
        run.next_eval = now + rule.interval;
        let mut transitions: Vec<(String, Transition)> = Vec::new();
        let before: Vec<(String, State, Option<Level>)> = run
            .instances
            .iter()
            .map(|(k, e)| (k.clone(), e.inst.state, e.inst.level))
            .collect();
        match observed {
            Observed::Error(msg) => {
                run.last_error = Some(msg.clone());
                let e = run.instances.entry(String::new()).or_insert_with(|| Entry {
                    series: String::new(),
                    tags: BTreeMap::new(),
                    inst: Instance::new(),
                    am_sent: 0,
                });
                if let Some(t) = step(rule, &mut e.inst, &Obs::Error(msg), now) {
                    transitions.push((String::new(), t));
                }
            }
            Observed::Series(series) => {
                run.last_error = None;
                let seen: std::collections::BTreeSet<String> =
                    series.iter().map(|s| s.0.clone()).collect();
                // The rule-level instance stands for "no series at all".
                if series.is_empty() {
                    let e = run.instances.entry(String::new()).or_insert_with(|| Entry {
                        series: String::new(),
                        tags: BTreeMap::new(),
                        inst: Instance::new(),
                        am_sent: 0,
                    });
                    if let Some(t) = step(rule, &mut e.inst, &Obs::NoData, now) {
                        transitions.push((String::new(), t));
                    }
                } else if let Some(e) = run.instances.get_mut("") {
                    if let Some(t) = resolve(&mut e.inst, now) {
                        transitions.push((String::new(), t));
                    }
                }
                for (name, tags, v) in series {
                    let e = run.instances.entry(name.clone()).or_insert_with(|| Entry {
                        series: name.clone(),
                        tags: tags.clone(),
                        inst: Instance::new(),
                        am_sent: 0,
                    });
                    e.tags = tags;
                    let obs = v.map_or(Obs::NoData, Obs::Value);
                    if let Some(t) = step(rule, &mut e.inst, &obs, now) {
                        transitions.push((name, t));
                    }
                }
                // Series that went away: an absent series is exactly what an absence rule
                // watches, so those keep their state; otherwise firing ones resolve.
                if rule.absent.is_none() {
                    for (k, e) in run.instances.iter_mut() {
                        if k.is_empty() || seen.contains(k) {
                            continue;
                        }
                        if e.inst.state == State::Firing {
                            if let Some(t) = resolve(&mut e.inst, now) {
                                transitions.push((k.clone(), t));
                            }
                        } else {
                            e.inst.state = State::Ok;
                            e.inst.level = None;
                        }
                    }
                }
            }
        }
        // Forget instances that are ok and past their resolved re-send time.
        let keep_for = self.cfg.resolved_resend_for;
        run.instances.retain(|k, e| {
            e.inst.state != State::Ok
                || e.inst.resolved_at.is_some_and(|t| now - t <= keep_for)
                || (!k.is_empty() && e.inst.last_eval == now)
        });
        let after: Vec<(String, State, Option<Level>)> = run
            .instances
            .iter()
            .map(|(k, e)| (k.clone(), e.inst.state, e.inst.level))
            .collect();
        if before != after {
            self.dirty = true;
        }
        for (key, t) in transitions {
            self.notify(rule, &key, &t, now);
        }
    }

    /// The Alertmanager batch due at `now`: firing instances due for a re-send, resolved ones
    /// within the re-send window.
    fn am_batch(&mut self, now: i64) -> Vec<Value> {
        let resend = self.cfg.resend_interval;
        let ends_ahead =
            4 * resend.max(self.cfg.rules.iter().map(|r| r.interval).max().unwrap_or(0));
        let mut out = Vec::new();
        // Read-only pass: the alerts due, built as documents; then their send times are noted.
        let mut sent: Vec<(&str, &str)> = Vec::new();
        for rule in &self.cfg.rules {
            let Some(run) = self.p.rules.get(&rule.name) else {
                continue;
            };
            for (k, e) in &run.instances {
                let firing = e.inst.state == State::Firing;
                let resolved = e.inst.state == State::Ok
                    && e.inst
                        .resolved_at
                        .is_some_and(|t| now - t <= self.cfg.resolved_resend_for);
                if !(firing || resolved)
                    || now - e.am_sent < resend
                    || self.silenced(&rule.name, &e.series, now)
                {
                    continue;
                }
                let level = if firing {
                    e.inst.level
                } else {
                    e.inst.resolved_level
                }
                .unwrap_or(Level::Warning);
                let ends = if firing {
                    now + ends_ahead
                } else {
                    e.inst.resolved_at.unwrap_or(now)
                };
                out.push(json!({
                    "labels": Self::labels(rule, e, level),
                    "annotations": Self::annotations(rule, e, level),
                    "startsAt": rfc3339(e.inst.since),
                    "endsAt": rfc3339(ends),
                    "generatorURL": self.graph_url(rule, &e.series),
                }));
                sent.push((&rule.name, k));
            }
        }
        let sent: Vec<(String, String)> = sent
            .into_iter()
            .map(|(r, k)| (r.to_owned(), k.to_owned()))
            .collect();
        for (rule, k) in sent {
            if let Some(x) = self
                .p
                .rules
                .get_mut(&rule)
                .and_then(|r| r.instances.get_mut(&k))
            {
                x.am_sent = now;
            }
        }
        let keep = self.cfg.resolved_resend_for;
        self.p.am_resolved.retain(|a| now - a.ends_at <= keep);
        for a in self
            .p
            .am_resolved
            .iter_mut()
            .filter(|a| now - a.sent >= resend)
        {
            a.sent = now;
            out.push(json!({
                "labels": a.labels, "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at), "endsAt": rfc3339(a.ends_at), "generatorURL": a.generator_url,
            }));
        }
        if !out.is_empty() {
            self.dirty = true;
        }
        out
    }
}

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

impl Engine {
    /// An engine over `source`, restoring the saved state.
    pub fn new(
        source: Arc<dyn Source>,
        cfg: Alerting,
        path: Option<PathBuf>,
    ) -> crate::Result<Engine> {
        let p: Persisted = match source.load_state(STATE_KEY)? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the saved alert state does not parse; starting from ok");
                Persisted::default()
            }),
            None => Persisted::default(),
        };
        let stats = cfg
            .notifiers
            .iter()
            .map(|n| NotifierStats {
                kind: n.name(),
                ..Default::default()
            })
            .collect();
        let engine = Engine {
            source,
            path,
            inner: Mutex::new(Inner {
                cfg,
                p,
                stats,
                dirty: false,
                console: Vec::new(),
            }),
        };
        engine.prune_removed_rules(now_secs());
        Ok(engine)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    /// Resolves and forgets the instances of rules that are gone.
    fn prune_removed_rules(&self, now: i64) {
        let mut g = self.lock();
        let names: Vec<String> = g.cfg.rules.iter().map(|r| r.name.clone()).collect();
        let gone: Vec<String> =
            g.p.rules
                .keys()
                .filter(|k| !names.contains(k))
                .cloned()
                .collect();
        for name in gone {
            if let Some(run) = g.p.rules.remove(&name) {
                for e in run
                    .instances
                    .values()
                    .filter(|e| e.inst.state == State::Firing)
                {
                    let level = e.inst.level.unwrap_or(Level::Warning);
                    let mut tags = e.tags.clone();
                    tags.insert("alertname".into(), name.clone());
                    tags.insert("severity".into(), level.as_str().into());
                    if !e.series.is_empty() {
                        tags.insert("series".into(), e.series.clone());
                    }
                    g.p.am_resolved.push(AmResolved {
                        labels: tags,
                        annotations: BTreeMap::new(),
                        starts_at: e.inst.since,
                        ends_at: now,
                        generator_url: String::new(),
                        sent: 0,
                    });
                }
            }
            g.dirty = true;
        }
    }

    /// Re-reads the alerting file (SIGHUP, `POST /api/v1/alerts/reload`). On errors the old
    /// rules stay and every problem is returned.
    pub fn reload(&self) -> Result<usize, Vec<String>> {
        let Some(path) = &self.path else {
            return Err(vec!["no alerting file to reload".into()]);
        };
        let cfg = Alerting::load(path)?;
        let n = cfg.rules.len();
        {
            let mut g = self.lock();
            g.stats = cfg
                .notifiers
                .iter()
                .map(|nf| NotifierStats {
                    kind: nf.name(),
                    ..Default::default()
                })
                .collect();
            g.p.outbox.retain(|o| o.notifier < cfg.notifiers.len());
            g.cfg = cfg;
            for run in g.p.rules.values_mut() {
                run.next_eval = 0;
            }
        }
        self.prune_removed_rules(now_secs());
        tracing::info!(rules = n, "alert rules reloaded");
        Ok(n)
    }

    /// Evaluates every rule due at `now` (blocking: call from a blocking thread). Returns how
    /// many rules were evaluated.
    pub fn evaluate_due(&self, now: i64) -> usize {
        let due: Vec<Rule> = {
            let g = self.lock();
            g.cfg
                .rules
                .iter()
                .filter(|r| {
                    g.p.rules
                        .get(&r.name)
                        .is_none_or(|run| run.next_eval <= now)
                })
                .cloned()
                .collect()
        };
        // Queries run in parallel over the cores; applying a result is a short locked step.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(due.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(rule) = due.get(i) else { break };
                    let started = std::time::Instant::now();
                    let observed = observe(&self.source, rule, now);
                    let took = started.elapsed().as_millis() as u64;
                    self.lock().apply(rule, observed, now, took);
                });
            }
        });
        due.len()
    }

    /// Evaluates one rule now regardless of its schedule (tests, benchmarks).
    pub fn evaluate_rule(&self, name: &str, now: i64) -> bool {
        let rule = self
            .lock()
            .cfg
            .rules
            .iter()
            .find(|r| r.name == name)
            .cloned();
        let Some(rule) = rule else { return false };
        let observed = observe(&self.source, &rule, now);
        self.lock().apply(&rule, observed, now, 0);
        true
    }

    /// Saves the state if it changed.
    pub fn persist(&self) {
        let doc = {
            let mut g = self.lock();
            if !g.dirty {
                return;
            }
            g.dirty = false;
            serde_json::to_vec(&g.p)
        };
        match doc {
            Ok(doc) => {
                if let Err(e) = self.source.save_state(STATE_KEY, &doc) {
                    tracing::error!(error = %e, "saving the alert state failed");
                    self.lock().dirty = true;
                }
            }
            Err(e) => tracing::error!(error = %e, "encoding the alert state failed"),
        }
    }

    /// Lines for the console notifier since the last call.
    pub fn take_console(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().console)
    }

    /// Rules' and instances' state for the API.
    pub fn alerts_json(&self, now: i64) -> Value {
        let g = self.lock();
        let mut out = Vec::new();
        for rule in &g.cfg.rules {
            let Some(run) = g.p.rules.get(&rule.name) else {
                continue;
            };
            for (k, e) in &run.instances {
                let level = e
                    .inst
                    .level
                    .or(e.inst.resolved_level)
                    .unwrap_or(Level::Warning);
                out.push(json!({
                    "rule": rule.name,
                    "series": e.series,
                    "labels": Inner::labels(rule, e, level),
                    "annotations": Inner::annotations(rule, e, level),
                    "state": e.inst.display_state(now, g.cfg.resolved_resend_for),
                    "level": e.inst.level.map(Level::as_str),
                    "value": e.inst.value,
                    "threshold": e.inst.threshold,
                    "since": e.inst.since,
                    "last_eval": e.inst.last_eval,
                    "resolved_at": e.inst.resolved_at,
                    "error": e.inst.error,
                    "silenced": g.silenced(&rule.name, &e.series, now),
                    "graph_url": g.graph_url(rule, if k.is_empty() { "" } else { &e.series }),
                }));
            }
        }
        json!({ "alerts": out })
    }

    pub fn rules_json(&self) -> Value {
        let g = self.lock();
        let rules: Vec<Value> = g
            .cfg
            .rules
            .iter()
            .map(|r| {
                let run = g.p.rules.get(&r.name);
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for e in run.map(|x| x.instances.values().collect::<Vec<_>>()).unwrap_or_default() {
                    *counts.entry(e.inst.display_state(now_secs(), g.cfg.resolved_resend_for)).or_default() += 1;
                }
                json!({
                    "name": r.name, "target": r.target, "interval": r.interval, "window": r.window,
                    "reduce": r.reduce, "op": r.op, "warn": r.warn, "crit": r.crit, "recover": r.recover,
                    "for": r.for_, "keep_firing_for": r.keep_firing_for, "nodata": r.nodata, "on_error": r.on_error,
                    "absent_for": r.absent.map(|a| a.0), "labels": r.labels,
                    "last_eval": run.map(|x| x.last_eval), "last_error": run.and_then(|x| x.last_error.clone()),
                    "last_duration_ms": run.map(|x| x.last_duration_ms), "instances": counts,
                })
            })
            .collect();
        json!({ "rules": rules })
    }

    pub fn notifiers_json(&self) -> Value {
        let g = self.lock();
        let mut stats = g.stats.clone();
        for (i, s) in stats.iter_mut().enumerate() {
            s.pending = g.p.outbox.iter().filter(|o| o.notifier == i).count();
        }
        json!({ "notifiers": stats })
    }

    /// Silences a rule, or one of its series, for `secs`.
    pub fn silence(
        &self,
        rule: &str,
        series: Option<String>,
        secs: i64,
        comment: String,
        now: i64,
    ) -> Result<Silence, String> {
        let mut g = self.lock();
        if !g.cfg.rules.iter().any(|r| r.name == rule) {
            return Err(format!("no rule named \"{rule}\""));
        }
        g.p.next_silence += 1;
        let s = Silence {
            id: g.p.next_silence,
            rule: rule.into(),
            series,
            until: now + secs,
            comment,
        };
        g.p.silences.retain(|x| x.until > now);
        g.p.silences.push(s.clone());
        g.dirty = true;
        Ok(s)
    }

    pub fn unsilence(&self, id: u64) -> bool {
        let mut g = self.lock();
        let before = g.p.silences.len();
        g.p.silences.retain(|s| s.id != id);
        g.dirty = true;
        g.p.silences.len() != before
    }

    pub fn silences(&self, now: i64) -> Vec<Silence> {
        self.lock()
            .p
            .silences
            .iter()
            .filter(|s| s.until > now)
            .cloned()
            .collect()
    }

    /// Delivers what is due: the Alertmanager batch and the outbox. Failures are counted and
    /// retried with backoff; evaluation never waits for them.
    pub async fn deliver(&self, client: &reqwest::Client, now: i64) {
        let (am_targets, batch) = {
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
        if !batch.is_empty() {
            for (i, url) in am_targets {
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
                let st = &mut g.stats[i];
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
                        let retry_at = now - g.cfg.resend_interval + 5;
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
                .take(50)
                .collect()
        };
        let mut done: Vec<usize> = Vec::new();
        let mut retry: Vec<(usize, i64)> = Vec::new();
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
            let st = &mut g.stats[o.notifier];
            match res {
                Ok(r) if r.status().is_success() => {
                    st.sent += 1;
                    done.push(idx);
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    st.failed_attempts += 1;
                    st.last_error = Some(format!("HTTP {}", r.status()));
                    let wait = (2i64 << o.attempts.min(8)).min(300);
                    retry.push((idx, now + wait));
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
                    let wait = (2i64 << o.attempts.min(8)).min(300);
                    retry.push((idx, now + wait));
                }
            }
        }
        if !done.is_empty() || !retry.is_empty() {
            let mut g = self.lock();
            for (idx, at) in retry {
                if let Some(o) = g.p.outbox.get_mut(idx) {
                    o.attempts += 1;
                    o.next_try = at;
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
}

/// Runs the engine until `shutdown` resolves: every second, evaluates the due rules, prints
/// console notifications, delivers, and saves the state.
pub async fn run(engine: Arc<Engine>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: alerts are evaluated but not delivered");
            reqwest::Client::new()
        }
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                let e = engine.clone();
                let _ = tokio::task::spawn_blocking(move || e.persist()).await;
                return;
            }
        }
        let now = now_secs();
        let e = engine.clone();
        let _ = tokio::task::spawn_blocking(move || e.evaluate_due(now)).await;
        // Console notifications; a closed stdout must not stop the engine.
        let lines = engine.take_console();
        if !lines.is_empty() {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
        engine.deliver(&client, now).await;
        let e = engine.clone();
        let _ = tokio::task::spawn_blocking(move || e.persist()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;

    const T: i64 = 1_800_000_000;

    fn engine(src: &Arc<dyn Source>, rules: &str) -> Engine {
        let cfg = Alerting::parse(rules).expect("rules");
        Engine::new(src.clone(), cfg, None).expect("engine")
    }

    fn states(e: &Engine, now: i64) -> Vec<(String, String)> {
        let v = e.alerts_json(now);
        v["alerts"]
            .as_array()
            .expect("list")
            .iter()
            .map(|a| {
                (
                    a["series"].as_str().unwrap_or("").to_string(),
                    a["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    const RULES: &str = r#"
[[rule]]
name = "Beacons"
target = "beacons.*"
window = "60s"
reduce = "sum"
warn = 10
crit = 100
"#;

    fn src(values: &[(&str, Vec<Option<f64>>)]) -> Arc<dyn Source> {
        let mut m = MemSource::default();
        for (name, v) in values {
            m.add(name, T - 60, 10, v.clone());
        }
        Arc::new(m)
    }

    #[test]
    fn one_instance_per_series_and_state_survives_a_restart() {
        let s = src(&[
            ("beacons.a", vec![Some(5.0); 6]),
            ("beacons.b", vec![Some(1.0); 6]),
        ]);
        let e = engine(&s, RULES);
        assert_eq!(e.evaluate_due(T), 1);
        assert_eq!(
            states(&e, T),
            vec![
                ("beacons.a".into(), "firing".into()),
                ("beacons.b".into(), "ok".into())
            ]
        );
        let console = e.take_console();
        assert_eq!(console.len(), 1, "{console:?}");
        assert!(
            console[0].starts_with("ALERT FIRING Beacons beacons.a warning value=25"),
            "{console:?}"
        );
        e.persist();
        // A new engine on the same store: still firing, and no new transition to notify.
        let e2 = engine(&s, RULES);
        assert_eq!(
            states(&e2, T),
            vec![
                ("beacons.a".into(), "firing".into()),
                ("beacons.b".into(), "ok".into())
            ]
        );
        e2.evaluate_due(T + 5);
        assert!(e2.take_console().is_empty());
        assert_eq!(e2.alerts_json(T + 5)["alerts"][0]["since"], T);
    }

    #[test]
    fn a_pending_clock_survives_a_restart() {
        let s = src(&[("beacons.a", vec![Some(5.0); 12])]);
        let rules = format!("{RULES}for = \"1m\"\n");
        let e = engine(&s, &rules);
        e.evaluate_due(T - 10);
        assert_eq!(
            states(&e, T - 10),
            vec![("beacons.a".into(), "pending".into())]
        );
        e.persist();
        let e2 = engine(&s, &rules);
        e2.evaluate_due(T + 5);
        assert_eq!(
            states(&e2, T + 5),
            vec![("beacons.a".into(), "pending".into())],
            "45 s of the minute so far"
        );
        e2.evaluate_due(T + 50);
        assert_eq!(
            states(&e2, T + 50),
            vec![("beacons.a".into(), "firing".into())],
            "fires a minute after it began, not after the restart"
        );
    }

    #[test]
    fn series_that_go_away_resolve_and_nodata_is_explicit() {
        let s = src(&[("beacons.a", vec![Some(50.0); 6])]);
        let e = engine(&s, RULES);
        e.evaluate_due(T);
        // The window moves past the data: the series is returned all-null: nodata fires.
        e.evaluate_due(T + 3600);
        let st = states(&e, T + 3600);
        assert_eq!(st, vec![("beacons.a".into(), "nodata".into())]);
        let console = e.take_console();
        assert!(
            console
                .iter()
                .any(|l| l.contains("FIRING Beacons beacons.a nodata")),
            "{console:?}"
        );
    }

    #[test]
    fn absence_fires_for_a_series_that_stopped() {
        let s = src(&[
            ("beacons.a", vec![Some(1.0); 6]),
            (
                "beacons.b",
                vec![Some(1.0), Some(1.0), None, None, None, None],
            ),
        ]);
        let e = engine(&s, "[[rule]]\nname = \"AgentGone\"\ntarget = \"beacons.*\"\nabsent_for = \"30s\"\nlookback = \"1h\"\n");
        e.evaluate_due(T);
        let st = states(&e, T);
        assert_eq!(
            st,
            vec![
                ("beacons.a".into(), "ok".into()),
                ("beacons.b".into(), "firing".into())
            ]
        );
        let v = e.alerts_json(T);
        assert_eq!(
            v["alerts"][1]["value"], 40.0,
            "seconds since beacons.b last reported"
        );
    }

    #[test]
    fn silences_hold_back_notifications_not_evaluation() {
        let s = src(&[("beacons.a", vec![Some(50.0); 6])]);
        let rules =
            format!("{RULES}\n[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n");
        let e = engine(&s, &rules);
        e.silence("Beacons", Some("beacons.a".into()), 600, "deploy".into(), T)
            .expect("silence");
        assert!(e.silence("Nope", None, 60, String::new(), T).is_err());
        e.evaluate_due(T);
        assert_eq!(states(&e, T), vec![("beacons.a".into(), "firing".into())]);
        assert_eq!(
            e.notifiers_json()["notifiers"][0]["pending"],
            0,
            "silenced: nothing queued"
        );
        assert!(e.take_console()[0].ends_with("(silenced)"));
    }

    #[test]
    fn query_errors_are_a_state() {
        let s = src(&[]);
        let e = engine(
            &s,
            "[[rule]]\nname = \"Bad\"\ntarget = \"noSuchFunction(a.b)\"\ncrit = 1\n",
        );
        e.evaluate_due(T);
        let v = e.alerts_json(T);
        assert_eq!(v["alerts"][0]["state"], "error", "{v}");
        assert!(e.rules_json()["rules"][0]["last_error"].is_string());
    }
}
