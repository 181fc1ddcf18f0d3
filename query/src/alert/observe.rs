//! What one evaluation of a rule sees. [`observe_window`] turns one series' points into an
//! observation; the live evaluation ([`observe`], over the [`Source`]) and `tally rules test`
//! ([`backtest`](super::backtest), over stored history) both call it, so a rule tested against
//! history does what it will do live — nulls and NaNs included.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::config::Rule;
use super::machine::Obs;
use crate::graphite::evaluate;
use crate::source::Source;
use crate::Ctx;

/// How far back an evaluation looks: the rule's window, or an absence rule's look-back.
pub fn span(rule: &Rule) -> i64 {
    rule.absent.map_or(rule.window, |a| a.lookback)
}

/// What one series says to an evaluation at `now`, from its points over the [`span`] before
/// it (`values[i]` at `start + i * step`). Neither a null nor a NaN is a value:
///
/// - a threshold rule sees the reduction of the other points, or no data when there are none;
/// - an absence rule sees the seconds since the series last reported (a point at `t` covers
///   until `t + step`), and `None` when it did not report within the look-back: such a series
///   is not listed, and its instance keeps its state.
pub(crate) fn observe_window(
    rule: &Rule,
    start: i64,
    step: i64,
    values: &[Option<f64>],
    now: i64,
) -> Option<Obs> {
    if rule.absent.is_none() {
        return Some(rule.reduce.apply(values).map_or(Obs::NoData, Obs::Value));
    }
    let last = values
        .iter()
        .rposition(|v| v.is_some_and(|x| !x.is_nan()))?;
    let reported = start + (last as i64 + 1) * step;
    Some(Obs::Value((now - reported).max(0) as f64))
}

/// One series an evaluation saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesObs {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub obs: Obs,
}

/// What evaluating one rule saw: its series, or the query's error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Observed {
    Series(Vec<SeriesObs>),
    Error(String),
}

/// Evaluates `rule`'s target over the span before `now` and observes each series it returns.
pub(crate) fn observe(source: &Arc<dyn Source>, rule: &Rule, now: i64) -> Observed {
    // A query node's rule sees the whole site or nothing: an answer lacking a store's share
    // is an evaluation error (the rule's `on_error`), never "no data" or a false recovery.
    let (observed, missed) = crate::partial::collect(|| observe_all(source, rule, now));
    if missed.is_empty() {
        return observed;
    }
    Observed::Error(format!(
        "partial data: the stores {} did not answer",
        crate::partial::header_value(&missed)
    ))
}

fn observe_all(source: &Arc<dyn Source>, rule: &Rule, now: i64) -> Observed {
    let ctx = Ctx::new(source.clone(), now - span(rule), now);
    if let Some(exprs) = &rule.atlas {
        return observe_atlas(&ctx, rule, exprs, now);
    }
    match evaluate(&ctx, &rule.expr) {
        Err(e) => Observed::Error(e.to_string()),
        Ok(series) => Observed::Series(
            series
                .into_iter()
                .filter_map(|s| {
                    let obs = observe_window(rule, s.start, s.step, &s.values_cow(), now)?;
                    Some(SeriesObs {
                        name: s.name.clone(),
                        tags: s.tags.clone(),
                        obs,
                    })
                })
                .collect(),
        ),
    }
}

/// What an Atlas rule sees of a line's value: a signal rule 1 where the line is non-zero and 0
/// where it is zero; no data stays no data.
pub(crate) fn atlas_value(rule: &Rule, v: Option<f64>) -> Option<f64> {
    match v {
        Some(v) if rule.signal => Some(if v != 0.0 { 1.0 } else { 0.0 }),
        v => v,
    }
}

/// An Atlas rule: each line of its expressions is a series, known by its tags (its label
/// when it has none). A signal rule sees 1 where a line is non-zero and 0 where it is zero;
/// NaN stays no data.
fn observe_atlas(
    ctx: &Ctx,
    rule: &Rule,
    exprs: &[crate::atlas::stack::Styled],
    now: i64,
) -> Observed {
    let start = now - span(rule);
    let g = match crate::atlas::evaluate(ctx, exprs, start, now, None, usize::MAX) {
        Ok(g) => g,
        Err(e) => return Observed::Error(e.to_string()),
    };
    let mut out = Vec::new();
    for d in g.lines {
        let values: Vec<Option<f64>> = d
            .line
            .values
            .iter()
            .map(|&v| atlas_value(rule, (!v.is_nan()).then_some(v)))
            .collect();
        let Some(obs) = observe_window(rule, g.grid.start, g.grid.step, &values, now) else {
            continue;
        };
        let name = if d.line.tags.is_empty() {
            d.line.label.clone()
        } else {
            crate::atlas::expr::to_label(&d.line.tags)
        };
        out.push(SeriesObs {
            name,
            tags: d.line.tags,
            obs,
        });
    }
    Observed::Series(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::config::Alerting;

    fn rule(extra: &str) -> Rule {
        Alerting::parse(&format!(
            "[[rule]]\nname = \"r\"\ntarget = \"a\"\n{extra}\n"
        ))
        .expect("valid")
        .rules
        .remove(0)
    }

    #[test]
    fn nulls_and_nans_are_not_values() {
        let avg = rule("reduce = \"avg\"\ncrit = 1");
        let v = [Some(2.0), None, Some(f64::NAN), Some(4.0)];
        assert_eq!(observe_window(&avg, 0, 10, &v, 40), Some(Obs::Value(3.0)));
        assert_eq!(
            observe_window(&avg, 0, 10, &[None, Some(f64::NAN)], 40),
            Some(Obs::NoData)
        );
        let absent = rule("absent_for = \"30s\"");
        // Reported at 10 (covers until 20); the NaNs after it are not reports.
        let v = [None, Some(1.0), Some(f64::NAN), None, Some(f64::NAN)];
        assert_eq!(
            observe_window(&absent, 0, 10, &v, 50),
            Some(Obs::Value(30.0))
        );
        assert_eq!(
            observe_window(&absent, 0, 10, &[None, Some(f64::NAN)], 50),
            None
        );
    }

    /// A source that answers, but as a query node does when a store is away: the request's
    /// scope is marked partial.
    struct Partial(crate::MemSource);

    impl Source for Partial {
        fn find(&self, p: &str) -> crate::Result<Vec<tally_store::FindMatch>> {
            self.0.find(p)
        }
        fn expand(&self, p: &str) -> crate::Result<Vec<String>> {
            crate::partial::mark("127.0.0.1:9");
            self.0.expand(p)
        }
        fn select_by_tags(&self, e: &[&str]) -> crate::Result<Vec<String>> {
            crate::partial::mark("127.0.0.1:9");
            self.0.select_by_tags(e)
        }
        fn fetch(&self, n: &str, f: i64, u: i64) -> crate::Result<Option<crate::Fetched>> {
            self.0.fetch(n, f, u)
        }
        fn tag_names(&self) -> Vec<String> {
            self.0.tag_names()
        }
        fn tag_values(&self, t: &str) -> Vec<tally_store::TagValue> {
            self.0.tag_values(t)
        }
        fn register(&self, n: &str) -> crate::Result<String> {
            self.0.register(n)
        }
        fn delete(&self, n: &str) -> crate::Result<bool> {
            self.0.delete(n)
        }
        fn add_event(&self, w: i64, what: &str, d: &str, t: Vec<String>) -> crate::Result<u64> {
            self.0.add_event(w, what, d, t)
        }
        fn events(&self, f: i64, u: i64) -> crate::Result<Vec<tally_store::Event>> {
            self.0.events(f, u)
        }
        fn load_state(&self, k: &str) -> crate::Result<Option<Vec<u8>>> {
            self.0.load_state(k)
        }
        fn save_state(&self, k: &str, v: &[u8]) -> crate::Result<()> {
            self.0.save_state(k, v)
        }
    }

    /// Issue 14: on a query node, a rule whose read lacked a store's share is an evaluation
    /// error, never "no data" or a recovery on the part that answered.
    #[test]
    fn a_partial_read_is_an_evaluation_error() {
        const NOW: i64 = 1_800_000_000;
        let mut m = crate::MemSource::default();
        m.add("a", NOW - 600, 60, vec![Some(5.0); 10]);
        m.add("requests;host=web1", NOW - 600, 60, vec![Some(5.0); 10]);
        let whole: Arc<dyn Source> = Arc::new(m.clone());
        let partial: Arc<dyn Source> = Arc::new(Partial(m));
        let graphite = rule("crit = 1");
        let mut atlas =
            Alerting::parse("[[rule]]\nname = \"r\"\natlas = \"name,requests,:eq,:sum,1,:gt\"\n")
                .expect("valid")
                .rules
                .remove(0);
        atlas.signal = true;
        for r in [&graphite, &atlas] {
            assert!(
                matches!(observe(&whole, r, NOW), Observed::Series(ref s) if s.len() == 1),
                "{:?}",
                observe(&whole, r, NOW)
            );
            match observe(&partial, r, NOW) {
                Observed::Error(e) => assert!(e.contains("127.0.0.1:9"), "{e}"),
                other => panic!("a partial read observed as {other:?}"),
            }
        }
    }
}
