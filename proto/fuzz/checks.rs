//! What the `decode` fuzz target checks, in one function that both run it: the target under
//! cargo-fuzz (`fuzz_targets/decode.rs`) and, on every `cargo test`, the replay of the
//! checked-in inputs (`tests/fuzz_corpora.rs` at the workspace root).
//!
//! Any bytes, split into reads anywhere: the decoder never panics, splitting never changes the
//! result, and every metric it yields encodes back to a line that parses to the same metric.

use tally_proto::{encode_metric, parse_line, Decoder, Lines, Parsed};

fn render(r: Result<Parsed<'_>, tally_proto::ParseError>) -> String {
    match r {
        Ok(Parsed::Metric(m)) => {
            let mut line = Vec::new();
            encode_metric(&m, &mut line);
            let back = parse_line(&line[..line.len() - 1]);
            match &back {
                Ok(Parsed::Metric(b)) => {
                    assert_eq!(b.name, m.name);
                    assert_eq!(b.timestamp, m.timestamp);
                    assert_eq!(b.value.to_bits(), m.value.to_bits());
                }
                other => panic!("{m:?} encoded as {line:?} parsed as {other:?}"),
            }
            format!("{m:?}")
        }
        Ok(Parsed::Skipped(s)) => format!("{s:?}"),
        Err(e) => e.to_string(),
    }
}

/// The first byte picks where reads split; a small line bound exercises the over-long path.
pub fn decode(data: &[u8]) {
    let (cut, input) = match data.split_first() {
        Some((c, rest)) => (*c as usize, rest),
        None => return,
    };
    let max = 64;
    let whole: Vec<String> = Lines::starting_at(input, 1, max).map(render).collect();
    let mut streamed = Vec::new();
    let mut d = Decoder::new(max);
    let step = cut.max(1);
    for chunk in input.chunks(step) {
        d.feed(chunk, |r| streamed.push(render(r)));
    }
    d.finish(|r| streamed.push(render(r)));
    assert_eq!(whole, streamed);
}
