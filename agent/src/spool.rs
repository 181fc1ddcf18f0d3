//! The on-disk spool: points waiting for the destination, in files written atomically.
//!
//! Each commit that produced points writes one segment, `<seq>.<points>.seg`, holding Graphite
//! plaintext lines. A segment is written to a temporary name, synced, renamed and the directory
//! synced, so after a crash a segment is either whole or absent. The shipper sends segments
//! oldest first and deletes one only after the destination acknowledged it. The spool is
//! bounded: a new segment that would pass the bound first deletes the oldest ones, and the
//! points lost are counted and logged as an error.
//!
//! With several stores ([`Spools`]) each store has a queue of its own, `spool/<store>/`, and a
//! commit writes one segment into each queue its points go to, all with the commit's sequence
//! number: a store that is down keeps only its own share waiting while the others are shipped,
//! and a point is gone from the spool once every store holding it acknowledged it. Each queue
//! is bounded by the same size. A crash between two queues' segments is the crash between
//! segment and checkpoint of one queue: the commit is made again, and its totals overwrite.
//! Segments found where the current configuration has no queue (the single spool of an
//! agent that now has several stores, a store no longer listed) are placed again, by their
//! lines' names, into the queues of today's stores, keeping their sequence numbers.
use std::fs;
use std::path::{Path, PathBuf};

use crate::agg::Point;
use crate::checkpoint::write_atomic;
use crate::config::Output;
use crate::ring::Ring;

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
    #[cfg(test)]
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes one segment durably, first making room under the bound.
    #[cfg(test)]
    pub(crate) fn write(&mut self, body: &[u8], points: u64) -> std::io::Result<u64> {
        let seq = self.next_seq;
        self.write_at(seq, body, points)
    }

    /// Writes the segment numbered `seq` durably, first making room under the bound; the
    /// next segment numbers after it.
    fn write_at(&mut self, seq: u64, body: &[u8], points: u64) -> std::io::Result<u64> {
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
        self.next_seq = self.next_seq.max(seq + 1);
        write_atomic(&self.dir.join(format!("{seq:020}.{points}.seg")), body)?;
        Ok(seq)
    }

    /// Adds a segment placed again (see [`Spools`]) under its own number: next to a segment of
    /// the same number (the same commit) its lines join that one's.
    fn adopt(&mut self, seq: u64, body: &[u8], points: u64) -> std::io::Result<()> {
        let same: Vec<Segment> = list(&self.dir)
            .into_iter()
            .filter(|s| s.seq == seq)
            .collect();
        let mut all = Vec::new();
        let mut n = points;
        for s in &same {
            all.extend_from_slice(&fs::read(&s.path)?);
            n += s.points;
        }
        all.extend_from_slice(body);
        let path = self.dir.join(format!("{seq:020}.{n}.seg"));
        write_atomic(&path, &all)?;
        for s in same.into_iter().filter(|s| s.path != path) {
            fs::remove_file(&s.path)?;
        }
        self.next_seq = self.next_seq.max(seq + 1);
        Ok(())
    }
}

/// The queue directory of a store below the spool: its URL with every byte but letters,
/// digits, `.` and `-` written as `_` (`http___10.0.0.1_8080`).
pub(crate) fn queue_name(url: &str) -> String {
    url.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                b as char
            } else {
                '_'
            }
        })
        .collect()
}

/// Every queue of the agent: one spool for one destination, or one per store with a ring that
/// decides which queues each point goes to.
#[derive(Debug)]
pub(crate) struct Spools {
    queues: Vec<Spool>,
    ring: Option<Ring>,
    next_seq: u64,
    /// Per queue, the points of the commit being written, and one line's text.
    bodies: Vec<(Vec<u8>, u64)>,
    line: Vec<u8>,
    owners: Vec<usize>,
}

impl Spools {
    /// Opens the queues `output` needs under `root` (the root itself for one destination,
    /// `root/<store>` for each of several), places again what lies elsewhere in the spool,
    /// and numbers new segments after every segment there and after `min_seq`.
    pub(crate) fn open(
        root: &Path,
        output: &Output,
        max_bytes: u64,
        min_seq: u64,
    ) -> std::io::Result<Spools> {
        fs::create_dir_all(root)?;
        let (dirs, ring) = match output {
            Output::Stores { stores, ring, .. } => (
                stores
                    .iter()
                    .map(|s| root.join(queue_name(&s.url)))
                    .collect::<Vec<_>>(),
                Some(ring.clone()),
            ),
            _ => (vec![root.to_path_buf()], None),
        };
        // Every directory of segments: the root and its subdirectories.
        let mut found = vec![root.to_path_buf()];
        for e in fs::read_dir(root)?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(e.path());
            }
        }
        let newest = found
            .iter()
            .filter_map(|d| list(d).last().map(|s| s.seq))
            .max()
            .unwrap_or(0);
        let mut queues = Vec::with_capacity(dirs.len());
        for d in &dirs {
            queues.push(Spool::open(d, max_bytes, 0)?);
        }
        let mut spools = Spools {
            bodies: vec![(Vec::new(), 0); queues.len()],
            queues,
            ring,
            next_seq: newest.max(min_seq) + 1,
            line: Vec::new(),
            owners: Vec::new(),
        };
        for d in found.iter().filter(|d| !dirs.contains(d)) {
            spools.place_again(d, d.as_path() == root)?;
        }
        Ok(spools)
    }

    /// Moves the segments of a directory that is no queue of today's configuration into the
    /// queues, each line where the placement puts it now; an emptied subdirectory goes.
    fn place_again(&mut self, dir: &Path, is_root: bool) -> std::io::Result<()> {
        let segs = list(dir);
        if !segs.is_empty() {
            let points: u64 = segs.iter().map(|s| s.points).sum();
            tracing::info!(dir = %dir.display(), segments = segs.len(), points, "placing spooled points again for today's stores");
        }
        for s in segs {
            let body = fs::read(&s.path)?;
            self.split(body.split_inclusive(|&b| b == b'\n').map(|l| {
                let name_end = memchr::memchr(b' ', l).unwrap_or(l.len());
                (&l[..name_end], l)
            }));
            for q in 0..self.queues.len() {
                let (body, n) = std::mem::take(&mut self.bodies[q]);
                if n > 0 {
                    self.queues[q].adopt(s.seq, &body, n)?;
                }
            }
            fs::remove_file(&s.path)?;
        }
        // What is left of a former queue: temporaries (never renamed, never acknowledged).
        if !is_root {
            for e in fs::read_dir(dir)?.flatten() {
                if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                    let _ = fs::remove_file(e.path());
                }
            }
            // Not empty: something that is not ours; it stays.
            let _ = fs::remove_dir(dir);
        }
        Ok(())
    }

    /// Adds lines (name, whole line with its newline) to the bodies of the queues that hold
    /// them.
    fn split<'a>(&mut self, lines: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
        for (name, line) in lines {
            match &self.ring {
                None => {
                    self.bodies[0].0.extend_from_slice(line);
                    self.bodies[0].1 += 1;
                }
                Some(ring) => {
                    ring.place_series(name, &mut self.owners);
                    for &q in &self.owners {
                        self.bodies[q].0.extend_from_slice(line);
                        self.bodies[q].1 += 1;
                    }
                }
            }
        }
    }

    /// The directories of the queues, in the order of the stores.
    pub(crate) fn dirs(&self) -> Vec<PathBuf> {
        self.queues.iter().map(|q| q.dir().to_path_buf()).collect()
    }

    /// The number the last commit's segments got (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Points deleted unsent because a queue was full, over all queues.
    pub(crate) fn dropped_points(&self) -> u64 {
        self.queues.iter().map(|q| q.dropped_points).sum()
    }

    /// Writes one commit's points: one segment in every queue that holds some of them, all
    /// with one new number. Returns how many points were written over all queues.
    pub(crate) fn write(&mut self, points: &[Point]) -> std::io::Result<u64> {
        let mut line = std::mem::take(&mut self.line);
        for p in points {
            line.clear();
            tally_proto::encode(
                &p.name,
                p.value,
                tally_proto::Timestamp::At(p.time),
                &mut line,
            );
            self.split(std::iter::once((p.name.as_bytes(), line.as_slice())));
        }
        self.line = line;
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut written = 0;
        for (q, queue) in self.queues.iter_mut().enumerate() {
            let (body, n) = &mut self.bodies[q];
            if *n > 0 {
                queue.write_at(seq, body, *n)?;
                written += *n;
            }
            body.clear();
            *n = 0;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreTarget;
    use crate::ring::{Hashing, Member};

    fn stores(n: usize, replication: usize) -> Output {
        let stores: Vec<StoreTarget> = (0..n)
            .map(|i| StoreTarget {
                url: format!("http://127.0.0.1:{}", 8081 + i),
                server: Member::parse(&format!("127.0.0.1:{}={i}", 2103 + 100 * i))
                    .expect("member"),
            })
            .collect();
        let members: Vec<Member> = stores.iter().map(|s| s.server.clone()).collect();
        Output::Stores {
            ring: Ring::new(Hashing::CarbonCh, &members, replication).expect("ring"),
            stores,
            token: None,
            tls: Default::default(),
        }
    }

    fn single() -> Output {
        Output::Tally {
            url: "http://127.0.0.1:8080".into(),
            token: None,
            tls: Default::default(),
        }
    }

    fn points(names: &[&str], t: i64) -> Vec<Point> {
        names
            .iter()
            .map(|n| Point {
                name: n.to_string(),
                value: 1.0,
                time: t,
            })
            .collect()
    }

    /// Every queue's lines, by queue directory name.
    fn queued(root: &Path) -> Vec<(String, Vec<(u64, String)>)> {
        let mut dirs: Vec<PathBuf> = std::iter::once(root.to_path_buf())
            .chain(
                fs::read_dir(root)
                    .expect("ls")
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path()),
            )
            .collect();
        dirs.sort();
        dirs.iter()
            .map(|d| {
                let mut lines = Vec::new();
                for s in list(d) {
                    for l in fs::read_to_string(&s.path).expect("read").lines() {
                        lines.push((s.seq, l.to_string()));
                    }
                }
                let name = d.strip_prefix(root).expect("below").display().to_string();
                (name, lines)
            })
            .filter(|(_, l)| !l.is_empty())
            .collect()
    }

    #[test]
    fn a_commit_goes_to_the_queues_of_its_stores_with_one_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = stores(3, 2);
        let mut sp = Spools::open(dir.path(), &out, 1 << 20, 6).expect("open");
        let names = ["a.b", "c.d;x=1", "e.f", "requests;host=web1"];
        assert_eq!(sp.write(&points(&names, 100)).expect("write"), 8);
        assert_eq!(sp.last_seq(), 7);
        let Output::Stores { ring, stores, .. } = &out else {
            unreachable!()
        };
        let mut owners = Vec::new();
        let got = queued(dir.path());
        for (q, store) in stores.iter().enumerate() {
            let want: Vec<(u64, String)> = names
                .iter()
                .filter(|n| {
                    ring.place_series(n.as_bytes(), &mut owners);
                    owners.contains(&q)
                })
                .map(|n| (7, format!("{n} 1 100")))
                .collect();
            let have = got
                .iter()
                .find(|(d, _)| *d == queue_name(&store.url))
                .map(|(_, l)| l.clone())
                .unwrap_or_default();
            assert_eq!(have, want, "{}", store.url);
        }
        assert_eq!(queue_name("http://127.0.0.1:8081"), "http___127.0.0.1_8081");
        // Reopened, numbers continue after the newest segment of any queue.
        let sp = Spools::open(dir.path(), &out, 1 << 20, 0).expect("reopen");
        assert_eq!(sp.last_seq(), 7);
    }

    #[test]
    fn segments_of_another_configuration_are_placed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = ["a.b", "c.d", "e.f", "g.h", "i.j"];
        // One store first: the spool's root.
        let mut one = Spools::open(dir.path(), &single(), 1 << 20, 0).expect("open");
        one.write(&points(&names, 10)).expect("write");
        one.write(&points(&names[..2], 20)).expect("write");
        drop(one);
        // Then three: the root's lines move into the queues that hold them, numbers kept.
        let three = stores(3, 2);
        let sp = Spools::open(dir.path(), &three, 1 << 20, 0).expect("open");
        assert_eq!(sp.last_seq(), 2);
        let got = queued(dir.path());
        assert_eq!(got.len(), 3, "{got:?}");
        let total: usize = got.iter().map(|(_, l)| l.len()).sum();
        assert_eq!(total, 2 * (names.len() + 2));
        assert!(got.iter().all(|(_, l)| l.iter().all(|(seq, _)| *seq <= 2)));
        drop(sp);
        // Then two of them: the third's queue is placed again on the two (merged with the
        // segments of the same number there), and its directory goes.
        let two = stores(2, 2);
        Spools::open(dir.path(), &two, 1 << 20, 0).expect("open");
        let got = queued(dir.path());
        assert_eq!(got.len(), 2, "{got:?}");
        for (_, lines) in &got {
            let mut distinct: Vec<&(u64, String)> = lines.iter().collect();
            distinct.sort();
            distinct.dedup();
            // Every point is in both (replication 2 over 2 stores), some lines twice.
            assert_eq!(distinct.len(), names.len() + 2, "{lines:?}");
        }
        assert!(!dir
            .path()
            .join(queue_name("http://127.0.0.1:8083"))
            .exists());
        // And back to one store: everything in the root again.
        Spools::open(dir.path(), &single(), 1 << 20, 0).expect("open");
        let got = queued(dir.path());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "");
    }

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
