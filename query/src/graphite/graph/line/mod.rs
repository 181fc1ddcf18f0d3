//! graphite-web 1.1.8's `LineGraph` (`render/glyph.py`), step by step in its order: title,
//! vertical titles, legend, the x-axis room, consolidation to the drawable width, the y axes
//! (again until their labels stop moving the plot), the x axis, labels, grid lines, then the
//! series (stacked areas first, under a clip that keeps each above the one below).

mod lines;
mod xaxis;

use crate::error::{QueryError, Result};
use crate::graphite::graph::base::{unquote_plus, Area, Graph};
use crate::graphite::graph::canvas::{Align, Canvas, VAlign};
use crate::graphite::graph::legend::Element;
use crate::graphite::graph::options::{Opt, Options, Rgba};
use crate::graphite::graph::ticks::{known_unit_system, AxisMax, Tics};
use crate::series::TimeSeries;
use xaxis::X_CONFIGS;

/// graphite's `LEGEND_MAX_ITEMS`: more series than this hide the legend unless asked.
const LEGEND_MAX_ITEMS: usize = 10;

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

/// What the SVG metadata script reports (graphite's `output` for svg).
pub(crate) struct Drawn {
    pub canvas: Canvas,
    pub meta: Option<serde_json::Value>,
}

pub(crate) struct LineGraph {
    g: Graph,
    data: Vec<Ser>,
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
    pub(crate) fn draw(series: Vec<TimeSeries>, p: Options, svg: bool) -> Result<Drawn> {
        let g = Graph::new(p, svg)?;
        let int_opt = |p: &Options, k: &str, d: i64| -> Result<i64> {
            Ok(p.num(k)?.map_or(d, |v| v.trunc() as i64))
        };
        let log_base = match g.p.get("logBase") {
            None => None,
            Some(Opt::Str(s)) if s == "e" => Some(std::f64::consts::E),
            Some(o) if !o.truthy() => None,
            Some(_) => {
                let b = g.p.num("logBase")?.unwrap_or(10.0);
                (b >= 1.0).then_some(b)
            }
        };
        let minor_y = int_opt(&g.p, "minorY", 1)?;
        if g.p.num("yStep")?.is_some_and(|s| s <= 0.0) {
            return Err(QueryError::BadRequest(
                "parameter \"yStep\": the step must be positive".into(),
            ));
        }
        let mut lg = LineGraph {
            g,
            data: series
                .into_iter()
                .map(|ts| Ser {
                    color: ts.style.color.clone(),
                    ts,
                    x_step: 1.0,
                })
                .collect(),
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
        let meta = lg.draw_graph()?;
        Ok(Drawn {
            canvas: lg.g.c,
            meta,
        })
    }

    fn draw_graph(&mut self) -> Result<Option<serde_json::Value>> {
        let time_range = if self.data.is_empty() {
            0
        } else {
            let s = self.data.iter().map(|s| s.ts.start).min().unwrap_or(0);
            self.data.iter().map(|s| s.ts.end).max().unwrap_or(0) - s
        };
        if time_range == 0 {
            self.g.no_data()?;
            return Ok(None);
        }
        self.second_y = self.data.iter().any(|s| s.ts.style.second_y_axis);

        if self.g.p.flag("graphOnly") {
            for k in ["hideLegend", "hideGrid", "hideAxes"] {
                self.g.p.set(k, Opt::Bool(true));
            }
            for k in ["hideXAxis", "hideYAxis"] {
                self.g.p.set(k, Opt::Bool(false));
            }
            self.g.p.set("yAxisSide", Opt::Str("left".into()));
            for k in ["title", "vtitle", "tz"] {
                self.g.p.set(k, Opt::Str(String::new()));
            }
            self.g.p.set("margin", Opt::Int(0));
            self.g.margin = 0.0;
            self.g.area = Area {
                xmin: 0.0,
                xmax: self.g.width,
                ymin: 0.0,
                ymax: self.g.height,
            };
        }
        for (alias, name) in [("min", "yMin"), ("max", "yMax"), ("thickness", "lineWidth")] {
            if !self.g.p.has(name) {
                if let Some(v) = self.g.p.get(alias).cloned() {
                    self.g.p.set(name, v);
                }
            }
        }
        if !self.g.p.has("yAxisSide") {
            self.g.p.set("yAxisSide", Opt::Str("left".into()));
        }
        let units = self
            .g
            .p
            .str("yUnitSystem")
            .map(|u| u.to_lowercase())
            .filter(|u| known_unit_system(u))
            .unwrap_or_else(|| "si".into());
        self.g.p.set("yUnitSystem", Opt::Str(units));
        if self.second_y {
            self.g.p.set("yAxisSide", Opt::Str("left".into()));
        }
        if self.g.y_axis_right() {
            self.g.margin = self.g.width;
        }
        self.line_width = self.g.p.num_or("lineWidth", 1.2)?;
        let line_mode = self
            .g
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
        self.connected_limit = self.g.p.num_or("connectedLimit", f64::INFINITY)?;
        let area_mode = self
            .g
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
                self.g.p.num("rightWidth")?,
                self.g.p.num("rightDashed")?,
                self.g.p.str("rightColor"),
            );
            let (lw, ld, lc) = (
                self.g.p.num("leftWidth")?,
                self.g.p.num("leftDashed")?,
                self.g.p.str("leftColor"),
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
                self.data[i].color = Some(self.g.next_color());
            }
        }

        self.g.title()?;
        if let Some(t) = self.g.p.str("vtitle").filter(|t| !t.is_empty()) {
            self.draw_vtitle(&unquote_plus(&t), false)?;
        }
        if self.second_y {
            if let Some(t) = self.g.p.str("vtitleRight").filter(|t| !t.is_empty()) {
                self.draw_vtitle(&unquote_plus(&t), true)?;
            }
        }
        self.g.set_font(None);

        let hide_legend = match self.g.p.get("hideLegend") {
            Some(o) => o.truthy(),
            None => self.data.len() > LEGEND_MAX_ITEMS,
        };
        if !hide_legend {
            let hide_null = self.g.p.flag("hideNullFromLegend");
            let elements: Vec<Element> = self
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
                let unique = self.g.p.flag("uniqueLegend");
                self.g.draw_legend(elements, unique, self.second_y)?;
            }
        }

        if !self.g.p.flag("hideAxes") && !self.g.p.flag("hideXAxis") {
            self.g.area.ymax -= self.g.ext("")?.ascent * 2.0;
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

        let (mut cur_min, mut cur_max) = (self.g.area.xmin, self.g.area.xmax);
        self.setup_y_axes()?;
        let mut rounds = 0;
        while (cur_min != self.g.area.xmin || cur_max != self.g.area.xmax) && rounds < 20 {
            rounds += 1;
            self.consolidate()?;
            cur_min = self.g.area.xmin;
            cur_max = self.g.area.xmax;
            self.setup_y_axes()?;
        }
        self.setup_x_axis()?;
        if !self.g.p.flag("hideAxes") {
            self.draw_labels()?;
            if !self.g.p.flag("hideGrid") {
                self.draw_grid_lines()?;
            }
        }
        self.draw_lines()?;
        Ok(Some(self.metadata()))
    }

    fn draw_vtitle(&mut self, text: &str, right: bool) -> Result<()> {
        let line_height = self.g.ext("")?.height;
        let y = self.g.height / 2.0;
        if right {
            let mut x = self.g.area.xmax - line_height;
            for line in text.split('\n') {
                self.g
                    .c
                    .text(line, x, y, Align::Center, VAlign::Baseline, 90.0)?;
                x -= line_height;
            }
            self.g.area.xmax = x - self.g.margin - line_height;
        } else {
            let mut x = self.g.area.xmin + line_height;
            for line in text.split('\n') {
                self.g
                    .c
                    .text(line, x, y, Align::Center, VAlign::Baseline, 270.0)?;
                x += line_height;
            }
            self.g.area.xmin = x + self.g.margin + line_height;
        }
        Ok(())
    }

    fn consolidate(&mut self) -> Result<()> {
        let pixels = self.g.area.xmax - self.g.area.xmin - (self.line_width + 1.0);
        self.graph_width = pixels;
        let min_x_step = self.g.p.num_or("minXStep", 1.0)?;
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
        let draw_null_as_zero = self.g.p.flag("drawNullAsZero");
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
        match self.g.p.get(k) {
            Some(Opt::Str(s)) if s == "max" => Ok(Some(AxisMax::DataMax)),
            _ => Ok(self.g.p.num(k)?.map(AxisMax::Value)),
        }
    }

    fn divisors(&self) -> Result<Vec<f64>> {
        let text = self.g.p.str("yDivisors").unwrap_or_else(|| "4,5,6".into());
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
        let units = self.g.p.str("yUnitSystem").unwrap_or_else(|| "si".into());
        let mut t = Tics::new(lo, hi, &units, self.log_base)?;
        t.apply_settings(
            self.g.p.num(min_k)?,
            self.axis_max(max_k)?,
            self.g.p.num(limit_k)?,
        )?;
        match self.g.p.num(step_k)? {
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
            axis.label_width = axis.label_width.max(self.g.ext(l)?.width);
        }
        Ok(())
    }

    fn setup_y_axes(&mut self) -> Result<()> {
        if !self.second_y {
            let (mut t, mut axis) = self.tics(Side::Only, "yMin", "yMax", "yLimit", "yStep")?;
            if !self.g.p.flag("hideAxes") {
                self.labels(&mut t, &mut axis)?;
                if !self.g.p.flag("hideYAxis") {
                    if !self.g.y_axis_right() {
                        let xmin = self.g.margin + axis.label_width * 1.02;
                        if self.g.area.xmin < xmin {
                            self.g.area.xmin = xmin;
                        }
                    } else {
                        let xmax = self.g.margin - axis.label_width * 1.02;
                        if self.g.area.xmax >= xmax {
                            self.g.area.xmax = xmax;
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
            let xmin = self.g.margin + l.label_width * 1.02;
            if self.g.area.xmin < xmin {
                self.g.area.xmin = xmin;
            }
            let xmax = self.g.width - r.label_width * 1.02;
            if self.g.area.xmax >= xmax {
                self.g.area.xmax = xmax;
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
        let pixel_range = self.g.area.ymax - self.g.area.ymin;
        let (rel, range) = match self.log_base {
            Some(b) => {
                if value <= 0.0 {
                    return None;
                }
                (value.log(b) - lo.log(b), hi.log(b) - lo.log(b))
            }
            None => (value - lo, hi - lo),
        };
        Some(self.g.area.ymax - pixel_range / range * rel)
    }

    fn draw_labels(&mut self) -> Result<()> {
        if !self.g.p.flag("hideYAxis") {
            if !self.second_y {
                let right = self.g.y_axis_right();
                let w = self.y.label_width;
                for (v, label) in self
                    .y
                    .label_values
                    .clone()
                    .into_iter()
                    .zip(self.y.labels.clone())
                {
                    let x = if right {
                        self.g.area.xmax + w * 0.02
                    } else {
                        self.g.area.xmin - w * 0.02
                    };
                    let Some(y) = self.y_coord(v, Side::Only) else {
                        continue;
                    };
                    let align = if right { Align::Left } else { Align::Right };
                    self.g
                        .c
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
                    let x = self.g.area.xmin - wl * 0.02;
                    if let Some(y) = self.y_coord(v, Side::Left) {
                        self.g
                            .c
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
                    let x = self.g.area.xmax + wr * 0.02 + 3.0;
                    if let Some(y) = self.y_coord(v, Side::Right) {
                        self.g
                            .c
                            .text(&label, x, y.max(0.0), Align::Left, VAlign::Middle, 0.0)?;
                    }
                }
            }
        }
        if !self.g.p.flag("hideXAxis") {
            let conf = &X_CONFIGS[self.conf];
            let (mut dt, delta) = self.x_times(conf.label_unit, conf.label_step);
            let format = self
                .g
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
            let ascent = self.g.ext("")?.ascent;
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
                let y = self.g.area.ymax + ascent;
                self.g
                    .c
                    .text(&label, x, y, Align::Center, VAlign::Top, 0.0)?;
                match dt.checked_add_signed(delta) {
                    Some(d) => dt = d,
                    None => break,
                }
            }
        }
        Ok(())
    }

    fn grid_color(&self, k: &str, default: &str) -> Result<Rgba> {
        let v = self.g.p.str(k).unwrap_or_else(|| default.to_owned());
        self.g.color(&v, 1.0, false, k)
    }

    fn draw_grid_lines(&mut self) -> Result<()> {
        let (left, right) = (self.g.area.xmin, self.g.area.xmax);
        let (labels, side, top_value) = if self.second_y {
            (self.yl.label_values.clone(), Side::Left, self.yl.top)
        } else {
            (self.y.label_values.clone(), Side::Only, self.y.top)
        };
        let major = self.grid_color("majorGridLineColor", self.g.tmpl.major_line)?;
        let minor = self.grid_color("minorGridLineColor", self.g.tmpl.minor_line)?;
        for (i, &value) in labels.iter().enumerate() {
            self.g.c.set_line_width(0.4);
            self.g.c.set_color(major);
            let Some(y) = self.y_coord(value, side).filter(|y| *y >= 0.0) else {
                continue;
            };
            self.g.c.move_to(left, y);
            self.g.c.line_to(right, y);
            self.g.c.stroke();
            if self.minor_y >= 1 && i + 1 < labels.len() {
                let (lo, hi) = if value <= labels[i + 1] {
                    (value, labels[i + 1])
                } else {
                    (labels[i + 1], value)
                };
                let distance = (hi - lo) / (1 + self.minor_y) as f64;
                for m in 0..self.minor_y.min(100) {
                    self.g.c.set_line_width(0.3);
                    self.g.c.set_color(minor);
                    let v = lo + (1 + m) as f64 * distance;
                    let factor = self.log_base.map_or(1.0, |b| b * b);
                    if v >= factor * top_value {
                        continue;
                    }
                    let Some(y) = self.y_coord(v, side).filter(|y| *y >= 0.0) else {
                        continue;
                    };
                    self.g.c.move_to(left, y);
                    self.g.c.line_to(right, y);
                    self.g.c.stroke();
                }
            }
        }
        let (top, bottom) = (self.g.area.ymin, self.g.area.ymax);
        let conf = &X_CONFIGS[self.conf];
        for (unit, step, width, color) in [
            (conf.minor_unit, conf.minor_step, 0.25, minor),
            (conf.major_unit, conf.major_step, 0.33, major),
        ] {
            self.g.c.set_line_width(width);
            self.g.c.set_color(color);
            let (mut dt, delta) = self.x_times(unit, step);
            let mut n = 0;
            while self.before_end(dt) && n < 100_000 {
                n += 1;
                let x = self.x_of(dt);
                if x < self.g.area.xmax {
                    self.g.c.move_to(x, bottom);
                    self.g.c.line_to(x, top);
                    self.g.c.stroke();
                }
                match dt.checked_add_signed(delta) {
                    Some(d) => dt = d,
                    None => break,
                }
            }
        }
        self.g.c.set_line_width(0.5);
        self.g.c.move_to(self.g.area.xmax, bottom);
        self.g.c.line_to(self.g.area.xmax, top);
        self.g.c.move_to(self.g.area.xmin, bottom);
        self.g.c.line_to(self.g.area.xmin, top);
        self.g.c.stroke();
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
            "font": {"name": "DejaVu Sans", "size": self.g.font.size, "bold": self.g.font.bold, "italic": self.g.font.italic},
            "area": {"xmin": self.g.area.xmin, "xmax": self.g.area.xmax, "ymin": self.g.area.ymin, "ymax": self.g.area.ymax},
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
