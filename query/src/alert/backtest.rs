//! `tally rules test`: what a rule would have done over stored history ("what would this rule
//! have done last week?", `contracts/alerting.md` §6). Each series is replayed at the rule's
//! interval; each evaluation sees exactly the points a live one would fetch, observes them with
//! the same function (`observe_window`) and steps the same state machine. Not modelled: the
//! rule-level instance (a target with no series at all, query errors), since history comes per
//! series.

use super::config::Rule;
use super::machine::{step, Instance, Transition};
use super::observe::{atlas_value, observe_window, span};

/// A stored series as `/render` returns it, `values[i]` at `start + i * step`: what a backtest
/// replays and what `tally check` reduces. It is what the render client reads.
pub use crate::client::RenderedSeries as History;

/// One state change found by [`backtest`].
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub at: i64,
    pub series: String,
    pub transition: Transition,
    pub value: Option<f64>,
}

/// What `rule` would have done between `from` and `until`, evaluated every `rule.interval`, by
/// time then series. Each series must cover at least `from - window` (`from - lookback` for
/// absence rules) to `until`.
pub fn backtest(rule: &Rule, series: &[History], from: i64, until: i64) -> Vec<Change> {
    let mut out = Vec::new();
    let span = span(rule);
    for h in series {
        let mut inst = Instance::new();
        let dt = h.step.max(1);
        let mut t = from;
        while t <= until {
            // Points with timestamps in (t - span, t], as a live evaluation at t fetches them.
            let lo = (((t - span - h.start) as f64 / dt as f64).floor() as i64 + 1).max(0);
            let hi = ((t - h.start) as f64 / dt as f64).floor() as i64;
            let window = usize::try_from(lo)
                .ok()
                .zip(usize::try_from(hi + 1).ok())
                .and_then(|(lo, end)| h.values.get(lo..end.min(h.values.len())))
                .unwrap_or(&[]);
            // A series that says nothing (absence: no report in the look-back) keeps its state.
            if let Some(obs) = observe_window(rule, h.start + lo * dt, dt, window, t) {
                stepped(rule, &mut inst, &obs, t, &h.name, &mut out);
            }
            t += rule.interval;
        }
    }
    out.sort_by(|a, b| a.at.cmp(&b.at).then(a.series.cmp(&b.series)));
    out
}

/// Steps `inst` with what an evaluation at `t` observed, recording a change.
fn stepped(
    rule: &Rule,
    inst: &mut Instance,
    obs: &super::machine::Obs,
    t: i64,
    series: &str,
    out: &mut Vec<Change>,
) {
    if let Some(tr) = step(rule, inst, obs, t) {
        out.push(Change {
            at: t,
            series: series.to_owned(),
            transition: tr,
            value: inst.value,
        });
    }
}

/// The same for an Atlas rule. Its stateful words (`:rolling-count`, `:des`, ...) start from
/// empty state at each evaluation's window start, so the history cannot be fetched once and
/// sliced: `fetch(start, end)` is called for every evaluation with the window a live one would
/// evaluate, and returns the lines it yields, each named as the live engine names it (by its
/// tags, or its legend when it has none).
pub fn backtest_atlas<E>(
    rule: &Rule,
    mut fetch: impl FnMut(i64, i64) -> Result<Vec<History>, E>,
    from: i64,
    until: i64,
) -> Result<Vec<Change>, E> {
    let mut out = Vec::new();
    let span = span(rule);
    let mut instances: std::collections::BTreeMap<String, Instance> = Default::default();
    let mut t = from;
    while t <= until {
        for h in fetch(t - span, t)? {
            let values: Vec<Option<f64>> = h.values.iter().map(|&v| atlas_value(rule, v)).collect();
            let Some(obs) = observe_window(rule, h.start, h.step, &values, t) else {
                continue;
            };
            let inst = instances.entry(h.name.clone()).or_default();
            stepped(rule, inst, &obs, t, &h.name, &mut out);
        }
        t += rule.interval;
    }
    out.sort_by(|a, b| a.at.cmp(&b.at).then(a.series.cmp(&b.series)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alert::config::Alerting;
    use crate::alert::machine::Level;
    use crate::alert::Engine;
    use crate::source::{MemSource, Source};

    fn rule(text: &str) -> Rule {
        Alerting::parse(text).expect("valid").rules.remove(0)
    }

    #[test]
    fn replays_history_at_the_rule_interval() {
        let rule = rule("[[rule]]\nname=\"r\"\ntarget=\"a\"\nwindow=\"20s\"\nreduce=\"max\"\ncrit=10\ninterval=\"10s\"\nfor=\"20s\"\n");
        // A spike from 100 to 150, then quiet.
        let values: Vec<Option<f64>> = (0..30)
            .map(|i| Some(if (10..15).contains(&i) { 50.0 } else { 1.0 }))
            .collect();
        let history = History {
            name: "a".into(),
            start: 0,
            step: 10,
            values,
        };
        let got = backtest(&rule, &[history], 50, 250);
        let got: Vec<(i64, Transition)> = got.into_iter().map(|c| (c.at, c.transition)).collect();
        assert_eq!(
            got,
            vec![
                (
                    120,
                    Transition::Fired {
                        level: Level::Critical,
                        previous: None
                    }
                ),
                (
                    160,
                    Transition::Resolved {
                        level: Level::Critical
                    }
                )
            ]
        );
    }

    /// The live engine over `values` at every evaluation from `from` to `until`, as console
    /// lines, and the backtest over the same values, as the same lines.
    fn live_and_replayed(
        rules: &str,
        name: &str,
        start: i64,
        values: Vec<Option<f64>>,
        from: i64,
        until: i64,
    ) -> (Vec<String>, Vec<String>) {
        let cfg = Alerting::parse(rules).expect("valid");
        let rule = cfg.rules[0].clone();
        let mut m = MemSource::default();
        m.add(name, start, 10, values.clone());
        let src: Arc<dyn Source> = Arc::new(m);
        let engine = Engine::new(src, cfg, None).expect("engine");
        let live = live_lines(&engine, &rule, from, until);
        let history = History {
            name: name.into(),
            start,
            step: 10,
            values,
        };
        let replayed = change_lines(&rule, backtest(&rule, &[history], from, until));
        (live, replayed)
    }

    /// The live engine's console lines at every evaluation from `from` to `until`, without
    /// the threshold (which a change does not carry).
    fn live_lines(engine: &Engine, rule: &Rule, from: i64, until: i64) -> Vec<String> {
        let mut live = Vec::new();
        let mut t = from;
        while t <= until {
            engine.evaluate_due(t);
            live.extend(
                engine
                    .take_console()
                    .into_iter()
                    .map(|l| format!("{t} {l}")),
            );
            t += rule.interval;
        }
        live.into_iter()
            .map(|l| {
                l.rsplit_once(" threshold=")
                    .map_or(l.clone(), |x| x.0.into())
            })
            .collect()
    }

    /// Changes as the live engine's console lines.
    fn change_lines(rule: &Rule, changes: Vec<Change>) -> Vec<String> {
        changes
            .into_iter()
            .map(|c| {
                let (what, level) = match c.transition {
                    Transition::Fired { level, .. } => ("FIRING", level),
                    Transition::Resolved { level } => ("RESOLVED", level),
                };
                let value = c
                    .value
                    .map_or("none".into(), crate::alert::config::fmt_value);
                format!(
                    "{} ALERT {what} {} {} {} value={value}",
                    c.at,
                    rule.name,
                    c.series,
                    level.as_str()
                )
            })
            .collect()
    }

    /// An Atlas signal rule with a stateful word fires and resolves per line at the same
    /// evaluations live and replayed, the replay evaluating every window afresh as
    /// `tally rules test` does over `/api/v1/graph`.
    #[test]
    fn atlas_rules_agree_live_and_in_rules_test() {
        const T: i64 = 1_800_000_000;
        let rules = "[[rule]]\nname = \"Errors\"\natlas = \"name,requests,:eq,(,vhost,),:by,40,:gt,3,:rolling-count,2,:ge\"\nwindow = \"5m\"\ninterval = \"60s\"\n";
        let cfg = Alerting::parse(rules).expect("valid");
        let rule = cfg.rules[0].clone();
        let mut m = MemSource::default();
        // A point a minute (Atlas's step): vhost a spikes for 5 minutes, vhost b never.
        m.add(
            "requests;vhost=a",
            T,
            60,
            (0..40)
                .map(|i| Some(if (10..15).contains(&i) { 90.0 } else { 5.0 }))
                .collect(),
        );
        m.add("requests;vhost=b", T, 60, vec![Some(7.0); 40]);
        let src: Arc<dyn Source> = Arc::new(m);
        let engine = Engine::new(src.clone(), cfg, None).expect("engine");
        let (from, until) = (T + 300, T + 2340);
        let live = live_lines(&engine, &rule, from, until);
        let exprs = rule.atlas.clone().expect("an atlas rule");
        let fetch = |s: i64, e: i64| -> Result<Vec<History>, String> {
            let ctx = crate::fetch::Ctx::new(src.clone(), s, e);
            let g = crate::atlas::evaluate(&ctx, &exprs, s, e, None, 10_000)
                .map_err(|e| e.to_string())?;
            Ok(g.lines
                .into_iter()
                .map(|d| History {
                    name: if d.line.tags.is_empty() {
                        d.line.label.clone()
                    } else {
                        crate::atlas::expr::to_label(&d.line.tags)
                    },
                    start: g.grid.start,
                    step: g.grid.step,
                    values: d
                        .line
                        .values
                        .iter()
                        .map(|&v| (!v.is_nan()).then_some(v))
                        .collect(),
                })
                .collect())
        };
        let replayed = change_lines(
            &rule,
            backtest_atlas(&rule, fetch, from, until).expect("fetches"),
        );
        assert_eq!(live.len(), 2, "one firing, one resolved: {live:#?}");
        assert!(
            live[0].contains("FIRING Errors") && live[0].contains("vhost=a"),
            "{live:#?}"
        );
        assert_eq!(replayed, live);
    }

    /// `rules test` used to count a NaN point as a report in absence rules, where the live
    /// engine does not, so a series that went on writing NaN fired live and not in the test.
    #[test]
    fn issue_11_absence_rules_treat_nan_alike_live_and_in_rules_test() {
        const T: i64 = 1_800_000_000;
        let nan = Some(f64::NAN);
        // Reported at T-60 and T-50, then NaN until T-10: silent since T-40.
        let values = vec![Some(1.0), Some(1.0), nan, nan, nan, nan];
        let (live, replayed) = live_and_replayed(
            "[[rule]]\nname = \"Gone\"\ntarget = \"agent.up\"\nabsent_for = \"30s\"\nlookback = \"1h\"\ninterval = \"10s\"\n",
            "agent.up",
            T - 60,
            values,
            T - 60,
            T + 60,
        );
        assert_eq!(
            live,
            vec![format!(
                "{} ALERT FIRING Gone agent.up critical value=30",
                T - 10
            )]
        );
        assert_eq!(replayed, live);
    }

    #[test]
    fn threshold_rules_agree_live_and_in_rules_test() {
        const T: i64 = 1_800_000_000;
        let values: Vec<Option<f64>> = (0..20)
            .map(|i| match i {
                5..=8 => Some(50.0),
                9 => Some(f64::NAN),
                12 => None,
                _ => Some(1.0),
            })
            .collect();
        let (live, replayed) = live_and_replayed(
            "[[rule]]\nname = \"Hot\"\ntarget = \"a.b\"\nwindow = \"20s\"\nreduce = \"avg\"\nwarn = 10\ncrit = 40\ninterval = \"10s\"\n",
            "a.b",
            T,
            values,
            T + 20,
            T + 200,
        );
        assert_eq!(live.len(), 3, "warning, critical, resolved: {live:#?}");
        assert_eq!(replayed, live);
    }
}
