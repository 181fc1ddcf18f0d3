//! What the query side's fuzz targets check, one function per target, shared by the targets
//! under cargo-fuzz (`fuzz_targets/`) and, on every `cargo test`, the replay of the checked-in
//! inputs (`tests/fuzz_corpora.rs` at the workspace root). Nothing here may panic on any input;
//! the asserts are what must hold for every input.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tally_query::alert::config::Alerting;
use tally_query::graphite::{parse, Expr};
use tally_query::time::parse_time;
use tally_query::{ApiOptions, Budget, Limits, MemSource, QueryConfig, QuerySettings, Source};

/// A fixed clock: the checks must not depend on when they run.
const NOW: i64 = 1_800_000_000;

fn calls<'e>(e: &'e Expr, out: &mut Vec<&'e tally_query::graphite::Call>) {
    if let Expr::Call(c) = e {
        out.push(c);
        for a in c.args.iter().chain(c.kwargs.iter().map(|(_, v)| v)) {
            calls(a, out);
        }
    }
}

/// `/render?target=`: a target parses, or fails with a position inside it. Every call's text
/// as written (which `seriesByTag` uses as its identity) parses again to a call of that name.
pub fn graphite_target(data: &[u8]) {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    match parse(target) {
        Ok(e) => {
            let mut found = Vec::new();
            calls(&e, &mut found);
            for c in found {
                match parse(&c.raw) {
                    Ok(Expr::Call(again)) => assert_eq!(again.name, c.name, "{:?}", c.raw),
                    other => panic!("call {:?} of {target:?} parsed as {other:?}", c.raw),
                }
            }
        }
        Err(tally_query::QueryError::Syntax { pos, .. }) => {
            assert!(pos <= target.len() && target.is_char_boundary(pos));
        }
        Err(e) => panic!("{target:?}: not a syntax error: {e}"),
    }
}

/// The series the render check reads: untagged and tagged, with nulls, at two steps, over the
/// hour the check asks for.
fn render_app() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let mut src = MemSource::default();
        let wave = |k: usize| -> Vec<Option<f64>> {
            (0..60)
                .map(|i| (i % (k + 3) != 0).then_some(((i * (k + 1)) % 17) as f64 - 4.5))
                .collect()
        };
        for (k, name) in [
            "web.host1.status.5xx",
            "web.host2.status.5xx",
            "web.host1.status.2xx",
            "web.host1.latency.p99",
            "requests;status=5xx;vhost=a",
            "requests;status=2xx;vhost=a",
            "requests;status=5xx;vhost=b",
        ]
        .into_iter()
        .enumerate()
        {
            src.add(name, 60, 60, wave(k));
        }
        src.add(
            "web.host2.latency.p99",
            600,
            600,
            vec![
                Some(1e300),
                None,
                Some(-0.0),
                Some(7.0),
                None,
                Some(f64::MIN_POSITIVE),
            ],
        );
        let source: Arc<dyn Source> = Arc::new(src);
        let opts = ApiOptions {
            limits: Limits {
                max_series: 1_000,
                max_points: 200_000,
                max_time: Duration::from_secs(2),
            },
            budget: Some(Budget::new(usize::MAX)),
            ..ApiOptions::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        (runtime, tally_query::router_with(source, opts))
    })
}

/// Every byte but letters and digits as `%XX`, for a query string.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A GET of `uri` from the held series' router: the status and the body.
fn get(uri: &str) -> (u16, axum::body::Bytes) {
    let (runtime, app) = render_app();
    runtime.block_on(async {
        use tower::ServiceExt;
        let req = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .expect("a request");
        let r = app.clone().oneshot(req).await.expect("an answer");
        let status = r.status().as_u16();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .expect("a body");
        (status, body)
    })
}

/// `/render`: a target evaluated over stored series (every function with whatever arguments
/// the fuzzer writes) and written in one of the formats; the first byte picks the format and
/// `maxDataPoints`. The answer is 200 (and a JSON answer parses) or the caller's mistake, 400
/// with a message; never a 500 (an evaluator that panicked or failed inside).
pub fn graphite_render(data: &[u8]) {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let Ok(target) = std::str::from_utf8(rest) else {
        return;
    };
    let format = ["json", "csv", "raw", "svg"][usize::from(opts & 3)];
    let max_points = if opts & 4 != 0 {
        "&maxDataPoints=7"
    } else {
        ""
    };
    let encoded = percent_encode(target);
    let uri = format!("/render?target={encoded}&from=0&until=3600&format={format}{max_points}");
    let (status, body) = get(&uri);
    match status {
        200 if format == "json" => {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
                panic!("{target:?}: the JSON answer does not parse: {e}");
            }
        }
        200 => {}
        400 => assert!(!body.is_empty(), "{target:?}: a 400 without a message"),
        _ => panic!(
            "{target:?} ({format}): answered {status}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// `/api/v1/graph`: an Atlas stack program evaluated over the same held series (every word
/// with whatever arguments the fuzzer writes), the first byte picking the format. The answer
/// is 200 (and a std.json answer parses) or 400 with a message; never a 500. The interpreter
/// alone must also refuse every bad program with a position inside it.
pub fn atlas_graph(data: &[u8]) {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let Ok(program) = std::str::from_utf8(rest) else {
        return;
    };
    if let Err(e) = tally_query::atlas::stack::Run::program(program) {
        assert!(e.pos <= program.len(), "{program:?}: {e}");
        assert!(!e.message.is_empty());
    }
    let format = ["std.json", "json", "csv", "txt", "stats.json", "png"][usize::from(opts % 6)];
    let step = if opts & 8 != 0 { "&step=5m" } else { "" };
    // The chart's options, small images so the fuzzer stays fast.
    let chart = [
        "",
        "&axis_per_line=1",
        "&scale=log",
        "&scale=log-linear&tz=US/Pacific",
        "&tick_labels=binary&palette=hash:reds",
        "&tick_labels=duration&no_legend_stats=1",
        "&theme=dark&stack=1",
        "&scale=sqrt&l=0&u=1",
        "&scale=pow2&title=$name&ylabel=$(name)",
        "&sort=max&order=desc&tz=UTC&tz=Asia/Kolkata",
    ][usize::from(opts >> 4) % 10];
    let size = if format == "png" { "&w=240&h=90" } else { "" };
    let encoded = percent_encode(program);
    let uri =
        format!("/api/v1/graph?q={encoded}&s=0&e=3600&tz=UTC&format={format}{step}{chart}{size}");
    let (status, body) = get(&uri);
    match status {
        200 if format == "png" => {
            assert!(body.starts_with(b"\x89PNG"), "{program:?}: not a PNG");
        }
        200 if format == "std.json" || format == "stats.json" => {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
                panic!("{program:?}: the {format} answer does not parse: {e}");
            }
        }
        200 => {}
        400 => assert!(!body.is_empty(), "{program:?}: a 400 without a message"),
        _ => panic!(
            "{program:?} ({format}): answered {status}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// `from`, `until` (and `tally rules test --from`): graphite's time grammar. Epoch seconds read
/// as themselves; anything else is a time or an error that quotes the input.
pub fn time(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for now in [NOW, 0] {
        match parse_time(input, now) {
            Ok(t) => {
                let digits = input.trim();
                if digits.len() != 8
                    && !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                {
                    assert_eq!(Some(t), digits.parse().ok(), "{input:?}");
                }
            }
            Err(e) => assert!(e.to_string().starts_with("bad time"), "{input:?}: {e}"),
        }
    }
}

/// The alert rules file (`--alerts`, reloaded on SIGHUP): rules, notifiers, their targets and
/// templates, every problem reported.
pub fn alert_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(problems) = Alerting::parse(text) {
        assert!(!problems.is_empty() && problems.iter().all(|p| !p.is_empty()));
    }
}

/// The `[query]` table of the store's config file, read as `tally store` reads it: the file
/// parsed by the store's config, the table checked and validated by the query side's.
pub fn query_table(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = tally_store::StoreConfig::parse(text) else {
        return;
    };
    let checked = QueryConfig::from_table(config.query).and_then(QuerySettings::try_from);
    if let Err(problems) = checked {
        assert!(!problems.is_empty() && problems.iter().all(|p| !p.is_empty()));
    }
}

/// A store's `format=tally` answer as a query node reads it (`read_render_tally`): an error
/// or series, never a panic, and never more values than 8 a byte (no answer makes the node
/// allocate without bound). What reads back encodes again (`render_tally`, packed or raw as
/// the values allow) and reads back the same, bit for bit.
pub fn render_tally(data: &[u8]) {
    let Ok(series) = tally_query::graphite::read_render_tally(data) else {
        return;
    };
    let values: usize = series.iter().map(|s| s.values.len()).sum();
    assert!(
        values <= data.len().saturating_mul(8),
        "{values} values from {} bytes",
        data.len()
    );
    let bits =
        |v: &[Option<f64>]| -> Vec<Option<u64>> { v.iter().map(|v| v.map(f64::to_bits)).collect() };
    let again: Vec<tally_query::TimeSeries> = series
        .iter()
        .map(|s| tally_query::TimeSeries::new(s.name.clone(), s.start, s.step, s.values.clone()))
        .collect();
    let back =
        tally_query::graphite::read_render_tally(&tally_query::graphite::render_tally(&again))
            .expect("an encoded answer reads back");
    assert_eq!(back.len(), series.len());
    for (b, s) in back.iter().zip(&series) {
        assert_eq!((&b.name, b.start, b.step), (&s.name, s.start, s.step));
        assert_eq!(bits(&b.values), bits(&s.values), "{}", s.name);
        assert_eq!(b.gaps, s.gaps, "{}", s.name);
    }
}
