//! `tally`: thin wiring of the libraries into one command with subcommands.

mod demo;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tally_store::{Settings, StoreConfig};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "tally",
    version,
    about = "Access logs to graphs and pages: agent, line protocol, time-series store, Graphite API"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less log output (-q warnings and errors only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    quiet: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole pipeline on embedded defaults, in one process: store, an agent tailing a
    /// generated access log (with a simulated CDN incident every few minutes), default alert
    /// rules printing to the console, and the web page. What `./x run` starts.
    Demo(demo::DemoArgs),
    /// Run the time-series store: plaintext on :2003, HTTP on :8080 (ingest and the Graphite
    /// API that Grafana reads), data in ./data.
    Store(StoreArgs),
    /// Flush and fully compact a store's data directory (the store must not be running), then
    /// print its size: what `tally store` does daily, on demand.
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
    Compact {
        /// The data directory.
        #[arg(long, env = "TALLY_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct StoreArgs {
    /// A TOML config (see examples/store.toml). Flags below override it.
    #[arg(short, long, env = "TALLY_STORE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database lives [default: ./data].
    #[arg(long, env = "TALLY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Graphite plaintext TCP address [default: 0.0.0.0:2003].
    #[arg(long)]
    line_listen: Option<String>,
    /// HTTP address [default: 0.0.0.0:8080].
    #[arg(long)]
    http_listen: Option<String>,
    /// Also take plaintext over UDP on the line address.
    #[arg(long)]
    udp: bool,
    /// The alerting file: rules and notifiers (see examples/alerts.toml). Reloaded on SIGHUP.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Check the configuration, report every problem, and exit.
    #[arg(long)]
    check_config: bool,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// The agent's TOML config (see examples/agent.toml): inputs, rules, output.
    #[arg(short, long, env = "TALLY_AGENT_CONFIG")]
    config: PathBuf,
    /// Where checkpoints and the spool live (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The `host` tag of every series (overrides `host`; default: the hostname).
    #[arg(long)]
    host: Option<String>,
    /// The store's URL (overrides `output.url` and selects the `tally` output).
    #[arg(long)]
    url: Option<String>,
    /// Read every file to its end, commit, try to ship for a moment, print the counters as
    /// JSON and exit (for backfills and benchmarks).
    #[arg(long)]
    once: bool,
    /// Check the configuration, report every problem, and exit.
    #[arg(long)]
    check_config: bool,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// The store's HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The target expression, as /render takes it.
    #[arg(short, long)]
    target: String,
    /// The window each series is reduced over.
    #[arg(long, default_value = "5m")]
    window: String,
    /// last (non-null), avg, max, min or sum.
    #[arg(long, default_value = "avg")]
    reduce: String,
    /// Warning range in plugin syntax: 10, 10:, ~:10, 10:20, @10:20.
    #[arg(short = 'w', long)]
    warning: Option<String>,
    /// Critical range in plugin syntax.
    #[arg(short = 'c', long)]
    critical: Option<String>,
    /// Plain warning threshold: alert at or above it (at or below if --crit is lower).
    #[arg(long)]
    warn: Option<f64>,
    /// Plain critical threshold.
    #[arg(long)]
    crit: Option<f64>,
    /// An all-null window (or no series) is OK instead of UNKNOWN.
    #[arg(long)]
    nodata_ok: bool,
    /// The service name at the start of the status line.
    #[arg(long, default_value = "tally")]
    label: String,
    /// Bearer token for a store with api_read_token.
    #[arg(long, env = "TALLY_TOKEN")]
    token: Option<String>,
    /// Give up (UNKNOWN) after this long.
    #[arg(long, default_value = "10s")]
    timeout: String,
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Replay alert rules over stored history and print the state changes they would have
    /// made, with times and values.
    Test(RulesTestArgs),
}

#[derive(Args, Debug)]
struct RulesTestArgs {
    /// The alerting file.
    #[arg(long)]
    alerts: PathBuf,
    /// Only this rule.
    #[arg(long)]
    rule: Option<String>,
    /// The store's HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Start of the replay (graphite time syntax: -7d, -3h, epoch).
    #[arg(long, default_value = "-7d")]
    from: String,
    /// End of the replay.
    #[arg(long, default_value = "now")]
    until: String,
    /// Bearer token for a store with api_read_token.
    #[arg(long, env = "TALLY_TOKEN")]
    token: Option<String>,
}

#[derive(Args, Debug)]
struct GenLogArgs {
    /// Append to this file.
    #[arg(long)]
    out: PathBuf,
    /// How many lines.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// The same seed writes the same lines.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Log-time lines per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Unix time of the first line [default: now minus the log's duration].
    #[arg(long)]
    start: Option<i64>,
    /// Write the exact expected counts as JSON here.
    #[arg(long)]
    truth: Option<PathBuf>,
}

fn init_logging(g: &Global) {
    let level = match i16::from(g.verbose) - i16::from(g.quiet) {
        i16::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn store_settings(args: &StoreArgs) -> Result<Settings> {
    let mut config = match &args.config {
        Some(path) => StoreConfig::load(path)?,
        None => StoreConfig::default(),
    };
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = &args.line_listen {
        config.line_listen = l.clone();
    }
    if let Some(h) = &args.http_listen {
        config.http_listen = h.clone();
    }
    config.udp_enabled |= args.udp;
    if let Some(a) = &args.alerts {
        config.alerts = Some(a.clone());
    }
    Ok(Settings::try_from(config)?)
}

/// Installs the SIGINT and SIGTERM handlers now, and returns a future that completes on either.
///
/// Installing them before the store starts matters: a handler installed lazily (on first poll)
/// leaves a window after "listening" in which SIGTERM kills the process without its clean flush.
/// Must be called inside the runtime.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

fn run_store(args: StoreArgs) -> Result<()> {
    let settings = store_settings(&args).context("configuration")?;
    let alerting = match &settings.alerts_file {
        Some(path) => Some(tally_query::alert::Alerting::load(path).map_err(problems)?),
        None => None,
    };
    if args.check_config {
        println!("configuration ok");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        serve_store(settings, alerting, shutdown, |bound| {
            // One stable line on stdout: scripts and tests read the real ports from it.
            println!("tally store: line={} http={}", bound.line, bound.http);
        })
        .await
    })
}

/// Runs the store with the Graphite API, the web page and (with `alerting`) the alert engine,
/// until `shutdown` completes. The alert engine reloads on SIGHUP and saves its state before the
/// store closes. Must run inside a multi-threaded runtime.
async fn serve_store(
    settings: Settings,
    alerting: Option<tally_query::alert::Alerting>,
    shutdown: impl std::future::Future<Output = ()>,
    on_bound: impl FnOnce(tally_store::server::Bound),
) -> Result<()> {
    let mut api = tally_query::ApiOptions {
        write_token: settings.api_write_token.clone(),
        read_token: settings.api_read_token.clone(),
        limits: tally_query::Limits {
            max_series: settings.max_series_per_request,
            max_points: settings.max_points_per_request,
            max_time: settings.max_request,
        },
        alerts: None,
    };
    let alerts_file = settings.alerts_file.clone();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let (alert_stop, alert_stop_rx) = tokio::sync::watch::channel(false);
    let engine_task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let started = engine_task.clone();
    let extra = move |store: tally_store::Store| {
        let source: Arc<dyn tally_query::Source> = Arc::new(store);
        if let Some(cfg) = alerting {
            match tally_query::alert::Engine::new(source.clone(), cfg, alerts_file) {
                Ok(engine) => {
                    let engine = Arc::new(engine);
                    api.alerts = Some(engine.clone());
                    let runner = tally_query::alert::engine::run(engine.clone(), alert_stop_rx);
                    let task = tokio::spawn(async move {
                        tokio::select! {
                            _ = runner => {}
                            _ = async {
                                while hup.recv().await.is_some() {
                                    if let Err(ps) = tokio::task::block_in_place(|| engine.reload()) {
                                        tracing::error!(problems = ?ps, "alert rules not reloaded; the old ones stay");
                                    }
                                }
                            } => {}
                        }
                    });
                    if let Ok(mut t) = started.lock() {
                        *t = Some(task);
                    }
                }
                Err(e) => tracing::error!(error = %e, "alerting is off: the engine did not start"),
            }
        }
        tally_query::router_with(source, api)
    };
    let shutdown = async move {
        shutdown.await;
        // The alert engine saves its state before the store closes.
        let _ = alert_stop.send(true);
        let task = engine_task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    };
    tally_store::server::run(settings, Some(Box::new(extra)), on_bound, shutdown).await?;
    Ok(())
}

fn run_agent(args: AgentArgs) -> Result<()> {
    let mut config = tally_agent::AgentConfig::load(&args.config).map_err(problems)?;
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(h) = args.host {
        config.host = Some(h);
    }
    if let Some(u) = args.url {
        config.output.kind = "tally".into();
        config.output.url = u;
    }
    let mut settings = tally_agent::Settings::try_from(config).map_err(|ps| {
        problems(
            ps.into_iter()
                .map(|p| format!("{}: {p}", args.config.display()))
                .collect(),
        )
    })?;
    settings.once = args.once;
    if args.check_config {
        println!("configuration ok");
        return Ok(());
    }
    let stats = std::sync::Arc::new(tally_agent::Stats::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let agent = {
        let stats = stats.clone();
        // Signals first: a SIGTERM right after start must still stop cleanly.
        let shutdown = runtime.block_on(async { shutdown_signal() })?;
        let handle = std::thread::Builder::new()
            .name("agent".into())
            .spawn(move || {
                let r = tally_agent::run(settings, stats, |ready| {
                    let metrics = ready.metrics.map_or("off".to_string(), |a| a.to_string());
                    println!("tally agent: files={} metrics={metrics}", ready.files);
                });
                let _ = done_tx.send(());
                r
            })?;
        runtime.block_on(async {
            tokio::select! {
                _ = shutdown => {}
                _ = done_rx => {}
            }
        });
        handle
    };
    stats
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    stats.notify();
    agent
        .join()
        .map_err(|_| anyhow::anyhow!("the agent thread panicked"))??;
    if args.once {
        println!("{}", stats.to_json());
    }
    Ok(())
}

/// Formats every configuration problem, one per line.
fn problems(ps: Vec<String>) -> anyhow::Error {
    anyhow::anyhow!("configuration:\n  {}", ps.join("\n  "))
}

fn gen_log(a: GenLogArgs) -> Result<()> {
    use std::io::Write;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let start = a.start.unwrap_or(now - (a.lines / a.rate.max(1)) as i64);
    let mut g = tally_agent::gen::Gen::new(a.seed, start, a.rate);
    let mut truth = tally_agent::gen::Truth::default();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .with_context(|| format!("opening {}", a.out.display()))?;
    let mut buf = Vec::with_capacity(1 << 20);
    for _ in 0..a.lines {
        g.line(&mut buf, &mut truth);
        if buf.len() >= 1 << 20 {
            f.write_all(&buf)?;
            buf.clear();
        }
    }
    f.write_all(&buf)?;
    if let Some(t) = a.truth {
        std::fs::write(&t, truth.to_json())?;
    }
    Ok(())
}

/// Fetches `target` over `[from, until]` as `(name, start, step, values)` from a store's /render.
fn fetch_render(
    url: &str,
    token: Option<&str>,
    target: &str,
    from: i64,
    until: i64,
    timeout: Duration,
) -> Result<Vec<tally_query::alert::machine::History>> {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()?;
    let mut req = client
        .get(format!("{}/render", url.trim_end_matches('/')))
        .query(&[
            ("target", target),
            ("from", &from.to_string()),
            ("until", &until.to_string()),
            ("format", "json"),
        ]);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .with_context(|| format!("{url} does not answer"))?;
    let status = resp.status();
    let body = resp.text()?;
    if !status.is_success() {
        anyhow::bail!("{url}: HTTP {status}: {}", body.trim());
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("not a /render json answer")?;
    let mut out = Vec::new();
    for s in v.as_array().into_iter().flatten() {
        let name = s["target"].as_str().unwrap_or_default().to_string();
        let pts = s["datapoints"].as_array().cloned().unwrap_or_default();
        let ts: Vec<i64> = pts.iter().filter_map(|p| p[1].as_i64()).collect();
        let start = ts.first().copied().unwrap_or(from);
        let step = if ts.len() > 1 { ts[1] - ts[0] } else { 60 };
        out.push((
            name,
            start,
            step,
            pts.iter().map(|p| p[0].as_f64()).collect(),
        ));
    }
    Ok(out)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `tally check`: prints one status line and returns the Nagios exit code.
fn check(a: CheckArgs) -> i32 {
    use tally_query::alert::config::Reduce;
    use tally_query::alert::nagios::{check, Range, Thresholds};
    let unknown = |why: String| {
        println!("{} UNKNOWN - {why}", a.label.to_uppercase());
        3
    };
    let Some(reduce) = Reduce::parse(&a.reduce) else {
        return unknown(format!(
            "--reduce \"{}\" is not last, avg, max, min or sum",
            a.reduce
        ));
    };
    let window = match tally_proto::duration::parse_duration(&a.window) {
        Ok(d) if d.as_secs() > 0 => d.as_secs() as i64,
        _ => {
            return unknown(format!(
                "--window \"{}\" is not a duration like 5m",
                a.window
            ))
        }
    };
    let timeout =
        tally_proto::duration::parse_duration(&a.timeout).unwrap_or(Duration::from_secs(10));
    let range = |s: &Option<String>, flag: &str| -> Result<Option<Range>, String> {
        s.as_deref()
            .map(|r| Range::parse(r).map_err(|e| format!("{flag}: {e}")))
            .transpose()
    };
    let thresholds = if a.warn.is_some() || a.crit.is_some() {
        if a.warning.is_some() || a.critical.is_some() {
            return unknown("use either -w/-c ranges or --warn/--crit numbers".into());
        }
        Thresholds::plain(a.warn, a.crit)
    } else {
        match (range(&a.warning, "-w"), range(&a.critical, "-c")) {
            (Ok(warn), Ok(crit)) => Thresholds { warn, crit },
            (Err(e), _) | (_, Err(e)) => return unknown(e),
        }
    };
    if thresholds.warn.is_none() && thresholds.crit.is_none() {
        return unknown("no thresholds: give -w/-c or --warn/--crit".into());
    }
    let now = unix_now();
    let series = match fetch_render(
        &a.url,
        a.token.as_deref(),
        &a.target,
        now - window,
        now,
        timeout,
    ) {
        Ok(s) => s,
        Err(e) => return unknown(format!("{e:#}")),
    };
    let series: Vec<(String, Vec<Option<f64>>)> =
        series.into_iter().map(|(n, _, _, v)| (n, v)).collect();
    let o = check(&a.label, &series, reduce, &thresholds, a.nodata_ok);
    println!("{}", o.line);
    o.code
}

fn rules_test(a: RulesTestArgs) -> Result<()> {
    let cfg = tally_query::alert::Alerting::load(&a.alerts).map_err(problems)?;
    let now = unix_now();
    let from =
        tally_query::time::parse_time(&a.from, now).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let until = tally_query::time::parse_time(&a.until, now)
        .map_err(|e| anyhow::anyhow!("--until: {e}"))?;
    let mut any = false;
    for rule in cfg
        .rules
        .iter()
        .filter(|r| a.rule.as_ref().is_none_or(|n| *n == r.name))
    {
        any = true;
        let span = rule.absent.map_or(rule.window, |(_, lookback)| lookback);
        let series = fetch_render(
            &a.url,
            a.token.as_deref(),
            &rule.target,
            from - span,
            until,
            Duration::from_secs(60),
        )?;
        let changes = tally_query::alert::machine::backtest(rule, &series, from, until);
        println!(
            "{}: {} series, {} state changes from {} to {}",
            rule.name,
            series.len(),
            changes.len(),
            iso(from),
            iso(until)
        );
        for c in changes {
            let (what, level) = match c.transition {
                tally_query::alert::machine::Transition::Fired { level, .. } => ("FIRING  ", level),
                tally_query::alert::machine::Transition::Resolved { level } => ("RESOLVED", level),
            };
            println!(
                "  {}  {what} {:<8} {}  value={}",
                iso(c.at),
                level.as_str(),
                c.series,
                c.value
                    .map_or("none".into(), tally_query::alert::config::fmt_value)
            );
        }
    }
    if !any {
        anyhow::bail!(
            "no rule named {:?} in {}",
            a.rule.unwrap_or_default(),
            a.alerts.display()
        );
    }
    Ok(())
}

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn compact(data_dir: &std::path::Path) -> Result<()> {
    let store = tally_store::Store::open(tally_store::StoreOptions::new(data_dir))
        .with_context(|| format!("opening {}", data_dir.display()))?;
    store.close()?;
    store.compact()?;
    let m = store.metrics();
    let get = |k: &str| m.iter().find(|e| e.name == k).map_or(0, |e| e.value);
    println!(
        "series={} sst_bytes={} live_data_bytes={}",
        get("series"),
        get("rocksdb_sst_bytes"),
        get("rocksdb_live_data_bytes")
    );
    Ok(())
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // A Nagios plugin reports bad arguments as UNKNOWN (3), not clap's 2.
            let is_check = std::env::args().nth(1).as_deref() == Some("check");
            if is_check && e.use_stderr() {
                println!(
                    "TALLY UNKNOWN - {}",
                    e.to_string().lines().next().unwrap_or("bad arguments")
                );
                std::process::exit(3);
            }
            e.exit();
        }
    };
    if let Command::Check(args) = cli.command {
        std::process::exit(check(args));
    }
    init_logging(&cli.global);
    let result = match cli.command {
        Command::Store(args) => run_store(args),
        Command::Demo(args) => demo::run(args),
        Command::Agent(args) => run_agent(args),
        Command::GenLog(args) => gen_log(args),
        Command::Check(_) => unreachable!("handled above"),
        Command::Rules {
            command: RulesCommand::Test(args),
        } => rules_test(args),
        Command::Compact { data_dir } => compact(&data_dir),
    };
    if let Err(e) = result {
        eprintln!("tally: {e:#}");
        std::process::exit(1);
    }
}
