//! Atlas's time grammar for `s` and `e` (`atlas-core` `util/Strings.scala`: `parseDate`,
//! `parseDuration`, `timeRange`), in milliseconds since the epoch.
//!
//! - named references: `now`, `epoch`, and `s` / `e` (the other end of the range);
//! - relative: `<ref>-<duration>` or `<ref>+<duration>` (`e-3h`, `now-1w`, `s+P2DT6H`);
//! - epoch numbers, in seconds, milliseconds, microseconds or nanoseconds by magnitude, also
//!   with an offset (`1700000000-1h`);
//! - absolute `%Y-%m-%d[T%H:%M[:%S[.fff]]]` with `Z` or an offset, else in `tz`.
//!
//! Durations are `<n><unit>` (`ns us ms s m/min h d w/wk month y` and their long names) or
//! ISO-8601 `P[nD][T[nH][nM][n[.n]S]]` as Java's `Duration.parse` takes them.

use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// An error in a time or duration, quoting it.
fn bad(what: &str, input: &str) -> String {
    format!("invalid {what} \"{input}\"")
}

/// A duration in milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Some(iso) = s.strip_prefix('P') {
        return iso_duration(iso).ok_or_else(|| bad("period", s));
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    if n.is_empty() || unit.is_empty() {
        return Err(bad("period", s));
    }
    let n: i64 = n.parse().map_err(|_| bad("period", s))?;
    // Sub-millisecond units are kept to the millisecond (Tally's clock), rounded down.
    let per: i64 = match unit {
        "ns" => return Ok(n / 1_000_000),
        "us" | "μs" => return Ok(n / 1_000),
        "ms" => 1,
        "seconds" | "second" | "s" => 1_000,
        "minutes" | "minute" | "min" | "m" => 60_000,
        "hours" | "hour" | "h" => 3_600_000,
        "days" | "day" | "d" => 86_400_000,
        "weeks" | "week" | "wk" | "w" => 7 * 86_400_000,
        "months" | "month" => 30 * 86_400_000,
        "years" | "year" | "y" => 365 * 86_400_000,
        _ => return Err(format!("unknown unit \"{unit}\" in \"{s}\"")),
    };
    n.checked_mul(per).ok_or_else(|| bad("period", s))
}

/// `nDTnHnMn.nS` (after the `P`), as `java.time.Duration.parse`; signs on each part allowed.
fn iso_duration(s: &str) -> Option<i64> {
    let (days, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut ms: i64 = 0;
    let mut any = false;
    if !days.is_empty() {
        let n = days.strip_suffix('D')?;
        ms = ms.checked_add(n.parse::<i64>().ok()?.checked_mul(86_400_000)?)?;
        any = true;
    }
    if let Some(mut t) = time {
        if t.is_empty() {
            return None;
        }
        for (unit, per) in [('H', 3_600_000f64), ('M', 60_000f64), ('S', 1_000f64)] {
            if let Some(i) = t.find(unit) {
                let (n, rest) = t.split_at(i);
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit() || b"+-.".contains(&b)) {
                    return None;
                }
                let v: f64 = n.parse().ok()?;
                let part = (v * per).round();
                if !part.is_finite() || part.abs() > 9.0e15 {
                    return None;
                }
                ms = ms.checked_add(part as i64)?;
                t = &rest[1..];
                any = true;
            }
        }
        if !t.is_empty() {
            return None;
        }
    }
    any.then_some(ms)
}

/// Epoch seconds, milliseconds, microseconds or nanoseconds by magnitude, to milliseconds.
fn of_epoch(v: i64) -> i64 {
    const SECONDS: i64 = i32::MAX as i64;
    // 2400-01-01T00:00:00Z in milliseconds.
    const MILLIS: i64 = 13_569_465_600_000;
    if v <= SECONDS {
        v.saturating_mul(1000)
    } else if v <= MILLIS {
        v
    } else if v <= MILLIS.saturating_mul(1000) {
        v / 1000
    } else {
        v / 1_000_000
    }
}

/// The references a time may name besides `now` and `epoch`: `s` and `e`, and in a
/// `:time-span` the graph's start and end, `gs` and `ge`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refs {
    pub now: i64,
    pub s: Option<i64>,
    pub e: Option<i64>,
    pub gs: Option<i64>,
    pub ge: Option<i64>,
}

fn reference(name: &str, refs: &Refs, input: &str) -> Result<i64, String> {
    match name {
        "now" => Ok(refs.now),
        "epoch" => Ok(0),
        "s" => refs
            .s
            .ok_or_else(|| format!("\"{input}\" refers to the start, which refers to the end")),
        "e" => refs
            .e
            .ok_or_else(|| format!("\"{input}\" refers to the end, which refers to the start")),
        // Only a `:time-span` knows the graph's range.
        "gs" | "ge" => (if name == "gs" { refs.gs } else { refs.ge })
            .ok_or_else(|| format!("unknown reference \"{name}\" in \"{input}\"")),
        _ => Err(format!("unknown reference \"{name}\" in \"{input}\"")),
    }
}

/// One time, in milliseconds.
pub fn parse_date(input: &str, tz: Tz, refs: &Refs) -> Result<i64, String> {
    let s = input.trim();
    let letters = s.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let offset = |base: i64, rest: &str| -> Result<i64, String> {
        let (op, d) = rest.split_at(1);
        let d = parse_duration(d)?;
        let t = if op == "-" {
            base.checked_sub(d)
        } else {
            base.checked_add(d)
        };
        t.ok_or_else(|| bad("date", input))
    };
    // `<ref>` or `<ref><op><duration>`, the duration without another sign (Atlas's regexes).
    let with_op = |at: usize| s[at..].starts_with(['-', '+']) && !s[at + 1..].contains(['-', '+']);
    if letters > 0 && (letters == s.len() || with_op(letters)) {
        let base = reference(&s[..letters], refs, input)?;
        return if letters == s.len() {
            Ok(base)
        } else {
            offset(base, &s[letters..])
        };
    }
    if digits > 0 && (digits == s.len() || with_op(digits)) {
        let v: i64 = s[..digits].parse().map_err(|_| bad("date", input))?;
        let base = of_epoch(v);
        return if digits == s.len() {
            Ok(base)
        } else {
            offset(base, &s[digits..])
        };
    }
    absolute(s, tz).ok_or_else(|| bad("date", input))
}

/// `2026-12-01`, `2026-12-01T10:00`, `2026-12-01T10:00:30[.5]`, each with `Z`, `+01:00`
/// or nothing (then in `tz`).
fn absolute(s: &str, tz: Tz) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H:%M%#z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    let (local, zulu) = match s.strip_suffix('Z') {
        Some(l) => (l, true),
        None => (s, false),
    };
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(local, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(local, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    if zulu {
        return Some(naive.and_utc().timestamp_millis());
    }
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
}

/// `s` and `e` together, as Atlas resolves them: a start relative to the end (`e-3h`) is
/// resolved after the end, otherwise the end may refer to the start. The end may not be
/// before the start.
pub fn time_range(s: &str, e: &str, tz: Tz, now: i64) -> Result<(i64, i64), String> {
    let relative = |x: &str| {
        let letters = x.bytes().take_while(u8::is_ascii_lowercase).count();
        letters > 0
            && x[letters..].starts_with(['-', '+'])
            && !matches!(&x[..letters], "now" | "epoch")
    };
    let refs = Refs {
        now,
        ..Refs::default()
    };
    let (start, end) = if relative(s) || s == "e" {
        if relative(e) {
            return Err(format!("start and end are both relative (s={s}, e={e})"));
        }
        let end = parse_date(e, tz, &refs)?;
        let start = parse_date(
            s,
            tz,
            &Refs {
                e: Some(end),
                ..refs
            },
        )?;
        (start, end)
    } else {
        let start = parse_date(s, tz, &refs)?;
        let end = parse_date(
            e,
            tz,
            &Refs {
                s: Some(start),
                ..refs
            },
        )?;
        (start, end)
    };
    if end < start {
        return Err(format!("end time is before start time (s={s}, e={e})"));
    }
    Ok((start, end))
}

/// A time zone id (`US/Pacific`, `UTC`, `Europe/Berlin`).
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone \"{name}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const H: i64 = 3_600_000;

    #[test]
    fn durations_in_atlas_units_and_iso() {
        for (s, ms) in [
            ("5m", 300_000),
            ("5min", 300_000),
            ("3h", 3 * H),
            ("1w", 7 * 24 * H),
            ("2wk", 14 * 24 * H),
            ("1month", 30 * 24 * H),
            ("1y", 365 * 24 * H),
            ("250ms", 250),
            ("PT1H", H),
            ("P2DT6H", 54 * H),
            ("PT1.5S", 1500),
            ("PT-6H", -6 * H),
        ] {
            assert_eq!(parse_duration(s), Ok(ms), "{s}");
        }
        for s in [
            "",
            "5",
            "m",
            "5parsecs",
            "P",
            "PT",
            "P1W",
            "PTXS",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_duration("5parsecs").expect_err("an error"),
            "unknown unit \"parsecs\" in \"5parsecs\""
        );
    }

    #[test]
    fn dates_relative_named_epoch_and_absolute() {
        let utc = Tz::UTC;
        let refs = Refs {
            now: NOW,
            s: Some(NOW - 10 * H),
            e: Some(NOW - H),
            ..Refs::default()
        };
        assert_eq!(parse_date("now", utc, &refs), Ok(NOW));
        assert_eq!(parse_date("now-1w", utc, &refs), Ok(NOW - 7 * 24 * H));
        assert_eq!(parse_date("e-3h", utc, &refs), Ok(NOW - 4 * H));
        assert_eq!(
            parse_date("s+P2DT6H", utc, &refs),
            Ok(NOW - 10 * H + 54 * H)
        );
        assert_eq!(parse_date("epoch", utc, &refs), Ok(0));
        assert_eq!(parse_date("1700000000", utc, &refs), Ok(1_700_000_000_000));
        assert_eq!(
            parse_date("1700000000000", utc, &refs),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_date("1700000000-1h", utc, &refs),
            Ok(1_700_000_000_000 - H)
        );
        assert_eq!(
            parse_date("2026-12-01T00:00Z", utc, &refs),
            Ok(1_796_083_200_000)
        );
        assert_eq!(parse_date("2026-12-01", utc, &refs), Ok(1_796_083_200_000));
        assert_eq!(
            parse_date("2026-12-01T01:00+01:00", utc, &refs),
            Ok(1_796_083_200_000)
        );
        let pacific = parse_tz("US/Pacific").expect("zone");
        assert_eq!(
            parse_date("2026-12-01", pacific, &refs),
            Ok(1_796_083_200_000 + 8 * H)
        );
        for bad in ["yesterday", "now-", "now-5x", "2026-13-01", "e-", "--"] {
            assert!(parse_date(bad, utc, &refs).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_resolve_relative_ends_and_refuse_inverted_ones() {
        let utc = Tz::UTC;
        assert_eq!(time_range("e-3h", "now", utc, NOW), Ok((NOW - 3 * H, NOW)));
        assert_eq!(
            time_range("now-1d", "s+6h", utc, NOW),
            Ok((NOW - 24 * H, NOW - 18 * H))
        );
        assert!(time_range("e-3h", "s+1h", utc, NOW)
            .expect_err("an error")
            .contains("both relative"));
        assert!(time_range("now", "now-1h", utc, NOW)
            .expect_err("an error")
            .contains("before start"));
        assert!(
            time_range("e", "e", utc, NOW).is_err(),
            "a loop of references"
        );
    }
}
