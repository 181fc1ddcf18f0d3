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

/// One series of a `/render?format=msgpack` answer, as a query node reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSeries {
    pub name: String,
    pub start: i64,
    pub step: i64,
    pub values: Vec<Option<f64>>,
}

/// Reads a `/render?format=msgpack` answer (graphite's `getInfo()` maps, keys in any order,
/// unknown keys skipped): the name, start, step and values of each series. Values may be any
/// msgpack number or nil. Never panics; a malformed answer is an error saying where.
pub fn read_render_msgpack(bytes: &[u8]) -> std::result::Result<Vec<RemoteSeries>, String> {
    let mut r = Reader { b: bytes, at: 0 };
    let n = r.array_len()?;
    let mut out = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        let fields = r.map_len()?;
        let (mut name, mut start, mut step, mut values) = (None, None, None, None);
        for _ in 0..fields {
            let key = r.str()?;
            match key {
                "name" => name = Some(r.str()?.to_owned()),
                "start" => start = Some(r.int()?),
                "step" => step = Some(r.int()?),
                "values" => values = Some(r.values()?),
                _ => r.skip()?,
            }
        }
        let missing = |k: &str| format!("series {} of the answer has no \"{k}\"", out.len());
        out.push(RemoteSeries {
            name: name.ok_or_else(|| missing("name"))?,
            start: start.ok_or_else(|| missing("start"))?,
            step: step.ok_or_else(|| missing("step"))?,
            values: values.ok_or_else(|| missing("values"))?,
        });
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the answer", bytes.len() - r.at));
    }
    Ok(out)
}

/// A msgpack reader over a byte slice that says where it stopped; only what `getInfo()`
/// answers hold (arrays, maps, strings, numbers, nil, booleans) is read.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.left() < n {
            return Err(format!(
                "the answer ends at byte {} inside a value",
                self.b.len()
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn byte(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn unexpected(&self, m: u8, what: &str) -> String {
        format!("byte {}: 0x{m:02x} where {what} was expected", self.at - 1)
    }

    fn array_len(&mut self) -> std::result::Result<usize, String> {
        match self.byte()? {
            m @ 0x90..=0x9f => Ok(usize::from(m & 0x0f)),
            0xdc => Ok(usize::from(u16::from_be_bytes(self.be()?))),
            0xdd => Ok(u32::from_be_bytes(self.be()?) as usize),
            m => Err(self.unexpected(m, "an array")),
        }
    }

    fn map_len(&mut self) -> std::result::Result<usize, String> {
        match self.byte()? {
            m @ 0x80..=0x8f => Ok(usize::from(m & 0x0f)),
            0xde => Ok(usize::from(u16::from_be_bytes(self.be()?))),
            0xdf => Ok(u32::from_be_bytes(self.be()?) as usize),
            m => Err(self.unexpected(m, "a map")),
        }
    }

    fn str(&mut self) -> std::result::Result<&'a str, String> {
        let len = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(u16::from_be_bytes(self.be()?)),
            0xdb => u32::from_be_bytes(self.be()?) as usize,
            m => return Err(self.unexpected(m, "a string")),
        };
        let at = self.at;
        std::str::from_utf8(self.take(len)?).map_err(|e| format!("byte {at}: a string {e}"))
    }

    /// An array of numbers and nils, with the two forms Tally's stores write read in a
    /// tight loop and any other number through [`Reader::number_or_nil`].
    fn values(&mut self) -> std::result::Result<Vec<Option<f64>>, String> {
        let len = self.array_len()?;
        let mut v = Vec::with_capacity(len.min(self.left()));
        for _ in 0..len {
            let b = self.b;
            match b.get(self.at) {
                Some(0xc0) => {
                    v.push(None);
                    self.at += 1;
                }
                Some(0xcb) if b.len() - self.at >= 9 => {
                    let mut x = [0u8; 8];
                    x.copy_from_slice(&b[self.at + 1..self.at + 9]);
                    v.push(Some(f64::from_be_bytes(x)));
                    self.at += 9;
                }
                _ => v.push(self.number_or_nil()?),
            }
        }
        Ok(v)
    }

    /// Any msgpack number, as f64 (ints as graphite sends them for whole values), or nil.
    fn number_or_nil(&mut self) -> std::result::Result<Option<f64>, String> {
        let m = self.byte()?;
        Ok(Some(match m {
            0xc0 => return Ok(None),
            0xcb => f64::from_be_bytes(self.be()?),
            0xca => f64::from(f32::from_be_bytes(self.be()?)),
            0x00..=0x7f => f64::from(m),
            0xe0..=0xff => f64::from(m as i8),
            0xcc => f64::from(self.byte()?),
            0xcd => f64::from(u16::from_be_bytes(self.be()?)),
            0xce => f64::from(u32::from_be_bytes(self.be()?)),
            0xcf => u64::from_be_bytes(self.be()?) as f64,
            0xd0 => f64::from(self.byte()? as i8),
            0xd1 => f64::from(i16::from_be_bytes(self.be()?)),
            0xd2 => f64::from(i32::from_be_bytes(self.be()?)),
            0xd3 => i64::from_be_bytes(self.be()?) as f64,
            _ => return Err(self.unexpected(m, "a number or nil")),
        }))
    }

    fn int(&mut self) -> std::result::Result<i64, String> {
        let at = self.at;
        match self.number_or_nil()? {
            Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(v as i64),
            _ => Err(format!("byte {at}: not an integer")),
        }
    }

    /// Skips one value of any of the kinds `getInfo()` holds.
    fn skip(&mut self) -> std::result::Result<(), String> {
        let m = *self
            .b
            .get(self.at)
            .ok_or("the answer ends where a value was expected")?;
        match m {
            0xa0..=0xbf | 0xd9..=0xdb => self.str().map(|_| ()),
            0x90..=0x9f | 0xdc | 0xdd => {
                for _ in 0..self.array_len()? {
                    self.skip()?;
                }
                Ok(())
            }
            0x80..=0x8f | 0xde | 0xdf => {
                for _ in 0..self.map_len()? {
                    self.skip()?;
                    self.skip()?;
                }
                Ok(())
            }
            0xc2 | 0xc3 => self.byte().map(|_| ()),
            _ => self.number_or_nil().map(|_| ()),
        }
    }
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

    /// The hand-written encoder writes rmp-serde's bytes, and the reader reads them back.
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
            let back = read_render_msgpack(&fast).expect("reads");
            assert_eq!(back.len(), series.len());
            for (b, s) in back.iter().zip(&series) {
                assert_eq!(
                    (b.name.as_str(), b.start, b.step),
                    (s.name.as_str(), s.start, s.step)
                );
                let want = s.values();
                assert_eq!(b.values.len(), want.len());
                for (x, y) in b.values.iter().zip(&want) {
                    assert_eq!(x.map(f64::to_bits), y.map(f64::to_bits));
                }
            }
        }
    }

    /// Any bytes, and every cut of a good answer: an error or an answer, never a panic.
    #[test]
    fn the_reader_never_panics_on_bad_or_cut_answers() {
        let good = render_msgpack(&random_series(7)).expect("packs");
        for cut in 0..good.len() {
            assert!(read_render_msgpack(&good[..cut]).is_err() || cut == good.len());
        }
        let mut x = 0x1234_5678_9abc_def1_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut b = good.clone();
            if !b.is_empty() {
                let i = (x as usize) % b.len();
                b[i] = (x >> 32) as u8;
            }
            let _ = read_render_msgpack(&b);
            let junk: Vec<u8> = (0..(x % 40)).map(|i| (x >> (i % 56)) as u8).collect();
            let _ = read_render_msgpack(&junk);
        }
        // graphite-web sends whole values as ints, and keys in any order.
        let other = rmp_serde::to_vec_named(&vec![serde_json::json!({
            "values": [1, null, 2.5, -3], "step": 60, "xFilesFactor": 0.0,
            "name": "a.b", "start": 120, "end": 360, "intervals": [[1, 2]]
        })])
        .expect("packs");
        let r = read_render_msgpack(&other).expect("reads");
        assert_eq!(r[0].values, [Some(1.0), None, Some(2.5), Some(-3.0)]);
        assert_eq!((r[0].start, r[0].step), (120, 60));
    }
    use serde_pickle::{HashableValue as H, Value as V};

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
