//! The web page in a real browser: headless Chromium (Debian `chromium`, `chromium-driver`)
//! driven over WebDriver loads the page from a running store, draws graphs, shows alert states,
//! and the test checks what it shows. The screenshot is kept as an artifact
//! (`<target dir>/artifacts/web-page.png` and `web-alerts.png`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::proc::{free_port, ingest, unix_now, StoreProc};

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Driver {
    fn start() -> Driver {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run scripts/setup.sh test (./x test does)"
            );
        }
        let port = free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{base}/status"))
            .send()
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .expect("session")
            .json()
            .expect("json");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Driver {
            child,
            base,
            session,
            http,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().expect("webdriver").json().expect("json");
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {v}");
        }
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element id")
            .to_string()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/clear"), json!({}));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    /// Waits until `script` returns something truthy; returns it.
    fn wait(&self, script: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(script);
            let truthy = !(v.is_null()
                || v == json!(false)
                || v == json!(0)
                || v == json!("")
                || v == json!("0"));
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what} (last: {v})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("png"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `<target dir>/artifacts`, found from this test binary's path (`<target>/debug/deps/it-...`).
pub fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("artifacts")
}

#[test]
fn issue_7_web_page_in_headless_chromium_draws_graphs_and_shows_alerts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rules = tmp.path().join("alerts.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"BeaconFailures\"\ntarget = \"seriesByTag('name=beacons')\"\nwindow = \"5m\"\nreduce = \"sum\"\ncrit = 100\ninterval = \"1s\"\n",
    )
    .expect("rules");
    let store = StoreProc::start(
        &tmp.path().join("data"),
        &["--alerts", &rules.to_string_lossy()],
    );
    let http = store.http.to_string();
    let now = unix_now() / 10 * 10;
    let mut text = String::new();
    for i in 0..60 {
        let t = now - 590 + i * 10;
        text.push_str(&format!("beacons;source=cdn_fastly {} {t}\n", 10 + i % 7));
        text.push_str(&format!("beacons;source=origin {} {t}\n", 1 + i % 3));
    }
    ingest(&http, &text);
    let d = Driver::start();
    d.go(&format!(
        "http://{http}/#target={}&from=-15min",
        "seriesByTag('name%3Dbeacons'%2C'source%3Dcdn_fastly')"
    ));
    let points = d.wait(
        "return document.querySelector('#chart').dataset.points",
        "a drawn graph",
    );
    assert!(
        points.as_str().unwrap_or("0").parse::<u32>().unwrap_or(0) >= 55,
        "points drawn: {points}"
    );
    let legend = d
        .js("return document.querySelector('#legend').innerText")
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(legend.contains("source=cdn_fastly"), "legend: {legend}");
    // The last value in the legend is the newest point (i = 59: 10 + 59 % 7 = 13).
    assert!(legend.trim_end().ends_with("13"), "legend: {legend}");
    // The metric tree and the tag list come from the API.
    d.wait(
        "return document.querySelector('#tags').innerText.includes('source')",
        "the tag list",
    );
    // Type two targets, draw: two series on one graph.
    d.type_into(
        "#targets",
        "seriesByTag('name=beacons','source=origin')\nsumSeries(seriesByTag('name=beacons'))",
    );
    d.click("#draw");
    d.wait("return document.querySelector('#chart').dataset.series === '2' && document.querySelector('#legend').innerText.includes('sumSeries')", "two targets on one graph");
    let shot = d.screenshot("web-page.png");
    // Alerts: the rule fires (the last 5 minutes sum well above 100); the page shows it.
    d.click("nav button[data-tab=alerts]");
    d.wait(
        "return document.querySelector('#instances tbody').innerText.includes('firing')",
        "a firing alert",
    );
    let rules_text = d
        .js("return document.querySelector('#rules tbody').innerText")
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        rules_text.contains("BeaconFailures") && rules_text.contains("sum over 300 s"),
        "rules: {rules_text}"
    );
    d.wait("return [...document.querySelectorAll('#instances canvas.spark')].some((c) => +c.dataset.points > 0)", "a small graph per instance");
    d.click("#instances a[data-i='0']");
    d.wait(
        "return +document.querySelector('#alertchart').dataset.points > 0",
        "the alert's graph",
    );
    d.screenshot("web-alerts.png");
    // Health: the store's own series are graphed.
    d.click("nav button[data-tab=health]");
    d.wait(
        "return document.querySelectorAll('#healthgrid canvas').length === 6",
        "the health graphs",
    );
    eprintln!("screenshot: {}", shot.display());
}

/// Issue 17: with a read token, every data route needs it; the page's shell still loads, asks
/// for the token once, and then draws from the API with it.
#[test]
fn issue_17_the_page_asks_for_the_read_token_and_then_draws() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start_with_config(
        tmp.path(),
        "self_metrics_interval = \"0s\"\nread_token = \"r3ad\"\nwrite_token = \"wr1te\"\n",
    );
    let now = unix_now() / 10 * 10;
    let text: String = (0..30)
        .map(|i| format!("guarded.series {} {}\n", i % 5, now - 290 + i * 10))
        .collect();
    let r = reqwest::blocking::Client::new()
        .post(store.url("/api/v1/ingest"))
        .header("authorization", "Bearer wr1te")
        .body(text)
        .send()
        .expect("ingest");
    assert_eq!(r.status(), 200);
    let d = Driver::start();
    d.go(&store.url("/#target=guarded.series&from=-15min"));
    d.wait(
        "return !document.querySelector('#tokenform').hidden",
        "the token form",
    );
    let before = d.js("return document.querySelector('#chart').dataset.points || '0'");
    assert_eq!(before, json!("0"), "nothing is drawn without the token");
    d.type_into("#token", "r3ad");
    d.click("#tokenform button");
    let points = d.wait(
        "return document.querySelector('#chart').dataset.points",
        "a graph drawn with the token",
    );
    assert!(
        points.as_str().unwrap_or("0").parse::<u32>().unwrap_or(0) >= 25,
        "points drawn: {points}"
    );
    assert!(d.js("return document.querySelector('#tokenform').hidden") == json!(true));
}
