//! Evaluating target expressions: path expressions and `seriesByTag` fetch series through the
//! shared [`crate::fetch`] (sorted by name, as graphite-web does), calls go to the function library
//! with their arguments unevaluated, so a function like `movingAverage` or `timeShift` can
//! evaluate its series argument over a different range.

use crate::error::{QueryError, Result};
use crate::fetch::{fetch_path, fetch_tagged, Ctx};
use crate::graphite::expr::{Call, Expr};
use crate::graphite::functions;
use crate::series::TimeSeries;

/// What an expression evaluates to.
#[derive(Clone)]
pub(crate) enum Value {
    Series(Vec<TimeSeries>),
    /// A number, and whether it was written as an int (graphite keeps the literal's type).
    Number(f64, bool),
    Str(String),
    Bool(bool),
    None,
    /// A list of series lists (`mapSeries`), which only `reduceSeries` reads.
    SeriesLists(Vec<Vec<TimeSeries>>),
}

/// Evaluates one target to its series.
pub fn evaluate(ctx: &Ctx, expr: &Expr) -> Result<Vec<TimeSeries>> {
    match eval_value(ctx, expr)? {
        Value::Series(s) => Ok(s),
        Value::SeriesLists(_) => Err(QueryError::BadRequest(
            "target is a list of series lists (mapSeries): pass it to reduceSeries".into(),
        )),
        other => Err(QueryError::BadRequest(format!(
            "target is not a series list but {other:?}"
        ))),
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Series(s) => f.debug_tuple("Series").field(s).finish(),
            Value::Number(v, int) => f.debug_tuple("Number").field(v).field(int).finish(),
            Value::Str(s) => f.debug_tuple("Str").field(s).finish(),
            Value::Bool(b) => f.debug_tuple("Bool").field(b).finish(),
            Value::None => f.write_str("None"),
            Value::SeriesLists(l) => write!(f, "a list of {} series lists (mapSeries)", l.len()),
        }
    }
}

pub(crate) fn eval_value(ctx: &Ctx, expr: &Expr) -> Result<Value> {
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
        Expr::Series(s) => Value::Series(s.as_ref().clone()),
    })
}

fn series_by_tag(ctx: &Ctx, call: &Call) -> Result<Vec<TimeSeries>> {
    fetch_tagged(ctx, &tag_exprs(call)?, &call.raw)
}

/// `seriesByTag`'s tag expressions: its arguments, each a quoted string, at least one.
pub(crate) fn tag_exprs(call: &Call) -> Result<Vec<&str>> {
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
    Ok(exprs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_time_limit_refuses() {
        let mut ctx = Ctx::new(Arc::new(crate::source::MemSource::default()), 0, 600);
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
}
