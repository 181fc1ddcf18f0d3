//! Every target of every shipped dashboard renders, as Grafana sends it (POST, form-encoded,
//! wrapped in `aliasSub(..., "(^.*$)", "\1 <refId>")`, with maxDataPoints), against a store
//! holding series named as the dashboards expect: non-empty, with data, the refId read back.

use serde_json::Value;

use crate::compat::enc;
use crate::proc::StoreProc;

fn data(now: i64) -> String {
    let mut out = String::new();
    for i in 0..180i64 {
        let t = now - 1800 + i * 10;
        for host in ["web1", "web2"] {
            for (k, source) in ["cdn_fastly", "cdn_akamai", "origin"].iter().enumerate() {
                out.push_str(&format!(
                    "beacons;source={source};host={host} {} {t}\n",
                    (i + k as i64) % 9
                ));
            }
            for vhost in ["www", "api"] {
                for (k, status) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                    out.push_str(&format!(
                        "requests;vhost={vhost};status={status};host={host} {} {t}\n",
                        400 / (k as i64 + 1) + i % 5
                    ));
                }
                for (k, stat) in ["p50", "p90", "p99", "max"].iter().enumerate() {
                    out.push_str(&format!(
                        "latency;vhost={vhost};host={host};stat={stat} {:.3} {t}\n",
                        0.02 * (k as f64 + 1.0) + (i % 7) as f64 / 1000.0
                    ));
                }
                out.push_str(&format!(
                    "latency;vhost={vhost};host={host};stat=count {} {t}\n",
                    300 + i % 11
                ));
            }
        }
        for (name, v) in [
            ("points_received", 1000 * i),
            ("lines_bad", i / 10),
            ("series", 120),
            ("head_points", i % 50),
            ("flushes", i / 6),
        ] {
            out.push_str(&format!("tally.store.{name} {v} {t}\n"));
        }
        for name in ["spool_points", "lines_read", "backlog_bytes"] {
            out.push_str(&format!("tally.agent.{name};host=web1 {} {t}\n", 10 * i));
        }
    }
    out
}

/// `target` as Grafana sends it with every template variable at "All": a variable with a custom
/// all value is replaced by it as it is, whatever the format asked (`${host:regex}`), as
/// Grafana's template service does. A variable the dashboard does not define fails the test.
fn with_all_values(dash: &Value, target: &str) -> String {
    let vars = dash["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = target.to_owned();
    for v in &vars {
        let name = v["name"].as_str().expect("variable name");
        let all = v["allValue"]
            .as_str()
            .expect("the dashboards give each variable an allValue");
        for form in [
            format!("${{{name}:regex}}"),
            format!("${{{name}}}"),
            format!("${name}"),
        ] {
            out = out.replace(&form, all);
        }
    }
    let left = out
        .match_indices('$')
        .any(|(i, _)| out[i + 1..].starts_with(|c: char| c == '{' || c.is_ascii_alphabetic()));
    assert!(!left, "{target}: a variable the dashboard does not define");
    out
}

#[test]
fn every_dashboard_target_renders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start_quiet(dir.path());
    let now = tally_common::unix_now();
    let client = reqwest::blocking::Client::new();
    let reply = client
        .post(store.url("/api/v1/ingest"))
        .body(data(now))
        .send()
        .expect("ingest");
    assert_eq!(reply.status(), 200);

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboards");
    let mut rendered = 0;
    for entry in std::fs::read_dir(root).expect("grafana/dashboards exists") {
        let path = entry.expect("entry").path();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("readable"))
            .expect("dashboard is JSON");
        for panel in dash["panels"].as_array().expect("panels") {
            assert_eq!(
                panel["datasource"]["uid"],
                "tally",
                "{}: {}",
                path.display(),
                panel["title"]
            );
            for t in panel["targets"].as_array().expect("targets") {
                let ref_id = t["refId"].as_str().expect("refId");
                let target = with_all_values(&dash, t["target"].as_str().expect("target"));
                let wrapped = format!("aliasSub({target}, \"(^.*$)\", \"\\1 {ref_id}\")");
                let body = format!(
                    "target={}&from={}&until={now}&format=json&maxDataPoints=300",
                    enc(&wrapped),
                    now - 3600
                );
                let resp = client
                    .post(store.url("/render"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .expect("render");
                let status = resp.status();
                let text = resp.text().unwrap_or_default();
                assert_eq!(status, 200, "{}: {target}: {text}", path.display());
                let series: Value = serde_json::from_str(&text).expect("render answers JSON");
                let series = series.as_array().expect("an array of series");
                assert!(
                    !series.is_empty(),
                    "{}: {target} returned no series",
                    path.display()
                );
                for s in series {
                    let name = s["target"].as_str().unwrap_or_default();
                    assert!(
                        name.ends_with(&format!(" {ref_id}")),
                        "{target}: Grafana reads the refId from {name:?}"
                    );
                    let has_data = s["datapoints"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|p| !p[0].is_null()));
                    assert!(has_data, "{}: {target}: {name} has no data", path.display());
                    assert!(
                        s["tags"]
                            .as_object()
                            .is_some_and(|m| m.values().all(Value::is_string)),
                        "tag values must be strings"
                    );
                }
                rendered += 1;
            }
        }
    }
    assert!(rendered >= 25, "only {rendered} dashboard targets");
}
