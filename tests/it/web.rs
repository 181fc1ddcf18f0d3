//! The web page in a real browser: headless Chromium (Debian `chromium`, `chromium-driver`)
//! driven over WebDriver loads the page from a running store, draws graphs, shows alert states,
//! and the test checks what it shows. The screenshot is kept as an artifact
//! (`<target dir>/artifacts/web-page.png` and `web-alerts.png`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::proc::{free_port, ingest, tally_bin, unix_now, StoreProc};

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

    /// Clicks the element `css` finds. The page redraws its tables on a timer, so an element
    /// found can be replaced before the click lands; it is then found again (a few times).
    fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.element(css);
            let url = format!("{}/session/{}/element/{id}/click", self.base, self.session);
            let v: Value = self
                .http
                .post(url)
                .json(&json!({}))
                .send()
                .expect("webdriver")
                .json()
                .expect("json");
            match v["value"].get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") => std::thread::sleep(Duration::from_millis(100)),
                Some(_) => panic!("webdriver click {css}: {v}"),
            }
        }
        panic!("{css} went stale five times in a row");
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
        self.wait_for(script, what, 30)
    }

    /// [`Driver::wait`] for up to `secs`.
    fn wait_for(&self, script: &str, what: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
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

    /// WebDriver pointer actions (a mouse) relative to element `css`'s centre: each action's
    /// `origin` is set to the element.
    fn pointer(&self, css: &str, mut actions: Vec<Value>) {
        let id = self.element(css);
        let origin = json!({ "element-6066-11e4-a52e-4f735466cecf": id });
        for a in &mut actions {
            if a["type"] == "pointerMove" {
                a["origin"] = origin.clone();
            }
        }
        self.cmd(
            "POST",
            "/actions",
            json!({"actions": [{
                "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                "actions": actions
            }]}),
        );
    }

    /// The mouse moved over element `css`, `x` pixels off its centre.
    fn hover(&self, css: &str, x: i64) {
        self.pointer(
            css,
            vec![json!({"type": "pointerMove", "duration": 100, "x": x, "y": 0})],
        );
    }

    /// A mouse drag across element `css`, from `x0` to `x1` pixels off its centre, as a user's
    /// (move, press, move, release).
    fn drag(&self, css: &str, x0: i64, x1: i64) {
        self.pointer(
            css,
            vec![
                json!({"type": "pointerMove", "duration": 0, "x": x0, "y": 0}),
                json!({"type": "pointerDown", "button": 0}),
                json!({"type": "pointerMove", "duration": 300, "x": x1, "y": 0}),
                json!({"type": "pointerUp", "button": 0}),
            ],
        );
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
    // Health: the shipped tally-health dashboard, drawn by the page.
    d.wait(
        "return document.querySelectorAll('#healthgrid .panel').length === 7 && +document.querySelector('#healthgrid .panel canvas').dataset.points > 0",
        "the health dashboard",
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
    // The dashboards come from the API too, with the same token.
    d.click("nav button[data-tab=dash]");
    d.wait(
        "return document.querySelectorAll('#panels .panel').length >= 5",
        "the dashboard's panels",
    );
}

/// `tally demo` (the README's run command) as a child: store, agent, traffic with an incident
/// soon after the start, the demo's alert rules. Its stdout lines arrive on `lines`.
struct Demo {
    child: Child,
    http: String,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(dir: &Path) -> Demo {
        let http = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(tally_bin())
            .args(["demo", "--data-dir"])
            .arg(dir)
            .args(["--http-listen", &http, "--line-listen", "127.0.0.1:0"])
            .args(["--first-incident-after", "5s", "--incident-every", "30m"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tally demo starts");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            http,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to `secs`) for a stdout line starting with `prefix`.
    fn line(&mut self, prefix: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {prefix:?} from the demo: {:#?}",
                self.seen
            );
            if let Ok(l) = self.lines.recv_timeout(left.min(Duration::from_secs(1))) {
                self.seen.push(l);
            }
        }
    }

    fn get(&self, path: &str) -> Value {
        reqwest::blocking::get(format!("http://{}{path}", self.http))
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 18: a newcomer runs the demo, waits for the first incident and opens the page. Without
/// typing anything it shows which CDN failed (the top band of the stacked beacon panel, and
/// the "most failures now" figure), what it did to 5xx and latency (every overview panel has
/// data), and which alerts fired (the strip at the top, and shaded bands on the graphs each
/// rule's annotation names). Then: drag to zoom, silence and unsilence from the page, the
/// grouped alerts view, the health dashboard, a PNG link that answers a PNG; no request leaves
/// the store's origin; every control has a name and text has WCAG AA contrast. Screenshots of
/// each view are kept as artifacts.
#[test]
fn issue_18_the_first_incident_at_a_glance_in_headless_chromium() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(tmp.path());
    demo.line("tally demo:", 60);
    let incident = demo.line("demo: incident: ", 60);
    let failing = incident
        .trim_start_matches("demo: incident: ")
        .split(' ')
        .next()
        .expect("the failing source")
        .to_owned();
    // The demo's rules page within a few minutes of the incident's start (a minute's window,
    // `for = 20s`). The page is checked once they fire.
    let deadline = Instant::now() + Duration::from_secs(240);
    let firing = loop {
        let v = demo.get("/api/v1/alerts");
        let firing: std::collections::BTreeSet<String> = v["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|a| a["state"] == "firing")
                    .filter_map(|a| a["rule"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if firing.contains("BeaconFailures") && firing.contains("ServerErrors") {
            break firing;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's alerts did not fire: {v}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let d = Driver::start();
    d.go(&format!("http://{}/", demo.http));
    // The overview opens by itself, every panel with data.
    d.wait_for(
        "const ps = [...document.querySelectorAll('#panels .panel')]; return ps.length === 5 && ps.every((p) => +p.querySelector('canvas').dataset.points > 0)",
        "every overview panel with data",
        60,
    );
    let dash = d.js("return document.querySelector('#dashpick').selectedOptions[0].textContent");
    assert_eq!(dash, json!("Incident overview"));
    // Which CDN failed: the top band of the stacked beacon panel, and the figure beside it.
    let top = d.js("return document.querySelector('.panel[data-id=\"2\"]').dataset.top");
    assert_eq!(top, json!(failing), "the top band of the beacon panel");
    let stat = d.js("return document.querySelector('.panel[data-id=\"1\"]').dataset.name");
    assert_eq!(
        stat,
        json!(failing),
        "the 'most failure beacons now' figure"
    );
    // Which alerts fired: the strip names them, and each shades the panels its annotation
    // names (BeaconFailures: the beacon panel; ServerErrors: requests and 5xx share;
    // SlowRequests, if it fired: latency).
    d.wait(
        "return !document.querySelector('#firing').hidden",
        "the firing strip",
    );
    let strip = d.js("return document.querySelector('#firing').innerText");
    for rule in &firing {
        assert!(
            strip.as_str().unwrap_or("").contains(rule.as_str()),
            "{rule} in {strip}"
        );
    }
    let shaded: Vec<(&str, &[u32])> = vec![
        ("BeaconFailures", &[2]),
        ("ServerErrors", &[3, 4]),
        ("SlowRequests", &[5]),
    ];
    for (rule, panels) in shaded {
        if !firing.contains(rule) {
            continue;
        }
        for id in panels {
            let bands = d.wait(
                &format!("return +document.querySelector('.panel[data-id=\"{id}\"] canvas').dataset.bands"),
                &format!("{rule}'s band on panel {id}"),
            );
            assert!(
                bands.as_u64().unwrap_or(0) >= 1,
                "{rule}: panel {id}: {bands}"
            );
        }
    }
    // A fresh store: the range is fitted to the data, not an empty 6 hours.
    let range = d.js("return [+document.querySelector('#panels').dataset.from, +document.querySelector('#panels').dataset.until]");
    let span = range[1].as_i64().unwrap_or(0) - range[0].as_i64().unwrap_or(0);
    assert!(
        span > 0 && span <= 900,
        "a fitted range, not an hour or six: {range}"
    );
    let info = d.js("return document.querySelector('#rangeinfo').innerText");
    assert!(
        info.as_str().unwrap_or("").contains("fitted to the data"),
        "{info}"
    );
    // Nothing came from anywhere but the store (no CDN), and the page passes the basics of
    // accessibility: every control has a name, text has at least 4.5:1 contrast.
    let foreign = d.js("return performance.getEntriesByType('resource').map((e) => e.name).filter((n) => !n.startsWith(location.origin))");
    assert_eq!(foreign, json!([]), "requests off the store's origin");
    let unnamed = d.js(A11Y_UNNAMED);
    assert_eq!(unnamed, json!([]), "controls without an accessible name");
    let low = d.js(A11Y_CONTRAST);
    assert_eq!(low, json!([]), "text below WCAG AA contrast");
    let shot = d.screenshot("web-dashboard.png");
    // The PNG link of the beacon panel answers a PNG of it.
    let png_url = d.js("return document.querySelector('.panel[data-id=\"2\"] a.pnglink').href");
    let png = reqwest::blocking::get(png_url.as_str().expect("href"))
        .and_then(|r| r.bytes())
        .expect("the PNG link answers");
    assert!(png.starts_with(b"\x89PNG"), "a PNG from the panel's link");
    // The crosshair is shared: hovering one graph draws the time line on the others too.
    d.hover(".panel[data-id=\"2\"] canvas.over", 0);
    d.wait(
        "const c = document.querySelector('.panel[data-id=\"3\"] canvas.over'); const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < px.length; i += 4) if (px[i]) return true; return false",
        "the crosshair on another panel",
    );
    // A variable: ticking one vhost narrows the latency panel to its three percentiles.
    let before =
        d.js("return +document.querySelector('.panel[data-id=\"5\"] canvas').dataset.series");
    d.click("#var-vhost summary");
    d.click("#var-vhost input[value='www.example.com']");
    d.wait(
        "const p = document.querySelector('#panels').dataset; return p.drawn === `${p.from} ${p.until}` && +document.querySelector('.panel[data-id=\"5\"] canvas').dataset.series === 3",
        "the latency panel for one vhost",
    );
    assert!(
        before.as_u64().unwrap_or(0) > 3,
        "every vhost before: {before}"
    );
    assert!(
        d.js("return location.hash")
            .as_str()
            .unwrap_or("")
            .contains("var-vhost=www.example.com"),
        "the choice is in the page's address"
    );
    d.click("#var-vhost input[value='$__all']");
    d.click("#var-vhost summary");
    // Drag to zoom on the beacon panel, across the newest part of the range (where a young
    // store's data is): a narrower range on every panel, then back.
    let half = d
        .js("return document.querySelector('.panel[data-id=\"2\"] canvas.over').clientWidth / 2")
        .as_f64()
        .unwrap_or(400.0) as i64;
    d.drag(".panel[data-id=\"2\"] canvas.over", half / 4, half - 12);
    let zoomed = d.wait(
        &format!("const p = document.querySelector('#panels').dataset; return p.drawn === `${{p.from}} ${{p.until}}` && (p.until - p.from) < {span} && !document.querySelector('#unzoom').hidden && [+p.from, +p.until]"),
        "a zoomed range",
    );
    assert!(
        zoomed[0].as_i64() > range[0].as_i64(),
        "{zoomed} inside {range}"
    );
    d.wait(
        "return +document.querySelector('.panel[data-id=\"2\"] canvas').dataset.points > 0",
        "beacons in the zoomed range",
    );
    d.screenshot("web-dashboard-zoomed.png");
    let info = d.js("return document.querySelector('#rangeinfo').innerText");
    assert!(info.as_str().unwrap_or("").starts_with("zoomed"), "{info}");
    d.click("#unzoom");
    d.wait(
        &format!("const p = document.querySelector('#panels').dataset; return document.querySelector('#unzoom').hidden && p.drawn === `${{p.from}} ${{p.until}}` && (p.until - p.from) >= {span}"),
        "the zoom reset",
    );
    // The alerts view: grouped by rule, silence and unsilence from the page.
    d.click("nav button[data-tab=alerts]");
    d.wait(
        "return document.querySelector('#instances tbody').innerText.includes('firing') && document.querySelectorAll('#instances tr.group').length >= 3",
        "instances grouped by rule",
    );
    d.click("#instances button.silence[data-rule=BeaconFailures]:not([data-series])");
    let silences = Instant::now() + Duration::from_secs(10);
    loop {
        let v = demo.get("/api/v1/alerts/silences");
        let ours = v["silences"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["rule"] == "BeaconFailures" && s["series"].is_null())
        });
        if ours {
            break;
        }
        assert!(Instant::now() < silences, "no silence reached the API: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    d.wait(
        "return document.querySelector('#silences tbody').innerText.includes('BeaconFailures')",
        "the silence listed",
    );
    d.screenshot("web-alerts-silenced.png");
    assert_eq!(
        d.js(A11Y_UNNAMED),
        json!([]),
        "alerts view: controls without a name"
    );
    assert_eq!(d.js(A11Y_CONTRAST), json!([]), "alerts view: low contrast");
    d.click("#instances button.unsilence");
    let unsilenced = Instant::now() + Duration::from_secs(10);
    while demo.get("/api/v1/alerts/silences")["silences"]
        .as_array()
        .is_none_or(|s| !s.is_empty())
    {
        assert!(Instant::now() < unsilenced, "the silence did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The rule's target, one click from a graph.
    d.click("#instances a.rulegraph[data-rule=ServerErrors]");
    d.wait(
        "return document.querySelector('#graph').classList.contains('on') && document.querySelector('#targets').value.startsWith('asPercent(') && +document.querySelector('#chart').dataset.points > 0",
        "the ServerErrors target drawn in Explore",
    );
    // The health dashboard, drawn from the shipped JSON.
    d.click("nav button[data-tab=health]");
    d.wait(
        "const ps = [...document.querySelectorAll('#healthgrid .panel')]; return ps.length === 7 && ps.filter((p) => +p.querySelector('canvas').dataset.points > 0).length >= 6",
        "the health dashboard with data",
    );
    d.screenshot("web-health.png");
    assert_eq!(
        d.js(A11Y_UNNAMED),
        json!([]),
        "health view: controls without a name"
    );
    assert_eq!(d.js(A11Y_CONTRAST), json!([]), "health view: low contrast");
    // The tag tree: `name`, then `beacons`, by clicking.
    d.click("nav button[data-tab=graph]");
    d.wait(
        "return document.querySelector('#tags .node > button')?.textContent.includes('name')",
        "the tag tree",
    );
    d.click("#tags .node > button");
    d.wait(
        "return [...document.querySelectorAll('#tags .kids button')].some((b) => b.textContent.startsWith('· beacons'))",
        "beacons under name",
    );
    // Explore speaks Atlas too: a stack program, grouped by source, and its PNG link.
    d.click("#lang option[value=atlas]");
    d.type_into("#targets", "name,beacons,:eq,:sum,(,source,),:by");
    d.click("#draw");
    d.wait(
        "return +document.querySelector('#chart').dataset.series >= 3 && +document.querySelector('#chart').dataset.points > 0 && document.querySelector('#legend').innerText.includes('cdn_')",
        "an Atlas graph by source",
    );
    // The server's own PNG of it, under the page's graph.
    d.click("#showpng");
    d.wait(
        "const i = document.querySelector('#pngimg'); return !i.hidden && i.complete && i.naturalWidth > 0",
        "the server's PNG of the Atlas graph",
    );
    d.screenshot("web-explore-atlas.png");
    assert_eq!(
        d.js(A11Y_UNNAMED),
        json!([]),
        "explore view: controls without a name"
    );
    assert_eq!(d.js(A11Y_CONTRAST), json!([]), "explore view: low contrast");
    let png_url = d.js("return document.querySelector('#png').href");
    let png_url = png_url.as_str().expect("href");
    assert!(png_url.contains("/api/v1/graph?q="), "{png_url}");
    let png = reqwest::blocking::get(png_url)
        .and_then(|r| r.bytes())
        .expect("the Atlas PNG link answers");
    assert!(png.starts_with(b"\x89PNG"), "a PNG from Atlas's graph API");
    eprintln!("screenshots: {}", shot.display());
}

/// Every button, link, input and select the page shows, without a name a screen reader could
/// read (its text, a label, aria-label or title).
const A11Y_UNNAMED: &str = r#"
const visible = (e) => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
return [...document.querySelectorAll('button, a[href], input, select, textarea')].filter(visible).filter((e) => {
  const name = (e.getAttribute('aria-label') || e.title || (e.labels && [...e.labels].map((l) => l.textContent).join('')) || e.textContent || '').trim();
  return !name;
}).map((e) => e.outerHTML.slice(0, 120));
"#;

/// Visible text whose contrast with the background behind it is below WCAG AA's 4.5:1
/// (computed colours; the background is the nearest ancestor's that is not transparent).
const A11Y_CONTRAST: &str = r#"
const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
const bg = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c; } return [255, 255, 255]; };
const out = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const e = n.parentElement;
  if (!n.textContent.trim() || !e || !(e.offsetWidth || e.offsetHeight)) continue;
  const fg = rgb(getComputedStyle(e).color), b = bg(e);
  const [l1, l2] = [lum(fg), lum(b)].sort((x, y) => y - x);
  const ratio = (l1 + 0.05) / (l2 + 0.05);
  if (ratio < 4.5) out.push(`${n.textContent.trim().slice(0, 40)}: ${ratio.toFixed(2)}`);
}
return [...new Set(out)].slice(0, 20);
"#;
