//! graphite-web's time grammar for `from` and `until` (render/attime.py in 1.1.8), in UTC.
//!
//! After lower-casing and removing `_`, `,` and spaces: all digits is epoch seconds (except an
//! 8-digit `YYYYMMDD`); otherwise `<reference><+|-offset>`. References: empty or `now`; a time of
//! day (`HH:MM`, `Xam`, `Xpm`, `noon`, `midnight`, `teatime`) optionally followed by a day
//! (`today`, `yesterday`, `tomorrow`, `YYYYMMDD`, `MM/DD/YY[YY]`). Any reference other than `now`
//! starts from that day's hour:minute (00:00 unless given). Offsets are runs of `<n><unit>` with
//! units `s`, `min`, `h`, `d`, `w`, `mon` (30 days), `y` (365 days); a bare `m` is an error, as in
//! graphite (is it minutes or months?).

use crate::error::{QueryError, Result};

const DAY: i64 = 86_400;

fn bad(input: &str, reason: impl Into<String>) -> QueryError {
    QueryError::Time {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a graphite time expression relative to `now` (epoch seconds).
pub fn parse_time(input: &str, now: i64) -> Result<i64> {
    let s: String = input
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| !matches!(c, '_' | ',' | ' '))
        .collect();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let yyyymmdd = s.len() == 8
            && s[..4].parse::<i64>().is_ok_and(|y| y > 1900)
            && s[4..6].parse::<i64>().is_ok_and(|m| m < 13)
            && s[6..].parse::<i64>().is_ok_and(|d| d < 32);
        if !yyyymmdd {
            return s
                .parse::<i64>()
                .map_err(|_| bad(input, "epoch seconds out of range"));
        }
    }
    let (reference, offset) = match s.find(['+', '-']) {
        Some(i) => s.split_at(i),
        None => (s.as_str(), ""),
    };
    parse_reference(reference, now, input)?
        .checked_add(parse_offset(offset, input)?)
        .ok_or_else(|| bad(input, "time out of range"))
}

fn parse_reference(r: &str, now: i64, input: &str) -> Result<i64> {
    if r.is_empty() || r == "now" {
        return Ok(now);
    }
    let mut rest = r;
    let (mut hour, mut minute) = (0i64, 0i64);
    if let Some(i) = rest.find(':').filter(|&i| (1..3).contains(&i)) {
        hour = rest[..i].parse().map_err(|_| bad(input, "bad hour"))?;
        minute = rest
            .get(i + 1..i + 3)
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| bad(input, "bad minute"))?;
        rest = &rest[(i + 3).min(rest.len())..];
        if let Some(r) = rest.strip_prefix("am") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("pm") {
            hour = (hour + 12) % 24;
            rest = r;
        }
    }
    if let Some(i) = rest.find("am").filter(|&i| (1..3).contains(&i)) {
        hour = rest[..i].parse().map_err(|_| bad(input, "bad hour"))?;
        rest = &rest[i + 2..];
    }
    if let Some(i) = rest.find("pm").filter(|&i| (1..3).contains(&i)) {
        hour = (rest[..i]
            .parse::<i64>()
            .map_err(|_| bad(input, "bad hour"))?
            + 12)
            % 24;
        rest = &rest[i + 2..];
    }
    for (word, h) in [("noon", 12), ("midnight", 0), ("teatime", 16)] {
        if let Some(r) = rest.strip_prefix(word) {
            (hour, minute) = (h, 0);
            rest = r;
            break;
        }
    }
    if !(0..24).contains(&hour) || !(0..60).contains(&minute) {
        return Err(bad(input, "time of day out of range"));
    }
    let (mut y, mut m, mut d) = civil_from_days(now.div_euclid(DAY));
    let mut day_shift = 0;
    match rest {
        "" | "today" => {}
        "yesterday" => day_shift = -1,
        "tomorrow" => day_shift = 1,
        _ if rest.matches('/').count() == 2 => {
            let parts: Vec<i64> = rest
                .split('/')
                .map(|p| p.parse().map_err(|_| bad(input, "bad MM/DD/YY date")))
                .collect::<Result<_>>()?;
            let mut year = parts[2];
            if year < 1900 {
                year += 1900;
            }
            if year < 1970 {
                year += 100;
            }
            (y, m, d) = (year, parts[0], parts[1]);
        }
        _ if rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_digit()) => {
            let num = |a: usize, b: usize| rest[a..b].parse::<i64>().unwrap_or(0);
            (y, m, d) = (num(0, 4), num(4, 6), num(6, 8));
        }
        _ => return Err(bad(input, format!("unknown day reference \"{rest}\""))),
    }
    // Years as Python's datetime takes them (graphite's attime uses it); a longer year
    // overflowed the seconds below (issue 17, found by the `time` fuzz target).
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1..=9999).contains(&y) {
        return Err(bad(input, "date out of range"));
    }
    Ok((days_from_civil(y, m, d) + day_shift) * DAY + hour * 3600 + minute * 60)
}

fn parse_offset(offset: &str, input: &str) -> Result<i64> {
    if offset.is_empty() {
        return Ok(0);
    }
    let (sign, mut rest) = match offset.as_bytes()[0] {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => (1, offset),
    };
    let mut total = 0i64;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let num: i64 = rest[..digits]
            .parse()
            .map_err(|_| bad(input, "offset needs a number"))?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let secs =
            unit_secs(unit).ok_or_else(|| bad(input, format!("invalid offset unit \"{unit}\"")))?;
        // Each term and the sum are checked: `1s1s...99999999999w` overflowed the sum (issue 17).
        total = num
            .checked_mul(secs)
            .and_then(|t| total.checked_add(t))
            .ok_or_else(|| bad(input, "offset out of range"))?;
    }
    Ok(sign * total)
}

/// Seconds in a graphite offset unit; `None` for unknown units and for the ambiguous bare `m`.
pub(crate) fn unit_secs(unit: &str) -> Option<i64> {
    Some(if unit.starts_with('s') {
        1
    } else if unit.starts_with("min") {
        60
    } else if unit.starts_with('h') {
        3600
    } else if unit.starts_with('d') {
        DAY
    } else if unit.starts_with('w') {
        7 * DAY
    } else if unit.starts_with("mon") {
        30 * DAY
    } else if unit.starts_with('y') {
        365 * DAY
    } else {
        return None;
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T03:15:42Z
    const MIDNIGHT: i64 = 1_795_305_600;
    const NOW: i64 = MIDNIGHT + 3 * 3600 + 15 * 60 + 42;

    #[test]
    fn grammar() {
        let cases: &[(&str, i64)] = &[
            ("now", NOW),
            ("", NOW),
            ("1700000000", 1_700_000_000),
            ("-6h", NOW - 6 * 3600),
            ("-5min", NOW - 300),
            ("-1mon", NOW - 30 * DAY),
            ("-1y", NOW - 365 * DAY),
            ("-2w", NOW - 14 * DAY),
            ("now-1d", NOW - DAY),
            ("-1h30min", NOW - 5400),
            ("+10s", NOW + 10),
            ("-1 D", NOW - DAY),
            ("-1_day", NOW - DAY),
            ("today", MIDNIGHT),
            ("midnight", MIDNIGHT),
            ("yesterday", MIDNIGHT - DAY),
            ("noon", MIDNIGHT + 12 * 3600),
            ("noon yesterday", MIDNIGHT - 12 * 3600),
            ("12:30", MIDNIGHT + 12 * 3600 + 1800),
            ("6pm", MIDNIGHT + 18 * 3600),
            ("20261122", MIDNIGHT),
            ("11/22/26", MIDNIGHT),
            ("11/22/2026", MIDNIGHT),
            ("midnight-1d", MIDNIGHT - DAY),
            ("19700101", 0),
        ];
        for (input, want) in cases {
            assert_eq!(parse_time(input, NOW).ok(), Some(*want), "{input}");
        }
    }

    #[test]
    fn errors_name_the_input() {
        for input in ["-1m", "-1x", "banana", "-h", "13/45/26", "25:00"] {
            let e = parse_time(input, NOW).expect_err(input);
            assert!(e.to_string().contains(input.trim()), "{e}");
        }
    }

    /// Issue 17, found by the `time` fuzz target: offsets whose sum, or whose sum with the
    /// reference, leaves i64, and dates with a year past 9999 overflowed (a panic in debug
    /// builds, a wrapped time in release).
    #[test]
    fn issue_17_offsets_that_overflow_are_errors() {
        let weeks = i64::MAX / 604_800;
        let twice = format!("-{weeks}w{weeks}w");
        for (input, now) in [
            (twice.as_str(), NOW),
            ("+1h", i64::MAX - 10),
            ("-1s", i64::MIN),
            ("06/15/2025555555555556", NOW),
            ("noon_01/01/10000", NOW),
        ] {
            let e = parse_time(input, now).expect_err(input);
            assert!(e.to_string().contains("out of range"), "{input}: {e}");
        }
    }

    #[test]
    fn calendar_round_trip() {
        for day in [-1000, 0, 1, 365, 10_957, 20_000, 40_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(civil_from_days(MIDNIGHT / DAY), (2026, 11, 22));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}", t in "[-+0-9a-z:/ _,]{0,16}") {
            let _ = parse_time(&s, 1_795_305_600);
            let _ = parse_time(&t, 1_795_305_600);
        }
    }
}
