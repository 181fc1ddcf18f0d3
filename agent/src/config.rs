//! `tally agent` configuration: a TOML file (see `examples/agent.toml`), loaded with
//! `tally_common::config` as every Tally config is: every unknown key and every bad value is
//! reported at once, each with its place; durations and sizes carry their unit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tally_common::config::{DurationText, Problems, SizeText};
use tally_common::tls::ClientFiles;

/// The file as written. Every key but `[[input]]` has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    /// The `host` tag (or path node) of every series; default: the machine's hostname.
    pub host: Option<String>,
    /// Checkpoints, bucket state and the spool live here.
    pub data_dir: PathBuf,
    /// The length of one bucket; points are per-interval totals.
    pub interval: DurationText,
    /// How long after a bucket ends a late line still corrects it.
    pub lateness: DurationText,
    /// How often the checkpoint and the spool are written.
    pub commit_interval: DurationText,
    /// How often files are polled for new bytes.
    pub poll_interval: DurationText,
    /// How often the globs are expanded again to find new files.
    pub scan_interval: DurationText,
    /// `tags` (`requests;host=web1;status=2xx`) or `path` (`servers.web1.requests.2xx`).
    pub naming: String,
    /// The first path node(s) with `naming = "path"`.
    pub path_prefix: String,
    /// Serve the agent's own counters in Prometheus text on this address.
    pub metrics_listen: Option<String>,
    /// When set, `/metrics` answers only `Authorization: Bearer <metrics_token>` (401
    /// otherwise), as the store's `/metrics` needs its read token.
    pub metrics_token: Option<String>,
    /// Counters with no line in a bucket are shipped as 0 for this long after their last line.
    pub zero_fill_for: DurationText,
    pub input: Vec<InputConfig>,
    pub presets: PresetConfig,
    pub rule: Vec<RuleConfig>,
    pub output: OutputConfig,
    pub statsd: StatsdConfig,
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
            metrics_token: None,
            zero_fill_for: "1h".into(),
            input: Vec::new(),
            presets: PresetConfig::default(),
            rule: Vec::new(),
            output: OutputConfig::default(),
            statsd: StatsdConfig::default(),
        }
    }
}

/// `[statsd]`: the agent as the host's statsd daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StatsdConfig {
    /// Listen for statsd (default off).
    pub enabled: bool,
    /// The UDP address; `""` for none.
    pub udp_listen: String,
    /// The TCP address (newline-separated lines); `""` for none.
    pub tcp_listen: String,
    /// `tags` (`api.hits;host=web1;stat=count`) or `etsy` (Etsy statsd's graphite backend:
    /// `stats.counters.api.hits.count`, `stats.timers.api.time.upper_90`, ...).
    pub naming: String,
    /// `etsy` naming: Etsy's `legacyNamespace` (`stats.<counter>` is the rate,
    /// `stats_counts.<counter>` the count; the prefixes below are not used).
    pub legacy_namespace: bool,
    /// `etsy` naming without the legacy namespace: Etsy's `globalPrefix`, `prefixCounter`,
    /// `prefixTimer`, `prefixGauge`, `prefixSet` (an empty one is left out).
    pub global_prefix: String,
    pub prefix_counter: String,
    pub prefix_timer: String,
    pub prefix_gauge: String,
    pub prefix_set: String,
    /// Percentiles of every timer (Etsy's `percentThreshold`).
    pub percentiles: Vec<f64>,
    /// Also publish each timer's percentile bucket counters (Spectator's table, tagged
    /// `percentile=T00xx`), which add up across hosts.
    pub percentile_buckets: bool,
    /// The cap on distinct series per type (counters, gauges, timers, histograms, sets); more
    /// count as `other`.
    pub max_series: usize,
    /// Accepted packets waiting to be counted are kept up to this size; past it datagrams are
    /// dropped (counted) and TCP senders wait.
    pub journal_max_size: SizeText,
    /// A longer TCP line is dropped and counted.
    pub max_line_size: SizeText,
    /// At most this many TCP connections; more are closed at once.
    pub tcp_max_connections: usize,
    /// The UDP socket's receive buffer (capped by the kernel's net.core.rmem_max).
    pub receive_buffer_size: SizeText,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        StatsdConfig {
            enabled: false,
            udp_listen: "127.0.0.1:8125".into(),
            tcp_listen: "127.0.0.1:8125".into(),
            naming: "tags".into(),
            legacy_namespace: true,
            global_prefix: "stats".into(),
            prefix_counter: "counters".into(),
            prefix_timer: "timers".into(),
            prefix_gauge: "gauges".into(),
            prefix_set: "sets".into(),
            percentiles: vec![90.0],
            percentile_buckets: false,
            max_series: 10_000,
            journal_max_size: "256MiB".into(),
            max_line_size: "64KiB".into(),
            tcp_max_connections: 256,
            receive_buffer_size: "8MiB".into(),
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
    /// Longer lines are cut at this size and counted.
    pub max_line_size: SizeText,
    /// A last line with no newline is taken as a line after this long without growth;
    /// `0s` (default) waits for its newline forever.
    pub partial_line_timeout: DurationText,
    /// A file that left the globs (renamed, deleted) is read to its end and closed after it
    /// has not grown for this long.
    pub rotate_wait: DurationText,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            paths: Vec::new(),
            start_at: "end".into(),
            read_gz: false,
            max_line_size: "64KiB".into(),
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
    /// Also publish the request time's percentile bucket counters (Spectator's table, tagged
    /// `stat=percentile;percentile=T00xx`), which add up across hosts: Atlas's `:percentiles`
    /// reads them.
    pub percentile_buckets: bool,
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
            percentile_buckets: false,
            max_values: 200,
        }
    }
}

/// One `[[rule]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
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
    /// A `latency` rule also publishes its percentile bucket counters (as the presets'
    /// `percentile_buckets`).
    pub percentile_buckets: bool,
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
            percentile_buckets: false,
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
    /// The store's HTTP base URL (`tally`); default `http://127.0.0.1:8080`.
    pub url: Option<String>,
    /// Several stores' HTTP base URLs (`tally`): each series goes to `replication` of them,
    /// placed by `hashing`. Each is known to the ring as carbon-c-relay's server
    /// `<the URL's host>:2003`; `[[output.store]]` names the relay's server explicitly.
    pub urls: Vec<String>,
    /// `[[output.store]]`: a store with the name carbon-c-relay's cluster gives it.
    pub store: Vec<StoreConfig>,
    /// With several stores: `carbon_ch`, `fnv1a_ch` or `jump_fnv1a_ch`, as carbon-c-relay's.
    pub hashing: String,
    /// With several stores: how many of them hold each series.
    pub replication: usize,
    /// The plaintext address (`carbon`).
    pub address: String,
    /// Bearer token for the store's ingest endpoint: its `write_token`.
    pub token: Option<String>,
    /// The spool's bound; past it the oldest data is dropped, counted and logged.
    pub spool_max_size: SizeText,
    /// Timeout of one delivery.
    pub timeout: DurationText,
    /// Longest wait between delivery attempts while the destination is down.
    pub max_backoff: DurationText,
    /// Over TLS (an `https://` url, or `tls = true` for carbon): verify the server against
    /// this CA (PEM) rather than the public roots.
    pub ca_file: Option<PathBuf>,
    /// A certificate (PEM) to present to a server that requires client certificates.
    pub client_cert: Option<PathBuf>,
    /// The key of `client_cert` (PEM).
    pub client_key: Option<PathBuf>,
    /// `carbon` only: plaintext over TLS (a store with `[tls] line = true`).
    pub tls: bool,
}

/// One `[[output.store]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// The store's HTTP base URL.
    pub url: String,
    /// The store as carbon-c-relay's cluster line names it, `host[:port][=instance]`: what the
    /// ring hashes (`carbon_ch`: host and instance; `fnv1a_ch`: instance, else host and port).
    /// Default: `<the URL's host>:2003`.
    pub server: Option<String>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            kind: "tally".into(),
            url: None,
            urls: Vec::new(),
            store: Vec::new(),
            hashing: "carbon_ch".into(),
            replication: 1,
            address: "127.0.0.1:2003".into(),
            token: None,
            spool_max_size: "256MiB".into(),
            timeout: "10s".into(),
            max_backoff: "30s".into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            tls: false,
        }
    }
}

/// The store an agent ships to when the config names none.
fn default_url() -> String {
    "http://127.0.0.1:8080".into()
}

impl AgentConfig {
    /// Reads and parses a file; every problem is reported with the file's name.
    pub fn load(path: &Path) -> Result<AgentConfig, Vec<String>> {
        tally_common::config::load(path)
    }

    /// Parses TOML text, reporting every unknown key.
    pub fn parse(text: &str) -> Result<AgentConfig, Vec<String>> {
        tally_common::config::parse(text)
    }
}

/// Where points go, validated.
#[derive(Debug, Clone)]
pub enum Output {
    /// Acknowledged batches over HTTP; `tls` for an `https://` url (its files may be none:
    /// the public roots, no client certificate).
    Tally {
        url: String,
        token: Option<String>,
        tls: ClientFiles,
    },
    /// Acknowledged batches over HTTP to several stores, each point to the `ring.replication()`
    /// stores the ring names for its series (indexes into `stores`).
    Stores {
        stores: Vec<StoreTarget>,
        ring: crate::ring::Ring,
        token: Option<String>,
        tls: ClientFiles,
    },
    /// Plaintext over TCP, over TLS when `tls` is set.
    Carbon {
        address: String,
        tls: Option<ClientFiles>,
    },
}

/// One of several stores, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTarget {
    /// Its HTTP base URL, without a trailing `/`.
    pub url: String,
    /// What the ring knows it as.
    pub server: crate::ring::Member,
}

/// The host of an `http(s)://` URL as written (without brackets), or `None`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// Validates the stores of a `tally` output with several (`urls`, `[[output.store]]`).
fn stores_output(
    c: &OutputConfig,
    problems: &mut Problems,
) -> Option<(Vec<StoreTarget>, crate::ring::Ring)> {
    let mut stores = Vec::new();
    let mut ok = true;
    let listed: Vec<(String, String, Option<&String>)> = if c.store.is_empty() {
        c.urls
            .iter()
            .enumerate()
            .map(|(i, u)| (format!("output.urls[{i}]"), u.clone(), None))
            .collect()
    } else {
        c.store
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    format!("output.store[{i}].url"),
                    s.url.clone(),
                    s.server.as_ref(),
                )
            })
            .collect()
    };
    for (place, url, server) in listed {
        let url = url.trim_end_matches('/').to_string();
        let Some(host) = url_host(&url) else {
            problems.push(&place, format!("\"{url}\" is not an http(s) URL"));
            ok = false;
            continue;
        };
        if stores.iter().any(|s: &StoreTarget| s.url == url) {
            problems.push(&place, format!("\"{url}\" is listed twice"));
            ok = false;
            continue;
        }
        let member = match server {
            Some(text) => crate::ring::Member::parse(text).map_err(|e| {
                problems.push(&place.replace(".url", ".server"), e);
            }),
            None => Ok(crate::ring::Member {
                host: host.to_string(),
                port: crate::ring::Member::DEFAULT_PORT,
                instance: None,
            }),
        };
        match member {
            Ok(server) => stores.push(StoreTarget { url, server }),
            Err(()) => ok = false,
        }
    }
    let Some(hashing) = crate::ring::Hashing::parse(&c.hashing) else {
        problems.push(
            "output.hashing",
            format!(
                "\"{}\" is none of {}",
                c.hashing,
                crate::ring::Hashing::NAMES.join(", ")
            ),
        );
        return None;
    };
    if c.replication == 0 || c.replication > c.urls.len().max(c.store.len()) {
        problems.push(
            "output.replication",
            format!(
                "{} must be between 1 and the number of stores ({})",
                c.replication,
                c.urls.len().max(c.store.len())
            ),
        );
        return None;
    }
    if !ok {
        return None;
    }
    let members: Vec<crate::ring::Member> = stores.iter().map(|s| s.server.clone()).collect();
    match crate::ring::Ring::new(hashing, &members, c.replication) {
        Ok(ring) => Some((stores, ring)),
        Err(e) => {
            let defaulted = c.store.is_empty() || c.store.iter().any(|s| s.server.is_none());
            let key = if c.store.is_empty() {
                "output.urls"
            } else {
                "output.store"
            };
            let which: Vec<String> = stores
                .iter()
                .map(|s| format!("{} is \"{}\"", s.url, s.server))
                .collect();
            let hint = if defaulted {
                "; a store without `server` is \"<its URL's host>:2003\": name each as the \
                 relay's cluster does, with [[output.store]] url and server"
            } else {
                ""
            };
            problems.push(key, format!("{e} ({}{hint})", which.join(", ")));
            None
        }
    }
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
    /// The bearer token `/metrics` needs; `None` when open (an empty string is no token).
    pub metrics_token: Option<String>,
    pub inputs: Vec<Input>,
    pub rules: crate::rules::RuleSet,
    pub output: Output,
    pub spool_max_bytes: u64,
    pub ship_timeout: Duration,
    pub max_backoff: Duration,
    pub statsd: crate::statsd::StatsdSettings,
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
        let mut problems = Problems::default();
        let interval = problems.duration("interval", &c.interval);
        let lateness = problems.duration("lateness", &c.lateness);
        let zero_fill_for = problems.duration("zero_fill_for", &c.zero_fill_for);
        let commit_interval = problems.positive_duration("commit_interval", &c.commit_interval);
        let poll_interval = problems.positive_duration("poll_interval", &c.poll_interval);
        let scan_interval = problems.positive_duration("scan_interval", &c.scan_interval);
        let ship_timeout = problems.positive_duration("output.timeout", &c.output.timeout);
        let max_backoff = problems.positive_duration("output.max_backoff", &c.output.max_backoff);
        let mut inputs = Vec::new();
        for (i, input) in c.input.iter().enumerate() {
            let place = format!("input[{i}]");
            let partial = problems.duration(
                &format!("{place}.partial_line_timeout"),
                &input.partial_line_timeout,
            );
            let rotate_wait =
                problems.duration(&format!("{place}.rotate_wait"), &input.rotate_wait);
            let max_line_bytes =
                problems.size(&format!("{place}.max_line_size"), &input.max_line_size, 64);
            inputs.push(Input {
                paths: input.paths.clone(),
                start_at_end: input.start_at == "end",
                read_gz: input.read_gz,
                max_line_bytes: usize::try_from(max_line_bytes).unwrap_or(usize::MAX),
                partial_line_timeout: (!partial.is_zero()).then_some(partial),
                rotate_wait,
            });
        }
        if c.interval.parse().is_ok() && (interval.as_secs() == 0 || interval.subsec_nanos() != 0) {
            problems.push(
                "interval",
                format!(
                    "\"{}\" must be a whole number of seconds, at least 1s",
                    c.interval
                ),
            );
        }
        if c.input.is_empty() && !c.statsd.enabled {
            problems.note("no [[input]]: name the log files to tail with [[input]] paths = [...]");
        }
        let statsd = statsd_settings(&c.statsd, &mut problems);
        for (i, input) in c.input.iter().enumerate() {
            let place = format!("input[{i}]");
            if input.paths.is_empty() {
                problems.push(&format!("{place}.paths"), "name at least one file or glob");
            }
            for (j, p) in input.paths.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(p) {
                    problems.push(
                        &format!("{place}.paths[{j}]"),
                        format!("\"{p}\" is not a glob: {e}"),
                    );
                }
            }
            if input.start_at != "end" && input.start_at != "beginning" {
                problems.push(
                    &format!("{place}.start_at"),
                    format!(
                        "\"{}\" is neither \"end\" nor \"beginning\"",
                        input.start_at
                    ),
                );
            }
        }
        let naming_path = match c.naming.as_str() {
            "tags" => false,
            "path" => true,
            other => {
                problems.push(
                    "naming",
                    format!("\"{other}\" is neither \"tags\" nor \"path\""),
                );
                false
            }
        };
        if naming_path
            && !c.path_prefix.is_empty()
            && c.path_prefix
                .split('.')
                .any(|node| node.is_empty() || node.contains([' ', ';']))
        {
            problems.push(
                "path_prefix",
                format!(
                    "\"{}\" is not dot-separated path nodes like \"servers\" or \"prod.servers\"",
                    c.path_prefix
                ),
            );
        }
        let host = c.host.clone().unwrap_or_else(hostname);
        if host.is_empty() || host.contains([';', ' ', '~']) {
            problems.push("host", format!("\"{host}\" cannot be a tag value"));
        }
        let metrics_listen = c.metrics_listen.as_ref().and_then(|a| {
            a.parse()
                .map_err(|_| {
                    problems.push(
                        "metrics_listen",
                        format!("\"{a}\" is not an address like 127.0.0.1:9102"),
                    )
                })
                .ok()
        });
        let tls_files = ClientFiles {
            ca_file: c.output.ca_file.clone(),
            cert_file: c.output.client_cert.clone(),
            key_file: c.output.client_key.clone(),
        };
        let check_tls = |problems: &mut Problems, uses_tls: bool, how: &str| {
            if uses_tls {
                let names = ["output.ca_file", "output.client_cert", "output.client_key"];
                if let Err(e) = tls_files.load(names) {
                    problems.push("output", e);
                }
            } else if tls_files.is_set() {
                problems.push(
                    "output",
                    format!("ca_file, client_cert and client_key are for TLS; {how}"),
                );
            }
        };
        let several = !c.output.urls.is_empty() || !c.output.store.is_empty();
        if several && c.output.url.is_some() {
            problems.push(
                if c.output.urls.is_empty() {
                    "output.store"
                } else {
                    "output.urls"
                },
                "give either url (one store) or several stores, not both",
            );
        }
        if !c.output.urls.is_empty() && !c.output.store.is_empty() {
            problems.push(
                "output.store",
                "give either urls or [[output.store]] tables, not both",
            );
        }
        let single = match (c.output.urls.as_slice(), c.output.store.as_slice()) {
            ([], []) => Some(c.output.url.clone().unwrap_or_else(default_url)),
            ([one], []) => Some(one.clone()),
            ([], [one]) => Some(one.url.clone()),
            _ => None,
        };
        let output = match c.output.kind.as_str() {
            "tally" if single.is_some() => {
                let url = single.unwrap_or_default();
                let https = url.starts_with("https://");
                if !(url.starts_with("http://") || https) {
                    problems.push(
                        if several { "output.urls" } else { "output.url" },
                        format!("\"{url}\" is not an http(s) URL"),
                    );
                }
                if c.output.replication != 1 {
                    problems.push(
                        "output.replication",
                        format!(
                            "{} must be between 1 and the number of stores (1)",
                            c.output.replication
                        ),
                    );
                }
                check_tls(&mut problems, https, "use an https:// url");
                if c.output.tls {
                    problems.push("output.tls", "is for carbon; use an https:// url");
                }
                Output::Tally {
                    url: url.trim_end_matches('/').to_string(),
                    token: c.output.token.clone(),
                    tls: tls_files.clone(),
                }
            }
            "tally" => {
                let https = c
                    .output
                    .urls
                    .iter()
                    .chain(c.output.store.iter().map(|s| &s.url))
                    .any(|u| u.starts_with("https://"));
                check_tls(&mut problems, https, "use https:// urls");
                if c.output.tls {
                    problems.push("output.tls", "is for carbon; use https:// urls");
                }
                match stores_output(&c.output, &mut problems) {
                    Some((stores, ring)) => Output::Stores {
                        stores,
                        ring,
                        token: c.output.token.clone(),
                        tls: tls_files.clone(),
                    },
                    None => Output::Carbon {
                        address: String::new(),
                        tls: None,
                    },
                }
            }
            "carbon" => {
                if several {
                    problems.push(
                        if c.output.urls.is_empty() {
                            "output.store"
                        } else {
                            "output.urls"
                        },
                        "several stores are for kind = \"tally\" (acknowledged delivery)",
                    );
                }
                if !c.output.address.contains(':') {
                    problems.push(
                        "output.address",
                        format!("\"{}\" is not host:port", c.output.address),
                    );
                }
                check_tls(&mut problems, c.output.tls, "set tls = true");
                Output::Carbon {
                    address: c.output.address.clone(),
                    tls: c.output.tls.then(|| tls_files.clone()),
                }
            }
            other => {
                problems.push(
                    "output.kind",
                    format!("\"{other}\" is neither \"tally\" nor \"carbon\""),
                );
                Output::Carbon {
                    address: String::new(),
                    tls: None,
                }
            }
        };
        let spool_max_bytes =
            problems.size("output.spool_max_size", &c.output.spool_max_size, 64 << 10);
        let rules = crate::rules::RuleSet::compile(&c.presets, &c.rule).unwrap_or_else(|ps| {
            problems.extend(ps);
            crate::rules::RuleSet::default()
        });
        if rules.is_empty() && problems.is_empty() && !statsd.enabled {
            problems.note("no rules: enable presets or add a [[rule]]");
        }
        problems.into_result(Settings {
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
            metrics_token: c.metrics_token.filter(|t| !t.is_empty()),
            inputs,
            rules,
            output,
            spool_max_bytes,
            ship_timeout,
            max_backoff,
            statsd,
            once: false,
        })
    }
}

/// Validates `[statsd]`, adding its problems under `statsd.<key>`.
fn statsd_settings(c: &StatsdConfig, problems: &mut Problems) -> crate::statsd::StatsdSettings {
    let addr = |problems: &mut Problems, key: &str, a: &str| -> Option<SocketAddr> {
        if a.is_empty() {
            return None;
        }
        a.parse()
            .map_err(|_| {
                problems.push(
                    &format!("statsd.{key}"),
                    format!("\"{a}\" is not an address like 127.0.0.1:8125 (or \"\" for none)"),
                )
            })
            .ok()
    };
    let udp = addr(problems, "udp_listen", &c.udp_listen);
    let tcp = addr(problems, "tcp_listen", &c.tcp_listen);
    if c.enabled && c.udp_listen.is_empty() && c.tcp_listen.is_empty() {
        problems.push(
            "statsd",
            "enabled, but udp_listen and tcp_listen are both \"\"",
        );
    }
    let etsy_naming = match c.naming.as_str() {
        "tags" => None,
        "etsy" => {
            for (key, v) in [
                ("global_prefix", &c.global_prefix),
                ("prefix_counter", &c.prefix_counter),
                ("prefix_timer", &c.prefix_timer),
                ("prefix_gauge", &c.prefix_gauge),
                ("prefix_set", &c.prefix_set),
            ] {
                if !v.is_empty() && v.split('.').any(|n| n.is_empty() || n.contains([' ', ';'])) {
                    problems.push(
                        &format!("statsd.{key}"),
                        format!("\"{v}\" is not dot-separated path nodes"),
                    );
                }
            }
            Some(crate::naming::StatsdNaming::Etsy {
                legacy: c.legacy_namespace,
                global: c.global_prefix.clone(),
                counter: c.prefix_counter.clone(),
                timer: c.prefix_timer.clone(),
                gauge: c.prefix_gauge.clone(),
                set: c.prefix_set.clone(),
            })
        }
        other => {
            problems.push(
                "statsd.naming",
                format!("\"{other}\" is neither \"tags\" nor \"etsy\""),
            );
            None
        }
    };
    for p in &c.percentiles {
        if !(*p > 0.0 && *p <= 100.0) {
            problems.push(
                "statsd.percentiles",
                format!("{p} is not a percentile in (0, 100]"),
            );
        }
    }
    if c.max_series == 0 {
        problems.push("statsd.max_series", "at least 1");
    }
    if c.tcp_max_connections == 0 {
        problems.push("statsd.tcp_max_connections", "at least 1");
    }
    let journal_max_bytes = problems.size("statsd.journal_max_size", &c.journal_max_size, 1 << 20);
    let max_line_bytes = problems.size("statsd.max_line_size", &c.max_line_size, 64);
    let receive_buffer_bytes =
        problems.size("statsd.receive_buffer_size", &c.receive_buffer_size, 0);
    crate::statsd::StatsdSettings {
        enabled: c.enabled,
        udp,
        tcp,
        etsy_naming,
        percentiles: c.percentiles.clone(),
        percentile_buckets: c.percentile_buckets,
        max_series: c.max_series,
        journal_max_bytes,
        max_line_bytes: usize::try_from(max_line_bytes).unwrap_or(usize::MAX),
        tcp_max_connections: c.tcp_max_connections,
        receive_buffer_bytes: usize::try_from(receive_buffer_bytes).unwrap_or(usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let text = include_str!("../../examples/agent.toml");
        let mut config = AgentConfig::parse(text).expect("example parses");
        config.host = Some("web1".into());
        let s = Settings::try_from(config).expect("example is valid");
        assert_eq!(s.interval, 10);
        assert_eq!(s.inputs[0].max_line_bytes, 64 * 1024);
        assert_eq!(s.spool_max_bytes, 256 << 20);
        assert_eq!(s.poll_interval, Duration::from_millis(250));
        assert!(!s.statsd.enabled);
        assert_eq!(s.statsd.udp, Some("127.0.0.1:8125".parse().expect("addr")));
        assert_eq!(s.statsd.percentiles, [90.0]);
    }

    #[test]
    fn the_relay_example_agent_is_the_relays_ring() {
        let text = include_str!("../../examples/relay/agent.toml");
        let s = Settings::try_from(AgentConfig::parse(text).expect("parses")).expect("valid");
        let Output::Stores { stores, ring, .. } = s.output else {
            panic!("several stores");
        };
        let servers: Vec<String> = stores.iter().map(|s| s.server.to_string()).collect();
        assert_eq!(
            servers,
            ["127.0.0.1:2103=a", "127.0.0.1:2203=b", "127.0.0.1:2303=c"]
        );
        assert_eq!(ring.replication(), 2);
        // The relay's own file lists the same servers the same way.
        let relay = include_str!("../../examples/relay/carbon_ch.conf");
        assert!(relay.contains("carbon_ch replication 2"));
        for s in &servers {
            assert!(relay.contains(s.as_str()), "{s}");
        }
    }

    #[test]
    fn statsd_problems_are_reported_with_their_keys() {
        let c = AgentConfig::parse(
            "host = \"web1\"\n[statsd]\nenabled = true\nudp_listen = \"nowhere\"\nnaming = \"graphite\"\n\
             percentiles = [0.0]\nmax_series = 0\njournal_max_size = \"1KiB\"\n",
        )
        .expect("parses");
        let e = Settings::try_from(c).expect_err("bad values");
        let keys: Vec<&str> = e.iter().filter_map(|p| p.split(':').next()).collect();
        assert_eq!(
            keys,
            [
                "statsd.udp_listen",
                "statsd.naming",
                "statsd.percentiles",
                "statsd.max_series",
                "statsd.journal_max_size"
            ],
            "{e:?}"
        );
        // statsd alone is a valid agent: no [[input]] needed.
        let c = AgentConfig::parse("host = \"web1\"\n[statsd]\nenabled = true\n").expect("parses");
        assert!(Settings::try_from(c).is_ok());
    }

    #[test]
    fn every_unknown_key_is_reported_at_once_also_in_rules() {
        let e = AgentConfig::parse(
            "intervl = \"10s\"\n[[input]]\npath = [\"a\"]\n[[rule]]\nname = \"x\"\nregx = \"y\"\n",
        )
        .expect_err("unknown keys");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().any(|p| p.contains("rule.0.regx")), "{e:?}");
    }

    #[test]
    fn a_path_prefix_must_be_path_nodes() {
        for (prefix, ok) in [
            ("servers", true),
            ("prod.servers", true),
            ("", true),
            (".x", false),
            ("a..b", false),
            ("a b", false),
        ] {
            let c = AgentConfig::parse(&format!(
                "host = \"web1\"\nnaming = \"path\"\npath_prefix = \"{prefix}\"\n[[input]]\npaths = [\"/x\"]\n"
            ))
            .expect("parses");
            assert_eq!(Settings::try_from(c).is_ok(), ok, "{prefix:?}");
        }
    }

    #[test]
    fn tls_files_belong_to_a_tls_output() {
        let problems = |output: &str| {
            let c = AgentConfig::parse(&format!(
                "host = \"web1\"\n[[input]]\npaths = [\"/x\"]\n[output]\n{output}"
            ))
            .expect("parses");
            Settings::try_from(c).err().unwrap_or_default()
        };
        assert_eq!(
            problems("url = \"http://s:8080\"\nca_file = \"/ca.pem\"\n"),
            ["output: ca_file, client_cert and client_key are for TLS; use an https:// url"]
        );
        assert_eq!(
            problems("kind = \"carbon\"\nclient_cert = \"/c.pem\"\n"),
            ["output: ca_file, client_cert and client_key are for TLS; set tls = true"]
        );
        let p = problems("url = \"https://s:8443\"\nca_file = \"/no/such/ca.pem\"\n");
        assert!(
            p.len() == 1 && p[0].starts_with("output: /no/such/ca.pem: "),
            "{p:?}"
        );
        assert_eq!(
            problems("kind = \"carbon\"\ntls = true\nclient_key = \"/k.pem\"\n"),
            ["output: output.client_key needs output.client_cert"]
        );
        assert!(problems("url = \"https://s:8443\"\n").is_empty());
    }

    fn output(text: &str) -> Result<Output, Vec<String>> {
        let c = AgentConfig::parse(&format!(
            "host = \"web1\"\n[[input]]\npaths = [\"/x\"]\n[output]\n{text}"
        ))?;
        Settings::try_from(c).map(|s| s.output)
    }

    #[test]
    fn several_stores_make_a_ring_keyed_as_the_relay_names_them() {
        let Ok(Output::Stores { stores, ring, .. }) = output(
            "urls = [\"http://10.0.0.1:8080/\", \"http://10.0.0.2:8080\", \"https://[fd00::3]:8443\"]\n\
             hashing = \"fnv1a_ch\"\nreplication = 2\n",
        ) else {
            panic!("valid");
        };
        let servers: Vec<String> = stores.iter().map(|s| s.server.to_string()).collect();
        assert_eq!(
            servers,
            ["10.0.0.1:2003", "10.0.0.2:2003", "[fd00::3]:2003"]
        );
        assert_eq!(stores[0].url, "http://10.0.0.1:8080");
        assert_eq!(
            (ring.hashing(), ring.replication(), ring.len()),
            (crate::ring::Hashing::Fnv1aCh, 2, 3)
        );
        let Ok(Output::Stores { stores, ring, .. }) = output(
            "replication = 2\n\
             [[output.store]]\nurl = \"http://127.0.0.1:8081\"\nserver = \"127.0.0.1:2103=a\"\n\
             [[output.store]]\nurl = \"http://127.0.0.1:8082\"\nserver = \"127.0.0.1:2203=b\"\n",
        ) else {
            panic!("valid");
        };
        assert_eq!(stores[1].server.instance.as_deref(), Some("b"));
        assert_eq!(ring.hashing(), crate::ring::Hashing::CarbonCh);
        // One store in any form is the single output of before.
        for one in [
            "",
            "url = \"http://s:8080\"\n",
            "urls = [\"http://s:8080\"]\n",
            "[[output.store]]\nurl = \"http://s:8080\"\n",
        ] {
            assert!(
                matches!(output(one), Ok(Output::Tally { .. })),
                "{one:?}: {:?}",
                output(one)
            );
        }
    }

    #[test]
    fn bad_stores_are_reported_with_their_keys() {
        let keys = |text: &str| -> Vec<String> {
            output(text)
                .expect_err("invalid")
                .iter()
                .map(|p| p.split(": ").next().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(
            output("urls = [\"http://a:1\", \"http://b:1\"]\nreplication = 3\n")
                .expect_err("3 > 2"),
            ["output.replication: 3 must be between 1 and the number of stores (2)"]
        );
        assert_eq!(
            output("url = \"http://a:1\"\nreplication = 2\n").expect_err("2 > 1"),
            ["output.replication: 2 must be between 1 and the number of stores (1)"]
        );
        assert_eq!(
            output("urls = [\"http://a:1\", \"http://b:1\"]\nhashing = \"md5\"\n")
                .expect_err("hashing"),
            ["output.hashing: \"md5\" is none of carbon_ch, fnv1a_ch, jump_fnv1a_ch"]
        );
        // carbon_ch cannot tell two stores of one host apart without instances.
        let e = output("urls = [\"http://127.0.0.1:8081\", \"http://127.0.0.1:8082\"]\n")
            .expect_err("alike");
        assert!(
            e.len() == 1 && e[0].starts_with("output.urls: stores \"127.0.0.1:2003\" and"),
            "{e:?}"
        );
        assert_eq!(
            keys("url = \"http://a:1\"\nurls = [\"http://b:1\", \"http://c:1\"]\n"),
            ["output.urls"]
        );
        assert_eq!(
            keys("urls = [\"http://a:1\", \"ftp://b\", \"http://a:1\"]\n"),
            ["output.urls[1]", "output.urls[2]"]
        );
        assert_eq!(
            keys(
                "[[output.store]]\nurl = \"http://a:1\"\nserver = \"a:x\"\n\
                  [[output.store]]\nurl = \"http://b:1\"\n"
            ),
            ["output.store[0].server"]
        );
        assert_eq!(
            keys("kind = \"carbon\"\nurls = [\"http://a:1\", \"http://b:1\"]\n"),
            ["output.urls"]
        );
        assert_eq!(
            keys("urls = [\"http://a:1\", \"http://b:1\"]\nca_file = \"/ca.pem\"\n"),
            ["output"]
        );
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let c = AgentConfig::parse(
            "interval = \"1.5s\"\ncommit_interval = \"0s\"\n[[input]]\npaths = [\"/x\"]\n\
             max_line_size = \"lots\"\n[output]\nspool_max_size = \"1KiB\"\n",
        )
        .expect("parses");
        let e = Settings::try_from(c).expect_err("bad values");
        let keys: Vec<&str> = e.iter().filter_map(|p| p.split(':').next()).collect();
        assert_eq!(
            keys,
            [
                "commit_interval",
                "input[0].max_line_size",
                "interval",
                "output.spool_max_size"
            ],
            "{e:?}"
        );
    }
}
