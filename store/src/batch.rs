//! A batch of points on its way into the store, names packed in one buffer: decoding a socket
//! read into it costs no allocation per point.

use tally_proto::{decode_batch, IngestReply, Metric};

#[derive(Debug, Default, Clone)]
pub struct PointBatch {
    names: String,
    /// (name start, name length, timestamp, value)
    items: Vec<(u32, u32, i64, f64)>,
}

impl PointBatch {
    pub fn push(&mut self, name: &str, ts: i64, value: f64) {
        let start = self.names.len() as u32;
        self.names.push_str(name);
        self.items.push((start, name.len() as u32, ts, value));
    }

    /// Adds a decoded metric, reading a `-1` timestamp as `now`.
    pub fn push_metric(&mut self, m: &Metric<'_>, now: i64) {
        self.push(&m.name, m.timestamp.resolve(now), m.value);
    }

    /// Decodes the body of an acknowledged batch (`POST /api/v1/ingest`): its good points (a
    /// `-1` timestamp read as `now`) and the reply counting the rest. A pure function, so the
    /// `ingest_body` fuzz target (`store/fuzz/`) runs exactly what the handler runs.
    pub fn from_ingest_body(body: &[u8], now: i64) -> (PointBatch, IngestReply) {
        let mut batch = PointBatch::default();
        let reply = decode_batch(body, |m| batch.push_metric(&m, now));
        (batch, reply)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.names.clear();
        self.items.clear();
    }

    /// Bytes of names held, for sizing.
    pub fn name_bytes(&self) -> usize {
        self.names.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i64, f64)> + '_ {
        self.items.iter().map(|&(start, len, ts, v)| {
            let name = self
                .names
                .get(start as usize..(start + len) as usize)
                .unwrap_or_default();
            (name, ts, v)
        })
    }
}
