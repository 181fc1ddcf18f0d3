//! `tally store`: the store with the query side next to it (the Graphite API, the web page and,
//! with alert rules, the alert engine) on one HTTP port, and their orderly shutdown: on SIGINT
//! or SIGTERM the alert engine saves its state, then the store flushes and closes. `tally demo`
//! serves the same way.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tally_query::{QueryConfig, QuerySettings};
use tally_store::{Settings, StoreConfig};

use crate::cli::StoreArgs;

/// The store's settings and the query side's, from the file (if any) and the flags; every
/// problem of both parts is reported at once, each with the file it is in.
pub(crate) fn settings(args: &StoreArgs) -> Result<(Settings, QuerySettings)> {
    let in_file = |ps: Vec<String>| match &args.config {
        Some(path) => tally_common::config::in_file(path, ps),
        None => ps,
    };
    let config_problems = |e: tally_store::Error| match e {
        tally_store::Error::Config(ps) => Ok(ps),
        other => Err(other),
    };
    let mut config = match &args.config {
        Some(path) => match StoreConfig::load(path) {
            Ok(c) => c,
            Err(e) => return Err(problems(config_problems(e)?)),
        },
        None => StoreConfig::default(),
    };
    let query = QueryConfig::from_table(std::mem::take(&mut config.query))
        .and_then(QuerySettings::try_from)
        .map_err(in_file);
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
    let store = match Settings::try_from(config) {
        Ok(s) => Ok(s),
        Err(e) => Err(in_file(config_problems(e)?)),
    };
    let (store, mut query) = match (store, query) {
        (Ok(s), Ok(q)) => (s, q),
        (Err(mut a), Err(b)) => {
            a.extend(b);
            return Err(problems(a));
        }
        (Err(a), _) | (_, Err(a)) => return Err(problems(a)),
    };
    if let Some(a) = &args.alerts {
        query.alerts_file = Some(a.clone());
    }
    Ok((store, query))
}

/// The alert rules of `query` (every problem reported), then either "configuration ok" for
/// `--check-config` (`None`) or the runtime to serve on.
pub(crate) fn checked(
    query: &QuerySettings,
    check_config: bool,
) -> Result<
    Option<(
        Option<tally_query::alert::Alerting>,
        tokio::runtime::Runtime,
    )>,
> {
    let alerting = match &query.alerts_file {
        Some(path) => Some(tally_query::alert::Alerting::load(path).map_err(problems)?),
        None => None,
    };
    if check_config {
        println!("configuration ok");
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(Some((alerting, runtime)))
}

/// Installs the SIGINT and SIGTERM handlers now, and returns a future that completes on either.
///
/// Installing them before the store starts matters: a handler installed lazily (on first poll)
/// leaves a window after "listening" in which SIGTERM kills the process without its clean flush.
/// Must be called inside the runtime.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
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

/// `tally store`.
pub fn run(args: StoreArgs) -> Result<()> {
    let (settings, query) = settings(&args)?;
    let Some((alerting, runtime)) = checked(&query, args.check_config)? else {
        return Ok(());
    };
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        serve_store(settings, query, alerting, shutdown, |bound| {
            // One stable line on stdout: scripts and tests read the real ports from it.
            println!("tally store: line={} http={}", bound.line, bound.http);
        })
        .await
    })
}

/// Runs the store with the Graphite API, the web page and (with `alerting`) the alert engine,
/// until `shutdown` completes. The alert engine reloads on SIGHUP and saves its state before the
/// store closes. Must run inside a multi-threaded runtime.
pub async fn serve_store(
    settings: Settings,
    query: QuerySettings,
    alerting: Option<tally_query::alert::Alerting>,
    shutdown: impl std::future::Future<Output = ()>,
    on_bound: impl FnOnce(tally_store::server::Bound),
) -> Result<()> {
    tally_query::Budget::process().set_limit(query.max_points_in_flight);
    let mut api = tally_query::ApiOptions {
        tokens: Arc::new(settings.tokens.clone()),
        limits: query.limits,
        budget: None,
        alerts: None,
    };
    let alerts_file = query.alerts_file;
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let (alert_stop, alert_stop_rx) = tokio::sync::watch::channel(false);
    let engine_task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let started = engine_task.clone();
    // The engine's first evaluation waits for the address line: a rule that fires at once must
    // not print its console line before the line scripts read the ports from.
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel::<()>();
    let on_bound = move |bound: tally_store::server::Bound| {
        on_bound(bound);
        let _ = bound_tx.send(());
    };
    let extra = move |store: tally_store::Store| {
        let source: Arc<dyn tally_query::Source> = Arc::new(store);
        if let Some(cfg) = alerting {
            if let Some((engine, task)) = start_alerts(
                source.clone(),
                cfg,
                alerts_file,
                alert_stop_rx,
                bound_rx,
                hup,
            ) {
                api.alerts = Some(engine);
                if let Ok(mut t) = started.lock() {
                    *t = Some(task);
                }
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

/// Starts the alert engine over `source`: its first evaluation waits for `bound` (the address
/// line comes first), it reloads its file on SIGHUP (`hup`) and stops, saving its state, when
/// `stop` turns true. Returns the engine (for the alert API) and its task; `None`, logged, when
/// it cannot start.
pub fn start_alerts(
    source: Arc<dyn tally_query::Source>,
    cfg: tally_query::alert::Alerting,
    file: Option<std::path::PathBuf>,
    stop: tokio::sync::watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Receiver<()>,
    mut hup: tokio::signal::unix::Signal,
) -> Option<(Arc<tally_query::alert::Engine>, tokio::task::JoinHandle<()>)> {
    let engine = match tally_query::alert::Engine::new(source, cfg, file) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            tracing::error!(error = %e, "alerting is off: the engine did not start");
            return None;
        }
    };
    let runner = tally_query::alert::engine::run(engine.clone(), stop);
    let reloading = engine.clone();
    let task = tokio::spawn(async move {
        let _ = bound.await;
        tokio::select! {
            _ = runner => {}
            _ = async {
                while hup.recv().await.is_some() {
                    if let Err(ps) = tokio::task::block_in_place(|| reloading.reload()) {
                        tracing::error!(problems = ?ps, "alert rules not reloaded; the old ones stay");
                    }
                }
            } => {}
        }
    });
    Some((engine, task))
}

/// Formats every configuration problem, one per line.
pub fn problems(ps: Vec<String>) -> anyhow::Error {
    anyhow::anyhow!("configuration:\n  {}", ps.join("\n  "))
}
