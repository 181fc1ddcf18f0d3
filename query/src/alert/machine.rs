//! The state of one alert instance and how an evaluation moves it. Pure: no clock, no I/O, so
//! the engine, `tally rules test` and the tests all run the same code.
//!
//! ```text
//!  ok --condition--> pending --held for `for`--> firing --condition gone for keep_firing_for--> ok (resolved)
//!   ^                   |                          |
//!   +--condition gone---+ (dropped silently)       +-- level changes (warning <-> critical) stay firing
//! ```
//!
//! *Condition* means the observation has a level: warning or critical by threshold, or
//! `nodata` / `error` when the rule's policy says those alert. A firing instance with a
//! `recover` threshold keeps its condition while `value op recover` still holds.

use serde::{Deserialize, Serialize};

use super::config::{Op, Policy, Rule};

/// How bad an observation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Critical,
    Nodata,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Critical => "critical",
            Level::Nodata => "nodata",
            Level::Error => "error",
        }
    }
}

/// What one evaluation saw for one instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Obs {
    Value(f64),
    NoData,
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    Ok,
    Pending,
    Firing,
}

/// One instance's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub state: State,
    /// The level while pending or firing.
    pub level: Option<Level>,
    /// When the current state began (the `for` clock while pending; `startsAt` while firing).
    pub since: i64,
    /// The last evaluation at which the condition held.
    pub last_true: i64,
    pub value: Option<f64>,
    /// The threshold the value crossed (for messages).
    pub threshold: Option<f64>,
    pub error: Option<String>,
    /// When it last resolved (resolved alerts are re-sent for a while).
    pub resolved_at: Option<i64>,
    /// The level it resolved from.
    pub resolved_level: Option<Level>,
    pub last_eval: i64,
}

impl Instance {
    pub fn new() -> Instance {
        Instance {
            state: State::Ok,
            level: None,
            since: 0,
            last_true: 0,
            value: None,
            threshold: None,
            error: None,
            resolved_at: None,
            resolved_level: None,
            last_eval: 0,
        }
    }

    /// The state as people read it: `resolved` for a while after a resolve, `nodata` and
    /// `error` for firing instances of those levels.
    pub fn display_state(&self, now: i64, resolved_for: i64) -> &'static str {
        match (self.state, self.level) {
            (State::Firing, Some(Level::Nodata)) => "nodata",
            (State::Firing, Some(Level::Error)) => "error",
            (State::Firing, _) => "firing",
            (State::Pending, _) => "pending",
            (State::Ok, _) if self.resolved_at.is_some_and(|t| now - t <= resolved_for) => {
                "resolved"
            }
            (State::Ok, _) => "ok",
        }
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance::new()
    }
}

/// A change worth notifying.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Began firing (or fired again at another level: the old level resolved).
    Fired {
        level: Level,
        previous: Option<Level>,
    },
    Resolved {
        level: Level,
    },
}

/// The level of a value against the rule's thresholds (and, when firing, its recovery one).
fn level_of(rule: &Rule, v: f64, firing: Option<Level>) -> (Option<Level>, Option<f64>) {
    let op: Op = rule.op;
    if let Some(super::config::Absence { absent_for, .. }) = rule.absent {
        // Absence: the value is the seconds since the series last reported.
        let t = absent_for as f64;
        return if v >= t {
            (Some(Level::Critical), Some(t))
        } else {
            (None, None)
        };
    }
    if let Some(c) = rule.crit.filter(|c| op.holds(v, *c)) {
        return (Some(Level::Critical), Some(c));
    }
    if let Some(w) = rule.warn.filter(|w| op.holds(v, *w)) {
        return (Some(Level::Warning), Some(w));
    }
    // Hysteresis: a firing alert stays at its level until the value is past `recover`.
    if let (Some(level @ (Level::Warning | Level::Critical)), Some(r)) = (firing, rule.recover) {
        if op.holds(v, r) {
            return (Some(level), Some(r));
        }
    }
    (None, None)
}

/// Moves `inst` by one observation at `now`; returns what to notify.
pub(crate) fn step(rule: &Rule, inst: &mut Instance, obs: &Obs, now: i64) -> Option<Transition> {
    inst.last_eval = now;
    let firing_level = (inst.state == State::Firing)
        .then_some(inst.level)
        .flatten();
    let level = match obs {
        Obs::Value(v) => {
            inst.value = Some(*v);
            inst.error = None;
            let (level, threshold) = level_of(rule, *v, firing_level);
            inst.threshold = threshold.or(inst.threshold);
            level
        }
        Obs::NoData => {
            inst.value = None;
            match rule.nodata {
                Policy::Alert => Some(Level::Nodata),
                Policy::Keep => return None,
                Policy::Ok => None,
            }
        }
        Obs::Error(e) => {
            inst.error = Some(e.clone());
            match rule.on_error {
                Policy::Alert => Some(Level::Error),
                Policy::Keep => return None,
                Policy::Ok => None,
            }
        }
    };
    match (inst.state, level) {
        (State::Ok, Some(l)) => {
            inst.last_true = now;
            inst.level = Some(l);
            inst.since = now;
            if rule.for_ <= 0 {
                inst.state = State::Firing;
                return Some(Transition::Fired {
                    level: l,
                    previous: None,
                });
            }
            inst.state = State::Pending;
            None
        }
        (State::Pending, Some(l)) => {
            inst.last_true = now;
            inst.level = Some(l);
            if now - inst.since >= rule.for_ {
                inst.state = State::Firing;
                inst.since = now;
                return Some(Transition::Fired {
                    level: l,
                    previous: None,
                });
            }
            None
        }
        (State::Firing, Some(l)) => {
            inst.last_true = now;
            let previous = inst.level;
            if previous != Some(l) {
                inst.level = Some(l);
                return Some(Transition::Fired { level: l, previous });
            }
            None
        }
        (State::Pending, None) => {
            inst.state = State::Ok;
            inst.level = None;
            None
        }
        (State::Firing, None) => {
            if now - inst.last_true < rule.keep_firing_for {
                return None;
            }
            resolve(inst, now)
        }
        (State::Ok, None) => None,
    }
}

/// Resolves a firing instance (its series went away, or its condition did).
pub(crate) fn resolve(inst: &mut Instance, now: i64) -> Option<Transition> {
    let was = inst.level.unwrap_or(Level::Warning);
    let firing = inst.state == State::Firing;
    inst.state = State::Ok;
    inst.level = None;
    if !firing {
        return None;
    }
    inst.resolved_at = Some(now);
    inst.resolved_level = Some(was);
    Some(Transition::Resolved { level: was })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::config::Alerting;

    fn rule(extra: &str) -> Rule {
        let text = format!(
            "[[rule]]\nname = \"r\"\ntarget = \"a.b\"\nop = \">\"\nwarn = 10\ncrit = 20\n{extra}"
        );
        Alerting::parse(&text).expect("valid").rules.remove(0)
    }

    fn run(rule: &Rule, obs: &[(i64, Obs)]) -> Vec<(i64, Transition)> {
        let mut inst = Instance::new();
        obs.iter()
            .filter_map(|(t, o)| step(rule, &mut inst, o, *t).map(|tr| (*t, tr)))
            .collect()
    }

    use Obs::*;

    #[test]
    fn pending_for_then_firing_then_resolved() {
        let r = rule("for = \"60s\"");
        let got = run(
            &r,
            &[
                (0, Value(15.0)),
                (30, Value(15.0)),
                (60, Value(25.0)),
                (90, Value(12.0)),
                (120, Value(5.0)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (
                    60,
                    Transition::Fired {
                        level: Level::Critical,
                        previous: None
                    }
                ),
                (
                    90,
                    Transition::Fired {
                        level: Level::Warning,
                        previous: Some(Level::Critical)
                    }
                ),
                (
                    120,
                    Transition::Resolved {
                        level: Level::Warning
                    }
                ),
            ]
        );
        // A dip while pending restarts the clock, silently.
        let got = run(
            &r,
            &[
                (0, Value(15.0)),
                (30, Value(1.0)),
                (60, Value(15.0)),
                (90, Value(15.0)),
                (120, Value(15.0)),
            ],
        );
        assert_eq!(
            got,
            vec![(
                120,
                Transition::Fired {
                    level: Level::Warning,
                    previous: None
                }
            )]
        );
    }

    #[test]
    fn keep_firing_for_and_recovery_threshold_stop_flapping() {
        let r = rule("keep_firing_for = \"60s\"");
        let got = run(
            &r,
            &[
                (0, Value(15.0)),
                (30, Value(1.0)),
                (60, Value(15.0)),
                (90, Value(1.0)),
                (150, Value(1.0)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (
                    0,
                    Transition::Fired {
                        level: Level::Warning,
                        previous: None
                    }
                ),
                (
                    150,
                    Transition::Resolved {
                        level: Level::Warning
                    }
                )
            ]
        );
        let r = rule("recover = 5");
        let got = run(
            &r,
            &[
                (0, Value(15.0)),
                (30, Value(8.0)),
                (60, Value(6.0)),
                (90, Value(4.0)),
            ],
        );
        assert_eq!(
            got,
            vec![
                (
                    0,
                    Transition::Fired {
                        level: Level::Warning,
                        previous: None
                    }
                ),
                (
                    90,
                    Transition::Resolved {
                        level: Level::Warning
                    }
                )
            ]
        );
    }

    #[test]
    fn nodata_and_error_policies() {
        let got = run(&rule(""), &[(0, NoData), (30, Value(1.0))]);
        assert_eq!(
            got,
            vec![
                (
                    0,
                    Transition::Fired {
                        level: Level::Nodata,
                        previous: None
                    }
                ),
                (
                    30,
                    Transition::Resolved {
                        level: Level::Nodata
                    }
                )
            ]
        );
        let keep = rule("nodata = \"keep\"");
        let got = run(&keep, &[(0, Value(15.0)), (30, NoData), (60, NoData)]);
        assert_eq!(
            got,
            vec![(
                0,
                Transition::Fired {
                    level: Level::Warning,
                    previous: None
                }
            )],
            "keep: still firing, nothing new"
        );
        let ok = rule("nodata = \"ok\"\non_error = \"keep\"");
        let got = run(
            &ok,
            &[(0, Value(15.0)), (30, Error("boom".into())), (60, NoData)],
        );
        assert_eq!(
            got,
            vec![
                (
                    0,
                    Transition::Fired {
                        level: Level::Warning,
                        previous: None
                    }
                ),
                (
                    60,
                    Transition::Resolved {
                        level: Level::Warning
                    }
                )
            ]
        );
        let got = run(&rule(""), &[(0, Error("boom".into()))]);
        assert_eq!(
            got,
            vec![(
                0,
                Transition::Fired {
                    level: Level::Error,
                    previous: None
                }
            )]
        );
    }

    #[test]
    fn low_is_bad_with_lt() {
        let r = Alerting::parse("[[rule]]\nname=\"r\"\ntarget=\"a\"\nop=\"<\"\nwarn=10\ncrit=5\n")
            .expect("valid")
            .rules
            .remove(0);
        let got = run(&r, &[(0, Value(7.0)), (10, Value(3.0)), (20, Value(11.0))]);
        assert_eq!(
            got,
            vec![
                (
                    0,
                    Transition::Fired {
                        level: Level::Warning,
                        previous: None
                    }
                ),
                (
                    10,
                    Transition::Fired {
                        level: Level::Critical,
                        previous: Some(Level::Warning)
                    }
                ),
                (
                    20,
                    Transition::Resolved {
                        level: Level::Critical
                    }
                ),
            ]
        );
    }
}
