//! The evaluator: the [`Engine`] evaluates each rule when it is due on the query engine (the
//! queries spread over the cores), keeps one instance per series the target returns, moves each
//! through the state machine ([`machine`](super::machine)) with what `observe` saw, and hands
//! the transitions to `delivery`. It owns the saved state (`state`) behind one lock, shared by
//! the loop ([`run`]) and the HTTP API, and saves it after every round, so a restart neither
//! pages twice nor loses a resolve. A reload swaps the rules, and `reconcile` makes the state
//! fit them (what was told of rules that are gone, or whose labels changed, ends).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tally_common::unix_now;

use super::config::{Alerting, Rule};
use super::delivery::NotifierStats;
use super::machine::{resolve, step, Level, Obs, State, Transition};
use super::observe::{observe, Observed, SeriesObs};
use super::payload::{AlertEvent, Notice};
use super::state::{Entry, Persisted, Silence, STATE_KEY};
use crate::source::Source;

/// The engine state behind the lock.
pub(crate) struct Inner {
    pub(super) cfg: Alerting,
    pub(super) p: Persisted,
    /// Delivery counters by [`Notifier::id`](super::config::Notifier::id).
    pub(super) stats: BTreeMap<String, NotifierStats>,
    /// The state changed since it was last saved.
    pub(super) dirty: bool,
    /// Lines for the console notifier, printed by the runner.
    pub(super) console: Vec<String>,
    /// State changes to keep as Graphite events, written after the round ([`Engine::evaluate_due`]).
    pub(super) events: Vec<AlertEvent>,
    /// How many times the file was reloaded (delivery builds its TLS clients again after one).
    pub(super) reloads: u64,
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

impl Inner {
    /// Tells the console of a state change and keeps it as an event.
    pub(super) fn tell(&mut self, n: &Notice, silenced: bool) {
        self.console.push(n.console_line(silenced));
        self.events.push(n.event(silenced));
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
                let e = run
                    .instances
                    .entry(String::new())
                    .or_insert_with(|| Entry::new(String::new(), BTreeMap::new()));
                if let Some(t) = step(rule, &mut e.inst, &Obs::Error(msg), now) {
                    transitions.push((String::new(), t));
                }
            }
            Observed::Series(series) => {
                run.last_error = None;
                let seen: std::collections::BTreeSet<String> =
                    series.iter().map(|s| s.name.clone()).collect();
                // The rule-level instance stands for "no series at all".
                if series.is_empty() {
                    let e = run
                        .instances
                        .entry(String::new())
                        .or_insert_with(|| Entry::new(String::new(), BTreeMap::new()));
                    if let Some(t) = step(rule, &mut e.inst, &Obs::NoData, now) {
                        transitions.push((String::new(), t));
                    }
                } else if let Some(e) = run.instances.get_mut("") {
                    if let Some(t) = resolve(&mut e.inst, now) {
                        transitions.push((String::new(), t));
                    }
                }
                for SeriesObs { name, tags, obs } in series {
                    let e = run
                        .instances
                        .entry(name.clone())
                        .or_insert_with(|| Entry::new(name.clone(), tags.clone()));
                    e.tags = tags;
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
}

impl Engine {
    /// An engine over `source`, restoring the saved state, made to fit `cfg` (what was told of
    /// rules removed or relabeled since it was saved ends).
    pub fn new(
        source: Arc<dyn Source>,
        cfg: Alerting,
        path: Option<PathBuf>,
    ) -> crate::Result<Engine> {
        let p = Persisted::load(source.as_ref())?;
        let mut inner = Inner {
            cfg,
            p,
            stats: BTreeMap::new(),
            dirty: false,
            console: Vec::new(),
            events: Vec::new(),
            reloads: 0,
        };
        inner.reconcile(unix_now());
        Ok(Engine {
            source,
            path,
            inner: Mutex::new(inner),
        })
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the alerting file (SIGHUP, `POST /api/v1/alerts/reload`). On errors the old
    /// rules stay and every problem is returned.
    pub fn reload(&self) -> Result<usize, Vec<String>> {
        self.reload_at(unix_now())
    }

    /// [`Engine::reload`] at `now`.
    pub(super) fn reload_at(&self, now: i64) -> Result<usize, Vec<String>> {
        let Some(path) = &self.path else {
            return Err(vec!["no alerting file to reload".into()]);
        };
        let cfg = Alerting::load(path)?;
        let n = cfg.rules.len();
        {
            let mut g = self.lock();
            g.cfg = cfg;
            g.reloads += 1;
            for run in g.p.rules.values_mut() {
                run.next_eval = 0;
                // Alertmanager hears of every instance at the next delivery: if the rule's
                // labels changed, the alert under the old ones ends then, not a re-send later.
                for e in run.instances.values_mut() {
                    e.am_sent = 0;
                }
            }
            g.reconcile(now);
        }
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
        self.write_events();
        due.len()
    }

    /// Writes the state changes since the last call as Graphite events (outside the lock). A
    /// store that refuses one is logged: the alert itself was told and saved already.
    pub(crate) fn write_events(&self) {
        let events = std::mem::take(&mut self.lock().events);
        for e in events {
            if let Err(err) = self.source.add_event(e.when, &e.what, &e.data, e.tags) {
                tracing::warn!(error = %err, what = %e.what, "keeping an alert's state change as an event failed");
            }
        }
    }

    /// Saves the state if it changed.
    pub(crate) fn persist(&self) {
        let doc = {
            let mut g = self.lock();
            if !g.dirty {
                return;
            }
            g.dirty = false;
            g.p.encode()
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
    pub(crate) fn take_console(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().console)
    }

    /// Silences a rule, or one of its series, for `secs`.
    pub(crate) fn silence(
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

    pub(crate) fn unsilence(&self, id: u64) -> bool {
        let mut g = self.lock();
        let before = g.p.silences.len();
        g.p.silences.retain(|s| s.id != id);
        g.dirty = true;
        g.p.silences.len() != before
    }

    pub(crate) fn silences(&self, now: i64) -> Vec<Silence> {
        self.lock()
            .p
            .silences
            .iter()
            .filter(|s| s.until > now)
            .cloned()
            .collect()
    }
}

/// Runs the engine until `shutdown` resolves: every second, evaluates the due rules, prints
/// console notifications, delivers, and saves the state.
pub async fn run(engine: Arc<Engine>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut clients = super::delivery::Clients::standard();
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
        let now = unix_now();
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
        engine.deliver(&mut clients, now).await;
        let e = engine.clone();
        let _ = tokio::task::spawn_blocking(move || e.persist()).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::alert::payload::rfc3339;
    use crate::alert::test_support::{engine, engine_on_file, reload_at};
    use crate::source::MemSource;

    const T: i64 = 1_800_000_000;

    fn states(e: &Engine, now: i64) -> Vec<(String, String)> {
        e.alerts(now)
            .into_iter()
            .map(|a| (a.series, a.state.to_string()))
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
        assert_eq!(e2.alerts(T + 5)[0].since, T);
    }

    /// Every state change is kept as a Graphite event, so a graph can show when the alert
    /// fired and resolved: a warning, its escalation to critical and the resolve, one event
    /// each, tagged for `/events/get_data?tags=alert <rule>`.
    #[test]
    fn state_changes_are_kept_as_graphite_events() {
        let mut values = vec![Some(5.0); 6];
        values.extend([Some(50.0); 6]);
        values.extend([Some(0.0); 24]);
        let s = src(&[("beacons.a", values)]);
        let e = engine(&s, RULES);
        let mut whats = Vec::new();
        for now in [T, T + 60, T + 300] {
            e.evaluate_due(now);
            let got = s.events(0, i64::MAX).expect("events");
            whats = got.iter().map(|e| (e.when, e.what.clone())).collect();
        }
        assert_eq!(
            whats,
            [
                (T, "Beacons firing warning".to_owned()),
                (T + 60, "Beacons firing critical".to_owned()),
                (T + 300, "Beacons resolved critical".to_owned()),
            ]
        );
        let got = s.events(0, i64::MAX).expect("events");
        assert_eq!(
            got[0].tags,
            ["alert", "Beacons", "firing", "warning", "series=beacons.a"]
        );
        assert!(
            got[0]
                .data
                .starts_with("ALERT FIRING Beacons beacons.a warning value="),
            "{:?}",
            got[0].data
        );
        assert_eq!(got[2].tags[2], "resolved");
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

    /// Issue 13: an Atlas rule's lines are signals: the error percentage per vhost above 50
    /// in 3 of the last 4 steps fires that vhost's instance, as an Atlas alert expression does.
    #[test]
    fn an_atlas_signal_fires_per_line() {
        let mut m = MemSource::default();
        // A point a minute, Atlas's step, for the last ten minutes.
        let v = |x: f64| vec![Some(x); 10];
        m.add("requests;status=5xx;vhost=a", T - 600, 60, v(80.0));
        m.add("requests;status=2xx;vhost=a", T - 600, 60, v(20.0));
        m.add("requests;status=5xx;vhost=b", T - 600, 60, v(1.0));
        m.add("requests;status=2xx;vhost=b", T - 600, 60, v(99.0));
        let s: Arc<dyn Source> = Arc::new(m);
        let rules = r#"
[[rule]]
name = "Errors"
atlas = "name,requests,:eq,status,5xx,:eq,:and,(,vhost,),:by,name,requests,:eq,(,vhost,),:by,:div,100,:mul,50,:gt,4,:rolling-count,3,:ge"
window = "10m"
interval = "10s"
"#;
        let e = engine(&s, rules);
        e.evaluate_due(T);
        let st = states(&e, T);
        assert_eq!(
            st,
            vec![
                ("name=requests, status=5xx, vhost=a".into(), "firing".into()),
                ("name=requests, status=5xx, vhost=b".into(), "ok".into())
            ],
            "{:?}",
            e.alerts(T)
        );
        assert_eq!(e.alerts(T)[0].level.map(|l| l.as_str()), Some("critical"));
        let bad =
            crate::alert::Alerting::parse("[[rule]]\nname = \"X\"\natlas = \"name,a,:eq,:foo\"\n")
                .expect_err("a bad word");
        assert!(bad[0].contains("atlas: bad expression"), "{bad:?}");
        let both = crate::alert::Alerting::parse(
            "[[rule]]\nname = \"X\"\natlas = \"name,a,:eq\"\ntarget = \"a.b\"\n",
        )
        .expect_err("both");
        assert!(
            both[0].ends_with("give target or atlas, not both"),
            "{both:?}"
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
        assert_eq!(
            e.alerts(T)[1].value,
            Some(40.0),
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
        assert_eq!(e.notifiers()[0].pending, 0, "silenced: nothing queued");
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
        let a = e.alerts(T);
        assert_eq!(a[0].state, "error", "{a:?}");
        assert!(e.rules(T)[0].last_error.is_some());
    }

    /// The Alertmanager batch as (labels, endsAt) pairs.
    fn am_batch(e: &Engine, now: i64) -> Vec<(Value, String)> {
        e.lock()
            .am_batch(now)
            .into_iter()
            .map(|a| {
                (
                    a["labels"].clone(),
                    a["endsAt"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    }

    const AM_RULES: &str = r#"[[notify]]
kind = "alertmanager"
url = "http://127.0.0.1:9"
[[rule]]
name = "Beacons"
target = "beacons.*"
window = "60s"
reduce = "sum"
crit = 10
labels = { team = "web" }
"#;

    /// A reload on the clock, as SIGHUP does it.
    fn reload_with(e: &Engine, dir: &tempfile::TempDir, rules: &str) {
        reload_at(e, dir, rules, unix_now());
    }

    #[test]
    fn issue_11_a_removed_rule_resolves_under_the_labels_it_fired_with() {
        let s = src(&[("beacons.a", vec![Some(5.0); 6])]);
        let (e, dir) = engine_on_file(&s, AM_RULES);
        e.evaluate_due(T);
        let fired = am_batch(&e, T);
        assert_eq!(fired.len(), 1, "{fired:?}");
        let labels = fired[0].0.clone();
        assert_eq!(labels["series"], "beacons.a");
        reload_with(
            &e,
            &dir,
            "[[notify]]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9\"\n",
        );
        // A reload runs on the clock.
        let got = am_batch(&e, unix_now());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, labels, "the same labels");
        assert!(got[0].1 <= rfc3339(unix_now()), "ended: {got:?}");
    }

    #[test]
    fn issue_11_a_changed_rule_ends_the_alert_under_its_old_labels() {
        let s = src(&[("beacons.a", vec![Some(5.0); 6])]);
        let (e, dir) = engine_on_file(&s, AM_RULES);
        e.evaluate_due(T);
        let old = am_batch(&e, T)[0].0.clone();
        reload_with(
            &e,
            &dir,
            &AM_RULES.replace("team = \"web\"", "team = \"ops\""),
        );
        e.evaluate_due(T + 1);
        let got = am_batch(&e, T + 1);
        let new = got
            .iter()
            .find(|(l, _)| l["team"] == "ops")
            .expect("the new labels firing");
        assert_ne!(new.1, rfc3339(T + 1), "firing: endsAt ahead");
        assert!(got.contains(&(old.clone(), rfc3339(T + 1))), "{got:?}");
        // Another severity: the critical alert ends, the warning one fires.
        let critical = new.0.clone();
        reload_with(
            &e,
            &dir,
            &AM_RULES
                .replace("team = \"web\"", "team = \"ops\"")
                .replace("crit = 10", "warn = 10"),
        );
        e.evaluate_due(T + 2);
        let got = am_batch(&e, T + 2);
        assert!(got.contains(&(critical, rfc3339(T + 2))), "{got:?}");
        assert!(
            got.iter().any(|(l, _)| l["severity"] == "warning"),
            "{got:?}"
        );
        assert!(!got.iter().any(|(l, _)| *l == old), "ended once: {got:?}");
    }

    #[test]
    fn issue_11_a_rule_removed_during_a_restart_resolves_under_its_saved_labels() {
        let s = src(&[("beacons.a", vec![Some(5.0); 6])]);
        let e = engine(&s, AM_RULES);
        e.evaluate_due(T);
        let labels = am_batch(&e, T)[0].0.clone();
        e.persist();
        let e2 = engine(
            &s,
            "[[notify]]\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:9\"\n",
        );
        let got = am_batch(&e2, unix_now());
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, labels);
    }
}
