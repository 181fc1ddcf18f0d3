//! Issue 17: one page and one resolve per incident, nothing else. A scripted incident goes through
//! the real `tally store`: a level change and back, a label edit, then ok. A real Alertmanager
//! 0.25 pages a recorder (a [`Catcher`](crate::catcher::Catcher) on a loopback port, its webhook
//! receiver with `send_resolved`), and the store's PagerDuty and webhook notifiers post to the
//! same recorder. Alertmanager groups each alert alone and repeats only after an hour, so every
//! notification the recorder gets is one Tally caused.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::alertmanager::Alertmanager;
use crate::catcher::Catcher;
use crate::proc::{ingest, unix_now, StoreProc};

/// The alerting file: Alertmanager, PagerDuty and a webhook; one rule on `test.value` (warning
/// above 20, critical above 50) with the label `team`. Re-sends every 3 s, so a stale resolve
/// would reach Alertmanager several times within each pause of the script.
fn rules(am: &Alertmanager, hook: &Catcher, team: &str) -> String {
    format!(
        r#"resend_interval = "3s"
resolved_resend_for = "1m"
[[notify]]
kind = "alertmanager"
url = "{am}"
[[notify]]
kind = "pagerduty"
url = "{pd}"
routing_key = "R0UT1NGK3Y"
[[notify]]
kind = "webhook"
url = "{wh}"
[[rule]]
name = "HighValue"
target = "test.value"
window = "1m"
reduce = "last"
warn = 20
crit = 50
interval = "1s"
nodata = "keep"
labels = {{ team = "{team}" }}
"#,
        am = am.url,
        pd = hook.url("/pd"),
        wh = hook.url("/hook"),
    )
}

/// Every alert in every notification Alertmanager sent, as (`severity/team`, status), in order.
fn am_log(hook: &Catcher) -> Vec<(String, String)> {
    am_flatten(&hook.bodies("/am"))
}

fn am_flatten(bodies: &[Value]) -> Vec<(String, String)> {
    bodies
        .iter()
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            let l = &a["labels"];
            (
                format!(
                    "{}/{}",
                    l["severity"].as_str().unwrap_or("-"),
                    l["team"].as_str().unwrap_or("-")
                ),
                a["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The statuses Alertmanager sent for the alert `name` (`severity/team`), in order.
fn statuses_of(log: &[(String, String)], name: &str) -> Vec<String> {
    log.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, s)| s.clone())
        .collect()
}

/// Waits until Alertmanager has sent exactly `want` for each alert named.
fn wait_am(hook: &Catcher, what: &str, want: &[(&str, &[&str])]) {
    hook.wait("/am", 40, what, |b| {
        let log = am_flatten(b);
        want.iter()
            .all(|(name, statuses)| statuses_of(&log, name) == *statuses)
    });
}

fn set_value(store: &StoreProc, v: f64) {
    // One point a second at most: the next one must not land on the same timestamp.
    std::thread::sleep(Duration::from_millis(1100));
    ingest(
        &store.http.to_string(),
        &format!("test.value {v} {}\n", unix_now()),
    );
}

fn reload(store: &StoreProc) {
    let r = reqwest::blocking::Client::new()
        .post(store.url("/api/v1/alerts/reload"))
        .send()
        .expect("reload");
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

fn tally_says(store: &StoreProc) -> Vec<(String, String)> {
    let v: Value = reqwest::blocking::get(store.url("/api/v1/alerts"))
        .expect("api")
        .json()
        .expect("json");
    v["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["state"].as_str().unwrap_or("").to_string(),
                a["labels"]["severity"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("alerts file");
}

#[test]
fn issue_17_one_firing_and_one_resolved_per_incident_through_alertmanager_pagerduty_and_webhooks() {
    let hook = Catcher::start(vec![]);
    let am = Alertmanager::start_grouped(&hook.url("/am"), "['...']");
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let alerts = d.join("alerts.toml");
    write(&alerts, &rules(&am, &hook, "web"));
    // Second-resolution storage: each new value is its own point.
    let store = StoreProc::start_with_config(
        d,
        &format!(
            "default_retentions = \"1s:1d\"\nself_metrics_interval = \"0s\"\n[query]\nalerts = \"{}\"\n",
            alerts.display()
        ),
    );
    let (fire, res): (&[&str], &[&str]) = (&["firing"], &["firing", "resolved"]);

    set_value(&store, 60.0);
    wait_am(&hook, "critical firing", &[("critical/web", fire)]);
    set_value(&store, 30.0);
    wait_am(
        &hook,
        "critical resolved, warning firing",
        &[("critical/web", res), ("warning/web", fire)],
    );
    set_value(&store, 60.0);
    let again: &[&str] = &["firing", "resolved", "firing"];
    wait_am(
        &hook,
        "warning resolved, critical firing again",
        &[("critical/web", again), ("warning/web", res)],
    );
    // Several re-sends while critical: the resolve of the first critical alert must not come
    // back (it did, every re-send, resolving the alert that fires).
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        tally_says(&store),
        [("firing".to_string(), "critical".to_string())]
    );

    // The rule's labels change while it fires: the old alert ends, one under the new fires.
    write(&alerts, &rules(&am, &hook, "ops"));
    reload(&store);
    let twice: &[&str] = &["firing", "resolved", "firing", "resolved"];
    wait_am(
        &hook,
        "the web alert resolved, the ops one firing",
        &[("critical/web", twice), ("critical/ops", fire)],
    );
    std::thread::sleep(Duration::from_secs(7));
    set_value(&store, 1.0);
    wait_am(&hook, "the ops alert resolved", &[("critical/ops", res)]);
    // Re-sends of every resolve go on for a minute: none may page.
    std::thread::sleep(Duration::from_secs(10));

    let log = am_log(&hook);
    assert_eq!(log.len(), 8, "nothing else: {log:#?}");
    for (name, want) in [
        ("critical/web", twice),
        ("warning/web", res),
        ("critical/ops", res),
    ] {
        assert_eq!(statuses_of(&log, name), want, "{name}: {log:#?}");
    }

    // PagerDuty: one incident under the old labels (its level changes are triggers of the same
    // key, which PagerDuty folds into it), resolved at the edit; one under the new labels.
    let pd: Vec<(String, String)> = hook
        .bodies("/pd")
        .iter()
        .map(|b| {
            (
                b["event_action"].as_str().unwrap_or("").to_string(),
                b["dedup_key"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(pd.len(), 6, "{pd:#?}");
    let (web, ops) = (&pd[0].1, &pd[4].1);
    assert_ne!(web, ops);
    let want: Vec<(String, String)> = [
        ("trigger", web),
        ("trigger", web),
        ("trigger", web),
        ("resolve", web),
        ("trigger", ops),
        ("resolve", ops),
    ]
    .iter()
    .map(|(a, k)| (a.to_string(), k.to_string()))
    .collect();
    assert_eq!(pd, want);

    // The webhook: one document per state change, the edit's resolve under the old labels;
    // between them, re-sends (every 3 s) that repeat the state change before them, never a
    // level or labels that are not current, and none after a resolve.
    let bodies = hook.bodies("/hook");
    let mut last: Option<&Value> = None;
    let mut resends = 0;
    for b in &bodies {
        if b["resend"] == true {
            resends += 1;
            let before = last.expect("a re-send before any trigger");
            assert_eq!(before["state"], "firing", "a re-send after a resolve: {b}");
            for field in ["level", "dedup_key", "labels"] {
                assert_eq!(b[field], before[field], "re-send {b} of {before}");
            }
        } else {
            last = Some(b);
        }
    }
    assert!(resends >= 1, "no re-send in {bodies:#?}");
    let hooks: Vec<String> = bodies
        .iter()
        .filter(|b| b["resend"] != true)
        .map(|b| {
            format!(
                "{} {} {} {}",
                b["state"].as_str().unwrap_or(""),
                b["level"].as_str().unwrap_or(""),
                b["labels"]["team"].as_str().unwrap_or(""),
                b["reason"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [
            "firing critical web -",
            "firing warning web -",
            "firing critical web -",
            "resolved critical web labels changed",
            "firing critical ops -",
            "resolved critical ops -",
        ]
    );
}
