//! Evaluating target expressions: path expressions fetch series (sorted by name, as graphite-web
//! does), calls go to the function library with their arguments unevaluated, so a function like
//! `movingAverage` or `timeShift` can evaluate its series argument over a different range.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{QueryError, Result};
use crate::graphite::expr::{Call, Expr};
use crate::graphite::functions;
use crate::series::TimeSeries;
use crate::source::Source;

/// Bounds on what one request may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_series: usize,
    pub max_points: usize,
    /// Wall time one request may take; checked at every fetch and every function call.
    pub max_time: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series: 100_000,
            max_points: 50_000_000,
            max_time: std::time::Duration::from_secs(30),
        }
    }
}

/// The request a target is evaluated for.
#[derive(Clone)]
pub struct Ctx {
    pub source: Arc<dyn Source>,
    pub from: i64,
    pub until: i64,
    pub now: i64,
    pub limits: Limits,
    /// Series and points fetched so far, shared by every evaluation of one request.
    pub fetched: Arc<(AtomicUsize, AtomicUsize)>,
    /// When the request started (for `Limits::max_time`).
    pub started: std::time::Instant,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("from", &self.from)
            .field("until", &self.until)
            .finish()
    }
}

impl Ctx {
    pub fn new(source: Arc<dyn Source>, from: i64, until: i64, now: i64) -> Self {
        Ctx {
            source,
            from,
            until,
            now,
            limits: Limits::default(),
            fetched: Arc::default(),
            started: std::time::Instant::now(),
        }
    }

    /// An error once the request has run longer than its limit.
    pub fn check_time(&self) -> Result<()> {
        if self.started.elapsed() > self.limits.max_time {
            return Err(QueryError::Limit(format!(
                "the request took longer than {} s; shorten the range or narrow the targets",
                self.limits.max_time.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// The same request over another range (for look-back and time shifts).
    pub fn with_range(&self, from: i64, until: i64) -> Ctx {
        Ctx {
            from,
            until,
            ..self.clone()
        }
    }
}

/// What an expression evaluates to.
#[derive(Debug, Clone)]
pub enum Value {
    Series(Vec<TimeSeries>),
    Number(f64, bool),
    Str(String),
    Bool(bool),
    None,
}

/// Evaluates one target to its series.
pub fn evaluate(ctx: &Ctx, expr: &Expr) -> Result<Vec<TimeSeries>> {
    match eval_value(ctx, expr)? {
        Value::Series(s) => Ok(s),
        other => Err(QueryError::BadRequest(format!(
            "target is not a series list but {other:?}"
        ))),
    }
}

pub fn eval_value(ctx: &Ctx, expr: &Expr) -> Result<Value> {
    Ok(match expr {
        Expr::Path(p) => Value::Series(fetch_path(ctx, p)?),
        Expr::Call(c) if c.name == "seriesByTag" => Value::Series(series_by_tag(ctx, c)?),
        Expr::Call(c) => {
            ctx.check_time()?;
            functions::call(ctx, c)?
        }
        Expr::Number { value, int } => Value::Number(*value, *int),
        Expr::Str(s) => Value::Str(s.clone()),
        Expr::Bool(b) => Value::Bool(*b),
        Expr::None => Value::None,
    })
}

fn account(ctx: &Ctx, series: usize, points: usize) -> Result<()> {
    ctx.check_time()?;
    let s = ctx.fetched.0.fetch_add(series, Ordering::Relaxed) + series;
    let p = ctx.fetched.1.fetch_add(points, Ordering::Relaxed) + points;
    if s > ctx.limits.max_series {
        return Err(QueryError::Limit(format!(
            "the request reads more than {} series; narrow the targets",
            ctx.limits.max_series
        )));
    }
    if p > ctx.limits.max_points {
        return Err(QueryError::Limit(format!(
            "the request reads more than {} points; shorten the range or narrow the targets",
            ctx.limits.max_points
        )));
    }
    Ok(())
}

fn read_all(ctx: &Ctx, names: Vec<String>, path_expression: &str) -> Result<Vec<TimeSeries>> {
    account(ctx, names.len(), 0)?;
    let read = |name: &String| -> Result<Option<TimeSeries>> {
        let Some(f) = ctx.source.fetch(name, ctx.from, ctx.until)? else {
            return Ok(None);
        };
        account(ctx, 0, f.values.len())?;
        let mut s = TimeSeries::new(name.clone(), f.start, f.step, f.values);
        s.path_expression = path_expression.to_owned();
        Ok(Some(s))
    };
    // Wide globs fan out over the cores; each read is independent.
    let out: Vec<Result<Option<TimeSeries>>> = if names.len() >= 64 {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        let chunk = names.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(read).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    } else {
        names.iter().map(read).collect()
    };
    let mut series = Vec::with_capacity(out.len());
    for r in out {
        if let Some(s) = r? {
            series.push(s);
        }
    }
    series.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(series)
}

/// A path expression: every series it matches, sorted by name. Matching nothing is no error.
pub fn fetch_path(ctx: &Ctx, pattern: &str) -> Result<Vec<TimeSeries>> {
    let names = if tally_proto::series_name::is_tagged(pattern) {
        // A tagged name is exact, in any tag order.
        match tally_proto::series_name::canonicalize(pattern) {
            Ok(c) => vec![c.into_owned()],
            Err(_) => Vec::new(),
        }
    } else {
        ctx.source.expand(pattern)?
    };
    read_all(ctx, names, pattern)
}

fn series_by_tag(ctx: &Ctx, call: &Call) -> Result<Vec<TimeSeries>> {
    let mut exprs = Vec::new();
    for a in &call.args {
        match a {
            Expr::Str(s) => exprs.push(s.as_str()),
            other => {
                return Err(QueryError::Argument {
                    func: "seriesByTag".into(),
                    reason: format!("arguments must be quoted tag expressions, got {other:?}"),
                })
            }
        }
    }
    if exprs.is_empty() {
        return Err(QueryError::Argument {
            func: "seriesByTag".into(),
            reason: "at least one tag expression is required".into(),
        });
    }
    let names = ctx.source.select_by_tags(&exprs)?;
    read_all(ctx, names, &call.raw)
}

/// A function's arguments, evaluated on demand.
pub struct Args<'a> {
    pub ctx: &'a Ctx,
    pub call: &'a Call,
}

impl<'a> Args<'a> {
    pub fn func(&self) -> &str {
        &self.call.name
    }

    pub fn err(&self, reason: impl Into<String>) -> QueryError {
        QueryError::Argument {
            func: self.call.name.clone(),
            reason: reason.into(),
        }
    }

    /// The expression for positional `i` or keyword `name`.
    pub fn expr(&self, i: usize, name: &str) -> Option<&'a Expr> {
        self.call.args.get(i).or_else(|| {
            self.call
                .kwargs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
        })
    }

    pub fn value(&self, i: usize, name: &str) -> Result<Option<Value>> {
        match self.expr(i, name) {
            None => Ok(None),
            Some(e) => eval_value(self.ctx, e).map(Some),
        }
    }

    /// A required series-list argument.
    pub fn series(&self, i: usize, name: &str) -> Result<Vec<TimeSeries>> {
        self.series_in(self.ctx, i, name)
    }

    /// A series-list argument evaluated over another range.
    pub fn series_in(&self, ctx: &Ctx, i: usize, name: &str) -> Result<Vec<TimeSeries>> {
        let e = self
            .expr(i, name)
            .ok_or_else(|| self.err(format!("missing argument \"{name}\"")))?;
        match eval_value(ctx, e)? {
            Value::Series(s) => Ok(s),
            other => Err(self.err(format!(
                "argument \"{name}\" must be a series list, got {other:?}"
            ))),
        }
    }

    /// Every positional argument from `i` on, as series lists, concatenated.
    pub fn series_rest(&self, i: usize) -> Result<Vec<TimeSeries>> {
        let mut out = Vec::new();
        for (n, e) in self.call.args.iter().enumerate().skip(i) {
            match eval_value(self.ctx, e)? {
                Value::Series(s) => out.extend(s),
                other => {
                    return Err(self.err(format!(
                        "argument {} must be a series list, got {other:?}",
                        n + 1
                    )))
                }
            }
        }
        Ok(out)
    }

    pub fn opt_num(&self, i: usize, name: &str) -> Result<Option<f64>> {
        match self.value(i, name)? {
            None | Some(Value::None) => Ok(None),
            Some(Value::Number(v, _)) => Ok(Some(v)),
            Some(Value::Bool(b)) => Ok(Some(if b { 1.0 } else { 0.0 })),
            Some(Value::Str(s)) => s.trim().parse().map(Some).map_err(|_| {
                self.err(format!("argument \"{name}\" must be a number, got \"{s}\""))
            }),
            Some(other) => Err(self.err(format!(
                "argument \"{name}\" must be a number, got {other:?}"
            ))),
        }
    }

    pub fn num(&self, i: usize, name: &str) -> Result<f64> {
        self.opt_num(i, name)?
            .ok_or_else(|| self.err(format!("missing argument \"{name}\"")))
    }

    /// A number argument as graphite would print it: `2` for an int, `2.5`/`2.0` for a float.
    pub fn num_text(&self, i: usize, name: &str) -> Result<String> {
        match self.value(i, name)? {
            Some(Value::Number(v, true)) => Ok(format!("{}", v as i64)),
            Some(Value::Number(v, false)) => Ok(py_float(v)),
            Some(Value::Str(s)) => Ok(s),
            _ => Err(self.err(format!("missing argument \"{name}\""))),
        }
    }

    pub fn opt_str(&self, i: usize, name: &str) -> Result<Option<String>> {
        match self.value(i, name)? {
            None | Some(Value::None) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(Value::Number(v, int)) => Ok(Some(if int {
                format!("{}", v as i64)
            } else {
                py_float(v)
            })),
            Some(Value::Bool(b)) => Ok(Some(if b { "True" } else { "False" }.to_owned())),
            Some(other) => Err(self.err(format!(
                "argument \"{name}\" must be a string, got {other:?}"
            ))),
        }
    }

    pub fn str(&self, i: usize, name: &str) -> Result<String> {
        self.opt_str(i, name)?
            .ok_or_else(|| self.err(format!("missing argument \"{name}\"")))
    }

    pub fn opt_bool(&self, i: usize, name: &str) -> Result<Option<bool>> {
        match self.value(i, name)? {
            None | Some(Value::None) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::Number(v, _)) => Ok(Some(v != 0.0)),
            Some(Value::Str(s)) => Ok(Some(matches!(
                s.to_lowercase().as_str(),
                "true" | "1" | "yes"
            ))),
            Some(other) => Err(self.err(format!(
                "argument \"{name}\" must be a boolean, got {other:?}"
            ))),
        }
    }

    /// All positional values from `i` on (for variadic node lists and the like).
    pub fn values_from(&self, i: usize) -> Result<Vec<Value>> {
        self.call
            .args
            .iter()
            .skip(i)
            .map(|e| eval_value(self.ctx, e))
            .collect()
    }
}

/// Python's `repr(float)`/`str(float)`: shortest round trip, `.0` on integral values.
pub fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.fract() == 0.0 && v.abs() < 1e16 {
        return format!("{v:.1}");
    }
    let s = format!("{v}");
    if v.abs() >= 1e16 || (v != 0.0 && v.abs() < 1e-4) {
        // Python switches to exponent form here.
        let e = format!("{v:e}");
        let (m, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    s
}

/// Python's `%g`.
pub fn py_g(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let exp = v.abs().log10().floor() as i32;
    let exp = {
        // Rounding to 6 significant digits can bump the exponent (999999.5 -> 1e+06).
        let rounded: f64 = format!("{:.5e}", v).parse().unwrap_or(v);
        if rounded.abs() >= 10f64.powi(exp + 1) {
            exp + 1
        } else {
            exp
        }
    };
    if !(-4..6).contains(&exp) {
        let e = format!("{:.5e}", v);
        let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        let x: i32 = x.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs());
    }
    let decimals = (5 - exp).max(0) as usize;
    let s = format!("{:.*}", decimals, v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_limit_refuses() {
        let mut ctx = Ctx::new(Arc::new(crate::source::MemSource::default()), 0, 600, 600);
        ctx.limits.max_time = std::time::Duration::ZERO;
        std::thread::sleep(std::time::Duration::from_millis(2));
        let e = evaluate(
            &ctx,
            &crate::graphite::expr::parse("sumSeries(time('a'))").expect("parses"),
        )
        .expect_err("over time");
        assert!(e.to_string().contains("took longer than 0 s"), "{e}");
        ctx.limits.max_time = std::time::Duration::from_secs(60);
        assert!(evaluate(
            &ctx,
            &crate::graphite::expr::parse("sumSeries(time('a'))").expect("parses")
        )
        .is_ok());
    }

    #[test]
    fn python_number_formats() {
        for (v, want) in [
            (2.0, "2"),
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (-2.25, "-2.25"),
            (0.0001, "0.0001"),
            (100.0, "100"),
        ] {
            assert_eq!(py_g(v), want, "%g of {v}");
        }
        for (v, want) in [
            (2.0, "2.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (1e20, "1e+20"),
            (-3.5, "-3.5"),
        ] {
            assert_eq!(py_float(v), want, "repr of {v}");
        }
    }
}
