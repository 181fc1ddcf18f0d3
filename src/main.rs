//! `tally`: thin wiring of the libraries into one command with subcommands.

use std::path::PathBuf;

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
struct GenLogArgs {
    /// Append to this file.
    #[arg(long)]
    out: PathBuf,
    /// How many lines.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
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
    if args.check_config {
        println!("configuration ok");
        return Ok(());
    }
    let api = tally_query::ApiOptions {
        write_token: settings.api_write_token.clone(),
        read_token: settings.api_read_token.clone(),
        limits: tally_query::Limits {
            max_series: settings.max_series_per_request,
            max_points: settings.max_points_per_request,
            max_time: settings.max_request,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        tally_store::server::run(
            settings,
            Some(Box::new(move |store| {
                tally_query::router_with(std::sync::Arc::new(store), api)
            })),
            |bound| {
                // One stable line on stdout: scripts and tests read the real ports from it.
                println!("tally store: line={} http={}", bound.line, bound.http);
            },
            shutdown,
        )
        .await?;
        Ok::<_, anyhow::Error>(())
    })
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

fn compact(data_dir: &std::path::Path) -> Result<()> {
    let store = tally_store::Store::open(tally_store::StoreOptions::new(data_dir))
        .with_context(|| format!("opening {}", data_dir.display()))?;
    store.close()?;
    store.compact()?;
    let m = store.metrics();
    let get = |k: &str| m.iter().find(|e| e.0 == k).map_or(0, |e| e.3);
    println!(
        "series={} sst_bytes={} live_data_bytes={}",
        get("series"),
        get("rocksdb_sst_bytes"),
        get("rocksdb_live_data_bytes")
    );
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli.global);
    let result = match cli.command {
        Command::Store(args) => run_store(args),
        Command::Agent(args) => run_agent(args),
        Command::GenLog(args) => gen_log(args),
        Command::Compact { data_dir } => compact(&data_dir),
    };
    if let Err(e) = result {
        eprintln!("tally: {e:#}");
        std::process::exit(1);
    }
}
