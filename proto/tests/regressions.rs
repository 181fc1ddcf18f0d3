//! Inputs saved from fuzzing must keep passing the fuzz target's checks: no panic, and splitting
//! the stream anywhere gives the same result, for reads of several sizes. `fuzz/seeds/decode/`
//! is the fuzzer's corpus, minimized (`cargo fuzz cmin`), so every path the fuzzer reached is
//! replayed here; `fuzz/regressions/decode/` holds inputs that once failed (see
//! `fuzz/regressions/README.md` for what has been found so far).

use std::path::Path;

use tally_proto::{Decoder, Lines, ParseError, Parsed};

fn render(r: Result<Parsed<'_>, ParseError>) -> String {
    match r {
        Ok(Parsed::Metric(m)) => format!("{m:?}"),
        Ok(Parsed::Skipped(s)) => format!("{s:?}"),
        Err(e) => e.to_string(),
    }
}

fn check(input: &[u8]) {
    let whole: Vec<String> = Lines::starting_at(input, 1, 64).map(render).collect();
    for step in [1, 2, 3, 7, 64, 65, 4096] {
        let mut streamed = Vec::new();
        let mut d = Decoder::new(64);
        for chunk in input.chunks(step) {
            d.feed(chunk, |r| streamed.push(render(r)));
        }
        d.finish(|r| streamed.push(render(r)));
        assert_eq!(whole, streamed, "reads of {step} bytes");
    }
}

#[test]
fn saved_fuzz_inputs_still_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["regressions/decode", "seeds/decode"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with(".md") {
                continue;
            }
            let bytes = std::fs::read(entry.path()).expect("readable fuzz input");
            check(bytes.get(1..).unwrap_or_default());
            n += 1;
        }
    }
    assert!(
        n >= 50,
        "expected the minimized fuzz corpus under proto/fuzz/seeds/decode, found {n} inputs"
    );
}
