//! Atlas's publish payload (`POST /api/v1/publish`; `atlas-webapi` `PublishPayloads.scala`,
//! `PublishApi.scala`): `{"tags": {common tags}, "metrics": [{"tags": {"name": ...},
//! "timestamp": <ms>, "value": <number>}]}`.
//!
//! Each datapoint is checked with Atlas's default validation rules (a `name`; keys of 2 to 60
//! characters; a name of 2 to 255 and other values of 1 to 120; only `-._A-Za-z0-9^~`; at most
//! 20 tags besides `name`; a finite value) and becomes the tagged series
//! `name;k1=v1;k2=v2` at the timestamp's second. A bad item is reported by its index and the
//! good ones are kept, as Atlas keeps them.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::batch::PointBatch;

/// Most problems listed in a reply; the count is always whole.
const MAX_REPORTED: usize = 100;

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    metrics: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Datapoint {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    timestamp: i64,
    value: serde_json::Value,
}

/// What a publish decoded: the points to write, how many items there were, and the bad ones.
#[derive(Debug, Default)]
pub struct Published {
    pub batch: PointBatch,
    pub items: usize,
    pub failures: usize,
    /// `metrics[<index>]: <reason>`, the first [`MAX_REPORTED`].
    pub messages: Vec<String>,
}

impl Published {
    fn fail(&mut self, index: usize, reason: String) {
        self.failures += 1;
        if self.messages.len() < MAX_REPORTED {
            self.messages.push(format!("metrics[{index}]: {reason}"));
        }
    }
}

fn valid_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._^~".contains(&b))
}

/// Atlas's default rules for one datapoint's tags.
fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    let Some(name) = tags.get("name") else {
        return Err("missing key \"name\"".into());
    };
    if !(2..=255).contains(&name.chars().count()) {
        return Err(format!("name \"{name}\" must be 2 to 255 characters"));
    }
    if tags.len() - 1 > 20 {
        return Err(format!("{} tags besides name; at most 20", tags.len() - 1));
    }
    for (k, v) in tags {
        if !(2..=60).contains(&k.chars().count()) {
            return Err(format!("key \"{k}\" must be 2 to 60 characters"));
        }
        if k != "name" && !(1..=120).contains(&v.chars().count()) {
            return Err(format!("value of \"{k}\" must be 1 to 120 characters"));
        }
        if !valid_chars(k) {
            return Err(format!("key \"{k}\" has characters outside -._A-Za-z0-9^~"));
        }
        if !valid_chars(v) {
            return Err(format!(
                "value \"{v}\" of \"{k}\" has characters outside -._A-Za-z0-9^~"
            ));
        }
    }
    Ok(())
}

/// Decodes a publish body. `Err` when the body is not a payload at all (not JSON, no
/// `metrics` list); otherwise every item is either a point in the batch or a failure.
pub fn decode(body: &[u8]) -> Result<Published, String> {
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| format!("not a publish payload: {e}"))?;
    let mut out = Published {
        items: payload.metrics.len(),
        ..Published::default()
    };
    for (i, item) in payload.metrics.into_iter().enumerate() {
        let d: Datapoint = match serde_json::from_value(item) {
            Ok(d) => d,
            Err(e) => {
                out.fail(i, format!("not a datapoint: {e}"));
                continue;
            }
        };
        let mut tags = payload.tags.clone();
        tags.extend(d.tags);
        if let Err(reason) = check_tags(&tags) {
            out.fail(i, reason);
            continue;
        }
        let value = match &d.value {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        };
        let Some(value) = value.filter(|v| v.is_finite()) else {
            out.fail(i, format!("value {} is not a finite number", d.value));
            continue;
        };
        let name = tags.remove("name").unwrap_or_default();
        let mut series = name;
        for (k, v) in &tags {
            series.push(';');
            series.push_str(k);
            series.push('=');
            series.push_str(v);
        }
        match tally_proto::series_name::canonicalize(&series) {
            Ok(c) => out.batch.push(&c, d.timestamp.div_euclid(1000), value),
            Err(e) => out.fail(i, format!("\"{series}\": {e}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_items_are_kept_and_bad_ones_reported_by_index() {
        let body = br#"{"tags": {"nf.app": "www", "host": "web1"},
            "metrics": [
              {"tags": {"name": "requests", "status": "5xx"}, "timestamp": 1700000000123, "value": 3},
              {"tags": {"status": "2xx"}, "timestamp": 1700000000000, "value": 1},
              {"tags": {"name": "requests", "host": "web 2"}, "timestamp": 1700000000000, "value": 1},
              {"tags": {"name": "x"}, "timestamp": 1700000000000, "value": 1},
              {"tags": {"name": "requests"}, "timestamp": 1700000000000, "value": "NaN"},
              {"tags": {"name": "requests"}, "value": 1},
              {"tags": {"name": "latency"}, "timestamp": 1700000060000, "value": "0.25"}
            ]}"#;
        let p = decode(body).expect("a payload");
        assert_eq!((p.items, p.failures, p.batch.len()), (7, 5, 2));
        let points: Vec<(String, i64, f64)> = p
            .batch
            .iter()
            .map(|(n, t, v)| (n.to_string(), t, v))
            .collect();
        assert_eq!(
            points,
            [
                (
                    "requests;host=web1;nf.app=www;status=5xx".to_string(),
                    1_700_000_000,
                    3.0
                ),
                (
                    "latency;host=web1;nf.app=www".to_string(),
                    1_700_000_060,
                    0.25
                ),
            ]
        );
        assert_eq!(p.messages[0], "metrics[1]: missing key \"name\"");
        assert!(
            p.messages[1].starts_with("metrics[2]: value \"web 2\""),
            "{:?}",
            p.messages
        );
        assert!(
            p.messages[2].starts_with("metrics[3]: name \"x\""),
            "{:?}",
            p.messages
        );
        assert!(
            p.messages[3].starts_with("metrics[4]: value \"NaN\""),
            "{:?}",
            p.messages
        );
        assert!(
            p.messages[4].starts_with("metrics[5]: not a datapoint"),
            "{:?}",
            p.messages
        );
        assert!(decode(b"[1,2]").is_err());
        assert!(decode(b"{\"tags\":{}}").is_err());
    }
}
