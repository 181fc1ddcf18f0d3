//! graphite-web 1.1.8's `LineGraph` (`render/glyph.py`), step by step in its order: title,
//! vertical titles, legend, the x-axis room, consolidation to the drawable width, the y axes
//! (again until their labels stop moving the plot), the x axis, labels, grid lines, then the
//! series (stacked areas first, under a clip that keeps each above the one below).

use chrono::{Duration, NaiveDateTime, Offset, TimeZone};

use crate::error::{QueryError, Result};
use crate::graphite::graph::canvas::{Align, Canvas, Cmd, FontSpec, VAlign};
use crate::graphite::graph::options::{parse_color, template, Opt, Options, Rgba, Template};
use crate::graphite::graph::ticks::{known_unit_system, AxisMax, Tics};
use crate::series::TimeSeries;

/// graphite's `LEGEND_MAX_ITEMS`: more series than this hide the legend unless asked.
const LEGEND_MAX_ITEMS: usize = 10;

/// The largest image drawn, per side and in all, so a request cannot make us allocate gigabytes.
pub(crate) const MAX_SIDE: i64 = 8000;
pub(crate) const MAX_PIXELS: i64 = 16_000_000;

const SEC: i64 = 1;
const MIN: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// One of graphite's `xAxisConfigs` (rrdtool's): which grid and labels suit a seconds-per-pixel.
struct XConf {
    seconds: f64,
    minor_unit: i64,
    minor_step: f64,
    major_unit: i64,
    major_step: f64,
    label_unit: i64,
    label_step: f64,
    format: &'static str,
    max_interval: Option<i64>,
}

macro_rules! xconf {
    ($s:expr, $mu:expr, $ms:expr, $ju:expr, $js:expr, $lu:expr, $ls:expr, $f:expr, $mi:expr) => {
        XConf {
            seconds: $s,
            minor_unit: $mu,
            minor_step: $ms,
            major_unit: $ju,
            major_step: $js,
            label_unit: $lu,
            label_step: $ls,
            format: $f,
            max_interval: $mi,
        }
    };
}

/// graphite's `DATE_FORMAT` is `%m/%d`.
const X_CONFIGS: &[XConf] = &[
    xconf!(
        0.00,
        SEC,
        5.0,
        MIN,
        1.0,
        SEC,
        5.0,
        "%H:%M:%S",
        Some(10 * MIN)
    ),
    xconf!(
        0.07,
        SEC,
        10.0,
        MIN,
        1.0,
        SEC,
        10.0,
        "%H:%M:%S",
        Some(20 * MIN)
    ),
    xconf!(
        0.14,
        SEC,
        15.0,
        MIN,
        1.0,
        SEC,
        15.0,
        "%H:%M:%S",
        Some(30 * MIN)
    ),
    xconf!(0.27, SEC, 30.0, MIN, 2.0, MIN, 1.0, "%H:%M", Some(2 * HOUR)),
    xconf!(0.5, MIN, 1.0, MIN, 2.0, MIN, 1.0, "%H:%M", Some(2 * HOUR)),
    xconf!(1.2, MIN, 1.0, MIN, 4.0, MIN, 2.0, "%H:%M", Some(3 * HOUR)),
    xconf!(2.0, MIN, 1.0, MIN, 10.0, MIN, 5.0, "%H:%M", Some(6 * HOUR)),
    xconf!(
        5.0,
        MIN,
        2.0,
        MIN,
        10.0,
        MIN,
        10.0,
        "%H:%M",
        Some(12 * HOUR)
    ),
    xconf!(10.0, MIN, 5.0, MIN, 20.0, MIN, 20.0, "%H:%M", Some(DAY)),
    xconf!(
        30.0,
        MIN,
        10.0,
        HOUR,
        1.0,
        HOUR,
        1.0,
        "%H:%M",
        Some(2 * DAY)
    ),
    xconf!(
        60.0,
        MIN,
        30.0,
        HOUR,
        2.0,
        HOUR,
        2.0,
        "%H:%M",
        Some(2 * DAY)
    ),
    xconf!(
        100.0,
        HOUR,
        2.0,
        HOUR,
        4.0,
        HOUR,
        4.0,
        "%a %H:%M",
        Some(6 * DAY)
    ),
    xconf!(
        255.0,
        HOUR,
        6.0,
        HOUR,
        12.0,
        HOUR,
        12.0,
        "%m/%d %H:%M",
        Some(10 * DAY)
    ),
    xconf!(
        600.0,
        HOUR,
        6.0,
        DAY,
        1.0,
        DAY,
        1.0,
        "%m/%d",
        Some(14 * DAY)
    ),
    xconf!(
        1000.0,
        HOUR,
        12.0,
        DAY,
        1.0,
        DAY,
        1.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        2000.0,
        DAY,
        1.0,
        DAY,
        2.0,
        DAY,
        2.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        4000.0,
        DAY,
        2.0,
        DAY,
        4.0,
        DAY,
        4.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        8000.0,
        DAY,
        3.5,
        DAY,
        7.0,
        DAY,
        7.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        16000.0,
        DAY,
        7.0,
        DAY,
        14.0,
        DAY,
        14.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(
        32000.0,
        DAY,
        15.0,
        DAY,
        30.0,
        DAY,
        30.0,
        "%m/%d",
        Some(365 * DAY)
    ),
    xconf!(64000.0, DAY, 30.0, DAY, 60.0, DAY, 60.0, "%m/%d %Y", None),
    xconf!(100000.0, DAY, 60.0, DAY, 120.0, DAY, 120.0, "%m/%d %Y", None),
    xconf!(120000.0, DAY, 120.0, DAY, 240.0, DAY, 240.0, "%m/%d %Y", None),
];

/// Python's `unquote_plus`: `+` is a space and `%xx` a byte (graphite unquotes names and titles).
pub(crate) fn unquote_plus(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A series as the graph holds it: graphite's `TimeSeries` with `color` and `xStep`.
struct Ser {
    ts: TimeSeries,
    color: Option<String>,
    x_step: f64,
}

impl Ser {
    fn values(&self) -> Vec<Option<f64>> {
        self.ts
            .values()
            .into_iter()
            .map(|v| v.filter(|x| !x.is_nan()))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LineMode {
    Slope,
    Staircase,
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AreaMode {
    None,
    First,
    All,
    Stacked,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Only,
    Left,
    Right,
}

#[derive(Debug, Clone, Default)]
struct Axis {
    top: f64,
    bottom: f64,
    step: Option<f64>,
    label_values: Vec<f64>,
    labels: Vec<String>,
    label_width: f64,
}

struct Area {
    xmin: f64,
    xmax: f64,
    ymin: f64,
    ymax: f64,
}

/// What the SVG metadata script reports (graphite's `output` for svg).
pub(crate) struct Drawn {
    pub canvas: Canvas,
    pub meta: Option<serde_json::Value>,
}

pub(crate) struct LineGraph {
    c: Canvas,
    p: Options,
    data: Vec<Ser>,
    width: f64,
    height: f64,
    margin: f64,
    area: Area,
    tmpl: Template,
    fg: String,
    bg: String,
    colors: Vec<String>,
    next_color: usize,
    font: FontSpec,
    log_base: Option<f64>,
    minor_y: i64,
    second_y: bool,
    line_width: f64,
    line_mode: LineMode,
    area_mode: AreaMode,
    connected_limit: f64,
    start: i64,
    end: i64,
    time_range: i64,
    graph_width: f64,
    y: Axis,
    yl: Axis,
    yr: Axis,
    x_scale: f64,
    conf: usize,
    /// The UTC offset in force at the start (graphite's pytz arithmetic keeps it).
    offset: i64,
    end_offset: i64,
}

fn bad(name: &str, v: &str, expected: &str) -> QueryError {
    QueryError::BadRequest(format!(
        "parameter \"{name}\": \"{v}\" is not one of {expected}"
    ))
}

impl LineGraph {
    /// Draws `series` with the options; `svg` picks the surface.
    pub(crate) fn draw(series: Vec<TimeSeries>, mut p: Options, svg: bool) -> Result<Drawn> {
        let int_opt = |p: &Options, k: &str, d: i64| -> Result<i64> {
            Ok(p.num(k)?.map_or(d, |v| v.trunc() as i64))
        };
        let width = int_opt(&p, "width", 330)?;
        let height = int_opt(&p, "height", 250)?;
        if !(1..=MAX_SIDE).contains(&width)
            || !(1..=MAX_SIDE).contains(&height)
            || width * height > MAX_PIXELS
        {
            return Err(QueryError::BadRequest(format!(
                "parameters \"width\" and \"height\": {width}x{height} is not between 1 and \
                 {MAX_SIDE} a side and {MAX_PIXELS} pixels"
            )));
        }
        let mut margin = int_opt(&p, "margin", 10)? as f64;
        if margin < 0.0 {
            margin = 10.0;
        }
        let log_base = match p.get("logBase") {
            None => None,
            Some(Opt::Str(s)) if s == "e" => Some(std::f64::consts::E),
            Some(o) if !o.truthy() => None,
            Some(_) => {
                let b = p.num("logBase")?.unwrap_or(10.0);
                (b >= 1.0).then_some(b)
            }
        };
        let minor_y = int_opt(&p, "minorY", 1)?;
        let tmpl = template(&p.str("template").unwrap_or_else(|| "default".into()));
        let font = FontSpec {
            size: p.num("fontSize")?.map_or(10.0, f64::trunc),
            bold: p.flag("fontBold"),
            italic: p.flag("fontItalic"),
        };
        if !(1.0..=200.0).contains(&font.size) {
            return Err(QueryError::BadRequest(format!(
                "parameter \"fontSize\": {} is not between 1 and 200",
                font.size
            )));
        }
        let (w, h) = (width as u32, height as u32);
        let c = if svg {
            Canvas::svg(w, h, font)
        } else {
            Canvas::png(w, h, font)?
        };
        let colors: Vec<String> = match p.str("colorList") {
            Some(list) => unquote_plus(&list).split(',').map(str::to_owned).collect(),
            None => tmpl
                .line_colors
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect(),
        };
        let fg = p.str("fgcolor").unwrap_or_else(|| tmpl.foreground.into());
        let bg = p.str("bgcolor").unwrap_or_else(|| tmpl.background.into());
        if p.num("yStep")?.is_some_and(|s| s <= 0.0) {
            return Err(QueryError::BadRequest(
                "parameter \"yStep\": the step must be positive".into(),
            ));
        }
        p.set(
            "outputFormat",
            Opt::Str(if svg { "svg" } else { "png" }.into()),
        );
        let mut g = LineGraph {
            c,
            p,
            data: series
                .into_iter()
                .map(|ts| Ser {
                    color: ts.style.color.clone(),
                    ts,
                    x_step: 1.0,
                })
                .collect(),
            width: width as f64,
            height: height as f64,
            margin,
            area: Area {
                xmin: margin + 10.0,
                xmax: width as f64 - margin,
                ymin: margin,
                ymax: height as f64 - margin,
            },
            tmpl,
            fg,
            bg,
            colors,
            next_color: 0,
            font,
            log_base,
            minor_y,
            second_y: false,
            line_width: 1.2,
            line_mode: LineMode::Slope,
            area_mode: AreaMode::None,
            connected_limit: f64::INFINITY,
            start: 0,
            end: 0,
            time_range: 0,
            graph_width: 0.0,
            y: Axis::default(),
            yl: Axis::default(),
            yr: Axis::default(),
            x_scale: 1.0,
            conf: 0,
            offset: 0,
            end_offset: 0,
        };
        let bg = g.color(&g.bg.clone(), 1.0, false, "bgcolor")?;
        g.c.set_color(bg);
        g.c.rectangle(0.0, 0.0, g.width, g.height);
        g.c.fill();
        let meta = g.draw_graph()?;
        Ok(Drawn { canvas: g.c, meta })
    }

    fn color(&self, v: &str, alpha: f64, force: bool, what: &str) -> Result<Rgba> {
        parse_color(v, alpha, force, what)
    }

    fn set_color(&mut self, v: &str, what: &str) -> Result<()> {
        let c = self.color(v, 1.0, false, what)?;
        self.c.set_color(c);
        Ok(())
    }

    fn set_font(&mut self, size: Option<f64>) {
        self.c.font = FontSpec {
            size: size.unwrap_or(self.font.size),
            ..self.font
        };
    }

    fn ext(&self, text: &str) -> Result<crate::graphite::graph::canvas::Extents> {
        self.c.extents(text)
    }

    fn draw_rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: bool) {
        if fill {
            self.c.rectangle(x, y, w, h);
            self.c.fill();
        } else {
            let o = self.c.line_width() / 2.0;
            self.c.rectangle(x + o, y + o, w - o, h - o);
            self.c.set_dash(None);
            self.c.stroke();
        }
    }

    fn draw_graph(&mut self) -> Result<Option<serde_json::Value>> {
        let time_range = if self.data.is_empty() {
            0
        } else {
            let s = self.data.iter().map(|s| s.ts.start).min().unwrap_or(0);
            self.data.iter().map(|s| s.ts.end).max().unwrap_or(0) - s
        };
        if time_range == 0 {
            self.c.set_color(self.color("red", 1.0, false, "color")?);
            self.set_font(Some((self.width * self.height).ln()));
            let (x, y) = (self.width / 2.0, self.height / 2.0);
            self.c
                .text("No Data", x, y, Align::Center, VAlign::Top, 0.0)?;
            return Ok(None);
        }
        self.second_y = self.data.iter().any(|s| s.ts.style.second_y_axis);

        if self.p.flag("graphOnly") {
            for k in ["hideLegend", "hideGrid", "hideAxes"] {
                self.p.set(k, Opt::Bool(true));
            }
            for k in ["hideXAxis", "hideYAxis"] {
                self.p.set(k, Opt::Bool(false));
            }
            self.p.set("yAxisSide", Opt::Str("left".into()));
            for k in ["title", "vtitle", "tz"] {
                self.p.set(k, Opt::Str(String::new()));
            }
            self.p.set("margin", Opt::Int(0));
            self.margin = 0.0;
            self.area = Area {
                xmin: 0.0,
                xmax: self.width,
                ymin: 0.0,
                ymax: self.height,
            };
        }
        for (alias, name) in [("min", "yMin"), ("max", "yMax"), ("thickness", "lineWidth")] {
            if !self.p.has(name) {
                if let Some(v) = self.p.get(alias).cloned() {
                    self.p.set(name, v);
                }
            }
        }
        if !self.p.has("yAxisSide") {
            self.p.set("yAxisSide", Opt::Str("left".into()));
        }
        let units = self
            .p
            .str("yUnitSystem")
            .map(|u| u.to_lowercase())
            .filter(|u| known_unit_system(u))
            .unwrap_or_else(|| "si".into());
        self.p.set("yUnitSystem", Opt::Str(units));
        if self.second_y {
            self.p.set("yAxisSide", Opt::Str("left".into()));
        }
        if self.y_axis_right() {
            self.margin = self.width;
        }
        self.line_width = self.p.num_or("lineWidth", 1.2)?;
        let line_mode = self
            .p
            .str("lineMode")
            .unwrap_or_else(|| "slope".into())
            .to_lowercase();
        self.line_mode = match line_mode.as_str() {
            "slope" => LineMode::Slope,
            "staircase" => LineMode::Staircase,
            "connected" => LineMode::Connected,
            _ => return Err(bad("lineMode", &line_mode, "slope, staircase, connected")),
        };
        self.connected_limit = self.p.num_or("connectedLimit", f64::INFINITY)?;
        let area_mode = self
            .p
            .str("areaMode")
            .unwrap_or_else(|| "none".into())
            .to_lowercase();
        self.area_mode = match area_mode.as_str() {
            "none" => AreaMode::None,
            "first" => AreaMode::First,
            "all" => AreaMode::All,
            "stacked" => AreaMode::Stacked,
            _ => return Err(bad("areaMode", &area_mode, "none, first, all, stacked")),
        };
        if self.line_mode == LineMode::Slope && self.data.iter().any(|s| s.ts.len() == 1) {
            self.line_mode = LineMode::Staircase;
        }
        if self.second_y {
            let (rw, rd, rc) = (
                self.p.num("rightWidth")?,
                self.p.num("rightDashed")?,
                self.p.str("rightColor"),
            );
            let (lw, ld, lc) = (
                self.p.num("leftWidth")?,
                self.p.num("leftDashed")?,
                self.p.str("leftColor"),
            );
            for s in &mut self.data {
                let (w, d, c) = if s.ts.style.second_y_axis {
                    (rw, rd, &rc)
                } else {
                    (lw, ld, &lc)
                };
                if let Some(w) = w {
                    s.ts.style.line_width = Some(w);
                }
                if let Some(d) = d {
                    s.ts.style.dashed = Some(d);
                }
                if let Some(c) = c {
                    s.color = Some(c.clone());
                }
            }
        }
        for i in 0..self.data.len() {
            if self.data[i].color.is_none() {
                let c = self.colors[self.next_color % self.colors.len().max(1)].clone();
                self.next_color += 1;
                self.data[i].color = Some(c);
            }
        }

        let title_size = self.font.size + self.font.size.ln().floor();
        self.set_font(Some(title_size));
        self.set_color(&self.fg.clone(), "fgcolor")?;
        if let Some(t) = self.p.str("title").filter(|t| !t.is_empty()) {
            self.draw_title(&unquote_plus(&t))?;
        }
        if let Some(t) = self.p.str("vtitle").filter(|t| !t.is_empty()) {
            self.draw_vtitle(&unquote_plus(&t), false)?;
        }
        if self.second_y {
            if let Some(t) = self.p.str("vtitleRight").filter(|t| !t.is_empty()) {
                self.draw_vtitle(&unquote_plus(&t), true)?;
            }
        }
        self.set_font(None);

        let hide_legend = match self.p.get("hideLegend") {
            Some(o) => o.truthy(),
            None => self.data.len() > LEGEND_MAX_ITEMS,
        };
        if !hide_legend {
            let hide_null = self.p.flag("hideNullFromLegend");
            let elements: Vec<(String, String, bool)> = self
                .data
                .iter()
                .filter(|s| !s.ts.name.is_empty())
                .filter(|s| !(hide_null && s.values().iter().all(Option::is_none)))
                .map(|s| {
                    (
                        unquote_plus(&s.ts.name),
                        s.color.clone().unwrap_or_default(),
                        s.ts.style.second_y_axis,
                    )
                })
                .collect();
            if !elements.is_empty() {
                self.draw_legend(elements, self.p.flag("uniqueLegend"))?;
            }
        }

        if !self.p.flag("hideAxes") && !self.p.flag("hideXAxis") {
            self.area.ymax -= self.ext("")?.ascent * 2.0;
        }
        self.start = self.data.iter().map(|s| s.ts.start).min().unwrap_or(0);
        self.end = if self.line_mode == LineMode::Staircase {
            self.data.iter().map(|s| s.ts.end).max().unwrap_or(0)
        } else {
            self.data
                .iter()
                .map(|s| s.ts.end - s.ts.step)
                .max()
                .unwrap_or(0)
        };
        self.time_range = self.end - self.start;
        if self.time_range <= 0 {
            // graphite divides by zero here (a single point under slope); one step of room.
            self.time_range = self
                .data
                .iter()
                .map(|s| s.ts.step)
                .max()
                .unwrap_or(1)
                .max(1);
            self.end = self.start + self.time_range;
        }
        self.consolidate()?;

        let (mut cur_min, mut cur_max) = (self.area.xmin, self.area.xmax);
        self.setup_y_axes()?;
        let mut rounds = 0;
        while (cur_min != self.area.xmin || cur_max != self.area.xmax) && rounds < 20 {
            rounds += 1;
            self.consolidate()?;
            cur_min = self.area.xmin;
            cur_max = self.area.xmax;
            self.setup_y_axes()?;
        }
        self.setup_x_axis()?;
        if !self.p.flag("hideAxes") {
            self.draw_labels()?;
            if !self.p.flag("hideGrid") {
                self.draw_grid_lines()?;
            }
        }
        self.draw_lines()?;
        Ok(Some(self.metadata()))
    }

    fn y_axis_right(&self) -> bool {
        self.p.str("yAxisSide").as_deref() == Some("right")
    }

    fn draw_title(&mut self, text: &str) -> Result<()> {
        let mut y = self.area.ymin;
        let x = self.width / 2.0;
        let line_height = self.ext("")?.height;
        for line in text.split('\n') {
            self.c.text(line, x, y, Align::Center, VAlign::Top, 0.0)?;
            y += line_height;
        }
        self.area.ymin = if self.y_axis_right() {
            y
        } else {
            y + self.margin
        };
        Ok(())
    }

    fn draw_vtitle(&mut self, text: &str, right: bool) -> Result<()> {
        let line_height = self.ext("")?.height;
        let y = self.height / 2.0;
        if right {
            let mut x = self.area.xmax - line_height;
            for line in text.split('\n') {
                self.c
                    .text(line, x, y, Align::Center, VAlign::Baseline, 90.0)?;
                x -= line_height;
            }
            self.area.xmax = x - self.margin - line_height;
        } else {
            let mut x = self.area.xmin + line_height;
            for line in text.split('\n') {
                self.c
                    .text(line, x, y, Align::Center, VAlign::Baseline, 270.0)?;
                x += line_height;
            }
            self.area.xmin = x + self.margin + line_height;
        }
        Ok(())
    }

    fn legend_box(&mut self, color: &str, x: f64, y: f64, size: f64) -> Result<()> {
        self.set_color(color, "color")?;
        self.draw_rect(x, y, size, size, true);
        self.set_color("darkgrey", "color")?;
        self.draw_rect(x, y, size, size, false);
        self.set_color(&self.fg.clone(), "fgcolor")
    }

    fn draw_legend(
        &mut self,
        mut elements: Vec<(String, String, bool)>,
        unique: bool,
    ) -> Result<()> {
        if unique {
            let mut seen: Vec<String> = Vec::new();
            elements.retain(|e| {
                if seen.contains(&e.0) {
                    false
                } else {
                    seen.push(e.0.clone());
                    true
                }
            });
        }
        let padding = 5.0;
        // sorted(names, key=len)[-1]: the last of the longest.
        let longest = elements
            .iter()
            .map(|e| e.0.clone())
            .fold(String::new(), |a, n| {
                if n.chars().count() >= a.chars().count() {
                    n
                } else {
                    a
                }
            });
        let test = self.ext(&format!("{longest} {longest}"))?;
        let test_box = test.height - 1.0;
        let right_side_labels = test.width + 2.0 * (test_box + padding) + 50.0 < self.width;
        let e = self.ext(&longest)?;
        let box_size = e.height - 1.0;
        let line_height = e.height + 1.0;
        let label_width = e.width + 2.0 * (box_size + padding);
        self.c.set_line_width(1.0);
        if self.second_y && right_side_labels {
            let mut columns = ((self.width - self.area.xmin) / label_width)
                .floor()
                .max(1.0);
            let num_right = elements.iter().filter(|e| e.2).count() as f64;
            let lines = (elements.len() as f64 - num_right).max(num_right);
            columns = (columns / 2.0).floor().max(1.0);
            let legend_height = (lines / columns).max(1.0) * line_height + padding;
            self.area.ymax -= legend_height;
            let mut x = self.area.xmin;
            let mut y = self.area.ymax + 2.0 * padding;
            let (mut n, mut n_right) = (0.0, 0.0);
            let mut x_right = self.area.xmax - self.area.xmin;
            let mut y_right = y;
            for (name, color, right) in elements {
                if right {
                    n_right += 1.0;
                    self.legend_box(&color, x_right - padding, y_right, box_size)?;
                    self.c.text(
                        &name,
                        x_right - box_size,
                        y_right,
                        Align::Right,
                        VAlign::Top,
                        0.0,
                    )?;
                    x_right -= label_width;
                    if n_right % columns == 0.0 {
                        x_right = self.area.xmax - self.area.xmin;
                        y_right += line_height;
                    }
                } else {
                    n += 1.0;
                    self.legend_box(&color, x, y, box_size)?;
                    self.c.text(
                        &name,
                        x + box_size + padding,
                        y,
                        Align::Left,
                        VAlign::Top,
                        0.0,
                    )?;
                    x += label_width;
                    if n % columns == 0.0 {
                        x = self.area.xmin;
                        y += line_height;
                    }
                }
            }
        } else {
            let columns = (self.width / label_width).floor().max(1.0);
            let lines = (elements.len() as f64 / columns).ceil();
            let legend_height = lines * line_height + padding;
            self.area.ymax -= legend_height;
            let mut x = self.area.xmin;
            let mut y = self.area.ymax + 2.0 * padding;
            for (i, (name, color, right)) in elements.into_iter().enumerate() {
                if right {
                    self.legend_box(&color, x + label_width + padding, y, box_size)?;
                    self.c
                        .text(&name, x + label_width, y, Align::Right, VAlign::Top, 0.0)?;
                } else {
                    self.legend_box(&color, x, y, box_size)?;
                    self.c.text(
                        &name,
                        x + box_size + padding,
                        y,
                        Align::Left,
                        VAlign::Top,
                        0.0,
                    )?;
                }
                x += label_width;
                if (i as f64 + 1.0) % columns == 0.0 {
                    x = self.area.xmin;
                    y += line_height;
                }
            }
        }
        Ok(())
    }

    fn consolidate(&mut self) -> Result<()> {
        let pixels = self.area.xmax - self.area.xmin - (self.line_width + 1.0);
        self.graph_width = pixels;
        let min_x_step = self.p.num_or("minXStep", 1.0)?;
        for s in &mut self.data {
            let points = self.time_range as f64 / s.ts.step as f64;
            let best = pixels / points;
            if best < min_x_step {
                let drawable = ((pixels / min_x_step).trunc()).max(1.0);
                let ppp = (points / drawable).ceil().max(1.0);
                s.ts.values_per_point = ppp as usize;
                s.x_step = pixels * ppp / points;
            } else {
                s.ts.values_per_point = 1;
                s.x_step = best;
            }
        }
        Ok(())
    }

    /// graphite's `dataLimits`.
    fn data_limits(&self, side: Side) -> (f64, f64) {
        let draw_null_as_zero = self.p.flag("drawNullAsZero");
        let stacked = self.area_mode == AreaMode::Stacked;
        let data: Vec<&Ser> = self
            .data
            .iter()
            .filter(|s| match side {
                Side::Only => true,
                Side::Left => !s.ts.style.second_y_axis,
                Side::Right => s.ts.style.second_y_axis,
            })
            .collect();
        let missing = data.iter().any(|s| s.ts.raw().iter().any(Option::is_none));
        let finite: Vec<&&Ser> = data
            .iter()
            .filter(|s| !s.ts.style.draw_as_infinite)
            .collect();
        let safe = |v: &[Option<f64>]| -> Vec<f64> {
            v.iter()
                .flatten()
                .copied()
                .filter(|x| x.is_finite())
                .collect()
        };
        let min = finite
            .iter()
            .filter_map(|s| safe(&s.values()).into_iter().reduce(f64::min))
            .reduce(f64::min);
        let Some(mut min) = min else {
            return (0.0, 1.0);
        };
        if min > 0.0 && draw_null_as_zero && missing {
            min = 0.0;
        }
        let mut max = if stacked {
            let len = finite.iter().map(|s| s.ts.len()).min().unwrap_or(0);
            (0..len)
                .map(|i| {
                    finite
                        .iter()
                        .filter_map(|s| s.ts.raw()[i])
                        .filter(|x| x.is_finite())
                        .sum::<f64>()
                })
                .reduce(f64::max)
                .unwrap_or(min)
        } else {
            finite
                .iter()
                .filter_map(|s| safe(&s.values()).into_iter().reduce(f64::max))
                .reduce(f64::max)
                .unwrap_or(min)
        };
        if max < 0.0 && draw_null_as_zero && missing {
            max = 0.0;
        }
        (min, max)
    }

    fn axis_max(&self, k: &str) -> Result<Option<AxisMax>> {
        match self.p.get(k) {
            Some(Opt::Str(s)) if s == "max" => Ok(Some(AxisMax::DataMax)),
            _ => Ok(self.p.num(k)?.map(AxisMax::Value)),
        }
    }

    fn divisors(&self) -> Result<Vec<f64>> {
        let text = self.p.str("yDivisors").unwrap_or_else(|| "4,5,6".into());
        text.split(',')
            .map(|d| {
                d.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 1)
                    .map(|d| d as f64)
                    .ok_or_else(|| {
                        QueryError::BadRequest(format!(
                            "parameter \"yDivisors\": \"{text}\" is not a list of whole numbers of at least 1"
                        ))
                    })
            })
            .collect()
    }

    fn tics(
        &self,
        side: Side,
        min_k: &str,
        max_k: &str,
        limit_k: &str,
        step_k: &str,
    ) -> Result<(Tics, Axis)> {
        let (lo, hi) = self.data_limits(side);
        let units = self.p.str("yUnitSystem").unwrap_or_else(|| "si".into());
        let mut t = Tics::new(lo, hi, &units, self.log_base)?;
        t.apply_settings(
            self.p.num(min_k)?,
            self.axis_max(max_k)?,
            self.p.num(limit_k)?,
        )?;
        match self.p.num(step_k)? {
            Some(s) => t.set_step(s)?,
            None => t.choose_step(&self.divisors()?, units == "binary"),
        }
        t.choose_limits()?;
        let axis = Axis {
            top: t.top,
            bottom: t.bottom,
            step: t.step,
            ..Axis::default()
        };
        Ok((t, axis))
    }

    fn labels(&self, t: &mut Tics, axis: &mut Axis) -> Result<()> {
        axis.label_values = t.label_values()?;
        axis.labels = axis.label_values.iter().map(|v| t.label(*v)).collect();
        axis.label_width = 0.0;
        for l in &axis.labels {
            axis.label_width = axis.label_width.max(self.ext(l)?.width);
        }
        Ok(())
    }

    fn setup_y_axes(&mut self) -> Result<()> {
        if !self.second_y {
            let (mut t, mut axis) = self.tics(Side::Only, "yMin", "yMax", "yLimit", "yStep")?;
            if !self.p.flag("hideAxes") {
                self.labels(&mut t, &mut axis)?;
                if !self.p.flag("hideYAxis") {
                    if !self.y_axis_right() {
                        let xmin = self.margin + axis.label_width * 1.02;
                        if self.area.xmin < xmin {
                            self.area.xmin = xmin;
                        }
                    } else {
                        let xmax = self.margin - axis.label_width * 1.02;
                        if self.area.xmax >= xmax {
                            self.area.xmax = xmax;
                        }
                    }
                }
            }
            self.y = axis;
        } else {
            let (mut tl, mut l) = self.tics(
                Side::Left,
                "yMinLeft",
                "yMaxLeft",
                "yLimitLeft",
                "yStepLeft",
            )?;
            let (mut tr, mut r) = self.tics(
                Side::Right,
                "yMinRight",
                "yMaxRight",
                "yLimitRight",
                "yStepRight",
            )?;
            self.labels(&mut tl, &mut l)?;
            self.labels(&mut tr, &mut r)?;
            let xmin = self.margin + l.label_width * 1.02;
            if self.area.xmin < xmin {
                self.area.xmin = xmin;
            }
            let xmax = self.width - r.label_width * 1.02;
            if self.area.xmax >= xmax {
                self.area.xmax = xmax;
            }
            self.yl = l;
            self.yr = r;
        }
        Ok(())
    }

    fn tz_offsets(&self) -> Result<(i64, i64)> {
        let name = self.p.str("tz").filter(|t| !t.is_empty());
        let Some(name) = name else {
            return Ok((0, 0));
        };
        // graphite falls back to its TIME_ZONE (UTC here) for a zone pytz does not know.
        let Ok(tz) = name.parse::<chrono_tz::Tz>() else {
            return Ok((0, 0));
        };
        let off = |t: i64| {
            tz.timestamp_opt(t, 0)
                .single()
                .map_or(0, |d| i64::from(d.offset().fix().local_minus_utc()))
        };
        Ok((off(self.start), off(self.end)))
    }

    fn setup_x_axis(&mut self) -> Result<()> {
        (self.offset, self.end_offset) = self.tz_offsets()?;
        let seconds_per_pixel = self.time_range as f64 / self.graph_width;
        self.x_scale = self.graph_width / self.time_range as f64;
        self.conf = X_CONFIGS
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.seconds <= seconds_per_pixel
                    && c.max_interval.unwrap_or(self.time_range + 1) >= self.time_range
            })
            .map(|(i, _)| i)
            .next_back()
            .unwrap_or(X_CONFIGS.len() - 1);
        Ok(())
    }

    fn local(&self, t: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(t + self.offset, 0)
            .map(|d| d.naive_utc())
            .unwrap_or_default()
    }

    /// graphite's `find_x_times`: the first tick at or after the start, and the tick distance,
    /// in local time with the start's UTC offset (as pytz arithmetic has it).
    fn x_times(&self, unit: i64, step: f64) -> (NaiveDateTime, Duration) {
        use chrono::Timelike;
        let start = self.local(self.start);
        let istep = step as u32;
        let mut dt = match unit {
            SEC => start.with_second(start.second() - start.second() % istep.max(1)),
            MIN => start
                .with_second(0)
                .and_then(|d| d.with_minute(start.minute() - start.minute() % istep.max(1))),
            HOUR => start
                .with_second(0)
                .and_then(|d| d.with_minute(0))
                .and_then(|d| d.with_hour(start.hour() - start.hour() % istep.max(1))),
            _ => start.date().and_hms_opt(0, 0, 0),
        }
        .unwrap_or(start);
        let delta = Duration::milliseconds((unit as f64 * step * 1000.0) as i64);
        while dt < start {
            match dt.checked_add_signed(delta) {
                Some(d) => dt = d,
                None => break,
            }
        }
        (dt, delta)
    }

    /// The instant a local tick stands for, for `dt < end_dt` (aware datetimes compare in UTC).
    fn before_end(&self, dt: NaiveDateTime) -> bool {
        dt.and_utc().timestamp() - self.offset < self.end
    }

    fn x_of(&self, dt: NaiveDateTime) -> f64 {
        let start = self.local(self.start);
        self.area.xmin + (dt - start).num_seconds() as f64 * self.x_scale
    }

    fn y_coord(&self, value: f64, side: Side) -> Option<f64> {
        let axis = match side {
            Side::Only => &self.y,
            Side::Left => &self.yl,
            Side::Right => &self.yr,
        };
        let (hi, lo) = if axis.label_values.is_empty() {
            (axis.top, axis.bottom)
        } else {
            (
                axis.label_values
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max),
                axis.label_values
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min),
            )
        };
        let pixel_range = self.area.ymax - self.area.ymin;
        let (rel, range) = match self.log_base {
            Some(b) => {
                if value <= 0.0 {
                    return None;
                }
                (value.log(b) - lo.log(b), hi.log(b) - lo.log(b))
            }
            None => (value - lo, hi - lo),
        };
        Some(self.area.ymax - pixel_range / range * rel)
    }

    fn draw_labels(&mut self) -> Result<()> {
        if !self.p.flag("hideYAxis") {
            if !self.second_y {
                let right = self.y_axis_right();
                let w = self.y.label_width;
                for (v, label) in self
                    .y
                    .label_values
                    .clone()
                    .into_iter()
                    .zip(self.y.labels.clone())
                {
                    let x = if right {
                        self.area.xmax + w * 0.02
                    } else {
                        self.area.xmin - w * 0.02
                    };
                    let Some(y) = self.y_coord(v, Side::Only) else {
                        continue;
                    };
                    let align = if right { Align::Left } else { Align::Right };
                    self.c
                        .text(&label, x, y.max(0.0), align, VAlign::Middle, 0.0)?;
                }
            } else {
                let wl = self.yl.label_width;
                for (v, label) in self
                    .yl
                    .label_values
                    .clone()
                    .into_iter()
                    .zip(self.yl.labels.clone())
                {
                    let x = self.area.xmin - wl * 0.02;
                    if let Some(y) = self.y_coord(v, Side::Left) {
                        self.c
                            .text(&label, x, y.max(0.0), Align::Right, VAlign::Middle, 0.0)?;
                    }
                }
                let wr = self.yr.label_width;
                for (v, label) in self
                    .yr
                    .label_values
                    .clone()
                    .into_iter()
                    .zip(self.yr.labels.clone())
                {
                    let x = self.area.xmax + wr * 0.02 + 3.0;
                    if let Some(y) = self.y_coord(v, Side::Right) {
                        self.c
                            .text(&label, x, y.max(0.0), Align::Left, VAlign::Middle, 0.0)?;
                    }
                }
            }
        }
        if !self.p.flag("hideXAxis") {
            let conf = &X_CONFIGS[self.conf];
            let (mut dt, delta) = self.x_times(conf.label_unit, conf.label_step);
            let format = self
                .p
                .str("xFormat")
                .unwrap_or_else(|| conf.format.to_owned());
            let items: Vec<chrono::format::Item> =
                chrono::format::StrftimeItems::new(&format).collect();
            if items
                .iter()
                .any(|i| matches!(i, chrono::format::Item::Error))
            {
                return Err(QueryError::BadRequest(format!(
                    "parameter \"xFormat\": \"{format}\" is not a strftime format"
                )));
            }
            let ascent = self.ext("")?.ascent;
            let mut n = 0;
            while self.before_end(dt) && n < 10_000 {
                n += 1;
                let mut label = String::new();
                use std::fmt::Write as _;
                if write!(label, "{}", dt.format_with_items(items.iter())).is_err() {
                    return Err(QueryError::BadRequest(format!(
                        "parameter \"xFormat\": \"{format}\" cannot format a date"
                    )));
                }
                let x = self.x_of(dt);
                let y = self.area.ymax + ascent;
                self.c.text(&label, x, y, Align::Center, VAlign::Top, 0.0)?;
                match dt.checked_add_signed(delta) {
                    Some(d) => dt = d,
                    None => break,
                }
            }
        }
        Ok(())
    }

    fn grid_color(&self, k: &str, default: &str) -> Result<Rgba> {
        let v = self.p.str(k).unwrap_or_else(|| default.to_owned());
        self.color(&v, 1.0, false, k)
    }

    fn draw_grid_lines(&mut self) -> Result<()> {
        let (left, right) = (self.area.xmin, self.area.xmax);
        let (labels, side, top_value) = if self.second_y {
            (self.yl.label_values.clone(), Side::Left, self.yl.top)
        } else {
            (self.y.label_values.clone(), Side::Only, self.y.top)
        };
        let major = self.grid_color("majorGridLineColor", self.tmpl.major_line)?;
        let minor = self.grid_color("minorGridLineColor", self.tmpl.minor_line)?;
        for (i, &value) in labels.iter().enumerate() {
            self.c.set_line_width(0.4);
            self.c.set_color(major);
            let Some(y) = self.y_coord(value, side).filter(|y| *y >= 0.0) else {
                continue;
            };
            self.c.move_to(left, y);
            self.c.line_to(right, y);
            self.c.stroke();
            if self.minor_y >= 1 && i + 1 < labels.len() {
                let (lo, hi) = if value <= labels[i + 1] {
                    (value, labels[i + 1])
                } else {
                    (labels[i + 1], value)
                };
                let distance = (hi - lo) / (1 + self.minor_y) as f64;
                for m in 0..self.minor_y.min(100) {
                    self.c.set_line_width(0.3);
                    self.c.set_color(minor);
                    let v = lo + (1 + m) as f64 * distance;
                    let factor = self.log_base.map_or(1.0, |b| b * b);
                    if v >= factor * top_value {
                        continue;
                    }
                    let Some(y) = self.y_coord(v, side).filter(|y| *y >= 0.0) else {
                        continue;
                    };
                    self.c.move_to(left, y);
                    self.c.line_to(right, y);
                    self.c.stroke();
                }
            }
        }
        let (top, bottom) = (self.area.ymin, self.area.ymax);
        let conf = &X_CONFIGS[self.conf];
        for (unit, step, width, color) in [
            (conf.minor_unit, conf.minor_step, 0.25, minor),
            (conf.major_unit, conf.major_step, 0.33, major),
        ] {
            self.c.set_line_width(width);
            self.c.set_color(color);
            let (mut dt, delta) = self.x_times(unit, step);
            let mut n = 0;
            while self.before_end(dt) && n < 100_000 {
                n += 1;
                let x = self.x_of(dt);
                if x < self.area.xmax {
                    self.c.move_to(x, bottom);
                    self.c.line_to(x, top);
                    self.c.stroke();
                }
                match dt.checked_add_signed(delta) {
                    Some(d) => dt = d,
                    None => break,
                }
            }
        }
        self.c.set_line_width(0.5);
        self.c.move_to(self.area.xmax, bottom);
        self.c.line_to(self.area.xmax, top);
        self.c.move_to(self.area.xmin, bottom);
        self.c.line_to(self.area.xmin, top);
        self.c.stroke();
        Ok(())
    }

    fn side_of(&self, s: &Ser) -> Side {
        if !self.second_y {
            Side::Only
        } else if s.ts.style.second_y_axis {
            Side::Right
        } else {
            Side::Left
        }
    }

    fn fill_area_and_clip(&mut self, x: f64, y: f64, start_x: f64, from: Option<f64>) {
        let _ = y;
        let start_x = if start_x == 0.0 {
            self.area.xmin
        } else {
            start_x
        };
        let from = from.filter(|f| *f != 0.0).unwrap_or(self.area.ymax);
        let pattern: Vec<Cmd> = self.c.copy_path();
        self.c.line_to(x, from);
        self.c.line_to(start_x, from);
        self.c.close_path();
        self.c.fill();
        let a = (
            self.area.xmin,
            self.area.xmax,
            self.area.ymin,
            self.area.ymax,
        );
        self.c.append_path(&pattern);
        for (px, py) in [
            (x, from),
            (a.1, from),
            (a.1, a.2),
            (a.0, a.2),
            (a.0, from),
            (start_x, from),
            (x, from),
            (a.1, from),
            (a.1, a.3),
            (a.0, a.3),
            (a.0, from),
            (start_x, from),
        ] {
            self.c.line_to(px, py);
        }
        self.c.close_path();
        self.c.clip();
    }

    fn draw_lines(&mut self) -> Result<()> {
        let width = self.line_width;
        self.c.set_line_width(width);
        self.c.set_dash(None);
        if self.data.iter().any(|s| s.ts.style.stacked) {
            // sort_stacked: stacked series first, each group in order.
            let (a, b): (Vec<Ser>, Vec<Ser>) = std::mem::take(&mut self.data)
                .into_iter()
                .partition(|s| s.ts.style.stacked);
            self.data = a.into_iter().chain(b).collect();
        }
        if self.area_mode == AreaMode::Stacked && !self.second_y {
            let mut total: Vec<f64> = Vec::new();
            for s in &mut self.data {
                if s.ts.style.draw_as_infinite {
                    continue;
                }
                s.ts.style.stacked = true;
                for (i, v) in s.ts.raw_mut().iter_mut().enumerate() {
                    if total.len() <= i {
                        total.push(0.0);
                    }
                    if let Some(x) = v {
                        let original = *x;
                        *x += total[i];
                        total[i] += original;
                    }
                }
            }
        } else if self.area_mode == AreaMode::First {
            if let Some(s) = self.data.first_mut() {
                s.ts.style.stacked = true;
            }
        } else if self.area_mode == AreaMode::All {
            for s in &mut self.data {
                if !s.ts.style.draw_as_infinite {
                    s.ts.style.stacked = true;
                }
            }
        }
        if self.p.flag("areaAlpha") {
            let alpha = self.p.num("areaAlpha").ok().flatten().unwrap_or(0.5);
            let mut strokes = Vec::new();
            for s in &mut self.data {
                if s.ts.style.stacked {
                    s.ts.style.alpha = Some(alpha);
                    let mut ts = TimeSeries::new(
                        s.ts.name.clone(),
                        s.ts.start,
                        s.ts.effective_step(),
                        s.ts.values(),
                    );
                    ts.end = s.ts.end;
                    ts.style.second_y_axis = s.ts.style.second_y_axis;
                    strokes.push(Ser {
                        ts,
                        color: s.color.clone(),
                        x_step: s.x_step,
                    });
                }
            }
            self.data.extend(strokes);
        }
        self.c.set_line_width(1.0);
        let a = (
            self.area.xmin,
            self.area.ymin,
            self.area.xmax,
            self.area.ymax,
        );
        self.c.rectangle(a.0, a.1, a.2 - a.0, a.3 - a.1);
        self.c.clip();
        self.c.set_line_width(width);
        self.c.save();
        let mut clip_restored = false;
        let data = std::mem::take(&mut self.data);
        for s in &data {
            let style = &s.ts.style;
            if !style.stacked && !clip_restored {
                clip_restored = true;
                self.c.restore();
            }
            if let Some(w) = style.line_width {
                self.c.set_line_width(w);
            }
            self.c.set_dash(style.dashed.map(|d| (d, 1.0)));
            let missing = (s.ts.start - self.start) as f64 / s.ts.step as f64;
            let shift = s.x_step * (missing / s.ts.values_per_point.max(1) as f64);
            let mut x = self.area.xmin + shift + width / 2.0;
            let mut y = self.area.ymin;
            let mut start_x = x;
            let color = s.color.clone().unwrap_or_else(|| "black".into());
            let c = if style.invisible {
                self.color(&color, 0.0, true, "color")?
            } else {
                self.color(
                    &color,
                    style.alpha.filter(|a| *a != 0.0).unwrap_or(1.0),
                    false,
                    "color",
                )?
            };
            self.c.set_color(c);
            let side = self.side_of(s);
            let mut nones = 0usize;
            let draw_null_as_zero = self.p.flag("drawNullAsZero");
            for (index, value) in s.values().into_iter().enumerate() {
                let mut value = value.or(draw_null_as_zero.then_some(0.0));
                match value {
                    None => {
                        if nones == 0 {
                            self.c.line_to(x, y);
                            if style.stacked {
                                let from = self.y_coord(0.0, side);
                                self.fill_area_and_clip(x, y, start_x, from);
                            }
                        }
                        x += s.x_step;
                        nones += 1;
                    }
                    Some(v) => {
                        match self.y_coord(v, side) {
                            None => value = None,
                            Some(yy) => y = yy.max(0.0),
                        }
                        if style.draw_as_infinite && value.is_some_and(|v| v > 0.0) {
                            self.c.move_to(x, self.area.ymax);
                            self.c.line_to(x, self.area.ymin);
                            self.c.stroke();
                            x += s.x_step;
                            continue;
                        }
                        if nones > 0 {
                            start_x = x;
                        }
                        match self.line_mode {
                            LineMode::Staircase => {
                                if nones > 0 {
                                    self.c.move_to(x, y);
                                } else {
                                    self.c.line_to(x, y);
                                }
                                x += s.x_step;
                                self.c.line_to(x, y);
                            }
                            LineMode::Slope => {
                                if nones > 0 {
                                    self.c.move_to(x, y);
                                }
                                self.c.line_to(x, y);
                                x += s.x_step;
                            }
                            LineMode::Connected => {
                                if nones as f64 > self.connected_limit || nones == index {
                                    self.c.move_to(x, y);
                                }
                                self.c.line_to(x, y);
                                x += s.x_step;
                            }
                        }
                        nones = 0;
                    }
                }
            }
            if style.stacked {
                let x_pos = if self.line_mode == LineMode::Staircase {
                    x
                } else {
                    x - s.x_step
                };
                let from = self.y_coord(0.0, side);
                self.fill_area_and_clip(x_pos, y, start_x, from);
            } else {
                self.c.stroke();
            }
            self.c.set_line_width(width);
        }
        self.data = data;
        Ok(())
    }

    /// graphite's SVG metadata (`output` for svg): the x range, the y axis, each series drawn.
    fn metadata(&self) -> serde_json::Value {
        let series: Vec<serde_json::Value> = self
            .data
            .iter()
            .filter(|s| !s.ts.style.stacked)
            .map(|s| {
                serde_json::json!({
                    "name": s.ts.name, "start": s.ts.start, "end": s.ts.end, "step": s.ts.step,
                    "valuesPerPoint": s.ts.values_per_point, "color": s.color,
                    "data": s.ts.raw(),
                })
            })
            .collect();
        let mut m = serde_json::json!({
            "x": {"start": self.start, "end": self.end},
            "options": {"lineWidth": self.line_width},
            "font": {"name": "DejaVu Sans", "size": self.font.size, "bold": self.font.bold, "italic": self.font.italic},
            "area": {"xmin": self.area.xmin, "xmax": self.area.xmax, "ymin": self.area.ymin, "ymax": self.area.ymax},
            "series": series,
        });
        if !self.second_y {
            m["y"] = serde_json::json!({
                "top": self.y.top, "bottom": self.y.bottom, "step": self.y.step,
                "labels": self.y.labels, "labelValues": self.y.label_values,
            });
        }
        let _ = self.end_offset;
        m
    }
}
