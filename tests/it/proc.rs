//! Running `tally store` as a child process on ports it picks itself (`:0`), read back from the
//! one line it prints on stdout. The child is killed when the guard drops, so no test leaves a
//! server behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct StoreProc {
    pub child: Child,
    pub line: SocketAddr,
    pub http: SocketAddr,
}

impl StoreProc {
    pub fn start(dir: &Path, extra: &[&str]) -> StoreProc {
        StoreProc::start_on(dir, "127.0.0.1:0", extra)
    }

    /// A store whose HTTP address is `http` (to come back on the same port after a stop).
    pub fn start_on(dir: &Path, http: &str, extra: &[&str]) -> StoreProc {
        StoreProc::spawn(&mut StoreProc::command(dir, http, extra))
    }

    /// The command [`StoreProc::start_on`] runs, to change before [`StoreProc::spawn`].
    pub fn command(dir: &Path, http: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new(tally_bin());
        cmd.args([
            "-q",
            "store",
            "--line-listen",
            "127.0.0.1:0",
            "--http-listen",
            http,
            "--data-dir",
        ])
        .arg(dir)
        .args(extra);
        cmd
    }

    /// Runs a store command and reads its addresses.
    pub fn spawn(cmd: &mut Command) -> StoreProc {
        let (child, line) = spawn_first_line(cmd, "store prints its addresses");
        // "tally store: line=127.0.0.1:P http=127.0.0.1:Q"
        let field = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        StoreProc {
            line: field("line="),
            http: field("http="),
            child,
        }
    }

    /// A store run with `config` (TOML) written to a file in `dir`; data in `dir/data`.
    pub fn start_with_config(dir: &Path, config: &str) -> StoreProc {
        let cfg = dir.join("store.toml");
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(&cfg, config).expect("write config");
        StoreProc::start(
            &dir.join("data"),
            &["--config", cfg.to_str().unwrap_or_default()],
        )
    }

    /// A store that writes no `tally.store.*` series of its own (for exact comparisons).
    pub fn start_quiet(dir: &Path) -> StoreProc {
        StoreProc::start_with_config(dir, "self_metrics_interval = \"0s\"\n")
    }

    /// The store's `/metrics` page, as text.
    pub fn metrics(&self) -> String {
        reqwest::blocking::get(self.url("/metrics"))
            .expect("metrics")
            .text()
            .expect("text")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// SIGKILL: no flush, no clean anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        terminate(&mut self.child, "store")
    }
}

/// `tally query` over stores, on a port it picks; killed when dropped.
pub struct QueryProc {
    pub child: Child,
    pub http: SocketAddr,
}

impl QueryProc {
    /// A query node over `peers` (HTTP addresses) with `extra` flags.
    pub fn start(peers: &[SocketAddr], state: &Path, extra: &[&str]) -> QueryProc {
        let list: Vec<String> = peers.iter().map(|p| format!("http://{p}")).collect();
        let mut cmd = Command::new(tally_bin());
        cmd.args(["-q", "query", "--http-listen", "127.0.0.1:0", "--peers"])
            .arg(list.join(","))
            .arg("--state-dir")
            .arg(state)
            .args(extra);
        let (child, line) = spawn_first_line(&mut cmd, "query node prints its address");
        // "tally query: http=127.0.0.1:P peers=..."
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no http= in {line:?}"));
        QueryProc { child, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for QueryProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` with stdout piped and returns the child with the first line it prints (the
/// `tally` commands print their addresses there once they listen).
fn spawn_first_line(cmd: &mut Command, what: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tally binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut reader = BufReader::new(stdout);
    // The address line is the first that starts with "tally "; anything before it (an alert
    // rule that fires at once prints its console line) is skipped.
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).expect(what) == 0 || line.starts_with("tally ") {
            break;
        }
    }
    // Keep reading what it prints later, so that the pipe neither fills up nor closes under it.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (child, line)
}

/// SIGTERM to a child, then wait (bounded) for its exit status.
pub fn terminate(child: &mut Child, what: &str) -> ExitStatus {
    signal_and_wait(child, child.id() as libc::pid_t, libc::SIGTERM, what)
}

/// Sends `sig` to `target` (a pid, or a negative process group), then waits up to 30 s for
/// `child` to exit.
pub fn signal_and_wait(
    child: &mut Child,
    target: libc::pid_t,
    sig: libc::c_int,
    what: &str,
) -> ExitStatus {
    #[allow(unsafe_code)]
    // SAFETY: signalling our own child process (or its process group).
    unsafe {
        libc::kill(target, sig);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not stop within 30 s of signal {sig}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tally agent` as a child process, killed when the guard drops.
pub struct AgentProc {
    pub child: Child,
    /// Its `/metrics` address, if the config asked for one.
    pub metrics: Option<SocketAddr>,
}

impl AgentProc {
    pub fn start(config: &Path) -> AgentProc {
        let mut cmd = Command::new(tally_bin());
        cmd.args(["-q", "agent", "--config"]).arg(config);
        let (child, line) = spawn_first_line(&mut cmd, "agent prints its start line");
        // "tally agent: files=N metrics=ADDR|off"
        assert!(
            line.starts_with("tally agent:"),
            "agent did not start: {line:?}"
        );
        let metrics = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("metrics="))
            .and_then(|a| a.parse().ok());
        AgentProc { child, metrics }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> ExitStatus {
        terminate(&mut self.child, "agent")
    }

    /// One value from its `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let addr = self.metrics?;
        let text = reqwest::blocking::get(format!("http://{addr}/metrics"))
            .ok()?
            .text()
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StoreProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free right now (for a server that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// POSTs plaintext lines to a store's acknowledged ingest endpoint.
pub fn ingest(http: &str, text: &str) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{http}/api/v1/ingest"))
        .body(text.to_string())
        .send()
        .expect("ingest");
    assert!(r.status().is_success(), "ingest: {}", r.status());
}

pub use tally_common::unix_now;

/// The `tally` binary the tests run: this build's, or `TALLY_BIN` (a release build, for the
/// long crash loops).
pub fn tally_bin() -> std::path::PathBuf {
    std::env::var_os("TALLY_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tally").into())
}

/// SplitMix64: small and seedable, so a failing run can be replayed from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
