//! The rest of graphite-web 1.1.8's library: smartSummarize, filterSeries, sortBy, unique,
//! useSeriesAbove, fallbackSeries, aliasQuery, events.

use std::cmp::Ordering;

use regex::Regex;

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::series::TimeSeries;
use crate::time::{civil_from_days, days_from_civil};

use super::agg::agg_func;
use super::alias::python_replacement;
use super::combine::evaluate_text;
use super::math::renamed;
use super::transform::parse_interval;

/// graphite's `_summarizeValues`: buckets of `interval` from `start` to `end`, each the
/// aggregate of its points (from the last point at or before the bucket's start), null when
/// too few are non-null for the series' xFilesFactor. Returns the values and the end reached.
pub(crate) fn summarize_values(
    s: &TimeSeries,
    agg: super::agg::AggFn,
    interval: i64,
    start: i64,
    end: i64,
) -> (Vec<Option<f64>>, i64) {
    let vals = s.raw();
    let step = s.step.max(1);
    let n = vals
        .len()
        .min(usize::try_from(((s.end - s.start).max(0) + step - 1) / step).unwrap_or(0));
    let ts = |i: usize| s.start + i as i64 * s.step;
    let interval_points = interval as f64 / s.step as f64;
    let (mut i, mut t) = (0usize, start);
    let mut out = Vec::new();
    while t < end {
        let mut first = i;
        let mut non_null = 0usize;
        while i < n && ts(i) < t + interval {
            if ts(i) <= t {
                first = i;
            }
            if ts(i) >= t && vals[i].is_some() {
                non_null += 1;
            }
            i += 1;
        }
        let ok = non_null > 0
            && interval_points != 0.0
            && non_null as f64 / interval_points >= s.x_files_factor;
        out.push(if ok { agg(&vals[first..i]) } else { None });
        t += interval;
    }
    (out, t)
}

/// The start of the unit of `align_to` containing `t` (graphite-web's `alignTo`, in UTC).
fn align_start(a: &Args, t: i64, align_to: &str) -> Result<i64> {
    let day = t.div_euclid(86_400);
    let (y, m, _) = civil_from_days(day);
    let u = align_to;
    Ok(if u.starts_with('s') {
        t
    } else if u.starts_with("min") {
        t - t.rem_euclid(60)
    } else if u.starts_with('h') {
        t - t.rem_euclid(3600)
    } else if u.starts_with('d') {
        day * 86_400
    } else if u.starts_with('w') {
        let target = match u.chars().last() {
            Some(c) if c.is_ascii_digit() => i64::from(c as u8 - b'0'),
            _ => 1,
        };
        let iso = (day + 3).rem_euclid(7) + 1;
        let mut back = iso - target;
        if back < 0 {
            back += 7;
        }
        (day - back) * 86_400
    } else if u.starts_with("mon") {
        days_from_civil(y, m, 1) * 86_400
    } else if u.starts_with('y') {
        days_from_civil(y, 1, 1) * 86_400
    } else {
        return Err(a.err(format!("Invalid offset unit '{align_to}'")));
    })
}

pub(crate) fn smart_summarize(a: &Args) -> Result<Value> {
    let text = a.str(1, "intervalString")?;
    let func = a.opt_str(2, "func")?.unwrap_or_else(|| "sum".into());
    let align = match a.value(3, "alignTo")? {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    };
    let interval = parse_interval(a, &text)?;
    if interval <= 0 {
        return Err(a.err(format!("intervalString \"{text}\" must be positive")));
    }
    let agg = agg_func(&func)
        .ok_or_else(|| a.err(format!("Unsupported aggregation function: {func}")))?;
    let list = match &align {
        Some(u) => {
            let from = align_start(a, a.ctx.from, u)?;
            let ctx = a.ctx.with_range(from, a.ctx.until);
            a.series_in(&ctx, 0, "seriesList")?
        }
        None => a.series(0, "seriesList")?,
    };
    let mut out = Vec::new();
    for s in list {
        let s = s.consolidated();
        let span = (s.end - s.start).max(0);
        a.ctx.account_generated(
            a.func(),
            usize::try_from(span / interval + 1).unwrap_or(usize::MAX),
        )?;
        let (values, end) = summarize_values(&s, agg, interval, s.start, s.end);
        let name = format!("smartSummarize({}, \"{text}\", \"{func}\")", s.name);
        let mut d = renamed(&s, name, values);
        d.step = interval;
        d.end = end;
        d.tags.insert("smartSummarize".into(), text.clone());
        d.tags.insert("smartSummarizeFunction".into(), func.clone());
        out.push(d);
    }
    Ok(Value::Series(out))
}

pub(crate) fn filter_series(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let func = a.str(1, "func")?;
    let op = a.str(2, "operator")?;
    let threshold = a.num(3, "threshold")?;
    let f = agg_func(&func)
        .ok_or_else(|| a.err(format!("Unsupported aggregation function: {func}")))?;
    let test: fn(Option<f64>, f64) -> bool = match op.as_str() {
        "=" => |v, t| v == Some(t),
        "!=" => |v, t| v != Some(t),
        ">" => |v, t| v.is_some_and(|v| v > t),
        ">=" => |v, t| v.is_some_and(|v| v >= t),
        "<" => |v, t| v.is_none_or(|v| v < t),
        "<=" => |v, t| v.is_none_or(|v| v <= t),
        _ => return Err(a.err(format!("Unsupported operator: {op}"))),
    };
    Ok(Value::Series(
        list.into_iter()
            .filter(|s| test(f(&s.values_cow()), threshold))
            .collect(),
    ))
}

pub(crate) fn sort_by(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let func = a.opt_str(1, "func")?.unwrap_or_else(|| "average".into());
    let reverse = a.opt_bool(2, "reverse")?.unwrap_or(false);
    let f = agg_func(&func)
        .ok_or_else(|| a.err(format!("Unsupported aggregation function: {func}")))?;
    let mut keyed: Vec<(f64, TimeSeries)> = list
        .drain(..)
        .map(|s| (f(&s.values_cow()).unwrap_or(f64::NEG_INFINITY), s))
        .collect();
    // Python's sort is stable, reversed or not.
    if reverse {
        keyed.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or(Ordering::Equal));
    } else {
        keyed.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(Ordering::Equal));
    }
    Ok(Value::Series(keyed.into_iter().map(|(_, s)| s).collect()))
}

pub(crate) fn unique(a: &Args) -> Result<Value> {
    let mut seen = std::collections::HashSet::new();
    Ok(Value::Series(
        a.series_rest(0)?
            .into_iter()
            .filter(|s| seen.insert(s.name.clone()))
            .collect(),
    ))
}

pub(crate) fn fallback_series(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let fallback = a.series(1, "fallback")?;
    Ok(Value::Series(if list.is_empty() { fallback } else { list }))
}

fn regex(a: &Args, pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| a.err(format!("bad regex \"{pattern}\": {e}")))
}

pub(crate) fn use_series_above(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let value = a.num(1, "value")?;
    let re = regex(a, &a.str(2, "search")?)?;
    let replace = python_replacement(&a.str(3, "replace")?);
    let names: Vec<String> = list
        .iter()
        .filter(|s| {
            s.values_cow()
                .iter()
                .flatten()
                .copied()
                .reduce(f64::max)
                .is_some_and(|m| m > value)
        })
        .map(|s| re.replace_all(&s.name, replace.as_str()).into_owned())
        .collect();
    if names.is_empty() {
        return Ok(Value::Series(vec![]));
    }
    let found = evaluate_text(a, &format!("group({})", names.join(",")))?;
    Ok(Value::Series(
        found.into_iter().filter(|s| !s.is_empty()).collect(),
    ))
}

/// Python's `fmt % value` for one number: `%d`, `%i`, `%f`, `%e`, `%g`, `%s`, `%r`, `%x`, `%o`,
/// `%%`, with flags, width and precision. `None` where Python raises.
pub(crate) fn py_percent(fmt: &str, v: f64) -> Option<String> {
    let mut out = String::new();
    let mut used = false;
    let mut it = fmt.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = it.peek().filter(|f| "-+ 0#".contains(**f)) {
            flags.push(f);
            it.next();
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        let mut prec: Option<usize> = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = String::new();
            while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                it.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let conv = it.next()?;
        if conv == '%' {
            out.push('%');
            continue;
        }
        if used {
            return None;
        }
        used = true;
        let prec = prec.map(|p| p.min(100));
        let mut body = match conv {
            'd' | 'i' | 'u' => {
                if !v.is_finite() {
                    return None;
                }
                format!("{}", v.trunc() as i64)
            }
            'x' | 'X' | 'o' => {
                // Python refuses a float for these.
                return None;
            }
            'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), v),
            'e' | 'E' => {
                let s = format!("{:.*e}", prec.unwrap_or(6), v);
                let (m, x) = s.split_once('e')?;
                let x: i32 = x.parse().ok()?;
                format!("{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs())
            }
            'g' | 'G' => match prec {
                None | Some(6) => crate::graphite::py_number::py_g(v),
                Some(_) => crate::graphite::py_number::py_g(v),
            },
            's' | 'r' => crate::graphite::py_number::py_float(v),
            _ => return None,
        };
        if conv.is_ascii_uppercase() {
            body = body.to_uppercase();
        }
        if flags.contains('+') && v >= 0.0 {
            body.insert(0, '+');
        } else if flags.contains(' ') && v >= 0.0 {
            body.insert(0, ' ');
        }
        let w: usize = width.parse().unwrap_or(0).min(1000);
        if body.len() < w {
            let pad = w - body.len();
            if flags.contains('-') {
                body.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && conv != 's' {
                let at = usize::from(body.starts_with(['+', '-', ' ']));
                body.insert_str(at, &"0".repeat(pad));
            } else {
                body.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&body);
    }
    used.then_some(out)
}

pub(crate) fn alias_query(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let re = regex(a, &a.str(1, "search")?)?;
    let replace = python_replacement(&a.str(2, "replace")?);
    let new_name = a.str(3, "newName")?;
    for s in &mut list {
        let query = re.replace_all(&s.name, replace.as_str()).into_owned();
        let found = evaluate_text(a, &query)?;
        let Some(first) = found.first() else {
            return Err(a.err(format!("No series found with query: {query}")));
        };
        let current = first
            .values_cow()
            .iter()
            .rev()
            .find_map(|v| *v)
            .ok_or_else(|| a.err(format!("Cannot get last value of series: {}", first.name)))?;
        s.name = py_percent(&new_name, current).ok_or_else(|| {
            a.err(format!(
                "newName \"{new_name}\" must format one number (%d, %f, %s, ...)"
            ))
        })?;
    }
    Ok(Value::Series(list))
}

/// `events(*tags)`: the number of events at each second of the range (all events for `"*"`,
/// else those with every tag given); graphite-web's one-second series, consolidated by sum.
pub(crate) fn events(a: &Args) -> Result<Value> {
    let tags: Vec<String> = a
        .values_from(0)?
        .into_iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s),
            other => Err(a.err(format!("tags must be strings, got {other:?}"))),
        })
        .collect::<Result<_>>()?;
    let name = format!("events(\"{}\")", tags.join("\", \""));
    let all = tags.is_empty() || tags == ["*"];
    let (start, end) = (a.ctx.from, a.ctx.until);
    let points = usize::try_from((end - start).max(0)).unwrap_or(usize::MAX);
    a.ctx.account_generated(a.func(), points)?;
    let mut values: Vec<Option<f64>> = vec![None; points];
    for e in a.ctx.source.events(start, end)? {
        if !all && !tags.iter().all(|t| e.tags.contains(t)) {
            continue;
        }
        let Some(slot) = usize::try_from(e.when - start)
            .ok()
            .and_then(|i| values.get_mut(i))
        else {
            continue;
        };
        *slot = Some(slot.unwrap_or(0.0) + 1.0);
    }
    let mut s = TimeSeries::new(name, start, 1, values);
    s.end = end;
    s.consolidation = crate::series::Consolidation::Sum;
    Ok(Value::Series(vec![s]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_percent_formatting() {
        assert_eq!(
            py_percent("Channel %d MHz", 5.7).as_deref(),
            Some("Channel 5 MHz")
        );
        assert_eq!(py_percent("%.2f", 1.0 / 3.0).as_deref(), Some("0.33"));
        assert_eq!(py_percent("%s", 2.0).as_deref(), Some("2.0"));
        assert_eq!(py_percent("%05d%%", 42.0).as_deref(), Some("00042%"));
        assert_eq!(py_percent("no spec", 1.0), None);
        assert_eq!(py_percent("%d %d", 1.0), None);
        assert_eq!(py_percent("%x", 1.0), None);
    }

    #[test]
    fn aligning_to_units() {
        let ctx = crate::fetch::Ctx::new(
            std::sync::Arc::new(crate::source::MemSource::default()),
            0,
            1,
        );
        let call = crate::graphite::expr::Call {
            name: "smartSummarize".into(),
            args: vec![],
            kwargs: vec![],
            raw: String::new(),
        };
        let a = Args {
            ctx: &ctx,
            call: &call,
        };
        // 2023-11-14T22:13:20Z, a Tuesday.
        let t = 1_700_000_000;
        assert_eq!(align_start(&a, t, "hours").ok(), Some(1_699_999_200));
        assert_eq!(align_start(&a, t, "days").ok(), Some(1_699_920_000));
        assert_eq!(align_start(&a, t, "weeks").ok(), Some(1_699_833_600));
        assert_eq!(align_start(&a, t, "weeks3").ok(), Some(1_699_401_600));
        assert_eq!(align_start(&a, t, "months").ok(), Some(1_698_796_800));
        assert_eq!(align_start(&a, t, "years").ok(), Some(1_672_531_200));
        assert!(align_start(&a, t, "m").is_err());
    }
}
