//! Every input checked in for a fuzz target is replayed here on every `cargo test`, through the
//! same function the target runs under cargo-fuzz (each crate's `fuzz/checks.rs`, compiled into
//! both), so no nightly toolchain is needed to keep what the fuzzers found fixed.
//!
//! Per crate, `fuzz/seeds/<target>/` is the target's corpus minimized with `cargo fuzz cmin`
//! (every path the fuzzer reached) and `fuzz/regressions/<target>/` holds inputs that once
//! failed. `scripts/fuzz.sh` runs the targets and refreshes the seeds.
//!
//! The checks run on a test thread's 2 MiB stack, as small as a tokio worker's: an input that
//! needs more stack than a request gets fails here too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[path = "../agent/fuzz/checks.rs"]
mod agent_checks;
#[path = "../proto/fuzz/checks.rs"]
mod proto_checks;
#[path = "../query/fuzz/checks.rs"]
mod query_checks;
#[path = "../store/fuzz/checks.rs"]
mod store_checks;

type Check = fn(&[u8]);

/// (crate directory, target, its check): every target of every `fuzz/Cargo.toml`.
const TARGETS: &[(&str, &str, Check)] = &[
    ("proto", "decode", proto_checks::decode),
    ("store", "ingest_body", store_checks::ingest_body),
    ("store", "store_config", store_checks::store_config),
    ("store", "series_patterns", store_checks::series_patterns),
    ("query", "graphite_target", query_checks::graphite_target),
    ("query", "graphite_render", query_checks::graphite_render),
    ("query", "atlas_graph", query_checks::atlas_graph),
    ("query", "time", query_checks::time),
    ("query", "alert_config", query_checks::alert_config),
    ("query", "query_table", query_checks::query_table),
    ("query", "render_tally", query_checks::render_tally),
    ("agent", "access_line", agent_checks::access_line),
    ("agent", "rules_line", agent_checks::rules_line),
    ("agent", "agent_config", agent_checks::agent_config),
    ("agent", "statsd_packet", agent_checks::statsd_packet),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir` (none if it does not exist), without dotfiles and READMEs.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            p.is_file() && !name.starts_with('.') && !name.ends_with(".md")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_checked_in_fuzz_input_still_passes() {
    let mut failed = Vec::new();
    for &(krate, target, check) in TARGETS {
        let fuzz = root().join(krate).join("fuzz");
        let seeds = inputs(&fuzz.join("seeds").join(target));
        assert!(
            !seeds.is_empty(),
            "{krate}/fuzz/seeds/{target}/ holds no inputs: run scripts/fuzz.sh"
        );
        let regressions = inputs(&fuzz.join("regressions").join(target));
        for file in seeds.iter().chain(&regressions) {
            let data = std::fs::read(file).expect("readable fuzz input");
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "fuzz inputs that fail: {failed:#?}");
}

/// A target added to a `fuzz/Cargo.toml` must be replayed here too.
#[test]
fn every_fuzz_target_is_replayed() {
    let mut declared = BTreeSet::new();
    for krate in ["proto", "store", "query", "agent"] {
        let manifest = root().join(krate).join("fuzz").join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("a fuzz manifest");
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if let Some(name) = line.strip_prefix("name = \"").filter(|_| in_bin) {
                declared.insert((krate.to_owned(), name.trim_end_matches('"').to_owned()));
            }
        }
    }
    let replayed: BTreeSet<(String, String)> = TARGETS
        .iter()
        .map(|&(k, t, _)| (k.to_owned(), t.to_owned()))
        .collect();
    assert_eq!(declared, replayed);
}
