//! What the query side's fuzz targets check, one function per target, shared by the targets
//! under cargo-fuzz (`fuzz_targets/`) and, on every `cargo test`, the replay of the checked-in
//! inputs (`tests/fuzz_corpora.rs` at the workspace root). Nothing here may panic on any input;
//! the asserts are what must hold for every input.

use tally_query::alert::config::Alerting;
use tally_query::graphite::{parse, Expr};
use tally_query::time::parse_time;
use tally_query::{QueryConfig, QuerySettings};

/// A fixed clock: the checks must not depend on when they run.
const NOW: i64 = 1_800_000_000;

/// Inputs nested deeper than this are skipped for now: the parser has no depth limit yet and
/// overflows its stack on deep nesting (issue 17, being fixed in the parser). Once it refuses
/// deep input with an error, this guard goes and the fuzzer checks that refusal too.
const MAX_NESTING: usize = 100;

/// How deep the parentheses nest, counting unbalanced ones.
fn nesting(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'(' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

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
    if nesting(target) > MAX_NESTING {
        return;
    }
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
    if nesting(text) > MAX_NESTING {
        return;
    }
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
