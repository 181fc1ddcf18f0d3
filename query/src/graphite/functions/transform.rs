//! Per-series transforms: scale, offset, derivatives, integral, null handling, moving windows,
//! summarize, hitcount, timeShift, timeStack, consolidateBy.

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::graphite::py_number::{py_float, py_g};
use crate::series::{Consolidation, TimeSeries};
use crate::time::unit_secs;

use super::agg::agg_func;

/// Applies `f` to every value and renames with `name(series)`.
fn map_values(
    a: &Args,
    name: impl Fn(&TimeSeries) -> String,
    f: impl Fn(f64) -> Option<f64>,
) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let values = s.values().into_iter().map(|v| v.and_then(&f)).collect();
                let n = name(&s);
                let mut d = s.consolidated().derive(n.clone(), values);
                d.path_expression = n;
                d
            })
            .collect(),
    ))
}

/// Adds a tag to every series of a result (graphite-web marks most transforms this way).
fn tagged(v: Result<Value>, tag: &str, value: String) -> Result<Value> {
    let mut v = v?;
    if let Value::Series(list) = &mut v {
        for s in list {
            s.tags.insert(tag.to_owned(), value.clone());
        }
    }
    Ok(v)
}

pub(crate) fn scale(a: &Args) -> Result<Value> {
    let factor = a.num(1, "factor")?;
    tagged(
        map_values(
            a,
            |s| format!("scale({},{})", s.name, py_g(factor)),
            |v| Some(v * factor),
        ),
        "scale",
        py_float(factor),
    )
}

pub(crate) fn offset(a: &Args) -> Result<Value> {
    let factor = a.num(1, "factor")?;
    tagged(
        map_values(
            a,
            |s| format!("offset({},{})", s.name, py_g(factor)),
            |v| Some(v + factor),
        ),
        "offset",
        py_float(factor),
    )
}

pub(crate) fn absolute(a: &Args) -> Result<Value> {
    tagged(
        map_values(a, |s| format!("absolute({})", s.name), |v| Some(v.abs())),
        "absolute",
        "1".into(),
    )
}

pub(crate) fn remove_value(a: &Args, above: bool) -> Result<Value> {
    let n = a.num(1, "n")?;
    let f = if above {
        "removeAboveValue"
    } else {
        "removeBelowValue"
    };
    map_values(
        a,
        |s| format!("{f}({}, {})", s.name, py_g(n)),
        |v| {
            if (above && v > n) || (!above && v < n) {
                None
            } else {
                Some(v)
            }
        },
    )
}

/// graphite's `_nonNegativeDelta`.
fn non_negative_delta(
    val: Option<f64>,
    prev: Option<f64>,
    max: Option<f64>,
    min: Option<f64>,
) -> (Option<f64>, Option<f64>) {
    if let (Some(v), Some(m)) = (val, max) {
        if v > m {
            return (None, None);
        }
    }
    if let (Some(v), Some(m)) = (val, min) {
        if v < m {
            return (None, None);
        }
    }
    let (Some(v), Some(p)) = (val, prev) else {
        return (None, val);
    };
    if v >= p {
        return (Some(v - p), Some(v));
    }
    if let Some(m) = max {
        return (Some(m + 1.0 + v - p - min.unwrap_or(0.0)), Some(v));
    }
    if let Some(m) = min {
        return (Some(v - m), Some(v));
    }
    (None, Some(v))
}

pub(crate) fn derivative(a: &Args, kind: &str) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let (max, min) = if kind == "derivative" {
        (None, None)
    } else {
        (a.opt_num(1, "maxValue")?, a.opt_num(2, "minValue")?)
    };
    let mut out = Vec::new();
    for s in list {
        let s = s.consolidated();
        let step = s.step as f64;
        let mut prev: Option<f64> = None;
        let mut values = Vec::with_capacity(s.len());
        for v in s.raw().iter().copied() {
            let delta = match kind {
                "derivative" => {
                    let d = match (prev, v) {
                        (Some(p), Some(x)) => Some(x - p),
                        _ => None,
                    };
                    prev = v;
                    d
                }
                _ => {
                    let (d, p) = non_negative_delta(v, prev, max, min);
                    prev = p;
                    if kind == "perSecond" {
                        d.map(|d| ((d / step) * 1e6).round() / 1e6)
                    } else {
                        d
                    }
                }
            };
            values.push(delta);
        }
        let mut d = s.derive(format!("{kind}({})", s.name), values);
        d.tags.insert(kind.to_owned(), "1".into());
        out.push(d);
    }
    Ok(Value::Series(out))
}

pub(crate) fn integral(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let mut acc = 0.0;
                let values = s
                    .values()
                    .into_iter()
                    .map(|v| {
                        v.map(|x| {
                            acc += x;
                            acc
                        })
                    })
                    .collect();
                let name = format!("integral({})", s.name);
                let mut d = s.consolidated().derive(name, values);
                d.tags.insert("integral".into(), "1".into());
                d
            })
            .collect(),
    ))
}

pub(crate) fn keep_last_value(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let limit = a.opt_num(1, "limit")?.unwrap_or(f64::INFINITY);
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let mut values = s.values();
                let (mut nones, mut last) = (0usize, None);
                for i in 0..values.len() {
                    match values[i] {
                        None => nones += 1,
                        Some(v) => {
                            if nones > 0 && (nones as f64) <= limit {
                                if let Some(l) = last {
                                    values[i - nones..i].iter_mut().for_each(|x| *x = Some(l));
                                }
                            }
                            nones = 0;
                            last = Some(v);
                        }
                    }
                }
                if nones > 0 && (nones as f64) <= limit {
                    if let Some(l) = last {
                        let n = values.len();
                        values[n - nones..].iter_mut().for_each(|x| *x = Some(l));
                    }
                }
                let name = format!("keepLastValue({})", s.name);
                let mut d = s.consolidated().derive(name.clone(), values);
                d.path_expression = name;
                d
            })
            .collect(),
    ))
}

pub(crate) fn transform_null(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let given = a.opt_num(1, "default")?;
    let default = given.unwrap_or(0.0);
    // graphite-web tags the default as given (a float) or as its int default 0.
    let default_tag = given.map_or_else(|| "0".to_owned(), py_float);
    let reference = match a.value(2, "referenceSeries")? {
        Some(Value::Series(r)) if !r.is_empty() => Some(r),
        _ => None,
    };
    let defaults: Option<Vec<Option<f64>>> = reference.as_ref().map(|r| {
        super::agg::rows(r)
            .iter()
            .map(|row| row.iter().any(Option::is_some).then_some(default))
            .collect()
    });
    Ok(Value::Series(
        list.into_iter()
            .map(|s| {
                let vals = s.values();
                let values = match &defaults {
                    Some(d) => (0..vals.len().max(d.len()))
                        .map(|i| {
                            vals.get(i)
                                .copied()
                                .flatten()
                                .or(d.get(i).copied().flatten())
                        })
                        .collect(),
                    None => vals.into_iter().map(|v| v.or(Some(default))).collect(),
                };
                let name = if defaults.is_some() {
                    format!(
                        "transformNull({},{},referenceSeries)",
                        s.name,
                        py_g(default)
                    )
                } else {
                    format!("transformNull({},{})", s.name, py_g(default))
                };
                let mut d = s.consolidated().derive(name.clone(), values);
                d.path_expression = name;
                d.tags.insert("transformNull".into(), default_tag.clone());
                if defaults.is_some() {
                    d.tags.insert("referenceSeries".into(), "1".into());
                }
                d
            })
            .collect(),
    ))
}

/// `movingAverage`, `movingMedian`, `movingSum`, ... : the window *before* each point, fetched
/// from before `from` so the first points have a full window.
/// `func` `None` is `movingWindow(seriesList, windowSize, func, xFilesFactor)`.
pub(crate) fn moving(a: &Args, func: Option<&str>) -> Result<Value> {
    let window = a
        .value(1, "windowSize")?
        .ok_or_else(|| a.err("missing argument \"windowSize\""))?;
    let (func, xff) = match func {
        Some(f) => (f.to_owned(), a.opt_num(2, "xFilesFactor")?),
        None => (
            a.opt_str(2, "func")?.unwrap_or_else(|| "average".into()),
            a.opt_num(3, "xFilesFactor")?,
        ),
    };
    let func = func.as_str();
    let agg =
        agg_func(func).ok_or_else(|| a.err(format!("Unsupported aggregation function: {func}")))?;
    let probe = a.series(0, "seriesList")?;
    if probe.is_empty() {
        return Ok(Value::Series(vec![]));
    }
    let (preview, text) = match &window {
        Value::Str(s) => (parse_interval(a, s)?.abs(), format!("\"{s}\"")),
        Value::Number(n, _) => {
            if !(1.0..=1e6).contains(n) {
                return Err(a.err(format!(
                    "windowSize must be 1 to 1000000 points, got {}",
                    py_g(*n)
                )));
            }
            let step = probe.iter().map(|s| s.step).max().unwrap_or(1);
            let preview = step
                .checked_mul(*n as i64)
                .ok_or_else(|| a.err("windowSize is too large"))?;
            (preview, format!("{}", *n as i64))
        }
        other => {
            return Err(a.err(format!(
                "windowSize must be a number of points or an interval, got {other:?}"
            )))
        }
    };
    let ctx = a.ctx.with_range(a.ctx.from - preview, a.ctx.until);
    let list = a.series_in(&ctx, 0, "seriesList")?;
    // Python's str.capitalize: the first letter upper, the rest lower.
    let mut chars = func.chars();
    let tag = format!(
        "moving{}{}",
        chars
            .next()
            .map(|c| c.to_uppercase().to_string())
            .unwrap_or_default(),
        chars.as_str().to_lowercase()
    );
    let mut out = Vec::new();
    for s in list {
        let s = s.consolidated();
        let points = match &window {
            Value::Str(_) => (preview / s.step) as usize,
            _ => probe_points(&window),
        };
        let vals = s.raw();
        let effective_xff = xff.unwrap_or(s.x_files_factor);
        let mut values = Vec::new();
        for i in points..vals.len() {
            let win = &vals[i - points..i];
            let non_null = win.iter().filter(|v| v.is_some()).count();
            let ok = non_null > 0 && points > 0 && non_null as f64 / points as f64 >= effective_xff;
            // graphite-web aggregates the window's non-null values only.
            values.push(if !ok {
                None
            } else if non_null == points {
                agg(win)
            } else {
                let present: Vec<Option<f64>> =
                    win.iter().filter(|v| v.is_some()).copied().collect();
                agg(&present)
            });
        }
        let name = format!("{tag}({},{text})", s.name);
        let mut d = s.derive(name, values);
        d.start = s.start + preview;
        d.end = d.start + d.len() as i64 * d.step;
        d.tags.insert(
            tag.clone(),
            match &window {
                Value::Str(w) => w.clone(),
                Value::Number(n, _) => format!("{}", *n as i64),
                _ => String::new(),
            },
        );
        out.push(d);
    }
    Ok(Value::Series(out))
}

fn probe_points(window: &Value) -> usize {
    match window {
        Value::Number(n, _) => n.max(0.0) as usize,
        _ => 0,
    }
}

/// Counts the points a function is about to make against the request's limit, which the
/// points it read and every other function's count too; refuses before they are made.
fn check_generated(a: &Args, span: i64, step: i64) -> Result<()> {
    let n = span.max(0) / step.max(1) + 1;
    a.ctx
        .account_generated(a.func(), usize::try_from(n).unwrap_or(usize::MAX))
}

/// A request range moved by `delta` seconds, or an error when that leaves the calendar.
fn shifted(a: &Args, delta: i64) -> Result<crate::fetch::Ctx> {
    match (
        a.ctx.from.checked_add(delta),
        a.ctx.until.checked_add(delta),
    ) {
        (Some(f), Some(u)) => Ok(a.ctx.with_range(f, u)),
        _ => Err(a.err("the shift moves the range out of bounds")),
    }
}

/// Seconds of a graphite interval string (`"1h"`, `"-1d"`, `"30min"`).
pub(crate) fn parse_interval(a: &Args, text: &str) -> Result<i64> {
    let t = text.trim();
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let mut total = 0i64;
    let mut rest = rest;
    if rest.is_empty() {
        return Err(a.err(format!("bad interval \"{text}\"")));
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| a.err(format!("bad interval \"{text}\"")))?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = unit_secs(&rest[..letters]).ok_or_else(|| {
            a.err(format!(
                "bad interval \"{text}\": unknown unit \"{}\"",
                &rest[..letters]
            ))
        })?;
        rest = &rest[letters..];
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| a.err(format!("interval \"{text}\" is too large")))?;
    }
    Ok(sign * total)
}

pub(crate) fn summarize(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let text = a.str(1, "intervalString")?;
    let func = a.opt_str(2, "func")?.unwrap_or_else(|| "sum".into());
    let align = a.opt_bool(3, "alignToFrom")?.unwrap_or(false);
    let interval = parse_interval(a, &text)?.abs().max(1);
    let agg = agg_func(&func)
        .ok_or_else(|| a.err(format!("unsupported aggregation function: {func}")))?;
    let mut out = Vec::new();
    for s in list {
        let s = s.consolidated();
        let (new_start, new_end) = if align {
            (s.start, s.end)
        } else {
            (
                s.start - s.start.rem_euclid(interval),
                s.end - s.end.rem_euclid(interval) + interval,
            )
        };
        check_generated(a, new_end - new_start, interval)?;
        let ts: Vec<i64> = (0..s.len() as i64).map(|i| s.start + i * s.step).collect();
        let vals = s.raw();
        let interval_points = interval as f64 / s.step as f64;
        let (mut i, mut t) = (0usize, new_start);
        let mut values = Vec::new();
        while t < new_end {
            let mut first = i;
            let mut non_null = 0;
            while i < ts.len() && ts[i] < t + interval {
                if ts[i] <= t {
                    first = i;
                }
                if ts[i] >= t && vals[i].is_some() {
                    non_null += 1;
                }
                i += 1;
            }
            let ok = non_null > 0 && non_null as f64 / interval_points >= s.x_files_factor;
            values.push(if ok { agg(&vals[first..i]) } else { None });
            t += interval;
        }
        let name = format!(
            "summarize({}, \"{text}\", \"{func}\"{})",
            s.name,
            if align { ", true" } else { "" }
        );
        let mut d = s.derive(name, values);
        d.start = new_start;
        d.step = interval;
        d.end = if align { t } else { new_end };
        d.tags.insert("summarize".into(), text.clone());
        d.tags.insert("summarizeFunction".into(), func.clone());
        out.push(d);
    }
    Ok(Value::Series(out))
}

pub(crate) fn hitcount(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let text = a.str(1, "intervalString")?;
    let align = a.opt_bool(2, "alignToInterval")?.unwrap_or(false);
    let interval = parse_interval(a, &text)?.abs().max(1);
    let list = if align {
        let s = a.ctx.from;
        let start = if interval >= 86_400 {
            s - s.rem_euclid(86_400)
        } else if interval >= 3600 {
            s - s.rem_euclid(3600)
        } else if interval >= 60 {
            s - s.rem_euclid(60)
        } else {
            s
        };
        let ctx = a.ctx.with_range(start, a.ctx.until);
        a.series_in(&ctx, 0, "seriesList")?
            .into_iter()
            .map(|mut s| {
                let n = (s.end - s.start) / interval;
                s.end = s.start + n * interval + interval;
                s
            })
            .collect()
    } else {
        list
    };
    let mut out = Vec::new();
    for s in list {
        let s = s.consolidated();
        let step = s.step;
        check_generated(a, s.end - s.start, interval)?;
        let buckets_n = ((s.end - s.start) as f64 / interval as f64).ceil().max(0.0) as usize;
        let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); buckets_n];
        let new_start = s.end - buckets_n as i64 * interval;
        for (i, v) in s.raw().iter().enumerate() {
            let Some(v) = *v else { continue };
            let start_time = s.start + i as i64 * step;
            let (sb, sm) = (
                (start_time - new_start).div_euclid(interval),
                (start_time - new_start).rem_euclid(interval),
            );
            if sb >= buckets_n as i64 {
                // Past the series' end (constantLine's last point): in no bucket. graphite-web
                // raises an IndexError here.
                continue;
            }
            let end_time = start_time + step;
            let (mut eb, mut em) = (
                (end_time - new_start).div_euclid(interval),
                (end_time - new_start).rem_euclid(interval),
            );
            if eb >= buckets_n as i64 {
                eb = buckets_n as i64 - 1;
                em = interval;
            }
            if sb == eb {
                if sb >= 0 {
                    buckets[sb as usize].push(v * (em - sm) as f64);
                }
            } else {
                if sb >= 0 {
                    buckets[sb as usize].push(v * (interval - sm) as f64);
                }
                for j in (sb + 1).max(0)..eb {
                    buckets[j as usize].push(v * interval as f64);
                }
                if em > 0 && eb >= 0 {
                    buckets[eb as usize].push(v * em as f64);
                }
            }
        }
        let values = buckets
            .iter()
            .map(|b| (!b.is_empty()).then(|| b.iter().sum()))
            .collect();
        let name = format!(
            "hitcount({}, \"{text}\"{})",
            s.name,
            if align { ", true" } else { "" }
        );
        let mut d = s.derive(name, values);
        d.start = new_start;
        d.step = interval;
        d.end = new_start + buckets_n as i64 * interval;
        d.tags.insert("hitcount".into(), text.clone());
        out.push(d);
    }
    Ok(Value::Series(out))
}

pub(crate) fn time_shift(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let mut shift = a.str(1, "timeShift")?;
    let reset_end = a.opt_bool(2, "resetEnd")?.unwrap_or(true);
    if shift.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        shift = format!("-{shift}");
    }
    let delta = parse_interval(a, &shift)?;
    let Some(first) = list.first() else {
        return Ok(Value::Series(vec![]));
    };
    let ctx = shifted(a, delta)?;
    let shifted = a.series_in(&ctx, 0, "seriesList")?;
    Ok(Value::Series(
        shifted
            .into_iter()
            .map(|mut s| {
                s.tags.insert("timeShift".into(), shift.clone());
                s.name = format!("timeShift({}, \"{shift}\")", s.name);
                s.end = if reset_end {
                    first.end
                } else {
                    s.end - s.start + first.start
                };
                s.start = first.start;
                s
            })
            .collect(),
    ))
}

pub(crate) fn time_stack(a: &Args) -> Result<Value> {
    let text = a
        .opt_str(1, "timeShiftUnit")?
        .unwrap_or_else(|| "1d".into());
    let start = a.opt_num(2, "timeShiftStart")?.unwrap_or(0.0) as i64;
    let end = a.opt_num(3, "timeShiftEnd")?.unwrap_or(7.0) as i64;
    let unit = if text.starts_with(['-', '+']) {
        text.clone()
    } else {
        format!("-{text}")
    };
    let delta = parse_interval(a, &unit)?;
    let list = a.series(0, "seriesList")?;
    let Some(first) = list.first().cloned() else {
        return Ok(Value::Series(vec![]));
    };
    if end.saturating_sub(start) > 1000 {
        return Err(a.err("at most 1000 shifts"));
    }
    let mut out = Vec::new();
    for shift in start..end {
        let ctx = shifted(
            a,
            delta
                .checked_mul(shift)
                .ok_or_else(|| a.err("the shift is too large"))?,
        )?;
        for mut s in a.series_in(&ctx, 0, "seriesList")? {
            s.name = format!("timeShift({}, {}, {shift})", s.name, unit);
            s.tags.insert("timeShiftUnit".into(), unit.clone());
            s.tags.insert("timeShift".into(), shift.to_string());
            s.start = first.start;
            s.end = first.end;
            out.push(s);
        }
    }
    Ok(Value::Series(out))
}

/// `consolidateBy(seriesList, func)`; `cumulative(seriesList)` is `consolidateBy(..., 'sum')`.
pub(crate) fn consolidate_by(a: &Args, fixed: Option<&str>) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let func = match fixed {
        Some(f) => f.to_owned(),
        None => a.str(1, "consolidationFunc")?,
    };
    let c = Consolidation::parse(&func)
        .ok_or_else(|| a.err(format!("invalid consolidation function \"{func}\"")))?;
    Ok(Value::Series(
        list.into_iter()
            .map(|mut s| {
                s.consolidation = c;
                s.name = format!("consolidateBy({},\"{func}\")", s.name);
                s.path_expression = s.name.clone();
                s.tags.insert("consolidateBy".into(), func.clone());
                s
            })
            .collect(),
    ))
}

/// `constantLine(value)`: three points spanning the request, named by the value.
pub(crate) fn constant_line(a: &Args) -> Result<Value> {
    let v = a.num(0, "value")?;
    // The value is a float parameter in graphite-web: `constantLine(100)` is named "100.0".
    let text = py_float(v);
    let (start, end) = (a.ctx.from, a.ctx.until);
    let step = ((end - start) / 2).max(1);
    let mut s = TimeSeries::new(text.clone(), start, step, vec![Some(v); 3]);
    s.end = end;
    s.path_expression = format!("constantLine({text})");
    Ok(Value::Series(vec![s]))
}

/// `time(name, step)` and `sinFunction(name, amplitude, step)`: values from the clock.
pub(crate) fn clock(a: &Args, sin: bool) -> Result<Value> {
    let name = a.str(0, "name")?;
    let (amplitude, step) = if sin {
        (
            a.opt_num(1, "amplitude")?.unwrap_or(1.0),
            a.opt_num(2, "step")?.unwrap_or(60.0),
        )
    } else {
        (1.0, a.opt_num(1, "step")?.unwrap_or(60.0))
    };
    let step = (step as i64).max(1);
    let (start, end) = (a.ctx.from, a.ctx.until);
    check_generated(a, end - start, step)?;
    let mut values = Vec::new();
    let mut t = start;
    while t < end {
        values.push(Some(if sin {
            (t as f64).sin() * amplitude
        } else {
            t as f64
        }));
        t = t.saturating_add(step);
    }
    let mut s = TimeSeries::new(name, start, step, values);
    s.end = end;
    Ok(Value::Series(vec![s]))
}
