//! The few drawing calls Atlas's chart makes on a Java2D `Graphics2D` without antialiasing
//! (`fillRect`, `drawLine` of axis-aligned lines with a `BasicStroke`, dashed grid lines,
//! `drawRect`, `fillOval`, text), over a tiny-skia pixmap, which also encodes the PNG.
//!
//! Text is Noto Sans Mono, the font Atlas ships (`query/fonts`), at Atlas's three sizes, with
//! Java's integer font metrics (`FontMetrics.getHeight`, `stringWidth`); glyphs are rasterized
//! by ab_glyph once per character and size and blended with their coverage (Atlas draws LCD
//! antialiased text; this is greyscale).

use std::collections::HashMap;
use std::sync::OnceLock;

use ab_glyph::{Font as _, FontRef, PxScale};
use tiny_skia::Pixmap;

use crate::error::QueryError;

static MONO: &[u8] = include_bytes!("../../../fonts/NotoSansMono-Regular.ttf");

fn face() -> Option<&'static FontRef<'static>> {
    static FACE: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FACE.get_or_init(|| FontRef::try_from_slice(MONO).ok())
        .as_ref()
}

/// An ARGB colour, as Java's `Color.getRGB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(pub u32);

impl Color {
    pub const BLACK: Color = Color(0xFF00_0000);
    pub const RED: Color = Color(0xFFFF_0000);

    pub fn alpha(self) -> u8 {
        (self.0 >> 24) as u8
    }

    pub fn with_alpha(self, a: u8) -> Color {
        Color((self.0 & 0x00FF_FFFF) | (u32::from(a) << 24))
    }

    fn rgb(self) -> [u8; 3] {
        [(self.0 >> 16) as u8, (self.0 >> 8) as u8, self.0 as u8]
    }

    /// Atlas's `Strings.parseColor`: `RGB`, `RRGGBB` (opaque) or `AARRGGBB`.
    pub fn parse(s: &str) -> Result<Color, String> {
        let bad = || format!("color must be hex string [AA]RRGGBB: \"{s}\"");
        if !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        match s.len() {
            3 => {
                let doubled: String = s.chars().flat_map(|c| [c, c]).collect();
                u32::from_str_radix(&doubled, 16)
                    .map(|v| Color(0xFF00_0000 | v))
                    .map_err(|_| bad())
            }
            6 => u32::from_str_radix(s, 16)
                .map(|v| Color(0xFF00_0000 | v))
                .map_err(|_| bad()),
            8 => u32::from_str_radix(s, 16).map(Color).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// Atlas's three text sizes (`atlas.chart.fonts`: 10, 12 and 14 points, one pixel each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Font {
    Small,
    Normal,
    Large,
    /// The normal size, bold (Java emboldens the regular face; so does this, by one pixel).
    NormalBold,
}

/// A font's size on the character grid: Java's `stringWidth("X")` and `getHeight`, and the
/// float metrics text layout uses.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub width: i32,
    pub height: i32,
    pub ascent: f32,
    /// ascent + descent + leading: one wrapped line.
    pub line: f32,
}

impl Font {
    fn size(self) -> f32 {
        match self {
            Font::Small => 10.0,
            Font::Normal | Font::NormalBold => 12.0,
            Font::Large => 14.0,
        }
    }

    pub fn dims(self) -> Dims {
        let Some(f) = face() else {
            return Dims {
                width: 6,
                height: 14,
                ascent: 11.0,
                line: 14.0,
            };
        };
        let em = self.size() / f.units_per_em().unwrap_or(1000.0);
        let ascent = f.ascent_unscaled() * em;
        let descent = -f.descent_unscaled() * em;
        let leading = f.line_gap_unscaled() * em;
        // FontDesignMetrics: (int)(0.95 + ascent) + (int)(0.95 + descent + leading).
        let height = (0.95 + ascent) as i32 + (0.95 + descent + leading) as i32;
        Dims {
            width: (f.h_advance_unscaled(f.glyph_id('X')) * em).round() as i32,
            height,
            ascent,
            line: ascent + descent + leading,
        }
    }
}

struct Glyph {
    left: i32,
    top: i32,
    w: usize,
    h: usize,
    cov: Vec<u8>,
}

/// How text is turned: not, or a quarter turn about a centre (Java's `rotate(-pi/2)` reads
/// upwards, `rotate(pi/2)` downwards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Turn {
    None,
    Up(i32, i32),
    Down(i32, i32),
}

pub struct Gfx {
    pix: Pixmap,
    w: i32,
    h: i32,
    clip: Option<(i32, i32, i32, i32)>,
    glyphs: HashMap<(char, Font), Option<Glyph>>,
    /// Whether text is drawn (the golden-image test draws without it to find where text is).
    pub text: bool,
}

impl Gfx {
    pub fn new(w: u32, h: u32, bg: Color) -> Result<Gfx, QueryError> {
        let pix = Pixmap::new(w.max(1), h.max(1))
            .ok_or_else(|| QueryError::BadRequest(format!("cannot draw a {w}x{h} image")))?;
        let mut g = Gfx {
            pix,
            w: w.max(1) as i32,
            h: h.max(1) as i32,
            clip: None,
            glyphs: HashMap::new(),
            text: true,
        };
        g.fill_rect(0, 0, g.w, g.h, bg.with_alpha(255));
        Ok(g)
    }

    pub fn png(self) -> Result<Vec<u8>, QueryError> {
        self.pix
            .encode_png()
            .map_err(|e| QueryError::Internal(format!("png encoding: {e}")))
    }

    #[cfg(test)]
    pub fn pixmap(&self) -> &Pixmap {
        &self.pix
    }

    /// `setClip(x, y, w, h)`, as `[x1, x2) x [y1, y2)`; `None` clears it.
    pub fn set_clip(&mut self, clip: Option<(i32, i32, i32, i32)>) {
        self.clip = clip;
    }

    fn bounds(&self) -> (i32, i32, i32, i32) {
        let (mut x1, mut y1, mut x2, mut y2) = (0, 0, self.w, self.h);
        if let Some((a, b, c, d)) = self.clip {
            x1 = x1.max(a);
            y1 = y1.max(b);
            x2 = x2.min(c);
            y2 = y2.min(d);
        }
        (x1, y1, x2, y2)
    }

    fn blend(&mut self, x: i32, y: i32, c: Color, cov: u32) {
        let a = u32::from(c.alpha()) * cov / 255;
        if a == 0 {
            return;
        }
        let i = (y as usize * self.w as usize + x as usize) * 4;
        let data = self.pix.data_mut();
        let px = &mut data[i..i + 4];
        let [r, g, b] = c.rgb();
        for (d, s) in px.iter_mut().zip([r, g, b]) {
            *d = ((u32::from(s) * a + u32::from(*d) * (255 - a) + 127) / 255) as u8;
        }
        px[3] = (a + u32::from(px[3]) * (255 - a) / 255).min(255) as u8;
    }

    /// `fillRect(x, y, w, h)`: the pixels `[x, x+w) x [y, y+h)`.
    pub fn fill_rect(&mut self, x: i32, y: i32, w: i32, h: i32, c: Color) {
        let (bx1, by1, bx2, by2) = self.bounds();
        let (x1, y1) = (x.max(bx1), y.max(by1));
        let (x2, y2) = (x.saturating_add(w).min(bx2), y.saturating_add(h).min(by2));
        for py in y1..y2 {
            for px in x1..x2 {
                self.blend(px, py, c, 255);
            }
        }
    }

    /// `drawLine` of an axis-aligned line with `BasicStroke(width)` (square caps): the
    /// pixels whose centres the stroked rectangle covers. A dashed line (`[1, 1]`) draws
    /// every other pixel from its start.
    pub fn line(
        &mut self,
        (x1, y1): (i32, i32),
        (x2, y2): (i32, i32),
        c: Color,
        width: f32,
        dashed: bool,
    ) {
        if dashed {
            let (dx, dy) = ((x2 - x1).signum(), (y2 - y1).signum());
            let n = (x2 - x1).abs().max((y2 - y1).abs());
            let (bx1, by1, bx2, by2) = self.bounds();
            for i in (0..=n).step_by(2) {
                let (px, py) = (x1 + dx * i, y1 + dy * i);
                if px >= bx1 && px < bx2 && py >= by1 && py < by2 {
                    self.blend(px, py, c, 255);
                }
            }
            return;
        }
        let half = f64::from(width.max(0.0)) / 2.0;
        let span = |a: i32, b: i32| {
            let (lo, hi) = (f64::from(a.min(b)), f64::from(a.max(b)));
            let first = (lo - half).ceil() as i32;
            let last = (hi + half).ceil() as i32 - 1;
            (first, last.max(first))
        };
        if x1 == x2 || y1 == y2 {
            let (xa, xb) = span(x1, x2);
            let (ya, yb) = span(y1, y2);
            self.fill_rect(xa, ya, xb - xa + 1, yb - ya + 1, c);
        } else {
            // Atlas's chart draws no slanted line; a plain stepped approximation if one comes.
            let n = (x2 - x1).abs().max((y2 - y1).abs());
            for i in 0..=n {
                let px = x1 + (x2 - x1) * i / n;
                let py = y1 + (y2 - y1) * i / n;
                self.fill_rect(px, py, 1, 1, c);
            }
        }
    }

    /// `drawRect(x, y, w, h)`: the outline of `(w+1) x (h+1)` pixels.
    pub fn draw_rect(&mut self, x: i32, y: i32, w: i32, h: i32, c: Color) {
        self.line((x, y), (x + w, y), c, 1.0, false);
        self.line((x, y + h), (x + w, y + h), c, 1.0, false);
        self.line((x, y + 1), (x, y + h - 1), c, 1.0, false);
        self.line((x + w, y + 1), (x + w, y + h - 1), c, 1.0, false);
    }

    /// `fillOval(x, y, w, h)`: the pixels whose centres lie in the ellipse.
    pub fn fill_oval(&mut self, x: i32, y: i32, w: i32, h: i32, c: Color) {
        let (rx, ry) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
        let (cx, cy) = (f64::from(x) + rx, f64::from(y) + ry);
        for py in y..y + h {
            for px in x..x + w {
                let dx = (f64::from(px) + 0.5 - cx) / rx;
                let dy = (f64::from(py) + 0.5 - cy) / ry;
                if dx * dx + dy * dy <= 1.0 {
                    self.fill_rect(px, py, 1, 1, c);
                }
            }
        }
    }

    fn glyph(&mut self, ch: char, font: Font) -> bool {
        if self.glyphs.contains_key(&(ch, font)) {
            return self.glyphs[&(ch, font)].is_some();
        }
        let g = face().and_then(|f| {
            let em = font.size() / f.units_per_em().unwrap_or(1000.0);
            let scale = PxScale::from(em * f.height_unscaled());
            let og = f.outline_glyph(f.glyph_id(ch).with_scale(scale))?;
            let b = og.px_bounds();
            let (w, h) = (b.width() as usize, b.height() as usize);
            let mut cov = vec![0u8; w * h];
            og.draw(|x, y, c| {
                if let Some(p) = cov.get_mut(y as usize * w + x as usize) {
                    *p = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            });
            Some(Glyph {
                left: b.min.x as i32,
                top: b.min.y as i32,
                w,
                h,
                cov,
            })
        });
        let some = g.is_some();
        self.glyphs.insert((ch, font), g);
        some
    }

    /// The pen advance of one character (every character of the monospaced face).
    pub fn advance(font: Font) -> i32 {
        font.dims().width
    }

    /// The ink of `s` laid out from 0: its left edge and width (Java's `TextLayout.getBounds`).
    pub fn ink(&mut self, s: &str, font: Font) -> (i32, i32) {
        let adv = Gfx::advance(font);
        let (mut lo, mut hi) = (i32::MAX, i32::MIN);
        for (i, ch) in s.chars().enumerate() {
            if self.glyph(ch, font) {
                if let Some(Some(g)) = self.glyphs.get(&(ch, font)) {
                    let x = i as i32 * adv + g.left;
                    lo = lo.min(x);
                    hi = hi.max(x + g.w as i32);
                }
            }
        }
        if lo > hi {
            (0, 0)
        } else {
            (lo, hi - lo)
        }
    }

    /// Draws `s` with its pen starting at `x` on `baseline`, turned as `turn` says.
    pub fn text(&mut self, s: &str, font: Font, x: i32, baseline: i32, c: Color, turn: Turn) {
        if !self.text {
            return;
        }
        let adv = Gfx::advance(font);
        let passes: &[i32] = if font == Font::NormalBold {
            &[0, 1]
        } else {
            &[0]
        };
        for (i, ch) in s.chars().enumerate() {
            if !self.glyph(ch, font) {
                continue;
            }
            let Some(Some(g)) = self.glyphs.remove(&(ch, font)) else {
                continue;
            };
            for &bold in passes {
                let ox = x + i as i32 * adv + g.left + bold;
                let oy = baseline + g.top;
                for gy in 0..g.h {
                    for gx in 0..g.w {
                        let cov = g.cov[gy * g.w + gx];
                        if cov == 0 {
                            continue;
                        }
                        let (px, py) = (ox + gx as i32, oy + gy as i32);
                        let (px, py) = match turn {
                            Turn::None => (px, py),
                            // rotate(-pi/2) about (cx, cy): (dx, dy) -> (dy, -dx).
                            Turn::Up(cx, cy) => (cx + (py - cy), cy - (px - cx)),
                            Turn::Down(cx, cy) => (cx - (py - cy), cy + (px - cx)),
                        };
                        let (bx1, by1, bx2, by2) = self.bounds();
                        if px >= bx1 && px < bx2 && py >= by1 && py < by2 {
                            self.blend(px, py, c, u32::from(cov));
                        }
                    }
                }
            }
            self.glyphs.insert((ch, font), Some(g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Atlas's golden images are 788 pixels wide for w=700 (700 + a 64-pixel axis + 24) and
    /// 24 pixels per time axis: these are the metrics that give those sizes.
    #[test]
    fn java_metrics_of_the_font() {
        let s = Font::Small.dims();
        let n = Font::Normal.dims();
        let l = Font::Large.dims();
        assert_eq!((s.width, s.height), (6, 14));
        assert_eq!((n.width, n.height), (7, 17));
        assert_eq!((l.width, l.height), (8, 20));
        assert_eq!(s.line.ceil() as i32, 14);
        assert_eq!(n.line.ceil() as i32, 17);
    }

    #[test]
    fn colors_parse_as_atlas_does() {
        assert_eq!(Color::parse("f00"), Ok(Color(0xFFFF_0000)));
        assert_eq!(Color::parse("0075DC"), Ok(Color(0xFF00_75DC)));
        assert_eq!(Color::parse("5FABABAB"), Ok(Color(0x5FAB_ABAB)));
        assert!(Color::parse("12345").is_err());
        assert!(Color::parse("xyz").is_err());
    }

    #[test]
    fn lines_cover_the_pixels_java_does() {
        let mut g = Gfx::new(20, 20, Color(0xFFFF_FFFF)).expect("a pixmap");
        g.line((2, 5), (8, 5), Color::BLACK, 1.0, false);
        let dark = |g: &Gfx, x: u32, y: u32| g.pixmap().pixel(x, y).expect("inside").red() < 128;
        assert!(dark(&g, 2, 5) && dark(&g, 8, 5));
        assert!(!dark(&g, 1, 5) && !dark(&g, 9, 5) && !dark(&g, 5, 4) && !dark(&g, 5, 6));
        g.line((10, 2), (10, 12), Color::BLACK, 1.0, true);
        assert!(dark(&g, 10, 2) && !dark(&g, 10, 3) && dark(&g, 10, 4));
        g.set_clip(Some((0, 0, 5, 20)));
        g.fill_rect(0, 15, 20, 2, Color::BLACK);
        assert!(dark(&g, 4, 15) && !dark(&g, 5, 15));
    }
}
