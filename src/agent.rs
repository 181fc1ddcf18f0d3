//! `tally agent`: the agent library on a thread of its own, stopped by SIGINT or SIGTERM (it
//! commits before it exits), with `--once` for backfills and benchmarks.

use anyhow::Result;

use crate::cli::AgentArgs;
use crate::serve::{problems, shutdown_signal};

/// `tally agent`.
pub fn run(args: AgentArgs) -> Result<()> {
    let mut config = tally_agent::AgentConfig::load(&args.config).map_err(problems)?;
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(h) = args.host {
        config.host = Some(h);
    }
    if let Some(u) = args.url {
        // One store, in place of whatever the file lists.
        config.output.kind = "tally".into();
        config.output.url = Some(u);
        config.output.urls.clear();
        config.output.store.clear();
        config.output.replication = 1;
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
                    let addr = |a: Option<std::net::SocketAddr>| {
                        a.map_or("off".to_string(), |a| a.to_string())
                    };
                    let statsd = match (ready.statsd_udp, ready.statsd_tcp) {
                        (None, None) => String::new(),
                        (udp, tcp) => {
                            format!(" statsd_udp={} statsd_tcp={}", addr(udp), addr(tcp))
                        }
                    };
                    println!(
                        "tally agent: files={} metrics={}{statsd}",
                        ready.files,
                        addr(ready.metrics)
                    );
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
