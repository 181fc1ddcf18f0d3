//! Drawing the series (graphite's `drawLines`): stacking, areas, alpha strokes, then each
//! series in its line mode, stacked areas first under a clip that keeps each above the ones
//! before it.

use super::{AreaMode, LineGraph, LineMode, Ser, Side};
use crate::error::Result;
use crate::graphite::graph::canvas::Cmd;
use crate::series::TimeSeries;

impl LineGraph {
    fn side_of(&self, s: &Ser) -> Side {
        if !self.second_y {
            Side::Only
        } else if s.ts.style.second_y_axis {
            Side::Right
        } else {
            Side::Left
        }
    }

    /// graphite's `fillAreaAndClip`: fills down to `from` (the zero line, else the bottom), then
    /// clips everything at and under the area just filled away for the areas drawn after it.
    fn fill_area_and_clip(&mut self, x: f64, start_x: f64, from: Option<f64>) {
        let start_x = if start_x == 0.0 {
            self.g.area.xmin
        } else {
            start_x
        };
        let from = from.filter(|f| *f != 0.0).unwrap_or(self.g.area.ymax);
        let pattern: Vec<Cmd> = self.g.c.copy_path();
        self.g.c.line_to(x, from);
        self.g.c.line_to(start_x, from);
        self.g.c.close_path();
        self.g.c.fill();
        let a = (
            self.g.area.xmin,
            self.g.area.xmax,
            self.g.area.ymin,
            self.g.area.ymax,
        );
        self.g.c.append_path(&pattern);
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
            self.g.c.line_to(px, py);
        }
        self.g.c.close_path();
        self.g.c.clip();
    }

    pub(super) fn draw_lines(&mut self) -> Result<()> {
        let width = self.line_width;
        self.g.c.set_line_width(width);
        self.g.c.set_dash(None);
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
        if self.g.p.flag("areaAlpha") {
            let alpha = self.g.p.num("areaAlpha").ok().flatten().unwrap_or(0.5);
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
        self.g.c.set_line_width(1.0);
        let a = (
            self.g.area.xmin,
            self.g.area.ymin,
            self.g.area.xmax,
            self.g.area.ymax,
        );
        self.g.c.rectangle(a.0, a.1, a.2 - a.0, a.3 - a.1);
        self.g.c.clip();
        self.g.c.set_line_width(width);
        self.g.c.save();
        let mut clip_restored = false;
        let data = std::mem::take(&mut self.data);
        for s in &data {
            let style = &s.ts.style;
            if !style.stacked && !clip_restored {
                clip_restored = true;
                self.g.c.restore();
            }
            if let Some(w) = style.line_width {
                self.g.c.set_line_width(w);
            }
            self.g.c.set_dash(style.dashed.map(|d| (d, 1.0)));
            let missing = (s.ts.start - self.start) as f64 / s.ts.step as f64;
            let shift = s.x_step * (missing / s.ts.values_per_point.max(1) as f64);
            let mut x = self.g.area.xmin + shift + width / 2.0;
            let mut y = self.g.area.ymin;
            let mut start_x = x;
            let color = s.color.clone().unwrap_or_else(|| "black".into());
            let c = if style.invisible {
                self.g.color(&color, 0.0, true, "color")?
            } else {
                self.g.color(
                    &color,
                    style.alpha.filter(|a| *a != 0.0).unwrap_or(1.0),
                    false,
                    "color",
                )?
            };
            self.g.c.set_color(c);
            let side = self.side_of(s);
            let mut nones = 0usize;
            let draw_null_as_zero = self.g.p.flag("drawNullAsZero");
            for (index, value) in s.values().into_iter().enumerate() {
                let mut value = value.or(draw_null_as_zero.then_some(0.0));
                match value {
                    None => {
                        if nones == 0 {
                            self.g.c.line_to(x, y);
                            if style.stacked {
                                let from = self.y_coord(0.0, side);
                                self.fill_area_and_clip(x, start_x, from);
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
                            self.g.c.move_to(x, self.g.area.ymax);
                            self.g.c.line_to(x, self.g.area.ymin);
                            self.g.c.stroke();
                            x += s.x_step;
                            continue;
                        }
                        if nones > 0 {
                            start_x = x;
                        }
                        match self.line_mode {
                            LineMode::Staircase => {
                                if nones > 0 {
                                    self.g.c.move_to(x, y);
                                } else {
                                    self.g.c.line_to(x, y);
                                }
                                x += s.x_step;
                                self.g.c.line_to(x, y);
                            }
                            LineMode::Slope => {
                                if nones > 0 {
                                    self.g.c.move_to(x, y);
                                }
                                self.g.c.line_to(x, y);
                                x += s.x_step;
                            }
                            LineMode::Connected => {
                                if nones as f64 > self.connected_limit || nones == index {
                                    self.g.c.move_to(x, y);
                                }
                                self.g.c.line_to(x, y);
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
                self.fill_area_and_clip(x_pos, start_x, from);
            } else {
                self.g.c.stroke();
            }
            self.g.c.set_line_width(width);
        }
        self.data = data;
        Ok(())
    }
}
