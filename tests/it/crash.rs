//! What the crash loops (`crash_store.rs`, `crash_agent.rs`) share: their parameters, a child
//! process started without waiting for it (so it can be killed while it starts), and a look at
//! which of its threads were running at the moment of a kill.
//!
//! Parameters come from the environment, so the same test is the short run of the suite and
//! the long run of a session:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TALLY_CRASH_SEED` | the seed (printed, so a failure can be replayed) | the clock |
//! | `TALLY_CRASH_KILLS` | how many `kill -9`s | a few (each test says) |
//! | `TALLY_CRASH_SECS` | stop killing after this long, whatever the count | 120 |
//! | `TALLY_BIN` | the `tally` binary (a release build for long runs) | this build's |
//! | `TALLY_CRASH_KEEP` | keep the run's directory (data, logs, configs) and print where | unset |

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A crash loop's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub seed: u64,
    pub kills: usize,
    pub secs: u64,
}

impl Params {
    pub fn from_env(default_kills: usize) -> Params {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        Params {
            seed: var("TALLY_CRASH_SEED").unwrap_or_else(|| crate::proc::unix_now() as u64),
            kills: var("TALLY_CRASH_KILLS").map_or(default_kills, |k| k as usize),
            secs: var("TALLY_CRASH_SECS").unwrap_or(120),
        }
    }
}

/// The run's directory, removed at the end unless `TALLY_CRASH_KEEP` is set.
pub fn temp_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("TALLY_CRASH_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("crash loop: keeping {}", dir.path().display());
    }
    dir
}

/// A `tally` child started without waiting for it: `ready` receives the moment it prints its
/// first `tally ...` line (store: open and listening; agent: started). Its stderr goes to `log`.
pub struct Child9 {
    pub child: Child,
    pub started: Instant,
    ready: Receiver<Instant>,
    pub ready_at: Option<Instant>,
}

impl Child9 {
    pub fn spawn(args: &[&str], log: &Path) -> Child9 {
        let err = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut child = Command::new(crate::proc::tally_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("tally starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, ready) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("tally ") {
                    let _ = tx.send(Instant::now());
                }
            }
        });
        Child9 {
            child,
            started: Instant::now(),
            ready,
            ready_at: None,
        }
    }

    /// Whether it has printed its ready line.
    pub fn is_ready(&mut self) -> bool {
        if self.ready_at.is_none() {
            self.ready_at = self.ready.try_recv().ok();
        }
        self.ready_at.is_some()
    }

    /// Waits up to `timeout` for the ready line; `Err` with why not (it exited, or too slow).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        while !self.is_ready() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status} before it was ready"));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(self.ready_at.map_or(Duration::ZERO, |r| r - self.started))
    }

    /// The threads running (or in uninterruptible I/O) right now, then SIGKILL. `None` if it
    /// had already exited.
    pub fn kill9(&mut self) -> Option<Vec<String>> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return None;
        }
        let busy = busy_threads(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        Some(busy)
    }
}

impl Drop for Child9 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names of `pid`'s threads in state R (running) or D (in I/O), from `/proc`.
pub fn busy_threads(pid: u32) -> Vec<String> {
    let mut busy = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return busy;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        if matches!(state, Some("R" | "D")) {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            busy.push(comm.trim().to_string());
        }
    }
    busy
}

/// The last `n` lines of a log file, for a failure message.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
