//! The statsd line protocol, as Etsy's statsd reads it, with DogStatsD's tags.
//!
//! ```text
//! line  := name ':' part (':' part)* ['|#' tag (',' tag)*]
//! part  := value '|' type ['|@' rate]
//! type  := c | g | ms | h | d | s
//! ```
//!
//! A packet is several lines separated by `\n` (trailing `\r`s are dropped, empty lines are
//! skipped). Every part of a line is one metric; `a:1|c:20|ms` is a counter and a timer named
//! `a`. Where Etsy's `stats.js` accepts something this parser accepts it too, with the same
//! meaning, except:
//!
//! - numbers are decimal (`-1.5e3`, `.5`), finite; Etsy's JavaScript `Number` also takes hex,
//!   `Infinity` and surrounding blanks;
//! - `h` and `d` are timers here (DogStatsD's histograms and distributions), where Etsy counts
//!   any type it does not know as a counter; another type is bad here;
//! - timer values must be at least 0 for every timer type (Etsy: for `ms`);
//! - the sample rate must be a number above 0 (Etsy also takes `@0`, giving infinity);
//! - a DogStatsD field after the tags (`|c:` container id, `|T` timestamp) makes the line bad.
//!
//! The parser borrows from the line and never allocates; it hands every part to a callback,
//! either as a [`Metric`] or as [`Bad`] with the part quoted and the reason. The names and tags
//! are raw bytes here: what a series is called is decided later (`statsd::ingest`).

use std::fmt;

/// The kind and value of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// `|c`: add `value / rate`.
    Counter(f64),
    /// `|g`: set to the value, or with `delta` (a leading `+` or `-`) add it to the last value.
    Gauge { value: f64, delta: bool },
    /// `|ms`, `|h`, `|d`: one sample, at least 0.
    Timer { value: f64, unit: TimerType },
    /// `|s`: one member of the interval's set of unique values.
    Set(&'a [u8]),
}

/// Which of the timer types a sample came as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerType {
    /// `ms`: a duration in milliseconds.
    Ms,
    /// `h`: a histogram of any quantity.
    H,
    /// `d`: a distribution (DogStatsD), treated as `h`.
    D,
}

impl TimerType {
    fn code(self) -> &'static str {
        match self {
            TimerType::Ms => "ms",
            TimerType::H => "h",
            TimerType::D => "d",
        }
    }
}

/// One metric of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    /// The name as sent (not sanitized), never empty.
    pub name: &'a [u8],
    pub value: Value<'a>,
    /// The sample rate, `1.0` when none was sent (`rate_sent` tells).
    pub rate: f64,
    pub rate_sent: bool,
    /// The DogStatsD tags as sent, without `|#`: `k:v,k2:v2`; `None` without `|#`.
    pub tags: Option<&'a [u8]>,
}

/// A part of a line that is not a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad<'a> {
    /// The part of the line at fault (the whole line when its shape is wrong).
    pub part: &'a [u8],
    pub reason: &'static str,
}

impl fmt::Display for Bad<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: \"{}\"", self.reason, self.part.escape_ascii())
    }
}

/// Calls `f` for every line of a packet (split at `\n`, without trailing `\r`s, empty lines
/// skipped).
pub fn lines(packet: &[u8], mut f: impl FnMut(&[u8])) {
    for line in packet.split(|&b| b == b'\n') {
        // Every trailing `\r`, not one: one left at the end would end the last tag's value,
        // which could then not be written back (the fuzzer's find).
        let end = line.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
        let line = &line[..end];
        if !line.is_empty() {
            f(line);
        }
    }
}

/// Parses one line (no `\n` in it), handing each part to `f`.
pub fn parse_line<'a>(line: &'a [u8], mut f: impl FnMut(Result<Metric<'a>, Bad<'a>>)) {
    // `|#` by its `|`: a line is short, and `memmem::find` builds a searcher per call.
    let hash_at = memchr::memchr_iter(b'|', line).find(|&i| line.get(i + 1) == Some(&b'#'));
    let (head, tags) = match hash_at {
        Some(i) => (&line[..i], Some(&line[i + 2..])),
        None => (line, None),
    };
    if let Some(t) = tags {
        if t.contains(&b'|') {
            return f(Err(Bad {
                part: line,
                reason: "a field after the tags (DogStatsD's |c: or |T are not read)",
            }));
        }
    }
    let Some(colon) = memchr::memchr(b':', head) else {
        return f(Err(Bad {
            part: line,
            reason: "no ':' between name and value",
        }));
    };
    let name = &head[..colon];
    if name.is_empty() {
        return f(Err(Bad {
            part: line,
            reason: "empty name",
        }));
    }
    for part in head[colon + 1..].split(|&b| b == b':') {
        f(parse_part(name, part, tags));
    }
}

fn parse_part<'a>(
    name: &'a [u8],
    part: &'a [u8],
    tags: Option<&'a [u8]>,
) -> Result<Metric<'a>, Bad<'a>> {
    let bad = |reason| Err(Bad { part, reason });
    let mut fields = part.split(|&b| b == b'|');
    let value = fields.next().unwrap_or_default();
    let Some(ty) = fields.next() else {
        return bad("no '|' and type after the value");
    };
    let (rate, rate_sent) = match fields.next() {
        None => (1.0, false),
        Some(r) => match r.strip_prefix(b"@").and_then(number) {
            Some(x) if x > 0.0 && r.get(1) != Some(&b'-') => (x, true),
            _ => return bad("the sample rate is not @ and a number above 0"),
        },
    };
    if fields.next().is_some() {
        return bad("more fields than value, type and sample rate");
    }
    let value = match ty.trim_ascii() {
        b"c" => match number(value) {
            Some(v) => Value::Counter(v),
            None => return bad("the counter's value is not a number"),
        },
        b"g" => match number(value) {
            Some(v) => Value::Gauge {
                value: v,
                delta: matches!(value.first(), Some(b'+' | b'-')),
            },
            None => return bad("the gauge's value is not a number"),
        },
        t @ (b"ms" | b"h" | b"d") => match number(value) {
            Some(v) if v >= 0.0 => Value::Timer {
                value: v,
                unit: match t {
                    b"ms" => TimerType::Ms,
                    b"h" => TimerType::H,
                    _ => TimerType::D,
                },
            },
            Some(_) => return bad("a timer's value is below 0"),
            None => return bad("the timer's value is not a number"),
        },
        b"s" => Value::Set(value),
        _ => return bad("the type is not one of c, g, ms, h, d, s"),
    };
    Ok(Metric {
        name,
        value,
        rate,
        rate_sent,
        tags,
    })
}

/// A decimal number: `[+-]digits[.digits][e[+-]digits]` (either side of the point may be
/// empty, not both), finite.
pub(crate) fn number(s: &[u8]) -> Option<f64> {
    let body = match s.first() {
        Some(b'+' | b'-') => &s[1..],
        _ => s,
    };
    let mantissa_end = body
        .iter()
        .position(|&b| b == b'e' || b == b'E')
        .unwrap_or(body.len());
    let (mantissa, exp) = body.split_at(mantissa_end);
    let digits = mantissa.iter().filter(|b| b.is_ascii_digit()).count();
    let points = mantissa.iter().filter(|&&b| b == b'.').count();
    if digits == 0 || digits + points != mantissa.len() || points > 1 {
        return None;
    }
    if let Some(e) = exp.get(1..) {
        let e = e.strip_prefix(b"+").or(e.strip_prefix(b"-")).unwrap_or(e);
        if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    // Checked above: ASCII only, so the conversion cannot fail.
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// Writes a metric back as one line (with its `\n`): what [`parse_line`] reads as the same
/// metric. Used by the tests, the fuzz target and the benchmark's generator.
pub fn encode(m: &Metric<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(m.name);
    out.push(b':');
    match m.value {
        Value::Counter(v) => {
            push_number(out, v);
            out.extend_from_slice(b"|c");
        }
        Value::Gauge { value, delta } => {
            if delta && !value.is_sign_negative() {
                out.push(b'+');
            } else if !delta && value.is_sign_negative() {
                // An absolute negative value cannot be written: "-5" is a delta. Etsy's
                // clients send "0" and then the delta; so does this.
                out.extend_from_slice(b"0|g\n");
                out.extend_from_slice(m.name);
                out.push(b':');
            }
            push_number(out, value);
            out.extend_from_slice(b"|g");
        }
        Value::Timer { value, unit } => {
            push_number(out, value);
            out.push(b'|');
            out.extend_from_slice(unit.code().as_bytes());
        }
        Value::Set(member) => {
            out.extend_from_slice(member);
            out.extend_from_slice(b"|s");
        }
    }
    if m.rate_sent {
        out.extend_from_slice(b"|@");
        push_number(out, m.rate);
    }
    if let Some(t) = m.tags {
        out.extend_from_slice(b"|#");
        out.extend_from_slice(t);
    }
    out.push(b'\n');
}

fn push_number(out: &mut Vec<u8>, v: f64) {
    // Rust's `Display` of a finite f64 is the shortest text that parses back to it, never
    // with an exponent.
    use std::io::Write;
    let _ = write!(out, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Vec<Result<Metric<'_>, Bad<'_>>> {
        let mut out = Vec::new();
        parse_line(line.as_bytes(), |r| out.push(r));
        out
    }

    fn one(line: &str) -> Metric<'_> {
        match parse(line).as_slice() {
            [Ok(m)] => *m,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn bad(line: &str) -> String {
        match parse(line).as_slice() {
            [Err(b)] => b.to_string(),
            other => panic!("{line:?} is not one bad part: {other:?}"),
        }
    }

    #[test]
    fn every_type_with_rates_deltas_and_tags() {
        let m = one("api.hits:3|c|@0.1");
        assert_eq!(
            (m.name, m.value, m.rate),
            (&b"api.hits"[..], Value::Counter(3.0), 0.1)
        );
        assert!(m.rate_sent && m.tags.is_none());
        assert_eq!(
            one("q:-4|g").value,
            Value::Gauge {
                value: -4.0,
                delta: true
            }
        );
        assert_eq!(
            one("q:+4.5|g").value,
            Value::Gauge {
                value: 4.5,
                delta: true
            }
        );
        assert_eq!(
            one("q:7|g").value,
            Value::Gauge {
                value: 7.0,
                delta: false
            }
        );
        for (line, unit) in [
            ("t:320|ms", TimerType::Ms),
            ("t:320|h", TimerType::H),
            ("t:320|d", TimerType::D),
        ] {
            assert_eq!(one(line).value, Value::Timer { value: 320.0, unit });
        }
        assert_eq!(one("u:alice|s").value, Value::Set(b"alice"));
        assert_eq!(one("u:|s").value, Value::Set(b""));
        let m = one("req:1|c|#env:prod,region:eu");
        assert_eq!(m.tags, Some(&b"env:prod,region:eu"[..]));
        // Etsy trims blanks around the type.
        assert_eq!(one("a:1| c ").value, Value::Counter(1.0));
        for n in ["1e3", ".5", "5.", "-0", "+2", "1E-2"] {
            assert!(
                matches!(one(&format!("a:{n}|c")).value, Value::Counter(_)),
                "{n}"
            );
        }
    }

    #[test]
    fn several_parts_share_name_and_tags_and_bad_parts_do_not_spoil_good_ones() {
        let got = parse("a:1|c:x|ms:20|ms|#t:1");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].map(|m| m.value), Ok(Value::Counter(1.0)));
        assert_eq!(
            got[1].map(|m| m.value),
            Err(Bad {
                part: b"x|ms",
                reason: "the timer's value is not a number"
            })
        );
        assert_eq!(
            got[2].map(|m| (m.value, m.tags)),
            Ok((
                Value::Timer {
                    value: 20.0,
                    unit: TimerType::Ms
                },
                Some(&b"t:1"[..])
            ))
        );
        let mut lines_seen = Vec::new();
        lines(b"a:1|c\r\n\nb:2|c\nc:3|c\r\r\r\n\r\r", |l| {
            lines_seen.push(l.to_vec())
        });
        assert_eq!(lines_seen, [&b"a:1|c"[..], b"b:2|c", b"c:3|c"]);
    }

    #[test]
    fn bad_lines_say_why_and_quote_the_part() {
        let table = [
            ("nocolon", "no ':' between name and value: \"nocolon\""),
            (":1|c", "empty name: \":1|c\""),
            ("a:1", "no '|' and type after the value: \"1\""),
            ("a:|c", "the counter's value is not a number: \"|c\""),
            (
                "a:0x10|c",
                "the counter's value is not a number: \"0x10|c\"",
            ),
            ("a:inf|g", "the gauge's value is not a number: \"inf|g\""),
            ("a:NaN|ms", "the timer's value is not a number: \"NaN|ms\""),
            ("a:-1|ms", "a timer's value is below 0: \"-1|ms\""),
            ("a:1|x", "the type is not one of c, g, ms, h, d, s: \"1|x\""),
            (
                "a:1|c|@0",
                "the sample rate is not @ and a number above 0: \"1|c|@0\"",
            ),
            (
                "a:1|c|0.5",
                "the sample rate is not @ and a number above 0: \"1|c|0.5\"",
            ),
            (
                "a:1|c|@-0.5",
                "the sample rate is not @ and a number above 0: \"1|c|@-0.5\"",
            ),
            (
                "a:1|c|@1|x",
                "more fields than value, type and sample rate: \"1|c|@1|x\"",
            ),
            (
                "a:1|c|#t:1|c:abc",
                "a field after the tags (DogStatsD's |c: or |T are not read): \"a:1|c|#t:1|c:abc\"",
            ),
            (
                "a:1.2.3|c",
                "the counter's value is not a number: \"1.2.3|c\"",
            ),
            ("a:1e|c", "the counter's value is not a number: \"1e|c\""),
            (
                "a:\u{7f}|c",
                "the counter's value is not a number: \"\\x7f|c\"",
            ),
        ];
        for (line, want) in table {
            assert_eq!(bad(line), want, "{line:?}");
        }
    }

    /// A generated metric: name, type code, value, set member, sample rate, tags.
    type Generated = (Vec<u8>, u8, f64, Vec<u8>, Option<f64>, Option<Vec<u8>>);

    fn arb_metric() -> impl proptest::strategy::Strategy<Value = Generated> {
        use proptest::prelude::*;
        let name = proptest::collection::vec(
            any::<u8>().prop_filter("no separators", |b| {
                !matches!(b, b':' | b'\n' | b'|' | b'#')
            }),
            1..20,
        );
        let member = proptest::collection::vec(
            any::<u8>().prop_filter("no separators", |b| !matches!(b, b':' | b'\n' | b'|')),
            0..20,
        );
        let tags = proptest::option::of(proptest::collection::vec(
            any::<u8>().prop_filter("no separators", |b| !matches!(b, b'\n' | b'|')),
            0..30,
        ));
        let value = prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
            (0u32..100_000).prop_map(|i| f64::from(i) / 1000.0),
        ];
        let rate = proptest::option::of(prop_oneof![
            (1u32..=1000).prop_map(|i| f64::from(i) / 1000.0),
            any::<f64>().prop_filter("above 0", |v| v.is_finite() && *v > 0.0),
        ]);
        (name, 0u8..7, value, member, rate, tags)
    }

    proptest::proptest! {
        /// Any bytes: no panic, and every part is either a metric or bad.
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            lines(&bytes, |line| parse_line(line, |r| {
                if let Ok(m) = r {
                    assert!(!m.name.is_empty() && m.rate > 0.0);
                }
            }));
        }

        /// What the parser accepts, written back, parses to the same metrics.
        #[test]
        fn accepted_metrics_round_trip(parts in proptest::collection::vec(arb_metric(), 1..5)) {
            let mut packet = Vec::new();
            for (name, ty, value, member, rate, tags) in &parts {
                let name = &name[..];
                // A name that ends in the tag marker's first byte would merge with "|#".
                let value = match ty {
                    0 => Value::Counter(*value),
                    1 => Value::Gauge { value: *value, delta: true },
                    2 => Value::Gauge { value: *value, delta: false },
                    3 => Value::Timer { value: value.abs(), unit: TimerType::Ms },
                    4 => Value::Timer { value: value.abs(), unit: TimerType::H },
                    5 => Value::Timer { value: value.abs(), unit: TimerType::D },
                    _ => Value::Set(member),
                };
                let m = Metric { name, value, rate: rate.unwrap_or(1.0), rate_sent: rate.is_some(), tags: tags.as_deref() };
                encode(&m, &mut packet);
            }
            let mut first = Vec::new();
            lines(&packet, |l| parse_line(l, |r| first.push(r.map(|m| (m.name.to_vec(), format!("{:?}", m.value), m.rate, m.tags.map(<[u8]>::to_vec))).map_err(|b| b.to_string()))));
            proptest::prop_assert!(first.iter().all(Result::is_ok), "{first:?} from {:?}", packet.escape_ascii().to_string());
            let mut again = Vec::new();
            lines(&packet, |l| parse_line(l, |r| {
                if let Ok(m) = r {
                    let mut text = Vec::new();
                    encode(&m, &mut text);
                    lines(&text, |l2| parse_line(l2, |r2| again.push(r2.map(|m2| (m2.name.to_vec(), format!("{:?}", m2.value), m2.rate, m2.tags.map(<[u8]>::to_vec))).map_err(|b| b.to_string()))));
                }
            }));
            proptest::prop_assert_eq!(first, again);
        }
    }
}
