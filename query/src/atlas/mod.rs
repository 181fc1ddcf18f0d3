//! Netflix Atlas's stack language and graph API on Tally's engine (`contracts/atlas.md`; the
//! oracle is the source of `Netflix/atlas`).
//!
//! It shares what the Graphite language uses: the [`crate::Source`], the fetch through the
//! store's tag index, [`crate::Ctx`] with its limits and the process's points budget. A tagged
//! series `requests;host=web1` is the Atlas series `name=requests, host=web1`; an untagged
//! Graphite path is `name=<path>`.
//!
//! - `time`: `s`/`e` and durations; `query`: queries and their index lookups;
//! - `stack`: the interpreter and the vocabularies; `expr`: expressions and their evaluation;
//! - `routes`: `/api/v1/graph` (json, std.json, stats.json, csv, txt), `/api/v1/tags`.

pub mod expr;
pub mod percentiles;
pub mod query;
pub(crate) mod routes;
pub mod stack;
pub mod time;

use std::collections::{BTreeSet, HashMap};

use expr::{Env, Expr, Grid, Line, Raw};
use query::{Query, Tags};
use stack::{Item, Run, Style, Styled};

use crate::error::{QueryError, Result};
use crate::fetch::{fetch_tagged, read_names, Ctx};

/// Parses a program into the expressions it leaves on the stack, bottom first, with `cq`
/// (a query) ANDed into every one. Anything on the stack that is not an expression (a stray
/// string) is a mistake.
pub fn parse(program: &str, cq: Option<&str>) -> Result<Vec<Styled>> {
    let bad = |e: stack::StackError| {
        QueryError::BadRequest(format!("bad expression \"{}\": {e}", clip(program)))
    };
    let items = Run::program(program).map_err(bad)?;
    let common = match cq.filter(|c| !c.trim().is_empty()) {
        None => None,
        Some(c) => {
            let items = Run::program(c).map_err(|e| {
                QueryError::BadRequest(format!("bad common query \"{}\": {e}", clip(c)))
            })?;
            match items.as_slice() {
                [Item::Query(q)] => Some(q.clone()),
                _ => {
                    return Err(QueryError::BadRequest(format!(
                        "bad common query \"{}\": it must leave one query on the stack",
                        clip(c)
                    )))
                }
            }
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let styled = match item {
            Item::Styled(s) => *s,
            Item::Expr(e) => Styled {
                expr: e,
                style: Style::default(),
            },
            Item::Query(q) => Styled {
                expr: Expr::Data(expr::DataExpr::aggregate(expr::Af::Sum, q)),
                style: Style::default(),
            },
            Item::Str(s) if s.parse::<f64>().is_ok() => Styled {
                expr: Expr::Const(s.parse().unwrap_or(f64::NAN)),
                style: Style::default(),
            },
            other => {
                return Err(QueryError::BadRequest(format!(
                    "bad expression \"{}\": item {} left on the stack is not an expression: {}",
                    clip(program),
                    i + 1,
                    match other {
                        Item::Str(s) => format!("the string \"{s}\""),
                        _ => "a list".to_string(),
                    }
                )))
            }
        };
        out.push(match &common {
            None => styled,
            Some(q) => Styled {
                expr: and_query(styled.expr, q),
                style: styled.style,
            },
        });
    }
    Ok(out)
}

fn and_query(e: Expr, q: &Query) -> Expr {
    // The same rewrite `:cq` does, applied from outside.
    match e {
        Expr::Data(mut d) => {
            d.query = d.query.and(q.clone());
            Expr::Data(d)
        }
        Expr::Binary(op, a, b) => {
            Expr::Binary(op, Box::new(and_query(*a, q)), Box::new(and_query(*b, q)))
        }
        Expr::Filter(a, b) => Expr::Filter(Box::new(and_query(*a, q)), Box::new(and_query(*b, q))),
        Expr::Unary(op, x) => Expr::Unary(op, Box::new(and_query(*x, q))),
        Expr::Aggr(af, x) => Expr::Aggr(af, Box::new(and_query(*x, q))),
        Expr::GroupBy(af, x, k) => Expr::GroupBy(af, Box::new(and_query(*x, q)), k),
        Expr::As(x, a, b) => Expr::As(Box::new(and_query(*x, q)), a, b),
        Expr::Stateful(s, x) => Expr::Stateful(s, Box::new(and_query(*x, q))),
        Expr::Stat(x, s) => Expr::Stat(Box::new(and_query(*x, q)), s),
        Expr::Priority(x, p) => Expr::Priority(Box::new(and_query(*x, q)), p),
        Expr::Consolidate(x, cf, s) => Expr::Consolidate(Box::new(and_query(*x, q)), cf, s),
        Expr::Named(n, x) => Expr::Named(n, Box::new(and_query(*x, q))),
        Expr::Percentiles(mut d, p) => {
            d.query = d.query.and(q.clone());
            Expr::Percentiles(d, p)
        }
        e => e,
    }
}

fn clip(s: &str) -> String {
    if s.len() <= 200 {
        return s.to_owned();
    }
    let mut end = 200;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// One line as drawn: its label (legend applied), tags, values and style.
#[derive(Debug, Clone)]
pub struct Drawn {
    pub line: Line,
    pub style: Style,
}

/// What a graph request computed.
#[derive(Debug, Clone)]
pub struct Graph {
    pub grid: Grid,
    pub lines: Vec<Drawn>,
    pub notices: Vec<String>,
}

/// Atlas's default step, in seconds.
pub const DEFAULT_STEP: i64 = 60;

/// The step sizes Atlas allows (`util/Step.scala`), in seconds (Tally keeps seconds).
const STEPS: &[i64] = &[
    1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800,
    3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400,
];

/// The step of a graph: at least `primary` (the stored step, or the `step` asked for), at
/// most one datapoint per pixel, rounded up to an allowed step (`Step.compute`).
pub fn graph_step(primary: i64, width: usize, start: i64, end: i64) -> i64 {
    let primary = primary.max(1);
    let datapoints = (end - start) / primary;
    let width = width.max(1) as i64;
    let per_pixel = datapoints / width + i64::from(datapoints % width != 0);
    let min_step = per_pixel.max(1).saturating_mul(primary);
    let max = primary.max(min_step);
    STEPS
        .iter()
        .copied()
        .find(|s| *s >= max && (*s % primary == 0 || primary % *s == 0))
        .unwrap_or_else(|| (max + 86_399) / 86_400 * 86_400)
}

/// Evaluates `exprs` over `[start, end]` (seconds): fetches what their queries match through
/// `ctx` (limits and budget), picks the step (`step` when asked, else a minute, never finer
/// than the stored step; coarser when the range has more steps than `width` pixels), and
/// draws every line.
pub fn evaluate(
    ctx: &Ctx,
    exprs: &[Styled],
    start: i64,
    end: i64,
    step: Option<i64>,
    width: usize,
) -> Result<Graph> {
    // Every style offset is another copy of its expression with its data shifted.
    let mut plans: Vec<(Expr, Style, i64)> = Vec::new();
    for s in exprs {
        if s.style.offsets.is_empty() {
            plans.push((s.expr.clone(), s.style.clone(), 0));
        } else {
            for &o in &s.style.offsets {
                let shifted = shift(s.expr.clone(), o);
                plans.push((shifted, s.style.clone(), o));
            }
        }
    }
    let mut wanted: Vec<expr::DataExpr> = Vec::new();
    for (e, ..) in &plans {
        let mut ds = Vec::new();
        e.data_exprs(&mut ds);
        for d in ds {
            if !wanted.iter().any(|w| w.fetch_key() == d.fetch_key()) {
                wanted.push(d.clone());
            }
        }
    }
    let mut data: HashMap<String, Vec<Raw>> = HashMap::new();
    for d in &wanted {
        data.insert(
            d.fetch_key(),
            fetch(ctx, &d.query, start - d.offset, end - d.offset)?,
        );
    }
    let native = data.values().flatten().map(|r| r.step).min().unwrap_or(60);
    // Atlas's primary step is a minute (`DefaultSettings.stepSize`), whatever finer step the
    // store keeps: stateful words count steps, and Atlas users count them in minutes.
    let primary = step.map_or(native.max(DEFAULT_STEP), |s| s.max(native));
    let step = graph_step(primary, width, start, end);
    let mut fstart = start - start.rem_euclid(step);
    let fend = end - end.rem_euclid(step);
    if fstart == fend {
        fstart -= step;
    }
    let grid = Grid {
        start: fstart + step,
        end: fend + step,
        step,
    };
    let check = || ctx.check_time();
    let env = Env {
        data: &data,
        grid,
        check: &check,
    };
    let mut lines = Vec::new();
    for (e, style, offset) in &plans {
        let mut got = env.eval(e)?;
        for l in &mut got {
            l.label = legend(style, l, *offset);
        }
        sort_lines(&mut got, style);
        if let Some(n) = style.limit {
            got.truncate(n);
        }
        lines.extend(got.into_iter().map(|line| Drawn {
            line,
            style: style.clone(),
        }));
    }
    Ok(Graph {
        grid,
        lines,
        notices: Vec::new(),
    })
}

/// The label of a line: the legend with `$key` and `$(key)` replaced by the line's tags
/// (an unknown key stays as written), then `:s`; the line's own label otherwise.
fn legend(style: &Style, l: &Line, offset: i64) -> String {
    let mut label = match &style.legend {
        None => {
            if offset == 0 {
                l.label.clone()
            } else {
                format!("{} (offset={})", l.label, expr::duration_string(offset))
            }
        }
        Some(fmt) => substitute(fmt, &l.tags, offset),
    };
    if let Some((search, replace)) = &style.replace {
        if let Ok(re) = regex::Regex::new(search) {
            label = re.replace_all(&label, replace.as_str()).into_owned();
        }
    }
    label
}

fn substitute(fmt: &str, tags: &Tags, offset: i64) -> String {
    let lookup = |k: &str| -> Option<String> {
        if k == "atlas.offset" {
            return Some(expr::duration_string(offset));
        }
        tags.get(k).cloned()
    };
    let mut out = String::new();
    let mut rest = fmt;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (key, len) = if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(j) => (&inner[..j], j + 2),
                None => ("", 0),
            }
        } else {
            let n = after
                .find(|c: char| !(c.is_alphanumeric() || "._-".contains(c)))
                .unwrap_or(after.len());
            (&after[..n], n)
        };
        match lookup(key).filter(|_| !key.is_empty()) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[i..i + 1 + len]),
        }
        rest = &rest[i + 1 + len..];
    }
    out.push_str(rest);
    out
}

/// Lines by legend, ascending, unless `:sort` / `:order` say otherwise.
fn sort_lines(lines: &mut [Line], style: &Style) {
    match style.sort.as_deref().and_then(expr::Stat::parse) {
        Some(stat) => lines.sort_by(|a, b| stat.of(&a.values).total_cmp(&stat.of(&b.values))),
        None => lines.sort_by(|a, b| a.label.cmp(&b.label)),
    }
    if style.order.as_deref() == Some("desc") {
        lines.reverse();
    }
}

fn shift(e: Expr, by: i64) -> Expr {
    match e {
        Expr::Data(mut d) => {
            d.offset += by;
            Expr::Data(d)
        }
        Expr::Binary(op, a, b) => {
            Expr::Binary(op, Box::new(shift(*a, by)), Box::new(shift(*b, by)))
        }
        Expr::Filter(a, b) => Expr::Filter(Box::new(shift(*a, by)), Box::new(shift(*b, by))),
        Expr::Unary(op, x) => Expr::Unary(op, Box::new(shift(*x, by))),
        Expr::Aggr(af, x) => Expr::Aggr(af, Box::new(shift(*x, by))),
        Expr::GroupBy(af, x, k) => Expr::GroupBy(af, Box::new(shift(*x, by)), k),
        Expr::As(x, a, b) => Expr::As(Box::new(shift(*x, by)), a, b),
        Expr::Stateful(s, x) => Expr::Stateful(s, Box::new(shift(*x, by))),
        Expr::Stat(x, s) => Expr::Stat(Box::new(shift(*x, by)), s),
        Expr::Priority(x, p) => Expr::Priority(Box::new(shift(*x, by)), p),
        Expr::Consolidate(x, cf, s) => Expr::Consolidate(Box::new(shift(*x, by)), cf, s),
        Expr::Named(n, x) => Expr::Named(n, Box::new(shift(*x, by))),
        Expr::Percentiles(mut d, p) => {
            d.offset += by;
            Expr::Percentiles(d, p)
        }
        e => e,
    }
}

/// The stored series `q` matches over `[from, until]`, through the store's tag index: the
/// index narrows, the query decides.
fn fetch(ctx: &Ctx, q: &Query, from: i64, until: i64) -> Result<Vec<Raw>> {
    let Some(lookups) = q.lookups() else {
        return Err(QueryError::BadRequest(format!(
            "the query \"{q}\" does not narrow the series enough to look them up: add a clause like k,v,:eq, k,(,a,b,),:in, k,prefix,:re or k,:has"
        )));
    };
    let ranged = ctx.with_range(from, until);
    // Each lookup is read as a tag selection, so that a query node hands it to its stores
    // whole; a series two lookups both find is kept once.
    let mut series: Vec<crate::series::TimeSeries> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for l in &lookups {
        if !l.exprs.is_empty() {
            let refs: Vec<&str> = l.exprs.iter().map(String::as_str).collect();
            // An expression the index cannot take (a regex it refuses) is the caller's.
            for s in fetch_tagged(&ranged, &refs, "")? {
                if seen.insert(s.name.clone()) {
                    series.push(s);
                }
            }
        }
        for p in &l.paths {
            // A Graphite path is its whole name; glob characters in it are taken literally.
            if p.contains(['*', '?', '[', '{']) || p.contains(';') {
                continue;
            }
            if let Ok(found) = ctx.source.expand(p) {
                paths.extend(found.into_iter().filter(|n| n == p));
            }
        }
    }
    let paths: Vec<String> = paths.into_iter().filter(|p| !seen.contains(p)).collect();
    series.extend(read_names(&ranged, paths, "")?);
    series.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(series
        .into_iter()
        .filter(|s| q.matches(&s.tags))
        .map(|s| Raw {
            tags: s.tags.clone(),
            start: s.start,
            step: s.step,
            values: s.raw().iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::source::MemSource;

    const T: i64 = 1_800_000_000;

    fn source() -> Arc<dyn crate::Source> {
        let mut m = MemSource::default();
        let mut add = |name: &str, v: f64| {
            m.add(
                name,
                T,
                60,
                (0..60).map(|i| Some(v + i as f64 * 0.0)).collect(),
            );
        };
        add("requests;status=2xx;vhost=a", 10.0);
        add("requests;status=5xx;vhost=a", 2.0);
        add("requests;status=5xx;vhost=b", 4.0);
        add("requests;status=2xx;vhost=b", 20.0);
        add("latency;vhost=a", 100.0);
        add("web.host1.status.5xx", 7.0);
        Arc::new(m)
    }

    fn graph(q: &str) -> Graph {
        let src = source();
        let ctx = Ctx::new(src, T, T + 3600);
        let exprs = parse(q, None).unwrap_or_else(|e| panic!("{q}: {e}"));
        evaluate(&ctx, &exprs, T, T + 3600, None, 700).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn summary(g: &Graph) -> Vec<(String, f64)> {
        g.lines
            .iter()
            .map(|d| (d.line.label.clone(), d.line.values[5]))
            .collect()
    }

    #[test]
    fn a_group_by_is_a_lookup_in_the_tag_index() {
        let g = graph("name,requests,:eq,status,5xx,:eq,:and,:sum,(,vhost,),:by");
        assert_eq!(g.grid.step, 60);
        assert_eq!(
            summary(&g),
            [
                ("(vhost=a)".to_string(), 2.0),
                ("(vhost=b)".to_string(), 4.0)
            ]
        );
        assert_eq!(g.lines[0].line.tags["name"], "requests");
        assert_eq!(g.lines[0].line.tags["vhost"], "a");
        assert!(
            !g.lines[0].line.tags.contains_key("status") || g.lines[0].line.tags["status"] == "5xx"
        );
    }

    #[test]
    fn aggregates_math_and_legends() {
        assert_eq!(
            summary(&graph("name,requests,:eq,:sum")),
            [("name=requests".to_string(), 36.0)]
        );
        assert_eq!(
            summary(&graph("name,requests,:eq,:count")),
            [("name=requests".to_string(), 4.0)]
        );
        assert_eq!(
            summary(&graph("name,requests,:eq,:max")),
            [("name=requests".to_string(), 20.0)]
        );
        // The error percentage per vhost: grouped sides join on vhost.
        let g = graph(
            "name,requests,:eq,status,5xx,:eq,:and,(,vhost,),:by,name,requests,:eq,(,vhost,),:by,:div,100,:mul,$vhost,:legend",
        );
        let got = summary(&g);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "a");
        assert!((got[0].1 - 100.0 * 2.0 / 12.0).abs() < 1e-9, "{got:?}");
        assert!((got[1].1 - 100.0 * 4.0 / 24.0).abs() < 1e-9, "{got:?}");
        // An untagged Graphite path by its name; a constant; :avg of a query.
        assert_eq!(summary(&graph("name,web.host1.status.5xx,:eq"))[0].1, 7.0);
        assert_eq!(summary(&graph("42"))[0], ("42.0".to_string(), 42.0));
        assert_eq!(summary(&graph("name,requests,:eq,:avg"))[0].1, 9.0);
        // Nothing matched: one NO DATA line, not an error.
        let g = graph("name,nothing,:eq,:sum");
        assert_eq!(g.lines[0].line.label, "NO DATA");
        assert!(g.lines[0].line.values.iter().all(|v| v.is_nan()));
        // :all keeps every series; topk keeps the largest.
        assert_eq!(graph("name,requests,:eq,:all").lines.len(), 4);
        let top = graph("name,requests,:eq,:all,max,2,:topk");
        let vals: Vec<f64> = top.lines.iter().map(|d| d.line.values[5]).collect();
        let mut sorted = vals.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(sorted, [10.0, 20.0]);
        // :cq narrows every query.
        let exprs = parse("name,requests,:eq,:sum", Some("vhost,a,:eq")).expect("parses");
        let ctx = Ctx::new(source(), T, T + 3600);
        let g = evaluate(&ctx, &exprs, T, T + 3600, None, 700).expect("evaluates");
        assert_eq!(g.lines[0].line.values[5], 12.0);
    }

    #[test]
    fn a_query_that_cannot_be_looked_up_is_refused() {
        let exprs = parse("status,5xx,:eq,:not", None).expect("parses");
        let ctx = Ctx::new(source(), T, T + 3600);
        let e = evaluate(&ctx, &exprs, T, T + 3600, None, 700).expect_err("too wide");
        assert!(e.to_string().contains("does not narrow"), "{e}");
        let e = parse("name,a,:eq,foo", None).expect_err("a stray string");
        assert!(e.to_string().contains("is not an expression"), "{e}");
    }

    /// Percentiles from buckets summed across hosts: two hosts' timers of 1 ms and 100 ms
    /// (99 and 1 events a step) give a p50 near 1 ms and a p99.5 near 100 ms for the whole.
    #[test]
    fn percentiles_sum_the_buckets_of_every_host() {
        let mut m = MemSource::default();
        let bucket = |ns: i64| format!("T{:04X}", percentiles::index_of(ns));
        for (host, ns, n) in [("a", 1_000_000, 99.0), ("b", 100_000_000, 1.0)] {
            let name = format!("latency;host={host};percentile={}", bucket(ns));
            m.add(&name, T, 60, vec![Some(n); 60]);
        }
        let ctx = Ctx::new(Arc::new(m), T, T + 3600);
        let exprs = parse("name,latency,:eq,(,50,99.5,),:percentiles", None).expect("parses");
        let g = evaluate(&ctx, &exprs, T, T + 3600, None, 700).expect("evaluates");
        let got: Vec<(String, f64)> = g
            .lines
            .iter()
            .map(|d| (d.line.label.clone(), d.line.values[5]))
            .collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "percentile(name=latency,  50.0)");
        assert!((got[0].1 - 0.001).abs() < 0.0005, "{got:?}");
        assert!((got[1].1 - 0.1).abs() < 0.05, "{got:?}");
        assert_eq!(g.lines[1].line.tags["percentile"], " 99.5");
        let e = parse("name,latency,:eq,(,101,),:percentiles", None).expect_err("bad");
        assert!(e.to_string().contains("invalid percentile 101"), "{e}");
    }

    /// The summary tables of the math words (`MathVocabulary.scala`), run through the
    /// interpreter and the evaluator: `a,b,:word` for each column.
    #[test]
    fn math_words_match_their_summary_tables() {
        let n = f64::NAN;
        let inf = f64::INFINITY;
        type Table = (&'static str, [f64; 5], [f64; 5], [f64; 5]);
        let tables: &[Table] = &[
            (
                ":add",
                [3.0, 0.0, 1.0, 1.0, n],
                [1.0, 0.0, 1.0, 1.0, n],
                [2.0, 0.0, 0.0, n, n],
            ),
            (
                ":sub",
                [1.0, 0.0, 1.0, 1.0, n],
                [2.0, 0.0, 1.0, 1.0, n],
                [1.0, 0.0, 0.0, n, n],
            ),
            (
                ":div",
                [0.5, 0.0, n, n, n],
                [1.0, 0.0, 1.0, 1.0, n],
                [2.0, 0.0, 0.0, n, n],
            ),
            (
                ":fadd",
                [3.0, 0.0, 1.0, n, n],
                [2.0, 0.0, 1.0, 1.0, n],
                [1.0, 0.0, 0.0, n, n],
            ),
            (
                ":fsub",
                [1.0, 0.0, 1.0, n, n],
                [2.0, 0.0, 1.0, 1.0, n],
                [1.0, 0.0, 0.0, n, n],
            ),
            (
                ":fdiv",
                [2.0, n, inf, n, n],
                [2.0, 0.0, 1.0, 1.0, n],
                [1.0, 0.0, 0.0, n, n],
            ),
        ];
        let ctx = Ctx::new(Arc::new(MemSource::default()), T, T + 120);
        for (word, want, a, b) in tables {
            for i in 0..5 {
                let program = format!("{},{},{word}", a[i], b[i]);
                let exprs = parse(&program, None).expect("parses");
                let g = evaluate(&ctx, &exprs, T, T + 120, None, 700).expect("evaluates");
                let got = g.lines[0].line.values[0];
                assert!(
                    (got.is_nan() && want[i].is_nan()) || got == want[i],
                    "{program}: {got}, want {}",
                    want[i]
                );
            }
        }
    }

    /// `DataVocabulary`'s `:sum` table and `FilterVocabulary`'s `:stat` table.
    #[test]
    fn data_and_filter_words_match_their_summary_tables() {
        let mut m = MemSource::default();
        m.add("t;i=1", T, 60, vec![Some(2.0), Some(4.0), None]);
        m.add("t;i=2", T, 60, vec![Some(1.0), None, None]);
        m.add(
            "s;i=1",
            T,
            60,
            vec![Some(0.0), Some(5.0), Some(1.0), Some(3.0), Some(1.0), None],
        );
        let src: Arc<dyn crate::Source> = Arc::new(m);
        let run = |q: &str, steps: i64| {
            let ctx = Ctx::new(src.clone(), T - 60, T + steps * 60);
            let exprs = parse(q, None).expect("parses");
            let g =
                evaluate(&ctx, &exprs, T - 60, T - 60 + steps * 60, None, 700).expect("evaluates");
            g.lines[0].line.values.clone()
        };
        let sum = run("name,t,:eq,:sum", 3);
        assert_eq!(&sum[..2], &[3.0, 4.0]);
        assert!(sum[2].is_nan());
        for (stat, want) in [
            ("avg", 2.0),
            ("max", 5.0),
            ("min", 0.0),
            ("last", 1.0),
            ("total", 10.0),
            ("count", 5.0),
        ] {
            let got = run(&format!("name,s,:eq,:sum,{stat},:stat"), 6);
            assert!(got.iter().all(|v| *v == want), "{stat}: {got:?}");
        }
    }

    #[test]
    fn steps_follow_atlas() {
        assert_eq!(graph_step(60, 700, 0, 3 * 3600), 60);
        assert_eq!(graph_step(60, 700, 0, 7 * 86_400), 900);
        assert_eq!(graph_step(10, 700, 0, 3600), 10);
        assert_eq!(graph_step(10, 10, 0, 3600), 360);
        assert_eq!(graph_step(60, 700, 0, 0), 60);
    }

    #[test]
    fn legends_substitute_tags() {
        let tags = Tags::from([
            ("vhost".to_string(), "a".to_string()),
            ("nf.app".to_string(), "x".to_string()),
        ]);
        assert_eq!(
            substitute("$vhost: $(nf.app) $nope", &tags, 0),
            "a: x $nope"
        );
        assert_eq!(substitute("$(atlas.offset)", &tags, 604_800), "1w");
    }

    /// Issue 17: no program can build an expression or a query deep enough to overflow a
    /// worker's stack (2 MiB, as tokio's) when it is evaluated, named or dropped, nor one that
    /// doubles itself out of memory; one just inside the bounds still evaluates (in a debug
    /// build, whose frames are the largest).
    #[test]
    fn no_program_is_too_deep_or_too_big_for_a_workers_stack() {
        let deep =
            |word: &str, n: usize, base: &str| format!("{base}{}", format!(",{word}").repeat(n));
        let check = move || {
            let deepest = deep(":abs", stack::MAX_EXPR_DEPTH - 1, "name,requests,:eq,:sum");
            let g = graph(&deepest);
            assert_eq!(g.lines[0].line.values[5], 36.0);
            let mixed = format!(
                "name,requests,:eq{}{}",
                ",name,requests,:eq,:or".repeat(stack::MAX_QUERY_DEPTH - 2),
                ",:sum,:neg,:abs,1,:add,1,:sub".repeat(12)
            );
            assert_eq!(graph(&mixed).lines[0].line.values[5], 36.0);
            for (program, says) in [
                (
                    deep(":abs", stack::MAX_EXPR_DEPTH, "1"),
                    "deeper than 64 levels",
                ),
                (deep(":abs", 90_000, "1"), "deeper than 64 levels"),
                (deep(":not", 90_000, "name,a,:eq"), "deeper than 256 levels"),
                (deep(":dup,:add", 40, "1"), "more than 4096 parts"),
                (deep(":dup,:or", 40, "name,a,:eq"), "more than 4096 parts"),
                (deep("(,:abs,),:call", 20_000, "1"), "deeper than 64 levels"),
            ] {
                let e = parse(&program, None).err().map(|e| e.to_string());
                let e = e.unwrap_or_else(|| panic!("{} was accepted", clip(&program)));
                assert!(e.contains(says), "{e}");
                assert!(e.contains("position"), "{e}");
            }
        };
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(check)
            .expect("spawns")
            .join()
            .expect("nothing overflowed");
    }

    /// Programs of random words and values never panic: they evaluate or are refused with a
    /// message and a position (the fuzz target `atlas_graph` goes further).
    #[test]
    fn random_programs_never_panic() {
        use proptest::prelude::*;
        const TOKENS: &[&str] = &[
            "name",
            "requests",
            "vhost",
            "status",
            "5xx",
            "a",
            "1",
            "0",
            "-1",
            "2.5",
            "NaN",
            "5m",
            "1h",
            "max",
            "avg",
            "(",
            ")",
            ":eq",
            ":re",
            ":in",
            ":has",
            ":and",
            ":or",
            ":not",
            ":sum",
            ":count",
            ":max",
            ":min",
            ":all",
            ":by",
            ":offset",
            ":cf-max",
            ":add",
            ":sub",
            ":mul",
            ":div",
            ":gt",
            ":lt",
            ":abs",
            ":per-step",
            ":const",
            ":rolling-count",
            ":rolling-mean",
            ":des",
            ":trend",
            ":integral",
            ":delay",
            ":stat",
            ":stat-max",
            ":filter",
            ":topk",
            ":topk-others-sum",
            ":consolidate",
            ":legend",
            ":color",
            ":ls",
            ":limit",
            ":avg",
            ":stddev",
            ":pct",
            ":dup",
            ":swap",
            ":drop",
            ":rot",
            ":pick",
            ":roll",
            ":ndrop",
            ":nlist",
            ":set",
            ":get",
            ":call",
            ":each",
            ":map",
            ":as",
            ":clamp-min",
            ":time",
            "hourOfDay",
            ":cq",
            ":freeze",
            ":depth",
            ":list",
        ];
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 512,
            ..ProptestConfig::default()
        });
        let strategy = proptest::collection::vec(0..TOKENS.len(), 0..24);
        let src = source();
        runner
            .run(&strategy, |picks| {
                let program: Vec<&str> = picks.iter().map(|&i| TOKENS[i]).collect();
                let program = program.join(",");
                let src = src.clone();
                let outcome = std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn(move || match parse(&program, None) {
                        Err(e) => assert!(!e.to_string().is_empty()),
                        Ok(exprs) => {
                            let ctx = Ctx::new(src, T, T + 3600);
                            let _ = evaluate(&ctx, &exprs, T, T + 3600, None, 700);
                        }
                    })
                    .expect("thread")
                    .join();
                prop_assert!(outcome.is_ok(), "{:?} panicked", picks);
                Ok(())
            })
            .expect("no program panics");
    }
}
