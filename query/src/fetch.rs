//! Reading series for a request, the part every query language shares: a glob over names or a
//! tag selection goes to the [`Source`], each match is read over the request's range, wide
//! matches are read in parallel, and every series and point read counts against the request's
//! [`Limits`]. Results are sorted by name, as graphite-web returns them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{QueryError, Result};
use crate::limits::Limits;
use crate::series::TimeSeries;
use crate::source::Source;

/// From this many matches on, a fetch is spread over threads.
const PARALLEL_FROM: usize = 64;

/// The request a query is evaluated for: where series come from, the range, the limits, and
/// what has been read so far.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) source: Arc<dyn Source>,
    pub(crate) from: i64,
    pub(crate) until: i64,
    pub(crate) limits: Limits,
    /// Series and points read so far, shared by every evaluation of one request (and by the
    /// copies [`Ctx::with_range`] makes for look-back).
    read: Arc<Read>,
    /// When the request started (for `Limits::max_time`).
    started: Instant,
}

/// What a request has read so far.
#[derive(Debug, Default)]
struct Read {
    series: AtomicUsize,
    points: AtomicUsize,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("from", &self.from)
            .field("until", &self.until)
            .finish()
    }
}

impl Ctx {
    pub fn new(source: Arc<dyn Source>, from: i64, until: i64) -> Self {
        Ctx {
            source,
            from,
            until,
            limits: Limits::default(),
            read: Arc::default(),
            started: Instant::now(),
        }
    }

    /// An error once the request has run longer than its limit.
    pub fn check_time(&self) -> Result<()> {
        if self.started.elapsed() > self.limits.max_time {
            return Err(QueryError::Limit(format!(
                "the request took longer than {} s; shorten the range or narrow the targets",
                self.limits.max_time.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// The same request over another range (for look-back and time shifts).
    pub fn with_range(&self, from: i64, until: i64) -> Ctx {
        Ctx {
            from,
            until,
            ..self.clone()
        }
    }

    /// Counts series and points read against the limits.
    fn account(&self, series: usize, points: usize) -> Result<()> {
        self.check_time()?;
        let s = self.read.series.fetch_add(series, Ordering::Relaxed) + series;
        let p = self.read.points.fetch_add(points, Ordering::Relaxed) + points;
        if s > self.limits.max_series {
            return Err(QueryError::Limit(format!(
                "the request reads more than {} series; narrow the targets",
                self.limits.max_series
            )));
        }
        if p > self.limits.max_points {
            return Err(QueryError::Limit(format!(
                "the request reads more than {} points; shorten the range or narrow the targets",
                self.limits.max_points
            )));
        }
        Ok(())
    }
}

/// Every series a path expression matches, sorted by name: a glob over names, or a tagged name,
/// which is exact in any tag order. Matching nothing is no error.
pub(crate) fn fetch_path(ctx: &Ctx, pattern: &str) -> Result<Vec<TimeSeries>> {
    let names = if tally_proto::series_name::is_tagged(pattern) {
        match tally_proto::series_name::canonicalize(pattern) {
            Ok(c) => vec![c.into_owned()],
            Err(_) => Vec::new(),
        }
    } else {
        ctx.source.expand(pattern)?
    };
    read_all(ctx, names, pattern)
}

/// Every tagged series matching all the tag expressions (`name=requests`, `status=~5..`), sorted
/// by name; each carries `path_expression` as the expression it came from.
pub(crate) fn fetch_tagged(
    ctx: &Ctx,
    exprs: &[&str],
    path_expression: &str,
) -> Result<Vec<TimeSeries>> {
    let names = ctx.source.select_by_tags(exprs)?;
    read_all(ctx, names, path_expression)
}

fn read_all(ctx: &Ctx, names: Vec<String>, path_expression: &str) -> Result<Vec<TimeSeries>> {
    ctx.account(names.len(), 0)?;
    let read = |name: &String| -> Result<Option<TimeSeries>> {
        let Some(f) = ctx.source.fetch(name, ctx.from, ctx.until)? else {
            return Ok(None);
        };
        ctx.account(0, f.values.len())?;
        let mut s = TimeSeries::new(name.clone(), f.start, f.step, f.values);
        s.path_expression = path_expression.to_owned();
        Ok(Some(s))
    };
    // Wide globs fan out over the cores; each read is independent.
    let out: Vec<Result<Option<TimeSeries>>> = if names.len() >= PARALLEL_FROM {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        let chunk = names.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().map(read).collect::<Vec<_>>()))
                .collect();
            // A reader that panicked passes its panic on, as a sequential read would, rather
            // than leaving its series silently out of the answer.
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    } else {
        names.iter().map(read).collect()
    };
    let mut series = Vec::with_capacity(out.len());
    for r in out {
        if let Some(s) = r? {
            series.push(s);
        }
    }
    series.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;

    fn wide() -> Ctx {
        let mut src = MemSource::default();
        // Enough matches to take the parallel path, added out of order.
        for i in (0..100).rev() {
            src.add(&format!("w.s{i:03}"), 60, 60, vec![Some(i as f64); 10]);
        }
        src.add("req;dc=x;host=a", 60, 60, vec![Some(1.0); 10]);
        Ctx::new(Arc::new(src), 0, 600)
    }

    #[test]
    fn a_wide_glob_reads_every_match_sorted() {
        let ctx = wide();
        let got = fetch_path(&ctx, "w.*").expect("fetches");
        assert_eq!(got.len(), 100);
        assert!(got.windows(2).all(|w| w[0].name < w[1].name));
        assert!(got.iter().all(|s| s.path_expression == "w.*"));
        assert_eq!(got[7].raw()[0], Some(7.0));
        // A tagged name is exact in any tag order; matching nothing is no error.
        assert_eq!(
            fetch_path(&ctx, "req;host=a;dc=x").expect("fetches").len(),
            1
        );
        assert!(fetch_path(&ctx, "nothing.*").expect("fetches").is_empty());
        let tagged = fetch_tagged(&ctx, &["name=req"], "seriesByTag('name=req')").expect("fetches");
        assert_eq!(tagged[0].name, "req;dc=x;host=a");
        assert_eq!(tagged[0].path_expression, "seriesByTag('name=req')");
    }

    /// Reads like its inner source, but one series' read panics.
    struct PanicsOn(MemSource, &'static str);

    impl Source for PanicsOn {
        fn find(&self, p: &str) -> Result<Vec<tally_store::FindMatch>> {
            self.0.find(p)
        }
        fn expand(&self, p: &str) -> Result<Vec<String>> {
            self.0.expand(p)
        }
        fn select_by_tags(&self, e: &[&str]) -> Result<Vec<String>> {
            self.0.select_by_tags(e)
        }
        fn fetch(&self, name: &str, from: i64, until: i64) -> Result<Option<crate::Fetched>> {
            assert_ne!(name, self.1, "a reader fails");
            self.0.fetch(name, from, until)
        }
        fn tag_names(&self) -> Vec<String> {
            self.0.tag_names()
        }
        fn tag_values(&self, t: &str) -> Vec<tally_store::TagValue> {
            self.0.tag_values(t)
        }
        fn register(&self, n: &str) -> Result<String> {
            self.0.register(n)
        }
        fn delete(&self, n: &str) -> Result<bool> {
            self.0.delete(n)
        }
        fn add_event(&self, w: i64, what: &str, d: &str, t: Vec<String>) -> Result<u64> {
            self.0.add_event(w, what, d, t)
        }
        fn events(&self, f: i64, u: i64) -> Result<Vec<tally_store::Event>> {
            self.0.events(f, u)
        }
        fn load_state(&self, k: &str) -> Result<Option<Vec<u8>>> {
            self.0.load_state(k)
        }
        fn save_state(&self, k: &str, v: &[u8]) -> Result<()> {
            self.0.save_state(k, v)
        }
    }

    #[test]
    fn a_reader_that_panics_is_not_a_missing_series_issue_11() {
        let mut src = MemSource::default();
        for i in 0..100 {
            src.add(&format!("w.s{i:03}"), 60, 60, vec![Some(1.0); 10]);
        }
        let ctx = Ctx::new(Arc::new(PanicsOn(src, "w.s042")), 0, 600);
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fetch_path(&ctx, "w.*").map(|v| v.len())
        }));
        assert!(read.is_err(), "answered {read:?} instead of failing");
    }

    #[test]
    fn every_fetch_of_a_request_counts_against_its_limits() {
        let mut ctx = wide();
        ctx.limits.max_series = 150;
        fetch_path(&ctx, "w.*").expect("100 series fit");
        // A look-back copy shares the count.
        let e = fetch_path(&ctx.with_range(-600, 600), "w.*").expect_err("200 do not");
        assert!(e.to_string().contains("more than 150 series"), "{e}");
        let mut ctx = wide();
        ctx.limits.max_points = 500;
        let e = fetch_path(&ctx, "w.*").expect_err("1000 points do not fit");
        assert!(e.to_string().contains("more than 500 points"), "{e}");
    }
}
