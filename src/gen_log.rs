//! `tally gen-log`: deterministic access-log lines (the agent's generator) with their exact
//! expected counts, as test input for the agent and the benchmarks.

use anyhow::{Context, Result};

use crate::cli::GenLogArgs;

/// `tally gen-log`.
pub fn run(a: GenLogArgs) -> Result<()> {
    use std::io::Write;
    let now = tally_common::unix_now();
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
