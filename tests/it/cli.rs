//! The command line itself: help texts, and config problems reported by the real binary.

use std::process::Command;

fn tally(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn issue_11_every_subcommand_has_its_own_help() {
    let (code, help, _) = tally(&["agent", "--help"]);
    assert_eq!(code, Some(0));
    assert!(help.starts_with("Run the agent"), "{help}");
    assert!(!help.contains("compact"), "{help}");
    let (code, help, _) = tally(&["compact", "--help"]);
    assert_eq!(code, Some(0));
    assert!(help.starts_with("Flush and fully compact"), "{help}");
    let (code, help, _) = tally(&["query", "--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--peers",
        "--replication",
        "--peer-timeout",
        "--alerts",
        "--state-dir",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    let (code, _, err) = tally(&["query", "--peers", "ftp://x", "--check-config"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("ftp://x"), "a bad peer is named: {err}");
    let (_, top, _) = tally(&["--help"]);
    for (cmd, first_words) in [
        ("demo", "The whole pipeline"),
        ("store", "Run the time-series store"),
        ("query", "A query node over several stores"),
        ("compact", "Flush and fully compact"),
        ("agent", "Run the agent"),
        ("gen-log", "Write realistic access-log lines"),
        ("check", "A Nagios/Icinga plugin"),
        ("rules", "Alert rules"),
    ] {
        let line = top
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("{cmd} missing from:\n{top}"));
        assert!(line.contains(first_words), "{cmd}: {line}");
    }
}

/// `tally store --check-config <flag> <path>` after writing `text` to `path`: the exit code and
/// what it printed on stderr.
fn check_config(flag: &str, path: &std::path::Path, text: &str) -> (Option<i32>, String) {
    std::fs::write(path, text).expect("write");
    let (code, _, err) = tally(&[
        "store",
        "--check-config",
        flag,
        path.to_str().unwrap_or_default(),
    ]);
    (code, err)
}

#[test]
fn a_store_config_reports_the_store_and_query_parts_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("store.toml");
    let (code, err) = check_config(
        "--config",
        &cfg,
        "flush_interval = \"soon\"\nmax_line_size = \"big\"\n[query]\nmax_request_time = 0\nread_tokn = \"x\"\n",
    );
    assert_eq!(code, Some(1), "{err}");
    for want in [
        "flush_interval: \"soon\"",
        "max_line_size: \"big\"",
        "unknown key \"query.read_tokn\"",
    ] {
        assert!(err.contains(want), "{want} missing from {err}");
    }
    let (code, err) = check_config("--config", &cfg, "[query]\nmax_request_time = 0\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("query.max_request_time: \"0\" must be more than 0"),
        "{err}"
    );
    assert!(err.contains(&cfg.display().to_string()), "{err}");
}

#[test]
fn every_alert_rule_problem_names_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("alerts.toml");
    let (code, err) = check_config(
        "--alerts",
        &rules,
        "resend_interval = \"x\"\n[[rule]]\nname = \"a\"\ntarget = \"b\"\ncrit = 1\nwindow = \"zz\"\n",
    );
    assert_eq!(code, Some(1), "{err}");
    let file = rules.display().to_string();
    for want in ["resend_interval: \"x\"", "rule[0] (\"a\").window: \"zz\""] {
        let line = err
            .lines()
            .find(|l| l.contains(want))
            .unwrap_or_else(|| panic!("{want} missing from {err}"));
        assert!(line.trim_start().starts_with(&file), "{line}");
    }
}
