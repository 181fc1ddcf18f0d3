//! The alerting file: notifiers and threshold rules (TOML), validated with every problem reported
//! at once. `include` pulls more rule files in by glob.
//!
//! ```toml
//! external_url = "http://tally.example.com:8080"
//! [[notify]]
//! kind = "alertmanager"
//! url = "http://127.0.0.1:9093"
//! [[rule]]
//! name = "BeaconFailures"
//! target = "sumSeries(seriesByTag('name=beacons'))"
//! window = "5m"
//! reduce = "sum"
//! op = ">"
//! warn = 10
//! crit = 50
//! for = "1m"
//! summary = "failure beacons {{value}} > {{threshold}}"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tally_common::config::DurationText;
use tally_common::tls::ClientFiles;

use crate::graphite::{parse, Expr};

/// The file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AlertsFile {
    /// The base of graph links in notifications (`generatorURL`, the webhook's `graph_url`).
    pub external_url: Option<String>,
    /// Default evaluation interval of rules that name none.
    pub interval: Option<DurationText>,
    /// How often firing alerts are sent to Alertmanager again (and to webhooks).
    pub resend_interval: Option<DurationText>,
    /// How long resolved alerts keep being sent to Alertmanager as resolved.
    pub resolved_resend_for: Option<DurationText>,
    /// More rule files, by glob, relative to this file.
    pub include: Vec<String>,
    pub notify: Vec<NotifyConfig>,
    pub rule: Vec<RuleConfig>,
}

/// One `[[notify]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// `alertmanager`, `pagerduty`, `webhook` or `console`.
    pub kind: String,
    /// Alertmanager's base URL, PagerDuty's events endpoint
    /// (default `https://events.pagerduty.com/v2/enqueue`), or the webhook URL.
    pub url: Option<String>,
    /// PagerDuty integration key.
    pub routing_key: Option<String>,
    /// Only rules with one of these names (default: every rule).
    pub rules: Vec<String>,
    /// Extra HTTP headers (webhook), for example an Authorization header.
    pub headers: BTreeMap<String, String>,
    /// With an https URL: the CA file the receiver's certificate must chain to (default: the
    /// public roots).
    pub ca_file: Option<PathBuf>,
    /// With an https URL: a certificate (and `client_key`) to present to a receiver that asks
    /// for one (mTLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Webhooks: also send a firing instance again every `resend_interval`, marked
    /// `"resend": true` (default true; `false` sends state changes only).
    pub resend: Option<bool>,
}

/// One `[[rule]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RuleConfig {
    pub name: String,
    /// A target expression, as `/render` takes it.
    pub target: String,
    /// Instead of `target`: an Atlas expression, as `/api/v1/graph` takes it. Without
    /// thresholds each line is a signal: non-zero means the condition holds (critical).
    pub atlas: Option<String>,
    /// The look-back window each series is reduced over.
    pub window: Option<DurationText>,
    /// `last` (last non-null), `avg`, `max`, `min` or `sum`.
    pub reduce: Option<String>,
    /// `>`, `>=`, `<` or `<=`: the value is bad when `value op threshold`.
    pub op: Option<String>,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
    /// Once firing, it stays firing while `value op recover` (hysteresis).
    pub recover: Option<f64>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub for_: Option<DurationText>,
    /// How long a firing alert keeps firing after its condition stopped holding.
    pub keep_firing_for: Option<DurationText>,
    pub interval: Option<DurationText>,
    /// What an all-null window (or a target with no series) means: `alert` (the `nodata`
    /// state, which notifies), `keep` (the last state) or `ok`.
    pub nodata: Option<String>,
    /// What a failing query means: `alert` (the `error` state), `keep` or `ok`.
    pub on_error: Option<String>,
    /// Absence: fire for each series that reported within `lookback` but not for this long.
    pub absent_for: Option<DurationText>,
    /// How far back a series must have reported to be missed (absence rules; default 24h).
    pub lookback: Option<DurationText>,
    pub labels: BTreeMap<String, String>,
    /// Templates: `{{rule}}`, `{{series}}`, `{{value}}`, `{{threshold}}`, `{{level}}`,
    /// `{{state}}`, `{{tags.NAME}}`.
    pub summary: Option<String>,
    pub runbook_url: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// How the window of one series becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduce {
    Last,
    Avg,
    Max,
    Min,
    Sum,
}

impl Reduce {
    pub fn parse(s: &str) -> Option<Reduce> {
        Some(match s {
            "last" => Reduce::Last,
            "avg" | "average" | "mean" => Reduce::Avg,
            "max" => Reduce::Max,
            "min" => Reduce::Min,
            "sum" | "total" => Reduce::Sum,
            _ => return None,
        })
    }

    /// The reduction of the non-null values; `None` when there are none (never 0).
    pub fn apply(self, values: &[Option<f64>]) -> Option<f64> {
        let it = values.iter().flatten().copied().filter(|v| !v.is_nan());
        match self {
            Reduce::Last => values.iter().rev().flatten().copied().find(|v| !v.is_nan()),
            Reduce::Max => it.reduce(f64::max),
            Reduce::Min => it.reduce(f64::min),
            Reduce::Sum => it.reduce(|a, b| a + b),
            Reduce::Avg => {
                let (n, s) = it.fold((0u64, 0.0), |(n, s), v| (n + 1, s + v));
                (n > 0).then(|| s / n as f64)
            }
        }
    }
}

/// The direction of a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            _ => return None,
        })
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// What to do with no data or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Alert,
    Keep,
    Ok,
}

impl Policy {
    fn parse(s: &str) -> Option<Policy> {
        Some(match s {
            "alert" | "nodata" | "error" => Policy::Alert,
            "keep" | "keep_state" | "last" => Policy::Keep,
            "ok" => Policy::Ok,
            _ => return None,
        })
    }
}

/// What makes a rule an absence rule: it fires for each series that reported within
/// `lookback` seconds but not in the last `absent_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Absence {
    pub absent_for: i64,
    pub lookback: i64,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The Graphite target, or the Atlas expression of an Atlas rule.
    pub target: String,
    pub expr: Expr,
    /// An Atlas rule's expressions (`atlas = "..."`), evaluated instead of `expr`.
    pub atlas: Option<Vec<crate::atlas::stack::Styled>>,
    /// An Atlas rule without thresholds: each line's values are signals, non-zero firing.
    pub signal: bool,
    pub window: i64,
    pub reduce: Reduce,
    pub op: Op,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
    pub recover: Option<f64>,
    pub for_: i64,
    pub keep_firing_for: i64,
    pub interval: i64,
    pub nodata: Policy,
    pub on_error: Policy,
    /// Set for an absence rule.
    pub absent: Option<Absence>,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub runbook_url: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// How a notifier delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyKind {
    Alertmanager {
        url: String,
    },
    PagerDuty {
        url: String,
        routing_key: String,
    },
    Webhook {
        url: String,
        headers: BTreeMap<String, String>,
        /// A document per re-send too: every `resend_interval` while an instance fires.
        resend: bool,
    },
    Console,
}

#[derive(Debug, Clone)]
pub struct Notifier {
    pub kind: NotifyKind,
    pub rules: Vec<String>,
    /// What the engine knows this notifier by across reloads: its kind, URL and PagerDuty key
    /// (with `#2`, `#3` … for repeats), not its place in the file. Its counters, its queued
    /// notifications and the incidents it was told of follow it when the file is reordered.
    pub id: String,
    /// How it verifies the receiver and identifies itself over https (`ca_file`,
    /// `client_cert`, `client_key`); checked to load when the file is read, and read again at
    /// every reload.
    pub tls: ClientFiles,
}

impl Notifier {
    pub fn name(&self) -> &'static str {
        match self.kind {
            NotifyKind::Alertmanager { .. } => "alertmanager",
            NotifyKind::PagerDuty { .. } => "pagerduty",
            NotifyKind::Webhook { .. } => "webhook",
            NotifyKind::Console => "console",
        }
    }

    pub fn wants(&self, rule: &str) -> bool {
        self.rules.is_empty() || self.rules.iter().any(|r| r == rule)
    }
}

/// A validated alerting configuration.
#[derive(Debug, Clone)]
pub struct Alerting {
    pub external_url: String,
    pub resend_interval: i64,
    pub resolved_resend_for: i64,
    pub notifiers: Vec<Notifier>,
    pub rules: Vec<Rule>,
}

impl Alerting {
    /// The notifier known by `id` ([`Notifier::id`]).
    pub fn notifier(&self, id: &str) -> Option<&Notifier> {
        self.notifiers.iter().find(|n| n.id == id)
    }
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            external_url: "http://127.0.0.1:8080".into(),
            resend_interval: 60,
            resolved_resend_for: 900,
            notifiers: Vec::new(),
            rules: Vec::new(),
        }
    }
}

fn secs(place: &str, v: Option<&DurationText>, default: i64, problems: &mut Vec<String>) -> i64 {
    match v {
        None => default,
        Some(s) => match s.parse() {
            Ok(d) => d.as_secs() as i64,
            Err(e) => {
                problems.push(format!("{place}: {e}"));
                default
            }
        },
    }
}

/// One file, every unknown key reported at once (`tally_common::config`).
fn parse_toml(text: &str) -> Result<AlertsFile, Vec<String>> {
    tally_common::config::parse(text)
}

impl Alerting {
    /// Loads the alerting file and its includes; every problem, each with its file and place.
    pub fn load(path: &Path) -> Result<Alerting, Vec<String>> {
        let text = tally_common::config::read(path)?;
        let main = parse_toml(&text).map_err(|ps| tally_common::config::in_file(path, ps))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut files: Vec<(PathBuf, AlertsFile)> = vec![(path.to_path_buf(), main.clone())];
        let mut problems = Vec::new();
        for pattern in &main.include {
            let full = base.join(pattern);
            match glob::glob(&full.to_string_lossy()) {
                Ok(paths) => {
                    for p in paths.flatten() {
                        match tally_common::config::read(&p)
                            .and_then(|t| parse_toml(&t))
                            .map_err(|ps| tally_common::config::in_file(&p, ps))
                        {
                            Ok(f) if !f.notify.is_empty() || !f.include.is_empty() => problems
                                .push(format!(
                                    "{}: included files hold only [[rule]]s",
                                    p.display()
                                )),
                            Ok(f) => files.push((p, f)),
                            Err(ps) => problems.extend(ps),
                        }
                    }
                }
                Err(e) => problems.push(format!("{}: include \"{pattern}\": {e}", path.display())),
            }
        }
        let mut rules: Vec<(String, RuleConfig)> = Vec::new();
        for (p, f) in &files {
            for r in &f.rule {
                rules.push((p.display().to_string(), r.clone()));
            }
        }
        match Self::validate(&main, &rules) {
            Ok(a) if problems.is_empty() => Ok(a),
            Ok(_) => Err(problems),
            Err(ps) => {
                // A rule's problems name its file already; the rest are the main file's.
                let files: Vec<String> = files
                    .iter()
                    .map(|(p, _)| format!("{}: ", p.display()))
                    .collect();
                for p in ps {
                    if files.iter().any(|f| p.starts_with(f.as_str())) {
                        problems.push(p);
                    } else {
                        problems.push(format!("{}: {p}", path.display()));
                    }
                }
                Err(problems)
            }
        }
    }

    /// Parses one file's text (no includes), for tests and `tally rules test`.
    pub fn parse(text: &str) -> Result<Alerting, Vec<String>> {
        let f = parse_toml(text)?;
        let rules: Vec<(String, RuleConfig)> = f
            .rule
            .iter()
            .map(|r| ("rules".to_string(), r.clone()))
            .collect();
        Self::validate(&f, &rules)
    }

    fn validate(f: &AlertsFile, rules: &[(String, RuleConfig)]) -> Result<Alerting, Vec<String>> {
        let mut problems = Vec::new();
        let default_interval = secs("interval", f.interval.as_ref(), 30, &mut problems).max(1);
        let resend_interval = secs(
            "resend_interval",
            f.resend_interval.as_ref(),
            60,
            &mut problems,
        )
        .max(1);
        let resolved_resend_for = secs(
            "resolved_resend_for",
            f.resolved_resend_for.as_ref(),
            900,
            &mut problems,
        );
        let mut notifiers = Vec::new();
        for (i, n) in f.notify.iter().enumerate() {
            let place = format!("notify[{i}]");
            let url = |problems: &mut Vec<String>, default: Option<&str>| -> String {
                match n.url.as_deref().or(default) {
                    Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                        u.trim_end_matches('/').to_string()
                    }
                    Some(u) => {
                        problems.push(format!("{place}.url: \"{u}\" is not an http(s) URL"));
                        String::new()
                    }
                    None => {
                        problems.push(format!("{place}.url: missing"));
                        String::new()
                    }
                }
            };
            let kind = match n.kind.as_str() {
                "alertmanager" => NotifyKind::Alertmanager {
                    url: url(&mut problems, None),
                },
                "pagerduty" => NotifyKind::PagerDuty {
                    url: url(
                        &mut problems,
                        Some("https://events.pagerduty.com/v2/enqueue"),
                    ),
                    routing_key: n.routing_key.clone().unwrap_or_else(|| {
                        problems.push(format!(
                            "{place}.routing_key: PagerDuty needs the integration key"
                        ));
                        String::new()
                    }),
                },
                "webhook" => NotifyKind::Webhook {
                    url: url(&mut problems, None),
                    headers: n.headers.clone(),
                    resend: n.resend.unwrap_or(true),
                },
                "console" => NotifyKind::Console,
                other => {
                    problems.push(format!("{place}.kind: \"{other}\" is not alertmanager, pagerduty, webhook or console"));
                    NotifyKind::Console
                }
            };
            let base = match &kind {
                NotifyKind::Alertmanager { url } => format!("alertmanager {url}"),
                NotifyKind::PagerDuty { url, routing_key } => {
                    format!("pagerduty {url} {routing_key}")
                }
                NotifyKind::Webhook { url, .. } => format!("webhook {url}"),
                NotifyKind::Console => "console".to_string(),
            };
            let repeats = notifiers
                .iter()
                .filter(|o: &&Notifier| o.id == base || o.id.starts_with(&format!("{base} #")))
                .count();
            let id = match repeats {
                0 => base,
                n => format!("{base} #{}", n + 1),
            };
            if n.resend.is_some() && !matches!(kind, NotifyKind::Webhook { .. }) {
                problems.push(format!(
                    "{place}.resend: only webhooks take it (Alertmanager is re-sent by resend_interval, PagerDuty gets state changes)"
                ));
            }
            let tls = ClientFiles {
                ca_file: n.ca_file.clone(),
                cert_file: n.client_cert.clone(),
                key_file: n.client_key.clone(),
            };
            if tls.is_set() {
                let https = match &kind {
                    NotifyKind::Alertmanager { url }
                    | NotifyKind::PagerDuty { url, .. }
                    | NotifyKind::Webhook { url, .. } => url.starts_with("https://"),
                    NotifyKind::Console => false,
                };
                if !https {
                    problems.push(format!(
                        "{place}: ca_file, client_cert and client_key are for an https url"
                    ));
                } else if let Err(e) = tls.load([
                    &format!("{place}.ca_file"),
                    &format!("{place}.client_cert"),
                    &format!("{place}.client_key"),
                ]) {
                    problems.push(format!("{place}: {e}"));
                }
            }
            notifiers.push(Notifier {
                kind,
                rules: n.rules.clone(),
                id,
                tls,
            });
        }
        let mut out = Vec::new();
        for (i, (file, r)) in rules.iter().enumerate() {
            let place = format!("{file}: rule[{i}] (\"{}\")", r.name);
            if r.name.is_empty()
                || !r
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
            {
                problems.push(format!("{place}.name: letters, digits and _-.: only"));
            }
            if out.iter().any(|o: &Rule| o.name == r.name) {
                problems.push(format!("{place}.name: another rule has this name"));
            }
            let atlas_program = r.atlas.as_deref().filter(|a| !a.trim().is_empty());
            let (expr, atlas) = match (atlas_program, r.target.trim().is_empty()) {
                (Some(_), false) => {
                    problems.push(format!("{place}: give target or atlas, not both"));
                    (None, None)
                }
                (Some(program), true) => match crate::atlas::parse(program, None) {
                    Ok(exprs) => (None, Some(exprs)),
                    Err(e) => {
                        problems.push(format!("{place}.atlas: {e}"));
                        (None, None)
                    }
                },
                (None, _) => match parse(&r.target) {
                    Ok(e) => (Some(e), None),
                    Err(e) => {
                        problems.push(format!("{place}.target: {e}"));
                        (None, None)
                    }
                },
            };
            let signal =
                atlas.is_some() && r.warn.is_none() && r.crit.is_none() && r.absent_for.is_none();
            let reduce = r
                .reduce
                .as_deref()
                .map_or(Some(Reduce::Last), Reduce::parse)
                .unwrap_or_else(|| {
                    problems.push(format!(
                        "{place}.reduce: \"{}\" is not last, avg, max, min or sum",
                        r.reduce.as_deref().unwrap_or("")
                    ));
                    Reduce::Last
                });
            let op =
                r.op.as_deref()
                    .map_or(Some(Op::Gt), Op::parse)
                    .unwrap_or_else(|| {
                        problems.push(format!(
                            "{place}.op: \"{}\" is not >, >=, < or <=",
                            r.op.as_deref().unwrap_or("")
                        ));
                        Op::Gt
                    });
            let policy = |key: &str, v: Option<&str>, problems: &mut Vec<String>| {
                v.map_or(Some(Policy::Alert), Policy::parse)
                    .unwrap_or_else(|| {
                        problems.push(format!(
                            "{place}.{key}: \"{}\" is not alert, keep or ok",
                            v.unwrap_or("")
                        ));
                        Policy::Alert
                    })
            };
            // An absence rule with no series at all has nothing that used to report: ok.
            let nodata = match (&r.absent_for, &r.nodata) {
                (Some(_), None) => Policy::Ok,
                _ => policy("nodata", r.nodata.as_deref(), &mut problems),
            };
            let on_error = policy("on_error", r.on_error.as_deref(), &mut problems);
            let absent = r.absent_for.as_ref().map(|a| {
                let absent_for = secs(&format!("{place}.absent_for"), Some(a), 300, &mut problems);
                let lookback = secs(
                    &format!("{place}.lookback"),
                    r.lookback.as_ref(),
                    86400,
                    &mut problems,
                );
                if lookback <= absent_for {
                    problems.push(format!("{place}.lookback: must be longer than absent_for"));
                }
                Absence {
                    absent_for,
                    lookback,
                }
            });
            if absent.is_none()
                && r.warn.is_none()
                && r.crit.is_none()
                && !signal
                && atlas_program.is_none()
            {
                problems.push(format!(
                    "{place}: needs warn, crit (or both), or absent_for"
                ));
            }
            if let (Some(w), Some(c)) = (r.warn, r.crit) {
                // The critical threshold must be the stricter one in the rule's direction.
                if op.holds(w, c) && w != c {
                    problems.push(format!(
                        "{place}: crit {c} is less severe than warn {w} for op \"{}\"",
                        op.as_str()
                    ));
                }
            }
            for (key, v) in [("warn", r.warn), ("crit", r.crit), ("recover", r.recover)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    problems.push(format!("{place}.{key}: not a finite number"));
                }
            }
            for k in r.labels.keys() {
                if k.is_empty()
                    || k.starts_with("__")
                    || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    problems.push(format!("{place}.labels: \"{k}\" is not a label name"));
                }
            }
            let window = secs(
                &format!("{place}.window"),
                r.window.as_ref(),
                300,
                &mut problems,
            );
            if window <= 0 {
                problems.push(format!("{place}.window: must be more than 0"));
            }
            let rule = Rule {
                name: r.name.clone(),
                target: atlas_program.map_or_else(|| r.target.clone(), str::to_owned),
                expr: expr.unwrap_or(Expr::Number {
                    value: 0.0,
                    int: true,
                }),
                atlas,
                signal,
                window,
                reduce,
                op,
                warn: r.warn,
                // A signal fires critical while non-zero.
                crit: if signal { Some(0.0) } else { r.crit },
                recover: r.recover,
                for_: secs(&format!("{place}.for"), r.for_.as_ref(), 0, &mut problems),
                keep_firing_for: secs(
                    &format!("{place}.keep_firing_for"),
                    r.keep_firing_for.as_ref(),
                    0,
                    &mut problems,
                ),
                interval: secs(
                    &format!("{place}.interval"),
                    r.interval.as_ref(),
                    default_interval,
                    &mut problems,
                )
                .max(1),
                nodata,
                on_error,
                absent,
                labels: r.labels.clone(),
                summary: r.summary.clone().unwrap_or_else(|| {
                    if absent.is_some() {
                        "{{rule}}: {{series}} has not reported for {{value}} s".into()
                    } else {
                        "{{rule}}: {{series}} is {{value}} ({{level}} threshold {{threshold}})"
                            .into()
                    }
                }),
                runbook_url: r.runbook_url.clone(),
                annotations: r.annotations.clone(),
            };
            out.push(rule);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Alerting {
            external_url: f
                .external_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8080".into())
                .trim_end_matches('/')
                .to_string(),
            resend_interval,
            resolved_resend_for,
            notifiers,
            rules: out,
        })
    }
}

/// Fills `{{...}}` placeholders from `vars` (unknown ones are left as they are).
pub fn render_template(t: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let key = after[..close].trim();
                match vars(key) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[open..open + 2 + close + 2]),
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A readable number: integers without a fraction, others with up to 6 significant digits.
pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = r#"
interval = "fast"
[[notify]]
kind = "pager"
[[notify]]
kind = "pagerduty"
[[rule]]
name = "a b"
target = "sumSeries("
reduce = "median"
op = "=>"
nodata = "maybe"
[[rule]]
name = "ok"
target = "x"
warn = 10
crit = 5
"#;
        let err = Alerting::parse(text).expect_err("invalid").join("\n");
        for want in [
            "interval: \"fast\"",
            "notify[0].kind: \"pager\"",
            "notify[1].routing_key",
            "rule[0] (\"a b\").name",
            "rule[0] (\"a b\").target",
            "\"median\"",
            "\"=>\"",
            "nodata: \"maybe\"",
            "rule[0] (\"a b\"): needs warn, crit",
            "crit 5 is less severe than warn 10",
        ] {
            assert!(err.contains(want), "{want} missing from:\n{err}");
        }
        assert!(
            Alerting::parse("[[rule]]\nname=\"x\"\ntarget=\"a\"\ncrit=1\nbogus=2\n").is_err(),
            "unknown keys are errors"
        );
    }

    #[test]
    fn every_unknown_key_is_reported_at_once() {
        let e = Alerting::parse(
            "extrnal_url = \"x\"\n[[notify]]\nkind = \"console\"\nurll = \"y\"\n\
             [[rule]]\nname=\"x\"\ntarget=\"a\"\ncrit=1\nbogus=2\nwindow = \"1m\"\n",
        )
        .expect_err("unknown keys");
        assert_eq!(
            e,
            [
                "unknown key \"extrnal_url\"",
                "unknown key \"notify.0.urll\"",
                "unknown key \"rule.0.bogus\""
            ],
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let main = dir.path().join("alerts.toml");
        std::fs::write(
            &main,
            "include = [\"more/*.toml\"]\nresend_intervl = \"1m\"\n",
        )
        .expect("write");
        std::fs::create_dir(dir.path().join("more")).expect("mkdir");
        let more = dir.path().join("more/a.toml");
        std::fs::write(
            &more,
            "[[rule]]\nname=\"x\"\ntarget=\"a\"\ncrit=1\nfor_=\"1m\"\n",
        )
        .expect("write");
        let e = Alerting::load(&main).expect_err("unknown keys");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with(&main.display().to_string()) && e[0].contains("resend_intervl"));
        std::fs::write(&main, "include = [\"more/*.toml\"]\n").expect("write");
        let e = Alerting::load(&main).expect_err("unknown key in an include");
        assert_eq!(
            e,
            [format!("{}: unknown key \"rule.0.for_\"", more.display())]
        );
    }

    #[test]
    fn notifiers_are_known_by_what_they_send_to_not_by_place() {
        let a = Alerting::parse(
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/x/\"\n\
             [[notify]]\nkind = \"pagerduty\"\nrouting_key = \"K\"\n\
             [[notify]]\nkind = \"webhook\"\nurl = \"http://h/x\"\nrules = [\"A\"]\n\
             [[notify]]\nkind = \"console\"\n",
        )
        .expect("valid");
        let ids: Vec<&str> = a.notifiers.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "webhook http://h/x",
                "pagerduty https://events.pagerduty.com/v2/enqueue K",
                "webhook http://h/x #2",
                "console"
            ]
        );
        assert_eq!(
            a.notifier("webhook http://h/x #2").map(|n| n.rules.len()),
            Some(1)
        );
        assert!(a.notifier("webhook http://h/y").is_none());
    }

    /// Issue 17: a notifier over https can trust its own CA and present a client
    /// certificate; files that do not load, or TLS files on an http url, are problems at load.
    #[test]
    fn notifier_tls_files_are_checked_when_the_file_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing-ca.pem");
        let half = dir.path().join("client.pem");
        std::fs::write(&half, "not a pem").expect("write");
        let text = format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://h/x\"\nca_file = \"{m}\"\n\
             [[notify]]\nkind = \"alertmanager\"\nurl = \"https://am:9093\"\nca_file = \"{m}\"\n\
             [[notify]]\nkind = \"pagerduty\"\nrouting_key = \"K\"\nclient_cert = \"{h}\"\n",
            m = missing.display(),
            h = half.display()
        );
        let problems = Alerting::parse(&text).expect_err("bad TLS files");
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert_eq!(
            problems[0],
            "notify[0]: ca_file, client_cert and client_key are for an https url"
        );
        assert!(
            problems[1].starts_with("notify[1]: ")
                && problems[1].contains(&missing.display().to_string()),
            "{problems:#?}"
        );
        assert_eq!(
            problems[2],
            "notify[2]: notify[2].client_cert needs notify[2].client_key"
        );
        let ok = Alerting::parse("[[notify]]\nkind = \"webhook\"\nurl = \"https://h/x\"\n")
            .expect("no files: the public roots");
        assert!(!ok.notifiers[0].tls.is_set());
    }

    #[test]
    fn reductions_never_turn_nulls_into_zero() {
        let v = [None, Some(3.0), None, Some(1.0), None];
        assert_eq!(Reduce::Last.apply(&v), Some(1.0));
        assert_eq!(Reduce::Avg.apply(&v), Some(2.0));
        assert_eq!(Reduce::Max.apply(&v), Some(3.0));
        assert_eq!(Reduce::Min.apply(&v), Some(1.0));
        assert_eq!(Reduce::Sum.apply(&v), Some(4.0));
        for r in [
            Reduce::Last,
            Reduce::Avg,
            Reduce::Max,
            Reduce::Min,
            Reduce::Sum,
        ] {
            assert_eq!(r.apply(&[None, None]), None);
            assert_eq!(r.apply(&[]), None);
        }
    }

    #[test]
    fn templates() {
        let vars = |k: &str| match k {
            "value" => Some("42".to_string()),
            "tags.source" => Some("cdn_fastly".to_string()),
            _ => None,
        };
        assert_eq!(
            render_template("{{ value }} from {{tags.source}} {{nope}} {{", &vars),
            "42 from cdn_fastly {{nope}} {{"
        );
        assert_eq!(fmt_value(42.0), "42");
        assert_eq!(fmt_value(0.125), "0.125");
        assert_eq!(fmt_value(1.0 / 3.0), "0.333333");
    }
}
