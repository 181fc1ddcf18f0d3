//! The drawing context graphite-web's `glyph.py` draws on, cairo's calls and semantics (a current
//! path, save/restore, clip by intersection, `text_path` text placed by the font's extents), over
//! two surfaces: a PNG (tiny-skia, antialiased, text too) and SVG
//! text. One layout draws both, so a style function or an option looks the same in either.
//!
//! The font is DejaVu Sans, compiled in (`query/fonts`, with its licence): what cairo's "Sans"
//! resolves to on Debian, so text measures as graphite-web's does. Metrics are hinted as cairo
//! hints them on an image surface: ascent rounded up, descent rounded up, advances rounded.

use std::fmt::Write;
use std::sync::OnceLock;

use ab_glyph::{Font as _, FontRef, OutlineCurve};
use tiny_skia::{FillRule, Mask, Paint, PathBuilder, Pixmap, Stroke, StrokeDash, Transform};

use crate::error::QueryError;
use crate::graphite::graph::options::Rgba;

static SANS: &[u8] = include_bytes!("../../../fonts/DejaVuSans.ttf");
static SANS_BOLD: &[u8] = include_bytes!("../../../fonts/DejaVuSans-Bold.ttf");
static SANS_OBLIQUE: &[u8] = include_bytes!("../../../fonts/DejaVuSans-Oblique.ttf");
static SANS_BOLD_OBLIQUE: &[u8] = include_bytes!("../../../fonts/DejaVuSans-BoldOblique.ttf");

/// The four compiled-in font files (regular, bold, oblique, bold oblique), for a renderer of
/// our SVG that needs the same fonts (`pdf`).
pub(crate) const FONT_FILES: [&[u8]; 4] = [SANS, SANS_BOLD, SANS_OBLIQUE, SANS_BOLD_OBLIQUE];

fn faces() -> &'static [Option<FontRef<'static>>; 4] {
    static FACES: OnceLock<[Option<FontRef<'static>>; 4]> = OnceLock::new();
    FACES.get_or_init(|| {
        [SANS, SANS_BOLD, SANS_OBLIQUE, SANS_BOLD_OBLIQUE].map(|b| FontRef::try_from_slice(b).ok())
    })
}

/// A font as `setFont` selects it: DejaVu Sans in one of four faces, at a size in pixels per em.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FontSpec {
    pub size: f64,
    pub bold: bool,
    pub italic: bool,
}

/// cairo's font extents and a text's advance, hinted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extents {
    pub ascent: f64,
    pub descent: f64,
    pub height: f64,
    pub width: f64,
}

impl FontSpec {
    fn face(&self) -> Result<&'static FontRef<'static>, QueryError> {
        let i = usize::from(self.bold) + 2 * usize::from(self.italic);
        faces()[i]
            .as_ref()
            .ok_or_else(|| QueryError::Internal("the compiled-in font does not parse".into()))
    }

    fn em(&self, f: &FontRef) -> f64 {
        self.size / f64::from(f.units_per_em().unwrap_or(2048.0))
    }

    /// The extents of `text` (cairo's `font_extents` and `text_extents().x_advance`).
    pub(crate) fn extents(&self, text: &str) -> Result<Extents, QueryError> {
        let f = self.face()?;
        let em = self.em(f);
        let width = text
            .chars()
            .map(|c| (f64::from(f.h_advance_unscaled(f.glyph_id(c))) * em).round())
            .sum();
        Ok(Extents {
            ascent: (f64::from(f.ascent_unscaled()) * em).ceil(),
            descent: (-f64::from(f.descent_unscaled()) * em).ceil(),
            height: (f64::from(f.ascent_unscaled() - f.descent_unscaled() + f.line_gap_unscaled())
                * em)
                .round(),
            width,
        })
    }
}

/// One path command, in device pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cmd {
    Move(f64, f64),
    Line(f64, f64),
    /// A cubic Bézier: two control points, then the end.
    Curve(f64, f64, f64, f64, f64, f64),
    Close,
}

/// What `save` keeps and `restore` brings back.
#[derive(Debug, Clone)]
struct State {
    color: Rgba,
    line_width: f64,
    dash: Option<(f64, f64)>,
    clip: Clip,
}

#[derive(Debug, Clone)]
enum Clip {
    None,
    Png(Box<Mask>),
    /// The id of the SVG `<clipPath>` in force.
    Svg(usize),
}

enum Surface {
    Png(Pixmap),
    Svg { out: String, next_clip: usize },
}

/// The cairo context `glyph.py` draws with.
pub(crate) struct Canvas {
    surface: Surface,
    width: u32,
    height: u32,
    path: Vec<Cmd>,
    state: State,
    saved: Vec<State>,
    pub font: FontSpec,
}

/// Where text sits relative to its point (graphite's `drawText` align and valign).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Align {
    Left,
    Center,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum VAlign {
    Top,
    Middle,
    Baseline,
}

fn svg_color(c: Rgba) -> String {
    let [r, g, b, _] = c.0.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

impl Canvas {
    pub(crate) fn png(width: u32, height: u32, font: FontSpec) -> Result<Canvas, QueryError> {
        let pixmap = Pixmap::new(width, height).ok_or_else(|| {
            QueryError::BadRequest(format!("graph: a {width}x{height} image cannot be drawn"))
        })?;
        Ok(Self::with(Surface::Png(pixmap), width, height, font))
    }

    pub(crate) fn svg(width: u32, height: u32, font: FontSpec) -> Canvas {
        let out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}px\" height=\"{height}px\" \
             viewBox=\"0 0 {width} {height}\" version=\"1.1\">\n<g class=\"graphite\">\n"
        );
        Self::with(Surface::Svg { out, next_clip: 0 }, width, height, font)
    }

    fn with(surface: Surface, width: u32, height: u32, font: FontSpec) -> Canvas {
        Canvas {
            surface,
            width,
            height,
            path: Vec::new(),
            state: State {
                color: Rgba([0.0, 0.0, 0.0, 1.0]),
                line_width: 2.0,
                dash: None,
                clip: Clip::None,
            },
            saved: Vec::new(),
            font,
        }
    }

    /// The PNG file.
    pub(crate) fn into_png(self) -> Result<Vec<u8>, QueryError> {
        match self.surface {
            Surface::Png(p) => p
                .encode_png()
                .map_err(|e| QueryError::Internal(format!("png encoding failed: {e}"))),
            Surface::Svg { .. } => Err(QueryError::Internal("not a png canvas".into())),
        }
    }

    /// The SVG document; `script` (graphite's metadata) goes before the end.
    pub(crate) fn into_svg(self, script: &str) -> String {
        match self.surface {
            Surface::Svg { mut out, .. } => {
                out.push_str("</g>\n");
                out.push_str(script);
                out.push_str("</svg>\n");
                out
            }
            Surface::Png(_) => String::new(),
        }
    }

    pub(crate) fn set_color(&mut self, c: Rgba) {
        self.state.color = c;
    }

    pub(crate) fn set_line_width(&mut self, w: f64) {
        self.state.line_width = w;
    }

    pub(crate) fn line_width(&self) -> f64 {
        self.state.line_width
    }

    /// `set_dash([len], offset)`, or none.
    pub(crate) fn set_dash(&mut self, dash: Option<(f64, f64)>) {
        self.state.dash = dash.filter(|(l, _)| *l > 0.0 && l.is_finite());
    }

    pub(crate) fn move_to(&mut self, x: f64, y: f64) {
        self.path.push(Cmd::Move(x, y));
    }

    /// `line_to`; with no current point it is a `move_to`, as in cairo.
    pub(crate) fn line_to(&mut self, x: f64, y: f64) {
        if self.path.is_empty() {
            self.path.push(Cmd::Move(x, y));
        } else {
            self.path.push(Cmd::Line(x, y));
        }
    }

    /// cairo's `arc`: a line to the arc's start (a move with no current point), then the arc
    /// clockwise on screen from `a1` to `a2` (radians, 0 along +x), `a2` first brought to at
    /// least `a1` by whole turns. More than a turn draws one turn: filled, that is the same.
    pub(crate) fn arc(&mut self, xc: f64, yc: f64, r: f64, a1: f64, a2: f64) {
        if ![xc, yc, r, a1, a2].iter().all(|v| v.is_finite()) {
            return;
        }
        if r <= 0.0 {
            self.line_to(xc, yc);
            return;
        }
        let mut a2 = a2;
        if a2 < a1 {
            a2 = (a2 - a1) % std::f64::consts::TAU;
            if a2 < 0.0 {
                a2 += std::f64::consts::TAU;
            }
            a2 += a1;
        }
        let sweep = (a2 - a1).min(std::f64::consts::TAU);
        let point = |a: f64| (xc + r * a.cos(), yc + r * a.sin());
        let (x, y) = point(a1);
        self.line_to(x, y);
        // Pieces of at most a quarter turn, each one Bézier (off the circle by 0.03 % of r).
        let pieces = (sweep / std::f64::consts::FRAC_PI_2).ceil().max(1.0) as usize;
        let step = sweep / pieces as f64;
        let k = 4.0 / 3.0 * (step / 4.0).tan() * r;
        for i in 0..pieces {
            let (s, e) = (a1 + step * i as f64, a1 + step * (i + 1) as f64);
            let ((sx, sy), (ex, ey)) = (point(s), point(e));
            self.path.push(Cmd::Curve(
                sx - k * s.sin(),
                sy + k * s.cos(),
                ex + k * e.sin(),
                ey - k * e.cos(),
                ex,
                ey,
            ));
        }
    }

    pub(crate) fn close_path(&mut self) {
        self.path.push(Cmd::Close);
    }

    pub(crate) fn rectangle(&mut self, x: f64, y: f64, w: f64, h: f64) {
        self.path.extend([
            Cmd::Move(x, y),
            Cmd::Line(x + w, y),
            Cmd::Line(x + w, y + h),
            Cmd::Line(x, y + h),
            Cmd::Close,
        ]);
    }

    pub(crate) fn copy_path(&self) -> Vec<Cmd> {
        self.path.clone()
    }

    pub(crate) fn append_path(&mut self, p: &[Cmd]) {
        self.path.extend_from_slice(p);
    }

    pub(crate) fn save(&mut self) {
        self.saved.push(self.state.clone());
    }

    pub(crate) fn restore(&mut self) {
        if let Some(s) = self.saved.pop() {
            self.state = s;
        }
    }

    fn skia_path(&self) -> Option<tiny_skia::Path> {
        let mut pb = PathBuilder::new();
        for c in &self.path {
            match *c {
                Cmd::Move(x, y) => pb.move_to(x as f32, y as f32),
                Cmd::Line(x, y) => pb.line_to(x as f32, y as f32),
                Cmd::Curve(x1, y1, x2, y2, x, y) => pb.cubic_to(
                    x1 as f32, y1 as f32, x2 as f32, y2 as f32, x as f32, y as f32,
                ),
                Cmd::Close => pb.close(),
            }
        }
        pb.finish()
    }

    fn svg_d(&self) -> String {
        let mut d = String::new();
        for c in &self.path {
            let _ = match *c {
                Cmd::Move(x, y) => write!(d, "M {x:.2} {y:.2} "),
                Cmd::Line(x, y) => write!(d, "L {x:.2} {y:.2} "),
                Cmd::Curve(x1, y1, x2, y2, x, y) => {
                    write!(d, "C {x1:.2} {y1:.2} {x2:.2} {y2:.2} {x:.2} {y:.2} ")
                }
                Cmd::Close => write!(d, "Z "),
            };
        }
        d.trim_end().to_owned()
    }

    fn paint(&self) -> Paint<'static> {
        let [r, g, b, a] = self.state.color.0;
        let mut p = Paint::default();
        p.set_color_rgba8(
            (r * 255.0).round() as u8,
            (g * 255.0).round() as u8,
            (b * 255.0).round() as u8,
            (a.clamp(0.0, 1.0) * 255.0).round() as u8,
        );
        p.anti_alias = true;
        p
    }

    fn svg_clip_attr(&self) -> String {
        match self.state.clip {
            Clip::Svg(id) => format!(" clip-path=\"url(#c{id})\""),
            _ => String::new(),
        }
    }

    fn svg_paint(&self, what: &str) -> String {
        let c = self.state.color;
        let mut s = format!(" {what}=\"{}\"", svg_color(c));
        if c.0[3] < 1.0 {
            let _ = write!(s, " {what}-opacity=\"{:.3}\"", c.0[3].max(0.0));
        }
        s
    }

    /// Fills the current path (non-zero winding) and clears it. The SVG text is made only for
    /// an SVG surface: formatting every point is most of a PNG's time otherwise.
    pub(crate) fn fill(&mut self) {
        if let Surface::Png(_) = self.surface {
            let paint = self.paint();
            if let (Some(path), Surface::Png(p)) = (self.skia_path(), &mut self.surface) {
                let mask = match &self.state.clip {
                    Clip::Png(m) => Some(&**m),
                    _ => None,
                };
                p.fill_path(
                    &path,
                    &paint,
                    FillRule::Winding,
                    Transform::identity(),
                    mask,
                );
            }
        } else {
            let d = self.svg_d();
            let (clip, color) = (self.svg_clip_attr(), self.svg_paint("fill"));
            if let Surface::Svg { out, .. } = &mut self.surface {
                if !d.is_empty() {
                    let _ = writeln!(out, "<path d=\"{d}\"{color}{clip}/>");
                }
            }
        }
        self.path.clear();
    }

    /// Strokes the current path with the line width and dash in force, and clears it.
    pub(crate) fn stroke(&mut self) {
        let width = self.state.line_width;
        let dash = self.state.dash;
        if let Surface::Png(_) = self.surface {
            let paint = self.paint();
            if let (Some(path), Surface::Png(p)) = (self.skia_path(), &mut self.surface) {
                let stroke = Stroke {
                    width: width as f32,
                    miter_limit: 10.0,
                    dash: dash
                        .and_then(|(l, off)| StrokeDash::new(vec![l as f32, l as f32], off as f32)),
                    ..Stroke::default()
                };
                let mask = match &self.state.clip {
                    Clip::Png(m) => Some(&**m),
                    _ => None,
                };
                p.stroke_path(&path, &paint, &stroke, Transform::identity(), mask);
            }
        } else {
            let d = self.svg_d();
            let (clip, color) = (self.svg_clip_attr(), self.svg_paint("stroke"));
            if let Surface::Svg { out, .. } = &mut self.surface {
                if !d.is_empty() {
                    let dash = dash.map_or_else(String::new, |(l, off)| {
                        format!(
                            " stroke-dasharray=\"{l:.2},{l:.2}\" stroke-dashoffset=\"{off:.2}\""
                        )
                    });
                    let _ = writeln!(
                        out,
                        "<path d=\"{d}\" fill=\"none\"{color} stroke-width=\"{width:.2}\" stroke-miterlimit=\"10\"{dash}{clip}/>"
                    );
                }
            }
        }
        self.path.clear();
    }

    /// Intersects the clip with the current path, and clears it.
    pub(crate) fn clip(&mut self) {
        let (w, h) = (self.width, self.height);
        if let Surface::Png(_) = self.surface {
            if let Some(path) = self.skia_path() {
                let mask = match &mut self.state.clip {
                    Clip::Png(m) => {
                        m.intersect_path(&path, FillRule::Winding, true, Transform::identity());
                        None
                    }
                    _ => Mask::new(w, h).map(|mut m| {
                        m.fill_path(&path, FillRule::Winding, true, Transform::identity());
                        m
                    }),
                };
                if let Some(m) = mask {
                    self.state.clip = Clip::Png(Box::new(m));
                }
            }
        } else {
            let d = self.svg_d();
            let parent = match self.state.clip {
                Clip::Svg(p) => format!(" clip-path=\"url(#c{p})\""),
                _ => String::new(),
            };
            if let Surface::Svg { out, next_clip } = &mut self.surface {
                let id = *next_clip;
                *next_clip += 1;
                let _ = writeln!(
                    out,
                    "<clipPath id=\"c{id}\"{parent}><path d=\"{d}\"/></clipPath>"
                );
                self.state.clip = Clip::Svg(id);
            }
        }
        self.path.clear();
    }

    pub(crate) fn extents(&self, text: &str) -> Result<Extents, QueryError> {
        self.font.extents(text)
    }

    /// graphite's `drawText`: the text placed by align/valign around (x, y), rotated by
    /// `rotate` degrees, filled with the colour in force.
    pub(crate) fn text(
        &mut self,
        text: &str,
        x: f64,
        y: f64,
        align: Align,
        valign: VAlign,
        rotate: f64,
    ) -> Result<(), QueryError> {
        let e = self.extents(text)?;
        let angle = rotate.to_radians();
        let horizontal = match align {
            Align::Left => 0.0,
            Align::Center => e.width / 2.0,
            Align::Right => e.width,
        };
        let vertical = match valign {
            VAlign::Top => e.ascent,
            VAlign::Middle => e.height / 2.0 - e.descent,
            VAlign::Baseline => 0.0,
        };
        let (sin, cos) = angle.sin_cos();
        let ox = x - sin * vertical - horizontal * cos;
        let oy = y + cos * vertical - horizontal * sin;
        let font = self.font;
        let face = font.face()?;
        match &mut self.surface {
            Surface::Png(p) => {
                let em = font.em(face) as f32;
                let mut paint = {
                    let [r, g, b, a] = self.state.color.0;
                    let mut p = Paint::default();
                    p.set_color_rgba8(
                        (r * 255.0).round() as u8,
                        (g * 255.0).round() as u8,
                        (b * 255.0).round() as u8,
                        (a.clamp(0.0, 1.0) * 255.0).round() as u8,
                    );
                    p
                };
                // graphite turns antialiasing off for text (cairo ANTIALIAS_NONE) but has
                // FreeType hint the glyphs to the pixel grid; unhinted glyphs drawn aliased
                // come out broken, so ours are antialiased.
                paint.anti_alias = true;
                let base = Transform::from_row(
                    cos as f32,
                    sin as f32,
                    -sin as f32,
                    cos as f32,
                    ox as f32,
                    oy as f32,
                );
                let mask = match &self.state.clip {
                    Clip::Png(m) => Some(&**m),
                    _ => None,
                };
                let mut pen = 0.0f32;
                for c in text.chars() {
                    let id = face.glyph_id(c);
                    if let Some(outline) = face.outline(id) {
                        if let Some(path) = glyph_path(&outline.curves) {
                            // Font units, y up, to pixels at the pen, y down.
                            let t = base.pre_translate(pen, 0.0).pre_scale(em, -em);
                            p.fill_path(&path, &paint, FillRule::Winding, t, mask);
                        }
                    }
                    pen += (face.h_advance_unscaled(id) * em).round();
                }
            }
            Surface::Svg { out, .. } => {
                let clip = match self.state.clip {
                    Clip::Svg(id) => format!(" clip-path=\"url(#c{id})\""),
                    _ => String::new(),
                };
                let c = self.state.color;
                let opacity = if c.0[3] < 1.0 {
                    format!(" fill-opacity=\"{:.3}\"", c.0[3].max(0.0))
                } else {
                    String::new()
                };
                let transform = if rotate != 0.0 {
                    format!(" transform=\"rotate({rotate} {ox:.2} {oy:.2})\"")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "<text x=\"{ox:.2}\" y=\"{oy:.2}\" font-family=\"DejaVu Sans, sans-serif\" font-size=\"{}\" font-kerning=\"none\"{}{} fill=\"{}\"{opacity}{transform}{clip}>{}</text>",
                    font.size,
                    if font.bold { " font-weight=\"bold\"" } else { "" },
                    if font.italic { " font-style=\"oblique\"" } else { "" },
                    svg_color(c),
                    escape(text)
                );
            }
        }
        Ok(())
    }
}

/// A glyph's outline (font units) as a path.
fn glyph_path(curves: &[OutlineCurve]) -> Option<tiny_skia::Path> {
    let mut pb = PathBuilder::new();
    let mut last: Option<ab_glyph::Point> = None;
    for c in curves {
        let start = match c {
            OutlineCurve::Line(a, _)
            | OutlineCurve::Quad(a, _, _)
            | OutlineCurve::Cubic(a, _, _, _) => *a,
        };
        if last != Some(start) {
            if last.is_some() {
                pb.close();
            }
            pb.move_to(start.x, start.y);
        }
        last = Some(match c {
            OutlineCurve::Line(_, b) => {
                pb.line_to(b.x, b.y);
                *b
            }
            OutlineCurve::Quad(_, b, e) => {
                pb.quad_to(b.x, b.y, e.x, e.y);
                *e
            }
            OutlineCurve::Cubic(_, b, c2, e) => {
                pb.cubic_to(b.x, b.y, c2.x, c2.y, e.x, e.y);
                *e
            }
        });
    }
    if last.is_some() {
        pb.close();
    }
    pb.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dejavu_measures_as_cairo_hints_it() {
        let f = FontSpec {
            size: 10.0,
            bold: false,
            italic: false,
        };
        let e = f.extents("").expect("font");
        // cairo on graphite-web's image surface: ascent 10, descent 3, height 12 at size 10.
        assert_eq!((e.ascent, e.descent, e.height), (10.0, 3.0, 12.0));
        assert!(f.extents("100.0 ").expect("font").width > 20.0);
        let b = FontSpec { bold: true, ..f };
        assert!(b.extents("abc").expect("font").width >= f.extents("abc").expect("font").width);
    }

    #[test]
    fn text_is_drawn_and_clipped() {
        let f = FontSpec {
            size: 20.0,
            bold: false,
            italic: false,
        };
        let mut c = Canvas::png(100, 40, f).expect("canvas");
        c.set_color(Rgba([1.0, 0.0, 0.0, 1.0]));
        c.text("Hi", 5.0, 5.0, Align::Left, VAlign::Top, 0.0)
            .expect("text");
        let png = c.into_png().expect("png");
        let p = Pixmap::decode_png(&png).expect("decodes");
        let red = p
            .pixels()
            .iter()
            .filter(|px| px.red() > 200 && px.alpha() == 255)
            .count();
        assert!(red > 30, "{red} red pixels");
    }
}
