//! Rollups: how the points of the finest archive become the rows of a coarser one, and how a row
//! becomes the one value a read asks for.
//!
//! A rollup row holds, per slot `[t, t + step)`, the sum, count, min, max and last of the raw
//! points in it, so average, sum, min, max, last and count are all exact at every resolution.
//! Rows are always recomputed from the raw points (never updated by deltas), which is what makes
//! re-sent points, and a flush replayed after a crash, idempotent at every resolution.

use crate::chunk::Points;
use crate::retention::Aggregate;

/// Columns of a rollup row.
pub(crate) const ROLLUP_COLS: usize = 5;
const SUM: usize = 0;
const COUNT: usize = 1;
const MIN: usize = 2;
const MAX: usize = 3;
const LAST: usize = 4;

/// The start of the `step`-wide slot holding `ts`.
pub(crate) fn floor(ts: i64, step: i64) -> i64 {
    ts - ts.rem_euclid(step)
}

/// Splits sorted points into runs of one bucket each: `(bucket start, its points)`.
pub(crate) fn split_buckets(points: &Points, bucket_secs: i64) -> Vec<(i64, Points)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < points.ts.len() {
        let bucket = floor(points.ts[i], bucket_secs);
        let mut part = Points::new(points.cols.len());
        while i < points.ts.len() && floor(points.ts[i], bucket_secs) == bucket {
            let row: Vec<f64> = points.cols.iter().map(|c| c[i]).collect();
            part.push(points.ts[i], &row);
            i += 1;
        }
        out.push((bucket, part));
    }
    out
}

/// Sum, count, min, max and last of the raw points (sorted, one column) in each slot
/// `[t, t + step)` of `slots` (sorted); slots without points get no row.
pub(crate) fn rollup(raw: &Points, slots: &[i64], step: i64) -> Points {
    let mut out = Points::new(ROLLUP_COLS);
    let mut j = 0;
    for &slot in slots {
        while j < raw.ts.len() && raw.ts[j] < slot {
            j += 1;
        }
        let mut row = [0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0];
        let mut k = j;
        while k < raw.ts.len() && raw.ts[k] < slot + step {
            let v = raw.cols[0][k];
            row[SUM] += v;
            row[COUNT] += 1.0;
            row[MIN] = row[MIN].min(v);
            row[MAX] = row[MAX].max(v);
            row[LAST] = v;
            k += 1;
        }
        if row[COUNT] > 0.0 {
            out.push(slot, &row);
        }
    }
    out
}

/// The value `aggregate` reads from a rollup row; `None` for an empty or malformed row.
pub(crate) fn reduce(row: &[f64], aggregate: Aggregate) -> Option<f64> {
    if row.len() != ROLLUP_COLS {
        return None;
    }
    let count = row[COUNT];
    if count <= 0.0 {
        return None;
    }
    Some(match aggregate {
        Aggregate::Average => row[SUM] / count,
        Aggregate::Sum => row[SUM],
        Aggregate::Min => row[MIN],
        Aggregate::Max => row[MAX],
        Aggregate::Last => row[LAST],
        Aggregate::Count => count,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn raw(points: &[(i64, f64)]) -> Points {
        Points {
            ts: points.iter().map(|p| p.0).collect(),
            cols: vec![points.iter().map(|p| p.1).collect()],
        }
    }

    #[test]
    fn floor_is_euclidean() {
        assert_eq!(floor(65, 60), 60);
        assert_eq!(floor(60, 60), 60);
        assert_eq!(floor(-1, 60), -60);
    }

    #[test]
    fn buckets_split_at_their_starts() {
        let p = raw(&[(0, 1.0), (10, 2.0), (7200, 3.0), (7210, 4.0), (14_400, 5.0)]);
        let parts = split_buckets(&p, 7200);
        let starts: Vec<i64> = parts.iter().map(|p| p.0).collect();
        assert_eq!(starts, [0, 7200, 14_400]);
        assert_eq!(parts[1].1.ts, [7200, 7210]);
        assert_eq!(parts[1].1.cols, [vec![3.0, 4.0]]);
        assert!(split_buckets(&Points::new(1), 7200).is_empty());
    }

    #[test]
    fn every_aggregate_is_exact_per_slot() {
        let p = raw(&[(0, 3.0), (10, -1.0), (50, 4.0), (60, 7.0), (180, 2.0)]);
        let rows = rollup(&p, &[0, 60, 120, 180], 60);
        assert_eq!(rows.ts, [0, 60, 180], "an empty slot has no row");
        let row = |i: usize| -> Vec<f64> { rows.cols.iter().map(|c| c[i]).collect() };
        for (agg, want) in [
            (Aggregate::Sum, 6.0),
            (Aggregate::Count, 3.0),
            (Aggregate::Min, -1.0),
            (Aggregate::Max, 4.0),
            (Aggregate::Last, 4.0),
            (Aggregate::Average, 2.0),
        ] {
            assert_eq!(reduce(&row(0), agg), Some(want), "{agg:?}");
        }
        assert_eq!(reduce(&row(1), Aggregate::Average), Some(7.0));
        assert_eq!(reduce(&[1.0], Aggregate::Sum), None, "not a rollup row");
    }

    proptest! {
        /// Every row equals the aggregates computed naively from the points of its slot, and
        /// splitting into buckets loses and reorders nothing.
        #[test]
        fn rollup_matches_a_naive_model(
            points in proptest::collection::btree_map(-500i64..5000, -1000i32..1000, 0..80),
            step in prop::sample::select(vec![10i64, 60, 300]),
        ) {
            let p = raw(&points.iter().map(|(&t, &v)| (t, f64::from(v))).collect::<Vec<_>>());
            let mut model: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for (&t, &v) in &points {
                model.entry(floor(t, step)).or_default().push(f64::from(v));
            }
            let mut slots: Vec<i64> = model.keys().copied().collect();
            slots.push(floor(-1000, step)); // a slot without points
            slots.sort_unstable();
            let rows = rollup(&p, &slots, step);
            prop_assert_eq!(&rows.ts, &model.keys().copied().collect::<Vec<_>>());
            for (i, values) in model.values().enumerate() {
                let row: Vec<f64> = rows.cols.iter().map(|c| c[i]).collect();
                let sum: f64 = values.iter().sum();
                let count = values.len() as f64;
                prop_assert_eq!(reduce(&row, Aggregate::Sum), Some(sum));
                prop_assert_eq!(reduce(&row, Aggregate::Count), Some(count));
                prop_assert_eq!(reduce(&row, Aggregate::Average), Some(sum / count));
                prop_assert_eq!(reduce(&row, Aggregate::Min), values.iter().copied().reduce(f64::min));
                prop_assert_eq!(reduce(&row, Aggregate::Max), values.iter().copied().reduce(f64::max));
                prop_assert_eq!(reduce(&row, Aggregate::Last), values.last().copied());
            }
            let parts = split_buckets(&p, step * 12);
            prop_assert!(parts.iter().all(|(b, part)| part.ts.iter().all(|&t| floor(t, step * 12) == *b)));
            let ts: Vec<i64> = parts.into_iter().flat_map(|(_, part)| part.ts).collect();
            prop_assert_eq!(ts, p.ts);
        }
    }
}
