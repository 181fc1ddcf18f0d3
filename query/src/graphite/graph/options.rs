//! Graph options as graphite-web 1.1.8 reads them (`render/views.py` `parseOptions` and
//! `render/glyph.py`): a request parameter named like one of the graph type's `customizable`
//! (`LineGraph`'s or `PieGraph`'s) becomes an int, a float, a bool or a string by graphite's
//! rules, and the graph asks for each with its default. Templates (`template=`) and colour names are graphite's own.

use std::collections::HashMap;

use crate::error::QueryError;

/// Every option a graph takes (graphite's `Graph.customizable`).
const GRAPH: &[&str] = &[
    "width",
    "height",
    "margin",
    "bgcolor",
    "fgcolor",
    "fontName",
    "fontSize",
    "fontBold",
    "fontItalic",
    "colorList",
    "template",
    "yAxisSide",
    "outputFormat",
];

/// What `LineGraph` takes besides (`LineGraph.customizable`).
const LINE: &[&str] = &[
    "title",
    "vtitle",
    "lineMode",
    "lineWidth",
    "hideLegend",
    "hideAxes",
    "minXStep",
    "hideGrid",
    "majorGridLineColor",
    "minorGridLineColor",
    "thickness",
    "min",
    "max",
    "graphOnly",
    "yMin",
    "yMax",
    "yLimit",
    "yStep",
    "areaMode",
    "areaAlpha",
    "drawNullAsZero",
    "tz",
    "pieMode",
    "yUnitSystem",
    "logBase",
    "yMinLeft",
    "yMinRight",
    "yMaxLeft",
    "yMaxRight",
    "yLimitLeft",
    "yLimitRight",
    "yStepLeft",
    "yStepRight",
    "rightWidth",
    "rightColor",
    "rightDashed",
    "leftWidth",
    "leftColor",
    "leftDashed",
    "xFormat",
    "minorY",
    "hideYAxis",
    "uniqueLegend",
    "vtitleRight",
    "yDivisors",
    "connectedLimit",
    "hideXAxis",
    "hideNullFromLegend",
];

/// What `PieGraph` takes besides (`PieGraph.customizable`).
const PIE: &[&str] = &[
    "title",
    "valueLabels",
    "valueLabelsMin",
    "hideLegend",
    "pieLabels",
    "areaAlpha",
    "valueLabelsColor",
];

/// One option's value after graphite's coercion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Opt {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Opt {
    /// Python truthiness.
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Opt::Int(i) => *i != 0,
            Opt::Float(f) => *f != 0.0,
            Opt::Bool(b) => *b,
            Opt::Str(s) => !s.is_empty(),
        }
    }

    pub(crate) fn text(&self) -> String {
        match self {
            Opt::Int(i) => i.to_string(),
            Opt::Float(f) => crate::graphite::py_number::py_float(*f),
            Opt::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            Opt::Str(s) => s.clone(),
        }
    }
}

/// graphite's coercion of one parameter value (`parseOptions`): `None` when it is skipped
/// (`default` or empty).
fn coerce(name: &str, val: &str) -> Option<Opt> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let int_like = digits(val) || val.strip_prefix('-').is_some_and(digits);
    if int_like && !name.to_lowercase().contains("color") {
        return Some(val.parse().map_or_else(|_| Opt::Str(val.into()), Opt::Int));
    }
    let float_like = |s: &str| digits(&s.replacen('.', "", 1));
    if val.contains('.') && (float_like(val) || val.strip_prefix('-').is_some_and(float_like)) {
        return Some(
            val.parse()
                .map_or_else(|_| Opt::Str(val.into()), Opt::Float),
        );
    }
    match val.to_lowercase().as_str() {
        "true" => Some(Opt::Bool(true)),
        "false" => Some(Opt::Bool(false)),
        "default" | "" => None,
        _ => Some(Opt::Str(val.to_owned())),
    }
}

/// The graph's options: what the request gave (coerced), plus what the graph itself sets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options(HashMap<String, Opt>);

impl Options {
    /// A line graph's options among `params` (name, value), the last value of a name winning
    /// as in Django.
    pub(crate) fn from_params<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::taking(params, LINE)
    }

    /// A pie graph's options among `params`.
    pub(crate) fn for_pie<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::taking(params, PIE)
    }

    /// The options of [`GRAPH`] and `own` among `params`.
    fn taking<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>, own: &[&str]) -> Self {
        let mut m = HashMap::new();
        for (k, v) in params {
            if GRAPH.contains(&k) || own.contains(&k) {
                match coerce(k, v) {
                    Some(o) => {
                        m.insert(k.to_owned(), o);
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
        }
        Options(m)
    }

    pub(crate) fn get(&self, k: &str) -> Option<&Opt> {
        self.0.get(k)
    }

    pub(crate) fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }

    pub(crate) fn set(&mut self, k: &str, v: Opt) {
        self.0.insert(k.to_owned(), v);
    }

    pub(crate) fn flag(&self, k: &str) -> bool {
        self.0.get(k).is_some_and(Opt::truthy)
    }

    pub(crate) fn str(&self, k: &str) -> Option<String> {
        self.0.get(k).map(Opt::text)
    }

    /// A number (an int, a float or a bool, as Python's `float()` takes them), or a 400 naming
    /// the parameter.
    pub(crate) fn num(&self, k: &str) -> Result<Option<f64>, QueryError> {
        match self.0.get(k) {
            None => Ok(None),
            Some(Opt::Int(i)) => Ok(Some(*i as f64)),
            Some(Opt::Float(f)) => Ok(Some(*f)),
            Some(Opt::Bool(b)) => Ok(Some(f64::from(u8::from(*b)))),
            Some(Opt::Str(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| {
                QueryError::BadRequest(format!("parameter \"{k}\": \"{s}\" is not a number"))
            }),
        }
    }

    pub(crate) fn num_or(&self, k: &str, default: f64) -> Result<f64, QueryError> {
        Ok(self.num(k)?.unwrap_or(default))
    }
}

/// graphite's `colorAliases`.
const COLOR_ALIASES: &[(&str, [u8; 3])] = &[
    ("black", [0, 0, 0]),
    ("white", [255, 255, 255]),
    ("blue", [100, 100, 255]),
    ("green", [0, 200, 0]),
    ("red", [200, 0, 50]),
    ("yellow", [255, 255, 0]),
    ("orange", [255, 165, 0]),
    ("purple", [200, 100, 255]),
    ("brown", [150, 100, 50]),
    ("cyan", [0, 255, 255]),
    ("aqua", [0, 150, 150]),
    ("gray", [175, 175, 175]),
    ("grey", [175, 175, 175]),
    ("magenta", [255, 0, 255]),
    ("pink", [255, 100, 100]),
    ("gold", [200, 200, 0]),
    ("rose", [200, 150, 200]),
    ("darkblue", [0, 0, 255]),
    ("darkgreen", [0, 255, 0]),
    ("darkred", [255, 0, 0]),
    ("darkgray", [111, 111, 111]),
    ("darkgrey", [111, 111, 111]),
];

/// An RGBA colour, each channel 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rgba(pub [f32; 4]);

/// graphite's `setColor`: an alias, or `[#|%23]rrggbb[aa]` (the `aa` alpha unless
/// `force_alpha`); `alpha` otherwise. Anything else is a 400 that names `what`.
pub(crate) fn parse_color(
    value: &str,
    alpha: f64,
    force_alpha: bool,
    what: &str,
) -> Result<Rgba, QueryError> {
    let bad = || {
        QueryError::BadRequest(format!(
            "{what}: \"{value}\" is not a colour (a name such as red, or rrggbb, #rrggbb, rrggbbaa)"
        ))
    };
    let mut alpha = alpha as f32;
    let [r, g, b] = if let Some((_, rgb)) = COLOR_ALIASES.iter().find(|(n, _)| *n == value) {
        *rgb
    } else {
        let s = value.strip_prefix('#').unwrap_or(value);
        let s = s.strip_prefix("%23").unwrap_or(s);
        if value.len() < 6 || s.len() < 6 || !s.is_ascii() {
            return Err(bad());
        }
        let hex = |i: usize| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| bad());
        if s.len() == 8 && !force_alpha {
            alpha = f32::from(hex(6)?) / 255.0;
        }
        [hex(0)?, hex(2)?, hex(4)?]
    };
    let c = |v: u8| f32::from(v) / 255.0;
    Ok(Rgba([c(r), c(g), c(b), alpha]))
}

/// A graph template: graphite's `graphTemplates.conf.example`, which Tally ships as its
/// templates (graphite without a conf file knows only `default`).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub background: &'static str,
    pub foreground: &'static str,
    pub major_line: &'static str,
    pub minor_line: &'static str,
    pub line_colors: &'static str,
}

const DEFAULT_TEMPLATE: Template = Template {
    background: "white",
    foreground: "black",
    major_line: "rose",
    minor_line: "grey",
    line_colors: "blue,green,red,purple,brown,yellow,aqua,grey,magenta,pink,gold,rose",
};

/// (name, background, foreground, majorLine, minorLine, lineColors); `None` takes the default's.
type Section = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

const TEMPLATES: &[Section] = &[
    (
        "solarized-light",
        Some("#fdf6e3"),
        Some("#657b83"),
        Some("#073642"),
        Some("#586e75"),
        "268bd2aa,859900aa,dc322faa,d33682aa,db4b16aa,b58900aa,2aa198aa,6c71c4aa",
    ),
    (
        "solarized-dark",
        Some("#002b36"),
        Some("#839496"),
        Some("#fdf6e3"),
        Some("#eee8d5"),
        "268bd2aa,859900aa,dc322faa,d33682aa,db4b16aa,b58900aa,2aa198aa,6c71c4aa",
    ),
    (
        "classic",
        Some("black"),
        Some("white"),
        Some("white"),
        Some("grey"),
        "blue,green,red,purple,brown,yellow,aqua,grey,magenta,pink,gold,rose",
    ),
    (
        "noc",
        Some("black"),
        Some("white"),
        Some("white"),
        Some("grey"),
        "blue,green,red,yellow,purple,brown,aqua,grey,magenta,pink,gold,rose",
    ),
    (
        "summary",
        Some("black"),
        None,
        None,
        None,
        "#6666ff, #66ff66, #ff6666",
    ),
    (
        "alphas",
        Some("white"),
        Some("black"),
        Some("grey"),
        Some("rose"),
        "00ff00aa,ff000077,00337799",
    ),
    (
        "grafana",
        Some("white"),
        Some("black"),
        Some("rose"),
        Some("grey"),
        "#7eb26d,#eab839,#6ed0e0,#ef843c,#e24d42,#1f78c1,#ba43a9,#705da0,#508642,#cca300,#447ebc",
    ),
    (
        "ocean1",
        None,
        None,
        None,
        None,
        "f7fcf0,e0f3db,ccebc5,a8ddb5,7bccc4,4eb3d3,2b8cbe,0868ac,084081",
    ),
    (
        "ocean2",
        None,
        None,
        None,
        None,
        "084081,0868ac,2b8cbe,4eb3d3,7bccc4,a8ddb5,ccebc5,e0f3db,f7fcf0",
    ),
    (
        "forest1",
        None,
        None,
        None,
        None,
        "f7fcf5,e5f5e0,c7e9c0,a1d99b,74c476,41ab5d,238b45,005a32",
    ),
    (
        "forest2",
        None,
        None,
        None,
        None,
        "005a32,238b45,41ab5d,74c476,a1d99b,c7e9c0,e5f5e0,f7fcf5",
    ),
    (
        "sunset1",
        None,
        None,
        None,
        None,
        "fff5eb,fee6ce,fdd0a2,fdae6b,fd8d3c,f16913,d94801,8c2d04",
    ),
    (
        "sunset2",
        None,
        None,
        None,
        None,
        "8c2d04,d94801,f16913,fd8d3c,fdae6b,fdd0a2,fee6ce,fff5eb",
    ),
    (
        "moonlight1",
        None,
        None,
        None,
        None,
        "fcfbfd,efedf5,dadaeb,bcbddc,9e9ac8,807dba,6a51a3,4a1486",
    ),
    (
        "moonlight2",
        None,
        None,
        None,
        None,
        "4a1486,6a51a3,807dba,9e9ac8,bcbddc,dadaeb,efedf5,fcfbfd",
    ),
    (
        "lava1",
        None,
        None,
        None,
        None,
        "fff5f0,fee0d2,fcbba1,fc9272,fb6a4a,ef3b2c,cb181d,99000d",
    ),
    (
        "lava2",
        None,
        None,
        None,
        None,
        "99000d,cb181d,ef3b2c,fb6a4a,fc9272,fcbba1,fee0d2,fff5f0",
    ),
];

/// The template of that name; an unknown name is the default, as in graphite.
pub(crate) fn template(name: &str) -> Template {
    let d = DEFAULT_TEMPLATE;
    match TEMPLATES.iter().find(|t| t.0 == name) {
        Some(&(_, bg, fg, major, minor, colors)) => Template {
            background: bg.unwrap_or(d.background),
            foreground: fg.unwrap_or(d.foreground),
            major_line: major.unwrap_or(d.major_line),
            minor_line: minor.unwrap_or(d.minor_line),
            line_colors: colors,
        },
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercion_is_graphites() {
        let o = Options::from_params([
            ("width", "800"),
            ("yMin", "-1.5"),
            ("hideLegend", "True"),
            ("bgcolor", "000000"),
            ("title", "default"),
            ("vtitle", ""),
            ("target", "a.b"),
            ("yMax", "max"),
        ]);
        assert_eq!(o.get("width"), Some(&Opt::Int(800)));
        assert_eq!(o.get("yMin"), Some(&Opt::Float(-1.5)));
        assert_eq!(o.get("hideLegend"), Some(&Opt::Bool(true)));
        assert_eq!(o.get("bgcolor"), Some(&Opt::Str("000000".into())));
        assert_eq!(o.get("yMax"), Some(&Opt::Str("max".into())));
        assert!(!o.has("title") && !o.has("vtitle") && !o.has("target"));
        let e = Options::from_params([("lineWidth", "thick")])
            .num("lineWidth")
            .expect_err("not a number");
        assert_eq!(
            e.to_string(),
            "parameter \"lineWidth\": \"thick\" is not a number"
        );
    }

    #[test]
    fn colours_are_graphites() {
        let c = |s| parse_color(s, 1.0, false, "colorList").map(|c| c.0);
        assert_eq!(c("black").ok(), Some([0.0, 0.0, 0.0, 1.0]));
        assert_eq!(c("#ff0000").ok(), Some([1.0, 0.0, 0.0, 1.0]));
        assert_eq!(c("%23ff0000").ok(), Some([1.0, 0.0, 0.0, 1.0]));
        assert_eq!(c("00ff0000").ok(), Some([0.0, 1.0, 0.0, 0.0]));
        assert!(c("nosuch")
            .expect_err("bad")
            .to_string()
            .contains("colorList: \"nosuch\" is not a colour"));
        assert!(c("#ff").is_err() && c("zzzzzz").is_err() && c("ééé").is_err());
        assert_eq!(template("solarized-dark").background, "#002b36");
        assert_eq!(template("summary").foreground, "black");
        assert_eq!(template("nosuch").major_line, "rose");
    }
}
