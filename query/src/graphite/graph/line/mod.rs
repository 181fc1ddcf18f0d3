//! graphite-web 1.1.8's `LineGraph` (`render/glyph.py`), step by step in its order: title,
//! vertical titles, legend, the x-axis room, consolidation to the drawable width, the y axes
//! (again until their labels stop moving the plot), the x axis, labels, grid lines, then the
//! series (stacked areas first, under a clip that keeps each above the one below).

mod legend;
mod lines;
mod xaxis;

use crate::error::{QueryError, Result};
use crate::graphite::graph::canvas::{Align, Canvas, FontSpec, VAlign};
use crate::graphite::graph::options::{parse_color, template, Opt, Options, Rgba, Template};
use crate::graphite::graph::ticks::{known_unit_system, AxisMax, Tics};
use crate::series::TimeSeries;
use xaxis::X_CONFIGS;

/// graphite's `LEGEND_MAX_ITEMS`: more series than this hide the legend unless asked.
const LEGEND_MAX_ITEMS: usize = 10;

/// The largest image drawn, per side and in all, so a request cannot make us allocate gigabytes.
pub(crate) const MAX_SIDE: i64 = 8000;
pub(crate) const MAX_PIXELS: i64 = 16_000_000;

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
    /// The UTC offset in force at the start (graphite's pytz arithmetic keeps it for every
    /// tick of the graph).
    offset: i64,
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
        m
    }
}
