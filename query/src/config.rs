//! The query side's settings: the `[query]` table of `tally store`'s file (and, for a query node
//! of its own, the same table): request limits and the alert rules file. The tokens are the
//! HTTP port's, in the store's own keys (`read_token`, `write_token`), since they guard the
//! store's routes too. Written and checked as every Tally config is (`tally_common::config`): unknown keys
//! and bad values are all reported at once, durations carry their unit.

use std::path::PathBuf;

use serde::Deserialize;
use tally_common::config::{DurationText, Problems};

use crate::Limits;

/// The `[query]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct QueryConfig {
    /// Most series one `/render` request may read.
    pub max_series_per_request: usize,
    /// Most points one `/render` request may read.
    pub max_points_per_request: usize,
    /// Most points every request in flight (and every alert evaluation) may hold together;
    /// past it a request is answered 503 with `Retry-After`.
    pub max_points_in_flight: usize,
    /// Longest a `/render` request may run before it is refused.
    pub max_request_time: DurationText,
    /// The alerting file (rules and notifiers; see examples/alerts.toml). Relative paths are
    /// from the working directory.
    pub alerts: Option<PathBuf>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let limits = Limits::default();
        QueryConfig {
            max_series_per_request: limits.max_series,
            max_points_per_request: limits.max_points,
            max_points_in_flight: crate::DEFAULT_MAX_POINTS_IN_FLIGHT,
            max_request_time: format!("{}s", limits.max_time.as_secs()).as_str().into(),
            alerts: None,
        }
    }
}

impl QueryConfig {
    /// Checks a `[query]` table read from another program's file; unknown keys are named
    /// `query.<key>`.
    pub fn from_table(mut table: toml::Table) -> Result<QueryConfig, Vec<String>> {
        // The tokens moved to the top of the file: say so rather than "unknown key".
        let moved: Vec<String> = ["read_token", "write_token"]
            .into_iter()
            .filter(|k| table.remove(*k).is_some())
            .map(|k| {
                format!("query.{k}: is now {k} at the top of the file, since it guards the store's routes too")
            })
            .collect();
        match tally_common::config::from_table(table, "query") {
            Ok(c) if moved.is_empty() => Ok(c),
            Ok(_) => Err(moved),
            Err(mut e) => {
                e.splice(0..0, moved);
                Err(e)
            }
        }
    }
}

/// The validated form.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    pub limits: Limits,
    /// The bound of the process's [`crate::Budget`].
    pub max_points_in_flight: usize,
    pub alerts_file: Option<PathBuf>,
}

impl Default for QuerySettings {
    fn default() -> Self {
        QuerySettings {
            limits: Limits::default(),
            max_points_in_flight: crate::DEFAULT_MAX_POINTS_IN_FLIGHT,
            alerts_file: None,
        }
    }
}

impl TryFrom<QueryConfig> for QuerySettings {
    type Error = Vec<String>;

    /// Validates everything and reports all problems at once, each as `query.<key>: ...`.
    fn try_from(c: QueryConfig) -> Result<QuerySettings, Vec<String>> {
        let mut problems = Problems::default();
        let max_time = problems.positive_duration("query.max_request_time", &c.max_request_time);
        problems.positive("query.max_series_per_request", c.max_series_per_request);
        problems.positive("query.max_points_per_request", c.max_points_per_request);
        problems.positive("query.max_points_in_flight", c.max_points_in_flight);
        if c.max_points_in_flight < c.max_points_per_request {
            problems.push(
                "query.max_points_in_flight",
                format_args!(
                    "{} is less than max_points_per_request ({}), so the largest request allowed could never run",
                    c.max_points_in_flight, c.max_points_per_request
                ),
            );
        }
        problems.into_result(QuerySettings {
            limits: Limits {
                max_series: c.max_series_per_request,
                max_points: c.max_points_per_request,
                max_time,
            },
            max_points_in_flight: c.max_points_in_flight,
            alerts_file: c.alerts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn no_table_is_the_defaults() {
        let s = QuerySettings::try_from(QueryConfig::from_table(table("")).expect("empty"))
            .expect("valid");
        assert_eq!(s.limits.max_series, Limits::default().max_series);
        assert_eq!(s.limits.max_time, Duration::from_secs(30));
        assert!(s.alerts_file.is_none());
    }

    #[test]
    fn keys_are_checked_and_named_under_query() {
        let e = QueryConfig::from_table(table("max_series = 1\nread_tokn = \"x\"\n"))
            .expect_err("unknown keys");
        assert_eq!(
            e,
            vec![
                "unknown key \"query.max_series\"".to_string(),
                "unknown key \"query.read_tokn\"".to_string()
            ]
        );
        // Issue 17: the tokens moved to the store's keys, and the message says where.
        let e = QueryConfig::from_table(table("read_token = \"r\"\nmax_series = 1\n"))
            .expect_err("moved");
        assert_eq!(
            e,
            vec![
                "query.read_token: is now read_token at the top of the file, since it guards the store's routes too".to_string(),
                "unknown key \"query.max_series\"".to_string(),
            ]
        );
        let c = QueryConfig::from_table(table(
            "max_series_per_request = 0\nmax_request_time = \"soon\"\n",
        ))
        .expect("parses");
        let e = QuerySettings::try_from(c).expect_err("bad values");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("query.max_request_time: \"soon\""),
            "{e:?}"
        );
        let c = QueryConfig::from_table(table("max_request_time = \"2m\"\nalerts = \"a.toml\"\n"))
            .expect("parses");
        let s = QuerySettings::try_from(c).expect("valid");
        assert_eq!(s.limits.max_time, Duration::from_secs(120));
        assert_eq!(s.alerts_file, Some(PathBuf::from("a.toml")));
    }

    /// Issue 17: the bound on every request in flight defaults to twice one request's, and may
    /// not be below one request's (the largest request allowed could never run).
    #[test]
    fn points_in_flight_are_bounded_and_checked() {
        let s = QuerySettings::try_from(QueryConfig::default()).expect("valid");
        assert_eq!(s.max_points_in_flight, 2 * s.limits.max_points);
        let c = QueryConfig::from_table(table(
            "max_points_per_request = 1000\nmax_points_in_flight = 999\n",
        ))
        .expect("parses");
        assert_eq!(
            QuerySettings::try_from(c).expect_err("below one request"),
            vec!["query.max_points_in_flight: 999 is less than max_points_per_request (1000), so the largest request allowed could never run".to_string()]
        );
        let c = QueryConfig::from_table(table("max_points_in_flight = 5000\n")).expect("parses");
        let c = QueryConfig {
            max_points_per_request: 1000,
            ..c
        };
        assert_eq!(
            QuerySettings::try_from(c)
                .expect("valid")
                .max_points_in_flight,
            5000
        );
    }
}
