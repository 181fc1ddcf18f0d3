//! TLS end to end (issue 17), with certificates made for the test (`pki.rs`): the store's HTTP
//! port verified against its CA, mTLS, a certificate renewed on SIGHUP, the agent shipping over
//! HTTPS and over TLS plaintext, and `tally check` / `tally rules test` over HTTPS.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::pki::Pki;
use crate::proc::{unix_now, AgentProc, StoreProc};

fn tls_store(dir: &std::path::Path, pki: &Pki, mtls: bool, line: bool) -> StoreProc {
    StoreProc::start_with_config(
        dir,
        &format!(
            "self_metrics_interval = \"0s\"\n{}",
            pki.store_table(mtls, line)
        ),
    )
}

fn https(store: &StoreProc, path: &str) -> String {
    format!("https://{}{path}", store.http)
}

/// Ingests `text` over HTTPS with the client certificate.
fn ingest(pki: &Pki, store: &StoreProc, text: String) {
    let r = pki
        .client(Some("ca.pem"), true)
        .post(https(store, "/api/v1/ingest"))
        .body(text)
        .send()
        .expect("ingest over TLS");
    assert_eq!(r.status(), 200);
}

/// The error chain of a failed request, for asserting on why.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

#[test]
fn issue_17_https_render_works_with_the_ca_and_fails_without_it() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tls_store(dir.path(), &pki, false, false);
    let t = unix_now() - unix_now() % 10 - 60;
    let client = pki.client(Some("ca.pem"), false);
    let r = client
        .post(https(&store, "/api/v1/ingest"))
        .body(format!("over.tls 5 {t}\n"))
        .send()
        .expect("ingest over TLS");
    assert_eq!(r.status(), 200);
    let url = https(
        &store,
        &format!(
            "/render?target=over.tls&from={}&until={}&format=json",
            t - 10,
            t + 10
        ),
    );
    let body = client
        .get(&url)
        .send()
        .expect("render over TLS")
        .text()
        .expect("body");
    assert!(body.contains("[5.0,"), "{body}");
    // The public roots do not vouch for the test CA, nor does another CA.
    for ca in [None, Some("ca2.pem")] {
        let e = pki
            .client(ca, false)
            .get(&url)
            .send()
            .expect_err("an unknown issuer is refused");
        assert!(chain(&e).contains("UnknownIssuer"), "{ca:?}: {}", chain(&e));
    }
    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!("http://{}/render?target=over.tls", store.http))
        .send();
    assert!(plain.is_err(), "{plain:?}");
}

#[test]
fn issue_17_mtls_refuses_a_client_without_a_certificate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tls_store(dir.path(), &pki, true, false);
    let url = https(&store, "/metrics");
    let e = pki
        .client(Some("ca.pem"), false)
        .get(&url)
        .send()
        .expect_err("no client certificate");
    let why = chain(&e);
    assert!(
        why.contains("CertificateRequired") || why.contains("certificate required"),
        "{why}"
    );
    let r = pki
        .client(Some("ca.pem"), true)
        .get(&url)
        .send()
        .expect("with the client certificate");
    assert_eq!(r.status(), 200);
    let text = r.text().expect("text");
    let failures: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("tally_store_tls_handshake_failures ")?
                .parse()
                .ok()
        })
        .expect("counter");
    assert!(failures >= 1, "{text}");
}

#[test]
fn issue_17_sighup_serves_the_new_certificate_and_keeps_the_old_when_the_new_is_bad() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tls_store(dir.path(), &pki, false, false);
    let url = https(&store, "/metrics");
    let serves = |ca: &str| pki.client(Some(ca), false).get(&url).send().is_ok();
    assert!(serves("ca.pem") && !serves("ca2.pem"));
    let hup = || {
        #[allow(unsafe_code)]
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(store.child.id() as libc::pid_t, libc::SIGHUP);
        }
    };
    // A renewal: the second CA's certificate moved into place, then SIGHUP.
    for (from, to) in [
        ("server2.pem", "server.pem"),
        ("server2-key.pem", "server-key.pem"),
    ] {
        std::fs::copy(pki.path(from), pki.path(&format!("{to}.new"))).expect("copy");
        std::fs::rename(pki.path(&format!("{to}.new")), pki.path(to)).expect("rename");
    }
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !serves("ca2.pem") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not load the new pair"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!serves("ca.pem"), "the old certificate is gone");
    // A botched renewal (the certificate half written): logged, the working pair stays.
    std::fs::write(
        pki.path("server.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
    )
    .expect("write");
    hup();
    std::thread::sleep(Duration::from_secs(1));
    assert!(serves("ca2.pem"), "the previous pair stays in use");
    assert!(store.child.id() > 0);
}

/// An access log of `lines` lines ending a minute ago, and how many requests it holds.
fn access_log(path: &std::path::Path, lines: usize) -> u64 {
    let now = unix_now();
    let mut g = tally_agent::gen::Gen::new(17, now - 660, 10);
    let mut truth = tally_agent::gen::Truth::default();
    let mut text = Vec::new();
    for _ in 0..lines {
        g.line(&mut text, &mut truth);
    }
    std::fs::write(path, &text).expect("log");
    truth.lines - truth.bad
}

fn agent_config(
    dir: &std::path::Path,
    host: &str,
    log: &std::path::Path,
    output: &str,
) -> std::path::PathBuf {
    let config = dir.join(format!("agent-{host}.toml"));
    std::fs::write(
        &config,
        format!(
            "host = \"{host}\"\ndata_dir = \"{data}\"\ncommit_interval = \"200ms\"\n\
             poll_interval = \"50ms\"\n[[input]]\npaths = [\"{log}\"]\nstart_at = \"beginning\"\n\
             [output]\n{output}",
            data = dir.join(format!("agent-{host}")).display(),
            log = log.display(),
        ),
    )
    .expect("config");
    config
}

#[test]
fn issue_17_the_agent_ships_over_https_and_over_tls_plaintext() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tls_store(&dir.path().join("store"), &pki, true, true);
    let log = dir.path().join("access.log");
    let requests = access_log(&log, 2000);
    let files = format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client-key.pem").display()
    );
    let over_http = agent_config(
        dir.path(),
        "viahttps",
        &log,
        &format!(
            "kind = \"tally\"\nurl = \"https://{}\"\n{files}",
            store.http
        ),
    );
    let over_line = agent_config(
        dir.path(),
        "vialine",
        &log,
        &format!(
            "kind = \"carbon\"\naddress = \"127.0.0.1:{}\"\ntls = true\n{files}",
            store.line.port()
        ),
    );
    let _a = AgentProc::start(&over_http);
    let _b = AgentProc::start(&over_line);
    let client = pki.client(Some("ca.pem"), true);
    let total = |host: &str| -> Option<f64> {
        let url = https(
            &store,
            &format!(
                "/render?target=sumSeries(seriesByTag('name=requests','host={host}'))&from=-20min&until=now&format=json"
            ),
        );
        let v: serde_json::Value = client.get(url).send().ok()?.json().ok()?;
        Some(
            v.as_array()?.first()?["datapoints"]
                .as_array()?
                .iter()
                .filter_map(|p| p[0].as_f64())
                .sum(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = (None, None);
    while Instant::now() < deadline {
        got = (total("viahttps"), total("vialine"));
        if got == (Some(requests as f64), Some(requests as f64)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(got, (Some(requests as f64), Some(requests as f64)));
}

#[test]
fn issue_17_tally_check_and_rules_test_read_over_https_with_mtls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tls_store(&dir.path().join("store"), &pki, true, false);
    let now = unix_now() / 10 * 10;
    ingest(&pki, &store, format!("tls.check 42 {}\n", now - 10));
    let base = format!("https://{}", store.http);
    let path = |name: &str| pki.path(name).display().to_string();
    let check = |tls: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args([
                "check",
                "--url",
                &base,
                "--target",
                "tls.check",
                "--reduce",
                "last",
            ])
            .args(["--warn", "50", "--crit", "100"])
            .args(tls)
            .output()
            .expect("tally check runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    let all = [
        "--ca-file".to_string(),
        path("ca.pem"),
        "--client-cert".to_string(),
        path("client.pem"),
        "--client-key".to_string(),
        path("client-key.pem"),
    ];
    assert_eq!(
        check(&all),
        (
            Some(0),
            "TALLY OK - tls.check=42 | 'tls.check'=42;~:50;~:100;;".to_string()
        )
    );
    let (code, line) = check(&all[..2]);
    assert_eq!(code, Some(3), "no client certificate: {line}");
    assert!(line.starts_with("TALLY UNKNOWN - "), "{line}");
    let (code, line) = check(&[]);
    assert_eq!(code, Some(3), "no CA: {line}");
    let (code, line) = check(&["--ca-file".to_string(), path("nothing.pem")]);
    assert_eq!(code, Some(3), "{line}");
    assert!(line.contains("nothing.pem"), "{line}");

    let rules = dir.path().join("alerts.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"High\"\ntarget = \"tls.check\"\nwindow = \"1m\"\nreduce = \"last\"\ncrit = 10\ninterval = \"1m\"\n",
    )
    .expect("rules");
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["rules", "test", "--alerts"])
        .arg(&rules)
        .args(["--url", &base, "--from=-10min"])
        .args(&all)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("High: 1 series, "), "{text}");
}
