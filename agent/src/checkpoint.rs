//! The checkpoint: where the agent continues after a restart, a crash or `kill -9`.
//!
//! `checkpoint.json` in the data directory holds, as of the last commit, every followed file's
//! identity and offset ([`FileState`]), the aggregator's open buckets, series and counters
//! ([`AggState`]), and the sequence number of the newest spool segment. It is replaced with
//! [`write_atomic`], so after a crash it is the last commit's or the one before, never a mix.
//!
//! What it promises, together with the commit order in `pipeline` (segment first, then the
//! checkpoint): the lines up to the recorded offsets are exactly the lines counted in the
//! recorded buckets plus those already spooled. A restart restores both and reads on from the
//! offsets, so no line is lost and none is counted twice; a crash after a segment but before its
//! checkpoint re-reads those lines from the previous checkpoint and spools the same totals
//! again, which overwrite in the store.
//!
//! The format is JSON, checked by nothing but serde: a file that does not parse stops the agent
//! with [`Error::Checkpoint`] rather than silently starting over.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::agg::AggState;
use crate::error::{Error, Result};
use crate::statsd::journal::Position;
use crate::tail::FileState;

/// The checkpoint's file name in the data directory.
const FILE: &str = "checkpoint.json";

/// Everything needed to continue exactly where the last commit left off.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The newest spool segment written when this checkpoint was; new segments number after it
    /// even when the shipper has emptied the spool.
    pub(crate) seq: u64,
    pub(crate) files: Vec<FileState>,
    pub(crate) agg: AggState,
    /// The statsd journal's position and the statsd aggregator (absent in checkpoints of
    /// agents before statsd: nothing read, nothing open).
    #[serde(default)]
    pub(crate) statsd: StatsdState,
}

/// The statsd part of a checkpoint: where in the journal, and the buckets it left open.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatsdState {
    pub(crate) journal: Position,
    pub(crate) agg: AggState,
}

impl Checkpoint {
    /// Reads the checkpoint of a data directory; `None` if there is none (a first start).
    pub(crate) fn load(data_dir: &Path) -> Result<Option<Checkpoint>> {
        let path = data_dir.join(FILE);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| Error::Checkpoint { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// Replaces the checkpoint of a data directory atomically.
    pub(crate) fn save(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(FILE);
        serde_json::to_vec(self)
            .map_err(std::io::Error::from)
            .and_then(|json| write_atomic(&path, &json))
            .map_err(|e| Error::io("writing the checkpoint", &path, e))
    }
}

/// Writes `data` to `path` so that after a crash the file is either whole or as it was:
/// a temporary file next to it, fsync, rename over it, fsync of the directory. The spool's
/// segments are written this way too.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::{Agg, AggCounts, Kind, Obs, RuleShape, SEP};
    use crate::naming::Naming;

    fn agg() -> Agg {
        Agg::new(
            10,
            60,
            3600,
            vec![
                RuleShape {
                    name: "hits".into(),
                    kind: Kind::Counter,
                    tags: vec!["vhost".into()],
                    max_values: 1,
                },
                RuleShape {
                    name: "latency".into(),
                    kind: Kind::Latency {
                        percentiles: vec![50.0],
                        buckets: false,
                    },
                    tags: vec![],
                    max_values: 1,
                },
            ],
            Naming {
                host: "web1".into(),
                path_prefix: None,
            },
        )
    }

    #[test]
    fn a_saved_checkpoint_loads_back_equal() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Checkpoint::load(dir.path()).expect("load"), None);
        let mut a = agg();
        for (vhost, t) in [("www", 1001), ("api", 1002), ("www", 1015)] {
            let mut key = vhost.as_bytes().to_vec();
            key.push(SEP);
            a.add(0, &key, t, 1000, Obs::Count);
        }
        a.add(1, &[], 1003, 1000, Obs::Micros(2500));
        // A line from long ago and one from the future: every counter is non-zero.
        a.add(0, b"www\x1f", -400_000_000, 1000, Obs::Count);
        a.add(0, b"www\x1f", 99_999, 1000, Obs::Count);
        // Bucket 1000 emitted (clean), 1010 still open (dirty).
        a.advance(1010);
        a.emit(&mut Vec::new());
        let cp = Checkpoint {
            seq: 7,
            files: vec![FileState {
                path: "/var/log/nginx/access.log".into(),
                dev: 1,
                ino: 2,
                fp_len: 3,
                fp: 4,
                offset: 5,
                skipping: true,
                gz: false,
            }],
            agg: a.snapshot(),
            statsd: StatsdState::default(),
        };
        assert_eq!(
            cp.agg.counts,
            AggCounts {
                late: 1,
                future: 1,
                overflow: 1
            }
        );
        assert_eq!(cp.agg.buckets.len(), 2);
        cp.save(dir.path()).expect("save");
        // The counters are named in the file, not positional.
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(FILE)).expect("read")).expect("json");
        assert_eq!(
            json["agg"]["counts"],
            serde_json::json!({"late": 1, "future": 1, "overflow": 1})
        );
        assert_eq!(
            Checkpoint::load(dir.path()).expect("load"),
            Some(cp.clone())
        );
        // Saving again replaces it whole and leaves no temporary behind.
        let empty = Checkpoint::default();
        empty.save(dir.path()).expect("save");
        assert_eq!(Checkpoint::load(dir.path()).expect("load"), Some(empty));
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![FILE]);
    }

    #[test]
    fn a_checkpoint_that_does_not_parse_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(FILE), b"{\"seq\": 1, \"files\": [").expect("write");
        let err = Checkpoint::load(dir.path()).expect_err("must not start over silently");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&dir.path().join(FILE).display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("not a checkpoint"), "{msg}");
    }
}
