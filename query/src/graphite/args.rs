//! A function's arguments as the function library reads them: positional or by keyword, each
//! evaluated only when asked for, so a function can evaluate its series argument over another
//! range (`movingAverage` looks back, `timeShift` shifts). Conversions follow graphite-web's
//! loose typing: a number may come as a string, a boolean as `1` or `"true"`.

use crate::error::{QueryError, Result};
use crate::fetch::Ctx;
use crate::graphite::eval::{eval_value, Value};
use crate::graphite::expr::{Call, Expr};
use crate::graphite::py_number::py_number;
use crate::series::TimeSeries;

/// A function's arguments, evaluated on demand.
pub(crate) struct Args<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) call: &'a Call,
}

impl<'a> Args<'a> {
    pub(crate) fn func(&self) -> &str {
        &self.call.name
    }

    pub(crate) fn err(&self, reason: impl Into<String>) -> QueryError {
        QueryError::Argument {
            func: self.call.name.clone(),
            reason: reason.into(),
        }
    }

    /// The expression for positional `i` or keyword `name`.
    pub(crate) fn expr(&self, i: usize, name: &str) -> Option<&'a Expr> {
        self.call.args.get(i).or_else(|| {
            self.call
                .kwargs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
        })
    }

    pub(crate) fn value(&self, i: usize, name: &str) -> Result<Option<Value>> {
        match self.expr(i, name) {
            None => Ok(None),
            Some(e) => eval_value(self.ctx, e).map(Some),
        }
    }

    /// A required series-list argument.
    pub(crate) fn series(&self, i: usize, name: &str) -> Result<Vec<TimeSeries>> {
        self.series_in(self.ctx, i, name)
    }

    /// A series-list argument evaluated over another range.
    pub(crate) fn series_in(&self, ctx: &Ctx, i: usize, name: &str) -> Result<Vec<TimeSeries>> {
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
    pub(crate) fn series_rest(&self, i: usize) -> Result<Vec<TimeSeries>> {
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

    pub(crate) fn opt_num(&self, i: usize, name: &str) -> Result<Option<f64>> {
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

    /// A number and whether it was written as an int: graphite-web's names and tags show a
    /// parameter as it was given (`add(x,5)` tags `5`, `add(x,5.0)` tags `5.0`).
    pub(crate) fn opt_num_lit(&self, i: usize, name: &str) -> Result<Option<(f64, bool)>> {
        match self.value(i, name)? {
            Some(Value::Number(v, int)) => Ok(Some((v, int))),
            Some(Value::Bool(b)) => Ok(Some((if b { 1.0 } else { 0.0 }, true))),
            Some(Value::Str(s)) => {
                let t = s.trim();
                match t.parse::<i64>() {
                    Ok(n) => Ok(Some((n as f64, true))),
                    Err(_) => t.parse().map(|v| Some((v, false))).map_err(|_| {
                        self.err(format!("argument \"{name}\" must be a number, got \"{s}\""))
                    }),
                }
            }
            None | Some(Value::None) => Ok(None),
            Some(other) => Err(self.err(format!(
                "argument \"{name}\" must be a number, got {other:?}"
            ))),
        }
    }

    pub(crate) fn num_lit(&self, i: usize, name: &str) -> Result<(f64, bool)> {
        self.opt_num_lit(i, name)?
            .ok_or_else(|| self.err(format!("missing argument \"{name}\"")))
    }

    /// An integer argument (a count of points, a node), refused when fractional or out of range.
    pub(crate) fn opt_int(&self, i: usize, name: &str) -> Result<Option<i64>> {
        match self.opt_num(i, name)? {
            None => Ok(None),
            Some(v) if v.fract() == 0.0 && v.abs() <= 1e15 => Ok(Some(v as i64)),
            Some(v) => Err(self.err(format!("argument \"{name}\" must be an integer, got {v}"))),
        }
    }

    pub(crate) fn int(&self, i: usize, name: &str) -> Result<i64> {
        self.opt_int(i, name)?
            .ok_or_else(|| self.err(format!("missing argument \"{name}\"")))
    }

    pub(crate) fn num(&self, i: usize, name: &str) -> Result<f64> {
        self.opt_num(i, name)?
            .ok_or_else(|| self.err(format!("missing argument \"{name}\"")))
    }

    pub(crate) fn opt_str(&self, i: usize, name: &str) -> Result<Option<String>> {
        match self.value(i, name)? {
            None | Some(Value::None) => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(Value::Number(v, int)) => Ok(Some(py_number(v, int))),
            Some(Value::Bool(b)) => Ok(Some(if b { "True" } else { "False" }.to_owned())),
            Some(other) => Err(self.err(format!(
                "argument \"{name}\" must be a string, got {other:?}"
            ))),
        }
    }

    pub(crate) fn str(&self, i: usize, name: &str) -> Result<String> {
        self.opt_str(i, name)?
            .ok_or_else(|| self.err(format!("missing argument \"{name}\"")))
    }

    pub(crate) fn opt_bool(&self, i: usize, name: &str) -> Result<Option<bool>> {
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
    pub(crate) fn values_from(&self, i: usize) -> Result<Vec<Value>> {
        self.call
            .args
            .iter()
            .skip(i)
            .map(|e| eval_value(self.ctx, e))
            .collect()
    }
}
