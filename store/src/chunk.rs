//! Compressed chunks of points: one RocksDB value holds a time bucket of one series.
//!
//! A chunk is a sorted run of timestamps and one or more value columns (one for raw points; five
//! for a rollup: sum, count, min, max, last). Timestamps are delta-of-delta coded as in Facebook's
//! Gorilla, and a regular series (reported at a fixed interval) costs nothing per point. Each
//! column is one of:
//!
//! - *decimal groups*: when every value is an integer after scaling by 10^k (k <= 9), the scaled
//!   integers as offsets, either from their minimum (noisy counts around a level) or as zigzag
//!   deltas (gauges, cumulative counters), in groups of 64 whose width follows the data (0, 2,
//!   4, 8 bits, or 16, 32, 64). Bytes, not an exact-width bit stream, because RocksDB's zstd on
//!   the bottommost level then entropy-codes them; see [`write_groups_column`]. Counters and
//!   3-decimal latencies, the bulk of what Tally stores, land here;
//! - *xor*: Gorilla's XOR float coding, for everything else.
//!
//! Layout of version 4: version:8, columns:8, count (varint), first ts (zigzag varint); if the
//! count is over 1, regular:8 and the first delta (zigzag varint), then unless regular the
//! delta-of-deltas, bit-packed and padded to a byte; then per column a mode:8 and its payload, ending on a byte.
//! Versions 1-3 (fixed-width bit fields, decimal frames of reference) still decode.
//! Decoding validates as it goes and never panics on corrupt bytes.

use crate::bits::{unzigzag, zigzag, BitReader, BitWriter, Truncated};
use crate::error::{Error, Result};

/// Version 2 added the regular-timestamps flag (and byte-aligned offsets up to 8 bits); version 3
/// says per column whether offsets are byte-aligned; version 4 writes decimal columns in byte
/// groups (`MODE_DEC_GROUPS`). Older versions still decode.
const VERSION: u64 = 4;
const MODE_XOR: u64 = 0;
const MODE_DEC_VALUES: u64 = 1;
const MODE_DEC_DELTAS: u64 = 2;
const MODE_DEC_GROUPS: u64 = 3;
/// Offsets per group of [`MODE_DEC_GROUPS`].
const GROUP: usize = 64;
/// Most points a chunk may hold: far above a bucket's (720 steps), far below anything that hurts.
const MAX_POINTS: usize = 1 << 20;
/// Largest integer a double holds exactly.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A decoded chunk: `ts` sorted ascending and unique, each column as long as `ts`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Points {
    pub ts: Vec<i64>,
    pub cols: Vec<Vec<f64>>,
}

impl Points {
    pub fn new(ncols: usize) -> Self {
        Points {
            ts: Vec::new(),
            cols: vec![Vec::new(); ncols],
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn push(&mut self, ts: i64, row: &[f64]) {
        self.ts.push(ts);
        for (col, v) in self.cols.iter_mut().zip(row) {
            col.push(*v);
        }
    }
}

/// Encodes points; `ts` must be sorted and unique (see [`merge_sorted`]).
///
/// Version 4's layout is byte-aligned where it can be, so that zstd sees its fields: version:8,
/// columns:8, count (varint), first ts (zigzag varint); if count > 1, regular:8 and the first
/// delta (zigzag varint), then unless regular the delta-of-deltas bit-packed and padded to a
/// byte; then the columns, each starting and ending on a byte.
pub fn encode(points: &Points) -> Vec<u8> {
    let n = points.ts.len();
    let mut w = BitWriter::with_capacity(16 + n * points.cols.len());
    w.write(VERSION, 8);
    w.write(points.cols.len() as u64, 8);
    w.varint(n as u64);
    if let Some(&first) = points.ts.first() {
        w.varint(zigzag(first));
    }
    if n > 1 {
        let mut prev_delta = points.ts[1] - points.ts[0];
        let regular = points.ts.windows(2).all(|p| p[1] - p[0] == prev_delta);
        w.write(u64::from(regular), 8);
        w.varint(zigzag(prev_delta));
        if !regular {
            for pair in points.ts[1..].windows(2) {
                let delta = pair[1] - pair[0];
                write_dod(&mut w, delta - prev_delta);
                prev_delta = delta;
            }
            w.align();
        }
    }
    for col in &points.cols {
        if let Some((k, ints)) = as_decimal(col) {
            write_groups_column(&mut w, k, &ints);
        } else {
            w.write(MODE_XOR, 8);
            write_xor(&mut w, col);
            w.align();
        }
    }
    w.finish()
}

fn write_dod(w: &mut BitWriter, dod: i64) {
    match dod {
        0 => w.bit(false),
        -63..=64 => {
            w.write(0b10, 2);
            w.write((dod + 63) as u64, 7);
        }
        -255..=256 => {
            w.write(0b110, 3);
            w.write((dod + 255) as u64, 9);
        }
        -2047..=2048 => {
            w.write(0b1110, 4);
            w.write((dod + 2047) as u64, 12);
        }
        _ => {
            w.write(0b1111, 4);
            w.write(zigzag(dod), 64);
        }
    }
}

fn read_dod(r: &mut BitReader<'_>) -> Result<i64, Truncated> {
    if !r.bit()? {
        return Ok(0);
    }
    if !r.bit()? {
        return Ok(r.read(7)? as i64 - 63);
    }
    if !r.bit()? {
        return Ok(r.read(9)? as i64 - 255);
    }
    if !r.bit()? {
        return Ok(r.read(12)? as i64 - 2047);
    }
    Ok(unzigzag(r.read(64)?))
}

/// The smallest k such that every value times 10^k is an exact integer, with those integers.
fn as_decimal(col: &[f64]) -> Option<(u32, Vec<i64>)> {
    'k: for k in 0..=9u32 {
        let scale = 10f64.powi(k as i32);
        let mut ints = Vec::with_capacity(col.len());
        for &v in col {
            if v == 0.0 && v.is_sign_negative() {
                // -0.0 would come back as 0.0 from an integer: keep its sign in the XOR path.
                return None;
            }
            let s = v * scale;
            if !s.is_finite() || s.abs() >= EXACT {
                return None;
            }
            let r = s.round();
            // Exact round trip: the integer, scaled back, is the same double.
            if r / scale != v {
                continue 'k;
            }
            ints.push(r as i64);
        }
        return Some((k, ints));
    }
    None
}

/// 10^k for the decimal places a column may have (0 to 9), each exact.
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// `v * p` as an integer, when `x as f64 / p` gives `v` back bit for bit (so not -0.0, NaN,
/// infinities or more places than `p` has): how the decimal modes decode, and so whether a
/// value is a decimal of those places. Rounded by adding a half and truncating (`f64::round`
/// is a libm call on x86_64's baseline); any rounding slip fails the exact check.
pub fn scale_exactly(v: f64, p: f64) -> Option<i64> {
    let y = v * p;
    if y.is_nan() || y.abs() >= EXACT {
        return None;
    }
    let x = if y >= 0.0 { y + 0.5 } else { y - 0.5 } as i64;
    ((x as f64 / p).to_bits() == v.to_bits()).then_some(x)
}

/// The fewest decimal places, at least `at_least` and at most 9, that hold `v` as
/// [`scale_exactly`] checks. `None` when none does.
pub fn decimal_places(v: f64, at_least: u32) -> Option<u32> {
    (at_least..=9).find(|&k| scale_exactly(v, POW10[k as usize]).is_some())
}

/// Gorilla's XOR coding of a float column, bit-packed.
fn write_xor(w: &mut BitWriter, col: &[f64]) {
    let mut prev = 0u64;
    let (mut lead, mut trail) = (u32::MAX, 0u32);
    for (i, v) in col.iter().enumerate() {
        let bits = v.to_bits();
        if i == 0 {
            w.write(bits, 64);
            prev = bits;
            continue;
        }
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.bit(false);
            continue;
        }
        w.bit(true);
        let (l, t) = (x.leading_zeros().min(63), x.trailing_zeros());
        if lead != u32::MAX && l >= lead && t >= trail {
            w.bit(false);
            w.write(x >> trail, 64 - lead - trail);
        } else {
            lead = l;
            trail = t;
            let len = 64 - l - t;
            w.bit(true);
            w.write(u64::from(l), 6);
            w.write(u64::from(len - 1), 6);
            w.write(x >> t, len);
        }
    }
}

/// A decimal column as `MODE_DEC_GROUPS`: mode:8, form:1 (0: values as offsets from their
/// minimum; 1: zigzag deltas, after the first value) and k:7 in a byte, the base (zigzag varint:
/// the minimum, or the first value), then the offsets in groups of [`GROUP`]: a class byte per group, then each
/// group packed at its class's width: 0 (all zero), 2, 4 or 8 bits, or 16, 32, 64 bits
/// little-endian.
///
/// Bytes rather than bit-packing at an exact width, because RocksDB compresses the bottommost
/// level with zstd: a byte stream lets its entropy coder see the skew of the offsets (most deltas
/// of a slowly changing gauge are 0 or ±1), which an exact-width bit stream hides, and a group's
/// width follows the series' level as it moves. Measured on 24 h of 3-decimal gauges: 0.29 bytes
/// a point after zstd, against 0.36 for exact-width frames. Of the two forms the smaller is kept
/// (values suit noisy counts around a level, deltas suit gauges and counters), by [`coded_bits`].
fn write_groups_column(w: &mut BitWriter, k: u32, ints: &[i64]) {
    let min = ints.iter().copied().min().unwrap_or(0);
    let values: Vec<u64> = ints
        .iter()
        .map(|&v| (v as u64).wrapping_sub(min as u64))
        .collect();
    let deltas: Vec<u64> = ints
        .windows(2)
        .map(|p| zigzag(p[1].wrapping_sub(p[0])))
        .collect();
    let by_values = pack_groups(&values);
    let by_deltas = pack_groups(&deltas);
    w.write(MODE_DEC_GROUPS, 8);
    if coded_bits(&by_deltas) < coded_bits(&by_values) {
        w.write(u64::from(k) | 0x80, 8);
        w.varint(zigzag(ints.first().copied().unwrap_or(0)));
        w.bytes(&by_deltas);
    } else {
        w.write(u64::from(k), 8);
        w.varint(zigzag(min));
        w.bytes(&by_values);
    }
}

/// What an entropy coder would make of `bytes`: their count times their order-0 entropy. The
/// bottommost level's zstd is such a coder, so this, not the raw length, picks the form: for
/// noisy counts both forms take a byte a value, and the values' bytes are half a bit cheaper.
fn coded_bits(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| -f64::from(c) * (f64::from(c) / n).log2())
        .sum()
}

/// The class of a group: the narrowest width its largest offset fits.
fn group_class(max: u64) -> u8 {
    match max {
        0 => 0,
        1..=3 => 1,
        4..=15 => 2,
        16..=255 => 3,
        256..=0xffff => 4,
        0x1_0000..=0xffff_ffff => 5,
        _ => 6,
    }
}

fn pack_groups(offsets: &[u64]) -> Vec<u8> {
    let groups = offsets.len().div_ceil(GROUP);
    let mut out = Vec::with_capacity(offsets.len() + groups);
    // All the class bytes first, then the groups: interleaved, they cost zstd 2% more.
    out.extend(
        offsets
            .chunks(GROUP)
            .map(|g| group_class(g.iter().copied().max().unwrap_or(0))),
    );
    for (i, g) in offsets.chunks(GROUP).enumerate() {
        match out[i] {
            0 => {}
            class @ (1 | 2) => {
                let bits = if class == 1 { 2 } else { 4 };
                for q in g.chunks(8 / bits) {
                    let mut b = 0u8;
                    for (j, &o) in q.iter().enumerate() {
                        b |= (o as u8) << (bits * j);
                    }
                    out.push(b);
                }
            }
            3 => out.extend(g.iter().map(|&o| o as u8)),
            4 => g
                .iter()
                .for_each(|&o| out.extend_from_slice(&(o as u16).to_le_bytes())),
            5 => g
                .iter()
                .for_each(|&o| out.extend_from_slice(&(o as u32).to_le_bytes())),
            _ => g
                .iter()
                .for_each(|&o| out.extend_from_slice(&o.to_le_bytes())),
        }
    }
    out
}

/// Reads `n` offsets written by [`pack_groups`], handing each to `out` in order (no buffer of
/// them: the decoder turns each into its value at once).
fn unpack_groups(
    r: &mut BitReader<'_>,
    n: usize,
    mut out: impl FnMut(u64),
) -> Result<(), Truncated> {
    let classes = r.bytes(n.div_ceil(GROUP))?;
    let mut left = n;
    for &class in classes {
        let g = left.min(GROUP);
        match class {
            0 => (0..g).for_each(|_| out(0)),
            1 | 2 => {
                let bits = if class == 1 { 2 } else { 4 };
                let per = 8 / bits;
                let mask = (1u8 << bits) - 1;
                let bytes = r.bytes(g.div_ceil(per))?;
                let mut taken = 0;
                for &b in bytes {
                    for j in 0..per.min(g - taken) {
                        out(u64::from((b >> (bits * j)) & mask));
                    }
                    taken += per;
                }
            }
            3 => r.bytes(g)?.iter().for_each(|&b| out(u64::from(b))),
            4 => r
                .bytes(2 * g)?
                .chunks_exact(2)
                .for_each(|c| out(u64::from(u16::from_le_bytes([c[0], c[1]])))),
            5 => r
                .bytes(4 * g)?
                .chunks_exact(4)
                .for_each(|c| out(u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))),
            6 => r.bytes(8 * g)?.chunks_exact(8).for_each(|c| {
                out(u64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                ]))
            }),
            _ => return Err(Truncated),
        }
        left -= g;
    }
    Ok(())
}

fn read_offsets(
    r: &mut BitReader<'_>,
    n: usize,
    wd: u32,
    version: u64,
) -> Result<Vec<u64>, Truncated> {
    if wd == 0 {
        return Ok(vec![0; n]);
    }
    let aligned = match version {
        1 => false,
        2 => wd <= 8,
        _ => r.bit()?,
    };
    if aligned {
        r.align();
        let mut out: Vec<u64> = r.bytes(n)?.iter().map(|&b| u64::from(b)).collect();
        if wd > 8 {
            for (o, &hi) in out.iter_mut().zip(r.bytes(n)?) {
                *o |= u64::from(hi) << 8;
            }
        }
        return Ok(out);
    }
    (0..n).map(|_| r.read(wd)).collect()
}

/// A column's values, and its decimal places when each value is an integer divided by 10^k
/// (see [`Scaled`]).
fn decode_column(
    r: &mut BitReader<'_>,
    n: usize,
    version: u64,
) -> Result<(Vec<f64>, Option<u32>), Truncated> {
    let mode = r.read(8)?;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    let places = match mode {
        MODE_DEC_VALUES | MODE_DEC_DELTAS if version <= 3 => {
            let k = r.read(4)? as i32;
            let scale = 10f64.powi(k);
            if mode == MODE_DEC_VALUES {
                let min = unzigzag(r.read(64)?);
                let wd = r.read(7)? as u32;
                for o in read_offsets(r, n, wd, version)? {
                    out.push(min.wrapping_add(o as i64) as f64 / scale);
                }
            } else {
                let mut v = unzigzag(r.read(64)?);
                let min = unzigzag(r.read(64)?);
                let wd = r.read(7)? as u32;
                if n > 0 {
                    out.push(v as f64 / scale);
                }
                for o in read_offsets(r, n.saturating_sub(1), wd, version)? {
                    v = v.wrapping_add(min.wrapping_add(o as i64));
                    out.push(v as f64 / scale);
                }
            }
            Some(k as u32)
        }
        MODE_DEC_GROUPS if version >= 4 => {
            let kf = r.read(8)?;
            let k = (kf & 0x7f) as i32;
            if k > 9 {
                return Err(Truncated);
            }
            let scale = 10f64.powi(k);
            let deltas = kf & 0x80 != 0;
            let base = unzigzag(r.varint()?);
            // Integers (k = 0, counts) need no division; a division by 10^k is exact where a
            // multiplication by its inverse is not.
            let value = |v: i64| if k == 0 { v as f64 } else { v as f64 / scale };
            if deltas {
                if n > 0 {
                    out.push(value(base));
                }
                let mut v = base;
                unpack_groups(r, n.saturating_sub(1), |o| {
                    v = v.wrapping_add(unzigzag(o));
                    out.push(value(v));
                })?;
            } else {
                unpack_groups(r, n, |o| out.push(value(base.wrapping_add(o as i64))))?;
            }
            Some(k as u32)
        }
        MODE_XOR => {
            let mut prev = 0u64;
            let (mut lead, mut trail) = (0u32, 0u32);
            for i in 0..n {
                if i == 0 {
                    prev = r.read(64)?;
                } else if r.bit()? {
                    if r.bit()? {
                        lead = r.read(6)? as u32;
                        let len = r.read(6)? as u32 + 1;
                        if lead + len > 64 {
                            return Err(Truncated);
                        }
                        trail = 64 - lead - len;
                    }
                    let len = 64 - lead - trail;
                    prev ^= r.read(len)? << trail;
                }
                out.push(f64::from_bits(prev));
            }
            if version >= 4 {
                r.align();
            }
            None
        }
        _ => return Err(Truncated),
    };
    Ok((out, places))
}

/// Decodes a chunk written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Points> {
    decode_scaled(bytes).map(|(p, _)| p)
}

/// Each column's decimal places in a decoded chunk: `Some(k)` when every value of the column
/// is `x as f64 / 10^k` for an integer `x` (one division, correctly rounded: what the decimal
/// modes decode to), `None` for a float (XOR) column. A reader that writes the values as
/// decimals again (the query node's `format=tally`) then knows they are, without checking each.
pub type Scaled = Vec<Option<u32>>;

/// [`decode`], with each column's decimal places.
pub fn decode_scaled(bytes: &[u8]) -> Result<(Points, Scaled)> {
    decode_inner(bytes).map_err(|_| Error::Corrupt(format!("chunk of {} bytes", bytes.len())))
}

fn decode_inner(bytes: &[u8]) -> Result<(Points, Scaled), Truncated> {
    let mut r = BitReader::new(bytes);
    let version = r.read(8)?;
    if !(1..=VERSION).contains(&version) {
        return Err(Truncated);
    }
    let ncols = r.read(8)? as usize;
    let n = if version >= 4 {
        usize::try_from(r.varint()?).map_err(|_| Truncated)?
    } else {
        r.read(32)? as usize
    };
    // A regular series with constant values costs no bits per point, so the size of the input
    // bounds nothing: cap the count instead, and never let it size an allocation on trust.
    if n > MAX_POINTS {
        return Err(Truncated);
    }
    let mut ts = Vec::with_capacity(n.min(bytes.len() * 8 + 64));
    let v4 = version >= 4;
    if n > 0 {
        ts.push(unzigzag(if v4 { r.varint()? } else { r.read(64)? }));
    }
    if n > 1 {
        let regular = match version {
            1 => false,
            2 | 3 => r.bit()?,
            _ => r.read(8)? != 0,
        };
        let mut delta = unzigzag(if v4 { r.varint()? } else { r.read(64)? });
        ts.push(ts[0].wrapping_add(delta));
        for i in 2..n {
            if !regular {
                delta = delta.wrapping_add(read_dod(&mut r)?);
            }
            ts.push(ts[i - 1].wrapping_add(delta));
        }
        if v4 && !regular {
            r.align();
        }
    }
    let mut cols = Vec::with_capacity(ncols);
    let mut places = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let (col, k) = decode_column(&mut r, n, version)?;
        cols.push(col);
        places.push(k);
    }
    Ok((Points { ts, cols }, places))
}

/// Merges runs in write order into one sorted run: for a repeated timestamp the last write wins.
/// Each run need not be sorted. The common cases (one sorted run; runs that follow each other in
/// time, as successive flushes of a live series do) are concatenations; otherwise an index sort.
pub fn merge_sorted(ncols: usize, runs: impl IntoIterator<Item = Points>) -> Points {
    let runs: Vec<Points> = runs
        .into_iter()
        .filter(|r| !r.ts.is_empty() && r.cols.len() == ncols)
        .collect();
    let increasing = |ts: &[i64]| ts.windows(2).all(|w| w[0] < w[1]);
    let in_order = runs.iter().all(|r| increasing(&r.ts))
        && runs.windows(2).all(|w| w[0].ts.last() < w[1].ts.first());
    if in_order {
        let mut runs = runs.into_iter();
        let Some(mut out) = runs.next() else {
            return Points::new(ncols);
        };
        for r in runs {
            out.ts.extend_from_slice(&r.ts);
            for (c, col) in out.cols.iter_mut().zip(r.cols) {
                c.extend(col);
            }
        }
        return out;
    }
    let mut order: Vec<(i64, u32, u32)> = Vec::with_capacity(runs.iter().map(Points::len).sum());
    for (ri, r) in runs.iter().enumerate() {
        order.extend(
            r.ts.iter()
                .enumerate()
                .map(|(i, &t)| (t, ri as u32, i as u32)),
        );
    }
    order.sort_unstable();
    let mut out = Points::new(ncols);
    for (k, &(t, ri, i)) in order.iter().enumerate() {
        if order.get(k + 1).is_some_and(|next| next.0 == t) {
            continue;
        }
        out.ts.push(t);
        for (c, col) in out.cols.iter_mut().enumerate() {
            col.push(runs[ri as usize].cols[c][i as usize]);
        }
    }
    out
}

/// Version 3's encoder, kept for the tests that prove its chunks (on disk in stores written
/// before version 4) still decode.
#[cfg(test)]
mod v3 {
    use super::*;

    pub(super) fn encode(points: &Points) -> Vec<u8> {
        let n = points.ts.len();
        let mut w = BitWriter::with_capacity(16 + n * points.cols.len());
        w.write(3, 8);
        w.write(points.cols.len() as u64, 8);
        w.write(n as u64, 32);
        if let Some(&first) = points.ts.first() {
            w.write(zigzag(first), 64);
        }
        if n > 1 {
            let mut prev_delta = points.ts[1] - points.ts[0];
            let regular = points.ts.windows(2).all(|p| p[1] - p[0] == prev_delta);
            w.bit(regular);
            w.write(zigzag(prev_delta), 64);
            if !regular {
                for pair in points.ts[1..].windows(2) {
                    let delta = pair[1] - pair[0];
                    write_dod(&mut w, delta - prev_delta);
                    prev_delta = delta;
                }
            }
        }
        for col in &points.cols {
            encode_column(&mut w, col);
        }
        w.finish()
    }

    fn width(range: u64) -> u32 {
        64 - range.leading_zeros()
    }

    /// Frame of reference: (min, width) of `vals`, or None when the range overflows.
    fn frame(vals: &[i64]) -> Option<(i64, u32)> {
        let min = *vals.iter().min()?;
        let max = *vals.iter().max()?;
        let range = max.checked_sub(min)?;
        Some((min, width(range as u64)))
    }

    fn encode_column(w: &mut BitWriter, col: &[f64]) {
        if let Some((k, ints)) = as_decimal(col) {
            let by_value = frame(&ints);
            let deltas: Option<Vec<i64>> =
                ints.windows(2).map(|p| p[1].checked_sub(p[0])).collect();
            let by_delta = deltas
                .as_deref()
                .and_then(|d| if d.is_empty() { None } else { frame(d) });
            let cost = |wd: u32| wd as usize;
            let value_bits = by_value.map(|(_, wd)| cost(wd) * ints.len());
            let delta_bits = by_delta.map(|(_, wd)| 64 + cost(wd) * (ints.len() - 1));
            match (value_bits, delta_bits) {
                (Some(vb), Some(db)) if db < vb => {
                    let (min, wd) = by_delta.unwrap_or_default();
                    w.write(MODE_DEC_DELTAS, 8);
                    w.write(u64::from(k), 4);
                    w.write(zigzag(ints[0]), 64);
                    w.write(zigzag(min), 64);
                    w.write(u64::from(wd), 7);
                    let offsets = deltas.iter().flatten().map(|d| (d - min) as u64);
                    write_offsets(w, offsets, wd);
                    return;
                }
                (Some(_), _) => {
                    let (min, wd) = by_value.unwrap_or_default();
                    w.write(MODE_DEC_VALUES, 8);
                    w.write(u64::from(k), 4);
                    w.write(zigzag(min), 64);
                    w.write(u64::from(wd), 7);
                    write_offsets(w, ints.iter().map(|v| (v - min) as u64), wd);
                    return;
                }
                _ => {}
            }
        }
        w.write(MODE_XOR, 8);
        write_xor(w, col);
    }

    /// Shannon entropy, in bits per value, of small offsets.
    fn entropy(offsets: &[u64]) -> f64 {
        let mut counts = [0u32; 256];
        for &o in offsets {
            counts[(o & 0xff) as usize] += 1;
        }
        let n = offsets.len() as f64;
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = f64::from(c) / n;
                -p * p.log2()
            })
            .sum()
    }

    /// Frame-of-reference offsets: byte-aligned when they fit 16 bits and zstd can do clearly better
    /// than `wd` bits each (a flag bit says which), else bit-packed. Two-byte offsets are written as
    /// two planes (all low bytes, then all high bytes) so the mostly-small high bytes sit together.
    fn write_offsets(w: &mut BitWriter, offsets: impl Iterator<Item = u64>, wd: u32) {
        if wd == 0 {
            return; // every offset is 0: a constant column costs nothing per point
        }
        let offsets: Vec<u64> = offsets.collect();
        let planes = if wd <= 8 { 1 } else { 2 };
        let estimate = if planes == 1 {
            entropy(&offsets)
        } else {
            let high: Vec<u64> = offsets.iter().map(|o| o >> 8).collect();
            entropy(&offsets) + entropy(&high)
        };
        let aligned = wd <= 16 && offsets.len() >= 64 && estimate + 0.75 < f64::from(wd);
        w.bit(aligned);
        if aligned {
            w.align();
            for plane in 0..planes {
                let bytes: Vec<u8> = offsets.iter().map(|&o| (o >> (8 * plane)) as u8).collect();
                w.bytes(&bytes);
            }
        } else {
            for o in offsets {
                w.write(o, wd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pts(ts: &[i64], vals: &[f64]) -> Points {
        Points {
            ts: ts.to_vec(),
            cols: vec![vals.to_vec()],
        }
    }

    fn round_trip(p: &Points) -> usize {
        let bytes = encode(p);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.ts, p.ts);
        for (a, b) in back.cols.iter().zip(&p.cols) {
            let a: Vec<u64> = a.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u64> = b.iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b);
        }
        bytes.len()
    }

    #[test]
    fn counters_cost_about_a_byte_a_point_before_zstd() {
        let ts: Vec<i64> = (0..720).map(|i| 1_700_000_000 + i * 10).collect();
        let vals: Vec<f64> = (0..720).map(|i| f64::from(40 + (i * 7919 % 23))).collect();
        let size = round_trip(&pts(&ts, &vals));
        assert!(size < 800, "{size} bytes for 720 counter points");
        // Cumulative counters pack as deltas.
        let cum: Vec<f64> = (0..720).map(|i| f64::from(i * 50 + i % 7)).collect();
        let size = round_trip(&pts(&ts, &cum));
        assert!(size < 800, "{size} bytes for 720 cumulative points");
    }

    #[test]
    fn wide_offsets_in_two_planes_round_trip() {
        let ts: Vec<i64> = (0..720).map(|i| i * 10).collect();
        // Mostly small deltas with a few large ones: width > 8 bits, low entropy.
        let vals: Vec<f64> = (0..720)
            .scan(0i64, |acc, i| {
                *acc += if i % 97 == 0 { 3000 } else { i % 5 };
                Some(*acc as f64 / 1000.0)
            })
            .collect();
        round_trip(&pts(&ts, &vals));
    }

    #[test]
    fn decimals_and_floats() {
        let ts: Vec<i64> = (0..100).map(|i| i * 10).collect();
        let lat: Vec<f64> = (0..100)
            .map(|i| f64::from(i * 37 % 2999) / 1000.0)
            .collect();
        let size = round_trip(&pts(&ts, &lat));
        assert!(size < 250, "{size} bytes for 100 latencies");
        let odd: Vec<f64> = (0..100).map(|i| (f64::from(i)).sin()).collect();
        round_trip(&pts(&ts, &odd));
        round_trip(&pts(&[5], &[f64::INFINITY]));
        round_trip(&pts(&[5, 6], &[-0.0, 1e300]));
        round_trip(&pts(&[5], &[-0.0]));
        round_trip(&pts(&[], &[]));
        round_trip(&Points {
            ts: vec![1, 2],
            cols: vec![vec![1.0, 2.0], vec![0.5, f64::NEG_INFINITY]],
        });
    }

    #[test]
    fn version_1_chunks_still_decode() {
        // Written by version 1 of the codec: ts 10, 20, 35 (irregular), values 1, 2, 3 (decimal).
        let v1: &[u8] = &[
            1, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 20, 162, 0, 128, 0, 0,
            0, 0, 0, 0, 0, 16, 33, 128,
        ];
        let p = decode(v1).expect("a version 1 chunk decodes");
        assert_eq!(p.ts, [10, 20, 35]);
        assert_eq!(p.cols[0], [1.0, 2.0, 3.0]);
    }

    #[test]
    fn version_2_chunks_still_decode() {
        // Version 2 differs from 3 only in decimal columns (no per-column alignment bit): a chunk
        // of XOR-coded floats is the same bits under either version.
        let p = pts(
            &[10, 20, 30, 45],
            &[0.1, std::f64::consts::PI, -2.5e-7, 1e300],
        );
        let mut v2 = v3::encode(&p);
        assert_eq!(v2[0], 3);
        v2[0] = 2;
        assert_eq!(decode(&v2).expect("a version 2 chunk decodes"), p);
        let mut v5 = encode(&p);
        assert_eq!(v5[0], 4);
        v5[0] = 5;
        assert!(decode(&v5).is_err(), "a version from the future is refused");
    }

    /// Stores written before version 4 hold version 3 chunks: every kind of them still decodes
    /// (decimal values and deltas, aligned or not, XOR, irregular times, rollup columns).
    #[test]
    fn version_3_chunks_still_decode() {
        let ts: Vec<i64> = (0..720).map(|i| 1_700_000_000 + i * 10).collect();
        let irregular: Vec<i64> = (0..300).map(|i| 1_700_000_000 + i * 10 + i % 7).collect();
        let counter: Vec<f64> = (0..720).map(|i| f64::from(i * 3 + i % 5)).collect();
        let noisy: Vec<f64> = (0..720).map(|i| f64::from(50 + (i * 37) % 23)).collect();
        let gauge: Vec<f64> = (0..720).map(|i| f64::from(i % 11) / 1000.0).collect();
        let odd: Vec<f64> = (0..300).map(|i| f64::from(i).sin()).collect();
        let cases = [
            pts(&ts, &counter),
            pts(&ts, &noisy),
            pts(&ts, &gauge),
            pts(&irregular, &odd),
            pts(&ts, &vec![0.001; 720]),
            Points {
                ts: ts.clone(),
                cols: vec![
                    counter.clone(),
                    noisy.clone(),
                    gauge.clone(),
                    counter,
                    noisy,
                ],
            },
        ];
        for p in &cases {
            let old = v3::encode(p);
            assert_eq!(old[0], 3);
            assert_eq!(&decode(&old).expect("a version 3 chunk decodes"), p);
        }
    }

    #[test]
    fn regular_timestamps_cost_nothing_per_point() {
        let ts: Vec<i64> = (0..720).map(|i| 1_700_000_000 + i * 10).collect();
        let same = vec![5.0; 720];
        assert!(
            encode(&pts(&ts, &same)).len() < 40,
            "{}",
            encode(&pts(&ts, &same)).len()
        );
    }

    /// Issue 3: a constant, regular series encodes to a few bytes for hundreds of points; the
    /// decoder once took that for corruption, and a flush then replaced the chunk (data loss).
    #[test]
    fn issue_3_tiny_chunks_of_constant_series_decode() {
        for n in [2usize, 100, 720, 5000] {
            let ts: Vec<i64> = (0..n as i64).map(|i| 1_700_000_000 + i * 10).collect();
            round_trip(&pts(&ts, &vec![0.001; n]));
            round_trip(&Points {
                ts: ts.clone(),
                cols: vec![vec![1.0; n]; 5],
            });
        }
        let mut huge = encode(&pts(&[1, 2], &[1.0, 1.0]));
        huge[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(
            decode(&huge).is_err(),
            "an absurd count is refused, not allocated"
        );
    }

    #[test]
    fn last_write_wins() {
        let a = pts(&[10, 20, 30], &[1.0, 2.0, 3.0]);
        let b = pts(&[20, 5], &[9.0, 0.5]);
        let m = merge_sorted(1, [a, b]);
        assert_eq!(m, pts(&[5, 10, 20, 30], &[0.5, 1.0, 9.0, 3.0]));
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[1, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
        let good = encode(&pts(&[1, 2, 3], &[0.1, 0.2, 0.3]));
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn decimal_places_are_the_fewest_that_round_trip() {
        assert_eq!(decimal_places(3.0, 0), Some(0));
        assert_eq!(decimal_places(3.0, 2), Some(2));
        assert_eq!(decimal_places(0.125, 0), Some(3));
        assert_eq!(decimal_places(-0.1, 0), Some(1));
        assert_eq!(decimal_places(1.0 / 3.0, 0), None);
        assert_eq!(decimal_places(-0.0, 0), None);
        assert_eq!(decimal_places(f64::NAN, 0), None);
        assert_eq!(decimal_places(f64::INFINITY, 0), None);
        assert_eq!(decimal_places(2f64.powi(60), 0), None);
        assert_eq!(decimal_places(1e-10, 0), None);
        // XOR columns promise nothing.
        let (_, places) = decode_scaled(&encode(&pts(&[1, 2], &[1.0 / 3.0, 0.7]))).expect("ok");
        assert_eq!(places, vec![None]);
    }

    proptest! {
        #[test]
        fn any_points_round_trip(
            raw in proptest::collection::btree_map(-1_000_000i64..4_000_000_000, any::<f64>().prop_filter("no nan", |v| !v.is_nan()), 0..60),
            ints in proptest::collection::vec(-1000i64..1000, 60),
        ) {
            let ts: Vec<i64> = raw.keys().copied().collect();
            let vals: Vec<f64> = raw.values().copied().collect();
            round_trip(&pts(&ts, &vals));
            let ivals: Vec<f64> = ints[..ts.len()].iter().map(|&i| i as f64 / 100.0).collect();
            round_trip(&pts(&ts, &ivals));
            // The places a column reports hold each of its values (the promise a reader that
            // writes decimals again relies on), and a column of hundredths reports some.
            for p in [pts(&ts, &vals), pts(&ts, &ivals)] {
                let (back, places) = decode_scaled(&encode(&p)).expect("decodes");
                prop_assert_eq!(places.len(), back.cols.len());
                for (col, k) in back.cols.iter().zip(&places) {
                    if let Some(k) = *k {
                        prop_assert!(k <= 9);
                        for &v in col {
                            prop_assert_eq!(decimal_places(v, k), Some(k), "{} at {}", v, k);
                        }
                    }
                }
            }
            let (_, places) = decode_scaled(&encode(&pts(&ts, &ivals))).expect("decodes");
            prop_assert!(ts.is_empty() || places[0].is_some_and(|k| k <= 2));
        }

        /// Long decimal columns whose steps change size as they go: every group class, both
        /// forms, groups cut short at the end, irregular times; and version 3 of the same.
        #[test]
        fn long_decimal_columns_round_trip_in_every_group_class(
            steps in proptest::collection::vec(prop_oneof![
                Just(0i64), -3i64..4, -15i64..16, -200i64..200, -70_000i64..70_000,
                -5_000_000_000i64..5_000_000_000, any::<i64>().prop_map(|v| v >> 12),
            ], 1..400),
            gaps in proptest::collection::vec(prop_oneof![Just(10i64), 1i64..5000], 400),
            k in 0i32..4,
        ) {
            let mut v = 0i64;
            let vals: Vec<f64> = steps
                .iter()
                .map(|s| {
                    v = v.wrapping_add(*s).clamp(-(1 << 52), 1 << 52);
                    v as f64 / 10f64.powi(k)
                })
                .collect();
            let mut t = 1_700_000_000i64;
            let ts: Vec<i64> = gaps[..vals.len()].iter().map(|g| { t += g; t }).collect();
            let p = pts(&ts, &vals);
            round_trip(&p);
            let back = decode(&v3::encode(&p)).expect("version 3 decodes");
            prop_assert_eq!(back.ts, p.ts.clone());
            let a: Vec<u64> = back.cols[0].iter().map(|v| v.to_bits()).collect();
            let b: Vec<u64> = p.cols[0].iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn merge_matches_a_naive_model(runs in proptest::collection::vec(proptest::collection::vec((0i64..50, -100i32..100), 0..20), 0..5)) {
            let mut model = std::collections::BTreeMap::new();
            let mut pts_runs = Vec::new();
            for run in &runs {
                for &(t, v) in run {
                    model.insert(t, f64::from(v));
                }
                pts_runs.push(Points { ts: run.iter().map(|p| p.0).collect(), cols: vec![run.iter().map(|p| f64::from(p.1)).collect()] });
            }
            let merged = merge_sorted(1, pts_runs);
            prop_assert_eq!(merged.ts, model.keys().copied().collect::<Vec<_>>());
            prop_assert_eq!(&merged.cols[0], &model.values().copied().collect::<Vec<_>>());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
