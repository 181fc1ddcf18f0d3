//! `tally agent` configuration: a TOML file (see `examples/agent.toml`), validated with every
//! problem reported at once, each with its place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The file as written. Every key but `[[input]]` has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    /// The `host` tag (or path node) of every series; default: the machine's hostname.
    pub host: Option<String>,
    /// Checkpoints, bucket state and the spool live here.
    pub data_dir: PathBuf,
    /// The length of one bucket; points are per-interval totals.
    pub interval: String,
    /// How long after a bucket ends a late line still corrects it.
    pub lateness: String,
    /// How often the checkpoint and the spool are written.
    pub commit_interval: String,
    /// How often files are polled for new bytes.
    pub poll_interval: String,
    /// How often the globs are expanded again to find new files.
    pub scan_interval: String,
    /// `tags` (`requests;host=web1;status=2xx`) or `path` (`servers.web1.requests.2xx`).
    pub naming: String,
    /// The first path node(s) with `naming = "path"`.
    pub path_prefix: String,
    /// Serve the agent's own counters in Prometheus text on this address.
    pub metrics_listen: Option<String>,
    /// Counters with no line in a bucket are shipped as 0 for this long after their last line.
    pub zero_fill_for: String,
    pub input: Vec<InputConfig>,
    pub presets: PresetConfig,
    pub rule: Vec<RuleConfig>,
    pub output: OutputConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            host: None,
            data_dir: PathBuf::from("./agent-data"),
            interval: "10s".into(),
            lateness: "5m".into(),
            commit_interval: "1s".into(),
            poll_interval: "250ms".into(),
            scan_interval: "1s".into(),
            naming: "tags".into(),
            path_prefix: "servers".into(),
            metrics_listen: None,
            zero_fill_for: "1h".into(),
            input: Vec::new(),
            presets: PresetConfig::default(),
            rule: Vec::new(),
            output: OutputConfig::default(),
        }
    }
}

/// One `[[input]]`: a set of files by glob.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct InputConfig {
    pub paths: Vec<String>,
    /// `end` (default) or `beginning`: where files are read from on the agent's first start
    /// (no checkpoint yet). Files that appear later, while it runs or while it was down, are
    /// always read from their beginning.
    pub start_at: String,
    /// Read `.gz` files the globs match (whole, once) instead of skipping them.
    pub read_gz: bool,
    /// Longer lines are cut at this many bytes and counted.
    pub max_line_bytes: usize,
    /// A last line with no newline is taken as a line after this long without growth;
    /// `0s` (default) waits for its newline forever.
    pub partial_line_timeout: String,
    /// A file that left the globs (renamed, deleted) is read to its end and closed after it
    /// has not grown for this long.
    pub rotate_wait: String,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            paths: Vec::new(),
            start_at: "end".into(),
            read_gz: false,
            max_line_bytes: 64 * 1024,
            partial_line_timeout: "0s".into(),
            rotate_wait: "10s".into(),
        }
    }
}

/// The built-in rules for combined / nginx access logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PresetConfig {
    /// Any of `access` (requests by vhost and status class, bytes, request time), `beacons`
    /// (failure beacons by source) and `cdn` (requests by CDN provider).
    pub enable: Vec<String>,
    /// The `key=value` field after the combined part that names the virtual host.
    pub vhost_field: String,
    /// The vhost of lines without that field.
    pub default_vhost: String,
    /// The `key=value` field with the request time, or `$last` for a bare number at the end
    /// of the line (nginx `... "$http_user_agent" $request_time`).
    pub request_time_field: String,
    pub request_time_unit: String,
    /// The `key=value` field with the CDN provider.
    pub cdn_field: String,
    /// The path of the failure beacon; its `source` query parameter becomes the `source` tag.
    pub beacon_path: String,
    /// More query parameters of the beacon to keep as tags (for example `server_identity`).
    pub beacon_fields: Vec<String>,
    /// Percentiles published for the request time.
    pub percentiles: Vec<f64>,
    /// The cardinality cap per tag of each preset rule.
    pub max_values: usize,
}

impl Default for PresetConfig {
    fn default() -> Self {
        PresetConfig {
            enable: vec!["access".into(), "beacons".into(), "cdn".into()],
            vhost_field: "vhost".into(),
            default_vhost: "default".into(),
            request_time_field: "rt".into(),
            request_time_unit: "s".into(),
            cdn_field: "cdn".into(),
            beacon_path: "/status/images/beacon.gif".into(),
            beacon_fields: Vec::new(),
            percentiles: vec![50.0, 90.0, 99.0],
            max_values: 200,
        }
    }
}

/// One `[[rule]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// The metric name of the series it writes.
    pub name: String,
    /// A regex (Rust `regex` syntax) over the line; its named captures are the fields.
    pub regex: String,
    /// Literals of which at least one must occur in the line before the regex runs.
    pub prefilter: Vec<String>,
    /// `counter` (lines), `sum` (of `value`), `gauge` (last `value`), `latency` (histogram
    /// of `value`, published as count, percentiles and max).
    pub kind: String,
    /// The capture holding the number of `sum`, `gauge` and `latency`.
    pub value: Option<String>,
    /// The unit of a `latency` value: `s`, `ms`, `us` or `ns`; published in seconds.
    pub unit: String,
    /// The captures that become tags; default: every named capture but `value` and `time`.
    pub tags: Option<Vec<String>>,
    /// Per-tag rewrites: `class` turns 503 into 5xx, `lower` lower-cases.
    pub transform: std::collections::BTreeMap<String, String>,
    /// The capture holding the line's time; without it, lines count at the time they are read.
    pub time: Option<String>,
    /// strftime format of the time capture (`%d/%b/%Y:%H:%M:%S %z`), or `unix`, `unix_ms`,
    /// `rfc3339`.
    pub time_format: String,
    pub percentiles: Vec<f64>,
    /// The cap on distinct values of each tag; more go to `other`.
    pub max_values: usize,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig {
            name: String::new(),
            regex: String::new(),
            prefilter: Vec::new(),
            kind: "counter".into(),
            value: None,
            unit: "s".into(),
            tags: None,
            transform: Default::default(),
            time: None,
            time_format: "%d/%b/%Y:%H:%M:%S %z".into(),
            percentiles: vec![50.0, 90.0, 99.0],
            max_values: 200,
        }
    }
}

/// Where points go.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OutputConfig {
    /// `tally` (acknowledged batches over HTTP) or `carbon` (Graphite plaintext over TCP).
    pub kind: String,
    /// The store's HTTP base URL (`tally`).
    pub url: String,
    /// The plaintext address (`carbon`).
    pub address: String,
    /// Bearer token for the store's ingest endpoint.
    pub token: Option<String>,
    /// The spool's bound; past it the oldest data is dropped, counted and logged.
    pub spool_max_mb: u64,
    /// Timeout of one delivery.
    pub timeout: String,
    /// Longest wait between delivery attempts while the destination is down.
    pub max_backoff: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            kind: "tally".into(),
            url: "http://127.0.0.1:8080".into(),
            address: "127.0.0.1:2003".into(),
            token: None,
            spool_max_mb: 256,
            timeout: "10s".into(),
            max_backoff: "30s".into(),
        }
    }
}

impl AgentConfig {
    /// Reads and parses a file; every problem is reported with the file's name.
    pub fn load(path: &Path) -> Result<AgentConfig, Vec<String>> {
        let text =
            std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
        Self::parse(&text).map_err(|ps| {
            ps.into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect()
        })
    }

    /// Parses TOML text, reporting every unknown key.
    pub fn parse(text: &str) -> Result<AgentConfig, Vec<String>> {
        let mut unknown = Vec::new();
        let de = toml::Deserializer::new(text);
        let config: AgentConfig =
            serde_ignored::deserialize(de, |path| unknown.push(format!("unknown key \"{path}\"")))
                .map_err(|e| vec![e.to_string().trim().replace('\n', " ")])?;
        if !unknown.is_empty() {
            return Err(unknown);
        }
        Ok(config)
    }
}

use tally_proto::duration::parse_duration;

/// Where points go, validated.
#[derive(Debug, Clone)]
pub enum Output {
    Tally { url: String, token: Option<String> },
    Carbon { address: String },
}

/// Tailing options of one input, validated.
#[derive(Debug, Clone)]
pub struct Input {
    pub paths: Vec<String>,
    pub start_at_end: bool,
    pub read_gz: bool,
    pub max_line_bytes: usize,
    pub partial_line_timeout: Option<Duration>,
    pub rotate_wait: Duration,
}

/// The validated configuration the agent runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub data_dir: PathBuf,
    pub interval: i64,
    pub lateness: i64,
    pub zero_fill_for: i64,
    pub commit_interval: Duration,
    pub poll_interval: Duration,
    pub scan_interval: Duration,
    pub path_naming: bool,
    pub path_prefix: String,
    pub metrics_listen: Option<SocketAddr>,
    pub inputs: Vec<Input>,
    pub rules: crate::rules::RuleSet,
    pub output: Output,
    pub spool_max_bytes: u64,
    pub ship_timeout: Duration,
    pub max_backoff: Duration,
    /// Read every input to its end, commit, and stop (set by `tally agent --once`).
    pub once: bool,
}

/// The machine's hostname, or `localhost`.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl TryFrom<AgentConfig> for Settings {
    type Error = Vec<String>;

    /// Validates everything and reports all problems at once.
    fn try_from(c: AgentConfig) -> Result<Settings, Vec<String>> {
        let mut problems = Vec::new();
        let mut dur = |key: &str, v: &str| -> Duration {
            parse_duration(v).unwrap_or_else(|e| {
                problems.push(format!("{key}: {e}"));
                Duration::from_secs(1)
            })
        };
        let interval = dur("interval", &c.interval);
        let lateness = dur("lateness", &c.lateness);
        let zero_fill_for = dur("zero_fill_for", &c.zero_fill_for);
        let commit_interval = dur("commit_interval", &c.commit_interval);
        let poll_interval = dur("poll_interval", &c.poll_interval);
        let scan_interval = dur("scan_interval", &c.scan_interval);
        let ship_timeout = dur("output.timeout", &c.output.timeout);
        let max_backoff = dur("output.max_backoff", &c.output.max_backoff);
        let mut inputs = Vec::new();
        for (i, input) in c.input.iter().enumerate() {
            let place = format!("input[{i}]");
            let partial = dur(
                &format!("{place}.partial_line_timeout"),
                &input.partial_line_timeout,
            );
            let rotate_wait = dur(&format!("{place}.rotate_wait"), &input.rotate_wait);
            inputs.push(Input {
                paths: input.paths.clone(),
                start_at_end: input.start_at == "end",
                read_gz: input.read_gz,
                max_line_bytes: input.max_line_bytes,
                partial_line_timeout: (!partial.is_zero()).then_some(partial),
                rotate_wait,
            });
        }
        if interval.as_secs() == 0 || interval.subsec_nanos() != 0 {
            problems.push(format!(
                "interval: \"{}\" must be a whole number of seconds, at least 1s",
                c.interval
            ));
        }
        for (key, d) in [
            ("commit_interval", commit_interval),
            ("poll_interval", poll_interval),
            ("scan_interval", scan_interval),
        ] {
            if d.is_zero() {
                problems.push(format!("{key}: must be more than 0"));
            }
        }
        if c.input.is_empty() {
            problems.push(
                "no [[input]]: name the log files to tail with [[input]] paths = [...]".into(),
            );
        }
        for (i, input) in c.input.iter().enumerate() {
            let place = format!("input[{i}]");
            if input.paths.is_empty() {
                problems.push(format!("{place}.paths: name at least one file or glob"));
            }
            for (j, p) in input.paths.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(p) {
                    problems.push(format!("{place}.paths[{j}]: \"{p}\" is not a glob: {e}"));
                }
            }
            if input.start_at != "end" && input.start_at != "beginning" {
                problems.push(format!(
                    "{place}.start_at: \"{}\" is neither \"end\" nor \"beginning\"",
                    input.start_at
                ));
            }
            if input.max_line_bytes < 64 {
                problems.push(format!("{place}.max_line_bytes: at least 64"));
            }
        }
        let naming_path = match c.naming.as_str() {
            "tags" => false,
            "path" => true,
            other => {
                problems.push(format!(
                    "naming: \"{other}\" is neither \"tags\" nor \"path\""
                ));
                false
            }
        };
        let host = c.host.clone().unwrap_or_else(hostname);
        if host.is_empty() || host.contains([';', ' ', '~']) {
            problems.push(format!("host: \"{host}\" cannot be a tag value"));
        }
        let metrics_listen = c.metrics_listen.as_ref().and_then(|a| {
            a.parse()
                .map_err(|_| {
                    problems.push(format!(
                        "metrics_listen: \"{a}\" is not an address like 127.0.0.1:9102"
                    ))
                })
                .ok()
        });
        let output = match c.output.kind.as_str() {
            "tally" => {
                if !(c.output.url.starts_with("http://") || c.output.url.starts_with("https://")) {
                    problems.push(format!(
                        "output.url: \"{}\" is not an http(s) URL",
                        c.output.url
                    ));
                }
                Output::Tally {
                    url: c.output.url.trim_end_matches('/').to_string(),
                    token: c.output.token.clone(),
                }
            }
            "carbon" => {
                if !c.output.address.contains(':') {
                    problems.push(format!(
                        "output.address: \"{}\" is not host:port",
                        c.output.address
                    ));
                }
                Output::Carbon {
                    address: c.output.address.clone(),
                }
            }
            other => {
                problems.push(format!(
                    "output.kind: \"{other}\" is neither \"tally\" nor \"carbon\""
                ));
                Output::Carbon {
                    address: String::new(),
                }
            }
        };
        if c.output.spool_max_mb == 0 {
            problems.push("output.spool_max_mb: at least 1".into());
        }
        let rules = crate::rules::RuleSet::compile(&c.presets, &c.rule).unwrap_or_else(|mut ps| {
            problems.append(&mut ps);
            crate::rules::RuleSet::default()
        });
        if rules.is_empty() && problems.is_empty() {
            problems.push("no rules: enable presets or add a [[rule]]".into());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Settings {
            host,
            data_dir: c.data_dir,
            interval: interval.as_secs() as i64,
            lateness: lateness.as_secs() as i64,
            zero_fill_for: zero_fill_for.as_secs() as i64,
            commit_interval,
            poll_interval,
            scan_interval,
            path_naming: naming_path,
            path_prefix: c.path_prefix,
            metrics_listen,
            inputs,
            rules,
            output,
            spool_max_bytes: c.output.spool_max_mb.saturating_mul(1024 * 1024),
            ship_timeout,
            max_backoff,
            once: false,
        })
    }
}
