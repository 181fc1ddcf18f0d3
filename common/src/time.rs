//! The wall clock, in the unit every Tally timestamp uses: Unix seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch now (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_after_the_code_was_written() {
        let s = unix_now();
        assert!(s > 1_700_000_000, "{s}");
    }
}
