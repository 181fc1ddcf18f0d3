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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::agg::{Agg, Point};
use crate::checkpoint::{Checkpoint, StatsdState};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::naming::Naming;
use crate::naming::StatsdNaming;
use crate::rules::{Matcher, RuleSet};
use crate::server::serve_metrics;
use crate::ship;
use crate::spool::Spools;
use crate::stats::{RuleMatches, Stats};
use crate::statsd::journal::{self, Position};
use crate::statsd::listen::Listeners;
use crate::statsd::{self as statsd_mod, Ingest};
use crate::tail::{FileState, Tailer};
use tally_common::unix_now;

/// What a running agent tells its caller once it has started.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The address `/metrics` is served on, if `metrics_listen` is set.
    pub metrics: Option<SocketAddr>,
    /// The files followed after the first scan.
    pub files: usize,
    /// The statsd addresses listened on, if `[statsd]` is enabled.
    pub statsd_udp: Option<SocketAddr>,
    pub statsd_tcp: Option<SocketAddr>,
}

/// The statsd side of the reading loop: the journal, its own aggregator, the listeners.
struct Statsd {
    agg: Agg,
    reader: journal::Reader,
    ingest: Ingest,
    listeners: Option<Listeners>,
    bytes: Arc<AtomicU64>,
    /// The journal was read to its end by the last read.
    caught_up: bool,
    /// When idle series are next forgotten, in Unix seconds.
    next_forget: i64,
}

struct Pipeline {
    s: Settings,
    stats: Arc<Stats>,
    tailer: Tailer,
    agg: Agg,
    rules: RuleSet,
    matcher: Matcher,
    spool: Spools,
    spool_dir: PathBuf,
    statsd: Statsd,
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
    /// The statsd journal's position.
    journal: Position,
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
        // statsd has a clock of its own: the journal's markers, and the clock once the journal
        // is read to its end (a log's backlog does not complete statsd buckets, nor the other
        // way round).
        let st = &mut self.statsd;
        let newest = st.agg.newest();
        let to = if st.caught_up {
            newest.max(now - 1)
        } else {
            newest
        };
        if to != i64::MIN {
            st.agg.advance(to);
        }
        st.agg.emit(&mut points);
        if now >= st.next_forget {
            st.next_forget = now + st.agg.interval();
            st.agg
                .forget_idle(to.saturating_sub(self.s.zero_fill_for + 2 * st.agg.interval()));
        }
        self.publish_counts();
        if now >= self.next_self {
            let t = now - now.rem_euclid(self.agg.interval());
            self.next_self = t + self.agg.interval();
            self.self_points(t, &mut points);
        }
        let files = self.tailer.checkpoint();
        let lines = self.matcher.counts.lines;
        if !points.is_empty() {
            let written = self
                .spool
                .write(&points)
                .map_err(|e| Error::io("writing the spool", &self.spool_dir, e))?;
            self.stats
                .points_spooled
                .fetch_add(written, Ordering::Relaxed);
            self.stats.notify();
        }
        let journal = self.statsd.reader.position();
        let unchanged = self
            .written
            .as_ref()
            .is_some_and(|w| w.files == files && w.lines == lines && w.journal == journal);
        if points.is_empty() && unchanged {
            return Ok(());
        }
        let cp = Checkpoint {
            seq: self.spool.last_seq(),
            files: files.clone(),
            agg: self.agg.snapshot(),
            statsd: StatsdState {
                journal,
                agg: self.statsd.agg.snapshot(),
            },
        };
        cp.save(&self.s.data_dir)?;
        // What the checkpoint passed is counted for good: its segments can go.
        self.statsd.reader.delete_counted(journal);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.written = Some(Written {
            files,
            lines,
            journal,
        });
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
        st.tag_overflow.store(
            a.overflow + self.statsd.agg.counts().overflow,
            Ordering::Relaxed,
        );
        st.lines_too_long.store(t.too_long, Ordering::Relaxed);
        st.bytes_read.store(t.bytes, Ordering::Relaxed);
        st.truncations.store(t.truncations, Ordering::Relaxed);
        st.files_lost.store(t.lost, Ordering::Relaxed);
        st.files_open
            .store(self.tailer.open_files() as u64, Ordering::Relaxed);
        st.backlog_bytes
            .store(self.tailer.backlog(), Ordering::Relaxed);
        st.points_dropped
            .store(self.spool.dropped_points(), Ordering::Relaxed);
        let sd = &self.statsd;
        st.statsd_metrics
            .store(sd.ingest.metrics, Ordering::Relaxed);
        st.statsd_bad.store(sd.ingest.bad, Ordering::Relaxed);
        st.statsd_journal_bytes
            .store(sd.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        st.statsd_series
            .store(sd.agg.sizes().series as u64, Ordering::Relaxed);
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
            let label = s.labels.first().map(|(k, v)| (*k, v.as_str()));
            out.push(Point {
                name: naming.agent_series(s.name, label),
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
    let spool = Spools::open(
        &spool_dir,
        &s.output,
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
    let statsd_naming = s
        .statsd
        .etsy_naming
        .clone()
        .unwrap_or_else(|| StatsdNaming::tags(&s.host));
    // Lateness of one interval: statsd metrics are never late (the journal's clock only goes
    // forward), but the quiet interval just completed must still be opened to be zero-filled.
    let mut statsd_agg = Agg::new(
        s.interval,
        s.interval,
        s.zero_fill_for,
        statsd_mod::shapes(&s.statsd),
        agg.naming().clone(),
    )
    .for_statsd(s.statsd.max_series, statsd_naming);
    if let Some(cp) = &checkpoint {
        agg.restore(&cp.agg);
        statsd_agg.restore(&cp.statsd.agg);
        tailer.restore(&cp.files);
        tracing::info!(files = cp.files.len(), "resuming from the checkpoint");
    }
    tailer.scan();
    // The journal is read whether or not statsd is on now: what was accepted is counted.
    let journal_dir = s.data_dir.join("statsd");
    let (journal_bytes, newest_segment) =
        journal::open(&journal_dir).map_err(|e| Error::io("opening", &journal_dir, e))?;
    let journal_pos = checkpoint
        .as_ref()
        .map(|c| c.statsd.journal)
        .unwrap_or_default();
    let bytes = Arc::new(AtomicU64::new(journal_bytes));
    let reader = journal::Reader::new(&journal_dir, journal_pos, bytes.clone());
    let listeners = if s.statsd.enabled && !s.once {
        let writer = journal::Writer::new(
            &journal_dir,
            newest_segment.max(journal_pos.seq),
            bytes.clone(),
            s.statsd.journal_max_bytes,
            stats.clone(),
        );
        Some(crate::statsd::listen::start(
            &s.statsd,
            Arc::new(Mutex::new(writer)),
            stats.clone(),
        )?)
    } else {
        None
    };
    let (statsd_udp, statsd_tcp) = listeners.as_ref().map_or((None, None), |l| (l.udp, l.tcp));
    let metrics = match s.metrics_listen {
        Some(addr) => Some(serve_metrics(addr, stats.clone(), s.metrics_token.clone())?),
        None => None,
    };
    // One shipper per queue: with several stores, one store down holds back only its share.
    let mut shippers = Vec::new();
    for queue in ship::queues(&s.output, spool.dirs(), &stats) {
        let (stats, timeout, backoff) = (stats.clone(), s.ship_timeout, s.max_backoff);
        shippers.push(
            std::thread::Builder::new()
                .name("agent-ship".into())
                .spawn(move || ship::run(queue, stats, timeout, backoff))
                .map_err(|source| Error::Thread {
                    name: "agent-ship",
                    source,
                })?,
        );
    }
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
        spool_dir,
        statsd: Statsd {
            agg: statsd_agg,
            reader,
            ingest: Ingest::default(),
            listeners,
            bytes,
            caught_up: false,
            next_forget: 0,
        },
        written: None,
        next_self: 0,
    };
    // The first checkpoint at once: from now on this data directory has started, and a restart
    // reads files it does not know from their beginning, not their end (`start_at`).
    agent.commit(false)?;
    on_ready(Ready {
        metrics,
        files,
        statsd_udp,
        statsd_tcp,
    });
    let result = main_loop(&mut agent);
    stats.stopping.store(true, Ordering::Relaxed);
    stats.notify();
    if let Some(l) = agent.statsd.listeners.take() {
        l.join();
    }
    for shipper in shippers {
        let _ = shipper.join();
    }
    result
}

impl Statsd {
    /// Counts what the journal holds, a slice at a time; whether there is more.
    fn read(&mut self, now: i64) -> bool {
        let (agg, ingest) = (&mut self.agg, &mut self.ingest);
        let more = match self.reader.read(&mut |t, line| {
            crate::statsd::parse::lines(line, |l| ingest.line(agg, l, t, now));
        }) {
            Ok(more) => more,
            Err(e) => {
                tracing::warn!(error = %e, "reading the statsd journal failed");
                false
            }
        };
        self.caught_up = !more;
        more
    }
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
        let statsd_before = a.statsd.ingest.metrics + a.statsd.ingest.bad;
        let statsd_more = a.statsd.read(now);
        let read_any = matcher.counts.lines != before
            || a.statsd.ingest.metrics + a.statsd.ingest.bad != statsd_before;
        if stopping || (a.s.once && !more && !statsd_more) {
            if stopping {
                // Whatever the listeners accepted until now is counted in this last commit.
                if let Some(l) = a.statsd.listeners.take() {
                    l.join();
                }
                while a.statsd.read(unix_now()) {}
            }
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
        if !more && !statsd_more && !read_any {
            a.stats.sleep_unless_stopping(a.s.poll_interval);
        }
    }
}
