//! The statsd journal: what makes an accepted packet count exactly once.
//!
//! A statsd packet has no offset to come back to, as a log line has; so the listeners give it
//! one. Every datagram and every TCP line is appended to the journal, a directory of segments
//! `<seq>.journal` under the data directory, before it counts as accepted. The reading loop
//! reads the journal as it reads a log file, and the checkpoint records the journal's position
//! (segment, offset) together with the open buckets, in the same atomic commit as the file
//! offsets (`pipeline`). After `kill -9` the agent continues from that position: what was
//! counted and committed is not read again, what was written but not committed is.
//!
//! Time: statsd metrics carry none; they count in the interval they arrived in. The writer
//! puts a marker line, `\0<unix seconds>`, before the packets of each new second (and at the
//! start of each segment), and the reader dates every line by the marker before it, so a line
//! read again after a crash lands in the same bucket as the first time, and the re-emitted total
//! equals the first (the same reason re-read log lines are harmless). The marker's NUL never
//! occurs in a packet line: the writer removes NULs from packets.
//!
//! A write is one `write(2)` of whole lines to a file the agent never rewrites; `kill -9`
//! cannot undo it (the page cache belongs to the kernel), a power cut can lose what the agent had
//! not committed yet. A write cut short (the process killed inside it, a full disk) leaves a
//! partial line at a segment's end; the writer never appends after one (it starts a new segment
//! after any failed write, and on every start) and the reader drops a partial last line once a
//! newer segment exists. Segments the checkpoint has passed are deleted. The journal is bounded
//! (`journal_max_size`): past it, datagrams are dropped and counted, TCP senders wait.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::stats::Stats;

/// The first byte of a time marker line.
const MARKER: u8 = 0;

/// A segment is closed for writing past this size.
const SEGMENT_BYTES: u64 = 8 << 20;

/// Bytes read from the journal before the log files get a turn.
const READ_SLICE: usize = 4 << 20;
const CHUNK: usize = 1 << 20;

/// Where the reader is: what the checkpoint records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    /// The segment.
    pub(crate) seq: u64,
    /// The end of the last line counted in it.
    pub(crate) offset: u64,
    /// The time of the last marker before `offset`.
    pub(crate) time: i64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.journal"))
}

/// The segments in `dir`, oldest first, with their sizes.
fn segments(dir: &Path) -> Vec<(u64, u64)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let seq = name.to_str()?.strip_suffix(".journal")?.parse().ok()?;
            Some((seq, e.metadata().ok()?.len()))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Opens the journal directory (creating it): the bytes it holds, the newest segment's number.
pub(crate) fn open(dir: &Path) -> std::io::Result<(u64, u64)> {
    fs::create_dir_all(dir)?;
    let segs = segments(dir);
    Ok((
        segs.iter().map(|s| s.1).sum(),
        segs.last().map_or(0, |s| s.0),
    ))
}

/// The writing side, shared by the UDP and the TCP listeners.
#[derive(Debug)]
pub(crate) struct Writer {
    dir: PathBuf,
    seq: u64,
    file: Option<File>,
    size: u64,
    /// Bytes not yet written, and the datagrams and lines in them.
    buf: Vec<u8>,
    buffered: u64,
    /// The second of the last marker put into `buf` or written, and the one in force where
    /// `buf` starts.
    marker: i64,
    buf_time: i64,
    /// Bytes in the journal's segments (the reader subtracts what it deletes).
    bytes: Arc<AtomicU64>,
    max_bytes: u64,
    stats: Arc<Stats>,
    full_logged: Option<std::time::Instant>,
}

impl Writer {
    /// A writer whose first segment numbers after `after` (the newest segment or the
    /// checkpoint's, whichever is larger): it never appends to a segment a previous run wrote.
    pub(crate) fn new(
        dir: &Path,
        after: u64,
        bytes: Arc<AtomicU64>,
        max_bytes: u64,
        stats: Arc<Stats>,
    ) -> Writer {
        Writer {
            dir: dir.to_path_buf(),
            seq: after,
            file: None,
            size: 0,
            buf: Vec::with_capacity(1 << 16),
            buffered: 0,
            marker: i64::MIN,
            buf_time: i64::MIN,
            bytes,
            max_bytes,
            stats,
            full_logged: None,
        }
    }

    /// Whether the journal has room for more.
    pub(crate) fn has_room(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) + self.buf.len() as u64 <= self.max_bytes
    }

    /// Bytes waiting for [`Writer::flush`].
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Adds one datagram (or `packets` TCP lines) to the buffer, dated `now`; `false` if the
    /// journal is full (then it is dropped and counted).
    pub(crate) fn append(&mut self, data: &[u8], packets: u64, now: i64) -> bool {
        let after = self.bytes.load(Ordering::Relaxed) + (self.buf.len() + data.len()) as u64;
        if after > self.max_bytes {
            self.stats
                .statsd_dropped
                .fetch_add(packets, Ordering::Relaxed);
            if self
                .full_logged
                .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10))
            {
                self.full_logged = Some(std::time::Instant::now());
                tracing::error!(
                    max_bytes = self.max_bytes,
                    "the statsd journal is full (the agent cannot keep up, or the disk is full): dropping datagrams, holding TCP senders"
                );
            }
            return false;
        }
        if self.buf.is_empty() {
            self.buf_time = self.marker;
        }
        if now != self.marker {
            self.marker = now;
            push_marker(&mut self.buf, now);
        }
        if memchr::memchr(MARKER, data).is_some() {
            self.buf
                .extend(data.iter().copied().filter(|&b| b != MARKER));
        } else {
            self.buf.extend_from_slice(data);
        }
        if self.buf.last() != Some(&b'\n') {
            self.buf.push(b'\n');
        }
        self.buffered += packets;
        true
    }

    /// Writes the buffer: from then on its datagrams and lines are accepted. A failed write
    /// drops them (counted, logged) and starts a new segment.
    pub(crate) fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let packets = std::mem::take(&mut self.buffered);
        match self.write_buf() {
            Ok(()) => {
                self.stats
                    .statsd_packets
                    .fetch_add(packets, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats
                    .statsd_dropped
                    .fetch_add(packets, Ordering::Relaxed);
                tracing::error!(dir = %self.dir.display(), error = %e, packets, "cannot write the statsd journal: datagrams and lines dropped");
                // Whatever part of the write landed is a partial line: never append after it.
                self.file = None;
            }
        }
        self.buf.clear();
    }

    fn write_buf(&mut self) -> std::io::Result<()> {
        if self.file.is_some() && self.size + self.buf.len() as u64 > SEGMENT_BYTES {
            self.file = None;
        }
        if self.file.is_none() {
            self.seq += 1;
            let path = segment_path(&self.dir, self.seq);
            let f = File::options().create_new(true).append(true).open(&path)?;
            self.file = Some(f);
            self.size = 0;
            // A segment starts with the time of its first line.
            if self.buf.first() != Some(&MARKER) {
                let mut head = Vec::with_capacity(24);
                push_marker(&mut head, self.buf_time);
                self.buf.splice(0..0, head);
            }
        }
        let f = self.file.as_mut().expect("opened");
        f.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn push_marker(buf: &mut Vec<u8>, t: i64) {
    buf.push(MARKER);
    buf.extend_from_slice(t.to_string().as_bytes());
    buf.push(b'\n');
}

/// The reading side, in the pipeline's thread.
#[derive(Debug)]
pub(crate) struct Reader {
    dir: PathBuf,
    pos: Position,
    file: Option<File>,
    /// Bytes read past `pos.offset`: the start of a line not yet whole.
    buf: Vec<u8>,
    bytes: Arc<AtomicU64>,
    /// Partial last lines dropped (a write cut short).
    pub(crate) torn: u64,
}

impl Reader {
    pub(crate) fn new(dir: &Path, pos: Position, bytes: Arc<AtomicU64>) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            pos,
            file: None,
            buf: Vec::new(),
            bytes,
            torn: 0,
        }
    }

    /// What the checkpoint records.
    pub(crate) fn position(&self) -> Position {
        self.pos
    }

    /// Hands every whole line to `line` with its time, up to a slice; returns whether there is
    /// more to read now.
    pub(crate) fn read(&mut self, line: &mut dyn FnMut(i64, &[u8])) -> std::io::Result<bool> {
        let mut budget = READ_SLICE;
        loop {
            if self.file.is_none() {
                let segs = segments(&self.dir);
                let Some(&(seq, _)) = segs.iter().find(|s| s.0 >= self.pos.seq) else {
                    return Ok(false);
                };
                if seq != self.pos.seq {
                    self.pos.seq = seq;
                    self.pos.offset = 0;
                }
                self.buf.clear();
                self.file = Some(File::open(segment_path(&self.dir, seq))?);
            }
            if budget == 0 {
                return Ok(true);
            }
            let n = self.read_some(budget.min(CHUNK))?;
            if n > 0 {
                budget = budget.saturating_sub(n);
                self.consume(line);
                continue;
            }
            // At the end of the segment. Once a newer one exists, this one is complete (the
            // writer creates it only after its last write here): read once more, then move on.
            let newer = segments(&self.dir).iter().any(|s| s.0 > self.pos.seq);
            if !newer {
                return Ok(false);
            }
            if self.read_some(CHUNK)? > 0 {
                self.consume(line);
                continue;
            }
            if !self.buf.is_empty() {
                self.torn += 1;
                tracing::warn!(
                    segment = self.pos.seq,
                    bytes = self.buf.len(),
                    "the statsd journal ends in a partial line (a write cut short): dropped"
                );
                self.buf.clear();
            }
            self.file = None;
            self.pos.seq += 1;
            self.pos.offset = 0;
        }
    }

    fn read_some(&mut self, want: usize) -> std::io::Result<usize> {
        let f = self.file.as_ref().expect("open");
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        let n = f.read_at(&mut self.buf[start..], self.pos.offset + start as u64)?;
        self.buf.truncate(start + n);
        Ok(n)
    }

    fn consume(&mut self, line: &mut dyn FnMut(i64, &[u8])) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &self.buf) {
            let l = &self.buf[start..nl];
            match l.split_first() {
                Some((&MARKER, t)) => {
                    if let Some(t) = std::str::from_utf8(t).ok().and_then(|t| t.parse().ok()) {
                        self.pos.time = t;
                    }
                }
                _ => line(self.pos.time, l),
            }
            start = nl + 1;
        }
        self.pos.offset += start as u64;
        self.buf.drain(..start);
    }

    /// Deletes the segments before the position a checkpoint just recorded.
    pub(crate) fn delete_counted(&self, pos: Position) {
        for (seq, size) in segments(&self.dir) {
            if seq >= pos.seq {
                break;
            }
            if fs::remove_file(segment_path(&self.dir, seq)).is_ok() {
                let _ = self
                    .bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                        Some(b.saturating_sub(size))
                    });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut Reader) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        while r
            .read(&mut |t, l| out.push((t, String::from_utf8_lossy(l).into_owned())))
            .expect("read")
        {}
        out
    }

    #[test]
    fn lines_come_back_dated_once_across_segments_restarts_and_torn_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(Stats::default());
        let bytes = Arc::new(AtomicU64::new(0));
        let mut w = Writer::new(dir.path(), 0, bytes.clone(), 1 << 20, stats.clone());
        assert!(w.append(b"a:1|c\nb:2|c", 1, 100));
        assert!(w.append(b"c:3\0|c\n", 1, 101));
        w.flush();
        assert_eq!(stats.statsd_packets.load(Ordering::Relaxed), 2);
        let mut r = Reader::new(dir.path(), Position::default(), bytes.clone());
        assert_eq!(
            read_all(&mut r),
            [
                (100, "a:1|c".to_string()),
                (100, "b:2|c".into()),
                (101, "c:3|c".into())
            ]
        );
        let pos = r.position();
        // A partial write at the end of the segment, as a kill inside write(2) leaves it; then
        // a new run of the writer starts a segment of its own.
        w.file
            .as_mut()
            .expect("open")
            .write_all(b"d:4|")
            .expect("torn write");
        assert_eq!(read_all(&mut r), []);
        let (_, newest) = open(dir.path()).expect("open");
        let mut w2 = Writer::new(dir.path(), newest, bytes.clone(), 1 << 20, stats.clone());
        assert!(w2.append(b"e:5|c\n", 1, 102));
        w2.flush();
        // A restart from the checkpointed position reads what came after it, once.
        let mut again = Reader::new(dir.path(), pos, bytes.clone());
        assert_eq!(read_all(&mut again), [(102, "e:5|c".to_string())]);
        assert_eq!(again.torn, 1);
        assert_eq!(read_all(&mut r), [(102, "e:5|c".to_string())]);
        // Deleting what a checkpoint passed frees its bytes.
        let before = bytes.load(Ordering::Relaxed);
        again.delete_counted(again.position());
        assert_eq!(segments(dir.path()).len(), 1);
        assert!(bytes.load(Ordering::Relaxed) < before);
    }

    #[test]
    fn a_full_journal_drops_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = Arc::new(Stats::default());
        let bytes = Arc::new(AtomicU64::new(0));
        let mut w = Writer::new(dir.path(), 0, bytes, 64, stats.clone());
        assert!(w.append(&[b'x'; 40], 1, 1));
        w.flush();
        assert!(w.append(&[b'y'; 10], 1, 1));
        assert!(!w.append(&[b'z'; 40], 1, 1));
        w.flush();
        assert_eq!(stats.statsd_packets.load(Ordering::Relaxed), 2);
        assert_eq!(stats.statsd_dropped.load(Ordering::Relaxed), 1);
    }
}
