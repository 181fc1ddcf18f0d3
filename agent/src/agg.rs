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
    /// A histogram of a duration, published as count, percentiles and max, in seconds.
    Latency { percentiles: Vec<f64> },
}

/// One observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Obs {
    Count,
    Value(f64),
    /// Microseconds.
    Micros(u64),
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
}

impl Hist {
    fn new() -> Hist {
        Hist {
            h: Histogram::new_with_bounds(1, HIST_MAX_US, 2).expect("static histogram bounds"),
            max_us: 0,
        }
    }

    fn record(&mut self, us: u64, n: u64) {
        let v = us.clamp(1, HIST_MAX_US);
        // Counts are u32 per bucket cell; saturating keeps a pathological burst from panicking.
        let _ = self.h.record_n(v, u32::try_from(n).unwrap_or(u32::MAX));
        self.max_us = self.max_us.max(us.min(HIST_MAX_US));
    }
}

#[derive(Debug, Clone)]
enum Cell {
    Count(f64),
    Gauge(f64),
    Hist(Box<Hist>),
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
}

#[derive(Debug, Default, Clone)]
struct RuleSeries {
    /// Joined tag values (`\x1f`-separated) to series id.
    by_key: FxHashMap<Box<[u8]>, u32>,
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
                by_key: FxHashMap::default(),
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
        }
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
        let s = &mut self.series[id as usize];
        s.last_seen = s.last_seen.max(bucket_t);
        if !self.buckets.contains_key(&bucket_t) {
            self.open_bucket(bucket_t);
        }
        let bucket = self.buckets.get_mut(&bucket_t).expect("just opened");
        let kind = &self.rules[rule].kind;
        let slot = bucket.cells.entry(id).or_insert_with(|| Slot {
            cell: match kind {
                Kind::Counter | Kind::Sum => Cell::Count(0.0),
                Kind::Gauge => Cell::Gauge(0.0),
                Kind::Latency { .. } => Cell::Hist(Box::new(Hist::new())),
            },
            dirty: true,
        });
        slot.dirty = true;
        match (&mut slot.cell, obs) {
            (Cell::Count(c), Obs::Count) => *c += 1.0,
            (Cell::Count(c), Obs::Value(v)) => *c += v,
            (Cell::Gauge(g), Obs::Value(v)) => *g = v,
            (Cell::Hist(h), Obs::Micros(us)) => h.record(us, 1),
            (Cell::Hist(h), Obs::Value(secs)) => h.record((secs * 1e6).max(0.0) as u64, 1),
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
        for (i, v) in key.split(|&b| b == SEP).take(rs.values.len()).enumerate() {
            let seen = &mut rs.values[i];
            if seen.contains(v) || seen.len() < cap {
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
        });
        id
    }

    /// A new bucket starts with a 0 for every counter that had a line within `zero_fill_for`,
    /// so a quiet interval reads 0, not "no data".
    fn open_bucket(&mut self, t: i64) {
        let mut b = Bucket::default();
        for (id, s) in self.series.iter().enumerate() {
            let counter = matches!(self.rules[s.rule as usize].kind, Kind::Counter | Kind::Sum);
            if counter
                && s.last_seen != i64::MIN
                && s.last_seen < t
                && t - s.last_seen <= self.zero_fill_for
            {
                b.cells.insert(
                    id as u32,
                    Slot {
                        cell: Cell::Count(0.0),
                        dirty: true,
                    },
                );
            }
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
                match &slot.cell {
                    Cell::Count(v) | Cell::Gauge(v) => out.push(Point {
                        name: self.naming.rule_series(rule, &s.values, None),
                        value: *v,
                        time: t,
                    }),
                    Cell::Hist(h) => {
                        let Kind::Latency { percentiles } = &rule.kind else {
                            continue;
                        };
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
                        let (value, hist, max_us) = match &slot.cell {
                            Cell::Count(v) | Cell::Gauge(v) => (*v, Vec::new(), 0),
                            Cell::Hist(h) => (
                                0.0,
                                h.h.iter_recorded()
                                    .map(|v| (v.value_iterated_to(), v.count_at_value() as u64))
                                    .collect(),
                                h.max_us,
                            ),
                        };
                        CellState {
                            series: id,
                            dirty: slot.dirty,
                            value,
                            hist,
                            max_us,
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
                let rs = &mut self.rule_series[rule];
                for (i, v) in s.values.iter().enumerate() {
                    rs.values[i].insert(v.as_bytes().into());
                }
                let id = self.series.len() as u32;
                rs.by_key.insert(key.into_boxed_slice(), id);
                self.series.push(Series {
                    rule: rule as u32,
                    values: s.values.clone(),
                    last_seen: s.last_seen,
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
                    Kind::Counter | Kind::Sum => Cell::Count(c.value),
                    Kind::Gauge => Cell::Gauge(c.value),
                    Kind::Latency { .. } => {
                        let mut h = Hist::new();
                        for &(v, n) in &c.hist {
                            h.record(v, n);
                        }
                        h.max_us = c.max_us;
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
}
