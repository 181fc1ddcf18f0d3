//! `/render` output: `maxDataPoints` consolidation and the json, csv and raw formats, as
//! graphite-web 1.1.8 writes them (render/views.py).

use std::fmt::Write;

use crate::graphite::py_number::{py_float, py_optional};
use crate::series::{Consolidation, TimeSeries};
use crate::time::civil_from_days;

/// graphite-web's `maxDataPoints` consolidation: with `n = (end - start) / step` over the widest
/// series, when `n > max`, `vpp = ceil(n / max)` values go into each point and the start is
/// nudged so points align to multiples of `vpp * step`.
///
/// graphite-web then drops `vpp - 1` leading values, which shifts every point by one step and,
/// under `consolidateBy(sum)`, loses counts: the contract lists that as a bug not to copy. We keep
/// graphite's alignment and timestamps for every function, and for `sum` we keep every value:
/// the buckets are aligned to multiples of `vpp * step` and the first may be partial.
pub(crate) fn consolidate_for_display(series: &mut [TimeSeries], max_points: usize) {
    if series.is_empty() || max_points == 0 {
        return;
    }
    if max_points == 1 {
        for s in series.iter_mut() {
            let len = s.len().max(1);
            s.values_per_point = len;
        }
        return;
    }
    let start = series.iter().map(|s| s.start).min().unwrap_or(0);
    let end = series.iter().map(|s| s.end).max().unwrap_or(0);
    let range = end - start;
    for s in series.iter_mut() {
        let n = range as f64 / s.step as f64;
        if (max_points as f64) >= n {
            continue;
        }
        let vpp = (n / max_points as f64).ceil() as i64;
        let spp = vpp * s.step;
        if s.consolidation == Consolidation::Sum {
            let aligned = s.start - s.start.rem_euclid(spp);
            let lead = ((s.start - aligned) / s.step) as usize;
            let mut values = vec![None; lead];
            values.extend_from_slice(s.raw());
            s.set_values(values);
            s.start = aligned;
        } else {
            let nudge = spp + s.start.rem_euclid(s.step) - s.start.rem_euclid(spp);
            s.start += nudge;
            let lose = (nudge / s.step) as usize;
            let drop = lose.saturating_sub(1).min(s.len());
            s.raw_mut().drain(..drop);
        }
        s.values_per_point = vpp as usize;
    }
}

/// Timestamps a reader sees: `range(start, end + 1, step * vpp)`, zipped with the values.
pub(crate) fn datapoints(s: &TimeSeries) -> Vec<(Option<f64>, i64)> {
    let step = s.effective_step().max(1);
    let values = s.values_cow();
    let mut out = Vec::with_capacity(values.len());
    let mut t = s.start;
    for &v in values.iter() {
        if t > s.end {
            break;
        }
        out.push((v, t));
        t += step;
    }
    out
}

fn json_number(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("null");
    } else if v.is_infinite() {
        // graphite-web writes infinities as 1e9999 (valid JSON that parses to infinity).
        out.push_str(if v > 0.0 { "1e9999" } else { "-1e9999" });
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// `format=json`: `[{"target", "tags", "datapoints": [[v, ts], ...]}]`.
pub(crate) fn json(series: &[TimeSeries], no_null_points: bool) -> String {
    // graphite-web answers `[]` when no series has a value (its `if any(data)`): `delay(x, 0)`.
    if series.iter().all(TimeSeries::is_empty) {
        return "[]".into();
    }
    let mut out = String::from("[");
    let mut first = true;
    for s in series {
        let mut points = datapoints(s);
        if no_null_points {
            points.retain(|(v, _)| v.is_some_and(|x| !x.is_nan()));
            if points.is_empty() {
                continue;
            }
        }
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str("{\"target\": ");
        json_string(&mut out, &s.name);
        out.push_str(", \"tags\": {");
        for (i, (k, v)) in s.tags.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            json_string(&mut out, k);
            out.push_str(": ");
            // Tag values are always strings: Grafana's backend rejects numbers.
            json_string(&mut out, v);
        }
        out.push_str("}, \"datapoints\": [");
        for (i, (v, t)) in points.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('[');
            match v {
                Some(x) => json_number(&mut out, *x),
                None => out.push_str("null"),
            }
            let _ = write!(out, ", {t}]");
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

/// `format=raw`: `name,start,end,step|v1,v2,...`, one line per series.
pub(crate) fn raw(series: &[TimeSeries]) -> String {
    let mut out = String::new();
    for s in series {
        let _ = write!(
            out,
            "{},{},{},{}|",
            s.name,
            s.start,
            s.end,
            s.effective_step()
        );
        let vals: Vec<String> = s.values().into_iter().map(py_optional).collect();
        out.push_str(&vals.join(","));
        out.push('\n');
    }
    out
}

/// A value as graphite's dygraph and rickshaw writers print it: Python's repr, `null` for a gap
/// or NaN, and JSON-readable infinities.
fn plain_value(v: Option<f64>, infinity: (&str, &str)) -> String {
    match v {
        None => "null".into(),
        Some(x) if x.is_nan() => "null".into(),
        Some(x) if x.is_infinite() => if x > 0.0 { infinity.0 } else { infinity.1 }.into(),
        Some(x) => py_float(x),
    }
}

/// `format=dygraph`: `{"labels" : ["Time", names...], "data" : [[ts000, v...], ...]}`, rows on
/// the first series' timestamps (graphite writes `Infinity` there, as dygraph reads it).
pub(crate) fn dygraph(series: &[TimeSeries]) -> String {
    let Some(first) = series.first() else {
        return "{}".into();
    };
    let step = first.step.max(1);
    let rows = usize::try_from((first.end - first.start + step - 1) / step).unwrap_or(0);
    let mut data: Vec<String> = (0..rows)
        .map(|i| format!("[{}000", first.start + i as i64 * step))
        .collect();
    let mut labels = vec!["Time".to_owned()];
    for s in series {
        labels.push(s.name.clone());
        for (row, v) in data.iter_mut().zip(s.values()) {
            row.push_str(", ");
            row.push_str(&plain_value(v, ("Infinity", "-Infinity")));
        }
    }
    let mut out = String::from("{\"labels\" : [");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_string(&mut out, l);
    }
    out.push_str("], \"data\" : [");
    for (i, row) in data.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(row);
        out.push(']');
    }
    out.push_str("]}");
    out
}

/// `format=rickshaw`: `[{"target": name, "datapoints": [{"x": ts, "y": v}, ...]}]`.
pub(crate) fn rickshaw(series: &[TimeSeries]) -> String {
    let mut out = String::from("[");
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"target\": ");
        json_string(&mut out, &s.name);
        out.push_str(", \"datapoints\": [");
        let step = s.step.max(1);
        let times = (s.start..s.end).step_by(usize::try_from(step).unwrap_or(1));
        for (j, (t, v)) in times.zip(s.values()).enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            let _ = write!(
                out,
                "{{\"x\": {t}, \"y\": {}}}",
                plain_value(v, ("1e9999", "-1e9999"))
            );
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

fn utc(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    let secs = ts.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `format=csv`: `name,YYYY-MM-DD HH:MM:SS,value` per point, an empty value for a gap (UTC).
pub(crate) fn csv(series: &[TimeSeries]) -> String {
    let mut out = String::new();
    for s in series {
        let step = s.effective_step();
        let name = if s.name.contains([',', '"', '\n']) {
            format!("\"{}\"", s.name.replace('"', "\"\""))
        } else {
            s.name.clone()
        };
        for (i, v) in s.values().into_iter().enumerate() {
            let value = v.map(py_float).unwrap_or_default();
            let _ = writeln!(out, "{name},{},{value}", utc(s.start + i as i64 * step));
        }
    }
    out.replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(start: i64, step: i64, n: usize) -> TimeSeries {
        TimeSeries::new("a.b", start, step, (0..n).map(|i| Some(i as f64)).collect())
    }

    #[test]
    fn max_data_points_like_graphite() {
        // The contract's example: 100 points from 1000 at step 10, maxDataPoints 30.
        let mut v = vec![series(1000, 10, 100)];
        consolidate_for_display(&mut v, 30);
        let dp = datapoints(&v[0]);
        assert_eq!(dp.len(), 25);
        assert_eq!(dp[0], (Some(4.5), 1040));
        // Under sum nothing is lost: every value is in some point.
        let mut v = vec![series(1000, 10, 100)];
        v[0].consolidation = Consolidation::Sum;
        consolidate_for_display(&mut v, 30);
        let dp = datapoints(&v[0]);
        let total: f64 = dp.iter().filter_map(|p| p.0).sum();
        assert_eq!(total, (0..100).sum::<i32>() as f64);
        assert!(dp.iter().all(|p| p.1 % 40 == 0));
        // Fewer points than asked: untouched.
        let mut v = vec![series(1000, 10, 10)];
        consolidate_for_display(&mut v, 30);
        assert_eq!(datapoints(&v[0]).len(), 10);
    }

    #[test]
    fn formats() {
        let mut s = TimeSeries::new("a.b", 60, 60, vec![Some(1.0), None, Some(f64::INFINITY)]);
        s.tags.insert("n".into(), "1".into());
        assert_eq!(
            json(&[s.clone()], false),
            r#"[{"target": "a.b", "tags": {"n": "1", "name": "a.b"}, "datapoints": [[1.0, 60], [null, 120], [1e9999, 180]]}]"#
        );
        assert_eq!(json(&[s.clone()], true).matches('[').count(), 4);
        assert_eq!(raw(&[s.clone()]), "a.b,60,240,60|1.0,None,inf\n");
        assert_eq!(csv(&[s.clone()]), "a.b,1970-01-01 00:01:00,1.0\r\na.b,1970-01-01 00:02:00,\r\na.b,1970-01-01 00:03:00,inf\r\n");
        assert_eq!(
            dygraph(&[s.clone()]),
            r#"{"labels" : ["Time", "a.b"], "data" : [[60000, 1.0], [120000, null], [180000, Infinity]]}"#
        );
        assert_eq!(dygraph(&[]), "{}");
        assert_eq!(
            rickshaw(&[s.clone()]),
            r#"[{"target": "a.b", "datapoints": [{"x": 60, "y": 1.0}, {"x": 120, "y": null}, {"x": 180, "y": 1e9999}]}]"#
        );
        let empty = TimeSeries::new("e", 0, 10, vec![None, None]);
        assert_eq!(json(&[empty], true), "[]");
    }
}
