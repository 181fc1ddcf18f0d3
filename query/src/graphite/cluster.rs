//! graphite-web 1.1.8's cluster formats: what one graphite-web asks of another with `local=1`
//! when it federates stores (`CLUSTER_SERVERS`), `format=pickle` and `format=msgpack` from
//! `/render` (`TimeSeries.getInfo()`) and `/metrics/find` (`pickle_nodes`, `msgpack_nodes`);
//! `../shared/contracts/graphite-api.md` section 9.
//!
//! Pickles are written by serde-pickle (protocol 2, plain lists, dicts, tuples and None), which
//! graphite's `SafeUnpickler` reads. One difference: graphite-web pickles a leaf's `intervals`
//! as its `IntervalSet` class; we send the list of `(start, end)` tuples its msgpack format
//! sends, which its `RemoteFinder` turns into the same `IntervalSet`.

use serde::Serialize;

use crate::error::{QueryError, Result};
use crate::series::TimeSeries;

/// One series as `TimeSeries.getInfo()` describes it.
#[derive(Serialize)]
struct SeriesInfo<'a> {
    name: &'a str,
    start: i64,
    end: i64,
    step: i64,
    values: Vec<Option<f64>>,
    #[serde(rename = "pathExpression")]
    path_expression: &'a str,
    #[serde(rename = "valuesPerPoint")]
    values_per_point: usize,
    #[serde(rename = "consolidationFunc")]
    consolidation_func: &'a str,
    #[serde(rename = "xFilesFactor")]
    x_files_factor: f64,
}

fn infos(series: &[TimeSeries]) -> Vec<SeriesInfo<'_>> {
    series
        .iter()
        .map(|s| SeriesInfo {
            name: &s.name,
            start: s.start,
            end: s.end,
            step: s.step,
            values: s.values(),
            path_expression: &s.path_expression,
            values_per_point: s.values_per_point.max(1),
            consolidation_func: s.consolidation.name(),
            x_files_factor: s.x_files_factor,
        })
        .collect()
}

/// One node as `pickle_nodes`/`msgpack_nodes` describe it: a leaf carries its intervals.
#[derive(Serialize)]
pub(crate) struct NodeInfo {
    pub path: String,
    pub is_leaf: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<(f64, f64)>>,
}

fn pickle<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_pickle::to_vec(v, serde_pickle::SerOptions::new().proto_v2())
        .map_err(|e| QueryError::Internal(format!("pickle encoding failed: {e}")))
}

fn msgpack<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(v)
        .map_err(|e| QueryError::Internal(format!("msgpack encoding failed: {e}")))
}

/// `/render?format=pickle`.
pub(crate) fn render_pickle(series: &[TimeSeries]) -> Result<Vec<u8>> {
    pickle(&infos(series))
}

/// `/render?format=msgpack`: the bytes rmp-serde writes for [`SeriesInfo`]s (a test keeps
/// them equal), written by hand around the values. A query node reads millions of values this
/// way; serde's per-element calls were most of the store's time answering it.
pub(crate) fn render_msgpack(series: &[TimeSeries]) -> Result<Vec<u8>> {
    use rmp::encode as enc;
    let fail = |e: rmp::encode::ValueWriteError| {
        QueryError::Internal(format!("msgpack encoding failed: {e}"))
    };
    let points: usize = series.iter().map(|s| s.len()).sum();
    let mut out: Vec<u8> = Vec::with_capacity(points * 9 + series.len() * 256 + 8);
    enc::write_array_len(&mut out, series.len() as u32).map_err(fail)?;
    for s in series {
        enc::write_map_len(&mut out, 9).map_err(fail)?;
        enc::write_str(&mut out, "name").map_err(fail)?;
        enc::write_str(&mut out, &s.name).map_err(fail)?;
        enc::write_str(&mut out, "start").map_err(fail)?;
        enc::write_sint(&mut out, s.start).map_err(fail)?;
        enc::write_str(&mut out, "end").map_err(fail)?;
        enc::write_sint(&mut out, s.end).map_err(fail)?;
        enc::write_str(&mut out, "step").map_err(fail)?;
        enc::write_sint(&mut out, s.step).map_err(fail)?;
        enc::write_str(&mut out, "values").map_err(fail)?;
        let values = s.values_cow();
        enc::write_array_len(&mut out, values.len() as u32).map_err(fail)?;
        // Sized first, then written in place: one bounds check per value, no growth.
        let held = values.iter().filter(|v| v.is_some()).count();
        let mut at = out.len();
        out.resize(at + held * 9 + (values.len() - held), 0xc0);
        for v in values.iter() {
            match v {
                Some(v) => {
                    if let Some(slot) = out.get_mut(at..at + 9) {
                        slot[0] = 0xcb;
                        slot[1..].copy_from_slice(&v.to_be_bytes());
                    }
                    at += 9;
                }
                None => at += 1,
            }
        }
        enc::write_str(&mut out, "pathExpression").map_err(fail)?;
        enc::write_str(&mut out, &s.path_expression).map_err(fail)?;
        enc::write_str(&mut out, "valuesPerPoint").map_err(fail)?;
        enc::write_uint(&mut out, s.values_per_point.max(1) as u64).map_err(fail)?;
        enc::write_str(&mut out, "consolidationFunc").map_err(fail)?;
        enc::write_str(&mut out, s.consolidation.name()).map_err(fail)?;
        enc::write_str(&mut out, "xFilesFactor").map_err(fail)?;
        enc::write_f64(&mut out, s.x_files_factor).map_err(fail)?;
    }
    Ok(out)
}

/// The first bytes of a [`render_tally`] answer (and its version).
const TALLY_MAGIC: &[u8; 8] = b"TALLY\x00\x01\n";

/// What a missing value is in a [`render_tally`] answer: a NaN no store writes (stored points
/// are never NaN, and any other NaN keeps its own bits).
const MISSING: u64 = 0x7ff8_7a11_7a11_0000;

/// `/render?format=tally`: Tally's own answer for a query node, the same series as
/// `format=msgpack` in a layout read at memory speed: the magic, the series count (u32), then
/// per series its name (u32 length and UTF-8), start and step (i64), the value count (u32) and
/// the values as little-endian f64, [`MISSING`] for none. msgpack spends a branch and 9 bytes
/// per value on both sides; a node reads millions per render.
pub(crate) fn render_tally(series: &[TimeSeries]) -> Vec<u8> {
    let points: usize = series.iter().map(|s| s.len()).sum();
    let mut out = Vec::with_capacity(points * 8 + series.len() * 64 + 16);
    out.extend_from_slice(TALLY_MAGIC);
    out.extend_from_slice(&(series.len() as u32).to_le_bytes());
    for s in series {
        out.extend_from_slice(&(s.name.len() as u32).to_le_bytes());
        out.extend_from_slice(s.name.as_bytes());
        out.extend_from_slice(&s.start.to_le_bytes());
        out.extend_from_slice(&s.step.to_le_bytes());
        let values = s.values_cow();
        out.extend_from_slice(&(values.len() as u32).to_le_bytes());
        out.extend(values.iter().flat_map(|v| match v {
            Some(v) => v.to_bits().to_le_bytes(),
            None => MISSING.to_le_bytes(),
        }));
    }
    out
}

/// Reads a [`render_tally`] answer. Never panics; a malformed answer is an error saying where.
pub fn read_render_tally(bytes: &[u8]) -> std::result::Result<Vec<RemoteSeries>, String> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| format!("the answer ends at byte {} inside a value", bytes.len()))?;
        let s = &bytes[*at..end];
        *at = end;
        Ok(s)
    };
    let u32_at = |at: &mut usize| -> std::result::Result<usize, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(take(at, 4)?);
        Ok(u32::from_le_bytes(b) as usize)
    };
    let i64_at = |at: &mut usize| -> std::result::Result<i64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(take(at, 8)?);
        Ok(i64::from_le_bytes(b))
    };
    if take(&mut at, TALLY_MAGIC.len())? != TALLY_MAGIC {
        return Err("not a Tally series answer (format=tally)".into());
    }
    let n = u32_at(&mut at)?;
    let mut out = Vec::with_capacity(n.min(bytes.len() / 24));
    for _ in 0..n {
        let len = u32_at(&mut at)?;
        let name_at = at;
        let name = std::str::from_utf8(take(&mut at, len)?)
            .map_err(|e| format!("byte {name_at}: a name {e}"))?
            .to_owned();
        let start = i64_at(&mut at)?;
        let step = i64_at(&mut at)?;
        let count = u32_at(&mut at)?;
        let raw = take(&mut at, count.checked_mul(8).ok_or("too many values")?)?;
        let mut values = Vec::with_capacity(count);
        let mut gaps: Option<(usize, usize)> = None;
        for (i, c) in raw.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            let bits = u64::from_le_bytes(b);
            if bits == MISSING {
                values.push(None);
                gaps = Some(gaps.map_or((i, i), |(first, _)| (first, i)));
            } else {
                values.push(Some(f64::from_bits(bits)));
            }
        }
        out.push(RemoteSeries {
            name,
            start,
            step,
            values,
            gaps,
        });
    }
    if at != bytes.len() {
        return Err(format!("{} bytes after the answer", bytes.len() - at));
    }
    Ok(out)
}

/// One series of a `/render?format=tally` answer, as a query node reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSeries {
    pub name: String,
    pub start: i64,
    pub step: i64,
    pub values: Vec<Option<f64>>,
    /// The first and the last missing value's index, if any is missing.
    pub gaps: Option<(usize, usize)>,
}

/// `/metrics/find?format=pickle`.
pub(crate) fn find_pickle(nodes: &[NodeInfo]) -> Result<Vec<u8>> {
    pickle(&nodes)
}

/// `/metrics/find?format=msgpack`.
pub(crate) fn find_msgpack(nodes: &[NodeInfo]) -> Result<Vec<u8>> {
    msgpack(&nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_pickle::{HashableValue as H, Value as V};

    fn random_series(seed: u64) -> Vec<TimeSeries> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..(next() % 5))
            .map(|i| {
                let n = (next() % 70) as usize;
                let values = (0..n)
                    .map(|_| match next() % 4 {
                        0 => None,
                        1 => Some((next() % 1000) as f64),
                        2 => Some(f64::from_bits(next())),
                        _ => Some(-((next() % 100_000) as f64) / 7.0),
                    })
                    .collect();
                let mut s = TimeSeries::new(
                    format!("a.b{i};tag=v{}", next() % 3),
                    (next() % 2_000_000_000) as i64 - 1_000_000_000,
                    (next() % 3600) as i64 + 1,
                    values,
                );
                s.path_expression = "x".repeat((next() % 300) as usize);
                s
            })
            .collect()
    }

    /// The hand-written encoder writes rmp-serde's bytes.
    #[test]
    fn render_msgpack_is_rmp_serdes_and_reads_back() {
        for seed in 1..300u64 {
            let series = random_series(seed);
            let fast = render_msgpack(&series).expect("packs");
            assert_eq!(
                fast,
                msgpack(&infos(&series)).expect("packs"),
                "seed {seed}"
            );
        }
    }

    /// Tally's own format reads back every value bit for bit, and never panics on cut or
    /// mutated answers.
    #[test]
    fn render_tally_reads_back_and_never_panics() {
        for seed in 1..300u64 {
            let series = random_series(seed);
            let bytes = render_tally(&series);
            let back = read_render_tally(&bytes).expect("reads");
            assert_eq!(back.len(), series.len());
            for (b, s) in back.iter().zip(&series) {
                assert_eq!(
                    (b.name.as_str(), b.start, b.step),
                    (s.name.as_str(), s.start, s.step)
                );
                let want: Vec<Option<u64>> =
                    s.values().iter().map(|v| v.map(f64::to_bits)).collect();
                let got: Vec<Option<u64>> = b.values.iter().map(|v| v.map(f64::to_bits)).collect();
                assert_eq!(got, want, "seed {seed}");
                let gaps = (
                    want.iter().position(Option::is_none),
                    want.iter().rposition(Option::is_none),
                );
                assert_eq!(b.gaps, gaps.0.zip(gaps.1));
            }
            for cut in 0..bytes.len() {
                assert!(read_render_tally(&bytes[..cut]).is_err());
            }
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut b = bytes.clone();
                let i = (x as usize) % b.len();
                b[i] = (x >> 40) as u8;
                let _ = read_render_tally(&b);
            }
        }
        assert!(read_render_tally(b"junk").is_err());
    }

    #[test]
    fn render_pickle_is_graphites_get_info() {
        let mut s = TimeSeries::new("a.b", 60, 60, vec![Some(1.0), None]);
        s.path_expression = "a.*".into();
        let bytes = render_pickle(&[s.clone()]).expect("pickles");
        assert_eq!(bytes[..2], [0x80, 2], "protocol 2");
        let v: V = serde_pickle::value_from_slice(&bytes, Default::default()).expect("unpickles");
        let V::List(list) = v else { panic!("{v:?}") };
        let V::Dict(d) = &list[0] else {
            panic!("{list:?}")
        };
        let get = |k: &str| d.get(&H::String(k.into())).cloned();
        assert_eq!(get("name"), Some(V::String("a.b".into())));
        assert_eq!(get("pathExpression"), Some(V::String("a.*".into())));
        assert_eq!(get("start"), Some(V::I64(60)));
        assert_eq!(get("end"), Some(V::I64(180)));
        assert_eq!(get("step"), Some(V::I64(60)));
        assert_eq!(get("values"), Some(V::List(vec![V::F64(1.0), V::None])));
        assert_eq!(get("valuesPerPoint"), Some(V::I64(1)));
        assert_eq!(get("consolidationFunc"), Some(V::String("average".into())));
        assert_eq!(get("xFilesFactor"), Some(V::F64(0.0)));
        assert_eq!(d.len(), 9);
        let m: Vec<serde_json::Value> =
            rmp_serde::from_slice(&render_msgpack(&[s]).expect("packs")).expect("unpacks");
        assert_eq!(m[0]["values"], serde_json::json!([1.0, null]));
        assert_eq!(m[0]["consolidationFunc"], "average");
    }
}
