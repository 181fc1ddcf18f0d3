//! What the front knows about one connection, without asking hyper: whether a request is being
//! served on it, and since when it has been idle, receiving a request's headers, or unable to
//! write to its client. The accept loop reads this to pick an idle connection to close when the
//! cap is reached; the connection's own task reads it to close it when a phase lasts too long.
//!
//! The phases, as Go's `net/http` server has them: *idle* (waiting for a request:
//! `http_idle_timeout`), *headers* (from the first byte of a request to its last header line:
//! `http_header_timeout`), *busy* (a request is being served: its body has
//! `http_body_timeout`, the handler its own limits). A client that takes no response bytes for
//! `http_idle_timeout` is closed in any phase.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Milliseconds on one clock shared by a front's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock(Instant::now())
    }

    pub(crate) fn now(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }

    /// A time of this clock as a tokio instant.
    pub(crate) fn instant(&self, ms: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.0 + Duration::from_millis(ms))
    }
}

/// Why a connection's task closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No request for `idle_timeout`.
    Idle,
    /// A request's headers took longer than `header_timeout`.
    Headers,
    /// The client took no response bytes for `idle_timeout`.
    Send,
}

/// The timeouts of the phases, in ms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub idle: u64,
    pub header: u64,
}

/// One connection's state, shared by its task, its I/O, its requests and the accept loop.
///
/// `busy` ends when hyper drops the response body, which may be before the last of it is
/// written: a write that waits for the client keeps the connection out of the idle phase.
#[derive(Debug)]
pub(crate) struct ConnState {
    clock: Clock,
    /// Requests being served, counted until their response body is written.
    busy: AtomicUsize,
    /// Bytes of a request have arrived while no request was being served.
    reading: AtomicBool,
    /// When the current idle or headers phase began.
    since: AtomicU64,
    /// One more than when a write started waiting for the client; 0 while writes go through.
    write_blocked: AtomicU64,
    /// Set by the accept loop when it chose this connection to close.
    evicted: AtomicBool,
    /// Wakes the connection's task to close it.
    pub(crate) evict: Notify,
}

impl ConnState {
    pub(crate) fn new(clock: Clock) -> Arc<ConnState> {
        Arc::new(ConnState {
            clock,
            busy: AtomicUsize::new(0),
            reading: AtomicBool::new(false),
            since: AtomicU64::new(clock.now()),
            write_blocked: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        })
    }

    /// How long ago its idle (or headers) phase began, if no request is being served and it
    /// was not chosen already: what the accept loop ranks candidates by.
    pub(crate) fn idle_since(&self) -> Option<u64> {
        (self.busy.load(Relaxed) == 0
            && self.write_blocked.load(Relaxed) == 0
            && !self.evicted.load(Relaxed))
        .then(|| self.since.load(Relaxed))
    }

    /// Chooses this connection to be closed for a newcomer.
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Relaxed);
        self.evict.notify_one();
    }

    /// Whether an eviction still applies: a request that started meanwhile is served rather
    /// than cut off.
    pub(crate) fn confirm_eviction(&self) -> bool {
        if self.busy.load(Relaxed) > 0 {
            self.evicted.store(false, Relaxed);
            return false;
        }
        true
    }

    /// The phase that has lasted too long, or when to look again.
    pub(crate) fn check(&self, t: Timeouts) -> Result<tokio::time::Instant, Expired> {
        let now = self.clock.now();
        let mut next = now + t.idle.min(t.header).max(1);
        let blocked = self.write_blocked.load(Relaxed);
        if blocked > 0 {
            let due = blocked - 1 + t.idle;
            if now >= due {
                return Err(Expired::Send);
            }
            next = next.min(due);
        }
        // A response still being written (hyper may have dropped its body already) is not
        // idle: only the send timeout applies to it.
        if self.busy.load(Relaxed) == 0 && blocked == 0 {
            let since = self.since.load(Relaxed);
            let (due, why) = if self.reading.load(Relaxed) {
                (since + t.header, Expired::Headers)
            } else {
                (since + t.idle, Expired::Idle)
            };
            if now >= due {
                return Err(why);
            }
            next = next.min(due);
        }
        Ok(self.clock.instant(next))
    }

    fn saw_bytes(&self) {
        if self.busy.load(Relaxed) == 0 && !self.reading.load(Relaxed) {
            self.since.store(self.clock.now(), Relaxed);
            self.reading.store(true, Relaxed);
        }
    }

    fn write_result<T>(&self, r: &Poll<T>) {
        match r {
            Poll::Pending => {
                if self.write_blocked.load(Relaxed) == 0 {
                    self.write_blocked.store(self.clock.now() + 1, Relaxed);
                }
            }
            Poll::Ready(_) => {
                self.write_blocked.store(0, Relaxed);
                // Writing the end of a response counts as activity: idle starts after it.
                if self.busy.load(Relaxed) == 0 && !self.reading.load(Relaxed) {
                    self.since.store(self.clock.now(), Relaxed);
                }
            }
        }
    }
}

/// A request being served on a connection; dropping it (with the response body) makes the
/// connection idle again.
#[derive(Debug)]
pub(crate) struct Busy(Arc<ConnState>);

impl Busy {
    pub(crate) fn begin(state: &Arc<ConnState>) -> Busy {
        state.busy.fetch_add(1, Relaxed);
        state.reading.store(false, Relaxed);
        Busy(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let s = &self.0;
        s.since.store(s.clock.now(), Relaxed);
        s.reading.store(false, Relaxed);
        s.busy.fetch_sub(1, Relaxed);
    }
}

/// A connection's stream, telling its state when request bytes arrive and when writes wait.
#[derive(Debug)]
pub(crate) struct Watched<I> {
    inner: I,
    state: Arc<ConnState>,
}

impl<I> Watched<I> {
    pub(crate) fn new(inner: I, state: Arc<ConnState>) -> Self {
        Watched { inner, state }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.saw_bytes();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.state.write_result(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.state.write_result(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.state.write_result(&r);
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        idle: 1000,
        header: 300,
    };

    /// A clock started 10 s ago, so that times in the past can be written.
    fn clock() -> Clock {
        Clock(
            Instant::now()
                .checked_sub(Duration::from_secs(10))
                .expect("up for 10 s"),
        )
    }

    #[tokio::test]
    async fn each_phase_has_its_own_timeout() {
        let s = ConnState::new(clock());
        // Idle: due after the idle timeout.
        assert!(s.check(T).is_ok());
        // Bytes of a request: the header timeout counts from now.
        s.saw_bytes();
        let due = s.check(T).expect("not yet");
        assert!(due <= tokio::time::Instant::now() + Duration::from_millis(300));
        s.since.store(s.clock.now() - 301, Relaxed);
        assert_eq!(s.check(T), Err(Expired::Headers));
        // Busy: neither, and not a candidate for eviction.
        let busy = Busy::begin(&s);
        assert!(s.check(T).is_ok());
        assert_eq!(s.idle_since(), None);
        drop(busy);
        assert!(s.idle_since().is_some());
        s.since.store(s.clock.now() - 1001, Relaxed);
        assert_eq!(s.check(T), Err(Expired::Idle));
        // A write that waits for the client for the idle timeout, even while busy.
        let _busy = Busy::begin(&s);
        s.write_result(&Poll::<()>::Pending);
        assert!(s.check(T).is_ok());
        s.write_blocked.store(s.clock.now() - 1001 + 1, Relaxed);
        assert_eq!(s.check(T), Err(Expired::Send));
    }

    #[test]
    fn an_eviction_yields_to_a_request_that_started() {
        let s = ConnState::new(clock());
        s.evict();
        assert_eq!(s.idle_since(), None, "chosen once, not twice");
        let _busy = Busy::begin(&s);
        assert!(!s.confirm_eviction());
        assert!(!s.evicted.load(Relaxed));
    }
}
