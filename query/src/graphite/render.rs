//! `/render` output: `maxDataPoints` consolidation and the json, csv and raw formats, as
//! graphite-web 1.1.8 writes them (render/views.py).

use std::fmt::Write;

use crate::graphite::py_number::{py_float, py_optional};
use crate::series::{Consolidation, TimeSeries};
use crate::time::civil_from_days;

/// graphite-web's `maxDataPoints` consolidation: with `n = (end - start) / step` over the widest
/// series, when `n > max`, `vpp = ceil(n / max)` values go into each point and the start is
/// nudged so points align to multiples of `vpp * step`.
///
/// graphite-web then drops `vpp - 1` leading values, which shifts every point by one step and,
/// under `consolidateBy(sum)`, loses counts: the contract lists that as a bug not to copy. We keep
/// graphite's alignment and timestamps for every function, and for `sum` we keep every value:
/// the buckets are aligned to multiples of `vpp * step` and the first may be partial.
pub(crate) fn consolidate_for_display(series: &mut [TimeSeries], max_points: usize) {
    if series.is_empty() || max_points == 0 {
        return;
    }
    if max_points == 1 {
        for s in series.iter_mut() {
            let len = s.len().max(1);
            s.values_per_point = len;
        }
        return;
    }
    let start = series.iter().map(|s| s.start).min().unwrap_or(0);
    let end = series.iter().map(|s| s.end).max().unwrap_or(0);
    let range = end - start;
    for s in series.iter_mut() {
        let n = range as f64 / s.step as f64;
        if (max_points as f64) >= n {
            continue;
        }
        let vpp = (n / max_points as f64).ceil() as i64;
        let spp = vpp * s.step;
        if s.consolidation == Consolidation::Sum {
            let aligned = s.start - s.start.rem_euclid(spp);
            let lead = ((s.start - aligned) / s.step) as usize;
            let mut values = vec![None; lead];
            values.extend_from_slice(s.raw());
            s.set_values(values);
            s.start = aligned;
        } else {
            let nudge = spp + s.start.rem_euclid(s.step) - s.start.rem_euclid(spp);
            s.start += nudge;
            let lose = (nudge / s.step) as usize;
            let drop = lose.saturating_sub(1).min(s.len());
            s.raw_mut().drain(..drop);
        }
        s.values_per_point = vpp as usize;
    }
}

/// Timestamps a reader sees: `range(start, end + 1, step * vpp)`, zipped with the values.
#[cfg(test)]
pub(crate) fn datapoints(s: &TimeSeries) -> Vec<(Option<f64>, i64)> {
    points(s).collect()
}

/// [`datapoints`] without collecting them.
fn points(s: &TimeSeries) -> impl Iterator<Item = (Option<f64>, i64)> + '_ {
    let step = s.effective_step().max(1);
    let n = if s.end < s.start {
        0
    } else {
        ((s.end - s.start) / step + 1) as usize
    };
    let values = s.values_cow();
    (0..values.len().min(n)).map(move |i| (values[i], s.start + i as i64 * step))
}

/// Powers of ten a double holds exactly, for [`short_decimal`].
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// `v` with `d` decimals, when that reads back as `v` exactly (see [`short_decimal`]).
fn reads_back(a: f64, d: usize) -> Option<u64> {
    let scaled = a * POW10[d];
    if scaled >= (1u64 << 49) as f64 {
        return None;
    }
    // `round` without libm's call: under 2^49 adding a half is exact, and the cast truncates,
    // which is `floor` for a positive number.
    let x = (scaled + 0.5) as u64;
    (x as f64 / POW10[d] == a).then_some(x)
}

/// The shortest decimal that reads back as `v` (what ryu and Python's `repr` write), for the
/// common case of a value with at most six decimals, in a few multiplications instead of ryu's
/// general digit generation (which was a quarter of a big `/render`'s time). Written to
/// `out[n..]`; the new end is returned, or `None` for anything else (more decimals, huge,
/// tiny, or needing an exponent), which goes to ryu; the property test checks both agree.
///
/// With `d` decimals, `x = round(v * 10^d)` reads back as `v` exactly when `x / 10^d == v`:
/// `x` and `10^d` are exact doubles and division rounds correctly, as parsing the decimal does.
/// The fewest decimals that read back are the shortest text, and that `x` is the only
/// candidate with that many because `|v| * 10^d < 2^49` keeps `10^-d` over four units in the
/// last place of `v` (so no two `d`-decimal numbers round to `v`, and the product's rounding
/// error, under 1/8, cannot move `round` off the right integer). Reading back is monotone in
/// `d` (a `d`-decimal text is also a `d + 1` one), so the search starts at `guess`, the count
/// the previous value needed (a series' values mostly share it), and walks down or up.
fn short_decimal(v: f64, guess: &mut usize, out: &mut [u8; 64], n: usize) -> Option<usize> {
    let a = v.abs();
    if !(1e-3..1e15).contains(&a) {
        return None;
    }
    let mut d = (*guess).min(POW10.len() - 1);
    // Fewer decimals than the guess when the guess's scaled value is past the bound.
    while d > 0 && a * POW10[d] >= (1u64 << 49) as f64 {
        d -= 1;
    }
    let x = match reads_back(a, d) {
        // Fewer decimals: only by dropping trailing zeros. Under the bound `x` is the only
        // `d`-decimal candidate, so a `d - 1` one `y` would make `10 y` another: `10 y == x`.
        // Dropping a zero keeps the same rational, so it reads back too; no division needed.
        Some(mut x) => {
            while d > 0 && x % 10 == 0 {
                d -= 1;
                x /= 10;
            }
            x
        }
        None => loop {
            d += 1;
            if d == POW10.len() {
                return None;
            }
            if let Some(x) = reads_back(a, d) {
                break x;
            }
        },
    };
    *guess = d;
    let mut n = n;
    if v < 0.0 {
        out[n] = b'-';
        n += 1;
    }
    // Digits right to left into place: at least `d + 1` of them, the point `d` from the right.
    let digits = (POW10_INT.iter().take_while(|&&p| x >= p).count() + 1).max(d + 1);
    let end = n + digits + usize::from(d > 0);
    let mut at = end;
    let mut x = x;
    for k in 0..digits {
        if k == d && d > 0 {
            at -= 1;
            out[at] = b'.';
        }
        at -= 1;
        out[at] = b'0' + (x % 10) as u8;
        x /= 10;
    }
    n = end;
    if d == 0 {
        out[n] = b'.';
        out[n + 1] = b'0';
        n += 2;
    }
    Some(n)
}

/// `10^1 ..= 10^16`: a number has one digit more than the count of these it reaches.
const POW10_INT: [u64; 16] = {
    let mut t = [0u64; 16];
    let mut p = 10u64;
    let mut i = 0;
    while i < 16 {
        t[i] = p;
        p = p.saturating_mul(10);
        i += 1;
    }
    t
};

/// Copies `s` to `out[n..]`, returning the new end.
fn put(out: &mut [u8; 64], n: usize, s: &[u8]) -> usize {
    let mut n = n;
    for &b in s {
        out[n] = b;
        n += 1;
    }
    n
}

/// A value's text, kept from one point to the next: flat lines (a counter at 0, a percentile or
/// a constant repeated over the range, a gauge that does not move) write the same value again
/// and again, and comparing bits is much cheaper than making the decimal afresh.
struct LastValue {
    bits: u64,
    text: [u8; 32],
    /// 0 when there is none yet.
    len: usize,
    /// The count of decimals the last value needed: [`short_decimal`]'s first guess.
    guess: usize,
}

impl LastValue {
    fn new() -> LastValue {
        LastValue {
            bits: 0,
            text: [0; 32],
            len: 0,
            guess: 0,
        }
    }
}

/// One `[value, timestamp]`, written in place into 64 bytes the vector is grown by and then
/// cut back to what it took. Not assembled on the stack and copied: reading back a buffer just
/// written at odd offsets stalled on every point (store forwarding fails), a third of the
/// narrow glob's writing; and not a call to `memcpy` for each of its few bytes.
fn json_point(
    out: &mut Vec<u8>,
    v: Option<f64>,
    t: i64,
    stamp: &mut Stamp,
    last: &mut LastValue,
    comma: bool,
    step: i64,
) {
    let at = out.len();
    out.resize(at + 64, 0);
    let Ok(buf) = <&mut [u8; 64]>::try_from(&mut out[at..]) else {
        unreachable!("the vector was just grown by 64 bytes")
    };
    let mut n = 0;
    if comma {
        n = put(buf, n, b", ");
    }
    n = put(buf, n, b"[");
    n = match v {
        None => put(buf, n, b"null"),
        Some(x) if x.is_nan() => put(buf, n, b"null"),
        // graphite-web writes infinities as 1e9999 (valid JSON that parses to infinity).
        Some(x) if x.is_infinite() => put(buf, n, if x > 0.0 { b"1e9999" } else { b"-1e9999" }),
        // Fixed-size copies (then the length is kept), not a call to `memcpy` a point.
        Some(x) if last.len > 0 && last.bits == x.to_bits() => {
            buf[n..n + 24].copy_from_slice(&last.text[..24]);
            n + last.len
        }
        Some(x) => {
            let end = match short_decimal(x, &mut last.guess, buf, n) {
                Some(end) => end,
                None => put(buf, n, ryu::Buffer::new().format_finite(x).as_bytes()),
            };
            // ryu's longest text is 24 bytes; a longer one is not kept.
            last.len = if end - n <= 24 { end - n } else { 0 };
            last.text[..24].copy_from_slice(&buf[n..n + 24]);
            last.bits = x.to_bits();
            end
        }
    };
    n = put(buf, n, b", ");
    let len = stamp.text(t).len();
    buf[n..n + 20].copy_from_slice(&stamp.digits);
    n += len;
    n = put(buf, n, b"]");
    // The next point's digits now, a point before they are read: read at once, the bytes
    // just stored one by one stalled the wide copy above (store forwarding fails).
    let _ = stamp.text(t.saturating_add(step));
    // At most 2 + 1 + 24 + 2 + 20 + 1 bytes went in (the fixed copies reach no further).
    out.truncate(at + n);
}

/// A timestamp's decimal text, kept from one point to the next: a series' timestamps step
/// evenly, and adding the step to the digits is a few carries where formatting is ten
/// divisions.
#[derive(Default)]
struct Stamp {
    /// The text is `digits[..len]`, from the left, so that it is copied out at a fixed size.
    digits: [u8; 20],
    /// 0 when there is none yet.
    len: usize,
    t: i64,
}

impl Stamp {
    fn new() -> Stamp {
        Stamp::default()
    }

    fn text(&mut self, t: i64) -> &[u8] {
        let delta = t.wrapping_sub(self.t);
        if self.len == 0
            || t < 0
            || self.t < 0
            || !(0..1 << 32).contains(&delta)
            || !self.add(delta as u64)
        {
            let mut b = itoa::Buffer::new();
            let text = b.format(t).as_bytes();
            self.len = text.len();
            self.digits[..self.len].copy_from_slice(text);
        }
        self.t = t;
        &self.digits[..self.len]
    }

    /// Adds `delta` to the digits; false (and the digits in any state) when it carries past
    /// the first one, for [`Stamp::text`] to format afresh.
    fn add(&mut self, delta: u64) -> bool {
        let mut carry = delta;
        let mut i = self.len;
        while carry > 0 {
            if i == 0 {
                return false;
            }
            i -= 1;
            let d = u64::from(self.digits[i] - b'0') + carry;
            self.digits[i] = b'0' + (d % 10) as u8;
            carry = d / 10;
        }
        true
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// `format=json`: `[{"target", "tags", "datapoints": [[v, ts], ...]}]`.
pub(crate) fn json(series: &[TimeSeries], no_null_points: bool) -> String {
    let out = json_parts(series, no_null_points).concat();
    // Only ASCII and `json_string`'s valid UTF-8 went in.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`json`]'s text as the pieces its writers made, in order: a response sends them one after
/// the other, without copying tens of megabytes into one buffer and checking them again.
pub(crate) fn json_parts(series: &[TimeSeries], no_null_points: bool) -> Vec<Vec<u8>> {
    // graphite-web answers `[]` when no series has a value (its `if any(data)`): `delay(x, 0)`.
    if series.iter().all(TimeSeries::is_empty) {
        return vec![b"[]".to_vec()];
    }
    // Big answers are written by up to four threads, each a run of whole series (balanced
    // by their points), joined in order; small ones here.
    let total: usize = series.iter().map(|s| s.raw().len()).sum();
    let threads = if total < 200_000 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    };
    let mut chunks: Vec<&[TimeSeries]> = Vec::with_capacity(threads);
    let mut rest = series;
    for k in (1..=threads).rev() {
        let want = rest.iter().map(|s| s.raw().len()).sum::<usize>() / k;
        let mut take = 0;
        let mut got = 0;
        while take < rest.len() && (got < want || take == 0 || k == 1) {
            got += rest[take].raw().len();
            take += 1;
        }
        let (chunk, tail) = rest.split_at(take);
        chunks.push(chunk);
        rest = tail;
    }
    let parts: Vec<Vec<Vec<u8>>> = if chunks.len() == 1 {
        vec![json_series(chunks[0], no_null_points)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| scope.spawn(move || json_series(c, no_null_points)))
                .collect();
            handles
                .into_iter()
                // A writer that panicked passes its panic on rather than leaving its series
                // silently out of the answer.
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + 8);
    out.push(b"[".to_vec());
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        if out.len() > 1 {
            out.push(b", ".to_vec());
        }
        out.extend(part);
    }
    out.push(b"]".to_vec());
    out
}

/// The most a piece of [`json_series`]' text holds. Pieces of a fixed size are never moved to
/// grow: one growing buffer for a 67 MB answer (holtWintersConfidenceBands of 100 series over
/// 7 days) copied itself as it doubled, and the pages of every size it passed through were
/// faulted in and cleared, a fifth of the answer's time.
const JSON_PIECE: usize = 1 << 20;

/// The `{"target", "tags", "datapoints"}` objects of `series`, comma-separated, in pieces of
/// at most [`JSON_PIECE`] bytes (none of them empty) to be sent one after the other.
fn json_series(series: &[TimeSeries], no_null_points: bool) -> Vec<Vec<u8>> {
    // About 24 bytes a point ("[12.345, 1800000000], "): small answers are one allocation.
    let total: usize = series.iter().map(|s| s.raw().len()).sum();
    let piece = |want: usize| Vec::with_capacity(want.clamp(64, JSON_PIECE));
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let mut out: Vec<u8> = piece(total.saturating_mul(24).saturating_add(64));
    let mut last = LastValue::new();
    let mut wrote = false;
    for s in series {
        if no_null_points && !points(s).any(|(v, _)| v.is_some_and(|x| !x.is_nan())) {
            continue;
        }
        if wrote {
            out.extend_from_slice(b", ");
        }
        wrote = true;
        let mut head = String::from("{\"target\": ");
        json_string(&mut head, &s.name);
        head.push_str(", \"tags\": {");
        for (i, (k, v)) in s.tags.iter().enumerate() {
            if i > 0 {
                head.push_str(", ");
            }
            json_string(&mut head, k);
            head.push_str(": ");
            // Tag values are always strings: Grafana's backend rejects numbers.
            json_string(&mut head, v);
        }
        head.push_str("}, \"datapoints\": [");
        out.extend_from_slice(head.as_bytes());
        let mut first_point = true;
        let mut stamp = Stamp::new();
        let step = s.effective_step().max(1);
        for (v, t) in points(s) {
            if no_null_points && v.is_none_or(|x| x.is_nan()) {
                continue;
            }
            // A point takes at most 64 bytes (`json_point`'s buffer) and `]}, ` four more.
            if out.capacity() - out.len() < 68 && !out.is_empty() {
                pieces.push(std::mem::replace(&mut out, piece(JSON_PIECE)));
            }
            json_point(&mut out, v, t, &mut stamp, &mut last, !first_point, step);
            first_point = false;
        }
        out.extend_from_slice(b"]}");
    }
    if !out.is_empty() {
        pieces.push(out);
    }
    pieces
}

/// `format=raw`: `name,start,end,step|v1,v2,...`, one line per series.
pub(crate) fn raw(series: &[TimeSeries]) -> String {
    let mut out = String::new();
    for s in series {
        let _ = write!(
            out,
            "{},{},{},{}|",
            s.name,
            s.start,
            s.end,
            s.effective_step()
        );
        let vals: Vec<String> = s.values().into_iter().map(py_optional).collect();
        out.push_str(&vals.join(","));
        out.push('\n');
    }
    out
}

/// A value as graphite's dygraph and rickshaw writers print it: Python's repr, `null` for a gap
/// or NaN, and JSON-readable infinities.
fn plain_value(v: Option<f64>, infinity: (&str, &str)) -> String {
    match v {
        None => "null".into(),
        Some(x) if x.is_nan() => "null".into(),
        Some(x) if x.is_infinite() => if x > 0.0 { infinity.0 } else { infinity.1 }.into(),
        Some(x) => py_float(x),
    }
}

/// `format=dygraph`: `{"labels" : ["Time", names...], "data" : [[ts000, v...], ...]}`, rows on
/// the first series' timestamps (graphite writes `Infinity` there, as dygraph reads it).
pub(crate) fn dygraph(series: &[TimeSeries]) -> String {
    let Some(first) = series.first() else {
        return "{}".into();
    };
    let step = first.step.max(1);
    let rows = usize::try_from((first.end - first.start + step - 1) / step).unwrap_or(0);
    let mut data: Vec<String> = (0..rows)
        .map(|i| format!("[{}000", first.start + i as i64 * step))
        .collect();
    let mut labels = vec!["Time".to_owned()];
    for s in series {
        labels.push(s.name.clone());
        for (row, v) in data.iter_mut().zip(s.values()) {
            row.push_str(", ");
            row.push_str(&plain_value(v, ("Infinity", "-Infinity")));
        }
    }
    let mut out = String::from("{\"labels\" : [");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_string(&mut out, l);
    }
    out.push_str("], \"data\" : [");
    for (i, row) in data.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(row);
        out.push(']');
    }
    out.push_str("]}");
    out
}

/// `format=rickshaw`: `[{"target": name, "datapoints": [{"x": ts, "y": v}, ...]}]`.
pub(crate) fn rickshaw(series: &[TimeSeries]) -> String {
    let mut out = String::from("[");
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"target\": ");
        json_string(&mut out, &s.name);
        out.push_str(", \"datapoints\": [");
        let step = s.step.max(1);
        let times = (s.start..s.end).step_by(usize::try_from(step).unwrap_or(1));
        for (j, (t, v)) in times.zip(s.values()).enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            let _ = write!(
                out,
                "{{\"x\": {t}, \"y\": {}}}",
                plain_value(v, ("1e9999", "-1e9999"))
            );
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

fn utc(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    let secs = ts.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `format=csv`: `name,YYYY-MM-DD HH:MM:SS,value` per point, an empty value for a gap (UTC).
pub(crate) fn csv(series: &[TimeSeries]) -> String {
    let mut out = String::new();
    for s in series {
        let step = s.effective_step();
        let name = if s.name.contains([',', '"', '\n']) {
            format!("\"{}\"", s.name.replace('"', "\"\""))
        } else {
            s.name.clone()
        };
        for (i, v) in s.values().into_iter().enumerate() {
            let value = v.map(py_float).unwrap_or_default();
            let _ = writeln!(out, "{name},{},{value}", utc(s.start + i as i64 * step));
        }
    }
    out.replace('\n', "\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ryu's text of `v`, and the fast path's from every starting guess (all must agree).
    fn ryu_or_fast(v: f64) -> (String, Option<String>) {
        let mut got: Option<String> = None;
        for start in 0..=POW10.len() {
            let mut guess = start;
            let mut buf = [0u8; 64];
            let hit = short_decimal(v, &mut guess, &mut buf, 3)
                .map(|n| String::from_utf8_lossy(&buf[3..n]).into_owned());
            if start > 0 {
                assert_eq!(hit, got, "{v:e} from guess {start}");
            }
            got = hit;
        }
        (ryu::Buffer::new().format_finite(v).to_owned(), got)
    }

    /// Timestamps kept as text step as formatting them would, across carries, a longer
    /// number, jumps back and negative times.
    #[test]
    fn stamps_are_itoas() {
        let mut stamp = Stamp::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut t: i64 = 0;
        for i in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            t = match (i % 1000, rng % 50) {
                (0, _) => (rng % 2_000_000_000) as i64 - 1_000_000_000,
                (_, 0) => t - (rng % 1000) as i64,
                (_, 1) => t + (rng % (1 << 40)) as i64,
                (_, 2) => 99_999_999_990 + (rng % 20) as i64,
                _ => t + (rng % 120) as i64,
            };
            let want = itoa::Buffer::new().format(t).to_owned();
            assert_eq!(std::str::from_utf8(stamp.text(t)), Ok(want.as_str()), "{t}");
        }
    }

    /// A big answer written by several threads is the same text as by one.
    #[test]
    fn a_big_answer_is_the_same_from_any_number_of_threads() {
        let mut all = Vec::new();
        for i in 0..300u32 {
            let values = (0..1000u32)
                .map(|j| match (i % 7, (i + j) % 13) {
                    (3, _) => None,
                    (_, 0) => None,
                    (_, 1) => Some(f64::NAN),
                    (_, 2) => Some(f64::INFINITY),
                    _ => Some(f64::from(i * 1000 + j) / 1000.0 - 17.0),
                })
                .collect();
            all.push(TimeSeries::new(format!("s.{i}"), 1_800_000_000, 60, values));
        }
        for no_null in [false, true] {
            let one = format!(
                "[{}]",
                String::from_utf8(json_series(&all, no_null).concat()).expect("utf-8")
            );
            assert_eq!(json(&all, no_null), one);
            assert!(one.len() > 200_000 * 10);
            // In pieces that never grew past their size, none empty.
            let pieces = json_series(&all, no_null);
            assert!(pieces.len() > 1, "{} pieces", pieces.len());
            for p in &pieces {
                assert!(
                    !p.is_empty() && p.len() <= JSON_PIECE,
                    "a piece of {}",
                    p.len()
                );
            }
        }
    }

    /// A value repeated across the end of a piece is written whole in the next one: the
    /// writer keeps the last value's text, and a piece may end between any two points.
    #[test]
    fn repeated_values_across_pieces_read_back() {
        let values: Vec<Option<f64>> = (0..300_000u32)
            .map(|i| match i % 1000 {
                0..=499 => Some(123.456_789),
                500..=509 => None,
                _ => Some(-0.000_123_456_789_012_3 * f64::from(i / 1000)),
            })
            .collect();
        let s = TimeSeries::new("r".to_owned(), 1_800_000_000, 10, values.clone());
        let pieces = json_series(std::slice::from_ref(&s), false);
        assert!(pieces.len() > 2, "{} pieces", pieces.len());
        let text = String::from_utf8(pieces.concat()).expect("utf-8");
        let at = text.find("\"datapoints\": [").expect("datapoints") + 15;
        let mut want = String::new();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                want.push_str(", ");
            }
            let v = v.map_or("null".to_owned(), |x| {
                ryu::Buffer::new().format_finite(x).to_owned()
            });
            want.push_str(&format!("[{v}, {}]", 1_800_000_000 + 10 * i as i64));
        }
        assert!(
            text[at..] == format!("{want}]}}"),
            "the points differ from their values' text"
        );
    }

    /// Every point's text is its own value's, as ryu writes it, however the values repeat
    /// (the writer keeps the last value's text): -0.0 beside 0.0, nulls and NaNs between
    /// equal values, infinities, long runs and values the fast path leaves to ryu.
    #[test]
    fn each_point_is_its_own_values_text() {
        use proptest::prelude::*;
        let pool = [
            0.0,
            -0.0,
            1.0,
            0.1 + 0.2,
            45.123,
            -45.123,
            1e300,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let value = prop_oneof![
            3 => (0..pool.len()).prop_map(move |i| Some(pool[i])),
            1 => Just(None),
            1 => any::<f64>().prop_map(Some),
        ];
        let mut runner = proptest::test_runner::TestRunner::new(
            proptest::test_runner::Config::with_cases(3_000),
        );
        runner
            .run(&proptest::collection::vec(value, 1..60), |values| {
                let s = TimeSeries::new("a.b", 1_800_000_000, 10, values.clone());
                let text = json(&[s], false);
                let mut want = String::new();
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        want.push_str(", ");
                    }
                    let v = match v {
                        Some(x) if x.is_finite() => ryu::Buffer::new().format_finite(*x).to_owned(),
                        Some(x) if x.is_infinite() => {
                            if *x > 0.0 { "1e9999" } else { "-1e9999" }.to_owned()
                        }
                        _ => "null".to_owned(),
                    };
                    want.push_str(&format!("[{v}, {}]", 1_800_000_000 + 10 * i as i64));
                }
                let at = text.find("\"datapoints\": [").expect("datapoints") + 15;
                prop_assert_eq!(&text[at..], format!("{want}]}}]"));
                Ok(())
            })
            .expect("every point is its value's text");
    }

    /// The fast path writes exactly what ryu writes, whenever it answers.
    #[test]
    fn short_decimals_are_ryus() {
        use proptest::prelude::*;
        let mut hits = 0;
        for v in [
            0.001,
            0.0015,
            0.1,
            0.3,
            0.1 + 0.2,
            1.0,
            -1.0,
            45.123,
            -45.123,
            99.999,
            100.0,
            123456.789,
            1e14,
            1e15 - 1.0,
            999999999999999.9,
            5e-3,
            0.000999,
            1e-3,
            2.5e-3,
            (1u64 << 49) as f64,
            562949953421311.5,
            0.1234567,
            1.0 / 3.0,
        ] {
            let (want, got) = ryu_or_fast(v);
            if let Some(got) = got {
                assert_eq!(got, want, "{v:e}");
                hits += 1;
            }
        }
        assert!(hits >= 15, "the fast path took only {hits}");
        let mut runner = proptest::test_runner::TestRunner::new(
            proptest::test_runner::Config::with_cases(50_000),
        );
        let decimals = (-1_000_000_000_000i64..1_000_000_000_000, 0u32..9)
            .prop_map(|(m, d)| m as f64 / 10f64.powi(d as i32));
        let any = any::<f64>().prop_filter("finite", |v| v.is_finite());
        for strategy in [decimals.boxed(), any.boxed()] {
            runner
                .run(&strategy, |v| {
                    let (want, got) = ryu_or_fast(v);
                    if let Some(got) = got {
                        prop_assert_eq!(got, want, "{:e}", v);
                    }
                    Ok(())
                })
                .expect("the fast path agrees with ryu");
        }
        // Exhaustive over every 3-decimal value below 100 (the benches' data).
        for m in 1..100_000u32 {
            let v = f64::from(m) / 1000.0;
            let (want, got) = ryu_or_fast(v);
            assert_eq!(got.as_deref(), Some(want.as_str()), "{v}");
        }
    }

    fn series(start: i64, step: i64, n: usize) -> TimeSeries {
        TimeSeries::new("a.b", start, step, (0..n).map(|i| Some(i as f64)).collect())
    }

    #[test]
    fn max_data_points_like_graphite() {
        // The contract's example: 100 points from 1000 at step 10, maxDataPoints 30.
        let mut v = vec![series(1000, 10, 100)];
        consolidate_for_display(&mut v, 30);
        let dp = datapoints(&v[0]);
        assert_eq!(dp.len(), 25);
        assert_eq!(dp[0], (Some(4.5), 1040));
        // Under sum nothing is lost: every value is in some point.
        let mut v = vec![series(1000, 10, 100)];
        v[0].consolidation = Consolidation::Sum;
        consolidate_for_display(&mut v, 30);
        let dp = datapoints(&v[0]);
        let total: f64 = dp.iter().filter_map(|p| p.0).sum();
        assert_eq!(total, (0..100).sum::<i32>() as f64);
        assert!(dp.iter().all(|p| p.1 % 40 == 0));
        // Fewer points than asked: untouched.
        let mut v = vec![series(1000, 10, 10)];
        consolidate_for_display(&mut v, 30);
        assert_eq!(datapoints(&v[0]).len(), 10);
    }

    #[test]
    fn formats() {
        let mut s = TimeSeries::new("a.b", 60, 60, vec![Some(1.0), None, Some(f64::INFINITY)]);
        s.tags.insert("n".into(), "1".into());
        assert_eq!(
            json(&[s.clone()], false),
            r#"[{"target": "a.b", "tags": {"n": "1", "name": "a.b"}, "datapoints": [[1.0, 60], [null, 120], [1e9999, 180]]}]"#
        );
        assert_eq!(json(&[s.clone()], true).matches('[').count(), 4);
        assert_eq!(raw(&[s.clone()]), "a.b,60,240,60|1.0,None,inf\n");
        assert_eq!(csv(&[s.clone()]), "a.b,1970-01-01 00:01:00,1.0\r\na.b,1970-01-01 00:02:00,\r\na.b,1970-01-01 00:03:00,inf\r\n");
        assert_eq!(
            dygraph(&[s.clone()]),
            r#"{"labels" : ["Time", "a.b"], "data" : [[60000, 1.0], [120000, null], [180000, Infinity]]}"#
        );
        assert_eq!(dygraph(&[]), "{}");
        assert_eq!(
            rickshaw(&[s.clone()]),
            r#"[{"target": "a.b", "datapoints": [{"x": 60, "y": 1.0}, {"x": 120, "y": null}, {"x": 180, "y": 1e9999}]}]"#
        );
        let empty = TimeSeries::new("e", 0, 10, vec![None, None]);
        assert_eq!(json(&[empty], true), "[]");
    }
}
