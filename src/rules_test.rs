//! `tally rules test`: replays alert rules over a running store's history, through the typed
//! render client and the same state machine the live engine runs, and prints the state changes
//! they would have made.

use std::time::Duration;

use anyhow::Result;
use tally_query::RenderClient;

use crate::cli::RulesTestArgs;
use crate::serve::problems;

/// Prints each rule's state changes over `--from`..`--until`.
pub fn run(a: RulesTestArgs) -> Result<()> {
    let cfg = tally_query::alert::Alerting::load(&a.alerts).map_err(problems)?;
    let now = tally_common::unix_now();
    let client = RenderClient::with_tls(
        &a.url,
        a.token.as_deref(),
        Duration::from_secs(60),
        &a.tls.files(),
    )?;
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
        let span = tally_query::alert::span(rule);
        let (count, changes) = if rule.atlas.is_some() {
            // An Atlas program is evaluated afresh for every evaluation's window, as the live
            // engine does (its stateful words start at the window's start).
            let mut seen = std::collections::BTreeSet::new();
            let changes = tally_query::alert::backtest::backtest_atlas(
                rule,
                |s, e| {
                    let lines = client.atlas_alert_lines(&rule.target, s, e)?;
                    seen.extend(lines.iter().map(|l| l.name.clone()));
                    Ok::<_, tally_query::client::ClientError>(lines)
                },
                from,
                until,
            )?;
            (seen.len(), changes)
        } else {
            let series = client.render(&rule.target, from - span, until)?;
            let changes = tally_query::alert::backtest::backtest(rule, &series, from, until);
            (series.len(), changes)
        };
        println!(
            "{}: {} {}, {} state changes from {} to {}",
            rule.name,
            count,
            if rule.atlas.is_some() {
                "lines"
            } else {
                "series"
            },
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
