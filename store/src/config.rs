//! `tally store` configuration: a TOML file, every key optional, defaults that run with no file.
//!
//! Unknown keys are errors. Rather than `deny_unknown_fields`, which stops at the first one, keys
//! are collected with `serde_ignored` so that every unknown key and every invalid value is
//! reported at once, each with its place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use serde::Deserialize;

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
    /// HTTP: the acknowledged batch endpoint, `/metrics`, and (later) the Graphite API.
    pub http_listen: String,
    /// If not empty, plaintext listeners accept only these source networks (CIDR).
    pub allow_cidrs: Vec<String>,
    /// Plaintext TCP connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// A plaintext connection that sends nothing for this long is closed.
    pub idle_timeout_secs: u64,
    /// Longest accepted line, newline excluded.
    pub max_line_bytes: usize,
    /// Plain TCP/UDP points are in the synced WAL at most this long after they arrive.
    pub wal_sync_interval_ms: u64,
    /// The head is written into chunks this often (and when it holds `max_head_points`).
    pub flush_interval_secs: u64,
    /// Points the head holds before a flush is started early.
    pub max_head_points: usize,
    /// The store writes its own counters as `tally.store.*` this often; 0 turns it off.
    pub self_metrics_interval_secs: u64,
    /// Full compaction (which also expires old data in files nothing else touches) this often.
    pub compact_interval_secs: u64,
    /// If set, `POST /api/v1/ingest` needs `Authorization: Bearer <token>`.
    pub ingest_token: Option<String>,
    /// If set, writes to the Graphite API (`POST /events`) need `Authorization: Bearer <token>`.
    pub api_write_token: Option<String>,
    /// If set, every Graphite API request (render, find, tags, ...) needs this bearer token.
    pub api_read_token: Option<String>,
    /// Most series one `/render` request may read.
    pub max_series_per_request: usize,
    /// Most points one `/render` request may read.
    pub max_points_per_request: usize,
    /// Longest a `/render` request may run before it is refused.
    pub max_request_secs: u64,
    /// The alerting file (rules and notifiers; see examples/alerts.toml). Relative paths are
    /// from the working directory.
    pub alerts: Option<PathBuf>,
    /// Archives of series no `[[retention]]` rule matches.
    pub default_retentions: String,
    /// Rules tried in order; the first whose pattern matches a new series' name wins.
    pub retention: Vec<RetentionRule>,
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
            alerts: None,
            line_listen: "0.0.0.0:2003".into(),
            udp_enabled: false,
            http_listen: "0.0.0.0:8080".into(),
            allow_cidrs: Vec::new(),
            max_connections: 4096,
            idle_timeout_secs: 600,
            max_line_bytes: tally_proto::DEFAULT_MAX_LINE_BYTES,
            wal_sync_interval_ms: 1000,
            flush_interval_secs: 60,
            max_head_points: 4_000_000,
            self_metrics_interval_secs: 10,
            compact_interval_secs: 86_400,
            ingest_token: None,
            api_write_token: None,
            api_read_token: None,
            max_series_per_request: 100_000,
            max_points_per_request: 50_000_000,
            max_request_secs: 30,
            default_retentions: DEFAULT_RETENTIONS.into(),
            retention: Vec::new(),
        }
    }
}

impl StoreConfig {
    /// Reads a file, reporting every unknown key and every parse error with the file's name.
    pub fn load(path: &Path) -> Result<StoreConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(vec![format!("{}: {e}", path.display())]))?;
        Self::parse(&text).map_err(|problems| {
            Error::Config(
                problems
                    .into_iter()
                    .map(|p| format!("{}: {p}", path.display()))
                    .collect(),
            )
        })
    }

    /// Parses TOML text; the error lists every problem.
    pub fn parse(text: &str) -> Result<StoreConfig, Vec<String>> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::new(text);
        let config: StoreConfig =
            serde_ignored::deserialize(de, |path| unknown.push(format!("unknown key \"{path}\"")))
                .map_err(|e| vec![e.to_string().trim().replace('\n', " ")])?;
        if !unknown.is_empty() {
            return Err(unknown);
        }
        Ok(config)
    }
}

/// The validated, ready-to-use form.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub alerts_file: Option<PathBuf>,
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
    pub ingest_token: Option<String>,
    pub api_write_token: Option<String>,
    pub api_read_token: Option<String>,
    pub max_series_per_request: usize,
    pub max_points_per_request: usize,
    pub max_request: Duration,
    pub schemas: Schemas,
}

impl TryFrom<StoreConfig> for Settings {
    type Error = Error;

    /// Validates everything and reports all problems at once.
    fn try_from(c: StoreConfig) -> Result<Settings> {
        let mut problems = Vec::new();
        let mut addr = |key: &str, v: &str| -> SocketAddr {
            v.parse().unwrap_or_else(|_| {
                problems.push(format!(
                    "{key}: \"{v}\" is not an address like 127.0.0.1:2003"
                ));
                SocketAddr::from(([0, 0, 0, 0], 0))
            })
        };
        let line_listen = addr("line_listen", &c.line_listen);
        let http_listen = addr("http_listen", &c.http_listen);
        let mut allow = Vec::new();
        for (i, cidr) in c.allow_cidrs.iter().enumerate() {
            match cidr
                .parse::<IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
            {
                Ok(net) => allow.push(net),
                Err(_) => problems.push(format!(
                    "allow_cidrs[{i}]: \"{cidr}\" is not a CIDR like 10.0.0.0/8"
                )),
            }
        }
        for (key, value) in [
            ("max_connections", c.max_connections as u64),
            ("max_line_bytes", c.max_line_bytes as u64),
            ("wal_sync_interval_ms", c.wal_sync_interval_ms),
            ("flush_interval_secs", c.flush_interval_secs),
            ("max_head_points", c.max_head_points as u64),
            ("idle_timeout_secs", c.idle_timeout_secs),
            ("compact_interval_secs", c.compact_interval_secs),
            ("max_series_per_request", c.max_series_per_request as u64),
            ("max_points_per_request", c.max_points_per_request as u64),
            ("max_request_secs", c.max_request_secs),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be greater than 0"));
            }
        }
        let default = parse_retentions(&c.default_retentions).unwrap_or_else(|e| {
            problems.push(format!("default_retentions: {e}"));
            Vec::new()
        });
        let mut rules = Vec::new();
        for (i, r) in c.retention.iter().enumerate() {
            let place = format!("retention[{i}] (\"{}\")", r.name);
            let pattern = Regex::new(&r.pattern)
                .map_err(|e| problems.push(format!("{place}.pattern: {e}")))
                .ok();
            let archives = parse_retentions(&r.retentions)
                .map_err(|e| problems.push(format!("{place}.retentions: {e}")))
                .ok();
            let aggregate = match r.aggregation.as_deref() {
                None => Some(Aggregate::Average),
                Some(a) => Aggregate::parse(a).or_else(|| {
                    problems.push(format!(
                        "{place}.aggregation: \"{a}\" is not one of average, sum, min, max, last, count"
                    ));
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
        if !problems.is_empty() {
            return Err(Error::Config(problems));
        }
        Ok(Settings {
            data_dir: c.data_dir,
            alerts_file: c.alerts,
            line_listen,
            udp_enabled: c.udp_enabled,
            http_listen,
            allow,
            max_connections: c.max_connections,
            idle_timeout: Duration::from_secs(c.idle_timeout_secs),
            max_line_bytes: c.max_line_bytes,
            wal_sync_interval: Duration::from_millis(c.wal_sync_interval_ms),
            flush_interval: Duration::from_secs(c.flush_interval_secs),
            max_head_points: c.max_head_points,
            self_metrics_interval: (c.self_metrics_interval_secs > 0)
                .then(|| Duration::from_secs(c.self_metrics_interval_secs)),
            compact_interval: Duration::from_secs(c.compact_interval_secs),
            ingest_token: c.ingest_token.filter(|t| !t.is_empty()),
            api_write_token: c.api_write_token.filter(|t| !t.is_empty()),
            api_read_token: c.api_read_token.filter(|t| !t.is_empty()),
            max_series_per_request: c.max_series_per_request,
            max_points_per_request: c.max_points_per_request,
            max_request: Duration::from_secs(c.max_request_secs),
            schemas: Schemas { rules, default },
        })
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
    fn every_bad_value_is_reported() {
        let text = "line_listen = \"nope\"\nallow_cidrs = [\"10.0.0.0/8\", \"bad\"]\nflush_interval_secs = 0\n\
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
