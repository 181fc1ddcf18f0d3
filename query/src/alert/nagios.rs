//! The Nagios plugin side of `tally check`: threshold ranges in the plugin guidelines' syntax,
//! plain Graphite-style warn/crit numbers, and the one status line with perfdata.
//!
//! | range | alerts when the value is |
//! |---|---|
//! | `10` | outside 0..10 (below 0 or above 10) |
//! | `10:` | below 10 |
//! | `~:10` | above 10 |
//! | `10:20` | outside 10..20 |
//! | `@10:20` | inside 10..20, bounds included |
//!
//! Plain numbers (`--warn 10 --crit 20`) alert at or beyond the threshold; a critical below the
//! warning means low is bad. Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

use super::backtest::History;
use super::config::{fmt_value, Reduce};

/// A plugin-guidelines range.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub low: f64,
    pub high: f64,
    /// `@`: alert inside instead of outside.
    pub inside: bool,
    /// The range as the user wrote it (perfdata echoes it).
    pub src: Option<String>,
}

impl Range {
    pub fn parse(s: &str) -> Result<Range, String> {
        let bad = || format!("\"{s}\" is not a range like 10, 10:, ~:10, 10:20 or @10:20");
        let (inside, body) = match s.strip_prefix('@') {
            Some(b) => (true, b),
            None => (false, s),
        };
        let num = |t: &str| -> Result<f64, String> {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| !v.is_nan())
                .ok_or_else(bad)
        };
        let (low, high) = match body.split_once(':') {
            None => (0.0, num(body)?),
            Some((lo, hi)) => {
                let low = if lo == "~" {
                    f64::NEG_INFINITY
                } else {
                    num(lo)?
                };
                let high = if hi.is_empty() {
                    f64::INFINITY
                } else {
                    num(hi)?
                };
                (low, high)
            }
        };
        if low > high {
            return Err(format!("\"{s}\": the start is above the end"));
        }
        Ok(Range {
            low,
            high,
            inside,
            src: Some(s.trim().to_string()),
        })
    }

    /// Whether `v` is an alert for this range.
    pub(crate) fn alerts(&self, v: f64) -> bool {
        let within = v >= self.low && v <= self.high;
        if self.inside {
            within
        } else {
            !within
        }
    }

    /// The range as perfdata writes it.
    pub(crate) fn text(&self) -> String {
        if let Some(s) = &self.src {
            return s.clone();
        }
        let lo = if self.low == f64::NEG_INFINITY {
            "~".to_string()
        } else {
            fmt_value(self.low)
        };
        let body = match (self.low, self.high) {
            (l, h) if l == 0.0 && h.is_finite() => fmt_value(h),
            (_, h) if h == f64::INFINITY => format!("{lo}:"),
            (_, h) => format!("{lo}:{}", fmt_value(h)),
        };
        if self.inside {
            format!("@{body}")
        } else {
            body
        }
    }
}

/// Warning and critical thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub warn: Option<Range>,
    pub crit: Option<Range>,
}

impl Thresholds {
    /// From plain numbers: high is bad, unless critical is below warning (low is bad).
    pub fn plain(warn: Option<f64>, crit: Option<f64>) -> Thresholds {
        let low_is_bad = matches!((warn, crit), (Some(w), Some(c)) if c < w);
        let mk = |t: f64| {
            if low_is_bad {
                // Alert at or below t: fine strictly above.
                Range {
                    low: t,
                    high: f64::INFINITY,
                    inside: false,
                    src: None,
                }
                .with_open_low()
            } else {
                Range {
                    low: f64::NEG_INFINITY,
                    high: t,
                    inside: false,
                    src: None,
                }
                .with_open_high()
            }
        };
        Thresholds {
            warn: warn.map(mk),
            crit: crit.map(mk),
        }
    }

    /// 0, 1 or 2 for one value.
    pub(crate) fn code(&self, v: f64) -> i32 {
        if self.crit.as_ref().is_some_and(|r| r.alerts(v)) {
            2
        } else if self.warn.as_ref().is_some_and(|r| r.alerts(v)) {
            1
        } else {
            0
        }
    }
}

impl Range {
    /// `value >= high` alerts (a plain "at or above" threshold).
    fn with_open_high(self) -> Range {
        Range {
            low: f64::NEG_INFINITY,
            high: next_down(self.high),
            inside: false,
            src: Some(format!("~:{}", fmt_value(self.high))),
        }
    }
    /// `value <= low` alerts.
    fn with_open_low(self) -> Range {
        Range {
            low: next_up(self.low),
            high: f64::INFINITY,
            inside: false,
            src: Some(format!("{}:", fmt_value(self.low))),
        }
    }
}

fn next_up(v: f64) -> f64 {
    if v.is_nan() || v == f64::INFINITY {
        return v;
    }
    if v == 0.0 {
        return f64::from_bits(1);
    }
    let b = v.to_bits();
    f64::from_bits(if v > 0.0 { b + 1 } else { b - 1 })
}

fn next_down(v: f64) -> f64 {
    -next_up(-v)
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub code: i32,
    pub line: String,
}

const NAMES: [&str; 4] = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];

fn perf_label(name: &str) -> String {
    name.replace('\'', "''").replace('=', "_")
}

/// Checks every series, its values reduced over the window. All-null is UNKNOWN unless
/// `nodata_ok`; no series at all likewise.
pub fn check(
    label: &str,
    series: &[History],
    reduce: Reduce,
    t: &Thresholds,
    nodata_ok: bool,
) -> Outcome {
    let mut worst = 0;
    let mut parts: Vec<(i32, String)> = Vec::new();
    let mut perf = Vec::new();
    let mut nodata = Vec::new();
    let w = t.warn.as_ref().map(|r| r.text()).unwrap_or_default();
    let c = t.crit.as_ref().map(|r| r.text()).unwrap_or_default();
    for History { name, values, .. } in series {
        match reduce.apply(values) {
            Some(v) => {
                let code = t.code(v);
                worst = worst.max(code);
                parts.push((code, format!("{name}={}", fmt_value(v))));
                perf.push(format!("'{}'={};{w};{c};;", perf_label(name), fmt_value(v)));
            }
            None => nodata.push(name.clone()),
        }
    }
    let mut code = worst;
    if (series.is_empty() || !nodata.is_empty()) && !nodata_ok {
        code = 3;
    }
    // The status line names the series at the worst state first.
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    let mut text: Vec<String> = parts.into_iter().map(|p| p.1).collect();
    if series.is_empty() {
        text.push("no series".into());
    }
    text.extend(nodata.iter().map(|n| format!("{n}=no data")));
    let line = format!(
        "{} {} - {} | {}",
        label.to_uppercase(),
        NAMES[code as usize],
        text.join(", "),
        perf.join(" ")
    );
    Outcome {
        code,
        line: line.trim_end_matches(" | ").trim_end().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_form() {
        let cases: [(&str, &[(f64, bool)]); 5] = [
            (
                "10",
                &[(-1.0, true), (0.0, false), (10.0, false), (10.5, true)],
            ),
            ("10:", &[(9.9, true), (10.0, false), (1e9, false)]),
            ("~:10", &[(-1e9, false), (10.0, false), (10.1, true)]),
            (
                "10:20",
                &[(9.0, true), (10.0, false), (20.0, false), (21.0, true)],
            ),
            (
                "@10:20",
                &[(9.0, false), (10.0, true), (20.0, true), (21.0, false)],
            ),
        ];
        for (text, checks) in cases {
            let r = Range::parse(text).expect(text);
            assert_eq!(r.text(), text);
            for (v, alert) in checks {
                assert_eq!(r.alerts(*v), *alert, "{text} at {v}");
            }
        }
        for bad in ["", "x", "20:10", "@", "1:2:3", "~"] {
            assert!(Range::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_thresholds_and_low_is_bad() {
        let high = Thresholds::plain(Some(10.0), Some(20.0));
        assert_eq!(
            [
                high.code(9.0),
                high.code(10.0),
                high.code(19.0),
                high.code(20.0)
            ],
            [0, 1, 1, 2]
        );
        let low = Thresholds::plain(Some(10.0), Some(5.0));
        assert_eq!(
            [low.code(11.0), low.code(10.0), low.code(6.0), low.code(5.0)],
            [0, 1, 1, 2]
        );
    }

    fn series(name: &str, values: Vec<Option<f64>>) -> History {
        History {
            name: name.into(),
            start: 0,
            step: 60,
            values,
        }
    }

    #[test]
    fn status_line_with_perfdata_and_nodata_is_unknown() {
        let t = Thresholds {
            warn: Some(Range::parse("~:10").expect("r")),
            crit: Some(Range::parse("~:20").expect("r")),
        };
        let s = vec![
            series("cdn_fastly", vec![Some(40.0), Some(42.0)]),
            series("origin", vec![Some(1.0)]),
        ];
        let o = check("beacons", &s, Reduce::Last, &t, false);
        assert_eq!(o.code, 2);
        assert_eq!(o.line, "BEACONS CRITICAL - cdn_fastly=42, origin=1 | 'cdn_fastly'=42;~:10;~:20;; 'origin'=1;~:10;~:20;;");
        let s = vec![series("a", vec![None, None])];
        let o = check("beacons", &s, Reduce::Avg, &t, false);
        assert_eq!(
            (o.code, o.line.as_str()),
            (3, "BEACONS UNKNOWN - a=no data")
        );
        assert_eq!(
            check("beacons", &s, Reduce::Avg, &t, true).code,
            0,
            "all-null is OK only when asked"
        );
        assert_eq!(check("x", &[], Reduce::Avg, &t, false).code, 3);
    }
}
