//! Combining series: the `aggregate` family (sumSeries, averageSeries, ...), asPercent,
//! divideSeries, countSeries, percentileOfSeries, group, groupByNode(s), groupByTags.
//! Rows are read by position after `normalize` (lcm of steps), nulls are ignored, an all-null row
//! is null, and division by zero or null is null, as in graphite-web.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::graphite::py_number::{py_g, py_number};
use crate::series::{normalize, TimeSeries};

use super::names::{agg_key, format_path_expressions};

/// An aggregation over a row of values, `None` meaning null.
pub(crate) type AggFn = fn(&[Option<f64>]) -> Option<f64>;

/// One of graphite's aggregation functions over a row; `None` for nulls.
pub(crate) fn agg_func(name: &str) -> Option<AggFn> {
    fn safe(row: &[Option<f64>]) -> Vec<f64> {
        row.iter().flatten().copied().collect()
    }
    Some(match name {
        "average" | "avg" => |r| {
            let v = safe(r);
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        },
        "avg_zero" => |r| {
            (!r.is_empty())
                .then(|| r.iter().map(|v| v.unwrap_or(0.0)).sum::<f64>() / r.len() as f64)
        },
        "median" => |r| {
            let mut v = safe(r);
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            let mid = v.len() / 2;
            Some(if v.len().is_multiple_of(2) {
                (v[mid - 1] + v[mid]) / 2.0
            } else {
                v[mid]
            })
        },
        "sum" | "total" => |r| {
            let v = safe(r);
            (!v.is_empty()).then(|| v.iter().sum())
        },
        "min" => |r| safe(r).into_iter().reduce(f64::min),
        "max" => |r| safe(r).into_iter().reduce(f64::max),
        "diff" => |r| {
            let v = safe(r);
            let (first, rest) = v.split_first()?;
            Some(first - rest.iter().sum::<f64>())
        },
        "stddev" => |r| {
            let v = safe(r);
            if v.is_empty() {
                return None;
            }
            let avg = v.iter().sum::<f64>() / v.len() as f64;
            Some((v.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / v.len() as f64).sqrt())
        },
        "count" => |r| Some(r.iter().filter(|v| v.is_some()).count() as f64),
        "range" | "rangeOf" => |r| {
            let v = safe(r);
            Some(v.iter().copied().reduce(f64::max)? - v.iter().copied().reduce(f64::min)?)
        },
        "multiply" => |r| r.iter().try_fold(1.0, |acc, v| v.map(|x| acc * x)),
        "last" | "current" => |r| r.iter().rev().find_map(|v| *v),
        _ => return None,
    })
}

fn xff_ok(row: &[Option<f64>], xff: f64) -> bool {
    let non_null = row.iter().filter(|v| v.is_some()).count();
    non_null > 0 && !row.is_empty() && non_null as f64 / row.len() as f64 >= xff
}

/// Reads normalized series row by row (shorter series padded with nulls).
pub(crate) fn rows(series: &[TimeSeries]) -> Vec<Vec<Option<f64>>> {
    let cols: Vec<std::borrow::Cow<'_, [Option<f64>]>> =
        series.iter().map(TimeSeries::values_cow).collect();
    let n = cols.iter().map(|c| c.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| cols.iter().map(|c| c.get(i).copied().flatten()).collect())
        .collect()
}

/// The common aggregations computed column by column, without building rows: the same
/// additions in the same order (series order within a timestamp) as the row-wise definition,
/// so results are identical. `None` for functions that need whole rows (median, stddev, ...).
fn aggregate_columns(list: &[TimeSeries], func: &str, xff: f64) -> Option<Vec<Option<f64>>> {
    #[derive(Clone, Copy)]
    enum F {
        Sum,
        Avg,
        Min,
        Max,
        Count,
        Last,
    }
    let f = match func {
        "sum" | "total" => F::Sum,
        "average" | "avg" => F::Avg,
        "min" => F::Min,
        "max" => F::Max,
        "count" => F::Count,
        "last" | "current" => F::Last,
        _ => return None,
    };
    let cols: Vec<std::borrow::Cow<'_, [Option<f64>]>> =
        list.iter().map(TimeSeries::values_cow).collect();
    let n = cols.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut acc = vec![0.0f64; n];
    let mut count = vec![0u32; n];
    for col in &cols {
        for (i, v) in col.iter().enumerate() {
            let Some(x) = *v else { continue };
            let a = &mut acc[i];
            *a = match (f, count[i]) {
                (F::Sum | F::Avg, _) => *a + x,
                (_, 0) => x,
                (F::Min, _) => a.min(x),
                (F::Max, _) => a.max(x),
                (F::Last, _) => x,
                (F::Count, _) => 0.0,
            };
            count[i] += 1;
        }
    }
    let total = list.len() as f64;
    Some(
        (0..n)
            .map(|i| {
                let c = count[i];
                if c == 0 || f64::from(c) / total < xff {
                    return None;
                }
                Some(match f {
                    F::Avg => acc[i] / f64::from(c),
                    F::Count => f64::from(c),
                    _ => acc[i],
                })
            })
            .collect(),
    )
}

/// graphite's `aggregate(seriesList, func, xFilesFactor)`.
pub(crate) fn aggregate(
    mut list: Vec<TimeSeries>,
    func: &str,
    xff: Option<f64>,
    a: &Args,
) -> Result<Vec<TimeSeries>> {
    let raw = func;
    let func = func.strip_suffix("Series").unwrap_or(func);
    let f =
        agg_func(func).ok_or_else(|| a.err(format!("unsupported aggregation function: {raw}")))?;
    let Some((start, _end, step)) = normalize(&mut list) else {
        return Ok(Vec::new());
    };
    let xff = xff.unwrap_or(0.0);
    let name = format!("{func}Series({})", format_path_expressions(&list));
    let values: Vec<Option<f64>> = match aggregate_columns(&list, func, xff) {
        Some(v) => v,
        None => rows(&list)
            .iter()
            .map(|r| if xff_ok(r, xff) { f(r) } else { None })
            .collect(),
    };
    let mut tags = list[0].tags.clone();
    for s in &list[1..] {
        tags.retain(|k, v| s.tags.get(k) == Some(v));
    }
    tags.entry("name".into()).or_insert_with(|| name.clone());
    tags.insert("aggregatedBy".into(), func.to_owned());
    let mut out = TimeSeries::new(name, start, step, values);
    out.tags = tags;
    out.x_files_factor = xff;
    Ok(vec![out])
}

/// `sumSeries(*seriesLists)` and friends: the function name gives the aggregation.
pub(crate) fn series_agg(a: &Args, func: &str) -> Result<Value> {
    let list = a.series_rest(0)?;
    Ok(Value::Series(aggregate(list, func, None, a)?))
}

pub(crate) fn aggregate_fn(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let func = a.str(1, "func")?;
    let xff = a.opt_num(2, "xFilesFactor")?;
    Ok(Value::Series(aggregate(list, &func, xff, a)?))
}

pub(crate) fn count_series(a: &Args) -> Result<Value> {
    let mut list = a.series_rest(0)?;
    if list.is_empty() {
        // graphite: constantLine(0) named countSeries()
        let mut s = TimeSeries::new(
            "countSeries()",
            a.ctx.from,
            ((a.ctx.until - a.ctx.from) / 2).max(1),
            vec![Some(0.0); 3],
        );
        s.path_expression = "countSeries()".into();
        return Ok(Value::Series(vec![s]));
    }
    let Some((start, _, step)) = normalize(&mut list) else {
        return Ok(Value::Series(vec![]));
    };
    let name = format!("countSeries({})", format_path_expressions(&list));
    let n = list.len() as f64;
    let values = rows(&list).iter().map(|_| Some(n)).collect();
    Ok(Value::Series(vec![TimeSeries::new(
        name, start, step, values,
    )]))
}

pub(crate) fn percentile_of_series(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    let n = a.num(1, "n")?;
    let interpolate = a.opt_bool(2, "interpolate")?.unwrap_or(false);
    if n <= 0.0 {
        return Err(a.err("the requested percent is required to be greater than 0"));
    }
    let Some((start, _, step)) = normalize(&mut list) else {
        return Ok(Value::Series(vec![]));
    };
    let name = format!(
        "percentileOfSeries({},{})",
        list[0].path_expression,
        py_g(n)
    );
    // graphite-web 1.1.8's `_getPercentile`: the nearest rank rounded up (a fractional rank
    // takes the next value), or interpolated.
    let values = rows(&list)
        .iter()
        .map(|r| super::calc::percentile(r, n, interpolate))
        .collect();
    Ok(Value::Series(vec![TimeSeries::new(
        name, start, step, values,
    )]))
}

/// `divideSeriesLists(dividendSeriesList, divisorSeriesList)`: the i-th series of one by the
/// i-th of the other.
pub(crate) fn divide_series_lists(a: &Args) -> Result<Value> {
    let dividends = a.series(0, "dividendSeriesList")?;
    let divisors = a.series(1, "divisorSeriesList")?;
    if dividends.len() != divisors.len() {
        return Err(
            a.err("dividendSeriesList and divisorSeriesList argument must have equal length")
        );
    }
    let mut out = Vec::new();
    for (x, y) in dividends.into_iter().zip(divisors) {
        let name = format!("divideSeries({},{})", x.name, y.name);
        let mut both = vec![x, y];
        let Some((start, _, step)) = normalize(&mut both) else {
            continue;
        };
        let values = rows(&both).iter().map(|r| safe_div(r[0], r[1])).collect();
        out.push(TimeSeries::new(name, start, step, values));
    }
    Ok(Value::Series(out))
}

pub(crate) fn divide_series(a: &Args) -> Result<Value> {
    let dividends = a.series(0, "dividendSeriesList")?;
    let divisors = a.series(1, "divisorSeries")?;
    if divisors.is_empty() {
        return Ok(Value::Series(
            dividends
                .into_iter()
                .map(|s| {
                    let name = format!("divideSeries({},MISSING)", s.name);
                    let mut d = s.derive(name.clone(), vec![None; s.len()]);
                    d.path_expression = name;
                    d
                })
                .collect(),
        ));
    }
    if divisors.len() > 1 {
        return Err(a.err(format!(
            "second argument must reference exactly 1 series (got {})",
            divisors.len()
        )));
    }
    let divisor = &divisors[0];
    let mut out = Vec::new();
    for dividend in dividends {
        let name = format!("divideSeries({},{})", dividend.name, divisor.name);
        let mut both = vec![dividend, divisor.clone()];
        let Some((start, _, step)) = normalize(&mut both) else {
            continue;
        };
        let values = rows(&both).iter().map(|r| safe_div(r[0], r[1])).collect();
        out.push(TimeSeries::new(name, start, step, values));
    }
    Ok(Value::Series(out))
}

fn safe_div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b != 0.0).then(|| a / b)
}

fn percent(v: Option<f64>, total: Option<f64>) -> Option<f64> {
    safe_div(v, total).map(|x| x * 100.0)
}

pub(crate) fn as_percent(a: &Args) -> Result<Value> {
    let mut list = a.series(0, "seriesList")?;
    if list.is_empty() {
        return Ok(Value::Series(vec![]));
    }
    let total = a.value(1, "total")?;
    let nodes = a.values_from(2)?;
    if !nodes.is_empty() {
        return as_percent_by_nodes(a, list, total, &nodes);
    }
    normalize(&mut list);
    match total {
        None | Some(Value::None) => {
            let totals: Vec<Option<f64>> = rows(&list)
                .iter()
                .map(|r| agg_func("sum").and_then(|f| f(r)))
                .collect();
            let text = format!("sumSeries({})", format_path_expressions(&list));
            Ok(Value::Series(
                list.iter().map(|s| percent_of(s, &totals, &text)).collect(),
            ))
        }
        Some(Value::Number(t, int)) => {
            let text = py_number(t, int);
            let totals = vec![Some(t); list[0].values().len()];
            Ok(Value::Series(
                list.iter().map(|s| percent_of(s, &totals, &text)).collect(),
            ))
        }
        Some(Value::Series(mut totals)) => {
            if totals.len() == 1 {
                let mut all: Vec<TimeSeries> = list.clone();
                all.push(totals[0].clone());
                normalize(&mut all);
                let total = all.pop().unwrap_or_else(|| totals[0].clone());
                let tv = total.values();
                return Ok(Value::Series(
                    all.iter()
                        .map(|s| percent_of(s, &tv, &total.name))
                        .collect(),
                ));
            }
            if totals.len() != list.len() {
                return Err(a.err("second argument must be missing, a single digit, reference exactly 1 series or reference the same number of series as the first argument"));
            }
            list.sort_by(|x, y| x.name.cmp(&y.name));
            totals.sort_by(|x, y| x.name.cmp(&y.name));
            let mut out = Vec::new();
            for (s1, s2) in list.into_iter().zip(totals) {
                let name = format!("asPercent({},{})", s1.name, s2.name);
                let mut both = vec![s1, s2];
                let Some((start, _, step)) = normalize(&mut both) else {
                    continue;
                };
                let values = rows(&both).iter().map(|r| percent(r[0], r[1])).collect();
                out.push(TimeSeries::new(name, start, step, values));
            }
            Ok(Value::Series(out))
        }
        Some(other) => Err(a.err(format!(
            "total must be a number or a series list, got {other:?}"
        ))),
    }
}

fn percent_of(s: &TimeSeries, totals: &[Option<f64>], total_text: &str) -> TimeSeries {
    let vals = s.values();
    let n = vals.len().max(totals.len());
    let values = (0..n)
        .map(|i| {
            percent(
                vals.get(i).copied().flatten(),
                totals.get(i).copied().flatten(),
            )
        })
        .collect();
    let mut out = TimeSeries::new(
        format!("asPercent({},{})", s.name, total_text),
        s.start,
        s.step,
        values,
    );
    out.end = s.end;
    out
}

fn group_by_key(
    list: Vec<TimeSeries>,
    key: impl Fn(&TimeSeries) -> String,
) -> (Vec<String>, BTreeMap<String, Vec<TimeSeries>>) {
    let mut keys = Vec::new();
    let mut groups: BTreeMap<String, Vec<TimeSeries>> = BTreeMap::new();
    for s in list {
        let k = key(&s);
        if !groups.contains_key(&k) {
            keys.push(k.clone());
        }
        groups.entry(k).or_default().push(s);
    }
    (keys, groups)
}

fn sum_group(group: &mut [TimeSeries]) -> Option<TimeSeries> {
    if group.len() == 1 {
        return Some(group[0].clone());
    }
    let name = format!("sumSeries({})", format_path_expressions(group));
    let (start, _, step) = normalize(group)?;
    let values = rows(group)
        .iter()
        .map(|r| agg_func("sum").and_then(|f| f(r)))
        .collect();
    Some(TimeSeries::new(name, start, step, values))
}

fn as_percent_by_nodes(
    a: &Args,
    list: Vec<TimeSeries>,
    total: Option<Value>,
    nodes: &[Value],
) -> Result<Value> {
    let (mut keys, mut meta) = group_by_key(list, |s| agg_key(s, nodes));
    let mut totals: BTreeMap<String, TimeSeries> = BTreeMap::new();
    match total {
        None | Some(Value::None) => {
            for k in &keys {
                if let Some(t) = meta.get_mut(k).and_then(|g| sum_group(g)) {
                    totals.insert(k.clone(), t);
                }
            }
        }
        Some(Value::Series(t)) => {
            let (tkeys, mut tgroups) = group_by_key(t, |s| agg_key(s, nodes));
            for k in tkeys {
                if !keys.contains(&k) {
                    keys.push(k.clone());
                }
                if let Some(t) = tgroups.get_mut(&k).and_then(|g| sum_group(g)) {
                    totals.insert(k, t);
                }
            }
        }
        Some(_) => return Err(a.err("total must be None or a seriesList")),
    }
    let mut out = Vec::new();
    for k in keys {
        match (meta.remove(&k), totals.get(&k)) {
            (None, Some(t)) => {
                let name = format!("asPercent(MISSING,{})", t.name);
                out.push(TimeSeries::new(
                    name,
                    t.start,
                    t.step,
                    vec![None; t.values().len()],
                ));
            }
            (Some(group), t) => {
                for s1 in group {
                    match t {
                        None => {
                            let name = format!("asPercent({},MISSING)", s1.name);
                            out.push(TimeSeries::new(
                                name,
                                s1.start,
                                s1.step,
                                vec![None; s1.values().len()],
                            ));
                        }
                        Some(t) => {
                            let name = format!("asPercent({},{})", s1.name, t.name);
                            let mut both = vec![s1, t.clone()];
                            let Some((start, _, step)) = normalize(&mut both) else {
                                continue;
                            };
                            let values = rows(&both).iter().map(|r| percent(r[0], r[1])).collect();
                            out.push(TimeSeries::new(name, start, step, values));
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }
    Ok(Value::Series(out))
}

pub(crate) fn group(a: &Args) -> Result<Value> {
    Ok(Value::Series(a.series_rest(0)?))
}

/// groupByNode(seriesList, nodeNum, callback) and groupByNodes(seriesList, callback, *nodes).
pub(crate) fn group_by_nodes(a: &Args, single: bool) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let (callback, nodes) = if single {
        let node = a
            .value(1, "nodeNum")?
            .ok_or_else(|| a.err("missing argument \"nodeNum\""))?;
        (
            a.opt_str(2, "callback")?
                .unwrap_or_else(|| "average".into()),
            vec![node],
        )
    } else {
        (a.str(1, "callback")?, a.values_from(2)?)
    };
    let (keys, groups) = group_by_key(list, |s| agg_key(s, &nodes));
    apply_callback(a, keys, groups, &callback)
}

fn apply_callback(
    a: &Args,
    keys: Vec<String>,
    mut groups: BTreeMap<String, Vec<TimeSeries>>,
    callback: &str,
) -> Result<Value> {
    let mut out = Vec::new();
    for k in keys {
        let Some(g) = groups.remove(&k) else { continue };
        let mut r = aggregate(g, callback, None, a)?;
        if let Some(mut s) = r.pop() {
            s.name = k;
            out.push(s);
        }
    }
    Ok(Value::Series(out))
}

/// groupByTags(seriesList, callback, *tags): key is `name;tag1=v1;...` of the named tags.
pub(crate) fn group_by_tags(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let callback = a.str(1, "callback")?;
    let tags: Vec<String> = a
        .values_from(2)?
        .into_iter()
        .filter_map(|v| match v {
            Value::Str(s) => Some(s),
            _ => None,
        })
        .collect();
    if tags.is_empty() {
        return Err(a.err("at least one tag name is required"));
    }
    // The metric name of the result: the series' own when grouping by name or when they all
    // share one, else the callback's name (graphite-web's rule).
    let names: std::collections::BTreeSet<&str> = list
        .iter()
        .map(|s| s.tags.get("name").map_or("", String::as_str))
        .collect();
    let common = if names.len() == 1 {
        names.iter().next().map(|n| n.to_string())
    } else {
        None
    };
    let by_name = tags.iter().any(|t| t == "name");
    // graphite-web: `name;` then the sorted `tag=value` strings of the other tags.
    let key = |s: &TimeSeries| {
        let head = if by_name {
            s.tags.get("name").cloned().unwrap_or_default()
        } else {
            common.clone().unwrap_or_else(|| callback.clone())
        };
        let mut parts: Vec<String> = tags
            .iter()
            .filter(|t| *t != "name")
            .map(|t| format!("{t}={}", s.tags.get(t).map_or("", String::as_str)))
            .collect();
        parts.sort();
        std::iter::once(head)
            .chain(parts)
            .collect::<Vec<_>>()
            .join(";")
    };
    let (keys, groups) = group_by_key(list, key);
    let mut out = Vec::new();
    for k in keys {
        let Some(g) = groups.get(&k).cloned() else {
            continue;
        };
        if let Some(mut s) = aggregate(g, &callback, None, a)?.pop() {
            s.tags = crate::series::tags_of(&k);
            s.path_expression = k.clone();
            s.name = k;
            out.push(s);
        }
    }
    Ok(Value::Series(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn columns_equal_rows(cols in proptest::collection::vec(proptest::collection::vec(proptest::option::of(-1e6f64..1e6), 0..12), 1..6), xff in 0.0f64..1.0) {
            let list: Vec<TimeSeries> = cols.into_iter().enumerate().map(|(i, v)| TimeSeries::new(format!("s{i}"), 0, 10, v)).collect();
            for func in ["sum", "average", "min", "max", "count", "last"] {
                let f = agg_func(func).expect("known");
                let by_rows: Vec<Option<f64>> = rows(&list).iter().map(|r| if xff_ok(r, xff) { f(r) } else { None }).collect();
                let by_cols = aggregate_columns(&list, func, xff).expect("fast path");
                let bits = |v: &[Option<f64>]| v.iter().map(|x| x.map(f64::to_bits)).collect::<Vec<_>>();
                prop_assert_eq!(bits(&by_cols), bits(&by_rows), "{}", func);
            }
        }
    }
}
