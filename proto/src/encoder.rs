//! Writing Graphite plaintext. Whatever [`crate::parse_line`] accepts, [`encode`] writes back so
//! that it parses to the same metric (checked by a property test).

use crate::line::{Metric, Timestamp};

/// Appends `name value timestamp\n` to `out`.
pub fn encode(name: &str, value: f64, timestamp: Timestamp, out: &mut Vec<u8>) {
    out.reserve(name.len() + 32);
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    write_value(value, out);
    out.push(b' ');
    match timestamp {
        Timestamp::Now => out.extend_from_slice(b"-1"),
        Timestamp::At(t) => out.extend_from_slice(itoa::Buffer::new().format(t).as_bytes()),
    }
    out.push(b'\n');
}

/// Appends one metric as a line.
pub fn encode_metric(metric: &Metric<'_>, out: &mut Vec<u8>) {
    encode(&metric.name, metric.value, metric.timestamp, out);
}

/// The shortest text that parses back to `value`: integers without a fraction, others by ryu.
pub fn write_value(value: f64, out: &mut Vec<u8>) {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 && !is_negative_zero(value) {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else if value.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else if value.is_nan() {
        out.extend_from_slice(b"nan");
    } else if value > 0.0 {
        out.extend_from_slice(b"inf");
    } else {
        out.extend_from_slice(b"-inf");
    }
}

fn is_negative_zero(value: f64) -> bool {
    value == 0.0 && value.is_sign_negative()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{parse_line, Parsed};
    use crate::series_name::tagged_name;
    use proptest::prelude::*;

    #[test]
    fn formats() {
        let mut out = Vec::new();
        encode("a.b", 42.0, Timestamp::At(1_700_000_000), &mut out);
        encode("a.b", 0.1, Timestamp::Now, &mut out);
        encode("a.b", 1e300, Timestamp::At(1), &mut out);
        encode("a.b", f64::NEG_INFINITY, Timestamp::At(1), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "a.b 42 1700000000\na.b 0.1 -1\na.b 1e300 1\na.b -inf 1\n"
        );
    }

    fn arb_name() -> impl Strategy<Value = String> {
        let node = "[a-zA-Z0-9_:-]{1,8}";
        let path = proptest::collection::vec(node, 1..5).prop_map(|n| n.join("."));
        let tags = proptest::collection::vec(("[a-z]{1,5}", "[a-zA-Z0-9.:_=-]{1,6}"), 0..4);
        (path, tags).prop_filter_map("valid tags", |(p, t)| {
            let t: Vec<(&str, &str)> = t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            tagged_name(&p, &t).ok()
        })
    }

    fn arb_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<i32>().prop_map(f64::from),
            proptest::num::f64::NORMAL
                | proptest::num::f64::SUBNORMAL
                | proptest::num::f64::ZERO
                | proptest::num::f64::INFINITE,
        ]
    }

    fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
        prop_oneof![
            Just(Timestamp::Now),
            (0..=crate::line::MAX_TIMESTAMP).prop_map(Timestamp::At)
        ]
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(name in arb_name(), value in arb_value(), ts in arb_timestamp()) {
            let mut out = Vec::new();
            encode(&name, value, ts, &mut out);
            prop_assert_eq!(out.last(), Some(&b'\n'));
            let parsed = parse_line(&out[..out.len() - 1]);
            let Ok(Parsed::Metric(m)) = parsed else {
                return Err(TestCaseError::fail(format!("{parsed:?} from {:?}", String::from_utf8_lossy(&out))));
            };
            prop_assert_eq!(&*m.name, name.as_str());
            prop_assert_eq!(m.value.to_bits(), value.to_bits());
            prop_assert_eq!(m.timestamp, ts);
        }
    }
}
