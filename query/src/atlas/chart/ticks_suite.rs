//! Atlas's own test suites for the code `ticks.rs` ports, case by case with Atlas's
//! assertions: `atlas-chart`'s `graphics/TicksSuite.scala`, `graphics/ScalesSuite.scala` and
//! `graphics/LogLinearSuite.scala`, and `atlas-core`'s `util/UnitPrefixSuite.scala`.
//!
//! Not ported, as they exercise what the port does not have:
//! - `TicksSuite`: `values [0.0, Infinity]` and `values [-Infinity, 0.0]` (Atlas's `require`
//!   failing with an `IllegalArgumentException`; `ticks::value` returns the two bounds as
//!   ticks instead) and `roundToOneSignificantDigit` (`Ticks.roundToOneSignificantDigit`,
//!   which the chart does not use).
//!
//! Atlas's `Ticks.logLinear(v1, v2, n)` is reached as `ticks::value(v1, v2, n,
//! Scale::LogLinear)`; `Scales.linear`, `Scales.logarithmic` and `Scales.logLinear` (without
//! `yscale`) as `r1 + r2 - ValueScale::y`, undoing `yscale`'s `r2 - std(v) + r1`. The random
//! sanity checks draw from a seeded generator rather than `scala.util.Random`, so that a
//! failure can be repeated. `UnitPrefix.text` is looked up from the prefix's symbol and
//! factor.

use super::ticks::*;

/// `TicksSuite.scala`.
mod tick_marks {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use chrono_tz::UTC;

    use super::*;

    /// Atlas skips some duration cases on ARM, where floating point differs.
    const IS_ARM: bool = cfg!(target_arch = "aarch64");

    /// The major tick labels that occur more than once, each with its occurrences
    /// (`ticks.filter(_.major).map(_.label).groupBy(v => v).filter(_._2.size > 1)`).
    fn duplicates(ticks: &[ValueTick]) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for label in major_labels(ticks) {
            groups.entry(label.clone()).or_default().push(label);
        }
        groups.retain(|_, v| v.len() > 1);
        groups
    }

    /// `checkForDuplicates`, saying which call failed.
    fn check_for_duplicates_for(ticks: &[ValueTick], call: &str) {
        assert_eq!(
            duplicates(ticks),
            BTreeMap::new(),
            "{call}: duplicate tick labels"
        );
    }

    /// `sanityCheck`, saying which call failed.
    fn sanity_check_for(ticks: &[ValueTick], call: &str) {
        check_for_duplicates_for(ticks, call);
    }

    /// `sanityCheck`.
    fn sanity_check(ticks: &[ValueTick]) {
        sanity_check_for(ticks, "ticks");
    }

    /// `ticks.count(_.major)`.
    fn major_count(ticks: &[ValueTick]) -> usize {
        ticks.iter().filter(|t| t.major).count()
    }

    /// `ticks.filter(_.major).map(_.label)`.
    fn major_labels(ticks: &[ValueTick]) -> Vec<String> {
        ticks
            .iter()
            .filter(|t| t.major)
            .map(ValueTick::label)
            .collect()
    }

    /// `.last`.
    fn last<T>(items: &[T]) -> &T {
        items.last().expect("an empty list has no last element")
    }

    /// SplitMix64, for the random sanity checks; `next_double` is in `[0, 1)` like Java's
    /// `Random.nextDouble`.
    struct Random(u64);

    impl Random {
        fn new(seed: u64) -> Random {
            Random(seed)
        }

        fn next_double(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// `values [0.0, 100.0]`
    #[test]
    fn values_0_0_100_0() {
        let ticks = value(0.0, 100.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0.0");
        assert_eq!(last(&ticks).label(), "100.0");
    }

    /// `values [1.0, 2.0], 7 ticks`
    #[test]
    fn values_1_0_2_0_7_ticks() {
        let ticks = value(1.0, 2.0, 7, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
    }

    /// `values [0.0, 10.0]`
    #[test]
    fn values_0_0_10_0() {
        let ticks = value(0.0, 10.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0.0");
        assert_eq!(last(&ticks).label(), "10.0");
    }

    /// `values [0.0, 8.0]`
    #[test]
    fn values_0_0_8_0() {
        let ticks = value(0.0, 8.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 17);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0.0");
        assert_eq!(last(&ticks).label(), "8.0");
    }

    /// `values [0.0, 7.0]`
    #[test]
    fn values_0_0_7_0() {
        let ticks = value(0.0, 7.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 15);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(major_labels(&ticks).join(","), "0.0,2.0,4.0,6.0");
    }

    /// `values [0.96, 1.0]`
    #[test]
    fn values_0_96_1_0() {
        let ticks = value(0.96, 1.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0.96");
        assert_eq!(last(&ticks).label(), "1.00");
    }

    /// `values [835, 1068]`
    #[test]
    fn values_835_1068() {
        let ticks = value(835.0, 1068.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 23);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        // assertEquals(ticks.filter(_.major).head.label, "0.85k")
        assert_eq!(last(&major_labels(&ticks)), "1.05k");
    }

    /// `values [2026, 2027]`
    #[test]
    fn values_2026_2027() {
        let ticks = value(2026.0, 2027.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 2026.0);
        assert_eq!(ticks[0].label(), "0.0");
        assert_eq!(last(&ticks).label(), "1.0");
    }

    /// `values [200026, 200027]`
    #[test]
    fn values_200026_200027() {
        let ticks = value(200026.0, 200027.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 200026.0);
        assert_eq!(ticks[0].label(), "0.0");
        assert_eq!(last(&ticks).label(), "1.0");
    }

    /// `values [200026.23, 200026.2371654]`
    #[test]
    fn values_200026_23_200026_2371654() {
        let ticks = value(200026.23, 200026.2371654, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 15);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 200026.23);
        assert_eq!(ticks[0].label(), "0.0");
        assert_eq!(last(&ticks).label(), "7.0m");
    }

    /// `values [2026, 2047]`
    #[test]
    fn values_2026_2047() {
        let ticks = value(2026.0, 2047.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 22);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(major_labels(&ticks)[0], "2.030k");
        assert_eq!(last(&major_labels(&ticks)), "2.045k");
    }

    /// `values [20, 21.8]`
    #[test]
    fn values_20_21_8() {
        let ticks = value(20.0, 21.8, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "20.0");
        assert_eq!(last(&ticks).label(), "21.8");
    }

    /// `values [-21.8, -20]`
    #[test]
    fn values_neg_21_8_neg_20() {
        let ticks = value(-21.8, -20.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "-21.8");
        assert_eq!(last(&ticks).label(), "-20.0");
    }

    /// `values [-2027, -2046]`
    #[test]
    fn values_neg_2027_neg_2046() {
        let ticks = value(-2027.0, -2026.0, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, -2027.0);
        assert_eq!(major_labels(&ticks)[0], "0.0");
        assert_eq!(last(&major_labels(&ticks)), "1.0");
    }

    /// `values [42.0, 8.123456e12]`
    #[test]
    fn values_42_0_8_123456e12() {
        let ticks = value(42.0, 8.123456e12, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 16);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0.5T");
        assert_eq!(last(&ticks).label(), "8.0T");
    }

    /// `values [2126.4044472658984, 2128.626188548245], 9 ticks`
    #[test]
    fn values_2126_4044472658984_2128_626188548245_9_ticks() {
        let ticks = value(2126.4044472658984, 2128.626188548245, 9, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 22);
        assert_eq!(major_count(&ticks), 7);
        assert_eq!(ticks[0].offset, 2126.4);
        assert_eq!(ticks[0].label(), "100.0m");
        assert_eq!(last(&ticks).label(), "2.2");
    }

    /// `values [0.0, 1.468m]`
    #[test]
    fn values_0_0_1_468m() {
        let ticks = value(0.0, 1.468e-3, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 15);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(major_labels(&ticks)[0], "0.0m");
        assert_eq!(last(&major_labels(&ticks)), "1.2m");
    }

    /// `values [4560.0, 4569.9]`
    #[test]
    fn values_4560_0_4569_9() {
        let ticks = value(4559.9, 4569.9, 5, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "4.560k");
        assert_eq!(last(&ticks).label(), "4.570k");
    }

    // `values [0.0, Infinity]` is not ported: see the module's notes.

    // `values [-Infinity, 0.0]` is not ported: see the module's notes.

    /// `values [0.0, MaxValue]`: only that it does not fail.
    #[test]
    fn values_0_0_max_value() {
        value(0.0, f64::MAX, 5, Scale::Linear);
    }

    /// `sanity check, 0 to y`
    #[test]
    fn sanity_check_0_to_y() {
        let mut rnd = Random::new(1);
        for _ in 0..100 {
            for j in 2..10 {
                let v = rnd.next_double() * 1e12;
                let ticks = value(0.0, v, j, Scale::Linear);
                sanity_check_for(&ticks, &format!("Ticks.value(0.0, {v}, {j})"));
            }
        }
    }

    /// `sanity check, y1 to y2`
    #[test]
    fn sanity_check_y1_to_y2() {
        let mut rnd = Random::new(2);
        for _ in 0..100 {
            for j in 2..10 {
                let v1 = rnd.next_double() * 1e4;
                let v2 = v1 + rnd.next_double() * 1e3;
                let ticks = value(v1, v2, j, Scale::Linear);
                sanity_check_for(&ticks, &format!("Ticks.value({v1}, {v2}, {j})"));
            }
        }
    }

    /// `binary [0, 1024]`
    #[test]
    fn binary_0_1024() {
        let ticks = binary_ticks_for(0.0, 1024.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 11);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0");
        assert_eq!(last(&ticks).label(), "1000");
    }

    /// `binary [0, 1258]`
    #[test]
    fn binary_0_1258() {
        let ticks = binary_ticks_for(0.0, 1258.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 13);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0");
        assert_eq!(last(&ticks).label(), "1200");
    }

    /// `binary [0, 7258]`
    #[test]
    fn binary_0_7258() {
        let ticks = binary_ticks_for(0.0, 7258.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 15);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0");
        assert_eq!(last(&ticks).label(), "7168");
    }

    /// `binary [0, 10k]`
    #[test]
    fn binary_0_10k() {
        let ticks = binary_ticks_for(0.0, 10e3, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0Ki");
        assert_eq!(last(&ticks).label(), "10Ki");
    }

    /// `binary [8k, 10k]`
    #[test]
    fn binary_8k_10k() {
        let ticks = binary_ticks_for(8e3, 10e3, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "7.8Ki");
        assert_eq!(last(&ticks).label(), "9.8Ki");
    }

    /// `binary [8k, 10M]`
    #[test]
    fn binary_8k_10m() {
        let ticks = binary_ticks_for(8e3, 10e6, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "512Ki");
        assert_eq!(last(&ticks).label(), "9728Ki");
    }

    /// `binary [8k, 10T]`
    #[test]
    fn binary_8k_10t() {
        let ticks = binary_ticks_for(8e3, 10e12, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 18);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "512Gi");
        assert_eq!(last(&ticks).label(), "9216Gi");
    }

    /// `binary [9993, 10079]`
    #[test]
    fn binary_9993_10079() {
        let ticks = binary_ticks_for(9993.0, 10079.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 17);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 9980.0);
        assert_eq!(ticks[0].label(), "15");
        assert_eq!(last(&ticks).label(), "95");
    }

    /// `binary [9991234563, 9991234567]`
    #[test]
    fn binary_9991234563_9991234567() {
        let ticks = binary_ticks_for(9991234563.0, 9991234567.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 9.991234563e9);
        assert_eq!(ticks[0].label(), "0");
        assert_eq!(last(&ticks).label(), "4");
    }

    /// `binary [99912000000, 9991800000]`
    #[test]
    fn binary_99912000000_9991800000() {
        let ticks = binary_ticks_for(99912000000.0, 99918000000.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 11);
        assert_eq!(major_count(&ticks), 3);
        assert_eq!(ticks[0].offset, 9.9910418432e10);
        assert_eq!(ticks[0].label(), "2048Ki");
        assert_eq!(last(&ticks).label(), "7168Ki");
    }

    /// `binary [339.86152734763687, 339.87716933873867]`
    #[test]
    fn binary_339_86152734763687_339_87716933873867() {
        let ticks = binary_ticks_for(339.86152734763687, 339.87716933873867, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 2);
        assert_eq!(major_count(&ticks), 2);
        assert_eq!(ticks[0].offset, 339.86152734763687);
        assert_eq!(ticks[0].label(), "0.0");
        assert_eq!(last(&ticks).label(), "15.6m");
    }

    /// `binary [1e12, 1e12 + 5e6]`
    #[test]
    fn binary_1e12_1e12_5e6() {
        let ticks = binary_ticks_for(1e12, 1e12 + 5e6, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 9.99999668224e11);
        assert_eq!(ticks[0].label(), "512Ki");
        assert_eq!(last(&ticks).label(), "5120Ki");
    }

    /// `binary sanity check, 0 to y`
    #[test]
    fn binary_sanity_check_0_to_y() {
        let mut rnd = Random::new(3);
        for _ in 0..100 {
            for j in 2..10 {
                let v = rnd.next_double() * 1e12;
                let ticks = binary_ticks_for(0.0, v, j);
                sanity_check_for(&ticks, &format!("Ticks.binary(0.0, {v}, {j})"));
            }
        }
    }

    /// `binary sanity check, y1 to y2`
    #[test]
    fn binary_sanity_check_y1_to_y2() {
        let mut rnd = Random::new(4);
        for _ in 0..100 {
            for j in 2..10 {
                let v1 = rnd.next_double() * 1e4;
                let v2 = v1 + rnd.next_double() * 1e3;
                let ticks = binary_ticks_for(v1, v2, j);
                sanity_check_for(&ticks, &format!("Ticks.binary({v1}, {v2}, {j})"));
            }
        }
    }

    /// `duration [0, 59]`
    #[test]
    fn duration_0_59() {
        let ticks = duration_ticks_for(0.0, 59.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0.0s");
        assert_eq!(last(&ticks).label(), "57.0s");
    }

    /// `duration [0, 60]`
    #[test]
    fn duration_0_60() {
        let ticks = duration_ticks_for(0.0, 60.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0s");
        assert_eq!(last(&ticks).label(), "60s");
    }

    /// `duration [0, 3659]`
    #[test]
    fn duration_0_3659() {
        let ticks = duration_ticks_for(0.0, 3659.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 17);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0m");
        assert_eq!(last(&ticks).label(), "60m");
    }

    /// `duration [0, 3600]`
    #[test]
    fn duration_0_3600() {
        let ticks = duration_ticks_for(0.0, 3600.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0m");
        assert_eq!(last(&ticks).label(), "60m");
    }

    /// `duration [0, 86400]`
    #[test]
    fn duration_0_86400() {
        let ticks = duration_ticks_for(0.0, 86400.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 17);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0h");
        assert_eq!(last(&ticks).label(), "24h");
    }

    /// `duration [86400, 86500]`
    #[test]
    fn duration_86400_86500() {
        let ticks = duration_ticks_for(86400.0, 86500.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 86400.0);
        assert_eq!(ticks[0].label(), "0.0m");
        assert_eq!(last(&ticks).label(), "1.7m");
    }

    /// `duration [86400, 87500]`
    #[test]
    fn duration_86400_87500() {
        let ticks = duration_ticks_for(86400.0, 87500.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 86400.0);
        assert_eq!(ticks[0].label(), "0m");
        assert_eq!(last(&ticks).label(), "18m");
    }

    /// `duration [0, 2592000]`
    #[test]
    fn duration_0_2592000() {
        let ticks = duration_ticks_for(0.0, 2592000.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 18);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0w");
        assert_eq!(last(&ticks).label(), "4w");
    }

    /// `duration [0, 31536000]`
    #[test]
    fn duration_0_31536000() {
        let ticks = duration_ticks_for(0.0, 31536000.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 17);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0w");
        assert_eq!(last(&ticks).label(), "52w");
    }

    /// `duration [1.0, 2.0], 7 ticks`
    #[test]
    fn duration_1_0_2_0_7_ticks() {
        let ticks = duration_ticks_for(1.0, 2.0, 7);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
    }

    /// `duration [339.86152734763687, 339.87716933873867]`
    #[test]
    fn duration_339_86152734763687_339_87716933873867() {
        let ticks = duration_ticks_for(339.86152734763687, 339.87716933873867, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 16);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 339.86);
        assert_eq!(ticks[0].label(), "2.000ms");
        assert_eq!(last(&ticks).label(), "17.000ms");
    }

    /// `duration [59, 61]`
    #[test]
    fn duration_59_61() {
        let ticks = duration_ticks_for(59.0, 61.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 58.800000000000004);
        assert_eq!(ticks[0].label(), "0.2s");
        assert_eq!(last(&ticks).label(), "2.1s");
    }

    /// `duration [59, 3605]`
    #[test]
    fn duration_59_3605() {
        let ticks = duration_ticks_for(59.0, 3605.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "3m");
        assert_eq!(last(&ticks).label(), "60m");
    }

    /// `duration [0, 3153600000]`
    #[test]
    fn duration_0_3153600000() {
        let ticks = duration_ticks_for(0.0, 3153600000.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0y");
        assert_eq!(last(&ticks).label(), "100y");
    }

    /// `duration [3153600000, 3153600005]`
    #[test]
    fn duration_3153600000_3153600005() {
        let ticks = duration_ticks_for(3153600000.0, 3153600005.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 3.1536e9);
        assert_eq!(ticks[0].label(), "0.0s");
        assert_eq!(last(&ticks).label(), "5.0s");
    }

    /// `duration [0.01, 1]`
    #[test]
    fn duration_0_01_1() {
        let ticks = duration_ticks_for(0.01, 1.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0.1s");
        assert_eq!(last(&ticks).label(), "1.0s");
    }

    /// `duration [0.01, 0.1]`
    #[test]
    fn duration_0_01_0_1() {
        let ticks = duration_ticks_for(0.01, 0.1, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "10.0ms");
        assert_eq!(last(&ticks).label(), "100.0ms");
    }

    /// `duration [0.0001, 0.1]`
    #[test]
    fn duration_0_0001_0_1() {
        let ticks = duration_ticks_for(0.0001, 0.1, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "5.0ms");
        assert_eq!(last(&ticks).label(), "100.0ms");
    }

    /// `duration [0.0001, 0.001]`
    #[test]
    fn duration_0_0001_0_001() {
        if IS_ARM {
            return;
        }
        let ticks = duration_ticks_for(0.0001, 0.001, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "100.0μs");
        assert_eq!(last(&ticks).label(), "1000.0μs");
    }

    /// `duration [0.0000001, 0.001]`
    #[test]
    fn duration_0_0000001_0_001() {
        let ticks = duration_ticks_for(0.0000001, 0.001, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "50.0μs");
        assert_eq!(last(&ticks).label(), "1000.0μs");
    }

    /// `duration [45, 300]`
    #[test]
    fn duration_45_300() {
        let ticks = duration_ticks_for(45.0, 300.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 18);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "1m");
        assert_eq!(last(&ticks).label(), "5m");
    }

    /// `duration [45, 300e3]`
    #[test]
    fn duration_45_300e3() {
        let ticks = duration_ticks_for(45.0, 300e3, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 13);
        assert_eq!(major_count(&ticks), 3);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "0d");
        assert_eq!(last(&ticks).label(), "3d");
    }

    /// `duration [45, 300e5]`
    #[test]
    fn duration_45_300e5() {
        let ticks = duration_ticks_for(45.0, 300e5, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 15);
        assert_eq!(major_count(&ticks), 3);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "3w");
        assert_eq!(last(&ticks).label(), "49w");
    }

    /// `duration [45, 300e8]`
    #[test]
    fn duration_45_300e8() {
        let ticks = duration_ticks_for(45.0, 300e8, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 4);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "50y");
        assert_eq!(last(&ticks).label(), "950y");
    }

    /// `duration [0.0000001, 0.000001]`
    #[test]
    fn duration_0_0000001_0_000001() {
        let ticks = duration_ticks_for(0.0000001, 0.000001, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 19);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "100.0ns");
        assert_eq!(last(&ticks).label(), "1000.0ns");
    }

    /// `duration [1.0e-10, 1.0e-9]`
    #[test]
    fn duration_1_0e_10_1_0e_9() {
        if IS_ARM {
            return;
        }
        let ticks = duration_ticks_for(1.0e-10, 1.0e-9, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 18);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "150.0ps");
        assert_eq!(last(&ticks).label(), "1000.0ps");
    }

    /// `duration [1.0e-13, 1.0e-12]`
    #[test]
    fn duration_1_0e_13_1_0e_12() {
        let ticks = duration_ticks_for(1.0e-13, 1.0e-12, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 0);
    }

    /// `duration [1.0e-12, 1.0e-9]`
    #[test]
    fn duration_1_0e_12_1_0e_9() {
        if IS_ARM {
            return;
        }
        let ticks = duration_ticks_for(1.0e-12, 1.0e-9, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "50.0ps");
        assert_eq!(last(&ticks).label(), "1000.0ps");
    }

    /// `duration [1.0e-12, 1.0e12]`
    #[test]
    fn duration_1_0e_12_1_0e12() {
        let ticks = duration_ticks_for(1.0e-12, 1.0e12, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 20);
        assert_eq!(major_count(&ticks), 5);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "1.6e+03y");
        assert_eq!(last(&ticks).label(), "3.2e+04y");
    }

    /// `duration [-15, -1]`
    #[test]
    fn duration_neg_15_neg_1() {
        let ticks = duration_ticks_for(-15.0, -1.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 15);
        assert_eq!(major_count(&ticks), 3);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "-15.0s");
        assert_eq!(last(&ticks).label(), "-1.0s");
    }

    /// `duration [2.45, 8820.0]`
    #[test]
    fn duration_2_45_8820_0() {
        let ticks = duration_ticks_for(2.45, 8820.0, 5);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 4);
        assert_eq!(major_count(&ticks), 1);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "1h");
        assert_eq!(last(&ticks).label(), "2h");
    }

    /// `log-linear [0, 1e12], include all` (`Ticks.logLinear` is `Ticks.value` with the
    /// log-linear scale).
    #[test]
    fn log_linear_0_1e12_include_all() {
        let ticks = value(0.0, 1e12, 30, Scale::LogLinear);
        assert_eq!(ticks.len(), 190);
    }

    /// `log-linear [0, 1e12], include one-third`
    #[test]
    fn log_linear_0_1e12_include_one_third() {
        let ticks = value(0.0, 1e12, 10, Scale::LogLinear);
        assert_eq!(ticks.len(), 64);
    }

    /// `log-linear [0, 1e12], include major-only`
    #[test]
    fn log_linear_0_1e12_include_major_only() {
        let ticks = value(0.0, 1e12, 5, Scale::LogLinear);
        assert_eq!(ticks.len(), 22);
    }

    // `roundToOneSignificantDigit` is not ported: see the module's notes.

    // `simple` is not ported: see the module's notes.

    /// `time: since 1970`
    #[test]
    fn time_since_1970() {
        let s = 0i64;
        let e = 1_498_751_868_000i64;
        let ticks = time(s, e, UTC, 5);
        assert_eq!(ticks.len(), 6);
        let mut year = 1970;
        for tick in &ticks {
            assert!(tick.major);
            let t = UTC
                .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
                .single()
                .expect("a date");
            assert_eq!(tick.timestamp, t.timestamp_millis());
            year += 9;
        }
    }

    /// `time: 1m`
    #[test]
    fn time_1m() {
        let s = 1_498_751_868_000i64;
        let e = s + 60_000;
        let ticks = time(s, e, UTC, 5);
        assert_eq!(ticks.len(), 12);
        assert_eq!(ticks.iter().filter(|t| t.major).count(), 4);

        // Verify major ticks are on 10-second boundaries
        let mut t = s + 12_000;
        for tick in ticks.iter().filter(|t| t.major) {
            assert_eq!(tick.timestamp, t);
            t += 15_000;
        }
    }

    /// `time: 10s`
    #[test]
    fn time_10s() {
        let s = 1_498_751_868_000i64;
        let e = s + 10_000;
        let ticks = time(s, e, UTC, 5);
        assert_eq!(ticks.len(), 11);
        assert_eq!(ticks.iter().filter(|t| t.major).count(), 2);

        // Verify major ticks are on 5-second boundaries (:50 and :55)
        let mut t = s + 2_000; // First major at :50 (+2s from :48)
        for tick in ticks.iter().filter(|t| t.major) {
            assert_eq!(tick.timestamp, t);
            t += 5_000; // Next major at :55 (+5s)
        }
    }

    /// `time: 10s aligned`
    #[test]
    fn time_10s_aligned() {
        let s = 1_498_751_860_000i64;
        let e = s + 10_000;
        let ticks = time(s, e, UTC, 5);
        assert_eq!(ticks.len(), 11);
        assert_eq!(ticks.iter().filter(|t| t.major).count(), 3);

        let mut t = s;
        for tick in ticks.iter().filter(|t| t.major) {
            assert_eq!(tick.timestamp, t);
            t += 5_000;
        }
    }

    /// `time: 8s`
    #[test]
    fn time_8s() {
        let s = 1_325_375_940_000i64;
        let e = s + 8_000;
        let ticks = time(s, e, UTC, 9);
        assert_eq!(ticks.len(), 9);
        assert_eq!(ticks.iter().filter(|t| t.major).count(), 2);

        let mut t = s;
        for tick in ticks.iter().filter(|t| t.major) {
            assert_eq!(tick.timestamp, t);
            t += 5_000;
        }
    }

    /// `issue-948: [6.667e-3, 0.01]`
    #[test]
    fn issue_948_6_667e_3_0_01() {
        let ticks = value(6.667e-3, 0.01, 7, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 34);
        assert_eq!(major_count(&ticks), 7);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "6.7m");
        assert_eq!(last(&ticks).label(), "10.0m");
    }

    /// `issue-991: [99.938845, 100]`
    #[test]
    fn issue_991_99_938845_100() {
        let ticks = value(99.938845, 100.0, 7, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 31);
        assert_eq!(major_count(&ticks), 7);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "99.94");
        assert_eq!(last(&ticks).label(), "100.00");
    }

    /// `issue-991: [99.9, 100]`
    #[test]
    fn issue_991_99_9_100() {
        let ticks = value(99.9, 100.0, 7, Scale::Linear);
        sanity_check(&ticks);
        assert_eq!(ticks.len(), 21);
        assert_eq!(major_count(&ticks), 6);
        assert_eq!(ticks[0].offset, 0.0);
        assert_eq!(ticks[0].label(), "99.90");
        assert_eq!(last(&ticks).label(), "100.00");
    }
}

/// `ScalesSuite.scala`.
mod scales_suite {
    use super::*;

    /// Atlas's scale without `yscale` (`Scales.linear`, `.logarithmic`, `.logLinear`):
    /// `yscale` maps `v` to `r2 - std(v) + r1`, so `std(v)` is `r1 + r2 - y(v)`.
    fn unflipped(scale: Scale, d1: f64, d2: f64, r1: i32, r2: i32) -> impl Fn(f64) -> i32 {
        let s = ValueScale::new(scale, d1, d2, r1, r2);
        move |v| r1 + r2 - s.y(v)
    }

    /// `linear`
    #[test]
    fn linear() {
        let scale = unflipped(Scale::Linear, 0.0, 100.0, 0, 100);
        assert_eq!(scale(0.0), 0);
        assert_eq!(scale(10.0), 10);
        assert_eq!(scale(20.0), 20);
        assert_eq!(scale(30.0), 30);
        assert_eq!(scale(40.0), 40);
        assert_eq!(scale(50.0), 50);
        assert_eq!(scale(60.0), 60);
        assert_eq!(scale(70.0), 70);
        assert_eq!(scale(80.0), 80);
        assert_eq!(scale(90.0), 90);
        assert_eq!(scale(100.0), 100);
    }

    /// `ylinear_l1_u2_h300`
    #[test]
    fn ylinear_l1_u2_h300() {
        let scale = ValueScale::new(Scale::Linear, 1.0, 2.0, 0, 300);
        assert_eq!(scale.y(1.0), 300);
        assert_eq!(scale.y(2.0), 0);
    }

    /// `logarithmic`
    #[test]
    fn logarithmic() {
        let scale = unflipped(Scale::Log, 0.0, 100.0, 0, 100);
        assert_eq!(scale(0.0), 0);
        assert_eq!(scale(10.0), 51);
        assert_eq!(scale(20.0), 65);
        assert_eq!(scale(30.0), 74);
        assert_eq!(scale(40.0), 80);
        assert_eq!(scale(50.0), 85);
        assert_eq!(scale(60.0), 89);
        assert_eq!(scale(70.0), 92);
        assert_eq!(scale(80.0), 95);
        assert_eq!(scale(90.0), 97);
        assert_eq!(scale(100.0), 100);
    }

    /// `logarithmic negative`
    #[test]
    fn logarithmic_negative() {
        let scale = unflipped(Scale::Log, -100.0, 0.0, 0, 100);
        assert_eq!(scale(0.0), 100);
        assert_eq!(scale(-10.0), 48);
        assert_eq!(scale(-20.0), 34);
        assert_eq!(scale(-30.0), 25);
        assert_eq!(scale(-40.0), 19);
        assert_eq!(scale(-50.0), 14);
        assert_eq!(scale(-60.0), 10);
        assert_eq!(scale(-70.0), 7);
        assert_eq!(scale(-80.0), 4);
        assert_eq!(scale(-90.0), 2);
        assert_eq!(scale(-100.0), 0);
    }

    /// `logarithmic positive and negative`
    #[test]
    fn logarithmic_positive_and_negative() {
        let scale = unflipped(Scale::Log, -100.0, 100.0, 0, 100);
        assert_eq!(scale(100.0), 100);
        assert_eq!(scale(50.0), 92);
        assert_eq!(scale(10.0), 75);
        assert_eq!(scale(0.0), 50);
        assert_eq!(scale(-10.0), 24);
        assert_eq!(scale(-50.0), 7);
        assert_eq!(scale(-100.0), 0);
    }

    /// `logarithmic less than lower bound`
    #[test]
    fn logarithmic_less_than_lower_bound() {
        let scale = unflipped(Scale::Log, 15.0, 100.0, 0, 100);
        assert_eq!(scale(0.0), -150);
        assert_eq!(scale(10.0), -20);
        assert_eq!(scale(20.0), 14);
        assert_eq!(scale(30.0), 35);
        assert_eq!(scale(40.0), 51);
        assert_eq!(scale(50.0), 62);
        assert_eq!(scale(60.0), 72);
        assert_eq!(scale(70.0), 80);
        assert_eq!(scale(80.0), 88);
        assert_eq!(scale(90.0), 94);
        assert_eq!(scale(100.0), 100);
    }

    /// `logLinear [1e-9, 57.266230611]`
    #[test]
    fn log_linear_1e_9_57_266230611() {
        let scale = unflipped(Scale::LogLinear, 1e-9, 57.266230611, 22, 522);
        assert_eq!(scale(1e-9), 27);
        assert_eq!(scale(2e-9), 32);
        assert_eq!(scale(3e-9), 37);
    }

    // `invertedLogLinear [1, 110]` and `invertedLogLinear [1234, 1.234e8]` are not ported:
    // see the module's notes.
}

/// `LogLinearSuite.scala`.
mod log_linear_suite {
    use super::*;

    /// `expectedBuckets`: 1, 2, .. 9, 10, 20, .. in billionths, up to 9e18 (exclusive).
    fn expected_buckets() -> Vec<f64> {
        let mut out = Vec::new();
        let mut v = 1i64;
        let mut delta = 1i64;
        while v < 9_000_000_000_000_000_000 {
            out.push(v as f64 / 1e9);
            v += delta;
            // Scala's `10 * delta` overflows (wraps) once delta is 1e18.
            if v % delta.wrapping_mul(10) == 0 {
                delta *= 10;
            }
        }
        out
    }

    /// munit's `assertEqualsDouble`.
    fn assert_equals_double(obtained: f64, expected: f64, delta: f64, clue: &str) {
        let same = obtained.total_cmp(&expected).is_eq();
        assert!(
            same || (expected - obtained).abs() <= delta,
            "{clue}: {obtained} != {expected} +- {delta}"
        );
    }

    /// `bucket`
    #[test]
    fn bucket() {
        for (i, v) in expected_buckets().into_iter().enumerate() {
            let i = i as i32;
            assert_equals_double(log_linear::bucket(i), v, 1e-12, &format!("{i}"));
        }
    }

    /// `bucketIndex`
    #[test]
    fn bucket_index() {
        for (i, v) in expected_buckets().into_iter().enumerate() {
            let i = i as i32;
            assert_eq!(log_linear::bucket_index(v), i, "{v}");
            let v2 = v - v / 20.0;
            assert_eq!(log_linear::bucket_index(v2), i, "{v2}");
        }
    }

    /// `bucketIndex near boundary`
    #[test]
    fn bucket_index_near_boundary() {
        for (i, b) in expected_buckets().into_iter().enumerate() {
            let i = i as i32;
            let delta = 10f64.powf(b.log10() - 3.0);
            let v = b + delta;
            assert_eq!(log_linear::bucket_index(v), i + 1, "{v}");
            let v2 = b - delta;
            assert_eq!(log_linear::bucket_index(v2), i, "{v2}");
        }
    }

    /// `bucketIndex near boundary negative`
    #[test]
    fn bucket_index_near_boundary_negative() {
        for (i, b) in expected_buckets().into_iter().enumerate() {
            let i = i as i32;
            let b = -b;
            let delta = 10f64.powf((-b).log10() - 3.0);
            let v = b + delta;
            assert_eq!(log_linear::bucket_index(v), -i - 1, "{v}");
            let v2 = b - delta;
            assert_eq!(log_linear::bucket_index(v2), -i - 2, "{v2}");
        }
    }
}

/// `UnitPrefixSuite.scala`.
mod unit_prefix_suite {
    use super::*;

    /// `UnitPrefix.text`: Atlas's name for the prefix (the port keeps only symbol and factor).
    fn text(p: UnitPrefix) -> &'static str {
        const KI: f64 = 1024.0;
        let names: [(&str, f64, &str); 27] = [
            ("", 1.0, ""),
            ("k", 1.0e3, "kilo"),
            ("M", 1.0e6, "mega"),
            ("G", 1.0e9, "giga"),
            ("T", 1.0e12, "tera"),
            ("P", 1.0e15, "peta"),
            ("E", 1.0e18, "exa"),
            ("Z", 1.0e21, "zetta"),
            ("Y", 1.0e24, "yotta"),
            ("m", 1.0e-3, "milli"),
            ("\u{3bc}", 1.0e-6, "micro"),
            ("n", 1.0e-9, "nano"),
            ("p", 1.0e-12, "pico"),
            ("f", 1.0e-15, "femto"),
            ("a", 1.0e-18, "atto"),
            ("z", 1.0e-21, "zepto"),
            ("y", 1.0e-24, "yocto"),
            ("Ki", KI, "kibi"),
            ("Mi", KI * KI, "mebi"),
            ("Gi", KI * KI * KI, "gibi"),
            ("Ti", KI * KI * KI * KI, "tebi"),
            ("Pi", KI * KI * KI * KI * KI, "pebi"),
            ("Ei", KI * KI * KI * KI * KI * KI, "exbi"),
            ("Zi", KI * KI * KI * KI * KI * KI * KI, "zebi"),
            ("Yi", KI * KI * KI * KI * KI * KI * KI * KI, "yobi"),
            ("s", 1.0, "sec"),
            ("ms", 1.0e-3, "millis"),
        ];
        names
            .iter()
            .find(|(s, f, _)| *s == p.symbol && *f == p.factor)
            .map_or("?", |(_, _, t)| t)
    }

    /// `decimal isNearlyZero`
    #[test]
    fn decimal_is_nearly_zero() {
        assert_eq!(text(decimal(1e-13)), "");
    }

    /// `decimal infinity`
    #[test]
    fn decimal_infinity() {
        assert_eq!(text(decimal(f64::INFINITY)), "");
    }

    /// `decimal NaN`
    #[test]
    fn decimal_nan() {
        assert_eq!(text(decimal(f64::NAN)), "");
    }

    /// `decimal milli`
    #[test]
    fn decimal_milli() {
        assert_eq!(text(decimal(1.23e-3)), "milli");
        assert_eq!(text(decimal(-1.23e-3)), "milli");
    }

    /// `decimal kilo`
    #[test]
    fn decimal_kilo() {
        assert_eq!(text(decimal(1.23e3)), "kilo");
        assert_eq!(text(decimal(-1.23e3)), "kilo");
    }

    /// `decimal mega`
    #[test]
    fn decimal_mega() {
        assert_eq!(text(decimal(1.23e6)), "mega");
        assert_eq!(text(decimal(-1.23e6)), "mega");
    }

    /// `decimal giga`
    #[test]
    fn decimal_giga() {
        assert_eq!(text(decimal(1.23e9)), "giga");
        assert_eq!(text(decimal(-1.23e9)), "giga");
    }

    /// `binary isNearlyZero`
    #[test]
    fn binary_is_nearly_zero() {
        assert_eq!(text(binary(1e-13)), "");
    }

    /// `binary infinity`
    #[test]
    fn binary_infinity() {
        assert_eq!(text(binary(f64::INFINITY)), "");
    }

    /// `binary NaN`
    #[test]
    fn binary_nan() {
        assert_eq!(text(binary(f64::NAN)), "");
    }

    /// `binary milli`
    #[test]
    fn binary_milli() {
        assert_eq!(text(binary(1.23e-3)), "milli");
        assert_eq!(text(binary(-1.23e-3)), "milli");
    }

    /// `binary kibi`
    #[test]
    fn binary_kibi() {
        assert_eq!(text(binary(1023.0)), "");
        assert_eq!(text(binary(1.23e3)), "kibi");
        assert_eq!(text(binary(-1.23e3)), "kibi");
    }

    /// `binary mebi`
    #[test]
    fn binary_mebi() {
        assert_eq!(text(binary(1.23e6)), "mebi");
        assert_eq!(text(binary(-1.23e6)), "mebi");
    }

    /// `binary gibi`
    #[test]
    fn binary_gibi() {
        assert_eq!(text(binary(1.23e9)), "gibi");
        assert_eq!(text(binary(-1.23e9)), "gibi");
    }

    /// `format MaxValue`
    #[test]
    fn format_max_value() {
        assert_eq!(format_default(f64::MAX), " 2e+308");
    }

    /// `format MinValue`
    #[test]
    fn format_min_value() {
        assert_eq!(format_default(f64::MIN), "-2e+308");
    }
}

/// The cases of `Ticks.simple` and the inverted scales it uses (`TicksSuite`, `ScalesSuite`).
mod inverted_suite {
    use super::*;

    /// `simple`
    #[test]
    fn simple_ticks() {
        assert_eq!(simple(0.0, 0.00123456322, 5, Scale::Linear).len(), 6);
    }

    /// `invertedLogLinear [1, 110]`
    #[test]
    fn inverted_log_linear_1_110() {
        let f = |v| inverted(Scale::LogLinear, 1.0, 110.0, 0, 5, v);
        assert_eq!(f(0), 0.9);
        assert_eq!(f(1), 4.0);
        assert_eq!(f(5), 200.0);
    }

    /// `invertedLogLinear [1234, 1.234e8]`
    #[test]
    fn inverted_log_linear_1234_1_234e8() {
        let f = |v| inverted(Scale::LogLinear, 1234.0, 1.234e8, 0, 5, v);
        assert_eq!(f(0), 1000.0);
        assert_eq!(f(1), 10000.0);
        assert_eq!(f(5), 2.0e8);
    }
}
