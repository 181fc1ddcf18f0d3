//! The Graphite API's own promises, beyond compatibility: clear errors for bad requests, limits
//! that refuse instead of exhausting the server, and bearer tokens.

use crate::compat::{enc, get};
use crate::proc::StoreProc;

#[test]
fn bad_requests_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start_quiet(dir.path());
    let cases = [
        (
            "/render?target=sumSeries(a.b&format=json",
            "position 13: expected ',' or ')'",
        ),
        ("/render?target=nosuch(a.b)", "unknown function \"nosuch\""),
        ("/render?target=a.b&from=-1m", "bad time \"-1m\""),
        ("/render?target=a.b&from=100&until=100", "empty time range"),
        (
            "/render?target=a.b&format=xml",
            "format \"xml\" is not supported",
        ),
        (
            "/render?target=a.b&maxDataPoints=lots",
            "parameter \"maxDataPoints\"",
        ),
        (
            "/render?target=movingAverage(a.b)",
            "missing argument \"windowSize\"",
        ),
        ("/metrics/find", "parameter \"query\" is required"),
        ("/tags/autoComplete/values", "parameter \"tag\" is required"),
    ];
    for (path, want) in cases {
        let (status, body) = get(&store.url(path));
        assert_eq!(status, 400, "{path}: {body}");
        // graphite-web's JSON views (`/tags/*`) answer `{"error": ...}`; the others text.
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        assert!(message.contains(want), "{path}: {message:?} lacks {want:?}");
    }
    let (status, body) = get(&store.url(&format!("/render?target={}", enc("seriesByTag('a!=b')"))));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("must not match the empty string"), "{body}");
}

/// A deeply nested target used to overflow a worker's stack and abort the whole store (ingest,
/// alerts, reads); now it is a 400 that says where, and the store keeps answering.
#[test]
fn no_target_or_pattern_can_overflow_the_stack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start_quiet(dir.path());
    let client = reqwest::blocking::Client::new();
    let nested = format!("{}a.b{}", "absolute(".repeat(3000), ")".repeat(3000));
    let r = client
        .post(store.url("/render"))
        .form(&[("target", nested.as_str()), ("format", "json")])
        .send()
        .expect("render");
    assert_eq!(r.status(), 400);
    let text = r.text().expect("body");
    assert!(text.contains("at most 64 levels"), "{text}");
    for path in [
        format!("/render?target={}", enc(&"(".repeat(10_000))),
        format!(
            "/render?target={}",
            enc(&format!("a.b{}", "|absolute()".repeat(3000)))
        ),
        format!("/metrics/find?query={}", enc(&"{".repeat(10_000))),
        format!(
            "/metrics/find?query={}",
            enc(&format!("{}a{}", "{".repeat(5000), "}".repeat(5000)))
        ),
        // Atlas: an expression 5,000 deep, one that doubles itself 40 times, a deep query.
        // Over a query, not a constant: math on constants folds into one constant (as in
        // Atlas), which no depth can overflow.
        format!(
            "/api/v1/graph?format=json&q=name,a,:eq,:sum{}",
            ",:abs".repeat(5000)
        ),
        format!(
            "/api/v1/graph?format=json&q=name,a,:eq,:sum{}",
            ",:dup,:add".repeat(40)
        ),
        format!(
            "/api/v1/graph?format=json&q=name,a,:eq{}",
            ",:not".repeat(5000)
        ),
    ] {
        let (status, body) = get(&store.url(&path));
        assert_eq!(status, 400, "{}: {body}", &path[..40]);
    }
    let (status, body) = get(&store.url("/render?target=absolute(a.b)&format=json"));
    assert_eq!((status, body.as_str()), (200, "[]"));
    // 5,000 :abs of a constant fold as they are pushed: a constant, answered.
    let (status, body) = get(&store.url(&format!(
        "/api/v1/graph?format=json&q=1{}",
        ",:abs".repeat(5000)
    )));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn limits_refuse_instead_of_exhausting_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start_with_config(dir.path(), "self_metrics_interval = \"0s\"\n[query]\nmax_series_per_request = 3\nmax_points_per_request = 1000\n");
    let now = tally_common::unix_now();
    let body: String = (0..5).map(|i| format!("lim.s{i} 1 {now}\n")).collect();
    let r = reqwest::blocking::Client::new()
        .post(store.url("/api/v1/ingest"))
        .body(body)
        .send()
        .expect("ingest");
    assert_eq!(r.status(), 200);
    let (status, text) = get(&store.url("/render?target=lim.*&from=-5min"));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("more than 3 series"), "{text}");
    let (status, text) = get(&store.url("/render?target=lim.s1&from=-1d"));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("more than 1000 points"), "{text}");
    let (status, _) = get(&store.url("/render?target=lim.s1&from=-5min"));
    assert_eq!(status, 200);
}

#[test]
fn tokens_guard_writes_and_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start_with_config(
        dir.path(),
        "self_metrics_interval = \"0s\"\nwrite_token = \"w\"\nread_token = \"r\"\n",
    );
    let client = reqwest::blocking::Client::new();
    let event = r#"{"what": "deploy", "tags": ["a"]}"#;
    let post = |token: Option<&str>| {
        let mut req = client.post(store.url("/events/")).body(event);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.send().expect("post").status().as_u16()
    };
    assert_eq!(post(None), 401);
    assert_eq!(post(Some("r")), 401, "the read token does not allow writes");
    assert_eq!(post(Some("w")), 200);
    let read = |token: Option<&str>| {
        let mut req = client.get(store.url("/events/get_data?tags=a"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = req.send().expect("get");
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    assert_eq!(read(None).0, 401);
    let (status, body) = read(Some("r"));
    assert_eq!(status, 200);
    assert!(body.contains("\"what\":\"deploy\""), "{body}");
    assert_eq!(
        get(&store.url("/version")).0,
        401,
        "reads need the read token when one is set"
    );
    assert_eq!(read(Some("w")).0, 200, "the write token grants reads");
    // Issue 17: the store's own routes stand behind the same tokens: raw reads and /metrics
    // need the read token, ingest the write token, and without a token a series that exists
    // and one that does not get the same answer.
    let call = |method: &str, path: &str, token: Option<&str>, body: String| {
        let mut req = client.request(method.parse().expect("method"), store.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = req.body(body).send().expect("request");
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    let line = format!("secret.series 1 {}\n", tally_common::unix_now());
    assert_eq!(call("POST", "/api/v1/ingest", None, line.clone()).0, 401);
    assert_eq!(
        call("POST", "/api/v1/ingest", Some("r"), line.clone()).0,
        401
    );
    assert_eq!(call("POST", "/api/v1/ingest", Some("w"), line).0, 200);
    let known = call(
        "GET",
        "/api/v1/read?name=secret.series",
        None,
        String::new(),
    );
    let missing = call(
        "GET",
        "/api/v1/read?name=no.such.series",
        None,
        String::new(),
    );
    assert_eq!(known.0, 401);
    assert_eq!(known, missing);
    let read_raw = call(
        "GET",
        "/api/v1/read?name=secret.series",
        Some("r"),
        String::new(),
    );
    assert_eq!(read_raw.0, 200, "{}", read_raw.1);
    assert_eq!(call("GET", "/metrics", None, String::new()).0, 401);
    assert_eq!(call("GET", "/metrics", Some("r"), String::new()).0, 200);
    assert_eq!(
        call("GET", "/", None, String::new()).0,
        200,
        "the page's shell is open"
    );
}

#[test]
fn metrics_open_lets_a_scraper_in_without_the_read_token_issue_17() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StoreProc::start_with_config(
        dir.path(),
        "self_metrics_interval = \"0s\"\nread_token = \"r\"\nmetrics_open = true\n",
    );
    let (status, text) = get(&store.url("/metrics"));
    assert_eq!(status, 200);
    assert!(text.contains("tally_store_points_received"), "{text}");
    assert_eq!(get(&store.url("/api/v1/read?name=a.b")).0, 401);
    // With only a read token, writes need it too: no token configuration leaves writes open.
    let r = reqwest::blocking::Client::new()
        .post(store.url("/api/v1/ingest"))
        .body("a.b 1 -1\n")
        .send()
        .expect("post");
    assert_eq!(r.status(), 401);
}
