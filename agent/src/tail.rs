//! Tailing: files by glob, followed through rotation, truncation and restarts.
//!
//! A followed file is a *stream*: its identity is the device and inode it was found on together
//! with a fingerprint (a hash of its first bytes, up to 1 KiB). The offset is the end of the last
//! whole line handed on. What happens to a stream:
//!
//! - **Rename** (logrotate's default): the inode moves with the name. The open descriptor keeps
//!   reading the renamed file to its end; the new file at the old path is a new stream, read from
//!   its beginning. A file that left the globs is closed once it stopped growing for
//!   `rotate_wait`.
//! - **copytruncate**: the inode stays and its content starts again. A fingerprint mismatch or a
//!   size below the offset says so. The lines between the offset and the copy's end are read
//!   from the copy (found next to the file by fingerprint), then the file from its beginning.
//! - **Truncation** without a copy: read again from the beginning.
//! - **Deletion**: the open descriptor is read to its end, then closed.
//! - **Inode reuse**: same inode, different fingerprint: a new stream.
//! - **Restart**: checkpointed streams are found again by inode and fingerprint under the glob,
//!   or, if they were rotated while the agent was down, next to their old path. Files the
//!   checkpoint does not know appeared while the agent was down and are read from their
//!   beginning; only on a first start (no checkpoint) are files read from their end (unless
//!   `start_at = "beginning"`). Several rotations while the agent is down are only all found
//!   if the glob matches the rotated names too (`access.log*`): a generation that was never
//!   followed and left the glob cannot be known.
//! - A last line without its newline waits for it (or for `partial_line_timeout`); an
//!   over-long line is cut at `max_line_bytes` and counted.

use std::fs::File;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::Input;

/// The fingerprint covers at most this many leading bytes.
pub(crate) const FP_MAX: u64 = 1024;

/// Bytes read from one file before the others get a turn.
const READ_SLICE: usize = 4 << 20;
const CHUNK: usize = 1 << 20;

/// A stream as the checkpoint records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileState {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub fp_len: u64,
    pub fp: u64,
    /// The end of the last line handed on.
    pub offset: u64,
    /// In the middle of an over-long line whose head was already handed on.
    #[serde(default)]
    pub skipping: bool,
    #[serde(default)]
    pub gz: bool,
}

/// Tailing counters for the agent's own metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TailCounts {
    pub bytes: u64,
    pub too_long: u64,
    pub partial_timeouts: u64,
    pub truncations: u64,
    pub copies_followed: u64,
    pub opened: u64,
    pub closed: u64,
    pub lost: u64,
    pub read_errors: u64,
}

struct Stream {
    st: FileState,
    input: usize,
    file: Option<File>,
    gz: Option<flate2::read::MultiGzDecoder<File>>,
    gz_done: bool,
    /// Bytes read past `st.offset`: the start of a line without its newline yet.
    buf: Vec<u8>,
    in_glob: bool,
    last_size: u64,
    last_growth: Instant,
}

impl Stream {
    /// A stream of a file just opened (not from a checkpoint), fingerprinted at once.
    fn opened(
        path: PathBuf,
        dev: u64,
        ino: u64,
        offset: u64,
        gz: bool,
        input: usize,
        file: File,
    ) -> Stream {
        let mut s = Stream {
            st: FileState {
                path,
                dev,
                ino,
                fp_len: 0,
                fp: 0,
                offset,
                skipping: false,
                gz,
            },
            input,
            file: Some(file),
            gz: None,
            gz_done: false,
            buf: Vec::new(),
            in_glob: true,
            last_size: 0,
            last_growth: Instant::now(),
        };
        update_fp(&mut s);
        s
    }

    fn read_pos(&self) -> u64 {
        self.st.offset + self.buf.len() as u64
    }
}

/// A file found by a scan.
struct Candidate {
    path: PathBuf,
    input: usize,
    dev: u64,
    ino: u64,
    size: u64,
    gz: bool,
}

/// Follows every file of every input.
pub struct Tailer {
    inputs: Vec<Input>,
    streams: Vec<Stream>,
    scanned_once: bool,
    /// Started with no checkpoint: only then does `start_at = "end"` apply.
    fresh: bool,
    pub counts: TailCounts,
}

fn is_gz(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(bytes);
    h.write_usize(bytes.len());
    h.finish()
}

/// The first `len` bytes of a file (decompressed for gz); fewer if it is shorter.
fn head(path_or_file: &File, gz: bool, len: u64) -> std::io::Result<Vec<u8>> {
    let mut out = vec![0u8; len as usize];
    let n = if gz {
        let f = path_or_file.try_clone()?;
        let mut d = flate2::read::MultiGzDecoder::new(ReadAt { f, pos: 0 });
        let mut n = 0;
        while n < out.len() {
            match d.read(&mut out[n..])? {
                0 => break,
                k => n += k,
            }
        }
        n
    } else {
        let mut n = 0;
        while n < out.len() {
            match path_or_file.read_at(&mut out[n..], n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        n
    };
    out.truncate(n);
    Ok(out)
}

/// Reads a file from an offset without moving a shared cursor.
struct ReadAt {
    f: File,
    pos: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.f.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Whether a fingerprint is specific enough to recognise a copy by content alone: a whole
/// first line, or 64 bytes.
fn strong(fp_head: &[u8]) -> bool {
    fp_head.len() >= 64 || memchr::memchr(b'\n', fp_head).is_some()
}

impl Tailer {
    pub fn new(inputs: Vec<Input>) -> Tailer {
        Tailer {
            inputs,
            streams: Vec::new(),
            scanned_once: false,
            fresh: true,
            counts: TailCounts::default(),
        }
    }

    /// Restores checkpointed streams; they are found again by the first scan.
    pub fn restore(&mut self, files: &[FileState]) {
        self.fresh = false;
        for st in files {
            let input = self.input_of(&st.path);
            self.streams.push(Stream {
                st: st.clone(),
                input,
                file: None,
                gz: None,
                gz_done: false,
                buf: Vec::new(),
                in_glob: false,
                last_size: 0,
                last_growth: Instant::now(),
            });
        }
    }

    fn input_of(&self, path: &Path) -> usize {
        self.inputs
            .iter()
            .position(|i| {
                i.paths
                    .iter()
                    .any(|p| glob::Pattern::new(p).is_ok_and(|g| g.matches_path(path)))
            })
            .unwrap_or(0)
    }

    /// The checkpointable state of every stream.
    pub fn checkpoint(&self) -> Vec<FileState> {
        self.streams.iter().map(|s| s.st.clone()).collect()
    }

    pub fn open_files(&self) -> usize {
        self.streams.iter().filter(|s| s.file.is_some()).count()
    }

    /// Bytes not yet read of every open file (for progress and catch-up).
    pub(crate) fn backlog(&self) -> u64 {
        self.streams
            .iter()
            .filter(|s| s.file.is_some() && !s.st.gz)
            .map(|s| s.last_size.saturating_sub(s.read_pos()))
            .sum()
    }

    fn candidates(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            for pattern in &input.paths {
                let Ok(paths) = glob::glob(pattern) else {
                    continue;
                };
                for path in paths.flatten() {
                    let Ok(md) = std::fs::metadata(&path) else {
                        continue;
                    };
                    if !md.is_file() || out.iter().any(|c| c.dev == md.dev() && c.ino == md.ino()) {
                        continue;
                    }
                    let gz = is_gz(&path);
                    if gz && !input.read_gz {
                        continue;
                    }
                    out.push(Candidate {
                        path,
                        input: i,
                        dev: md.dev(),
                        ino: md.ino(),
                        size: md.len(),
                        gz,
                    });
                }
            }
        }
        out
    }

    /// Whether `c` carries the stream's fingerprint (its first `fp_len` bytes hash alike).
    fn same_content(st: &FileState, file: &File, gz: bool) -> bool {
        if st.fp_len == 0 {
            return false;
        }
        head(file, gz, st.fp_len).is_ok_and(|h| h.len() as u64 == st.fp_len && hash(&h) == st.fp)
    }

    /// Expands the globs: finds new files, re-finds checkpointed ones, notes what left.
    pub fn scan(&mut self) {
        let initial = !self.scanned_once;
        self.scanned_once = true;
        let cands = self.candidates();
        for s in &mut self.streams {
            s.in_glob = false;
        }
        for c in cands {
            // Already followed under this inode: a rename within the globs, or nothing new.
            if let Some(s) = self
                .streams
                .iter_mut()
                .find(|s| s.file.is_some() && s.st.dev == c.dev && s.st.ino == c.ino)
            {
                s.in_glob = true;
                s.st.path = c.path;
                continue;
            }
            let Ok(file) = File::open(&c.path) else {
                continue;
            };
            // A checkpointed stream (restart) or a copy of one whose own file is gone.
            let found = self.streams.iter().position(|s| {
                s.file.is_none()
                    && s.st.dev == c.dev
                    && s.st.ino == c.ino
                    && Self::same_content(&s.st, &file, c.gz)
            });
            let found = found.or_else(|| {
                self.streams.iter().position(|s| {
                    s.file.is_none()
                        && s.st.fp_len > 0
                        && c.size >= s.st.offset
                        && Self::same_content(&s.st, &file, c.gz)
                        && {
                            let h = head(&file, c.gz, s.st.fp_len).unwrap_or_default();
                            strong(&h)
                        }
                })
            });
            if let Some(i) = found {
                let s = &mut self.streams[i];
                tracing::info!(path = %c.path.display(), offset = s.st.offset, "resuming");
                s.st.path = c.path;
                s.st.dev = c.dev;
                s.st.ino = c.ino;
                s.st.gz = c.gz;
                s.in_glob = true;
                s.file = Some(file);
                s.last_size = 0;
                self.counts.opened += 1;
                continue;
            }
            // A copy of a stream still followed at its original (copytruncate in progress):
            // the original is read; the copy is only used if the original gets truncated.
            let is_copy = self.streams.iter().any(|s| {
                s.file.is_some() && s.st.fp_len > 0 && Self::same_content(&s.st, &file, c.gz) && {
                    let h = head(&file, c.gz, s.st.fp_len).unwrap_or_default();
                    strong(&h)
                }
            });
            if is_copy {
                continue;
            }
            // Only a first start skips history. After a restart, a file never seen appeared
            // while the agent was down (a rotation, a new vhost): its lines are new.
            let offset = if initial && self.fresh && self.inputs[c.input].start_at_end && !c.gz {
                line_aligned_end(&file, c.size)
            } else {
                0
            };
            tracing::info!(path = %c.path.display(), offset, "following");
            let input = c.input;
            self.streams.push(Stream::opened(
                c.path, c.dev, c.ino, offset, c.gz, input, file,
            ));
            self.counts.opened += 1;
        }
        // Checkpointed streams not under the globs any more: rotated while we were down?
        let mut i = 0;
        while i < self.streams.len() {
            if self.streams[i].file.is_none() && !self.find_elsewhere(i) {
                let s = self.streams.remove(i);
                if initial && s.st.fp_len > 0 {
                    tracing::warn!(path = %s.st.path.display(), offset = s.st.offset, "a checkpointed file is gone; lines written to it after the checkpoint are lost");
                    self.counts.lost += 1;
                }
                continue;
            }
            i += 1;
        }
    }

    /// Looks next to a stream's last path for its file (renamed) or a copy of it.
    fn find_elsewhere(&mut self, i: usize) -> bool {
        let st = self.streams[i].st.clone();
        let read_gz = self
            .inputs
            .get(self.streams[i].input)
            .is_some_and(|inp| inp.read_gz);
        let dir = st
            .path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return false;
        };
        let mut by_inode = None;
        let mut by_content = None;
        for e in entries.flatten() {
            let path = e.path();
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            let gz = is_gz(&path);
            if !md.is_file() || (gz && !read_gz) || md.len() < st.offset {
                continue;
            }
            if self
                .streams
                .iter()
                .any(|s| s.file.is_some() && s.st.dev == md.dev() && s.st.ino == md.ino())
            {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            if !Self::same_content(&st, &file, gz) {
                continue;
            }
            if md.dev() == st.dev && md.ino() == st.ino {
                by_inode = Some((path, md, file, gz));
                break;
            }
            let h = head(&file, gz, st.fp_len).unwrap_or_default();
            if by_content.is_none() && strong(&h) {
                by_content = Some((path, md, file, gz));
            }
        }
        let Some((path, md, file, gz)) = by_inode.or(by_content) else {
            return false;
        };
        tracing::info!(was = %st.path.display(), now = %path.display(), offset = st.offset, "found a rotated file; reading it to its end");
        let s = &mut self.streams[i];
        s.st.path = path;
        s.st.dev = md.dev();
        s.st.ino = md.ino();
        s.st.gz = gz;
        s.file = Some(file);
        s.gz = None;
        s.buf.clear();
        s.in_glob = false;
        s.last_size = 0;
        s.last_growth = Instant::now();
        self.counts.opened += 1;
        self.counts.copies_followed += 1;
        true
    }

    /// Reads what every open file has, handing each whole line to `line`; closes files that
    /// left the globs and stopped growing. Returns whether some file has more to read.
    pub fn read(&mut self, line: &mut dyn FnMut(&[u8])) -> bool {
        let mut more = false;
        let mut i = 0;
        while i < self.streams.len() {
            if self.streams[i].file.is_none() {
                i += 1;
                continue;
            }
            match self.read_one(i, line) {
                Ok(m) => more |= m,
                Err(e) => {
                    self.counts.read_errors += 1;
                    tracing::warn!(path = %self.streams[i].st.path.display(), error = %e, "read failed");
                }
            }
            let s = &self.streams[i];
            let input = &self.inputs[s.input.min(self.inputs.len() - 1)];
            let idle = s.last_growth.elapsed() >= input.rotate_wait;
            let at_end = if s.st.gz {
                s.gz_done
            } else {
                s.file
                    .as_ref()
                    .and_then(|f| f.metadata().ok())
                    .is_none_or(|m| m.len() <= s.read_pos())
            };
            if !s.in_glob && idle && at_end {
                tracing::info!(path = %s.st.path.display(), offset = s.st.offset, "closing: left the globs and read to its end");
                self.streams.remove(i);
                self.counts.closed += 1;
                continue;
            }
            i += 1;
        }
        more
    }

    /// Handles a file whose content started again (copytruncate or truncation).
    fn truncated(&mut self, i: usize) {
        self.counts.truncations += 1;
        let s = &mut self.streams[i];
        tracing::info!(path = %s.st.path.display(), offset = s.st.offset, "file was truncated");
        let old = s.st.clone();
        s.file = None;
        s.buf.clear();
        // The copy, if there is one, holds the lines between our offset and the truncation.
        if self.find_elsewhere(i) {
            // The truncated file itself is a new stream, found by the next scan; it must be
            // read from its beginning even on the initial scan.
            self.push_new(old.path.clone(), old.dev, old.ino, self.streams[i].input);
            return;
        }
        let s = &mut self.streams[i];
        match File::open(&old.path) {
            Ok(f)
                if f.metadata()
                    .is_ok_and(|m| m.dev() == old.dev && m.ino() == old.ino) =>
            {
                s.file = Some(f);
                s.st = FileState {
                    offset: 0,
                    fp_len: 0,
                    fp: 0,
                    skipping: false,
                    ..old
                };
                s.last_size = 0;
            }
            _ => {
                // Gone as well: the next scan finds whatever is at the path now.
                self.streams.remove(i);
            }
        }
    }

    fn push_new(&mut self, path: PathBuf, dev: u64, ino: u64, input: usize) {
        let Ok(file) = File::open(&path) else { return };
        if !file
            .metadata()
            .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
        {
            return;
        }
        self.streams
            .push(Stream::opened(path, dev, ino, 0, false, input, file));
    }

    fn read_one(&mut self, i: usize, line: &mut dyn FnMut(&[u8])) -> std::io::Result<bool> {
        if self.streams[i].st.gz {
            return self.read_gz(i, line);
        }
        let (size, changed) = {
            let s = &self.streams[i];
            let f = s.file.as_ref().expect("open");
            let size = f.metadata()?.len();
            (size, size != s.last_size)
        };
        {
            let s = &self.streams[i];
            let f = s.file.as_ref().expect("open");
            // Truncated, or truncated and written again past our offset.
            if size < s.read_pos()
                || (changed && s.st.fp_len > 0 && !Self::same_content(&s.st, f, false))
            {
                self.truncated(i);
                return Ok(true);
            }
        }
        // Disjoint fields: the input is borrowed while the stream is changed.
        let input = &self.inputs[self.streams[i].input.min(self.inputs.len() - 1)];
        let s = &mut self.streams[i];
        if changed {
            s.last_size = size;
            s.last_growth = Instant::now();
        }
        let mut budget = READ_SLICE;
        let mut more = false;
        while s.read_pos() < size {
            if budget == 0 {
                more = true;
                break;
            }
            let want = ((size - s.read_pos()) as usize).min(CHUNK).min(budget);
            let start = s.buf.len();
            s.buf.resize(start + want, 0);
            let f = s.file.as_ref().expect("open");
            let n = f.read_at(&mut s.buf[start..], s.st.offset + start as u64)?;
            s.buf.truncate(start + n);
            if n == 0 {
                break;
            }
            budget = budget.saturating_sub(n);
            self.counts.bytes += n as u64;
            consume(s, input, line, &mut self.counts);
        }
        consume_partial(s, input, line, &mut self.counts);
        if s.st.fp_len < FP_MAX && s.st.offset > s.st.fp_len {
            update_fp(s);
        }
        Ok(more)
    }

    fn read_gz(&mut self, i: usize, line: &mut dyn FnMut(&[u8])) -> std::io::Result<bool> {
        // Disjoint fields: the input is borrowed while the stream is changed.
        let input = &self.inputs[self.streams[i].input.min(self.inputs.len() - 1)];
        let s = &mut self.streams[i];
        if s.gz_done {
            return Ok(false);
        }
        if s.gz.is_none() {
            let f = s.file.as_ref().expect("open").try_clone()?;
            let mut d = flate2::read::MultiGzDecoder::new(f);
            // Skip what the checkpoint says was read.
            std::io::copy(
                &mut (&mut d).take(s.st.offset + s.buf.len() as u64),
                &mut std::io::sink(),
            )?;
            s.gz = Some(d);
        }
        let mut budget = READ_SLICE;
        let mut chunk = vec![0u8; CHUNK];
        while budget > 0 {
            let n = s.gz.as_mut().expect("set").read(&mut chunk)?;
            if n == 0 {
                s.gz_done = true;
                s.last_size = s.read_pos();
                // A rotated archive does not grow: its last line needs no newline.
                if !s.buf.is_empty() {
                    let b = std::mem::take(&mut s.buf);
                    emit_line(&b, line);
                    s.st.offset += b.len() as u64;
                }
                return Ok(false);
            }
            s.buf.extend_from_slice(&chunk[..n]);
            budget = budget.saturating_sub(n);
            self.counts.bytes += n as u64;
            consume(s, input, line, &mut self.counts);
        }
        Ok(true)
    }
}

/// Hands on every whole line in the buffer and advances the offset past it.
fn consume(s: &mut Stream, input: &Input, line: &mut dyn FnMut(&[u8]), counts: &mut TailCounts) {
    let mut start = 0;
    let buf = std::mem::take(&mut s.buf);
    for nl in memchr::memchr_iter(b'\n', &buf) {
        let l = &buf[start..nl];
        if s.st.skipping {
            s.st.skipping = false;
        } else if l.len() > input.max_line_bytes {
            emit_line(&l[..input.max_line_bytes], line);
            counts.too_long += 1;
        } else {
            emit_line(l, line);
        }
        start = nl + 1;
    }
    s.st.offset += start as u64;
    let mut rest = buf;
    rest.drain(..start);
    // An over-long line: hand on its head now, skip the rest up to its newline.
    if rest.len() > input.max_line_bytes {
        if !s.st.skipping {
            emit_line(&rest[..input.max_line_bytes], line);
            counts.too_long += 1;
            s.st.skipping = true;
        }
        s.st.offset += rest.len() as u64;
        rest.clear();
    }
    s.buf = rest;
}

/// A partial last line that has waited long enough is a line.
fn consume_partial(
    s: &mut Stream,
    input: &Input,
    line: &mut dyn FnMut(&[u8]),
    counts: &mut TailCounts,
) {
    let Some(timeout) = input.partial_line_timeout else {
        return;
    };
    if s.buf.is_empty() || s.last_growth.elapsed() < timeout {
        return;
    }
    let b = std::mem::take(&mut s.buf);
    if !s.st.skipping {
        emit_line(&b, line);
        counts.partial_timeouts += 1;
    }
    s.st.offset += b.len() as u64;
    s.st.skipping = false;
}

/// Hands on one line without its `\r`; empty lines are not lines.
fn emit_line(l: &[u8], line: &mut dyn FnMut(&[u8])) {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    if !l.is_empty() {
        line(l);
    }
}

/// Fingerprints the first `min(offset-or-size, FP_MAX)` bytes.
fn update_fp(s: &mut Stream) {
    let Some(f) = s.file.as_ref() else { return };
    let want = if s.st.gz {
        FP_MAX
    } else {
        f.metadata().map_or(0, |m| m.len()).min(FP_MAX)
    };
    if want <= s.st.fp_len {
        return;
    }
    if let Ok(h) = head(f, s.st.gz, want) {
        if h.len() as u64 > s.st.fp_len {
            s.st.fp_len = h.len() as u64;
            s.st.fp = hash(&h);
        }
    }
}

/// The offset just after the last newline before `size`: where "start at the end" starts
/// without handing on half a line.
fn line_aligned_end(f: &File, size: u64) -> u64 {
    let from = size.saturating_sub(64 * 1024);
    let mut buf = vec![0u8; (size - from) as usize];
    match f.read_at(&mut buf, from) {
        Ok(n) => match memchr::memrchr(b'\n', &buf[..n]) {
            Some(p) => from + p as u64 + 1,
            None => size,
        },
        Err(_) => size,
    }
}
