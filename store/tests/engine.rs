//! The engine on a real RocksDB in a temp dir: writes, flushes, crash recovery, rollups.

use regex::Regex;
use tally_store::retention::parse_retentions;
use tally_store::{Aggregate, Durability, PointBatch, Schema, Schemas, Store, StoreOptions};

use tally_common::unix_now as now;

fn opts(dir: &std::path::Path) -> StoreOptions {
    let mut o = StoreOptions::new(dir);
    o.schemas = Schemas {
        rules: vec![Schema {
            name: "rolled".into(),
            pattern: Regex::new(r"^rolled\.").expect("regex"),
            archives: parse_retentions("10s:1d,60s:7d").expect("valid"),
            aggregate: Aggregate::Average,
        }],
        default: parse_retentions("10s:1d").expect("valid"),
    };
    o
}

fn batch(points: &[(&str, i64, f64)]) -> PointBatch {
    let mut b = PointBatch::default();
    for &(n, t, v) in points {
        b.push(n, t, v);
    }
    b
}

fn values(store: &Store, name: &str, from: i64, until: i64) -> Vec<Option<f64>> {
    store
        .read(name, from, until, None)
        .expect("read")
        .expect("series exists")
        .values
}

#[test]
fn written_points_read_back_before_and_after_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(opts(dir.path())).expect("open");
    let t0 = now() - now() % 10 - 600;
    store
        .write(
            &batch(&[
                ("a.b", t0, 1.0),
                ("a.b", t0 + 10, 2.0),
                ("a.b", t0 + 30, 4.0),
            ]),
            Durability::Sync,
        )
        .expect("write");
    let want = vec![Some(1.0), Some(2.0), None, Some(4.0)];
    assert_eq!(values(&store, "a.b", t0 - 10, t0 + 30), want);
    store.flush().expect("flush");
    assert_eq!(store.head_points(), 0);
    assert_eq!(values(&store, "a.b", t0 - 10, t0 + 30), want);
    // Whisper's grid: `from` is exclusive, `until` inclusive, both floored to the step.
    let s = store
        .read("a.b", t0 + 5, t0 + 39, None)
        .expect("read")
        .expect("exists");
    assert_eq!(
        (s.start, s.step, s.values),
        (t0 + 10, 10, vec![Some(2.0), None, Some(4.0)])
    );
    assert!(store
        .read("nope", t0, t0 + 10, None)
        .expect("read")
        .is_none());
}

#[test]
fn out_of_order_and_duplicates_last_write_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(opts(dir.path())).expect("open");
    let t0 = now() - now() % 10 - 600;
    store
        .write(
            &batch(&[("x", t0 + 20, 3.0), ("x", t0, 1.0)]),
            Durability::Sync,
        )
        .expect("write");
    store.flush().expect("flush");
    store
        .write(
            &batch(&[("x", t0, 9.0), ("x", t0 + 10, 2.0), ("x", t0 + 3, 7.0)]),
            Durability::Sync,
        )
        .expect("write");
    // Before the second flush the head overrides the chunk; t0+3 falls in t0's slot, written last.
    assert_eq!(
        values(&store, "x", t0 - 10, t0 + 20),
        [Some(7.0), Some(2.0), Some(3.0)]
    );
    store.flush().expect("flush");
    assert_eq!(
        values(&store, "x", t0 - 10, t0 + 20),
        [Some(7.0), Some(2.0), Some(3.0)]
    );
}

#[test]
fn unflushed_points_survive_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = now() - now() % 10 - 600;
    {
        let store = Store::open(opts(dir.path())).expect("open");
        store
            .write(&batch(&[("c;host=w1", t0, 5.0)]), Durability::Sync)
            .expect("write");
        store.flush().expect("flush");
        store
            .write(
                &batch(&[("c;host=w1", t0 + 10, 6.0), ("d.e", t0, 1.5)]),
                Durability::Sync,
            )
            .expect("write");
        // Dropped without close: the second write is only in the log.
    }
    let progress = std::sync::Arc::new(tally_store::Recovery::default());
    let mut o = opts(dir.path());
    o.progress = Some(progress.clone());
    let store = Store::open(o).expect("reopen");
    // Recovery reported its progress: every remaining log record replayed.
    let p = progress.snapshot();
    assert_eq!((p.done, p.total), (1, 1));
    assert_eq!(
        values(&store, "c;host=w1", t0 - 10, t0 + 10),
        [Some(5.0), Some(6.0)]
    );
    assert_eq!(values(&store, "d.e", t0 - 10, t0), [Some(1.5)]);
    assert_eq!(store.series_count(), 2);
    assert_eq!(
        store.select_by_tags(&["host=w1"]).expect("valid"),
        ["c;host=w1"]
    );
    // The replay flushed: the log is empty and a second reopen finds the same data.
    drop(store);
    let store = Store::open(opts(dir.path())).expect("reopen");
    assert_eq!(store.head_points(), 0);
    assert_eq!(
        values(&store, "c;host=w1", t0 - 10, t0 + 10),
        [Some(5.0), Some(6.0)]
    );
}

#[test]
fn rollups_are_exact_and_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(opts(dir.path())).expect("open");
    let t0 = now() - now() % 60 - 3600;
    let pts: Vec<(&str, i64, f64)> = (0..12)
        .map(|i| ("rolled.a", t0 + i * 10, (i % 5) as f64))
        .collect();
    // Half before one flush, half after; then everything again (an agent re-shipping).
    store
        .write(&batch(&pts[..7]), Durability::Sync)
        .expect("write");
    store.flush().expect("flush");
    store
        .write(&batch(&pts[7..]), Durability::Sync)
        .expect("write");
    let read = |agg| {
        store
            .read_archive("rolled.a", 1, t0 - 60, t0 + 60, agg, now())
            .expect("read")
            .values
    };
    // Slot t0: values 0,1,2,3,4,0 ; slot t0+60: 1,2,3,4,0,1.
    let check = |read: &dyn Fn(Aggregate) -> Vec<Option<f64>>| {
        assert_eq!(read(Aggregate::Sum), [Some(10.0), Some(11.0)]);
        assert_eq!(read(Aggregate::Count), [Some(6.0), Some(6.0)]);
        assert_eq!(read(Aggregate::Min), [Some(0.0), Some(0.0)]);
        assert_eq!(read(Aggregate::Max), [Some(4.0), Some(4.0)]);
        assert_eq!(read(Aggregate::Last), [Some(0.0), Some(1.0)]);
        assert_eq!(
            read(Aggregate::Average),
            [Some(10.0 / 6.0), Some(11.0 / 6.0)]
        );
    };
    check(&read);
    store.flush().expect("flush");
    check(&read);
    store.write(&batch(&pts), Durability::Sync).expect("write");
    store.flush().expect("flush");
    check(&read);
    // The finest archive is chosen while it covers `from`.
    assert_eq!(
        store
            .read("rolled.a", t0 - 10, t0 + 10, None)
            .expect("read")
            .expect("exists")
            .step,
        10
    );
    assert_eq!(
        store
            .read("rolled.a", now() - 2 * 86_400, now(), None)
            .expect("read")
            .expect("exists")
            .step,
        60
    );
}

/// Issue 17: a point older than every archive of its series keeps (a timestamp of 17, say)
/// was counted "accepted" and could never be read. It is refused with a reason that names the
/// point and the retention, counted apart, and creates no series; the points around it go in.
#[test]
fn issue_17_a_point_outside_every_retention_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(opts(dir.path())).expect("open");
    let t = now() - now() % 10 - 60;
    // The default here keeps 1 day; `rolled.` keeps 7 days in its coarser archive.
    let two_days = t - 2 * 86_400;
    let written = store
        .write(
            &batch(&[
                ("young", t, 1.0),
                ("ancient", 17, 2.0),
                ("young", two_days, 3.0),
                ("rolled.old", two_days, 4.0),
            ]),
            Durability::Sync,
        )
        .expect("write");
    assert_eq!((written.points, written.outside_retention), (2, 2));
    assert_eq!(
        written.reasons,
        [
            "point \"ancient\" at 17 is older than the 1d its series keeps (retentions 10s:1d)",
            &format!(
                "point \"young\" at {two_days} is older than the 1d its series keeps \
                 (retentions 10s:1d)"
            ),
        ]
    );
    assert_eq!(values(&store, "young", t - 10, t), [Some(1.0)]);
    assert_eq!(
        values(&store, "rolled.old", two_days - 60, two_days)
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        [4.0],
        "within the 7 days of its coarser archive"
    );
    assert!(
        store.read("ancient", 0, 20, None).expect("read").is_none(),
        "no series for a refused point"
    );
    let metric = |name: &str| {
        store
            .metrics()
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    };
    assert_eq!(metric("points_outside_retention"), Some(2));
    assert_eq!(metric("points_written"), Some(2));
}

#[test]
fn find_and_expand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(opts(dir.path())).expect("open");
    let t = now();
    store
        .write(
            &batch(&[
                ("servers.web1.cpu", t, 1.0),
                ("servers.web2.cpu", t, 1.0),
                ("servers.db1.disk", t, 1.0),
            ]),
            Durability::Buffered,
        )
        .expect("write");
    let found: Vec<String> = store
        .find("servers.*")
        .expect("valid")
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(found, ["servers.db1", "servers.web1", "servers.web2"]);
    assert_eq!(
        store.expand("servers.web*.cpu").expect("valid"),
        ["servers.web1.cpu", "servers.web2.cpu"]
    );
    assert!(store.find("servers.{").is_err());
}

#[test]
fn events_are_kept_in_time_order_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(opts(dir.path())).expect("open");
        store
            .add_event(200, "deploy", "v2", vec!["deploy".into(), "web".into()])
            .expect("event");
        store
            .add_event(100, "incident", "cdn", vec!["cdn".into()])
            .expect("event");
    }
    let store = Store::open(opts(dir.path())).expect("reopen");
    let id = store.add_event(300, "later", "", vec![]).expect("event");
    assert_eq!(id, 3, "ids continue after a restart");
    let all = store.events(0, 1000).expect("read");
    let whats: Vec<&str> = all.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(whats, ["incident", "deploy", "later"]);
    assert_eq!(store.events(150, 250).expect("read").len(), 1);
}

#[test]
fn deleted_series_are_gone_and_stay_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = now() - now() % 10 - 600;
    {
        let store = Store::open(opts(dir.path())).expect("open");
        store
            .write(
                &batch(&[("del;h=1", t0, 1.0), ("keep;h=1", t0, 2.0)]),
                Durability::Sync,
            )
            .expect("write");
        store.flush().expect("flush");
        store
            .write(&batch(&[("del;h=1", t0 + 10, 3.0)]), Durability::Sync)
            .expect("write");
        assert!(store.delete_series("del;h=1").expect("delete"));
        assert!(!store.delete_series("del;h=1").expect("delete"));
        assert_eq!(store.stored_chunks("del;h=1").expect("count"), 0);
        assert_eq!(store.select_by_tags(&["h=1"]).expect("valid"), ["keep;h=1"]);
        assert_eq!(
            store.register("fresh;z=1;a=2").expect("register"),
            "fresh;a=2;z=1"
        );
    }
    // After a restart (the log replayed), the deleted series does not come back.
    let store = Store::open(opts(dir.path())).expect("reopen");
    assert_eq!(store.select_by_tags(&["h=1"]).expect("valid"), ["keep;h=1"]);
    assert!(store
        .read("del;h=1", t0 - 10, t0 + 10, None)
        .expect("read")
        .is_none());
    assert_eq!(
        store.select_by_tags(&["a=2"]).expect("valid"),
        ["fresh;a=2;z=1"],
        "registered series persist"
    );
    assert_eq!(store.series_count(), 2);
}

/// Issue 3: a constant series' chunk is a few bytes; the decoder took it for corruption and
/// the next flush replaced it, losing the earlier points. Two flushes into one bucket must keep
/// every point.
#[test]
fn issue_3_constant_series_keep_every_point_across_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(opts(dir.path())).expect("open");
    let t0 = now() - now() % 7200 - 7200; // the start of a full, past 2 h bucket
    let first: Vec<(&str, i64, f64)> = (0..360).map(|i| ("const.x", t0 + i * 10, 1.0)).collect();
    let second: Vec<(&str, i64, f64)> = (360..720).map(|i| ("const.x", t0 + i * 10, 1.0)).collect();
    store
        .write(&batch(&first), Durability::Sync)
        .expect("write");
    store.flush().expect("flush");
    store
        .write(&batch(&second), Durability::Sync)
        .expect("write");
    store.flush().expect("flush");
    let got = values(&store, "const.x", t0 - 10, t0 + 7190);
    assert_eq!(got.len(), 720);
    assert!(
        got.iter().all(|v| *v == Some(1.0)),
        "{} points missing",
        got.iter().filter(|v| v.is_none()).count()
    );
    assert_eq!(
        store
            .stats()
            .corrupt_chunks
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// Reads agree with a model of last-write-wins per step slot, for head points and flushed
/// chunks alike: runs a step apart (the read's fast path), gaps, unaligned times, duplicates
/// and points written out of order, over ranges that cut runs at either end.
#[test]
fn reads_match_last_write_wins_over_runs_gaps_and_disorder() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(opts(dir.path())).expect("open");
    let base = now() - now() % 10 - 20_000;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for case in 0..12 {
        let name = format!("model.s{case}");
        let mut model: BTreeMap<i64, f64> = BTreeMap::new();
        let mut t = base + next(10) as i64;
        for round in 0..3 {
            let mut points = Vec::new();
            for _ in 0..200 {
                t = match next(20) {
                    0 => t + 10 * (2 + next(5) as i64),
                    1 => t - 10 * next(30) as i64,
                    2 => t + 1 + next(9) as i64,
                    3 => t,
                    _ => t + 10,
                };
                let v = (case * 10_000 + points.len()) as f64;
                points.push((name.as_str(), t, v));
                model.insert(t - t.rem_euclid(10), v);
            }
            store
                .write(&batch(&points), Durability::Sync)
                .expect("write");
            // The first rounds go to chunks, the last stays in the head.
            if round < 2 {
                store.flush().expect("flush");
            }
        }
        let lo = *model.keys().next().expect("points");
        let hi = *model.keys().next_back().expect("points");
        for _ in 0..10 {
            let from = lo - 30 + next((hi - lo + 60) as u64) as i64;
            let until = from + next((hi - from + 60).max(1) as u64) as i64;
            let first = from - from.rem_euclid(10) + 10;
            let last = until - until.rem_euclid(10);
            let want: Vec<Option<f64>> = (0..)
                .map(|k| first + k * 10)
                .take_while(|&s| s <= last)
                .map(|s| model.get(&s).copied())
                .collect();
            assert_eq!(
                values(&store, &name, from, until),
                want,
                "{name} ({from}, {until}]"
            );
        }
    }
}

/// A read reports the decimal places that hold every value it returns, through chunks of
/// different places and head points, and promises nothing once one value is a float.
#[test]
fn reads_report_the_decimal_places_of_what_they_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(opts(dir.path())).expect("open");
    let t0 = now() - now() % 10 - 600;
    let places = |name: &str| {
        let s = store
            .read(name, t0 - 10, t0 + 100, None)
            .expect("read")
            .expect("exists");
        for v in s.values.iter().flatten() {
            let Some(k) = s.places else { break };
            let x = (v * 10f64.powi(k as i32)).round();
            assert_eq!(x / 10f64.powi(k as i32), *v, "{v} at {k}");
        }
        s.places
    };
    let write = |points: &[(&str, i64, f64)]| {
        store
            .write(&batch(points), Durability::Sync)
            .expect("write");
    };
    write(&[("d.a", t0, 3.0), ("d.a", t0 + 10, 4.0), ("f.a", t0, 0.5)]);
    assert_eq!(places("d.a"), Some(0), "head points only");
    store.flush().expect("flush");
    assert_eq!(places("d.a"), Some(0), "a chunk of counts");
    write(&[("d.a", t0 + 20, 0.25)]);
    assert_eq!(places("d.a"), Some(2), "a head point of more places");
    store.flush().expect("flush");
    assert_eq!(
        places("d.a"),
        Some(2),
        "two chunks, the places of the finer"
    );
    write(&[("d.a", t0 + 30, 1.0 / 3.0)]);
    assert_eq!(places("d.a"), None, "a float in the head");
    store.flush().expect("flush");
    assert_eq!(places("d.a"), None, "a float chunk");
    write(&[("f.a", t0 + 10, std::f64::consts::PI)]);
    store.flush().expect("flush");
    assert_eq!(places("f.a"), None);
}
