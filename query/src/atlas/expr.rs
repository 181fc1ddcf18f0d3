//! Atlas expressions (`model/DataExpr.scala`, `MathExpr.scala`, `StatefulExpr.scala`,
//! `FilterExpr.scala`) and their evaluation into lines on one time grid.
//!
//! Values are `f64` with NaN for missing, as Atlas has them. The grid is `start` (inclusive)
//! to `end` (exclusive) at `step` seconds; a value at `t` covers `[t, t + step)`, as a stored
//! point does. Stateful words start from empty state at the grid's start (no look-back before
//! `s`), as Atlas's graph API does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono_tz::Tz;

use super::query::{Query, Tags};
use super::time::{parse_date, Refs};
use crate::error::{QueryError, Result};

/// How steps coarser than the stored one are consolidated (`:cf-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    Avg,
    Sum,
    Min,
    Max,
}

impl Cf {
    pub fn name(self) -> &'static str {
        match self {
            Cf::Avg => "avg",
            Cf::Sum => "sum",
            Cf::Min => "min",
            Cf::Max => "max",
        }
    }
}

/// An aggregate across series (`:sum :count :min :max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Af {
    Sum,
    Count,
    Min,
    Max,
}

impl Af {
    pub fn name(self) -> &'static str {
        match self {
            Af::Sum => "sum",
            Af::Count => "count",
            Af::Min => "min",
            Af::Max => "max",
        }
    }

    /// The consolidation an aggregate uses unless told (`:sum` and `:count` average).
    fn default_cf(self) -> Cf {
        match self {
            Af::Sum | Af::Count => Cf::Avg,
            Af::Min => Cf::Min,
            Af::Max => Cf::Max,
        }
    }
}

/// What a data expression does with the series its query matches.
#[derive(Debug, Clone, PartialEq)]
pub enum DataKind {
    /// One line: the aggregate of every match.
    Aggregate(Af),
    /// One line per distinct value of the keys (series lacking a key are left out).
    GroupBy(Af, Vec<String>),
    /// Every match as its own line (`:all`).
    All,
}

/// A query over stored data (`DataExpr`).
#[derive(Debug, Clone, PartialEq)]
pub struct DataExpr {
    pub kind: DataKind,
    pub query: Query,
    /// `:cf-*`; `None` is the aggregate's default.
    pub cf: Option<Cf>,
    /// `:offset`, in seconds: the data from this long before.
    pub offset: i64,
}

impl DataExpr {
    pub fn aggregate(af: Af, query: Query) -> DataExpr {
        DataExpr {
            kind: DataKind::Aggregate(af),
            query,
            cf: None,
            offset: 0,
        }
    }

    pub fn cf(&self) -> Cf {
        self.cf.unwrap_or(match &self.kind {
            DataKind::Aggregate(af) | DataKind::GroupBy(af, _) => af.default_cf(),
            DataKind::All => Cf::Sum,
        })
    }

    /// The key the fetched data is kept under: the query and the offset (the same data serves
    /// every expression that names it).
    pub fn fetch_key(&self) -> String {
        format!("{}@{}", self.query, self.offset)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    FAdd,
    FSub,
    FMul,
    FDiv,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
}

impl BinOp {
    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "add",
            BinOp::Sub => "sub",
            BinOp::Mul => "mul",
            BinOp::Div => "div",
            BinOp::Pow => "pow",
            BinOp::FAdd => "fadd",
            BinOp::FSub => "fsub",
            BinOp::FMul => "fmul",
            BinOp::FDiv => "fdiv",
            BinOp::Gt => "gt",
            BinOp::Ge => "ge",
            BinOp::Lt => "lt",
            BinOp::Le => "le",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }

    /// Atlas's arithmetic: `:add`/`:sub` treat NaN as missing, the rest are strict; `:div`
    /// by 0 is 0 when the numerator is 0 too (no activity), else NaN; comparisons are 1 or 0,
    /// NaN comparing false.
    pub fn apply(self, a: f64, b: f64) -> f64 {
        let truth = |x: bool| if x { 1.0 } else { 0.0 };
        let boolean = to_boolean;
        match self {
            BinOp::Add => add_nan(a, b),
            BinOp::Sub => {
                if a.is_nan() && b.is_nan() {
                    f64::NAN
                } else {
                    (if a.is_nan() { 0.0 } else { a }) - (if b.is_nan() { 0.0 } else { b })
                }
            }
            BinOp::Mul | BinOp::FMul => a * b,
            BinOp::Div => {
                if b == 0.0 {
                    if a == 0.0 {
                        0.0
                    } else {
                        f64::NAN
                    }
                } else {
                    a / b
                }
            }
            BinOp::Pow => a.powf(b),
            BinOp::FAdd => a + b,
            BinOp::FSub => a - b,
            BinOp::FDiv => a / b,
            BinOp::Gt => truth(a > b),
            BinOp::Ge => truth(a >= b),
            BinOp::Lt => truth(a < b),
            BinOp::Le => truth(a <= b),
            BinOp::And => truth(boolean(a) && boolean(b)),
            BinOp::Or => truth(boolean(a) || boolean(b)),
        }
    }
}

/// `Math.addNaN`: NaN is missing unless both are.
pub fn add_nan(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => f64::NAN,
        (true, false) => b,
        (false, true) => a,
        (false, false) => a + b,
    }
}

/// `Math.minNaN`: NaN is missing unless both are.
fn min_nan(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, _) => b,
        (_, true) => a,
        _ => {
            if a < b {
                a
            } else {
                b
            }
        }
    }
}

/// `Math.maxNaN`: NaN is missing unless both are.
fn max_nan(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, _) => b,
        (_, true) => a,
        _ => {
            if a > b {
                a
            } else {
                b
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnOp {
    Abs,
    Neg,
    Sqrt,
    Sin,
    PerStep,
    ClampMin(f64),
    ClampMax(f64),
}

/// The online algorithms of `StatefulVocabulary`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stateful {
    RollingCount(usize),
    RollingMin(usize),
    RollingMax(usize),
    RollingMean(usize, usize),
    RollingSum(usize),
    Delay(usize),
    Integral,
    Derivative,
    CumulativeMax,
    /// Window in seconds.
    Trend(i64),
    Des {
        training: usize,
        alpha: f64,
        beta: f64,
    },
    Sdes {
        training: usize,
        alpha: f64,
        beta: f64,
    },
}

impl Stateful {
    pub fn name(self) -> &'static str {
        match self {
            Stateful::RollingCount(_) => "rolling-count",
            Stateful::RollingMin(_) => "rolling-min",
            Stateful::RollingMax(_) => "rolling-max",
            Stateful::RollingMean(..) => "rolling-mean",
            Stateful::RollingSum(_) => "rolling-sum",
            Stateful::Delay(_) => "delay",
            Stateful::Integral => "integral",
            Stateful::Derivative => "derivative",
            Stateful::CumulativeMax => "cumulative-max",
            Stateful::Trend(_) => "trend",
            Stateful::Des { .. } => "des",
            Stateful::Sdes { .. } => "sdes",
        }
    }
}

/// A summary statistic of a line over the window (`SummaryStats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Avg,
    Max,
    Min,
    Last,
    Total,
    Count,
}

impl Stat {
    pub fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "avg" => Stat::Avg,
            "max" => Stat::Max,
            "min" => Stat::Min,
            "last" => Stat::Last,
            "total" => Stat::Total,
            "count" => Stat::Count,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Stat::Avg => "avg",
            Stat::Max => "max",
            Stat::Min => "min",
            Stat::Last => "last",
            Stat::Total => "total",
            Stat::Count => "count",
        }
    }

    pub fn of(self, values: &[f64]) -> f64 {
        let s = Summary::of(values);
        match self {
            Stat::Avg => s.avg(),
            Stat::Max => s.max,
            Stat::Min => s.min,
            Stat::Last => s.last,
            Stat::Total => s.total,
            Stat::Count => s.count as f64,
        }
    }
}

/// Count, total, min, max and last of the non-NaN values; NaN where there are none.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub total: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let mut s = Summary {
            count: 0,
            total: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
            last: f64::NAN,
        };
        for &v in values.iter().filter(|v| !v.is_nan()) {
            s.count += 1;
            s.total = add_nan(s.total, v);
            s.min = min_nan(s.min, v);
            s.max = max_nan(s.max, v);
            s.last = v;
        }
        s
    }

    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.total / self.count as f64
        }
    }
}

/// Which lines `:topk` / `:bottomk` keep, and how the rest become one `--others--` line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priority {
    pub top: bool,
    pub stat: Stat,
    pub k: usize,
    pub others: Option<OthersAf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OthersAf {
    Min,
    Max,
    Sum,
    Avg,
}

/// A time series expression (`TimeSeriesExpr`).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Data(DataExpr),
    Const(f64),
    /// `:time`: a calendar field or time since the epoch, per step.
    Time(String),
    /// `:random` (`None`) and `seed,:srandom`: noise from a hash of each step's timestamp.
    Random(Option<i32>),
    /// `s,e,:time-span`: 1 within the span, 0 outside it.
    TimeSpan(Box<TimeSpan>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Unary(UnOp, Box<Expr>),
    /// `:sum :count :min :max` over a result: one line.
    Aggr(Af, Box<Expr>),
    /// The same by keys of an already grouped result (math `:by`).
    GroupBy(Af, Box<Expr>, Vec<String>),
    /// `:as`: rename a tag key.
    As(Box<Expr>, String, String),
    Stateful(Stateful, Box<Expr>),
    /// `:stat`: each line replaced by its statistic, as a constant line.
    Stat(Box<Expr>, Stat),
    /// `:stat-avg` …: the statistic of the line a `:filter` is checking.
    StatPlaceholder(Stat),
    /// `:filter`: the lines of the first for which the second is ever non-zero.
    Filter(Box<Expr>, Box<Expr>),
    Priority(Box<Expr>, Priority),
    /// `:consolidate` to a coarser step, in seconds.
    Consolidate(Box<Expr>, Cf, i64),
    /// A macro's result under its name (`:avg`, `:stddev`, `:pct`), for display.
    Named(String, Box<Expr>),
    /// `:percentiles`: the percentiles of Spectator percentile buckets (`percentile=T0042`)
    /// summed across every matching series, per group of the data expression's other keys.
    /// The data expression groups by `percentile` (first) and those keys.
    Percentiles(DataExpr, Vec<f64>),
}

impl Expr {
    /// Every data expression it reads.
    pub fn data_exprs<'e>(&'e self, out: &mut Vec<&'e DataExpr>) {
        match self {
            Expr::Data(d) => out.push(d),
            Expr::Const(_)
            | Expr::Time(_)
            | Expr::Random(_)
            | Expr::TimeSpan(_)
            | Expr::StatPlaceholder(_) => {}
            Expr::Binary(_, a, b) | Expr::Filter(a, b) => {
                a.data_exprs(out);
                b.data_exprs(out);
            }
            Expr::Unary(_, e)
            | Expr::Aggr(_, e)
            | Expr::GroupBy(_, e, _)
            | Expr::As(e, ..)
            | Expr::Stateful(_, e)
            | Expr::Stat(e, _)
            | Expr::Priority(e, _)
            | Expr::Consolidate(e, ..)
            | Expr::Named(_, e) => e.data_exprs(out),
            Expr::Percentiles(d, _) => out.push(d),
        }
    }

    /// The keys its lines are grouped by (`finalGrouping`), empty when not grouped.
    pub fn grouping(&self) -> Vec<String> {
        match self {
            Expr::Data(DataExpr {
                kind: DataKind::GroupBy(_, keys),
                ..
            })
            | Expr::GroupBy(_, _, keys) => keys.clone(),
            Expr::Data(_)
            | Expr::Const(_)
            | Expr::Time(_)
            | Expr::Random(_)
            | Expr::TimeSpan(_)
            | Expr::StatPlaceholder(_) => Vec::new(),
            Expr::Aggr(..) => Vec::new(),
            Expr::Percentiles(d, _) => match &d.kind {
                DataKind::GroupBy(_, keys) => keys
                    .iter()
                    .filter(|k| *k != "percentile")
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            },
            Expr::Binary(_, a, b) => {
                let (ga, gb) = (a.grouping(), b.grouping());
                let sa: BTreeSet<&String> = ga.iter().collect();
                if gb.iter().all(|k| sa.contains(k)) {
                    ga
                } else {
                    gb
                }
            }
            Expr::Filter(e, _) => e.grouping(),
            Expr::Unary(_, e)
            | Expr::As(e, ..)
            | Expr::Stateful(_, e)
            | Expr::Stat(e, _)
            | Expr::Priority(e, _)
            | Expr::Consolidate(e, ..)
            | Expr::Named(_, e) => e.grouping(),
        }
    }

    pub fn is_grouped(&self) -> bool {
        match self {
            Expr::Data(DataExpr {
                kind: DataKind::GroupBy(..),
                ..
            })
            | Expr::GroupBy(..) => true,
            Expr::Percentiles(..) => !self.grouping().is_empty(),
            Expr::Binary(_, a, b) => a.is_grouped() || b.is_grouped(),
            Expr::Filter(e, _) => e.is_grouped(),
            Expr::Unary(_, e)
            | Expr::As(e, ..)
            | Expr::Stateful(_, e)
            | Expr::Stat(e, _)
            | Expr::Priority(e, _)
            | Expr::Consolidate(e, ..)
            | Expr::Named(_, e) => e.is_grouped(),
            _ => false,
        }
    }

    /// The placeholders of a `:filter`'s condition bound to the line being checked.
    pub fn bind_stats(self, line: &Expr) -> Expr {
        let bind = |e: Box<Expr>| Box::new(e.bind_stats(line));
        match self {
            Expr::StatPlaceholder(s) => Expr::Stat(Box::new(line.clone()), s),
            Expr::Binary(op, a, b) => Expr::Binary(op, bind(a), bind(b)),
            Expr::Filter(a, b) => Expr::Filter(bind(a), bind(b)),
            Expr::Unary(op, e) => Expr::Unary(op, bind(e)),
            Expr::Aggr(af, e) => Expr::Aggr(af, bind(e)),
            Expr::GroupBy(af, e, k) => Expr::GroupBy(af, bind(e), k),
            Expr::As(e, a, b) => Expr::As(bind(e), a, b),
            Expr::Stateful(s, e) => Expr::Stateful(s, bind(e)),
            Expr::Stat(e, s) => Expr::Stat(bind(e), s),
            Expr::Priority(e, p) => Expr::Priority(bind(e), p),
            Expr::Consolidate(e, cf, s) => Expr::Consolidate(bind(e), cf, s),
            Expr::Named(n, e) => Expr::Named(n, bind(e)),
            e => e,
        }
    }
}

/// Java's `Double.toString` for the numbers Atlas names constants with (`42.0`, `0.5`).
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if v == v.trunc() && v.abs() < 1e7 {
        format!("{v:.1}")
    } else if (1e-3..1e7).contains(&v.abs()) {
        format!("{v}")
    } else {
        let s = format!("{v:E}");
        // Rust writes `1E-5` / `1.5E10`; Java `1.0E-5` / `1.5E10`.
        match s.split_once('E') {
            Some((m, e)) if !m.contains('.') => format!("{m}.0E{e}"),
            _ => s,
        }
    }
}

/// One output line: its tags, its label and its values on the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub tags: Tags,
    pub label: String,
    pub values: Vec<f64>,
}

/// `k1=v1, k2=v2` (`TimeSeries.toLabel`).
pub fn to_label(tags: &Tags) -> String {
    if tags.is_empty() {
        return "NO TAGS".into();
    }
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(k1=v1 k2=v2)`, or `None` when a key is missing (`DataExpr.keyString`).
pub fn key_string(keys: &[String], tags: &Tags) -> Option<String> {
    let mut parts = Vec::with_capacity(keys.len());
    for k in keys {
        parts.push(format!("{k}={}", tags.get(k)?));
    }
    Some(format!("({})", parts.join(" ")))
}

/// A stored series as fetched: its tags, and its values from `start` every `step` seconds.
#[derive(Debug, Clone)]
pub struct Raw {
    pub tags: Tags,
    pub start: i64,
    pub step: i64,
    pub values: Vec<f64>,
}

/// The grid every line is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Inclusive, a multiple of `step`.
    pub start: i64,
    /// Exclusive.
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn len(&self) -> usize {
        ((self.end - self.start) / self.step).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(move |i| self.start + i as i64 * self.step)
    }

    fn nan(&self) -> Vec<f64> {
        vec![f64::NAN; self.len()]
    }
}

/// Consolidates `raw` (shifted forward by `offset` seconds) onto `grid` with `cf`.
fn consolidate(raw: &Raw, offset: i64, grid: &Grid, cf: Cf) -> Vec<f64> {
    let mut out = grid.nan();
    let mut counts = vec![0usize; out.len()];
    for (i, &v) in raw.values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        let t = raw.start + i as i64 * raw.step + offset;
        if t < grid.start || t >= grid.end {
            continue;
        }
        let slot = ((t - grid.start) / grid.step) as usize;
        // A grid whose end is not on its step has no slot for the last partial step.
        let Some(o) = out.get_mut(slot) else {
            continue;
        };
        counts[slot] += 1;
        *o = match cf {
            Cf::Avg | Cf::Sum => add_nan(*o, v),
            Cf::Min => min_nan(*o, v),
            Cf::Max => max_nan(*o, v),
        };
    }
    if cf == Cf::Avg {
        // The average over the stored points of the step that have a value, as Atlas's
        // consolidation does.
        for (o, n) in out.iter_mut().zip(counts) {
            if n > 0 {
                *o /= n as f64;
            }
        }
    }
    out
}

/// Aggregates lines point by point with `af` (`:count` counts the non-NaN values).
fn aggregate<'a>(af: Af, len: usize, lines: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let mut out = vec![f64::NAN; len];
    for values in lines {
        for (o, &v) in out.iter_mut().zip(values) {
            *o = match af {
                Af::Sum => add_nan(*o, v),
                Af::Min => min_nan(*o, v),
                Af::Max => max_nan(*o, v),
                Af::Count => {
                    if v.is_nan() {
                        *o
                    } else {
                        add_nan(*o, 1.0)
                    }
                }
            };
        }
    }
    out
}

/// Aggregates matching raw series the way Atlas's database does: point by point at the stored
/// step when they share one, then consolidated to the grid with `cf`; series of different
/// steps are consolidated first.
fn aggregate_raw(af: Af, cf: Cf, offset: i64, series: &[&Raw], grid: &Grid) -> Vec<f64> {
    let Some(first) = series.first() else {
        return grid.nan();
    };
    let same = series.iter().all(|r| {
        r.step == first.step && r.start == first.start && r.values.len() == first.values.len()
    });
    // At the grid's own step too: each stored value is then one slot, and aggregating first
    // saves consolidating every series on its own.
    if same && first.step <= grid.step {
        let values = aggregate(
            af,
            first.values.len(),
            series.iter().map(|r| r.values.as_slice()),
        );
        let merged = Raw {
            tags: Tags::new(),
            start: first.start,
            step: first.step,
            values,
        };
        return consolidate(&merged, offset, grid, cf);
    }
    let lines: Vec<Vec<f64>> = series
        .iter()
        .map(|r| consolidate(r, offset, grid, cf))
        .collect();
    aggregate(af, grid.len(), lines.iter().map(Vec::as_slice))
}

/// What evaluation reads: the matching raw series of each data expression (by
/// [`DataExpr::fetch_key`]), and the grid.
pub struct Env<'a> {
    pub data: &'a HashMap<String, Vec<Raw>>,
    pub grid: Grid,
    /// Checked between steps of a long evaluation (the request's time limit).
    pub check: &'a dyn Fn() -> Result<()>,
    /// The clock, in milliseconds, for a `:time-span` that names `now`.
    pub now: i64,
}

impl Env<'_> {
    pub fn eval(&self, e: &Expr) -> Result<Vec<Line>> {
        (self.check)()?;
        let g = &self.grid;
        Ok(match e {
            Expr::Data(d) => self.eval_data(d),
            Expr::Const(v) => vec![Line {
                tags: Tags::from([("name".to_string(), java_double(*v))]),
                label: java_double(*v),
                values: vec![*v; g.len()],
            }],
            Expr::Time(mode) => {
                let values = g.times().map(|t| time_value(mode, t)).collect();
                vec![Line {
                    tags: Tags::from([("name".to_string(), mode.clone())]),
                    label: mode.clone(),
                    values,
                }]
            }
            Expr::Random(seed) => {
                let label = match seed {
                    None => "random".to_string(),
                    Some(seed) => format!("seeded-random({seed})"),
                };
                let values = g
                    .times()
                    .map(|t| {
                        let ms = t * 1000;
                        random_value(seed.map_or(ms, |seed| ms ^ i64::from(seed)))
                    })
                    .collect();
                vec![Line {
                    tags: Tags::from([("name".to_string(), label.clone())]),
                    label,
                    values,
                }]
            }
            Expr::TimeSpan(span) => {
                // Atlas's evaluation context runs from a step before the first value drawn
                // (`GraphConfig.evalContext`): `gs` is that, `ge` the grid's end.
                let (from, to) = span
                    .resolve((g.start - g.step) * 1000, g.end * 1000, self.now)
                    .map_err(bad)?;
                let values = g
                    .times()
                    .map(|t| {
                        let ms = t * 1000;
                        if from <= ms && ms <= to {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let label = format!("{} to {}", span.s, span.e);
                vec![Line {
                    tags: Tags::from([("name".to_string(), label.clone())]),
                    label,
                    values,
                }]
            }
            Expr::Binary(op, a, b) => self.eval_binary(*op, a, b)?,
            Expr::Unary(op, e) => {
                let mut lines = self.eval(e)?;
                for l in &mut lines {
                    for v in &mut l.values {
                        *v = match op {
                            UnOp::Abs => v.abs(),
                            UnOp::Neg => -*v,
                            UnOp::Sqrt => v.sqrt(),
                            UnOp::Sin => v.sin(),
                            UnOp::PerStep => *v * g.step as f64,
                            UnOp::ClampMin(m) => {
                                if *v < *m {
                                    *m
                                } else {
                                    *v
                                }
                            }
                            UnOp::ClampMax(m) => {
                                if *v > *m {
                                    *m
                                } else {
                                    *v
                                }
                            }
                        };
                    }
                    l.label = to_label(&l.tags);
                }
                lines
            }
            Expr::Aggr(af, inner) => {
                let lines = self.eval(inner)?;
                if lines.is_empty() {
                    return Ok(vec![no_data(g, Tags::new())]);
                }
                let keys = common_exact_keys(inner);
                let tags: Tags = lines[0]
                    .tags
                    .iter()
                    .filter(|(k, _)| keys.as_ref().is_none_or(|ks| ks.contains(*k)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let values = aggregate(*af, g.len(), lines.iter().map(|l| l.values.as_slice()));
                vec![Line {
                    label: format!("{}({})", af.name(), to_label(&tags)),
                    tags,
                    values,
                }]
            }
            Expr::GroupBy(af, inner, keys) => {
                let before = inner.grouping();
                if !inner.is_grouped() {
                    return Err(bad(":by: the input must already be grouped by a data :by"));
                }
                if let Some(k) = keys.iter().find(|k| !before.contains(k)) {
                    return Err(bad(format!(
                        ":by: (,{},) is not a subset of (,{},) (the key \"{k}\")",
                        keys.join(","),
                        before.join(",")
                    )));
                }
                let lines = self.eval(inner)?;
                let mut query_keys = common_exact_keys(inner).unwrap_or_default();
                query_keys.extend(keys.iter().cloned());
                let mut groups: BTreeMap<String, Vec<&Line>> = BTreeMap::new();
                for l in &lines {
                    if let Some(k) = key_string(keys, &l.tags) {
                        groups.entry(k).or_default().push(l);
                    }
                }
                groups
                    .into_iter()
                    .map(|(k, ls)| Line {
                        tags: ls[0]
                            .tags
                            .iter()
                            .filter(|(key, _)| query_keys.contains(*key))
                            .map(|(a, b)| (a.clone(), b.clone()))
                            .collect(),
                        label: k,
                        values: aggregate(*af, g.len(), ls.iter().map(|l| l.values.as_slice())),
                    })
                    .collect()
            }
            Expr::As(inner, from, to) => {
                let mut lines = self.eval(inner)?;
                for l in &mut lines {
                    if let Some(v) = l.tags.remove(from) {
                        l.tags.insert(to.clone(), v);
                    }
                    l.label = to_label(&l.tags);
                }
                lines
            }
            Expr::Stateful(s, inner) => {
                if let Stateful::Trend(window) = s {
                    // `RollingBuffer` refuses a window over `MaxWindowSize`.
                    let n = trend_period(*window, g.step);
                    if n > MAX_WINDOW_SIZE as i64 {
                        return Err(bad(format!(
                            ":trend: window size must be between 1 and {MAX_WINDOW_SIZE}: {n}"
                        )));
                    }
                }
                let mut lines = self.eval(inner)?;
                for l in &mut lines {
                    l.values = run_stateful(*s, &l.values, g.start, g.step);
                }
                lines
            }
            Expr::Stat(inner, stat) => {
                let mut lines = self.eval(inner)?;
                for l in &mut lines {
                    let v = stat.of(&l.values);
                    l.values = vec![v; g.len()];
                    l.label = format!("stat-{}({})", stat.name(), l.label);
                }
                lines
            }
            Expr::StatPlaceholder(s) => {
                return Err(bad(format!(
                    ":stat-{} is only meaningful in the condition of a :filter",
                    s.name()
                )))
            }
            Expr::Filter(lines_expr, cond) => self.eval_filter(lines_expr, cond)?,
            Expr::Priority(inner, p) => self.eval_priority(inner, p)?,
            Expr::Consolidate(inner, cf, step) => {
                let lines = self.eval(inner)?;
                let step = if *step <= g.step || step % g.step == 0 {
                    (*step).max(g.step)
                } else {
                    g.step * (step / g.step + 1)
                };
                lines
                    .into_iter()
                    .map(|l| {
                        let raw = Raw {
                            tags: Tags::new(),
                            start: g.start,
                            step: g.step,
                            values: l.values,
                        };
                        // Each value is the consolidation of the coarser step it falls in.
                        let coarse = Grid {
                            start: g.start - g.start.rem_euclid(step),
                            end: g.end,
                            step,
                        };
                        let c = consolidate(&raw, 0, &coarse, *cf);
                        let values = g
                            .times()
                            .map(|t| {
                                c.get(((t - coarse.start) / step) as usize)
                                    .copied()
                                    .unwrap_or(f64::NAN)
                            })
                            .collect();
                        Line { values, ..l }
                    })
                    .collect()
            }
            Expr::Named(_, inner) => self.eval(inner)?,
            Expr::Percentiles(d, pcts) => self.eval_percentiles(d, pcts),
        })
    }

    fn eval_percentiles(&self, d: &DataExpr, pcts: &[f64]) -> Vec<Line> {
        let g = &self.grid;
        let keys: Vec<String> = match &d.kind {
            DataKind::GroupBy(_, k) => k.iter().filter(|k| *k != "percentile").cloned().collect(),
            _ => Vec::new(),
        };
        let lines = self.eval_data(d);
        // The other keys' groups, each with its buckets by index.
        let mut groups: BTreeMap<Option<String>, Vec<(usize, bool, &Line)>> = BTreeMap::new();
        for l in &lines {
            let Some(p) = l.tags.get("percentile") else {
                continue;
            };
            let Some((timer, idx)) = bucket_of(p) else {
                continue;
            };
            let key = if keys.is_empty() {
                None
            } else {
                match key_string(&keys, &l.tags) {
                    Some(k) => Some(k),
                    None => continue,
                }
            };
            groups.entry(key).or_default().push((idx, timer, l));
        }
        if groups.is_empty() {
            return vec![no_data(g, Tags::new())];
        }
        let mut pcts = pcts.to_vec();
        pcts.sort_by(f64::total_cmp);
        pcts.dedup();
        let mut out = Vec::new();
        for (key, buckets) in groups {
            let timer = buckets[0].1;
            let factor = if timer { 1e-9 } else { 1.0 };
            let mut series = vec![vec![f64::NAN; g.len()]; pcts.len()];
            let mut counts = vec![0.0; super::percentiles::LENGTH];
            #[allow(clippy::needless_range_loop)]
            for i in 0..g.len() {
                counts.iter_mut().for_each(|c| *c = 0.0);
                for (idx, _, l) in &buckets {
                    let v = l.values.get(i).copied().unwrap_or(f64::NAN);
                    counts[*idx] += if v.is_finite() { v } else { 0.0 };
                }
                for (j, r) in super::percentiles::estimate(&counts, &pcts)
                    .into_iter()
                    .enumerate()
                {
                    series[j][i] = r * factor;
                }
            }
            let mut tags = buckets[0].2.tags.clone();
            let base = match &key {
                Some(k) => k.clone(),
                None => d.query.label(),
            };
            for (j, values) in series.into_iter().enumerate() {
                let p = pcts[j];
                let ps = if p < 10.0 {
                    format!("  {}", java_double(p))
                } else if p < 100.0 {
                    format!(" {}", java_double(p))
                } else {
                    java_double(p)
                };
                tags.insert("percentile".into(), ps.clone());
                out.push(Line {
                    tags: tags.clone(),
                    label: format!("percentile({base}, {ps})"),
                    values,
                });
            }
        }
        out
    }

    fn eval_data(&self, d: &DataExpr) -> Vec<Line> {
        let g = &self.grid;
        let empty = Vec::new();
        let matched: Vec<&Raw> = self
            .data
            .get(&d.fetch_key())
            .unwrap_or(&empty)
            .iter()
            .filter(|r| d.query.matches(&r.tags))
            .collect();
        let offset_label = |label: String| {
            if d.offset == 0 {
                label
            } else {
                format!("{label} (offset={})", duration_string(d.offset))
            }
        };
        let exact = d.query.exact_keys();
        let common = |tags: &Tags| -> Tags {
            let t: Tags = tags
                .iter()
                .filter(|(k, _)| exact.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if t.is_empty() {
                Tags::from([("name".to_string(), "unknown".to_string())])
            } else {
                t
            }
        };
        match &d.kind {
            DataKind::Aggregate(af) => {
                if matched.is_empty() {
                    return vec![no_data(g, d.query.eq_tags())];
                }
                let tags = common(&matched[0].tags);
                vec![Line {
                    label: offset_label(to_label(&tags)),
                    tags,
                    values: aggregate_raw(*af, d.cf(), d.offset, &matched, g),
                }]
            }
            DataKind::GroupBy(af, keys) => {
                let mut groups: BTreeMap<String, Vec<&Raw>> = BTreeMap::new();
                for r in &matched {
                    if let Some(k) = key_string(keys, &r.tags) {
                        groups.entry(k).or_default().push(r);
                    }
                }
                groups
                    .into_iter()
                    .map(|(k, rs)| Line {
                        tags: rs[0]
                            .tags
                            .iter()
                            .filter(|(key, _)| exact.contains(*key) || keys.contains(key))
                            .map(|(a, b)| (a.clone(), b.clone()))
                            .collect(),
                        label: offset_label(k),
                        values: aggregate_raw(*af, d.cf(), d.offset, &rs, g),
                    })
                    .collect()
            }
            DataKind::All => {
                let mut lines: Vec<Line> = matched
                    .iter()
                    .map(|r| Line {
                        tags: r.tags.clone(),
                        label: offset_label(to_label(&r.tags)),
                        values: consolidate(r, d.offset, g, d.cf()),
                    })
                    .collect();
                lines.sort_by(|a, b| a.label.cmp(&b.label));
                lines
            }
        }
    }

    /// A binary operation: a single line meets every line of the other side; grouped sides
    /// join on their group keys (one side's keys a subset of the other's), as Atlas does.
    fn eval_binary(&self, op: BinOp, a: &Expr, b: &Expr) -> Result<Vec<Line>> {
        let (ga, gb) = (a.grouping(), b.grouping());
        if a.is_grouped() && b.is_grouped() {
            let sa: BTreeSet<&String> = ga.iter().collect();
            let sb: BTreeSet<&String> = gb.iter().collect();
            if !sa.is_subset(&sb) && !sb.is_subset(&sa) {
                return Err(bad(format!(
                    ":{}: both sides of binary operation must have the same grouping or one side must be a subset of the other [(,{},) ⊈ (,{},)]",
                    op.name(),
                    ga.join(","),
                    gb.join(",")
                )));
            }
        }
        let la = self.eval(a)?;
        let lb = self.eval(b)?;
        let combine = |x: &Line, y: &Line, tags: Tags| -> Line {
            let values = x
                .values
                .iter()
                .zip(&y.values)
                .map(|(&p, &q)| op.apply(p, q))
                .collect();
            Line {
                label: to_label(&tags),
                tags,
                values,
            }
        };
        let key = |keys: &[String], l: &Line| {
            if keys.is_empty() {
                Some(String::new())
            } else {
                key_string(keys, &l.tags)
            }
        };
        let b_subset_of_a = gb.iter().all(|k| ga.contains(k));
        // The side grouped by more keys probes the other by the other's keys; a result keeps
        // the probing line's tags, and the left side stays the left operand.
        let (probe, indexed, keys, probe_is_left) = if b_subset_of_a {
            (&la, &lb, &gb, true)
        } else {
            (&lb, &la, &ga, false)
        };
        let mut index: HashMap<Option<String>, Vec<&Line>> = HashMap::new();
        for l in indexed {
            index.entry(key(keys, l)).or_default().push(l);
        }
        let mut out = Vec::new();
        for p in probe {
            match index.get(&key(keys, p)).map(Vec::as_slice) {
                None | Some([]) => {}
                Some([o]) => {
                    let (x, y) = if probe_is_left { (p, *o) } else { (*o, p) };
                    out.push(combine(x, y, p.tags.clone()));
                }
                Some(_) => {
                    return Err(bad(format!(
                        ":{}: too many values for key {}",
                        op.name(),
                        key(keys, p).unwrap_or_default()
                    )))
                }
            }
        }
        Ok(out)
    }

    fn eval_filter(&self, lines_expr: &Expr, cond: &Expr) -> Result<Vec<Line>> {
        let lines = self.eval(lines_expr)?;
        let truthy = |l: &Line| l.values.iter().any(|&v| to_boolean(v));
        if !cond.is_grouped() {
            let c = self.eval(cond)?;
            return match c.as_slice() {
                [one] => Ok(if truthy(one) { lines } else { Vec::new() }),
                _ => Err(bad(":filter: empty result for filter expression")),
            };
        }
        if !lines_expr.is_grouped() {
            return Err(bad(":filter: filter grouping must match expr grouping"));
        }
        let keys = lines_expr.grouping();
        let c = self.eval(cond)?;
        let mut index: HashMap<Option<String>, Vec<&Line>> = HashMap::new();
        for l in &c {
            index.entry(key_string(&keys, &l.tags)).or_default().push(l);
        }
        Ok(lines
            .into_iter()
            .filter(|l| {
                matches!(index.get(&key_string(&keys, &l.tags)).map(Vec::as_slice), Some([one]) if truthy(one))
            })
            .collect())
    }

    fn eval_priority(&self, inner: &Expr, p: &Priority) -> Result<Vec<Line>> {
        if p.k == 0 {
            return Err(bad(format!("k must be positive ({} <= 0)", p.k)));
        }
        let lines = self.eval(inner)?;
        let mut scored: Vec<(f64, Line)> = lines
            .into_iter()
            .map(|l| (p.stat.of(&l.values), l))
            .collect();
        // Java's Double.compare: NaN above everything.
        let cmp = |a: &f64, b: &f64| a.total_cmp(b);
        scored.sort_by(|a, b| {
            let o = if a.0.is_nan() || b.0.is_nan() {
                a.0.is_nan().cmp(&b.0.is_nan())
            } else {
                cmp(&a.0, &b.0)
            };
            if p.top {
                o.reverse()
            } else {
                o
            }
        });
        let rest: Vec<Line> = scored
            .split_off(p.k.min(scored.len()))
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        let mut kept: Vec<Line> = scored.into_iter().map(|(_, l)| l).collect();
        if let (Some(af), false) = (p.others, rest.is_empty()) {
            let g = &self.grid;
            let values = match af {
                OthersAf::Sum => {
                    aggregate(Af::Sum, g.len(), rest.iter().map(|l| l.values.as_slice()))
                }
                OthersAf::Min => {
                    aggregate(Af::Min, g.len(), rest.iter().map(|l| l.values.as_slice()))
                }
                OthersAf::Max => {
                    aggregate(Af::Max, g.len(), rest.iter().map(|l| l.values.as_slice()))
                }
                OthersAf::Avg => {
                    let sum = aggregate(Af::Sum, g.len(), rest.iter().map(|l| l.values.as_slice()));
                    let count =
                        aggregate(Af::Count, g.len(), rest.iter().map(|l| l.values.as_slice()));
                    sum.iter().zip(&count).map(|(s, c)| s / c).collect()
                }
            };
            let mut tags = Tags::new();
            for k in inner.grouping() {
                tags.insert(k, "--others--".into());
            }
            kept.insert(
                0,
                Line {
                    label: to_label(&tags),
                    tags,
                    values,
                },
            );
        }
        Ok(kept)
    }
}

/// A `percentile` tag: `T` (a timer, in nanoseconds) or `D` (a distribution summary), then the
/// bucket index in 4 hex digits.
fn bucket_of(tag: &str) -> Option<(bool, usize)> {
    let timer = match tag.as_bytes().first()? {
        b'T' => true,
        b'D' => false,
        _ => return None,
    };
    let idx = usize::from_str_radix(tag.get(1..)?, 16).ok()?;
    (tag.len() == 5 && idx < super::percentiles::LENGTH).then_some((timer, idx))
}

/// The exact keys every data expression of `e` shares (`AggrMathExpr.filterKeys`), or
/// `None` when `e` reads no data.
fn common_exact_keys(e: &Expr) -> Option<BTreeSet<String>> {
    let mut ds = Vec::new();
    e.data_exprs(&mut ds);
    let first = ds.first()?;
    Some(ds.iter().skip(1).fold(first.query.exact_keys(), |acc, d| {
        acc.intersection(&d.query.exact_keys()).cloned().collect()
    }))
}

fn no_data(g: &Grid, tags: Tags) -> Line {
    let tags = if tags.is_empty() {
        Tags::from([("name".to_string(), "NO_DATA".to_string())])
    } else {
        tags
    };
    Line {
        tags,
        label: "NO DATA".into(),
        values: g.nan(),
    }
}

fn bad(msg: impl Into<String>) -> QueryError {
    QueryError::BadRequest(msg.into())
}

/// `1w`, `3h`, `90s`, as Atlas writes durations in labels.
pub fn duration_string(secs: i64) -> String {
    for (unit, per) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs % per == 0 {
            return format!("{}{unit}", secs / per);
        }
    }
    format!("{secs}s")
}

/// `Hash.lowbias32`: Chris Wellons's integer hash, in Java's wrapping `Int` arithmetic
/// (`>>>` is the unsigned shift).
pub fn lowbias32(v: i32) -> i32 {
    let mut h = v as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7FEB_352D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846C_A68B);
    h ^= h >> 16;
    h as i32
}

/// `Hash.lowbias64`: the hashes of the high and low 32 bits, xored.
pub fn lowbias64(v: i64) -> i32 {
    lowbias32(((v as u64) >> 32) as i32) ^ lowbias32(v as i32)
}

/// `MathExpr.Random.rand`: `(math.abs(Hash.lowbias64(t)) % 1000) / 1000.0` for a timestamp
/// in milliseconds, so a value in thousandths from 0 to 0.999. Java's `Math.abs` leaves
/// `Int.MinValue` negative, so a hash of exactly that is -0.648, as it is in Atlas.
/// `:srandom` hashes `t ^ seed` (the seed widened with its sign).
pub fn random_value(t: i64) -> f64 {
    f64::from(lowbias64(t).wrapping_abs() % 1000) / 1000.0
}

/// `:time-span`'s span (`MathExpr.TimeSpan`): `s` and `e` in the graph API's time grammar,
/// read in `tz`, with the references `gs` and `ge` (the graph's start and end), `now`,
/// `epoch`, and `e` (in the start) or `s` (in the end) for the other end of the span.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSpan {
    pub s: String,
    pub e: String,
    pub tz: Tz,
}

/// The reference a time names, `e` of `e-30m` or `ge` of `ge` (`Strings.extractReferencePointDate`:
/// `^([a-z]+)([-+])([^-+]+)$` or `^([a-z]+)$`).
fn reference_point(t: &str) -> Option<&str> {
    let letters = t.bytes().take_while(u8::is_ascii_lowercase).count();
    let rest = &t[letters..];
    let relative =
        rest.len() > 1 && rest.starts_with(['-', '+']) && !rest[1..].contains(['-', '+']);
    (letters > 0 && (rest.is_empty() || relative)).then(|| &t[..letters])
}

impl TimeSpan {
    /// The checks Atlas makes of the references before reading the times (`parseDates`).
    pub fn check(s: &str, e: &str) -> std::result::Result<(), String> {
        let (sref, eref) = (reference_point(s), reference_point(e));
        if sref == Some("e") && eref == Some("s") {
            return Err("start and end time are relative to each other".into());
        }
        if sref == Some("s") {
            return Err("start time is relative to itself".into());
        }
        if eref == Some("e") {
            return Err("end time is relative to itself".into());
        }
        Ok(())
    }

    /// The span in milliseconds, both ends included, for a graph from `gs` to `ge` read at
    /// `now` (all milliseconds): the end first when the start refers to it, the start first
    /// when the end refers to it (`parseDates`), and the start no later than the end.
    pub fn resolve(&self, gs: i64, ge: i64, now: i64) -> std::result::Result<(i64, i64), String> {
        let fail = |m: String| format!(":time-span: {m}");
        Self::check(&self.s, &self.e).map_err(fail)?;
        let refs = Refs {
            now,
            gs: Some(gs),
            ge: Some(ge),
            ..Refs::default()
        };
        let (start, end) = if reference_point(&self.s) == Some("e") {
            let end = parse_date(&self.e, self.tz, &refs).map_err(fail)?;
            let start = parse_date(
                &self.s,
                self.tz,
                &Refs {
                    e: Some(end),
                    ..refs
                },
            )
            .map_err(fail)?;
            (start, end)
        } else if reference_point(&self.e) == Some("s") {
            let start = parse_date(&self.s, self.tz, &refs).map_err(fail)?;
            let end = parse_date(
                &self.e,
                self.tz,
                &Refs {
                    s: Some(start),
                    ..refs
                },
            )
            .map_err(fail)?;
            (start, end)
        } else {
            let start = parse_date(&self.s, self.tz, &refs).map_err(fail)?;
            let end = parse_date(&self.e, self.tz, &refs).map_err(fail)?;
            (start, end)
        };
        if start > end {
            return Err(fail(format!(
                "start must be <= end (s={}, e={})",
                self.s, self.e
            )));
        }
        Ok((start, end))
    }
}

/// `:time`'s value at `t` (seconds) in UTC.
fn time_value(mode: &str, t: i64) -> f64 {
    use chrono::{Datelike, Timelike};
    let Some(dt) = chrono::DateTime::from_timestamp(t, 0) else {
        return f64::NAN;
    };
    let ms = t as f64 * 1000.0;
    match mode {
        "secondOfMinute" => f64::from(dt.second()),
        "secondOfDay" => f64::from(dt.num_seconds_from_midnight()),
        "minuteOfHour" => f64::from(dt.minute()),
        "minuteOfDay" => f64::from(dt.hour() * 60 + dt.minute()),
        "hourOfDay" => f64::from(dt.hour()),
        "dayOfWeek" => f64::from(dt.weekday().number_from_monday()),
        "dayOfMonth" => f64::from(dt.day()),
        "dayOfYear" => f64::from(dt.ordinal()),
        "monthOfYear" => f64::from(dt.month()),
        "yearOfCentury" | "yearOfEra" => f64::from(dt.year()),
        "seconds" => ms / 1e3,
        "minutes" => ms / 6e4,
        "hours" => ms / 3.6e6,
        "days" => ms / 8.64e7,
        "weeks" => ms / 6.048e8,
        _ => f64::NAN,
    }
}

/// The time modes `:time` takes.
pub const TIME_MODES: &[&str] = &[
    "secondOfMinute",
    "secondOfDay",
    "minuteOfHour",
    "minuteOfDay",
    "hourOfDay",
    "dayOfWeek",
    "dayOfMonth",
    "dayOfYear",
    "monthOfYear",
    "yearOfCentury",
    "yearOfEra",
    "seconds",
    "minutes",
    "hours",
    "days",
    "weeks",
];

/// The largest window a stateful word may keep (`RollingBuffer.MaxWindowSize`: a day at 1s).
pub const MAX_WINDOW_SIZE: usize = 86_400;

/// `Math.toBoolean`: NaN and nearly 0 (below 1e-12) are false, anything else is true.
pub fn to_boolean(v: f64) -> bool {
    !(v.is_nan() || v.abs() < 1e-12)
}

/// `Math.toBooleanDouble`.
fn to_boolean_double(v: f64) -> f64 {
    if to_boolean(v) {
        1.0
    } else {
        0.0
    }
}

/// `RollingBuffer`: the last `n` values, NaN before any arrive.
struct RollingBuffer {
    values: Vec<f64>,
    pos: usize,
    /// Non-NaN values in the buffer.
    size: usize,
}

impl RollingBuffer {
    fn new(n: usize) -> RollingBuffer {
        RollingBuffer {
            values: vec![f64::NAN; n.max(1)],
            pos: 0,
            size: 0,
        }
    }

    /// Adds `v`; returns the value it replaced.
    fn add(&mut self, v: f64) -> f64 {
        let previous = std::mem::replace(&mut self.values[self.pos], v);
        self.pos = (self.pos + 1) % self.values.len();
        if !v.is_nan() {
            self.size += 1;
        }
        if !previous.is_nan() {
            self.size -= 1;
        }
        previous
    }

    fn sum(&self) -> f64 {
        self.values.iter().fold(f64::NAN, |a, &b| add_nan(a, b))
    }

    fn min(&self) -> f64 {
        self.values.iter().fold(f64::NAN, |a, &b| min_nan(a, b))
    }

    fn max(&self) -> f64 {
        self.values.iter().fold(f64::NAN, |a, &b| max_nan(a, b))
    }
}

/// Java's `Math.getExponent`, with 0 (and subnormals) as 0 rather than -1023, as
/// `RollingSumBuffer.getExponent` has it.
fn exponent(v: f64) -> i32 {
    let e = ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    if e == -1023 {
        0
    } else {
        e
    }
}

/// `RollingSumBuffer`: the running sum and count of `:rolling-sum` and `:rolling-mean`,
/// recomputed from the buffer when a step changes the sum's magnitude by 2^15 or more.
struct RollingSumBuffer {
    buf: RollingBuffer,
    sum: f64,
    count: usize,
}

impl RollingSumBuffer {
    fn new(n: usize) -> RollingSumBuffer {
        RollingSumBuffer {
            buf: RollingBuffer::new(n),
            sum: 0.0,
            count: 0,
        }
    }

    fn update(&mut self, v: f64) {
        let removed = self.buf.add(v);
        match (removed.is_nan(), v.is_nan()) {
            (false, false) => self.adjust_sum(-removed + v),
            (false, true) => {
                self.adjust_sum(-removed);
                self.count -= 1;
            }
            (true, false) => {
                self.adjust_sum(v);
                self.count += 1;
            }
            (true, true) => {}
        }
    }

    fn adjust_sum(&mut self, delta: f64) {
        let new_sum = add_nan(self.sum, delta);
        if (exponent(self.sum) - exponent(new_sum)).abs() < 15 {
            self.sum = new_sum;
        } else {
            self.sum = self.buf.sum();
        }
    }
}

/// `OnlineDes`: double exponential smoothing.
struct Des {
    training: usize,
    alpha: f64,
    beta: f64,
    current_sample: usize,
    sp: f64,
    bp: f64,
}

impl Des {
    fn new(training: usize, alpha: f64, beta: f64) -> Des {
        Des {
            training,
            alpha,
            beta,
            current_sample: 0,
            sp: f64::NAN,
            bp: f64::NAN,
        }
    }

    fn next(&mut self, y: f64) -> f64 {
        let out = if self.current_sample >= self.training {
            self.sp
        } else {
            f64::NAN
        };
        if !y.is_nan() {
            if self.current_sample == 0 {
                self.sp = y;
                self.bp = 0.0;
            } else {
                let sn = self.alpha * y + (1.0 - self.alpha) * (self.sp + self.bp);
                let bn = self.beta * (sn - self.sp) + (1.0 - self.beta) * self.bp;
                self.sp = sn;
                self.bp = bn;
            }
            self.current_sample += 1;
        }
        out
    }

    fn reset(&mut self) {
        *self = Des::new(self.training, self.alpha, self.beta);
    }
}

/// One of Atlas's online algorithms (`algorithm/Online*.scala`), from empty state.
enum Online {
    RollingCount {
        buf: RollingBuffer,
        count: f64,
    },
    RollingMin {
        buf: RollingBuffer,
        min: f64,
    },
    RollingMax {
        buf: RollingBuffer,
        max: f64,
    },
    RollingMean {
        buffer: RollingSumBuffer,
        min_values: usize,
    },
    RollingSum(RollingSumBuffer),
    Delay(RollingBuffer),
    Integral(f64),
    Derivative(f64),
    CumulativeMax(f64),
    Trend {
        buf: RollingBuffer,
        sum: f64,
        nan_count: usize,
        current_sample: usize,
    },
    IgnoreN {
        n: usize,
        pos: usize,
    },
    Des(Des),
    SlidingDes {
        training: usize,
        des1: Des,
        des2: Des,
        use_one: bool,
        current_sample: usize,
    },
    Pipeline(Vec<Online>),
}

impl Online {
    fn rolling_count(n: usize) -> Online {
        Online::RollingCount {
            buf: RollingBuffer::new(n),
            count: 0.0,
        }
    }

    fn rolling_min(n: usize) -> Online {
        Online::RollingMin {
            buf: RollingBuffer::new(n),
            min: f64::NAN,
        }
    }

    fn rolling_max(n: usize) -> Online {
        Online::RollingMax {
            buf: RollingBuffer::new(n),
            max: f64::NAN,
        }
    }

    fn rolling_mean(n: usize, min_values: usize) -> Online {
        Online::RollingMean {
            buffer: RollingSumBuffer::new(n),
            min_values: min_values.max(1),
        }
    }

    fn rolling_sum(n: usize) -> Online {
        Online::RollingSum(RollingSumBuffer::new(n))
    }

    fn delay(n: usize) -> Online {
        Online::Delay(RollingBuffer::new(n))
    }

    fn trend(n: usize) -> Online {
        Online::Trend {
            buf: RollingBuffer::new(n),
            sum: 0.0,
            nan_count: n.max(1),
            current_sample: 0,
        }
    }

    fn ignore_n(n: usize) -> Online {
        Online::IgnoreN { n, pos: 0 }
    }

    fn sliding_des(training: usize, alpha: f64, beta: f64) -> Online {
        Online::SlidingDes {
            training,
            des1: Des::new(training, alpha, beta),
            des2: Des::new(training, alpha, beta),
            use_one: true,
            current_sample: 0,
        }
    }

    /// The algorithm of a word for a line whose first value is at `start` (`StatefulExpr`'s
    /// `newAlgorithmInstance`): `:trend` of one step or less is the identity, `:sdes` ignores
    /// the values before the first multiple of `step * training`.
    fn of(s: Stateful, start: i64, step: i64) -> Online {
        match s {
            Stateful::RollingCount(n) => Online::rolling_count(n),
            Stateful::RollingMin(n) => Online::rolling_min(n),
            Stateful::RollingMax(n) => Online::rolling_max(n),
            Stateful::RollingMean(n, m) => Online::rolling_mean(n, m),
            Stateful::RollingSum(n) => Online::rolling_sum(n),
            Stateful::Delay(n) => Online::delay(n),
            Stateful::Integral => Online::Integral(f64::NAN),
            Stateful::Derivative => Online::Derivative(f64::NAN),
            Stateful::CumulativeMax => Online::CumulativeMax(f64::NAN),
            Stateful::Trend(window) => match trend_period(window, step) {
                n if n <= 1 => Online::ignore_n(0),
                n => Online::trend(n as usize),
            },
            Stateful::Des {
                training,
                alpha,
                beta,
            } => Online::Des(Des::new(training, alpha, beta)),
            Stateful::Sdes {
                training,
                alpha,
                beta,
            } => {
                let sdes = Online::sliding_des(training, alpha, beta);
                let training_step = step.max(1).saturating_mul(training.max(1) as i64);
                let aligned = if start % training_step == 0 {
                    start
                } else {
                    start / training_step * training_step + training_step
                };
                let offset = ((aligned - start) / step.max(1)) as usize;
                if offset > 0 {
                    Online::Pipeline(vec![Online::ignore_n(offset), sdes])
                } else {
                    sdes
                }
            }
        }
    }

    /// `OnlineAlgorithm.next`: takes the next value, returns the computed one.
    fn next(&mut self, v: f64) -> f64 {
        match self {
            Online::RollingCount { buf, count } => {
                let removed = buf.add(v);
                *count += to_boolean_double(v);
                *count -= to_boolean_double(removed);
                *count
            }
            Online::RollingMin { buf, min } => {
                let removed = buf.add(v);
                if v <= *min {
                    *min = v;
                } else if removed == *min || (buf.size > 0 && min.is_nan()) {
                    *min = buf.min();
                }
                *min
            }
            Online::RollingMax { buf, max } => {
                let removed = buf.add(v);
                if v >= *max {
                    *max = v;
                } else if removed == *max || (buf.size > 0 && max.is_nan()) {
                    *max = buf.max();
                }
                *max
            }
            Online::RollingMean { buffer, min_values } => {
                buffer.update(v);
                if buffer.count >= *min_values {
                    buffer.sum / buffer.count as f64
                } else {
                    f64::NAN
                }
            }
            Online::RollingSum(buffer) => {
                buffer.update(v);
                if buffer.count > 0 {
                    buffer.sum
                } else {
                    f64::NAN
                }
            }
            Online::Delay(buf) => buf.add(v),
            Online::Integral(value) => {
                *value = add_nan(*value, v);
                *value
            }
            Online::Derivative(prev) => v - std::mem::replace(prev, v),
            Online::CumulativeMax(value) => {
                *value = max_nan(*value, v);
                *value
            }
            Online::Trend {
                buf,
                sum,
                nan_count,
                current_sample,
            } => {
                *current_sample += 1;
                let n = buf.values.len();
                let removed = buf.add(v);
                if removed.is_nan() {
                    *nan_count -= 1;
                } else {
                    *sum -= removed;
                }
                if v.is_nan() {
                    *nan_count += 1;
                } else {
                    *sum += v;
                }
                if *current_sample < n || *nan_count == n {
                    f64::NAN
                } else {
                    *sum / n as f64
                }
            }
            Online::IgnoreN { n, pos } => {
                let i = *pos;
                *pos += 1;
                if i >= *n {
                    v
                } else {
                    f64::NAN
                }
            }
            Online::Des(d) => d.next(v),
            Online::SlidingDes {
                training,
                des1,
                des2,
                use_one,
                current_sample,
            } => {
                *current_sample += 1;
                let (v1, v2) = (des1.next(v), des2.next(v));
                let out = if *use_one { v1 } else { v2 };
                // Atlas divides by the training size here; `:sdes` refuses 0 when parsed.
                if *training > 0 && *current_sample % *training == 0 {
                    if *use_one {
                        des1.reset();
                    } else {
                        des2.reset();
                    }
                    *use_one = !*use_one;
                }
                out
            }
            Online::Pipeline(stages) => stages.iter_mut().fold(v, |acc, stage| stage.next(acc)),
        }
    }
}

/// The buffer size of `:trend` over `window` seconds at `step` (`StatefulExpr.Trend`).
pub fn trend_period(window: i64, step: i64) -> i64 {
    window / step.max(1)
}

/// Runs one online algorithm over a line whose first value is at `start`, from empty state,
/// as `OnlineExpr.eval` does over the evaluation context.
pub fn run_stateful(s: Stateful, values: &[f64], start: i64, step: i64) -> Vec<f64> {
    let mut algo = Online::of(s, start, step);
    values.iter().map(|&v| algo.next(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: f64 = f64::NAN;

    fn same(got: &[f64], want: &[f64]) -> bool {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(a, b)| (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-3)
    }

    /// The summary tables of `StatefulVocabulary.scala`'s words.
    #[test]
    fn stateful_words_match_their_summary_tables() {
        let input = [0.0, 1.0, -1.0, N, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let cases: &[(Stateful, [f64; 10])] = &[(
            Stateful::RollingCount(3),
            [0., 1., 2., 2., 1., 1., 2., 3., 3., 2.],
        )];
        for (s, want) in cases {
            let got = run_stateful(*s, &input, 0, 60);
            assert!(same(&got, want), "{s:?}: {got:?}");
        }
        let input = [0.0, 1.0, -1.0, N, N, 0.0, 1.0, 1.0, 1.0, 0.0];
        let got = run_stateful(Stateful::RollingMean(3, 2), &input, 0, 60);
        assert!(
            same(&got, &[N, 0.5, 0.0, 0.0, N, N, 0.5, 0.667, 1.0, 0.667]),
            "{got:?}"
        );
        // `:trend`: 2m and 5m windows at a 1m step; NaN counts as 0.
        let trend = [0.0, 1.0, -1.0, N, 0.0, 1.0, 2.0, 1.0, 1.0, 0.0];
        assert!(same(
            &run_stateful(Stateful::Trend(120), &trend, 0, 60),
            &[N, 0.5, 0.0, -0.5, 0.0, 0.5, 1.5, 1.5, 1.0, 0.5]
        ));
        assert!(same(
            &run_stateful(Stateful::Trend(300), &trend, 0, 60),
            &[N, N, N, N, 0.0, 0.2, 0.4, 0.8, 1.0, 1.0]
        ));
        assert!(same(
            &run_stateful(Stateful::Delay(2), &[1.0, 2.0, 3.0], 0, 60),
            &[N, N, 1.0]
        ));
        assert!(same(
            &run_stateful(Stateful::Integral, &[1.0, N, 2.0], 0, 60),
            &[1.0, 1.0, 3.0]
        ));
        assert!(same(
            &run_stateful(Stateful::Derivative, &[1.0, 3.0, 2.0], 0, 60),
            &[N, 2.0, -1.0]
        ));
        assert!(same(
            &run_stateful(Stateful::CumulativeMax, &[1.0, N, 3.0, 2.0], 0, 60),
            &[1.0, 1.0, 3.0, 3.0]
        ));
        // `:rolling-min`, `:rolling-max` and `:rolling-sum`'s tables.
        let input = [0.0, 1.0, -1.0, N, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        assert!(same(
            &run_stateful(Stateful::RollingMin(3), &input, 0, 60),
            &[0.0, 0.0, -1.0, -1.0, -1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
        ));
        assert!(same(
            &run_stateful(Stateful::RollingMax(3), &input, 0, 60),
            &[0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        ));
        let input = [0.0, 1.0, -1.0, N, N, N, 1.0, 1.0, 1.0, 0.0];
        assert!(same(
            &run_stateful(Stateful::RollingSum(3), &input, 0, 60),
            &[0.0, 1.0, 0.0, 0.0, -1.0, N, 1.0, 2.0, 3.0, 2.0]
        ));
    }

    #[test]
    fn arithmetic_follows_atlas() {
        assert_eq!(BinOp::Add.apply(N, 1.0), 1.0);
        assert!(BinOp::Add.apply(N, N).is_nan());
        assert_eq!(BinOp::Sub.apply(N, 1.0), -1.0);
        assert!(BinOp::Mul.apply(N, 1.0).is_nan());
        assert_eq!(BinOp::Div.apply(0.0, 0.0), 0.0);
        assert!(BinOp::Div.apply(1.0, 0.0).is_nan());
        assert!(BinOp::FDiv.apply(1.0, 0.0).is_infinite());
        assert_eq!(BinOp::Gt.apply(N, 1.0), 0.0);
        assert_eq!(BinOp::And.apply(2.0, 1.0), 1.0);
        assert_eq!(BinOp::Or.apply(N, 0.0), 0.0);
        assert!(BinOp::FAdd.apply(N, 1.0).is_nan());
        assert_eq!(BinOp::Pow.apply(0.0, 0.0), 1.0);
    }

    #[test]
    fn consolidation_and_aggregation() {
        let grid = Grid {
            start: 0,
            end: 120,
            step: 60,
        };
        let raw = |values: Vec<f64>| Raw {
            tags: Tags::new(),
            start: 0,
            step: 30,
            values,
        };
        let a = raw(vec![1.0, N, 3.0, 5.0]);
        let b = raw(vec![1.0, 1.0, N, N]);
        assert!(same(&consolidate(&a, 0, &grid, Cf::Avg), &[1.0, 4.0]));
        assert!(same(&consolidate(&a, 0, &grid, Cf::Sum), &[1.0, 8.0]));
        assert!(same(&consolidate(&a, 0, &grid, Cf::Max), &[1.0, 5.0]));
        assert!(
            same(&consolidate(&b, 60, &grid, Cf::Avg), &[N, 1.0]),
            "offset"
        );
        // Summed at the stored step, then averaged: (2 + 1) / 2, as Atlas's database does.
        assert!(same(
            &aggregate_raw(Af::Sum, Cf::Avg, 0, &[&a, &b], &grid),
            &[1.5, 4.0]
        ));
        assert!(same(
            &aggregate_raw(Af::Count, Cf::Avg, 0, &[&a, &b], &grid),
            &[1.5, 1.0]
        ));
    }

    /// `Hash.lowbias32` / `lowbias64` and `MathExpr.Random.rand`, bit for bit: the values
    /// are Java's, from the Scala source run under a JVM.
    #[test]
    fn random_is_atlas_hash_of_the_timestamp() {
        for (v, h) in [
            (0, 0),
            (1, 1_753_845_952),
            (-1, 1_734_902_346),
            (42, 388_445_122),
            (i32::MAX, -1_926_627_400),
            (i32::MIN, -867_483_356),
        ] {
            assert_eq!(lowbias32(v), h, "lowbias32({v})");
        }
        for (v, h) in [
            (0, 0),
            (1, 1_753_845_952),
            (-1, 0),
            (1_325_401_200_000, 653_095_653),
            (1_392_930_000_000, -1_511_194_050),
            (i64::MIN, -867_483_356),
        ] {
            assert_eq!(lowbias64(v), h, "lowbias64({v})");
        }
        // 2012-01-01T07:00Z, the docs' graph end, and the minutes before it.
        let e = 1_325_401_200_000;
        let got: Vec<f64> = (0..5).map(|i| random_value(e - (4 - i) * 60_000)).collect();
        assert_eq!(got, [0.119, 0.72, 0.656, 0.457, 0.653]);
        assert_eq!(random_value(e), 0.653);
        assert_eq!(random_value(e ^ 42), 0.185, "42,:srandom");
        assert_eq!(
            random_value(e ^ -1),
            0.719,
            "-1,:srandom: the seed widened with its sign"
        );
        // The one hash Java's Math.abs leaves negative.
        assert_eq!(lowbias64(3_906_290_832), i32::MIN);
        assert_eq!(random_value(3_906_290_832), -0.648);
    }

    /// `MathExpr.TimeSpan.parseDates`: which end is read first, the references each may
    /// name, and an end before the start.
    #[test]
    fn time_spans_resolve_as_atlas_reads_them() {
        const M: i64 = 60_000;
        let (gs, ge, now) = (1_000 * M, 1_180 * M, 5_000 * M);
        let span = |s: &str, e: &str| {
            TimeSpan {
                s: s.into(),
                e: e.into(),
                tz: Tz::UTC,
            }
            .resolve(gs, ge, now)
        };
        assert_eq!(span("e-30m", "ge"), Ok((ge - 30 * M, ge)));
        assert_eq!(span("gs", "s+5m"), Ok((gs, gs + 5 * M)));
        assert_eq!(span("gs+1h", "ge-1h"), Ok((gs + 60 * M, ge - 60 * M)));
        assert_eq!(
            span("e", "ge"),
            Ok((ge, ge)),
            "an empty span holds its instant"
        );
        assert_eq!(span("now-1h", "now"), Ok((now - 60 * M, now)));
        assert_eq!(span("epoch", "s+1d"), Ok((0, 1_440 * M)));
        assert_eq!(
            span("2014-02-20T13:00", "s+30m"),
            Ok((1_392_901_200_000, 1_392_903_000_000))
        );
        let pacific = TimeSpan {
            s: "2014-02-20T13:00".into(),
            e: "s+30m".into(),
            tz: "US/Pacific".parse().expect("zone"),
        };
        assert_eq!(
            pacific.resolve(gs, ge, now),
            Ok((1_392_930_000_000, 1_392_931_800_000))
        );
        for (s, e, says) in [
            (
                "e-30m",
                "s+5m",
                "start and end time are relative to each other",
            ),
            ("s-1h", "ge", "start time is relative to itself"),
            ("s", "ge", "start time is relative to itself"),
            ("gs", "e+1h", "end time is relative to itself"),
            ("ge", "gs", "start must be <= end (s=ge, e=gs)"),
            ("e+5m", "ge", "start must be <= end (s=e+5m, e=ge)"),
            ("gs", "s-1m", "start must be <= end (s=gs, e=s-1m)"),
            ("gs", "2014-13-45", "invalid date \"2014-13-45\""),
            (
                "gs",
                "nonsense",
                "unknown reference \"nonsense\" in \"nonsense\"",
            ),
            (
                "gs",
                "s+5parsecs",
                "unknown unit \"parsecs\" in \"5parsecs\"",
            ),
        ] {
            let got = span(s, e).expect_err("refused");
            assert_eq!(got, format!(":time-span: {says}"), "{s},{e}");
        }
        assert_eq!(reference_point("e-30m"), Some("e"));
        assert_eq!(reference_point("ge"), Some("ge"));
        assert_eq!(reference_point("s+P1D"), Some("s"));
        assert_eq!(reference_point("s+1h-5m"), None);
        assert_eq!(reference_point("2014-02-20T13:00"), None);
        assert_eq!(reference_point("e-"), None);
    }

    #[test]
    fn names_of_numbers_are_javas() {
        assert_eq!(java_double(42.0), "42.0");
        assert_eq!(java_double(0.5), "0.5");
        assert_eq!(java_double(1e-5), "1.0E-5");
        assert_eq!(java_double(f64::NAN), "NaN");
        assert_eq!(duration_string(604_800), "1w");
        assert_eq!(duration_string(5400), "90m");
    }

    // ---- Atlas's per-algorithm suites (`atlas-core/src/test/scala/.../algorithm/`) ----
    //
    // Each Scala `algo.next(v)` sequence is fed to Tally's algorithm from empty state and the
    // outputs compared one by one (`assertEquals` exactly, NaN as NaN; `assertEqualsDouble`
    // within its delta). `algo.reset()` is empty state again, so the values after it are fed
    // to a fresh algorithm, as each evaluation window starts. `isEmpty` and `state` (Atlas's
    // streaming state) have no counterpart in Tally and are not ported.

    /// Exactly equal, NaN as NaN.
    fn exact(got: &[f64], want: &[f64]) -> bool {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(a, b)| (a.is_nan() && b.is_nan()) || a == b)
    }

    /// `run_stateful` at a one-minute step from a window starting at 0.
    #[track_caller]
    fn check(s: Stateful, input: &[f64], want: &[f64]) {
        let got = run_stateful(s, input, 0, 60);
        assert!(exact(&got, want), "{s:?} {input:?}: {got:?} != {want:?}");
    }

    /// One algorithm fed `input` from empty state.
    #[track_caller]
    fn check_algo(mut algo: Online, input: &[f64], want: &[f64]) {
        let got: Vec<f64> = input.iter().map(|&v| algo.next(v)).collect();
        assert!(exact(&got, want), "{input:?}: {got:?} != {want:?}");
    }

    /// The error of a program, if it has one.
    fn parse_error(p: &str) -> Option<String> {
        crate::atlas::parse(p, None).err().map(|e| e.to_string())
    }

    #[test]
    fn online_rolling_count_suite() {
        let c = Stateful::RollingCount;
        // n = 1
        check(c(1), &[0.0, 1.0], &[0.0, 1.0]);
        // n = 2
        check(c(2), &[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0]);
        // n = 2, decreasing
        check(c(2), &[2.0, 1.0, 0.0], &[1.0, 2.0, 1.0]);
        // n = 2, NaNs
        check(c(2), &[0.0, 1.0, 2.0, N, N], &[0.0, 1.0, 2.0, 1.0, 0.0]);
        // n = 2, reset
        check(c(2), &[1.0], &[1.0]);
        check(c(2), &[1.0], &[1.0]);
        // `Math.toBooleanDouble`: nearly 0 (below 1e-12) is false, as NaN is.
        check(c(2), &[1e-13, -1e-13, 1e-12], &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn online_rolling_min_suite() {
        let m = Stateful::RollingMin;
        // n = 1
        check(m(1), &[0.0, 1.0], &[0.0, 1.0]);
        // n = 2
        check(m(2), &[0.0, 1.0, 2.0], &[0.0, 0.0, 1.0]);
        // n = 2, decreasing
        check(m(2), &[2.0, 1.0, 0.0], &[2.0, 1.0, 0.0]);
        // n = 2, NaNs
        check(m(2), &[0.0, 1.0, 2.0, N, N], &[0.0, 0.0, 1.0, 2.0, N]);
        // n = 2, reset
        check(m(2), &[0.0], &[0.0]);
        check(m(2), &[1.0], &[1.0]);
    }

    #[test]
    fn online_rolling_max_suite() {
        let m = Stateful::RollingMax;
        // n = 1
        check(m(1), &[0.0, 1.0], &[0.0, 1.0]);
        // n = 2
        check(m(2), &[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0]);
        // n = 2, decreasing
        check(m(2), &[2.0, 1.0, 0.0], &[2.0, 2.0, 1.0]);
        // n = 2, NaNs
        check(m(2), &[0.0, 1.0, 2.0, N, N], &[0.0, 1.0, 2.0, 2.0, N]);
        // n = 2, reset
        check(m(2), &[1.0], &[1.0]);
        check(m(2), &[0.0], &[0.0]);
    }

    #[test]
    fn online_rolling_mean_suite() {
        let m = Stateful::RollingMean;
        // n = 1, min = 1
        check(m(1, 1), &[0.0, 1.0], &[0.0, 1.0]);
        // window size beyond max is rejected
        let e = parse_error("name,a,:eq,86401,1,:rolling-mean").unwrap_or_default();
        assert!(e.contains("window size"), "{e}");
        assert_eq!(parse_error("name,a,:eq,86400,1,:rolling-mean"), None);
        // n = 2, min = 1
        check(m(2, 1), &[0.0, 1.0, 2.0], &[0.0, 0.5, 1.5]);
        // n = 2, min = 2
        check(m(2, 2), &[0.0, 1.0, 2.0], &[N, 0.5, 1.5]);
        // n = 2, min = 1, decreasing
        check(m(2, 1), &[2.0, 1.0, 0.0], &[2.0, 1.5, 0.5]);
        // n = 2, min = 1, NaNs
        check(m(2, 1), &[0.0, 1.0, 2.0, N, N], &[0.0, 0.5, 1.5, 2.0, N]);
        // n = 2, recover from large value
        check(
            m(2, 1),
            &[0.0, 1.0e300, 2.0, 3.0],
            &[0.0, 5.0e299, 5.0e299, 2.5],
        );
        // n = 2, recover from small value
        check(
            m(2, 1),
            &[0.0, -1.0e300, 2.0, 3.0],
            &[0.0, -5.0e299, -5.0e299, 2.5],
        );
        // n = 2, min = 1, reset
        check(m(2, 1), &[1.0], &[1.0]);
        check(m(2, 1), &[5.0], &[5.0]);
        // min < n (a minimum above the window), min = 0, min < 0
        for p in [
            "name,a,:eq,1,2,:rolling-mean",
            "name,a,:eq,2,0,:rolling-mean",
            "name,a,:eq,2,-4,:rolling-mean",
        ] {
            assert!(parse_error(p).is_some(), "{p}");
        }
    }

    #[test]
    fn online_rolling_sum_suite() {
        let s = Stateful::RollingSum;
        // n = 1
        check(s(1), &[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0]);
        // n = 1, NaN
        check(s(1), &[0.0, 1.0, N, N, 2.0], &[0.0, 1.0, N, N, 2.0]);
        // n = 1, NaN, with fractional data (within 1e-9)
        let input = [0.007222, 0.001667, 0.011667, 0.001111, N, 0.000556];
        let got = run_stateful(s(1), &input, 0, 60);
        assert_eq!(got.len(), input.len());
        for (g, w) in got.iter().zip(input) {
            assert!(
                (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-9,
                "{got:?}"
            );
        }
        // n = 2
        check(s(2), &[0.0, 1.0, 2.0], &[0.0, 1.0, 3.0]);
        // n = 3 - up and down
        check(
            s(3),
            &[0.0, 1.0, -1.0, N, N, N, 0.0, 1.0, 1.0, 1.0, 0.0],
            &[0.0, 1.0, 0.0, 0.0, -1.0, N, 0.0, 1.0, 2.0, 3.0, 2.0],
        );
        // n = 2, NaNs
        check(s(2), &[0.0, 1.0, 2.0, N, N], &[0.0, 1.0, 3.0, 2.0, N]);
        // n = 2, reset
        check(s(2), &[1.0], &[1.0]);
        check(s(2), &[5.0], &[5.0]);
        // n = 2, recover from large value
        check(
            s(2),
            &[0.0, 1.0e300, 2.0, 3.0],
            &[0.0, 1.0e300, 1.0e300, 5.0],
        );
        // n = 2, recover from small value
        check(
            s(2),
            &[0.0, -1.0e300, 2.0, 3.0],
            &[0.0, -1.0e300, -1e300, 5.0],
        );
    }

    #[test]
    fn online_delay_suite() {
        let d = Stateful::Delay;
        // n = 1
        check(d(1), &[0.0, 1.0, 2.0, N, N], &[N, 0.0, 1.0, 2.0, N]);
        // n = 1, reset
        check(d(1), &[0.0, 1.0], &[N, 0.0]);
        check(d(1), &[2.0, 3.0], &[N, 2.0]);
        // n = 2
        check(d(2), &[0.0, 1.0, 2.0, N, N, N], &[N, N, 0.0, 1.0, 2.0, N]);
    }

    #[test]
    fn online_des_suite() {
        // training = 2, NaNs: the first two are NaN (the rest is only `isEmpty`).
        let s = Stateful::Des {
            training: 2,
            alpha: 0.25,
            beta: 0.25,
        };
        let got = run_stateful(s, &[0.0, 1.0, 2.0, N, N], 0, 60);
        assert!(got[0].is_nan() && got[1].is_nan(), "{got:?}");
    }

    #[test]
    fn online_trend_suite() {
        // `OnlineTrend(n)` is `:trend` over n steps.
        let t = |n: i64| Stateful::Trend(n * 60);
        // n = 1 (the word's identity, `OnlineIgnoreN(0)`, and `OnlineTrend(1)` itself)
        check(t(1), &[0.0, 1.0], &[0.0, 1.0]);
        check_algo(Online::trend(1), &[0.0, 1.0], &[0.0, 1.0]);
        // n = 2
        check(t(2), &[0.0, 1.0, 2.0], &[N, 0.5, 1.5]);
        // n = 2, decreasing
        check(t(2), &[2.0, 1.0, 0.0], &[N, 1.5, 0.5]);
        // n = 2, NaNs
        check(t(2), &[0.0, 1.0, 2.0, N, N], &[N, 0.5, 1.5, 1.0, N]);
        // n = 2, reset
        check(t(2), &[1.0], &[N]);
        check(t(2), &[1.0], &[N]);
    }

    #[test]
    fn online_integral_suite() {
        let i = Stateful::Integral;
        // init
        check(i, &[1.0, 1.0], &[1.0, 2.0]);
        // NaN values
        check(i, &[1.0, 1.0, N, 1.0, 1.0], &[1.0, 2.0, 2.0, 3.0, 4.0]);
        // increase
        check(i, &[1.0, 2.0, 3.0, 7.0], &[1.0, 3.0, 6.0, 13.0]);
        // decrease
        check(i, &[10.0, 9.0, 8.0, 4.0], &[10.0, 19.0, 27.0, 31.0]);
        // reset
        check(i, &[1.0, 2.0], &[1.0, 3.0]);
        check(i, &[3.0, 7.0], &[3.0, 10.0]);
    }

    #[test]
    fn online_derivative_suite() {
        let d = Stateful::Derivative;
        // init
        check(d, &[1.0, 1.0], &[N, 0.0]);
        // NaN values
        check(d, &[1.0, 1.0, N, 1.0, 1.0], &[N, 0.0, N, N, 0.0]);
        // increase
        check(d, &[1.0, 2.0, 3.0, 7.0], &[N, 1.0, 1.0, 4.0]);
        // decrease
        check(d, &[10.0, 9.0, 8.0, 4.0], &[N, -1.0, -1.0, -4.0]);
        // reset
        check(d, &[1.0, 2.0], &[N, 1.0]);
        check(d, &[3.0, 7.0], &[N, 4.0]);
    }

    #[test]
    fn online_ignore_n_suite() {
        // n = 1
        check_algo(Online::ignore_n(1), &[0.0, 1.0, 2.0, N], &[N, 1.0, 2.0, N]);
        // n = 1, reset
        check_algo(Online::ignore_n(1), &[0.0, 1.0], &[N, 1.0]);
        check_algo(Online::ignore_n(1), &[2.0, 3.0], &[N, 3.0]);
        // n = 2
        check_algo(Online::ignore_n(2), &[0.0, 1.0, 2.0, N], &[N, N, 2.0, N]);
    }

    #[test]
    fn online_cumulative_max_suite() {
        let c = Stateful::CumulativeMax;
        let inf = f64::INFINITY;
        // init
        check(c, &[1.0, 1.0], &[1.0, 1.0]);
        // increase
        check(c, &[1.0, 2.0, 3.0, 7.0], &[1.0, 2.0, 3.0, 7.0]);
        // decrease keeps the running max
        check(c, &[10.0, 9.0, 8.0, 4.0], &[10.0; 4]);
        // mixed
        check(c, &[1.0, 3.0, 2.0, 5.0, 0.0], &[1.0, 3.0, 3.0, 5.0, 5.0]);
        // negative values
        check(c, &[-5.0, -9.0, -2.0], &[-5.0, -5.0, -2.0]);
        // NaN values ignored
        check(c, &[1.0, 2.0, N, 1.0, 3.0], &[1.0, 2.0, 2.0, 2.0, 3.0]);
        // leading NaN
        check(c, &[N, 4.0, 2.0], &[N, 4.0, 4.0]);
        // infinity
        check(c, &[-inf, 5.0, inf, 1e300, N], &[-inf, 5.0, inf, inf, inf]);
        // reset
        check(c, &[5.0, 9.0], &[5.0, 9.0]);
        check(c, &[3.0, 1.0], &[3.0, 3.0]);
    }

    #[test]
    fn pipeline_suite() {
        let ignore_max =
            |n: usize| Online::Pipeline(vec![Online::ignore_n(n), Online::rolling_max(n)]);
        // n = 1
        check_algo(ignore_max(1), &[0.0, 2.0, 1.0, N], &[N, 2.0, 1.0, N]);
        // n = 1, reset
        check_algo(ignore_max(1), &[0.0, 1.0], &[N, 1.0]);
        check_algo(ignore_max(1), &[2.0, 3.0], &[N, 3.0]);
        // n = 2
        check_algo(
            ignore_max(2),
            &[0.0, 1.0, 2.0, 3.0, 0.0, N, N],
            &[N, N, 2.0, 3.0, 3.0, 0.0, N],
        );
    }

    #[test]
    fn rolling_buffer_suite() {
        // n = 0, n < 0, n = max window size, n > max window size: as the words' windows.
        for word in [
            "rolling-count",
            "rolling-min",
            "rolling-max",
            "rolling-sum",
            "delay",
        ] {
            for bad in ["0", "-1", "86401"] {
                assert!(
                    parse_error(&format!("name,a,:eq,{bad},:{word}")).is_some(),
                    "{bad},:{word}"
                );
            }
            assert_eq!(
                parse_error(&format!("name,a,:eq,86400,:{word}")),
                None,
                "{word}"
            );
        }
        assert_eq!(
            RollingBuffer::new(MAX_WINDOW_SIZE).values.len(),
            MAX_WINDOW_SIZE
        );
        let adds = |n: usize, input: &[f64]| {
            let mut b = RollingBuffer::new(n);
            input.iter().map(|&v| b.add(v)).collect::<Vec<_>>()
        };
        // n = 1, add
        assert!(exact(&adds(1, &[0.0, 1.0, 2.0]), &[N, 0.0, 1.0]));
        // n = 2, add
        assert!(exact(
            &adds(2, &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            &[N, N, 0.0, 1.0, 2.0, 3.0, 4.0]
        ));
        // n = 2, add NaNs
        assert!(exact(
            &adds(2, &[0.0, 1.0, 2.0, 3.0, N, 5.0, 6.0]),
            &[N, N, 0.0, 1.0, 2.0, 3.0, N]
        ));
        // n = 2, size / min / max after each add
        let mut b = RollingBuffer::new(2);
        assert_eq!(b.size, 0);
        assert!(b.min().is_nan() && b.max().is_nan());
        let steps: [(f64, usize, f64, f64); 6] = [
            (0.0, 1, 0.0, 0.0),
            (1.0, 2, 0.0, 1.0),
            (2.0, 2, 1.0, 2.0),
            (3.0, 2, 2.0, 3.0),
            (N, 1, 3.0, 3.0),
            (N, 0, N, N),
        ];
        for (v, size, min, max) in steps {
            b.add(v);
            assert_eq!(b.size, size, "size after {v}");
            assert!(exact(&[b.min(), b.max()], &[min, max]), "min/max after {v}");
        }
        b.add(N);
        assert_eq!(b.size, 0);
    }

    // ---- Atlas's model suites for the stateful words (`.../core/model/`) ----

    /// `DerivativeSuite` (its state across evaluations is Atlas's streaming and not ported).
    #[test]
    fn derivative_suite() {
        let d = Stateful::Derivative;
        // basic
        check(d, &[7.0, 8.0, 9.0], &[N, 1.0, 1.0]);
        // basic with same value and decreasing
        check(
            d,
            &[7.0, 42.0, 42.0, 43.0, 2.0, 5.0],
            &[N, 35.0, 0.0, 1.0, -41.0, 3.0],
        );
        // basic with NaN values
        check(
            d,
            &[7.0, 42.0, N, 43.0, 2.0, 5.0],
            &[N, 35.0, N, N, -41.0, 3.0],
        );
    }

    #[test]
    fn integral_suite() {
        let i = Stateful::Integral;
        // basic
        check(i, &[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]);
        // basic with same value and decreasing
        check(
            i,
            &[N, 35.0, 0.0, 1.0, -41.0, 3.0],
            &[N, 35.0, 35.0, 36.0, -5.0, -2.0],
        );
        // basic with NaN values
        check(
            i,
            &[N, 35.0, N, N, -41.0, 3.0],
            &[N, 35.0, 35.0, 35.0, -6.0, -3.0],
        );
    }

    #[test]
    fn cumulative_max_suite() {
        let c = Stateful::CumulativeMax;
        // increasing
        check(c, &[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        // decreasing keeps the running max
        check(c, &[3.0, 2.0, 1.0], &[3.0, 3.0, 3.0]);
        // mixed
        check(c, &[1.0, 3.0, 2.0, 5.0, 0.0], &[1.0, 3.0, 3.0, 5.0, 5.0]);
        // NaN values ignored
        check(c, &[N, 2.0, N, 1.0, 5.0], &[N, 2.0, 2.0, 2.0, 5.0]);
        // negative values
        check(c, &[-5.0, -9.0, -2.0], &[-5.0, -5.0, -2.0]);
        // all NaN series stays NaN
        check(c, &[N, N, N], &[N, N, N]);
        // per series state when grouped
        let program = "name,test,:eq,:sum,(,id,),:by,:cumulative-max";
        let parsed = crate::atlas::parse(program, None).expect(program);
        let expr = &parsed[0].expr;
        let mut wanted = Vec::new();
        expr.data_exprs(&mut wanted);
        let series = |id: &str, values: Vec<f64>| Raw {
            tags: Tags::from([
                ("name".to_string(), "test".to_string()),
                ("id".to_string(), id.to_string()),
            ]),
            start: 0,
            step: 60,
            values,
        };
        let data = HashMap::from([(
            wanted[0].fetch_key(),
            vec![
                series("a", vec![1.0, 5.0, 2.0]),
                series("b", vec![9.0, 3.0, 4.0]),
            ],
        )]);
        let check_time = || Ok(());
        let env = Env {
            data: &data,
            grid: Grid {
                start: 0,
                end: 180,
                step: 60,
            },
            check: &check_time,
            now: 0,
        };
        let lines = env.eval(expr).expect("eval");
        let by_id: HashMap<&str, &[f64]> = lines
            .iter()
            .map(|l| (l.tags["id"].as_str(), l.values.as_slice()))
            .collect();
        assert!(exact(by_id["a"], &[1.0, 5.0, 5.0]), "{lines:?}");
        assert!(exact(by_id["b"], &[9.0, 9.0, 9.0]), "{lines:?}");
    }

    /// `DesSuite`'s global evaluations: Atlas checks that a step-by-step evaluation matches
    /// them and is NaN while training, so they are NaN there too. `:sdes` from an unaligned
    /// start ignores the values before the first multiple of `step * training`
    /// (`StatefulExpr.SlidingDes`: `Pipeline(OnlineIgnoreN(offset), sdes)`).
    #[test]
    fn des_suite() {
        let aligned = [
            1.0, 1.5, 1.6, 1.7, 1.4, 1.3, 1.2, 1.0, 0.0, 0.0, 1.0, 1.1, 1.2, 1.2,
        ];
        let unaligned = &aligned[1..];
        let (training, alpha, beta) = (2, 0.1, 0.02);
        let des = Stateful::Des {
            training,
            alpha,
            beta,
        };
        let sdes = Stateful::Sdes {
            training,
            alpha,
            beta,
        };
        let leading_nans = |got: &[f64], n: usize| {
            got.iter().take(n).all(|v| v.is_nan()) && got.iter().skip(n).all(|v| v.is_finite())
        };
        // des: incremental exec matches global
        let got = run_stateful(des, &aligned, 0, 60);
        assert!(leading_nans(&got, 2), "{got:?}");
        // sdes: aligned incremental exec matches global
        let got = run_stateful(sdes, &aligned, 0, 60);
        assert!(leading_nans(&got, 2), "{got:?}");
        // sdes: unaligned incremental exec matches global (offset by one step)
        let got = run_stateful(sdes, unaligned, 60, 60);
        assert!(leading_nans(&got, 3), "{got:?}");
        let mut ignored = unaligned.to_vec();
        ignored[0] = N;
        let mut plain = Online::sliding_des(training, alpha, beta);
        let want: Vec<f64> = ignored.iter().map(|&v| plain.next(v)).collect();
        assert!(exact(&got, &want), "{got:?} != {want:?}");
        // A training of 0 is refused (Atlas divides by it).
        assert!(parse_error("name,a,:eq,0,0.1,0.02,:sdes").is_some());
        assert_eq!(parse_error("name,a,:eq,0,0.1,0.02,:des"), None);
    }

    /// `TrendSuite` at a one-minute step (1ms and 50ms steps are finer than Tally's second):
    /// a 3-step trend is NaN for its first two steps, then the mean of the last three.
    #[test]
    fn trend_suite() {
        let input = [
            1.0, 1.5, 1.6, 1.7, 1.4, 1.3, 1.2, 1.0, 0.0, 0.0, 1.0, 1.1, 1.2, 1.2,
        ];
        let got = run_stateful(Stateful::Trend(180), &input, 0, 60);
        assert!(got[0].is_nan() && got[1].is_nan(), "{got:?}");
        for i in 2..input.len() {
            let mean = (input[i - 2] + input[i - 1] + input[i]) / 3.0;
            assert!((got[i] - mean).abs() < 1e-5, "{i}: {got:?}");
        }
        // A window over `MaxWindowSize` steps is refused when evaluated.
        let parsed = crate::atlas::parse("a,b,:eq,:sum,87000m,:trend", None).expect("parse");
        let data = HashMap::new();
        let check_time = || Ok(());
        let env = Env {
            data: &data,
            grid: Grid {
                start: 0,
                end: 180,
                step: 60,
            },
            check: &check_time,
            now: 0,
        };
        assert!(env.eval(&parsed[0].expr).is_err());
        let parsed = crate::atlas::parse("a,b,:eq,:sum,86400m,:trend", None).expect("parse");
        assert!(env.eval(&parsed[0].expr).is_ok());
    }

    /// `StatefulExamplesSuite`: a window computed by constant math.
    #[test]
    fn stateful_examples_suite() {
        let parsed = crate::atlas::parse("name,test,:eq,:sum,3600,60,:div,:rolling-count", None)
            .expect("parse");
        assert!(
            matches!(
                parsed[0].expr,
                Expr::Stateful(Stateful::RollingCount(60), _)
            ),
            "{:?}",
            parsed[0].expr
        );
    }
}
