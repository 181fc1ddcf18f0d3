//! `tally`: one command over the libraries, as thin wiring. The flags are in [`cli`]; each
//! subcommand's wiring is in its own file (`serve` for `tally store`, `agent`, `check`,
//! `rules_test`, `compact`, `gen_log`, `demo`); the work is in the crates.

mod agent;
mod check;
mod cli;
mod compact;
mod demo;
mod gen_log;
mod query_node;
mod rules_test;
mod serve;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, Global, RulesCommand};

fn init_logging(g: &Global) {
    let level = match i16::from(g.verbose) - i16::from(g.quiet) {
        i16::MIN..=-2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Tells glibc's malloc to keep what a read frees for the next read. A wide read allocates
/// and frees ~100 MB of series (a query node: the stores' answers and their values; a store:
/// the values it reads and the answer it writes). By default glibc gives freed memory at the
/// top of each arena back to the kernel and serves blocks above a moving threshold by mmap,
/// so every such read faulted its pages in again: a fifth of a query node's time on a
/// federated `sumSeries` over 3,000 series, measured with `benches/federation_compare.py`.
/// Fixed thresholds stop that, up to 256 MiB kept free per arena; RSS stays at the largest
/// read's high-water mark instead of falling back between reads. jemalloc, tried instead, made
/// the single store's read of the same series 1.7x slower.
fn keep_freed_memory() {
    const KEEP: libc::c_int = 256 << 20;
    const MMAP_FROM: libc::c_int = 32 << 20;
    // SAFETY: mallopt only sets malloc's parameters; it is called before any other thread
    // exists, with parameters and values glibc documents (mallopt(3)). A refusal (0) leaves
    // glibc's defaults, which are correct, only slower.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_FROM);
    }
}

fn main() {
    keep_freed_memory();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // A Nagios plugin reports bad arguments as UNKNOWN (3), not clap's 2.
            let is_check = std::env::args().nth(1).as_deref() == Some("check");
            if is_check && e.use_stderr() {
                println!(
                    "TALLY UNKNOWN - {}",
                    e.to_string().lines().next().unwrap_or("bad arguments")
                );
                std::process::exit(3);
            }
            e.exit();
        }
    };
    if let Command::Check(args) = cli.command {
        std::process::exit(check::run(args));
    }
    init_logging(&cli.global);
    let result = match cli.command {
        Command::Store(args) => serve::run(args),
        Command::Query(args) => query_node::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Agent(args) => agent::run(args),
        Command::GenLog(args) => gen_log::run(args),
        Command::Check(_) => unreachable!("handled above"),
        Command::Rules {
            command: RulesCommand::Test(args),
        } => rules_test::run(args),
        Command::Compact(args) => compact::run(&args),
    };
    if let Err(e) = result {
        eprintln!("tally: {e:#}");
        std::process::exit(1);
    }
}
