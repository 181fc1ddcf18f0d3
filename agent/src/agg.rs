//! Per-interval aggregation: buckets of the log's own time, each holding one cell per series.
//!
//! A bucket `[t, t + interval)` is *complete* once the watermark (the newest line time seen, or
//! the clock when every file is read to its end) passes its end; its changed cells are then
//! emitted as points, each the bucket's *total* so far. A late line within the lateness window
//! changes the total and the bucket is emitted again: the store keeps the last write for a
//! timestamp, so the corrected total replaces the old one. Buckets older than the window are
//! dropped and lines for them are counted as late.
//!
//! The whole state (open buckets, series, watermark, counters) is part of the agent's checkpoint
//! (`Agg::snapshot`, `Agg::restore`): after a restart the totals continue from where the
//! checkpointed lines left them, so re-read lines are never added twice and never replace a total
//! with a partial one. What the emitted series are called is [`naming`](crate::naming)'s
//! business; a series here is a rule and its tag values.

use hdrhistogram::Histogram;
use rustc_hash::{FxHashMap, FxHashSet};

type KeyMap = std::collections::HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>;
use serde::{Deserialize, Serialize};

use crate::naming::Naming;

/// What one rule does with a matching line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// Counts lines.
    Counter,
    /// Adds up a captured number.
    Sum,
    /// Keeps the last captured number.
    Gauge,
    /// A histogram of a duration, published as count, percentiles and max, in seconds; with
    /// `buckets`, also Spectator's percentile bucket counters of it (`T` buckets, nanoseconds),
    /// which add up across hosts where percentiles do not.
    Latency {
        percentiles: Vec<f64>,
        buckets: bool,
    },
    /// statsd `|c`: the sum of value / sample rate, published as count and per-second rate.
    StatsdCounter,
    /// statsd `|g`: the last value; a delta adds to it. Carried into quiet intervals.
    StatsdGauge,
    /// statsd `|ms`, `|h`, `|d`: samples in an HDR histogram with exact count, sum, sum of
    /// squares, lower and upper; `buckets` is the prefix of its percentile bucket counters
    /// (`T` for timers, in nanoseconds; `D` for the others), when they are on.
    StatsdTimer {
        percentiles: Vec<f64>,
        buckets: Option<u8>,
    },
    /// statsd `|s`: the number of distinct members in the interval.
    StatsdSet,
}

impl Kind {
    fn is_statsd(&self) -> bool {
        matches!(
            self,
            Kind::StatsdCounter | Kind::StatsdGauge | Kind::StatsdTimer { .. } | Kind::StatsdSet
        )
    }
}

/// One observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Obs {
    Count,
    Value(f64),
    /// Microseconds.
    Micros(u64),
    /// A gauge's change (statsd `+3|g`, `-3|g`).
    Delta(f64),
    /// A statsd timer's sample, and what it counts for (1 / its sample rate).
    Sample {
        value: f64,
        weight: f64,
    },
    /// A statsd set's member, hashed ([`member_hash`]).
    Member(u64),
}

/// Static description of a rule as the aggregator sees it.
#[derive(Debug, Clone)]
pub struct RuleShape {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) tags: Vec<String>,
    pub(crate) max_values: usize,
}

/// Lines dated further back than this are counted late whatever the watermark.
const MAX_AGE: i64 = 10 * 366 * 86400;

/// The largest duration a histogram holds: one hour; longer ones are clamped to it.
const HIST_MAX_US: u64 = 3_600_000_000;

#[derive(Debug, Clone)]
struct Hist {
    h: Histogram<u32>,
    /// The exact largest value (the histogram only knows it within its precision).
    max_us: u64,
    /// Spectator's percentile buckets of the exact values, `(bucket, count)` by bucket, when
    /// the rule asks for them (empty otherwise).
    buckets: Vec<(u16, u64)>,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            h: Histogram::new_with_bounds(1, HIST_MAX_US, 2).expect("static histogram bounds"),
            max_us: 0,
            buckets: Vec::new(),
        }
    }

    /// One observed duration of a latency rule (`kind`).
    fn sample(&mut self, us: u64, kind: &Kind) {
        self.record(us, 1);
        if matches!(kind, Kind::Latency { buckets: true, .. }) {
            self.record_bucket(us, 1);
        }
    }

    /// Counts `n` samples of `us` in their percentile bucket: the exact value, in nanoseconds
    /// (Spectator's timers), not the histogram's rounding of it.
    fn record_bucket(&mut self, us: u64, n: u64) {
        let ns = i64::try_from(us.saturating_mul(1000)).unwrap_or(i64::MAX);
        let i = crate::statsd::buckets::index(ns);
        match self.buckets.binary_search_by_key(&i, |b| b.0) {
            Ok(at) => self.buckets[at].1 += n,
            Err(at) => self.buckets.insert(at, (i, n)),
        }
    }

    fn record(&mut self, us: u64, n: u64) {
        let v = us.clamp(1, HIST_MAX_US);
        // Counts are u32 per bucket cell; saturating keeps a pathological burst from panicking.
        let _ = self.h.record_n(v, u32::try_from(n).unwrap_or(u32::MAX));
        self.max_us = self.max_us.max(us.min(HIST_MAX_US));
    }
}

/// A statsd set holds at most this many members per interval; more are counted as overflow.
const SET_MAX: usize = 1 << 20;

/// Values of a statsd timer are kept in the histogram in thousandths of their unit.
const TIMER_SCALE: f64 = 1000.0;

/// The largest value the timer histogram holds (in thousandths); larger ones are clamped to it.
const TIMER_MAX: u64 = 1 << 62;

/// Samples a timer keeps as they are before it moves them into a histogram.
const TIMER_SMALL: usize = 256;

/// A statsd timer's interval: its first [`TIMER_SMALL`] samples as they are (percentiles are
/// then Etsy's exactly), then an auto-resizing HDR histogram (two significant digits, so a
/// percentile is within 1% of the sample Etsy's statsd would pick), and the exact moments.
///
/// Most timers of a busy host see a few samples an interval; a histogram each (kilobytes of
/// counts at random offsets) made the aggregator's working set tens of megabytes at a few
/// thousand timers, and every sample a cache miss.
#[derive(Debug, Clone)]
pub(crate) struct Timer {
    /// The samples while there are at most [`TIMER_SMALL`]; empty once `h` holds them.
    small: Vec<f64>,
    h: Option<Box<Histogram<u32>>>,
    /// Samples recorded.
    n: u64,
    /// What they count for: the sum of 1 / sample rate.
    count: f64,
    sum: f64,
    sum_squares: f64,
    lower: f64,
    upper: f64,
    /// Percentile bucket counters (index, weighted count), by index, when on.
    buckets: Vec<(u16, f64)>,
}

impl Timer {
    fn new() -> Timer {
        Timer {
            small: Vec::new(),
            h: None,
            n: 0,
            count: 0.0,
            sum: 0.0,
            sum_squares: 0.0,
            lower: f64::INFINITY,
            upper: f64::NEG_INFINITY,
            buckets: Vec::new(),
        }
    }

    fn record(&mut self, value: f64, weight: f64, buckets: Option<u8>) {
        match &mut self.h {
            Some(h) => Timer::record_in(h, value),
            None if self.small.len() < TIMER_SMALL => self.small.push(value),
            None => {
                let mut h = Box::new(Histogram::new(2).expect("static histogram precision"));
                for v in self.small.drain(..) {
                    Timer::record_in(&mut h, v);
                }
                self.small = Vec::new();
                Timer::record_in(&mut h, value);
                self.h = Some(h);
            }
        }
        self.n += 1;
        self.count += weight;
        self.sum += value;
        self.sum_squares += value * value;
        self.lower = self.lower.min(value);
        self.upper = self.upper.max(value);
        if let Some(prefix) = buckets {
            // Timers count nanoseconds (Spectator's timers); the others their own unit.
            let v = if prefix == b'T' { value * 1e6 } else { value };
            let i = crate::statsd::buckets::index(v.round().clamp(0.0, i64::MAX as f64) as i64);
            match self.buckets.binary_search_by_key(&i, |b| b.0) {
                Ok(at) => self.buckets[at].1 += weight,
                Err(at) => self.buckets.insert(at, (i, weight)),
            }
        }
    }

    fn record_in(h: &mut Histogram<u32>, value: f64) {
        let scaled = (value * TIMER_SCALE).round().clamp(0.0, TIMER_MAX as f64) as u64;
        let _ = h.record(scaled);
    }

    /// The sample of rank `k` (1-based): exactly, from the samples sorted, or as the histogram
    /// knows it, within `[lower, upper]`.
    fn at_rank(&self, sorted: &[f64], k: u64) -> f64 {
        if k <= 1 {
            return self.lower;
        }
        if k >= self.n {
            return self.upper;
        }
        let Some(h) = &self.h else {
            return sorted.get(k as usize - 1).copied().unwrap_or(self.upper);
        };
        let mut seen = 0;
        for v in h.iter_recorded() {
            seen += u64::from(v.count_at_value());
            if seen >= k {
                let mid = h.median_equivalent(v.value_iterated_to()) as f64 / TIMER_SCALE;
                return mid.clamp(self.lower, self.upper);
            }
        }
        self.upper
    }

    /// The sum and sum of squares of the `k` smallest samples, exactly or as the histogram
    /// knows them.
    fn sums_below(&self, sorted: &[f64], k: u64) -> (f64, f64) {
        if k >= self.n {
            return (self.sum, self.sum_squares);
        }
        let Some(h) = &self.h else {
            let below = &sorted[..(k as usize).min(sorted.len())];
            return below
                .iter()
                .fold((0.0, 0.0), |(s, q), &x| (s + x, q + x * x));
        };
        let (mut left, mut sum, mut squares) = (k, 0.0, 0.0);
        for v in h.iter_recorded() {
            if left == 0 {
                break;
            }
            let take = u64::from(v.count_at_value()).min(left);
            let x = (h.median_equivalent(v.value_iterated_to()) as f64 / TIMER_SCALE)
                .clamp(self.lower, self.upper);
            sum += take as f64 * x;
            squares += take as f64 * x * x;
            left -= take;
        }
        (sum, squares)
    }

    /// Etsy statsd's statistics of the interval (`lib/process_metrics.js`) as `(Etsy's name,
    /// Tally's name if it has one, value)`: `count` and `count_ps` (`rate`) always; with
    /// samples also `lower`, `upper`, `sum`, `sum_squares`, `mean`, `median`, `std` and per
    /// percentile `count_P`, `mean_P`, `upper_P` (`pP`), `sum_P`, `sum_squares_P` (P written
    /// as Etsy does: `90`, `99_9`).
    pub(crate) fn stats(&self, interval: i64, percentiles: &[f64], out: &mut Vec<TimerStat>) {
        let mut push = |etsy: String, tally: Option<&str>, v: f64| {
            out.push((etsy.clone(), tally.map(|t| t.to_string()), v));
        };
        push("count".into(), Some("count"), self.count);
        push(
            "count_ps".into(),
            Some("rate"),
            self.count / interval as f64,
        );
        if self.n == 0 {
            return;
        }
        let n = self.n;
        let mut sorted = self.small.clone();
        sorted.sort_by(f64::total_cmp);
        let sorted = &sorted[..];
        for &p in percentiles {
            let k = if n > 1 {
                (p / 100.0 * n as f64).round() as u64
            } else {
                n
            };
            if k == 0 {
                continue;
            }
            let (sum, squares) = self.sums_below(sorted, k);
            let p = fmt_percentile(p);
            push(format!("count_{p}"), None, k as f64);
            push(format!("mean_{p}"), None, sum / k as f64);
            push(
                format!("upper_{p}"),
                Some(&format!("p{p}")),
                self.at_rank(sorted, k),
            );
            push(format!("sum_{p}"), None, sum);
            push(format!("sum_squares_{p}"), None, squares);
        }
        let mean = self.sum / n as f64;
        let median = if n % 2 == 1 {
            self.at_rank(sorted, n / 2 + 1)
        } else {
            (self.at_rank(sorted, n / 2) + self.at_rank(sorted, n / 2 + 1)) / 2.0
        };
        push("lower".into(), Some("lower"), self.lower);
        push("upper".into(), Some("upper"), self.upper);
        push("sum".into(), Some("sum"), self.sum);
        push("sum_squares".into(), None, self.sum_squares);
        push("mean".into(), Some("mean"), mean);
        push("median".into(), Some("median"), median);
        let std = (self.sum_squares / n as f64 - mean * mean).max(0.0).sqrt();
        push("std".into(), Some("std"), std);
    }

    fn state(&self) -> TimerState {
        TimerState {
            hist: self.h.as_ref().map_or_else(Vec::new, |h| {
                h.iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value() as u64))
                    .collect()
            }),
            samples: self.small.clone(),
            n: self.n,
            count: self.count,
            sum: self.sum,
            sum_squares: self.sum_squares,
            lower: Some(self.lower),
            upper: Some(self.upper),
            buckets: self.buckets.clone(),
        }
    }

    fn from_state(st: &TimerState) -> Timer {
        let mut t = Timer::new();
        if !st.hist.is_empty() {
            let mut h = Box::new(Histogram::new(2).expect("static histogram precision"));
            for &(v, n) in &st.hist {
                let _ = h.record_n(v, u32::try_from(n).unwrap_or(u32::MAX));
            }
            t.h = Some(h);
        }
        // A checkpoint from before the samples were kept has only the histogram; one that
        // somehow has both, or too many samples, keeps them all in the histogram.
        if t.h.is_none() && st.samples.len() <= TIMER_SMALL {
            t.small = st.samples.clone();
        } else {
            let h = t.h.get_or_insert_with(|| {
                Box::new(Histogram::new(2).expect("static histogram precision"))
            });
            for &v in &st.samples {
                Timer::record_in(h, v);
            }
        }
        t.n = st.n;
        t.count = st.count;
        t.sum = st.sum;
        t.sum_squares = st.sum_squares;
        // JSON has no infinities: an empty timer's bounds come back as written (null -> none).
        t.lower = st.lower.unwrap_or(f64::INFINITY);
        t.upper = st.upper.unwrap_or(f64::NEG_INFINITY);
        t.buckets = st.buckets.clone();
        t
    }
}

/// One statistic of a timer: Etsy's name, Tally's name (if Tally publishes it), the value.
pub(crate) type TimerStat = (String, Option<String>, f64);

/// A statsd set member's hash: FNV-1a, 64 bits, written out here so that the hashes in a
/// checkpoint mean the same to every build.
pub(crate) fn member_hash(member: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in member {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Debug, Clone)]
enum Cell {
    Count(f64),
    Gauge(f64),
    Hist(Box<Hist>),
    Timer(Box<Timer>),
    Set(Box<FxHashSet<u64>>),
}

#[derive(Debug, Clone)]
struct Slot {
    cell: Cell,
    dirty: bool,
}

#[derive(Debug, Default, Clone)]
struct Bucket {
    cells: FxHashMap<u32, Slot>,
}

#[derive(Debug, Clone)]
struct Series {
    rule: u32,
    /// Tag values, sanitized, in the rule's tag order.
    values: Vec<String>,
    /// The newest bucket it had a line in.
    last_seen: i64,
    /// The oldest bucket it had a line in.
    first_seen: i64,
    /// A gauge's latest value, which a delta changes and quiet intervals carry (statsd).
    gauge: Option<f64>,
}

#[derive(Debug, Default, Clone)]
struct RuleSeries {
    /// Joined tag values (`\x1f`-separated) to series id. foldhash, not Fx: Fx's hash of
    /// these keys (long shared prefixes, a few differing bytes) made lookups compare several
    /// keys each (a fifth of a statsd metric's time), and its fixed seed lets a sender choose
    /// names that collide; foldhash's is random per process.
    by_key: KeyMap,
    /// Distinct values seen per tag, for the cardinality cap.
    values: Vec<FxHashSet<Box<[u8]>>>,
}

/// Counters the aggregator keeps for the agent's own metrics; checkpointed, so they continue
/// across restarts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AggCounts {
    /// Lines for a bucket already closed (older than the lateness window), not counted.
    pub(crate) late: u64,
    /// Lines dated too far in the future, not counted.
    pub(crate) future: u64,
    /// New series sent to `other` by a cardinality cap.
    pub(crate) overflow: u64,
}

/// How much the aggregator holds, for the agent's own metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AggSizes {
    /// Buckets within the lateness window.
    pub(crate) open_buckets: usize,
    /// Distinct series known.
    pub(crate) series: usize,
}

/// One emitted point.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub(crate) name: String,
    pub(crate) value: f64,
    pub(crate) time: i64,
}

/// The aggregator.
#[derive(Debug)]
pub struct Agg {
    interval: i64,
    lateness: i64,
    zero_fill_for: i64,
    rules: Vec<RuleShape>,
    naming: Naming,
    series: Vec<Series>,
    rule_series: Vec<RuleSeries>,
    buckets: FxHashMap<i64, Bucket>,
    /// The newest time known to be complete up to.
    watermark: i64,
    /// Buckets starting before this are closed; lines for them are late.
    horizon: i64,
    counts: AggCounts,
    key: Vec<u8>,
    /// The newest line time added.
    newest: i64,
    /// At most this many series per rule (0: no cap); more go to a series named `other`.
    max_series: usize,
    /// How statsd series are named (the statsd aggregator's).
    statsd_naming: Option<crate::naming::StatsdNaming>,
}

/// Separates tag values in a series key; sanitized values
/// ([`push_sanitized`](crate::naming::push_sanitized)) never contain it.
pub(crate) const SEP: u8 = 0x1f;

impl Agg {
    pub fn new(
        interval: i64,
        lateness: i64,
        zero_fill_for: i64,
        rules: Vec<RuleShape>,
        naming: Naming,
    ) -> Agg {
        let rule_series = rules
            .iter()
            .map(|r| RuleSeries {
                by_key: KeyMap::default(),
                values: vec![FxHashSet::default(); r.tags.len()],
            })
            .collect();
        Agg {
            interval: interval.max(1),
            lateness: lateness.max(0),
            zero_fill_for,
            rules,
            naming,
            series: Vec::new(),
            rule_series,
            buckets: FxHashMap::default(),
            watermark: i64::MIN,
            horizon: i64::MIN,
            counts: AggCounts::default(),
            key: Vec::new(),
            newest: i64::MIN,
            max_series: 0,
            statsd_naming: None,
        }
    }

    /// The statsd aggregator: at most `max_series` series per type, named by `naming`.
    pub(crate) fn for_statsd(
        mut self,
        max_series: usize,
        naming: crate::naming::StatsdNaming,
    ) -> Agg {
        self.max_series = max_series;
        self.statsd_naming = Some(naming);
        self
    }

    /// Buckets starting before this are closed.
    pub(crate) fn horizon(&self) -> i64 {
        self.horizon
    }

    /// How the emitted series are named.
    pub(crate) fn naming(&self) -> &Naming {
        &self.naming
    }

    /// The newest line time added so far.
    pub(crate) fn newest(&self) -> i64 {
        self.newest
    }

    /// The kind of `rule`.
    pub(crate) fn kind(&self, rule: usize) -> &Kind {
        &self.rules[rule].kind
    }

    pub(crate) fn counts(&self) -> AggCounts {
        self.counts
    }

    pub(crate) fn interval(&self) -> i64 {
        self.interval
    }

    /// Open buckets and series, for the agent's own metrics.
    pub(crate) fn sizes(&self) -> AggSizes {
        AggSizes {
            open_buckets: self.buckets.len(),
            series: self.series.len(),
        }
    }

    /// Adds one observation for `rule` with the tag values already joined in `key` (each value
    /// sanitized and followed by [`SEP`]), at line time `t`. `now` bounds how far in the
    /// future a line may claim to be.
    pub(crate) fn add(&mut self, rule: usize, key: &[u8], t: i64, now: i64, obs: Obs) {
        if t > now + self.interval + self.lateness {
            // A line from the far future would close every open bucket: refuse it.
            self.counts.future += 1;
            return;
        }
        if t < now - MAX_AGE {
            // A mistaken time field (epoch 0, a two-digit year): not a bucket worth shipping.
            self.counts.late += 1;
            return;
        }
        let bucket_t = t - t.rem_euclid(self.interval);
        if bucket_t < self.horizon {
            self.counts.late += 1;
            return;
        }
        self.newest = self.newest.max(t);
        let id = match self.rule_series[rule].by_key.get(key) {
            Some(&id) => id,
            None => self.new_series(rule, key),
        };
        if !self.buckets.contains_key(&bucket_t) {
            self.open_bucket(bucket_t);
        }
        let s = &mut self.series[id as usize];
        s.last_seen = s.last_seen.max(bucket_t);
        s.first_seen = s.first_seen.min(bucket_t);
        // A gauge's new value, from its last one for a delta.
        let obs = match obs {
            Obs::Delta(d) => Obs::Value(s.gauge.unwrap_or(0.0) + d),
            o => o,
        };
        if let (Kind::Gauge | Kind::StatsdGauge, Obs::Value(v)) = (&self.rules[rule].kind, obs) {
            s.gauge = Some(v);
        }
        let bucket = self.buckets.get_mut(&bucket_t).expect("just opened");
        let kind = &self.rules[rule].kind;
        let slot = bucket.cells.entry(id).or_insert_with(|| Slot {
            cell: empty_cell(kind),
            dirty: true,
        });
        slot.dirty = true;
        match (&mut slot.cell, obs) {
            (Cell::Count(c), Obs::Count) => *c += 1.0,
            (Cell::Count(c), Obs::Value(v)) => *c += v,
            (Cell::Gauge(g), Obs::Value(v)) => *g = v,
            (Cell::Hist(h), Obs::Micros(us)) => h.sample(us, kind),
            (Cell::Hist(h), Obs::Value(secs)) => h.sample((secs * 1e6).max(0.0) as u64, kind),
            (Cell::Timer(tm), Obs::Sample { value, weight }) => {
                let buckets = match kind {
                    Kind::StatsdTimer { buckets, .. } => *buckets,
                    _ => None,
                };
                tm.record(value, weight, buckets);
            }
            (Cell::Set(set), Obs::Member(m)) => {
                if set.len() < SET_MAX || set.contains(&m) {
                    set.insert(m);
                } else {
                    self.counts.overflow += 1;
                }
            }
            _ => {}
        }
    }

    /// A scratch buffer for building keys without allocating.
    pub(crate) fn take_key(&mut self) -> Vec<u8> {
        let mut k = std::mem::take(&mut self.key);
        k.clear();
        k
    }

    pub(crate) fn give_key(&mut self, k: Vec<u8>) {
        self.key = k;
    }

    fn new_series(&mut self, rule: usize, key: &[u8]) -> u32 {
        let cap = self.rules[rule].max_values.max(1);
        let rs = &mut self.rule_series[rule];
        let mut capped: Vec<u8> = Vec::with_capacity(key.len());
        let mut overflow = false;
        let full = self.max_series > 0 && rs.by_key.len() >= self.max_series;
        if full {
            // Too many series: this one counts as `other`, its first value, the rest empty.
            overflow = true;
            capped.extend_from_slice(b"other");
            capped.extend(std::iter::repeat_n(SEP, rs.values.len()));
        }
        for (i, v) in key.split(|&b| b == SEP).take(rs.values.len()).enumerate() {
            if full {
                break;
            }
            let seen = &mut rs.values[i];
            if cap == usize::MAX {
                // No per-value cap: nothing to remember.
                capped.extend_from_slice(v);
            } else if seen.contains(v) || seen.len() < cap {
                if !seen.contains(v) {
                    seen.insert(v.into());
                }
                capped.extend_from_slice(v);
            } else {
                overflow = true;
                capped.extend_from_slice(b"other");
            }
            capped.push(SEP);
        }
        if overflow {
            self.counts.overflow += 1;
            if let Some(&id) = rs.by_key.get(&capped[..]) {
                return id;
            }
        }
        let id = self.series.len() as u32;
        let values = capped
            .split(|&b| b == SEP)
            .take(rs.values.len())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        rs.by_key.insert(capped.into_boxed_slice(), id);
        self.series.push(Series {
            rule: rule as u32,
            values,
            last_seen: i64::MIN,
            first_seen: i64::MAX,
            gauge: None,
        });
        id
    }

    /// A new bucket starts with a 0 for every counter that had a line within `zero_fill_for`,
    /// so a quiet interval reads 0, not "no data".
    fn open_bucket(&mut self, t: i64) {
        let mut b = Bucket::default();
        for (id, s) in self.series.iter().enumerate() {
            // A series counted before `t` and not too long before (it may have lines after
            // `t` already: a quiet bucket is opened once the watermark passed it).
            if s.last_seen == i64::MIN || s.first_seen >= t || t - s.last_seen > self.zero_fill_for
            {
                continue;
            }
            // Counters read 0, statsd timers count 0 and sets hold nothing, statsd gauges
            // keep their value: what Etsy's statsd sends for a key it knows.
            let cell = match &self.rules[s.rule as usize].kind {
                Kind::Counter | Kind::Sum | Kind::StatsdCounter => Cell::Count(0.0),
                k @ (Kind::StatsdTimer { .. } | Kind::StatsdSet) => empty_cell(k),
                // Its value as of `t`: the latest if nothing came since, else what the bucket
                // before ended with.
                Kind::StatsdGauge => {
                    let before = self
                        .buckets
                        .get(&(t - self.interval))
                        .and_then(|b| b.cells.get(&(id as u32)));
                    match (before.map(|slot| &slot.cell), s.gauge) {
                        (Some(Cell::Gauge(g)), _) => Cell::Gauge(*g),
                        (_, Some(g)) if s.last_seen < t => Cell::Gauge(g),
                        _ => continue,
                    }
                }
                Kind::Gauge | Kind::Latency { .. } => continue,
            };
            b.cells.insert(id as u32, Slot { cell, dirty: true });
        }
        self.buckets.insert(t, b);
    }

    /// Moves the watermark to `to` (never back) and opens the empty buckets up to it within
    /// the lateness window, so quiet intervals get their zeros.
    pub(crate) fn advance(&mut self, to: i64) {
        if to <= self.watermark {
            return;
        }
        let from = if self.watermark == i64::MIN {
            to
        } else {
            self.watermark
        };
        self.watermark = to;
        let first = (from.max(to.saturating_sub(self.lateness)))
            .div_euclid(self.interval)
            .saturating_mul(self.interval);
        let mut t = first;
        while t.saturating_add(self.interval) <= to {
            if !self.buckets.contains_key(&t) && self.series.iter().any(|s| s.last_seen != i64::MIN)
            {
                self.open_bucket(t);
            }
            t += self.interval;
        }
    }

    /// Emits the changed cells of every complete bucket (oldest first) and closes the buckets
    /// that left the lateness window. Call [`Agg::advance`] first.
    pub(crate) fn emit(&mut self, out: &mut Vec<Point>) {
        let mut ts: Vec<i64> = self.buckets.keys().copied().collect();
        ts.sort_unstable();
        for t in ts {
            if t + self.interval > self.watermark {
                break;
            }
            let bucket = self.buckets.get_mut(&t).expect("listed");
            let mut ids: Vec<u32> = bucket
                .cells
                .iter()
                .filter(|(_, s)| s.dirty)
                .map(|(&id, _)| id)
                .collect();
            ids.sort_unstable();
            for id in ids {
                let slot = bucket.cells.get_mut(&id).expect("listed");
                slot.dirty = false;
                let s = &self.series[id as usize];
                let rule = &self.rules[s.rule as usize];
                if rule.kind.is_statsd() {
                    let naming = self.statsd_naming.get_or_insert_with(|| {
                        crate::naming::StatsdNaming::tags(&self.naming.host)
                    });
                    statsd_points(naming, rule, s, &slot.cell, t, self.interval, out);
                    continue;
                }
                match &slot.cell {
                    Cell::Timer(_) | Cell::Set(_) => {}
                    Cell::Count(v) | Cell::Gauge(v) => out.push(Point {
                        name: self.naming.rule_series(rule, &s.values, None),
                        value: *v,
                        time: t,
                    }),
                    Cell::Hist(h) => {
                        let Kind::Latency { percentiles, .. } = &rule.kind else {
                            continue;
                        };
                        for &(i, n) in &h.buckets {
                            out.push(Point {
                                name: self.naming.rule_bucket_series(
                                    rule,
                                    &s.values,
                                    &format!("T{i:04X}"),
                                ),
                                value: n as f64,
                                time: t,
                            });
                        }
                        out.push(Point {
                            name: self.naming.rule_series(rule, &s.values, Some("count")),
                            value: h.h.len() as f64,
                            time: t,
                        });
                        for p in percentiles {
                            let stat = format!("p{}", fmt_percentile(*p));
                            let v = h.h.value_at_quantile(p / 100.0).min(h.max_us) as f64 / 1e6;
                            out.push(Point {
                                name: self.naming.rule_series(rule, &s.values, Some(&stat)),
                                value: v,
                                time: t,
                            });
                        }
                        out.push(Point {
                            name: self.naming.rule_series(rule, &s.values, Some("max")),
                            value: h.max_us as f64 / 1e6,
                            time: t,
                        });
                    }
                }
            }
        }
        if self.watermark == i64::MIN {
            return;
        }
        let horizon = (self.watermark.saturating_sub(self.lateness + self.interval))
            .div_euclid(self.interval)
            .saturating_mul(self.interval);
        if horizon > self.horizon {
            self.horizon = horizon;
            self.buckets
                .retain(|&t, b| t >= horizon || b.cells.values().any(|s| s.dirty));
        }
    }

    /// Forgets the series that had nothing since `before` and have no cell in an open bucket,
    /// so that names which stopped coming (a statsd flood) do not keep the series cap full.
    pub(crate) fn forget_idle(&mut self, before: i64) {
        if !self.series.iter().any(|s| s.last_seen < before) {
            return;
        }
        let mut st = self.snapshot();
        let mut used = vec![false; st.series.len()];
        for b in &st.buckets {
            for c in &b.cells {
                used[c.series as usize] = true;
            }
        }
        let mut map = vec![u32::MAX; st.series.len()];
        let mut kept = Vec::with_capacity(st.series.len());
        for (i, s) in std::mem::take(&mut st.series).into_iter().enumerate() {
            if used[i] || s.last_seen >= before {
                map[i] = kept.len() as u32;
                kept.push(s);
            }
        }
        if kept.len() == self.series.len() {
            return;
        }
        st.series = kept;
        for b in &mut st.buckets {
            for c in &mut b.cells {
                c.series = map[c.series as usize];
            }
        }
        self.series.clear();
        for rs in &mut self.rule_series {
            rs.by_key.clear();
            for v in &mut rs.values {
                v.clear();
            }
        }
        self.buckets.clear();
        self.restore(&st);
    }

    /// The checkpointable state.
    pub(crate) fn snapshot(&self) -> AggState {
        let mut buckets: Vec<BucketState> = self
            .buckets
            .iter()
            .map(|(&t, b)| {
                let mut cells: Vec<CellState> = b
                    .cells
                    .iter()
                    .map(|(&id, slot)| {
                        let (mut value, mut hist, mut max_us) = (0.0, Vec::new(), 0);
                        let mut buckets = Vec::new();
                        let (mut timer, mut set) = (None, Vec::new());
                        match &slot.cell {
                            Cell::Count(v) | Cell::Gauge(v) => value = *v,
                            Cell::Hist(h) => {
                                hist =
                                    h.h.iter_recorded()
                                        .map(|v| (v.value_iterated_to(), v.count_at_value() as u64))
                                        .collect();
                                max_us = h.max_us;
                                buckets.clone_from(&h.buckets);
                            }
                            Cell::Timer(t) => timer = Some(t.state()),
                            Cell::Set(s) => {
                                set = s.iter().copied().collect();
                                set.sort_unstable();
                            }
                        }
                        CellState {
                            series: id,
                            dirty: slot.dirty,
                            value,
                            hist,
                            max_us,
                            buckets,
                            timer,
                            set,
                        }
                    })
                    .collect();
                cells.sort_by_key(|c| c.series);
                BucketState { t, cells }
            })
            .collect();
        buckets.sort_by_key(|b| b.t);
        AggState {
            watermark: self.watermark,
            horizon: self.horizon,
            series: self
                .series
                .iter()
                .map(|s| SeriesState {
                    rule: self.rules[s.rule as usize].name.clone(),
                    values: s.values.clone(),
                    last_seen: s.last_seen,
                    first_seen: s.first_seen,
                    gauge: s.gauge,
                })
                .collect(),
            buckets,
            counts: self.counts,
        }
    }

    /// Restores a snapshot. Series of rules that no longer exist (or changed their tags) are
    /// dropped with their cells.
    pub(crate) fn restore(&mut self, st: &AggState) {
        self.watermark = st.watermark;
        self.horizon = st.horizon;
        self.counts = st.counts;
        let mut map: Vec<Option<u32>> = Vec::with_capacity(st.series.len());
        for s in &st.series {
            let rule = self
                .rules
                .iter()
                .position(|r| r.name == s.rule && r.tags.len() == s.values.len());
            map.push(rule.map(|rule| {
                let mut key = Vec::new();
                for v in &s.values {
                    key.extend_from_slice(v.as_bytes());
                    key.push(SEP);
                }
                let capped = self.rules[rule].max_values == usize::MAX;
                let rs = &mut self.rule_series[rule];
                for (i, v) in s.values.iter().enumerate() {
                    if !capped {
                        rs.values[i].insert(v.as_bytes().into());
                    }
                }
                let id = self.series.len() as u32;
                rs.by_key.insert(key.into_boxed_slice(), id);
                self.series.push(Series {
                    rule: rule as u32,
                    values: s.values.clone(),
                    last_seen: s.last_seen,
                    first_seen: s.first_seen,
                    gauge: s.gauge,
                });
                id
            }));
        }
        for b in &st.buckets {
            let mut bucket = Bucket::default();
            for c in &b.cells {
                let Some(Some(id)) = map.get(c.series as usize) else {
                    continue;
                };
                let rule = self.series[*id as usize].rule as usize;
                let cell = match self.rules[rule].kind {
                    Kind::Counter | Kind::Sum | Kind::StatsdCounter => Cell::Count(c.value),
                    Kind::Gauge | Kind::StatsdGauge => Cell::Gauge(c.value),
                    Kind::StatsdTimer { .. } => Cell::Timer(Box::new(
                        c.timer.as_ref().map_or_else(Timer::new, Timer::from_state),
                    )),
                    Kind::StatsdSet => Cell::Set(Box::new(c.set.iter().copied().collect())),
                    Kind::Latency { .. } => {
                        let mut h = Hist::new();
                        for &(v, n) in &c.hist {
                            h.record(v, n);
                        }
                        h.max_us = c.max_us;
                        h.buckets.clone_from(&c.buckets);
                        Cell::Hist(Box::new(h))
                    }
                };
                bucket.cells.insert(
                    *id,
                    Slot {
                        cell,
                        dirty: c.dirty,
                    },
                );
            }
            self.buckets.insert(b.t, bucket);
        }
    }
}

/// A cell of `kind` with nothing in it yet.
fn empty_cell(kind: &Kind) -> Cell {
    match kind {
        Kind::Counter | Kind::Sum | Kind::StatsdCounter => Cell::Count(0.0),
        Kind::Gauge | Kind::StatsdGauge => Cell::Gauge(0.0),
        Kind::Latency { .. } => Cell::Hist(Box::new(Hist::new())),
        Kind::StatsdTimer { .. } => Cell::Timer(Box::new(Timer::new())),
        Kind::StatsdSet => Cell::Set(Box::default()),
    }
}

/// The points of one statsd cell: a series' values are its name and its tags.
fn statsd_points(
    naming: &crate::naming::StatsdNaming,
    rule: &RuleShape,
    s: &Series,
    cell: &Cell,
    t: i64,
    interval: i64,
    out: &mut Vec<Point>,
) {
    use crate::naming::StatsdType;
    let name = s.values.first().map_or("other", String::as_str);
    let tags = s.values.get(1).map_or("", String::as_str);
    let mut push = |ty: StatsdType, stat: Option<&str>, value: f64| {
        if let Some(name) = naming.name(ty, name, tags, stat) {
            out.push(Point {
                name,
                value,
                time: t,
            });
        }
    };
    match (&rule.kind, cell) {
        (Kind::StatsdCounter, Cell::Count(v)) => {
            push(StatsdType::Counter, Some("count"), *v);
            push(StatsdType::Counter, Some("rate"), *v / interval as f64);
        }
        (Kind::StatsdGauge, Cell::Gauge(v)) => push(StatsdType::Gauge, None, *v),
        (Kind::StatsdSet, Cell::Set(set)) => push(StatsdType::Set, None, set.len() as f64),
        (
            Kind::StatsdTimer {
                percentiles,
                buckets,
            },
            Cell::Timer(tm),
        ) => {
            let mut stats = Vec::with_capacity(9 + 5 * percentiles.len());
            tm.stats(interval, percentiles, &mut stats);
            let etsy = naming.is_etsy();
            for (etsy_name, tally_name, v) in &stats {
                let stat = if etsy {
                    Some(etsy_name)
                } else {
                    tally_name.as_ref()
                };
                if let Some(stat) = stat {
                    push(StatsdType::Timer, Some(stat), *v);
                }
            }
            if let Some(prefix) = buckets {
                for &(i, n) in &tm.buckets {
                    let b = format!("{}{i:04X}", char::from(*prefix));
                    push(StatsdType::Bucket, Some(&b), n);
                }
            }
        }
        _ => {}
    }
}

fn fmt_percentile(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{}", p as i64)
    } else {
        format!("{p}").replace('.', "_")
    }
}

/// The aggregator's part of a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct AggState {
    /// Buckets ending at or before it are complete.
    pub(crate) watermark: i64,
    /// Buckets starting before it are closed; lines for them are late.
    pub(crate) horizon: i64,
    /// Every known series; cells refer to them by index.
    pub(crate) series: Vec<SeriesState>,
    /// The open buckets, oldest first.
    pub(crate) buckets: Vec<BucketState>,
    pub(crate) counts: AggCounts,
}

/// One series: a rule and its tag values. A restore drops series whose rule is gone or has
/// another number of tags, with their cells.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SeriesState {
    /// The rule's name.
    pub(crate) rule: String,
    /// Sanitized tag values, in the rule's tag order.
    pub(crate) values: Vec<String>,
    /// The newest bucket it had a line in (zero-filling stops `zero_fill_for` after it).
    pub(crate) last_seen: i64,
    /// The oldest bucket it had a line in (checkpoints before it: unknown, taken as long ago).
    #[serde(default = "long_ago")]
    pub(crate) first_seen: i64,
    /// A statsd gauge's latest value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gauge: Option<f64>,
}

/// One open bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct BucketState {
    /// Its start, in Unix seconds.
    pub(crate) t: i64,
    /// Its cells, by series index.
    pub(crate) cells: Vec<CellState>,
}

/// One series' total in one bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct CellState {
    /// Index into [`AggState::series`].
    pub(crate) series: u32,
    /// Changed since it was last emitted.
    pub(crate) dirty: bool,
    /// A counter's, sum's or gauge's value.
    #[serde(default)]
    pub(crate) value: f64,
    /// A latency cell's histogram as `[value_us, count]` pairs, lowest value first. Pairs, not
    /// objects, on purpose: a cell holds dozens, there is a cell per series and bucket in the
    /// lateness window, and the checkpoint is rewritten every commit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) hist: Vec<(u64, u64)>,
    /// A latency cell's exact largest value, in microseconds.
    #[serde(default)]
    pub(crate) max_us: u64,
    /// A latency cell's percentile buckets as `[bucket, count]` pairs, when its rule has them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) buckets: Vec<(u16, u64)>,
    /// A statsd timer's interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timer: Option<TimerState>,
    /// A statsd set's members ([`member_hash`]), smallest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) set: Vec<u64>,
}

fn long_ago() -> i64 {
    i64::MIN
}

/// A statsd timer's interval in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct TimerState {
    /// The histogram as `[value, count]` pairs, values in thousandths of the unit.
    pub(crate) hist: Vec<(u64, u64)>,
    /// The samples, while the timer holds them as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) samples: Vec<f64>,
    pub(crate) n: u64,
    pub(crate) count: f64,
    pub(crate) sum: f64,
    pub(crate) sum_squares: f64,
    /// `None` while it holds no sample.
    #[serde(with = "finite")]
    pub(crate) lower: Option<f64>,
    #[serde(with = "finite")]
    pub(crate) upper: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) buckets: Vec<(u16, f64)>,
}

/// An `f64` that may be infinite in memory, written as `null` (JSON has no infinities).
mod finite {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) if x.is_finite() => s.serialize_some(x),
            _ => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::push_sanitized;

    fn agg() -> Agg {
        Agg::new(
            10,
            60,
            3600,
            vec![
                RuleShape {
                    name: "hits".into(),
                    kind: Kind::Counter,
                    tags: vec!["source".into()],
                    max_values: 2,
                },
                RuleShape {
                    name: "latency".into(),
                    kind: Kind::Latency {
                        percentiles: vec![50.0, 99.0],
                        buckets: false,
                    },
                    tags: vec![],
                    max_values: 2,
                },
            ],
            Naming {
                host: "web1".into(),
                path_prefix: None,
            },
        )
    }

    fn key(vals: &[&str]) -> Vec<u8> {
        let mut k = Vec::new();
        for v in vals {
            push_sanitized(&mut k, v.as_bytes(), false);
            k.push(SEP);
        }
        k
    }

    fn emit(a: &mut Agg, to: i64) -> Vec<(String, f64, i64)> {
        a.advance(to);
        let mut out = Vec::new();
        a.emit(&mut out);
        out.into_iter().map(|p| (p.name, p.value, p.time)).collect()
    }

    #[test]
    fn buckets_by_line_time_and_reemits_corrected_totals() {
        let mut a = agg();
        let now = 1000;
        a.add(0, &key(&["a"]), 1001, now, Obs::Count);
        a.add(0, &key(&["a"]), 1009, now, Obs::Count);
        a.add(0, &key(&["b"]), 1012, now, Obs::Count);
        // Nothing is complete before the watermark passes a bucket's end.
        assert_eq!(emit(&mut a, 1009), vec![]);
        assert_eq!(
            emit(&mut a, 1010),
            vec![("hits;host=web1;source=a".into(), 2.0, 1000)]
        );
        // A late line re-emits the corrected total; the quiet "a" gets a zero in bucket 1010.
        a.add(0, &key(&["a"]), 1005, now, Obs::Count);
        let got = emit(&mut a, 1020);
        assert_eq!(
            got,
            vec![
                ("hits;host=web1;source=a".into(), 3.0, 1000),
                ("hits;host=web1;source=a".into(), 0.0, 1010),
                ("hits;host=web1;source=b".into(), 1.0, 1010),
            ]
        );
        // Past the lateness window a line is late and counted, not added.
        emit(&mut a, 1200);
        a.add(0, &key(&["a"]), 1005, 1200, Obs::Count);
        assert_eq!(a.counts().late, 1);
    }

    #[test]
    fn emitting_before_any_line_is_harmless() {
        let mut a = agg();
        let mut out = Vec::new();
        a.emit(&mut out);
        a.advance(i64::MIN + 1);
        a.emit(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn cardinality_cap_sends_new_values_to_other() {
        let mut a = agg();
        for v in ["a", "b", "c", "d", "a"] {
            a.add(0, &key(&[v]), 1000, 1000, Obs::Count);
        }
        let got = emit(&mut a, 1010);
        assert_eq!(
            got,
            vec![
                ("hits;host=web1;source=a".into(), 2.0, 1000),
                ("hits;host=web1;source=b".into(), 1.0, 1000),
                ("hits;host=web1;source=other".into(), 2.0, 1000),
            ]
        );
        assert_eq!(a.counts().overflow, 2);
        assert_eq!(a.sizes().series, 3);
    }

    #[test]
    fn latency_percentiles_in_seconds_with_exact_max() {
        let mut a = agg();
        for ms in 1..=100u64 {
            a.add(1, &key(&[]), 1000, 1000, Obs::Micros(ms * 1000));
        }
        let got = emit(&mut a, 1010);
        let get = |stat: &str| {
            got.iter()
                .find(|p| p.0.ends_with(&format!("stat={stat}")))
                .map(|p| p.1)
        };
        assert_eq!(get("count"), Some(100.0));
        assert!((get("p50").unwrap_or(0.0) - 0.050).abs() < 0.001, "{got:?}");
        assert!((get("p99").unwrap_or(0.0) - 0.099).abs() < 0.001, "{got:?}");
        assert_eq!(get("max"), Some(0.1));
    }

    /// A latency rule with `buckets` also publishes Spectator's percentile bucket counters of
    /// the exact durations (in nanoseconds, as Spectator's timers count), tagged
    /// `percentile=T....;stat=percentile`; they survive a checkpoint; without `buckets` none.
    #[test]
    fn latency_percentile_buckets_count_the_exact_durations() {
        let with_buckets = |buckets: bool| {
            Agg::new(
                10,
                60,
                3600,
                vec![RuleShape {
                    name: "latency".into(),
                    kind: Kind::Latency {
                        percentiles: vec![99.0],
                        buckets,
                    },
                    tags: vec!["vhost".into()],
                    max_values: 10,
                }],
                Naming {
                    host: "web1".into(),
                    path_prefix: None,
                },
            )
        };
        let mut a = with_buckets(true);
        // 1 ms three times, 250 ms once, 2 s twice: three buckets.
        for us in [1000, 1000, 1000, 250_000, 2_000_000, 2_000_000] {
            a.add(0, &key(&["www"]), 1001, 1000, Obs::Micros(us));
        }
        // A checkpoint and a restore in between keep the buckets.
        let snap = a.snapshot();
        let mut b = with_buckets(true);
        b.restore(
            &serde_json::from_str(&serde_json::to_string(&snap).expect("json")).expect("parse"),
        );
        assert_eq!(b.snapshot(), snap);
        for agg in [&mut a, &mut b] {
            let got = emit(agg, 1010);
            let buckets: Vec<(String, f64)> = got
                .iter()
                .filter(|p| p.0.contains("stat=percentile"))
                .map(|p| (p.0.clone(), p.1))
                .collect();
            let name = |ns: i64| {
                format!(
                    "latency;host=web1;percentile=T{:04X};stat=percentile;vhost=www",
                    crate::statsd::buckets::index(ns)
                )
            };
            assert_eq!(
                buckets,
                [
                    (name(1_000_000), 3.0),
                    (name(250_000_000), 1.0),
                    (name(2_000_000_000), 2.0)
                ],
                "{got:?}"
            );
            assert!(got.iter().any(|p| p.0.ends_with("stat=p99;vhost=www")));
        }
        let mut plain = with_buckets(false);
        plain.add(0, &key(&["www"]), 1001, 1000, Obs::Micros(1000));
        let got = emit(&mut plain, 1010);
        assert!(got.iter().all(|p| !p.0.contains("percentile=")), "{got:?}");
        assert!(plain.snapshot().buckets[0].cells[0].buckets.is_empty());
    }

    #[test]
    fn a_restored_snapshot_continues_the_same_totals() {
        let mut a = agg();
        a.add(0, &key(&["a"]), 1001, 1000, Obs::Count);
        a.add(1, &key(&[]), 1001, 1000, Obs::Micros(2500));
        let snap = a.snapshot();
        let json = serde_json::to_string(&snap).expect("json");
        let mut b = agg();
        b.restore(&serde_json::from_str(&json).expect("parse"));
        assert_eq!(b.snapshot(), snap);
        a.add(0, &key(&["a"]), 1002, 1000, Obs::Count);
        b.add(0, &key(&["a"]), 1002, 1000, Obs::Count);
        assert_eq!(emit(&mut a, 1010), emit(&mut b, 1010));
    }

    #[test]
    fn path_naming_and_sanitizing() {
        let mut a = Agg::new(
            10,
            60,
            0,
            vec![RuleShape {
                name: "requests".into(),
                kind: Kind::Counter,
                tags: vec!["vhost".into()],
                max_values: 10,
            }],
            Naming {
                host: "web1.example.com".into(),
                path_prefix: Some("servers".into()),
            },
        );
        let mut k = Vec::new();
        push_sanitized(&mut k, b"www.example.com", true);
        k.push(SEP);
        a.add(0, &k, 1000, 1000, Obs::Count);
        let mut k = Vec::new();
        push_sanitized(&mut k, b"~a;b c", false);
        assert_eq!(k, b"_a_b_c");
        assert_eq!(
            emit(&mut a, 1010),
            vec![(
                "servers.web1_example_com.requests.www_example_com".into(),
                1.0,
                1000
            )]
        );
    }

    /// A timer is exact (Etsy's own percentiles) while it keeps its samples, within the
    /// histogram's 1% once it has more, and a checkpoint brings either back unchanged.
    #[test]
    fn timers_are_exact_while_small_and_close_once_in_the_histogram() {
        fn etsy(values: &[f64], p: f64) -> (f64, f64, f64) {
            let mut v = values.to_vec();
            v.sort_by(f64::total_cmp);
            let k = (p / 100.0 * v.len() as f64).round() as usize;
            let sum: f64 = v[..k].iter().sum();
            let n = v.len();
            let median = if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            };
            (v[k - 1], sum / k as f64, median)
        }
        fn stat(t: &Timer, name: &str) -> f64 {
            let mut out = Vec::new();
            t.stats(10, &[90.0], &mut out);
            out.iter().find(|s| s.0 == name).map(|s| s.2).expect(name)
        }
        for n in [1usize, 2, 7, 100, TIMER_SMALL, TIMER_SMALL + 1, 5000] {
            let values: Vec<f64> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f64 / 4.0 + 0.25)
                .collect();
            let mut t = Timer::new();
            for &v in &values {
                t.record(v, 1.0, None);
            }
            assert_eq!(t.h.is_some(), n > TIMER_SMALL, "{n}");
            let again = Timer::from_state(&t.state());
            assert_eq!(again.state(), t.state(), "{n}");
            if n < 2 {
                continue;
            }
            let (upper, mean, median) = etsy(&values, 90.0);
            for (got, want, name) in [
                (stat(&t, "upper_90"), upper, "upper_90"),
                (stat(&t, "mean_90"), mean, "mean_90"),
                (stat(&t, "median"), median, "median"),
            ] {
                if n <= TIMER_SMALL {
                    assert_eq!(got, want, "{name} of {n}");
                } else {
                    assert!(
                        (got - want).abs() <= want * 0.01 + 0.01,
                        "{name} of {n}: {got} vs {want}"
                    );
                }
                assert_eq!(stat(&again, name), got, "{name} of {n} restored");
            }
        }
    }
}
