//! graphite-web 1.1.8's `PieGraph` (`render/glyph.py`), `graphType=pie`: one slice per target,
//! a `name:value` literal or each series of an expression reduced to one number by `pieMode`
//! (`render/views.py` and the `PieFunctions`), clockwise from twelve o'clock in the colour
//! list's order, under the title and above the legend that [`Graph`] draws for line graphs
//! too, each slice labelled at half its radius with its percent or value.

use crate::error::{QueryError, Result};
use crate::graphite::graph::base::Graph;
use crate::graphite::graph::canvas::{Align, Canvas, VAlign};
use crate::graphite::graph::options::{Opt, Options};
use crate::series::TimeSeries;

/// `pieMode`: how a series becomes one slice (graphite's `pieAverage`, `pieMaximum`,
/// `pieMinimum`), over its non-null values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PieMode {
    Average,
    Maximum,
    Minimum,
}

impl PieMode {
    /// The `pieMode` parameter: average when absent, or a 400 naming it.
    pub(crate) fn parse(v: Option<&str>) -> Result<PieMode> {
        match v {
            None | Some("average") => Ok(PieMode::Average),
            Some("maximum") => Ok(PieMode::Maximum),
            Some("minimum") => Ok(PieMode::Minimum),
            Some(other) => Err(QueryError::BadRequest(format!(
                "parameter \"pieMode\": \"{other}\" is not one of average, maximum, minimum"
            ))),
        }
    }

    /// The series' slice: `None` when it has no value (graphite's safe functions), which the
    /// pie takes as 0 (`func(...) or 0`).
    pub(crate) fn apply(self, s: &TimeSeries) -> Option<f64> {
        let values = s.raw().iter().flatten().copied().filter(|v| !v.is_nan());
        match self {
            PieMode::Average => {
                let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
                (n > 0).then(|| sum / n as f64)
            }
            PieMode::Maximum => values.reduce(f64::max),
            PieMode::Minimum => values.reduce(f64::min),
        }
    }
}

/// The slices of `targets` in their order, as graphite-web's render view makes them: a target
/// with a `:` is a literal `name:value`, any other is evaluated by `eval` and each of its
/// series is a slice named after it, reduced by `mode`.
pub(crate) fn slices<'a>(
    targets: impl IntoIterator<Item = &'a str>,
    mode: PieMode,
    mut eval: impl FnMut(&str) -> Result<Vec<TimeSeries>>,
) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for target in targets {
        if let Some((name, value)) = target.split_once(':') {
            let v = value.trim().parse::<f64>().map_err(|_| {
                QueryError::BadRequest(format!(
                    "target \"{target}\": a pie slice is name:value, and \"{value}\" is not a number"
                ))
            })?;
            out.push((name.to_owned(), v));
        } else {
            for s in eval(target)? {
                let v = mode.apply(&s).unwrap_or(0.0);
                out.push((s.name, v));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ValueLabels {
    None,
    Number,
    Percent,
}

struct Slice {
    name: String,
    value: f64,
    percent: f64,
    color: String,
    mid_angle: f64,
}

/// Python's `"%.2f"`, `nan` and `inf` spelt as Python spells them.
fn fixed2(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:.2}")
    }
}

/// A slice's label (graphite's `drawLabels`), or none under `valueLabelsMin`.
fn label(kind: ValueLabels, value: f64, percent: f64, min: f64) -> Option<String> {
    match kind {
        ValueLabels::Percent if percent * 100.0 >= min => {
            Some(format!("%{}", fixed2(percent * 100.0)))
        }
        ValueLabels::Number if value >= min => Some(
            if (value < 10.0 && value != value.trunc()) || !value.is_finite() {
                fixed2(value)
            } else if value.trunc() == 0.0 {
                "0".into()
            } else {
                // Python's int(): every digit of the truncated value.
                format!("{:.0}", value.trunc())
            },
        ),
        _ => None,
    }
}

pub(crate) struct PieGraph {
    g: Graph,
    slices: Vec<Slice>,
    x0: f64,
    y0: f64,
    radius: f64,
}

impl PieGraph {
    /// Draws `data` (name, value) with the options; `svg` picks the surface.
    pub(crate) fn draw(data: Vec<(String, f64)>, p: Options, svg: bool) -> Result<Canvas> {
        let g = Graph::new(p, svg)?;
        // What graphite checks after drawing the slices (its errors answer 500), checked first.
        let value_labels = match g.p.get("valueLabels") {
            None => ValueLabels::Percent,
            Some(Opt::Str(s)) if s == "percent" => ValueLabels::Percent,
            Some(Opt::Str(s)) if s == "number" => ValueLabels::Number,
            Some(Opt::Str(s)) if s == "none" => ValueLabels::None,
            Some(o) => {
                return Err(QueryError::BadRequest(format!(
                    "parameter \"valueLabels\": \"{}\" is not one of none, number, percent",
                    o.text()
                )))
            }
        };
        let labels_min = g.p.num_or("valueLabelsMin", 5.0)?;
        let labels_color =
            g.p.get("valueLabelsColor")
                .filter(|o| o.truthy())
                .map_or_else(|| "black".to_owned(), Opt::text);
        let labels_rgba = g.color(&labels_color, 1.0, false, "valueLabelsColor")?;
        let mut pie = PieGraph {
            g,
            slices: Vec::new(),
            x0: 0.0,
            y0: 0.0,
            radius: 0.0,
        };
        if data.is_empty() {
            pie.g.no_data()?;
            return Ok(pie.g.c);
        }
        let total: f64 = data.iter().map(|d| d.1).sum();
        if total == 0.0 {
            // graphite divides by it (ZeroDivisionError, a 500).
            return Err(QueryError::BadRequest(
                "graphType=pie: the slices' values add up to 0, so none has a size".into(),
            ));
        }
        // `areaAlpha` when truthy and a number (Python's float() of it), else opaque.
        let alpha = match pie.g.p.get("areaAlpha") {
            Some(o) if o.truthy() => match o {
                Opt::Int(i) => *i as f64,
                Opt::Float(f) => *f,
                Opt::Bool(_) => 1.0,
                Opt::Str(s) => s.trim().parse().unwrap_or(1.0),
            },
            _ => 1.0,
        };
        for (name, value) in data {
            let color = pie.g.next_color();
            // Checked here, so a bad one is named as the list's before the legend draws it.
            pie.g.color(&color, alpha, false, "colorList")?;
            pie.slices.push(Slice {
                name,
                value,
                percent: value / total,
                color,
                mid_angle: 0.0,
            });
        }
        pie.g.title()?;
        pie.g.set_font(None);
        if !pie.g.p.flag("hideLegend") {
            let elements = pie
                .slices
                .iter()
                .map(|s| (s.name.clone(), s.color.clone(), false))
                .collect();
            pie.g.draw_legend(elements, false, false)?;
        }
        pie.draw_slices(alpha)?;
        if value_labels != ValueLabels::None {
            pie.g.set_font(None);
            pie.g.c.set_color(labels_rgba);
            pie.draw_labels(value_labels, labels_min)?;
        }
        Ok(pie.g.c)
    }

    fn draw_slices(&mut self, alpha: f64) -> Result<()> {
        use std::f64::consts::{PI, TAU};
        let a = &self.g.area;
        let mut theta = 3.0 * PI / 2.0;
        let half_x = (a.xmax - a.xmin) / 2.0;
        let half_y = (a.ymax - a.ymin) / 2.0;
        let (x0, y0) = (a.xmin + half_x, a.ymin + half_y);
        let radius = half_x.min(half_y) * 0.95;
        (self.x0, self.y0, self.radius) = (x0, y0, radius);
        for s in &mut self.slices {
            let c = self.g.color(&s.color, alpha, false, "colorList")?;
            self.g.c.set_color(c);
            self.g.c.move_to(x0, y0);
            let phi = theta + TAU * s.percent;
            self.g.c.arc(x0, y0, radius, theta, phi);
            self.g.c.line_to(x0, y0);
            self.g.c.fill();
            s.mid_angle = ((theta + phi) / 2.0).rem_euclid(TAU);
            theta = phi;
        }
        Ok(())
    }

    fn draw_labels(&mut self, kind: ValueLabels, min: f64) -> Result<()> {
        use std::f64::consts::PI;
        let rotated = self.g.p.str("pieLabels").as_deref() == Some("rotated");
        for s in &self.slices {
            let Some(label) = label(kind, s.value, s.percent, min) else {
                continue;
            };
            let mut theta = s.mid_angle;
            let x = self.x0 + self.radius / 2.0 * theta.cos();
            let y = self.y0 + self.radius / 2.0 * theta.sin();
            if !(x.is_finite() && y.is_finite()) {
                // A slice of a NaN or infinite value has no place on the pie.
                continue;
            }
            if rotated {
                if theta > PI / 2.0 && theta <= 3.0 * PI / 2.0 {
                    theta -= PI;
                }
                self.g.c.text(
                    &label,
                    x,
                    y,
                    Align::Center,
                    VAlign::Middle,
                    theta.to_degrees(),
                )?;
            } else {
                self.g
                    .c
                    .text(&label, x, y, Align::Center, VAlign::Middle, 0.0)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pie_modes_are_graphites_over_non_null_values() {
        let s = TimeSeries::new("s", 0, 60, vec![Some(1.0), None, Some(5.0), Some(3.0)]);
        assert_eq!(PieMode::Average.apply(&s), Some(3.0));
        assert_eq!(PieMode::Maximum.apply(&s), Some(5.0));
        assert_eq!(PieMode::Minimum.apply(&s), Some(1.0));
        let empty = TimeSeries::new("e", 0, 60, vec![None, None]);
        assert_eq!(PieMode::Average.apply(&empty), None);
        assert_eq!(PieMode::parse(None).ok(), Some(PieMode::Average));
        let e = PieMode::parse(Some("median")).expect_err("not a mode");
        assert_eq!(
            e.to_string(),
            "parameter \"pieMode\": \"median\" is not one of average, maximum, minimum"
        );
    }

    #[test]
    fn literal_slices_and_series_in_target_order() {
        let got = slices(["a:10", "sum(x)", " b : 2.5 "], PieMode::Maximum, |t| {
            assert_eq!(t, "sum(x)");
            Ok(vec![
                TimeSeries::new("x.1", 0, 60, vec![Some(1.0), Some(4.0)]),
                TimeSeries::new("x.2", 0, 60, vec![None]),
            ])
        })
        .expect("slices");
        assert_eq!(
            got,
            vec![
                ("a".into(), 10.0),
                ("x.1".into(), 4.0),
                ("x.2".into(), 0.0),
                (" b ".into(), 2.5)
            ]
        );
        let e = slices(["a:ten"], PieMode::Average, |_| Ok(vec![])).expect_err("bad");
        assert!(e.is_client_error());
        assert_eq!(
            e.to_string(),
            "target \"a:ten\": a pie slice is name:value, and \"ten\" is not a number"
        );
    }

    #[test]
    fn labels_are_pythons() {
        assert_eq!(fixed2(23.809_523), "23.81");
        assert_eq!(fixed2(0.125), "0.12");
        assert_eq!(fixed2(f64::NAN), "nan");
        assert_eq!(fixed2(f64::NEG_INFINITY), "-inf");
        let pct = |p| label(ValueLabels::Percent, 0.0, p, 5.0);
        assert_eq!(pct(0.238_095_238).as_deref(), Some("%23.81"));
        assert_eq!(pct(0.05).as_deref(), Some("%5.00"));
        assert_eq!(pct(0.049), None, "under valueLabelsMin");
        let num = |v| label(ValueLabels::Number, v, 0.5, -1.0);
        assert_eq!(num(2.5).as_deref(), Some("2.50"));
        assert_eq!(num(3.0).as_deref(), Some("3"));
        assert_eq!(num(12.7).as_deref(), Some("12"), "int() truncates");
        assert_eq!(num(-0.5).as_deref(), Some("-0.50"));
        assert_eq!(num(1e20).as_deref(), Some("100000000000000000000"));
        assert_eq!(num(-2.0).as_deref(), None, "under valueLabelsMin");
        assert_eq!(label(ValueLabels::None, 50.0, 0.5, 0.0), None);
    }

    use crate::graphite::graph::tests::{dark_in, no_data_red, rgb};
    use crate::graphite::graph::{render_pie, ImageFormat};
    use std::f64::consts::{PI, TAU};
    use tiny_skia::Pixmap;

    fn draw(slices: &[(&str, f64)], params: &[(&str, &str)]) -> Result<Vec<u8>> {
        render_pie(
            slices.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
            params.iter().copied(),
            ImageFormat::Png,
        )
    }

    fn png(slices: &[(&str, f64)], params: &[(&str, &str)]) -> Pixmap {
        Pixmap::decode_png(&draw(slices, params).expect("draws")).expect("a png")
    }

    /// The pie of a default-sized graph without a legend: the drawing area is 20..320 x
    /// 10..240, so the centre is (170, 125) and the radius 0.95 of 115.
    const CENTRE: (f64, f64) = (170.0, 125.0);
    const RADIUS: f64 = 109.25;

    /// The pixel `frac` of a turn clockwise from twelve o'clock, `r` from the centre.
    fn at(frac: f64, r: f64) -> (u32, u32) {
        let t = 1.5 * PI + TAU * frac;
        (
            (CENTRE.0 + r * t.cos()).round() as u32,
            (CENTRE.1 + r * t.sin()).round() as u32,
        )
    }

    fn count(p: &Pixmap, c: (u8, u8, u8)) -> usize {
        (0..p.height())
            .flat_map(|y| (0..p.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| rgb(p, x, y) == c)
            .count()
    }

    const BARE: [(&str, &str); 3] = [
        ("hideLegend", "true"),
        ("valueLabels", "none"),
        ("colorList", "ff0000,00ff00,0000ff"),
    ];

    #[test]
    fn slices_go_clockwise_from_noon_sized_by_their_values() {
        let p = png(&[("a", 10.0), ("b", 30.0), ("c", 60.0)], &BARE);
        let (red, green, blue) = ((255, 0, 0), (0, 255, 0), (0, 0, 255));
        for k in 0..200 {
            let f = (f64::from(k) + 0.5) / 200.0;
            if [0.0, 0.1, 0.4, 1.0].iter().any(|b| (f - b).abs() < 0.01) {
                continue;
            }
            let want = if f < 0.1 {
                red
            } else if f < 0.4 {
                green
            } else {
                blue
            };
            for r in [0.3, 0.9] {
                let (x, y) = at(f, RADIUS * r);
                assert_eq!(rgb(&p, x, y), want, "{f} of the turn at {r} of the radius");
            }
            let (x, y) = at(f, RADIUS * 1.04);
            assert_eq!(rgb(&p, x, y), (255, 255, 255), "outside the pie at {f}");
        }
        let (r, g, b) = (count(&p, red), count(&p, green), count(&p, blue));
        let disc = PI * RADIUS * RADIUS;
        for (n, share) in [(r, 0.1), (g, 0.3), (b, 0.6)] {
            let got = n as f64 / disc;
            assert!((got - share).abs() < 0.01, "{got} of the disc, not {share}");
        }
        // A negative value sweeps back (cairo turns the arc forward by whole turns).
        let p = png(&[("a", 30.0), ("b", 10.0)], &BARE);
        assert_eq!(rgb(&p, at(0.5, 50.0).0, at(0.5, 50.0).1), red);
        assert_eq!(rgb(&p, at(0.875, 50.0).0, at(0.875, 50.0).1), green);
    }

    /// The dark pixels around a slice's label: at half the radius, its middle angle.
    fn label_ink(p: &Pixmap, mid: f64) -> Vec<(u32, u32)> {
        let (x, y) = at(mid, RADIUS / 2.0);
        dark_in(p, x - 30..x + 30, y - 30..y + 30)
    }

    fn extent(ink: &[(u32, u32)]) -> (u32, u32) {
        let w =
            ink.iter().map(|p| p.0).max().unwrap_or(0) - ink.iter().map(|p| p.0).min().unwrap_or(0);
        let h =
            ink.iter().map(|p| p.1).max().unwrap_or(0) - ink.iter().map(|p| p.1).min().unwrap_or(0);
        (w, h)
    }

    #[test]
    fn value_labels_as_asked() {
        let data = [("a", 10.0), ("b", 30.0), ("c", 60.0)];
        let mids = [0.05, 0.25, 0.7];
        let light = [
            ("hideLegend", "true"),
            ("colorList", "ffff00,00ffff,ff80ff"),
        ];
        let with = |extra: &[(&str, &str)]| png(&data, &[&light[..], extra].concat());
        // percent (the default) from 5 %: "%10.00", "%30.00", "%60.00", about 40 px wide.
        let p = with(&[]);
        for m in mids {
            let ink = label_ink(&p, m);
            let (w, h) = extent(&ink);
            assert!(
                ink.len() > 30 && (30..50).contains(&w) && h < 12,
                "{m}: {w}x{h}"
            );
        }
        let p = with(&[("valueLabelsMin", "15")]);
        assert!(label_ink(&p, 0.05).is_empty(), "10 % is under 15");
        assert!(label_ink(&p, 0.25).len() > 30);
        // number: "10", "30", "60", narrower; valueLabelsMin compares the value.
        let p = with(&[("valueLabels", "number")]);
        for m in mids {
            let (w, _) = extent(&label_ink(&p, m));
            assert!((8..20).contains(&w), "{m}: {w}");
        }
        let p = with(&[("valueLabels", "number"), ("valueLabelsMin", "20")]);
        assert!(label_ink(&p, 0.05).is_empty() && label_ink(&p, 0.7).len() > 10);
        // none: no text on the pie at all.
        let p = with(&[("valueLabels", "none")]);
        assert!(dark_in(&p, 60..280, 15..235).is_empty());
        // valueLabelsColor: red text, no black.
        let p = with(&[("valueLabelsColor", "red")]);
        let (x, y) = at(0.7, RADIUS / 2.0);
        assert!(label_ink(&p, 0.7).is_empty());
        let reddish = (y - 10..y + 10)
            .flat_map(|yy| (x - 30..x + 30).map(move |xx| (xx, yy)))
            .filter(|&(xx, yy)| {
                let (r, g, _) = rgb(&p, xx, yy);
                r > 150 && g < 90
            })
            .count();
        assert!(reddish > 20, "{reddish} red label pixels");
        // pieLabels=rotated: a label at 45 degrees stands as tall as it is wide.
        let quarter = [("a", 25.0), ("b", 75.0)];
        let flat = png(&quarter, &light);
        let turned = png(
            &quarter,
            &[&light[..], &[("pieLabels", "rotated")]].concat(),
        );
        let (fw, fh) = extent(&label_ink(&flat, 0.125));
        let (tw, th) = extent(&label_ink(&turned, 0.125));
        assert!(fh < 12 && fw > 30, "horizontal {fw}x{fh}");
        assert!(th > 20 && tw > 20, "rotated {tw}x{th}");
    }

    #[test]
    fn legend_title_colours_and_no_data() {
        let data = [("first", 1.0), ("second", 3.0)];
        // The legend is the bottom rows, one line of two names; it moves the pie up.
        let shown = png(&data, &[("valueLabels", "none")]);
        let hidden = png(&data, &[("valueLabels", "none"), ("hideLegend", "true")]);
        assert!(dark_in(&shown, 0..330, 230..248).len() > 40, "legend text");
        assert!(dark_in(&hidden, 0..330, 230..248).is_empty(), "no legend");
        assert!((230..248).any(|y| (0..60).any(|x| rgb(&shown, x, y) == (100, 100, 255))));
        // More than 10 slices keep their legend (graphite's LEGEND_MAX_ITEMS is the line graph's).
        let many: Vec<(String, f64)> = (0..12).map(|i| (format!("s{i}"), 1.0)).collect();
        let many: Vec<(&str, f64)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let p = png(&many, &[("valueLabels", "none"), ("height", "400")]);
        assert!(dark_in(&p, 0..330, 340..398).len() > 40);
        // The title on top, in the foreground colour.
        let p = png(&data, &[("title", "Pie+chart"), ("hideLegend", "1")]);
        assert!(dark_in(&p, 100..230, 8..26).len() > 40);
        assert!(dark_in(&hidden, 100..230, 0..12).is_empty());
        // areaAlpha blends the slices over the background; 0 is graphite's falsy, opaque.
        let half = png(
            &[("a", 1.0)],
            &[&BARE[..], &[("areaAlpha", "0.5")]].concat(),
        );
        let (r, g, b) = rgb(&half, 170, 125);
        assert!(
            r == 255 && g.abs_diff(128) <= 2 && b.abs_diff(128) <= 2,
            "{r} {g} {b}"
        );
        let zero = png(&[("a", 1.0)], &[&BARE[..], &[("areaAlpha", "0")]].concat());
        assert_eq!(rgb(&zero, 170, 125), (255, 0, 0));
        // bgcolor and the template's colours.
        let p = png(&data, &[("bgcolor", "black"), ("hideLegend", "1")]);
        assert_eq!(rgb(&p, 2, 2), (0, 0, 0));
        assert_eq!(rgb(&p, at(0.1, 60.0).0, at(0.1, 60.0).1), (100, 100, 255));
        assert_eq!(rgb(&p, at(0.6, 60.0).0, at(0.6, 60.0).1), (0, 200, 0));
        // No slices at all: graphite's red "No Data".
        let p = png(&[], &[]);
        let red = no_data_red(&p);
        assert!(red > 50, "\"No Data\" in red: {red}");
    }

    #[test]
    fn bad_pie_options_are_400s_naming_them() {
        let data = [("a", 1.0)];
        for (k, v, msg) in [
            (
                "valueLabels",
                "all",
                "parameter \"valueLabels\": \"all\" is not one of none, number, percent",
            ),
            (
                "valueLabelsMin",
                "few",
                "parameter \"valueLabelsMin\": \"few\" is not a number",
            ),
            (
                "valueLabelsColor",
                "nosuch",
                "valueLabelsColor: \"nosuch\" is not a colour",
            ),
            (
                "colorList",
                "nosuch",
                "colorList: \"nosuch\" is not a colour",
            ),
            ("width", "0", "parameters \"width\" and \"height\": 0x250"),
        ] {
            let e = draw(&data, &[(k, v)]).expect_err(k);
            assert!(
                e.is_client_error() && e.to_string().starts_with(msg),
                "{k}: {e}"
            );
        }
        let e = draw(&[("a", 1.0), ("b", -1.0)], &[]).expect_err("no size");
        assert_eq!(
            e.to_string(),
            "graphType=pie: the slices' values add up to 0, so none has a size"
        );
        // NaN and infinite values draw what can be drawn and never panic.
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308] {
            draw(&[("a", v), ("b", 1.0)], &[]).expect("draws");
        }
    }

    #[test]
    fn the_svg_pie_is_the_same_drawing() {
        let svg = render_pie(
            vec![("a<b".into(), 1.0), ("c".into(), 3.0)],
            [("title", "t")],
            ImageFormat::Svg,
        )
        .expect("svg");
        let svg = String::from_utf8(svg).expect("utf-8");
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(" C "), "slices are arcs of curves");
        assert!(svg.contains(">%25.00</text>") && svg.contains(">%75.00</text>"));
        assert!(svg.contains(">a&lt;b</text>"), "the legend");
        assert!(svg.contains("fill=\"#6464ff\"") && svg.contains("fill=\"#00c800\""));
        assert!(svg.contains("metadata = {}"));
        assert!(!svg.contains("NaN"));
    }
}
