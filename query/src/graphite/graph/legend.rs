//! The legend (graphite's `drawLegend`, which line and pie graphs share): as many columns as
//! the longest name allows, under the plot, which it pushes up; with a second y axis,
//! right-axis series on the right.

use crate::error::Result;
use crate::graphite::graph::base::Graph;
use crate::graphite::graph::canvas::{Align, VAlign};

/// One legend entry: the name, its colour, and whether it belongs to the right y axis.
pub(crate) type Element = (String, String, bool);

impl Graph {
    fn legend_box(&mut self, color: &str, x: f64, y: f64, size: f64) -> Result<()> {
        self.set_color(color, "color")?;
        self.draw_rect(x, y, size, size, true);
        self.set_color("darkgrey", "color")?;
        self.draw_rect(x, y, size, size, false);
        self.set_color(&self.fg.clone(), "fgcolor")
    }

    /// Draws `elements` (`unique`: each name once) and takes their room from the bottom of the
    /// drawing area; `second_y` is whether the graph has a right y axis.
    pub(crate) fn draw_legend(
        &mut self,
        mut elements: Vec<Element>,
        unique: bool,
        second_y: bool,
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
        if second_y && right_side_labels {
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
}
