//! `tally query --peers ...`: a query node, stateless but for its alert state. The whole query
//! surface (graphite-web's API, Atlas's, the web page, alerts with `--alerts`) over the stores
//! behind a relay, read through [`tally_query::federate::Federated`]; its port is the store's
//! HTTP front (caps, timeouts, tokens and TLS from the same config keys) and its `/metrics` the
//! node's own counters.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::{header, Method};
use tally_common::auth::{Access, Routes};
use tally_query::federate::{Federated, FederationOptions, FederationStats, Peer};

use crate::cli::{QueryArgs, StoreArgs};
use crate::serve::{problems, shutdown_signal, start_alerts};

/// `tally query`.
pub fn run(args: QueryArgs) -> Result<()> {
    // The node reads a store's config format: its HTTP, token, TLS and `[query]` keys.
    let (settings, mut query) = crate::serve::settings(&StoreArgs {
        config: args.config.clone(),
        data_dir: None,
        line_listen: None,
        http_listen: args.http_listen.clone(),
        udp: false,
        alerts: None,
        check_config: args.check_config,
    })?;
    if let Some(a) = &args.alerts {
        query.alerts_file = Some(a.clone());
    }
    let peers = args
        .peers
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| Peer::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problems(vec![format!("--peers: {e}")]))?;
    if peers.is_empty() {
        return Err(problems(vec!["--peers: name at least one store".into()]));
    }
    if args.replication == 0 || args.replication > peers.len() {
        return Err(problems(vec![format!(
            "--replication {}: must be between 1 and the number of --peers ({})",
            args.replication,
            peers.len()
        )]));
    }
    let token = match &args.peer_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the peer token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let Some((alerting, runtime)) = crate::serve::checked(&query, args.check_config)? else {
        return Ok(());
    };
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let federated = Arc::new(Federated::new(
            peers,
            FederationOptions {
                timeout: args.peer_timeout,
                replication: args.replication,
                token,
                state_dir: args.state_dir.clone(),
            },
        )?);
        let stats = federated.stats();
        let source: Arc<dyn tally_query::Source> = federated.clone();
        tally_query::Budget::process().set_limit(query.max_points_in_flight);
        let mut api = tally_query::ApiOptions {
            tokens: Arc::new(settings.tokens.clone()),
            limits: query.limits,
            budget: None,
            alerts: None,
        };
        let (alert_stop, alert_stop_rx) = tokio::sync::watch::channel(false);
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel::<()>();
        let mut engine_task = None;
        if let Some(cfg) = alerting {
            let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("installing the SIGHUP handler")?;
            if let Some((engine, task)) = start_alerts(
                source.clone(),
                cfg,
                query.alerts_file.clone(),
                alert_stop_rx,
                bound_rx,
                hup,
            ) {
                api.alerts = Some(engine);
                engine_task = Some(task);
            }
        }
        let front = Arc::new(tally_store::Stats::default());
        let app = tally_query::router_with_extra(source, api, metrics_routes(stats, front.clone()));
        let names: Vec<String> = federated.peers().iter().map(|p| p.name.clone()).collect();
        let shutdown = async move {
            shutdown.await;
            let _ = alert_stop.send(true);
            if let Some(t) = engine_task {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        };
        tally_store::server::serve_http(
            &settings,
            app,
            front,
            |addr| {
                // One stable line on stdout: scripts and tests read the real port from it.
                println!("tally query: http={addr} peers={}", names.join(","));
                let _ = bound_tx.send(());
            },
            shutdown,
        )
        .await?;
        Ok(())
    })
}

/// `/metrics`: the node's federation counters and its HTTP front's.
fn metrics_routes(stats: Arc<FederationStats>, front: Arc<tally_store::Stats>) -> Routes {
    Routes::new().add(Method::GET, "/metrics", Access::Metrics, move || {
        let (stats, front) = (stats.clone(), front.clone());
        async move {
            let mut out = String::new();
            tally_common::metrics::write_text(&mut out, "tally_query", &stats.samples());
            let http: Vec<_> = front
                .samples()
                .into_iter()
                .filter(|s| s.name.starts_with("http_") || s.name.starts_with("tls_"))
                .collect();
            tally_common::metrics::write_text(&mut out, "tally_query", &http);
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
        }
    })
}
