//! Retention and rollups by name pattern, in carbon's storage-schemas syntax.
//!
//! A schema is a list of archives, finest first: `10s:7d,1m:90d,10m:5y` keeps 10-second points
//! for 7 days, 1-minute rollups for 90 days and 10-minute rollups for 5 years. Units follow
//! carbon: `s`, `m`/`min`, `h`, `d`, `w`, `y`; a bare number is seconds for a precision and a point
//! count for a retention. Each precision must divide the next, and each archive must keep more
//! time than the one before. Rules are tried in order and the first whose regex matches the
//! series name wins; the default schema applies when none does. A series keeps the schema it was
//! created with, as a whisper file does.
//!
//! The finest archive stores points; every coarser one stores per slot the sum, count, min, max
//! and last of the points in it, so average, sum, min, max and last are all exact at every
//! resolution (whisper keeps one aggregate per file).

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One archive: a step and how long its points are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Archive {
    pub step_secs: u32,
    pub retention_secs: u64,
}

impl Archive {
    /// Width of the RocksDB chunk holding this archive's points: 720 steps (2 h at 10 s).
    pub fn bucket_secs(&self) -> u32 {
        self.step_secs.saturating_mul(720)
    }
}

/// How a coarser resolution reduces the points of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    #[default]
    Average,
    Sum,
    Min,
    Max,
    Last,
    Count,
}

impl Aggregate {
    /// The byte that stands for this aggregate on disk (in a series' index entry). Written out,
    /// never the declaration order: reordering the enum must not change what stored bytes mean.
    pub(crate) fn code(self) -> u8 {
        match self {
            Aggregate::Average => 0,
            Aggregate::Sum => 1,
            Aggregate::Min => 2,
            Aggregate::Max => 3,
            Aggregate::Last => 4,
            Aggregate::Count => 5,
        }
    }

    /// The aggregate [`Aggregate::code`] wrote; `None` for a byte no aggregate has.
    pub(crate) fn from_code(code: u8) -> Option<Aggregate> {
        Some(match code {
            0 => Aggregate::Average,
            1 => Aggregate::Sum,
            2 => Aggregate::Min,
            3 => Aggregate::Max,
            4 => Aggregate::Last,
            5 => Aggregate::Count,
            _ => return None,
        })
    }

    pub fn parse(name: &str) -> Option<Aggregate> {
        Some(match name {
            "average" | "avg" => Aggregate::Average,
            "sum" => Aggregate::Sum,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "last" => Aggregate::Last,
            "count" => Aggregate::Count,
            _ => return None,
        })
    }
}

/// What a series keeps: its archives, finest first, and the aggregate coarse reads default to.
/// Fixed when the series is created (as a whisper file's), and shared by the many series created
/// under the same rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ArchiveSet {
    pub(crate) archives: Vec<Archive>,
    pub(crate) aggregate: Aggregate,
}

/// The default for series no rule matches.
pub const DEFAULT_RETENTIONS: &str = "10s:7d,1m:90d,10m:5y";

/// Parses `10s:7d,1m:90d`.
pub fn parse_retentions(text: &str) -> Result<Vec<Archive>, String> {
    let mut archives = Vec::new();
    for part in text.split(',').map(str::trim) {
        let Some((precision, retention)) = part.split_once(':') else {
            return Err(format!("\"{part}\" is not precision:retention"));
        };
        let step = duration_secs(precision)
            .ok_or_else(|| format!("bad precision \"{precision}\" in \"{part}\""))?;
        if step == 0 || step > u64::from(u32::MAX) {
            return Err(format!("precision \"{precision}\" out of range"));
        }
        let keep = match retention.trim().parse::<u64>() {
            Ok(points) => points.checked_mul(step),
            Err(_) => duration_secs(retention),
        }
        .ok_or_else(|| format!("bad retention \"{retention}\" in \"{part}\""))?;
        archives.push(Archive {
            step_secs: step as u32,
            retention_secs: keep,
        });
    }
    for pair in archives.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.step_secs <= a.step_secs || b.step_secs % a.step_secs != 0 {
            return Err(format!(
                "precision {}s must be a multiple of the finer {}s",
                b.step_secs, a.step_secs
            ));
        }
        if b.retention_secs <= a.retention_secs {
            return Err(format!(
                "the {}s archive must keep more than the {}s archive",
                b.step_secs, a.step_secs
            ));
        }
    }
    for a in &archives {
        if a.retention_secs < u64::from(a.step_secs) {
            return Err(format!(
                "the {}s archive keeps less than one step",
                a.step_secs
            ));
        }
    }
    Ok(archives)
}

/// Seconds written back in carbon's units, the largest that divides exactly: `5y`, `90d`,
/// `2h`, `1m` (a minute), `10s`.
pub(crate) fn span_text(secs: u64) -> String {
    for (unit, mult) in [("y", 31_536_000), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= mult && secs.is_multiple_of(mult) {
            return format!("{}{unit}", secs / mult);
        }
    }
    format!("{secs}s")
}

/// Archives written back as a retentions string: `10s:7d,1m:90d,10m:5y`.
pub(crate) fn retentions_text(archives: &[Archive]) -> String {
    archives
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                span_text(u64::from(a.step_secs)),
                span_text(a.retention_secs)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `10s`, `5min`, `1m` (minutes, as in carbon), `2h`, `7d`, `1w`, `5y`, or bare seconds.
fn duration_secs(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        "y" | "year" | "years" => 31_536_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A rule: series whose name matches `pattern` get `archives`.
#[derive(Debug, Clone)]
pub struct Schema {
    pub name: String,
    pub pattern: Regex,
    pub archives: Vec<Archive>,
    /// What a coarse read returns unless the query asks otherwise (carbon's storage-aggregation).
    pub aggregate: Aggregate,
}

/// The rules in order, and the default.
#[derive(Debug, Clone)]
pub struct Schemas {
    pub rules: Vec<Schema>,
    pub default: Vec<Archive>,
}

impl Default for Schemas {
    fn default() -> Self {
        Schemas {
            rules: Vec::new(),
            default: parse_retentions(DEFAULT_RETENTIONS).unwrap_or_default(),
        }
    }
}

impl Schemas {
    /// The archives and aggregate for a new series: the first matching rule, else the default.
    pub(crate) fn for_name(&self, name: &str) -> ArchiveSet {
        let (archives, aggregate) = self
            .rules
            .iter()
            .find(|s| s.pattern.is_match(name))
            .map_or((&self.default[..], Aggregate::Average), |s| {
                (&s.archives[..], s.aggregate)
            });
        ArchiveSet {
            archives: archives.to_vec(),
            aggregate,
        }
    }

    /// The shortest of the longest retentions any rule (or the default) gives: a point younger
    /// than this is kept by whatever schema its series has.
    pub(crate) fn shortest_longest_retention_secs(&self) -> i64 {
        self.rules
            .iter()
            .map(|s| &s.archives[..])
            .chain([&self.default[..]])
            .map(|a| a.last().map_or(0, |a| a.retention_secs))
            .min()
            .unwrap_or(0)
            .min(i64::MAX as u64) as i64
    }

    /// Every archive any rule can give, for opening column families.
    pub(crate) fn all_archives(&self) -> Vec<Archive> {
        let mut all: Vec<Archive> = self
            .rules
            .iter()
            .flat_map(|s| s.archives.iter().copied())
            .chain(self.default.iter().copied())
            .collect();
        all.sort_by_key(|a| (a.step_secs, a.retention_secs));
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carbon_syntax() {
        let a = parse_retentions("10s:7d,1m:90d,10m:5y").expect("valid");
        assert_eq!(
            a,
            [
                Archive {
                    step_secs: 10,
                    retention_secs: 7 * 86_400
                },
                Archive {
                    step_secs: 60,
                    retention_secs: 90 * 86_400
                },
                Archive {
                    step_secs: 600,
                    retention_secs: 5 * 31_536_000
                },
            ]
        );
        // A bare retention is a point count, as in carbon.
        assert_eq!(
            parse_retentions("60:1440").expect("valid"),
            [Archive {
                step_secs: 60,
                retention_secs: 86_400
            }]
        );
    }

    #[test]
    fn retentions_are_written_back_as_carbon_writes_them() {
        for text in ["10s:7d,1m:90d,10m:5y", "1s:1h", "10s:1d,1m:30d", "1h:5y"] {
            let archives = parse_retentions(text).expect("valid");
            assert_eq!(retentions_text(&archives), text);
        }
        assert_eq!(span_text(90), "90s");
        assert_eq!(span_text(7 * 86_400), "7d");
    }

    #[test]
    fn bad_schemas_say_why() {
        for (text, want) in [
            ("10s", "is not precision:retention"),
            ("10x:1d", "bad precision \"10x\""),
            ("10s:1q", "bad retention \"1q\""),
            ("10s:1d,15s:7d", "must be a multiple"),
            ("10s:7d,1m:1d", "must keep more"),
            ("1h:10m", "less than one step"),
            ("0s:1d", "out of range"),
        ] {
            let err = parse_retentions(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    /// The on-disk codes are part of the format: this table may only grow.
    #[test]
    fn aggregate_codes_are_fixed() {
        let table = [
            (Aggregate::Average, 0),
            (Aggregate::Sum, 1),
            (Aggregate::Min, 2),
            (Aggregate::Max, 3),
            (Aggregate::Last, 4),
            (Aggregate::Count, 5),
        ];
        for (agg, code) in table {
            assert_eq!(agg.code(), code, "{agg:?}");
            assert_eq!(Aggregate::from_code(code), Some(agg));
        }
        assert_eq!(Aggregate::from_code(6), None);
        assert_eq!(Aggregate::from_code(255), None);
    }

    #[test]
    fn first_match_wins() {
        let s = Schemas {
            rules: vec![
                Schema {
                    name: "agent".into(),
                    pattern: Regex::new(r"^tally\.").expect("regex"),
                    archives: parse_retentions("1m:30d").expect("valid"),
                    aggregate: Aggregate::Sum,
                },
                Schema {
                    name: "all".into(),
                    pattern: Regex::new("").expect("regex"),
                    archives: parse_retentions("1s:1h").expect("valid"),
                    aggregate: Aggregate::Max,
                },
            ],
            default: parse_retentions(DEFAULT_RETENTIONS).expect("valid"),
        };
        assert_eq!(s.for_name("tally.x").archives[0].step_secs, 60);
        assert_eq!(s.for_name("tally.x").aggregate, Aggregate::Sum);
        assert_eq!(s.for_name("web.x").archives[0].step_secs, 1);
        assert_eq!(s.for_name("web.x").aggregate, Aggregate::Max);
        assert_eq!(s.all_archives().len(), 5);
    }
}
