//! Graph images: `format=png` (and no format at all, graphite-web's default), `format=svg` and
//! `format=pdf`, drawn as graphite-web 1.1.8's `LineGraph` (`line`) and, for `graphType=pie`,
//! its `PieGraph` (`pie`) draw them, with their options (`options`), on what graphite's `Graph`
//! base class sets up for both (`base`: size, colours, fonts, title; `legend`), on a cairo-like
//! canvas with a PNG and an SVG surface (`canvas`); the PDF is the SVG converted (`pdf`). The
//! line graph's axes are `ticks`. The style functions (`color`, `dashed`, `secondYAxis`,
//! `stacked`, ...) reach it through each series' [`crate::series::Style`].

mod base;
mod canvas;
mod legend;
mod line;
mod options;
mod pdf;
mod pie;
mod ticks;

use crate::error::Result;
use crate::series::TimeSeries;

pub(crate) use options::Options;
pub(crate) use pie::{slices as pie_slices, PieMode};

/// The formats graphite-web draws a graph in (`format=png`, `svg`, `pdf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
    Pdf,
}

/// The PNG graphite-web would draw for `series` with the graph options among `params`.
pub fn render_png<'a>(
    series: Vec<TimeSeries>,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<u8>> {
    line::LineGraph::draw(series, Options::from_params(params), false)?
        .canvas
        .into_png()
}

/// graphite's SVG metadata script, `metadata = {...}` (`{}` for a graph without data or a pie).
fn svg_script(meta: Option<serde_json::Value>) -> String {
    let m = meta.map_or_else(|| "{}".to_owned(), |m| m.to_string());
    format!("<script>\n  <![CDATA[\n    metadata = {m}\n  ]]>\n</script>\n")
}

/// The same graph as SVG, with graphite's metadata script (`metadata = {...}`) at its end.
pub fn render_svg<'a>(
    series: Vec<TimeSeries>,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String> {
    let drawn = line::LineGraph::draw(series, Options::from_params(params), true)?;
    Ok(drawn.canvas.into_svg(&svg_script(drawn.meta)))
}

/// The same graph as PDF, a page of `width` x `height` points.
pub fn render_pdf<'a>(
    series: Vec<TimeSeries>,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<u8>> {
    let drawn = line::LineGraph::draw(series, Options::from_params(params), true)?;
    pdf::svg_to_pdf(&drawn.canvas.into_svg(""))
}

/// The pie graphite-web would draw (`graphType=pie`) of `slices` (name, value, in order) with
/// the pie options among `params`, in `format`.
pub fn render_pie<'a>(
    slices: Vec<(String, f64)>,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    format: ImageFormat,
) -> Result<Vec<u8>> {
    let options = Options::for_pie(params);
    match format {
        ImageFormat::Png => pie::PieGraph::draw(slices, options, false)?.into_png(),
        ImageFormat::Svg => Ok(pie::PieGraph::draw(slices, options, true)?
            .into_svg(&svg_script(None))
            .into_bytes()),
        ImageFormat::Pdf => {
            pdf::svg_to_pdf(&pie::PieGraph::draw(slices, options, true)?.into_svg(""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_skia::Pixmap;

    fn flat(name: &str, v: f64, n: usize) -> TimeSeries {
        TimeSeries::new(name, 0, 60, vec![Some(v); n])
    }

    fn png(series: Vec<TimeSeries>, params: &[(&str, &str)]) -> Pixmap {
        let bytes = render_png(series, params.iter().copied()).expect("draws");
        if let Ok(d) = std::env::var("TALLY_GRAPH_DUMP") {
            let n = std::sync::atomic::AtomicUsize::new(0);
            let _ = std::fs::write(
                format!(
                    "{d}/{:?}-{}.png",
                    std::thread::current().name(),
                    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + bytes.len()
                ),
                &bytes,
            );
        }
        Pixmap::decode_png(&bytes).expect("a png")
    }

    /// Pixels in graphite's "No Data" red.
    pub(super) fn no_data_red(p: &Pixmap) -> usize {
        (0..p.height())
            .flat_map(|y| (0..p.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let (r, g, b) = rgb(p, x, y);
                r > 150 && g < 100 && b < 120
            })
            .count()
    }

    pub(super) fn rgb(p: &Pixmap, x: u32, y: u32) -> (u8, u8, u8) {
        let px = p.pixel(x, y).expect("inside").demultiply();
        (px.red(), px.green(), px.blue())
    }

    /// Rows of column `x` whose pixel is mostly the colour `c`.
    fn rows_of(p: &Pixmap, x: u32, c: (u8, u8, u8)) -> Vec<u32> {
        (0..p.height())
            .filter(|&y| {
                let (r, g, b) = rgb(p, x, y);
                r.abs_diff(c.0) < 60 && g.abs_diff(c.1) < 60 && b.abs_diff(c.2) < 60
            })
            .collect()
    }

    #[test]
    fn the_size_asked_and_a_series_where_its_values_put_it() {
        let default = png(vec![flat("a", 1.0, 10)], &[]);
        assert_eq!(
            (default.width(), default.height()),
            (330, 250),
            "graphite's default size"
        );
        let p = png(
            vec![flat("a", 25.0, 61)],
            &[
                ("width", "400"),
                ("height", "200"),
                ("graphOnly", "true"),
                ("yMin", "0"),
                ("yMax", "100"),
                ("colorList", "ff0000"),
                ("lineWidth", "3"),
            ],
        );
        assert_eq!((p.width(), p.height()), (400, 200));
        // graphOnly: the plot is the whole image, so 25 of 0..100 is 150 px from the top.
        for x in [50, 200, 350] {
            let rows = rows_of(&p, x, (255, 0, 0));
            assert!(
                !rows.is_empty() && rows.iter().all(|r| (148..=152).contains(r)),
                "x {x}: {rows:?}"
            );
        }
        assert_eq!(rgb(&p, 5, 5), (255, 255, 255), "white background");
    }

    #[test]
    fn colours_as_asked() {
        let mut s = flat("a", 25.0, 61);
        s.style.color = Some("00ff00".into());
        let p = png(
            vec![s, flat("b", 75.0, 61)],
            &[
                ("graphOnly", "1"),
                ("yMin", "0"),
                ("yMax", "100"),
                ("bgcolor", "black"),
                ("colorList", "blue,ff00ff"),
                ("height", "200"),
                ("lineWidth", "3"),
            ],
        );
        assert_eq!(rgb(&p, 2, 2), (0, 0, 0));
        // color() wins over the list and takes no colour from it: b is the list's first.
        assert!(rows_of(&p, 160, (0, 255, 0))
            .iter()
            .all(|r| (148..=152).contains(r)));
        let blue = rows_of(&p, 160, (100, 100, 255));
        assert!(
            !blue.is_empty() && blue.iter().all(|r| (48..=52).contains(r)),
            "{blue:?}"
        );
    }

    /// Dark pixels (text) in the band of rows.
    fn ink(p: &Pixmap, rows: std::ops::Range<u32>) -> usize {
        dark_in(p, 0..p.width(), rows).len()
    }

    /// The dark pixels (text) in the box of columns `xs` and rows `ys`.
    pub(super) fn dark_in(
        p: &Pixmap,
        xs: std::ops::Range<u32>,
        ys: std::ops::Range<u32>,
    ) -> Vec<(u32, u32)> {
        ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let (r, g, b) = rgb(p, x, y);
                r < 80 && g < 80 && b < 80
            })
            .collect()
    }

    #[test]
    fn the_legend_shown_or_hidden_as_asked() {
        let series = || vec![flat("legend.one", 1.0, 30), flat("legend.two", 2.0, 30)];
        // Without axes, only the legend writes in the bottom rows.
        let shown = png(series(), &[("hideAxes", "true")]);
        let hidden = png(series(), &[("hideLegend", "true"), ("hideAxes", "true")]);
        // The legend is the bottom rows: 2 names in one line, 12 px each at font size 10.
        assert!(ink(&shown, 232..248) > 40, "legend text drawn");
        assert!(ink(&hidden, 232..248) < 5, "no legend");
        // The legend's colour box for the first series is blue (graphite's first colour).
        assert!((232..248).any(|y| (0..100).any(|x| rgb(&shown, x, y) == (100, 100, 255))));
        // More than LEGEND_MAX_ITEMS series hide it unless asked for.
        let many: Vec<TimeSeries> = (0..11)
            .map(|i| flat(&format!("s{i}"), i as f64, 30))
            .collect();
        let p = png(many.clone(), &[("hideAxes", "true")]);
        assert!(ink(&p, 232..248) < 5);
        let p = png(
            many,
            &[
                ("hideLegend", "false"),
                ("height", "400"),
                ("hideAxes", "true"),
            ],
        );
        assert!(ink(&p, 330..398) > 40);
    }

    #[test]
    fn no_data_and_bad_options() {
        let p = png(vec![], &[]);
        let red = no_data_red(&p);
        assert!(red > 50, "\"No Data\" in graphite's red: {red}");
        for (k, v, msg) in [
            (
                "lineMode",
                "wavy",
                "parameter \"lineMode\": \"wavy\" is not one of slope, staircase, connected",
            ),
            (
                "areaMode",
                "x",
                "parameter \"areaMode\": \"x\" is not one of none, first, all, stacked",
            ),
            (
                "width",
                "100000",
                "parameters \"width\" and \"height\": 100000x250",
            ),
            ("bgcolor", "nosuch", "bgcolor: \"nosuch\" is not a colour"),
            (
                "lineWidth",
                "thick",
                "parameter \"lineWidth\": \"thick\" is not a number",
            ),
            ("xFormat", "%Q%", "parameter \"xFormat\""),
        ] {
            let e = render_png(vec![flat("a", 1.0, 10)], [(k, v)]).expect_err(k);
            assert!(
                e.is_client_error() && e.to_string().starts_with(msg),
                "{k}: {e}"
            );
        }
    }

    #[test]
    fn style_functions_take_effect() {
        let base = [
            ("graphOnly", "1"),
            ("yMin", "0"),
            ("yMax", "100"),
            ("height", "200"),
            ("colorList", "ff0000,0000ff"),
            ("lineWidth", "3"),
        ];
        // areaMode=all fills under the line.
        let p = png(
            vec![flat("a", 50.0, 61)],
            &[&base[..], &[("areaMode", "all")]].concat(),
        );
        assert_eq!(rgb(&p, 200, 150), (255, 0, 0));
        let p = png(vec![flat("a", 50.0, 61)], &base);
        assert_eq!(rgb(&p, 200, 150), (255, 255, 255));
        // drawAsInfinite: every point is a full-height line.
        let mut s = TimeSeries::new("inf", 0, 600, vec![None, Some(1.0), None]);
        s.style.draw_as_infinite = true;
        let p = png(vec![flat("a", 50.0, 61), s], &base);
        let x = (0..p.width()).find(|&x| {
            rgb(&p, x, 10) == (0, 0, 255) || rgb(&p, x, 10).2 > 200 && rgb(&p, x, 10).0 < 100
        });
        assert!(x.is_some(), "a vertical blue line");
        // secondYAxis: a second scale, labels on both sides.
        let mut right = flat("r", 1000.0, 61);
        right.style.second_y_axis = true;
        let p = png(vec![flat("l", 1.0, 61), right], &[("width", "400")]);
        let left_ink = ink(&p, 20..150);
        assert!(left_ink > 0);
        let right_side: usize = (20..150)
            .flat_map(|y| (370..400).map(move |x| (x, y)))
            .filter(|&(x, y)| rgb(&p, x, y).0 < 80)
            .count();
        assert!(right_side > 20, "right axis labels: {right_side}");
        // dashed: gaps along the line.
        let mut d = flat("d", 50.0, 61);
        d.style.dashed = Some(5.0);
        let p = png(vec![d], &base);
        let on = (0..p.width()).filter(|&x| rgb(&p, x, 100).1 < 100).count();
        assert!(on > 100 && on < 300, "{on} of {} columns drawn", p.width());
    }

    #[test]
    fn svg_is_the_same_layout() {
        let mut s = flat("a<b>&c", 10.0, 61);
        s.style.color = Some("#00ff00".into());
        let out = render_svg(vec![s, flat("b", 20.0, 61)], [("title", "t & u")]).expect("svg");
        assert!(out.starts_with("<svg ") && out.trim_end().ends_with("</svg>"));
        assert!(out.contains("a&lt;b&gt;&amp;c") && out.contains("t &amp; u"));
        assert!(
            out.contains("stroke=\"#00ff00\""),
            "color() reaches the svg"
        );
        assert!(
            out.contains("stroke=\"#6464ff\""),
            "b takes graphite's first colour"
        );
        assert!(out.contains("metadata = {"));
        assert_eq!(out.matches("<text").count(), out.matches("</text>").count());
        assert!(!out.contains("NaN"));
    }
}
