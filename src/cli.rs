//! The command line: every subcommand's flags, as clap derive types. Each subcommand's work
//! is in its own file; this one only says what can be typed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tally",
    version,
    about = "Access logs to graphs and pages: agent, line protocol, time-series store, Graphite API"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct Global {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (-q warnings and errors only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The whole pipeline on embedded defaults, in one process: store, an agent tailing a
    /// generated access log (with a simulated CDN incident every few minutes), default alert
    /// rules printing to the console, and the web page. What `./x run` starts.
    Demo(DemoArgs),
    /// Run the time-series store: plaintext on :2003, HTTP on :8080 (ingest and the Graphite
    /// API that Grafana reads), data in ./data.
    Store(StoreArgs),
    /// A query node over several stores (behind carbon-c-relay): the Graphite and Atlas APIs,
    /// the web page and alerts over all of them, fetches pushed down to each store, replicas
    /// merged point by point, an answer missing a store marked partial.
    Query(QueryArgs),
    /// Run the agent: tail access logs, count what the rules match per interval, and ship the
    /// points to a Tally store (acknowledged) or a Graphite carbon (plaintext).
    Agent(AgentArgs),
    /// Write realistic access-log lines (combined + vhost, cdn, rt fields, with failure
    /// beacons): a test input for the agent and the benchmarks.
    GenLog(GenLogArgs),
    /// A Nagios/Icinga plugin: evaluate one target on a running store and exit 0 OK,
    /// 1 WARNING, 2 CRITICAL or 3 UNKNOWN, with one status line and perfdata.
    Check(CheckArgs),
    /// Alert rules: `tally rules test` replays rules over stored history.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Flush and fully compact a store's data directory (the store must not be running), then
    /// print its size: what `tally store` does daily, on demand.
    Compact(CompactArgs),
}

#[derive(Args, Debug)]
pub struct CompactArgs {
    /// The data directory.
    #[arg(long, env = "TALLY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct StoreArgs {
    /// A TOML config (see examples/store.toml). Flags below override it.
    #[arg(short, long, env = "TALLY_STORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the database lives [default: ./data].
    #[arg(long, env = "TALLY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Graphite plaintext TCP address [default: 0.0.0.0:2003].
    #[arg(long)]
    pub line_listen: Option<String>,
    /// HTTP address [default: 0.0.0.0:8080].
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Also take plaintext over UDP on the line address.
    #[arg(long)]
    pub udp: bool,
    /// The alerting file: rules and notifiers (see examples/alerts.toml). Reloaded on SIGHUP.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Check the configuration, report every problem, and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The stores' HTTP base URLs, comma-separated (`http://10.0.0.1:8080,10.0.0.2:8080`).
    #[arg(long, required = true, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// A store-style TOML config: its HTTP limits, tokens, TLS and `[query]` table apply to
    /// the node (its data keys are not used). Flags below override it.
    #[arg(short, long, env = "TALLY_QUERY_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP address [default: 0.0.0.0:8080].
    #[arg(long)]
    pub http_listen: Option<String>,
    /// How long each store may take to answer before the answer goes without it.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub peer_timeout: std::time::Duration,
    /// How many stores hold each series (the relay's `replication`): an answer is partial
    /// only when at least this many stores did not answer.
    #[arg(long, default_value_t = 1)]
    pub replication: usize,
    /// A file holding the stores' read token (sent as a bearer token to every store).
    #[arg(long)]
    pub peer_token_file: Option<PathBuf>,
    /// The alerting file: rules evaluated over every store. Reloaded on SIGHUP.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Where the node keeps its own documents (the alert engine's state).
    #[arg(long, default_value = "./tally-query-state")]
    pub state_dir: PathBuf,
    /// Check the configuration, report every problem, and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The agent's TOML config (see examples/agent.toml): inputs, rules, output.
    #[arg(short, long, env = "TALLY_AGENT_CONFIG")]
    pub config: PathBuf,
    /// Where checkpoints and the spool live (overrides `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The `host` tag of every series (overrides `host`; default: the hostname).
    #[arg(long)]
    pub host: Option<String>,
    /// The store's URL (the one store, in place of `output.url` or `urls`; selects the `tally`
    /// output).
    #[arg(long)]
    pub url: Option<String>,
    /// Read every file to its end, commit, try to ship for a moment, print the counters as
    /// JSON and exit (for backfills and benchmarks).
    #[arg(long)]
    pub once: bool,
    /// Check the configuration, report every problem, and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The store's HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The target expression, as /render takes it.
    #[arg(
        short,
        long,
        required_unless_present = "atlas",
        conflicts_with = "atlas"
    )]
    pub target: Option<String>,
    /// Instead of --target: an Atlas expression, as /api/v1/graph takes it.
    #[arg(long)]
    pub atlas: Option<String>,
    /// The window each series is reduced over.
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// last (non-null), avg, max, min or sum.
    #[arg(long, default_value = "avg")]
    pub reduce: String,
    /// Warning range in plugin syntax: 10, 10:, ~:10, 10:20, @10:20.
    #[arg(short = 'w', long)]
    pub warning: Option<String>,
    /// Critical range in plugin syntax.
    #[arg(short = 'c', long)]
    pub critical: Option<String>,
    /// Plain warning threshold: alert at or above it (at or below if --crit is lower).
    #[arg(long)]
    pub warn: Option<f64>,
    /// Plain critical threshold.
    #[arg(long)]
    pub crit: Option<f64>,
    /// An all-null window (or no series) is OK instead of UNKNOWN.
    #[arg(long)]
    pub nodata_ok: bool,
    /// The service name at the start of the status line.
    #[arg(long, default_value = "tally")]
    pub label: String,
    /// Bearer token for a store with read_token (the read or the write token).
    #[arg(long, env = "TALLY_TOKEN")]
    pub token: Option<String>,
    /// Give up (UNKNOWN) after this long.
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// How a client of the store verifies it over `https://` and identifies itself.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Verify the store's certificate against this CA (PEM) rather than the public roots.
    #[arg(long, env = "TALLY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Present this certificate (PEM) to a store that requires client certificates.
    #[arg(long, env = "TALLY_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The key of --client-cert (PEM).
    #[arg(long, env = "TALLY_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsArgs {
    pub fn files(&self) -> tally_common::tls::ClientFiles {
        tally_common::tls::ClientFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.client_cert.clone(),
            key_file: self.client_key.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Replay alert rules over stored history and print the state changes they would have
    /// made, with times and values.
    Test(RulesTestArgs),
}

#[derive(Args, Debug)]
pub struct RulesTestArgs {
    /// The alerting file.
    #[arg(long)]
    pub alerts: PathBuf,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// The store's HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Start of the replay (graphite time syntax: -7d, -3h, epoch).
    #[arg(long, default_value = "-7d")]
    pub from: String,
    /// End of the replay.
    #[arg(long, default_value = "now")]
    pub until: String,
    /// Bearer token for a store with read_token (the read or the write token).
    #[arg(long, env = "TALLY_TOKEN")]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Args, Debug)]
pub struct GenLogArgs {
    /// Append to this file.
    #[arg(long)]
    pub out: PathBuf,
    /// How many lines.
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,
    /// The same seed writes the same lines.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Log-time lines per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Unix time of the first line [default: now minus the log's duration].
    #[arg(long)]
    pub start: Option<i64>,
    /// Write the exact expected counts as JSON here.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo keeps everything: store, agent checkpoint and spool, the access log.
    #[arg(long, default_value = "./tally-demo")]
    pub data_dir: PathBuf,
    /// The web page, the Graphite API and ingest.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_listen: String,
    /// Graphite plaintext.
    #[arg(long, default_value = "127.0.0.1:2003")]
    pub line_listen: String,
    /// Generated requests per second.
    #[arg(long, default_value_t = 40)]
    pub rate: u64,
    /// A simulated CDN incident starts this often (and lasts 90 s).
    #[arg(long, default_value = "5m")]
    pub incident_every: String,
    /// The first simulated incident starts this long after the demo does.
    #[arg(long, default_value = "1m")]
    pub first_incident_after: String,
    /// Also page this Alertmanager (its base URL).
    #[arg(long)]
    pub alertmanager: Option<String>,
    /// Also POST alert webhooks here.
    #[arg(long)]
    pub webhook: Option<String>,
}
