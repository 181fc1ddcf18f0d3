//! `tally store` configuration: a TOML file, every key optional, defaults that run with no file.
//!
//! Loaded with `tally_common::config`, as every Tally config is: every unknown key and every
//! invalid value is reported at once, each with its place; durations and sizes are written with
//! their unit (`flush_interval = "1m"`, `max_line_size = "16KiB"`).
//!
//! The `[query]` table belongs to the query side (limits, API tokens, alert rules), which the
//! store knows nothing about: it is kept as written in [`StoreConfig::query`] and checked by
//! whoever serves the query API next to the store (`tally_query::QueryConfig`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use serde::Deserialize;
use tally_common::config::{DurationText, Problems, SizeText};

use crate::engine::MinFree;
use crate::error::{Error, Result};
use crate::retention::{parse_retentions, Aggregate, Schema, Schemas, DEFAULT_RETENTIONS};

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// Graphite plaintext over TCP.
    pub line_listen: String,
    /// Also take plaintext datagrams on the same address over UDP.
    pub udp_enabled: bool,
    /// HTTP: the acknowledged batch endpoint, `/metrics`, and the Graphite API.
    pub http_listen: String,
    /// If not empty, plaintext listeners accept only these source networks (CIDR).
    pub allow_cidrs: Vec<String>,
    /// Plaintext TCP connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// A plaintext connection that sends nothing for this long is closed.
    pub idle_timeout: DurationText,
    /// Longest accepted line, newline excluded.
    pub max_line_size: SizeText,
    /// Plain TCP/UDP points are in the synced WAL at most this long after they arrive.
    pub wal_sync_interval: DurationText,
    /// The head is written into chunks this often (and when it holds `max_head_points`).
    pub flush_interval: DurationText,
    /// Points the head holds before a flush is started early.
    pub max_head_points: usize,
    /// The store writes its own counters as `tally.store.*` this often; `"0s"` turns it off.
    pub self_metrics_interval: DurationText,
    /// Full compaction (which also expires old data in files nothing else touches) this often.
    pub compact_interval: DurationText,
    /// Free space kept on the data directory's filesystem: below it writes are refused (ingest
    /// answers 507, plaintext connections are paused) until space returns. A size (`"1GiB"`),
    /// a share of the filesystem (`"5%"`) or `"0"` (no reserve). Unset: the larger of 256MiB
    /// and 1% of the filesystem.
    pub min_free_space: Option<SizeText>,
    /// If set, `POST /api/v1/ingest` needs `Authorization: Bearer <token>`.
    pub ingest_token: Option<String>,
    /// Archives of series no `[[retention]]` rule matches.
    pub default_retentions: String,
    /// Rules tried in order; the first whose pattern matches a new series' name wins.
    pub retention: Vec<RetentionRule>,
    /// The query side's table, checked by the query crate (`tally_query::QueryConfig`).
    pub query: toml::Table,
}

/// One `[[retention]]` rule, like a section of carbon's storage-schemas.conf.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionRule {
    /// A label for messages.
    pub name: String,
    /// A regex matched against the canonical series name.
    pub pattern: String,
    /// `10s:7d,1m:90d,10m:5y`.
    pub retentions: String,
    /// What coarse reads return by default: average, sum, min, max, last, count.
    #[serde(default)]
    pub aggregation: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./data"),
            line_listen: "0.0.0.0:2003".into(),
            udp_enabled: false,
            http_listen: "0.0.0.0:8080".into(),
            allow_cidrs: Vec::new(),
            max_connections: 4096,
            idle_timeout: "10m".into(),
            max_line_size: "16KiB".into(),
            wal_sync_interval: "1s".into(),
            flush_interval: "1m".into(),
            max_head_points: 4_000_000,
            self_metrics_interval: "10s".into(),
            compact_interval: "1d".into(),
            min_free_space: None,
            ingest_token: None,
            default_retentions: DEFAULT_RETENTIONS.into(),
            retention: Vec::new(),
            query: toml::Table::new(),
        }
    }
}

impl StoreConfig {
    /// Reads a file, reporting every unknown key and every parse error with the file's name.
    pub fn load(path: &Path) -> Result<StoreConfig> {
        tally_common::config::load(path).map_err(Error::Config)
    }

    /// Parses TOML text; the error lists every problem.
    pub fn parse(text: &str) -> Result<StoreConfig, Vec<String>> {
        tally_common::config::parse(text)
    }
}

/// The validated, ready-to-use form.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub line_listen: SocketAddr,
    pub udp_enabled: bool,
    pub http_listen: SocketAddr,
    pub allow: Vec<IpNet>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub max_line_bytes: usize,
    pub wal_sync_interval: Duration,
    pub flush_interval: Duration,
    pub max_head_points: usize,
    pub self_metrics_interval: Option<Duration>,
    pub compact_interval: Duration,
    pub min_free: MinFree,
    pub ingest_token: Option<String>,
    pub schemas: Schemas,
}

impl TryFrom<StoreConfig> for Settings {
    type Error = Error;

    /// Validates everything and reports all problems at once.
    fn try_from(c: StoreConfig) -> Result<Settings> {
        let mut problems = Problems::default();
        let addr = |p: &mut Problems, key: &str, v: &str| -> SocketAddr {
            v.parse().unwrap_or_else(|_| {
                p.push(
                    key,
                    format!("\"{v}\" is not an address like 127.0.0.1:2003"),
                );
                SocketAddr::from(([0, 0, 0, 0], 0))
            })
        };
        let line_listen = addr(&mut problems, "line_listen", &c.line_listen);
        let http_listen = addr(&mut problems, "http_listen", &c.http_listen);
        let mut allow = Vec::new();
        for (i, cidr) in c.allow_cidrs.iter().enumerate() {
            match cidr
                .parse::<IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
            {
                Ok(net) => allow.push(net),
                Err(_) => problems.push(
                    &format!("allow_cidrs[{i}]"),
                    format!("\"{cidr}\" is not a CIDR like 10.0.0.0/8"),
                ),
            }
        }
        let idle_timeout = problems.positive_duration("idle_timeout", &c.idle_timeout);
        let max_line_bytes = problems.size("max_line_size", &c.max_line_size, 64) as usize;
        let wal_sync_interval =
            problems.positive_duration("wal_sync_interval", &c.wal_sync_interval);
        let flush_interval = problems.positive_duration("flush_interval", &c.flush_interval);
        let self_metrics_interval =
            problems.duration("self_metrics_interval", &c.self_metrics_interval);
        let compact_interval = problems.positive_duration("compact_interval", &c.compact_interval);
        let min_free = match &c.min_free_space {
            None => MinFree::Default,
            Some(text) => min_free(&mut problems, text),
        };
        problems.positive("max_connections", c.max_connections);
        problems.positive("max_head_points", c.max_head_points);
        let default = parse_retentions(&c.default_retentions).unwrap_or_else(|e| {
            problems.push("default_retentions", e);
            Vec::new()
        });
        let mut rules = Vec::new();
        for (i, r) in c.retention.iter().enumerate() {
            let place = format!("retention[{i}] (\"{}\")", r.name);
            let pattern = Regex::new(&r.pattern)
                .map_err(|e| problems.push(&format!("{place}.pattern"), e))
                .ok();
            let archives = parse_retentions(&r.retentions)
                .map_err(|e| problems.push(&format!("{place}.retentions"), e))
                .ok();
            let aggregate = match r.aggregation.as_deref() {
                None => Some(Aggregate::Average),
                Some(a) => Aggregate::parse(a).or_else(|| {
                    problems.push(
                        &format!("{place}.aggregation"),
                        format!("\"{a}\" is not one of average, sum, min, max, last, count"),
                    );
                    None
                }),
            };
            if let (Some(pattern), Some(archives), Some(aggregate)) = (pattern, archives, aggregate)
            {
                rules.push(Schema {
                    name: r.name.clone(),
                    pattern,
                    archives,
                    aggregate,
                });
            }
        }
        problems
            .into_result(Settings {
                data_dir: c.data_dir,
                line_listen,
                udp_enabled: c.udp_enabled,
                http_listen,
                allow,
                max_connections: c.max_connections,
                idle_timeout,
                max_line_bytes,
                wal_sync_interval,
                flush_interval,
                max_head_points: c.max_head_points,
                self_metrics_interval: (!self_metrics_interval.is_zero())
                    .then_some(self_metrics_interval),
                compact_interval,
                min_free,
                ingest_token: c.ingest_token.filter(|t| !t.is_empty()),
                schemas: Schemas { rules, default },
            })
            .map_err(Error::Config)
    }
}

/// `min_free_space`: a size, or a percentage of the filesystem.
fn min_free(problems: &mut Problems, text: &SizeText) -> MinFree {
    let written = text.to_string();
    let Some(pct) = written.trim().strip_suffix('%') else {
        return MinFree::Bytes(problems.size("min_free_space", text, 0));
    };
    match pct.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => MinFree::Percent(p),
        _ => {
            problems.push(
                "min_free_space",
                format!("\"{written}\" is not a percentage from 0% to 100%"),
            );
            MinFree::Default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = include_str!("../../examples/store.toml");
        let config = StoreConfig::parse(text).expect("example parses");
        let settings = Settings::try_from(config).expect("example is valid");
        assert_eq!(settings.schemas.rules.len(), 2);
    }

    #[test]
    fn no_config_is_the_defaults() {
        let settings =
            Settings::try_from(StoreConfig::parse("").expect("empty parses")).expect("valid");
        assert_eq!(settings.line_listen.port(), 2003);
        assert_eq!(settings.http_listen.port(), 8080);
        assert_eq!(settings.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let err = StoreConfig::parse("lin_listen = \"x\"\nfoo = 1\n[[retention]]\nname=\"a\"\npattern=\"b\"\nretentions=\"10s:1d\"\npatern=\"c\"\n")
            .expect_err("unknown keys");
        assert_eq!(err.len(), 3, "{err:?}");
        assert!(
            err.iter().any(|e| e.contains("retention.0.patern")),
            "{err:?}"
        );
    }

    #[test]
    fn durations_and_sizes_are_written_with_units() {
        let c = StoreConfig::parse(
            "idle_timeout = \"90s\"\nmax_line_size = \"64KiB\"\nwal_sync_interval = \"250ms\"\n\
             self_metrics_interval = \"0s\"\ncompact_interval = 3600\n",
        )
        .expect("parses");
        let s = Settings::try_from(c).expect("valid");
        assert_eq!(s.idle_timeout, Duration::from_secs(90));
        assert_eq!(s.max_line_bytes, 65536);
        assert_eq!(s.wal_sync_interval, Duration::from_millis(250));
        assert_eq!(s.self_metrics_interval, None);
        assert_eq!(s.compact_interval, Duration::from_secs(3600));
    }

    #[test]
    fn the_free_space_reserve_is_a_size_or_a_share() {
        let settings = |text: &str| {
            Settings::try_from(StoreConfig::parse(text).expect("parses")).map(|s| s.min_free)
        };
        assert_eq!(settings("").expect("valid"), MinFree::Default);
        assert_eq!(
            settings("min_free_space = \"8MiB\"").expect("valid"),
            MinFree::Bytes(8 << 20)
        );
        assert_eq!(
            settings("min_free_space = 0").expect("valid"),
            MinFree::Bytes(0)
        );
        assert_eq!(
            settings("min_free_space = \"5%\"").expect("valid"),
            MinFree::Percent(5.0)
        );
        for (text, want) in [
            (
                "min_free_space = \"150%\"",
                "min_free_space: \"150%\" is not a percentage from 0% to 100%",
            ),
            ("min_free_space = \"lots\"", "min_free_space: \"lots\""),
        ] {
            let Err(Error::Config(problems)) = settings(text) else {
                panic!("{text}: expected a config error");
            };
            assert!(problems[0].starts_with(want), "{text}: {problems:?}");
        }
    }

    #[test]
    fn the_query_table_is_kept_for_the_query_side() {
        let c = StoreConfig::parse("[query]\nmax_series_per_request = 3\nanything = 1\n")
            .expect("the store does not check the query side's keys");
        assert_eq!(c.query.len(), 2);
    }

    #[test]
    fn every_bad_value_is_reported() {
        let text = "line_listen = \"nope\"\nallow_cidrs = [\"10.0.0.0/8\", \"bad\"]\nflush_interval = \"0s\"\n\
                    [[retention]]\nname = \"x\"\npattern = \"(\"\nretentions = \"10s:1d,15s:2d\"\naggregation = \"median\"\n";
        let Err(Error::Config(problems)) =
            Settings::try_from(StoreConfig::parse(text).expect("parses"))
        else {
            panic!("expected config errors");
        };
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(
            problems[0].starts_with("line_listen: \"nope\""),
            "{problems:?}"
        );
    }
}
