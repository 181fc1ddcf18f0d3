//! Where the store keeps what in RocksDB: the column families, their keys, and the codecs of the
//! values that are not chunks (chunks have their own module, [`crate::chunk`]).
//!
//! Everything that decides a byte on disk is here, so that a format change is a change to this
//! file and its tests. Column families:
//!
//! - `series`, the index: `n<name>` -> [`SeriesEntry`] (id, aggregate, archives);
//! - `log`, points written but not yet flushed: [`log_key`] (a sequence number) -> the points
//!   in a small binary form ([`encode_log_record`]; plaintext in older stores);
//! - `events`: [`event_key`] (time, then id) -> the event as JSON ([`encode_event`]);
//! - one per archive, named `a<step>s_<retention>s`: [`chunk_key`] (series id, then bucket start,
//!   both big-endian, so a series' buckets are contiguous and in time order) -> a chunk. Each has a
//!   compaction filter that drops buckets past the archive's retention: expiry costs nothing on
//!   the write path and never scans;
//! - the default family holds small documents other parts keep in the store, under `meta/`.

use rocksdb::compaction_filter::Decision;
use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DBCompressionType, Options};

use tally_proto::{Lines, Parsed};

use crate::batch::PointBatch;
use crate::bits::{unzigzag, zigzag};
use crate::engine::unix_now;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::retention::{Aggregate, Archive, ArchiveSet};

pub(crate) const CF_SERIES: &str = "series";
pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_EVENTS: &str = "events";
/// The families every store has, besides one per archive.
pub(crate) const FIXED_CFS: [&str; 3] = [CF_SERIES, CF_LOG, CF_EVENTS];

/// The family of an archive: `a10s_604800s`.
pub(crate) fn archive_cf(a: &Archive) -> String {
    format!("a{}s_{}s", a.step_secs, a.retention_secs)
}

/// The archive an archive family holds; `None` for any other family.
pub(crate) fn parse_archive_cf(name: &str) -> Option<Archive> {
    let rest = name.strip_prefix('a')?;
    let (step, ret) = rest.split_once("s_")?;
    Some(Archive {
        step_secs: step.parse().ok()?,
        retention_secs: ret.strip_suffix('s')?.parse().ok()?,
    })
}

/// The descriptors of [`FIXED_CFS`].
pub(crate) fn fixed_cf_descriptors() -> Vec<ColumnFamilyDescriptor> {
    // Memtables are most of what RocksDB holds in memory (up to two of each family's size). The
    // log's records are deleted soon after they are written, so a larger memtable keeps more of
    // them from ever reaching a file; 64 MiB measured the same CPU as 128 with half the memory.
    // The index entries are written once per series: 16 MiB is plenty for them.
    let mut log_opts = Options::default();
    log_opts.set_write_buffer_size(64 << 20);
    // Log records live until the next flush of the head: compressing the ones a memtable flush
    // writes out (snappy, by default) was 6% of ingesting float gauges, for files deleted soon.
    log_opts.set_compression_type(DBCompressionType::None);
    let mut series_opts = Options::default();
    series_opts.set_write_buffer_size(16 << 20);
    vec![
        ColumnFamilyDescriptor::new(CF_SERIES, series_opts),
        ColumnFamilyDescriptor::new(CF_LOG, log_opts),
        ColumnFamilyDescriptor::new(CF_EVENTS, Options::default()),
    ]
}

/// The family of an archive, with the compaction filter that expires its buckets.
pub(crate) fn archive_cf_descriptor(a: Archive) -> ColumnFamilyDescriptor {
    ColumnFamilyDescriptor::new(archive_cf(&a), archive_cf_options(a))
}

fn archive_cf_options(a: Archive) -> Options {
    let mut o = Options::default();
    let keep = a.retention_secs as i64 + i64::from(a.bucket_secs());
    o.set_compaction_filter(
        "tally.retention",
        move |_level, key: &[u8], _value: &[u8]| match chunk_key_bucket(key) {
            Some(bucket) if bucket.saturating_add(keep) < unix_now() => Decision::Remove,
            _ => Decision::Keep,
        },
    );
    // Files that nothing new lands on are not compacted by RocksDB on its own: the server runs
    // `Store::compact` daily so that they expire too (the 0.20 bindings lack periodic compaction).
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    // The bottommost level is nearly all of the data, written once by compaction and read
    // often: zstd level 6 with a 16 KiB dictionary trained per file (from 1.6 MB of samples)
    // gives each 16 KiB block the statistics of its whole file, where alone it had its own.
    // Measured on 24 h of 3-decimal gauges: 0.304 -> 0.296 bytes a point; counts 0.677 -> 0.670.
    o.set_bottommost_compression_options(-14, 6, 0, 16 << 10, true);
    o.set_bottommost_zstd_max_train_bytes(100 * (16 << 10), true);
    let mut block = BlockBasedOptions::default();
    block.set_bloom_filter(10.0, false);
    // Larger blocks give zstd more of the byte-aligned offsets to entropy-code at once.
    block.set_block_size(16 * 1024);
    o.set_block_based_table_factory(&block);
    o
}

/// Key of a chunk: series id, then bucket start (negative times clamp to 0), big-endian.
pub(crate) fn chunk_key(id: u32, bucket: i64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&id.to_be_bytes());
    k[4..].copy_from_slice(&(bucket.max(0) as u64).to_be_bytes());
    k
}

/// The series id of a chunk key.
pub(crate) fn chunk_key_series(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(..4)?.try_into().ok()?))
}

/// The bucket start of a chunk key.
pub(crate) fn chunk_key_bucket(key: &[u8]) -> Option<i64> {
    Some(u64::from_be_bytes(key.get(4..12)?.try_into().ok()?) as i64)
}

/// `[start, end)` covering every chunk of a series, for a range delete.
pub(crate) fn series_chunk_range(id: u32) -> (Vec<u8>, Vec<u8>) {
    let start = chunk_key(id, 0).to_vec();
    let end = match id.checked_add(1) {
        Some(next) => chunk_key(next, 0).to_vec(),
        None => vec![0xff; 13],
    };
    (start, end)
}

/// Key of a series in the `series` family: `n<name>`.
pub(crate) fn series_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1);
    key.push(b'n');
    key.extend_from_slice(name.as_bytes());
    key
}

/// The name in a `series` family key; `None` for keys that are not a series.
pub(crate) fn series_key_name(key: &[u8]) -> Option<Result<&str>> {
    let name = key.strip_prefix(b"n")?;
    Some(std::str::from_utf8(name).map_err(|_| Error::Corrupt("series name is not UTF-8".into())))
}

/// What the `series` family holds for a series, and what a lookup by name answers: its id and
/// what it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesEntry {
    pub(crate) id: u32,
    pub(crate) set: ArchiveSet,
}

impl SeriesEntry {
    /// The value of a series key: id:32, aggregate code:8, archive count:8, then per archive
    /// step:32 and retention:64, all big-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let archives = &self.set.archives;
        let mut v = Vec::with_capacity(6 + archives.len() * 12);
        v.extend_from_slice(&self.id.to_be_bytes());
        v.push(self.set.aggregate.code());
        v.push(archives.len() as u8);
        for a in archives {
            v.extend_from_slice(&a.step_secs.to_be_bytes());
            v.extend_from_slice(&a.retention_secs.to_be_bytes());
        }
        v
    }

    /// Decodes [`SeriesEntry::encode`]; `None` if the bytes are not an entry (or one without
    /// archives, which no series has).
    pub(crate) fn decode(v: &[u8]) -> Option<SeriesEntry> {
        let id = u32::from_be_bytes(v.get(..4)?.try_into().ok()?);
        let aggregate = Aggregate::from_code(*v.get(4)?)?;
        let n = *v.get(5)? as usize;
        let mut archives = Vec::with_capacity(n);
        for i in 0..n {
            let at = 6 + i * 12;
            archives.push(Archive {
                step_secs: u32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?),
                retention_secs: u64::from_be_bytes(v.get(at + 4..at + 12)?.try_into().ok()?),
            });
        }
        if archives.is_empty() {
            return None;
        }
        Some(SeriesEntry {
            id,
            set: ArchiveSet {
                archives,
                aggregate,
            },
        })
    }
}

/// Key of a log record: its sequence number, big-endian, so records iterate in write order.
pub(crate) fn log_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The sequence number of a log key.
pub(crate) fn parse_log_key(key: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corrupt("log key".into()))
}

/// First byte of a binary log record. Records were once Graphite plaintext, whose first byte is
/// never 0xFF (no UTF-8 text has one), so the two kinds tell themselves apart.
const LOG_BINARY: u8 = 0xff;

/// Value of a log record: 0xFF, then per point its name (length varint, bytes), its timestamp
/// (zigzag varint of the difference from the previous point's; the first from 0) and its value
/// (the f64's bits, little-endian). Binary rather than plaintext because formatting every value
/// back into text was a tenth of the ingest of float gauges (perf, `ryu::format64`), and the
/// value comes back bit for bit.
pub(crate) fn encode_log_record(batch: &PointBatch) -> Vec<u8> {
    let mut record = Vec::with_capacity(1 + batch.name_bytes() + batch.len() * 12);
    record.push(LOG_BINARY);
    let mut prev = 0i64;
    for (name, ts, value) in batch.iter() {
        put_varint(&mut record, name.len() as u64);
        record.extend_from_slice(name.as_bytes());
        put_varint(&mut record, zigzag(ts.wrapping_sub(prev)));
        prev = ts;
        record.extend_from_slice(&value.to_bits().to_le_bytes());
    }
    record
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Appends the points of a log record to `batch`, in the order they were written. A record cut
/// short (it never is: RocksDB checks its values) gives the points before the cut; a name that
/// is not UTF-8 skips its point. Plaintext records, written before the binary ones, still read.
pub(crate) fn decode_log_record(record: &[u8], batch: &mut PointBatch) {
    if let Some((&LOG_BINARY, mut b)) = record.split_first() {
        let mut prev = 0i64;
        while !b.is_empty() {
            let Some(len) = take_varint(&mut b).and_then(|n| usize::try_from(n).ok()) else {
                return;
            };
            let Some((name, rest)) = b.split_at_checked(len) else {
                return;
            };
            b = rest;
            let Some(delta) = take_varint(&mut b) else {
                return;
            };
            let Some((bits, rest)) = b.split_first_chunk::<8>() else {
                return;
            };
            b = rest;
            prev = prev.wrapping_add(unzigzag(delta));
            if let Ok(name) = std::str::from_utf8(name) {
                batch.push(name, prev, f64::from_bits(u64::from_le_bytes(*bits)));
            }
        }
        return;
    }
    for parsed in Lines::new(record) {
        if let Ok(Parsed::Metric(m)) = parsed {
            batch.push_metric(&m, 0);
        }
    }
}

/// Key of an event: `when` (offset so negative times sort first) then id, big-endian.
pub(crate) fn event_key(when: i64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&((when as u64) ^ (1 << 63)).to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Value of an event: the event as JSON.
pub(crate) fn encode_event(event: &Event) -> Result<Vec<u8>> {
    serde_json::to_vec(event).map_err(|e| Error::Corrupt(format!("event {}: {e}", event.id)))
}

/// Decodes [`encode_event`].
pub(crate) fn decode_event(value: &[u8]) -> Result<Event> {
    serde_json::from_slice(value).map_err(|e| Error::Corrupt(format!("event: {e}")))
}

/// Key of a document kept with [`crate::Store::put_meta`], in the default family.
pub(crate) fn meta_key(key: &str) -> String {
    format!("meta/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_families_are_named_by_step_and_retention() {
        let a = Archive {
            step_secs: 10,
            retention_secs: 604_800,
        };
        assert_eq!(archive_cf(&a), "a10s_604800s");
        assert_eq!(parse_archive_cf("a10s_604800s"), Some(a));
        for other in [CF_SERIES, CF_LOG, CF_EVENTS, "default", "a10s_", "a10s_5"] {
            assert_eq!(parse_archive_cf(other), None, "{other}");
        }
    }

    #[test]
    fn chunk_keys_sort_by_series_then_time() {
        assert!(chunk_key(1, 7200) < chunk_key(1, 14_400));
        assert!(chunk_key(1, i64::MAX) < chunk_key(2, 0));
        assert_eq!(chunk_key(3, -5), chunk_key(3, 0), "negative times clamp");
        let k = chunk_key(7, 7200);
        assert_eq!(
            (chunk_key_series(&k), chunk_key_bucket(&k)),
            (Some(7), Some(7200))
        );
        assert_eq!(chunk_key_bucket(&k[..11]), None);
        let (start, end) = series_chunk_range(7);
        assert!(start[..] <= k[..] && k[..] < end[..]);
        assert!(chunk_key(8, 0)[..] >= end[..]);
        let (_, end) = series_chunk_range(u32::MAX);
        assert!(chunk_key(u32::MAX, i64::MAX)[..] < end[..]);
    }

    #[test]
    fn event_keys_sort_by_time() {
        assert!(event_key(-5, 9) < event_key(0, 0));
        assert!(event_key(0, 9) < event_key(1, 0));
        assert!(event_key(100, 1) < event_key(100, 2));
    }

    /// The bytes of an index entry are the format: this one must keep decoding to the same entry.
    #[test]
    fn series_entries_have_a_fixed_encoding() {
        let entry = SeriesEntry {
            id: 7,
            set: ArchiveSet {
                archives: vec![
                    Archive {
                        step_secs: 10,
                        retention_secs: 86_400,
                    },
                    Archive {
                        step_secs: 60,
                        retention_secs: 604_800,
                    },
                ],
                aggregate: Aggregate::Sum,
            },
        };
        let bytes: &[u8] = &[
            0, 0, 0, 7, // id
            1, // aggregate: sum
            2, // archives
            0, 0, 0, 10, 0, 0, 0, 0, 0, 1, 0x51, 0x80, // 10 s for 86,400 s
            0, 0, 0, 60, 0, 0, 0, 0, 0, 9, 0x3a, 0x80, // 60 s for 604,800 s
        ];
        assert_eq!(entry.encode(), bytes);
        assert_eq!(SeriesEntry::decode(bytes), Some(entry));
        for bad in [
            &bytes[..5],
            &bytes[..bytes.len() - 1],
            &[0, 0, 0, 7, 9, 0][..],
        ] {
            assert_eq!(SeriesEntry::decode(bad), None, "{bad:?}");
        }
        let mut unknown_aggregate = bytes.to_vec();
        unknown_aggregate[4] = 6;
        assert_eq!(SeriesEntry::decode(&unknown_aggregate), None);
    }

    #[test]
    fn events_are_stored_as_json() {
        let event = Event {
            id: 3,
            when: 1_700_000_000,
            what: "deploy".into(),
            data: "v2".into(),
            tags: vec!["web".into()],
        };
        let bytes = encode_event(&event).expect("encodes");
        assert_eq!(
            std::str::from_utf8(&bytes).expect("UTF-8"),
            r#"{"id":3,"when":1700000000,"what":"deploy","data":"v2","tags":["web"]}"#
        );
        assert_eq!(decode_event(&bytes).expect("decodes"), event);
        assert!(decode_event(b"{").is_err());
    }

    #[test]
    fn log_keys_sort_in_write_order() {
        assert!(log_key(255) < log_key(256));
        assert_eq!(parse_log_key(&log_key(42)).expect("a log key"), 42);
        assert!(parse_log_key(b"short").is_err());
    }

    #[test]
    fn log_records_replay_the_points_written() {
        let mut batch = PointBatch::default();
        batch.push("a.b", 1_700_000_000, 1.5);
        batch.push("c;host=w1", 1_700_000_010, -2.0);
        batch.push("a.b", 1_699_999_990, 0.1 + 0.2);
        batch.push("d", i64::MIN, f64::MAX);
        batch.push("e", i64::MAX, -0.0);
        let mut back = PointBatch::default();
        decode_log_record(&encode_log_record(&batch), &mut back);
        let bits = |b: &PointBatch| {
            b.iter()
                .map(|(n, t, v)| (n.to_owned(), t, v.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&back), bits(&batch));
    }

    /// Stores written before the binary records hold plaintext ones: they still replay.
    #[test]
    fn plaintext_log_records_still_replay() {
        let mut back = PointBatch::default();
        decode_log_record(b"a.b 1.5 1700000000\nc;host=w1 -2 1700000010\n", &mut back);
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            [
                ("a.b", 1_700_000_000, 1.5),
                ("c;host=w1", 1_700_000_010, -2.0)
            ]
        );
    }

    proptest::proptest! {
        /// Any batch comes back exactly; any bytes after the marker decode without a panic,
        /// and a record cut anywhere gives a prefix of its points.
        #[test]
        fn binary_log_records_round_trip_and_never_panic(
            points in proptest::collection::vec(("[a-z.;=]{1,20}", proptest::prelude::any::<i64>(), proptest::prelude::any::<u64>()), 0..30),
            cut in 0usize..2000,
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let mut batch = PointBatch::default();
            for (n, t, v) in &points {
                batch.push(n, *t, f64::from_bits(*v));
            }
            let record = encode_log_record(&batch);
            let bits = |b: &PointBatch| b.iter().map(|(n, t, v)| (n.to_owned(), t, v.to_bits())).collect::<Vec<_>>();
            let mut back = PointBatch::default();
            decode_log_record(&record, &mut back);
            proptest::prop_assert_eq!(bits(&back), bits(&batch));
            let mut part = PointBatch::default();
            decode_log_record(&record[..cut.min(record.len())], &mut part);
            let whole = bits(&batch);
            proptest::prop_assert_eq!(&whole[..part.len()], &bits(&part)[..]);
            let mut junk_record = vec![LOG_BINARY];
            junk_record.extend(junk);
            decode_log_record(&junk_record, &mut PointBatch::default());
        }
    }

    #[test]
    fn series_keys_hold_the_name() {
        let key = series_key("a.b;x=1");
        assert_eq!(key, b"na.b;x=1");
        assert_eq!(series_key_name(&key).map(|n| n.ok()), Some(Some("a.b;x=1")));
        assert!(series_key_name(b"xother").is_none());
        assert!(matches!(series_key_name(b"n\xff"), Some(Err(_))));
    }
}
