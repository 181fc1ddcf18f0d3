//! Point-by-point arithmetic and the small per-series transforms of graphite-web 1.1.8: add,
//! pow, powSeries, exp, log, logit, sigmoid, squareRoot, invert, round, scaleToSeconds, minMax,
//! offsetToZero, isNonNull, changed, delay, interpolate, integralByInterval, timeSlice, substr,
//! setXFilesFactor. Names, tags and null handling are graphite-web's: a value Python's `math`
//! would refuse (`pow(-1, 0.5)`, `log(0)`) is null, as graphite-web's `safe` helpers make it.

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::graphite::py_number::{py_float, py_g, py_number, py_optional};
use crate::series::{normalize, TimeSeries};

use super::agg::rows;

/// Python's `'%d' % x`: the integer part.
pub(crate) fn py_d(v: f64) -> String {
    if v.is_finite() {
        format!("{}", v.trunc() as i64)
    } else {
        py_g(v)
    }
}

/// graphite's `safe.safePow`: null for a null operand and where Python's `math.pow` raises
/// (a negative base to a fractional power, zero to a negative power, an overflow).
pub(crate) fn safe_pow(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    if a == 0.0 && b < 0.0 {
        return None;
    }
    let r = a.powf(b);
    if r.is_nan() && !a.is_nan() && !b.is_nan() {
        return None;
    }
    if r.is_infinite() && a.is_finite() && b.is_finite() {
        return None;
    }
    Some(r)
}

/// Python's `round(x, ndigits)` for a float: correctly rounded at the decimal digit, ties to
/// even on the exact binary value.
pub(crate) fn py_round(v: f64, digits: i64) -> f64 {
    if !v.is_finite() {
        return v;
    }
    if digits >= 0 {
        let d = digits.min(300) as usize;
        format!("{v:.d$}").parse().unwrap_or(v)
    } else {
        let m = 10f64.powi((-digits).min(308) as i32);
        let r = (v / m).round_ties_even() * m;
        if r.is_finite() {
            r
        } else {
            0.0
        }
    }
}

/// A series with new values, renamed, its path expression the new name (graphite-web's
/// `series.name = ...; series.pathExpression = series.name`, and its `TimeSeries(...)`).
pub(crate) fn renamed(s: &TimeSeries, name: String, values: Vec<Option<f64>>) -> TimeSeries {
    let mut d = s.derive(name.clone(), values);
    d.path_expression = name;
    d
}

/// Every series of argument 0, consolidated, through `f` on its values; named by `name`, with
/// an optional tag.
fn each(
    a: &Args,
    name: impl Fn(&TimeSeries) -> String,
    tag: Option<(&str, String)>,
    f: impl Fn(&TimeSeries, &[Option<f64>]) -> Vec<Option<f64>>,
) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        a.ctx.check_time()?;
        let s = s.consolidated();
        let values = f(&s, s.raw());
        let mut d = renamed(&s, name(&s), values);
        if let Some((k, v)) = &tag {
            d.tags.insert((*k).to_owned(), v.clone());
        }
        out.push(d);
    }
    Ok(Value::Series(out))
}

/// `each` with a function of one value.
fn pointwise(
    a: &Args,
    func: &str,
    tag: Option<(&str, String)>,
    f: impl Fn(f64) -> Option<f64>,
) -> Result<Value> {
    each(
        a,
        |s| format!("{func}({})", s.name),
        tag,
        |_, v| v.iter().map(|x| x.and_then(&f)).collect(),
    )
}

pub(crate) fn add(a: &Args) -> Result<Value> {
    // A float parameter: graphite-web makes `5` 5.0, and tags it so.
    let c = a.num(1, "constant")?;
    each(
        a,
        |s| format!("add({},{})", s.name, py_d(c)),
        Some(("add", py_float(c))),
        |_, v| v.iter().map(|x| x.map(|x| x + c)).collect(),
    )
}

pub(crate) fn pow(a: &Args) -> Result<Value> {
    let f = a.num(1, "factor")?;
    each(
        a,
        |s| format!("pow({},{})", s.name, py_g(f)),
        Some(("pow", py_float(f))),
        |_, v| v.iter().map(|x| safe_pow(*x, Some(f))).collect(),
    )
}

pub(crate) fn exp(a: &Args) -> Result<Value> {
    pointwise(a, "exp", Some(("exp", "e".into())), |v| Some(v.exp()))
}

pub(crate) fn log(a: &Args) -> Result<Value> {
    let (base, int) = a.opt_num_lit(1, "base")?.unwrap_or((10.0, true));
    if base <= 0.0 || base == 1.0 || base.is_nan() {
        return Err(a.err(format!(
            "base must be positive and not 1, got {}",
            py_number(base, int)
        )));
    }
    let text = py_number(base, int);
    let ln_base = base.ln();
    let list = a.series(0, "seriesList")?;
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let s = s.consolidated();
                let values = s
                    .raw()
                    .iter()
                    .map(|v| v.filter(|x| *x > 0.0).map(|x| x.ln() / ln_base))
                    .collect();
                let mut d = renamed(&s, format!("log({}, {text})", s.name), values);
                d.tags.insert("log".into(), text.clone());
                d
            })
            .collect(),
    ))
}

pub(crate) fn logit(a: &Args) -> Result<Value> {
    pointwise(a, "logit", Some(("logit", "logit".into())), |v| {
        if v == 1.0 {
            return None;
        }
        let r = v / (1.0 - v);
        (r > 0.0).then(|| r.ln())
    })
}

pub(crate) fn sigmoid(a: &Args) -> Result<Value> {
    pointwise(a, "sigmoid", Some(("sigmoid", "sigmoid".into())), |v| {
        Some(1.0 / (1.0 + (-v).exp()))
    })
}

pub(crate) fn square_root(a: &Args) -> Result<Value> {
    pointwise(a, "squareRoot", Some(("squareRoot", "1".into())), |v| {
        safe_pow(Some(v), Some(0.5))
    })
}

pub(crate) fn invert(a: &Args) -> Result<Value> {
    pointwise(a, "invert", Some(("invert", "1".into())), |v| {
        safe_pow(Some(v), Some(-1.0))
    })
}

pub(crate) fn is_non_null(a: &Args) -> Result<Value> {
    each(
        a,
        |s| format!("isNonNull({})", s.name),
        Some(("isNonNull", "1".into())),
        |_, v| {
            v.iter()
                .map(|x| Some(if x.is_some() { 1.0 } else { 0.0 }))
                .collect()
        },
    )
}

pub(crate) fn round(a: &Args) -> Result<Value> {
    let precision = a.opt_int(1, "precision")?;
    let p = precision.unwrap_or(0);
    each(
        a,
        |s| match precision {
            None => format!("round({})", s.name),
            Some(p) => format!("round({},{p})", s.name),
        },
        Some(("round", p.to_string())),
        |_, v| v.iter().map(|x| x.map(|x| py_round(x, p))).collect(),
    )
}

pub(crate) fn scale_to_seconds(a: &Args) -> Result<Value> {
    let secs = a.num(1, "seconds")?;
    each(
        a,
        |s| format!("scaleToSeconds({},{})", s.name, py_d(secs)),
        Some(("scaleToSeconds", py_float(secs))),
        |s, v| {
            let factor = secs / s.step as f64;
            v.iter()
                .map(|x| {
                    x.map(|x| {
                        let r = x * factor;
                        if r.is_finite() {
                            py_round(r, 6)
                        } else {
                            (x / s.step as f64).floor() * secs
                        }
                    })
                })
                .collect()
        },
    )
}

pub(crate) fn min_max(a: &Args) -> Result<Value> {
    each(
        a,
        |s| format!("minMax({})", s.name),
        None,
        |_, v| {
            let vals = v.iter().flatten().copied();
            let min = vals.clone().reduce(f64::min).unwrap_or(0.0);
            let max = vals.reduce(f64::max).unwrap_or(0.0);
            v.iter()
                .map(|x| {
                    x.map(|x| {
                        if max - min == 0.0 {
                            0.0
                        } else {
                            (x - min) / (max - min)
                        }
                    })
                })
                .collect()
        },
    )
}

pub(crate) fn offset_to_zero(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let s = s.consolidated();
                let min = s.raw().iter().flatten().copied().reduce(f64::min);
                let values = s
                    .raw()
                    .iter()
                    .map(|x| x.map(|x| x - min.unwrap_or(0.0)))
                    .collect();
                let mut d = renamed(&s, format!("offsetToZero({})", s.name), values);
                d.tags.insert("offsetToZero".into(), py_optional(min));
                d
            })
            .collect(),
    ))
}

pub(crate) fn changed(a: &Args) -> Result<Value> {
    each(
        a,
        |s| format!("changed({})", s.name),
        None,
        |_, v| {
            let mut previous: Option<f64> = None;
            v.iter()
                .map(|x| {
                    Some(match (previous, *x) {
                        (None, x) => {
                            previous = x;
                            0.0
                        }
                        (Some(p), Some(x)) if p != x => {
                            previous = Some(x);
                            1.0
                        }
                        _ => 0.0,
                    })
                })
                .collect()
        },
    )
}

/// `delay(seriesList, steps)`: values moved `steps` points later (earlier when negative).
/// As in graphite-web, `steps=0` leaves no values (Python's `series[:-0]` is empty).
pub(crate) fn delay(a: &Args) -> Result<Value> {
    let steps = a.int(1, "steps")?;
    let list = a.series(0, "seriesList")?;
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let s = s.consolidated();
                let v = s.raw();
                let n = v.len();
                let k = usize::try_from(steps.unsigned_abs()).unwrap_or(usize::MAX);
                let values: Vec<Option<f64>> = if steps < 0 {
                    let mut out: Vec<Option<f64>> = v.get(k.min(n)..).unwrap_or(&[]).to_vec();
                    out.extend(std::iter::repeat_n(None, k.min(n)));
                    out
                } else if steps == 0 {
                    Vec::new()
                } else {
                    let mut out = vec![None; k.min(n)];
                    out.extend_from_slice(&v[..n.saturating_sub(k)]);
                    out
                };
                let mut d = renamed(&s, format!("delay({},{steps})", s.name), values);
                d.tags.insert("delay".into(), steps.to_string());
                d
            })
            .collect(),
    ))
}

/// `interpolate(seriesList, limit=inf)`: gaps of at most `limit` nulls between two values
/// filled on the straight line between them; leading and trailing gaps stay.
pub(crate) fn interpolate(a: &Args) -> Result<Value> {
    let limit = a.opt_num(1, "limit")?.unwrap_or(f64::INFINITY);
    each(
        a,
        |s| format!("interpolate({})", s.name),
        None,
        |_, v| {
            let mut out = v.to_vec();
            let mut nones = 0usize;
            for i in 1..out.len() {
                match out[i] {
                    None => nones += 1,
                    Some(_) if nones == 0 => {}
                    Some(value) => {
                        let before = i - nones - 1;
                        if let Some(b) = out[before] {
                            if (nones as f64) <= limit {
                                for (k, slot) in out.iter_mut().enumerate().take(i).skip(i - nones)
                                {
                                    *slot = Some(
                                        b + (k - before) as f64 * (value - b) / (nones + 1) as f64,
                                    );
                                }
                            }
                        }
                        nones = 0;
                    }
                }
            }
            out
        },
    )
}

/// `integralByInterval(seriesList, intervalUnit)`: a running sum that restarts at every
/// interval boundary counted from the request's start.
pub(crate) fn integral_by_interval(a: &Args) -> Result<Value> {
    let unit = a.str(1, "intervalUnit")?;
    let interval = super::transform::parse_interval(a, &unit)?.abs();
    if interval == 0 {
        return Err(a.err(format!("intervalUnit \"{unit}\" is zero")));
    }
    let start_time = a.ctx.from;
    let list = a.series(0, "seriesList")?;
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let s = s.consolidated();
                let mut t = s.start;
                let mut current = 0.0;
                let values = s
                    .raw()
                    .iter()
                    .map(|v| {
                        if (t - start_time).div_euclid(interval)
                            != (t - start_time - s.step).div_euclid(interval)
                        {
                            current = 0.0;
                        }
                        if let Some(x) = v {
                            current += x;
                        }
                        t += s.step;
                        Some(current)
                    })
                    .collect();
                let mut d = renamed(
                    &s,
                    format!("integralByInterval({},'{unit}')", s.name),
                    values,
                );
                d.tags.insert("integralByInterval".into(), unit.clone());
                d
            })
            .collect(),
    ))
}

/// The current time, for graphite's `now` in `timeSlice` and `linearRegression`.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A `date` parameter: graphite's at-time (`-1h`, `20240101`, epoch seconds, `now`).
pub(crate) fn date_arg(a: &Args, i: usize, name: &str) -> Result<Option<i64>> {
    match a.value(i, name)? {
        None | Some(Value::None) => Ok(None),
        Some(Value::Number(v, _)) if v.is_finite() && v.abs() < 1e15 => Ok(Some(v as i64)),
        Some(Value::Str(s)) => crate::time::parse_time(&s, now()).map(Some),
        Some(other) => Err(a.err(format!("argument \"{name}\" must be a time, got {other:?}"))),
    }
}

pub(crate) fn time_slice(a: &Args) -> Result<Value> {
    let start = date_arg(a, 1, "startSliceAt")?
        .ok_or_else(|| a.err("missing argument \"startSliceAt\""))?;
    let end = date_arg(a, 2, "endSliceAt")?.unwrap_or_else(now);
    let from = a.ctx.from;
    let list = a.series(0, "seriesList")?;
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let s = s.consolidated();
                let mut t = from;
                let values = s
                    .raw()
                    .iter()
                    .map(|v| {
                        let keep = t >= start && t <= end;
                        t += s.step;
                        v.filter(|_| keep)
                    })
                    .collect();
                let mut d = s.derive(format!("timeSlice({}, {start}, {end})", s.name), values);
                d.tags.insert("timeSliceStart".into(), start.to_string());
                d.tags.insert("timeSliceEnd".into(), end.to_string());
                d
            })
            .collect(),
    ))
}

/// Python's `seq[start:stop]` bounds for a sequence of `len`.
pub(crate) fn py_slice(len: usize, start: Option<i64>, stop: Option<i64>) -> (usize, usize) {
    let n = len as i64;
    let fix = |i: i64| if i < 0 { (n + i).max(0) } else { i.min(n) };
    let s = start.map_or(0, fix);
    let e = stop.map_or(n, fix);
    (s as usize, e.max(s) as usize)
}

pub(crate) fn substr(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let start = a.opt_int(1, "start")?.unwrap_or(0);
    let stop = a.opt_int(2, "stop")?.unwrap_or(0);
    for s in &mut list {
        let left = s.name.rfind('(').map_or(0, |i| i + 1);
        let right = s.name.find(')').unwrap_or(s.name.len());
        let clean = s.name.get(left..right.max(left)).unwrap_or("");
        let parts: Vec<&str> = clean.split('.').collect();
        let (i, j) = py_slice(
            parts.len(),
            Some(start),
            if stop == 0 { None } else { Some(stop) },
        );
        let mut name = parts[i..j].join(".");
        // re.sub(',.*$', '', name)
        if let Some(c) = name.find(',') {
            if !name[c..].contains('\n') {
                name.truncate(c);
            }
        }
        s.name = name;
    }
    Ok(Value::Series(list))
}

pub(crate) fn set_x_files_factor(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let xff = a.num(1, "xFilesFactor")?;
    for s in &mut list {
        s.x_files_factor = xff;
        s.tags.insert("xFilesFactor".into(), py_float(xff));
    }
    Ok(Value::Series(list))
}

/// `powSeries(*seriesLists)`: the first series to the power of the second, and so on, point by
/// point.
pub(crate) fn pow_series(a: &Args) -> Result<Value> {
    let mut list = a.series_rest(0)?;
    let Some((start, _, step)) = normalize(&mut list) else {
        return Ok(Value::Series(vec![]));
    };
    let name = format!(
        "powSeries({})",
        list.iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    let values = rows(&list)
        .iter()
        .map(|r| {
            let (first, rest) = r.split_first()?;
            rest.iter().fold(*first, |acc, x| safe_pow(acc, *x))
        })
        .collect();
    Ok(Value::Series(vec![TimeSeries::new(
        name, start, step, values,
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_pow_and_round() {
        assert_eq!(safe_pow(Some(-1.0), Some(0.5)), None);
        assert_eq!(safe_pow(Some(0.0), Some(-1.0)), None);
        assert_eq!(safe_pow(Some(10.0), Some(400.0)), None);
        assert_eq!(safe_pow(Some(4.0), Some(0.5)), Some(2.0));
        assert_eq!(safe_pow(None, Some(1.0)), None);
        assert_eq!(py_round(2.5, 0), 2.0);
        assert_eq!(py_round(3.5, 0), 4.0);
        assert_eq!(py_round(2.675, 2), 2.67);
        assert_eq!(py_round(1234.5, -2), 1200.0);
        assert_eq!(py_d(-1.7), "-1");
    }

    #[test]
    fn python_slices() {
        assert_eq!(py_slice(3, Some(1), None), (1, 3));
        assert_eq!(py_slice(3, Some(-1), None), (2, 3));
        assert_eq!(py_slice(3, Some(0), Some(-1)), (0, 2));
        assert_eq!(py_slice(3, Some(5), Some(1)), (3, 3));
    }
}
