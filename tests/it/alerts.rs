//! Alerting end to end: the real `tally store` evaluating rules, a real Alertmanager 0.25,
//! PagerDuty and webhook payloads at a local catcher, `tally check` as a Nagios plugin, and
//! `tally rules test` over stored history.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::alertmanager::Alertmanager;
use crate::catcher::Catcher;
use crate::proc::{free_port, ingest, unix_now, StoreProc};

fn write_rules(dir: &Path, text: &str) -> String {
    let p = dir.join("alerts.toml");
    std::fs::write(&p, text).expect("alerts file");
    p.to_string_lossy().into_owned()
}

fn statuses(bodies: &[Value], status: &str) -> usize {
    bodies.iter().filter(|b| b["status"] == status).count()
}

#[test]
fn issue_6_alertmanager_pages_once_resolves_and_a_restart_does_not_page_again() {
    let hook = Catcher::start(vec![]);
    let am = Alertmanager::start(&hook.url("/hook"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let rules = write_rules(
        tmp.path(),
        &format!(
            r#"resend_interval = "2s"
resolved_resend_for = "1m"
[[notify]]
kind = "alertmanager"
url = "{}"
[[rule]]
name = "HighValue"
target = "test.value"
window = "20s"
reduce = "last"
crit = 50
interval = "1s"
nodata = "keep"
labels = {{ team = "web" }}
summary = "value {{{{value}}}} above {{{{threshold}}}}"
"#,
            am.url
        ),
    );
    let http = format!("127.0.0.1:{}", free_port());
    let data = tmp.path().join("data");
    let mut store = StoreProc::start_on(&data, &http, &["--alerts", &rules]);
    ingest(&http, &format!("test.value 60 {}\n", unix_now()));
    let got = hook.wait("/hook", 30, "a firing notification", |b| {
        statuses(b, "firing") >= 1
    });
    let a = &got[0]["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "HighValue");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["team"], "web");
    assert_eq!(a["annotations"]["summary"], "value 60 above 50");
    assert!(a["generatorURL"]
        .as_str()
        .unwrap_or("")
        .contains("/render?target=test.value"));

    // A restart: the store keeps sending the same alert (same labels, same startsAt), and
    // Alertmanager must see nothing new to page about.
    store.terminate();
    let store = StoreProc::start_on(&data, &http, &["--alerts", &rules]);
    std::thread::sleep(Duration::from_secs(6));
    let alerts: Value = reqwest::blocking::get(store.url("/api/v1/alerts"))
        .expect("api")
        .json_or_panic();
    assert_eq!(
        alerts["alerts"][0]["state"], "firing",
        "firing survives the restart: {alerts}"
    );
    assert_eq!(
        statuses(&hook.bodies("/hook"), "firing"),
        1,
        "paged again after a restart: {:#?}",
        hook.bodies("/hook")
    );

    std::thread::sleep(Duration::from_millis(1100));
    ingest(&http, &format!("test.value 1 {}\n", unix_now()));
    let got = hook.wait("/hook", 30, "a resolved notification", |b| {
        statuses(b, "resolved") >= 1
    });
    assert_eq!(statuses(&got, "firing"), 1);
    let resolved = got
        .iter()
        .find(|b| b["status"] == "resolved")
        .expect("resolved");
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
}

trait JsonOrPanic {
    fn json_or_panic(self) -> Value;
}

impl JsonOrPanic for reqwest::blocking::Response {
    fn json_or_panic(self) -> Value {
        let text = self.text().expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

#[test]
fn issue_6_pagerduty_and_webhook_payloads_with_retries() {
    // PagerDuty answers 429 then 500 before accepting; the webhook fails once.
    let c = Catcher::start(vec![("/pd", vec![429, 500]), ("/hook", vec![503])]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let rules = write_rules(
        tmp.path(),
        &format!(
            r#"external_url = "http://tally.example:8080"
[[notify]]
kind = "pagerduty"
url = "{pd}"
routing_key = "R0UT1NGK3Y"
[[notify]]
kind = "webhook"
url = "{hook}"
[[rule]]
name = "Beacons"
target = "seriesByTag('name=beacons')"
window = "20s"
reduce = "max"
warn = 5
crit = 10
interval = "1s"
nodata = "keep"
runbook_url = "https://runbooks.example/beacons"
"#,
            pd = c.url("/pd"),
            hook = c.url("/hook")
        ),
    );
    let store = StoreProc::start_on(
        &tmp.path().join("data"),
        &format!("127.0.0.1:{}", free_port()),
        &["--alerts", &rules],
    );
    let http = store.http.to_string();
    ingest(
        &http,
        &format!("beacons;source=cdn_fastly 42 {}\n", unix_now()),
    );
    let pd = c.wait("/pd", 30, "a PagerDuty trigger after retries", |b| {
        b.len() >= 3
    });
    assert_eq!(pd[0], pd[2], "the same event is retried");
    let t = &pd[2];
    assert_eq!(t["routing_key"], "R0UT1NGK3Y");
    assert_eq!(t["event_action"], "trigger");
    let dedup = t["dedup_key"].as_str().expect("dedup_key").to_string();
    assert_eq!(dedup, "tally:Beacons:beacons;source=cdn_fastly");
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(t["payload"]["source"], "tally");
    assert_eq!(t["payload"]["custom_details"]["value"], 42.0);
    assert_eq!(t["payload"]["custom_details"]["threshold"], 10.0);
    assert!(t["payload"]["timestamp"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    assert!(t["links"][0]["href"]
        .as_str()
        .unwrap_or("")
        .starts_with("http://tally.example:8080/render?target="));
    let hooks = c.wait("/hook", 30, "a webhook after a retry", |b| b.len() >= 2);
    let h = &hooks[1];
    assert_eq!(h["rule"], "Beacons");
    assert_eq!(h["series"], "beacons;source=cdn_fastly");
    assert_eq!(h["state"], "firing");
    assert_eq!(h["previous_state"], "ok");
    assert_eq!(h["level"], "critical");
    assert_eq!(h["value"], 42.0);
    assert_eq!(h["threshold"], 10.0);
    assert_eq!(h["labels"]["source"], "cdn_fastly");
    assert_eq!(h["labels"]["metric"], "beacons");
    assert_eq!(
        h["annotations"]["runbook_url"],
        "https://runbooks.example/beacons"
    );
    assert!(h["graph_url"].as_str().unwrap_or("").contains("format=svg"));

    std::thread::sleep(Duration::from_millis(1100));
    ingest(
        &http,
        &format!("beacons;source=cdn_fastly 0 {}\n", unix_now()),
    );
    let pd = c.wait("/pd", 30, "a PagerDuty resolve", |b| {
        b.iter().any(|e| e["event_action"] == "resolve")
    });
    let r = pd
        .iter()
        .find(|e| e["event_action"] == "resolve")
        .expect("resolve");
    assert_eq!(
        r["dedup_key"],
        dedup.as_str(),
        "resolve reuses the trigger's dedup_key"
    );
    assert_eq!(r["routing_key"], "R0UT1NGK3Y");
    let hooks = c.wait("/hook", 30, "a resolved webhook", |b| {
        b.iter().any(|e| e["state"] == "resolved")
    });
    assert!(hooks
        .iter()
        .any(|e| e["state"] == "resolved" && e["previous_state"] == "firing"));
    let n: Value = reqwest::blocking::get(store.url("/api/v1/alerts/notifiers"))
        .expect("api")
        .json_or_panic();
    assert_eq!(n["notifiers"][0]["kind"], "pagerduty");
    assert_eq!(n["notifiers"][0]["failed_attempts"], 2, "{n}");
    assert_eq!(n["notifiers"][1]["failed_attempts"], 1, "{n}");
    assert_eq!(n["notifiers"][0]["pending"], 0, "{n}");
}

fn check(http: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "check",
            "--url",
            &format!("http://{http}"),
            "--label",
            "beacons",
        ])
        .args(args)
        .output()
        .expect("tally check runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn issue_6_nagios_check_exit_codes_and_output_for_every_range_form() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start(&tmp.path().join("data"), &[]);
    let http = store.http.to_string();
    let now = unix_now();
    ingest(
        &http,
        &format!(
            "cdn.fastly 40 {}\ncdn.fastly 42 {}\ncdn.old 1 {}\n",
            now - 20,
            now - 10,
            now - 7200
        ),
    );
    let t = [
        "--target",
        "cdn.fastly",
        "--window",
        "5m",
        "--reduce",
        "last",
    ];
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["-w", "50", "-c", "100"],
            0,
            "BEACONS OK - cdn.fastly=42 | 'cdn.fastly'=42;50;100;;",
        ),
        (
            &["-w", "10", "-c", "100"],
            1,
            "BEACONS WARNING - cdn.fastly=42 | 'cdn.fastly'=42;10;100;;",
        ),
        (
            &["-w", "50:", "-c", "45:"],
            2,
            "BEACONS CRITICAL - cdn.fastly=42 | 'cdn.fastly'=42;50:;45:;;",
        ),
        (
            &["-w", "~:40", "-c", "~:100"],
            1,
            "BEACONS WARNING - cdn.fastly=42 | 'cdn.fastly'=42;~:40;~:100;;",
        ),
        (
            &["-w", "30:50", "-c", "0:60"],
            0,
            "BEACONS OK - cdn.fastly=42 | 'cdn.fastly'=42;30:50;0:60;;",
        ),
        (
            &["-w", "@40:50", "-c", "@0:10"],
            1,
            "BEACONS WARNING - cdn.fastly=42 | 'cdn.fastly'=42;@40:50;@0:10;;",
        ),
        (
            &["--warn", "40", "--crit", "42"],
            2,
            "BEACONS CRITICAL - cdn.fastly=42 | 'cdn.fastly'=42;~:40;~:42;;",
        ),
        // Critical below warning: low is bad.
        (
            &["--warn", "50", "--crit", "10"],
            1,
            "BEACONS WARNING - cdn.fastly=42 | 'cdn.fastly'=42;50:;10:;;",
        ),
    ];
    for (args, code, line) in cases {
        let mut all: Vec<&str> = t.to_vec();
        all.extend_from_slice(args);
        let got = check(&http, &all);
        assert_eq!(got.0, *code, "{args:?}: {}", got.1);
        assert_eq!(got.1, *line, "{args:?}");
    }
    // An all-null window is UNKNOWN, never 0; OK only when asked.
    let null = ["--target", "cdn.old", "--window", "5m", "-c", "10"];
    assert_eq!(
        check(&http, &null),
        (3, "BEACONS UNKNOWN - cdn.old=no data".to_string())
    );
    let mut ok = null.to_vec();
    ok.push("--nodata-ok");
    assert_eq!(check(&http, &ok).0, 0);
    // Bad arguments and an unreachable store are UNKNOWN too.
    assert_eq!(check(&http, &["--target", "cdn.fastly", "-c", "5:1"]).0, 3);
    assert_eq!(
        check(&http, &["--target", "cdn.fastly"]).0,
        3,
        "no thresholds"
    );
    assert_eq!(check(&http, &["--bogus"]).0, 3);
    let down = format!("127.0.0.1:{}", free_port());
    let (code, line) = check(&down, &["--target", "x", "-c", "1"]);
    assert_eq!(code, 3, "{line}");
    assert!(line.starts_with("BEACONS UNKNOWN - "), "{line}");
}

#[test]
fn issue_6_rules_test_replays_stored_history() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start(&tmp.path().join("data"), &[]);
    let http = store.http.to_string();
    let now = unix_now() / 10 * 10;
    // 30 minutes at 10 s: quiet, a 5-minute spike 20 minutes ago, quiet again.
    let mut text = String::new();
    for i in 0..180 {
        let t = now - 1800 + i * 10;
        let v = if (now - 1200..now - 900).contains(&t) {
            80
        } else {
            2
        };
        text.push_str(&format!("beacons;source=cdn_fastly {v} {t}\n"));
    }
    ingest(&http, &text);
    let rules = write_rules(
        tmp.path(),
        "[[rule]]\nname = \"Spike\"\ntarget = \"seriesByTag('name=beacons')\"\nwindow = \"1m\"\nreduce = \"avg\"\ncrit = 50\nfor = \"1m\"\ninterval = \"1m\"\n\n[[rule]]\nname = \"AtlasSpike\"\natlas = \"name,beacons,:eq,:sum,50,:gt,2,:rolling-count,2,:ge\"\nwindow = \"3m\"\ninterval = \"1m\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args([
            "rules",
            "test",
            "--alerts",
            &rules,
            "--url",
            &format!("http://{http}"),
            "--from=-30min",
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Spike: 1 series, 2 state changes"),
        "{text}"
    );
    assert!(
        lines[1].contains("FIRING   critical beacons;source=cdn_fastly  value=80"),
        "{text}"
    );
    assert!(
        lines[2].contains("RESOLVED critical beacons;source=cdn_fastly  value=2"),
        "{text}"
    );
    // The Atlas rule, each window evaluated afresh over /api/v1/graph: its line fires once the
    // spike has held for two minutes and resolves once it is gone.
    assert!(
        lines[3].starts_with("AtlasSpike: 1 lines, 2 state changes"),
        "{text}"
    );
    assert!(
        lines[4].contains("FIRING   critical name=beacons  value=1"),
        "{text}"
    );
    assert!(
        lines[5].contains("RESOLVED critical name=beacons  value=0"),
        "{text}"
    );
}

/// The scenario Tally exists for: failure-beacon lines appended to an access log go through the
/// agent and the store, a rule on `sumSeries` over the beacon series fires at Alertmanager, and
/// when the lines stop it resolves.
#[test]
fn issue_6_failure_beacons_in_an_access_log_page_through_alertmanager_and_resolve() {
    use std::io::Write;
    let hook = Catcher::start(vec![]);
    let am = Alertmanager::start(&hook.url("/hook"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let rules = write_rules(
        d,
        &format!(
            r#"resend_interval = "5s"
[[notify]]
kind = "alertmanager"
url = "{}"
[[rule]]
name = "BeaconFailures"
target = "sumSeries(seriesByTag('name=beacons'))"
window = "10s"
reduce = "sum"
crit = 20
interval = "1s"
nodata = "ok"
summary = "{{{{value}}}} failure beacons in 10 s"
"#,
            am.url
        ),
    );
    // Second-resolution storage and buckets keep the test short.
    let store_cfg = d.join("store.toml");
    std::fs::write(
        &store_cfg,
        format!("default_retentions = \"1s:1d\"\n[query]\nalerts = \"{rules}\"\n"),
    )
    .expect("store config");
    let store = StoreProc::start(&d.join("data"), &["--config", &store_cfg.to_string_lossy()]);
    let log = d.join("access.log");
    std::fs::write(&log, "").expect("log");
    let agent_cfg = d.join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "host = \"web1\"\ndata_dir = \"{}\"\ninterval = \"1s\"\ncommit_interval = \"200ms\"\npoll_interval = \"100ms\"\n\
             [[input]]\npaths = [\"{}\"]\n[output]\nurl = \"http://{}\"\n",
            d.join("agent").display(),
            log.display(),
            store.http
        ),
    )
    .expect("agent config");
    let _agent = crate::proc::AgentProc::start(&agent_cfg);
    // Ten seconds of an incident: 5 beacons a second from one CDN, among normal requests.
    let line = |path: &str| {
        let t = chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000");
        format!("203.0.113.9 - - [{t}] \"GET {path} HTTP/1.1\" 200 43 \"-\" \"Mozilla/5.0\" vhost=www.example.com cdn=fastly rt=0.002\n")
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    for _ in 0..50 {
        for _ in 0..5 {
            f.write_all(
                line("/status/images/beacon.gif?source=cdn_fastly&server_identity=cache-ny57-NYC")
                    .as_bytes(),
            )
            .expect("write");
        }
        f.write_all(line("/listing/123/mug").as_bytes())
            .expect("write");
        std::thread::sleep(Duration::from_millis(200));
        if statuses(&hook.bodies("/hook"), "firing") > 0 {
            break;
        }
    }
    let got = hook.wait("/hook", 30, "the beacon alert firing", |b| {
        statuses(b, "firing") >= 1
    });
    let a = &got[0]["alerts"][0];
    assert_eq!(a["labels"]["alertname"], "BeaconFailures");
    assert_eq!(a["labels"]["severity"], "critical");
    // The lines stop (only normal traffic now): the sum falls to 0 and the alert resolves.
    for _ in 0..150 {
        f.write_all(line("/listing/123/mug").as_bytes())
            .expect("write");
        std::thread::sleep(Duration::from_millis(200));
        if statuses(&hook.bodies("/hook"), "resolved") > 0 {
            break;
        }
    }
    let got = hook.wait("/hook", 30, "the beacon alert resolved", |b| {
        statuses(b, "resolved") >= 1
    });
    assert_eq!(
        statuses(&got, "firing"),
        1,
        "one page for one incident: {got:#?}"
    );
}

#[test]
fn issue_6_rules_reload_on_sighup_and_api_and_silences_over_http() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // No data is ok here: a rule firing at once prints its console line, which can reach stdout
    // before the store's address line that StoreProc reads (the engine starts first).
    let one =
        "[[rule]]\nname = \"A\"\ntarget = \"a.b\"\ncrit = 1\ninterval = \"1s\"\nnodata = \"ok\"\n";
    let rules = write_rules(tmp.path(), one);
    let store = StoreProc::start(&tmp.path().join("data"), &["--alerts", &rules]);
    let names = |store: &StoreProc| -> Vec<String> {
        let v: Value = reqwest::blocking::get(store.url("/api/v1/alerts/rules"))
            .expect("api")
            .json_or_panic();
        v["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(names(&store), vec!["A"]);
    std::fs::write(
        &rules,
        format!("{one}[[rule]]\nname = \"B\"\ntarget = \"a.c\"\nwarn = 5\n"),
    )
    .expect("write");
    #[allow(unsafe_code)]
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(store.child.id() as libc::pid_t, libc::SIGHUP);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while names(&store) != vec!["A", "B"] {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload: {:?}",
            names(&store)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken file: the API reports every problem and the old rules stay.
    std::fs::write(&rules, "[[rule]]\nname = \"C\"\ntarget = \"sumSeries(\"\n").expect("write");
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(store.url("/api/v1/alerts/reload"))
        .send()
        .expect("reload");
    assert_eq!(r.status(), 400);
    let body = r.text().expect("body");
    assert!(
        body.contains("target") && body.contains("needs warn, crit"),
        "{body}"
    );
    assert_eq!(names(&store), vec!["A", "B"]);
    std::fs::write(&rules, one).expect("write");
    let r = client
        .post(store.url("/api/v1/alerts/reload"))
        .send()
        .expect("reload");
    assert_eq!(r.text().expect("body"), r#"{"rules":1}"#);
    // Silences over HTTP.
    let r = client
        .post(store.url("/api/v1/alerts/silences"))
        .body(r#"{"rule":"A","duration":"1h","comment":"maintenance"}"#)
        .send()
        .expect("silence");
    assert_eq!(r.status(), 200);
    let s: Value = r.json_or_panic();
    let id = s["id"].as_u64().expect("id");
    let list: Value = reqwest::blocking::get(store.url("/api/v1/alerts/silences"))
        .expect("list")
        .json_or_panic();
    assert_eq!(list["silences"][0]["comment"], "maintenance");
    let bad = client
        .post(store.url("/api/v1/alerts/silences"))
        .body(r#"{"rule":"Nope","duration":"1h"}"#)
        .send()
        .expect("silence");
    assert_eq!(bad.status(), 400);
    let del = client
        .delete(store.url(&format!("/api/v1/alerts/silences/{id}")))
        .send()
        .expect("delete");
    assert_eq!(del.status(), 204);
}

/// The label sets of the alerts Alertmanager holds as active (its API leaves out alerts whose
/// `endsAt` has passed, that is the resolved ones).
fn am_active(am: &Alertmanager) -> Vec<Value> {
    let v: Value = reqwest::blocking::get(format!("{}/api/v2/alerts", am.url))
        .expect("alertmanager api")
        .json_or_panic();
    v.as_array()
        .expect("a list of alerts")
        .iter()
        .map(|a| a["labels"].clone())
        .collect()
}

/// Waits until `ok` holds for Alertmanager's active label sets; panics with them after `secs`.
fn am_wait(am: &Alertmanager, secs: u64, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let active = am_active(am);
        if ok(&active) {
            return active;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited {secs} s for {what}; Alertmanager holds {active:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The alerting file of the issue 11 tests: one rule on `test.value`, firing at 60. The re-send
/// interval is long, so an alert Alertmanager is not told to resolve stays active for minutes
/// (`endsAt` is four re-send intervals ahead) and the tests can tell the two apart.
fn issue_11_rules(am: &Alertmanager, rule: &str) -> String {
    format!(
        "resend_interval = \"1m\"\n[[notify]]\nkind = \"alertmanager\"\nurl = \"{}\"\n{rule}",
        am.url
    )
}

const ISSUE_11_RULE: &str = r#"[[rule]]
name = "HighValue"
target = "test.value"
window = "5m"
reduce = "last"
crit = 50
interval = "1s"
nodata = "keep"
labels = { team = "web" }
summary = "value {{value}} above {{threshold}}"
"#;

/// Starts a store with `ISSUE_11_RULE` and fires it, until Alertmanager has paged `hook`;
/// returns the store, the alerting file and the labels Alertmanager holds the alert under.
fn issue_11_fire(am: &Alertmanager, hook: &Catcher, dir: &Path) -> (StoreProc, String, Value) {
    let rules = write_rules(dir, &issue_11_rules(am, ISSUE_11_RULE));
    let store = StoreProc::start(&dir.join("data"), &["--alerts", &rules]);
    ingest(
        &store.http.to_string(),
        &format!("test.value 60 {}\n", unix_now()),
    );
    let active = am_wait(am, 30, "the alert firing", |a| {
        a.iter().any(|l| l["alertname"] == "HighValue")
    });
    let fired = active
        .into_iter()
        .find(|l| l["alertname"] == "HighValue")
        .expect("firing");
    assert_eq!(fired["severity"], "critical", "{fired}");
    assert_eq!(fired["team"], "web", "{fired}");
    // Paged: Alertmanager only tells its receiver of a resolve it paged for.
    hook.wait("/hook", 30, "the page", |b| statuses(b, "firing") >= 1);
    (store, rules, fired)
}

fn reload(store: &StoreProc) {
    let r = reqwest::blocking::Client::new()
        .post(store.url("/api/v1/alerts/reload"))
        .send()
        .expect("reload");
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

#[test]
fn issue_11_removing_a_firing_rule_resolves_it_in_alertmanager() {
    let hook = Catcher::start(vec![]);
    let am = Alertmanager::start(&hook.url("/hook"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, rules, fired) = issue_11_fire(&am, &hook, tmp.path());
    std::fs::write(&rules, issue_11_rules(&am, "")).expect("write");
    reload(&store);
    am_wait(&am, 15, "the removed rule's alert resolved", |a| {
        !a.contains(&fired)
    });
    // Alertmanager tells its receiver too, under the labels it paged with.
    hook.wait("/hook", 15, "a resolved notification", |b| {
        b.iter()
            .any(|n| n["status"] == "resolved" && n["alerts"][0]["labels"] == fired)
    });
}

#[test]
fn issue_11_changing_a_firing_rule_resolves_the_old_alert_in_alertmanager() {
    let hook = Catcher::start(vec![]);
    let am = Alertmanager::start(&hook.url("/hook"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, rules, fired) = issue_11_fire(&am, &hook, tmp.path());
    // Other labels and summary, same severity: no transition, only other labels.
    let relabeled = ISSUE_11_RULE
        .replace("team = \"web\"", "team = \"ops\"")
        .replace("value {{value}}", "now {{value}}");
    std::fs::write(&rules, issue_11_rules(&am, &relabeled)).expect("write");
    reload(&store);
    let active = am_wait(
        &am,
        15,
        "the old labels resolved, the new ones firing",
        |a| !a.contains(&fired) && a.iter().any(|l| l["team"] == "ops"),
    );
    let second = active
        .into_iter()
        .find(|l| l["team"] == "ops")
        .expect("relabeled");
    assert_eq!(second["severity"], "critical", "{second}");
    // Another severity: 60 is now only a warning.
    std::fs::write(
        &rules,
        issue_11_rules(&am, &relabeled.replace("crit = 50", "warn = 50")),
    )
    .expect("write");
    reload(&store);
    am_wait(
        &am,
        15,
        "the critical alert resolved, a warning firing",
        |a| {
            !a.contains(&fired)
                && !a.contains(&second)
                && a.iter()
                    .any(|l| l["team"] == "ops" && l["severity"] == "warning")
        },
    );
}

/// Issue 17: a notifier over https trusts the CA it is given and presents its client
/// certificate to a receiver that requires one (mTLS). Without the certificate, or trusting
/// another CA, nothing is delivered, and the notifier's counters say why.
#[test]
fn issue_17_notifiers_verify_the_receiver_and_present_a_client_certificate() {
    use std::sync::Arc;
    let pki = crate::pki::Pki::new();
    let server = tally_common::tls::ServerFiles {
        cert_file: pki.path("server.pem"),
        key_file: pki.path("server-key.pem"),
        client_ca_file: Some(pki.path("ca.pem")),
    }
    .load()
    .expect("server TLS config");
    let c = Catcher::start_tls(vec![], Arc::new(server));
    let file = |name: &str| pki.path(name).display().to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    let rules = write_rules(
        tmp.path(),
        &format!(
            r#"[[notify]]
kind = "webhook"
url = "{mtls}"
ca_file = "{ca}"
client_cert = "{cert}"
client_key = "{key}"
[[notify]]
kind = "webhook"
url = "{nocert}"
ca_file = "{ca}"
[[notify]]
kind = "webhook"
url = "{otherca}"
ca_file = "{ca2}"
client_cert = "{cert}"
client_key = "{key}"
[[rule]]
name = "High"
target = "test.value"
window = "20s"
reduce = "last"
crit = 50
interval = "1s"
nodata = "keep"
"#,
            mtls = c.url("/mtls"),
            nocert = c.url("/nocert"),
            otherca = c.url("/otherca"),
            ca = file("ca.pem"),
            ca2 = file("ca2.pem"),
            cert = file("client.pem"),
            key = file("client-key.pem"),
        ),
    );
    let store = StoreProc::start_on(
        &tmp.path().join("data"),
        &format!("127.0.0.1:{}", free_port()),
        &["--alerts", &rules],
    );
    let http = store.http.to_string();
    ingest(&http, &format!("test.value 60 {}\n", unix_now()));
    let got = c.wait("/mtls", 30, "a webhook over mTLS", |b| !b.is_empty());
    assert_eq!(got[0]["rule"], "High");
    assert_eq!(got[0]["state"], "firing");
    let url = format!("http://{http}/api/v1/alerts/notifiers");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let notifiers = loop {
        let v: Value = reqwest::blocking::get(&url)
            .and_then(|r| r.json())
            .expect("notifiers");
        let n = v["notifiers"].as_array().cloned().unwrap_or_default();
        if n.len() == 3
            && n[1]["failed_attempts"].as_u64() >= Some(1)
            && n[2]["failed_attempts"].as_u64() >= Some(1)
        {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failures counted: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(notifiers[0]["sent"], 1, "{notifiers:#?}");
    assert_eq!(notifiers[0]["failed_attempts"], 0, "{notifiers:#?}");
    for n in &notifiers[1..] {
        assert_eq!(n["sent"], 0, "{notifiers:#?}");
        assert!(n["last_error"].is_string(), "{notifiers:#?}");
    }
    assert!(
        c.bodies("/nocert").is_empty(),
        "a client without a certificate got through"
    );
    assert!(
        c.bodies("/otherca").is_empty(),
        "a receiver the CA does not sign was trusted"
    );
}
