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
use tally_store::{decimal_places, scale_exactly};

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

/// The first bytes of a [`render_tally`] answer (and its version: 2 packs decimal values).
const TALLY_MAGIC: &[u8; 8] = b"TALLY\x00\x02\n";
/// Version 1's first bytes: every value a raw f64 (still read, from a store not upgraded yet).
const TALLY_MAGIC_V1: &[u8; 8] = b"TALLY\x00\x01\n";

/// What a missing value is in a raw [`render_tally`] series: a NaN no store writes (stored
/// points are never NaN, and any other NaN keeps its own bits).
const MISSING: u64 = 0x7ff8_7a11_7a11_0000;

/// A series' values as raw little-endian f64s, [`MISSING`] for none.
const RAW: u8 = 0;
/// A series' values as decimals: each held value is `(base + offset) / 10^scale` exactly,
/// the offsets packed in `width` bytes, and a bitmap of the held slots when one is missing.
const DECIMAL: u8 = 1;
/// Most decimal places a decimal series has (10^9 and the scaled values stay exact).
const MAX_SCALE: u32 = 9;

/// `/render?format=tally`: Tally's own answer for a query node, the same series as
/// `format=msgpack` in a layout read at memory speed: the magic, the series count (u32), then
/// per series its name (u32 length and UTF-8), start and step (i64), the value count (u32), a
/// mode byte and the values:
///
/// - [`DECIMAL`] when every held value is an integer after scaling by 10^k (counts, 3-decimal
///   latencies: what Tally stores most): k (u8), the smallest scaled value (i64), the offsets'
///   width in bytes (u8: 1, 2, 4 or 8), the held count (u32), a bitmap of held slots
///   (`ceil(count / 8)` bytes, least significant bit first) unless every slot is held, then
///   each held value's offset from the smallest, little-endian. A read of 3-decimal floats
///   moves 2 bytes a value instead of 8: a quarter of the bytes through both kernels and over
///   the wire between machines, where bandwidth is what a federated read waits for.
/// - [`RAW`] otherwise: little-endian f64s, [`MISSING`] for none.
pub fn render_tally(series: &[TimeSeries]) -> Vec<u8> {
    let points: usize = series.iter().map(|s| s.len()).sum();
    let mut w = TallyWriter::with_capacity(points * 2 + series.len() * 64);
    for s in series {
        w.push(&s.name, s.start, s.step, &s.values_cow(), None);
    }
    let mut out = Vec::with_capacity(TALLY_HEAD + w.out.len());
    out.extend_from_slice(&tally_head(w.count));
    out.extend_from_slice(&w.out);
    out
}

/// The bytes before a [`render_tally`] answer's series: the magic and the series count.
const TALLY_HEAD: usize = TALLY_MAGIC.len() + 4;

fn tally_head(count: usize) -> [u8; TALLY_HEAD] {
    let mut head = [0u8; TALLY_HEAD];
    head[..TALLY_MAGIC.len()].copy_from_slice(TALLY_MAGIC);
    head[TALLY_MAGIC.len()..].copy_from_slice(&(count as u32).to_le_bytes());
    head
}

/// [`render_tally`]'s series, one after the other, without the head: what one reading thread
/// of [`render_tally_names`] writes.
pub(crate) struct TallyWriter {
    out: Vec<u8>,
    count: usize,
    /// The decimal pass's scratch, kept from series to series.
    scaled: Vec<i64>,
}

impl TallyWriter {
    pub(crate) fn with_capacity(bytes: usize) -> TallyWriter {
        TallyWriter {
            out: Vec::with_capacity(bytes),
            count: 0,
            scaled: Vec::new(),
        }
    }

    /// Writes one series. `places`: as [`crate::Fetched::places`], decimal places the values
    /// are known to have (each then scaled without the check a value costs otherwise, a
    /// division: a third of a store's answer to a node).
    pub(crate) fn push(
        &mut self,
        name: &str,
        start: i64,
        step: i64,
        values: &[Option<f64>],
        places: Option<u32>,
    ) {
        let out = &mut self.out;
        self.count += 1;
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&step.to_le_bytes());
        out.extend_from_slice(&(values.len() as u32).to_le_bytes());
        let known = places.and_then(|k| with_places(values, &mut self.scaled, k));
        match known.or_else(|| as_decimal(values, &mut self.scaled)) {
            Some((scale, lo, hi)) => write_decimal(out, values, &self.scaled, scale, lo, hi),
            None => {
                out.push(RAW);
                // Sized once and written in place: a loop the compiler unrolls, where
                // `extend` over an iterator of arrays pushed byte by byte.
                let at = out.len();
                out.resize(at + values.len() * 8, 0);
                for (slot, v) in out[at..].chunks_exact_mut(8).zip(values.iter()) {
                    slot.copy_from_slice(&v.map_or(MISSING, f64::to_bits).to_le_bytes());
                }
            }
        }
    }
}

/// A store's answer to a query node's read by name (`local=1&series=...&format=tally`):
/// [`render_tally`] of the stored series `names` (sorted by name, as a read of them is), each
/// encoded as soon as it is read and its values dropped, so that the store holds the encoded
/// answer only (about 2 bytes a point, where the series held 16): the read of a node's share
/// neither grows the store's memory by the whole read nor pays for faulting it in. The parts
/// are the head and each reading thread's series, sent one after the other.
pub(crate) fn render_tally_names(
    ctx: &crate::fetch::Ctx,
    mut names: Vec<String>,
) -> crate::error::Result<Vec<Vec<u8>>> {
    names.sort_unstable();
    let per_thread = 64 * 1024;
    let parts = crate::fetch::read_each(
        ctx,
        &names,
        || TallyWriter::with_capacity(per_thread),
        |w, name, f| w.push(name, f.start, f.step, &f.values, f.places),
    )?;
    let count = parts.iter().map(|w| w.count).sum();
    let mut out = Vec::with_capacity(parts.len() + 1);
    out.push(tally_head(count).to_vec());
    out.extend(parts.into_iter().map(|w| w.out));
    Ok(out)
}

/// 10^k for k up to [`MAX_SCALE`], as f64 (each exact).
const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The held values scaled to integers (into `scaled`, in order), the scale and the smallest
/// and largest scaled value, when every one comes back bit for bit as `scaled / 10^scale`;
/// `None` when one does not (then the series goes raw). The scale only grows: a value that
/// needs more places starts the pass again.
fn as_decimal(values: &[Option<f64>], scaled: &mut Vec<i64>) -> Option<(u32, i64, i64)> {
    let mut k = 0u32;
    'again: loop {
        scaled.clear();
        scaled.reserve(values.len());
        let p = POW10[k as usize];
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for v in values.iter().flatten() {
            if let Some(x) = scale_exactly(*v, p) {
                scaled.push(x);
                lo = lo.min(x);
                hi = hi.max(x);
                continue;
            }
            // More places, if some scale holds this value at all.
            k = decimal_places(*v, k + 1).filter(|&k| k <= MAX_SCALE)?;
            continue 'again;
        }
        return Some(if scaled.is_empty() {
            (k, 0, 0)
        } else {
            (k, lo, hi)
        });
    }
}

/// Below this a value scaled from `x / 10^k` rounds back to `x` (the two roundings' errors stay
/// far under a half).
const ROUND_TRIP: f64 = 2_251_799_813_685_248.0; // 2^51

/// [`as_decimal`] for values known to be integers over 10^`k` (each `x as f64 / 10^j`,
/// correctly rounded, for some `j <= k`): each scaled and rounded, with no check, since the
/// reader's `x * 10^(k-j) as f64 / 10^k` is the same rational correctly rounded, so the same
/// double. `None` (the caller checks them all) for more places than [`MAX_SCALE`] or a value
/// too large to round back for sure.
fn with_places(values: &[Option<f64>], scaled: &mut Vec<i64>, k: u32) -> Option<(u32, i64, i64)> {
    let p = *POW10.get(k as usize)?;
    // Written by index into a cleared buffer, and the bounds found after: the loop keeps its
    // state in registers (pushing stored the length back at every value).
    scaled.clear();
    scaled.resize(values.len(), 0);
    let mut ok = true;
    let mut held = 0;
    for (slot, &v) in scaled.iter_mut().zip(values.iter().flatten()) {
        let y = v * p;
        // NaN fails this too.
        ok &= y.abs() < ROUND_TRIP;
        *slot = if y >= 0.0 { y + 0.5 } else { y - 0.5 } as i64;
        held += 1;
    }
    scaled.truncate(held);
    if !ok {
        return None;
    }
    let lo = scaled.iter().copied().min().unwrap_or(0);
    let hi = scaled.iter().copied().max().unwrap_or(0);
    Some((k, lo, hi))
}

/// A [`DECIMAL`] series (after the value count): see [`render_tally`].
fn write_decimal(
    out: &mut Vec<u8>,
    values: &[Option<f64>],
    scaled: &[i64],
    scale: u32,
    lo: i64,
    hi: i64,
) {
    // Both within ±2^53: the span fits a u64.
    let span = hi.wrapping_sub(lo) as u64;
    // At least a byte a held value (and a bit a slot), so that an answer of n bytes holds at
    // most 8n values: a store's answer cannot make the node allocate without bound.
    let width: usize = match span {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    };
    out.push(DECIMAL);
    out.push(scale as u8);
    out.extend_from_slice(&lo.to_le_bytes());
    out.push(width as u8);
    out.extend_from_slice(&(scaled.len() as u32).to_le_bytes());
    if scaled.len() < values.len() {
        let at = out.len();
        out.resize(at + values.len().div_ceil(8), 0);
        for (i, v) in values.iter().enumerate() {
            if v.is_some() {
                out[at + i / 8] |= 1 << (i % 8);
            }
        }
    }
    let at = out.len();
    out.resize(at + scaled.len() * width, 0);
    let dst = &mut out[at..];
    let off = |x: &i64| x.wrapping_sub(lo) as u64;
    // One loop per width, each with a fixed-size store (a slice of variable length is a
    // memcpy call per value).
    match width {
        1 => dst
            .iter_mut()
            .zip(scaled)
            .for_each(|(d, x)| *d = off(x) as u8),
        2 => dst
            .chunks_exact_mut(2)
            .zip(scaled)
            .for_each(|(d, x)| d.copy_from_slice(&(off(x) as u16).to_le_bytes())),
        4 => dst
            .chunks_exact_mut(4)
            .zip(scaled)
            .for_each(|(d, x)| d.copy_from_slice(&(off(x) as u32).to_le_bytes())),
        _ => dst
            .chunks_exact_mut(8)
            .zip(scaled)
            .for_each(|(d, x)| d.copy_from_slice(&off(x).to_le_bytes())),
    }
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
    let v1 = match take(&mut at, TALLY_MAGIC.len())? {
        m if m == TALLY_MAGIC => false,
        m if m == TALLY_MAGIC_V1 => true,
        _ => return Err("not a Tally series answer (format=tally)".into()),
    };
    let n = u32_at(&mut at)?;
    let mut out = Vec::with_capacity(n.min(bytes.len() / 24));
    for _ in 0..n {
        let len = u32_at(&mut at)?;
        let name_at = at;
        let name = std::str::from_utf8(take(&mut at, len)?)
            .map_err(|e| format!("byte {name_at}: a name {e}"))?
            .to_owned();
        let start = i64_at(&mut at)?;
        let step_at = at;
        let step = i64_at(&mut at)?;
        if step < 1 {
            // No store has such a series; the node's model would make it a step of 1.
            return Err(format!("byte {step_at}: a step of {step} s"));
        }
        let count = u32_at(&mut at)?;
        // The node's series end at `start + count * step`: one that overflows is no store's.
        if (count as i64)
            .checked_mul(step)
            .and_then(|d| start.checked_add(d))
            .is_none()
        {
            return Err(format!(
                "byte {step_at}: {count} values from {start} at {step} s end past any time"
            ));
        }
        let mode_at = at;
        let mode = if v1 { RAW } else { take(&mut at, 1)?[0] };
        // `full`: every slot held, so no gap to look for.
        let (values, full) = match mode {
            RAW => (
                decode_raw(take(
                    &mut at,
                    count.checked_mul(8).ok_or("too many values")?,
                )?),
                false,
            ),
            DECIMAL => {
                let head = take(&mut at, 10)?;
                let scale = u32::from(head[0]);
                if scale > MAX_SCALE {
                    return Err(format!("byte {mode_at}: {scale} decimal places"));
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&head[1..9]);
                let lo = i64::from_le_bytes(b);
                let width = usize::from(head[9]);
                if ![1, 2, 4, 8].contains(&width) {
                    return Err(format!("byte {mode_at}: offsets {width} bytes wide"));
                }
                let held = u32_at(&mut at)?;
                if held > count {
                    return Err(format!("byte {mode_at}: {held} values held of {count}"));
                }
                let bitmap = if held < count {
                    Some(take(&mut at, count.div_ceil(8))?)
                } else {
                    None
                };
                let offsets = take(&mut at, held.checked_mul(width).ok_or("too many values")?)?;
                let values = decode_decimal(count, bitmap, offsets, width, lo, scale, held)
                    .ok_or_else(|| {
                        format!("byte {mode_at}: the bitmap holds other than {held} values")
                    })?;
                (values, bitmap.is_none())
            }
            other => return Err(format!("byte {mode_at}: unknown value mode {other}")),
        };
        let gaps = if full {
            None
        } else {
            values
                .iter()
                .position(Option::is_none)
                .zip(values.iter().rposition(Option::is_none))
        };
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

/// The values of one raw series (`raw`: a multiple of 8 bytes). Collected from an exact-size
/// iterator, so the vector is allocated once and filled without a capacity check per value.
fn decode_raw(raw: &[u8]) -> Vec<Option<f64>> {
    raw.chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            let bits = u64::from_le_bytes(b);
            (bits != MISSING).then(|| f64::from_bits(bits))
        })
        .collect()
}

/// The values of one decimal series; `None` when the bitmap's held slots are not `held`.
fn decode_decimal(
    count: usize,
    bitmap: Option<&[u8]>,
    offsets: &[u8],
    width: usize,
    lo: i64,
    scale: u32,
    held: usize,
) -> Option<Vec<Option<f64>>> {
    let p = POW10[scale as usize];
    let value = |i: usize| -> f64 {
        let mut b = [0u8; 8];
        if let Some(c) = offsets.get(i * width..(i + 1) * width) {
            b[..width].copy_from_slice(c);
        }
        (lo.wrapping_add(u64::from_le_bytes(b) as i64)) as f64 / p
    };
    let Some(bitmap) = bitmap else {
        // Every slot held: the common case, one pass per width the compiler specialises.
        return Some(match width {
            1 => offsets
                .iter()
                .map(|&o| Some(lo.wrapping_add(i64::from(o)) as f64 / p))
                .collect(),
            2 => offsets
                .chunks_exact(2)
                .map(|c| {
                    Some(lo.wrapping_add(i64::from(u16::from_le_bytes([c[0], c[1]]))) as f64 / p)
                })
                .collect(),
            _ => (0..count).map(|i| Some(value(i))).collect(),
        });
    };
    let mut out = Vec::with_capacity(count);
    let mut next = 0usize;
    for i in 0..count {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            if next == held {
                return None;
            }
            out.push(Some(value(next)));
            next += 1;
        } else {
            out.push(None);
        }
    }
    (next == held).then_some(out)
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
                // Each series draws from two kinds of value, so that some are all decimals
                // (packed) and some mixed (raw).
                let kinds = [next() % 7, next() % 7];
                let values = (0..n)
                    .map(|_| match kinds[(next() % 2) as usize] {
                        0 => None,
                        1 => Some((next() % 1000) as f64),
                        2 => Some(f64::from_bits(next())),
                        3 => Some(-((next() % 100_000) as f64) / 7.0),
                        4 => Some((next() % 500_000) as f64 / 1000.0),
                        5 => Some(-0.0),
                        _ => Some((next() % 3) as f64 * 1e7 - 1e7),
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

    /// Decimal series (3-decimal floats, counts) move about 2 bytes a value, with or without
    /// gaps, and read back bit for bit; a version 1 answer (every value raw) still reads.
    #[test]
    fn render_tally_packs_decimals_and_reads_version_1() {
        let mut values: Vec<Option<f64>> = (0..2160)
            .map(|i| Some(f64::from(i % 500 + 1) / 1000.0))
            .collect();
        let dense = TimeSeries::new("a.b", 10, 10, values.clone());
        values[7] = None;
        values[2000] = None;
        let gappy = TimeSeries::new("a.c", 10, 10, values.clone());
        let counts = TimeSeries::new("a.d", 10, 10, vec![Some(3.0); 2160]);
        let bytes = render_tally(&[dense, gappy, counts]);
        assert!(
            bytes.len() < 2160 * 2 * 2 + 2160 + 2160 / 8 + 200,
            "{} bytes for 3 x 2160 decimal values",
            bytes.len()
        );
        let back = read_render_tally(&bytes).expect("reads");
        let bits = |v: &[Option<f64>]| -> Vec<Option<u64>> {
            v.iter().map(|v| v.map(f64::to_bits)).collect()
        };
        assert_eq!(bits(&back[1].values), bits(&values));
        assert_eq!(back[1].gaps, Some((7, 2000)));
        assert_eq!(back[0].gaps, None);
        assert_eq!(back[2].values, vec![Some(3.0); 2160]);

        let mut v1 = TALLY_MAGIC_V1.to_vec();
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&3u32.to_le_bytes());
        v1.extend_from_slice(b"x.y");
        v1.extend_from_slice(&60i64.to_le_bytes());
        v1.extend_from_slice(&60i64.to_le_bytes());
        v1.extend_from_slice(&2u32.to_le_bytes());
        v1.extend_from_slice(&0.5f64.to_bits().to_le_bytes());
        v1.extend_from_slice(&MISSING.to_le_bytes());
        let back = read_render_tally(&v1).expect("reads version 1");
        assert_eq!(back[0].values, vec![Some(0.5), None]);
        assert_eq!(back[0].gaps, Some((1, 1)));
    }

    proptest::proptest! {
        /// Values as a store's decimal chunks decode them (`x / 10^j`, a `j` per value up to
        /// the `k` promised, as when chunks of fewer places are read with one of more) write
        /// with the promise to the same values, bit for bit, as without it.
        #[test]
        fn push_with_places_reads_back_what_checking_each_does(
            k in 0u32..=9,
            raw in proptest::collection::vec(
                (
                    proptest::option::weighted(
                        0.9,
                        proptest::prop_oneof![-1_000_000i64..1_000_000, -(1i64 << 52)..(1i64 << 52)],
                    ),
                    0u32..=9,
                ),
                0..80,
            ),
        ) {
            let values: Vec<Option<f64>> = raw
                .iter()
                .map(|&(x, j)| x.map(|x| x as f64 / POW10[j.min(k) as usize]))
                .collect();
            let read = |places: Option<u32>| {
                let mut w = TallyWriter::with_capacity(64);
                w.push("a.b", 60, 60, &values, places);
                let mut bytes = tally_head(w.count).to_vec();
                bytes.extend_from_slice(&w.out);
                read_render_tally(&bytes).expect("reads")
            };
            let bits = |v: &[Option<f64>]| -> Vec<Option<u64>> {
                v.iter().map(|v| v.map(f64::to_bits)).collect()
            };
            let (known, checked) = (read(Some(k)), read(None));
            proptest::prop_assert_eq!(bits(&known[0].values), bits(&values));
            proptest::prop_assert_eq!(bits(&checked[0].values), bits(&values));
        }
    }

    /// A promise of places a value does not hold (too many, too large) falls back to checking.
    #[test]
    fn push_with_places_falls_back_when_it_cannot_keep_them() {
        for (values, k) in [
            (vec![Some(1.5), Some(2f64.powi(60))], 1),
            (vec![Some(1.25), None], 12),
            (vec![Some(f64::NAN)], 0),
        ] {
            let mut w = TallyWriter::with_capacity(64);
            w.push("a.b", 60, 60, &values, Some(k));
            let mut bytes = tally_head(w.count).to_vec();
            bytes.extend_from_slice(&w.out);
            let back = read_render_tally(&bytes).expect("reads");
            let bits = |v: &[Option<f64>]| -> Vec<Option<u64>> {
                v.iter().map(|v| v.map(f64::to_bits)).collect()
            };
            assert_eq!(bits(&back[0].values), bits(&values), "{values:?} at {k}");
        }
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
