//! The README's run command (`./x run`), started from a fresh clone of this repository: it must
//! build, serve the web page, have failure-beacon series within a minute, and stop cleanly on
//! SIGINT (what Ctrl-C sends).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::proc::{free_port, signal_and_wait};

#[test]
fn issue_7_readme_run_command_from_a_fresh_clone_serves_beacons_and_stops_on_sigint() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().expect("tempdir");
    let clone = tmp.path().join("clone");
    let st = Command::new("git")
        .args(["clone", "-q", repo])
        .arg(&clone)
        .status()
        .expect("git runs");
    assert!(st.success(), "git clone of {repo}");
    // The same target directory as this test binary: the build is shared, not repeated.
    let target = crate::web::artifacts_dir()
        .parent()
        .map(|p| p.to_path_buf())
        .expect("target dir");
    let http = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(clone.join("x"))
        .args(["run", "--data-dir"])
        .arg(tmp.path().join("demo"))
        .args(["--http-listen", &http, "--line-listen", "127.0.0.1:0"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&clone)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("./x run starts");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // A cold release build can take a while on a small machine; the demo itself is quick.
    let build_deadline = Instant::now() + Duration::from_secs(1500);
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) => {
                let banner = l.contains("web page");
                seen.push(l);
                if banner {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("./x run exited: {:?}; {seen:#?}", child.wait())
            }
        }
        assert!(
            Instant::now() < build_deadline,
            "no banner from ./x run: {seen:#?}"
        );
    }
    let started = Instant::now();
    let page = reqwest::blocking::get(format!("http://{http}/"))
        .expect("page")
        .text()
        .expect("text");
    assert!(
        page.contains("<title>Tally</title>"),
        "the web page is served"
    );
    let url = format!(
        "http://{http}/render?target=sumSeries(seriesByTag('name=beacons'))&from=-5min&format=json"
    );
    loop {
        let body = reqwest::blocking::get(&url)
            .and_then(|r| r.text())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let points = v[0]["datapoints"]
            .as_array()
            .map_or(0, |d| d.iter().filter(|p| p[0].as_f64().is_some()).count());
        if points > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no beacon series within a minute: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // SIGINT to the process group, as a terminal's Ctrl-C does.
    let group = -(child.id() as libc::pid_t);
    let status = signal_and_wait(&mut child, group, libc::SIGINT, "./x run");
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(l);
    }
    assert!(status.success(), "exit status {status:?}; {seen:#?}");
    assert!(
        seen.iter().any(|l| l == "demo: stopped cleanly"),
        "{seen:#?}"
    );
}
