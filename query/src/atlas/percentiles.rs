//! Spectator's percentile buckets (`PercentileBuckets`): the bucket table percentile timers and
//! distribution summaries publish one counter per bucket of (`percentile=T0042`), and the
//! estimate of percentiles from bucket counts. Summing the counts of every host before the
//! estimate is what makes a p99 across hosts right, where an average of hosts' p99s is not.

/// How many buckets there are.
pub const LENGTH: usize = 276;

/// The bucket values (each bucket's upper bound): 1, 2, 3, then every power of 4 split into
/// steps of a third of it, then `i64::MAX`.
pub fn values() -> &'static [i64] {
    static VALUES: std::sync::OnceLock<Vec<i64>> = std::sync::OnceLock::new();
    VALUES.get_or_init(|| {
        let mut v = vec![1, 2, 3];
        let mut exp = 2;
        while exp < 64 {
            let mut current: i64 = 1 << exp;
            let delta = current / 3;
            // As Java computes it: at 4^31 the shift overflows and the level adds nothing.
            let next = current.wrapping_shl(2).wrapping_sub(delta);
            while current < next {
                v.push(current);
                match current.checked_add(delta) {
                    Some(c) => current = c,
                    None => break,
                }
            }
            exp += 2;
        }
        v.push(i64::MAX);
        v
    })
}

/// The index of the bucket that holds `v` (Spectator's `PercentileBuckets.indexOf`).
pub fn index_of(v: i64) -> usize {
    let vals = values();
    if v <= 0 {
        return 0;
    }
    if v <= 4 {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() as usize;
    let mut prev_power_of_4 = (v >> shift) << shift;
    if !shift.is_multiple_of(2) {
        prev_power_of_4 >>= 1;
    }
    let delta = prev_power_of_4 / 3;
    let offset = ((v - prev_power_of_4) / delta) as usize;
    // Where the level of this power of 4 starts in the table (the last level, which adds no
    // values, starts at the final bucket).
    let base = vals
        .iter()
        .position(|&b| b >= prev_power_of_4)
        .unwrap_or(vals.len() - 1);
    let pos = offset + base;
    if pos >= vals.len() - 1 {
        vals.len() - 1
    } else {
        pos + 1
    }
}

/// The percentiles `pcts` (sorted, each 0 to 100) of the distribution the bucket `counts`
/// describe, interpolated linearly within a bucket as Spectator does. NaN where there are no
/// counts at all (no data, rather than a bucket bound).
pub fn estimate(counts: &[f64], pcts: &[f64]) -> Vec<f64> {
    let vals = values();
    let total: f64 = counts.iter().sum();
    let mut results = vec![f64::NAN; pcts.len()];
    if total <= 0.0 || !total.is_finite() {
        return results;
    }
    let mut idx = 0;
    let (mut prev, mut prev_p, mut prev_b) = (0.0, 0.0, 0.0);
    for (i, &c) in counts.iter().enumerate().take(vals.len()) {
        let next = prev + c;
        let next_p = 100.0 * next / total;
        let next_b = vals[i] as f64;
        while idx < pcts.len() && next_p >= pcts[idx] {
            let f = (pcts[idx] - prev_p) / (next_p - prev_p);
            results[idx] = if f.is_finite() {
                f * (next_b - prev_b) + prev_b
            } else {
                prev_b
            };
            idx += 1;
        }
        if idx >= pcts.len() {
            break;
        }
        prev = next;
        prev_p = next_p;
        prev_b = next_b;
    }
    while idx < pcts.len() {
        let f = (pcts[idx] - prev_p) / (100.0 - prev_p);
        results[idx] = f * (i64::MAX as f64 - prev_b) + prev_b;
        idx += 1;
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spectator's own checks of the table and the estimate.
    #[test]
    fn the_table_and_the_estimate_are_spectators() {
        assert_eq!(values().len(), LENGTH);
        assert_eq!(&values()[..5], &[1, 2, 3, 4, 5]);
        assert_eq!(index_of(-1), 0);
        assert_eq!(index_of(0), 0);
        assert_eq!(index_of(4), 4);
        assert_eq!(index_of(87), 25);
        assert_eq!(index_of(i64::MAX), LENGTH - 1);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x >> 1) as i64;
            assert!(v <= values()[index_of(v)], "{v}");
        }
        let mut counts = vec![0.0; LENGTH];
        for i in 0..100_000 {
            counts[index_of(i)] += 1.0;
        }
        let pcts = [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 98.0, 99.0, 99.5, 100.0];
        for (p, r) in pcts.iter().zip(estimate(&counts, &pcts)) {
            let want = p * 1e3;
            assert!((r - want).abs() <= 0.1 * want, "p{p}: {r}");
        }
        assert!(estimate(&vec![0.0; LENGTH], &[50.0])[0].is_nan());
    }
}
