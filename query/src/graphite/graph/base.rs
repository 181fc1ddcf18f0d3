//! What every graph type shares, graphite-web 1.1.8's `Graph` base class (`render/glyph.py`):
//! the image size and margin, the template, the colour list and fore- and background, the
//! default font, the canvas with its background filled, and the area left to draw in, which the
//! title (here) and the legend (`legend`) take their room from. `LineGraph` and `PieGraph` each
//! hold one.

use crate::error::{QueryError, Result};
use crate::graphite::graph::canvas::{Align, Canvas, Extents, FontSpec, VAlign};
use crate::graphite::graph::options::{parse_color, template, Opt, Options, Rgba, Template};

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

/// The part of the image still free to draw in (graphite's `self.area`).
pub(crate) struct Area {
    pub xmin: f64,
    pub xmax: f64,
    pub ymin: f64,
    pub ymax: f64,
}

/// graphite's `Graph`: the canvas and what `Graph.__init__` sets up before a graph type draws.
pub(crate) struct Graph {
    pub c: Canvas,
    pub p: Options,
    pub width: f64,
    pub height: f64,
    pub margin: f64,
    pub area: Area,
    pub tmpl: Template,
    pub fg: String,
    pub bg: String,
    /// `colorList`, or the template's; graph types take from it in turn (`next_color`).
    pub colors: Vec<String>,
    pub next_color: usize,
    /// The default font (`defaultFontParams`).
    pub font: FontSpec,
}

impl Graph {
    /// `Graph.__init__`: the size (checked against [`MAX_SIDE`] and [`MAX_PIXELS`]), margin,
    /// template, font and colours from the options, a PNG or SVG canvas, the background filled.
    pub(crate) fn new(mut p: Options, svg: bool) -> Result<Graph> {
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
        p.set(
            "outputFormat",
            Opt::Str(if svg { "svg" } else { "png" }.into()),
        );
        let mut g = Graph {
            c,
            p,
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
        };
        let bg = g.color(&g.bg.clone(), 1.0, false, "bgcolor")?;
        g.c.set_color(bg);
        g.c.rectangle(0.0, 0.0, g.width, g.height);
        g.c.fill();
        Ok(g)
    }

    /// The next colour of the list, round and round (`next(self.colors)`).
    pub(crate) fn next_color(&mut self) -> String {
        let c = self.colors[self.next_color % self.colors.len().max(1)].clone();
        self.next_color += 1;
        c
    }

    pub(crate) fn color(&self, v: &str, alpha: f64, force: bool, what: &str) -> Result<Rgba> {
        parse_color(v, alpha, force, what)
    }

    pub(crate) fn set_color(&mut self, v: &str, what: &str) -> Result<()> {
        let c = self.color(v, 1.0, false, what)?;
        self.c.set_color(c);
        Ok(())
    }

    /// `setFont`: the default font, at `size` when given.
    pub(crate) fn set_font(&mut self, size: Option<f64>) {
        self.c.font = FontSpec {
            size: size.unwrap_or(self.font.size),
            ..self.font
        };
    }

    pub(crate) fn ext(&self, text: &str) -> Result<Extents> {
        self.c.extents(text)
    }

    pub(crate) fn draw_rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: bool) {
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

    pub(crate) fn y_axis_right(&self) -> bool {
        self.p.str("yAxisSide").as_deref() == Some("right")
    }

    /// "No Data" in red, centred, at graphite's size for it (the log of the pixel count).
    pub(crate) fn no_data(&mut self) -> Result<()> {
        self.c.set_color(self.color("red", 1.0, false, "color")?);
        self.set_font(Some((self.width * self.height).ln()));
        let (x, y) = (self.width / 2.0, self.height / 2.0);
        self.c
            .text("No Data", x, y, Align::Center, VAlign::Top, 0.0)
    }

    /// The `title` option, when given, centred on top in the title font (the font size plus
    /// its log) and the foreground colour; the drawing area starts under it.
    pub(crate) fn title(&mut self) -> Result<()> {
        let title_size = self.font.size + self.font.size.ln().floor();
        self.set_font(Some(title_size));
        self.set_color(&self.fg.clone(), "fgcolor")?;
        if let Some(t) = self.p.str("title").filter(|t| !t.is_empty()) {
            self.draw_title(&unquote_plus(&t))?;
        }
        Ok(())
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
}
