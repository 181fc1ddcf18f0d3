//! A hand-written parser for combined / nginx access-log lines, and the log's time formats.
//!
//! ```text
//! 198.51.100.7 - - [22/Nov/2026:06:19:49 +0000] "GET /path HTTP/1.1" 200 5123 "referer" "UA" vhost=www.example.com cdn=fastly rt=0.042
//! ```
//!
//! The presets run on every line, so this is the hot path: one left-to-right walk with `memchr`,
//! borrowing every field, no regex and no allocation. Anything after the user agent is kept as
//! `rest`: `key=value` fields (nginx `log_format` additions) or a bare request time.

use memchr::memchr;

/// The fields of one combined line, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Access<'a> {
    /// `22/Nov/2026:06:19:49 +0000`
    pub(crate) time: &'a [u8],
    pub(crate) method: &'a [u8],
    /// The request target, query string included.
    pub(crate) path: &'a [u8],
    pub(crate) status: u16,
    /// `None` for `-`.
    pub(crate) bytes: Option<u64>,
    /// Everything after the user agent (or after the byte count in common log format).
    pub(crate) rest: &'a [u8],
}

/// Finds the closing quote of a quoted field whose content starts at `from`, skipping `\"`.
fn closing_quote(line: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let q = from + memchr(b'"', line.get(from..)?)?;
        // An odd run of backslashes before the quote escapes it.
        let backslashes = line[..q].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(q);
        }
        from = q + 1;
    }
}

/// Parses one line; `None` if it is not in combined or common log format.
pub(crate) fn parse(line: &[u8]) -> Option<Access<'_>> {
    let open = memchr(b'[', line)?;
    let close = open + 1 + memchr(b']', &line[open + 1..])?;
    let time = &line[open + 1..close];
    let mut i = close + 1;
    if line.get(i..i + 2)? != b" \"" {
        return None;
    }
    i += 2;
    let req_end = closing_quote(line, i)?;
    let request = &line[i..req_end];
    let (method, path) = match memchr(b' ', request) {
        Some(sp) => {
            let after = &request[sp + 1..];
            let path = match memchr(b' ', after) {
                Some(e) => &after[..e],
                None => after,
            };
            (&request[..sp], path)
        }
        None => (&b""[..], request),
    };
    i = req_end + 1;
    if line.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let s = line.get(i..i + 3)?;
    if !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status =
        u16::from(s[0] - b'0') * 100 + u16::from(s[1] - b'0') * 10 + u16::from(s[2] - b'0');
    i += 3;
    if line.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let bytes = if line.get(i) == Some(&b'-') {
        i += 1;
        None
    } else {
        let start = i;
        let mut n: u64 = 0;
        while let Some(d) = line.get(i).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            i += 1;
        }
        if i == start {
            return None;
        }
        Some(n)
    };
    if !matches!(line.get(i), None | Some(b' ')) {
        return None;
    }
    // Combined: referer and user agent, both quoted. Common log format stops here.
    let mut rest_start = i;
    let mut j = i;
    for _ in 0..2 {
        if line.get(j..j + 2) == Some(b" \"") {
            match closing_quote(line, j + 2) {
                Some(q) => {
                    j = q + 1;
                    rest_start = j;
                }
                None => return None,
            }
        } else {
            break;
        }
    }
    let mut rest = &line[rest_start.min(line.len())..];
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    Some(Access {
        time,
        method,
        path,
        status,
        bytes,
        rest,
    })
}

/// The value of `key=value` among the space-separated fields of `rest`.
pub(crate) fn field<'a>(rest: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while from < rest.len() {
        let end = memchr(b' ', &rest[from..]).map_or(rest.len(), |e| from + e);
        let f = &rest[from..end];
        if f.len() > key.len() && f[key.len()] == b'=' && &f[..key.len()] == key {
            return Some(&f[key.len() + 1..]);
        }
        from = end + 1;
    }
    None
}

/// The last space-separated field of `rest` (nginx's bare `$request_time`).
pub(crate) fn last_field(rest: &[u8]) -> Option<&[u8]> {
    let trimmed = rest.strip_suffix(b" ").unwrap_or(rest);
    let start = memchr::memrchr(b' ', trimmed).map_or(0, |s| s + 1);
    let f = &trimmed[start..];
    (!f.is_empty()).then_some(f)
}

/// The value of query parameter `key` in a request target.
pub(crate) fn query_param<'a>(target: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let q = memchr(b'?', target)?;
    target[q + 1..]
        .split(|&b| b == b'&')
        .find(|kv| kv.len() > key.len() && kv[key.len()] == b'=' && &kv[..key.len()] == key)
        .map(|kv| &kv[key.len() + 1..])
}

/// Parses a decimal number (`0.042`, `12`, `-1.5e3`).
pub(crate) fn number(b: &[u8]) -> Option<f64> {
    // Fast path for the common `digits[.digits]` shape.
    let mut int: u64 = 0;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() && i < 15 {
        int = int * 10 + u64::from(b[i] - b'0');
        i += 1;
    }
    if i == b.len() && i > 0 {
        return Some(int as f64);
    }
    if i > 0 && b[i] == b'.' && b.len() - i - 1 <= 9 && b.len() > i + 1 {
        let mut frac: u64 = 0;
        let digits = &b[i + 1..];
        if digits.iter().all(u8::is_ascii_digit) {
            for &d in digits {
                frac = frac * 10 + u64::from(d - b'0');
            }
            return Some(int as f64 + frac as f64 / POW10[digits.len()]);
        }
    }
    std::str::from_utf8(b)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

const POW10: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')))
}

/// Parses the access log's `22/Nov/2026:06:19:49 +0000` into Unix seconds.
pub(crate) fn parse_clf_time(t: &[u8]) -> Option<i64> {
    if t.len() != 26 || t[2] != b'/' || t[6] != b'/' || t[11] != b':' || t[20] != b' ' {
        return None;
    }
    let day = digits(&t[0..2])?;
    let month = match &t[3..6] {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    let year = digits(&t[7..11])?;
    let (h, m, s) = (
        digits(&t[12..14])?,
        digits(&t[15..17])?,
        digits(&t[18..20])?,
    );
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || t[14] != b':' || t[17] != b':' {
        return None;
    }
    let sign = match t[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let off = sign * (digits(&t[22..24])? * 3600 + digits(&t[24..26])? * 60);
    let midnight = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        month,
        u32::try_from(day).ok()?,
    )?
    .and_hms_opt(0, 0, 0)?
    .and_utc()
    .timestamp();
    Some(midnight + h * 3600 + m * 60 + s - off)
}

/// A time format of a rule's time capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimeFormat {
    /// `22/Nov/2026:06:19:49 +0000`, parsed by hand.
    Clf,
    Unix,
    UnixMs,
    Rfc3339,
    /// A chrono strftime format; without `%z` the time is UTC.
    Strftime {
        format: String,
        zoned: bool,
    },
}

impl TimeFormat {
    pub(crate) fn new(format: &str) -> TimeFormat {
        match format {
            "%d/%b/%Y:%H:%M:%S %z" | "clf" => TimeFormat::Clf,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
            f => TimeFormat::Strftime {
                format: f.to_string(),
                zoned: f.contains("%z") || f.contains("%:z"),
            },
        }
    }

    /// Unix seconds, or `None` if `t` does not have this format.
    pub(crate) fn parse(&self, t: &[u8]) -> Option<i64> {
        match self {
            TimeFormat::Clf => parse_clf_time(t),
            TimeFormat::Unix => number(t).map(|v| v.floor() as i64),
            TimeFormat::UnixMs => number(t).map(|v| (v / 1000.0).floor() as i64),
            TimeFormat::Rfc3339 => {
                chrono::DateTime::parse_from_rfc3339(std::str::from_utf8(t).ok()?)
                    .ok()
                    .map(|d| d.timestamp())
            }
            TimeFormat::Strftime { format, zoned } => {
                let s = std::str::from_utf8(t).ok()?;
                if *zoned {
                    chrono::DateTime::parse_from_str(s, format)
                        .ok()
                        .map(|d| d.timestamp())
                } else {
                    chrono::NaiveDateTime::parse_from_str(s, format)
                        .ok()
                        .map(|d| d.and_utc().timestamp())
                }
            }
        }
    }

    /// Checks the format itself: a strftime format must parse what it prints.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let TimeFormat::Strftime { format, zoned } = self {
            let sample = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
            let printed = {
                use std::fmt::Write;
                let mut s = String::new();
                write!(s, "{}", sample.format(format))
                    .map_err(|_| format!("\"{format}\" is not a strftime format"))?;
                s
            };
            if self.parse(printed.as_bytes()).is_none() {
                return Err(format!(
                    "\"{format}\" cannot be parsed back (it needs a full date and time{})",
                    if *zoned {
                        ""
                    } else {
                        "; without %z it is read as UTC"
                    }
                ));
            }
        }
        Ok(())
    }
}

/// Remembers the last parsed time text: log lines share their second, so most lines hit.
#[derive(Debug, Default)]
pub(crate) struct TimeCache {
    text: Vec<u8>,
    value: Option<i64>,
}

impl TimeCache {
    pub(crate) fn parse(&mut self, format: &TimeFormat, t: &[u8]) -> Option<i64> {
        if self.text != t {
            self.text.clear();
            self.text.extend_from_slice(t);
            self.value = format.parse(t);
        }
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LINE: &[u8] = b"198.51.100.7 - - [22/Nov/2026:06:19:49 +0000] \"GET /status/images/beacon.gif?source=cdn_fastly&server_identity=cache-ny57-NYC HTTP/1.1\" 200 43 \"https://www.example.com/\" \"Mozilla/5.0 (X11)\" vhost=www.example.com cdn=fastly rt=0.002";

    #[test]
    fn parses_a_combined_line_with_fields() {
        let a = parse(LINE).expect("parses");
        assert_eq!(a.time, b"22/Nov/2026:06:19:49 +0000");
        assert_eq!(a.method, b"GET");
        assert_eq!(
            a.path,
            b"/status/images/beacon.gif?source=cdn_fastly&server_identity=cache-ny57-NYC"
        );
        assert_eq!((a.status, a.bytes), (200, Some(43)));
        assert_eq!(field(a.rest, b"vhost"), Some(&b"www.example.com"[..]));
        assert_eq!(field(a.rest, b"rt"), Some(&b"0.002"[..]));
        assert_eq!(field(a.rest, b"r"), None);
        assert_eq!(query_param(a.path, b"source"), Some(&b"cdn_fastly"[..]));
        assert_eq!(
            query_param(a.path, b"server_identity"),
            Some(&b"cache-ny57-NYC"[..])
        );
        assert_eq!(parse_clf_time(a.time), Some(1_795_328_389));
    }

    #[test]
    fn common_log_format_escaped_quotes_and_nginx_request_time() {
        let a = parse(b"::1 - bob [01/Jan/2024:00:00:00 -0130] \"POST /a HTTP/1.0\" 503 -")
            .expect("clf");
        assert_eq!((a.status, a.bytes, a.rest), (503, None, &b""[..]));
        assert_eq!(parse_clf_time(a.time), Some(1_704_067_200 + 5400));
        let a = parse(br#"1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET /q?x=\"y\" HTTP/1.1" 404 12 "-" "a \"quoted\" agent" 0.250"#)
            .expect("escaped");
        assert_eq!(a.path, br#"/q?x=\"y\""#);
        assert_eq!(last_field(a.rest), Some(&b"0.250"[..]));
    }

    #[test]
    fn rejects_what_is_not_an_access_line() {
        for bad in [
            &b""[..],
            b"garbage",
            b"1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] \"GET / HTTP/1.1\" 2x0 1",
            b"1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] \"GET / HTTP/1.1",
            b"1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] \"GET / HTTP/1.1\" 200 12 \"-\" \"unterminated",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_clf_time(b"32/Jan/2024:00:00:00 +0000"), None);
        assert_eq!(parse_clf_time(b"01/Foo/2024:00:00:00 +0000"), None);
    }

    #[test]
    fn time_formats() {
        assert_eq!(
            TimeFormat::new("unix").parse(b"1700000000.9"),
            Some(1_700_000_000)
        );
        assert_eq!(
            TimeFormat::new("unix_ms").parse(b"1700000000999"),
            Some(1_700_000_000)
        );
        assert_eq!(
            TimeFormat::new("rfc3339").parse(b"2023-11-14T22:13:20Z"),
            Some(1_700_000_000)
        );
        let f = TimeFormat::new("%Y-%m-%d %H:%M:%S");
        assert_eq!(f.parse(b"2023-11-14 22:13:20"), Some(1_700_000_000));
        assert!(f.validate().is_ok());
        assert!(TimeFormat::new("%H:%M").validate().is_err());
        assert_eq!(number(b"0.042"), Some(0.042));
        assert_eq!(number(b"12"), Some(12.0));
        assert_eq!(number(b"1e3"), Some(1000.0));
        assert_eq!(number(b"-"), None);
        assert_eq!(number(b"inf"), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(a) = parse(&line) {
                let _ = field(a.rest, b"vhost");
                let _ = last_field(a.rest);
                let _ = query_param(a.path, b"source");
                let _ = parse_clf_time(a.time);
            }
            let _ = number(&line);
        }

        #[test]
        fn clf_time_agrees_with_chrono(secs in 0i64..4_000_000_000, off in -720i64..840) {
            let off = off / 15 * 15;
            let tz = chrono::FixedOffset::east_opt((off * 60) as i32).expect("offset");
            let d = chrono::DateTime::from_timestamp(secs, 0).expect("time").with_timezone(&tz);
            let text = d.format("%d/%b/%Y:%H:%M:%S %z").to_string();
            prop_assert_eq!(parse_clf_time(text.as_bytes()), Some(secs));
        }

        #[test]
        fn fields_survive_any_printable_text(
            path in "/[a-z0-9/?&=._-]{0,40}",
            // Loggers escape `"` and `\\` inside quoted fields, so neither appears bare.
            ua in "[ -!#-\\[\\]-~]{0,40}",
            status in 100u16..600,
            bytes in proptest::option::of(0u64..1_000_000),
        ) {
            let b = bytes.map_or("-".to_string(), |b| b.to_string());
            let line = format!("10.0.0.1 - - [01/Jan/2024:00:00:00 +0000] \"GET {path} HTTP/1.1\" {status} {b} \"-\" \"{ua}\" vhost=v rt=0.5");
            let a = parse(line.as_bytes()).expect("parses");
            prop_assert_eq!(a.path, path.as_bytes());
            prop_assert_eq!(a.status, status);
            prop_assert_eq!(a.bytes, bytes);
            prop_assert_eq!(field(a.rest, b"rt"), Some(&b"0.5"[..]));
        }
    }
}
