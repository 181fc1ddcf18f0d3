//! Percentile buckets that add up across hosts: Spectator's `PercentileBuckets`, the table
//! Atlas' `:percentiles` reads (`contracts/atlas.md`). A timer with `percentile_buckets = true`
//! also publishes, per interval, how many samples fell in each bucket; summing the buckets of
//! every host and reading the percentile from the sum is right where averaging hosts' p99s is
//! not.
//!
//! The table: 1, 2, 3, then from each power of 4 in steps of a third of it up to the next
//! power of 4 (4, 5, ..., 14, 16, 21, ..., 56, 64, ...), then `i64::MAX`: 276 upper bounds.
//! Which bucket a value is in is Spectator's arithmetic ([`index`]), not a search of the
//! table: the two differ at a few values (15 is in bucket 15, whose bound is 21), and the
//! buckets must be the ones every other Spectator client fills.

use std::sync::LazyLock;

/// The bucket bounds, and where each power of 4 starts among them.
static TABLE: LazyLock<(Vec<i64>, Vec<usize>)> = LazyLock::new(|| {
    let mut bounds = vec![1i64, 2, 3];
    let mut power_of_4 = vec![0];
    let mut exp = 2;
    while exp < 64 {
        let mut current = 1i64 << exp;
        let delta = current / 3;
        // As in Java, the shift wraps for the last power (its `next` is negative: no bounds).
        let next = current.wrapping_shl(2).wrapping_sub(delta);
        power_of_4.push(bounds.len());
        while current < next {
            bounds.push(current);
            current += delta;
        }
        exp += 2;
    }
    bounds.push(i64::MAX);
    (bounds, power_of_4)
});

/// The bucket index of `v`, computed as Spectator computes it (`PercentileBuckets.indexOf`).
pub(crate) fn index(v: i64) -> u16 {
    let (bounds, power_of_4) = &*TABLE;
    if v <= 0 {
        return 0;
    }
    if v <= 4 {
        return v as u16;
    }
    let mut shift = 63 - v.leading_zeros();
    let prev_power_of_2 = (v >> shift) << shift;
    let mut base = prev_power_of_2;
    if !shift.is_multiple_of(2) {
        shift -= 1;
        base = prev_power_of_2 >> 1;
    }
    let delta = base / 3;
    let offset = ((v - base) / delta) as usize;
    let pos = offset + power_of_4[(shift / 2) as usize];
    if pos >= bounds.len() - 1 {
        (bounds.len() - 1) as u16
    } else {
        (pos + 1) as u16
    }
}

/// The number of buckets.
#[cfg(test)]
pub(crate) fn len() -> usize {
    TABLE.0.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_spectators() {
        // PercentileBuckets.java: 276 buckets, these first ones, and i64::MAX last.
        assert_eq!(len(), 276);
        let bounds = &TABLE.0;
        assert_eq!(
            &bounds[..16],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 21]
        );
        assert_eq!(bounds[275], i64::MAX);
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        // spectator-cpp's test_percentile_buckets.cc, and Go's `v <= 15: v`.
        for (v, want) in [
            (-1, 0),
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
            (15, 15),
            (87, 25),
            (i64::MAX, 275),
        ] {
            assert_eq!(index(v), want, "{v}");
        }
    }
}
