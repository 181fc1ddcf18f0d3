//! The y axis as graphite-web 1.1.8 computes it (`glyph.py`: `_AxisTics`, `_LinearAxisTics`,
//! `_LogAxisTics`, `format_units`): limits from the data and the options, a "nice" step that
//! wastes the least room, and labels with SI or binary prefixes.

use crate::error::QueryError;
use crate::graphite::py_number::py_g;

/// Values fractionally outside the nominal limits are accepted (graphite's EPSILON).
const EPSILON: f64 = 0.0001;

/// `yUnitSystem`: graphite's `UnitSystems`.
pub(crate) fn unit_system(name: &str) -> &'static [(&'static str, f64)] {
    const BINARY: &[(&str, f64)] = &[
        ("Pi", 1_125_899_906_842_624.0),
        ("Ti", 1_099_511_627_776.0),
        ("Gi", 1_073_741_824.0),
        ("Mi", 1_048_576.0),
        ("Ki", 1024.0),
    ];
    const SI: &[(&str, f64)] = &[("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)];
    const SEC: &[(&str, f64)] = &[
        ("Y", 31_536_000.0),
        ("M", 2_592_000.0),
        ("D", 86_400.0),
        ("H", 3600.0),
        ("m", 60.0),
    ];
    const MSEC: &[(&str, f64)] = &[
        ("Y", 31_536_000_000.0),
        ("M", 2_592_000_000.0),
        ("D", 86_400_000.0),
        ("H", 3_600_000.0),
        ("m", 60_000.0),
        ("s", 1000.0),
    ];
    match name {
        "binary" => BINARY,
        "sec" => SEC,
        "msec" => MSEC,
        "none" => &[],
        _ => SI,
    }
}

/// Whether graphite knows the unit system (else it uses si).
pub(crate) fn known_unit_system(name: &str) -> bool {
    matches!(name, "binary" | "si" | "sec" | "msec" | "none")
}

/// graphite's `format_units`: the value scaled to the largest prefix it (and the step) reach.
pub(crate) fn format_units(v: f64, step: Option<f64>, system: &str) -> (f64, &'static str) {
    for &(prefix, size) in unit_system(system) {
        if v.abs() >= size && step.is_none_or(|s| s >= size) {
            let mut v2 = v / size;
            if v2 - v2.floor() < 0.000_000_000_01 && v > 1.0 {
                v2 = v2.floor();
            }
            return (v2, prefix);
        }
    }
    let mut v = v;
    if v - v.floor() < 0.000_000_000_01 && v > 1.0 {
        v = v.floor();
    }
    (v, "")
}

fn finite(v: f64, what: &str) -> Result<f64, QueryError> {
    if v.is_nan() {
        Err(QueryError::BadRequest(format!(
            "graph: encountered NaN {what}"
        )))
    } else if v.is_infinite() {
        Err(QueryError::BadRequest(format!(
            "graph: encountered infinite {what}"
        )))
    } else {
        Ok(v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Data,
    Min,
    Max,
    Limit,
    Extremum,
}

/// What `yMax` may be: a number or `max` (the data's maximum, unrounded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AxisMax {
    Value(f64),
    DataMax,
}

/// One y axis: linear, or logarithmic with a base.
#[derive(Debug, Clone)]
pub(crate) struct Tics {
    min: f64,
    min_source: Source,
    max: f64,
    max_source: Source,
    limit: Option<f64>,
    unit_system: String,
    log_base: Option<f64>,
    binary: bool,
    pub step: Option<f64>,
    pub bottom: f64,
    pub top: f64,
    pub span: f64,
}

impl Tics {
    pub(crate) fn new(
        min: f64,
        max: f64,
        unit_system: &str,
        log_base: Option<f64>,
    ) -> Result<Tics, QueryError> {
        if let Some(b) = log_base {
            if b <= 1.0 {
                return Err(QueryError::BadRequest(
                    "parameter \"logBase\": the logarithmic base must be greater than one".into(),
                ));
            }
        }
        Ok(Tics {
            min: finite(min, "data value")?,
            min_source: Source::Data,
            max: finite(max, "data value")?,
            max_source: Source::Data,
            limit: None,
            unit_system: unit_system.to_owned(),
            log_base,
            binary: false,
            step: None,
            bottom: 0.0,
            top: 0.0,
            span: 0.0,
        })
    }

    fn choose_delta(x: f64) -> f64 {
        if x.abs() < 1.0e-9 {
            1.0
        } else {
            0.1 * x.abs()
        }
    }

    fn reconcile_limits(&mut self) -> Result<(), QueryError> {
        if self.min < self.max {
            return Ok(());
        }
        let min_fixed = self.min_source == Source::Min;
        let max_fixed = matches!(self.max_source, Source::Max | Source::Limit);
        if min_fixed && max_fixed {
            return Err(QueryError::BadRequest(format!(
                "graph: the y axis minimum ({}) must be less than its {} ({})",
                py_g(self.min),
                if self.max_source == Source::Max {
                    "maximum"
                } else {
                    "limit"
                },
                py_g(self.max)
            )));
        } else if min_fixed {
            self.max = self.min + Self::choose_delta(self.min);
        } else if max_fixed {
            self.min = self.max - Self::choose_delta(self.max);
        } else {
            let delta = Self::choose_delta(self.min.abs().max(self.max.abs()));
            let average = (self.min + self.max) / 2.0;
            self.min = average - delta;
            self.max = average + delta;
        }
        Ok(())
    }

    /// graphite's `applySettings`.
    pub(crate) fn apply_settings(
        &mut self,
        axis_min: Option<f64>,
        axis_max: Option<AxisMax>,
        axis_limit: Option<f64>,
    ) -> Result<(), QueryError> {
        if let Some(m) = axis_min.filter(|m| !m.is_nan()) {
            self.min_source = Source::Min;
            self.min = finite(m, "axis min")?;
        }
        match axis_max {
            Some(AxisMax::DataMax) => self.max_source = Source::Extremum,
            Some(AxisMax::Value(m)) if !m.is_nan() => {
                self.max_source = Source::Max;
                self.max = finite(m, "axis max")?;
            }
            _ => {}
        }
        self.limit = match axis_limit.filter(|l| !l.is_nan()) {
            None => None,
            Some(l) if l < self.max => {
                self.max = finite(l, "axis limit")?;
                self.max_source = Source::Limit;
                None
            }
            Some(l) if l.is_infinite() => None,
            Some(l) => Some(l),
        };
        self.reconcile_limits()
    }

    pub(crate) fn set_step(&mut self, step: f64) -> Result<(), QueryError> {
        self.step = if self.log_base.is_some() {
            None
        } else {
            Some(finite(step, "axis step")?)
        };
        Ok(())
    }

    fn steps(&self, min_step: f64) -> impl Iterator<Item = f64> {
        let (base, mantissas, mut exponent): (f64, &[f64], f64) = if self.binary {
            (2.0, &[1.0], (min_step.log2() - EPSILON).floor())
        } else {
            (10.0, &[1.0, 2.0, 5.0], (min_step.log10() - EPSILON).floor())
        };
        let mut out = Vec::new();
        // Enough candidates for any search below: it stops after a few growing steps.
        for _ in 0..64 {
            let multiplier = base.powf(exponent);
            for m in mantissas {
                let v = m * multiplier;
                if v >= min_step * (1.0 - EPSILON) {
                    out.push(v);
                }
            }
            exponent += 1.0;
        }
        out.into_iter()
    }

    fn slop(&self, step: f64, divisor: f64) -> Option<f64> {
        let bottom = step * (self.min / step + EPSILON).floor();
        let top = bottom + step * divisor;
        (top >= self.max - EPSILON * step).then(|| (top - self.max).max(self.min - bottom))
    }

    /// graphite's `chooseStep`: the step and number of divisions that waste the least room.
    pub(crate) fn choose_step(&mut self, divisors: &[f64], binary: bool) {
        if self.log_base.is_some() {
            self.step = None;
            return;
        }
        self.binary = binary;
        if self.min == self.max {
            if self.min == 0.0 {
                self.max = 1.0;
            } else if self.min < 0.0 {
                self.min *= 1.1;
                self.max *= 0.9;
            } else {
                self.min *= 0.9;
                self.max *= 1.1;
            }
        }
        let variance = self.max - self.min;
        let max_div = divisors.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min_div = divisors.iter().copied().fold(f64::INFINITY, f64::min);
        let (mut best_slop, mut best_step): (Option<f64>, Option<f64>) = (None, None);
        for step in self.steps(variance / max_div) {
            if best_slop.is_some_and(|b| step * min_div >= 2.0 * b + variance) {
                break;
            }
            for &d in divisors {
                if let Some(slop) = self.slop(step, d) {
                    if best_slop.is_none_or(|b| slop < b) {
                        best_slop = Some(slop);
                        best_step = Some(step);
                    }
                }
            }
        }
        self.step = best_step;
    }

    /// graphite's `chooseLimits`.
    pub(crate) fn choose_limits(&mut self) -> Result<(), QueryError> {
        if let Some(base) = self.log_base {
            if self.min <= 0.0 {
                return Err(QueryError::BadRequest(
                    "graph: logBase with a minimum value at or below zero".into(),
                ));
            }
            self.bottom = base.powf(self.min.log(base).floor());
            self.top = base.powf(self.max.log(base).ceil());
            self.span = self.top - self.bottom;
            if self.span == 0.0 {
                self.top *= base;
                self.span = self.top - self.bottom;
            }
            return Ok(());
        }
        let step = self.step.unwrap_or(1.0);
        self.bottom = if self.min_source == Source::Data {
            step * (self.min / step + EPSILON).floor()
        } else {
            self.min
        };
        if self.max_source == Source::Data {
            self.top = step * (self.max / step - EPSILON).ceil();
            if let Some(l) = self.limit {
                if self.top > l + EPSILON * step {
                    self.top = l;
                }
            }
        } else {
            self.top = self.max;
        }
        self.span = self.top - self.bottom;
        if self.span == 0.0 {
            self.top += 1.0;
            self.span += 1.0;
        }
        Ok(())
    }

    /// graphite's `getLabelValues`.
    pub(crate) fn label_values(&mut self) -> Result<Vec<f64>, QueryError> {
        let mut values = Vec::new();
        if let Some(base) = self.log_base {
            let mut v = base.powf((self.bottom.log(base) - EPSILON).ceil());
            while v < self.top * (1.0 + EPSILON) && values.len() < 10_000 {
                values.push(v);
                v *= base;
            }
            return Ok(values);
        }
        let step = self.step.unwrap_or(1.0);
        if step <= 0.0 {
            return Err(QueryError::BadRequest(
                "parameter \"yStep\": the step must be positive".into(),
            ));
        }
        if self.span > 1000.0 * step {
            // graphite: "This is insane. Pick something that won't cause trouble".
            self.choose_step(&[4.0, 5.0, 6.0], false);
        }
        let step = self.step.unwrap_or(1.0);
        let start = step * (self.bottom / step - EPSILON).ceil();
        let mut i = 0.0;
        loop {
            let v = start + i * step;
            if v > self.top + EPSILON * step || values.len() > 10_000 {
                break;
            }
            values.push(v);
            i += 1.0;
        }
        Ok(values)
    }

    /// graphite's `makeLabel`.
    pub(crate) fn label(&self, value: f64) -> String {
        let system = self.unit_system.as_str();
        let (value, prefix) = format_units(value, self.step, system);
        let (span, span_prefix) = format_units(self.span, self.step, system);
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix} ")
        };
        // graphite compares the bare span prefix with the spaced one, so any prefix on the
        // value takes this branch.
        if value < 0.1 {
            format!("{} {prefix}", py_g(value))
        } else if value < 1.0 {
            format!("{value:.2} {prefix}")
        } else if span > 10.0 || span_prefix != prefix {
            // graphite: "%.1f" for a float, "%d" for an int; format_units gives floats.
            format!("{value:.1} {prefix}")
        } else if span > 3.0 {
            format!("{value:.1} {prefix}")
        } else if span > 0.1 {
            format!("{value:.2} {prefix}")
        } else {
            format!("{} {prefix}", py_g(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(min: f64, max: f64) -> (Vec<f64>, Vec<String>) {
        let mut t = Tics::new(min, max, "si", None).expect("finite");
        t.apply_settings(None, None, None).expect("settings");
        t.choose_step(&[4.0, 5.0, 6.0], false);
        t.choose_limits().expect("limits");
        let v = t.label_values().expect("labels");
        let l = v.iter().map(|x| t.label(*x)).collect();
        (v, l)
    }

    /// What graphite-web 1.1.8's `_LinearAxisTics` gives for these data ranges (its own code run
    /// under Debian's python3: applySettings(), chooseStep([4,5,6]), chooseLimits()).
    #[test]
    fn steps_and_labels_are_graphites() {
        for (lo, hi, values, labels) in [
            (
                0.0,
                100.0,
                &[0.0, 20.0, 40.0, 60.0, 80.0, 100.0][..],
                &["0 ", "20.0 ", "40.0 ", "60.0 ", "80.0 ", "100.0 "][..],
            ),
            (
                3.0,
                7.5,
                &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
                &["3.0 ", "4.0 ", "5.0 ", "6.0 ", "7.0 ", "8.0 "],
            ),
            (
                0.0,
                2_500_000.0,
                &[0.0, 500_000.0, 1e6, 1.5e6, 2e6, 2.5e6],
                &[
                    "0 ",
                    "500.0 k ",
                    "1000.0 k ",
                    "1500.0 k ",
                    "2000.0 k ",
                    "2500.0 k ",
                ],
            ),
            (
                0.0,
                0.05,
                &[0.0, 0.01, 0.02, 0.03, 0.04, 0.05],
                &["0 ", "0.01 ", "0.02 ", "0.03 ", "0.04 ", "0.05 "],
            ),
            (
                5.0,
                5.0,
                &[
                    4.4,
                    4.6000000000000005,
                    4.800000000000001,
                    5.0,
                    5.2,
                    5.4,
                    5.6000000000000005,
                ],
                &[
                    "4.40 ", "4.60 ", "4.80 ", "5.00 ", "5.20 ", "5.40 ", "5.60 ",
                ],
            ),
        ] {
            let (v, l) = axis(lo, hi);
            assert_eq!(v, values, "{lo}..{hi}");
            assert_eq!(l, labels, "{lo}..{hi}");
        }
    }

    #[test]
    fn units_and_limits() {
        assert_eq!(format_units(2048.0, None, "binary"), (2.0, "Ki"));
        assert_eq!(format_units(1500.0, Some(100.0), "si"), (1500.0, ""));
        assert_eq!(format_units(1500.0, None, "none"), (1500.0, ""));
        let mut t = Tics::new(0.0, 10.0, "si", None).expect("finite");
        let e = t
            .apply_settings(Some(5.0), Some(AxisMax::Value(5.0)), None)
            .expect_err("min >= max");
        assert!(e.to_string().contains("must be less than"), "{e}");
        let mut t = Tics::new(1.0, 1000.0, "si", Some(10.0)).expect("finite");
        t.apply_settings(None, None, None).expect("settings");
        t.choose_limits().expect("limits");
        assert_eq!(
            t.label_values().expect("labels"),
            [1.0, 10.0, 100.0, 1000.0]
        );
        let mut t = Tics::new(-1.0, 10.0, "si", Some(10.0)).expect("finite");
        assert!(t.choose_limits().is_err());
        assert!(Tics::new(f64::NAN, 1.0, "si", None).is_err());
    }
}
