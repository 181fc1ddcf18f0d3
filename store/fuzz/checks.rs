//! What the store's fuzz targets check, one function per target, shared by the targets under
//! cargo-fuzz (`fuzz_targets/`) and, on every `cargo test`, the replay of the checked-in inputs
//! (`tests/fuzz_corpora.rs` at the workspace root). Nothing here may panic on any input; the
//! asserts are what must hold for every input.

use std::sync::OnceLock;

use tally_proto::{encode, parse_line, Parsed, Timestamp};
use tally_store::{MemIndex, PointBatch, Settings, StoreConfig};

/// A fixed clock: the checks must not depend on when they run.
const NOW: i64 = 1_800_000_000;

/// `POST /api/v1/ingest`: the body as the handler decodes it. Every line is accounted for
/// exactly once (accepted, rejected or skipped), the batch holds exactly the accepted points,
/// the reply quotes at most its limit of bad lines, and every point encodes back to a line that
/// parses to the same point.
pub fn ingest_body(data: &[u8]) {
    let (batch, reply) = PointBatch::from_ingest_body(data, NOW);
    let lines = data.split(|&b| b == b'\n').count() - usize::from(data.last() == Some(&b'\n'));
    let lines = if data.is_empty() { 0 } else { lines };
    assert_eq!(
        reply.accepted + reply.rejected + reply.skipped,
        lines as u64,
        "{reply:?}"
    );
    assert_eq!(reply.accepted, batch.len() as u64);
    assert_eq!(
        reply.errors.len() as u64,
        reply
            .rejected
            .min(tally_proto::batch::MAX_REPORTED_ERRORS as u64)
    );
    let mut line = Vec::new();
    for (name, ts, value) in batch.iter() {
        assert!(!value.is_nan(), "{name}: NaN is skipped, never stored");
        line.clear();
        encode(name, value, Timestamp::At(ts), &mut line);
        match parse_line(&line[..line.len() - 1]) {
            Ok(Parsed::Metric(m)) => {
                assert_eq!(m.name, name);
                assert_eq!(m.value.to_bits(), value.to_bits());
                assert_eq!(m.timestamp.resolve(NOW), ts);
            }
            other => panic!("{name} {value} {ts} encoded as {line:?} parsed as {other:?}"),
        }
    }
}

/// The store's config file, as `tally store --config` reads it: text to [`StoreConfig`], then
/// validated into [`Settings`]. Either step may refuse, but with a message, never a panic.
pub fn store_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match StoreConfig::parse(text) {
        Ok(config) => {
            if let Err(e) = Settings::try_from(config) {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(problems) => assert!(problems.iter().all(|p| !p.is_empty()) && !problems.is_empty()),
    }
}

/// The names of the index the pattern checks search: plain paths and tagged names.
const NAMES: &[&str] = &[
    "a.b.c",
    "a.b.d",
    "a.bb.c",
    "a.{x}.c",
    "srv.web1.cpu",
    "srv.web2.cpu",
    "srv.web10.mem",
    "x",
    "requests;host=web1;status=2xx;vhost=www.example.com",
    "requests;host=web2;status=5xx;vhost=api.example.com",
    "latency;host=web1;stat=p99;vhost=www.example.com",
    "beacons;source=cdn_fastly",
];

fn index() -> &'static MemIndex {
    static INDEX: OnceLock<MemIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut ix = MemIndex::default();
        for name in NAMES {
            ix.insert(name);
        }
        ix
    })
}

/// Graphite globs (`/metrics/find`, `/metrics/expand`, path expressions of `/render`) and
/// `seriesByTag` expressions (one per line), over a small index. The first byte picks which.
/// Whatever matches is a series of the index, sorted, and a plain name finds itself.
pub fn series_patterns(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let ix = index();
    let names = match which % 3 {
        0 => match ix.find(text) {
            Ok(found) => {
                for m in &found {
                    assert!(m.is_leaf || m.has_children, "{text:?}: {m:?}");
                }
                return;
            }
            Err(e) => return assert!(!e.to_string().is_empty()),
        },
        1 => ix.expand(text),
        _ => ix.select_by_tags(&text.split('\n').collect::<Vec<_>>()),
    };
    match names {
        Ok(names) => {
            assert!(names.windows(2).all(|w| w[0] < w[1]), "{text:?}: {names:?}");
            assert!(
                names.iter().all(|n| NAMES.contains(&n.as_str())),
                "{text:?}: {names:?}"
            );
            if which % 3 == 1 && NAMES.contains(&text) && !text.contains(['{', '*', '?', '[', ';'])
            {
                assert_eq!(names, [text], "a plain name finds itself");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
