//! Reading series for a request, the part every query language shares: a glob over names or a
//! tag selection goes to the [`Source`], each match is read over the request's range, wide
//! matches are read in parallel, and every series and point read counts against the request's
//! [`Limits`]. Results are sorted by name, as graphite-web returns them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{QueryError, Result};
use crate::limits::{Budget, Limits};
use crate::series::TimeSeries;
use crate::source::{Fetched, Source};

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

/// What a request has read so far, and what it holds of the process's [`Budget`]: given back
/// when the request's last `Ctx` goes.
#[derive(Debug)]
struct Read {
    series: AtomicUsize,
    points: AtomicUsize,
    budget: Arc<Budget>,
    /// Points taken from `budget`.
    held: AtomicUsize,
    /// graphite's `requestContext['totalStack']`: the running totals of `stacked()` by stack
    /// name, shared by every target of the request.
    stacks: std::sync::Mutex<std::collections::HashMap<String, Vec<f64>>>,
}

impl Read {
    fn new(budget: Arc<Budget>) -> Read {
        Read {
            series: AtomicUsize::new(0),
            points: AtomicUsize::new(0),
            budget,
            held: AtomicUsize::new(0),
            stacks: Default::default(),
        }
    }

    /// Takes `points` from the budget for this request, or says the server is busy.
    fn hold(&self, points: usize) -> Result<()> {
        if points == 0 {
            return Ok(());
        }
        match self.budget.take(points) {
            Ok(()) => {
                self.held.fetch_add(points, Ordering::Relaxed);
                Ok(())
            }
            Err(held) => Err(QueryError::Busy(format!(
                "the server is busy: requests in flight hold {held} points and {points} more would pass its bound of {} (query.max_points_in_flight); retry shortly",
                self.budget.limit()
            ))),
        }
    }
}

impl Drop for Read {
    fn drop(&mut self) {
        self.budget.give_back(*self.held.get_mut());
    }
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
            read: Arc::new(Read::new(Budget::process())),
            started: Instant::now(),
        }
    }

    /// The same request bounded by `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Ctx {
        self.limits = limits;
        self
    }

    /// The same request, holding its points against `budget` instead of the process's. Call
    /// before anything is read.
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Ctx {
        self.read = Arc::new(Read::new(budget));
        self
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

    /// Runs `f` on the request's running total of the stack `name` (`stacked()`).
    pub(crate) fn with_stack<T>(&self, name: &str, f: impl FnOnce(&mut Vec<f64>) -> T) -> T {
        let mut stacks = self
            .read
            .stacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(stacks.entry(name.to_owned()).or_default())
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
                "the request reads more than {} series (max_series_per_request); narrow the targets",
                self.limits.max_series
            )));
        }
        if p > self.limits.max_points {
            return Err(QueryError::Limit(format!(
                "the request reads more than {} points (max_points_per_request); shorten the range or narrow the targets",
                self.limits.max_points
            )));
        }
        self.read.hold(points)
    }

    /// Counts points a function makes from nothing (`time`, `sinFunction`, `summarize` on a
    /// finer grid) against the same limit as points read, before they are made: many such
    /// calls in one request add up.
    pub(crate) fn account_generated(&self, func: &str, points: usize) -> Result<()> {
        self.check_time()?;
        let p = self
            .read
            .points
            .fetch_add(points, Ordering::Relaxed)
            .saturating_add(points);
        if p > self.limits.max_points {
            return Err(QueryError::Limit(format!(
                "{func}: {points} points would take the request past {} points (max_points_per_request); shorten the range or raise the step",
                self.limits.max_points
            )));
        }
        self.read.hold(points)
    }
}

/// Every series a path expression matches, sorted by name: a glob over names, or a tagged name,
/// which is exact in any tag order. Matching nothing is no error.
pub(crate) fn fetch_path(ctx: &Ctx, pattern: &str) -> Result<Vec<TimeSeries>> {
    if !tally_proto::series_name::is_tagged(pattern) {
        if let Some(read) = ctx.source.read_glob(pattern, ctx.from, ctx.until) {
            return take_read(ctx, read?, pattern);
        }
    }
    read_all(ctx, path_names(ctx, pattern)?, pattern)
}

/// The names [`fetch_path`] reads for `pattern` when the source reads them one by one (a
/// store): the glob's matches, or the tagged name in its canonical tag order.
pub(crate) fn path_names(ctx: &Ctx, pattern: &str) -> Result<Vec<String>> {
    if tally_proto::series_name::is_tagged(pattern) {
        return Ok(match tally_proto::series_name::canonicalize(pattern) {
            Ok(c) => vec![c.into_owned()],
            Err(_) => Vec::new(),
        });
    }
    ctx.source.expand(pattern)
}

/// Series a source read in one go ([`Source::read_glob`], [`Source::read_tagged`]), counted
/// against the limits as they arrive, sorted by name.
fn take_read(
    ctx: &Ctx,
    read: Vec<crate::source::Named>,
    path_expression: &str,
) -> Result<Vec<TimeSeries>> {
    let points = read
        .iter()
        .fold(0usize, |a, (_, f)| a.saturating_add(f.values.len()));
    ctx.account(read.len(), points)?;
    let mut series: Vec<TimeSeries> = read
        .into_iter()
        .map(|(name, f)| {
            let mut s = TimeSeries::new(name, f.start, f.step, f.values);
            s.path_expression = path_expression.to_owned();
            s
        })
        .collect();
    series.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(series)
}

/// Every tagged series matching all the tag expressions (`name=requests`, `status=~5..`), sorted
/// by name; each carries `path_expression` as the expression it came from.
pub(crate) fn fetch_tagged(
    ctx: &Ctx,
    exprs: &[&str],
    path_expression: &str,
) -> Result<Vec<TimeSeries>> {
    if let Some(read) = ctx.source.read_tagged(exprs, ctx.from, ctx.until) {
        return take_read(ctx, read?, path_expression);
    }
    let names = ctx.source.select_by_tags(exprs)?;
    read_all(ctx, names, path_expression)
}

/// The series `names`, read as [`fetch_path`] reads a glob's matches (sized, counted, in
/// parallel, sorted by name), for languages that find names their own way (Atlas).
pub(crate) fn read_names(
    ctx: &Ctx,
    names: Vec<String>,
    path_expression: &str,
) -> Result<Vec<TimeSeries>> {
    read_all(ctx, names, path_expression)
}

fn read_all(ctx: &Ctx, names: Vec<String>, path_expression: &str) -> Result<Vec<TimeSeries>> {
    let parts = read_each(ctx, &names, Vec::new, |out, name, f| {
        let mut s = TimeSeries::new(name.to_owned(), f.start, f.step, f.values);
        s.path_expression = path_expression.to_owned();
        out.push(s);
    })?;
    let mut series: Vec<TimeSeries> = parts.into_iter().flatten().collect();
    series.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(series)
}

/// Reads the series `names` and hands each one read to `each` as soon as it is read, into an
/// accumulator per reading thread (made by `make`); the accumulators come back in the order of
/// the names they took, each having seen its names in order. A series that is not stored is
/// skipped. Everything the source can size is counted before anything is read, so a request
/// over its limits is refused before it allocates the points; wide reads fan out over the
/// cores. [`read_all`] collects the series; a store's `format=tally` answer to a query node
/// encodes each one and drops its values (`cluster::render_tally_names`), so the store never
/// holds the whole read.
pub(crate) fn read_each<W: Send>(
    ctx: &Ctx,
    names: &[String],
    make: impl Fn() -> W + Sync,
    each: impl Fn(&mut W, &str, Fetched) + Sync,
) -> Result<Vec<W>> {
    let sizes: Vec<Option<usize>> = names
        .iter()
        .map(|n| ctx.source.points(n, ctx.from, ctx.until))
        .collect();
    let known = sizes
        .iter()
        .flatten()
        .fold(0usize, |a, n| a.saturating_add(*n));
    ctx.account(names.len(), known)?;
    let read = |out: &mut W, name: &String, size: &Option<usize>| -> Result<()> {
        let Some(f) = ctx.source.fetch(name, ctx.from, ctx.until)? else {
            return Ok(());
        };
        // Counted here only what was not counted before (a size not known, or a source that
        // returned more than it said).
        ctx.account(0, f.values.len().saturating_sub(size.unwrap_or(0)))?;
        each(out, name, f);
        Ok(())
    };
    let run = |part: &[String], sizes: &[Option<usize>]| -> Result<W> {
        let mut out = make();
        for (name, size) in part.iter().zip(sizes) {
            read(&mut out, name, size)?;
        }
        Ok(out)
    };
    if names.len() < PARALLEL_FROM {
        return Ok(vec![run(names, &sizes)?]);
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunk = names.len().div_ceil(threads);
    // A store that does not answer a reader marks the request, whichever thread reads.
    let partial = crate::partial::current();
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .zip(sizes.chunks(chunk))
            .map(|(part, sizes)| {
                let partial = partial.clone();
                let run = &run;
                scope.spawn(move || crate::partial::enter(partial, || run(part, sizes)))
            })
            .collect();
        // A reader that panicked passes its panic on, as a sequential read would, rather
        // than leaving its series silently out of the answer.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;
    use std::sync::atomic::AtomicUsize;

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

    /// Reads like its inner source, and calls its hook with the name of each series read (to
    /// count reads, or make one panic).
    struct Hooked<F>(MemSource, F);

    impl<F: Fn(&str) + Send + Sync> Source for Hooked<F> {
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
            (self.1)(name);
            self.0.fetch(name, from, until)
        }
        fn points(&self, name: &str, from: i64, until: i64) -> Option<usize> {
            self.0.points(name, from, until)
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
        let panics = |name: &str| assert_ne!(name, "w.s042", "a reader fails");
        let ctx = Ctx::new(Arc::new(Hooked(src, panics)), 0, 600);
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fetch_path(&ctx, "w.*").map(|v| v.len())
        }));
        assert!(read.is_err(), "answered {read:?} instead of failing");
    }

    #[test]
    fn issue_17_a_read_over_the_point_limit_is_refused_before_anything_is_read() {
        let mut src = MemSource::default();
        for i in 0..100 {
            src.add(&format!("w.s{i:03}"), 60, 60, vec![Some(1.0); 10]);
        }
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        let src = Arc::new(Hooked(src, move |_: &str| {
            counted.fetch_add(1, Ordering::Relaxed);
        }));
        let mut ctx = Ctx::new(src.clone(), 0, 600);
        ctx.limits.max_points = 500;
        let e = fetch_path(&ctx, "w.*").expect_err("1000 points do not fit");
        assert_eq!(
            e.to_string(),
            "the request reads more than 500 points (max_points_per_request); shorten the range or narrow the targets"
        );
        assert_eq!(reads.load(Ordering::Relaxed), 0, "nothing was read");
        // Under the limit everything is read, and counted once.
        ctx.limits.max_points = 1000;
        let mut ctx = Ctx::new(src.clone(), 0, 600);
        ctx.limits.max_points = 1000;
        assert_eq!(fetch_path(&ctx, "w.*").expect("fits").len(), 100);
        assert_eq!(ctx.read.points.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn the_store_sizes_a_read_as_it_answers_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            tally_store::Store::open(tally_store::StoreOptions::new(dir.path())).expect("open");
        let now = tally_common::unix_now();
        let mut batch = tally_store::PointBatch::default();
        batch.push("sized.series", now - 100, 1.0);
        store
            .write(&batch, tally_store::Durability::Buffered)
            .expect("write");
        for (from, until) in [(now - 3600, now), (now - 95, now - 5), (now, now - 600)] {
            let read = Source::fetch(&store, "sized.series", from, until)
                .expect("read")
                .expect("known");
            assert_eq!(
                Source::points(&store, "sized.series", from, until),
                Some(read.values.len()),
                "({from}, {until}]"
            );
        }
        assert_eq!(Source::points(&store, "no.such", now - 60, now), None);
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

    /// Issue 17: one request is bounded by `max_points_per_request`, and every request in
    /// flight together by the budget: a second request that would pass it is refused as the
    /// server being busy, and runs once the first has finished and given its points back.
    #[test]
    fn requests_in_flight_share_one_budget() {
        let mut src = MemSource::default();
        for i in 0..10 {
            src.add(&format!("w.s{i}"), 60, 60, vec![Some(1.0); 10]);
        }
        let src: Arc<dyn Source> = Arc::new(src);
        let budget = Budget::new(150);
        let first = Ctx::new(src.clone(), 0, 600).with_budget(budget.clone());
        assert_eq!(fetch_path(&first, "w.*").expect("fits").len(), 10);
        assert_eq!(budget.held(), 100);
        // A look-back copy of the same request holds against the same share.
        let again = first.with_range(0, 300);
        assert_eq!(fetch_path(&again, "w.s1").expect("fits").len(), 1);
        assert_eq!(budget.held(), 105);
        let second = Ctx::new(src.clone(), 0, 600).with_budget(budget.clone());
        let e = fetch_path(&second, "w.*").expect_err("the budget is held");
        assert!(matches!(e, QueryError::Busy(_)), "{e:?}");
        assert!(!e.is_client_error());
        assert_eq!(
            e.to_string(),
            "the server is busy: requests in flight hold 105 points and 100 more would pass its bound of 150 (query.max_points_in_flight); retry shortly"
        );
        drop((first, again));
        assert_eq!(budget.held(), 0, "given back when the request ends");
        let third = Ctx::new(src, 0, 600).with_budget(budget.clone());
        assert_eq!(fetch_path(&third, "w.*").expect("fits now").len(), 10);
        // Points a function makes count too.
        assert!(matches!(
            third.account_generated("time", 51),
            Err(QueryError::Busy(_))
        ));
        drop((second, third));
        assert_eq!(budget.held(), 0);
    }
}
