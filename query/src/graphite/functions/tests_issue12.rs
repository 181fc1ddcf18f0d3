//! Edge cases of the functions added for issue 12, re-derived from graphite-web 1.1.8's
//! webapp/tests/test_functions.py, evaluated over an in-memory source.

use std::sync::Arc;

use crate::error::QueryError;
use crate::fetch::Ctx;
use crate::graphite::{evaluate, parse};
use crate::series::TimeSeries;
use crate::source::MemSource;

/// Series at 60 s steps whose first point is at 60, read over 0..60*n.
fn ctx(series: &[(&str, Vec<Option<f64>>)]) -> Ctx {
    let mut src = MemSource::default();
    let mut n = 0;
    for (name, v) in series {
        src.add(name, 60, 60, v.clone());
        n = n.max(v.len() as i64);
    }
    Ctx::new(Arc::new(src), 0, 60 * n)
}

fn eval(ctx: &Ctx, target: &str) -> Result<Vec<TimeSeries>, QueryError> {
    evaluate(ctx, &parse(target)?)
}

fn vals(v: &[i64]) -> Vec<Option<f64>> {
    v.iter().map(|x| (*x >= 0).then_some(*x as f64)).collect()
}

fn values(s: &TimeSeries) -> Vec<Option<f64>> {
    s.values()
}

/// test_interpolate: gaps between two values filled on the line, the ends left.
#[test]
fn interpolate_as_graphite_web() {
    let n = -1;
    let c = ctx(&[
        ("db2", vals(&[n, 2, n, 4, n, 6, n, 8])),
        ("db3", vals(&[1, 2, n, n, n, 6, 7, n, n])),
        ("db4", vals(&[1, 2, 3, 4, n, 6, n, n, 9])),
    ]);
    let r = eval(&c, "interpolate(db*)").expect("evaluates");
    assert_eq!(r[0].name, "interpolate(db2)");
    assert_eq!(r[0].path_expression, "interpolate(db2)");
    assert_eq!(values(&r[0]), vals(&[n, 2, 3, 4, 5, 6, 7, 8, n]));
    assert_eq!(values(&r[1]), vals(&[1, 2, 3, 4, 5, 6, 7, n, n]));
    assert_eq!(values(&r[2]), vals(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));
    let r = eval(&c, "interpolate(db3, 2)").expect("evaluates");
    assert_eq!(values(&r[0]), vals(&[1, 2, n, n, n, 6, 7, n, n]));
}

/// test_changed.
#[test]
fn changed_as_graphite_web() {
    let n = -1;
    let c = ctx(&[
        ("a", vals(&[1, 2, 3, 4, 4, 5, 5, 5, 6, 7])),
        ("b", vals(&[n, n, n, n, 0, 0, 0, n, n, 1])),
    ]);
    let r = eval(&c, "changed(*)").expect("evaluates");
    assert_eq!(values(&r[0]), vals(&[0, 1, 1, 1, 0, 1, 0, 0, 1, 1]));
    assert_eq!(values(&r[1]), vals(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
}

/// test_delay, test_delay_too_many_steps, test_delay_negative(_too_many_steps).
#[test]
fn delay_as_graphite_web() {
    let n = -1;
    let c = ctx(&[("a", vals(&[0, 1, 2, 3, n]))]);
    let d = |steps: i64| {
        let r = eval(&c, &format!("delay(a, {steps})")).expect("evaluates");
        assert_eq!(r[0].name, format!("delay(a,{steps})"));
        assert_eq!(r[0].tags.get("delay"), Some(&steps.to_string()));
        values(&r[0])
    };
    assert_eq!(d(2), vals(&[n, n, 0, 1, 2]));
    assert_eq!(d(25), vals(&[n, n, n, n, n]));
    assert_eq!(d(-2), vals(&[2, 3, n, n, n]));
    assert_eq!(d(-25), vals(&[n, n, n, n, n]));
    assert_eq!(d(0), vals(&[]));
    assert!(eval(&c, "delay(a, 1.5)").is_err());
}

/// test_stdev and test_stdev_Nones.
#[test]
fn stdev_as_graphite_web() {
    let c = ctx(&[
        ("a", vals(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])),
        ("b", vals(&[-1; 10])),
    ]);
    let r = eval(&c, "stdev(a, 2)").expect("evaluates");
    assert_eq!(r[0].name, "stdev(a,2)");
    let mut want = vec![Some(0.0)];
    want.extend([Some(0.5); 9]);
    assert_eq!(values(&r[0]), want);
    let r = eval(&c, "stdev(b, 2)").expect("evaluates");
    assert_eq!(values(&r[0]), vec![None; 10]);
    assert!(eval(&c, "stdev(a, 0)").is_err());
}

/// test_mostDeviant: by variance, largest first.
#[test]
fn most_deviant_as_graphite_web() {
    let c = ctx(&[
        ("test.foo", vals(&[10, 10, 10, 3, 10, 5, 6, 10, 7, 10])),
        ("test.bar", vals(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9])),
        ("test.baz", vals(&[1; 10])),
        ("test.blah", vals(&[5; 10])),
    ]);
    let r = eval(
        &c,
        "mostDeviant(group(test.foo, test.bar, test.baz, test.blah), 2)",
    )
    .expect("evaluates");
    let names: Vec<&str> = r.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["test.bar", "test.foo"]);
}

/// test_reduceSeries_asPercent: mapSeries groups, reduceSeries names `<prefix>.reduce.<f>`.
#[test]
fn map_and_reduce_as_graphite_web() {
    let c = ctx(&[
        ("group.server1.bytes_used", vals(&[1])),
        ("group.server1.total_bytes", vals(&[2])),
        ("group.server2.bytes_used", vals(&[3])),
        ("group.server2.total_bytes", vals(&[4])),
    ]);
    let r = eval(
        &c,
        "reduceSeries(mapSeries(group.*.*, 1), 'asPercent', 2, 'bytes_used', 'total_bytes')",
    )
    .expect("evaluates");
    let got: Vec<(&str, Vec<Option<f64>>)> =
        r.iter().map(|s| (s.name.as_str(), values(s))).collect();
    assert_eq!(
        got,
        [
            ("group.server1.reduce.asPercent", vec![Some(50.0)]),
            ("group.server2.reduce.asPercent", vec![Some(75.0)])
        ]
    );
    // A list of lists is no answer by itself, and a missing matcher is an error, not a panic.
    assert!(eval(&c, "mapSeries(group.*.*, 1)").is_err());
    assert!(eval(
        &c,
        "reduceSeries(mapSeries(group.*.*, 1), 'asPercent', 2, 'bytes_used', 'nope')"
    )
    .is_err());
    assert!(eval(
        &c,
        "reduceSeries(mapSeries(group.*.*, 1), 'asPercent', 9, 'a')"
    )
    .is_err());
}

/// test_substr, test_substr_no_args, test_substr_function(_no_args).
#[test]
fn substr_as_graphite_web() {
    let c = ctx(&[("collectd.test-db1.load.value", vals(&[1]))]);
    let name = |t: &str| eval(&c, t).expect("evaluates")[0].name.clone();
    assert_eq!(name("substr(collectd.*.load.value, 1, 3)"), "test-db1.load");
    assert_eq!(
        name("substr(collectd.*.load.value)"),
        "collectd.test-db1.load.value"
    );
    assert_eq!(
        name("substr(sumSeries(collectd.*.load.value), 1, 3)"),
        "*.load"
    );
    assert_eq!(
        name("substr(scale(collectd.*.load.value, 2), 1)"),
        "test-db1.load.value"
    );
}

/// The lengths must agree (graphite-web's InputParameterError), and the bad function is named.
#[test]
fn mismatches_are_errors() {
    let c = ctx(&[
        ("a.x", vals(&[1])),
        ("a.y", vals(&[2])),
        ("b.x", vals(&[3])),
    ]);
    for t in [
        "weightedAverage(a.*, b.*)",
        "sumSeriesLists(a.*, b.*)",
        "divideSeriesLists(a.*, b.*)",
        "aggregateLine(a.x, 'nope')",
        "filterSeries(a.*, 'max', '~', 1)",
        "holtWintersForecast(a.x, '1d', '60s')",
        "holtWintersConfidenceArea(a.*, 3, '1h', '10min')",
        "smartSummarize(a.x, '1h', 'sum', 'm')",
        "log(a.x, 1)",
    ] {
        match eval(&c, t) {
            Err(QueryError::Argument { .. }) => {}
            other => panic!("{t}: {other:?}"),
        }
    }
}

/// test_holtWintersAnalysis_None: a null is no prediction and no deviation.
#[test]
fn holt_winters_over_nulls() {
    let c = ctx(&[("a", vals(&[-1, -1, 3, 4]))]);
    let r = eval(&c, "holtWintersForecast(a, '0s', '2min')").expect("evaluates");
    assert_eq!(r[0].name, "holtWintersForecast(a)");
    assert_eq!(
        r[0].tags.get("holtWintersForecast").map(String::as_str),
        Some("1")
    );
    // The first value after nulls has no prediction either (graphite-web's `next_pred`).
    assert_eq!(values(&r[0])[..3], [None, None, None]);
    assert!(values(&r[0])[3].is_some());
    let b = eval(&c, "holtWintersConfidenceBands(a, 3, '0s', '2min')").expect("evaluates");
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].name, "holtWintersConfidenceLower(a)");
    assert_eq!(b[1].name, "holtWintersConfidenceUpper(a)");
}

/// Points made from nothing count against the request's limit before they are made.
#[test]
fn generated_points_are_bounded() {
    let mut c = ctx(&[("a", vals(&[1; 10]))]);
    c.limits.max_points = 1000;
    let wide = c.with_range(0, 86_400 * 30);
    for t in ["identity('i')", "randomWalk('r', 1)", "events('*')"] {
        match eval(&wide, t) {
            Err(QueryError::Limit(m)) => assert!(m.contains("max_points_per_request"), "{m}"),
            other => panic!("{t}: {other:?}"),
        }
    }
    // A request of its own: the one above has spent its budget.
    let c = ctx(&[("a", vals(&[1; 10]))]);
    assert_eq!(eval(&c, "identity('i')").expect("small")[0].len(), 10);
}

/// Targets written by functions nest (a template whose evaluation writes another), and the
/// nesting is bounded: at the bound the next one is refused, and the bound is given back after.
#[test]
fn written_targets_nest_boundedly() {
    let c = ctx(&[("a.b", vals(&[1])), ("x", vals(&[7]))]);
    let r = eval(
        &c,
        "applyByNode(a.b, 0, \"applyByNode(%.b, 0, 'scale(%.b, 2)', '%.two')\")",
    )
    .expect("two levels");
    assert_eq!(r[0].name, "a.two");
    assert_eq!(values(&r[0]), vec![Some(2.0)]);
    let call = crate::graphite::expr::Call {
        name: "aliasQuery".into(),
        args: vec![],
        kwargs: vec![],
        raw: String::new(),
    };
    let a = crate::graphite::args::Args {
        ctx: &c,
        call: &call,
    };
    super::combine::set_written_depth(super::combine::MAX_WRITTEN_DEPTH);
    let refused = super::combine::evaluate_text(&a, "x");
    super::combine::set_written_depth(0);
    match refused {
        Err(QueryError::Argument { reason, .. }) => assert!(reason.contains("nest"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        super::combine::evaluate_text(&a, "x").expect("after")[0].name,
        "x"
    );
}
