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
use tally_common::auth::Tokens;
use tally_common::config::{DurationText, Problems, SizeText};
use tally_common::tls::ServerFiles;

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
    /// HTTP connections open at once. At the cap the connection idle the longest is closed to
    /// make room; when none is idle a newcomer gets 503 and is closed.
    pub http_max_connections: usize,
    /// HTTP requests served at once (`/metrics` aside); more are answered 503 at once.
    pub http_max_requests: usize,
    /// From the first byte of a request to the end of its headers (slowloris ends here).
    pub http_header_timeout: DurationText,
    /// From the end of a request's headers to the end of its body; later gets 408.
    pub http_body_timeout: DurationText,
    /// An HTTP connection without a request for this long is closed, and so is one whose
    /// client takes no response bytes for this long.
    pub http_idle_timeout: DurationText,
    /// If not empty, plaintext listeners accept only these source networks (CIDR).
    pub allow_cidrs: Vec<String>,
    /// Plaintext TCP connections open at once. When all are taken, a newcomer is let in by
    /// closing an idle one (from the address holding the most); it is refused only when every
    /// connection sent something within the last second.
    pub max_connections: usize,
    /// Plaintext TCP connections one source address may hold; more are refused on accept.
    pub max_connections_per_address: usize,
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
    /// If set, every read of the HTTP port (`/api/v1/read`, `/render`, find, tags, events,
    /// functions, the alerts' state, `/metrics`) needs `Authorization: Bearer <token>` with this
    /// token or the write token.
    pub read_token: Option<String>,
    /// If set, every write of the HTTP port (ingest, tag writes and deletes, events, silences,
    /// reloads) needs this token; it grants every read too.
    pub write_token: Option<String>,
    /// `/metrics` answers without a token even when `read_token` is set.
    pub metrics_open: bool,
    /// The old name of `write_token`, refused with a message that says so.
    pub ingest_token: Option<String>,
    /// Archives of series no `[[retention]]` rule matches.
    pub default_retentions: String,
    /// Rules tried in order; the first whose pattern matches a new series' name wins.
    pub retention: Vec<RetentionRule>,
    /// TLS on the HTTP port (and, with `line = true`, the plaintext TCP port).
    pub tls: TlsConfig,
    /// The query side's table, checked by the query crate (`tally_query::QueryConfig`).
    pub query: toml::Table,
}

/// The `[tls]` table: PEM files, read again on SIGHUP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// The server's certificate chain; with `key_file`, turns TLS on.
    pub cert_file: Option<PathBuf>,
    /// Its private key.
    pub key_file: Option<PathBuf>,
    /// When set, every client must present a certificate that chains to this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Also TLS on the plaintext TCP listener (UDP stays plain).
    pub line: bool,
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
            http_max_connections: 1024,
            http_max_requests: 256,
            http_header_timeout: "10s".into(),
            http_body_timeout: "60s".into(),
            http_idle_timeout: "60s".into(),
            allow_cidrs: Vec::new(),
            max_connections: 4096,
            max_connections_per_address: 64,
            idle_timeout: "10m".into(),
            max_line_size: "16KiB".into(),
            wal_sync_interval: "1s".into(),
            flush_interval: "1m".into(),
            max_head_points: 4_000_000,
            self_metrics_interval: "10s".into(),
            compact_interval: "1d".into(),
            read_token: None,
            write_token: None,
            metrics_open: false,
            min_free_space: None,
            ingest_token: None,
            default_retentions: DEFAULT_RETENTIONS.into(),
            retention: Vec::new(),
            tls: TlsConfig::default(),
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
    pub http: HttpLimits,
    pub tls: Option<TlsSettings>,
    pub allow: Vec<IpNet>,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub idle_timeout: Duration,
    pub max_line_bytes: usize,
    pub wal_sync_interval: Duration,
    pub flush_interval: Duration,
    pub max_head_points: usize,
    pub self_metrics_interval: Option<Duration>,
    pub compact_interval: Duration,
    /// The HTTP port's tokens, for the store's routes and the query side's alike.
    pub tokens: Tokens,
    pub min_free: MinFree,
    pub schemas: Schemas,
}

/// What the HTTP port allows each client, validated.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_requests: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

/// TLS, validated: the files loaded once at check time (and again at start and on SIGHUP).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub files: ServerFiles,
    /// Also on the plaintext TCP listener.
    pub line: bool,
}

impl TlsConfig {
    fn check(&self, problems: &mut Problems) -> Option<TlsSettings> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let files = ServerFiles {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                    client_ca_file: self.client_ca_file.clone(),
                };
                match files.load() {
                    Ok(_) => Some(TlsSettings {
                        files,
                        line: self.line,
                    }),
                    Err(e) => {
                        problems.push("tls", e);
                        None
                    }
                }
            }
            (Some(_), None) => {
                problems.push("tls.cert_file", "needs tls.key_file");
                None
            }
            (None, Some(_)) => {
                problems.push("tls.key_file", "needs tls.cert_file");
                None
            }
            (None, None) => {
                if self.client_ca_file.is_some() || self.line {
                    problems.push(
                        "tls",
                        "client_ca_file and line need the server's cert_file and key_file",
                    );
                }
                None
            }
        }
    }
}

impl TryFrom<StoreConfig> for Settings {
    type Error = Error;

    /// Validates everything and reports all problems at once.
    fn try_from(c: StoreConfig) -> Result<Settings> {
        let mut problems = Problems::default();
        if c.ingest_token.is_some() {
            problems.push(
                "ingest_token",
                "is now write_token, which guards every write (ingest, tags, events, alert changes)",
            );
        }
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
        for (key, n) in [
            ("http_max_connections", c.http_max_connections),
            ("http_max_requests", c.http_max_requests),
        ] {
            problems.positive(key, n);
            if n > 1_000_000 {
                problems.push(key, format!("{n} is more than 1000000"));
            }
        }
        let http = HttpLimits {
            max_connections: c.http_max_connections,
            max_requests: c.http_max_requests,
            header_timeout: problems
                .positive_duration("http_header_timeout", &c.http_header_timeout),
            body_timeout: problems.positive_duration("http_body_timeout", &c.http_body_timeout),
            idle_timeout: problems.positive_duration("http_idle_timeout", &c.http_idle_timeout),
        };
        let tls = c.tls.check(&mut problems);
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
        problems.positive("max_connections_per_address", c.max_connections_per_address);
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
                http,
                tls,
                allow,
                max_connections: c.max_connections,
                max_connections_per_address: c.max_connections_per_address,
                idle_timeout,
                max_line_bytes,
                wal_sync_interval,
                flush_interval,
                max_head_points: c.max_head_points,
                self_metrics_interval: (!self_metrics_interval.is_zero())
                    .then_some(self_metrics_interval),
                compact_interval,
                tokens: Tokens::new(c.read_token, c.write_token, c.metrics_open),
                min_free,
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
    fn the_http_limits_have_defaults_and_are_checked() {
        let s = Settings::try_from(StoreConfig::parse("").expect("parses")).expect("valid");
        assert_eq!((s.http.max_connections, s.http.max_requests), (1024, 256));
        assert_eq!(s.http.header_timeout, Duration::from_secs(10));
        assert_eq!(s.http.body_timeout, Duration::from_secs(60));
        assert_eq!(s.http.idle_timeout, Duration::from_secs(60));
        assert!(s.tls.is_none());
        let text = "http_max_connections = 0\nhttp_max_requests = 2000000\n\
                    http_header_timeout = \"0s\"\nhttp_body_timeout = \"soon\"\n";
        let Err(Error::Config(problems)) =
            Settings::try_from(StoreConfig::parse(text).expect("parses"))
        else {
            panic!("expected config errors");
        };
        let keys: Vec<&str> = problems
            .iter()
            .filter_map(|p| p.split(':').next())
            .collect();
        assert_eq!(
            keys,
            [
                "http_max_connections",
                "http_max_requests",
                "http_header_timeout",
                "http_body_timeout"
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn tls_needs_a_pair_that_loads() {
        let problems =
            |text: &str| match Settings::try_from(StoreConfig::parse(text).expect("parses")) {
                Err(Error::Config(p)) => p,
                other => panic!("expected config errors, got {other:?}"),
            };
        assert_eq!(
            problems("[tls]\ncert_file = \"/x/cert.pem\"\n"),
            ["tls.cert_file: needs tls.key_file"]
        );
        assert_eq!(
            problems("[tls]\nline = true\n"),
            ["tls: client_ca_file and line need the server's cert_file and key_file"]
        );
        let p =
            problems("[tls]\ncert_file = \"/no/such/cert.pem\"\nkey_file = \"/no/such/key.pem\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("tls: /no/such/cert.pem: "), "{p:?}");
        let e = StoreConfig::parse("[tls]\ncert = \"x\"\n").expect_err("unknown key");
        assert_eq!(e, ["unknown key \"tls.cert\""]);
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

    /// Issue 17: one pair of tokens guards the whole HTTP port; `ingest_token` says what it
    /// became.
    #[test]
    fn the_tokens_are_the_ports_and_ingest_token_says_its_new_name() {
        let c =
            StoreConfig::parse("read_token = \"r\"\nwrite_token = \"w\"\nmetrics_open = true\n")
                .expect("parses");
        let s = Settings::try_from(c).expect("valid");
        assert_eq!(
            s.tokens,
            Tokens::new(Some("r".into()), Some("w".into()), true)
        );
        let s = Settings::try_from(StoreConfig::parse("read_token = \"\"\n").expect("parses"))
            .expect("valid");
        assert_eq!(s.tokens, Tokens::default(), "an empty token is no token");
        let Err(Error::Config(problems)) =
            Settings::try_from(StoreConfig::parse("ingest_token = \"s\"\n").expect("parses"))
        else {
            panic!("ingest_token is refused");
        };
        assert_eq!(
            problems,
            vec!["ingest_token: is now write_token, which guards every write (ingest, tags, events, alert changes)"]
        );
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
