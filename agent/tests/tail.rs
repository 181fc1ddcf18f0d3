//! The tailer against real files: every rotation style, truncation, deletion, partial and
//! over-long lines, gz, inode reuse and restarts from a checkpoint.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tally_agent::config::Input;
use tally_agent::tail::{FileState, Tailer};

fn input(dir: &Path, glob: &str, start_at_end: bool) -> Input {
    Input {
        paths: vec![dir.join(glob).to_string_lossy().into_owned()],
        start_at_end,
        read_gz: false,
        max_line_bytes: 64,
        partial_line_timeout: None,
        rotate_wait: Duration::ZERO,
    }
}

fn append(p: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .expect("open");
    f.write_all(text.as_bytes()).expect("write");
}

/// Scans, then reads until nothing is left; returns the lines, sorted.
fn drain(t: &mut Tailer) -> Vec<String> {
    t.scan();
    let mut out = Vec::new();
    while t.read(&mut |l| out.push(String::from_utf8_lossy(l).into_owned())) {}
    // Once more: files that left the globs are closed on a read that finds them idle.
    t.read(&mut |l| out.push(String::from_utf8_lossy(l).into_owned()));
    out.sort();
    out
}

fn lines(range: std::ops::Range<u32>) -> String {
    range
        .map(|i| format!("line {i:04} of the access log\n"))
        .collect()
}

fn names(range: std::ops::Range<u32>) -> Vec<String> {
    range
        .map(|i| format!("line {i:04} of the access log"))
        .collect()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("a.log");
    (d, p)
}

#[test]
fn rename_rotation_reads_the_rest_of_the_old_file_and_all_of_the_new() {
    let (d, p) = setup();
    append(&p, &lines(0..3));
    let mut t = Tailer::new(vec![input(d.path(), "a.log", false)]);
    assert_eq!(drain(&mut t), names(0..3));
    append(&p, &lines(3..5));
    fs::rename(&p, d.path().join("a.log.1")).expect("rename");
    append(&p, &lines(5..7));
    assert_eq!(drain(&mut t), names(3..7));
    assert_eq!(t.open_files(), 1, "the rotated file is closed once read");
    append(&p, &lines(7..8));
    assert_eq!(drain(&mut t), names(7..8));
}

#[test]
fn copytruncate_reads_the_unread_tail_from_the_copy() {
    let (d, p) = setup();
    append(&p, &lines(0..3));
    let mut t = Tailer::new(vec![input(d.path(), "a.log", false)]);
    assert_eq!(drain(&mut t), names(0..3));
    append(&p, &lines(3..6));
    fs::copy(&p, d.path().join("a.log.1")).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&p, &lines(6..8));
    assert_eq!(drain(&mut t), names(3..8));
    assert_eq!(t.counts.truncations, 1);
}

#[test]
fn truncation_without_a_copy_starts_again() {
    let (d, p) = setup();
    append(&p, &lines(0..3));
    let mut t = Tailer::new(vec![input(d.path(), "a.log", false)]);
    assert_eq!(drain(&mut t), names(0..3));
    OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&p, &lines(10..11));
    assert_eq!(drain(&mut t), names(10..11));
    // Truncated and refilled past the old offset before the next poll: the fingerprint tells.
    OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&p, &lines(20..30));
    assert_eq!(drain(&mut t), names(20..30));
}

#[test]
fn a_deleted_file_is_read_to_its_end() {
    let (d, p) = setup();
    append(&p, &lines(0..2));
    let mut t = Tailer::new(vec![input(d.path(), "a.log", false)]);
    assert_eq!(drain(&mut t), names(0..2));
    let mut f = OpenOptions::new().append(true).open(&p).expect("open");
    fs::remove_file(&p).expect("rm");
    f.write_all(lines(2..4).as_bytes())
        .expect("write to the unlinked file");
    assert_eq!(drain(&mut t), names(2..4));
    assert_eq!(t.open_files(), 0);
}

#[test]
fn partial_lines_wait_for_their_newline_or_the_timeout() {
    let (d, p) = setup();
    let mut inp = input(d.path(), "a.log", false);
    inp.max_line_bytes = 1000;
    let mut t = Tailer::new(vec![inp.clone()]);
    append(&p, "first\nsec");
    assert_eq!(drain(&mut t), vec!["first"]);
    append(&p, "ond\r\n");
    assert_eq!(drain(&mut t), vec!["second"]);
    inp.partial_line_timeout = Some(Duration::from_millis(50));
    let mut t = Tailer::new(vec![inp]);
    append(&p, "third");
    assert_eq!(drain(&mut t), vec!["first", "second"]);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(drain(&mut t), vec!["third"]);
    assert_eq!(t.counts.partial_timeouts, 1);
}

#[test]
fn over_long_lines_are_cut_and_counted() {
    let (d, p) = setup();
    let mut t = Tailer::new(vec![input(d.path(), "a.log", false)]);
    let long = "x".repeat(300);
    append(&p, &format!("short\n{long}\nafter\n{}", "y".repeat(100)));
    assert_eq!(
        drain(&mut t),
        vec![
            "after".to_string(),
            "short".to_string(),
            "x".repeat(64),
            "y".repeat(64)
        ]
    );
    append(&p, "yyy\nlast\n");
    assert_eq!(drain(&mut t), vec!["last"]);
    assert_eq!(t.counts.too_long, 2);
}

#[test]
fn gz_files_are_skipped_or_read_whole() {
    let (d, _) = setup();
    let gz = d.path().join("old.log.gz");
    let mut enc = flate2::write::GzEncoder::new(
        fs::File::create(&gz).expect("create"),
        flate2::Compression::default(),
    );
    enc.write_all(format!("{}no newline at the end", lines(0..3)).as_bytes())
        .expect("gz");
    enc.finish().expect("finish");
    let mut t = Tailer::new(vec![input(d.path(), "*.gz", false)]);
    assert_eq!(drain(&mut t), Vec::<String>::new());
    let mut inp = input(d.path(), "*.gz", false);
    inp.read_gz = true;
    let mut t = Tailer::new(vec![inp.clone()]);
    let mut want = names(0..3);
    want.push("no newline at the end".into());
    assert_eq!(drain(&mut t), want);
    assert_eq!(drain(&mut t), Vec::<String>::new(), "read once");
    // A restart resumes after what the checkpoint says was read.
    let cp = t.checkpoint();
    let mut t = Tailer::new(vec![inp]);
    t.restore(&cp);
    assert_eq!(drain(&mut t), Vec::<String>::new());
}

#[test]
fn start_at_end_skips_history_but_not_new_files() {
    let (d, p) = setup();
    append(&p, &format!("{}half a li", lines(0..3)));
    let mut t = Tailer::new(vec![input(d.path(), "*.log", true)]);
    assert_eq!(drain(&mut t), Vec::<String>::new());
    append(&p, "ne\n");
    assert_eq!(drain(&mut t), vec!["half a line"]);
    let q = d.path().join("b.log");
    append(&q, &lines(0..2));
    assert_eq!(
        drain(&mut t),
        names(0..2),
        "a file that appears later is read whole"
    );
}

fn restart(cp: &[FileState], inp: &Input) -> Tailer {
    let mut t = Tailer::new(vec![inp.clone()]);
    t.restore(cp);
    t
}

#[test]
fn restarts_resume_through_rename_and_copytruncate_done_while_down() {
    let (d, p) = setup();
    let inp = input(d.path(), "a.log", true);
    append(&p, &lines(0..3));
    let mut t = Tailer::new(vec![input(d.path(), "a.log", false)]);
    assert_eq!(drain(&mut t), names(0..3));
    let cp = t.checkpoint();
    drop(t);
    // Down: more lines, a rename rotation, lines in the new file.
    append(&p, &lines(3..5));
    fs::rename(&p, d.path().join("a.log.1")).expect("rename");
    append(&p, &lines(5..7));
    let mut t = restart(&cp, &inp);
    assert_eq!(
        drain(&mut t),
        names(3..7),
        "start_at=end does not apply to a file that replaced a followed one"
    );
    let cp = t.checkpoint();
    drop(t);
    // Down again: lines, then copytruncate into a name outside the glob, then lines.
    append(&p, &lines(7..9));
    fs::copy(&p, d.path().join("a.log.2")).expect("copy");
    OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    append(&p, &lines(9..10));
    let mut t = restart(&cp, &inp);
    assert_eq!(drain(&mut t), names(7..10));
    // And a plain restart reads nothing twice.
    let cp = t.checkpoint();
    let mut t = restart(&cp, &inp);
    assert_eq!(drain(&mut t), Vec::<String>::new());
}

#[test]
fn a_reused_inode_with_other_content_is_a_new_file() {
    let (d, p) = setup();
    append(&p, &lines(0..3));
    let md = fs::metadata(&p).expect("stat");
    // A checkpoint of an earlier file that had this device and inode, with other content.
    let cp = vec![FileState {
        path: p.clone(),
        dev: md.dev(),
        ino: md.ino(),
        fp_len: 20,
        fp: 12345,
        offset: 40,
        skipping: false,
        gz: false,
    }];
    let mut t = restart(&cp, &input(d.path(), "a.log", true));
    assert_eq!(drain(&mut t), names(0..3));
}
