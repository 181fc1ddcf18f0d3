//! Choosing and ordering series: highest*/lowest*, sortBy*, limit, exclude, grep,
//! removeEmptySeries.

use std::cmp::Ordering;

use regex::Regex;

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::series::TimeSeries;

use super::agg::agg_func;

/// graphite's `keyFunc`: a null aggregate sorts as -inf.
fn key(s: &TimeSeries, func: super::agg::AggFn) -> f64 {
    func(&s.values_cow()).unwrap_or(f64::NEG_INFINITY)
}

/// `highest(seriesList, n, func)` / `lowest(...)`; the named variants fix `func`.
pub(crate) fn highest(a: &Args, func: Option<&str>, lowest: bool) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let n = a.opt_num(1, "n")?.unwrap_or(1.0).max(0.0) as usize;
    let func = match func {
        Some(f) => f.to_owned(),
        None => a.opt_str(2, "func")?.unwrap_or_else(|| "average".into()),
    };
    let f = agg_func(&func)
        .ok_or_else(|| a.err(format!("unsupported aggregation function: {func}")))?;
    // Python's sort is stable; with reverse=True equal keys keep their order too.
    if lowest {
        list.sort_by(|x, y| key(x, f).partial_cmp(&key(y, f)).unwrap_or(Ordering::Equal));
    } else {
        list.sort_by(|x, y| key(y, f).partial_cmp(&key(x, f)).unwrap_or(Ordering::Equal));
    }
    list.truncate(n);
    Ok(Value::Series(list))
}

pub(crate) fn sort_by(a: &Args, func: &str, descending: bool) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let f =
        agg_func(func).ok_or_else(|| a.err(format!("unsupported aggregation function: {func}")))?;
    if descending {
        list.sort_by(|x, y| key(y, f).partial_cmp(&key(x, f)).unwrap_or(Ordering::Equal));
    } else {
        list.sort_by(|x, y| key(x, f).partial_cmp(&key(y, f)).unwrap_or(Ordering::Equal));
    }
    Ok(Value::Series(list))
}

fn natural_key(s: &str) -> Vec<(bool, String, u128)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() != digits && !cur.is_empty() {
            let n = if digits { cur.parse().unwrap_or(0) } else { 0 };
            out.push((digits, std::mem::take(&mut cur), n));
        }
        digits = c.is_ascii_digit();
        cur.push(c);
    }
    if !cur.is_empty() {
        let n = if digits { cur.parse().unwrap_or(0) } else { 0 };
        out.push((digits, cur, n));
    }
    out
}

pub(crate) fn sort_by_name(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let natural = a.opt_bool(1, "natural")?.unwrap_or(false);
    let reverse = a.opt_bool(2, "reverse")?.unwrap_or(false);
    if natural {
        list.sort_by(|x, y| {
            let (kx, ky) = (natural_key(&x.name), natural_key(&y.name));
            kx.iter()
                .zip(&ky)
                .map(|(p, q)| {
                    if p.0 && q.0 {
                        p.2.cmp(&q.2)
                    } else {
                        p.1.cmp(&q.1)
                    }
                })
                .find(|o| o.is_ne())
                .unwrap_or(kx.len().cmp(&ky.len()))
        });
    } else {
        list.sort_by(|x, y| x.name.cmp(&y.name));
    }
    if reverse {
        list.reverse();
    }
    Ok(Value::Series(list))
}

pub(crate) fn limit(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let n = a.num(1, "n")?;
    list.truncate(n.max(0.0) as usize);
    Ok(Value::Series(list))
}

fn regex_arg(a: &Args, i: usize, name: &str) -> Result<Regex> {
    let pattern = a.str(i, name)?;
    Regex::new(&pattern).map_err(|e| a.err(format!("bad regex \"{pattern}\": {e}")))
}

/// `exclude` drops series whose name matches anywhere; `grep` keeps them.
pub(crate) fn grep(a: &Args, keep: bool) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let re = regex_arg(a, 1, "pattern")?;
    Ok(Value::Series(
        list.into_iter()
            .filter(|s| re.is_match(&s.name) == keep)
            .collect(),
    ))
}

pub(crate) fn remove_empty(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let xff = a.opt_num(1, "xFilesFactor")?.unwrap_or(0.0);
    Ok(Value::Series(
        list.into_iter()
            .filter(|s| {
                let v = s.values();
                let non_null = v.iter().filter(|x| x.is_some()).count();
                non_null > 0 && non_null as f64 / v.len().max(1) as f64 >= xff
            })
            .collect(),
    ))
}

/// `averageAbove`, `currentBelow`, `maximumAbove`, ...: keep series whose aggregate passes.
pub(crate) fn filter_by(a: &Args, func: &str, above: bool) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let n = a.num(1, "n")?;
    let f =
        agg_func(func).ok_or_else(|| a.err(format!("unsupported aggregation function: {func}")))?;
    Ok(Value::Series(
        list.into_iter()
            .filter(|s| match f(&s.values()) {
                Some(v) => {
                    if above {
                        v > n
                    } else {
                        v <= n
                    }
                }
                None => false,
            })
            .collect(),
    ))
}
