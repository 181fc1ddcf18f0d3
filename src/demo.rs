//! `tally demo`: the whole pipeline in one process, on embedded defaults. A traffic generator
//! appends realistic access-log lines (with a simulated CDN incident every few minutes), an
//! agent tails them into the store, default alert rules watch beacons, 5xx and latency, and the
//! web page shows it all. The same pieces run separately as `tally store` and `tally agent`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tally_common::unix_now;

use crate::cli::DemoArgs;
use crate::serve::{problems, serve_store, shutdown_signal};

/// The demo's alert rules (also `examples/demo/alerts.toml`).
const DEMO_RULES: &str = include_str!("../examples/demo/alerts.toml");

/// Appends generated traffic to `log` until `stop`, rotating it (rename) past 64 MB.
fn generate(log: PathBuf, rate: u64, incidents: (Duration, Duration), stop: Arc<AtomicBool>) {
    let (first_after, incident_every) = incidents;
    let mut g = tally_agent::gen::Gen::new(unix_now() as u64, unix_now(), u64::MAX);
    let mut truth = tally_agent::gen::Truth::default();
    let started = Instant::now();
    let sources = ["cdn_fastly", "cdn_akamai", "cdn_edgecast"];
    let mut incident_no = 0usize;
    let mut in_incident = false;
    let tick = Duration::from_millis(100);
    let mut owed = 0.0f64;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let elapsed = started.elapsed();
        // The first incident comes after `first_after`, then every `incident_every`.
        let phase = elapsed.as_secs_f64() - first_after.as_secs_f64();
        let every = incident_every.as_secs_f64().max(120.0);
        let now_in = phase >= 0.0 && phase % every < 90.0;
        if now_in != in_incident {
            in_incident = now_in;
            if now_in {
                let s = sources[incident_no % sources.len()];
                incident_no += 1;
                g.incident = Some(s);
                println!(
                    "demo: incident: {s} failure beacons spike, 5xx rise, latency grows (90 s)"
                );
            } else {
                g.incident = None;
                println!("demo: incident over");
            }
        }
        owed += rate as f64 * tick.as_secs_f64();
        g.time = unix_now();
        buf.clear();
        while owed >= 1.0 {
            g.line(&mut buf, &mut truth);
            owed -= 1.0;
        }
        if let Ok(md) = std::fs::metadata(&log) {
            if md.len() > 64 << 20 {
                let _ = std::fs::rename(&log, log.with_extension("log.1"));
            }
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(&buf));
        if let Err(e) = written {
            tracing::error!(path = %log.display(), error = %e, "the demo cannot write its access log");
        }
        std::thread::sleep(tick);
    }
}

fn agent_settings(dir: &Path, store_url: &str) -> Result<tally_agent::Settings> {
    let text = format!(
        r#"host = "demo-web1"
data_dir = "{}"
[[input]]
paths = ["{}/access.log*"]
start_at = "beginning"
[output]
url = "{store_url}"
"#,
        dir.join("agent").display(),
        dir.join("logs").display(),
    );
    let config =
        tally_agent::AgentConfig::parse(&text).map_err(|ps| anyhow::anyhow!(ps.join("; ")))?;
    tally_agent::Settings::try_from(config).map_err(|ps| anyhow::anyhow!(ps.join("; ")))
}

pub fn run(a: DemoArgs) -> Result<()> {
    let dir = a.data_dir.clone();
    for sub in ["store", "agent", "logs"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let incident_every = tally_common::config::parse_duration(&a.incident_every)
        .map_err(|e| anyhow::anyhow!("--incident-every: {e}"))?;
    let first_after = tally_common::config::parse_duration(&a.first_incident_after)
        .map_err(|e| anyhow::anyhow!("--first-incident-after: {e}"))?;
    // The rules, with the notifiers asked for, in a file the engine can reload.
    // Top-level keys first, then the rules' tables, then the notifiers'.
    let mut rules = format!(
        "external_url = \"http://{}\"\n{DEMO_RULES}\n[[notify]]\nkind = \"console\"\n",
        a.http_listen
    );
    if let Some(am) = &a.alertmanager {
        rules.push_str(&format!(
            "[[notify]]\nkind = \"alertmanager\"\nurl = \"{am}\"\n"
        ));
    }
    if let Some(w) = &a.webhook {
        rules.push_str(&format!("[[notify]]\nkind = \"webhook\"\nurl = \"{w}\"\n"));
    }
    let alerts_path = dir.join("alerts.toml");
    std::fs::write(&alerts_path, &rules)
        .with_context(|| format!("writing {}", alerts_path.display()))?;
    let alerting = tally_query::alert::Alerting::load(&alerts_path).map_err(problems)?;
    let config = tally_store::StoreConfig {
        data_dir: dir.join("store"),
        http_listen: a.http_listen.clone(),
        line_listen: a.line_listen.clone(),
        ..Default::default()
    };
    let settings = tally_store::Settings::try_from(config)?;
    let query = tally_query::QuerySettings {
        alerts_file: Some(alerts_path.clone()),
        ..Default::default()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let log = dir.join("logs").join("access.log");
    let generator = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::Builder::new()
            .name("demo-traffic".into())
            .spawn(move || generate(log, a.rate, (first_after, incident_every), stop))?
    };
    let agent_stats = Arc::new(tally_agent::Stats::default());
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<std::net::SocketAddr>();
    let agent = {
        let (dir, stats) = (dir.clone(), agent_stats.clone());
        std::thread::Builder::new()
            .name("demo-agent".into())
            .spawn(move || -> Result<()> {
                // The agent starts once the store listens, shipping to its real address.
                let Ok(http) = bound_rx.recv() else {
                    return Ok(());
                };
                let settings = agent_settings(&dir, &format!("http://{http}"))?;
                Ok(tally_agent::run(settings, stats, |_| {})?)
            })?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let signal = shutdown_signal()?;
        let (stats, stop2) = (agent_stats.clone(), stop.clone());
        let shutdown = async move {
            signal.await;
            println!("demo: stopping");
            // Traffic and the agent stop first (the agent commits), then the store.
            stop2.store(true, Ordering::Relaxed);
            stats.stopping.store(true, Ordering::Relaxed);
            stats.notify();
        };
        let data = dir.display().to_string();
        let first = a.first_incident_after.clone();
        serve_store(settings, query, Some(alerting), shutdown, move |b| {
            let _ = bound_tx.send(b.http);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "tally demo: store, agent, traffic generator and alert rules are running; data in {data}\n\
                 \n  web page        http://{http}/\n\
                 \x20 Grafana         add a Graphite data source at http://{http} (version 1.1.x), or provision grafana/\n\
                 \x20 alerts          http://{http}/api/v1/alerts   (state changes are printed here too)\n\
                 \x20 plaintext       {line} (Graphite line protocol)\n\
                 \n  beacons appear within about 20 s; the first simulated CDN incident starts after {first}.\n  Ctrl-C stops everything.\n",
                http = b.http,
                line = b.line,
            );
            let _ = out.flush();
        })
        .await
    });
    stop.store(true, Ordering::Relaxed);
    agent_stats.stopping.store(true, Ordering::Relaxed);
    agent_stats.notify();
    let _ = generator.join();
    match agent.join() {
        Ok(Err(e)) => tracing::error!(error = %e, "the demo agent failed"),
        Err(_) => tracing::error!("the demo agent panicked"),
        Ok(Ok(())) => {}
    }
    result?;
    println!("demo: stopped cleanly");
    Ok(())
}
