//! The on-disk spool: points waiting for the destination, in files written atomically.
//!
//! Each commit that produced points writes one segment, `<seq>.<points>.seg`, holding Graphite
//! plaintext lines. A segment is written to a temporary name, synced, renamed and the directory
//! synced, so after a crash a segment is either whole or absent. The shipper sends segments
//! oldest first and deletes one only after the destination acknowledged it. The spool is
//! bounded: a new segment that would pass the bound first deletes the oldest ones, and the
//! points lost are counted and logged as an error.

use std::fs;
use std::path::{Path, PathBuf};

use crate::checkpoint::write_atomic;

/// One spooled segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) points: u64,
    pub(crate) bytes: u64,
    pub(crate) path: PathBuf,
}

/// Lists the segments in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Vec<Segment> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Segment> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let stem = name.strip_suffix(".seg")?;
            let (seq, points) = stem.split_once('.')?;
            Some(Segment {
                seq: seq.parse().ok()?,
                points: points.parse().ok()?,
                bytes: e.metadata().ok()?.len(),
                path: e.path(),
            })
        })
        .collect();
    out.sort_by_key(|s| s.seq);
    out
}

/// The writing side of the spool.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    next_seq: u64,
    /// Points deleted unsent because the spool was full.
    pub(crate) dropped_points: u64,
}

impl Spool {
    /// Opens (creating) the spool; sequence numbers continue after the newest segment and
    /// after `min_seq` (the checkpoint's).
    pub(crate) fn open(dir: &Path, max_bytes: u64, min_seq: u64) -> std::io::Result<Spool> {
        fs::create_dir_all(dir)?;
        // Leftover temporaries are segments that were never renamed: never acknowledged, never
        // counted by a checkpoint. Remove them.
        for e in fs::read_dir(dir)?.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let _ = fs::remove_file(e.path());
            }
        }
        let newest = list(dir).last().map_or(0, |s| s.seq);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            next_seq: newest.max(min_seq) + 1,
            dropped_points: 0,
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number the next segment gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes one segment durably, first making room under the bound.
    pub(crate) fn write(&mut self, body: &[u8], points: u64) -> std::io::Result<u64> {
        let mut segs = list(&self.dir);
        let mut total: u64 = segs.iter().map(|s| s.bytes).sum();
        let mut dropped = 0;
        while total + body.len() as u64 > self.max_bytes && !segs.is_empty() {
            let s = segs.remove(0);
            if fs::remove_file(&s.path).is_ok() {
                total -= s.bytes;
                dropped += s.points;
                self.dropped_points += s.points;
            }
        }
        if dropped > 0 {
            tracing::error!(
                dropped_points = dropped,
                max_bytes = self.max_bytes,
                "the spool is full (the destination has been away too long): dropped the oldest points"
            );
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        write_atomic(&self.dir.join(format!("{seq:020}.{points}.seg")), body)?;
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_ordered_bounded_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sp = Spool::open(dir.path(), 100, 0).expect("open");
        sp.write(&[b'x'; 40], 4).expect("write");
        sp.write(&[b'y'; 40], 5).expect("write");
        assert_eq!(
            list(dir.path())
                .iter()
                .map(|s| (s.seq, s.points))
                .collect::<Vec<_>>(),
            vec![(1, 4), (2, 5)]
        );
        // The third does not fit: the oldest goes, and is counted.
        sp.write(&[b'z'; 40], 6).expect("write");
        assert_eq!(
            list(dir.path()).iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(sp.dropped_points, 4);
        fs::write(dir.path().join(".00000000000000000004.1.seg.tmp"), b"half").expect("tmp");
        let sp = Spool::open(dir.path(), 100, 0).expect("reopen");
        assert_eq!(sp.next_seq(), 4);
        assert_eq!(list(dir.path()).len(), 2);
        assert!(!dir.path().join(".00000000000000000004.1.seg.tmp").exists());
        assert_eq!(
            Spool::open(dir.path(), 100, 9).expect("reopen").next_seq(),
            10
        );
    }
}
