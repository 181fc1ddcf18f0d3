//! graphite-web 1.1.8's other "Combine" functions: the pairwise `*SeriesLists`, the
//! `*WithWildcards` family, applyByNode, mapSeries and reduceSeries, weightedAverage.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::{evaluate, Value};
use crate::graphite::expr::{parse, Call, Expr};
use crate::series::{normalize, TimeSeries};

use super::agg::{aggregate, rows};
use super::names::agg_key;

/// `aggregateSeriesLists(first, second, func, xFilesFactor)` and the fixed-function variants
/// (`sumSeriesLists`, `diffSeriesLists`, `multiplySeriesLists`): the i-th series of one list
/// with the i-th of the other.
pub(crate) fn aggregate_series_lists(a: &Args, fixed: Option<&str>) -> Result<Value> {
    let first = a.series(0, "seriesListFirstPos")?;
    let second = a.series(1, "seriesListSecondPos")?;
    let (func, xff) = match fixed {
        Some(f) => (f.to_owned(), None),
        None => (a.str(2, "func")?, a.opt_num(3, "xFilesFactor")?),
    };
    if first.len() != second.len() {
        return Err(
            a.err("seriesListFirstPos and seriesListSecondPos argument must have equal length")
        );
    }
    let mut out = Vec::new();
    for (x, y) in first.into_iter().zip(second) {
        a.ctx.check_time()?;
        let name_x = x.name.clone();
        let name_y = y.name.clone();
        let Some(mut r) = aggregate(vec![x, y], &func, xff, a)?.pop() else {
            continue;
        };
        let head = r
            .name
            .find("Series(")
            .map_or("", |i| &r.name[..i])
            .to_owned();
        r.name = format!("{head}Series({name_x},{name_y})");
        out.push(r);
    }
    Ok(Value::Series(out))
}

/// `aggregateWithWildcards(seriesList, func, *positions)` and `sumSeriesWithWildcards` & co.:
/// series grouped by their name without the given nodes, each group aggregated.
pub(crate) fn aggregate_with_wildcards(a: &Args, fixed: Option<&str>) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let (func, from) = match fixed {
        Some(f) => (f.to_owned(), 1),
        None => (a.str(1, "func")?, 2),
    };
    let positions: Vec<i64> = a
        .values_from(from)?
        .into_iter()
        .filter_map(|v| match v {
            Value::Number(n, _) if n.fract() == 0.0 => Some(n as i64),
            _ => None,
        })
        .collect();
    let mut keys: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<TimeSeries>> = HashMap::new();
    for s in list {
        let key = s
            .name
            .split('.')
            .enumerate()
            .filter(|(i, _)| !positions.contains(&(*i as i64)))
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
            .join(".");
        if !groups.contains_key(&key) {
            keys.push(key.clone());
        }
        groups.entry(key).or_default().push(s);
    }
    let mut out = Vec::new();
    for k in keys {
        a.ctx.check_time()?;
        let Some(g) = groups.remove(&k) else { continue };
        if let Some(mut s) = aggregate(g, &func, None, a)?.pop() {
            s.name = k;
            out.push(s);
        }
    }
    Ok(Value::Series(out))
}

/// Python's `'.'.join(name.split('.')[:n])`.
fn prefix(name: &str, n: i64) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let (i, j) = super::math::py_slice(parts.len(), None, Some(n));
    parts[i..j].join(".")
}

/// How deep targets written by functions may nest (an aliasQuery whose query is an aliasQuery
/// ...): each level is a parse and an evaluation on the stack.
pub(crate) const MAX_WRITTEN_DEPTH: usize = 8;

thread_local! {
    static WRITTEN_DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
pub(crate) fn set_written_depth(d: usize) {
    WRITTEN_DEPTH.with(|c| c.set(d));
}

/// Evaluates a target written by a function (applyByNode's template, aliasQuery's query,
/// useSeriesAbove's group), at most `MAX_WRITTEN_DEPTH` deep: a name that rewrites itself into
/// the same call again is refused, not followed until the stack runs out.
pub(crate) fn evaluate_text(a: &Args, target: &str) -> Result<Vec<TimeSeries>> {
    a.ctx.check_time()?;
    let depth = WRITTEN_DEPTH.with(|d| d.get());
    if depth >= MAX_WRITTEN_DEPTH {
        return Err(a.err(format!(
            "targets written by functions nest more than {MAX_WRITTEN_DEPTH} deep"
        )));
    }
    let expr = parse(target).map_err(|e| a.err(format!("the target it made is bad: {e}")))?;
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            WRITTEN_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
    WRITTEN_DEPTH.with(|d| d.set(depth + 1));
    let _leave = Leave;
    evaluate(a.ctx, &expr)
}

pub(crate) fn apply_by_node(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let node = a.int(1, "nodeNum")?;
    let template = a.str(2, "templateFunction")?;
    let new_name = a.opt_str(3, "newName")?;
    let mut prefixes: Vec<String> = list
        .iter()
        .map(|s| prefix(&s.name, node.saturating_add(1)))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    let Some(last) = list.last() else {
        return Ok(Value::Series(vec![]));
    };
    let mut out = Vec::new();
    for p in prefixes {
        for mut s in evaluate_text(a, &template.replace('%', &p))? {
            if let Some(n) = new_name.as_deref().filter(|n| !n.is_empty()) {
                s.name = n.replace('%', &p);
            }
            s.path_expression = p.clone();
            s.start = last.start;
            s.end = last.end;
            out.push(s);
        }
    }
    Ok(Value::Series(out))
}

/// `mapSeries(seriesList, *mapNodes)`: a list of series lists, one per key, for reduceSeries.
pub(crate) fn map_series(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let nodes = a.values_from(1)?;
    if nodes.is_empty() {
        return Err(a.err("at least one node is required"));
    }
    let mut keys: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<TimeSeries>> = HashMap::new();
    for s in list {
        let k = agg_key(&s, &nodes);
        if !groups.contains_key(&k) {
            keys.push(k.clone());
        }
        groups.entry(k).or_default().push(s);
    }
    Ok(Value::SeriesLists(
        keys.iter().filter_map(|k| groups.remove(k)).collect(),
    ))
}

/// `reduceSeries(seriesLists, reduceFunction, reduceNode, *reduceMatchers)`: in each list, the
/// series whose node `reduceNode` is each matcher, passed in matcher order to the function.
pub(crate) fn reduce_series(a: &Args) -> Result<Value> {
    let lists = match a.value(0, "seriesLists")? {
        Some(Value::SeriesLists(l)) => l,
        Some(Value::Series(s)) => vec![s],
        other => {
            return Err(a.err(format!(
                "argument \"seriesLists\" must be a list of series lists (mapSeries), got {other:?}"
            )))
        }
    };
    let func = a.str(1, "reduceFunction")?;
    let node = a.int(2, "reduceNode")?;
    let matchers: Vec<String> = a
        .values_from(3)?
        .into_iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s),
            other => Err(a.err(format!("reduceMatchers must be strings, got {other:?}"))),
        })
        .collect::<Result<_>>()?;
    let mut keys: Vec<String> = Vec::new();
    let mut slots: HashMap<String, Vec<Option<TimeSeries>>> = HashMap::new();
    for s in lists.into_iter().flatten() {
        let nodes: Vec<&str> = s.name.split('.').collect();
        let idx = if node < 0 {
            nodes.len() as i64 + node
        } else {
            node
        };
        let Some(n) = usize::try_from(idx).ok().and_then(|i| nodes.get(i)) else {
            return Err(a.err(format!("{} has no node {node}", s.name)));
        };
        let (i, j) = super::math::py_slice(nodes.len(), None, Some(node));
        let key = format!("{}.reduce.{func}", nodes[i..j].join("."));
        if let Some(m) = matchers.iter().position(|m| m == n) {
            if !slots.contains_key(&key) {
                keys.push(key.clone());
            }
            slots
                .entry(key)
                .or_insert_with(|| vec![None; matchers.len()])[m] = Some(s);
        }
    }
    let mut out = Vec::new();
    for k in keys {
        a.ctx.check_time()?;
        let Some(group) = slots.remove(&k) else {
            continue;
        };
        let mut args = Vec::with_capacity(group.len());
        for (m, s) in matchers.iter().zip(group) {
            let s = s.ok_or_else(|| a.err(format!("{k}: no series matches \"{m}\"")))?;
            args.push(Expr::Series(Arc::new(vec![s])));
        }
        let call = Call {
            name: func.clone(),
            args,
            kwargs: vec![],
            raw: String::new(),
        };
        let Value::Series(mut r) = super::call(a.ctx, &call)? else {
            return Err(a.err(format!("{func} did not return series")));
        };
        if r.is_empty() {
            return Err(a.err(format!("{func} returned no series for {k}")));
        }
        let mut s = r.swap_remove(0);
        s.name = k;
        out.push(s);
    }
    Ok(Value::Series(out))
}

fn safe_mul(x: Option<f64>, y: Option<f64>) -> Option<f64> {
    Some(x? * y?)
}

fn safe_div(x: Option<f64>, y: Option<f64>) -> Option<f64> {
    let (x, y) = (x?, y?);
    (y != 0.0).then(|| x / y)
}

fn sum_series(mut list: Vec<TimeSeries>) -> Option<TimeSeries> {
    let (start, _, step) = normalize(&mut list)?;
    let values = rows(&list)
        .iter()
        .map(|r| {
            let v: Vec<f64> = r.iter().flatten().copied().collect();
            (!v.is_empty()).then(|| v.iter().sum())
        })
        .collect();
    let end = list.iter().map(|s| s.end).max()?;
    let mut s = TimeSeries::new(String::new(), start, step, values);
    s.end = end - (end - start) % step;
    Some(s)
}

pub(crate) fn weighted_average(a: &Args) -> Result<Value> {
    let avgs = a.series(0, "seriesListAvg")?;
    let weights = a.series(1, "seriesListWeight")?;
    let nodes = a.values_from(2)?;
    if avgs.len() != weights.len() {
        return Err(a.err(format!("weightedAverage must receive the same number of series for seriesListAvg and seriesListWeight but received respectively {} and {}", avgs.len(), weights.len())));
    }
    let mut keys: Vec<String> = Vec::new();
    let mut by_key: HashMap<String, (Option<usize>, Option<usize>)> = HashMap::new();
    for (i, (s, w)) in avgs.iter().zip(&weights).enumerate() {
        for (k, is_avg) in [(agg_key(s, &nodes), true), (agg_key(w, &nodes), false)] {
            if !by_key.contains_key(&k) {
                keys.push(k.clone());
            }
            let e = by_key.entry(k).or_insert((None, None));
            if is_avg {
                e.0 = Some(i);
            } else {
                e.1 = Some(i);
            }
        }
    }
    let mut products = Vec::new();
    for k in &keys {
        let Some((Some(ai), Some(wi))) = by_key.get(k).copied() else {
            continue;
        };
        let (s, w) = (&avgs[ai], &weights[wi]);
        let (sv, wv) = (s.values_cow(), w.values_cow());
        let values = (0..sv.len().max(wv.len()))
            .map(|i| safe_mul(sv.get(i).copied().flatten(), wv.get(i).copied().flatten()))
            .collect();
        let mut p = TimeSeries::new(
            format!("product({},{})", w.name, s.name),
            s.start,
            s.step,
            values,
        );
        p.end = s.end;
        products.push(p);
    }
    if products.is_empty() {
        return Ok(Value::Series(vec![]));
    }
    let (Some(sp), Some(sw)) = (sum_series(products), sum_series(weights.clone())) else {
        return Ok(Value::Series(vec![]));
    };
    let (pv, wv) = (sp.raw(), sw.raw());
    let values = (0..pv.len().max(wv.len()))
        .map(|i| safe_div(pv.get(i).copied().flatten(), wv.get(i).copied().flatten()))
        .collect();
    let paths = |l: &[TimeSeries]| {
        let mut p: Vec<&str> = l.iter().map(|s| s.path_expression.as_str()).collect();
        p.sort();
        p.dedup();
        p.join(",")
    };
    let node_text = nodes
        .iter()
        .map(|n| match n {
            Value::Number(v, int) => crate::graphite::py_number::py_number(*v, *int),
            Value::Str(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join(",");
    let name = format!(
        "weightedAverage({}, {}, {node_text})",
        paths(&avgs),
        paths(&weights)
    );
    let mut out = TimeSeries::new(name, sp.start, sp.step, values);
    out.end = sp.end;
    Ok(Value::Series(vec![out]))
}
