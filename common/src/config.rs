//! Configuration files, done one way for every program (`tally store`, `tally agent`, the alert
//! rules): TOML, every key optional where a default makes sense, unknown keys are errors, and
//! every problem is reported at once, each with its file and key, so that one run of
//! `--check-config` shows everything to fix.
//!
//! Durations are written with a unit: `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"7d"` (humantime's
//! grammar, so `"1h30m"` works too); a bare number is seconds. Sizes are written with a unit:
//! `"64KiB"`, `"256MiB"`, `"1GB"` (KB = 1000 bytes, KiB = 1024); a bare number is bytes. Keys
//! name the quantity (`flush_interval`, `max_line_size`), not the unit.
//!
//! `serde`'s `deny_unknown_fields` stops at the first unknown key; [`parse`] collects them all
//! with `serde_ignored` instead. Values that need checking beyond their type are kept as written
//! ([`DurationText`], [`SizeText`], strings) and checked in the program's `TryFrom` into its
//! runtime settings, where a [`Problems`] collects every problem before giving up.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Parses TOML text into `T`, reporting every unknown key (as `unknown key "a.b"`) or the first
/// syntax or type error, with its line.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, Vec<String>> {
    let mut unknown = Vec::new();
    let de = toml::Deserializer::new(text);
    let value: T =
        serde_ignored::deserialize(de, |path| unknown.push(format!("unknown key \"{path}\"")))
            .map_err(|e| vec![one_line(&e.to_string())])?;
    if unknown.is_empty() {
        Ok(value)
    } else {
        Err(unknown)
    }
}

/// Like [`parse`] for a table already read (a section one crate owns in another's file);
/// unknown keys are named below `prefix` (`query.max_points`).
pub fn from_table<T: DeserializeOwned>(table: toml::Table, prefix: &str) -> Result<T, Vec<String>> {
    let mut unknown = Vec::new();
    let value: T = serde_ignored::deserialize(toml::Value::Table(table), |path| {
        unknown.push(format!("unknown key \"{prefix}.{path}\""))
    })
    .map_err(|e| vec![format!("{prefix}: {}", one_line(&e.to_string()))])?;
    if unknown.is_empty() {
        Ok(value)
    } else {
        Err(unknown)
    }
}

/// Reads and [`parse`]s a file; every problem is prefixed with the file's path.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, Vec<String>> {
    let text = read(path)?;
    parse(&text).map_err(|ps| in_file(path, ps))
}

/// Reads a config file, the error naming it.
pub fn read(path: &Path) -> Result<String, Vec<String>> {
    std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])
}

/// Prefixes every problem with the file it was found in.
pub fn in_file(path: &Path, problems: Vec<String>) -> Vec<String> {
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", path.display()))
        .collect()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a duration: a number and a unit (`250ms`, `10s`, `5m`, `1h`, `7d`, `1h30m`), or a bare
/// number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("\"{s}\" is not a duration like 10s, 250ms, 5m, 1h, 7d");
    if t.is_empty() {
        return Err(bad());
    }
    let d = if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| bad())?;
        Duration::try_from_secs_f64(secs).map_err(|_| bad())?
    } else {
        humantime::parse_duration(t).map_err(|e| format!("{}: {e}", bad()))?
    };
    // Bounded so that `Instant::now() + d` can never overflow (and panic) wherever it is used.
    if d > Duration::from_secs(100 * 365 * 86_400) {
        return Err(format!("\"{s}\" is longer than a century"));
    }
    Ok(d)
}

/// Parses a size: a number and a unit (`64KiB`, `256MiB`, `1GB`, `512B`), or a bare number of
/// bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("\"{s}\" is not a size like 64KiB, 256MiB, 1GB"))
}

/// A duration as written in a file: a string with a unit or a bare number of seconds, checked
/// with [`Problems::duration`].
#[derive(Clone, PartialEq, Eq)]
pub struct DurationText(String);

/// A size as written in a file: a string with a unit or a bare number of bytes, checked with
/// [`Problems::size`].
#[derive(Clone, PartialEq, Eq)]
pub struct SizeText(String);

macro_rules! text_value {
    ($t:ident, $expecting:literal) => {
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                $t(s.to_string())
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        Ok($t(v.to_string()))
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$t, E> {
                        Ok($t(v.to_string()))
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$t, E> {
                        Ok($t(v.to_string()))
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$t, E> {
                        Ok($t(v.to_string()))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

text_value!(
    DurationText,
    "a duration like \"10s\", \"5m\", \"1h\" or a number of seconds"
);
text_value!(
    SizeText,
    "a size like \"64KiB\", \"256MiB\" or a number of bytes"
);

impl DurationText {
    /// The duration, or why it is not one.
    pub fn parse(&self) -> Result<Duration, String> {
        parse_duration(&self.0)
    }
}

impl SizeText {
    /// The size in bytes, or why it is not one.
    pub fn parse(&self) -> Result<u64, String> {
        parse_size(&self.0)
    }
}

/// Every problem found while checking a configuration, each as `key: what is wrong`.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    /// Records a problem with `key`.
    pub fn push(&mut self, key: &str, what: impl fmt::Display) {
        self.0.push(format!("{key}: {what}"));
    }

    /// Records a problem of the whole file rather than of one key.
    pub fn note(&mut self, what: impl fmt::Display) {
        self.0.push(what.to_string());
    }

    /// Records problems that already name their key.
    pub fn extend(&mut self, problems: impl IntoIterator<Item = String>) {
        self.0.extend(problems);
    }

    /// The duration at `key`; a bad one is recorded and read as zero.
    pub fn duration(&mut self, key: &str, v: &DurationText) -> Duration {
        v.parse().unwrap_or_else(|e| {
            self.push(key, e);
            Duration::ZERO
        })
    }

    /// Like [`Problems::duration`], and it must be more than zero.
    pub fn positive_duration(&mut self, key: &str, v: &DurationText) -> Duration {
        match v.parse() {
            Ok(d) if d.is_zero() => {
                self.push(key, format!("\"{v}\" must be more than 0"));
                Duration::from_secs(1)
            }
            Ok(d) => d,
            Err(e) => {
                self.push(key, e);
                Duration::from_secs(1)
            }
        }
    }

    /// A count at `key` that must be more than zero.
    pub fn positive(&mut self, key: &str, value: usize) {
        if value == 0 {
            self.push(key, "must be more than 0");
        }
    }

    /// The size in bytes at `key`, at least `min`; a bad one is recorded and read as `min`.
    pub fn size(&mut self, key: &str, v: &SizeText, min: u64) -> u64 {
        match v.parse() {
            Ok(n) if n < min => {
                self.push(key, format!("\"{v}\" is below the least, {min} bytes"));
                min
            }
            Ok(n) => n,
            Err(e) => {
                self.push(key, e);
                min
            }
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found, else every problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_seconds() {
        let ok = |s: &str| parse_duration(s).expect(s);
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1d"), Duration::from_secs(86400));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("7"), Duration::from_secs(7));
        assert_eq!(ok("0.5"), Duration::from_millis(500));
        assert_eq!(ok("0s"), Duration::ZERO);
        for bad in [
            "",
            "5 parsecs",
            "-1s",
            "s",
            "1e999",
            "1000000000y",
            "99999999999999999999",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
    }

    #[test]
    fn sizes_take_a_unit_or_bytes() {
        let ok = |s: &str| parse_size(s).expect(s);
        assert_eq!(ok("16384"), 16384);
        assert_eq!(ok("64KiB"), 65536);
        assert_eq!(ok("256MiB"), 256 << 20);
        assert_eq!(ok("1GB"), 1_000_000_000);
        assert_eq!(ok("512 B"), 512);
        for bad in ["", "many", "-1", "12 parsecs"] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(default)]
    struct File {
        interval: DurationText,
        spool: SizeText,
        inner: Inner,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Inner {
        name: String,
    }

    impl Default for File {
        fn default() -> Self {
            File {
                interval: "10s".into(),
                spool: "1MiB".into(),
                inner: Inner::default(),
            }
        }
    }

    #[test]
    fn every_unknown_key_is_reported_at_once() {
        let e = parse::<File>("intervl = \"1s\"\nspool = 5\n[inner]\nnaem = \"x\"\n")
            .expect_err("unknown keys");
        assert_eq!(
            e,
            vec![
                "unknown key \"intervl\"".to_string(),
                "unknown key \"inner.naem\"".to_string()
            ]
        );
        let f: File = parse("interval = 30\nspool = \"2KiB\"\n").expect("parses");
        assert_eq!(f.interval.parse(), Ok(Duration::from_secs(30)));
        assert_eq!(f.spool.parse(), Ok(2048));
        let e = parse::<File>("interval = [1]\n").expect_err("type");
        assert!(
            e[0].contains("interval") && e[0].contains("line 1"),
            "{e:?}"
        );
    }

    #[test]
    fn a_section_reports_its_keys_under_its_prefix() {
        let table: toml::Table = toml::from_str("name = \"a\"\nnmae = 1\n").expect("toml");
        let e = from_table::<Inner>(table, "inner").expect_err("unknown");
        assert_eq!(e, vec!["unknown key \"inner.nmae\"".to_string()]);
    }

    #[test]
    fn problems_are_collected_not_stopped_at() {
        let mut p = Problems::default();
        assert_eq!(p.duration("a", &"soon".into()), Duration::ZERO);
        assert_eq!(
            p.positive_duration("b", &"0s".into()),
            Duration::from_secs(1)
        );
        assert_eq!(p.size("c", &"1".into(), 64), 64);
        assert_eq!(p.size("d", &"1KiB".into(), 64), 1024);
        let e = p.into_result(()).expect_err("three problems");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("a: \"soon\""), "{e:?}");
        assert!(e[1].starts_with("b: \"0s\" must be more than 0"), "{e:?}");
        assert!(e[2].starts_with("c: \"1\" is below"), "{e:?}");
    }
}
