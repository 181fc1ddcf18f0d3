//! Atlas's tick marks, unit prefixes and scales (`atlas-chart` `graphics/Ticks.scala`,
//! `graphics/Scales.scala`, `graphics/LogLinear.scala`; `atlas-core` `util/UnitPrefix.scala`),
//! with Java's `String.format` for the few patterns they use, so labels read as Atlas's do.

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Timelike};
use chrono_tz::Tz;

// ---------------------------------------------------------------------------------------------
// Java's String.format, for `%[-][width][.prec](f|e|s)`.

/// The shortest decimal digits that read back as `v` (what Java's `Formatter` rounds from),
/// and the decimal exponent of the first digit: `v = 0.d1d2d3... * 10^(exp+1)`.
fn shortest_digits(v: f64) -> (Vec<u8>, i32) {
    let s = format!("{:e}", v.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: Vec<u8> = mant
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    (digits, exp.parse().unwrap_or(0))
}

/// Rounds `digits` (the first at 10^exp) half up to keep the digits down to 10^-prec; returns
/// the digits from 10^top and `top`.
fn round_half_up(mut digits: Vec<u8>, exp: i32, keep: i32) -> (Vec<u8>, i32) {
    // `keep` is the lowest power of ten kept.
    let n = exp - keep + 1; // how many digits are kept
    if n < 0 {
        return (vec![0], keep);
    }
    let n = n as usize;
    if digits.len() > n {
        let up = digits[n] >= 5;
        digits.truncate(n);
        if up {
            let mut i = n;
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    return (digits, exp + 1);
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
    }
    if digits.is_empty() {
        return (vec![0], keep);
    }
    digits.resize(n.max(1), 0);
    (digits, exp)
}

fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("Infinity")
    } else if v == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// `%.{prec}f` as Java writes it (half-up rounding of the shortest decimal).
pub fn fixed(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let neg = v.is_sign_negative() && v != 0.0;
    let mut out = String::new();
    if v == 0.0 {
        out.push('0');
    } else {
        let (d, e) = shortest_digits(v);
        let (d, top) = round_half_up(d, e, -(prec as i32));
        // digits d[0] at 10^top ... down to 10^-prec
        if top < 0 {
            out.push('0');
        } else {
            for i in 0..=top {
                out.push(char::from(b'0' + d.get(i as usize).copied().unwrap_or(0)));
            }
        }
        if prec > 0 {
            out.push('.');
            for p in 1..=prec as i32 {
                let idx = top + p; // digit at 10^-p sits at index top + p
                let c = if idx < 0 {
                    0
                } else {
                    d.get(idx as usize).copied().unwrap_or(0)
                };
                out.push(char::from(b'0' + c));
            }
        }
        if neg {
            out.insert(0, '-');
        }
        return out;
    }
    if prec > 0 {
        out.push('.');
        out.extend(std::iter::repeat_n('0', prec));
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// `%.{prec}e` as Java writes it: `1.5e+30`, at least two exponent digits.
pub fn sci(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let neg = v.is_sign_negative();
    let (d, e) = if v == 0.0 {
        (vec![0], 0)
    } else {
        let (d, e) = shortest_digits(v);
        round_half_up(d, e, e - prec as i32)
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push(char::from(b'0' + d[0]));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(char::from(b'0' + d.get(i).copied().unwrap_or(0)));
        }
    }
    out.push('e');
    out.push(if e < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", e.abs()));
    out
}

/// Java's `String.format(pattern, args)` for the conversions Atlas's labels use: `%f`, `%e`
/// (numbers, in order) and `%s` (strings, in order), each with an optional `-`, width and
/// precision.
pub fn jformat(pattern: &str, nums: &[f64], strs: &[&str]) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    let (mut ni, mut si) = (0, 0);
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        if chars.peek() == Some(&'-') {
            left = true;
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = width * 10 + d as usize;
            chars.next();
        }
        let mut prec = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0usize;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = p * 10 + d as usize;
                chars.next();
            }
            prec = Some(p);
        }
        let body = match chars.next() {
            Some('f') => {
                let v = nums.get(ni).copied().unwrap_or(f64::NAN);
                ni += 1;
                fixed(v, prec.unwrap_or(6))
            }
            Some('e') => {
                let v = nums.get(ni).copied().unwrap_or(f64::NAN);
                ni += 1;
                sci(v, prec.unwrap_or(6))
            }
            Some('s') => {
                let s = strs.get(si).copied().unwrap_or("");
                si += 1;
                s.to_string()
            }
            Some('%') => "%".to_string(),
            Some(other) => format!("%{other}"),
            None => "%".to_string(),
        };
        let pad = width.saturating_sub(body.chars().count());
        if left {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&body);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// UnitPrefix

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitPrefix {
    pub symbol: &'static str,
    pub factor: f64,
}

const fn up(symbol: &'static str, factor: f64) -> UnitPrefix {
    UnitPrefix { symbol, factor }
}

pub const ONE: UnitPrefix = up("", 1.0);
const KILO: UnitPrefix = up("k", 1.0e3);
const YOTTA: UnitPrefix = up("Y", 1.0e24);
const YOCTO: UnitPrefix = up("y", 1.0e-24);
const DECIMAL_BIG: [UnitPrefix; 8] = [
    YOTTA,
    up("Z", 1.0e21),
    up("E", 1.0e18),
    up("P", 1.0e15),
    up("T", 1.0e12),
    up("G", 1.0e9),
    up("M", 1.0e6),
    KILO,
];
const DECIMAL_SMALL: [UnitPrefix; 8] = [
    up("m", 1.0e-3),
    up("\u{3bc}", 1.0e-6),
    up("n", 1.0e-9),
    up("p", 1.0e-12),
    up("f", 1.0e-15),
    up("a", 1.0e-18),
    up("z", 1.0e-21),
    YOCTO,
];
const KIBI: f64 = 1024.0;
/// kibi .. yobi, smallest first.
const BINARY: [UnitPrefix; 8] = [
    up("Ki", KIBI),
    up("Mi", KIBI * KIBI),
    up("Gi", KIBI * KIBI * KIBI),
    up("Ti", KIBI * KIBI * KIBI * KIBI),
    up("Pi", KIBI * KIBI * KIBI * KIBI * KIBI),
    up("Ei", KIBI * KIBI * KIBI * KIBI * KIBI * KIBI),
    up("Zi", KIBI * KIBI * KIBI * KIBI * KIBI * KIBI * KIBI),
    up("Yi", KIBI * KIBI * KIBI * KIBI * KIBI * KIBI * KIBI * KIBI),
];
const PICOS: UnitPrefix = up("ps", 1.0e-12);
const NANOS: UnitPrefix = up("ns", 1.0e-9);
const SEC: UnitPrefix = up("s", 1.0);
const DAY: f64 = 3600.0 * 24.0;
pub const YEAR: UnitPrefix = up("y", DAY * 365.0);
/// millis, micros, nanos, picos.
const DURATION_SMALL: [UnitPrefix; 4] = [up("ms", 1.0e-3), up("\u{3bc}s", 1.0e-6), NANOS, PICOS];
/// year, week, day, hour, min, sec.
const DURATION_BIG: [UnitPrefix; 6] = [
    YEAR,
    up("w", DAY * 7.0),
    up("d", DAY),
    up("h", 3600.0),
    up("m", 60.0),
    SEC,
];

fn nearly_zero(v: f64) -> bool {
    v.is_nan() || v.abs() < 1e-12
}

fn extreme(v: f64) -> bool {
    let d = v.abs();
    v.is_finite() && (d >= 1e27 || (d <= 1e-27 && d >= f64::from_bits(1)))
}

impl UnitPrefix {
    /// `format(value, fmtstr)`: the pattern with the scaled value and the symbol.
    pub fn plain(&self, v: f64, fmt: &str) -> String {
        jformat(fmt, &[v / self.factor], &[self.symbol])
    }

    /// `format(v, fmtstr, scifmt)`: scientific notation for extreme exponents.
    pub fn format(&self, v: f64, fmt: &str, scifmt: &str) -> String {
        if extreme(v) {
            let f = if v >= 0.0 {
                format!(" {scifmt}")
            } else {
                scifmt.to_string()
            };
            jformat(&f, &[v], &[])
        } else {
            self.plain(v, fmt)
        }
    }
}

/// `UnitPrefix.format(v)`: `%.1f%s` with a decimal prefix.
pub fn format_default(v: f64) -> String {
    decimal(v).format(v, "%.1f%s", "%.0e")
}

pub fn decimal(value: f64) -> UnitPrefix {
    let v = value.abs();
    if nearly_zero(v) || !v.is_finite() {
        ONE
    } else if v >= KILO.factor {
        DECIMAL_BIG
            .iter()
            .copied()
            .find(|p| p.factor <= v)
            .unwrap_or(YOTTA)
    } else if v < 1.0 {
        DECIMAL_SMALL
            .iter()
            .copied()
            .find(|p| p.factor <= v)
            .unwrap_or(YOCTO)
    } else {
        ONE
    }
}

pub fn binary(value: f64) -> UnitPrefix {
    let v = value.abs();
    if nearly_zero(v) || !v.is_finite() {
        ONE
    } else if v >= KIBI {
        BINARY
            .iter()
            .rev()
            .copied()
            .find(|p| p.factor <= v)
            .unwrap_or(BINARY[7])
    } else if v < 1.0 {
        DECIMAL_SMALL
            .iter()
            .copied()
            .find(|p| p.factor <= v)
            .unwrap_or(YOCTO)
    } else {
        ONE
    }
}

pub fn duration(value: f64) -> UnitPrefix {
    let v = value.abs();
    if nearly_zero(v) || !v.is_finite() {
        SEC
    } else if v >= 1.0 {
        DURATION_BIG
            .iter()
            .copied()
            .find(|p| p.factor <= v)
            .unwrap_or(YEAR)
    } else {
        DURATION_SMALL
            .iter()
            .copied()
            .find(|p| p.factor <= v)
            .unwrap_or(PICOS)
    }
}

fn within(p: UnitPrefix, v: f64, f: f64) -> bool {
    let a = v.abs();
    a >= p.factor / f && a < p.factor * f
}

pub fn for_range(value: f64, digits: f64) -> UnitPrefix {
    let f = 10f64.powf(digits);
    let v = value.abs();
    if nearly_zero(v) || !v.is_finite() || within(ONE, v, f) {
        ONE
    } else if v >= KILO.factor / f {
        // `findLast` over yotta..kilo: the smallest prefix within range.
        DECIMAL_BIG
            .iter()
            .copied()
            .rfind(|p| within(*p, v, f))
            .unwrap_or(YOTTA)
    } else if v < 1.0 / f {
        DECIMAL_SMALL
            .iter()
            .copied()
            .find(|p| within(*p, v, f))
            .unwrap_or(YOCTO)
    } else {
        ONE
    }
}

pub fn binary_range(value: f64, digits: f64) -> UnitPrefix {
    let f = 10f64.powf(digits);
    let v = value.abs();
    if nearly_zero(v) || !v.is_finite() || within(ONE, v, f) {
        ONE
    } else if v >= KIBI / f {
        BINARY
            .iter()
            .copied()
            .find(|p| within(*p, v, f))
            .unwrap_or(BINARY[7])
    } else if v < 1.0 / f {
        DECIMAL_SMALL
            .iter()
            .copied()
            .find(|p| within(*p, v, f))
            .unwrap_or(YOCTO)
    } else {
        ONE
    }
}

pub fn duration_range(value: f64) -> UnitPrefix {
    let v = value.abs();
    if nearly_zero(v) || !v.is_finite() {
        SEC
    } else if v >= 1.0 {
        let mut last = SEC;
        let mut found = None;
        for p in DURATION_BIG.iter().rev().copied() {
            if p != last {
                if found.is_none() && v >= last.factor && v < p.factor {
                    found = Some(last);
                }
                last = p;
            }
        }
        found.unwrap_or(YEAR)
    } else {
        DURATION_SMALL
            .iter()
            .copied()
            .find(|p| v > p.factor)
            .unwrap_or(NANOS)
    }
}

// ---------------------------------------------------------------------------------------------
// Scales

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
    LogLinear,
    Pow2,
    Sqrt,
}

impl Scale {
    pub fn from_name(s: &str) -> Result<Scale, String> {
        Ok(match s {
            "linear" => Scale::Linear,
            "log" => Scale::Log,
            "log-linear" => Scale::LogLinear,
            "pow2" => Scale::Pow2,
            "sqrt" => Scale::Sqrt,
            _ => {
                return Err(format!(
                    "unknown scale type '{s}', should be linear, log, log-linear, pow2, or sqrt"
                ))
            }
        })
    }
}

/// Java's `double.toInt`: truncation, NaN 0, saturating.
fn to_int(v: f64) -> i32 {
    v as i32
}

fn vlog10(v: f64) -> f64 {
    if v > 0.0 {
        (v + 1.0).log10()
    } else if v < 0.0 {
        -(-(v - 1.0)).log10()
    } else {
        0.0
    }
}

fn vpow(v: f64, exp: f64) -> f64 {
    if v > 0.0 {
        v.powf(exp)
    } else if v < 0.0 {
        -(-v).powf(exp)
    } else {
        0.0
    }
}

/// A value scale: data `[d1, d2]` onto pixels `[r1, r2]`, larger values up (`Scales.yscale`).
#[derive(Debug, Clone, Copy)]
pub struct ValueScale {
    scale: Scale,
    d1: f64,
    d2: f64,
    r1: i32,
    r2: i32,
    /// log-linear: the first bucket and pixels per bucket, when the range spans buckets.
    buckets: Option<(i32, f64)>,
}

impl ValueScale {
    pub fn new(scale: Scale, d1: f64, d2: f64, r1: i32, r2: i32) -> ValueScale {
        let (d1, d2) = match scale {
            Scale::Linear | Scale::LogLinear => (d1, d2),
            Scale::Log => (vlog10(d1), vlog10(d2)),
            Scale::Pow2 => (vpow(d1, 2.0), vpow(d2, 2.0)),
            Scale::Sqrt => (vpow(d1, 0.5), vpow(d2, 0.5)),
        };
        let mut buckets = None;
        if scale == Scale::LogLinear {
            let b1 = log_linear::bucket_index(d1) - 1;
            let b2 = log_linear::bucket_index(d2);
            if b1 != b2 {
                buckets = Some((b1, f64::from(r2 - r1) / f64::from((b2 - b1).abs())));
            }
        }
        ValueScale {
            scale,
            d1,
            d2,
            r1,
            r2,
            buckets,
        }
    }

    fn linear(&self, v: f64) -> i32 {
        let span = (self.d2 - self.d1) / f64::from(self.r2 - self.r1);
        to_int((v - self.d1) / span).saturating_add(self.r1)
    }

    /// The pixel row of `v`.
    pub fn y(&self, v: f64) -> i32 {
        let std = match self.scale {
            Scale::Linear => self.linear(v),
            Scale::Log => self.linear(vlog10(v)),
            Scale::Pow2 => self.linear(vpow(v, 2.0)),
            Scale::Sqrt => self.linear(vpow(v, 0.5)),
            Scale::LogLinear => match self.buckets {
                None => self.linear(v),
                Some((b1, ppb)) => to_int(log_linear::position(v, b1, ppb)).saturating_add(self.r1),
            },
        };
        self.r2.saturating_sub(std).saturating_add(self.r1)
    }
}

/// `Scales.inverted(scale)(d1, d2, r1, r2)`: the value at a position (the largest the position
/// covers), for `Ticks.simple`.
pub fn inverted(scale: Scale, d1: f64, d2: f64, r1: i32, r2: i32, v: i32) -> f64 {
    let lin = |d1: f64, d2: f64| {
        let span = (d2 - d1) / f64::from(r2 - r1);
        f64::from(v - r1) * span + d1
    };
    // Atlas's inverse of its `log10` (which is `log10(v + 1)`) adds the 1 rather than
    // subtracting it; kept, so the heatmap's colour ticks read as Atlas's.
    let pow10 = |x: f64| {
        if x > 0.0 {
            10f64.powf(x) + 1.0
        } else if x < 0.0 {
            -(10f64.powf(-x)) - 1.0
        } else {
            0.0
        }
    };
    match scale {
        Scale::Linear => lin(d1, d2),
        Scale::Log => pow10(lin(vlog10(d1), vlog10(d2))),
        Scale::Pow2 => vpow(lin(vpow(d1, 2.0), vpow(d2, 2.0)), 0.5),
        Scale::Sqrt => vpow(lin(vpow(d1, 0.5), vpow(d2, 0.5)), 2.0),
        Scale::LogLinear => {
            let b1 = if d1 >= 0.0 {
                (log_linear::bucket_index(d1) - 1).max(0)
            } else {
                log_linear::bucket_index(d1) - 1
            };
            let b2 = log_linear::bucket_index(d2);
            if b1 == b2 {
                lin(d1, d2)
            } else {
                let ppb = f64::from(r2 - r1) / f64::from((b2 - b1).abs());
                log_linear::bucket(to_int(f64::from(v - r1) / ppb) + b1)
            }
        }
    }
}

/// `Ticks.simple`: `n` ticks at the values the inverted scale gives `1..=n`, after `min`.
pub fn simple(min: f64, max: f64, n: i32, scale: Scale) -> Vec<ValueTick> {
    let mut out = vec![ValueTick::new(min, 0.0)];
    for i in 1..=n.clamp(0, 10_000) {
        out.push(ValueTick::new(inverted(scale, min, max, 0, n, i), 0.0));
    }
    out
}

/// `Scales.time`: a timestamp (ms) onto a pixel column.
#[derive(Debug, Clone, Copy)]
pub struct TimeScale {
    t1: f64,
    step: f64,
    pps: f64,
    r1: i32,
}

impl TimeScale {
    pub fn new(t1: i64, t2: i64, step: i64, r1: i32, r2: i32) -> TimeScale {
        let (d1, d2, step) = (t1 as f64, t2 as f64, step as f64);
        let dr = (d2 - d1) / step;
        TimeScale {
            t1: d1,
            step,
            pps: f64::from(r2 - r1) / dr,
            r1,
        }
    }

    pub fn x(&self, t: i64) -> i32 {
        to_int((t as f64 - self.t1) / self.step * self.pps).saturating_add(self.r1)
    }
}

pub mod log_linear {
    //! `LogLinear.scala`: powers of ten, linear between them.

    pub fn bucket(i: i32) -> f64 {
        if i < 0 {
            -bucket(-i - 1)
        } else {
            bucket_span(i) * f64::from(i % 9 + 1)
        }
    }

    pub fn bucket_span(i: i32) -> f64 {
        let idx = if i < 0 { -i - 1 } else { i };
        10f64.powf(f64::from(idx / 9 - 9))
    }

    pub fn bucket_index(v: f64) -> i32 {
        if v < 0.0 {
            -bucket_index(-v) - 1
        } else if v == 0.0 || v.is_nan() {
            0
        } else {
            let lg = (-9.0f64).max(v.log10().floor());
            let prev = (lg as i32 + 9) * 9;
            let e = 6.0 - lg;
            if e >= 0.0 {
                let n = (v * 10f64.powf(e)) as i64;
                let exp = lg as i32 + e as i32;
                let p10 = 10i64.saturating_pow(exp.max(0) as u32);
                ((n - 1) / p10) as i32 + prev
            } else {
                let p10 = 10f64.powf(lg);
                let delta = v - p10;
                (delta / p10).ceil() as i32 + prev
            }
        }
    }

    fn ratio(v: f64, i: i32) -> f64 {
        if v < 0.0 {
            1.0 - ratio(-v, -i - 1)
        } else {
            let span = bucket_span(i);
            let boundary = bucket(i) - span;
            (v - boundary) / span
        }
    }

    pub fn position(v: f64, min: i32, pixels_per_bucket: f64) -> f64 {
        let i = bucket_index(v);
        let offset = (f64::from(i - min - 1)).max(0.0) * pixels_per_bucket;
        ratio(v, i) * pixels_per_bucket + offset
    }
}

// ---------------------------------------------------------------------------------------------
// Value ticks

#[derive(Debug, Clone, PartialEq)]
pub struct ValueTick {
    pub v: f64,
    pub offset: f64,
    pub major: bool,
    pub label_opt: Option<String>,
}

impl ValueTick {
    fn new(v: f64, offset: f64) -> ValueTick {
        ValueTick {
            v,
            offset,
            major: true,
            label_opt: None,
        }
    }

    pub fn label(&self) -> String {
        self.label_opt
            .clone()
            .unwrap_or_else(|| format_default(self.v - self.offset))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickLabelMode {
    Off,
    Decimal,
    Binary,
    Duration,
}

impl TickLabelMode {
    pub fn parse(s: &str) -> Result<TickLabelMode, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "off" => TickLabelMode::Off,
            "decimal" => TickLabelMode::Decimal,
            "binary" => TickLabelMode::Binary,
            "duration" => TickLabelMode::Duration,
            _ => {
                return Err(format!(
                "tick_labels: unknown value '{s}', acceptable values are off, decimal, and binary"
            ))
            }
        })
    }
}

type Size = (f64, f64, i32);

const BASE_SIZES: [(i32, i32); 5] = [(10, 2), (20, 5), (30, 10), (40, 10), (50, 10)];

fn decade_sizes(range: std::ops::RangeInclusive<i32>) -> Vec<Size> {
    let mut out = Vec::new();
    for i in range {
        let f = 10f64.powf(f64::from(i));
        for (major, minor) in BASE_SIZES {
            out.push((f64::from(major) * f, f64::from(minor) * f, major / minor));
        }
    }
    out
}

fn value_sizes() -> &'static [Size] {
    static S: std::sync::OnceLock<Vec<Size>> = std::sync::OnceLock::new();
    S.get_or_init(|| decade_sizes(-25..=25))
}

fn binary_sizes() -> &'static [Size] {
    static S: std::sync::OnceLock<Vec<Size>> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let mut out = decade_sizes(-1..=1);
        let multiples = [1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500];
        for p in BINARY {
            for m in multiples {
                out.push((p.factor * f64::from(m), p.factor / 4.0 * f64::from(m), 4));
            }
        }
        out
    })
}

fn duration_sizes() -> &'static [Size] {
    static S: std::sync::OnceLock<Vec<Size>> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let mut ticks = decade_sizes(-25..=-2);
        let multiples: [&[i64]; 5] = [
            &[1, 2, 3, 4, 5, 6, 10, 15, 30, 60],
            &[4, 5, 6, 10, 15, 30, 3600],
            &[1, 2, 3, 4, 6, 12, 3600 * 24],
            &[1, 2, 4, 6, 12, 24, 86400 * 7],
            &[1, 2, 3, 4, 6, 86400 * 365],
        ];
        let reversed: Vec<UnitPrefix> = DURATION_BIG.iter().rev().copied().collect();
        for i in 1..DURATION_BIG.len() {
            let next = reversed[i];
            for m in multiples[i - 1].iter().rev() {
                let q = next.factor / *m as f64;
                ticks.push((q, q / 4.0, 4));
            }
        }
        for m in [1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500] {
            ticks.push((
                YEAR.factor * f64::from(m),
                YEAR.factor / 4.0 * f64::from(m),
                4,
            ));
        }
        ticks.extend(decade_sizes(10..=25));
        ticks
    })
}

fn round_to(v: f64, s: f64) -> f64 {
    s * (v / s).floor()
}

fn range_of(v1: f64, v2: f64) -> f64 {
    let r = v2 - v1;
    if r < 1e-12 {
        1.0
    } else {
        r
    }
}

fn sci_ticks(v1: f64, v2: f64) -> Vec<ValueTick> {
    vec![ValueTick::new(v1, 0.0), ValueTick::new(v2, 0.0)]
}

fn major_label_duplication(ticks: &[ValueTick]) -> bool {
    let labels: Vec<String> = ticks
        .iter()
        .filter(|t| t.major)
        .map(|t| t.label())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = labels.iter().collect();
    labels.len() > distinct.len()
}

/// `Ticks.value`: about `n` major ticks over `[v1, v2]`, decimal prefixes. The bounds must be
/// finite with `v1 <= v2` (the caller's bounds always are).
pub fn value(v1: f64, v2: f64, n: i32, scale: Scale) -> Vec<ValueTick> {
    if !(v1.is_finite() && v2.is_finite() && v1 <= v2) {
        return sci_ticks(v1, v2);
    }
    let r = range_of(v1, v2);
    if scale == Scale::LogLinear {
        return log_linear_ticks(v1, v2, n);
    }
    match value_sizes().iter().find(|t| r / t.0 <= f64::from(n)) {
        None => sci_ticks(v1, v2),
        Some(t) => decimal_ticks(v1, v2, n, *t, scale),
    }
}

fn log_linear_ticks(v1: f64, v2: f64, n: i32) -> Vec<ValueTick> {
    let s = log_linear::bucket_index(v1);
    let e = log_linear::bucket_index(v2);
    let pos_and_neg = s < 0 && e > 0;
    let num = e - s;
    let n = n.max(1);
    let major_mod = ((num / 9 + n - 1) / n * 9).max(1);
    let idx = |i: i32| if i < 0 { -i - 1 } else { i };
    let is_major = |i: i32| num <= n || idx(i) % major_mod == 0;
    let include = |i: i32| {
        let max_ticks = n * 9;
        num < max_ticks || (num / 3 < max_ticks && idx(i) % 3 == 0) || idx(i) % 9 == 0
    };
    let mut out = Vec::new();
    for i in s..=e {
        let b = log_linear::bucket(i);
        if b < v1 || b > v2 || (pos_and_neg && i == -1) {
            continue;
        }
        if pos_and_neg && i == 0 {
            out.push(ValueTick::new(0.0, 0.0));
        } else if include(i) {
            let mut t = ValueTick::new(b, 0.0);
            t.major = is_major(i);
            out.push(t);
        }
    }
    out
}

pub fn binary_ticks_for(v1: f64, v2: f64, n: i32) -> Vec<ValueTick> {
    if !(v1.is_finite() && v2.is_finite() && v1 <= v2) {
        return sci_ticks(v1, v2);
    }
    let r = range_of(v1, v2);
    match binary_sizes().iter().find(|t| r / t.0 <= f64::from(n)) {
        None => sci_ticks(v1, v2),
        Some(t) => binary_ticks(v1, v2, *t),
    }
}

pub fn duration_ticks_for(v1: f64, v2: f64, n: i32) -> Vec<ValueTick> {
    if !(v1.is_finite() && v2.is_finite() && v1 <= v2) {
        return sci_ticks(v1, v2);
    }
    let r = range_of(v1, v2);
    match duration_sizes().iter().find(|t| r / t.0 <= f64::from(n)) {
        None => sci_ticks(v1, v2),
        Some(t) => duration_ticks(v1, v2, *t, None),
    }
}

fn label_format(prefix: UnitPrefix, v: f64) -> &'static str {
    let i = to_int(v / prefix.factor * 1000.0);
    if i % 10 > 0 {
        "%.3f%s"
    } else if i % 100 > 0 {
        "%.2f%s"
    } else {
        "%.1f%s"
    }
}

/// The ticks from `base` in steps of `minor` that lie in `[v1, v2]`, each labelled.
fn stepped(
    v1: f64,
    v2: f64,
    (major, minor, per): Size,
    label: impl Fn(f64) -> String,
) -> (f64, Vec<ValueTick>) {
    let base = round_to(v1, major);
    let end = to_int((v2 - base) / minor) + 1;
    let mut ticks = Vec::new();
    for pos in 0..=end.clamp(0, 100_000) {
        let v = base + f64::from(pos) * minor;
        if v >= v1 && v <= v2 {
            ticks.push(ValueTick {
                v,
                offset: 0.0,
                major: pos % per.max(1) == 0,
                label_opt: Some(label(v)),
            });
        }
    }
    (base, ticks)
}

fn normal_ticks(v1: f64, v2: f64, t: Size) -> Vec<ValueTick> {
    let m = for_range(t.0, 3.0);
    let prefix = if v2.abs() <= 10.0 * m.factor {
        m
    } else {
        for_range(v2.abs(), 3.0)
    };
    let fmt = label_format(prefix, t.0);
    let (base, ticks) = stepped(v1, v2, t, |v| prefix.format(v, fmt, "%.0e"));
    if major_label_duplication(&ticks) {
        ticks
            .into_iter()
            .map(|t| ValueTick {
                offset: base,
                label_opt: None,
                ..t
            })
            .collect()
    } else {
        ticks
    }
}

fn decimal_ticks(v1: f64, v2: f64, n: i32, t: Size, scale: Scale) -> Vec<ValueTick> {
    if scale != Scale::Log {
        return normal_ticks(v1, v2, t);
    }
    let limit = 2;
    let mut out = if v1 >= 0.0 {
        let d = log_diff(v1, v2);
        if d <= limit {
            return normal_ticks(v1, v2, t);
        }
        log_scale_ticks(v1, v2, log_major_step(d, n))
    } else if v2 <= 0.0 {
        let d = log_diff(-v2, -v1);
        if d <= limit {
            return normal_ticks(v1, v2, t);
        }
        to_neg(log_scale_ticks(-v2, -v1, log_major_step(d, n)))
    } else {
        let pos = log_diff(0.0, v2);
        let neg = log_diff(0.0, -v1);
        if pos <= limit && neg <= limit {
            return normal_ticks(v1, v2, t);
        }
        let step = log_major_step(pos + neg, n);
        let mut negs = to_neg(log_scale_ticks(0.0, -v1, step));
        negs.pop();
        negs.extend(log_scale_ticks(0.0, v2, step));
        negs
    };
    if out.first().is_some_and(|t| t.v < v1) {
        out.remove(0);
    }
    if out.last().is_some_and(|t| t.v > v2) {
        out.pop();
    }
    out
}

fn to_neg(ticks: Vec<ValueTick>) -> Vec<ValueTick> {
    ticks
        .into_iter()
        .rev()
        .map(|t| ValueTick {
            v: -t.v,
            label_opt: t.label_opt.map(|l| format!("-{l}")),
            ..t
        })
        .collect()
}

fn log_scale_ticks(v1: f64, v2: f64, step: i32) -> Vec<ValueTick> {
    let min = log_floor(v1);
    let max = log_ceil(v2);
    let mut out = Vec::new();
    let mut curr = min;
    while curr <= max && out.len() < 1000 {
        let v = if v1 == 0.0 && curr == 0 {
            0.0
        } else {
            10f64.powf(f64::from(curr))
        };
        out.push(ValueTick {
            v,
            offset: 0.0,
            major: (curr - min) % step.max(1) == 0,
            label_opt: Some(decimal(v).format(v, "%.0f%s", "%.0e")),
        });
        curr += 1;
    }
    out
}

fn log_major_step(d: i32, n: i32) -> i32 {
    if d <= n {
        1
    } else {
        (f64::from(d) / f64::from(n.max(1))).ceil() as i32
    }
}

fn log_diff(v1: f64, v2: f64) -> i32 {
    log_ceil(v2) - log_floor(v1)
}

fn log_floor(v: f64) -> i32 {
    if v <= 1.0 {
        0
    } else {
        v.log10().floor() as i32
    }
}

fn log_ceil(v: f64) -> i32 {
    v.log10().ceil() as i32
}

fn binary_label_format(prefix: UnitPrefix, v: f64) -> &'static str {
    let i = to_int(v / prefix.factor * 1000.0);
    if i % 10 > 0 {
        "%.2f%s"
    } else if i % 100 > 0 {
        "%.1f%s"
    } else {
        "%.0f%s"
    }
}

fn binary_prefix(v: f64, major: f64) -> UnitPrefix {
    let m = binary_range(major, 4.0);
    if v < 10.0 * m.factor {
        m
    } else {
        binary_range(v, 4.0)
    }
}

fn binary_ticks(v1: f64, v2: f64, t: Size) -> Vec<ValueTick> {
    let prefix = binary_prefix(v2.abs(), t.0);
    let fmt = binary_label_format(prefix, t.0);
    let (base, ticks) = stepped(v1, v2, t, |v| prefix.format(v, fmt, "%.0e"));
    if ticks.is_empty() {
        return vec![ValueTick::new(v1, v1), ValueTick::new(v2, v1)];
    }
    if t.0 < v1.abs() / 1e2 {
        let max = ticks.iter().map(|t| t.v - base).fold(f64::MIN, f64::max);
        let op = binary_prefix(max, max);
        let fmt = binary_label_format(op, max);
        ticks
            .into_iter()
            .map(|t| ValueTick {
                offset: base,
                label_opt: Some(op.format(t.v - base, fmt, "%.0e")),
                ..t
            })
            .collect()
    } else {
        ticks
    }
}

fn duration_prefix(v: f64, major: f64) -> UnitPrefix {
    let m = duration_range(major);
    if v <= m.factor {
        m
    } else {
        duration_range(v)
    }
}

fn duration_label_format(prefix: UnitPrefix, v: f64) -> &'static str {
    let f = if v < 1.0 { v / prefix.factor } else { v };
    let i = (f * 1000.0).round() as i64;
    if v >= 3.1536e10 {
        "%.1e%s"
    } else if v >= 60.0 {
        "%.0f%s"
    } else if i % 10 > 0 {
        "%.3f%s"
    } else if i % 100 > 0 {
        "%.2f%s"
    } else {
        "%.1f%s"
    }
}

fn prev_duration_prefix(prefix: UnitPrefix) -> UnitPrefix {
    if prefix == SEC {
        DURATION_SMALL
            .iter()
            .copied()
            .find(|p| p.factor < prefix.factor)
            .unwrap_or(prefix)
    } else {
        DURATION_BIG
            .iter()
            .copied()
            .find(|p| p.factor < prefix.factor)
            .unwrap_or(prefix)
    }
}

fn duration_ticks(v1: f64, v2: f64, t: Size, prev: Option<UnitPrefix>) -> Vec<ValueTick> {
    let prefix = prev.unwrap_or_else(|| duration_prefix(v2.abs(), t.0));
    let fmt = duration_label_format(prefix, v2);
    let (base, ticks) = stepped(v1, v2, t, |v| prefix.format(v, fmt, "%.0e"));
    if !major_label_duplication(&ticks) {
        return ticks;
    }
    if prev.is_none() && v2 < YEAR.factor * 2.0 && v2 > 1e-3 {
        return duration_ticks(v1, v2, t, Some(prev_duration_prefix(prefix)));
    }
    let op = duration_prefix(v2 - v1, t.0);
    let fmt = duration_label_format(prefix, t.0);
    ticks
        .into_iter()
        .map(|t| ValueTick {
            offset: base,
            label_opt: Some(op.format(t.v - base, fmt, "%.0e")),
            ..t
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Time ticks

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFmt {
    /// A significant boundary: `:ss`, `HH:mm`, or `MMMdd` at midnight.
    Auto,
    MonthDay,
    Month,
    Year,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeTick {
    pub timestamp: i64,
    pub major: bool,
    pub fmt: TimeFmt,
}

impl TimeTick {
    pub fn label(&self, zone: Tz) -> String {
        let Some(dt) = zone.timestamp_millis_opt(self.timestamp).single() else {
            return String::new();
        };
        let month = || dt.format("%b").to_string();
        match self.fmt {
            TimeFmt::Auto => {
                if dt.second() != 0 {
                    format!(":{:02}", dt.second())
                } else if dt.minute() != 0 || dt.hour() != 0 {
                    format!("{:02}:{:02}", dt.hour(), dt.minute())
                } else {
                    format!("{}{:02}", month(), dt.day())
                }
            }
            TimeFmt::MonthDay => format!("{}{:02}", month(), dt.day()),
            TimeFmt::Month => month(),
            TimeFmt::Year => format!("{:04}", dt.year()),
        }
    }
}

const SEC_MS: i64 = 1000;
const MIN_MS: i64 = 60 * SEC_MS;
const HOUR_MS: i64 = 60 * MIN_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

const TIME_SIZES: [(i64, i64); 25] = [
    (5 * SEC_MS, SEC_MS),
    (10 * SEC_MS, 2 * SEC_MS),
    (15 * SEC_MS, 5 * SEC_MS),
    (20 * SEC_MS, 5 * SEC_MS),
    (30 * SEC_MS, 10 * SEC_MS),
    (MIN_MS, 10 * SEC_MS),
    (2 * MIN_MS, 30 * SEC_MS),
    (3 * MIN_MS, MIN_MS),
    (5 * MIN_MS, MIN_MS),
    (10 * MIN_MS, 2 * MIN_MS),
    (15 * MIN_MS, 5 * MIN_MS),
    (20 * MIN_MS, 5 * MIN_MS),
    (30 * MIN_MS, 10 * MIN_MS),
    (HOUR_MS, 10 * MIN_MS),
    (2 * HOUR_MS, 30 * MIN_MS),
    (3 * HOUR_MS, HOUR_MS),
    (4 * HOUR_MS, HOUR_MS),
    (6 * HOUR_MS, 2 * HOUR_MS),
    (8 * HOUR_MS, 2 * HOUR_MS),
    (12 * HOUR_MS, 3 * HOUR_MS),
    (DAY_MS, 4 * HOUR_MS),
    (2 * DAY_MS, 8 * HOUR_MS),
    (7 * DAY_MS, DAY_MS),
    (14 * DAY_MS, 2 * DAY_MS),
    (28 * DAY_MS, 7 * DAY_MS),
];

/// The zone's UTC offset at `t` (ms), in ms.
pub fn offset_ms(zone: Tz, t: i64) -> i64 {
    use chrono::Offset;
    zone.timestamp_millis_opt(t)
        .single()
        .map_or(0, |d| i64::from(d.offset().fix().local_minus_utc()) * 1000)
}

/// `Ticks.time`: about `n` major ticks over `[s, e]` on the zone's significant boundaries.
pub fn time(s: i64, e: i64, zone: Tz, n: i32) -> Vec<TimeTick> {
    let shift = offset_ms(zone, s);
    let dur = e - s;
    let n64 = i64::from(n);
    if let Some(&(major, minor)) = TIME_SIZES.iter().find(|t| dur / t.0 <= n64) {
        let (zs, ze) = (s + shift, e + shift);
        let mut pos = zs / major * major;
        let mut out = Vec::new();
        while pos <= ze && out.len() < 10_000 {
            if pos >= zs {
                out.push(TimeTick {
                    timestamp: pos - shift,
                    major: pos % major == 0,
                    fmt: TimeFmt::Auto,
                });
            }
            pos += minor;
        }
        return out;
    }
    let local = |t: i64| {
        zone.timestamp_millis_opt(t)
            .single()
            .map(|d| d.date_naive())
            .unwrap_or_default()
    };
    let (start, end) = (local(s), local(e));
    let days = dur / DAY_MS;
    enum Unit {
        Days,
        Months,
        Years,
    }
    let (amount, unit, fmt) = if days <= n64 {
        (1, Unit::Days, TimeFmt::MonthDay)
    } else if days / 30 <= n64 {
        (1, Unit::Months, TimeFmt::Month)
    } else if days / 90 <= n64 {
        (3, Unit::Months, TimeFmt::Month)
    } else if days / 365 <= n64 {
        (1, Unit::Years, TimeFmt::Year)
    } else {
        (
            (days / (n64.max(1) * 365)).max(1),
            Unit::Years,
            TimeFmt::Year,
        )
    };
    let mut out = Vec::new();
    let mut t: NaiveDate = start;
    while t <= end && out.len() < 10_000 {
        let ts = t
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis()
            - shift;
        out.push(TimeTick {
            timestamp: ts,
            major: true,
            fmt,
        });
        let next = match unit {
            Unit::Days => t.checked_add_signed(Duration::days(amount)),
            Unit::Months => t.checked_add_months(chrono::Months::new(amount as u32)),
            Unit::Years => t.checked_add_months(chrono::Months::new(12 * amount as u32)),
        };
        match next {
            Some(n) => t = n,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_formatting() {
        assert_eq!(fixed(0.125, 2), "0.13");
        assert_eq!(fixed(1.005, 2), "1.01");
        assert_eq!(fixed(62.3294, 3), "62.329");
        assert_eq!(fixed(-0.04, 1), "-0.0");
        assert_eq!(fixed(0.0, 1), "0.0");
        assert_eq!(fixed(999.96, 1), "1000.0");
        assert_eq!(fixed(480.0, 3), "480.000");
        assert_eq!(fixed(0.0004, 1), "0.0");
        assert_eq!(sci(1.5e30, 1), "1.5e+30");
        assert_eq!(sci(5e-30, 0), "5e-30");
        assert_eq!(jformat("%9.3f%1s", &[62.329], &["k"]), "   62.329k");
        assert_eq!(jformat("%-11s|", &[], &["abc"]), "abc        |");
        assert_eq!(jformat("%9.3f%1s", &[f64::NAN], &[""]), "      NaN ");
    }

    #[test]
    fn unit_prefixes() {
        assert_eq!(
            decimal(62329.0).format(62329.0, "%9.3f%1s", "%8.1e "),
            "   62.329k"
        );
        assert_eq!(
            decimal(7.758).format(7.758, "%9.3f%1s", "%8.1e "),
            "    7.758 "
        );
        assert_eq!(format_default(16.826e6), "16.8M");
        assert_eq!(decimal(2e27).format(2e27, "%.1f%s", "%.0e"), " 2e+27");
        assert_eq!(for_range(999.0, 3.0), ONE);
        assert_eq!(for_range(1000.0, 3.0).symbol, "k");
        assert_eq!(for_range(5000.0, 3.0).symbol, "k");
    }
}
