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

pub mod chart;
pub mod expr;
pub mod percentiles;
pub mod query;
pub(crate) mod routes;
pub mod stack;
pub mod time;

use std::collections::{BTreeSet, HashMap};

use expr::{Env, Expr, Grid, Line, Raw};
use query::{Query, Tags};
use stack::{Item, Run, Sed, Style, Styled};

use crate::error::{QueryError, Result};
use crate::fetch::{fetch_tagged, read_names, Ctx};

/// Parses a program into the expressions it leaves on the stack, bottom first, with `cq`
/// (a query) ANDed into every one. Anything on the stack that is not an expression (a stray
/// string) is a mistake.
pub fn parse(program: &str, cq: Option<&str>) -> Result<Vec<Styled>> {
    parse_in(program, cq, None)
}

/// [`parse`] for a graph in time zone `tz`: the program runs with the variable `tz` set to
/// it, as Atlas's graph API runs it (`Grapher`); `:time-span` reads its times there (UTC
/// without it).
pub fn parse_in(program: &str, cq: Option<&str>, tz: Option<&str>) -> Result<Vec<Styled>> {
    let bad = |e: stack::StackError| {
        QueryError::BadRequest(format!("bad expression \"{}\": {e}", clip(program)))
    };
    let vars = tz
        .map(|z| ("tz".to_string(), Item::Str(z.to_string())))
        .into_iter()
        .collect();
    let items = Run::program_with(program, vars).map_err(bad)?;
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
    /// Which expression (after style offsets) drew it: lines are coloured per expression.
    pub expr: usize,
    /// The expression's style offset (seconds): shifted lines take the offset palette.
    pub offset: i64,
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
        now: now_ms(),
    };
    let mut lines = Vec::new();
    for (i, (e, style, offset)) in plans.iter().enumerate() {
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
            expr: i,
            offset: *offset,
        }));
    }
    Ok(Graph {
        grid,
        lines,
        notices: Vec::new(),
    })
}

/// The wall clock in milliseconds (`now` in a `:time-span`, as Atlas reads it when it
/// evaluates).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The label of a line: the legend with `$key` and `$(key)` replaced by the line's tags
/// (an unknown key stays as written), then each `:s` and `:decode` in the order written
/// (`StyleExpr.sed`); the line's own label otherwise.
fn legend(style: &Style, l: &Line, offset: i64) -> String {
    let mut label = match &style.legend {
        None => {
            if offset == 0 {
                l.label.clone()
            } else {
                format!("{} (offset={})", l.label, expr::duration_string(offset))
            }
        }
        Some(fmt) => substitute(fmt, &l.tags, offset, Some(&l.values)),
    };
    for step in &style.sed {
        match step {
            Sed::Replace(search, replace) => {
                if let Ok(re) = regex::Regex::new(search) {
                    label = re.replace_all(&label, replace.as_str()).into_owned();
                }
            }
            Sed::Decode(mode) if mode == "hex" => label = hex_decode(&label, '_'),
            // `none`, the only other encoding `:decode` takes.
            Sed::Decode(_) => {}
        }
    }
    label
}

/// `Strings.hexDecode`: `<escape>` and two hex digits is the character of that code (0 to
/// 255, as Java's `char`); an escape without two hex digits after it is copied as it is,
/// and so is the rest of the string once fewer than two characters follow an escape.
fn hex_decode(input: &str, escape: char) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut out = String::with_capacity(input.len());
    let mut pos = 0;
    while pos < chars.len() {
        let c = chars[pos];
        if c != escape {
            out.push(c);
        } else if chars.len() - pos <= 2 {
            out.extend(&chars[pos..]);
            break;
        } else {
            match (chars[pos + 1].to_digit(16), chars[pos + 2].to_digit(16)) {
                (Some(hi), Some(lo)) => {
                    out.push(char::from((hi << 4 | lo) as u8));
                    pos += 2;
                }
                _ => out.push(c),
            }
        }
        pos += 1;
    }
    out
}

/// `$key` and `$(key)` replaced by the tag's value; `$(atlas.offset)` is the offset and, when
/// the line's values are given, `$(atlas.avg)` (`max`, `min`, `last`, `total`) its statistic
/// over the graph with a decimal prefix, as Atlas's `Grapher` adds them for legends.
pub(crate) fn substitute(fmt: &str, tags: &Tags, offset: i64, values: Option<&[f64]>) -> String {
    let lookup = |k: &str| -> Option<String> {
        if k == "atlas.offset" {
            return Some(expr::duration_string(offset));
        }
        if let (Some(stat), Some(v)) = (k.strip_prefix("atlas."), values) {
            if let Some(st) = expr::Stat::parse(stat).filter(|_| stat != "count") {
                let x = st.of(v);
                return Some(chart::ticks::format_default(x));
            }
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

    /// Evaluates `q` over `[start, end]` with no stored data, the program run in `tz`.
    fn generated(q: &str, tz: Option<&str>, start: i64, end: i64) -> Result<Graph> {
        let ctx = Ctx::new(Arc::new(MemSource::default()), start, end);
        let exprs = parse_in(q, None, tz)?;
        evaluate(&ctx, &exprs, start, end, None, 700)
    }

    /// `:random` and `:srandom` over the docs' graph (`e=2012-01-01T07:00`, `tz=UTC`): the
    /// values are Atlas's own (`MathExpr.Random.rand`, run under a JVM) at each step's time.
    #[test]
    fn random_lines_are_atlas_hash_of_each_step() {
        const E: i64 = 1_325_401_200;
        let line = |q: &str| {
            let g = generated(q, Some("UTC"), E - 300, E).unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(
                g.grid.times().last(),
                Some(E),
                "the last step is the graph's end"
            );
            assert_eq!(g.lines.len(), 1);
            g.lines[0].line.clone()
        };
        let r = line(":random");
        assert_eq!(r.values, [0.119, 0.72, 0.656, 0.457, 0.653]);
        assert_eq!(r.label, "random");
        assert_eq!(r.tags["name"], "random");
        let r = line("42,:srandom");
        assert_eq!(r.values, [0.755, 0.982, 0.982, 0.885, 0.185]);
        assert_eq!(r.label, "seeded-random(42)");
        assert_eq!(r.tags["name"], "seeded-random(42)");
        assert_eq!(line("-1,:srandom").values, [0.723, 0.971, 0.8, 0.41, 0.719]);
        let r = line("0,:srandom");
        assert_eq!(
            r.values,
            line(":random").values,
            "a seed of 0 changes nothing"
        );
        assert_eq!(r.label, "seeded-random(0)");
        // The same range gives the same line; a random line is data for the other words
        // (`:random,0.4,:const,:gt` of Atlas's test queries).
        assert_eq!(line(":random").values, line(":random").values);
        assert_eq!(
            line(":random,0.4,:const,:gt").values,
            [0.0, 1.0, 1.0, 1.0, 1.0]
        );
        assert_eq!(
            line(":random,Random,:legend").label,
            "Random",
            "the docs' legend"
        );
    }

    /// `:time-span`'s docs examples and its relative forms, on a 1-minute grid: `gs` is a
    /// step before the first value drawn (Atlas's evaluation context) and `ge` a step after
    /// the last, and both ends of the span are in it.
    #[test]
    fn time_spans_are_one_within_and_zero_outside() {
        const E: i64 = 1_325_401_200; // 2012-01-01T07:00Z
        let values = |q: &str, tz: Option<&str>, s: i64, e: i64| {
            let g = generated(q, tz, s, e).unwrap_or_else(|err| panic!("{q}: {err}"));
            let times: Vec<i64> = g.grid.times().collect();
            let ones: Vec<i64> = times
                .iter()
                .zip(&g.lines[0].line.values)
                .filter(|(_, v)| **v == 1.0)
                .map(|(t, _)| *t)
                .collect();
            assert!(g.lines[0]
                .line
                .values
                .iter()
                .all(|v| *v == 0.0 || *v == 1.0));
            (g.lines[0].line.label.clone(), ones)
        };
        // s=e-3h, e=2012-01-01T07:00, tz=UTC, q=e-30m,ge,:time-span: the last half hour.
        let (label, ones) = values("e-30m,ge,:time-span", Some("UTC"), E - 10_800, E);
        assert_eq!(label, "e-30m to ge");
        assert_eq!(
            ones,
            (0..30).map(|i| E - 29 * 60 + i * 60).collect::<Vec<_>>()
        );
        // q=2014-02-20T13:00,s+30m,:time-span on that 2012 graph: never.
        let (label, ones) = values(
            "2014-02-20T13:00,s+30m,:time-span",
            Some("UTC"),
            E - 10_800,
            E,
        );
        assert_eq!(label, "2014-02-20T13:00 to s+30m");
        assert!(ones.is_empty());
        // On a graph across it, in the graph's zone: 13:00 to 13:30 Pacific, 31 steps.
        let p = 1_392_930_000; // 2014-02-20T13:00-08:00
        let span = "2014-02-20T13:00,s+30m,:time-span";
        let (_, ones) = values(span, Some("US/Pacific"), p - 3600, p + 7200);
        assert_eq!(ones, (0..31).map(|i| p + i * 60).collect::<Vec<_>>());
        // Without a zone (an alert rule's program) the time is UTC, 8 hours earlier.
        assert!(values(span, None, p - 3600, p + 7200).1.is_empty());
        let (_, ones) = values(span, None, p - 9 * 3600, p - 6 * 3600);
        assert_eq!(ones.len(), 31);
        // The end relative to the start.
        let (_, ones) = values("gs,s+5m,:time-span", None, E - 3600, E);
        assert_eq!(ones, (1..=5).map(|i| E - 3600 + i * 60).collect::<Vec<_>>());
        let (_, ones) = values("gs+10m,ge-10m,:time-span", None, E - 3600, E);
        assert_eq!(ones.len(), 42);
        // An end before the start is refused when the span is read.
        for (q, says) in [
            (
                "ge,gs,:time-span",
                ":time-span: start must be <= end (s=ge, e=gs)",
            ),
            (
                "gs,s-1m,:time-span",
                ":time-span: start must be <= end (s=gs, e=s-1m)",
            ),
        ] {
            let e = generated(q, None, E - 3600, E).expect_err(q).to_string();
            assert!(e.contains(says), "{q}: {e}");
        }
        // Mistakes in the references are the program's, with the word's position.
        let e = generated("e-30m,s+5m,:time-span", None, E - 3600, E)
            .expect_err("relative to each other")
            .to_string();
        assert!(
            e.contains(
                "start and end time are relative to each other (at \":time-span\", position 11)"
            ),
            "{e}"
        );
    }

    /// `:dist-avg`, `:dist-max` and `:dist-stddev` of a timer's statistics on two hosts.
    #[test]
    fn distribution_macros_read_a_timers_statistics() {
        let mut m = MemSource::default();
        for (host, count, total, squares, max) in
            [("a", 10.0, 5.0, 3.0, 1.2), ("b", 30.0, 9.0, 4.5, 0.9)]
        {
            for (stat, v) in [
                ("count", count),
                ("totalTime", total),
                ("totalOfSquares", squares),
                ("max", max),
            ] {
                m.add(
                    &format!("lat;host={host};statistic={stat}"),
                    T,
                    60,
                    vec![Some(v); 60],
                );
            }
        }
        // Something else of the same name that no statistic picks.
        m.add(
            "lat;host=a;statistic=percentile",
            T,
            60,
            vec![Some(1e6); 60],
        );
        let src: Arc<dyn crate::Source> = Arc::new(m);
        let run = |q: &str| -> Vec<(String, f64)> {
            let ctx = Ctx::new(src.clone(), T, T + 3600);
            let exprs = parse(q, None).unwrap_or_else(|e| panic!("{q}: {e}"));
            let g = evaluate(&ctx, &exprs, T, T + 3600, None, 700)
                .unwrap_or_else(|e| panic!("{q}: {e}"));
            g.lines
                .iter()
                .map(|d| (d.line.label.clone(), d.line.values[5]))
                .collect()
        };
        let close = |got: &[(String, f64)], want: &[f64]| {
            assert_eq!(got.len(), want.len(), "{got:?}");
            for ((_, g), w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-12, "{got:?}, want {want:?}");
            }
        };
        // (5 + 9) / (10 + 30); the larger max; sqrt((40 * 7.5 - 14^2) / 40^2).
        close(&run("name,lat,:eq,:dist-avg"), &[0.35]);
        close(&run("name,lat,:eq,:dist-max"), &[1.2]);
        close(&run("name,lat,:eq,:dist-stddev"), &[0.065f64.sqrt()]);
        assert_eq!(
            run("name,lat,:eq,:dist-max")[0].0,
            "name=lat, statistic=max"
        );
        // Per host: the statistics grouped before they are combined.
        close(&run("name,lat,:eq,:dist-avg,(,host,),:by"), &[0.5, 0.3]);
        close(&run("name,lat,:eq,:dist-max,(,host,),:by"), &[1.2, 0.9]);
        close(
            &run("name,lat,:eq,:dist-stddev,(,host,),:by"),
            &[0.05f64.sqrt(), 0.06f64.sqrt()],
        );
        // The docs' manual equivalents give the same.
        assert_eq!(
            run("name,lat,:eq,statistic,max,:eq,:and,:max"),
            run("name,lat,:eq,:dist-max")
        );
        close(
            &run("name,lat,:eq,statistic,totalTime,:eq,:and,:sum,name,lat,:eq,statistic,count,:eq,:and,:sum,:div"),
            &[0.35],
        );
        close(
            &run("statistic,count,:eq,:sum,statistic,totalOfSquares,:eq,:sum,:mul,statistic,totalTime,:eq,:sum,:dup,:mul,:sub,statistic,count,:eq,:sum,:dup,:mul,:div,:sqrt,name,lat,:eq,:cq"),
            &[0.065f64.sqrt()],
        );
        // A query ANDed in narrows every statistic.
        close(&run("name,lat,:eq,host,b,:eq,:and,:dist-avg"), &[0.3]);
        close(&run("name,lat,:eq,:dist-avg,host,a,:eq,:cq"), &[0.5]);
    }

    /// `:decode` (`StyleExprSuite`'s chains and `StringsSuite`'s `hexDecode`): the legend is
    /// substituted, then `:s` and `:decode` run in the order written.
    #[test]
    fn decode_rewrites_legends_in_order() {
        let tags = Tags::from([
            ("a".to_string(), "1".to_string()),
            ("2".to_string(), "two".to_string()),
            ("b".to_string(), "one_21_25_26_3F".to_string()),
        ]);
        let line = Line {
            tags,
            label: "foo".into(),
            values: Vec::new(),
        };
        for (sed, want) in [
            ("hex,:decode", "one!%&?"),
            ("none,:decode", "one_21_25_26_3F"),
            ("(_[A-F0-9]{2}),\\u0020$1,:s,hex,:decode", "one ! % & ?"),
            ("hex,:decode,(_[A-F0-9]{2}),\\u0020$1,:s", "one!%&?"),
            ("hex,:decode,%,_25,:s", "one!_25&?"),
            ("hex,:decode,%,_25,:s,hex,:decode", "one!%&?"),
            ("none,:decode,%,_25,:s,hex,:decode", "one!%&?"),
        ] {
            let program = format!("1,$b,:legend,{sed}");
            let exprs = parse(&program, None).unwrap_or_else(|e| panic!("{program}: {e}"));
            assert_eq!(legend(&exprs[0].style, &line, 0), want, "{sed}");
        }
        assert_eq!(
            hex_decode("a b %25 _ %_% _21%zb", '_'),
            "a b %25 _ %_% !%zb"
        );
        assert_eq!(hex_decode("a b %25 % %%% %21%zb", '%'), "a b % % %%% !%zb");
        // Each escape is one character of code 0 to 255 (Java's char), not UTF-8 bytes.
        assert_eq!(hex_decode("_C3_A9", '_'), "\u{c3}\u{a9}");
        assert_eq!(hex_decode("_4a_4A", '_'), "JJ", "either case of hex digit");
        for (s, want) in [
            ("x_2", "x_2"),
            ("_", "_"),
            ("_zz_41", "_zzA"),
            ("é_41_", "éA_"),
        ] {
            assert_eq!(hex_decode(s, '_'), want, "{s}");
        }
        // The docs' example: 1,one_21_25_26_3F,:legend,hex,:decode.
        let g = graph("1,one_21_25_26_3F,:legend,hex,:decode");
        assert_eq!(g.lines[0].line.label, "one!%&?");
        let g = graph("name,requests,:eq,(,vhost,),:by,$(vhost)_21,:legend,hex,:decode");
        let labels: Vec<&str> = g.lines.iter().map(|d| d.line.label.as_str()).collect();
        assert_eq!(labels, ["a!", "b!"]);
        let e = parse("1,x,:legend,base64,:decode", None).expect_err("unknown encoding");
        assert!(
            e.to_string()
                .contains("unknown encoding 'base64' (at \":decode\", position 19)"),
            "{e}"
        );
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
            substitute("$vhost: $(nf.app) $nope", &tags, 0, None),
            "a: x $nope"
        );
        assert_eq!(substitute("$(atlas.offset)", &tags, 604_800, None), "1w");
        let v = [1.0, 2000.0, f64::NAN];
        assert_eq!(
            substitute(
                "$(atlas.max) $(atlas.avg) $(atlas.last)",
                &tags,
                0,
                Some(&v)
            ),
            "2.0k 1.0k 2.0k"
        );
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
            // Not on constants: math on constants is folded into one (`MathVocabulary`).
            let series = "name,a,:eq,:sum";
            for (program, says) in [
                (
                    deep(":abs", stack::MAX_EXPR_DEPTH, series),
                    "deeper than 64 levels",
                ),
                (deep(":abs", 90_000, series), "deeper than 64 levels"),
                (deep(":not", 90_000, "name,a,:eq"), "deeper than 256 levels"),
                (deep(":dup,:add", 40, series), "more than 4096 parts"),
                (deep(":dup,:or", 40, "name,a,:eq"), "more than 4096 parts"),
                (
                    deep("(,:abs,),:call", 20_000, series),
                    "deeper than 64 levels",
                ),
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
            ":random",
            ":srandom",
            ":time-span",
            "e-30m",
            "gs",
            "ge",
            "s+5m",
            "tz",
            "US/Pacific",
            ":dist-avg",
            ":dist-max",
            ":dist-stddev",
            ":decode",
            "hex",
            "none",
            ":s",
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
