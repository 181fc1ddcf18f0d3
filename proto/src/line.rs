//! One line of Graphite plaintext: `<path> <value> <timestamp>`.
//!
//! Fields are separated by runs of spaces or tabs, leading and trailing blanks (and the `\r` of
//! `\r\n`) are ignored, and there must be exactly three fields, as in carbon's line receiver.
//! Value and timestamp are floats (`1.5e3` is legal); the timestamp is truncated to whole seconds
//! and `-1` means "now". A NaN value is not an error: carbon drops such points, and so do we,
//! reporting it as [`Parsed::Skipped`]. Blank lines are skipped too.
//!
//! Parsing borrows from the input: a metric whose name is already canonical costs no allocation.

use std::borrow::Cow;

use nom::bytes::complete::{take_till1, take_while, take_while1};
use nom::combinator::eof;
use nom::sequence::tuple;
use nom::IResult;

use crate::error::{clip, LineError};
use crate::series_name::canonicalize;

/// The latest timestamp accepted: 9999-12-31T23:59:59Z. Later ones are typing mistakes.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// When a point was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timestamp {
    /// `-1` on the wire: the receiver's clock at arrival.
    Now,
    /// Unix seconds.
    At(i64),
}

impl Timestamp {
    /// Unix seconds, reading [`Timestamp::Now`] as `now`.
    pub fn resolve(self, now: i64) -> i64 {
        match self {
            Timestamp::Now => now,
            Timestamp::At(t) => t,
        }
    }
}

/// One point of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<'a> {
    /// The canonical series name (see [`crate::series_name`]).
    pub name: Cow<'a, str>,
    pub value: f64,
    pub timestamp: Timestamp,
}

impl Metric<'_> {
    /// A copy that owns its name.
    pub fn into_owned(self) -> Metric<'static> {
        Metric {
            name: Cow::Owned(self.name.into_owned()),
            value: self.value,
            timestamp: self.timestamp,
        }
    }
}

/// Why a good line produced no point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Nothing but blanks.
    Blank,
    /// The value was NaN, which carbon drops.
    NanValue,
}

/// The outcome of a line that is not an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed<'a> {
    Metric(Metric<'a>),
    Skipped(Skip),
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

/// The three fields of a line: path, value, timestamp.
type Fields<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn fields(input: &[u8]) -> IResult<&[u8], Fields<'_>> {
    let field = || take_till1(is_blank);
    let gap = || take_while1(is_blank);
    let (rest, (_, path, _, value, _, ts, _, _)) = tuple((
        take_while(is_blank),
        field(),
        gap(),
        field(),
        gap(),
        field(),
        take_while(is_blank),
        eof,
    ))(input)?;
    Ok((rest, (path, value, ts)))
}

/// Parses one line, without its `\n`.
pub fn parse_line(line: &[u8]) -> Result<Parsed<'_>, LineError> {
    let (path, value, ts) = match fields(line) {
        Ok((_, f)) => f,
        Err(_) => {
            let n = line
                .split(|&b| is_blank(b))
                .filter(|f| !f.is_empty())
                .count();
            if n == 0 {
                return Ok(Parsed::Skipped(Skip::Blank));
            }
            return Err(LineError::Fields(n));
        }
    };
    let value = parse_value(value).ok_or_else(|| LineError::Value(clip(value)))?;
    let timestamp = parse_timestamp(ts).ok_or_else(|| LineError::Timestamp(clip(ts)))?;
    if value.is_nan() {
        return Ok(Parsed::Skipped(Skip::NanValue));
    }
    let path = std::str::from_utf8(path).map_err(|_| LineError::Utf8)?;
    let name = canonicalize(path).map_err(|reason| LineError::Name {
        name: clip(path.as_bytes()),
        reason,
    })?;
    Ok(Parsed::Metric(Metric {
        name,
        value,
        timestamp,
    }))
}

fn parse_value(field: &[u8]) -> Option<f64> {
    if let Some(v) = parse_short_decimal(field) {
        return Some(v);
    }
    std::str::from_utf8(field).ok()?.parse::<f64>().ok()
}

/// `[-]digits[.digits]` with at most 15 significant digits, without the general float parser.
/// Clinger's fast path: the integer and 10^k are exact doubles, so one division is correctly
/// rounded and the result equals what `str::parse` gives.
fn parse_short_decimal(field: &[u8]) -> Option<f64> {
    let (neg, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut n: i64 = 0;
    let mut frac_digits: Option<i32> = None;
    let mut count = 0;
    for &b in digits {
        if b == b'.' {
            if frac_digits.is_some() {
                return None;
            }
            frac_digits = Some(0);
            continue;
        }
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + i64::from(d);
        count += 1;
        if let Some(f) = frac_digits.as_mut() {
            *f += 1;
        }
    }
    if count == 0 || count > 15 {
        return None;
    }
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let v = n as f64 / POW10[frac_digits.unwrap_or(0) as usize];
    Some(if neg { -v } else { v })
}

fn parse_timestamp(field: &[u8]) -> Option<Timestamp> {
    let t = match parse_digits(field) {
        Some(n) => n,
        None => {
            if field == b"-1" {
                return Some(Timestamp::Now);
            }
            let f = std::str::from_utf8(field).ok()?.parse::<f64>().ok()?;
            if !f.is_finite() {
                return None;
            }
            let t = f.trunc();
            if t == -1.0 {
                return Some(Timestamp::Now);
            }
            if !(0.0..=MAX_TIMESTAMP as f64).contains(&t) {
                return None;
            }
            t as i64
        }
    };
    (t <= MAX_TIMESTAMP).then_some(Timestamp::At(t))
}

/// The common case, an unsigned integer of up to 18 digits, without a float parse.
fn parse_digits(field: &[u8]) -> Option<i64> {
    if field.is_empty() || field.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &b in field {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + i64::from(d);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series_name::NameError;

    fn metric(name: &str, value: f64, ts: Timestamp) -> Parsed<'static> {
        Parsed::Metric(Metric {
            name: Cow::Owned(name.to_owned()),
            value,
            timestamp: ts,
        })
    }

    #[test]
    fn good_lines() {
        use Timestamp::*;
        let cases: &[(&[u8], Parsed)] = &[
            (
                b"a.b.c 1 1700000000",
                metric("a.b.c", 1.0, At(1_700_000_000)),
            ),
            (
                b"a.b.c 1.5e3 1700000000.9",
                metric("a.b.c", 1500.0, At(1_700_000_000)),
            ),
            (b"  a\t\t-2.25   17  \r", metric("a", -2.25, At(17))),
            (b"a 1 -1", metric("a", 1.0, Now)),
            (b"a 1 -1.5", metric("a", 1.0, Now)),
            (b"a inf 5", metric("a", f64::INFINITY, At(5))),
            (b"a -inf 5", metric("a", f64::NEG_INFINITY, At(5))),
            (b"a +3 5e0", metric("a", 3.0, At(5))),
            (
                b"r;host=w1;dc=ny 2 9",
                metric("r;dc=ny;host=w1", 2.0, At(9)),
            ),
            (b"a NaN 5", Parsed::Skipped(Skip::NanValue)),
            (b"a nan -1", Parsed::Skipped(Skip::NanValue)),
            (b"", Parsed::Skipped(Skip::Blank)),
            (b" \t\r", Parsed::Skipped(Skip::Blank)),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_line(line).as_ref(),
                Ok(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn bad_lines() {
        let cases: &[(&[u8], LineError)] = &[
            (b"a.b 1", LineError::Fields(2)),
            (b"a.b 1 2 3", LineError::Fields(4)),
            (b"a.b", LineError::Fields(1)),
            (b"a.b x 17", LineError::Value("x".into())),
            (
                b"a.b 1 17o0000000",
                LineError::Timestamp("17o0000000".into()),
            ),
            (b"a.b 1 nan", LineError::Timestamp("nan".into())),
            (b"a.b 1 -5", LineError::Timestamp("-5".into())),
            (
                b"a.b 1 99999999999999",
                LineError::Timestamp("99999999999999".into()),
            ),
            (b"a.b 1 1e300", LineError::Timestamp("1e300".into())),
            (b"a\xffb 1 2", LineError::Utf8),
            (
                b"a..b 1 2",
                LineError::Name {
                    name: "a..b".into(),
                    reason: NameError::EmptyNode,
                },
            ),
            (
                b"r;k=~v 1 2",
                LineError::Name {
                    name: "r;k=~v".into(),
                    reason: NameError::TildeValue("k".into()),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_line(line).as_ref(),
                Err(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn short_decimals_match_the_general_parser() {
        for text in [
            "0",
            "-0",
            "0.042",
            "-2.25",
            "123456789012345",
            "1.",
            ".5",
            "99.999",
            "0.1",
            "-0.000000000000001",
        ] {
            let want: f64 = text.parse().unwrap_or(f64::NAN);
            assert_eq!(
                parse_value(text.as_bytes()).map(f64::to_bits),
                Some(want.to_bits()),
                "{text}"
            );
        }
        assert_eq!(parse_short_decimal(b"1.2.3"), None);
        assert_eq!(parse_short_decimal(b"."), None);
        assert_eq!(parse_short_decimal(b"-"), None);
        assert_eq!(parse_short_decimal(b"1234567890123456"), None);
    }

    proptest::proptest! {
        #[test]
        fn value_parse_agrees_with_std(int in 0u64..10_000_000_000, frac in 0u32..1_000_000, neg: bool, k in 0usize..7) {
            let text = format!("{}{int}.{:0>width$}", if neg { "-" } else { "" }, frac % 10u32.pow(k as u32), width = k);
            let want: f64 = text.parse().unwrap_or(f64::NAN);
            proptest::prop_assert_eq!(parse_value(text.as_bytes()).map(f64::to_bits), Some(want.to_bits()), "{}", text);
        }
    }

    #[test]
    fn canonical_names_do_not_allocate() {
        let Ok(Parsed::Metric(m)) = parse_line(b"r;a=1;b=2 1 2") else {
            panic!("expected a metric");
        };
        assert!(matches!(m.name, Cow::Borrowed(_)));
    }
}
