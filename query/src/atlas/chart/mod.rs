//! Atlas's own PNG chart: `atlas-eval`'s `Grapher` (graph parameters, palettes, one plot per
//! y-axis, `axis_per_line`) and `atlas-chart`'s `DefaultGraphEngine` with its elements
//! (`TimeSeriesGraph`, `LeftValueAxis`/`RightValueAxis`, `TimeAxis`, the grids, `Legend` with
//! its stats, the frame line, warnings), ported from the Scala: the same layout arithmetic,
//! so an image has the size Atlas's has for the same request, the same tick marks and labels,
//! the same colours in the same order.
//!
//! `:heatmap` lines are drawn as Atlas's `Heatmap` (counts of lines per value cell and step,
//! coloured on a gradient of the line's colour or `heatmap_palette`; Spectator percentile
//! buckets spread over their range). Not drawn: `zoom`, `vision`, `layout` and `hints`
//! (ignored); Atlas's "Fetch:" line (it reports Atlas's own data loading).

pub mod gfx;
pub mod ticks;

use std::collections::BTreeMap;

use chrono::TimeZone;
use chrono_tz::Tz;

use gfx::{Color, Dims, Font, Gfx, Turn};
use ticks::{Scale, TickLabelMode, TimeScale, ValueScale, ValueTick};

use super::expr::Summary;
use super::query::Tags;
use super::routes::get;
use super::Graph;
use crate::error::QueryError;

const MAX_YAXES: usize = 5;
const MAX_LINES_IN_LEGEND: usize = 50;
const MIN_CANVAS_WIDTH: i32 = 64;
const MIN_CANVAS_HEIGHT: i32 = 64;
const MAX_WIDTH: i32 = 2000;
const MAX_HEIGHT: i32 = 1000;

fn bad(msg: impl Into<String>) -> QueryError {
    QueryError::BadRequest(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Themes and palettes

#[derive(Debug, Clone, Copy)]
struct Styles {
    background: Color,
    line: Color,
    text: Color,
}

#[derive(Debug, Clone, Copy)]
struct Theme {
    image: Styles,
    canvas: Styles,
    minor_grid: Color,
    major_grid: Color,
    warnings: Styles,
    name: &'static str,
}

impl Theme {
    /// `atlas.chart.theme.light` and `.dark` (`reference.conf`).
    fn named(name: &str) -> Result<Theme, QueryError> {
        let (bg, fg, canvas) = match name {
            "light" => (0xFFF5_F5F5, 0xFF00_0000, 0xFFFF_FFFF),
            "dark" => (0xFF0A_0A0A, 0xFFFF_FFFF, 0xFF00_0000),
            _ => return Err(bad(format!("invalid theme name: '{name}'"))),
        };
        let image = Styles {
            background: Color(bg),
            line: Color(fg),
            text: Color(fg),
        };
        Ok(Theme {
            image,
            canvas: Styles {
                background: Color(canvas),
                ..image
            },
            minor_grid: Color(0x5FAB_ABAB),
            major_grid: Color(0x5FFF_5B5B),
            warnings: Styles {
                background: Color(0xFFFF_C800),
                line: Color(fg),
                text: Color(0xFF00_0000),
            },
            name: if name == "dark" { "dark" } else { "light" },
        })
    }

    fn axis(&self) -> Styles {
        self.image
    }

    fn legend(&self) -> Styles {
        self.canvas
    }

    fn primary_palette(&self) -> &'static str {
        if self.name == "dark" {
            "light24"
        } else {
            "armytage"
        }
    }

    fn offset_palette(&self) -> &'static str {
        if self.name == "dark" {
            "lightgray"
        } else {
            "bw"
        }
    }

    /// `DefaultSettings.resolveColor`: a named colour of the theme, else `[AA]RRGGBB`.
    fn resolve_color(&self, c: &str) -> Result<Color, QueryError> {
        const LIGHT: [(&str, &str); 18] = [
            ("blue1", "6BAED6"),
            ("blue2", "2171B5"),
            ("blue3", "08306B"),
            ("gray1", "888888"),
            ("gray2", "444444"),
            ("gray3", "000000"),
            ("green1", "74C476"),
            ("green2", "238B45"),
            ("green3", "00441B"),
            ("orange1", "FD8D3C"),
            ("orange2", "D94801"),
            ("orange3", "7F2704"),
            ("purple1", "9E9AC8"),
            ("purple2", "6A51A3"),
            ("purple3", "3F007D"),
            ("red1", "FB6A4A"),
            ("red2", "CB181D"),
            ("red3", "67000D"),
        ];
        const DARK: [(&str, &str); 18] = [
            ("blue1", "C6DBEF"),
            ("blue2", "6BAED6"),
            ("blue3", "2171B5"),
            ("gray1", "FFFFFF"),
            ("gray2", "BBBBBB"),
            ("gray3", "777777"),
            ("green1", "C7E9C0"),
            ("green2", "74C476"),
            ("green3", "238B45"),
            ("orange1", "FDD0A2"),
            ("orange2", "FD8D3C"),
            ("orange3", "D94801"),
            ("purple1", "DADAEB"),
            ("purple2", "9E9AC8"),
            ("purple3", "6A51A3"),
            ("red1", "FCBBA1"),
            ("red2", "FB6A4A"),
            ("red3", "CB181D"),
        ];
        let table = if self.name == "dark" { &DARK } else { &LIGHT };
        let hex = table.iter().find(|(n, _)| *n == c).map_or(c, |(_, h)| h);
        Color::parse(hex).map_err(bad)
    }
}

/// The colours a theme names (`atlas.eval.graph.<theme>.named-colors`): blue, gray, green,
/// orange, purple and red, 1 (light) to 3 (dark).
pub fn is_named_color(s: &str) -> bool {
    ["blue", "gray", "green", "orange", "purple", "red"]
        .iter()
        .any(|c| {
            s.strip_prefix(c)
                .is_some_and(|n| matches!(n, "1" | "2" | "3"))
        })
}

fn palette_file(name: &str) -> Option<&'static str> {
    Some(match name {
        "armytage" => include_str!("palettes/armytage_palette.txt"),
        "blues" => include_str!("palettes/blues_palette.txt"),
        "bw" => include_str!("palettes/bw_palette.txt"),
        "dark24" => include_str!("palettes/dark24_palette.txt"),
        "epic" => include_str!("palettes/epic_palette.txt"),
        "greens" => include_str!("palettes/greens_palette.txt"),
        "highcharts" => include_str!("palettes/highcharts_palette.txt"),
        "light24" => include_str!("palettes/light24_palette.txt"),
        "lightgray" => include_str!("palettes/lightgray_palette.txt"),
        "oranges" => include_str!("palettes/oranges_palette.txt"),
        "purples" => include_str!("palettes/purples_palette.txt"),
        "reds" => include_str!("palettes/reds_palette.txt"),
        _ => return None,
    })
}

/// `Palette.create`: a palette by name, or a list of colours `(,f00,0f0,)` (or the older
/// `colors:f00,0f0`).
fn palette_colors(desc: &str) -> Result<Vec<Color>, QueryError> {
    let list = desc
        .strip_prefix("colors:")
        .or_else(|| desc.starts_with('(').then_some(desc));
    let colors: Vec<Color> = match list {
        Some(l) => l
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "(" && *s != ")")
            .map(|s| Color::parse(s).map_err(bad))
            .collect::<Result<_, _>>()?,
        None => palette_file(desc)
            .ok_or_else(|| bad(format!("invalid palette name: '{desc}'")))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|s| Color::parse(s).map_err(bad))
            .collect::<Result<_, _>>()?,
    };
    if colors.is_empty() {
        return Err(bad("palette must contain at least one color"));
    }
    Ok(colors)
}

/// `Grapher.newPalette`: the next colour on each call, or with `hash:` the colour the label's
/// Java hash code picks.
struct Palette {
    colors: Vec<Color>,
    hash: bool,
    pos: usize,
}

impl Palette {
    fn new(mode: &str) -> Result<Palette, QueryError> {
        let (name, hash) = match mode.strip_prefix("hash:") {
            Some(n) => (n, true),
            None => (mode, false),
        };
        Ok(Palette {
            colors: palette_colors(name)?,
            hash,
            pos: 0,
        })
    }

    fn single(c: Color) -> Palette {
        Palette {
            colors: vec![c],
            hash: false,
            pos: 0,
        }
    }

    fn next(&mut self, label: &str) -> Color {
        if self.hash {
            let h = label
                .encode_utf16()
                .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
            return self.colors[h.unsigned_abs() as usize % self.colors.len()];
        }
        let c = self.colors[self.pos % self.colors.len()];
        self.pos += 1;
        c
    }
}

// ---------------------------------------------------------------------------------------------
// The graph definition (`GraphDef`, `PlotDef`, `LineDef`)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineStyle {
    Line,
    Area,
    Stack,
    VSpan,
    Heatmap,
}

impl LineStyle {
    fn parse(s: &str) -> LineStyle {
        match s {
            "area" => LineStyle::Area,
            "stack" => LineStyle::Stack,
            "vspan" => LineStyle::VSpan,
            "heatmap" => LineStyle::Heatmap,
            _ => LineStyle::Line,
        }
    }
}

#[derive(Debug, Clone)]
struct LineDef {
    label: String,
    tags: Tags,
    values: Vec<f64>,
    color: Color,
    style: LineStyle,
    width: f32,
    stats: Summary,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    AutoStyle,
    AutoData,
    Explicit(f64),
}

impl Bound {
    fn parse(s: &str, what: &str) -> Result<Bound, QueryError> {
        Ok(match s {
            "auto-style" => Bound::AutoStyle,
            "auto-data" => Bound::AutoData,
            n => Bound::Explicit(n.trim().parse::<f64>().map_err(|_| {
                bad(format!(
                    "parameter \"{what}\": \"{s}\" is not a number, auto-style or auto-data"
                ))
            })?),
        })
    }

    fn lower(self, area: bool, min: f64) -> f64 {
        match self {
            Bound::AutoStyle if area && min > 0.0 => 0.0,
            Bound::AutoStyle | Bound::AutoData => min,
            Bound::Explicit(v) => v,
        }
    }

    fn upper(self, area: bool, max: f64) -> f64 {
        match self {
            Bound::AutoStyle if area && max < 0.0 => 0.0,
            Bound::AutoStyle | Bound::AutoData => max,
            Bound::Explicit(v) => v,
        }
    }
}

#[derive(Debug, Clone)]
struct PlotDef {
    lines: Vec<LineDef>,
    ylabel: Option<String>,
    axis_color: Option<Color>,
    scale: Scale,
    upper: Bound,
    lower: Bound,
    mode: TickLabelMode,
    heatmap: HeatmapDef,
}

/// `HeatmapDef`: the colour scale, its bounds (auto-data by default), palette and label.
#[derive(Debug, Clone)]
struct HeatmapDef {
    scale: Scale,
    upper: Bound,
    lower: Bound,
    palette: Option<Vec<Color>>,
    label: Option<String>,
}

/// `Heatmap.percentileRanges`: a Spectator percentile bucket tag (`T0042` in nanoseconds,
/// shown in seconds; `D0042` as it is) and the range of values it counts.
fn percentile_range(tags: &Tags) -> Option<(f64, f64)> {
    let tag = tags.get("percentile")?;
    let (kind, hex) = tag.split_at_checked(1)?;
    if hex.len() != 4 {
        return None;
    }
    let i = usize::from_str_radix(hex, 16).ok()?;
    let buckets = super::percentiles::values();
    let max = *buckets.get(i)? as f64;
    let min = if i == 0 { 0.0 } else { buckets[i - 1] as f64 };
    match kind {
        "T" => Some((min / 1e9, max / 1e9)),
        "D" => Some((min, max)),
        _ => None,
    }
}

fn is_percentile_heatmap(l: &LineDef) -> bool {
    l.style == LineStyle::Heatmap && l.tags.contains_key("percentile")
}

/// `Palette.gradient`: the colour at falling alphas (its own alpha as the step, else a fifth).
fn gradient(c: Color) -> Vec<Color> {
    let a = i32::from(c.alpha());
    let delta = if a == 0 || a >= 255 { 255 / 5 } else { a };
    let n = (255 / delta) as usize;
    let mut out = vec![c; n];
    let mut alpha = 255;
    for slot in out.iter_mut().rev() {
        *slot = c.with_alpha(alpha.clamp(0, 255) as u8);
        alpha -= delta;
    }
    out
}

/// `Heatmap`: how many lines (or percentile counts) fall in each value cell at each step, and
/// the colour of a count.
struct Heatmap {
    y_ticks: Vec<ValueTick>,
    colors: Vec<Color>,
    /// `counts[x][y]`: step x, cell y (below the first tick, between ticks, above the last).
    counts: Vec<Vec<f64>>,
    scale: ValueScale,
    def: HeatmapDef,
    color_ticks: Vec<ValueTick>,
}

impl Heatmap {
    fn new(axis: &ValueAxis, span: &Span, canvas_height: i32) -> Option<Heatmap> {
        let plot = axis.plot;
        let lines: Vec<&LineDef> = plot
            .lines
            .iter()
            .filter(|l| l.style == LineStyle::Heatmap)
            .collect();
        let first = lines.first()?;
        let def = plot.heatmap.clone();
        let y_ticks = axis.ticks(0, canvas_height);
        let colors = def.palette.clone().unwrap_or_else(|| gradient(first.color));
        let w = ((span.end - span.start) / span.step.max(1)).max(0) as usize;
        let h = y_ticks.len() + 1;
        let mut counts = vec![vec![0.0; h]; w];
        let (min_v, max_v) = (axis.min, axis.max);
        let weight = |mn: f64, mx: f64, lo: f64, hi: f64| {
            if hi < mn || lo > mx {
                0.0
            } else {
                (mx.min(hi) - mn.max(lo)) / (mx - mn)
            }
        };
        for l in &lines {
            let range = percentile_range(&l.tags);
            for (x, t) in span.times().enumerate().take(w) {
                let v = span.value(l, t);
                if v.is_nan() {
                    continue;
                }
                let cells = &mut counts[x];
                match range {
                    Some((mn, mx)) if v > 0.0 => {
                        // A percentile bucket's count spread over the cells its range covers.
                        let mut lo = min_v;
                        let mut done = false;
                        for (i, tick) in y_ticks.iter().enumerate() {
                            cells[i] += v * weight(mn, mx, lo, tick.v);
                            if tick.v > mx {
                                done = true;
                                break;
                            }
                            lo = tick.v;
                        }
                        if !done {
                            cells[y_ticks.len()] += v * weight(mn, mx, lo, max_v);
                        }
                    }
                    Some(_) => {}
                    None => {
                        if v >= min_v && v <= max_v {
                            let y = y_ticks
                                .iter()
                                .position(|t| v < t.v)
                                .unwrap_or(y_ticks.len());
                            cells[y] += 1.0;
                        }
                    }
                }
            }
        }
        let (mut min_c, mut max_c) = (f64::MAX, f64::MIN);
        for v in counts.iter().flatten() {
            if *v > 0.0 && *v < min_c {
                min_c = *v;
            }
            max_c = max_c.max(*v);
        }
        let min_c = min_c.min(max_c);
        let (lo, hi) = (def.lower.lower(false, min_c), def.upper.upper(false, max_c));
        let n = colors.len() as i32;
        Some(Heatmap {
            scale: ValueScale::new(def.scale, lo, hi, n, 0),
            color_ticks: if hi >= 0.0 && n > 0 {
                ticks::simple(lo, hi, n, def.scale)
            } else {
                Vec::new()
            },
            y_ticks,
            colors,
            counts,
            def,
        })
    }

    fn color_of(&self, count: f64) -> Color {
        let mut c = count;
        if let Bound::Explicit(v) = self.def.lower {
            c = c.max(v);
        }
        if let Bound::Explicit(v) = self.def.upper {
            c = c.min(v);
        }
        let i = self.scale.y(c).max(0) as usize;
        self.colors[i.min(self.colors.len() - 1)]
    }

    fn color(&self, x: usize, y: usize) -> Option<Color> {
        let c = *self.counts.get(x)?.get(y)?;
        (c > 0.0).then(|| self.color_of(c))
    }

    /// `TimeSeriesHeatmap.draw`.
    fn draw(
        &self,
        g: &mut Gfx,
        span: &Span,
        xscale: &TimeScale,
        yscale: &ValueScale,
        y1: i32,
        y2: i32,
    ) {
        for (x, t) in span.times().enumerate() {
            let (px1, px2) = (xscale.x(t - span.step), xscale.x(t));
            for i in 0..=self.y_ticks.len() {
                let Some(c) = self.color(x, i) else { continue };
                let py1 = if i == 0 {
                    y2
                } else {
                    yscale.y(self.y_ticks[i - 1].v)
                };
                let py2 = if i == self.y_ticks.len() {
                    y1
                } else {
                    yscale.y(self.y_ticks[i].v)
                };
                g.fill_rect(px1, py2, px2 - px1, py1 - py2, Color(0xFFFF_FFFF));
                g.fill_rect(px1, py2, px2 - px1, py1 - py2, c);
            }
        }
    }
}

/// `HeatmapLegendEntry.draw`: the label, then the colour scale with its ticks.
fn heatmap_entry(g: &mut Gfx, h: &Heatmap, stats: bool, styles: Styles, x1: i32, y1: i32, x2: i32) {
    let label = h.def.label.clone().unwrap_or_else(|| "Heatmap".into());
    Text::new(label, Font::Normal, Align::Left, styles.text)
        .truncate(x2 - x1)
        .draw(g, x1, y1, x2, Turn::None);
    if !stats || h.colors.is_empty() {
        return;
    }
    let (normal, small) = (Font::Normal.dims(), Font::Small.dims());
    let offset = y1 + normal.height;
    let d = normal.height - 4;
    let indent = small.width * 4 + d + 4;
    let n = h.colors.len() as i32;
    let w = small.width * 38 / n;
    g.fill_rect(x1 + indent, offset, w * n, d, Color(0xFFFF_FFFF));
    for (i, c) in h.colors.iter().enumerate() {
        g.fill_rect(x1 + indent + i as i32 * w, offset, w, d, *c);
    }
    g.line(
        (x1 + indent, offset + d),
        (x1 + indent + w * n, offset + d),
        styles.line,
        1.0,
        false,
    );
    let txt_w = w.max(small.width * 7);
    let room = w >= txt_w;
    let last = h.color_ticks.len().saturating_sub(1);
    for (i, t) in h.color_ticks.iter().enumerate() {
        let x = x1 + indent + w * i as i32;
        g.line(
            (x, offset + d),
            (x, offset + d + 4),
            styles.line,
            1.0,
            false,
        );
        if room || i == 0 || i == last {
            let y = offset + d + 4;
            Text::new(t.label(), Font::Small, Align::Center, styles.text).draw(
                g,
                x - txt_w / 2,
                y + 2,
                x + txt_w - txt_w / 2,
                Turn::None,
            );
        }
    }
}

/// The time grid: a value for each step, the first at `start` (ms), each drawn from `t - step`
/// to `t`.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: i64,
    end: i64,
    step: i64,
}

impl Span {
    fn value(&self, line: &LineDef, t: i64) -> f64 {
        if t < self.start || self.step <= 0 {
            return f64::NAN;
        }
        let i = ((t - self.start) / self.step) as usize;
        line.values.get(i).copied().unwrap_or(f64::NAN)
    }

    fn times(&self) -> impl Iterator<Item = i64> {
        let (start, end, step) = (self.start, self.end, self.step.max(1));
        (0..)
            .map(move |i| start + i * step)
            .take_while(move |t| *t < end)
    }
}

impl PlotDef {
    /// `PlotDef.bounds`.
    fn bounds(&self, span: &Span) -> (f64, f64) {
        if self.lines.is_empty() {
            return (0.0, 1.0);
        }
        let (mut max, mut min) = (-f64::MAX, f64::MAX);
        for l in self.lines.iter().filter(|l| is_percentile_heatmap(l)) {
            let nonzero = span.times().any(|t| {
                let v = span.value(l, t);
                !v.is_nan() && v != 0.0
            });
            if let Some((mn, mx)) = percentile_range(&l.tags).filter(|_| nonzero) {
                min = min.min(mn);
                max = max.max(mx);
            }
        }
        let stacked: Vec<&LineDef> = self
            .lines
            .iter()
            .filter(|l| l.style == LineStyle::Stack)
            .collect();
        for t in span.times() {
            for l in self.lines.iter().filter(|l| {
                l.style != LineStyle::VSpan
                    && l.style != LineStyle::Stack
                    && !is_percentile_heatmap(l)
            }) {
                let v = span.value(l, t);
                if v.is_finite() {
                    max = max.max(v);
                    min = min.min(v);
                }
            }
            let (mut pos, mut neg) = (0.0, 0.0);
            for l in &stacked {
                let v = span.value(l, t);
                if v.is_finite() {
                    if v >= 0.0 {
                        pos += v;
                    } else {
                        neg += v;
                    }
                }
            }
            if let Some(first) = stacked.first() {
                let v = span.value(first, t);
                if v.is_finite() {
                    max = max.max(v);
                    min = min.min(v);
                }
                if pos > 0.0 && pos > max {
                    max = pos;
                }
                if neg < 0.0 && neg < min {
                    min = neg;
                }
            }
        }
        let area = self
            .lines
            .iter()
            .any(|l| matches!(l.style, LineStyle::Area | LineStyle::Stack));
        if min == f64::MAX {
            min = 0.0;
        }
        if max == -f64::MAX {
            max = 1.0;
        }
        let l = self.lower.lower(area, min);
        let u = self.upper.upper(area, max);
        if l < u {
            return (l, u);
        }
        match (self.lower, self.upper) {
            (Bound::Explicit(_), Bound::Explicit(_)) => (l, u),
            (_, Bound::Explicit(_)) => (u - 1.0, u),
            (Bound::Explicit(_), _) => (l, l + 1.0),
            _ => (l, u + 1.0),
        }
    }

    fn axis_color(&self, dflt: Color) -> Color {
        self.axis_color.unwrap_or(dflt)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegendType {
    Off,
    Labels,
    LabelsWithStats,
}

struct GraphDef {
    plots: Vec<PlotDef>,
    span: Span,
    zones: Vec<(String, Tz)>,
    width: i32,
    height: i32,
    title: Option<String>,
    legend: LegendType,
    only_graph: bool,
    theme: Theme,
    warnings: Vec<String>,
}

/// A request's query parameters (repeatable ones in order; the last of a key wins).
type Params<'p> = &'p [(String, String)];

/// One y-axis's options: `k.N`, else `k` (`Grapher.getAxisParam`).
struct AxisCfg {
    upper: Bound,
    lower: Bound,
    scale: Scale,
    stack: bool,
    ylabel: Option<String>,
    mode: TickLabelMode,
    palette: Option<String>,
    sort: Option<String>,
    desc: bool,
    heatmap: HeatmapDef,
}

impl AxisCfg {
    fn of(p: Params, id: usize) -> Result<AxisCfg, QueryError> {
        let axis = |k: &str| get(p, &format!("{k}.{id}")).or_else(|| get(p, k));
        let scale = match axis("scale") {
            Some(s) => Scale::from_name(s).map_err(bad)?,
            None if axis("o") == Some("1") => Scale::Log,
            None => Scale::Linear,
        };
        let upper = axis("u").map_or(Ok(Bound::AutoStyle), |v| Bound::parse(v, "u"))?;
        let lower = axis("l").map_or(Ok(Bound::AutoStyle), |v| Bound::parse(v, "l"))?;
        if let (Bound::Explicit(l), Bound::Explicit(u)) = (lower, upper) {
            if l >= u {
                return Err(bad(format!(
                    "lower bound must be less than upper bound ({l} >= {u})"
                )));
            }
        }
        Ok(AxisCfg {
            upper,
            lower,
            scale,
            stack: axis("stack") == Some("1"),
            ylabel: axis("ylabel").filter(|s| !s.is_empty()).map(str::to_owned),
            mode: axis("tick_labels").map_or(Ok(TickLabelMode::Decimal), |m| {
                TickLabelMode::parse(m).map_err(bad)
            })?,
            palette: get(p, &format!("palette.{id}")).map(str::to_owned),
            sort: axis("sort").map(str::to_owned),
            desc: axis("order") == Some("desc"),
            heatmap: HeatmapDef {
                scale: axis("heatmap_scale")
                    .map_or(Ok(Scale::Linear), |s| Scale::from_name(s).map_err(bad))?,
                upper: axis("heatmap_u")
                    .map_or(Ok(Bound::AutoData), |v| Bound::parse(v, "heatmap_u"))?,
                lower: axis("heatmap_l")
                    .map_or(Ok(Bound::AutoData), |v| Bound::parse(v, "heatmap_l"))?,
                palette: match axis("heatmap_palette") {
                    Some(name) => Some(palette_colors(name)?),
                    None => None,
                },
                label: axis("heatmap_label").map(str::to_owned),
            },
        })
    }

    /// `Axis.newPlotDef`.
    fn plot(&self, lines: Vec<LineDef>, multi_y: bool) -> PlotDef {
        let ylabel = self
            .ylabel
            .as_deref()
            .map(|s| super::substitute(s, &common_tags(lines.iter()), 0, None));
        PlotDef {
            axis_color: if multi_y {
                lines.first().map(|l| l.color)
            } else {
                None
            },
            lines,
            ylabel,
            scale: self.scale,
            upper: self.upper,
            lower: self.lower,
            mode: self.mode,
            heatmap: self.heatmap.clone(),
        }
    }
}

fn common_tags<'a>(mut lines: impl Iterator<Item = &'a LineDef>) -> Tags {
    let Some(first) = lines.next() else {
        return Tags::new();
    };
    let mut tags = first.tags.clone();
    for l in lines {
        tags.retain(|k, v| l.tags.get(k) == Some(v));
    }
    tags
}

/// NaN sorts last either way (`Grapher.compare`).
fn cmp_stat(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ if desc => b.total_cmp(&a),
        _ => a.total_cmp(&b),
    }
}

/// `Grapher.sort` with the URL's `sort` and `order`.
fn sort_lines(warnings: &mut Vec<String>, by: Option<&str>, desc: bool, lines: &mut [LineDef]) {
    let by = if desc {
        Some(by.unwrap_or("legend"))
    } else {
        by
    };
    let Some(mode) = by else { return };
    let stat = |l: &LineDef| -> Option<f64> {
        let s = &l.stats;
        Some(match mode {
            "min" => s.min,
            "max" => s.max,
            "avg" => s.avg(),
            "count" => s.count as f64,
            "total" => s.total,
            "last" => s.last,
            _ => return None,
        })
    };
    if mode != "legend" && !["min", "max", "avg", "count", "total", "last"].contains(&mode) {
        warnings.push(format!(
            "Invalid sort mode '{mode}'. Using default of 'legend'."
        ));
    }
    lines.sort_by(|a, b| match (stat(a), stat(b)) {
        (Some(x), Some(y)) => cmp_stat(x, y, desc),
        _ if desc => b.label.cmp(&a.label),
        _ => a.label.cmp(&b.label),
    });
}

/// `Grapher.create` and `GraphConfig.newGraphDef`: the plots, colours and options of a
/// graph request over what `evaluate` computed.
fn graph_def(g: &Graph, p: Params, zones: Vec<(String, Tz)>) -> Result<GraphDef, QueryError> {
    let theme = Theme::named(get(p, "theme").unwrap_or("light"))?;
    let mut warnings: Vec<String> = Vec::new();
    let mut palette = Palette::new(get(p, "palette").unwrap_or(theme.primary_palette()))?;
    let mut shift_palette = Palette::new(theme.offset_palette())?;
    let span = Span {
        start: g.grid.start * 1000,
        end: g.grid.end * 1000,
        step: g.grid.step * 1000,
    };

    // The expressions by axis, in order.
    let mut by_axis: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, d) in g.lines.iter().enumerate() {
        let axis = d.style.axis.unwrap_or(0);
        if axis as usize >= MAX_YAXES {
            return Err(bad(format!(
                "axis {axis}: Atlas draws at most {MAX_YAXES} y-axes, 0 to {}",
                MAX_YAXES - 1
            )));
        }
        by_axis.entry(axis).or_default().push(i);
    }
    let multi_y = by_axis.len() > 1;
    let mut plots = Vec::new();
    for (axis, idx) in &by_axis {
        let cfg = AxisCfg::of(p, *axis as usize)?;
        let dflt = if cfg.stack {
            LineStyle::Stack
        } else {
            LineStyle::Line
        };
        let mut axis_palette = match &cfg.palette {
            Some(v) => Some(Palette::new(v)?),
            None => None,
        };
        let mut lines: Vec<LineDef> = Vec::new();
        // Every heatmap line of an axis takes one colour (`heatmap<axis>` of the palette).
        let mut heatmap_color: Option<Color> = None;
        // Each expression's lines, coloured in the order of their labels, as Atlas colours
        // them before it sorts them for presentation.
        let mut start = 0;
        while start < idx.len() {
            let expr = g.lines[idx[start]].expr;
            let mut end = start;
            while end < idx.len() && g.lines[idx[end]].expr == expr {
                end += 1;
            }
            let group = &idx[start..end];
            let style = &g.lines[group[0]].style;
            let offset = g.lines[group[0]].offset;
            let mut own = match (&style.palette, &style.color) {
                (Some(pal), _) => Some(Palette::new(pal)?),
                (None, Some(c)) => Some(Palette::single(theme.resolve_color(c)?)),
                _ => None,
            };
            let alpha = match &style.alpha {
                Some(a) => Some(u8::from_str_radix(a, 16).map_err(|_| {
                    bad(format!("alpha: \"{a}\" is not a hex value from 00 to FF"))
                })?),
                None => None,
            };
            let line_style = style.line_style.as_deref().map_or(dflt, LineStyle::parse);
            let mut by_label: Vec<usize> = group.to_vec();
            by_label.sort_by(|a, b| g.lines[*a].line.label.cmp(&g.lines[*b].line.label));
            let mut colors: BTreeMap<usize, Color> = BTreeMap::new();
            for &i in &by_label {
                let label = &g.lines[i].line.label;
                let mut pick = |label: &str| match (&mut own, &mut axis_palette) {
                    (Some(o), _) => o.next(label),
                    (None, _) if offset > 0 => shift_palette.next(label),
                    (None, Some(a)) => a.next(label),
                    (None, None) => palette.next(label),
                };
                let c = if line_style == LineStyle::Heatmap && style.color.is_none() {
                    if cfg.heatmap.palette.is_some() {
                        // The heatmap's own palette colours it: no colour is taken.
                        *heatmap_color.get_or_insert(Color::BLACK)
                    } else {
                        match heatmap_color {
                            Some(c) => c,
                            None => *heatmap_color.insert(pick(&format!("heatmap{axis}"))),
                        }
                    }
                } else {
                    pick(label)
                };
                colors.insert(i, alpha.map_or(c, |a| c.with_alpha(a)));
            }
            for &i in group {
                let d = &g.lines[i];
                lines.push(LineDef {
                    label: d.line.label.clone(),
                    tags: d.line.tags.clone(),
                    values: d.line.values.clone(),
                    color: colors[&i],
                    style: line_style,
                    width: d.style.line_width.unwrap_or(1.0) as f32,
                    stats: Summary::of(&d.line.values),
                });
            }
            start = end;
        }
        sort_lines(&mut warnings, cfg.sort.as_deref(), cfg.desc, &mut lines);
        plots.push(cfg.plot(lines, multi_y));
    }
    if plots.is_empty() {
        plots.push(AxisCfg::of(p, 0)?.plot(Vec::new(), false));
    }

    let legend = if get(p, "no_legend") == Some("1") {
        LegendType::Off
    } else if get(p, "no_legend_stats") == Some("1") {
        LegendType::Labels
    } else {
        LegendType::LabelsWithStats
    };
    let title = get(p, "title").filter(|t| !t.is_empty()).map(|t| {
        super::substitute(
            t,
            &common_tags(plots.iter().flat_map(|p| p.lines.iter())),
            0,
            None,
        )
    });
    let int =
        |k: &str, d: i32| -> Result<i32, QueryError> {
            match get(p, k) {
                None => Ok(d),
                Some(v) => v.parse::<i32>().ok().filter(|v| *v > 0).ok_or_else(|| {
                    bad(format!("parameter \"{k}\": \"{v}\" is not a positive size"))
                }),
            }
        };
    let (mut width, mut height) = (int("w", 700)?, int("h", 300)?);
    if height > MAX_HEIGHT {
        warnings.push(format!("Restricted graph height to {MAX_HEIGHT}."));
        height = MAX_HEIGHT;
    }
    if width > MAX_WIDTH {
        warnings.push(format!("Restricted graph width to {MAX_WIDTH}."));
        width = MAX_WIDTH;
    }
    warnings.extend(g.notices.iter().cloned());
    let mut def = GraphDef {
        plots,
        span,
        zones,
        width,
        height,
        title,
        legend,
        only_graph: get(p, "only_graph") == Some("1"),
        theme,
        warnings,
    };
    if get(p, "axis_per_line") == Some("1") {
        axis_per_line(&mut def, p)?;
    }
    Ok(def)
}

/// `GraphDef.axisPerLine` and `GraphConfig.useAxisPerLine`: each line on its own axis, the
/// axis in the line's colour, with axis N's options.
fn axis_per_line(def: &mut GraphDef, p: Params) -> Result<(), QueryError> {
    if def.plots.len() > 1 {
        def.warnings.insert(
            0,
            "axisPerLine cannot be used with explicit multi axis".into(),
        );
        return Ok(());
    }
    let n = def.plots[0].lines.len();
    if n > MAX_YAXES {
        def.warnings.insert(
            0,
            format!("Too many Y-axes, {n} > {MAX_YAXES}, axis per line disabled."),
        );
        return Ok(());
    }
    let lines = std::mem::take(&mut def.plots[0].lines);
    let multi_y = n > 1;
    let mut plots = Vec::with_capacity(n);
    for (i, l) in lines.into_iter().enumerate() {
        // `newPlotDef` again: a lone line's axis keeps the theme's colour.
        plots.push(AxisCfg::of(p, i)?.plot(vec![l], multi_y));
    }
    if !plots.is_empty() {
        def.plots = plots;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Text

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Center,
    Right,
}

#[derive(Debug, Clone)]
struct Text {
    s: String,
    font: Font,
    align: Align,
    color: Color,
}

const TEXT_RIGHT_PADDING: i32 = 8;

impl Text {
    fn new(s: impl Into<String>, font: Font, align: Align, color: Color) -> Text {
        Text {
            s: s.into(),
            font,
            align,
            color,
        }
    }

    fn dims(&self) -> Dims {
        self.font.dims()
    }

    /// `Text.truncate`: what fits in `width`, with `...` when cut.
    fn truncate(mut self, width: i32) -> Text {
        let max = (width - TEXT_RIGHT_PADDING) / self.dims().width.max(1);
        let len = self.s.chars().count() as i32;
        if len < max {
            return self;
        }
        self.s = if max < 5 {
            String::new()
        } else {
            let keep: String = self.s.chars().take((max - 5) as usize).collect();
            format!("{keep}...")
        };
        self
    }

    /// The lines `LineBreakMeasurer` makes in `width`: words kept whole where they fit.
    fn wrap(&self, width: i32) -> Vec<String> {
        let cap = ((width - TEXT_RIGHT_PADDING) / self.dims().width.max(1)).max(1) as usize;
        let chars: Vec<char> = self.s.chars().collect();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < chars.len() {
            let rest = &chars[pos..];
            if rest.len() <= cap {
                out.push(rest.iter().collect());
                break;
            }
            // Break after the last space that fits (trailing spaces hang past the edge).
            let mut cut = rest[..=cap.min(rest.len() - 1)]
                .iter()
                .rposition(|c| *c == ' ')
                .map_or(cap, |i| i + 1);
            if cut == 0 {
                cut = cap;
            }
            while cut < rest.len() && rest[cut] == ' ' {
                cut += 1;
            }
            out.push(
                rest[..cut]
                    .iter()
                    .collect::<String>()
                    .trim_end()
                    .to_string(),
            );
            pos += cut;
        }
        out
    }

    fn height(&self, width: i32) -> i32 {
        if self.s.is_empty() {
            return self.dims().height;
        }
        (self.wrap(width).len() as f32 * self.dims().line).ceil() as i32
    }

    fn draw(&self, g: &mut Gfx, x1: i32, y1: i32, x2: i32, turn: Turn) {
        if self.s.is_empty() {
            return;
        }
        let d = self.dims();
        let width = x2 - x1;
        let mut y = y1 as f32;
        for line in self.wrap(width) {
            y += d.ascent;
            let x = match self.align {
                Align::Left => x1 as f32 + 4.0,
                Align::Right => (x1 + width) as f32 - 4.0 - g.ink(&line, self.font).1 as f32,
                Align::Center => x1 as f32 + (width - g.ink(&line, self.font).1) as f32 / 2.0,
            };
            g.text(
                &line,
                self.font,
                x.round() as i32,
                y.round() as i32,
                self.color,
                turn,
            );
            y += d.line - d.ascent;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Elements drawn top to bottom

enum El<'a> {
    Pad(i32),
    Text(Text),
    /// A legend entry for a line, with its stats or not.
    Entry(&'a PlotDef, &'a LineDef, bool, Styles),
    /// A heatmap's legend entry, with its colour scale or not.
    Heat(&'a Heatmap, bool, Styles),
    Bullet(Text),
    Block(Vec<El<'a>>, Option<Color>),
}

impl El<'_> {
    fn height(&self, width: i32) -> i32 {
        match self {
            El::Pad(h) => *h,
            El::Text(t) => t.height(width),
            El::Entry(_, _, stats, _) => {
                let n = Font::Normal.dims().height;
                if *stats {
                    n + Font::Small.dims().height * 3
                } else {
                    n
                }
            }
            El::Heat(_, stats, _) => Font::Normal.dims().height * if *stats { 3 } else { 1 },
            El::Bullet(t) => t.height(width - t.dims().width),
            El::Block(els, _) => els.iter().map(|e| e.height(width)).sum(),
        }
    }

    fn draw(&self, g: &mut Gfx, x1: i32, y1: i32, x2: i32, y2: i32) {
        match self {
            El::Pad(_) => {}
            El::Text(t) => t.draw(g, x1, y1, x2, Turn::None),
            El::Entry(plot, line, stats, styles) => {
                legend_entry(g, plot, line, *stats, *styles, x1, y1, x2)
            }
            El::Heat(h, stats, styles) => heatmap_entry(g, h, *stats, *styles, x1, y1, x2),
            El::Bullet(t) => {
                let d = t.dims();
                let diameter = d.width - 2;
                g.fill_oval(
                    x1 + (d.width - diameter) / 2,
                    y1 + (d.height - diameter) / 2,
                    diameter,
                    diameter,
                    t.color,
                );
                t.draw(g, x1 + d.width, y1, x2, Turn::None);
            }
            El::Block(els, bg) => {
                if let Some(c) = bg {
                    g.fill_rect(x1, y1, x2 - x1, y2 - y1, *c);
                }
                let mut y = y1;
                for e in els {
                    let h = e.height(x2 - x1);
                    e.draw(g, x1, y, x2, y + h);
                    y += h;
                }
            }
        }
    }
}

/// `LegendEntry.format`: a stat in nine places and a prefix.
fn stat_format(plot: &PlotDef, v: f64, special: bool) -> String {
    use ticks::{binary, decimal, duration};
    match (plot.mode, special) {
        (TickLabelMode::Binary, true) => binary(v).format(v, "%9.2f%1s", "%8.1e "),
        (TickLabelMode::Binary | TickLabelMode::Duration, false) => {
            decimal(v).format(v, "%9.2f%1s", "%8.1e ")
        }
        (TickLabelMode::Duration, true) => duration(v).format(v, "%9.2f%1s", "%8.1e "),
        _ => decimal(v).format(v, "%9.3f%1s", "%8.1e "),
    }
}

#[allow(clippy::too_many_arguments)]
fn legend_entry(
    g: &mut Gfx,
    plot: &PlotDef,
    line: &LineDef,
    stats: bool,
    styles: Styles,
    x1: i32,
    y1: i32,
    x2: i32,
) {
    let d = Font::Normal.dims().height - 4;
    g.fill_rect(x1 + 2, y1 + 2, d, d, styles.background);
    g.fill_rect(x1 + 2, y1 + 2, d, d, line.color);
    g.draw_rect(x1 + 2, y1 + 2, d, d, styles.line);
    Text::new(line.label.clone(), Font::Normal, Align::Left, styles.text)
        .truncate(x2 - x1 - d - 4)
        .draw(g, x1 + d + 4, y1, x2, Turn::None);
    if !stats {
        return;
    }
    let s = &line.stats;
    let (count, avg) = if s.count == 0 {
        (0.0, f64::NAN)
    } else {
        (s.count as f64, s.avg())
    };
    let f = |v: f64| stat_format(plot, v, true);
    let rows = [
        ticks::jformat(
            "    Max : %-11s   Min  : %-11s",
            &[],
            &[&f(s.max), &f(s.min)],
        ),
        ticks::jformat(
            "    Avg : %-11s   Last : %-11s",
            &[],
            &[&f(avg), &f(s.last)],
        ),
        ticks::jformat(
            "    Tot : %-11s   Cnt  : %-11s",
            &[],
            &[&f(s.total), &stat_format(plot, count, false)],
        ),
    ];
    let offset = y1 + Font::Normal.dims().height;
    let rh = Font::Small.dims().height;
    for (i, row) in rows.iter().enumerate() {
        Text::new(row.clone(), Font::Small, Align::Left, styles.text).draw(
            g,
            x1 + d + 4,
            offset + i as i32 * rh,
            x2,
            Turn::None,
        );
    }
}

/// `Legend`: an optional bold header, an entry per line up to `max`, then how many were left
/// out.
fn legend<'a>(
    theme: &Theme,
    plot: &'a PlotDef,
    heatmap: Option<&'a Heatmap>,
    label: Option<String>,
    stats: bool,
    max: usize,
) -> El<'a> {
    let styles = theme.legend();
    let mut els = vec![El::Pad(5)];
    if let Some(l) = label {
        els.push(El::Text(Text::new(
            l,
            Font::NormalBold,
            Align::Left,
            plot.axis_color(styles.text),
        )));
    }
    if let Some(h) = heatmap {
        els.push(El::Pad(2));
        els.push(El::Heat(h, stats, styles));
    }
    let entries: Vec<&LineDef> = plot
        .lines
        .iter()
        .filter(|l| l.style != LineStyle::Heatmap)
        .collect();
    for line in entries.iter().take(max) {
        els.push(El::Pad(2));
        els.push(El::Entry(plot, line, stats, styles));
    }
    if entries.len() > max {
        els.push(El::Pad(2));
        els.push(El::Text(Text::new(
            format!("... {} suppressed ...", entries.len() - max),
            Font::Normal,
            Align::Left,
            styles.text,
        )));
    }
    El::Block(els, None)
}

// ---------------------------------------------------------------------------------------------
// Axes and the graph

const TICK_MARK_LENGTH: i32 = 4;

fn value_axis_width() -> i32 {
    Font::Normal.dims().height + Font::Small.dims().width * 7 + TICK_MARK_LENGTH + 1
}

fn min_right_padding() -> i32 {
    Font::Small.dims().width * 4
}

fn time_axis_height() -> i32 {
    10 + Font::Small.dims().height
}

fn min_time_label_width() -> i32 {
    " 00:00 ".len() as i32 * Font::Small.dims().width
}

struct ValueAxis<'a> {
    plot: &'a PlotDef,
    min: f64,
    max: f64,
    right: bool,
    color: Color,
}

impl ValueAxis<'_> {
    fn scale(&self, y1: i32, y2: i32) -> ValueScale {
        ValueScale::new(self.plot.scale, self.min, self.max, y1, y2)
    }

    fn ticks(&self, y1: i32, y2: i32) -> Vec<ValueTick> {
        let n = (y2 - y1) / (Font::Small.dims().height * 3);
        match self.plot.mode {
            TickLabelMode::Binary => ticks::binary_ticks_for(self.min, self.max, n),
            TickLabelMode::Duration => ticks::duration_ticks_for(self.min, self.max, n),
            _ => ticks::value(self.min, self.max, n, self.plot.scale),
        }
    }

    fn prefix(&self, v: f64) -> (ticks::UnitPrefix, &'static str) {
        match self.plot.mode {
            TickLabelMode::Off => (ticks::ONE, ""),
            TickLabelMode::Decimal => (ticks::decimal(v), "%.1f%s"),
            TickLabelMode::Binary => (ticks::binary(v), "%.0f%s"),
            TickLabelMode::Duration => (ticks::duration(v), "%.1f%s"),
        }
    }

    /// `drawLabel`: the axis label centred in the box, turned a quarter.
    fn draw_label(
        &self,
        g: &mut Gfx,
        text: Text,
        (x1, y1, x2, y2): (i32, i32, i32, i32),
        up: bool,
    ) {
        let (cx, cy) = ((x2 - x1) / 2 + x1, (y2 - y1) / 2 + y1);
        let width = y2 - y1;
        let t = text.truncate(width);
        let h = t.height(width);
        let turn = if up {
            Turn::Up(cx, cy)
        } else {
            Turn::Down(cx, cy)
        };
        t.draw(g, cx - width / 2, cy - h / 2, cx + width / 2, turn);
    }

    fn draw(&self, g: &mut Gfx, x1: i32, y1: i32, x2: i32, y2: i32) {
        let c = self.color;
        let small = Font::Small.dims();
        let (edge, out) = if self.right { (x1, 1) } else { (x2, -1) };
        g.line((edge, y1), (edge, y2), c, 1.0, false);
        let majors: Vec<ValueTick> = self.ticks(y1, y2).into_iter().filter(|t| t.major).collect();
        let offset = majors.first().map_or(0.0, |t| t.offset);
        let show = self.plot.mode != TickLabelMode::Off;
        let yscale = self.scale(y1, y2);
        let label_box = |ty: i32| {
            if self.right {
                (x1 + TICK_MARK_LENGTH + 1, ty, x2)
            } else {
                (x1, ty, x2 - TICK_MARK_LENGTH - 1)
            }
        };
        let align = if self.right {
            Align::Left
        } else {
            Align::Right
        };
        let mark = |g: &mut Gfx, py: i32| {
            g.line(
                (edge, py),
                (edge + out * TICK_MARK_LENGTH, py),
                c,
                1.0,
                false,
            );
        };
        if offset == 0.0 || !show {
            for t in &majors {
                let py = yscale.y(t.v);
                mark(g, py);
                if show {
                    let ty = py - small.height / 2;
                    let (a, b, e) = label_box(ty);
                    Text::new(t.label(), Font::Small, align, c).draw(g, a, b, e, Turn::None);
                }
            }
        } else if let (Some(first), Some(last)) = (majors.first(), majors.last()) {
            let base = first.v;
            let (prefix, fmt) = self.prefix(last.v - base);
            let offset_str = prefix.format(base, fmt, "%.0e");
            let oh = small.height * 2;
            let ow = small.width * (offset_str.chars().count() as i32 + 3);
            let oy = yscale.y(base);
            let (otop, obottom) = (oy - ow - TICK_MARK_LENGTH, oy - TICK_MARK_LENGTH);
            if self.right {
                let t = Text::new(offset_str, Font::Small, Align::Right, c);
                self.draw_label(
                    g,
                    t,
                    (
                        x1 + TICK_MARK_LENGTH,
                        otop,
                        x1 + oh + TICK_MARK_LENGTH,
                        obottom,
                    ),
                    false,
                );
                g.line((x1 + oh + TICK_MARK_LENGTH, oy), (x1, oy), c, 1.0, false);
            } else {
                let t = Text::new(offset_str, Font::Small, Align::Left, c);
                self.draw_label(
                    g,
                    t,
                    (
                        x2 - oh - TICK_MARK_LENGTH,
                        otop,
                        x2 - TICK_MARK_LENGTH,
                        obottom,
                    ),
                    true,
                );
                g.line((x2, oy), (x2 - oh - TICK_MARK_LENGTH, oy), c, 1.0, false);
            }
            for t in majors.iter().skip(1) {
                let py = yscale.y(t.v);
                mark(g, py);
                let label = format!("+{}", prefix.format(t.v - base, fmt, "%.0e"));
                let ty = py - small.height / 2;
                if ty + small.height < otop {
                    let (a, b, e) = label_box(ty);
                    Text::new(label, Font::Small, align, c).draw(g, a, b, e, Turn::None);
                }
            }
        }
        if let Some(l) = &self.plot.ylabel {
            let h = Font::Normal.dims().height;
            let t = Text::new(l.clone(), Font::Normal, Align::Center, c);
            if self.right {
                self.draw_label(g, t, (x2 - h, y1, x2, y2), false);
            } else {
                self.draw_label(g, t, (x1, y1, x1 + h, y2), true);
            }
        }
    }
}

/// The short name Atlas shows beside a time axis (`TextStyle.NARROW_STANDALONE` of the zone:
/// the generic short name, `PT` for US/Pacific).
fn zone_label(name: &str, zone: Tz, at: i64) -> String {
    let generic = [
        (&["US/Pacific", "America/Los_Angeles", "PST8PDT"][..], "PT"),
        (&["US/Mountain", "America/Denver", "MST7MDT"], "MT"),
        (&["US/Central", "America/Chicago", "CST6CDT"], "CT"),
        (&["US/Eastern", "America/New_York", "EST5EDT"], "ET"),
        (&["US/Alaska", "America/Anchorage"], "AKT"),
        (&["US/Hawaii", "Pacific/Honolulu"], "HST"),
        (
            &["UTC", "Etc/UTC", "Z", "UCT", "Etc/UCT", "Universal", "Zulu"],
            "UTC",
        ),
        (&["GMT", "Etc/GMT", "Greenwich"], "GMT"),
    ];
    if let Some((_, n)) = generic.iter().find(|(names, _)| names.contains(&name)) {
        return (*n).to_string();
    }
    zone.timestamp_millis_opt(at)
        .single()
        .map_or_else(|| name.to_string(), |d| d.format("%Z").to_string())
}

struct TimeAxis {
    zone: Tz,
    label: String,
    start: i64,
    end: i64,
    step: i64,
    alpha: u8,
}

impl TimeAxis {
    fn scale(&self, x1: i32, x2: i32) -> TimeScale {
        TimeScale::new(
            self.start - self.step,
            self.end - self.step,
            self.step,
            x1,
            x2,
        )
    }

    fn ticks(&self, x1: i32, x2: i32) -> Vec<ticks::TimeTick> {
        let n = (x2 - x1) / min_time_label_width();
        ticks::time(self.start - self.step, self.end, self.zone, n)
    }

    fn draw(&self, g: &mut Gfx, x1: i32, y1: i32, x2: i32, color: Color) {
        let txt_h = Font::Small.dims().height;
        let pad = min_time_label_width() / 2;
        g.line((x1, y1), (x2, y1), color.with_alpha(self.alpha), 1.0, false);
        let xscale = self.scale(x1, x2);
        let start_offset = ticks::offset_ms(self.zone, self.start);
        let mut indicated = false;
        for t in self.ticks(x1, x2).into_iter().filter(|t| t.major) {
            let px = xscale.x(t.timestamp);
            if px < x1 || px > x2 {
                continue;
            }
            g.line((px, y1), (px, y1 + 4), color, 1.0, false);
            let delta = ticks::offset_ms(self.zone, t.timestamp) - start_offset;
            let text = if delta != 0 && !indicated {
                // The first tick after a change of offset (daylight saving) says by how much.
                indicated = true;
                Text::new(java_duration(delta), Font::Small, Align::Center, Color::RED)
            } else {
                Text::new(t.label(self.zone), Font::Small, Align::Center, color)
            };
            text.draw(g, px - pad, y1 + txt_h / 2, px + pad, Turn::None);
        }
        let w = (self.label.chars().count() as i32 + 2) * Font::Small.dims().width;
        let padding = pad + 2;
        Text::new(self.label.clone(), Font::Small, Align::Right, color).draw(
            g,
            x1 - w - padding,
            y1 + txt_h / 2,
            x1 - padding,
            Turn::None,
        );
    }
}

/// `Duration.toString` without its `PT`, signed: `+1H`, `-1H`, `+30M`.
fn java_duration(ms: i64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h != 0 {
        out.push_str(&format!("{h}H"));
    }
    if m != 0 {
        out.push_str(&format!("{m}M"));
    }
    if s != 0 || out.is_empty() {
        out.push_str(&format!("{s}S"));
    }
    if ms < 0 {
        out
    } else {
        format!("+{out}")
    }
}

/// `TimeSeriesGraph`: the canvas, its lines, grids and axes.
struct TimeSeriesGraph<'a> {
    def: &'a GraphDef,
    yaxes: Vec<ValueAxis<'a>>,
    time_axes: Vec<TimeAxis>,
    /// Each plot's heatmap, when it has `:heatmap` lines.
    heatmaps: Vec<Option<Heatmap>>,
}

impl<'a> TimeSeriesGraph<'a> {
    fn new(def: &'a GraphDef) -> TimeSeriesGraph<'a> {
        let axis_line = def.theme.axis().line;
        let yaxes: Vec<ValueAxis> = def
            .plots
            .iter()
            .enumerate()
            .map(|(i, plot)| {
                let (min, max) = plot.bounds(&def.span);
                ValueAxis {
                    plot,
                    min,
                    max,
                    right: i > 0,
                    color: plot.axis_color(axis_line),
                }
            })
            .collect();
        let time_axes = def
            .zones
            .iter()
            .enumerate()
            .map(|(i, (name, zone))| TimeAxis {
                zone: *zone,
                label: zone_label(name, *zone, def.span.start),
                start: def.span.start,
                end: def.span.end,
                step: def.span.step,
                alpha: if i == 0 { 40 } else { 0xFF },
            })
            .collect();
        let canvas = def.height.clamp(MIN_CANVAS_HEIGHT, MAX_HEIGHT);
        let heatmaps = yaxes
            .iter()
            .map(|a| Heatmap::new(a, &def.span, canvas))
            .collect();
        TimeSeriesGraph {
            def,
            yaxes,
            time_axes,
            heatmaps,
        }
    }

    fn canvas_height(&self) -> i32 {
        self.def.height.clamp(MIN_CANVAS_HEIGHT, MAX_HEIGHT)
    }

    fn height(&self) -> i32 {
        let h = self.canvas_height();
        if self.def.only_graph {
            h
        } else {
            h + self.time_axes.len() as i32 * time_axis_height()
        }
    }

    fn width(&self) -> i32 {
        let w = self.def.width.clamp(MIN_CANVAS_WIDTH, MAX_WIDTH);
        if self.def.only_graph {
            return w;
        }
        let right = if self.yaxes.len() > 1 {
            0
        } else {
            min_right_padding()
        };
        w + self.yaxes.len() as i32 * value_axis_width() + right
    }

    fn draw(&self, g: &mut Gfx, x1: i32, y1: i32, x2: i32, y2: i32) {
        let def = self.def;
        let theme = &def.theme;
        let axis_w = value_axis_width();
        let left_w = axis_w;
        let right_axes = (self.yaxes.len() as i32 - 1).max(0) * axis_w;
        let right_side = if right_axes > 0 {
            right_axes
        } else {
            min_right_padding()
        };
        let width = x2 - x1 - (left_w + right_side);
        let show_axes = !def.only_graph && width >= MIN_CANVAS_WIDTH;
        let lo = if show_axes {
            left_w
        } else {
            min_right_padding()
        };
        let ro = if show_axes {
            right_side
        } else {
            min_right_padding()
        };
        let time_h = if def.only_graph {
            10
        } else {
            time_axis_height()
        };
        let chart_end = y2 - time_h * self.time_axes.len() as i32;
        let (cx1, cx2) = (x1 + lo, x2 - ro);

        g.set_clip(Some((cx1, y1, cx2, chart_end + 1)));
        g.fill_rect(
            cx1,
            y1,
            cx2 - cx1,
            chart_end + 1 - y1,
            theme.canvas.background,
        );
        let span = def.span;
        let Some(time_axis) = self.time_axes.first() else {
            g.set_clip(None);
            return;
        };
        let xscale = time_axis.scale(cx1, cx2);
        for (axis, heatmap) in self.yaxes.iter().zip(&self.heatmaps) {
            let yscale = axis.scale(y1, chart_end);
            if let Some(h) = heatmap {
                h.draw(g, &span, &xscale, &yscale, y1, chart_end);
            }
            let n = ((span.end - span.start) / span.step.max(1)).max(0) as usize;
            let (mut pos, mut neg) = (vec![0.0f64; n], vec![0.0f64; n]);
            for line in &axis.plot.lines {
                let c = line.color;
                let w = line.width;
                let mut pv = span.value(line, span.start);
                for t in span.times() {
                    let px1 = xscale.x(t - span.step);
                    let px2 = xscale.x(t);
                    let nv = span.value(line, t);
                    match line.style {
                        LineStyle::Heatmap => {}
                        LineStyle::Line => {
                            let (py, ny) = (yscale.y(pv), yscale.y(nv));
                            if !pv.is_nan() && !nv.is_nan() {
                                g.line((px1, py), (px1, ny), c, w, false);
                            }
                            if !nv.is_nan() {
                                g.line((px1, ny), (px2, ny), c, w, false);
                            }
                        }
                        LineStyle::Area => {
                            if !nv.is_nan() {
                                let axis_y = yscale.y(0.0);
                                let ny = yscale.y(nv);
                                let (a, b) = (axis_y.min(ny), axis_y.max(ny) + 1);
                                g.fill_rect(px1, a, px2 - px1, b - a, c);
                            }
                        }
                        LineStyle::VSpan => {
                            if !(nv.is_nan() || nv.abs() < 1e-12) {
                                g.fill_rect(px1, y1, px2 - px1, chart_end - y1, c);
                            }
                        }
                        LineStyle::Stack => {
                            let ox = ((t - span.start) / span.step.max(1)) as usize;
                            if ox < n {
                                let (p, q) = (pos[ox], neg[ox]);
                                if nv == 0.0 && p == 0.0 && q == 0.0 {
                                    g.fill_rect(px1, yscale.y(p), px2 - px1, 1, c);
                                } else if nv > 0.0 {
                                    let (ay, py) = (yscale.y(p), yscale.y(nv + p));
                                    let (a, b) = (ay.min(py), ay.max(py) + 1);
                                    g.fill_rect(px1, a, px2 - px1, b - a, c);
                                    pos[ox] = nv + p;
                                } else if nv < 0.0 {
                                    let (ay, py) = (yscale.y(q), yscale.y(nv + q));
                                    let (a, b) = (ay.min(py), ay.max(py) + 1);
                                    g.fill_rect(px1, a, px2 - px1, b - a, c);
                                    neg[ox] = nv + q;
                                }
                            }
                        }
                    }
                    pv = nv;
                }
            }
        }
        g.set_clip(None);

        // The time grid, then the axes, then the value grid of the first axis.
        for t in time_axis.ticks(cx1, cx2) {
            let px = xscale.x(t.timestamp);
            if px > cx1 && px < cx2 {
                let c = if t.major {
                    theme.major_grid
                } else {
                    theme.minor_grid
                };
                g.line((px, y1), (px, chart_end), c, 1.0, true);
            }
        }
        if !def.only_graph {
            let color = theme.axis().line;
            for (i, axis) in self.time_axes.iter().enumerate() {
                axis.draw(g, cx1, chart_end + 1 + time_h * i as i32, cx2, color);
            }
        }
        if let Some(first) = self.yaxes.first() {
            let yscale = first.scale(y1, chart_end);
            for t in first.ticks(y1, chart_end) {
                let py = yscale.y(t.v);
                if py != y1 && py != chart_end {
                    let c = if t.major {
                        theme.major_grid
                    } else {
                        theme.minor_grid
                    };
                    g.line((cx1, py), (cx2, py), c, 1.0, true);
                }
            }
            if show_axes {
                first.draw(g, x1, y1, x1 + left_w - 1, chart_end);
                for (i, axis) in self.yaxes.iter().skip(1).enumerate() {
                    let off = left_w + width + left_w * i as i32;
                    axis.draw(g, x1 + off, y1, x1 + off + left_w, chart_end);
                }
            }
        }
    }
}

/// `ZonedDateTime.toString` of `ms` in `zone` named `name`: `2012-01-01T00:03Z[UTC]`.
fn zoned_string(ms: i64, name: &str, zone: Tz) -> String {
    use chrono::{Offset, Timelike};
    let Some(d) = zone.timestamp_millis_opt(ms).single() else {
        return ms.to_string();
    };
    let mut s = d.format("%Y-%m-%dT%H:%M").to_string();
    if d.second() != 0 || d.nanosecond() != 0 {
        s.push_str(&format!(":{:02}", d.second()));
        if d.nanosecond() != 0 {
            s.push_str(&format!(".{:03}", d.nanosecond() / 1_000_000));
        }
    }
    let off = d.offset().fix().local_minus_utc();
    if off == 0 {
        s.push('Z');
    } else {
        let a = off.abs();
        s.push_str(&format!(
            "{}{:02}:{:02}",
            if off < 0 { '-' } else { '+' },
            a / 3600,
            (a % 3600) / 60
        ));
    }
    format!("{s}[{name}]")
}

/// Draws a graph request's PNG as Atlas's `DefaultGraphEngine` does. `zones` are the
/// request's `tz` values in order (each a time axis), at least one.
pub fn render(
    g: &Graph,
    p: &[(String, String)],
    zones: Vec<(String, Tz)>,
) -> Result<Vec<u8>, QueryError> {
    if zones.is_empty() {
        return Err(bad("a graph needs a time zone"));
    }
    let def = graph_def(g, p, zones)?;
    draw(&def, true)?.png()
}

fn draw(def: &GraphDef, text: bool) -> Result<Gfx, QueryError> {
    let theme = def.theme;
    let show_text = def.width >= Font::Small.dims().width * "Warnings: abcdef".len() as i32;
    let graph = TimeSeriesGraph::new(def);
    let mut above: Vec<El> = Vec::new();
    if let Some(t) = def.title.as_ref().filter(|_| show_text) {
        above.push(El::Text(
            Text::new(t.clone(), Font::Large, Align::Center, theme.image.text).truncate(def.width),
        ));
    }
    above.push(El::Pad(5));

    let mut below: Vec<El> = Vec::new();
    let show_legend = !def.only_graph && def.legend != LegendType::Off && show_text;
    if show_legend {
        let num_lines: usize = def.plots.iter().map(|p| p.lines.len()).sum();
        let per_plot = if num_lines <= MAX_LINES_IN_LEGEND {
            MAX_LINES_IN_LEGEND
        } else {
            MAX_LINES_IN_LEGEND / def.plots.len().max(1)
        };
        let stats = !def.only_graph
            && def.legend == LegendType::LabelsWithStats
            && graph.width() >= Font::Small.dims().width * 45;
        below.push(El::Pad(5));
        let multi = def.plots.len() > 1;
        for (i, plot) in def.plots.iter().enumerate() {
            let label = multi.then(|| match &plot.ylabel {
                Some(y) => format!("Axis {i}: {y}"),
                None => format!("Axis {i}"),
            });
            let heatmap = graph.heatmaps.get(i).and_then(Option::as_ref);
            below.push(legend(&theme, plot, heatmap, label, stats, per_plot));
        }
        let (name, zone) = &def.zones[0];
        let comment = format!(
            "Frame: {}, End: {}, Step: {}",
            super::expr::duration_string((def.span.end - def.span.start) / 1000),
            zoned_string(def.span.end, name, *zone),
            super::expr::duration_string(def.span.step / 1000)
        );
        below.push(El::Pad(15));
        below.push(El::Text(Text::new(
            comment,
            Font::Small,
            Align::Left,
            theme.legend().text,
        )));
    }
    if !def.warnings.is_empty() && show_text {
        let wt = theme.warnings.text;
        let mut els = vec![El::Text(Text::new(
            "Warnings",
            Font::NormalBold,
            Align::Left,
            wt,
        ))];
        for w in &def.warnings {
            els.push(El::Pad(2));
            els.push(El::Bullet(Text::new(
                w.clone(),
                Font::Normal,
                Align::Left,
                wt,
            )));
        }
        below.push(El::Pad(15));
        below.push(El::Block(els, Some(theme.warnings.background)));
    }
    let bg = if !def.warnings.is_empty() && !show_text {
        theme.warnings.background
    } else {
        theme.image.background
    };

    let img_w = graph.width();
    let h_above: i32 = above.iter().map(|e| e.height(img_w)).sum();
    let h_below: i32 = below.iter().map(|e| e.height(img_w)).sum();
    let img_h = h_above + graph.height() + h_below;
    let mut gfx = Gfx::new(img_w as u32, img_h as u32, bg)?;
    gfx.text = text;
    let mut y = 0;
    for e in &above {
        let h = e.height(img_w);
        e.draw(&mut gfx, 0, y, img_w, y + h);
        y += h;
    }
    let gh = graph.height();
    graph.draw(&mut gfx, 0, y, img_w, y + gh);
    y += gh;
    for e in &below {
        let h = e.height(img_w);
        e.draw(&mut gfx, 0, y, img_w, y + h);
        y += h;
    }
    Ok(gfx)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ticks_suite;
