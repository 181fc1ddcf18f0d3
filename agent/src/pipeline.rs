//! The pipeline: the reading loop and the commit, from files to spool segments and checkpoint.
//!
//! One thread reads every file a slice at a time, runs the rules over each line and adds to the
//! aggregator. Every `commit_interval` it *commits*: the buckets the watermark completed become
//! points (with the agent's own counters once per interval), written as one spool segment, and
//! then the checkpoint records the file offsets, the open buckets and the segment's number. Both
//! writes are atomic and in that order, which is what makes a crash between them harmless (see
//! `checkpoint`); a commit that would write the same checkpoint again writes nothing. While a
//! backlog is read the log's own time completes buckets; once every file is read to its end,
//! the clock does.
//!
//! [`run`] locks the data directory (one agent per directory), resumes from the checkpoint,
//! starts the shipper and the optional `/metrics` server and commits at once, so that a restart
//! knows this directory has started. On stop (or, with `once`, when every file is read) it
//! commits once more and waits for the shipper's last attempt.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agg::{Agg, Point};
use crate::checkpoint::Checkpoint;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::naming::Naming;
use crate::rules::{Matcher, RuleSet};
use crate::server::serve_metrics;
use crate::ship;
use crate::spool::Spool;
use crate::stats::{RuleMatches, Stats};
use crate::tail::{FileState, Tailer};
use tally_common::unix_now;

/// What a running agent tells its caller once it has started.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The address `/metrics` is served on, if `metrics_listen` is set.
    pub metrics: Option<SocketAddr>,
    /// The files followed after the first scan.
    pub files: usize,
}

struct Pipeline {
    s: Settings,
    stats: Arc<Stats>,
    tailer: Tailer,
    agg: Agg,
    rules: RuleSet,
    matcher: Matcher,
    spool: Spool,
    /// What the last checkpoint written recorded, to skip writing an identical one.
    written: Option<Written>,
    /// When the agent's own counters are next due, in Unix seconds.
    next_self: i64,
}

/// The part of a written checkpoint that tells whether the next one would differ.
struct Written {
    files: Vec<FileState>,
    /// Lines read when it was written.
    lines: u64,
}

impl Pipeline {
    /// Completes what the watermark passed, spools its points, then writes the checkpoint.
    /// `caught_up`: every file is read to its end, so the clock may complete buckets too.
    fn commit(&mut self, caught_up: bool) -> Result<()> {
        let now = unix_now();
        // The clock completes buckets only when nothing is left to read; otherwise the log's own
        // time does (catch-up after downtime lands every line in its bucket).
        let newest = self.agg.newest();
        let to = if caught_up {
            newest.max(now - 1)
        } else {
            newest
        };
        if to != i64::MIN {
            self.agg.advance(to);
        }
        let mut points: Vec<Point> = Vec::new();
        self.agg.emit(&mut points);
        self.publish_counts();
        if now >= self.next_self {
            let t = now - now.rem_euclid(self.agg.interval());
            self.next_self = t + self.agg.interval();
            self.self_points(t, &mut points);
        }
        let files = self.tailer.checkpoint();
        let lines = self.matcher.counts.lines;
        if !points.is_empty() {
            let mut body = Vec::with_capacity(points.len() * 64);
            for p in &points {
                tally_proto::encode(
                    &p.name,
                    p.value,
                    tally_proto::Timestamp::At(p.time),
                    &mut body,
                );
            }
            self.spool
                .write(&body, points.len() as u64)
                .map_err(|e| Error::io("writing the spool", self.spool.dir(), e))?;
            self.stats
                .points_spooled
                .fetch_add(points.len() as u64, Ordering::Relaxed);
            self.stats.notify();
        }
        let unchanged = self
            .written
            .as_ref()
            .is_some_and(|w| w.files == files && w.lines == lines);
        if points.is_empty() && unchanged {
            return Ok(());
        }
        let cp = Checkpoint {
            seq: self.spool.next_seq() - 1,
            files: files.clone(),
            agg: self.agg.snapshot(),
        };
        cp.save(&self.s.data_dir)?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.written = Some(Written { files, lines });
        Ok(())
    }

    fn publish_counts(&self) {
        let st = &self.stats;
        let m = &self.matcher.counts;
        let t = &self.tailer.counts;
        let a = self.agg.counts();
        st.lines_read.store(m.lines, Ordering::Relaxed);
        st.lines_unmatched.store(m.unmatched, Ordering::Relaxed);
        st.lines_bad.store(m.bad, Ordering::Relaxed);
        st.lines_late.store(a.late, Ordering::Relaxed);
        st.lines_future.store(a.future, Ordering::Relaxed);
        st.tag_overflow.store(a.overflow, Ordering::Relaxed);
        st.lines_too_long.store(t.too_long, Ordering::Relaxed);
        st.bytes_read.store(t.bytes, Ordering::Relaxed);
        st.truncations.store(t.truncations, Ordering::Relaxed);
        st.files_lost.store(t.lost, Ordering::Relaxed);
        st.files_open
            .store(self.tailer.open_files() as u64, Ordering::Relaxed);
        st.backlog_bytes
            .store(self.tailer.backlog(), Ordering::Relaxed);
        st.points_dropped
            .store(self.spool.dropped_points, Ordering::Relaxed);
        let sizes = self.agg.sizes();
        st.open_buckets
            .store(sizes.open_buckets as u64, Ordering::Relaxed);
        st.series.store(sizes.series as u64, Ordering::Relaxed);
        if let Ok(mut mt) = st.matched.lock() {
            *mt = self
                .rules
                .shapes()
                .iter()
                .zip(&m.matched)
                .map(|(s, &n)| RuleMatches {
                    rule: s.name.clone(),
                    lines: n,
                })
                .collect();
        }
    }

    /// The agent's own counters as `tally.agent.<name>;host=...` points.
    fn self_points(&self, t: i64, out: &mut Vec<Point>) {
        let naming = self.agg.naming();
        for s in self.stats.all_samples() {
            let rule = s.labels.first().map(|(_, rule)| rule.as_str());
            out.push(Point {
                name: naming.agent_series(s.name, rule),
                value: s.value as f64,
                time: t,
            });
        }
    }
}

/// Runs the agent until `stats.stopping` is set (with `once`: until every file is read), then
/// commits and returns.
pub fn run(s: Settings, stats: Arc<Stats>, on_ready: impl FnOnce(Ready)) -> Result<()> {
    std::fs::create_dir_all(&s.data_dir).map_err(|e| Error::io("creating", &s.data_dir, e))?;
    let lock_path = s.data_dir.join("lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| Error::io("creating", &lock_path, e))?;
    if lock.try_lock().is_err() {
        return Err(Error::Locked {
            dir: s.data_dir.clone(),
        });
    }
    let checkpoint = Checkpoint::load(&s.data_dir)?;
    let spool_dir: PathBuf = s.data_dir.join("spool");
    let spool = Spool::open(
        &spool_dir,
        s.spool_max_bytes,
        checkpoint.as_ref().map_or(0, |c| c.seq),
    )
    .map_err(|e| Error::io("opening the spool", &spool_dir, e))?;
    let naming = Naming {
        host: s.host.clone(),
        path_prefix: s.path_naming.then(|| s.path_prefix.clone()),
    };
    let mut agg = Agg::new(
        s.interval,
        s.lateness,
        s.zero_fill_for,
        s.rules.shapes().to_vec(),
        naming,
    );
    let mut tailer = Tailer::new(s.inputs.clone());
    if let Some(cp) = &checkpoint {
        agg.restore(&cp.agg);
        tailer.restore(&cp.files);
        tracing::info!(files = cp.files.len(), "resuming from the checkpoint");
    }
    tailer.scan();
    let metrics = match s.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, stats.clone(), s.metrics_token.clone())?),
        None => None,
    };
    let shipper = {
        let (output, dir, stats, timeout, backoff) = (
            s.output.clone(),
            spool_dir.clone(),
            stats.clone(),
            s.ship_timeout,
            s.max_backoff,
        );
        std::thread::Builder::new()
            .name("agent-ship".into())
            .spawn(move || ship::run(output, dir, stats, timeout, backoff))
            .map_err(|source| Error::Thread {
                name: "agent-ship",
                source,
            })?
    };
    let files = tailer.open_files();
    let rules = s.rules.clone();
    let matcher = rules.matcher();
    let mut agent = Pipeline {
        s,
        stats: stats.clone(),
        tailer,
        agg,
        rules,
        matcher,
        spool,
        written: None,
        next_self: 0,
    };
    // The first checkpoint at once: from now on this data directory has started, and a restart
    // reads files it does not know from their beginning, not their end (`start_at`).
    agent.commit(false)?;
    on_ready(Ready { metrics, files });
    let result = main_loop(&mut agent);
    stats.stopping.store(true, Ordering::Relaxed);
    stats.notify();
    let _ = shipper.join();
    result
}

fn main_loop(a: &mut Pipeline) -> Result<()> {
    let mut last_scan = Instant::now();
    let mut last_commit = Instant::now();
    let mut progress_at = Instant::now();
    let mut progress_bytes = 0u64;
    loop {
        let stopping = a.stats.stopping.load(Ordering::Relaxed);
        if last_scan.elapsed() >= a.s.scan_interval {
            a.tailer.scan();
            last_scan = Instant::now();
        }
        let now = unix_now();
        let (rules, matcher, agg) = (&a.rules, &mut a.matcher, &mut a.agg);
        let before = matcher.counts.lines;
        let more = a.tailer.read(&mut |line| {
            rules.process(matcher, agg, line, now);
        });
        let read_any = matcher.counts.lines != before;
        if stopping || (a.s.once && !more) {
            a.commit(!more)?;
            a.publish_counts();
            return Ok(());
        }
        if last_commit.elapsed() >= a.s.commit_interval {
            a.commit(!more)?;
            last_commit = Instant::now();
            if more && progress_at.elapsed() >= Duration::from_secs(10) {
                // Progress and an ETA while a backlog is read (after downtime, on a first start
                // with start_at = "beginning").
                let secs = progress_at.elapsed().as_secs_f64();
                let bytes = a.tailer.counts.bytes;
                let rate = (bytes - progress_bytes) as f64 / secs.max(0.001);
                let backlog = a.tailer.backlog();
                progress_at = Instant::now();
                progress_bytes = bytes;
                tracing::info!(
                    backlog_mb = backlog / 1_000_000,
                    mb_per_s = (rate / 1e6).round() as u64,
                    eta_secs = if rate > 0.0 {
                        (backlog as f64 / rate).round() as u64
                    } else {
                        0
                    },
                    lines = a.matcher.counts.lines,
                    "catching up"
                );
            }
        }
        if !more && !read_any {
            a.stats.sleep_unless_stopping(a.s.poll_interval);
        }
    }
}
