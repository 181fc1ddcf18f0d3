//! graphite-web 1.1.8's "Calculate" functions and the percentile filters: the Holt-Winters
//! family (forecast, confidence bands and area, aberration), exponentialMovingAverage,
//! linearRegression, nPercentile, stdev, aggregateLine, identity, randomWalk, and
//! remove{Above,Below,Between}Percentile, averageOutsidePercentile, mostDeviant.
//!
//! Functions that look back (Holt-Winters, the moving average) read their series argument again
//! over the longer range, as graphite-web does; every point they make from nothing is counted
//! against the request's limit first.

use crate::error::Result;
use crate::graphite::args::Args;
use crate::graphite::eval::Value;
use crate::graphite::py_number::{py_float, py_g, py_number};
use crate::series::TimeSeries;

use super::agg::agg_func;
use super::math::{py_round, renamed};
use super::transform::parse_interval;

/// graphite's `_getPercentile` (1.1.8): the nearest rank, rounded up, unless interpolating.
/// Only the ranked values are put in place (a selection, not a sort).
pub(crate) fn percentile(points: &[Option<f64>], n: f64, interpolate: bool) -> Option<f64> {
    let mut v: Vec<f64> = points.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    let len = v.len();
    let frac = n / 100.0 * (len + 1) as f64;
    if !frac.is_finite() {
        // Python's int() refuses it.
        return None;
    }
    let mut rank = frac.trunc();
    let rank_fraction = frac - rank;
    if !interpolate {
        rank += rank_fraction.ceil();
    }
    // The index Python's `sortedPoints[...]` reads: rank 0 is the first, a rank past the end
    // the last, a negative rank counts from the end.
    let idx = if rank == 0.0 {
        0
    } else if rank < 0.0 {
        let back = (-(rank - 1.0)).min(len as f64) as usize;
        len - back
    } else if rank - 1.0 >= len as f64 {
        len - 1
    } else {
        rank as usize - 1
    };
    let (_, at, right) = v.select_nth_unstable_by(idx, f64::total_cmp);
    let mut p = *at;
    if interpolate && rank < len as f64 {
        // Python's `sortedPoints[rank]`: the same value when rank is 0, else the one after
        // `idx` (a negative rank counts from the end too), the least to its right.
        let next = if rank == 0.0 {
            p
        } else {
            right.iter().copied().min_by(f64::total_cmp).unwrap_or(p)
        };
        p += rank_fraction * (next - p);
    }
    Some(p)
}

/// The preview of a look-back function: argument 0 over a range starting `secs` earlier.
fn preview(a: &Args, secs: i64) -> Result<Vec<TimeSeries>> {
    let from = a
        .ctx
        .from
        .checked_sub(secs)
        .ok_or_else(|| a.err("the look-back moves the range out of bounds"))?;
    let ctx = a.ctx.with_range(from, a.ctx.until);
    a.series_in(&ctx, 0, "seriesList")
}

/// An interval parameter with a default, in seconds.
fn interval_arg(a: &Args, i: usize, name: &str, default: &str) -> Result<i64> {
    let text = a.opt_str(i, name)?.unwrap_or_else(|| default.to_owned());
    parse_interval(a, &text)
}

struct HoltWinters {
    predictions: Vec<Option<f64>>,
    deviations: Vec<Option<f64>>,
}

/// graphite's `holtWintersAnalysis`: alpha = gamma = 0.1, beta = 0.0035, one season of
/// `season` points.
fn holt_winters(a: &Args, values: &[Option<f64>], season: usize) -> Result<HoltWinters> {
    const ALPHA: f64 = 0.1;
    const GAMMA: f64 = 0.1;
    const BETA: f64 = 0.0035;
    let n = values.len();
    let mut intercepts: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut slopes: Vec<f64> = Vec::with_capacity(n);
    let mut seasonals: Vec<f64> = Vec::with_capacity(n);
    let mut predictions: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut deviations: Vec<Option<f64>> = Vec::with_capacity(n);
    let last = |v: &[f64], i: usize| if i >= season { v[i - season] } else { 0.0 };
    let mut next_pred: Option<f64> = None;
    for (i, actual) in values.iter().enumerate() {
        if i % 65_536 == 0 {
            a.ctx.check_time()?;
        }
        let Some(actual) = *actual else {
            intercepts.push(None);
            slopes.push(0.0);
            seasonals.push(0.0);
            predictions.push(next_pred);
            deviations.push(Some(0.0));
            next_pred = None;
            continue;
        };
        let (last_intercept, last_slope, prediction) = if i == 0 {
            (actual, 0.0, Some(actual))
        } else {
            (
                intercepts[i - 1].unwrap_or(actual),
                slopes[i - 1],
                next_pred,
            )
        };
        let last_seasonal = last(&seasonals, i);
        let next_last_seasonal = if i + 1 >= season {
            seasonals[i + 1 - season]
        } else {
            0.0
        };
        let last_seasonal_dev = if i >= season {
            deviations[i - season].unwrap_or(0.0)
        } else {
            0.0
        };
        let intercept =
            ALPHA * (actual - last_seasonal) + (1.0 - ALPHA) * (last_intercept + last_slope);
        let slope = BETA * (intercept - last_intercept) + (1.0 - BETA) * last_slope;
        let seasonal = GAMMA * (actual - intercept) + (1.0 - GAMMA) * last_seasonal;
        next_pred = Some(intercept + slope + next_last_seasonal);
        let deviation =
            GAMMA * (actual - prediction.unwrap_or(0.0)).abs() + (1.0 - GAMMA) * last_seasonal_dev;
        intercepts.push(Some(intercept));
        slopes.push(slope);
        seasonals.push(seasonal);
        predictions.push(prediction);
        deviations.push(Some(deviation));
    }
    Ok(HoltWinters {
        predictions,
        deviations,
    })
}

/// Each series of the preview with its Holt-Winters analysis, trimmed to the request's range:
/// (series, start, forecast, deviation).
type Analyzed = (TimeSeries, i64, Vec<Option<f64>>, Vec<Option<f64>>);

fn analyze(a: &Args, bootstrap_at: usize, season_at: usize) -> Result<Vec<Analyzed>> {
    let bootstrap = interval_arg(a, bootstrap_at, "bootstrapInterval", "7d")?;
    let seasonality = interval_arg(a, season_at, "seasonality", "1d")?;
    if bootstrap < 0 {
        return Err(a.err("bootstrapInterval must not be negative"));
    }
    let mut out = Vec::new();
    for s in preview(a, bootstrap)? {
        let s = s.consolidated();
        let season = seasonality / s.step;
        if season < 2 {
            return Err(a.err(format!(
                "seasonality must be at least two steps of the series ({} s), got {seasonality} s",
                s.step
            )));
        }
        let hw = holt_winters(a, s.raw(), season as usize)?;
        let skip = usize::try_from(bootstrap / s.step).unwrap_or(usize::MAX);
        let cut = |v: Vec<Option<f64>>| v.get(skip..).map(<[_]>::to_vec).unwrap_or_default();
        let start = s.start + bootstrap;
        out.push((s, start, cut(hw.predictions), cut(hw.deviations)));
    }
    Ok(out)
}

/// A result of the family: `name`, from `start` to the source's end, with graphite-web's tags
/// (the analysis leaves `holtWintersForecast` and `holtWintersDeviation` on the source's tags).
fn hw_series(
    s: &TimeSeries,
    name: String,
    start: i64,
    values: Vec<Option<f64>>,
    tags: &[&str],
) -> TimeSeries {
    let mut d = renamed(s, name, values);
    d.start = start;
    d.end = s.end;
    for t in ["holtWintersForecast", "holtWintersDeviation"]
        .iter()
        .chain(tags)
    {
        d.tags.insert((*t).to_owned(), "1".into());
    }
    d
}

pub(crate) fn holt_winters_forecast(a: &Args) -> Result<Value> {
    let mut out = Vec::new();
    for (s, start, forecast, _) in analyze(a, 1, 2)? {
        let name = format!("holtWintersForecast({})", s.name);
        out.push(hw_series(&s, name, start, forecast, &[]));
    }
    Ok(Value::Series(out))
}

/// (lower, upper) bands of each series of the preview.
fn bands(a: &Args) -> Result<Vec<(TimeSeries, TimeSeries)>> {
    let delta = a.opt_num(1, "delta")?.unwrap_or(3.0);
    let mut out = Vec::new();
    for (s, start, forecast, deviation) in analyze(a, 2, 3)? {
        let (mut upper, mut lower) = (Vec::new(), Vec::new());
        for (f, d) in forecast.iter().zip(&deviation) {
            match (f, d) {
                (Some(f), Some(d)) => {
                    upper.push(Some(f + delta * d));
                    lower.push(Some(f - delta * d));
                }
                _ => {
                    upper.push(None);
                    lower.push(None);
                }
            }
        }
        let both = ["holtWintersConfidenceUpper", "holtWintersConfidenceLower"];
        let mut lo = hw_series(
            &s,
            format!("holtWintersConfidenceLower({})", s.name),
            start,
            lower,
            &both,
        );
        let mut up = hw_series(
            &s,
            format!("holtWintersConfidenceUpper({})", s.name),
            start,
            upper,
            &both,
        );
        lo.path_expression = s.path_expression.clone();
        up.path_expression = s.path_expression.clone();
        out.push((lo, up));
    }
    Ok(out)
}

pub(crate) fn holt_winters_confidence_bands(a: &Args) -> Result<Value> {
    Ok(Value::Series(
        bands(a)?.into_iter().flat_map(|(l, u)| [l, u]).collect(),
    ))
}

/// The two bands named `holtWintersConfidenceArea(...)`, for a renderer to fill between; as in
/// graphite-web (whose `areaBetween` takes exactly two series) for one series only.
pub(crate) fn holt_winters_confidence_area(a: &Args) -> Result<Value> {
    let b = bands(a)?;
    if b.len() != 1 {
        return Err(a.err(format!(
            "the series argument must reference exactly 1 series (got {})",
            b.len()
        )));
    }
    let mut out = Vec::new();
    for (lower, upper) in b {
        let name = format!("holtWintersConfidenceArea({})", upper.path_expression);
        let mut tags = upper.tags.clone();
        tags.insert("holtWintersConfidenceArea".into(), "1".into());
        for mut s in [lower, upper] {
            s.name = name.clone();
            s.path_expression = name.clone();
            s.tags = tags.clone();
            out.push(s);
        }
    }
    Ok(Value::Series(out))
}

pub(crate) fn holt_winters_aberration(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let bands = bands(a)?;
    let mut out = Vec::new();
    for s in list {
        let s = s.consolidated();
        let lower_name = format!("holtWintersConfidenceLower({})", s.name);
        let Some((lower, upper)) = bands.iter().find(|(l, _)| l.name == lower_name) else {
            return Err(a.err(format!("no confidence bands for {}", s.name)));
        };
        let (lo, up) = (lower.raw(), upper.raw());
        let values = s
            .raw()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let Some(v) = *v else { return Some(0.0) };
                let u = up.get(i).copied().flatten();
                let l = lo.get(i).copied().flatten();
                Some(match (u, l) {
                    (Some(u), _) if v > u => v - u,
                    (_, Some(l)) if v < l => v - l,
                    _ => 0.0,
                })
            })
            .collect();
        let mut d = renamed(&s, format!("holtWintersAberration({})", s.name), values);
        d.tags.insert("holtWintersAberration".into(), "1".into());
        out.push(d);
    }
    Ok(Value::Series(out))
}

pub(crate) fn exponential_moving_average(a: &Args) -> Result<Value> {
    let window = a
        .value(1, "windowSize")?
        .ok_or_else(|| a.err("missing argument \"windowSize\""))?;
    let probe = a.series(0, "seriesList")?;
    if probe.is_empty() {
        return Ok(Value::Series(vec![]));
    }
    let (preview_secs, constant, text, tag) = match &window {
        Value::Str(s) => {
            let secs = parse_interval(a, s)?.abs();
            (
                secs,
                2.0 / (secs as f64 + 1.0),
                format!("\"{s}\""),
                s.clone(),
            )
        }
        Value::Number(n, int) => {
            if !(0.0..=1e6).contains(n) {
                return Err(a.err(format!(
                    "windowSize must be 0 to 1000000 points, got {}",
                    py_g(*n)
                )));
            }
            let step = probe.iter().map(|s| s.step).max().unwrap_or(1);
            let points = n.trunc() as i64;
            (
                step * points,
                2.0 / (points as f64 + 1.0),
                py_number(*n, *int),
                py_number(*n, *int),
            )
        }
        other => {
            return Err(a.err(format!(
                "windowSize must be a number of points or an interval, got {other:?}"
            )))
        }
    };
    let mut out = Vec::new();
    for s in preview(a, preview_secs)? {
        let s = s.consolidated();
        let points = match &window {
            Value::Number(n, _) => n.trunc() as usize,
            _ => usize::try_from(preview_secs / s.step).unwrap_or(usize::MAX),
        };
        let v = s.raw();
        let head: Vec<f64> = v[..points.min(v.len())].iter().flatten().copied().collect();
        let mut ema = if head.is_empty() {
            0.0
        } else {
            head.iter().sum::<f64>() / head.len() as f64
        };
        let mut values = vec![Some(py_round(ema, 6))];
        for x in v.iter().skip(points) {
            values.push(x.map(|x| {
                ema = constant * x + (1.0 - constant) * ema;
                py_round(ema, 6)
            }));
        }
        let mut d = renamed(
            &s,
            format!("exponentialMovingAverage({},{text})", s.name),
            values,
        );
        d.start = s.start + preview_secs;
        d.tags
            .insert("exponentialMovingAverage".into(), tag.clone());
        out.push(d);
    }
    Ok(Value::Series(out))
}

/// graphite's `_linearRegressionAnalysis`: (factor, offset) of the least-squares line through
/// the non-null points, or `None` when there are fewer than two.
fn regression(s: &TimeSeries) -> Option<(f64, f64)> {
    let (mut n, mut sum_i, mut sum_ii) = (0i128, 0i128, 0i128);
    let (mut sum_v, mut sum_iv) = (0.0f64, 0.0f64);
    for (i, v) in s.raw().iter().enumerate() {
        if let Some(v) = v {
            let i = i as i128;
            n += 1;
            sum_i += i;
            sum_ii += i * i;
            sum_v += v;
            sum_iv += i as f64 * v;
        }
    }
    let denominator = (n * sum_ii - sum_i * sum_i) as f64;
    if denominator == 0.0 {
        return None;
    }
    let factor = (n as f64 * sum_iv - sum_i as f64 * sum_v) / denominator / s.step as f64;
    let offset =
        (sum_ii as f64 * sum_v - sum_iv * sum_i as f64) / denominator - factor * s.start as f64;
    Some((factor, offset))
}

pub(crate) fn linear_regression(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let from = super::math::date_arg(a, 1, "startSourceAt")?.unwrap_or(a.ctx.from);
    let until = super::math::date_arg(a, 2, "endSourceAt")?.unwrap_or(a.ctx.until);
    let ctx = a.ctx.with_range(from, until);
    let sources = a.series_in(&ctx, 0, "seriesList")?;
    let mut out = Vec::new();
    for (source, s) in sources.iter().zip(list) {
        let s = s.consolidated();
        let Some((factor, offset)) = regression(&source.clone().consolidated()) else {
            continue;
        };
        let values = (0..s.len())
            .map(|i| Some(offset + (s.start + i as i64 * s.step) as f64 * factor))
            .collect();
        let mut d = renamed(
            &s,
            format!("linearRegression({}, {from}, {until})", s.name),
            values,
        );
        d.tags
            .insert("linearRegressions".into(), format!("{from}, {until}"));
        out.push(d);
    }
    Ok(Value::Series(out))
}

/// The n-th percentile of one series' values, as `nPercentile` computes it for the
/// `remove*Percentile` filters (`None` when it would make no series).
fn series_percentile(s: &TimeSeries, n: f64) -> Option<f64> {
    if (s.end - s.start) / s.step.max(1) <= 0 {
        return None;
    }
    percentile(&s.values_cow(), n, false)
}

/// Maps `f` over `items` in their order, on several threads when there are many (a wide glob's
/// per-series work, such as a percentile of each, is independent); `None`s are left out and
/// the first error in order is the answer.
pub(crate) fn par_map<T: Send, U: Send>(
    items: Vec<T>,
    f: impl Fn(T) -> Result<Option<U>> + Sync,
) -> Result<Vec<U>> {
    const PARALLEL_FROM: usize = 64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if items.len() < PARALLEL_FROM || threads < 2 {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(u) = f(item)? {
                out.push(u);
            }
        }
        return Ok(out);
    }
    let per = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let chunk: Vec<T> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let f = &f;
    let parts: Vec<Result<Vec<U>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(chunk.len());
                    for item in chunk {
                        if let Some(u) = f(item)? {
                            out.push(u);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            // A worker that panicked passes its panic on, as the loop would have.
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut out = Vec::new();
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

pub(crate) fn n_percentile(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let n = a.num(1, "n")?;
    if n == 0.0 {
        return Err(a.err("the requested percent is required to be greater than 0"));
    }
    let (ctx, func) = (a.ctx, a.func());
    let out = par_map(list, |s| {
        let s = s.consolidated();
        let Some(p) = percentile(s.raw(), n, false) else {
            return Ok(None);
        };
        let count = ((s.end - s.start) as f64 / s.step as f64).trunc().max(0.0) as usize;
        ctx.account_generated(func, count)?;
        let mut d = renamed(
            &s,
            format!("nPercentile({}, {})", s.name, py_g(n)),
            vec![Some(p); count],
        );
        d.tags.insert("nPercentile".into(), py_float(n));
        Ok(Some(d))
    })?;
    Ok(Value::Series(out))
}

/// removeAbovePercentile / removeBelowPercentile: values beyond the series' own n-th
/// percentile become null (below: nulls stay null).
pub(crate) fn remove_percentile(a: &Args, above: bool) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let n = a.num(1, "n")?;
    let func = if above {
        "removeAbovePercentile"
    } else {
        "removeBelowPercentile"
    };
    let ctx = a.ctx;
    let out = par_map(list, |s| {
        ctx.check_time()?;
        let s = s.consolidated();
        let name = format!("{func}({}, {})", s.name, py_g(n));
        let Some(p) = series_percentile(&s, n) else {
            let values = s.raw().to_vec();
            return Ok(Some(renamed(&s, name, values)));
        };
        let values = s
            .raw()
            .iter()
            .map(|v| match v {
                Some(x) if (above && *x > p) || (!above && *x < p) => None,
                other => *other,
            })
            .collect();
        let mut d = renamed(&s, name, values);
        // graphite-web's nPercentile tags the series it was given.
        d.tags.insert("nPercentile".into(), py_float(n));
        Ok(Some(d))
    })?;
    Ok(Value::Series(out))
}

pub(crate) fn remove_between_percentile(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let mut n = a.num(1, "n")?;
    if n < 50.0 {
        n = 100.0 - n;
    }
    let cols: Vec<std::borrow::Cow<'_, [Option<f64>]>> =
        list.iter().map(TimeSeries::values_cow).collect();
    let width = cols.iter().map(|c| c.len()).min().unwrap_or(0);
    let mut low = Vec::with_capacity(width);
    let mut high = Vec::with_capacity(width);
    for i in 0..width {
        let col: Vec<Option<f64>> = cols.iter().map(|c| c[i]).collect();
        low.push(percentile(&col, 100.0 - n, false));
        high.push(percentile(&col, n, false));
    }
    let keep: Vec<bool> = cols
        .iter()
        .map(|c| {
            c.iter().take(width).enumerate().any(|(i, v)| {
                !matches!((low[i], *v, high[i]), (Some(l), Some(v), Some(h)) if l < v && v < h)
            })
        })
        .collect();
    drop(cols);
    Ok(Value::Series(
        list.into_iter()
            .zip(keep)
            .filter_map(|(s, k)| k.then_some(s))
            .collect(),
    ))
}

fn average(v: &[Option<f64>]) -> Option<f64> {
    agg_func("average").and_then(|f| f(v))
}

pub(crate) fn average_outside_percentile(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let mut n = a.num(1, "n")?;
    if n < 50.0 {
        n = 100.0 - n;
    }
    let averages: Vec<Option<f64>> = list.iter().map(|s| average(&s.values_cow())).collect();
    let low = percentile(&averages, 100.0 - n, false);
    let high = percentile(&averages, n, false);
    Ok(Value::Series(
        list.into_iter()
            .zip(averages)
            .filter(|(_, avg)| {
                !matches!((low, *avg, high), (Some(l), Some(v), Some(h)) if l < v && v < h)
            })
            .map(|(s, _)| s)
            .collect(),
    ))
}

pub(crate) fn most_deviant(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let n = a.int(1, "n")?;
    let mut deviants: Vec<(f64, TimeSeries)> = Vec::new();
    for s in list {
        let v = s.values_cow();
        let Some(mean) = average(&v) else { continue };
        let vals: Vec<f64> = v.iter().flatten().copied().collect();
        let square_sum: f64 = vals.iter().map(|x| (x - mean) * (x - mean)).sum();
        let sigma = square_sum / vals.len() as f64;
        drop(v);
        deviants.push((sigma, s));
    }
    deviants.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or(std::cmp::Ordering::Equal));
    let (i, j) = super::math::py_slice(deviants.len(), None, Some(n));
    Ok(Value::Series(
        deviants
            .into_iter()
            .take(j)
            .skip(i)
            .map(|(_, s)| s)
            .collect(),
    ))
}

pub(crate) fn stdev(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let (points_f, int) = a.num_lit(1, "points")?;
    let tolerance = a.opt_num(2, "windowTolerance")?.unwrap_or(0.1);
    if points_f.fract() != 0.0 || points_f <= 0.0 || points_f > 1e9 {
        return Err(a.err(format!(
            "points must be a positive integer, got {}",
            py_number(points_f, int)
        )));
    }
    let points = points_f as usize;
    let mut out = Vec::new();
    for s in list {
        let s = s.consolidated();
        let v = s.raw();
        let (mut valid, mut sum, mut sum_sq) = (0usize, 0.0f64, 0.0f64);
        let mut values = Vec::with_capacity(v.len());
        for (i, new) in v.iter().enumerate() {
            if i >= points {
                if let Some(d) = v[i - points] {
                    valid -= 1;
                    sum -= d;
                    sum_sq -= d * d;
                }
            }
            if let Some(x) = new {
                valid += 1;
                sum += x;
                sum_sq += x * x;
            }
            values.push(if valid > 0 && valid as f64 / points as f64 >= tolerance {
                let d = (valid as f64 * sum_sq - sum * sum).sqrt() / valid as f64;
                (!d.is_nan()).then_some(d)
            } else {
                None
            });
        }
        let mut d = renamed(&s, format!("stdev({},{points})", s.name), values);
        d.tags.insert("stdev".into(), py_number(points_f, int));
        out.push(d);
    }
    Ok(Value::Series(out))
}

pub(crate) fn aggregate_line(a: &Args) -> Result<Value> {
    let list = a.series(0, "seriesList")?;
    let func = a.opt_str(1, "func")?.unwrap_or_else(|| "average".into());
    let keep_step = a.opt_bool(2, "keepStep")?.unwrap_or(false);
    let f = agg_func(&func)
        .ok_or_else(|| a.err(format!("Unsupported aggregation function: {func}")))?;
    let mut out = Vec::new();
    for s in list {
        let s = s.consolidated();
        let value = f(s.raw());
        let name = match value {
            Some(v) => format!("aggregateLine({}, {})", s.name, py_g(v)),
            None => format!("aggregateLine({}, None)", s.name),
        };
        if keep_step {
            let n = s.len();
            out.push(renamed(&s, name, vec![value; n]));
        } else {
            // graphite-web's constantLine(value), renamed: its tags stay those of
            // `str(value)`.
            let (start, end) = (a.ctx.from, a.ctx.until);
            let step = ((end - start) / 2).max(1);
            let text =
                value.map_or_else(|| "None".to_owned(), crate::graphite::py_number::py_float);
            let mut c = TimeSeries::new(text, start, step, vec![value; 3]);
            c.end = end;
            c.name = name.clone();
            c.path_expression = name;
            out.push(c);
        }
    }
    Ok(Value::Series(out))
}

/// `identity(name)`: the clock at one-minute steps, like `time(name)`.
pub(crate) fn identity(a: &Args) -> Result<Value> {
    let name = a.str(0, "name")?;
    let (start, end) = (a.ctx.from, a.ctx.until);
    let n = usize::try_from(((end - start).max(0) + 59) / 60).unwrap_or(usize::MAX);
    a.ctx.account_generated(a.func(), n)?;
    let values = (0..n as i64)
        .map(|i| Some((start + i * 60) as f64))
        .collect();
    let mut s = TimeSeries::new(name.clone(), start, 60, values);
    s.end = end;
    s.path_expression = format!("identity(\"{name}\")");
    Ok(Value::Series(vec![s]))
}

/// `randomWalk(name, step)`: a walk from 0 by uniform steps in [-0.5, 0.5).
pub(crate) fn random_walk(a: &Args) -> Result<Value> {
    let name = a.str(0, "name")?;
    let step = a.opt_int(1, "step")?.unwrap_or(60);
    if step <= 0 {
        return Err(a.err(format!("step must be positive, got {step}")));
    }
    let (start, end) = (a.ctx.from, a.ctx.until);
    let n = usize::try_from(((end - start).max(0) + step - 1) / step).unwrap_or(usize::MAX);
    a.ctx.account_generated(a.func(), n)?;
    // splitmix64 seeded from the clock: no reproducibility is promised, as in graphite-web.
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9, |d| d.as_nanos() as u64);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut current = 0.0;
    let values = (0..n)
        .map(|_| {
            let v = current;
            current += next() - 0.5;
            Some(v)
        })
        .collect();
    let mut s = TimeSeries::new(name, start, step, values);
    s.end = end;
    Ok(Value::Series(vec![s]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `par_map` keeps the input's order over its threads, leaves `None`s out, and answers
    /// the first error in order, wide lists and short ones alike.
    #[test]
    fn par_map_keeps_order_skips_nones_and_answers_the_first_error() {
        for n in [10usize, 1000] {
            let got =
                par_map((0..n).collect(), |i| Ok((i % 3 != 0).then_some(i * 2))).expect("no error");
            let want: Vec<usize> = (0..n).filter(|i| i % 3 != 0).map(|i| i * 2).collect();
            assert_eq!(got, want);
            let err = par_map((0..n).collect(), |i: usize| {
                if i == 7 || i == n - 1 {
                    Err(crate::QueryError::BadRequest(format!("bad {i}")))
                } else {
                    Ok(Some(i))
                }
            })
            .expect_err("an error");
            assert_eq!(
                err.to_string(),
                crate::QueryError::BadRequest("bad 7".into()).to_string()
            );
        }
    }

    fn p(v: &[f64], n: f64, i: bool) -> Option<f64> {
        percentile(&v.iter().map(|x| Some(*x)).collect::<Vec<_>>(), n, i)
    }

    /// 300 random cases computed by graphite-web 1.1.8's own `_getPercentile` (the ones where
    /// Python raises, n past 100 with interpolation, left out).
    #[test]
    fn percentiles_equal_graphite_webs_on_random_cases() {
        let parse = |t: &str| -> Option<f64> { (t != "N").then(|| t.parse().expect("number")) };
        let mut n = 0;
        for line in include_str!("percentile_cases.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
        {
            let f: Vec<&str> = line.split('|').collect();
            let points: Vec<Option<f64>> = f[0].split(' ').map(parse).collect();
            let q: f64 = f[1].parse().expect("n");
            let got = percentile(&points, q, f[2] == "1");
            assert_eq!(got, parse(f[3]), "{line}");
            n += 1;
        }
        assert_eq!(n, 300);
    }

    /// Cases of graphite-web's test_functions.py (`_getPercentile`).
    #[test]
    fn percentiles_as_graphite_web() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(p(&v, 50.0, false), Some(6.0));
        assert_eq!(p(&v, 90.0, false), Some(10.0));
        assert_eq!(p(&v, 10.0, false), Some(2.0));
        assert_eq!(p(&v, 100.0, false), Some(10.0));
        assert_eq!(p(&v, 50.0, true), Some(5.5));
        assert_eq!(p(&[], 50.0, false), None);
        assert_eq!(p(&[3.0, 1.0, 2.0], 1.0, false), Some(1.0));
        assert_eq!(p(&[3.0, 1.0, 2.0], -50.0, false), Some(1.0));
        assert_eq!(p(&[3.0, 1.0, 2.0], f64::NAN, false), None);
        assert_eq!(p(&[3.0, 1.0, 2.0], 40.0, true), Some(1.6));
        assert_eq!(p(&[3.0, 1.0, 2.0], 10.0, true), Some(1.0));
        assert_eq!(p(&[5.0, 1.0, 4.0, 2.0, 3.0], -10.0, true), Some(1.0));
    }
}
