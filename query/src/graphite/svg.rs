//! `format=svg`: a line chart to look at a target without Grafana. One polyline per series
//! (broken at gaps), y axis with five labels, time axis in UTC, a legend, optional title.
//! Series are consolidated to the chart's width first, as graphite-web does for its PNGs.

use std::fmt::Write;

use crate::graphite::py_number::py_g;
use crate::graphite::render::{consolidate_for_display, datapoints};
use crate::series::TimeSeries;
use crate::time::civil_from_days;

/// graphite-web's default line colours.
const COLORS: &[&str] = &[
    "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#bcbd22", "#17becf", "#7f7f7f",
    "#e377c2", "#ff7f0e",
];

/// Chart options from the request.
#[derive(Debug, Clone)]
pub(crate) struct SvgOptions {
    pub width: u32,
    pub height: u32,
    pub title: Option<String>,
}

impl Default for SvgOptions {
    fn default() -> Self {
        SvgOptions {
            width: 800,
            height: 400,
            title: None,
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn time_label(ts: i64, span: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    let secs = ts.rem_euclid(86_400);
    if span > 2 * 86_400 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{:02}:{:02}", secs / 3600, secs % 3600 / 60)
    }
}

pub(crate) fn svg(series: &mut [TimeSeries], opts: &SvgOptions) -> String {
    let (w, h) = (
        f64::from(opts.width.clamp(100, 8000)),
        f64::from(opts.height.clamp(80, 8000)),
    );
    let top = if opts.title.is_some() { 30.0 } else { 12.0 };
    let legend_h = 16.0 * series.len() as f64 + 8.0;
    let (left, right, bottom) = (60.0, w - 12.0, h - 24.0 - legend_h);
    consolidate_for_display(series, ((right - left) as usize).max(1));
    let points: Vec<Vec<(Option<f64>, i64)>> = series.iter().map(datapoints).collect();
    let t0 = series.iter().map(|s| s.start).min().unwrap_or(0);
    let t1 = series
        .iter()
        .map(|s| s.end)
        .max()
        .unwrap_or(t0 + 1)
        .max(t0 + 1);
    let finite = points
        .iter()
        .flatten()
        .filter_map(|p| p.0)
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if (hi - lo).abs() < f64::EPSILON {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    // Round axis ends and ticks to 1, 2 or 5 times a power of ten.
    let raw_step = (hi - lo) / 4.0;
    let mag = 10f64.powf(raw_step.log10().floor());
    let tick = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw_step)
        .unwrap_or(10.0 * mag);
    let (lo, hi) = ((lo / tick).floor() * tick, (hi / tick).ceil() * tick);
    let ticks = ((hi - lo) / tick).round() as i32;
    let x = |t: i64| left + (t - t0) as f64 / (t1 - t0) as f64 * (right - left);
    let y = |v: f64| bottom - (v - lo) / (hi - lo) * (bottom - top);

    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>"
    );
    if let Some(title) = &opts.title {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">{}</text>",
            w / 2.0,
            escape(title)
        );
    }
    for i in 0..=ticks {
        let v = lo + tick * f64::from(i);
        let yy = y(v);
        let _ = write!(
            out,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{right}\" y2=\"{yy:.1}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            yy + 4.0,
            escape(&py_g((v / tick).round() * tick))
        );
    }
    for i in 0..=4 {
        let t = t0 + (t1 - t0) * i64::from(i) / 4;
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(t),
            bottom + 14.0,
            time_label(t, t1 - t0)
        );
    }
    let _ = write!(out, "<rect x=\"{left}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#888\"/>", right - left, bottom - top);
    for (i, (s, pts)) in series.iter().zip(&points).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, out: &mut String| {
            if run.len() == 1 {
                let _ = write!(
                    out,
                    "<circle cx=\"{}\" r=\"1.5\" fill=\"{color}\"/>",
                    run[0].replace(',', "\" cy=\"")
                );
            } else if run.len() > 1 {
                let _ = write!(out, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>", run.join(" "));
            }
            run.clear();
        };
        for &(v, t) in pts {
            match v.filter(|v| v.is_finite()) {
                Some(v) => run.push(format!("{:.1},{:.1}", x(t), y(v))),
                None => flush(&mut run, &mut out),
            }
        }
        flush(&mut run, &mut out);
        let ly = bottom + 30.0 + 16.0 * i as f64;
        let _ = write!(
            out,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            ly - 9.0,
            left + 14.0,
            ly,
            escape(&s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_broken_at_gaps_and_escapes_names() {
        let mut s = vec![TimeSeries::new(
            "a<b>&c",
            0,
            60,
            vec![Some(1.0), Some(2.0), None, Some(3.0), Some(4.0), Some(2.0)],
        )];
        let out = svg(
            &mut s,
            &SvgOptions {
                title: Some("t & u".into()),
                ..SvgOptions::default()
            },
        );
        assert!(out.starts_with("<svg "));
        assert!(out.trim_end().ends_with("</svg>"));
        assert_eq!(
            out.matches("<polyline").count(),
            2,
            "the gap splits the line"
        );
        assert!(out.contains("a&lt;b&gt;&amp;c") && out.contains("t &amp; u"));
        assert!(!out.contains("NaN") && !out.contains("inf"));
        // Balanced: every opened element is closed or self-closing.
        assert_eq!(out.matches("<text").count(), out.matches("</text>").count());
    }

    #[test]
    fn empty_and_flat_series_do_not_break_it() {
        assert!(svg(&mut [], &SvgOptions::default()).contains("</svg>"));
        let mut flat = vec![TimeSeries::new("f", 0, 10, vec![Some(5.0); 4])];
        assert!(svg(&mut flat, &SvgOptions::default()).contains("<polyline"));
        let mut nulls = vec![TimeSeries::new("n", 0, 10, vec![None; 4])];
        assert!(!svg(&mut nulls, &SvgOptions::default()).contains("<polyline"));
    }
}
