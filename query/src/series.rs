//! A series as graphite-web's `TimeSeries`: `values[i]` is at `start + i * step`, `end` is
//! exclusive, and a series may carry a pending consolidation (`values_per_point`) that its
//! readers apply, with its consolidation function and xFilesFactor.

use std::collections::BTreeMap;

/// How points are combined when a series is consolidated (`consolidateBy`, `maxDataPoints`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consolidation {
    Average,
    AvgZero,
    Sum,
    Min,
    Max,
    First,
    Last,
}

impl Consolidation {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "average" | "avg" => Consolidation::Average,
            "avg_zero" => Consolidation::AvgZero,
            "sum" => Consolidation::Sum,
            "min" => Consolidation::Min,
            "max" => Consolidation::Max,
            "first" => Consolidation::First,
            "last" => Consolidation::Last,
            _ => return None,
        })
    }

    /// graphite's name of it (`consolidationFunc`, as its cluster formats carry it).
    pub fn name(self) -> &'static str {
        match self {
            Consolidation::Average => "average",
            Consolidation::AvgZero => "avg_zero",
            Consolidation::Sum => "sum",
            Consolidation::Min => "min",
            Consolidation::Max => "max",
            Consolidation::First => "first",
            Consolidation::Last => "last",
        }
    }

    fn apply(self, buf: &[f64]) -> f64 {
        match self {
            Consolidation::Average | Consolidation::AvgZero => {
                buf.iter().sum::<f64>() / buf.len() as f64
            }
            Consolidation::Sum => buf.iter().sum(),
            Consolidation::Min => buf.iter().copied().fold(f64::INFINITY, f64::min),
            Consolidation::Max => buf.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Consolidation::First => buf[0],
            Consolidation::Last => buf[buf.len() - 1],
        }
    }
}

/// How a graph draws a series: graphite-web's `series.options` and `series.color`, set by the
/// functions of its "Graph" group (`color`, `dashed`, `secondYAxis`, `stacked`, ...). Only the
/// PNG and SVG renderers read it; like graphite's `series.copy()`, [`TimeSeries::derive`] drops it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Style {
    /// A colour as graphite takes it: a name, `rrggbb`, `#rrggbb` or `rrggbbaa`.
    pub color: Option<String>,
    pub alpha: Option<f64>,
    pub line_width: Option<f64>,
    /// Dash length, in pixels.
    pub dashed: Option<f64>,
    pub second_y_axis: bool,
    pub draw_as_infinite: bool,
    pub stacked: bool,
    /// Drawn fully transparent (the lower edge of `areaBetween`).
    pub invisible: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimeSeries {
    pub name: String,
    pub path_expression: String,
    pub tags: BTreeMap<String, String>,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    values: Vec<Option<f64>>,
    pub consolidation: Consolidation,
    pub values_per_point: usize,
    pub x_files_factor: f64,
    pub style: Style,
}

/// Tags of a name as graphite-web derives them: a tagged name's tags, else `{name: <name>}`.
pub(crate) fn tags_of(name: &str) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    let wrapped = {
        let b = name.as_bytes();
        let lead = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        lead > 0 && b.get(lead) == Some(&b'(') && name.ends_with(')') && name.len() > lead + 2
    };
    if !wrapped && tally_proto::series_name::is_tagged(name) {
        if let Ok(canonical) = tally_proto::series_name::canonicalize(name) {
            tags.insert(
                "name".to_owned(),
                tally_proto::series_name::metric_name(&canonical).to_owned(),
            );
            for (k, v) in tally_proto::series_name::tags(&canonical) {
                tags.insert(k.to_owned(), v.to_owned());
            }
            return tags;
        }
    }
    tags.insert("name".to_owned(), name.to_owned());
    tags
}

impl TimeSeries {
    pub fn new(name: impl Into<String>, start: i64, step: i64, values: Vec<Option<f64>>) -> Self {
        let name = name.into();
        let step = step.max(1);
        TimeSeries {
            tags: tags_of(&name),
            path_expression: name.clone(),
            end: start + values.len() as i64 * step,
            name,
            start,
            step,
            values,
            consolidation: Consolidation::Average,
            values_per_point: 1,
            x_files_factor: 0.0,
            style: Style::default(),
        }
    }

    /// A copy with a new name and values, keeping everything else (graphite's `series.copy`).
    pub fn derive(&self, name: impl Into<String>, values: Vec<Option<f64>>) -> Self {
        let mut s = self.clone();
        s.name = name.into();
        s.values = values;
        s.values_per_point = 1;
        s.style = Style::default();
        s
    }

    /// The raw values, before any pending consolidation.
    pub fn raw(&self) -> &[Option<f64>] {
        &self.values
    }

    pub fn raw_mut(&mut self) -> &mut Vec<Option<f64>> {
        &mut self.values
    }

    pub fn set_values(&mut self, values: Vec<Option<f64>>) {
        self.values = values;
    }

    /// The values as readers see them, borrowed when no consolidation is pending.
    pub fn values_cow(&self) -> std::borrow::Cow<'_, [Option<f64>]> {
        if self.values_per_point <= 1 {
            std::borrow::Cow::Borrowed(&self.values)
        } else {
            std::borrow::Cow::Owned(self.values())
        }
    }

    /// The values as readers see them: consolidated `values_per_point` at a time.
    pub fn values(&self) -> Vec<Option<f64>> {
        if self.values_per_point <= 1 {
            return self.values.clone();
        }
        let vpp = self.values_per_point;
        self.values
            .chunks(vpp)
            .map(|chunk| {
                let mut buf: Vec<f64> = Vec::with_capacity(vpp);
                for v in chunk {
                    match v {
                        Some(x) => buf.push(*x),
                        None if self.consolidation == Consolidation::AvgZero => buf.push(0.0),
                        None => {}
                    }
                }
                let non_null = chunk.iter().filter(|v| v.is_some()).count();
                (non_null > 0 && non_null as f64 / vpp as f64 >= self.x_files_factor)
                    .then(|| self.consolidation.apply(&buf))
            })
            .collect()
    }

    /// The step readers see.
    pub fn effective_step(&self) -> i64 {
        self.step * self.values_per_point.max(1) as i64
    }

    /// Applies the pending consolidation for good.
    pub fn consolidated(mut self) -> Self {
        if self.values_per_point > 1 {
            self.values = self.values();
            self.step = self.effective_step();
            self.values_per_point = 1;
        }
        self
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Greatest common divisor, for least common multiples of steps.
fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

pub(crate) fn lcm(a: i64, b: i64) -> i64 {
    if a == 0 || b == 0 {
        return a.max(b);
    }
    (a / gcd(a, b)) * b
}

/// graphite's `normalize`: every series consolidated to the lcm of the steps; returns the common
/// start, end and step. Rows are then read by position.
pub(crate) fn normalize(series: &mut [TimeSeries]) -> Option<(i64, i64, i64)> {
    let step = series.iter().map(|s| s.step).reduce(lcm)?;
    for s in series.iter_mut() {
        s.values_per_point = (step / s.step).max(1) as usize;
    }
    let start = series.iter().map(|s| s.start).min()?;
    let mut end = series.iter().map(|s| s.end).max()?;
    end -= (end - start) % step;
    Some((start, end, step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consolidation_with_nulls_and_xff() {
        let mut s = TimeSeries::new(
            "a",
            0,
            10,
            vec![Some(1.0), None, Some(3.0), Some(5.0), None],
        );
        s.values_per_point = 2;
        assert_eq!(s.values(), [Some(1.0), Some(4.0), None]);
        s.consolidation = Consolidation::Sum;
        assert_eq!(s.values(), [Some(1.0), Some(8.0), None]);
        s.consolidation = Consolidation::AvgZero;
        assert_eq!(s.values(), [Some(0.5), Some(4.0), None]);
        s.consolidation = Consolidation::Average;
        s.x_files_factor = 0.6;
        assert_eq!(s.values(), [None, Some(4.0), None]);
    }

    #[test]
    fn tags_like_graphite() {
        assert_eq!(
            tags_of("a.b.c"),
            BTreeMap::from([("name".into(), "a.b.c".into())])
        );
        assert_eq!(
            tags_of("req;host=w1").get("host").map(String::as_str),
            Some("w1")
        );
        assert_eq!(
            tags_of("req;host=w1").get("name").map(String::as_str),
            Some("req")
        );
        assert_eq!(tags_of("sumSeries(a;b=c)").len(), 1);
    }

    #[test]
    fn normalize_to_lcm() {
        let mut v = vec![
            TimeSeries::new("a", 0, 10, vec![Some(1.0); 6]),
            TimeSeries::new("b", 0, 15, vec![Some(2.0); 4]),
        ];
        assert_eq!(normalize(&mut v), Some((0, 60, 30)));
        assert_eq!(v[0].values_per_point, 3);
        assert_eq!(v[1].values_per_point, 2);
    }
}
