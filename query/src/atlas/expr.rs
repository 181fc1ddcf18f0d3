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
        let boolean = |x: f64| !x.is_nan() && x != 0.0;
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

fn min_nan(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}

fn max_nan(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, _) => b,
        (_, true) => a,
        _ => a.max(b),
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
                let mut lines = self.eval(inner)?;
                for l in &mut lines {
                    l.values = run_stateful(*s, &l.values, g.step);
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
        let truthy = |l: &Line| l.values.iter().any(|v| !v.is_nan() && *v != 0.0);
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

/// A fixed window of the last `n` values, NaN before any arrive (`RollingBuffer`).
struct Window {
    values: Vec<f64>,
    pos: usize,
}

impl Window {
    fn new(n: usize) -> Window {
        Window {
            values: vec![f64::NAN; n.max(1)],
            pos: 0,
        }
    }

    /// Adds `v`; returns the value it replaced.
    fn add(&mut self, v: f64) -> f64 {
        let old = std::mem::replace(&mut self.values[self.pos], v);
        self.pos = (self.pos + 1) % self.values.len();
        old
    }
}

/// Runs one online algorithm over a line, from empty state.
pub fn run_stateful(s: Stateful, values: &[f64], step: i64) -> Vec<f64> {
    let truth = |v: f64| if !v.is_nan() && v != 0.0 { 1.0 } else { 0.0 };
    match s {
        Stateful::RollingCount(n) => {
            let mut w = Window::new(n);
            let mut count = 0.0;
            values
                .iter()
                .map(|&v| {
                    let removed = w.add(v);
                    count += truth(v) - truth(removed);
                    count
                })
                .collect()
        }
        Stateful::RollingMin(n) | Stateful::RollingMax(n) => {
            let min = matches!(s, Stateful::RollingMin(_));
            let mut w = Window::new(n);
            values
                .iter()
                .map(|&v| {
                    w.add(v);
                    w.values.iter().fold(
                        f64::NAN,
                        |a, &b| if min { min_nan(a, b) } else { max_nan(a, b) },
                    )
                })
                .collect()
        }
        Stateful::RollingMean(n, _) | Stateful::RollingSum(n) => {
            let (mean, min_values) = match s {
                Stateful::RollingMean(_, m) => (true, m),
                _ => (false, 1),
            };
            let mut w = Window::new(n);
            values
                .iter()
                .map(|&v| {
                    w.add(v);
                    let (sum, count) = w
                        .values
                        .iter()
                        .filter(|x| !x.is_nan())
                        .fold((0.0, 0usize), |(s, c), x| (s + x, c + 1));
                    if mean {
                        if count >= min_values.max(1) {
                            sum / count as f64
                        } else {
                            f64::NAN
                        }
                    } else if count > 0 {
                        sum
                    } else {
                        f64::NAN
                    }
                })
                .collect()
        }
        Stateful::Delay(n) => {
            let mut w = Window::new(n);
            values.iter().map(|&v| w.add(v)).collect()
        }
        Stateful::Integral => {
            let mut acc = f64::NAN;
            values
                .iter()
                .map(|&v| {
                    acc = add_nan(acc, v);
                    acc
                })
                .collect()
        }
        Stateful::Derivative => {
            let mut prev = f64::NAN;
            values
                .iter()
                .map(|&v| {
                    let d = v - prev;
                    prev = v;
                    d
                })
                .collect()
        }
        Stateful::CumulativeMax => {
            let mut acc = f64::NAN;
            values
                .iter()
                .map(|&v| {
                    acc = max_nan(acc, v);
                    acc
                })
                .collect()
        }
        Stateful::Trend(window) => {
            let n = (window / step.max(1)) as usize;
            if n <= 1 {
                return values.to_vec();
            }
            let mut w = Window::new(n);
            let (mut sum, mut nans, mut seen) = (0.0, n, 0usize);
            values
                .iter()
                .map(|&v| {
                    seen += 1;
                    let removed = w.add(v);
                    if removed.is_nan() {
                        nans -= 1;
                    } else {
                        sum -= removed;
                    }
                    if v.is_nan() {
                        nans += 1;
                    } else {
                        sum += v;
                    }
                    if seen < n || nans == n {
                        f64::NAN
                    } else {
                        sum / n as f64
                    }
                })
                .collect()
        }
        Stateful::Des {
            training,
            alpha,
            beta,
        } => {
            let mut d = Des::new(training, alpha, beta);
            values.iter().map(|&v| d.next(v)).collect()
        }
        Stateful::Sdes {
            training,
            alpha,
            beta,
        } => {
            let (mut d1, mut d2) = (
                Des::new(training, alpha, beta),
                Des::new(training, alpha, beta),
            );
            let (mut use_one, mut n) = (true, 0usize);
            values
                .iter()
                .map(|&v| {
                    n += 1;
                    let (a, b) = (d1.next(v), d2.next(v));
                    let out = if use_one { a } else { b };
                    if training > 0 && n % training == 0 {
                        if use_one {
                            d1 = Des::new(training, alpha, beta);
                        } else {
                            d2 = Des::new(training, alpha, beta);
                        }
                        use_one = !use_one;
                    }
                    out
                })
                .collect()
        }
    }
}

/// Double exponential smoothing (`OnlineDes`).
struct Des {
    training: usize,
    alpha: f64,
    beta: f64,
    samples: usize,
    sp: f64,
    bp: f64,
}

impl Des {
    fn new(training: usize, alpha: f64, beta: f64) -> Des {
        Des {
            training,
            alpha,
            beta,
            samples: 0,
            sp: f64::NAN,
            bp: f64::NAN,
        }
    }

    fn next(&mut self, y: f64) -> f64 {
        let out = if self.samples >= self.training {
            self.sp
        } else {
            f64::NAN
        };
        if !y.is_nan() {
            if self.samples == 0 {
                self.sp = y;
                self.bp = 0.0;
            } else {
                let sn = self.alpha * y + (1.0 - self.alpha) * (self.sp + self.bp);
                let bn = self.beta * (sn - self.sp) + (1.0 - self.beta) * self.bp;
                self.sp = sn;
                self.bp = bn;
            }
            self.samples += 1;
        }
        out
    }
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
            let got = run_stateful(*s, &input, 60);
            assert!(same(&got, want), "{s:?}: {got:?}");
        }
        let input = [0.0, 1.0, -1.0, N, N, 0.0, 1.0, 1.0, 1.0, 0.0];
        let got = run_stateful(Stateful::RollingMean(3, 2), &input, 60);
        assert!(
            same(&got, &[N, 0.5, 0.0, 0.0, N, N, 0.5, 0.667, 1.0, 0.667]),
            "{got:?}"
        );
        // `:trend`: 2m and 5m windows at a 1m step; NaN counts as 0.
        let trend = [0.0, 1.0, -1.0, N, 0.0, 1.0, 2.0, 1.0, 1.0, 0.0];
        assert!(same(
            &run_stateful(Stateful::Trend(120), &trend, 60),
            &[N, 0.5, 0.0, -0.5, 0.0, 0.5, 1.5, 1.5, 1.0, 0.5]
        ));
        assert!(same(
            &run_stateful(Stateful::Trend(300), &trend, 60),
            &[N, N, N, N, 0.0, 0.2, 0.4, 0.8, 1.0, 1.0]
        ));
        assert!(same(
            &run_stateful(Stateful::Delay(2), &[1.0, 2.0, 3.0], 60),
            &[N, N, 1.0]
        ));
        assert!(same(
            &run_stateful(Stateful::Integral, &[1.0, N, 2.0], 60),
            &[1.0, 1.0, 3.0]
        ));
        assert!(same(
            &run_stateful(Stateful::Derivative, &[1.0, 3.0, 2.0], 60),
            &[N, 2.0, -1.0]
        ));
        assert!(same(
            &run_stateful(Stateful::CumulativeMax, &[1.0, N, 3.0, 2.0], 60),
            &[1.0, 1.0, 3.0, 3.0]
        ));
        // `:rolling-min`, `:rolling-max` and `:rolling-sum`'s tables.
        let input = [0.0, 1.0, -1.0, N, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        assert!(same(
            &run_stateful(Stateful::RollingMin(3), &input, 60),
            &[0.0, 0.0, -1.0, -1.0, -1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
        ));
        assert!(same(
            &run_stateful(Stateful::RollingMax(3), &input, 60),
            &[0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
        ));
        let input = [0.0, 1.0, -1.0, N, N, N, 1.0, 1.0, 1.0, 0.0];
        assert!(same(
            &run_stateful(Stateful::RollingSum(3), &input, 60),
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
}
