//! `tally check`: a Nagios/Icinga plugin. It reads one target (or, with `--atlas`, one Atlas
//! expression) from a running store through the typed render client, reduces each series over the window, and prints one status line with
//! perfdata; the exit code is 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN (bad arguments too).

use tally_query::alert::config::Reduce;
use tally_query::alert::nagios::{check, Range, Thresholds};
use tally_query::RenderClient;

use crate::cli::CheckArgs;

/// Prints the status line and returns the exit code.
pub fn run(a: CheckArgs) -> i32 {
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
    let window = match tally_common::config::parse_duration(&a.window) {
        Ok(d) if d.as_secs() > 0 => d.as_secs() as i64,
        _ => {
            return unknown(format!(
                "--window \"{}\" is not a duration like 5m",
                a.window
            ))
        }
    };
    let timeout = match tally_common::config::parse_duration(&a.timeout) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            return unknown(format!(
                "--timeout \"{}\" is not a duration like 10s",
                a.timeout
            ))
        }
    };
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
    let now = tally_common::unix_now();
    let series = match RenderClient::with_tls(&a.url, a.token.as_deref(), timeout, &a.tls.files())
        .and_then(|c| match (&a.atlas, &a.target) {
            (Some(q), _) => c.atlas(q, now - window, now),
            (None, t) => c.render(t.as_deref().unwrap_or_default(), now - window, now),
        }) {
        Ok(s) => s,
        Err(e) => return unknown(e.to_string()),
    };
    let o = check(&a.label, &series, reduce, &thresholds, a.nodata_ok);
    println!("{}", o.line);
    o.code
}
