//! Issue 12: `graphType=pie` and `format=pdf` on `/render`, over a real store and next to a real
//! graphite-web 1.1.8.
//!
//! - Over a store fed through its ingest API: a slice per series, sized by `pieMode`
//!   (average, maximum, minimum), `name:value` literals among them, "No Data", the errors, and
//!   the PDF of a line graph and of a pie.
//! - Next to graphite-web (storage-free targets: literals and `sinFunction`): the same pies,
//!   pixel for pixel but for the text's antialiasing, and the PDF's answer.

use serde_json::Value;

use crate::compat::{enc, get};
use crate::graphite_cluster::bytes;
use crate::graphite_web::GraphiteWeb;
use crate::proc::{ingest, unix_now, StoreProc};

fn png(body: &[u8]) -> tiny_skia::Pixmap {
    tiny_skia::Pixmap::decode_png(body).expect("a png")
}

fn rgb(p: &tiny_skia::Pixmap, x: u32, y: u32) -> (u8, u8, u8) {
    let px = p.pixel(x, y).expect("inside").demultiply();
    (px.red(), px.green(), px.blue())
}

/// How much of the image is exactly the colour `c`.
fn share(p: &tiny_skia::Pixmap, c: (u8, u8, u8)) -> f64 {
    let n = (0..p.height())
        .flat_map(|y| (0..p.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| rgb(p, x, y) == c)
        .count();
    n as f64 / f64::from(p.width() * p.height())
}

/// The page size a PDF's (uncompressed) page dictionary gives.
fn media_box(pdf: &[u8]) -> String {
    let text = String::from_utf8_lossy(pdf);
    let at = text.find("/MediaBox").expect("a MediaBox");
    let end = text[at..].find(']').expect("its end");
    text[at + "/MediaBox".len()..at + end + 1].trim().to_owned()
}

#[test]
fn issue_12_pie_graphs_and_pdf_over_a_real_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = StoreProc::start_quiet(dir.path());
    let t0 = unix_now() / 60 * 60 - 600;
    let mut text = String::new();
    for (i, (a, b)) in [(1.0, 4.0), (2.0, 4.0), (9.0, 4.0)].iter().enumerate() {
        let t = t0 + 60 * i as i64;
        text.push_str(&format!("pie.a {a} {t}\npie.b {b} {t}\n"));
    }
    ingest(&tally.http.to_string(), &text);
    let range = format!("from={}&until={}", t0 - 60, t0 + 180);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, b) = get(&tally.url(&format!("/render?target=pie.*&{range}&format=json")));
        let v: Value = serde_json::from_str(&b).unwrap_or(Value::Null);
        let points = |i: usize| {
            v[i]["datapoints"]
                .as_array()
                .map_or(0, |d| d.iter().filter(|p| !p[0].is_null()).count())
        };
        if points(0) == 3 && points(1) == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never stored: {b}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let bare = "hideLegend=true&valueLabels=none&colorList=ff0000,0000ff";
    let pie = |targets: &str, extra: &str| {
        let (s, c, body) = bytes(&tally.url(&format!(
            "/render?graphType=pie&{targets}&{range}&{bare}{extra}"
        )));
        assert_eq!((s, c.as_str()), (200, "image/png"), "{targets}{extra}");
        png(&body)
    };
    // pie.a is 1, 2, 9 and pie.b 4, 4, 4: red is a's share of the disc.
    let disc = std::f64::consts::PI * 109.25 * 109.25 / (330.0 * 250.0);
    for (mode, a, b) in [
        ("", 4.0, 4.0),
        ("&pieMode=average", 4.0, 4.0),
        ("&pieMode=maximum", 9.0, 4.0),
        ("&pieMode=minimum", 1.0, 4.0),
    ] {
        let p = pie("target=pie.*", mode);
        let (red, blue) = (share(&p, (255, 0, 0)) / disc, share(&p, (0, 0, 255)) / disc);
        let want = a / (a + b);
        assert!(
            (red - want).abs() < 0.01 && (blue - (1.0 - want)).abs() < 0.01,
            "{mode}: red {red}, blue {blue}, not {want}"
        );
    }
    // A literal slice among series, in target order: lit:8 is the first colour.
    let p = pie("target=lit:8&target=pie.b", "&pieMode=maximum");
    assert!((share(&p, (255, 0, 0)) / disc - 2.0 / 3.0).abs() < 0.01);
    // Nothing matched: graphite's red "No Data".
    let p = pie("target=nosuch.*", "");
    let red = (0..p.height())
        .flat_map(|y| (0..p.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let (r, g, b) = rgb(&p, x, y);
            r > 150 && g < 100 && b < 120
        })
        .count();
    assert!(red > 50, "\"No Data\" in red: {red}");
    // A pie asked for json is still graphite-web's PNG; svg is svg.
    let (s, c, _) = bytes(&tally.url(&format!(
        "/render?graphType=pie&target=pie.*&{range}&format=json"
    )));
    assert_eq!((s, c.as_str()), (200, "image/png"));
    let (s, c, body) = bytes(&tally.url(&format!(
        "/render?graphType=pie&target=pie.*&{range}&format=svg"
    )));
    assert_eq!((s, c.as_str()), (200, "image/svg+xml"));
    assert!(String::from_utf8_lossy(&body).contains(">pie.a</text>"));

    // PDF: a line graph and a pie, pages of the size asked.
    for (q, size) in [
        ("target=pie.*&width=600&height=300", "[0 0 600 300]"),
        (
            "graphType=pie&target=pie.*&pieMode=maximum",
            "[0 0 330 250]",
        ),
    ] {
        let (s, c, body) = bytes(&tally.url(&format!("/render?{q}&{range}&format=pdf")));
        assert_eq!((s, c.as_str()), (200, "application/x-pdf"), "{q}");
        assert!(body.starts_with(b"%PDF-") && body.trim_ascii_end().ends_with(b"%%EOF"));
        assert_eq!(media_box(&body), size, "{q}");
    }

    // Mistakes are 400s that say what is wrong.
    for (q, msg) in [
        (
            "graphType=bar&target=pie.a",
            "parameter \"graphType\": \"bar\" is not one of line, pie",
        ),
        (
            "graphType=pie&target=a:ten",
            "target \"a:ten\": a pie slice is name:value, and \"ten\" is not a number",
        ),
        (
            "graphType=pie&target=pie.a&pieMode=median",
            "parameter \"pieMode\": \"median\" is not one of average, maximum, minimum",
        ),
        (
            "graphType=pie&target=a:1&valueLabels=all",
            "parameter \"valueLabels\": \"all\" is not one of none, number, percent",
        ),
        (
            "graphType=pie&target=a:1&target=b:-1",
            "graphType=pie: the slices' values add up to 0, so none has a size",
        ),
        (
            "graphType=pie&target=a:1&format=xml",
            "format \"xml\" is not supported",
        ),
    ] {
        let (s, body) = get(&tally.url(&format!("/render?{q}&{range}")));
        assert_eq!(s, 400, "{q}: {body}");
        assert!(body.starts_with(msg), "{q}: {body}");
    }
}

/// The share of pixels that differ by more than 40 in a channel.
fn differing(a: &tiny_skia::Pixmap, b: &tiny_skia::Pixmap) -> f64 {
    let n = (0..a.height())
        .flat_map(|y| (0..a.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let (p, q) = (rgb(a, x, y), rgb(b, x, y));
            p.0.abs_diff(q.0) > 40 || p.1.abs_diff(q.1) > 40 || p.2.abs_diff(q.2) > 40
        })
        .count();
    n as f64 / f64::from(a.width() * a.height())
}

/// The pixels of dark text on the slices: in each 8x8 cell whose commonest colour is a slice's
/// (not the background's), those that are that colour darkened by a third or more (text,
/// antialiased or not; not the edge between two colours).
fn ink(p: &tiny_skia::Pixmap) -> Vec<(u32, u32)> {
    let background = rgb(p, 0, 0);
    let lum =
        |c: (u8, u8, u8)| 0.3 * f64::from(c.0) + 0.59 * f64::from(c.1) + 0.11 * f64::from(c.2);
    let mut out = Vec::new();
    for cy in 0..p.height() / 8 {
        for cx in 0..p.width() / 8 {
            let at = |i: u32| (cx * 8 + i % 8, cy * 8 + i / 8);
            let mut counts = std::collections::BTreeMap::new();
            for i in 0..64 {
                let (x, y) = at(i);
                *counts.entry(rgb(p, x, y)).or_insert(0) += 1;
            }
            let Some((&m, _)) = counts.iter().max_by_key(|(_, n)| **n) else {
                continue;
            };
            if lum(m) < 60.0 || m == background {
                continue;
            }
            for i in 0..64 {
                let (x, y) = at(i);
                let q = rgb(p, x, y);
                let k = lum(q) / lum(m);
                let on_line = [(q.0, m.0), (q.1, m.1), (q.2, m.2)]
                    .iter()
                    .all(|&(a, b)| (f64::from(a) - k * f64::from(b)).abs() < 16.0);
                if k < 0.65 && on_line {
                    out.push((x, y));
                }
            }
        }
    }
    out
}

/// The boxes (x0, y0, x1, y1) of the slices' labels: ink pixels grouped by 4x4 cells that
/// touch, so the letters of a label are one piece, and pieces of at least 5x5 pixels (the
/// seams where two antialiased slices meet are thinner).
fn text_boxes(p: &tiny_skia::Pixmap) -> Vec<(u32, u32, u32, u32)> {
    let pixels = ink(p);
    let cells: std::collections::BTreeSet<(i64, i64)> = pixels
        .iter()
        .map(|&(x, y)| (i64::from(x / 4), i64::from(y / 4)))
        .collect();
    let mut piece: std::collections::BTreeMap<(i64, i64), usize> = Default::default();
    let mut n = 0;
    for &c in &cells {
        if piece.contains_key(&c) {
            continue;
        }
        let mut todo = vec![c];
        piece.insert(c, n);
        while let Some((x, y)) = todo.pop() {
            for d in [
                (-1, -1),
                (-1, 0),
                (-1, 1),
                (0, -1),
                (0, 1),
                (1, -1),
                (1, 0),
                (1, 1),
            ] {
                let next = (x + d.0, y + d.1);
                if cells.contains(&next) && !piece.contains_key(&next) {
                    piece.insert(next, n);
                    todo.push(next);
                }
            }
        }
        n += 1;
    }
    let mut boxes = vec![(u32::MAX, u32::MAX, 0, 0); n];
    for &(x, y) in &pixels {
        let b = &mut boxes[piece[&(i64::from(x / 4), i64::from(y / 4))]];
        *b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
    }
    boxes.retain(|b| b.2 - b.0 >= 4 && b.3 - b.1 >= 4);
    boxes.sort_by_key(|b| (b.1 / 8, b.0));
    boxes
}

/// Whether every text box of `a` has one in `b` within `d` pixels on every side, and back.
fn same_text(a: &[(u32, u32, u32, u32)], b: &[(u32, u32, u32, u32)], d: u32) -> bool {
    let near = |p: &(u32, u32, u32, u32), q: &(u32, u32, u32, u32)| {
        p.0.abs_diff(q.0) <= d
            && p.1.abs_diff(q.1) <= d
            && p.2.abs_diff(q.2) <= d
            && p.3.abs_diff(q.3) <= d
    };
    a.iter().all(|p| b.iter().any(|q| near(p, q))) && b.iter().all(|q| a.iter().any(|p| near(p, q)))
}

#[test]
fn issue_12_pie_graphs_and_pdf_match_graphite_web() {
    let gw = GraphiteWeb::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let tally = StoreProc::start_quiet(dir.path());
    let range = "from=1700000000&until=1700003600";
    let sine = enc("absolute(sinFunction('sine',10,60))");
    let mut failures = Vec::new();
    let mut pngs = Vec::new();
    // Each run's pairs go to the target's tmp dir, to look at side by side.
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("issue12");
    std::fs::create_dir_all(&artifacts).expect("mkdir");
    for (i, q) in [
        "target=alpha:10&target=beta:30&target=gamma:2&title=Pie".to_owned(),
        "target=alpha:10&target=beta:30&target=gamma:2&valueLabels=number&pieLabels=rotated&areaAlpha=0.5&hideLegend=true".into(),
        format!("target=fixed:10&target={sine}&colorList=ff0000,00ff00&width=400&height=300"),
        format!("target=fixed:10&target={sine}&colorList=ff0000,00ff00&width=400&height=300&pieMode=maximum"),
        "target=a:1&target=b:1&target=c:1&target=d:1&target=e:97&valueLabelsMin=0.5&bgcolor=eeeeee&fgcolor=333333".into(),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/render?graphType=pie&{q}&{range}");
        let (ts, tc, tb) = bytes(&tally.url(&path));
        let (gs, gc, gb) = bytes(&gw.url(&path));
        for (who, b) in [("tally", &tb), ("graphite_web", &gb)] {
            std::fs::write(artifacts.join(format!("issue12_pie_{i}_{who}.png")), b).expect("write");
        }
        if (ts, tc.as_str()) != (200, "image/png") || (gs, gc.as_str()) != (200, "image/png") {
            failures.push(format!("{q}: {ts} {tc} vs graphite-web's {gs} {gc}"));
            continue;
        }
        let (t, g) = (png(&tb), png(&gb));
        if (t.width(), t.height()) != (g.width(), g.height()) {
            failures.push(format!(
                "{q}: {}x{} vs graphite-web's {}x{}",
                t.width(),
                t.height(),
                g.width(),
                g.height()
            ));
            continue;
        }
        // Slices in the same order, sizes and colours: only the text's edges differ (graphite's
        // cairo draws it aliased and hinted, Tally antialiased).
        let d = differing(&t, &g);
        if d > 0.03 {
            failures.push(format!("{q}: {:.1} % of the pixels differ", d * 100.0));
        }
        // The labels: in the same places, each as wide and as high (a digit is 6 pixels).
        let (tt, gt) = (text_boxes(&t), text_boxes(&g));
        if tt.is_empty() || !same_text(&tt, &gt, 2) {
            failures.push(format!("{q}: text at {tt:?}\n  graphite-web's at {gt:?}"));
        }
        pngs.push(tb);
    }
    // pieMode changed the sine's slice (and the test would see it if it did not).
    if pngs.len() >= 4 && pngs[2] == pngs[3] {
        failures.push("pieMode=maximum drew the average's pie".into());
    }
    // PDF: both answer application/x-pdf; graphite-web's page is cairo's 300 dpi shrink.
    let path = format!("/render?graphType=pie&target=alpha:10&target=beta:30&format=pdf&{range}");
    let (ts, tc, tb) = bytes(&tally.url(&path));
    let (gs, gc, gb) = bytes(&gw.url(&path));
    assert_eq!((ts, tc.as_str()), (gs, gc.as_str()));
    assert_eq!((ts, tc.as_str()), (200, "application/x-pdf"));
    assert!(tb.starts_with(b"%PDF-") && gb.starts_with(b"%PDF-"));
    assert_eq!(media_box(&tb), "[0 0 330 250]");
    assert_eq!(media_box(&gb), "[ 0 0 79.2 60 ]");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
